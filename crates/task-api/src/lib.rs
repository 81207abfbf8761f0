//! task-api.
