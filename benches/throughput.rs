//! Throughput benchmark (issue 6): `cargo bench --bench throughput`.
//!
//! One run, on one machine, against the PostgreSQL at `DATABASE_URL` and the RabbitMQ at
//! `AMQP_URL` (the defaults of `.cargo/config.toml`). It creates its own database
//! (`decay_bench_<random>`, dropped at the end) and its own topology base (`bench.<random>`,
//! deleted at the end), then measures:
//!
//! * **ceiling**: exactly the per-job path the worker takes (`Runner::run_specific_job`, so
//!   whatever SQL the runner issues today) from C concurrent tokio tasks pulling ids from a
//!   shared queue, pool of C connections, no broker, warmed up first.
//! * **e2e**: W real `decay-worker consume` processes (the release binary) per (prefetch,
//!   concurrency) setting. Workers are started against an empty queue and warmed up; the clock
//!   starts at the first publish of N ids (pipelined, publisher confirms) and stops when no job is
//!   left `pending`/`in_progress` (polled every 50 ms). Worker start-up is reported separately.
//!   Every e2e run is paired with a ceiling run at the same total concurrency (W × concurrency)
//!   taken immediately before it, and `ratio` = e2e jobs/s ÷ that ceiling: on a shared machine
//!   the background load drifts within a minute, so only adjacent measurements compare.
//! * **latency**: the best setting fed at a fixed rate (default 200 jobs/s for 10 s):
//!   publish-to-settle observed by polling the published-but-unsettled ids every 5 ms (an upper
//!   bound; resolution ≈ 5 ms + one query), and publish-to-claim from the row's `updated_at` (the
//!   `now` the worker took when it received the message).
//! * **RSS**: VmHWM of every worker at the end of each run (max over the run's workers, MiB).
//! * **scale**: the best setting and its ceiling before and after inserting 1,000,000 terminal
//!   rows into `decay_jobs` (+ `VACUUM ANALYZE`).
//! * **backlog**: N ids published *before* the workers start (10k and 100k by default): drain rate
//!   (clock from worker spawn, start-up included) and RSS, which must not grow with the backlog.
//!
//! It prints one table and writes it as JSON to `target/bench-throughput.json`. Nothing here
//! fails on a timing; it fails only when the harness itself cannot do its job (a job not
//! completed, a worker dying, a service missing).
//!
//! Knobs (environment): `BENCH_QUICK=1` (about a minute), `BENCH_JOBS`, `BENCH_WORKERS=1,2,4`,
//! `BENCH_SETTINGS=16:4,32:8,64:16` (prefetch:concurrency), `BENCH_LATENCY_RATE`,
//! `BENCH_LATENCY_SECS`, `BENCH_SETTLE_POLL_MS` (5), `BENCH_SCALE_ROWS` (0 skips),
//! `BENCH_BACKLOG` (0 skips; the small comparison run is a tenth of it), `BENCH_SCRAPE_SECS`
//! (0: off; else GET every worker's /metrics this often while draining, as Prometheus would),
//! `BENCH_OUT` (JSON path), `BENCH_KEEP_LOGS=1`.
//!
//! Columns besides throughput: CPU per job (µs, user + system from /proc) of the processes
//! running the runner (workers, or the bench itself for a ceiling), of the bench process
//! (publisher and polls), of RabbitMQ and of the PostgreSQL backends of the bench database;
//! committed transactions per job in the bench database and WAL syncs per job (whole cluster),
//! both approximate (the warm-up's unflushed statistics land in the window); whole-machine CPU
//! busy; WARN/ERROR lines the workers logged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use chrono::{DateTime, Utc};
use decay_worker::broker::message::encode_body;
use decay_worker::broker::{BrokerConfig, Session, Topology};
use decay_worker::decay::attestation::TrustPolicy;
use decay_worker::ids::DecayJobId;
use decay_worker::llm::NoopBackend;
use decay_worker::runner::{RunOutcome, Runner, RunnerConfig};
use decay_worker::store::{NewJob, Store, StoreConfig};
use decay_worker::telemetry::redact;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _};
use tokio::process::{Child, Command};

const MIB: f64 = 1024.0 * 1024.0;
/// Poll interval of the end-of-run check.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// A run whose remaining-job count does not move for this long is reported as stuck.
const STALL: Duration = Duration::from_secs(90);

// ------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone, serde::Serialize)]
struct Cfg {
    quick: bool,
    jobs: usize,
    workers: Vec<usize>,
    settings: Vec<(u16, usize)>,
    latency_rate: f64,
    latency_secs: f64,
    settle_poll_ms: u64,
    scrape_secs: f64,
    scale_rows: i64,
    backlog: usize,
    backlog_small: usize,
    #[serde(skip)]
    database_url: String,
    #[serde(skip)]
    amqp_url: String,
    #[serde(skip)]
    out: PathBuf,
    #[serde(skip)]
    keep_logs: bool,
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|e| anyhow!("{name}={v:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

impl Cfg {
    fn from_env() -> Result<Cfg> {
        let quick = env_flag("BENCH_QUICK");
        let workers = match std::env::var("BENCH_WORKERS") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|w| w.trim().parse::<usize>().context("BENCH_WORKERS: 1,2,4"))
                .collect::<Result<Vec<_>>>()?,
            _ if quick => vec![1, 2],
            _ => vec![1, 2, 4],
        };
        let settings = match std::env::var("BENCH_SETTINGS") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|s| {
                    let (p, c) = s
                        .trim()
                        .split_once(':')
                        .context("BENCH_SETTINGS: prefetch:concurrency,...")?;
                    Ok((p.parse::<u16>()?, c.parse::<usize>()?))
                })
                .collect::<Result<Vec<_>>>()?,
            _ if quick => vec![(16, 4), (32, 8)],
            _ => vec![(16, 4), (32, 8), (64, 16)],
        };
        ensure!(
            !workers.is_empty() && workers.iter().all(|w| (1..=16).contains(w)),
            "BENCH_WORKERS must list 1 to 16 workers per run"
        );
        ensure!(
            !settings.is_empty() && settings.iter().all(|(p, c)| *p > 0 && *c > 0),
            "BENCH_SETTINGS must list positive prefetch:concurrency pairs"
        );
        let backlog = env_parse("BENCH_BACKLOG", if quick { 5_000 } else { 100_000 })?;
        let out = match std::env::var("BENCH_OUT") {
            Ok(p) if !p.trim().is_empty() => PathBuf::from(p),
            _ => {
                PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                    .join("bench-throughput.json")
            }
        };
        let cfg = Cfg {
            quick,
            jobs: env_parse("BENCH_JOBS", if quick { 1_000 } else { 4_000 })?,
            workers,
            settings,
            latency_rate: env_parse("BENCH_LATENCY_RATE", 200.0)?,
            latency_secs: env_parse("BENCH_LATENCY_SECS", if quick { 3.0 } else { 10.0 })?,
            settle_poll_ms: env_parse("BENCH_SETTLE_POLL_MS", 5)?,
            scrape_secs: env_parse("BENCH_SCRAPE_SECS", 0.0)?,
            scale_rows: env_parse("BENCH_SCALE_ROWS", if quick { 100_000 } else { 1_000_000 })?,
            backlog,
            backlog_small: backlog / 10,
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            amqp_url: std::env::var("AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            out,
            keep_logs: env_flag("BENCH_KEEP_LOGS"),
        };
        ensure!(cfg.jobs >= 10, "BENCH_JOBS must be at least 10");
        ensure!(
            cfg.latency_rate > 0.0 && cfg.latency_secs > 0.0,
            "BENCH_LATENCY_RATE and BENCH_LATENCY_SECS must be positive"
        );
        Ok(cfg)
    }
}

/// The URL of database `db` on the server of `url` (query string kept).
fn with_database(url: &str, db: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .context("DATABASE_URL has no scheme://")?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let authority = path.split('/').next().unwrap_or(path);
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Results

/// One line of the summary table (and one object of the JSON).
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Row {
    section: String,
    label: String,
    workers: Option<usize>,
    prefetch: Option<u16>,
    concurrency: Option<usize>,
    /// W × concurrency (e2e) or C (ceiling).
    total_concurrency: usize,
    jobs: usize,
    secs: f64,
    jobs_per_s: f64,
    /// Ceiling at the same total concurrency, for e2e rows.
    ceiling_jobs_per_s: Option<f64>,
    /// e2e ÷ ceiling.
    ratio: Option<f64>,
    /// Latency rows: publish-to-settle (observed) percentiles, ms.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Latency rows: publish-to-claim (row `updated_at`) percentiles, ms.
    claim_p50_ms: Option<f64>,
    claim_p99_ms: Option<f64>,
    /// Spawn until every worker is consuming.
    startup_ms: Option<f64>,
    /// Time to publish the measured ids (inside the timed window for e2e, before it for backlog).
    publish_secs: Option<f64>,
    /// Max VmHWM over the run's workers.
    rss_max_mib: Option<f64>,
    rss_per_worker_mib: Vec<f64>,
    /// (seconds into the drain, max VmRSS over the workers in MiB), every second.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rss_trace_mib: Vec<(f64, f64)>,
    /// CPU per job of whatever ran the runner: the worker processes (e2e, user + system, all
    /// workers) or the bench process itself (ceiling).
    worker_cpu_us_per_job: Option<f64>,
    /// CPU per job of the bench process during an e2e window (publisher and polls).
    bench_cpu_us_per_job: Option<f64>,
    /// CPU per job of the RabbitMQ server process (found by its listening port).
    mq_cpu_us_per_job: Option<f64>,
    /// Latency rows: lower bound of publish-to-settle percentiles (previous poll), ms.
    settle_lower_p50_ms: Option<f64>,
    settle_lower_p99_ms: Option<f64>,
    /// CPU of the PostgreSQL backends connected to the bench database per job.
    pg_cpu_us_per_job: Option<f64>,
    /// Committed transactions in the bench database per job (pg_stat_database).
    db_xacts_per_job: Option<f64>,
    /// WAL syncs per job (pg_stat_wal, whole cluster).
    wal_syncs_per_job: Option<f64>,
    /// Whole-machine CPU busy during the timed window, percent.
    machine_busy_pct: Option<f64>,
    /// WARN/ERROR lines in the workers' logs.
    warn_lines: Option<usize>,
    note: String,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ------------------------------------------------------------------------------------------
// /proc readings

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after `comm`: state is field 3, utime 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// VmHWM (peak RSS) of a process in bytes.
fn proc_hwm_bytes(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// VmRSS (current resident set) of a process in bytes.
fn proc_rss_bytes(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// (busy, total) jiffies of the whole machine.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

fn busy_pct(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let (b0, t0) = before?;
    let (b1, t1) = after?;
    (t1 > t0).then(|| 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
}

/// The port of an AMQP URL (default 5672).
fn amqp_port(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5672)
}

/// The pid of the local process listening on `port` (the broker), if `ss` can tell.
fn listener_pid(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let at = text.find("pid=")? + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// CPU ticks of the bench process, the broker and the given workers, read together.
#[derive(Debug, Clone, Copy, Default)]
struct CpuMark {
    bench: u64,
    mq: Option<u64>,
    workers: u64,
}

// ------------------------------------------------------------------------------------------
// Broker: a raw lapin channel for pipelined, confirmed publishing

struct Publisher {
    conn: Connection,
    channel: Channel,
    exchange: String,
    routing_key: String,
}

impl Publisher {
    async fn open(url: &str, exchange: &str, routing_key: &str) -> Result<Publisher> {
        let props =
            ConnectionProperties::default().with_connection_name("decay-bench publisher".into());
        let conn = tokio::time::timeout(Duration::from_secs(15), Connection::connect(url, props))
            .await
            .context("connecting to RabbitMQ timed out")?
            .with_context(|| format!("connecting to RabbitMQ at {}", redact(url)))?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher {
            conn,
            channel,
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        })
    }

    /// Send one job message exactly as `Session::publish_job` does (persistent, mandatory,
    /// JSON body, message id), without waiting for its confirm.
    async fn send(&self, id: &DecayJobId) -> Result<PublisherConfirm> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(id.to_string().into())
            .with_delivery_mode(2);
        Ok(self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &encode_body(id),
                props,
            )
            .await?)
    }

    async fn settle(confirms: Vec<PublisherConfirm>) -> Result<()> {
        for c in confirms {
            match tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .context("publisher confirm timed out")??
            {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => bail!("a publish was returned as unroutable"),
                Confirmation::Nack(_) => bail!("the broker nacked a publish"),
                Confirmation::NotRequested => bail!("confirms are not enabled on the channel"),
            }
        }
        Ok(())
    }

    /// Publish all ids, `batch` in flight, every one confirmed.
    async fn publish_all(&self, ids: &[DecayJobId], batch: usize) -> Result<()> {
        for chunk in ids.chunks(batch.max(1)) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for id in chunk {
                confirms.push(self.send(id).await?);
            }
            Publisher::settle(confirms).await?;
        }
        Ok(())
    }

    async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

/// Delete every queue and exchange of the bench's topology, on a connection of its own (the
/// product never deletes its topology, so it has no API for it).
async fn delete_topology(url: &str, topo: &Topology) -> Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    for q in topo.queues() {
        channel
            .queue_delete(q.name.as_str().into(), Default::default())
            .await?;
    }
    for x in [topo.exchange().to_string(), topo.dlx()] {
        channel
            .exchange_delete(x.as_str().into(), Default::default())
            .await?;
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Worker processes

struct Worker {
    name: String,
    pid: u32,
    child: Child,
    log: PathBuf,
    port: Option<u16>,
}

impl Worker {
    /// The worker's HTTP port, from its `http listening` log line.
    fn http_port(&mut self) -> Option<u16> {
        if self.port.is_none() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            self.port = text
                .split("addr=127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok());
        }
        self.port
    }

    /// GET /metrics like a Prometheus scrape; returns the body size.
    async fn scrape(&mut self) -> Result<usize> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.http_port().context("http port not logged yet")?;
        let get = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
                .await?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out.len())
        };
        Ok(tokio::time::timeout(Duration::from_secs(5), get)
            .await
            .context("scrape timed out")??)
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// SIGTERM every worker, wait for each (SIGKILL after 30 s). Returns one note per worker that
/// did not exit cleanly.
async fn stop_workers(workers: &mut Vec<Worker>) -> Vec<String> {
    let mut problems = Vec::new();
    for w in workers.iter() {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(w.pid.to_string())
            .status()
            .await;
        if !sent.is_ok_and(|s| s.success()) {
            problems.push(format!("{}: could not send SIGTERM", w.name));
        }
    }
    for w in workers.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), w.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => problems.push(format!("{} exited with {status}", w.name)),
            Ok(Err(e)) => problems.push(format!("{}: wait failed: {e}", w.name)),
            Err(_) => {
                let _ = w.child.kill().await;
                problems.push(format!("{} ignored SIGTERM for 30 s; killed", w.name));
            }
        }
    }
    workers.clear();
    problems
}

fn count_warn_lines(workers: &[Worker]) -> usize {
    workers
        .iter()
        .map(|w| {
            std::fs::read_to_string(&w.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .count()
        })
        .sum()
}

// ------------------------------------------------------------------------------------------
// Database statistics

#[derive(Debug, Clone, Copy, Default)]
struct DbStats {
    xact_commit: i64,
    wal_sync: i64,
}

/// One end-to-end (or latency) run's setting.
#[derive(Debug, Clone)]
struct Setting {
    workers: usize,
    prefetch: u16,
    concurrency: usize,
}

impl Setting {
    fn total(&self) -> usize {
        self.workers * self.concurrency
    }
    fn describe(&self) -> String {
        format!(
            "W={} prefetch={} concurrency={}",
            self.workers, self.prefetch, self.concurrency
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Workers consuming first (warmed up), then the clock starts at the first publish.
    Live,
    /// All ids published first, then the workers start; the clock starts at spawn.
    Backlog,
}

// ------------------------------------------------------------------------------------------
// The bench

struct Bench {
    cfg: Cfg,
    admin: PgPool,
    db_name: String,
    db_url: String,
    pool: PgPool,
    session: Session,
    publisher: Publisher,
    base: String,
    logs: PathBuf,
    seq: AtomicI64,
    runs: AtomicUsize,
    clk_tck: f64,
    mq_pid: Option<u32>,
}

impl Bench {
    async fn setup(cfg: Cfg) -> Result<Bench> {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(15))
            .connect(&cfg.database_url)
            .await
            .with_context(|| format!("connecting to {}", redact(&cfg.database_url)))?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("decay_bench_{}", &tag[..12]);
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .with_context(|| format!("creating database {db_name}"))?;
        let base = format!("bench.{}", &tag[..12]);
        let mq_pid = listener_pid(amqp_port(&cfg.amqp_url));
        match Bench::setup_rest(&cfg, &db_name, &base).await {
            Ok((db_url, pool, session, publisher, logs)) => Ok(Bench {
                cfg,
                admin,
                db_name,
                db_url,
                pool,
                session,
                publisher,
                base,
                logs,
                seq: AtomicI64::new(1),
                runs: AtomicUsize::new(0),
                clk_tck: clk_tck(),
                mq_pid,
            }),
            Err(e) => {
                let _ = drop_database(&admin, &db_name).await;
                Err(e)
            }
        }
    }

    async fn setup_rest(
        cfg: &Cfg,
        db_name: &str,
        base: &str,
    ) -> Result<(String, PgPool, Session, Publisher, PathBuf)> {
        let db_url = with_database(&cfg.database_url, db_name)?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&db_url)
            .await
            .context("connecting to the bench database")?;
        Store::from_pool(pool.clone())
            .migrate()
            .await
            .context("migrations")?;
        let broker = BrokerConfig {
            url: cfg.amqp_url.clone(),
            base: base.to_string(),
            delivery_limit: 10,
            heartbeat_secs: 10,
            op_timeout: Duration::from_secs(15),
        };
        let session = Session::open(&broker, "decay-bench")
            .await
            .with_context(|| format!("opening a broker session at {}", redact(&cfg.amqp_url)))?;
        let topo = session.topology().clone();
        let publisher =
            match Publisher::open(&cfg.amqp_url, topo.exchange(), topo.routing_key()).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = delete_topology(&cfg.amqp_url, &topo).await;
                    session.close().await;
                    return Err(e);
                }
            };
        let logs = std::env::temp_dir().join(format!("decay-bench-{base}"));
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("creating log directory {}", logs.display()))?;
        Ok((db_url, pool, session, publisher, logs))
    }

    /// Delete the topology, close everything, drop the database.
    async fn teardown(self, ok: bool) -> Result<()> {
        let Bench {
            cfg,
            admin,
            db_name,
            pool,
            session,
            publisher,
            logs,
            ..
        } = self;
        publisher.close().await;
        let topo = delete_topology(&cfg.amqp_url, session.topology()).await;
        session.close().await;
        pool.close().await;
        let dropped = drop_database(&admin, &db_name).await;
        admin.close().await;
        if ok && !cfg.keep_logs {
            let _ = std::fs::remove_dir_all(&logs);
        } else {
            eprintln!("[bench] worker logs kept in {}", logs.display());
        }
        topo.context("deleting the bench topology")?;
        dropped
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// No job may be pending or in progress between runs: the drain check relies on it.
    async fn ensure_idle(&self) -> Result<()> {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM decay_jobs WHERE state IN ('pending', 'in_progress')",
        )
        .fetch_one(self.pool())
        .await?;
        ensure!(busy == 0, "{busy} jobs left unfinished by an earlier run");
        Ok(())
    }

    /// Seed `n` pending deterministic candidate-compression jobs, each over three fresh source
    /// memories, in two set-based statements. Ids are canonical (`<prefix>_` + a first digit
    /// 5/6 + 25 hex digits, all Crockford symbols) and unique over the whole run.
    async fn seed(&self, n: usize, tag: &str) -> Result<Vec<DecayJobId>> {
        ensure!(n > 0, "seed of zero jobs");
        let first = self.seq.fetch_add(n as i64, Ordering::SeqCst);
        let last = first + n as i64 - 1;
        let at = Utc::now() - chrono::Duration::minutes(1);
        let mem = |x: i64| format!("mem_5{x:025X}");
        let ids: Vec<String> = (first..=last).map(|g| format!("dcy_6{g:025X}")).collect();
        // The seeded shape passes the store's own validation (spec §3.4 + strict ids).
        let sample = NewJob {
            id: DecayJobId::parse(&ids[0])?,
            kind: "candidate_compression".into(),
            summary_method: "deterministic_concatenate".into(),
            source_ids_json: serde_json::json!([
                mem(first * 3),
                mem(first * 3 + 1),
                mem(first * 3 + 2)
            ]),
            scheduled_for: at,
            created_by: format!("operator:bench/{tag}"),
            created_at: at,
        };
        sample.validate().context("seeded job shape")?;
        let mut tx = self.pool().begin().await?;
        let mems = sqlx::query(
            "INSERT INTO memories (id, memory_type, status, claim, source_episodes_json,
                    source_events_json, domains_json, confidence, authority, created_at, updated_at)
             SELECT 'mem_5' || lpad(upper(to_hex(g * 3 + k)), 25, '0'), 'semantic', 'active',
                    'bench claim ' || k || ' of job ' || g, '[]'::jsonb,
                    '[\"evt_01ARZ3NDEKTSV4RRFFQ69G5FAV\"]'::jsonb, '[\"ops\"]'::jsonb,
                    (ARRAY[0.9, 0.7, 0.8])[k + 1], 'agent', $3, $3
               FROM generate_series($1::bigint, $2::bigint) AS g, generate_series(0, 2) AS k",
        )
        .bind(first)
        .bind(last)
        .bind(at)
        .execute(&mut *tx)
        .await
        .context("seeding source memories")?;
        let jobs = sqlx::query(
            "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state,
                    scheduled_for, created_at, created_by, updated_at)
             SELECT 'dcy_6' || lpad(upper(to_hex(g)), 25, '0'), 'candidate_compression',
                    'deterministic_concatenate',
                    jsonb_build_array('mem_5' || lpad(upper(to_hex(g * 3)), 25, '0'),
                                      'mem_5' || lpad(upper(to_hex(g * 3 + 1)), 25, '0'),
                                      'mem_5' || lpad(upper(to_hex(g * 3 + 2)), 25, '0')),
                    'pending', $3, $3, $4, $3
               FROM generate_series($1::bigint, $2::bigint) AS g",
        )
        .bind(first)
        .bind(last)
        .bind(at)
        .bind(&sample.created_by)
        .execute(&mut *tx)
        .await
        .context("seeding jobs")?;
        tx.commit().await?;
        ensure!(
            mems.rows_affected() == 3 * n as u64 && jobs.rows_affected() == n as u64,
            "seeded {} memories and {} jobs, expected {} and {n}",
            mems.rows_affected(),
            jobs.rows_affected(),
            3 * n
        );
        ids.iter()
            .map(|s| DecayJobId::parse(s).map_err(anyhow::Error::from))
            .collect()
    }

    /// Every id completed with exactly one summary memory.
    async fn verify(&self, ids: &[DecayJobId]) -> Result<()> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let by_state: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM decay_jobs WHERE id = ANY($1) GROUP BY state",
        )
        .bind(&keys)
        .fetch_all(self.pool())
        .await?;
        let completed = by_state
            .iter()
            .find(|(s, _)| s == "completed")
            .map_or(0, |(_, n)| *n);
        ensure!(
            completed == ids.len() as i64,
            "expected {} completed jobs, found {by_state:?}",
            ids.len()
        );
        let summaries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE produced_by_job_id = ANY($1)")
                .bind(&keys)
                .fetch_one(self.pool())
                .await?;
        ensure!(
            summaries == ids.len() as i64,
            "expected one summary memory per job, found {summaries} for {} jobs",
            ids.len()
        );
        Ok(())
    }

    /// Statistics once every exited backend has flushed its counters: poll until two reads
    /// 300 ms apart agree (at most 5 s).
    async fn db_stats_settled(&self) -> Result<DbStats> {
        let mut last = self.db_stats().await?;
        for _ in 0..16 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.db_stats().await?;
            if now.xact_commit == last.xact_commit {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    async fn db_stats(&self) -> Result<DbStats> {
        let xact_commit: i64 = sqlx::query_scalar(
            "SELECT coalesce(xact_commit, 0)::bigint FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.db_name)
        .fetch_one(&self.admin)
        .await?;
        let wal_sync: i64 = sqlx::query_scalar("SELECT wal_sync::bigint FROM pg_stat_wal")
            .fetch_one(&self.admin)
            .await
            .unwrap_or(0);
        Ok(DbStats {
            xact_commit,
            wal_sync,
        })
    }

    /// CPU ticks of every backend connected to the bench database.
    async fn pg_backend_ticks(&self) -> Result<HashMap<u32, u64>> {
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(&self.db_name)
                .fetch_all(&self.admin)
                .await?;
        Ok(pids
            .into_iter()
            .filter_map(|p| {
                let p = u32::try_from(p).ok()?;
                Some((p, proc_cpu_ticks(p)?))
            })
            .collect())
    }

    fn cpu_mark(&self, workers: &[Worker]) -> CpuMark {
        CpuMark {
            bench: proc_cpu_ticks(std::process::id()).unwrap_or(0),
            mq: self.mq_pid.and_then(proc_cpu_ticks),
            workers: workers.iter().filter_map(|w| proc_cpu_ticks(w.pid)).sum(),
        }
    }

    /// Fill the CPU-per-job columns from two marks. `runner_in_bench`: the ceiling, where the
    /// bench process itself runs the jobs.
    fn cpu_columns(&self, row: &mut Row, a: CpuMark, b: CpuMark, n: usize, runner_in_bench: bool) {
        let bench = self.ticks_to_us_per_job(b.bench.saturating_sub(a.bench), n);
        if runner_in_bench {
            row.worker_cpu_us_per_job = Some(bench);
        } else {
            row.worker_cpu_us_per_job =
                Some(self.ticks_to_us_per_job(b.workers.saturating_sub(a.workers), n));
            row.bench_cpu_us_per_job = Some(bench);
        }
        row.mq_cpu_us_per_job = match (a.mq, b.mq) {
            (Some(x), Some(y)) => Some(self.ticks_to_us_per_job(y.saturating_sub(x), n)),
            _ => None,
        };
    }

    fn ticks_to_us_per_job(&self, ticks: u64, jobs: usize) -> f64 {
        ticks as f64 / self.clk_tck * 1e6 / jobs as f64
    }

    fn pg_cpu_delta(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
        after
            .iter()
            .map(|(pid, t)| t.saturating_sub(*before.get(pid).unwrap_or(&0)))
            .sum()
    }

    // --------------------------------------------------------------------------------------
    // Ceiling

    /// The runner's per-job SQL from `c` concurrent tasks, no broker.
    async fn ceiling(&self, c: usize, n: usize, label: &str) -> Result<Row> {
        self.ensure_idle().await?;
        let runner_cfg = RunnerConfig {
            lease: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            max_attempts: 5,
            worker_id: "bench/ceiling".into(),
        };
        let make = |max: usize| -> Result<(Store, Runner)> {
            let store = Store::connect_lazy(&StoreConfig {
                url: self.db_url.clone(),
                max_connections: u32::try_from(max).unwrap_or(u32::MAX),
                acquire_timeout: Duration::from_secs(30),
            })?;
            let runner = Runner::new(
                store.clone(),
                runner_cfg.clone(),
                Arc::new(NoopBackend),
                TrustPolicy::default(),
            );
            Ok((store, runner))
        };
        // Warm-up on the pool that is measured: every connection opened and every statement
        // prepared before the clock starts, as in a worker that has been running.
        let (store, runner) = make(c)?;
        let result = async {
            let warm = self.seed(c * 2, &format!("{label}/warm")).await?;
            drive(&runner, Arc::new(warm), c).await?;
            let ids = self.seed(n, label).await?;
            let pg0 = self.pg_backend_ticks().await?;
            let stats0 = self.db_stats().await?;
            let m0 = machine_cpu();
            let c0 = self.cpu_mark(&[]);
            let t0 = Instant::now();
            let ids = Arc::new(ids);
            drive(&runner, ids.clone(), c).await?;
            let secs = t0.elapsed().as_secs_f64();
            let c1 = self.cpu_mark(&[]);
            let m1 = machine_cpu();
            let pg1 = self.pg_backend_ticks().await?;
            Ok::<_, anyhow::Error>((ids, secs, pg0, pg1, stats0, m0, m1, c0, c1))
        }
        .await;
        store.close().await;
        let (ids, secs, pg0, pg1, stats0, m0, m1, c0, c1) = result?;
        // Backends flush their statistics when they exit.
        let stats1 = self.db_stats_settled().await?;
        self.verify(&ids).await?;
        let mut row = Row {
            section: "ceiling".into(),
            label: label.into(),
            total_concurrency: c,
            jobs: n,
            secs,
            jobs_per_s: n as f64 / secs,
            pg_cpu_us_per_job: Some(self.ticks_to_us_per_job(Bench::pg_cpu_delta(&pg0, &pg1), n)),
            db_xacts_per_job: Some((stats1.xact_commit - stats0.xact_commit) as f64 / n as f64),
            wal_syncs_per_job: Some((stats1.wal_sync - stats0.wal_sync) as f64 / n as f64),
            machine_busy_pct: busy_pct(m0, m1),
            note: format!("runner in-process, {c} tasks, pool {c}"),
            ..Row::default()
        };
        self.cpu_columns(&mut row, c0, c1, n, true);
        Ok(row)
    }

    // --------------------------------------------------------------------------------------
    // Workers

    fn spawn_worker(&self, run: usize, i: usize, s: &Setting, rust_log: &str) -> Result<Worker> {
        let name = format!("bench-r{run}-w{i}");
        let log_path = self.logs.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_decay-worker"));
        // Nothing of the caller's DECAY_* environment leaks into the measured workers.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("DECAY_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("consume")
            .env("DATABASE_URL", &self.db_url)
            .env("AMQP_URL", &self.cfg.amqp_url)
            .env("DECAY_QUEUE", &self.base)
            .env("DECAY_PREFETCH", s.prefetch.to_string())
            .env("DECAY_CONCURRENCY", s.concurrency.to_string())
            .env("DECAY_HTTP_ADDR", "127.0.0.1:0")
            .env("DECAY_RECONCILE_EVERY", "0")
            .env("DECAY_WORKER_ID", &name)
            .env("DECAY_LOG_FORMAT", "text")
            // Plus the two start/stop lines of `consume` (the HTTP port is read from them).
            .env("RUST_LOG", format!("{rust_log},decay_worker::app=info"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .context("starting decay-worker (was the release binary built?)")?;
        let pid = child.id().context("worker exited at once")?;
        Ok(Worker {
            name,
            pid,
            child,
            log: log_path,
            port: None,
        })
    }

    fn check_alive(workers: &mut [Worker]) -> Result<()> {
        for w in workers.iter_mut() {
            if let Some(status) = w.child.try_wait()? {
                bail!(
                    "worker {} exited early ({status}); log tail:\n{}",
                    w.name,
                    w.log_tail(20)
                );
            }
        }
        Ok(())
    }

    /// The previous run's consumers are gone (else the start-up wait would be fooled).
    async fn ensure_no_consumers(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let (ready, consumers) = self
                .session
                .queue_counts(self.session.topology().queue())
                .await?;
            if consumers == 0 {
                ensure!(
                    ready == 0,
                    "{ready} messages left in the queue by an earlier run"
                );
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{consumers} consumers still attached to the bench queue");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the queue has `n` consumers.
    async fn wait_consuming(&self, n: usize, workers: &mut [Worker]) -> Result<()> {
        let start = Instant::now();
        loop {
            let (_, consumers) = self
                .session
                .queue_counts(self.session.topology().queue())
                .await?;
            if consumers as usize >= n {
                return Ok(());
            }
            Bench::check_alive(workers)?;
            if start.elapsed() > Duration::from_secs(60) {
                bail!("workers not consuming after 60 s ({consumers}/{n})");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Poll until no job is pending or in progress. Returns the number of queries issued.
    /// Poll until no job is pending or in progress. Returns the number of queries issued and
    /// a trace of (seconds, max current RSS over the workers in MiB), sampled every second.
    async fn wait_drained(
        &self,
        conn: &mut PgConnection,
        workers: &mut [Worker],
    ) -> Result<(u64, Vec<(f64, f64)>)> {
        let started = Instant::now();
        let mut trace = Vec::new();
        let mut last_sample: Option<Instant> = None;
        let mut last_scrape = Instant::now();
        let mut polls = 0u64;
        let mut last_left = i64::MAX;
        let mut last_change = Instant::now();
        let mut last_count = Instant::now();
        loop {
            let busy: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM decay_jobs WHERE state IN ('pending', 'in_progress'))",
            )
            .fetch_one(&mut *conn)
            .await?;
            polls += 1;
            if last_sample.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) || !busy {
                last_sample = Some(Instant::now());
                let rss = workers
                    .iter()
                    .filter_map(|w| proc_rss_bytes(w.pid))
                    .fold(f64::NAN, f64::max);
                trace.push((started.elapsed().as_secs_f64(), rss / MIB));
            }
            if !busy {
                return Ok((polls, trace));
            }
            if last_count.elapsed() > Duration::from_secs(5) {
                last_count = Instant::now();
                let left: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM decay_jobs WHERE state IN ('pending', 'in_progress')",
                )
                .fetch_one(&mut *conn)
                .await?;
                polls += 1;
                if left != last_left {
                    last_left = left;
                    last_change = Instant::now();
                } else if last_change.elapsed() > STALL {
                    bail!("no progress for {STALL:?}: {left} jobs still pending or in progress");
                }
            }
            if self.cfg.scrape_secs > 0.0
                && last_scrape.elapsed().as_secs_f64() >= self.cfg.scrape_secs
            {
                last_scrape = Instant::now();
                for w in workers.iter_mut() {
                    w.scrape()
                        .await
                        .with_context(|| format!("scraping /metrics of {}", w.name))?;
                }
            }
            Bench::check_alive(workers)?;
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    async fn warm_up(&self, s: &Setting, label: &str, workers: &mut [Worker]) -> Result<()> {
        let warm = self
            .seed((s.total() * 2).max(s.workers * 8), &format!("{label}/warm"))
            .await?;
        self.publisher.publish_all(&warm, 2000).await?;
        let mut conn = PgConnection::connect(&self.db_url).await?;
        let r = self.wait_drained(&mut conn, workers).await.map(|_| ());
        let _ = conn.close().await;
        r?;
        self.verify(&warm).await
    }

    /// Peak RSS (VmHWM) of each worker, MiB.
    fn worker_rss(workers: &[Worker]) -> Vec<f64> {
        workers
            .iter()
            .map(|w| proc_hwm_bytes(w.pid).unwrap_or(f64::NAN) / MIB)
            .collect()
    }

    /// One end-to-end run with real worker processes.
    async fn e2e(
        &self,
        s: &Setting,
        n: usize,
        feed: Feed,
        rust_log: &str,
        section: &str,
        label: &str,
    ) -> Result<Row> {
        self.ensure_idle().await?;
        self.ensure_no_consumers().await?;
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        let mut workers = Vec::new();
        let inner = self
            .e2e_inner(s, n, feed, rust_log, label, run, &mut workers)
            .await;
        let warn_lines = count_warn_lines(&workers);
        let problems = stop_workers(&mut workers).await;
        let (mut row, ids, stats0, polls) = inner?;
        ensure!(
            problems.is_empty(),
            "workers did not stop cleanly: {}",
            problems.join("; ")
        );
        let stats1 = self.db_stats_settled().await?;
        self.verify(&ids).await?;
        row.section = section.into();
        row.label = label.into();
        row.warn_lines = Some(warn_lines);
        let xacts = stats1.xact_commit - stats0.xact_commit - polls as i64;
        row.db_xacts_per_job = Some(xacts as f64 / n as f64);
        row.wal_syncs_per_job = Some((stats1.wal_sync - stats0.wal_sync) as f64 / n as f64);
        Ok(row)
    }

    #[allow(clippy::too_many_arguments)]
    async fn e2e_inner(
        &self,
        s: &Setting,
        n: usize,
        feed: Feed,
        rust_log: &str,
        label: &str,
        run: usize,
        workers: &mut Vec<Worker>,
    ) -> Result<(Row, Vec<DecayJobId>, DbStats, u64)> {
        let mut conn = PgConnection::connect(&self.db_url).await?;
        let mut row = Row {
            workers: Some(s.workers),
            prefetch: Some(s.prefetch),
            concurrency: Some(s.concurrency),
            total_concurrency: s.total(),
            jobs: n,
            ..Row::default()
        };
        let (ids, stats0, secs, polls, pg0, m0, cpu0) = match feed {
            Feed::Live => {
                let spawned = Instant::now();
                for i in 0..s.workers {
                    workers.push(self.spawn_worker(run, i, s, rust_log)?);
                }
                self.wait_consuming(s.workers, workers).await?;
                row.startup_ms = Some(spawned.elapsed().as_secs_f64() * 1e3);
                self.warm_up(s, label, workers).await?;
                let ids = self.seed(n, label).await?;
                let cpu0 = self.cpu_mark(workers);
                let pg0 = self.pg_backend_ticks().await?;
                let stats0 = self.db_stats().await?;
                let m0 = machine_cpu();
                let t0 = Instant::now();
                self.publisher.publish_all(&ids, 2000).await?;
                row.publish_secs = Some(t0.elapsed().as_secs_f64());
                let (polls, trace) = self.wait_drained(&mut conn, workers).await?;
                row.rss_trace_mib = trace;
                let secs = t0.elapsed().as_secs_f64();
                (ids, stats0, secs, polls, pg0, m0, cpu0)
            }
            Feed::Backlog => {
                let ids = self.seed(n, label).await?;
                let p0 = Instant::now();
                self.publisher.publish_all(&ids, 5000).await?;
                let publish = p0.elapsed().as_secs_f64();
                row.publish_secs = Some(publish);
                let (ready, _) = self
                    .session
                    .queue_counts(self.session.topology().queue())
                    .await?;
                ensure!(
                    ready as usize == n,
                    "queue holds {ready} ready messages, expected {n}"
                );
                let stats0 = self.db_stats().await?;
                let m0 = machine_cpu();
                let cpu0 = self.cpu_mark(&[]);
                let t0 = Instant::now();
                for i in 0..s.workers {
                    workers.push(self.spawn_worker(run, i, s, rust_log)?);
                }
                self.wait_consuming(s.workers, workers).await?;
                row.startup_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                let pg0 = self.pg_backend_ticks().await?;
                let (polls, trace) = self.wait_drained(&mut conn, workers).await?;
                row.rss_trace_mib = trace;
                let secs = t0.elapsed().as_secs_f64();
                row.note = format!("published {n} first at {:.0} msg/s", n as f64 / publish);
                (ids, stats0, secs, polls, pg0, m0, cpu0)
            }
        };
        let m1 = machine_cpu();
        let pg1 = self.pg_backend_ticks().await?;
        let cpu1 = self.cpu_mark(workers);
        let rss = Bench::worker_rss(workers);
        let _ = conn.close().await;
        row.secs = secs;
        row.jobs_per_s = n as f64 / secs;
        row.rss_max_mib = rss.iter().copied().reduce(f64::max);
        row.rss_per_worker_mib = rss;
        self.cpu_columns(&mut row, cpu0, cpu1, n, false);
        row.pg_cpu_us_per_job = Some(self.ticks_to_us_per_job(Bench::pg_cpu_delta(&pg0, &pg1), n));
        row.machine_busy_pct = busy_pct(m0, m1);
        if feed == Feed::Live {
            row.note = format!(
                "clock from first publish; publish {:.2} s",
                row.publish_secs.unwrap_or(0.0)
            );
        } else {
            row.note.push_str("; clock from spawn (start-up included)");
            if self.cfg.scrape_secs > 0.0 {
                row.note.push_str(&format!(
                    "; /metrics scraped every {} s",
                    self.cfg.scrape_secs
                ));
            }
            let t = &row.rss_trace_mib;
            if t.len() >= 4 {
                let at = |f: f64| t[((t.len() - 1) as f64 * f).round() as usize].1;
                row.note.push_str(&format!(
                    "; VmRSS at 25/50/75/100% of drain {:.1}/{:.1}/{:.1}/{:.1} MiB",
                    at(0.25),
                    at(0.5),
                    at(0.75),
                    at(1.0)
                ));
            }
        }
        Ok((row, ids, stats0, polls))
    }

    // --------------------------------------------------------------------------------------
    // Latency

    async fn latency(&self, s: &Setting, rate: f64, secs: f64) -> Result<Row> {
        self.ensure_idle().await?;
        self.ensure_no_consumers().await?;
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        let label = format!("{rate:.0} jobs/s for {secs:.0} s");
        let mut workers = Vec::new();
        let inner = self
            .latency_inner(s, rate, secs, run, &label, &mut workers)
            .await;
        let warn_lines = count_warn_lines(&workers);
        let problems = stop_workers(&mut workers).await;
        let mut row = inner?;
        ensure!(
            problems.is_empty(),
            "workers did not stop cleanly: {}",
            problems.join("; ")
        );
        row.warn_lines = Some(warn_lines);
        Ok(row)
    }

    async fn latency_inner(
        &self,
        s: &Setting,
        rate: f64,
        secs: f64,
        run: usize,
        label: &str,
        workers: &mut Vec<Worker>,
    ) -> Result<Row> {
        let spawned = Instant::now();
        for i in 0..s.workers {
            workers.push(self.spawn_worker(run, i, s, "warn")?);
        }
        self.wait_consuming(s.workers, workers).await?;
        let startup_ms = spawned.elapsed().as_secs_f64() * 1e3;
        self.warm_up(s, "latency", workers).await?;
        let m = ((rate * secs).round() as usize).max(1);
        let ids = self.seed(m, "latency").await?;

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
        let mut conn = PgConnection::connect(&self.db_url).await?;
        let poll = Duration::from_millis(self.cfg.settle_poll_ms.max(1));
        let observer = tokio::spawn(async move {
            let r = observe_settles(&mut conn, poll, rx).await;
            let _ = conn.close().await;
            r
        });

        let period = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut walls: Vec<DateTime<Utc>> = Vec::with_capacity(m);
        let mut confirms = Vec::with_capacity(m);
        let mut first_last = (None, None);
        let published = async {
            for (k, id) in ids.iter().enumerate() {
                tokio::time::sleep_until(start + period * k as u32).await;
                let wall = Utc::now();
                let at = Instant::now();
                tx.send((id.to_string(), at))
                    .map_err(|_| anyhow!("settle observer stopped"))?;
                confirms.push(self.publisher.send(id).await?);
                walls.push(wall);
                first_last.0.get_or_insert(at);
                first_last.1 = Some(at);
                Bench::check_alive(workers)?;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        drop(tx);
        let confirmed = Publisher::settle(confirms).await;
        let observed = observer.await.context("settle observer panicked")?;
        published?;
        confirmed?;
        let observed = observed?;
        let mut settle: Vec<f64> = observed.iter().map(|(u, _)| *u).collect();
        let mut lower: Vec<f64> = observed.iter().map(|(_, l)| *l).collect();
        ensure!(
            settle.len() == m,
            "observed {} settles of {m} published jobs",
            settle.len()
        );
        let rss = Bench::worker_rss(workers);

        // Publish-to-claim: the worker stamps `updated_at` with the `now` it took on receipt.
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let stamped: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT id, updated_at FROM decay_jobs WHERE id = ANY($1)")
                .bind(&keys)
                .fetch_all(self.pool())
                .await?;
        let at: HashMap<&str, DateTime<Utc>> =
            stamped.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        let mut claim: Vec<f64> = keys
            .iter()
            .zip(&walls)
            .filter_map(|(k, w)| at.get(k.as_str()).map(|t| (*t - *w).num_microseconds()))
            .flatten()
            .map(|us| us as f64 / 1e3)
            .collect();
        self.verify(&ids).await?;
        settle.sort_by(f64::total_cmp);
        lower.sort_by(f64::total_cmp);
        claim.sort_by(f64::total_cmp);
        let achieved = match first_last {
            (Some(a), Some(b)) if b > a => (m - 1) as f64 / (b - a).as_secs_f64(),
            _ => rate,
        };
        Ok(Row {
            section: "latency".into(),
            label: label.into(),
            workers: Some(s.workers),
            prefetch: Some(s.prefetch),
            concurrency: Some(s.concurrency),
            total_concurrency: s.total(),
            jobs: m,
            secs,
            jobs_per_s: achieved,
            p50_ms: Some(pct(&settle, 50.0)),
            p99_ms: Some(pct(&settle, 99.0)),
            claim_p50_ms: Some(pct(&claim, 50.0)),
            claim_p99_ms: Some(pct(&claim, 99.0)),
            settle_lower_p50_ms: Some(pct(&lower, 50.0)),
            settle_lower_p99_ms: Some(pct(&lower, 99.0)),
            startup_ms: Some(startup_ms),
            rss_max_mib: rss.iter().copied().reduce(f64::max),
            rss_per_worker_mib: rss,
            note: format!(
                "p50/p99 = publish->settle upper bound ({} ms poll); lower bound {:.1}/{:.1}; max {:.1}; publish->claim {:.1}/{:.1} ms",
                self.cfg.settle_poll_ms,
                pct(&lower, 50.0),
                pct(&lower, 99.0),
                settle.last().copied().unwrap_or(f64::NAN),
                pct(&claim, 50.0),
                pct(&claim, 99.0)
            ),
            ..Row::default()
        })
    }

    // --------------------------------------------------------------------------------------
    // Scale

    /// Insert `rows` completed jobs directly, then VACUUM ANALYZE. Returns seconds taken.
    async fn insert_terminal_rows(&self, rows: i64) -> Result<f64> {
        let t0 = Instant::now();
        let src: String = sqlx::query_scalar("SELECT id FROM memories LIMIT 1")
            .fetch_one(self.pool())
            .await
            .context("no memory to reference")?;
        let chunk = 250_000i64;
        let mut from = 1i64;
        while from <= rows {
            let to = (from + chunk - 1).min(rows);
            sqlx::query(
                "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state,
                        scheduled_for, created_at, created_by, updated_at, attempts, claimed_by)
                 SELECT 'dcy_7' || lpad(upper(to_hex(g)), 25, '0'), 'candidate_compression',
                        'deterministic_concatenate', jsonb_build_array($3::text), 'completed',
                        $4 - g * interval '1 second', $4 - g * interval '1 second',
                        'operator:bench/scale', $4 - g * interval '1 second', 1, 'bench/scale'
                   FROM generate_series($1::bigint, $2::bigint) AS g",
            )
            .bind(from)
            .bind(to)
            .bind(&src)
            .bind(Utc::now() - chrono::Duration::days(1))
            .execute(self.pool())
            .await
            .context("inserting terminal rows")?;
            from = to + 1;
        }
        sqlx::raw_sql("VACUUM ANALYZE decay_jobs")
            .execute(self.pool())
            .await
            .context("VACUUM ANALYZE")?;
        Ok(t0.elapsed().as_secs_f64())
    }
}

/// Run `ids` through the runner from `c` tasks sharing one cursor.
async fn drive(runner: &Runner, ids: Arc<Vec<DecayJobId>>, c: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c.max(1) {
        let runner = runner.clone();
        let ids = ids.clone();
        let next = next.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else {
                    return Ok(());
                };
                match runner.run_specific_job(id).await {
                    Ok(RunOutcome::Completed { .. }) => {}
                    Ok(other) => bail!("job {id}: unexpected outcome {other:?}"),
                    Err(e) => bail!("job {id}: {e}"),
                }
            }
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Watch published ids until each is seen `completed`; returns publish-to-settle latencies in
/// ms as (upper, lower) bounds. A job committed before the start of the first poll that sees
/// it completed (upper bound) and after the start of the poll before (lower bound; 0 when the
/// job was published after that poll started). Polls run every `poll_every` (default 5 ms).
async fn observe_settles(
    conn: &mut PgConnection,
    poll_every: Duration,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
) -> Result<Vec<(f64, f64)>> {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut out = Vec::new();
    let mut previous_poll: Option<Instant> = None;
    let mut closed = false;
    let mut tick = tokio::time::interval(poll_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since = Instant::now();
    loop {
        tick.tick().await;
        loop {
            match rx.try_recv() {
                Ok((id, at)) => {
                    pending.insert(id, at);
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if pending.is_empty() {
            if closed {
                return Ok(out);
            }
            idle_since = Instant::now();
            continue;
        }
        if idle_since.elapsed() > STALL {
            bail!(
                "{} published jobs not settled after {STALL:?}",
                pending.len()
            );
        }
        let keys: Vec<&str> = pending.keys().map(String::as_str).collect();
        let polled = Instant::now();
        let done: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM decay_jobs WHERE state = 'completed' AND id = ANY($1)",
        )
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?;
        if !done.is_empty() {
            idle_since = Instant::now();
        }
        for id in done {
            if let Some(at) = pending.remove(&id) {
                // Not seen by the previous poll, so it committed after that poll's start.
                let lower =
                    previous_poll.map_or(Duration::ZERO, |p| p.saturating_duration_since(at));
                out.push((
                    polled.saturating_duration_since(at).as_secs_f64() * 1e3,
                    lower.as_secs_f64() * 1e3,
                ));
            }
        }
        previous_poll = Some(polled);
    }
}

async fn drop_database(admin: &PgPool, db: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(admin)
    .await
    .with_context(|| format!("dropping database {db}"))?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The program

struct Outcome {
    rows: Vec<Row>,
    best: Option<Setting>,
    summary: BTreeMap<String, serde_json::Value>,
}

fn log_row(r: &Row) {
    eprintln!(
        "[bench] {:<8} {:<38} {:>7.0} jobs/s{}",
        r.section,
        r.label,
        r.jobs_per_s,
        r.ratio
            .map(|x| format!("  ratio {x:.2}"))
            .unwrap_or_default()
    );
}

/// A ceiling run at the setting's total concurrency immediately followed by the e2e run, so
/// the ratio compares two measurements taken under the same background load.
#[allow(clippy::too_many_arguments)]
async fn paired(
    b: &Bench,
    s: &Setting,
    n: usize,
    feed: Feed,
    rust_log: &str,
    section: &str,
    label: &str,
    out: &mut Outcome,
) -> Result<Row> {
    let c = s.total();
    let mut ceil = b
        .ceiling(c, b.cfg.jobs, &format!("C={c} (for: {label})"))
        .await?;
    ceil.section = format!("{section}/ceil");
    log_row(&ceil);
    let mut row = b.e2e(s, n, feed, rust_log, section, label).await?;
    row.ceiling_jobs_per_s = Some(ceil.jobs_per_s);
    row.ratio = Some(row.jobs_per_s / ceil.jobs_per_s);
    if row.jobs_per_s > 1.05 * ceil.jobs_per_s {
        // The broker path cannot beat the same SQL without it: the background load changed
        // between the two halves of the pair.
        row.note
            .push_str("; RATIO > 1: background load changed within the pair, do not trust it");
    }
    log_row(&row);
    out.rows.push(ceil);
    out.rows.push(row.clone());
    Ok(row)
}

async fn run_all(b: &Bench, out: &mut Outcome) -> Result<()> {
    let cfg = &b.cfg;
    let n = cfg.jobs;

    // 1. Sweep: every (W, prefetch, concurrency), each paired with its ceiling.
    let mut best: Option<Row> = None;
    let mut best_setting = None;
    for w in &cfg.workers {
        for (p, c) in &cfg.settings {
            let s = Setting {
                workers: *w,
                prefetch: *p,
                concurrency: *c,
            };
            let label = format!("W={w} prefetch={p} conc={c}");
            let row = paired(b, &s, n, Feed::Live, "warn", "e2e", &label, out).await?;
            if best.as_ref().is_none_or(|r| row.jobs_per_s > r.jobs_per_s) {
                best = Some(row);
                best_setting = Some(s);
            }
        }
    }
    let (best_row, best) = best.zip(best_setting).context("empty sweep")?;
    out.best = Some(best.clone());
    out.summary
        .insert("best_setting".into(), serde_json::json!(best.describe()));
    out.summary.insert(
        "best_e2e_jobs_per_s".into(),
        serde_json::json!(best_row.jobs_per_s),
    );
    out.summary.insert(
        "best_ceiling_jobs_per_s".into(),
        serde_json::json!(best_row.ceiling_jobs_per_s),
    );
    out.summary
        .insert("best_ratio".into(), serde_json::json!(best_row.ratio));
    let mut ratios: Vec<f64> = out
        .rows
        .iter()
        .filter(|r| r.section == "e2e")
        .filter_map(|r| r.ratio)
        .collect();
    ratios.sort_by(f64::total_cmp);
    out.summary.insert(
        "median_ratio_in_sweep".into(),
        serde_json::json!(pct(&ratios, 50.0)),
    );

    // 2. Latency at a fixed rate with the best setting.
    let row = b.latency(&best, cfg.latency_rate, cfg.latency_secs).await?;
    eprintln!(
        "[bench] latency  publish->settle p50 {:.1} ms p99 {:.1} ms (upper bounds)",
        row.p50_ms.unwrap_or(f64::NAN),
        row.p99_ms.unwrap_or(f64::NAN)
    );
    let lat = serde_json::json!({
        "rate_per_s": row.jobs_per_s,
        "jobs": row.jobs,
        "settle_upper_p50_ms": row.p50_ms,
        "settle_upper_p99_ms": row.p99_ms,
        "settle_lower_p50_ms": row.settle_lower_p50_ms,
        "settle_lower_p99_ms": row.settle_lower_p99_ms,
        "claim_p50_ms": row.claim_p50_ms,
        "claim_p99_ms": row.claim_p99_ms,
    });
    out.summary.insert("latency".into(), lat);
    out.rows.push(row);

    // 3. The product's default log level (info: a line per runner stage per job) against the
    //    same setting at warn, back to back.
    let warn = paired(
        b,
        &best,
        n,
        Feed::Live,
        "warn",
        "log",
        "best, RUST_LOG=warn",
        out,
    )
    .await?;
    let mut info = b
        .e2e(
            &best,
            n,
            Feed::Live,
            "info",
            "log",
            "best, RUST_LOG=info (default)",
        )
        .await?;
    info.ceiling_jobs_per_s = warn.ceiling_jobs_per_s;
    info.ratio = warn.ceiling_jobs_per_s.map(|c| info.jobs_per_s / c);
    info.note = format!(
        "{}; x{:.2} of the warn run above",
        info.note,
        info.jobs_per_s / warn.jobs_per_s
    );
    log_row(&info);
    out.summary.insert(
        "info_log_over_warn_log".into(),
        serde_json::json!(info.jobs_per_s / warn.jobs_per_s),
    );
    out.rows.push(info);

    // 4. Backlog: published before the workers start; RSS must not grow with it.
    if cfg.backlog > 0 {
        let mut rss = Vec::new();
        for size in [cfg.backlog_small, cfg.backlog] {
            if size == 0 {
                continue;
            }
            let row = paired(
                b,
                &best,
                size,
                Feed::Backlog,
                "warn",
                "backlog",
                &format!("{size} queued before start"),
                out,
            )
            .await?;
            rss.push((size, row.rss_max_mib, row.jobs_per_s));
        }
        if let [(small, Some(a), ra), (big, Some(z), rz)] = rss.as_slice() {
            out.summary.insert(
                "backlog".into(),
                serde_json::json!({
                    "small": small, "big": big,
                    "rss_small_mib": a, "rss_big_mib": z, "rss_ratio": z / a,
                    "drain_small_jobs_per_s": ra, "drain_big_jobs_per_s": rz,
                }),
            );
        }
    }

    // 5. Scale: the best setting and its ceiling before and after many terminal rows.
    if cfg.scale_rows > 0 {
        let before = paired(
            b,
            &best,
            n,
            Feed::Live,
            "warn",
            "scale",
            "best, +0 terminal rows",
            out,
        )
        .await?;
        let took = b.insert_terminal_rows(cfg.scale_rows).await?;
        eprintln!(
            "[bench] scale    inserted {} terminal rows + VACUUM ANALYZE in {took:.1} s",
            cfg.scale_rows
        );
        let label = format!("best, +{} terminal rows", cfg.scale_rows);
        let mut after = paired(b, &best, n, Feed::Live, "warn", "scale", &label, out).await?;
        let e2e_ratio = after.jobs_per_s / before.jobs_per_s;
        let ceil_ratio = after.ceiling_jobs_per_s.unwrap_or(f64::NAN)
            / before.ceiling_jobs_per_s.unwrap_or(f64::NAN);
        after.note = format!(
            "{}; e2e x{e2e_ratio:.2}, ceiling x{ceil_ratio:.2} of +0 rows",
            after.note
        );
        if let Some(r) = out.rows.last_mut() {
            r.note.clone_from(&after.note);
        }
        out.summary.insert(
            "scale".into(),
            serde_json::json!({
                "terminal_rows": cfg.scale_rows,
                "insert_and_vacuum_secs": took,
                "e2e_ratio_after_over_before": e2e_ratio,
                "ceiling_ratio_after_over_before": ceil_ratio,
            }),
        );
    }
    let rss_max = out
        .rows
        .iter()
        .filter_map(|r| r.rss_max_mib)
        .fold(f64::NAN, f64::max);
    out.summary
        .insert("rss_max_mib_any_worker".into(), serde_json::json!(rss_max));
    Ok(())
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".into(),
    }
}

fn render_table(rows: &[Row]) -> String {
    let header = [
        "section",
        "scenario",
        "W",
        "pf",
        "conc",
        "C",
        "jobs",
        "secs",
        "jobs/s",
        "ceiling",
        "ratio",
        "p50ms",
        "p99ms",
        "start ms",
        "RSS MiB",
        "run CPU",
        "bench CPU",
        "mq CPU",
        "pg CPU",
        "xact/j",
        "wal/j",
        "busy%",
        "warn",
        "notes",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(ToString::to_string).collect()];
    for r in rows {
        let opt_u = |v: Option<usize>| v.map_or("-".into(), |x| x.to_string());
        cells.push(vec![
            r.section.clone(),
            r.label.clone(),
            opt_u(r.workers),
            r.prefetch.map_or("-".into(), |x| x.to_string()),
            opt_u(r.concurrency),
            r.total_concurrency.to_string(),
            r.jobs.to_string(),
            format!("{:.2}", r.secs),
            format!("{:.0}", r.jobs_per_s),
            fmt_opt(r.ceiling_jobs_per_s, 0),
            fmt_opt(r.ratio, 2),
            fmt_opt(r.p50_ms, 1),
            fmt_opt(r.p99_ms, 1),
            fmt_opt(r.startup_ms, 0),
            fmt_opt(r.rss_max_mib, 1),
            fmt_opt(r.worker_cpu_us_per_job, 0),
            fmt_opt(r.bench_cpu_us_per_job, 0),
            fmt_opt(r.mq_cpu_us_per_job, 0),
            fmt_opt(r.pg_cpu_us_per_job, 0),
            fmt_opt(r.db_xacts_per_job, 2),
            fmt_opt(r.wal_syncs_per_job, 2),
            fmt_opt(r.machine_busy_pct, 0),
            opt_u(r.warn_lines),
            r.note.clone(),
        ]);
    }
    let cols = header.len();
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, r) in cells.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 || i == cols - 1 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
            out.push('\n');
        }
    }
    out
}

async fn machine_meta(b: &Bench) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let pg: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&b.admin)
        .await
        .unwrap_or_else(|_| "unknown".into());
    let git = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "mem_total_kb": mem_total,
        "postgres": pg,
        "git": git,
        "worker_binary": env!("CARGO_BIN_EXE_decay-worker"),
        "database": b.db_name,
        "topology_base": b.base,
        "at": Utc::now().to_rfc3339(),
    })
}

async fn main_async() -> Result<()> {
    let cfg = Cfg::from_env()?;
    eprintln!(
        "[bench] jobs={} workers={:?} settings={:?} latency={}x{}s scale_rows={} backlog={} quick={}",
        cfg.jobs,
        cfg.workers,
        cfg.settings,
        cfg.latency_rate,
        cfg.latency_secs,
        cfg.scale_rows,
        cfg.backlog,
        cfg.quick
    );
    let out_path = cfg.out.clone();
    let bench = Bench::setup(cfg).await?;
    eprintln!(
        "[bench] database {} topology {} (both removed at the end)",
        bench.db_name, bench.base
    );
    let meta = machine_meta(&bench).await;
    let mut outcome = Outcome {
        rows: Vec::new(),
        best: None,
        summary: BTreeMap::new(),
    };
    let started = Instant::now();
    let result = tokio::select! {
        r = run_all(&bench, &mut outcome) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let total_secs = started.elapsed().as_secs_f64();
    let cfg_json = serde_json::to_value(&bench.cfg)?;
    let torn = bench.teardown(result.is_ok()).await;
    if !outcome.rows.is_empty() {
        let table = render_table(&outcome.rows);
        println!("{table}");
        if let Some(best) = &outcome.best {
            println!("best setting: {}", best.describe());
        }
        for (k, v) in &outcome.summary {
            println!("{k}: {v}");
        }
        println!("total bench time: {total_secs:.0} s");
        let json = serde_json::json!({
            "meta": meta,
            "config": cfg_json,
            "complete": result.is_ok(),
            "summary": outcome.summary,
            "rows": outcome.rows,
            "table": table,
        });
        if let Some(dir) = out_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&out_path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", out_path.display()))?;
        eprintln!("[bench] wrote {}", display_path(&out_path));
    }
    result?;
    torn
}

fn display_path(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {}", redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
