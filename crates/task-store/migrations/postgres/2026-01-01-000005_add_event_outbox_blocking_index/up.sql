-- The rows that can hold a partition key back: retried ones (waiting for `next_attempt_at`) and leased ones
-- (`claimed_until`). A fresh row has neither, so this index stays as small as the set of failing or in-flight
-- keys however long the backlog is, and the relay's claim finds the blocked keys without reading the backlog.
-- The outbox is normally drained to a few rows, so building it takes no noticeable lock.
CREATE INDEX ix_event_outbox_blocking ON event_outbox (partition_key)
    WHERE failed_at IS NULL AND (attempts > 0 OR claimed_until IS NOT NULL);
