CREATE INDEX ix_event_outbox_pending ON event_outbox (seq) WHERE failed_at IS NULL;
