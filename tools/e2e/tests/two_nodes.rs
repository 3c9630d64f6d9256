//! Two nodes in one devnode: the package on operator.os, the test-only peer-client package on
//! alice.os and bob.os (`--peer-package`). The peer-client asks for its node's key with the
//! client crate (`clients/key-client`) over real p2p and answers only the key's last four
//! characters and its lease times, or the typed error.
//! Requires `cargo xtask build` and `cargo xtask test-packages` (cargo xtask test runs both).

use e2e::*;
use serde_json::{json, Value};

const ALICE: &str = "alice.os";
const BOB: &str = "bob.os";
/// A simulated node (`--peer`): it runs nothing, so a request to it gets no answer.
const SILENT: &str = "silent.os";

fn start(name: &str) -> Env {
    let zip = peer_client_zip();
    assert!(zip.exists(), "{} is missing: run `cargo xtask test-packages`", zip.display());
    let env = Env::start_with_peer_packages(name, "small.json", &[SILENT.to_string()], &[(ALICE, zip.clone()), (BOB, zip)]);
    env.configure_admin_api();
    env
}

/// What the peer-client on `node` got when it asked with `command` (e.g. `{"Ask": "operator.os"}`).
fn ask(env: &Env, node: &str, command: Value) -> Value {
    let answer = env.local_on(node, PEER_CLIENT, command, 60);
    answer.get("response").cloned().unwrap_or_else(|| panic!("the peer-client on {node} did not answer: {answer}"))
}

fn last4(secret: &str) -> &str {
    &secret[secret.len() - 4..]
}

fn add_key(env: &Env, n: u32) -> Value {
    let r = env.add_key(json!({"secret": secret(n), "name": format!("key {n}"), "node_cap": null, "budget_usd": "100"}));
    r["Ok"].clone()
}

#[test]
fn a_component_on_another_node_gets_its_key_with_the_client_crate() {
    let env = start("two-nodes");
    // An empty pool: the typed error, and alice is not recorded.
    assert_eq!(ask(&env, ALICE, json!({"Ask": "operator.os"})), json!({"Err": "NoKeysAvailable"}));
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 0);

    let key = add_key(&env, 1);
    let lease = ask(&env, ALICE, json!({"Ask": "operator.os"}));
    let lease = &lease["Ok"];
    assert_eq!(lease["key_last4"], last4(&secret(1)), "{lease}");
    assert!(lease["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{lease}");
    assert!(lease["expires_at"].as_str().unwrap() > lease["issued_at"].as_str().unwrap(), "{lease}");

    // Asking again, in either form: the same key, the same lease.
    assert_eq!(&ask(&env, ALICE, json!({"Ask": "operator.os"}))["Ok"], lease);
    assert_eq!(ask(&env, ALICE, json!({"AskKey": "operator.os"}))["Ok"]["key_last4"], last4(&secret(1)));
    // The full address works as well as the node name.
    let full = format!("operator.os@{ISSUER}");
    assert_eq!(&ask(&env, ALICE, json!({"Ask": full}))["Ok"], lease);

    // The issuer recorded alice.os, the node the request came from.
    let nodes = env.api(json!({"ListNodes": {}}));
    assert_eq!(nodes["Ok"]["total"], 1, "{nodes}");
    assert_eq!(nodes["Ok"]["nodes"][0]["node"], ALICE, "{nodes}");

    // A restarted peer process asks again and gets the same key.
    let restarted = post(&format!("{}/devnode/restart", env.control), &json!({"process": PEER_CLIENT, "node": ALICE}));
    assert_eq!(restarted["restarted"], PEER_CLIENT, "{restarted}");
    assert_eq!(&ask(&env, ALICE, json!({"Ask": "operator.os"}))["Ok"], lease);

    // Retired by the operator: alice's typed error names the reason; bob, new, finds the pool empty.
    let r = env.api(json!({"RetireKey": key["id"]}));
    assert_eq!(r["Ok"]["status"], "retired", "{r}");
    assert_eq!(ask(&env, ALICE, json!({"Ask": "operator.os"})), json!({"Err": {"Retired": "operator"}}));
    assert_eq!(ask(&env, BOB, json!({"Ask": "operator.os"})), json!({"Err": "NoKeysAvailable"}));

    let output = format!("{}\n{}", env.logs(), env.process_output());
    assert!(!output.contains(&secret(1)), "a full key appeared in devnode's output");
}

#[test]
fn an_unknown_offline_or_silent_dispenser_is_a_typed_error() {
    let env = start("two-nodes-offline");
    add_key(&env, 1);
    // No such node: Offline at once.
    assert_eq!(ask(&env, BOB, json!({"Ask": "nobody.os"})), json!({"Err": "Offline"}));
    // The dispenser's node taken off the network: Offline; back on it, bob gets a key.
    let off = post(&format!("{}/devnode/offline", env.control), &json!({"node": "operator.os", "offline": true}));
    assert_eq!(off["offline"], true, "{off}");
    assert_eq!(ask(&env, BOB, json!({"Ask": "operator.os"})), json!({"Err": "Offline"}));
    post(&format!("{}/devnode/offline", env.control), &json!({"node": "operator.os", "offline": false}));
    assert_eq!(ask(&env, BOB, json!({"Ask": "operator.os"}))["Ok"]["key_last4"], last4(&secret(1)));
    // A node that never answers: Timeout once the attempts run out.
    let silent = format!("{SILENT}@{ISSUER}");
    assert_eq!(ask(&env, ALICE, json!({"AskOnce": {"dispenser": silent, "timeout_secs": 1}})), json!({"Err": "Timeout"}));
    // Only bob's successful request was recorded.
    let nodes = env.api(json!({"ListNodes": {}}));
    assert_eq!(nodes["Ok"]["total"], 1, "only bob was issued a key: {nodes}");
}
