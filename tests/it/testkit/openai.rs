//! A slow OpenAI-compatible server for worker tests: it takes chat completions and holds every
//! answer until the test releases them, so the test decides when LLM jobs are in flight and
//! when they may finish. It speaks just enough HTTP/1.1 for the product's client: one request
//! per connection, answered with `connection: close`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use decay_worker::decay::{JobKind, SummaryMethod};
use decay_worker::ids::DecayJobId;
use decay_worker::llm::openai::openai_prompt_template_digest;
use decay_worker::store::Store;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest request the server reads (a summary request is a few kilobytes).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// A due LLM-summary job over new agent memories holding `claims`, with the test operator's
/// envelope for it (pinning `model` and the OpenAI backend's prompt template) placed in the
/// attestation directory `dir`, where a worker started with `--attestation-dir` finds it.
pub async fn attested_openai_job(
    store: &Store,
    claims: &[impl AsRef<str>],
    model: &str,
    dir: &Path,
) -> DecayJobId {
    let mut sources = Vec::new();
    for c in claims {
        sources.push(
            crate::testkit::memory(store, c.as_ref(), 0.8, "agent")
                .await
                .to_string(),
        );
    }
    let id = crate::testkit::job_at(
        store,
        JobKind::CandidateCompression,
        SummaryMethod::LlmSummary,
        sources,
        Utc::now(),
    )
    .await;
    crate::testkit::attest::place_envelope(
        dir,
        &crate::testkit::attest::sign_for(&id, model, &openai_prompt_template_digest()),
    );
    id
}

pub struct HeldOpenAi {
    /// What to pass as `--openai-base-url`.
    pub base_url: String,
    /// The user message of every request received so far, in arrival order. A request is
    /// recorded once fully read, before it is held.
    received: Arc<Mutex<Vec<String>>>,
    /// How many held requests the client gave up on (closed its connection before the answer).
    dropped: Arc<AtomicUsize>,
    /// Turns true once: every held request (and every later one) is answered.
    release: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HeldOpenAi {
    /// Listen on a free local port.
    pub async fn start() -> HeldOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = watch::channel(false);
        let dropped = Arc::new(AtomicUsize::new(0));
        let seen = received.clone();
        let gone = dropped.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, seen.clone(), gone.clone(), released.clone()));
            }
        });
        HeldOpenAi {
            base_url,
            received,
            dropped,
            release,
            task,
        }
    }

    /// The user messages received so far (held or answered).
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// How many held requests were abandoned by the client (its connection closed while the
    /// answer was held): a call the product cancelled.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Answer every held request, and every later one at once.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    /// The arguments of a worker that summarises with this server under `model`, trusting the
    /// test operator's keys file `keys` and reading envelopes from `attestations`, followed by
    /// `extra`.
    pub fn worker_args<'a>(
        &'a self,
        model: &'a str,
        keys: &'a Path,
        attestations: &'a Path,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec![
            "--summary-backend",
            "openai",
            "--openai-base-url",
            &self.base_url,
            "--openai-models",
            model,
            "--trusted-operator-keys",
            keys.to_str().unwrap(),
            "--attestation-dir",
            attestations.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args
    }
}

impl Drop for HeldOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The summary the server answers for a user message: deterministic, so a test can check
/// which answer a job stored.
pub fn summary_of(user_message: &str) -> String {
    format!("held summary of: {}", user_message.replace('\n', " "))
}

/// Read one request, record its user message, wait for the release, answer.
async fn answer(
    mut stream: TcpStream,
    received: Arc<Mutex<Vec<String>>>,
    dropped: Arc<AtomicUsize>,
    mut released: watch::Receiver<bool>,
) {
    let Some(body) = read_request(&mut stream).await else {
        return;
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let user = request["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    received.lock().unwrap().push(user.clone());
    // Hold until released, watching the connection: the client sends nothing more on it, so
    // a read that ends (EOF or error) means the client dropped the call.
    let mut probe = [0u8; 1];
    tokio::select! {
        r = released.wait_for(|r| *r) => if r.is_err() { return },
        _ = stream.read(&mut probe) => {
            dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
    let reply = json!({
        "id": "chatcmpl-held",
        "object": "chat.completion",
        "model": request["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": summary_of(&user)},
            "finish_reason": "stop"
        }]
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The body of one request (its `content-length` bytes after the head); `None` if the
/// connection ends first or the request is too large.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(buf[end + 4..end + 4 + length].to_vec());
            }
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
