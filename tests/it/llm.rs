//! LLM summaries: every refusal persists its invariant and detail and writes nothing; a valid
//! attestation completes with an auditable summary; the operator tooling reproduces the spec.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use decay_worker::decay::attestation::{
    AttestationEnvelope, TrustPolicy, TrustedKeyEntry, TrustedKeys, sign_envelope,
    verifying_key_hex,
};
use decay_worker::decay::{JobKind, SummaryMethod};
use decay_worker::ids::{DecayJobId, MemoryId};
use decay_worker::llm::{
    ReplayBackend, ReplayEntry, ReplayFixture, SummaryRequest, SummaryResponse,
};
use decay_worker::runner::RunOutcome;
use decay_worker::store::Store;
use sqlx::PgPool;
use tempfile::TempPath;

use crate::testkit::attest::{
    SEED, attest_sign_args, place_envelope, replay_digest, schedule_llm_args, sign_for, temp_file,
    temp_json, trusted_keys_file,
};
use crate::testkit::harness::{Harness, wait_until};
use crate::testkit::*;

const MODEL: &str = "claude-sonnet-4-7@1";

/// An envelope written to a temporary file, removed when the path drops.
fn write_env(env: &AttestationEnvelope) -> TempPath {
    temp_json(env)
}

/// The test operator's envelope for `job`, pinning the replay model and template.
fn signed(job: &DecayJobId) -> AttestationEnvelope {
    sign_for(job, MODEL, &replay_digest())
}

fn request(job: &DecayJobId, claims: &[&str]) -> SummaryRequest {
    SummaryRequest {
        model_name: MODEL.into(),
        prompt_template_blake3: replay_digest(),
        source_claims: claims.iter().map(|c| c.to_string()).collect(),
        max_output_bytes: Some(4096),
        decay_job_id: Some(job.to_string()),
    }
}

fn fixture(entries: Vec<(SummaryRequest, &str, &str)>) -> ReplayFixture {
    ReplayFixture {
        entries: entries
            .into_iter()
            .map(|(request, claim, echoed)| ReplayEntry {
                request,
                response: SummaryResponse {
                    claim: claim.into(),
                    token_usage: None,
                    model_name_echoed: echoed.into(),
                },
            })
            .collect(),
    }
}

async fn assert_refused(
    (store, pool): (&Store, &PgPool),
    out: RunOutcome,
    id: &DecayJobId,
    code: &str,
    detail: &str,
) {
    let RunOutcome::Failed { code: c, reason } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(c.as_str(), code, "{reason}");
    assert!(reason.contains(detail), "`{reason}` lacks `{detail}`");
    let row = store.read_job(id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert_eq!(row.failure_code.as_deref(), Some(code));
    assert!(row.state_reason.as_deref().unwrap().contains(detail));
    assert_eq!(count_summaries(pool, id).await, 0);
    assert_eq!(count_edges(pool, id).await, 0);
}

const REJECTED: &str = "decay.llm_summary.attestation_rejected";
const BACKEND: &str = "decay.llm_summary.backend_call_failed";

/// An envelope mutation and the detail its refusal must carry.
type Case = (&'static str, fn(&mut AttestationEnvelope), &'static str);

#[sqlx::test(migrations = "./migrations")]
async fn every_attestation_refusal_is_recorded_and_writes_nothing(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let backend = Arc::new(ReplayBackend::from_fixture(fixture(vec![])).unwrap());
    let r = runner_with(&store, runner_cfg(), backend.clone());
    let now = Utc::now();

    // No attestation at all.
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let out = r.run_specific_job(&id).await.unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        "decay.llm_summary.requires_operator_attestation",
        "operator attestation is required",
    )
    .await;

    // Unreadable envelopes.
    let scratch = tempfile::tempdir().unwrap();
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let missing = scratch.path().join("missing.json");
    let out = r
        .run_specific_job_with_attestation(&id, Some(&missing))
        .await
        .unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        REJECTED,
        &format!("envelope `{}` not found", missing.display()),
    )
    .await;
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let garbage = temp_file("{\"schema_version\": 70000}");
    let out = r
        .run_specific_job_with_attestation(&id, Some(&garbage))
        .await
        .unwrap();
    assert_refused((&store, &pool), out, &id, REJECTED, "is not valid JSON").await;

    let cases: Vec<Case> = vec![
        (
            "schema",
            |e| e.schema_version = 2,
            "schema_version 2 (expected 1)",
        ),
        (
            "purpose",
            |e| e.purpose = "x".into(),
            "purpose `x` (expected `cortex.decay.llm_summary`)",
        ),
        (
            "job",
            |e| e.decay_job_id = "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            "decay_job_id `dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV` does not match job",
        ),
        (
            "model",
            |e| e.model_name = " ".into(),
            "model_name must be non-empty",
        ),
        (
            "prefix",
            |e| e.prompt_template_blake3 = "sha256:ab".into(),
            "prompt_template_blake3 must use the `blake3:` prefix",
        ),
        (
            "key odd",
            |e| e.operator_verifying_key_hex.push('a'),
            "operator_verifying_key_hex malformed: odd hex length 65",
        ),
        (
            "key case",
            |e| e.operator_verifying_key_hex = e.operator_verifying_key_hex.to_uppercase(),
            "operator_verifying_key_hex malformed: invalid hex byte at offset",
        ),
        (
            "key len",
            |e| e.operator_verifying_key_hex.truncate(62),
            "operator_verifying_key_hex must decode to 32 bytes; got 31",
        ),
        (
            "sig len",
            |e| e.signature_hex.truncate(126),
            "signature_hex must decode to 64 bytes; got 63",
        ),
        (
            "sig hex",
            |e| e.signature_hex.replace_range(0..1, "Z"),
            "signature_hex malformed: invalid hex byte at offset 0",
        ),
        (
            "tampered",
            |e| e.model_name = "gpt-evil".into(),
            "Ed25519 signature did not verify under the declared operator key",
        ),
    ];
    for (name, mutate, detail) in cases {
        let (id, _, _) = alpha_beta_llm_job(&store).await;
        let mut env = signed(&id);
        mutate(&mut env);
        let path = write_env(&env);
        let out = r
            .run_specific_job_with_attestation(&id, Some(&path))
            .await
            .unwrap();
        assert!(
            matches!(out, RunOutcome::Failed { .. }),
            "case {name}: {out:?}"
        );
        assert_refused((&store, &pool), out, &id, REJECTED, detail).await;
    }

    // Ours: the full digest form, signed_at freshness, the trusted-key list.
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let env = sign_envelope(&SEED, "k1", &now.to_rfc3339(), &id, MODEL, "blake3:ab");
    let out = r
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        REJECTED,
        "must be `blake3:` followed by 64 lowercase hex digits",
    )
    .await;

    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let future = (now + chrono::Duration::hours(1)).to_rfc3339();
    let env = sign_envelope(&SEED, "k1", &future, &id, MODEL, &replay_digest());
    let out = r
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    assert_refused((&store, &pool), out, &id, REJECTED, "in the future").await;

    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let env = sign_envelope(&SEED, "k1", "yesterday", &id, MODEL, &replay_digest());
    let out = r
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        REJECTED,
        "is not an RFC 3339 timestamp",
    )
    .await;

    let strict = TrustPolicy {
        trusted_keys: Some(
            TrustedKeys::from_entries([TrustedKeyEntry {
                key_id: "k2".into(),
                verifying_key_hex: verifying_key_hex(&[7u8; 32]),
            }])
            .unwrap(),
        ),
        max_age: Some(chrono::Duration::minutes(10)),
        ..TrustPolicy::default()
    };
    let rs =
        decay_worker::runner::Runner::new(store.clone(), runner_cfg(), backend.clone(), strict);
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let out = rs
        .run_specific_job_with_attestation(&id, Some(&write_env(&signed(&id))))
        .await
        .unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        REJECTED,
        "operator_key_id `k1` is not a trusted operator key",
    )
    .await;
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let env = sign_envelope(&SEED, "k2", &now.to_rfc3339(), &id, MODEL, &replay_digest());
    let out = rs
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        REJECTED,
        "does not match the trusted key for operator_key_id `k2`",
    )
    .await;
    let (id, _, _) = alpha_beta_llm_job(&store).await;
    let old = (now - chrono::Duration::hours(2)).to_rfc3339();
    let env = sign_envelope(&[7u8; 32], "k2", &old, &id, MODEL, &replay_digest());
    let out = rs
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    assert_refused((&store, &pool), out, &id, REJECTED, "old (max age 600s)").await;

    // The attestation is checked before the sources: a bad envelope wins over a missing source.
    let ghost = MemoryId::new();
    let id = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::LlmSummary,
        vec![ghost.to_string()],
        now,
    )
    .await;
    let mut env = signed(&id);
    env.purpose = "nope".into();
    let out = r
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    assert_refused((&store, &pool), out, &id, REJECTED, "purpose `nope`").await;
    let id = job_at(
        &store,
        JobKind::CandidateCompression,
        SummaryMethod::LlmSummary,
        vec![ghost.to_string()],
        now,
    )
    .await;
    let out = r
        .run_specific_job_with_attestation(&id, Some(&write_env(&signed(&id))))
        .await
        .unwrap();
    assert_refused(
        (&store, &pool),
        out,
        &id,
        "decay.compress.source_missing",
        &format!("memory {ghost} not found"),
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn every_backend_refusal_is_recorded_and_writes_nothing(pool: PgPool) {
    let store = Store::from_pool(pool.clone());

    let (miss, _, _) = alpha_beta_llm_job(&store).await;
    let (echo, _, _) = alpha_beta_llm_job(&store).await;
    let (empty, _, _) = alpha_beta_llm_job(&store).await;
    let (big, _, _) = alpha_beta_llm_job(&store).await;
    let huge = "x".repeat(4097);
    let fx = fixture(vec![
        (
            request(&echo, &["alpha", "beta"]),
            "fine",
            "some-other-model",
        ),
        (request(&empty, &["alpha", "beta"]), "   ", MODEL),
        (request(&big, &["alpha", "beta"]), &huge, MODEL),
    ]);
    let r = runner_with(
        &store,
        runner_cfg(),
        Arc::new(ReplayBackend::from_fixture(fx).unwrap()),
    );
    for (id, detail) in [
        (miss, "summary_backend_not_configured"),
        (
            echo,
            "model mismatch: backend echoed model_name=`some-other-model` but operator attestation pinned model_name=`claude-sonnet-4-7@1`",
        ),
        (empty, "backend produced an empty summary claim"),
        (
            big,
            "backend produced a summary claim of 4097 bytes (limit 4096)",
        ),
    ] {
        let out = r
            .run_specific_job_with_attestation(&id, Some(&write_env(&signed(&id))))
            .await
            .unwrap();
        assert_refused((&store, &pool), out, &id, BACKEND, detail).await;
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn attested_llm_summary_completes_with_an_audit_trail(pool: PgPool) {
    let store = Store::from_pool(pool.clone());

    let (id, a, b) = alpha_beta_llm_job(&store).await;
    let fx = fixture(vec![(
        request(&id, &["alpha", "beta"]),
        "Alpha and beta, summarised.",
        MODEL,
    )]);
    let r = runner_with(
        &store,
        runner_cfg(),
        Arc::new(ReplayBackend::from_fixture(fx).unwrap()),
    );
    let env = signed(&id);
    let out = r
        .run_specific_job_with_attestation(&id, Some(&write_env(&env)))
        .await
        .unwrap();
    let RunOutcome::Completed {
        result_memory_id: Some(mem),
    } = out
    else {
        panic!("{out:?}")
    };
    let m = read_memory(&pool, &mem).await.unwrap();
    assert_eq!(m.claim, "Alpha and beta, summarised.");
    assert_eq!(
        m.applies_when_json,
        serde_json::json!({"summary_of_memories": [a.to_string(), b.to_string()], "llm_summary": {"model_name": MODEL}})
    );
    assert!((m.confidence - 0.7).abs() < 1e-9);
    assert_eq!(m.authority, "agent");
    let row = store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.attestation_key_id.as_deref(), Some("k1"));
    assert_eq!(count_edges(&pool, &id).await, 2);
}

async fn cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_decay-worker"))
        .args(args)
        .output()
        .await
        .unwrap()
}

/// The CLI signs exactly what the library signs (whose signature reproduces the spec's vector,
/// `decay::attestation` tests). The vector's own digest, `blake3:ab`, is one `attest sign`
/// refuses (issue 16: no envelope the workers would refuse), so a full digest stands in here.
#[tokio::test]
async fn attest_sign_signs_what_the_library_signs() {
    let key = temp_file(format!(
        "{{\"key_id\":\"k1\",\"secret_seed_hex\":\"{}\"}}",
        "2a".repeat(32)
    ));
    let job = "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let digest = format!("blake3:{}", "ab".repeat(32));
    let signed_at = "2026-05-13T12:00:00+00:00";
    let out = cli(&attest_sign_args(
        &key,
        "m@1",
        &digest,
        &["--job-id", job, "--signed-at", signed_at],
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        env["operator_verifying_key_hex"],
        "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61"
    );
    let expected = sign_envelope(
        &SEED,
        "k1",
        signed_at,
        &DecayJobId::parse(job).unwrap(),
        "m@1",
        &digest,
    );
    assert_eq!(env, serde_json::to_value(&expected).unwrap());
    // The spec vector's short digest is refused, as `schedule` refuses its envelope.
    let refused = cli(&attest_sign_args(
        &key,
        "m@1",
        "blake3:ab",
        &["--job-id", job],
    ))
    .await;
    assert_eq!(refused.status.code(), Some(2));
}

#[tokio::test]
async fn attest_keygen_writes_a_private_key_file_once() {
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("op.json");
    let out = cli(&[
        "attest",
        "keygen",
        "--key-id",
        "ops-1",
        "--out",
        key.to_str().unwrap(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["key_id"], "ops-1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(file["secret_seed_hex"].as_str().unwrap().len(), 64);
    let again = cli(&[
        "attest",
        "keygen",
        "--key-id",
        "ops-1",
        "--out",
        key.to_str().unwrap(),
    ])
    .await;
    assert_eq!(again.status.code(), Some(2), "refuses to overwrite a key");
}

#[sqlx::test(migrations = "./migrations")]
async fn llm_jobs_through_the_broker(pool: PgPool) {
    let h = Harness::new(pool).await;
    let (good, _, _) = alpha_beta_llm_job(&h.store).await;
    let (bad, _, _) = alpha_beta_llm_job(&h.store).await;
    let (none, _, _) = alpha_beta_llm_job(&h.store).await;
    let fx = fixture(vec![(
        request(&good, &["alpha", "beta"]),
        "Both, briefly.",
        MODEL,
    )]);
    let fixture_path = temp_json(&fx);
    let dir = tempfile::tempdir().unwrap();
    place_envelope(dir.path(), &signed(&good));
    let mut tampered = signed(&bad);
    tampered.model_name = "another-model".into();
    place_envelope(dir.path(), &tampered);
    let keys = trusted_keys_file(h.scratch());
    let mut w = h.spawn_worker(
        "w-llm",
        &[
            "--trusted-operator-keys",
            keys.to_str().unwrap(),
            "--attestation-dir",
            dir.path().to_str().unwrap(),
            "--summary-backend",
            "replay",
            "--summary-fixture",
            fixture_path.to_str().unwrap(),
        ],
    );
    for id in [&good, &bad, &none] {
        h.publish(id).await;
    }
    wait_until(
        Duration::from_secs(60),
        "three LLM jobs settled",
        || async { h.count_state("completed").await + h.count_state("failed").await == 3 },
    )
    .await;
    let g = h.store.read_job(&good).await.unwrap().unwrap();
    assert_eq!(g.state, "completed");
    assert_eq!(g.attestation_key_id.as_deref(), Some("k1"));
    let summary = MemoryId::parse(g.result_memory_id.as_deref().unwrap()).unwrap();
    let m = read_memory(&h.pool, &summary).await.unwrap();
    assert_eq!(m.claim, "Both, briefly.");
    assert_eq!(m.applies_when_json["llm_summary"]["model_name"], MODEL);
    let b = h.store.read_job(&bad).await.unwrap().unwrap();
    assert_eq!(b.failure_code.as_deref(), Some(REJECTED));
    assert!(
        b.state_reason
            .unwrap()
            .contains("Ed25519 signature did not verify")
    );
    let n = h.store.read_job(&none).await.unwrap().unwrap();
    assert_eq!(
        n.failure_code.as_deref(),
        Some("decay.llm_summary.requires_operator_attestation")
    );
    assert_eq!(w.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0, "every LLM message was acked");
}

#[sqlx::test(migrations = "./migrations")]
async fn schedule_verifies_the_envelope_before_inserting(pool: PgPool) {
    let h = Harness::new(pool).await;
    let m = memory(&h.store, "alpha", 0.9, "user").await.to_string();
    let id = DecayJobId::new();
    let env_path = write_env(&signed(&id));
    let dir = tempfile::tempdir().unwrap();
    let keys = trusted_keys_file(h.scratch());
    let out = h
        .cli(&schedule_llm_args(
            &m,
            &env_path,
            &[
                "--trusted-operator-keys",
                keys.to_str().unwrap(),
                "--attestation-dir",
                dir.path().to_str().unwrap(),
                "--json",
            ],
        ))
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["job_id"],
        id.to_string(),
        "the job takes the envelope's id"
    );
    assert_eq!(v["summary_method"], "llm_summary");
    assert!(
        dir.path().join(format!("{id}.json")).exists(),
        "envelope copied for the workers"
    );

    let other = DecayJobId::new();
    let mut env = signed(&other);
    env.model_name = "tampered".into();
    let tampered = write_env(&env);
    let out = h
        .cli(&schedule_llm_args(
            &m,
            &tampered,
            &["--trusted-operator-keys", keys.to_str().unwrap()],
        ))
        .await;
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("decay.llm_summary.attestation_rejected: Ed25519 signature did not verify"),
        "{err}"
    );
    assert!(
        h.store.read_job(&other).await.unwrap().is_none(),
        "nothing inserted"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_killed_worker_s_llm_claims_are_recovered_after_their_lease(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (id, _, _) = alpha_beta_llm_job(&h.store).await;
        place_envelope(dir.path(), &signed(&id));
        entries.push((request(&id, &["alpha", "beta"]), "summary", MODEL));
        ids.push(id);
    }
    let fixture_path = temp_json(&fixture(entries));
    let keys = trusted_keys_file(h.scratch());
    let args = [
        "--trusted-operator-keys",
        keys.to_str().unwrap(),
        "--attestation-dir",
        dir.path().to_str().unwrap(),
        "--summary-backend",
        "replay",
        "--summary-fixture",
        fixture_path.to_str().unwrap(),
        "--concurrency",
        "3",
    ];
    // Block the settles (they need a lock on the source memories) so claims are in flight.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM memories FOR UPDATE")
        .fetch_all(&mut *blocker)
        .await
        .unwrap();
    let mut doomed = h.spawn_worker("w-llm-doomed", &args);
    for id in &ids {
        h.publish(id).await;
    }
    wait_until(
        Duration::from_secs(60),
        "three LLM jobs claimed",
        || async { h.count_state("in_progress").await == 3 },
    )
    .await;
    h.kill_hard(&mut doomed).await;
    blocker.rollback().await.unwrap();
    let mut survivor = h.spawn_worker("w-llm-survivor", &args);
    wait_until(
        Duration::from_secs(60),
        "all LLM jobs completed",
        || async { h.count_state("completed").await == 6 },
    )
    .await;
    assert_eq!(h.assert_exactly_one_summary_per_job().await, 6);
    let recovered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM decay_jobs WHERE attempts = 2 AND claimed_by = 'w-llm-survivor'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        recovered, 3,
        "the dead worker's three claims were recovered after their lease"
    );
    assert!(h.log_of("w-llm-survivor").contains("stage=\"recover\""));
    assert_eq!(survivor.terminate().await, Some(0));
    assert_eq!(h.left_in(&h.base).await, 0);
}
