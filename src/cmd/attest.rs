//! `decay-worker attest keygen|sign|template`: the operator's tooling for LLM attestations.
//! An operator generates a key once, gives its public half to the workers
//! (`--trusted-operator-keys`), and signs one envelope per LLM job, pinning the model and the
//! prompt template's digest (`attest template` prints the OpenAI backend's). No database or
//! broker is involved.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CliError, parse_job_id, print_json};
use crate::cli::{AttestKeygenArgs, AttestSignArgs};
use crate::decay::attestation::{
    is_full_prompt_template_digest, prompt_template_digest, sign_envelope,
};
use crate::ids::DecayJobId;
use crate::llm::files::{generate_key_file, load_operator_key};
use crate::llm::openai::{OPENAI_PROMPT_TEMPLATE, openai_prompt_template_digest};

/// `attest keygen`: the public half of the new key, and where its secret went.
#[derive(Serialize)]
struct KeygenReport<'a> {
    key_id: &'a str,
    verifying_key_hex: String,
    key_file: String,
}

/// `attest template`.
#[derive(Serialize)]
struct TemplateReport {
    backend: &'static str,
    prompt_template_blake3: String,
    prompt_template: &'static str,
}

pub fn keygen(a: AttestKeygenArgs) -> Result<(), CliError> {
    let key = generate_key_file(&a.key_id).map_err(CliError::usage)?;
    let text = serde_json::to_string_pretty(&key).map_err(CliError::internal)?;
    write_private(&a.out, &text)?;
    let verifying_key_hex = key.verifying_key_hex().map_err(CliError::internal)?;
    print_json(&KeygenReport {
        key_id: &key.key_id,
        verifying_key_hex,
        key_file: a.out.display().to_string(),
    });
    Ok(())
}

pub fn template() -> Result<(), CliError> {
    print_json(&TemplateReport {
        backend: "openai",
        prompt_template_blake3: openai_prompt_template_digest(),
        prompt_template: OPENAI_PROMPT_TEMPLATE,
    });
    Ok(())
}

pub fn sign(a: AttestSignArgs) -> Result<(), CliError> {
    let key = load_operator_key(&a.key).map_err(CliError::usage)?;
    let seed = key.seed().map_err(CliError::usage)?;
    let job_id = match a.job_id.as_deref() {
        Some(s) => parse_job_id(s)?,
        None => DecayJobId::new(),
    };
    let digest = match (&a.prompt_template, &a.prompt_template_blake3) {
        (Some(path), _) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
            prompt_template_digest(&bytes)
        }
        // Refused here as `schedule` and the workers would refuse it, rather than signed into an
        // envelope nobody accepts.
        (None, Some(d)) if !is_full_prompt_template_digest(d.trim()) => {
            return Err(CliError::usage(format!(
                "--prompt-template-blake3 must be `blake3:` followed by 64 lowercase hex digits; got `{}`",
                d.trim()
            )));
        }
        (None, Some(d)) => d.trim().to_string(),
        (None, None) => {
            return Err(CliError::usage(
                "pass --prompt-template or --prompt-template-blake3",
            ));
        }
    };
    let signed_at = match a.signed_at.as_deref() {
        Some(s) => {
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| CliError::usage(format!("--signed-at `{s}` is not RFC 3339: {e}")))?;
            s.to_string()
        }
        None => Utc::now().to_rfc3339(),
    };
    if a.model.trim().is_empty() {
        return Err(CliError::usage("--model must not be blank"));
    }
    let env = sign_envelope(&seed, &key.key_id, &signed_at, &job_id, &a.model, &digest);
    let text = serde_json::to_string_pretty(&env).map_err(CliError::internal)?;
    match &a.out {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// Write a secret file: created new (never overwriting), readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))
}
