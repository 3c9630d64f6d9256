//! `cargo xtask bench [p2p|dashboard|export]`: p2p issuance throughput and latency through devnode, empty
//! and with a million issued nodes and a year of hourly samples for 100 keys preloaded, and the
//! cost-series endpoint over that year; then the dashboard's first render and zoom redraw in
//! headless Chromium with a year of hourly cost for 100 keys and 10,000 node markers; the CSV
//! exports over that year (`bench export` runs them alone). Prints figures; goals are printed,
//! never enforced.

use std::time::{Duration, Instant};

use e2e::*;
use serde_json::json;

const FRESH_NODES: usize = 2_000;
const PRELOADED_NODES: usize = 1_000_000;
const KEYS: u32 = 100;
const HOURS: i64 = 365 * 24;
const CLIENTS: usize = 2;

struct Run {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Each of `nodes` asks for a key once, from `CLIENTS` threads.
fn issue_all(env: &Env, nodes: &[String]) -> Run {
    let started = Instant::now();
    let chunks: Vec<Vec<String>> = nodes.chunks(nodes.len().div_ceil(CLIENTS)).map(|c| c.to_vec()).collect();
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
    Run { per_second: nodes.len() as f64 / elapsed.as_secs_f64(), p50_ms: percentile(&latencies, 0.5), p99_ms: percentile(&latencies, 0.99) }
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

fn time_ms(mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    runs.sort();
    runs[runs.len() / 2].as_secs_f64() * 1000.0
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
    let empty_nodes: Vec<String> = (0..FRESH_NODES).map(|i| format!("fresh{i}.os")).collect();
    let loaded_nodes: Vec<String> = (0..FRESH_NODES).map(|i| format!("late{i}.os")).collect();
    let mut env = Env::start("bench", "small.json", &[empty_nodes.clone(), loaded_nodes.clone()].concat());
    add_keys(&env);
    println!("bench: {FRESH_NODES} p2p key requests, empty pool history");
    let empty = issue_all(&env, &empty_nodes);

    println!("bench: preloading {PRELOADED_NODES} issued nodes and {HOURS} hourly samples for {KEYS} keys");
    env.stop_devnode();
    preload(&env, PRELOADED_NODES);
    let t = Instant::now();
    env.start_devnode_again();
    // Issuance waits for the restore (node maps and hourly costs): the first answer marks its end.
    let first = post(
        &format!("{}/devnode/p2p", env.control),
        &json!({"from": loaded_nodes[0], "to": ISSUER, "body": {"RequestApiKey": null}, "timeout_secs": 600}),
    );
    assert!(first["response"]["Ok"].is_string(), "{first}");
    let restore_secs = t.elapsed().as_secs_f64();
    let loaded_nodes = loaded_nodes[1..].to_vec();
    println!("bench: {FRESH_NODES} p2p key requests with the preload");
    let loaded = issue_all(&env, &loaded_nodes);

    let series_all = time_ms(|| {
        let r = env.api(json!({"CostSeries": {"key": null, "max_points": 1200}}));
        assert!(r["Ok"]["t"].as_array().unwrap().len() > 100);
    });
    let series_key = time_ms(|| {
        let r = env.api(json!({"CostSeries": {"key": 1, "max_points": 1200}}));
        assert!(r["Ok"]["t"].as_array().unwrap().len() > 100);
    });

    let nodes_page = time_ms(|| {
        let r = env.api(json!({"ListNodes": {"limit": 100}}));
        assert_eq!(r["Ok"]["nodes"].as_array().unwrap().len(), 100, "{r}");
    });

    let exports = export_figures(&env);

    println!();
    println!("| measure | figure | goal |");
    println!("| --- | --- | --- |");
    println!("| p2p issuance, empty: throughput | {:.0} req/s | ≥ 5,000 req/s |", empty.per_second);
    println!("| p2p issuance, empty: p50 / p99 latency | {:.2} ms / {:.2} ms | p99 < 2 ms |", empty.p50_ms, empty.p99_ms);
    println!("| restart with 1,000,000 nodes + 876,000 samples | {restore_secs:.1} s | — |");
    println!("| p2p issuance, preloaded: throughput | {:.0} req/s | — |", loaded.per_second);
    println!("| p2p issuance, preloaded: p50 / p99 latency | {:.2} ms / {:.2} ms | — |", loaded.p50_ms, loaded.p99_ms);
    println!("| preloaded ÷ empty p99 latency | {:.2}× | ≤ 1.2× |", loaded.p99_ms / empty.p99_ms);
    println!("| CostSeries, all keys, one year (median of 7) | {series_all:.1} ms | < 50 ms |");
    println!("| CostSeries, one key, one year (median of 7) | {series_key:.1} ms | < 50 ms |");
    println!("| ListNodes, newest 100 with attributed cost (median of 7) | {nodes_page:.1} ms | — |");
    for line in exports {
        println!("{line}");
    }
    println!();
    println!("Latencies are measured by a client on loopback through devnode's control API (HTTP), with {CLIENTS} client threads.");
}
