//! Production connections: a worker over mutual TLS to a private RabbitMQ node with
//! verification on, a wrong CA refused in one line, and a node list whose first node is dead.
//!
//! The TLS node is private (ports 5691 / 25691, its own directory) because the shared broker
//! has no TLS listener; certificates are made by the test with `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use chrono::Utc;
use decay_worker::broker::{BrokerConfig, Session};
use decay_worker::tls::TlsFiles;
use sqlx::PgPool;
use tempfile::TempDir;

use crate::testkit::harness::{Harness, amqp_url, free_port, http_get, wait_until};
use crate::testkit::*;

const LONG: Duration = Duration::from_secs(60);
const TLS_PORT: u16 = 5691;
const TLS_DIST_PORT: u16 = 25691;
const NODE: &str = "decay-it-tls@localhost";

fn run(cmd: &mut StdCommand) {
    let out = cmd.output().expect("the command runs");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// A CA, a second (wrong) CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, all EC P-256, in `dir`.
fn make_certs(dir: &Path) {
    for ca in ["ca", "wrong-ca"] {
        run(StdCommand::new("openssl").current_dir(dir).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-subj",
            &format!("/CN=decay test {ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        run(StdCommand::new("openssl").current_dir(dir).args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN=decay test {who}"),
        ]));
        run(StdCommand::new("openssl").current_dir(dir).args([
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
            "-out",
            &format!("{who}.pem"),
        ]));
    }
}

/// A private RabbitMQ node whose only listener is TLS with client certificates required.
/// Stopped (by its own pid) and its directory removed on drop.
struct TlsRabbit {
    dir: TempDir,
}

impl TlsRabbit {
    fn start(certs: &Path) -> TlsRabbit {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["mnesia", "log", "tls"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for f in ["ca.pem", "server.pem", "server.key"] {
            std::fs::copy(certs.join(f), d.join("tls").join(f)).unwrap();
        }
        let tls = d.join("tls");
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{TLS_PORT}\nloopback_users = none\n\
                 ssl_options.cacertfile = {0}/ca.pem\nssl_options.certfile = {0}/server.pem\n\
                 ssl_options.keyfile = {0}/server.key\nssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                tls.display()
            ),
        )
        .unwrap();
        std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
        // The Debian wrapper drops to the rabbitmq user, which must reach the directory.
        run(StdCommand::new("chmod").args(["755"]).arg(d));
        run(StdCommand::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(d));
        let node = TlsRabbit { dir };
        run(node
            .env(&mut StdCommand::new("rabbitmq-server"))
            .arg("-detached"));
        run(node
            .env(&mut StdCommand::new("rabbitmqctl"))
            .args(["-n", NODE, "wait", "--timeout", "90"])
            .arg(node.pid_file()));
        node
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("node.pid")
    }

    fn env<'a>(&self, cmd: &'a mut StdCommand) -> &'a mut StdCommand {
        let d = self.dir.path();
        cmd.env("RABBITMQ_NODENAME", NODE)
            .env("RABBITMQ_DIST_PORT", TLS_DIST_PORT.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
    }
}

impl Drop for TlsRabbit {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.pid_file()).unwrap_or_default();
        let _ = self
            .env(&mut StdCommand::new("timeout"))
            .args(["60", "rabbitmqctl", "-n", NODE, "stop"])
            .arg(self.pid_file())
            .output();
        // Still there (the stop timed out): kill exactly that process.
        if let Ok(pid) = pid.trim().parse::<i32>()
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
            && rustix::process::test_kill_process(pid).is_ok()
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn tls_url() -> String {
    format!("amqps://guest:guest@127.0.0.1:{TLS_PORT}/%2f")
}

fn tls_env(certs: &Path, ca: &str) -> Vec<(String, String)> {
    let p = |f: &str| certs.join(f).display().to_string();
    vec![
        ("AMQP_URL".into(), tls_url()),
        ("DECAY_AMQP_CA_FILE".into(), p(ca)),
        ("DECAY_AMQP_CLIENT_CERT".into(), p("client.pem")),
        ("DECAY_AMQP_CLIENT_KEY".into(), p("client.key")),
    ]
}

#[sqlx::test(migrations = "./migrations")]
async fn a_worker_consumes_over_mutual_tls_and_a_wrong_ca_is_refused(pool: PgPool) {
    let h = Harness::new(pool).await;
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let rabbit = TlsRabbit::start(certs.path());

    let env = tls_env(certs.path(), "ca.pem");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut w = h.spawn_worker_env("w-tls", &[], &env_refs);

    // Publish over TLS too, in process, with the same files.
    let tls = TlsFiles::load(
        Some(&certs.path().join("ca.pem")),
        Some(&certs.path().join("client.pem")),
        Some(&certs.path().join("client.key")),
    )
    .unwrap();
    let broker = BrokerConfig {
        url: tls_url(),
        tls,
        base: h.base.clone(),
        delivery_limit: 10,
        heartbeat_secs: 5,
        op_timeout: Duration::from_secs(10),
    };
    let session = Session::open(&broker, "test-tls").await.unwrap();
    assert_eq!(session.node(), format!("amqps://127.0.0.1:{TLS_PORT}"));
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = candidate_job(&h.store, Utc::now()).await;
        session.publish_job(&id).await.unwrap();
        ids.push(id);
    }
    wait_until(LONG, "5 jobs completed over TLS", || async {
        h.count_state("completed").await == 5
    })
    .await;
    let (status, body) = http_get(w.port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(&format!("broker: ok (node amqps://127.0.0.1:{TLS_PORT})\n")),
        "{body}"
    );
    session.close().await;

    // The same node with the wrong CA: refused at once, in one line, exit 2.
    let wrong = tls_env(certs.path(), "wrong-ca.pem");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_decay-worker"))
        .args(["enqueue", &ids[0].to_string()])
        .env("DATABASE_URL", h.db_url())
        .env("DECAY_QUEUE", &h.base)
        .envs(wrong.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "TLS to the broker at amqps://127.0.0.1:{TLS_PORT} refused: invalid peer certificate"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("guest:guest"), "{stderr}");

    assert_eq!(w.terminate().await, Some(0));
    drop(rabbit);
}

#[sqlx::test(migrations = "./migrations")]
async fn sessions_skip_a_dead_node(pool: PgPool) {
    let h = Harness::new(pool).await;
    // Nothing listens on a fresh free port: the first node is dead.
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let list = format!("{dead},{}", amqp_url());
    let alive = decay_worker::broker::nodes::parse(&amqp_url()).unwrap()[0]
        .label
        .clone();
    let broker = BrokerConfig {
        url: list.clone(),
        tls: TlsFiles::default(),
        base: h.base.clone(),
        delivery_limit: 10,
        heartbeat_secs: 5,
        op_timeout: Duration::from_secs(10),
    };
    // Each open starts after the node of the previous one, so of two opens in a row one
    // starts at the dead node, and must move on to the live one.
    for _ in 0..2 {
        let s = Session::open(&broker, "test-rotation").await.unwrap();
        assert_eq!(s.node(), alive);
        s.close().await;
    }

    // A worker given both consumes, wherever it starts.
    let mut w = h.spawn_worker_env("w-nodes", &[], &[("AMQP_URL", list.as_str())]);
    let id = candidate_job(&h.store, Utc::now()).await;
    h.publish(&id).await;
    wait_until(LONG, "the job completed", || async {
        h.count_state("completed").await == 1
    })
    .await;
    let (_, body) = http_get(w.port, "/readyz").await;
    assert!(
        body.starts_with(&format!("broker: ok (node {alive})")),
        "{body}"
    );
    assert_eq!(w.terminate().await, Some(0));
    assert!(!h.log_of("w-nodes").contains("guest:guest"));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_url_that_is_not_amqp_exits_2_at_once(pool: PgPool) {
    let h = Harness::new(pool).await;
    for url in [
        "http://x",
        "amqp://u:hunter2@127.0.0.1:5672/%2f,ftp://u:hunter2@h",
        "amqp://h,",
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            h.cli(&["consume", "--amqp-url", url, "--http-addr", "127.0.0.1:0"]),
        )
        .await
        .expect("consume exits instead of retrying");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--amqp-url: AMQP URL #"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // A CA file that holds no certificate: refused before anything connects.
    let ca = h.scratch().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let id = candidate_job(&h.store, Utc::now()).await.to_string();
    let out = h
        .cli(&["enqueue", "--amqp-ca-file", ca.to_str().unwrap(), &id])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--amqp-ca-file"), "{stderr}");
}

/// A private PostgreSQL cluster with `ssl=on` (port 5692), stopped and removed on drop.
struct TlsPostgres {
    dir: TempDir,
    bin: PathBuf,
}

const PG_TLS_PORT: u16 = 5692;

impl TlsPostgres {
    fn start(certs: &Path) -> TlsPostgres {
        let versions = std::fs::read_dir("/usr/lib/postgresql").unwrap();
        let newest = versions
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .unwrap();
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::create_dir_all(d.join("tls")).unwrap();
        for f in ["ca.pem", "server.pem", "server.key"] {
            std::fs::copy(certs.join(f), d.join("tls").join(f)).unwrap();
        }
        run(StdCommand::new("chmod").arg("755").arg(&d));
        run(StdCommand::new("chown").args(["-R", "postgres"]).arg(&d));
        run(StdCommand::new("chmod")
            .arg("600")
            .arg(d.join("tls/server.key")));
        let pg = TlsPostgres { dir, bin };
        pg.as_postgres(&format!(
            "{}/initdb -D {}/data -A trust -U postgres",
            pg.bin.display(),
            d.display()
        ));
        let tls = d.join("tls");
        pg.as_postgres(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/log -w start -o '-p {PG_TLS_PORT} -k {d} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={t}/server.pem -c ssl_key_file={t}/server.key'",
            pg.bin.display(),
            d = d.display(),
            t = tls.display()
        ));
        pg
    }

    fn as_postgres(&self, script: &str) {
        run(StdCommand::new("su").args(["postgres", "-c", script]));
    }

    fn url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{PG_TLS_PORT}/postgres?{query}")
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = StdCommand::new("su")
            .args([
                "postgres",
                "-c",
                &format!(
                    "{}/pg_ctl -D {}/data -m immediate -w stop",
                    self.bin.display(),
                    self.dir.path().display()
                ),
            ])
            .output();
    }
}

/// `sslmode=verify-full` with the right `sslrootcert` works; with the wrong one every command,
/// `consume` included, stops at once with exit 2 and one line.
#[tokio::test]
async fn the_database_over_verified_tls_and_a_wrong_ca_refused() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let pg = TlsPostgres::start(certs.path());
    let ca = certs.path().join("ca.pem").display().to_string();
    let wrong = certs.path().join("wrong-ca.pem").display().to_string();
    let cli = |url: String, args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_decay-worker"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("DECAY_HTTP_ADDR", "127.0.0.1:0")
            .output()
    };
    for query in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        "sslmode=require".to_string(),
    ] {
        let out = cli(pg.url(&query), &["migrate"]).await.unwrap();
        assert!(out.status.success(), "{query}: {out:?}");
    }
    // The server really speaks TLS to us.
    let out = cli(
        pg.url(&format!("sslmode=verify-full&sslrootcert={ca}")),
        &["jobs", "stats"],
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");

    for args in [&["jobs", "stats"][..], &["consume"][..]] {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            cli(
                pg.url(&format!("sslmode=verify-full&sslrootcert={wrong}")),
                args,
            ),
        )
        .await
        .expect("a refused certificate is not waited for")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("decay-worker: "), "{stderr}");
        assert!(last.contains("invalid peer certificate"), "{stderr}");
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("decay-worker: "))
                .count(),
            1,
            "{stderr}"
        );
    }
    drop(pg);
}
