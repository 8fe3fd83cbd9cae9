//! The bench: its own database and topology, seeding, verification, statistics.

use crate::*;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DbStats {
    pub(crate) xact_commit: i64,
    pub(crate) wal_sync: i64,
    /// WAL position in bytes (whole cluster).
    pub(crate) wal_bytes: i64,
}

/// One end-to-end (or latency) run's setting.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    pub(crate) workers: usize,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    /// `--batch-size` of the workers (1: batches off).
    pub(crate) batch: usize,
}

impl Setting {
    pub(crate) fn total(&self) -> usize {
        self.workers * self.concurrency
    }
    pub(crate) fn describe(&self) -> String {
        format!(
            "W={} prefetch={} concurrency={} batch={}",
            self.workers, self.prefetch, self.concurrency, self.batch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Workers consuming first (warmed up), then the clock starts at the first publish.
    Live,
    /// All ids published first, then the workers start; the clock starts at spawn.
    Backlog,
}

// ------------------------------------------------------------------------------------------
// The bench

pub(crate) struct Bench {
    pub(crate) cfg: Cfg,
    pub(crate) admin: PgPool,
    pub(crate) db_name: String,
    pub(crate) db_url: String,
    pub(crate) pool: PgPool,
    pub(crate) session: Session,
    pub(crate) publisher: Publisher,
    pub(crate) base: String,
    pub(crate) logs: PathBuf,
    pub(crate) seq: AtomicI64,
    pub(crate) runs: AtomicUsize,
    pub(crate) clk_tck: f64,
    pub(crate) mq_pid: Option<u32>,
}

impl Bench {
    pub(crate) async fn setup(cfg: Cfg) -> Result<Bench> {
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

    pub(crate) async fn setup_rest(
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
            tls: Default::default(),
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
    pub(crate) async fn teardown(self, ok: bool) -> Result<()> {
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

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// No job may be pending or in progress between runs: the drain check relies on it.
    pub(crate) async fn ensure_idle(&self) -> Result<()> {
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
    pub(crate) async fn seed(&self, n: usize, tag: &str) -> Result<Vec<DecayJobId>> {
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
    pub(crate) async fn verify(&self, ids: &[DecayJobId]) -> Result<()> {
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
    pub(crate) async fn db_stats_settled(&self) -> Result<DbStats> {
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

    pub(crate) async fn db_stats(&self) -> Result<DbStats> {
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
            wal_bytes: sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&self.admin)
                .await
                .unwrap_or(0),
        })
    }

    /// CPU ticks of every backend connected to the bench database.
    pub(crate) async fn pg_backend_ticks(&self) -> Result<HashMap<u32, u64>> {
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

    pub(crate) fn cpu_mark(&self, workers: &[Worker]) -> CpuMark {
        CpuMark {
            bench: proc_cpu_ticks(std::process::id()).unwrap_or(0),
            mq: self.mq_pid.and_then(proc_cpu_ticks),
            workers: workers.iter().filter_map(|w| proc_cpu_ticks(w.pid)).sum(),
        }
    }

    /// Fill the CPU-per-job columns from two marks. `runner_in_bench`: the ceiling, where the
    /// bench process itself runs the jobs.
    pub(crate) fn cpu_columns(
        &self,
        row: &mut Row,
        a: CpuMark,
        b: CpuMark,
        n: usize,
        runner_in_bench: bool,
    ) {
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

    pub(crate) fn ticks_to_us_per_job(&self, ticks: u64, jobs: usize) -> f64 {
        ticks as f64 / self.clk_tck * 1e6 / jobs as f64
    }

    pub(crate) fn pg_cpu_delta(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
        after
            .iter()
            .map(|(pid, t)| t.saturating_sub(*before.get(pid).unwrap_or(&0)))
            .sum()
    }
}

pub(crate) async fn drop_database(admin: &PgPool, db: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(admin)
    .await
    .with_context(|| format!("dropping database {db}"))?;
    Ok(())
}
