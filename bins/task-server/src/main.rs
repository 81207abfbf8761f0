//! The `task-api` binary (under construction).
fn main() {}
