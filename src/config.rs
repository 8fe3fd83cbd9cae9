//! Typed settings with documented defaults. Every knob is a flag with an environment-variable
//! twin (clap `env`), so containers are configured through the environment alone. Values are
//! validated at start, before anything connects.

use std::time::Duration;

use clap::Args;

use crate::decay::runner::{RunnerConfig, default_worker_id};
use crate::store::StoreConfig;

/// Parse a duration such as `500ms`, `30s`, `10m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{s}` (expected e.g. 500ms, 30s, 10m, 2h)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit `{other}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(format!("duration `{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Database settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Maximum pooled database connections. Default: concurrency + 2 for `consume`, else 4.
    #[arg(long, env = "DECAY_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// How long to wait for a pooled connection before treating the database as unavailable.
    #[arg(long, env = "DECAY_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
}

impl DatabaseArgs {
    pub fn store_config(&self, default_connections: u32) -> StoreConfig {
        StoreConfig {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections.unwrap_or(default_connections),
            acquire_timeout: self.db_acquire_timeout,
        }
    }
}

/// Runner settings (claims and leases).
#[derive(Debug, Clone, Args)]
pub struct RunnerArgs {
    /// Lease of a claim; a crashed runner's job is recovered this long after its last heartbeat.
    #[arg(long, env = "DECAY_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Heartbeat interval of a running job (must be less than half the lease).
    #[arg(long, env = "DECAY_HEARTBEAT", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Claims allowed before an unsettled job fails with `decay.runner.attempts_exhausted`.
    #[arg(long, env = "DECAY_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: i32,
    /// Identity recorded in `claimed_by`. Default: `$HOSTNAME/pid`.
    #[arg(long, env = "DECAY_WORKER_ID")]
    pub worker_id: Option<String>,
}

impl RunnerArgs {
    /// Validate and build the runner configuration.
    pub fn runner_config(&self) -> Result<RunnerConfig, String> {
        if self.lease < Duration::from_millis(100) {
            return Err("--lease must be at least 100ms".into());
        }
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.lease {
            return Err("--heartbeat must be positive and at most half of --lease".into());
        }
        if self.max_attempts < 1 {
            return Err("--max-attempts must be at least 1".into());
        }
        Ok(RunnerConfig {
            lease: self.lease,
            heartbeat_every: self.heartbeat,
            max_attempts: self.max_attempts,
            worker_id: self
                .worker_id
                .clone()
                .filter(|w| !w.trim().is_empty())
                .unwrap_or_else(default_worker_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").unwrap_err().contains("unit"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn runner_args_are_validated() {
        let mut a = RunnerArgs {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            max_attempts: 5,
            worker_id: Some("w1".into()),
        };
        assert_eq!(a.runner_config().unwrap().worker_id, "w1");
        a.heartbeat = Duration::from_secs(20);
        assert!(a.runner_config().is_err());
        a.heartbeat = Duration::from_secs(10);
        a.max_attempts = 0;
        assert!(a.runner_config().is_err());
    }
}
