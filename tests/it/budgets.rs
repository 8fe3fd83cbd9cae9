//! Retry budgets per reason, through the real broker: the counters travel in headers through
//! the retry tiers and back, so these run real workers against RabbitMQ and PostgreSQL.

use std::time::Duration;

use chrono::Utc;
use decay_worker::broker::RetryCounter;
use decay_worker::broker::headers::MAX_COUNTER;
use decay_worker::broker::message::encode_body;
use decay_worker::ids::DecayJobId;
use lapin::types::{AMQPValue, FieldTable, LongString};
use sqlx::PgPool;

use crate::testkit::candidate_job;
use crate::testkit::harness::{Harness, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// How many times the worker logged sending this job's message to a retry tier for `why`.
fn retries_logged(log: &str, id: &DecayJobId, why: &str) -> usize {
    let (job, why) = (format!("job_id={id}"), format!("why=\"{why}\""));
    log.lines()
        .filter(|l| l.contains("retry scheduled") && l.contains(&job) && l.contains(&why))
        .count()
}

/// The case: a job deferred several times (`not_due`), then not found (its row is
/// gone). Before, the deferrals had used up the not-found budget and the message was
/// dead-lettered at once; now it gets its two not-found retries, with the short backoff.
#[sqlx::test(migrations = "./migrations")]
async fn deferrals_do_not_use_up_the_not_found_budget(pool: PgPool) {
    let h = Harness::new(pool.clone()).await;
    let mut w = h.spawn_worker("w-budget", &["--not-found-retries", "2"]);
    w.await_ready().await;
    // Due in 9 s: every deferral waits in the 1 s tier, so it comes back about every second.
    let job = candidate_job(&h.store, Utc::now() + chrono::Duration::seconds(9)).await;
    h.publish(&job).await;
    wait_until(LONG, "three deferrals", || async {
        retries_logged(&h.log_of("w-budget"), &job, "not_due") >= 3
    })
    .await;
    // The row goes away while the message waits (a producer that rolled back, a purge).
    let deleted = sqlx::query("DELETE FROM decay_jobs WHERE id = $1 AND state = 'pending'")
        .bind(job.to_string())
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 1, "the job was still pending and waiting");
    wait_until(LONG, "the message dead-lettered", || async {
        h.dead_letters().await.len() == 1
    })
    .await;
    let letter = h.dead_letters().await.remove(0);
    assert_eq!(letter.reason, "job_not_found");
    assert_eq!(letter.job_id.as_deref(), Some(job.to_string().as_str()));
    let log = h.log_of("w-budget");
    assert_eq!(
        retries_logged(&log, &job, "not_found"),
        2,
        "the full not-found budget after the deferrals:\n{log}"
    );
    let deferrals = retries_logged(&log, &job, "not_due");
    // Every re-publish still counts in the total: deferrals, two retries, the last delivery.
    assert_eq!(letter.deliveries, deferrals as i32 + 2 + 1);
    assert_eq!(w.terminate().await, Some(0));
}

/// A message published with `x-decay-attempt: 4294967295` and a negative, a string and a huge
/// per-reason counter: each is read by the documented rule (logged as malformed), the
/// not-found budget is counted from its own header, and the total stays clamped.
#[sqlx::test(migrations = "./migrations")]
async fn crafted_counters_are_clamped_and_named(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut w = h.spawn_worker("w-crafted", &["--not-found-retries", "2"]);
    w.await_ready().await;
    let ghost = DecayJobId::new();
    let mut headers = FieldTable::default();
    headers.insert(
        decay_worker::broker::HEADER_ATTEMPT.into(),
        AMQPValue::LongUInt(u32::MAX),
    );
    headers.insert(
        RetryCounter::NotFound.header().into(),
        AMQPValue::LongLongInt(-7),
    );
    headers.insert(
        RetryCounter::RunnerError.header().into(),
        AMQPValue::LongString(LongString::from("5")),
    );
    headers.insert(
        RetryCounter::Transient.header().into(),
        AMQPValue::LongLongInt(i64::MAX),
    );
    h.session()
        .publish_raw(&encode_body(&ghost), headers)
        .await
        .unwrap();
    wait_until(LONG, "the ghost dead-lettered", || async {
        h.dead_letters().await.len() == 1
    })
    .await;
    let letter = h.dead_letters().await.remove(0);
    assert_eq!(letter.reason, "job_not_found");
    let log = h.log_of("w-crafted");
    // A negative not-found counter reads as 0: the two retries of the budget, no more.
    assert_eq!(retries_logged(&log, &ghost, "not_found"), 2, "{log}");
    // The total was clamped on the first delivery and stays at the limit.
    assert_eq!(letter.deliveries, MAX_COUNTER as i32 + 1);
    for named in [
        "`x-decay-attempt` is 4294967295, above the limit",
        "`x-decay-retries-not-found` is negative (-7)",
        "`x-decay-retries-runner-error` is not an integer",
        "`x-decay-retries-transient` is 9223372036854775807, above the limit",
    ] {
        assert!(log.contains(named), "missing {named:?}:\n{log}");
    }
    assert_eq!(w.terminate().await, Some(0));
}
