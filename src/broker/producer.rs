//! Publishing job ids with publisher confirms, reconnecting once when a session went stale.

use super::{BrokerConfig, BrokerError, Session};
use crate::ids::DecayJobId;

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

    async fn session(&mut self) -> Result<&Session, BrokerError> {
        if self.session.as_ref().is_some_and(|s| !s.is_open()) {
            self.session = None;
        }
        if self.session.is_none() {
            self.session = Some(Session::open(&self.cfg, &self.name).await?);
        }
        self.session
            .as_ref()
            .ok_or_else(|| BrokerError::Url("no session".into()))
    }

    /// Publish one job id, confirmed. A failure on a stale session is retried once on a new one.
    pub async fn publish(&mut self, id: &DecayJobId) -> Result<(), BrokerError> {
        match self.session().await?.publish_job(id).await {
            Ok(()) => Ok(()),
            Err(first) => {
                tracing::warn!(job = %id, error = %super::describe(&first), "publish failed; retrying on a new connection");
                if let Some(s) = self.session.take() {
                    s.close().await;
                }
                self.session().await?.publish_job(id).await
            }
        }
    }

    /// The open session, if any (for maintenance commands).
    pub async fn connected(&mut self) -> Result<&Session, BrokerError> {
        self.session().await
    }

    pub async fn close(mut self) {
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }
}
