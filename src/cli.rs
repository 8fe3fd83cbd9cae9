//! The command tree. Every flag also reads an environment variable; `--help` lists both.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{BrokerArgs, DatabaseArgs, DurationArg, LlmArgs, RunnerArgs, WorkerArgs};
use crate::decay::{JobKind, JobStateKind};
use crate::reconcile::DEFAULT_RECONCILE_STALE_AFTER;
use crate::telemetry::LogFormat;

/// decay-worker: runs memory-decay jobs against PostgreSQL, fed by job-id messages over RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "decay-worker", version, about, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "DECAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations (safe to run from several replicas at once).
    Migrate(MigrateArgs),
    /// Insert a new pending decay job and print its id.
    Schedule(ScheduleArgs),
    /// Run one job directly through the runner (no broker).
    Run(RunArgs),
    /// Inspect and manage jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Run the worker: consume job messages, run each job, ack after it is settled.
    Consume(ConsumeArgs),
    /// Publish existing job ids (e.g. after `schedule --no-publish`).
    Enqueue(EnqueueArgs),
    /// Republish due pending jobs whose message may be lost, and expired in-progress jobs.
    Reconcile(ReconcileArgs),
    /// Operator attestation tooling for LLM summaries.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Seed sample memories and episodes and schedule N jobs of mixed kinds (published).
    Demo(DemoArgs),
    /// Probe the local worker's /healthz (for container health checks): exit 0 when healthy.
    Health(HealthArgs),
    /// Serve the operator dashboard (web UI): overview, jobs, dead letters, and actions for
    /// an operator holding DECAY_DASHBOARD_TOKEN (environment only).
    Dashboard(DashboardArgs),
    /// Inspect and replay the dead-letter queue.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub runner: RunnerArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Address of the /healthz, /readyz and /metrics listener (port 0 picks a free port).
    #[arg(long, env = "DECAY_HTTP_ADDR", default_value = crate::http::DEFAULT_ADDR)]
    pub http_addr: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Address of the dashboard (and its /healthz, /readyz). Actions need the operator token
    /// in DECAY_DASHBOARD_TOKEN; there is deliberately no flag for it.
    #[arg(long, env = "DECAY_DASHBOARD_ADDR", default_value = crate::http::dashboard::DEFAULT_ADDR)]
    pub dashboard_addr: std::net::SocketAddr,
    /// How often the overview refreshes itself in the browser.
    #[arg(long, env = "DECAY_DASHBOARD_REFRESH", default_value_t = DurationArg(crate::http::dashboard::DEFAULT_REFRESH))]
    pub dashboard_refresh: DurationArg,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The worker's listener address; only its port is used (the probe goes to 127.0.0.1).
    #[arg(long, env = "DECAY_HTTP_ADDR", default_value = crate::http::DEFAULT_ADDR)]
    pub http_addr: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Job ids to publish.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Republish pending jobs whose last publish is older than this (`--reconcile-stale-after`,
    /// the worker's name for it, is accepted too).
    #[arg(long, alias = "reconcile-stale-after", env = "DECAY_RECONCILE_STALE_AFTER", default_value_t = DurationArg(DEFAULT_RECONCILE_STALE_AFTER))]
    pub stale_after: DurationArg,
    /// At most this many jobs per run.
    #[arg(long, default_value_t = 10_000)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters (id, job id, reason, time, deliveries) from the database; nothing is
    /// taken off any queue to read them.
    List(DeadLettersListArgs),
    /// Publish dead letters' messages to the main queue again (confirmed), then forget them.
    Requeue(DeadLettersPickArgs),
    /// Delete dead letters for good (poison messages nobody will fix).
    Purge(DeadLettersPickArgs),
}

#[derive(Debug, Args)]
pub struct DeadLettersListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Only dead letters with this reason (e.g. `job_not_found`).
    #[arg(long)]
    pub reason: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which dead letters `requeue` and `purge` act on.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "ids", "reason"])))]
pub struct DeadLettersPickArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Every dead letter.
    #[arg(long)]
    pub all: bool,
    /// Only dead letters with this reason (e.g. `job_not_found`, `malformed_message`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Dead letter ids (the `ID` column of `dead-letters list`) or job ids (`dcy_...`).
    pub ids: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// Job kinds as CLI values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    CandidateCompression,
    EpisodeCompression,
    ExpiredPrincipleReview,
}

impl From<KindArg> for JobKind {
    fn from(k: KindArg) -> JobKind {
        match k {
            KindArg::CandidateCompression => JobKind::CandidateCompression,
            KindArg::EpisodeCompression => JobKind::EpisodeCompression,
            KindArg::ExpiredPrincipleReview => JobKind::ExpiredPrincipleReview,
        }
    }
}

/// Summary methods as CLI values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    DeterministicConcatenate,
    Llm,
}

/// States as CLI values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    /// `in-progress`, or `in_progress` as the database, `--json` and the dashboard spell it.
    #[value(alias = "in_progress")]
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl From<StateArg> for JobStateKind {
    fn from(s: StateArg) -> JobStateKind {
        match s {
            StateArg::Pending => JobStateKind::Pending,
            StateArg::InProgress => JobStateKind::InProgress,
            StateArg::Completed => JobStateKind::Completed,
            StateArg::Failed => JobStateKind::Failed,
            StateArg::Cancelled => JobStateKind::Cancelled,
        }
    }
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// What the job does.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Source memories (candidate-compression), comma-separated, in order.
    #[arg(long, value_delimiter = ',')]
    pub memory_ids: Vec<String>,
    /// Source episodes (episode-compression), comma-separated, in order.
    #[arg(long, value_delimiter = ',')]
    pub episode_ids: Vec<String>,
    /// The principle to review (expired-principle-review).
    #[arg(long)]
    pub principle_id: Option<String>,
    /// How the summary is produced (compression kinds).
    #[arg(long, value_enum, default_value_t = MethodArg::DeterministicConcatenate)]
    pub summary_method: MethodArg,
    /// Earliest run time, RFC 3339. Default (or blank): now. Past times are refused.
    #[arg(long)]
    pub scheduled_for: Option<String>,
    /// Operator attestation envelope; required with `--summary-method llm`. It is verified
    /// before the job is inserted, and the job takes the envelope's `decay_job_id`.
    #[arg(long)]
    pub operator_attestation: Option<PathBuf>,
    /// Copy the verified envelope to `<dir>/<job_id>.json`, where workers look for it.
    #[arg(long, env = "DECAY_ATTESTATION_DIR")]
    pub attestation_dir: Option<PathBuf>,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Operator principal recorded on the job.
    #[arg(long, env = "DECAY_CREATED_BY", default_value = "operator:cli")]
    pub created_by: String,
    /// Insert only; do not publish the job's message.
    #[arg(long)]
    pub no_publish: bool,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["job_id", "next_pending"])))]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// The job to run.
    #[arg(long)]
    pub job_id: Option<String>,
    /// Run the head of the ready list instead.
    #[arg(long)]
    pub next_pending: bool,
    /// Operator attestation envelope for an LLM job.
    #[arg(long)]
    pub operator_attestation: Option<PathBuf>,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, by state (repeatable; default all states).
    List(JobsListArgs),
    /// Show one job with its supersession sources.
    Show(JobsShowArgs),
    /// Cancel a pending or in-progress job; the reason is stored.
    Cancel(JobsCancelArgs),
    /// Counts by state and kind, failures by code, oldest pending job.
    Stats(JobsStatsArgs),
}

#[derive(Debug, Args)]
pub struct JobsListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Filter by state (repeatable).
    #[arg(long, value_enum)]
    pub state: Vec<StateArg>,
    /// At most this many jobs per state.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsShowArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Job id.
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsCancelArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Job id.
    pub id: String,
    /// Why (stored on the job).
    #[arg(long)]
    pub reason: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsStatsArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// How many jobs to schedule.
    #[arg(long, env = "DECAY_DEMO_JOBS", default_value_t = 50)]
    pub jobs: usize,
    /// Print the seeded ids on stdout as shell assignments (`MEMORY_IDS=...`, `EPISODE_IDS=...`,
    /// `PRINCIPLE_ID=...`, `JOB_IDS=...`), for `schedule` to use: `eval "$(decay-worker demo
    /// --jobs 0 --print-ids)"`.
    #[arg(long)]
    pub print_ids: bool,
}

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Generate an operator key file (key id + secret seed, mode 0600) and print its public key.
    Keygen(AttestKeygenArgs),
    /// Sign an attestation envelope for one job and print it.
    Sign(AttestSignArgs),
    /// Print the OpenAI backend's prompt template and the digest envelopes must pin for it.
    Template,
}

#[derive(Debug, Args)]
pub struct AttestKeygenArgs {
    /// The key id recorded in envelopes and in the trusted-keys list.
    #[arg(long)]
    pub key_id: String,
    /// Where to write the key file (refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("template").required(true).args(["prompt_template", "prompt_template_blake3"])))]
pub struct AttestSignArgs {
    /// Operator key file from `attest keygen`.
    #[arg(long)]
    pub key: PathBuf,
    /// The job the envelope authorises. Default: a new job id (schedule then uses it).
    #[arg(long)]
    pub job_id: Option<String>,
    /// The model to pin, e.g. `gpt-4o-2024-08-06`.
    #[arg(long)]
    pub model: String,
    /// Prompt template file whose BLAKE3 digest to pin.
    #[arg(long)]
    pub prompt_template: Option<PathBuf>,
    /// The digest to pin directly (`blake3:` + 64 hex).
    #[arg(long)]
    pub prompt_template_blake3: Option<String>,
    /// Signing time, RFC 3339. Default: now.
    #[arg(long)]
    pub signed_at: Option<String>,
    /// Write the envelope here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}
