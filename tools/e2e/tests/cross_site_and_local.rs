//! Only the issued node ever sees its key (SPEC §4, §7): local apps are refused a key, pages on
//! other sites cannot drive the dashboard API with the operator's cookie, and the admin key never
//! goes to another server. Requires `cargo xtask build` (cargo xtask test runs it first).

use e2e::*;
use serde_json::{json, Value};

#[test]
fn an_app_on_the_operators_node_never_gets_a_key() {
    let env = Env::start("local-caller", "truth.json", &["n0.os".to_string()]);
    env.configure_admin_api();
    let r = env.add_key(json!({"secret": secret(1), "name": "k1", "node_cap": null}));
    assert!(r.get("Ok").is_some(), "{r}");
    for body in [json!({"RequestApiKey": null}), json!("RequestApiKey"), json!({"RequestKeyLease": null})] {
        let r = env.local("some-app:some-app:sys", ISSUER, body.clone());
        assert!(!r.to_string().contains("sk-ant-api03-TESTkey"), "a local app got a key with {body}: {r}");
    }
    let r = env.local("some-app:some-app:sys", ISSUER, json!({"RequestApiKey": null}));
    assert!(r["response"]["Err"].as_str().unwrap().contains("WIT API"), "{r}");
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 0, "the operator's node was not recorded");
    // A key pasted into the name field is refused, and appears nowhere.
    let r = env.api(json!({"AddKey": {"secret": secret(3), "name": secret(4)}}));
    assert!(r["Err"].as_str().unwrap().contains("looks like an API key"), "{r}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let audit = env.api(json!({"AuditLog": {"limit": 500}})).to_string();
    assert!(!audit.contains(&secret(4)) && !audit.contains(&secret(3)), "{audit}");
    // Another node still gets its key.
    let r = env.p2p("n0.os", json!({"RequestApiKey": null}));
    assert!(r.to_string().contains(&secret(1)), "{r}");
}

#[test]
fn cross_site_requests_are_refused_and_change_nothing() {
    let env = Env::start("cross-site", "truth.json", &[]);
    env.configure_admin_api();
    let before = env.api(json!({"GetSettings": null}));
    let own_origin = env.http.split('/').take(3).collect::<Vec<_>>().join("/");
    let attack = json!({"UpdateSettings": {"admin_api_base_url": "https://evil.example", "default_budget_usd": "999"}});
    let refused: [&[(&str, &str)]; 6] = [
        &[("content-type", "text/plain")],
        &[("content-type", "application/x-www-form-urlencoded")],
        &[("content-type", "multipart/form-data; boundary=x")],
        &[("content-type", "application/json"), ("origin", "https://evil.example")],
        &[("content-type", "application/json"), ("sec-fetch-site", "cross-site")],
        &[("content-type", "application/json"), ("origin", "null")],
    ];
    for headers in refused {
        let (status, answer) = env.api_with(attack.clone(), headers);
        assert_eq!(status, 403, "{headers:?}: {answer}");
        assert!(answer["Err"].as_str().unwrap().starts_with("refused"), "{headers:?}: {answer}");
    }
    for headers in refused {
        let (status, _) = env.api_with(json!({"RemoveKey": 1}), headers);
        assert_eq!(status, 403);
    }
    assert_eq!(env.api(json!({"GetSettings": null})), before, "nothing changed");
    // The node's own page (its Origin, same-origin fetch) and a script without either header pass.
    let (status, answer) = env.api_with(
        json!({"UpdateSettings": {"default_budget_usd": "6"}}),
        &[("content-type", "application/json"), ("origin", own_origin.as_str()), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Ok"]["default_budget_micro_usd"], 6_000_000);
}

#[test]
fn the_admin_key_never_goes_to_another_server() {
    let env = Env::start("base-url", "truth.json", &[]);
    env.configure_admin_api();
    let r = env.api(json!({"UpdateSettings": {"admin_api_base_url": "http://api.example.com"}}));
    assert!(r["Err"].as_str().unwrap().contains("must be https"), "{r}");
    assert_eq!(env.api(json!({"GetSettings": null}))["admin_key_set"], true, "a refused change changes nothing");
    // Another server (here: the same fake under another loopback name) clears the admin key.
    let other = env.fake_url.replace("127.0.0.1", "localhost");
    let r = env.api(json!({"UpdateSettings": {"admin_api_base_url": other}}));
    assert_eq!(r["Ok"]["admin_key_set"], false, "{r}");
    let before = env.fake_control("seen", None)["request_counts"].clone();
    env.api(json!({"PollNow": null}));
    env.eventually("the poller reports no admin key", || {
        let status = env.api(json!({"Status": null}));
        status["poller"]["admin_key_set"] == false && status["poller"]["last_error"]["needs_operator"] == true
    });
    assert_eq!(env.fake_control("seen", None)["request_counts"], before, "nothing was sent to the new server");
    let cleared = |audit: &serde_json::Value| audit["Ok"]["entries"].as_array().unwrap().iter().any(|e| e["outcome"] == "the Admin API base URL changed");
    let mut audit = env.api(json!({"AuditLog": {}}));
    for _ in 0..50 {
        if cleared(&audit) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        audit = env.api(json!({"AuditLog": {}}));
    }
    assert!(cleared(&audit), "the audit log says why the admin key was cleared: {audit}\n{}", env.logs());
}

#[test]
fn a_flood_of_refused_requests_cannot_grow_the_audit_log() {
    let nodes = ["flood1.os".to_string(), "flood2.os".to_string()];
    let env = Env::start("flood", "truth.json", &nodes);
    env.configure_admin_api();
    let rows = || {
        let db = rusqlite::Connection::open_with_flags(env.issuer_db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        db.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    // Let the writes of the setup land before counting.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = rows();
    let mut limited = 0;
    for i in 0..3000 {
        let r = env.p2p(&nodes[i % 2], json!({"RequestApiKey": null}));
        if r["response"]["Err"] == "rate limited" {
            limited += 1;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let grown = rows() - before;
    println!("3000 requests from 2 nodes ({limited} rate limited): the audit log grew by {grown} rows");
    assert!(limited > 2900, "{limited}");
    // Per node: its refusals as "no keys available" (one row each allowed request, 10 a minute) and
    // one row when it starts being limited.
    assert!(grown <= 2 * (10 + 1), "the audit log grew by {grown} rows");
    // Let through again a minute later, the node's refusals are summed up in one row.
    env.advance(61);
    env.p2p(&nodes[0], json!({"RequestApiKey": null}));
    env.eventually("the refusals summed up", || {
        env.api(json!({"AuditLog": {}}))["Ok"]["entries"].as_array().unwrap().iter().any(|e| {
            e["actor"] == "flood1.os" && e["outcome"].as_str().unwrap_or_default().ends_with("requests were refused as rate limited")
        })
    });
}

#[test]
fn a_malformed_call_never_comes_back_with_its_secret() {
    let env = Env::start("malformed", "truth.json", &[]);
    env.configure_admin_api();
    // Bodies that name a call which takes JSON reach the app, which never repeats them. (A body
    // naming no call at all, or a typed argument of the wrong type, is answered by the hyperapp
    // framework itself, which repeats the body: docs/security.md.)
    let bodies = [
        json!({"AddKey": [secret(5)]}),
        json!({"AddKey": {"secret": secret(5), "name": "typo", "nmae": secret(5)}}),
        json!({"AddKey": {"secret": format!("{}!", secret(5)), "name": "bad"}}),
        json!({"SetAdminKey": ADMIN_KEY}),
        json!({"SetAdminKey": {"admin_key": ADMIN_KEY, "extra": 1}}),
        json!({"SetAdminKey": {"admin_key": format!("{ADMIN_KEY}!")}}),
        json!({"MatchKey": {"key": secret(5), "api_key_id": secret(5)}}),
        json!({"UpdateSettings": {"admin_api_base_url": secret(5)}}),
        json!({"UpdateSettings": {"price_table": secret(5)}}),
        json!({"PrepareWorkspace": {"name": secret(5)}}),
        json!({"UpdateSettings": {secret(5): 1}}),
    ];
    for body in bodies {
        let (status, answer) = env.api_with(body.clone(), &[("content-type", "application/json")]);
        let text = answer.to_string();
        assert!(!text.contains(&secret(5)[20..]) && !text.contains(&ADMIN_KEY[20..]), "{body} came back in a {status} answer: {text}");
    }
    assert_eq!(env.api(json!({"ListKeys": null})).as_array().unwrap().len(), 0, "nothing was added");
}

#[test]
fn slow_admin_api_work_runs_in_the_background_and_the_dashboard_follows_it() {
    let env = Env::start("slow-admin-api", "truth.json", &["n0.os".to_string()]);
    env.configure_admin_api();
    let r = env.api(json!({"UpdateSettings": {"issue_unmatched_keys": true}}));
    assert!(r.get("Ok").is_some(), "{r}");
    // The first poll is over: the delays below are for the background work alone.
    env.api(json!({"PollNow": null}));
    env.eventually("the first poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    assert!(env.wait_quiet(30));
    // The organization's key list takes 16 s to answer, twice: longer than the node gives one
    // HTTP request (15 s, then 408).
    env.fake_control("faults", Some(json!({"faults": [{"delay_ms": 16000, "count": 2, "path_prefix": "/v1/organizations/api_keys"}]})));
    let timed = |call: Value| {
        let started = std::time::Instant::now();
        let answer = env.api(call.clone());
        let took = started.elapsed();
        let name = call.as_object().unwrap().keys().next().unwrap().clone();
        println!("{name} answered in {:.2} s while the Admin API took 16 s", took.as_secs_f64());
        assert!(took < std::time::Duration::from_secs(3), "{name} took {took:?}: {answer}");
        answer
    };
    let check = timed(json!({"TestConnection": null}));
    assert_eq!(check["Ok"]["outcome"], Value::Null, "the check runs: {check}");
    let key = timed(json!({"AddKey": {"secret": secret(1), "name": "k1", "node_cap": null}}));
    assert_eq!(key["Ok"]["matching"], true, "{key}");
    let key_id = key["Ok"]["id"].as_u64().unwrap();
    // A second start while the check runs follows the same check.
    let again = timed(json!({"TestConnection": null}));
    assert_eq!(again["Ok"]["id"], check["Ok"]["id"]);
    // Not issued while its look-up runs, even with unmatched keys allowed.
    assert_eq!(env.p2p("n0.os", json!({"RequestApiKey": null}))["response"]["Err"], "no keys available");

    // The dashboard follows both until they are done.
    let check_id = check["Ok"]["id"].as_u64().unwrap();
    let outcome = || env.api(json!({"GetCheck": check_id}))["Ok"]["outcome"].clone();
    // The poller makes one Admin API call at a time: the two slow reads take turns (32 s).
    env.eventually_within(60, "the connection test finished", || !outcome().is_null());
    let outcome = outcome();
    assert_eq!(outcome["Connection"]["ok"], true, "{outcome}");
    let matched = || env.api(json!({"ListKeys": null})).as_array().unwrap().iter().find(|k| k["id"] == key_id).cloned().unwrap();
    env.eventually_within(60, "the key matched", || matched()["matching"] == false);
    assert_eq!(matched()["api_key_id"], "apikey_TEST01", "{}", matched());
    assert_eq!(env.p2p("n0.os", json!({"RequestApiKey": null}))["response"]["Ok"], secret(1).as_str());
    let r = env.api(json!({"GetCheck": 999}));
    assert!(r["Err"].as_str().unwrap().contains("unknown check 999"), "{r}");
}

#[test]
fn a_repeat_request_never_carries_a_key_before_it_is_durable() {
    let env = std::sync::Arc::new(Env::start("slow-commit", "truth.json", &["n0.os".to_string()]));
    env.configure_admin_api();
    let r = env.add_key(json!({"secret": secret(1), "name": "k1", "node_cap": null}));
    assert!(r.get("Ok").is_some(), "{r}");
    // Commits take 8 s: the first request waits for its commit; a repeat meanwhile waits 5 s and
    // then answers `try again`, never the key.
    post(&format!("{}/devnode/sqlite/delay", env.control), &json!({"ms": 8000}));
    let first = {
        let env = env.clone();
        std::thread::spawn(move || env.p2p("n0.os", json!({"RequestApiKey": null})))
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let repeat = env.p2p("n0.os", json!({"RequestApiKey": null}));
    assert_eq!(repeat["response"]["Err"], "try again", "{repeat}");
    let first = first.join().unwrap();
    post(&format!("{}/devnode/sqlite/delay", env.control), &json!({"ms": 0}));
    assert_eq!(first["response"]["Ok"], secret(1).as_str(), "the first request gets the key once it is durable");
    assert_eq!(env.p2p("n0.os", json!({"RequestApiKey": null}))["response"]["Ok"], secret(1).as_str());
}

#[test]
fn the_audit_log_keeps_only_its_retention() {
    let env = Env::start("audit-retention", "truth.json", &[]);
    env.configure_admin_api();
    let r = env.api(json!({"UpdateSettings": {"audit_retention_days": 1}}));
    assert_eq!(r["Ok"]["audit_retention_days"], 1, "{r}");
    let entries = |env: &Env| env.api(json!({"AuditLog": {"limit": 500}}))["Ok"]["entries"].as_array().unwrap().clone();
    env.eventually("the setup audited", || entries(&env).len() >= 2);
    let old: Vec<i64> = entries(&env).iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    env.advance(2 * 86_400);
    env.api(json!({"PollNow": null}));
    env.eventually("entries older than a day deleted", || entries(&env).iter().all(|e| !old.contains(&e["seq"].as_i64().unwrap())));
    assert!(!entries(&env).is_empty(), "newer entries stay");
}
