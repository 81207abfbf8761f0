//! Unit tests, one per rule of the CloudEvents 1.0.2 core spec and the JSON event format, each with a valid and
//! an invalid case, plus the syntax checkers (URIs, media types, timestamps) on tables of examples.

use serde_json::{Value, json};
use time::macros::datetime;

use crate::error::Rule;
use crate::{
    BuildError, CloudEvent, Data, EventBuilder, ExtensionValue, ParseError, batch, rules, timestamp,
};

fn builder() -> EventBuilder<Data> {
    CloudEvent::builder("1", "/source", "com.example.test")
}

fn build_rule<D: serde::Serialize + std::fmt::Debug>(builder: EventBuilder<D>) -> (String, Rule) {
    match builder.build() {
        Err(BuildError::Invalid { attribute, rule }) => (attribute, rule),
        other => panic!("expected an invalid attribute, got {other:?}"),
    }
}

/// Parses `base` extended with `member: value`, returning the error's attribute and rule.
fn parse_with(member: &str, value: Value) -> Result<CloudEvent, (String, Rule)> {
    let mut document = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
    document[member] = value;
    let bytes = serde_json::to_vec(&document).expect("serialize test document");
    CloudEvent::from_slice(&bytes).map_err(|error| match error {
        ParseError::Invalid { attribute, rule } => (attribute, rule),
        other => panic!("expected an attribute error, got {other}"),
    })
}

fn json_of<D: serde::Serialize>(event: &CloudEvent<D>) -> Value {
    serde_json::from_slice(&event.to_vec().expect("serialize")).expect("valid JSON")
}

// ---- Required attributes -------------------------------------------------------------------------------------

#[test]
fn required_attributes_must_be_non_empty_when_built() {
    assert!(builder().build().is_ok());
    assert_eq!(build_rule(builder().id("")), ("id".into(), Rule::Empty));
    assert_eq!(
        build_rule(builder().source("")),
        ("source".into(), Rule::Empty)
    );
    assert_eq!(build_rule(builder().ty("")), ("type".into(), Rule::Empty));
}

#[test]
fn required_attributes_must_be_present_when_parsed() {
    for missing in ["specversion", "id", "source", "type"] {
        let mut document = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
        document.as_object_mut().expect("object").remove(missing);
        let error = CloudEvent::from_slice(document.to_string().as_bytes()).expect_err(missing);
        assert_eq!(error.attribute(), Some(missing));
        assert_eq!(error.rule(), Some(&Rule::Missing));
    }
}

#[test]
fn null_required_attribute_is_missing_but_null_optional_attribute_is_absent() {
    assert_eq!(
        parse_with("id", Value::Null).expect_err("null id"),
        ("id".into(), Rule::Missing)
    );
    let event = parse_with("subject", Value::Null).expect("null subject is absent");
    assert_eq!(event.subject(), None);
    let event = parse_with("myext", Value::Null).expect("null extension is absent");
    assert_eq!(event.extensions().len(), 0);
}

#[test]
fn specversion_must_be_1_0() {
    assert!(parse_with("specversion", json!("1.0")).is_ok());
    assert_eq!(
        parse_with("specversion", json!("0.3")).expect_err("0.3"),
        (
            "specversion".into(),
            Rule::UnsupportedSpecVersion {
                found: "0.3".into()
            }
        )
    );
    assert_eq!(
        parse_with("specversion", json!(1.0)).expect_err("number"),
        (
            "specversion".into(),
            Rule::WrongType {
                expected: "a string",
                found: crate::JsonKind::Number
            }
        )
    );
    assert_eq!(builder().build().expect("valid").specversion(), "1.0");
}

#[test]
fn string_attributes_must_be_json_strings() {
    for attribute in [
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
    ] {
        let (name, rule) = parse_with(attribute, json!(true)).expect_err(attribute);
        assert_eq!(name, attribute);
        assert!(
            matches!(
                rule,
                Rule::WrongType {
                    expected: "a string",
                    ..
                }
            ),
            "{attribute}: {rule}"
        );
    }
}

#[test]
fn source_must_be_a_uri_reference() {
    for valid in [
        "/mycontext",
        "https://github.com/cloudevents",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "1-555-123-4567",
    ] {
        assert!(builder().source(valid).build().is_ok(), "{valid}");
        assert!(parse_with("source", json!(valid)).is_ok(), "{valid}");
    }
    let (attribute, rule) = build_rule(builder().source("a b"));
    assert_eq!(attribute, "source");
    assert!(matches!(rule, Rule::InvalidUriReference { .. }));
    assert!(matches!(
        parse_with("source", json!("%GG")),
        Err((_, Rule::InvalidUriReference { .. }))
    ));
}

// ---- Type system ---------------------------------------------------------------------------------------------

#[test]
fn strings_must_not_contain_control_characters_or_noncharacters() {
    assert!(rules::check_string("plain ascii, é, 漢字, 😀").is_ok());
    for (text, character) in [
        ("a\u{0}", '\u{0}'),
        ("\u{1f}", '\u{1f}'),
        ("\u{7f}", '\u{7f}'),
        ("\u{9f}", '\u{9f}'),
        ("\u{fdd0}", '\u{fdd0}'),
        ("\u{fffe}", '\u{fffe}'),
        ("\u{1ffff}", '\u{1ffff}'),
        ("\u{10ffff}", '\u{10ffff}'),
    ] {
        assert_eq!(
            rules::check_string(text),
            Err(Rule::ForbiddenCharacter { character }),
            "{text:?}"
        );
    }
    assert_eq!(
        build_rule(builder().subject("line\nbreak")),
        (
            "subject".into(),
            Rule::ForbiddenCharacter { character: '\n' }
        )
    );
    assert!(matches!(
        parse_with("type", json!("tab\there")),
        Err((_, Rule::ForbiddenCharacter { character: '\t' }))
    ));
}

#[test]
fn escaped_surrogate_pairs_are_accepted_and_lone_surrogates_refused() {
    let pair = br#"{"specversion":"1.0","id":"\ud83d\ude00","source":"/s","type":"t"}"#;
    assert_eq!(CloudEvent::from_slice(pair).expect("pair").id(), "😀");
    let lone = br#"{"specversion":"1.0","id":"\udead","source":"/s","type":"t"}"#;
    assert!(matches!(
        CloudEvent::from_slice(lone),
        Err(ParseError::Syntax(_))
    ));
}

#[test]
fn integers_must_be_in_the_32_bit_range() {
    assert_eq!(
        parse_with("ext", json!(2_147_483_647))
            .expect("max")
            .extension("ext"),
        Some(&ExtensionValue::Integer(i32::MAX))
    );
    assert_eq!(
        parse_with("ext", json!(-2_147_483_648_i64))
            .expect("min")
            .extension("ext"),
        Some(&ExtensionValue::Integer(i32::MIN))
    );
    assert_eq!(
        parse_with("ext", json!(2_147_483_648_i64)).expect_err("above"),
        ("ext".into(), Rule::IntegerOutOfRange)
    );
    assert_eq!(
        parse_with("ext", json!(u64::MAX)).expect_err("u64"),
        ("ext".into(), Rule::IntegerOutOfRange)
    );
    assert_eq!(
        ExtensionValue::try_from(1_i64 << 31),
        Err(Rule::IntegerOutOfRange)
    );
    assert_eq!(
        ExtensionValue::try_from(-5_i64),
        Ok(ExtensionValue::Integer(-5))
    );
}

#[test]
fn negative_zero_is_the_integer_zero() {
    let document = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":-0}"#;
    let event = CloudEvent::from_slice(document).expect("-0 is an integer");
    assert_eq!(event.extension("ext"), Some(&ExtensionValue::Integer(0)));
}

#[test]
fn integers_have_no_fraction_or_exponent() {
    for text in ["5.0", "1e3", "0.5", "-1E2"] {
        let document =
            format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":{text}}}"#);
        let error = CloudEvent::from_slice(document.as_bytes()).expect_err(text);
        assert!(
            matches!(
                error.rule(),
                Some(Rule::WrongType {
                    found: crate::JsonKind::Number,
                    ..
                })
            ),
            "{text}: {error}"
        );
    }
}

#[test]
fn timestamps_follow_rfc_3339() {
    let valid = [
        (
            "1985-04-12T23:20:50.52Z",
            datetime!(1985-04-12 23:20:50.52 UTC),
        ),
        (
            "1996-12-19T16:39:57-08:00",
            datetime!(1996-12-19 16:39:57 -8),
        ),
        (
            "1990-12-31t23:59:60z",
            datetime!(1990-12-31 23:59:59.999_999_999 UTC),
        ),
        (
            "1990-12-31T15:59:60-08:00",
            datetime!(1990-12-31 15:59:59.999_999_999 -8),
        ),
        (
            "1937-01-01T12:00:27.87+00:20",
            datetime!(1937-01-01 12:00:27.87 +0:20),
        ),
        (
            "2000-02-29T00:00:00.000000000123Z",
            datetime!(2000-02-29 00:00:00 UTC),
        ),
        (
            "0000-01-01T00:00:00-00:00",
            datetime!(0000-01-01 00:00:00 UTC),
        ),
    ];
    for (text, expected) in valid {
        assert_eq!(timestamp::parse(text), Ok(expected), "{text}");
    }
    let invalid = [
        "",
        "2018-04-05",
        "2018-04-05T17:31Z",
        "2018-04-05T17:31:00",
        "2018-04-05 17:31:00Z",
        "18-04-05T17:31:00Z",
        "2018-4-05T17:31:00Z",
        "2018-04-05T17:31:00.Z",
        "2018-04-05T17:31:00+01",
        "2018-04-05T17:31:00+0100",
        "2018-04-05T17:31:00+24:00",
        "2018-04-05T17:31:00+01:60",
        "2018-00-05T17:31:00Z",
        "2018-04-31T17:31:00Z",
        "1900-02-29T00:00:00Z",
        "2018-04-05T24:00:00Z",
        "2018-04-05T23:60:00Z",
        "2018-04-05T23:59:61Z",
        "2018-04-05T12:59:60Z",
        "2018-04-05T17:31:00ZZ",
        "2018-04-05T17:31:00Z ",
        "+2018-04-05T17:31:00Z",
        "2018-04-05T17:31:00,5Z",
        "２018-04-05T17:31:00Z",
    ];
    for text in invalid {
        assert!(timestamp::parse(text).is_err(), "{text} accepted");
    }
}

#[test]
fn leap_seconds_at_the_edges_of_the_range_are_errors_not_panics() {
    // Past year 9999 in UTC: `OffsetDateTime` cannot hold the converted value, so checking "23:59 UTC" must not
    // convert with a panicking call. Untrusted events reach this parser.
    for text in [
        "9999-12-31T23:59:60-01:00",
        "9999-12-31T23:59:60-00:01",
        "9999-12-31T23:59:60-23:59",
    ] {
        assert!(
            matches!(timestamp::parse(text), Err(Rule::InvalidTimestamp { .. })),
            "{text}"
        );
    }
    // Every offset, both ends of the range: a value or an error, never a panic.
    for sign in ['+', '-'] {
        for hour in 0..24 {
            for minute in 0..60 {
                for date in ["9999-12-31", "0000-01-01"] {
                    for clock in ["23:59:60", "00:00:60", "23:59:59.999999999"] {
                        let text = format!("{date}T{clock}{sign}{hour:02}:{minute:02}");
                        let _ = timestamp::parse(&text);
                    }
                }
            }
        }
    }
    assert_eq!(
        timestamp::parse("9999-12-31T23:59:60Z"),
        Ok(datetime!(9999-12-31 23:59:59.999_999_999 UTC))
    );
}

#[test]
fn timestamps_are_written_in_canonical_rfc_3339() {
    let cases = [
        (datetime!(2018-04-05 17:31:00 UTC), "2018-04-05T17:31:00Z"),
        (
            datetime!(2018-04-05 17:31:00.5 UTC),
            "2018-04-05T17:31:00.5Z",
        ),
        (
            datetime!(2018-04-05 17:31:00.000_000_001 +5:30),
            "2018-04-05T17:31:00.000000001+05:30",
        ),
        (
            datetime!(0001-01-01 00:00:00 -0:01),
            "0001-01-01T00:00:00-00:01",
        ),
    ];
    for (value, text) in cases {
        assert_eq!(timestamp::format(value).as_deref(), Ok(text));
        assert_eq!(timestamp::parse(text), Ok(value));
    }
    assert!(timestamp::format(datetime!(-0001-12-31 23:59:59 UTC)).is_err());
    assert!(timestamp::format(datetime!(2000-01-01 00:00:00 +0:00:30)).is_err());
}

#[test]
fn time_attribute_is_checked_on_build_and_parse() {
    let event = builder()
        .time_rfc3339("2018-04-05t17:31:00.25+01:00")
        .build()
        .expect("valid time");
    assert_eq!(event.time(), Some(datetime!(2018-04-05 17:31:00.25 +1)));
    assert_eq!(json_of(&event)["time"], "2018-04-05T17:31:00.25+01:00");
    assert!(matches!(
        builder().time_rfc3339("noon").build(),
        Err(BuildError::Invalid {
            rule: Rule::InvalidTimestamp { .. },
            ..
        })
    ));
    assert!(matches!(
        build_rule(builder().time(datetime!(-0001-01-01 00:00:00 UTC))),
        (_, Rule::InvalidTimestamp { .. })
    ));
    assert!(matches!(
        parse_with("time", json!("2018-02-30T00:00:00Z")),
        Err((_, Rule::InvalidTimestamp { .. }))
    ));
}

#[test]
fn uri_references_follow_rfc_3986() {
    let valid = [
        "",
        "/",
        "//host",
        "//host:8080/path",
        "relative/path",
        "./a",
        "../a",
        "?q",
        "#f",
        "a?b#c",
        "http://user:pw@example.com:80/a/b?c=d&e#f/g?",
        "urn:isbn:0451450523",
        "mailto:x@example.com",
        "http://[::1]/",
        "http://[2001:db8::7]:8080",
        "http://[v7.abc:def]/",
        "http://127.0.0.1/",
        "a%20b",
        "s+c.h-e:opaque",
        "http://example.com/!$&'()*+,;=:@",
        "http://host:/empty-port",
    ];
    for text in valid {
        assert_eq!(rules::check_uri_reference(text), Ok(()), "{text}");
    }
    let invalid = [
        "a b",
        "%",
        "%2",
        "%zz",
        "1:x",
        ":x",
        "http://a b/",
        "http://host:12a/",
        "http://[::1/",
        "http://[::g]/",
        "http://[::1]x/",
        "http://a@b@c/",
        "a\\b",
        "a\"b",
        "é",
        "<a>",
        "a^b",
        "a`b",
        "{x}",
        "a|b",
        "http://[v.x]/",
        "a#b#c",
        "a#b[",
    ];
    for text in invalid {
        assert!(rules::check_uri_reference(text).is_err(), "{text} accepted");
    }
}

#[test]
fn absolute_uris_follow_rfc_3986_section_4_3() {
    for text in [
        "https://example.com/schema",
        "urn:example:schema",
        "http://example.com/?v=1",
        "tag:example.com,2026:x",
    ] {
        assert_eq!(rules::check_absolute_uri(text), Ok(()), "{text}");
    }
    for text in [
        "",
        "/relative",
        "relative",
        "https://example.com/#frag",
        "1http://x",
        "//host/path",
        "ht tp://x",
    ] {
        assert!(rules::check_absolute_uri(text).is_err(), "{text} accepted");
    }
}

#[test]
fn dataschema_must_be_a_non_empty_absolute_uri() {
    let event = builder()
        .dataschema("https://example.com/schemas/v1.json")
        .build()
        .expect("valid");
    assert_eq!(
        event.dataschema(),
        Some("https://example.com/schemas/v1.json")
    );
    assert!(matches!(
        build_rule(builder().dataschema("/schemas/v1.json")),
        (_, Rule::InvalidUri { .. })
    ));
    assert_eq!(
        build_rule(builder().dataschema("")),
        ("dataschema".into(), Rule::Empty)
    );
    assert_eq!(
        parse_with("dataschema", json!("")).expect_err("empty"),
        ("dataschema".into(), Rule::Empty)
    );
}

#[test]
fn subject_if_present_must_be_non_empty() {
    assert_eq!(
        builder().subject("42").build().expect("valid").subject(),
        Some("42")
    );
    assert_eq!(
        build_rule(builder().subject("")),
        ("subject".into(), Rule::Empty)
    );
    assert_eq!(
        parse_with("subject", json!("")).expect_err("empty"),
        ("subject".into(), Rule::Empty)
    );
}

#[test]
fn datacontenttype_must_be_an_rfc_2046_media_type() {
    for text in [
        "application/json",
        "text/plain; charset=utf-8",
        "text/plain;charset=\"utf-8\"",
        "application/vnd.a+json;v=1 ; x=y",
        "*/*",
    ] {
        assert!(rules::check_content_type(text).is_ok(), "{text}");
    }
    for text in [
        "",
        "json",
        "application/",
        "/json",
        "application/json;",
        "application/json; a",
        "application/json; a=",
        "text/plain; a=\"unterminated",
        "text /plain",
        "text/plain x",
    ] {
        assert!(
            matches!(
                rules::check_content_type(text),
                Err(Rule::InvalidMediaType { .. })
            ),
            "{text} accepted"
        );
    }
    assert!(matches!(
        build_rule(builder().datacontenttype("json")),
        (_, Rule::InvalidMediaType { .. })
    ));
}

#[test]
fn json_content_types_are_json_or_plus_json_subtypes() {
    for text in [
        "application/json",
        "text/json",
        "APPLICATION/JSON",
        "application/cloudevents+json; charset=utf-8",
        "application/vnd.x+JSON",
    ] {
        assert!(crate::is_json_content_type(text), "{text}");
    }
    for text in [
        "text/plain",
        "application/jsonx",
        "application/json-seq",
        "application/+jsonx",
        "json",
        "application/xml",
    ] {
        assert!(!crate::is_json_content_type(text), "{text}");
    }
}

// ---- Extensions ----------------------------------------------------------------------------------------------

#[test]
fn extension_names_are_lowercase_letters_and_digits() {
    let event = builder()
        .extension("traceid", "x")
        .extension("a1", true)
        .extension("123", 7)
        .build()
        .expect("valid");
    assert_eq!(
        event.extensions().map(|(name, _)| name).collect::<Vec<_>>(),
        ["traceid", "a1", "123"]
    );
    for name in [
        "TraceId", "trace_id", "trace-id", "trace.id", "", "é", "trace id",
    ] {
        assert_eq!(
            build_rule(builder().extension(name, "x")),
            (name.to_owned(), Rule::InvalidName),
            "{name}"
        );
    }
    assert_eq!(
        parse_with("traceId", json!("x")).expect_err("uppercase"),
        ("traceId".into(), Rule::InvalidName)
    );
}

#[test]
fn extensions_cannot_use_reserved_names() {
    for name in [
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "data",
    ] {
        assert_eq!(
            build_rule(builder().extension(name, "x")),
            (name.to_owned(), Rule::ReservedName)
        );
    }
}

#[test]
fn long_extension_names_are_allowed() {
    let name = "abcdefghijklmnopqrstuvwxyz0123456789";
    assert!(builder().extension(name, 1).build().is_ok());
    assert!(parse_with(name, json!(1)).is_ok());
}

#[test]
fn extension_values_are_checked_by_type() {
    let event = builder()
        .extension("text", "x")
        .extension("flag", true)
        .extension("count", -3)
        .extension("uri", ExtensionValue::Uri("https://example.com".into()))
        .extension("ref", ExtensionValue::UriRef("/a/b".into()))
        .extension("at", datetime!(2026-01-02 03:04:05 UTC))
        .extension("bin", vec![1u8, 2, 3])
        .build()
        .expect("valid");
    assert_eq!(
        json_of(&event),
        json!({"specversion": "1.0", "id": "1", "source": "/source", "type": "com.example.test", "text": "x",
               "flag": true, "count": -3, "uri": "https://example.com", "ref": "/a/b", "at": "2026-01-02T03:04:05Z",
               "bin": "AQID"})
    );
    assert!(matches!(
        build_rule(builder().extension("uri", ExtensionValue::Uri("/relative".into()))),
        (_, Rule::InvalidUri { .. })
    ));
    assert!(matches!(
        build_rule(builder().extension("ref", ExtensionValue::UriRef("a b".into()))),
        (_, Rule::InvalidUriReference { .. })
    ));
    assert!(matches!(
        build_rule(builder().extension("text", "a\u{0}")),
        (_, Rule::ForbiddenCharacter { .. })
    ));
    assert!(matches!(
        parse_with("ext", json!({"a": 1})),
        Err((_, Rule::WrongType { .. }))
    ));
    assert!(matches!(
        parse_with("ext", json!([1])),
        Err((_, Rule::WrongType { .. }))
    ));
}

#[test]
fn typed_extension_values_equal_their_json_string_form() {
    let event = builder()
        .extension("at", datetime!(2026-01-02 03:04:05.5 +1))
        .extension("bin", vec![0xffu8])
        .extension("uri", ExtensionValue::Uri("urn:x:y".into()))
        .build()
        .expect("valid");
    let parsed = CloudEvent::from_slice(&event.to_vec().expect("serialize")).expect("parse");
    assert_eq!(parsed, event);
    let at = parsed.extension("at").expect("at");
    assert_eq!(at.as_str(), Some("2026-01-02T03:04:05.5+01:00"));
    assert_eq!(at.as_timestamp(), Some(datetime!(2026-01-02 03:04:05.5 +1)));
    assert_eq!(
        parsed
            .extension("bin")
            .and_then(ExtensionValue::as_binary)
            .as_deref(),
        Some(&[0xffu8][..])
    );
    assert_ne!(
        ExtensionValue::Integer(1),
        ExtensionValue::String("1".into())
    );
    assert_ne!(
        ExtensionValue::Boolean(true),
        ExtensionValue::String("true".into())
    );
    assert_eq!(ExtensionValue::Integer(-7).to_string(), "-7");
}

#[test]
fn setting_an_extension_twice_keeps_the_last_value() {
    let event = builder()
        .extension("a", 1)
        .extension("a", 2)
        .build()
        .expect("valid");
    assert_eq!(event.extensions().len(), 1);
    assert_eq!(
        event.extension("a").and_then(ExtensionValue::as_i32),
        Some(2)
    );
    let event = event
        .into_builder()
        .without_extension("a")
        .build()
        .expect("valid");
    assert_eq!(event.extension("a"), None);
}

// ---- Members of the JSON object ------------------------------------------------------------------------------

#[test]
fn duplicate_members_are_refused() {
    for (document, attribute) in [
        (
            r#"{"specversion":"1.0","specversion":"1.0","id":"1","source":"/s","type":"t"}"#,
            "specversion",
        ),
        (
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":null,"time":null}"#,
            "time",
        ),
        (
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","x":1,"x":1}"#,
            "x",
        ),
        (
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"","data_base64":""}"#,
            "data_base64",
        ),
    ] {
        let error = CloudEvent::from_slice(document.as_bytes()).expect_err(attribute);
        assert_eq!(
            (error.attribute(), error.rule()),
            (Some(attribute), Some(&Rule::Duplicate))
        );
    }
}

#[test]
fn members_with_escaped_names_are_recognised() {
    let document = br#"{"specversion":"1.0","\u0069d":"1","source":"/s","type":"t","\u0078":"y"}"#;
    let event = CloudEvent::from_slice(document).expect("escaped names");
    assert_eq!(event.id(), "1");
    assert_eq!(
        event.extension("x").and_then(ExtensionValue::as_str),
        Some("y")
    );
}

#[test]
fn documents_that_are_not_objects_are_refused() {
    for (document, found) in [
        ("[]", crate::JsonKind::Array),
        ("null", crate::JsonKind::Null),
        ("\"x\"", crate::JsonKind::String),
        ("1", crate::JsonKind::Integer),
        ("true", crate::JsonKind::Boolean),
    ] {
        match CloudEvent::from_slice(document.as_bytes()) {
            Err(ParseError::NotAnObject { found: actual }) => {
                assert_eq!(actual, found, "{document}")
            }
            other => panic!("{document}: {other:?}"),
        }
    }
    assert!(matches!(
        CloudEvent::from_slice(b"{"),
        Err(ParseError::Syntax(_))
    ));
    assert!(matches!(
        CloudEvent::from_slice(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}{}"#),
        Err(ParseError::Syntax(_))
    ));
}

// ---- data and data_base64 ------------------------------------------------------------------------------------

#[test]
fn binary_data_is_written_as_data_base64() {
    let event = builder()
        .binary_data(b"hello".to_vec())
        .datacontenttype("application/octet-stream")
        .build()
        .expect("valid");
    let json = json_of(&event);
    assert_eq!(json["data_base64"], "aGVsbG8=");
    assert!(json.get("data").is_none());
    let parsed = CloudEvent::from_slice(&event.to_vec().expect("serialize")).expect("parse");
    assert_eq!(parsed.data().and_then(Data::as_bytes), Some(&b"hello"[..]));
    assert_eq!(parsed, event);
}

#[test]
fn data_base64_must_be_padded_base64() {
    assert_eq!(
        parse_with("data_base64", json!("AAECAw=="))
            .expect("valid")
            .data(),
        Some(&Data::Binary(vec![0, 1, 2, 3]))
    );
    for text in ["AAECAw", "AAECAw=", "!!!!", "AAEC\nAw=="] {
        assert_eq!(
            parse_with("data_base64", json!(text)).expect_err(text),
            ("data_base64".into(), Rule::InvalidBase64)
        );
    }
}

#[test]
fn data_and_data_base64_are_mutually_exclusive() {
    let document =
        br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AA==","data":1}"#;
    let error = CloudEvent::from_slice(document).expect_err("both");
    assert_eq!(
        (error.attribute(), error.rule()),
        (Some("data_base64"), Some(&Rule::DataAndDataBase64))
    );
    let document =
        br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":null,"data":1}"#;
    assert_eq!(
        CloudEvent::from_slice(document)
            .expect("null data_base64 is absent")
            .data(),
        Some(&Data::Json(json!(1)))
    );
}

#[test]
fn json_data_is_stored_directly_not_as_an_encoded_string() {
    let event = builder()
        .json_data(&json!({"a": [1, 2]}))
        .build()
        .expect("valid");
    assert_eq!(json_of(&event)["data"], json!({"a": [1, 2]}));
    let parsed = parse_with("data", json!("{\"a\":1}")).expect("string data");
    assert_eq!(
        parsed.data(),
        Some(&Data::Json(json!("{\"a\":1}"))),
        "a JSON string is not parsed again"
    );
}

#[test]
fn data_without_datacontenttype_is_json() {
    let event = parse_with("data", json!({"k": true})).expect("valid");
    assert!(event.is_json_content());
    assert_eq!(event.data(), Some(&Data::Json(json!({"k": true}))));
}

#[test]
fn explicit_null_data_is_kept() {
    let event = parse_with("data", Value::Null).expect("valid");
    assert_eq!(event.data(), Some(&Data::Json(Value::Null)));
    assert_eq!(json_of(&event)["data"], Value::Null);
    assert!(
        json_of(&builder().build().expect("valid"))
            .get("data")
            .is_none()
    );
}

#[test]
fn non_json_data_must_be_a_string() {
    let event = builder()
        .datacontenttype("text/xml")
        .string_data("<a/>")
        .build()
        .expect("valid");
    assert_eq!(json_of(&event)["data"], "<a/>");
    let parsed = CloudEvent::from_slice(&event.to_vec().expect("serialize")).expect("parse");
    assert_eq!(parsed.data(), Some(&Data::String("<a/>".into())));
    assert_eq!(
        build_rule(
            builder()
                .datacontenttype("text/xml")
                .json_data(&json!({"a": 1}))
        ),
        ("data".into(), Rule::DataNotString)
    );
    assert_eq!(
        build_rule(builder().datacontenttype("text/plain").data(42)),
        ("data".into(), Rule::DataNotString)
    );
    assert!(
        builder()
            .datacontenttype("text/plain")
            .data("typed text")
            .build()
            .is_ok()
    );
    let document = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":{"a":1}}"#;
    let error = CloudEvent::from_slice(document).expect_err("object with text/plain");
    assert_eq!(
        (error.attribute(), error.rule()),
        (Some("data"), Some(&Rule::DataNotString))
    );
}

#[test]
fn datacontenttype_may_appear_without_data() {
    let event = builder()
        .datacontenttype("application/xml")
        .build()
        .expect("valid");
    assert_eq!(event.datacontenttype(), Some("application/xml"));
    assert!(!event.is_json_content());
    assert!(json_of(&event).get("data").is_none());
}

#[test]
fn string_and_json_string_payloads_compare_equal() {
    assert_eq!(Data::String("x".into()), Data::Json(json!("x")));
    assert_ne!(Data::String("1".into()), Data::Json(json!(1)));
    assert_ne!(Data::Binary(b"x".to_vec()), Data::String("x".into()));
}

// ---- Serialization -------------------------------------------------------------------------------------------

#[test]
fn serialization_never_writes_null_and_always_writes_required_attributes() {
    let event = builder().build().expect("valid");
    assert_eq!(
        event.to_json_string().expect("serialize"),
        r#"{"specversion":"1.0","id":"1","source":"/source","type":"com.example.test"}"#
    );
}

#[test]
fn typed_data_is_serialized_directly() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Payload {
        task_id: u32,
        title: String,
    }
    let event = builder()
        .data(Payload {
            task_id: 7,
            title: "t".into(),
        })
        .build()
        .expect("valid");
    assert_eq!(json_of(&event)["data"], json!({"task_id": 7, "title": "t"}));
    let parsed = CloudEvent::from_slice(&event.to_vec().expect("serialize")).expect("parse");
    assert_eq!(
        parsed.data_as::<Payload>().expect("data").expect("typed"),
        Payload {
            task_id: 7,
            title: "t".into()
        }
    );
    let typed = parsed.into_typed::<Payload>().expect("typed");
    assert_eq!(typed.data(), event.data());
    assert_eq!(typed.id(), event.id());
}

#[test]
fn serde_deserialize_uses_the_same_rules() {
    let event: CloudEvent =
        serde_json::from_str(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#)
            .expect("valid");
    assert_eq!(event.id(), "1");
    let error = serde_json::from_str::<CloudEvent>(
        r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#,
    )
    .expect_err("empty id");
    assert!(
        error
            .to_string()
            .starts_with("`id` must be a non-empty string"),
        "{error}"
    );
    let parsed: CloudEvent =
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}"
            .parse()
            .expect("FromStr");
    assert_eq!(parsed, event);
}

#[test]
fn batches_round_trip_and_report_the_failing_index() {
    let events = vec![
        builder().build().expect("valid"),
        builder()
            .id("2")
            .binary_data(vec![1])
            .build()
            .expect("valid"),
    ];
    let bytes = batch::to_vec(&events).expect("serialize");
    assert_eq!(batch::from_slice(&bytes).expect("parse"), events);
    assert_eq!(
        batch::from_str("[]").expect("empty batch"),
        Vec::<CloudEvent>::new()
    );
    let error = batch::from_str(
        r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"2.0"}]"#,
    )
    .expect_err("bad");
    assert!(matches!(error, ParseError::BatchItem { index: 1, .. }));
    assert_eq!(error.to_string(), "event 1 of the batch is invalid");
    assert!(matches!(
        batch::from_str("{}"),
        Err(ParseError::NotAnArray {
            found: crate::JsonKind::Object
        })
    ));
}

#[test]
fn an_unsupported_specversion_is_reported_before_other_violations() {
    let document = br#"{"id":"1","source":"/s","type":"t","schemaurl":"x","data_base64":"?","specversion":"0.3"}"#;
    let error = CloudEvent::from_slice(document).expect_err("0.3");
    assert_eq!(error.attribute(), Some("specversion"));
    assert_eq!(
        error.rule(),
        Some(&Rule::UnsupportedSpecVersion {
            found: "0.3".into()
        })
    );
}

#[test]
fn events_can_be_read_from_a_json_value() {
    let value =
        json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "n": 3, "data": [1]});
    let event = CloudEvent::from_value(value).expect("valid");
    assert_eq!(event.extension("n"), Some(&ExtensionValue::Integer(3)));
    assert_eq!(event.data(), Some(&Data::Json(json!([1]))));
    let error = CloudEvent::from_value(
        json!({"specversion": "1.0", "id": "1", "source": "a b", "type": "t"}),
    )
    .expect_err("bad source");
    assert!(matches!(
        error.rule(),
        Some(Rule::InvalidUriReference { .. })
    ));
    let error = CloudEvent::from_value(json!({"specversion": "0.3", "id": 5})).expect_err("0.3");
    assert_eq!(
        error.rule(),
        Some(&Rule::UnsupportedSpecVersion {
            found: "0.3".into()
        })
    );
    assert!(matches!(
        CloudEvent::from_value(json!([])),
        Err(ParseError::NotAnObject { .. })
    ));
    let mut buffer = Vec::new();
    event.to_writer(&mut buffer).expect("write");
    assert_eq!(buffer, event.to_vec().expect("serialize"));
}

#[test]
fn sources_are_checked_like_the_builder_does() {
    for good in [
        "pakaura/api",
        "https://example.com/api",
        "urn:pakaura:api",
        "/relative",
        "a",
    ] {
        assert_eq!(crate::check_source(good), Ok(()), "{good}");
        assert!(
            CloudEvent::builder("1", good, "t").build().is_ok(),
            "{good}"
        );
    }
    for bad in [
        "",
        "has space",
        "bad:|pipe",
        "%zz",
        "a\u{0}b",
        "http://[::1",
    ] {
        assert!(crate::check_source(bad).is_err(), "{bad:?}");
        assert!(
            CloudEvent::builder("1", bad, "t").build().is_err(),
            "{bad:?}"
        );
    }
}
