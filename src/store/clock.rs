//! Whose clock the statements read (issue 11 item 9).
//!
//! Claims, leases, heartbeats, lease expiry and due checks compare instants written by one
//! replica with instants read by another, so they must come from one clock: PostgreSQL's. A
//! replica whose own clock runs ahead would otherwise see live leases as expired and take over
//! running jobs. The convention, for every statement of the store: **the current instant is
//! `now()` evaluated by the database** (the statement's transaction start, so one statement
//! sees one instant), and intervals (a lease) travel as durations, added in SQL. No caller
//! passes a wall-clock `now` for these decisions.
//!
//! [`Clock::Frozen`] replaces `now()` with an instant the test sets (spec §4.7: tests pass a
//! frozen `now`), so the runner's and the store's rules stay testable at exact instants. It is
//! the only other clock, and nothing outside tests builds one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::jobs::Sql;

/// The clock of a [`crate::store::Store`]'s statements.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The database's `now()`: production, and every replica agrees.
    #[default]
    Database,
    /// A fixed instant that tests move by hand ([`Clock::set`]).
    Frozen(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A frozen clock showing `at`.
    pub fn frozen(at: DateTime<Utc>) -> Clock {
        Clock::Frozen(Arc::new(Mutex::new(at)))
    }

    /// Move a frozen clock to `at` (every store sharing it sees the change); no effect on
    /// [`Clock::Database`].
    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Frozen(t) = self {
            *t.lock().unwrap_or_else(PoisonError::into_inner) = at;
        }
    }

    /// The frozen instant, if this is a frozen clock.
    fn frozen_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Clock::Database => None,
            Clock::Frozen(t) => Some(*t.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Push the current instant: `now()`, or the frozen instant as a bind.
    pub(super) fn push_now(&self, q: &mut Sql) {
        match self.frozen_at() {
            None => q.push("now()"),
            Some(at) => q.push_bind(at).push("::timestamptz"),
        };
    }

    /// Push `(<now> + <span>)`: the end of a lease of `span` starting now. The span travels
    /// in whole microseconds (PostgreSQL's resolution), saturating far beyond any lease.
    pub(super) fn push_now_plus(&self, q: &mut Sql, span: Duration) {
        q.push("(");
        self.push_now(q);
        q.push(" + ");
        push_interval(q, span);
        q.push(")");
    }

    /// Push `(<now> - <span>)`.
    pub(super) fn push_now_minus(&self, q: &mut Sql, span: Duration) {
        q.push("(");
        self.push_now(q);
        q.push(" - ");
        push_interval(q, span);
        q.push(")");
    }
}

/// Push a duration as an `interval`.
fn push_interval(q: &mut Sql, span: Duration) {
    // An interval past ~292,000 years overflows PostgreSQL; no lease or threshold gets near.
    let micros = i64::try_from(span.as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_INTERVAL_MICROS);
    q.push("(")
        .push_bind(micros)
        .push("::bigint * interval '1 microsecond')");
}

/// 100 years: the largest span pushed (clamped), far inside PostgreSQL's range.
const MAX_INTERVAL_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;
