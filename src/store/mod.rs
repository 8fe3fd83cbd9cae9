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
pub mod error;
mod jobs;
mod memories;
mod pool;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};

pub use clock::Clock;
pub use dead_letters::{DeadLetterRow, DeadLetterSelector, NewDeadLetter, TakenDeadLetters};
pub use error::{ErrorClass, StoreError};
pub use jobs::{
    BATCH_LOCK_TIMEOUT, CancelOutcome, ClaimedJob, JobSnapshot, JobStats, NewJob,
    RECONCILE_LOCK_KEY, ReconcilePass, SettleEffect, SettleGuard, SettleOutcome,
};
pub use memories::{NewEpisode, NewMemory, NewPrinciple, SourceTable};

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
    /// Why the pool last refused a connection (a read-only server), for `/readyz`.
    refusal: Arc<pool::Refusal>,
}

impl Store {
    /// Check that `url` is a PostgreSQL URL, without connecting (settings are validated at
    /// start).
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        PgConnectOptions::from_str(url)?;
        Ok(())
    }

    /// Build a pool without connecting yet: the first query connects, so a worker can start
    /// (and report not-ready) while the database is still coming up. Its connections are
    /// checked for writability (a failover can leave them on a standby; see `store/pool.rs`).
    pub fn connect_lazy(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let opts = PgConnectOptions::from_str(&cfg.url)?.application_name("decay-worker");
        let (pool, refusal) = pool::lazy_pool(cfg, opts);
        Ok(Store {
            pool,
            clock: Clock::Database,
            refusal,
        })
    }

    /// Connect and check the database answers. One direct connection first: the pool retries
    /// a refused connection until its acquire timeout and then says only "pool timed out",
    /// while a one-shot command should say at once what happened ("connection refused",
    /// a failed password, an unknown database). A server that refuses writes makes the pool
    /// time out; the error then says it was read-only rather than "pool timed out".
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        use sqlx::{ConnectOptions, Connection};
        let store = Store::connect_lazy(cfg)?;
        let opts = PgConnectOptions::from_str(&cfg.url)?.application_name("decay-worker");
        match tokio::time::timeout(cfg.acquire_timeout, opts.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(sqlx::Error::PoolTimedOut.into()),
        }
        match store.ping().await {
            Ok(()) => Ok(store),
            Err(StoreError::Database(sqlx::Error::PoolTimedOut)) => Err(store
                .last_refusal()
                .map_or(StoreError::Database(sqlx::Error::PoolTimedOut), |why| {
                    StoreError::ReadOnly(why)
                })),
            Err(e) => Err(e),
        }
    }

    /// Wrap an existing pool (tests get theirs from `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            clock: Clock::Database,
            refusal: Arc::default(),
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

    /// Is a writable primary answering? `Err(StoreError::ReadOnly)` when the server reached
    /// refuses writes (readiness probe: a worker on a standby is not ready).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        match pool::read_only_reason(&mut conn).await? {
            None => Ok(()),
            Some(why) => Err(StoreError::ReadOnly(why)),
        }
    }

    /// Why the pool last refused a connection, if the last one it checked was refused: the
    /// reason `/readyz` gives while no writable primary answers.
    pub fn last_refusal(&self) -> Option<String> {
        self.refusal.get()
    }

    /// Close the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
