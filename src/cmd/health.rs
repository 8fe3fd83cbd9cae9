//! `decay-worker health`: the container health check. It asks the local worker's `/healthz`
//! rather than checking the database or broker itself: the question is whether *this* worker
//! process is alive, and `/readyz` already tells an orchestrator whether it can work.

use super::CliError;
use crate::cli::HealthArgs;

pub async fn run(a: HealthArgs) -> Result<(), CliError> {
    if crate::http::probe(a.http_addr.port()).await {
        Ok(())
    } else {
        Err(CliError::internal(format!(
            "no healthy worker on 127.0.0.1:{}",
            a.http_addr.port()
        )))
    }
}
