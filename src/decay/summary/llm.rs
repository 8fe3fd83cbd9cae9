//! The `llm_summary` job path glue (spec §7.1, §7.5, §7.6): attestation gate, backend request,
//! response checks. The runner owns loading sources and writing the memory, so refusals here
//! write nothing by construction.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::attestation::{TrustPolicy, VerifiedAttestation, load_envelope, verify};
use super::backend::{SummaryBackend, SummaryRequest, SummaryResponse};
use crate::decay::compress::DECAY_SUMMARY_MAX_CLAIM_BYTES;
use crate::decay::{DecayError, DecayJob, SummaryMethod, is_blank};
use crate::ids::DecayJobId;

/// Spec §7.1 steps 1-3: the method, the presence of an attestation, then the envelope.
pub fn verify_attestation_for(
    job: &DecayJob,
    attestation: Option<&Path>,
    trust: &TrustPolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedAttestation, DecayError> {
    if job.summary_method != SummaryMethod::LlmSummary {
        return Err(DecayError::Validation(format!(
            "run_llm_summary_job invoked on a job whose summary_method_wire is `{}` (expected `llm_summary`)",
            job.summary_method.wire()
        )));
    }
    let path = attestation.ok_or(DecayError::LlmSummaryRequiresOperatorAttestation)?;
    let envelope = load_envelope(path)
        .map_err(|e| DecayError::LlmSummaryAttestationRejected(e.to_string()))?;
    verify(&envelope, &job.id, trust, now)
        .map_err(|e| DecayError::LlmSummaryAttestationRejected(e.to_string()))
}

/// Spec §7.5-§7.6: build the request, call the backend, validate the answer.
pub async fn call_backend(
    backend: &dyn SummaryBackend,
    verified: &VerifiedAttestation,
    job_id: &DecayJobId,
    source_claims: Vec<String>,
) -> Result<SummaryResponse, DecayError> {
    let request = SummaryRequest {
        model_name: verified.model_name.clone(),
        prompt_template_blake3: verified.prompt_template_blake3.clone(),
        source_claims,
        max_output_bytes: Some(DECAY_SUMMARY_MAX_CLAIM_BYTES as u32),
        decay_job_id: Some(job_id.to_string()),
    };
    let response = backend
        .summarize(&request)
        .await
        .map_err(|e| DecayError::LlmSummaryBackendCallFailed(e.to_string()))?;
    validate_response(&response, &verified.model_name, &request.source_claims)?;
    Ok(response)
}

/// Spec §7.6, in order. The echo check is byte-exact: no backend may substitute a model name.
pub fn validate_response(
    response: &SummaryResponse,
    pinned_model: &str,
    source_claims: &[String],
) -> Result<(), DecayError> {
    if response.model_name_echoed != pinned_model {
        return Err(DecayError::LlmSummaryBackendCallFailed(format!(
            "model mismatch: backend echoed model_name=`{}` but operator attestation pinned model_name=`{}`",
            response.model_name_echoed, pinned_model
        )));
    }
    if is_blank(&response.claim) {
        return Err(DecayError::LlmSummaryBackendCallFailed(
            "backend produced an empty summary claim".into(),
        ));
    }
    let n = response.claim.len();
    if n > DECAY_SUMMARY_MAX_CLAIM_BYTES {
        return Err(DecayError::LlmSummaryBackendCallFailed(format!(
            "backend produced a summary claim of {n} bytes (limit {DECAY_SUMMARY_MAX_CLAIM_BYTES})"
        )));
    }
    if source_claims.is_empty() {
        return Err(DecayError::Validation(
            "run_llm_summary_job: source_ids_json must contain at least one id".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(claim: &str, model: &str) -> SummaryResponse {
        SummaryResponse {
            claim: claim.into(),
            token_usage: None,
            model_name_echoed: model.into(),
        }
    }

    #[test]
    fn response_checks_in_order() {
        let claims = vec!["a".to_string()];
        let e = validate_response(&resp("", "other"), "m@1", &claims).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invariant=decay.llm_summary.backend_call_failed LLM summary backend call failed: model mismatch: backend echoed model_name=`other` but operator attestation pinned model_name=`m@1`"
        );
        let e = validate_response(&resp("  ", "m@1"), "m@1", &claims).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("backend produced an empty summary claim")
        );
        let big = "x".repeat(4097);
        let e = validate_response(&resp(&big, "m@1"), "m@1", &claims).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("backend produced a summary claim of 4097 bytes (limit 4096)")
        );
        let exact = "x".repeat(4096);
        assert!(validate_response(&resp(&exact, "m@1"), "m@1", &claims).is_ok());
    }
}
