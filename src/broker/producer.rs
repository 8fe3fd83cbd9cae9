//! Publishing job ids with publisher confirms, reconnecting once when a session went stale.

use super::{BrokerConfig, BrokerError, Session};
use crate::ids::DecayJobId;
use crate::retry;

/// A lazily connected publisher. A publish either returns `Ok` after the broker confirmed the
/// message to disk, or an error: the caller then knows the job's message may not exist and the
/// job stays `pending` for the reconciler.
pub struct Producer {
    cfg: BrokerConfig,
    name: String,
    session: Option<Session>,
}

impl Producer {
    pub fn new(cfg: BrokerConfig, name: &str) -> Producer {
        Producer {
            cfg,
            name: name.to_string(),
            session: None,
        }
    }

    /// The open session, opening a new one when there is none or the last one died.
    async fn session(&mut self) -> Result<&Session, BrokerError> {
        let session = match self.session.take() {
            Some(s) if s.is_open() => s,
            _ => Session::open(&self.cfg, &self.name).await?,
        };
        Ok(self.session.insert(session))
    }

    /// Publish one job id, confirmed. A publish that fails on a stale session is tried once
    /// more on a new connection, after the retry policy's first reconnect wait.
    pub async fn publish(&mut self, id: &DecayJobId) -> Result<(), BrokerError> {
        let first = match self.session().await?.publish_job(id).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if first.is_permanent() {
            return Err(first);
        }
        let wait = retry::reconnect_delays().next().unwrap_or(retry::MIN_DELAY);
        tracing::warn!(job = %id, error = %super::describe(&first), wait_ms = wait.as_millis() as u64,
            "publish failed; retrying on a new connection");
        if let Some(s) = self.session.take() {
            s.close().await;
        }
        tokio::time::sleep(wait).await;
        self.session().await?.publish_job(id).await
    }

    /// The open session, for callers that need more than a publish on the same lazily
    /// (re)opened connection: the dashboard reads queue depths and requeues dead letters.
    pub async fn connected(&mut self) -> Result<&Session, BrokerError> {
        self.session().await
    }

    pub async fn close(mut self) {
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }
}
