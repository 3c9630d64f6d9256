//! `cargo xtask run`: builds the package and runs it in devnode, with demo data against the
//! scripted Admin API, or against the real Admin API when given an admin key.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        admin_key_file: None,
        data_dir: paths::target().join("run-data"),
        http_port: 8080,
        password: "demo-password".to_string(),
        fresh: false,
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
            other => return Err(format!("unknown flag {other} (flags: --admin-key-file PATH, --data-dir DIR, --port N, --password PW, --fresh)").into()),
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

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
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
    let (mut devnode, line) = start(devnode, "devnode ready")?;
    let http = field(&line, "http")?;
    let control = field(&line, "control")?;
    let mut children = vec![];

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
        let scenario = paths::root().join("fake-admin-api/scenarios/demo.json");
        let mut fake = Command::new(paths::target().join("tools/fake-admin-api"));
        fake.args(["--scenario", &scenario.to_string_lossy(), "--port", "0", "--clock-url", &control]);
        let (fake, line) = start(fake, "fake-admin-api ready")?;
        children.push(fake);
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
    let status = devnode.wait()?;
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("devnode exited with {status}").into())
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
