-- The fencing token of the claim that holds the row: a relay settles (deletes, releases, records a failure of)
-- only rows that still carry its own token, so a relay whose lease expired cannot undo the claim of the relay
-- that took the rows over. Additive and nullable: rows written before it are simply unclaimed.
ALTER TABLE event_outbox ADD COLUMN lease_id UUID NULL;
