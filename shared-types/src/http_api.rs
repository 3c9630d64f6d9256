//! Types of the dashboard's JSON HTTP API (documented in docs/http-api.md) and the validation of
//! what the dashboard sends. Nothing in a response carries a secret: keys appear masked (their hint)
//! and the admin key only as "set" plus a prefix.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::messages::{PollerConfig, PollerStatus, RetireTo};
use crate::pool::{KeyId, KeyPool, KeyRecord, NewKey, RemoteRetirement, Resolution};
use crate::price::PriceTable;
use crate::wit_api::rfc3339;
use crate::{ApiKeySecret, MicroUsd, Timestamp};

/// Why a dashboard request was refused. The text is shown to the operator; never a secret.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}`: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("unknown field `{0}`")]
    UnknownField(String),
}

/// Reads a dashboard call's argument (`{"Call": <argument>}`). Every call takes its argument as
/// JSON and reads it here rather than in the framework, which answers a body it cannot parse by
/// repeating it, secrets included.
pub fn parse_arg<T: serde::de::DeserializeOwned>(arg: serde_json::Value) -> Result<T, RequestError> {
    serde_json::from_value(arg).map_err(|e| invalid("argument", e.to_string()))
}

/// Problems may quote the input (serde errors do): anything key-shaped is masked.
fn invalid(field: &'static str, problem: impl Into<String>) -> RequestError {
    RequestError::Invalid { field, problem: crate::admin_api::redact(&problem.into()) }
}

/// Settings the operator edits in the dashboard. Persisted in the issuer's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub poller: PollerConfig,
    pub default_lifetime_secs: u64,
    pub default_budget: MicroUsd,
    pub default_node_cap: Option<u32>,
    pub retire_to: RetireTo,
    pub price_table: PriceTable,
    pub p2p_requests_per_minute: u32,
    /// Issue keys not yet matched to their Admin API id (their spend cannot be tracked until
    /// they match, so their budget is not enforced). Off by default.
    #[serde(default)]
    pub issue_unmatched_keys: bool,
    /// Which release's default prices the table has been brought up to (see
    /// [`Settings::upgrade_saved_state`]).
    #[serde(default)]
    pub price_table_revision: u32,
    /// Workspace-per-key mode: the dashboard offers to prepare a workspace for each new key, so
    /// that the organization's per-workspace cost (and spend limit) applies to that key alone.
    #[serde(default)]
    pub workspace_per_key: bool,
    /// When a key in a workspace this app prepared retires, archive the workspace too.
    #[serde(default)]
    pub archive_workspace_on_retire: bool,
    /// Audit entries older than this many days are deleted.
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u32,
    /// Who may get a key: mode, allowlist and denylist (`crate::policy`).
    #[serde(default)]
    pub issuance: crate::policy::IssuancePolicy,
    /// Budget thresholds, pool-low threshold and webhook (`crate::alerts`).
    #[serde(default)]
    pub alerts: crate::alerts::AlertSettings,
}

fn default_audit_retention_days() -> u32 {
    365
}

/// Bumped when a release adds default price entries: a saved table then gains the entries it
/// lacks, once.
pub const PRICE_TABLE_REVISION: u32 = 1;

impl Settings {
    /// Brings settings saved by an older release up to date; true when the price table changed
    /// (stored usage must then be priced again).
    pub fn upgrade_saved_state(&mut self) -> bool {
        if self.price_table_revision >= PRICE_TABLE_REVISION {
            return false;
        }
        self.price_table_revision = PRICE_TABLE_REVISION;
        let added = self.price_table.add_missing_defaults();
        let removed = self.price_table.remove_legacy_family_defaults();
        !added.is_empty() || !removed.is_empty()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poller: PollerConfig::default(),
            default_lifetime_secs: 30 * 24 * 3600,
            default_budget: MicroUsd::from_usd(5),
            default_node_cap: Some(1),
            retire_to: RetireTo::Inactive,
            price_table: PriceTable::default(),
            p2p_requests_per_minute: 10,
            issue_unmatched_keys: false,
            price_table_revision: PRICE_TABLE_REVISION,
            workspace_per_key: false,
            archive_workspace_on_retire: false,
            audit_retention_days: default_audit_retention_days(),
            issuance: crate::policy::IssuancePolicy::default(),
            alerts: crate::alerts::AlertSettings::default(),
        }
    }
}

const MIN_POLL_INTERVAL_SECS: u64 = 60;
const MAX_POLL_INTERVAL_SECS: u64 = 7 * 24 * 3600;

/// Reads a field as an exact USD amount: a JSON string ("5", "2.50") or an integer.
fn usd_field(obj: &serde_json::Map<String, serde_json::Value>, field: &'static str) -> Result<Option<MicroUsd>, RequestError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => MicroUsd::parse_usd(s)
            .map(Some)
            .map_err(|e| invalid(field, e.to_string())),
        Some(serde_json::Value::Number(n)) if n.is_i64() => Ok(Some(MicroUsd::from_usd(n.as_i64().unwrap_or(0)))),
        Some(_) => Err(invalid(field, "expected a USD amount as a string like \"5.00\"")),
    }
}

fn u64_field(obj: &serde_json::Map<String, serde_json::Value>, field: &'static str) -> Result<Option<u64>, RequestError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(field, "expected a whole non-negative number")),
    }
}

fn string_field<'a>(obj: &'a serde_json::Map<String, serde_json::Value>, field: &'static str) -> Result<Option<&'a str>, RequestError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(field, "expected a string")),
    }
}

fn object(body: &serde_json::Value, allowed: &[&str]) -> Result<serde_json::Map<String, serde_json::Value>, RequestError> {
    let obj = body.as_object().ok_or(RequestError::NotAnObject)?;
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(RequestError::UnknownField(crate::admin_api::redact(unknown)));
    }
    Ok(obj.clone())
}

/// `AddKey` body: `{"secret", "name", "lifetime_days"?, "budget_usd"?, "node_cap"?}`.
/// Missing optional fields take the settings' defaults. The secret never appears in an error.
pub fn parse_add_key(body: &serde_json::Value, settings: &Settings) -> Result<NewKey, RequestError> {
    let obj = object(body, &["secret", "name", "lifetime_days", "budget_usd", "node_cap"])?;
    let secret = match obj.get("secret") {
        Some(serde_json::Value::String(s)) => ApiKeySecret::parse(s).map_err(|e| invalid("secret", e.to_string()))?,
        Some(_) => return Err(invalid("secret", "expected the API key as a string")),
        None => return Err(RequestError::Missing("secret")),
    };
    let name = string_field(&obj, "name")?.ok_or(RequestError::Missing("name"))?.trim().to_string();
    let lifetime_secs = match u64_field(&obj, "lifetime_days")? {
        Some(0) => return Err(invalid("lifetime_days", "must be at least 1")),
        Some(days) if days > 3650 => return Err(invalid("lifetime_days", "must be at most 3650")),
        Some(days) => days * 24 * 3600,
        None => settings.default_lifetime_secs,
    };
    let budget = usd_field(&obj, "budget_usd")?.unwrap_or(settings.default_budget);
    let node_cap = match obj.get("node_cap") {
        None => settings.default_node_cap,
        Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=u32::MAX as u64).contains(&n) => Some(n as u32),
            _ => return Err(invalid("node_cap", "expected a whole number of nodes, at least 1, or null for no cap")),
        },
    };
    Ok(NewKey { secret, name, lifetime_secs, budget, node_cap })
}

/// `UpdateSettings` body: any subset of the editable settings. Returns the new settings; the old
/// ones are untouched on error.
pub fn apply_settings_update(current: &Settings, body: &serde_json::Value) -> Result<Settings, RequestError> {
    let obj = object(
        body,
        &[
            "admin_api_base_url",
            "poll_interval_secs",
            "default_lifetime_days",
            "default_budget_usd",
            "default_node_cap",
            "retire_to",
            "price_table",
            "p2p_requests_per_minute",
            "issue_unmatched_keys",
            "workspace_per_key",
            "archive_workspace_on_retire",
            "audit_retention_days",
            "alerts",
            "issuance_policy",
            "allowlist",
            "denylist",
        ],
    )?;
    let mut next = current.clone();
    next.issuance = current.issuance.apply_update(&obj)?;
    if let Some(url) = string_field(&obj, "admin_api_base_url")? {
        crate::admin_api::AdminApiBase::parse(url).map_err(|e| invalid("admin_api_base_url", e.to_string()))?;
        next.poller.admin_api_base_url = url.trim().trim_end_matches('/').to_string();
    }
    if let Some(secs) = u64_field(&obj, "poll_interval_secs")? {
        if !(MIN_POLL_INTERVAL_SECS..=MAX_POLL_INTERVAL_SECS).contains(&secs) {
            return Err(invalid(
                "poll_interval_secs",
                format!("must be between {MIN_POLL_INTERVAL_SECS} and {MAX_POLL_INTERVAL_SECS}"),
            ));
        }
        next.poller.poll_interval_secs = secs;
    }
    if let Some(days) = u64_field(&obj, "default_lifetime_days")? {
        if !(1..=3650).contains(&days) {
            return Err(invalid("default_lifetime_days", "must be between 1 and 3650"));
        }
        next.default_lifetime_secs = days * 24 * 3600;
    }
    if let Some(budget) = usd_field(&obj, "default_budget_usd")? {
        if budget <= MicroUsd::ZERO {
            return Err(invalid("default_budget_usd", "must be above zero"));
        }
        next.default_budget = budget;
    }
    if let Some(cap) = obj.get("default_node_cap") {
        next.default_node_cap = match cap {
            serde_json::Value::Null => None,
            v => match v.as_u64() {
                Some(n) if (1..=u32::MAX as u64).contains(&n) => Some(n as u32),
                _ => return Err(invalid("default_node_cap", "expected a whole number, at least 1, or null")),
            },
        };
    }
    if let Some(to) = string_field(&obj, "retire_to")? {
        next.retire_to = match to {
            "inactive" => RetireTo::Inactive,
            "archived" => RetireTo::Archived,
            _ => return Err(invalid("retire_to", "expected \"inactive\" or \"archived\"")),
        };
    }
    if let Some(table) = obj.get("price_table") {
        let table: PriceTable = serde_json::from_value(table.clone()).map_err(|e| invalid("price_table", e.to_string()))?;
        table.validate().map_err(|e| invalid("price_table", e.to_string()))?;
        next.price_table = table;
    }
    if let Some(n) = u64_field(&obj, "p2p_requests_per_minute")? {
        if !(1..=10_000).contains(&n) {
            return Err(invalid("p2p_requests_per_minute", "must be between 1 and 10000"));
        }
        next.p2p_requests_per_minute = n as u32;
    }
    if let Some(b) = bool_field(&obj, "issue_unmatched_keys")? {
        next.issue_unmatched_keys = b;
    }
    if let Some(b) = bool_field(&obj, "workspace_per_key")? {
        next.workspace_per_key = b;
    }
    if let Some(b) = bool_field(&obj, "archive_workspace_on_retire")? {
        next.archive_workspace_on_retire = b;
    }
    if let Some(days) = u64_field(&obj, "audit_retention_days")? {
        if !(1..=3650).contains(&days) {
            return Err(invalid("audit_retention_days", "must be between 1 and 3650"));
        }
        next.audit_retention_days = days as u32;
    }
    if let Some(alerts) = obj.get("alerts") {
        next.alerts = crate::alerts::apply_alert_settings_update(&current.alerts, alerts).map_err(|e| invalid("alerts", e.to_string()))?;
    }
    Ok(next)
}

fn bool_field(obj: &serde_json::Map<String, serde_json::Value>, field: &'static str) -> Result<Option<bool>, RequestError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(field, "expected true or false")),
    }
}

/// A workspace this app created for one key (workspace-per-key mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedWorkspace {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub archived_at: Option<Timestamp>,
}

/// A prepared workspace as the dashboard shows it, with the pool key matched into it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub archived_at: Option<String>,
    pub key: Option<KeyId>,
    /// What the operator does next.
    pub next_step: String,
}

impl WorkspaceView {
    pub fn of(ws: &PreparedWorkspace, pool: &KeyPool) -> WorkspaceView {
        let key = pool
            .keys()
            .find(|r| matches!(&r.resolution, Resolution::Resolved { workspace_id: Some(w), .. } if *w == ws.id))
            .map(|r| r.id);
        let next_step = match (key, ws.archived_at) {
            (_, Some(_)) => "archived: every key in it is stopped".to_string(),
            (Some(k), None) => format!("holds key {k}: its daily cost report is that key's own"),
            (None, None) => format!(
                "create an API key in the Anthropic Console in workspace \"{}\" ({}), then add it here (keys cannot be created through the Admin API)",
                ws.name, ws.id
            ),
        };
        WorkspaceView { id: ws.id.clone(), name: ws.name.clone(), created_at: rfc3339(ws.created_at), archived_at: ws.archived_at.map(rfc3339), key, next_step }
    }
}

/// `PrepareWorkspace` body: `{"name": "..."}` (1 to 40 characters, as the Admin API allows).
pub fn parse_workspace_name(body: &serde_json::Value) -> Result<String, RequestError> {
    let obj = object(body, &["name"])?;
    let name = string_field(&obj, "name")?.ok_or(RequestError::Missing("name"))?.trim().to_string();
    if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
        return Err(invalid("name", "1 to 40 characters without control characters"));
    }
    Ok(name)
}

/// Why a dashboard request was refused as possibly cross-site (SPEC §7).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CrossSiteError {
    #[error("refused: the dashboard API takes only content-type application/json")]
    NotJson,
    #[error("refused: a request from another site (Origin {0})")]
    ForeignOrigin(String),
    #[error("refused: a request from another site (Sec-Fetch-Site {0})")]
    CrossSiteFetch(String),
}

/// The node's login cookie carries no SameSite attribute, so a page on another site could post to
/// the dashboard API with the operator's cookie. Browsers always send `Origin` on such a POST (and
/// `Sec-Fetch-Site`), and cannot send `application/json` across sites without a preflight this API
/// never grants: a request must be JSON, and its Origin (when sent) must be the host it was sent
/// to: the `Host` header, or `X-Forwarded-Host` behind a reverse proxy that rewrites `Host` (a page
/// cannot set that header on a cross-site request without a preflight). A script holding the
/// cookie and sending neither header passes.
pub fn check_same_origin(
    content_type: Option<&str>,
    origin: Option<&str>,
    hosts: &[Option<&str>],
    sec_fetch_site: Option<&str>,
) -> Result<(), CrossSiteError> {
    let json = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(CrossSiteError::NotJson);
    }
    if let Some(site) = sec_fetch_site.map(str::trim) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(CrossSiteError::CrossSiteFetch(site.chars().take(40).collect()));
        }
    }
    if let Some(origin) = origin.map(str::trim) {
        let authority = url::Url::parse(origin).ok().and_then(|u| {
            let host = u.host_str()?.to_ascii_lowercase();
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        });
        let same = authority.as_ref().is_some_and(|a| {
            hosts.iter().flatten().map(|h| h.trim().to_ascii_lowercase()).any(|h| *a == h || strip_default_port(&h) == *a)
        });
        if !same {
            return Err(CrossSiteError::ForeignOrigin(origin.chars().take(100).collect()));
        }
    }
    Ok(())
}

/// `host:80` and `host:443` name the same origin as `host` (browsers leave default ports out).
fn strip_default_port(host: &str) -> String {
    host.strip_suffix(":80").or_else(|| host.strip_suffix(":443")).unwrap_or(host).to_string()
}

/// `MatchKey` body: `{"key": 3, "api_key_id": "apikey_..."}`.
pub fn parse_match_key(body: &serde_json::Value) -> Result<(KeyId, String), RequestError> {
    let obj = object(body, &["key", "api_key_id"])?;
    let key = u64_field(&obj, "key")?.ok_or(RequestError::Missing("key"))?;
    let id = string_field(&obj, "api_key_id")?.ok_or(RequestError::Missing("api_key_id"))?.trim();
    let well_formed = id.starts_with("apikey_")
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(invalid("api_key_id", "expected an Admin API key id like apikey_01Rj..."));
    }
    Ok((KeyId(key), id.to_string()))
}

/// `SetAdminKey` body: `{"admin_key": "sk-ant-admin01-..."}`. Returns the validated key.
pub fn parse_admin_key(body: &serde_json::Value) -> Result<crate::AdminKey, RequestError> {
    let obj = object(body, &["admin_key"])?;
    match obj.get("admin_key") {
        Some(serde_json::Value::String(s)) => crate::AdminKey::parse(s).map_err(|e| invalid("admin_key", e.to_string())),
        Some(_) => Err(invalid("admin_key", "expected a string")),
        None => Err(RequestError::Missing("admin_key")),
    }
}

/// A key as the dashboard sees it (masked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: KeyId,
    pub name: String,
    pub masked_key: String,
    /// `active`, `retired` (or `removed`).
    pub status: String,
    pub retired_reason: Option<String>,
    pub retired_at: Option<String>,
    /// `pending`, `pending: not matched yet`, `confirmed: <status>` — the Admin API side of a
    /// retirement.
    pub admin_api_retirement: Option<String>,
    pub api_key_id: Option<String>,
    pub workspace_id: Option<String>,
    /// Why the key could not be matched to its Admin API id, when it could not.
    pub unresolved_reason: Option<String>,
    pub added_at: String,
    pub expires_at: String,
    pub budget_micro_usd: i64,
    pub spent_micro_usd: i64,
    pub node_cap: Option<u32>,
    pub nodes: u64,
    pub eligible: bool,
    /// Why an active key is not handed to new nodes, when it is not.
    pub not_issued_because: Option<String>,
    /// The key's status in the organization at the last read (`active`, `inactive`, ...;
    /// `not found` when its id was absent from the list), and its own expiry there.
    pub org_status: Option<String>,
    pub org_expires_at: Option<String>,
    /// The last failure to set the Admin API status of this retired key.
    pub retirement_error: Option<String>,
    /// True when that failure needs the operator (401/403).
    pub retirement_needs_operator: bool,
    /// Just added and being looked up in the organization's keys (not issued until that is done).
    pub matching: bool,
}

/// Why an active key that is not eligible is not handed out.
fn not_issued_because(record: &KeyRecord, nodes: usize, eligible: bool, now: Timestamp) -> Option<String> {
    if eligible || record.retirement.is_some() {
        return None;
    }
    Some(
        if let Some(reason) = record.due_retirement(now) {
            format!("due for retirement ({reason})")
        } else if record.secret.is_none() {
            "its secret was removed".to_string()
        } else if record.first_match_pending {
            "being matched to its Admin API key".to_string()
        } else if record.org.as_ref().is_some_and(|o| o.status.is_none()) {
            "its Admin API id was not in the organization's key list at the last poll".to_string()
        } else if matches!(record.resolution, Resolution::Unresolved { .. }) {
            "not matched to an Admin API key yet: unmatched keys are not issued (Settings can allow it), so their spend can be tracked".to_string()
        } else if record.node_cap.is_some_and(|cap| nodes >= cap as usize) {
            "its node cap is reached".to_string()
        } else {
            "not eligible".to_string()
        },
    )
}

impl KeyView {
    pub fn of(record: &KeyRecord, nodes: usize, eligible: bool, now: Timestamp) -> KeyView {
        let (api_key_id, workspace_id, unresolved_reason) = match &record.resolution {
            Resolution::Resolved { api_key_id, workspace_id } => (Some(api_key_id.clone()), workspace_id.clone(), None),
            Resolution::Unresolved { why } => (None, None, Some(why.clone())),
        };
        let status = if record.removed {
            "removed"
        } else if record.retirement.is_some() {
            "retired"
        } else {
            "active"
        };
        KeyView {
            id: record.id,
            name: record.name.clone(),
            masked_key: record.hint.to_string(),
            status: status.to_string(),
            retired_reason: record.retirement.as_ref().map(|r| r.reason.to_string()),
            retired_at: record.retirement.as_ref().map(|r| rfc3339(r.at)),
            admin_api_retirement: record.retirement.as_ref().map(|r| match &r.remote {
                RemoteRetirement::Pending => "pending".to_string(),
                RemoteRetirement::Confirmed { status } => format!("confirmed: {status}"),
                RemoteRetirement::NotNeeded | RemoteRetirement::AwaitingMatch => "pending: not matched yet".to_string(),
            }),
            api_key_id,
            workspace_id,
            unresolved_reason,
            added_at: rfc3339(record.added_at),
            expires_at: rfc3339(record.expires_at),
            budget_micro_usd: record.budget.0,
            spent_micro_usd: record.spent.0,
            node_cap: record.node_cap,
            nodes: nodes as u64,
            eligible,
            not_issued_because: not_issued_because(record, nodes, eligible, now),
            org_status: record.org.as_ref().map(|o| o.status.clone().unwrap_or_else(|| "not found".to_string())),
            org_expires_at: record.org.as_ref().and_then(|o| o.expires_at).map(rfc3339),
            retirement_error: record.retirement.as_ref().and_then(|r| r.last_error.as_ref()).map(|e| e.message.clone()),
            retirement_needs_operator: record.retirement.as_ref().and_then(|r| r.last_error.as_ref()).is_some_and(|e| e.needs_operator),
            matching: record.first_match_pending,
        }
    }
}

/// One node that was issued a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub node: String,
    pub key_id: KeyId,
    pub key_name: String,
    pub masked_key: String,
    pub issued_at: String,
    /// Estimated cost attributed to this node while it held its key (`cost::cost_per_node`).
    pub cost_micro_usd: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesQuery {
    #[serde(default)]
    pub search: Option<String>,
    #[serde(default)]
    pub key: Option<KeyId>,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesPage {
    pub total: u64,
    pub nodes: Vec<NodeView>,
}

/// `CostSeries` body. Times are unix seconds; `key` None = the whole pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostSeriesQuery {
    #[serde(default)]
    pub key: Option<KeyId>,
    #[serde(default)]
    pub from: Option<i64>,
    #[serde(default)]
    pub to: Option<i64>,
    #[serde(default)]
    pub max_points: Option<u32>,
}

/// Cumulative cost as compact columns: `t[i]` (unix seconds, bucket start) and `v[i]` (µUSD spent
/// up to and including that bucket, counted from the start of the pool's history).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostSeries {
    pub key: Option<KeyId>,
    pub source: String,
    pub t: Vec<i64>,
    pub v: Vec<i64>,
    /// Node-join events in the range, at most `MAX_JOINS` (evenly thinned when there are more).
    pub joins: Vec<JoinEvent>,
    /// How many nodes joined in the range.
    pub joins_total: u64,
    pub total_micro_usd: i64,
}

/// Most join events one cost-series answer carries.
pub const MAX_JOINS: usize = 10_000;

/// A node was issued a key at `t`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinEvent {
    pub t: i64,
    pub node: String,
    pub key: KeyId,
}

/// Indices of at most `max` of `n` items, evenly spaced, always the first and the last.
pub fn even_indices(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    if max < 2 {
        return (0..max).collect();
    }
    let mut out: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    out.dedup();
    out
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingsView {
    pub admin_key_set: bool,
    pub admin_key_prefix: Option<String>,
    pub admin_api_base_url: String,
    pub poll_interval_secs: u64,
    pub default_lifetime_days: u64,
    pub default_budget_micro_usd: i64,
    pub default_node_cap: Option<u32>,
    pub retire_to: RetireTo,
    pub price_table: PriceTable,
    pub p2p_requests_per_minute: u32,
    pub issue_unmatched_keys: bool,
    pub workspace_per_key: bool,
    pub archive_workspace_on_retire: bool,
    pub audit_retention_days: u32,
    /// `issuance_policy`, `allowlist`, `denylist`.
    #[serde(flatten)]
    pub issuance: crate::policy::IssuancePolicy,
    pub alerts: crate::alerts::AlertSettingsView,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub now: String,
    pub poller: PollerStatus,
    /// Whether the poller answered the issuer's last message.
    pub poller_reachable: bool,
    pub active_keys: u32,
    pub historical_keys: u32,
    pub pending_admin_api_retirements: u32,
    pub unresolved_keys: u32,
    /// Keys not matched to an Admin API id, with why.
    pub unmatched: Vec<KeyAttention>,
    /// Retirements whose Admin API status change keeps failing.
    pub retirement_errors: Vec<KeyAttention>,
    /// Matched keys whose id the organization's last list did not hold.
    pub missing_in_organization: Vec<KeyAttention>,
    /// Models priced by the fallback rate until the operator prices them.
    pub unknown_models: Vec<UnknownModelView>,
}

/// A key the status page asks the operator to look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAttention {
    pub key: KeyId,
    pub name: String,
    pub message: String,
    /// Retrying will not help until the operator acts.
    pub needs_operator: bool,
}

/// A model no price entry matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownModelView {
    pub model: String,
    pub message: String,
}

impl UnknownModelView {
    pub fn of(model: &str, table: &PriceTable) -> UnknownModelView {
        let rates = table.highest_rates();
        let usd = |m: MicroUsd| m.format_usd();
        UnknownModelView {
            model: model.to_string(),
            message: format!(
                "unknown model {model}, priced at the highest known rates (input {} / output {} USD per million tokens) — set its price",
                usd(rates.input),
                usd(rates.output)
            ),
        }
    }
}

impl StatusView {
    /// Everything but the unknown models (the issuer knows which models it has seen).
    pub fn of(pool: &KeyPool, poller: PollerStatus, poller_reachable: bool, summary: &crate::wit_api::PoolSummary, now: Timestamp) -> StatusView {
        let attention = |record: &KeyRecord, message: String, needs_operator: bool| KeyAttention { key: record.id, name: record.name.clone(), message, needs_operator };
        let mut unmatched = vec![];
        let mut retirement_errors = vec![];
        let mut missing_in_organization = vec![];
        for record in pool.keys() {
            if let Resolution::Unresolved { why } = &record.resolution {
                if pool.keys_to_match().contains(&record.id) {
                    let what = if record.retirement.is_some() { "retired, pending: not matched yet" } else { "not issued until matched" };
                    unmatched.push(attention(record, format!("{why} ({what}); match it by hand with its apikey_ id"), false));
                }
            }
            if let Some(e) = record.retirement.as_ref().and_then(|r| r.last_error.as_ref()) {
                retirement_errors.push(attention(record, e.message.clone(), e.needs_operator));
            }
            if record.org.as_ref().is_some_and(|o| o.status.is_none()) && !record.removed {
                missing_in_organization.push(attention(record, "its Admin API id was not in the organization's key list".to_string(), false));
            }
        }
        StatusView {
            now: rfc3339(now),
            poller,
            poller_reachable,
            active_keys: summary.active_keys,
            historical_keys: summary.historical_keys,
            pending_admin_api_retirements: pool.pending_remote_retirements().len() as u32 + pool
                .keys()
                .filter(|r| matches!(r.retirement.as_ref().map(|x| &x.remote), Some(RemoteRetirement::AwaitingMatch | RemoteRetirement::NotNeeded)))
                .count() as u32,
            unresolved_keys: unmatched.len() as u32,
            unmatched,
            retirement_errors,
            missing_in_organization,
            unknown_models: vec![],
        }
    }
}

/// One audit log entry. `detail` never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Entries older than this sequence number (paging backwards); None = newest.
    #[serde(default)]
    pub before_seq: Option<i64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before_seq: Option<i64>,
}

/// Page sizes: the dashboard may ask for less, never more.
pub const MAX_PAGE: u64 = 500;
pub const DEFAULT_PAGE: u64 = 100;

pub fn page_limit(limit: Option<u64>) -> u64 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// The time an HTTP answer reports as "now".
pub fn now_view(now: Timestamp) -> String {
    rfc3339(now)
}

#[cfg(test)]
mod parse_arg_tests {
    use super::*;

    #[test]
    fn a_wrong_argument_is_refused_without_repeating_a_secret() {
        let secret = "sk-ant-api03-TESTabcdefghijklmnopqrstuvwxyz0123456789";
        let e = parse_arg::<KeyId>(serde_json::json!(secret)).unwrap_err().to_string();
        assert!(e.starts_with("field `argument`: invalid type") && !e.contains("TESTabcdefghijkl"), "{e}");
        assert_eq!(parse_arg::<KeyId>(serde_json::json!(3)).unwrap(), KeyId(3));
        assert!(parse_arg::<()>(serde_json::json!(null)).is_ok());
        assert!(parse_arg::<()>(serde_json::json!({secret: 1})).unwrap_err().to_string().find("TESTabcdefghijkl").is_none());
        assert!(parse_arg::<AuditQuery>(serde_json::json!({"limit": -1})).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cross_site_requests_are_refused() {
        let ok = |ct, origin, host, site| check_same_origin(ct, origin, &[host], site);
        let json = Some("application/json");
        assert_eq!(ok(json, None, Some("node.os:8080"), None), Ok(()), "a script without Origin passes");
        assert_eq!(ok(Some("application/json; charset=utf-8"), Some("http://node.os:8080"), Some("node.os:8080"), Some("same-origin")), Ok(()));
        assert_eq!(ok(json, Some("https://node.os"), Some("node.os:443"), None), Ok(()), "default port");
        assert_eq!(ok(json, Some("http://app-key.node.os.localhost:8080"), Some("app-key.node.os.localhost:8080"), None), Ok(()), "secure subdomain");
        for bad in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data; boundary=x")] {
            assert_eq!(ok(bad, None, Some("node.os"), None), Err(CrossSiteError::NotJson));
        }
        assert!(matches!(ok(json, Some("https://evil.example"), Some("node.os:8080"), None), Err(CrossSiteError::ForeignOrigin(_))));
        assert!(matches!(ok(json, Some("http://node.os:9999"), Some("node.os:8080"), None), Err(CrossSiteError::ForeignOrigin(_))));
        assert!(matches!(ok(json, Some("null"), Some("node.os"), None), Err(CrossSiteError::ForeignOrigin(_))));
        assert!(matches!(ok(json, None, Some("node.os"), Some("cross-site")), Err(CrossSiteError::CrossSiteFetch(_))));
        assert!(matches!(ok(json, None, Some("node.os"), Some("same-site")), Err(CrossSiteError::CrossSiteFetch(_))));
        // Behind a reverse proxy that rewrites Host, the forwarded host names the node's origin.
        let proxied = check_same_origin(json, Some("https://node.example.com"), &[Some("127.0.0.1:8080"), Some("node.example.com")], None);
        assert_eq!(proxied, Ok(()));
        let forged = check_same_origin(json, Some("https://evil.example"), &[Some("127.0.0.1:8080"), Some("node.example.com")], None);
        assert!(matches!(forged, Err(CrossSiteError::ForeignOrigin(_))));
    }

    fn at(secs: i64) -> Timestamp {
        // 2027-01-15T00:00:00Z: mid-month, at the start of a UTC day.
        chrono::DateTime::from_timestamp(1_799_971_200 + secs, 0).unwrap()
    }

    fn pool_with_two_nodes() -> (crate::KeyPool, crate::cost::HourlyCosts) {
        use rand::SeedableRng;
        let mut pool = crate::KeyPool::new();
        pool.set_issue_unmatched(true);
        let secret = ApiKeySecret::parse(SECRET).unwrap();
        let key = pool
            .add_key(NewKey { secret, name: "k".into(), lifetime_secs: 90 * 86400, budget: MicroUsd::from_usd(10), node_cap: None }, at(-20 * 86400))
            .unwrap();
        pool.end_first_match(key);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        pool.issue_to("alice.os", at(-10 * 86400), &mut rng).unwrap();
        pool.issue_to("bob.os", at(-3600), &mut rng).unwrap();
        let mut hourly = crate::cost::HourlyCosts::default();
        // 1 USD ten days ago (alice alone), 3 µUSD in each of the last two hours (both nodes).
        hourly.set(key, at(-10 * 86400).timestamp(), MicroUsd::from_usd(1));
        hourly.set(key, at(-3600).timestamp(), MicroUsd(3));
        hourly.set(key, at(0).timestamp(), MicroUsd(3));
        pool.set_spent(key, hourly.spent(key));
        (pool, hourly)
    }

    #[test]
    fn overview_splits_today_month_and_per_node() {
        let (pool, hourly) = pool_with_two_nodes();
        let o = overview(&pool, &hourly, at(1800));
        assert_eq!(o.spent_today_micro_usd, 3);
        assert_eq!(o.spent_this_month_micro_usd, 1_000_006);
        assert_eq!(o.spent_total_micro_usd, 1_000_006);
        assert_eq!(o.nodes_onboarded, 2);
        assert_eq!(o.cost_per_node_micro_usd, Some(500_003));
        assert_eq!(o.burn_rate_micro_usd_per_hour, 0); // 6 µUSD ÷ 24, truncated
        assert_eq!(o.keys.len(), 1);
        assert_eq!(o.keys[0].budget_runs_out_in_secs, None);
    }

    #[test]
    fn node_views_attribute_cost_exactly() {
        let (pool, hourly) = pool_with_two_nodes();
        let key = pool.keys().next().unwrap().id;
        assert_eq!(pool.issue_log().of_key(key), &[0, 1]);
        let views = node_views(&pool, &hourly, &mut crate::attribution::NodeShares::default(), &[0, 1]);
        // Alice alone for the 1 USD hour; the two 3 µUSD hours split 1.5 + 1.5 each.
        assert_eq!(views[0].cost_micro_usd, 1_000_000 + 3);
        assert_eq!(views[1].cost_micro_usd, 3);
        assert_eq!(views.iter().map(|v| v.cost_micro_usd).sum::<i64>(), 1_000_006);
        assert!(views.iter().all(|v| !v.masked_key.contains(SECRET)));
    }

    const SECRET: &str = "sk-ant-api03-TESTabcdefghijklmnopqrstuvwxyz0123456789-_AAAA";

    #[test]
    fn add_key_takes_defaults_and_validates() {
        let settings = Settings::default();
        let key = parse_add_key(&json!({"secret": SECRET, "name": " trial "}), &settings).unwrap();
        assert_eq!(key.name, "trial");
        assert_eq!(key.lifetime_secs, settings.default_lifetime_secs);
        assert_eq!(key.budget, settings.default_budget);
        let key = parse_add_key(
            &json!({"secret": SECRET, "name": "x", "lifetime_days": 2, "budget_usd": "1.25", "node_cap": null}),
            &settings,
        )
        .unwrap();
        assert_eq!(key.lifetime_secs, 2 * 86400);
        assert_eq!(key.budget, MicroUsd(1_250_000));
        assert_eq!(key.node_cap, None);
    }

    #[test]
    fn add_key_errors_never_echo_the_secret() {
        let settings = Settings::default();
        let bad = [
            json!({"secret": SECRET}),
            json!({"secret": SECRET, "name": "x", "budget_usd": 1.5}),
            json!({"secret": SECRET, "name": "x", "lifetime_days": -1}),
            json!({"secret": SECRET, "name": "x", "node_cap": 0}),
            json!({"secret": SECRET, "name": "x", "extra": SECRET}),
            json!({"secret": format!("{SECRET}!"), "name": "x"}),
            json!([SECRET]),
            json!({"secret": 5, "name": "x"}),
        ];
        for body in bad {
            let err = parse_add_key(&body, &settings).unwrap_err().to_string();
            assert!(!err.contains("TESTabcdef"), "secret leaked in: {err}");
        }
    }

    #[test]
    fn settings_update_is_all_or_nothing() {
        let current = Settings::default();
        let next = apply_settings_update(&current, &json!({"poll_interval_secs": 600, "retire_to": "archived"})).unwrap();
        assert_eq!(next.poller.poll_interval_secs, 600);
        assert_eq!(next.retire_to, RetireTo::Archived);
        for bad in [
            json!({"poll_interval_secs": 5}),
            json!({"retire_to": "deleted"}),
            json!({"admin_api_base_url": "ftp://x"}),
            json!({"default_budget_usd": "0"}),
            json!({"surprise": 1}),
            json!({"poll_interval_secs": 600, "retire_to": "nope"}),
        ] {
            assert!(apply_settings_update(&current, &bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn joins_are_thinned_evenly() {
        let kept = even_indices(10_000, 100);
        assert_eq!(kept.len(), 100);
        assert_eq!((kept[0], kept[99]), (0, 9_999));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(even_indices(50, 100), (0..50).collect::<Vec<_>>());
        assert_eq!(even_indices(3, 1), vec![0]);
    }

    #[test]
    fn admin_key_body_validated_without_echo() {
        let ok = parse_admin_key(&json!({"admin_key": "sk-ant-admin01-TESTabcdefghijklmnopqrstuvwxyz012345"}));
        assert!(ok.is_ok());
        let err = parse_admin_key(&json!({"admin_key": "sk-ant-api03-TESTabcdefghijklmnopqrstuvwxyz"})).unwrap_err();
        assert!(!err.to_string().contains("TESTabcdef"));
    }
}

/// Cost and tokens of one key for one model, all time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsageView {
    pub model: String,
    pub cost_micro_usd: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// `KeyDetail` answer: one key with its nodes, usage by model and derived figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDetail {
    pub key: KeyView,
    pub nodes: Vec<NodeView>,
    pub usage_by_model: Vec<ModelUsageView>,
    /// Cost of the last 24 hours ÷ 24.
    pub burn_rate_micro_usd_per_hour: i64,
    /// (budget − spent) ÷ burn rate; None when nothing burns.
    pub budget_runs_out_in_secs: Option<u64>,
    /// Authoritative cost (cost report of the key's own workspace) over closed days, when the key
    /// is the only pool key in a workspace of its own.
    pub authoritative_micro_usd: Option<i64>,
    /// Estimate over the same closed days.
    pub estimate_same_days_micro_usd: Option<i64>,
    pub drift_basis_points: Option<i64>,
    pub drift_warning: bool,
    /// Where `authoritative_micro_usd` comes from: `analytics` (per-key cost) or `cost_report` (the
    /// key's own workspace); the estimate is always `usage_estimate`.
    pub authoritative_source: Option<String>,
    pub estimate_source: String,
}

/// One active key's burn rate and runway, for the overview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRunway {
    pub id: KeyId,
    pub name: String,
    pub spent_micro_usd: i64,
    pub budget_micro_usd: i64,
    pub burn_rate_micro_usd_per_hour: i64,
    /// None when nothing burns.
    pub budget_runs_out_in_secs: Option<u64>,
}

impl KeyRunway {
    /// Burn rate (last 24 h ÷ 24) and runway of a key, from its hourly cost.
    pub fn of(record: &KeyRecord, hourly: &[crate::cost::CostPoint], now: Timestamp) -> KeyRunway {
        KeyRunway::with_burn(record, crate::cost::burn_rate_per_hour(hourly, now))
    }

    fn with_burn(record: &KeyRecord, burn: MicroUsd) -> KeyRunway {
        KeyRunway {
            id: record.id,
            name: record.name.clone(),
            spent_micro_usd: record.spent.0,
            budget_micro_usd: record.budget.0,
            burn_rate_micro_usd_per_hour: burn.0,
            budget_runs_out_in_secs: crate::cost::budget_runs_out_in_secs(record.budget, record.spent, burn),
        }
    }
}

/// Figures beside the overview plot. Days and months are UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverviewView {
    pub now: String,
    pub spent_today_micro_usd: i64,
    pub spent_this_month_micro_usd: i64,
    pub spent_total_micro_usd: i64,
    pub active_keys: u32,
    pub historical_keys: u32,
    pub eligible_keys: u32,
    pub nodes_onboarded: u64,
    /// Total cost ÷ nodes ever issued; None before the first node.
    pub cost_per_node_micro_usd: Option<i64>,
    pub burn_rate_micro_usd_per_hour: i64,
    /// Active keys, soonest to run out first (keys that burn nothing last).
    pub keys: Vec<KeyRunway>,
}

/// Builds the overview figures from the pool and its hourly cost index.
pub fn overview(pool: &crate::KeyPool, hourly: &crate::cost::HourlyCosts, now: Timestamp) -> OverviewView {
    use chrono::{Datelike, TimeZone};
    use crate::cost;
    let day_start = now.timestamp() - now.timestamp().rem_euclid(86_400);
    let month_start = chrono::Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(day_start, |t| t.timestamp());
    // Sums over ranges of the hourly index: no key's year of points is copied.
    let spent_total = hourly.sum_between(None, i64::MIN, i64::MAX);
    let summary = crate::wit_api::pool_summary(pool, now);
    let nodes = pool.issued_node_count() as u64;
    let mut keys: Vec<KeyRunway> = pool
        .keys()
        .filter(|r| r.is_active())
        .map(|r| KeyRunway::with_burn(r, cost::burn_rate_in(hourly, Some(r.id), now)))
        .collect();
    keys.sort_by_key(|k| (k.budget_runs_out_in_secs.is_none(), k.budget_runs_out_in_secs, k.id));
    OverviewView {
        now: crate::wit_api::rfc3339(now),
        spent_today_micro_usd: hourly.sum_between(None, day_start, i64::MAX).0,
        spent_this_month_micro_usd: hourly.sum_between(None, month_start, i64::MAX).0,
        spent_total_micro_usd: spent_total.0,
        active_keys: summary.active_keys,
        historical_keys: summary.historical_keys,
        eligible_keys: summary.eligible_keys,
        nodes_onboarded: nodes,
        cost_per_node_micro_usd: (nodes > 0).then(|| spent_total.0 / nodes as i64),
        burn_rate_micro_usd_per_hour: cost::burn_rate_in(hourly, None, now).0,
        keys,
    }
}

/// Views of the issuances at `positions` (of issue order), each with the cost attributed to its
/// node: `attribution::NodeShares` splits each key's cost once and keeps it until an input changes.
pub fn node_views(
    pool: &crate::KeyPool,
    hourly: &crate::cost::HourlyCosts,
    shares: &mut crate::attribution::NodeShares,
    positions: &[crate::pool::IssuePos],
) -> Vec<NodeView> {
    let log = pool.issue_log();
    positions
        .iter()
        .filter(|&&pos| (pos as usize) < log.len())
        .map(|&pos| {
            let issuance = log.at(pos);
            let (key_name, masked_key) = pool
                .key(issuance.key)
                .map(|r| (r.name.clone(), r.hint.to_string()))
                .unwrap_or_else(|| ("(unknown key)".to_string(), String::new()));
            let cost = shares.share_at(pool, hourly, pos).map_or(0, |m| m.0);
            NodeView {
                node: issuance.node.clone(),
                key_id: issuance.key,
                key_name,
                masked_key,
                issued_at: rfc3339(issuance.issued_at),
                cost_micro_usd: cost,
            }
        })
        .collect()
}
