//! `decay-worker dead-letters list|requeue|purge`: the operator's side of [`crate::dead_letters`].
//!
//! Each command first moves whatever is parked in the broker's dead queue into the database
//! ([`collect`]), so it acts on every dead letter even when no worker is running. Listing
//! works from the database alone when the broker is down; requeueing needs the broker.
//! A selector that matches nothing is an error a script can see (exit 7, the ids named).

use serde::Serialize;

use super::{CliError, print_json};
use crate::app::{self, Pool};
use crate::broker::{BrokerConfig, Session, describe};
use crate::cli::{DeadLettersListArgs, DeadLettersPickArgs};
use crate::dead_letters::{INTAKE_BATCH, intake};
use crate::ids::DecayJobId;
use crate::store::{DeadLetterRow, DeadLetterSelector, Store};
use crate::telemetry::redact;

/// Characters of a body shown by `list --json` (decoded lossily as UTF-8).
const BODY_PREVIEW_CHARS: usize = 200;

/// One dead letter in `list --json`: its row, plus the start of its body as text.
#[derive(Serialize)]
struct LetterReport<'a> {
    #[serde(flatten)]
    row: &'a DeadLetterRow,
    body: String,
}

impl<'a> LetterReport<'a> {
    fn of(row: &'a DeadLetterRow) -> LetterReport<'a> {
        LetterReport {
            row,
            body: String::from_utf8_lossy(&row.body)
                .chars()
                .take(BODY_PREVIEW_CHARS)
                .collect(),
        }
    }
}

/// `list --json`.
#[derive(Serialize)]
struct ListReport<'a> {
    count: usize,
    dead_letters: Vec<LetterReport<'a>>,
}

/// `requeue --json`.
#[derive(Serialize)]
struct RequeueReport<'a> {
    requeued: usize,
    ids: Vec<i64>,
    job_ids: Vec<Option<&'a str>>,
}

/// `purge --json`.
#[derive(Serialize)]
struct PurgeReport {
    purged: usize,
    ids: Vec<i64>,
}

pub async fn list(a: DeadLettersListArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    if let Some(session) = collect(&broker, &store).await {
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
        print_json(&ListReport {
            count: letters.len(),
            dead_letters: letters.iter().map(LetterReport::of).collect(),
        });
    } else {
        print_table(&letters);
    }
    Ok(())
}

pub async fn requeue(a: DeadLettersPickArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let which = selector(&a)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    let Some(session) = collect(&broker, &store).await else {
        return Err(CliError::internal(
            "cannot requeue: the broker is unreachable (see the warning above)",
        ));
    };
    let result = crate::dead_letters::requeue(&session, &store, &which).await;
    session.close().await;
    let done = result.map_err(CliError::internal)?;
    for s in &done.skipped {
        eprintln!(
            "decay-worker: dead letter {} kept: its {}-byte body was stored truncated; purge it instead",
            s.id, s.body_bytes
        );
    }
    if a.json {
        print_json(&RequeueReport {
            requeued: done.moved.len(),
            ids: done.moved.iter().map(|l| l.id).collect(),
            job_ids: done.moved.iter().map(|l| l.job_id.as_deref()).collect(),
        });
    } else {
        println!("requeued {} dead letter(s)", done.moved.len());
    }
    let matched: Vec<DeadLetterRow> = done.moved.into_iter().chain(done.skipped).collect();
    none_matched(&which, &matched)
}

pub async fn purge(a: DeadLettersPickArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let which = selector(&a)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    if let Some(session) = collect(&broker, &store).await {
        session.close().await;
    }
    let gone = store.purge_dead_letters(&broker.base, &which).await?;
    for l in &gone {
        tracing::info!(letter = l.id, job_id = ?l.job_id, reason = %l.reason, "dead letter purged");
    }
    if a.json {
        print_json(&PurgeReport {
            purged: gone.len(),
            ids: gone.iter().map(|l| l.id).collect(),
        });
    } else {
        println!("purged {} dead letter(s)", gone.len());
    }
    none_matched(&which, &gone)
}

/// Open a broker session and move what is parked in the dead queue into the database, so a
/// listing is complete even with no worker running. Returns the session (`None` when the
/// broker is unreachable: listing still works, from the database).
async fn collect(broker: &BrokerConfig, store: &Store) -> Option<Session> {
    let session = match Session::open(broker, "decay-worker dead-letters").await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %describe(&e), "broker unreachable; showing the dead letters already recorded");
            return None;
        }
    };
    loop {
        match intake(&session, store, INTAKE_BATCH).await {
            Ok(n) if n == INTAKE_BATCH => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %redact(&e.to_string()), "could not record every parked message");
                break;
            }
        }
    }
    Some(session)
}

/// The selector of `requeue` / `purge`: `--all`, `--reason`, or letter ids and job ids.
fn selector(a: &DeadLettersPickArgs) -> Result<DeadLetterSelector, CliError> {
    if a.all {
        return Ok(DeadLetterSelector::All);
    }
    if let Some(r) = &a.reason {
        return Ok(DeadLetterSelector::Reason(r.trim().to_string()));
    }
    let mut letters = Vec::new();
    let mut jobs = Vec::new();
    for raw in &a.ids {
        let raw = raw.trim_ascii();
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
fn none_matched(which: &DeadLetterSelector, rows: &[DeadLetterRow]) -> Result<(), CliError> {
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
    if missing.is_empty() {
        return Ok(());
    }
    Err(CliError::precondition(
        "decay.dead_letters.not_found",
        format!("no dead letter matches {}", missing.join(", ")),
    ))
}

fn print_table(rows: &[DeadLetterRow]) {
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
