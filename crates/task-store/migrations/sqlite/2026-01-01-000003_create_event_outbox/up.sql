-- Events written in the same transaction as the change they describe, published later by the relay.
CREATE TABLE event_outbox (
    -- Insertion order; the relay delivers the rows of one partition key in this order.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The CloudEvent id, the same on every delivery attempt.
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_until TEXT NULL,
    last_error TEXT NULL,
    failed_at TEXT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX ix_event_outbox_partition ON event_outbox (partition_key, seq) WHERE failed_at IS NULL;
