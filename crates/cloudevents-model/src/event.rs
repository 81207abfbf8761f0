//! The [`CloudEvent`] type, its getters, and the [`EventBuilder`] that makes invalid events unrepresentable.

use serde::Serialize;
use time::OffsetDateTime;

use crate::data::{self, Data, Shape};
use crate::error::{BuildError, Rule, Violation};
use crate::extension::ExtensionValue;
use crate::{SPEC_VERSION, rules, timestamp};

/// A CloudEvents 1.0 event whose payload has type `D`.
///
/// `D` is [`Data`] (raw JSON, text or bytes, what parsing yields) by default, or any serializable type for
/// typed payloads. An event can only be obtained from [`EventBuilder::build`] or by parsing, both of which check
/// every rule of the specification, so a `CloudEvent` is always valid; its fields are private.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent<D = Data> {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) ty: String,
    pub(crate) time: Option<OffsetDateTime>,
    pub(crate) subject: Option<String>,
    pub(crate) datacontenttype: Option<String>,
    pub(crate) dataschema: Option<String>,
    pub(crate) extensions: Vec<(String, ExtensionValue)>,
    pub(crate) data: Option<D>,
    /// Whether `datacontenttype` is absent or declares JSON, cached for serialization.
    pub(crate) json_content: bool,
}

impl CloudEvent<Data> {
    /// Starts building an event with its three required attributes: `id`, `source` (a URI-reference) and
    /// `type`. All are checked by [`EventBuilder::build`].
    pub fn builder(
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> EventBuilder<Data> {
        EventBuilder::new(id, source, ty)
    }
}

impl<D> CloudEvent<D> {
    /// `specversion`: always `1.0`.
    #[must_use]
    pub fn specversion(&self) -> &'static str {
        SPEC_VERSION
    }

    /// `id`: a non-empty string.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `source`: a non-empty URI-reference.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `type`: a non-empty string.
    #[must_use]
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// `time`, if set.
    #[must_use]
    pub fn time(&self) -> Option<OffsetDateTime> {
        self.time
    }

    /// `subject`, if set: a non-empty string.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// `datacontenttype`, if set: an RFC 2046 media type.
    #[must_use]
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.as_deref()
    }

    /// `dataschema`, if set: an absolute URI.
    #[must_use]
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }

    /// Whether the payload is JSON: `datacontenttype` is absent or has the form `*/json` or `*/*+json`.
    #[must_use]
    pub fn is_json_content(&self) -> bool {
        self.json_content
    }

    /// The extension attribute called `name`, if present.
    #[must_use]
    pub fn extension(&self, name: &str) -> Option<&ExtensionValue> {
        self.extensions
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// All extension attributes, in insertion (or document) order.
    pub fn extensions(&self) -> impl ExactSizeIterator<Item = (&str, &ExtensionValue)> + '_ {
        self.extensions
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// The payload, if any.
    #[must_use]
    pub fn data(&self) -> Option<&D> {
        self.data.as_ref()
    }

    /// Takes the payload out of the event.
    #[must_use]
    pub fn into_data(self) -> Option<D> {
        self.data
    }

    /// Turns the event back into a builder, to derive a modified event from it.
    pub fn into_builder(self) -> EventBuilder<D> {
        EventBuilder {
            id: self.id,
            source: self.source,
            ty: self.ty,
            time: self.time,
            subject: self.subject,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            extensions: self.extensions,
            data: self.data,
            error: None,
        }
    }

    /// Serializes the event in the JSON event format (`application/cloudevents+json`).
    ///
    /// # Errors
    /// Fails only if the payload's own `Serialize` implementation fails, or if it is not a string although
    /// `datacontenttype` does not declare JSON.
    pub fn to_vec(&self) -> Result<Vec<u8>, serde_json::Error>
    where
        D: Serialize,
    {
        let mut buffer = Vec::with_capacity(512);
        serde_json::to_writer(&mut buffer, self)?;
        Ok(buffer)
    }

    /// Serializes the event in the JSON event format into `writer`.
    ///
    /// # Errors
    /// As [`to_vec`](Self::to_vec), plus I/O errors of `writer`.
    pub fn to_writer<W: std::io::Write>(&self, writer: W) -> Result<(), serde_json::Error>
    where
        D: Serialize,
    {
        serde_json::to_writer(writer, self)
    }

    /// Serializes the event in the JSON event format into a `String`.
    ///
    /// # Errors
    /// As [`to_vec`](Self::to_vec).
    pub fn to_json_string(&self) -> Result<String, serde_json::Error>
    where
        D: Serialize,
    {
        serde_json::to_string(self)
    }
}

impl CloudEvent<Data> {
    /// Deserializes the payload into `T` without copying JSON values; see [`Data::to_typed`].
    /// Returns `None` when the event has no payload.
    ///
    /// # Errors
    /// Fails when the payload does not have the shape `T` expects.
    pub fn data_as<'a, T: serde::Deserialize<'a>>(
        &'a self,
    ) -> Option<Result<T, serde_json::Error>> {
        self.data.as_ref().map(Data::to_typed)
    }
}

/// Maps a broken rule to a violation of `attribute`.
fn invalid(attribute: &str) -> impl Fn(Rule) -> Violation + '_ {
    move |rule| Violation::new(attribute, rule)
}

/// Builds a [`CloudEvent`]; [`build`](Self::build) checks every attribute and reports the first broken rule.
///
/// Setters take their values as given; nothing is checked until `build`, so a chain of setters never fails
/// half-way.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EventBuilder<D = Data> {
    id: String,
    source: String,
    ty: String,
    time: Option<OffsetDateTime>,
    subject: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    extensions: Vec<(String, ExtensionValue)>,
    data: Option<D>,
    error: Option<BuildError>,
}

impl EventBuilder<Data> {
    /// Starts an event with its three required attributes; same as [`CloudEvent::builder`].
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            time: None,
            subject: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Vec::new(),
            data: None,
            error: None,
        }
    }

    /// Sets a JSON payload by converting `value` to a [`serde_json::Value`] now. Prefer [`data`](Self::data)
    /// with the typed value, which serializes it directly and is faster.
    pub fn json_data<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match Data::json(value) {
            Ok(data) => self.data = Some(data),
            Err(error) => {
                self.error.get_or_insert(BuildError::Data(error));
            }
        }
        self
    }

    /// Sets a text payload; pair it with a non-JSON `datacontenttype` such as `text/plain`.
    pub fn string_data(mut self, text: impl Into<String>) -> Self {
        self.data = Some(Data::String(text.into()));
        self
    }

    /// Sets a binary payload, written as `data_base64`.
    pub fn binary_data(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.data = Some(Data::Binary(bytes.into()));
        self
    }
}

impl<D> EventBuilder<D> {
    /// Sets `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets `source`.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets `type`.
    pub fn ty(mut self, ty: impl Into<String>) -> Self {
        self.ty = ty.into();
        self
    }

    /// Sets `time`.
    pub fn time(mut self, time: OffsetDateTime) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets `time` from an RFC 3339 string (any valid form); a bad string makes `build` fail.
    pub fn time_rfc3339(mut self, text: &str) -> Self {
        match timestamp::parse(text) {
            Ok(time) => self.time = Some(time),
            Err(rule) => {
                self.error.get_or_insert(BuildError::Invalid {
                    attribute: "time".to_owned(),
                    rule,
                });
            }
        }
        self
    }

    /// Sets `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets `datacontenttype`.
    pub fn datacontenttype(mut self, content_type: impl Into<String>) -> Self {
        self.datacontenttype = Some(content_type.into());
        self
    }

    /// Sets `dataschema` (must be an absolute URI).
    pub fn dataschema(mut self, schema: impl Into<String>) -> Self {
        self.dataschema = Some(schema.into());
        self
    }

    /// Sets an extension attribute, replacing any earlier value of the same name.
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<ExtensionValue>) -> Self {
        let name = name.into();
        let value = value.into();
        match self.extensions.iter_mut().find(|(key, _)| *key == name) {
            Some(slot) => slot.1 = value,
            None => self.extensions.push((name, value)),
        }
        self
    }

    /// Removes an extension attribute.
    pub fn without_extension(mut self, name: &str) -> Self {
        self.extensions.retain(|(key, _)| key != name);
        self
    }

    /// Sets the payload to `data`, of any serializable type; it is serialized directly when the event is.
    pub fn data<E>(self, data: E) -> EventBuilder<E> {
        EventBuilder {
            id: self.id,
            source: self.source,
            ty: self.ty,
            time: self.time,
            subject: self.subject,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            extensions: self.extensions,
            data: Some(data),
            error: self.error,
        }
    }

    /// Removes the payload.
    pub fn without_data(mut self) -> Self {
        self.data = None;
        self
    }

    /// Checks every attribute and builds the event.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] names the first attribute that breaks a rule: an empty `id` or `type`, a `source`
    /// that is not a non-empty URI-reference, a `dataschema` that is not an absolute URI, a malformed
    /// `datacontenttype`, an empty `subject`, a `time` RFC 3339 cannot express, a disallowed character, a bad or
    /// reserved extension name, an invalid extension value, or a payload that is not a string although
    /// `datacontenttype` does not declare JSON. [`BuildError::Data`] reports a failed
    /// [`json_data`](EventBuilder::json_data) conversion.
    pub fn build(self) -> Result<CloudEvent<D>, BuildError>
    where
        D: Serialize,
    {
        if let Some(error) = self.error {
            return Err(error);
        }
        rules::check_non_empty_string(&self.id).map_err(invalid("id"))?;
        rules::check_non_empty_string(&self.source).map_err(invalid("source"))?;
        rules::check_uri_reference(&self.source).map_err(invalid("source"))?;
        rules::check_non_empty_string(&self.ty).map_err(invalid("type"))?;
        if let Some(time) = self.time {
            timestamp::check_representable(time).map_err(invalid("time"))?;
        }
        if let Some(subject) = &self.subject {
            rules::check_non_empty_string(subject).map_err(invalid("subject"))?;
        }
        let json_content = match &self.datacontenttype {
            Some(content_type) => {
                rules::check_content_type(content_type).map_err(invalid("datacontenttype"))?
            }
            None => true,
        };
        if let Some(schema) = &self.dataschema {
            if schema.is_empty() {
                return Err(Violation::new("dataschema", Rule::Empty).into());
            }
            rules::check_absolute_uri(schema).map_err(invalid("dataschema"))?;
        }
        for (name, value) in &self.extensions {
            rules::check_extension_name(name).map_err(invalid(name))?;
            value.check().map_err(invalid(name))?;
        }
        if let Some(payload) = &self.data
            && !json_content
            && data::shape_of(payload) == Shape::Other
        {
            return Err(Violation::new("data", Rule::DataNotString).into());
        }
        Ok(CloudEvent {
            id: self.id,
            source: self.source,
            ty: self.ty,
            time: self.time,
            subject: self.subject,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            extensions: self.extensions,
            data: self.data,
            json_content,
        })
    }
}
