//! A job's own errors, the stable invariants they carry (spec §4.5), and the failure a job is
//! settled with.
//!
//! Invariants are contracts: operators grep for them and `failure_code` stores them, so each
//! string lives here once, in [`Invariant::as_str`]. A failure's code comes from the error's
//! variant, never from parsing its message back.
//!
//! Everything here is the job's fault, so it is permanent: retrying the same job with the same
//! data gives the same error. What is the environment's fault (a database outage) is the
//! runner's error type, not this one.

use std::fmt;

/// The stable invariant strings. Exact; never reword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// `decay.llm_summary.requires_operator_attestation`
    LlmRequiresAttestation,
    /// `decay.llm_summary.attestation_rejected`
    LlmAttestationRejected,
    /// `decay.llm_summary.backend_call_failed`
    LlmBackendCallFailed,
    /// `decay.compress.input_invalid`: an empty source set.
    CompressInputInvalid,
    /// `decay.compress.source_missing`: a source row is absent.
    CompressSourceMissing,
    /// `decay.runner.failure`: the blank-reason fallback, and the code of a failure that
    /// carries no invariant of its own.
    RunnerFailure,
    /// `decay.job.malformed` (ours): a stored row that cannot become a typed job.
    JobMalformed,
    /// `decay.runner.attempts_exhausted` (ours): claimed `max_attempts` times without settling.
    RunnerAttemptsExhausted,
}

impl Invariant {
    pub const ALL: [Invariant; 8] = [
        Invariant::LlmRequiresAttestation,
        Invariant::LlmAttestationRejected,
        Invariant::LlmBackendCallFailed,
        Invariant::CompressInputInvalid,
        Invariant::CompressSourceMissing,
        Invariant::RunnerFailure,
        Invariant::JobMalformed,
        Invariant::RunnerAttemptsExhausted,
    ];

    /// The exact string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Invariant::LlmRequiresAttestation => "decay.llm_summary.requires_operator_attestation",
            Invariant::LlmAttestationRejected => "decay.llm_summary.attestation_rejected",
            Invariant::LlmBackendCallFailed => "decay.llm_summary.backend_call_failed",
            Invariant::CompressInputInvalid => "decay.compress.input_invalid",
            Invariant::CompressSourceMissing => "decay.compress.source_missing",
            Invariant::RunnerFailure => "decay.runner.failure",
            Invariant::JobMalformed => "decay.job.malformed",
            Invariant::RunnerAttemptsExhausted => "decay.runner.attempts_exhausted",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job could not be run. Display texts are exact (spec §4.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecayError {
    /// A refusal without an invariant of its own (code `decay.runner.failure`).
    #[error("validation failed: {0}")]
    Validation(String),
    /// A refusal whose invariant leads its message, as the reference writes the
    /// `decay.compress.*` refusals: `validation failed: {invariant}: {detail}`.
    #[error("validation failed: {invariant}: {detail}")]
    Violation {
        invariant: Invariant,
        detail: String,
    },
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
    /// A refusal carrying `invariant`.
    pub fn violation(invariant: Invariant, detail: impl Into<String>) -> DecayError {
        DecayError::Violation {
            invariant,
            detail: detail.into(),
        }
    }

    /// The stable invariant of this error, if it has one.
    pub fn invariant(&self) -> Option<Invariant> {
        match self {
            DecayError::LlmSummaryRequiresOperatorAttestation => {
                Some(Invariant::LlmRequiresAttestation)
            }
            DecayError::LlmSummaryAttestationRejected(_) => Some(Invariant::LlmAttestationRejected),
            DecayError::LlmSummaryBackendCallFailed(_) => Some(Invariant::LlmBackendCallFailed),
            DecayError::Violation { invariant, .. } => Some(*invariant),
            DecayError::Validation(_) => None,
        }
    }

    /// What the job is settled with: the invariant (or [`Invariant::RunnerFailure`]) as its
    /// code, and the full Display as its reason, so the detail of an LLM refusal (which check
    /// failed) is kept, unlike the reference (spec §11.9).
    pub fn failure(&self) -> Failure {
        Failure::new(
            self.invariant().unwrap_or(Invariant::RunnerFailure),
            self.to_string(),
        )
    }
}

/// How a failed job is recorded: `failure_code` and `state_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stable code (`failure_code`).
    pub invariant: Invariant,
    /// The human text (`state_reason`); never blank.
    pub reason: String,
}

impl Failure {
    /// A failure with `reason`, or with the invariant itself when `reason` is blank (a failed
    /// row must carry a reason; spec §4.4 step 3).
    pub fn new(invariant: Invariant, reason: String) -> Failure {
        let reason = if super::is_blank(&reason) {
            Invariant::RunnerFailure.as_str().to_string()
        } else {
            reason
        };
        Failure { invariant, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_strings_are_exact() {
        assert_eq!(
            Invariant::ALL.map(Invariant::as_str),
            [
                "decay.llm_summary.requires_operator_attestation",
                "decay.llm_summary.attestation_rejected",
                "decay.llm_summary.backend_call_failed",
                "decay.compress.input_invalid",
                "decay.compress.source_missing",
                "decay.runner.failure",
                "decay.job.malformed",
                "decay.runner.attempts_exhausted",
            ]
        );
    }

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
        assert_eq!(
            DecayError::violation(
                Invariant::CompressSourceMissing,
                "memory mem_01ARZ3NDEKTSV4RRFFQ69G5FAV not found"
            )
            .to_string(),
            "validation failed: decay.compress.source_missing: memory mem_01ARZ3NDEKTSV4RRFFQ69G5FAV not found"
        );
    }

    #[test]
    fn failure_codes() {
        let e = DecayError::violation(
            Invariant::CompressSourceMissing,
            "memory mem_01ARZ3NDEKTSV4RRFFQ69G5FAV not found",
        );
        assert_eq!(
            e.failure(),
            Failure {
                invariant: Invariant::CompressSourceMissing,
                reason: "validation failed: decay.compress.source_missing: memory mem_01ARZ3NDEKTSV4RRFFQ69G5FAV not found".into()
            }
        );
        assert_eq!(
            e.failure().invariant.as_str(),
            "decay.compress.source_missing"
        );
        // A message that merely looks like an invariant is not parsed into one.
        assert_eq!(
            DecayError::Validation("decay.compress.source_missing: lookalike".into())
                .failure()
                .invariant,
            Invariant::RunnerFailure
        );
        assert_eq!(
            DecayError::Validation("operator label must be non-empty".into())
                .failure()
                .invariant,
            Invariant::RunnerFailure
        );
        let rejected = DecayError::LlmSummaryAttestationRejected("d".into()).failure();
        assert_eq!(rejected.invariant, Invariant::LlmAttestationRejected);
        assert!(rejected.reason.ends_with("rejected: d"));
    }

    #[test]
    fn blank_reason_falls_back_to_the_runner_invariant() {
        let f = Failure::new(Invariant::JobMalformed, "  ".into());
        assert_eq!(f.invariant, Invariant::JobMalformed);
        assert_eq!(f.reason, "decay.runner.failure");
    }
}
