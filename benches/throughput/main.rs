//! Throughput benchmark (issues 6 and 13): `cargo bench --bench throughput`.
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
//!   concurrency, batch size) setting; batch size 1 is batches off, so one run compares the
//!   one-job-per-commit ceiling with the worker with batches off and on. Workers are started against an empty queue and warmed up; the clock
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
//! `BENCH_SETTINGS=64:16,128:16` (prefetch:concurrency), `BENCH_BATCH=1,64` (worker batch
//! sizes; 1 = off; each at most every prefetch), `BENCH_LATENCY_RATE`,
//! `BENCH_LATENCY_SECS`, `BENCH_SETTLE_POLL_MS` (5), `BENCH_SCALE_ROWS` (0 skips),
//! `BENCH_BACKLOG` (0 skips; the small comparison run is a tenth of it), `BENCH_SCRAPE_SECS`
//! (0: off; else GET every worker's /metrics this often while draining, as Prometheus would),
//! `BENCH_OUT` (JSON path), `BENCH_KEEP_LOGS=1`.
//!
//! Modules: [`config`] (knobs), [`bench`] (database, topology, seeding, statistics),
//! [`ceiling`], [`e2e`], [`latency`], [`scale`] (the runs), [`workers`], [`publisher`],
//! [`sys`] (/proc), [`report`] (rows and table). This file: the order of the runs.
//!
//! Columns besides throughput: CPU per job (µs, user + system from /proc) of the processes
//! running the runner (workers, or the bench itself for a ceiling), of the bench process
//! (publisher and polls), of RabbitMQ and of the PostgreSQL backends of the bench database;
//! committed transactions per job in the bench database, WAL syncs and WAL bytes per job (whole
//! cluster),
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
use decay_worker::broker::{BrokerConfig, Session};
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

mod bench;
mod ceiling;
#[path = "../common/mod.rs"]
mod common;
mod config;
mod e2e;
mod latency;
mod publisher;
mod report;
mod scale;
mod sys;
mod workers;

use bench::*;
use common::delete_topology;
use config::*;
use publisher::*;
use report::*;
use sys::*;
use workers::*;

pub(crate) const MIB: f64 = 1024.0 * 1024.0;
/// Poll interval of the end-of-run check.
pub(crate) const DRAIN_POLL: Duration = Duration::from_millis(50);
/// A run whose remaining-job count does not move for this long is reported as stuck.
pub(crate) const STALL: Duration = Duration::from_secs(90);

pub(crate) struct Outcome {
    pub(crate) rows: Vec<Row>,
    pub(crate) best: Option<Setting>,
    pub(crate) summary: BTreeMap<String, serde_json::Value>,
}

pub(crate) fn log_row(r: &Row) {
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
pub(crate) async fn paired(
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
    if s.batch == 1 && row.jobs_per_s > 1.05 * ceil.jobs_per_s {
        // Without batches the broker path cannot beat the same SQL without it: the
        // background load changed between the two halves of the pair. (With batches it can:
        // that is their point.)
        row.note
            .push_str("; RATIO > 1: background load changed within the pair, do not trust it");
    }
    log_row(&row);
    out.rows.push(ceil);
    out.rows.push(row.clone());
    Ok(row)
}

pub(crate) async fn run_all(b: &Bench, out: &mut Outcome) -> Result<()> {
    let cfg = &b.cfg;
    let n = cfg.jobs;

    // 1. Sweep: every (W, prefetch, concurrency), each paired with its ceiling.
    let mut best: Option<Row> = None;
    let mut best_setting = None;
    for w in &cfg.workers {
        for (p, c) in &cfg.settings {
            let mut by_batch = serde_json::Map::new();
            for batch in &cfg.batches {
                let s = Setting {
                    workers: *w,
                    prefetch: *p,
                    concurrency: *c,
                    batch: *batch,
                };
                let label = format!("W={w} prefetch={p} conc={c} batch={batch}");
                let row = paired(b, &s, n, Feed::Live, "warn", "e2e", &label, out).await?;
                by_batch.insert(
                    format!("batch={batch}"),
                    serde_json::json!({
                        "e2e_jobs_per_s": row.jobs_per_s,
                        "ceiling_jobs_per_s": row.ceiling_jobs_per_s,
                        "e2e_over_ceiling": row.ratio,
                        "pg_cpu_us_per_job": row.pg_cpu_us_per_job,
                        "wal_bytes_per_job": row.wal_bytes_per_job,
                        "xacts_per_job": row.db_xacts_per_job,
                        "rss_max_mib": row.rss_max_mib,
                    }),
                );
                if best.as_ref().is_none_or(|r| row.jobs_per_s > r.jobs_per_s) {
                    best = Some(row);
                    best_setting = Some(s);
                }
            }
            out.summary.insert(
                format!("batches W={w} prefetch={p} conc={c}"),
                serde_json::Value::Object(by_batch),
            );
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

    // 2. Latency at a fixed rate with the best setting, and the same with batches off, back
    //    to back: batches must not cost latency at low load.
    let mut variants = vec![(best.clone(), "latency")];
    if best.batch > 1 {
        let mut off = best.clone();
        off.batch = 1;
        variants.push((off, "latency_batches_off"));
    }
    for (s, key) in variants {
        let row = b.latency(&s, cfg.latency_rate, cfg.latency_secs).await?;
        eprintln!(
            "[bench] latency  batch={} publish->settle p50 {:.1} ms p99 {:.1} ms (upper bounds)",
            s.batch,
            row.p50_ms.unwrap_or(f64::NAN),
            row.p99_ms.unwrap_or(f64::NAN)
        );
        let lat = serde_json::json!({
            "batch": s.batch,
            "rate_per_s": row.jobs_per_s,
            "jobs": row.jobs,
            "settle_upper_p50_ms": row.p50_ms,
            "settle_upper_p99_ms": row.p99_ms,
            "settle_lower_p50_ms": row.settle_lower_p50_ms,
            "settle_lower_p99_ms": row.settle_lower_p99_ms,
            "claim_p50_ms": row.claim_p50_ms,
            "claim_p99_ms": row.claim_p99_ms,
        });
        out.summary.insert(key.into(), lat);
        out.rows.push(row);
    }

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

pub(crate) async fn machine_meta(b: &Bench) -> serde_json::Value {
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

pub(crate) async fn main_async() -> Result<()> {
    let cfg = Cfg::from_env()?;
    eprintln!(
        "[bench] jobs={} workers={:?} settings={:?} batches={:?} latency={}x{}s scale_rows={} backlog={} quick={}",
        cfg.jobs,
        cfg.workers,
        cfg.settings,
        cfg.batches,
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

pub(crate) fn display_path(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn main() -> ExitCode {
    common::run_main("throughput", async { main_async().await.map(|()| true) })
}
