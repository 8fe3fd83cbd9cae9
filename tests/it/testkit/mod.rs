//! What the integration tests share, so each test reads as its scenario:
//! * here: seeding through the store, a runner, and reading what a run wrote;
//! * [`harness`]: worker processes, the test's topology, broker and database probes;
//! * [`attest`]: the test operator's key, signed envelopes and the files they live in;
//! * [`openai`]: an OpenAI-compatible server that holds its answers until released.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use decay_worker::decay::{JobKind, SummaryMethod};
use decay_worker::ids::{DecayJobId, EpisodeId, MemoryId, PrincipleId};
use decay_worker::llm::{NoopBackend, SummaryBackend};
use decay_worker::runner::{Runner, RunnerConfig};
use decay_worker::store::{Clock, NewEpisode, NewJob, NewMemory, NewPrinciple, Store};
use serde_json::{Value, json};
use sqlx::PgPool;

pub mod attest;
pub mod browser;
pub mod harness;
pub mod openai;
pub mod prop;

/// The frozen clock tests use (spec §4.7).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 13, 12, 0, 0).unwrap()
}

/// A store on `pool` whose statements read a frozen clock showing [`t0`], and that clock
/// (move it with `Clock::set`). Production stores read the database's `now()`.
pub fn frozen_store(pool: &PgPool) -> (Store, Clock) {
    let clock = Clock::frozen(t0());
    (
        Store::from_pool(pool.clone()).with_clock(clock.clone()),
        clock,
    )
}

pub fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

pub fn runner_cfg() -> RunnerConfig {
    RunnerConfig {
        lease: Duration::from_secs(30),
        heartbeat_every: Duration::from_secs(10),
        max_attempts: 3,
        worker_id: "test/1".into(),
    }
}

pub fn runner(store: &Store) -> Runner {
    runner_with(store, runner_cfg(), Arc::new(NoopBackend))
}

pub fn runner_with(store: &Store, cfg: RunnerConfig, backend: Arc<dyn SummaryBackend>) -> Runner {
    Runner::new(store.clone(), cfg, backend, attest::trust_policy())
}

pub async fn memory(store: &Store, claim: &str, confidence: f64, authority: &str) -> MemoryId {
    let id = MemoryId::new();
    store
        .insert_memory(&NewMemory {
            id,
            memory_type: "semantic".into(),
            status: "active".into(),
            claim: claim.into(),
            source_episodes_json: json!([]),
            source_events_json: json!(["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"]),
            domains_json: json!(["ops"]),
            confidence,
            authority: authority.into(),
            created_at: t0(),
        })
        .await
        .unwrap();
    id
}

pub async fn episode(store: &Store, summary: &str, confidence: f64) -> EpisodeId {
    let id = EpisodeId::new();
    store
        .insert_episode(&NewEpisode {
            id,
            trace_id: "trc_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            summary: summary.into(),
            source_events_json: json!(["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"]),
            domains_json: json!(["ops"]),
            confidence,
        })
        .await
        .unwrap();
    id
}

pub async fn principle(store: &Store) -> PrincipleId {
    let id = PrincipleId::new();
    store
        .insert_principle(&NewPrinciple {
            id,
            statement: "be kind".into(),
            waiver_expires_at: None,
        })
        .await
        .unwrap();
    id
}

/// Insert a pending job over `sources`, scheduled at `at`.
pub async fn job_at(
    store: &Store,
    kind: JobKind,
    method: SummaryMethod,
    sources: Vec<String>,
    at: DateTime<Utc>,
) -> DecayJobId {
    let job = NewJob::new(kind, method, sources, at, "operator:test", at);
    store.insert_job(&job).await.unwrap();
    job.id
}

/// A pending deterministic candidate-compression job over three fresh memories.
pub async fn candidate_job(store: &Store, at: DateTime<Utc>) -> DecayJobId {
    let mut ids = Vec::new();
    for (i, c) in [0.9, 0.7, 0.8].into_iter().enumerate() {
        ids.push(
            memory(store, &format!("claim {i}"), c, "agent")
                .await
                .to_string(),
        );
    }
    job_at(
        store,
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        ids,
        at,
    )
    .await
}

/// A memory row as the tests inspect it (the columns a summary writes).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MemoryRow {
    pub id: String,
    pub memory_type: String,
    pub status: String,
    pub claim: String,
    pub source_episodes_json: Value,
    pub source_events_json: Value,
    pub domains_json: Value,
    pub salience_json: Value,
    pub confidence: f64,
    pub authority: String,
    pub applies_when_json: Value,
    pub does_not_apply_when_json: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub produced_by_job_id: Option<String>,
}

/// Read one memory.
pub async fn read_memory(pool: &PgPool, id: &MemoryId) -> Option<MemoryRow> {
    sqlx::query_as(
        "SELECT id, memory_type, status, claim, source_episodes_json, source_events_json,
                domains_json, salience_json, confidence, authority, applies_when_json,
                does_not_apply_when_json, created_at, updated_at, produced_by_job_id
           FROM memories WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// A due LLM-summary compression of two new memories, "alpha" (0.9, user) and "beta"
/// (0.7, agent): the claims the replay fixtures answer for. Returns the job and the two sources.
pub async fn alpha_beta_llm_job(store: &Store) -> (DecayJobId, MemoryId, MemoryId) {
    let a = memory(store, "alpha", 0.9, "user").await;
    let b = memory(store, "beta", 0.7, "agent").await;
    let id = job_at(
        store,
        JobKind::CandidateCompression,
        SummaryMethod::LlmSummary,
        vec![a.to_string(), b.to_string()],
        Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    (id, a, b)
}

/// Lock the source memories of `job` (`FOR UPDATE`) in a transaction of our own, so the job's
/// settle waits on them until the returned transaction is rolled back or dropped.
pub async fn lock_sources_of(
    pool: &PgPool,
    job: &DecayJobId,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT id FROM memories WHERE id IN
           (SELECT jsonb_array_elements_text(source_ids_json) FROM decay_jobs WHERE id = $1)
         FOR UPDATE",
    )
    .bind(job.to_string())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx
}

/// Make the `n`th summary insert into this database (1-based, counted across all jobs) fail
/// the way a serialization failure does, after the statement has already done its other work:
/// what a transient database error in the middle of a settle looks like.
pub async fn fail_nth_summary_insert(pool: &PgPool, n: u32) {
    let sql = format!(
        "CREATE SEQUENCE inserts;
         CREATE FUNCTION fail_nth() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('inserts') = {n} THEN
             RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER fail_nth BEFORE INSERT ON memories
           FOR EACH ROW WHEN (NEW.memory_type = 'summary') EXECUTE FUNCTION fail_nth();"
    );
    // `n` is a number: no outside input reaches this statement.
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

/// Number of summary memories written by a job (0 or 1 by construction).
pub async fn count_summaries(pool: &PgPool, job: &DecayJobId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM memories WHERE produced_by_job_id = $1")
        .bind(job.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Number of supersession edges (memory and episode) tagged with a job.
pub async fn count_edges(pool: &PgPool, job: &DecayJobId) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM memory_supersessions WHERE decay_job_id = $1)
              + (SELECT count(*) FROM episode_supersessions WHERE decay_job_id = $1)",
    )
    .bind(job.to_string())
    .fetch_one(pool)
    .await
    .unwrap()
}
