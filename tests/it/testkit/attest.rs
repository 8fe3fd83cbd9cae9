//! The test operator: one Ed25519 key, envelopes signed with it, and the files a runner or a
//! worker reads them from. Every file lives in a temporary directory or is a temporary file,
//! removed when the test drops it.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use decay_worker::decay::attestation::{
    AttestationEnvelope, TrustPolicy, TrustedKeyEntry, TrustedKeys, TrustedKeysFile,
    prompt_template_digest, sign_envelope, verifying_key_hex,
};
use decay_worker::ids::DecayJobId;
use decay_worker::llm::{
    ReplayBackend, ReplayEntry, ReplayFixture, SummaryRequest, SummaryResponse,
};
use serde::Serialize;
use tempfile::{NamedTempFile, TempPath};

/// The test operator's secret seed (the spec's vector key).
pub const SEED: [u8; 32] = [0x2a; 32];
/// The test operator's key id.
pub const KEY_ID: &str = "k1";

/// An envelope for `job` signed now by the test operator, pinning `model` and the prompt
/// template `digest`.
pub fn sign_for(job: &DecayJobId, model: &str, digest: &str) -> AttestationEnvelope {
    sign_envelope(&SEED, KEY_ID, &Utc::now().to_rfc3339(), job, model, digest)
}

/// The digest of the prompt template the replay fixtures pin.
pub fn replay_digest() -> String {
    prompt_template_digest(b"Summarise these claims faithfully:\n{claims}")
}

/// A replay backend that answers the one summary of the claims "alpha" and "beta" for `job`
/// under `model` and the [`replay_digest`] template with "Alpha and beta.", echoing `model`.
pub fn alpha_beta_backend(job: &DecayJobId, model: &str) -> ReplayBackend {
    let fixture = ReplayFixture {
        entries: vec![ReplayEntry {
            request: SummaryRequest {
                model_name: model.into(),
                prompt_template_blake3: replay_digest(),
                source_claims: vec!["alpha".into(), "beta".into()],
                max_output_bytes: Some(4096),
                decay_job_id: Some(job.to_string()),
            },
            response: SummaryResponse {
                claim: "Alpha and beta.".into(),
                token_usage: None,
                model_name_echoed: model.into(),
            },
        }],
    };
    ReplayBackend::from_fixture(fixture).unwrap()
}

/// The arguments of `decay-worker schedule` for an unpublished LLM compression of `memory`
/// attested by the envelope file `envelope`, followed by `extra` (keys, `--json`, opt-outs).
pub fn schedule_llm_args<'a>(
    memory: &'a str,
    envelope: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "schedule",
        "--kind",
        "candidate-compression",
        "--memory-ids",
        memory,
        "--summary-method",
        "llm",
        "--operator-attestation",
        envelope.to_str().unwrap(),
        "--no-publish",
    ];
    args.extend_from_slice(extra);
    args
}

/// The arguments of `decay-worker run` for `job` attested by the envelope file `envelope`,
/// followed by `extra` (opt-outs).
pub fn run_attested_args<'a>(job: &'a str, envelope: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let envelope = envelope.to_str().unwrap();
    let mut args = vec!["run", "--job-id", job, "--operator-attestation", envelope];
    args.extend_from_slice(extra);
    args
}

/// The arguments of `decay-worker attest sign` with the key file `key`, pinning `model` and the
/// template digest `digest` (passed as given, however malformed), followed by `extra`
/// (`--job-id`, `--signed-at`).
pub fn attest_sign_args<'a>(
    key: &'a Path,
    model: &'a str,
    digest: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "attest",
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--model",
        model,
        "--prompt-template-blake3",
        digest,
    ];
    args.extend_from_slice(extra);
    args
}

/// A new temporary file holding `contents`, removed when the returned path drops.
pub fn temp_file(contents: impl AsRef<[u8]>) -> TempPath {
    let mut f = NamedTempFile::new().unwrap();
    f.write_all(contents.as_ref()).unwrap();
    f.into_temp_path()
}

/// A new temporary file holding `value` as JSON, removed when the returned path drops.
pub fn temp_json(value: &impl Serialize) -> TempPath {
    temp_file(serde_json::to_vec(value).unwrap())
}

/// Put an envelope where a worker's `--attestation-dir` looks for it: `<dir>/<job_id>.json`.
pub fn place_envelope(dir: &Path, env: &AttestationEnvelope) {
    std::fs::write(
        dir.join(format!("{}.json", env.decay_job_id)),
        serde_json::to_vec(env).unwrap(),
    )
    .unwrap();
}

/// A trusted-keys file in `dir` listing only the test operator's key.
pub fn trusted_keys_file(dir: &Path) -> PathBuf {
    let path = dir.join("trusted-keys.json");
    let file = TrustedKeysFile {
        keys: vec![TrustedKeyEntry {
            key_id: KEY_ID.into(),
            verifying_key_hex: verifying_key_hex(&SEED),
        }],
    };
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    path
}

/// The trust policy of an in-process runner: only the test operator's key is trusted (the
/// default policy, with no list, refuses every envelope).
pub fn trust_policy() -> TrustPolicy {
    TrustPolicy {
        trusted_keys: Some(
            TrustedKeys::from_entries([TrustedKeyEntry {
                key_id: KEY_ID.into(),
                verifying_key_hex: verifying_key_hex(&SEED),
            }])
            .unwrap(),
        ),
        ..TrustPolicy::default()
    }
}
