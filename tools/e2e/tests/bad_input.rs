//! devnode and fake-admin-api refuse bad input with a clear error, never a hang.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::root;

fn tool(name: &str) -> Command {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root().join("target"));
    Command::new(target.join("tools").join(name))
}

/// Runs `cmd` to completion within 30 s; returns (success, stderr).
fn run(mut cmd: Command) -> (bool, String) {
    let started = Instant::now();
    let output = cmd.output().expect("tool built by cargo xtask test");
    assert!(started.elapsed() < Duration::from_secs(30), "took too long");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).to_string())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-bad-input-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn devnode_refuses_broken_packages_and_flags() {
    let dir = scratch("devnode");
    let not_zip = dir.join("broken:pkg.zip");
    std::fs::write(&not_zip, b"this is not a zip").unwrap();
    let no_manifest = dir.join("empty-pkg");
    std::fs::create_dir_all(&no_manifest).unwrap();
    let bad_wasm = dir.join("bad-wasm");
    std::fs::create_dir_all(&bad_wasm).unwrap();
    std::fs::write(bad_wasm.join("manifest.json"), br#"[{"process_name":"p","process_wasm_path":"/p.wasm","on_exit":"None","request_networking":false,"request_capabilities":[],"grant_capabilities":[],"public":false}]"#).unwrap();
    std::fs::write(bad_wasm.join("p.wasm"), b"\0asm garbage").unwrap();
    let bad_manifest = dir.join("bad-manifest");
    std::fs::create_dir_all(&bad_manifest).unwrap();
    std::fs::write(bad_manifest.join("manifest.json"), b"{not json").unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--package".into(), not_zip.display().to_string()], "is not a zip"),
        (vec!["--package".into(), no_manifest.display().to_string(), "--package-id".into(), "a:b.os".into()], "no manifest.json"),
        (vec!["--package".into(), bad_wasm.display().to_string(), "--package-id".into(), "a:b.os".into()], "not a valid component"),
        (vec!["--package".into(), bad_manifest.display().to_string(), "--package-id".into(), "a:b.os".into()], "manifest.json"),
        (vec!["--package".into(), not_zip.display().to_string(), "--node".into(), "NOT A NODE".into()], "invalid node name"),
        (vec!["--package".into(), not_zip.display().to_string(), "--http-port".into(), "http".into()], "port number"),
        (vec!["--frobnicate".into()], "unknown flag"),
        (vec![], "--package"),
    ];
    for (args, expected) in cases {
        let mut cmd = tool("devnode");
        cmd.args(["--data-dir", dir.join("data").to_str().unwrap(), "--password", "pw", "--http-port", "0", "--control-port", "0"]);
        cmd.args(&args);
        let (ok, stderr) = run(cmd);
        assert!(!ok, "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
    }
}

#[test]
fn fake_admin_api_refuses_bad_scenarios() {
    let dir = scratch("fake");
    let cases = [
        ("{", "scenario"),
        (r#"{"admin_key": "sk-ant-admin01-TESTxxxxxxxxxxxxxxxxxxxxxx", "keys": [], "surprise": 1}"#, "unknown field"),
        (r#"{"admin_key": "nope", "keys": []}"#, "admin_key"),
        (r#"{"admin_key": "sk-ant-admin01-TESTxxxxxxxxxxxxxxxxxxxxxx", "keys": [], "usage": [{"api_key_id": "apikey_X", "model": "m", "per_hour": {}, "from": "2026-01-01T00:00:00Z"}]}"#, "unknown key"),
        (r#"{"admin_key": "sk-ant-admin01-TESTxxxxxxxxxxxxxxxxxxxxxx", "keys": [], "prices": {"m": {"input": "x", "cache_write_5m": "1", "cache_write_1h": "1", "cache_read": "1", "output": "1"}}}"#, "not a decimal"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("s{i}.json"));
        std::fs::write(&path, text).unwrap();
        let mut cmd = tool("fake-admin-api");
        cmd.args(["--scenario", path.to_str().unwrap(), "--port", "0"]);
        let (ok, stderr) = run(cmd);
        assert!(!ok, "scenario {i} accepted");
        assert!(stderr.contains(expected), "scenario {i}: expected {expected:?} in {stderr:?}");
    }
    let mut cmd = tool("fake-admin-api");
    cmd.args(["--scenario", dir.join("missing.json").to_str().unwrap()]);
    let (ok, stderr) = run(cmd);
    assert!(!ok && stderr.contains("missing.json"), "{stderr}");
}

#[test]
fn control_apis_refuse_bad_requests() {
    let env = e2e::Env::start("bad-control", "small.json", &["alice.os".to_string()]);
    let bad = |path: &str, body: &str| -> (u16, String) {
        match ureq::post(&format!("{}{path}", env.control)).send_string(body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    for (path, body) in [
        ("/devnode/p2p", "not json"),
        ("/devnode/p2p", r#"{"from": "alice.os"}"#),
        ("/devnode/p2p", r#"{"from": "stranger.os", "to": "key-issuer:anthropic-api-key-manager:keymanager.os", "body": null}"#),
        ("/devnode/p2p", r#"{"from": "alice.os", "to": "not-a-process", "body": null}"#),
        ("/devnode/local", r#"{"from": "x", "to": "key-issuer:anthropic-api-key-manager:keymanager.os", "body": null}"#),
        ("/devnode/clock/advance", r#"{"seconds": -5}"#),
        ("/devnode/clock/advance", r#"{"secs": 5}"#),
        ("/devnode/restart", r#"{"process": "nope:nope:nope"}"#),
    ] {
        let (status, text) = bad(path, body);
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert!(text.contains("error"), "{text}");
    }
    let (status, _) = bad("/devnode/nothing", "{}");
    assert_eq!(status, 404);
    for (path, body) in [("/_control/faults", "{"), ("/_control/clock", "{}"), ("/_control/keys", r#"{"id": 1}"#)] {
        match ureq::post(&format!("{}{path}", env.fake_url)).send_string(body) {
            Ok(r) => panic!("{path} accepted: {}", r.status()),
            Err(ureq::Error::Status(status, _)) => assert_eq!(status, 400, "{path}"),
            Err(e) => panic!("{e}"),
        }
    }
    // Malformed p2p bodies never hang the caller: the request times out or is answered.
    let answer = e2e::post(
        &format!("{}/devnode/p2p", env.control),
        &serde_json::json!({"from": "alice.os", "to": e2e::ISSUER, "body": {"NoSuchHandler": 1}, "timeout_secs": 3}),
    );
    assert!(answer.get("error").is_some() || answer.get("response").is_some(), "{answer}");
    // And the issuer still works afterwards.
    let summary = env.local("probe:probe:sys", e2e::ISSUER, serde_json::json!({"PoolSummary": null}));
    assert_eq!(summary["response"]["active_keys"], 0);
}
