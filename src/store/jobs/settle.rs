//! The one guarded settle (DESIGN §3 rule 2): a job's final state and its effects commit in
//! one statement, or nothing does.
//!
//! A settle is a guard (which row state it expects) times an effect (what it writes):
//!
//! | guard | `WHERE` | also sets |
//! |---|---|---|
//! | [`SettleGuard::Claim`] | `in_progress` with our claim token | |
//! | [`SettleGuard::ExpiredClaim`] | ... and its lease expired | |
//! | [`SettleGuard::PendingDue`] | `pending` and due, row not locked | a fresh claim (attempts, token, claimant) |
//!
//! | effect | state | writes |
//! |---|---|---|
//! | [`SettleEffect::Summary`] | `completed` | the summary memory and its edges, chained after the update |
//! | [`SettleEffect::NoMemory`] | `completed` | nothing else |
//! | [`SettleEffect::Failed`] | `failed` | `failure_code`, `state_reason` |
//!
//! The statement settles a **set** of jobs: a single run settles a set of one, a batch (DESIGN
//! §5) its due deterministic jobs together. The rows come in as parallel arrays (`unnest`),
//! so the statement's text does not depend on how many jobs it settles:
//!
//! ```text
//! WITH input AS (SELECT * FROM unnest(ids, tokens, states, ...)),
//!      job   AS (UPDATE decay_jobs d SET ... FROM input i WHERE d.id = i.id AND <guard> RETURNING ...),
//!      mem   AS (INSERT INTO memories ... SELECT ... FROM job JOIN summaries ...),
//!      edges AS (INSERT INTO ..._supersessions ... FROM job JOIN mem JOIN edge rows ...)
//! SELECT id FROM job
//! ```
//!
//! Each job is guarded on its own: a row the guard leaves out is simply not in `job`, and the
//! memory and edge inserts select `FROM job`, so a job whose claim was lost can never leave an
//! orphan summary, whatever happens to the other jobs of the set. The statement is one
//! transaction: a database error writes nothing for any job of the set.
//!
//! Time: the statement stamps and compares with the store's clock (the database's `now()`,
//! [`crate::store::Clock`]): one instant for the whole set, as for every statement.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Sql, push_pending_due, push_unlocked};
use crate::decay::Failure;
use crate::decay::effect::{Effect, Summary, SummaryEdges};
use crate::ids::{DecayJobId, MemoryId};
use crate::store::{Store, StoreError};

/// Which row state a settle expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleGuard<'a> {
    /// A claim we hold: `in_progress` with this token.
    Claim(Uuid),
    /// A claim whose lease has expired by the database's clock: `in_progress` with this token
    /// and `lease_expires_at <= now`. Only a claim nobody is running can match.
    ExpiredClaim(Uuid),
    /// Claim and settle at once: `pending` and due. Records a fresh claim by `claimed_by`, so
    /// the row looks as if it had been claimed and settled, but nobody ever sees it
    /// `in_progress`.
    PendingDue { claimed_by: &'a str },
}

/// What a settle writes.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleEffect {
    /// `completed`, with a new summary memory (`memory_id`) and its supersession edges.
    Summary {
        memory_id: MemoryId,
        summary: Box<Summary>,
    },
    /// `completed`, nothing else written (a principle review).
    NoMemory,
    /// `failed` with the failure's code and reason.
    Failed(Failure),
}

impl From<Effect> for SettleEffect {
    /// A successful run's effect, its summary memory under a fresh id.
    fn from(effect: Effect) -> SettleEffect {
        match effect {
            Effect::Summary(summary) => SettleEffect::Summary {
                memory_id: MemoryId::new(),
                summary,
            },
            Effect::NoMemory => SettleEffect::NoMemory,
        }
    }
}

impl From<Failure> for SettleEffect {
    fn from(failure: Failure) -> SettleEffect {
        SettleEffect::Failed(failure)
    }
}

/// How a guarded settle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    Settled,
    /// The guard matched no row (the job was cancelled, its claim was taken over, or, for
    /// [`SettleGuard::PendingDue`], it is no longer pending and due). Nothing was written.
    ClaimLost,
}

/// The memory columns the settle writes. `salience_json` and `does_not_apply_when_json` are
/// fixed for summaries; the timestamps are the job's settle time (one clock per run).
const INSERT_SUMMARY: &str = ", mem AS (
    INSERT INTO memories (id, memory_type, status, claim, source_episodes_json,
           source_events_json, domains_json, salience_json, confidence, authority,
           applies_when_json, does_not_apply_when_json, created_at, updated_at,
           produced_by_job_id)
    SELECT job.result_memory_id, 'summary', 'candidate', ";

/// One job of a settle set.
#[derive(Debug, Clone, Copy)]
pub struct SettleItem<'a> {
    pub id: &'a DecayJobId,
    /// For the claim guards, the token the claim must still hold; ignored by
    /// [`SettleGuard::PendingDue`] (a fresh token is recorded).
    pub token: Option<Uuid>,
    pub effect: &'a SettleEffect,
}

/// Which rows a set settle may touch: the same guard for every job of the set, each job's own
/// values (its token) coming from its row.
#[derive(Debug, Clone, Copy)]
enum SetGuard<'a> {
    Claim { expired: bool },
    PendingDue { claimed_by: &'a str },
}

impl Store {
    /// Settle a job under `guard` with `effect`, in one statement. Its `updated_at` (and the
    /// summary's and edges' timestamps, which copy it) is the database's clock.
    pub async fn settle(
        &self,
        id: &DecayJobId,
        guard: SettleGuard<'_>,
        effect: &SettleEffect,
    ) -> Result<SettleOutcome, StoreError> {
        let (set_guard, token) = match guard {
            SettleGuard::Claim(token) => (SetGuard::Claim { expired: false }, Some(token)),
            SettleGuard::ExpiredClaim(token) => (SetGuard::Claim { expired: true }, Some(token)),
            SettleGuard::PendingDue { claimed_by } => (SetGuard::PendingDue { claimed_by }, None),
        };
        let item = SettleItem { id, token, effect };
        let settled = settle_set(self, set_guard, &[item], None).await?;
        Ok(if settled.contains(id) {
            SettleOutcome::Settled
        } else {
            SettleOutcome::ClaimLost
        })
    }

    /// Claim and settle a set of jobs at once, each under [`SettleGuard::PendingDue`] on its
    /// own, in one statement (one transaction). Returns the ids it settled; the others were
    /// left untouched (no longer pending and due, or held by another runner right now). Ids
    /// must be distinct. The statement waits at most [`BATCH_LOCK_TIMEOUT`] for a lock
    /// (`55P03`, [`StoreError::is_lock_timeout`]): one job whose rows someone holds must not
    /// hold up the rest of its batch, which its caller then runs one by one.
    pub async fn settle_pending_due(
        &self,
        claimed_by: &str,
        items: &[(DecayJobId, SettleEffect)],
    ) -> Result<HashSet<DecayJobId>, StoreError> {
        let items: Vec<SettleItem<'_>> = items
            .iter()
            .map(|(id, effect)| SettleItem {
                id,
                token: None,
                effect,
            })
            .collect();
        let guard = SetGuard::PendingDue { claimed_by };
        settle_set(self, guard, &items, Some(BATCH_LOCK_TIMEOUT)).await
    }
}

/// How long a batch's settle statement waits for a lock before it gives up (and its jobs run
/// one by one). Rows of pending jobs are skipped when locked, never waited for; what can be
/// waited on is a source row someone holds (an operator's transaction, a migration).
pub const BATCH_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The one settle statement, for a set of jobs under one guard. With a `lock_timeout`, it
/// runs in a transaction of its own with that `lock_timeout`.
async fn settle_set(
    store: &Store,
    guard: SetGuard<'_>,
    items: &[SettleItem<'_>],
    lock_timeout: Option<std::time::Duration>,
) -> Result<HashSet<DecayJobId>, StoreError> {
    let ids: Vec<String> = items.iter().map(|i| i.id.to_string()).collect();
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Err(StoreError::Validation(
            "a settle set names a job twice".into(),
        ));
    }
    if items.is_empty() {
        return Ok(HashSet::new());
    }
    let mut rows = Rows::default();
    for item in items {
        rows.push(item);
    }
    let clock = &store.clock;
    let mut q = Sql::new("WITH input AS (SELECT * FROM unnest(");
    q.push_bind(&ids)
        .push("::text[], ")
        .push_bind(&rows.tokens)
        .push("::uuid[], ")
        .push_bind(&rows.states)
        .push("::text[], ")
        .push_bind(&rows.result_memory_ids)
        .push("::text[], ")
        .push_bind(&rows.failure_codes)
        .push("::text[], ")
        .push_bind(&rows.state_reasons)
        .push("::text[], ")
        .push_bind(&rows.attestation_key_ids)
        .push("::text[], ")
        .push_bind(&rows.attestation_signatures)
        .push("::text[], ")
        .push_bind(&rows.attestation_verifying_keys)
        .push("::text[], ")
        .push_bind(&rows.attestation_signed_ats)
        .push("::text[], ")
        .push_bind(&rows.attestation_models)
        .push("::text[], ")
        .push_bind(&rows.attestation_template_digests)
        .push(
            "::text[]) AS i(id, token, state, result_memory_id, failure_code, state_reason, \
             attestation_key_id, attestation_signature_hex, attestation_verifying_key_hex, \
             attestation_signed_at, attestation_model_name, \
             attestation_prompt_template_blake3)), \
             job AS (UPDATE decay_jobs d SET updated_at = ",
        );
    clock.push_now(&mut q);
    q.push(
        ", lease_expires_at = NULL, state = i.state, result_memory_id = i.result_memory_id, \
         failure_code = i.failure_code, state_reason = i.state_reason",
    );
    // The attestation audit is written with a summary, and left as it is otherwise.
    for column in ATTESTATION_COLUMNS {
        q.push(", ")
            .push(column)
            .push(" = CASE WHEN i.result_memory_id IS NULL THEN d.")
            .push(column)
            .push(" ELSE i.")
            .push(column)
            .push(" END");
    }
    match guard {
        SetGuard::Claim { expired } => {
            q.push(
                " FROM input i WHERE d.id = i.id AND d.state = 'in_progress' \
                 AND d.claim_token = i.token",
            );
            if expired {
                q.push(" AND d.lease_expires_at <= ");
                clock.push_now(&mut q);
            }
        }
        SetGuard::PendingDue { claimed_by } => {
            q.push(", attempts = d.attempts + 1, claim_token = i.token, claimed_by = ")
                .push_bind(claimed_by)
                .push(" FROM input i WHERE d.id = i.id AND d.id IN ");
            push_unlocked(&mut q, |q| {
                q.push("id = ANY(").push_bind(&ids).push("::text[]) AND ");
                push_pending_due(q, clock);
            });
        }
    }
    q.push(" RETURNING d.id, d.result_memory_id, d.updated_at)");
    if !rows.summaries.is_empty() {
        rows.push_summary_inserts(&mut q);
    }
    q.push(" SELECT id FROM job");
    let settled: Vec<String> = match lock_timeout {
        None => q.build_query_scalar().fetch_all(&store.pool).await?,
        Some(limit) => {
            let begin = format!("BEGIN; SET LOCAL lock_timeout = '{}ms'", limit.as_millis());
            let mut tx = store.pool.begin_with(AssertSqlSafe(begin)).await?;
            let settled = q.build_query_scalar().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            settled
        }
    };
    settled
        .iter()
        .map(|id| {
            DecayJobId::parse(id)
                .map_err(|e| StoreError::Validation(format!("settled id {id:?}: {e}")))
        })
        .collect()
}

/// The job's attestation audit columns (issue 11 item 6), in the order of the input arrays.
const ATTESTATION_COLUMNS: [&str; 6] = [
    "attestation_key_id",
    "attestation_signature_hex",
    "attestation_verifying_key_hex",
    "attestation_signed_at",
    "attestation_model_name",
    "attestation_prompt_template_blake3",
];

/// The parallel arrays a settle set binds: one entry per job, then one per summary, then one
/// per supersession edge.
#[derive(Default)]
struct Rows {
    tokens: Vec<Uuid>,
    states: Vec<&'static str>,
    result_memory_ids: Vec<Option<String>>,
    failure_codes: Vec<Option<&'static str>>,
    state_reasons: Vec<Option<String>>,
    attestation_key_ids: Vec<Option<String>>,
    attestation_signatures: Vec<Option<String>>,
    attestation_verifying_keys: Vec<Option<String>>,
    attestation_signed_ats: Vec<Option<String>>,
    attestation_models: Vec<Option<String>>,
    attestation_template_digests: Vec<Option<String>>,
    summaries: Summaries,
    memory_edges: Edges,
    episode_edges: Edges,
}

#[derive(Default)]
struct Summaries {
    memory_ids: Vec<String>,
    claims: Vec<String>,
    source_episodes: Vec<Value>,
    source_events: Vec<Value>,
    domains: Vec<Value>,
    confidences: Vec<f64>,
    authorities: Vec<String>,
    applies_when: Vec<Value>,
}

impl Summaries {
    fn is_empty(&self) -> bool {
        self.memory_ids.is_empty()
    }
}

/// Supersession edges: (summary memory, source) pairs.
#[derive(Default)]
struct Edges {
    summaries: Vec<String>,
    sources: Vec<String>,
}

impl Rows {
    fn push(&mut self, item: &SettleItem<'_>) {
        // A fresh fencing token for a claim made by the settle itself.
        self.tokens.push(item.token.unwrap_or_else(Uuid::new_v4));
        let (state, memory, code, reason) = match item.effect {
            SettleEffect::Summary { memory_id, summary } => {
                self.push_summary(memory_id, summary);
                ("completed", Some(memory_id.to_string()), None, None)
            }
            SettleEffect::NoMemory => ("completed", None, None, None),
            SettleEffect::Failed(f) => (
                "failed",
                None,
                Some(f.invariant.as_str()),
                Some(f.reason.clone()),
            ),
        };
        self.states.push(state);
        self.result_memory_ids.push(memory);
        self.failure_codes.push(code);
        self.state_reasons.push(reason);
        let a = match item.effect {
            SettleEffect::Summary { summary, .. } => summary.attestation.as_ref(),
            _ => None,
        };
        self.attestation_key_ids
            .push(a.map(|a| a.operator_key_id.clone()));
        self.attestation_signatures
            .push(a.map(|a| a.signature_hex.clone()));
        self.attestation_verifying_keys
            .push(a.map(|a| a.operator_verifying_key_hex.clone()));
        self.attestation_signed_ats
            .push(a.map(|a| a.signed_at.clone()));
        self.attestation_models
            .push(a.map(|a| a.model_name.clone()));
        self.attestation_template_digests
            .push(a.map(|a| a.prompt_template_blake3.clone()));
    }

    fn push_summary(&mut self, memory_id: &MemoryId, summary: &Summary) {
        let d = &summary.draft;
        let s = &mut self.summaries;
        s.memory_ids.push(memory_id.to_string());
        s.claims.push(d.claim.clone());
        s.source_episodes.push(d.source_episodes_json.clone());
        s.source_events.push(d.source_events_json.clone());
        s.domains.push(d.domains_json.clone());
        s.confidences.push(d.confidence);
        s.authorities.push(d.authority.clone());
        s.applies_when.push(d.applies_when_json.clone());
        let (edges, sources): (&mut Edges, Vec<String>) = match &summary.edges {
            SummaryEdges::Memories(ids) => (
                &mut self.memory_edges,
                ids.iter().map(ToString::to_string).collect(),
            ),
            SummaryEdges::Episodes(ids) => (
                &mut self.episode_edges,
                ids.iter().map(ToString::to_string).collect(),
            ),
        };
        for source in sources {
            edges.summaries.push(memory_id.to_string());
            edges.sources.push(source);
        }
    }

    /// The summary memories and their supersession edges, inserted only for jobs whose
    /// update matched (`FROM job`).
    fn push_summary_inserts(&self, q: &mut Sql) {
        let s = &self.summaries;
        q.push(", sums AS (SELECT * FROM unnest(")
            .push_bind(&s.memory_ids)
            .push("::text[], ")
            .push_bind(&s.claims)
            .push("::text[], ")
            .push_bind(&s.source_episodes)
            .push("::jsonb[], ")
            .push_bind(&s.source_events)
            .push("::jsonb[], ")
            .push_bind(&s.domains)
            .push("::jsonb[], ")
            .push_bind(&s.confidences)
            .push("::float8[], ")
            .push_bind(&s.authorities)
            .push("::text[], ")
            .push_bind(&s.applies_when)
            .push(
                "::jsonb[]) AS s(memory_id, claim, source_episodes_json, source_events_json, \
                 domains_json, confidence, authority, applies_when_json))",
            )
            .push(INSERT_SUMMARY)
            .push(
                "s.claim, s.source_episodes_json, s.source_events_json, s.domains_json, \
                 '{}'::jsonb, s.confidence, s.authority, s.applies_when_json, '[]'::jsonb, \
                 job.updated_at, job.updated_at, job.id \
                 FROM job JOIN sums s ON s.memory_id = job.result_memory_id RETURNING id)",
            );
        // Duplicate sources (allowed, spec §5.6) give one edge each.
        for (name, table, edges) in [
            (
                "memory_edges",
                "memory_supersessions (source_memory_id",
                &self.memory_edges,
            ),
            (
                "episode_edges",
                "episode_supersessions (source_episode_id",
                &self.episode_edges,
            ),
        ] {
            if edges.sources.is_empty() {
                continue;
            }
            q.push(", ")
                .push(name)
                .push(" AS (INSERT INTO ")
                .push(table)
                .push(
                    ", summary_memory_id, decay_job_id, recorded_at) \
                     SELECT DISTINCT e.source, mem.id, job.id, job.updated_at \
                     FROM job JOIN mem ON mem.id = job.result_memory_id \
                     JOIN unnest(",
                )
                .push_bind(&edges.summaries)
                .push("::text[], ")
                .push_bind(&edges.sources)
                .push(
                    "::text[]) AS e(summary, source) ON e.summary = mem.id \
                     ON CONFLICT DO NOTHING)",
                );
        }
    }
}
