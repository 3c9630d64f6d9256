//! The package under the address the platform's own client calls: hyperdrive's spider asks
//! `free-key-er.os@anthropic-api-key-manager:anthropic-api-key-manager:ware.hypr` for a key.
//! `cargo xtask build --publisher ware.hypr --issuer-process anthropic-api-key-manager` gives the
//! package that identity; this test relabels the default build that way (`--relabel-only`: the
//! components are the same for every identity) and runs it in devnode as `free-key-er.os`.
//! Requires `cargo xtask build`.

use std::path::PathBuf;
use std::process::Command;

use e2e::*;
use serde_json::{json, Value};

const PUBLISHER: &str = "ware.hypr";
const ISSUER_PROCESS: &str = "anthropic-api-key-manager";
const NODE: &str = "free-key-er.os";
const ASKER: &str = "asker.os";

fn issuer() -> String {
    format!("{ISSUER_PROCESS}:anthropic-api-key-manager:{PUBLISHER}")
}

fn poller() -> String {
    format!("cost-poller:anthropic-api-key-manager:{PUBLISHER}")
}

fn default_zip() -> PathBuf {
    Package::default_build().zip
}

/// Runs `cargo xtask build --publisher ware.hypr --issuer-process anthropic-api-key-manager
/// --relabel-only` and answers the zip it wrote.
fn relabel_default_build() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["xtask", "build", "--publisher", PUBLISHER, "--issuer-process", ISSUER_PROCESS, "--relabel-only"])
        .status()
        .expect("running cargo xtask");
    assert!(status.success(), "cargo xtask build --relabel-only failed ({status}); run `cargo xtask build` first");
    let zip = default_zip()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(format!("pkg-identities/{PUBLISHER}/{ISSUER_PROCESS}/anthropic-api-key-manager:{PUBLISHER}.zip"));
    assert!(zip.exists(), "{} was not written", zip.display());
    zip
}

/// The key in the answer to `{"RequestApiKey": null}`, which the spider parses as
/// `Result<String, String>`. Never printed: a failure shows only the refusal.
fn requested_key(env: &Env, from: &str) -> String {
    let answer = env.p2p(from, json!({"RequestApiKey": null}));
    let Some(response) = answer.get("response") else {
        panic!("no answer from {}: {}", issuer(), answer.get("error").unwrap_or(&Value::Null));
    };
    match serde_json::from_value::<Result<String, String>>(response.clone()) {
        Ok(Ok(key)) => {
            assert!(key.starts_with("sk-ant-api03-"), "the answer is not an API key");
            key
        }
        Ok(Err(refusal)) => panic!("RequestApiKey refused: {refusal}"),
        Err(_) => panic!("the answer is not a Result<String, String>"),
    }
}

fn polls_total(env: &Env) -> u64 {
    env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0)
}

fn spent_micro_usd(env: &Env) -> i64 {
    let keys = env.api(json!({"ListKeys": null}));
    keys.as_array().into_iter().flatten().filter_map(|k| k["spent_micro_usd"].as_i64()).sum()
}

/// Asks the poller for a poll (issuer → poller) and waits until its result reached the issuer
/// (poller → issuer).
fn poll_and_wait(env: &Env) {
    let before = polls_total(env);
    let answer = env.api(json!({"PollNow": null}));
    assert!(answer.get("Ok").is_some(), "PollNow: {answer}");
    env.eventually("the poll's result at the issuer", || polls_total(env) > before);
    let status = env.api(json!({"Status": null}));
    assert_eq!(status["poller"]["last_error"], Value::Null, "{status}");
}

#[test]
fn the_drop_in_build_answers_at_the_spiders_address_and_its_processes_find_each_other() {
    let default_before = std::fs::read(default_zip()).expect("the default build (run `cargo xtask build` first)");
    let zip = relabel_default_build();
    assert_eq!(std::fs::read(default_zip()).unwrap(), default_before, "the default zip changed");

    let package = Package { zip, issuer: issuer(), node: Some(NODE.to_string()) };
    let env = Env::start_package("build_identity", package, "small.json", &[ASKER.to_string()]);
    env.configure_admin_api();
    let added = env.api(json!({"AddKey": {"secret": secret(1), "name": "key 1", "node_cap": null, "budget_usd": "100000"}}));
    assert!(added.get("Ok").is_some(), "add key: {added}");

    // No process under the default issuer name answers in this build.
    let stale = post(
        &format!("{}/devnode/p2p", env.control),
        &json!({"from": ASKER, "to": format!("key-issuer:anthropic-api-key-manager:{PUBLISHER}"), "body": {"RequestApiKey": null}, "timeout_secs": 2}),
    );
    assert!(stale.get("response").is_none(), "a process answered under the default name: {stale}");

    let key = requested_key(&env, ASKER);

    // The poller reached its issuer: the poll's usage came back as cost.
    poll_and_wait(&env);
    env.eventually("cost from the poll", || spent_micro_usd(&env) > 0);

    env.restart_process(&issuer());
    env.restart_process(&poller());
    assert!(requested_key(&env, ASKER) == key, "after restarting both processes the node got another key");
    poll_and_wait(&env);

    // The poller learned the issuer's name from its manifest, not only from the issuer's messages.
    let logs = env.logs();
    assert!(!logs.contains("could not read the package manifest"), "the poller could not read its manifest");
    assert!(!logs.contains("the key-issuer is known once it sends a message"), "the manifest named no issuer");
}
