//! A scripted Anthropic Admin API (docs/fake-admin-api.md): the wire format of
//! docs/anthropic-admin-api.md for what the app uses, driven by a scenario file, with a clock
//! that can follow devnode's and faults injected from a control endpoint.
//!
//! Deliberately independent of the app's own types (no `shared-types`): it is the other side the
//! parser is tested against. It is meant to be at least as strict as the real API, so an app that
//! works against it does not rely on leniency the real one lacks.

mod analytics;
mod clock;
mod control;
mod faults;
mod keys;
mod money;
mod reports;
pub mod scenario;
mod usage;
mod workspaces;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

pub use clock::now;
pub use control::handle_control;
pub use faults::Fault;
pub use scenario::{Scenario, ScenarioKey};

pub const VERSION: &str = "2023-06-01";

/// What `/v1/organizations/analytics/...` answers, set by `POST /_control/analytics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalyticsMode {
    On,
    /// 403 permission_error, as for an organization without the beta.
    Forbidden,
    /// 404 not_found_error.
    NotFound,
}

/// A workspace as the organization holds it.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub display_color: String,
}

pub struct State {
    pub scenario: Scenario,
    /// The organization's keys now (the scenario's, changed by updates and control calls).
    pub keys: Vec<ScenarioKey>,
    pub workspaces: Vec<Workspace>,
    clock: clock::Clock,
    faults: VecDeque<Fault>,
    pub request_counts: BTreeMap<String, u64>,
    /// Every successful status update through the API: `{api_key_id, status, at}`.
    pub status_updates: Vec<Value>,
    /// Workspaces created and archived through the API: `{workspace_id, event, at, ...}`.
    pub workspace_events: Vec<Value>,
    analytics_mode: AnalyticsMode,
    /// Workspaces created through the API so far: the next one's id is derived from it.
    workspaces_created: u32,
}

pub type Shared = Arc<Mutex<State>>;

impl State {
    pub fn new(scenario: Scenario, clock_url: Option<String>) -> State {
        let mut state = State {
            keys: vec![],
            workspaces: vec![],
            scenario,
            clock: clock::Clock::new(clock_url),
            faults: VecDeque::new(),
            request_counts: BTreeMap::new(),
            status_updates: vec![],
            workspace_events: vec![],
            analytics_mode: AnalyticsMode::On,
            workspaces_created: 0,
        };
        state.reset_organization();
        state
    }

    /// Keys, workspaces and switches back to the scenario's.
    fn reset_organization(&mut self) {
        self.keys = self.scenario.keys.clone();
        self.workspaces = workspaces::from_scenario(&self.scenario);
        self.analytics_mode = AnalyticsMode::On;
        self.workspaces_created = 0;
    }
}

pub(crate) fn rfc(t: i64) -> String {
    Utc.timestamp_opt(t, 0).single().map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

pub(crate) fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp())
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
}

pub(crate) fn answer(status: u16, body: Value) -> Answer {
    Answer { status, headers: vec![("content-type".into(), "application/json".into())], body: serde_json::to_vec(&body).unwrap(), delay: None }
}

/// The Admin API's error body.
pub(crate) fn error(status: u16, kind: &str, message: &str) -> Answer {
    answer(status, json!({"type": "error", "error": {"type": kind, "message": message}}))
}

pub(crate) fn invalid(message: &str) -> Answer {
    error(400, "invalid_request_error", message)
}

pub(crate) fn not_found(message: &str) -> Answer {
    error(404, "not_found_error", message)
}

/// The query string's pairs, as decoded.
pub(crate) struct Query<'a>(pub &'a [(String, String)]);

impl<'a> Query<'a> {
    pub fn one(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter such as `group_by[]`.
    pub fn all(&self, name: &str) -> Vec<&'a str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A JSON request body that must be an object with only the `allowed` fields.
pub(crate) fn object_body(body: &[u8], allowed: &[&str]) -> Result<serde_json::Map<String, Value>, Answer> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else { return Err(invalid("the body must be a JSON object")) };
    if let Some(extra) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(&format!("{extra}: extra inputs are not permitted")));
    }
    Ok(fields)
}

/// Handles one Admin API request (`/v1/...`).
pub fn handle_api(state: &Shared, method: &str, path: &str, query: &[(String, String)], headers: &HashMap<String, String>, body: &[u8]) -> Answer {
    *state.lock().unwrap().request_counts.entry(path.to_string()).or_default() += 1;
    let fault = faults::take(state, method, path);
    if let Some(forced) = fault.as_ref().and_then(faults::forced_answer) {
        return forced;
    }
    let mut a = match check_headers(state, headers) {
        Err(refused) => refused,
        Ok(()) => route(state, method, path, &Query(query), headers, body),
    };
    a.delay = fault.and_then(|f| f.delay_ms).map(Duration::from_millis);
    a
}

fn check_headers(state: &Shared, headers: &HashMap<String, String>) -> Result<(), Answer> {
    let admin_key = state.lock().unwrap().scenario.admin_key.clone();
    if headers.get("x-api-key") != Some(&admin_key) {
        return Err(error(401, "authentication_error", "invalid x-api-key"));
    }
    if headers.get("anthropic-version").map(String::as_str) != Some(VERSION) {
        return Err(invalid("anthropic-version: 2023-06-01 header is required"));
    }
    Ok(())
}

fn route(state: &Shared, method: &str, path: &str, q: &Query, headers: &HashMap<String, String>, body: &[u8]) -> Answer {
    let now = now(state);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(rest) = segments.strip_prefix(&["v1", "organizations"]) else { return not_found(&format!("no endpoint {method} {path}")) };
    match (method, rest) {
        ("GET", ["api_keys"]) => keys::list(state, q, now),
        ("GET", ["api_keys", id]) => keys::get(state, id, now),
        ("POST", ["api_keys", id]) => keys::update(state, id, body, now),
        ("GET", ["usage_report", "messages"]) => reports::usage_report(state, q, now),
        ("GET", ["cost_report"]) => reports::cost_report(state, q, now),
        ("GET", ["workspaces"]) => workspaces::list(state, q),
        ("POST", ["workspaces"]) => workspaces::create(state, body, now),
        ("GET", ["workspaces", id]) => workspaces::get(state, id),
        ("POST", ["workspaces", id]) => workspaces::rename(state, id, body),
        ("POST", ["workspaces", id, "archive"]) => workspaces::archive(state, id, now),
        ("GET", ["analytics", "cost"]) => analytics::cost(state, q, headers, now),
        _ => not_found(&format!("no endpoint {method} {path}")),
    }
}

/// `limit`, `after_id`, `before_id` of a list endpoint (api_keys, workspaces).
pub(crate) struct ListParams {
    limit: usize,
    after_id: Option<String>,
    before_id: Option<String>,
}

pub(crate) fn list_params(q: &Query, page_size: Option<usize>) -> Result<ListParams, Answer> {
    let limit = match q.one("limit") {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(invalid("limit must be an integer from 1 to 1000")),
        },
    };
    let (after_id, before_id) = (q.one("after_id").map(str::to_string), q.one("before_id").map(str::to_string));
    if after_id.is_some() && before_id.is_some() {
        return Err(invalid("after_id and before_id cannot be used together"));
    }
    Ok(ListParams { limit: limit.min(page_size.unwrap_or(usize::MAX)), after_id, before_id })
}

/// One page of a list in its stored order: the items after `after_id` (or before `before_id`)
/// that `keep` accepts, and whether more lie beyond the page in that direction.
pub(crate) fn list_page<'a, T>(all: &'a [T], id_of: impl Fn(&T) -> &str, keep: impl Fn(&T) -> bool, p: &ListParams) -> Result<(Vec<&'a T>, bool), Answer> {
    let position = |id: &str, name: &str| all.iter().position(|t| id_of(t) == id).ok_or_else(|| invalid(&format!("unknown {name} {id}")));
    let (lo, hi) = match (&p.after_id, &p.before_id) {
        (Some(after), _) => (position(after, "after_id")? + 1, all.len()),
        (None, Some(before)) => (0, position(before, "before_id")?),
        (None, None) => (0, all.len()),
    };
    let candidates: Vec<&T> = all[lo..hi].iter().filter(|t| keep(t)).collect();
    let has_more = candidates.len() > p.limit;
    let page = if p.before_id.is_some() { candidates[candidates.len().saturating_sub(p.limit)..].to_vec() } else { candidates.into_iter().take(p.limit).collect() };
    Ok((page, has_more))
}

/// The list answer shape: `{data, has_more, first_id, last_id}`.
pub(crate) fn list_answer(data: Vec<Value>, has_more: bool) -> Answer {
    let (first_id, last_id) = (data.first().map(|v| v["id"].clone()), data.last().map(|v| v["id"].clone()));
    answer(200, json!({"data": data, "has_more": has_more, "first_id": first_id, "last_id": last_id}))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Calls the handlers directly, with the clock frozen so that every figure is exact.
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    use crate::{handle_api, handle_control, Scenario, Shared, State};

    pub const ADMIN_KEY: &str = "sk-ant-admin01-TESTadminkeyabcdefghijklmnop0001";
    pub const BETA: &str = "analytics-usage-cost-2026-08-24";

    pub fn scenario_text(name: &str) -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)).unwrap()
    }

    /// A state from scenario text, its clock frozen at `now`.
    pub fn state_at(text: &str, now: &str) -> Shared {
        let state: Shared = Arc::new(Mutex::new(State::new(Scenario::parse(text).unwrap(), None)));
        let (status, body) = control(&state, "POST", "/_control/clock", json!({"now": now, "frozen": true}));
        assert_eq!(status, 200, "{body}");
        state
    }

    pub fn small_state() -> Shared {
        state_at(&scenario_text("small.json"), "2026-03-01T10:30:00Z")
    }

    pub fn admin_headers() -> HashMap<String, String> {
        HashMap::from([("x-api-key".to_string(), ADMIN_KEY.to_string()), ("anthropic-version".to_string(), "2023-06-01".to_string())])
    }

    pub fn beta_headers() -> HashMap<String, String> {
        let mut h = admin_headers();
        h.insert("anthropic-beta".to_string(), BETA.to_string());
        h
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn json_of(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }

    pub fn get(state: &Shared, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        get_with(state, path, query, &admin_headers())
    }

    pub fn get_with(state: &Shared, path: &str, query: &[(&str, &str)], headers: &HashMap<String, String>) -> (u16, Value) {
        let a = handle_api(state, "GET", path, &pairs(query), headers, b"");
        (a.status, json_of(&a.body))
    }

    pub fn post(state: &Shared, path: &str, body: Value) -> (u16, Value) {
        let a = handle_api(state, "POST", path, &[], &admin_headers(), body.to_string().as_bytes());
        (a.status, json_of(&a.body))
    }

    /// A control call; `body` null sends an empty body.
    pub fn control(state: &Shared, method: &str, path: &str, body: Value) -> (u16, Value) {
        let bytes = if body.is_null() { vec![] } else { body.to_string().into_bytes() };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let a = handle_control(state, method, path, &query, &bytes);
        (a.status, json_of(&a.body))
    }

    /// Every bucket of a report, following `next_page` to the end; also the number of pages.
    pub fn all_buckets(state: &Shared, path: &str, query: &[(&str, &str)], headers: &HashMap<String, String>) -> (Vec<Value>, usize) {
        let (mut buckets, mut pages, mut token) = (vec![], 0, None::<String>);
        loop {
            let mut q = query.to_vec();
            if let Some(t) = &token {
                q.push(("page", t));
            }
            let (status, body) = get_with(state, path, &q, headers);
            assert_eq!(status, 200, "{body}");
            pages += 1;
            buckets.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["has_more"].as_bool().unwrap() {
                true => token = Some(body["next_page"].as_str().unwrap().to_string()),
                false => {
                    assert_eq!(body["next_page"], Value::Null);
                    return (buckets, pages);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_support::*;

    #[test]
    fn every_request_needs_the_admin_key_and_version() {
        let state = small_state();
        let mut headers = admin_headers();
        headers.insert("x-api-key".into(), "sk-ant-admin01-TESTwrong".into());
        let (status, body) = get_with(&state, "/v1/organizations/api_keys", &[], &headers);
        assert_eq!((status, body["error"]["type"].as_str()), (401, Some("authentication_error")));
        let mut headers = admin_headers();
        headers.remove("anthropic-version");
        let (status, body) = get_with(&state, "/v1/organizations/api_keys", &[], &headers);
        assert_eq!((status, body["error"]["type"].as_str()), (400, Some("invalid_request_error")));
        let (status, body) = get(&state, "/v1/organizations/nothing", &[]);
        assert_eq!((status, body["error"]["type"].as_str()), (404, Some("not_found_error")));
        let (status, _) = post(&state, "/v1/organizations/api_keys", json!({"name": "new"}));
        assert_eq!(status, 404, "keys cannot be created through the API");
    }
}
