//! The dashboard's actions, all POST forms: sign in and out, requeue dead letters, cancel a
//! job, publish a pending job again.
//!
//! Every action is checked in the same order before anything changes: the request comes from
//! this dashboard's own pages ([`auth::same_origin`]), a token is configured, the browser has
//! a valid session, and the form's CSRF token is that session's. A refusal changes nothing
//! and is logged; a success is logged with what it did, under the target
//! `decay_worker::dashboard`, with the peer address. Tokens and sessions are never logged.

use askama::Template;
use axum::Extension;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::query::ReasonToken;
use super::{Chrome, Dashboard, PageError, auth};
use crate::broker::describe;
use crate::dead_letters::DeadLetterError;
use crate::http::Peer;
use crate::store::{CancelOutcome, DeadLetterSelector};

/// Longest cancel reason stored from the form.
const MAX_REASON_CHARS: usize = 1000;

/// Log target of every action, so operators can route them.
const TARGET: &str = "decay_worker::dashboard";

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    csrf: String,
    reason: String,
}

#[derive(Deserialize)]
pub(super) struct RequeueForm {
    csrf: String,
    /// `one`, `reason` or `all`.
    scope: String,
    id: Option<String>,
    reason: Option<String>,
}

/// What an action did, shown after it.
#[derive(Template)]
#[template(path = "done.html", config = "src/http/askama.toml")]
struct DonePage {
    chrome: Chrome,
    title: String,
    lines: Vec<String>,
    back_href: String,
    back_label: &'static str,
}

fn peer_of(peer: Option<Extension<Peer>>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |Extension(Peer(p))| p.to_string())
}

/// The form, or a page with the rejection's own status (413 too large, 415 not a form, 400
/// missing fields) and what was wrong.
fn form<T>(f: Result<Form<T>, FormRejection>) -> Result<T, PageError> {
    f.map(|Form(t)| t).map_err(|e| {
        PageError::Rejected(
            e.status(),
            format!("The form could not be read: {}", e.body_text()),
        )
    })
}

impl Dashboard {
    /// The checks every action passes before it runs; a refusal is logged.
    fn authorize(
        &self,
        action: &'static str,
        peer: &str,
        headers: &HeaderMap,
        csrf: &str,
    ) -> Result<(), PageError> {
        let refused = |why: String| {
            tracing::warn!(target: TARGET, action, %peer, reason = %why, "dashboard action refused");
            PageError::Forbidden(why)
        };
        auth::same_origin(headers).map_err(refused)?;
        let Some(a) = &self.inner.auth else {
            return Err(refused(
                "This dashboard is read-only: DECAY_DASHBOARD_TOKEN is not set, so no action \
                 can be taken from it."
                    .into(),
            ));
        };
        let Some(session) = self.session(headers) else {
            return Err(refused(
                "Sign in with the operator token first (your session is missing or has expired)."
                    .into(),
            ));
        };
        if !a.csrf_matches(&session, csrf) {
            return Err(refused(
                "This form was not sent by this dashboard's page or is out of date (CSRF token \
                 mismatch). Reload the page and try again."
                    .into(),
            ));
        }
        Ok(())
    }

    fn done(
        &self,
        headers: &HeaderMap,
        title: String,
        lines: Vec<String>,
        back: (String, &'static str),
    ) -> Result<Response, PageError> {
        let viewer = self.viewer(headers);
        DonePage {
            chrome: self.chrome("", &viewer),
            title,
            lines,
            back_href: back.0,
            back_label: back.1,
        }
        .render()
        .map(|html| axum::response::Html(html).into_response())
        .map_err(PageError::from)
    }
}

pub(super) async fn login(
    State(d): State<Dashboard>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let peer = peer_of(peer);
    auth::same_origin(&headers).map_err(PageError::Forbidden)?;
    let f = form(f)?;
    let Some(a) = &d.inner.auth else {
        return Err(PageError::Forbidden(
            "This dashboard is read-only: DECAY_DASHBOARD_TOKEN is not set.".into(),
        ));
    };
    if !a.token_matches(&f.token) {
        tracing::warn!(target: TARGET, action = "sign_in", %peer, "dashboard sign-in refused: wrong token");
        return Err(PageError::Forbidden(
            "That is not the operator token.".into(),
        ));
    }
    let cookie = a
        .new_session(Utc::now().timestamp())
        .map_err(|e| PageError::Internal(format!("cannot start a session: {e}")))?;
    tracing::info!(target: TARGET, action = "sign_in", %peer, "dashboard operator signed in");
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::set_session_cookie(&cookie)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub(super) async fn logout(headers: HeaderMap) -> Result<Response, PageError> {
    auth::same_origin(&headers).map_err(PageError::Forbidden)?;
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_session_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub(super) async fn requeue(
    State(d): State<Dashboard>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    f: Result<Form<RequeueForm>, FormRejection>,
) -> Result<Response, PageError> {
    let peer = peer_of(peer);
    let f = form(f)?;
    d.authorize("requeue_dead_letters", &peer, &headers, &f.csrf)?;
    let which = match f.scope.as_str() {
        "one" => {
            let id =
                f.id.as_deref()
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| PageError::BadRequest("No dead letter id was given.".into()))?;
            DeadLetterSelector::Ids {
                letters: vec![id],
                jobs: vec![],
            }
        }
        "reason" => DeadLetterSelector::Reason(
            f.reason
                .as_deref()
                .and_then(ReasonToken::parse)
                .ok_or_else(|| PageError::BadRequest("No valid reason was given.".into()))?
                .as_str()
                .to_string(),
        ),
        "all" => DeadLetterSelector::All,
        _ => {
            return Err(PageError::BadRequest(
                "Requeue what? The scope must be one, reason or all.".into(),
            ));
        }
    };
    let done = {
        let mut guard = d.inner.actor.lock().await;
        let producer = guard
            .as_mut()
            .ok_or_else(|| PageError::Broker("the dashboard is shutting down".into()))?;
        let session = producer
            .connected()
            .await
            .map_err(|e| PageError::Broker(describe(&e)))?;
        crate::dead_letters::requeue(session, &d.inner.store, &which)
            .await
            .map_err(|e| match e {
                DeadLetterError::Store(s) => PageError::Store(s),
                DeadLetterError::Broker(b) => PageError::Broker(describe(&b)),
            })?
    };
    let letters: Vec<i64> = done.moved.iter().map(|l| l.id).collect();
    let jobs: Vec<&str> = done
        .moved
        .iter()
        .filter_map(|l| l.job_id.as_deref())
        .collect();
    let kept: Vec<i64> = done.skipped.iter().map(|l| l.id).collect();
    tracing::info!(
        target: TARGET, action = "requeue_dead_letters", %peer, scope = %f.scope,
        selector = ?which, requeued = letters.len(), ?letters, ?jobs, ?kept,
        "dashboard action: dead letters requeued"
    );
    if let (
        DeadLetterSelector::Ids {
            letters: wanted, ..
        },
        true,
    ) = (&which, done.moved.is_empty() && done.skipped.is_empty())
    {
        return Err(PageError::NotFound(format!(
            "There is no dead letter {} (it may have been requeued or purged already).",
            wanted.first().copied().unwrap_or_default()
        )));
    }
    let mut lines: Vec<String> = done
        .moved
        .iter()
        .map(|l| {
            format!(
                "Dead letter {} ({}, job {}) is back in the main queue.",
                l.id,
                l.reason,
                l.job_id.as_deref().unwrap_or("–")
            )
        })
        .collect();
    lines.extend(done.skipped.iter().map(|l| {
        format!(
            "Dead letter {} was kept: its {}-byte body was stored truncated, so it cannot be \
             republished faithfully (purge it with `decay-worker dead-letters purge {}`).",
            l.id, l.body_bytes, l.id
        )
    }));
    if lines.is_empty() {
        lines.push("Nothing matched: there was no dead letter to requeue.".into());
    }
    d.done(
        &headers,
        format!("Requeued {} dead letter(s)", done.moved.len()),
        lines,
        ("/dead-letters".into(), "Back to dead letters"),
    )
}

pub(super) async fn cancel(
    State(d): State<Dashboard>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    f: Result<Form<CancelForm>, FormRejection>,
) -> Result<Response, PageError> {
    let peer = peer_of(peer);
    let id = super::jobs::job_id(path)?;
    let f = form(f)?;
    d.authorize("cancel_job", &peer, &headers, &f.csrf)?;
    let reason = f.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(PageError::BadRequest(format!(
            "Give a reason for the cancellation (1 to {MAX_REASON_CHARS} characters); it is stored on the job."
        )));
    }
    let back = (format!("/jobs/{id}"), "Back to the job");
    match d.inner.store.cancel_job(&id, reason).await? {
        CancelOutcome::Cancelled { from } => {
            tracing::info!(target: TARGET, action = "cancel_job", %peer, job_id = %id, %from, %reason, "dashboard action: job cancelled");
            d.done(
                &headers,
                format!("Job {id} cancelled"),
                vec![format!("{id}: {from} → cancelled. Reason stored: {reason}")],
                back,
            )
        }
        CancelOutcome::NotFound => Err(PageError::NotFound(format!("There is no job {id}."))),
        CancelOutcome::Terminal { state } => Err(PageError::Conflict(format!(
            "Job {id} is already {state}; only pending and in-progress jobs can be cancelled."
        ))),
    }
}

pub(super) async fn publish(
    State(d): State<Dashboard>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let peer = peer_of(peer);
    let id = super::jobs::job_id(path)?;
    let f = form(f)?;
    d.authorize("publish_job", &peer, &headers, &f.csrf)?;
    let Some(row) = d.inner.store.read_job(&id).await? else {
        return Err(PageError::NotFound(format!("There is no job {id}.")));
    };
    if row.state != crate::decay::JobStateKind::Pending.wire() {
        return Err(PageError::Conflict(format!(
            "Job {id} is {}; only pending jobs are published again.",
            row.state
        )));
    }
    // Marked before publishing, never after (see `Store::mark_published`).
    d.inner.store.mark_published(&[id]).await?;
    let published = {
        let mut guard = d.inner.actor.lock().await;
        match guard.as_mut() {
            Some(producer) => producer.publish(&id).await.map_err(|e| describe(&e)),
            None => Err("the dashboard is shutting down".to_string()),
        }
    };
    if let Err(e) = published {
        d.inner.store.unmark_published(&[id]).await?;
        return Err(PageError::Broker(e));
    }
    tracing::info!(target: TARGET, action = "publish_job", %peer, job_id = %id, "dashboard action: job published again");
    d.done(
        &headers,
        format!("Job {id} published"),
        vec![format!(
            "The message for {id} is confirmed by the broker; a worker will run the job."
        )],
        (format!("/jobs/{id}"), "Back to the job"),
    )
}
