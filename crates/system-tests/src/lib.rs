//! Tests of the whole system against the real local stack (PostgreSQL, Kafka, `daprd`) that `scripts/stack up`
//! starts. The tests live in `tests/stack/` (one integration test binary); this library is empty.
//!
//! Each test reads its endpoints from the environment (`scripts/stack env` prints them):
//! `PAKAURA_DAPR_HTTP_ENDPOINT`, `PAKAURA_KAFKA_BOOTSTRAP`, `TEST_DATABASE_URL`. When one is missing the test says
//! `skipped: …` and passes, unless `CI` is set, where it fails.
