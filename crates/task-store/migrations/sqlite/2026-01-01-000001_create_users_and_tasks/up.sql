-- The embedded schema: the same tables and constraints as PostgreSQL's. UUIDs are stored as hyphenated
-- lowercase TEXT, instants as diesel's UTC TEXT format (which sorts chronologically), booleans as 0/1.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title TEXT NOT NULL CONSTRAINT tasks_title_not_blank CHECK (length(trim(title)) > 0 AND length(title) <= 500),
    completed BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    due_date TEXT NULL
);

CREATE INDEX ix_tasks_user_id ON tasks (user_id);
CREATE INDEX ix_tasks_user_id_completed ON tasks (user_id, completed);
