//! The wiring the commands share: the database pool, the metrics recorder and the HTTP
//! listener, the shutdown signal, and the wait for a database that is still starting.
//!
//! These are the process's edges, so their errors are [`anyhow::Error`]s carrying one line an
//! operator can act on (which URL, which address, and the cause's own words); the commands in
//! [`crate::cmd`] turn them into exit codes. Everything below this module returns typed errors.
//!
//! The order of `consume`'s start is deliberate, and these pieces exist to keep it:
//! 1. [`shutdown_watch`] first, so a SIGTERM that arrives while anything below is still
//!    connecting stops the worker cleanly instead of killing it with the default handler;
//! 2. [`Pool::Consume`] builds a *lazy* pool and [`HttpServer::start`] binds the listener before
//!    the database answers, so a worker that waits for its database is visible (and not ready);
//! 3. [`migrate_when_reachable`] applies migrations, waiting out a database that is still coming
//!    up (with the one retry policy of [`crate::retry`]) rather than crash-looping;
//! 4. only then does the worker consume.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::anyhow;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::DatabaseArgs;
use crate::retry;
use crate::store::{Store, StoreError};
use crate::telemetry::redact;
use crate::worker::Health;

/// Pool size of a one-shot command (`migrate`, `schedule`, `jobs ...`): one statement at a
/// time, plus one spare so a slow statement never blocks the next.
pub const COMMAND_CONNECTIONS: u32 = 2;
/// Pool size of `run`: the job's statements and its heartbeat each need a connection.
pub const RUN_CONNECTIONS: u32 = 3;
/// Connections `consume` adds to its concurrency (heartbeats, the reconciler, probes).
pub const CONSUME_EXTRA_CONNECTIONS: u32 = 2;
/// Pool size of `dashboard`: a page runs its reads one after another in one transaction;
/// the rest serve concurrent viewers, the tally and the probes.
pub const DASHBOARD_CONNECTIONS: u32 = 4;

/// Which command a pool is for; it decides the pool size unless `--db-max-connections` says
/// otherwise. The sizes are the constants above, declared nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// A one-shot command.
    Command,
    /// `run`: one job, with its heartbeat.
    Run,
    /// `consume`: one connection per job run at once, plus [`CONSUME_EXTRA_CONNECTIONS`].
    Consume { concurrency: usize },
    /// `dashboard`.
    Dashboard,
}

impl Pool {
    /// Default number of pooled connections.
    pub fn connections(self) -> u32 {
        match self {
            Pool::Command => COMMAND_CONNECTIONS,
            Pool::Run => RUN_CONNECTIONS,
            Pool::Dashboard => DASHBOARD_CONNECTIONS,
            Pool::Consume { concurrency } => u32::try_from(concurrency)
                .unwrap_or(u32::MAX)
                .saturating_add(CONSUME_EXTRA_CONNECTIONS),
        }
    }
}

/// A setting the operator has to change (e.g. a database URL that does not parse). It travels
/// inside the [`anyhow::Error`]s of this module, and [`crate::cmd`] gives it the usage exit
/// code, as for a bad flag: settings are validated at start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadSetting(pub String);

/// The database URL parses, or a [`BadSetting`] naming it (password redacted).
fn check_database_url(db: &DatabaseArgs) -> anyhow::Result<()> {
    Store::check_url(&db.database_url).map_err(|e| {
        BadSetting(format!(
            "--database-url (DATABASE_URL) `{}` is not a PostgreSQL URL: {e}",
            redact(&db.database_url)
        ))
        .into()
    })
}

/// Connect to the database and check it answers, naming it (password redacted) when it
/// cannot be reached. One-shot commands use this: without a database they can do nothing.
pub async fn connect_store(db: &DatabaseArgs, pool: Pool) -> anyhow::Result<Store> {
    check_database_url(db)?;
    Store::connect(&db.store_config(pool.connections()))
        .await
        .map_err(|e| {
            let url = redact(&db.database_url);
            // The store error stays the source, so the exit code can tell a refused
            // certificate (exit 2) from an outage.
            let line = match tls_refused(&e) {
                Some(why) => format!(
                    "TLS to the database at {url} refused: {why} (check sslrootcert= and sslmode= in DATABASE_URL)"
                ),
                None => format!("cannot reach the database at {url}: {e}"),
            };
            anyhow::Error::new(e).context(line)
        })
}

/// A pool that connects on first use, for the worker: it starts (and reports not-ready) while
/// the database is still coming up. Fails only on a URL that cannot be parsed.
pub fn lazy_store(db: &DatabaseArgs, pool: Pool) -> anyhow::Result<Store> {
    check_database_url(db)?;
    Ok(Store::connect_lazy(&db.store_config(pool.connections()))?)
}

/// Install the SIGTERM/SIGINT handlers now, before anything else can take time, and return a
/// flag that turns true on the first signal. The loops that must stop cleanly (the consume
/// loop and its drain, the reconciler, the migration wait) watch it.
pub fn shutdown_watch() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow!("cannot install the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow!("cannot install the SIGINT handler: {e}"))?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// The `/healthz`, `/readyz` and `/metrics` listener of a worker ([`crate::http`]), running
/// in its own task.
pub struct HttpServer {
    /// The bound address: with port 0 the system picked one, and this is the only place that
    /// knows which.
    pub addr: SocketAddr,
    /// The serving task. Dropping the server aborts it, so no exit path of a command can leave
    /// the listener running (or forget to stop it).
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Install the global metrics recorder, bind `addr` and start serving.
    pub async fn start(
        addr: SocketAddr,
        health: Arc<Health>,
        store: Store,
    ) -> anyhow::Result<Self> {
        let metrics = crate::http::install_metrics()?;
        let (listener, bound) = crate::http::bind(addr)
            .await
            .map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
        tracing::info!(addr = %bound, "http listening (/healthz, /readyz, /metrics)");
        let task = tokio::spawn(crate::http::serve(
            listener,
            crate::http::HttpState {
                metrics,
                health,
                store,
            },
        ));
        Ok(HttpServer { addr: bound, task })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How [`migrate_when_reachable`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The schema is current: go on.
    Done,
    /// The shutdown signal came while waiting for the database: stop, cleanly.
    ShutDown,
}

/// Apply migrations (sqlx holds an advisory lock, so replicas starting together take turns),
/// waiting for a database that is not reachable yet: transient errors are retried with
/// [`retry::reconnect_delays`] until the shutdown signal. Any other error is returned.
pub async fn migrate_when_reachable(
    store: &Store,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Migrated> {
    let mut delays = retry::reconnect_delays();
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(Migrated::Done),
            // A refused certificate looks like a broken connection, but waiting cannot fix it.
            Err(e) if e.is_transient() && tls_refused(&e).is_none() => {
                let wait = delays.next().unwrap_or(retry::MAX_DELAY);
                tracing::warn!(error = %redact(&e.to_string()), wait_ms = wait.as_millis() as u64, "database not reachable; retrying migrations");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(Migrated::ShutDown),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// If the database refused our TLS, or we refused its certificate (`sslmode=verify-ca` or
/// `verify-full` with the wrong `sslrootcert=`), why: retrying cannot help.
pub fn tls_refused(e: &StoreError) -> Option<String> {
    crate::tls::certificate_refusal(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizes() {
        assert_eq!(Pool::Command.connections(), COMMAND_CONNECTIONS);
        assert_eq!(Pool::Run.connections(), RUN_CONNECTIONS);
        assert_eq!(
            Pool::Consume { concurrency: 16 }.connections(),
            16 + CONSUME_EXTRA_CONNECTIONS
        );
        assert_eq!(
            Pool::Consume {
                concurrency: usize::MAX
            }
            .connections(),
            u32::MAX
        );
    }

    /// `--help` states the pool sizes in words; they must be the constants.
    #[test]
    fn the_pool_flag_documents_the_declared_sizes() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            db: DatabaseArgs,
        }
        let cmd = Flags::command();
        let help = cmd
            .get_arguments()
            .find(|a| a.get_id() == "db_max_connections")
            .and_then(|a| a.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let expected = format!(
            "concurrency + {CONSUME_EXTRA_CONNECTIONS} for `consume`, {RUN_CONNECTIONS} for `run`, else {COMMAND_CONNECTIONS}"
        );
        assert!(help.contains(&expected), "{help}");
    }
}
