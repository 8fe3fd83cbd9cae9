//! `decay_jobs`: the SQL of a job's life.
//!
//! * [`new`]: validated insert.
//! * [`snapshot`]: a job with everything its run reads, in one round trip.
//! * [`claim`]: the compare-and-set claim with lease and fencing token, and the heartbeat.
//! * [`settle`]: the one guarded settle, for every path and every result.
//! * [`admin`]: reads, lists, cancel, the publish mark, stats.
//! * [`reconcile`]: the reconciler's pass, one replica at a time (an advisory lock).
//!
//! Each statement is written once. What several statements share (the columns of a job, which
//! jobs are claimable now, which claims have expired, how a row is locked without waiting) is a
//! fragment below, composed with sqlx's [`QueryBuilder`], which numbers the bind parameters.
//! Statements are checked at run time, against the real database in the tests: compile-time
//! `query!` cannot check statements built from fragments (see the note in `Cargo.toml`).

mod admin;
mod claim;
mod new;
mod reconcile;
mod settle;
mod snapshot;

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Postgres, QueryBuilder, Row};

use crate::decay::JobRecord;
use crate::ids::DecayJobId;
use crate::store::Clock;

pub use admin::{CancelOutcome, JobStats};
pub use claim::ClaimedJob;
pub use new::NewJob;
pub use reconcile::{RECONCILE_LOCK_KEY, ReconcilePass};
pub use settle::{BATCH_LOCK_TIMEOUT, SettleEffect, SettleGuard, SettleOutcome};
pub use snapshot::JobSnapshot;

/// A statement under construction.
pub(super) type Sql = QueryBuilder<Postgres>;

/// Every column of `decay_jobs`, in one place so each query returns the same row shape.
const JOB_COLUMNS: &str = "id, kind, summary_method, source_ids_json, state, state_reason, \
     result_memory_id, scheduled_for, created_at, created_by, updated_at, attempts, claim_token, \
     claimed_by, lease_expires_at, failure_code, last_published_at, cancel_reason, \
     attestation_key_id";

/// The pick-up order: oldest `scheduled_for` first, then id (spec §3.5).
const READY_ORDER: &str = " ORDER BY scheduled_for, id";

/// A new statement `SELECT <every job column> FROM decay_jobs WHERE `.
fn select_jobs_where() -> Sql {
    let mut q = Sql::new("SELECT ");
    q.push(JOB_COLUMNS).push(" FROM decay_jobs WHERE ");
    q
}

/// `state = 'pending' AND scheduled_for <= now()`: a job a runner may claim now (inclusive).
fn push_pending_due(q: &mut Sql, clock: &Clock) {
    q.push("state = 'pending' AND scheduled_for <= ");
    clock.push_now(q);
}

/// `state = 'in_progress' AND lease_expires_at <= now()`: a claim nobody renewed in time.
fn push_lease_expired(q: &mut Sql, clock: &Clock) {
    q.push("state = 'in_progress' AND lease_expires_at <= ");
    clock.push_now(q);
}

/// `, now() AS db_now`: the instant a statement ran at, returned with its rows, so the
/// runner's decisions (due? lease live? attestation fresh?) use the database's clock too.
fn push_db_now_column(q: &mut Sql, clock: &Clock) {
    q.push(", ");
    clock.push_now(q);
    q.push(" AS db_now");
}

/// `id = $id AND state = 'in_progress' AND claim_token = $token`: a claim still held.
fn push_claim_held(q: &mut Sql, id: &DecayJobId, token: uuid::Uuid) {
    q.push("id = ")
        .push_bind(id.to_string())
        .push(" AND state = 'in_progress' AND claim_token = ")
        .push_bind(token);
}

/// `(SELECT id FROM decay_jobs WHERE <filter> FOR UPDATE SKIP LOCKED)`: the rows a statement
/// may change, skipping any that another runner's claim or settle holds at this moment. A
/// worker must never sit on an unacked delivery waiting for someone else's transaction; the
/// skipped row is about to change, and the caller reads it again to say why.
fn push_unlocked(q: &mut Sql, filter: impl FnOnce(&mut Sql)) {
    q.push("(SELECT id FROM decay_jobs WHERE ");
    filter(q);
    q.push(" FOR UPDATE SKIP LOCKED)");
}

/// The row of a job, as every statement returns it ([`JOB_COLUMNS`]). The id is parsed here,
/// so the rest of the program holds a typed id; the table's `CHECK` makes a bad one
/// impossible, and it would surface as a decode error. Everything else stays raw for
/// [`crate::decay::DecayJob::from_record`] to judge.
impl<'r> FromRow<'r, PgRow> for JobRecord {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let id: String = row.try_get("id")?;
        Ok(JobRecord {
            id: DecayJobId::parse(&id).map_err(|e| sqlx::Error::ColumnDecode {
                index: "id".into(),
                source: Box::new(e),
            })?,
            kind: row.try_get("kind")?,
            summary_method: row.try_get("summary_method")?,
            source_ids_json: row.try_get("source_ids_json")?,
            state: row.try_get("state")?,
            state_reason: row.try_get("state_reason")?,
            result_memory_id: row.try_get("result_memory_id")?,
            scheduled_for: row.try_get("scheduled_for")?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
            updated_at: row.try_get("updated_at")?,
            attempts: row.try_get("attempts")?,
            claim_token: row.try_get("claim_token")?,
            claimed_by: row.try_get("claimed_by")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            failure_code: row.try_get("failure_code")?,
            last_published_at: row.try_get("last_published_at")?,
            cancel_reason: row.try_get("cancel_reason")?,
            attestation_key_id: row.try_get("attestation_key_id")?,
        })
    }
}
