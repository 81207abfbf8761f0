-- The incoming request's W3C traceparent, forwarded to the sidecar when the relay publishes the event later.
-- Additive and nullable: rows written before it simply have none.
ALTER TABLE event_outbox ADD COLUMN traceparent TEXT NULL;
