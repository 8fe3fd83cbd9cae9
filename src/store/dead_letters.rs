//! `dead_letters`: parked messages, kept in PostgreSQL (migration 0003 says why). The per-job
//! redelivery count that detects crash loops is a `decay_jobs` column, counted in `jobs`.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, Transaction};

use super::{Store, StoreError};
use crate::ids::DecayJobId;

/// A parked message to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// Topology base it came from.
    pub queue: String,
    pub job_id: Option<DecayJobId>,
    pub reason: String,
    pub detail: String,
    /// The body, already capped by the caller; `body_bytes` is the full length.
    pub body: Vec<u8>,
    pub body_bytes: i32,
    pub deliveries: i32,
    pub dead_lettered_at: DateTime<Utc>,
}

/// A recorded dead letter.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub queue: String,
    pub job_id: Option<String>,
    pub reason: String,
    pub detail: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub body_bytes: i32,
    pub deliveries: i32,
    pub dead_lettered_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// Which dead letters of a queue an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSelector {
    All,
    Reason(String),
    /// Letters by their own id, or every letter of these jobs.
    Ids {
        letters: Vec<i64>,
        jobs: Vec<DecayJobId>,
    },
}

type PgArgs = sqlx::postgres::PgArguments;

impl DeadLetterSelector {
    /// Bind [`SELECTED`]'s parameters: $1 queue, $2 all, $3 reason, $4 letter ids, $5 job ids.
    fn bind<'q, O>(
        &'q self,
        queue: &'q str,
        q: sqlx::query::QueryAs<'q, Postgres, O, PgArgs>,
    ) -> sqlx::query::QueryAs<'q, Postgres, O, PgArgs> {
        let (all, reason, letters, jobs): (bool, Option<&str>, Vec<i64>, Vec<String>) = match self {
            DeadLetterSelector::All => (true, None, vec![], vec![]),
            DeadLetterSelector::Reason(r) => (false, Some(r.as_str()), vec![], vec![]),
            DeadLetterSelector::Ids { letters, jobs } => (
                false,
                None,
                letters.clone(),
                jobs.iter().map(ToString::to_string).collect(),
            ),
        };
        q.bind(queue)
            .bind(all)
            .bind(reason)
            .bind(letters)
            .bind(jobs)
    }
}

/// The one predicate of every selection: queue `$1`, then the selector's binds.
const SELECTED: &str = "queue = $1 AND ($2 OR reason = $3 OR id = ANY($4) OR job_id = ANY($5))";

const COLUMNS: &str = "id, queue, job_id, reason, detail, body, body_bytes, deliveries, \
     dead_lettered_at, recorded_at";

/// Dead letters taken for requeueing: locked (others skip them) until [`TakenDeadLetters::remove`]
/// deletes them and commits. Dropped without `remove`, the transaction rolls back and the
/// letters stay, so a requeue interrupted after some publishes can duplicate a message
/// (harmless) but never lose one.
pub struct TakenDeadLetters {
    tx: Transaction<'static, Postgres>,
    pub rows: Vec<DeadLetterRow>,
}

impl TakenDeadLetters {
    /// Delete the taken letters whose ids are given and commit.
    pub async fn remove(mut self, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dead_letters WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Record a parked message.
    pub async fn insert_dead_letter(&self, l: &NewDeadLetter) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO dead_letters (queue, job_id, reason, detail, body, body_bytes,
                    deliveries, dead_lettered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&l.queue)
        .bind(l.job_id.map(|j| j.to_string()))
        .bind(&l.reason)
        .bind(&l.detail)
        .bind(&l.body)
        .bind(l.body_bytes)
        .bind(l.deliveries)
        .bind(l.dead_lettered_at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Dead letters of a queue, oldest first. Reading never touches the broker.
    pub async fn list_dead_letters(
        &self,
        queue: &str,
        which: &DeadLetterSelector,
        limit: i64,
    ) -> Result<Vec<DeadLetterRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM dead_letters WHERE {SELECTED} ORDER BY id LIMIT $6");
        Ok(which
            .bind(queue, sqlx::query_as(sqlx::AssertSqlSafe(sql)))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The newest letter id of a queue (0 when there is none): a requeue works up to it, so
    /// letters parked again while it runs are not requeued twice by the same call.
    pub async fn last_dead_letter_id(&self, queue: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM dead_letters WHERE queue = $1")
                .bind(queue)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Lock up to `limit` selected letters with ids in `after+1 ..= until`, oldest first, for
    /// a requeue (see [`TakenDeadLetters`]).
    pub async fn take_dead_letters(
        &self,
        queue: &str,
        which: &DeadLetterSelector,
        (after, until): (i64, i64),
        limit: i64,
    ) -> Result<TakenDeadLetters, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE {SELECTED} AND id > $7 AND id <= $8
              ORDER BY id LIMIT $6 FOR UPDATE SKIP LOCKED"
        );
        let mut tx = self.pool.begin().await?;
        let rows = which
            .bind(queue, sqlx::query_as(sqlx::AssertSqlSafe(sql)))
            .bind(limit)
            .bind(after)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?;
        Ok(TakenDeadLetters { tx, rows })
    }

    /// Delete the selected letters for good; returns what was deleted.
    pub async fn purge_dead_letters(
        &self,
        queue: &str,
        which: &DeadLetterSelector,
    ) -> Result<Vec<DeadLetterRow>, StoreError> {
        let sql = format!("DELETE FROM dead_letters WHERE {SELECTED} RETURNING {COLUMNS}");
        let mut rows: Vec<DeadLetterRow> = which
            .bind(queue, sqlx::query_as(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&self.pool)
            .await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }
}
