-- Memories, episodes and principles: the columns the decay path reads and writes (spec §3.3).
-- Timestamps are timestamptz and JSON columns jsonb, so ordering and validity are the
-- database's job rather than every writer's.

CREATE TABLE principles (
    id                 text PRIMARY KEY CHECK (id ~ '^prn_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    statement          text NOT NULL DEFAULT '',
    waiver_expires_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE episodes (
    id                  text PRIMARY KEY CHECK (id ~ '^epi_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    -- The reference has a traces table behind this column; the decay path never reads it,
    -- so we keep the id only.
    trace_id            text NOT NULL,
    source_events_json  jsonb NOT NULL DEFAULT '[]',
    summary             text NOT NULL,
    domains_json        jsonb NOT NULL DEFAULT '[]',
    entities_json       jsonb NOT NULL DEFAULT '[]',
    candidate_meaning   text,
    extracted_by_json   jsonb NOT NULL DEFAULT '{}',
    confidence          double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    status              text NOT NULL DEFAULT 'active'
);

CREATE TABLE memories (
    id                        text PRIMARY KEY CHECK (id ~ '^mem_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    memory_type               text NOT NULL,
    status                    text NOT NULL CONSTRAINT memories_status_alphabet
                              CHECK (status IN ('candidate', 'active', 'rejected', 'superseded', 'pending_mcp_commit')),
    claim                     text NOT NULL,
    source_episodes_json      jsonb NOT NULL DEFAULT '[]',
    source_events_json        jsonb NOT NULL DEFAULT '[]',
    domains_json              jsonb NOT NULL DEFAULT '[]',
    salience_json             jsonb NOT NULL DEFAULT '{}',
    confidence                double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    authority                 text NOT NULL,
    applies_when_json         jsonb NOT NULL DEFAULT '{}',
    does_not_apply_when_json  jsonb NOT NULL DEFAULT '[]',
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL,
    -- v2 columns of the reference; the decay path leaves them null.
    summary_spans_json        jsonb,
    cross_session_use_count   bigint,
    first_used_at             timestamptz,
    last_cross_session_use_at timestamptz,
    last_validation_at        timestamptz,
    validation_epoch          bigint,
    blessed_until             timestamptz
);

-- The reference's memory-insert rule, with its exact message: every memory except an operator
-- note must carry episode or event lineage.
CREATE FUNCTION memories_require_lineage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.memory_type <> 'operator_note'
       AND NOT (jsonb_typeof(NEW.source_episodes_json) = 'array' AND jsonb_array_length(NEW.source_episodes_json) > 0)
       AND NOT (jsonb_typeof(NEW.source_events_json) = 'array' AND jsonb_array_length(NEW.source_events_json) > 0)
    THEN
        RAISE EXCEPTION 'memory candidate requires episode or event lineage'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER memories_require_lineage
    BEFORE INSERT OR UPDATE ON memories
    FOR EACH ROW EXECUTE FUNCTION memories_require_lineage();
