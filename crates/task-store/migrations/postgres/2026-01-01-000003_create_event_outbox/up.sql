-- Events written in the same transaction as the change they describe, published later by the relay.
CREATE TABLE event_outbox (
    -- The CloudEvent id, the same on every delivery attempt.
    id UUID PRIMARY KEY,
    -- Insertion order; the relay delivers the rows of one partition key in this order.
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    topic TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    -- The structured CloudEvent JSON, exactly as it is sent.
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A relay that claimed the row owns it until then.
    claimed_until TIMESTAMPTZ NULL,
    last_error TEXT NULL,
    -- Set when the row was moved aside after too many attempts; such rows are kept for inspection.
    failed_at TIMESTAMPTZ NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX ix_event_outbox_pending ON event_outbox (seq) WHERE failed_at IS NULL;
CREATE INDEX ix_event_outbox_partition ON event_outbox (partition_key, seq) WHERE failed_at IS NULL;
