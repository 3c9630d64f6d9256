//! `cargo xtask run`: builds the package and runs it in devnode, with demo data against the
//! scripted Admin API, or against the real Admin API when given an admin key.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{paths, Result};

const ISSUER: &str = "key-issuer:anthropic-api-key-manager:keymanager.os";
const DEMO_ADMIN_KEY: &str = "sk-ant-admin01-TESTadminkeyabcdefghijklmnop0001";
const DEMO_PEERS: usize = 12;

struct Options {
    admin_key_file: Option<PathBuf>,
    data_dir: PathBuf,
    http_port: u16,
    password: String,
    fresh: bool,
    /// Show fake-admin-api's line per request (off: it would flood the operator's terminal).
    verbose: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        admin_key_file: None,
        data_dir: paths::target().join("run-data"),
        http_port: 8080,
        password: "demo-password".to_string(),
        fresh: false,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--admin-key-file" => o.admin_key_file = Some(PathBuf::from(value()?)),
            "--data-dir" => o.data_dir = PathBuf::from(value()?),
            "--port" => o.http_port = value()?.parse().map_err(|_| "--port needs a port number")?,
            "--password" => o.password = value()?,
            "--fresh" => o.fresh = true,
            "--verbose" => o.verbose = true,
            other => return Err(format!("unknown flag {other} (flags: --admin-key-file PATH, --data-dir DIR, --port N, --password PW, --fresh, --verbose)").into()),
        }
    }
    Ok(o)
}

/// Starts a child and waits for its readiness line; returns the line.
fn start(mut cmd: Command, ready: &str) -> Result<(Child, String)> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting {:?}: {e}", cmd.get_program()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            if line.starts_with(&ready) {
                let _ = tx.send(line.clone());
            }
            println!("{line}");
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(line) => Ok((child, line)),
        Err(_) => {
            let _ = child.kill();
            Err("a child process did not start; see its output above".into())
        }
    }
}

fn field(line: &str, name: &str) -> Result<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
        .ok_or_else(|| format!("no {name}= in {line:?}").into())
}

fn post(url: &str, cookie: Option<&str>, body: &Value) -> Result<Value> {
    let mut request = ureq::post(url).timeout(Duration::from_secs(120)).set("content-type", "application/json");
    if let Some(c) = cookie {
        request = request.set("cookie", c);
    }
    let text = match request.send_string(&body.to_string()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_string()?,
        Err(e) => return Err(format!("POST {url}: {e}").into()),
    };
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The signals that stop `run`: Ctrl-C, `kill`, and a closed terminal.
const STOP_SIGNALS: [i32; 3] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP];

/// A flag set when xtask gets one of [`STOP_SIGNALS`]; a second such signal exits at once.
fn stop_requested_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in STOP_SIGNALS {
        // Registered before the flag's own handler, so it sees whether an earlier signal set it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}

/// The children `run` started. Dropping it stops them, however `run` ends: an error while
/// seeding, devnode exiting, or a signal.
#[derive(Default)]
struct Children {
    devnode: Option<Child>,
    /// devnode's control API, to ask it to shut down cleanly.
    control: Option<String>,
    others: Vec<Child>,
}

/// How long devnode gets to shut down before it is killed.
const DEVNODE_GRACE: Duration = Duration::from_secs(5);

impl Children {
    fn stop(&mut self) {
        if let Some(mut devnode) = self.devnode.take() {
            if let Some(control) = &self.control {
                let _ = ureq::post(&format!("{control}/devnode/shutdown")).timeout(Duration::from_secs(2)).send_string("{}");
            }
            wait_or_kill(&mut devnode, DEVNODE_GRACE);
        }
        for mut child in self.others.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

enum Ending {
    DevnodeExited(ExitStatus),
    StopRequested,
}

/// Waits until devnode exits or a stop is requested.
fn supervise(children: &mut Children, stop: &AtomicBool) -> Result<Ending> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Ending::StopRequested);
        }
        if let Some(devnode) = children.devnode.as_mut() {
            if let Some(status) = devnode.try_wait()? {
                children.devnode = None;
                return Ok(Ending::DevnodeExited(status));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Refuses to start when the dashboard's port is in use (most often: another `cargo xtask run`),
/// before anything is built or started.
fn check_port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "port {port} is taken (is another `cargo xtask run` up?): stop it, or choose another port with --port N"
        )
        .into()),
        Err(e) => Err(format!("port {port}: {e}").into()),
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    check_port_free(options.http_port)?;
    let admin_key = match (&options.admin_key_file, std::env::var("ANTHROPIC_ADMIN_KEY").ok()) {
        (Some(path), _) => Some(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?.trim().to_string()),
        (None, Some(key)) if !key.trim().is_empty() => Some(key.trim().to_string()),
        _ => None,
    };
    let report = crate::package::build()?;
    crate::test::build_tools()?;
    if options.fresh && options.data_dir.exists() {
        std::fs::remove_dir_all(&options.data_dir)?;
    }
    let first_run = !options.data_dir.join("state").exists();
    let demo = admin_key.is_none();
    let control_port = free_port()?;
    let mut devnode = Command::new(paths::target().join("tools/devnode"));
    devnode.args([
        "--package", &report.zip_path.to_string_lossy(),
        "--data-dir", &options.data_dir.to_string_lossy(),
        "--http-port", &options.http_port.to_string(),
        "--control-port", &control_port.to_string(),
        "--password", &options.password,
    ]);
    if demo {
        for i in 0..DEMO_PEERS {
            devnode.args(["--peer", &format!("demo-node-{i}.os")]);
        }
    }
    // From here on a signal stops the children instead of leaving them running.
    let stop = stop_requested_flag()?;
    let mut children = Children::default();
    let (devnode, line) = start(devnode, "devnode ready")?;
    children.devnode = Some(devnode);
    let http = field(&line, "http")?;
    let control = field(&line, "control")?;
    children.control = Some(control.clone());

    let login = ureq::post(&format!("{http}/login")).send_string(&json!({"password": options.password}).to_string())?;
    let cookie = login.header("set-cookie").and_then(|c| c.split(';').next()).ok_or("devnode refused the login")?.to_string();
    let api = format!("{http}/{ISSUER}/api");
    let call = |body: Value| post(&api, Some(&cookie), &body);

    if let Some(key) = &admin_key {
        let answer = call(json!({"SetAdminKey": {"admin_key": key}}))?;
        if answer.get("Ok").is_none() {
            return Err(format!("the app refused the admin key: {}", answer.get("Err").and_then(Value::as_str).unwrap_or("unknown error")).into());
        }
        println!("xtask: running against the real Admin API; no demo data is added");
    } else {
        let scenario = paths::root().join("tools/fake-admin-api/scenarios/demo.json");
        let mut fake = Command::new(paths::target().join("tools/fake-admin-api"));
        fake.args(["--scenario", &scenario.to_string_lossy(), "--port", "0", "--clock-url", &control]);
        if !options.verbose {
            fake.arg("--quiet");
        }
        let (fake, line) = start(fake, "fake-admin-api ready")?;
        children.others.push(fake);
        let fake_url = field(&line, "url")?;
        call(json!({"UpdateSettings": {"admin_api_base_url": fake_url}}))?;
        call(json!({"SetAdminKey": {"admin_key": DEMO_ADMIN_KEY}}))?;
        if first_run {
            seed_demo(&call, &control)?;
        }
    }
    println!();
    println!("  dashboard: {http}/{ISSUER}/");
    println!("  password:  {}", options.password);
    println!("  devnode control API: {control}  (docs/devnode.md)");
    println!("  data dir:  {}  (kept between runs; --fresh starts over)", options.data_dir.display());
    println!("  Ctrl-C stops everything.");
    let ending = supervise(&mut children, &stop)?;
    children.stop();
    match ending {
        Ending::StopRequested => {
            // Not println!: after SIGHUP the terminal may be gone, and println! panics then.
            let _ = writeln!(std::io::stdout(), "xtask: stopped devnode and fake-admin-api");
            Ok(())
        }
        Ending::DevnodeExited(status) if status.success() => Ok(()),
        // Ctrl-C reaches devnode too (same process group): it stops cleanly, and so does xtask.
        Ending::DevnodeExited(_) if stop.load(Ordering::SeqCst) => Ok(()),
        Ending::DevnodeExited(status) => Err(format!("devnode exited with {status}").into()),
    }
}

/// Demo keys (matching the demo scenario's hints) and nodes joining over two days of virtual time.
fn seed_demo(call: &dyn Fn(Value) -> Result<Value>, control: &str) -> Result<()> {
    for n in 1..=4u32 {
        let secret = format!("sk-ant-api03-TESTkey{n:04}abcdefghijklmnopqrstuvwxyz{n:04}");
        let answer = call(json!({"AddKey": {"secret": secret, "name": format!("demo key {n}"), "budget_usd": "25", "node_cap": 5}}))?;
        if answer.get("Ok").is_none() {
            return Err(format!("adding demo key {n}: {answer}").into());
        }
    }
    wait_until_matched(call)?;
    for i in 0..DEMO_PEERS {
        post(&format!("{control}/devnode/clock/advance"), None, &json!({"seconds": 4 * 3600}))?;
        post(
            &format!("{control}/devnode/p2p"),
            None,
            &json!({"from": format!("demo-node-{i}.os"), "to": ISSUER, "body": {"RequestApiKey": null}}),
        )?;
    }
    call(json!({"PollNow": null}))?;
    println!("xtask: demo data added: 4 keys, {DEMO_PEERS} nodes over two days of virtual time");
    Ok(())
}

/// A new key is looked up in the organization in the background and not issued before that is
/// over (`matching` in ListKeys): the demo nodes must find the keys ready.
fn wait_until_matched(call: &dyn Fn(Value) -> Result<Value>) -> Result<()> {
    for _ in 0..300 {
        let keys = call(json!({"ListKeys": null}))?;
        if keys.as_array().is_some_and(|keys| keys.iter().all(|k| k["matching"] == false)) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err("the demo keys were not matched to the simulated Admin API's keys within 30 s".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_taken_port_is_refused_plainly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let e = check_port_free(port).unwrap_err().to_string();
        assert!(e.contains(&format!("port {port} is taken")) && e.contains("--port"), "{e}");
        drop(listener);
        assert!(check_port_free(port).is_ok());
    }

    #[test]
    fn fake_admin_api_requests_are_quiet_unless_verbose() {
        assert!(!parse(&[]).unwrap().verbose);
        assert!(parse(&args(&["--verbose"])).unwrap().verbose);
        let o = parse(&args(&["--port", "9000", "--fresh", "--verbose"])).unwrap();
        assert_eq!((o.http_port, o.fresh, o.verbose), (9000, true, true));
        assert!(parse(&args(&["--loud"])).is_err());
    }

    fn sleeper() -> Child {
        Command::new("sleep").arg("30").spawn().expect("sleep")
    }

    fn is_running(pid: u32) -> bool {
        // A reaped child has no /proc entry; a zombie would still have one, with state Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
    }

    #[test]
    fn a_stop_request_stops_every_child() {
        let mut children = Children { devnode: Some(sleeper()), control: None, others: vec![sleeper()] };
        let pids = [children.devnode.as_ref().unwrap().id(), children.others[0].id()];
        assert!(pids.iter().all(|&pid| is_running(pid)));
        let stop = AtomicBool::new(true);
        assert!(matches!(supervise(&mut children, &stop).unwrap(), Ending::StopRequested));
        drop(children);
        assert!(pids.iter().all(|&pid| !is_running(pid)), "children left running");
    }

    #[test]
    fn devnode_exiting_ends_the_run_and_stops_the_rest() {
        let mut children = Children {
            devnode: Some(Command::new("true").spawn().unwrap()),
            control: None,
            others: vec![sleeper()],
        };
        let fake = children.others[0].id();
        let stop = AtomicBool::new(false);
        assert!(matches!(supervise(&mut children, &stop).unwrap(), Ending::DevnodeExited(s) if s.success()));
        children.stop();
        assert!(!is_running(fake));
    }

    #[test]
    fn sigterm_and_sighup_request_a_stop() {
        // The handlers stay installed for the rest of this test binary; a first signal only sets
        // the flag, which is all the other tests could meet.
        let stop = stop_requested_flag().unwrap();
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
            stop.store(false, Ordering::SeqCst);
            signal_hook::low_level::raise(signal).unwrap();
            assert!(stop.load(Ordering::SeqCst), "signal {signal} did not set the flag");
        }
    }
}
