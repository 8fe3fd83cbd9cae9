//! # decay-worker
//!
//! Runs memory-decay jobs against PostgreSQL, fed by job-id messages over RabbitMQ.
//!
//! A producer (`decay-worker schedule`, or any program) inserts a job row in state `pending`
//! and publishes a message naming its id. Worker replicas (`decay-worker consume`) take the
//! messages, run the jobs, and ack each message only once its job is settled in the database.
//! The database is the truth; a message is only a nudge. So a message delivered twice, or
//! published twice, changes nothing the second time, and a lost message only delays a job
//! until the reconciler publishes it again.
//!
//! ## One delivery, module by module
//!
//! The major pieces, in the order one delivery meets them:
//!
//! **[`broker`]**: the only place that speaks AMQP. A [`broker::Session`] is one connection
//! with one publisher-confirm channel and the topology declared: the main quorum queue, its
//! retry tiers and the dead queue, all named from one base ([`broker::topology`]). The worker
//! consumes the main queue with a bounded prefetch; each message arrives as a
//! [`broker::JobDelivery`], and [`broker::message::parse_body`] turns its body into a
//! [`ids::DecayJobId`] or says precisely why it is not one (bodies come from outside and are
//! treated as hostile: bounded, strictly parsed, never panicking).
//!
//! **[`worker`]**: the consume loop. It takes a delivery only when a concurrency permit is
//! free, runs it in its own task, and decides what happens to the message from a table
//! ([`worker::outcome::classify`]): the runner's result in, an [`worker::outcome::Action`] out.
//! A message that keeps coming back unacked (whatever handles it dies) is counted on its job
//! and dead-lettered past the delivery limit instead of being run again.
//! Under load, the delivery does not travel alone: with it the loop takes what is already
//! delivered (up to `--batch-size`), and the batch runs as one read and one settle statement
//! ([`runner::Runner::run_batch`]), each job still guarded on its own, and is acked together
//! after its commit.
//!
//! **[`runner`]**: one job, end to end. It reads the job with its sources, checks it is due and
//! not held by another runner, and takes one of two paths. A deterministic job computes its
//! result from that snapshot and then claims and settles it in one statement (the quick
//! path). An LLM job, slow by nature, is claimed first with a lease and a fencing token, runs
//! while a heartbeat extends the lease, and settles guarded by its token (the two-phase path).
//! A crashed runner's claim expires and the next runner recovers it.
//!
//! **[`store`]**: the only place with SQL. It loads the snapshot (the row as a
//! [`decay::JobRecord`] plus its source memories or episodes), and writes the result with one
//! guarded settle: a conditional `UPDATE` whose `WHERE` names the state or claim token it
//! expects, together with the summary memory and its supersession edges, in one statement.
//! Two runners can never both win, and a runner whose claim was lost writes nothing.
//!
//! **[`decay`]**: the domain, pure. It converts the record into a typed job, compresses the
//! sources into one summary by the spec's pessimistic merge ([`decay::compress`]) or checks
//! an LLM's answer ([`decay::llm_summary`]), and verifies the operator's signed attestation
//! that an LLM job requires ([`decay::attestation`]). Failures are [`decay::Invariant`]s with
//! stable names, stored on the job. It imports no adapter: no SQL, AMQP, HTTP, files or clock.
//!
//! **Back to the [`worker`]**, with the settled outcome: a completed, failed or already
//! terminal job is acked. A job that must wait (not due yet, held by another runner, its row
//! not committed yet, a database error) is republished to the retry tier fitting its wait and
//! then acked; every wait follows the one policy in [`retry`]. A message that can never run
//! (malformed, unknown job after its retries) is parked in the dead queue, then acked. Each
//! republish is confirmed by the broker before the ack, so no step can lose the message.
//!
//! ## Around the path
//!
//! * [`llm`]: summary backends for LLM jobs (none, a replay fixture, an OpenAI-compatible
//!   server: the only HTTP client) and the loaders of the files the LLM path reads.
//! * [`dead_letters`]: parked messages move from the dead queue into PostgreSQL, where
//!   operators list, requeue and purge them without handing them back to the broker.
//! * [`reconcile`]: republishes due jobs whose message may be lost (inside each worker, and as
//!   a command).
//! * [`retry`]: the one backoff policy: retry tiers of job messages, reconnects, migration
//!   waits, the producer's second try.
//! * [`http`]: one HTTP stack (axum on hyper, with the same limits everywhere): a worker's
//!   `/healthz`, `/readyz` and `/metrics`, and the operator dashboard.
//! * The process edge: [`cli`] (the clap tree) and [`config`] (typed, validated settings, each
//!   default declared once beside its settings type); [`cmd`], one file per command, and
//!   [`app`], the wiring they share (pool, metrics and listener, shutdown signal, migration
//!   wait). `anyhow` and exit codes live only there; every module above returns typed errors.
//! * [`ids`] (prefix + ULID id newtypes, canonical text only) and [`telemetry`] (logging,
//!   and the redaction that keeps passwords out of logs and errors).
//! * [`tls`]: the certificate files of `amqps://` connections, read and checked at start, and
//!   the test that tells a refused certificate (permanent) from a broken handshake.
//!
//! Imports point one way: [`decay`] ← adapters ([`store`], [`broker`], [`llm`]) ← [`runner`],
//! [`worker`], [`dead_letters`], [`reconcile`] ← [`app`], [`cmd`] ← `main.rs`.

pub mod app;
pub mod broker;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod dead_letters;
pub mod decay;
pub mod http;
pub mod ids;
pub mod llm;
pub mod reconcile;
pub mod retry;
pub mod runner;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod worker;
