//! End to end through real worker processes (live feed or backlog).

use crate::*;

impl Bench {
    pub(crate) fn spawn_worker(
        &self,
        run: usize,
        i: usize,
        s: &Setting,
        rust_log: &str,
    ) -> Result<Worker> {
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
            .env("DECAY_BATCH_SIZE", s.batch.to_string())
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

    pub(crate) fn check_alive(workers: &mut [Worker]) -> Result<()> {
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
    pub(crate) async fn ensure_no_consumers(&self) -> Result<()> {
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
    pub(crate) async fn wait_consuming(&self, n: usize, workers: &mut [Worker]) -> Result<()> {
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
    pub(crate) async fn wait_drained(
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

    pub(crate) async fn warm_up(
        &self,
        s: &Setting,
        label: &str,
        workers: &mut [Worker],
    ) -> Result<()> {
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
    pub(crate) fn worker_rss(workers: &[Worker]) -> Vec<f64> {
        workers
            .iter()
            .map(|w| proc_hwm_bytes(w.pid).unwrap_or(f64::NAN) / MIB)
            .collect()
    }

    /// One end-to-end run with real worker processes.
    pub(crate) async fn e2e(
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
        row.wal_bytes_per_job = Some((stats1.wal_bytes - stats0.wal_bytes) as f64 / n as f64);
        Ok(row)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn e2e_inner(
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
            batch: Some(s.batch),
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
}
