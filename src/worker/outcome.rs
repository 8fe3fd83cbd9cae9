//! What the worker does with a delivery once the runner has spoken (DESIGN §4, outcome table).
//! How long a retry waits is [`crate::retry`]'s business.
//!
//! Each reason with a budget counts its own retries ([`RetryCounts`], one header per reason):
//! waiting for a deferral (`not_due`) or for another runner's lease (`in_progress`) is not a
//! failure and uses up nothing, and a job that waited a hundred times still gets its full
//! not-found and runner-error budgets, and a short first backoff, when it needs them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::broker::{RetryCounter, RetryCounts};
use crate::retry;
use crate::runner::{RunError, RunOutcome};

/// Why a delivery waits in a retry tier. The label is the `why` of `decay_retries_total` and
/// of the "retry scheduled" log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Another runner holds a live claim: wait for its lease.
    InProgress,
    /// `scheduled_for` is in the future: wait until then (a deferral, not a failure).
    NotDue,
    /// No such job yet: the producer may not have committed the row.
    NotFound,
    /// The database (or the network to it) failed: the job is untouched.
    Transient,
    /// The runner failed for another reason.
    RunnerError,
}

impl RetryReason {
    pub const ALL: [RetryReason; 5] = [
        RetryReason::InProgress,
        RetryReason::NotDue,
        RetryReason::NotFound,
        RetryReason::Transient,
        RetryReason::RunnerError,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            RetryReason::InProgress => "in_progress",
            RetryReason::NotDue => "not_due",
            RetryReason::NotFound => "not_found",
            RetryReason::Transient => "transient",
            RetryReason::RunnerError => "runner_error",
        }
    }

    /// The counter a retry for this reason increments; `None` for the waits that use up no
    /// budget.
    pub const fn counter(self) -> Option<RetryCounter> {
        match self {
            RetryReason::InProgress | RetryReason::NotDue => None,
            RetryReason::NotFound => Some(RetryCounter::NotFound),
            RetryReason::Transient => Some(RetryCounter::Transient),
            RetryReason::RunnerError => Some(RetryCounter::RunnerError),
        }
    }
}

/// Why a delivery is parked in the dead-letter queue: the `x-decay-reason` header and the
/// `reason` label of `decay_dead_letters_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The body is not a job message.
    MalformedMessage,
    /// The id stayed unknown after the not-found retries.
    JobNotFound,
    /// A runner error persisted through its retries.
    RunnerError,
    /// A message redelivered (returned unacked) too often: whatever handles it keeps dying.
    /// The broker uses the same name for its own delivery limit.
    DeliveryLimit,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 4] = [
        DeadLetterReason::MalformedMessage,
        DeadLetterReason::JobNotFound,
        DeadLetterReason::RunnerError,
        DeadLetterReason::DeliveryLimit,
    ];

    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MalformedMessage => "malformed_message",
            DeadLetterReason::JobNotFound => "job_not_found",
            DeadLetterReason::RunnerError => "runner_error",
            DeadLetterReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The job is settled (or was already): ack.
    Ack,
    /// Wait and try again: re-publish to a retry tier, then ack.
    Retry { after: Duration, why: RetryReason },
    /// Park in the dead-letter queue with a reason, then ack.
    DeadLetter {
        reason: DeadLetterReason,
        detail: String,
    },
}

/// Retry limits of the worker.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries of an unknown job id before it is dead-lettered (the producer may not have
    /// committed the row yet when the message arrives).
    pub not_found_retries: u32,
    /// Retries of a non-transient runner error before it is dead-lettered.
    pub runner_error_retries: u32,
}

/// Default retries of an unknown job id.
pub const DEFAULT_NOT_FOUND_RETRIES: u32 = 5;
/// Default retries of a non-transient runner error.
pub const DEFAULT_RUNNER_ERROR_RETRIES: u32 = 5;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            not_found_retries: DEFAULT_NOT_FOUND_RETRIES,
            runner_error_retries: DEFAULT_RUNNER_ERROR_RETRIES,
        }
    }
}

fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (t - now).to_std().unwrap_or(Duration::ZERO)
}

/// Decide the action for a runner result. `counts` are the message's earlier retries, by
/// reason (already bounded: they come from headers).
pub fn classify(
    result: &Result<RunOutcome, RunError>,
    counts: &RetryCounts,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
) -> Action {
    match result {
        Ok(
            RunOutcome::Completed { .. }
            | RunOutcome::AlreadyTerminal { .. }
            | RunOutcome::Failed { .. }
            | RunOutcome::ClaimLost,
        ) => Action::Ack,
        Ok(RunOutcome::InProgress { lease_expires_at }) => Action::Retry {
            after: until(*lease_expires_at, now).max(Duration::from_secs(1)),
            why: RetryReason::InProgress,
        },
        Ok(RunOutcome::NotDue { scheduled_for }) => Action::Retry {
            after: until(*scheduled_for, now),
            why: RetryReason::NotDue,
        },
        Ok(RunOutcome::NotFound) if counts.not_found < policy.not_found_retries => Action::Retry {
            after: retry::delay_for(counts.not_found),
            why: RetryReason::NotFound,
        },
        Ok(RunOutcome::NotFound) => Action::DeadLetter {
            reason: DeadLetterReason::JobNotFound,
            detail: format!("job not found after {} retries", counts.not_found),
        },
        Err(e) if e.is_transient() => Action::Retry {
            after: retry::delay_for(counts.transient),
            why: RetryReason::Transient,
        },
        Err(_) if counts.runner_error < policy.runner_error_retries => Action::Retry {
            after: retry::delay_for(counts.runner_error),
            why: RetryReason::RunnerError,
        },
        Err(e) => Action::DeadLetter {
            reason: DeadLetterReason::RunnerError,
            detail: crate::telemetry::redact(&e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decay::{DecayError, Invariant, JobStateKind};
    use crate::store::StoreError;

    fn total(n: u32) -> RetryCounts {
        RetryCounts {
            total: n,
            ..Default::default()
        }
    }

    fn not_found(n: u32) -> RetryCounts {
        RetryCounts {
            total: n,
            not_found: n,
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-13T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn labels_are_exact() {
        use RetryReason::*;
        assert_eq!(
            [InProgress, NotDue, NotFound, Transient, RunnerError].map(RetryReason::label),
            [
                "in_progress",
                "not_due",
                "not_found",
                "transient",
                "runner_error"
            ]
        );
        assert_eq!(
            [
                DeadLetterReason::MalformedMessage,
                DeadLetterReason::JobNotFound,
                DeadLetterReason::RunnerError
            ]
            .map(DeadLetterReason::as_str),
            ["malformed_message", "job_not_found", "runner_error"]
        );
    }

    #[test]
    fn settled_outcomes_ack() {
        let p = RetryPolicy::default();
        for o in [
            RunOutcome::Completed {
                result_memory_id: None,
            },
            RunOutcome::AlreadyTerminal {
                state: JobStateKind::Failed,
            },
            RunOutcome::Failed {
                code: Invariant::RunnerFailure,
                reason: "r".into(),
            },
            RunOutcome::ClaimLost,
        ] {
            assert_eq!(
                classify(&Ok(o), &RetryCounts::default(), now(), &p),
                Action::Ack
            );
        }
    }

    #[test]
    fn waits_follow_the_lease_and_the_schedule() {
        let p = RetryPolicy::default();
        let lease = now() + chrono::Duration::seconds(25);
        assert_eq!(
            classify(
                &Ok(RunOutcome::InProgress {
                    lease_expires_at: lease
                }),
                &RetryCounts::default(),
                now(),
                &p
            ),
            Action::Retry {
                after: Duration::from_secs(25),
                why: RetryReason::InProgress
            }
        );
        assert_eq!(
            classify(
                &Ok(RunOutcome::InProgress {
                    lease_expires_at: now()
                }),
                &RetryCounts::default(),
                now(),
                &p
            ),
            Action::Retry {
                after: Duration::from_secs(1),
                why: RetryReason::InProgress
            }
        );
        let at = now() + chrono::Duration::seconds(3);
        assert_eq!(
            classify(
                &Ok(RunOutcome::NotDue { scheduled_for: at }),
                &total(7),
                now(),
                &p
            ),
            Action::Retry {
                after: Duration::from_secs(3),
                why: RetryReason::NotDue
            }
        );
    }

    #[test]
    fn not_found_retries_then_dead_letters() {
        let p = RetryPolicy {
            not_found_retries: 2,
            runner_error_retries: 1,
        };
        assert!(matches!(
            classify(&Ok(RunOutcome::NotFound), &not_found(1), now(), &p),
            Action::Retry {
                why: RetryReason::NotFound,
                ..
            }
        ));
        assert!(matches!(
            classify(&Ok(RunOutcome::NotFound), &not_found(2), now(), &p),
            Action::DeadLetter {
                reason: DeadLetterReason::JobNotFound,
                ..
            }
        ));
    }

    #[test]
    fn transient_errors_retry_forever_others_dead_letter() {
        let p = RetryPolicy {
            not_found_retries: 1,
            runner_error_retries: 1,
        };
        let transient = Err(RunError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        assert!(matches!(
            classify(
                &transient,
                &RetryCounts {
                    transient: 1000,
                    runner_error: 1000,
                    ..Default::default()
                },
                now(),
                &p
            ),
            Action::Retry {
                why: RetryReason::Transient,
                ..
            }
        ));
        let other = Err(RunError::Job(DecayError::Validation("x".into())));
        assert!(matches!(
            classify(&other, &RetryCounts::default(), now(), &p),
            Action::Retry { .. }
        ));
        assert!(matches!(
            classify(
                &other,
                &RetryCounts {
                    runner_error: 1,
                    ..Default::default()
                },
                now(),
                &p
            ),
            Action::DeadLetter {
                reason: DeadLetterReason::RunnerError,
                ..
            }
        ));
    }

    /// Waiting (deferrals, another runner's lease) uses up no budget: after many waits the
    /// not-found and runner-error budgets are whole and their backoff starts short.
    #[test]
    fn waits_do_not_use_up_the_budgets() {
        let p = RetryPolicy {
            not_found_retries: 2,
            runner_error_retries: 2,
        };
        let waited = total(500);
        assert_eq!(
            classify(&Ok(RunOutcome::NotFound), &waited, now(), &p),
            Action::Retry {
                after: Duration::from_secs(1),
                why: RetryReason::NotFound
            }
        );
        let other = Err(RunError::Job(DecayError::Validation("x".into())));
        assert_eq!(
            classify(&other, &waited, now(), &p),
            Action::Retry {
                after: Duration::from_secs(1),
                why: RetryReason::RunnerError
            }
        );
        assert_eq!(RetryReason::NotDue.counter(), None);
        assert_eq!(RetryReason::InProgress.counter(), None);
    }

    /// One reason's retries do not use up another's budget.
    #[test]
    fn budgets_are_per_reason() {
        let p = RetryPolicy {
            not_found_retries: 2,
            runner_error_retries: 2,
        };
        let counts = RetryCounts {
            total: 4,
            not_found: 2,
            runner_error: 0,
            transient: 2,
        };
        let other = Err(RunError::Job(DecayError::Validation("x".into())));
        assert!(matches!(
            classify(&other, &counts, now(), &p),
            Action::Retry {
                why: RetryReason::RunnerError,
                ..
            }
        ));
        assert!(matches!(
            classify(&Ok(RunOutcome::NotFound), &counts, now(), &p),
            Action::DeadLetter {
                reason: DeadLetterReason::JobNotFound,
                ..
            }
        ));
        // Each retry bumps its own counter and the total, nothing else.
        for why in [
            RetryReason::NotFound,
            RetryReason::RunnerError,
            RetryReason::Transient,
        ] {
            let next = counts.next(why.counter());
            assert_eq!(next.total, 5);
            let c = why.counter().unwrap();
            assert_eq!(next.of(c), counts.of(c) + 1, "{why:?}");
        }
    }

    /// The issue's reproduction: `x-decay-attempt: 4294967295` during a database outage. The
    /// header reads as the clamped limit, and the wait is the capped backoff in the top tier
    /// that holds it, computed in constant time (no iterator walked to the attempt number).
    #[test]
    fn a_crafted_attempt_header_during_an_outage_gets_the_capped_wait() {
        use crate::broker::Topology;
        use crate::broker::headers::{Anomaly, MAX_COUNTER};
        use lapin::types::{AMQPValue, FieldTable};

        let p = RetryPolicy::default();
        let transient = Err(RunError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        for key in [
            crate::broker::HEADER_ATTEMPT,
            RetryCounter::Transient.header(),
        ] {
            let mut headers = FieldTable::default();
            headers.insert(key.into(), AMQPValue::LongUInt(u32::MAX));
            let (counts, anomalies) = RetryCounts::read(Some(&headers));
            assert_eq!(anomalies, vec![Anomaly::TooLarge(key, i64::from(u32::MAX))]);
            assert!(counts.total <= MAX_COUNTER && counts.transient <= MAX_COUNTER);
            let action = classify(&transient, &counts, now(), &p);
            let Action::Retry { after, why } = action else {
                panic!("{key}: {action:?}");
            };
            assert_eq!(why, RetryReason::Transient);
            let expected = if key == crate::broker::HEADER_ATTEMPT {
                // The total no longer drives the backoff: the transient count (0) does.
                retry::MIN_DELAY
            } else {
                retry::MAX_DELAY
            };
            assert_eq!(after, expected, "{key}");
            assert_eq!(Topology::tier_for(after).1, expected, "{key}");
            // The next re-publish stays at the limit instead of overflowing.
            assert!(counts.next(why.counter()).total <= MAX_COUNTER);
        }
    }
}
