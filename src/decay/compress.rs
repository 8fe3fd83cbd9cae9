//! Deterministic compression of memories or episodes into one candidate `summary` memory
//! (spec §5, and the shared parts of the LLM path in §7.7).
//!
//! Everything here is a **pure function** of the loaded source rows: no I/O, no clock, no
//! random ids. The store loads the sources, [`super::effect`] calls one of the `summarize_*`
//! functions, and the store's settle fills in the id, `memory_type`, `status`, `salience_json`,
//! `does_not_apply_when_json` and the timestamps. Keeping the merge pure is what makes §5.6 hold: for the same source
//! rows in the same list order, the claim, confidence, authority and provenance arrays are
//! byte-stable, and they can be unit-tested without a database.
//!
//! The merge is deliberately *pessimistic* (§5.3): the summary is never more confident or more
//! trusted than its weakest source, and it keeps every piece of provenance any source had.

use serde_json::{Map, Value};

use crate::ids::{EpisodeId, MemoryId};

/// Longest deterministic claim, in UTF-8 bytes. A joined claim of exactly this length is kept.
pub const DECAY_SUMMARY_MAX_CLAIM_BYTES: usize = 4096;
/// Joins the source texts: space, vertical bar, space (3 bytes).
pub const DECAY_SUMMARY_CLAIM_SEPARATOR: &str = " | ";
/// Appended to a truncated claim so readers can tell text was dropped (15 bytes).
pub const DECAY_SUMMARY_TRUNCATION_SUFFIX: &str = "... [truncated]";

/// The authority label of every episode-sourced summary: episodes carry no authority of
/// their own, so the summary sits at the bottom of the trust ladder.
pub const EPISODE_SUMMARY_AUTHORITY: &str = "derived";

/// `applies_when_json` key listing the memory ids a summary was built from.
pub const APPLIES_WHEN_SUMMARY_OF_MEMORIES: &str = "summary_of_memories";
/// `applies_when_json` key listing the episode ids a summary was built from.
pub const APPLIES_WHEN_SUMMARY_OF_EPISODES: &str = "summary_of_episodes";
/// `applies_when_json` key added by the LLM path (§7.7) to record which model wrote the claim.
pub const APPLIES_WHEN_LLM_SUMMARY: &str = "llm_summary";

/// A source memory as the decay path reads it. The store decodes it from the JSON its
/// snapshot query builds, so the field names are also that JSON's keys.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct MemorySource {
    /// The memory's id; copied into `applies_when_json` and possibly the lineage fallback.
    pub id: MemoryId,
    /// The text concatenated into the summary claim.
    pub claim: String,
    /// Provenance: episodes this memory came from (normally an array).
    pub source_episodes_json: Value,
    /// Provenance: events this memory came from (normally an array).
    pub source_events_json: Value,
    /// Domains this memory belongs to (normally an array).
    pub domains_json: Value,
    /// Confidence, nominally 0 to 1.
    pub confidence: f64,
    /// Authority label, classified by [`AuthorityTier::classify`] but copied verbatim.
    pub authority: String,
}

/// A source episode as the decay path reads it (decoded like [`MemorySource`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct EpisodeSource {
    /// The episode's id; copied into `source_episodes_json` and `applies_when_json`.
    pub id: EpisodeId,
    /// The text concatenated into the summary claim.
    pub summary: String,
    /// Provenance: events this episode came from (normally an array).
    pub source_events_json: Value,
    /// Domains this episode belongs to (normally an array).
    pub domains_json: Value,
    /// Confidence, nominally 0 to 1.
    pub confidence: f64,
}

/// Everything of the summary memory row except id, memory_type ("summary"), status
/// ("candidate"), salience_json ({}), does_not_apply_when_json ([]) and timestamps, which the
/// store fills.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryDraft {
    /// §5.2 joined (and possibly truncated) claim, or the LLM claim verbatim.
    pub claim: String,
    /// Always a JSON array.
    pub source_episodes_json: Value,
    /// Always a JSON array.
    pub source_events_json: Value,
    /// Always a JSON array.
    pub domains_json: Value,
    /// Minimum source confidence, clamped to 0..=1.
    pub confidence: f64,
    /// Verbatim label of the last lowest-tier source, or `derived` for episodes.
    pub authority: String,
    /// Always a JSON object (`summary_of_*`, plus `llm_summary` on the LLM path).
    pub applies_when_json: Value,
}

/// The memory trust ladder of §5.3, lowest first. The derived ordering is the ladder order,
/// so "lower tier" is plain `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthorityTier {
    /// Tier 0: `derived` and every unrecognised label.
    Derived,
    /// Tier 1: `candidate` / `Candidate`.
    Candidate,
    /// Tier 2: `agent` / `Agent`.
    Agent,
    /// Tier 3: `user` / `User`.
    User,
}

impl AuthorityTier {
    /// Classify a label by exact match, as the reference does. Only the lowercase and the
    /// capitalised spellings are recognised; anything else (`USER`, `tool`, the empty string)
    /// is treated as `derived`, which errs on the side of *less* trust.
    pub fn classify(label: &str) -> Self {
        match label {
            "user" | "User" => Self::User,
            "agent" | "Agent" => Self::Agent,
            "candidate" | "Candidate" => Self::Candidate,
            _ => Self::Derived,
        }
    }
}

/// Join source texts with [`DECAY_SUMMARY_CLAIM_SEPARATOR`] and cap the result at
/// [`DECAY_SUMMARY_MAX_CLAIM_BYTES`] (§5.2).
///
/// Texts are used as given: duplicates repeat, empty strings are kept (two empty texts give
/// `" | "`) and nothing is trimmed or normalised, so the output is byte-stable.
pub fn join_claims<S: AsRef<str>>(texts: &[S]) -> String {
    let capacity = texts
        .iter()
        .map(|t| t.as_ref().len())
        .sum::<usize>()
        .saturating_add(
            DECAY_SUMMARY_CLAIM_SEPARATOR
                .len()
                .saturating_mul(texts.len().saturating_sub(1)),
        );
    let mut joined = String::with_capacity(capacity);
    for (index, text) in texts.iter().enumerate() {
        if index > 0 {
            joined.push_str(DECAY_SUMMARY_CLAIM_SEPARATOR);
        }
        joined.push_str(text.as_ref());
    }
    truncate_claim(joined)
}

/// Cap an already-joined claim (§5.2 steps 3-4).
///
/// At most [`DECAY_SUMMARY_MAX_CLAIM_BYTES`] bytes is returned unchanged. Longer text keeps
/// its first `4096 - 15 = 4081` bytes, lowered to a UTF-8 character boundary so the result
/// stays valid text, followed by [`DECAY_SUMMARY_TRUNCATION_SUFFIX`]. The result is therefore
/// never longer than 4096 bytes: exactly 4096 for ASCII, less when a multi-byte character
/// straddles the cut.
pub fn truncate_claim(joined: String) -> String {
    if joined.len() <= DECAY_SUMMARY_MAX_CLAIM_BYTES {
        return joined;
    }
    let mut joined = joined;
    let mut budget = DECAY_SUMMARY_MAX_CLAIM_BYTES - DECAY_SUMMARY_TRUNCATION_SUFFIX.len();
    // Terminates: index 0 is always a boundary.
    while !joined.is_char_boundary(budget) {
        budget -= 1;
    }
    joined.truncate(budget);
    joined.push_str(DECAY_SUMMARY_TRUNCATION_SUFFIX);
    joined
}

/// Pessimistic confidence (§5.3): the minimum of the values, clamped to `0.0..=1.0`.
///
/// NaN values are skipped, so a corrupt value can neither win the minimum nor poison the
/// result. Empty input (or only NaNs) gives `0.0`: with no trustworthy evidence the
/// pessimistic answer is "no confidence". Callers never pass an empty list. A negative zero
/// is normalised to `+0.0` so the stored value is byte-stable.
pub fn min_confidence(values: impl IntoIterator<Item = f64>) -> f64 {
    let min = values
        .into_iter()
        .filter(|value| !value.is_nan())
        .reduce(f64::min)
        .map_or(0.0, |value| value.clamp(0.0, 1.0));
    // `-0.0 + 0.0 == +0.0`; every other value is unchanged.
    min + 0.0
}

/// Pessimistic authority (§5.3): the verbatim label of the **last** source, in list order,
/// that sits at the lowest tier.
///
/// The walk starts at the user tier and remembers a label whenever its tier is less than or
/// equal to the lowest seen so far, so ties go to the later source (`[candidate, Candidate]`
/// gives `Candidate`). Empty input gives `"user"`, the label the walk starts from; callers
/// never pass an empty list.
pub fn lowest_authority<'a>(labels: impl IntoIterator<Item = &'a str>) -> String {
    let mut lowest = AuthorityTier::User;
    let mut remembered = "user";
    for label in labels {
        let tier = AuthorityTier::classify(label);
        if tier <= lowest {
            lowest = tier;
            remembered = label;
        }
    }
    remembered.to_owned()
}

/// Order-preserving union of JSON arrays (§5.3), used for domains, events and episodes.
///
/// Sources are visited in order and, within each, elements in order; the first occurrence of
/// every distinct element is kept. Distinctness is `serde_json::Value` equality, under which
/// objects compare as maps (key order is irrelevant) and numbers, objects and nested arrays
/// are deduplicated like strings. A bare string counts as a one-element array; any other
/// non-array value (object, number, bool, null) contributes nothing. The result is always an
/// array, so the row's provenance columns keep one shape.
pub fn union_json_arrays<'a>(values: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut union: Vec<Value> = Vec::new();
    let mut keep = |element: &Value| {
        // Linear scan: `Value` is not `Hash`, and provenance arrays are small.
        if !union.contains(element) {
            union.push(element.clone());
        }
    };
    for value in values {
        match value {
            Value::Array(elements) => elements.iter().for_each(&mut keep),
            Value::String(_) => keep(value),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => {}
        }
    }
    Value::Array(union)
}

/// Deterministic summary over memories in list order (duplicates kept). Callers guarantee
/// non-empty.
///
/// With an empty slice this still returns a draft (empty claim, confidence 0, authority
/// `user`, empty arrays) rather than panicking; the caller's §5.1 validation rejects that case
/// before it gets here.
pub fn summarize_memories(sources: &[MemorySource]) -> SummaryDraft {
    let claims: Vec<&str> = sources.iter().map(|s| s.claim.as_str()).collect();
    memory_draft(sources, join_claims(&claims), None)
}

/// Deterministic summary over episodes in list order (duplicates kept).
///
/// With an empty slice this returns a draft with an empty claim and confidence 0 rather than
/// panicking; callers validate non-emptiness first (§5.1).
pub fn summarize_episodes(sources: &[EpisodeSource]) -> SummaryDraft {
    let summaries: Vec<&str> = sources.iter().map(|s| s.summary.as_str()).collect();
    episode_draft(sources, join_claims(&summaries), None)
}

/// The same draft for the LLM path (§7.7): claim is the backend claim verbatim,
/// applies_when_json gains "llm_summary": {"model_name": echoed_model}.
///
/// The claim is neither trimmed nor truncated here: the runner has already refused blank or
/// over-long backend claims (§7.6).
pub fn llm_summary_of_memories(
    sources: &[MemorySource],
    claim: String,
    echoed_model: &str,
) -> SummaryDraft {
    memory_draft(sources, claim, Some(echoed_model))
}

/// The episode counterpart of [`llm_summary_of_memories`] (§7.7).
pub fn llm_summary_of_episodes(
    sources: &[EpisodeSource],
    claim: String,
    echoed_model: &str,
) -> SummaryDraft {
    episode_draft(sources, claim, Some(echoed_model))
}

/// Shared memory-source merge (§5.4 left column); `llm_model` adds the §7.7 marker.
fn memory_draft(sources: &[MemorySource], claim: String, llm_model: Option<&str>) -> SummaryDraft {
    let memory_ids = ids_array(sources.iter().map(|s| s.id.to_string()));
    let source_events_json = union_json_arrays(sources.iter().map(|s| &s.source_events_json));
    let mut source_episodes_json =
        union_json_arrays(sources.iter().map(|s| &s.source_episodes_json));
    // Lineage fallback: the memory-insert rule (§3.3) needs some non-empty lineage, so when
    // the sources carry none, the source memory ids themselves stand in for it.
    if is_empty_array(&source_episodes_json) && is_empty_array(&source_events_json) {
        source_episodes_json = memory_ids.clone();
    }
    SummaryDraft {
        claim,
        source_episodes_json,
        source_events_json,
        domains_json: union_json_arrays(sources.iter().map(|s| &s.domains_json)),
        confidence: min_confidence(sources.iter().map(|s| s.confidence)),
        authority: lowest_authority(sources.iter().map(|s| s.authority.as_str())),
        applies_when_json: applies_when(APPLIES_WHEN_SUMMARY_OF_MEMORIES, memory_ids, llm_model),
    }
}

/// Shared episode-source merge (§5.4 right column); `llm_model` adds the §7.7 marker.
fn episode_draft(
    sources: &[EpisodeSource],
    claim: String,
    llm_model: Option<&str>,
) -> SummaryDraft {
    // Episode ids are copied as given (duplicates kept, no union), both as lineage and in
    // `applies_when_json`.
    let episode_ids = ids_array(sources.iter().map(|s| s.id.to_string()));
    SummaryDraft {
        claim,
        source_episodes_json: episode_ids.clone(),
        source_events_json: union_json_arrays(sources.iter().map(|s| &s.source_events_json)),
        domains_json: union_json_arrays(sources.iter().map(|s| &s.domains_json)),
        confidence: min_confidence(sources.iter().map(|s| s.confidence)),
        authority: EPISODE_SUMMARY_AUTHORITY.to_owned(),
        applies_when_json: applies_when(APPLIES_WHEN_SUMMARY_OF_EPISODES, episode_ids, llm_model),
    }
}

/// A JSON array of canonical id strings, in the given order.
fn ids_array(ids: impl Iterator<Item = String>) -> Value {
    Value::Array(ids.map(Value::String).collect())
}

/// `{"<key>": ids}`, plus `"llm_summary": {"model_name": model}` on the LLM path.
fn applies_when(key: &str, ids: Value, llm_model: Option<&str>) -> Value {
    let mut object = Map::new();
    object.insert(key.to_owned(), ids);
    if let Some(model) = llm_model {
        let mut llm = Map::new();
        llm.insert("model_name".to_owned(), Value::String(model.to_owned()));
        object.insert(APPLIES_WHEN_LLM_SUMMARY.to_owned(), Value::Object(llm));
    }
    Value::Object(object)
}

fn is_empty_array(value: &Value) -> bool {
    value.as_array().is_some_and(Vec::is_empty)
}

#[cfg(test)]
mod tests;
