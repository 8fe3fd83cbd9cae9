//! The decay job runner: claim -> dispatch -> settle (spec §4), made safe (DESIGN §3).
//!
//! * **Compare-and-set claim** with a lease and a fencing token: of any number of concurrent
//!   runners, exactly one claims a job.
//! * **Atomic effects**: the summary memory, its edges and the `completed` settle commit in one
//!   statement guarded by the token, so a runner whose claim was lost writes nothing.
//! * **No stuck jobs**: a heartbeat extends the lease while a job runs; an expired lease is
//!   recovered by the next runner (stage `recover`), up to `max_attempts` claims, after which
//!   the job settles `failed` with `decay.runner.attempts_exhausted`.
//! * **Transient vs permanent**: a database outage never fails a job; it surfaces as `Err` and
//!   the caller retries. Only the job's own errors settle `failed`, with the stable invariant in
//!   `failure_code` and the full text in `state_reason`.
//! * **One clock**: every timestamp a run writes derives from the `now` it was given.
//!
//! Every stage logs one line under the target [`RUNNER_LOG_TARGET`] with the reference's stage
//! names and messages (spec §4.6).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::compress::{self, SummaryDraft};
use super::error::invariant;
use super::summary::attestation::TrustPolicy;
use super::summary::backend::SummaryBackend;
use super::{
    ConversionError, DecayError, DecayJob, JobKind, JobSources, JobStateKind, SummaryMethod,
};
use crate::ids::{DecayJobId, MemoryId};
use crate::store::{
    ClaimedJob, JobSnapshot, MemorySummaryInsert, SettleOutcome, Store, SummaryEdges,
};

/// The stable log target of the runner's stage lines (spec §9).
pub const RUNNER_LOG_TARGET: &str = "cortex_memory::decay::runner";

macro_rules! stage {
    ($stage:literal, $job:expr, $($msg:tt)+) => {
        tracing::info!(target: "cortex_memory::decay::runner", stage = $stage, job = %$job, $($msg)+)
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
            lease: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            max_attempts: 5,
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
    Failed { code: String, reason: String },
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

/// What a successful dispatch produced.
enum Effect {
    Memory {
        draft: Box<SummaryDraft>,
        edges: SummaryEdges,
        attestation: Option<(String, String)>,
    },
    NoMemory,
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

    fn lease_from(&self, now: DateTime<Utc>, elapsed: Duration) -> DateTime<Utc> {
        let span =
            chrono::Duration::from_std(elapsed + self.cfg.lease).unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(span).unwrap_or(now)
    }

    /// Run a specific job by id (spec §4.3), without an attestation.
    pub async fn run_specific_job(
        &self,
        id: &DecayJobId,
        now: DateTime<Utc>,
    ) -> Result<RunOutcome, DecayError> {
        self.run_specific_job_with_attestation(id, now, None).await
    }

    /// Run a specific job by id. Terminal: no-op. Live claim: refused with the lease's expiry.
    /// Expired claim: recovered. Future `scheduled_for`: not run early.
    ///
    /// A due deterministic job or review runs on the quick path: one read (the row with its
    /// sources) and one atomic write that claims and settles together, so nobody ever sees it
    /// `in_progress` and a crash leaves it `pending`. LLM jobs, which call a slow backend, and
    /// recoveries of expired claims take the two-phase path: claim with a lease, heartbeat,
    /// settle guarded by the claim token.
    pub async fn run_specific_job_with_attestation(
        &self,
        id: &DecayJobId,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, DecayError> {
        let Some(snap) = self.store.read_job_for_run(&id.to_string()).await? else {
            return Ok(RunOutcome::NotFound);
        };
        match JobStateKind::from_wire(&snap.row.state) {
            Some(state) if state.is_terminal() => {
                stage!("skip_terminal", id, "job is already {}; no-op", state);
                Ok(RunOutcome::AlreadyTerminal { state })
            }
            Some(JobStateKind::Pending) if snap.row.scheduled_for > now => Ok(RunOutcome::NotDue {
                scheduled_for: snap.row.scheduled_for,
            }),
            Some(JobStateKind::Pending)
                if snap.row.summary_method != SummaryMethod::LlmSummary.wire() =>
            {
                self.run_quick(id, snap, now, attestation).await
            }
            Some(JobStateKind::InProgress)
                if snap.row.lease_expires_at.is_some_and(|exp| exp > now) =>
            {
                Ok(RunOutcome::InProgress {
                    lease_expires_at: snap.row.lease_expires_at.unwrap_or(now),
                })
            }
            _ => self.claim_and_run(id, now, attestation).await,
        }
    }

    /// The two-phase path: claim (or recover an expired claim), run with heartbeats, settle.
    /// When the claim is refused, say why from the row.
    async fn claim_and_run(
        &self,
        id: &DecayJobId,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, DecayError> {
        let key = id.to_string();
        let lease = self.lease_from(now, Duration::ZERO);
        // Fast path: one statement claims a due job; only a miss reads the row to say why.
        if let Some(claimed) = self
            .store
            .claim_job(&key, now, lease, &self.cfg.worker_id, self.cfg.max_attempts)
            .await?
        {
            return self.process_claimed(claimed, now, attestation).await;
        }
        let Some(row) = self.store.read_job(&key).await? else {
            return Ok(RunOutcome::NotFound);
        };
        match JobStateKind::from_wire(&row.state) {
            Some(state) if state.is_terminal() => {
                stage!("skip_terminal", id, "job is already {}; no-op", state);
                Ok(RunOutcome::AlreadyTerminal { state })
            }
            Some(JobStateKind::Pending) if row.scheduled_for > now => Ok(RunOutcome::NotDue {
                scheduled_for: row.scheduled_for,
            }),
            Some(JobStateKind::InProgress) => match (row.lease_expires_at, row.claim_token) {
                (Some(exp), Some(token)) if exp <= now && row.attempts >= self.cfg.max_attempts => {
                    // Expired, and the claim above refused it: attempts are exhausted. (With
                    // attempts left, the claim was refused because another runner holds the
                    // row right now: the arm below, retry shortly.)
                    let reason = format!(
                        "decay job {id} was claimed {} times without settling (max_attempts {})",
                        row.attempts, self.cfg.max_attempts
                    );
                    let code = invariant::RUNNER_ATTEMPTS_EXHAUSTED;
                    stage!("settle", id, "compression failed: {}", code);
                    match self
                        .store
                        .settle_attempts_exhausted(&key, token, now, code, &reason)
                        .await?
                    {
                        SettleOutcome::Settled => {
                            stage!("complete", id, "transitioned to failed");
                            Ok(RunOutcome::Failed {
                                code: code.to_string(),
                                reason,
                            })
                        }
                        SettleOutcome::ClaimLost => Ok(RunOutcome::ClaimLost),
                    }
                }
                (exp, _) => Ok(RunOutcome::InProgress {
                    lease_expires_at: exp.unwrap_or(now),
                }),
            },
            // Pending and due (or expired) but not claimed: another runner holds the row while
            // its claim or settle runs (the claim skips a locked row instead of waiting with
            // the delivery unacked). Report it as in progress; the caller retries shortly.
            _ => Ok(RunOutcome::InProgress {
                lease_expires_at: row.lease_expires_at.unwrap_or(now),
            }),
        }
    }

    /// The quick path: compute from the snapshot, then claim and settle in one statement.
    async fn run_quick(
        &self,
        id: &DecayJobId,
        snap: JobSnapshot,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, DecayError> {
        let key = id.to_string();
        let by = self.cfg.worker_id.as_str();
        let started = Instant::now();
        stage!("claim", id, "transitioning pending -> in_progress");
        let effect = match DecayJob::from_row(&snap.row) {
            Ok(job) => quick_effect(&job, &snap),
            Err(e) => Err(malformed(&key, &e)),
        };
        let (settled, outcome) = match effect {
            Ok(Effect::Memory { draft, edges, .. }) => {
                let memory_id = MemoryId::new();
                stage!("settle", id, "compression ok; produced {}", memory_id);
                let insert = MemorySummaryInsert {
                    memory_id,
                    draft: &draft,
                    edges,
                };
                match self
                    .store
                    .claim_and_settle_with_memory(&key, by, now, &insert)
                    .await
                {
                    Ok(s) => (
                        s == SettleOutcome::Settled,
                        RunOutcome::Completed {
                            result_memory_id: Some(memory_id),
                        },
                    ),
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => self.fail_pending(&key, now, &DecayError::Store(e)).await?,
                }
            }
            Ok(Effect::NoMemory) => {
                stage!("settle", id, "ceremony opened; no memory produced");
                let done = self.store.settle_pending(&key, now, by, None).await?;
                (
                    done,
                    RunOutcome::Completed {
                        result_memory_id: None,
                    },
                )
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => self.fail_pending(&key, now, &e).await?,
        };
        if !settled {
            // Another runner claimed it between our read and our write: ask the row.
            return self.claim_and_run(id, now, attestation).await;
        }
        let to = if matches!(outcome, RunOutcome::Failed { .. }) {
            "failed"
        } else {
            "completed"
        };
        stage!("complete", id, "transitioned to {}", to);
        let kind = JobKind::from_wire(&snap.row.kind).map_or("unknown", JobKind::wire);
        metrics::histogram!("decay_job_duration_seconds", "kind" => kind, "outcome" => to)
            .record(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    /// Claim and fail a pending job at once with the error's code and full text.
    async fn fail_pending(
        &self,
        key: &str,
        now: DateTime<Utc>,
        e: &DecayError,
    ) -> Result<(bool, RunOutcome), DecayError> {
        let code = e.failure_code();
        let reason = e.state_reason();
        stage!("settle", key, "compression failed: {}", reason);
        let done = self
            .store
            .settle_pending(key, now, &self.cfg.worker_id, Some((&code, &reason)))
            .await?;
        Ok((done, RunOutcome::Failed { code, reason }))
    }

    /// Run the head of the ready list (spec §4.2). `None` when nothing is ready. Unlike the
    /// reference, the job id is returned whatever the outcome (spec §11.6).
    pub async fn run_next_pending_job(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<(DecayJobId, RunOutcome)>, DecayError> {
        self.run_next_pending_job_with_attestation(now, None).await
    }

    /// [`Runner::run_next_pending_job`] with an optional attestation for an LLM head job;
    /// deterministic jobs ignore it.
    pub async fn run_next_pending_job_with_attestation(
        &self,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<Option<(DecayJobId, RunOutcome)>, DecayError> {
        let lease = self.lease_from(now, Duration::ZERO);
        let Some(claimed) = self
            .store
            .claim_next_pending(now, lease, &self.cfg.worker_id)
            .await?
        else {
            tracing::info!(target: "cortex_memory::decay::runner", stage = "idle", "no pending decay jobs");
            return Ok(None);
        };
        let id = DecayJobId::parse(&claimed.row.id)
            .map_err(|e| DecayError::Validation(e.to_string()))?;
        let outcome = self.process_claimed(claimed, now, attestation).await?;
        Ok(Some((id, outcome)))
    }

    /// Dispatch a claimed job and settle it, guarded by the claim token.
    async fn process_claimed(
        &self,
        claimed: ClaimedJob,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<RunOutcome, DecayError> {
        let id = claimed.row.id.clone();
        let token = claimed.token;
        if claimed.recovered {
            metrics::counter!("decay_lease_recoveries_total").increment(1);
            stage!(
                "recover",
                id,
                "recovering expired claim (attempt {})",
                claimed.row.attempts
            );
        } else {
            stage!("claim", id, "transitioning pending -> in_progress");
        }
        let job = match DecayJob::from_row(&claimed.row) {
            Ok(job) => job,
            Err(e) => return self.settle_malformed(&id, token, now, &e).await,
        };
        let started = Instant::now();
        let dispatched = tokio::select! {
            biased;
            r = self.dispatch(&job, now, attestation) => r,
            never = self.heartbeat_loop(&id, token, now, started) => match never {},
        };
        let outcome = self.settle(&id, token, now, dispatched).await;
        let label = match &outcome {
            Ok(RunOutcome::Completed { .. }) => "completed",
            Ok(RunOutcome::Failed { .. }) => "failed",
            Ok(_) => "claim_lost",
            Err(_) => "error",
        };
        metrics::histogram!("decay_job_duration_seconds", "kind" => job.kind.wire(), "outcome" => label)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Settle a dispatched job, guarded by its claim token.
    async fn settle(
        &self,
        id: &str,
        token: uuid::Uuid,
        now: DateTime<Utc>,
        dispatched: Result<Effect, DecayError>,
    ) -> Result<RunOutcome, DecayError> {
        match dispatched {
            Ok(Effect::Memory {
                draft,
                edges,
                attestation,
            }) => {
                let memory_id = MemoryId::new();
                stage!("settle", id, "compression ok; produced {}", memory_id);
                let insert = MemorySummaryInsert {
                    memory_id,
                    draft: &draft,
                    edges,
                };
                let att = attestation.as_ref().map(|(k, s)| (k.as_str(), s.as_str()));
                match self
                    .store
                    .settle_completed_with_memory(id, token, now, &insert, att)
                    .await
                {
                    Ok(SettleOutcome::Settled) => {
                        stage!("complete", id, "transitioned to completed");
                        Ok(RunOutcome::Completed {
                            result_memory_id: Some(memory_id),
                        })
                    }
                    Ok(SettleOutcome::ClaimLost) => Ok(self.claim_lost(id)),
                    Err(e) if e.is_transient() => Err(e.into()),
                    // The data itself was refused by the database (a constraint): the job's
                    // own failure, recorded rather than retried forever.
                    Err(e) => {
                        self.settle_failure(id, token, now, &DecayError::Store(e))
                            .await
                    }
                }
            }
            Ok(Effect::NoMemory) => {
                stage!("settle", id, "ceremony opened; no memory produced");
                match self
                    .store
                    .settle_completed_without_memory(id, token, now)
                    .await?
                {
                    SettleOutcome::Settled => {
                        stage!("complete", id, "transitioned to completed");
                        Ok(RunOutcome::Completed {
                            result_memory_id: None,
                        })
                    }
                    SettleOutcome::ClaimLost => Ok(self.claim_lost(id)),
                }
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => self.settle_failure(id, token, now, &e).await,
        }
    }

    fn claim_lost(&self, id: &str) -> RunOutcome {
        tracing::warn!(target: "cortex_memory::decay::runner", stage = "settle", job = %id,
            "claim lost (cancelled or re-claimed); nothing written");
        RunOutcome::ClaimLost
    }

    async fn settle_failure(
        &self,
        id: &str,
        token: uuid::Uuid,
        now: DateTime<Utc>,
        e: &DecayError,
    ) -> Result<RunOutcome, DecayError> {
        let code = e.failure_code();
        let reason = e.state_reason();
        stage!("settle", id, "compression failed: {}", reason);
        match self
            .store
            .settle_failed(id, token, now, &code, &reason)
            .await?
        {
            SettleOutcome::Settled => {
                stage!("complete", id, "transitioned to failed");
                Ok(RunOutcome::Failed { code, reason })
            }
            SettleOutcome::ClaimLost => Ok(self.claim_lost(id)),
        }
    }

    /// A row that cannot become a typed job is settled `failed` (`decay.job.malformed`)
    /// instead of blocking the queue head forever (spec §11.5).
    async fn settle_malformed(
        &self,
        id: &str,
        token: uuid::Uuid,
        now: DateTime<Utc>,
        e: &ConversionError,
    ) -> Result<RunOutcome, DecayError> {
        self.settle_failure(id, token, now, &malformed(id, e)).await
    }

    /// Extend the lease every `heartbeat_every` while the job runs. Never returns; the
    /// dispatch finishing ends it.
    async fn heartbeat_loop(
        &self,
        id: &str,
        token: uuid::Uuid,
        now: DateTime<Utc>,
        started: Instant,
    ) -> std::convert::Infallible {
        let mut tick = tokio::time::interval(self.cfg.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            let until = self.lease_from(now, started.elapsed());
            match self.store.heartbeat(id, token, until).await {
                Ok(true) => tracing::debug!(job = %id, until = %until, "lease extended"),
                Ok(false) => tracing::warn!(job = %id, "heartbeat found the claim lost"),
                Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
            }
        }
    }

    /// The two-phase dispatch, from a fresh snapshot of the job's sources: LLM jobs call the
    /// backend; everything else is computed exactly as on the quick path.
    async fn dispatch(
        &self,
        job: &DecayJob,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<Effect, DecayError> {
        let Some(snap) = self.store.read_job_for_run(&job.id.to_string()).await? else {
            return Err(DecayError::Validation(format!(
                "decay job {} not found",
                job.id
            )));
        };
        if job.summary_method == SummaryMethod::LlmSummary {
            stage!(
                "dispatch",
                &job.id,
                "kind={} method=llm_summary (operator-fired)",
                job.kind.wire()
            );
            return self.run_llm(job, &snap, now, attestation).await;
        }
        quick_effect(job, &snap)
    }

    /// The `llm_summary` path (spec §7.1): attestation first, then sources, backend, checks.
    async fn run_llm(
        &self,
        job: &DecayJob,
        snap: &JobSnapshot,
        now: DateTime<Utc>,
        attestation: Option<&Path>,
    ) -> Result<Effect, DecayError> {
        let verified = super::summary::verify_attestation_for(job, attestation, &self.trust, now)?;
        let (claims, edges, memories, episodes) = match &job.sources {
            JobSources::Memories(ids) => {
                let s = in_order(ids, snap.memories.as_ref(), "memory")?;
                let claims = s.iter().map(|m| m.claim.clone()).collect();
                (claims, SummaryEdges::Memories(ids.clone()), Some(s), None)
            }
            JobSources::Episodes(ids) => {
                let s = in_order(ids, snap.episodes.as_ref(), "episode")?;
                let claims = s.iter().map(|e| e.summary.clone()).collect();
                (claims, SummaryEdges::Episodes(ids.clone()), None, Some(s))
            }
            JobSources::Principle(_) => {
                return Err(DecayError::Validation(format!(
                    "run_llm_summary_job invoked on a job whose kind_wire is `{}` (expected `candidate_compression` or `episode_compression`)",
                    JobKind::ExpiredPrincipleReview.wire()
                )));
            }
        };
        let response =
            super::summary::call_backend(self.backend.as_ref(), &verified, &job.id, claims).await?;
        let draft = match (memories, episodes) {
            (Some(m), _) => {
                compress::llm_summary_of_memories(&m, response.claim, &response.model_name_echoed)
            }
            (_, Some(e)) => {
                compress::llm_summary_of_episodes(&e, response.claim, &response.model_name_echoed)
            }
            _ => return Err(DecayError::Validation("no sources loaded".into())),
        };
        Ok(Effect::Memory {
            draft: Box::new(draft),
            edges,
            attestation: Some((verified.operator_key_id, verified.signature_hex)),
        })
    }
}

/// The error of a row that cannot become a typed job; its code is `decay.job.malformed`.
fn malformed(id: &str, e: &ConversionError) -> DecayError {
    DecayError::Validation(format!(
        "{}: decay job {id} row malformed: {e}",
        invariant::JOB_MALFORMED
    ))
}

fn source_missing(what: &str, which: &dyn std::fmt::Display) -> DecayError {
    DecayError::Validation(format!(
        "{}: {what} {which} not found",
        invariant::COMPRESS_SOURCE_MISSING
    ))
}

/// The job's sources in list order (duplicates repeated), or the first missing one.
fn in_order<K, T>(
    ids: &[K],
    found: Option<&std::collections::HashMap<K, T>>,
    what: &str,
) -> Result<Vec<T>, DecayError>
where
    K: std::hash::Hash + Eq + std::fmt::Display,
    T: Clone,
{
    ids.iter()
        .map(|k| {
            found
                .and_then(|f| f.get(k))
                .cloned()
                .ok_or_else(|| source_missing(what, k))
        })
        .collect()
}

/// The effect of a quick job, computed from its snapshot alone (no I/O).
fn quick_effect(job: &DecayJob, snap: &JobSnapshot) -> Result<Effect, DecayError> {
    let id = &job.id;
    match (&job.sources, job.summary_method) {
        (JobSources::Memories(ids), SummaryMethod::DeterministicConcatenate) => {
            stage!(
                "dispatch",
                id,
                "kind=candidate_compression method=deterministic_concatenate"
            );
            check_sources(ids.len(), "source_memory_ids", &job.created_by)?;
            let sources = in_order(ids, snap.memories.as_ref(), "memory")?;
            Ok(Effect::Memory {
                draft: Box::new(compress::summarize_memories(&sources)),
                edges: SummaryEdges::Memories(ids.clone()),
                attestation: None,
            })
        }
        (JobSources::Episodes(ids), SummaryMethod::DeterministicConcatenate) => {
            stage!(
                "dispatch",
                id,
                "kind=episode_compression method=deterministic_concatenate"
            );
            check_sources(ids.len(), "source_episode_ids", &job.created_by)?;
            let sources = in_order(ids, snap.episodes.as_ref(), "episode")?;
            Ok(Effect::Memory {
                draft: Box::new(compress::summarize_episodes(&sources)),
                edges: SummaryEdges::Episodes(ids.clone()),
                attestation: None,
            })
        }
        (JobSources::Principle(p), _) => {
            stage!(
                "dispatch",
                id,
                "kind=expired_principle_review (no in-process work; ceremony opened separately)"
            );
            if snap.principle_exists == Some(true) {
                Ok(Effect::NoMemory)
            } else {
                Err(source_missing("principle", p))
            }
        }
        (sources, method) => Err(DecayError::Validation(format!(
            "decay job {id} kind `{}` cannot run summary_method `{}` over {sources:?}",
            job.kind.wire(),
            method.wire()
        ))),
    }
}

/// Spec §5.1 steps 1-2.
fn check_sources(len: usize, field: &str, operator: &str) -> Result<(), DecayError> {
    if len == 0 {
        return Err(DecayError::Validation(format!(
            "{}: {field} must be non-empty",
            invariant::COMPRESS_INPUT_INVALID
        )));
    }
    if super::is_blank(operator) {
        return Err(DecayError::Validation(
            "operator label must be non-empty".into(),
        ));
    }
    Ok(())
}
