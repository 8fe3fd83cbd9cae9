//! What running a job produces, computed before anything is written: a summary memory with its
//! supersession edges, or nothing (a principle review), or the job's own error.
//!
//! Pure. The store loads a job's sources ([`LoadedSources`]) and later writes the effect in
//! one guarded statement; the runner orders the two and calls a backend for LLM jobs
//! ([`super::llm_summary`]). Keeping the computation here means the quick path and the
//! two-phase path cannot disagree about what a job produces.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;

use super::attestation::VerifiedAttestation;
use super::compress::{self, EpisodeSource, MemorySource, SummaryDraft};
use super::error::{DecayError, Invariant};
use super::{DecayJob, JobSources, SummaryMethod, is_blank};
use crate::ids::{EpisodeId, MemoryId};

/// The rows a job's run reads, as the store found them: each present source keyed by id (the
/// job's own list decides order and reports the missing ones). A field is `None` when the job's
/// kind does not read that table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedSources {
    /// The existing source memories of a candidate compression.
    pub memories: Option<HashMap<MemoryId, MemorySource>>,
    /// The existing source episodes of an episode compression.
    pub episodes: Option<HashMap<EpisodeId, EpisodeSource>>,
    /// Whether the principle of a review exists.
    pub principle_exists: Option<bool>,
}

/// The supersession edges of a summary memory: its sources, in job order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryEdges {
    Memories(Vec<MemoryId>),
    Episodes(Vec<EpisodeId>),
}

/// A summary memory to write: the row's content, its edges and, on the LLM path, the
/// attestation that allowed it (recorded on the job for audit).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub draft: SummaryDraft,
    pub edges: SummaryEdges,
    pub attestation: Option<VerifiedAttestation>,
}

/// What a successful run writes besides its `completed` state.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A compression: one summary memory and its edges.
    Summary(Box<Summary>),
    /// A review: no in-process work, nothing but the state changes.
    NoMemory,
}

impl Summary {
    /// A summary over memory sources (their ids are the edges).
    pub fn of_memories(
        sources: &[MemorySource],
        draft: SummaryDraft,
        attestation: Option<VerifiedAttestation>,
    ) -> Summary {
        Summary {
            draft,
            edges: SummaryEdges::Memories(sources.iter().map(|s| s.id).collect()),
            attestation,
        }
    }

    /// A summary over episode sources (their ids are the edges).
    pub fn of_episodes(
        sources: &[EpisodeSource],
        draft: SummaryDraft,
        attestation: Option<VerifiedAttestation>,
    ) -> Summary {
        Summary {
            draft,
            edges: SummaryEdges::Episodes(sources.iter().map(|s| s.id).collect()),
            attestation,
        }
    }
}

/// The effect of a job that needs no backend: a deterministic compression (spec §5) or a
/// principle review (spec §6). LLM jobs go through [`super::llm_summary`].
pub fn compute(job: &DecayJob, loaded: &LoadedSources) -> Result<Effect, DecayError> {
    match (&job.sources, job.summary_method) {
        (JobSources::Memories(ids), SummaryMethod::DeterministicConcatenate) => {
            check_sources(ids.len(), "source_memory_ids", &job.created_by)?;
            let sources = in_order(ids, loaded.memories.as_ref(), "memory")?;
            let draft = compress::summarize_memories(&sources);
            Ok(Effect::Summary(Box::new(Summary::of_memories(
                &sources, draft, None,
            ))))
        }
        (JobSources::Episodes(ids), SummaryMethod::DeterministicConcatenate) => {
            check_sources(ids.len(), "source_episode_ids", &job.created_by)?;
            let sources = in_order(ids, loaded.episodes.as_ref(), "episode")?;
            let draft = compress::summarize_episodes(&sources);
            Ok(Effect::Summary(Box::new(Summary::of_episodes(
                &sources, draft, None,
            ))))
        }
        (JobSources::Principle(p), _) => {
            if loaded.principle_exists == Some(true) {
                Ok(Effect::NoMemory)
            } else {
                Err(source_missing("principle", p))
            }
        }
        (sources, method) => Err(DecayError::Validation(format!(
            "decay job {} kind `{}` cannot run summary_method `{}` over {sources:?}",
            job.id,
            job.kind.wire(),
            method.wire()
        ))),
    }
}

/// `decay.compress.source_missing: {what} {which} not found`.
pub(super) fn source_missing(what: &str, which: &dyn Display) -> DecayError {
    DecayError::violation(
        Invariant::CompressSourceMissing,
        format!("{what} {which} not found"),
    )
}

/// The job's sources in list order (duplicates repeated), or the first missing one.
pub(super) fn in_order<K, T>(
    ids: &[K],
    found: Option<&HashMap<K, T>>,
    what: &str,
) -> Result<Vec<T>, DecayError>
where
    K: Hash + Eq + Display,
    T: Clone,
{
    ids.iter()
        .map(|k| {
            found
                .and_then(|f| f.get(k))
                .cloned()
                .ok_or_else(|| source_missing(what, k))
        })
        .collect()
}

/// Spec §5.1 steps 1-2.
fn check_sources(len: usize, field: &str, operator: &str) -> Result<(), DecayError> {
    if len == 0 {
        return Err(DecayError::violation(
            Invariant::CompressInputInvalid,
            format!("{field} must be non-empty"),
        ));
    }
    if is_blank(operator) {
        return Err(DecayError::Validation(
            "operator label must be non-empty".into(),
        ));
    }
    Ok(())
}
