//! The consume loop: bounded concurrency, ack after settle, retries through the retry tiers,
//! dead letters with reasons, reconnects with backoff, graceful drain.
//!
//! Deliveries are pulled from the consumer only when a concurrency permit is free, so prefetched
//! but unstarted deliveries stay unacked in the channel and go back to the broker when it
//! closes. A delivery is acked only after its job is settled, re-published to a retry tier
//! (confirmed), or parked in the dead-letter queue (confirmed). It is never held unacked to wait.
//!
//! The worker also starts, beside the consume loop, the dead-letter intake
//! ([`crate::dead_letters`]) for each broker session and the reconciler ([`crate::reconcile`]).

mod batch;
pub mod outcome;
pub mod series;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::message::parse_body;
use crate::broker::{BrokerConfig, BrokerError, JobDelivery, Session, describe};
use crate::ids::DecayJobId;
use crate::retry;
use crate::runner::{RunError, RunOutcome, Runner};
use outcome::{Action, DeadLetterReason, RetryPolicy, RetryReason, classify};

/// Default prefetch (`basic.qos`).
pub const DEFAULT_PREFETCH: u16 = 128;
/// Default number of jobs run at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default most deliveries run as one batch (measured: see README, Performance).
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Default wait for more deliveries once a batch has two or more.
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(2);
/// Default time in-flight jobs get after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unacked deliveries the broker may push to this worker (`basic.qos`).
    pub prefetch: u16,
    /// Jobs (or batches of jobs) run at the same time.
    pub concurrency: usize,
    /// Most already-delivered messages run as one batch (1: batches off).
    pub batch_size: usize,
    /// How long a batch of two or more waits for more deliveries (zero: never waits). A lone
    /// delivery never waits.
    pub batch_linger: Duration,
    /// How long in-flight jobs may take to finish after SIGTERM before the worker exits anyway.
    pub shutdown_grace: Duration,
    /// Retry limits.
    pub retry: RetryPolicy,
    /// Where operator attestations of LLM jobs live (`<dir>/<job_id>.json`).
    pub attestation_dir: Option<PathBuf>,
    /// Run the reconciler this often inside the worker (`None`: never).
    pub reconcile_every: Option<Duration>,
    /// A pending job is republished when its last publish is older than this.
    pub reconcile_stale_after: Duration,
    /// Redeliveries of a job's message (returned unacked, e.g. its worker died) before it is
    /// dead-lettered `delivery_limit` instead of run again: crash-loop detection that does not
    /// depend on how the broker version counts deliveries.
    pub redelivery_limit: u32,
}

/// Shared health state for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// A broker session is open and consuming.
    pub broker_ready: AtomicBool,
    /// The broker node of the current (or last) session, for `/readyz`.
    pub broker_node: std::sync::Mutex<String>,
}

struct Ctx {
    runner: Runner,
    cfg: WorkerConfig,
    /// Wakes the dead-letter intake right after this worker parked a message.
    parked: Notify,
}

impl Ctx {
    fn attestation_for(&self, id: &DecayJobId) -> Option<PathBuf> {
        let path = self.attestation_path(id)?;
        path.exists().then_some(path)
    }

    /// Where this worker looks for a job's attestation (`None`: no `--attestation-dir`).
    fn attestation_path(&self, id: &DecayJobId) -> Option<PathBuf> {
        let dir = self.cfg.attestation_dir.as_ref()?;
        Some(dir.join(format!("{id}.json")))
    }

    /// An LLM job failed for want of an attestation: say where this worker looked, since the
    /// job's reason (the reference's exact text) cannot.
    fn explain_missing_attestation(&self, id: &DecayJobId) {
        match self.attestation_path(id) {
            None => tracing::warn!(
                "LLM job failed without an operator attestation: this worker has no --attestation-dir (DECAY_ATTESTATION_DIR), so it looks nowhere"
            ),
            Some(path) => tracing::warn!(
                looked_for = %path.display(),
                "LLM job failed without an operator attestation: no file at the path this worker looks for"
            ),
        }
    }
}

/// Run the worker until `shutdown` flips to true, then drain and return. Returns an error
/// only for what retrying cannot fix (e.g. the broker refuses our topology).
pub async fn run(
    runner: Runner,
    broker: BrokerConfig,
    cfg: WorkerConfig,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let name = format!("decay-worker {}", runner.config().worker_id);
    let ctx = Arc::new(Ctx {
        runner,
        cfg,
        parked: Notify::new(),
    });
    let permits = Arc::new(Semaphore::new(ctx.cfg.concurrency.max(1)));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut reconnects = retry::reconnect_delays();
    let mut first = true;
    let (alone_tx, mut alone_rx) = tokio::sync::mpsc::unbounded_channel::<batch::Alone>();

    if let Some(every) = ctx.cfg.reconcile_every {
        tokio::spawn(crate::reconcile::run(
            ctx.runner.store().clone(),
            broker.clone(),
            every,
            ctx.cfg.reconcile_stale_after,
            shutdown.clone(),
        ));
    }

    'sessions: loop {
        if *shutdown.borrow() {
            break;
        }
        if !first {
            metrics::counter!("decay_broker_reconnects_total").increment(1);
            let wait = reconnects.next().unwrap_or(retry::MAX_DELAY);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        first = false;
        let session = tokio::select! {
            s = Session::open(&broker, &name) => s,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let session = match session {
            Ok(s) => Arc::new(s),
            Err(e) if e.is_permanent() => {
                drain(&mut tasks, ctx.cfg.shutdown_grace).await;
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "broker connection failed; retrying");
                continue;
            }
        };
        let tag = format!("{name} {}", uuid::Uuid::new_v4());
        let mut consumer = match session.consume(ctx.cfg.prefetch, &tag).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %describe(&e), "consume failed; reconnecting");
                continue;
            }
        };
        if let Ok(mut node) = health.broker_node.lock() {
            *node = session.node().to_string();
        }
        tracing::info!(
            node = session.node(),
            queue = session.topology().queue(),
            prefetch = ctx.cfg.prefetch,
            concurrency = ctx.cfg.concurrency,
            batch_size = ctx.cfg.batch_size,
            "consuming"
        );
        health.broker_ready.store(true, Ordering::Relaxed);
        reconnects = retry::reconnect_delays();
        let intake = tokio::spawn(intake_loop(ctx.clone(), session.clone()));

        let stopping = loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p,
                _ = shutdown.wait_for(|s| *s) => break true,
            };
            let Ok(permit) = permit else { break true };
            // A job a batch handed back (an LLM job, a recovery) comes before new deliveries:
            // it runs under a permit of its own, like any delivery.
            let next = tokio::select! {
                biased;
                Some(alone) = alone_rx.recv() => {
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        alone.run(&ctx).await;
                        drop(permit);
                    });
                    continue;
                }
                d = consumer.next() => d,
                _ = shutdown.wait_for(|s| *s) => break true,
            };
            match next {
                Some(Ok(delivery)) => {
                    let (deliveries, ended) =
                        batch::gather(&mut consumer, delivery, &ctx.cfg).await;
                    let ctx = ctx.clone();
                    let session = session.clone();
                    let alone_tx = alone_tx.clone();
                    tasks.spawn(async move {
                        batch::handle(&ctx, &session, deliveries, &alone_tx).await;
                        drop(permit);
                    });
                    if ended {
                        break false;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %describe(&e), "consumer failed; reconnecting");
                    break false;
                }
                None => {
                    tracing::warn!("consumer ended (channel or connection closed); reconnecting");
                    break false;
                }
            }
        };
        health.broker_ready.store(false, Ordering::Relaxed);
        intake.abort();
        let _ = intake.await;

        if stopping {
            // Count only tasks still running: a task that finished (a batch that handed its
            // LLM jobs back, say) stays in the set until joined, and the loop joins only when
            // it next goes round. Its permit's release wakes the loop before the runtime
            // marks it finished, so without this the count could include it.
            while tasks.try_join_next().is_some() {}
            tracing::info!(
                in_flight = tasks.len(),
                "shutting down: draining in-flight jobs"
            );
            if let Err(e) = session.cancel(&consumer.tag()).await {
                tracing::warn!(error = %describe(&e), "basic.cancel failed");
            }
            drain(&mut tasks, ctx.cfg.shutdown_grace).await;
            // Jobs batches handed back that nobody started: their deliveries go back to the
            // broker with the channel, like unstarted prefetched ones (and release the session).
            alone_rx.close();
            while alone_rx.try_recv().is_ok() {}
            match Arc::try_unwrap(session) {
                Ok(s) => s.close().await,
                Err(_) => tracing::warn!("session still shared at shutdown; dropping it"),
            }
            break 'sessions;
        }
        // Connection lost: jobs in flight finish against the database; their acks fail on the
        // dead session and the broker redelivers those messages, which are then no-ops.
    }
    drain(&mut tasks, ctx.cfg.shutdown_grace).await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            "shutdown grace elapsed; abandoning in-flight jobs (their leases expire and another worker recovers them)"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// The `outcome` label of `decay_jobs_total`: what happened to the job and its message.
fn outcome_label(r: &Result<RunOutcome, RunError>, action: &Action) -> &'static str {
    match (action, r) {
        (Action::DeadLetter { .. }, _) => "dead_lettered",
        (
            Action::Retry {
                why: RetryReason::NotDue,
                ..
            },
            _,
        ) => "deferred",
        (Action::Retry { .. }, _) => "retried",
        (Action::Ack, Ok(RunOutcome::Completed { .. })) => "completed",
        (Action::Ack, Ok(RunOutcome::AlreadyTerminal { .. })) => "noop",
        (Action::Ack, Ok(RunOutcome::Failed { .. })) => "failed",
        (Action::Ack, _) => "claim_lost",
    }
}

/// The span of one delivery.
fn delivery_span(d: &JobDelivery) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        job_id = tracing::field::Empty,
        delivery_tag = d.delivery_tag(),
        redelivered = d.redelivered(),
        delivery_count = d.delivery_count(),
        attempt = d.attempt(),
    )
}

/// Process one delivery end to end.
async fn handle(ctx: &Ctx, session: &Session, d: JobDelivery) {
    let span = delivery_span(&d);
    async {
        let action = match admit(ctx, &d).await {
            Err(action) => action,
            Ok(id) => run_one(ctx, &d, id).await,
        };
        apply(ctx, session, &d, action).await;
    }
    .instrument(span)
    .await
}

/// What every delivery goes through before its job runs: the message must name a job, and a
/// message that keeps coming back is dead-lettered instead of run again. `Err`: what to do
/// with the delivery instead of running it.
async fn admit(ctx: &Ctx, d: &JobDelivery) -> Result<DecayJobId, Action> {
    let (_, anomalies) = d.retry_counts();
    for anomaly in anomalies {
        tracing::warn!(%anomaly, "malformed retry header");
    }
    metrics::counter!("decay_deliveries_total").increment(1);
    if d.redelivered() {
        metrics::counter!("decay_redeliveries_total").increment(1);
    }
    match parse_body(d.body()) {
        Err(e) => {
            tracing::warn!(reason = %e, "malformed message");
            metrics::counter!("decay_jobs_total", "outcome" => "dead_lettered").increment(1);
            Err(Action::DeadLetter {
                reason: DeadLetterReason::MalformedMessage,
                detail: e.to_string(),
            })
        }
        Ok(id) => {
            tracing::Span::current().record("job_id", tracing::field::display(&id));
            if d.redelivered()
                && let Some(action) = crash_loop(ctx, &id).await
            {
                return Err(action);
            }
            Ok(id)
        }
    }
}

/// Run one job on the per-job path and decide what becomes of its delivery.
async fn run_one(ctx: &Ctx, d: &JobDelivery, id: DecayJobId) -> Action {
    metrics::gauge!("decay_jobs_in_flight").increment(1.0);
    let attestation = ctx.attestation_for(&id);
    let result = ctx
        .runner
        .run_specific_job_with_attestation(&id, attestation.as_deref())
        .await;
    metrics::gauge!("decay_jobs_in_flight").decrement(1.0);
    if let Ok(RunOutcome::Failed {
        code: crate::decay::Invariant::LlmRequiresAttestation,
        ..
    }) = &result
    {
        ctx.explain_missing_attestation(&id);
    }
    decide(ctx, d, &result)
}

/// The action for a runner result (the outcome table), counted.
fn decide(ctx: &Ctx, d: &JobDelivery, result: &Result<RunOutcome, RunError>) -> Action {
    if let Err(e) = result {
        metrics::counter!("decay_database_errors_total").increment(1);
        tracing::warn!(error = %crate::telemetry::redact(&e.to_string()), "run failed");
    }
    // The anomalies were logged when the delivery was admitted.
    let (counts, _) = d.retry_counts();
    let action = classify(result, &counts, Utc::now(), &ctx.cfg.retry);
    metrics::counter!("decay_jobs_total", "outcome" => outcome_label(result, &action)).increment(1);
    action
}

/// A redelivered message (returned unacked: whatever handled it died first) is counted on its
/// job; past the limit it is dead-lettered instead of run again. `None`: run it.
async fn crash_loop(ctx: &Ctx, id: &DecayJobId) -> Option<Action> {
    match ctx.runner.store().note_redelivery(id).await {
        Ok(Some(n)) if n >= i32::try_from(ctx.cfg.redelivery_limit).unwrap_or(i32::MAX) => {
            metrics::counter!("decay_jobs_total", "outcome" => "dead_lettered").increment(1);
            Some(Action::DeadLetter {
                reason: DeadLetterReason::DeliveryLimit,
                detail: format!(
                    "redelivered {n} times without being settled (whatever runs it keeps dying); the job stays pending"
                ),
            })
        }
        Ok(_) => None,
        Err(e) => {
            // Not knowing the count is no reason to hold the job back: run it.
            tracing::warn!(error = %crate::telemetry::redact(&e.to_string()), "could not count a redelivery");
            None
        }
    }
}

/// Take what sits in the dead queue into the database: right after this worker parked a
/// message, and every [`crate::dead_letters::INTAKE_EVERY`] for what the broker parked itself.
async fn intake_loop(ctx: Arc<Ctx>, session: Arc<Session>) {
    use crate::dead_letters::{INTAKE_BATCH, INTAKE_EVERY, intake};
    loop {
        match intake(&session, ctx.runner.store(), INTAKE_BATCH).await {
            Ok(n) if n == INTAKE_BATCH => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::redact(&e.to_string()), "dead-letter intake failed; retrying later")
            }
        }
        tokio::select! {
            _ = ctx.parked.notified() => {}
            _ = tokio::time::sleep(INTAKE_EVERY) => {}
        }
    }
}

/// Carry out an action: the ack always comes last, after any re-publish was confirmed.
async fn apply(ctx: &Ctx, session: &Session, d: &JobDelivery, action: Action) {
    let settled = match &action {
        Action::Ack => session.ack(d).await,
        Action::Retry { after, why } => {
            let counter = why.counter();
            let why = why.label();
            metrics::counter!("decay_retries_total", "why" => why).increment(1);
            match session.publish_retry(d, *after, counter).await {
                Ok(tier) => {
                    tracing::info!(
                        why,
                        wait_ms = after.as_millis() as u64,
                        tier_ms = tier.as_millis() as u64,
                        "retry scheduled"
                    );
                    session.ack(d).await
                }
                Err(e) => Err(e),
            }
        }
        Action::DeadLetter { reason, detail } => {
            let reason = reason.as_str();
            metrics::counter!("decay_dead_letters_total", "reason" => reason).increment(1);
            match session.publish_dead(d, reason, detail).await {
                Ok(()) => {
                    tracing::warn!(reason, detail = %detail, "dead-lettered");
                    ctx.parked.notify_one();
                    session.ack(d).await
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = settled {
        // Nothing acked: the broker redelivers this message (now, or when the channel closes).
        tracing::warn!(error = %describe(&e), "could not settle the delivery; it will be redelivered");
        if session.is_open() {
            let _ = session.requeue(d).await;
        }
    }
}
