//! task-store.
