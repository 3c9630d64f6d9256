//! `cargo xtask test`: builds the package and runs every test suite, failing on any failure or on
//! a full fake key in any suite's output.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::paths;
use crate::Result;

struct Suite {
    name: &'static str,
    command: fn() -> Command,
}

fn cargo_test(packages: &[&str]) -> Command {
    let mut cmd = paths::cargo();
    cmd.args(["test", "--profile", "tools"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    cmd
}

/// Every test suite of the project, in order.
fn suites() -> Vec<Suite> {
    vec![
        Suite { name: "shared-types and key client (unit, property, fixture)", command: || cargo_test(&["shared-types", "anthropic-key-client"]) },
        Suite { name: "xtask", command: || cargo_test(&["xtask"]) },
        Suite { name: "devnode and fake-admin-api (unit)", command: || cargo_test(&["devnode", "fake-admin-api"]) },
        Suite { name: "dashboard (Vitest unit)", command: crate::ui::unit_tests },
        Suite { name: "end to end (devnode + fake-admin-api + package + Chromium)", command: || cargo_test(&["e2e"]) },
    ]
}

/// Runs `cmd`, echoing its output and returning it.
fn run_captured(mut cmd: Command) -> Result<(bool, String)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
            eprintln!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("piped");
    let mut buf = [0u8; 8192];
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = String::from_utf8_lossy(&buf[..n]);
        print!("{chunk}");
        out.push_str(&chunk);
    }
    let status = child.wait()?;
    out.push_str(&err_thread.join().unwrap_or_default());
    Ok((status.success(), out))
}

/// The native tools the end-to-end tests start as processes.
pub fn build_tools() -> Result<()> {
    crate::paths::run(paths::cargo().args(["build", "--profile", "tools", "-p", "devnode", "-p", "fake-admin-api"]), "building devnode and fake-admin-api")
}

/// Debian's Chromium for the browser tests: installed with apt-get when it is missing.
pub fn ensure_chromium() -> Result<()> {
    if std::path::Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    println!("xtask: installing Debian's chromium for the browser tests (apt-get)");
    let apt = |args: &[&str], what: &str| {
        crate::paths::run(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"), what)
    };
    apt(&["update", "-qq"], "apt-get update (needs root)")?;
    apt(&["install", "-y", "-qq", "chromium"], "apt-get install chromium (needs root)")?;
    if std::path::Path::new(CHROMIUM).exists() {
        Ok(())
    } else {
        Err(format!("chromium was installed but {CHROMIUM} is missing").into())
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

pub fn run_all() -> Result<()> {
    let started = Instant::now();
    ensure_chromium()?;
    crate::package::build()?;
    build_tools()?;
    // The e2e suite runs them on a second node (two_nodes.rs).
    crate::test_packages::build()?;
    let mut results = vec![];
    for suite in suites() {
        println!("\nxtask: running {}", suite.name);
        let t = Instant::now();
        let (passed, output) = run_captured((suite.command)())?;
        let leaks = crate::secrets::lines_with_full_keys(&output);
        for line in &leaks {
            eprintln!("xtask: line {line} of the output of {} contains a full key", suite.name);
        }
        results.push((suite.name, passed && leaks.is_empty(), t.elapsed().as_secs()));
    }
    println!("\nxtask: test summary");
    for (name, ok, secs) in &results {
        println!("  {:<60} {:<6} {secs:>5} s", name, if *ok { "passed" } else { "FAILED" });
    }
    println!("  total {} s", started.elapsed().as_secs());
    if results.iter().all(|(_, ok, _)| *ok) {
        Ok(())
    } else {
        Err("some test suites failed".into())
    }
}

/// Builds everything, then runs the benchmark binary (figures, not pass/fail); `which` is `p2p`,
/// `dashboard` or empty for both.
pub fn bench(which: &[String]) -> Result<()> {
    ensure_chromium()?;
    crate::package::build()?;
    build_tools()?;
    // The p2p part measures issuance against tools/echo, the floor of devnode's p2p path.
    crate::test_packages::build()?;
    crate::paths::run(paths::cargo().args(["run", "--profile", "tools", "-p", "e2e", "--bin", "bench", "--"]).args(which), "benchmark")
}
