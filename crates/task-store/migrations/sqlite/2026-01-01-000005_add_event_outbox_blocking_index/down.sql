DROP INDEX ix_event_outbox_blocking;
