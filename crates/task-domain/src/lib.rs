//! task-domain.
