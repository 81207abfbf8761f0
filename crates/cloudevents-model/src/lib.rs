//! cloudevents-model.
