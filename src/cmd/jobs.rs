//! `decay-worker jobs list|show|cancel|stats`: read and manage jobs in the database. None of
//! them touches the broker: a cancelled job's message, when it arrives, finds a terminal job and
//! is acked as a no-op.

use serde::Serialize;
use serde_json::Value;

use super::{CliError, parse_job_id, print_json};
use crate::app::{self, Pool};
use crate::cli::{JobsCancelArgs, JobsListArgs, JobsShowArgs, JobsStatsArgs};
use crate::decay::attestation::AttestationAudit;
use crate::decay::{JobRecord, JobStateKind};
use crate::ids::MemoryId;
use crate::store::{CancelOutcome, JobStats};

/// `jobs list --json`.
#[derive(Serialize)]
struct ListReport<'a> {
    state_filter: Vec<&'static str>,
    job_count: usize,
    jobs: &'a [JobRecord],
}

/// `jobs show`: the row, plus what its summary superseded.
#[derive(Serialize)]
struct ShowReport {
    #[serde(flatten)]
    job: JobRecord,
    superseded_memory_ids: Vec<String>,
    superseded_episode_ids: Vec<String>,
    /// Everything the attestation's signature covers, with the signature and key, so the
    /// record can be verified again (all null for jobs without one).
    attestation: AttestationAudit,
}

/// `jobs cancel --json`.
#[derive(Serialize)]
struct CancelReport<'a> {
    job_id: String,
    from_state: &'static str,
    to_state: &'static str,
    reason: &'a str,
}

/// `jobs stats --json`: the counts, plus the age of the oldest pending job.
#[derive(Serialize)]
struct StatsReport<'a> {
    #[serde(flatten)]
    stats: &'a JobStats,
    oldest_pending_age_seconds: Option<i64>,
}

pub async fn list(a: JobsListArgs) -> Result<(), CliError> {
    let store = app::connect_store(&a.db, Pool::Command).await?;
    let states: Vec<JobStateKind> = if a.state.is_empty() {
        JobStateKind::ALL.to_vec()
    } else {
        a.state.iter().map(|s| (*s).into()).collect()
    };
    let mut rows = Vec::new();
    for s in &states {
        rows.extend(store.list_jobs_by_state(*s, a.limit).await?);
    }
    if a.json {
        print_json(&ListReport {
            state_filter: states.iter().map(|s| s.wire()).collect(),
            job_count: rows.len(),
            jobs: &rows,
        });
        return Ok(());
    }
    println!(
        "{:<30}  {:<24}  {:<11}  {:<25}  DETAIL",
        "ID", "KIND", "STATE", "SCHEDULED_FOR"
    );
    for r in &rows {
        let detail = r
            .failure_code
            .as_deref()
            .or(r.result_memory_id.as_deref())
            .unwrap_or_default();
        println!(
            "{:<30}  {:<24}  {:<11}  {:<25}  {}",
            r.id,
            r.kind,
            r.state,
            r.scheduled_for
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            detail
        );
    }
    Ok(())
}

pub async fn show(a: JobsShowArgs) -> Result<(), CliError> {
    let id = parse_job_id(&a.id)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    let Some(job) = store.read_job(&id).await? else {
        return Err(CliError::precondition(
            "decay.status.job_not_found",
            format!("decay job {id} not found"),
        ));
    };
    let summary = job
        .result_memory_id
        .as_deref()
        .map(MemoryId::parse)
        .transpose()
        .map_err(CliError::internal)?;
    let (superseded_memory_ids, superseded_episode_ids) = match &summary {
        Some(m) => (
            store.list_memory_sources_for(m).await?,
            store.list_episode_sources_for(m).await?,
        ),
        None => (vec![], vec![]),
    };
    let attestation = store.read_attestation(&id).await?.unwrap_or_default();
    let report = ShowReport {
        job,
        superseded_memory_ids,
        superseded_episode_ids,
        attestation,
    };
    if a.json {
        print_json(&report);
        return Ok(());
    }
    // One `field value` line per field of the JSON report, in its (sorted) key order.
    if let Ok(Value::Object(fields)) = serde_json::to_value(&report) {
        for (k, val) in fields {
            // The nested attestation record prints one `attestation.<field>` line each.
            let lines = match val {
                Value::Object(inner) => inner
                    .into_iter()
                    .map(|(ik, iv)| (format!("{k}.{ik}"), iv))
                    .collect(),
                other => vec![(k, other)],
            };
            for (k, val) in lines {
                let text = match val {
                    Value::String(s) => s,
                    Value::Null => "-".into(),
                    other => other.to_string(),
                };
                println!("{k:<26} {text}");
            }
        }
    }
    Ok(())
}

pub async fn cancel(a: JobsCancelArgs) -> Result<(), CliError> {
    if a.reason.trim().is_empty() {
        return Err(CliError::usage("--reason must not be blank"));
    }
    let id = parse_job_id(&a.id)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    match store.cancel_job(&id, &a.reason).await? {
        CancelOutcome::Cancelled { from } => {
            if a.json {
                print_json(&CancelReport {
                    job_id: id.to_string(),
                    from_state: from.wire(),
                    to_state: JobStateKind::Cancelled.wire(),
                    reason: &a.reason,
                });
            } else {
                println!("{id}: {from} -> cancelled");
            }
            Ok(())
        }
        CancelOutcome::NotFound => Err(CliError::precondition(
            "decay.cancel.job_not_found",
            format!("decay job {id} not found"),
        )),
        CancelOutcome::Terminal { state } => Err(CliError::precondition(
            "decay.cancel.terminal_state",
            format!("decay job {id} is already {state}"),
        )),
    }
}

pub async fn stats(a: JobsStatsArgs) -> Result<(), CliError> {
    let store = app::connect_store(&a.db, Pool::Command).await?;
    let stats = store.job_stats().await?;
    let oldest_pending_age_seconds = stats
        .oldest_pending_scheduled_for
        .map(|t| (stats.now - t).num_seconds().max(0));
    if a.json {
        print_json(&StatsReport {
            stats: &stats,
            oldest_pending_age_seconds,
        });
        return Ok(());
    }
    println!("{:<11}  {:<24}  COUNT", "STATE", "KIND");
    for (s, k, n) in &stats.by_state_kind {
        println!("{s:<11}  {k:<24}  {n}");
    }
    println!();
    println!("failures by code:");
    for (c, n) in &stats.failures_by_code {
        println!("  {c:<40} {n}");
    }
    println!(
        "oldest pending age: {}",
        oldest_pending_age_seconds.map_or("-".into(), |s| format!("{s}s"))
    );
    println!("expired leases: {}", stats.expired_leases);
    Ok(())
}
