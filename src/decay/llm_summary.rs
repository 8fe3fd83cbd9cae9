//! The `llm_summary` method's rules (spec §7.1, §7.6, §7.7): who may run it, what it reads,
//! and which answers are accepted. Pure; the runner loads the envelope and calls the backend
//! ([`crate::llm`]), and refusals here write nothing by construction.

use chrono::{DateTime, Utc};

use super::attestation::{
    AttestationEnvelope, AttestationError, TrustPolicy, VerifiedAttestation, verify,
};
use super::compress::{self, DECAY_SUMMARY_MAX_CLAIM_BYTES, EpisodeSource, MemorySource};
use super::effect::{LoadedSources, Summary, in_order};
use super::{DecayError, DecayJob, JobKind, JobSources, SummaryMethod, is_blank};

/// Spec §7.1 steps 1-3: the method, the presence of an attestation, then the envelope as the
/// loader read it (or why it could not), verified for this job under `trust` at `now`.
pub fn authorize(
    job: &DecayJob,
    envelope: Option<Result<AttestationEnvelope, AttestationError>>,
    trust: &TrustPolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedAttestation, DecayError> {
    if job.summary_method != SummaryMethod::LlmSummary {
        return Err(DecayError::Validation(format!(
            "run_llm_summary_job invoked on a job whose summary_method_wire is `{}` (expected `llm_summary`)",
            job.summary_method.wire()
        )));
    }
    let rejected = |e: AttestationError| DecayError::LlmSummaryAttestationRejected(e.to_string());
    let envelope = envelope
        .ok_or(DecayError::LlmSummaryRequiresOperatorAttestation)?
        .map_err(rejected)?;
    verify(&envelope, &job.id, trust, now).map_err(rejected)
}

/// The sources an LLM summary is written from, in job order (duplicates repeated).
#[derive(Debug, Clone, PartialEq)]
pub enum LlmSources {
    Memories(Vec<MemorySource>),
    Episodes(Vec<EpisodeSource>),
}

/// Spec §7.1 steps 4 and 6: the kind must be a compression, and every source must exist.
pub fn sources(job: &DecayJob, loaded: &LoadedSources) -> Result<LlmSources, DecayError> {
    match &job.sources {
        JobSources::Memories(ids) => Ok(LlmSources::Memories(in_order(
            ids,
            loaded.memories.as_ref(),
            "memory",
        )?)),
        JobSources::Episodes(ids) => Ok(LlmSources::Episodes(in_order(
            ids,
            loaded.episodes.as_ref(),
            "episode",
        )?)),
        JobSources::Principle(_) => Err(DecayError::Validation(format!(
            "run_llm_summary_job invoked on a job whose kind_wire is `{}` (expected `candidate_compression` or `episode_compression`)",
            JobKind::ExpiredPrincipleReview.wire()
        ))),
    }
}

impl LlmSources {
    /// The texts the backend summarises (spec §7.5): memory claims or episode summaries.
    pub fn claims(&self) -> Vec<String> {
        match self {
            LlmSources::Memories(s) => s.iter().map(|m| m.claim.clone()).collect(),
            LlmSources::Episodes(s) => s.iter().map(|e| e.summary.clone()).collect(),
        }
    }

    /// The summary memory of an accepted answer (spec §7.7), carrying the attestation for the
    /// job's audit record.
    pub fn summary(
        self,
        claim: String,
        echoed_model: &str,
        attestation: VerifiedAttestation,
    ) -> Summary {
        match self {
            LlmSources::Memories(s) => {
                let draft = compress::llm_summary_of_memories(&s, claim, echoed_model);
                Summary::of_memories(&s, draft, Some(attestation))
            }
            LlmSources::Episodes(s) => {
                let draft = compress::llm_summary_of_episodes(&s, claim, echoed_model);
                Summary::of_episodes(&s, draft, Some(attestation))
            }
        }
    }
}

/// Spec §7.6, in order: a backend's answer is accepted only if it echoes the pinned model byte
/// for byte (no backend may substitute a model name), is not blank, and fits the byte budget.
pub fn validate_answer(
    claim: &str,
    echoed_model: &str,
    pinned_model: &str,
    source_claims: &[String],
) -> Result<(), DecayError> {
    if echoed_model != pinned_model {
        return Err(DecayError::LlmSummaryBackendCallFailed(format!(
            "model mismatch: backend echoed model_name=`{echoed_model}` but operator attestation pinned model_name=`{pinned_model}`"
        )));
    }
    if is_blank(claim) {
        return Err(DecayError::LlmSummaryBackendCallFailed(
            "backend produced an empty summary claim".into(),
        ));
    }
    let n = claim.len();
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

    #[test]
    fn answer_checks_in_order() {
        let claims = vec!["a".to_string()];
        let e = validate_answer("", "other", "m@1", &claims).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invariant=decay.llm_summary.backend_call_failed LLM summary backend call failed: model mismatch: backend echoed model_name=`other` but operator attestation pinned model_name=`m@1`"
        );
        let e = validate_answer("  ", "m@1", "m@1", &claims).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("backend produced an empty summary claim")
        );
        let big = "x".repeat(4097);
        let e = validate_answer(&big, "m@1", "m@1", &claims).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("backend produced a summary claim of 4097 bytes (limit 4096)")
        );
        let exact = "x".repeat(4096);
        assert!(validate_answer(&exact, "m@1", "m@1", &claims).is_ok());
    }
}
