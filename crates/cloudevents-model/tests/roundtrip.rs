//! Property tests: any event the builder accepts survives serialize → parse → serialize unchanged, and the parser
//! never panics, whatever bytes it is given.

use std::collections::BTreeMap;

use cloudevents_model::{CloudEvent, Data, ExtensionValue, batch};
use proptest::prelude::*;
use serde_json::Value;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const RESERVED: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
];

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._~:/\"\\\\{}é漢😀-]{1,24}"
}

fn uri_reference() -> impl Strategy<Value = String> {
    prop_oneof![
        "(/[a-z0-9._~-]{0,8}){1,3}",
        "https://[a-z]{1,8}\\.example(:[0-9]{1,4})?/[a-z0-9]{0,8}(\\?[a-z]=[0-9]{1,3})?(#[a-z]{1,4})?",
        "urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}",
        "[a-z0-9-]{1,10}(%2[0-9A-F])?",
    ]
}

fn absolute_uri() -> impl Strategy<Value = String> {
    "(https|urn|tag)://?[a-z]{1,8}(/[a-z0-9]{1,6}){0,3}(\\?v=[0-9])?"
}

fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    (
        0i32..=9999,
        1u16..=365,
        0u8..24,
        0u8..60,
        0u8..60,
        prop_oneof![Just(0u32), 0u32..1_000_000_000],
        -1439i32..=1439,
    )
        .prop_map(
            |(year, day, hour, minute, second, nanosecond, offset_minutes)| {
                let date =
                    Date::from_ordinal_date(year, day).expect("day 1..=365 exists in every year");
                let time = Time::from_hms_nano(hour, minute, second, nanosecond)
                    .expect("valid time of day");
                let offset = UtcOffset::from_whole_seconds(offset_minutes * 60)
                    .expect("offset within a day");
                PrimitiveDateTime::new(date, time).assume_offset(offset)
            },
        )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn extension_value() -> impl Strategy<Value = ExtensionValue> {
    prop_oneof![
        text().prop_map(ExtensionValue::String),
        any::<bool>().prop_map(ExtensionValue::Boolean),
        any::<i32>().prop_map(ExtensionValue::Integer),
        absolute_uri().prop_map(ExtensionValue::Uri),
        uri_reference().prop_map(ExtensionValue::UriRef),
        timestamp().prop_map(ExtensionValue::Timestamp),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(ExtensionValue::Binary),
    ]
}

#[derive(Debug, Clone)]
enum Payload {
    None,
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
}

fn event() -> impl Strategy<Value = CloudEvent> {
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/json",
        "application/vnd.example+json; charset=utf-8",
        "text/plain",
        "application/xml; charset=\"utf-8\"",
        "application/octet-stream",
    ]));
    let payload = prop_oneof![
        Just(Payload::None),
        json_value().prop_map(Payload::Json),
        text().prop_map(Payload::Text),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(Payload::Binary),
    ];
    let extensions = prop::collection::btree_map(
        "[a-z0-9]{1,12}".prop_filter("reserved", |name| !RESERVED.contains(&name.as_str())),
        extension_value(),
        0..5,
    );
    (
        (
            text(),
            uri_reference(),
            text(),
            prop::option::of(text()),
            prop::option::of(timestamp()),
        ),
        (
            content_type,
            prop::option::of(absolute_uri()),
            extensions,
            payload,
        ),
    )
        .prop_map(
            |((id, source, ty, subject, time), (content_type, schema, extensions, payload))| {
                build(
                    id,
                    source,
                    ty,
                    subject,
                    time,
                    content_type,
                    schema,
                    extensions,
                    payload,
                )
            },
        )
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per attribute keeps the strategy readable"
)]
fn build(
    id: String,
    source: String,
    ty: String,
    subject: Option<String>,
    time: Option<OffsetDateTime>,
    content_type: Option<&str>,
    schema: Option<String>,
    extensions: BTreeMap<String, ExtensionValue>,
    payload: Payload,
) -> CloudEvent {
    let mut builder = CloudEvent::builder(id, source, ty);
    if let Some(subject) = subject {
        builder = builder.subject(subject);
    }
    if let Some(time) = time {
        builder = builder.time(time);
    }
    let json_content = content_type.is_none_or(cloudevents_model::is_json_content_type);
    if let Some(content_type) = content_type {
        builder = builder.datacontenttype(content_type);
    }
    if let Some(schema) = schema {
        builder = builder.dataschema(schema);
    }
    for (name, value) in extensions {
        builder = builder.extension(name, value);
    }
    builder = match payload {
        Payload::None => builder,
        // A JSON payload only goes with a JSON content type; text fits both.
        Payload::Json(value) if json_content => builder.data(Data::Json(value)),
        Payload::Json(_) => builder.string_data("not json"),
        Payload::Text(text) => builder.string_data(text),
        Payload::Binary(bytes) => builder.binary_data(bytes),
    };
    builder.build().expect("generated events are valid")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn built_events_round_trip(event in event()) {
        let written = event.to_vec().expect("serialize");
        let parsed = CloudEvent::from_slice(&written).expect("own output parses");
        prop_assert_eq!(&parsed, &event);
        prop_assert_eq!(parsed.to_vec().expect("serialize"), written.clone());
        let document: serde_json::Map<String, Value> = serde_json::from_slice(&written).expect("JSON object");
        for (key, value) in &document {
            prop_assert!(key == "data" || !value.is_null(), "null written for {}", key);
        }
        for required in ["specversion", "id", "source", "type"] {
            prop_assert!(document.contains_key(required));
        }
    }

    #[test]
    fn batches_round_trip(events in prop::collection::vec(event(), 0..6)) {
        let written = batch::to_vec(&events).expect("serialize");
        prop_assert_eq!(batch::from_slice(&written).expect("parse"), events);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = CloudEvent::from_slice(&bytes);
        let _ = batch::from_slice(&bytes);
    }

    #[test]
    fn parser_never_panics_on_mutated_events(event in event(), position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = event.to_vec().expect("serialize");
        let at = position.index(bytes.len());
        bytes[at] = byte;
        if let Ok(parsed) = CloudEvent::from_slice(&bytes) {
            // Whatever is accepted must itself round trip.
            let again = CloudEvent::from_slice(&parsed.to_vec().expect("serialize")).expect("reparse");
            prop_assert_eq!(again, parsed);
        }
    }
}
