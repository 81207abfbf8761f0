//! Runs every JSON fixture under `tests/fixtures/`: valid events must parse and survive a round trip unchanged;
//! invalid ones must fail naming the attribute and the rule encoded in their file name
//! (`<attribute>--<rule>--<what>.json`, attribute `@document` for whole-document errors).

use std::path::{Path, PathBuf};

use cloudevents_model::{CloudEvent, ParseError, Rule, batch, timestamp};
use serde_json::Value;

fn fixtures(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|name| name.to_str())
        .expect("UTF-8 file name")
}

fn rule_slug(rule: &Rule) -> &'static str {
    match rule {
        Rule::Missing => "missing",
        Rule::Empty => "empty",
        Rule::WrongType { .. } => "wrong-type",
        Rule::UnsupportedSpecVersion { .. } => "unsupported-specversion",
        Rule::ForbiddenCharacter { .. } => "forbidden-character",
        Rule::InvalidTimestamp { .. } => "invalid-timestamp",
        Rule::InvalidUri { .. } => "invalid-uri",
        Rule::InvalidUriReference { .. } => "invalid-uri-reference",
        Rule::InvalidMediaType { .. } => "invalid-media-type",
        Rule::InvalidName => "invalid-name",
        Rule::ReservedName => "reserved-name",
        Rule::IntegerOutOfRange => "integer-out-of-range",
        Rule::InvalidBase64 => "invalid-base64",
        Rule::DataAndDataBase64 => "data-and-data-base64",
        Rule::DataNotString => "data-not-string",
        Rule::Duplicate => "duplicate",
        _ => "unknown",
    }
}

fn document_slug(error: &ParseError) -> &'static str {
    match error {
        ParseError::Syntax(_) => "syntax",
        ParseError::NotAnObject { .. } => "not-an-object",
        ParseError::NotAnArray { .. } => "not-an-array",
        _ => "attribute error",
    }
}

/// The original document with `null` members removed (the JSON format treats them as absent).
fn without_nulls(value: Value) -> serde_json::Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("event fixture is not an object")
    };
    map.into_iter()
        .filter(|(key, value)| !value.is_null() || key == "data")
        .collect()
}

#[test]
fn valid_fixtures_parse_and_round_trip_losslessly() {
    for path in fixtures("valid") {
        let name = file_name(&path);
        let bytes = std::fs::read(&path).expect("read fixture");
        let event =
            CloudEvent::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let written = event
            .to_vec()
            .unwrap_or_else(|error| panic!("{name}: cannot serialize: {error}"));
        let reparsed = CloudEvent::from_slice(&written)
            .unwrap_or_else(|error| panic!("{name}: own output does not parse: {error}"));
        assert_eq!(reparsed, event, "{name}: event changed in a round trip");
        assert_eq!(
            reparsed.to_vec().expect("serialize"),
            written,
            "{name}: output is not a fixed point"
        );

        // Every member of the input survives with the same value (time compared as an instant).
        let original = without_nulls(serde_json::from_slice(&bytes).expect("fixture is JSON"));
        let output = without_nulls(serde_json::from_slice(&written).expect("output is JSON"));
        assert_eq!(
            original.keys().collect::<std::collections::BTreeSet<_>>(),
            output.keys().collect::<std::collections::BTreeSet<_>>(),
            "{name}: members differ"
        );
        for (key, value) in &original {
            if key == "time" {
                let before =
                    timestamp::parse(value.as_str().expect("time string")).expect("time parses");
                let after = timestamp::parse(output[key].as_str().expect("time string"))
                    .expect("time parses");
                assert_eq!(before, after, "{name}: time changed");
            } else {
                assert_eq!(value, &output[key], "{name}: member `{key}` changed");
            }
        }
        assert!(
            !written.windows(4).any(|window| window == b"null") || event.data().is_some(),
            "{name}: null written"
        );
    }
}

#[test]
fn invalid_fixtures_fail_with_the_named_attribute_and_rule() {
    for path in fixtures("invalid") {
        let name = file_name(&path);
        let stem = name.strip_suffix(".json").expect("json extension");
        let mut parts = stem.splitn(3, "--");
        let (attribute, rule) = (
            parts.next().expect("attribute"),
            parts.next().expect("rule in file name"),
        );
        let bytes = std::fs::read(&path).expect("read fixture");
        let error = match CloudEvent::from_slice(&bytes) {
            Ok(event) => panic!("{name}: accepted an invalid event: {event:?}"),
            Err(error) => error,
        };
        if attribute == "@document" {
            assert_eq!(document_slug(&error), rule, "{name}: wrong error {error}");
        } else {
            assert_eq!(
                error.attribute(),
                Some(attribute),
                "{name}: wrong attribute in {error}"
            );
            assert_eq!(
                error.rule().map(rule_slug),
                Some(rule),
                "{name}: wrong rule in {error}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("`{attribute}`")),
                "{name}: message {message:?} lacks the attribute"
            );
        }
    }
}

#[test]
fn batch_fixtures() {
    for path in fixtures("batch") {
        let name = file_name(&path);
        let bytes = std::fs::read(&path).expect("read fixture");
        let result = batch::from_slice(&bytes);
        match name {
            "valid--two-events.json" => {
                let events = result.expect(name);
                assert_eq!(events.len(), 2);
                assert_eq!(
                    events[0].data().and_then(|data| data.as_bytes()),
                    Some(&[0u8, 1, 2, 3][..])
                );
                let written = batch::to_vec(&events).expect("serialize batch");
                assert_eq!(batch::from_slice(&written).expect("reparse batch"), events);
            }
            "valid--empty.json" => {
                assert!(result.expect(name).is_empty());
            }
            "invalid--not-an-array.json" => {
                assert!(
                    matches!(result, Err(ParseError::NotAnArray { .. })),
                    "{name}: {result:?}"
                );
            }
            "invalid--second-event-bad-time.json" => match result {
                Err(ParseError::BatchItem {
                    index: 1,
                    ref source,
                }) => {
                    assert_eq!(source.attribute(), Some("time"));
                    assert!(matches!(source.rule(), Some(Rule::InvalidTimestamp { .. })));
                }
                other => panic!("{name}: {other:?}"),
            },
            "invalid--element-not-an-object.json" => match result {
                Err(ParseError::BatchItem {
                    index: 1,
                    ref source,
                }) => {
                    assert!(
                        matches!(**source, ParseError::NotAnObject { .. }),
                        "{name}: {source:?}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            },
            other => panic!("fixture {other} has no expectation in this test"),
        }
    }
}
