//! The integration tests: one binary, against the real PostgreSQL and RabbitMQ.
//!
//! Each test isolates itself: `#[sqlx::test]` gives it a fresh database with the migrations
//! applied, and the [`testkit::harness::Harness`] a topology base of its own (deleted when it
//! drops), its workers' HTTP ports and a scratch directory that is always removed.
//!
//! * [`runner`]: the runner contract, in process: claims, settles, leases, cancels.
//! * [`worker`]: real worker processes: exactly-once completion, crashes, poison messages,
//!   retries, a broker that closes the connection, the SIGTERM drain.
//! * [`batches`]: batches of jobs, in process and in worker processes: one summary per job
//!   whatever shares a batch, a job's own failure stays its own, a database error commits
//!   nothing.
//! * [`llm`]: LLM summaries: every refusal recorded, attested summaries, operator tooling.
//! * [`failover`]: what a database failover throws at a run (a cancelled statement, a
//!   read-only server) leaves the job pending, and it completes afterwards.
//! * [`operations`]: probes and metrics, secrets kept out of logs, dead-letter tools, the demo.
//! * [`budgets`]: retry budgets per reason and crafted counters, through the real broker.
//! * [`security`]: secrets kept out of `--help`. [`parsers`]: property tests of every parser
//!   of outside input (bodies, ids, headers, envelopes, trusted keys, durations, redaction).
//! * [`tls`]: production connections: mutual TLS to a private RabbitMQ node, a wrong CA
//!   refused, a node list whose first node is dead, URLs that are not AMQP.
//! * [`dashboard`]: the operator dashboard in a real browser (chromium through chromedriver),
//!   against a real `decay-worker dashboard` process; [`dashboard_query`]: property tests of
//!   its query-string parsing; [`dashboard_audit`]: a job's whole attestation on its page.
//! * [`trust`]: attestation trust fails closed, weak keys, re-verifiable audit records.
//! * [`clock`]: the database's clock: a worker an hour ahead (libfaketime) steals no lease.
//! * [`claims`]: a lost claim stops its LLM call; one reconciler pass at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batches;
mod budgets;
mod claims;
mod clock;
mod dashboard;
mod dashboard_audit;
mod dashboard_query;
mod failover;
mod first_hour;
mod llm;
mod operations;
mod parsers;
mod runner;
mod security;
mod testkit;
mod tls;
mod trust;
mod worker;
