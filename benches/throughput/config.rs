//! Configuration from the environment (`BENCH_*` knobs).

use crate::*;

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Cfg {
    pub(crate) quick: bool,
    pub(crate) jobs: usize,
    pub(crate) workers: Vec<usize>,
    pub(crate) settings: Vec<(u16, usize)>,
    /// Worker `--batch-size`s to compare (1: batches off).
    pub(crate) batches: Vec<usize>,
    pub(crate) latency_rate: f64,
    pub(crate) latency_secs: f64,
    pub(crate) settle_poll_ms: u64,
    pub(crate) scrape_secs: f64,
    pub(crate) scale_rows: i64,
    pub(crate) backlog: usize,
    pub(crate) backlog_small: usize,
    #[serde(skip)]
    pub(crate) database_url: String,
    #[serde(skip)]
    pub(crate) amqp_url: String,
    #[serde(skip)]
    pub(crate) out: PathBuf,
    #[serde(skip)]
    pub(crate) keep_logs: bool,
}

pub(crate) fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
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

pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

impl Cfg {
    pub(crate) fn from_env() -> Result<Cfg> {
        let quick = env_flag("BENCH_QUICK");
        let workers = match std::env::var("BENCH_WORKERS") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|w| w.trim().parse::<usize>().context("BENCH_WORKERS: 1,2,4"))
                .collect::<Result<Vec<_>>>()?,
            _ if quick => vec![1, 2],
            _ => vec![1, 2, 4],
        };
        let batches = match std::env::var("BENCH_BATCH") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|b| b.trim().parse::<usize>().context("BENCH_BATCH: 1,64"))
                .collect::<Result<Vec<_>>>()?,
            _ => vec![1, decay_worker::worker::DEFAULT_BATCH_SIZE],
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
            _ if quick => vec![(128, 8)],
            _ => vec![(64, 16), (128, 16)],
        };
        ensure!(
            !workers.is_empty() && workers.iter().all(|w| (1..=16).contains(w)),
            "BENCH_WORKERS must list 1 to 16 workers per run"
        );
        ensure!(
            !settings.is_empty() && settings.iter().all(|(p, c)| *p > 0 && *c > 0),
            "BENCH_SETTINGS must list positive prefetch:concurrency pairs"
        );
        ensure!(
            !batches.is_empty()
                && batches
                    .iter()
                    .all(|b| *b >= 1 && settings.iter().all(|(p, _)| *b <= usize::from(*p))),
            "BENCH_BATCH sizes must be between 1 and every setting's prefetch"
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
            batches,
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
pub(crate) fn with_database(url: &str, db: &str) -> Result<String> {
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
