//! The issuance policy (SPEC §4) through the real built package: open (unchanged), allowlist with
//! names and patterns, approval (pending → approved → key; denied → not allowed), the denylist in
//! every mode, every decision audited and a flood bounded, bad settings refused.
//! Requires `cargo xtask build` (cargo xtask test runs it first).

use e2e::*;
use serde_json::{json, Value};

fn ask(env: &Env, node: &str) -> Value {
    env.p2p(node, json!({"RequestApiKey": null}))["response"].clone()
}

/// The key a node got, as a short label (never the whole key in output).
fn got_key(answer: &Value) -> Option<String> {
    answer["Ok"].as_str().map(|k| k.chars().rev().take(4).collect())
}

fn refusal(answer: &Value) -> String {
    answer["Err"].as_str().unwrap_or_else(|| panic!("expected a refusal, got {}", if answer["Ok"].is_null() { answer.to_string() } else { "a key".to_string() })).to_string()
}

fn set_policy(env: &Env, update: Value) -> Value {
    let r = env.api(json!({"UpdateSettings": update}));
    assert!(r.get("Ok").is_some(), "{r}");
    r["Ok"].clone()
}

fn env_with_key(name: &str, peers: &[&str]) -> Env {
    let env = Env::start(name, "truth.json", &peers.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    env.configure_admin_api();
    let r = env.add_key(json!({"secret": secret(1), "name": "k1", "node_cap": null}));
    assert!(r.get("Ok").is_some(), "{r}");
    env
}

fn audit_entries(env: &Env) -> Vec<Value> {
    env.api(json!({"AuditLog": {"limit": 500}}))["Ok"]["entries"].as_array().cloned().unwrap_or_default()
}

fn audit_rows(env: &Env) -> i64 {
    let db = rusqlite::Connection::open_with_flags(env.issuer_db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    db.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get::<_, i64>(0)).unwrap()
}

/// Waits until the audit log has an entry of `actor` whose outcome contains `words`.
fn audited(env: &Env, actor: &str, words: &str) {
    env.eventually(&format!("an audit entry of {actor}: {words}"), || {
        audit_entries(env).iter().any(|e| e["actor"] == actor && e["outcome"].as_str().unwrap_or("").contains(words))
    });
}

#[test]
fn open_mode_is_unchanged_and_the_denylist_refuses_in_it() {
    let env = env_with_key("policy-open", &["alice.os", "eve.bad", "bob.os"]);
    let settings = env.api(json!({"GetSettings": null}));
    assert_eq!(settings["issuance_policy"], "open", "open is the default: {settings}");
    assert_eq!(settings["allowlist"], json!([]));
    assert_eq!(settings["denylist"], json!([]));
    let alice = got_key(&ask(&env, "alice.os")).expect("open mode issues as before");

    set_policy(&env, json!({"denylist": ["*.bad", "ALICE.os"]}));
    assert_eq!(refusal(&ask(&env, "eve.bad")), "not allowed");
    // A newly denylisted node that holds a key is refused too; its issuance record stays.
    assert_eq!(refusal(&ask(&env, "alice.os")), "not allowed");
    let nodes = env.api(json!({"ListNodes": {}}));
    assert_eq!(nodes["Ok"]["total"], 1, "{nodes}");
    assert_eq!(nodes["Ok"]["nodes"][0]["node"], "alice.os");
    assert!(got_key(&ask(&env, "bob.os")).is_some(), "others still get keys");
    audited(&env, "eve.bad", "not allowed (on the denylist)");

    set_policy(&env, json!({"denylist": []}));
    assert_eq!(got_key(&ask(&env, "alice.os")), Some(alice), "off the denylist: the same key again");
}

#[test]
fn allowlist_mode_issues_only_to_listed_names_and_patterns() {
    let env = env_with_key("policy-allowlist", &["early.os", "alice.os", "bob.hypr", "dev.team.hypr", "carol.os", "eve.hypr"]);
    let early = got_key(&ask(&env, "early.os")).expect("issued while open");

    let view = set_policy(&env, json!({"issuance_policy": "allowlist", "allowlist": [" Alice.OS ", "*.hypr"], "denylist": ["eve.hypr"]}));
    assert_eq!(view["issuance_policy"], "allowlist");
    assert_eq!(view["allowlist"], json!(["alice.os", "*.hypr"]), "names are stored in lowercase, trimmed");
    assert!(got_key(&ask(&env, "alice.os")).is_some());
    assert!(got_key(&ask(&env, "bob.hypr")).is_some(), "*.hypr covers bob.hypr");
    assert!(got_key(&ask(&env, "dev.team.hypr")).is_some(), "* stands for one or more whole labels");
    assert_eq!(refusal(&ask(&env, "carol.os")), "not allowed");
    assert_eq!(refusal(&ask(&env, "eve.hypr")), "not allowed", "the denylist wins over the allowlist");
    assert_eq!(got_key(&ask(&env, "early.os")), Some(early), "a key already issued is never taken back");
    audited(&env, "carol.os", "not allowed (not on the allowlist)");

    // Bad patterns and names are refused with the reason, and change nothing.
    let before = env.api(json!({"GetSettings": null}));
    for (bad, field) in [
        (json!({"allowlist": ["a*.os"]}), "allowlist"),
        (json!({"denylist": ["*"]}), "denylist"),
        (json!({"allowlist": ["alice.*"]}), "allowlist"),
        (json!({"allowlist": ["not a name"]}), "allowlist"),
        (json!({"allowlist": "alice.os"}), "allowlist"),
        (json!({"issuance_policy": "closed", "allowlist": ["ok.os"]}), "issuance_policy"),
    ] {
        let (status, answer) = env.api_with(json!({"UpdateSettings": bad}), &[("content-type", "application/json")]);
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["Err"].as_str().unwrap().starts_with(&format!("field `{field}`")), "{bad}: {answer}");
    }
    let (_, answer) = env.api_with(json!({"UpdateSettings": {"allowlist": ["a*.os"]}}), &[("content-type", "application/json")]);
    assert!(answer["Err"].as_str().unwrap().contains("`*` may only stand as the whole first label"), "{answer}");
    assert_eq!(env.api(json!({"GetSettings": null})), before, "nothing changed");
}

#[test]
fn approval_mode_records_pending_nodes_until_the_operator_decides() {
    let env = env_with_key("policy-approval", &["ann.os", "dan.os", "zed.os"]);
    set_policy(&env, json!({"issuance_policy": "approval"}));

    assert_eq!(refusal(&ask(&env, "ann.os")), "pending approval");
    assert_eq!(refusal(&env.p2p("ann.os", json!({"RequestKeyLease": null}))["response"]), "pending approval", "both requests take the one path");
    assert_eq!(refusal(&ask(&env, "dan.os")), "pending approval");
    let page = env.api(json!({"ListRequests": {"status": "pending"}}));
    assert_eq!(page["Ok"]["total"], 2, "{page}");
    assert_eq!(page["Ok"]["pending_cap"], 10_000);
    assert_eq!(page["Ok"]["requests"][0]["node"], "ann.os", "oldest first");
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 0, "no key was issued");
    audited(&env, "ann.os", "pending approval: recorded");

    // Pending requests survive a restart.
    env.restart_process("key-issuer");
    assert_eq!(env.api(json!({"ListRequests": {}}))["Ok"]["pending_total"], 2);

    let approved = env.api(json!({"ApproveNode": "Ann.os"}));
    assert_eq!(approved["Ok"]["status"], "approved", "{approved}");
    assert!(got_key(&ask(&env, "ann.os")).is_some(), "an approved node gets its key on its next request");
    let denied = env.api(json!({"DenyNode": "dan.os"}));
    assert_eq!(denied["Ok"]["status"], "denied", "{denied}");
    assert_eq!(refusal(&ask(&env, "dan.os")), "not allowed");
    audited(&env, "operator", "approved");
    audited(&env, "operator", "denied");
    audited(&env, "dan.os", "not allowed (denied by the operator)");
    let page = env.api(json!({"ListRequests": {}}));
    assert_eq!(page["Ok"]["pending_total"], 0, "{page}");
    assert_eq!(page["Ok"]["total"], 2);

    // The denylist applies in approval mode too, before anything is recorded.
    set_policy(&env, json!({"denylist": ["zed.os"]}));
    assert_eq!(refusal(&ask(&env, "zed.os")), "not allowed");
    assert_eq!(env.api(json!({"ListRequests": {}}))["Ok"]["total"], 2, "a denylisted node is not recorded");

    // Node names given by the operator are checked.
    for bad in [json!("*.os"), json!("Not A Name"), json!(""), json!(7)] {
        let (status, answer) = env.api_with(json!({"ApproveNode": bad}), &[("content-type", "application/json")]);
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, _) = env.api_with(json!({"DenyNode": "x.os"}), &[("content-type", "text/plain")]);
    assert_eq!(status, 403, "a cross-site request is refused");
}

#[test]
fn a_flood_from_pending_and_denied_nodes_grows_the_audit_log_by_a_constant() {
    let env = env_with_key("policy-flood", &["wait.os", "no.os", "other.os"]);
    // The rate limit would absorb the flood itself: lift it to see the policy's own bound.
    set_policy(&env, json!({"issuance_policy": "approval", "p2p_requests_per_minute": 10_000}));
    assert_eq!(refusal(&ask(&env, "wait.os")), "pending approval");
    assert_eq!(refusal(&ask(&env, "no.os")), "pending approval");
    env.api(json!({"DenyNode": "no.os"}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = audit_rows(&env);
    for i in 0..2000 {
        let node = if i % 2 == 0 { "wait.os" } else { "no.os" };
        let answer = ask(&env, node);
        assert!(answer["Ok"].is_null(), "no key during the flood");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let grown = audit_rows(&env) - before;
    println!("2000 requests from a pending and a denied node: the audit log grew by {grown} rows");
    // One row for the denied node's first refusal; the pending node's repeats are only counted.
    assert!(grown <= 2, "the audit log grew by {grown} rows");
    // Approving sums the counted requests up in its one row.
    env.api(json!({"ApproveNode": "wait.os"}));
    audited(&env, "operator", "approved (1000 repeated requests before)");
    assert!(got_key(&ask(&env, "wait.os")).is_some());
}
