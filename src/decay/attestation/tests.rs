use super::*;
use ed25519_dalek::Verifier;

const JOB: &str = "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const OTHER_JOB: &str = "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAW";
const SEED: [u8; 32] = [0x2a; 32];
const VECTOR_CANONICAL_HEX: &str = "2100010000000000000018636f727465782e64656361792e6c6c6d5f73756d6d61727900000000000000026b310000000000000019323032362d30352d31335431323a30303a30302b30303a3030000000000000001e6463795f303141525a334e44454b5453563452524646513639473546415600000000000000036d40310000000000000009626c616b65333a6162";
const VECTOR_KEY_HEX: &str = "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";
const VECTOR_SIG_HEX: &str = "78cdc95841815e0263dbd29dc4a3bdd7171881cd147eabb7ff520a92d492296ed8e0b404bbdf69afcee763c495688c2f95ffb76cdc5b3152e7be2d6f61a72405";
const SIGNED_AT: &str = "2026-05-13T12:00:00+00:00";

fn job() -> DecayJobId {
    DecayJobId::parse(JOB).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-13T12:30:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn digest() -> String {
    prompt_template_digest(b"Summarise:\n{claims}")
}

/// The spec's test-vector envelope (prefix-only digest).
fn vector_envelope() -> AttestationEnvelope {
    sign_envelope(&SEED, "k1", SIGNED_AT, &job(), "m@1", "blake3:ab")
}

/// A valid envelope that passes every check under the default policy at `now()`.
fn good_envelope() -> AttestationEnvelope {
    sign_envelope(&SEED, "k1", SIGNED_AT, &job(), "m@1", &digest())
}

/// Re-sign after a field edit, so a test reaches the check it targets.
fn resign(mut env: AttestationEnvelope) -> AttestationEnvelope {
    let key = SigningKey::from_bytes(&SEED);
    env.signature_hex = encode_lower_hex(&key.sign(&canonical_bytes(&env)).to_bytes());
    env
}

/// The demo opt-out: no trusted-keys list, the envelope's own key believed. The reference's
/// checks and our digest and time checks are tested under it; the trust anchor has its own
/// tests.
fn open_policy() -> TrustPolicy {
    TrustPolicy {
        allow_untrusted_keys: true,
        ..TrustPolicy::default()
    }
}

fn detail(env: &AttestationEnvelope, policy: &TrustPolicy) -> String {
    verify(env, &job(), policy, now()).unwrap_err().to_string()
}

fn default_detail(env: &AttestationEnvelope) -> String {
    detail(env, &open_policy())
}

/// Bytes that are 32 long but not a valid compressed Edwards point.
fn invalid_point() -> [u8; 32] {
    (0u8..=255)
        .map(|b| {
            let mut bytes = [0u8; 32];
            bytes[0] = b;
            bytes[31] = 0x7f;
            bytes
        })
        .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
        .unwrap()
}

#[test]
fn constants_match_spec() {
    assert_eq!(DECAY_LLM_SUMMARY_ATTESTATION_SCHEMA_VERSION, 1);
    assert_eq!(
        DECAY_LLM_SUMMARY_ATTESTATION_PURPOSE,
        "cortex.decay.llm_summary"
    );
    assert_eq!(ATTESTATION_DOMAIN_TAG, 0x21);
}

#[test]
fn spec_test_vector_matches_byte_for_byte() {
    let env = vector_envelope();
    let bytes = canonical_bytes(&env);
    assert_eq!(bytes.len(), 144);
    assert_eq!(encode_lower_hex(&bytes), VECTOR_CANONICAL_HEX);
    assert_eq!(env.operator_verifying_key_hex, VECTOR_KEY_HEX);
    assert_eq!(verifying_key_hex(&SEED), VECTOR_KEY_HEX);
    assert_eq!(env.signature_hex, VECTOR_SIG_HEX);

    let key = VerifyingKey::from_bytes(
        &decode_lower_hex(VECTOR_KEY_HEX)
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let sig = Signature::from_bytes(
        &decode_lower_hex(VECTOR_SIG_HEX)
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert!(key.verify(&bytes, &sig).is_ok());
}

#[test]
fn spec_vector_passes_all_reference_steps_then_fails_digest_form() {
    // The reference accepts `blake3:ab`; we refuse it only after the signature verified.
    assert_eq!(
        default_detail(&vector_envelope()),
        "prompt_template_blake3 must be `blake3:` followed by 64 lowercase hex digits; got `blake3:ab`"
    );
}

#[test]
fn canonical_bytes_ignore_key_and_signature_and_apply_no_normalisation() {
    let env = vector_envelope();
    let mut other = env.clone();
    other.operator_verifying_key_hex = "00".into();
    other.signature_hex = "ff".into();
    assert_eq!(canonical_bytes(&env), canonical_bytes(&other));
    other.model_name = " m@1".into();
    assert_ne!(canonical_bytes(&env), canonical_bytes(&other));
    other.model_name = "é".into();
    let bytes = canonical_bytes(&other);
    assert!(
        bytes
            .windows(10)
            .any(|w| w == [0, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0xa9])
    );
}

#[test]
fn good_envelope_verifies_and_reports_audit_fields() {
    let env = good_envelope();
    let verified = verify(&env, &job(), &open_policy(), now()).unwrap();
    assert_eq!(
        verified,
        VerifiedAttestation {
            operator_key_id: "k1".into(),
            operator_verifying_key_hex: VECTOR_KEY_HEX.into(),
            signature_hex: env.signature_hex.clone(),
            signed_at: SIGNED_AT.into(),
            model_name: "m@1".into(),
            prompt_template_blake3: digest(),
        }
    );
}

#[test]
fn step_1_schema_version() {
    let mut env = good_envelope();
    env.schema_version = 2;
    env.purpose = "wrong".into();
    assert_eq!(default_detail(&env), "schema_version 2 (expected 1)");
}

#[test]
fn step_2_purpose_wins_over_job_id() {
    let mut env = good_envelope();
    env.purpose = "cortex.other".into();
    env.decay_job_id = OTHER_JOB.into();
    assert_eq!(
        default_detail(&env),
        "purpose `cortex.other` (expected `cortex.decay.llm_summary`)"
    );
}

#[test]
fn step_3_job_id_is_byte_exact() {
    let mut env = good_envelope();
    env.decay_job_id = OTHER_JOB.into();
    env.model_name = " ".into();
    assert_eq!(
        default_detail(&env),
        format!("decay_job_id `{OTHER_JOB}` does not match job `{JOB}`")
    );
    env.decay_job_id = JOB.to_lowercase();
    assert_eq!(
        default_detail(&env),
        format!(
            "decay_job_id `{}` does not match job `{JOB}`",
            JOB.to_lowercase()
        )
    );
}

#[test]
fn step_4_blank_model_name() {
    for blank in ["", "   ", "\t\u{3000}"] {
        let mut env = good_envelope();
        env.model_name = blank.into();
        env.prompt_template_blake3 = "sha256:00".into();
        assert_eq!(default_detail(&env), "model_name must be non-empty");
    }
}

#[test]
fn step_5_digest_prefix() {
    let mut env = good_envelope();
    env.prompt_template_blake3 = format!("BLAKE3:{}", "0".repeat(64));
    env.operator_verifying_key_hex = "zz".into();
    assert_eq!(
        default_detail(&env),
        "prompt_template_blake3 must use the `blake3:` prefix"
    );
}

#[test]
fn step_6_verifying_key_hex() {
    let mut env = good_envelope();
    env.operator_verifying_key_hex = "abc".into();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex malformed: odd hex length 3"
    );
    // `197f…` uppercased: the first letter is at offset 3.
    env.operator_verifying_key_hex = VECTOR_KEY_HEX.to_uppercase();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex malformed: invalid hex byte at offset 3"
    );
    env.operator_verifying_key_hex = "0g".into();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex malformed: invalid hex byte at offset 1"
    );
    // Odd length is reported before a bad character.
    env.operator_verifying_key_hex = "zzz".into();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex malformed: odd hex length 3"
    );
    // Non-ASCII: the offset is a byte offset.
    env.operator_verifying_key_hex = "00é".into();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex malformed: invalid hex byte at offset 2"
    );
}

#[test]
fn step_7_verifying_key_length() {
    let mut env = good_envelope();
    env.operator_verifying_key_hex = "00".repeat(31);
    env.signature_hex = "x".into();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex must decode to 32 bytes; got 31"
    );
    env.operator_verifying_key_hex = String::new();
    assert_eq!(
        default_detail(&env),
        "operator_verifying_key_hex must decode to 32 bytes; got 0"
    );
}

#[test]
fn step_8_verifying_key_not_a_point() {
    let mut env = good_envelope();
    env.operator_verifying_key_hex = encode_lower_hex(&invalid_point());
    env.signature_hex = "x".into();
    let err = VerifyingKey::from_bytes(&invalid_point())
        .unwrap_err()
        .to_string();
    assert_eq!(
        default_detail(&env),
        format!("operator_verifying_key_hex did not parse: {err}")
    );
}

#[test]
fn step_9_signature_hex() {
    let mut env = good_envelope();
    env.signature_hex = "a".into();
    assert_eq!(
        default_detail(&env),
        "signature_hex malformed: odd hex length 1"
    );
    env.signature_hex = "aG".into();
    assert_eq!(
        default_detail(&env),
        "signature_hex malformed: invalid hex byte at offset 1"
    );
    env.signature_hex = VECTOR_SIG_HEX.to_uppercase();
    assert_eq!(
        default_detail(&env),
        "signature_hex malformed: invalid hex byte at offset 2"
    );
}

#[test]
fn step_10_signature_length() {
    let mut env = good_envelope();
    env.signature_hex = "00".repeat(65);
    assert_eq!(
        default_detail(&env),
        "signature_hex must decode to 64 bytes; got 65"
    );
}

#[test]
fn step_11_signature_does_not_verify() {
    // A tampered signed field.
    let mut env = good_envelope();
    env.model_name = "m@2".into();
    assert_eq!(
        default_detail(&env),
        "Ed25519 signature did not verify under the declared operator key"
    );
    // A swapped key (the key is not signed, but the signature is bound to it).
    let mut env = good_envelope();
    env.operator_verifying_key_hex = verifying_key_hex(&[7u8; 32]);
    assert_eq!(
        default_detail(&env),
        "Ed25519 signature did not verify under the declared operator key"
    );
    // A zero signature.
    let mut env = good_envelope();
    env.signature_hex = "00".repeat(64);
    assert_eq!(
        default_detail(&env),
        "Ed25519 signature did not verify under the declared operator key"
    );
}

#[test]
fn reference_checks_run_before_added_checks() {
    // Bad signature AND untrusted key AND short digest AND unparsable signed_at: the
    // reference's step 11 text wins.
    let mut env = sign_envelope(&SEED, "nobody", "yesterday", &job(), "m@1", "blake3:");
    env.model_name = "tampered".into();
    let policy = TrustPolicy {
        trusted_keys: Some(trusted(&[("k1", &[9u8; 32])])),
        ..open_policy()
    };
    assert_eq!(
        detail(&env, &policy),
        "Ed25519 signature did not verify under the declared operator key"
    );
}

fn trusted(keys: &[(&str, &[u8; 32])]) -> TrustedKeys {
    TrustedKeys::from_entries(keys.iter().map(|(id, seed)| TrustedKeyEntry {
        key_id: (*id).to_owned(),
        verifying_key_hex: verifying_key_hex(seed),
    }))
    .unwrap()
}

#[test]
fn trusted_keys_accept_listed_key() {
    let policy = TrustPolicy {
        trusted_keys: Some(trusted(&[("k0", &[1u8; 32]), ("k1", &SEED)])),
        ..open_policy()
    };
    assert!(verify(&good_envelope(), &job(), &policy, now()).is_ok());
}

#[test]
fn trusted_keys_reject_unlisted_key_id() {
    let policy = TrustPolicy {
        trusted_keys: Some(trusted(&[("k0", &SEED)])),
        ..open_policy()
    };
    assert_eq!(
        detail(&good_envelope(), &policy),
        "operator_key_id `k1` is not a trusted operator key"
    );
}

#[test]
fn trusted_keys_reject_other_key_under_listed_id() {
    // Anyone can mint a valid envelope with their own key; the allowlist stops it.
    let minted = sign_envelope(&[5u8; 32], "k1", SIGNED_AT, &job(), "m@1", &digest());
    assert!(verify(&minted, &job(), &open_policy(), now()).is_ok());
    let policy = TrustPolicy {
        trusted_keys: Some(trusted(&[("k1", &SEED)])),
        ..open_policy()
    };
    assert_eq!(
        detail(&minted, &policy),
        "operator_verifying_key_hex does not match the trusted key for operator_key_id `k1`"
    );
}

#[test]
fn trusted_key_check_precedes_digest_and_time_checks() {
    let env = sign_envelope(&[5u8; 32], "k9", "garbage", &job(), "m@1", "blake3:");
    let policy = TrustPolicy {
        trusted_keys: Some(trusted(&[("k1", &SEED)])),
        ..open_policy()
    };
    assert_eq!(
        detail(&env, &policy),
        "operator_key_id `k9` is not a trusted operator key"
    );
}

#[test]
fn digest_must_have_full_form() {
    let cases = [
        "blake3:".to_owned(),
        format!("blake3:{}", "a".repeat(63)),
        format!("blake3:{}", "a".repeat(65)),
        format!("blake3:{}", "A".repeat(64)),
        format!("blake3:{}g", "a".repeat(63)),
        format!("blake3: {}", "a".repeat(63)),
    ];
    for digest in cases {
        let env = resign(AttestationEnvelope {
            prompt_template_blake3: digest.clone(),
            ..good_envelope()
        });
        assert_eq!(
            default_detail(&env),
            format!(
                "prompt_template_blake3 must be `blake3:` followed by 64 lowercase hex digits; got `{digest}`"
            )
        );
    }
    assert!(is_full_prompt_template_digest(&digest()));
    assert_eq!(digest().len(), 71);
}

#[test]
fn digest_check_precedes_signed_at_checks() {
    let env = sign_envelope(&SEED, "k1", "garbage", &job(), "m@1", "blake3:ab");
    assert!(default_detail(&env).starts_with("prompt_template_blake3 must be `blake3:`"));
}

#[test]
fn signed_at_must_be_rfc3339() {
    for bad in [
        "",
        "2026-05-13",
        "2026-05-13 12:00",
        "13 May 2026",
        "2026-05-13T12:00:00",
    ] {
        let env = sign_envelope(&SEED, "k1", bad, &job(), "m@1", &digest());
        let err = DateTime::parse_from_rfc3339(bad).unwrap_err();
        assert_eq!(
            default_detail(&env),
            format!("signed_at `{bad}` is not an RFC 3339 timestamp: {err}")
        );
    }
    // Any offset is fine; it is compared as an instant.
    let env = sign_envelope(
        &SEED,
        "k1",
        "2026-05-13T14:00:00+02:00",
        &job(),
        "m@1",
        &digest(),
    );
    assert!(verify(&env, &job(), &open_policy(), now()).is_ok());
}

#[test]
fn signed_at_future_skew() {
    // now() is 12:30:00Z; 5 minutes of skew allowed by default.
    let at_limit = sign_envelope(
        &SEED,
        "k1",
        "2026-05-13T12:35:00Z",
        &job(),
        "m@1",
        &digest(),
    );
    assert!(verify(&at_limit, &job(), &open_policy(), now()).is_ok());
    let ahead = sign_envelope(
        &SEED,
        "k1",
        "2026-05-13T12:35:01Z",
        &job(),
        "m@1",
        &digest(),
    );
    assert_eq!(
        default_detail(&ahead),
        "signed_at `2026-05-13T12:35:01Z` is 301s in the future (allowed skew 300s)"
    );
    let policy = TrustPolicy {
        max_future_skew: Duration::zero(),
        ..open_policy()
    };
    let slightly = sign_envelope(
        &SEED,
        "k1",
        "2026-05-13T12:30:01Z",
        &job(),
        "m@1",
        &digest(),
    );
    assert_eq!(
        detail(&slightly, &policy),
        "signed_at `2026-05-13T12:30:01Z` is 1s in the future (allowed skew 0s)"
    );
}

#[test]
fn signed_at_max_age() {
    // Without a max age, an old envelope is fine.
    let old = sign_envelope(
        &SEED,
        "k1",
        "2020-01-01T00:00:00Z",
        &job(),
        "m@1",
        &digest(),
    );
    assert!(verify(&old, &job(), &open_policy(), now()).is_ok());

    let policy = TrustPolicy {
        max_age: Some(Duration::minutes(30)),
        ..open_policy()
    };
    // SIGNED_AT is exactly 30 minutes before now(): accepted at the boundary.
    assert!(verify(&good_envelope(), &job(), &policy, now()).is_ok());
    let older = sign_envelope(
        &SEED,
        "k1",
        "2026-05-13T11:59:59+00:00",
        &job(),
        "m@1",
        &digest(),
    );
    assert_eq!(
        detail(&older, &policy),
        "signed_at `2026-05-13T11:59:59+00:00` is 1801s old (max age 1800s)"
    );
}

#[test]
fn default_policy() {
    let policy = TrustPolicy::default();
    assert!(policy.trusted_keys.is_none());
    assert!(!policy.allow_untrusted_keys);
    assert!(policy.max_age.is_none());
    assert_eq!(policy.max_future_skew, Duration::minutes(5));
}

#[test]
fn hex_codec() {
    assert_eq!(decode_lower_hex("").unwrap(), Vec::<u8>::new());
    assert_eq!(decode_lower_hex("00ff7a").unwrap(), vec![0, 255, 0x7a]);
    assert_eq!(decode_lower_hex("0F"), Err(HexError::InvalidByte(1)));
    assert_eq!(decode_lower_hex("x0"), Err(HexError::InvalidByte(0)));
    assert_eq!(decode_lower_hex("000"), Err(HexError::OddLength(3)));
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(decode_lower_hex(&encode_lower_hex(&all)).unwrap(), all);
}

#[test]
fn parse_good_envelope_ignores_unknown_fields() {
    let mut value = serde_json::to_value(good_envelope()).unwrap();
    value["comment"] = serde_json::json!("extra");
    let text = serde_json::to_string(&value).unwrap();
    assert_eq!(
        AttestationEnvelope::parse(&text, "env.json").unwrap(),
        good_envelope()
    );
}

#[test]
fn parse_bad_json_missing_field_and_out_of_range_version() {
    let prefix = |source: &str| format!("envelope `{source}` is not valid JSON: ");
    let err = |text: &str, source: &str| {
        AttestationEnvelope::parse(text, source)
            .unwrap_err()
            .to_string()
    };

    let e = err("{not json", "bad.json");
    assert!(e.starts_with(&prefix("bad.json")), "{e}");

    let mut value = serde_json::to_value(good_envelope()).unwrap();
    value.as_object_mut().unwrap().remove("signed_at");
    let e = err(&value.to_string(), "missing.json");
    assert!(e.starts_with(&prefix("missing.json")), "{e}");
    assert!(e.contains("missing field `signed_at`"), "{e}");

    let mut value = serde_json::to_value(good_envelope()).unwrap();
    value["schema_version"] = serde_json::json!(70000);
    let e = err(&value.to_string(), "range.json");
    assert!(e.starts_with(&prefix("range.json")), "{e}");
    assert!(e.contains("70000"), "{e}");

    let mut value = serde_json::to_value(good_envelope()).unwrap();
    value["model_name"] = serde_json::json!(7);
    assert!(err(&value.to_string(), "type.json").starts_with(&prefix("type.json")));
}

#[test]
fn envelope_json_round_trip_field_order() {
    let json = serde_json::to_string(&vector_envelope()).unwrap();
    assert!(json.starts_with(
        r#"{"schema_version":1,"purpose":"cortex.decay.llm_summary","operator_verifying_key_hex":"#
    ));
    let back: AttestationEnvelope = serde_json::from_str(&json).unwrap();
    assert_eq!(back, vector_envelope());
}

#[test]
fn trusted_keys_parse_good_document() {
    let text = format!(
        r#"{{"keys":[{{"key_id":"k1","verifying_key_hex":"{VECTOR_KEY_HEX}"}},{{"key_id":"k2","verifying_key_hex":"{}"}}]}}"#,
        verifying_key_hex(&[3u8; 32])
    );
    let keys = TrustedKeys::parse(&text, "keys.json").unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!keys.is_empty());
    assert_eq!(keys.key_ids().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(encode_lower_hex(keys.get("k1").unwrap()), VECTOR_KEY_HEX);
    assert!(keys.get("k3").is_none());
}

#[test]
fn trusted_keys_parse_errors() {
    let check = |name: &str, text: String, want: &str| {
        let err = TrustedKeys::parse(&text, name).unwrap_err();
        let prefix = format!("trusted operator keys file `{name}`");
        assert!(err.starts_with(&prefix), "{err}");
        assert!(err.contains(want), "{err} should contain {want}");
    };
    let entry = |id: &str, hex: &str| format!(r#"{{"key_id":"{id}","verifying_key_hex":"{hex}"}}"#);
    let file = |entries: &[String]| format!(r#"{{"keys":[{}]}}"#, entries.join(","));

    check("json.json", "[".into(), "is not valid JSON: ");
    check("nokeys.json", "{}".into(), "missing field `keys`");
    check(
        "typo.json",
        r#"{"keys":[{"key_id":"k1","verifying_key":"00"}]}"#.into(),
        "unknown field `verifying_key`",
    );
    check("empty.json", file(&[]), ": lists no keys");
    check(
        "dup.json",
        file(&[
            entry("k1", VECTOR_KEY_HEX),
            entry("k1", &verifying_key_hex(&[3u8; 32])),
        ]),
        ": key 1: duplicate key_id `k1`",
    );
    check(
        "dupkey.json",
        file(&[entry("k1", VECTOR_KEY_HEX), entry("k2", VECTOR_KEY_HEX)]),
        ": key 1 (`k2`): verifying key already listed under key_id `k1`",
    );
    check(
        "blank.json",
        file(&[entry(" ", VECTOR_KEY_HEX)]),
        ": key 0: key_id must be non-empty",
    );
    check(
        "upper.json",
        file(&[entry("k1", &VECTOR_KEY_HEX.to_uppercase())]),
        ": key 0 (`k1`): verifying_key_hex malformed: invalid hex byte at offset 3",
    );
    check(
        "odd.json",
        file(&[entry("k1", "abc")]),
        ": key 0 (`k1`): verifying_key_hex malformed: odd hex length 3",
    );
    check(
        "short.json",
        file(&[entry("k1", "abcd")]),
        ": key 0 (`k1`): verifying_key_hex must decode to 32 bytes; got 2",
    );
    check(
        "point.json",
        file(&[entry("k1", &encode_lower_hex(&invalid_point()))]),
        ": key 0 (`k1`): verifying_key_hex did not parse: ",
    );
}

#[test]
fn operator_key_file_parse() {
    let good = OperatorKeyFile::from_seed("k1", &SEED).unwrap();
    assert_eq!(good.secret_seed_hex, encode_lower_hex(&SEED));
    assert!(!format!("{good:?}").contains(&good.secret_seed_hex));
    let text = serde_json::to_string(&good).unwrap();
    let parsed = OperatorKeyFile::parse(&text, "key.json").unwrap();
    assert_eq!(parsed, good);
    assert_eq!(parsed.seed().unwrap(), SEED);
    assert_eq!(parsed.verifying_key_hex().unwrap(), VECTOR_KEY_HEX);

    assert_eq!(
        OperatorKeyFile::parse(r#"{"key_id":"k1","secret_seed_hex":"00"}"#, "short.json")
            .unwrap_err(),
        "operator key file `short.json`: secret_seed_hex must decode to 32 bytes; got 1"
    );
    assert!(
        OperatorKeyFile::parse("{", "bad.json")
            .unwrap_err()
            .starts_with("operator key file `bad.json` is not valid JSON: ")
    );
    assert_eq!(
        OperatorKeyFile::from_seed("  ", &SEED).unwrap_err(),
        "key id must be non-empty"
    );
}

#[test]
fn prompt_template_digest_is_blake3_hex() {
    let d = prompt_template_digest(b"");
    assert_eq!(
        d,
        "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    assert!(is_full_prompt_template_digest(&d));
    assert!(!is_full_prompt_template_digest(&d[..70]));
}

/// The identity point `01 00…00`, and the other small-order points (orders 2, 4 and 8).
const WEAK_KEYS: [&str; 6] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
];

/// An envelope under the identity key with the signature `01 00…00` (R = identity, s = 0):
/// lax Ed25519 verification accepts it for any message.
fn identity_forgery(key_id: &str) -> AttestationEnvelope {
    let mut env = good_envelope();
    env.operator_key_id = key_id.to_owned();
    env.operator_verifying_key_hex = WEAK_KEYS[0].to_owned();
    env.signature_hex = format!("01{}", "00".repeat(63));
    env
}

#[test]
fn identity_key_forgery_verifies_laxly_but_is_refused() {
    let env = identity_forgery("k1");
    // The forgery is real under the reference's lax verification...
    let key =
        VerifyingKey::from_bytes(&decode_lower_hex(WEAK_KEYS[0]).unwrap().try_into().unwrap())
            .unwrap();
    let sig: [u8; 64] = decode_lower_hex(&env.signature_hex)
        .unwrap()
        .try_into()
        .unwrap();
    assert!(
        key.verify(&canonical_bytes(&env), &Signature::from_bytes(&sig))
            .is_ok()
    );
    // ...and refused here, even with the opt-out on.
    assert_eq!(
        detail(&env, &open_policy()),
        "operator_verifying_key_hex is a weak (small-order) Ed25519 key"
    );
}

#[test]
fn weak_keys_are_refused_in_envelopes_and_in_the_trusted_list() {
    for weak in WEAK_KEYS {
        let mut env = identity_forgery("k1");
        env.operator_verifying_key_hex = weak.to_owned();
        assert_eq!(
            detail(&env, &open_policy()),
            "operator_verifying_key_hex is a weak (small-order) Ed25519 key",
            "{weak}"
        );
        let text = format!(r#"{{"keys":[{{"key_id":"k1","verifying_key_hex":"{weak}"}}]}}"#);
        let err = TrustedKeys::parse(&text, "weak.json").unwrap_err();
        assert_eq!(
            err,
            "trusted operator keys file `weak.json`: key 0 (`k1`): verifying_key_hex is a weak (small-order) Ed25519 key",
            "{weak}"
        );
    }
}

#[test]
fn spec_vector_verifies_strictly() {
    let key = VerifyingKey::from_bytes(
        &decode_lower_hex(VECTOR_KEY_HEX)
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let sig: [u8; 64] = decode_lower_hex(VECTOR_SIG_HEX)
        .unwrap()
        .try_into()
        .unwrap();
    assert!(!key.is_weak());
    assert!(
        key.verify_strict(
            &canonical_bytes(&vector_envelope()),
            &Signature::from_bytes(&sig)
        )
        .is_ok()
    );
}

#[test]
fn no_trusted_keys_fails_closed() {
    // A freshly minted key, as an attacker would: refused by default, with no list configured.
    let minted = sign_envelope(&[5u8; 32], "attacker", SIGNED_AT, &job(), "m@1", &digest());
    assert_eq!(
        detail(&minted, &TrustPolicy::default()),
        "no trusted operator keys are configured (--trusted-operator-keys); refusing to trust the envelope's own key"
    );
    // The explicit opt-out restores the reference's behaviour.
    assert!(verify(&minted, &job(), &open_policy(), now()).is_ok());
    // A configured list ignores the opt-out.
    let policy = TrustPolicy {
        trusted_keys: Some(trusted(&[("k1", &SEED)])),
        allow_untrusted_keys: true,
        ..TrustPolicy::default()
    };
    assert_eq!(
        detail(&minted, &policy),
        "operator_key_id `attacker` is not a trusted operator key"
    );
}
