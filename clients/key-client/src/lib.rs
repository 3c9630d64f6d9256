//! Ask an anthropic-api-key-manager node (the "dispenser") for this node's Anthropic API key,
//! from a process on another Hyperware node. See README.md for a complete example.
//!
//! ```ignore
//! use anthropic_key_client::{dispenser_on, request_key, KeyError};
//!
//! match request_key(&dispenser_on("operator.os")) {
//!     Ok(lease) => { /* lease.api_key until lease.expires_at */ }
//!     Err(KeyError::NoKeysAvailable) => { /* ask again later */ }
//!     Err(other) => { /* see KeyError */ }
//! }
//! ```
//!
//! The sending functions exist in the wasm process only; the answer parsing
//! ([`parse_lease_answer`], [`KeyError::from_message`]) and the retry rules ([`RetryPolicy`])
//! build anywhere.

mod answer;
mod retry;

pub use answer::{parse_key_answer, parse_lease_answer, KeyError, KeyLease, RetirementReason};
pub use retry::RetryPolicy;

/// The request for a key with its lease times.
pub const LEASE_REQUEST: &[u8] = br#"{"RequestKeyLease":null}"#;
/// The request for the bare key (the form hyperdrive's spider package sends).
pub const KEY_REQUEST: &[u8] = br#"{"RequestApiKey":null}"#;

/// The dispenser's process under the package's default identity.
pub const DEFAULT_PROCESS: (&str, &str, &str) = ("key-issuer", "anthropic-api-key-manager", "keymanager.os");
/// The address hyperdrive's spider package asks, where an operator deploys the package as a
/// drop-in (README of anthropic-api-key-manager, "Deploying as a drop-in").
pub const SPIDER_DISPENSER: (&str, (&str, &str, &str)) = ("free-key-er.os", ("anthropic-api-key-manager", "anthropic-api-key-manager", "ware.hypr"));

#[cfg(target_arch = "wasm32")]
mod send;
#[cfg(target_arch = "wasm32")]
pub use send::{dispenser_on, request_api_key, request_api_key_with, request_key, request_key_with};
