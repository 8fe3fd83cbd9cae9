//! Logging: a `tracing` subscriber writing to stderr, as text or JSON, filtered by `RUST_LOG`;
//! and [`redact`], which every text that may hold a URL passes through before it is logged,
//! printed or stored.

mod redact;

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

pub use redact::{MASK, redact};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: try_init reports it and we ignore that.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
