ALTER TABLE event_outbox DROP COLUMN lease_id;
