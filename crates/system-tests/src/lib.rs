//! system-tests.
