//! decay-worker: parse the command line, start logging, run the command, map errors to exit
//! codes. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use decay_worker::{cli::Cli, commands, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decay-worker: {}", telemetry::redact(&e.message));
            ExitCode::from(e.code)
        }
    }
}
