use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::decay::attestation::{
    TrustPolicy, TrustedKeyEntry, TrustedKeys, sign_envelope, verify, verifying_key_hex,
};

const MODEL: &str = "claude-sonnet-4-7@1";
const DIGEST: &str = "blake3:0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const JOB: &str = "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV";

fn full_request() -> SummaryRequest {
    SummaryRequest {
        model_name: MODEL.into(),
        prompt_template_blake3: DIGEST.into(),
        source_claims: vec!["alpha".into(), "beta".into()],
        max_output_bytes: Some(4096),
        decay_job_id: Some(JOB.into()),
    }
}

fn bare_request() -> SummaryRequest {
    SummaryRequest {
        max_output_bytes: None,
        decay_job_id: None,
        ..full_request()
    }
}

/// A unique scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("llm-test-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn response(claim: &str) -> SummaryResponse {
    SummaryResponse {
        claim: claim.into(),
        token_usage: Some(TokenUsage {
            prompt_tokens: 12,
            completion_tokens: 3,
        }),
        model_name_echoed: MODEL.into(),
    }
}

#[test]
fn request_hash_test_vectors() {
    assert_eq!(
        request_hash(&full_request()),
        "dfc1d59749571625c52b1dead13318c986f527e8660e69b06d1848b31a59e59f"
    );
    assert_eq!(
        request_hash(&bare_request()),
        "2676416f23added67412f8f9bff4a3f7bbf25119be9f8b43c460ee08e90bce25"
    );
}

#[test]
fn request_hash_changes_with_every_field_and_claim_order() {
    let base = request_hash(&full_request());
    let mut variants = Vec::new();
    let mut r = full_request();
    r.source_claims.reverse();
    variants.push(r);
    let mut r = full_request();
    r.source_claims.push("beta".into());
    variants.push(r);
    let mut r = full_request();
    r.model_name.push('x');
    variants.push(r);
    let mut r = full_request();
    r.prompt_template_blake3.push('0');
    variants.push(r);
    let mut r = full_request();
    r.max_output_bytes = Some(4095);
    variants.push(r);
    let mut r = full_request();
    r.decay_job_id = None;
    variants.push(r);
    for variant in variants {
        assert_ne!(request_hash(&variant), base, "{variant:?}");
    }
}

/// The hand-written encoding must equal serde_json's compact output for the same object.
#[test]
fn request_hash_json_matches_serde_json() {
    #[derive(Serialize)]
    struct Hashed<'a> {
        domain: &'a str,
        model_name: &'a str,
        prompt_template_blake3: &'a str,
        source_claims: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        max_output_bytes: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        decay_job_id: Option<&'a str>,
    }
    let awkward: Vec<String> = vec![
        "quote \" backslash \\ slash /".into(),
        "controls \u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} del \u{7f}".into(),
        "non-ascii é ü 漢字 🦀 \u{2028}\u{2029}".into(),
        String::new(),
    ];
    for request in [
        full_request(),
        bare_request(),
        SummaryRequest {
            source_claims: awkward.clone(),
            model_name: "m\"\n".into(),
            ..full_request()
        },
        SummaryRequest {
            source_claims: vec![],
            max_output_bytes: Some(0),
            ..bare_request()
        },
    ] {
        let expected = serde_json::to_vec(&Hashed {
            domain: SUMMARY_REQUEST_HASH_DOMAIN,
            model_name: &request.model_name,
            prompt_template_blake3: &request.prompt_template_blake3,
            source_claims: &request.source_claims,
            max_output_bytes: request.max_output_bytes,
            decay_job_id: request.decay_job_id.as_deref(),
        })
        .unwrap();
        assert_eq!(
            request_hash(&request),
            blake3::hash(&expected).to_hex().to_string()
        );
    }
}

#[test]
fn request_json_omits_absent_optionals() {
    let json = serde_json::to_string(&bare_request()).unwrap();
    assert!(!json.contains("max_output_bytes"));
    assert!(!json.contains("decay_job_id"));
    let back: SummaryRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, bare_request());
    let json = serde_json::to_string(&SummaryResponse {
        token_usage: None,
        ..response("x")
    })
    .unwrap();
    assert_eq!(
        json,
        r#"{"claim":"x","model_name_echoed":"claude-sonnet-4-7@1"}"#
    );
}

#[test]
fn error_display_is_exact() {
    let cases = [
        (
            SummaryError::BackendNotConfigured,
            "summary_backend_not_configured",
        ),
        (
            SummaryError::ModelNotInAllowlist("m".into()),
            "summary_model_not_in_allowlist: m",
        ),
        (
            SummaryError::PromptTemplateMismatch("d".into()),
            "summary_prompt_template_mismatch: d",
        ),
        (
            SummaryError::CallFailed("timeout".into()),
            "summary_call_failed: timeout",
        ),
        (
            SummaryError::OutputValidationFailed("empty".into()),
            "summary_output_validation_failed: empty",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}

#[tokio::test]
async fn noop_always_refuses() {
    let backend: Arc<dyn SummaryBackend> = Arc::new(NoopBackend);
    assert_eq!(backend.name(), "noop");
    assert_eq!(
        backend.summarize(&full_request()).await,
        Err(SummaryError::BackendNotConfigured)
    );
}

#[tokio::test]
async fn replay_hit_returns_response_verbatim_and_miss_is_not_configured() {
    let dir = Scratch::new();
    let mut odd = response("  padded claim with echoed other model  ");
    odd.model_name_echoed = "someone-else@9".into();
    let fixture = ReplayFixture {
        entries: vec![
            ReplayEntry {
                request: full_request(),
                response: response("alpha and beta"),
            },
            ReplayEntry {
                request: bare_request(),
                response: odd.clone(),
            },
        ],
    };
    let path = dir.write("fixture.json", serde_json::to_vec(&fixture).unwrap());
    let backend = files::load_replay(&path).unwrap();
    assert_eq!(backend.len(), 2);
    assert!(!backend.is_empty());
    let backend: Box<dyn SummaryBackend> = Box::new(backend);
    assert_eq!(backend.name(), "replay");
    assert_eq!(
        backend.summarize(&full_request()).await,
        Ok(response("alpha and beta"))
    );
    assert_eq!(backend.summarize(&bare_request()).await, Ok(odd));

    let mut miss = full_request();
    miss.source_claims.reverse();
    assert_eq!(
        backend.summarize(&miss).await,
        Err(SummaryError::BackendNotConfigured)
    );
}

#[test]
fn replay_fixture_file_format() {
    let dir = Scratch::new();
    let text = format!(
        r#"{{"entries":[{{"request":{{"model_name":"{MODEL}","prompt_template_blake3":"{DIGEST}","source_claims":["alpha","beta"]}},"response":{{"claim":"s","model_name_echoed":"{MODEL}"}}}}]}}"#
    );
    let backend = files::load_replay(&dir.write("f.json", text)).unwrap();
    assert_eq!(
        backend.lookup(&bare_request()),
        Ok(SummaryResponse {
            claim: "s".into(),
            token_usage: None,
            model_name_echoed: MODEL.into(),
        })
    );
    let empty = files::load_replay(&dir.write("e.json", r#"{"entries":[]}"#)).unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        empty.lookup(&bare_request()),
        Err(SummaryError::BackendNotConfigured)
    );
}

#[test]
fn replay_duplicate_hash_is_refused() {
    let dir = Scratch::new();
    let fixture = ReplayFixture {
        entries: vec![
            ReplayEntry {
                request: bare_request(),
                response: response("one"),
            },
            ReplayEntry {
                request: bare_request(),
                response: response("two"),
            },
        ],
    };
    let path = dir.write("dup.json", serde_json::to_vec(&fixture).unwrap());
    assert_eq!(
        files::load_replay(&path).unwrap_err().to_string(),
        "summary_call_failed: duplicate replay summary fixture for request_hash=2676416f23added67412f8f9bff4a3f7bbf25119be9f8b43c460ee08e90bce25"
    );
}

#[test]
fn replay_load_errors() {
    let dir = Scratch::new();
    let missing = dir.0.join("missing.json");
    match files::load_replay(&missing).unwrap_err() {
        SummaryError::CallFailed(m) => assert!(
            m.starts_with(&format!("fixture `{}` not readable: ", missing.display())),
            "{m}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    for (name, text) in [
        ("bad.json", "{"),
        ("shape.json", r#"{"entries":[{"request":{}}]}"#),
        ("noentries.json", "{}"),
    ] {
        let path = dir.write(name, text);
        match files::load_replay(&path).unwrap_err() {
            SummaryError::CallFailed(m) => assert!(
                m.starts_with(&format!("fixture `{}` did not parse: ", path.display())),
                "{m}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn job() -> DecayJobId {
    DecayJobId::parse(JOB).unwrap()
}

#[test]
fn envelope_file_loads_and_its_errors_name_the_path() {
    let dir = Scratch::new();
    let env = sign_envelope(
        &[0x2a; 32],
        "k1",
        "2026-05-13T12:00:00+00:00",
        &job(),
        MODEL,
        DIGEST,
    );
    let path = dir.write("env.json", serde_json::to_vec(&env).unwrap());
    assert_eq!(files::load_envelope(&path).unwrap(), env);

    let missing = dir.0.join("nope.json");
    assert_eq!(
        files::load_envelope(&missing).unwrap_err().to_string(),
        format!("envelope `{}` not found", missing.display())
    );
    assert_eq!(
        files::load_envelope(&dir.0).unwrap_err().to_string(),
        format!("envelope `{}` not found", dir.0.display())
    );

    let path = dir.write("binary.json", [0xffu8, 0xfe, b'{']);
    let err = files::load_envelope(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "envelope `{}` could not be read: ",
            path.display()
        )),
        "{err}"
    );

    let path = dir.write("bad.json", "{not json");
    let err = files::load_envelope(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "envelope `{}` is not valid JSON: ",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn trusted_keys_file_loads_and_its_errors_name_the_path() {
    let dir = Scratch::new();
    let key = verifying_key_hex(&[3u8; 32]);
    let text = format!(r#"{{"keys":[{{"key_id":"k1","verifying_key_hex":"{key}"}}]}}"#);
    let keys = files::load_trusted_keys(&dir.write("keys.json", text)).unwrap();
    assert_eq!(keys.key_ids().collect::<Vec<_>>(), ["k1"]);

    let missing = dir.0.join("none.json");
    let err = files::load_trusted_keys(&missing).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "trusted operator keys file `{}` could not be read: ",
            missing.display()
        )),
        "{err}"
    );
    let path = dir.write("empty.json", r#"{"keys":[]}"#);
    assert_eq!(
        files::load_trusted_keys(&path).unwrap_err(),
        format!(
            "trusted operator keys file `{}`: lists no keys",
            path.display()
        )
    );
}

#[test]
fn operator_key_file_loads() {
    let dir = Scratch::new();
    let seed = [0x2a; 32];
    let good = crate::decay::attestation::OperatorKeyFile::from_seed("k1", &seed).unwrap();
    let path = dir.write("key.json", serde_json::to_vec(&good).unwrap());
    let loaded = files::load_operator_key(&path).unwrap();
    assert_eq!(loaded, good);
    assert_eq!(loaded.seed().unwrap(), seed);

    let short = dir.write("short.json", r#"{"key_id":"k1","secret_seed_hex":"00"}"#);
    assert!(
        files::load_operator_key(&short)
            .unwrap_err()
            .ends_with("secret_seed_hex must decode to 32 bytes; got 1")
    );
    let missing = dir.0.join("none.json");
    assert!(
        files::load_operator_key(&missing)
            .unwrap_err()
            .starts_with(&format!(
                "operator key file `{}` could not be read: ",
                missing.display()
            ))
    );
}

#[test]
fn generated_key_files_sign_verifiable_envelopes() {
    let file = files::generate_key_file("ops-2026").unwrap();
    assert_eq!(file.key_id, "ops-2026");
    assert_eq!(file.secret_seed_hex.len(), 64);
    let other = files::generate_key_file("ops-2026").unwrap();
    assert_ne!(file.secret_seed_hex, other.secret_seed_hex);
    assert!(!format!("{file:?}").contains(&file.secret_seed_hex));

    let seed = file.seed().unwrap();
    let signed_at = "2026-05-13T12:00:00+00:00";
    let env = sign_envelope(&seed, &file.key_id, signed_at, &job(), MODEL, DIGEST);
    let policy = TrustPolicy {
        trusted_keys: Some(
            TrustedKeys::from_entries([TrustedKeyEntry {
                key_id: file.key_id.clone(),
                verifying_key_hex: file.verifying_key_hex().unwrap(),
            }])
            .unwrap(),
        ),
        ..TrustPolicy::default()
    };
    let now = chrono::DateTime::parse_from_rfc3339("2026-05-13T12:30:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(verify(&env, &job(), &policy, now).is_ok());

    assert_eq!(
        files::generate_key_file("  ").unwrap_err(),
        "key id must be non-empty"
    );
}
