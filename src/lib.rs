//! # decay-worker
//!
//! Runs memory-decay jobs against PostgreSQL, fed by job-id messages over RabbitMQ.
//!
//! A producer inserts a job row (`pending`) and publishes its id. Worker replicas consume the
//! queue; for each message the worker calls the runner's specific-job path and acks only after
//! the job is settled in the database. A terminal job is a no-op, so redelivery and duplicate
//! publishes are harmless.
//!
//! The runner claims a job with a compare-and-set `UPDATE` that issues a fencing token and a
//! lease; the summary memory, its supersession edges and the `completed` settle commit in one
//! statement guarded by that token. A crashed runner's claim expires and is recovered; a
//! database outage never fails a job.
//!
//! Modules, in the order imports point (each uses only those above it; the full essay that
//! walks one delivery through them is still to come):
//! * [`ids`]: prefix + ULID id newtypes, canonical text only. [`retry`]: the one backoff
//!   policy. [`telemetry`]: logging and redaction.
//! * [`decay`]: the domain: job model, invariants, compression, effects, attestation
//!   verification. Pure: no SQL, AMQP, HTTP, files or clock of its own.
//! * Adapters: [`store`] (the only place with SQL), [`broker`] (the only place with AMQP),
//!   [`llm`] (summary backends, the only HTTP client, and the LLM path's file loaders).
//! * [`runner`]: domain + store + backend; one guarded settle for every path.
//! * [`worker`]: the consume loop and the outcome table (result -> ack, retry, dead letter);
//!   [`dead_letters`]: parked messages kept in PostgreSQL; [`demo`]: sample data.
//! * [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! * The process edge: [`config`] (typed settings), [`cli`] (the clap tree), [`commands`].

pub mod broker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dead_letters;
pub mod decay;
pub mod demo;
pub mod http;
pub mod ids;
pub mod llm;
pub mod retry;
pub mod runner;
pub mod store;
pub mod telemetry;
pub mod worker;
