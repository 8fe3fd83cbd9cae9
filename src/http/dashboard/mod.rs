//! The operator dashboard: what `decay-worker jobs stats`, `jobs list`, `jobs show` and
//! `dead-letters list` print, as pages, plus the few actions an operator takes from them.
//!
//! * `/` overview (counts, the per-minute chart, failures, queue depths), refreshed in place
//!   from `/fragment/overview` by a few lines of script; without script it reloads itself.
//! * `/jobs` filtered list with keyset paging ([`query::JobFilter`]), `/jobs/{id}` detail.
//! * `/dead-letters` the `dead_letters` table, never the broker's queue (reading it there
//!   would hand messages back and count deliveries).
//! * actions, POST only, for a signed-in operator ([`auth`]): requeue dead letters (through
//!   [`crate::dead_letters::requeue`]), cancel a job, publish a pending job again (through the
//!   [`Producer`]). Each is logged with what it did.
//!
//! Pages are askama templates under `src/http/templates/` (compiled in, escaped by default);
//! the stylesheet and the script are embedded with `include_str!`, so nothing is loaded from
//! anywhere else, which the Content-Security-Policy also enforces.

mod actions;
pub mod auth;
pub mod chart;
mod jobs;
mod overview;
mod pages;
pub mod query;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Mutex;

use crate::broker::producer::Producer;
use crate::broker::{BrokerConfig, Topology};
use crate::store::dashboard::TerminalTally;
use crate::store::{Store, StoreError};
use crate::telemetry::redact;
pub use auth::OperatorAuth;

/// Default address of `decay-worker dashboard`: this machine only, since the read-only pages
/// need no token; expose it deliberately (compose maps it to a host port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Default interval of the overview's self-refresh.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// How long a page waits for the broker's queue depths before showing them as unavailable:
/// the rest of the overview comes from the database and must not wait on a broker outage.
const BROKER_READ_WAIT: Duration = Duration::from_secs(3);

/// How often the overview recounts terminal jobs in full (one pass over the table); between
/// recounts it counts only what changed since (see [`crate::store::dashboard::TerminalTally`]).
const TALLY_EVERY: Duration = Duration::from_secs(600);

/// How far behind the database's clock the full count stops: later changes are counted on
/// every refresh, so a settle committed a little after its `updated_at` is not missed.
const TALLY_MARGIN: Duration = Duration::from_secs(300);

/// What the dashboard needs to run.
pub struct DashboardConfig {
    pub store: Store,
    pub broker: BrokerConfig,
    /// `None`: read-only (no `DECAY_DASHBOARD_TOKEN`).
    pub auth: Option<OperatorAuth>,
    pub refresh: Duration,
}

/// The dashboard's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    topology: Topology,
    /// Broker connection for reading queue depths (passive declares); `None` once closed.
    reader: Mutex<Option<Producer>>,
    /// Broker connection for actions, apart from the reader so a long requeue does not
    /// stall the overview's refreshes.
    actor: Mutex<Option<Producer>>,
    auth: Option<OperatorAuth>,
    refresh: Duration,
    /// The last full count of terminal jobs, and when it was taken.
    tally: Mutex<Option<(TerminalTally, Instant)>>,
}

impl Dashboard {
    pub fn new(cfg: DashboardConfig) -> Dashboard {
        Dashboard {
            inner: Arc::new(Inner {
                store: cfg.store,
                topology: cfg.broker.topology(),
                reader: Mutex::new(Some(Producer::new(
                    cfg.broker.clone(),
                    "decay-worker dashboard",
                ))),
                actor: Mutex::new(Some(Producer::new(
                    cfg.broker,
                    "decay-worker dashboard actions",
                ))),
                auth: cfg.auth,
                refresh: cfg.refresh,
                tally: Mutex::new(None),
            }),
        }
    }

    /// Close the broker connections (on shutdown).
    pub async fn close(&self) {
        for producer in [&self.inner.reader, &self.inner.actor] {
            if let Some(p) = producer.lock().await.take() {
                p.close().await;
            }
        }
    }

    /// The signed-in operator's session, if the request carries a valid one.
    fn session(&self, headers: &HeaderMap) -> Option<auth::Session> {
        let auth = self.inner.auth.as_ref()?;
        auth.session(
            auth::session_cookie(headers)?,
            chrono::Utc::now().timestamp(),
        )
    }

    /// What the page around the content shows about the viewer.
    fn viewer(&self, headers: &HeaderMap) -> Viewer {
        match (&self.inner.auth, self.session(headers)) {
            (None, _) => Viewer::ReadOnly,
            (Some(_), None) => Viewer::SignedOut,
            (Some(a), Some(s)) => Viewer::Operator { csrf: a.csrf(&s) },
        }
    }
}

/// Who is looking: decides the banner and whether action forms are shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// No token is configured: nobody can act.
    ReadOnly,
    /// A token is configured and this browser has not signed in.
    SignedOut,
    /// Signed in; `csrf` goes into every action form.
    Operator { csrf: String },
}

impl Viewer {
    pub fn can_act(&self) -> bool {
        matches!(self, Viewer::Operator { .. })
    }
    pub fn csrf(&self) -> &str {
        match self {
            Viewer::Operator { csrf } => csrf,
            _ => "",
        }
    }
}

/// The frame of every page: navigation and the viewer banner.
pub struct Chrome {
    /// The navigation entry to highlight (`overview`, `jobs`, `dead-letters`, `login`).
    pub active: &'static str,
    /// `read-only`, `signed-out` or `operator` (see [`Viewer`]).
    pub mode: &'static str,
    /// The session's CSRF token; empty unless `mode` is `operator`.
    pub csrf: String,
    /// The topology base the dashboard shows.
    pub queue: String,
}

/// Why a dashboard request failed; each maps to a status and a page saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// An extractor refused the request (a form too large, of the wrong type...): its status.
    #[error("{1}")]
    Rejected(StatusCode, String),
    /// A template failed to render: our bug, not the request's.
    #[error("the page could not be rendered: {0}")]
    Render(#[from] askama::Error),
    /// Anything else that is the server's fault.
    #[error("{0}")]
    Internal(String),
    #[error("the database is unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("the broker is unavailable: {0}")]
    Broker(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            PageError::Conflict(_) => (StatusCode::CONFLICT, "Not possible now"),
            PageError::Rejected(status, _) => (*status, "Bad request"),
            PageError::Store(e) if !e.is_transient() => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
            }
            PageError::Store(_) | PageError::Broker(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Unavailable")
            }
            PageError::Render(_) | PageError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
            }
        };
        let detail = redact(&self.to_string());
        if status.is_server_error() {
            tracing::warn!(error = %detail, "dashboard request failed");
        }
        super::error_page(status, title, &detail)
    }
}

/// The dashboard's routes, with `/healthz` and `/readyz`; wrap it in [`super::harden`].
pub fn router(dashboard: Dashboard) -> Router {
    let store = dashboard.inner.store.clone();
    Router::new()
        .route("/", get(overview::overview))
        .route("/fragment/overview", get(overview::overview_fragment))
        .route("/jobs", get(jobs::jobs))
        .route("/jobs/{id}", get(jobs::job))
        .route("/jobs/{id}/cancel", post(actions::cancel))
        .route("/jobs/{id}/publish", post(actions::publish))
        .route("/dead-letters", get(pages::dead_letters))
        .route("/dead-letters/requeue", post(actions::requeue))
        .route("/login", get(pages::login).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/assets/dashboard.css", get(pages::stylesheet))
        .route("/assets/dashboard.js", get(pages::script))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(dashboard)
        .merge(super::probes::health_routes(store))
        .layer(middleware::from_fn(security_headers))
}

async fn not_found() -> Response {
    PageError::NotFound("There is no page at this address.".into()).into_response()
}

async fn method_not_allowed() -> Response {
    super::error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This address does not take that kind of request (actions are forms that POST).",
    )
}

/// Headers of every dashboard response: nothing may load from elsewhere, be framed, or be
/// sniffed into another type; no referrer (job ids in URLs) leaks to other sites.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on
    // the dashboard's own form POSTs, which the cross-site check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
