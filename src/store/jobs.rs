//! `decay_jobs`: insert, read, list, the compare-and-set claim with lease and fencing token,
//! heartbeat, guarded settles and cancel.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::FromRow;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::decay::compress::{EpisodeSource, MemorySource, SummaryDraft};
use crate::decay::{JobKind, JobStateKind, SummaryMethod, convert_sources, is_blank};
use crate::ids::{DecayJobId, EpisodeId, MemoryId};

/// Every column of `decay_jobs`, in one place so each query returns the same row shape.
const JOB_COLUMNS: &str = "id, kind, summary_method, source_ids_json, state, state_reason, \
     result_memory_id, scheduled_for, created_at, created_by, updated_at, attempts, claim_token, \
     claimed_by, lease_expires_at, failure_code, last_published_at, cancel_reason, \
     attestation_key_id";

/// A `decay_jobs` row as stored. Wire tokens stay strings here; the domain converts them
/// ([`crate::decay::DecayJob::from_row`]) so a bad row becomes a typed error, not a decode
/// failure of the whole query.
#[derive(Debug, Clone, PartialEq, FromRow, serde::Serialize)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub summary_method: String,
    pub source_ids_json: Value,
    pub state: String,
    pub state_reason: Option<String>,
    pub result_memory_id: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub attempts: i32,
    pub claim_token: Option<Uuid>,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub failure_code: Option<String>,
    pub last_published_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub attestation_key_id: Option<String>,
}

/// A job to insert. Raw wire strings, validated by [`Store::insert_job`] in the reference's
/// order (spec §3.4) and then strictly (canonical ids of the right type, no duplicates,
/// exactly one principle), so no row the runner cannot convert ever enters the table.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: DecayJobId,
    pub kind: String,
    pub summary_method: String,
    pub source_ids_json: Value,
    pub scheduled_for: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl NewJob {
    /// A typed job with a fresh id.
    pub fn new(
        kind: JobKind,
        method: SummaryMethod,
        source_ids: Vec<String>,
        scheduled_for: DateTime<Utc>,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> NewJob {
        NewJob {
            id: DecayJobId::new(),
            kind: kind.wire().to_string(),
            summary_method: method.wire().to_string(),
            source_ids_json: Value::from(source_ids),
            scheduled_for,
            created_by: created_by.to_string(),
            created_at: now,
        }
    }

    /// Spec §3.4 validation (first failure wins), then our strict checks.
    pub fn validate(&self) -> Result<(), StoreError> {
        let fail = |m: String| Err(StoreError::Validation(m));
        if is_blank(&self.created_by) {
            return fail("decay job created_by must not be empty".into());
        }
        let Some(kind) = JobKind::from_wire(&self.kind) else {
            return fail(format!("invalid decay job kind wire `{}`", self.kind));
        };
        let Some(method) = SummaryMethod::from_wire(&self.summary_method) else {
            return fail(format!(
                "invalid decay job summary method wire `{}`",
                self.summary_method
            ));
        };
        match (kind, method) {
            (JobKind::ExpiredPrincipleReview, m) if m != SummaryMethod::None => {
                return fail(format!(
                    "expired_principle_review decay job must carry summary_method='none', got '{}'",
                    self.summary_method
                ));
            }
            (k, SummaryMethod::None) if k != JobKind::ExpiredPrincipleReview => {
                return fail(format!(
                    "decay job kind `{}` must carry a summary method (not 'none')",
                    self.kind
                ));
            }
            _ => {}
        }
        let Some(arr) = self.source_ids_json.as_array() else {
            return fail("decay job source_ids_json must be a JSON array".into());
        };
        if arr.is_empty() {
            return fail("decay job source_ids_json must contain at least one id".into());
        }
        if arr.iter().any(|v| !v.is_string()) {
            return fail("decay job source_ids_json entries must all be strings".into());
        }
        // Ours (spec §11.5, §11.13): ids canonical and of the right type, one principle.
        convert_sources(&self.kind, &self.summary_method, &self.source_ids_json)
            .map_err(|e| StoreError::Validation(e.to_string()))?;
        let mut seen = HashSet::new();
        for id in arr.iter().filter_map(Value::as_str) {
            if !seen.insert(id) {
                return fail(format!(
                    "decay job source_ids_json must not contain duplicate id `{id}`"
                ));
            }
        }
        Ok(())
    }
}

/// A successful claim: the row as it is now, and whether it was a lease recovery.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub row: JobRow,
    pub token: Uuid,
    pub lease_expires_at: DateTime<Utc>,
    /// True when an expired claim of another runner was taken over.
    pub recovered: bool,
}

/// The supersession edges of a summary memory.
#[derive(Debug, Clone)]
pub enum SummaryEdges {
    Memories(Vec<MemoryId>),
    Episodes(Vec<EpisodeId>),
}

/// The summary memory a completed compression writes, with its edges.
#[derive(Debug, Clone)]
pub struct MemorySummaryInsert<'a> {
    pub memory_id: MemoryId,
    pub draft: &'a SummaryDraft,
    pub edges: SummaryEdges,
}

/// How a guarded settle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    Settled,
    /// The claim token no longer matches (the job was cancelled, or its lease expired and
    /// another runner re-claimed it). Nothing was written.
    ClaimLost,
}

/// How a cancel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled { from: String },
    NotFound,
    Terminal { state: String },
}

/// Counts for `jobs stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStats {
    /// (state, kind, count)
    pub by_state_kind: Vec<(String, String, i64)>,
    /// (failure_code, count)
    pub failures_by_code: Vec<(String, i64)>,
    pub oldest_pending_scheduled_for: Option<DateTime<Utc>>,
    pub expired_leases: i64,
}

/// The guarded `UPDATE` of a claimed job to `completed` (its claim token must still match).
macro_rules! complete_claimed {
    () => {
        "UPDATE decay_jobs
            SET state = 'completed', result_memory_id = $2, updated_at = $4,
                lease_expires_at = NULL, attestation_key_id = $12,
                attestation_signature_hex = $13
          WHERE id = $1 AND state = 'in_progress' AND claim_token = $3
      RETURNING id"
    };
}

/// Claim and complete a due `pending` job in one step (the fast path of quick jobs): the
/// compare-and-set on `pending` is the claim, and nobody ever sees it `in_progress`.
macro_rules! complete_pending {
    () => {
        "UPDATE decay_jobs
            SET state = 'completed', result_memory_id = $2, updated_at = $4,
                attempts = attempts + 1, claim_token = $3, claimed_by = $15,
                lease_expires_at = NULL, attestation_key_id = $12,
                attestation_signature_hex = $13
          WHERE id = (SELECT id FROM decay_jobs
                       WHERE id = $1 AND state = 'pending' AND scheduled_for <= $4
                       FOR UPDATE SKIP LOCKED)
      RETURNING id"
    };
}

/// The INSERT of the summary memory and its edges, chained after the job's conditional
/// `UPDATE` in one statement: the memory exists only if the update matched, and all of it
/// commits or none does (DESIGN §3 rule 2). The table and column names are fixed literals.
macro_rules! settle_with_memory_sql {
    ($job_update:expr, $edge_table:literal, $edge_col:literal) => {
        concat!(
            "WITH job AS (",
            $job_update,
            "), mem AS (
                INSERT INTO memories (id, memory_type, status, claim, source_episodes_json,
                       source_events_json, domains_json, salience_json, confidence, authority,
                       applies_when_json, does_not_apply_when_json, created_at, updated_at,
                       produced_by_job_id)
                SELECT $2, 'summary', 'candidate', $5, $6, $7, $8, '{}'::jsonb, $9, $10, $11,
                       '[]'::jsonb, $4, $4, job.id
                  FROM job
             RETURNING id
            ), edges AS (
                INSERT INTO ",
            $edge_table,
            " (",
            $edge_col,
            ", summary_memory_id, decay_job_id, recorded_at)
                SELECT DISTINCT s, mem.id, $1, $4 FROM mem, unnest($14::text[]) AS s
                ON CONFLICT DO NOTHING
            )
            SELECT count(*) FROM job"
        )
    };
}

/// How a settle with a summary memory is guarded.
#[derive(Debug, Clone, Copy)]
enum SettleGuard<'a> {
    /// A claim we hold: `in_progress` with this token.
    Claimed(Uuid),
    /// Claim and settle at once: `pending` and due; records this runner as the claimant.
    Pending { token: Uuid, claimed_by: &'a str },
}

#[derive(Debug, Clone, FromRow)]
struct SnapshotRow {
    #[sqlx(flatten)]
    row: JobRow,
    memory_sources: Option<Value>,
    episode_sources: Option<Value>,
    principle_exists: Option<bool>,
}

#[derive(serde::Deserialize)]
struct MemoryJson {
    id: String,
    claim: String,
    source_episodes_json: Value,
    source_events_json: Value,
    domains_json: Value,
    confidence: f64,
    authority: String,
}

#[derive(serde::Deserialize)]
struct EpisodeJson {
    id: String,
    summary: String,
    source_events_json: Value,
    domains_json: Value,
    confidence: f64,
}

/// A job row with what a quick run needs, read in one round trip.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    pub row: JobRow,
    /// The existing source memories of a pending or running candidate compression, keyed
    /// by id (the runner walks the job's list to keep order and find the missing ones).
    pub memories: Option<HashMap<MemoryId, MemorySource>>,
    /// The existing source episodes of a pending or running episode compression.
    pub episodes: Option<HashMap<EpisodeId, EpisodeSource>>,
    /// Whether the principle of a pending review exists.
    pub principle_exists: Option<bool>,
}

fn decode_sources<J: serde::de::DeserializeOwned, K: std::hash::Hash + Eq, T>(
    v: Option<Value>,
    f: impl Fn(J) -> Option<(K, T)>,
) -> Result<Option<HashMap<K, T>>, StoreError> {
    let Some(v) = v else { return Ok(None) };
    let items: Vec<J> = serde_json::from_value(v)
        .map_err(|e| StoreError::Validation(format!("source rows did not decode: {e}")))?;
    Ok(Some(items.into_iter().filter_map(f).collect()))
}

impl Store {
    /// Insert a new `pending` job after validating it.
    pub async fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        job.validate()?;
        sqlx::query(
            "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state,
                 scheduled_for, created_at, created_by, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $6)",
        )
        .bind(job.id.to_string())
        .bind(&job.kind)
        .bind(&job.summary_method)
        .bind(&job.source_ids_json)
        .bind(job.scheduled_for)
        .bind(job.created_at)
        .bind(&job.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Read one job; `None` when absent.
    pub async fn read_job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM decay_jobs WHERE id = $1");
        Ok(sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Up to `limit` ready pending jobs (`scheduled_for <= now`, inclusive), oldest first,
    /// then by id. Served by a partial index, so terminal rows cost nothing.
    pub async fn list_pending_ready(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM decay_jobs
              WHERE state = 'pending' AND scheduled_for <= $1
              ORDER BY scheduled_for, id LIMIT $2"
        );
        Ok(sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every job in `state`, ordered like the pick-up list.
    pub async fn list_jobs_by_state(
        &self,
        state: JobStateKind,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM decay_jobs WHERE state = $1
              ORDER BY scheduled_for, id LIMIT $2"
        );
        Ok(sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(state.wire())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Compare-and-set claim of one job: `pending` and due, or `in_progress` with an expired
    /// lease and attempts left (recovery). One statement. A row another runner has locked
    /// (its claim or settle is running) is skipped, not waited for: a worker must never sit
    /// on an unacked delivery waiting for someone else's transaction. `None`: not claimed.
    pub async fn claim_job(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lease_expires_at: DateTime<Utc>,
        claimed_by: &str,
        max_attempts: i32,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let token = Uuid::new_v4();
        let sql = format!(
            "UPDATE decay_jobs
                SET state = 'in_progress', claim_token = $2, attempts = attempts + 1,
                    claimed_by = $3, lease_expires_at = $4, updated_at = $5
              WHERE id = (SELECT id FROM decay_jobs
                           WHERE id = $1
                             AND ((state = 'pending' AND scheduled_for <= $5)
                               OR (state = 'in_progress' AND lease_expires_at <= $5
                                   AND attempts < $6))
                           FOR UPDATE SKIP LOCKED)
          RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(token)
            .bind(claimed_by)
            .bind(lease_expires_at)
            .bind(now)
            .bind(max_attempts)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| ClaimedJob {
            // A pending job has never been claimed, so a second attempt is a recovery.
            recovered: row.attempts > 1,
            row,
            token,
            lease_expires_at,
        }))
    }

    /// Claim the head of the ready list (`scheduled_for`, then id), skipping rows another
    /// runner has locked. One statement; reads one row, not the whole ready list.
    pub async fn claim_next_pending(
        &self,
        now: DateTime<Utc>,
        lease_expires_at: DateTime<Utc>,
        claimed_by: &str,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let token = Uuid::new_v4();
        let sql = format!(
            "UPDATE decay_jobs
                SET state = 'in_progress', claim_token = $1, attempts = attempts + 1,
                    claimed_by = $2, lease_expires_at = $3, updated_at = $4
              WHERE id = (SELECT id FROM decay_jobs
                           WHERE state = 'pending' AND scheduled_for <= $4
                           ORDER BY scheduled_for, id
                           LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .bind(claimed_by)
            .bind(lease_expires_at)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| ClaimedJob {
            recovered: row.attempts > 1,
            row,
            token,
            lease_expires_at,
        }))
    }

    /// Extend the lease of a claim we still hold. `false` means the claim was lost.
    pub async fn heartbeat(
        &self,
        id: &str,
        token: Uuid,
        lease_expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE decay_jobs SET lease_expires_at = $3
              WHERE id = $1 AND state = 'in_progress' AND claim_token = $2",
        )
        .bind(id)
        .bind(token)
        .bind(lease_expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `in_progress -> completed` with no memory (review jobs), guarded by the claim token.
    pub async fn settle_completed_without_memory(
        &self,
        id: &str,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, StoreError> {
        let done = sqlx::query(
            "UPDATE decay_jobs SET state = 'completed', updated_at = $3, lease_expires_at = NULL
              WHERE id = $1 AND state = 'in_progress' AND claim_token = $2",
        )
        .bind(id)
        .bind(token)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(settle_outcome(done.rows_affected()))
    }

    /// Write the summary memory, its supersession edges and `in_progress -> completed` as one
    /// atomic statement guarded by the claim token. If the guard fails nothing is written.
    pub async fn settle_completed_with_memory(
        &self,
        id: &str,
        token: Uuid,
        now: DateTime<Utc>,
        summary: &MemorySummaryInsert<'_>,
        attestation: Option<(&str, &str)>,
    ) -> Result<SettleOutcome, StoreError> {
        self.write_summary(id, SettleGuard::Claimed(token), now, summary, attestation)
            .await
    }

    /// The quick path: claim a due `pending` job and write its summary memory, edges and
    /// `completed` in one atomic statement. `ClaimLost` means it was no longer pending.
    pub async fn claim_and_settle_with_memory(
        &self,
        id: &str,
        claimed_by: &str,
        now: DateTime<Utc>,
        summary: &MemorySummaryInsert<'_>,
    ) -> Result<SettleOutcome, StoreError> {
        let guard = SettleGuard::Pending {
            token: Uuid::new_v4(),
            claimed_by,
        };
        self.write_summary(id, guard, now, summary, None).await
    }

    async fn write_summary(
        &self,
        id: &str,
        guard: SettleGuard<'_>,
        now: DateTime<Utc>,
        summary: &MemorySummaryInsert<'_>,
        attestation: Option<(&str, &str)>,
    ) -> Result<SettleOutcome, StoreError> {
        let edge_ids: Vec<String> = match &summary.edges {
            SummaryEdges::Memories(ids) => ids.iter().map(ToString::to_string).collect(),
            SummaryEdges::Episodes(ids) => ids.iter().map(ToString::to_string).collect(),
        };
        let memories = matches!(summary.edges, SummaryEdges::Memories(_));
        let (sql, token, claimed_by): (&'static str, Uuid, Option<&str>) = match (guard, memories) {
            (SettleGuard::Claimed(t), true) => (
                settle_with_memory_sql!(
                    complete_claimed!(),
                    "memory_supersessions",
                    "source_memory_id"
                ),
                t,
                None,
            ),
            (SettleGuard::Claimed(t), false) => (
                settle_with_memory_sql!(
                    complete_claimed!(),
                    "episode_supersessions",
                    "source_episode_id"
                ),
                t,
                None,
            ),
            (SettleGuard::Pending { token, claimed_by }, true) => (
                settle_with_memory_sql!(
                    complete_pending!(),
                    "memory_supersessions",
                    "source_memory_id"
                ),
                token,
                Some(claimed_by),
            ),
            (SettleGuard::Pending { token, claimed_by }, false) => (
                settle_with_memory_sql!(
                    complete_pending!(),
                    "episode_supersessions",
                    "source_episode_id"
                ),
                token,
                Some(claimed_by),
            ),
        };
        let d = summary.draft;
        let mut q = sqlx::query_scalar(sql)
            .bind(id)
            .bind(summary.memory_id.to_string())
            .bind(token)
            .bind(now)
            .bind(&d.claim)
            .bind(&d.source_episodes_json)
            .bind(&d.source_events_json)
            .bind(&d.domains_json)
            .bind(d.confidence)
            .bind(&d.authority)
            .bind(&d.applies_when_json)
            .bind(attestation.map(|a| a.0))
            .bind(attestation.map(|a| a.1))
            .bind(edge_ids);
        if let Some(by) = claimed_by {
            q = q.bind(by);
        }
        let count: i64 = q.fetch_one(&self.pool).await?;
        Ok(settle_outcome(count as u64))
    }

    /// Read a job and, when it is pending or running, everything its run needs (sources,
    /// principle), in one round trip.
    pub async fn read_job_for_run(&self, id: &str) -> Result<Option<JobSnapshot>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS},
               CASE WHEN d.state IN ('pending', 'in_progress') AND d.kind = 'candidate_compression' THEN
                 (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'id', m.id, 'claim', m.claim,
                          'source_episodes_json', m.source_episodes_json,
                          'source_events_json', m.source_events_json,
                          'domains_json', m.domains_json, 'confidence', m.confidence,
                          'authority', m.authority)), '[]'::jsonb)
                    FROM memories m
                   WHERE m.id IN (SELECT jsonb_array_elements_text(d.source_ids_json)))
               END AS memory_sources,
               CASE WHEN d.state IN ('pending', 'in_progress') AND d.kind = 'episode_compression' THEN
                 (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'id', e.id, 'summary', e.summary,
                          'source_events_json', e.source_events_json,
                          'domains_json', e.domains_json, 'confidence', e.confidence)), '[]'::jsonb)
                    FROM episodes e
                   WHERE e.id IN (SELECT jsonb_array_elements_text(d.source_ids_json)))
               END AS episode_sources,
               CASE WHEN d.state IN ('pending', 'in_progress') AND d.kind = 'expired_principle_review' THEN
                 EXISTS (SELECT 1 FROM principles p WHERE p.id = d.source_ids_json ->> 0)
               END AS principle_exists
             FROM decay_jobs d WHERE d.id = $1"
        );
        let Some(raw) = sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let memories = decode_sources(raw.memory_sources, |m: MemoryJson| {
            let id = MemoryId::parse(&m.id).ok()?;
            Some((
                id,
                MemorySource {
                    id,
                    claim: m.claim,
                    source_episodes_json: m.source_episodes_json,
                    source_events_json: m.source_events_json,
                    domains_json: m.domains_json,
                    confidence: m.confidence,
                    authority: m.authority,
                },
            ))
        })?;
        let episodes = decode_sources(raw.episode_sources, |e: EpisodeJson| {
            let id = EpisodeId::parse(&e.id).ok()?;
            Some((
                id,
                EpisodeSource {
                    id,
                    summary: e.summary,
                    source_events_json: e.source_events_json,
                    domains_json: e.domains_json,
                    confidence: e.confidence,
                },
            ))
        })?;
        Ok(Some(JobSnapshot {
            row: raw.row,
            memories,
            episodes,
            principle_exists: raw.principle_exists,
        }))
    }

    /// The quick path without a memory: claim a due `pending` job and settle it at once,
    /// `completed` (review)
    /// when `failure` is `None`, else `failed` with (code, reason). `false`: no longer pending.
    pub async fn settle_pending(
        &self,
        id: &str,
        now: DateTime<Utc>,
        claimed_by: &str,
        failure: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE decay_jobs
                SET state = CASE WHEN $4::text IS NULL THEN 'completed' ELSE 'failed' END,
                    failure_code = $4, state_reason = $5, updated_at = $2,
                    attempts = attempts + 1, claim_token = $6, claimed_by = $3,
                    lease_expires_at = NULL
              WHERE id = (SELECT id FROM decay_jobs
                           WHERE id = $1 AND state = 'pending' AND scheduled_for <= $2
                           FOR UPDATE SKIP LOCKED)",
        )
        .bind(id)
        .bind(now)
        .bind(claimed_by)
        .bind(failure.map(|f| f.0))
        .bind(failure.map(|f| f.1))
        .bind(Uuid::new_v4())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `in_progress -> failed`, guarded by the claim token. `reason` keeps the full human
    /// text; `code` is the stable invariant.
    pub async fn settle_failed(
        &self,
        id: &str,
        token: Uuid,
        now: DateTime<Utc>,
        code: &str,
        reason: &str,
    ) -> Result<SettleOutcome, StoreError> {
        let done = sqlx::query(
            "UPDATE decay_jobs
                SET state = 'failed', failure_code = $3, state_reason = $4, updated_at = $5,
                    lease_expires_at = NULL
              WHERE id = $1 AND state = 'in_progress' AND claim_token = $2",
        )
        .bind(id)
        .bind(token)
        .bind(code)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(settle_outcome(done.rows_affected()))
    }

    /// Settle `failed` a job whose lease expired after its last allowed attempt. Guarded by
    /// the expired claim's token and the expiry, so a live claim is never touched.
    pub async fn settle_attempts_exhausted(
        &self,
        id: &str,
        expired_token: Uuid,
        now: DateTime<Utc>,
        code: &str,
        reason: &str,
    ) -> Result<SettleOutcome, StoreError> {
        let done = sqlx::query(
            "UPDATE decay_jobs
                SET state = 'failed', failure_code = $3, state_reason = $4, updated_at = $5,
                    lease_expires_at = NULL
              WHERE id = $1 AND state = 'in_progress' AND claim_token = $2
                AND lease_expires_at <= $5",
        )
        .bind(id)
        .bind(expired_token)
        .bind(code)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(settle_outcome(done.rows_affected()))
    }

    /// Cancel a `pending` or `in_progress` job and store why. A runner still working on it
    /// then fails its settle guard and writes nothing.
    pub async fn cancel_job(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        let from: Option<String> = sqlx::query_scalar(
            "WITH prev AS (SELECT id, state FROM decay_jobs WHERE id = $1 FOR UPDATE)
             UPDATE decay_jobs j
                SET state = 'cancelled', cancel_reason = $2, updated_at = $3,
                    lease_expires_at = NULL
               FROM prev
              WHERE j.id = prev.id AND prev.state IN ('pending', 'in_progress')
          RETURNING prev.state",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(from) = from {
            return Ok(CancelOutcome::Cancelled { from });
        }
        Ok(match self.read_job(id).await? {
            None => CancelOutcome::NotFound,
            Some(row) => CancelOutcome::Terminal { state: row.state },
        })
    }

    /// Record that a message for these jobs was published (the reconciler's clock).
    pub async fn mark_published(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // A row being settled right now is skipped rather than waited for: it is about to be
        // terminal, and last_published_at is only the reconciler's hint.
        sqlx::query(
            "UPDATE decay_jobs SET last_published_at = $2
              WHERE id IN (SELECT id FROM decay_jobs WHERE id = ANY($1) FOR UPDATE SKIP LOCKED)",
        )
        .bind(ids)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs whose message may be lost: `pending` and due with no publish since `published_before`,
    /// and `in_progress` whose lease expired before `now`. Oldest first.
    pub async fn list_stranded(
        &self,
        now: DateTime<Utc>,
        published_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "(SELECT id FROM decay_jobs
               WHERE state = 'pending' AND scheduled_for <= $1
                 AND coalesce(last_published_at, created_at) < $2
               ORDER BY scheduled_for, id LIMIT $3)
             UNION ALL
             (SELECT id FROM decay_jobs
               WHERE state = 'in_progress' AND lease_expires_at <= $1
                 AND (last_published_at IS NULL OR last_published_at < $2)
               ORDER BY lease_expires_at LIMIT $3)",
        )
        .bind(now)
        .bind(published_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts by state and kind, failures by code, the oldest pending job.
    pub async fn job_stats(&self, now: DateTime<Utc>) -> Result<JobStats, StoreError> {
        let by_state_kind: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT state, kind, count(*) FROM decay_jobs GROUP BY state, kind ORDER BY state, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        let failures_by_code: Vec<(String, i64)> = sqlx::query_as(
            "SELECT failure_code, count(*) FROM decay_jobs WHERE state = 'failed'
              GROUP BY failure_code ORDER BY count(*) DESC, failure_code",
        )
        .fetch_all(&self.pool)
        .await?;
        let oldest_pending_scheduled_for: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(scheduled_for) FROM decay_jobs WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        let expired_leases: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM decay_jobs WHERE state = 'in_progress' AND lease_expires_at <= $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(JobStats {
            by_state_kind,
            failures_by_code,
            oldest_pending_scheduled_for,
            expired_leases,
        })
    }
}

fn settle_outcome(rows: u64) -> SettleOutcome {
    if rows == 1 {
        SettleOutcome::Settled
    } else {
        SettleOutcome::ClaimLost
    }
}
