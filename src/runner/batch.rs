//! Batches of due deterministic jobs (DESIGN §5): one read, one transaction, each job guarded
//! on its own.
//!
//! A batch is the quick path for a set: [`Store::read_jobs_for_run`] reads every row with its
//! sources in one round trip, the pure domain computes each job's effect, and
//! [`Store::settle_pending_due`] claims and settles them all in one statement under the quick
//! path's guard (pending and due, not locked by another runner), job by job. What a batch
//! settles ends exactly like a single run ([`super::conclude`]); what it cannot settle is
//! handed back, so nothing about a job's outcome depends on whether it came in a batch:
//!
//! * terminal, not due, unknown, live claim elsewhere: reported from the one read, as
//!   [`Runner::run_specific_job`] would;
//! * left out by the guard (cancelled, claimed or being settled elsewhere between our read and
//!   our write): re-read and reported one by one through the two-phase path's refusal table;
//! * LLM jobs, recoveries of expired claims, and a second delivery of a job already in the
//!   batch: [`BatchOutcome::Alone`], for the caller to run on the per-job path.
//!
//! A job's own error (missing source, malformed row) is settled `failed` with its invariant in
//! the same statement as the rest. A database error is the whole batch's: nothing is
//! committed, and the caller retries every job of it. A statement the database refuses for
//! another reason (a constraint) is not retried as a batch: its jobs are handed back to run
//! alone, where the refusal becomes the one guilty job's failure. The same happens when the
//! statement waited too long on a lock ([`crate::store::BATCH_LOCK_TIMEOUT`]): a job whose
//! sources someone holds waits alone, not with its whole batch.

use std::collections::{HashMap, HashSet};

use super::{Run, RunError, RunOutcome, Runner, conclude, skip_terminal};
use crate::decay::effect;
use crate::decay::{DecayJob, JobStateKind, SummaryMethod};
use crate::ids::DecayJobId;
use crate::store::{JobSnapshot, SettleEffect};

/// What a batch did with one of its jobs.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Run (or refused) here, with the same outcome a single run would have had.
    Ran(Result<RunOutcome, RunError>),
    /// Not for the batch path: run it on its own ([`Runner::run_specific_job`] and friends).
    Alone,
}

/// Where a job of the batch goes after the read.
enum Plan<'a> {
    Done(RunOutcome),
    Alone,
    Quick(&'a JobSnapshot),
}

impl Runner {
    /// Run a batch of jobs (by delivery: ids may repeat). Returns one outcome per id, in
    /// order. `Err`: the database failed the batch and nothing of it was committed. "Due"
    /// and "lease live" are judged against the database's instant of the one read.
    pub async fn run_batch(&self, ids: &[DecayJobId]) -> Result<Vec<BatchOutcome>, RunError> {
        let distinct: Vec<DecayJobId> = {
            let mut seen = HashSet::new();
            ids.iter().copied().filter(|id| seen.insert(*id)).collect()
        };
        let snapshots: HashMap<DecayJobId, JobSnapshot> = self
            .store
            .read_jobs_for_run(&distinct)
            .await?
            .into_iter()
            .map(|s| (s.record.id, s))
            .collect();

        let mut seen = HashSet::new();
        let plans: Vec<Plan<'_>> = ids
            .iter()
            .map(|id| {
                if !seen.insert(*id) {
                    // The first delivery of this job runs in the batch; this one runs after
                    // it, alone, and finds the job settled.
                    return Plan::Alone;
                }
                let Some(snapshot) = snapshots.get(id) else {
                    return Plan::Done(RunOutcome::NotFound);
                };
                let record = &snapshot.record;
                let now = snapshot.now;
                match record.state_kind() {
                    Some(state) if state.is_terminal() => Plan::Done(skip_terminal(id, state)),
                    Some(JobStateKind::Pending) if record.scheduled_for > now => {
                        Plan::Done(RunOutcome::NotDue {
                            scheduled_for: record.scheduled_for,
                        })
                    }
                    Some(JobStateKind::Pending)
                        if record.summary_method != SummaryMethod::LlmSummary.wire() =>
                    {
                        Plan::Quick(snapshot)
                    }
                    Some(JobStateKind::InProgress)
                        if record.lease_expires_at.is_some_and(|exp| exp > now) =>
                    {
                        Plan::Done(RunOutcome::InProgress {
                            lease_expires_at: record.lease_expires_at.unwrap_or(now),
                        })
                    }
                    _ => Plan::Alone,
                }
            })
            .collect();

        let quick: Vec<&JobSnapshot> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Quick(s) => Some(*s),
                _ => None,
            })
            .collect();
        let jobs: Vec<_> = quick
            .iter()
            .map(|s| DecayJob::from_record(&s.record))
            .collect();
        let runs: Vec<Run<'_>> = quick
            .iter()
            .zip(&jobs)
            .map(|(s, job)| Run::new(&s.record, job.as_ref().ok()))
            .collect();
        // The pure part: each job's effect, or its own error as a `failed` settle.
        let items: Vec<(DecayJobId, SettleEffect)> = quick
            .iter()
            .zip(&jobs)
            .map(|(s, job)| {
                let computed = match job {
                    Ok(job) => effect::compute(job, &s.sources).map_err(RunError::from),
                    Err(e) => Err(e.for_job(&s.record.id).into()),
                };
                let effect = match computed {
                    Ok(effect) => SettleEffect::from(effect),
                    Err(e) => SettleEffect::Failed(e.failure()),
                };
                (s.record.id, effect)
            })
            .collect();

        let settled = match self
            .store
            .settle_pending_due(&self.cfg.worker_id, &items)
            .await
        {
            Ok(settled) => Some(settled),
            Err(e) if e.is_lock_timeout() => {
                tracing::info!(target: super::RUNNER_LOG_TARGET, jobs = items.len(),
                    "the batch waited too long on a lock; its jobs run one by one");
                None
            }
            Err(e) if e.is_transient() => {
                for run in &runs {
                    super::observe(run, "error");
                }
                return Err(e.into());
            }
            Err(e) => {
                tracing::warn!(target: super::RUNNER_LOG_TARGET, jobs = items.len(),
                    error = %crate::telemetry::redact(&e.to_string()),
                    "the batch statement was refused; its jobs run one by one");
                None
            }
        };

        let mut quick_results = Vec::with_capacity(items.len());
        for (run, (id, effect)) in runs.iter().zip(items) {
            let Some(settled) = &settled else {
                quick_results.push(BatchOutcome::Alone);
                continue;
            };
            let done = settled.contains(&id).then_some(effect);
            let outcome = match conclude(run, true, Ok(done)) {
                Ok(Some(outcome)) => Ok(outcome),
                // Left out by its guard: ask the row, one by one, as a single run does.
                Ok(None) => self.claim_and_run(&id, None).await,
                Err(e) => Err(e),
            };
            quick_results.push(BatchOutcome::Ran(outcome));
        }
        let mut quick_results = quick_results.into_iter();
        Ok(plans
            .into_iter()
            .map(|plan| match plan {
                Plan::Done(outcome) => BatchOutcome::Ran(Ok(outcome)),
                Plan::Alone => BatchOutcome::Alone,
                Plan::Quick(_) => quick_results.next().unwrap_or(BatchOutcome::Alone),
            })
            .collect())
    }
}
