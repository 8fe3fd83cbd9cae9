//! The worker end to end: real worker processes, the real RabbitMQ and PostgreSQL.

use std::time::Duration;

use chrono::Utc;
use decay_worker::ids::{DecayJobId, MemoryId};
use decay_worker::llm::openai::openai_user_message;
use lapin::types::FieldTable;
use sqlx::PgPool;

use crate::testkit::attest::trusted_keys_file;
use crate::testkit::harness::{Harness, http_get, settled_for_good, wait_until};
use crate::testkit::openai::{HeldOpenAi, attested_openai_job, summary_of};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(60);

async fn jobs(h: &Harness, n: usize) -> Vec<DecayJobId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(candidate_job(&h.store, Utc::now()).await);
    }
    ids
}

#[sqlx::test(migrations = "./migrations")]
async fn two_workers_complete_every_job_exactly_once(pool: PgPool) {
    let h = Harness::new(pool).await;
    let ids = jobs(&h, 200).await;
    let mut a = h.spawn_worker("w-a", &[]);
    let mut b = h.spawn_worker("w-b", &[]);
    for id in &ids {
        h.publish(id).await;
    }
    wait_until(LONG, "200 jobs completed", || async {
        h.count_state("completed").await == 200
    })
    .await;
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 200);
    assert_eq!(a.terminate().await, Some(0));
    assert_eq!(b.terminate().await, Some(0));
    // With both workers gone, anything unacked would be back in the queue.
    assert_eq!(h.left_in(&h.base).await, 0);
    h.assert_nothing_dead_lettered().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn duplicate_publishes_are_harmless(pool: PgPool) {
    let h = Harness::new(pool).await;
    let ids = jobs(&h, 100).await;
    for _ in 0..3 {
        for id in &ids {
            h.publish(id).await;
        }
    }
    let mut w = h.spawn_worker("w-dup", &["--concurrency", "8"]);
    wait_until(LONG, "100 jobs completed", || async {
        h.count_state("completed").await == 100
    })
    .await;
    // The queue being empty is not enough to stop the worker: it may still hold prefetched
    // duplicates it has not started, and a duplicate that met its job's first delivery
    // mid-settle was retried (`in_progress`) and waits in a retry tier. Stopped then, those
    // messages go back to the queue, correctly. So wait until every one of the 300 messages
    // had its last word from this worker: an outcome that settles it for good.
    wait_until(
        LONG,
        "an outcome for good for each of the 300 messages",
        || async { settled_for_good(&http_get(w.port, "/metrics").await.1) >= 300.0 },
    )
    .await;
    let settled = settled_for_good(&http_get(w.port, "/metrics").await.1);
    assert_eq!(settled, 300.0, "each message settled once");
    assert_eq!(w.terminate().await, Some(0));
    // The drain finished the acks of those outcomes: nothing unacked, nothing in a tier.
    h.assert_all_done_once(100).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn killed_worker_loses_nothing(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let ids = jobs(&h, 40).await;
    // Hold a lock the settle needs (the edges' foreign keys on the source memories), so jobs
    // are caught in flight: claimed, computed, blocked before their commit.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM memories FOR UPDATE")
        .fetch_all(&mut *blocker)
        .await
        .unwrap();
    let mut a = h.spawn_worker("w-doomed", &["--concurrency", "4", "--prefetch", "8"]);
    for id in &ids {
        h.publish(id).await;
    }
    // In flight = the worker's settles waiting on that lock (a quick job is claimed and
    // settled by one statement, so it never shows `in_progress`; it is blocked right there).
    wait_until(LONG, "jobs in flight in the doomed worker", || async {
        h.lock_waiters().await >= 4
    })
    .await;
    h.kill_hard(&mut a).await;
    blocker.rollback().await.unwrap();
    let mut b = h.spawn_worker("w-survivor", &["--concurrency", "4"]);
    wait_until(LONG, "every job completed after the kill", || async {
        h.count_state("completed").await == 40
    })
    .await;
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 40);
    let by_survivor: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM decay_jobs WHERE claimed_by = 'w-survivor' AND attempts = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        by_survivor, 40,
        "the killed worker's jobs rolled back and each ran once, on the survivor"
    );
    assert_eq!(b.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn malformed_messages_are_dead_lettered_once_each(pool: PgPool) {
    let h = Harness::new(pool).await;
    let good_before = jobs(&h, 5).await;
    let good_after = jobs(&h, 5).await;
    let mut w = h.spawn_worker("w-poison", &[]);
    for id in &good_before {
        h.publish(id).await;
    }
    let mut bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"job_id\": 42}".to_vec(),
        b"{\"job\": \"dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV\"}".to_vec(),
        b"mem_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_vec(),
        b"{\"job_id\":\"epi_01ARZ3NDEKTSV4RRFFQ69G5FAV\"}".to_vec(),
        b"dcy_01arz3ndektsv4rrffq69g5fav".to_vec(),
        b"dcy_8ZZZZZZZZZZZZZZZZZZZZZZZZZ".to_vec(),
        vec![b'x'; 5 * 1024],
        vec![0xff, 0xfe, 0xfd],
        b"".to_vec(),
        b"{".to_vec(),
        b"[\"dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV\"]".to_vec(),
    ];
    let mut i = 0;
    while bad.len() < 20 {
        bad.push(format!("garbage-{i}").into_bytes());
        i += 1;
    }
    for body in &bad {
        h.session()
            .publish_raw(body, FieldTable::default())
            .await
            .unwrap();
    }
    for id in &good_after {
        h.publish(id).await;
    }
    wait_until(LONG, "20 dead letters recorded", || async {
        h.dead_letters().await.len() == 20
    })
    .await;
    wait_until(LONG, "healthy jobs completed", || async {
        h.count_state("completed").await == 10
    })
    .await;
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 20);
    for l in &letters {
        assert_eq!(l.reason, "malformed_message");
        assert_eq!(l.deliveries, 1, "dead-lettered on its first delivery");
        assert!(!l.detail.is_empty());
        assert_eq!(l.job_id, None);
    }
    let big = letters
        .iter()
        .find(|l| l.detail == "body is 5120 bytes (limit 4096)")
        .expect("the oversized body's letter");
    assert_eq!((big.body.len(), big.body_bytes), (4096, 5120));
    assert!(
        letters
            .iter()
            .any(|l| l.detail == "body is not valid UTF-8")
    );
    let mut bodies: Vec<Vec<u8>> = letters.iter().map(|l| l.body.clone()).collect();
    let mut sent: Vec<Vec<u8>> = bad
        .iter()
        .map(|b| b[..b.len().min(4096)].to_vec())
        .collect();
    bodies.sort();
    sent.sort();
    assert_eq!(bodies, sent, "each poison body recorded once, as sent");
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0);
    assert_eq!(
        h.ready_in(&format!("{}.dead", h.base)).await,
        0,
        "every parked message moved into the database"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_message_that_keeps_coming_back_is_dead_lettered_not_run(pool: PgPool) {
    let h = Harness::new(pool).await;
    let looping = candidate_job(&h.store, Utc::now()).await;
    let fine = candidate_job(&h.store, Utc::now()).await;
    // Their history: the looping job's message came back unacked 9 times already (the
    // harness's delivery limit is 10), the other's 5 times.
    for (id, n) in [(&looping, 9), (&fine, 5)] {
        sqlx::query("UPDATE decay_jobs SET redeliveries = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(n)
            .execute(&h.pool)
            .await
            .unwrap();
    }
    h.publish(&looping).await;
    h.publish(&fine).await;
    // One more return each, as when a worker dies mid-job: the next delivery is flagged
    // redelivered by the broker, whatever its version counts.
    h.return_unacked(2).await;
    let mut w = h.spawn_worker("w-loop", &[]);
    wait_until(LONG, "the other job completed", || async {
        h.count_state("completed").await == 1
    })
    .await;
    wait_until(LONG, "the looping job's message dead-lettered", || async {
        h.dead_letters().await.len() == 1
    })
    .await;
    let letter = &h.dead_letters().await[0];
    assert_eq!(letter.reason, "delivery_limit");
    assert_eq!(letter.job_id.as_deref(), Some(looping.to_string().as_str()));
    let (state, redeliveries): (String, i32) =
        sqlx::query_as("SELECT state, redeliveries FROM decay_jobs WHERE id = $1")
            .bind(looping.to_string())
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), redeliveries),
        ("pending", 10),
        "not run again"
    );
    let done = h.store.read_job(&fine).await.unwrap().unwrap();
    assert_eq!(done.state, "completed");
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn unknown_job_is_retried_then_dead_lettered(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-unknown", &["--not-found-retries", "2"]);
    let ghost = DecayJobId::new();
    h.publish(&ghost).await;
    wait_until(LONG, "ghost dead-lettered", || async {
        h.dead_letters().await.len() == 1
    })
    .await;
    let letters = h.dead_letters().await;
    assert_eq!(letters[0].reason, "job_not_found");
    assert_eq!(
        letters[0].job_id.as_deref(),
        Some(ghost.to_string().as_str())
    );
    assert_eq!(
        letters[0].deliveries, 3,
        "the first delivery and two retries"
    );
    let log = h.log_of("w-unknown");
    assert_eq!(
        log.matches("why=\"not_found\"").count(),
        2,
        "two retries before giving up"
    );
    assert_eq!(w.terminate().await, Some(0));
}

/// The worker logged that it sent this job's message to a retry tier for `why`.
fn logged_retry(log: &str, id: &DecayJobId, why: &str) -> bool {
    let (job, why) = (format!("job_id={id}"), format!("why=\"{why}\""));
    log.lines()
        .any(|l| l.contains("retry scheduled") && l.contains(&job) && l.contains(&why))
}

#[sqlx::test(migrations = "./migrations")]
async fn a_job_not_yet_due_waits_for_its_time(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-sched", &[]);
    w.await_ready().await;
    let due = Utc::now() + chrono::Duration::seconds(3);
    let later = candidate_job(&h.store, due).await;
    let far = candidate_job(&h.store, Utc::now() + chrono::Duration::hours(1)).await;
    let now_job = jobs(&h, 1).await.remove(0);
    for id in [&later, &far, &now_job] {
        h.publish(id).await;
    }
    wait_until(LONG, "the due job completed", || async {
        h.store.read_job(&now_job).await.unwrap().unwrap().state == "completed"
    })
    .await;
    // The job due in an hour was looked at and deferred, so it is certainly not run yet.
    wait_until(LONG, "the far job deferred", || async {
        logged_retry(&h.log_of("w-sched"), &far, "not_due")
    })
    .await;
    let row = h.store.read_job(&far).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
    // The one due in three seconds runs, and not before its time.
    wait_until(LONG, "the scheduled job completed", || async {
        h.store.read_job(&later).await.unwrap().unwrap().state == "completed"
    })
    .await;
    let row = h.store.read_job(&later).await.unwrap().unwrap();
    assert!(
        row.updated_at >= due,
        "ran at {} before its time {}",
        row.updated_at,
        due
    );
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn database_connections_killed_mid_run_fail_no_job(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let ids = jobs(&h, 60).await;
    let mut w = h.spawn_worker("w-dbkill", &["--concurrency", "4"]);
    // Catch jobs mid-run: their settles wait on a lock we hold; then cut their connections.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM memories FOR UPDATE")
        .fetch_all(&mut *blocker)
        .await
        .unwrap();
    for id in &ids {
        h.publish(id).await;
    }
    wait_until(LONG, "jobs blocked mid-run", || async {
        h.lock_waiters().await >= 4
    })
    .await;
    let killed = h.cut_worker_connections().await;
    assert!(killed >= 4, "terminated {killed} worker connections");
    blocker.rollback().await.unwrap();
    // And once more while the rest runs.
    let mut more = 0;
    while h.count_state("completed").await < 60 && more < 5 {
        let n = h.cut_worker_connections().await;
        more += i32::from(n > 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until(LONG, "all jobs completed", || async {
        h.count_state("completed").await == 60
    })
    .await;
    assert_eq!(
        h.count_state("failed").await,
        0,
        "a lost connection failed a job"
    );
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 60);
    assert!(
        h.log_of("w-dbkill").contains("why=\"transient\""),
        "the cut runs were retried"
    );
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn broker_closing_the_connection_is_survived(pool: PgPool) {
    let h = Harness::new(pool).await;
    let first = jobs(&h, 20).await;
    let mut w = h.spawn_worker("w-closed", &[]);
    for id in &first {
        h.publish(id).await;
    }
    wait_until(LONG, "first batch done", || async {
        h.count_state("completed").await == 20
    })
    .await;
    // Close the worker's connection from the broker side.
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            "-q",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let pids: Vec<String> = listing
        .lines()
        .filter(|l| l.contains("decay-worker w-closed"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(
        !pids.is_empty(),
        "worker connection not found in:\n{listing}"
    );
    for pid in &pids {
        let st = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test closes the connection"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let second = jobs(&h, 20).await;
    for id in &second {
        h.publish(id).await;
    }
    wait_until(LONG, "second batch done after reconnect", || async {
        h.count_state("completed").await == 40
    })
    .await;
    assert!(h.log_of("w-closed").contains("reconnecting"));
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 40);
    assert_eq!(w.terminate().await, Some(0));
}

/// SIGTERM drains: jobs in flight when the signal arrives finish, their messages are acked by
/// the stopping worker, and nothing is run twice. LLM jobs make "in flight" observable: each
/// one is claimed and waits on a local OpenAI-compatible server that answers only when the
/// test says so, so the signal provably lands while all of them are running.
#[sqlx::test(migrations = "./migrations")]
async fn sigterm_lets_jobs_in_flight_finish_and_acks_them(pool: PgPool) {
    const N: usize = 4;
    const MODEL: &str = "drain-model@1";
    let h = Harness::new(pool).await;
    let server = HeldOpenAi::start().await;
    let attestations = tempfile::tempdir().unwrap();
    let mut ids = Vec::with_capacity(N);
    let mut asked = Vec::with_capacity(N);
    for i in 0..N {
        let claims = [format!("drain {i} alpha"), format!("drain {i} beta")];
        let id = attested_openai_job(&h.store, &claims, MODEL, attestations.path()).await;
        asked.push(openai_user_message(&claims));
        ids.push(id);
    }
    let keys = trusted_keys_file(h.scratch());
    let concurrency = N.to_string();
    let mut w = h.spawn_worker(
        "w-drain",
        &server.worker_args(
            MODEL,
            &keys,
            attestations.path(),
            &["--concurrency", &concurrency],
        ),
    );
    for id in &ids {
        h.publish(id).await;
    }
    wait_until(LONG, "every job's request held at the server", || async {
        server.received().len() == N
    })
    .await;
    assert_eq!(h.count_state("in_progress").await, N as i64, "all claimed");

    w.signal_term();
    // The worker has taken the signal with all N still running: it says so as it stops
    // consuming. Only then do the jobs get their answers.
    wait_until(LONG, "the worker draining its jobs", || async {
        h.log_of("w-drain")
            .lines()
            .any(|l| l.contains("draining in-flight jobs") && l.contains(&format!("in_flight={N}")))
    })
    .await;
    server.release();
    assert_eq!(w.exit_code().await, Some(0), "a drained worker exits 0");

    // Finished by the stopping worker, on its first and only claim, with the held answer.
    for (id, user) in ids.iter().zip(&asked) {
        let row = h.store.read_job(id).await.unwrap().unwrap();
        assert_eq!(row.state, "completed", "{id}");
        assert_eq!(row.claimed_by.as_deref(), Some("w-drain"), "{id}");
        assert_eq!(row.attempts, 1, "{id}");
        let summary = MemoryId::parse(row.result_memory_id.as_deref().unwrap()).unwrap();
        let m = read_memory(&h.pool, &summary).await.unwrap();
        assert_eq!(m.claim, summary_of(user), "{id}");
    }
    assert_eq!(h.assert_exactly_one_summary_per_job().await, N as i64);
    // Acked by the stopping worker: with no consumer left, an unacked message would be back
    // in the queue. Never redelivered, and each job asked the server exactly once.
    assert_eq!(h.left_in(&h.base).await, 0, "every message acked");
    let redelivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM decay_jobs WHERE redeliveries <> 0")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(redelivered, 0, "no message came back");
    let mut received = server.received();
    received.sort();
    asked.sort();
    assert_eq!(received, asked, "each job reached the server once");
    h.assert_nothing_dead_lettered().await;
}

/// A job whose settle waits on a lock (a long transaction on its sources) must not take the
/// worker with it: its duplicates and redeliveries may not wait on its row with their delivery
/// unacked, each holding a concurrency permit (found by the chaos suite, scenario 7).
#[sqlx::test(migrations = "./migrations")]
async fn a_job_waiting_on_a_lock_does_not_hold_up_the_others(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let slow = jobs(&h, 1).await.remove(0);
    let others = jobs(&h, 20).await;
    let blocker = lock_sources_of(&pool, &slow).await;
    let mut w = h.spawn_worker("w-hol", &["--concurrency", "4", "--prefetch", "8"]);
    // Duplicates are harmless by design; four of them used to take all four permits.
    for _ in 0..4 {
        h.publish(&slow).await;
    }
    for id in &others {
        h.publish(id).await;
    }
    wait_until(
        LONG,
        "the other jobs completed while the slow one is held",
        || async { h.count_state("completed").await == 20 },
    )
    .await;
    let waiting = h.lock_waiters().await;
    assert!(
        waiting <= 1,
        "{waiting} statements wait on the slow job's lock"
    );
    blocker.rollback().await.unwrap();
    wait_until(LONG, "the slow job completed", || async {
        h.count_state("completed").await == 21
    })
    .await;
    let retry = format!("{}.retry.1s", h.base);
    wait_until(LONG, "its duplicates acked", || async {
        h.ready_in(&h.base).await == 0 && h.ready_in(&retry).await == 0
    })
    .await;
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 21);
    h.assert_nothing_dead_lettered().await;
    assert_eq!(w.terminate().await, Some(0));
}
