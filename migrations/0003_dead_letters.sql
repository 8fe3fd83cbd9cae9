-- Dead letters are kept where the truth is kept (issue 15). The broker's `<base>.dead` queue
-- is only where a parked message lands first; workers (and every `dead-letters` command) move
-- each one into this table, acking it only after the row is committed. Listing, requeueing
-- and purging then never hand a message back to the broker, so no broker version's delivery
-- counting (RabbitMQ 4.0 drops a quorum-queue message returned 20 times when its queue has no
-- dead-letter target) can ever delete a parked message.

CREATE TABLE dead_letters (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The topology base the message was parked from, so tenants sharing a database keep
    -- their dead letters apart.
    queue             text NOT NULL,
    -- The job the body names, when it names one (a malformed body names none).
    job_id            text,
    -- Why: malformed_message, job_not_found, runner_error, delivery_limit, ...
    reason            text NOT NULL CONSTRAINT dead_letters_reason_token CHECK (reason ~ '^[a-z][a-z0-9_]*$'),
    detail            text NOT NULL DEFAULT '',
    -- The body as received, capped at the message size limit; `body_bytes` is its full length.
    body              bytea NOT NULL,
    body_bytes        integer NOT NULL CHECK (body_bytes >= 0),
    -- Deliveries of the message before it was parked (ours: 1 + its retry re-publishes).
    deliveries        integer NOT NULL CHECK (deliveries >= 0),
    dead_lettered_at  timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_dead_letters_queue ON dead_letters (queue, id);
CREATE INDEX idx_dead_letters_job ON dead_letters (job_id) WHERE job_id IS NOT NULL;

-- Crash-loop detection that does not depend on how a broker version counts deliveries: each
-- delivery the broker flags `redelivered` (a message returned unacked: its worker died, or its
-- connection did) counts here while the job is not terminal. Past the delivery limit the
-- message is dead-lettered `delivery_limit` instead of being run again.
ALTER TABLE decay_jobs ADD COLUMN redeliveries integer NOT NULL DEFAULT 0 CHECK (redeliveries >= 0);
