//! Worker processes: spawned, watched, stopped.

use crate::*;

pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) port: Option<u16>,
}

impl Worker {
    /// The worker's HTTP port, from its `http listening` log line.
    pub(crate) fn http_port(&mut self) -> Option<u16> {
        if self.port.is_none() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            self.port = text
                .split("addr=127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok());
        }
        self.port
    }

    /// GET /metrics like a Prometheus scrape; returns the body size.
    pub(crate) async fn scrape(&mut self) -> Result<usize> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.http_port().context("http port not logged yet")?;
        let get = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
                .await?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out.len())
        };
        Ok(tokio::time::timeout(Duration::from_secs(5), get)
            .await
            .context("scrape timed out")??)
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// SIGTERM every worker, wait for each (SIGKILL after 30 s). Returns one note per worker that
/// did not exit cleanly.
pub(crate) async fn stop_workers(workers: &mut Vec<Worker>) -> Vec<String> {
    let mut problems = Vec::new();
    for w in workers.iter() {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(w.pid.to_string())
            .status()
            .await;
        if !sent.is_ok_and(|s| s.success()) {
            problems.push(format!("{}: could not send SIGTERM", w.name));
        }
    }
    for w in workers.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), w.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => problems.push(format!("{} exited with {status}", w.name)),
            Ok(Err(e)) => problems.push(format!("{}: wait failed: {e}", w.name)),
            Err(_) => {
                let _ = w.child.kill().await;
                problems.push(format!("{} ignored SIGTERM for 30 s; killed", w.name));
            }
        }
    }
    workers.clear();
    problems
}

pub(crate) fn count_warn_lines(workers: &[Worker]) -> usize {
    workers
        .iter()
        .map(|w| {
            std::fs::read_to_string(&w.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .count()
        })
        .sum()
}
