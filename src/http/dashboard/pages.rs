//! What the dashboard's GET pages share (times as text, rendering, the page frame), and the
//! small pages: dead letters, sign-in, assets. Handlers read, shape rows into view structs of
//! display strings (so templates only print), and render; bad input becomes a [`PageError`].

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

use super::jobs::{LetterLine, letter_line};
use super::overview::ReasonRow;
use super::query::{LetterFilter, Parsed};
use super::{Chrome, Dashboard, PageError, Viewer};

/// Rows per page of the lists.
pub(super) const PAGE_SIZE: i64 = 50;

/// A time as the pages show it.
pub(super) fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn when_opt(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".to_string(), when)
}

/// A duration in words, coarse: "42 s", "5 min", "3 h 20 min", "2 d 4 h".
pub(super) fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

pub(super) fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

impl Dashboard {
    pub(super) fn chrome(&self, active: &'static str, viewer: &Viewer) -> Chrome {
        Chrome {
            active,
            mode: match viewer {
                Viewer::ReadOnly => "read-only",
                Viewer::SignedOut => "signed-out",
                Viewer::Operator { .. } => "operator",
            },
            csrf: viewer.csrf().to_string(),
            queue: self.inner.topology.queue().to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dead letters

#[derive(Template)]
#[template(path = "dead_letters.html", config = "src/http/askama.toml")]
struct LettersPage {
    chrome: Chrome,
    reason: String,
    reasons: Vec<ReasonRow>,
    letters: Vec<LetterLine>,
    first_href: Option<String>,
    next_href: Option<String>,
}

pub(super) async fn dead_letters(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let f = match LetterFilter::parse(raw.as_deref())
        .map_err(|e| PageError::BadRequest(format!("This filter cannot be used: {e}.")))?
    {
        Parsed::Redirect(f) => return Ok(Redirect::to(&f.href()).into_response()),
        Parsed::Canonical(f) => f,
    };
    let queue = d.inner.topology.queue();
    let reason = f.reason.as_ref().map(|r| r.as_str());
    let (rows, more) = d
        .inner
        .store
        .dashboard_dead_letters(queue, reason, f.after.unwrap_or(0), PAGE_SIZE)
        .await?;
    let reasons = d.inner.store.dashboard_dead_letter_reasons(queue).await?;
    let next_href = more.then(|| rows.last()).flatten().map(|last| {
        LetterFilter {
            after: Some(last.id),
            ..f.clone()
        }
        .href()
    });
    let viewer = d.viewer(&headers);
    render(&LettersPage {
        chrome: d.chrome("dead-letters", &viewer),
        reason: reason.unwrap_or_default().to_string(),
        reasons: reasons.iter().map(ReasonRow::of).collect(),
        letters: rows.iter().map(letter_line).collect(),
        first_href: f.after.is_some().then(|| {
            LetterFilter {
                after: None,
                ..f.clone()
            }
            .href()
        }),
        next_href,
    })
}

// ---------------------------------------------------------------------------------------
// Sign-in page and assets

#[derive(Template)]
#[template(path = "login.html", config = "src/http/askama.toml")]
struct LoginPage {
    chrome: Chrome,
}

pub(super) async fn login(
    State(d): State<Dashboard>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let viewer = d.viewer(&headers);
    render(&LoginPage {
        chrome: d.chrome("login", &viewer),
    })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/dashboard.css"),
    )
}

pub(super) async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/dashboard.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age(-5), "0 s");
        assert_eq!(age(59), "59 s");
        assert_eq!(age(61), "1 min");
        assert_eq!(age(3 * 3600 + 20 * 60), "3 h 20 min");
        assert_eq!(age(2 * 86400 + 4 * 3600), "2 d 4 h");
    }
}
