//! What the worker does with a delivery once the runner has spoken (DESIGN §4, outcome table).
//! How long a retry waits is [`crate::retry`]'s business.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::decay::DecayError;
use crate::retry;
use crate::decay::runner::RunOutcome;

/// Dead-letter reason of a body that is not a job message.
pub const REASON_MALFORMED: &str = "malformed_message";
/// Dead-letter reason of an id that stayed unknown after the not-found retries.
pub const REASON_NOT_FOUND: &str = "job_not_found";
/// Dead-letter reason of a runner error that persisted through its retries.
pub const REASON_RUNNER_ERROR: &str = "runner_error";
/// Dead-letter reason of a message redelivered (returned unacked) too often: whatever
/// handles it keeps dying. The broker uses the same name for its own delivery limit.
pub const REASON_DELIVERY_LIMIT: &str = "delivery_limit";

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The job is settled (or was already): ack.
    Ack,
    /// Wait and try again: re-publish to a retry tier, then ack.
    Retry { after: Duration, why: &'static str },
    /// Park in the dead-letter queue with a reason, then ack.
    DeadLetter {
        reason: &'static str,
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

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            not_found_retries: 5,
            runner_error_retries: 5,
        }
    }
}

fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (t - now).to_std().unwrap_or(Duration::ZERO)
}

/// Decide the action for a runner result. `attempt` counts our earlier re-publishes.
pub fn classify(
    result: &Result<RunOutcome, DecayError>,
    attempt: u32,
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
            why: "in_progress",
        },
        Ok(RunOutcome::NotDue { scheduled_for }) => Action::Retry {
            after: until(*scheduled_for, now),
            why: "not_due",
        },
        Ok(RunOutcome::NotFound) if attempt < policy.not_found_retries => Action::Retry {
            after: retry::delay_for(attempt),
            why: "not_found",
        },
        Ok(RunOutcome::NotFound) => Action::DeadLetter {
            reason: REASON_NOT_FOUND,
            detail: format!("job not found after {attempt} retries"),
        },
        Err(e) if e.is_transient() => Action::Retry {
            after: retry::delay_for(attempt),
            why: "transient",
        },
        Err(_) if attempt < policy.runner_error_retries => Action::Retry {
            after: retry::delay_for(attempt),
            why: "runner_error",
        },
        Err(e) => Action::DeadLetter {
            reason: REASON_RUNNER_ERROR,
            detail: crate::telemetry::redact(&e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decay::JobStateKind;
    use crate::store::StoreError;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-13T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
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
                code: "c".into(),
                reason: "r".into(),
            },
            RunOutcome::ClaimLost,
        ] {
            assert_eq!(classify(&Ok(o), 0, now(), &p), Action::Ack);
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
                0,
                now(),
                &p
            ),
            Action::Retry {
                after: Duration::from_secs(25),
                why: "in_progress"
            }
        );
        assert_eq!(
            classify(
                &Ok(RunOutcome::InProgress {
                    lease_expires_at: now()
                }),
                0,
                now(),
                &p
            ),
            Action::Retry {
                after: Duration::from_secs(1),
                why: "in_progress"
            }
        );
        let at = now() + chrono::Duration::seconds(3);
        assert_eq!(
            classify(&Ok(RunOutcome::NotDue { scheduled_for: at }), 7, now(), &p),
            Action::Retry {
                after: Duration::from_secs(3),
                why: "not_due"
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
            classify(&Ok(RunOutcome::NotFound), 1, now(), &p),
            Action::Retry {
                why: "not_found",
                ..
            }
        ));
        assert!(matches!(
            classify(&Ok(RunOutcome::NotFound), 2, now(), &p),
            Action::DeadLetter {
                reason: REASON_NOT_FOUND,
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
        let transient = Err(DecayError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        assert!(matches!(
            classify(&transient, 1000, now(), &p),
            Action::Retry {
                why: "transient",
                ..
            }
        ));
        let other = Err(DecayError::Validation("x".into()));
        assert!(matches!(
            classify(&other, 0, now(), &p),
            Action::Retry { .. }
        ));
        assert!(matches!(
            classify(&other, 1, now(), &p),
            Action::DeadLetter {
                reason: REASON_RUNNER_ERROR,
                ..
            }
        ));
    }
}
