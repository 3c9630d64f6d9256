//! The scenario file: the organization's keys, workspaces, scripted usage and list prices.
//! Parsing refuses anything doubtful (unknown fields, unknown ids, bad decimals) with a message
//! naming it, so a typo in a test scenario fails loudly instead of testing nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::money;

/// An API key's status as the Admin API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Inactive,
    Archived,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Archived => "archived",
            KeyStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        [KeyStatus::Active, KeyStatus::Inactive, KeyStatus::Archived, KeyStatus::Expired].into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceTier {
    #[default]
    Standard,
    Batch,
    Priority,
}

impl ServiceTier {
    pub const ALL: [ServiceTier; 3] = [ServiceTier::Standard, ServiceTier::Batch, ServiceTier::Priority];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Batch => "batch",
            ServiceTier::Priority => "priority",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum ContextWindow {
    #[default]
    #[serde(rename = "0-200k")]
    UpTo200k,
    #[serde(rename = "200k-1M")]
    From200kTo1M,
}

impl ContextWindow {
    pub const ALL: [ContextWindow; 2] = [ContextWindow::UpTo200k, ContextWindow::From200kTo1M];

    pub fn as_str(self) -> &'static str {
        match self {
            ContextWindow::UpTo200k => "0-200k",
            ContextWindow::From200kTo1M => "200k-1M",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioKey {
    pub id: String,
    pub name: String,
    pub partial_key_hint: String,
    /// None = the default workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// The status set on the key; an `active` key past `expires_at` reads `expired`.
    #[serde(default = "active")]
    pub status: KeyStatus,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

fn active() -> KeyStatus {
    KeyStatus::Active
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioWorkspace {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub archived_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub display_color: Option<String>,
}

/// Tokens (and requests) per hour of each kind.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    #[serde(default)]
    pub uncached_input: u64,
    #[serde(default)]
    pub cache_write_5m: u64,
    #[serde(default)]
    pub cache_write_1h: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub web_search_requests: u64,
    /// Messages requests per hour; only the analytics `request_count` shows them.
    #[serde(default)]
    pub requests: u64,
}

/// Deserializes an `Option` that must be written out (`null` allowed, absence refused): a usage
/// line that forgets its `api_key_id` is a mistake, one that says `null` is Workbench usage.
fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageLine {
    /// None = usage made in the Console Workbench (no API key).
    #[serde(deserialize_with = "required_nullable")]
    pub api_key_id: Option<String>,
    /// Only for Workbench usage; a key's usage is in the key's workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    pub model: String,
    #[serde(default)]
    pub service_tier: ServiceTier,
    #[serde(default)]
    pub context_window: ContextWindow,
    pub per_hour: Rates,
    pub from: DateTime<Utc>,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

impl UsageLine {
    /// How the line is named in messages.
    fn label(&self) -> String {
        format!("usage of {} ({})", self.api_key_id.as_deref().unwrap_or("the Workbench"), self.model)
    }
}

/// USD per million tokens, as decimal strings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub input: String,
    pub cache_write_5m: String,
    pub cache_write_1h: String,
    pub cache_read: String,
    pub output: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub admin_key: String,
    pub keys: Vec<ScenarioKey>,
    /// None: workspaces are not scripted (old scenarios), and key workspaces are not checked.
    #[serde(default)]
    pub workspaces: Option<Vec<ScenarioWorkspace>>,
    #[serde(default)]
    pub usage: Vec<UsageLine>,
    /// Model id prefix → prices, for the cost report and analytics.
    #[serde(default)]
    pub prices: BTreeMap<String, Prices>,
    /// Forces small pages so that pagination is exercised.
    #[serde(default)]
    pub page_size: Option<usize>,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        scenario.validate().map_err(|e| format!("scenario: {e}"))?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), String> {
        if !self.admin_key.starts_with("sk-ant-admin") {
            return Err("admin_key must start with sk-ant-admin".to_string());
        }
        if self.page_size == Some(0) {
            return Err("page_size must be at least 1".to_string());
        }
        self.validate_workspaces()?;
        self.validate_keys()?;
        self.validate_usage()?;
        self.validate_prices()
    }

    fn validate_workspaces(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for w in self.workspaces.iter().flatten() {
            if !w.id.starts_with("wrkspc_") {
                return Err(format!("workspace id {:?} must start with wrkspc_", w.id));
            }
            if !seen.insert(&w.id) {
                return Err(format!("workspace {} is listed twice", w.id));
            }
            check_workspace_name(&w.name).map_err(|e| format!("workspace {}: {e}", w.id))?;
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for key in &self.keys {
            if !seen.insert(&key.id) {
                return Err(format!("key {} is listed twice", key.id));
            }
            self.check_key_workspace(key)?;
        }
        Ok(())
    }

    /// A key names a scripted workspace (when workspaces are scripted); in an archived one it is archived.
    pub fn check_key_workspace(&self, key: &ScenarioKey) -> Result<(), String> {
        let (Some(workspaces), Some(ws)) = (&self.workspaces, &key.workspace_id) else { return Ok(()) };
        match workspaces.iter().find(|w| &w.id == ws) {
            None => Err(format!("key {} names unknown workspace {ws}", key.id)),
            Some(w) if w.archived_at.is_some() && key.status != KeyStatus::Archived => {
                Err(format!("key {} is in archived workspace {ws}, so its status must be archived", key.id))
            }
            Some(_) => Ok(()),
        }
    }

    fn validate_usage(&self) -> Result<(), String> {
        for line in &self.usage {
            match (&line.api_key_id, &line.workspace_id) {
                (Some(id), _) if !self.keys.iter().any(|k| &k.id == id) => return Err(format!("usage names unknown key {id}")),
                (Some(_), Some(_)) => {
                    return Err(format!("{}: workspace_id is only for Workbench usage (api_key_id null); a key's usage is in the key's workspace", line.label()))
                }
                (None, Some(ws)) if self.workspaces.as_ref().is_some_and(|all| !all.iter().any(|w| &w.id == ws)) => {
                    return Err(format!("{} names unknown workspace {ws}", line.label()))
                }
                _ => {}
            }
            if line.until.is_some_and(|u| u <= line.from) {
                return Err(format!("{} ends before it starts", line.label()));
            }
        }
        Ok(())
    }

    fn validate_prices(&self) -> Result<(), String> {
        for (prefix, p) in &self.prices {
            for v in [&p.input, &p.cache_write_5m, &p.cache_write_1h, &p.cache_read, &p.output] {
                money::micro_usd(v).ok_or_else(|| format!("price {v:?} of {prefix} is not a decimal (at most 6 decimals)"))?;
            }
        }
        Ok(())
    }

    /// The prices of `model`: the longest matching prefix; None = the model has no price here.
    pub fn prices_of(&self, model: &str) -> Option<&Prices> {
        self.prices.iter().filter(|(prefix, _)| model.starts_with(prefix.as_str())).max_by_key(|(prefix, _)| prefix.len()).map(|(_, p)| p)
    }
}

/// Workspace names are 1 to 40 characters (as the Admin API requires).
pub fn check_workspace_name(name: &str) -> Result<(), String> {
    match name.chars().count() {
        1..=40 => Ok(()),
        n => Err(format!("name must be 1 to 40 characters (it has {n})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#""admin_key": "sk-ant-admin01-TESTxxxxxxxxxxxxxxxxxxxxxx""#;

    fn parse(body: &str) -> Result<Scenario, String> {
        Scenario::parse(&format!("{{{HEAD}, {body}}}"))
    }

    fn refused(body: &str, expected: &str) {
        let e = parse(body).expect_err(body);
        assert!(e.contains(expected), "{body}: expected {expected:?} in {e:?}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        for name in ["small.json", "demo.json", "realistic.json"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name);
            Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn workbench_usage_is_accepted_but_unknown_keys_are_not() {
        let ok = parse(r#""keys": [], "usage": [{"api_key_id": null, "model": "m", "per_hour": {}, "from": "2026-01-01T00:00:00Z"}]"#).unwrap();
        assert_eq!(ok.usage[0].api_key_id, None);
        assert_eq!(ok.usage[0].service_tier, ServiceTier::Standard);
        assert_eq!(ok.usage[0].context_window, ContextWindow::UpTo200k);
        refused(r#""keys": [], "usage": [{"api_key_id": "apikey_X", "model": "m", "per_hour": {}, "from": "2026-01-01T00:00:00Z"}]"#, "unknown key");
        refused(r#""keys": [], "usage": [{"model": "m", "per_hour": {}, "from": "2026-01-01T00:00:00Z"}]"#, "missing field `api_key_id`");
    }

    #[test]
    fn bad_scenarios_are_refused_with_a_reason() {
        let key = r#"{"id": "apikey_A", "name": "a", "partial_key_hint": "h", "workspace_id": "wrkspc_A"}"#;
        refused(r#""keys": [], "surprise": 1"#, "unknown field");
        refused(r#""keys": [{"id": "apikey_A", "name": "a", "partial_key_hint": "h", "status": "gone"}]"#, "unknown variant");
        refused(&format!(r#""keys": [{key}, {key}]"#), "listed twice");
        refused(&format!(r#""keys": [{key}], "workspaces": []"#), "unknown workspace wrkspc_A");
        refused(
            &format!(r#""keys": [{key}], "workspaces": [{{"id": "wrkspc_A", "name": "a", "archived_at": "2026-01-02T00:00:00Z"}}]"#),
            "must be archived",
        );
        refused(r#""keys": [], "workspaces": [{"id": "ws_A", "name": "a"}]"#, "must start with wrkspc_");
        refused(r#""keys": [], "workspaces": [{"id": "wrkspc_A", "name": ""}]"#, "1 to 40");
        refused(
            &format!(r#""keys": [{key}], "usage": [{{"api_key_id": "apikey_A", "workspace_id": "wrkspc_A", "model": "m", "per_hour": {{}}, "from": "2026-01-01T00:00:00Z"}}]"#),
            "only for Workbench usage",
        );
        refused(
            r#""keys": [], "workspaces": [], "usage": [{"api_key_id": null, "workspace_id": "wrkspc_Z", "model": "m", "per_hour": {}, "from": "2026-01-01T00:00:00Z"}]"#,
            "unknown workspace wrkspc_Z",
        );
        refused(r#""keys": [], "usage": [{"api_key_id": null, "model": "m", "service_tier": "flex", "per_hour": {}, "from": "2026-01-01T00:00:00Z"}]"#, "unknown variant");
        refused(r#""keys": [], "prices": {"m": {"input": "x", "cache_write_5m": "1", "cache_write_1h": "1", "cache_read": "1", "output": "1"}}"#, "not a decimal");
        refused(r#""keys": [], "page_size": 0"#, "page_size");
        // Old scenarios: a key may name a workspace when workspaces are not scripted.
        assert!(parse(&format!(r#""keys": [{key}]"#)).is_ok());
    }

    #[test]
    fn prices_match_the_longest_prefix() {
        let p = |input: &str| format!(r#"{{"input": "{input}", "cache_write_5m": "0", "cache_write_1h": "0", "cache_read": "0", "output": "0"}}"#);
        let s = parse(&format!(r#""keys": [], "prices": {{"claude-opus-4": {}, "claude-opus-4-5": {}}}"#, p("15"), p("5"))).unwrap();
        assert_eq!(s.prices_of("claude-opus-4-5-20251101").unwrap().input, "5");
        assert_eq!(s.prices_of("claude-opus-4-1-20250805").unwrap().input, "15");
        assert!(s.prices_of("claude-3-opus-20240229").is_none());
    }
}
