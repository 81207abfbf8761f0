-- The source of the CloudEvents `sequence` extension (see the PostgreSQL migration). SQLite has no sequences: one
-- counter row, incremented by every mutation inside its write transaction (SQLite has one writer at a time, so the
-- values follow the commit order).
CREATE TABLE event_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO event_sequence (id, value) VALUES (1, 0);
