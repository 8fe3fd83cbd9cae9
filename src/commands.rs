//! What each command does. `main.rs` parses, calls [`run`], and maps a [`CliError`] to its exit
//! code; everything between lives here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::broker::Session;
use crate::broker::producer::Producer;
use crate::cli::{
    AttestCommand, AttestKeygenArgs, AttestSignArgs, Cli, Command, ConsumeArgs, DeadLettersCommand,
    DeadLettersListArgs, DeadLettersPickArgs, DemoArgs, EnqueueArgs, HealthArgs, JobsCancelArgs,
    JobsCommand, JobsListArgs, JobsShowArgs, JobsStatsArgs, KindArg, MethodArg, ReconcileArgs,
    RunArgs, ScheduleArgs,
};
use crate::config::{COMMAND_CONNECTIONS, CONSUME_EXTRA_CONNECTIONS, RUN_CONNECTIONS};
use crate::decay::attestation::{prompt_template_digest, sign_envelope, verify};
use crate::decay::{Invariant, JobKind, JobRecord, JobStateKind, SummaryMethod};
use crate::ids::{DecayJobId, MemoryId};
use crate::llm::files::{generate_key_file, load_envelope, load_operator_key};
use crate::runner::{RunOutcome, Runner};
use crate::store::{CancelOutcome, DeadLetterRow, DeadLetterSelector, NewJob, Store, StoreError};
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

impl From<crate::worker::ReconcileError> for CliError {
    fn from(e: crate::worker::ReconcileError) -> CliError {
        CliError::internal(e)
    }
}

impl From<crate::demo::DemoError> for CliError {
    fn from(e: crate::demo::DemoError) -> CliError {
        CliError::internal(e)
    }
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Migrate(a) => {
            let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
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
        Command::Consume(a) => consume(a).await,
        Command::Health(a) => health(a).await,
        Command::Demo(a) => demo(a).await,
        Command::Attest(AttestCommand::Keygen(a)) => attest_keygen(a),
        Command::Attest(AttestCommand::Sign(a)) => attest_sign(a),
        Command::Attest(AttestCommand::Template) => {
            use crate::llm::openai::{OPENAI_PROMPT_TEMPLATE, openai_prompt_template_digest};
            print_json(&json!({
                "backend": "openai",
                "prompt_template_blake3": openai_prompt_template_digest(),
                "prompt_template": OPENAI_PROMPT_TEMPLATE,
            }));
            Ok(())
        }
        Command::Enqueue(a) => enqueue(a).await,
        Command::Reconcile(a) => reconcile(a).await,
        Command::DeadLetters(DeadLettersCommand::List(a)) => dead_letters_list(a).await,
        Command::DeadLetters(DeadLettersCommand::Requeue(a)) => dead_letters_requeue(a).await,
        Command::DeadLetters(DeadLettersCommand::Purge(a)) => dead_letters_purge(a).await,
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
    let mut job = job_from_schedule_args(&a, now)?;
    if let (MethodArg::Llm, Some(path)) = (a.summary_method, a.operator_attestation.as_deref()) {
        // The envelope names its job: verify it fully now, so a bad one is refused before any
        // row exists, and give the job that id.
        let reject =
            |d: String| CliError::precondition(Invariant::LlmAttestationRejected.as_str(), d);
        let env = load_envelope(path).map_err(|e| reject(e.to_string()))?;
        job.id = DecayJobId::parse(&env.decay_job_id)
            .map_err(|e| reject(format!("decay_job_id: {e}")))?;
        let trust = a.llm.trust_policy().map_err(CliError::usage)?;
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
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    store.insert_job(&job).await?;
    if !a.no_publish {
        let mut producer = Producer::new(broker, "decay-worker schedule");
        let published = producer.publish(&job.id).await;
        producer.close().await;
        if let Err(e) = published {
            println!("{}", job.id);
            return Err(CliError {
                code: exit::PRECONDITION_UNMET,
                message: format!(
                    "decay.schedule.publish_failed: job {} is stored as pending but its message was not published ({}); run `decay-worker enqueue {}` or let the reconciler republish it",
                    job.id,
                    crate::broker::describe(&e),
                    job.id
                ),
            });
        }
        store.mark_published(&[job.id], Utc::now()).await?;
    }
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
fn run_report(
    id: &DecayJobId,
    from: Option<&JobRecord>,
    to: Option<&JobRecord>,
    outcome: &str,
) -> Value {
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
    let store = connect_store(&a.db, RUN_CONNECTIONS).await?;
    let backend = a
        .llm
        .backend()
        .map_err(|e| CliError::precondition("decay.run.summary_backend_fixture_invalid", e))?;
    let trust = a.llm.trust_policy().map_err(CliError::usage)?;
    let runner = Runner::new(store.clone(), cfg, backend, trust);
    let now = Utc::now();
    let attestation = a.operator_attestation.as_deref();

    // Preview: refuse an LLM job without an attestation before touching it (row unchanged).
    let before = match &requested {
        Some(id) => match store.read_job(id).await? {
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
        before.filter(|b| b.id == id)
    };
    let after = store.read_job(&id).await?;
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
            let llm_refusal = matches!(
                code,
                Invariant::LlmRequiresAttestation
                    | Invariant::LlmAttestationRejected
                    | Invariant::LlmBackendCallFailed
            );
            if llm_refusal {
                Err(CliError::precondition(code.as_str(), reason))
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

fn job_json(row: &JobRecord) -> Value {
    serde_json::to_value(row).unwrap_or(Value::Null)
}

async fn jobs_list(a: JobsListArgs) -> Result<(), CliError> {
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
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
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    let Some(row) = store.read_job(&id).await? else {
        return Err(CliError::precondition(
            "decay.status.job_not_found",
            format!("decay job {id} not found"),
        ));
    };
    let summary = row
        .result_memory_id
        .as_deref()
        .map(MemoryId::parse)
        .transpose()
        .map_err(CliError::internal)?;
    let (mems, epis) = match &summary {
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
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    match store.cancel_job(&id, &a.reason, Utc::now()).await? {
        CancelOutcome::Cancelled { from } => {
            if a.json {
                print_json(
                    &json!({"job_id": id.to_string(), "from_state": from.wire(), "to_state": "cancelled", "reason": a.reason}),
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
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
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

/// Install the SIGTERM/SIGINT handlers now (before anything else can take time) and return a
/// flag that turns true on the first signal.
fn shutdown_watch() -> Result<tokio::sync::watch::Receiver<bool>, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::internal(format!("cannot install the SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::internal(format!("cannot install the SIGINT handler: {e}")))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn consume(a: ConsumeArgs) -> Result<(), CliError> {
    let mut shutdown = shutdown_watch()?;
    let runner_cfg = a.runner.runner_config().map_err(CliError::usage)?;
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let worker_cfg = a
        .worker
        .worker_config(broker.delivery_limit)
        .map_err(CliError::usage)?;
    let backend = a.llm.backend().map_err(CliError::usage)?;
    let trust = a.llm.trust_policy().map_err(CliError::usage)?;
    let pool = u32::try_from(worker_cfg.concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(CONSUME_EXTRA_CONNECTIONS);
    let store = Store::connect_lazy(&a.db.store_config(pool))?;
    // The HTTP endpoint comes up first, so a worker waiting for its database reports not-ready
    // instead of being invisible.
    let health = Arc::new(crate::worker::Health::default());
    let metrics = crate::http::install_metrics().map_err(CliError::internal)?;
    let (listener, bound) = crate::http::bind(a.http_addr)
        .await
        .map_err(|e| CliError::internal(format!("cannot listen on {}: {e}", a.http_addr)))?;
    tracing::info!(addr = %bound, "http listening (/healthz, /readyz, /metrics)");
    let http = tokio::spawn(crate::http::serve(
        listener,
        crate::http::HttpState {
            metrics,
            health: health.clone(),
            store: store.clone(),
        },
    ));
    // Migrations at start (advisory-locked); wait for the database rather than crash-loop.
    let mut delays = crate::retry::reconnect_delays();
    loop {
        match store.migrate().await {
            Ok(()) => break,
            Err(e) if e.is_transient() => {
                let wait = delays.next().unwrap_or(crate::retry::MAX_DELAY);
                tracing::warn!(error = %redact(&e.to_string()), wait_ms = wait.as_millis() as u64, "database not reachable; retrying migrations");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => {
                        http.abort();
                        return Ok(());
                    }
                }
            }
            Err(e) => return Err(CliError::internal(e)),
        }
    }
    let runner = Runner::new(store.clone(), runner_cfg, backend, trust);
    let ran = crate::worker::run(runner, broker, worker_cfg, health, shutdown).await;
    http.abort();
    store.close().await;
    ran.map_err(|e| CliError::usage(crate::broker::describe(&e)))
}

async fn enqueue(a: EnqueueArgs) -> Result<(), CliError> {
    let ids = a
        .ids
        .iter()
        .map(|s| parse_job_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    let mut producer = Producer::new(broker, "decay-worker enqueue");
    let mut published = Vec::new();
    for id in &ids {
        if store.read_job(id).await?.is_none() {
            producer.close().await;
            return Err(CliError::precondition(
                "decay.enqueue.job_not_found",
                format!("decay job {id} not found"),
            ));
        }
        if let Err(e) = producer.publish(id).await {
            producer.close().await;
            return Err(CliError::internal(format!(
                "publishing {id} failed: {}",
                crate::broker::describe(&e)
            )));
        }
        published.push(*id);
        println!("{id}");
    }
    producer.close().await;
    store.mark_published(&published, Utc::now()).await?;
    Ok(())
}

async fn reconcile(a: ReconcileArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    let mut producer = Producer::new(broker, "decay-worker reconcile");
    let n = crate::worker::reconcile_once(&store, &mut producer, a.stale_after.0, a.limit).await;
    producer.close().await;
    let n = n?;
    if a.json {
        print_json(&json!({"republished": n}));
    } else {
        println!("republished {n} job(s)");
    }
    Ok(())
}

/// Open a broker session and move what is parked in the dead queue into the database, so a
/// listing is complete even with no worker running. Returns the session (`None` when the
/// broker is unreachable: listing still works, from the database).
async fn collect_dead_letters(
    broker: &crate::broker::BrokerConfig,
    store: &Store,
) -> Option<Session> {
    let session = match Session::open(broker, "decay-worker dead-letters").await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %crate::broker::describe(&e), "broker unreachable; showing the dead letters already recorded");
            return None;
        }
    };
    loop {
        match crate::dead_letters::intake(&session, store, crate::dead_letters::INTAKE_BATCH).await
        {
            Ok(n) if n == crate::dead_letters::INTAKE_BATCH => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "could not record every parked message");
                break;
            }
        }
    }
    Some(session)
}

/// The selector of `requeue` / `purge`: `--all`, `--reason`, or letter ids and job ids.
fn dead_letter_selector(a: &DeadLettersPickArgs) -> Result<DeadLetterSelector, CliError> {
    if a.all {
        return Ok(DeadLetterSelector::All);
    }
    if let Some(r) = &a.reason {
        return Ok(DeadLetterSelector::Reason(r.trim().to_string()));
    }
    let mut letters = Vec::new();
    let mut jobs = Vec::new();
    for raw in &a.ids {
        let raw = raw.trim();
        match raw.parse::<i64>() {
            Ok(n) if n > 0 => letters.push(n),
            _ => jobs.push(DecayJobId::parse(raw).map_err(|e| {
                CliError::usage(format!(
                    "`{raw}` is neither a dead letter id (a positive number) nor a job id: {e}"
                ))
            })?),
        }
    }
    Ok(DeadLetterSelector::Ids { letters, jobs })
}

/// "Nothing matched" is an error a script can see: which ids (or which selector) found nothing.
fn none_matched(which: &DeadLetterSelector, rows: &[DeadLetterRow]) -> Option<CliError> {
    let missing: Vec<String> = match which {
        DeadLetterSelector::Ids { letters, jobs } => letters
            .iter()
            .filter(|l| !rows.iter().any(|r| r.id == **l))
            .map(ToString::to_string)
            .chain(
                jobs.iter()
                    .map(ToString::to_string)
                    .filter(|j| !rows.iter().any(|r| r.job_id.as_deref() == Some(j))),
            )
            .collect(),
        DeadLetterSelector::Reason(r) if rows.is_empty() => vec![format!("reason {r}")],
        DeadLetterSelector::All if rows.is_empty() => vec!["any".to_string()],
        _ => vec![],
    };
    (!missing.is_empty()).then(|| {
        CliError::precondition(
            "decay.dead_letters.not_found",
            format!("no dead letter matches {}", missing.join(", ")),
        )
    })
}

fn print_letters(rows: &[DeadLetterRow]) {
    println!(
        "{:>6}  {:<30}  {:<18}  {:<25}  {:>5}  DETAIL",
        "ID", "JOB_ID", "REASON", "DEAD_LETTERED_AT", "DELIV"
    );
    for l in rows {
        println!(
            "{:>6}  {:<30}  {:<18}  {:<25}  {:>5}  {}",
            l.id,
            l.job_id.as_deref().unwrap_or("-"),
            l.reason,
            l.dead_lettered_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            l.deliveries,
            l.detail
        );
    }
}

/// The JSON form of a dead letter: its row, plus the body as text (lossy, first 200 chars).
fn letter_json(l: &DeadLetterRow) -> Value {
    let mut v = serde_json::to_value(l).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        let body: String = String::from_utf8_lossy(&l.body).chars().take(200).collect();
        m.insert("body".into(), json!(body));
    }
    v
}

async fn dead_letters_list(a: DeadLettersListArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    if let Some(session) = collect_dead_letters(&broker, &store).await {
        session.close().await;
    }
    let which = match &a.reason {
        Some(r) => DeadLetterSelector::Reason(r.trim().to_string()),
        None => DeadLetterSelector::All,
    };
    let letters = store
        .list_dead_letters(&broker.base, &which, a.limit.max(0))
        .await?;
    if a.json {
        let items: Vec<Value> = letters.iter().map(letter_json).collect();
        print_json(&json!({"count": letters.len(), "dead_letters": items}));
    } else {
        print_letters(&letters);
    }
    Ok(())
}

async fn dead_letters_requeue(a: DeadLettersPickArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let which = dead_letter_selector(&a)?;
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    let Some(session) = collect_dead_letters(&broker, &store).await else {
        return Err(CliError::internal(
            "cannot requeue: the broker is unreachable (see the warning above)",
        ));
    };
    let result = crate::dead_letters::requeue(&session, &store, &which).await;
    session.close().await;
    let done = result.map_err(|e| CliError::internal(e.to_string()))?;
    for s in &done.skipped {
        eprintln!(
            "decay-worker: dead letter {} kept: its {}-byte body was stored truncated; purge it instead",
            s.id, s.body_bytes
        );
    }
    let matched: Vec<DeadLetterRow> = done.moved.iter().chain(&done.skipped).cloned().collect();
    if a.json {
        let ids: Vec<Value> = done.moved.iter().map(|l| json!(l.id)).collect();
        let jobs: Vec<Value> = done.moved.iter().map(|l| json!(l.job_id)).collect();
        print_json(&json!({"requeued": done.moved.len(), "ids": ids, "job_ids": jobs}));
    } else {
        println!("requeued {} dead letter(s)", done.moved.len());
    }
    match none_matched(&which, &matched) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn dead_letters_purge(a: DeadLettersPickArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let which = dead_letter_selector(&a)?;
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    if let Some(session) = collect_dead_letters(&broker, &store).await {
        session.close().await;
    }
    let gone = store.purge_dead_letters(&broker.base, &which).await?;
    for l in &gone {
        tracing::info!(letter = l.id, job_id = ?l.job_id, reason = %l.reason, "dead letter purged");
    }
    if a.json {
        let ids: Vec<Value> = gone.iter().map(|l| json!(l.id)).collect();
        print_json(&json!({"purged": gone.len(), "ids": ids}));
    } else {
        println!("purged {} dead letter(s)", gone.len());
    }
    match none_matched(&which, &gone) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn health(a: HealthArgs) -> Result<(), CliError> {
    if crate::http::probe(a.http_addr.port()).await {
        Ok(())
    } else {
        Err(CliError::internal(format!(
            "no healthy worker on 127.0.0.1:{}",
            a.http_addr.port()
        )))
    }
}

async fn demo(a: DemoArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = connect_store(&a.db, COMMAND_CONNECTIONS).await?;
    store.migrate().await?;
    let ids = crate::demo::run(&store, broker, a.jobs).await?;
    eprintln!(
        "done: {} jobs published; watch them with `decay-worker jobs stats`",
        ids.len()
    );
    Ok(())
}

/// Connect to the database, naming it (password redacted) when it cannot be reached.
async fn connect_store(
    db: &crate::config::DatabaseArgs,
    connections: u32,
) -> Result<Store, CliError> {
    Store::connect(&db.store_config(connections))
        .await
        .map_err(|e| {
            CliError::internal(format!(
                "cannot reach the database at {}: {e}",
                redact(&db.database_url)
            ))
        })
}

fn attest_keygen(a: AttestKeygenArgs) -> Result<(), CliError> {
    let key = generate_key_file(&a.key_id).map_err(CliError::usage)?;
    let text = serde_json::to_string_pretty(&key).map_err(CliError::internal)?;
    write_private(&a.out, &text)?;
    let public = key.verifying_key_hex().map_err(CliError::internal)?;
    print_json(&json!({
        "key_id": key.key_id,
        "verifying_key_hex": public,
        "key_file": a.out.display().to_string(),
    }));
    Ok(())
}

/// Write a secret file: created new (never overwriting), readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))
}

fn attest_sign(a: AttestSignArgs) -> Result<(), CliError> {
    let key = load_operator_key(&a.key).map_err(CliError::usage)?;
    let seed = key.seed().map_err(CliError::usage)?;
    let job_id = match a.job_id.as_deref() {
        Some(s) => parse_job_id(s)?,
        None => DecayJobId::new(),
    };
    let digest = match (&a.prompt_template, &a.prompt_template_blake3) {
        (Some(path), _) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
            prompt_template_digest(&bytes)
        }
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Err(CliError::usage(
                "pass --prompt-template or --prompt-template-blake3",
            ));
        }
    };
    let signed_at = match a.signed_at.as_deref() {
        Some(s) => {
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| CliError::usage(format!("--signed-at `{s}` is not RFC 3339: {e}")))?;
            s.to_string()
        }
        None => Utc::now().to_rfc3339(),
    };
    if a.model.trim().is_empty() {
        return Err(CliError::usage("--model must not be blank"));
    }
    let env = sign_envelope(&seed, &key.key_id, &signed_at, &job_id, &a.model, &digest);
    let text = serde_json::to_string_pretty(&env).map_err(CliError::internal)?;
    match &a.out {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))?,
        None => println!("{text}"),
    }
    Ok(())
}
