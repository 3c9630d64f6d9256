//! Upgrade from earlier releases: the current package on the current devnode must load a data dir
//! saved by release aee7256 or by release ea4fe5c (its key-issuer and cost-poller state and its
//! SQLite database) and go on from it, and the upgraded data dir must load again. The fixtures and
//! what each old release showed before it was shut down are in `tools/e2e/fixtures/release-<commit>/`
//! (see their README). Requires `cargo xtask build` (cargo xtask test runs it first).

use std::collections::{BTreeMap, BTreeSet};

use e2e::*;
use serde_json::{json, Value};

/// What release aee7256 answered for a key retired before it was matched to an Admin API id.
const OLD_NOT_NEEDED: &str = "not needed (key not resolved)";
/// What the current release says for it: the retirement waits for the match.
const AWAITING_MATCH: &str = "pending: not matched yet";

/// What differs between the fixtures of the releases.
struct Fixture {
    /// The release's commit: the fixture is `tools/e2e/fixtures/release-<commit>/`.
    release: &'static str,
    /// The fixture holds a key retired before it was matched, answered `OLD_NOT_NEEDED` by its release.
    has_not_needed_retirement: bool,
    /// Settings (GetSettings fields) the upgrade is meant to change, so not compared with the old answer.
    settings_changed_by_upgrade: &'static [&'static str],
    /// The fixture has a key matched by hand (`MatchKey`) and an active key never matched.
    has_unmatched_keys: bool,
}

const RELEASE_AEE7256: Fixture = Fixture {
    release: "aee7256",
    has_not_needed_retirement: true,
    // Saved before the price table had a revision: the upgrade adds the default entries it lacks.
    settings_changed_by_upgrade: &["price_table"],
    has_unmatched_keys: false,
};

const RELEASE_EA4FE5C: Fixture = Fixture {
    release: "ea4fe5c",
    has_not_needed_retirement: false,
    // Saved at price table revision 1, the current one: kept exactly, stored usage not re-priced.
    settings_changed_by_upgrade: &[],
    has_unmatched_keys: true,
};

impl Fixture {
    fn dir(&self) -> std::path::PathBuf {
        root().join("tools/e2e/fixtures").join(format!("release-{}", self.release))
    }
}

fn expected(fixture: &Fixture) -> Value {
    let path = fixture.dir().join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// An RFC 3339 time (or null) as unix seconds, so a change of formatting is not a change of data.
fn secs(v: &Value) -> Option<i64> {
    v.as_str().map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).timestamp())
}

/// The key in a `RequestApiKey` answer: `{"Ok": "<key>"}` or `{"Ok": {"api_key": "<key>", ...}}`.
fn issued_key(answer: &Value) -> Option<String> {
    let ok = answer["response"].get("Ok")?;
    ok.as_str().or_else(|| ok["api_key"].as_str()).map(str::to_string)
}

/// The fake secret whose hint is `hint` (`sk-ant-api03-TES...000N` → `secret(N)`).
fn secret_of_hint(hint: &str) -> String {
    let n: u32 = hint[hint.len() - 4..].parse().unwrap_or_else(|_| panic!("hint {hint}"));
    let s = secret(n);
    assert_eq!(format!("{}...{}", &s[..16], &s[s.len() - 4..]), hint);
    s
}

fn ok(env: &Env, call: Value) -> Value {
    let r = env.api(call.clone());
    assert!(r.get("Ok").is_some(), "{call}: {r}");
    r["Ok"].clone()
}

fn list_keys(env: &Env) -> BTreeMap<u64, Value> {
    let keys = env.api(json!({"ListKeys": null}));
    let keys = keys.as_array().unwrap_or_else(|| panic!("ListKeys: {keys}"));
    keys.iter().map(|k| (k["id"].as_u64().unwrap(), k.clone())).collect()
}

/// The stored facts of a key, as compared across the upgrade (times as unix seconds).
fn key_facts(k: &Value, with_spend: bool) -> Value {
    let mut facts = json!({
        "id": k["id"], "name": k["name"], "masked_key": k["masked_key"], "status": k["status"],
        "retired_reason": k["retired_reason"], "retired_at": secs(&k["retired_at"]),
        "api_key_id": k["api_key_id"], "workspace_id": k["workspace_id"],
        "added_at": secs(&k["added_at"]), "expires_at": secs(&k["expires_at"]),
        "budget_micro_usd": k["budget_micro_usd"], "node_cap": k["node_cap"], "nodes": k["nodes"],
    });
    if with_spend {
        facts["spent_micro_usd"] = k["spent_micro_usd"].clone();
    }
    facts
}

/// Waits until the issuer has finished starting: its init restores the node maps from SQLite (and
/// may rework stored data) while it already answers; ListNodes waits for the database.
fn wait_started(env: &Env, when: &str) {
    assert!(env.wait_quiet(60), "{when}: devnode never went quiet");
    let r = env.api(json!({"ListNodes": {"limit": 1}}));
    assert!(r.get("Ok").is_some(), "{when}: the issuer's database did not open: {r}");
    assert!(env.wait_quiet(60), "{when}: devnode never went quiet");
}

/// ListKeys as the old release left it: same keys and every field the old release answered
/// (spend too when `with_spend`; times compared as instants), its "not needed" retirement of an
/// unmatched key now awaiting the match, and the fields new since then at their defaults.
fn check_keys(env: &Env, exp: &Value, fixture: &Fixture, with_spend: bool, when: &str) {
    let keys = list_keys(env);
    let old: BTreeMap<u64, Value> = exp["keys"].as_array().unwrap().iter().map(|k| (k["id"].as_u64().unwrap(), k.clone())).collect();
    assert_eq!(keys.keys().collect::<Vec<_>>(), old.keys().collect::<Vec<_>>(), "{when}: the same key ids");
    for (id, before) in &old {
        let now = &keys[id];
        assert_eq!(key_facts(now, with_spend), key_facts(before, with_spend), "{when}: key {id}");
        for (field, was) in before.as_object().unwrap() {
            match field.as_str() {
                "admin_api_retirement" => {}
                "spent_micro_usd" if !with_spend => {}
                f if f.ends_with("_at") => assert_eq!(secs(&now[f]), secs(was), "{when}: key {id}: {f}: {now}"),
                f => assert_eq!(&now[f], was, "{when}: key {id}: {f}: {now}"),
            }
        }
        let retirement = match before["admin_api_retirement"].as_str() {
            Some(OLD_NOT_NEEDED) => json!(AWAITING_MATCH),
            _ => before["admin_api_retirement"].clone(),
        };
        assert_eq!(now["admin_api_retirement"], retirement, "{when}: Admin API retirement of key {id}: {now}");
        // New since both releases: a key saved by them is past its first look-up.
        assert_eq!(now["matching"], false, "{when}: key {id} is not \"matching…\": {now}");
    }
    assert_eq!(
        old.values().any(|k| k["admin_api_retirement"] == OLD_NOT_NEEDED),
        fixture.has_not_needed_retirement,
        "whether the fixture has a \"not needed\" retirement"
    );
    if fixture.has_unmatched_keys {
        assert!(
            old.values().any(|k| k["status"] == "active" && k["api_key_id"].is_null() && k["unresolved_reason"].is_string()),
            "the fixture has an active key never matched"
        );
        assert!(
            exp["audit_log"].as_array().unwrap().iter().any(|e| e["action"] == "match key by hand" && e["outcome"] == "matched"),
            "the fixture has a key matched by hand"
        );
    }
}

/// ListNodes: the same total and each node with the key, key name, hint and issue time it had.
fn check_nodes(env: &Env, exp: &Value, extra: usize, when: &str) {
    let page = ok(env, json!({"ListNodes": {"limit": 500}}));
    assert_eq!(page["total"].as_u64().unwrap() as usize, exp["nodes_total"].as_u64().unwrap() as usize + extra, "{when}: ListNodes total");
    let now: BTreeMap<String, Value> = page["nodes"].as_array().unwrap().iter().map(|n| (n["node"].as_str().unwrap().to_string(), n.clone())).collect();
    for before in exp["nodes"].as_array().unwrap() {
        let node = before["node"].as_str().unwrap();
        let n = now.get(node).unwrap_or_else(|| panic!("{when}: node {node} is missing from ListNodes"));
        assert_eq!(
            (&n["key_id"], &n["masked_key"], secs(&n["issued_at"])),
            (&before["key_id"], &before["masked_key"], secs(&before["issued_at"])),
            "{when}: node {node}"
        );
    }
}

/// Every node the old release issued asks again: a holder of a live key gets the very same key,
/// the holders of the retired and the removed key get the refusal the old release gave.
fn check_node_answers(env: &Env, exp: &Value, when: &str) {
    for (node, before) in exp["request_api_key_answers"].as_object().unwrap() {
        let answer = env.p2p(node, json!({"RequestApiKey": null}));
        if let Some(hint) = before["key_hint"].as_str() {
            assert_eq!(issued_key(&answer), Some(secret_of_hint(hint)), "{when}: {node} gets the key it held ({hint}): {answer}");
        } else {
            assert_eq!(answer["response"]["Err"], before["err"], "{when}: {node}: {answer}");
        }
    }
    let refused: BTreeSet<&str> = exp["request_api_key_answers"].as_object().unwrap().values().filter_map(|a| a["err"].as_str()).collect();
    assert_eq!(refused, BTreeSet::from(["key retired: operator"]), "the fixture has nodes of a retired key");
}

/// Cost as the old release showed it: the cumulative series total, each key's total, and each
/// key's cost per model.
fn check_costs(env: &Env, exp: &Value, when: &str) {
    let all = ok(env, json!({"CostSeries": {"key": null, "max_points": 20000}}));
    assert_eq!(all["total_micro_usd"], exp["cost_series_total_micro_usd"], "{when}: cost series total");
    assert!(exp["cost_series_total_micro_usd"].as_i64().unwrap() > 0);
    for (id, total) in exp["cost_series_total_by_key"].as_object().unwrap() {
        let id: u64 = id.parse().unwrap();
        let s = ok(env, json!({"CostSeries": {"key": id, "max_points": 20000}}));
        assert_eq!(s["total_micro_usd"], *total, "{when}: cost series total of key {id}");
    }
    for (id, models) in exp["usage_by_model_by_key"].as_object().unwrap() {
        let id: u64 = id.parse().unwrap();
        let by_model = |models: &Value| -> BTreeMap<String, i64> {
            let mut m = BTreeMap::new();
            for u in models.as_array().unwrap() {
                *m.entry(u["model"].as_str().unwrap().to_string()).or_default() += u["cost_micro_usd"].as_i64().unwrap();
            }
            m
        };
        let detail = ok(env, json!({"KeyDetail": id}));
        assert_eq!(by_model(&detail["usage_by_model"]), by_model(models), "{when}: cost by model of key {id}");
    }
}

/// Settings the current release has that the old ones may lack, with their defaults.
fn new_setting_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("issue_unmatched_keys", json!(false)),
        ("workspace_per_key", json!(false)),
        ("archive_workspace_on_retire", json!(false)),
        ("audit_retention_days", json!(365)),
        ("issuance_policy", json!("open")),
        ("allowlist", json!([])),
        ("denylist", json!([])),
        ("alerts", json!({"budget_percents": [50, 80, 95, 100], "pool_low_below": 0, "webhook_set": false, "webhook_hint": null})),
    ]
}

/// Settings kept: every setting the old release answered (but those the upgrade is meant to change),
/// the admin key still set, and the settings new since that release at their defaults.
fn check_settings(env: &Env, exp: &Value, fixture: &Fixture, base_url: &str, when: &str) {
    let s = env.api(json!({"GetSettings": null}));
    let old = &exp["settings"];
    for (field, was) in old.as_object().unwrap() {
        if field == "admin_api_base_url" || fixture.settings_changed_by_upgrade.contains(&field.as_str()) {
            continue;
        }
        assert_eq!(&s[field], was, "{when}: setting {field}: {s}");
    }
    for (field, default) in new_setting_defaults() {
        if old.get(field).is_none() {
            assert_eq!(s[field], default, "{when}: the new setting {field} takes its default: {s}");
        }
    }
    assert_eq!(s["poll_interval_secs"], 1800, "{when}");
    assert_eq!(s["default_budget_micro_usd"], 7_000_000, "{when}");
    assert_eq!(s["admin_key_set"], true, "{when}: the admin key is still set");
    assert_eq!(s["admin_api_base_url"], base_url, "{when}");
}

fn audit_entries(env: &Env) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = ok(env, json!({"AuditLog": {"before_seq": before, "limit": 500}}));
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        before = page["next_before_seq"].clone();
        if before.is_null() {
            return entries;
        }
    }
}

/// The audit log holds at least `at_least` entries, among them every entry the old release wrote.
fn check_audit(env: &Env, exp: &Value, at_least: usize, when: &str) -> usize {
    let entries = audit_entries(env);
    assert!(entries.len() >= at_least, "{when}: {} audit entries, expected at least {at_least}", entries.len());
    let fact = |e: &Value| json!([e["seq"], secs(&e["at"]), e["actor"], e["action"], e["detail"], e["outcome"]]).to_string();
    let now: BTreeSet<String> = entries.iter().map(fact).collect();
    for old in exp["audit_log"].as_array().unwrap() {
        assert!(now.contains(&fact(old)), "{when}: the old audit entry {old} is kept");
    }
    entries.len()
}

fn polls_total(env: &Env) -> u64 {
    env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0)
}

/// Cumulative cost of `key` (or all) at the last bucket that starts before `until`.
fn series_value_before(env: &Env, key: Option<u64>, until: i64) -> i64 {
    let s = ok(env, json!({"CostSeries": {"key": key, "max_points": 20000}}));
    let t = s["t"].as_array().unwrap();
    let v = s["v"].as_array().unwrap();
    t.iter().zip(v).filter(|(t, _)| t.as_i64().unwrap() < until).last().map(|(_, v)| v.as_i64().unwrap()).unwrap_or(0)
}

#[test]
fn release_aee7256_data_dir_loads_and_goes_on() {
    data_dir_loads_and_goes_on(&RELEASE_AEE7256);
}

#[test]
fn release_ea4fe5c_data_dir_loads_and_goes_on() {
    data_dir_loads_and_goes_on(&RELEASE_EA4FE5C);
}

/// The tables of the current schema that the old releases lacked answer (their migrations ran):
/// alerts (none about a budget: no key spent half of it) and approval requests (none).
fn check_new_tables(env: &Env, when: &str) {
    let alerts = ok(env, json!({"ListAlerts": {}}));
    let budget_alerts: Vec<&Value> = alerts["open"].as_array().unwrap().iter().filter(|a| a["kind"] == "budget").collect();
    assert!(budget_alerts.is_empty(), "{when}: {alerts}");
    let requests = ok(env, json!({"ListRequests": {}}));
    assert_eq!((&requests["total"], &requests["pending_total"]), (&json!(0), &json!(0)), "{when}: {requests}");
}

fn data_dir_loads_and_goes_on(fixture: &Fixture) {
    let exp = expected(fixture);
    assert_eq!(exp["release"], fixture.release);
    let peers = strings(&exp["peers"]);
    let clock_ms = exp["clock_at_shutdown"]["now_ms"].as_i64().unwrap();
    let mut env = Env::start_with_data(&format!("upgrade-{}", fixture.release), &fixture.dir().join("data"), "small.json", &peers, Some(clock_ms));

    // The clock resumes where the old release stopped (the test does not depend on the day it runs).
    let now_ms = get(&format!("{}/devnode/clock", env.control))["now_ms"].as_i64().unwrap();
    assert!(now_ms >= clock_ms && now_ms < clock_ms + 600_000, "clock {now_ms} vs {clock_ms}");

    wait_started(&env, "after the upgrade");

    // 1. Right after the upgrade, before any Admin API call (the saved URL is a dead port, so no
    //    poll can change anything): everything the old release showed.
    check_keys(&env, &exp, fixture, true, "after the upgrade");
    check_costs(&env, &exp, "after the upgrade");
    check_nodes(&env, &exp, 0, "after the upgrade");
    check_settings(&env, &exp, fixture, exp["settings"]["admin_api_base_url"].as_str().unwrap(), "after the upgrade");
    check_new_tables(&env, "after the upgrade");
    let audit_count = check_audit(&env, &exp, exp["audit_entries"].as_u64().unwrap() as usize, "after the upgrade");
    check_node_answers(&env, &exp, "after the upgrade");
    check_nodes(&env, &exp, 0, "after the nodes asked again");
    let audit_count = check_audit(&env, &exp, audit_count, "after the nodes asked again");
    // Closed hours as of the old release's last poll, per key and in total.
    let last_poll = secs(&exp["status"]["last_success"]).unwrap();
    let closed_until = last_poll - last_poll.rem_euclid(3600);
    let key_ids: Vec<u64> = list_keys(&env).into_keys().collect();
    let closed: Vec<(Option<u64>, i64)> =
        std::iter::once(None).chain(key_ids.iter().map(|&id| Some(id))).map(|key| (key, series_value_before(&env, key, closed_until))).collect();
    assert!(closed[0].1 > 0, "cost before {closed_until}: {closed:?}");

    // 2. Back online: the organization still holds the keys the old release's run added to it (as
    //    in the Console) and holds the retired and the removed key as inactive, as the old release
    //    left it; point the app at this test's fake Admin API and poll.
    for k in exp.get("org_keys_added").and_then(Value::as_array).into_iter().flatten() {
        let r = env.fake_control("keys", Some(k.clone()));
        assert!(r.get("error").is_none(), "adding organization key {}: {r}", k["id"]);
    }
    let old_keys: Vec<Value> = exp["keys"].as_array().unwrap().clone();
    for k in &old_keys {
        if k["admin_api_retirement"] == "confirmed: inactive" {
            let r = env.admin_api_post(&format!("/v1/organizations/api_keys/{}", k["api_key_id"].as_str().unwrap()), json!({"status": "inactive"}));
            assert_eq!(r["status"], "inactive", "{r}");
        }
    }
    env.configure_admin_api();
    check_settings(&env, &exp, fixture, &env.fake_url, "after pointing at the fake Admin API");
    let polls = polls_total(&env);
    env.api(json!({"PollNow": null}));
    env.eventually("a successful poll after the upgrade", || {
        let status = env.api(json!({"Status": null}));
        status["poller"]["polls_total"].as_u64().unwrap_or(0) > polls && status["poller"]["last_error"].is_null()
    });
    let keys = list_keys(&env);
    for k in &old_keys {
        let now = &keys[&k["id"].as_u64().unwrap()];
        assert_eq!(key_facts(now, false), key_facts(k, false), "after a poll: key {}", k["id"]);
        assert!(now["spent_micro_usd"].as_i64().unwrap() >= k["spent_micro_usd"].as_i64().unwrap(), "spend never drops: {now}");
        if k["admin_api_retirement"] == OLD_NOT_NEEDED {
            assert_eq!(now["admin_api_retirement"], AWAITING_MATCH, "still unmatched, still waiting: {now}");
        } else {
            assert_eq!(now["admin_api_retirement"], k["admin_api_retirement"], "after a poll: key {}", k["id"]);
        }
        if k["api_key_id"].is_null() {
            assert!(now["unresolved_reason"].is_string(), "after a poll: still unmatched: {now}");
        }
        assert_eq!(now["matching"], false, "after a poll: {now}");
    }
    for (key, value) in &closed {
        assert_eq!(series_value_before(&env, *key, closed_until), *value, "re-polling the old release's closed hours changes nothing (key {key:?})");
    }
    // A node that never had a key gets one of the live matched keys with room (key 1 is at its cap
    // of 2; unmatched keys are not issued, `issue_unmatched_keys` being off).
    let free: BTreeSet<String> = old_keys
        .iter()
        .filter(|k| k["status"] == "active" && k["api_key_id"].is_string() && (k["node_cap"].is_null() || k["node_cap"].as_u64() > k["nodes"].as_u64()))
        .map(|k| secret_of_hint(k["masked_key"].as_str().unwrap()))
        .collect();
    let newcomer = peers.iter().find(|p| exp["request_api_key_answers"].get(p.as_str()).is_none()).unwrap().clone();
    let new_key = issued_key(&env.p2p(&newcomer, json!({"RequestApiKey": null}))).expect("a key for a new node after the upgrade");
    assert!(free.contains(&new_key), "{newcomer} got a live key with room");
    check_node_answers(&env, &exp, "after the poll");
    check_nodes(&env, &exp, 1, "after a new node");
    let audit_count = check_audit(&env, &exp, audit_count, "after the poll");

    // 3. The upgraded data dir loads again (the upgrade ran once and left a loadable state).
    let keys_before = list_keys(&env);
    let settings_before = env.api(json!({"GetSettings": null}));
    let now = chrono::DateTime::parse_from_rfc3339(env.api(json!({"Status": null}))["now"].as_str().unwrap()).unwrap().timestamp();
    let closed_now = now - now.rem_euclid(3600);
    let total_closed_now = series_value_before(&env, None, closed_now);
    env.shutdown_devnode();
    env.start_devnode_again();
    wait_started(&env, "after a restart");
    let keys_after = list_keys(&env);
    assert_eq!(keys_after.keys().collect::<Vec<_>>(), keys_before.keys().collect::<Vec<_>>());
    for (id, before) in &keys_before {
        let after = &keys_after[id];
        assert_eq!(key_facts(after, false), key_facts(before, false), "after a restart: key {id}");
        assert_eq!(after["admin_api_retirement"], before["admin_api_retirement"], "after a restart: key {id}");
        assert!(after["spent_micro_usd"].as_i64() >= before["spent_micro_usd"].as_i64(), "after a restart: key {id}");
    }
    assert_eq!(series_value_before(&env, None, closed_now), total_closed_now, "cost survives a restart");
    for (key, value) in &closed {
        assert_eq!(series_value_before(&env, *key, closed_until), *value, "after a restart: the old release's closed hours (key {key:?})");
    }
    assert_eq!(env.api(json!({"GetSettings": null})), settings_before, "settings survive a restart");
    check_node_answers(&env, &exp, "after a restart");
    assert_eq!(issued_key(&env.p2p(&newcomer, json!({"RequestApiKey": null}))), Some(new_key), "after a restart: {newcomer} keeps its key");
    check_nodes(&env, &exp, 1, "after a restart");
    check_audit(&env, &exp, audit_count, "after a restart");
}
