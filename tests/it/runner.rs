//! The runner contract (spec §4, DESIGN §3) against the real PostgreSQL. Each test gets its
//! own database from `#[sqlx::test]`.

use std::sync::Arc;
use std::time::Duration;

use decay_worker::decay::compress::{MemorySource, summarize_memories};
use decay_worker::decay::effect::Summary;
use decay_worker::decay::{Failure, Invariant, JobKind, JobStateKind, SummaryMethod};
use decay_worker::ids::{DecayJobId, MemoryId};
use decay_worker::llm::NoopBackend;
use decay_worker::runner::RunOutcome;
use decay_worker::store::{CancelOutcome, SettleEffect, SettleGuard, SettleOutcome};
use serde_json::json;
use sqlx::PgPool;

use crate::testkit::*;

/// The lease of the claims these tests take by hand (the runner's is `runner_cfg()`'s, 30 s).
const LEASE: Duration = Duration::from_secs(30);

/// A `failed` settle with this reason.
fn failed(reason: &str) -> SettleEffect {
    SettleEffect::Failed(Failure::new(Invariant::RunnerFailure, reason.into()))
}

/// The row as PostgreSQL stores it, including the physical version (`xmin`): equal before and
/// after means nothing was written.
async fn raw_row(pool: &PgPool, id: &DecayJobId) -> (String, String) {
    sqlx::query_as("SELECT row_to_json(d)::text, xmin::text FROM decay_jobs d WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn candidate_compression_completes_with_summary_and_edges(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let a = memory(&store, "alpha", 0.9, "user").await;
    let b = memory(&store, "beta", 0.6, "candidate").await;
    let c = memory(&store, "gamma", 0.8, "agent").await;
    let id = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![a.to_string(), b.to_string(), c.to_string()],
        t0(),
    )
    .await;

    let out = runner(&store).run_specific_job(&id).await.unwrap();
    let RunOutcome::Completed {
        result_memory_id: Some(mem),
    } = out
    else {
        panic!("unexpected {out:?}");
    };
    let row = store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "completed");
    assert_eq!(
        row.result_memory_id.as_deref(),
        Some(mem.to_string().as_str())
    );
    assert_eq!(
        row.updated_at,
        t0(),
        "one clock: the settle uses the store's clock"
    );
    assert_eq!(row.attempts, 1);
    assert!(row.state_reason.is_none() && row.failure_code.is_none());

    let m = read_memory(&pool, &mem).await.unwrap();
    assert_eq!(m.memory_type, "summary");
    assert_eq!(m.status, "candidate");
    assert_eq!(m.claim, "alpha | beta | gamma");
    assert!((m.confidence - 0.6).abs() < 1e-9);
    assert_eq!(m.authority, "candidate");
    assert_eq!(m.salience_json, json!({}));
    assert_eq!(m.does_not_apply_when_json, json!([]));
    assert_eq!(
        m.source_events_json,
        json!(["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"])
    );
    assert_eq!(m.domains_json, json!(["ops"]));
    assert_eq!(
        m.applies_when_json,
        json!({"summary_of_memories": [a.to_string(), b.to_string(), c.to_string()]})
    );
    assert_eq!(m.created_at, t0());
    let mut sources = vec![a.to_string(), b.to_string(), c.to_string()];
    sources.sort();
    assert_eq!(store.list_memory_sources_for(&mem).await.unwrap(), sources);
    assert_eq!(count_edges(&pool, &id).await, 3);
}

#[sqlx::test(migrations = "./migrations")]
async fn episode_compression_completes(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let e1 = episode(&store, "met the team", 0.9).await;
    let e2 = episode(&store, "shipped it", 0.4).await;
    let id = job_at(
        &store,
        JobKind::EpisodeCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![e1.to_string(), e2.to_string()],
        t0(),
    )
    .await;
    let out = runner(&store).run_specific_job(&id).await.unwrap();
    let RunOutcome::Completed {
        result_memory_id: Some(mem),
    } = out
    else {
        panic!("unexpected {out:?}");
    };
    let m = read_memory(&pool, &mem).await.unwrap();
    assert_eq!(m.claim, "met the team | shipped it");
    assert_eq!(m.authority, "derived");
    assert!((m.confidence - 0.4).abs() < 1e-9);
    assert_eq!(
        m.source_episodes_json,
        json!([e1.to_string(), e2.to_string()])
    );
    assert_eq!(store.list_episode_sources_for(&mem).await.unwrap().len(), 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn terminal_job_is_a_noop_and_row_is_untouched(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0()).await;
    let r = runner(&store);
    assert!(matches!(
        r.run_specific_job(&id).await.unwrap(),
        RunOutcome::Completed { .. }
    ));
    let before = raw_row(&pool, &id).await;
    clock.set(t0() + secs(60));
    let out = r.run_specific_job(&id).await.unwrap();
    assert_eq!(
        out,
        RunOutcome::AlreadyTerminal {
            state: JobStateKind::Completed
        }
    );
    assert_eq!(raw_row(&pool, &id).await, before);
    assert_eq!(count_summaries(&pool, &id).await, 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn live_claim_is_refused_with_its_lease(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0()).await;
    let claimed = store
        .claim_job(&id, LEASE, "other/1", 3)
        .await
        .unwrap()
        .unwrap();
    assert!(!claimed.recovered);
    let before = raw_row(&pool, &id).await;
    clock.set(t0() + secs(5));
    let out = runner(&store).run_specific_job(&id).await.unwrap();
    assert_eq!(
        out,
        RunOutcome::InProgress {
            lease_expires_at: t0() + secs(30)
        }
    );
    assert!(
        out.refusal(&id)
            .unwrap()
            .contains("is already in_progress; refusing to re-claim from another runner")
    );
    assert_eq!(raw_row(&pool, &id).await, before);
}

#[sqlx::test(migrations = "./migrations")]
async fn unknown_job_is_not_found(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let id = DecayJobId::new();
    let out = runner(&store).run_specific_job(&id).await.unwrap();
    assert_eq!(out, RunOutcome::NotFound);
    assert_eq!(
        out.refusal(&id).unwrap(),
        format!("decay job {id} not found")
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn missing_source_fails_with_invariant_and_writes_nothing(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let present = memory(&store, "here", 0.5, "user").await;
    let absent = MemoryId::new();
    let id = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![present.to_string(), absent.to_string()],
        t0(),
    )
    .await;
    let out = runner(&store).run_specific_job(&id).await.unwrap();
    let reason =
        format!("validation failed: decay.compress.source_missing: memory {absent} not found");
    assert_eq!(
        out,
        RunOutcome::Failed {
            code: Invariant::CompressSourceMissing,
            reason: reason.clone()
        }
    );
    let row = store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert_eq!(
        row.failure_code.as_deref(),
        Some("decay.compress.source_missing")
    );
    assert_eq!(row.state_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(count_summaries(&pool, &id).await, 0);
    assert_eq!(count_edges(&pool, &id).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn future_job_is_not_run_early(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0() + secs(10)).await;
    let r = runner(&store);
    assert!(r.run_next_pending_job().await.unwrap().is_none());
    assert_eq!(
        r.run_specific_job(&id).await.unwrap(),
        RunOutcome::NotDue {
            scheduled_for: t0() + secs(10)
        }
    );
    assert_eq!(store.read_job(&id).await.unwrap().unwrap().state, "pending");
    // The boundary is inclusive.
    clock.set(t0() + secs(10));
    let (ran, out) = r.run_next_pending_job().await.unwrap().unwrap();
    assert_eq!(ran, id);
    assert!(matches!(out, RunOutcome::Completed { .. }));
}

#[sqlx::test(migrations = "./migrations")]
async fn next_pending_takes_scheduled_for_then_id(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let late = candidate_job(&store, t0() - secs(5)).await;
    let early_a = candidate_job(&store, t0() - secs(10)).await;
    let early_b = candidate_job(&store, t0() - secs(10)).await;
    let (first_same, second_same) = if early_a.to_string() < early_b.to_string() {
        (early_a, early_b)
    } else {
        (early_b, early_a)
    };
    let r = runner(&store);
    let mut order = Vec::new();
    while let Some((id, out)) = r.run_next_pending_job().await.unwrap() {
        assert!(matches!(out, RunOutcome::Completed { .. }));
        order.push(id);
    }
    assert_eq!(order, vec![first_same, second_same, late]);
}

#[sqlx::test(migrations = "./migrations")]
async fn sixteen_concurrent_runs_claim_once(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0()).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let r = runner(&store);
        tasks.push(tokio::spawn(async move {
            r.run_specific_job(&id).await.unwrap()
        }));
    }
    let mut completed = 0;
    for t in tasks {
        match t.await.unwrap() {
            RunOutcome::Completed { .. } => completed += 1,
            RunOutcome::InProgress { .. } | RunOutcome::AlreadyTerminal { .. } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(completed, 1);
    let row = store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 1, "exactly one claim");
    assert_eq!(count_summaries(&pool, &id).await, 1);
    assert_eq!(count_edges(&pool, &id).await, 3);
}

#[sqlx::test(migrations = "./migrations")]
async fn expired_claim_is_recovered_exactly_once(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0()).await;
    // A runner claims and dies without settling.
    store
        .claim_job(&id, LEASE, "dead/1", 3)
        .await
        .unwrap()
        .unwrap();
    let r = runner(&store);
    clock.set(t0() + secs(29));
    assert!(matches!(
        r.run_specific_job(&id).await.unwrap(),
        RunOutcome::InProgress { .. }
    ));
    clock.set(t0() + secs(31));
    let out = r.run_specific_job(&id).await.unwrap();
    assert!(
        matches!(
            out,
            RunOutcome::Completed {
                result_memory_id: Some(_)
            }
        ),
        "{out:?}"
    );
    let row = store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(row.claimed_by.as_deref(), Some("test/1"));
    assert_eq!(count_summaries(&pool, &id).await, 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn attempts_exhausted_after_max_expired_claims(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0()).await;
    // max_attempts = 3 in runner_cfg(): three claims that each die.
    let mut now = t0();
    for _ in 0..3 {
        assert!(
            store
                .claim_job(&id, LEASE, "dead/1", 3)
                .await
                .unwrap()
                .is_some()
        );
        now += secs(31);
        clock.set(now);
    }
    let out = runner(&store).run_specific_job(&id).await.unwrap();
    let RunOutcome::Failed { code, reason } = out else {
        panic!("{out:?}")
    };
    assert_eq!(code.as_str(), "decay.runner.attempts_exhausted");
    assert!(reason.contains("claimed 3 times"), "{reason}");
    let row = store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert_eq!(
        row.failure_code.as_deref(),
        Some("decay.runner.attempts_exhausted")
    );
    assert_eq!(count_summaries(&pool, &id).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn settle_with_superseded_token_writes_nothing(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    let m = memory(&store, "x", 0.5, "user").await;
    let id = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![m.to_string()],
        t0(),
    )
    .await;
    let old = store
        .claim_job(&id, LEASE, "slow/1", 3)
        .await
        .unwrap()
        .unwrap();
    clock.set(t0() + secs(31));
    let new = store
        .claim_job(&id, LEASE, "fast/1", 3)
        .await
        .unwrap()
        .unwrap();
    assert!(new.recovered);
    assert_ne!(old.token, new.token);
    // The source as `memory()` stored it.
    let source = MemorySource {
        id: m,
        claim: "x".into(),
        source_episodes_json: json!([]),
        source_events_json: json!(["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"]),
        domains_json: json!(["ops"]),
        confidence: 0.5,
        authority: "user".into(),
    };
    let draft = summarize_memories(std::slice::from_ref(&source));
    let memory_id = MemoryId::new();
    let summary = SettleEffect::Summary {
        memory_id,
        summary: Box::new(Summary::of_memories(&[source], draft, None)),
    };
    clock.set(t0() + secs(40));
    let out = store
        .settle(&id, SettleGuard::Claim(old.token), &summary)
        .await
        .unwrap();
    assert_eq!(out, SettleOutcome::ClaimLost);
    assert!(read_memory(&pool, &memory_id).await.is_none());
    assert_eq!(count_edges(&pool, &id).await, 0);
    let lost = store
        .settle(&id, SettleGuard::Claim(old.token), &failed("y"))
        .await
        .unwrap();
    assert_eq!(lost, SettleOutcome::ClaimLost);
    // The current holder still settles.
    clock.set(t0() + secs(41));
    let out = store
        .settle(&id, SettleGuard::Claim(new.token), &summary)
        .await
        .unwrap();
    assert_eq!(out, SettleOutcome::Settled);
    assert_eq!(count_summaries(&pool, &id).await, 1);
    assert_eq!(count_edges(&pool, &id).await, 1);
    let row = read_memory(&pool, &memory_id).await.unwrap();
    assert_eq!(row.claim, "x");
    assert_eq!(row.created_at, t0() + secs(41));
}

#[sqlx::test(migrations = "./migrations")]
async fn cancel_stores_reason_and_beats_a_running_settle(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let pending = candidate_job(&store, t0()).await;
    assert_eq!(
        store.cancel_job(&pending, "not needed").await.unwrap(),
        CancelOutcome::Cancelled {
            from: JobStateKind::Pending
        }
    );
    let row = store.read_job(&pending).await.unwrap().unwrap();
    assert_eq!(row.cancel_reason.as_deref(), Some("not needed"));
    assert_eq!(
        store.cancel_job(&pending, "again").await.unwrap(),
        CancelOutcome::Terminal {
            state: JobStateKind::Cancelled
        }
    );
    assert_eq!(
        store.cancel_job(&DecayJobId::new(), "x").await.unwrap(),
        CancelOutcome::NotFound
    );
    // Cancel while a runner holds the claim: its settle then writes nothing.
    let running = candidate_job(&store, t0()).await;
    let claim = store
        .claim_job(&running, LEASE, "r/1", 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.cancel_job(&running, "operator stop").await.unwrap(),
        CancelOutcome::Cancelled {
            from: JobStateKind::InProgress
        }
    );
    assert_eq!(
        store
            .settle(&running, SettleGuard::Claim(claim.token), &failed("r"))
            .await
            .unwrap(),
        SettleOutcome::ClaimLost
    );
    assert_eq!(
        store.read_job(&running).await.unwrap().unwrap().state,
        "cancelled"
    );
    // And a cancelled job is a no-op for the runner.
    assert_eq!(
        runner(&store).run_specific_job(&running).await.unwrap(),
        RunOutcome::AlreadyTerminal {
            state: JobStateKind::Cancelled
        }
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn principle_review_completes_without_memory_or_fails_when_missing(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let p = principle(&store).await;
    let id = job_at(
        &store,
        JobKind::ExpiredPrincipleReview,
        SummaryMethod::None,
        vec![p.to_string()],
        t0(),
    )
    .await;
    assert_eq!(
        runner(&store).run_specific_job(&id).await.unwrap(),
        RunOutcome::Completed {
            result_memory_id: None
        }
    );
    let missing = decay_worker::ids::PrincipleId::new();
    let id = job_at(
        &store,
        JobKind::ExpiredPrincipleReview,
        SummaryMethod::None,
        vec![missing.to_string()],
        t0(),
    )
    .await;
    let out = runner(&store).run_specific_job(&id).await.unwrap();
    assert!(
        matches!(&out, RunOutcome::Failed { code, .. } if code.as_str() == "decay.compress.source_missing"),
        "{out:?}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn llm_job_without_attestation_fails_closed(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let m = memory(&store, "x", 0.5, "user").await;
    let id = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::LlmSummary,
        vec![m.to_string()],
        t0(),
    )
    .await;
    let r = runner_with(&store, runner_cfg(), Arc::new(NoopBackend));
    let out = r.run_specific_job(&id).await.unwrap();
    let RunOutcome::Failed { code, reason } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        code.as_str(),
        "decay.llm_summary.requires_operator_attestation"
    );
    assert!(reason.starts_with("invariant=decay.llm_summary.requires_operator_attestation"));
    assert_eq!(count_summaries(&pool, &id).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn malformed_row_is_failed_not_left_blocking(pool: PgPool) {
    let (store, clock) = frozen_store(&pool);
    // A row written around the store's validation (e.g. by an old producer).
    let id = DecayJobId::new();
    sqlx::query(
        "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state, scheduled_for,
             created_at, created_by, updated_at)
         VALUES ($1, 'candidate_compression', 'deterministic_concatenate', '[\"not-an-id\"]',
             'pending', $2, $2, 'operator:test', $2)",
    )
    .bind(id.to_string())
    .bind(t0())
    .execute(&pool)
    .await
    .unwrap();
    let behind = candidate_job(&store, t0() + secs(1)).await;
    let r = runner(&store);
    clock.set(t0() + secs(2));
    let (first, out) = r.run_next_pending_job().await.unwrap().unwrap();
    assert_eq!(first, id);
    let RunOutcome::Failed { code, reason } = out else {
        panic!("{out:?}")
    };
    assert_eq!(code.as_str(), "decay.job.malformed");
    assert!(
        reason.contains("row malformed: decay job id parse error"),
        "{reason}"
    );
    // The queue head is no longer blocked.
    let (second, out) = r.run_next_pending_job().await.unwrap().unwrap();
    assert_eq!(second, behind);
    assert!(matches!(out, RunOutcome::Completed { .. }));
}

#[sqlx::test(migrations = "./migrations")]
async fn heartbeat_extends_only_a_held_claim(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let id = candidate_job(&store, t0()).await;
    let c = store
        .claim_job(&id, LEASE, "r/1", 3)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .heartbeat(&id, c.token, Duration::from_secs(90))
            .await
            .unwrap()
    );
    assert_eq!(
        store.read_job(&id).await.unwrap().unwrap().lease_expires_at,
        Some(t0() + secs(90))
    );
    assert!(
        !store
            .heartbeat(&id, uuid::Uuid::new_v4(), Duration::from_secs(900))
            .await
            .unwrap()
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn insert_rejects_what_the_runner_could_not_convert(pool: PgPool) {
    let (store, _clock) = frozen_store(&pool);
    let m = memory(&store, "x", 0.5, "user").await.to_string();
    let mut job = decay_worker::store::NewJob::new(
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![m.clone(), m.clone()],
        t0(),
        "operator:test",
        t0(),
    );
    let err = |j: &decay_worker::store::NewJob| j.validate().unwrap_err().to_string();
    assert_eq!(
        err(&job),
        format!("validation failed: decay job source_ids_json must not contain duplicate id `{m}`")
    );
    job.source_ids_json = json!([]);
    assert_eq!(
        err(&job),
        "validation failed: decay job source_ids_json must contain at least one id"
    );
    job.source_ids_json = json!("x");
    assert_eq!(
        err(&job),
        "validation failed: decay job source_ids_json must be a JSON array"
    );
    job.source_ids_json = json!([1]);
    assert_eq!(
        err(&job),
        "validation failed: decay job source_ids_json entries must all be strings"
    );
    job.source_ids_json = json!(["not-an-id"]);
    assert!(err(&job).starts_with("validation failed: decay job id parse error"));
    job.summary_method = "none".into();
    assert_eq!(
        err(&job),
        "validation failed: decay job kind `candidate_compression` must carry a summary method (not 'none')"
    );
    job.kind = "expired_principle_review".into();
    job.summary_method = "llm_summary".into();
    assert_eq!(
        err(&job),
        "validation failed: expired_principle_review decay job must carry summary_method='none', got 'llm_summary'"
    );
    job.summary_method = "magic".into();
    assert_eq!(
        err(&job),
        "validation failed: invalid decay job summary method wire `magic`"
    );
    job.kind = "bogus".into();
    assert_eq!(
        err(&job),
        "validation failed: invalid decay job kind wire `bogus`"
    );
    job.created_by = "  ".into();
    assert_eq!(
        err(&job),
        "validation failed: decay job created_by must not be empty"
    );
    // A valid review job needs exactly one principle.
    let p = principle(&store).await.to_string();
    job.created_by = "operator:test".into();
    job.kind = "expired_principle_review".into();
    job.summary_method = "none".into();
    job.source_ids_json = json!([p.clone(), p]);
    assert!(err(&job).contains("expected exactly one source id, got 2"));
    // And a duplicate job id is refused by the database.
    job.source_ids_json = json!([principle(&store).await.to_string()]);
    store.insert_job(&job).await.unwrap();
    assert!(store.insert_job(&job).await.is_err());
}
