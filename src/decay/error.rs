//! The runner's error type and the stable invariant strings (spec §4.5).
//!
//! Invariants are contracts: operators grep for them and `failure_code` stores them, so each
//! lives here once, as a constant.

use crate::store::StoreError;

/// Stable invariant strings. Exact; never reword.
pub mod invariant {
    pub const LLM_REQUIRES_ATTESTATION: &str = "decay.llm_summary.requires_operator_attestation";
    pub const LLM_ATTESTATION_REJECTED: &str = "decay.llm_summary.attestation_rejected";
    pub const LLM_BACKEND_CALL_FAILED: &str = "decay.llm_summary.backend_call_failed";
    pub const COMPRESS_INPUT_INVALID: &str = "decay.compress.input_invalid";
    pub const COMPRESS_SOURCE_MISSING: &str = "decay.compress.source_missing";
    /// Blank-reason fallback, and the code of a failure that carries no invariant of its own.
    pub const RUNNER_FAILURE: &str = "decay.runner.failure";
    /// Ours: a stored row that cannot be converted into a typed job.
    pub const JOB_MALFORMED: &str = "decay.job.malformed";
    /// Ours: the job was claimed `max_attempts` times without settling.
    pub const RUNNER_ATTEMPTS_EXHAUSTED: &str = "decay.runner.attempts_exhausted";
}

/// What can go wrong while running a job. Display texts are exact (spec §4.5).
#[derive(Debug, thiserror::Error)]
pub enum DecayError {
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    #[error("validation failed: {0}")]
    Validation(String),
    #[error(
        "invariant=decay.llm_summary.requires_operator_attestation LLM summary refused: operator attestation is required (operator-fired only)"
    )]
    LlmSummaryRequiresOperatorAttestation,
    #[error(
        "invariant=decay.llm_summary.attestation_rejected LLM summary attestation rejected: {0}"
    )]
    LlmSummaryAttestationRejected(String),
    #[error("invariant=decay.llm_summary.backend_call_failed LLM summary backend call failed: {0}")]
    LlmSummaryBackendCallFailed(String),
}

impl DecayError {
    /// The stable invariant of the three LLM variants (spec §4.5); `None` otherwise.
    pub fn invariant(&self) -> Option<&'static str> {
        match self {
            DecayError::LlmSummaryRequiresOperatorAttestation => {
                Some(invariant::LLM_REQUIRES_ATTESTATION)
            }
            DecayError::LlmSummaryAttestationRejected(_) => {
                Some(invariant::LLM_ATTESTATION_REJECTED)
            }
            DecayError::LlmSummaryBackendCallFailed(_) => Some(invariant::LLM_BACKEND_CALL_FAILED),
            DecayError::Store(_) | DecayError::Validation(_) => None,
        }
    }

    /// The machine-readable code persisted in `failure_code`: the invariant when there is one,
    /// else the leading `decay.*` token of a Validation message (e.g.
    /// `decay.compress.source_missing`), else [`invariant::RUNNER_FAILURE`].
    pub fn failure_code(&self) -> String {
        if let Some(inv) = self.invariant() {
            return inv.to_string();
        }
        if let DecayError::Validation(msg) = self
            && let Some((token, _)) = msg.split_once(':')
            && token.starts_with("decay.")
            && !token.contains(char::is_whitespace)
        {
            return token.to_string();
        }
        invariant::RUNNER_FAILURE.to_string()
    }

    /// The human text persisted in `state_reason`: the full Display, so the detail of an LLM
    /// refusal (which check failed) is kept, unlike the reference (spec §11.9). Never blank.
    pub fn state_reason(&self) -> String {
        let text = self.to_string();
        if text.trim().is_empty() {
            invariant::RUNNER_FAILURE.to_string()
        } else {
            text
        }
    }

    /// True when the failure is the environment's (database unreachable, pool exhausted), not
    /// the job's: such a failure must never settle the job `failed`.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecayError::Store(e) if e.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_are_exact() {
        assert_eq!(
            DecayError::LlmSummaryRequiresOperatorAttestation.to_string(),
            "invariant=decay.llm_summary.requires_operator_attestation LLM summary refused: operator attestation is required (operator-fired only)"
        );
        assert_eq!(
            DecayError::LlmSummaryAttestationRejected("x".into()).to_string(),
            "invariant=decay.llm_summary.attestation_rejected LLM summary attestation rejected: x"
        );
        assert_eq!(
            DecayError::LlmSummaryBackendCallFailed("summary_backend_not_configured".into())
                .to_string(),
            "invariant=decay.llm_summary.backend_call_failed LLM summary backend call failed: summary_backend_not_configured"
        );
        assert_eq!(
            DecayError::Validation("decay job x not found".into()).to_string(),
            "validation failed: decay job x not found"
        );
    }

    #[test]
    fn failure_codes() {
        let e = DecayError::Validation(
            "decay.compress.source_missing: memory mem_01ARZ3NDEKTSV4RRFFQ69G5FAV not found".into(),
        );
        assert_eq!(e.failure_code(), invariant::COMPRESS_SOURCE_MISSING);
        assert_eq!(
            e.state_reason(),
            "validation failed: decay.compress.source_missing: memory mem_01ARZ3NDEKTSV4RRFFQ69G5FAV not found"
        );
        assert_eq!(
            DecayError::Validation("operator label must be non-empty".into()).failure_code(),
            invariant::RUNNER_FAILURE
        );
        assert_eq!(
            DecayError::LlmSummaryAttestationRejected("d".into()).failure_code(),
            invariant::LLM_ATTESTATION_REJECTED
        );
        assert!(
            DecayError::LlmSummaryAttestationRejected("d".into())
                .state_reason()
                .ends_with("rejected: d")
        );
    }
}
