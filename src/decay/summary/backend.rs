//! Summary backends: the contract between the LLM job path and whatever produces the summary
//! text (spec §7.8).
//!
//! The reference contract is synchronous; ours is async because a real backend is a network
//! call and the worker runs many jobs on one runtime. The trait returns a boxed future rather
//! than using `async fn` so that it stays object-safe: the worker picks a backend at start from
//! configuration and holds it as `Arc<dyn SummaryBackend>`.
//!
//! Shipped here:
//! * [`NoopBackend`], the default everywhere: LLM jobs fail with
//!   `summary_backend_not_configured` until an operator deliberately picks a backend.
//! * [`ReplayBackend`], fixture-driven, for CI and offline runs.
//!
//! The OpenAI-compatible chat-completions HTTP backend (OpenAI, vLLM, Ollama, llama.cpp
//! servers) lives in [`super::openai`], with a model allowlist and a fixed prompt template whose
//! digest must equal the request's. Like every backend here it must
//! never substitute a model name in `model_name_echoed` (spec §11 item 12), so the runner's
//! echo check stays meaningful.
//!
//! Backends never validate the response against the attestation; the job path does (spec §7.6).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// Domain string hashed first in every replay request hash, so the hash cannot collide with a
/// hash of any other JSON object we might compute (spec §9).
pub const SUMMARY_REQUEST_HASH_DOMAIN: &str = "cortex.llm.summary.request.v1";

/// What the job path asks a backend to summarise (spec §7.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRequest {
    /// The model the operator pinned in the attestation.
    pub model_name: String,
    /// The prompt-template digest the operator pinned, `blake3:` + 64 hex.
    pub prompt_template_blake3: String,
    /// Source texts in job order; duplicates kept (order and multiplicity change the hash).
    pub source_claims: Vec<String>,
    /// Output budget in bytes; the job path sends 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u32>,
    /// The job's canonical id text, for backend-side logging and fixture keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_job_id: Option<String>,
}

/// Token accounting reported by a backend, when it has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// A backend's answer. It is validated by the job path (spec §7.6), never trusted as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryResponse {
    /// The summary text, stored verbatim as the summary memory's claim if it validates.
    pub claim: String,
    /// Token accounting, if the backend reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsage>,
    /// The model that actually answered, as reported by the service. Must be passed through
    /// unchanged: the job path compares it with the attested model.
    pub model_name_echoed: String,
}

/// Why a backend produced no summary. Display is exact (spec §7.8): the stable token comes
/// first so logs and `state_reason` can be grepped for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// No usable backend (the default `noop`), or a replay fixture miss.
    #[error("summary_backend_not_configured")]
    BackendNotConfigured,
    /// The requested model is not allowed by this backend.
    #[error("summary_model_not_in_allowlist: {0}")]
    ModelNotInAllowlist(String),
    /// The request's prompt-template digest is not this backend's template.
    #[error("summary_prompt_template_mismatch: {0}")]
    PromptTemplateMismatch(String),
    /// The call failed: transport, timeout, HTTP status, fixture loading.
    #[error("summary_call_failed: {0}")]
    CallFailed(String),
    /// The service answered, but the output is unusable (empty, over budget, ...).
    #[error("summary_output_validation_failed: {0}")]
    OutputValidationFailed(String),
}

/// The future a backend returns: boxed so the trait can be used as `dyn SummaryBackend`.
pub type SummaryFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SummaryResponse, SummaryError>> + Send + 'a>>;

/// Something that turns source claims into one summary claim.
///
/// Contract (spec §7.8): never panic; check your own model allowlist and template digest
/// before making any call; report timeouts as [`SummaryError::CallFailed`]; return the
/// service's echoed model name unchanged.
pub trait SummaryBackend: Send + Sync {
    /// Summarise `request`.
    fn summarize<'a>(
        &'a self,
        request: &'a SummaryRequest,
    ) -> Pin<Box<dyn Future<Output = Result<SummaryResponse, SummaryError>> + Send + 'a>>;

    /// A short stable name for logs and metrics (`noop`, `replay`, ...).
    fn name(&self) -> &'static str;
}

/// The default backend: refuses every request, so LLM summaries need a deliberate choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoopBackend;

impl SummaryBackend for NoopBackend {
    fn summarize<'a>(&'a self, _request: &'a SummaryRequest) -> SummaryFuture<'a> {
        Box::pin(std::future::ready(Err(SummaryError::BackendNotConfigured)))
    }

    fn name(&self) -> &'static str {
        "noop"
    }
}

/// One fixture entry: a request and the response to replay for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEntry {
    /// The request, keyed by its [`request_hash`].
    pub request: SummaryRequest,
    /// The response returned verbatim on a hit.
    pub response: SummaryResponse,
}

/// The fixture file `{"entries":[{"request":{…},"response":{…}}, …]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayFixture {
    /// The entries, at most one per request hash.
    pub entries: Vec<ReplayEntry>,
}

/// Replays recorded responses keyed by [`request_hash`], for CI and offline runs.
///
/// A miss returns [`SummaryError::BackendNotConfigured`], as the reference does. Spec §11
/// item 12 calls that misleading, but keeping it means fixtures and runbooks written for the
/// reference behave the same here; the `replay` backend name in logs tells the two cases apart.
/// A hit returns the stored response verbatim, including its echoed model name, so a fixture
/// can also exercise the job path's echo check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayBackend {
    responses: HashMap<String, SummaryResponse>,
}

impl ReplayBackend {
    /// Load a fixture file. Errors use the reference's exact texts.
    pub fn load(path: &Path) -> Result<Self, SummaryError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            SummaryError::CallFailed(format!("fixture `{shown}` not readable: {e}"))
        })?;
        let fixture: ReplayFixture = serde_json::from_str(&text).map_err(|e| {
            SummaryError::CallFailed(format!("fixture `{shown}` did not parse: {e}"))
        })?;
        Self::from_fixture(fixture)
    }

    /// Build from an in-memory fixture; two entries with the same request hash are refused,
    /// because which one wins would otherwise depend on file order.
    pub fn from_fixture(fixture: ReplayFixture) -> Result<Self, SummaryError> {
        let mut responses = HashMap::with_capacity(fixture.entries.len());
        for entry in fixture.entries {
            let hash = request_hash(&entry.request);
            if responses.contains_key(&hash) {
                return Err(SummaryError::CallFailed(format!(
                    "duplicate replay summary fixture for request_hash={hash}"
                )));
            }
            responses.insert(hash, entry.response);
        }
        Ok(ReplayBackend { responses })
    }

    /// Number of fixture entries.
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    /// Whether the fixture has no entries (every request then misses).
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// The recorded response for `request`, or `BackendNotConfigured` on a miss.
    pub fn lookup(&self, request: &SummaryRequest) -> Result<SummaryResponse, SummaryError> {
        self.responses
            .get(&request_hash(request))
            .cloned()
            .ok_or(SummaryError::BackendNotConfigured)
    }
}

impl SummaryBackend for ReplayBackend {
    fn summarize<'a>(&'a self, request: &'a SummaryRequest) -> SummaryFuture<'a> {
        Box::pin(std::future::ready(self.lookup(request)))
    }

    fn name(&self) -> &'static str {
        "replay"
    }
}

/// The replay lookup key (spec §7.8): lowercase hex BLAKE3 of the compact JSON object
/// `{"domain":"cortex.llm.summary.request.v1","model_name":…,"prompt_template_blake3":…,
/// "source_claims":[…],"max_output_bytes":…,"decay_job_id":…}`, the last two omitted when
/// absent. Any change, including claim order, changes the hash.
///
/// The JSON is written by hand rather than through `serde_json::to_vec` so that the byte layout
/// is pinned here (key order, escaping) and the function is infallible; a test checks it
/// against `serde_json` for awkward strings.
pub fn request_hash(request: &SummaryRequest) -> String {
    let mut json = String::with_capacity(
        128 + request
            .source_claims
            .iter()
            .map(|c| c.len() + 3)
            .sum::<usize>(),
    );
    json.push_str("{\"domain\":");
    push_json_string(&mut json, SUMMARY_REQUEST_HASH_DOMAIN);
    json.push_str(",\"model_name\":");
    push_json_string(&mut json, &request.model_name);
    json.push_str(",\"prompt_template_blake3\":");
    push_json_string(&mut json, &request.prompt_template_blake3);
    json.push_str(",\"source_claims\":[");
    for (index, claim) in request.source_claims.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        push_json_string(&mut json, claim);
    }
    json.push(']');
    if let Some(max) = request.max_output_bytes {
        json.push_str(",\"max_output_bytes\":");
        json.push_str(&max.to_string());
    }
    if let Some(job_id) = &request.decay_job_id {
        json.push_str(",\"decay_job_id\":");
        push_json_string(&mut json, job_id);
    }
    json.push('}');
    blake3::hash(json.as_bytes()).to_hex().to_string()
}

/// Append `text` as a JSON string with standard escaping (the same bytes `serde_json`
/// writes): `"` and `\` escaped, `\b \f \n \r \t` short forms, other control characters as
/// `\u00xx` in lowercase hex, and everything else, non-ASCII included, raw.
fn push_json_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let code = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[code >> 4]));
                out.push(char::from(HEX[code & 0x0f]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

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

    /// A unique scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("backend-test-{}", ulid::Ulid::new()));
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
        let backend = ReplayBackend::load(&path).unwrap();
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
        let backend = ReplayBackend::load(&dir.write("f.json", text)).unwrap();
        assert_eq!(
            backend.lookup(&bare_request()),
            Ok(SummaryResponse {
                claim: "s".into(),
                token_usage: None,
                model_name_echoed: MODEL.into(),
            })
        );
        let empty = ReplayBackend::load(&dir.write("e.json", r#"{"entries":[]}"#)).unwrap();
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
            ReplayBackend::load(&path).unwrap_err().to_string(),
            "summary_call_failed: duplicate replay summary fixture for request_hash=2676416f23added67412f8f9bff4a3f7bbf25119be9f8b43c460ee08e90bce25"
        );
    }

    #[test]
    fn replay_load_errors() {
        let dir = Scratch::new();
        let missing = dir.0.join("missing.json");
        match ReplayBackend::load(&missing).unwrap_err() {
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
            match ReplayBackend::load(&path).unwrap_err() {
                SummaryError::CallFailed(m) => assert!(
                    m.starts_with(&format!("fixture `{}` did not parse: ", path.display())),
                    "{m}"
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
