//! Publish-to-settle latency at a fixed rate.

use crate::*;

impl Bench {
    pub(crate) async fn latency(&self, s: &Setting, rate: f64, secs: f64) -> Result<Row> {
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

    pub(crate) async fn latency_inner(
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
            batch: Some(s.batch),
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
}

/// Watch published ids until each is seen `completed`; returns publish-to-settle latencies in
/// ms as (upper, lower) bounds. A job committed before the start of the first poll that sees
/// it completed (upper bound) and after the start of the poll before (lower bound; 0 when the
/// job was published after that poll started). Polls run every `poll_every` (default 5 ms).
pub(crate) async fn observe_settles(
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
