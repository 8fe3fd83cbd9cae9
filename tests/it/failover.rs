//! What a database failover, an overload or an operator throws at a run: a cancelled statement,
//! a server that turned read-only. None of it is the job's fault, so none of it may fail the
//! job (the SQLSTATE table of `decay_worker::store::error`): the job stays `pending`, is retried,
//! and completes once the database is itself again. Real processes, real PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;
use tokio::process::Command;

use crate::testkit::candidate_job;
use crate::testkit::harness::{
    Harness, amqp_url, await_transient_retry_only, http_get, wait_until,
};

const LONG: Duration = Duration::from_secs(60);

fn db_name(pool: &PgPool) -> String {
    pool.connect_options().get_database().unwrap().to_string()
}

async fn state_of(pool: &PgPool, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM decay_jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Cancel (as `pg_cancel_backend` does, and `statement_timeout` would) every worker statement of
/// this database that waits on a lock; returns how many.
async fn cancel_lock_waiters(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'decay-worker' AND wait_event_type = 'Lock'",
    )
    .bind(db_name(pool))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A connection of the test's own that holds `LOCK TABLE memories IN SHARE MODE` until it is
/// dropped: reads go on, the settle's insert of the summary memory waits.
async fn lock_memories(pool: &PgPool) -> sqlx::Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE memories IN SHARE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// `run --job-id J` whose settle is cancelled mid-wait (issue 11 item 2): before, the job ended
/// `failed` with `decay.runner.failure` and exit 3. Now the job is left `pending`, `run` says
/// the database failed (exit 64), and running it again completes it.
#[sqlx::test(migrations = "./migrations")]
async fn a_cancelled_statement_leaves_the_job_pending_and_it_completes_afterwards(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let id = candidate_job(&h.store, Utc::now()).await.to_string();
    let lock = lock_memories(&pool).await;

    let run = Command::new(env!("CARGO_BIN_EXE_decay-worker"))
        .args(["run", "--job-id", &id])
        .env("DATABASE_URL", h.db_url())
        .env("AMQP_URL", amqp_url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until(LONG, "the run's settle waiting on the lock", || async {
        h.lock_waiters().await == 1
    })
    .await;
    assert_eq!(cancel_lock_waiters(&pool).await, 1);
    let out = tokio::time::timeout(LONG, run.wait_with_output())
        .await
        .expect("run exits after its statement is cancelled")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(state_of(&pool, &id).await, "pending", "run: {out:?}");
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("canceling statement"), "{stderr}");
    assert!(!stderr.contains("decay.runner.failure"), "{stderr}");

    lock.rollback().await.unwrap();
    let again = h.cli(&["run", "--job-id", &id]).await;
    assert!(again.status.success(), "second run: {again:?}");
    assert_eq!(state_of(&pool, &id).await, "completed");
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 1);
}

/// The same cancel under a worker: the delivery is retried as transient (not as a runner
/// error on its way to the dead queue), and the job completes once the lock is gone.
#[sqlx::test(migrations = "./migrations")]
async fn a_worker_retries_a_cancelled_statement_as_transient(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let mut w = h.spawn_worker("w-cancel", &[]);
    w.await_ready().await;
    let id = candidate_job(&h.store, Utc::now()).await;
    let lock = lock_memories(&pool).await;
    h.publish(&id).await;
    wait_until(LONG, "the worker's settle waiting on the lock", || async {
        h.lock_waiters().await == 1
    })
    .await;
    assert_eq!(cancel_lock_waiters(&pool).await, 1);
    await_transient_retry_only(w.port, LONG).await;
    assert_eq!(state_of(&pool, &id.to_string()).await, "pending");

    lock.rollback().await.unwrap();
    wait_until(LONG, "the job completed", || async {
        h.count_state("completed").await == 1
    })
    .await;
    assert_eq!(h.count_state("failed").await, 0);
    h.assert_nothing_dead_lettered().await;
    w.terminate().await;
}

/// Make new sessions of this database read-only (what a connection that lands on a standby
/// sees), or writable again, through a connection opened before (so it stays writable).
async fn set_read_only(admin: &mut PoolConnection<Postgres>, db: &str, on: bool) {
    let sql = if on {
        format!("ALTER DATABASE \"{db}\" SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE \"{db}\" RESET default_transaction_read_only")
    };
    // The name is the test database's own, quoted: no outside input reaches this statement.
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut **admin)
        .await
        .unwrap();
}

/// A failover seen from a worker: its connections are terminated (as a promotion's shutdown
/// does) and every new one lands on a read-only server. The worker is not ready and says why,
/// the job waits `pending` on transient retries (before: 25006 was a runner error, retried a
/// few times and dead-lettered), and it completes once the database is writable again — on
/// fresh connections, since the pool refuses read-only ones.
#[sqlx::test(migrations = "./migrations")]
async fn a_read_only_database_leaves_the_job_pending_until_it_is_writable(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let db = db_name(&pool);
    let mut admin = pool.acquire().await.unwrap();
    let mut w = h.spawn_worker("w-ro", &[]);
    w.await_ready().await;
    let id = candidate_job(&h.store, Utc::now()).await;

    set_read_only(&mut admin, &db, true).await;
    assert!(h.cut_worker_connections().await >= 1);
    h.publish(&id).await;
    await_transient_retry_only(w.port, LONG).await;
    assert_eq!(state_of(&pool, &id.to_string()).await, "pending");
    wait_until(LONG, "/readyz naming the read-only database", || async {
        let (status, body) = http_get(w.port, "/readyz").await;
        status == 503 && body.contains("database: unavailable (read-only")
    })
    .await;

    set_read_only(&mut admin, &db, false).await;
    wait_until(LONG, "the job completed", || async {
        h.count_state("completed").await == 1
    })
    .await;
    assert_eq!(h.count_state("failed").await, 0);
    h.assert_nothing_dead_lettered().await;
    w.await_ready().await;
    w.terminate().await;
}
