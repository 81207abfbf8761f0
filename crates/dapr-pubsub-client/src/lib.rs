//! dapr-pubsub-client.
