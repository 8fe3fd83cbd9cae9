//! The overview page and its self-refreshing fragment: counts, the chart, failures, what
//! waits and what is stuck, and the queues.

use std::time::Instant;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::chart::{self, Chart};
use super::pages::{age, render, when};
use super::query::{FailureCode, JobFilter, LetterFilter, ReasonToken};
use super::{BROKER_READ_WAIT, Chrome, Dashboard, PageError, TALLY_EVERY, TALLY_MARGIN};
use crate::broker::describe;
use crate::broker::topology::RETRY_TIERS;
use crate::decay::{JobKind, JobStateKind};
use crate::store::dashboard::{Overview, ReasonCount, StateKindCount, TerminalTally};

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

pub(super) struct ReasonRow {
    pub(super) reason: String,
    pub(super) count: i64,
    pub(super) href: String,
}

impl ReasonRow {
    /// A reason's count, linking to its dead letters.
    pub(super) fn of(r: &ReasonCount) -> ReasonRow {
        ReasonRow {
            reason: r.reason.clone(),
            count: r.count,
            href: LetterFilter {
                reason: ReasonToken::parse(&r.reason),
                after: None,
            }
            .href(),
        }
    }
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
                code: FailureCode::parse(&c.failure_code),
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
    let dead = o.dead_letters.iter().map(ReasonRow::of).collect();
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
