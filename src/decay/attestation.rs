//! Operator attestations for LLM summaries: the envelope (spec §7.2), its verification (§7.3),
//! the canonical signed bytes (§7.4), and the trust we add on top (spec §11 item 11).
//!
//! An LLM summary replaces human-curated memories with model output, so it only runs when an
//! operator has signed an envelope that pins the job, the model and the prompt template. The
//! reference checks the signature against a key carried *inside* the envelope, so anyone can mint
//! a valid one. We keep the reference's eleven checks, in order and with their exact detail texts
//! (so an envelope the reference rejects is rejected here with the same words), and only then
//! apply our own checks to envelopes the reference would have accepted:
//!
//! 0. **Strict Ed25519** (spec §11 item 11 again): step 11 uses `verify_strict`, and a weak
//!    (small-order) verifying key is refused before it, so the identity point with the signature
//!    `01 00…00` (R = identity, s = 0), which the reference's lax verification accepts for any
//!    message, forges nothing. Honest keys and the spec's test vector verify as before.
//! 1. **Trust anchor**, fail closed: the signed `operator_key_id` must be listed in the
//!    configured [`TrustedKeys`] and the envelope's verifying key must be the listed one. With
//!    no list configured every envelope is refused ([`AttestationError::NoTrustedKeys`]),
//!    unless the operator opted out explicitly ([`TrustPolicy::allow_untrusted_keys`], for
//!    demos), which restores the reference's "believe the envelope's own key".
//! 2. **Full digest form**: `prompt_template_blake3` must be `blake3:` + 64 lowercase hex digits,
//!    not merely start with the prefix.
//! 3. **Freshness**: `signed_at` must be RFC 3339, at most [`TrustPolicy::max_future_skew`] in the
//!    future, and (when configured) no older than [`TrustPolicy::max_age`].
//!
//! Who signed comes before what was signed and when, because an untrusted signer makes the rest
//! moot. All added checks run after the signature has verified, so we never interpret
//! unauthenticated field values beyond what the reference already does.
//!
//! The module also holds the operator tooling primitives (signing, template digests) so the CLI
//! and the tests share one implementation of the byte layout. It is pure: documents arrive as
//! text, and reading files or drawing a random seed is [`crate::llm::files`]' job.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ids::DecayJobId;

/// The only envelope schema version we accept (spec §9).
pub const DECAY_LLM_SUMMARY_ATTESTATION_SCHEMA_VERSION: u16 = 1;
/// The purpose string that binds an envelope to LLM decay summaries (spec §9), so a signature
/// made for another purpose under the same key cannot be replayed here.
pub const DECAY_LLM_SUMMARY_ATTESTATION_PURPOSE: &str = "cortex.decay.llm_summary";
/// First byte of the canonical signed bytes (spec §7.4): domain separation from any other
/// message the same key might sign.
pub const ATTESTATION_DOMAIN_TAG: u8 = 0x21;
/// Prefix of a prompt-template digest.
pub const PROMPT_TEMPLATE_DIGEST_PREFIX: &str = "blake3:";
/// Default tolerance for a `signed_at` slightly in the future: operator and worker clocks are
/// never perfectly in step, but an envelope dated well ahead is either a mistake or an attempt
/// to outlive a freshness window.
pub const DEFAULT_MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Length of an Ed25519 verifying key in bytes.
const VERIFYING_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
const SIGNATURE_LEN: usize = 64;
/// Lowercase hex digits of a BLAKE3 digest.
const BLAKE3_HEX_LEN: usize = 64;

/// The operator-attestation envelope file (spec §7.2). All nine fields are required; unknown
/// extra fields are ignored (so later schema additions do not break older workers).
///
/// Field order here is the order the envelope is written in by [`sign_envelope`] tooling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationEnvelope {
    /// Must equal [`DECAY_LLM_SUMMARY_ATTESTATION_SCHEMA_VERSION`]. A `u16`, so values such as
    /// 70000 fail decoding, as in the reference.
    pub schema_version: u16,
    /// Must equal [`DECAY_LLM_SUMMARY_ATTESTATION_PURPOSE`].
    pub purpose: String,
    /// Lowercase hex of the 32-byte Ed25519 verifying key. Not part of the signed bytes.
    pub operator_verifying_key_hex: String,
    /// Which operator signed; checked against [`TrustedKeys`] when configured.
    pub operator_key_id: String,
    /// When the operator signed, RFC 3339.
    pub signed_at: String,
    /// The canonical text of the one job this envelope authorises.
    pub decay_job_id: String,
    /// The model the operator pinned; the backend's echo must match it byte for byte.
    pub model_name: String,
    /// `blake3:` + 64 lowercase hex digits of the prompt template.
    pub prompt_template_blake3: String,
    /// Lowercase hex of the 64-byte Ed25519 signature over [`canonical_bytes`].
    pub signature_hex: String,
}

/// Why an envelope was refused. Display is the detail text alone; the runner wraps it as
/// `LlmSummaryAttestationRejected(detail)` and persists it in `state_reason`.
///
/// The first fourteen variants carry the reference's exact texts (spec §7.2, §7.3); the rest
/// are our added checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The path is not an existing regular file.
    #[error("envelope `{path}` not found")]
    EnvelopeNotFound {
        /// The path as given, displayed.
        path: String,
    },
    /// The file exists but reading it failed (including non-UTF-8 content).
    #[error("envelope `{path}` could not be read: {error}")]
    EnvelopeUnreadable {
        /// The path as given, displayed.
        path: String,
        /// The I/O error's display.
        error: String,
    },
    /// The JSON does not decode into the envelope shape (missing fields, wrong types, ranges).
    #[error("envelope `{path}` is not valid JSON: {error}")]
    EnvelopeInvalidJson {
        /// The path as given, displayed.
        path: String,
        /// The decoder's message.
        error: String,
    },
    /// §7.3 step 1.
    #[error("schema_version {0} (expected 1)")]
    SchemaVersion(u16),
    /// §7.3 step 2.
    #[error("purpose `{0}` (expected `cortex.decay.llm_summary`)")]
    Purpose(String),
    /// §7.3 step 3: byte-exact comparison with the job id's canonical text.
    #[error("decay_job_id `{found}` does not match job `{expected}`")]
    JobIdMismatch {
        /// The envelope's `decay_job_id`.
        found: String,
        /// The job's canonical id text.
        expected: String,
    },
    /// §7.3 step 4.
    #[error("model_name must be non-empty")]
    BlankModelName,
    /// §7.3 step 5.
    #[error("prompt_template_blake3 must use the `blake3:` prefix")]
    DigestPrefix,
    /// §7.3 step 6.
    #[error("operator_verifying_key_hex malformed: {0}")]
    VerifyingKeyHex(HexError),
    /// §7.3 step 7.
    #[error("operator_verifying_key_hex must decode to 32 bytes; got {0}")]
    VerifyingKeyLength(usize),
    /// §7.3 step 8: the bytes are not a valid Ed25519 point.
    #[error("operator_verifying_key_hex did not parse: {0}")]
    VerifyingKeyInvalid(String),
    /// §7.3 step 9.
    #[error("signature_hex malformed: {0}")]
    SignatureHex(HexError),
    /// §7.3 step 10.
    #[error("signature_hex must decode to 64 bytes; got {0}")]
    SignatureLength(usize),
    /// §7.3 step 11.
    #[error("Ed25519 signature did not verify under the declared operator key")]
    SignatureInvalid,
    /// Added, just before step 11: the declared key is a small-order point (the identity among
    /// them), under which a degenerate signature "verifies" for any message.
    #[error("operator_verifying_key_hex is a weak (small-order) Ed25519 key")]
    WeakVerifyingKey,
    /// Added: no trusted operator keys are configured and the opt-out is off (fail closed).
    #[error(
        "no trusted operator keys are configured (--trusted-operator-keys); refusing to trust the envelope's own key"
    )]
    NoTrustedKeys,
    /// Added: a trusted-keys list is configured and does not list this key id.
    #[error("operator_key_id `{0}` is not a trusted operator key")]
    UntrustedKeyId(String),
    /// Added: the key id is listed, but under a different verifying key.
    #[error("operator_verifying_key_hex does not match the trusted key for operator_key_id `{0}`")]
    TrustedKeyMismatch(String),
    /// Added: the digest has the prefix but not the full form.
    #[error(
        "prompt_template_blake3 must be `blake3:` followed by 64 lowercase hex digits; got `{0}`"
    )]
    DigestForm(String),
    /// Added: `signed_at` is not RFC 3339.
    #[error("signed_at `{signed_at}` is not an RFC 3339 timestamp: {error}")]
    SignedAtUnparsable {
        /// The envelope's `signed_at`.
        signed_at: String,
        /// The parser's message.
        error: String,
    },
    /// Added: `signed_at` lies further in the future than the allowed skew.
    #[error("signed_at `{signed_at}` is {ahead_secs}s in the future (allowed skew {skew_secs}s)")]
    SignedAtInFuture {
        /// The envelope's `signed_at`.
        signed_at: String,
        /// How far ahead of `now`, in whole seconds.
        ahead_secs: i64,
        /// The configured skew, in whole seconds.
        skew_secs: i64,
    },
    /// Added: `signed_at` is older than the configured maximum age.
    #[error("signed_at `{signed_at}` is {age_secs}s old (max age {max_age_secs}s)")]
    SignedAtTooOld {
        /// The envelope's `signed_at`.
        signed_at: String,
        /// Age at `now`, in whole seconds.
        age_secs: i64,
        /// The configured maximum, in whole seconds.
        max_age_secs: i64,
    },
}

/// A lowercase-hex decoding failure. Display texts are the reference's (spec §7.3 step 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The text has an odd number of bytes.
    #[error("odd hex length {0}")]
    OddLength(usize),
    /// The byte at this offset of the text is not `0-9a-f`.
    #[error("invalid hex byte at offset {0}")]
    InvalidByte(usize),
}

/// Decode lowercase hex. Uppercase is rejected on purpose: every key and signature then has
/// exactly one spelling, which keeps string comparisons and audit records unambiguous.
///
/// The length is checked first; offsets are byte offsets into `text`.
pub fn decode_lower_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(HexError::OddLength(bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        let offset = index * 2;
        if let [high, low] = pair {
            let high = lower_hex_value(*high).ok_or(HexError::InvalidByte(offset))?;
            let low = lower_hex_value(*low).ok_or(HexError::InvalidByte(offset + 1))?;
            out.push((high << 4) | low);
        }
    }
    Ok(out)
}

/// Encode bytes as lowercase hex, the only form [`decode_lower_hex`] accepts.
pub fn encode_lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The value of one lowercase hex digit.
fn lower_hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Whether `digest` is exactly `blake3:` followed by 64 lowercase hex digits (71 characters).
///
/// The reference only checks the prefix, which lets `blake3:` alone pin "a" template; the full
/// form makes the digest actually identify one template.
pub fn is_full_prompt_template_digest(digest: &str) -> bool {
    digest
        .strip_prefix(PROMPT_TEMPLATE_DIGEST_PREFIX)
        .is_some_and(|hex| {
            hex.len() == BLAKE3_HEX_LEN && hex.bytes().all(|b| lower_hex_value(b).is_some())
        })
}

/// The bytes the operator signs (spec §7.4, exact): the domain tag, `schema_version` as u16
/// big-endian, then `purpose`, `operator_key_id`, `signed_at`, `decay_job_id`, `model_name`,
/// `prompt_template_blake3`, each as a u64 big-endian byte length followed by the raw UTF-8.
///
/// No normalisation is applied: the bytes are the JSON-decoded strings as they are. The
/// verifying key and the signature are not covered (the key is pinned separately by
/// [`TrustedKeys`]).
pub fn canonical_bytes(env: &AttestationEnvelope) -> Vec<u8> {
    let fields = [
        env.purpose.as_str(),
        env.operator_key_id.as_str(),
        env.signed_at.as_str(),
        env.decay_job_id.as_str(),
        env.model_name.as_str(),
        env.prompt_template_blake3.as_str(),
    ];
    let capacity = 1 + 2 + fields.iter().map(|f| 8 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    out.push(ATTESTATION_DOMAIN_TAG);
    out.extend_from_slice(&env.schema_version.to_be_bytes());
    for field in fields {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

impl AttestationEnvelope {
    /// Decode an envelope from its JSON text (spec §7.2). `source` names where the text came
    /// from (the file path) in the reference's detail text; reading the file is the loader's
    /// job ([`crate::llm::files::load_envelope`]).
    pub fn parse(text: &str, source: &str) -> Result<AttestationEnvelope, AttestationError> {
        serde_json::from_str(text).map_err(|e| AttestationError::EnvelopeInvalidJson {
            path: source.to_owned(),
            error: e.to_string(),
        })
    }
}

/// One entry of the trusted-operator-keys file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyEntry {
    /// The operator key id an envelope must carry in `operator_key_id`.
    pub key_id: String,
    /// Lowercase hex of the operator's 32-byte Ed25519 verifying key.
    pub verifying_key_hex: String,
}

/// The on-disk shape `{"keys":[{"key_id":"...","verifying_key_hex":"..."}]}`. Unknown fields
/// are refused: a typo in a security allowlist should fail loudly, not be skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeysFile {
    /// The listed keys.
    pub keys: Vec<TrustedKeyEntry>,
}

/// The operator keys allowed to authorise LLM summaries: the trust anchor the reference lacks.
///
/// Validated when built, so a broken allowlist stops the worker at start instead of refusing
/// every LLM job later: every key id is non-blank and unique, every key is lowercase hex of a
/// valid Ed25519 point of full order (a weak key would let a degenerate signature verify), no key is listed twice (one key under two ids would make the audited
/// key id ambiguous), and the list is not empty (an empty list would refuse every envelope,
/// which is far more likely a mistake than a policy; to disable LLM jobs, don't schedule them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    by_id: BTreeMap<String, [u8; VERIFYING_KEY_LEN]>,
}

impl TrustedKeys {
    /// Decode and validate a trusted-keys JSON document. `source` (the file path) prefixes
    /// every error, which also names the bad entry.
    pub fn parse(text: &str, source: &str) -> Result<TrustedKeys, String> {
        let file: TrustedKeysFile = serde_json::from_str(text)
            .map_err(|e| format!("trusted operator keys file `{source}` is not valid JSON: {e}"))?;
        Self::from_entries(file.keys)
            .map_err(|e| format!("trusted operator keys file `{source}`: {e}"))
    }

    /// Build from entries with the same validation as [`TrustedKeys::parse`].
    pub fn from_entries(
        entries: impl IntoIterator<Item = TrustedKeyEntry>,
    ) -> Result<TrustedKeys, String> {
        let mut by_id = BTreeMap::new();
        let mut owners: BTreeMap<[u8; VERIFYING_KEY_LEN], String> = BTreeMap::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let TrustedKeyEntry {
                key_id,
                verifying_key_hex,
            } = entry;
            if key_id.trim().is_empty() {
                return Err(format!("key {index}: key_id must be non-empty"));
            }
            let bytes = decode_lower_hex(&verifying_key_hex).map_err(|e| {
                format!("key {index} (`{key_id}`): verifying_key_hex malformed: {e}")
            })?;
            let key: [u8; VERIFYING_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                format!(
                    "key {index} (`{key_id}`): verifying_key_hex must decode to 32 bytes; got {}",
                    bytes.len()
                )
            })?;
            let point = VerifyingKey::from_bytes(&key).map_err(|e| {
                format!("key {index} (`{key_id}`): verifying_key_hex did not parse: {e}")
            })?;
            if point.is_weak() {
                return Err(format!(
                    "key {index} (`{key_id}`): verifying_key_hex is a weak (small-order) Ed25519 key"
                ));
            }
            if by_id.contains_key(&key_id) {
                return Err(format!("key {index}: duplicate key_id `{key_id}`"));
            }
            if let Some(owner) = owners.get(&key) {
                return Err(format!(
                    "key {index} (`{key_id}`): verifying key already listed under key_id `{owner}`"
                ));
            }
            owners.insert(key, key_id.clone());
            by_id.insert(key_id, key);
        }
        if by_id.is_empty() {
            return Err("lists no keys".to_owned());
        }
        Ok(TrustedKeys { by_id })
    }

    /// The verifying key listed under `key_id`, if any.
    pub fn get(&self, key_id: &str) -> Option<&[u8; VERIFYING_KEY_LEN]> {
        self.by_id.get(key_id)
    }

    /// The listed key ids, sorted.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// Number of listed keys (never 0 for a built list).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Always false for a built list; present for API symmetry with [`TrustedKeys::len`].
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// What we require of an envelope beyond the reference's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// When set, only listed operator keys are accepted. `None` refuses every envelope,
    /// unless [`TrustPolicy::allow_untrusted_keys`] is on.
    pub trusted_keys: Option<TrustedKeys>,
    /// The documented opt-out for demos and local setups: with no [`TrustedKeys`] configured,
    /// believe the envelope's own key (the reference's behaviour, so anyone can mint a valid
    /// envelope). Off by default; ignored when a list is configured.
    pub allow_untrusted_keys: bool,
    /// When set, envelopes signed longer ago than this are refused.
    pub max_age: Option<Duration>,
    /// How far in the future `signed_at` may be, to absorb clock differences.
    pub max_future_skew: Duration,
}

impl Default for TrustPolicy {
    /// No trusted-keys list and no opt-out (so every envelope is refused until keys are
    /// configured: fail closed), no maximum age, 5 minutes of future skew.
    ///
    /// `max_age` defaults to `None` because an envelope is verified when the job *runs*, not
    /// when it is scheduled: a job may legitimately be scheduled days ahead (`scheduled_for`)
    /// or be recovered after a lease expiry, and a default cap would fail those jobs. Replay
    /// is already bounded by the job-id binding and by jobs never leaving a terminal state,
    /// and revocation is done by removing a key from [`TrustedKeys`]. Deployments that want
    /// a window set one explicitly. The future-skew check is always on: a signature dated
    /// ahead of time has no legitimate use.
    fn default() -> Self {
        TrustPolicy {
            trusted_keys: None,
            allow_untrusted_keys: false,
            max_age: None,
            max_future_skew: Duration::seconds(DEFAULT_MAX_FUTURE_SKEW.as_secs() as i64),
        }
    }
}

impl TrustPolicy {
    /// Whether this policy can accept any envelope at all: `Err(NoTrustedKeys)` when no
    /// trusted-keys list is configured and the opt-out is off. [`verify`] applies it in its
    /// trust-anchor step; `schedule` asks first, so it refuses before reading the envelope.
    pub fn check_configured(&self) -> Result<(), AttestationError> {
        if self.trusted_keys.is_none() && !self.allow_untrusted_keys {
            return Err(AttestationError::NoTrustedKeys);
        }
        Ok(())
    }
}

/// An envelope that passed every check: what the job path records for the audit trail (key id
/// and signature on the job, model name on the summary memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedAttestation {
    /// The (signed) operator key id.
    pub operator_key_id: String,
    /// The verifying key the signature was checked under.
    pub operator_verifying_key_hex: String,
    /// The verified signature.
    pub signature_hex: String,
    /// The envelope's `signed_at`, verbatim as signed.
    pub signed_at: String,
    /// The pinned model.
    pub model_name: String,
    /// The pinned prompt-template digest.
    pub prompt_template_blake3: String,
}

/// The accepted attestation as the job's row keeps it for audit (migration 0005): every
/// field the signature depends on, so the record re-verifies without the envelope file.
/// Fields are `None` for jobs that ran no attestation, or settled before the columns existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationAudit {
    /// The signed operator key id.
    pub key_id: Option<String>,
    /// The verifying key the signature was checked under.
    pub verifying_key_hex: Option<String>,
    /// The verified signature.
    pub signature_hex: Option<String>,
    /// `signed_at` exactly as signed (text: the signature covers its bytes).
    pub signed_at: Option<String>,
    /// The pinned model.
    pub model_name: Option<String>,
    /// The pinned prompt-template digest.
    pub prompt_template_blake3: Option<String>,
}

impl AttestationAudit {
    /// The envelope this record was accepted from, for `job_id`; `None` if a field is missing.
    /// Re-verify it with [`verify`] (and the trusted keys of the day) to check the record.
    pub fn envelope(&self, job_id: &DecayJobId) -> Option<AttestationEnvelope> {
        Some(AttestationEnvelope {
            schema_version: DECAY_LLM_SUMMARY_ATTESTATION_SCHEMA_VERSION,
            purpose: DECAY_LLM_SUMMARY_ATTESTATION_PURPOSE.to_owned(),
            operator_verifying_key_hex: self.verifying_key_hex.clone()?,
            operator_key_id: self.key_id.clone()?,
            signed_at: self.signed_at.clone()?,
            decay_job_id: job_id.to_string(),
            model_name: self.model_name.clone()?,
            prompt_template_blake3: self.prompt_template_blake3.clone()?,
            signature_hex: self.signature_hex.clone()?,
        })
    }
}

/// Verify an envelope for `job_id` under `policy`, with `now` as the clock (the runner's one
/// clock per run, so freshness decisions are reproducible in tests).
///
/// Order: the reference's eleven steps (spec §7.3) with their exact texts, then the trust
/// anchor, the full digest form, and the `signed_at` parse, skew and age checks. The first
/// failure wins.
pub fn verify(
    env: &AttestationEnvelope,
    job_id: &DecayJobId,
    policy: &TrustPolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedAttestation, AttestationError> {
    // 1-5: field checks, reference order.
    if env.schema_version != DECAY_LLM_SUMMARY_ATTESTATION_SCHEMA_VERSION {
        return Err(AttestationError::SchemaVersion(env.schema_version));
    }
    if env.purpose != DECAY_LLM_SUMMARY_ATTESTATION_PURPOSE {
        return Err(AttestationError::Purpose(env.purpose.clone()));
    }
    let expected_job = job_id.to_string();
    if env.decay_job_id != expected_job {
        return Err(AttestationError::JobIdMismatch {
            found: env.decay_job_id.clone(),
            expected: expected_job,
        });
    }
    if env.model_name.trim().is_empty() {
        return Err(AttestationError::BlankModelName);
    }
    if !env
        .prompt_template_blake3
        .starts_with(PROMPT_TEMPLATE_DIGEST_PREFIX)
    {
        return Err(AttestationError::DigestPrefix);
    }

    // 6-8: the declared verifying key.
    let key_bytes = decode_lower_hex(&env.operator_verifying_key_hex)
        .map_err(AttestationError::VerifyingKeyHex)?;
    let key_array: [u8; VERIFYING_KEY_LEN] = key_bytes
        .as_slice()
        .try_into()
        .map_err(|_| AttestationError::VerifyingKeyLength(key_bytes.len()))?;
    let key = VerifyingKey::from_bytes(&key_array)
        .map_err(|e| AttestationError::VerifyingKeyInvalid(e.to_string()))?;

    // 9-11: the signature. Strict verification (the reference uses the lax one): it refuses
    // non-canonical encodings and small-order keys and R values.
    let sig_bytes = decode_lower_hex(&env.signature_hex).map_err(AttestationError::SignatureHex)?;
    let sig_array: [u8; SIGNATURE_LEN] = sig_bytes
        .as_slice()
        .try_into()
        .map_err(|_| AttestationError::SignatureLength(sig_bytes.len()))?;
    let signature = Signature::from_bytes(&sig_array);
    if key.is_weak() {
        return Err(AttestationError::WeakVerifyingKey);
    }
    key.verify_strict(&canonical_bytes(env), &signature)
        .map_err(|_| AttestationError::SignatureInvalid)?;

    // Added: who signed. Compared as bytes; with lowercase-only hex that equals comparing text.
    match &policy.trusted_keys {
        Some(trusted) => {
            let listed = trusted
                .get(&env.operator_key_id)
                .ok_or_else(|| AttestationError::UntrustedKeyId(env.operator_key_id.clone()))?;
            if *listed != key_array {
                return Err(AttestationError::TrustedKeyMismatch(
                    env.operator_key_id.clone(),
                ));
            }
        }
        None => policy.check_configured()?,
    }

    // Added: what was signed must identify exactly one template.
    if !is_full_prompt_template_digest(&env.prompt_template_blake3) {
        return Err(AttestationError::DigestForm(
            env.prompt_template_blake3.clone(),
        ));
    }

    // Added: when it was signed.
    let signed_at = DateTime::parse_from_rfc3339(&env.signed_at)
        .map_err(|e| AttestationError::SignedAtUnparsable {
            signed_at: env.signed_at.clone(),
            error: e.to_string(),
        })?
        .with_timezone(&Utc);
    let ahead = signed_at.signed_duration_since(now);
    if ahead > policy.max_future_skew {
        return Err(AttestationError::SignedAtInFuture {
            signed_at: env.signed_at.clone(),
            ahead_secs: ahead.num_seconds(),
            skew_secs: policy.max_future_skew.num_seconds(),
        });
    }
    if let Some(max_age) = policy.max_age {
        let age = now.signed_duration_since(signed_at);
        if age > max_age {
            return Err(AttestationError::SignedAtTooOld {
                signed_at: env.signed_at.clone(),
                age_secs: age.num_seconds(),
                max_age_secs: max_age.num_seconds(),
            });
        }
    }

    Ok(VerifiedAttestation {
        operator_key_id: env.operator_key_id.clone(),
        operator_verifying_key_hex: env.operator_verifying_key_hex.clone(),
        signature_hex: env.signature_hex.clone(),
        signed_at: env.signed_at.clone(),
        model_name: env.model_name.clone(),
        prompt_template_blake3: env.prompt_template_blake3.clone(),
    })
}

/// An operator's signing key file, as written by `attest keygen` (mode 0600 is the CLI's job).
///
/// Debug redacts the seed so the key never lands in logs by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorKeyFile {
    /// The key id to put in `operator_key_id` and in the trusted-keys list.
    pub key_id: String,
    /// Lowercase hex of the 32-byte Ed25519 secret seed.
    pub secret_seed_hex: String,
}

impl fmt::Debug for OperatorKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorKeyFile")
            .field("key_id", &self.key_id)
            .field("secret_seed_hex", &"<redacted>")
            .finish()
    }
}

impl OperatorKeyFile {
    /// Decode and check a key file's JSON text. `source` (the file path) prefixes every error.
    pub fn parse(text: &str, source: &str) -> Result<OperatorKeyFile, String> {
        let file: OperatorKeyFile = serde_json::from_str(text)
            .map_err(|e| format!("operator key file `{source}` is not valid JSON: {e}"))?;
        file.seed()
            .map_err(|e| format!("operator key file `{source}`: {e}"))?;
        Ok(file)
    }

    /// A key file for `seed` under `key_id`; the id must not be blank.
    pub fn from_seed(key_id: &str, seed: &[u8; 32]) -> Result<OperatorKeyFile, String> {
        if key_id.trim().is_empty() {
            return Err("key id must be non-empty".to_owned());
        }
        Ok(OperatorKeyFile {
            key_id: key_id.to_owned(),
            secret_seed_hex: encode_lower_hex(seed),
        })
    }

    /// The 32-byte secret seed.
    pub fn seed(&self) -> Result<[u8; 32], String> {
        let bytes = decode_lower_hex(&self.secret_seed_hex)
            .map_err(|e| format!("secret_seed_hex malformed: {e}"))?;
        bytes.as_slice().try_into().map_err(|_| {
            format!(
                "secret_seed_hex must decode to 32 bytes; got {}",
                bytes.len()
            )
        })
    }

    /// Lowercase hex of the verifying key, for the trusted-keys list.
    pub fn verifying_key_hex(&self) -> Result<String, String> {
        Ok(verifying_key_hex(&self.seed()?))
    }
}

/// Lowercase hex of the verifying key that belongs to `seed`.
pub fn verifying_key_hex(seed: &[u8; 32]) -> String {
    encode_lower_hex(SigningKey::from_bytes(seed).verifying_key().as_bytes())
}

/// Build and sign an envelope for `job_id`. Ed25519 signing is deterministic, so the same
/// inputs always give the same envelope (the spec's test vector is reproducible).
///
/// Nothing is validated here; run [`verify`] on the result to check it as a worker would.
pub fn sign_envelope(
    seed: &[u8; 32],
    key_id: &str,
    signed_at: &str,
    job_id: &DecayJobId,
    model_name: &str,
    prompt_template_blake3: &str,
) -> AttestationEnvelope {
    let signing_key = SigningKey::from_bytes(seed);
    let mut env = AttestationEnvelope {
        schema_version: DECAY_LLM_SUMMARY_ATTESTATION_SCHEMA_VERSION,
        purpose: DECAY_LLM_SUMMARY_ATTESTATION_PURPOSE.to_owned(),
        operator_verifying_key_hex: encode_lower_hex(signing_key.verifying_key().as_bytes()),
        operator_key_id: key_id.to_owned(),
        signed_at: signed_at.to_owned(),
        decay_job_id: job_id.to_string(),
        model_name: model_name.to_owned(),
        prompt_template_blake3: prompt_template_blake3.to_owned(),
        signature_hex: String::new(),
    };
    let signature = signing_key.sign(&canonical_bytes(&env));
    env.signature_hex = encode_lower_hex(&signature.to_bytes());
    env
}

/// The digest an envelope pins for a prompt template: `blake3:` + 64 lowercase hex digits of
/// the template's exact bytes.
pub fn prompt_template_digest(template_bytes: &[u8]) -> String {
    format!(
        "{PROMPT_TEMPLATE_DIGEST_PREFIX}{}",
        blake3::hash(template_bytes).to_hex()
    )
}

#[cfg(test)]
mod tests;
