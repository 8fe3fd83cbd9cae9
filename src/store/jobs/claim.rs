//! The compare-and-set claim (DESIGN §3 rule 1) and the heartbeat that keeps it alive.
//!
//! A claim is one `UPDATE` of one row chosen by a locking sub-select: `pending` and due, or
//! (for a named job) an `in_progress` claim whose lease expired with attempts left. It sets a
//! fresh fencing token, `attempts + 1`, the claimant and the lease. Zero rows means someone
//! else has it, or it is not claimable; the caller reads the row to say which.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Row};
use uuid::Uuid;

use super::{
    JOB_COLUMNS, Sql, push_claim_held, push_db_now_column, push_lease_expired, push_pending_due,
    push_unlocked,
};
use crate::decay::JobRecord;
use crate::ids::DecayJobId;
use crate::store::{Store, StoreError};

/// A successful claim: the row as it is now, and whether it was a lease recovery.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub record: JobRecord,
    pub token: Uuid,
    /// When the lease ends, by the database's clock.
    pub lease_expires_at: DateTime<Utc>,
    /// True when an expired claim of another runner was taken over.
    pub recovered: bool,
}

/// Which row a claim takes.
enum Target<'a> {
    /// This job: pending and due, or an expired claim with fewer than `max_attempts` claims.
    Job {
        id: &'a DecayJobId,
        max_attempts: i32,
    },
    /// The head of the ready list.
    NextPending,
}

impl Store {
    /// Claim one job: `pending` and due, or `in_progress` with an expired lease and attempts
    /// left (a recovery), with a lease of `lease` from now (the database's clock, like every
    /// due and expiry check here). A row another runner has locked is skipped, not waited
    /// for. `None`: not claimed.
    pub async fn claim_job(
        &self,
        id: &DecayJobId,
        lease: Duration,
        claimed_by: &str,
        max_attempts: i32,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let target = Target::Job { id, max_attempts };
        self.claim(target, lease, claimed_by).await
    }

    /// Claim the head of the ready list (`scheduled_for`, then id), skipping rows another
    /// runner has locked. One statement; reads one row, not the whole ready list.
    pub async fn claim_next_pending(
        &self,
        lease: Duration,
        claimed_by: &str,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        self.claim(Target::NextPending, lease, claimed_by).await
    }

    async fn claim(
        &self,
        target: Target<'_>,
        lease: Duration,
        claimed_by: &str,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let clock = &self.clock;
        let token = Uuid::new_v4();
        let mut q = Sql::new("UPDATE decay_jobs SET state = 'in_progress', claim_token = ");
        q.push_bind(token)
            .push(", attempts = attempts + 1, claimed_by = ")
            .push_bind(claimed_by)
            .push(", lease_expires_at = ");
        clock.push_now_plus(&mut q, lease);
        q.push(", updated_at = ");
        clock.push_now(&mut q);
        q.push(" WHERE id = ");
        push_unlocked(&mut q, |q| match target {
            Target::Job { id, max_attempts } => {
                q.push("id = ").push_bind(id.to_string()).push(" AND ((");
                push_pending_due(q, clock);
                q.push(") OR (");
                push_lease_expired(q, clock);
                q.push(" AND attempts < ")
                    .push_bind(max_attempts)
                    .push("))");
            }
            Target::NextPending => {
                push_pending_due(q, clock);
                q.push(super::READY_ORDER).push(" LIMIT 1");
            }
        });
        q.push(" RETURNING ").push(JOB_COLUMNS);
        let row = q.build().fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let record = JobRecord::from_row(&row)?;
        let lease_expires_at: Option<DateTime<Utc>> = row.try_get("lease_expires_at")?;
        Ok(Some(ClaimedJob {
            // A pending job has never been claimed, so a second attempt is a recovery.
            recovered: record.attempts > 1,
            lease_expires_at: lease_expires_at.unwrap_or(record.updated_at),
            record,
            token,
        }))
    }

    /// Extend the lease of a claim we still hold to `lease` from now (the database's clock).
    /// `false` means the claim was lost.
    pub async fn heartbeat(
        &self,
        id: &DecayJobId,
        token: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut q = Sql::new("UPDATE decay_jobs SET lease_expires_at = ");
        self.clock.push_now_plus(&mut q, lease);
        q.push(" WHERE ");
        push_claim_held(&mut q, id, token);
        let done = q.build().execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Read one job with the database's current instant; `None` when absent. The runner
    /// decides "not due yet" and "lease still live" against this instant, never its own.
    pub async fn read_job_now(
        &self,
        id: &DecayJobId,
    ) -> Result<Option<(JobRecord, DateTime<Utc>)>, StoreError> {
        let mut q = Sql::new("SELECT ");
        q.push(JOB_COLUMNS);
        push_db_now_column(&mut q, &self.clock);
        q.push(" FROM decay_jobs WHERE id = ")
            .push_bind(id.to_string());
        let Some(row) = q.build().fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        Ok(Some((JobRecord::from_row(&row)?, row.try_get("db_now")?)))
    }
}
