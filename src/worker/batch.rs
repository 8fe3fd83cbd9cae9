//! Batches of deliveries (DESIGN §5): what is already delivered runs together through
//! [`Runner::run_batch`] (one read, one transaction), and is acked together after its commit.
//!
//! * [`gather`] takes, after a first delivery, what the consumer already holds, up to
//!   `batch_size`; once there are two or more it waits at most `batch_linger` for more. A lone
//!   delivery never waits, so latency at low load does not grow.
//! * [`handle`] admits each delivery as the per-job path does (malformed bodies, crash loops),
//!   runs the jobs as one batch, then acks every delivery whose outcome is an ack in one go
//!   (`multiple` where the tags allow, see [`crate::broker::Session::ack_all`]), then carries
//!   out retries and dead letters one by one, then runs what the batch handed back
//!   ([`BatchOutcome::Alone`]: LLM jobs, recoveries, repeated ids) on the per-job path.
//! * A database error fails the batch: nothing was committed, and every delivery of it takes
//!   the per-job path's action for that error (retry).

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tracing::Instrument;

use super::outcome::Action;
use super::{Ctx, WorkerConfig, admit, apply, decide, delivery_span, run_one};
use crate::broker::{JobConsumer, JobDelivery, Session, describe};
use crate::ids::DecayJobId;
use crate::runner::{BatchOutcome, RunOutcome};

/// After `first`, take what the consumer already holds (see the module doc). `true` with the
/// batch: the consumer ended or failed while gathering (reconnect after running the batch).
pub(super) async fn gather(
    consumer: &mut JobConsumer,
    first: JobDelivery,
    cfg: &WorkerConfig,
) -> (Vec<JobDelivery>, bool) {
    let mut batch = vec![first];
    let deadline = Instant::now() + cfg.batch_linger;
    while batch.len() < cfg.batch_size {
        let next = match consumer.next_ready() {
            Some(next) => next,
            None if batch.len() >= 2 && !cfg.batch_linger.is_zero() => {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
            None => break,
        };
        match next {
            Some(Ok(d)) => batch.push(d),
            Some(Err(e)) => {
                tracing::warn!(error = %describe(&e), "consumer failed; reconnecting");
                return (batch, true);
            }
            None => {
                tracing::warn!("consumer ended (channel or connection closed); reconnecting");
                return (batch, true);
            }
        }
    }
    (batch, false)
}

/// A delivery whose job a batch handed back, to run on the per-job path. The consume loop
/// runs it under a concurrency permit of its own, like a delivery, so `--concurrency` still
/// bounds the jobs running at once, LLM calls included. Dropped unrun (at shutdown), it
/// returns to the broker with its channel.
pub(super) struct Alone {
    session: Arc<Session>,
    delivery: JobDelivery,
    id: DecayJobId,
    span: tracing::Span,
}

impl Alone {
    pub(super) async fn run(self, ctx: &Ctx) {
        let Alone {
            session,
            delivery,
            id,
            span,
        } = self;
        async {
            let action = run_one(ctx, &delivery, id).await;
            apply(ctx, &session, &delivery, action).await;
        }
        .instrument(span)
        .await
    }
}

/// Process a batch of deliveries end to end (a batch of one takes the per-job path). What
/// the batch hands back goes to `alone` (see [`Alone`]).
pub(super) async fn handle(
    ctx: &Ctx,
    session: &Arc<Session>,
    batch: Vec<JobDelivery>,
    alone: &UnboundedSender<Alone>,
) {
    metrics::histogram!("decay_batch_size").record(batch.len() as f64);
    if batch.len() == 1 {
        for d in batch {
            super::handle(ctx, session, d).await;
        }
        return;
    }
    let spans: Vec<tracing::Span> = batch.iter().map(delivery_span).collect();
    let mut actions: Vec<Option<Action>> = vec![None; batch.len()];
    let mut jobs = Vec::with_capacity(batch.len());
    for (i, d) in batch.iter().enumerate() {
        match admit(ctx, d).instrument(spans[i].clone()).await {
            Ok(id) => jobs.push((i, id)),
            Err(action) => actions[i] = Some(action),
        }
    }

    let ids: Vec<_> = jobs.iter().map(|(_, id)| *id).collect();
    metrics::gauge!("decay_jobs_in_flight").increment(ids.len() as f64);
    let ran = ctx.runner.run_batch(&ids).await;
    metrics::gauge!("decay_jobs_in_flight").decrement(ids.len() as f64);
    let mut handed_back = Vec::new();
    match ran {
        Ok(outcomes) => {
            for ((i, id), outcome) in jobs.iter().zip(outcomes) {
                let _entered = spans[*i].enter();
                match outcome {
                    BatchOutcome::Ran(result) => {
                        actions[*i] = Some(decide(ctx, &batch[*i], &result));
                    }
                    BatchOutcome::Alone => handed_back.push((*i, *id)),
                }
            }
        }
        Err(e) => {
            // Nothing of the batch was committed: each delivery takes the action of the error.
            let failed: Result<RunOutcome, _> = Err(e);
            for (i, _) in &jobs {
                let _entered = spans[*i].enter();
                actions[*i] = Some(decide(ctx, &batch[*i], &failed));
            }
        }
    }

    let acks: Vec<&JobDelivery> = batch
        .iter()
        .zip(&actions)
        .filter(|(_, a)| matches!(a, Some(Action::Ack)))
        .map(|(d, _)| d)
        .collect();
    if let Err(e) = session.ack_all(&acks).await {
        // Not nacked: an ack may have reached the broker. Whatever was not acked comes back
        // when the channel closes, and its job is then a no-op.
        tracing::warn!(error = %describe(&e), deliveries = acks.len(),
            "could not ack the batch; its messages will be redelivered");
    }
    let mut back = handed_back.into_iter().peekable();
    for (i, ((d, action), span)) in batch.into_iter().zip(actions).zip(spans).enumerate() {
        if let Some(action) = action.filter(|a| *a != Action::Ack) {
            apply(ctx, session, &d, action).instrument(span).await;
        } else if let Some((_, id)) = back.next_if(|(j, _)| *j == i) {
            let _ = alone.send(Alone {
                session: session.clone(),
                delivery: d,
                id,
                span,
            });
        }
    }
}
