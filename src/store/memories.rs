//! Memories, episodes and principles: the supersession lookups of `jobs show`, and inserts
//! for seeding (demo, tests, benchmarks). A run reads its sources through the job snapshot
//! (`jobs::snapshot`) and writes its summary through the settle.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreError};
use crate::decay::JobKind;
use crate::ids::{EpisodeId, MemoryId, PrincipleId};

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

/// Which table a job's source ids name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceTable {
    Memories,
    Episodes,
    Principles,
}

impl SourceTable {
    /// The table of a job kind's sources.
    pub fn of(kind: JobKind) -> SourceTable {
        match kind {
            JobKind::CandidateCompression => SourceTable::Memories,
            JobKind::EpisodeCompression => SourceTable::Episodes,
            JobKind::ExpiredPrincipleReview => SourceTable::Principles,
        }
    }

    /// The table's name, also the word for its rows in messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceTable::Memories => "memories",
            SourceTable::Episodes => "episodes",
            SourceTable::Principles => "principles",
        }
    }
}

impl Store {
    /// The ids among `ids` that name no row of `table`, in the order given: a producer's check
    /// before it schedules a job (the runner still fails closed on a source that disappears
    /// later).
    pub async fn missing_sources(
        &self,
        table: SourceTable,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT x.id FROM unnest($1::text[]) WITH ORDINALITY AS x(id, n)
              WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.id = x.id) ORDER BY x.n",
            table.name()
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Source memories of a summary, ordered by id (spec §3.7).
    pub async fn list_memory_sources_for(
        &self,
        summary: &MemoryId,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT source_memory_id FROM memory_supersessions
              WHERE summary_memory_id = $1 ORDER BY source_memory_id",
        )
        .bind(summary.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Source episodes of a summary, ordered by id (spec §3.7).
    pub async fn list_episode_sources_for(
        &self,
        summary: &MemoryId,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT source_episode_id FROM episode_supersessions
              WHERE summary_memory_id = $1 ORDER BY source_episode_id",
        )
        .bind(summary.to_string())
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
