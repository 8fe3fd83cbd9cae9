//! Reading message headers, which come from anyone who can publish: every value is bounded
//! and validated here, once, so nothing downstream sees a raw header.
//!
//! Our counters (`x-decay-*`) are written by [`super::Session::publish_retry`] as
//! non-negative 64-bit integers. What a counter reads as, for any header:
//!
//! | header                                  | reads as                            |
//! |-----------------------------------------|-------------------------------------|
//! | absent                                  | 0                                   |
//! | an integer in `0..=MAX_COUNTER`         | that integer                        |
//! | an integer above [`MAX_COUNTER`]        | [`MAX_COUNTER`] ([`Anomaly::TooLarge`]) |
//! | a negative integer                      | 0 ([`Anomaly::Negative`])           |
//! | any other type (string, float, table…)  | 0 ([`Anomaly::WrongType`])          |
//!
//! 0 for what cannot be read is safe: a counter only ever *shortens* a message's life (a
//! retry budget, a longer backoff), so someone who resets it gains nothing they could not get
//! by publishing a fresh message; the next re-publish writes a well-formed value in its place.
//! [`MAX_COUNTER`] is far above any retry budget (the configuration refuses larger budgets)
//! and the backoff is capped long before it, so a clamped counter behaves exactly like the
//! huge value it replaces, but every use of it is cheap and cannot overflow.

use lapin::types::{AMQPValue, FieldTable};

/// Header counting every re-publish of a message to a retry tier, whatever the reason (logs,
/// and the `deliveries` of a dead letter).
pub const HEADER_ATTEMPT: &str = "x-decay-attempt";
/// Header RabbitMQ quorum queues set with the number of earlier failed deliveries.
pub const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";

/// The largest value a counter read from a header takes.
pub const MAX_COUNTER: u32 = 1_000;

/// Longest string header we read, in bytes; the rest is ignored (a header can be megabytes).
pub const MAX_STRING_HEADER_BYTES: usize = 4096;

/// Retries with a budget, each counted in a header of its own: waiting for a deferral or for
/// another runner's lease is not a failure and uses up no budget, and one reason's retries do
/// not use up another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCounter {
    /// An unknown job id (the producer may not have committed the row yet).
    NotFound,
    /// A runner error that is not the database's fault.
    RunnerError,
    /// A transient database error: no budget (retried until the database is back), but the
    /// backoff grows with this count.
    Transient,
}

impl RetryCounter {
    pub const ALL: [RetryCounter; 3] = [
        RetryCounter::NotFound,
        RetryCounter::RunnerError,
        RetryCounter::Transient,
    ];

    /// The header holding this count.
    pub const fn header(self) -> &'static str {
        match self {
            RetryCounter::NotFound => "x-decay-retries-not-found",
            RetryCounter::RunnerError => "x-decay-retries-runner-error",
            RetryCounter::Transient => "x-decay-retries-transient",
        }
    }
}

/// Why a header did not read as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Anomaly {
    #[error("`{0}` is not an integer; read as 0")]
    WrongType(&'static str),
    #[error("`{0}` is negative ({1}); read as 0")]
    Negative(&'static str, i64),
    #[error("`{0}` is {1}, above the limit {MAX_COUNTER}; read as {MAX_COUNTER}")]
    TooLarge(&'static str, i64),
}

/// A counter as read, with what was wrong with the header, if anything (for a log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub value: u32,
    pub anomaly: Option<Anomaly>,
}

/// Any AMQP integer as i64; `None` for other types (a timestamp is not a count).
fn as_integer(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        _ => return None,
    })
}

/// Read one of our counters by the table in the module docs.
pub fn counter(headers: Option<&FieldTable>, key: &'static str) -> Counted {
    let Some(raw) = headers.and_then(|h| h.inner().get(key)) else {
        return Counted {
            value: 0,
            anomaly: None,
        };
    };
    match as_integer(raw) {
        None => Counted {
            value: 0,
            anomaly: Some(Anomaly::WrongType(key)),
        },
        Some(n) if n < 0 => Counted {
            value: 0,
            anomaly: Some(Anomaly::Negative(key, n)),
        },
        Some(n) if n > i64::from(MAX_COUNTER) => Counted {
            value: MAX_COUNTER,
            anomaly: Some(Anomaly::TooLarge(key, n)),
        },
        // In 0..=MAX_COUNTER, so it fits.
        Some(n) => Counted {
            value: u32::try_from(n).unwrap_or(MAX_COUNTER),
            anomaly: None,
        },
    }
}

/// The counters of a job message: all re-publishes, and each budgeted reason's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryCounts {
    /// Every re-publish so far (`x-decay-attempt`).
    pub total: u32,
    pub not_found: u32,
    pub runner_error: u32,
    pub transient: u32,
}

impl RetryCounts {
    /// Read every counter; the anomalies found, for the caller to log.
    pub fn read(headers: Option<&FieldTable>) -> (RetryCounts, Vec<Anomaly>) {
        let mut anomalies = Vec::new();
        let mut read = |key| {
            let c = counter(headers, key);
            anomalies.extend(c.anomaly);
            c.value
        };
        let counts = RetryCounts {
            total: read(HEADER_ATTEMPT),
            not_found: read(RetryCounter::NotFound.header()),
            runner_error: read(RetryCounter::RunnerError.header()),
            transient: read(RetryCounter::Transient.header()),
        };
        (counts, anomalies)
    }

    /// The count of one budgeted reason.
    pub fn of(&self, counter: RetryCounter) -> u32 {
        match counter {
            RetryCounter::NotFound => self.not_found,
            RetryCounter::RunnerError => self.runner_error,
            RetryCounter::Transient => self.transient,
        }
    }

    /// The counts after one more re-publish, for `counter` if the reason has one. Saturating:
    /// a clamped counter stays at the limit.
    pub fn next(&self, counter: Option<RetryCounter>) -> RetryCounts {
        let bump = |n: u32, this: bool| {
            if this {
                n.saturating_add(1).min(MAX_COUNTER)
            } else {
                n
            }
        };
        RetryCounts {
            total: bump(self.total, true),
            not_found: bump(self.not_found, counter == Some(RetryCounter::NotFound)),
            runner_error: bump(
                self.runner_error,
                counter == Some(RetryCounter::RunnerError),
            ),
            transient: bump(self.transient, counter == Some(RetryCounter::Transient)),
        }
    }

    /// Write the counts into `headers` (replacing what was there).
    pub fn write(&self, headers: &mut FieldTable) {
        headers.insert(
            HEADER_ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.total)),
        );
        for c in RetryCounter::ALL {
            headers.insert(
                c.header().into(),
                AMQPValue::LongLongInt(i64::from(self.of(c))),
            );
        }
    }

    /// True for the headers [`RetryCounts::write`] writes.
    pub fn is_counter_header(key: &str) -> bool {
        key == HEADER_ATTEMPT || RetryCounter::ALL.iter().any(|c| c.header() == key)
    }
}

/// The broker's count of earlier failed deliveries (`x-delivery-count`), for logs; bounded
/// like our counters.
pub fn delivery_count(headers: Option<&FieldTable>) -> u32 {
    counter(headers, HEADER_DELIVERY_COUNT).value
}

/// A string header (long or short string), at most [`MAX_STRING_HEADER_BYTES`] of it, lossily
/// decoded; `None` when absent or of another type.
pub fn string(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    let bytes: &[u8] = match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => s.as_bytes(),
        AMQPValue::ShortString(s) => s.as_str().as_bytes(),
        _ => return None,
    };
    let bounded = &bytes[..bytes.len().min(MAX_STRING_HEADER_BYTES)];
    Some(String::from_utf8_lossy(bounded).into_owned())
}

/// An integer header, clamped to `0..=i32::MAX` (what the database columns hold); `None` when
/// absent or not an integer.
pub fn bounded_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    headers
        .and_then(|h| h.inner().get(key))
        .and_then(as_integer)
        .map(|n| n.clamp(0, i64::from(i32::MAX)))
}

#[cfg(test)]
mod tests {
    use lapin::types::{LongString, ShortString};

    use super::*;

    fn with(key: &str, v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(key.into(), v);
        t
    }

    #[test]
    fn counters_read_by_the_table() {
        let k = HEADER_ATTEMPT;
        let read = |v: AMQPValue| counter(Some(&with(k, v)), k);
        assert_eq!(counter(None, k).value, 0);
        assert_eq!(counter(Some(&FieldTable::default()), k).value, 0);
        assert_eq!(read(AMQPValue::LongLongInt(3)).value, 3);
        assert_eq!(read(AMQPValue::ShortShortUInt(7)).value, 7);
        assert_eq!(read(AMQPValue::LongUInt(1000)).anomaly, None);
        assert_eq!(
            read(AMQPValue::LongUInt(4_294_967_295)),
            Counted {
                value: MAX_COUNTER,
                anomaly: Some(Anomaly::TooLarge(k, 4_294_967_295))
            }
        );
        assert_eq!(read(AMQPValue::LongLongInt(i64::MAX)).value, MAX_COUNTER);
        assert_eq!(
            read(AMQPValue::LongLongInt(-1)),
            Counted {
                value: 0,
                anomaly: Some(Anomaly::Negative(k, -1))
            }
        );
        assert_eq!(read(AMQPValue::LongLongInt(i64::MIN)).value, 0);
        for wrong in [
            AMQPValue::LongString(LongString::from("5")),
            AMQPValue::ShortString(ShortString::from("5")),
            AMQPValue::Double(5.0),
            AMQPValue::Boolean(true),
            AMQPValue::FieldTable(FieldTable::default()),
            AMQPValue::Void,
        ] {
            assert_eq!(
                read(wrong.clone()),
                Counted {
                    value: 0,
                    anomaly: Some(Anomaly::WrongType(k))
                },
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn counts_round_trip_through_headers_and_saturate() {
        let start = RetryCounts {
            total: 9,
            not_found: 1,
            runner_error: 2,
            transient: 3,
        };
        let next = start.next(Some(RetryCounter::NotFound));
        assert_eq!(
            next,
            RetryCounts {
                total: 10,
                not_found: 2,
                ..start
            }
        );
        // A deferral counts in the total only.
        assert_eq!(start.next(None), RetryCounts { total: 10, ..start });
        let mut headers = FieldTable::default();
        next.write(&mut headers);
        assert_eq!(RetryCounts::read(Some(&headers)), (next, vec![]));
        let full = RetryCounts {
            total: MAX_COUNTER,
            not_found: MAX_COUNTER,
            runner_error: MAX_COUNTER,
            transient: MAX_COUNTER,
        };
        for c in RetryCounter::ALL {
            assert_eq!(full.next(Some(c)), full);
        }
    }

    #[test]
    fn strings_are_bounded() {
        let big = "x".repeat(MAX_STRING_HEADER_BYTES * 3);
        let t = with("k", AMQPValue::LongString(LongString::from(big.as_str())));
        assert_eq!(
            string(Some(&t), "k").map(|s| s.len()),
            Some(MAX_STRING_HEADER_BYTES)
        );
        let t = with("k", AMQPValue::LongLongInt(1));
        assert_eq!(string(Some(&t), "k"), None);
        assert_eq!(bounded_int(Some(&t), "k"), Some(1));
        let t = with("k", AMQPValue::LongLongInt(i64::MAX));
        assert_eq!(bounded_int(Some(&t), "k"), Some(i64::from(i32::MAX)));
        let t = with("k", AMQPValue::LongLongInt(-5));
        assert_eq!(bounded_int(Some(&t), "k"), Some(0));
    }
}
