//! The connection pool, made failover-safe: a connection is only used while its server accepts
//! writes.
//!
//! Behind a stable endpoint (a proxy, PgBouncer, a cloud DNS name) a failover looks like this:
//! the old primary's connections are terminated, the endpoint points elsewhere, and for a while
//! new connections may land on a server that is still (or again) a standby. Such a connection
//! answers reads and refuses every write with `25006 read_only_sql_transaction`; kept in the
//! pool, it would keep refusing them long after the new primary is up. So the pool checks
//! writability with one query ([`WRITABILITY_SQL`]) on every connection it opens
//! (`after_connect`: a read-only one is closed and the pool tries again until its acquire
//! timeout, a transient error) and on every idle connection before handing it out
//! (`before_acquire`, in place of sqlx's own ping, so it costs the same one round trip): a
//! connection whose server turned read-only, or that a promotion terminated, is closed there
//! and replaced. The last refusal is kept so `/readyz` can say *why* the database is down.

use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::StoreConfig;

/// Is this session on a server that accepts writes? `pg_is_in_recovery()` is true on a
/// standby; `transaction_read_only` is on there too, and wherever `default_transaction_read_only`
/// was set (a managed service fencing a demoted primary, an operator).
const WRITABILITY_SQL: &str =
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'";

/// Why the last connection checked was refused, or `None` once one passed. Shared by the pool's
/// hooks and `/readyz`.
#[derive(Debug, Default)]
pub(super) struct Refusal(Mutex<Option<String>>);

impl Refusal {
    fn set(&self, why: Option<String>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = why;
        }
    }

    pub(super) fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|slot| slot.clone())
    }
}

/// `Ok(None)`: writable. `Ok(Some(why))`: the server refuses writes, and why.
pub(super) async fn read_only_reason(
    conn: &mut PgConnection,
) -> Result<Option<String>, sqlx::Error> {
    let (in_recovery, read_only): (bool, bool) =
        sqlx::query_as(WRITABILITY_SQL).fetch_one(conn).await?;
    Ok(if in_recovery {
        Some("read-only: the server is a standby (in recovery)".into())
    } else if read_only {
        Some("read-only: transaction_read_only is on".into())
    } else {
        None
    })
}

/// Check a connection for the pool, noting the verdict. `Ok(false)`: refuse it.
async fn admit(conn: &mut PgConnection, refusal: &Refusal) -> Result<bool, sqlx::Error> {
    match read_only_reason(conn).await {
        Ok(None) => {
            refusal.set(None);
            Ok(true)
        }
        Ok(Some(why)) => {
            tracing::warn!(reason = %why, "database connection refused: the server cannot write; opening another");
            refusal.set(Some(why));
            Ok(false)
        }
        Err(e) => {
            refusal.set(Some(format!("connection check failed: {e}")));
            Err(e)
        }
    }
}

/// A lazy pool whose connections are checked for writability (module docs).
pub(super) fn lazy_pool(cfg: &StoreConfig, opts: PgConnectOptions) -> (PgPool, Arc<Refusal>) {
    let refusal = Arc::new(Refusal::default());
    let on_connect = Arc::clone(&refusal);
    let on_acquire = Arc::clone(&refusal);
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections.max(1))
        .acquire_timeout(cfg.acquire_timeout)
        // `before_acquire` runs the check instead of the ping: one round trip either way.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let refusal = Arc::clone(&on_connect);
            Box::pin(async move {
                match admit(conn, &refusal).await? {
                    true => Ok(()),
                    // An error makes sqlx close this connection and open another after a
                    // backoff, until the acquire timeout: a transient `PoolTimedOut`.
                    false => Err(sqlx::Error::Protocol(
                        refusal.get().unwrap_or_else(|| "read-only".into()),
                    )),
                }
            })
        })
        .before_acquire(move |conn, _meta| {
            let refusal = Arc::clone(&on_acquire);
            Box::pin(async move { admit(conn, &refusal).await })
        })
        .connect_lazy_with(opts);
    (pool, refusal)
}
