//! Secrets: pasted API keys and the admin key. They print masked everywhere; `expose()` is the one
//! way to read them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("looks like an admin key: paste it in Settings instead")]
    AdminKeyAsApiKey,
    #[error("looks like an API key, not an admin key (admin keys start with sk-ant-admin)")]
    ApiKeyAsAdminKey,
    #[error("does not start with {0}")]
    WrongPrefix(&'static str),
    #[error("is too short ({0} characters after the prefix; at least 20 expected)")]
    TooShort(usize),
    #[error("is too long ({0} characters after the prefix; at most 200 expected)")]
    TooLong(usize),
    #[error("has a character outside A-Z a-z 0-9 _ -")]
    BadCharacter,
    #[error("is not a key hint of the form sk-ant-api03-ABC...WXYZ")]
    BadHint,
}

/// Checks `s` = `<family><digits>-<body>`, returning the prefix (through the dash) and the body.
fn split_key<'a>(s: &'a str, family: &'static str) -> Result<(&'a str, &'a str), SecretError> {
    let rest = s.strip_prefix(family).ok_or(SecretError::WrongPrefix(family))?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b'-') {
        return Err(SecretError::WrongPrefix(family));
    }
    let prefix_len = family.len() + digits + 1;
    let body = &s[prefix_len..];
    if !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(SecretError::BadCharacter);
    }
    let n = body.chars().count();
    if n < 20 {
        return Err(SecretError::TooShort(n));
    }
    if n > 200 {
        return Err(SecretError::TooLong(n));
    }
    Ok((&s[..prefix_len], body))
}

/// A pasted Anthropic API key (`sk-ant-api03-...`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn parse(s: &str) -> Result<ApiKeySecret, SecretError> {
        let s = s.trim();
        if s.starts_with("sk-ant-admin") {
            return Err(SecretError::AdminKeyAsApiKey);
        }
        split_key(s, "sk-ant-api")?;
        Ok(ApiKeySecret(s.to_string()))
    }

    /// The secret itself: only for the p2p answer to the node it is issued to.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hint(&self) -> KeyHint {
        KeyHint::of(self)
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeySecret({})", self.hint())
    }
}

impl std::fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.hint())
    }
}

impl Serialize for ApiKeySecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ApiKeySecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ApiKeySecret::parse(&s).map_err(|e| serde::de::Error::custom(format!("API key {e}")))
    }
}

/// The Admin API's `partial_key_hint` shape, also the masked form shown to operators:
/// the prefix through three characters after it, `...`, the last four characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHint(String);

impl KeyHint {
    pub fn of(secret: &ApiKeySecret) -> KeyHint {
        let s = secret.expose();
        // parse() guarantees the shape: prefix + 20..=200 ASCII characters.
        let prefix_len = split_key(s, "sk-ant-api").map(|(p, _)| p.len()).unwrap_or(0);
        let head_end = (prefix_len + 3).min(s.len());
        let tail_start = s.len().saturating_sub(4).max(head_end);
        KeyHint(format!("{}...{}", &s[..head_end], &s[tail_start..]))
    }

    /// Parses a hint as the Admin API or an operator writes it (`...` or `…`).
    pub fn parse(s: &str) -> Result<KeyHint, SecretError> {
        let normalised = s.trim().replace('…', "...");
        let (head, tail) = normalised.split_once("...").ok_or(SecretError::BadHint)?;
        let ok_chars = |t: &str| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !head.starts_with("sk-ant-") || tail.is_empty() || tail.len() > 8 || !ok_chars(head) || !ok_chars(tail) {
            return Err(SecretError::BadHint);
        }
        Ok(KeyHint(normalised))
    }

    /// Whether an Admin API `partial_key_hint` names the same key.
    pub fn matches(&self, partial_key_hint: &str) -> bool {
        partial_key_hint.trim().replace('…', "...") == self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The organization's Admin API key (`sk-ant-admin01-...`). Lives only in the cost-poller.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(String);

impl AdminKey {
    pub fn parse(s: &str) -> Result<AdminKey, SecretError> {
        let s = s.trim();
        if s.starts_with("sk-ant-api") {
            return Err(SecretError::ApiKeyAsAdminKey);
        }
        split_key(s, "sk-ant-admin")?;
        Ok(AdminKey(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `sk-ant-admin01-TES…`: enough to recognise the key, never enough to use it.
    pub fn display_prefix(&self) -> String {
        let prefix_len = split_key(&self.0, "sk-ant-admin").map(|(p, _)| p.len()).unwrap_or(0);
        let end = (prefix_len + 3).min(self.0.len());
        format!("{}…", &self.0[..end])
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminKey({})", self.display_prefix())
    }
}

impl std::fmt::Display for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_prefix())
    }
}

impl Serialize for AdminKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AdminKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        AdminKey::parse(&s).map_err(|e| serde::de::Error::custom(format!("admin key {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-ant-api03-TESTabcdefghijklmnopqrstuvwxyz0123456789_-WXYZ";
    const ADMIN: &str = "sk-ant-admin01-TESTabcdefghijklmnopqrstuvwxyz0123456789";

    #[test]
    fn api_key_validation() {
        assert!(ApiKeySecret::parse(KEY).is_ok());
        assert!(ApiKeySecret::parse(&format!("  {KEY}\n")).is_ok());
        assert_eq!(ApiKeySecret::parse(ADMIN), Err(SecretError::AdminKeyAsApiKey));
        assert_eq!(ApiKeySecret::parse("sk-ant-api03-short"), Err(SecretError::TooShort(5)));
        assert_eq!(ApiKeySecret::parse("sk-xyz-api03-TESTabcdefghijklmnopqrstuvwxyz"), Err(SecretError::WrongPrefix("sk-ant-api")));
        assert_eq!(ApiKeySecret::parse("sk-ant-apiXX-TESTabcdefghijklmnopqrstuvwxyz"), Err(SecretError::WrongPrefix("sk-ant-api")));
        assert_eq!(ApiKeySecret::parse("sk-ant-api03-TESTabcdefghij klmnopqrstuvwxyz"), Err(SecretError::BadCharacter));
        let long = format!("sk-ant-api03-{}", "a".repeat(201));
        assert_eq!(ApiKeySecret::parse(&long), Err(SecretError::TooLong(201)));
    }

    #[test]
    fn hint_matches_the_admin_api_shape() {
        let secret = ApiKeySecret::parse(KEY).unwrap();
        assert_eq!(secret.hint().as_str(), "sk-ant-api03-TES...WXYZ");
        assert!(secret.hint().matches("sk-ant-api03-TES...WXYZ"));
        assert!(secret.hint().matches("sk-ant-api03-TES…WXYZ"));
        assert!(!secret.hint().matches("sk-ant-api03-TES...WXYY"));
        assert_eq!(KeyHint::parse("sk-ant-api03-TES…WXYZ").unwrap(), secret.hint());
        assert!(KeyHint::parse("garbage").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let secret = ApiKeySecret::parse(KEY).unwrap();
        let admin = AdminKey::parse(ADMIN).unwrap();
        for text in [format!("{secret:?}"), format!("{secret}"), format!("{admin:?}"), format!("{admin}")] {
            assert!(!text.contains("TESTabcdef"), "{text}");
        }
        assert_eq!(admin.display_prefix(), "sk-ant-admin01-TES…");
        for e in [ApiKeySecret::parse(&format!("{KEY} x")).unwrap_err(), AdminKey::parse(KEY).unwrap_err()] {
            assert!(!e.to_string().contains("TESTabcdef"));
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let secret = ApiKeySecret::parse(KEY).unwrap();
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(serde_json::from_str::<ApiKeySecret>(&json).unwrap(), secret);
        assert!(serde_json::from_str::<ApiKeySecret>("\"nope\"").is_err());
    }
}
