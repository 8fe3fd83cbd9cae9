-- The whole accepted attestation of an LLM job (issue 11 item 6). 0002 stored only the key id
-- and the signature, which cannot be checked again: the signature covers the canonical bytes
-- (spec §7.4) of the key id, `signed_at`, the job id, the model and the template digest, and
-- it verifies under a key. With these columns an auditor re-verifies a completed job from its
-- row alone, long after the envelope file is gone (`jobs show` prints every field).
--
-- `signed_at` is text, exactly as signed: the signature covers its bytes, and a timestamptz
-- would normalise them (`+00:00` vs `Z`, fractional digits) and break re-verification.
ALTER TABLE decay_jobs
    ADD COLUMN attestation_verifying_key_hex text,
    ADD COLUMN attestation_signed_at text,
    ADD COLUMN attestation_model_name text,
    ADD COLUMN attestation_prompt_template_blake3 text,
    -- All or nothing, and only with the key id and signature they belong to. Rows settled
    -- before this migration keep NULLs (their envelope was never stored).
    ADD CONSTRAINT decay_jobs_attestation_audit_complete CHECK (
        (attestation_verifying_key_hex IS NULL
            AND attestation_signed_at IS NULL
            AND attestation_model_name IS NULL
            AND attestation_prompt_template_blake3 IS NULL)
        OR (attestation_verifying_key_hex IS NOT NULL
            AND attestation_signed_at IS NOT NULL
            AND attestation_model_name IS NOT NULL
            AND attestation_prompt_template_blake3 IS NOT NULL
            AND attestation_key_id IS NOT NULL
            AND attestation_signature_hex IS NOT NULL)
    );
