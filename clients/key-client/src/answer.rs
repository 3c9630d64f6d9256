//! The dispenser's answers (README of anthropic-api-key-manager, "Asking for a key from another
//! node") read into a lease or a typed error. Pure: no node needed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A key issued to this node, with its lease times (RFC 3339, UTC). `Debug` masks the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLease {
    pub api_key: String,
    pub issued_at: String,
    pub expires_at: String,
}

impl KeyLease {
    /// The key's last four characters: enough to tell keys apart in a log, never the key.
    pub fn key_hint(&self) -> &str {
        last_four(&self.api_key)
    }
}

impl fmt::Debug for KeyLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLease")
            .field("api_key", &format_args!("...{}", self.key_hint()))
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

pub(crate) fn last_four(key: &str) -> &str {
    let start = key.char_indices().rev().nth(3).map(|(i, _)| i).unwrap_or(0);
    &key[start..]
}

/// Why the node's key was retired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetirementReason {
    /// Its lifetime ended.
    Expired,
    /// Its budget was spent.
    Budget,
    /// The operator retired it.
    Operator,
    /// The operator's Anthropic organization deactivated, archived or expired it.
    Organization,
    /// A reason this version does not know.
    #[serde(untagged)]
    Other(String),
}

impl RetirementReason {
    fn parse(reason: &str) -> RetirementReason {
        match reason {
            "expired" => RetirementReason::Expired,
            "budget" => RetirementReason::Budget,
            "operator" => RetirementReason::Operator,
            "organization" => RetirementReason::Organization,
            other => RetirementReason::Other(other.to_string()),
        }
    }
}

impl fmt::Display for RetirementReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RetirementReason::Expired => "expired",
            RetirementReason::Budget => "budget",
            RetirementReason::Operator => "operator",
            RetirementReason::Organization => "organization",
            RetirementReason::Other(other) => other,
        };
        f.write_str(text)
    }
}

/// Every answer that is not a key, and every way the request can fail. None carries a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KeyError {
    /// `no keys available`: no eligible key now; this node was not recorded, ask again later.
    #[error("no keys available")]
    NoKeysAvailable,
    /// `key retired: <reason>`: this node's key was retired; no second key is ever issued.
    #[error("key retired: {0}")]
    Retired(RetirementReason),
    /// `rate limited`: too many requests from this node in the last minute.
    #[error("rate limited")]
    RateLimited,
    /// `try again`: this node's first request is still being recorded.
    #[error("try again")]
    TryAgain,
    /// `temporarily unavailable: ...`: the operator's node could not record the issuance.
    #[error("temporarily unavailable")]
    Unavailable,
    /// `pending approval`: the operator approves nodes by hand; ask again once approved.
    #[error("pending approval")]
    PendingApproval,
    /// `not allowed`: the operator's issuance policy gives this node no key.
    #[error("not allowed")]
    NotAllowed,
    /// `approval queue full`: nothing was recorded; ask again later.
    #[error("approval queue full")]
    ApprovalQueueFull,
    /// `refused: ...`: the request came from the operator's own node (local apps use the WIT API).
    #[error("refused: the dispenser does not give keys to apps on its own node")]
    SameNode,
    /// `invalid node name: ...`: the dispenser does not accept this node's name.
    #[error("invalid node name: {0}")]
    InvalidNodeName(String),
    /// The dispenser's node is unknown or unreachable.
    #[error("the dispenser's node is offline")]
    Offline,
    /// No answer in time (the request or its answer may have been lost).
    #[error("no answer in time")]
    Timeout,
    /// An error message this version does not know.
    #[error("refused: {0}")]
    Other(String),
    /// An answer that is not `{"Ok": ...}` or `{"Err": "..."}`. Its text is not kept: it could
    /// hold a key.
    #[error("the dispenser's answer could not be read")]
    UnreadableAnswer,
}

impl KeyError {
    /// The error for one of the dispenser's documented messages.
    pub fn from_message(message: &str) -> KeyError {
        if let Some(reason) = message.strip_prefix("key retired: ") {
            return KeyError::Retired(RetirementReason::parse(reason));
        }
        if let Some(name) = message.strip_prefix("invalid node name: ") {
            return KeyError::InvalidNodeName(name.to_string());
        }
        if message.starts_with("temporarily unavailable") {
            return KeyError::Unavailable;
        }
        if message.starts_with("refused: apps on this node") {
            return KeyError::SameNode;
        }
        match message {
            "no keys available" => KeyError::NoKeysAvailable,
            "rate limited" => KeyError::RateLimited,
            "try again" => KeyError::TryAgain,
            "pending approval" => KeyError::PendingApproval,
            "not allowed" => KeyError::NotAllowed,
            "approval queue full" => KeyError::ApprovalQueueFull,
            other => KeyError::Other(other.to_string()),
        }
    }
}

/// The answer to `{"RequestKeyLease": null}`: `{"Ok": {"api_key", "issued_at", "expires_at"}}`
/// or `{"Err": "<message>"}`.
pub fn parse_lease_answer(body: &[u8]) -> Result<KeyLease, KeyError> {
    parse_answer(body)
}

/// The answer to `{"RequestApiKey": null}`: `{"Ok": "<key>"}` or `{"Err": "<message>"}`.
pub fn parse_key_answer(body: &[u8]) -> Result<String, KeyError> {
    parse_answer(body)
}

fn parse_answer<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KeyError> {
    match serde_json::from_slice::<Result<T, String>>(body) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(KeyError::from_message(&message)),
        Err(_) => Err(KeyError::UnreadableAnswer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-ant-api03-EXAMPLE-not-a-key-WXYZ";

    #[test]
    fn a_lease_is_read_with_its_times() {
        let body = format!(r#"{{"Ok": {{"api_key": "{KEY}", "issued_at": "2026-11-24T10:00:00Z", "expires_at": "2026-12-24T10:00:00Z"}}}}"#);
        let lease = parse_lease_answer(body.as_bytes()).unwrap();
        assert_eq!(lease.api_key, KEY);
        assert_eq!(lease.issued_at, "2026-11-24T10:00:00Z");
        assert_eq!(lease.expires_at, "2026-12-24T10:00:00Z");
        assert_eq!(lease.key_hint(), "WXYZ");
    }

    #[test]
    fn the_bare_key_is_read() {
        assert_eq!(parse_key_answer(format!(r#"{{"Ok": "{KEY}"}}"#).as_bytes()).unwrap(), KEY);
    }

    #[test]
    fn every_documented_message_has_its_error() {
        let cases = [
            ("no keys available", KeyError::NoKeysAvailable),
            ("key retired: expired", KeyError::Retired(RetirementReason::Expired)),
            ("key retired: budget", KeyError::Retired(RetirementReason::Budget)),
            ("key retired: operator", KeyError::Retired(RetirementReason::Operator)),
            ("key retired: organization", KeyError::Retired(RetirementReason::Organization)),
            ("key retired: stolen", KeyError::Retired(RetirementReason::Other("stolen".into()))),
            ("rate limited", KeyError::RateLimited),
            ("try again", KeyError::TryAgain),
            ("temporarily unavailable: storage did not answer, try again", KeyError::Unavailable),
            ("pending approval", KeyError::PendingApproval),
            ("not allowed", KeyError::NotAllowed),
            ("approval queue full", KeyError::ApprovalQueueFull),
            ("refused: apps on this node use the WIT API (KeyStatus), not p2p", KeyError::SameNode),
            ("invalid node name: \"X\"", KeyError::InvalidNodeName("\"X\"".into())),
            ("the moon is full", KeyError::Other("the moon is full".into())),
        ];
        for (message, expected) in cases {
            let body = serde_json::json!({ "Err": message }).to_string();
            assert_eq!(parse_lease_answer(body.as_bytes()).unwrap_err(), expected, "{message}");
            assert_eq!(parse_key_answer(body.as_bytes()).unwrap_err(), expected, "{message}");
        }
    }

    #[test]
    fn a_body_of_another_shape_is_unreadable_and_not_repeated() {
        for body in [&b"not json"[..], br#"{"Ok": 7}"#, br#"{"RequestApiKey": null}"#, br#""sk-ant-api03-whole""#, br#"{"Ok": {"api_key": "k"}}"#] {
            let error = parse_lease_answer(body).unwrap_err();
            assert_eq!(error, KeyError::UnreadableAnswer);
            assert!(!error.to_string().contains("sk-ant"));
        }
        // A lease is not a bare key, and the other way round.
        assert_eq!(parse_key_answer(br#"{"Ok": {"api_key": "k", "issued_at": "t", "expires_at": "t"}}"#), Err(KeyError::UnreadableAnswer));
        assert_eq!(parse_lease_answer(br#"{"Ok": "k"}"#), Err(KeyError::UnreadableAnswer));
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let lease = KeyLease { api_key: KEY.into(), issued_at: "a".into(), expires_at: "b".into() };
        let shown = format!("{lease:?}");
        assert!(!shown.contains(KEY) && shown.contains("...WXYZ"), "{shown}");
        assert_eq!(last_four("ab"), "ab");
        assert_eq!(last_four("éabcd"), "abcd");
    }

    #[test]
    fn errors_serialize_as_apps_may_forward_them() {
        assert_eq!(serde_json::to_value(KeyError::Retired(RetirementReason::Operator)).unwrap(), serde_json::json!({"Retired": "operator"}));
        assert_eq!(serde_json::to_value(KeyError::NoKeysAvailable).unwrap(), serde_json::json!("NoKeysAvailable"));
        let back: KeyError = serde_json::from_value(serde_json::json!({"Retired": "stolen"})).unwrap();
        assert_eq!(back, KeyError::Retired(RetirementReason::Other("stolen".into())));
        assert_eq!(KeyError::Retired(RetirementReason::Budget).to_string(), "key retired: budget");
    }
}
