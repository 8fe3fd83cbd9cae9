//! The files of the LLM path: attestation envelopes, the trusted-operator-keys list, operator
//! key files and replay fixtures. Each loader reads the file and hands the text to the
//! domain's parser, which owns the format and the exact error texts; only "could not read it"
//! is said here. Drawing a fresh operator key's seed from the operating system lives here too,
//! for the same reason: it is the outside world, and the domain stays pure.

use std::path::Path;

use super::{ReplayBackend, SummaryError};
use crate::decay::attestation::{
    AttestationEnvelope, AttestationError, OperatorKeyFile, TrustedKeys,
};

/// Load an envelope file (spec §7.2), with the reference's three loading detail texts.
///
/// Anything that is not an existing regular file (missing, a directory, unreadable metadata)
/// reports "not found"; the file is read as UTF-8 text, so non-UTF-8 content is a read error.
pub fn load_envelope(path: &Path) -> Result<AttestationEnvelope, AttestationError> {
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(AttestationError::EnvelopeNotFound { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(|e| AttestationError::EnvelopeUnreadable {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    AttestationEnvelope::parse(&text, &shown)
}

/// Load and validate a trusted-keys file. Errors name the file and the bad entry.
pub fn load_trusted_keys(path: &Path) -> Result<TrustedKeys, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("trusted operator keys file `{shown}` could not be read: {e}"))?;
    TrustedKeys::parse(&text, &shown)
}

/// Read an operator key file written by `attest keygen`.
pub fn load_operator_key(path: &Path) -> Result<OperatorKeyFile, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("operator key file `{shown}` could not be read: {e}"))?;
    OperatorKeyFile::parse(&text, &shown)
}

/// Load a replay fixture file. Errors use the reference's exact texts.
pub fn load_replay(path: &Path) -> Result<ReplayBackend, SummaryError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| SummaryError::CallFailed(format!("fixture `{shown}` not readable: {e}")))?;
    ReplayBackend::parse(&text, &shown)
}

/// A new operator key with a fresh random seed from the operating system.
pub fn generate_key_file(key_id: &str) -> Result<OperatorKeyFile, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| format!("could not gather randomness for an operator key: {e}"))?;
    OperatorKeyFile::from_seed(key_id, &seed)
}
