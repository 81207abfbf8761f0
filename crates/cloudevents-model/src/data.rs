//! The event payload: [`Data`] for raw payloads (JSON, text, bytes), and the probe that tells the serializer
//! whether a payload of any type is binary (`data_base64`), a string, or some other JSON value.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;

/// Name of the newtype struct [`Data::Binary`] serializes as; the event serializer recognises it and writes
/// `data_base64` instead of `data`.
pub(crate) const BINARY_TOKEN: &str = "$cloudevents_model::private::Binary";

/// A payload whose shape is known only at run time: what a parsed event carries.
///
/// - [`Json`](Self::Json): `data` holding any JSON value, when `datacontenttype` is absent or declares JSON
///   (`*/json`, `*/*+json`). `Json(Value::Null)` is an explicit `null` payload.
/// - [`String`](Self::String): `data` holding text, when `datacontenttype` declares something else (`text/plain`,
///   `application/xml`, ...).
/// - [`Binary`](Self::Binary): bytes, written as `data_base64`.
///
/// Equality follows the JSON representation: `String(s)` equals `Json(Value::String(s))`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Data {
    /// A JSON value.
    Json(Value),
    /// Text in the format `datacontenttype` names.
    String(String),
    /// Bytes, serialized as base64 in `data_base64`.
    Binary(Vec<u8>),
}

impl Data {
    /// Converts any serializable value into [`Data::Json`].
    ///
    /// # Errors
    /// Fails when `value` cannot be represented as JSON (for example a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_value(value).map(Self::Json)
    }

    /// The JSON value, if this is [`Data::Json`].
    #[must_use]
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Self::Json(value) => Some(value),
            _ => None,
        }
    }

    /// The text, if this is [`Data::String`] or a JSON string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            Self::Json(Value::String(text)) => Some(text),
            _ => None,
        }
    }

    /// The bytes, if this is [`Data::Binary`].
    #[must_use]
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Binary(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Deserializes the payload into `T`: JSON values directly (without copying), text as a JSON string.
    ///
    /// # Errors
    /// Fails when the payload does not have the shape `T` expects, or is binary and `T` does not accept bytes.
    pub fn to_typed<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        match self {
            Self::Json(value) => T::deserialize(value),
            Self::String(text) => {
                T::deserialize(de::value::StrDeserializer::<serde_json::Error>::new(text))
            }
            Self::Binary(bytes) => T::deserialize(
                de::value::BytesDeserializer::<serde_json::Error>::new(bytes),
            ),
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Json(left), Self::Json(right)) => left == right,
            (Self::Binary(left), Self::Binary(right)) => left == right,
            (Self::String(left), Self::String(right)) => left == right,
            (Self::String(text), Self::Json(Value::String(json)))
            | (Self::Json(Value::String(json)), Self::String(text)) => text == json,
            _ => false,
        }
    }
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

impl From<String> for Data {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<&str> for Data {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<Vec<u8>> for Data {
    fn from(value: Vec<u8>) -> Self {
        Self::Binary(value)
    }
}

/// Serializes bytes as a base64 string without building the string first.
struct Base64Bytes<'a>(&'a [u8]);

impl Serialize for Base64Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&base64::display::Base64Display::new(self.0, &STANDARD))
    }
}

impl Serialize for Data {
    /// `Json` as the value, `String` as a JSON string, `Binary` as a base64 string (marked so that an event
    /// writes it under `data_base64`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Json(value) => value.serialize(serializer),
            Self::String(text) => serializer.serialize_str(text),
            Self::Binary(bytes) => {
                serializer.serialize_newtype_struct(BINARY_TOKEN, &Base64Bytes(bytes))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    /// Reads any JSON value as [`Data::Json`]; the event parser decides on `String` and `Binary`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::Json)
    }
}

/// The top-level shape of a serializable payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// [`Data::Binary`]: goes to `data_base64`.
    Binary,
    /// A string (or a char, or a unit variant, which serde writes as a string).
    String,
    /// Anything else: numbers, booleans, null, arrays, objects.
    Other,
}

/// Finds the [`Shape`] of `value` by looking only at the first serializer call: O(1) for any payload type.
pub(crate) fn shape_of<T: Serialize + ?Sized>(value: &T) -> Shape {
    match value.serialize(ShapeProbe) {
        Ok(shape) => shape,
        Err(ProbeStop) => Shape::Other,
    }
}

#[derive(Debug)]
struct ProbeStop;

impl fmt::Display for ProbeStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe stopped")
    }
}

impl std::error::Error for ProbeStop {}

impl ser::Error for ProbeStop {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Self
    }
}

struct ShapeProbe;

type Stop<T = Shape> = Result<T, ProbeStop>;

impl Serializer for ShapeProbe {
    type Ok = Shape;
    type Error = ProbeStop;
    type SerializeSeq = ser::Impossible<Shape, ProbeStop>;
    type SerializeTuple = ser::Impossible<Shape, ProbeStop>;
    type SerializeTupleStruct = ser::Impossible<Shape, ProbeStop>;
    type SerializeTupleVariant = ser::Impossible<Shape, ProbeStop>;
    type SerializeMap = ser::Impossible<Shape, ProbeStop>;
    type SerializeStruct = ser::Impossible<Shape, ProbeStop>;
    type SerializeStructVariant = ser::Impossible<Shape, ProbeStop>;

    fn serialize_bool(self, _: bool) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_i8(self, _: i8) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_i16(self, _: i16) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_i32(self, _: i32) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_i64(self, _: i64) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_i128(self, _: i128) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_u8(self, _: u8) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_u16(self, _: u16) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_u32(self, _: u32) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_u64(self, _: u64) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_u128(self, _: u128) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_f32(self, _: f32) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_f64(self, _: f64) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_char(self, _: char) -> Stop {
        Ok(Shape::String)
    }
    fn serialize_str(self, _: &str) -> Stop {
        Ok(Shape::String)
    }
    fn serialize_bytes(self, _: &[u8]) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_none(self) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Stop {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Stop {
        Ok(Shape::String)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Stop {
        if name == BINARY_TOKEN {
            Ok(Shape::Binary)
        } else {
            value.serialize(self)
        }
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Stop {
        Ok(Shape::Other)
    }
    fn serialize_seq(self, _: Option<usize>) -> Stop<Self::SerializeSeq> {
        Err(ProbeStop)
    }
    fn serialize_tuple(self, _: usize) -> Stop<Self::SerializeTuple> {
        Err(ProbeStop)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Stop<Self::SerializeTupleStruct> {
        Err(ProbeStop)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Stop<Self::SerializeTupleVariant> {
        Err(ProbeStop)
    }
    fn serialize_map(self, _: Option<usize>) -> Stop<Self::SerializeMap> {
        Err(ProbeStop)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Stop<Self::SerializeStruct> {
        Err(ProbeStop)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Stop<Self::SerializeStructVariant> {
        Err(ProbeStop)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, _: &T) -> Stop {
        Ok(Shape::String)
    }
}
