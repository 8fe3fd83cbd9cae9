//! Who may act, and proof that a request is theirs.
//!
//! Reading is open; acting (requeue, cancel, publish) needs the operator token, which comes
//! from the environment only (`DECAY_DASHBOARD_TOKEN`: a flag would show in `ps` and shell
//! history). It is typed once on the sign-in page; the answer is a session cookie
//! (`HttpOnly`, `SameSite=Strict`) whose value is a MAC under a key drawn at start, so sessions
//! need no table and end with the process (or after [`SESSION_LIFETIME`]).
//!
//! Cross-site requests are refused three ways: the cookie is never sent cross-site
//! (`SameSite=Strict`); every action form carries a CSRF token derived from the session,
//! which another site cannot read; and a POST whose `Sec-Fetch-Site` or `Origin` says it came
//! from elsewhere is refused before anything else. Secrets are compared in constant time
//! (`blake3::Hash` equality is), and neither the token nor a session ever reaches a log.

use std::fmt;

use axum::http::{HeaderMap, header};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "decay_dashboard_session";

/// How long a sign-in lasts.
pub const SESSION_LIFETIME_SECS: i64 = 8 * 3600;

/// Shortest operator token accepted: it is the only thing between the network and the
/// actions, so it must not be guessable.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why the configured token is refused at start.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "DECAY_DASHBOARD_TOKEN must be at least {MIN_TOKEN_CHARS} characters long (it guards every action)"
    )]
    TooShort,
    #[error("DECAY_DASHBOARD_TOKEN must not contain whitespace or control characters")]
    BadCharacters,
    #[error("cannot draw random bytes for the session key: {0}")]
    Random(String),
}

/// The operator token (hashed) and the key sessions are signed with.
pub struct OperatorAuth {
    token: blake3::Hash,
    key: [u8; 32],
}

impl fmt::Debug for OperatorAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorAuth(<redacted>)")
    }
}

/// A valid session, identified by its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    nonce: String,
}

fn random_hex<const N: usize>() -> Result<String, TokenError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl OperatorAuth {
    /// Check the token's shape and draw this process's session key.
    pub fn new(token: &str) -> Result<OperatorAuth, TokenError> {
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(TokenError::TooShort);
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::BadCharacters);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(OperatorAuth {
            token: blake3::hash(token.as_bytes()),
            key,
        })
    }

    /// Constant time: both sides are hashed first, so neither the content nor the length of
    /// the token leaks through timing.
    pub fn token_matches(&self, given: &str) -> bool {
        blake3::hash(given.as_bytes()) == self.token
    }

    fn mac(&self, purpose: &str, data: &str) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(purpose.as_bytes());
        h.update(&[0]);
        h.update(data.as_bytes());
        h.finalize()
    }

    /// A new session's cookie value: `<expiry>.<nonce>.<mac>`.
    pub fn new_session(&self, now_unix: i64) -> Result<String, TokenError> {
        let expires = now_unix.saturating_add(SESSION_LIFETIME_SECS);
        let body = format!("{expires}.{}", random_hex::<16>()?);
        Ok(format!("{body}.{}", self.mac("session", &body).to_hex()))
    }

    /// The session a cookie value proves, if its MAC is ours and it has not expired.
    pub fn session(&self, cookie: &str, now_unix: i64) -> Option<Session> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let mac = blake3::Hash::from_hex(mac).ok()?;
        if self.mac("session", body) != mac {
            return None;
        }
        let (expires, nonce) = body.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (now_unix < expires).then(|| Session {
            nonce: nonce.to_string(),
        })
    }

    /// The CSRF token of a session, put into every action form.
    pub fn csrf(&self, s: &Session) -> String {
        self.mac("csrf", &s.nonce).to_hex().to_string()
    }

    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_matches(&self, s: &Session, given: &str) -> bool {
        blake3::Hash::from_hex(given).is_ok_and(|g| g == self.mac("csrf", &s.nonce))
    }
}

/// The session cookie's value among the request's cookies.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session.
pub fn set_session_cookie(value: &str) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_LIFETIME_SECS}"
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Refuse a state-changing request another site made the browser send. Browsers say where a
/// request comes from in `Sec-Fetch-Site` (only `same-origin` is ours) and `Origin` (must
/// name the host the request was sent to). A client that sends neither is not a browser
/// acting for another site; it still needs the session cookie and the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if site != "same-origin" {
            return Err(format!(
                "this request came from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ours = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o == host);
        if !ours {
            let shown: String = origin.chars().take(100).collect();
            return Err(format!(
                "this request came from another origin ({shown}, not this dashboard)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> OperatorAuth {
        OperatorAuth::new("correct-horse-battery-staple").unwrap()
    }

    #[test]
    fn tokens_are_checked() {
        assert!(matches!(
            OperatorAuth::new("short"),
            Err(TokenError::TooShort)
        ));
        assert!(matches!(
            OperatorAuth::new("has a space in it, long enough"),
            Err(TokenError::BadCharacters)
        ));
        let a = auth();
        assert!(a.token_matches("correct-horse-battery-staple"));
        assert!(!a.token_matches("correct-horse-battery-stapl"));
        assert!(!a.token_matches(""));
        assert_eq!(format!("{a:?}"), "OperatorAuth(<redacted>)");
    }

    #[test]
    fn sessions_are_signed_and_expire() {
        let a = auth();
        let cookie = a.new_session(1000).unwrap();
        let s = a.session(&cookie, 1001).unwrap();
        assert!(a.session(&cookie, 1000 + SESSION_LIFETIME_SECS).is_none());
        // Another process's key, a changed expiry or nonce: refused.
        assert!(auth().session(&cookie, 1001).is_none());
        let (exp, rest) = cookie.split_once('.').unwrap();
        let later = format!("{}.{rest}", exp.parse::<i64>().unwrap() + 1000);
        assert!(a.session(&later, 1001).is_none());
        assert!(a.session("garbage", 1001).is_none());
        let csrf = a.csrf(&s);
        assert!(a.csrf_matches(&s, &csrf));
        assert!(!a.csrf_matches(&s, ""));
        let other = a.session(&a.new_session(1000).unwrap(), 1001).unwrap();
        assert!(!a.csrf_matches(&other, &csrf));
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin(&h).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&h).is_err());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; decay_dashboard_session=xyz; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("xyz"));
    }
}
