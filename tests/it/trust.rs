//! Attestation trust (issue 11 items 4-6): fail closed without trusted operator keys, the
//! demo opt-out, weak keys, and an audit record that re-verifies on its own.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use decay_worker::decay::attestation::{
    AttestationEnvelope, prompt_template_digest, sign_envelope, verify,
};
use decay_worker::ids::DecayJobId;
use decay_worker::runner::RunOutcome;
use decay_worker::store::Store;
use sqlx::PgPool;

use crate::testkit::attest::{
    alpha_beta_backend, place_envelope, replay_digest, run_attested_args, schedule_llm_args,
    sign_for, temp_json, trust_policy,
};
use crate::testkit::harness::{Harness, wait_until};
use crate::testkit::*;

const MODEL: &str = "claude-sonnet-4-7@1";
const REJECTED: &str = "decay.llm_summary.attestation_rejected";
const NO_KEYS: &str = "no trusted operator keys are configured";

/// What an attacker does: mint a key and sign a perfectly valid envelope with it.
fn minted(job: &DecayJobId) -> AttestationEnvelope {
    let digest = prompt_template_digest(b"anything");
    sign_envelope(
        &[5u8; 32],
        "attacker",
        &Utc::now().to_rfc3339(),
        job,
        MODEL,
        &digest,
    )
}

#[sqlx::test(migrations = "./migrations")]
async fn without_trusted_keys_run_refuses_llm_jobs_unless_opted_out(pool: PgPool) {
    let h = Harness::new(pool).await;
    let id = alpha_beta_llm_job(&h.store).await.0;
    let env = temp_json(&minted(&id));
    let out = h.cli(&run_attested_args(&id.to_string(), &env, &[])).await;
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(REJECTED) && err.contains(NO_KEYS), "{err}");
    let row = h.store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert_eq!(row.failure_code.as_deref(), Some(REJECTED));
    assert!(row.state_reason.unwrap().contains(NO_KEYS));
    assert_eq!(row.attestation_key_id, None);

    // The documented opt-out believes the envelope's own key: the attestation passes and the
    // job goes on to the (unconfigured) backend.
    let id = alpha_beta_llm_job(&h.store).await.0;
    let env = temp_json(&minted(&id));
    let out = h
        .cli(&run_attested_args(
            &id.to_string(),
            &env,
            &["--allow-untrusted-attestations"],
        ))
        .await;
    assert_eq!(out.status.code(), Some(7));
    let row = h.store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(
        row.failure_code.as_deref(),
        Some("decay.llm_summary.backend_call_failed"),
        "{:?}",
        row.state_reason
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn without_trusted_keys_a_worker_refuses_llm_jobs(pool: PgPool) {
    let h = Harness::new(pool).await;
    let id = alpha_beta_llm_job(&h.store).await.0;
    let dir = tempfile::tempdir().unwrap();
    place_envelope(dir.path(), &minted(&id));
    let mut w = h.spawn_worker(
        "w-untrusted",
        &["--attestation-dir", dir.path().to_str().unwrap()],
    );
    h.publish(&id).await;
    wait_until(Duration::from_secs(60), "the LLM job settled", || async {
        h.count_state("failed").await == 1
    })
    .await;
    let row = h.store.read_job(&id).await.unwrap().unwrap();
    assert_eq!(row.failure_code.as_deref(), Some(REJECTED));
    assert!(row.state_reason.unwrap().contains(NO_KEYS));
    assert_eq!(count_summaries(&h.pool, &id).await, 0);
    assert_eq!(w.terminate().await, Some(0));
}

#[sqlx::test(migrations = "./migrations")]
async fn without_trusted_keys_schedule_refuses_llm_jobs(pool: PgPool) {
    let h = Harness::new(pool).await;
    let m = memory(&h.store, "alpha", 0.9, "user").await.to_string();
    let id = DecayJobId::new();
    let env = temp_json(&minted(&id));
    let out = h.cli(&schedule_llm_args(&m, &env, &[])).await;
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(REJECTED) && err.contains(NO_KEYS), "{err}");
    assert!(
        h.store.read_job(&id).await.unwrap().is_none(),
        "nothing inserted"
    );

    let out = h
        .cli(&schedule_llm_args(
            &m,
            &env,
            &["--allow-untrusted-attestations"],
        ))
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.store.read_job(&id).await.unwrap().is_some());
}

#[sqlx::test(migrations = "./migrations")]
async fn the_stored_audit_record_re_verifies_the_signature(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let id = alpha_beta_llm_job(&store).await.0;
    let digest = replay_digest();
    let r = runner_with(
        &store,
        runner_cfg(),
        Arc::new(alpha_beta_backend(&id, MODEL)),
    );
    let env = sign_for(&id, MODEL, &digest);
    let out = r
        .run_specific_job_with_attestation(&id, Some(&temp_json(&env)))
        .await
        .unwrap();
    assert!(matches!(out, RunOutcome::Completed { .. }), "{out:?}");

    // Every field the signature covers is on the row, with the key and the signature.
    let audit = store.read_attestation(&id).await.unwrap().unwrap();
    assert_eq!(audit.key_id.as_deref(), Some(env.operator_key_id.as_str()));
    assert_eq!(
        audit.verifying_key_hex.as_deref(),
        Some(env.operator_verifying_key_hex.as_str())
    );
    assert_eq!(
        audit.signature_hex.as_deref(),
        Some(env.signature_hex.as_str())
    );
    assert_eq!(audit.signed_at.as_deref(), Some(env.signed_at.as_str()));
    assert_eq!(audit.model_name.as_deref(), Some(MODEL));
    assert_eq!(
        audit.prompt_template_blake3.as_deref(),
        Some(digest.as_str())
    );
    // Rebuilt from the row alone, the envelope verifies under today's trusted keys.
    let rebuilt = audit.envelope(&id).unwrap();
    assert_eq!(rebuilt, env);
    verify(&rebuilt, &id, &trust_policy(), Utc::now()).unwrap();
    // And the check is real: a tampered column no longer verifies.
    let mut tampered = audit.clone();
    tampered.model_name = Some("another-model".into());
    assert_eq!(
        verify(
            &tampered.envelope(&id).unwrap(),
            &id,
            &trust_policy(),
            Utc::now()
        )
        .unwrap_err()
        .to_string(),
        "Ed25519 signature did not verify under the declared operator key"
    );

    // `jobs show` prints the whole record, the signature included.
    let h = Harness::new(pool).await;
    let out = h.cli(&["jobs", "show", &id.to_string(), "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attestation"]["signature_hex"], env.signature_hex);
    assert_eq!(
        v["attestation"]["verifying_key_hex"],
        env.operator_verifying_key_hex
    );
    assert_eq!(v["attestation"]["signed_at"], env.signed_at);
    assert_eq!(v["attestation"]["model_name"], MODEL);
    assert_eq!(v["attestation"]["prompt_template_blake3"], digest);
    let out = h.cli(&["jobs", "show", &id.to_string()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("attestation.signature_hex") && l.ends_with(&env.signature_hex)),
        "{text}"
    );
}
