//! The dashboard's query strings, parsed as the outside input they are.
//!
//! Each list page has a small typed filter ([`JobFilter`], [`LetterFilter`]). A query string
//! is one of three things:
//!
//! * **canonical**: exactly what the filter's `to_query` renders for the filter it denotes;
//! * **equivalent**: the same filter written another way (the empty fields a browser form
//!   submits, keys in another order, percent-encoding a browser chose, a time without seconds
//!   or without its `Z` as `<input type=datetime-local>` sends it), answered with a redirect
//!   to the canonical address, so every view has exactly one URL to bookmark or share;
//! * **refused**, with the reason: unknown or repeated keys, values outside their alphabet,
//!   impossible times, contradictory bounds.
//!
//! Parsing is total: whatever the bytes, it ends in one of the three, never in a panic (the
//! property tests in `tests/dashboard_query.rs` check this, and the round trips).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use crate::decay::{JobKind, JobStateKind};
use crate::ids::DecayJobId;

/// Longest query string a page parses; the server refuses longer ones before any handler
/// runs ([`crate::http::Limits::max_query_bytes`] has the same value by default).
pub const MAX_QUERY_BYTES: usize = 1024;

/// Longest failure code accepted in a filter.
const MAX_CODE_CHARS: usize = 128;

/// Longest dead-letter reason (the `dead_letters.reason` alphabet allows no more in practice).
const MAX_REASON_CHARS: usize = 64;

/// The latest time a filter or cursor may name: the end of year 9999.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// A query string that denotes a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Written exactly as the filter renders it: serve the page.
    Canonical(T),
    /// The same filter written another way: redirect to its canonical address.
    Redirect(T),
}

impl<T> Parsed<T> {
    /// The filter, however it was written.
    pub fn filter(&self) -> &T {
        match self {
            Parsed::Canonical(f) | Parsed::Redirect(f) => f,
        }
    }
}

/// Why a query string was refused. The text is shown on the 400 page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is {len} bytes long; at most {max} are accepted")]
    TooLong { len: usize, max: usize },
    #[error("unknown parameter `{key}`; this page takes {known}")]
    UnknownKey { key: String, known: String },
    #[error("parameter `{key}` is given more than once")]
    Repeated { key: &'static str },
    #[error("`{key}={value}` is not accepted: {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: String,
    },
    #[error("{0}")]
    Conflict(&'static str),
}

fn bad(key: &'static str, value: &str, expected: impl Into<String>) -> QueryError {
    // Values come from outside: keep them short and make control characters visible.
    let shown: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    QueryError::BadValue {
        key,
        value: shown,
        expected: expected.into(),
    }
}

/// Split a query string into the page's known keys (each at most once) and their decoded
/// values; empty values mean "not set" and are dropped.
fn pairs(raw: &str, known: &[&'static str]) -> Result<Vec<(&'static str, String)>, QueryError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong {
            len: raw.len(),
            max: MAX_QUERY_BYTES,
        });
    }
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let Some(known_key) = known.iter().copied().find(|k| *k == key) else {
            return Err(QueryError::UnknownKey {
                key: key.chars().take(40).flat_map(char::escape_debug).collect(),
                known: known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if seen.iter().any(|(k, _)| *k == known_key) {
            return Err(QueryError::Repeated { key: known_key });
        }
        seen.push((known_key, value.into_owned()));
    }
    seen.retain(|(_, v)| !v.is_empty());
    Ok(seen)
}

fn verdict<T>(raw: &str, canonical: String, filter: T) -> Parsed<T> {
    if raw == canonical {
        Parsed::Canonical(filter)
    } else {
        Parsed::Redirect(filter)
    }
}

/// A failure code as filters accept it: a stable invariant such as
/// `decay.compress.source_missing` (lowercase letters, digits, `_`, `.`, `-`; starts with a
/// letter; at most 128 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureCode(String);

impl FailureCode {
    pub fn parse(s: &str) -> Option<FailureCode> {
        let ok = !s.is_empty()
            && s.chars().count() <= MAX_CODE_CHARS
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
            });
        ok.then(|| FailureCode(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dead-letter reason as the `dead_letters` table stores it (`^[a-z][a-z0-9_]*$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReasonToken(String);

impl ReasonToken {
    pub fn parse(s: &str) -> Option<ReasonToken> {
        let ok = !s.is_empty()
            && s.len() <= MAX_REASON_CHARS
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        ok.then(|| ReasonToken(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parse a filter time. Canonical: `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds). Also
/// accepted, as equivalents: without the seconds and/or without the `Z` (what a
/// `datetime-local` input submits; the page says times are UTC).
fn parse_time(key: &'static str, s: &str) -> Result<DateTime<Utc>, QueryError> {
    const EXPECTED: &str = "a UTC time like 2026-05-13T12:00:00Z";
    let fail = || bad(key, s, EXPECTED);
    let body = s.strip_suffix('Z').unwrap_or(s);
    let b = body.as_bytes();
    let shape = |i: usize, c: u8| b.get(i) == Some(&c);
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if !(b.len() == 16 || b.len() == 19)
        || !shape(4, b'-')
        || !shape(7, b'-')
        || !shape(10, b'T')
        || !shape(13, b':')
        || (b.len() == 19 && !shape(16, b':'))
    {
        return Err(fail());
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
    ) else {
        return Err(fail());
    };
    let sec = if b.len() == 19 {
        digits(17..19).ok_or_else(fail)?
    } else {
        0
    };
    let date = i32::try_from(y)
        .ok()
        .filter(|y| *y >= 1)
        .and_then(|y| NaiveDate::from_ymd_opt(y, mo, d))
        .ok_or_else(|| bad(key, s, "no such date"))?;
    let time = NaiveTime::from_hms_opt(h, mi, sec).ok_or_else(|| bad(key, s, "no such time"))?;
    Ok(NaiveDateTime::new(date, time).and_utc())
}

fn render_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parse a canonical decimal: no sign, no leading zero, in `0..=max`.
fn parse_decimal(s: &str, max: i64) -> Option<i64> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|c| c.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical
        .then(|| s.parse::<i64>().ok())
        .flatten()
        .filter(|n| (0..=max).contains(n))
}

/// A position in the jobs list: the `(updated_at, id)` of a row (the list's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCursor {
    /// Microsecond precision, as PostgreSQL stores it.
    pub updated_at: DateTime<Utc>,
    pub id: DecayJobId,
}

impl JobCursor {
    /// Canonical text: `<microseconds since 1970>_<job id>`.
    pub fn render(&self) -> String {
        format!("{}_{}", self.updated_at.timestamp_micros(), self.id)
    }

    fn parse(key: &'static str, s: &str) -> Result<JobCursor, QueryError> {
        let expected = "a list position like 1778673600000000_dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV";
        let (micros, id) = s.split_once('_').ok_or_else(|| bad(key, s, expected))?;
        let updated_at = parse_decimal(micros, MAX_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(|| bad(key, s, expected))?;
        let id = DecayJobId::parse(id).map_err(|_| bad(key, s, expected))?;
        Ok(JobCursor { updated_at, id })
    }
}

/// Which page of the jobs list (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobPage {
    /// The newest jobs.
    #[default]
    Newest,
    /// The jobs right after this position (older).
    Older(JobCursor),
    /// The jobs right before this position (newer).
    Newer(JobCursor),
}

/// The filter of the jobs list: `/jobs?state=&kind=&code=&from=&to=&older=|newer=`.
/// `from`/`to` bound `updated_at` (the job's last change: when it failed, completed...),
/// `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobFilter {
    pub state: Option<JobStateKind>,
    pub kind: Option<JobKind>,
    pub code: Option<FailureCode>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub page: JobPage,
}

const JOB_KEYS: [&str; 7] = ["state", "kind", "code", "from", "to", "older", "newer"];

impl JobFilter {
    /// Parse a raw query string (`None`: no `?` at all).
    pub fn parse(raw: Option<&str>) -> Result<Parsed<JobFilter>, QueryError> {
        let raw = raw.unwrap_or("");
        let mut f = JobFilter::default();
        let mut older = None;
        let mut newer = None;
        for (key, value) in pairs(raw, &JOB_KEYS)? {
            let v = value.as_str();
            match key {
                "state" => {
                    f.state = Some(JobStateKind::from_wire(v).ok_or_else(|| {
                        bad(key, v, one_of(JobStateKind::ALL.map(JobStateKind::wire)))
                    })?);
                }
                "kind" => {
                    f.kind = Some(
                        JobKind::from_wire(v)
                            .ok_or_else(|| bad(key, v, one_of(JobKind::ALL.map(JobKind::wire))))?,
                    );
                }
                "code" => {
                    f.code = Some(FailureCode::parse(v).ok_or_else(|| {
                        bad(
                            key,
                            v,
                            "a failure code like decay.compress.source_missing (lowercase \
                             letters, digits, `_`, `.`, `-`)",
                        )
                    })?);
                }
                "from" => f.from = Some(parse_time(key, v)?),
                "to" => f.to = Some(parse_time(key, v)?),
                "older" => older = Some(JobCursor::parse(key, v)?),
                _ => newer = Some(JobCursor::parse("newer", v)?),
            }
        }
        f.page = match (older, newer) {
            (Some(_), Some(_)) => {
                return Err(QueryError::Conflict(
                    "`older` and `newer` cannot both be given",
                ));
            }
            (Some(c), None) => JobPage::Older(c),
            (None, Some(c)) => JobPage::Newer(c),
            (None, None) => JobPage::Newest,
        };
        if let (Some(from), Some(to)) = (f.from, f.to)
            && from >= to
        {
            return Err(QueryError::Conflict("`from` must be earlier than `to`"));
        }
        let canonical = f.to_query();
        Ok(verdict(raw, canonical, f))
    }

    /// The canonical query string (empty for the unfiltered first page).
    pub fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(x) = self.state {
            s.append_pair("state", x.wire());
        }
        if let Some(x) = self.kind {
            s.append_pair("kind", x.wire());
        }
        if let Some(x) = &self.code {
            s.append_pair("code", x.as_str());
        }
        if let Some(x) = &self.from {
            s.append_pair("from", &render_time(x));
        }
        if let Some(x) = &self.to {
            s.append_pair("to", &render_time(x));
        }
        match &self.page {
            JobPage::Newest => {}
            JobPage::Older(c) => {
                s.append_pair("older", &c.render());
            }
            JobPage::Newer(c) => {
                s.append_pair("newer", &c.render());
            }
        }
        s.finish()
    }

    /// The canonical address of this view.
    pub fn href(&self) -> String {
        with_query("/jobs", &self.to_query())
    }

    /// The same filter on another page.
    pub fn at(&self, page: JobPage) -> JobFilter {
        JobFilter {
            page,
            ..self.clone()
        }
    }

    /// The time bound as the filter form shows it (`datetime-local` value, UTC).
    pub fn form_time(t: Option<&DateTime<Utc>>) -> String {
        t.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default()
    }
}

/// The filter of the dead-letters list: `/dead-letters?reason=&after=` (oldest first; `after`
/// is the last letter id of the previous page).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LetterFilter {
    pub reason: Option<ReasonToken>,
    pub after: Option<i64>,
}

const LETTER_KEYS: [&str; 2] = ["reason", "after"];

impl LetterFilter {
    pub fn parse(raw: Option<&str>) -> Result<Parsed<LetterFilter>, QueryError> {
        let raw = raw.unwrap_or("");
        let mut f = LetterFilter::default();
        for (key, value) in pairs(raw, &LETTER_KEYS)? {
            let v = value.as_str();
            if key == "reason" {
                f.reason = Some(ReasonToken::parse(v).ok_or_else(|| {
                    bad(
                        key,
                        v,
                        "a reason like job_not_found (lowercase letters, digits, `_`)",
                    )
                })?);
            } else {
                f.after = Some(
                    parse_decimal(v, i64::MAX)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(key, v, "a dead letter id (a positive number)"))?,
                );
            }
        }
        let canonical = f.to_query();
        Ok(verdict(raw, canonical, f))
    }

    pub fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(r) = &self.reason {
            s.append_pair("reason", r.as_str());
        }
        if let Some(a) = self.after {
            s.append_pair("after", &a.to_string());
        }
        s.finish()
    }

    pub fn href(&self) -> String {
        with_query("/dead-letters", &self.to_query())
    }
}

fn with_query(path: &str, query: &str) -> String {
    let mut out = path.to_string();
    if !query.is_empty() {
        let _ = write!(out, "?{query}");
    }
    out
}

fn one_of<const N: usize>(tokens: [&str; N]) -> String {
    format!("one of {}", tokens.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn canonical(raw: &str) -> JobFilter {
        match JobFilter::parse(Some(raw)) {
            Ok(Parsed::Canonical(f)) => f,
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn canonical_forms_parse_to_their_filter() {
        assert_eq!(canonical(""), JobFilter::default());
        let f = canonical(
            "state=failed&kind=candidate_compression&code=decay.compress.source_missing&from=2026-05-13T12%3A00%3A00Z",
        );
        assert_eq!(f.state, Some(JobStateKind::Failed));
        assert_eq!(f.kind, Some(JobKind::CandidateCompression));
        assert_eq!(f.code.unwrap().as_str(), "decay.compress.source_missing");
        assert_eq!(
            f.from,
            Some(Utc.with_ymd_and_hms(2026, 5, 13, 12, 0, 0).unwrap())
        );
    }

    #[test]
    fn browser_forms_redirect_to_the_canonical_address() {
        let raw = "state=failed&kind=&code=&from=2026-05-13T12%3A00&to=";
        let Ok(Parsed::Redirect(f)) = JobFilter::parse(Some(raw)) else {
            panic!("expected a redirect");
        };
        assert_eq!(f.href(), "/jobs?state=failed&from=2026-05-13T12%3A00%3A00Z");
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("state=FAILED", "one of pending"),
            ("state=failed&state=failed", "more than once"),
            ("colour=red", "unknown parameter `colour`"),
            ("from=2026-02-30T00:00:00Z", "no such date"),
            ("from=2026-05-13T12:00:00+02:00", "UTC time"),
            (
                "from=2026-05-13T13:00:00Z&to=2026-05-13T12:00:00Z",
                "earlier",
            ),
            ("older=01_dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV", "list position"),
            ("code=Decay", "failure code"),
        ];
        for (raw, why) in cases {
            let e = JobFilter::parse(Some(raw)).unwrap_err();
            assert!(e.to_string().contains(why), "{raw}: {e}");
        }
        let long = "a".repeat(MAX_QUERY_BYTES + 1);
        assert!(matches!(
            JobFilter::parse(Some(&long)),
            Err(QueryError::TooLong { .. })
        ));
    }

    #[test]
    fn cursors_round_trip() {
        let c = JobCursor {
            updated_at: DateTime::from_timestamp_micros(1_778_673_600_123_456).unwrap(),
            id: DecayJobId::new(),
        };
        let f = JobFilter::default().at(JobPage::Older(c));
        assert_eq!(canonical(&f.to_query()), f);
    }

    #[test]
    fn letter_filters() {
        let Ok(Parsed::Canonical(f)) = LetterFilter::parse(Some("reason=job_not_found&after=7"))
        else {
            panic!()
        };
        assert_eq!(f.after, Some(7));
        assert!(LetterFilter::parse(Some("after=0")).is_err());
        assert!(LetterFilter::parse(Some("after=-1")).is_err());
        assert!(LetterFilter::parse(Some("reason=Bad")).is_err());
    }
}
