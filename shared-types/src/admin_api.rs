//! Anthropic Admin API: wire types, lenient parsing, URL building and answer classification
//! (docs/anthropic-admin-api.md). No I/O: the cost-poller sends what this builds.
//!
//! Parsing is lenient (unknown fields ignored, optional fields tolerated) and never panics;
//! malformed input is an [`AdminApiError::Malformed`] naming the endpoint. Errors never echo a key.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::cost::{ModelUsage, TokenCounts};
use crate::pool::Resolution;
use crate::secret::KeyHint;
use crate::{MicroUsd, Timestamp};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const ANALYTICS_BETA: &str = "analytics-usage-cost-2026-08-24";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AdminApiError {
    #[error("invalid Admin API base URL: {0}")]
    InvalidBaseUrl(String),
    #[error("invalid Admin API id {0:?}")]
    InvalidId(String),
    #[error("malformed answer from {endpoint}: {detail}")]
    Malformed { endpoint: &'static str, detail: String },
}

/// Replaces anything shaped like an Anthropic key (`sk-ant-...`): the one masking every text
/// that may quote input goes through (errors, audit details, alert messages).
pub fn mask_key_shaped(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find("sk-ant-") {
        out.push_str(&rest[..pos]);
        out.push_str("sk-ant-[redacted]");
        let tail = &rest[pos + "sk-ant-".len()..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks anything shaped like an Anthropic key and truncates, for text put in errors.
pub fn redact(text: &str) -> String {
    let mut out = mask_key_shaped(text);
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "…";
    }
    out
}

fn malformed(endpoint: &'static str, e: impl std::fmt::Display) -> AdminApiError {
    AdminApiError::Malformed { endpoint, detail: redact(&e.to_string()) }
}

/// The Admin API base URL (a setting; tests point it at a local server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminApiBase(url::Url);

fn check_id(id: &str) -> Result<&str, AdminApiError> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(id)
    } else {
        Err(AdminApiError::InvalidId(redact(id)))
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl AdminApiBase {
    pub fn parse(s: &str) -> Result<AdminApiBase, AdminApiError> {
        let bad = |why: &str| AdminApiError::InvalidBaseUrl(format!("{}: {why}", redact(s)));
        let url = url::Url::parse(s.trim()).map_err(|e| bad(&e.to_string()))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(bad("has no host")),
        };
        // The admin key travels in every request: only over TLS, but for a server on this machine.
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(bad("must be https (plain http only for a server on this machine)")),
            _ => return Err(bad("must be https")),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        Ok(AdminApiBase(url))
    }

    fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.0.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    pub fn list_api_keys(&self, after_id: Option<&str>, limit: u32) -> Result<url::Url, AdminApiError> {
        let mut url = self.endpoint("/v1/organizations/api_keys");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &limit.clamp(1, 1000).to_string());
            if let Some(after) = after_id {
                q.append_pair("after_id", check_id(after)?);
            }
        }
        Ok(url)
    }

    pub fn get_api_key(&self, id: &str) -> Result<url::Url, AdminApiError> {
        Ok(self.endpoint(&format!("/v1/organizations/api_keys/{}", check_id(id)?)))
    }

    pub fn update_api_key(&self, id: &str) -> Result<url::Url, AdminApiError> {
        self.get_api_key(id)
    }

    pub fn list_workspaces(&self, after_id: Option<&str>, include_archived: bool) -> Result<url::Url, AdminApiError> {
        let mut url = self.endpoint("/v1/organizations/workspaces");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", "100");
            q.append_pair("include_archived", if include_archived { "true" } else { "false" });
            if let Some(after) = after_id {
                q.append_pair("after_id", check_id(after)?);
            }
        }
        Ok(url)
    }

    pub fn create_workspace(&self) -> url::Url {
        self.endpoint("/v1/organizations/workspaces")
    }

    pub fn get_workspace(&self, id: &str) -> Result<url::Url, AdminApiError> {
        Ok(self.endpoint(&format!("/v1/organizations/workspaces/{}", check_id(id)?)))
    }

    pub fn archive_workspace(&self, id: &str) -> Result<url::Url, AdminApiError> {
        Ok(self.endpoint(&format!("/v1/organizations/workspaces/{}/archive", check_id(id)?)))
    }

    fn report(&self, path: &str, params: &[(&str, String)], page: Option<&str>) -> url::Url {
        let mut url = self.endpoint(path);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(page) = page {
                q.append_pair("page", page);
            }
        }
        url
    }

    /// Hourly usage grouped by key, model, service tier and context window (each priced at its
    /// own rate).
    pub fn usage_report(&self, starting_at: Timestamp, ending_at: Timestamp, page: Option<&str>) -> Result<url::Url, AdminApiError> {
        self.usage_report_of(None, starting_at, ending_at, page)
    }

    /// [`AdminApiBase::usage_report`], limited to one key when `api_key_id` is given (the usage of
    /// a key matched late, fetched from when it was added).
    pub fn usage_report_of(
        &self,
        api_key_id: Option<&str>,
        starting_at: Timestamp,
        ending_at: Timestamp,
        page: Option<&str>,
    ) -> Result<url::Url, AdminApiError> {
        let mut params = vec![
            ("starting_at", rfc3339(starting_at)),
            ("ending_at", rfc3339(ending_at)),
            ("bucket_width", "1h".into()),
            ("limit", "168".into()),
            ("group_by[]", "api_key_id".into()),
            ("group_by[]", "model".into()),
            ("group_by[]", "service_tier".into()),
            ("group_by[]", "context_window".into()),
        ];
        if let Some(id) = api_key_id {
            params.push(("api_key_ids[]", check_id(id)?.to_string()));
        }
        Ok(self.report("/v1/organizations/usage_report/messages", &params, page))
    }

    /// Daily cost per API key from the beta analytics endpoint (send with the `ANALYTICS_BETA`
    /// header). `starting_at` is moved into the window the endpoint accepts (see
    /// [`ANALYTICS_EARLIEST`]), relative to `now`.
    pub fn analytics_cost(&self, starting_at: Timestamp, ending_at: Timestamp, now: Timestamp, page: Option<&str>) -> url::Url {
        let earliest = chrono::DateTime::from_timestamp(ANALYTICS_EARLIEST, 0).unwrap_or(starting_at);
        let lookback = now - chrono::TimeDelta::days(ANALYTICS_MAX_LOOKBACK_DAYS - 1);
        let from = starting_at.max(earliest).max(lookback);
        self.report(
            "/v1/organizations/analytics/cost",
            &[
                ("starting_at", rfc3339(from)),
                ("ending_at", rfc3339(ending_at.max(from))),
                ("time_bucket_width", "1d".into()),
                ("limit", "31".into()),
                ("group_by[]", "api_key_id".into()),
            ],
            page,
        )
    }

    /// Daily cost grouped by workspace and description.
    pub fn cost_report(&self, starting_at: Timestamp, ending_at: Timestamp, page: Option<&str>) -> Result<url::Url, AdminApiError> {
        Ok(self.report(
            "/v1/organizations/cost_report",
            &[
                ("starting_at", rfc3339(starting_at)),
                ("ending_at", rfc3339(ending_at)),
                ("bucket_width", "1d".into()),
                ("limit", "31".into()),
                ("group_by[]", "workspace_id".into()),
                ("group_by[]", "description".into()),
            ],
            page,
        ))
    }
}

/// The analytics API has no data before 2026-01-01T00:00:00Z and looks back at most 365 days.
pub const ANALYTICS_EARLIEST: i64 = 1_767_225_600;
pub const ANALYTICS_MAX_LOOKBACK_DAYS: i64 = 365;

/// Headers of every Admin API request. They carry the admin key: never log them.
pub fn request_headers(admin_key: &str, beta: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("x-api-key", admin_key.to_string()),
        ("anthropic-version", ANTHROPIC_VERSION.to_string()),
        ("content-type", "application/json".to_string()),
    ];
    if let Some(beta) = beta {
        headers.push(("anthropic-beta", beta.to_string()));
    }
    headers
}

/// An API key's status in the organization; serialised as the Admin API's own string, so it
/// round-trips between the processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeyStatus {
    Active,
    Inactive,
    Archived,
    Expired,
    Other(String),
}

impl<'de> Deserialize<'de> for ApiKeyStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(match s.as_str() {
            "active" => ApiKeyStatus::Active,
            "inactive" => ApiKeyStatus::Inactive,
            "archived" => ApiKeyStatus::Archived,
            "expired" => ApiKeyStatus::Expired,
            _ => ApiKeyStatus::Other(s),
        })
    }
}

impl Serialize for ApiKeyStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for ApiKeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiKeyStatus::Active => "active",
            ApiKeyStatus::Inactive => "inactive",
            ApiKeyStatus::Archived => "archived",
            ApiKeyStatus::Expired => "expired",
            ApiKeyStatus::Other(s) => s,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyObject {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: ApiKeyStatus,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub partial_key_hint: Option<String>,
    /// The key's own expiry, when the organization gives one as a string (other shapes ignored).
    #[serde(default, deserialize_with = "string_or_nothing")]
    pub expires_at: Option<String>,
}

fn string_or_nothing<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub first_id: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub archived_at: Option<String>,
    #[serde(default)]
    pub display_color: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportPage<R> {
    pub data: Vec<ReportBucket<R>>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub next_page: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBucket<R> {
    pub starting_at: Timestamp,
    pub ending_at: Timestamp,
    #[serde(default = "Vec::new")]
    pub results: Vec<R>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCreation {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: u64,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerToolUse {
    #[serde(default)]
    pub web_search_requests: u64,
}

/// One usage row. Token counts are unsigned: a negative count fails to parse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    #[serde(default)]
    pub uncached_input_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation: Option<CacheCreation>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub server_tool_use: Option<ServerToolUse>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub context_window: Option<String>,
}

impl UsageRow {
    pub fn tokens(&self) -> TokenCounts {
        let cache = self.cache_creation.clone().unwrap_or_default();
        TokenCounts {
            uncached_input: self.uncached_input_tokens,
            cache_write_5m: cache.ephemeral_5m_input_tokens,
            cache_write_1h: cache.ephemeral_1h_input_tokens,
            cache_read: self.cache_read_input_tokens,
            output: self.output_tokens,
            web_search_requests: self.server_tool_use.as_ref().map_or(0, |s| s.web_search_requests),
        }
    }
}

fn cents_amount<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MicroUsd, D::Error> {
    let s = String::deserialize(deserializer)?;
    MicroUsd::parse_cents(&s).map_err(serde::de::Error::custom)
}

/// One cost row: `amount` is a decimal string in cents, parsed exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    pub currency: String,
    #[serde(deserialize_with = "cents_amount")]
    pub amount: MicroUsd,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub cost_type: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub context_window: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpdateApiKeyBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreateWorkspaceBody {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiErrorBody {
    pub kind: String,
    pub message: String,
}

fn parse<T: serde::de::DeserializeOwned>(endpoint: &'static str, bytes: &[u8]) -> Result<T, AdminApiError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(endpoint, e))
}

/// A page of the organization's keys. A key object that does not parse (say, without a status)
/// is left out rather than failing the page: the keys it does not name are only reported as
/// absent, never retired, so leaving one out errs on the safe side. The count left out is returned.
pub fn parse_api_key_page(bytes: &[u8]) -> Result<(ListPage<ApiKeyObject>, usize), AdminApiError> {
    let page: ListPage<serde_json::Value> = parse("api_keys list", bytes)?;
    let total = page.data.len();
    let data: Vec<ApiKeyObject> = page.data.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
    let left_out = total - data.len();
    Ok((ListPage { data, has_more: page.has_more, first_id: page.first_id, last_id: page.last_id }, left_out))
}

pub fn parse_api_key(bytes: &[u8]) -> Result<ApiKeyObject, AdminApiError> {
    parse("api_keys", bytes)
}

pub fn parse_workspace_page(bytes: &[u8]) -> Result<ListPage<Workspace>, AdminApiError> {
    parse("workspaces list", bytes)
}

pub fn parse_workspace(bytes: &[u8]) -> Result<Workspace, AdminApiError> {
    parse("workspaces", bytes)
}

pub fn parse_usage_page(bytes: &[u8]) -> Result<ReportPage<UsageRow>, AdminApiError> {
    parse("usage_report/messages", bytes)
}

pub fn parse_cost_page(bytes: &[u8]) -> Result<ReportPage<CostRow>, AdminApiError> {
    let page: ReportPage<CostRow> = parse("cost_report", bytes)?;
    if let Some(row) = page.data.iter().flat_map(|b| &b.results).find(|r| r.currency != "USD") {
        return Err(malformed("cost_report", format!("currency {:?} is not USD", row.currency)));
    }
    Ok(page)
}

pub fn parse_error_body(bytes: &[u8]) -> Option<ApiErrorBody> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let error = value.get("error")?;
    Some(ApiErrorBody {
        kind: error.get("type")?.as_str()?.to_string(),
        message: redact(error.get("message").and_then(|m| m.as_str()).unwrap_or("")),
    })
}

/// What to do with an HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 429: wait this many seconds (capped at 300), then retry.
    RetryAfter(u64),
    /// 5xx/529: retry with exponential backoff.
    Backoff(String),
    /// 401/403: the operator must fix the admin key.
    AuthFailed(String),
    NotFound,
    BadRequest(String),
    Fatal(String),
}

const DEFAULT_RETRY_AFTER_SECS: u64 = 30;
const MAX_WAIT_SECS: u64 = 300;

pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> Outcome {
    let detail = || {
        parse_error_body(body)
            .map(|e| format!("{} ({status}): {}", e.kind, e.message))
            .unwrap_or_else(|| format!("HTTP {status}"))
    };
    match status {
        200..=299 => Outcome::Success,
        401 => Outcome::AuthFailed("the admin key was refused (401): set a valid admin key in Settings".to_string()),
        403 => Outcome::AuthFailed("the admin key lacks the rights for this call (403): use an admin key of an organization admin".to_string()),
        404 => Outcome::NotFound,
        429 => Outcome::RetryAfter(
            retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
                .min(MAX_WAIT_SECS),
        ),
        400 | 409 | 413 | 422 => Outcome::BadRequest(detail()),
        408 | 500..=599 => Outcome::Backoff(detail()),
        _ => Outcome::Fatal(detail()),
    }
}

/// Exponential backoff: 1, 2, 4, … seconds capped at 300, plus up to a second of jitter
/// (`jitter` in milliseconds, 0..1000, rounded into the seconds).
pub fn backoff_secs(attempt: u32, jitter_ms: u32) -> u64 {
    let base = 1u64.checked_shl(attempt.min(16)).unwrap_or(MAX_WAIT_SECS).min(MAX_WAIT_SECS);
    (base + u64::from(jitter_ms.min(999) >= 500)).min(MAX_WAIT_SECS)
}

/// Cursor of the next api_keys page, or None at the end.
pub fn next_list_cursor<T>(page: &ListPage<T>) -> Result<Option<String>, AdminApiError> {
    match (page.has_more, &page.last_id) {
        (false, _) => Ok(None),
        (true, Some(last)) => Ok(Some(last.clone())),
        (true, None) => Err(malformed("list", "has_more is true but last_id is missing")),
    }
}

/// Token of the next report page, or None at the end.
pub fn next_report_page<R>(page: &ReportPage<R>) -> Result<Option<String>, AdminApiError> {
    match (page.has_more, &page.next_page) {
        (false, _) => Ok(None),
        (true, Some(next)) if !next.is_empty() => Ok(Some(next.clone())),
        (true, _) => Err(malformed("report", "has_more is true but next_page is missing")),
    }
}

/// One analytics cost row (the field names are the ones this project assumes; unconfirmed in the
/// docs): `amount` is a decimal string in cents, parsed exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsCostRow {
    #[serde(default)]
    pub api_key_id: Option<String>,
    pub currency: String,
    #[serde(deserialize_with = "cents_amount")]
    pub amount: MicroUsd,
}

pub fn parse_analytics_cost_page(bytes: &[u8]) -> Result<ReportPage<AnalyticsCostRow>, AdminApiError> {
    let page: ReportPage<AnalyticsCostRow> = parse("analytics/cost", bytes)?;
    if let Some(row) = page.data.iter().flat_map(|b| &b.results).find(|r| r.currency != "USD") {
        return Err(malformed("analytics/cost", format!("currency {:?} is not USD", row.currency)));
    }
    Ok(page)
}

/// Analytics cost summed per (api key id, day); rows without a key id are left out.
pub fn analytics_cost_by_key(pages: &[ReportPage<AnalyticsCostRow>]) -> BTreeMap<(String, Timestamp), MicroUsd> {
    let mut sums: BTreeMap<(String, Timestamp), MicroUsd> = BTreeMap::new();
    for bucket in pages.iter().flat_map(|p| &p.data) {
        for row in &bucket.results {
            if let Some(key) = &row.api_key_id {
                *sums.entry((key.clone(), bucket.starting_at)).or_default() += row.amount;
            }
        }
    }
    sums
}

/// An empty group value is the same as none (the issuer stores both as an empty string).
fn non_empty(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// Usage summed per (api key id, bucket start), per (model, service tier, context window). Rows
/// without a key id (Console Workbench usage) are skipped and counted.
pub fn usage_by_key(pages: &[ReportPage<UsageRow>]) -> (BTreeMap<(String, Timestamp), Vec<ModelUsage>>, usize) {
    type Class = (String, Option<String>, Option<String>);
    let mut sums: BTreeMap<(String, Timestamp), BTreeMap<Class, TokenCounts>> = BTreeMap::new();
    let mut skipped = 0;
    for bucket in pages.iter().flat_map(|p| &p.data) {
        for row in &bucket.results {
            let Some(key) = &row.api_key_id else {
                skipped += 1;
                continue;
            };
            let model = row.model.clone().unwrap_or_else(|| "unknown".to_string());
            sums.entry((key.clone(), bucket.starting_at))
                .or_default()
                .entry((model, non_empty(&row.service_tier), non_empty(&row.context_window)))
                .or_default()
                .add(&row.tokens());
        }
    }
    let by_key = sums
        .into_iter()
        .map(|(k, classes)| {
            let usage = classes
                .into_iter()
                .map(|((model, service_tier, context_window), tokens)| ModelUsage { model, service_tier, context_window, tokens })
                .collect();
            (k, usage)
        })
        .collect();
    (by_key, skipped)
}

/// Cost summed per (workspace, day). `None` is the default workspace.
pub fn cost_by_workspace(pages: &[ReportPage<CostRow>]) -> BTreeMap<(Option<String>, Timestamp), MicroUsd> {
    let mut sums: BTreeMap<(Option<String>, Timestamp), MicroUsd> = BTreeMap::new();
    for bucket in pages.iter().flat_map(|p| &p.data) {
        for row in &bucket.results {
            *sums.entry((row.workspace_id.clone(), bucket.starting_at)).or_default() += row.amount;
        }
    }
    sums
}

/// "Test key": finds the key among the organization's keys by its hint and reports its status.
pub fn check_key(hint: &KeyHint, keys: &[ApiKeyObject]) -> crate::messages::KeyCheck {
    let resolution = resolve_hint(hint, keys);
    let (ok, message, status) = match &resolution {
        Resolution::Resolved { api_key_id, .. } => {
            let status = keys.iter().find(|k| &k.id == api_key_id).map(|k| k.status.to_string()).unwrap_or_default();
            if status == "active" {
                (true, format!("the key is active in the organization as {api_key_id}"), Some(status))
            } else {
                (false, format!("the Admin API has this key ({api_key_id}) as {status}: it will not work"), Some(status))
            }
        }
        Resolution::Unresolved { why } => (false, format!("not found in the organization: {why}"), None),
    };
    crate::messages::KeyCheck { ok, message, status, resolution }
}

/// Matches a key's hint against the organization's keys (all pages).
pub fn resolve_hint(hint: &KeyHint, keys: &[ApiKeyObject]) -> Resolution {
    let matches: Vec<&ApiKeyObject> = keys
        .iter()
        .filter(|k| k.partial_key_hint.as_deref().is_some_and(|h| hint.matches(h)))
        .collect();
    match matches.as_slice() {
        [one] => Resolution::Resolved { api_key_id: one.id.clone(), workspace_id: one.workspace_id.clone() },
        [] => Resolution::Unresolved { why: "no Admin API key matches the hint".to_string() },
        many => Resolution::Unresolved { why: format!("{} Admin API keys match the hint", many.len()) },
    }
}

#[cfg(test)]
mod check_key_tests {
    use super::*;

    fn key(id: &str, hint: &str, status: &str) -> ApiKeyObject {
        serde_json::from_value(serde_json::json!({"id": id, "status": status, "partial_key_hint": hint})).unwrap()
    }

    #[test]
    fn test_key_reports_found_active_inactive_or_missing() {
        let hint = KeyHint::parse("sk-ant-api03-TES...0001").unwrap();
        let active = check_key(&hint, &[key("apikey_1", "sk-ant-api03-TES...0001", "active")]);
        assert!(active.ok, "{active:?}");
        assert!(active.message.contains("apikey_1"));
        let inactive = check_key(&hint, &[key("apikey_1", "sk-ant-api03-TES...0001", "inactive")]);
        assert!(!inactive.ok);
        assert_eq!(inactive.status.as_deref(), Some("inactive"));
        let missing = check_key(&hint, &[key("apikey_2", "sk-ant-api03-TES...0002", "active")]);
        assert!(!missing.ok);
        assert!(matches!(missing.resolution, Resolution::Unresolved { .. }));
    }
}
