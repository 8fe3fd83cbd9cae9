//! Operating a worker: HTTP probes and metrics, secrets kept out of logs, dead-letter tools,
//! the demo. Real processes against the real RabbitMQ and PostgreSQL.

use std::time::Duration;

use chrono::Utc;
use decay_worker::decay::{JobKind, SummaryMethod};
use decay_worker::ids::DecayJobId;
use decay_worker::store::NewJob;
use sqlx::PgPool;

use crate::testkit::harness::{Harness, amqp_url, http_get, metric, metric_value, wait_until};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(60);

#[sqlx::test(migrations = "./migrations")]
async fn health_readiness_and_metrics_of_a_real_worker(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-http", &[]);
    let port = w.port;
    w.await_listening().await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    // The image's health check: `decay-worker health` probes the same listener.
    let probe = h
        .cli(&["health", "--http-addr", &format!("127.0.0.1:{port}")])
        .await;
    assert!(probe.status.success(), "health probe: {probe:?}");
    wait_until(LONG, "ready", || async {
        http_get(port, "/readyz").await.0 == 200
    })
    .await;
    let (_, body) = http_get(port, "/readyz").await;
    // It names the node it consumes from (the only one here), without credentials.
    let node = &decay_worker::broker::nodes::parse(&amqp_url()).unwrap()[0].label;
    assert_eq!(body, format!("broker: ok (node {node})\ndatabase: ok\n"));
    assert_eq!(http_get(port, "/nope").await.0, 404);

    // Before any delivery every job series exists, at zero.
    let before = http_get(port, "/metrics").await.1;
    assert_eq!(
        metric(&before, "decay_jobs_total{outcome=\"completed\"}"),
        Some(0.0)
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
        metric(&m, "decay_jobs_total{outcome=\"completed\"}") == Some(5.0)
            && metric(&m, "decay_jobs_total{outcome=\"retried\"}").is_some_and(|n| n >= 1.0)
    })
    .await;
    let m = http_get(port, "/metrics").await.1;
    assert!(metric_value(&m, "decay_deliveries_total") >= 6.0);
    assert_eq!(
        metric_value(
            &m,
            "decay_job_duration_seconds_count{kind=\"candidate_compression\",outcome=\"completed\"}"
        ),
        5.0
    );
    assert_eq!(metric_value(&m, "decay_jobs_in_flight"), 0.0, "all settled");
    assert_eq!(w.terminate().await, Some(0));
    let probe = h
        .cli(&["health", "--http-addr", &format!("127.0.0.1:{port}")])
        .await;
    assert!(
        !probe.status.success(),
        "health of a stopped worker: {probe:?}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn unreachable_database_is_not_ready_and_secrets_never_logged(pool: PgPool) {
    let h = Harness::new(pool).await;
    let db_secret = "DbSecret456xyz";
    let amqp_secret = "AmqpSecret789xyz";
    let bad_db = format!("postgres://postgres:{db_secret}@127.0.0.1:1/nowhere");
    let mut w = h.spawn_worker_env("w-nodb", &[], &[("DATABASE_URL", bad_db.as_str())]);
    let port = w.port;
    w.await_listening().await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    let (status, body) = http_get(port, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("database: unavailable"), "{body}");
    wait_until(LONG, "the worker reported the database error", || async {
        h.log_of("w-nodb").contains("database not reachable")
    })
    .await;
    w.kill().await;

    // A wrong broker password: the connection fails and is retried; its errors are logged.
    let bad_amqp = amqp_url().replacen("guest:guest@", &format!("guest:{amqp_secret}@"), 1);
    assert_ne!(
        bad_amqp,
        amqp_url(),
        "AMQP_URL must carry user:password for this test"
    );
    let mut w2 = h.spawn_worker_env("w-noamqp", &[], &[("AMQP_URL", bad_amqp.as_str())]);
    let port2 = w2.port;
    w2.await_listening().await;
    wait_until(LONG, "the worker reported the broker error", || async {
        h.log_of("w-noamqp").contains("broker connection failed")
    })
    .await;
    let (status, body) = http_get(port2, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("broker: unavailable"), "{body}");
    w2.kill().await;

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

/// `dead-letters list --json` as (job id, reason, body) triples, sorted.
async fn listed(h: &Harness) -> Vec<(Option<String>, String, String)> {
    let out = h.cli(&["dead-letters", "list", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<_> = v["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["job_id"].as_str().map(str::to_string),
                l["reason"].as_str().unwrap().to_string(),
                l["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(v["count"].as_u64(), Some(rows.len() as u64));
    rows.sort();
    rows
}

/// Run a CLI command, expecting success; returns its JSON output.
async fn cli_json(h: &Harness, args: &[&str]) -> serde_json::Value {
    let out = h.cli(args).await;
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn dead_letters_survive_being_listed_and_requeued(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-dl", &["--not-found-retries", "0"]);
    // Messages that arrive before their job row exists, and two that are not job messages.
    let ghosts: Vec<DecayJobId> = (0..3).map(|_| DecayJobId::new()).collect();
    for g in &ghosts {
        h.publish(g).await;
    }
    for body in [b"garbage".as_slice(), b"{\"job_id\":1}"] {
        h.session()
            .publish_raw(body, Default::default())
            .await
            .unwrap();
    }
    wait_until(LONG, "five dead letters", || async {
        h.dead_letters().await.len() == 5
    })
    .await;
    let expected = listed(&h).await;
    assert_eq!(expected.len(), 5);
    for (job, reason, _) in &expected {
        let want = if job.is_some() {
            "job_not_found"
        } else {
            "malformed_message"
        };
        assert_eq!(reason, want, "{job:?}");
    }

    // RabbitMQ 4.x drops a parked quorum-queue message returned 20 times; listing must not
    // return anything to any queue.
    for i in 0..25 {
        assert_eq!(listed(&h).await, expected, "listing {i}");
    }

    // Partly requeue, several times: a ghost whose row is still missing comes back as
    // job_not_found, the malformed bodies as malformed_message; nothing is lost on the way.
    let g0 = ghosts[0].to_string();
    for round in 0..3 {
        let v = cli_json(&h, &["dead-letters", "requeue", &g0, "--json"]).await;
        assert_eq!(v["requeued"], 1, "round {round}");
        let v = cli_json(
            &h,
            &[
                "dead-letters",
                "requeue",
                "--reason",
                "malformed_message",
                "--json",
            ],
        )
        .await;
        assert_eq!(v["requeued"], 2, "round {round}");
        wait_until(LONG, "the requeued letters parked again", || async {
            listed(&h).await == expected
        })
        .await;
        for _ in 0..5 {
            assert_eq!(listed(&h).await, expected, "round {round}");
        }
    }

    // Once its row exists, a ghost requeued by its letter id runs, and its letter is gone.
    let m = memory(&h.store, "late", 0.5, "user").await;
    let mut job = NewJob::new(
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![m.to_string()],
        Utc::now(),
        "operator:test",
        Utc::now(),
    );
    job.id = ghosts[1];
    h.store.insert_job(&job).await.unwrap();
    let letter = h
        .dead_letters()
        .await
        .into_iter()
        .find(|l| l.job_id.as_deref() == Some(ghosts[1].to_string().as_str()))
        .unwrap();
    let v = cli_json(
        &h,
        &["dead-letters", "requeue", &letter.id.to_string(), "--json"],
    )
    .await;
    assert_eq!(v["requeued"], 1);
    wait_until(LONG, "the requeued job completed", || async {
        h.store.read_job(&ghosts[1]).await.unwrap().unwrap().state == "completed"
    })
    .await;
    assert_eq!(listed(&h).await.len(), 4);

    // Poison that nobody will fix is purged, and only it.
    let v = cli_json(
        &h,
        &[
            "dead-letters",
            "purge",
            "--reason",
            "malformed_message",
            "--json",
        ],
    )
    .await;
    assert_eq!(v["purged"], 2);
    let left = listed(&h).await;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|(_, r, _)| r == "job_not_found"));

    // Nothing matched is visible: exit 7 and the id named.
    let absent = DecayJobId::new().to_string();
    for verb in ["requeue", "purge"] {
        let out = h.cli(&["dead-letters", verb, &absent]).await;
        assert_eq!(out.status.code(), Some(7), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&absent), "{verb}: {err}");
    }
    assert_eq!(listed(&h).await.len(), 2, "a miss changes nothing");
    assert_eq!(w.terminate().await, Some(0));
}

#[sqlx::test(migrations = "./migrations")]
async fn what_the_broker_parks_is_recorded_even_with_no_worker(pool: PgPool) {
    let h = Harness::new(pool).await;
    let id = DecayJobId::new();
    h.park_like_the_broker(
        format!("{{\"job_id\":\"{id}\"}}").as_bytes(),
        "delivery_limit",
    )
    .await;
    let rows = listed(&h).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(rows[0].1, "delivery_limit");
    let letter = &h.dead_letters().await[0];
    assert!(letter.detail.contains(&h.base), "{}", letter.detail);
    // Recorded once and acked: had it been handed back, a later listing would record it again.
    for _ in 0..5 {
        assert_eq!(listed(&h).await, rows);
    }
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
    assert_eq!(w.terminate().await, Some(0));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_queue_declared_with_other_arguments_stops_the_worker_with_a_reason(pool: PgPool) {
    // The harness declared the topology with a delivery limit of 10.
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-mismatch", &["--delivery-limit", "5"]);
    // It gives up (exits) instead of retrying forever.
    assert_eq!(w.exit_code().await, Some(2));
    let log = h.log_of("w-mismatch");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("x-delivery-limit"), "{last}");
    assert!(last.contains("--delivery-limit"), "{last}");
}
