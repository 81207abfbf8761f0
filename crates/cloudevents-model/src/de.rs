//! Strict parsing of the JSON event format and of the batch format, with a hand-written visitor that reads
//! attributes straight into the event (no intermediate map) and records which rule failed.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::data::Data;
use crate::error::{JsonKind, ParseError, Rule, Violation};
use crate::event::CloudEvent;
use crate::extension::ExtensionValue;
use crate::{SPEC_VERSION, rules, timestamp};

/// Where the visitors leave the precise reason of a failure, since serde errors can only carry text.
type Slot = Cell<Option<ParseError>>;

/// Records `error` in the slot (if any) and returns a serde error with the same message.
fn fail<E: de::Error>(slot: Option<&Slot>, error: ParseError) -> E {
    let serde_error = E::custom(&error);
    if let Some(slot) = slot {
        slot.set(Some(error));
    }
    serde_error
}

fn violation<E: de::Error>(slot: Option<&Slot>, attribute: &str, rule: Rule) -> E {
    fail(slot, Violation::new(attribute, rule).into())
}

/// A JSON value read as an attribute: scalars kept, strings borrowed when possible, containers skipped.
enum AttrValue<'de> {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl AttrValue<'_> {
    fn kind(&self) -> JsonKind {
        match self {
            Self::Null => JsonKind::Null,
            Self::Bool(_) => JsonKind::Boolean,
            Self::Integer(_) => JsonKind::Integer,
            Self::Float(_) => JsonKind::Number,
            Self::Str(_) => JsonKind::String,
            Self::Array => JsonKind::Array,
            Self::Object => JsonKind::Object,
        }
    }
}

impl<'de> de::Deserialize<'de> for AttrValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AttrValueVisitor)
    }
}

struct AttrValueVisitor;

impl<'de> Visitor<'de> for AttrValueVisitor {
    type Value = AttrValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(AttrValue::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(AttrValue::Null)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(AttrValue::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(AttrValue::Integer(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(AttrValue::Integer(i64::try_from(value).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(AttrValue::Float(value))
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(AttrValue::Str(Cow::Borrowed(value)))
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(AttrValue::Str(Cow::Owned(value.to_owned())))
    }
    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(AttrValue::Str(Cow::Owned(value)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AttrValue::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AttrValue::Object)
    }
}

/// A member name of an event object.
enum Key<'de> {
    SpecVersion,
    Id,
    Source,
    Type,
    Subject,
    Time,
    DataContentType,
    DataSchema,
    Data,
    DataBase64,
    Extension(Cow<'de, str>),
}

impl Key<'_> {
    fn known(name: &str) -> Option<Self> {
        Some(match name {
            "specversion" => Self::SpecVersion,
            "id" => Self::Id,
            "source" => Self::Source,
            "type" => Self::Type,
            "subject" => Self::Subject,
            "time" => Self::Time,
            "datacontenttype" => Self::DataContentType,
            "dataschema" => Self::DataSchema,
            "data" => Self::Data,
            "data_base64" => Self::DataBase64,
            _ => return None,
        })
    }

    /// Bit used to detect duplicate core members.
    fn bit(&self) -> u16 {
        match self {
            Self::SpecVersion => 1,
            Self::Id => 1 << 1,
            Self::Source => 1 << 2,
            Self::Type => 1 << 3,
            Self::Subject => 1 << 4,
            Self::Time => 1 << 5,
            Self::DataContentType => 1 << 6,
            Self::DataSchema => 1 << 7,
            Self::Data => 1 << 8,
            Self::DataBase64 => 1 << 9,
            Self::Extension(_) => 0,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::SpecVersion => "specversion",
            Self::Id => "id",
            Self::Source => "source",
            Self::Type => "type",
            Self::Subject => "subject",
            Self::Time => "time",
            Self::DataContentType => "datacontenttype",
            Self::DataSchema => "dataschema",
            Self::Data => "data",
            Self::DataBase64 => "data_base64",
            Self::Extension(name) => name,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute name")
    }
    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Key::known(name).unwrap_or(Key::Extension(Cow::Borrowed(name))))
    }
    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Key::known(name).unwrap_or_else(|| Key::Extension(Cow::Owned(name.to_owned()))))
    }
    fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
        Ok(Key::known(&name).unwrap_or(Key::Extension(Cow::Owned(name))))
    }
}

/// Deserializes one event, leaving the precise failure in `slot`.
#[derive(Clone, Copy)]
pub(crate) struct EventSeed<'s> {
    pub(crate) slot: Option<&'s Slot>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = CloudEvent<Data>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(EventVisitor { slot: self.slot })
    }
}

struct EventVisitor<'s> {
    slot: Option<&'s Slot>,
}

impl EventVisitor<'_> {
    fn not_an_object<E: de::Error>(&self, found: JsonKind) -> E {
        fail(self.slot, ParseError::NotAnObject { found })
    }

    /// Reads a string attribute: `Ok(None)` for `null` (which the JSON format treats as absent).
    fn string<'de, E: de::Error>(
        &self,
        key: &Key<'_>,
        value: AttrValue<'de>,
    ) -> Result<Option<Cow<'de, str>>, E> {
        match value {
            AttrValue::Str(text) => Ok(Some(text)),
            AttrValue::Null => Ok(None),
            other => Err(violation(
                self.slot,
                key.name(),
                Rule::WrongType {
                    expected: "a string",
                    found: other.kind(),
                },
            )),
        }
    }

    /// Reads a string attribute that must be non-empty and free of disallowed characters.
    fn text<E: de::Error>(&self, key: &Key<'_>, value: AttrValue<'_>) -> Result<Option<String>, E> {
        match self.string(key, value)? {
            Some(text) => {
                rules::check_non_empty_string(&text)
                    .map_err(|rule| violation(self.slot, key.name(), rule))?;
                Ok(Some(text.into_owned()))
            }
            None => Ok(None),
        }
    }

    fn extension_value<E: de::Error>(
        &self,
        name: &str,
        value: AttrValue<'_>,
    ) -> Result<Option<ExtensionValue>, E> {
        let rule = match value {
            AttrValue::Null => return Ok(None),
            AttrValue::Bool(value) => return Ok(Some(ExtensionValue::Boolean(value))),
            AttrValue::Integer(value) => match i32::try_from(value) {
                Ok(value) => return Ok(Some(ExtensionValue::Integer(value))),
                Err(_) => Rule::IntegerOutOfRange,
            },
            AttrValue::Str(text) => match rules::check_string(&text) {
                Ok(()) => return Ok(Some(ExtensionValue::String(text.into_owned()))),
                Err(rule) => rule,
            },
            // serde_json reads the integer `-0` as a float.
            AttrValue::Float(number) if number == 0.0 && number.is_sign_negative() => {
                return Ok(Some(ExtensionValue::Integer(0)));
            }
            AttrValue::Float(number)
                if number.fract() == 0.0
                    && number.is_finite()
                    && number.abs() > 2_147_483_647.0 =>
            {
                Rule::IntegerOutOfRange
            }
            other => Rule::WrongType {
                expected: "a string, a boolean or an integer",
                found: other.kind(),
            },
        };
        Err(violation(self.slot, name, rule))
    }
}

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = CloudEvent<Data>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent as a JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.not_an_object(JsonKind::Null))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.not_an_object(JsonKind::Boolean))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.not_an_object(JsonKind::Integer))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.not_an_object(JsonKind::Integer))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.not_an_object(JsonKind::Number))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.not_an_object(JsonKind::String))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.not_an_object(JsonKind::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = 0u16;
        let mut spec_version = false;
        let mut id = None;
        let mut source = None;
        let mut ty = None;
        let mut subject = None;
        let mut time = None;
        let mut datacontenttype: Option<String> = None;
        let mut json_content = true;
        let mut dataschema = None;
        let mut data: Option<Value> = None;
        let mut data_base64: Option<Vec<u8>> = None;
        let mut extensions: Vec<(String, ExtensionValue)> = Vec::new();
        // Extensions given as `null` (absent, but they still count for duplicates).
        let mut null_extensions: Vec<String> = Vec::new();

        while let Some(key) = map.next_key::<Key<'de>>()? {
            let bit = key.bit();
            if seen & bit != 0 {
                return Err(violation(self.slot, key.name(), Rule::Duplicate));
            }
            seen |= bit;
            match key {
                Key::Data => {
                    data = Some(map.next_value::<Value>()?);
                    continue;
                }
                Key::Extension(name) => {
                    if !rules::is_valid_name(&name) {
                        return Err(violation(self.slot, &name, Rule::InvalidName));
                    }
                    if extensions.iter().any(|(existing, _)| *existing == *name)
                        || null_extensions.iter().any(|existing| *existing == *name)
                    {
                        return Err(violation(self.slot, &name, Rule::Duplicate));
                    }
                    let value = map.next_value::<AttrValue<'de>>()?;
                    match self.extension_value(&name, value)? {
                        Some(value) => extensions.push((name.into_owned(), value)),
                        None => null_extensions.push(name.into_owned()),
                    }
                    continue;
                }
                _ => {}
            }
            let value = map.next_value::<AttrValue<'de>>()?;
            match key {
                Key::SpecVersion => match self.string(&key, value)? {
                    Some(version) if version == SPEC_VERSION => spec_version = true,
                    Some(version) if version.is_empty() => {
                        return Err(violation(self.slot, "specversion", Rule::Empty));
                    }
                    Some(version) => {
                        return Err(violation(
                            self.slot,
                            "specversion",
                            Rule::UnsupportedSpecVersion {
                                found: version.into_owned(),
                            },
                        ));
                    }
                    None => {}
                },
                Key::Id => id = self.text(&key, value)?,
                Key::Source => {
                    source = self.text(&key, value)?;
                    if let Some(source) = &source {
                        rules::check_uri_reference(source)
                            .map_err(|rule| violation(self.slot, "source", rule))?;
                    }
                }
                Key::Type => ty = self.text(&key, value)?,
                Key::Subject => subject = self.text(&key, value)?,
                Key::Time => {
                    if let Some(text) = self.string(&key, value)? {
                        time = Some(
                            timestamp::parse(&text)
                                .map_err(|rule| violation(self.slot, "time", rule))?,
                        );
                    }
                }
                Key::DataContentType => {
                    if let Some(text) = self.string(&key, value)? {
                        json_content = rules::check_content_type(&text)
                            .map_err(|rule| violation(self.slot, "datacontenttype", rule))?;
                        datacontenttype = Some(text.into_owned());
                    }
                }
                Key::DataSchema => {
                    if let Some(text) = self.string(&key, value)? {
                        if text.is_empty() {
                            return Err(violation(self.slot, "dataschema", Rule::Empty));
                        }
                        rules::check_absolute_uri(&text)
                            .map_err(|rule| violation(self.slot, "dataschema", rule))?;
                        dataschema = Some(text.into_owned());
                    }
                }
                Key::DataBase64 => {
                    if let Some(text) = self.string(&key, value)? {
                        data_base64 = Some(STANDARD.decode(text.as_bytes()).map_err(|_| {
                            violation(self.slot, "data_base64", Rule::InvalidBase64)
                        })?);
                    }
                }
                Key::Data | Key::Extension(_) => {}
            }
        }

        if !spec_version {
            return Err(violation(self.slot, "specversion", Rule::Missing));
        }
        let Some(id) = id else {
            return Err(violation(self.slot, "id", Rule::Missing));
        };
        let Some(source) = source else {
            return Err(violation(self.slot, "source", Rule::Missing));
        };
        let Some(ty) = ty else {
            return Err(violation(self.slot, "type", Rule::Missing));
        };
        let data = match (data, data_base64) {
            (Some(_), Some(_)) => {
                return Err(violation(self.slot, "data_base64", Rule::DataAndDataBase64));
            }
            (Some(Value::String(text)), None) if !json_content => Some(Data::String(text)),
            (Some(_), None) if !json_content => {
                return Err(violation(self.slot, "data", Rule::DataNotString));
            }
            (Some(value), None) => Some(Data::Json(value)),
            (None, Some(bytes)) => Some(Data::Binary(bytes)),
            (None, None) => None,
        };
        Ok(CloudEvent {
            id,
            source,
            ty,
            time,
            subject,
            datacontenttype,
            dataschema,
            extensions,
            data,
            json_content,
        })
    }
}

impl<'de> de::Deserialize<'de> for CloudEvent<Data> {
    /// Reads the JSON event format strictly; errors carry the message of the corresponding [`ParseError`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EventSeed { slot: None }.deserialize(deserializer)
    }
}

/// On the error path only: if the document declares a `specversion` other than 1.0, that is the root cause of
/// whatever rule failed first, so report it instead.
fn unsupported_version(bytes: &[u8]) -> Option<ParseError> {
    #[derive(serde::Deserialize)]
    struct VersionOnly<'a> {
        #[serde(borrow)]
        specversion: Option<Cow<'a, str>>,
    }
    let found = serde_json::from_slice::<VersionOnly<'_>>(bytes)
        .ok()?
        .specversion?;
    (!found.is_empty() && found != SPEC_VERSION).then(|| {
        Violation::new(
            "specversion",
            Rule::UnsupportedSpecVersion {
                found: found.into_owned(),
            },
        )
        .into()
    })
}

/// Runs `seed` over a whole JSON document and turns failures into [`ParseError`]s.
pub(crate) fn parse_document<'de, S>(
    bytes: &'de [u8],
    seed: S,
    slot: &Slot,
) -> Result<S::Value, ParseError>
where
    S: DeserializeSeed<'de>,
{
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|error| slot.take().unwrap_or(ParseError::Syntax(error)))
}

impl CloudEvent<Data> {
    /// Parses one event in the JSON event format (`application/cloudevents+json`), checking every rule.
    ///
    /// # Errors
    /// [`ParseError::Invalid`] names the attribute and the rule it broke; [`ParseError::Syntax`] reports
    /// malformed JSON; [`ParseError::NotAnObject`] a document that is not an object.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
        let slot = Cell::new(None);
        parse_document(bytes, EventSeed { slot: Some(&slot) }, &slot)
            .map_err(|error| unsupported_version(bytes).unwrap_or(error))
    }

    /// Reads an event from an already parsed JSON value (for example one member of a larger document), with
    /// the same rules and errors as [`from_slice`](Self::from_slice).
    ///
    /// # Errors
    /// As [`from_slice`](Self::from_slice), except that there is no syntax to get wrong.
    pub fn from_value(value: Value) -> Result<Self, ParseError> {
        let declared_version = match value.get("specversion") {
            Some(Value::String(found)) if !found.is_empty() && found != SPEC_VERSION => {
                Some(found.clone())
            }
            _ => None,
        };
        let slot = Cell::new(None);
        EventSeed { slot: Some(&slot) }
            .deserialize(value)
            .map_err(|error| match declared_version {
                Some(found) => {
                    Violation::new("specversion", Rule::UnsupportedSpecVersion { found }).into()
                }
                None => slot.take().unwrap_or(ParseError::Syntax(error)),
            })
    }

    /// Deserializes the payload into `T` and returns the event with the typed payload.
    ///
    /// # Errors
    /// Fails when the payload does not have the shape `T` expects.
    pub fn into_typed<T: de::DeserializeOwned>(self) -> Result<CloudEvent<T>, serde_json::Error> {
        let data = match self.data {
            None => None,
            Some(Data::Json(value)) => Some(serde_json::from_value(value)?),
            Some(Data::String(text)) => Some(T::deserialize(de::value::StringDeserializer::<
                serde_json::Error,
            >::new(text))?),
            Some(Data::Binary(bytes)) => Some(T::deserialize(de::value::BytesDeserializer::<
                serde_json::Error,
            >::new(&bytes))?),
        };
        Ok(CloudEvent {
            id: self.id,
            source: self.source,
            ty: self.ty,
            time: self.time,
            subject: self.subject,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            extensions: self.extensions,
            data,
            json_content: self.json_content,
        })
    }
}

impl FromStr for CloudEvent<Data> {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        Self::from_slice(text.as_bytes())
    }
}

/// Deserializes a batch (a JSON array of events), wrapping an event's failure with its index.
pub(crate) struct BatchSeed<'s> {
    pub(crate) slot: &'s Slot,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<CloudEvent<Data>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl BatchSeed<'_> {
    fn not_an_array<E: de::Error>(&self, found: JsonKind) -> E {
        fail(Some(self.slot), ParseError::NotAnArray { found })
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<CloudEvent<Data>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of CloudEvents")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.not_an_array(JsonKind::Null))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.not_an_array(JsonKind::Boolean))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.not_an_array(JsonKind::Integer))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.not_an_array(JsonKind::Integer))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.not_an_array(JsonKind::Number))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.not_an_array(JsonKind::String))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.not_an_array(JsonKind::Object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(4096));
        loop {
            let index = events.len();
            match seq.next_element_seed(EventSeed {
                slot: Some(self.slot),
            }) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return Ok(events),
                Err(error) => {
                    if let Some(source) = self.slot.take() {
                        self.slot.set(Some(ParseError::BatchItem {
                            index,
                            source: Box::new(source),
                        }));
                    }
                    return Err(error);
                }
            }
        }
    }
}
