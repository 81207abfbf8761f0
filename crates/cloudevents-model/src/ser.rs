//! Serialization in the JSON event format: required attributes always, optional ones only when set (never
//! `null`), extensions as top-level members, and the payload as `data` or `data_base64`.

use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};

use crate::data::{self, Shape};
use crate::event::CloudEvent;
use crate::{SPEC_VERSION, timestamp};

impl<D: Serialize> Serialize for CloudEvent<D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 4
            + usize::from(self.time.is_some())
            + usize::from(self.subject.is_some())
            + usize::from(self.datacontenttype.is_some())
            + usize::from(self.dataschema.is_some())
            + self.extensions.len()
            + usize::from(self.data.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("specversion", SPEC_VERSION)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("type", &self.ty)?;
        if let Some(subject) = &self.subject {
            map.serialize_entry("subject", subject)?;
        }
        if let Some(time) = self.time {
            timestamp::check_representable(time).map_err(S::Error::custom)?;
            let mut buffer = [0u8; timestamp::MAX_LEN];
            map.serialize_entry("time", timestamp::write(time, &mut buffer))?;
        }
        if let Some(content_type) = &self.datacontenttype {
            map.serialize_entry("datacontenttype", content_type)?;
        }
        if let Some(schema) = &self.dataschema {
            map.serialize_entry("dataschema", schema)?;
        }
        for (name, value) in &self.extensions {
            map.serialize_entry(name, value)?;
        }
        if let Some(payload) = &self.data {
            match data::shape_of(payload) {
                Shape::Binary => map.serialize_entry("data_base64", payload)?,
                Shape::Other if !self.json_content => {
                    return Err(S::Error::custom(
                        "`data` must be a string because `datacontenttype` does not declare JSON content",
                    ));
                }
                Shape::String | Shape::Other => map.serialize_entry("data", payload)?,
            }
        }
        map.end()
    }
}
