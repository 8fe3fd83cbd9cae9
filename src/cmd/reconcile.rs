//! `decay-worker reconcile`: one reconciler pass ([`crate::reconcile`]) from the command line,
//! for deployments that run it from a scheduler instead of inside the workers.

use serde::Serialize;

use super::{CliError, print_json};
use crate::app::{self, Pool};
use crate::broker::producer::Producer;
use crate::cli::ReconcileArgs;
use crate::reconcile::reconcile_once;

/// `reconcile --json`.
#[derive(Serialize)]
struct Report {
    republished: usize,
}

pub async fn run(a: ReconcileArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    let mut producer = Producer::new(broker, "decay-worker reconcile");
    let n = reconcile_once(&store, &mut producer, a.stale_after.0, a.limit).await;
    producer.close().await;
    let republished = n.map_err(CliError::internal)?;
    if a.json {
        print_json(&Report { republished });
    } else {
        println!("republished {republished} job(s)");
    }
    Ok(())
}
