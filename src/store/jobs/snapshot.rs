//! A job with everything its run reads, in one round trip: the row, and for a job that may
//! still run, its existing sources (memories, episodes) or whether its principle exists.
//!
//! The sources travel as JSON built by the query and decode straight into the domain's
//! [`MemorySource`] and [`EpisodeSource`]: the `jsonb_build_object` keys below are their field
//! names, and the only other description of a source's shape.

use std::collections::HashMap;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::FromRow;

use chrono::{DateTime, Utc};

use super::{JOB_COLUMNS, Sql, push_db_now_column};
use crate::decay::JobRecord;
use crate::decay::compress::{EpisodeSource, MemorySource};
use crate::decay::effect::LoadedSources;
use crate::ids::DecayJobId;
use crate::store::{Store, StoreError};

/// The sources of a job that may still run (`pending` or `in_progress`), by kind.
const SOURCES: &str = ",
   CASE WHEN d.state IN ('pending', 'in_progress') AND d.kind = 'candidate_compression' THEN
     (SELECT coalesce(jsonb_agg(jsonb_build_object(
              'id', m.id, 'claim', m.claim,
              'source_episodes_json', m.source_episodes_json,
              'source_events_json', m.source_events_json,
              'domains_json', m.domains_json, 'confidence', m.confidence,
              'authority', m.authority)), '[]'::jsonb)
        FROM memories m
       WHERE m.id IN (SELECT jsonb_array_elements_text(d.source_ids_json)))
   END AS memory_sources,
   CASE WHEN d.state IN ('pending', 'in_progress') AND d.kind = 'episode_compression' THEN
     (SELECT coalesce(jsonb_agg(jsonb_build_object(
              'id', e.id, 'summary', e.summary,
              'source_events_json', e.source_events_json,
              'domains_json', e.domains_json, 'confidence', e.confidence)), '[]'::jsonb)
        FROM episodes e
       WHERE e.id IN (SELECT jsonb_array_elements_text(d.source_ids_json)))
   END AS episode_sources,
   CASE WHEN d.state IN ('pending', 'in_progress') AND d.kind = 'expired_principle_review' THEN
     EXISTS (SELECT 1 FROM principles p WHERE p.id = d.source_ids_json ->> 0)
   END AS principle_exists
 FROM decay_jobs d WHERE d.id = ANY(";

#[derive(FromRow)]
struct SnapshotRow {
    #[sqlx(flatten)]
    record: JobRecord,
    memory_sources: Option<Value>,
    episode_sources: Option<Value>,
    principle_exists: Option<bool>,
    db_now: DateTime<Utc>,
}

/// A job row with what its run reads.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    pub record: JobRecord,
    pub sources: LoadedSources,
    /// The database's clock when the snapshot was read: what "due", "lease live" and an
    /// attestation's freshness are judged against.
    pub now: DateTime<Utc>,
}

impl Store {
    /// Read a job and, when it is pending or running, everything its run needs (sources,
    /// principle), in one round trip. `None` when there is no such job.
    pub async fn read_job_for_run(
        &self,
        id: &DecayJobId,
    ) -> Result<Option<JobSnapshot>, StoreError> {
        Ok(self
            .read_jobs_for_run(std::slice::from_ref(id))
            .await?
            .pop())
    }

    /// [`Store::read_job_for_run`] for a set of jobs, in one round trip (a batch's one read),
    /// every row with the same database instant. Unknown ids are simply absent; the order is
    /// unspecified.
    pub async fn read_jobs_for_run(
        &self,
        ids: &[DecayJobId],
    ) -> Result<Vec<JobSnapshot>, StoreError> {
        let mut q = Sql::new("SELECT ");
        q.push(JOB_COLUMNS);
        push_db_now_column(&mut q, &self.clock);
        q.push(SOURCES)
            .push_bind(ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .push("::text[])");
        let rows = q
            .build_query_as::<SnapshotRow>()
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|raw| {
                Ok(JobSnapshot {
                    now: raw.db_now,
                    record: raw.record,
                    sources: LoadedSources {
                        memories: by_id(raw.memory_sources, |m: &MemorySource| m.id)?,
                        episodes: by_id(raw.episode_sources, |e: &EpisodeSource| e.id)?,
                        principle_exists: raw.principle_exists,
                    },
                })
            })
            .collect()
    }
}

/// Decode a JSON array of sources into a map by id.
fn by_id<T: DeserializeOwned, K: Hash + Eq>(
    json: Option<Value>,
    key: impl Fn(&T) -> K,
) -> Result<Option<HashMap<K, T>>, StoreError> {
    let Some(json) = json else { return Ok(None) };
    let items: Vec<T> = serde_json::from_value(json)
        .map_err(|e| StoreError::Validation(format!("source rows did not decode: {e}")))?;
    Ok(Some(items.into_iter().map(|t| (key(&t), t)).collect()))
}
