//! Alerts end to end: the real package in devnode against fake-admin-api, with a local webhook
//! receiver that counts deliveries. A budget threshold is delivered once per crossing, the empty
//! pool raises and clears, the test alert arrives once, a failing webhook is retried, and no
//! delivery holds a secret. Requires `cargo xtask build` (cargo xtask test runs it first).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use e2e::*;
use serde_json::{json, Value};
use shared_types::cost::{price_tokens, TokenCounts};
use shared_types::price::PriceTable;

/// A webhook: a tiny HTTP server on loopback that records every POST body and the status it
/// answered (500 while `fail_next` is above zero, else 200).
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<(u16, String)>>>,
    fail_next: Arc<AtomicU32>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let posts = Arc::new(Mutex::new(Vec::new()));
        let fail_next = Arc::new(AtomicU32::new(0));
        let (p, f) = (posts.clone(), fail_next.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let body = read_request_body(&stream).unwrap_or_default();
                let fail = f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let status = if fail { 500 } else { 200 };
                p.lock().unwrap().push((status, body));
                let reason = if fail { "Internal Server Error" } else { "OK" };
                let _ = (&stream).write_all(format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").as_bytes());
            }
        });
        Receiver { url, posts, fail_next }
    }

    /// Texts of the deliveries that were answered 200.
    fn delivered(&self) -> Vec<String> {
        self.posts.lock().unwrap().iter().filter(|(s, _)| *s == 200).map(|(_, b)| text_of(b)).collect()
    }

    fn all_bodies(&self) -> Vec<String> {
        self.posts.lock().unwrap().iter().map(|(_, b)| b.clone()).collect()
    }

    fn count(&self, needle: &str) -> usize {
        self.delivered().iter().filter(|t| t.contains(needle)).count()
    }
}

/// The body of one HTTP/1.1 request (content-length or chunked).
fn read_request_body(stream: &TcpStream) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream);
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The delivery's text, after checking it is what Slack and Discord both read.
fn text_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {body}"));
    assert_eq!(v["text"], v["content"], "Slack reads text, Discord content: {v}");
    v["text"].as_str().unwrap_or_default().to_string()
}

fn assert_no_secret(receiver: &Receiver) {
    for body in receiver.all_bodies() {
        for secret in [secret(1), secret(3), ADMIN_KEY.to_string()] {
            assert!(!body.contains(&secret), "a webhook body holds a secret");
        }
        assert!(!body.contains("sk-ant-api03-TESTkey") && !body.contains("sk-ant-admin01-TESTadmin"), "a webhook body holds a secret");
    }
}


fn key(env: &Env, id: u64) -> Value {
    env.api(json!({"ListKeys": null})).as_array().unwrap().iter().find(|k| k["id"] == id).cloned().unwrap()
}

/// µUSD key 1 of `small.json` costs per hour at the default prices (its scenario rates).
fn key1_hourly_micro_usd() -> i64 {
    let table = PriceTable::default();
    let sonnet = TokenCounts { uncached_input: 3600, output: 720, cache_read: 36000, ..Default::default() };
    let haiku = TokenCounts { uncached_input: 7200, output: 1800, cache_write_5m: 360, ..Default::default() };
    let price = |model: &str, t: &TokenCounts| price_tokens(t, &table.lookup(model).unwrap().prices, table.web_search_per_thousand).0;
    price("claude-sonnet-4-5-20250929", &sonnet) + price("claude-haiku-4-5-20251001", &haiku)
}

fn open_alerts(env: &Env) -> Vec<Value> {
    env.api(json!({"ListAlerts": {"limit": 1}}))["Ok"]["open"].as_array().cloned().unwrap_or_default()
}

#[test]
fn budget_thresholds_are_delivered_once_per_crossing_and_the_empty_pool_raises_and_clears() {
    let env = Env::start("alerts-budget", "small.json", &[]);
    let receiver = Receiver::start();
    env.configure_admin_api();
    let r = env.api(json!({"UpdateSettings": {"alerts": {"webhook_url": receiver.url}}}));
    assert_eq!(r["Ok"]["alerts"]["webhook_set"], true, "{r}");
    assert!(!r.to_string().contains("/hook"), "the webhook URL is shown only by its host: {r}");

    // The first poll reaches a week back: spend starts near 45 % of this budget.
    let budget = key1_hourly_micro_usd() * 168 * 100 / 45;
    let budget_usd = format!("{}.{:06}", budget / 1_000_000, budget % 1_000_000);
    let added = env.add_key(json!({"secret": secret(1), "name": "key 1", "node_cap": null, "budget_usd": budget_usd, "lifetime_days": 365}));
    let k1 = added["Ok"]["id"].as_u64().unwrap_or_else(|| panic!("{added}"));
    env.poll();
    // Daily polls from here: each 2-day step adds about 13 % of the budget.
    let r = env.api(json!({"UpdateSettings": {"poll_interval_secs": 86_400}}));
    assert!(r.get("Ok").is_some(), "{r}");

    let mut crossed_before = vec![];
    for step in 0..8 {
        let k = key(&env, k1);
        let percent = k["spent_micro_usd"].as_i64().unwrap() * 100 / budget;
        let crossed: Vec<u32> = [50, 80, 95, 100].into_iter().filter(|p| percent >= i64::from(*p)).collect();
        env.eventually_within(60, &format!("step {step}: deliveries for {crossed:?} at {percent}%"), || {
            [50, 80, 95, 100].iter().all(|p| receiver.count(&format!("has spent {p}% of its budget")) == usize::from(crossed.contains(p)))
        });
        assert!(crossed.len() >= crossed_before.len(), "spend only grows");
        if step == 0 {
            assert!(crossed.is_empty(), "the first poll brings spend to about 45 % ({percent}%)");
        }
        crossed_before = crossed;
        if k["status"] == "retired" {
            assert_eq!(k["retired_reason"], "budget", "{k}");
            break;
        }
        env.advance(2 * 86_400);
        assert!(env.wait_quiet(60));
        env.poll();
    }
    assert_eq!(crossed_before, [50, 80, 95, 100], "every threshold was crossed");
    assert_eq!(receiver.delivered().iter().filter(|t| t.contains("[alert]") && t.contains("of its budget")).count(), 4, "{:?}", receiver.delivered());
    assert_eq!(receiver.delivered().iter().filter(|t| t.contains("[resolved]") && t.contains("of its budget")).count(), 0);

    // The only key retired for its budget: the pool is empty, once.
    env.eventually("pool empty delivered", || receiver.count("[alert] no eligible key left") == 1);
    assert!(open_alerts(&env).iter().any(|a| a["alert"] == "pool-empty" && a["severity"] == "critical"));
    env.advance(120);
    assert_eq!(receiver.count("no eligible key left"), 1, "evaluated again: not raised again");

    // A new key ends it: cleared once, kept in the history with both times.
    let k3 = env.add_key(json!({"secret": secret(3), "name": "key 3", "node_cap": null, "budget_usd": "100", "lifetime_days": 365}));
    assert_eq!(k3["Ok"]["eligible"], true, "{k3}");
    env.eventually("pool empty cleared", || receiver.count("[resolved] no eligible key left") == 1);
    assert!(!open_alerts(&env).iter().any(|a| a["alert"] == "pool-empty"));
    let history = env.api(json!({"ListAlerts": {"kind": "pool-empty"}}));
    let entries = history["Ok"]["history"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{history}");
    assert!(entries[0]["cleared_at"].is_string() && entries[0]["raised_at"].is_string(), "{history}");
    let budget_history = env.api(json!({"ListAlerts": {"kind": "budget", "state": "open"}}));
    assert_eq!(budget_history["Ok"]["history"].as_array().unwrap().len(), 4, "{budget_history}");
    assert_eq!(env.api(json!({"ListAlerts": {"kind": "nope"}}))["Err"].as_str().map(|e| e.contains("kind")), Some(true));
    assert_no_secret(&receiver);
    let everything = format!("{}\n{}", env.logs(), env.process_output());
    assert!(!everything.contains("/hook"), "the webhook URL is never logged");
}

#[test]
fn the_test_alert_arrives_once_and_a_failing_webhook_is_retried() {
    let env = Env::start("alerts-webhook", "small.json", &[]);
    let receiver = Receiver::start();
    // No webhook yet: refused, nothing sent.
    let (status, r) = env.api_with(json!({"SendTestAlert": null}), &[("content-type", "application/json")]);
    assert_eq!(status, 409, "{r}");
    // Only https, or http to this machine.
    let (status, r) = env.api_with(json!({"UpdateSettings": {"alerts": {"webhook_url": "http://example.com/hook"}}}), &[("content-type", "application/json")]);
    assert_eq!(status, 400, "{r}");
    // Cross-site: refused.
    let (status, _) = env.api_with(json!({"SendTestAlert": null}), &[("content-type", "text/plain")]);
    assert_eq!(status, 403);

    let r = env.api(json!({"UpdateSettings": {"alerts": {"webhook_url": receiver.url}}}));
    assert_eq!(r["Ok"]["alerts"]["webhook_hint"], "http://127.0.0.1/…", "{r}");
    assert_eq!(env.api(json!({"SendTestAlert": null})), json!({"Ok": null}));
    env.eventually("the test alert", || receiver.count("[test]") == 1);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(receiver.count("[test]"), 1, "delivered once");
    assert_eq!(receiver.posts.lock().unwrap().len(), 1, "{:?}", receiver.posts.lock().unwrap());

    // The webhook answers 500 three times: retried with backoff, delivered on the fourth attempt.
    receiver.fail_next.store(3, Ordering::SeqCst);
    assert_eq!(env.api(json!({"SendTestAlert": null})), json!({"Ok": null}));
    env.eventually_within(60, "the retried test alert", || receiver.count("[test]") == 2);
    let attempts = receiver.posts.lock().unwrap().iter().filter(|(_, b)| b.contains("[test]")).count();
    assert_eq!(attempts, 5, "1 + (3 refused + 1 delivered)");
    env.eventually("the delivery is reported", || {
        let page = env.api(json!({"ListAlerts": {}}));
        page["Ok"]["last_delivery"]["delivered"] == true && page["Ok"]["last_delivery"]["attempts"] == 4
    });

    // A webhook that keeps failing gives up after its attempts and says so in the audit log.
    receiver.fail_next.store(100, Ordering::SeqCst);
    env.api(json!({"SendTestAlert": null}));
    env.eventually_within(90, "the failure reported", || {
        let page = env.api(json!({"ListAlerts": {}}));
        page["Ok"]["last_delivery"]["delivered"] == false
    });
    let audit = env.api(json!({"AuditLog": {"limit": 50}}));
    assert!(audit["Ok"]["entries"].as_array().unwrap().iter().any(|e| e["action"] == "alert webhook" && e["outcome"].as_str().unwrap().contains("HTTP 500")), "{audit}");
    assert!(!audit.to_string().contains("/hook"));
    assert_no_secret(&receiver);
}

/// An issuance evaluates the alerts only when it changed what the pool can issue: the node that
/// takes a key's last place under its node cap raises the empty pool at once (not at the next
/// expiry check, a minute later), and the nodes before it raise nothing.
#[test]
fn the_issuance_that_fills_the_last_key_raises_the_empty_pool_at_once() {
    let nodes: Vec<String> = (0..3).map(|i| format!("capped{i}.os")).collect();
    let env = Env::start("alerts-node-cap", "small.json", &nodes);
    env.configure_admin_api();
    let added = env.add_key(json!({"secret": secret(1), "name": "key 1", "node_cap": 2, "budget_usd": "100", "lifetime_days": 365}));
    assert!(added.get("Ok").is_some(), "{added}");
    assert!(env.p2p(&nodes[0], json!({"RequestApiKey": null}))["response"]["Ok"].is_string());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!open_alerts(&env).iter().any(|a| a["alert"] == "pool-empty"), "one place is left");
    assert!(env.p2p(&nodes[1], json!({"RequestApiKey": null}))["response"]["Ok"].is_string());
    env.eventually_within(5, "the empty pool raised by the issuance", || open_alerts(&env).iter().any(|a| a["alert"] == "pool-empty"));
    assert_eq!(env.p2p(&nodes[2], json!({"RequestApiKey": null}))["response"]["Err"], "no keys available");
}
