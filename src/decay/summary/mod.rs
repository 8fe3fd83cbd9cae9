//! The `llm_summary` method (spec §7): an operator-attested LLM call that compresses sources
//! into one candidate summary memory.
//!
//! The method is gated twice, because its output replaces curated memories with model text:
//! an operator must sign an envelope pinning the job, the model and the prompt template
//! ([`attestation`]), and the model call goes through a configured [`backend`] whose answer is
//! then checked against that envelope. Each concern lives in its own file so the cryptographic
//! byte layout and the backend contract can be tested without a store.
//!
//! * [`attestation`]: envelope loading, the reference's verification steps in order, canonical
//!   signed bytes, and our trust additions (trusted operator keys, full digest form,
//!   `signed_at` freshness), plus the operator tooling primitives.
//! * [`backend`]: the async, object-safe `SummaryBackend` trait, its exact error tokens, and
//!   the `noop` and `replay` backends.

pub mod attestation;
pub mod backend;
pub mod llm;
pub mod openai;

pub use llm::{call_backend, validate_response, verify_attestation_for};
