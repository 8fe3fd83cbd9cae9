//! `decay-worker enqueue ID...`: publish the messages of jobs that already exist (after
//! `schedule --no-publish`, or to nudge a job by hand). Each id is checked against the database
//! first, so a typo is refused instead of becoming a `job_not_found` dead letter.

use super::{CliError, parse_job_id};
use crate::app::{self, Pool};
use crate::broker::describe;
use crate::broker::producer::Producer;
use crate::cli::EnqueueArgs;

pub async fn run(a: EnqueueArgs) -> Result<(), CliError> {
    let ids = a
        .ids
        .iter()
        .map(|s| parse_job_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    for id in &ids {
        if store.read_job(id).await?.is_none() {
            return Err(CliError::precondition(
                "decay.enqueue.job_not_found",
                format!("decay job {id} not found"),
            ));
        }
    }
    // Marked before publishing, never after (see `Store::mark_published`).
    store.mark_published(&ids).await?;
    let mut producer = Producer::new(broker, "decay-worker enqueue");
    for (n, id) in ids.iter().enumerate() {
        if let Err(e) = producer.publish(id).await {
            producer.close().await;
            store.unmark_published(&ids[n..]).await?;
            let why = format!("publishing {id} failed: {}", describe(&e));
            // A refused certificate or a bad URL is a setting to fix (exit 2), not an outage.
            return Err(if e.is_permanent() {
                CliError::usage(why)
            } else {
                CliError::internal(why)
            });
        }
        println!("{id}");
    }
    producer.close().await;
    Ok(())
}
