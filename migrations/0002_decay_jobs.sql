-- Decay jobs (spec §3.1, reference migration 008) plus the columns that make claims safe
-- (DESIGN §3). The database enforces what the reference only enforced in code: the
-- alphabets, the kind/method pairing and the state/payload rules.

CREATE TABLE decay_jobs (
    id                  text PRIMARY KEY CHECK (id ~ '^dcy_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    kind                text NOT NULL CONSTRAINT decay_jobs_kind_alphabet
                        CHECK (kind IN ('episode_compression', 'candidate_compression', 'expired_principle_review')),
    summary_method      text NOT NULL CONSTRAINT decay_jobs_summary_method_alphabet
                        CHECK (summary_method IN ('deterministic_concatenate', 'llm_summary', 'none')),
    source_ids_json     jsonb NOT NULL CONSTRAINT decay_jobs_source_ids_nonempty_array
                        CHECK (jsonb_typeof(source_ids_json) = 'array' AND jsonb_array_length(source_ids_json) > 0),
    state               text NOT NULL CONSTRAINT decay_jobs_state_alphabet
                        CHECK (state IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')),
    state_reason        text,
    result_memory_id    text REFERENCES memories (id),
    scheduled_for       timestamptz NOT NULL,
    created_at          timestamptz NOT NULL,
    created_by          text NOT NULL CONSTRAINT decay_jobs_created_by_not_blank CHECK (created_by ~ '\S'),
    updated_at          timestamptz NOT NULL,

    -- Ours (DESIGN §3).
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    claim_token         uuid,
    claimed_by          text,
    lease_expires_at    timestamptz,
    failure_code        text,
    last_published_at   timestamptz,
    -- Who cancelled and why: the reference drops the cancellation reason (spec §11.10).
    cancel_reason       text,
    -- The accepted operator attestation of an LLM job, for audit (spec §11.11).
    attestation_key_id  text,
    attestation_signature_hex text,

    CONSTRAINT decay_jobs_kind_method_pairing CHECK (
        (kind = 'expired_principle_review') = (summary_method = 'none')
    ),
    CONSTRAINT decay_jobs_state_payload CHECK (
        CASE state
            WHEN 'failed' THEN state_reason IS NOT NULL AND state_reason ~ '\S'
                               AND result_memory_id IS NULL AND failure_code IS NOT NULL
            WHEN 'completed' THEN state_reason IS NULL AND failure_code IS NULL
            ELSE state_reason IS NULL AND result_memory_id IS NULL AND failure_code IS NULL
        END
    ),
    CONSTRAINT decay_jobs_cancel_reason_only_when_cancelled CHECK (
        cancel_reason IS NULL OR state = 'cancelled'
    ),
    CONSTRAINT decay_jobs_in_progress_has_claim CHECK (
        state <> 'in_progress' OR (claim_token IS NOT NULL AND lease_expires_at IS NOT NULL)
    )
);

-- The reference's pick-up index.
CREATE INDEX idx_decay_jobs_state_scheduled ON decay_jobs (state, scheduled_for);
-- Pick-up of the head of the ready list stays one index probe however many terminal rows
-- accumulate.
CREATE INDEX idx_decay_jobs_pending_ready ON decay_jobs (scheduled_for, id) WHERE state = 'pending';
-- The reconciler's scan for expired leases.
CREATE INDEX idx_decay_jobs_lease ON decay_jobs (lease_expires_at) WHERE state = 'in_progress';

-- Supersession edges (reference migration 009).
CREATE TABLE memory_supersessions (
    source_memory_id   text NOT NULL REFERENCES memories (id),
    summary_memory_id  text NOT NULL REFERENCES memories (id),
    decay_job_id       text REFERENCES decay_jobs (id),
    recorded_at        timestamptz NOT NULL,
    PRIMARY KEY (source_memory_id, summary_memory_id),
    CONSTRAINT memory_supersessions_distinct CHECK (source_memory_id <> summary_memory_id)
);
CREATE INDEX idx_memory_supersessions_summary ON memory_supersessions (summary_memory_id);

CREATE TABLE episode_supersessions (
    source_episode_id  text NOT NULL REFERENCES episodes (id),
    summary_memory_id  text NOT NULL REFERENCES memories (id),
    decay_job_id       text REFERENCES decay_jobs (id),
    recorded_at        timestamptz NOT NULL,
    PRIMARY KEY (source_episode_id, summary_memory_id)
);
CREATE INDEX idx_episode_supersessions_summary ON episode_supersessions (summary_memory_id);

-- At most one summary memory per job, enforced by the database: even a bug in the claim
-- protocol could not produce a second one.
ALTER TABLE memories ADD COLUMN produced_by_job_id text UNIQUE REFERENCES decay_jobs (id);
