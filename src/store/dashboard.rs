//! The operator dashboard's reads: the overview's counts and per-minute chart, the jobs list
//! with keyset paging, a job's full detail, dead letters page by page.
//!
//! Nothing here writes, and nothing here is on the job hot path. Each read of a page runs in
//! one `REPEATABLE READ READ ONLY` transaction, so the numbers on a page agree with each
//! other (a job finishing mid-render cannot be counted twice or not at all), and `now()` is
//! the database's clock, the same one leases use. Every list walks an index (migration 0004);
//! the README has the EXPLAIN timings on a million rows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use super::{DeadLetterRow, Store, StoreError};
use crate::decay::attestation::AttestationAudit;
use crate::decay::{JobKind, JobRecord, JobStateKind};
use crate::ids::DecayJobId;

/// Jobs of one state and kind.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct StateKindCount {
    pub state: String,
    pub kind: String,
    pub count: i64,
}

/// Failed jobs with one failure code.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CodeCount {
    pub failure_code: String,
    pub count: i64,
}

/// Jobs that completed and failed in one minute (by `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MinuteCount {
    pub minute: DateTime<Utc>,
    pub completed: i64,
    pub failed: i64,
}

/// The pending job that has waited longest past its `scheduled_for`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OldestDue {
    pub id: String,
    pub scheduled_for: DateTime<Utc>,
}

/// Dead letters with one reason.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReasonCount {
    pub reason: String,
    pub count: i64,
}

/// Terminal jobs (completed, failed, cancelled) by state and kind that last changed before
/// `upto`: the base the overview adds recent changes to (see [`Store::dashboard_overview`]).
#[derive(Debug, Clone)]
pub struct TerminalTally {
    pub upto: DateTime<Utc>,
    pub counts: Vec<StateKindCount>,
}

/// Everything the overview shows from the database, read at one instant.
#[derive(Debug, Clone)]
pub struct Overview {
    /// The database's clock when the snapshot was taken.
    pub now: DateTime<Utc>,
    /// Every pending and in-progress job, and the terminal jobs that changed at or after the
    /// `since` the overview was asked for, by state and kind.
    pub by_state_kind: Vec<StateKindCount>,
    pub failures_by_code: Vec<CodeCount>,
    /// The minutes of the last hour (the current one included) with any completed or failed
    /// job, oldest first; minutes without any are absent.
    pub per_minute: Vec<MinuteCount>,
    pub oldest_due: Option<OldestDue>,
    pub expired_leases: i64,
    /// Dead letters of the dashboard's queue, by reason.
    pub dead_letters: Vec<ReasonCount>,
}

/// One row of the jobs list.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct JobListRow {
    pub id: String,
    pub kind: String,
    pub summary_method: String,
    pub state: String,
    pub failure_code: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: i32,
    pub claimed_by: Option<String>,
}

/// Where a page of the jobs list starts. The list is newest change first, ordered by
/// `(updated_at, id)` descending; a position is such a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobListFrom {
    Newest,
    /// Rows strictly older than this position.
    OlderThan(DateTime<Utc>, DecayJobId),
    /// Rows strictly newer than this position (the page before it).
    NewerThan(DateTime<Utc>, DecayJobId),
}

/// A filtered page of the jobs list.
#[derive(Debug, Clone)]
pub struct JobListQuery {
    pub state: Option<JobStateKind>,
    pub kind: Option<JobKind>,
    pub failure_code: Option<String>,
    /// `updated_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `updated_at < to`.
    pub to: Option<DateTime<Utc>>,
    pub start: JobListFrom,
    pub limit: i64,
}

/// A page of the jobs list, newest first, and whether there is more on either side.
#[derive(Debug, Clone)]
pub struct JobListPage {
    pub rows: Vec<JobListRow>,
    pub more_older: bool,
    pub more_newer: bool,
}

/// Every typed column of a job: the record the runner reads, and the audit columns it
/// leaves out (the attestation's, so the page shows everything its signature covers).
#[derive(Debug, Clone, FromRow)]
pub struct JobDetailRow {
    #[sqlx(flatten)]
    pub record: JobRecord,
    pub attestation_signature_hex: Option<String>,
    pub attestation_verifying_key_hex: Option<String>,
    pub attestation_signed_at: Option<String>,
    pub attestation_model_name: Option<String>,
    pub attestation_prompt_template_blake3: Option<String>,
    pub redeliveries: i32,
}

impl JobDetailRow {
    /// The stored attestation, the same record `jobs show` prints and an auditor re-verifies.
    pub fn attestation(&self) -> AttestationAudit {
        AttestationAudit {
            key_id: self.record.attestation_key_id.clone(),
            verifying_key_hex: self.attestation_verifying_key_hex.clone(),
            signature_hex: self.attestation_signature_hex.clone(),
            signed_at: self.attestation_signed_at.clone(),
            model_name: self.attestation_model_name.clone(),
            prompt_template_blake3: self.attestation_prompt_template_blake3.clone(),
        }
    }
}

/// One source of a job, in the job's order, with what it claims (a memory's claim, an
/// episode's summary, a principle's statement); `found` is false when the row is missing.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct SourceRow {
    pub position: i64,
    pub id: String,
    pub found: bool,
    pub text: Option<String>,
    pub status: Option<String>,
    pub confidence: Option<f64>,
    pub authority: Option<String>,
}

/// The summary memory a completed compression wrote.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct SummaryMemoryRow {
    pub id: String,
    pub memory_type: String,
    pub status: String,
    pub claim: String,
    pub confidence: f64,
    pub authority: String,
    pub domains_json: Value,
    pub applies_when_json: Value,
    pub source_episodes_json: Value,
    pub source_events_json: Value,
    pub created_at: DateTime<Utc>,
}

/// A supersession edge from a source to the summary memory.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EdgeRow {
    pub source_id: String,
    /// `memory` or `episode`.
    pub source_kind: String,
    pub decay_job_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// A job with everything about it the database knows.
#[derive(Debug, Clone)]
pub struct JobDetail {
    pub job: JobDetailRow,
    /// Every column of the row as text, in table order: columns added by later migrations
    /// show up here without a code change.
    pub columns: Vec<(String, Option<String>)>,
    pub sources: Vec<SourceRow>,
    pub summary: Option<SummaryMemoryRow>,
    pub edges: Vec<EdgeRow>,
}

const LIST_COLUMNS: &str = "id, kind, summary_method, state, failure_code, scheduled_for, \
     created_at, updated_at, attempts, claimed_by";

/// `REPEATABLE READ READ ONLY`: one snapshot for a whole page.
async fn snapshot(store: &Store) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
    let mut tx = store.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The states a list query walks: the filter's, or every state. A failure code exists only
/// on failed jobs (`decay_jobs_state_payload`), so it narrows the walk to `failed`; with
/// another state it matches nothing (`None`).
fn states_of(q: &JobListQuery) -> Option<Vec<JobStateKind>> {
    match (q.state, &q.failure_code) {
        (Some(s), Some(_)) if s != JobStateKind::Failed => None,
        (_, Some(_)) => Some(vec![JobStateKind::Failed]),
        (Some(s), None) => Some(vec![s]),
        (None, None) => Some(JobStateKind::ALL.to_vec()),
    }
}

/// `state = '<wire>'` as a literal, not a bind: the wire tokens are fixed strings of ours, and
/// a literal lets even a generic plan use the partial index of failed jobs.
fn push_state(qb: &mut QueryBuilder<Postgres>, s: JobStateKind) {
    qb.push(format_args!("state = '{}'", s.wire()));
}

/// The filters other than the state, each ` AND ...`.
fn push_filters(qb: &mut QueryBuilder<Postgres>, q: &JobListQuery) {
    if let Some(k) = q.kind {
        qb.push(" AND kind = ").push_bind(k.wire());
    }
    if let Some(c) = &q.failure_code {
        qb.push(" AND failure_code = ").push_bind(c.clone());
    }
    if let Some(f) = q.from {
        qb.push(" AND updated_at >= ").push_bind(f);
    }
    if let Some(t) = q.to {
        qb.push(" AND updated_at < ").push_bind(t);
    }
}

/// ` AND (updated_at, id) < (at, id)` (older) or `>` (newer).
fn push_beyond(qb: &mut QueryBuilder<Postgres>, (at, id): (DateTime<Utc>, &str), older: bool) {
    qb.push(if older {
        " AND (updated_at, id) < ("
    } else {
        " AND (updated_at, id) > ("
    });
    qb.push_bind(at)
        .push(", ")
        .push_bind(id.to_string())
        .push(")");
}

/// Is there a row of `states` matching the filters strictly older (or newer) than the
/// position? Per state, the nearest such row in index order (`ORDER BY ... LIMIT 1`, not
/// `EXISTS`, whose plan may be a table scan that runs to the end when nothing matches).
async fn any_beyond(
    conn: &mut PgConnection,
    q: &JobListQuery,
    states: &[JobStateKind],
    position: (DateTime<Utc>, &str),
    older: bool,
) -> Result<bool, StoreError> {
    let order = if older {
        " ORDER BY updated_at DESC, id DESC LIMIT 1) IS NOT NULL"
    } else {
        " ORDER BY updated_at, id LIMIT 1) IS NOT NULL"
    };
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    for (i, s) in states.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push("(SELECT 1 FROM decay_jobs WHERE ");
        push_state(&mut qb, *s);
        push_filters(&mut qb, q);
        push_beyond(&mut qb, position, older);
        qb.push(order);
    }
    Ok(qb.build_query_scalar().fetch_one(conn).await?)
}

/// Dead letters of a queue by reason.
async fn reason_counts(
    conn: &mut PgConnection,
    queue: &str,
) -> Result<Vec<ReasonCount>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT reason, count(*) AS count FROM dead_letters WHERE queue = $1
          GROUP BY reason ORDER BY reason",
    )
    .bind(queue)
    .fetch_all(conn)
    .await?)
}

impl Store {
    /// Dead letters of a queue by reason (the dead-letters page's requeue-by-reason forms).
    pub async fn dashboard_dead_letter_reasons(
        &self,
        queue: &str,
    ) -> Result<Vec<ReasonCount>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        reason_counts(&mut conn, queue).await
    }

    /// Count every terminal job that last changed more than `margin` before the database's
    /// `now()`. A full pass over the table (about 0.15 s per million rows here), so the
    /// dashboard runs it rarely: terminal rows never change state again, so this base stays
    /// exact and only what changed since `upto` needs counting on each refresh. The margin
    /// covers commits that land after their `updated_at` (clock skew, long transactions).
    pub async fn dashboard_terminal_tally(
        &self,
        margin: std::time::Duration,
    ) -> Result<TerminalTally, StoreError> {
        let mut tx = snapshot(self).await?;
        let upto: DateTime<Utc> = sqlx::query_scalar("SELECT now() - $1::interval")
            .bind(
                sqlx::postgres::types::PgInterval::try_from(margin)
                    .map_err(|e| StoreError::Validation(format!("margin out of range: {e}")))?,
            )
            .fetch_one(&mut *tx)
            .await?;
        let counts = sqlx::query_as(
            "SELECT state, kind, count(*) AS count FROM decay_jobs
              WHERE state IN ('completed', 'failed', 'cancelled') AND updated_at < $1
              GROUP BY state, kind",
        )
        .bind(upto)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TerminalTally { upto, counts })
    }

    /// The overview's numbers, from one snapshot. `queue` is the topology base whose dead
    /// letters are counted; terminal jobs are counted from `since` on (add a
    /// [`TerminalTally`] taken up to `since` for the totals). Every count is an index-only
    /// scan whose size is the live jobs plus what changed since `since`, however many
    /// terminal rows the table holds.
    pub async fn dashboard_overview(
        &self,
        queue: &str,
        since: DateTime<Utc>,
    ) -> Result<Overview, StoreError> {
        let mut tx = snapshot(self).await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let by_state_kind = sqlx::query_as(
            "SELECT state, kind, count(*) AS count FROM decay_jobs
              WHERE state IN ('pending', 'in_progress') GROUP BY state, kind
             UNION ALL
             SELECT state, kind, count(*) AS count FROM decay_jobs
              WHERE state IN ('completed', 'failed', 'cancelled') AND updated_at >= $1
              GROUP BY state, kind",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        let failures_by_code = sqlx::query_as(
            "SELECT failure_code, count(*) AS count FROM decay_jobs
              WHERE state = 'failed' GROUP BY failure_code
              ORDER BY count(*) DESC, failure_code",
        )
        .fetch_all(&mut *tx)
        .await?;
        let per_minute = sqlx::query_as(
            "SELECT date_trunc('minute', updated_at) AS minute,
                    count(*) FILTER (WHERE state = 'completed') AS completed,
                    count(*) FILTER (WHERE state = 'failed') AS failed
               FROM decay_jobs
              WHERE state IN ('completed', 'failed')
                AND updated_at >= date_trunc('minute', now()) - interval '59 minutes'
                AND updated_at < date_trunc('minute', now()) + interval '1 minute'
              GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(&mut *tx)
        .await?;
        let oldest_due = sqlx::query_as(
            "SELECT id, scheduled_for FROM decay_jobs
              WHERE state = 'pending' AND scheduled_for <= now()
              ORDER BY scheduled_for, id LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let expired_leases = sqlx::query_scalar(
            "SELECT count(*) FROM decay_jobs
              WHERE state = 'in_progress' AND lease_expires_at <= now()",
        )
        .fetch_one(&mut *tx)
        .await?;
        let dead_letters = reason_counts(&mut tx, queue).await?;
        tx.commit().await?;
        Ok(Overview {
            now,
            by_state_kind,
            failures_by_code,
            per_minute,
            oldest_due,
            expired_leases,
            dead_letters,
        })
    }

    /// One page of the jobs list. Keyset paging on `(updated_at, id)`: a page costs the same
    /// however deep it is, and rows arriving meanwhile neither repeat nor skip rows.
    ///
    /// The page is a merge of one ordered walk of `(state, updated_at, id)` per state, each
    /// stopping after a page: the same index serves every filter, so the table needs no
    /// separate `(updated_at, id)` index (one index fewer to update on every state change).
    pub async fn dashboard_jobs(&self, q: &JobListQuery) -> Result<JobListPage, StoreError> {
        let Some(states) = states_of(q) else {
            return Ok(JobListPage {
                rows: Vec::new(),
                more_older: false,
                more_newer: false,
            });
        };
        let limit = q.limit.clamp(1, 500);
        let newer = matches!(q.start, JobListFrom::NewerThan(..));
        let order = if newer {
            " ORDER BY updated_at, id LIMIT "
        } else {
            " ORDER BY updated_at DESC, id DESC LIMIT "
        };
        let mut tx = snapshot(self).await?;
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {LIST_COLUMNS} FROM ("));
        for (i, s) in states.iter().enumerate() {
            if i > 0 {
                qb.push(" UNION ALL ");
            }
            qb.push(format_args!(
                "(SELECT {LIST_COLUMNS} FROM decay_jobs WHERE "
            ));
            push_state(&mut qb, *s);
            push_filters(&mut qb, q);
            match &q.start {
                JobListFrom::Newest => {}
                JobListFrom::OlderThan(at, id) => {
                    push_beyond(&mut qb, (*at, &id.to_string()), true)
                }
                JobListFrom::NewerThan(at, id) => {
                    push_beyond(&mut qb, (*at, &id.to_string()), false)
                }
            }
            qb.push(order).push_bind(limit + 1).push(")");
        }
        qb.push(") AS page").push(order).push_bind(limit + 1);
        let mut rows: Vec<JobListRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
        let beyond = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        if newer {
            rows.reverse();
        }
        // The other side: anything past this page's edge (or the cursor, for an empty page).
        let edge = match (&q.start, rows.first(), rows.last()) {
            (JobListFrom::Newest, ..) => None,
            (JobListFrom::OlderThan(..), Some(first), _) => {
                Some((first.updated_at, first.id.clone(), false))
            }
            (JobListFrom::NewerThan(..), _, Some(last)) => {
                Some((last.updated_at, last.id.clone(), true))
            }
            (JobListFrom::OlderThan(at, id), None, _) => Some((*at, id.to_string(), false)),
            (JobListFrom::NewerThan(at, id), _, None) => Some((*at, id.to_string(), true)),
        };
        let other_side = match &edge {
            None => false,
            Some((at, id, older)) => any_beyond(&mut tx, q, &states, (*at, id), *older).await?,
        };
        tx.commit().await?;
        let (more_older, more_newer) = match (&q.start, rows.is_empty()) {
            (JobListFrom::Newest, _) => (beyond, false),
            (JobListFrom::OlderThan(..), false) => (beyond, other_side),
            (JobListFrom::NewerThan(..), false) => (other_side, beyond),
            (JobListFrom::OlderThan(..), true) => (false, other_side),
            (JobListFrom::NewerThan(..), true) => (other_side, false),
        };
        Ok(JobListPage {
            rows,
            more_older,
            more_newer,
        })
    }

    /// A job with its sources (and what each claims), its summary memory and the memory's
    /// edges, and every column as text; `None` when there is no such job.
    pub async fn dashboard_job(&self, id: &DecayJobId) -> Result<Option<JobDetail>, StoreError> {
        let id = id.to_string();
        let mut tx = snapshot(self).await?;
        // `*`: the record reads its columns by name, and so do the audit columns.
        let Some(job) = sqlx::query_as::<_, JobDetailRow>("SELECT * FROM decay_jobs WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let columns = sqlx::query_as(
            "SELECT c.key, c.value
               FROM decay_jobs d,
                    json_each_text(row_to_json(d)) WITH ORDINALITY AS c(key, value, n)
              WHERE d.id = $1 ORDER BY c.n",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let sources = sqlx::query_as(
            "SELECT s.n AS position, s.id,
                    coalesce(m.id, e.id, p.id) IS NOT NULL AS found,
                    coalesce(m.claim, e.summary, p.statement) AS text,
                    coalesce(m.status, e.status) AS status,
                    coalesce(m.confidence, e.confidence) AS confidence,
                    m.authority
               FROM decay_jobs d
              CROSS JOIN LATERAL jsonb_array_elements_text(d.source_ids_json)
                         WITH ORDINALITY AS s(id, n)
               LEFT JOIN memories m ON d.kind = 'candidate_compression' AND m.id = s.id
               LEFT JOIN episodes e ON d.kind = 'episode_compression' AND e.id = s.id
               LEFT JOIN principles p ON d.kind = 'expired_principle_review' AND p.id = s.id
              WHERE d.id = $1 ORDER BY s.n",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let (summary, edges) = match &job.record.result_memory_id {
            None => (None, Vec::new()),
            Some(memory) => {
                let summary = sqlx::query_as(
                    "SELECT id, memory_type, status, claim, confidence, authority,
                            domains_json, applies_when_json, source_episodes_json,
                            source_events_json, created_at
                       FROM memories WHERE id = $1",
                )
                .bind(memory)
                .fetch_optional(&mut *tx)
                .await?;
                let edges = sqlx::query_as(
                    "SELECT source_memory_id AS source_id, 'memory' AS source_kind,
                            decay_job_id, recorded_at
                       FROM memory_supersessions WHERE summary_memory_id = $1
                     UNION ALL
                     SELECT source_episode_id, 'episode', decay_job_id, recorded_at
                       FROM episode_supersessions WHERE summary_memory_id = $1
                     ORDER BY source_id",
                )
                .bind(memory)
                .fetch_all(&mut *tx)
                .await?;
                (summary, edges)
            }
        };
        tx.commit().await?;
        Ok(Some(JobDetail {
            job,
            columns,
            sources,
            summary,
            edges,
        }))
    }

    /// Dead letters of a queue, oldest first, after letter id `after`, optionally of one
    /// reason; and whether more follow. Walks `(queue, id)`.
    pub async fn dashboard_dead_letters(
        &self,
        queue: &str,
        reason: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<DeadLetterRow>, bool), StoreError> {
        let limit = limit.clamp(1, 1000);
        let mut rows: Vec<DeadLetterRow> = sqlx::query_as(
            "SELECT id, queue, job_id, reason, detail, body, body_bytes, deliveries,
                    dead_lettered_at, recorded_at
               FROM dead_letters
              WHERE queue = $1 AND ($2::text IS NULL OR reason = $2) AND id > $3
              ORDER BY id LIMIT $4",
        )
        .bind(queue)
        .bind(reason)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((rows, more))
    }
}
