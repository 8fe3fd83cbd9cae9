//! Batches (DESIGN §5): one read, one transaction, each job guarded on its own. The runner's
//! batch against the real PostgreSQL, and worker processes running batches over the real
//! RabbitMQ. Exactly-once must hold whatever shares a batch.

use std::time::Duration;

use chrono::Utc;
use decay_worker::decay::{Invariant, JobKind, JobStateKind, SummaryMethod};
use decay_worker::ids::{DecayJobId, MemoryId};
use decay_worker::runner::{BatchOutcome, RunOutcome, Runner};
use decay_worker::store::{CancelOutcome, Store};
use sqlx::PgPool;

use crate::testkit::harness::{Harness, http_get, metric_value, settled_for_good, wait_until};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(60);

async fn candidates(store: &Store, n: usize) -> Vec<DecayJobId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(candidate_job(store, t0()).await);
    }
    ids
}

/// The outcome of a job the batch ran itself.
fn ran(o: &BatchOutcome) -> &RunOutcome {
    match o {
        BatchOutcome::Ran(Ok(outcome)) => outcome,
        other => panic!("expected a run outcome, got {other:?}"),
    }
}

fn completed(o: &BatchOutcome) -> bool {
    matches!(
        ran(o),
        RunOutcome::Completed {
            result_memory_id: Some(_)
        }
    )
}

async fn state(store: &Store, id: &DecayJobId) -> String {
    store.read_job(id).await.unwrap().unwrap().state
}

async fn summaries(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM memories WHERE memory_type = 'summary'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn a_batch_settles_each_job_with_its_summary_and_edges(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let mut ids = candidates(&store, 3).await;
    let e1 = episode(&store, "one", 0.5).await;
    let e2 = episode(&store, "two", 0.7).await;
    ids.push(
        job_at(
            &store,
            JobKind::EpisodeCompression,
            SummaryMethod::DeterministicConcatenate,
            vec![e1.to_string(), e2.to_string()],
            t0(),
        )
        .await,
    );
    let p = principle(&store).await;
    ids.push(
        job_at(
            &store,
            JobKind::ExpiredPrincipleReview,
            SummaryMethod::None,
            vec![p.to_string()],
            t0(),
        )
        .await,
    );
    let out = runner(&store).run_batch(&ids).await.unwrap();
    assert_eq!(out.len(), 5);
    for o in &out[..4] {
        assert!(completed(o), "{o:?}");
    }
    assert_eq!(
        ran(&out[4]),
        &RunOutcome::Completed {
            result_memory_id: None
        }
    );
    for (i, id) in ids.iter().enumerate() {
        let row = store.read_job(id).await.unwrap().unwrap();
        assert_eq!(row.state, "completed");
        assert_eq!(row.attempts, 1);
        assert_eq!(row.updated_at, t0(), "one clock: the batch's now");
        let expected_edges = match i {
            0..=2 => 3,
            3 => 2,
            _ => 0,
        };
        assert_eq!(count_edges(&pool, id).await, expected_edges, "job {i}");
        assert_eq!(count_summaries(&pool, id).await, i64::from(i < 4));
    }
    // The batch writes what a single run writes: same claim, confidence, lineage.
    let single = candidate_job(&store, t0()).await;
    let RunOutcome::Completed {
        result_memory_id: Some(m1),
    } = runner(&store).run_specific_job(&single).await.unwrap()
    else {
        panic!("single run did not complete");
    };
    let RunOutcome::Completed {
        result_memory_id: Some(m0),
    } = ran(&out[0]).clone()
    else {
        unreachable!()
    };
    let (a, b) = (
        read_memory(&pool, &m0).await.unwrap(),
        read_memory(&pool, &m1).await.unwrap(),
    );
    assert_eq!(
        (
            a.claim,
            a.confidence,
            a.authority,
            a.applies_when_json.is_object()
        ),
        (b.claim, b.confidence, b.authority, true)
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn the_same_id_twice_in_one_batch_gives_one_summary(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let ids = candidates(&store, 2).await;
    let r = runner(&store);
    let batch = [ids[0], ids[0], ids[1], ids[0]];
    let out = r.run_batch(&batch).await.unwrap();
    assert!(completed(&out[0]) && completed(&out[2]), "{out:?}");
    assert!(matches!(out[1], BatchOutcome::Alone) && matches!(out[3], BatchOutcome::Alone));
    // The repeats run alone after the batch, as the worker does: a no-op.
    assert_eq!(
        r.run_specific_job(&ids[0]).await.unwrap(),
        RunOutcome::AlreadyTerminal {
            state: JobStateKind::Completed
        }
    );
    assert_eq!(count_summaries(&pool, &ids[0]).await, 1);
    assert_eq!(summaries(&pool).await, 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn two_concurrent_batches_over_the_same_ids_settle_each_job_once(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let ids = candidates(&store, 60).await;
    let mut reversed = ids.clone();
    reversed.reverse();
    let mut second = runner_cfg();
    second.worker_id = "test/2".into();
    let (a, b): (Runner, Runner) = (
        runner(&store),
        runner_with(
            &store,
            second,
            std::sync::Arc::new(decay_worker::llm::NoopBackend),
        ),
    );
    let (ra, rb) = tokio::join!(a.run_batch(&ids), b.run_batch(&reversed));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    rb.iter().rev().zip(&ra).zip(&ids).for_each(|((b, a), id)| {
        let (a, b) = (ran(a), ran(b));
        let wins = [a, b]
            .iter()
            .filter(|o| matches!(o, RunOutcome::Completed { .. }))
            .count();
        assert_eq!(wins, 1, "job {id}: {a:?} / {b:?}");
        for o in [a, b] {
            assert!(
                matches!(
                    o,
                    RunOutcome::Completed { .. }
                        | RunOutcome::AlreadyTerminal {
                            state: JobStateKind::Completed
                        }
                        | RunOutcome::InProgress { .. }
                ),
                "{o:?}"
            );
        }
    });
    for id in &ids {
        assert_eq!(state(&store, id).await, "completed");
        assert_eq!(count_summaries(&pool, id).await, 1);
    }
    assert_eq!(summaries(&pool).await, 60);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_batch_racing_cancels_never_touches_a_cancelled_job(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let ids = candidates(&store, 40).await;
    // Cancelled before the batch reads it: reported terminal from the read.
    store.cancel_job(&ids[0], "early").await.unwrap();
    // Cancelled while another transaction holds its row: the batch's guard skips the locked
    // row, re-reads it and reports it in progress; the cancel then commits.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM decay_jobs WHERE id = $1 FOR UPDATE")
        .bind(ids[1].to_string())
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let r = runner(&store);
    let out = r.run_batch(&ids[..2]).await.unwrap();
    assert_eq!(
        ran(&out[0]),
        &RunOutcome::AlreadyTerminal {
            state: JobStateKind::Cancelled
        }
    );
    assert!(
        matches!(ran(&out[1]), RunOutcome::InProgress { .. }),
        "{out:?}"
    );
    sqlx::query("UPDATE decay_jobs SET state = 'cancelled', cancel_reason = 'held' WHERE id = $1")
        .bind(ids[1].to_string())
        .execute(&mut *holder)
        .await
        .unwrap();
    holder.commit().await.unwrap();

    // And cancels running concurrently with a batch over the rest: each job ends either
    // completed with one summary, or cancelled with none, and the cancel says which.
    let rest = &ids[2..];
    let cancels = async {
        let mut said = Vec::new();
        for id in rest.iter().step_by(2) {
            said.push((*id, store.cancel_job(id, "race").await.unwrap()));
            tokio::task::yield_now().await;
        }
        said
    };
    let (out, said) = tokio::join!(r.run_batch(rest), cancels);
    let out = out.unwrap();
    for (id, o) in rest.iter().zip(&out) {
        let row = store.read_job(id).await.unwrap().unwrap();
        match row.state.as_str() {
            "completed" => assert_eq!(count_summaries(&pool, id).await, 1),
            "cancelled" => {
                assert_eq!(count_summaries(&pool, id).await, 0);
                assert_eq!(count_edges(&pool, id).await, 0);
                assert!(row.result_memory_id.is_none());
                assert!(!matches!(ran(o), RunOutcome::Completed { .. }), "{o:?}");
            }
            other => panic!("job {id} ended {other}"),
        }
    }
    for (id, cancel) in said {
        let st = state(&store, &id).await;
        match cancel {
            CancelOutcome::Cancelled { .. } => assert_eq!(st, "cancelled"),
            CancelOutcome::Terminal { state } => assert_eq!(st, state.wire()),
            other => panic!("{other:?}"),
        }
    }
    for id in &ids[..2] {
        assert_eq!(state(&store, id).await, "cancelled");
        assert_eq!(count_summaries(&pool, id).await, 0);
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_job_with_a_missing_source_fails_alone(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let good = candidates(&store, 2).await;
    let present = memory(&store, "here", 0.5, "agent").await;
    let missing = MemoryId::new();
    let bad = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![present.to_string(), missing.to_string()],
        t0(),
    )
    .await;
    let out = runner(&store)
        .run_batch(&[good[0], bad, good[1]])
        .await
        .unwrap();
    assert!(completed(&out[0]) && completed(&out[2]), "{out:?}");
    let RunOutcome::Failed { code, reason } = ran(&out[1]) else {
        panic!("{out:?}")
    };
    assert_eq!(*code, Invariant::CompressSourceMissing);
    assert!(reason.contains(&missing.to_string()), "{reason}");
    let row = store.read_job(&bad).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert_eq!(
        row.failure_code.as_deref(),
        Some("decay.compress.source_missing")
    );
    assert_eq!(count_summaries(&pool, &bad).await, 0);
    assert_eq!(summaries(&pool).await, 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_database_error_fails_the_whole_batch_and_commits_nothing(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let ids = candidates(&store, 5).await;
    // The fourth summary insert fails the way a serialization failure does: the statement
    // has already updated jobs and inserted summaries by then, and all of it must roll back.
    fail_nth_summary_insert(&pool, 4).await;
    let r = runner(&store);
    let err = r.run_batch(&ids).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    for id in &ids {
        let row = store.read_job(id).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
        assert!(row.claim_token.is_none());
    }
    assert_eq!(summaries(&pool).await, 0);
    let edges: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_supersessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(edges, 0);
    // Retried, the batch completes (the trigger lets every later insert through).
    let out = r.run_batch(&ids).await.unwrap();
    assert!(out.iter().all(completed), "{out:?}");
    assert_eq!(summaries(&pool).await, 5);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_refused_batch_statement_runs_its_jobs_alone(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let ids = candidates(&store, 3).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON memories
           FOR EACH ROW WHEN (NEW.memory_type = 'summary') EXECUTE FUNCTION refuse();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = runner(&store).run_batch(&ids).await.unwrap();
    assert!(
        out.iter().all(|o| matches!(o, BatchOutcome::Alone)),
        "{out:?}"
    );
    for id in &ids {
        assert_eq!(state(&store, id).await, "pending");
    }
}

/// Worker processes with batches on: every id published twice, two workers consuming, so the
/// same ids meet in one batch and in concurrent batches of both workers.
#[sqlx::test(migrations = "./migrations")]
async fn two_batching_workers_complete_every_job_exactly_once(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut ids = Vec::new();
    for _ in 0..150 {
        ids.push(candidate_job(&h.store, Utc::now()).await);
    }
    for _ in 0..2 {
        for id in &ids {
            h.publish(id).await;
        }
    }
    let args = [
        "--batch-size",
        "32",
        "--batch-linger",
        "5ms",
        "--prefetch",
        "64",
    ];
    let mut a = h.spawn_worker("w-a", &args);
    let mut b = h.spawn_worker("w-b", &args);
    wait_until(LONG, "150 jobs completed", || async {
        h.count_state("completed").await == 150
    })
    .await;
    // Not the queue being empty: prefetched deliveries not yet started, and duplicates
    // retried `in_progress` into a retry tier, would go back to the queue when the workers
    // stop (see worker::duplicate_publishes_are_harmless). Each message's last word instead.
    let settled = || async {
        let mut settled = 0.0;
        for w in [&a, &b] {
            settled += settled_for_good(&http_get(w.port, "/metrics").await.1);
        }
        settled
    };
    wait_until(
        LONG,
        "an outcome for good for each of the 300 messages",
        || async { settled().await >= 300.0 },
    )
    .await;
    assert_eq!(settled().await, 300.0, "each message settled once");
    let mut batched = 0.0;
    for w in [&a, &b] {
        let (_, text) = http_get(w.port, "/metrics").await;
        let (sum, count) = (
            metric_value(&text, "decay_batch_size_sum"),
            metric_value(&text, "decay_batch_size_count"),
        );
        batched += sum - count;
    }
    assert!(batched > 0.0, "no delivery shared a batch");
    assert_eq!(a.terminate().await, Some(0));
    assert_eq!(b.terminate().await, Some(0));
    h.assert_all_done_once(150).await;
}

/// A database error fails a worker's batch as a whole: nothing of it is committed, every
/// delivery of it is retried, and every job then completes exactly once.
#[sqlx::test(migrations = "./migrations")]
async fn a_failed_batch_is_retried_and_completes(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    fail_nth_summary_insert(&pool, 1).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(candidate_job(&h.store, Utc::now()).await);
    }
    for id in &ids {
        h.publish(id).await;
    }
    let mut w = h.spawn_worker("w-retry", &["--batch-size", "16", "--prefetch", "32"]);
    wait_until(LONG, "40 jobs completed", || async {
        h.count_state("completed").await == 40
    })
    .await;
    let (_, text) = http_get(w.port, "/metrics").await;
    let transient =
        crate::testkit::harness::metric(&text, "decay_retries_total{why=\"transient\"}");
    assert!(
        transient.is_some_and(|n| n >= 1.0),
        "no transient retry counted:\n{text}"
    );
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 40);
    h.assert_nothing_dead_lettered().await;
}

/// Acks of a batch go out as `multiple` where the tags allow, and a tag handed over for ack
/// is never nacked or acked again (issue 11 item 11): against the real broker, which closes
/// the channel with PRECONDITION_FAILED (unknown delivery tag) if either happened. The
/// passive declare after each step is a round trip on the same channel, so a closure caused
/// by an earlier frame shows there.
#[sqlx::test(migrations = "./migrations")]
async fn batch_acks_never_settle_a_tag_twice(pool: PgPool) {
    use decay_worker::broker::{BrokerConfig, Session};
    let h = Harness::new(pool).await;
    let cfg = BrokerConfig {
        url: crate::testkit::harness::amqp_url(),
        tls: Default::default(),
        base: h.base.clone(),
        delivery_limit: 10,
        heartbeat_secs: 5,
        op_timeout: Duration::from_secs(10),
    };
    let session = Session::open(&cfg, "test-acks").await.unwrap();
    let ids: Vec<DecayJobId> = (0..6).map(|_| DecayJobId::new()).collect();
    for id in &ids {
        h.publish(id).await;
    }
    let mut consumer = session.consume(16, "test-acks").await.unwrap();
    let mut ds = Vec::new();
    for _ in 0..6 {
        ds.push(consumer.next().await.unwrap().unwrap());
    }
    let queue = session.topology().queue().to_string();
    async fn alive(s: &Session, queue: &str) -> bool {
        s.queue_counts(queue).await.is_ok()
    }
    // 0..3 together (one `multiple` frame), then the "requeue after a failed ack" of one of
    // them and a second ack of another: both must send nothing.
    session.ack_all(&[&ds[0], &ds[1], &ds[2]]).await.unwrap();
    session.requeue(&ds[1]).await.unwrap();
    session.ack(&ds[0]).await.unwrap();
    assert!(alive(&session, &queue).await, "the channel was closed");
    // 3 stays ours; 5 and 4 are acked singly (a `multiple` on 5 would cover 3).
    session.ack_all(&[&ds[5], &ds[4]]).await.unwrap();
    assert!(alive(&session, &queue).await, "the channel was closed");
    // 3 is requeued for real, and comes back.
    session.requeue(&ds[3]).await.unwrap();
    let again = consumer.next().await.unwrap().unwrap();
    assert_eq!(again.body(), ds[3].body());
    session.ack(&again).await.unwrap();
    assert!(alive(&session, &queue).await, "the channel was closed");
    session.cancel(&consumer.tag()).await.unwrap();
    session.close().await;
    assert_eq!(h.left_in(&h.base).await, 0, "every message settled once");
}
