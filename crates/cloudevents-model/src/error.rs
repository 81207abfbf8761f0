//! Error types: the spec rule an attribute broke ([`Rule`]), and the build and parse errors that carry it.

use std::fmt;

/// The kind of JSON value found where another kind was expected (used in [`Rule::WrongType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number with no fraction or exponent.
    Integer,
    /// A number with a fraction or an exponent.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Boolean => "a boolean",
            Self::Integer => "an integer",
            Self::Number => "a number with a fraction or an exponent",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        })
    }
}

/// A rule of the CloudEvents 1.0.2 core specification or of its JSON event format that an attribute broke.
///
/// Its `Display` reads as the end of a sentence whose subject is the attribute, for example
/// "must be a non-empty string".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rule {
    /// A REQUIRED attribute (`specversion`, `id`, `source`, `type`) is absent or `null`.
    #[error("is required but missing")]
    Missing,
    /// The attribute must be a non-empty string but is `""`.
    #[error("must be a non-empty string")]
    Empty,
    /// The JSON value has the wrong type.
    #[error("must be {expected}, found {found}")]
    WrongType {
        /// What the rule expects, for example "a string".
        expected: &'static str,
        /// What the document holds.
        found: JsonKind,
    },
    /// `specversion` is not `1.0`, the only version this crate implements.
    #[error("must be \"1.0\", found {found:?}")]
    UnsupportedSpecVersion {
        /// The version the document declares.
        found: String,
    },
    /// A string attribute holds a character the CloudEvents type system disallows
    /// (control characters U+0000-U+001F and U+007F-U+009F, Unicode noncharacters).
    #[error("must not contain the character U+{:04X}", u32::from(*.character))]
    ForbiddenCharacter {
        /// The first disallowed character.
        character: char,
    },
    /// A `Timestamp` is not an RFC 3339 date-time (or cannot be written as one).
    #[error("must be an RFC 3339 timestamp ({reason})")]
    InvalidTimestamp {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `URI` attribute is not an absolute URI (RFC 3986 section 4.3).
    #[error("must be an absolute URI ({reason})")]
    InvalidUri {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `URI-reference` attribute is not a URI-reference (RFC 3986 section 4.1).
    #[error("must be a URI-reference ({reason})")]
    InvalidUriReference {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `datacontenttype` is not a media type as RFC 2046 defines it.
    #[error("must be an RFC 2046 media type ({reason})")]
    InvalidMediaType {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attribute name has characters other than lowercase ASCII letters and digits, or is empty.
    #[error("is not a valid attribute name (only lowercase ASCII letters and digits are allowed)")]
    InvalidName,
    /// An extension uses the name of a core attribute or the reserved name `data`.
    #[error("is a reserved name and cannot be used for an extension attribute")]
    ReservedName,
    /// An `Integer` is outside the spec's range, -2147483648 to 2147483647.
    #[error("must be an integer between -2147483648 and 2147483647")]
    IntegerOutOfRange,
    /// Binary content is not valid base64 (RFC 4648, with padding).
    #[error("must be base64 (RFC 4648 with padding)")]
    InvalidBase64,
    /// `data` and `data_base64` are both present.
    #[error("must not appear together with `data`")]
    DataAndDataBase64,
    /// `data` is not a string although `datacontenttype` does not declare JSON content.
    #[error("must be a string because `datacontenttype` does not declare JSON content")]
    DataNotString,
    /// A member appears twice in one JSON object.
    #[error("appears more than once")]
    Duplicate,
}

/// An invalid attribute: its name and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) attribute: String,
    pub(crate) rule: Rule,
}

impl Violation {
    pub(crate) fn new(attribute: impl Into<String>, rule: Rule) -> Self {
        Self {
            attribute: attribute.into(),
            rule,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.attribute, self.rule)
    }
}

/// Why [`EventBuilder::build`](crate::EventBuilder::build) refused to build an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An attribute (or `data`) breaks a rule of the specification.
    #[error("`{attribute}` {rule}")]
    Invalid {
        /// The attribute name (`data` for the payload).
        attribute: String,
        /// The rule it broke.
        rule: Rule,
    },
    /// Data given to [`EventBuilder::json_data`](crate::EventBuilder::json_data) could not be turned into JSON.
    #[error("data could not be converted to JSON")]
    Data(#[source] serde_json::Error),
}

impl BuildError {
    /// The attribute at fault, if the error is about one.
    #[must_use]
    pub fn attribute(&self) -> Option<&str> {
        match self {
            Self::Invalid { attribute, .. } => Some(attribute),
            Self::Data(_) => Some("data"),
        }
    }

    /// The rule that was broken, if the error is about one.
    #[must_use]
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Self::Invalid { rule, .. } => Some(rule),
            Self::Data(_) => None,
        }
    }
}

impl From<Violation> for BuildError {
    fn from(violation: Violation) -> Self {
        Self::Invalid {
            attribute: violation.attribute,
            rule: violation.rule,
        }
    }
}

/// Why a JSON document is not a valid CloudEvent (or batch of CloudEvents).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is not well-formed JSON (or is truncated, or has trailing characters).
    #[error("malformed JSON")]
    Syntax(#[source] serde_json::Error),
    /// An event is not a JSON object.
    #[error("an event must be a JSON object, found {found}")]
    NotAnObject {
        /// What the document holds instead.
        found: JsonKind,
    },
    /// A batch is not a JSON array.
    #[error("a batch must be a JSON array, found {found}")]
    NotAnArray {
        /// What the document holds instead.
        found: JsonKind,
    },
    /// An attribute (or `data` / `data_base64`) breaks a rule of the specification.
    #[error("`{attribute}` {rule}")]
    Invalid {
        /// The attribute or member name.
        attribute: String,
        /// The rule it broke.
        rule: Rule,
    },
    /// One event of a batch is invalid.
    #[error("event {index} of the batch is invalid")]
    BatchItem {
        /// Zero-based position of the event in the batch.
        index: usize,
        /// Why that event is invalid.
        #[source]
        source: Box<ParseError>,
    },
}

impl ParseError {
    /// The attribute at fault, if the error is about one (looks through [`ParseError::BatchItem`]).
    #[must_use]
    pub fn attribute(&self) -> Option<&str> {
        match self {
            Self::Invalid { attribute, .. } => Some(attribute),
            Self::BatchItem { source, .. } => source.attribute(),
            _ => None,
        }
    }

    /// The rule that was broken, if the error is about one (looks through [`ParseError::BatchItem`]).
    #[must_use]
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Self::Invalid { rule, .. } => Some(rule),
            Self::BatchItem { source, .. } => source.rule(),
            _ => None,
        }
    }
}

impl From<Violation> for ParseError {
    fn from(violation: Violation) -> Self {
        Self::Invalid {
            attribute: violation.attribute,
            rule: violation.rule,
        }
    }
}
