use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;

const MODEL: &str = "qwen2.5-7b-instruct@rev-1";
const KEY: &str = "sk-test-0123456789";

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Captured {
    request_line: String,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug, Clone)]
enum Reply {
    /// Read the request, answer with this status and body, close.
    Respond { status: u16, body: String },
    /// Read the request and never answer.
    Hang,
}

/// A real HTTP/1.1 server on 127.0.0.1:0 that records every connection and request.
struct TestServer {
    base_url: String,
    connections: Arc<AtomicUsize>,
    captured: Arc<Mutex<Vec<Captured>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let (conns, caps) = (connections.clone(), captured.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, reply.clone(), caps.clone()));
            }
        });
        TestServer {
            base_url: format!("http://{addr}/v1"),
            connections,
            captured,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, reply: Reply, captured: Arc<Mutex<Vec<Captured>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    captured.lock().unwrap().push(Captured {
        request_line,
        headers,
        body,
    });
    match reply {
        Reply::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Reply::Respond { status, body } => {
            let reason = if status == 200 { "OK" } else { "Test Status" };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

fn completion(model: Option<&str>, content: &str) -> String {
    let mut body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 57, "completion_tokens": 9, "total_tokens": 66}
    });
    if let Some(model) = model {
        body["model"] = json!(model);
    }
    body.to_string()
}

fn ok(body: String) -> Reply {
    Reply::Respond { status: 200, body }
}

fn config(server: &TestServer) -> OpenAiConfig {
    OpenAiConfig {
        base_url: server.base_url.clone(),
        api_key: Some(KEY.into()),
        model_allowlist: vec!["other-model@1".into(), MODEL.into()],
        timeout: Duration::from_secs(10),
        max_tokens: 256,
    }
}

fn request() -> SummaryRequest {
    SummaryRequest {
        model_name: MODEL.into(),
        prompt_template_blake3: openai_prompt_template_digest(),
        source_claims: vec![
            "alpha holds".into(),
            "beta holds".into(),
            "alpha holds".into(),
        ],
        max_output_bytes: Some(4096),
        decay_job_id: Some("dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV".into()),
    }
}

async fn run(reply: Reply, request: &SummaryRequest) -> Result<SummaryResponse, SummaryError> {
    let server = TestServer::start(reply).await;
    OpenAiBackend::new(config(&server))
        .unwrap()
        .summarize(request)
        .await
}

fn call_failed(result: Result<SummaryResponse, SummaryError>) -> String {
    match result {
        Err(SummaryError::CallFailed(detail)) => detail,
        other => panic!("expected CallFailed, got {other:?}"),
    }
}

fn output_failed(result: Result<SummaryResponse, SummaryError>) -> String {
    match result {
        Err(SummaryError::OutputValidationFailed(detail)) => detail,
        other => panic!("expected OutputValidationFailed, got {other:?}"),
    }
}

#[test]
fn template_digest_is_pinned() {
    // Operators sign this value; changing the template must be a deliberate act.
    assert_eq!(
        openai_prompt_template_digest(),
        "blake3:8b51fa1cfe68398660b50990e3de28d52542a957ce38f81cdc7a2a6b6dbdda26"
    );
    assert_eq!(
        openai_prompt_template_digest(),
        format!(
            "blake3:{}",
            blake3::hash(OPENAI_PROMPT_TEMPLATE.as_bytes()).to_hex()
        )
    );
}

#[test]
fn user_message_is_dash_lines() {
    let claims = vec!["a".to_owned(), "b c".to_owned(), "a".to_owned()];
    assert_eq!(openai_user_message(&claims), "- a\n- b c\n- a");
    assert_eq!(openai_user_message(&["only".to_owned()]), "- only");
}

#[tokio::test]
async fn success_posts_chat_completion_and_returns_the_answer() {
    let server = TestServer::start(ok(completion(Some(MODEL), "Alpha and beta hold."))).await;
    let backend = OpenAiBackend::new(config(&server)).unwrap();
    assert_eq!(backend.name(), "openai");
    assert_eq!(
        backend.endpoint(),
        format!("{}/chat/completions", server.base_url)
    );
    let backend: Arc<dyn SummaryBackend> = Arc::new(backend);
    let response = backend.summarize(&request()).await.unwrap();
    assert_eq!(
        response,
        SummaryResponse {
            claim: "Alpha and beta hold.".into(),
            token_usage: Some(TokenUsage {
                prompt_tokens: 57,
                completion_tokens: 9
            }),
            model_name_echoed: MODEL.into(),
        }
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    assert_eq!(seen.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let body = seen.json();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["temperature"].as_f64(), Some(0.0));
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": OPENAI_PROMPT_TEMPLATE},
            {"role": "user", "content": "- alpha holds\n- beta holds\n- alpha holds"},
        ])
    );
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
}

#[tokio::test]
async fn no_key_sends_no_authorization_and_claim_is_verbatim() {
    let server = TestServer::start(ok(completion(Some(MODEL), "  padded\n"))).await;
    let cfg = OpenAiConfig {
        api_key: None,
        base_url: format!("{}/", server.base_url),
        ..config(&server)
    };
    let response = OpenAiBackend::new(cfg)
        .unwrap()
        .summarize(&request())
        .await
        .unwrap();
    assert_eq!(response.claim, "  padded\n");
    let requests = server.requests();
    assert_eq!(
        requests[0].request_line,
        "POST /v1/chat/completions HTTP/1.1"
    );
    assert_eq!(requests[0].header("authorization"), None);
}

#[tokio::test]
async fn usage_is_optional_and_lenient() {
    let body = json!({
        "model": MODEL,
        "choices": [{"message": {"content": "s"}}],
    });
    let response = run(ok(body.to_string()), &request()).await.unwrap();
    assert_eq!(response.token_usage, None);
    let body = json!({
        "model": MODEL,
        "choices": [{"message": {"content": "s"}}],
        "usage": {"prompt_tokens": 5_000_000_000u64, "completion_tokens": 1},
    });
    let response = run(ok(body.to_string()), &request()).await.unwrap();
    assert_eq!(response.token_usage, None);
}

#[tokio::test]
async fn timeout_is_call_failed() {
    let server = TestServer::start(Reply::Hang).await;
    let cfg = OpenAiConfig {
        timeout: Duration::from_millis(300),
        ..config(&server)
    };
    let backend = OpenAiBackend::new(cfg).unwrap();
    let started = Instant::now();
    let result = backend.summarize(&request()).await;
    let elapsed = started.elapsed();
    let detail = call_failed(result.clone());
    assert!(detail.starts_with("timed out after 300 ms"), "{detail}");
    assert!(
        result
            .unwrap_err()
            .to_string()
            .starts_with("summary_call_failed: timed out after 300 ms")
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        server.requests().len(),
        1,
        "the request did reach the server"
    );
}

#[tokio::test]
async fn http_500_is_call_failed_with_status_and_excerpt() {
    let reply = Reply::Respond {
        status: 500,
        body: format!(
            "{{\"error\":{{\"message\":\"CUDA out of memory\"}}}}\n{}",
            "x".repeat(1000)
        ),
    };
    let detail = call_failed(run(reply, &request()).await);
    assert!(
        detail.starts_with("HTTP 500 Internal Server Error from http://127.0.0.1:"),
        "{detail}"
    );
    assert!(detail.contains("CUDA out of memory"), "{detail}");
    assert!(detail.ends_with('…'), "{detail}");
    assert!(detail.len() < 400, "excerpt is short: {}", detail.len());
    assert!(!detail.contains('\n'));
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let reply = Reply::Respond {
        status: 307,
        body: String::new(),
    };
    let detail = call_failed(run(reply, &request()).await);
    assert!(detail.starts_with("HTTP 307"), "{detail}");
    assert!(detail.ends_with("<empty body>"), "{detail}");
}

#[tokio::test]
async fn unparseable_body_is_call_failed() {
    for body in [
        "not json".to_owned(),
        json!({"error": {"message": "bad model"}}).to_string(),
        json!({"model": 7, "choices": []}).to_string(),
    ] {
        let detail = call_failed(run(ok(body.clone()), &request()).await);
        assert!(
            detail.starts_with("response is not a chat completion"),
            "{body}: {detail}"
        );
    }
}

#[tokio::test]
async fn connection_refused_is_call_failed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = OpenAiConfig {
        base_url: format!("http://{addr}/v1"),
        api_key: None,
        model_allowlist: vec![MODEL.into()],
        ..OpenAiConfig::default()
    };
    let detail = call_failed(OpenAiBackend::new(cfg).unwrap().summarize(&request()).await);
    assert!(detail.starts_with("request failed: "), "{detail}");
}

#[tokio::test]
async fn empty_output_is_output_validation_failed() {
    for content in ["", "   \n\t "] {
        let detail = output_failed(run(ok(completion(Some(MODEL), content)), &request()).await);
        assert_eq!(detail, "empty summary output");
    }
    let null_content = json!({"model": MODEL, "choices": [{"message": {"content": null}}]});
    let detail = output_failed(run(ok(null_content.to_string()), &request()).await);
    assert_eq!(detail, "empty summary output");
    let no_choices = json!({"model": MODEL, "choices": []});
    let detail = output_failed(run(ok(no_choices.to_string()), &request()).await);
    assert_eq!(detail, "response has no choices");
    let err = run(ok(completion(Some(MODEL), "")), &request())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "summary_output_validation_failed: empty summary output"
    );
}

#[tokio::test]
async fn over_budget_output_is_output_validation_failed() {
    // Exactly at the 4096 cap is accepted; one byte more is not.
    let at_cap = "é".repeat(2048);
    assert_eq!(at_cap.len(), 4096);
    let response = run(ok(completion(Some(MODEL), &at_cap)), &request())
        .await
        .unwrap();
    assert_eq!(response.claim, at_cap);

    let over = format!("{at_cap}x");
    let detail = output_failed(run(ok(completion(Some(MODEL), &over)), &request()).await);
    assert_eq!(
        detail,
        "summary output of 4097 bytes exceeds the budget of 4096 bytes"
    );

    // The request may lower the budget, never raise it above 4096; absent means 4096.
    let mut small = request();
    small.max_output_bytes = Some(10);
    let detail = output_failed(run(ok(completion(Some(MODEL), "eleven byte")), &small).await);
    assert_eq!(
        detail,
        "summary output of 11 bytes exceeds the budget of 10 bytes"
    );
    let mut large = request();
    large.max_output_bytes = Some(u32::MAX);
    let detail = output_failed(run(ok(completion(Some(MODEL), &over)), &large).await);
    assert_eq!(
        detail,
        "summary output of 4097 bytes exceeds the budget of 4096 bytes"
    );
    let mut absent = request();
    absent.max_output_bytes = None;
    let detail = output_failed(run(ok(completion(Some(MODEL), &over)), &absent).await);
    assert_eq!(
        detail,
        "summary output of 4097 bytes exceeds the budget of 4096 bytes"
    );
}

#[tokio::test]
async fn truncated_output_is_output_validation_failed() {
    let body = json!({
        "model": MODEL,
        "choices": [{"message": {"content": "Alpha and"}, "finish_reason": "length"}],
    });
    let detail = output_failed(run(ok(body.to_string()), &request()).await);
    assert_eq!(
        detail,
        "summary output was cut off by max_tokens (finish_reason `length`)"
    );
}

#[tokio::test]
async fn echoed_model_is_passed_through_unchanged() {
    // A different model answered: reported as is, for the job path's echo check to refuse.
    let response = run(ok(completion(Some("qwen2.5-7b-instruct"), "s")), &request())
        .await
        .unwrap();
    assert_eq!(response.model_name_echoed, "qwen2.5-7b-instruct");
    assert_ne!(response.model_name_echoed, MODEL);

    // Byte-exact: no trimming or case folding.
    let odd = format!(" {} ", MODEL.to_uppercase());
    let response = run(ok(completion(Some(&odd), "s")), &request())
        .await
        .unwrap();
    assert_eq!(response.model_name_echoed, odd);

    // Missing or null: empty, never the requested name.
    let response = run(ok(completion(None, "s")), &request()).await.unwrap();
    assert_eq!(response.model_name_echoed, "");
    let null_model = json!({"model": null, "choices": [{"message": {"content": "s"}}]});
    let response = run(ok(null_model.to_string()), &request()).await.unwrap();
    assert_eq!(response.model_name_echoed, "");
}

#[tokio::test]
async fn model_not_in_allowlist_is_refused_without_a_call() {
    let server = TestServer::start(ok(completion(Some(MODEL), "s"))).await;
    let backend = OpenAiBackend::new(config(&server)).unwrap();
    for model in [
        "gpt-4o",
        "",
        "QWEN2.5-7B-INSTRUCT@REV-1",
        "qwen2.5-7b-instruct@rev-1 ",
    ] {
        let mut req = request();
        req.model_name = model.into();
        let err = backend.summarize(&req).await.unwrap_err();
        assert_eq!(err, SummaryError::ModelNotInAllowlist(model.into()));
        assert_eq!(
            err.to_string(),
            format!("summary_model_not_in_allowlist: {model}")
        );
    }
    // Let any stray connection land before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn template_mismatch_is_refused_without_a_call() {
    let server = TestServer::start(ok(completion(Some(MODEL), "s"))).await;
    let backend = OpenAiBackend::new(config(&server)).unwrap();
    let ours = openai_prompt_template_digest();
    let other = prompt_template_digest(b"some other template");
    for digest in [
        other.clone(),
        ours.to_uppercase(),
        "blake3:".into(),
        String::new(),
    ] {
        let mut req = request();
        req.prompt_template_blake3 = digest.clone();
        let err = backend.summarize(&req).await.unwrap_err();
        assert_eq!(
            err,
            SummaryError::PromptTemplateMismatch(format!(
                "request pinned `{digest}` but this backend's template is `{ours}`"
            ))
        );
        assert!(
            err.to_string()
                .starts_with("summary_prompt_template_mismatch: ")
        );
    }
    // The allowlist is checked first.
    let mut req = request();
    req.model_name = "gpt-4o".into();
    req.prompt_template_blake3 = other;
    assert_eq!(
        backend.summarize(&req).await,
        Err(SummaryError::ModelNotInAllowlist("gpt-4o".into()))
    );
    // No claims: refused without a call too.
    let mut req = request();
    req.source_claims.clear();
    call_failed(backend.summarize(&req).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0);
}

fn refused(cfg: OpenAiConfig) -> String {
    match OpenAiBackend::new(cfg) {
        Err(SummaryError::CallFailed(detail)) => {
            assert!(
                detail.starts_with("openai backend configuration: "),
                "{detail}"
            );
            detail
        }
        other => panic!("expected CallFailed, got {other:?}"),
    }
}

fn valid_cfg() -> OpenAiConfig {
    OpenAiConfig {
        model_allowlist: vec![MODEL.into()],
        ..OpenAiConfig::default()
    }
}

#[test]
fn default_config_values() {
    let cfg = OpenAiConfig::default();
    assert_eq!(cfg.base_url, "http://127.0.0.1:8000/v1");
    assert_eq!(cfg.api_key, None);
    assert!(cfg.model_allowlist.is_empty());
    assert_eq!(cfg.timeout, Duration::from_secs(60));
    assert_eq!(cfg.max_tokens, 1024);
    // The default has no models, so it is refused until an operator names some.
    assert!(refused(cfg).contains("model_allowlist is empty"));
    assert!(OpenAiBackend::new(valid_cfg()).is_ok());
}

#[test]
fn construction_refusals() {
    let with = |f: fn(&mut OpenAiConfig)| {
        let mut cfg = valid_cfg();
        f(&mut cfg);
        refused(cfg)
    };
    assert!(with(|c| c.model_allowlist = vec!["llama3:latest".into()]).contains("`latest`"));
    assert!(
        with(|c| c.model_allowlist = vec![MODEL.into(), "Model-LATEST".into()])
            .contains("`latest`")
    );
    assert!(with(|c| c.model_allowlist = vec![" ".into()]).contains("blank model name"));
    assert!(with(|c| c.base_url = "ftp://127.0.0.1/v1".into()).contains("must use http or https"));
    assert!(with(|c| c.base_url = "file:///tmp/x".into()).contains("must use http or https"));
    assert!(with(|c| c.base_url = "127.0.0.1:8000/v1".into()).contains("base_url"));
    assert!(with(|c| c.base_url = "not a url".into()).contains("does not parse"));
    assert!(with(|c| c.base_url = String::new()).contains("does not parse"));
    assert!(with(|c| c.base_url = "http://127.0.0.1/v1?x=1".into()).contains("query or fragment"));
    let creds = with(|c| c.base_url = "https://user:hunter2@example.com/v1".into());
    assert!(
        creds.contains("credentials") && !creds.contains("hunter2"),
        "{creds}"
    );
    // A key in the query is refused, and the refusal quotes the URL without it.
    for url in [
        "https://api.example/v1?api-key=SEKRIT",
        "https://api.example/v1?apikey=SEKRIT&x=1",
        "https://api.example/v1?token=SEKRIT",
        "https://u:SEKRIT@api.example/v1?key=SEKRIT",
    ] {
        let mut cfg = valid_cfg();
        cfg.base_url = url.into();
        let e = refused(cfg);
        assert!(!e.contains("SEKRIT"), "{url}: {e}");
        assert!(e.contains("base_url"), "{url}: {e}");
    }
    let shown = format!(
        "{:?}",
        OpenAiConfig {
            base_url: "https://api.example/v1?api-key=SEKRIT".into(),
            ..OpenAiConfig::default()
        }
    );
    assert!(!shown.contains("SEKRIT"), "{shown}");
    assert!(with(|c| c.timeout = Duration::ZERO).contains("timeout"));
    assert!(with(|c| c.max_tokens = 0).contains("max_tokens"));
    assert!(with(|c| c.api_key = Some("  ".into())).contains("blank"));
    let bad_key = with(|c| c.api_key = Some("sk-bad\nInjected: 1".into()));
    assert!(!bad_key.contains("sk-bad"), "{bad_key}");

    for ok in [
        "https://api.openai.com/v1",
        "http://localhost:11434/v1/",
        "http://[::1]:8080/v1",
    ] {
        let cfg = OpenAiConfig {
            base_url: ok.into(),
            ..valid_cfg()
        };
        assert!(OpenAiBackend::new(cfg).is_ok(), "{ok}");
    }
}

#[test]
fn debug_never_shows_the_key() {
    let cfg = OpenAiConfig {
        api_key: Some(KEY.into()),
        ..valid_cfg()
    };
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains(KEY) && shown.contains("<redacted>"),
        "{shown}"
    );
    let backend = OpenAiBackend::new(cfg).unwrap();
    let shown = format!("{backend:?}");
    assert!(!shown.contains(KEY), "{shown}");
}

#[test]
fn loopback_detection() {
    let is = |u: &str| is_loopback(&Url::parse(u).unwrap());
    assert!(is("http://localhost:8000/v1"));
    assert!(is("http://127.0.0.1:8000/v1"));
    assert!(is("http://127.1.2.3/v1"));
    assert!(is("http://[::1]:8000/v1"));
    assert!(!is("https://api.openai.com/v1"));
    assert!(!is("http://10.0.0.5:8000/v1"));
}
