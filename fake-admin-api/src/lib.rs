//! A scripted Anthropic Admin API (docs/fake-admin-api.md): the wire format of
//! docs/anthropic-admin-api.md for what the app uses, driven by a scenario file, with a clock
//! that can follow devnode's and faults injected from a control endpoint.
//!
//! Deliberately independent of the app's own types: it is the other side the parser is tested against.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

pub const VERSION: &str = "2023-06-01";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioKey {
    pub id: String,
    pub name: String,
    pub partial_key_hint: String,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default = "active")]
    pub status: String,
    #[serde(default)]
    pub created_at: Option<String>,
}

fn active() -> String {
    "active".to_string()
}

/// Tokens per hour of each kind.
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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageLine {
    pub api_key_id: String,
    pub model: String,
    pub per_hour: Rates,
    pub from: DateTime<Utc>,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
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
    #[serde(default)]
    pub usage: Vec<UsageLine>,
    /// Model id prefix → prices, for the cost report.
    #[serde(default)]
    pub prices: BTreeMap<String, Prices>,
    /// Forces small pages so that pagination is exercised.
    #[serde(default)]
    pub page_size: Option<usize>,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        if !scenario.admin_key.starts_with("sk-ant-admin") {
            return Err("scenario: admin_key must start with sk-ant-admin".to_string());
        }
        for line in &scenario.usage {
            if !scenario.keys.iter().any(|k| k.id == line.api_key_id) {
                return Err(format!("scenario: usage names unknown key {}", line.api_key_id));
            }
            if line.until.is_some_and(|u| u <= line.from) {
                return Err(format!("scenario: usage of {} ends before it starts", line.api_key_id));
            }
        }
        for (prefix, p) in &scenario.prices {
            for v in [&p.input, &p.cache_write_5m, &p.cache_write_1h, &p.cache_read, &p.output] {
                micro_usd(v).ok_or_else(|| format!("scenario: price {v:?} of {prefix} is not a decimal"))?;
            }
        }
        Ok(scenario)
    }
}

/// "3.75" USD → 3,750,000 µUSD.
fn micro_usd(s: &str) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 6 || int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = format!("{frac:0<6}");
    Some(int.parse::<i128>().ok()? * 1_000_000 + frac.parse::<i128>().ok()?)
}

#[derive(Clone, Debug, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub malformed: bool,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub path_prefix: Option<String>,
}

fn one() -> u32 {
    1
}

pub struct State {
    pub scenario: Scenario,
    pub keys: Vec<ScenarioKey>,
    clock_offset_secs: i64,
    clock_url: Option<String>,
    faults: VecDeque<Fault>,
    pub request_counts: BTreeMap<String, u64>,
    pub status_updates: Vec<Value>,
}

pub type Shared = Arc<Mutex<State>>;

impl State {
    pub fn new(scenario: Scenario, clock_url: Option<String>) -> State {
        let keys = scenario.keys.clone();
        State { scenario, keys, clock_offset_secs: 0, clock_url, faults: VecDeque::new(), request_counts: BTreeMap::new(), status_updates: vec![] }
    }
}

fn real_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Now: devnode's virtual clock when following it, else real time plus the offset.
pub fn now(state: &Shared) -> i64 {
    let (url, offset) = {
        let s = state.lock().unwrap();
        (s.clock_url.clone(), s.clock_offset_secs)
    };
    if let Some(url) = url {
        let answer = ureq::get(&format!("{url}/devnode/clock")).timeout(Duration::from_secs(2)).call();
        let text = answer.ok().and_then(|r| r.into_string().ok());
        if let Some(ms) = text.and_then(|t| serde_json::from_str::<Value>(&t).ok()).and_then(|v| v.get("now_ms").and_then(Value::as_i64)) {
            return ms / 1000;
        }
    }
    real_now() + offset
}

/// Tokens of one usage line in [start, end), prorated (integer) to the part before `now`.
fn tokens_in(line: &UsageLine, start: i64, end: i64, now: i64) -> [u64; 6] {
    let from = line.from.timestamp().max(start);
    let until = line.until.map(|u| u.timestamp()).unwrap_or(i64::MAX).min(end).min(now);
    if until <= from {
        return [0; 6];
    }
    let secs = (until - from) as u128;
    let r = &line.per_hour;
    [r.uncached_input, r.cache_write_5m, r.cache_write_1h, r.cache_read, r.output, r.web_search_requests]
        .map(|rate| (rate as u128 * secs / 3600) as u64)
}

fn rfc(t: i64) -> String {
    Utc.timestamp_opt(t, 0).single().map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp())
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, headers: vec![("content-type".into(), "application/json".into())], body: serde_json::to_vec(&body).unwrap(), delay: None }
}

fn error(status: u16, kind: &str, message: &str) -> Answer {
    answer(status, json!({"type": "error", "error": {"type": kind, "message": message}}))
}

fn key_json(k: &ScenarioKey) -> Value {
    json!({"type": "api_key", "id": k.id, "name": k.name, "status": k.status, "workspace_id": k.workspace_id,
           "created_at": k.created_at.clone().unwrap_or_else(|| "2026-01-01T00:00:00Z".into()),
           "created_by": {"id": "user_TEST", "type": "user"}, "partial_key_hint": k.partial_key_hint})
}

/// Handles one Admin API request (`/v1/...`).
pub fn handle_api(state: &Shared, method: &str, path: &str, query: &[(String, String)], headers: &HashMap<String, String>, body: &[u8]) -> Answer {
    let fault = {
        let mut s = state.lock().unwrap();
        *s.request_counts.entry(path.to_string()).or_default() += 1;
        let pos = s.faults.iter().position(|f| f.path_prefix.as_deref().map_or(true, |p| path.starts_with(p)));
        pos.map(|i| {
            let f = s.faults[i].clone();
            if s.faults[i].count <= 1 {
                s.faults.remove(i);
            } else {
                s.faults[i].count -= 1;
            }
            f
        })
    };
    if let Some(f) = &fault {
        if f.malformed {
            return Answer { status: 200, headers: vec![], body: b"{\"data\": [ {\"starting_at\": ".to_vec(), delay: None };
        }
        if let Some(status) = f.status {
            let mut a = match status {
                401 => error(401, "authentication_error", "invalid x-api-key"),
                429 => error(429, "rate_limit_error", "rate limited"),
                529 => error(529, "overloaded_error", "overloaded"),
                s => error(s, "api_error", "internal error"),
            };
            if let Some(ra) = f.retry_after {
                a.headers.push(("retry-after".into(), ra.to_string()));
            }
            a.delay = f.delay_ms.map(Duration::from_millis);
            return a;
        }
    }
    let delay = fault.as_ref().and_then(|f| f.delay_ms).map(Duration::from_millis);
    let mut a = handle_checked(state, method, path, query, headers, body);
    a.delay = delay;
    a
}

fn handle_checked(state: &Shared, method: &str, path: &str, query: &[(String, String)], headers: &HashMap<String, String>, body: &[u8]) -> Answer {
    let admin_key = state.lock().unwrap().scenario.admin_key.clone();
    if headers.get("x-api-key") != Some(&admin_key) {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if headers.get("anthropic-version").map(String::as_str) != Some(VERSION) {
        return error(400, "invalid_request_error", "anthropic-version header is required");
    }
    let q = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let all = |name: &str| query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["v1", "organizations", "api_keys"]) => {
            let s = state.lock().unwrap();
            let limit = q("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(20).clamp(1, 1000).min(s.scenario.page_size.unwrap_or(1000));
            let start = match q("after_id") {
                Some(after) => match s.keys.iter().position(|k| k.id == after) {
                    Some(i) => i + 1,
                    None => return error(400, "invalid_request_error", "unknown after_id"),
                },
                None => 0,
            };
            let filtered: Vec<&ScenarioKey> = s.keys.iter().skip(start).filter(|k| q("status").map_or(true, |st| k.status == st)).collect();
            let page: Vec<Value> = filtered.iter().take(limit).map(|k| key_json(k)).collect();
            let has_more = filtered.len() > limit;
            answer(200, json!({"data": page, "has_more": has_more, "first_id": page.first().map(|k| k["id"].clone()), "last_id": page.last().map(|k| k["id"].clone())}))
        }
        ("GET", ["v1", "organizations", "api_keys", id]) => {
            let s = state.lock().unwrap();
            match s.keys.iter().find(|k| k.id == *id) {
                Some(k) => answer(200, key_json(k)),
                None => error(404, "not_found_error", "no such api key"),
            }
        }
        ("POST", ["v1", "organizations", "api_keys", id]) => {
            let Ok(update) = serde_json::from_slice::<Value>(body) else { return error(400, "invalid_request_error", "body is not JSON") };
            let status = update.get("status").and_then(Value::as_str).map(str::to_string);
            if let Some(st) = &status {
                if !["active", "inactive", "archived"].contains(&st.as_str()) {
                    return error(400, "invalid_request_error", "status must be active, inactive or archived");
                }
            }
            let at = now(state);
            let mut s = state.lock().unwrap();
            let Some(i) = s.keys.iter().position(|k| k.id == *id) else { return error(404, "not_found_error", "no such api key") };
            if let Some(st) = status {
                s.keys[i].status = st.clone();
                s.status_updates.push(json!({"api_key_id": id, "status": st, "at": rfc(at)}));
            }
            if let Some(name) = update.get("name").and_then(Value::as_str) {
                s.keys[i].name = name.to_string();
            }
            answer(200, key_json(&s.keys[i]))
        }
        ("GET", ["v1", "organizations", "usage_report", "messages"]) => report(state, query, false),
        ("GET", ["v1", "organizations", "cost_report"]) => report(state, query, true),
        ("GET", ["v1", "organizations", "workspaces"]) => answer(200, json!({"data": [], "has_more": false, "first_id": null, "last_id": null})),
        _ => {
            let _ = all;
            error(404, "not_found_error", &format!("no endpoint {method} {path}"))
        }
    }
}

/// Usage (per key and model) or cost (per workspace, cents) buckets, paginated.
fn report(state: &Shared, query: &[(String, String)], cost: bool) -> Answer {
    let q = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let group_by: Vec<String> = query.iter().filter(|(k, _)| k == "group_by[]").map(|(_, v)| v.clone()).collect();
    let Some(start) = q("starting_at").as_deref().and_then(parse_time) else { return error(400, "invalid_request_error", "starting_at is required (RFC 3339)") };
    let width = match q("bucket_width").as_deref().unwrap_or("1d") {
        "1h" if !cost => 3600,
        "1d" => 86_400,
        "1m" if !cost => 60,
        other => return error(400, "invalid_request_error", &format!("bucket_width {other} is not supported here")),
    };
    let (default_limit, max_limit) = match width {
        3600 => (24, 168),
        60 => (60, 1440),
        _ => (7, 31),
    };
    let now = now(state);
    let s = state.lock().unwrap();
    let limit = q("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(default_limit).clamp(1, max_limit).min(s.scenario.page_size.unwrap_or(usize::MAX));
    let start = start - start.rem_euclid(width);
    let end = q("ending_at").as_deref().and_then(parse_time).unwrap_or(now + width).min(now - now.rem_euclid(width) + width);
    let first_bucket: i64 = match q("page") {
        Some(p) => match p.strip_prefix("page_").and_then(|n| n.parse().ok()) {
            Some(t) => t,
            None => return error(400, "invalid_request_error", "bad page token"),
        },
        None => start,
    };
    let mut data = vec![];
    let mut t = first_bucket;
    while t < end && data.len() < limit {
        let mut results = vec![];
        if cost {
            let mut by_workspace: BTreeMap<Option<String>, i128> = BTreeMap::new();
            for line in &s.scenario.usage {
                let tok = tokens_in(line, t, t + width, now);
                let Some((_, p)) = s.scenario.prices.iter().filter(|(prefix, _)| line.model.starts_with(prefix.as_str())).max_by_key(|(prefix, _)| prefix.len()) else { continue };
                let price = [&p.input, &p.cache_write_5m, &p.cache_write_1h, &p.cache_read, &p.output].map(|v| micro_usd(v).unwrap_or(0));
                let micro: i128 = (0..5).map(|i| tok[i] as i128 * price[i]).sum::<i128>() + tok[5] as i128 * 10_000_000_000;
                let ws = s.keys.iter().find(|k| k.id == line.api_key_id).and_then(|k| k.workspace_id.clone());
                *by_workspace.entry(ws).or_default() += micro;
            }
            for (ws, micro_times_million) in by_workspace {
                // µUSD×10^6 → cents with 4 decimals (cents = µUSD / 10,000).
                let micro = micro_times_million / 1_000_000;
                let amount = format!("{}.{:04}", micro / 10_000, micro % 10_000);
                let mut row = json!({"currency": "USD", "amount": amount, "cost_type": "tokens"});
                if group_by.iter().any(|g| g == "workspace_id") {
                    row["workspace_id"] = json!(ws);
                }
                if group_by.iter().any(|g| g == "description") {
                    row["description"] = json!("Token usage");
                }
                results.push(row);
            }
        } else {
            let mut rows: BTreeMap<(Option<String>, Option<String>), [u64; 6]> = BTreeMap::new();
            for line in &s.scenario.usage {
                let tok = tokens_in(line, t, t + width, now);
                if tok.iter().all(|n| *n == 0) {
                    continue;
                }
                let key = group_by.iter().any(|g| g == "api_key_id").then(|| line.api_key_id.clone());
                let model = group_by.iter().any(|g| g == "model").then(|| line.model.clone());
                let sum = rows.entry((key, model)).or_default();
                for i in 0..6 {
                    sum[i] += tok[i];
                }
            }
            for ((key, model), tok) in rows {
                let mut row = json!({"uncached_input_tokens": tok[0], "cache_read_input_tokens": tok[3],
                    "cache_creation": {"ephemeral_5m_input_tokens": tok[1], "ephemeral_1h_input_tokens": tok[2]},
                    "output_tokens": tok[4], "server_tool_use": {"web_search_requests": tok[5]}});
                if group_by.iter().any(|g| g == "api_key_id") {
                    row["api_key_id"] = json!(key);
                }
                if group_by.iter().any(|g| g == "model") {
                    row["model"] = json!(model);
                }
                results.push(row);
            }
        }
        data.push(json!({"starting_at": rfc(t), "ending_at": rfc(t + width), "results": results}));
        t += width;
    }
    let has_more = t < end;
    answer(200, json!({"data": data, "has_more": has_more, "next_page": if has_more { json!(format!("page_{t}")) } else { Value::Null }}))
}

/// Handles `/_control/...`.
pub fn handle_control(state: &Shared, method: &str, path: &str, query: &[(String, String)], body: &[u8]) -> Answer {
    let v = || serde_json::from_slice::<Value>(body).map_err(|e| format!("body is not JSON: {e}"));
    match (method, path) {
        ("POST", "/_control/faults") => {
            let faults = match v().and_then(|v| serde_json::from_value::<Vec<Fault>>(v["faults"].clone()).map_err(|e| format!("faults: {e}"))) {
                Ok(f) => f,
                Err(e) => return answer(400, json!({"error": e})),
            };
            let mut s = state.lock().unwrap();
            s.faults.extend(faults);
            answer(200, json!({"queued": s.faults.len()}))
        }
        ("GET", "/_control/seen") => {
            let s = state.lock().unwrap();
            answer(200, json!({"request_counts": s.request_counts, "status_updates": s.status_updates, "faults_left": s.faults.len()}))
        }
        ("POST", "/_control/clock") => {
            let body = match v() {
                Ok(b) => b,
                Err(e) => return answer(400, json!({"error": e})),
            };
            let mut s = state.lock().unwrap();
            if let Some(secs) = body.get("advance_seconds").and_then(Value::as_i64) {
                s.clock_offset_secs += secs;
            } else if let Some(t) = body.get("now").and_then(Value::as_str).and_then(parse_time) {
                s.clock_offset_secs = t - real_now();
            } else {
                return answer(400, json!({"error": "expected {\"advance_seconds\": N} or {\"now\": \"<RFC 3339>\"}"}));
            }
            drop(s);
            answer(200, json!({"now": rfc(now(state))}))
        }
        ("POST", "/_control/keys") => {
            let key = match v().and_then(|v| serde_json::from_value::<ScenarioKey>(v).map_err(|e| format!("key: {e}"))) {
                Ok(k) => k,
                Err(e) => return answer(400, json!({"error": e})),
            };
            state.lock().unwrap().keys.push(key);
            answer(200, json!({"ok": true}))
        }
        ("GET", "/_control/truth") => {
            let q = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let (Some(from), Some(to)) = (q("starting_at").as_deref().and_then(parse_time), q("ending_at").as_deref().and_then(parse_time)) else {
                return answer(400, json!({"error": "starting_at and ending_at are required"}));
            };
            let now = now(state);
            let closed_end = to.min(now - now.rem_euclid(3600));
            let s = state.lock().unwrap();
            let mut per_model: BTreeMap<String, [u64; 6]> = BTreeMap::new();
            for line in s.scenario.usage.iter().filter(|l| q("api_key_id").map_or(true, |k| k == l.api_key_id)) {
                let tok = tokens_in(line, from, closed_end, now);
                let sum = per_model.entry(line.model.clone()).or_default();
                for i in 0..6 {
                    sum[i] += tok[i];
                }
            }
            let models: Value = per_model
                .into_iter()
                .map(|(m, t)| (m, json!({"uncached_input": t[0], "cache_write_5m": t[1], "cache_write_1h": t[2], "cache_read": t[3], "output": t[4], "web_search_requests": t[5]})))
                .collect::<serde_json::Map<_, _>>()
                .into();
            answer(200, json!({"models": models, "closed_until": rfc(closed_end)}))
        }
        ("POST", "/_control/reset") => {
            let mut s = state.lock().unwrap();
            s.faults.clear();
            s.request_counts.clear();
            s.status_updates.clear();
            s.keys = s.scenario.keys.clone();
            answer(200, json!({"ok": true}))
        }
        _ => answer(404, json!({"error": format!("no control endpoint {method} {path}")})),
    }
}
