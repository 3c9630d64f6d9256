//! End-to-end tests of the real built package in devnode against fake-admin-api.
//! Requires `cargo xtask build` (cargo xtask test runs it first).

use std::collections::{HashMap, HashSet};

use e2e::*;
use serde_json::{json, Value};
use shared_types::cost::{price_tokens, TokenCounts};
use shared_types::price::PriceTable;

fn peers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node{i}.os")).collect()
}

fn add_key(env: &Env, n: u32, extra: Value) -> Value {
    let mut body = json!({"secret": secret(n), "name": format!("key {n}"), "node_cap": null, "budget_usd": "100"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = env.add_key(body);
    assert!(r.get("Ok").is_some(), "add key {n}: {r}");
    r["Ok"].clone()
}

fn issued_key(answer: &Value) -> Option<String> {
    answer["response"]["Ok"].as_str().map(str::to_string)
}

#[test]
fn fifty_nodes_five_keys_one_key_each_ever() {
    let nodes = peers(50);
    let env = Env::start("issuance", "small.json", &[nodes.clone(), vec!["late.os".into()]].concat());
    env.configure_admin_api();
    // Empty pool: refused and not recorded.
    let r = env.p2p("node0.os", json!({"RequestApiKey": null}));
    assert_eq!(r["response"]["Err"], "no keys available", "{r}");
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 0);

    for n in 1..=5 {
        add_key(&env, n, json!({}));
    }
    let mut holder: HashMap<String, String> = HashMap::new();
    let mut per_key: HashMap<String, u32> = HashMap::new();
    for node in &nodes {
        let key = issued_key(&env.p2p(node, json!({"RequestApiKey": null}))).expect("a key");
        *per_key.entry(key.clone()).or_default() += 1;
        holder.insert(node.clone(), key);
    }
    // Repeats return the same key; the platform's client gets the bare key (`{"Ok": "sk-..."}`),
    // and the lease request the same key with its times.
    for node in nodes.iter().take(10) {
        let again = issued_key(&env.p2p(node, json!({"RequestApiKey": null}))).unwrap();
        assert_eq!(again, holder[node]);
        let lease = env.p2p(node, json!({"RequestKeyLease": null}));
        let lease = lease["response"]["Ok"].as_object().unwrap_or_else(|| panic!("{lease}"));
        assert_eq!(lease["api_key"], holder[node].as_str());
        let mut fields: Vec<&String> = lease.keys().collect();
        fields.sort();
        assert_eq!(fields, ["api_key", "expires_at", "issued_at"]);
    }
    let page = env.api(json!({"ListNodes": {"limit": 500}}));
    assert_eq!(page["Ok"]["total"], 50);
    let distinct: HashSet<_> = page["Ok"]["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap().to_string()).collect();
    assert_eq!(distinct.len(), 50);
    // Plausibly uniform: 50 draws over 5 keys; every key used, none with more than 25.
    assert_eq!(per_key.len(), 5, "{per_key:?}");
    assert!(per_key.values().all(|&c| c <= 25), "{per_key:?}");

    // Retire one key: its nodes get the retirement error; nobody gets a second key.
    let keys = env.api(json!({"ListKeys": null}));
    let first = keys.as_array().unwrap().iter().find(|k| k["nodes"].as_u64().unwrap() > 0).unwrap().clone();
    let r = env.api(json!({"RetireKey": first["id"]}));
    assert_eq!(r["Ok"]["status"], "retired", "{r}");
    let victim = nodes.iter().find(|n| {
        let answer = env.p2p(n, json!({"RequestApiKey": null}));
        answer["response"]["Err"] == "key retired: operator"
    });
    assert!(victim.is_some(), "a node of the retired key gets the retirement error");
    let keys_after = env.api(json!({"ListKeys": null}));
    let total_nodes: u64 = keys_after.as_array().unwrap().iter().map(|k| k["nodes"].as_u64().unwrap()).sum();
    assert_eq!(total_nodes, 50);
    // A new node still gets a key from the rest.
    assert!(issued_key(&env.p2p("late.os", json!({"RequestApiKey": null}))).is_some());
}

/// Cost of the scenario's truth (tokens per model) with the default price table.
fn truth_micro_usd(truth: &Value) -> i64 {
    let table = PriceTable::default();
    let mut total = 0;
    for (model, t) in truth["models"].as_object().unwrap() {
        let tokens = TokenCounts {
            uncached_input: t["uncached_input"].as_u64().unwrap(),
            cache_write_5m: t["cache_write_5m"].as_u64().unwrap(),
            cache_write_1h: t["cache_write_1h"].as_u64().unwrap(),
            cache_read: t["cache_read"].as_u64().unwrap(),
            output: t["output"].as_u64().unwrap(),
            web_search_requests: t["web_search_requests"].as_u64().unwrap(),
        };
        total += price_tokens(&tokens, &table.lookup(model).unwrap().prices, table.web_search_per_thousand).0;
    }
    total
}

fn rfc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Cumulative cost of `key` (or all) at the last bucket before `until`.
fn series_value_before(env: &Env, key: Option<u64>, until: i64) -> (i64, i64) {
    let s = env.api(json!({"CostSeries": {"key": key, "max_points": 20000}}));
    let t = s["Ok"]["t"].as_array().unwrap();
    let v = s["Ok"]["v"].as_array().unwrap();
    let first = t.first().map(|x| x.as_i64().unwrap()).unwrap_or(0);
    let value = t.iter().zip(v).filter(|(t, _)| t.as_i64().unwrap() < until).last().map(|(_, v)| v.as_i64().unwrap()).unwrap_or(0);
    (first, value)
}

#[test]
fn seventy_two_hours_of_polling_match_the_truth_exactly() {
    let env = Env::start("polling", "small.json", &[]);
    env.configure_admin_api();
    let k1 = add_key(&env, 1, json!({"budget_usd": "100000"}))["id"].as_u64().unwrap();
    let k2 = add_key(&env, 2, json!({"budget_usd": "100000"}))["id"].as_u64().unwrap();
    env.api(json!({"PollNow": null}));
    env.eventually("a first successful poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    for _ in 0..72 {
        env.advance(3600);
    }
    env.api(json!({"PollNow": null}));
    let polls_before = env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap();
    env.eventually("the poll after 72 hours", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap() > polls_before);
    let status = env.api(json!({"Status": null}));
    assert!(status["poller"]["polls_total"].as_u64().unwrap() >= 72, "hourly polls ran: {status}");
    assert_eq!(status["poller"]["last_error"], Value::Null, "{status}");

    let now = chrono::DateTime::parse_from_rfc3339(status["now"].as_str().unwrap()).unwrap().timestamp();
    let closed_until = now - now.rem_euclid(3600);
    for (key, api_id) in [(k1, "apikey_TEST01"), (k2, "apikey_TEST02")] {
        let (first, value) = series_value_before(&env, Some(key), closed_until);
        let truth = env.fake_control(&format!("truth?api_key_id={api_id}&starting_at={}&ending_at={}", rfc(first), rfc(closed_until)), None);
        assert!(value > 0);
        assert_eq!(value, truth_micro_usd(&truth), "key {key}: app vs scenario truth");
    }
    let (first, total) = series_value_before(&env, None, closed_until);
    let truth = env.fake_control(&format!("truth?starting_at={}&ending_at={}", rfc(first), rfc(closed_until)), None);
    // The scenario's third key is not in the pool, so compare the two pooled keys.
    let t1 = env.fake_control(&format!("truth?api_key_id=apikey_TEST01&starting_at={}&ending_at={}", rfc(first), rfc(closed_until)), None);
    let t2 = env.fake_control(&format!("truth?api_key_id=apikey_TEST02&starting_at={}&ending_at={}", rfc(first), rfc(closed_until)), None);
    assert_eq!(total, truth_micro_usd(&t1) + truth_micro_usd(&t2));
    assert_eq!(truth_micro_usd(&truth), total);

    // Key detail: usage by model adds up to the key's spend; a burn rate and a runway exist.
    let detail = env.api(json!({"KeyDetail": k1}));
    let models = detail["Ok"]["usage_by_model"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{detail}");
    let by_model: i64 = models.iter().map(|m| m["cost_micro_usd"].as_i64().unwrap()).sum();
    assert_eq!(by_model, detail["Ok"]["key"]["spent_micro_usd"].as_i64().unwrap());
    assert!(detail["Ok"]["burn_rate_micro_usd_per_hour"].as_i64().unwrap() > 0);
    assert!(detail["Ok"]["budget_runs_out_in_secs"].as_u64().is_some());
    assert_eq!(env.api(json!({"KeyDetail": 99}))["Err"], "unknown key k99");

    // Polling the same window again changes nothing.
    let polls = env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap();
    env.api(json!({"PollNow": null}));
    env.eventually("one more poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap() > polls);
    let (_, again) = series_value_before(&env, None, closed_until);
    assert_eq!(again, total, "re-polling the same closed hours changes nothing");
}

#[test]
fn expiry_and_budget_retire_keys_through_the_admin_api_despite_errors() {
    let env = Env::start("retirement", "small.json", &peers(3));
    env.configure_admin_api();
    // Key 1 burns ~0.05 USD per hour against a 0.10 USD budget; key 2 expires after a day.
    let k1 = add_key(&env, 1, json!({"budget_usd": "0.10", "lifetime_days": 30}))["id"].as_u64().unwrap();
    let k2 = add_key(&env, 2, json!({"budget_usd": "100000", "lifetime_days": 1}))["id"].as_u64().unwrap();
    assert!(issued_key(&env.p2p("node0.os", json!({"RequestApiKey": null}))).is_some());
    // The first polls backfill a week of usage: key 1 is over budget at once.
    env.fake_control("faults", Some(json!({"faults": [{"status": 500, "count": 2, "path_prefix": "/v1/organizations/api_keys/"}]})));
    env.api(json!({"PollNow": null}));
    env.eventually("key 1 retired for budget", || {
        let keys = env.api(json!({"ListKeys": null}));
        keys.as_array().unwrap().iter().any(|k| k["id"] == k1 && k["retired_reason"] == "budget")
    });
    env.advance(86_400 + 60);
    // Expired on the issuer's own clock at once.
    let keys = env.api(json!({"ListKeys": null}));
    let key2 = keys.as_array().unwrap().iter().find(|k| k["id"] == k2).unwrap().clone();
    assert_eq!(key2["eligible"], false, "{key2}");
    let r = env.p2p("node1.os", json!({"RequestApiKey": null}));
    assert_eq!(r["response"]["Err"], "no keys available", "{r}");
    env.eventually("both keys set inactive at the Admin API", || {
        env.api(json!({"PollNow": null}));
        let seen = env.fake_control("seen", None);
        let updates = seen["status_updates"].as_array().unwrap();
        ["apikey_TEST01", "apikey_TEST02"].iter().all(|id| updates.iter().any(|u| u["api_key_id"] == *id && u["status"] == "inactive"))
    });
    env.eventually("retirements confirmed", || {
        let keys = env.api(json!({"ListKeys": null}));
        keys.as_array().unwrap().iter().all(|k| k["admin_api_retirement"] == "confirmed: inactive")
    });
    let seen = env.fake_control("seen", None);
    assert_eq!(seen["faults_left"], 0, "the injected 500s were hit and retried: {seen}");
}

#[test]
fn faults_are_retried_reported_and_never_double_count() {
    let env = Env::start("faults", "small.json", &[]);
    env.configure_admin_api();
    add_key(&env, 1, json!({"budget_usd": "100000"}));
    env.api(json!({"PollNow": null}));
    env.eventually("a first poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    // Compare closed hours only: the open bucket keeps growing with real time.
    let status = env.api(json!({"Status": null}));
    let now = chrono::DateTime::parse_from_rfc3339(status["now"].as_str().unwrap()).unwrap().timestamp();
    let closed_until = now - now.rem_euclid(3600);
    let spent = || series_value_before(&env, None, closed_until).1;
    let baseline = spent();
    assert!(baseline > 0);

    // 429 with retry-after, 500 and 529, then success: retried inside one poll.
    env.fake_control("faults", Some(json!({"faults": [{"status": 429, "retry_after": 1}, {"status": 500}, {"status": 529}]})));
    let polls = env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap();
    env.api(json!({"PollNow": null}));
    env.eventually("a poll through the faults", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap() > polls);
    assert_eq!(env.api(json!({"Status": null}))["poller"]["last_error"], Value::Null);
    assert_eq!(spent(), baseline, "no doubled samples");

    // Garbage: the poll fails, is reported, and keeps the old data.
    env.fake_control("faults", Some(json!({"faults": [{"malformed": true}]})));
    env.api(json!({"PollNow": null}));
    env.eventually("malformed JSON reported", || {
        let e = &env.api(json!({"Status": null}))["poller"]["last_error"];
        e["message"].as_str().is_some_and(|m| m.contains("malformed"))
    });
    assert_eq!(spent(), baseline);

    // 401: shown as needing the operator.
    env.fake_control("faults", Some(json!({"faults": [{"status": 401}]})));
    env.api(json!({"PollNow": null}));
    env.eventually("401 reported", || env.api(json!({"Status": null}))["poller"]["last_error"]["needs_operator"] == true);
    assert_eq!(spent(), baseline);
    let status = env.api(json!({"Status": null}));
    assert!(status["poller"]["last_error"]["message"].as_str().unwrap().contains("admin key"), "{status}");

    // Recovery.
    env.api(json!({"PollNow": null}));
    env.eventually("recovered", || env.api(json!({"Status": null}))["poller"]["last_error"] == Value::Null);
    assert_eq!(spent(), baseline);
}

#[test]
fn restarts_lose_nothing_and_never_issue_twice() {
    let mut env = Env::start("restart", "small.json", &peers(6));
    env.configure_admin_api();
    for n in 1..=3 {
        add_key(&env, n, json!({"budget_usd": "100000"}));
    }
    let mut holder = HashMap::new();
    for node in peers(3) {
        holder.insert(node.clone(), issued_key(&env.p2p(&node, json!({"RequestApiKey": null}))).unwrap());
    }
    env.api(json!({"PollNow": null}));
    env.eventually("a poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    let without_spend = |keys: Value| -> Vec<Value> {
        keys.as_array().unwrap().iter().map(|k| { let mut k = k.clone(); k["spent_micro_usd"] = Value::Null; k }).collect()
    };
    let status = env.api(json!({"Status": null}));
    let now = chrono::DateTime::parse_from_rfc3339(status["now"].as_str().unwrap()).unwrap().timestamp();
    let closed_until = now - now.rem_euclid(3600);
    let cost_before = series_value_before(&env, None, closed_until).1;
    assert!(cost_before > 0);
    let keys_before = without_spend(env.api(json!({"ListKeys": null})));

    env.restart_process(ISSUER);
    env.restart_process(POLLER);
    for (node, key) in &holder {
        assert_eq!(issued_key(&env.p2p(node, json!({"RequestApiKey": null}))).as_ref(), Some(key), "after process restarts");
    }
    // The restarted processes left the kernel idle: advancing the clock settles quickly.
    let t = std::time::Instant::now();
    env.advance(60);
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "advance waited {:?}", t.elapsed());
    env.restart_devnode();
    for (node, key) in &holder {
        assert_eq!(issued_key(&env.p2p(node, json!({"RequestApiKey": null}))).as_ref(), Some(key), "after a devnode restart");
    }
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 3);
    let keys_after = without_spend(env.api(json!({"ListKeys": null})));
    assert_eq!(keys_before, keys_after, "keys and their resolution survive");
    assert_eq!(series_value_before(&env, None, closed_until).1, cost_before, "cost samples survive");
    assert_eq!(env.api(json!({"GetSettings": null}))["admin_key_set"], true);
    // Nothing lost in the audit log either.
    let audit = env.api(json!({"AuditLog": {"limit": 500}}));
    let issued: Vec<&Value> = audit["Ok"]["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "key issued").collect();
    assert_eq!(issued.len(), 3);
    // Each entry names its node and key exactly (SQLite writes it with the issuance).
    let nodes = env.api(json!({"ListNodes": {}}));
    for entry in issued {
        let node = nodes["Ok"]["nodes"].as_array().unwrap().iter().find(|n| n["node"] == entry["actor"]).unwrap_or_else(|| panic!("{entry}"));
        assert_eq!(entry["detail"], format!("key k{}", node["key_id"]), "{entry}");
        assert_eq!(entry["outcome"], "issued", "{entry}");
    }
}

#[test]
fn security_refusals_and_no_secret_in_logs() {
    // A node may be named like a key: the audit masks its name as it masks any key-shaped text.
    const KEY_SHAPED_NODE: &str = "sk-ant-api03-testnodenamedlikeakey.os";
    // And longer than the 200 characters the audit keeps of a text.
    let long_node = format!("{}.os", "long".repeat(57));
    let env = Env::start("security", "small.json", &[peers(2), vec![KEY_SHAPED_NODE.to_string(), long_node.clone()]].concat());
    env.configure_admin_api();
    add_key(&env, 1, json!({}));
    // Unauthenticated: every API call gets the login page, never data.
    for call in [json!({"ListKeys": null}), json!({"AddKey": {"secret": secret(9), "name": "x"}}), json!({"GetSettings": null}), json!({"AuditLog": {}})] {
        let (status, body) = env.api_unauthenticated("/api", call);
        assert_eq!(status, 200);
        assert!(body.contains("Log in to your node") && !body.contains("masked_key"), "{body}");
    }
    assert_eq!(env.api(json!({"ListKeys": null})).as_array().unwrap().len(), 1, "the unauthenticated add changed nothing");
    // A remote node may call only the key request.
    for call in [json!({"ListKeys": null}), json!({"KeyStatus": "node0.os"}), json!({"PushUsage": {"buckets": []}}), json!({"PoolSummary": null})] {
        let r = env.p2p("node0.os", call.clone());
        assert!(r["response"].get("Ok").is_none() && r["response"]["kind"] == "Timeout", "{call} from a remote node: {r}");
    }
    // A foreign local process may not push samples or reach the poller.
    let r = env.local("evil:other-app:sys", ISSUER, json!({"PushUsage": {"buckets": []}}));
    assert_eq!(r["response"]["Err"], "refused: only this package's cost-poller may send this message");
    let r = env.local("evil:other-app:sys", ISSUER, json!({"PushPollerStatus": {"admin_key_set": false, "last_poll_started": null, "last_success": null, "next_poll": null, "last_error": null, "skipped_rows": 0, "polls_total": 0}}));
    assert!(r["response"]["Err"].as_str().unwrap().starts_with("refused"));
    let r = env.local("evil:other-app:sys", POLLER, json!({"SetAdminKey": "sk-ant-admin01-TESTevilevilevilevilevilevil"}));
    assert!(r.get("error").is_some(), "the poller is not public: {r}");
    // Bad input on the dashboard API: clear errors, nothing changed.
    let r = env.api(json!({"AddKey": {"secret": "nope", "name": "x"}}));
    assert!(r["Err"].as_str().unwrap().contains("secret"), "{r}");
    let r = env.api(json!({"RetireKey": 999}));
    assert_eq!(r["Err"], "unknown key k999");
    let r = env.api(json!({"UpdateSettings": {"poll_interval_secs": 1}}));
    assert!(r["Err"].as_str().is_some());
    let r = env.api(json!({"NoSuchCall": 1}));
    assert!(r.as_str().is_some_and(|s| s.contains("Invalid request")), "{r}");
    assert_eq!(env.api(json!({"ListKeys": null})).as_array().unwrap().len(), 1);

    // Issue the key once so the secret has travelled, then check every log line and output.
    assert!(issued_key(&env.p2p("node1.os", json!({"RequestApiKey": null}))).is_some());
    let everything = format!("{}\n{}", env.logs(), env.process_output());
    for secret in [secret(1), secret(9), ADMIN_KEY.to_string()] {
        assert!(!everything.contains(&secret), "a secret appears in the logs");
    }
    let settings = env.api(json!({"GetSettings": null})).to_string();
    assert!(!settings.contains(ADMIN_KEY) && settings.contains("sk-ant-admin01-TES"));
    let keys = env.api(json!({"ListKeys": null})).to_string();
    assert!(!keys.contains(&secret(1)));

    assert!(issued_key(&env.p2p(KEY_SHAPED_NODE, json!({"RequestApiKey": null}))).is_some());
    assert!(issued_key(&env.p2p(&long_node, json!({"RequestApiKey": null}))).is_some());
    let audit = env.api(json!({"AuditLog": {"limit": 500}}));
    let entries = audit["Ok"]["entries"].as_array().unwrap();
    assert!(!audit.to_string().contains("testnodenamedlikeakey"), "the key-shaped node name is masked: {audit}");
    let issued_to = |actor: &str| entries.iter().filter(|e| e["action"] == "key issued" && e["actor"] == actor).count();
    assert_eq!(issued_to("sk-ant-[redacted].os"), 1, "one entry for the key-shaped node, masked: {audit}");
    let cut: String = long_node.chars().take(200).collect::<String>() + "…";
    assert_eq!(issued_to(&cut), 1, "one entry for the long node, cut as every audit text is: {audit}");
    assert_eq!(entries.iter().filter(|e| e["action"] == "key issued").count(), 3, "{audit}");
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 3);
}

#[test]
fn wit_api_answers_local_processes_without_secrets() {
    let env = Env::start("wit-api", "small.json", &peers(2));
    env.configure_admin_api();
    add_key(&env, 1, json!({}));
    assert!(issued_key(&env.p2p("node0.os", json!({"RequestApiKey": null}))).is_some());
    let r = env.local("some-app:some-app:sys", ISSUER, json!({"KeyStatus": "node0.os"}));
    let status = &r["response"];
    assert_eq!(status["node"], "node0.os");
    assert_eq!(status["state"], "active");
    assert_eq!(status["masked_key"], "sk-ant-api03-TES...0001");
    assert!(!r.to_string().contains(&secret(1)));
    let r = env.local("some-app:some-app:sys", ISSUER, json!({"KeyStatus": "node1.os"}));
    assert_eq!(r["response"], Value::Null);
    let r = env.local("some-app:some-app:sys", ISSUER, json!({"PoolSummary": null}));
    assert_eq!(r["response"]["active_keys"], 1);
    assert_eq!(r["response"]["nodes_issued"], 1);
    assert!(!r.to_string().contains("sk-ant-api03-TESTkey"));
}
