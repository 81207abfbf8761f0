//! Integration tests of the public API: a mockito sidecar for every path, plus the same publish
//! tests against a real daprd when `PAKAURA_DAPR_HTTP_ENDPOINT` is set.

mod batching;
mod bulk;
mod daprd;
mod dispatcher;
mod health;
mod ordering;
mod publish;
mod support;
mod trace_and_same_key;
