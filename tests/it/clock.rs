//! The database's clock (issue 11 item 9): leases, claims and due checks are judged by
//! PostgreSQL's `now()`, so a replica whose own clock runs ahead cannot take over a live claim.
//!
//! The skewed replica is a real worker process under Debian's libfaketime, an hour ahead. It
//! is preloaded the way the `faketime` command does it (`LD_PRELOAD` + `FAKETIME=+1h`), not
//! through that command: `faketime` forks and waits for its child without forwarding signals,
//! so the test's SIGTERM (and kill on drop) would reach the wrapper and orphan the worker.
//! The multi-threaded build of the library (`libfaketimeMT`, what `faketime -m` preloads) is
//! used because tokio reads the clock from several threads. The offset applies to every clock
//! the process reads, including the monotonic one tokio's timers use; a constant offset keeps
//! it monotonic, so timers and intervals behave as without it.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use crate::testkit::harness::{Harness, wait_until};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(60);

/// Debian's multi-threaded libfaketime. The test fails, never skips, without it (`.ci/run`
/// installs the `faketime` package).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(Result::ok)
        .map(|arch| arch.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketimeMT.so.1 not found: apt-get install faketime")
}

#[sqlx::test(migrations = "./migrations")]
async fn a_worker_an_hour_ahead_does_not_steal_a_live_lease(pool: PgPool) {
    let h = Harness::new(pool).await;
    let held = candidate_job(&h.store, Utc::now()).await;
    let free = candidate_job(&h.store, Utc::now()).await;
    // Another runner holds a live claim: ten minutes by the database's clock.
    let claim = h
        .store
        .claim_job(&held, Duration::from_secs(600), "other/1", 5)
        .await
        .unwrap()
        .unwrap();

    let lib = libfaketime();
    let mut w = h.spawn_worker_env(
        "w-ahead",
        &[],
        &[("LD_PRELOAD", lib.to_str().unwrap()), ("FAKETIME", "+1h")],
    );
    h.publish(&held).await;
    h.publish(&free).await;
    // The skewed worker runs: it completes the free job...
    wait_until(LONG, "the free job completed", || async {
        h.store.read_job(&free).await.unwrap().unwrap().state == "completed"
    })
    .await;
    // ...and handles the held one: refused as in progress (its retry is logged), or, had it
    // trusted its own clock, taken over (the claim changes hands).
    wait_until(LONG, "the held job handled", || async {
        let row = h.store.read_job(&held).await.unwrap().unwrap();
        row.claim_token != Some(claim.token) || h.log_of("w-ahead").contains("why=\"in_progress\"")
    })
    .await;
    // Its clock really is an hour ahead: its log lines are stamped by it.
    let log = h.log_of("w-ahead");
    let ahead = (Utc::now() + chrono::Duration::minutes(55))
        .format("%Y-%m-%dT%H")
        .to_string();
    let in_an_hour = (Utc::now() + chrono::Duration::minutes(65))
        .format("%Y-%m-%dT%H")
        .to_string();
    assert!(
        log.contains(&ahead) || log.contains(&in_an_hour),
        "the worker's clock is not ahead:\n{log}"
    );
    let row = h.store.read_job(&held).await.unwrap().unwrap();
    assert_eq!(row.state, "in_progress");
    assert_eq!(
        row.claim_token,
        Some(claim.token),
        "the live claim was kept"
    );
    assert_eq!(row.claimed_by.as_deref(), Some("other/1"));
    assert_eq!(row.attempts, 1, "no attempt spent by the skewed worker");
    assert!(!h.log_of("w-ahead").contains("stage=\"recover\""));

    h.store.cancel_job(&held, "test over").await.unwrap();
    assert_eq!(w.terminate().await, Some(0));
}
