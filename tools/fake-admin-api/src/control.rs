//! `/_control/...`: what tests use to steer the fake and to read what it saw. No auth (loopback).
//! Errors here are `{"error": "..."}` (400/404), not the Admin API's error shape.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::scenario::{ContextWindow, ScenarioKey, ServiceTier};
use crate::usage::{tokens_in, Tokens};
use crate::{analytics, answer, clock, keys, now, parse_time, rfc, Answer, Fault, Query, Shared};

fn refuse(message: &str) -> Answer {
    answer(400, json!({"error": message}))
}

/// Handles `/_control/...`.
pub fn handle_control(state: &Shared, method: &str, path: &str, query: &[(String, String)], body: &[u8]) -> Answer {
    let json_body = || serde_json::from_slice::<Value>(body).map_err(|e| format!("body is not JSON: {e}"));
    let outcome = match (method, path) {
        ("POST", "/_control/faults") => json_body().and_then(|b| queue_faults(state, &b)),
        ("GET", "/_control/seen") => Ok(seen(state)),
        ("POST", "/_control/clock") => json_body().and_then(|b| clock::set(state, &b)).map(|t| json!({"now": rfc(t)})),
        ("POST", "/_control/keys") => json_body().and_then(|b| add_key(state, b)),
        ("POST", "/_control/key_status") => {
            return json_body().map_err(|e| refuse(&e)).and_then(|b| keys::operator_change(state, &b)).map_or_else(|refused| refused, |ok| answer(200, ok))
        }
        ("POST", "/_control/analytics") => json_body().and_then(|b| analytics::set_mode(state, &b)).map(|mode| json!({"mode": mode})),
        ("GET", "/_control/truth") => return truth(state, &Query(query)),
        ("POST", "/_control/reset") => Ok(reset(state)),
        _ => return answer(404, json!({"error": format!("no control endpoint {method} {path}")})),
    };
    match outcome {
        Ok(v) => answer(200, v),
        Err(e) => refuse(&e),
    }
}

/// `POST /_control/faults` `{"faults": [Fault]}`: queued behind those already waiting.
fn queue_faults(state: &Shared, body: &Value) -> Result<Value, String> {
    let faults: Vec<Fault> = serde_json::from_value(body.get("faults").cloned().unwrap_or(Value::Null)).map_err(|e| format!("faults: {e}"))?;
    for f in &faults {
        f.validate()?;
    }
    let mut s = state.lock().unwrap();
    s.faults.extend(faults);
    Ok(json!({"queued": s.faults.len()}))
}

fn seen(state: &Shared) -> Value {
    let s = state.lock().unwrap();
    json!({"request_counts": s.request_counts, "status_updates": s.status_updates, "faults_left": s.faults.len(), "workspace_events": s.workspace_events})
}

/// `POST /_control/keys` `{"id", "name", "partial_key_hint", "workspace_id"?, "status"?, "created_at"?, "expires_at"?}`.
fn add_key(state: &Shared, body: Value) -> Result<Value, String> {
    let key: ScenarioKey = serde_json::from_value(body).map_err(|e| format!("key: {e}"))?;
    let mut s = state.lock().unwrap();
    keys::check_new_key(&s, &key)?;
    s.keys.push(key);
    Ok(json!({"ok": true}))
}

/// Clears faults, counts and records; keys, workspaces and the analytics switch go back to the scenario's.
/// The clock is left as it is.
fn reset(state: &Shared) -> Value {
    let mut s = state.lock().unwrap();
    s.faults.clear();
    s.request_counts.clear();
    s.status_updates.clear();
    s.workspace_events.clear();
    s.reset_organization();
    json!({"ok": true})
}

fn truth_tokens(t: &Tokens) -> serde_json::Map<String, Value> {
    let v = json!({"uncached_input": t.uncached_input, "cache_write_5m": t.cache_write_5m, "cache_write_1h": t.cache_write_1h,
                   "cache_read": t.cache_read, "output": t.output, "web_search_requests": t.web_search_requests});
    v.as_object().cloned().unwrap_or_default()
}

/// `GET /_control/truth?api_key_id=&starting_at=&ending_at=`: exact token totals of the scenario over
/// the closed hours of [starting_at, ending_at). `api_key_id` absent = all usage, `null` = Workbench
/// usage only. `models`: per model (all tiers and windows summed); `rows`: per model, tier and window.
fn truth(state: &Shared, q: &Query) -> Answer {
    let (Some(from), Some(to)) = (q.one("starting_at").and_then(parse_time), q.one("ending_at").and_then(parse_time)) else {
        return refuse("starting_at and ending_at are required");
    };
    let wanted_key: Option<Option<&str>> = q.one("api_key_id").map(|k| if k == "null" { None } else { Some(k) });
    let now = now(state);
    let closed_end = to.min(now - now.rem_euclid(3600));
    let s = state.lock().unwrap();
    let mut models: BTreeMap<String, Tokens> = BTreeMap::new();
    let mut rows: BTreeMap<(String, ServiceTier, ContextWindow), Tokens> = BTreeMap::new();
    for line in s.scenario.usage.iter().filter(|l| wanted_key.is_none_or(|k| l.api_key_id.as_deref() == k)) {
        let tokens = tokens_in(line, from, closed_end, now);
        *models.entry(line.model.clone()).or_default() += tokens;
        *rows.entry((line.model.clone(), line.service_tier, line.context_window)).or_default() += tokens;
    }
    let models: serde_json::Map<String, Value> = models.iter().map(|(m, t)| (m.clone(), Value::Object(truth_tokens(t)))).collect();
    let rows: Vec<Value> = rows
        .iter()
        .map(|((model, tier, window), t)| {
            let mut row = truth_tokens(t);
            row.insert("requests".into(), json!(t.requests));
            row.insert("model".into(), json!(model));
            row.insert("service_tier".into(), json!(tier.as_str()));
            row.insert("context_window".into(), json!(window.as_str()));
            Value::Object(row)
        })
        .collect();
    answer(200, json!({"models": models, "rows": rows, "closed_until": rfc(closed_end)}))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::test_support::*;

    #[test]
    fn truth_counts_closed_hours_per_model_and_per_tier() {
        let state = state_at(&scenario_text("realistic.json"), "2026-03-02T10:30:00Z");
        let (status, truth) = control(&state, "GET", "/_control/truth?api_key_id=apikey_TEST01&starting_at=2026-03-01T00:00:00Z&ending_at=2026-03-03T00:00:00Z", Value::Null);
        assert_eq!(status, 200);
        assert_eq!(truth["closed_until"], "2026-03-02T10:00:00Z");
        let sonnet = &truth["models"]["claude-sonnet-4-5-20250929"];
        assert_eq!(sonnet["output"], 10 * (720 + 100 + 500 + 7));
        assert_eq!(sonnet.as_object().unwrap().len(), 6, "the same six fields as always");
        let rows = truth["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        let batch_long = rows.iter().find(|r| r["service_tier"] == "batch" && r["context_window"] == "200k-1M").unwrap();
        assert_eq!((batch_long["output"].as_u64(), batch_long["requests"].as_u64()), (Some(70), Some(10)));
        let (_, workbench) = control(&state, "GET", "/_control/truth?api_key_id=null&starting_at=2026-03-02T00:00:00Z&ending_at=2026-03-03T00:00:00Z", Value::Null);
        assert_eq!(workbench["models"], json!({"claude-sonnet-4-5-20250929": {"uncached_input": 12340, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0, "output": 770, "web_search_requests": 0}}));
        let (_, all) = control(&state, "GET", "/_control/truth?starting_at=2026-03-02T00:00:00Z&ending_at=2026-03-03T00:00:00Z", Value::Null);
        assert_eq!(all["models"]["claude-sonnet-4-5-20250929"]["output"], 10 * (720 + 100 + 500 + 7 + 77), "all usage, Workbench included");
        assert_eq!(control(&state, "GET", "/_control/truth?starting_at=2026-03-02T00:00:00Z", Value::Null).0, 400);
    }

    #[test]
    fn truth_matches_the_usage_report() {
        let state = small_state();
        let (_, truth) = control(&state, "GET", "/_control/truth?api_key_id=apikey_TEST02&starting_at=2026-02-20T00:00:00Z&ending_at=2026-03-01T10:00:00Z", Value::Null);
        let q = [("starting_at", "2026-02-20T00:00:00Z"), ("ending_at", "2026-03-01T10:00:00Z"), ("bucket_width", "1h"), ("api_key_ids[]", "apikey_TEST02")];
        let (buckets, _) = all_buckets(&state, "/v1/organizations/usage_report/messages", &q, &admin_headers());
        let output: u64 = buckets.iter().flat_map(|b| b["results"].as_array().unwrap()).map(|r| r["output_tokens"].as_u64().unwrap()).sum();
        assert_eq!(json!(output), truth["models"]["claude-opus-4-5-20251101"]["output"]);
    }

    #[test]
    fn seen_reset_and_bad_control_calls() {
        let state = small_state();
        get(&state, "/v1/organizations/api_keys", &[]);
        post(&state, "/v1/organizations/api_keys/apikey_TEST01", json!({"status": "inactive"}));
        control(&state, "POST", "/_control/faults", json!({"faults": [{"status": 500, "count": 3}]}));
        let (_, seen) = control(&state, "GET", "/_control/seen", Value::Null);
        assert_eq!(seen["request_counts"]["/v1/organizations/api_keys"], 1);
        assert_eq!(seen["faults_left"], 1);
        assert_eq!(seen["workspace_events"], json!([]));
        control(&state, "POST", "/_control/reset", Value::Null);
        let (_, seen) = control(&state, "GET", "/_control/seen", Value::Null);
        assert_eq!((seen["faults_left"].as_u64(), seen["status_updates"].clone(), seen["request_counts"].clone()), (Some(0), json!([]), json!({})));
        assert_eq!(get(&state, "/v1/organizations/api_keys/apikey_TEST01", &[]).1["status"], "active", "keys back to the scenario's");
        for (path, body) in [("/_control/faults", "{"), ("/_control/clock", "{}"), ("/_control/keys", r#"{"id": 1}"#), ("/_control/key_status", "[]"), ("/_control/analytics", "{}")] {
            let a = crate::handle_control(&state, "POST", path, &[], body.as_bytes());
            assert_eq!(a.status, 400, "{path} {body}");
            assert!(serde_json::from_slice::<Value>(&a.body).unwrap()["error"].is_string());
        }
        assert_eq!(control(&state, "GET", "/_control/nothing", Value::Null).0, 404);
    }

    #[test]
    fn the_clock_can_be_set_advanced_and_frozen() {
        let state = small_state();
        let (_, t) = control(&state, "POST", "/_control/clock", json!({"advance_seconds": 3600}));
        assert_eq!(t["now"], "2026-03-01T11:30:00Z");
        let (_, t) = control(&state, "POST", "/_control/clock", json!({"now": "2026-04-01T00:00:00Z"}));
        assert_eq!(t["now"], "2026-04-01T00:00:00Z", "still frozen");
        assert_eq!(control(&state, "POST", "/_control/clock", json!({"now": "2026-04-01T00:00:00Z", "frozen": "yes"})).0, 400);
        let (_, t) = control(&state, "POST", "/_control/clock", json!({"now": "2026-04-01T00:00:00Z", "frozen": false}));
        let ticking = crate::parse_time(t["now"].as_str().unwrap()).unwrap();
        assert!((ticking - crate::parse_time("2026-04-01T00:00:00Z").unwrap()).abs() <= 1);
    }
}
