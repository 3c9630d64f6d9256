//! `GET /v1/organizations/analytics/cost` (beta): cost per bucket, optionally per key, model and
//! workspace. The real field names are unconfirmed; this is the shape the project assumes
//! (docs/fake-admin-api.md). Amounts follow the cost report's pricing, except that priority-tier
//! usage is included, priced at the standard rate.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::money::{self, cents, Femto};
use crate::reports::{paginate, parse_filters, parse_group_by, parse_window, WindowRules};
use crate::scenario::ServiceTier;
use crate::usage::{line_views, tokens_in, LineView};
use crate::{error, invalid, not_found, AnalyticsMode, Answer, Query, Shared};

pub const BETA: &str = "analytics-usage-cost-2026-08-24";
/// The analytics API has no data before this (2026-01-01T00:00:00Z).
const EARLIEST: i64 = 1_767_225_600;
/// `starting_at` may be at most this far back.
const MAX_LOOKBACK_SECS: i64 = 365 * 86_400;

const WINDOWS: WindowRules = WindowRules { width_param: "time_bucket_width", widths: &[("1h", 3600), ("1d", 86_400)], default_width: "1d" };
const GROUPS: [&str; 3] = ["api_key_id", "model", "workspace_id"];
const FILTERS: [(&str, &str); 3] = [("api_key_ids[]", "api_key_id"), ("workspace_ids[]", "workspace_id"), ("models[]", "model")];

/// The `anthropic-beta` header may list several betas, comma-separated.
fn has_beta(headers: &HashMap<String, String>) -> bool {
    headers.get("anthropic-beta").is_some_and(|v| v.split(',').any(|b| b.trim() == BETA))
}

/// Refusals before the query is looked at: the organization's access, then the beta header.
fn check_access(state: &Shared, headers: &HashMap<String, String>) -> Result<(), Answer> {
    match state.lock().unwrap().analytics_mode {
        AnalyticsMode::Forbidden => return Err(error(403, "permission_error", "this organization does not have access to the analytics API")),
        AnalyticsMode::NotFound => return Err(not_found("no endpoint GET /v1/organizations/analytics/cost")),
        AnalyticsMode::On => {}
    }
    if !has_beta(headers) {
        return Err(invalid(&format!("this endpoint requires the beta header anthropic-beta: {BETA}")));
    }
    Ok(())
}

fn check_starting_at(q: &Query, now: i64) -> Result<(), Answer> {
    let Some(starting_at) = q.one("starting_at").and_then(crate::parse_time) else { return Err(invalid("starting_at is required (RFC 3339)")) };
    if starting_at < EARLIEST {
        return Err(invalid("starting_at must not be before 2026-01-01T00:00:00Z"));
    }
    if starting_at < now - MAX_LOOKBACK_SECS {
        return Err(invalid("starting_at must be within the last 365 days"));
    }
    Ok(())
}

fn group_value(view: &LineView, field: &str) -> Option<String> {
    match field {
        "api_key_id" => view.api_key_id().map(str::to_string),
        "workspace_id" => view.workspace_id.map(str::to_string),
        _ => Some(view.model().to_string()),
    }
}

/// Cost and requests of one group in one bucket.
#[derive(Default)]
struct Sum {
    amount: Femto,
    requests: u64,
}

pub fn cost(state: &Shared, q: &Query, headers: &HashMap<String, String>, now: i64) -> Answer {
    if let Err(refused) = check_access(state, headers).and_then(|()| check_starting_at(q, now)) {
        return refused;
    }
    let s = state.lock().unwrap();
    let parsed = parse_window(q, now, &WINDOWS, s.scenario.page_size).and_then(|w| Ok((w, parse_group_by(q, &GROUPS)?, parse_filters(q, &FILTERS)?)));
    let (window, groups, filters) = match parsed {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let views: Vec<LineView> = line_views(&s).into_iter().filter(|v| filters.keep(v)).collect();
    paginate(&window, |start, end| {
        let mut sums: BTreeMap<Vec<Option<String>>, Sum> = BTreeMap::new();
        for view in &views {
            let Some(prices) = s.scenario.prices_of(view.model()) else { continue };
            let tokens = tokens_in(view.line, start, end, now);
            if !tokens.has_usage() && tokens.requests == 0 {
                continue;
            }
            let tier = match view.service_tier() {
                ServiceTier::Priority => ServiceTier::Standard,
                tier => tier,
            };
            let sum = sums.entry(groups.iter().map(|g| group_value(view, g)).collect()).or_default();
            sum.amount += money::priced_items(prices, tier, view.context_window(), &tokens).iter().map(|(_, a)| a).sum::<Femto>();
            sum.requests += tokens.requests;
        }
        sums.iter().map(|(values, sum)| row(&groups, values, sum)).collect()
    })
}

/// One analytics row. The fake has no negotiated discounts, so the list price is the amount.
fn row(groups: &[&str], values: &[Option<String>], sum: &Sum) -> Value {
    let mut row = json!({"currency": "USD", "amount": cents(sum.amount), "list_price_amount": cents(sum.amount), "request_count": sum.requests});
    for (field, value) in groups.iter().zip(values) {
        row[*field] = json!(value);
    }
    row
}

/// `POST /_control/analytics` `{"mode": "on" | "forbidden" | "not_found"}`.
pub fn set_mode(state: &Shared, body: &Value) -> Result<&'static str, String> {
    let (mode, name) = match body.get("mode").and_then(Value::as_str) {
        Some("on") => (AnalyticsMode::On, "on"),
        Some("forbidden") => (AnalyticsMode::Forbidden, "forbidden"),
        Some("not_found") => (AnalyticsMode::NotFound, "not_found"),
        _ => return Err("expected {\"mode\": \"on\" | \"forbidden\" | \"not_found\"}".to_string()),
    };
    state.lock().unwrap().analytics_mode = mode;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::test_support::*;

    const PATH: &str = "/v1/organizations/analytics/cost";
    const DAY: [(&str, &str); 2] = [("starting_at", "2026-03-02T00:00:00Z"), ("ending_at", "2026-03-03T00:00:00Z")];

    fn realistic() -> crate::Shared {
        state_at(&scenario_text("realistic.json"), "2026-03-03T10:30:00Z")
    }

    fn day_rows(state: &crate::Shared, extra: &[(&'static str, &'static str)]) -> Vec<Value> {
        let q: Vec<(&str, &str)> = DAY.iter().chain(extra).cloned().collect();
        let (status, body) = get_with(state, PATH, &q, &beta_headers());
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        assert_eq!((body["data"][0]["starting_at"].as_str(), body["data"][0]["ending_at"].as_str()), (Some("2026-03-02T00:00:00Z"), Some("2026-03-03T00:00:00Z")));
        body["data"][0]["results"].as_array().unwrap().clone()
    }

    #[test]
    fn cost_per_key_from_the_fakes_prices() {
        let state = realistic();
        let rows = day_rows(&state, &[("group_by[]", "api_key_id")]);
        let of = |id: Value| rows.iter().find(|r| r["api_key_id"] == id).cloned().unwrap();
        let solo = of(json!("apikey_TEST03"));
        assert_eq!(solo, json!({"api_key_id": "apikey_TEST03", "currency": "USD", "amount": "48", "list_price_amount": "48", "request_count": 2400}));
        // Key 2: Opus standard ($0.0252/h + 2 searches) and priority at the standard rate ($0.05/h); the unpriced model is absent.
        let key2 = of(json!("apikey_TEST02"));
        assert_eq!((key2["amount"].as_str(), key2["request_count"].as_u64()), (Some("228.48"), Some(24 * 50)));
        let workbench = of(Value::Null);
        assert_eq!(workbench["request_count"], 72);
        assert!(rows.iter().all(|r| r.get("model").is_none() && r.get("workspace_id").is_none()));
        // Filter and finer grouping.
        let by_model = day_rows(&state, &[("group_by[]", "model"), ("group_by[]", "workspace_id"), ("api_key_ids[]", "apikey_TEST02")]);
        assert_eq!(by_model.len(), 1);
        assert_eq!((by_model[0]["model"].as_str(), by_model[0]["workspace_id"].clone()), (Some("claude-opus-4-5-20251101"), Value::Null));
        assert_eq!(by_model[0].get("api_key_id"), None);
    }

    #[test]
    fn hourly_buckets_and_pagination() {
        let state = realistic();
        let q = [("starting_at", "2026-03-02T00:00:00Z"), ("ending_at", "2026-03-03T00:00:00Z"), ("time_bucket_width", "1h"), ("limit", "7"), ("api_key_ids[]", "apikey_TEST03")];
        let (buckets, pages) = all_buckets(&state, PATH, &q, &beta_headers());
        assert_eq!((buckets.len(), pages), (24, 4));
        assert!(buckets.iter().all(|b| b["results"][0]["amount"] == "2"), "2 cents an hour");
    }

    #[test]
    fn refusals() {
        let state = realistic();
        let (status, body) = get_with(&state, PATH, &DAY, &admin_headers());
        assert_eq!(status, 400);
        assert!(body["error"]["message"].as_str().unwrap().contains("analytics-usage-cost-2026-08-24"), "names the missing beta: {body}");
        let mut several = admin_headers();
        several.insert("anthropic-beta".into(), format!("other-beta, {BETA}"));
        assert_eq!(get_with(&state, PATH, &DAY, &several).0, 200, "a list of betas");
        let refused = |q: &[(&str, &str)]| get_with(&state, PATH, q, &beta_headers()).0;
        assert_eq!(refused(&[("starting_at", "2025-12-31T00:00:00Z")]), 400, "before 2026");
        assert_eq!(refused(&[("ending_at", "2026-03-03T00:00:00Z")]), 400, "starting_at required");
        assert_eq!(refused(&[("starting_at", "2026-03-02T00:00:00Z"), ("ending_at", "2026-03-04T00:00:01Z")]), 400, "future");
        assert_eq!(refused(&[("starting_at", "2026-03-02T00:00:00Z"), ("time_bucket_width", "1m")]), 400);
        assert_eq!(refused(&[("starting_at", "2026-03-02T00:00:00Z"), ("group_by[]", "cost_type")]), 400);
        assert_eq!(refused(&[("starting_at", "2026-03-02T00:00:00Z")]), 200, "ending_at optional, 1d default");
        let later = state_at(&scenario_text("realistic.json"), "2027-06-01T00:00:00Z");
        assert_eq!(get_with(&later, PATH, &[("starting_at", "2026-05-01T00:00:00Z")], &beta_headers()).0, 400, "more than 365 days back");
        assert_eq!(get_with(&later, PATH, &[("starting_at", "2026-06-02T00:00:00Z")], &beta_headers()).0, 200);
    }

    #[test]
    fn the_control_switch_turns_it_off() {
        let state = realistic();
        for (mode, status, kind) in [("forbidden", 403, "permission_error"), ("not_found", 404, "not_found_error")] {
            assert_eq!(control(&state, "POST", "/_control/analytics", json!({"mode": mode})).0, 200);
            let (got, body) = get_with(&state, PATH, &DAY, &beta_headers());
            assert_eq!((got, body["error"]["type"].as_str()), (status, Some(kind)));
        }
        assert_eq!(control(&state, "POST", "/_control/analytics", json!({"mode": "maybe"})).0, 400);
        assert_eq!(control(&state, "POST", "/_control/analytics", json!({"mode": "on"})).0, 200);
        assert_eq!(get_with(&state, PATH, &DAY, &beta_headers()).0, 200);
        control(&state, "POST", "/_control/analytics", json!({"mode": "forbidden"}));
        control(&state, "POST", "/_control/reset", Value::Null);
        assert_eq!(get_with(&state, PATH, &DAY, &beta_headers()).0, 200, "reset turns it back on");
    }
}
