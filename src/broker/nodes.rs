//! The broker nodes of `AMQP_URL`: one URL, or several comma-separated URLs of the nodes of
//! one RabbitMQ cluster.
//!
//! Each process starts at a random node, so replicas spread over the cluster, and every later
//! session opens at the node after the one the previous session used: a session is only
//! reopened after it failed or was lost, and the node it was on is the likeliest to be gone.
//! A node that refuses the connection is skipped for the next one within the same open.
//! Quorum queues are replicated on every node, so any node serves the same queues.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::uri::{AMQPScheme, AMQPUri};

use crate::telemetry::redact;

/// Most node URLs in one `AMQP_URL` (it comes from outside and stays bounded).
pub const MAX_NODES: usize = 32;
/// Longest `AMQP_URL` accepted.
const MAX_URL_LIST_CHARS: usize = 16 * 1024;

/// One broker node: its parsed URI and a label safe for logs, connection names and `/readyz`
/// (`amqps://host:port`, never credentials).
#[derive(Debug, Clone)]
pub struct Node {
    pub uri: AMQPUri,
    pub label: String,
}

/// Parse and validate a comma-separated list of `amqp://` / `amqps://` URLs. The error is one
/// line and never shows a password.
pub fn parse(list: &str) -> Result<Vec<Node>, String> {
    if list.len() > MAX_URL_LIST_CHARS {
        return Err(format!(
            "the AMQP URL list is longer than {MAX_URL_LIST_CHARS} characters"
        ));
    }
    let parts: Vec<&str> = list.split(',').map(str::trim).collect();
    if parts.len() > MAX_NODES {
        return Err(format!("more than {MAX_NODES} AMQP URLs"));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, url)| parse_one(url).map_err(|e| one_line(&format!("AMQP URL #{}: {e}", i + 1))))
        .collect()
}

/// Control characters (a newline pasted into an environment variable) shown as `?`, and the
/// length bounded: the error goes to one log or stderr line.
fn one_line(text: &str) -> String {
    text.chars()
        .take(400)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn parse_one(url: &str) -> Result<Node, String> {
    if url.is_empty() {
        return Err("empty (a stray comma?)".into());
    }
    let shown = redact(url);
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("amqp" | "amqps")) {
        return Err(format!(
            "`{shown}` must start with amqp:// or amqps:// (a comma inside a password is written %2C)"
        ));
    }
    let uri: AMQPUri = url
        .parse()
        .map_err(|e: String| format!("`{shown}`: {}", redact(&e)))?;
    if uri.authority.host.is_empty() {
        return Err(format!("`{shown}` names no host"));
    }
    let scheme = match uri.scheme {
        AMQPScheme::AMQP => "amqp",
        AMQPScheme::AMQPS => "amqps",
    };
    let host = &uri.authority.host;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let label = format!("{scheme}://{host}:{}", uri.authority.port);
    Ok(Node { uri, label })
}

/// True when any node is reached over TLS.
pub fn any_tls(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| n.uri.scheme == AMQPScheme::AMQPS)
}

/// This process's position in the node list: random at first, then advanced past each node
/// a session was opened on.
fn cursor() -> &'static AtomicUsize {
    static CURSOR: OnceLock<AtomicUsize> = OnceLock::new();
    CURSOR.get_or_init(|| {
        let mut seed = [0u8; 8];
        // Without randomness every replica starts at the first node: still correct.
        let _ = getrandom::fill(&mut seed);
        AtomicUsize::new(usize::from_le_bytes(seed) % (MAX_NODES * 64))
    })
}

/// The order in which to try the `n` nodes for the next session: from the cursor on, each
/// once.
pub(super) fn order(n: usize) -> impl Iterator<Item = usize> {
    let start = cursor().load(Ordering::Relaxed);
    (0..n).map(move |k| (start + k) % n.max(1))
}

/// A session was opened on node `i` of `n`: the next one starts after it.
pub(super) fn opened(i: usize, n: usize) {
    cursor().store((i + 1) % n.max(1), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_or_several_nodes() {
        let nodes = parse("amqp://guest:secret@10.0.0.1:5672/%2f").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].label, "amqp://10.0.0.1:5672");
        let nodes = parse(
            "amqps://u:p@rabbit-1:5671/v, amqps://u:p@rabbit-2/v ,amqp://u:p@10.1.2.3:5681/v",
        )
        .unwrap();
        let labels: Vec<_> = nodes.iter().map(|n| n.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "amqps://rabbit-1:5671",
                "amqps://rabbit-2:5671",
                "amqp://10.1.2.3:5681"
            ]
        );
        assert!(any_tls(&nodes));
        assert!(!any_tls(&parse("amqp://h").unwrap()));
    }

    #[test]
    fn bad_urls_are_one_line_errors_without_passwords() {
        let e = parse("http://u:hunter2@x").unwrap_err();
        assert!(e.contains("must start with amqp:// or amqps://"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("amqp://h,").unwrap_err();
        assert!(e.starts_with("AMQP URL #2: empty"), "{e}");
        let e = parse("amqp://u:hunter2@h:notaport/v").unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains('\n'), "{e}");
        assert!(parse("").is_err());
        assert!(parse(&vec!["amqp://h"; MAX_NODES + 1].join(",")).is_err());
    }

    #[test]
    fn every_node_is_tried_once_from_the_cursor() {
        for n in 1..5 {
            let mut seen: Vec<usize> = order(n).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    proptest! {
        /// Whatever the text, parsing answers (never panics), and an error is one line that
        /// does not repeat a password.
        #[test]
        fn parsing_never_panics(s in "(?s).{0,200}") {
            if let Err(e) = parse(&s) {
                prop_assert!(!e.contains('\n'));
            }
        }

        #[test]
        fn passwords_never_reach_errors(pw in "[a-zA-Z0-9]{8,20}", port in "[a-z]{1,5}") {
            let url = format!("amqp://user:{pw}@host:{port}/v");
            if let Err(e) = parse(&url) {
                prop_assert!(!e.contains(&pw), "{}", e);
            }
        }
    }
}
