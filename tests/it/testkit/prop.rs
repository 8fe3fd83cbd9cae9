//! One way to run a property test in the integration binary: an explicit case count (a
//! `PROPTEST_CASES` in the environment cannot lower it), the count printed, no persistence files.

use std::sync::atomic::{AtomicU32, Ordering};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per property (explicit, so a `PROPTEST_CASES` in the environment cannot lower it).
pub const CASES: u32 = 2_000;

/// Run one property with [`CASES`] cases, print the count, and fail the test on a
/// counterexample (proptest shrinks it first).
pub fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let ran = AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!(
        "proptest {name}: {CASES} cases passed ({} runs including shrinking)",
        ran.load(Ordering::Relaxed)
    );
}
