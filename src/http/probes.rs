//! `/healthz`, `/readyz` and `/metrics`: the routes probes and scrapers use.
//!
//! They answer exactly as the hand-written listener they replace did (README "Operations"):
//! `/healthz` is `ok` while the process runs, `/readyz` names the broker (and the node the
//! worker is on) and the database and is 503 when either is down, `/metrics` is the Prometheus text from
//! `metrics-exporter-prometheus`. The limits around them are the shared ones of
//! [`super::harden`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::store::{Store, StoreError};
use crate::telemetry::redact;
use crate::worker::Health;

/// Default listener address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_ADDR: &str = "0.0.0.0:9090";

/// Job duration buckets (seconds): deterministic jobs take milliseconds, LLM jobs seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Batch size buckets (deliveries per batch; 1 is a lone delivery on the per-job path).
const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How long `/readyz` waits for the database before calling it unavailable: a probe must
/// answer well inside its own timeout even when the database hangs.
const READINESS_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Install the global Prometheus recorder (the worker declares and describes its series in
/// [`crate::worker::series`]). A background task runs
/// the recorder's upkeep: without it histogram samples pile up between scrapes, and a worker
/// nobody scrapes would grow with every job.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
            &DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("decay_batch_size".into()),
            &BATCH_SIZE_BUCKETS,
        )?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Shared state of the worker's endpoint.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    pub health: Arc<Health>,
    pub store: Store,
}

/// What `/readyz` checks besides the database: the worker's broker session, or nothing (the
/// dashboard serves its pages from the database alone and opens the broker on demand).
#[derive(Clone)]
pub(crate) enum BrokerReadiness {
    Worker(Arc<Health>),
    NotRequired,
}

#[derive(Clone)]
struct ProbeState {
    metrics: Option<PrometheusHandle>,
    broker: BrokerReadiness,
    store: Store,
}

/// The worker's routes: `/healthz`, `/readyz`, `/metrics`; 404 for anything else.
pub fn worker_router(state: HttpState) -> Router {
    probe_routes(ProbeState {
        metrics: Some(state.metrics),
        broker: BrokerReadiness::Worker(state.health),
        store: state.store,
    })
    .fallback(not_found)
}

/// `/healthz` and `/readyz` for another process (the dashboard), to merge into its router.
pub(crate) fn health_routes(store: Store) -> Router {
    probe_routes(ProbeState {
        metrics: None,
        broker: BrokerReadiness::NotRequired,
        store,
    })
}

fn probe_routes(state: ProbeState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if state.metrics.is_some() {
        router = router.route("/metrics", get(metrics_text));
    }
    router.with_state(state)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn healthz() -> Response {
    text(StatusCode::OK, "text/plain", "ok\n".into())
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())
}

async fn metrics_text(State(state): State<ProbeState>) -> Response {
    let body = state.metrics.map(|m| m.render()).unwrap_or_default();
    text(StatusCode::OK, "text/plain; version=0.0.4", body)
}

async fn readyz(State(state): State<ProbeState>) -> Response {
    let db = database_readiness(&state.store).await;
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let db_line = match &db {
        Ok(()) => "database: ok\n".to_string(),
        Err(why) => format!("database: unavailable ({why})\n"),
    };
    let (ready, body) = match &state.broker {
        BrokerReadiness::Worker(health) => {
            let broker = health.broker_ready.load(Ordering::Relaxed);
            // The node of the session (the last one while down): with a cluster in AMQP_URL,
            // which node a replica is on is the first question when one is unready.
            let node = health
                .broker_node
                .lock()
                .map(|n| n.clone())
                .unwrap_or_default();
            let node = if node.is_empty() {
                String::new()
            } else {
                format!(" (node {node})")
            };
            (
                broker && db.is_ok(),
                format!("broker: {}{node}\n{db_line}", word(broker)),
            )
        }
        BrokerReadiness::NotRequired => (db.is_ok(), db_line),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "text/plain", body)
}

/// The database is ready only when a writable primary answers: a worker whose endpoint leads
/// to a standby (mid-failover) can run no job. `Err`: why not, in one redacted line — the
/// pool's last refusal (a read-only server) when it has one, since a refused connection
/// otherwise only shows up as a timeout.
async fn database_readiness(store: &Store) -> Result<(), String> {
    let checked = tokio::time::timeout(READINESS_DB_TIMEOUT, store.check_writable()).await;
    let why = match checked {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e @ StoreError::ReadOnly(_))) => e.to_string(),
        Ok(Err(e @ StoreError::Database(sqlx::Error::PoolTimedOut))) => {
            store.last_refusal().unwrap_or_else(|| e.to_string())
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => store
            .last_refusal()
            .unwrap_or_else(|| format!("no answer within {READINESS_DB_TIMEOUT:?}")),
    };
    Err(redact(&why).replace('\n', " "))
}

/// `decay-worker health`: GET `/healthz` on the local listener; true when it answers 200.
/// A client this small needs no HTTP library: one request, `connection: close`, read to the
/// end, look at the status line.
pub async fn probe(port: u16) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Ok(true))
    )
}
