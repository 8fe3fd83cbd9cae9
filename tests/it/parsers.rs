//! Property tests of every parser of outside input: message bodies, ids, message headers,
//! attestation envelopes, trusted-keys files, durations, and the redaction of URLs. For each:
//! it never panics on anything, canonical forms round-trip, and non-canonical forms are
//! refused with a reason. Each property prints how many cases ran.

use std::time::Duration;

use decay_worker::broker::headers::{MAX_COUNTER, RetryCounter, RetryCounts, counter};
use decay_worker::broker::message::{MAX_MESSAGE_BYTES, MalformedMessage, encode_body, parse_body};
use decay_worker::config::{DurationArg, MAX_DURATION, parse_duration};
use decay_worker::decay::attestation::{
    AttestationEnvelope, TrustedKeyEntry, TrustedKeys, TrustedKeysFile, canonical_bytes,
    decode_lower_hex, encode_lower_hex, prompt_template_digest, sign_envelope, verifying_key_hex,
};
use decay_worker::ids::{DecayJobId, MemoryId};
use decay_worker::telemetry::redact;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use proptest::prelude::*;

use crate::testkit::prop::check;
use proptest::test_runner::TestCaseError;

fn job_id() -> impl Strategy<Value = DecayJobId> {
    any::<u128>().prop_map(|u| DecayJobId::parse(&format!("dcy_{}", ulid::Ulid(u))).unwrap())
}

/// Blanks an id may come wrapped in: ASCII (allowed) and Unicode (refused).
const ASCII_BLANKS: [char; 5] = [' ', '\t', '\n', '\r', '\x0c'];
const UNICODE_BLANKS: [char; 8] = [
    '\u{a0}', '\u{3000}', '\u{2003}', '\u{2009}', '\u{feff}', '\u{85}', '\u{2028}', '\u{1680}',
];

fn ascii_blanks() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ASCII_BLANKS.to_vec()), 0..4)
        .prop_map(|v| v.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// Message bodies and ids

#[test]
fn message_bodies() {
    check(
        "message body: any bytes, no panic, an id or a reason",
        proptest::collection::vec(any::<u8>(), 0..200),
        |bytes| {
            match parse_body(&bytes) {
                Ok(id) => {
                    // Whatever was accepted names a canonical id.
                    prop_assert_eq!(DecayJobId::parse(&id.to_string()), Ok(id));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        },
    );
    check("message body: any text, no panic", ".{0,80}", |text| {
        let _ = parse_body(text.as_bytes());
        Ok(())
    });
    check(
        "message body: canonical JSON and bare ids with ASCII blanks round-trip",
        (job_id(), ascii_blanks(), ascii_blanks()),
        |(id, before, after)| {
            prop_assert_eq!(parse_body(&encode_body(&id)), Ok(id));
            let bare = format!("{before}{id}{after}");
            prop_assert_eq!(parse_body(bare.as_bytes()), Ok(id));
            let json = format!("{before}{{\"job_id\":\"{id}\"}}{after}");
            prop_assert_eq!(parse_body(json.as_bytes()), Ok(id));
            Ok(())
        },
    );
    check(
        "message body: Unicode blanks around a bare id are refused with a reason",
        (
            job_id(),
            proptest::sample::select(UNICODE_BLANKS.to_vec()),
            any::<bool>(),
        ),
        |(id, blank, in_front)| {
            let body = if in_front {
                format!("{blank}{id}")
            } else {
                format!("{id}{blank}")
            };
            match parse_body(body.as_bytes()) {
                Err(MalformedMessage::BadId(reason)) => {
                    prop_assert!(reason.contains("non-ASCII"), "{}", reason)
                }
                other => prop_assert!(false, "{:?} accepted as {:?}", body, other),
            }
            Ok(())
        },
    );
    check(
        "message body: oversized bodies are refused by size",
        (job_id(), MAX_MESSAGE_BYTES - 40..MAX_MESSAGE_BYTES * 2),
        |(id, len)| {
            let mut body = encode_body(&id);
            body.resize(len.max(body.len()), b' ');
            let parsed = parse_body(&body);
            if body.len() > MAX_MESSAGE_BYTES {
                prop_assert_eq!(parsed, Err(MalformedMessage::TooLarge(body.len())));
            } else {
                prop_assert_eq!(parsed, Ok(id));
            }
            Ok(())
        },
    );
}

#[test]
fn ids() {
    check("id: any text, no panic", ".{0,40}", |text| {
        if let Ok(id) = MemoryId::parse(&text) {
            // Accepted only as its one canonical spelling.
            prop_assert_eq!(id.to_string(), text);
        }
        Ok(())
    });
    check("id: canonical text round-trips", any::<u128>(), |u| {
        let text = format!("mem_{}", ulid::Ulid(u));
        let id = MemoryId::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(id.to_string(), text);
        prop_assert_eq!(id.ulid().0, u);
        Ok(())
    });
    check(
        "id: lowercase, wrong prefix, or one character off is refused with a reason",
        (any::<u128>(), 0usize..26, "[a-zILOU!-/:-@]"),
        |(u, at, replacement)| {
            let body = ulid::Ulid(u).to_string();
            let lower = format!("mem_{}", body.to_lowercase());
            if lower != format!("mem_{body}") {
                let e = MemoryId::parse(&lower).unwrap_err();
                prop_assert!(e.detail.contains("invalid character"), "{}", e);
            }
            let e = MemoryId::parse(&format!("epi_{body}")).unwrap_err();
            prop_assert!(e.detail.contains("expected prefix `mem_`"), "{}", e);
            let mut chars: Vec<char> = body.chars().collect();
            chars[at] = replacement.chars().next().unwrap();
            let off: String = chars.into_iter().collect();
            let e = MemoryId::parse(&format!("mem_{off}")).unwrap_err();
            prop_assert!(e.detail.contains("invalid character"), "{}", e);
            Ok(())
        },
    );
    check(
        "id: only ASCII blanks may surround a bare id",
        (
            job_id(),
            ascii_blanks(),
            proptest::sample::select(UNICODE_BLANKS.to_vec()),
        ),
        |(id, ascii, unicode)| {
            prop_assert_eq!(
                DecayJobId::parse_bare(&format!("{ascii}{id}{ascii}")),
                Ok(id)
            );
            let e = DecayJobId::parse_bare(&format!("{ascii}{unicode}{id}")).unwrap_err();
            prop_assert!(e.detail.contains("non-ASCII"), "{}", e);
            let e = DecayJobId::parse_bare(&format!("{id}{unicode}{ascii}")).unwrap_err();
            prop_assert!(e.detail.contains("non-ASCII"), "{}", e);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Headers

fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        any::<f64>().prop_map(AMQPValue::Double),
        any::<f32>().prop_map(AMQPValue::Float),
        any::<bool>().prop_map(AMQPValue::Boolean),
        ".{0,20}".prop_map(|s| AMQPValue::LongString(LongString::from(s.as_str()))),
        "[0-9-]{0,20}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        Just(AMQPValue::Void),
    ]
}

fn header_key() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        decay_worker::broker::HEADER_ATTEMPT,
        RetryCounter::NotFound.header(),
        RetryCounter::RunnerError.header(),
        RetryCounter::Transient.header(),
    ])
}

#[test]
fn headers() {
    check(
        "headers: any value of any counter reads bounded, anomalies named",
        proptest::collection::vec((header_key(), amqp_value()), 0..6),
        |entries| {
            let mut table = FieldTable::default();
            for (k, v) in &entries {
                table.insert((*k).into(), v.clone());
            }
            let (counts, anomalies) = RetryCounts::read(Some(&table));
            for c in [
                counts.total,
                counts.not_found,
                counts.runner_error,
                counts.transient,
            ] {
                prop_assert!(c <= MAX_COUNTER);
            }
            for (k, v) in table.inner() {
                let read = counter(Some(&table), header_key_static(k.as_str()));
                let in_range = match v {
                    AMQPValue::LongLongInt(n) => (0..=i64::from(MAX_COUNTER)).contains(n),
                    AMQPValue::LongInt(n) => (0..=MAX_COUNTER as i32).contains(n),
                    AMQPValue::LongUInt(n) => *n <= MAX_COUNTER,
                    AMQPValue::ShortInt(n) => *n >= 0 && (*n as u32) <= MAX_COUNTER,
                    AMQPValue::ShortUInt(n) => u32::from(*n) <= MAX_COUNTER,
                    AMQPValue::ShortShortInt(n) => *n >= 0,
                    AMQPValue::ShortShortUInt(_) => true,
                    _ => false,
                };
                // A value in range reads as itself with no anomaly; anything else is named.
                prop_assert_eq!(read.anomaly.is_none(), in_range, "{:?} -> {:?}", v, read);
            }
            prop_assert!(anomalies.len() <= 4);
            // The next re-publish writes well-formed counters that read back exactly.
            for c in [
                None,
                Some(RetryCounter::NotFound),
                Some(RetryCounter::Transient),
            ] {
                let next = counts.next(c);
                let mut out = FieldTable::default();
                next.write(&mut out);
                prop_assert_eq!(RetryCounts::read(Some(&out)), (next, vec![]));
            }
            Ok(())
        },
    );
}

/// The `'static` key among ours equal to `k`.
fn header_key_static(k: &str) -> &'static str {
    [
        decay_worker::broker::HEADER_ATTEMPT,
        RetryCounter::NotFound.header(),
        RetryCounter::RunnerError.header(),
        RetryCounter::Transient.header(),
    ]
    .into_iter()
    .find(|h| *h == k)
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Attestation envelopes and trusted-keys files (read-only use of the attestation module)

fn seed() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn envelope() -> impl Strategy<Value = AttestationEnvelope> {
    (
        seed(),
        "[a-z][a-z0-9-]{0,20}",
        job_id(),
        "[a-zA-Z0-9:._-]{1,30}",
        proptest::collection::vec(any::<u8>(), 0..64),
        0i64..4_000_000_000,
    )
        .prop_map(|(seed, key_id, job, model, template, secs)| {
            let signed_at = chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            sign_envelope(
                &seed,
                &key_id,
                &signed_at,
                &job,
                &model,
                &prompt_template_digest(&template),
            )
        })
}

#[test]
fn envelopes() {
    check("envelope: any text, no panic", ".{0,200}", |text| {
        if let Err(e) = AttestationEnvelope::parse(&text, "env.json") {
            prop_assert!(e.to_string().contains("env.json"), "{}", e);
        }
        Ok(())
    });
    check(
        "envelope: JSON-shaped garbage, no panic",
        proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "schema_version",
                    "purpose",
                    "operator_verifying_key_hex",
                    "operator_key_id",
                    "signed_at",
                    "decay_job_id",
                    "model_name",
                    "prompt_template_blake3",
                    "signature_hex",
                    "extra",
                ]),
                prop_oneof![
                    any::<i64>().prop_map(|n| n.to_string()),
                    ".{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                    Just("null".to_string()),
                    Just("[]".to_string()),
                ],
            ),
            0..12,
        ),
        |fields| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = format!("{{{}}}", body.join(","));
            let _ = AttestationEnvelope::parse(&text, "env.json");
            Ok(())
        },
    );
    check(
        "envelope: a signed envelope round-trips through its JSON, bytes unchanged",
        envelope(),
        |env| {
            let text = serde_json::to_string_pretty(&env).unwrap();
            let back = AttestationEnvelope::parse(&text, "env.json")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &env);
            prop_assert_eq!(canonical_bytes(&back), canonical_bytes(&env));
            // Hex is lowercase only: the canonical spelling decodes, the uppercase is refused.
            let sig = decode_lower_hex(&env.signature_hex).unwrap();
            prop_assert_eq!(encode_lower_hex(&sig), env.signature_hex.clone());
            let upper = env.signature_hex.to_uppercase();
            if upper != env.signature_hex {
                prop_assert!(decode_lower_hex(&upper).is_err());
            }
            Ok(())
        },
    );
    check(
        "envelope: a schema_version out of u16 range is refused with a reason",
        (envelope(), 65_536u64..u64::MAX),
        |(env, version)| {
            let mut value = serde_json::to_value(&env).unwrap();
            value["schema_version"] = serde_json::json!(version);
            let e = AttestationEnvelope::parse(&value.to_string(), "env.json").unwrap_err();
            prop_assert!(e.to_string().contains("not valid JSON"), "{}", e);
            Ok(())
        },
    );
}

#[test]
fn trusted_keys_files() {
    check("trusted keys: any text, no panic", ".{0,200}", |text| {
        if let Err(e) = TrustedKeys::parse(&text, "keys.json") {
            prop_assert!(e.contains("keys.json"), "{}", e);
        }
        Ok(())
    });
    check(
        "trusted keys: canonical files round-trip",
        proptest::collection::btree_map("[a-z][a-z0-9-]{0,12}", seed(), 1..5),
        |by_id| {
            // Distinct seeds give distinct keys (a collision in 32 random bytes cannot happen).
            let entries: Vec<TrustedKeyEntry> = by_id
                .iter()
                .map(|(id, seed)| TrustedKeyEntry {
                    key_id: id.clone(),
                    verifying_key_hex: verifying_key_hex(seed),
                })
                .collect();
            let text = serde_json::to_string(&TrustedKeysFile {
                keys: entries.clone(),
            })
            .unwrap();
            let keys = match TrustedKeys::parse(&text, "keys.json") {
                Ok(keys) => keys,
                // A seed whose key is refused as weak (if the parser refuses weak keys): skip.
                Err(e) if e.contains("weak") || e.contains("small order") => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(e)),
            };
            prop_assert_eq!(keys.len(), entries.len());
            for e in &entries {
                let listed = keys.get(&e.key_id).map(|k| encode_lower_hex(k));
                prop_assert_eq!(listed.as_deref(), Some(e.verifying_key_hex.as_str()));
            }
            Ok(())
        },
    );
    check(
        "trusted keys: non-canonical files are refused with a reason",
        ("[a-z][a-z0-9-]{0,12}", seed(), 0usize..4),
        |(id, seed, how)| {
            let hex = verifying_key_hex(&seed);
            let (text, why) = match how {
                0 => (
                    format!(
                        r#"{{"keys":[{{"key_id":"{id}","verifying_key_hex":"{}"}}]}}"#,
                        hex.to_uppercase()
                    ),
                    "malformed",
                ),
                1 => (
                    format!(
                        r#"{{"keys":[{{"key_id":"{id}","verifying_key_hex":"{hex}","x":1}}]}}"#
                    ),
                    "not valid JSON",
                ),
                2 => (
                    format!(
                        r#"{{"keys":[{{"key_id":"{id}","verifying_key_hex":"{hex}"}},{{"key_id":"{id}","verifying_key_hex":"{hex}"}}]}}"#
                    ),
                    "duplicate key_id",
                ),
                _ => (
                    format!(
                        r#"{{"keys":[{{"key_id":"{id}","verifying_key_hex":"{}"}}]}}"#,
                        &hex[..62]
                    ),
                    "32 bytes",
                ),
            };
            if how == 0 && hex.to_uppercase() == hex {
                return Ok(());
            }
            let e = TrustedKeys::parse(&text, "keys.json").unwrap_err();
            prop_assert!(e.contains(why), "{}: {}", why, e);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Durations

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0..=MAX_DURATION.as_nanos() as u64).prop_map(Duration::from_nanos),
        (0..=MAX_DURATION.as_secs()).prop_map(Duration::from_secs),
        (0..=MAX_DURATION.as_millis() as u64).prop_map(Duration::from_millis),
    ]
    .prop_filter("within a year", |d| *d <= MAX_DURATION)
}

#[test]
fn durations() {
    check("duration: any text, no panic", ".{0,40}", |text| {
        match parse_duration(&text) {
            Ok(d) => prop_assert!(d <= MAX_DURATION),
            Err(e) => prop_assert!(!e.is_empty()),
        }
        Ok(())
    });
    check(
        "duration: number-and-unit garbage, no panic, bounded",
        "[0-9.]{0,25}[ ]{0,2}[a-zA-Z]{0,3}",
        |text| {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d <= MAX_DURATION);
            }
            Ok(())
        },
    );
    check(
        "duration: long digit runs, no panic, bounded",
        "[0-9]{0,30}(\\.[0-9]{0,40})?(ms|s|m|h)?",
        |text| {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d <= MAX_DURATION);
            }
            Ok(())
        },
    );
    check(
        "duration: the canonical text of any duration parses back exactly",
        duration(),
        |d| {
            let shown = DurationArg(d).to_string();
            prop_assert_eq!(parse_duration(&shown), Ok(d), "{}", shown);
            Ok(())
        },
    );
    check(
        "duration: every unit is exact",
        (
            0u64..=8760,
            0u32..1000,
            proptest::sample::select(vec!["ms", "s", "m", "h", ""]),
        ),
        |(whole, millis, unit)| {
            let text = format!("{whole}.{millis:03}{unit}");
            let per: u128 = match unit {
                "ms" => 1_000_000,
                "s" | "" => 1_000_000_000,
                "m" => 60_000_000_000,
                _ => 3_600_000_000_000,
            };
            let nanos = u128::from(whole) * per + u128::from(millis) * per / 1000;
            match parse_duration(&text) {
                Ok(d) => prop_assert_eq!(d.as_nanos(), nanos, "{}", text),
                Err(e) => {
                    prop_assert!(
                        nanos > MAX_DURATION.as_nanos()
                            || !(per * u128::from(millis)).is_multiple_of(1000)
                    );
                    prop_assert!(!e.is_empty());
                }
            }
            Ok(())
        },
    );
    check(
        "duration: unknown or ambiguous units are refused with a reason",
        (
            0u32..1000,
            "(M|S|H|MS|min|mins|sec|secs|d|w|y|us|ns|µs|hr|hrs|e[0-9])",
        ),
        |(n, unit)| {
            let e = parse_duration(&format!("{n}{unit}")).unwrap_err();
            prop_assert!(e.contains("unit"), "{}", e);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// URLs for redaction

/// A secret: starts with a marker found nowhere else, then characters that survive in the
/// URL's part (raw spaces and `/` in passwords included: the forms parsers reject).
fn secret(extra: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(
            format!(
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%!$()*+-._~{extra}"
            )
            .chars()
            .collect::<Vec<_>>(),
        ),
        1..16,
    )
    .prop_map(|v| format!("QX{}", v.into_iter().collect::<String>()))
    // A `://` inside a password would start another URL (documented as not covered).
    .prop_filter("no URL start inside", |s| !s.contains("://"))
}

fn host() -> impl Strategy<Value = String> {
    "[a-p]{1,10}(\\.[a-p]{1,5}){0,2}(:[0-9]{1,5})?"
}

#[test]
fn redaction() {
    check("redact: any text, no panic", ".{0,120}", |text| {
        let _ = redact(&text);
        Ok(())
    });
    check(
        "redact: URL-shaped garbage, no panic, text without secrets kept",
        "[a-z:/@?&=#;, %.\\[\\]-]{0,60}",
        |text| {
            let out = redact(&text);
            if !text.contains("://") {
                prop_assert_eq!(out, text);
            }
            Ok(())
        },
    );
    check(
        "redact: userinfo passwords never survive, whatever they hold",
        (
            proptest::sample::select(vec!["postgres", "postgresql", "amqp", "amqps", "redis"]),
            "[a-p_]{0,8}",
            secret(" /:@"),
            host(),
            "(/[a-p%0-9]{0,8})?",
            "[ ,;]{0,1}(then [a-z ]{0,10})?",
        ),
        |(scheme, user, password, host, path, tail)| {
            let text = format!("connect {scheme}://{user}:{password}@{host}{path}{tail}");
            let out = redact(&text);
            prop_assert!(!out.contains("QX"), "{} -> {}", text, out);
            prop_assert!(
                out.contains(&format!("{scheme}://{user}:***@")),
                "{} -> {}",
                text,
                out
            );
            Ok(())
        },
    );
    check(
        "redact: secret query parameters never survive",
        (
            proptest::sample::select(vec!["https", "http", "postgres"]),
            host(),
            proptest::sample::select(vec![
                "password",
                "api-key",
                "apikey",
                "api_key",
                "token",
                "key",
                "secret",
                "access_token",
                "Password",
                "API-KEY",
                "sslpassword",
                "client_secret",
            ]),
            secret(" "),
            "(&[a-z]{1,5}=[a-z0-9]{0,5}){0,2}",
            any::<bool>(),
        ),
        |(scheme, host, key, value, more, first)| {
            let query = if first {
                format!("{key}={value}{more}")
            } else {
                format!("mode=x{more}&{key}={value}")
            };
            let text = format!("base_url `{scheme}://{host}/v1?{query}` refused");
            let out = redact(&text);
            prop_assert!(!out.contains("QX"), "{} -> {}", text, out);
            prop_assert!(out.contains(&format!("{key}=***")), "{} -> {}", text, out);
            Ok(())
        },
    );
    check(
        "redact: several URLs, each redacted, text without secrets unchanged",
        proptest::collection::vec((host(), secret(""), any::<bool>()), 1..4),
        |urls| {
            let list: Vec<String> = urls
                .iter()
                .map(|(host, pass, with_pass)| {
                    if *with_pass {
                        format!("amqp://u:{pass}@{host}/%2f")
                    } else {
                        format!("amqp://u@{host}/%2f")
                    }
                })
                .collect();
            let text = list.join(",");
            let out = redact(&text);
            prop_assert!(!out.contains("QX"), "{} -> {}", text, out);
            let masked = urls.iter().filter(|(_, _, p)| *p).count();
            prop_assert_eq!(out.matches(":***@").count(), masked, "{}", out);
            if masked == 0 {
                prop_assert_eq!(&out, &text);
            }
            // Redacting twice changes nothing more.
            prop_assert_eq!(redact(&out), out);
            Ok(())
        },
    );
}
