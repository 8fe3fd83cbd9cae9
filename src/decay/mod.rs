//! The decay-job domain: kinds, summary methods, states and their wire tokens, and the
//! conversion of a stored row into a typed job (spec §2).
//!
//! This module knows neither SQL nor AMQP. The store hands it a [`crate::store::JobRow`]; the
//! runner turns that into a [`DecayJob`] with [`DecayJob::from_row`] and decides what to do.

pub mod compress;
pub mod error;
pub mod runner;
pub mod summary;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::ids::{DecayJobId, EpisodeId, IdParseError, MemoryId, PrincipleId};
use crate::store::JobRow;

pub use error::{DecayError, invariant};

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

    /// The transition graph of DESIGN §3 rule 4. The store's conditional updates implement
    /// exactly these edges; this function documents them and lets callers check intent.
    pub fn can_transition_to(self, to: JobStateKind) -> bool {
        use JobStateKind::*;
        matches!(
            (self, to),
            (Pending, InProgress)
                | (Pending, Cancelled)
                | (InProgress, Completed)
                | (InProgress, Failed)
                | (InProgress, Cancelled)
                | (InProgress, InProgress)
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
    /// Row -> typed job, in the order of spec §2.6: source shape, kind, method, ids, state.
    pub fn from_row(row: &JobRow) -> Result<DecayJob, ConversionError> {
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
            id: DecayJobId::parse(&row.id)?,
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

/// Canonical compact JSON of a source list, as stored in `source_ids_json`.
pub fn sources_to_json(sources: &JobSources) -> Value {
    let strings: Vec<String> = match sources {
        JobSources::Episodes(ids) => ids.iter().map(ToString::to_string).collect(),
        JobSources::Memories(ids) => ids.iter().map(ToString::to_string).collect(),
        JobSources::Principle(id) => vec![id.to_string()],
    };
    Value::from(strings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const M: &str = "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    const E: &str = "epi_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    const P: &str = "prn_01ARZ3NDEKTSV4RRFFQ69G5FAV";

    fn row(kind: &str, method: &str, src: Value, state: &str) -> JobRow {
        let t = DateTime::parse_from_rfc3339("2026-05-13T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        JobRow {
            id: "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
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

    fn err(r: &JobRow) -> String {
        DecayJob::from_row(r).unwrap_err().to_string()
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
    fn transitions_follow_the_graph() {
        use JobStateKind::*;
        assert!(Pending.can_transition_to(InProgress));
        assert!(InProgress.can_transition_to(InProgress));
        assert!(!Pending.can_transition_to(Completed));
        for t in [Completed, Failed, Cancelled] {
            for to in JobStateKind::ALL {
                assert!(!t.can_transition_to(to), "{t} -> {to}");
            }
        }
    }

    #[test]
    fn converts_each_kind() {
        let j = DecayJob::from_row(&row(
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
        let j = DecayJob::from_row(&row(
            "episode_compression",
            "llm_summary",
            json!([E]),
            "pending",
        ))
        .unwrap();
        assert_eq!(j.summary_method, SummaryMethod::LlmSummary);
        let j = DecayJob::from_row(&row(
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
        assert_eq!(sources_to_json(&j.sources), json!([P]));
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
            DecayJob::from_row(&failed).unwrap().state,
            JobState::Failed {
                reason: " x ".into()
            }
        );
    }

    #[test]
    fn empty_compression_array_converts() {
        // The store rejects it; the conversion layer accepts it (spec §2.6).
        let j = DecayJob::from_row(&row(
            "candidate_compression",
            "deterministic_concatenate",
            json!([]),
            "pending",
        ))
        .unwrap();
        assert_eq!(j.sources, JobSources::Memories(vec![]));
    }
}
