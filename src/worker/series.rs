//! The worker's metrics, declared up front: every documented series exists on `/metrics` from
//! the start, at zero, with its HELP line. A series that appears only with its first
//! increment cannot be told apart from a worker that does not export it, and `rate()` and
//! alerts over it have no baseline (issue 16).

use crate::decay::{JobKind, JobStateKind};
use crate::worker::outcome::{DeadLetterReason, RetryReason};

/// The `outcome` labels of `decay_jobs_total`.
pub const JOB_OUTCOMES: [&str; 7] = [
    "completed",
    "noop",
    "failed",
    "retried",
    "deferred",
    "dead_lettered",
    "claim_lost",
];

/// Describe every worker series and register each label set at zero. Call once, after the
/// recorder is installed.
pub fn declare() {
    describe();
    for outcome in JOB_OUTCOMES {
        metrics::counter!("decay_jobs_total", "outcome" => outcome).absolute(0);
    }
    for kind in JobKind::ALL {
        for state in [JobStateKind::Completed, JobStateKind::Failed] {
            // Registering the handle is enough: the exporter renders it with no samples.
            let _ = metrics::histogram!(
                "decay_job_duration_seconds",
                "kind" => kind.wire(),
                "outcome" => state.wire()
            );
        }
    }
    // Registered like the duration histogram: present from the start, with no samples.
    let _ = metrics::histogram!("decay_batch_size");
    metrics::gauge!("decay_jobs_in_flight").set(0.0);
    for why in RetryReason::ALL {
        metrics::counter!("decay_retries_total", "why" => why.label()).absolute(0);
    }
    for reason in DeadLetterReason::ALL {
        metrics::counter!("decay_dead_letters_total", "reason" => reason.as_str()).absolute(0);
    }
    for name in [
        "decay_deliveries_total",
        "decay_redeliveries_total",
        "decay_broker_reconnects_total",
        "decay_database_errors_total",
        "decay_lease_recoveries_total",
        "decay_reconciled_total",
        "decay_claims_lost_in_flight_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

fn describe() {
    metrics::describe_counter!(
        "decay_jobs_total",
        "Deliveries settled, by outcome (completed, noop, failed, retried, deferred, dead_lettered, claim_lost)"
    );
    metrics::describe_histogram!(
        "decay_job_duration_seconds",
        "Time to run one job, by kind and outcome"
    );
    metrics::describe_histogram!(
        "decay_batch_size",
        "Jobs per batch run by the worker (one read, one transaction)"
    );
    metrics::describe_gauge!("decay_jobs_in_flight", "Jobs running now");
    metrics::describe_counter!("decay_deliveries_total", "Deliveries received");
    metrics::describe_counter!(
        "decay_redeliveries_total",
        "Deliveries flagged redelivered by the broker"
    );
    metrics::describe_counter!(
        "decay_retries_total",
        "Messages re-published to a retry queue, by why (in_progress, not_due, not_found, transient, runner_error)"
    );
    metrics::describe_counter!(
        "decay_dead_letters_total",
        "Messages this worker parked in the dead-letter queue, by reason"
    );
    metrics::describe_counter!(
        "decay_broker_reconnects_total",
        "Broker sessions re-opened after a failure"
    );
    metrics::describe_counter!(
        "decay_database_errors_total",
        "Runs that ended in a database error (retried)"
    );
    metrics::describe_counter!(
        "decay_lease_recoveries_total",
        "Expired claims of other runners recovered"
    );
    metrics::describe_counter!(
        "decay_reconciled_total",
        "Jobs republished by the reconciler"
    );
    metrics::describe_counter!(
        "decay_claims_lost_in_flight_total",
        "Runs stopped mid-call because a heartbeat found the claim gone (cancelled or taken over)"
    );
}
