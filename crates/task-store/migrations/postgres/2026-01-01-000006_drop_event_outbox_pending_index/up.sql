-- The claim reads the oldest pending rows through the `seq` unique index (moved-aside rows are rare and filtered),
-- so this partial copy of it only cost every outbox insert one more index write.
DROP INDEX ix_event_outbox_pending;
