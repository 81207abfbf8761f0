//! System tests against the local stack started by `scripts/stack up` (see docs/LOCAL-STACK.md).

mod publish_to_kafka;
