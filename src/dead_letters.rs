//! Dead letters: parked messages move from the broker into PostgreSQL, where they are listed,
//! requeued and purged without ever being handed back to the broker.
//!
//! Why not keep them in the `<base>.dead` queue: reading a queue without consuming means
//! taking messages unacked and returning them, and every return counts as a delivery. Since
//! RabbitMQ 4.0 a quorum queue drops a message returned 20 times when it has no dead-letter
//! target, and RabbitMQ 4.3 changed the counting again. The database is where the truth is
//! kept anyway: a letter there is listed any number of times, filtered, paged and joined with
//! its job, on every broker version.
//!
//! The path of a dead letter: the worker (or the broker, past the main queue's delivery limit)
//! publishes it to `<base>.dead`; an [`intake`] takes each message there with `basic.get`,
//! inserts its row, and only then acks it. Workers run the intake right after they park a
//! message and every [`INTAKE_EVERY`]; every `dead-letters` command runs it first.

use std::time::Duration;

use chrono::Utc;

use crate::broker::{BrokerError, ParkedLetter, Session, describe};
use crate::store::{DeadLetterRow, DeadLetterSelector, NewDeadLetter, Store, StoreError};

/// How often a worker looks for messages the broker parked on its own (delivery limit) or
/// another worker parked and could not record. Our own dead letters are recorded at once.
pub const INTAKE_EVERY: Duration = Duration::from_secs(30);

/// Most messages one intake round moves, so a round is bounded.
pub const INTAKE_BATCH: usize = 1000;

/// Letters requeued per database transaction.
const REQUEUE_BATCH: i64 = 500;

/// Why an intake, requeue or purge stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("{}", describe(.0))]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The row of a parked message.
fn record_of(queue: &str, l: &ParkedLetter) -> NewDeadLetter {
    NewDeadLetter {
        queue: queue.to_string(),
        job_id: l.job_id,
        reason: l.reason.clone(),
        detail: l.detail.clone(),
        body: l.body.clone(),
        body_bytes: i32::try_from(l.body_bytes).unwrap_or(i32::MAX),
        deliveries: i32::try_from(l.deliveries).unwrap_or(i32::MAX),
        dead_lettered_at: l.dead_lettered_at.unwrap_or_else(Utc::now),
    }
}

/// Move up to `limit` parked messages of the session's topology into the database; returns
/// how many moved. A message is acked only after its row is committed; if the insert fails it
/// is handed back and the round stops.
pub async fn intake(
    session: &Session,
    store: &Store,
    limit: usize,
) -> Result<usize, DeadLetterError> {
    let queue = session.topology().queue().to_string();
    let intake = session.intake().await?;
    let mut moved = 0;
    let result = async {
        while moved < limit {
            let Some(msg) = intake.next().await? else {
                break;
            };
            if let Err(e) = store
                .insert_dead_letter(&record_of(&queue, &msg.letter))
                .await
            {
                let _ = intake.requeue(&msg).await;
                return Err(e.into());
            }
            intake.ack(&msg).await?;
            tracing::info!(
                job_id = ?msg.letter.job_id.map(|j| j.to_string()),
                reason = %msg.letter.reason,
                "dead letter recorded"
            );
            moved += 1;
        }
        Ok(())
    }
    .await;
    intake.close().await;
    result.map(|()| moved)
}

/// What a requeue did.
#[derive(Debug, Default)]
pub struct Requeued {
    /// Letters whose message is back in the main queue (and whose rows are gone).
    pub moved: Vec<DeadLetterRow>,
    /// Letters left in place: their body was larger than what is kept, so it cannot be
    /// republished faithfully (purge them instead).
    pub skipped: Vec<DeadLetterRow>,
}

/// Publish the selected letters' messages to the main exchange again, each confirmed, then
/// delete their rows. A letter stays if its publish is not confirmed.
pub async fn requeue(
    session: &Session,
    store: &Store,
    which: &DeadLetterSelector,
) -> Result<Requeued, DeadLetterError> {
    let queue = session.topology().queue().to_string();
    let mut out = Requeued::default();
    let until = store.last_dead_letter_id(&queue).await?;
    let mut after = 0;
    loop {
        let taken = store
            .take_dead_letters(&queue, which, (after, until), REQUEUE_BATCH)
            .await?;
        let Some(last) = taken.rows.last() else {
            return Ok(out);
        };
        after = last.id;
        let mut done = Vec::new();
        for row in &taken.rows {
            if usize::try_from(row.body_bytes).unwrap_or(usize::MAX) > row.body.len() {
                out.skipped.push(row.clone());
                continue;
            }
            session.publish_raw(&row.body, Default::default()).await?;
            done.push(row.clone());
        }
        let ids: Vec<i64> = done.iter().map(|r| r.id).collect();
        taken.remove(&ids).await?;
        for row in &done {
            tracing::info!(letter = row.id, job_id = ?row.job_id, reason = %row.reason, "dead letter requeued");
        }
        out.moved.extend(done);
    }
}
