//! The reconciler's pass: which jobs may have lost their message, under a lock that lets one
//! replica at a time look (issue 11 item 13).
//!
//! Every worker runs a reconciler. Without coordination, replicas ticking together would all
//! list the same stranded jobs before any of them marks them published, and each job would
//! be republished once per replica. A pass therefore runs inside one transaction holding the
//! transaction-level advisory lock [`RECONCILE_LOCK_KEY`], taken with `pg_try_advisory_xact_lock`:
//! a replica that finds it held skips its tick (another replica is doing the work), and the
//! holder's publish marks, committed with the lock's release, keep the next pass from listing
//! the same jobs again. A transaction-level lock cannot outlive its transaction: commit,
//! rollback, a crash or a lost connection frees it. (A pass merely dropped is rolled back
//! when sqlx next touches its connection, so [`crate::reconcile::reconcile_once`] always ends
//! a pass explicitly.)

use std::time::Duration;

use sqlx::{Postgres, Transaction};

use super::admin::mark_published_sql;
use super::{READY_ORDER, Sql, push_lease_expired, push_pending_due};
use crate::ids::DecayJobId;
use crate::store::{Clock, Store, StoreError};

/// The advisory lock of a reconcile pass: the first 8 bytes of `decay-worker reconcile` as a
/// big-endian i64. Advisory locks are per database, so one lock covers every replica that
/// shares the database, and nothing else in it uses this key.
pub const RECONCILE_LOCK_KEY: i64 = i64::from_be_bytes(*b"decay-wr");

/// A reconcile pass holding the lock; end it with [`ReconcilePass::commit`] or
/// [`ReconcilePass::rollback`], which release the lock at once.
pub struct ReconcilePass {
    tx: Transaction<'static, Postgres>,
    clock: Clock,
}

impl Store {
    /// Start a reconcile pass, unless another replica is in one right now (`None`: skip
    /// this tick). Never waits for the lock.
    pub async fn begin_reconcile(&self) -> Result<Option<ReconcilePass>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RECONCILE_LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(ReconcilePass {
            tx,
            clock: self.clock.clone(),
        }))
    }
}

impl ReconcilePass {
    /// Jobs whose message may be lost: `pending` and due with no publish for `stale_after`,
    /// and `in_progress` whose lease expired and that were not published for as long. Oldest
    /// first, at most `limit` of each.
    pub async fn list_stranded(
        &mut self,
        stale_after: Duration,
        limit: i64,
    ) -> Result<Vec<DecayJobId>, StoreError> {
        let clock = &self.clock;
        let mut q = Sql::new("(SELECT id FROM decay_jobs WHERE ");
        push_pending_due(&mut q, clock);
        q.push(" AND coalesce(last_published_at, created_at) < ");
        clock.push_now_minus(&mut q, stale_after);
        q.push(READY_ORDER)
            .push(" LIMIT ")
            .push_bind(limit)
            .push(") UNION ALL (SELECT id FROM decay_jobs WHERE ");
        push_lease_expired(&mut q, clock);
        q.push(" AND (last_published_at IS NULL OR last_published_at < ");
        clock.push_now_minus(&mut q, stale_after);
        q.push(") ORDER BY lease_expires_at LIMIT ")
            .push_bind(limit)
            .push(")");
        let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *self.tx).await?;
        ids.iter()
            .map(|id| DecayJobId::parse(id).map_err(|e| StoreError::Validation(e.to_string())))
            .collect()
    }

    /// Record that these jobs' messages were published (committed with the pass).
    pub async fn mark_published(&mut self, ids: &[DecayJobId]) -> Result<(), StoreError> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        mark_published_sql(&self.clock, keys)
            .build()
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Commit the marks and release the lock.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Drop the marks and release the lock.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}
