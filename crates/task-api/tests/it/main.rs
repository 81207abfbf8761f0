//! The task-api integration tests: one binary, one module per feature (SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set).

mod support;

mod auth;
mod client_address;
mod cutover;
mod errors;
mod events;
mod hardening;
mod health;
mod ordering;
mod outbox;
mod properties;
mod tasks;
