//! `decay-worker consume`: the worker process. Validate every setting, then start in the order
//! [`crate::app`] explains (signal handlers, listener, migrations), then hand over to
//! [`crate::worker::run`] until SIGTERM/SIGINT has drained it.

use std::sync::Arc;
use std::time::Duration;

use super::CliError;
use crate::app::{self, HttpServer, Migrated, Pool};
use crate::cli::ConsumeArgs;
use crate::runner::Runner;
use crate::worker::Health;

/// How long the exit waits for the pool's connections to close, after the drain.
const POOL_CLOSE_WAIT: Duration = Duration::from_millis(500);

pub async fn run(a: ConsumeArgs) -> Result<(), CliError> {
    let mut shutdown = app::shutdown_watch()?;
    let runner_cfg = a.runner.runner_config().map_err(CliError::usage)?;
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let worker_cfg = a
        .worker
        .worker_config(broker.delivery_limit)
        .map_err(CliError::usage)?;
    let backend = a.llm.backend().map_err(CliError::usage)?;
    let trust = a.llm.trust_policy().map_err(CliError::usage)?;
    let store = app::lazy_store(
        &a.db,
        Pool::Consume {
            concurrency: worker_cfg.concurrency,
        },
    )?;
    let health = Arc::new(Health::default());
    let http = HttpServer::start(a.http_addr, health.clone(), store.clone()).await?;
    crate::worker::series::declare();
    if app::migrate_when_reachable(&store, &mut shutdown).await? == Migrated::ShutDown {
        return Ok(());
    }
    let runner = Runner::new(store.clone(), runner_cfg, backend, trust);
    let ran = crate::worker::run(runner, broker, worker_cfg, health, shutdown).await;
    drop(http);
    // Closing the pool waits for every connection to come back, and the connection of a job
    // abandoned at the end of the grace may be stuck behind a row lock for as long as someone
    // else holds it: the grace bounds the exit, so the close gets only a moment.
    if tokio::time::timeout(POOL_CLOSE_WAIT, store.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still busy at exit; leaving them to the server");
    }
    // What the worker cannot retry past is a refused setting (e.g. a queue declared with
    // other arguments): the operator must change it, as for any bad flag.
    ran.map_err(|e| CliError::usage(crate::broker::describe(&e)))
}
