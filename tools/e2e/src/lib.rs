//! Test harness: starts devnode (with the built package) and fake-admin-api on free loopback
//! ports, and talks to them only through devnode's control API and the app's HTTP API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub const ISSUER: &str = "key-issuer:anthropic-api-key-manager:keymanager.os";
pub const POLLER: &str = "cost-poller:anthropic-api-key-manager:keymanager.os";
pub const ADMIN_KEY: &str = "sk-ant-admin01-TESTadminkeyabcdefghijklmnop0001";
pub const PASSWORD: &str = "test-password";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("e2e lives in tools/").to_path_buf()
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Fake secret number `n`; its hint is `sk-ant-api03-TES...{n:04}`, as in the scenarios.
pub fn secret(n: u32) -> String {
    format!("sk-ant-api03-TESTkey{n:04}abcdefghijklmnopqrstuvwxyz{n:04}")
}

/// A child process whose stdout lines are kept.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(mut cmd: Command, ready_prefix: &str) -> (Proc, String) {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {cmd:?}: {e} (run `cargo xtask build` first)"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let keep = lines.clone();
        let prefix = ready_prefix.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with(&prefix) {
                    let _ = tx.send(line.clone());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => (Proc { child, lines }, line),
            Err(_) => {
                let _ = child.kill();
                panic!("{ready_prefix} did not start: {:?}", lines.lock().unwrap());
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of an address like `http://127.0.0.1:P`.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {url}"))
}

fn field(line: &str, name: &str) -> String {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("no {name}= in {line}")).to_string()
}

/// The package devnode runs: the zip, the key-issuer's process id in it, and the node name.
#[derive(Clone, Debug)]
pub struct Package {
    pub zip: PathBuf,
    pub issuer: String,
    /// `--node` for devnode; its default (`operator.os`) when None.
    pub node: Option<String>,
}

impl Package {
    /// What `cargo xtask build` writes: `target/pkg/anthropic-api-key-manager:keymanager.os.zip`.
    pub fn default_build() -> Package {
        Package { zip: target().join("pkg/anthropic-api-key-manager:keymanager.os.zip"), issuer: ISSUER.to_string(), node: None }
    }
}

pub struct Env {
    devnode: Option<Proc>,
    fake: Option<Proc>,
    package: Package,
    http_port: u16,
    control_port: u16,
    pub data_dir: PathBuf,
    pub http: String,
    pub control: String,
    pub fake_url: String,
    cookie: String,
    peers: Vec<String>,
    /// `--peer-package NODE=ZIP`: nodes that run a package of their own.
    peer_packages: Vec<(String, PathBuf)>,
}

pub fn post(url: &str, body: &Value) -> Value {
    match ureq::post(url).timeout(Duration::from_secs(120)).set("content-type", "application/json").send_string(&body.to_string()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let text = r.into_string().unwrap();
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        Err(e) => panic!("POST {url}: {e}"),
    }
}

pub fn get(url: &str) -> Value {
    let text = ureq::get(url).timeout(Duration::from_secs(60)).call().unwrap().into_string().unwrap();
    serde_json::from_str(&text).unwrap()
}

impl Env {
    /// devnode with `peers` simulated nodes, and fake-admin-api with `scenario`.
    pub fn start(name: &str, scenario: &str, peers: &[String]) -> Env {
        let data_dir = target().join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        Env::start_in(data_dir, scenario, peers)
    }

    /// Like [`Env::start`], with another package than the default build (e.g. the package built
    /// under another identity: `cargo xtask build --publisher ... --issuer-process ...`).
    pub fn start_package(name: &str, package: Package, scenario: &str, peers: &[String]) -> Env {
        let data_dir = target().join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        Env::start_package_in(data_dir, package, scenario, peers)
    }

    /// devnode on `data_dir` as it is, and fake-admin-api with `scenario`.
    fn start_in(data_dir: PathBuf, scenario: &str, peers: &[String]) -> Env {
        Env::start_package_in(data_dir, Package::default_build(), scenario, peers)
    }

    fn start_package_in(data_dir: PathBuf, package: Package, scenario: &str, peers: &[String]) -> Env {
        Env::start_nodes_in(data_dir, package, scenario, peers, &[])
    }

    fn start_nodes_in(data_dir: PathBuf, package: Package, scenario: &str, peers: &[String], peer_packages: &[(String, PathBuf)]) -> Env {
        let mut env = Env {
            devnode: None,
            fake: None,
            package,
            // 0: devnode picks free ports (no race between tests); a restart reuses them.
            http_port: 0,
            control_port: 0,
            data_dir,
            http: String::new(),
            control: String::new(),
            fake_url: String::new(),
            cookie: String::new(),
            peers: peers.to_vec(),
            peer_packages: peer_packages.to_vec(),
        };
        env.start_devnode();
        let mut fake = Command::new(target().join("tools/fake-admin-api"));
        fake.args(["--scenario", root().join("tools/fake-admin-api/scenarios").join(scenario).to_str().unwrap(), "--port", "0", "--clock-url", &env.control]);
        let (proc_, line) = Proc::start(fake, "fake-admin-api ready");
        env.fake = Some(proc_);
        env.fake_url = field(&line, "url");
        env.login();
        env
    }

    fn start_devnode(&mut self) {
        let mut cmd = Command::new(target().join("tools/devnode"));
        let zip = &self.package.zip;
        let (http_port, control_port) = (self.http_port.to_string(), self.control_port.to_string());
        cmd.args(["--package", zip.to_str().unwrap(), "--data-dir", self.data_dir.to_str().unwrap(), "--http-port", &http_port, "--control-port", &control_port, "--password", PASSWORD, "--quiet"]);
        if let Some(node) = &self.package.node {
            cmd.args(["--node", node]);
        }
        for p in &self.peers {
            cmd.args(["--peer", p]);
        }
        for (node, zip) in &self.peer_packages {
            cmd.args(["--peer-package", &format!("{node}={}", zip.display())]);
        }
        let (proc_, line) = Proc::start(cmd, "devnode ready");
        self.http = format!("{}/{}", field(&line, "http"), self.package.issuer);
        self.control = field(&line, "control");
        self.http_port = port_of(&field(&line, "http"));
        self.control_port = port_of(&self.control);
        self.devnode = Some(proc_);
        self.wait_ready();
    }

    /// Waits until the issuer answers (it restores its maps at start).
    fn wait_ready(&self) {
        for _ in 0..200 {
            let answer = post(&format!("{}/devnode/local", self.control), &json!({"from": "probe:probe:sys", "to": self.package.issuer, "body": {"PoolSummary": null}, "timeout_secs": 2}));
            if answer.get("response").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the key-issuer never answered");
    }

    /// Stops devnode and starts it again on the same data dir.
    pub fn restart_devnode(&mut self) {
        self.stop_devnode();
        self.start_devnode_again();
    }

    pub fn stop_devnode(&mut self) {
        self.devnode = None;
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Starts devnode on the same data dir and ports; returns once the issuer answers.
    pub fn start_devnode_again(&mut self) {
        self.start_devnode();
        self.login();
    }

    /// The issuer's SQLite file in the data dir.
    pub fn issuer_db(&self) -> PathBuf {
        self.data_dir.join("sqlite/anthropic-api-key-manager:keymanager.os/key-issuer.sqlite")
    }

    pub fn login(&mut self) {
        let base = self.http.rsplit_once('/').unwrap().0.to_string();
        let r = ureq::post(&format!("{base}/login")).send_string(&json!({"password": PASSWORD}).to_string()).unwrap();
        let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
        self.cookie = cookie;
    }

    /// A dashboard API call with the login cookie.
    pub fn api(&self, call: Value) -> Value {
        self.api_with(call, &[("content-type", "application/json")]).1
    }

    /// A dashboard API call with the login cookie and these headers; the status and the answer.
    pub fn api_with(&self, call: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = ureq::post(&format!("{}/api", self.http)).set("cookie", &self.cookie).timeout(Duration::from_secs(120));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        match request.send_string(&call.to_string()) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let status = r.status();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut r.into_reader(), &mut text).unwrap();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => panic!("API call {call}: {e}"),
        }
    }

    pub fn api_unauthenticated(&self, path: &str, call: Value) -> (u16, String) {
        match ureq::post(&format!("{}{path}", self.http)).send_string(&call.to_string()) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }

    /// A p2p request from a simulated node.
    pub fn p2p(&self, from: &str, body: Value) -> Value {
        post(&format!("{}/devnode/p2p", self.control), &json!({"from": from, "to": self.package.issuer, "body": body}))
    }

    pub fn local(&self, from: &str, to: &str, body: Value) -> Value {
        post(&format!("{}/devnode/local", self.control), &json!({"from": from, "to": to, "body": body, "timeout_secs": 10}))
    }

    pub fn advance(&self, seconds: i64) -> Value {
        post(&format!("{}/devnode/clock/advance", self.control), &json!({"seconds": seconds}))
    }

    pub fn restart_process(&self, process: &str) {
        post(&format!("{}/devnode/restart", self.control), &json!({"process": process}));
        self.wait_ready();
    }

    pub fn fake_control(&self, path: &str, body: Option<Value>) -> Value {
        match body {
            Some(b) => post(&format!("{}/_control/{path}", self.fake_url), &b),
            None => get(&format!("{}/_control/{path}", self.fake_url)),
        }
    }

    /// Points the app at the fake Admin API and gives it the admin key.
    pub fn configure_admin_api(&self) {
        let r = self.api(json!({"UpdateSettings": {"admin_api_base_url": self.fake_url}}));
        assert!(r.get("Ok").is_some(), "{r}");
        let r = self.api(json!({"SetAdminKey": {"admin_key": ADMIN_KEY}}));
        assert!(r.get("Ok").is_some(), "{r}");
    }

    /// Everything the devnode's processes printed.
    pub fn logs(&self) -> String {
        let v = get(&format!("{}/devnode/logs?since=0", self.control));
        v["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join("\n")
    }

    /// Output lines of devnode and fake-admin-api so far.
    pub fn process_output(&self) -> String {
        let mut out = self.fake.as_ref().map(|f| f.lines.lock().unwrap().join("\n")).unwrap_or_default();
        if let Some(d) = &self.devnode {
            out.push('\n');
            out.push_str(&d.lines.lock().unwrap().join("\n"));
        }
        out
    }

    /// Polls until `check` holds (the poller works asynchronously).
    pub fn eventually(&self, what: &str, check: impl FnMut() -> bool) {
        self.eventually_within(30, what, check)
    }

    /// Polls until `check` holds, for at most `secs` seconds.
    pub fn eventually_within(&self, secs: u64, what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..secs * 10 {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for: {what}");
    }
}

/// Copies the directory tree `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl Env {
    /// Like [`Env::start`], but devnode starts on a fresh copy (in `target/e2e/<name>`) of the data
    /// dir `data`, e.g. a saved data dir of an older release (`tools/e2e/fixtures/`). With
    /// `resume_clock_at_ms` (unix ms) the virtual clock resumes at that time instead of running on
    /// from the saved offset, so that the run does not depend on the day it runs.
    pub fn start_with_data(name: &str, data: &Path, scenario: &str, peers: &[String], resume_clock_at_ms: Option<i64>) -> Env {
        let data_dir = target().join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&data_dir);
        copy_dir(data, &data_dir).unwrap_or_else(|e| panic!("copying {} to {}: {e}", data.display(), data_dir.display()));
        if let Some(at) = resume_clock_at_ms {
            let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            std::fs::write(data_dir.join("clock-offset-ms"), (at - real).to_string()).unwrap();
        }
        Env::start_in(data_dir, scenario, peers)
    }

    /// Stops devnode as an operator would (`POST /devnode/shutdown`) and waits for it to exit
    /// (killed after 30 s). Start it again with [`Env::start_devnode_again`].
    pub fn shutdown_devnode(&mut self) {
        let Some(mut proc_) = self.devnode.take() else { return };
        let _ = ureq::post(&format!("{}/devnode/shutdown", self.control)).timeout(Duration::from_secs(10)).send_string("{}");
        for _ in 0..300 {
            if matches!(proc_.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(proc_);
    }

    /// `POST` to the fake Admin API itself, with the scenario's admin key (as the Console or
    /// another client of the organization would), e.g. to set a key's status.
    pub fn admin_api_post(&self, path: &str, body: Value) -> Value {
        let request = ureq::post(&format!("{}{path}", self.fake_url))
            .set("x-api-key", ADMIN_KEY)
            .set("anthropic-version", "2023-06-01")
            .set("content-type", "application/json")
            .timeout(Duration::from_secs(30));
        match request.send_string(&body.to_string()) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let text = r.into_string().unwrap();
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            Err(e) => panic!("POST {path}: {e}"),
        }
    }
}

impl Env {
    /// Waits until devnode reports nothing queued, handled or in flight (`GET /devnode/quiet`);
    /// false if that did not happen within `secs` seconds.
    pub fn wait_quiet(&self, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if get(&format!("{}/devnode/quiet", self.control))["quiet"] == true {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Env {
    /// `AddKey`, then waits until the key's background look-up in the organization's keys is
    /// over. Answers `{"Ok": <the key as ListKeys shows it then>}`, or the refusal as it came.
    pub fn add_key(&self, body: Value) -> Value {
        let answer = self.api(serde_json::json!({"AddKey": body}));
        let Some(id) = answer["Ok"]["id"].as_u64() else {
            return answer;
        };
        let settled = || {
            let keys = self.api(serde_json::json!({"ListKeys": null}));
            keys.as_array().and_then(|keys| keys.iter().find(|k| k["id"] == id).cloned()).filter(|k| k["matching"] == false)
        };
        self.eventually(&format!("key {id} looked up in the organization"), || settled().is_some());
        serde_json::json!({"Ok": settled().expect("settled above")})
    }

    /// Starts a check (`{"TestKey": id}`, `{"TestConnection": null}`) and follows it with
    /// `GetCheck` until it has an outcome, which it answers (`{"Key": ...}`, `{"Connection":
    /// ...}` or `{"Failed": "..."}`); a refused start is answered as it came.
    pub fn run_check(&self, start: Value) -> Value {
        let answer = self.api(start);
        let Some(id) = answer["Ok"]["id"].as_u64() else {
            return answer;
        };
        let mut outcome = Value::Null;
        self.eventually(&format!("check {id} finished"), || {
            outcome = self.api(serde_json::json!({"GetCheck": id}))["Ok"]["outcome"].clone();
            !outcome.is_null()
        });
        outcome
    }
}

impl Env {
    /// A dashboard API call with the login cookie and raw bytes as the body (JSON content type):
    /// the status and the answer's text.
    pub fn api_bytes(&self, body: &[u8]) -> (u16, String) {
        let request = ureq::post(&format!("{}/api", self.http))
            .set("cookie", &self.cookie)
            .set("content-type", "application/json")
            .timeout(Duration::from_secs(60));
        match request.send_bytes(body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
            Err(e) => panic!("POST /api: {e}"),
        }
    }
}

/// The test-only peer-client package (`cargo xtask test-packages` builds it; `cargo xtask test`
/// does so before the e2e suite).
pub fn peer_client_zip() -> PathBuf {
    target().join("test-packages/peer-client:test.os.zip")
}

pub const PEER_CLIENT: &str = "peer-client:peer-client:test.os";

impl Env {
    /// Like [`Env::start`], with more nodes that each run a package of their own
    /// (`--peer-package NODE=ZIP`), e.g. `("alice.os", peer_client_zip())`.
    pub fn start_with_peer_packages(name: &str, scenario: &str, peers: &[String], peer_packages: &[(&str, PathBuf)]) -> Env {
        let data_dir = target().join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        let peer_packages: Vec<(String, PathBuf)> = peer_packages.iter().map(|(node, zip)| (node.to_string(), zip.clone())).collect();
        Env::start_nodes_in(data_dir, Package::default_build(), scenario, peers, &peer_packages)
    }

    /// A local request to process `to` on `node` (a node devnode runs, e.g. a `--peer-package`
    /// node) from a simulated local caller there.
    pub fn local_on(&self, node: &str, to: &str, body: Value, timeout_secs: u64) -> Value {
        post(&format!("{}/devnode/local", self.control), &json!({"node": node, "from": "probe:probe:sys", "to": to, "body": body, "timeout_secs": timeout_secs}))
    }
}

/// The benchmark-only echo package (`cargo xtask test-packages` builds it; `cargo xtask bench`
/// does so itself): it answers every request with a fixed body, the floor issuance is measured
/// against.
pub fn echo_zip() -> PathBuf {
    target().join("test-packages/echo:test.os.zip")
}

pub const ECHO: &str = "echo:echo:test.os";

impl Env {
    /// Runs a browser test script of `ui/browser-tests/` (playwright-core driving Debian's
    /// Chromium) against this devnode: the script reads the dashboard's URL, the node password,
    /// devnode's control API, the fake Admin API, the issuer's process id, the admin key and the
    /// screenshot folder from the environment, plus `extra`. Fails the test if the script fails,
    /// or if a process logged one of `secrets` (the admin key is always one).
    pub fn run_browser_script(&self, script: &str, extra: &[(&str, &str)], secrets: &[String]) {
        let mut cmd = Command::new("node");
        cmd.arg(root().join("ui/browser-tests").join(script))
            .current_dir(root().join("ui"))
            .env("DASHBOARD_URL", format!("{}/", self.http))
            .env("NODE_PASSWORD", PASSWORD)
            .env("DEVNODE_CONTROL", &self.control)
            .env("FAKE_ADMIN_API", &self.fake_url)
            .env("ISSUER_PROCESS", &self.package.issuer)
            .env("TEST_ADMIN_KEY", ADMIN_KEY)
            .env("SCREENSHOT_DIR", root().join("target").join("screenshots"));
        for (name, value) in extra {
            cmd.env(name, value);
        }
        let status = cmd.status().expect("running node (ui/ dependencies are installed by cargo xtask build)");
        assert!(status.success(), "the browser test {script} failed (see its output above)");
        let logs = self.logs() + &self.process_output();
        assert!(!logs.contains(ADMIN_KEY), "the admin key was logged");
        for secret in secrets {
            assert!(!logs.contains(secret.as_str()), "a full API key was logged");
        }
    }
}

impl Env {
    /// How many polls the cost-poller has finished (Status).
    pub fn polls_total(&self) -> u64 {
        self.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0)
    }

    /// Asks for a poll and waits until one more has finished.
    pub fn poll(&self) {
        let before = self.polls_total();
        self.api(json!({"PollNow": null}));
        self.eventually("a poll", || self.polls_total() > before);
    }
}
