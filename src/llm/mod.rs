//! LLM summaries, the adapter side: summary backends (the contract between the LLM job path
//! and whatever produces the summary text, spec §7.8) and the files the path reads.
//!
//! The domain ([`crate::decay::attestation`], [`crate::decay::llm_summary`]) decides what is
//! allowed and checks answers; this module talks to the outside: it calls a backend, over HTTP
//! for [`openai`], and [`files`] reads envelopes, key lists, key files and fixtures from disk
//! and hands their text to the domain's parsers.
//!
//! The reference contract is synchronous; ours is async because a real backend is a network
//! call and the worker runs many jobs on one runtime. The trait returns a boxed future rather
//! than using `async fn` so that it stays object-safe: the worker picks a backend at start from
//! configuration and holds it as `Arc<dyn SummaryBackend>`.
//!
//! Shipped here:
//! * [`NoopBackend`], the default everywhere: LLM jobs fail with
//!   `summary_backend_not_configured` until an operator deliberately picks a backend.
//! * [`ReplayBackend`] ([`replay`]), fixture-driven, for CI and offline runs.
//! * [`openai::OpenAiBackend`], an OpenAI-compatible chat-completions client (OpenAI, vLLM,
//!   Ollama, llama.cpp servers), with a model allowlist and a fixed prompt template whose
//!   digest must equal the request's.
//!
//! Like every backend here it must
//! never substitute a model name in `model_name_echoed` (spec §11 item 12), so the runner's
//! echo check stays meaningful.
//!
//! Backends never validate the response against the attestation; the job path does (spec §7.6).

pub mod files;
pub mod openai;
pub mod replay;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::decay::DecayError;
use crate::decay::attestation::VerifiedAttestation;
use crate::decay::compress::DECAY_SUMMARY_MAX_CLAIM_BYTES;
use crate::decay::llm_summary::validate_answer;
use crate::ids::DecayJobId;

pub use replay::{
    ReplayBackend, ReplayEntry, ReplayFixture, SUMMARY_REQUEST_HASH_DOMAIN, request_hash,
};

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

impl SummaryRequest {
    /// The request of an attested job (spec §7.5): the pinned model and template digest, the
    /// source texts in job order, the 4096-byte budget and the job's id.
    pub fn for_job(
        verified: &VerifiedAttestation,
        job_id: &DecayJobId,
        source_claims: Vec<String>,
    ) -> SummaryRequest {
        SummaryRequest {
            model_name: verified.model_name.clone(),
            prompt_template_blake3: verified.prompt_template_blake3.clone(),
            source_claims,
            max_output_bytes: Some(DECAY_SUMMARY_MAX_CLAIM_BYTES as u32),
            decay_job_id: Some(job_id.to_string()),
        }
    }
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
    fn summarize<'a>(&'a self, request: &'a SummaryRequest) -> SummaryFuture<'a>;

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

/// Spec §7.1 steps 7-8: ask `backend` for the summary of an attested job and check the answer
/// against the attestation. A backend's refusal becomes `LlmSummaryBackendCallFailed`.
pub async fn summarize_for_job(
    backend: &dyn SummaryBackend,
    verified: &VerifiedAttestation,
    job_id: &DecayJobId,
    source_claims: Vec<String>,
) -> Result<SummaryResponse, DecayError> {
    let request = SummaryRequest::for_job(verified, job_id, source_claims);
    let response = backend
        .summarize(&request)
        .await
        .map_err(|e| DecayError::LlmSummaryBackendCallFailed(e.to_string()))?;
    validate_answer(
        &response.claim,
        &response.model_name_echoed,
        &verified.model_name,
        &request.source_claims,
    )?;
    Ok(response)
}

#[cfg(test)]
mod tests;
