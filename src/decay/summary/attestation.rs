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
//! 1. **Trust anchor** (only when a [`TrustedKeys`] list is configured): the signed
//!    `operator_key_id` must be listed and the envelope's verifying key must be the listed one.
//! 2. **Full digest form**: `prompt_template_blake3` must be `blake3:` + 64 lowercase hex digits,
//!    not merely start with the prefix.
//! 3. **Freshness**: `signed_at` must be RFC 3339, at most [`TrustPolicy::max_future_skew`] in the
//!    future, and (when configured) no older than [`TrustPolicy::max_age`].
//!
//! Who signed comes before what was signed and when, because an untrusted signer makes the rest
//! moot. All added checks run after the signature has verified, so we never interpret
//! unauthenticated field values beyond what the reference already does.
//!
//! The module also holds the operator tooling primitives (key generation, signing, template
//! digests) so the CLI and the tests share one implementation of the byte layout.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
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
pub const DEFAULT_MAX_FUTURE_SKEW_SECS: i64 = 300;

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

/// Load an envelope file (spec §7.2), with the reference's three loading detail texts.
///
/// Anything that is not an existing regular file (missing, a directory, unreadable metadata)
/// reports "not found"; the file is read as UTF-8 text, so non-UTF-8 content is a read error.
pub fn load_envelope(path: &Path) -> Result<AttestationEnvelope, AttestationError> {
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(AttestationError::EnvelopeNotFound { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(|e| AttestationError::EnvelopeUnreadable {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| AttestationError::EnvelopeInvalidJson {
        path: shown,
        error: e.to_string(),
    })
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
/// valid Ed25519 point, no key is listed twice (one key under two ids would make the audited
/// key id ambiguous), and the list is not empty (an empty list would refuse every envelope,
/// which is far more likely a mistake than a policy; to disable LLM jobs, don't schedule them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    by_id: BTreeMap<String, [u8; VERIFYING_KEY_LEN]>,
}

impl TrustedKeys {
    /// Load and validate a trusted-keys JSON file. Errors name the file and the bad entry.
    pub fn load(path: &Path) -> Result<TrustedKeys, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("trusted operator keys file `{shown}` could not be read: {e}"))?;
        let file: TrustedKeysFile = serde_json::from_str(&text)
            .map_err(|e| format!("trusted operator keys file `{shown}` is not valid JSON: {e}"))?;
        Self::from_entries(file.keys)
            .map_err(|e| format!("trusted operator keys file `{shown}`: {e}"))
    }

    /// Build from entries with the same validation as [`TrustedKeys::load`].
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
            VerifyingKey::from_bytes(&key).map_err(|e| {
                format!("key {index} (`{key_id}`): verifying_key_hex did not parse: {e}")
            })?;
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
    /// When set, only listed operator keys are accepted. `None` keeps the reference's
    /// behaviour for keys (the envelope's own key is believed), for local and test setups.
    pub trusted_keys: Option<TrustedKeys>,
    /// When set, envelopes signed longer ago than this are refused.
    pub max_age: Option<Duration>,
    /// How far in the future `signed_at` may be, to absorb clock differences.
    pub max_future_skew: Duration,
}

impl Default for TrustPolicy {
    /// No trusted-keys list, no maximum age, 5 minutes of future skew.
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
            max_age: None,
            max_future_skew: Duration::seconds(DEFAULT_MAX_FUTURE_SKEW_SECS),
        }
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

    // 9-11: the signature, standard (non-strict) Ed25519 verification as in the reference.
    let sig_bytes = decode_lower_hex(&env.signature_hex).map_err(AttestationError::SignatureHex)?;
    let sig_array: [u8; SIGNATURE_LEN] = sig_bytes
        .as_slice()
        .try_into()
        .map_err(|_| AttestationError::SignatureLength(sig_bytes.len()))?;
    let signature = Signature::from_bytes(&sig_array);
    key.verify(&canonical_bytes(env), &signature)
        .map_err(|_| AttestationError::SignatureInvalid)?;

    // Added: who signed. Compared as bytes; with lowercase-only hex that equals comparing text.
    if let Some(trusted) = &policy.trusted_keys {
        let listed = trusted
            .get(&env.operator_key_id)
            .ok_or_else(|| AttestationError::UntrustedKeyId(env.operator_key_id.clone()))?;
        if *listed != key_array {
            return Err(AttestationError::TrustedKeyMismatch(
                env.operator_key_id.clone(),
            ));
        }
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
    /// Read a key file written by [`generate_key_file`] tooling.
    pub fn load(path: &Path) -> Result<OperatorKeyFile, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("operator key file `{shown}` could not be read: {e}"))?;
        let file: OperatorKeyFile = serde_json::from_str(&text)
            .map_err(|e| format!("operator key file `{shown}` is not valid JSON: {e}"))?;
        file.seed()
            .map_err(|e| format!("operator key file `{shown}`: {e}"))?;
        Ok(file)
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

/// A new operator key with a fresh random seed from the operating system.
pub fn generate_key_file(key_id: &str) -> Result<OperatorKeyFile, String> {
    if key_id.trim().is_empty() {
        return Err("key id must be non-empty".to_owned());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| format!("could not gather randomness for an operator key: {e}"))?;
    Ok(OperatorKeyFile {
        key_id: key_id.to_owned(),
        secret_seed_hex: encode_lower_hex(&seed),
    })
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
mod tests {
    use super::*;
    use std::path::PathBuf;

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

    fn detail(env: &AttestationEnvelope, policy: &TrustPolicy) -> String {
        verify(env, &job(), policy, now()).unwrap_err().to_string()
    }

    fn default_detail(env: &AttestationEnvelope) -> String {
        detail(env, &TrustPolicy::default())
    }

    /// A unique scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("attestation-test-{}", ulid::Ulid::new()));
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
        let verified = verify(&env, &job(), &TrustPolicy::default(), now()).unwrap();
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
            ..TrustPolicy::default()
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
            ..TrustPolicy::default()
        };
        assert!(verify(&good_envelope(), &job(), &policy, now()).is_ok());
    }

    #[test]
    fn trusted_keys_reject_unlisted_key_id() {
        let policy = TrustPolicy {
            trusted_keys: Some(trusted(&[("k0", &SEED)])),
            ..TrustPolicy::default()
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
        assert!(verify(&minted, &job(), &TrustPolicy::default(), now()).is_ok());
        let policy = TrustPolicy {
            trusted_keys: Some(trusted(&[("k1", &SEED)])),
            ..TrustPolicy::default()
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
            ..TrustPolicy::default()
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
        assert!(verify(&env, &job(), &TrustPolicy::default(), now()).is_ok());
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
        assert!(verify(&at_limit, &job(), &TrustPolicy::default(), now()).is_ok());
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
            ..TrustPolicy::default()
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
        assert!(verify(&old, &job(), &TrustPolicy::default(), now()).is_ok());

        let policy = TrustPolicy {
            max_age: Some(Duration::minutes(30)),
            ..TrustPolicy::default()
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
    fn load_good_envelope_ignores_unknown_fields() {
        let dir = Scratch::new();
        let mut value = serde_json::to_value(good_envelope()).unwrap();
        value["comment"] = serde_json::json!("extra");
        let path = dir.write("env.json", serde_json::to_vec(&value).unwrap());
        assert_eq!(load_envelope(&path).unwrap(), good_envelope());
    }

    #[test]
    fn load_missing_file_or_directory_is_not_found() {
        let dir = Scratch::new();
        let missing = dir.0.join("nope.json");
        assert_eq!(
            load_envelope(&missing).unwrap_err().to_string(),
            format!("envelope `{}` not found", missing.display())
        );
        assert_eq!(
            load_envelope(&dir.0).unwrap_err().to_string(),
            format!("envelope `{}` not found", dir.0.display())
        );
    }

    #[test]
    fn load_non_utf8_is_a_read_error() {
        let dir = Scratch::new();
        let path = dir.write("env.json", [0xffu8, 0xfe, b'{']);
        let err = load_envelope(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "envelope `{}` could not be read: ",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn load_bad_json_missing_field_and_out_of_range_version() {
        let dir = Scratch::new();
        let prefix = |p: &Path| format!("envelope `{}` is not valid JSON: ", p.display());

        let path = dir.write("bad.json", "{not json");
        let err = load_envelope(&path).unwrap_err().to_string();
        assert!(err.starts_with(&prefix(&path)), "{err}");

        let mut value = serde_json::to_value(good_envelope()).unwrap();
        value.as_object_mut().unwrap().remove("signed_at");
        let path = dir.write("missing.json", serde_json::to_vec(&value).unwrap());
        let err = load_envelope(&path).unwrap_err().to_string();
        assert!(err.starts_with(&prefix(&path)), "{err}");
        assert!(err.contains("missing field `signed_at`"), "{err}");

        let mut value = serde_json::to_value(good_envelope()).unwrap();
        value["schema_version"] = serde_json::json!(70000);
        let path = dir.write("range.json", serde_json::to_vec(&value).unwrap());
        let err = load_envelope(&path).unwrap_err().to_string();
        assert!(err.starts_with(&prefix(&path)), "{err}");
        assert!(err.contains("70000"), "{err}");

        let mut value = serde_json::to_value(good_envelope()).unwrap();
        value["model_name"] = serde_json::json!(7);
        let path = dir.write("type.json", serde_json::to_vec(&value).unwrap());
        assert!(
            load_envelope(&path)
                .unwrap_err()
                .to_string()
                .starts_with(&prefix(&path))
        );
    }

    #[test]
    fn envelope_json_round_trip_field_order() {
        let json = serde_json::to_string(&vector_envelope()).unwrap();
        assert!(json.starts_with(r#"{"schema_version":1,"purpose":"cortex.decay.llm_summary","operator_verifying_key_hex":"#));
        let back: AttestationEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vector_envelope());
    }

    #[test]
    fn trusted_keys_load_good_file() {
        let dir = Scratch::new();
        let text = format!(
            r#"{{"keys":[{{"key_id":"k1","verifying_key_hex":"{VECTOR_KEY_HEX}"}},{{"key_id":"k2","verifying_key_hex":"{}"}}]}}"#,
            verifying_key_hex(&[3u8; 32])
        );
        let keys = TrustedKeys::load(&dir.write("keys.json", text)).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(!keys.is_empty());
        assert_eq!(keys.key_ids().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(encode_lower_hex(keys.get("k1").unwrap()), VECTOR_KEY_HEX);
        assert!(keys.get("k3").is_none());
    }

    #[test]
    fn trusted_keys_load_errors() {
        let dir = Scratch::new();
        let missing = dir.0.join("none.json");
        let err = TrustedKeys::load(&missing).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "trusted operator keys file `{}` could not be read: ",
                missing.display()
            )),
            "{err}"
        );

        let check = |name: &str, text: String, want: &str| {
            let path = dir.write(name, text);
            let err = TrustedKeys::load(&path).unwrap_err();
            let prefix = format!("trusted operator keys file `{}`", path.display());
            assert!(err.starts_with(&prefix), "{err}");
            assert!(err.contains(want), "{err} should contain {want}");
        };
        let entry =
            |id: &str, hex: &str| format!(r#"{{"key_id":"{id}","verifying_key_hex":"{hex}"}}"#);
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
    fn generated_key_files_sign_verifiable_envelopes() {
        let file = generate_key_file("ops-2026").unwrap();
        assert_eq!(file.key_id, "ops-2026");
        assert_eq!(file.secret_seed_hex.len(), 64);
        let other = generate_key_file("ops-2026").unwrap();
        assert_ne!(file.secret_seed_hex, other.secret_seed_hex);
        assert!(!format!("{file:?}").contains(&file.secret_seed_hex));

        let seed = file.seed().unwrap();
        let env = sign_envelope(&seed, &file.key_id, SIGNED_AT, &job(), "m@1", &digest());
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
        assert!(verify(&env, &job(), &policy, now()).is_ok());

        assert_eq!(
            generate_key_file("  ").unwrap_err(),
            "key id must be non-empty"
        );
    }

    #[test]
    fn operator_key_file_load() {
        let dir = Scratch::new();
        let good = OperatorKeyFile {
            key_id: "k1".into(),
            secret_seed_hex: encode_lower_hex(&SEED),
        };
        let path = dir.write("key.json", serde_json::to_vec(&good).unwrap());
        let loaded = OperatorKeyFile::load(&path).unwrap();
        assert_eq!(loaded, good);
        assert_eq!(loaded.seed().unwrap(), SEED);
        assert_eq!(loaded.verifying_key_hex().unwrap(), VECTOR_KEY_HEX);

        let short = dir.write("short.json", r#"{"key_id":"k1","secret_seed_hex":"00"}"#);
        assert!(
            OperatorKeyFile::load(&short)
                .unwrap_err()
                .ends_with("secret_seed_hex must decode to 32 bytes; got 1")
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
}
