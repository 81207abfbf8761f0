//! Extension attribute values, typed after the CloudEvents type system.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use crate::error::Rule;
use crate::{rules, timestamp};

/// The value of an extension attribute, one variant per type of the CloudEvents type system.
///
/// The JSON event format carries only strings, booleans and integers, so a parsed event holds
/// [`String`](Self::String), [`Boolean`](Self::Boolean) or [`Integer`](Self::Integer); the `as_*` accessors read a
/// string as the other types (`as_timestamp`, `as_binary`, ...). Equality follows the JSON representation: a
/// [`Timestamp`](Self::Timestamp) equals the [`String`](Self::String) holding its RFC 3339 form, so an event equals
/// itself after a JSON round trip.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExtensionValue {
    /// `String`: no control characters or Unicode noncharacters.
    String(String),
    /// `Boolean`.
    Boolean(bool),
    /// `Integer`: the spec's range is exactly that of `i32`.
    Integer(i32),
    /// `URI`: an absolute URI (RFC 3986 section 4.3).
    Uri(String),
    /// `URI-reference` (RFC 3986 section 4.1).
    UriRef(String),
    /// `Timestamp`, written as RFC 3339.
    Timestamp(OffsetDateTime),
    /// `Binary`, written as base64.
    Binary(Vec<u8>),
}

impl ExtensionValue {
    /// The value as a string slice, for the variants stored as text (`String`, `Uri`, `UriRef`).
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) | Self::Uri(text) | Self::UriRef(text) => Some(text),
            _ => None,
        }
    }

    /// The value as a boolean.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(value) => Some(*value),
            _ => None,
        }
    }

    /// The value as an integer.
    #[must_use]
    pub fn as_i32(&self) -> Option<i32> {
        match self {
            Self::Integer(value) => Some(*value),
            _ => None,
        }
    }

    /// The value as a timestamp: a `Timestamp`, or a `String` holding an RFC 3339 date-time.
    #[must_use]
    pub fn as_timestamp(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Timestamp(value) => Some(*value),
            Self::String(text) => timestamp::parse(text).ok(),
            _ => None,
        }
    }

    /// The value as bytes: a `Binary`, or a `String` holding base64.
    #[must_use]
    pub fn as_binary(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Self::Binary(bytes) => Some(Cow::Borrowed(bytes)),
            Self::String(text) => STANDARD.decode(text).ok().map(Cow::Owned),
            _ => None,
        }
    }

    /// The canonical string encoding of the spec (`true`, `42`, RFC 3339, base64, ...).
    #[must_use]
    pub fn to_canonical_string(&self) -> Cow<'_, str> {
        match self {
            Self::String(text) | Self::Uri(text) | Self::UriRef(text) => Cow::Borrowed(text),
            Self::Boolean(true) => Cow::Borrowed("true"),
            Self::Boolean(false) => Cow::Borrowed("false"),
            Self::Integer(value) => Cow::Owned(value.to_string()),
            Self::Timestamp(value) => {
                let mut buffer = [0u8; timestamp::MAX_LEN];
                Cow::Owned(timestamp::write(*value, &mut buffer).to_owned())
            }
            Self::Binary(bytes) => Cow::Owned(STANDARD.encode(bytes)),
        }
    }

    /// Whether the JSON form of this value is a string.
    fn is_json_string(&self) -> bool {
        !matches!(self, Self::Boolean(_) | Self::Integer(_))
    }

    /// Checks the value against the rules of its type.
    pub(crate) fn check(&self) -> Result<(), Rule> {
        match self {
            Self::String(text) => rules::check_string(text),
            Self::Uri(text) => rules::check_absolute_uri(text),
            Self::UriRef(text) => rules::check_uri_reference(text),
            Self::Timestamp(value) => timestamp::check_representable(*value),
            Self::Boolean(_) | Self::Integer(_) | Self::Binary(_) => Ok(()),
        }
    }
}

impl PartialEq for ExtensionValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Boolean(left), Self::Boolean(right)) => left == right,
            (Self::Integer(left), Self::Integer(right)) => left == right,
            (Self::Timestamp(left), Self::Timestamp(right)) => left == right,
            (Self::Binary(left), Self::Binary(right)) => left == right,
            (left, right) if left.is_json_string() && right.is_json_string() => {
                left.to_canonical_string() == right.to_canonical_string()
            }
            _ => false,
        }
    }
}

impl fmt::Display for ExtensionValue {
    /// Writes the canonical string encoding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl Serialize for ExtensionValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::String(text) | Self::Uri(text) | Self::UriRef(text) => {
                serializer.serialize_str(text)
            }
            Self::Boolean(value) => serializer.serialize_bool(*value),
            Self::Integer(value) => serializer.serialize_i32(*value),
            Self::Timestamp(value) => {
                timestamp::check_representable(*value).map_err(serde::ser::Error::custom)?;
                let mut buffer = [0u8; timestamp::MAX_LEN];
                serializer.serialize_str(timestamp::write(*value, &mut buffer))
            }
            Self::Binary(bytes) => {
                serializer.collect_str(&base64::display::Base64Display::new(bytes, &STANDARD))
            }
        }
    }
}

impl From<String> for ExtensionValue {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<&str> for ExtensionValue {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<bool> for ExtensionValue {
    fn from(value: bool) -> Self {
        Self::Boolean(value)
    }
}

impl From<i32> for ExtensionValue {
    fn from(value: i32) -> Self {
        Self::Integer(value)
    }
}

impl From<OffsetDateTime> for ExtensionValue {
    fn from(value: OffsetDateTime) -> Self {
        Self::Timestamp(value)
    }
}

impl From<Vec<u8>> for ExtensionValue {
    fn from(value: Vec<u8>) -> Self {
        Self::Binary(value)
    }
}

impl TryFrom<i64> for ExtensionValue {
    type Error = Rule;

    /// Fails with [`Rule::IntegerOutOfRange`] outside the spec's 32-bit range.
    fn try_from(value: i64) -> Result<Self, Rule> {
        i32::try_from(value)
            .map(Self::Integer)
            .map_err(|_| Rule::IntegerOutOfRange)
    }
}
