//! The decay job runner: claim -> dispatch -> settle (spec §4), made safe (DESIGN §3). It puts
//! the domain ([`crate::decay`]), the store and a summary backend together.
//!
//! * **Compare-and-set claim** with a lease and a fencing token: of any number of concurrent
//!   runners, exactly one claims a job.
//! * **Atomic effects**: the summary memory, its edges and the `completed` state commit in one
//!   guarded statement, so a runner whose claim was lost writes nothing.
//! * **No stuck jobs**: a heartbeat extends the lease while a job runs; an expired lease is
//!   recovered by the next runner (stage `recover`), up to `max_attempts` claims, after which
//!   the job settles `failed` with `decay.runner.attempts_exhausted`.
//! * **Transient vs permanent**: a database outage never fails a job; it surfaces as `Err` and
//!   the caller retries. Only the job's own errors settle `failed`, with the stable invariant in
//!   `failure_code` and the full text in `state_reason`.
//! * **One clock, the database's**: every claim, lease, heartbeat, expiry and due check, and
//!   every timestamp a run writes, is PostgreSQL's `now()` (see [`crate::store::Clock`]), so
//!   a replica whose clock runs ahead cannot mistake a live lease for an expired one. The
//!   runner takes no `now`; what it judges itself (due, lease live, attestation freshness)
//!   it judges against the database's instant read with the row.
//! * **A lost claim stops the work**: when a heartbeat finds the claim gone (cancelled, or
//!   taken over), the job's work in progress (the LLM call) is dropped at once, not run to
//!   its end for an answer nobody can settle.
//!
//! A job runs on one of two paths, and both end in the same [`Store::settle`]:
//! * the **quick path**, for a due deterministic job or review: one read (the row with its
//!   sources), then one statement that claims and settles together (guard: pending and due).
//!   Nobody ever sees the job `in_progress`, and a crash leaves it `pending`;
//! * the **two-phase path**, for LLM jobs (a slow backend call) and recoveries of expired
//!   claims: claim with a lease, run with heartbeats, settle guarded by the claim token.
//!
//! A **batch** ([`Runner::run_batch`], in [`batch`]) is the quick path for a set of jobs: one
//! read of every row and source, one settle statement for all of them, each job guarded on
//! its own; it ends each job exactly as a single run does and hands back what belongs on the
//! two-phase path. [`Store::settle`] is the same statement for a set of one.
//!
//! Every stage logs one line under the target [`RUNNER_LOG_TARGET`] with the reference's stage
//! names and messages (spec §4.6), once the stage has happened.

mod batch;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::decay::attestation::TrustPolicy;
use crate::decay::effect::{self, Effect, LoadedSources};
use crate::decay::{
    DecayError, DecayJob, Failure, Invariant, JobKind, JobRecord, JobStateKind, SummaryMethod,
    llm_summary,
};
use crate::ids::{DecayJobId, MemoryId};
use crate::llm::{self, SummaryBackend};
use crate::store::{ClaimedJob, SettleEffect, SettleGuard, SettleOutcome, Store, StoreError};

pub use batch::BatchOutcome;

/// The stable log target of the runner's stage lines (spec §9).
pub const RUNNER_LOG_TARGET: &str = "cortex_memory::decay::runner";

/// Default lease of a claim.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default heartbeat interval: a third of the lease, so two heartbeats may fail in a row.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Default number of claims before an unsettled job fails.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// One stage line of a job (spec §4.6).
macro_rules! stage {
    ($stage:literal, $job:expr, $($msg:tt)+) => {
        tracing::info!(target: RUNNER_LOG_TARGET, stage = $stage, job = %$job, $($msg)+)
    };
}

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How long a claim stays valid without a heartbeat. A crashed runner's job is recoverable
    /// this long after its last heartbeat.
    pub lease: Duration,
    /// How often a running job's lease is extended. Must be well under `lease`.
    pub heartbeat_every: Duration,
    /// Claims allowed before an unsettled job is failed with `decay.runner.attempts_exhausted`.
    pub max_attempts: i32,
    /// Recorded in `claimed_by`: which runner holds a claim.
    pub worker_id: String,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            lease: DEFAULT_LEASE,
            heartbeat_every: DEFAULT_HEARTBEAT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            worker_id: default_worker_id(),
        }
    }
}

/// `host/pid`, the default runner identity.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{host}/{}", std::process::id())
}

/// What a run did. Callers (the worker, the CLI) map this to ack / retry / exit codes.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Claimed, run and settled `completed` now.
    Completed { result_memory_id: Option<MemoryId> },
    /// The job was already terminal: nothing was written (byte-identical row).
    AlreadyTerminal { state: JobStateKind },
    /// Claimed, run and settled `failed` now with this code and reason.
    Failed { code: Invariant, reason: String },
    /// Another runner holds a live claim until `lease_expires_at`.
    InProgress { lease_expires_at: DateTime<Utc> },
    /// `pending` but `scheduled_for` is in the future.
    NotDue { scheduled_for: DateTime<Utc> },
    /// No job with this id.
    NotFound,
    /// Our claim was lost while running (cancelled, or the lease expired and another runner
    /// took over). Nothing was written.
    ClaimLost,
}

impl RunOutcome {
    /// The reference's refusal text for outcomes that did not run the job.
    pub fn refusal(&self, id: &DecayJobId) -> Option<String> {
        match self {
            RunOutcome::NotFound => Some(format!("decay job {id} not found")),
            RunOutcome::InProgress { lease_expires_at } => Some(format!(
                "decay job {id} is already in_progress; refusing to re-claim from another runner (lease expires at {})",
                lease_expires_at.to_rfc3339()
            )),
            RunOutcome::NotDue { scheduled_for } => Some(format!(
                "decay job {id} is scheduled for {}; not running it early",
                scheduled_for.to_rfc3339()
            )),
            RunOutcome::ClaimLost => Some(format!(
                "decay job {id} was cancelled or re-claimed while running; nothing written"
            )),
            _ => None,
        }
    }
}

/// Why a run stopped short. Only [`RunError::Store`] ever reaches a caller, and only when the
/// job could not be settled: a job's own error is recorded in its row and reported as
/// [`RunOutcome::Failed`]. Display texts are the reference's (spec §4.5).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database's trouble, or a statement it refused.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The job's own error, on its way to the settle.
    #[error(transparent)]
    Job(#[from] DecayError),
}

impl RunError {
    /// Retryable: the environment's failure (connection lost, timeout, failover), never the
    /// job's. Such an error must not settle the job `failed`.
    pub fn is_transient(&self) -> bool {
        matches!(self, RunError::Store(e) if e.is_transient())
    }

    /// What a job is settled with when this error ends its run.
    fn failure(&self) -> Failure {
        match self {
            RunError::Job(e) => e.failure(),
            RunError::Store(_) => Failure::new(Invariant::RunnerFailure, self.to_string()),
        }
    }
}

/// A run on its way to the settle: which job, since when, and the job if its row converted.
struct Run<'a> {
    id: DecayJobId,
    kind: &'static str,
    started: Instant,
    job: Option<&'a DecayJob>,
}

impl<'a> Run<'a> {
    fn new(record: &JobRecord, job: Option<&'a DecayJob>) -> Run<'a> {
        Run {
            id: record.id,
            kind: JobKind::from_wire(&record.kind).map_or("unknown", JobKind::wire),
            started: Instant::now(),
            job,
        }
    }
}

/// Runs decay jobs against a store.
#[derive(Clone)]
pub struct Runner {
    store: Store,
    cfg: RunnerConfig,
    backend: Arc<dyn SummaryBackend>,
    trust: Arc<TrustPolicy>,
}

impl Runner {
    pub fn new(
        store: Store,
        cfg: RunnerConfig,
        backend: Arc<dyn SummaryBackend>,
        trust: TrustPolicy,
    ) -> Runner {
        Runner {
            store,
            cfg,
            backend,
            trust: Arc::new(trust),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.cfg
    }

    /// Run a specific job by id (spec §4.3), without an attestation.
    pub async fn run_specific_job(&self, id: &DecayJobId) -> Result<RunOutcome, RunError> {
        self.run_specific_job_with_attestation(id, None).await
    }

    /// Run a specific job by id. Terminal: no-op. Live claim: refused with the lease's expiry.
    /// Expired claim: recovered. Future `scheduled_for`: not run early. A due deterministic
    /// job or review takes the quick path; the rest the two-phase path.
    pub async fn run_specific_job_with_attestation(
        &self,
        id: &DecayJobId,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, RunError> {
        let Some(snapshot) = self.store.read_job_for_run(id).await? else {
            return Ok(RunOutcome::NotFound);
        };
        let record = &snapshot.record;
        let now = snapshot.now;
        match record.state_kind() {
            Some(state) if state.is_terminal() => Ok(skip_terminal(id, state)),
            Some(JobStateKind::Pending) if record.scheduled_for > now => Ok(RunOutcome::NotDue {
                scheduled_for: record.scheduled_for,
            }),
            Some(JobStateKind::Pending)
                if record.summary_method != SummaryMethod::LlmSummary.wire() =>
            {
                self.run_quick(record, &snapshot.sources, attestation).await
            }
            Some(JobStateKind::InProgress)
                if record.lease_expires_at.is_some_and(|exp| exp > now) =>
            {
                Ok(RunOutcome::InProgress {
                    lease_expires_at: record.lease_expires_at.unwrap_or(now),
                })
            }
            _ => self.claim_and_run(id, attestation).await,
        }
    }

    /// Run the head of the ready list (spec §4.2). `None` when nothing is ready. Unlike the
    /// reference, the job id is returned whatever the outcome (spec §11.6).
    pub async fn run_next_pending_job(&self) -> Result<Option<(DecayJobId, RunOutcome)>, RunError> {
        self.run_next_pending_job_with_attestation(None).await
    }

    /// [`Runner::run_next_pending_job`] with an optional attestation for an LLM head job;
    /// deterministic jobs ignore it.
    pub async fn run_next_pending_job_with_attestation(
        &self,
        attestation: Option<&Path>,
    ) -> Result<Option<(DecayJobId, RunOutcome)>, RunError> {
        let Some(claimed) = self
            .store
            .claim_next_pending(self.cfg.lease, &self.cfg.worker_id)
            .await?
        else {
            tracing::info!(target: RUNNER_LOG_TARGET, stage = "idle", "no pending decay jobs");
            return Ok(None);
        };
        let id = claimed.record.id;
        let outcome = self.run_claimed(claimed, attestation).await?;
        Ok(Some((id, outcome)))
    }

    /// The quick path: compute from the snapshot, then claim and settle in one statement.
    async fn run_quick(
        &self,
        record: &JobRecord,
        sources: &LoadedSources,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, RunError> {
        let job = DecayJob::from_record(record);
        let run = Run::new(record, job.as_ref().ok());
        let computed = match &job {
            Ok(job) => effect::compute(job, sources).map_err(RunError::from),
            Err(e) => Err(e.for_job(&record.id).into()),
        };
        let guard = SettleGuard::PendingDue {
            claimed_by: &self.cfg.worker_id,
        };
        match self.finish(&run, guard, computed).await? {
            Some(outcome) => Ok(outcome),
            // Another runner claimed it between our read and our write: ask the row.
            None => self.claim_and_run(&record.id, attestation).await,
        }
    }

    /// The two-phase path: claim (or recover an expired claim), run with heartbeats, settle.
    /// When the claim is refused, say why from the row.
    async fn claim_and_run(
        &self,
        id: &DecayJobId,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, RunError> {
        let claimed = self
            .store
            .claim_job(
                id,
                self.cfg.lease,
                &self.cfg.worker_id,
                self.cfg.max_attempts,
            )
            .await?;
        if let Some(claimed) = claimed {
            return self.run_claimed(claimed, attestation).await;
        }
        let Some((record, now)) = self.store.read_job_now(id).await? else {
            return Ok(RunOutcome::NotFound);
        };
        match record.state_kind() {
            Some(state) if state.is_terminal() => Ok(skip_terminal(id, state)),
            Some(JobStateKind::Pending) if record.scheduled_for > now => Ok(RunOutcome::NotDue {
                scheduled_for: record.scheduled_for,
            }),
            Some(JobStateKind::InProgress) => match (record.lease_expires_at, record.claim_token) {
                (Some(exp), Some(token))
                    if exp <= now && record.attempts >= self.cfg.max_attempts =>
                {
                    // Expired, and the claim above refused it: attempts are exhausted. (With
                    // attempts left, the claim was refused because another runner holds the
                    // row right now: the arm below, retry shortly.)
                    self.settle_exhausted(id, token, record.attempts).await
                }
                (exp, _) => Ok(RunOutcome::InProgress {
                    lease_expires_at: exp.unwrap_or(now),
                }),
            },
            // Pending and due (or expired) but not claimed: another runner holds the row while
            // its claim or settle runs (the claim skips a locked row instead of waiting with
            // the delivery unacked). Report it as in progress; the caller retries shortly.
            _ => Ok(RunOutcome::InProgress {
                lease_expires_at: record.lease_expires_at.unwrap_or(now),
            }),
        }
    }

    /// Run a job we claimed: dispatch while the heartbeat keeps the lease, then settle
    /// guarded by the claim token.
    async fn run_claimed(
        &self,
        claimed: ClaimedJob,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, RunError> {
        let ClaimedJob {
            record,
            token,
            recovered,
            ..
        } = claimed;
        let id = record.id;
        if recovered {
            metrics::counter!("decay_lease_recoveries_total").increment(1);
            stage!(
                "recover",
                id,
                "recovering expired claim (attempt {})",
                record.attempts
            );
        } else {
            stage!("claim", id, "transitioning pending -> in_progress");
        }
        let job = DecayJob::from_record(&record);
        let run = Run::new(&record, job.as_ref().ok());
        let computed = match &job {
            // The dispatch (an LLM call, possibly long) runs while the heartbeat keeps the
            // lease. If the heartbeat finds the claim gone, the dispatch future is dropped
            // right there, which cancels the backend call in flight (its HTTP request is
            // aborted): nobody could settle its answer, and it would only spend money.
            Ok(job) => tokio::select! {
                biased;
                r = self.dispatch(job, attestation) => r,
                () = self.heartbeat_loop(&id, token) => {
                    metrics::counter!("decay_claims_lost_in_flight_total").increment(1);
                    tracing::warn!(target: RUNNER_LOG_TARGET, stage = "settle", job = %id,
                        "claim lost while running (cancelled or re-claimed); work stopped, nothing written");
                    observe(&run, "claim_lost");
                    return Ok(RunOutcome::ClaimLost);
                }
            },
            Err(e) => Err(e.for_job(&id).into()),
        };
        match self
            .finish(&run, SettleGuard::Claim(token), computed)
            .await?
        {
            Some(outcome) => Ok(outcome),
            None => Ok(RunOutcome::ClaimLost),
        }
    }

    /// Settle a run's result, then log and measure what happened: the one ending of every run.
    /// `None`: the guard matched no row, nothing was written.
    async fn finish(
        &self,
        run: &Run<'_>,
        guard: SettleGuard<'_>,
        computed: Result<Effect, RunError>,
    ) -> Result<Option<RunOutcome>, RunError> {
        let settled = self.settle(&run.id, guard, computed).await;
        let claimed_here = matches!(guard, SettleGuard::PendingDue { .. });
        conclude(run, claimed_here, settled)
    }

    /// The one guarded settle of a run's result. The job's own errors become a `failed`
    /// settle; the environment's are returned untouched, and the job stays as it was.
    /// `None`: the guard matched no row.
    async fn settle(
        &self,
        id: &DecayJobId,
        guard: SettleGuard<'_>,
        computed: Result<Effect, RunError>,
    ) -> Result<Option<SettleEffect>, RunError> {
        let effect = match computed {
            Ok(effect) => SettleEffect::from(effect),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => SettleEffect::Failed(e.failure()),
        };
        match self.store.settle(id, guard, &effect).await {
            Ok(outcome) => Ok(settled(outcome, effect)),
            // The summary itself was refused by the database (a constraint): the job's own
            // failure, recorded rather than retried forever.
            Err(e) if !e.is_transient() && matches!(effect, SettleEffect::Summary { .. }) => {
                let failed = SettleEffect::Failed(RunError::Store(e).failure());
                let outcome = self.store.settle(id, guard, &failed).await?;
                Ok(settled(outcome, failed))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Settle `failed` a job whose lease expired after its last allowed attempt. Guarded by
    /// the expired claim's token and the expiry, so a live claim is never touched.
    async fn settle_exhausted(
        &self,
        id: &DecayJobId,
        expired_token: Uuid,
        attempts: i32,
    ) -> Result<RunOutcome, RunError> {
        let failure = Failure::new(
            Invariant::RunnerAttemptsExhausted,
            format!(
                "decay job {id} was claimed {attempts} times without settling (max_attempts {})",
                self.cfg.max_attempts
            ),
        );
        let guard = SettleGuard::ExpiredClaim(expired_token);
        let effect = SettleEffect::Failed(failure.clone());
        match self.store.settle(id, guard, &effect).await? {
            SettleOutcome::Settled => {
                stage!("settle", id, "compression failed: {}", failure.invariant);
                stage!("complete", id, "transitioned to failed");
                Ok(RunOutcome::Failed {
                    code: failure.invariant,
                    reason: failure.reason,
                })
            }
            SettleOutcome::ClaimLost => Ok(RunOutcome::ClaimLost),
        }
    }

    /// Extend the lease to `lease` from now (the database's clock) every `heartbeat_every`
    /// while the job runs. Returns only when a heartbeat finds the claim lost; otherwise the
    /// dispatch finishing ends it. A failed heartbeat (the database unreachable) is not a lost
    /// claim: the lease still runs, and the next beat tries again.
    async fn heartbeat_loop(&self, id: &DecayJobId, token: Uuid) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            match self.store.heartbeat(id, token, self.cfg.lease).await {
                Ok(true) => tracing::debug!(job = %id, "lease extended"),
                Ok(false) => {
                    tracing::warn!(job = %id, "heartbeat found the claim lost");
                    return;
                }
                Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
            }
        }
    }

    /// The two-phase dispatch, from a fresh snapshot of the job's sources: LLM jobs call the
    /// backend; everything else is computed exactly as on the quick path.
    async fn dispatch(
        &self,
        job: &DecayJob,
        attestation: Option<&Path>,
    ) -> Result<Effect, RunError> {
        let Some(snapshot) = self.store.read_job_for_run(&job.id).await? else {
            return Err(DecayError::Validation(format!("decay job {} not found", job.id)).into());
        };
        stage!("dispatch", job.id, "{}", dispatch_message(job));
        if job.summary_method == SummaryMethod::LlmSummary {
            // The envelope's freshness is judged by the database's clock, read with the row.
            Ok(self
                .run_llm(job, &snapshot.sources, snapshot.now, attestation)
                .await?)
        } else {
            Ok(effect::compute(job, &snapshot.sources)?)
        }
    }

    /// The `llm_summary` path (spec §7.1): attestation first, then sources, backend, checks.
    async fn run_llm(
        &self,
        job: &DecayJob,
        loaded: &LoadedSources,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<Effect, DecayError> {
        let envelope = attestation.map(llm::files::load_envelope);
        let verified = llm_summary::authorize(job, envelope, &self.trust, now)?;
        let sources = llm_summary::sources(job, loaded)?;
        let response =
            llm::summarize_for_job(self.backend.as_ref(), &verified, &job.id, sources.claims())
                .await?;
        let summary = sources.summary(response.claim, &response.model_name_echoed, verified);
        Ok(Effect::Summary(Box::new(summary)))
    }
}

/// A terminal job is a no-op (spec §4.3).
fn skip_terminal(id: &DecayJobId, state: JobStateKind) -> RunOutcome {
    stage!("skip_terminal", id, "job is already {}; no-op", state);
    RunOutcome::AlreadyTerminal { state }
}

/// Log and measure how a run's settle ended (the one ending of every run, single or batched).
/// `claimed_here`: the settle made the claim itself (the quick path, a batch). `None`: the
/// guard matched no row, nothing was written.
fn conclude(
    run: &Run<'_>,
    claimed_here: bool,
    settled: Result<Option<SettleEffect>, RunError>,
) -> Result<Option<RunOutcome>, RunError> {
    let id = &run.id;
    let outcome = match settled {
        Ok(Some(effect)) => {
            if claimed_here {
                // The claim happened in the settle statement; say so now that it did.
                stage!("claim", id, "transitioning pending -> in_progress");
                if let Some(job) = run.job {
                    stage!("dispatch", id, "{}", dispatch_message(job));
                }
            }
            Some(settled_outcome(id, effect))
        }
        // The quick path's compare-and-set found the job no longer pending: nothing ran.
        Ok(None) if claimed_here => return Ok(None),
        Ok(None) => {
            tracing::warn!(target: RUNNER_LOG_TARGET, stage = "settle", job = %id,
                "claim lost (cancelled or re-claimed); nothing written");
            None
        }
        Err(e) => {
            observe(run, "error");
            return Err(e);
        }
    };
    observe(run, outcome.as_ref().map_or("claim_lost", outcome_label));
    Ok(outcome)
}

/// What a settle that matched wrote, or `None` when it matched nothing.
fn settled(outcome: SettleOutcome, effect: SettleEffect) -> Option<SettleEffect> {
    (outcome == SettleOutcome::Settled).then_some(effect)
}

/// Log the settle and complete stages of a settled job and say what it came to.
fn settled_outcome(id: &DecayJobId, effect: SettleEffect) -> RunOutcome {
    let outcome = match effect {
        SettleEffect::Summary { memory_id, .. } => {
            stage!("settle", id, "compression ok; produced {}", memory_id);
            RunOutcome::Completed {
                result_memory_id: Some(memory_id),
            }
        }
        SettleEffect::NoMemory => {
            stage!("settle", id, "ceremony opened; no memory produced");
            RunOutcome::Completed {
                result_memory_id: None,
            }
        }
        SettleEffect::Failed(failure) => {
            stage!("settle", id, "compression failed: {}", failure.reason);
            RunOutcome::Failed {
                code: failure.invariant,
                reason: failure.reason,
            }
        }
    };
    stage!(
        "complete",
        id,
        "transitioned to {}",
        outcome_label(&outcome)
    );
    outcome
}

/// The `completed` / `failed` label of a settled outcome.
fn outcome_label(outcome: &RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Failed { .. } => JobStateKind::Failed.wire(),
        _ => JobStateKind::Completed.wire(),
    }
}

/// The `dispatch` stage message of a job (spec §4.4).
fn dispatch_message(job: &DecayJob) -> String {
    match (job.kind, job.summary_method) {
        (JobKind::ExpiredPrincipleReview, _) => {
            "kind=expired_principle_review (no in-process work; ceremony opened separately)".into()
        }
        (kind, SummaryMethod::LlmSummary) => {
            format!("kind={} method=llm_summary (operator-fired)", kind.wire())
        }
        (kind, method) => format!("kind={} method={}", kind.wire(), method.wire()),
    }
}

/// The job duration histogram: one sample per run that reached its settle, labelled by kind
/// and by what the run came to (`completed`, `failed`, `claim_lost`, `error`).
fn observe(run: &Run<'_>, outcome: &'static str) {
    metrics::histogram!("decay_job_duration_seconds", "kind" => run.kind, "outcome" => outcome)
        .record(run.started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decay::{JobSources, JobState};
    use crate::ids::{EpisodeId, PrincipleId};

    fn job(kind: JobKind, summary_method: SummaryMethod, sources: JobSources) -> DecayJob {
        let t = DateTime::<Utc>::UNIX_EPOCH;
        DecayJob {
            id: DecayJobId::new(),
            kind,
            summary_method,
            sources,
            state: JobState::Pending,
            scheduled_for: t,
            created_at: t,
            created_by: "operator:test".into(),
            updated_at: t,
        }
    }

    /// Spec §4.4's dispatch table, word for word.
    #[test]
    fn dispatch_messages_are_the_reference_s() {
        use JobKind::*;
        use SummaryMethod::*;
        let memories = || JobSources::Memories(vec![MemoryId::new()]);
        let episodes = || JobSources::Episodes(vec![EpisodeId::new()]);
        let cases = [
            (
                job(CandidateCompression, DeterministicConcatenate, memories()),
                "kind=candidate_compression method=deterministic_concatenate",
            ),
            (
                job(CandidateCompression, LlmSummary, memories()),
                "kind=candidate_compression method=llm_summary (operator-fired)",
            ),
            (
                job(EpisodeCompression, DeterministicConcatenate, episodes()),
                "kind=episode_compression method=deterministic_concatenate",
            ),
            (
                job(EpisodeCompression, LlmSummary, episodes()),
                "kind=episode_compression method=llm_summary (operator-fired)",
            ),
            (
                job(
                    ExpiredPrincipleReview,
                    SummaryMethod::None,
                    JobSources::Principle(PrincipleId::new()),
                ),
                "kind=expired_principle_review (no in-process work; ceremony opened separately)",
            ),
        ];
        for (job, message) in cases {
            assert_eq!(dispatch_message(&job), message);
        }
    }

    #[test]
    fn run_errors_say_transient_or_not_and_what_a_job_is_failed_with() {
        let transient = RunError::Store(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert!(transient.is_transient());
        let refused = RunError::Store(StoreError::Validation("x".into()));
        assert!(!refused.is_transient());
        assert_eq!(
            refused.failure(),
            Failure {
                invariant: Invariant::RunnerFailure,
                reason: "store error: validation failed: x".into()
            }
        );
        let own = RunError::Job(DecayError::LlmSummaryRequiresOperatorAttestation);
        assert!(!own.is_transient());
        assert_eq!(own.failure().invariant, Invariant::LlmRequiresAttestation);
    }
}
