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

/// The filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,sqlx=warn";
/// lapin logs its own view of every connection failure at `ERROR`, in several lines, before
/// a command's one-line error says the same; by default it stays silent.
const QUIET_LAPIN: &str = "lapin=off";

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = filter_directives(std::env::var("RUST_LOG").ok().as_deref());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
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

/// The filter directives for a `RUST_LOG` value. Set, it is the filter, exactly as written (it
/// may ask for lapin's lines: the fault-injection suite reads lapin's heartbeat message);
/// unset or blank, the default, with lapin silenced.
fn filter_directives(rust_log: Option<&str>) -> String {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(set) => set.to_string(),
        None => format!("{DEFAULT_FILTER},{QUIET_LAPIN}"),
    }
}

#[cfg(test)]
mod tests {
    use super::filter_directives;

    #[test]
    fn lapin_is_quiet_unless_rust_log_is_set() {
        assert_eq!(filter_directives(None), "info,sqlx=warn,lapin=off");
        assert_eq!(filter_directives(Some(" ")), "info,sqlx=warn,lapin=off");
        assert_eq!(filter_directives(Some("warn")), "warn");
        assert_eq!(
            filter_directives(Some("warn,lapin=debug")),
            "warn,lapin=debug"
        );
    }
}
