//! Inserting a job: the reference's validation (spec §3.4) and ours, then one `INSERT`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Sql;
use crate::decay::{JobKind, SummaryMethod, convert_sources, is_blank};
use crate::ids::DecayJobId;
use crate::store::{Store, StoreError};

/// A job to insert. Raw wire strings, validated by [`Store::insert_job`] in the reference's
/// order (spec §3.4) and then strictly (canonical ids of the right type, no duplicates,
/// exactly one principle), so no row the runner cannot convert ever enters the table.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: DecayJobId,
    pub kind: String,
    pub summary_method: String,
    pub source_ids_json: Value,
    pub scheduled_for: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl NewJob {
    /// A typed job with a fresh id.
    pub fn new(
        kind: JobKind,
        method: SummaryMethod,
        source_ids: Vec<String>,
        scheduled_for: DateTime<Utc>,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> NewJob {
        NewJob {
            id: DecayJobId::new(),
            kind: kind.wire().to_string(),
            summary_method: method.wire().to_string(),
            source_ids_json: Value::from(source_ids),
            scheduled_for,
            created_by: created_by.to_string(),
            created_at: now,
        }
    }

    /// Spec §3.4 validation (first failure wins), then our strict checks.
    pub fn validate(&self) -> Result<(), StoreError> {
        let fail = |m: String| Err(StoreError::Validation(m));
        if is_blank(&self.created_by) {
            return fail("decay job created_by must not be empty".into());
        }
        let Some(kind) = JobKind::from_wire(&self.kind) else {
            return fail(format!("invalid decay job kind wire `{}`", self.kind));
        };
        let Some(method) = SummaryMethod::from_wire(&self.summary_method) else {
            return fail(format!(
                "invalid decay job summary method wire `{}`",
                self.summary_method
            ));
        };
        match (kind, method) {
            (JobKind::ExpiredPrincipleReview, m) if m != SummaryMethod::None => {
                return fail(format!(
                    "expired_principle_review decay job must carry summary_method='none', got '{}'",
                    self.summary_method
                ));
            }
            (k, SummaryMethod::None) if k != JobKind::ExpiredPrincipleReview => {
                return fail(format!(
                    "decay job kind `{}` must carry a summary method (not 'none')",
                    self.kind
                ));
            }
            _ => {}
        }
        let Some(arr) = self.source_ids_json.as_array() else {
            return fail("decay job source_ids_json must be a JSON array".into());
        };
        if arr.is_empty() {
            return fail("decay job source_ids_json must contain at least one id".into());
        }
        if arr.iter().any(|v| !v.is_string()) {
            return fail("decay job source_ids_json entries must all be strings".into());
        }
        // Ours (spec §11.5, §11.13): ids canonical and of the right type, one principle.
        convert_sources(&self.kind, &self.summary_method, &self.source_ids_json)
            .map_err(|e| StoreError::Validation(e.to_string()))?;
        let mut seen = HashSet::new();
        for id in arr.iter().filter_map(Value::as_str) {
            if !seen.insert(id) {
                return fail(format!(
                    "decay job source_ids_json must not contain duplicate id `{id}`"
                ));
            }
        }
        Ok(())
    }
}

impl Store {
    /// Insert a new `pending` job after validating it.
    pub async fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.insert(job, false).await
    }

    /// Insert a new `pending` job whose message the caller publishes next, already marked
    /// published (`last_published_at`, by the store's clock): one statement instead of an
    /// insert and a [`Store::mark_published`], and, like it, done before the message exists.
    pub async fn insert_job_to_publish(&self, job: &NewJob) -> Result<(), StoreError> {
        self.insert(job, true).await
    }

    async fn insert(&self, job: &NewJob, published: bool) -> Result<(), StoreError> {
        job.validate()?;
        let mut q = Sql::new(
            "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state,
                 scheduled_for, created_at, created_by, updated_at, last_published_at) VALUES (",
        );
        q.push_bind(job.id.to_string())
            .push(", ")
            .push_bind(&job.kind)
            .push(", ")
            .push_bind(&job.summary_method)
            .push(", ")
            .push_bind(&job.source_ids_json)
            .push(", 'pending', ")
            .push_bind(job.scheduled_for)
            .push(", ")
            .push_bind(job.created_at)
            .push(", ")
            .push_bind(&job.created_by)
            .push(", ")
            .push_bind(job.created_at)
            .push(", ");
        if published {
            self.clock.push_now(&mut q);
        } else {
            q.push("NULL");
        }
        q.push(")");
        q.build().execute(&self.pool).await?;
        Ok(())
    }
}
