//! Serializes and parses a typical task event (the shape of SPEC §3: `task.created` with `traceid`,
//! `correlationid` and `partitionkey` extensions and a JSON object payload) and a batch of 100 of them,
//! side by side with `cloudevents-sdk` 0.9 in the same run.
//!
//! Run: `cargo bench -p cloudevents-model --bench codec`.

use std::sync::LazyLock;

use cloudevents_model::{CloudEvent, Data, batch};
use divan::{Bencher, black_box};
use serde::Serialize;
use time::macros::datetime;

fn main() {
    divan::main();
}

const BATCH_LEN: usize = 100;

/// The payload as a producer would hold it: a typed struct.
#[derive(Debug, Clone, Serialize)]
struct TaskCreated {
    task_id: &'static str,
    user_id: &'static str,
    action: &'static str,
    title: &'static str,
    completed: bool,
    timestamp: &'static str,
}

const CORRELATION_ID: &str = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
const USER_ID: &str = "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a";
const TASK_ID: &str = "0b7e6f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

fn typed_event(index: usize) -> CloudEvent<TaskCreated> {
    CloudEvent::builder(
        format!("5f0c6b8e-3c1a-4d2b-9f3e-{:012x}", 0x7a8b_9c0d_1e2f + index),
        "pakaura/api",
        "task.created",
    )
    .subject(TASK_ID)
    .time(datetime!(2026-11-27 08:30:00.123456 UTC))
    .datacontenttype("application/json")
    .extension("traceid", CORRELATION_ID)
    .extension("correlationid", CORRELATION_ID)
    .extension("partitionkey", USER_ID)
    .data(TaskCreated {
        task_id: TASK_ID,
        user_id: USER_ID,
        action: "created",
        title: "Write the quarterly report",
        completed: false,
        timestamp: "2026-11-27T08:30:00.123456Z",
    })
    .build()
    .expect("valid benchmark event")
}

static TYPED: LazyLock<CloudEvent<TaskCreated>> = LazyLock::new(|| typed_event(0));
static TYPED_BATCH: LazyLock<Vec<CloudEvent<TaskCreated>>> =
    LazyLock::new(|| (0..BATCH_LEN).map(typed_event).collect());

/// The same event as `tests/fixtures/valid/task-created.json`, compact: what travels on the wire.
static EVENT_JSON: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let fixture = include_bytes!("../tests/fixtures/valid/task-created.json");
    let written = TYPED.to_vec().expect("serialize");
    let from_fixture = CloudEvent::from_slice(fixture).expect("fixture parses");
    let as_value = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).expect("JSON");
    assert_eq!(
        as_value(&from_fixture.to_vec().expect("serialize")),
        as_value(&written),
        "the benchmark event must equal the fixture"
    );
    assert_eq!(written.len(), as_value(fixture).to_string().len());
    written
});
static BATCH_JSON: LazyLock<Vec<u8>> =
    LazyLock::new(|| batch::to_vec(&TYPED_BATCH).expect("serialize batch"));

static RAW: LazyLock<CloudEvent<Data>> =
    LazyLock::new(|| CloudEvent::from_slice(&EVENT_JSON).expect("parse"));
static RAW_BATCH: LazyLock<Vec<CloudEvent<Data>>> =
    LazyLock::new(|| batch::from_slice(&BATCH_JSON).expect("parse"));

static SDK: LazyLock<cloudevents::Event> =
    LazyLock::new(|| serde_json::from_slice(&EVENT_JSON).expect("sdk parses our event"));
static SDK_BATCH: LazyLock<Vec<cloudevents::Event>> =
    LazyLock::new(|| serde_json::from_slice(&BATCH_JSON).expect("sdk parses our batch"));

mod serialize_event {
    use super::*;

    #[divan::bench]
    fn model_typed(bencher: Bencher<'_, '_>) {
        let event = &*TYPED;
        bencher.bench(|| black_box(event).to_vec().expect("serialize"));
    }

    #[divan::bench]
    fn model_raw_json(bencher: Bencher<'_, '_>) {
        let event = &*RAW;
        bencher.bench(|| black_box(event).to_vec().expect("serialize"));
    }

    #[divan::bench]
    fn sdk(bencher: Bencher<'_, '_>) {
        let event = &*SDK;
        bencher.bench(|| serde_json::to_vec(black_box(event)).expect("serialize"));
    }
}

mod parse_event {
    use super::*;

    #[divan::bench]
    fn model(bencher: Bencher<'_, '_>) {
        let bytes = EVENT_JSON.as_slice();
        bencher.bench(|| CloudEvent::from_slice(black_box(bytes)).expect("parse"));
    }

    #[divan::bench]
    fn sdk(bencher: Bencher<'_, '_>) {
        let bytes = EVENT_JSON.as_slice();
        bencher.bench(|| {
            serde_json::from_slice::<cloudevents::Event>(black_box(bytes)).expect("parse")
        });
    }
}

mod serialize_batch_100 {
    use super::*;

    #[divan::bench]
    fn model_typed(bencher: Bencher<'_, '_>) {
        let events = TYPED_BATCH.as_slice();
        bencher.bench(|| batch::to_vec(black_box(events)).expect("serialize"));
    }

    #[divan::bench]
    fn model_raw_json(bencher: Bencher<'_, '_>) {
        let events = RAW_BATCH.as_slice();
        bencher.bench(|| batch::to_vec(black_box(events)).expect("serialize"));
    }

    #[divan::bench]
    fn sdk(bencher: Bencher<'_, '_>) {
        let events = SDK_BATCH.as_slice();
        bencher.bench(|| serde_json::to_vec(black_box(events)).expect("serialize"));
    }
}

mod parse_batch_100 {
    use super::*;

    #[divan::bench]
    fn model(bencher: Bencher<'_, '_>) {
        let bytes = BATCH_JSON.as_slice();
        bencher.bench(|| batch::from_slice(black_box(bytes)).expect("parse"));
    }

    #[divan::bench]
    fn sdk(bencher: Bencher<'_, '_>) {
        let bytes = BATCH_JSON.as_slice();
        bencher.bench(|| {
            serde_json::from_slice::<Vec<cloudevents::Event>>(black_box(bytes)).expect("parse")
        });
    }
}
