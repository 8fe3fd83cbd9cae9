//! The compare-and-set claim (DESIGN §3 rule 1) and the heartbeat that keeps it alive.
//!
//! A claim is one `UPDATE` of one row chosen by a locking sub-select: `pending` and due, or
//! (for a named job) an `in_progress` claim whose lease expired with attempts left. It sets a
//! fresh fencing token, `attempts + 1`, the claimant and the lease. Zero rows means someone
//! else has it, or it is not claimable; the caller reads the row to say which.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    JOB_COLUMNS, Sql, push_claim_held, push_lease_expired, push_pending_due, push_unlocked,
};
use crate::decay::JobRecord;
use crate::ids::DecayJobId;
use crate::store::{Store, StoreError};

/// A successful claim: the row as it is now, and whether it was a lease recovery.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub record: JobRecord,
    pub token: Uuid,
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
    /// left (a recovery). A row another runner has locked is skipped, not waited for.
    /// `None`: not claimed.
    pub async fn claim_job(
        &self,
        id: &DecayJobId,
        now: DateTime<Utc>,
        lease_expires_at: DateTime<Utc>,
        claimed_by: &str,
        max_attempts: i32,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let target = Target::Job { id, max_attempts };
        self.claim(target, now, lease_expires_at, claimed_by).await
    }

    /// Claim the head of the ready list (`scheduled_for`, then id), skipping rows another
    /// runner has locked. One statement; reads one row, not the whole ready list.
    pub async fn claim_next_pending(
        &self,
        now: DateTime<Utc>,
        lease_expires_at: DateTime<Utc>,
        claimed_by: &str,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        self.claim(Target::NextPending, now, lease_expires_at, claimed_by)
            .await
    }

    async fn claim(
        &self,
        target: Target<'_>,
        now: DateTime<Utc>,
        lease_expires_at: DateTime<Utc>,
        claimed_by: &str,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let token = Uuid::new_v4();
        let mut q = Sql::new("UPDATE decay_jobs SET state = 'in_progress', claim_token = ");
        q.push_bind(token)
            .push(", attempts = attempts + 1, claimed_by = ")
            .push_bind(claimed_by)
            .push(", lease_expires_at = ")
            .push_bind(lease_expires_at)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE id = ");
        push_unlocked(&mut q, |q| match target {
            Target::Job { id, max_attempts } => {
                q.push("id = ").push_bind(id.to_string()).push(" AND ((");
                push_pending_due(q, now);
                q.push(") OR (");
                push_lease_expired(q, now);
                q.push(" AND attempts < ")
                    .push_bind(max_attempts)
                    .push("))");
            }
            Target::NextPending => {
                push_pending_due(q, now);
                q.push(super::READY_ORDER).push(" LIMIT 1");
            }
        });
        q.push(" RETURNING ").push(JOB_COLUMNS);
        let record = q
            .build_query_as::<JobRecord>()
            .fetch_optional(&self.pool)
            .await?;
        Ok(record.map(|record| ClaimedJob {
            // A pending job has never been claimed, so a second attempt is a recovery.
            recovered: record.attempts > 1,
            record,
            token,
            lease_expires_at,
        }))
    }

    /// Extend the lease of a claim we still hold. `false` means the claim was lost.
    pub async fn heartbeat(
        &self,
        id: &DecayJobId,
        token: Uuid,
        lease_expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut q = Sql::new("UPDATE decay_jobs SET lease_expires_at = ");
        q.push_bind(lease_expires_at).push(" WHERE ");
        push_claim_held(&mut q, id, token);
        let done = q.build().execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }
}
