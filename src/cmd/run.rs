//! `decay-worker run`: run one job directly through the runner, without the broker.
//!
//! The report is read back from the row after the run (never derived from the runner's return
//! value), so it shows what the database holds. Four steps:
//! 1. [`preview`]: find the job (by id, or the head of the ready list) without touching it;
//! 2. refuse an LLM job that has no attestation before it is claimed, leaving its row as it
//!    was ([`require_attestation`]);
//! 3. run it ([`execute`]);
//! 4. report the row's change and turn the outcome into an exit code ([`verdict`]).

use std::path::Path;

use serde::Serialize;

use super::{CliError, parse_job_id, print_json};
use crate::app::{self, Pool};
use crate::cli::RunArgs;
use crate::decay::{Invariant, JobRecord, JobStateKind, SummaryMethod};
use crate::ids::DecayJobId;
use crate::runner::{RunOutcome, Runner};
use crate::store::Store;

const NO_PENDING_JOBS: &str = "decay.run.no_pending_jobs";
const NO_PENDING_JOBS_REASON: &str = "no pending decay jobs whose scheduled_for is in the past";

/// `run --json`: the job's row before and after the run.
#[derive(Serialize)]
struct Report<'a> {
    job_id: String,
    outcome: &'static str,
    kind: Option<&'a str>,
    summary_method: Option<&'a str>,
    from_state: Option<&'a str>,
    to_state: Option<&'a str>,
    result_memory_id: Option<&'a str>,
    state_reason: Option<&'a str>,
    failure_code: Option<&'a str>,
}

impl<'a> Report<'a> {
    fn of(
        id: &DecayJobId,
        outcome: &RunOutcome,
        from: Option<&'a JobRecord>,
        to: Option<&'a JobRecord>,
    ) -> Report<'a> {
        Report {
            job_id: id.to_string(),
            outcome: outcome_token(outcome),
            kind: to.map(|r| r.kind.as_str()),
            summary_method: to.map(|r| r.summary_method.as_str()),
            from_state: from.map(|r| r.state.as_str()),
            to_state: to.map(|r| r.state.as_str()),
            result_memory_id: to.and_then(|r| r.result_memory_id.as_deref()),
            state_reason: to.and_then(|r| r.state_reason.as_deref()),
            failure_code: to.and_then(|r| r.failure_code.as_deref()),
        }
    }
}

/// The `outcome` token of the report.
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

pub async fn run(a: RunArgs) -> Result<(), CliError> {
    let cfg = a.runner.runner_config().map_err(CliError::usage)?;
    let requested = a.job_id.as_deref().map(parse_job_id).transpose()?;
    let store = app::connect_store(&a.db, Pool::Run).await?;
    let backend = a
        .llm
        .backend()
        .map_err(|e| CliError::precondition("decay.run.summary_backend_fixture_invalid", e))?;
    let trust = a.llm.trust_policy().map_err(CliError::usage)?;
    let runner = Runner::new(store.clone(), cfg, backend, trust);
    let attestation = a.operator_attestation.as_deref();

    let before = preview(&store, requested.as_ref()).await?;
    require_attestation(&before, attestation)?;
    let (id, outcome) = execute(&runner, requested.as_ref(), attestation).await?;
    // Without an id the runner takes the head of the ready list itself; the previewed row is
    // the "before" only if it is the job that ran.
    let from = Some(before).filter(|b| requested.is_some() || b.id == id);
    let after = store.read_job(&id).await?;
    if a.json {
        print_json(&Report::of(&id, &outcome, from.as_ref(), after.as_ref()));
    } else {
        println!(
            "{id}: {} -> {} ({})",
            from.as_ref().map_or("?", |r| r.state.as_str()),
            after.as_ref().map_or("?", |r| r.state.as_str()),
            outcome_token(&outcome)
        );
    }
    verdict(&id, &terminal_as_run(outcome, after.as_ref()))
}

/// A job found already `failed` answers as its failure did when it ran, so `run` on a failed
/// job exits the same way every time (issue 16): the code and reason come from the row.
fn terminal_as_run(outcome: RunOutcome, row: Option<&JobRecord>) -> RunOutcome {
    let failed_already = matches!(
        outcome,
        RunOutcome::AlreadyTerminal {
            state: JobStateKind::Failed
        }
    );
    let (true, Some(row)) = (failed_already, row) else {
        return outcome;
    };
    let code = Invariant::ALL
        .into_iter()
        .find(|i| row.failure_code.as_deref() == Some(i.as_str()))
        .unwrap_or(Invariant::RunnerFailure);
    RunOutcome::Failed {
        code,
        reason: row.state_reason.clone().unwrap_or_default(),
    }
}

/// `<code>: <reason>`, or the reason alone when it already names its code (the spec's texts
/// do: `validation failed: decay.compress.source_missing: ...`), so no prefix is doubled.
fn failure_line(code: Invariant, reason: &str) -> String {
    if reason.contains(code.as_str()) {
        reason.to_string()
    } else {
        format!("{code}: {reason}")
    }
}

/// The job `run` is about to run, read without touching it.
async fn preview(store: &Store, requested: Option<&DecayJobId>) -> Result<JobRecord, CliError> {
    match requested {
        Some(id) => store.read_job(id).await?.ok_or_else(|| {
            CliError::precondition(
                "decay.run.job_not_found",
                format!("decay job {id} not found"),
            )
        }),
        None => store
            .list_pending_ready(1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CliError::precondition(NO_PENDING_JOBS, NO_PENDING_JOBS_REASON)),
    }
}

/// A pending LLM job needs `--operator-attestation`; without one it is refused here, before
/// the runner would claim it and settle it `failed`.
fn require_attestation(row: &JobRecord, attestation: Option<&Path>) -> Result<(), CliError> {
    if row.summary_method == SummaryMethod::LlmSummary.wire()
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
    Ok(())
}

/// Run the requested job, or the head of the ready list. A transient runner error is an
/// internal failure (the job is untouched); any other (the job could not be settled) is an
/// integrity failure.
async fn execute(
    runner: &Runner,
    requested: Option<&DecayJobId>,
    attestation: Option<&Path>,
) -> Result<(DecayJobId, RunOutcome), CliError> {
    let ran = match requested {
        Some(id) => runner
            .run_specific_job_with_attestation(id, attestation)
            .await
            .map(|o| Some((*id, o))),
        None => {
            runner
                .run_next_pending_job_with_attestation(attestation)
                .await
        }
    };
    match ran {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(CliError::precondition(
            NO_PENDING_JOBS,
            NO_PENDING_JOBS_REASON,
        )),
        // The database's trouble (down, failing over, a cancelled statement): the job was left
        // as it was and can simply be run again, so this is no integrity failure.
        Err(e) if e.is_transient() => Err(CliError::internal(format!(
            "{e}; the job was left as it was, run it again"
        ))),
        Err(e) => Err(CliError::integrity(e)),
    }
}

/// The exit of `run` for an outcome: success for a completed (or already terminal) job; a
/// precondition for what refused to run (not found, not due, an LLM refusal); an integrity
/// failure for a job that failed an invariant or is held by another runner.
fn verdict(id: &DecayJobId, outcome: &RunOutcome) -> Result<(), CliError> {
    match outcome {
        RunOutcome::Completed { .. } | RunOutcome::AlreadyTerminal { .. } => Ok(()),
        RunOutcome::Failed { code, reason } => {
            let llm_refusal = matches!(
                code,
                Invariant::LlmRequiresAttestation
                    | Invariant::LlmAttestationRejected
                    | Invariant::LlmBackendCallFailed
            );
            let line = failure_line(*code, reason);
            if llm_refusal {
                Err(CliError::precondition_line(line))
            } else {
                Err(CliError::integrity(line))
            }
        }
        RunOutcome::NotFound => Err(CliError::precondition(
            "decay.run.job_not_found",
            format!("decay job {id} not found"),
        )),
        RunOutcome::NotDue { .. } => Err(CliError::precondition(
            "decay.run.not_due",
            outcome.refusal(id).unwrap_or_default(),
        )),
        RunOutcome::InProgress { .. } | RunOutcome::ClaimLost => Err(CliError::integrity(format!(
            "validation failed: {}",
            outcome.refusal(id).unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_carry_the_reference_exit_codes() {
        let id = DecayJobId::new();
        let code = |o: RunOutcome| verdict(&id, &o).err().map(|e| e.code());
        assert_eq!(
            code(RunOutcome::Completed {
                result_memory_id: None
            }),
            None
        );
        assert_eq!(
            code(RunOutcome::AlreadyTerminal {
                state: JobStateKind::Completed
            }),
            None
        );
        let failed = |code| RunOutcome::Failed {
            code,
            reason: "r".into(),
        };
        assert_eq!(code(failed(Invariant::LlmAttestationRejected)), Some(7));
        assert_eq!(code(failed(Invariant::RunnerFailure)), Some(3));
        assert_eq!(code(RunOutcome::NotFound), Some(7));
        assert_eq!(
            code(RunOutcome::NotDue {
                scheduled_for: chrono::Utc::now()
            }),
            Some(7)
        );
        assert_eq!(code(RunOutcome::ClaimLost), Some(3));
    }

    #[test]
    fn the_reason_names_its_code_once() {
        let spec = "validation failed: decay.compress.source_missing: memory mem_x not found";
        assert_eq!(failure_line(Invariant::CompressSourceMissing, spec), spec);
        assert_eq!(
            failure_line(Invariant::RunnerFailure, "boom"),
            "decay.runner.failure: boom"
        );
    }
}
