//! The reconciler: republish jobs whose message may be lost.
//!
//! A job's row and its message are written in two steps (insert, then a confirmed publish), so
//! a crash or a broker outage in between leaves a `pending` job that no message names. Jobs
//! record when their message was last published; the reconciler looks for due `pending` jobs
//! whose last publish is older than a threshold (and `in_progress` jobs whose lease expired)
//! and publishes their ids again. Duplicates are harmless (a settled job's message is a no-op),
//! so republishing too much costs a little work and republishing too little loses nothing
//! for longer than one interval.
//!
//! It runs inside every worker ([`run`], every `--reconcile-every`) and as the `reconcile`
//! command ([`reconcile_once`]). One replica at a time: a pass holds a database advisory lock
//! ([`crate::store::ReconcilePass`]); a replica that finds it taken skips its tick, so the
//! replicas of a deployment republish each stranded job once, not once each. "Stale" and
//! "due" are judged by the database's clock, like every lease.

use std::time::Duration;

use tokio::sync::watch;

use crate::broker::producer::Producer;
use crate::broker::{BrokerConfig, BrokerError};
use crate::ids::DecayJobId;
use crate::store::{ReconcilePass, Store, StoreError};

/// Default interval of the in-worker reconciler.
pub const DEFAULT_RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// Default age of a publish after which the reconciler republishes a pending job.
pub const DEFAULT_RECONCILE_STALE_AFTER: Duration = Duration::from_secs(600);
/// Most jobs one tick of the in-worker reconciler republishes; the rest wait for the next tick.
const JOBS_PER_TICK: i64 = 1000;

/// Why a reconcile pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Republish jobs whose message may be lost, once. Returns how many were republished (0 also
/// when another replica's pass holds the lock).
///
/// The marks commit with the pass, before the publishes; if a publish fails, the jobs not yet
/// published are unmarked (a job republished twice is harmless, one unmarked is only listed
/// again).
pub async fn reconcile_once(
    store: &Store,
    producer: &mut Producer,
    stale_after: Duration,
    limit: i64,
) -> Result<usize, ReconcileError> {
    let Some(mut pass) = store.begin_reconcile().await? else {
        tracing::debug!("another replica is reconciling; skipping this tick");
        return Ok(0);
    };
    // List and mark under the lock, and commit the marks before publishing: another replica's
    // pass then cannot list the same jobs, and no row stays locked while its message is out
    // (a worker's claim skips locked rows and would retry the job "in_progress" for nothing).
    let ids = match list_and_mark(&mut pass, stale_after, limit).await {
        Ok(ids) => ids,
        Err(e) => {
            // End the pass now so the lock is free for the next tick (ours or a replica's).
            if let Err(rollback) = pass.rollback().await {
                tracing::debug!(error = %rollback, "reconcile rollback failed");
            }
            return Err(e);
        }
    };
    pass.commit().await?;
    for (n, id) in ids.iter().enumerate() {
        if let Err(e) = producer.publish(id).await {
            // What did not go out is unmarked, so the next pass takes it again.
            store.unmark_published(&ids[n..]).await?;
            if n > 0 {
                metrics::counter!("decay_reconciled_total").increment(n as u64);
            }
            return Err(e.into());
        }
    }
    if !ids.is_empty() {
        tracing::info!(republished = ids.len(), "reconciled stranded jobs");
        metrics::counter!("decay_reconciled_total").increment(ids.len() as u64);
    }
    Ok(ids.len())
}

/// List the stranded jobs and mark them published, inside the pass.
async fn list_and_mark(
    pass: &mut ReconcilePass,
    stale_after: Duration,
    limit: i64,
) -> Result<Vec<DecayJobId>, ReconcileError> {
    let ids = pass.list_stranded(stale_after, limit).await?;
    pass.mark_published(&ids).await?;
    Ok(ids)
}

/// Reconcile every `every` until `shutdown`. A failed pass is logged and retried next tick.
pub async fn run(
    store: Store,
    broker: BrokerConfig,
    every: Duration,
    stale_after: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut producer = Producer::new(broker, "decay-worker reconciler");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        if let Err(e) = reconcile_once(&store, &mut producer, stale_after, JOBS_PER_TICK).await {
            tracing::warn!(error = %crate::telemetry::redact(&e.to_string()), "reconcile failed");
        }
    }
    producer.close().await;
}
