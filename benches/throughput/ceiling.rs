//! The one-job-per-commit ceiling: the runner's per-job path in process, no broker.

use crate::*;

impl Bench {
    /// The runner's per-job SQL from `c` concurrent tasks, no broker.
    pub(crate) async fn ceiling(&self, c: usize, n: usize, label: &str) -> Result<Row> {
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
            wal_bytes_per_job: Some((stats1.wal_bytes - stats0.wal_bytes) as f64 / n as f64),
            machine_busy_pct: busy_pct(m0, m1),
            note: format!("runner in-process, {c} tasks, pool {c}"),
            ..Row::default()
        };
        self.cpu_columns(&mut row, c0, c1, n, true);
        Ok(row)
    }
}

/// Run `ids` through the runner from `c` tasks sharing one cursor.
pub(crate) async fn drive(runner: &Runner, ids: Arc<Vec<DecayJobId>>, c: usize) -> Result<()> {
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
