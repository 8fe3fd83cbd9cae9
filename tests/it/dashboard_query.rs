//! Property tests of the dashboard's query-string parsing (outside input): it never panics,
//! canonical forms round-trip, equivalent forms redirect to the canonical one, and
//! non-canonical values are refused with a reason. Each property prints how many cases ran.

use chrono::{DateTime, Utc};
use decay_worker::decay::{JobKind, JobStateKind};
use decay_worker::http::dashboard::query::{
    FailureCode, JobCursor, JobFilter, JobPage, LetterFilter, MAX_QUERY_BYTES, Parsed, QueryError,
    ReasonToken,
};
use decay_worker::ids::DecayJobId;
use proptest::prelude::*;

use crate::testkit::prop::check;
use proptest::test_runner::TestCaseError;

/// The end of year 9999, the latest time filters accept.
const MAX_SECS: i64 = 253_402_300_799;

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Year 1 to 9999, whole seconds.
    (-62_135_596_800i64..=MAX_SECS).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

fn job_id() -> impl Strategy<Value = DecayJobId> {
    any::<u128>().prop_map(|u| DecayJobId::parse(&format!("dcy_{}", ulid::Ulid(u))).unwrap())
}

fn cursor() -> impl Strategy<Value = JobCursor> {
    (0i64..=MAX_SECS * 1_000_000 + 999_999, job_id()).prop_map(|(micros, id)| JobCursor {
        updated_at: DateTime::from_timestamp_micros(micros).unwrap(),
        id,
    })
}

fn job_filter() -> impl Strategy<Value = JobFilter> {
    (
        proptest::option::of(proptest::sample::select(JobStateKind::ALL.to_vec())),
        proptest::option::of(proptest::sample::select(JobKind::ALL.to_vec())),
        proptest::option::of(
            "[a-z][a-z0-9_.-]{0,60}".prop_map(|s| FailureCode::parse(&s).unwrap()),
        ),
        proptest::option::of(time()),
        proptest::option::of(time()),
        prop_oneof![
            Just(JobPage::Newest),
            cursor().prop_map(JobPage::Older),
            cursor().prop_map(JobPage::Newer),
        ],
    )
        .prop_map(|(state, kind, code, a, b, page)| {
            // `from` must be earlier than `to`: order two times, drop `to` when equal.
            let (from, to) = match (a, b) {
                (Some(a), Some(b)) if a == b => (Some(a), None),
                (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                other => other,
            };
            JobFilter {
                state,
                kind,
                code,
                from,
                to,
                page,
            }
        })
}

fn letter_filter() -> impl Strategy<Value = LetterFilter> {
    (
        proptest::option::of("[a-z][a-z0-9_]{0,40}".prop_map(|s| ReasonToken::parse(&s).unwrap())),
        proptest::option::of(1i64..=i64::MAX),
    )
        .prop_map(|(reason, after)| LetterFilter { reason, after })
}

/// Query strings from the page's alphabet: known and unknown keys, values near the valid
/// ones, stray separators and percent-escapes; mostly invalid, sometimes valid.
fn soup() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("state".to_string()),
        Just("kind".to_string()),
        Just("code".to_string()),
        Just("from".to_string()),
        Just("to".to_string()),
        Just("older".to_string()),
        Just("newer".to_string()),
        Just("reason".to_string()),
        Just("after".to_string()),
        "[a-zA-Z%+]{0,6}",
    ];
    let value = prop_oneof![
        Just("failed".to_string()),
        Just("candidate_compression".to_string()),
        Just("2026-05-13T12%3A00%3A00Z".to_string()),
        Just("2026-05-13T12:00".to_string()),
        Just("1778673600000000_dcy_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string()),
        "[0-9]{0,20}",
        "[ -~]{0,24}",
        "(%[0-9A-Fa-f]{2}|%[^0-9A-Fa-f]|[a-z0-9_.:TZ+-]){0,30}",
    ];
    proptest::collection::vec((key, value, any::<bool>()), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v, eq)| if eq { format!("{k}={v}") } else { k + &v })
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// A canonical query with one small edit (a character dropped, inserted or changed, pairs
/// swapped or repeated): inputs right at the edge of valid.
fn near_canonical() -> impl Strategy<Value = String> {
    (
        job_filter(),
        0usize..4,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop::sample::select(vec![
            '=', '&', '%', '+', 'Z', 'z', '0', '9', '_', 'A', ' ', 'é',
        ]),
    )
        .prop_map(|(f, op, i, j, c)| {
            let q = f.to_query();
            let mut chars: Vec<char> = q.chars().collect();
            let mut pairs: Vec<&str> = q.split('&').collect();
            match op {
                0 if !chars.is_empty() => {
                    chars.remove(i.index(chars.len()));
                    chars.into_iter().collect()
                }
                1 => {
                    chars.insert(i.index(chars.len() + 1), c);
                    chars.into_iter().collect()
                }
                2 if !chars.is_empty() => {
                    let k = i.index(chars.len());
                    chars[k] = c;
                    chars.into_iter().collect()
                }
                _ => {
                    let (a, b) = (i.index(pairs.len()), j.index(pairs.len()));
                    if a == b {
                        let p = pairs[a];
                        pairs.push(p);
                    } else {
                        pairs.swap(a, b);
                    }
                    pairs.join("&")
                }
            }
        })
}

fn any_query() -> impl Strategy<Value = String> {
    prop_oneof![
        near_canonical(),
        soup(),
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        job_filter().prop_map(|f| f.to_query()),
    ]
}

/// Whatever the input: no panic, and the outcome is consistent with the canonical form.
fn consistent<T: std::fmt::Debug + PartialEq>(
    raw: &str,
    parsed: Result<Parsed<T>, QueryError>,
    render: impl Fn(&T) -> String,
    reparse: impl Fn(&str) -> Result<Parsed<T>, QueryError>,
) -> Result<(), TestCaseError> {
    match parsed {
        Ok(Parsed::Canonical(f)) => prop_assert_eq!(render(&f), raw),
        Ok(Parsed::Redirect(f)) => {
            let canonical = render(&f);
            prop_assert_ne!(&canonical, raw);
            prop_assert_eq!(reparse(&canonical), Ok(Parsed::Canonical(f)));
        }
        Err(e) => prop_assert!(
            !e.to_string().trim().is_empty(),
            "a refusal without a reason"
        ),
    }
    Ok(())
}

#[test]
fn job_filters_never_panic_and_stay_consistent() {
    check("job filter: any input", any_query(), |raw| {
        consistent(
            &raw,
            JobFilter::parse(Some(&raw)),
            JobFilter::to_query,
            |s| JobFilter::parse(Some(s)),
        )
    });
}

#[test]
fn letter_filters_never_panic_and_stay_consistent() {
    check("letter filter: any input", any_query(), |raw| {
        consistent(
            &raw,
            LetterFilter::parse(Some(&raw)),
            LetterFilter::to_query,
            |s| LetterFilter::parse(Some(s)),
        )
    });
}

#[test]
fn canonical_job_filters_round_trip() {
    check("job filter: round trip", job_filter(), |f| {
        let q = f.to_query();
        prop_assert!(q.len() <= MAX_QUERY_BYTES, "{} bytes", q.len());
        prop_assert_eq!(JobFilter::parse(Some(&q)), Ok(Parsed::Canonical(f.clone())));
        let href = f.href();
        let expected = if q.is_empty() {
            "/jobs".to_string()
        } else {
            format!("/jobs?{q}")
        };
        prop_assert_eq!(href, expected);
        Ok(())
    });
}

#[test]
fn canonical_letter_filters_round_trip() {
    check("letter filter: round trip", letter_filter(), |f| {
        let q = f.to_query();
        prop_assert_eq!(LetterFilter::parse(Some(&q)), Ok(Parsed::Canonical(f)));
        Ok(())
    });
}

/// The same filter as a browser form submits it: every field present (empty when unset),
/// fields in the form's order, times as `datetime-local` values (no `Z`, `:` not escaped).
fn as_browser_form(f: &JobFilter, drop_seconds: bool) -> String {
    let time = |t: &Option<DateTime<Utc>>| {
        t.map(|t| {
            if drop_seconds && t.format("%S").to_string() == "00" {
                t.format("%Y-%m-%dT%H:%M").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S").to_string()
            }
        })
        .unwrap_or_default()
    };
    let mut parts = vec![
        format!("state={}", f.state.map(JobStateKind::wire).unwrap_or("")),
        format!("kind={}", f.kind.map(JobKind::wire).unwrap_or("")),
        format!(
            "code={}",
            f.code.as_ref().map(FailureCode::as_str).unwrap_or("")
        ),
        format!("from={}", time(&f.from)),
        format!("to={}", time(&f.to)),
    ];
    match &f.page {
        JobPage::Newest => {}
        JobPage::Older(c) => parts.push(format!("older={}", c.render())),
        JobPage::Newer(c) => parts.push(format!("newer={}", c.render())),
    }
    parts.reverse();
    parts.join("&")
}

#[test]
fn equivalent_forms_redirect_to_the_canonical_filter() {
    check(
        "job filter: browser forms redirect",
        (job_filter(), any::<bool>()),
        |(f, drop_seconds)| {
            let raw = as_browser_form(&f, drop_seconds);
            prop_assert_eq!(JobFilter::parse(Some(&raw)), Ok(Parsed::Redirect(f)));
            Ok(())
        },
    );
}

/// Ways to write a filter's query that are not canonical and not equivalent.
#[derive(Debug, Clone)]
enum Spoil {
    UppercaseState,
    UnknownKey(String),
    RepeatKey,
    TimeWithOffset,
    TimeWithFraction,
    CursorLeadingZero,
    CursorBadId,
    CodeUppercase,
    FromNotBeforeTo,
    OlderAndNewer,
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        Just(Spoil::UppercaseState),
        "[a-z]{1,8}"
            .prop_filter("not a key", |k| {
                !["state", "kind", "code", "from", "to", "older", "newer"].contains(&k.as_str())
            })
            .prop_map(Spoil::UnknownKey),
        Just(Spoil::RepeatKey),
        Just(Spoil::TimeWithOffset),
        Just(Spoil::TimeWithFraction),
        Just(Spoil::CursorLeadingZero),
        Just(Spoil::CursorBadId),
        Just(Spoil::CodeUppercase),
        Just(Spoil::FromNotBeforeTo),
        Just(Spoil::OlderAndNewer),
    ]
}

#[test]
fn non_canonical_values_are_refused_with_a_reason() {
    check(
        "job filter: spoiled forms refused",
        (job_filter(), spoil(), cursor()),
        |(f, how, c)| {
            let base = f.to_query();
            let join = |extra: String| {
                if base.is_empty() {
                    extra
                } else {
                    format!("{base}&{extra}")
                }
            };
            let t = f.from.unwrap_or_else(Utc::now).format("%Y-%m-%dT%H:%M:%S");
            let raw = match &how {
                Spoil::UppercaseState => {
                    let s = f
                        .state
                        .unwrap_or(JobStateKind::Failed)
                        .wire()
                        .to_uppercase();
                    format!("state={s}")
                }
                Spoil::UnknownKey(k) => join(format!("{k}=1")),
                Spoil::RepeatKey => {
                    format!("kind=episode_compression&kind=episode_compression&{base}")
                }
                Spoil::TimeWithOffset => format!("from={t}%2B00%3A00"),
                Spoil::TimeWithFraction => format!("to={t}.5Z"),
                Spoil::CursorLeadingZero => format!("older=0{}", c.render()),
                Spoil::CursorBadId => format!(
                    "newer={}_dcy_{}",
                    c.updated_at.timestamp_micros(),
                    c.id.to_string().to_lowercase().trim_start_matches("dcy_")
                ),
                Spoil::CodeUppercase => "code=Decay.Runner".to_string(),
                Spoil::FromNotBeforeTo => format!("from={t}Z&to={t}Z"),
                Spoil::OlderAndNewer => format!("older={0}&newer={0}", c.render()),
            };
            let e = match JobFilter::parse(Some(&raw)) {
                Err(e) => e,
                Ok(p) => return Err(TestCaseError::fail(format!("{raw:?} accepted: {p:?}"))),
            };
            let ok = matches!(
                (&how, &e),
                (Spoil::UnknownKey(_), QueryError::UnknownKey { .. })
                    | (Spoil::RepeatKey, QueryError::Repeated { .. })
                    | (
                        Spoil::FromNotBeforeTo | Spoil::OlderAndNewer,
                        QueryError::Conflict(_)
                    )
                    | (_, QueryError::BadValue { .. })
            );
            prop_assert!(ok, "{:?} refused for the wrong reason: {}", how, e);
            prop_assert!(!e.to_string().is_empty());
            Ok(())
        },
    );
}

#[test]
fn oversized_queries_are_refused() {
    check(
        "job filter: oversized",
        (MAX_QUERY_BYTES + 1..4 * MAX_QUERY_BYTES).prop_map(|n| "a".repeat(n)),
        |raw| {
            let too_long = matches!(
                JobFilter::parse(Some(&raw)),
                Err(QueryError::TooLong { .. })
            );
            prop_assert!(too_long, "{} bytes accepted", raw.len());
            Ok(())
        },
    );
}
