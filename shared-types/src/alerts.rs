//! Alerts (SPEC §7): conditions the operator should learn about without watching the dashboard.
//!
//! Each alert is a two-state machine keyed by its [`Condition`]: clear → raised when the condition
//! starts to hold, raised → clear when it ends. [`holding`] reads which conditions hold in a
//! snapshot of the pool, the poller's status and the time; [`AlertBook::apply`] compares that with
//! the open alerts and answers the transitions. Evaluating the same snapshot again changes nothing,
//! so an alert is raised once per crossing however often (and from wherever) it is evaluated.
//! Webhook bodies, the webhook URL rule, the alert settings and the dashboard's alert types live
//! here too; nothing here calls the platform.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::messages::PollerStatus;
use crate::pool::{KeyPool, KeyRecord, RemoteRetirement};
use crate::wit_api::rfc3339;
use crate::{KeyId, RetireReason, Timestamp};

/// A key whose lifetime ends within this many seconds raises [`Condition::ExpiresSoon`].
pub const EXPIRY_WARNING_SECS: i64 = 24 * 3600;
/// A retirement whose Admin API status is still not set after this long raises
/// [`Condition::RetirementStuck`].
pub const RETIREMENT_STUCK_SECS: i64 = 3600;
/// The poller is silent when it has not started a poll for this many poll intervals.
pub const POLLER_SILENT_INTERVALS: i64 = 2;
/// A key retired for its budget keeps its budget alerts open this long: the retirement happens in
/// the same step as the 100 % crossing, and the operator must still hear of it; after that nothing
/// is left to act on and they clear.
pub const RETIRED_KEY_ALERT_SECS: i64 = 24 * 3600;
/// Default budget thresholds, in percent of a key's budget.
pub const DEFAULT_BUDGET_PERCENTS: [u32; 4] = [50, 80, 95, 100];
/// Discord refuses a `content` longer than 2,000 characters.
const WEBHOOK_TEXT_MAX_CHARS: usize = 1_900;

/// Something the operator should know about. Its [`Condition::id`] is its identity in storage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// The key has spent at least `percent` % of its budget.
    Budget { key: KeyId, percent: u32 },
    /// The active key's lifetime ends within 24 h.
    ExpiresSoon { key: KeyId },
    /// No key can be issued to a new node.
    PoolEmpty,
    /// Fewer eligible keys than the operator's threshold (but at least one).
    PoolLow,
    /// The Admin API refused the admin key (401/403) or the base URL: polling is stopped until the
    /// operator acts.
    AdminKeyRefused,
    /// The key was retired more than an hour ago and its Admin API status is still not set.
    RetirementStuck { key: KeyId },
    /// The cost-poller has not started a poll for two poll intervals.
    PollerSilent,
    /// Usage of a model no price entry matches is priced at the highest known rates.
    UnknownModel { model: String },
}

/// How urgent an alert is; the dashboard colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConditionIdError {
    #[error("not an alert id: {0}")]
    Unknown(String),
}

impl Condition {
    /// Stable text identity, e.g. `budget:k3:80`, `pool-empty`, `unknown-model:claude-x`.
    pub fn id(&self) -> String {
        match self {
            Condition::Budget { key, percent } => format!("budget:{key}:{percent}"),
            Condition::ExpiresSoon { key } => format!("expires-soon:{key}"),
            Condition::PoolEmpty => "pool-empty".to_string(),
            Condition::PoolLow => "pool-low".to_string(),
            Condition::AdminKeyRefused => "admin-key-refused".to_string(),
            Condition::RetirementStuck { key } => format!("retirement-stuck:{key}"),
            Condition::PollerSilent => "poller-silent".to_string(),
            Condition::UnknownModel { model } => format!("unknown-model:{model}"),
        }
    }

    /// Reads an id written by [`Condition::id`].
    pub fn parse_id(id: &str) -> Result<Condition, ConditionIdError> {
        let unknown = || ConditionIdError::Unknown(id.chars().take(80).collect());
        let key = |s: &str| s.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()).map(KeyId).ok_or_else(unknown);
        let (kind, rest) = id.split_once(':').unwrap_or((id, ""));
        Ok(match (kind, rest) {
            ("pool-empty", "") => Condition::PoolEmpty,
            ("pool-low", "") => Condition::PoolLow,
            ("admin-key-refused", "") => Condition::AdminKeyRefused,
            ("poller-silent", "") => Condition::PollerSilent,
            ("expires-soon", k) => Condition::ExpiresSoon { key: key(k)? },
            ("retirement-stuck", k) => Condition::RetirementStuck { key: key(k)? },
            ("unknown-model", model) if !model.is_empty() => Condition::UnknownModel { model: model.to_string() },
            ("budget", rest) => {
                let (k, percent) = rest.split_once(':').ok_or_else(unknown)?;
                Condition::Budget { key: key(k)?, percent: percent.parse().map_err(|_| unknown())? }
            }
            _ => return Err(unknown()),
        })
    }

    /// The kind, as the dashboard filters by it.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Budget { .. } => "budget",
            Condition::ExpiresSoon { .. } => "expires-soon",
            Condition::PoolEmpty => "pool-empty",
            Condition::PoolLow => "pool-low",
            Condition::AdminKeyRefused => "admin-key-refused",
            Condition::RetirementStuck { .. } => "retirement-stuck",
            Condition::PollerSilent => "poller-silent",
            Condition::UnknownModel { .. } => "unknown-model",
        }
    }

    pub fn key(&self) -> Option<KeyId> {
        match self {
            Condition::Budget { key, .. } | Condition::ExpiresSoon { key } | Condition::RetirementStuck { key } => Some(*key),
            _ => None,
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Condition::Budget { percent, .. } if *percent >= 100 => Severity::Critical,
            Condition::PoolEmpty | Condition::AdminKeyRefused | Condition::PollerSilent => Severity::Critical,
            _ => Severity::Warning,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// Every kind, for the dashboard's filter.
pub const KINDS: [&str; 8] =
    ["budget", "expires-soon", "pool-empty", "pool-low", "admin-key-refused", "retirement-stuck", "poller-silent", "unknown-model"];

/// The operator's alert settings (part of the issuer's `Settings`; MessagePack is positional: new
/// fields go last with a serde default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettings {
    /// Budget thresholds in percent, ascending, each 1 to 100.
    pub budget_percents: Vec<u32>,
    /// Raise [`Condition::PoolLow`] when fewer keys than this are eligible; 0 turns it off.
    pub pool_low_below: u32,
    /// Where alerts are posted (Slack/Discord incoming webhook); None = dashboard only.
    pub webhook_url: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings { budget_percents: DEFAULT_BUDGET_PERCENTS.to_vec(), pool_low_below: 0, webhook_url: None }
    }
}

/// The alert settings as the dashboard sees them: the webhook URL is a credential of the channel
/// (anyone holding it can post there), so only its scheme and host are shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettingsView {
    pub budget_percents: Vec<u32>,
    pub pool_low_below: u32,
    pub webhook_set: bool,
    /// `https://hooks.slack.com/…`
    pub webhook_hint: Option<String>,
}

impl AlertSettingsView {
    pub fn of(settings: &AlertSettings) -> AlertSettingsView {
        AlertSettingsView {
            budget_percents: settings.budget_percents.clone(),
            pool_low_below: settings.pool_low_below,
            webhook_set: settings.webhook_url.is_some(),
            webhook_hint: settings.webhook_url.as_deref().map(webhook_hint),
        }
    }
}

/// Scheme and host of a webhook URL, the rest elided.
pub fn webhook_hint(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "…".to_string(),
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AlertSettingsError {
    #[error("expected an object with budget_percents, pool_low_below and/or webhook_url")]
    NotAnObject,
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("budget_percents: expected 1 to 10 distinct whole percentages from 1 to 100")]
    BadPercents,
    #[error("pool_low_below: expected a whole number from 0 to 1000")]
    BadPoolLow,
    #[error("webhook_url: {0}")]
    BadWebhook(#[from] WebhookUrlError),
}

/// Applies `{"budget_percents"?, "pool_low_below"?, "webhook_url"?}` (null or "" clears the URL).
pub fn apply_alert_settings_update(current: &AlertSettings, body: &serde_json::Value) -> Result<AlertSettings, AlertSettingsError> {
    let obj = body.as_object().ok_or(AlertSettingsError::NotAnObject)?;
    if let Some(unknown) = obj.keys().find(|k| !["budget_percents", "pool_low_below", "webhook_url"].contains(&k.as_str())) {
        return Err(AlertSettingsError::UnknownField(crate::admin_api::redact(unknown)));
    }
    let mut next = current.clone();
    if let Some(v) = obj.get("budget_percents") {
        next.budget_percents = parse_percents(v)?;
    }
    if let Some(v) = obj.get("pool_low_below") {
        next.pool_low_below = v.as_u64().filter(|n| *n <= 1000).ok_or(AlertSettingsError::BadPoolLow)? as u32;
    }
    match obj.get("webhook_url") {
        None => {}
        Some(serde_json::Value::Null) => next.webhook_url = None,
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => next.webhook_url = None,
        Some(serde_json::Value::String(s)) => next.webhook_url = Some(WebhookUrl::parse(s)?.0),
        Some(_) => return Err(WebhookUrlError::NotText.into()),
    }
    Ok(next)
}

fn parse_percents(v: &serde_json::Value) -> Result<Vec<u32>, AlertSettingsError> {
    let list = v.as_array().ok_or(AlertSettingsError::BadPercents)?;
    let mut percents = list
        .iter()
        .map(|p| p.as_u64().filter(|n| (1..=100).contains(n)).map(|n| n as u32).ok_or(AlertSettingsError::BadPercents))
        .collect::<Result<Vec<_>, _>>()?;
    percents.sort_unstable();
    percents.dedup();
    if percents.is_empty() || percents.len() != list.len() || percents.len() > 10 {
        return Err(AlertSettingsError::BadPercents);
    }
    Ok(percents)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookUrlError {
    #[error("expected the URL as a string")]
    NotText,
    #[error("not a URL")]
    NotAUrl,
    #[error("must be https (plain http only for a server on this machine)")]
    NotHttps,
    #[error("must have a host")]
    NoHost,
    #[error("must not carry credentials before the host")]
    Credentials,
    #[error("at most 2000 characters")]
    TooLong,
}

/// A webhook URL the issuer may post to: https, or http to a server on this machine (the same
/// rule as the Admin API base URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(pub String);

impl WebhookUrl {
    pub fn parse(s: &str) -> Result<WebhookUrl, WebhookUrlError> {
        let s = s.trim();
        if s.len() > 2000 {
            return Err(WebhookUrlError::TooLong);
        }
        let url = url::Url::parse(s).map_err(|_| WebhookUrlError::NotAUrl)?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(WebhookUrlError::NoHost),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(WebhookUrlError::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Credentials);
        }
        Ok(WebhookUrl(url.to_string()))
    }
}

/// What alerts are evaluated from: the pool, the poller's last status, the models priced by the
/// fallback rate, the settings, and the time.
pub struct Snapshot<'a> {
    pub now: Timestamp,
    pub pool: &'a KeyPool,
    pub poller: &'a PollerStatus,
    pub poll_interval_secs: u64,
    pub unknown_models: &'a [String],
    pub settings: &'a AlertSettings,
}

/// Every condition that holds in `s`, with the message to raise it with.
pub fn holding(s: &Snapshot) -> BTreeMap<Condition, String> {
    let mut out = BTreeMap::new();
    for record in s.pool.keys() {
        budget_conditions(record, s, &mut out);
        if let Some(message) = expires_soon(record, s.now) {
            out.insert(Condition::ExpiresSoon { key: record.id }, message);
        }
        if let Some(message) = retirement_stuck(record, s.now) {
            out.insert(Condition::RetirementStuck { key: record.id }, message);
        }
    }
    pool_conditions(s, &mut out);
    // A key not set yet is the setup, not a refusal: Settings and Status say so already.
    if let Some(error) = s.poller.last_error.as_ref().filter(|e| e.needs_operator && s.poller.admin_key_set) {
        out.insert(Condition::AdminKeyRefused, format!("polling is stopped until the operator acts: {}", error.message));
    }
    if let Some(message) = poller_silent(s) {
        out.insert(Condition::PollerSilent, message);
    }
    for model in s.unknown_models {
        out.insert(
            Condition::UnknownModel { model: model.clone() },
            format!("usage of model {model} is priced at the highest known rates: set its price in Settings"),
        );
    }
    out
}

fn key_label(record: &KeyRecord) -> String {
    format!("key {} \"{}\"", record.id, record.name)
}

/// Budget thresholds hold for an active key, and for a day after a key retired for its budget.
fn budget_conditions(record: &KeyRecord, s: &Snapshot, out: &mut BTreeMap<Condition, String>) {
    let watched = match &record.retirement {
        None => !record.removed,
        Some(r) => r.reason == RetireReason::Budget && !record.removed && (s.now - r.at).num_seconds() < RETIRED_KEY_ALERT_SECS,
    };
    if !watched || record.budget.0 <= 0 {
        return;
    }
    let spent = i128::from(record.spent.0);
    for &percent in &s.settings.budget_percents {
        if spent * 100 >= i128::from(record.budget.0) * i128::from(percent) {
            let retired = if record.retirement.is_some() { "; the key is retired" } else { "" };
            out.insert(
                Condition::Budget { key: record.id, percent },
                format!(
                    "{} has spent {percent}% of its budget (USD {} of USD {}){retired}",
                    key_label(record),
                    record.spent.format_usd(),
                    record.budget.format_usd()
                ),
            );
        }
    }
}

fn expires_soon(record: &KeyRecord, now: Timestamp) -> Option<String> {
    let left = (record.expires_at - now).num_seconds();
    (record.is_active() && left > 0 && left <= EXPIRY_WARNING_SECS)
        .then(|| format!("{} expires within 24 h (at {})", key_label(record), rfc3339(record.expires_at)))
}

fn retirement_stuck(record: &KeyRecord, now: Timestamp) -> Option<String> {
    let retirement = record.retirement.as_ref()?;
    if (now - retirement.at).num_seconds() < RETIREMENT_STUCK_SECS {
        return None;
    }
    let why = match (&retirement.remote, &retirement.last_error) {
        (RemoteRetirement::Pending, Some(e)) => format!("last error: {}", e.message),
        (RemoteRetirement::Pending, None) => "the cost-poller has not set it yet".to_string(),
        (RemoteRetirement::AwaitingMatch | RemoteRetirement::NotNeeded, _) => {
            "the key is not matched to its Admin API id: match it by hand".to_string()
        }
        (RemoteRetirement::Confirmed { .. }, _) => return None,
    };
    Some(format!(
        "{} was retired ({}) at {} and its Admin API status is still not set after 1 h: {why}",
        key_label(record),
        retirement.reason,
        rfc3339(retirement.at)
    ))
}

/// Pool alerts start once the pool holds a key whose first look-up in the organization is over:
/// an empty pool, or one whose only keys are still being looked up, is being set up, and "no key
/// left" would be noise. A key being looked up is not eligible yet (it is not issued).
fn pool_conditions(s: &Snapshot, out: &mut BTreeMap<Condition, String>) {
    if !s.pool.keys().any(|r| !r.first_match_pending) {
        return;
    }
    let eligible = s.pool.eligible_keys(s.now).len();
    let below = s.settings.pool_low_below as usize;
    if eligible == 0 {
        out.insert(
            Condition::PoolEmpty,
            "no eligible key left: nodes asking for a key are answered \"no keys available\"; add a key".to_string(),
        );
    } else if eligible < below {
        out.insert(Condition::PoolLow, format!("only {eligible} eligible key(s) left (the alert is set below {below})"));
    }
}

fn poller_silent(s: &Snapshot) -> Option<String> {
    let last = s.poller.last_poll_started?;
    let limit = (s.poll_interval_secs as i64).saturating_mul(POLLER_SILENT_INTERVALS);
    ((s.now - last).num_seconds() > limit).then(|| {
        format!("the cost-poller has not polled since {} (more than two poll intervals): spend is not being updated", rfc3339(last))
    })
}

/// An open alert: raised at `raised_at` with `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAlert {
    pub message: String,
    pub raised_at: Timestamp,
}

/// A change of one alert's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Raised { condition: Condition, message: String, at: Timestamp },
    /// `message` is the one it was raised with.
    Cleared { condition: Condition, message: String, raised_at: Timestamp, at: Timestamp },
}

impl Transition {
    pub fn condition(&self) -> &Condition {
        match self {
            Transition::Raised { condition, .. } | Transition::Cleared { condition, .. } => condition,
        }
    }
}

/// The open alerts: every condition not in here is clear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertBook {
    open: BTreeMap<Condition, OpenAlert>,
}

impl AlertBook {
    /// The book as storage left it (the alerts never cleared).
    pub fn restore(open: impl IntoIterator<Item = (Condition, OpenAlert)>) -> AlertBook {
        AlertBook { open: open.into_iter().collect() }
    }

    /// Raises what newly holds and clears what no longer holds; returns those transitions
    /// (clears first, then raises, each in condition order).
    pub fn apply(&mut self, holding: BTreeMap<Condition, String>, at: Timestamp) -> Vec<Transition> {
        let ended: Vec<Condition> = self.open.keys().filter(|c| !holding.contains_key(c)).cloned().collect();
        let mut transitions = Vec::new();
        for condition in ended {
            let open = self.open.remove(&condition).expect("listed above");
            transitions.push(Transition::Cleared { condition, message: open.message, raised_at: open.raised_at, at });
        }
        for (condition, message) in holding {
            if !self.open.contains_key(&condition) {
                self.open.insert(condition.clone(), OpenAlert { message: message.clone(), raised_at: at });
                transitions.push(Transition::Raised { condition, message, at });
            }
        }
        transitions
    }

    pub fn open(&self) -> impl Iterator<Item = (&Condition, &OpenAlert)> {
        self.open.iter()
    }

    pub fn is_open(&self, condition: &Condition) -> bool {
        self.open.contains_key(condition)
    }
}

/// The JSON a Slack and a Discord incoming webhook both accept: Slack reads `text`, Discord
/// `content`. Anything key-shaped is masked, whatever the text's source.
pub fn webhook_body(text: &str) -> serde_json::Value {
    let masked = crate::admin_api::mask_key_shaped(text);
    let text: String = if masked.chars().count() > WEBHOOK_TEXT_MAX_CHARS {
        masked.chars().take(WEBHOOK_TEXT_MAX_CHARS).collect::<String>() + "…"
    } else {
        masked
    };
    serde_json::json!({ "text": text, "content": text })
}

/// The text posted for a transition, naming the node the app runs on.
pub fn webhook_text(node: &str, transition: &Transition) -> String {
    match transition {
        Transition::Raised { condition, message, .. } => {
            let mark = if condition.severity() == Severity::Critical { "🔴" } else { "🟠" };
            format!("{mark} [alert] {message} — API key manager on {node}")
        }
        Transition::Cleared { message, .. } => format!("✅ [resolved] {message} — API key manager on {node}"),
    }
}

/// The text of the "send test alert" button.
pub fn test_webhook_text(node: &str) -> String {
    format!("🧪 [test] this is a test alert from the API key manager on {node}: alerts reach this channel")
}

/// What to do after one webhook attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStep {
    Delivered,
    /// 429, 5xx, or no answer: try again after the backoff.
    Retry,
    /// Any other refusal: retrying will not help (a wrong URL, a removed webhook).
    GiveUp,
}

/// `status` is None when there was no answer.
pub fn delivery_step(status: Option<u16>) -> DeliveryStep {
    match status {
        Some(200..=299) => DeliveryStep::Delivered,
        None | Some(429) | Some(500..=599) => DeliveryStep::Retry,
        Some(_) => DeliveryStep::GiveUp,
    }
}

/// Attempts per webhook delivery.
pub const WEBHOOK_ATTEMPTS: u32 = 5;

/// Seconds to wait before attempt `attempt + 1`: 1, 2, 4, 8.
pub fn webhook_backoff_secs(attempt: u32) -> u64 {
    1u64 << attempt.min(6)
}

/// One alert as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    /// `budget:k3:80`, ...
    pub alert: String,
    pub kind: String,
    pub key: Option<KeyId>,
    pub severity: Severity,
    pub message: String,
    pub raised_at: String,
    /// None while open.
    pub cleared_at: Option<String>,
}

impl AlertView {
    pub fn open(condition: &Condition, alert: &OpenAlert) -> AlertView {
        AlertView::of(condition, &alert.message, alert.raised_at, None)
    }

    pub fn of(condition: &Condition, message: &str, raised_at: Timestamp, cleared_at: Option<Timestamp>) -> AlertView {
        AlertView {
            alert: condition.id(),
            kind: condition.kind().to_string(),
            key: condition.key(),
            severity: condition.severity(),
            message: crate::admin_api::mask_key_shaped(message),
            raised_at: rfc3339(raised_at),
            cleared_at: cleared_at.map(rfc3339),
        }
    }
}

/// `ListAlerts` argument: a page of the history, newest first, filtered by kind and state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// One of [`KINDS`]; None = all.
    #[serde(default)]
    pub kind: Option<String>,
    /// `open` or `cleared`; None = both.
    #[serde(default)]
    pub state: Option<String>,
    /// Rows older than this history id (paging backwards).
    #[serde(default)]
    pub before_id: Option<i64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AlertQueryError {
    #[error("kind: expected one of {}", KINDS.join(", "))]
    UnknownKind,
    #[error("state: expected \"open\" or \"cleared\"")]
    UnknownState,
}

impl AlertQuery {
    pub fn validate(&self) -> Result<(), AlertQueryError> {
        if self.kind.as_deref().is_some_and(|k| !KINDS.contains(&k)) {
            return Err(AlertQueryError::UnknownKind);
        }
        if self.state.as_deref().is_some_and(|s| s != "open" && s != "cleared") {
            return Err(AlertQueryError::UnknownState);
        }
        Ok(())
    }
}

/// One history row with its storage id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEntry {
    pub id: i64,
    #[serde(flatten)]
    pub alert: AlertView,
}

/// How the last webhook delivery went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub at: String,
    pub delivered: bool,
    /// `delivered`, or why not (never the URL).
    pub outcome: String,
    pub attempts: u32,
}

/// `ListAlerts` answer: the open alerts (for the banner), a page of history, and the webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsPage {
    pub open: Vec<AlertView>,
    pub history: Vec<AlertEntry>,
    pub next_before_id: Option<i64>,
    pub webhook_set: bool,
    pub webhook_hint: Option<String>,
    pub last_delivery: Option<WebhookDelivery>,
    /// Deliveries waiting their turn.
    pub deliveries_queued: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::NewKey;
    use crate::{ApiKeySecret, MicroUsd};

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn pool_with_key(budget_usd: i64, lifetime_secs: u64) -> (KeyPool, KeyId) {
        let mut pool = KeyPool::new();
        pool.set_issue_unmatched(true);
        let secret = ApiKeySecret::parse("sk-ant-api03-TEST001abcdefghijklmnopqrstuvwxyz001Z").unwrap();
        let key = pool
            .add_key(NewKey { secret, name: "trial".into(), lifetime_secs, budget: MicroUsd::from_usd(budget_usd), node_cap: None }, t(0))
            .unwrap();
        pool.end_first_match(key);
        (pool, key)
    }

    fn eval(pool: &KeyPool, poller: &PollerStatus, settings: &AlertSettings, models: &[String], now: Timestamp) -> BTreeMap<Condition, String> {
        holding(&Snapshot { now, pool, poller, poll_interval_secs: 3600, unknown_models: models, settings })
    }

    #[test]
    fn ids_round_trip() {
        let all = [
            Condition::Budget { key: KeyId(3), percent: 80 },
            Condition::ExpiresSoon { key: KeyId(12) },
            Condition::PoolEmpty,
            Condition::PoolLow,
            Condition::AdminKeyRefused,
            Condition::RetirementStuck { key: KeyId(1) },
            Condition::PollerSilent,
            Condition::UnknownModel { model: "claude-x:1".into() },
        ];
        for c in all {
            assert_eq!(Condition::parse_id(&c.id()), Ok(c.clone()), "{c}");
            assert!(KINDS.contains(&c.kind()));
        }
        assert!(Condition::parse_id("budget:k3").is_err());
        assert!(Condition::parse_id("nope").is_err());
        assert!(Condition::parse_id("unknown-model:").is_err());
    }

    #[test]
    fn budget_thresholds_raise_once_and_clear_when_spend_falls() {
        let (mut pool, key) = pool_with_key(10, 30 * 86_400);
        let (poller, settings) = (PollerStatus::default(), AlertSettings::default());
        let mut book = AlertBook::default();
        pool.set_spent(key, MicroUsd::from_usd(4));
        assert!(book.apply(eval(&pool, &poller, &settings, &[], t(10)), t(10)).is_empty());
        pool.set_spent(key, MicroUsd(8_500_000));
        let raised = book.apply(eval(&pool, &poller, &settings, &[], t(20)), t(20));
        let ids: Vec<String> = raised.iter().map(|r| r.condition().id()).collect();
        assert_eq!(ids, ["budget:k1:50", "budget:k1:80"]);
        assert!(book.apply(eval(&pool, &poller, &settings, &[], t(30)), t(30)).is_empty(), "evaluated again: nothing new");
        // A cheaper price table brings spend below 80 %: that alert clears, 50 % stays.
        pool.set_spent(key, MicroUsd::from_usd(6));
        let cleared = book.apply(eval(&pool, &poller, &settings, &[], t(40)), t(40));
        assert!(matches!(&cleared[..], [Transition::Cleared { condition: Condition::Budget { percent: 80, .. }, raised_at, .. }] if *raised_at == t(20)));
        assert!(book.is_open(&Condition::Budget { key, percent: 50 }));
    }

    #[test]
    fn a_key_retired_for_its_budget_keeps_its_alerts_a_day() {
        let (mut pool, key) = pool_with_key(10, 30 * 86_400);
        let (poller, settings) = (PollerStatus::default(), AlertSettings::default());
        pool.set_spent(key, MicroUsd::from_usd(10));
        pool.sweep(t(5));
        let now = eval(&pool, &poller, &settings, &[], t(6));
        assert!(now.contains_key(&Condition::Budget { key, percent: 100 }));
        assert_eq!(now[&Condition::Budget { key, percent: 100 }], "key k1 \"trial\" has spent 100% of its budget (USD 10.000000 of USD 10.000000); the key is retired");
        let later = eval(&pool, &poller, &settings, &[], t(5 + RETIRED_KEY_ALERT_SECS));
        assert!(!later.keys().any(|c| matches!(c, Condition::Budget { .. })));
    }

    #[test]
    fn expiry_pool_retirement_poller_and_models() {
        let (mut pool, key) = pool_with_key(10, 2 * 86_400);
        let mut poller = PollerStatus { last_poll_started: Some(t(0)), ..Default::default() };
        let settings = AlertSettings { pool_low_below: 2, ..Default::default() };
        let at = |s| eval(&pool, &poller, &settings, &[], t(s));
        assert!(!at(86_400 - 1).contains_key(&Condition::ExpiresSoon { key }));
        assert!(at(86_400).contains_key(&Condition::ExpiresSoon { key }));
        assert!(at(86_400).contains_key(&Condition::PoolLow), "one eligible key, alert below 2");
        assert!(at(7_200).contains_key(&Condition::PoolLow));
        assert!(!at(7_200).contains_key(&Condition::PollerSilent));
        assert!(at(7_201).contains_key(&Condition::PollerSilent));
        poller.last_error = Some(crate::messages::PollError { at: t(0), message: "refused (401)".into(), needs_operator: true });
        assert!(!eval(&pool, &poller, &settings, &[], t(1)).contains_key(&Condition::AdminKeyRefused), "no admin key set yet");
        poller.admin_key_set = true;
        assert!(eval(&pool, &poller, &settings, &[], t(1)).contains_key(&Condition::AdminKeyRefused));
        pool.retire(key, RetireReason::Operator, t(100)).unwrap();
        let after = eval(&pool, &poller, &settings, &[], t(100));
        assert!(after.contains_key(&Condition::PoolEmpty) && !after.contains_key(&Condition::PoolLow));
        assert!(!after.contains_key(&Condition::ExpiresSoon { key }), "a retired key does not expire soon");
        assert!(!after.contains_key(&Condition::RetirementStuck { key }));
        assert!(eval(&pool, &poller, &settings, &[], t(100 + 3600)).contains_key(&Condition::RetirementStuck { key }));
        let models = ["claude-opus-9".to_string()];
        assert!(eval(&pool, &poller, &settings, &models, t(1)).contains_key(&Condition::UnknownModel { model: models[0].clone() }));
    }

    #[test]
    fn no_pool_alert_without_keys_or_while_a_key_is_being_looked_up() {
        let pool = KeyPool::new();
        let (poller, settings) = (PollerStatus::default(), AlertSettings::default());
        assert!(eval(&pool, &poller, &settings, &[], t(0)).is_empty());
        let mut pool = KeyPool::new();
        let secret = ApiKeySecret::parse("sk-ant-api03-TEST002abcdefghijklmnopqrstuvwxyz002Z").unwrap();
        let key = pool.add_key(NewKey { secret, name: "x".into(), lifetime_secs: 86_400 * 9, budget: MicroUsd::from_usd(1), node_cap: None }, t(0)).unwrap();
        assert!(!eval(&pool, &poller, &settings, &[], t(1)).contains_key(&Condition::PoolEmpty));
        pool.end_first_match(key);
        assert!(eval(&pool, &poller, &settings, &[], t(1)).contains_key(&Condition::PoolEmpty), "unmatched keys are not issued");
    }

    #[test]
    fn settings_updates_are_checked() {
        let current = AlertSettings::default();
        let next = apply_alert_settings_update(&current, &serde_json::json!({"budget_percents": [90, 25], "pool_low_below": 3, "webhook_url": "https://hooks.slack.com/services/T/B/x"})).unwrap();
        assert_eq!(next.budget_percents, [25, 90]);
        assert_eq!(next.pool_low_below, 3);
        assert_eq!(AlertSettingsView::of(&next).webhook_hint.as_deref(), Some("https://hooks.slack.com/…"));
        let cleared = apply_alert_settings_update(&next, &serde_json::json!({"webhook_url": null})).unwrap();
        assert_eq!(cleared.webhook_url, None);
        for bad in [
            serde_json::json!({"budget_percents": [0]}),
            serde_json::json!({"budget_percents": [50, 50]}),
            serde_json::json!({"budget_percents": []}),
            serde_json::json!({"webhook_url": "http://example.com/hook"}),
            serde_json::json!({"webhook_url": "https://user:pw@example.com/hook"}),
            serde_json::json!({"webhook_url": 3}),
            serde_json::json!({"colour": "red"}),
            serde_json::json!([]),
        ] {
            assert!(apply_alert_settings_update(&current, &bad).is_err(), "{bad}");
        }
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hook").is_ok());
        assert!(WebhookUrl::parse("http://localhost/hook").is_ok());
        assert!(WebhookUrl::parse("https://discord.com/api/webhooks/1/abc?wait=true").is_ok());
    }

    #[test]
    fn webhook_bodies_suit_slack_and_discord_and_hold_no_secret() {
        let body = webhook_body("key \"sk-ant-api03-TESTabcdefghijk\" is low");
        assert_eq!(body["text"], body["content"]);
        assert_eq!(body["text"], "key \"sk-ant-[redacted]\" is low");
        assert_eq!(body.as_object().unwrap().len(), 2);
        let long = webhook_body(&"x".repeat(5000));
        assert!(long["content"].as_str().unwrap().chars().count() <= 2000);
    }

    #[test]
    fn delivery_steps_and_backoff() {
        assert_eq!(delivery_step(Some(204)), DeliveryStep::Delivered);
        assert_eq!(delivery_step(Some(500)), DeliveryStep::Retry);
        assert_eq!(delivery_step(Some(429)), DeliveryStep::Retry);
        assert_eq!(delivery_step(None), DeliveryStep::Retry);
        assert_eq!(delivery_step(Some(404)), DeliveryStep::GiveUp);
        assert_eq!((0..4).map(webhook_backoff_secs).collect::<Vec<_>>(), [1, 2, 4, 8]);
    }

    #[test]
    fn queries_are_checked() {
        assert!(AlertQuery { kind: Some("budget".into()), state: Some("open".into()), ..Default::default() }.validate().is_ok());
        assert_eq!(AlertQuery { kind: Some("x".into()), ..Default::default() }.validate(), Err(AlertQueryError::UnknownKind));
        assert_eq!(AlertQuery { state: Some("x".into()), ..Default::default() }.validate(), Err(AlertQueryError::UnknownState));
    }
}
