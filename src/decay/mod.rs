//! The decay-job domain: kinds, summary methods, states and their wire tokens, the stored
//! record and its conversion into a typed job (spec §2), and what running a job computes.
//!
//! Pure: no SQL, no AMQP, no HTTP, no files, no clock of its own. Adapters depend on this
//! module, never the reverse: the store converts its rows into [`JobRecord`]s and writes the
//! [`effect`]s computed here; the runner ([`crate::runner`]) puts the two together.
//!
//! * [`error`]: [`DecayError`], the [`Invariant`] strings, the [`Failure`] a job is settled with.
//! * [`compress`]: deterministic concatenation and the pessimistic merge (spec §5).
//! * [`effect`]: a job's effect (summary memory and edges, or nothing) from its sources.
//! * [`attestation`]: the operator envelope, canonical bytes, Ed25519 and the trust policy.
//! * [`llm_summary`]: who may run an LLM summary and which answers are accepted (spec §7).

pub mod attestation;
pub mod compress;
pub mod effect;
pub mod error;
pub mod llm_summary;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{DecayJobId, EpisodeId, IdParseError, MemoryId, PrincipleId};

pub use error::{DecayError, Failure, Invariant};

/// Wire token of the `none` summary method (spec §9).
pub const SUMMARY_METHOD_NONE_WIRE: &str = "none";

/// What a job does (`kind` column). The alphabet is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    EpisodeCompression,
    CandidateCompression,
    ExpiredPrincipleReview,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [
        JobKind::EpisodeCompression,
        JobKind::CandidateCompression,
        JobKind::ExpiredPrincipleReview,
    ];

    /// The exact wire token.
    pub fn wire(self) -> &'static str {
        match self {
            JobKind::EpisodeCompression => "episode_compression",
            JobKind::CandidateCompression => "candidate_compression",
            JobKind::ExpiredPrincipleReview => "expired_principle_review",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.wire() == s)
    }
}

/// How summary text is produced (`summary_method` column). The alphabet is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SummaryMethod {
    DeterministicConcatenate,
    LlmSummary,
    None,
}

impl SummaryMethod {
    pub const ALL: [SummaryMethod; 3] = [
        SummaryMethod::DeterministicConcatenate,
        SummaryMethod::LlmSummary,
        SummaryMethod::None,
    ];

    /// The exact wire token.
    pub fn wire(self) -> &'static str {
        match self {
            SummaryMethod::DeterministicConcatenate => "deterministic_concatenate",
            SummaryMethod::LlmSummary => "llm_summary",
            SummaryMethod::None => SUMMARY_METHOD_NONE_WIRE,
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.wire() == s)
    }
}

/// Lifecycle state (`state` column). The alphabet is closed.
///
/// The transitions (`pending -> in_progress | cancelled`, `in_progress -> completed | failed |
/// cancelled | in_progress` by recovery; nothing leaves a terminal state; DESIGN §3 rule 4) are
/// decided where they happen: each is one guarded statement of the store (claim, settle,
/// cancel) whose `WHERE` names the state it leaves, so no transition is checked twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStateKind {
    Pending,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl JobStateKind {
    pub const ALL: [JobStateKind; 5] = [
        JobStateKind::Pending,
        JobStateKind::InProgress,
        JobStateKind::Completed,
        JobStateKind::Failed,
        JobStateKind::Cancelled,
    ];

    /// The exact wire token.
    pub fn wire(self) -> &'static str {
        match self {
            JobStateKind::Pending => "pending",
            JobStateKind::InProgress => "in_progress",
            JobStateKind::Completed => "completed",
            JobStateKind::Failed => "failed",
            JobStateKind::Cancelled => "cancelled",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.wire() == s)
    }

    /// Terminal states never change again; running such a job is a no-op.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStateKind::Completed | JobStateKind::Failed | JobStateKind::Cancelled
        )
    }
}

impl std::fmt::Display for JobStateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire())
    }
}

/// The typed state with its payload (spec §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    InProgress,
    Completed { result_memory_id: Option<MemoryId> },
    Failed { reason: String },
    Cancelled,
}

impl JobState {
    pub fn kind(&self) -> JobStateKind {
        match self {
            JobState::Pending => JobStateKind::Pending,
            JobState::InProgress => JobStateKind::InProgress,
            JobState::Completed { .. } => JobStateKind::Completed,
            JobState::Failed { .. } => JobStateKind::Failed,
            JobState::Cancelled => JobStateKind::Cancelled,
        }
    }
}

/// The job's input manifest, typed by kind. Order is meaningful (spec §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSources {
    Episodes(Vec<EpisodeId>),
    Memories(Vec<MemoryId>),
    Principle(PrincipleId),
}

/// A typed decay job.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayJob {
    pub id: DecayJobId,
    pub kind: JobKind,
    pub summary_method: SummaryMethod,
    pub sources: JobSources,
    pub state: JobState,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A `decay_jobs` row as stored: every column, wire tokens still text. The store builds it;
/// [`DecayJob::from_record`] converts it, so a bad row becomes a typed [`ConversionError`]
/// instead of a failed query. The claim columns (attempts, token, lease) are ours (DESIGN §3).
/// Serialised as is by `jobs list|show --json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobRecord {
    pub id: DecayJobId,
    pub kind: String,
    pub summary_method: String,
    pub source_ids_json: Value,
    pub state: String,
    pub state_reason: Option<String>,
    pub result_memory_id: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    /// Claims made so far.
    pub attempts: i32,
    /// Fencing token of the current claim.
    pub claim_token: Option<Uuid>,
    /// Which runner holds (or last held) the claim.
    pub claimed_by: Option<String>,
    /// When an `in_progress` claim may be recovered.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The stable invariant of a failure.
    pub failure_code: Option<String>,
    /// When the job's message was last published (the reconciler's clock).
    pub last_published_at: Option<DateTime<Utc>>,
    /// Why an operator cancelled it.
    pub cancel_reason: Option<String>,
    /// The operator key that attested an LLM summary.
    pub attestation_key_id: Option<String>,
}

impl JobRecord {
    /// The state, when its wire token is known.
    pub fn state_kind(&self) -> Option<JobStateKind> {
        JobStateKind::from_wire(&self.state)
    }
}

/// Why a stored row cannot become a typed job. Display texts are exact (spec §2.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("unknown decay job kind wire `{0}`")]
    UnknownKindWire(String),
    #[error("unknown decay job summary method wire `{0}`")]
    UnknownSummaryMethodWire(String),
    #[error("unknown decay job state wire `{0}`")]
    UnknownStateWire(String),
    #[error("decay job kind `{kind}` cannot persist summary_method `{method}`")]
    SummaryMethodKindMismatch { kind: String, method: String },
    #[error("decay job source_ids_json is malformed: {0}")]
    InvalidSourceIdsJson(String),
    #[error("decay job id parse error: {0}")]
    InvalidId(#[from] IdParseError),
    #[error("decay job in `failed` state must carry a non-empty state_reason")]
    MissingFailedReason,
}

impl ConversionError {
    /// The job's own error for a row that cannot be converted (`decay.job.malformed`): such a
    /// row is settled `failed` instead of blocking the queue head forever (spec §11.5).
    pub fn for_job(&self, id: &DecayJobId) -> DecayError {
        DecayError::violation(
            Invariant::JobMalformed,
            format!("decay job {id} row malformed: {self}"),
        )
    }
}

/// Blank means empty after trimming Unicode whitespace.
pub fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Parse `source_ids_json` into strings (spec §2.6 steps 1-2).
fn source_strings(v: &Value) -> Result<Vec<&str>, ConversionError> {
    let arr = v
        .as_array()
        .ok_or_else(|| ConversionError::InvalidSourceIdsJson("expected JSON array".into()))?;
    arr.iter()
        .map(|e| {
            e.as_str().ok_or_else(|| {
                ConversionError::InvalidSourceIdsJson(
                    "all source id entries must be strings".into(),
                )
            })
        })
        .collect()
}

/// Kind and method checks of spec §2.6 step 3, shared by rows and new jobs.
pub fn convert_sources(
    kind_wire: &str,
    method_wire: &str,
    source_ids_json: &Value,
) -> Result<(JobKind, SummaryMethod, JobSources), ConversionError> {
    let strings = source_strings(source_ids_json)?;
    let mismatch = || ConversionError::SummaryMethodKindMismatch {
        kind: kind_wire.to_string(),
        method: method_wire.to_string(),
    };
    match JobKind::from_wire(kind_wire) {
        Some(kind @ (JobKind::EpisodeCompression | JobKind::CandidateCompression)) => {
            let method = match SummaryMethod::from_wire(method_wire) {
                Some(SummaryMethod::None) => return Err(mismatch()),
                Some(m) => m,
                None => {
                    return Err(ConversionError::UnknownSummaryMethodWire(
                        method_wire.to_string(),
                    ));
                }
            };
            let sources = if kind == JobKind::EpisodeCompression {
                JobSources::Episodes(
                    strings
                        .iter()
                        .map(|s| EpisodeId::parse(s))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                JobSources::Memories(
                    strings
                        .iter()
                        .map(|s| MemoryId::parse(s))
                        .collect::<Result<_, _>>()?,
                )
            };
            Ok((kind, method, sources))
        }
        Some(JobKind::ExpiredPrincipleReview) => {
            if method_wire != SUMMARY_METHOD_NONE_WIRE {
                return Err(mismatch());
            }
            if strings.len() != 1 {
                return Err(ConversionError::InvalidSourceIdsJson(format!(
                    "expired_principle_review expected exactly one source id, got {}",
                    strings.len()
                )));
            }
            let id = PrincipleId::parse(strings[0])?;
            Ok((
                JobKind::ExpiredPrincipleReview,
                SummaryMethod::None,
                JobSources::Principle(id),
            ))
        }
        None => Err(ConversionError::UnknownKindWire(kind_wire.to_string())),
    }
}

impl DecayJob {
    /// Record -> typed job, in the order of spec §2.6: source shape, kind, method, ids, state.
    pub fn from_record(row: &JobRecord) -> Result<DecayJob, ConversionError> {
        let (kind, summary_method, sources) =
            convert_sources(&row.kind, &row.summary_method, &row.source_ids_json)?;
        let state = match JobStateKind::from_wire(&row.state) {
            Some(JobStateKind::Pending) => JobState::Pending,
            Some(JobStateKind::InProgress) => JobState::InProgress,
            Some(JobStateKind::Cancelled) => JobState::Cancelled,
            Some(JobStateKind::Completed) => JobState::Completed {
                result_memory_id: row
                    .result_memory_id
                    .as_deref()
                    .map(MemoryId::parse)
                    .transpose()?,
            },
            Some(JobStateKind::Failed) => match &row.state_reason {
                Some(r) if !is_blank(r) => JobState::Failed { reason: r.clone() },
                _ => return Err(ConversionError::MissingFailedReason),
            },
            None => return Err(ConversionError::UnknownStateWire(row.state.clone())),
        };
        Ok(DecayJob {
            id: row.id,
            kind,
            summary_method,
            sources,
            state,
            scheduled_for: row.scheduled_for,
            created_at: row.created_at,
            created_by: row.created_by.clone(),
            updated_at: row.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const M: &str = "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    const E: &str = "epi_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    const P: &str = "prn_01ARZ3NDEKTSV4RRFFQ69G5FAV";

    fn row(kind: &str, method: &str, src: Value, state: &str) -> JobRecord {
        let t = DateTime::parse_from_rfc3339("2026-05-13T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        JobRecord {
            id: DecayJobId::parse("dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap(),
            kind: kind.into(),
            summary_method: method.into(),
            source_ids_json: src,
            state: state.into(),
            state_reason: None,
            result_memory_id: None,
            scheduled_for: t,
            created_at: t,
            created_by: "operator:test".into(),
            updated_at: t,
            attempts: 0,
            claim_token: None,
            claimed_by: None,
            lease_expires_at: None,
            failure_code: None,
            last_published_at: None,
            cancel_reason: None,
            attestation_key_id: None,
        }
    }

    fn err(r: &JobRecord) -> String {
        DecayJob::from_record(r).unwrap_err().to_string()
    }

    #[test]
    fn wire_tokens_are_exact() {
        assert_eq!(
            JobKind::ALL.map(JobKind::wire),
            [
                "episode_compression",
                "candidate_compression",
                "expired_principle_review"
            ]
        );
        assert_eq!(
            SummaryMethod::ALL.map(SummaryMethod::wire),
            ["deterministic_concatenate", "llm_summary", "none"]
        );
        assert_eq!(
            JobStateKind::ALL.map(JobStateKind::wire),
            ["pending", "in_progress", "completed", "failed", "cancelled"]
        );
        assert!(JobKind::from_wire("Episode_compression").is_none());
    }

    #[test]
    fn converts_each_kind() {
        let j = DecayJob::from_record(&row(
            "candidate_compression",
            "deterministic_concatenate",
            json!([M]),
            "pending",
        ))
        .unwrap();
        assert_eq!(
            j.sources,
            JobSources::Memories(vec![MemoryId::parse(M).unwrap()])
        );
        let j = DecayJob::from_record(&row(
            "episode_compression",
            "llm_summary",
            json!([E]),
            "pending",
        ))
        .unwrap();
        assert_eq!(j.summary_method, SummaryMethod::LlmSummary);
        let j = DecayJob::from_record(&row(
            "expired_principle_review",
            "none",
            json!([P]),
            "pending",
        ))
        .unwrap();
        assert_eq!(
            j.sources,
            JobSources::Principle(PrincipleId::parse(P).unwrap())
        );
    }

    #[test]
    fn conversion_errors_are_exact_and_ordered() {
        assert_eq!(
            err(&row("bogus", "none", json!({}), "pending")),
            "decay job source_ids_json is malformed: expected JSON array"
        );
        assert_eq!(
            err(&row("bogus", "none", json!([1]), "pending")),
            "decay job source_ids_json is malformed: all source id entries must be strings"
        );
        assert_eq!(
            err(&row("bogus", "none", json!([M]), "nope")),
            "unknown decay job kind wire `bogus`"
        );
        assert_eq!(
            err(&row(
                "candidate_compression",
                "magic",
                json!([M]),
                "pending"
            )),
            "unknown decay job summary method wire `magic`"
        );
        assert_eq!(
            err(&row("candidate_compression", "none", json!([M]), "pending")),
            "decay job kind `candidate_compression` cannot persist summary_method `none`"
        );
        assert_eq!(
            err(&row(
                "expired_principle_review",
                "llm_summary",
                json!([P]),
                "pending"
            )),
            "decay job kind `expired_principle_review` cannot persist summary_method `llm_summary`"
        );
        assert_eq!(
            err(&row(
                "expired_principle_review",
                "none",
                json!([P, P]),
                "pending"
            )),
            "decay job source_ids_json is malformed: expired_principle_review expected exactly one source id, got 2"
        );
        assert_eq!(
            err(&row(
                "episode_compression",
                "deterministic_concatenate",
                json!([M]),
                "pending"
            )),
            format!(
                "decay job id parse error: id parse error: id `{M}` does not start with expected prefix `epi_`"
            )
        );
        assert_eq!(
            err(&row(
                "candidate_compression",
                "llm_summary",
                json!([M]),
                "weird"
            )),
            "unknown decay job state wire `weird`"
        );
        let mut failed = row("candidate_compression", "llm_summary", json!([M]), "failed");
        failed.state_reason = Some("  ".into());
        assert_eq!(
            err(&failed),
            "decay job in `failed` state must carry a non-empty state_reason"
        );
        failed.state_reason = Some(" x ".into());
        assert_eq!(
            DecayJob::from_record(&failed).unwrap().state,
            JobState::Failed {
                reason: " x ".into()
            }
        );
    }

    #[test]
    fn malformed_rows_fail_with_their_invariant() {
        let r = row("bogus", "none", json!([M]), "pending");
        let e = DecayJob::from_record(&r).unwrap_err().for_job(&r.id);
        assert_eq!(e.failure().invariant.as_str(), "decay.job.malformed");
        assert_eq!(
            e.to_string(),
            "validation failed: decay.job.malformed: decay job dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV row malformed: unknown decay job kind wire `bogus`"
        );
    }

    #[test]
    fn empty_compression_array_converts() {
        // The store rejects it; the conversion layer accepts it (spec §2.6).
        let j = DecayJob::from_record(&row(
            "candidate_compression",
            "deterministic_concatenate",
            json!([]),
            "pending",
        ))
        .unwrap();
        assert_eq!(j.sources, JobSources::Memories(vec![]));
    }
}
