//! Interoperability with the official Rust SDK (`cloudevents-sdk` 0.9): what this crate writes, the SDK reads with
//! the same attributes, and what the SDK writes, this crate reads.

use cloudevents::{AttributesReader, Event, EventBuilder as _, EventBuilderV10};
use cloudevents_model::{CloudEvent, Data};
use serde_json::json;
use time::macros::datetime;

fn task_event() -> CloudEvent {
    CloudEvent::builder(
        "5f0c6b8e-3c1a-4d2b-9f3e-7a8b9c0d1e2f",
        "pakaura/api",
        "task.created",
    )
    .subject("0b7e6f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
    .time(datetime!(2026-11-27 08:30:00.123456 UTC))
    .datacontenttype("application/json")
    .extension("traceid", "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f")
    .extension("correlationid", "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f")
    .extension("partitionkey", "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a")
    .json_data(&json!({"task_id": "0b7e6f3a", "action": "created", "completed": false}))
    .build()
    .expect("valid event")
}

#[test]
fn the_sdk_reads_our_events_with_the_same_attributes() {
    let event = task_event();
    let sdk: Event = serde_json::from_slice(&event.to_vec().expect("serialize"))
        .expect("the SDK parses our event");
    assert_eq!(sdk.id(), event.id());
    assert_eq!(sdk.source().as_str(), event.source());
    assert_eq!(sdk.ty(), event.ty());
    assert_eq!(sdk.subject(), event.subject());
    assert_eq!(sdk.datacontenttype(), event.datacontenttype());
    assert_eq!(
        sdk.time()
            .map(|time| time.timestamp_nanos_opt().expect("in range")),
        event
            .time()
            .map(|time| i64::try_from(time.unix_timestamp_nanos()).expect("in range"))
    );
    for (name, value) in event.extensions() {
        assert_eq!(
            sdk.extension(name).map(ToString::to_string),
            Some(value.to_string()),
            "{name}"
        );
    }
    match (sdk.data(), event.data()) {
        (Some(cloudevents::Data::Json(sdk_value)), Some(Data::Json(value))) => {
            assert_eq!(sdk_value, value)
        }
        other => panic!("payloads differ: {other:?}"),
    }
}

#[test]
fn the_sdk_reads_our_binary_events() {
    let event = CloudEvent::builder("1", "/s", "t")
        .datacontenttype("application/octet-stream")
        .binary_data(vec![0, 1, 2, 254, 255])
        .build()
        .expect("valid");
    let sdk: Event =
        serde_json::from_slice(&event.to_vec().expect("serialize")).expect("the SDK parses it");
    match sdk.data() {
        Some(cloudevents::Data::Binary(bytes)) => assert_eq!(bytes, &[0, 1, 2, 254, 255]),
        other => panic!("unexpected payload {other:?}"),
    }
}

#[test]
fn we_read_events_the_sdk_writes() {
    let sdk = EventBuilderV10::new()
        .id("abc")
        .source("http://example.com/source")
        .ty("com.example.test")
        .subject("s")
        .time("2026-01-02T03:04:05Z")
        .extension("count", 5_i64)
        .extension("flag", true)
        .data("application/json", json!({"hello": "world"}))
        .build()
        .expect("the SDK builds it");
    let bytes = serde_json::to_vec(&sdk).expect("the SDK serializes it");
    let event = CloudEvent::from_slice(&bytes).expect("we parse it");
    assert_eq!(event.id(), "abc");
    assert_eq!(event.source(), "http://example.com/source");
    assert_eq!(event.time(), Some(datetime!(2026-01-02 03:04:05 UTC)));
    assert_eq!(
        event.extension("count").and_then(|value| value.as_i32()),
        Some(5)
    );
    assert_eq!(
        event.extension("flag").and_then(|value| value.as_bool()),
        Some(true)
    );
    assert_eq!(event.data(), Some(&Data::Json(json!({"hello": "world"}))));
}
