//! Typed settings. Every knob is a flag with an environment-variable twin (clap `env`), so
//! containers are configured through the environment alone. Values are validated at start,
//! before anything connects.
//!
//! Each default is declared once, as a constant beside the settings type it belongs to
//! (`runner::DEFAULT_LEASE`, `broker::DEFAULT_DELIVERY_LIMIT`, ...); the flags here show and
//! use those constants.

mod duration;

use std::time::Duration;

use clap::Args;

use crate::broker::{
    DEFAULT_AMQP_URL, DEFAULT_BASE, DEFAULT_DELIVERY_LIMIT, DEFAULT_HEARTBEAT_SECS,
    DEFAULT_OP_TIMEOUT,
};
use crate::decay::attestation::DEFAULT_MAX_FUTURE_SKEW;
use crate::llm::openai::{
    OPENAI_DEFAULT_BASE_URL, OPENAI_DEFAULT_MAX_TOKENS, OPENAI_DEFAULT_TIMEOUT,
};
use crate::reconcile::{DEFAULT_RECONCILE_EVERY, DEFAULT_RECONCILE_STALE_AFTER};
use crate::runner::{
    DEFAULT_HEARTBEAT, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, RunnerConfig, default_worker_id,
};
use crate::store::{DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_DATABASE_URL, StoreConfig};
use crate::worker::outcome::DEFAULT_NOT_FOUND_RETRIES;
use crate::worker::{
    DEFAULT_BATCH_LINGER, DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_PREFETCH,
    DEFAULT_SHUTDOWN_GRACE,
};

pub use duration::{DurationArg, MAX_DURATION, parse_duration};

/// Database settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Maximum pooled database connections. Default: concurrency + 2 for `consume`, 3 for
    /// `run`, else 2.
    #[arg(long, env = "DECAY_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// How long to wait for a pooled connection before treating the database as unavailable.
    #[arg(long, env = "DECAY_DB_ACQUIRE_TIMEOUT", default_value_t = DurationArg(DEFAULT_ACQUIRE_TIMEOUT))]
    pub db_acquire_timeout: DurationArg,
}

impl DatabaseArgs {
    /// The store settings; `default_connections` is the command's pool size unless
    /// `--db-max-connections` says otherwise.
    pub fn store_config(&self, default_connections: u32) -> StoreConfig {
        StoreConfig {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections.unwrap_or(default_connections),
            acquire_timeout: self.db_acquire_timeout.0,
        }
    }
}

/// Runner settings (claims and leases).
#[derive(Debug, Clone, Args)]
pub struct RunnerArgs {
    /// Lease of a claim; a crashed runner's job is recovered this long after its last heartbeat.
    #[arg(long, env = "DECAY_LEASE", default_value_t = DurationArg(DEFAULT_LEASE))]
    pub lease: DurationArg,
    /// Heartbeat interval of a running job (at most half the lease).
    #[arg(long, env = "DECAY_HEARTBEAT", default_value_t = DurationArg(DEFAULT_HEARTBEAT))]
    pub heartbeat: DurationArg,
    /// Claims allowed before an unsettled job fails with `decay.runner.attempts_exhausted`.
    #[arg(long, env = "DECAY_MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// Identity recorded in `claimed_by`. Default: `$HOSTNAME/pid`.
    #[arg(long, env = "DECAY_WORKER_ID")]
    pub worker_id: Option<String>,
}

impl RunnerArgs {
    /// Validate and build the runner configuration.
    pub fn runner_config(&self) -> Result<RunnerConfig, String> {
        let (DurationArg(lease), DurationArg(heartbeat)) = (self.lease, self.heartbeat);
        if lease < Duration::from_millis(100) {
            return Err("--lease must be at least 100ms".into());
        }
        if heartbeat.is_zero() || heartbeat * 2 > lease {
            return Err("--heartbeat must be positive and at most half of --lease".into());
        }
        if self.max_attempts < 1 {
            return Err("--max-attempts must be at least 1".into());
        }
        Ok(RunnerConfig {
            lease,
            heartbeat_every: heartbeat,
            max_attempts: self.max_attempts,
            worker_id: self
                .worker_id
                .clone()
                .filter(|w| !w.trim().is_empty())
                .unwrap_or_else(default_worker_id),
        })
    }
}

/// Broker settings.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// AMQP URL of RabbitMQ (the password is never logged): `amqp://` or `amqps://` (TLS), or
    /// several comma-separated URLs of one cluster's nodes (each process starts at a random
    /// one and moves to the next when a node fails).
    #[arg(long, env = "AMQP_URL", hide_env_values = true, default_value = DEFAULT_AMQP_URL)]
    pub amqp_url: String,
    /// PEM file of CA certificates trusted for `amqps://` besides the bundled public roots
    /// (a private CA).
    #[arg(long, env = "DECAY_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (chain) for mutual TLS with the broker; needs --amqp-client-key.
    #[arg(long, env = "DECAY_AMQP_CLIENT_CERT")]
    pub amqp_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --amqp-client-cert.
    #[arg(long, env = "DECAY_AMQP_CLIENT_KEY")]
    pub amqp_client_key: Option<std::path::PathBuf>,
    /// Base name of the exchange and queues (`<base>`, `<base>.retry.*`, `<base>.dead`).
    #[arg(long = "queue", env = "DECAY_QUEUE", default_value = DEFAULT_BASE)]
    pub queue: String,
    /// Deliveries of one message before the broker dead-letters it (`delivery_limit`).
    /// Fixed when the queue is first declared; changing it later needs a new queue.
    #[arg(long, env = "DECAY_DELIVERY_LIMIT", default_value_t = DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,
    /// AMQP heartbeat in seconds; a dead connection is noticed within about twice this.
    #[arg(long, env = "DECAY_AMQP_HEARTBEAT", default_value_t = DEFAULT_HEARTBEAT_SECS)]
    pub amqp_heartbeat: u16,
    /// Timeout of each broker operation (connect, declare, publish confirm, close).
    #[arg(long, env = "DECAY_BROKER_TIMEOUT", default_value_t = DurationArg(DEFAULT_OP_TIMEOUT))]
    pub broker_timeout: DurationArg,
}

impl BrokerArgs {
    pub fn broker_config(&self) -> Result<crate::broker::BrokerConfig, String> {
        let base = self.queue.trim();
        if base.is_empty() || base.len() > 200 {
            return Err("--queue must be 1 to 200 characters".into());
        }
        if self.delivery_limit == 0 {
            return Err("--delivery-limit must be at least 1".into());
        }
        let nodes =
            crate::broker::nodes::parse(&self.amqp_url).map_err(|e| format!("--amqp-url: {e}"))?;
        let tls = crate::tls::TlsFiles::load(
            self.amqp_ca_file.as_deref(),
            self.amqp_client_cert.as_deref(),
            self.amqp_client_key.as_deref(),
        )?;
        if tls.is_set() && !crate::broker::nodes::any_tls(&nodes) {
            // Files for TLS with no TLS node: the operator believes the link is encrypted.
            return Err(
                "--amqp-ca-file/--amqp-client-cert are set but no AMQP URL uses amqps://".into(),
            );
        }
        Ok(crate::broker::BrokerConfig {
            url: self.amqp_url.clone(),
            tls,
            base: base.to_string(),
            delivery_limit: self.delivery_limit,
            heartbeat_secs: self.amqp_heartbeat,
            op_timeout: self.broker_timeout.0,
        })
    }
}

/// Largest `--batch-size`: a batch is one statement; past a few hundred jobs it only holds
/// row locks longer.
const MAX_BATCH_SIZE: usize = 1024;

/// Longest `--batch-linger`: a batch waits milliseconds, never long enough to matter to a job.
const MAX_BATCH_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Worker (consumer) settings.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Unacked deliveries the broker may push to this worker.
    #[arg(long, env = "DECAY_PREFETCH", default_value_t = DEFAULT_PREFETCH)]
    pub prefetch: u16,
    /// Jobs run concurrently by this worker.
    #[arg(long, env = "DECAY_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Most already-delivered messages run as one batch (one read, one transaction); 1 turns
    /// batches off. Capped at `--prefetch`.
    #[arg(long, env = "DECAY_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// How long a batch of two or more waits for more deliveries; `0` never waits. A lone
    /// delivery always runs at once.
    #[arg(long, env = "DECAY_BATCH_LINGER", default_value_t = DurationArg(DEFAULT_BATCH_LINGER))]
    pub batch_linger: DurationArg,
    /// After SIGTERM/SIGINT, how long in-flight jobs may take to finish.
    #[arg(long, env = "DECAY_SHUTDOWN_GRACE", default_value_t = DurationArg(DEFAULT_SHUTDOWN_GRACE))]
    pub shutdown_grace: DurationArg,
    /// Retries of an unknown job id before it is dead-lettered as `job_not_found`.
    #[arg(long, env = "DECAY_NOT_FOUND_RETRIES", default_value_t = DEFAULT_NOT_FOUND_RETRIES)]
    pub not_found_retries: u32,
    /// Directory of operator attestations for LLM jobs, looked up as `<dir>/<job_id>.json`.
    #[arg(long, env = "DECAY_ATTESTATION_DIR")]
    pub attestation_dir: Option<std::path::PathBuf>,
    /// Run the reconciler this often inside the worker; `0` disables it.
    #[arg(long, env = "DECAY_RECONCILE_EVERY", default_value_t = DurationArg(DEFAULT_RECONCILE_EVERY))]
    pub reconcile_every: DurationArg,
    /// A pending job whose last publish is older than this is republished by the reconciler.
    #[arg(long, env = "DECAY_RECONCILE_STALE_AFTER", default_value_t = DurationArg(DEFAULT_RECONCILE_STALE_AFTER))]
    pub reconcile_stale_after: DurationArg,
}

impl WorkerArgs {
    /// The worker settings; `delivery_limit` is the broker's (`--delivery-limit`), which the
    /// worker's own redelivery count uses too.
    pub fn worker_config(
        &self,
        delivery_limit: u32,
    ) -> Result<crate::worker::WorkerConfig, String> {
        if self.prefetch == 0 {
            return Err("--prefetch must be at least 1".into());
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err("--concurrency must be between 1 and 4096".into());
        }
        // Retry counters are read from headers clamped to this limit; a larger budget could
        // never be reached.
        let max = crate::broker::headers::MAX_COUNTER;
        if self.not_found_retries > max {
            return Err(format!("--not-found-retries must be at most {max}"));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(format!(
                "--batch-size must be between 1 and {MAX_BATCH_SIZE}"
            ));
        }
        if self.batch_linger.0 > MAX_BATCH_LINGER {
            return Err(format!(
                "--batch-linger must be at most {}ms",
                MAX_BATCH_LINGER.as_millis()
            ));
        }
        Ok(crate::worker::WorkerConfig {
            prefetch: self.prefetch,
            concurrency: self.concurrency,
            // A batch is made of delivered messages, so it can never exceed the prefetch; a
            // larger setting is capped rather than refused (an older `--prefetch 16` keeps
            // working).
            batch_size: self.batch_size.min(usize::from(self.prefetch)),
            batch_linger: self.batch_linger.0,
            shutdown_grace: self.shutdown_grace.0,
            retry: crate::worker::outcome::RetryPolicy {
                not_found_retries: self.not_found_retries,
                ..Default::default()
            },
            attestation_dir: self.attestation_dir.clone(),
            reconcile_every: Some(self.reconcile_every.0).filter(|every| !every.is_zero()),
            reconcile_stale_after: self.reconcile_stale_after.0,
            redelivery_limit: delivery_limit,
        })
    }
}

/// Which summary backend runs `llm_summary` jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Refuses every request (`summary_backend_not_configured`): LLM jobs fail closed.
    Noop,
    /// Answers from a fixture file (offline runs, CI).
    Replay,
    /// An OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp).
    Openai,
}

/// LLM summary settings: backend and attestation trust.
#[derive(Debug, Clone, Args)]
pub struct LlmArgs {
    /// Summary backend for `llm_summary` jobs.
    #[arg(long, env = "DECAY_SUMMARY_BACKEND", value_enum, default_value_t = BackendKind::Noop)]
    pub summary_backend: BackendKind,
    /// Replay fixture file (`--summary-backend replay`).
    #[arg(long, env = "DECAY_SUMMARY_FIXTURE")]
    pub summary_fixture: Option<std::path::PathBuf>,
    /// Base URL of the OpenAI-compatible API (`--summary-backend openai`).
    #[arg(long, env = "DECAY_OPENAI_BASE_URL", hide_env_values = true, default_value = OPENAI_DEFAULT_BASE_URL)]
    pub openai_base_url: String,
    /// Models the OpenAI backend may call, comma-separated (an envelope pinning another is refused).
    #[arg(long, env = "DECAY_OPENAI_MODELS", value_delimiter = ',')]
    pub openai_models: Vec<String>,
    /// Timeout of one OpenAI call.
    #[arg(long, env = "DECAY_OPENAI_TIMEOUT", default_value_t = DurationArg(OPENAI_DEFAULT_TIMEOUT))]
    pub openai_timeout: DurationArg,
    /// `max_tokens` of one OpenAI call.
    #[arg(long, env = "DECAY_OPENAI_MAX_TOKENS", default_value_t = OPENAI_DEFAULT_MAX_TOKENS)]
    pub openai_max_tokens: u32,
    /// Trusted operator keys (`{"keys":[{"key_id":..,"verifying_key_hex":..}]}`). An envelope
    /// signed by any other key is rejected; without this file every envelope is (fail closed).
    #[arg(long, env = "DECAY_TRUSTED_OPERATOR_KEYS")]
    pub trusted_operator_keys: Option<std::path::PathBuf>,
    /// Demos only: with no trusted-keys list, believe the key an envelope carries (anyone can
    /// then mint a valid envelope). Off by default: without a list, LLM jobs are refused.
    #[arg(long, env = "DECAY_ALLOW_UNTRUSTED_ATTESTATIONS")]
    pub allow_untrusted_attestations: bool,
    /// Refuse attestations whose `signed_at` is older than this (default: no limit).
    #[arg(long, env = "DECAY_ATTESTATION_MAX_AGE")]
    pub attestation_max_age: Option<DurationArg>,
    /// How far in the future `signed_at` may be (clock skew allowance).
    #[arg(long, env = "DECAY_ATTESTATION_MAX_SKEW", default_value_t = DurationArg(DEFAULT_MAX_FUTURE_SKEW))]
    pub attestation_max_skew: DurationArg,
}

impl LlmArgs {
    /// The backend, loaded and checked at start.
    pub fn backend(&self) -> Result<std::sync::Arc<dyn crate::llm::SummaryBackend>, String> {
        use crate::llm::NoopBackend;
        Ok(match self.summary_backend {
            BackendKind::Noop => std::sync::Arc::new(NoopBackend),
            BackendKind::Replay => {
                let path = self
                    .summary_fixture
                    .as_deref()
                    .ok_or("--summary-backend replay needs --summary-fixture PATH")?;
                std::sync::Arc::new(
                    crate::llm::files::load_replay(path).map_err(|e| e.to_string())?,
                )
            }
            BackendKind::Openai => {
                use crate::llm::openai::{OpenAiBackend, OpenAiConfig};
                // The key comes from the environment only, never from a flag (ps would show it).
                let api_key = std::env::var("DECAY_OPENAI_API_KEY")
                    .ok()
                    .filter(|k| !k.is_empty());
                let backend = OpenAiBackend::new(OpenAiConfig {
                    base_url: self.openai_base_url.clone(),
                    api_key,
                    model_allowlist: self.openai_models.clone(),
                    timeout: self.openai_timeout.0,
                    max_tokens: self.openai_max_tokens,
                })
                .map_err(|e| e.to_string())?;
                tracing::info!(endpoint = %backend.endpoint(), models = ?backend.model_allowlist(), "openai summary backend");
                std::sync::Arc::new(backend)
            }
        })
    }

    /// The attestation trust policy, loaded and checked at start.
    pub fn trust_policy(&self) -> Result<crate::decay::attestation::TrustPolicy, String> {
        use crate::decay::attestation::TrustPolicy;
        let to_chrono = |DurationArg(d)| chrono::Duration::from_std(d).map_err(|e| e.to_string());
        Ok(TrustPolicy {
            trusted_keys: self
                .trusted_operator_keys
                .as_deref()
                .map(crate::llm::files::load_trusted_keys)
                .transpose()?,
            allow_untrusted_keys: self.allow_untrusted_attestations,
            max_age: self.attestation_max_age.map(to_chrono).transpose()?,
            max_future_skew: to_chrono(self.attestation_max_skew)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_args_show_what_they_parse() {
        for (text, shown) in [
            ("500ms", "500ms"),
            ("30s", "30s"),
            ("90", "90s"),
            ("60s", "60s"),
            ("5m", "5m"),
            ("1h", "60m"),
            ("10m", "10m"),
            ("2h", "2h"),
            ("0", "0ms"),
            ("1.5s", "1500ms"),
            ("0.000001", "0.000001s"),
            ("10000000.000000001", "10000000.000000001s"),
        ] {
            let arg: DurationArg = text.parse().unwrap();
            assert_eq!(arg.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<DurationArg>().unwrap(), arg, "{text}");
        }
    }

    /// The flags' defaults are the settings types' own.
    #[test]
    fn flag_defaults_are_the_declared_ones() {
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            runner: RunnerArgs,
            #[command(flatten)]
            worker: WorkerArgs,
        }
        let f = Flags::try_parse_from(["x"]).unwrap();
        let runner = f.runner.runner_config().unwrap();
        let defaults = RunnerConfig::default();
        assert_eq!(runner.lease, defaults.lease);
        assert_eq!(runner.heartbeat_every, defaults.heartbeat_every);
        assert_eq!(runner.max_attempts, defaults.max_attempts);
        let worker = f.worker.worker_config(DEFAULT_DELIVERY_LIMIT).unwrap();
        assert_eq!(
            worker.retry.not_found_retries,
            crate::worker::outcome::RetryPolicy::default().not_found_retries
        );
        assert_eq!(worker.reconcile_every, Some(DEFAULT_RECONCILE_EVERY));
    }

    #[test]
    fn runner_args_are_validated() {
        let mut a = RunnerArgs {
            lease: DurationArg(Duration::from_secs(30)),
            heartbeat: DurationArg(Duration::from_secs(10)),
            max_attempts: 5,
            worker_id: Some("w1".into()),
        };
        assert_eq!(a.runner_config().unwrap().worker_id, "w1");
        a.heartbeat = DurationArg(Duration::from_secs(20));
        assert!(a.runner_config().is_err());
        a.heartbeat = DurationArg(Duration::from_secs(10));
        a.max_attempts = 0;
        assert!(a.runner_config().is_err());
    }
}
