//! `cargo xtask bench [p2p|dashboard|export|scale]`: p2p issuance throughput and latency through devnode, empty
//! and with a million issued nodes and a year of hourly samples for 100 keys preloaded, each as a
//! ratio of the floor (tools/echo answering the same p2p path on a devnode of its own) and with
//! devnode's breakdown of where a request's time goes; the restart, the dashboard calls and memory
//! at that size; then the dashboard's first render and zoom redraw in
//! headless Chromium with a year of hourly cost for 100 keys and 10,000 node markers; the CSV
//! exports over that year (`bench export` runs them alone; `bench scale` the restart, dashboard
//! calls and memory at a million nodes alone). Prints figures; goals are printed,
//! never enforced.

use std::time::{Duration, Instant};

use e2e::*;
use serde_json::json;

const FRESH_NODES: usize = 2_000;
const PRELOADED_NODES: usize = 1_000_000;
const KEYS: u32 = 100;
const HOURS: i64 = 365 * 24;
const CLIENTS: usize = 2;
/// Every figure of the issuance runs is the median of this many runs, printed with their min and max.
const RUNS: usize = 5;

struct Run {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Each of `nodes` asks for a key once, from `clients` threads.
fn issue_all(env: &Env, nodes: &[String], clients: usize) -> Run {
    let started = Instant::now();
    let chunks: Vec<Vec<String>> = nodes.chunks(nodes.len().div_ceil(clients)).map(|c| c.to_vec()).collect();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|node| {
                            let t = Instant::now();
                            let answer = env.p2p(node, json!({"RequestApiKey": null}));
                            assert!(answer["response"]["Ok"].is_string(), "{answer}");
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    latencies.sort();
    let mean_ms = latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / latencies.len() as f64;
    Run { per_second: nodes.len() as f64 / elapsed.as_secs_f64(), p50_ms: percentile(&latencies, 0.5), p99_ms: percentile(&latencies, 0.99), mean_ms }
}

/// Writes `nodes` issuances spread over the year and a year of hourly samples for every key
/// straight into the stopped issuer's database.
fn preload(env: &Env, nodes: usize) {
    let mut db = rusqlite::Connection::open(env.issuer_db()).expect("issuer database");
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(3600) - HOURS * 3600;
    let tx = db.transaction().unwrap();
    {
        let mut insert = tx.prepare("INSERT INTO issuances (node, key_id, issued_at) VALUES (?1, ?2, ?3)").unwrap();
        for i in 0..nodes {
            let at = start + (i as i64 * HOURS * 3600) / nodes as i64;
            insert.execute(rusqlite::params![format!("pre{i}.os"), (i as u32 % KEYS + 1) as i64, at]).unwrap();
        }
        let mut insert = tx
            .prepare("INSERT INTO usage_samples (key_id, bucket_start, source, model, service_tier, context_window, micro_usd, uncached_input, cache_write_5m, cache_write_1h, cache_read, output, web_search_requests) VALUES (?1, ?2, 'usage_estimate', 'claude-sonnet-4-5-20250929', 'standard', '0-200k', ?3, 1000, 0, 0, 0, 100, 0)")
            .unwrap();
        for key in 1..=KEYS as i64 {
            for h in 0..HOURS {
                insert.execute(rusqlite::params![key, start + h * 3600, 4_500 + (h % 7) * 10]).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn add_keys(env: &Env) {
    // No Admin API here: the keys stay unmatched, so allow issuing them.
    let r = env.api(json!({"UpdateSettings": {"issue_unmatched_keys": true}}));
    assert!(r.get("Ok").is_some(), "{r}");
    for n in 1..=KEYS {
        let r = env.add_key(json!({"secret": secret(n), "name": format!("bench {n}"), "lifetime_days": 3650, "budget_usd": "1000000", "node_cap": null}));
        assert!(r.get("Ok").is_some(), "{r}");
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    if which == "export" {
        return exports_alone();
    }
    if which == "scale" {
        return scale_alone();
    }
    if which == "breakdown" {
        return breakdown_alone();
    }
    if which != "dashboard" {
        p2p_and_cost_series();
    }
    if which != "p2p" {
        dashboard();
    }
}

/// One export paged to its end as the dashboard pages it (default chunk size).
struct ExportRun {
    secs: f64,
    rows: u64,
    chunks: u64,
    megabytes: f64,
    slowest_chunk_ms: f64,
}

fn time_export(env: &Env, query: serde_json::Value) -> ExportRun {
    let started = Instant::now();
    let (mut rows, mut chunks, mut bytes, mut slowest) = (0, 0, 0, Duration::ZERO);
    let mut cursor = serde_json::Value::Null;
    loop {
        let mut call = query.clone();
        call["cursor"] = cursor;
        let t = Instant::now();
        let answer = env.api(json!({ "Export": call }));
        slowest = slowest.max(t.elapsed());
        let chunk = answer.get("Ok").unwrap_or_else(|| panic!("export {query}: {answer}"));
        rows += chunk["rows"].as_u64().unwrap();
        bytes += chunk["csv"].as_str().unwrap().len();
        chunks += 1;
        cursor = chunk["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    ExportRun { secs: started.elapsed().as_secs_f64(), rows, chunks, megabytes: bytes as f64 / 1e6, slowest_chunk_ms: slowest.as_secs_f64() * 1000.0 }
}

/// The CSV exports over a year of hourly samples for 100 keys: table rows of figures.
fn export_figures(env: &Env) -> Vec<String> {
    // The issuer rebuilds its maps from SQLite on the first call that needs storage: not the export's time.
    let r = env.api(json!({"ListNodes": {"limit": 1}}));
    assert!(r.get("Ok").is_some(), "{r}");
    println!("bench: exporting a year of hourly cost for {KEYS} keys (3 times)");
    let mut runs: Vec<ExportRun> = (0..3).map(|_| time_export(env, json!({"what": "key_costs", "granularity": "hour"}))).collect();
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let hourly = runs.swap_remove(1);
    assert_eq!(hourly.rows, KEYS as u64 * HOURS as u64, "every key-hour exported once");
    let daily = time_export(env, json!({"what": "key_costs", "granularity": "day"}));
    println!("bench: exporting every issued node");
    let node_rows = time_export(env, json!({"what": "nodes"}));
    let row = |what: &str, run: &ExportRun, goal: &str| {
        format!(
            "| Export {what}: {} rows in {} chunks, {:.1} MB of CSV (slowest chunk {:.0} ms) | {:.2} s | {goal} |",
            run.rows, run.chunks, run.megabytes, run.slowest_chunk_ms, run.secs
        )
    };
    vec![
        row("key costs per hour, all keys, one year (median of 3)", &hourly, "< 2 s"),
        row("key costs per day, all keys, one year", &daily, "—"),
        row("nodes with attributed cost", &node_rows, "—"),
    ]
}

const EXPORT_NODES: usize = 10_000;

/// `bench export`: the exports alone, with a year of hourly samples for 100 keys and
/// 10,000 issued nodes preloaded (the full p2p run measures them with a million nodes).
fn exports_alone() {
    let mut env = Env::start("bench-export", "small.json", &[]);
    add_keys(&env);
    println!("bench: preloading {EXPORT_NODES} issued nodes and {HOURS} hourly samples for {KEYS} keys");
    env.stop_devnode();
    preload(&env, EXPORT_NODES);
    env.start_devnode_again();
    let figures = export_figures(&env);
    println!();
    println!("| measure | figure | goal |");
    println!("| --- | --- | --- |");
    for line in figures {
        println!("{line}");
    }
}

const DASHBOARD_NODES: usize = 10_000;

/// The dashboard in headless Chromium (ui/browser-tests/bench.mjs) with a year of data loaded.
fn dashboard() {
    let mut env = Env::start("bench-dashboard", "small.json", &[]);
    add_keys(&env);
    println!("bench: preloading {DASHBOARD_NODES} issued nodes and {HOURS} hourly samples for {KEYS} keys");
    env.stop_devnode();
    preload(&env, DASHBOARD_NODES);
    env.start_devnode_again();
    let status = std::process::Command::new("node")
        .arg(root().join("ui/browser-tests/bench.mjs"))
        .current_dir(root().join("ui"))
        .env("DASHBOARD_URL", format!("{}/", env.http))
        .env("NODE_PASSWORD", PASSWORD)
        .status()
        .expect("running node");
    assert!(status.success(), "the dashboard benchmark failed");
}

fn p2p_and_cost_series() {
    let load_at_start = load_average();
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}.os")).collect::<Vec<String>>();
    let (empty_nodes, loaded_nodes) = (names("fresh", RUNS * FRESH_NODES), names("late", RUNS * FRESH_NODES));
    let (traced_empty, traced_loaded) = (names("traced", TRACED_REQUESTS), names("tracedlate", TRACED_REQUESTS));
    let first_after_restart = "first.os".to_string();
    let issuer_peers = [empty_nodes.clone(), loaded_nodes.clone(), traced_empty.clone(), traced_loaded.clone(), vec![first_after_restart.clone()]].concat();
    let mut env = Env::start("bench", "small.json", &issuer_peers);
    // The echo keeps no state: its callers may ask again and again.
    let floor_nodes = names("floor", FRESH_NODES);
    let floor = Env::start_package("bench-floor", Package { zip: echo_zip(), issuer: ECHO.to_string(), node: None }, "small.json", &floor_nodes);
    add_keys(&env);
    issue_all(&floor, &floor_nodes[..FLOOR_WARM_UP], 1);

    println!("bench: {RUNS} runs of {FRESH_NODES} p2p key requests, empty pool history, each after a run of the floor");
    let empty = against_floor(&env, &floor, &empty_nodes, &floor_nodes);
    let floor_stages = breakdown(&floor, "floor", ECHO, &floor_nodes[..TRACED_REQUESTS]);
    let empty_stages = breakdown(&env, "empty", ISSUER, &traced_empty);

    println!("bench: preloading {PRELOADED_NODES} issued nodes and {HOURS} hourly samples for {KEYS} keys");
    env.stop_devnode();
    preload(&env, PRELOADED_NODES);
    let mut figures = restart_figures(&mut env, &first_after_restart, RUNS);
    println!("bench: {RUNS} runs of {FRESH_NODES} p2p key requests with the preload, each after a run of the floor");
    let loaded = against_floor(&env, &floor, &loaded_nodes, &floor_nodes);
    let loaded_stages = breakdown(&env, "preloaded", ISSUER, &traced_loaded);
    figures.extend(dashboard_call_figures(&env, PRELOADED_NODES));
    figures.extend(memory_figures(&env));
    figures.extend(export_figures(&env));

    println!();
    println!("| measure | figure | goal |");
    println!("| --- | --- | --- |");
    let commit = commit_floor(&env);
    for line in phase_rows("empty", &empty).into_iter().chain(phase_rows("preloaded", &loaded)).chain([commit.row()]).chain(figures) {
        println!("{line}");
    }
    println!();
    for line in breakdown_table(&[("issuance, empty", &empty_stages), ("issuance, preloaded", &loaded_stages), ("floor (echo)", &floor_stages)]) {
        println!("{line}");
    }
    println!();
    println!("Latencies are measured by a client on loopback through devnode's control API (HTTP), with {CLIENTS} client threads;");
    println!("each issuance run follows a run of the floor, so that both see the same load. A spread (max ÷ min of the {RUNS} runs)");
    println!("above {TOO_WIDE}× is too wide to judge a goal by.");
    println!("Machine: {} cores; load average (1, 5, 15 min) {load_at_start} at the start, {} at the end.", cores(), load_average());
}

// ----- the dashboard calls, the restart and memory at a million nodes (issue 13, item 4) -----

/// Median, fastest and slowest of several timed runs, in milliseconds.
struct Spread {
    runs: usize,
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut runs_ms: Vec<f64>) -> Spread {
        runs_ms.sort_by(f64::total_cmp);
        Spread { runs: runs_ms.len(), median: runs_ms[runs_ms.len() / 2], min: runs_ms[0], max: runs_ms[runs_ms.len() - 1] }
    }

    fn row(&self, what: &str, unit_ms: bool, goal_ms: f64) -> String {
        let met = if self.median < goal_ms { "met" } else { "**not met**" };
        if unit_ms {
            format!("| {what} (median of {}, min–max {:.1}–{:.1} ms) | {:.1} ms | < {goal_ms:.0} ms — {met} |", self.runs, self.min, self.max, self.median)
        } else {
            format!(
                "| {what} (median of {}, min–max {:.2}–{:.2} s) | {:.2} s | < {:.0} s — {met} |",
                self.runs,
                self.min / 1000.0,
                self.max / 1000.0,
                self.median / 1000.0,
                goal_ms / 1000.0
            )
        }
    }
}

/// `call` answered `runs` times, each checked by `check`.
fn time_call(env: &Env, runs: usize, call: &serde_json::Value, check: impl Fn(&serde_json::Value) -> bool) -> Spread {
    Spread::of(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let answer = env.api(call.clone());
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                assert!(check(&answer), "{call}: {}", answer.to_string().chars().take(300).collect::<String>());
                ms
            })
            .collect(),
    )
}

const DASHBOARD_GOAL_MS: f64 = 50.0;

/// Every dashboard call at the preloaded size, each the median of 7 calls, against < 50 ms.
fn dashboard_call_figures(env: &Env, nodes: usize) -> Vec<String> {
    println!("bench: timing the dashboard calls with {nodes} nodes");
    let page_of = |n: usize| move |r: &serde_json::Value| r["Ok"]["nodes"].as_array().is_some_and(|a| a.len() == n);
    let ok = |r: &serde_json::Value| r.get("Ok").is_some() || r.get("now").is_some();
    let last = nodes.saturating_sub(100);
    let per_key = nodes / KEYS as usize;
    let calls: Vec<(String, serde_json::Value, Box<dyn Fn(&serde_json::Value) -> bool>)> = vec![
        ("Overview".into(), json!({"Overview": null}), Box::new(ok)),
        ("ListNodes, newest 100".into(), json!({"ListNodes": {"limit": 100}}), Box::new(page_of(100))),
        (format!("ListNodes, 100 at offset {}", nodes / 2), json!({"ListNodes": {"offset": nodes / 2, "limit": 100}}), Box::new(page_of(100))),
        ("ListNodes, the last page".into(), json!({"ListNodes": {"offset": last, "limit": 100}}), Box::new(page_of(100))),
        ("ListNodes, 500 newest".into(), json!({"ListNodes": {"limit": 500}}), Box::new(page_of(500))),
        ("ListNodes, search matching one node".into(), json!({"ListNodes": {"search": "pre123457.os", "limit": 100}}), Box::new(page_of(1))),
        ("ListNodes, search \"77\" (many matches), newest 100".into(), json!({"ListNodes": {"search": "77", "limit": 100}}), Box::new(page_of(100))),
        ("ListNodes, search matching nothing".into(), json!({"ListNodes": {"search": "nobody", "limit": 100}}), Box::new(page_of(0))),
        (format!("ListNodes, one key ({per_key} nodes), newest 100"), json!({"ListNodes": {"key": 7, "limit": 100}}), Box::new(page_of(100))),
        (format!("ListNodes, one key, 100 at offset {}", per_key / 2), json!({"ListNodes": {"key": 7, "offset": per_key / 2, "limit": 100}}), Box::new(page_of(100))),
        ("ListNodes, one key and a search".into(), json!({"ListNodes": {"key": 7, "search": "77", "limit": 100}}), Box::new(ok)),
        ("KeyDetail (500 newest nodes of the key)".into(), json!({"KeyDetail": 7}), Box::new(ok)),
        ("AuditLog, newest 100".into(), json!({"AuditLog": {"limit": 100}}), Box::new(ok)),
        ("CostSeries, all keys, one year".into(), json!({"CostSeries": {"key": null, "max_points": 1200}}), Box::new(ok)),
    ];
    calls
        .into_iter()
        .map(|(what, call, check)| time_call(env, 7, &call, check).row(&what, true, DASHBOARD_GOAL_MS))
        .collect()
}

const RESTART_GOAL_MS: f64 = 2000.0;

/// Restarts devnode `runs` times on the preloaded data dir; each time from starting devnode to the
/// first answered p2p request of `node` (which waits for the issuer's rebuild from SQLite).
fn restart_figures(env: &mut Env, node: &str, runs: usize) -> Vec<String> {
    println!("bench: restarting {runs} times");
    let (mut started, mut answered) = (vec![], vec![]);
    for _ in 0..runs {
        env.stop_devnode();
        let t = Instant::now();
        // Returns once devnode is up and the issuer answers a local call (it does during its rebuild).
        env.start_devnode_again();
        started.push(t.elapsed().as_secs_f64() * 1000.0);
        let first = post(
            &format!("{}/devnode/p2p", env.control),
            &json!({"from": node, "to": ISSUER, "body": {"RequestApiKey": null}, "timeout_secs": 600}),
        );
        assert!(first["response"]["Ok"].is_string(), "the first request after a restart was not answered with a key");
        answered.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    vec![
        Spread::of(answered).row("restart, devnode start → first answered p2p request", false, RESTART_GOAL_MS),
        Spread::of(started).row("of which: devnode start → the issuer answers a local call", false, RESTART_GOAL_MS),
    ]
}

/// The issuer's log lines about its last rebuild from SQLite (phases, linear memory).
fn restore_log_lines(env: &Env) -> Vec<String> {
    let logs = env.logs();
    let mut lines: Vec<String> = logs.lines().rev().filter(|l| l.contains("restored")).take(2).map(|l| l.trim().to_string()).collect();
    lines.reverse();
    lines
}

const MEMORY_GOAL_MB: f64 = 300.0;

/// The devnode process's resident memory (current and peak), from /proc: it holds the issuer's
/// wasm linear memory, the other components' and devnode's own. Then the issuer's log of its last
/// rebuild (the phases, and its linear memory after each: it only grows).
fn memory_figures(env: &Env) -> Vec<String> {
    let mut rows = devnode_memory_row(env);
    rows.extend(restore_log_lines(env).into_iter().map(|line| format!("| issuer's log of the last rebuild: {line} | — | — |")));
    rows
}

fn devnode_memory_row(env: &Env) -> Vec<String> {
    let Some(status) = devnode_proc_status(env) else {
        return vec!["| devnode resident memory | not found in /proc | < 300 MB |".to_string()];
    };
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).map(|kb| kb / 1024.0)
    };
    let (rss, peak) = (field("VmRSS:").unwrap_or(0.0), field("VmHWM:").unwrap_or(0.0));
    let met = if rss < MEMORY_GOAL_MB { "met" } else { "**not met**" };
    vec![format!("| devnode resident memory, whole process (peak {peak:.0} MB) | {rss:.0} MB | issuer < {MEMORY_GOAL_MB:.0} MB — {met} |")]
}

/// /proc/<pid>/status of the devnode running on this environment's data dir.
fn devnode_proc_status(env: &Env) -> Option<String> {
    let data_dir = env.data_dir.to_str()?.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let mut args = cmdline.split('\0');
        // The data dir as a whole argument: another devnode's may start with it (`bench-floor`).
        let is_devnode = args.next().is_some_and(|exe| exe.ends_with("devnode")) && args.any(|arg| arg == data_dir);
        is_devnode.then(|| std::fs::read_to_string(entry.path().join("status")).ok()).flatten()
    })
}

/// `bench scale`: only the figures at a million nodes (restart, dashboard calls, memory), without
/// the issuance runs and the exports.
fn scale_alone() {
    let node = "late0.os".to_string();
    let mut env = Env::start("bench-scale", "small.json", &[node.clone()]);
    add_keys(&env);
    println!("bench: preloading {PRELOADED_NODES} issued nodes and {HOURS} hourly samples for {KEYS} keys");
    env.stop_devnode();
    preload(&env, PRELOADED_NODES);
    let mut figures = restart_figures(&mut env, &node, 5);
    figures.extend(dashboard_call_figures(&env, PRELOADED_NODES));
    figures.extend(memory_figures(&env));
    println!();
    println!("| measure | figure | goal |");
    println!("| --- | --- | --- |");
    for line in figures {
        println!("{line}");
    }
}

// ----- issuance against the floor, and where a request's time goes (issue 13, items 1-3) -----

/// `bench breakdown`: one pair of runs against the floor and where a request's time goes, with an
/// empty history: a quick check (about a minute) of a change to the issuance path.
fn breakdown_alone() {
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}.os")).collect::<Vec<String>>();
    let (nodes, traced) = (names("fresh", FRESH_NODES), names("traced", TRACED_REQUESTS));
    let env = Env::start("bench-breakdown", "small.json", &[nodes.clone(), traced.clone()].concat());
    let floor_nodes = names("floor", FRESH_NODES);
    let floor = Env::start_package("bench-breakdown-floor", Package { zip: echo_zip(), issuer: ECHO.to_string(), node: None }, "small.json", &floor_nodes);
    add_keys(&env);
    issue_all(&floor, &floor_nodes[..FLOOR_WARM_UP], 1);
    let pair = against_floor(&env, &floor, &nodes, &floor_nodes);
    let floor_stages = breakdown(&floor, "floor", ECHO, &floor_nodes[..TRACED_REQUESTS]);
    let issuer_stages = breakdown(&env, "empty", ISSUER, &traced);
    let commit = commit_floor(&env);
    println!();
    println!("{}", commit.row());
    let (issuer, floor_run) = (&pair.issuer[0], &pair.floor[0]);
    println!(
        "issuance ÷ floor (one run, not a median): throughput {:.2}× (goal ≥ {THROUGHPUT_GOAL}×), p99 {:.2}× (goal ≤ {P99_GOAL}×)",
        issuer.per_second / floor_run.per_second,
        issuer.p99_ms / floor_run.p99_ms
    );
    println!();
    for line in breakdown_table(&[("issuance, empty", &issuer_stages), ("floor (echo)", &floor_stages)]) {
        println!("{line}");
    }
}

/// Requests before the floor's first run, so that it starts as warm as the issuer (which answered
/// the benchmark's setup calls).
const FLOOR_WARM_UP: usize = 200;
/// Requests from one client whose time devnode breaks down by stage.
const TRACED_REQUESTS: usize = 500;
const THROUGHPUT_GOAL: f64 = 0.8;
const P99_GOAL: f64 = 1.5;
/// Runs whose slowest and fastest differ more than this are too spread to judge a goal by.
const TOO_WIDE: f64 = 1.5;

impl Spread {
    fn too_wide(&self) -> bool {
        self.max > self.min * TOO_WIDE
    }

    /// What the runs say of a goal: met, not met, or nothing when they are too spread.
    fn verdict(&self, met: bool) -> &'static str {
        match (self.too_wide(), met) {
            (true, _) => "spread too wide to judge",
            (false, true) => "met",
            (false, false) => "**not met**",
        }
    }

    /// `median (min–max)` with `decimals`.
    fn show(&self, decimals: usize, unit: &str) -> String {
        format!("{:.decimals$}{unit} ({:.decimals$}–{:.decimals$})", self.median, self.min, self.max)
    }
}

/// The disk's own floor under an issuance: a durable SQLite commit of one issuance row and its
/// audit entry (WAL, synchronous FULL, the issuer's schema and trigger), on the data dir's disk,
/// measured natively. An issuance is sent only once this is on disk; the echo floor writes nothing.
struct CommitFloor {
    mean_us: f64,
    p99_us: f64,
}

impl CommitFloor {
    fn row(&self) -> String {
        format!(
            "| the disk's durable commit under each issuance (SQLite WAL, synchronous FULL, measured natively on the data dir's disk: 1,000 commits), mean / p99 µs | {:.0} / {:.0} | — (the echo floor writes nothing) |",
            self.mean_us, self.p99_us
        )
    }
}

fn commit_floor(env: &Env) -> CommitFloor {
    let path = env.data_dir.join("commit-floor.sqlite");
    let _ = std::fs::remove_file(&path);
    let db = rusqlite::Connection::open(&path).expect("commit floor database");
    db.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
    db.execute_batch("PRAGMA synchronous=FULL").unwrap();
    // The issuer's own tables, with their indexes and trigger, as its database holds them.
    let issuer = rusqlite::Connection::open(env.issuer_db()).expect("issuer database");
    let mut schema = issuer
        .prepare(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN ('issuances', 'audit_log') AND sql IS NOT NULL \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END",
        )
        .unwrap();
    let statements: Vec<String> = schema.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
    assert!(statements.iter().any(|s| s.contains("issuances_audited")), "the issuer's trigger: {statements:?}");
    for statement in statements {
        db.execute_batch(&statement).unwrap();
    }
    let mut took: Vec<Duration> = (0..1_000)
        .map(|i| {
            let t = Instant::now();
            db.execute("INSERT INTO issuances (node, key_id, issued_at) VALUES (?1, 1, 0)", [format!("commit{i}.os")]).unwrap();
            t.elapsed()
        })
        .collect();
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    took.sort();
    let mean_us = took.iter().sum::<Duration>().as_secs_f64() * 1e6 / took.len() as f64;
    CommitFloor { mean_us, p99_us: percentile(&took, 0.99) * 1000.0 }
}

/// One phase's runs of the issuer and of the floor, in pairs run one right after the other.
struct Phase {
    issuer: Vec<Run>,
    floor: Vec<Run>,
}

/// `nodes` in runs of `FRESH_NODES` new nodes, each run right after a run of the floor.
fn against_floor(env: &Env, floor: &Env, nodes: &[String], floor_nodes: &[String]) -> Phase {
    let mut phase = Phase { issuer: vec![], floor: vec![] };
    for (i, batch) in nodes.chunks(FRESH_NODES).enumerate() {
        let (f, r) = (issue_all(floor, floor_nodes, CLIENTS), issue_all(env, batch, CLIENTS));
        println!("bench: run {}: issuance {:.0} req/s, p99 {:.2} ms; floor {:.0} req/s, p99 {:.2} ms", i + 1, r.per_second, r.p99_ms, f.per_second, f.p99_ms);
        phase.floor.push(f);
        phase.issuer.push(r);
    }
    phase
}

fn spread_of(runs: &[Run], figure: impl Fn(&Run) -> f64) -> Spread {
    Spread::of(runs.iter().map(figure).collect())
}

/// The issuer's ratio to the floor in each pair of runs.
fn ratios(phase: &Phase, figure: impl Fn(&Run) -> f64) -> Spread {
    Spread::of(phase.issuer.iter().zip(&phase.floor).map(|(i, f)| figure(i) / figure(f)).collect())
}

/// Table rows of one phase: the issuer's and the floor's figures, and the ratios against their goals.
fn phase_rows(what: &str, phase: &Phase) -> Vec<String> {
    let wide = |s: &Spread| if s.too_wide() { " (spread too wide to judge)" } else { "" };
    let rate = spread_of(&phase.issuer, |r| r.per_second);
    let (p50, p99) = (spread_of(&phase.issuer, |r| r.p50_ms), spread_of(&phase.issuer, |r| r.p99_ms));
    let (floor_rate, floor_p99) = (spread_of(&phase.floor, |r| r.per_second), spread_of(&phase.floor, |r| r.p99_ms));
    let (rate_ratio, p99_ratio) = (ratios(phase, |r| r.per_second), ratios(phase, |r| r.p99_ms));
    vec![
        format!("| p2p issuance, {what}: throughput, req/s (median of {RUNS} (min–max)) | {} | —{} |", rate.show(0, ""), wide(&rate)),
        format!("| p2p issuance, {what}: p50 / p99 latency, ms | {} / {} | —{} |", p50.show(2, ""), p99.show(2, ""), wide(&p99)),
        format!("| floor (echo), {what}: throughput, req/s | {} | —{} |", floor_rate.show(0, ""), wide(&floor_rate)),
        format!("| floor (echo), {what}: p99 latency, ms | {} | —{} |", floor_p99.show(2, ""), wide(&floor_p99)),
        format!(
            "| issuance ÷ floor, {what}: throughput (median of the runs' ratios) | {} | ≥ {THROUGHPUT_GOAL}× — {} |",
            rate_ratio.show(2, "×"),
            rate_ratio.verdict(rate_ratio.median >= THROUGHPUT_GOAL)
        ),
        format!("| issuance ÷ floor, {what}: p99 latency | {} | ≤ {P99_GOAL}× — {} |", p99_ratio.show(2, "×"), p99_ratio.verdict(p99_ratio.median <= P99_GOAL)),
    ]
}

/// devnode's timings (`GET /devnode/timings`) of `TRACED_REQUESTS` requests to `target` from one
/// client, and the client's mean latency.
struct Breakdown {
    target: String,
    requests: usize,
    client_mean_us: f64,
    stages: serde_json::Value,
}

/// Stage names as devnode reports them (tools/devnode/src/timings.rs).
const CONTROL_P2P: &str = "control api: p2p call";
const CONTROL_AWAITING: &str = "control api: awaiting the answer";
const ROUTE: &str = "kernel: route";
const STATE_SAVE: &str = "state: save";
const ISSUANCE_COMMIT: &str = "sqlite: write INSERT INTO issuances";
const AUDIT_WRITE: &str = "sqlite: write INSERT INTO audit_log";

/// Where the time of requests from one client to `target` goes (timings on only for them; a
/// background write the requests caused, such as the audit's, is waited for). devnode's whole
/// report (histograms, longest times) is kept in `<data dir>/timings-<name>.json`.
fn breakdown(env: &Env, name: &str, target: &str, nodes: &[String]) -> Breakdown {
    let timings = format!("{}/devnode/timings", env.control);
    post(&timings, &json!({"enabled": true}));
    let run = issue_all(env, nodes, 1);
    assert!(env.wait_quiet(30), "devnode did not settle after the traced requests");
    let report = get(&timings);
    post(&timings, &json!({"enabled": false}));
    let kept = env.data_dir.join(format!("timings-{name}.json"));
    std::fs::write(&kept, serde_json::to_string_pretty(&report).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", kept.display()));
    Breakdown { target: target.to_string(), requests: nodes.len(), client_mean_us: run.mean_ms * 1000.0, stages: report["stages"].clone() }
}

impl Breakdown {
    /// Mean µs per request of the stages whose names `pick` accepts.
    fn per_request(&self, pick: impl Fn(&str) -> bool) -> f64 {
        let stages = self.stages.as_object().into_iter().flatten();
        // A fold from 0.0: an empty f64 sum is -0.0, which prints as "-0".
        let total = stages.filter(|(name, _)| pick(name)).fold(0.0, |sum, (_, s)| sum + s["total_us"].as_f64().unwrap_or(0.0));
        total / self.requests as f64
    }

    fn stage(&self, name: &str) -> f64 {
        self.per_request(|n| n == name)
    }

    fn routed_per_request(&self) -> f64 {
        self.stages[ROUTE]["count"].as_f64().unwrap_or(0.0) / self.requests as f64
    }

    /// (what, mean µs per request) in the order a request meets them; they add up to the client's time.
    fn lines(&self) -> Vec<(String, f64)> {
        let target_component = format!("component: {}", self.target);
        let is_component = |n: &str| n.starts_with("component: ");
        let is_sqlite = |n: &str| n.starts_with("sqlite: ");
        let within = [
            self.stage(ROUTE),
            self.stage(&target_component),
            self.per_request(|n| is_component(n) && n != target_component),
            self.stage(ISSUANCE_COMMIT),
            self.stage(AUDIT_WRITE),
            self.per_request(|n| is_sqlite(n) && n != ISSUANCE_COMMIT && n != AUDIT_WRITE),
            self.stage(STATE_SAVE),
        ];
        let awaiting = self.stage(CONTROL_AWAITING);
        vec![
            ("client and loopback HTTP (the client's time − the control API's)".into(), self.client_mean_us - self.stage(CONTROL_P2P)),
            ("control API: reading the call, routing it, writing the answer".into(), self.stage(CONTROL_P2P) - awaiting),
            ("kernel: routing every message of the request".into(), within[0]),
            ("component: the target (key-issuer or echo)".into(), within[1]),
            ("component: the package's other processes".into(), within[2]),
            ("SQLite: the issuance and its audit entry (INSERT INTO issuances, one statement with its trigger)".into(), within[3]),
            ("SQLite: other audit writes (INSERT INTO audit_log)".into(), within[4]),
            ("SQLite: other statements".into(), within[5]),
            ("state saves (set-state)".into(), within[6]),
            ("the rest: waiting in mailboxes and for tasks to run (negative when a stage ran after the answer)".into(), awaiting - within.iter().sum::<f64>()),
        ]
    }
}

/// The breakdown as a table: one column per breakdown, mean µs per request.
fn breakdown_table(columns: &[(&str, &Breakdown)]) -> Vec<String> {
    let requests = columns.first().map_or(0, |(_, b)| b.requests);
    let row = |label: &str, cell: &dyn Fn(&Breakdown) -> String| {
        let cells: Vec<String> = columns.iter().map(|(_, b)| cell(b)).collect();
        format!("| {label} | {} |", cells.join(" | "))
    };
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut table = vec![
        format!("| where a request's time goes: mean µs per request, {requests} requests from one client | {} |", names.join(" | ")),
        format!("| --- |{}", " ---: |".repeat(columns.len())),
    ];
    let labels: Vec<String> = columns[0].1.lines().into_iter().map(|(label, _)| label).collect();
    for (i, label) in labels.iter().enumerate() {
        table.push(row(label, &|b| format!("{:.0}", b.lines()[i].1)));
    }
    table.push(row("total: the client's mean latency", &|b| format!("{:.0}", b.client_mean_us)));
    table.push(row("messages routed per request", &|b| format!("{:.1}", b.routed_per_request())));
    table
}

/// `/proc/loadavg`'s three load averages, e.g. `3.41 3.80 3.62`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
