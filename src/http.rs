//! `/healthz`, `/readyz` and `/metrics` on one small HTTP/1.1 listener.
//!
//! Three fixed GET routes for probes and scrapers do not need a web framework: each request is
//! read up to its blank line, answered, and the connection closed. The Prometheus text comes
//! from `metrics-exporter-prometheus`, not from us.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::store::Store;
use crate::worker::Health;

/// Default listener address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_ADDR: &str = "0.0.0.0:9090";

/// Job duration buckets (seconds): deterministic jobs take milliseconds, LLM jobs seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Install the global Prometheus recorder and describe our metrics. A background task runs
/// the recorder's upkeep: without it histogram samples pile up between scrapes, and a worker
/// nobody scrapes would grow with every job.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
            &DURATION_BUCKETS,
        )?
        .install_recorder()?;
    metrics::describe_counter!(
        "decay_jobs_total",
        "Deliveries settled, by outcome (completed, noop, failed, retried, deferred, dead_lettered, ...)"
    );
    metrics::describe_histogram!(
        "decay_job_duration_seconds",
        "Time to run one job, by kind and outcome"
    );
    metrics::describe_gauge!("decay_jobs_in_flight", "Jobs running now");
    metrics::describe_counter!("decay_deliveries_total", "Deliveries received");
    metrics::describe_counter!(
        "decay_redeliveries_total",
        "Deliveries flagged redelivered by the broker"
    );
    metrics::describe_counter!(
        "decay_broker_reconnects_total",
        "Broker sessions re-opened after a failure"
    );
    metrics::describe_counter!(
        "decay_database_errors_total",
        "Runs that ended in a database error (retried)"
    );
    metrics::describe_counter!(
        "decay_lease_recoveries_total",
        "Expired claims of other runners recovered"
    );
    metrics::describe_counter!(
        "decay_reconciled_total",
        "Jobs republished by the reconciler"
    );
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

/// Shared state of the endpoint.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    pub health: Arc<Health>,
    pub store: Store,
}

/// Bind the listener (port 0 picks a free port) and return the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, state: HttpState) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, &state)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, state: &HttpState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => readiness(state).await,
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", state.metrics.render()),
        ("GET", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "method not allowed\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn readiness(state: &HttpState) -> (u16, &'static str, String) {
    let broker = state.health.broker_ready.load(Ordering::Relaxed);
    let db = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await,
        Ok(Ok(()))
    );
    let body = format!(
        "broker: {}\ndatabase: {}\n",
        if broker { "ok" } else { "unavailable" },
        if db { "ok" } else { "unavailable" }
    );
    (if broker && db { 200 } else { 503 }, "text/plain", body)
}

/// `decay-worker health`: GET `/healthz` on the local listener; true when it answers 200.
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
