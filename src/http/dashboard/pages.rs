//! The dashboard's GET pages. Handlers read, shape the rows into view structs of display
//! strings (so templates only print), and render; bad input becomes a [`PageError`].

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Instant;

use super::chart::{self, Chart};
use super::query::{JobCursor, JobFilter, JobPage, LetterFilter, Parsed};
use super::{BROKER_READ_WAIT, Chrome, Dashboard, PageError, TALLY_EVERY, TALLY_MARGIN, Viewer};
use crate::broker::describe;
use crate::broker::topology::RETRY_TIERS;
use crate::decay::{JobKind, JobStateKind};
use crate::ids::DecayJobId;
use crate::store::DeadLetterSelector;
use crate::store::dashboard::{
    JobDetail, JobListFrom, JobListQuery, JobListRow, Overview, StateKindCount, TerminalTally,
};

/// Rows per page of the lists.
const PAGE_SIZE: i64 = 50;

/// Characters of a dead letter's body shown in the list.
const BODY_PREVIEW_CHARS: usize = 160;

/// A time as the pages show it.
pub(super) fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn when_opt(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".to_string(), when)
}

/// A duration in words, coarse: "42 s", "5 min", "3 h 20 min", "2 d 4 h".
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn render(t: &impl Template) -> Result<Response, PageError> {
    t.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| PageError::Conflict(format!("the page could not be rendered: {e}")))
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
// Overview

/// A count that links to the jobs it counts.
struct Cell {
    count: i64,
    href: String,
}

struct StateRow {
    state: &'static str,
    cells: Vec<Cell>,
    total: Cell,
}

struct CodeRow {
    code: String,
    count: i64,
    href: String,
}

struct QueueRow {
    role: String,
    name: String,
    ready: u32,
    consumers: u32,
}

struct ReasonRow {
    reason: String,
    count: i64,
    href: String,
}

struct Due {
    id: String,
    href: String,
    scheduled_for: String,
    waiting: String,
}

/// The part of the overview that refreshes itself.
struct Live {
    now: String,
    kinds: Vec<&'static str>,
    rows: Vec<StateRow>,
    kind_totals: Vec<Cell>,
    total: i64,
    failures: Vec<CodeRow>,
    chart: Chart,
    oldest_due: Option<Due>,
    expired_leases: i64,
    queues: Vec<QueueRow>,
    queues_error: Option<String>,
    dead_total: i64,
    dead: Vec<ReasonRow>,
}

#[derive(Template)]
#[template(path = "overview.html", config = "src/http/askama.toml")]
struct OverviewPage {
    chrome: Chrome,
    live: Live,
    refresh_ms: u128,
}

#[derive(Template)]
#[template(path = "overview_fragment.html", config = "src/http/askama.toml")]
struct OverviewFragment {
    live: Live,
}

fn filtered(f: JobFilter) -> String {
    f.href()
}

fn live(o: Overview, queues: Result<Vec<QueueRow>, String>) -> Live {
    let count = |s: JobStateKind, k: Option<JobKind>| -> i64 {
        o.by_state_kind
            .iter()
            .filter(|c| c.state == s.wire() && k.is_none_or(|k| c.kind == k.wire()))
            .map(|c| c.count)
            .sum()
    };
    let rows = JobStateKind::ALL
        .into_iter()
        .map(|s| StateRow {
            state: s.wire(),
            cells: JobKind::ALL
                .into_iter()
                .map(|k| Cell {
                    count: count(s, Some(k)),
                    href: filtered(JobFilter {
                        state: Some(s),
                        kind: Some(k),
                        ..JobFilter::default()
                    }),
                })
                .collect(),
            total: Cell {
                count: count(s, None),
                href: filtered(JobFilter {
                    state: Some(s),
                    ..JobFilter::default()
                }),
            },
        })
        .collect();
    let kind_totals = JobKind::ALL
        .into_iter()
        .map(|k| Cell {
            count: o
                .by_state_kind
                .iter()
                .filter(|c| c.kind == k.wire())
                .map(|c| c.count)
                .sum(),
            href: filtered(JobFilter {
                kind: Some(k),
                ..JobFilter::default()
            }),
        })
        .collect();
    let failures = o
        .failures_by_code
        .iter()
        .map(|c| CodeRow {
            code: c.failure_code.clone(),
            count: c.count,
            href: filtered(JobFilter {
                state: Some(JobStateKind::Failed),
                code: super::query::FailureCode::parse(&c.failure_code),
                ..JobFilter::default()
            }),
        })
        .collect();
    let oldest_due = o.oldest_due.as_ref().map(|d| Due {
        href: format!("/jobs/{}", d.id),
        id: d.id.clone(),
        scheduled_for: when(&d.scheduled_for),
        waiting: age((o.now - d.scheduled_for).num_seconds()),
    });
    let dead = o
        .dead_letters
        .iter()
        .map(|r| ReasonRow {
            reason: r.reason.clone(),
            count: r.count,
            href: LetterFilter {
                reason: super::query::ReasonToken::parse(&r.reason),
                after: None,
            }
            .href(),
        })
        .collect();
    let (queues, queues_error) = match queues {
        Ok(q) => (q, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Live {
        now: when(&o.now),
        kinds: JobKind::ALL.map(JobKind::wire).to_vec(),
        rows,
        kind_totals,
        total: o.by_state_kind.iter().map(|c| c.count).sum(),
        failures,
        chart: chart::per_minute(o.now, &o.per_minute),
        oldest_due,
        expired_leases: o.expired_leases,
        queues,
        queues_error,
        dead_total: o.dead_letters.iter().map(|r| r.count).sum(),
        dead,
    }
}

/// Per state and kind, the sum of two sets of counts.
fn add_counts(a: &[StateKindCount], b: &[StateKindCount]) -> Vec<StateKindCount> {
    let mut out: Vec<StateKindCount> = Vec::new();
    for c in a.iter().chain(b) {
        match out
            .iter_mut()
            .find(|o| o.state == c.state && o.kind == c.kind)
        {
            Some(o) => o.count += c.count,
            None => out.push(c.clone()),
        }
    }
    out
}

impl Dashboard {
    /// Ready messages and consumers of every queue of the topology, by passive declare; an
    /// error text when the broker does not answer within [`BROKER_READ_WAIT`].
    async fn queue_depths(&self) -> Result<Vec<QueueRow>, String> {
        let t = &self.inner.topology;
        let mut names = vec![("main".to_string(), t.queue().to_string())];
        for (tier, _) in RETRY_TIERS {
            names.push((format!("retry {tier}"), t.retry_queue(tier)));
        }
        names.push(("parked, not yet recorded".to_string(), t.dead_queue()));
        let read = async {
            let mut guard = self.inner.reader.lock().await;
            let producer = guard.as_mut().ok_or("the dashboard is shutting down")?;
            let session = producer.connected().await.map_err(|e| describe(&e))?;
            let mut out = Vec::new();
            for (role, name) in names {
                let (ready, consumers) = session
                    .queue_counts(&name)
                    .await
                    .map_err(|e| describe(&e))?;
                out.push(QueueRow {
                    role,
                    name,
                    ready,
                    consumers,
                });
            }
            Ok::<_, String>(out)
        };
        tokio::time::timeout(BROKER_READ_WAIT, read)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the broker did not answer within {} s",
                    BROKER_READ_WAIT.as_secs()
                ))
            })
    }

    /// The full count of terminal jobs, taken again when older than [`TALLY_EVERY`]. The
    /// lock is held while counting, so concurrent refreshes wait for one count instead of
    /// each running their own.
    async fn tally(&self) -> Result<TerminalTally, PageError> {
        let mut guard = self.inner.tally.lock().await;
        if let Some((tally, at)) = guard.as_ref()
            && at.elapsed() < TALLY_EVERY
        {
            return Ok(tally.clone());
        }
        let tally = self
            .inner
            .store
            .dashboard_terminal_tally(TALLY_MARGIN)
            .await?;
        *guard = Some((tally.clone(), Instant::now()));
        Ok(tally)
    }

    async fn live(&self) -> Result<Live, PageError> {
        let tally = self.tally().await?;
        let (overview, queues) = tokio::join!(
            self.inner
                .store
                .dashboard_overview(self.inner.topology.queue(), tally.upto),
            self.queue_depths()
        );
        let mut overview = overview?;
        overview.by_state_kind = add_counts(&tally.counts, &overview.by_state_kind);
        Ok(live(overview, queues))
    }
}

pub(super) async fn overview(
    State(d): State<Dashboard>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let viewer = d.viewer(&headers);
    render(&OverviewPage {
        chrome: d.chrome("overview", &viewer),
        live: d.live().await?,
        refresh_ms: d.inner.refresh.as_millis(),
    })
}

pub(super) async fn overview_fragment(State(d): State<Dashboard>) -> Result<Response, PageError> {
    render(&OverviewFragment {
        live: d.live().await?,
    })
}

// ---------------------------------------------------------------------------------------
// Jobs list

struct JobLine {
    id: String,
    href: String,
    kind: String,
    state: String,
    failure_code: String,
    updated_at: String,
    scheduled_for: String,
    attempts: i32,
    claimed_by: String,
}

struct Choice {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "jobs.html", config = "src/http/askama.toml")]
struct JobsPage {
    chrome: Chrome,
    states: Vec<Choice>,
    kinds: Vec<Choice>,
    code: String,
    from: String,
    to: String,
    summary: String,
    jobs: Vec<JobLine>,
    newest_href: Option<String>,
    newer_href: Option<String>,
    older_href: Option<String>,
    last_hour_href: String,
    last_day_href: String,
}

fn cursor_of(row: &JobListRow) -> Option<JobCursor> {
    Some(JobCursor {
        updated_at: row.updated_at,
        id: DecayJobId::parse(&row.id).ok()?,
    })
}

fn describe_filter(f: &JobFilter) -> String {
    let mut parts = Vec::new();
    if let Some(s) = f.state {
        parts.push(format!("state {}", s.wire()));
    }
    if let Some(k) = f.kind {
        parts.push(format!("kind {}", k.wire()));
    }
    if let Some(c) = &f.code {
        parts.push(format!("failure code {}", c.as_str()));
    }
    if let Some(t) = &f.from {
        parts.push(format!("changed from {}", when(t)));
    }
    if let Some(t) = &f.to {
        parts.push(format!("changed before {}", when(t)));
    }
    if parts.is_empty() {
        "all jobs".to_string()
    } else {
        parts.join(", ")
    }
}

pub(super) async fn jobs(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let f = match JobFilter::parse(raw.as_deref())
        .map_err(|e| PageError::BadRequest(format!("This filter cannot be used: {e}.")))?
    {
        Parsed::Redirect(f) => return Ok(Redirect::to(&f.href()).into_response()),
        Parsed::Canonical(f) => f,
    };
    let q = JobListQuery {
        state: f.state,
        kind: f.kind,
        failure_code: f.code.as_ref().map(|c| c.as_str().to_string()),
        from: f.from,
        to: f.to,
        start: match f.page {
            JobPage::Newest => JobListFrom::Newest,
            JobPage::Older(c) => JobListFrom::OlderThan(c.updated_at, c.id),
            JobPage::Newer(c) => JobListFrom::NewerThan(c.updated_at, c.id),
        },
        limit: PAGE_SIZE,
    };
    let page = d.inner.store.dashboard_jobs(&q).await?;
    let older_href = page
        .more_older
        .then(|| page.rows.last().and_then(cursor_of))
        .flatten()
        .map(|c| f.at(JobPage::Older(c)).href());
    let newer_href = page
        .more_newer
        .then(|| page.rows.first().and_then(cursor_of))
        .flatten()
        .map(|c| f.at(JobPage::Newer(c)).href());
    let now = Utc::now();
    let since = |secs: i64| {
        let from = DateTime::from_timestamp(now.timestamp() - secs, 0).unwrap_or(now);
        JobFilter {
            from: Some(from),
            to: None,
            page: JobPage::Newest,
            ..f.clone()
        }
        .href()
    };
    let viewer = d.viewer(&headers);
    render(&JobsPage {
        chrome: d.chrome("jobs", &viewer),
        states: JobStateKind::ALL
            .into_iter()
            .map(|s| Choice {
                value: s.wire(),
                selected: f.state == Some(s),
            })
            .collect(),
        kinds: JobKind::ALL
            .into_iter()
            .map(|k| Choice {
                value: k.wire(),
                selected: f.kind == Some(k),
            })
            .collect(),
        code: f
            .code
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        from: JobFilter::form_time(f.from.as_ref()),
        to: JobFilter::form_time(f.to.as_ref()),
        summary: describe_filter(&f),
        jobs: page
            .rows
            .iter()
            .map(|r| JobLine {
                href: format!("/jobs/{}", r.id),
                id: r.id.clone(),
                kind: r.kind.clone(),
                state: r.state.clone(),
                failure_code: r.failure_code.clone().unwrap_or_default(),
                updated_at: when(&r.updated_at),
                scheduled_for: when(&r.scheduled_for),
                attempts: r.attempts,
                claimed_by: r.claimed_by.clone().unwrap_or_default(),
            })
            .collect(),
        newest_href: (f.page != JobPage::Newest).then(|| f.at(JobPage::Newest).href()),
        newer_href,
        older_href,
        last_hour_href: since(3600),
        last_day_href: since(86400),
    })
}

// ---------------------------------------------------------------------------------------
// Job detail

/// A labelled value of the detail page.
struct Field {
    label: &'static str,
    value: String,
}

struct SourceLine {
    position: i64,
    id: String,
    found: bool,
    text: String,
    status: String,
    confidence: String,
    authority: String,
}

struct EdgeLine {
    source_id: String,
    source_kind: String,
    recorded_at: String,
}

struct SummaryView {
    id: String,
    claim: String,
    fields: Vec<Field>,
}

struct LetterLine {
    id: i64,
    reason: String,
    detail: String,
    dead_lettered_at: String,
    deliveries: i32,
    job_id: String,
    job_href: String,
    body: String,
    body_bytes: i32,
}

#[derive(Template)]
#[template(path = "job.html", config = "src/http/askama.toml")]
struct JobView {
    chrome: Chrome,
    id: String,
    state: String,
    kind: String,
    method: String,
    state_reason: Option<String>,
    outcome: Vec<Field>,
    claim: Vec<Field>,
    timing: Vec<Field>,
    attestation: Vec<Field>,
    sources: Vec<SourceLine>,
    summary: Option<SummaryView>,
    edges: Vec<EdgeLine>,
    letters: Vec<LetterLine>,
    columns: Vec<(String, String)>,
    can_cancel: bool,
    can_publish: bool,
}

fn field(label: &'static str, value: impl Into<String>) -> Field {
    Field {
        label,
        value: value.into(),
    }
}

fn opt(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "–".to_string())
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn letter_line(l: &crate::store::DeadLetterRow) -> LetterLine {
    let body: String = String::from_utf8_lossy(&l.body)
        .chars()
        .take(BODY_PREVIEW_CHARS)
        .collect();
    LetterLine {
        id: l.id,
        reason: l.reason.clone(),
        detail: l.detail.clone(),
        dead_lettered_at: when(&l.dead_lettered_at),
        deliveries: l.deliveries,
        job_href: l
            .job_id
            .as_ref()
            .map(|j| format!("/jobs/{j}"))
            .unwrap_or_default(),
        job_id: l.job_id.clone().unwrap_or_default(),
        body,
        body_bytes: l.body_bytes,
    }
}

fn job_view(d: &Dashboard, viewer: &Viewer, x: JobDetail, letters: Vec<LetterLine>) -> JobView {
    let j = &x.job;
    let now = Utc::now();
    let lease = match &j.lease_expires_at {
        None => "–".to_string(),
        Some(t) if *t <= now => format!("{} (expired)", when(t)),
        Some(t) => format!("{} (live)", when(t)),
    };
    let llm = x
        .summary
        .as_ref()
        .and_then(|s| s.applies_when_json.get("llm_summary"))
        .and_then(Value::as_object);
    let mut attestation = vec![
        field("operator key id", opt(j.attestation_key_id.as_ref())),
        field("signature", opt(j.attestation_signature_hex.as_ref())),
    ];
    for (k, v) in llm.into_iter().flatten() {
        attestation.push(Field {
            label: "llm_summary",
            value: format!("{k}: {}", json_text(v)),
        });
    }
    let pending = j.state == JobStateKind::Pending.wire();
    JobView {
        chrome: d.chrome("jobs", viewer),
        id: j.id.clone(),
        state: j.state.clone(),
        kind: j.kind.clone(),
        method: j.summary_method.clone(),
        state_reason: j.state_reason.clone(),
        outcome: vec![
            field("failure code", opt(j.failure_code.as_ref())),
            field("result memory", opt(j.result_memory_id.as_ref())),
            field("cancel reason", opt(j.cancel_reason.as_ref())),
        ],
        claim: vec![
            field("attempts (claims made)", j.attempts.to_string()),
            field("claimed by", opt(j.claimed_by.as_ref())),
            field(
                "claim token",
                j.claim_token.map_or_else(|| "–".into(), |t| t.to_string()),
            ),
            field("lease expires", lease),
            field("redeliveries", j.redeliveries.to_string()),
            field("last published", when_opt(j.last_published_at.as_ref())),
        ],
        timing: vec![
            field("scheduled for", when(&j.scheduled_for)),
            field("created", when(&j.created_at)),
            field("created by", j.created_by.clone()),
            field("updated", when(&j.updated_at)),
        ],
        attestation,
        sources: x
            .sources
            .iter()
            .map(|s| SourceLine {
                position: s.position,
                id: s.id.clone(),
                found: s.found,
                text: s.text.clone().unwrap_or_default(),
                status: s.status.clone().unwrap_or_default(),
                confidence: s.confidence.map(|c| format!("{c:.2}")).unwrap_or_default(),
                authority: s.authority.clone().unwrap_or_default(),
            })
            .collect(),
        summary: x.summary.as_ref().map(|m| SummaryView {
            id: m.id.clone(),
            claim: m.claim.clone(),
            fields: vec![
                field("type", m.memory_type.clone()),
                field("status", m.status.clone()),
                field("confidence", format!("{:.2}", m.confidence)),
                field("authority", m.authority.clone()),
                field("domains", m.domains_json.to_string()),
                field("source episodes", m.source_episodes_json.to_string()),
                field("source events", m.source_events_json.to_string()),
                field("applies when", m.applies_when_json.to_string()),
                field("created", when(&m.created_at)),
            ],
        }),
        edges: x
            .edges
            .iter()
            .map(|e| EdgeLine {
                source_id: e.source_id.clone(),
                source_kind: e.source_kind.clone(),
                recorded_at: when(&e.recorded_at),
            })
            .collect(),
        letters,
        columns: x
            .columns
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_else(|| "null".to_string())))
            .collect(),
        can_cancel: pending || j.state == JobStateKind::InProgress.wire(),
        can_publish: pending,
    }
}

/// The job id of a path, refused with a reason when it is not one.
pub(super) fn job_id(path: Result<Path<String>, PathRejection>) -> Result<DecayJobId, PageError> {
    let Path(raw) = path.map_err(|e| PageError::BadRequest(e.body_text()))?;
    DecayJobId::parse(&raw).map_err(|e| {
        let shown: String = raw.chars().take(60).flat_map(char::escape_debug).collect();
        PageError::BadRequest(format!("`{shown}` is not a job id: {e}."))
    })
}

pub(super) async fn job(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let id = job_id(path)?;
    let Some(detail) = d.inner.store.dashboard_job(&id).await? else {
        return Err(PageError::NotFound(format!("There is no job {id}.")));
    };
    let letters = d
        .inner
        .store
        .list_dead_letters(
            d.inner.topology.queue(),
            &DeadLetterSelector::Ids {
                letters: vec![],
                jobs: vec![id],
            },
            PAGE_SIZE,
        )
        .await?;
    let viewer = d.viewer(&headers);
    render(&job_view(
        &d,
        &viewer,
        detail,
        letters.iter().map(letter_line).collect(),
    ))
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
        reasons: reasons
            .iter()
            .map(|r| ReasonRow {
                reason: r.reason.clone(),
                count: r.count,
                href: LetterFilter {
                    reason: super::query::ReasonToken::parse(&r.reason),
                    after: None,
                }
                .href(),
            })
            .collect(),
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
