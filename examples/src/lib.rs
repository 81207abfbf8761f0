//! Shared code of the runnable examples: task events in the SPEC shape, the subscriber and the tail apps.
//!
//! The programs themselves live in `examples/<scenario>/main.rs`; their logic lives here so that the
//! round-trip test in `tests/` drives exactly the code the examples run. See `README.md`.

pub mod delivery;
pub mod events;
pub mod logging;
pub mod subscriber;
pub mod tail;
