//! The attestation audit on a job's detail page (issue 14, migration 0005): every field the
//! signature covers, the key and the signature, shown exactly as stored (escaped, never
//! markup), and readable on a phone. A real chromium against a real `decay-worker dashboard`.

use std::sync::Arc;

use chrono::Utc;
use decay_worker::decay::attestation::verifying_key_hex;
use decay_worker::runner::RunOutcome;
use sqlx::PgPool;

use crate::testkit::attest::{
    KEY_ID, SEED, alpha_beta_backend, replay_digest, sign_for, temp_json,
};
use crate::testkit::browser::{Browser, spawn_dashboard};
use crate::testkit::harness::Harness;
use crate::testkit::*;

/// A model name that is markup: signed as it is, it must show as text.
const MODEL: &str = r#"replay<b id="injected">&"'model"#;

/// The phone the page must stay readable on (CSS pixels).
const PHONE: (u32, u32) = (390, 844);

#[sqlx::test(migrations = "./migrations")]
async fn an_attested_jobs_detail_shows_its_whole_attestation(pool: PgPool) {
    let h = Harness::new(pool).await;
    let store = &h.store;
    let (id, _, _) = alpha_beta_llm_job(store).await;
    let digest = replay_digest();
    let backend = Arc::new(alpha_beta_backend(&id, MODEL));
    let env = sign_for(&id, MODEL, &digest);
    let out = runner_with(store, runner_cfg(), backend)
        .run_specific_job_with_attestation(&id, Some(&temp_json(&env)))
        .await
        .unwrap();
    assert!(matches!(out, RunOutcome::Completed { .. }), "{out:?}");
    let plain = candidate_job(store, Utc::now()).await;
    runner(store).run_specific_job(&plain).await.unwrap();

    let dash = spawn_dashboard(&h, None).await;
    let b = Browser::start().await;
    b.goto(&dash.url(&format!("/jobs/{id}"))).await;
    assert_eq!(b.text("#job-state").await, "completed");
    let shown = [
        ("key-id", KEY_ID.to_string()),
        ("verifying-key", verifying_key_hex(&SEED)),
        ("signature", env.signature_hex.clone()),
        ("signed-at", env.signed_at.clone()),
        ("model", MODEL.to_string()),
        ("template-digest", digest.clone()),
    ];
    for (field, want) in &shown {
        assert_eq!(
            b.text(&format!("#attestation-{field}")).await,
            *want,
            "attestation field {field}"
        );
    }
    assert_eq!(env.operator_verifying_key_hex, verifying_key_hex(&SEED));
    assert_eq!(b.count("#injected").await, 0, "the model name is text");
    assert!(b.text("#attestation-note").await.contains("re-verify"));

    // On a phone the signature wraps inside the page, in monospace.
    b.client.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    b.goto(&dash.url(&format!("/jobs/{id}"))).await;
    let layout = b
        .client
        .execute(
            "const s = document.getElementById('attestation-signature');
             const k = document.getElementById('attestation-key-id');
             document.getElementById('h-attestation').scrollIntoView();
             return [s.getBoundingClientRect().right, s.getBoundingClientRect().height,
                     k.getBoundingClientRect().height, document.documentElement.clientWidth,
                     getComputedStyle(s).fontFamily];",
            vec![],
        )
        .await
        .unwrap();
    let px = |i: usize| layout[i].as_f64().unwrap();
    let (right, height, one_line, width) = (px(0), px(1), px(2), px(3));
    assert!(width <= 640.0, "the phone layout applies: {width}px");
    assert!(
        right <= width,
        "the signature ends at {right}px of {width}px"
    );
    assert!(
        height > one_line,
        "128 hex digits wrap onto several lines: {height}px vs {one_line}px"
    );
    let font = layout[4].as_str().unwrap_or_default();
    assert!(font.contains("monospace"), "{font}");
    b.screenshot("job-attestation-phone").await;

    // A job without an attestation says so, with every field empty.
    b.goto(&dash.url(&format!("/jobs/{plain}"))).await;
    for (field, _) in &shown {
        assert_eq!(b.text(&format!("#attestation-{field}")).await, "–");
    }
    assert!(b.text("#attestation-note").await.contains("No complete"));
    b.close().await;
}
