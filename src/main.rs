//! decay-worker: parse the command line, start logging, run the command, exit with its code.
//! Everything else lives in the library; [`decay_worker::cmd`] says what each code means.

use std::process::ExitCode;

use clap::Parser;
use decay_worker::{cli::Cli, cmd, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cmd::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decay-worker: {e}");
            ExitCode::from(e.code())
        }
    }
}
