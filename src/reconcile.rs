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
//! command ([`reconcile_once`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::broker::producer::Producer;
use crate::broker::{BrokerConfig, BrokerError};
use crate::store::{Store, StoreError};

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

/// Republish jobs whose message may be lost, once. Returns how many were republished.
pub async fn reconcile_once(
    store: &Store,
    producer: &mut Producer,
    stale_after: Duration,
    limit: i64,
) -> Result<usize, ReconcileError> {
    let now = Utc::now();
    let published_before = chrono::Duration::from_std(stale_after)
        .ok()
        .and_then(|stale| now.checked_sub_signed(stale))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let ids = store.list_stranded(now, published_before, limit).await?;
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        producer.publish(&id).await?;
        done.push(id);
    }
    store.mark_published(&done, now).await?;
    if !done.is_empty() {
        tracing::info!(republished = done.len(), "reconciled stranded jobs");
        metrics::counter!("decay_reconciled_total").increment(done.len() as u64);
    }
    Ok(done.len())
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
