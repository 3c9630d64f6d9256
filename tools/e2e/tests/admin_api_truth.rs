//! The Admin API is the truth about keys and money (SPEC §5, §6): end-to-end scenarios of the
//! real package in devnode against the strict fake-admin-api (`scenarios/truth.json`).
//! Requires `cargo xtask build` (cargo xtask test runs it first).

use e2e::*;
use serde_json::{json, Value};

const ISSUE: &str = "RequestApiKey";

fn add_key(env: &Env, n: u32, extra: Value) -> Value {
    let mut body = json!({"secret": secret(n), "name": format!("key {n}"), "node_cap": null, "budget_usd": "100000"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    env.add_key(body)
}

fn added(env: &Env, n: u32, extra: Value) -> Value {
    let r = add_key(env, n, extra);
    assert!(r.get("Ok").is_some(), "add key {n}: {r}");
    r["Ok"].clone()
}

fn key(env: &Env, id: u64) -> Value {
    env.api(json!({"ListKeys": null})).as_array().unwrap().iter().find(|k| k["id"] == id).cloned().unwrap()
}

/// The full key a node was answered with, whatever the answer's shape.
fn issued(answer: &Value) -> Option<String> {
    let ok = &answer["response"]["Ok"];
    ok.as_str().or_else(|| ok["api_key"].as_str()).map(str::to_string)
}


fn now(env: &Env) -> i64 {
    get(&format!("{}/devnode/clock", env.control))["now_ms"].as_i64().unwrap() / 1000
}

fn rfc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unix(s: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap().timestamp()
}

/// Cumulative cost of `key` at the last hour bucket that starts before `until`, and the series' first bucket.
fn spent_before(env: &Env, key: u64, until: i64) -> (i64, i64) {
    let s = env.api(json!({"CostSeries": {"key": key, "max_points": 20000}}));
    let t = s["Ok"]["t"].as_array().unwrap();
    let v = s["Ok"]["v"].as_array().unwrap();
    let first = t.first().map(|x| x.as_i64().unwrap()).unwrap_or(until);
    let value = t.iter().zip(v).filter(|(t, _)| t.as_i64().unwrap() < until).last().map(|(_, v)| v.as_i64().unwrap()).unwrap_or(0);
    (first, value)
}

/// Hand-written list prices (µUSD per million tokens, docs/anthropic-admin-api.md), independent of
/// the app's table: (input, output) for a (model, tier, window) class.
fn list_price(model: &str, tier: &str, window: &str, unknown_priced: bool) -> (i64, i64) {
    let (input, output) = match model {
        m if m.starts_with("claude-3-7-sonnet") || m.starts_with("claude-sonnet-4") => (3_000_000, 15_000_000),
        m if m.starts_with("claude-haiku-4-5") => (1_000_000, 5_000_000),
        m if m.starts_with("claude-3-haiku") => (250_000, 1_250_000),
        // Not in any table: the highest known rates (Opus 4 / Opus 3), until the operator prices
        // it at 5 / 25 in the test.
        "claude-opus-5-20270101" if unknown_priced => (5_000_000, 25_000_000),
        "claude-opus-5-20270101" => (15_000_000, 75_000_000),
        other => panic!("no hand price for {other}"),
    };
    let (input, output) = if window == "200k-1M" { (input * 2, output * 3 / 2) } else { (input, output) };
    if tier == "batch" {
        (input / 2, output / 2)
    } else {
        (input, output)
    }
}

/// Cost of the fake's truth rows over `hours` closed hours at the hand-written prices; web search
/// at USD 10 per 1,000 requests. The scenario's rates are constant, so every hour of a row holds
/// the same tokens: each row-hour is rounded half to even to the µUSD, as the app stores it.
fn hand_priced(truth: &Value, hours: i64, unknown_priced: bool) -> i64 {
    let mut total: i64 = 0;
    for row in truth["rows"].as_array().unwrap() {
        let n = |f: &str| {
            let all = row[f].as_i64().unwrap();
            assert_eq!(all % hours, 0, "constant hourly rates");
            (all / hours) as i128
        };
        assert_eq!(n("cache_write_5m") + n("cache_write_1h") + n("cache_read"), 0, "the scenario uses input, output and web search only");
        let (input, output) = list_price(
            row["model"].as_str().unwrap(),
            row["service_tier"].as_str().unwrap_or("standard"),
            row["context_window"].as_str().unwrap_or("0-200k"),
            unknown_priced,
        );
        let per_hour = n("uncached_input") * input as i128 + n("output") * output as i128 + n("web_search_requests") * 10_000_000_000;
        let (whole, rest) = (per_hour / 1_000_000, per_hour % 1_000_000);
        let rounded = whole + i128::from(rest > 500_000 || (rest == 500_000 && whole % 2 == 1));
        total += rounded as i64 * hours;
    }
    total
}

fn truth(env: &Env, api_key_id: &str, from: i64, until: i64) -> Value {
    env.fake_control(&format!("truth?api_key_id={api_key_id}&starting_at={}&ending_at={}", rfc(from), rfc(until)), None)
}

fn status_updates_of(env: &Env, api_key_id: &str) -> Vec<Value> {
    let seen = env.fake_control("seen", None);
    seen["status_updates"].as_array().unwrap().iter().filter(|u| u["api_key_id"] == api_key_id).cloned().collect()
}

#[test]
fn the_organization_is_the_truth_about_a_key() {
    let nodes: Vec<String> = (0..50).map(|i| format!("n{i}.os")).collect();
    let env = Env::start("org-truth", "truth.json", &nodes);
    env.configure_admin_api();

    // A key the organization has deactivated is retired by its first look-up, reason
    // `organization`, and never issued.
    let r = added(&env, 2, json!({}));
    assert_eq!((r["status"].as_str(), r["retired_reason"].as_str(), r["api_key_id"].as_str()), (Some("retired"), Some("organization"), Some("apikey_TEST02")), "{r}");
    assert_eq!(r["admin_api_retirement"], "confirmed: inactive", "{r}");

    let k1 = added(&env, 1, json!({}))["id"].as_u64().unwrap();
    let k3 = added(&env, 3, json!({}))["id"].as_u64().unwrap();
    let mut holders_of_3 = vec![];
    for node in &nodes[..40] {
        let key = issued(&env.p2p(node, json!({ISSUE: null}))).expect("a key");
        assert!(!key.ends_with("0002"), "the deactivated key was issued");
        if key == secret(3) {
            holders_of_3.push(node.clone());
        }
    }
    assert!(!holders_of_3.is_empty());

    // The operator deactivates key 3 in the Console: the next poll retires it, reason
    // `organization`, confirmed without a call; its nodes are told; new nodes never get it.
    env.fake_control("key_status", Some(json!({"id": "apikey_TEST03", "status": "inactive"})));
    env.poll();
    let k = key(&env, k3);
    assert_eq!((k["status"].as_str(), k["retired_reason"].as_str()), (Some("retired"), Some("organization")), "{k}");
    assert_eq!(k["admin_api_retirement"], "confirmed: inactive");
    assert!(status_updates_of(&env, "apikey_TEST03").is_empty(), "no call was needed");
    let r = env.p2p(&holders_of_3[0], json!({ISSUE: null}));
    assert_eq!(r["response"]["Err"], "key retired: organization", "{r}");
    for node in &nodes[40..] {
        assert_eq!(issued(&env.p2p(node, json!({ISSUE: null}))).as_deref(), Some(secret(1).as_str()));
    }

    // An expiry set in the organization earlier than the lifetime shortens it.
    let soon = now(&env) + 7200;
    env.fake_control("key_status", Some(json!({"id": "apikey_TEST01", "expires_at": rfc(soon)})));
    env.poll();
    let k = key(&env, k1);
    assert_eq!(unix(&k["expires_at"]), soon, "{k}");
    assert_eq!(unix(&k["org_expires_at"]), soon);
    let audit = env.api(json!({"AuditLog": {"limit": 500}})).to_string();
    assert!(audit.contains("retired: organization") && audit.contains("key expiry shortened"), "{audit}");
}

#[test]
fn unmatched_keys_are_held_back_matched_backfilled_and_deactivated() {
    let env = Env::start("unmatched", "truth.json", &["n0.os".to_string()]);
    env.configure_admin_api();
    // Two organization keys share key 6's hint: it stays unmatched and is not issued.
    let k6 = added(&env, 6, json!({}));
    assert_eq!(k6["api_key_id"], Value::Null);
    assert!(k6["unresolved_reason"].as_str().unwrap().contains("2 Admin API keys match"), "{k6}");
    assert!(k6["not_issued_because"].as_str().unwrap().contains("not matched"), "{k6}");
    let k6 = k6["id"].as_u64().unwrap();
    let added_at = unix(&key(&env, k6)["added_at"]);
    assert_eq!(env.p2p("n0.os", json!({ISSUE: null}))["response"]["Err"], "no keys available");

    // Key 8 is not in the organization yet; retired before it matched, it waits for the match.
    let k8 = added(&env, 8, json!({}))["id"].as_u64().unwrap();
    let r = env.api(json!({"RetireKey": k8}));
    assert_eq!(r["Ok"]["admin_api_retirement"], "pending: not matched yet", "{r}");
    let status = env.api(json!({"Status": null}));
    assert_eq!(status["unmatched"].as_array().unwrap().len(), 2, "{status}");

    // Hours pass: key 6's usage cannot be fetched while its id is unknown.
    env.poll();
    for _ in 0..4 {
        env.advance(3600);
    }
    env.poll();
    assert_eq!(key(&env, k6)["spent_micro_usd"], 0);

    // Matching by hand is checked against the organization's keys.
    let r = env.api(json!({"MatchKey": {"key": k8, "api_key_id": "apikey_TEST01"}}));
    assert!(r["Err"].as_str().unwrap().contains("belongs to another secret"), "{r}");
    let r = env.api(json!({"MatchKey": {"key": k6, "api_key_id": "apikey_NOPE"}}));
    assert!(r["Err"].as_str().unwrap().contains("no API key apikey_NOPE"), "{r}");
    let r = env.api(json!({"MatchKey": {"key": k6, "api_key_id": "apikey_TEST06"}}));
    assert_eq!(r["Ok"]["api_key_id"], "apikey_TEST06", "{r}");

    // Once matched, its usage since it was added is fetched by its id: spend is complete.
    let closed_until = now(&env) - now(&env).rem_euclid(3600);
    let from = added_at - added_at.rem_euclid(3600);
    let expected = hand_priced(&truth(&env, "apikey_TEST06", from, closed_until), (closed_until - from) / 3600, false);
    env.eventually("key 6's usage since it was added", || spent_before(&env, k6, closed_until).1 == expected);
    println!("late match backfill: expected {expected} µUSD, stored {}", spent_before(&env, k6, closed_until).1);
    assert!(expected > 0);
    assert_eq!(spent_before(&env, k6, closed_until).0, from, "usage from the hour it was added");
    assert!(issued(&env.p2p("n0.os", json!({ISSUE: null}))).is_some(), "a matched key is issued");

    // Key 8 appears in the organization: the next poll matches it and deactivates it.
    env.fake_control("keys", Some(json!({"id": "apikey_TEST08", "name": "late", "partial_key_hint": "sk-ant-api03-TES...0008"})));
    env.poll();
    env.eventually("key 8 deactivated once matched", || key(&env, k8)["admin_api_retirement"] == "confirmed: inactive");
    assert_eq!(status_updates_of(&env, "apikey_TEST08").len(), 1);
}

#[test]
fn every_usage_row_is_priced_to_the_micro_dollar() {
    let env = Env::start("pricing", "truth.json", &[]);
    env.configure_admin_api();
    let k1 = added(&env, 1, json!({}))["id"].as_u64().unwrap();
    env.poll();
    for _ in 0..3 {
        env.advance(3600);
    }
    env.poll();
    let closed_until = now(&env) - now(&env).rem_euclid(3600);
    let (first, stored) = spent_before(&env, k1, closed_until);
    let rows = truth(&env, "apikey_TEST01", first, closed_until);
    // Sonnet 3.7 standard and batch, Sonnet 4.5 long context, web search, Haiku 3 rows that price
    // to 0.5 µUSD (rounds to 0) and 0.625 µUSD (rounds to 1) an hour, and a model no table knows
    // (priced at the highest known rates).
    let hours = (closed_until - first) / 3600;
    let expected = hand_priced(&rows, hours, false);
    println!("3.x + batch + long context + web search + unknown model: expected {expected} µUSD, stored {stored}");
    assert_eq!(stored, expected);
    let status = env.api(json!({"Status": null}));
    let unknown = status["unknown_models"].as_array().unwrap();
    assert_eq!(unknown.len(), 1, "{status}");
    assert_eq!(unknown[0]["model"], "claude-opus-5-20270101");
    assert!(unknown[0]["message"].as_str().unwrap().contains("priced at the highest known rates"));

    // The operator prices the model: stored hours are priced again from their token counts.
    let settings = env.api(json!({"GetSettings": null}));
    let mut table = settings["price_table"].clone();
    table["entries"].as_array_mut().unwrap().push(json!({"model_prefix": "claude-opus-5", "label": "Opus 5",
        "prices": {"input": 5_000_000, "cache_write_5m": 6_250_000, "cache_write_1h": 10_000_000, "cache_read": 500_000, "output": 25_000_000}}));
    let r = env.api(json!({"UpdateSettings": {"price_table": table}}));
    assert!(r.get("Ok").is_some(), "{r}");
    let repriced = spent_before(&env, k1, closed_until).1;
    let expected = hand_priced(&rows, hours, true);
    println!("after pricing the unknown model: expected {expected} µUSD, stored {repriced}");
    assert_eq!(repriced, expected);
    assert_eq!(env.api(json!({"Status": null}))["unknown_models"], json!([]));
    // Restart: the re-priced figures are what SQLite holds.
    env.restart_process(ISSUER);
    assert_eq!(spent_before(&env, k1, closed_until).1, expected);
}

#[test]
fn retirements_land_whatever_the_organization_already_did() {
    let env = Env::start("retirements", "truth.json", &[]);
    env.configure_admin_api();
    let k4 = added(&env, 4, json!({}))["id"].as_u64().unwrap();
    let k5 = added(&env, 5, json!({}))["id"].as_u64().unwrap();
    env.poll();

    // 403 on reading key 4: shown to the operator as needing action.
    env.fake_control("faults", Some(json!({"faults": [{"status": 403, "path_prefix": "/v1/organizations/api_keys/apikey_TEST04", "count": 1}]})));
    env.api(json!({"RetireKey": k4}));
    env.eventually("the 403 on the key's row", || key(&env, k4)["retirement_needs_operator"] == true);
    let status = env.api(json!({"Status": null}));
    let errors = status["retirement_errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["key"] == k4 && e["needs_operator"] == true && e["message"].as_str().unwrap().contains("403")), "{status}");
    // Meanwhile the organization archives it: the next retirement pass reads it back and counts
    // any status but active as done, without calling the update.
    env.fake_control("key_status", Some(json!({"id": "apikey_TEST04", "status": "archived"})));
    env.advance(300);
    env.eventually("key 4 confirmed archived", || key(&env, k4)["admin_api_retirement"] == "confirmed: archived");
    assert_eq!(key(&env, k4)["retirement_error"], Value::Null);

    // Key 5: the update is refused once; the key expires in the organization meanwhile.
    env.fake_control("faults", Some(json!({"faults": [{"status": 403, "method": "POST", "path_prefix": "/v1/organizations/api_keys/apikey_TEST05", "count": 1}]})));
    env.api(json!({"RetireKey": k5}));
    env.eventually("the refused update on the key's row", || key(&env, k5)["retirement_error"].is_string());
    env.fake_control("key_status", Some(json!({"id": "apikey_TEST05", "status": "expired"})));
    env.advance(300);
    env.eventually("key 5 confirmed expired", || key(&env, k5)["admin_api_retirement"] == "confirmed: expired");

    // Confirmed retirements are not retried: more passes and polls leave the keys alone.
    let calls = |id: &str| env.fake_control("seen", None)["request_counts"][format!("/v1/organizations/api_keys/{id}")].as_u64().unwrap_or(0);
    let before = (calls("apikey_TEST04"), calls("apikey_TEST05"));
    for _ in 0..3 {
        env.advance(300);
    }
    env.poll();
    assert_eq!((calls("apikey_TEST04"), calls("apikey_TEST05")), before, "no retirement loop");
    assert!(status_updates_of(&env, "apikey_TEST04").is_empty() && status_updates_of(&env, "apikey_TEST05").is_empty());
    assert_eq!(env.api(json!({"Status": null}))["retirement_errors"], json!([]));
}

#[test]
fn a_due_key_is_deactivated_within_five_minutes_with_a_day_long_poll_interval() {
    let env = Env::start("due-key", "truth.json", &[]);
    env.configure_admin_api();
    let r = env.api(json!({"UpdateSettings": {"poll_interval_secs": 86_400}}));
    assert!(r.get("Ok").is_some(), "{r}");
    let k7 = added(&env, 7, json!({"lifetime_days": 1}));
    let expires_at = unix(&k7["expires_at"]);
    env.poll();
    env.advance(expires_at - now(&env) - 30);
    assert!(status_updates_of(&env, "apikey_TEST07").is_empty(), "deactivated before it was due");
    let mut waited = 0;
    while status_updates_of(&env, "apikey_TEST07").is_empty() && waited < 600 {
        env.advance(30);
        waited += 30;
    }
    let updates = status_updates_of(&env, "apikey_TEST07");
    assert_eq!(updates.len(), 1, "deactivated once: {updates:?}");
    let latency = unix(&updates[0]["at"]) - expires_at;
    println!("due key deactivated {latency} virtual seconds after it was due (poll interval 24 h)");
    assert!((0..=300).contains(&latency), "latency {latency} s");
    assert_eq!(key(&env, k7["id"].as_u64().unwrap())["retired_reason"], "expired");
}

#[test]
fn analytics_cost_is_a_third_source_when_the_organization_has_it() {
    let env = Env::start("analytics", "truth.json", &[]);
    env.configure_admin_api();
    let k3 = added(&env, 3, json!({}))["id"].as_u64().unwrap();
    env.poll();
    let status = env.api(json!({"Status": null}));
    assert_eq!(status["poller"]["analytics_available"], true, "{status}");
    // Key 3: 3,600 input + 720 output tokens of Sonnet 4.5 an hour = 0.0216 USD an hour, 0.5184 a day,
    // at the fake's own list prices.
    let detail = env.api(json!({"KeyDetail": k3}))["Ok"].clone();
    assert_eq!(detail["authoritative_source"], "analytics", "{detail}");
    assert_eq!(detail["estimate_source"], "usage_estimate");
    let authoritative = detail["authoritative_micro_usd"].as_i64().unwrap();
    assert!(authoritative >= 6 * 518_400 && authoritative % 518_400 == 0, "whole days of 0.5184 USD: {authoritative}");
    // Over whole days the estimate covers, the estimate (same list prices) agrees exactly.
    println!("analytics: {authoritative} µUSD over closed days; estimate over the same days {}", detail["estimate_same_days_micro_usd"]);
    assert_eq!(detail["estimate_same_days_micro_usd"], authoritative, "{detail}");
    assert_eq!(detail["drift_basis_points"], 0);

    // An organization without the beta: no poll error, the Status page says so, figures stay.
    env.fake_control("analytics", Some(json!({"mode": "forbidden"})));
    env.poll();
    let status = env.api(json!({"Status": null}));
    assert_eq!(status["poller"]["last_error"], Value::Null, "{status}");
    assert_eq!(status["poller"]["analytics_available"], false);
    assert!(status["poller"]["analytics_note"].as_str().unwrap().contains("403"), "{status}");
    assert_eq!(env.api(json!({"KeyDetail": k3}))["Ok"]["authoritative_micro_usd"], authoritative);
}

#[test]
fn workspace_per_key_prepares_attributes_and_archives() {
    let env = Env::start("workspaces", "truth.json", &[]);
    env.configure_admin_api();
    // Without the analytics beta, a key alone in its workspace gets the cost report as its own.
    env.fake_control("analytics", Some(json!({"mode": "forbidden"})));
    let r = env.api(json!({"PrepareWorkspace": {"name": "trial for alice"}}));
    assert!(r["Err"].as_str().unwrap().contains("workspace-per-key mode"), "off by default: {r}");
    let r = env.api(json!({"UpdateSettings": {"workspace_per_key": true, "archive_workspace_on_retire": true}}));
    assert!(r.get("Ok").is_some(), "{r}");

    let r = env.api(json!({"PrepareWorkspace": {"name": "trial for alice"}}));
    let ws = r["Ok"]["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_string();
    assert!(r["Ok"]["next_step"].as_str().unwrap().contains("Console"), "{r}");
    let seen = env.fake_control("seen", None);
    assert!(seen["workspace_events"].as_array().unwrap().iter().any(|e| e["workspace_id"] == ws.as_str() && e["event"] == "created"), "{seen}");

    // Key 9 is alone in its own workspace: its cost report is authoritative and, at the same list
    // prices, equal to the estimate over whole days.
    let k9 = added(&env, 9, json!({}))["id"].as_u64().unwrap();
    env.poll();
    let detail = env.api(json!({"KeyDetail": k9}))["Ok"].clone();
    assert_eq!(detail["authoritative_source"], "cost_report", "{detail}");
    assert_eq!(detail["estimate_same_days_micro_usd"], detail["authoritative_micro_usd"], "{detail}");
    assert_eq!(detail["drift_basis_points"], 0);

    // The operator creates key 10 in the prepared workspace (in the Console) and adds it.
    env.fake_control("keys", Some(json!({"id": "apikey_TEST10", "name": "alice", "partial_key_hint": "sk-ant-api03-TES...0010", "workspace_id": ws})));
    let k10 = added(&env, 10, json!({}));
    assert_eq!(k10["workspace_id"], ws.as_str(), "{k10}");
    let k10 = k10["id"].as_u64().unwrap();
    let list = env.api(json!({"ListWorkspaces": null}));
    assert_eq!(list[0]["key"], k10, "{list}");

    // Retiring it archives its workspace too; key 9's workspace, not prepared here, is kept.
    env.api(json!({"RetireKey": k10}));
    env.api(json!({"RetireKey": k9}));
    env.eventually("key 10's workspace archived", || {
        let events = env.fake_control("seen", None)["workspace_events"].clone();
        events.as_array().unwrap().iter().any(|e| e["workspace_id"] == ws.as_str() && e["event"] == "archived")
    });
    env.eventually("both retirements confirmed", || {
        [k9, k10].iter().all(|k| key(&env, *k)["admin_api_retirement"].as_str().is_some_and(|s| s.starts_with("confirmed")))
    });
    let events = env.fake_control("seen", None)["workspace_events"].clone();
    assert!(!events.as_array().unwrap().iter().any(|e| e["workspace_id"] == "wrkspc_TESTsolo9" && e["event"] == "archived"), "{events}");
    assert!(env.api(json!({"ListWorkspaces": null}))[0]["archived_at"].is_string());
}

#[test]
fn a_key_still_being_looked_up_at_a_restart_is_looked_up_again() {
    let env = Env::start("first-match-restart", "truth.json", &["n0.os".to_string()]);
    env.configure_admin_api();
    env.poll();
    // The look-up of the new key is slow, and the issuer restarts while it runs.
    env.fake_control("faults", Some(json!({"faults": [{"delay_ms": 15000, "count": 1, "path_prefix": "/v1/organizations/api_keys"}]})));
    let r = env.api(json!({"AddKey": {"secret": secret(1), "name": "k1", "node_cap": null}}));
    assert_eq!(r["Ok"]["matching"], true, "{r}");
    let k1 = r["Ok"]["id"].as_u64().unwrap();
    env.restart_process(ISSUER);
    // Not left withheld until some later poll: looked up again at start.
    env.eventually_within(60, "key 1 matched after the restart", || key(&env, k1)["matching"] == false);
    assert_eq!(key(&env, k1)["api_key_id"], "apikey_TEST01");
    assert_eq!(issued(&env.p2p("n0.os", json!({ISSUE: null}))).as_deref(), Some(secret(1).as_str()));
}
