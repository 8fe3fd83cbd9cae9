//! The commands, one file each. `main.rs` parses the command line and calls [`run`]; a command
//! validates its flags, wires what it needs through [`crate::app`], does its work through the
//! library, prints its report and returns. A failure is a [`CliError`]: one line for stderr
//! and an exit code.
//!
//! Reports on stdout are either text for people or, with `--json`, a typed report struct
//! (`#[derive(Serialize)]`) printed by `print_json`. Logs go to stderr.

mod attest;
mod consume;
mod dashboard;
mod dead_letters;
mod demo;
mod enqueue;
mod health;
mod jobs;
mod migrate;
mod reconcile;
mod run;
mod schedule;

use std::fmt;

use serde::Serialize;

use crate::broker::BrokerError;
use crate::cli::{AttestCommand, Cli, Command, DeadLettersCommand, JobsCommand};
use crate::ids::DecayJobId;
use crate::store::StoreError;
use crate::telemetry::redact;

/// How a command failed, as scripts see it: the process exit code (the reference's, spec §8.1).
/// This is the one place that maps failures to codes; the README's table repeats it.
///
/// | code | variant | when |
/// |---|---|---|
/// | 2 | [`Exit::Usage`] | a bad flag, argument or id, or a setting that does not validate (also a TLS certificate the broker or database refused, or ours they refused) |
/// | 3 | [`Exit::Integrity`] | `run`: the job failed with a non-LLM error, or is in progress elsewhere |
/// | 7 | [`Exit::Precondition`] | a named invariant refused the request: job not found, not due, an LLM refusal, a publish not confirmed, a terminal job on cancel, no dead letter matched |
/// | 64 | [`Exit::Internal`] | the database, the broker or the file system failed |
///
/// Exit code 0 is success; clap itself exits 2 on a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Usage,
    Integrity,
    Precondition,
    Internal,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Usage => 2,
            Exit::Integrity => 3,
            Exit::Precondition => 7,
            Exit::Internal => 64,
        }
    }
}

/// A command's failure: its exit code and one line for stderr.
///
/// An error that arrives through `?` (a typed library error, or [`crate::app`]'s `anyhow`
/// errors) is kept whole, as an [`anyhow::Error`]. The line shows only its top text: our typed
/// errors already quote their cause (`database error: …`), so printing the chain would say it
/// twice. Every line is redacted, so no URL password reaches stderr.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    error: anyhow::Error,
}

impl CliError {
    fn new(exit: Exit, error: anyhow::Error) -> CliError {
        CliError { exit, error }
    }

    /// A bad flag, argument or id.
    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError::new(Exit::Usage, anyhow::anyhow!("{message}"))
    }

    /// A named invariant refused the request: `<invariant>: <reason>`.
    pub fn precondition(invariant: &str, reason: impl fmt::Display) -> CliError {
        CliError::new(Exit::Precondition, anyhow::anyhow!("{invariant}: {reason}"))
    }

    /// A precondition refusal whose line already starts with its invariant.
    pub fn precondition_line(line: impl fmt::Display) -> CliError {
        CliError::new(Exit::Precondition, anyhow::anyhow!("{line}"))
    }

    /// The job ran and broke an invariant, or the runner refused it for integrity reasons.
    pub fn integrity(message: impl fmt::Display) -> CliError {
        CliError::new(Exit::Integrity, anyhow::anyhow!("{message}"))
    }

    /// The database, the broker or the file system failed. (`?` on a typed library error
    /// does the same and keeps the error as the source.)
    pub fn internal(message: impl fmt::Display) -> CliError {
        CliError::new(Exit::Internal, anyhow::anyhow!("{message}"))
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        self.exit.code()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.error.to_string()))
    }
}

impl From<anyhow::Error> for CliError {
    /// A [`crate::app::BadSetting`] or a refused TLS certificate is a usage error (exit 2); a
    /// database without our schema says to migrate it (exit 7); anything else is internal.
    /// The error is kept whole, with the context [`crate::app`] gave it.
    fn from(e: anyhow::Error) -> CliError {
        if e.downcast_ref::<crate::app::BadSetting>().is_some() {
            return CliError::new(Exit::Usage, e);
        }
        if let Some(store) = e.downcast_ref::<StoreError>() {
            if store.is_schema_missing() {
                return schema_missing(&e);
            }
            if crate::app::tls_refused(store).is_some() {
                return CliError::new(Exit::Usage, e);
            }
        }
        CliError::new(Exit::Internal, e)
    }
}

/// The precondition of every command that reads or writes jobs: the schema exists.
pub const SCHEMA_MISSING: &str = "decay.store.schema_missing";

/// The refusal for a database without our schema.
fn schema_missing(e: &dyn fmt::Display) -> CliError {
    CliError::precondition(
        SCHEMA_MISSING,
        format!(
            "the database has no decay-worker schema yet ({e}); run `decay-worker migrate` first"
        ),
    )
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        if e.is_schema_missing() {
            return schema_missing(&e);
        }
        // A refused certificate is a setting to fix (`sslrootcert=`, `sslmode=`), not an outage.
        let exit = if crate::app::tls_refused(&e).is_some() {
            Exit::Usage
        } else {
            Exit::Internal
        };
        CliError::new(exit, e.into())
    }
}

impl From<BrokerError> for CliError {
    fn from(e: BrokerError) -> CliError {
        // What retrying cannot fix (a refused certificate, a bad URL, a queue declared with
        // other arguments) is a setting to change, as for any bad flag.
        let exit = if e.is_permanent() {
            Exit::Usage
        } else {
            Exit::Internal
        };
        CliError::new(exit, e.into())
    }
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Migrate(a) => migrate::run(a).await,
        Command::Schedule(a) => schedule::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Jobs(JobsCommand::List(a)) => jobs::list(a).await,
        Command::Jobs(JobsCommand::Show(a)) => jobs::show(a).await,
        Command::Jobs(JobsCommand::Cancel(a)) => jobs::cancel(a).await,
        Command::Jobs(JobsCommand::Stats(a)) => jobs::stats(a).await,
        Command::Consume(a) => consume::run(a).await,
        Command::Health(a) => health::run(a).await,
        Command::Dashboard(a) => dashboard::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Attest(AttestCommand::Keygen(a)) => attest::keygen(a),
        Command::Attest(AttestCommand::Sign(a)) => attest::sign(a),
        Command::Attest(AttestCommand::Template) => attest::template(),
        Command::Enqueue(a) => enqueue::run(a).await,
        Command::Reconcile(a) => reconcile::run(a).await,
        Command::DeadLetters(DeadLettersCommand::List(a)) => dead_letters::list(a).await,
        Command::DeadLetters(DeadLettersCommand::Requeue(a)) => dead_letters::requeue(a).await,
        Command::DeadLetters(DeadLettersCommand::Purge(a)) => dead_letters::purge(a).await,
    }
}

/// Print a report as pretty JSON on stdout. Keys come out sorted (the report goes through
/// `serde_json::Value`, whose map is ordered), as they always have: scripts that diff reports
/// see a stable order whatever the struct's field order.
fn print_json(report: &impl Serialize) {
    match serde_json::to_value(report).and_then(|v| serde_json::to_string_pretty(&v)) {
        Ok(text) => println!("{text}"),
        // Our report types serialise infallibly (no maps with non-string keys); say so if not.
        Err(e) => tracing::error!(error = %e, "cannot serialise the report"),
    }
}

/// A job id from the command line (surrounding ASCII blanks ignored), or a usage error.
fn parse_job_id(s: &str) -> Result<DecayJobId, CliError> {
    DecayJobId::parse_bare(s).map_err(CliError::usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_reference_s() {
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Integrity.code(), 3);
        assert_eq!(Exit::Precondition.code(), 7);
        assert_eq!(Exit::Internal.code(), 64);
    }

    #[test]
    fn messages_are_one_redacted_line() {
        let e = CliError::precondition("decay.run.not_due", "later");
        assert_eq!(
            (e.code(), e.to_string()),
            (7, "decay.run.not_due: later".into())
        );
        let e = CliError::internal("cannot reach postgres://u:secret@h/db");
        assert_eq!(e.to_string(), "cannot reach postgres://u:***@h/db");
        let e = CliError::from(StoreError::Validation("bad".into()));
        assert_eq!(
            (e.code(), e.to_string()),
            (64, "validation failed: bad".into())
        );
    }
}
