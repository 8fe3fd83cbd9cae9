//! What the two bench binaries (`throughput`, `latency`) share: the runtime around their main
//! function and the clean-up of the topology they declared.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Result;
use decay_worker::broker::Topology;
use decay_worker::telemetry::redact;
use lapin::{Connection, ConnectionProperties};

/// Run a bench's body on a multi-thread runtime: exit 0 when it returns `Ok(true)`, 1 on
/// `Ok(false)` (a target missed) or an error, printed as one redacted line.
pub fn run_main(name: &str, body: impl Future<Output = Result<bool>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(body) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name} bench failed: {}", redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Delete every queue and exchange of the bench's topology, on a connection of its own (the
/// product never deletes its topology, so it has no API for it).
pub async fn delete_topology(url: &str, topo: &Topology) -> Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    for q in topo.queues() {
        channel
            .queue_delete(q.name.as_str().into(), Default::default())
            .await?;
    }
    for x in [topo.exchange().to_string(), topo.dlx()] {
        channel
            .exchange_delete(x.as_str().into(), Default::default())
            .await?;
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}
