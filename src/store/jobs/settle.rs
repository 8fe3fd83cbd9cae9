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
//! The statement is `WITH job AS (UPDATE ... RETURNING ...)`, optionally followed by the
//! memory and edge inserts, which select `FROM job`: when the guard matches no row they insert
//! nothing, so a runner whose claim was lost can never leave an orphan summary.

use uuid::Uuid;

use super::{Sql, push_claim_held, push_pending_due, push_unlocked};
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

impl Store {
    /// Settle a job under `guard` with `effect`, in one statement. Its `updated_at` (and the
    /// summary's and edges' timestamps, which copy it) is the database's clock.
    pub async fn settle(
        &self,
        id: &DecayJobId,
        guard: SettleGuard<'_>,
        effect: &SettleEffect,
    ) -> Result<SettleOutcome, StoreError> {
        let clock = &self.clock;
        let mut q = Sql::new("WITH job AS (UPDATE decay_jobs SET updated_at = ");
        clock.push_now(&mut q);
        q.push(", lease_expires_at = NULL");
        match effect {
            SettleEffect::Summary { memory_id, summary } => {
                let attestation = summary.attestation.as_ref();
                q.push(", state = 'completed', result_memory_id = ")
                    .push_bind(memory_id.to_string())
                    .push(", attestation_key_id = ")
                    .push_bind(attestation.map(|a| a.operator_key_id.as_str()))
                    .push(", attestation_signature_hex = ")
                    .push_bind(attestation.map(|a| a.signature_hex.as_str()))
                    .push(", attestation_verifying_key_hex = ")
                    .push_bind(attestation.map(|a| a.operator_verifying_key_hex.as_str()))
                    .push(", attestation_signed_at = ")
                    .push_bind(attestation.map(|a| a.signed_at.as_str()))
                    .push(", attestation_model_name = ")
                    .push_bind(attestation.map(|a| a.model_name.as_str()))
                    .push(", attestation_prompt_template_blake3 = ")
                    .push_bind(attestation.map(|a| a.prompt_template_blake3.as_str()));
            }
            SettleEffect::NoMemory => {
                q.push(", state = 'completed'");
            }
            SettleEffect::Failed(failure) => {
                q.push(", state = 'failed', failure_code = ")
                    .push_bind(failure.invariant.as_str())
                    .push(", state_reason = ")
                    .push_bind(failure.reason.as_str());
            }
        }
        match guard {
            SettleGuard::Claim(token) => {
                q.push(" WHERE ");
                push_claim_held(&mut q, id, token);
            }
            SettleGuard::ExpiredClaim(token) => {
                q.push(" WHERE ");
                push_claim_held(&mut q, id, token);
                q.push(" AND lease_expires_at <= ");
                clock.push_now(&mut q);
            }
            SettleGuard::PendingDue { claimed_by } => {
                q.push(", attempts = attempts + 1, claim_token = ")
                    .push_bind(Uuid::new_v4())
                    .push(", claimed_by = ")
                    .push_bind(claimed_by)
                    .push(" WHERE id = ");
                push_unlocked(&mut q, |q| {
                    q.push("id = ").push_bind(id.to_string()).push(" AND ");
                    push_pending_due(q, clock);
                });
            }
        }
        q.push(" RETURNING id, result_memory_id, updated_at)");
        if let SettleEffect::Summary { summary, .. } = effect {
            push_summary_inserts(&mut q, summary);
        }
        q.push(" SELECT count(*) FROM job");
        let settled: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(if settled == 1 {
            SettleOutcome::Settled
        } else {
            SettleOutcome::ClaimLost
        })
    }
}

/// The summary memory and its supersession edges, inserted only if the job's update matched.
fn push_summary_inserts(q: &mut Sql, summary: &Summary) {
    let d = &summary.draft;
    q.push(INSERT_SUMMARY)
        .push_bind(&d.claim)
        .push(", ")
        .push_bind(&d.source_episodes_json)
        .push(", ")
        .push_bind(&d.source_events_json)
        .push(", ")
        .push_bind(&d.domains_json)
        .push(", '{}'::jsonb, ")
        .push_bind(d.confidence)
        .push(", ")
        .push_bind(&d.authority)
        .push(", ")
        .push_bind(&d.applies_when_json)
        .push(", '[]'::jsonb, job.updated_at, job.updated_at, job.id FROM job RETURNING id)");
    let (table, ids): (&str, Vec<String>) = match &summary.edges {
        SummaryEdges::Memories(ids) => (
            "memory_supersessions (source_memory_id",
            ids.iter().map(ToString::to_string).collect(),
        ),
        SummaryEdges::Episodes(ids) => (
            "episode_supersessions (source_episode_id",
            ids.iter().map(ToString::to_string).collect(),
        ),
    };
    // Duplicate sources (allowed, spec §5.6) give one edge each.
    q.push(", edges AS (INSERT INTO ")
        .push(table)
        .push(", summary_memory_id, decay_job_id, recorded_at) SELECT DISTINCT s, mem.id, job.id, job.updated_at FROM job, mem, unnest(")
        .push_bind(ids)
        .push("::text[]) AS s ON CONFLICT DO NOTHING)");
}
