//! The only place with SQL. PostgreSQL through sqlx, runtime-checked queries.
//!
//! Every state change is a conditional `UPDATE` whose `WHERE` names the state (and, once a job
//! is claimed, the claim's fencing token) it expects, so concurrent workers can never both win,
//! and an update that matches no row is reported, never ignored (DESIGN §3).
//!
//! The store speaks the domain's language: ids are typed, rows come back as
//! [`crate::decay::JobRecord`]s and source structs, and what a settle writes is the domain's
//! effect. sqlx's row types stay in here.

mod clock;
pub mod dashboard;
mod dead_letters;
mod jobs;
mod memories;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use clock::Clock;
pub use dead_letters::{DeadLetterRow, DeadLetterSelector, NewDeadLetter, TakenDeadLetters};
pub use jobs::{
    BATCH_LOCK_TIMEOUT, CancelOutcome, ClaimedJob, JobSnapshot, JobStats, NewJob,
    RECONCILE_LOCK_KEY, ReconcilePass, SettleEffect, SettleGuard, SettleOutcome,
};
pub use memories::{NewEpisode, NewMemory, NewPrinciple};

/// Errors of the store. The worker decides retry vs. fail from [`StoreError::is_transient`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("validation failed: {0}")]
    Validation(String),
}

impl StoreError {
    /// A lock wait gave up (`55P03 lock_not_available`, from a `lock_timeout`).
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("55P03"))
    }

    /// A failure of the connection or the server rather than of the data: retrying later can
    /// succeed, so it must never settle a job `failed` (DESIGN §3 rule 6).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => is_transient_sqlx(e),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient_sqlx(e),
            _ => false,
        }
    }
}

fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P0x: admin/crash
            // shutdown, cannot connect now; 40001/40P01: serialization failure, deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// Default PostgreSQL URL: the local server of the test setup.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Default wait for a pooled connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// PostgreSQL URL.
    pub url: String,
    /// Pool size; size it to the worker's concurrency plus a little for heartbeats.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before reporting a transient error.
    pub acquire_timeout: Duration,
}

/// Handle to the database. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// The clock every statement reads ([`Clock::Database`] unless a test froze it).
    clock: Clock,
}

impl Store {
    /// Build a pool without connecting yet: the first query connects, so a worker can start
    /// (and report not-ready) while the database is still coming up.
    pub fn connect_lazy(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let opts = PgConnectOptions::from_str(&cfg.url)?.application_name("decay-worker");
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .acquire_timeout(cfg.acquire_timeout)
            .connect_lazy_with(opts);
        Ok(Store {
            pool,
            clock: Clock::Database,
        })
    }

    /// Connect and check the database answers.
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let store = Store::connect_lazy(cfg)?;
        store.ping().await?;
        Ok(store)
    }

    /// Wrap an existing pool (tests get theirs from `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            clock: Clock::Database,
        }
    }

    /// The same store reading `clock` instead (tests freeze time this way, spec §4.7).
    pub fn with_clock(self, clock: Clock) -> Store {
        Store { clock, ..self }
    }

    /// Apply pending migrations. sqlx holds a PostgreSQL advisory lock while migrating, so
    /// replicas starting together serialise here instead of racing.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Round trip to the database (readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Close the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
