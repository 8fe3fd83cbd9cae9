//! The job message: `{"job_id":"dcy_..."}` (or a bare id as a text body), persistent,
//! `application/json`. Parsing is strict and total: any body either names one canonical job
//! id or is malformed with a reason, so a bad message can be dead-lettered, never retried.

use crate::ids::DecayJobId;

/// Bodies larger than this are malformed (a job id message is ~45 bytes).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Why a message body is not a job message. Display is the detail recorded with the dead
/// letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedMessage {
    #[error("body is {0} bytes (limit 4096)")]
    TooLarge(usize),
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is empty")]
    Empty,
    #[error("body is not a JSON object with a string `job_id`: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadId(String),
}

#[derive(serde::Deserialize)]
struct Body {
    job_id: String,
}

/// Parse a message body into a job id.
pub fn parse_body(body: &[u8]) -> Result<DecayJobId, MalformedMessage> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(MalformedMessage::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| MalformedMessage::NotUtf8)?;
    // ASCII whitespace only: `trim()` would also strip NBSP, U+3000 and the like, so text
    // that is not the id would be accepted as it.
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(MalformedMessage::Empty);
    }
    let raw = if text.starts_with('{') {
        serde_json::from_str::<Body>(text)
            .map_err(|e| MalformedMessage::BadJson(e.to_string()))?
            .job_id
    } else {
        text.to_string()
    };
    DecayJobId::parse(&raw).map_err(|e| MalformedMessage::BadId(e.to_string()))
}

/// The canonical body for a job id.
pub fn encode_body(id: &DecayJobId) -> Vec<u8> {
    format!("{{\"job_id\":\"{id}\"}}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV";

    #[test]
    fn accepts_json_and_bare_ids() {
        let id = DecayJobId::parse(ID).unwrap();
        assert_eq!(parse_body(&encode_body(&id)).unwrap(), id);
        assert_eq!(parse_body(ID.as_bytes()).unwrap(), id);
        assert_eq!(parse_body(format!(" {ID}\n").as_bytes()).unwrap(), id);
        assert_eq!(
            parse_body(format!("{{\"job_id\":\"{ID}\",\"extra\":1}}").as_bytes()).unwrap(),
            id
        );
        assert_eq!(
            String::from_utf8(encode_body(&id)).unwrap(),
            format!("{{\"job_id\":\"{ID}\"}}")
        );
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        assert_eq!(
            parse_body(&vec![b'a'; 5 * 1024]),
            Err(MalformedMessage::TooLarge(5120))
        );
        assert_eq!(parse_body(&[0xff, 0xfe]), Err(MalformedMessage::NotUtf8));
        assert_eq!(parse_body(b"  "), Err(MalformedMessage::Empty));
        assert!(matches!(
            parse_body(b"{not json"),
            Err(MalformedMessage::BadJson(_))
        ));
        assert!(matches!(
            parse_body(b"{\"job_id\":5}"),
            Err(MalformedMessage::BadJson(_))
        ));
        assert!(matches!(
            parse_body(b"{}"),
            Err(MalformedMessage::BadJson(_))
        ));
        let e = parse_body(b"mem_01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap_err();
        assert!(e.to_string().contains("expected prefix `dcy_`"), "{e}");
        assert!(matches!(
            parse_body(b"hello"),
            Err(MalformedMessage::BadId(_))
        ));
        assert!(matches!(
            parse_body(b"dcy_01arz3ndektsv4rrffq69g5fav"),
            Err(MalformedMessage::BadId(_))
        ));
    }

    #[test]
    fn unicode_whitespace_around_a_bare_id_is_refused() {
        for ws in ["\u{a0}", "\u{3000}", "\u{2009}", "\u{feff}"] {
            for body in [
                format!("{ws}{ID}"),
                format!("{ID}{ws}"),
                format!("\n{ws}{ID}\n"),
            ] {
                let e = parse_body(body.as_bytes()).unwrap_err();
                assert!(
                    matches!(&e, MalformedMessage::BadId(d) if d.contains("non-ASCII")),
                    "{body:?}: {e}"
                );
            }
        }
        // Only-Unicode-blank bodies are not empty: they are bad ids.
        assert!(matches!(
            parse_body("\u{3000}".as_bytes()),
            Err(MalformedMessage::BadId(_))
        ));
    }
}
