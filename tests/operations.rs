//! Operating a worker: HTTP probes and metrics, secrets kept out of logs, dead-letter tools,
//! the demo. Real processes against the real RabbitMQ and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::harness::{Harness, amqp_url, http_get, wait_until};
use common::*;
use decay_worker::decay::{JobKind, SummaryMethod};
use decay_worker::ids::DecayJobId;
use decay_worker::store::NewJob;
use sqlx::PgPool;

const LONG: Duration = Duration::from_secs(60);

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[sqlx::test(migrations = "./migrations")]
async fn health_readiness_and_metrics_of_a_real_worker(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-http", &[]);
    let port = h.http_port("w-http").await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    wait_until(LONG, "ready", || async {
        http_get(port, "/readyz").await.0 == 200
    })
    .await;
    let (_, body) = http_get(port, "/readyz").await;
    assert_eq!(body, "broker: ok\ndatabase: ok\n");
    assert_eq!(http_get(port, "/nope").await.0, 404);

    let before = http_get(port, "/metrics").await.1;
    assert_eq!(
        metric(&before, "decay_jobs_total{outcome=\"completed\"}"),
        0.0
    );
    for _ in 0..5 {
        let id = candidate_job(&h.store, Utc::now()).await;
        h.publish(&id).await;
    }
    let ghost = DecayJobId::new();
    h.publish(&ghost).await;
    wait_until(LONG, "jobs completed", || async {
        h.count_state("completed").await == 5
    })
    .await;
    wait_until(LONG, "metrics moved", || async {
        let m = http_get(port, "/metrics").await.1;
        metric(&m, "decay_jobs_total{outcome=\"completed\"}") == 5.0
            && metric(&m, "decay_jobs_total{outcome=\"retried\"}") >= 1.0
    })
    .await;
    let m = http_get(port, "/metrics").await.1;
    assert!(metric(&m, "decay_deliveries_total") >= 6.0);
    assert!(m.contains(
        "decay_job_duration_seconds_bucket{kind=\"candidate_compression\",outcome=\"completed\""
    ));
    assert!(m.contains("decay_jobs_in_flight"));
    assert_eq!(Harness::terminate(&mut w).await, Some(0));
}

#[sqlx::test(migrations = "./migrations")]
async fn unreachable_database_is_not_ready_and_secrets_never_logged(pool: PgPool) {
    let h = Harness::new(pool).await;
    let db_secret = "DbSecret456xyz";
    let amqp_secret = "AmqpSecret789xyz";
    let bad_db = format!("postgres://postgres:{db_secret}@127.0.0.1:1/nowhere");
    let mut w = h.spawn_worker_env("w-nodb", &[], &[("DATABASE_URL", bad_db.as_str())]);
    let port = h.http_port("w-nodb").await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    let (status, body) = http_get(port, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("database: unavailable"), "{body}");
    wait_until(LONG, "the worker reported the database error", || async {
        h.log_of("w-nodb").contains("database not reachable")
    })
    .await;
    w.kill().await.unwrap();

    // A wrong broker password: the connection fails and is retried; its errors are logged.
    let bad_amqp = amqp_url().replacen("guest:guest@", &format!("guest:{amqp_secret}@"), 1);
    assert_ne!(
        bad_amqp,
        amqp_url(),
        "AMQP_URL must carry user:password for this test"
    );
    let mut w2 = h.spawn_worker_env("w-noamqp", &[], &[("AMQP_URL", bad_amqp.as_str())]);
    let port2 = h.http_port("w-noamqp").await;
    wait_until(LONG, "the worker reported the broker error", || async {
        h.log_of("w-noamqp").contains("broker connection failed")
    })
    .await;
    let (status, body) = http_get(port2, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("broker: unavailable"), "{body}");
    w2.kill().await.unwrap();

    for name in ["w-nodb", "w-noamqp"] {
        let log = h.log_of(name);
        assert!(!log.is_empty());
        assert!(
            !log.contains(db_secret),
            "{name} leaked the database password:\n{log}"
        );
        assert!(
            !log.contains(amqp_secret),
            "{name} leaked the broker password:\n{log}"
        );
    }
    // A failing CLI command does not print it either.
    let out = h
        .cli(&[
            "jobs",
            "stats",
            "--database-url",
            &bad_db,
            "--db-acquire-timeout",
            "1s",
        ])
        .await;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains(db_secret), "{text}");
    assert!(text.contains("***"), "the URL is shown redacted: {text}");
}

#[sqlx::test(migrations = "./migrations")]
async fn dead_letters_can_be_listed_and_requeued_without_loss(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-dl", &["--not-found-retries", "0"]);
    // A message that arrives before its job row exists ends up dead-lettered.
    let id = DecayJobId::new();
    h.publish(&id).await;
    h.session()
        .publish_raw(b"garbage", Default::default())
        .await
        .unwrap();
    let dead = format!("{}.dead", h.base);
    wait_until(LONG, "two dead letters", || async {
        h.ready_in(&dead).await == 2
    })
    .await;

    let out = h.cli(&["dead-letters", "list", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 2);
    let letters = v["dead_letters"].as_array().unwrap();
    let ghost = letters
        .iter()
        .find(|l| l["job_id"] == id.to_string())
        .unwrap();
    assert_eq!(ghost["reason"], "job_not_found");
    assert!(ghost["dead_lettered_at"].is_string());
    assert!(letters.iter().any(|l| l["reason"] == "malformed_message"));
    assert_eq!(h.ready_in(&dead).await, 2, "listing removed nothing");

    // Now the row exists: requeue only the not-found letter; it is processed.
    let m = memory(&h.store, "late", 0.5, "user").await;
    let mut job = NewJob::new(
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![m.to_string()],
        Utc::now(),
        "operator:test",
        Utc::now(),
    );
    job.id = id;
    h.store.insert_job(&job).await.unwrap();
    let out = h
        .cli(&[
            "dead-letters",
            "requeue",
            "--reason",
            "job_not_found",
            "--json",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requeued"], 1);
    wait_until(LONG, "the requeued job completed", || async {
        h.store
            .read_job(&id.to_string())
            .await
            .unwrap()
            .unwrap()
            .state
            == "completed"
    })
    .await;
    assert_eq!(
        h.ready_in(&dead).await,
        1,
        "the malformed letter stayed parked"
    );
    let out = h.cli(&["dead-letters", "requeue", "--all"]).await;
    assert!(out.status.success());
    wait_until(LONG, "the malformed letter came back", || async {
        h.ready_in(&dead).await == 1
    })
    .await;
    assert_eq!(Harness::terminate(&mut w).await, Some(0));
}

#[sqlx::test(migrations = "./migrations")]
async fn demo_seeds_and_publishes_jobs_that_complete(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-demo", &[]);
    let out = h.cli(&["demo", "--jobs", "12"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("scheduled 12/12 jobs"));
    wait_until(LONG, "demo jobs completed", || async {
        h.count_state("completed").await == 12
    })
    .await;
    let stats = h.cli(&["jobs", "stats", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let kinds: Vec<&str> = v["by_state_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"candidate_compression"));
    assert!(kinds.contains(&"episode_compression"));
    assert!(kinds.contains(&"expired_principle_review"));
    assert_eq!(Harness::terminate(&mut w).await, Some(0));
}
