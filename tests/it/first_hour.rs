//! A newcomer's first hour (issue 16): what a new user meets first, against real processes,
//! the real RabbitMQ and PostgreSQL: no spurious retries while a producer publishes, a
//! shutdown bounded by its grace, metrics that exist from the start, exit codes and one-line
//! errors as the README documents them.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use crate::testkit::attest::attest_sign_args;
use crate::testkit::harness::{Harness, http_get, metric, wait_until};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(90);

/// The value of a counter series, zero while it is absent (before the fix the series only
/// appeared with its first increment).
fn counter(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

/// A producer publishing while a worker consumes must not make the worker's claim see a
/// locked row and retry "in_progress" a job nobody holds: the producer marks its publish
/// before the message exists. One worker, so any `in_progress` retry is spurious.
///
/// The producer's mark is a short statement, and whether a claim lands inside it depends on
/// the machine (a release build hit it one job in three, a debug build rarely). So the test
/// widens it: a trigger of this test's database makes every statement that changes
/// `last_published_at` hold its row lock 200 ms longer. A mark that can race the message it
/// announces then always does; one made before the message exists never can.
#[sqlx::test(migrations = "./migrations")]
async fn publishing_while_a_worker_consumes_causes_no_in_progress_retry(pool: PgPool) {
    const JOBS: i64 = 20;
    sqlx::raw_sql(
        "CREATE FUNCTION slow_publish_mark() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.last_published_at IS DISTINCT FROM OLD.last_published_at THEN
             PERFORM pg_sleep(0.2);
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER slow_publish_mark BEFORE UPDATE ON decay_jobs
           FOR EACH ROW EXECUTE FUNCTION slow_publish_mark();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-one", &[]);
    w.await_ready().await;
    let out = h.cli(&["demo", "--jobs", &JOBS.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(LONG, "every demo job completed", || async {
        h.count_state("completed").await == JOBS
    })
    .await;
    let m = http_get(w.port, "/metrics").await.1;
    assert_eq!(
        counter(&m, "decay_jobs_total{outcome=\"completed\"}"),
        JOBS as f64,
        "each job completed on its first delivery"
    );
    assert_eq!(
        counter(&m, "decay_retries_total{why=\"in_progress\"}"),
        0.0,
        "spurious in_progress retries; log:\n{}",
        h.log_of("w-one")
    );
    assert!(!h.log_of("w-one").contains("why=\"in_progress\""));
    assert_eq!(w.terminate().await, Some(0));
}

/// `--shutdown-grace` bounds the exit: a job blocked on a row lock does not keep the process
/// alive past the grace. Ordered, not timed: the lock is released only after the exit was
/// observed, so a worker that waits for the lock can never pass.
#[sqlx::test(migrations = "./migrations")]
async fn the_shutdown_grace_bounds_the_exit_of_a_blocked_job(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let id = candidate_job(&h.store, Utc::now()).await;
    let blocker = lock_sources_of(&pool, &id).await;
    let mut w = h.spawn_worker_env("w-grace", &[], &[("DECAY_SHUTDOWN_GRACE", "1s")]);
    w.await_ready().await;
    h.publish(&id).await;
    wait_until(LONG, "the job's settle waiting on the lock", || async {
        h.lock_waiters().await >= 1
    })
    .await;
    w.signal_term();
    // Exits while the lock is still held (the harness's deadline is far above the grace).
    let code = w.exit_code().await;
    assert!(
        h.log_of("w-grace").contains("shutdown grace elapsed"),
        "{}",
        h.log_of("w-grace")
    );
    blocker.rollback().await.unwrap();
    assert_eq!(code, Some(0), "{}", h.log_of("w-grace"));
    // The abandoned job's message was not acked: it is back in the queue for the next worker.
    // (Its statement, already sent, may still commit once the lock is gone: one guarded
    // settle, so at most one summary, and the next delivery is a no-op.)
    assert_eq!(h.left_in(&h.base).await, 1, "the message went back");
    h.assert_exactly_one_summary_per_job().await;
}

/// Every documented series is on `/metrics` from the start, at zero, with a HELP line.
#[sqlx::test(migrations = "./migrations")]
async fn every_documented_metric_exists_from_the_start(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-metrics", &[]);
    w.await_ready().await;
    let m = http_get(w.port, "/metrics").await.1;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let documented: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `decay_"))
        .flat_map(|l| l.split('|').nth(1).unwrap_or_default().split(','))
        .map(|n| n.trim().trim_matches('`'))
        .collect();
    assert!(documented.len() >= 11, "{documented:?}");
    for name in documented {
        assert!(
            m.contains(&format!("# HELP {name} ")),
            "no HELP line for {name}:\n{m}"
        );
        let sample = if name.ends_with("_seconds") {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert!(
            m.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(&sample)),
            "no {sample} series:\n{m}"
        );
    }
    for series in [
        "decay_retries_total{why=\"in_progress\"}",
        "decay_dead_letters_total{reason=\"malformed_message\"}",
        "decay_jobs_total{outcome=\"completed\"}",
    ] {
        assert_eq!(metric(&m, series), Some(0.0), "{series} in:\n{m}");
    }
    assert_eq!(w.terminate().await, Some(0));
}

/// Run the binary with exactly this environment on top of a clean one: no `RUST_LOG` unless
/// given, so what a newcomer sees by default is what the test sees.
async fn bare(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_decay-worker"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env_remove("DECAY_QUEUE")
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // A worker that would not exit must not hang the test.
    tokio::time::timeout(LONG, cmd.output())
        .await
        .expect("the command exits")
        .unwrap()
}

/// Its stderr, checked to be the one documented line `decay-worker: ...`, and returned.
fn one_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("decay-worker: "), "{err}");
    assert!(
        !err.contains(" at line "),
        "PostgreSQL's source line leaked: {err}"
    );
    lines[0].to_string()
}

/// Settings are validated at start (exit 2), whatever the command, the worker included.
#[tokio::test]
async fn a_database_url_that_is_not_a_url_is_a_usage_error() {
    for args in [
        &["jobs", "stats"][..],
        &["consume", "--http-addr", "127.0.0.1:0"][..],
    ] {
        let out = bare(args, &[("DATABASE_URL", "not-a-url")]).await;
        let line = one_line(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {line}");
        assert!(line.contains("DATABASE_URL"), "{line}");
    }
}

/// A refused port says so, at once, rather than "pool timed out".
#[tokio::test]
async fn a_refused_database_port_says_connection_refused() {
    let port = crate::testkit::harness::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let out = bare(&["jobs", "stats"], &[("DATABASE_URL", &url)]).await;
    let line = one_line(&out);
    assert_eq!(out.status.code(), Some(64), "{line}");
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
}

/// A database nobody migrated: say what to run, with the precondition code.
#[sqlx::test(migrations = false)]
async fn a_database_not_migrated_says_run_migrate(pool: PgPool) {
    let h = Harness::new(pool).await;
    for args in [&["jobs", "stats"][..], &["jobs", "list"][..]] {
        let out = bare(args, &[("DATABASE_URL", h.db_url())]).await;
        let line = one_line(&out);
        assert_eq!(out.status.code(), Some(7), "{line}");
        assert!(line.contains("run `decay-worker migrate`"), "{line}");
    }
}

/// A wrong AMQP password: our one line, with no lapin ERROR lines before it.
#[sqlx::test(migrations = "./migrations")]
async fn a_wrong_amqp_password_is_one_line(pool: PgPool) {
    let h = Harness::new(pool).await;
    let m = memory(&h.store, "alpha", 0.9, "user").await.to_string();
    let out = bare(
        &[
            "schedule",
            "--kind",
            "candidate-compression",
            "--memory-ids",
            &m,
        ],
        &[
            ("DATABASE_URL", h.db_url()),
            ("AMQP_URL", "amqp://guest:wrong@127.0.0.1:5672/%2f"),
            ("DECAY_QUEUE", h.base.as_str()),
        ],
    )
    .await;
    let line = one_line(&out);
    assert_eq!(out.status.code(), Some(7), "{line}");
    assert!(line.contains("decay.schedule.publish_failed"), "{line}");
}

/// `schedule` refuses source ids that do not exist, naming each, and inserts nothing.
#[sqlx::test(migrations = "./migrations")]
async fn schedule_refuses_sources_that_do_not_exist(pool: PgPool) {
    let h = Harness::new(pool).await;
    let real = memory(&h.store, "alpha", 0.9, "user").await.to_string();
    let ghosts = [
        decay_worker::ids::MemoryId::new().to_string(),
        decay_worker::ids::MemoryId::new().to_string(),
    ];
    let ids = format!("{real},{},{}", ghosts[0], ghosts[1]);
    let out = h
        .cli(&[
            "schedule",
            "--kind",
            "candidate-compression",
            "--memory-ids",
            &ids,
        ])
        .await;
    let line = one_line(&out);
    assert_eq!(out.status.code(), Some(7), "{line}");
    assert!(line.contains("decay.schedule.source_missing"), "{line}");
    for g in &ghosts {
        assert!(line.contains(g.as_str()), "{line}");
    }
    assert!(!line.contains(&real), "{line}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM decay_jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing inserted");
    let epi = decay_worker::ids::EpisodeId::new().to_string();
    let out = h
        .cli(&[
            "schedule",
            "--kind",
            "episode-compression",
            "--episode-ids",
            &epi,
        ])
        .await;
    assert_eq!(out.status.code(), Some(7));
    assert!(one_line(&out).contains(&epi));
}

/// An envelope used twice: its own refusal (exit 7), not a database error.
#[sqlx::test(migrations = "./migrations")]
async fn scheduling_with_a_used_envelope_says_so(pool: PgPool) {
    use crate::testkit::attest::{schedule_llm_args, sign_for, temp_json};
    let h = Harness::new(pool).await;
    let m = memory(&h.store, "alpha", 0.9, "user").await.to_string();
    let id = decay_worker::ids::DecayJobId::new();
    let digest = decay_worker::decay::attestation::prompt_template_digest(b"t {claims}");
    let env = temp_json(&sign_for(&id, "m@1", &digest));
    let keys = crate::testkit::attest::trusted_keys_file(h.scratch());
    let args = schedule_llm_args(
        &m,
        &env,
        &["--trusted-operator-keys", keys.to_str().unwrap()],
    );
    let first = h.cli(&args).await;
    assert!(first.status.success(), "{first:?}");
    let again = h.cli(&args).await;
    let line = one_line(&again);
    assert_eq!(again.status.code(), Some(7), "{line}");
    assert!(line.contains("decay.schedule.job_exists"), "{line}");
    assert!(line.contains(&id.to_string()), "{line}");
    assert!(!line.contains("duplicate key"), "{line}");
}

/// `attest sign` refuses a malformed digest, as `schedule` would refuse the envelope.
#[tokio::test]
async fn attest_sign_refuses_a_malformed_digest() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("op.key");
    let made = bare(
        &[
            "attest",
            "keygen",
            "--key-id",
            "k1",
            "--out",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(made.status.success(), "{made:?}");
    let upper = format!("blake3:{}", "A".repeat(64));
    for bad in ["blake3:", "blake3:ABC", "sha256:00", upper.as_str()] {
        let out = bare(&attest_sign_args(&key, "m@1", bad, &[]), &[]).await;
        let line = one_line(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {line}");
        assert!(line.contains("--prompt-template-blake3"), "{line}");
    }
}

/// `run --job-id` on a failed job exits as the run that failed it did, every time, with the
/// failure's code named once.
#[sqlx::test(migrations = "./migrations")]
async fn run_on_a_failed_job_exits_as_its_failure_did(pool: PgPool) {
    let h = Harness::new(pool).await;
    let m = memory(&h.store, "alpha", 0.9, "user").await;
    let id = job_at(
        &h.store,
        decay_worker::decay::JobKind::CandidateCompression,
        decay_worker::decay::SummaryMethod::DeterministicConcatenate,
        vec![m.to_string()],
        Utc::now(),
    )
    .await;
    sqlx::query("DELETE FROM memories WHERE id = $1")
        .bind(m.to_string())
        .execute(&h.pool)
        .await
        .unwrap();
    let id = id.to_string();
    let mut lines = Vec::new();
    for _ in 0..3 {
        let out = h.cli(&["run", "--job-id", &id]).await;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let line = one_line(&out);
        assert_eq!(
            line.matches("decay.compress.source_missing").count(),
            1,
            "prefix doubled: {line}"
        );
        lines.push(line);
    }
    assert_eq!(lines[0], lines[1]);
    assert_eq!(lines[1], lines[2]);
}

/// A worker without `--attestation-dir` says where it looked when an LLM job fails for want
/// of an attestation.
#[sqlx::test(migrations = "./migrations")]
async fn a_worker_without_an_attestation_dir_says_so(pool: PgPool) {
    let h = Harness::new(pool).await;
    let m = memory(&h.store, "alpha", 0.9, "user").await;
    let id = job_at(
        &h.store,
        decay_worker::decay::JobKind::CandidateCompression,
        decay_worker::decay::SummaryMethod::LlmSummary,
        vec![m.to_string()],
        Utc::now(),
    )
    .await;
    let mut w = h.spawn_worker("w-noatt", &[]);
    h.publish(&id).await;
    wait_until(LONG, "the LLM job failed", || async {
        h.count_state("failed").await == 1
    })
    .await;
    wait_until(LONG, "the worker saying where it looked", || async {
        h.log_of("w-noatt").contains("no --attestation-dir")
    })
    .await;
    assert_eq!(w.terminate().await, Some(0));
}

/// The README's path without Docker: `demo --print-ids` gives real ids that `schedule` takes,
/// and the spellings a newcomer tries are accepted.
#[sqlx::test(migrations = "./migrations")]
async fn the_readme_path_without_docker_works(pool: PgPool) {
    let h = Harness::new(pool).await;
    let out = h.cli(&["demo", "--jobs", "0", "--print-ids"]).await;
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let var = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in:\n{printed}"))
            .to_string()
    };
    let (memories, episodes, principle) =
        (var("MEMORY_IDS"), var("EPISODE_IDS"), var("PRINCIPLE_ID"));
    assert_eq!(var("JOB_IDS"), "", "--jobs 0 schedules nothing");
    let later = (Utc::now() + chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for args in [
        vec!["--kind", "candidate-compression", "--memory-ids", &memories],
        vec![
            "--kind",
            "episode-compression",
            "--episode-ids",
            &episodes,
            "--scheduled-for",
            &later,
        ],
        vec![
            "--kind",
            "expired-principle-review",
            "--principle-id",
            &principle,
        ],
    ] {
        let out = h.cli(&[&["schedule"][..], &args[..]].concat()).await;
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    assert_eq!(h.count_state("pending").await, 3);
    for state in ["in_progress", "in-progress"] {
        let out = h.cli(&["jobs", "list", "--state", state]).await;
        assert!(out.status.success(), "--state {state}: {out:?}");
    }
    for flag in ["--stale-after", "--reconcile-stale-after"] {
        let out = h.cli(&["reconcile", flag, "1h"]).await;
        assert!(out.status.success(), "reconcile {flag}: {out:?}");
    }
}
