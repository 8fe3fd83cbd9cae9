//! The one retry policy: wait 1 s, then double, never more than 60 s.
//!
//! Every wait of the service follows it, so an operator learns one rule:
//! * job messages that must wait (unknown id, runner error, transient database error) go to the
//!   retry tier fitting [`delay_for`] their attempt number;
//! * loops that reconnect (the worker's broker session, migrations waiting for the database,
//!   the producer's second try on a fresh connection) draw from [`reconnect_delays`], which adds
//!   jitter so replicas that lost the same server do not come back in lockstep.
//!
//! The policy is backon's exponential backoff (`backoff` is unmaintained, RUSTSEC-2025-0012,
//! and lapin 4 already depends on backon). [`delay_for`] computes the same numbers in O(1)
//! because its attempt number comes from a message header: anyone can publish
//! `x-decay-attempt: 4294967295`, and walking an iterator that far takes seconds.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The first wait.
pub const MIN_DELAY: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Each wait is this many times the previous one.
pub const FACTOR: u32 = 2;

/// The policy as a backon builder: 1 s, 2 s, 4 s ... capped at 60 s, never giving up.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(FACTOR as f32)
        .without_max_times()
}

/// Endless jittered delays for a reconnect loop. Start a new one after a success.
pub fn reconnect_delays() -> ExponentialBackoff {
    policy().with_jitter().build()
}

/// The wait before retry number `attempt` (0-based) of a job message: `MIN_DELAY * FACTOR^attempt`,
/// capped at [`MAX_DELAY`]. Constant time and saturating for any `attempt`.
pub fn delay_for(attempt: u32) -> Duration {
    FACTOR
        .checked_pow(attempt)
        .and_then(|factor| MIN_DELAY.checked_mul(factor))
        .map_or(MAX_DELAY, |delay| delay.min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn grows_and_caps() {
        assert_eq!(delay_for(0), Duration::from_secs(1));
        assert_eq!(delay_for(1), Duration::from_secs(2));
        assert_eq!(delay_for(3), Duration::from_secs(8));
        assert_eq!(delay_for(5), Duration::from_secs(32));
        assert_eq!(delay_for(6), Duration::from_secs(60));
        assert_eq!(delay_for(50), Duration::from_secs(60));
    }

    /// `delay_for` is the backon policy, computed directly.
    #[test]
    fn equals_the_backon_policy() {
        let walked: Vec<Duration> = policy().build().take(40).collect();
        let direct: Vec<Duration> = (0..40).map(delay_for).collect();
        assert_eq!(walked, direct);
    }

    /// A hostile attempt header costs nothing: the largest values answer the cap at once.
    #[test]
    fn huge_attempts_return_the_cap_instantly() {
        let started = Instant::now();
        for attempt in [31, 32, 33, 1_000, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
            assert_eq!(delay_for(attempt), MAX_DELAY, "attempt {attempt}");
        }
        // Seven lookups of arithmetic. The bound is generous on purpose: it cannot flake, yet
        // walking the backoff iterator up to u32::MAX (the old implementation) takes far longer.
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn reconnect_delays_are_jittered_within_the_policy() {
        for (n, wait) in reconnect_delays().take(12).enumerate() {
            let base = delay_for(n as u32);
            assert!(wait >= base && wait <= base * 2, "wait {n}: {wait:?}");
        }
    }
}
