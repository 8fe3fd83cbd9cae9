//! Real worker processes against the real broker and database: each test gets its own database
//! (from `#[sqlx::test]`), its own topology base name and its own scratch directory, all
//! removed when the harness drops.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use decay_worker::broker::{BrokerConfig, Session, Topology};
use decay_worker::ids::DecayJobId;
use decay_worker::store::{DeadLetterRow, DeadLetterSelector, Store};
use sqlx::PgPool;
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Wait for `cond` to hold, polling, or panic with `what` at the deadline.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port nobody listens on right now, for a process the test starts and then addresses.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long a worker may take to come up, or to exit after SIGTERM (its grace is 20 s).
const PROCESS_DEADLINE: Duration = Duration::from_secs(40);

/// A worker process started by [`Harness::spawn_worker`]; killed if the test drops it.
pub struct Worker {
    pub name: String,
    /// Its `/healthz`, `/readyz`, `/metrics` listener, on a port the harness chose.
    pub port: u16,
    child: Child,
}

impl Worker {
    /// Wait until its HTTP listener answers `/healthz`.
    pub async fn await_listening(&self) {
        wait_until(PROCESS_DEADLINE, "the worker's http listener", || async {
            try_http_get(self.port, "/healthz").await.map(|r| r.0) == Some(200)
        })
        .await;
    }

    /// Wait until `/readyz` says it consumes with a working database.
    pub async fn await_ready(&self) {
        wait_until(PROCESS_DEADLINE, "the worker ready (consuming)", || async {
            try_http_get(self.port, "/readyz").await.map(|r| r.0) == Some(200)
        })
        .await;
    }

    /// Send SIGTERM.
    pub fn signal_term(&self) {
        let pid = self.child.id().expect("the worker is running");
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
    }

    /// Its exit code, once it exited (`None`: ended by a signal).
    pub async fn exit_code(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {PROCESS_DEADLINE:?}", self.name))
            .unwrap();
        if status.code().is_none() {
            use std::os::unix::process::ExitStatusExt;
            eprintln!("{} ended by signal {:?}", self.name, status.signal());
        }
        status.code()
    }

    /// Stop it with SIGTERM and return its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        self.signal_term();
        self.exit_code().await
    }

    /// SIGKILL it and reap it.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

pub struct Harness {
    pub store: Store,
    pub pool: PgPool,
    /// This test's database, and the URL a worker process connects with.
    db_name: String,
    db_url: String,
    pub base: String,
    session: Option<Session>,
    /// Worker logs and whatever else a test writes; removed when the harness drops.
    scratch: TempDir,
    /// The runtime that owns the harness's broker connection (its IO loop runs here), so Drop
    /// can close it on another thread without waiting on the test's own runtime.
    broker_rt: Option<tokio::runtime::Runtime>,
}

impl Harness {
    pub async fn new(pool: PgPool) -> Harness {
        let db_name = pool.connect_options().get_database().unwrap().to_string();
        let root = std::env::var("DATABASE_URL").unwrap();
        let (prefix, _) = root.rsplit_once('/').unwrap();
        let db_url = format!("{prefix}/{db_name}");
        let base = format!("test.{}", uuid::Uuid::new_v4().simple());
        let broker = BrokerConfig {
            url: amqp_url(),
            tls: Default::default(),
            base: base.clone(),
            delivery_limit: 10,
            heartbeat_secs: 5,
            op_timeout: Duration::from_secs(10),
        };
        let broker_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let session = broker_rt
            .spawn(async move { Session::open(&broker, "test-harness").await })
            .await
            .unwrap()
            .unwrap();
        Harness {
            store: Store::from_pool(pool.clone()),
            pool,
            db_name,
            db_url,
            base,
            session: Some(session),
            scratch: tempfile::tempdir().unwrap(),
            broker_rt: Some(broker_rt),
        }
    }

    pub fn session(&self) -> &Session {
        self.session.as_ref().unwrap()
    }

    /// The URL of this test's database, for a process the test starts.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// A directory of this test's own, removed when the harness drops.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Start a worker process. `args` are extra flags after `consume`.
    pub fn spawn_worker(&self, name: &str, args: &[&str]) -> Worker {
        self.spawn_worker_env(name, args, &[])
    }

    /// Start a worker process with extra environment (overriding the defaults).
    pub fn spawn_worker_env(&self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Worker {
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_decay-worker"));
        cmd.arg("consume")
            .args(args)
            .env("DECAY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &self.db_url)
            .env("AMQP_URL", amqp_url())
            .env("DECAY_QUEUE", &self.base)
            .env("DECAY_WORKER_ID", name)
            .env("DECAY_LEASE", "3s")
            .env("DECAY_HEARTBEAT", "1s")
            .env("DECAY_RECONCILE_EVERY", "0")
            .env("DECAY_SHUTDOWN_GRACE", "20s")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Worker {
            name: name.to_string(),
            port,
            child: cmd.spawn().unwrap(),
        }
    }

    /// Run a one-shot CLI command against this test's database and topology.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_decay-worker"))
            .args(args)
            .env("DATABASE_URL", &self.db_url)
            .env("AMQP_URL", amqp_url())
            .env("DECAY_QUEUE", &self.base)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .unwrap()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.scratch().join(format!("{name}.log"))
    }

    /// What a worker has logged so far.
    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    pub async fn publish(&self, id: &DecayJobId) {
        self.session().publish_job(id).await.unwrap();
    }

    pub async fn count_state(&self, state: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM decay_jobs WHERE state = $1")
            .bind(state)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// A plain lapin connection and channel of the test's own (for what the product never
    /// does: publishing straight into a queue, taking messages without acking them).
    pub async fn raw_channel(&self) -> (lapin::Connection, lapin::Channel) {
        open_raw().await.unwrap()
    }

    /// Take `n` messages of the main queue without acking them and close the channel, as a
    /// worker that dies mid-job would: the broker requeues them, flagged `redelivered`.
    pub async fn return_unacked(&self, n: usize) {
        let (conn, ch) = self.raw_channel().await;
        for _ in 0..n {
            ch.basic_get(self.base.as_str().into(), Default::default())
                .await
                .unwrap()
                .expect("a message to take");
        }
        ch.close(200, "gone".into()).await.unwrap();
        conn.close(200, "gone".into()).await.unwrap();
        wait_until(
            Duration::from_secs(20),
            "the messages back in the queue",
            || async { self.ready_in(&self.base).await as usize == n },
        )
        .await;
    }

    /// Publish a message straight into the dead queue, as the broker parks one.
    pub async fn park_like_the_broker(&self, body: &[u8], reason: &str) {
        use lapin::types::{AMQPValue, FieldTable, LongString};
        let (conn, ch) = self.raw_channel().await;
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
        headers.insert("x-first-death-reason".into(), text(reason));
        headers.insert("x-first-death-queue".into(), text(&self.base));
        ch.confirm_select(Default::default()).await.unwrap();
        ch.basic_publish(
            "".into(),
            format!("{}.dead", self.base).as_str().into(),
            Default::default(),
            body,
            lapin::BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    }

    /// The dead letters recorded for this test's topology, oldest first.
    pub async fn dead_letters(&self) -> Vec<DeadLetterRow> {
        self.store
            .list_dead_letters(&self.base, &DeadLetterSelector::All, 10_000)
            .await
            .unwrap()
    }

    /// No dead letter was recorded, and none waits in the dead queue to be.
    pub async fn assert_nothing_dead_lettered(&self) {
        assert_eq!(self.dead_letters().await, vec![], "dead letters recorded");
        assert_eq!(
            self.ready_in(&format!("{}.dead", self.base)).await,
            0,
            "messages parked in the dead queue"
        );
    }

    /// Messages left in a queue once no consumer holds any. Waits until the broker has
    /// removed every consumer first: a quorum queue returns a gone consumer's unacked
    /// messages in that same step, so the count cannot miss one still on its way back.
    pub async fn left_in(&self, queue: &str) -> u32 {
        wait_until(
            Duration::from_secs(30),
            "no consumer left on the queue",
            || async { self.session().queue_counts(queue).await.unwrap().1 == 0 },
        )
        .await;
        self.ready_in(queue).await
    }

    /// Messages left in the base's queue ([`Harness::left_in`]) and in its retry tiers, once
    /// no consumer holds any. A message waiting in a tier is not settled: it comes back to
    /// the queue when its delay ends, possibly after the test stopped its workers.
    pub async fn left_in_base_and_tiers(&self) -> u32 {
        let mut left = self.left_in(&self.base).await;
        let topology = self.session().topology().clone();
        for (tier, _) in decay_worker::broker::topology::RETRY_TIERS {
            left += self.ready_in(&topology.retry_queue(tier)).await;
        }
        left
    }

    pub async fn ready_in(&self, queue: &str) -> u32 {
        self.session().queue_counts(queue).await.unwrap().0
    }

    /// Every job has exactly one summary memory and its edges; returns the job count.
    pub async fn assert_exactly_one_summary_per_job(&self) -> i64 {
        let bad: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM decay_jobs j
              WHERE j.kind <> 'expired_principle_review' AND j.state = 'completed'
                AND (SELECT count(*) FROM memories m WHERE m.produced_by_job_id = j.id) <> 1",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        assert_eq!(bad, 0, "jobs without exactly one summary memory");
        let summaries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE memory_type = 'summary'")
                .fetch_one(&self.pool)
                .await
                .unwrap();
        let completed = self.count_state("completed").await;
        assert_eq!(
            summaries, completed,
            "one summary per completed job, no orphans"
        );
        completed
    }

    /// After the workers have exited: `jobs` jobs completed with exactly one summary each,
    /// nothing left unacked in the base queue or a retry tier (the drain finished the acks of
    /// every outcome), and nothing dead-lettered.
    pub async fn assert_all_done_once(&self, jobs: i64) {
        assert_eq!(self.assert_exactly_one_summary_per_job().await, jobs);
        assert_eq!(
            self.left_in_base_and_tiers().await,
            0,
            "nothing left unacked"
        );
        self.assert_nothing_dead_lettered().await;
    }

    /// Worker statements of this test's database waiting on a lock.
    pub async fn lock_waiters(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = $1 AND application_name = 'decay-worker'
                AND wait_event_type = 'Lock'",
        )
        .bind(&self.db_name)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// SIGKILL a worker and end its database sessions, as the server would on its own once
    /// they woke up: a statement blocked on a lock does not notice its client is gone.
    pub async fn kill_hard(&self, worker: &mut Worker) {
        worker.kill().await;
        self.cut_worker_connections().await;
    }

    /// Terminate every worker connection to this test's database; returns how many.
    pub async fn cut_worker_connections(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = $1 AND application_name = 'decay-worker'",
        )
        .bind(&self.db_name)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Delete the topology on the broker runtime, from a plain thread: Drop cannot await,
        // and the test's own runtime is blocked right here. (The scratch directory removes
        // itself when its TempDir drops, right after this.)
        if let (Some(session), Some(rt)) = (self.session.take(), self.broker_rt.take()) {
            let topology = session.topology().clone();
            let _ = std::thread::spawn(move || {
                rt.block_on(async {
                    session.close().await;
                    if let Err(e) = delete_topology(&topology).await {
                        eprintln!("could not delete the test topology: {e}");
                    }
                });
                drop(rt);
            })
            .join();
        }
    }
}

/// Delete every queue and exchange of a topology, through a connection of the test's own: the
/// product never deletes its topology, so it has no API for it.
async fn delete_topology(topology: &Topology) -> Result<(), lapin::Error> {
    let (conn, ch) = open_raw().await?;
    for q in topology.queues() {
        ch.queue_delete(q.name.as_str().into(), Default::default())
            .await?;
    }
    for x in [topology.exchange().to_string(), topology.dlx()] {
        ch.exchange_delete(x.as_str().into(), Default::default())
            .await?;
    }
    conn.close(200, "bye".into()).await
}

/// A lapin connection to the test broker, and a channel on it.
async fn open_raw() -> Result<(lapin::Connection, lapin::Channel), lapin::Error> {
    let conn =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    Ok((conn, ch))
}

/// GET a path on 127.0.0.1:port; returns (status, body). Panics if nothing answers.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    try_http_get(port, path)
        .await
        .unwrap_or_else(|| panic!("no HTTP answer on 127.0.0.1:{port}{path}"))
}

/// GET a path on 127.0.0.1:port; `None` when nothing listens or the answer is not HTTP.
pub async fn try_http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    // `connection: close`: HTTP/1.1 keeps a connection open by default, and this helper
    // reads the response to the end of the stream.
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of one Prometheus series (`name` or `name{labels}`, exactly as rendered) in a
/// `/metrics` body; `None` when the series is absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(name, _)| *name == series))
        .map(|(_, v)| v.parse().unwrap())
}

/// Wait (up to `within`) until the worker on `port` has counted a transient retry, then check
/// it counted no runner-error retry: a database outage must read as transient, never as the
/// runner's own fault (which is retried a few times and dead-lettered).
pub async fn await_transient_retry_only(port: u16, within: Duration) {
    wait_until(within, "a transient retry", || async {
        let m = http_get(port, "/metrics").await.1;
        metric(&m, "decay_retries_total{why=\"transient\"}").is_some_and(|n| n >= 1.0)
    })
    .await;
    let m = http_get(port, "/metrics").await.1;
    assert_eq!(
        metric(&m, "decay_retries_total{why=\"runner_error\"}"),
        Some(0.0)
    );
}

/// Deliveries a worker settled for good, from its `/metrics` body: every `decay_jobs_total`
/// outcome except the two that send the message round again through a retry tier
/// (`retried`, `deferred`). Once a worker has counted an outcome, its task acks the delivery,
/// and a SIGTERM drain waits for that task.
pub fn settled_for_good(metrics: &str) -> f64 {
    ["completed", "noop", "failed", "claim_lost", "dead_lettered"]
        .iter()
        .filter_map(|o| metric(metrics, &format!("decay_jobs_total{{outcome=\"{o}\"}}")))
        .sum()
}

/// The value of a series that must be there: fails, showing the body, when it is absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no series `{series}` in:\n{text}"))
}
