//! A real browser (Debian's chromium, driven through chromedriver by fantoccini) and a real
//! `decay-worker dashboard` process, for tests that use the dashboard as a person would.
//!
//! Ports are picked here and passed explicitly. chromedriver runs in its own process group
//! so that the group (chromedriver and the chromium it started) is killed even when a test
//! panics; the profile directory is a fresh tempdir, removed afterwards.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use super::harness::{Harness, amqp_url, free_port, wait_until};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for.
pub const PAGE: Duration = Duration::from_secs(30);

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots")
}

/// A headless chromium session.
pub struct Browser {
    pub client: Client,
    // Held only to be dropped, in field order: the processes die before their profile is
    // removed.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver, killed with its whole process group (the chromium it started included)
/// when dropped, also when a test panics half-way.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (it was spawned with `process_group(0)`).
        // A direct kill(2) of the negative id: never shell out to `kill -KILL -<pgid>`,
        // which Debian's procps-ng 4.0.2 turns into kill(-1, SIGKILL), killing every
        // process on the machine.
        let group = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Start chromedriver on a free port and open a session. Fails (never skips) when the
    /// browser is not installed.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "browser tests need Debian's chromium and chromium-driver ({bin} is missing): apt-get install -y chromium chromium-driver"
            );
        }
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Driver(
                std::process::Command::new(CHROMEDRIVER)
                    .arg(format!("--port={port}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap(),
            )
        };
        let profile = tempfile::tempdir().unwrap();
        let client = connect(port, profile.path()).await;
        let browser = Browser {
            client,
            _driver: driver,
            _profile: profile,
        };
        browser.client.set_window_size(1280, 1000).await.unwrap();
        browser
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Wait (up to [`PAGE`]) for an element to exist.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PAGE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Wait for an element to exist, then return its text. The overview's live refresh
    /// replaces its fragment every few seconds, so an element found a moment ago may be gone
    /// ("stale") when its text is read: then it is found again, up to [`PAGE`].
    pub async fn text(&self, css: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            match self.element(css).await.text().await {
                Ok(text) => return text,
                Err(e) if e.is_stale_element_reference() && start.elapsed() < PAGE => {}
                Err(e) => panic!("text of {css}: {e}"),
            }
        }
    }

    /// The values of `attr` of every element matching `css`.
    /// Read again from the start when the live refresh replaced an element half-way.
    pub async fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let start = std::time::Instant::now();
        'read: loop {
            let mut out = Vec::new();
            for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
                match e.attr(attr).await {
                    Ok(v) => out.push(v.unwrap_or_default()),
                    Err(e) if e.is_stale_element_reference() && start.elapsed() < PAGE => {
                        continue 'read;
                    }
                    Err(e) => panic!("{attr} of {css}: {e}"),
                }
            }
            return out;
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Type into a form field.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.element(css).await.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    pub async fn path_and_query(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Save a PNG of the viewport to `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// End the session (chromium quits) and stop chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Dropping kills the driver's process group and removes the profile.
    }
}

async fn connect(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,1000",
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = String::new();
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            // chromedriver is still starting.
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no WebDriver session on {url}: {last}");
}

/// A running `decay-worker dashboard` on an explicit port.
pub struct DashboardProcess {
    pub child: Child,
    pub port: u16,
    log: PathBuf,
}

impl DashboardProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process is still running (it did not crash on what the test sent it).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// Start the dashboard for the harness's database and queue base, with the operator token
/// when given, and wait until it answers `/healthz`.
pub async fn spawn_dashboard(h: &Harness, token: Option<&str>) -> DashboardProcess {
    let port = free_port();
    let log = h.scratch().join(format!("dashboard-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_decay-worker"));
    cmd.arg("dashboard")
        .arg("--dashboard-addr")
        .arg(format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", h.db_url())
        .env("AMQP_URL", amqp_url())
        .env("DECAY_QUEUE", &h.base)
        .env("DECAY_DASHBOARD_REFRESH", "1s")
        .env("RUST_LOG", "info")
        .env_remove("DECAY_DASHBOARD_TOKEN")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("DECAY_DASHBOARD_TOKEN", t);
    }
    let child = cmd.spawn().unwrap();
    let mut d = DashboardProcess { child, port, log };
    wait_until(
        Duration::from_secs(30),
        "the dashboard's /healthz",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && http(port, "GET", "/healthz", &[], "").await.status == 200
        },
    )
    .await;
    assert!(d.alive(), "the dashboard exited: {}", d.log());
    d
}

/// POST a form (`application/x-www-form-urlencoded`) with extra headers.
pub async fn post_form(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http(port, "POST", path, &all, body).await
}

/// An HTTP response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection (`connection: close`), for what a browser
/// cannot show a test (statuses, headers) or would never send (forged requests).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}
