//! Results: one row per run, and the table they print as.

/// One line of the summary table (and one object of the JSON).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) section: String,
    pub(crate) label: String,
    pub(crate) workers: Option<usize>,
    pub(crate) prefetch: Option<u16>,
    pub(crate) concurrency: Option<usize>,
    /// Workers' `--batch-size` (1: batches off).
    pub(crate) batch: Option<usize>,
    /// W × concurrency (e2e) or C (ceiling).
    pub(crate) total_concurrency: usize,
    pub(crate) jobs: usize,
    pub(crate) secs: f64,
    pub(crate) jobs_per_s: f64,
    /// Ceiling at the same total concurrency, for e2e rows.
    pub(crate) ceiling_jobs_per_s: Option<f64>,
    /// e2e ÷ ceiling.
    pub(crate) ratio: Option<f64>,
    /// Latency rows: publish-to-settle (observed) percentiles, ms.
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// Latency rows: publish-to-claim (row `updated_at`) percentiles, ms.
    pub(crate) claim_p50_ms: Option<f64>,
    pub(crate) claim_p99_ms: Option<f64>,
    /// Spawn until every worker is consuming.
    pub(crate) startup_ms: Option<f64>,
    /// Time to publish the measured ids (inside the timed window for e2e, before it for backlog).
    pub(crate) publish_secs: Option<f64>,
    /// Max VmHWM over the run's workers.
    pub(crate) rss_max_mib: Option<f64>,
    pub(crate) rss_per_worker_mib: Vec<f64>,
    /// (seconds into the drain, max VmRSS over the workers in MiB), every second.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rss_trace_mib: Vec<(f64, f64)>,
    /// CPU per job of whatever ran the runner: the worker processes (e2e, user + system, all
    /// workers) or the bench process itself (ceiling).
    pub(crate) worker_cpu_us_per_job: Option<f64>,
    /// CPU per job of the bench process during an e2e window (publisher and polls).
    pub(crate) bench_cpu_us_per_job: Option<f64>,
    /// CPU per job of the RabbitMQ server process (found by its listening port).
    pub(crate) mq_cpu_us_per_job: Option<f64>,
    /// Latency rows: lower bound of publish-to-settle percentiles (previous poll), ms.
    pub(crate) settle_lower_p50_ms: Option<f64>,
    pub(crate) settle_lower_p99_ms: Option<f64>,
    /// CPU of the PostgreSQL backends connected to the bench database per job.
    pub(crate) pg_cpu_us_per_job: Option<f64>,
    /// Committed transactions in the bench database per job (pg_stat_database).
    pub(crate) db_xacts_per_job: Option<f64>,
    /// WAL syncs per job (pg_stat_wal, whole cluster).
    pub(crate) wal_syncs_per_job: Option<f64>,
    /// WAL bytes written per job (whole cluster).
    pub(crate) wal_bytes_per_job: Option<f64>,
    /// Whole-machine CPU busy during the timed window, percent.
    pub(crate) machine_busy_pct: Option<f64>,
    /// WARN/ERROR lines in the workers' logs.
    pub(crate) warn_lines: Option<usize>,
    pub(crate) note: String,
}

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".into(),
    }
}

pub(crate) fn render_table(rows: &[Row]) -> String {
    let header = [
        "section",
        "scenario",
        "W",
        "pf",
        "conc",
        "batch",
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
        "walB/j",
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
            opt_u(r.batch),
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
            fmt_opt(r.wal_bytes_per_job, 0),
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
