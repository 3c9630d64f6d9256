//! Pure domain logic and wire types of anthropic-api-key-manager.
//!
//! Nothing here calls the Hyperware platform or does I/O, so all of it is tested natively.
//! The two processes adapt platform messages to these types and back.

pub mod admin_api;
pub mod alerts;
pub mod attribution;
pub mod checks;
pub mod cost;
pub mod export;
pub mod http_api;
pub mod messages;
pub mod money;
pub mod policy;
pub mod pool;
pub mod price;
pub mod ratelimit;
pub mod secret;
pub mod sql;
pub mod wit_api;

pub use money::MicroUsd;
pub use pool::{KeyId, KeyPool, NodeId, RetireReason};
pub use secret::{AdminKey, ApiKeySecret, KeyHint};

/// Every point in time the domain deals with: UTC, second precision at the edges.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
