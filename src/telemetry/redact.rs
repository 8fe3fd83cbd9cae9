//! Redaction: every URL in a text loses its secrets before the text reaches a log line, an
//! error message or a dead letter.
//!
//! The text is scanned for URLs (`scheme://...`, each ending where the next one starts, so a
//! comma-separated list is several URLs) and each is parsed by the URL grammar, by hand
//! rather than with a URL parser: the text must stay as written except for its secrets, and
//! the forms that matter most are exactly the ones a strict parser rejects (a password with a
//! raw space or `/`). What is replaced by `***`:
//!
//! * the password of the userinfo (`user:***@host`); for `http`/`https` the whole userinfo
//!   (`***@host`), where a lone "user" is usually a token;
//! * when the authority looks like `user:pass...` but its `@` comes later (a raw `/`, `@` or
//!   space in the password), everything from the `:` to that `@`;
//! * the value of every query parameter whose name says secret: `password`, `pass`, `pwd`,
//!   `secret`, `token`, `key`, `api-key`, `apikey`, `api_key`, `access_token`, `sig`, and any
//!   name ending in `password`, `secret`, `token` or `key` (after percent-decoding, ignoring
//!   case, `-` and `_`). A secret value cut short by a blank runs to the next `&` (or the end
//!   of the URL's line): a raw space does not end a password.
//!
//! Redaction errs on the side of hiding: a text that only looks like a URL with a password
//! may lose more than its password, never less. Not covered: a raw `?`, `#` or `://` inside a
//! password (no URL parser reads those as a password either; percent-encode them).

/// The replacement of every secret.
pub const MASK: &str = "***";

/// Replace the secrets of every URL in `text` with `***` (see the module docs).
pub fn redact(text: &str) -> String {
    let starts = url_starts(text);
    if starts.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..starts[0]]);
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        redact_segment(&text[start..end], &mut out);
    }
    out
}

/// Byte offsets where a `scheme://` begins: a letter, then letters, digits, `+`, `-`, `.`.
fn url_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("://").map(|p| p + from) {
        let mut s = pos;
        while s > 0 && is_scheme_char(bytes[s - 1]) {
            s -= 1;
        }
        // The scheme must start with a letter; skip leading digits/symbols of the run.
        while s < pos && !bytes[s].is_ascii_alphabetic() {
            s += 1;
        }
        if s < pos && starts.last().is_none_or(|&last| s > last) {
            starts.push(s);
        }
        from = pos + 3;
    }
    starts
}

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Characters that end a URL token in running text.
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

/// Redact one segment: a URL at its start, then whatever text follows up to the next URL.
fn redact_segment(seg: &str, out: &mut String) {
    // The scheme is ASCII (url_starts checked), so these offsets are char boundaries.
    let Some(sep) = seg.find("://") else {
        out.push_str(seg);
        return;
    };
    let scheme = &seg[..sep];
    let is_http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    out.push_str(&seg[..sep + 3]);
    let body = &seg[sep + 3..];
    // The URL's line: a secret with a raw blank may run past the token, never past the line.
    let line_end = body.find(['\n', '\r']).unwrap_or(body.len());
    let token_end = body.find(ends_token).unwrap_or(body.len());
    let token = &body[..token_end];
    let auth_end = token.find(['/', '?', '#']).unwrap_or(token.len());
    let auth = &token[..auth_end];

    // Where the userinfo ends (the `@`), if there is one. A password may hold a raw `/`, `@`
    // or blank, so when the authority ends early (a blank right after it, or `user:...`
    // without an `@`), the `@` is searched for further on the line.
    let before_query = &token[..token.find(['?', '#']).unwrap_or(token.len())];
    let cut = auth.len() == token.len() && body[token_end..line_end].starts_with([' ', '\t']);
    let search_from = match auth.rfind('@') {
        Some(_) if cut => Some(token_end),
        Some(_) => None,
        None if auth.contains(':')
            && (cut || before_query.contains('@') || looks_like_password(auth)) =>
        {
            Some(0)
        }
        None => None,
    };
    // An `@` in the path after the userinfo's `@`: the password may hold a raw `/` too
    // (`user:p@ss/word@host`). Hide up to the last one (a path `@` costs only its host).
    let at_in_path = auth
        .rfind('@')
        .and_then(|_| before_query[auth_end..].rfind('@').map(|p| auth_end + p));
    let at = search_from
        .and_then(|from| {
            // The first `@` from there, then the last `@` of the authority it starts.
            body[from..line_end].find('@').map(|f| {
                let first = from + f;
                let tail = &body[first + 1..line_end];
                let end = tail
                    .find(|c: char| matches!(c, '/' | '?' | '#') || ends_token(c))
                    .unwrap_or(tail.len());
                tail[..end]
                    .rfind('@')
                    .map_or(first, |last| first + 1 + last)
            })
        })
        .or(at_in_path)
        .or_else(|| auth.rfind('@'));
    let rest_from = match at {
        Some(at) => {
            let userinfo = &body[..at];
            match userinfo.find(':') {
                _ if is_http => out.push_str(MASK),
                Some(colon) => {
                    out.push_str(&userinfo[..=colon]);
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            at
        }
        None => 0,
    };
    // The rest of the URL token, after the userinfo: its query parameters.
    let token_end = body[rest_from..]
        .find(ends_token)
        .map_or(body.len(), |e| e + rest_from);
    let line_end = line_end.max(token_end);
    let swallowed = redact_query(&body[rest_from..token_end], &body[token_end..line_end], out);
    out.push_str(&body[token_end + swallowed..]);
}

/// `auth` (no `@` in it) reads as `user:secret`: something after a `:` that is not a port.
/// Host lists (`h1:5432,h2:5433`) and IPv6 literals (`[::1]:80`) are not passwords.
fn looks_like_password(auth: &str) -> bool {
    auth.split(',').any(|host| {
        if host.starts_with('[') {
            return host
                .find(']')
                .is_some_and(|close| !is_port_suffix(&host[close + 1..]));
        }
        match host.find(':') {
            Some(colon) => !is_port_suffix(&host[colon..]),
            None => false,
        }
    })
}

/// Empty, or `:` and digits.
fn is_port_suffix(s: &str) -> bool {
    s.is_empty()
        || s.strip_prefix(':')
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
}

/// Copy `url` (from the host on) with secret query values masked. `after` is the rest of the
/// URL's line: when the URL's last parameter is a secret cut short by a blank, the secret runs
/// on to the next `&` in it (or its end). Returns how many bytes of `after` it swallowed.
fn redact_query(url: &str, after: &str, out: &mut String) -> usize {
    let Some(q) = url.find('?') else {
        out.push_str(url);
        return 0;
    };
    out.push_str(&url[..=q]);
    let query_end = url[q + 1..].find('#').map_or(url.len(), |f| f + q + 1);
    let mut rest = &url[q + 1..query_end];
    let last_secret = loop {
        let (pair, sep, more) = match rest.find(['&', ';']) {
            Some(i) => (&rest[..i], &rest[i..=i], &rest[i + 1..]),
            None => (rest, "", ""),
        };
        let secret = match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
                true
            }
            _ => {
                out.push_str(pair);
                false
            }
        };
        out.push_str(sep);
        if sep.is_empty() {
            break secret;
        }
        rest = more;
    };
    out.push_str(&url[query_end..]);
    // Only a blank (not a quote or bracket) can have cut a raw secret short.
    if last_secret && query_end == url.len() && after.starts_with([' ', '\t']) {
        after.find('&').unwrap_or(after.len())
    } else {
        0
    }
}

/// A query parameter name that names a secret (percent-decoded, case, `-` and `_` ignored).
fn is_secret_key(raw: &str) -> bool {
    let decoded: String = form_urlencoded::parse(format!("{raw}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_else(|| raw.to_string());
    let key: String = decoded
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    const EXACT: [&str; 9] = [
        "password",
        "pass",
        "passwd",
        "pwd",
        "secret",
        "auth",
        "authorization",
        "sig",
        "signature",
    ];
    const SUFFIXES: [&str; 5] = ["password", "secret", "token", "key", "credential"];
    EXACT.contains(&key.as_str()) || SUFFIXES.iter().any(|s| key.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::redact;

    /// Every form the issue names, and the ones around them: (input, expected).
    const FORMS: &[(&str, &str)] = &[
        // Plain userinfo.
        (
            "connect amqp://decay:s3cret@rabbit:5672/%2f failed",
            "connect amqp://decay:***@rabbit:5672/%2f failed",
        ),
        (
            "postgres://u:p@h/db and postgres://h/db",
            "postgres://u:***@h/db and postgres://h/db",
        ),
        ("no url here", "no url here"),
        ("amqp://guest@h", "amqp://guest@h"),
        ("redis://:only-pass@h:6379", "redis://:***@h:6379"),
        // A raw `@` in the password: the last `@` of the authority ends the userinfo.
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        // A raw `/` or space in the password.
        ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
        (
            "url postgres://u:pa ss@h/db: refused",
            "url postgres://u:***@h/db: refused",
        ),
        ("postgres://u:a b c@h:5432/db", "postgres://u:***@h:5432/db"),
        // Query parameters naming secrets, sqlx's `?password=` first.
        (
            "postgres://u@h/db?password=s3cret&sslmode=require",
            "postgres://u@h/db?password=***&sslmode=require",
        ),
        (
            "postgres://h/db?sslmode=require&password=s3cret",
            "postgres://h/db?sslmode=require&password=***",
        ),
        (
            "postgres://h/db?password=pa ss&sslmode=require",
            "postgres://h/db?password=***&sslmode=require",
        ),
        (
            "postgres://h/db?password=pa ss",
            "postgres://h/db?password=***",
        ),
        (
            "base_url `https://api.example/v1?api-key=K1` must not have a query",
            "base_url `https://api.example/v1?api-key=***` must not have a query",
        ),
        (
            "https://h/v1?apikey=K&token=T&key=K2&secret=S&x=1",
            "https://h/v1?apikey=***&token=***&key=***&secret=***&x=1",
        ),
        (
            "https://h/?API_KEY=K;access_token=T#frag",
            "https://h/?API_KEY=***;access_token=***#frag",
        ),
        ("https://h/?api%2Dkey=K", "https://h/?api%2Dkey=***"),
        ("https://h/?x=1&y=2", "https://h/?x=1&y=2"),
        // http(s): the whole userinfo, a lone user is usually a token.
        (
            "https://ghp_T0KEN@github.example/x",
            "https://***@github.example/x",
        ),
        ("https://u:p@h/v1", "https://***@h/v1"),
        // Several URLs, comma-separated or not.
        (
            "amqp://a:p1@h1/%2f,amqp://b:p2@h2/%2f",
            "amqp://a:***@h1/%2f,amqp://b:***@h2/%2f",
        ),
        (
            "postgres://u:p1@h1,postgres://u:p2@h2",
            "postgres://u:***@h1,postgres://u:***@h2",
        ),
        // Not passwords: ports, host lists, IPv6 literals.
        (
            "postgres://h1:5432,h2:5433/db",
            "postgres://h1:5432,h2:5433/db",
        ),
        (
            "http://[::1]:8080/v1 at user@x",
            "http://[::1]:8080/v1 at user@x",
        ),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        // Quoted URLs end at the quote.
        (
            "\"postgres://u:p@h/db\" said \"no\"",
            "\"postgres://u:***@h/db\" said \"no\"",
        ),
        // Over several lines, each URL on its own.
        (
            "a postgres://u:p@h/db\nb amqp://v:q@m/%2f",
            "a postgres://u:***@h/db\nb amqp://v:***@m/%2f",
        ),
        // Not URLs.
        ("://x:y@z", "://x:y@z"),
        ("1://x:y@z", "1://x:y@z"),
        ("", ""),
    ];

    #[test]
    fn redacts_every_form() {
        for (input, expected) in FORMS {
            assert_eq!(redact(input), *expected, "input: {input:?}");
        }
    }

    /// Whatever the form, the secrets of the table never survive.
    #[test]
    fn no_secret_survives() {
        for (input, _) in FORMS {
            let out = redact(input);
            for secret in [
                "s3cret", "p1", "p2", "K1", "T0KEN", "pa ss", "a b c", "pa/ss",
            ] {
                assert!(!out.contains(secret), "{input:?} -> {out:?}");
            }
        }
    }
}
