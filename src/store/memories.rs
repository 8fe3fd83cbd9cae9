//! Memories, episodes and principles: the reads the decay path needs, the supersession
//! lookups, and inserts for seeding (demo, tests, benchmarks).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::FromRow;

use super::{Store, StoreError};
use crate::decay::compress::{EpisodeSource, MemorySource};
use crate::ids::{EpisodeId, MemoryId, PrincipleId};

/// A full memory row (the columns the decay path reads and writes).
#[derive(Debug, Clone, PartialEq, FromRow, serde::Serialize)]
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

/// A memory to insert (seeding).
#[derive(Debug, Clone)]
pub struct NewMemory {
    pub id: MemoryId,
    pub memory_type: String,
    pub status: String,
    pub claim: String,
    pub source_episodes_json: Value,
    pub source_events_json: Value,
    pub domains_json: Value,
    pub confidence: f64,
    pub authority: String,
    pub created_at: DateTime<Utc>,
}

/// An episode to insert (seeding).
#[derive(Debug, Clone)]
pub struct NewEpisode {
    pub id: EpisodeId,
    pub trace_id: String,
    pub summary: String,
    pub source_events_json: Value,
    pub domains_json: Value,
    pub confidence: f64,
}

/// A principle to insert (seeding).
#[derive(Debug, Clone)]
pub struct NewPrinciple {
    pub id: PrincipleId,
    pub statement: String,
    pub waiver_expires_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct MemorySourceRow {
    id: String,
    claim: String,
    source_episodes_json: Value,
    source_events_json: Value,
    domains_json: Value,
    confidence: f64,
    authority: String,
}

#[derive(FromRow)]
struct EpisodeSourceRow {
    id: String,
    summary: String,
    source_events_json: Value,
    domains_json: Value,
    confidence: f64,
}

impl Store {
    /// Load the memories named by `ids`, in list order (duplicates repeated), with one query.
    /// `Err(id)` names the first missing one in list order.
    pub async fn load_memory_sources(
        &self,
        ids: &[MemoryId],
    ) -> Result<Result<Vec<MemorySource>, MemoryId>, StoreError> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows: Vec<MemorySourceRow> = sqlx::query_as(
            "SELECT id, claim, source_episodes_json, source_events_json, domains_json,
                    confidence, authority
               FROM memories WHERE id = ANY($1)",
        )
        .bind(&keys)
        .fetch_all(&self.pool)
        .await?;
        let by_id: HashMap<String, MemorySourceRow> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, key) in ids.iter().zip(&keys) {
            let Some(r) = by_id.get(key) else {
                return Ok(Err(*id));
            };
            out.push(MemorySource {
                id: *id,
                claim: r.claim.clone(),
                source_episodes_json: r.source_episodes_json.clone(),
                source_events_json: r.source_events_json.clone(),
                domains_json: r.domains_json.clone(),
                confidence: r.confidence,
                authority: r.authority.clone(),
            });
        }
        Ok(Ok(out))
    }

    /// Load the episodes named by `ids`, in list order, with one query. `Err(id)` names the
    /// first missing one.
    pub async fn load_episode_sources(
        &self,
        ids: &[EpisodeId],
    ) -> Result<Result<Vec<EpisodeSource>, EpisodeId>, StoreError> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows: Vec<EpisodeSourceRow> = sqlx::query_as(
            "SELECT id, summary, source_events_json, domains_json, confidence
               FROM episodes WHERE id = ANY($1)",
        )
        .bind(&keys)
        .fetch_all(&self.pool)
        .await?;
        let by_id: HashMap<String, EpisodeSourceRow> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, key) in ids.iter().zip(&keys) {
            let Some(r) = by_id.get(key) else {
                return Ok(Err(*id));
            };
            out.push(EpisodeSource {
                id: *id,
                summary: r.summary.clone(),
                source_events_json: r.source_events_json.clone(),
                domains_json: r.domains_json.clone(),
                confidence: r.confidence,
            });
        }
        Ok(Ok(out))
    }

    /// Read one memory.
    pub async fn read_memory(&self, id: &str) -> Result<Option<MemoryRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, memory_type, status, claim, source_episodes_json, source_events_json,
                    domains_json, salience_json, confidence, authority, applies_when_json,
                    does_not_apply_when_json, created_at, updated_at, produced_by_job_id
               FROM memories WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Number of summary memories written by a job (0 or 1 by construction).
    pub async fn count_summaries_of_job(&self, job_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE produced_by_job_id = $1")
                .bind(job_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Number of supersession edges (memory and episode) tagged with a job.
    pub async fn count_edges_of_job(&self, job_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM memory_supersessions WHERE decay_job_id = $1)
                  + (SELECT count(*) FROM episode_supersessions WHERE decay_job_id = $1)",
        )
        .bind(job_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Source memories of a summary, ordered by id (spec §3.7).
    pub async fn list_memory_sources_for(&self, summary: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT source_memory_id FROM memory_supersessions
              WHERE summary_memory_id = $1 ORDER BY source_memory_id",
        )
        .bind(summary)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Source episodes of a summary, ordered by id (spec §3.7).
    pub async fn list_episode_sources_for(&self, summary: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT source_episode_id FROM episode_supersessions
              WHERE summary_memory_id = $1 ORDER BY source_episode_id",
        )
        .bind(summary)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Insert a memory (seeding). The lineage rule is enforced by the database.
    pub async fn insert_memory(&self, m: &NewMemory) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO memories (id, memory_type, status, claim, source_episodes_json,
                    source_events_json, domains_json, confidence, authority, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(m.id.to_string())
        .bind(&m.memory_type)
        .bind(&m.status)
        .bind(&m.claim)
        .bind(&m.source_episodes_json)
        .bind(&m.source_events_json)
        .bind(&m.domains_json)
        .bind(m.confidence)
        .bind(&m.authority)
        .bind(m.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Insert an episode (seeding).
    pub async fn insert_episode(&self, e: &NewEpisode) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO episodes (id, trace_id, source_events_json, summary, domains_json, confidence)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.id.to_string())
        .bind(&e.trace_id)
        .bind(&e.source_events_json)
        .bind(&e.summary)
        .bind(&e.domains_json)
        .bind(e.confidence)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Insert a principle (seeding).
    pub async fn insert_principle(&self, p: &NewPrinciple) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO principles (id, statement, waiver_expires_at) VALUES ($1, $2, $3)",
        )
        .bind(p.id.to_string())
        .bind(&p.statement)
        .bind(p.waiver_expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
