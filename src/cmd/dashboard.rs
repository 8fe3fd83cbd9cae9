//! `decay-worker dashboard`: serve the operator UI until SIGTERM/SIGINT.
//!
//! The dashboard reads the database and the broker and needs neither to start: the pool
//! connects lazily and the broker connections open on first use, so it comes up (and says
//! what is unavailable) while the stack is still starting. Actions are enabled only by
//! `DECAY_DASHBOARD_TOKEN`, read from the environment here and nowhere else.

use super::CliError;
use crate::app::{self, Pool};
use crate::cli::DashboardArgs;
use crate::http::dashboard::{self, Dashboard, DashboardConfig, OperatorAuth};
use crate::http::{self as web, Limits};

/// The environment variable holding the operator token. Never a flag: a flag's value shows
/// in `ps` and in shell history.
pub const TOKEN_ENV: &str = "DECAY_DASHBOARD_TOKEN";

/// The operator token from the environment: `None` (read-only) when unset or empty.
fn operator_auth() -> Result<Option<OperatorAuth>, CliError> {
    match std::env::var(TOKEN_ENV) {
        Ok(token) if token.is_empty() => Ok(None),
        Ok(token) => OperatorAuth::new(&token).map(Some).map_err(CliError::usage),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(CliError::usage(format!("{TOKEN_ENV} is not valid UTF-8")))
        }
    }
}

pub async fn run(a: DashboardArgs) -> Result<(), CliError> {
    let mut shutdown = app::shutdown_watch()?;
    if a.dashboard_refresh.0 < std::time::Duration::from_secs(1) {
        return Err(CliError::usage("--dashboard-refresh must be at least 1s"));
    }
    let auth = operator_auth()?;
    let read_only = auth.is_none();
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = app::lazy_store(&a.db, Pool::Dashboard)?;
    let board = Dashboard::new(DashboardConfig {
        store: store.clone(),
        broker,
        auth,
        refresh: a.dashboard_refresh.0,
    });
    let (listener, bound) = web::bind(a.dashboard_addr)
        .await
        .map_err(|e| CliError::internal(format!("cannot listen on {}: {e}", a.dashboard_addr)))?;
    tracing::info!(addr = %bound, read_only, "dashboard listening");
    if read_only {
        tracing::info!("{TOKEN_ENV} is not set: the dashboard is read-only");
    }
    let limits = Limits::default();
    let router = web::harden(dashboard::router(board.clone()), &limits);
    web::serve_until(listener, router, &limits, async move {
        let _ = shutdown.wait_for(|s| *s).await;
    })
    .await;
    board.close().await;
    store.close().await;
    tracing::info!("dashboard stopped");
    Ok(())
}
