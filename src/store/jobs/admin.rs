//! Reading and managing jobs outside a run: reads and lists, cancel, the redelivery count of
//! crash-loop detection, the publish mark the reconciler reads, and the counts of `jobs stats`.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{
    READY_ORDER, Sql, push_lease_expired, push_pending_due, push_unlocked, select_jobs_where,
};

use crate::decay::attestation::AttestationAudit;
use crate::decay::{JobRecord, JobStateKind};
use crate::ids::DecayJobId;
use crate::store::{Clock, Store, StoreError};

/// How a cancel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled { from: JobStateKind },
    NotFound,
    Terminal { state: JobStateKind },
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
    /// The database's clock when the counts were taken (ages are measured from it).
    #[serde(skip)]
    pub now: DateTime<Utc>,
}

/// A state column's wire token as the typed state; the table's `CHECK` keeps it in the
/// alphabet.
fn state_of(wire: &str) -> Result<JobStateKind, StoreError> {
    JobStateKind::from_wire(wire)
        .ok_or_else(|| StoreError::Validation(format!("unknown decay job state wire `{wire}`")))
}

impl Store {
    /// Read one job; `None` when absent.
    pub async fn read_job(&self, id: &DecayJobId) -> Result<Option<JobRecord>, StoreError> {
        let mut q = select_jobs_where();
        q.push("id = ").push_bind(id.to_string());
        Ok(q.build_query_as().fetch_optional(&self.pool).await?)
    }

    /// The attestation audit record of a job (migration 0005); `None` when the job is absent.
    pub async fn read_attestation(
        &self,
        id: &DecayJobId,
    ) -> Result<Option<AttestationAudit>, StoreError> {
        let mut q = Sql::new(
            "SELECT attestation_key_id, attestation_verifying_key_hex, attestation_signature_hex, \
             attestation_signed_at, attestation_model_name, attestation_prompt_template_blake3 \
             FROM decay_jobs WHERE id = ",
        );
        q.push_bind(id.to_string());
        let row = q.build().fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(AttestationAudit {
                key_id: r.try_get("attestation_key_id")?,
                verifying_key_hex: r.try_get("attestation_verifying_key_hex")?,
                signature_hex: r.try_get("attestation_signature_hex")?,
                signed_at: r.try_get("attestation_signed_at")?,
                model_name: r.try_get("attestation_model_name")?,
                prompt_template_blake3: r.try_get("attestation_prompt_template_blake3")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Up to `limit` ready pending jobs (`scheduled_for <= now()`, inclusive), in pick-up
    /// order. Served by a partial index, so terminal rows cost nothing.
    pub async fn list_pending_ready(&self, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        let mut q = select_jobs_where();
        push_pending_due(&mut q, &self.clock);
        q.push(READY_ORDER).push(" LIMIT ").push_bind(limit);
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Every job in `state`, in pick-up order.
    pub async fn list_jobs_by_state(
        &self,
        state: JobStateKind,
        limit: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut q = select_jobs_where();
        q.push("state = ")
            .push_bind(state.wire())
            .push(READY_ORDER)
            .push(" LIMIT ")
            .push_bind(limit);
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Cancel a `pending` or `in_progress` job and store why. A runner still working on it
    /// then fails its settle guard and writes nothing.
    pub async fn cancel_job(
        &self,
        id: &DecayJobId,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let mut q = Sql::new("WITH prev AS (SELECT id, state FROM decay_jobs WHERE id = ");
        q.push_bind(id.to_string())
            .push(" FOR UPDATE) UPDATE decay_jobs j SET state = 'cancelled', cancel_reason = ")
            .push_bind(reason)
            .push(", updated_at = ");
        self.clock.push_now(&mut q);
        q.push(
            ", lease_expires_at = NULL FROM prev \
             WHERE j.id = prev.id AND prev.state IN ('pending', 'in_progress') \
             RETURNING prev.state",
        );
        let from: Option<String> = q.build_query_scalar().fetch_optional(&self.pool).await?;
        if let Some(from) = from {
            return Ok(CancelOutcome::Cancelled {
                from: state_of(&from)?,
            });
        }
        Ok(match self.read_job(id).await? {
            None => CancelOutcome::NotFound,
            Some(record) => CancelOutcome::Terminal {
                state: state_of(&record.state)?,
            },
        })
    }

    /// Record that a message for these jobs is being published (the reconciler's clock).
    ///
    /// Call it *before* publishing, never after: this `UPDATE` locks the row for a moment, and
    /// a worker's claim skips locked rows and reads that as "claimed elsewhere", so a mark
    /// that races the message it announces sends that job into a retry for nothing (issue
    /// 16). Marked first, the row is unlocked before any worker can hear of the job. A publish
    /// that then fails is undone with [`Store::unmark_published`].
    pub async fn mark_published(&self, ids: &[DecayJobId]) -> Result<(), StoreError> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        mark_published_sql(&self.clock, keys)
            .build()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forget the publish of jobs whose message did not go out after all
    /// ([`Store::mark_published`] came first), so the reconciler sees them stranded at its next
    /// tick instead of one `--reconcile-stale-after` later.
    pub async fn unmark_published(&self, ids: &[DecayJobId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut q = Sql::new("UPDATE decay_jobs SET last_published_at = NULL WHERE id IN ");
        push_unlocked(&mut q, |q| {
            q.push("id = ANY(").push_bind(keys).push(")");
        });
        q.build().execute(&self.pool).await?;
        Ok(())
    }

    /// Count a redelivery of a job's message while the job is not terminal; returns the count
    /// so far, or `None` when the job is terminal or absent (a redelivery is then harmless) or
    /// its row is locked by a runner settling it right now (not a crash loop; and a delivery
    /// must never wait on a lock while it holds a worker's permit).
    pub async fn note_redelivery(&self, id: &DecayJobId) -> Result<Option<i32>, StoreError> {
        let mut q = Sql::new("UPDATE decay_jobs SET redeliveries = redeliveries + 1 WHERE id = ");
        push_unlocked(&mut q, |q| {
            q.push("id = ")
                .push_bind(id.to_string())
                .push(" AND state IN ('pending', 'in_progress')");
        });
        q.push(" RETURNING redeliveries");
        Ok(q.build_query_scalar().fetch_optional(&self.pool).await?)
    }

    /// Counts by state and kind, failures by code, the oldest pending job.
    pub async fn job_stats(&self) -> Result<JobStats, StoreError> {
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
        let mut q = Sql::new("SELECT count(*), ");
        self.clock.push_now(&mut q);
        q.push(" FROM decay_jobs WHERE ");
        push_lease_expired(&mut q, &self.clock);
        let (expired_leases, now): (i64, DateTime<Utc>) =
            q.build_query_as().fetch_one(&self.pool).await?;
        Ok(JobStats {
            now,
            by_state_kind,
            failures_by_code,
            oldest_pending_scheduled_for,
            expired_leases,
        })
    }
}

/// `UPDATE decay_jobs SET last_published_at = now() WHERE id IN (<ids, unlocked>)`. A row
/// being settled right now is skipped rather than waited for: it is about to be terminal, and
/// `last_published_at` is only the reconciler's hint.
pub(super) fn mark_published_sql(clock: &Clock, keys: Vec<String>) -> Sql {
    let mut q = Sql::new("UPDATE decay_jobs SET last_published_at = ");
    clock.push_now(&mut q);
    q.push(" WHERE id IN ");
    push_unlocked(&mut q, |q| {
        q.push("id = ANY(").push_bind(keys).push(")");
    });
    q
}
