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
//! Modules:
//! * [`ids`]: prefix + ULID id newtypes, canonical text only.
//! * [`decay`]: the domain (job model, errors, compression, runner, LLM summaries); it knows
//!   neither SQL nor AMQP.
//! * [`store`]: the only place with SQL.
//! * [`config`], [`cli`], [`commands`], [`telemetry`]: the process edge.

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
