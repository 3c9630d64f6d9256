//! devnode refuses what a node (hyperdrive 1.9) refuses, so that no test passes on devnode where
//! the package would fail on a node: a manifest entry missing a field, answers from a runtime
//! module to a process that granted it nothing, HTTP answers typed or routed differently, timer
//! requests a node ignores. SQLite keyword and parameter rules are unit tests in devnode
//! (`services::tests`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{get, post, root, Env, PASSWORD, POLLER};
use serde_json::{json, Value};

const PACKAGE_ID: &str = "anthropic-api-key-manager:keymanager.os";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The built package unzipped in `target/e2e/<name>/pkg` whose manifest `edit` changed.
fn edited_package(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = target_dir().join("e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let zip = target_dir().join(format!("pkg/{PACKAGE_ID}.zip"));
    let unzip = Command::new("unzip").args(["-q", zip.to_str().unwrap(), "-d", pkg.to_str().unwrap()]).status().expect("unzip");
    assert!(unzip.success(), "unzipping {}", zip.display());
    let manifest_path = pkg.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    pkg
}

fn devnode_command(pkg: &Path) -> Command {
    let data = pkg.parent().unwrap().join("data");
    let mut cmd = Command::new(target_dir().join("tools/devnode"));
    cmd.args(["--package", pkg.to_str().unwrap(), "--package-id", PACKAGE_ID, "--data-dir", data.to_str().unwrap()]);
    cmd.args(["--http-port", "0", "--control-port", "0", "--password", PASSWORD, "--quiet"]);
    cmd
}

/// Runs devnode on `pkg` expecting it to refuse the package: its exit code and error output.
fn refused_install(pkg: &Path) -> (Option<i32>, String) {
    let mut child = devnode_command(pkg).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("devnode accepted the package {}", pkg.display());
}

fn cost_poller_entry(manifest: &mut Value) -> &mut serde_json::Map<String, Value> {
    manifest.as_array_mut().unwrap().iter_mut().find(|e| e["process_name"] == "cost-poller").unwrap().as_object_mut().unwrap()
}

#[test]
fn a_manifest_entry_missing_any_field_is_refused() {
    for field in ["process_name", "process_wasm_path", "on_exit", "request_networking", "request_capabilities", "grant_capabilities", "public"] {
        let pkg = edited_package(&format!("strict-manifest-{field}"), |m| {
            cost_poller_entry(m).remove(field);
        });
        let (code, stderr) = refused_install(&pkg);
        assert_eq!(code, Some(1), "{field}: {stderr}");
        assert!(stderr.contains(&format!("missing field `{field}`")), "{field}: {stderr}");
    }
}

#[test]
fn an_invalid_on_exit_is_refused() {
    let pkg = edited_package("strict-manifest-on-exit", |m| {
        cost_poller_entry(m).insert("on_exit".into(), json!("Sometimes"));
    });
    let (code, stderr) = refused_install(&pkg);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cost-poller") && stderr.contains("Sometimes"), "{stderr}");
}

/// A devnode started on `pkg` (no fake Admin API): its control address and the child.
struct Devnode {
    child: std::process::Child,
    control: String,
}

impl Devnode {
    fn start(pkg: &Path) -> Devnode {
        let mut child = devnode_command(pkg).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("{line}")).to_string();
        Devnode { control: field("control"), child }
    }

    fn logs(&self) -> String {
        let v = get(&format!("{}/devnode/logs?since=0", self.control));
        v["lines"].as_array().unwrap().iter().map(|l| format!("[{}] {}", l["process"].as_str().unwrap_or(""), l["text"].as_str().unwrap_or(""))).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Devnode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_private_process_that_granted_the_timer_nothing_gets_no_timer_answers() {
    // The cost-poller is not public: on a node the timer's answers reach it only because its
    // manifest grants timer:distro:sys messaging.
    let pkg = edited_package("strict-no-timer-grant", |m| {
        let grants = cost_poller_entry(m).get_mut("grant_capabilities").unwrap().as_array_mut().unwrap();
        grants.retain(|g| g != "timer:distro:sys");
    });
    let node = Devnode::start(&pkg);
    let dropped = format!("dropped a response from operator.os@timer:distro:sys to operator.os@{POLLER}");
    for _ in 0..20 {
        post(&format!("{}/devnode/clock/advance", node.control), &json!({"seconds": 600}));
        if node.logs().contains(&dropped) {
            return;
        }
    }
    panic!("the timer's answers reached the cost-poller without a grant:\n{}", node.logs());
}

#[test]
fn the_real_manifest_lets_every_module_answer() {
    let env = Env::start("strict-real-manifest", "truth.json", &[]);
    env.configure_admin_api();
    env.advance(600);
    assert!(!env.logs().contains("dropped a response"), "{}", env.logs());
}

#[test]
fn answers_reach_a_private_local_caller_only_from_processes_it_granted() {
    let env = Env::start("strict-private-caller", "truth.json", &[]);
    let set_timer = |public: bool| {
        post(&format!("{}/devnode/local", env.control), &json!({"from": "probe:probe:sys", "to": "timer:distro:sys", "body": {"SetTimer": 0}, "timeout_secs": 2, "public": public}))
    };
    // The timer answers with an empty body (`response_text`).
    let public = set_timer(true);
    assert!(public.get("error").is_none(), "a public caller gets the timer's answer: {public}");
    let private = set_timer(false);
    assert!(private["error"].as_str().is_some_and(|e| e.starts_with("timeout")), "{private}");
}

#[test]
fn a_malformed_timer_request_gets_no_answer() {
    let env = Env::start("strict-timer", "truth.json", &[]);
    let answer = post(&format!("{}/devnode/local", env.control), &json!({"from": "probe:probe:sys", "to": "timer:distro:sys", "body": {"SetTimer": "soon"}, "timeout_secs": 2}));
    assert!(answer["error"].as_str().is_some_and(|e| e.starts_with("timeout")), "{answer}");
}

#[test]
fn a_message_to_a_process_that_does_not_exist_times_out() {
    let env = Env::start("strict-no-such-process", "truth.json", &[]);
    let answer = env.local("probe:probe:sys", "nothing:here:sys", json!({"Ping": null}));
    assert!(answer["error"].as_str().is_some_and(|e| e.starts_with("timeout")), "a node answers Timeout, not Offline: {answer}");
}

/// A logged-in `POST <app>/api` with `cookie` as the whole Cookie header: status, content type, body.
fn api_call(env: &Env, cookie: &str, extra: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut request = ureq::post(&format!("{}/api", env.http)).set("cookie", cookie).set("content-type", "application/json").timeout(Duration::from_secs(60));
    for (name, value) in extra {
        request = request.set(name, value);
    }
    match request.send_string(&json!({"ListKeys": null}).to_string()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.header("content-type").map(str::to_string), r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

/// The login cookie `hyperware-auth_<node>=<token>` of a fresh login.
fn login_cookie(env: &Env) -> String {
    let base = env.http.rsplit_once('/').unwrap().0;
    let r = ureq::post(&format!("{base}/login")).send_string(&json!({"password": PASSWORD}).to_string()).unwrap();
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_string()
}

#[test]
fn http_answers_are_as_a_node_gives_them() {
    let env = Env::start("strict-http", "truth.json", &[]);
    let cookie = login_cookie(&env);

    let (status, content_type, body) = api_call(&env, &cookie, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/octet-stream"), "the issuer sets no content type, so a node sends bytes");

    let (status, content_type, body) = api_call(&env, &format!("theme=dark;{cookie}"), &[]);
    assert!(status == 200 && body.contains("<html"), "a cookie after `;` without a space is not read by a node: {status} {body}");
    assert_eq!(content_type, None, "a node's login page for a protected path has no content type");

    let (status, _, _) = api_call(&env, &format!("theme=dark; {cookie}"), &[]);
    assert_eq!(status, 200);
}

#[test]
fn head_requests_reach_the_process() {
    let env = Env::start("strict-head", "truth.json", &[]);
    let cookie = login_cookie(&env);
    let url = format!("{}/", env.http);
    let get = ureq::get(&url).set("cookie", &cookie).call().unwrap();
    assert!(get.header("content-type").unwrap_or("").starts_with("text/html"), "GET serves the cached UI");
    let head = match ureq::head(&url).set("cookie", &cookie).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    // A node serves cached content to GET only; the issuer has no HEAD handler for the UI root.
    assert!(!head.header("content-type").unwrap_or("").starts_with("text/html"), "HEAD was answered from the cache: {}", head.status());
}
