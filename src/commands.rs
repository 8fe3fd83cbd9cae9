//! What each command does. `main.rs` parses, calls [`run`], and maps a [`CliError`] to its exit
//! code; everything between lives here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::cli::{
    Cli, Command, JobsCancelArgs, JobsCommand, JobsListArgs, JobsShowArgs, JobsStatsArgs, KindArg,
    MethodArg, RunArgs, ScheduleArgs,
};
use crate::decay::runner::{RunOutcome, Runner};
use crate::decay::summary::attestation::TrustPolicy;
use crate::decay::summary::backend::NoopBackend;
use crate::decay::{JobKind, JobStateKind, SummaryMethod, error::invariant};
use crate::ids::DecayJobId;
use crate::store::{CancelOutcome, JobRow, NewJob, Store, StoreError};
use crate::telemetry::redact;

/// Exit codes (the reference's, spec §8.1).
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 2;
    pub const INTEGRITY_FAILURE: u8 = 3;
    pub const PRECONDITION_UNMET: u8 = 7;
    pub const INTERNAL: u8 = 64;
}

/// A command's failure: one line for stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    pub fn precondition(invariant: &str, reason: impl std::fmt::Display) -> CliError {
        CliError {
            code: exit::PRECONDITION_UNMET,
            message: format!("{invariant}: {reason}"),
        }
    }
    pub fn integrity(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::INTEGRITY_FAILURE,
            message: message.into(),
        }
    }
    pub fn internal(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: exit::INTERNAL,
            message: redact(&message.to_string()),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError::internal(e)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::internal(format!("{e:#}"))
    }
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Migrate(a) => {
            let store = Store::connect(&a.db.store_config(2)).await?;
            store.migrate().await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Schedule(a) => schedule(a).await,
        Command::Run(a) => run_job(a).await,
        Command::Jobs(JobsCommand::List(a)) => jobs_list(a).await,
        Command::Jobs(JobsCommand::Show(a)) => jobs_show(a).await,
        Command::Jobs(JobsCommand::Cancel(a)) => jobs_cancel(a).await,
        Command::Jobs(JobsCommand::Stats(a)) => jobs_stats(a).await,
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn parse_job_id(s: &str) -> Result<DecayJobId, CliError> {
    DecayJobId::parse(s.trim()).map_err(|e| CliError::usage(e.to_string()))
}

fn clean_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Build the job a `schedule` invocation describes, refusing what the reference refuses.
pub fn job_from_schedule_args(a: &ScheduleArgs, now: DateTime<Utc>) -> Result<NewJob, CliError> {
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
    job.validate().map_err(|e| CliError::usage(e.to_string()))?;
    Ok(job)
}

async fn schedule(a: ScheduleArgs) -> Result<(), CliError> {
    let now = Utc::now();
    let job = job_from_schedule_args(&a, now)?;
    let store = Store::connect(&a.db.store_config(2)).await?;
    store.insert_job(&job).await?;
    if a.json {
        print_json(&json!({
            "job_id": job.id.to_string(),
            "kind": job.kind,
            "summary_method": job.summary_method,
            "state": "pending",
            "scheduled_for": job.scheduled_for.to_rfc3339(),
            "source_ids": job.source_ids_json,
            "created_by": job.created_by,
        }));
    } else {
        println!("{}", job.id);
    }
    Ok(())
}

/// The `run` report, read back from the row (never derived from the runner's return value).
fn run_report(id: &DecayJobId, from: Option<&JobRow>, to: Option<&JobRow>, outcome: &str) -> Value {
    json!({
        "job_id": id.to_string(),
        "outcome": outcome,
        "kind": to.map(|r| r.kind.clone()),
        "summary_method": to.map(|r| r.summary_method.clone()),
        "from_state": from.map(|r| r.state.clone()),
        "to_state": to.map(|r| r.state.clone()),
        "result_memory_id": to.and_then(|r| r.result_memory_id.clone()),
        "state_reason": to.and_then(|r| r.state_reason.clone()),
        "failure_code": to.and_then(|r| r.failure_code.clone()),
    })
}

fn outcome_token(o: &RunOutcome) -> &'static str {
    match o {
        RunOutcome::Completed { .. } => "completed",
        RunOutcome::AlreadyTerminal { .. } => "noop",
        RunOutcome::Failed { .. } => "failed",
        RunOutcome::InProgress { .. } => "in_progress",
        RunOutcome::NotDue { .. } => "not_due",
        RunOutcome::NotFound => "not_found",
        RunOutcome::ClaimLost => "claim_lost",
    }
}

async fn run_job(a: RunArgs) -> Result<(), CliError> {
    let cfg = a.runner.runner_config().map_err(CliError::usage)?;
    let requested = a.job_id.as_deref().map(parse_job_id).transpose()?;
    let store = Store::connect(&a.db.store_config(3)).await?;
    let runner = Runner::new(
        store.clone(),
        cfg,
        Arc::new(NoopBackend),
        TrustPolicy::default(),
    );
    let now = Utc::now();
    let attestation = a.operator_attestation.as_deref();

    // Preview: refuse an LLM job without an attestation before touching it (row unchanged).
    let before = match &requested {
        Some(id) => match store.read_job(&id.to_string()).await? {
            Some(row) => Some(row),
            None => {
                return Err(CliError::precondition(
                    "decay.run.job_not_found",
                    format!("decay job {id} not found"),
                ));
            }
        },
        None => match store.list_pending_ready(now, 1).await?.into_iter().next() {
            Some(row) => Some(row),
            None => {
                return Err(CliError::precondition(
                    "decay.run.no_pending_jobs",
                    "no pending decay jobs whose scheduled_for is in the past",
                ));
            }
        },
    };
    if let Some(row) = &before
        && row.summary_method == SummaryMethod::LlmSummary.wire()
        && row.state == JobStateKind::Pending.wire()
        && attestation.is_none()
    {
        return Err(CliError::precondition(
            "decay.run.operator_attestation_required_for_llm",
            format!(
                "decay job {} is an llm_summary job; pass --operator-attestation PATH",
                row.id
            ),
        ));
    }

    let result = match &requested {
        Some(id) => runner
            .run_specific_job_with_attestation(id, now, attestation)
            .await
            .map(|o| Some((*id, o))),
        None => {
            runner
                .run_next_pending_job_with_attestation(now, attestation)
                .await
        }
    };
    let (id, outcome) = match result {
        Ok(Some(x)) => x,
        Ok(None) => {
            return Err(CliError::precondition(
                "decay.run.no_pending_jobs",
                "no pending decay jobs whose scheduled_for is in the past",
            ));
        }
        Err(e) => return Err(CliError::integrity(redact(&e.to_string()))),
    };
    let from = if requested.is_some() {
        before
    } else {
        before.filter(|b| b.id == id.to_string())
    };
    let after = store.read_job(&id.to_string()).await?;
    let report = run_report(&id, from.as_ref(), after.as_ref(), outcome_token(&outcome));
    if a.json {
        print_json(&report);
    } else {
        println!(
            "{id}: {} -> {} ({})",
            from.as_ref().map_or("?", |r| r.state.as_str()),
            after.as_ref().map_or("?", |r| r.state.as_str()),
            outcome_token(&outcome)
        );
    }
    match &outcome {
        RunOutcome::Completed { .. } | RunOutcome::AlreadyTerminal { .. } => Ok(()),
        RunOutcome::Failed { code, reason } => {
            let llm = [
                invariant::LLM_REQUIRES_ATTESTATION,
                invariant::LLM_ATTESTATION_REJECTED,
                invariant::LLM_BACKEND_CALL_FAILED,
            ];
            if llm.contains(&code.as_str()) {
                Err(CliError::precondition(code, reason))
            } else {
                Err(CliError::integrity(format!("{code}: {reason}")))
            }
        }
        RunOutcome::NotFound => Err(CliError::precondition(
            "decay.run.job_not_found",
            format!("decay job {id} not found"),
        )),
        RunOutcome::NotDue { .. } => Err(CliError::precondition(
            "decay.run.not_due",
            outcome.refusal(&id).unwrap_or_default(),
        )),
        RunOutcome::InProgress { .. } | RunOutcome::ClaimLost => Err(CliError::integrity(format!(
            "validation failed: {}",
            outcome.refusal(&id).unwrap_or_default()
        ))),
    }
}

fn job_json(row: &JobRow) -> Value {
    serde_json::to_value(row).unwrap_or(Value::Null)
}

async fn jobs_list(a: JobsListArgs) -> Result<(), CliError> {
    let store = Store::connect(&a.db.store_config(2)).await?;
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
        print_json(&json!({
            "state_filter": states.iter().map(|s| s.wire()).collect::<Vec<_>>(),
            "job_count": rows.len(),
            "jobs": rows.iter().map(job_json).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "{:<30}  {:<24}  {:<11}  {:<25}  DETAIL",
            "ID", "KIND", "STATE", "SCHEDULED_FOR"
        );
        for r in &rows {
            let detail = r
                .failure_code
                .clone()
                .or_else(|| r.result_memory_id.clone())
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
    }
    Ok(())
}

async fn jobs_show(a: JobsShowArgs) -> Result<(), CliError> {
    let id = parse_job_id(&a.id)?;
    let store = Store::connect(&a.db.store_config(2)).await?;
    let Some(row) = store.read_job(&id.to_string()).await? else {
        return Err(CliError::precondition(
            "decay.status.job_not_found",
            format!("decay job {id} not found"),
        ));
    };
    let (mems, epis) = match &row.result_memory_id {
        Some(m) => (
            store.list_memory_sources_for(m).await?,
            store.list_episode_sources_for(m).await?,
        ),
        None => (vec![], vec![]),
    };
    let mut v = job_json(&row);
    if let Value::Object(map) = &mut v {
        map.insert("superseded_memory_ids".into(), json!(mems));
        map.insert("superseded_episode_ids".into(), json!(epis));
    }
    if a.json {
        print_json(&v);
    } else if let Value::Object(map) = &v {
        for (k, val) in map {
            let text = match val {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{k:<26} {text}");
        }
    }
    Ok(())
}

async fn jobs_cancel(a: JobsCancelArgs) -> Result<(), CliError> {
    if a.reason.trim().is_empty() {
        return Err(CliError::usage("--reason must not be blank"));
    }
    let id = parse_job_id(&a.id)?;
    let store = Store::connect(&a.db.store_config(2)).await?;
    match store
        .cancel_job(&id.to_string(), &a.reason, Utc::now())
        .await?
    {
        CancelOutcome::Cancelled { from } => {
            if a.json {
                print_json(
                    &json!({"job_id": id.to_string(), "from_state": from, "to_state": "cancelled", "reason": a.reason}),
                );
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

async fn jobs_stats(a: JobsStatsArgs) -> Result<(), CliError> {
    let store = Store::connect(&a.db.store_config(2)).await?;
    let now = Utc::now();
    let stats = store.job_stats(now).await?;
    let oldest_age = stats
        .oldest_pending_scheduled_for
        .map(|t| (now - t).num_seconds().max(0));
    if a.json {
        let mut v = serde_json::to_value(&stats).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("oldest_pending_age_seconds".into(), json!(oldest_age));
        }
        print_json(&v);
    } else {
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
            oldest_age.map_or("-".into(), |s| format!("{s}s"))
        );
        println!("expired leases: {}", stats.expired_leases);
    }
    Ok(())
}
