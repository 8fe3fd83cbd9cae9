//! What happens around a claim (issue 11 items 10 and 13): a claim lost while its LLM call is
//! in flight stops the call, and one replica at a time republishes stranded jobs.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use crate::testkit::attest::trusted_keys_file;
use crate::testkit::harness::{Harness, wait_until};
use crate::testkit::openai::{HeldOpenAi, attested_openai_job};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(60);
const MODEL: &str = "cancel-model@1";

#[sqlx::test(migrations = "./migrations")]
async fn a_cancelled_claim_stops_its_llm_call(pool: PgPool) {
    let h = Harness::new(pool).await;
    let server = HeldOpenAi::start().await;
    let attestations = tempfile::tempdir().unwrap();
    let id = attested_openai_job(
        &h.store,
        &["cancel alpha", "cancel beta"],
        MODEL,
        attestations.path(),
    )
    .await;
    let keys = trusted_keys_file(h.scratch());
    let mut w = h.spawn_worker(
        "w-cancel",
        &server.worker_args(
            MODEL,
            &keys,
            attestations.path(),
            // Far beyond the test's deadlines: the call can only end early by being dropped.
            &["--openai-timeout", "10m"],
        ),
    );
    h.publish(&id).await;
    wait_until(LONG, "the LLM call held at the server", || async {
        server.received().len() == 1
    })
    .await;
    assert_eq!(h.count_state("in_progress").await, 1);
    assert_eq!(server.dropped(), 0);

    h.store.cancel_job(&id, "operator stop").await.unwrap();
    // The next heartbeat (every second here) finds the claim gone and drops the call: the
    // server sees the connection closed while it still holds the answer.
    wait_until(LONG, "the held call dropped by the worker", || async {
        server.dropped() == 1
    })
    .await;
    wait_until(LONG, "the worker logged the stop", || async {
        h.log_of("w-cancel")
            .contains("work stopped, nothing written")
    })
    .await;
    server.release();
    let row = h.store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "cancelled");
    assert_eq!(row.result_memory_id, None);
    assert_eq!(count_summaries(&h.pool, &id).await, 0);
    assert_eq!(count_edges(&h.pool, &id).await, 0);
    assert_eq!(server.received().len(), 1, "asked once, never again");
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0, "the message was acked");
}

#[sqlx::test(migrations = "./migrations")]
async fn one_reconcile_pass_at_a_time(pool: PgPool) {
    let h = Harness::new(pool).await;
    let first = h.store.begin_reconcile().await.unwrap().expect("free");
    assert!(
        h.store.begin_reconcile().await.unwrap().is_none(),
        "a second pass is refused while the first holds the lock"
    );
    first.commit().await.unwrap();
    let again = h.store.begin_reconcile().await.unwrap();
    let again = again.expect("the lock is released when a pass commits");
    again.rollback().await.unwrap();
    assert!(
        h.store.begin_reconcile().await.unwrap().is_some(),
        "and when it rolls back"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn two_reconcilers_republish_each_stranded_job_once(pool: PgPool) {
    const N: usize = 50;
    let h = Harness::new(pool).await;
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        // Inserted a minute ago and never published: stranded.
        ids.push(candidate_job(&h.store, Utc::now() - chrono::Duration::minutes(1)).await);
    }
    let reconcile = ["reconcile", "--stale-after", "1s", "--json"];
    let republished = |out: &std::process::Output| -> u64 {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["republished"].as_u64().unwrap()
    };

    // While a pass holds the lock, another reconciler skips its turn.
    let pass = h.store.begin_reconcile().await.unwrap().unwrap();
    assert_eq!(republished(&h.cli(&reconcile).await), 0);
    assert_eq!(h.ready_in(&h.base).await, 0);
    pass.rollback().await.unwrap();

    // Two reconcilers at once: every stranded job is published exactly once between them.
    let (a, b) = tokio::join!(h.cli(&reconcile), h.cli(&reconcile));
    assert_eq!(republished(&a) + republished(&b), N as u64);
    wait_until(LONG, "the republished messages queued", || async {
        h.ready_in(&h.base).await as usize >= N
    })
    .await;
    assert_eq!(h.ready_in(&h.base).await as usize, N, "no job twice");
    let marked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM decay_jobs WHERE last_published_at IS NOT NULL")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(marked, N as i64);
}
