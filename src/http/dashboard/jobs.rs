//! The jobs list (filters, keyset pages) and a job's detail page.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::pages::{PAGE_SIZE, render, when, when_opt};
use super::query::{JobCursor, JobFilter, JobPage, Parsed};
use super::{Chrome, Dashboard, PageError, Viewer};
use crate::decay::attestation::AttestationAudit;
use crate::decay::{JobKind, JobStateKind};
use crate::ids::DecayJobId;
use crate::store::DeadLetterSelector;
use crate::store::dashboard::{JobDetail, JobListFrom, JobListQuery, JobListRow};

/// Characters of a dead letter's body shown in lists.
const BODY_PREVIEW_CHARS: usize = 160;

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

/// One field of the stored attestation, in monospace and wrapped anywhere (hex is long);
/// `id` names its element, so a reader (or a test) finds the field by what it is.
struct AuditField {
    id: &'static str,
    label: &'static str,
    value: String,
}

/// Every field of the stored attestation, in the order the signature covers them (spec §7.4),
/// the key and the signature first.
fn audit_fields(a: &AttestationAudit) -> Vec<AuditField> {
    let f = |id, label, v: &Option<String>| AuditField {
        id,
        label,
        value: opt(v.as_ref()),
    };
    vec![
        f("key-id", "operator key id", &a.key_id),
        f("verifying-key", "verifying key", &a.verifying_key_hex),
        f("signature", "signature", &a.signature_hex),
        f("signed-at", "signed at", &a.signed_at),
        f("model", "model", &a.model_name),
        f(
            "template-digest",
            "prompt template digest",
            &a.prompt_template_blake3,
        ),
    ]
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

pub(super) struct LetterLine {
    pub(super) id: i64,
    pub(super) reason: String,
    pub(super) detail: String,
    pub(super) dead_lettered_at: String,
    pub(super) deliveries: i32,
    pub(super) job_id: String,
    pub(super) job_href: String,
    pub(super) body: String,
    pub(super) body_bytes: i32,
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
    attestation: Vec<AuditField>,
    /// Whether the row holds the whole envelope (none before migration 0005, none without
    /// an attestation).
    attestation_complete: bool,
    /// What the summary memory recorded of its LLM call (the echoed model).
    llm_summary: Vec<Field>,
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

pub(super) fn letter_line(l: &crate::store::DeadLetterRow) -> LetterLine {
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
    let j = &x.job.record;
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
    let audit = x.job.attestation();
    let llm_summary = llm
        .into_iter()
        .flatten()
        .map(|(k, v)| field("llm_summary", format!("{k}: {}", json_text(v))))
        .collect();
    let pending = j.state == JobStateKind::Pending.wire();
    JobView {
        chrome: d.chrome("jobs", viewer),
        id: j.id.to_string(),
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
            field("redeliveries", x.job.redeliveries.to_string()),
            field("last published", when_opt(j.last_published_at.as_ref())),
        ],
        timing: vec![
            field("scheduled for", when(&j.scheduled_for)),
            field("created", when(&j.created_at)),
            field("created by", j.created_by.clone()),
            field("updated", when(&j.updated_at)),
        ],
        attestation: audit_fields(&audit),
        attestation_complete: audit.envelope(&j.id).is_some(),
        llm_summary,
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
