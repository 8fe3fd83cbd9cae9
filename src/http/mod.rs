//! One HTTP stack for the whole binary: axum routers served by hyper, behind the same limits.
//!
//! The worker serves its probes ([`probes`]: `/healthz`, `/readyz`, `/metrics`), the
//! `dashboard` command serves the operator UI ([`dashboard`]) plus `/healthz` and `/readyz`.
//! Both go through [`serve`], so every listener has the same defences against slow or greedy
//! clients:
//!
//! * a cap on open connections (accepting waits for a free slot, so a flood queues in the
//!   kernel's backlog instead of in our memory);
//! * a deadline for a request's headers (slowloris), which hyper only enforces with a timer,
//!   and that is why this module drives hyper itself instead of `axum::serve` (which sets none);
//! * bounded headers, paths, query strings and bodies;
//! * a deadline per request, and a cap on requests in progress that answers 503 at once
//!   rather than queueing without bound.

pub mod dashboard;
mod probes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

pub use probes::{DEFAULT_ADDR, HttpState, install_metrics, probe};

/// Limits of one listener. [`Limits::default`] is what every listener of the binary uses;
/// the numbers are sized for a handful of operators and scrapers, not for public traffic.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once; the next `accept` waits for one to close.
    pub max_connections: usize,
    /// Requests being handled at once; more get 503 immediately.
    pub max_in_flight: usize,
    /// Deadline of one request, from its headers to its response (408 when exceeded).
    pub request_timeout: Duration,
    /// Deadline for a request's headers, also the idle limit of a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Request line plus headers, bytes (hyper answers 431 beyond it).
    pub max_header_bytes: usize,
    /// Path, bytes (414 beyond it).
    pub max_path_bytes: usize,
    /// Query string, bytes (414 beyond it).
    pub max_query_bytes: usize,
    /// Request body, bytes (413 beyond it; only forms have bodies).
    pub max_body_bytes: usize,
    /// After shutdown is asked for, how long in-flight requests may take.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 128,
            max_in_flight: 32,
            request_timeout: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_path_bytes: 512,
            max_query_bytes: 1024,
            max_body_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The peer of a connection, put into every request's extensions (actions log it).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Bind the listener (port 0 picks a free port) and return the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serve the worker's probes until the task is dropped (the worker aborts it on exit).
pub async fn serve(listener: TcpListener, state: HttpState) {
    let limits = Limits::default();
    let router = harden(probes::worker_router(state), &limits);
    serve_until(listener, router, &limits, std::future::pending::<()>()).await;
}

/// Wrap a router in the per-request limits: request deadline, in-flight cap, bounded path,
/// query string and body.
pub fn harden(router: Router, limits: &Limits) -> Router {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let sizes = (limits.max_path_bytes, limits.max_query_bytes);
    router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(sizes, bound_uri))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(in_flight, shed_load))
}

/// Accept connections and serve `router` on each until `shutdown` completes, then let
/// in-flight requests finish for at most `limits.shutdown_grace`.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let router = router.clone();
            router.oneshot(req.map(axum::body::Body::new))
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "http connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: requests still running after the shutdown grace; dropping them");
    }
}

/// 503 at once when `max_in_flight` requests are already being handled: a client retries,
/// while a queue would only grow.
async fn shed_load(State(in_flight): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = in_flight.try_acquire() else {
        let mut resp = error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many requests are being handled right now. Try again in a moment.",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}

/// 414 for an oversized path or query string, before any handler parses it.
async fn bound_uri(
    State((max_path, max_query)): State<(usize, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().len();
    let query = req.uri().query().map_or(0, str::len);
    if path > max_path || query > max_query {
        return error_page(
            StatusCode::URI_TOO_LONG,
            "Address too long",
            &format!(
                "This address has a {path}-byte path and a {query}-byte query string; at most \
                 {max_path} and {max_query} bytes are accepted."
            ),
        );
    }
    next.run(req).await
}

/// The one error page of the binary: a status, a title and what went wrong, as HTML that
/// links back to the dashboard. Every text goes through the template's HTML escaping.
#[derive(Template)]
#[template(path = "error.html", config = "src/http/askama.toml")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    detail: &'a str,
}

/// Render [`ErrorPage`] with its status.
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        detail,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        // Rendering a fixed template with three strings cannot fail short of a formatter
        // error; answer with the status anyway.
        Err(_) => (status, detail.to_string()).into_response(),
    }
}
