//! Durations as operators write them: `500ms`, `30s`, `10m`, `2h`, or bare seconds; a decimal
//! fraction is allowed (`1.5s`, `0.25h`). Parsing is exact (integer arithmetic to the
//! nanosecond, no floating point) and strict: every refusal says why.
//!
//! Grammar, after trimming ASCII blanks: `digits [ "." digits ] [ blanks ] [ unit ]`, with
//! `unit` one of `ms`, `s`, `m`, `h` (lowercase: `M` could be months, `S` is nothing). Refused:
//! signs, exponents, several dots, other units (`min`, `sec`, `d`, `us`, `ns`: say it in one of
//! the four), a fraction finer than a nanosecond, and anything above [`MAX_DURATION`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest duration accepted: a year. Nothing the service waits for is longer, and the
/// bound keeps every arithmetic on durations (timeouts, `chrono` conversions) far from
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Longest text considered; a duration never needs more.
const MAX_TEXT: usize = 64;

/// A duration flag: written `500ms`, `30s`, `10m`, `2h` or as bare seconds, and shown the same
/// way, so a default declared as a [`Duration`] constant reads naturally in `--help`: the
/// largest unit that counts it whole at least twice (`60s`, `5m`, `2h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl FromStr for DurationArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(DurationArg)
    }
}

impl fmt::Display for DurationArg {
    /// The canonical text: it parses back to exactly this duration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        let nanos = d.subsec_nanos();
        if !nanos.is_multiple_of(1_000_000) {
            // Finer than a millisecond: seconds with the fraction, trailing zeros dropped.
            let frac = format!("{nanos:09}");
            write!(f, "{secs}.{}s", frac.trim_end_matches('0'))
        } else if nanos != 0 || secs == 0 {
            write!(f, "{}ms", d.as_millis())
        } else if secs >= 7200 && secs.is_multiple_of(3600) {
            write!(f, "{}h", secs / 3600)
        } else if secs >= 120 && secs.is_multiple_of(60) {
            write!(f, "{}m", secs / 60)
        } else {
            write!(f, "{secs}s")
        }
    }
}

/// Nanoseconds per unit.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parse a duration by the grammar in the module docs.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    const HINT: &str = "expected e.g. 500ms, 30s, 10m, 2h or bare seconds";
    if raw.len() > MAX_TEXT {
        return Err(format!(
            "duration is {} bytes long (at most {MAX_TEXT}); {HINT}",
            raw.len()
        ));
    }
    let s = raw.trim_ascii();
    let shown = s.escape_debug();
    if s.is_empty() {
        return Err(format!("duration is empty; {HINT}"));
    }
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(int_end);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(after) => {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            after.split_at(end)
        }
        None => ("", rest),
    };
    if int.is_empty() {
        return Err(format!(
            "duration `{shown}` does not start with a number (no sign, no leading dot); {HINT}"
        ));
    }
    if rest.starts_with('.') {
        return Err(format!("duration `{shown}` has more than one `.`; {HINT}"));
    }
    if s.as_bytes().get(int_end) == Some(&b'.') && frac.is_empty() {
        return Err(format!(
            "duration `{shown}` has a `.` without digits after it; {HINT}"
        ));
    }
    let unit = rest.trim_ascii_start();
    let Some(per_unit) = unit_nanos(unit) else {
        return Err(format!(
            "unknown or ambiguous duration unit `{}` in `{shown}` (use ms, s, m or h)",
            unit.escape_debug()
        ));
    };
    let too_long = || format!("duration `{shown}` is longer than a year");
    // Integer part: anything over 20 digits is beyond u64 and certainly beyond a year.
    let whole: u128 = if int.len() > 20 {
        return Err(too_long());
    } else {
        int.parse().map_err(|_| too_long())?
    };
    // Fraction: exact when it resolves to whole nanoseconds.
    let frac_digits = frac.trim_end_matches('0');
    let scale = pow10(frac_digits.len());
    // More than 24 significant fraction digits can never resolve to whole nanoseconds (no unit
    // holds more than 2^13 or 5^11), and the bound keeps the products below within u128.
    let frac_value: u128 = if frac_digits.is_empty() {
        0
    } else if frac_digits.len() > 24 {
        return Err(format!(
            "duration `{shown}` is more precise than a nanosecond"
        ));
    } else {
        frac_digits.parse().map_err(|_| too_long())?
    };
    let frac_nanos = frac_value.checked_mul(per_unit).ok_or_else(too_long)?;
    if !frac_nanos.is_multiple_of(scale) {
        return Err(format!(
            "duration `{shown}` is more precise than a nanosecond"
        ));
    }
    let total = whole
        .checked_mul(per_unit)
        .and_then(|n| n.checked_add(frac_nanos / scale))
        .ok_or_else(too_long)?;
    if total > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, nanos))
}

fn pow10(n: usize) -> u128 {
    10u128.pow(u32::try_from(n).unwrap_or(u32::MAX).min(38))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration(" 30 s\n").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.25h").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("0.000000001").unwrap(),
            Duration::from_nanos(1)
        );
        assert_eq!(
            parse_duration("1.0000000000").unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
    }

    #[test]
    fn refusals_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("ten", "does not start with a number"),
            ("-1s", "does not start with a number"),
            ("+1s", "does not start with a number"),
            (".5s", "does not start with a number"),
            ("1.2.3s", "more than one `.`"),
            ("1.s", "without digits"),
            ("1e3", "unit `e3`"),
            ("5y", "unit `y`"),
            ("5M", "unit `M`"),
            ("5S", "unit `S`"),
            ("5min", "unit `min`"),
            ("5 s s", "unit `s s`"),
            ("5us", "unit `us`"),
            ("1s5", "unit `s5`"),
            ("8761h", "longer than a year"),
            ("31536000.000000001", "longer than a year"),
            ("99999999999999999999999999", "longer than a year"),
            ("18446744073709551616", "longer than a year"),
            ("0.0000000001", "more precise than a nanosecond"),
            ("0.0000001ms", "more precise than a nanosecond"),
            (
                "0.1234567890123456789012345678901234567h",
                "more precise than a nanosecond",
            ),
            (
                "1.0000000000000000000000000000000000000005h",
                "more precise than a nanosecond",
            ),
            ("5\u{a0}s", "duration unit"),
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let long = "1".repeat(MAX_TEXT + 1);
        assert!(parse_duration(&long).unwrap_err().contains("bytes long"));
    }
}
