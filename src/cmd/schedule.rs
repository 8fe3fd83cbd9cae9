//! `decay-worker schedule`: insert a pending job, then publish its id with a confirm.
//!
//! The row comes first: a message whose row is missing would be retried and dead-lettered, a
//! row whose message is missing is only late (the reconciler republishes it). If the publish
//! fails the job stays `pending`, its id is still printed (it exists), and the exit code says
//! the message is not out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{CliError, print_json};
use crate::app::{self, Pool};
use crate::broker::describe;
use crate::broker::producer::Producer;
use crate::cli::{KindArg, MethodArg, ScheduleArgs};
use crate::decay::attestation::verify;
use crate::decay::{Invariant, JobKind, SummaryMethod};
use crate::ids::DecayJobId;
use crate::llm::files::load_envelope;
use crate::store::{NewJob, SourceTable, Store};

/// `schedule --json`: the job as inserted.
#[derive(Serialize)]
struct Report<'a> {
    job_id: String,
    kind: &'a str,
    summary_method: &'a str,
    state: &'static str,
    scheduled_for: String,
    source_ids: &'a Value,
    created_by: &'a str,
}

impl<'a> Report<'a> {
    fn of(job: &'a NewJob) -> Report<'a> {
        Report {
            job_id: job.id.to_string(),
            kind: &job.kind,
            summary_method: &job.summary_method,
            state: "pending",
            scheduled_for: job.scheduled_for.to_rfc3339(),
            source_ids: &job.source_ids_json,
            created_by: &job.created_by,
        }
    }
}

pub async fn run(a: ScheduleArgs) -> Result<(), CliError> {
    let now = Utc::now();
    let mut job = job_from_args(&a, now)?;
    if let (MethodArg::Llm, Some(path)) = (a.summary_method, a.operator_attestation.as_deref()) {
        // The envelope names its job: verify it fully now, so a bad one is refused before any
        // row exists, and give the job that id.
        let reject =
            |d: String| CliError::precondition(Invariant::LlmAttestationRejected.as_str(), d);
        // Fail closed first: with no trusted keys, no envelope could pass.
        let trust = a.llm.trust_policy().map_err(CliError::usage)?;
        trust
            .check_configured()
            .map_err(|e| reject(e.to_string()))?;
        let env = load_envelope(path).map_err(|e| reject(e.to_string()))?;
        job.id = DecayJobId::parse(&env.decay_job_id)
            .map_err(|e| reject(format!("decay_job_id: {e}")))?;
        verify(&env, &job.id, &trust, now).map_err(|e| reject(e.to_string()))?;
        if let Some(dir) = &a.attestation_dir {
            let dest = dir.join(format!("{}.json", job.id));
            std::fs::copy(path, &dest).map_err(|e| {
                CliError::internal(format!(
                    "cannot copy the envelope to {}: {e}",
                    dest.display()
                ))
            })?;
        }
    }
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    refuse_missing_sources(&store, &job).await?;
    // A job about to be published is marked so as it is inserted: before its message exists,
    // never after (see `Store::mark_published`).
    let inserted = if a.no_publish {
        store.insert_job(&job).await
    } else {
        store.insert_job_to_publish(&job).await
    };
    inserted.map_err(|e| {
        if e.is_unique_violation() {
            // Only an envelope chooses a job's id: this one was used before.
            CliError::precondition(
                "decay.schedule.job_exists",
                format!(
                    "decay job {} exists already: its attestation envelope was used to schedule it (an envelope attests one job; sign a new one)",
                    job.id
                ),
            )
        } else {
            e.into()
        }
    })?;
    if !a.no_publish {
        let mut producer = Producer::new(broker, "decay-worker schedule");
        let published = producer.publish(&job.id).await;
        producer.close().await;
        if let Err(e) = published {
            store.unmark_published(&[job.id]).await?;
            println!("{}", job.id);
            return Err(CliError::precondition(
                "decay.schedule.publish_failed",
                format!(
                    "job {} is stored as pending but its message was not published ({}); run `decay-worker enqueue {}` or let the reconciler republish it",
                    job.id,
                    describe(&e),
                    job.id
                ),
            ));
        }
    }
    if a.json {
        print_json(&Report::of(&job));
    } else {
        println!("{}", job.id);
    }
    Ok(())
}

/// Refuse a job whose source ids name no row, naming them all: scheduled anyway, it would only
/// fail later with `decay.compress.source_missing`. (A source deleted after this check still
/// fails the job closed when it runs.)
async fn refuse_missing_sources(store: &Store, job: &NewJob) -> Result<(), CliError> {
    let Some(kind) = JobKind::from_wire(&job.kind) else {
        return Ok(());
    };
    let ids: Vec<String> = job
        .source_ids_json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let table = SourceTable::of(kind);
    let missing = store.missing_sources(table, &ids).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(CliError::precondition(
        "decay.schedule.source_missing",
        format!(
            "no such {} ({} of {}): {}",
            table.name(),
            missing.len(),
            ids.len(),
            missing.join(", ")
        ),
    ))
}

/// Build the job a `schedule` invocation describes, refusing what the reference refuses.
fn job_from_args(a: &ScheduleArgs, now: DateTime<Utc>) -> Result<NewJob, CliError> {
    let scheduled_for = match a.scheduled_for.as_deref().map(str::trim) {
        None | Some("") => now,
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| CliError::usage(format!("--scheduled-for `{s}` is not RFC 3339: {e}")))?
            .with_timezone(&Utc),
    };
    if scheduled_for < now - chrono::Duration::seconds(1) {
        return Err(CliError::precondition(
            "decay.schedule.scheduled_for_must_be_present_or_future",
            format!(
                "scheduled_for {} is in the past",
                scheduled_for.to_rfc3339()
            ),
        ));
    }
    if a.summary_method == MethodArg::Llm && a.operator_attestation.is_none() {
        return Err(CliError::precondition(
            "decay.run.operator_attestation_required_for_llm",
            "--summary-method llm requires --operator-attestation PATH",
        ));
    }
    let memory_ids = clean_ids(&a.memory_ids);
    let episode_ids = clean_ids(&a.episode_ids);
    let principle = a
        .principle_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let method = match a.summary_method {
        MethodArg::DeterministicConcatenate => SummaryMethod::DeterministicConcatenate,
        MethodArg::Llm => SummaryMethod::LlmSummary,
    };
    let (kind, method, sources) = match a.kind {
        KindArg::CandidateCompression => {
            if !episode_ids.is_empty() || principle.is_some() || memory_ids.is_empty() {
                return Err(CliError::usage(
                    "candidate-compression takes --memory-ids (and no --episode-ids or --principle-id)",
                ));
            }
            (JobKind::CandidateCompression, method, memory_ids)
        }
        KindArg::EpisodeCompression => {
            if !memory_ids.is_empty() || principle.is_some() || episode_ids.is_empty() {
                return Err(CliError::usage(
                    "episode-compression takes --episode-ids (and no --memory-ids or --principle-id)",
                ));
            }
            (JobKind::EpisodeCompression, method, episode_ids)
        }
        KindArg::ExpiredPrincipleReview => {
            if a.summary_method == MethodArg::Llm {
                return Err(CliError::usage(
                    "expired-principle-review cannot use --summary-method llm",
                ));
            }
            let Some(p) = principle else {
                return Err(CliError::usage(
                    "expired-principle-review takes --principle-id",
                ));
            };
            if !memory_ids.is_empty() || !episode_ids.is_empty() {
                return Err(CliError::usage(
                    "expired-principle-review takes only --principle-id",
                ));
            }
            (
                JobKind::ExpiredPrincipleReview,
                SummaryMethod::None,
                vec![p.to_string()],
            )
        }
    };
    let job = NewJob::new(kind, method, sources, scheduled_for, &a.created_by, now);
    job.validate().map_err(CliError::usage)?;
    Ok(job)
}

/// The ids of a comma-separated flag, blanks dropped (ASCII blanks only: an id wrapped in
/// other whitespace is refused by the id parser).
fn clean_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|s| s.trim_ascii().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
