//! The alerts in a real browser: runs `ui/browser-tests/alerts.mjs` (playwright-core driving
//! Debian's Chromium) against devnode with the built package and fake-admin-api, with the pool
//! left empty (an open critical alert) and a local webhook receiver for the test alert. Requires
//! `cargo xtask build` and Chromium at /usr/bin/chromium (`cargo xtask test` sees to both).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use e2e::*;
use serde_json::json;

/// A webhook receiver answering 200 to every POST; returns its URL and the bodies it got.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(&stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, bodies)
}

#[test]
fn alert_banner_and_alerts_view_in_chromium() {
    let env = Env::start("alerts-browser", "small.json", &[]);
    env.configure_admin_api();
    // One key, retired by the operator: no eligible key is left.
    let k1 = env.add_key(json!({"secret": secret(1), "name": "only key", "node_cap": null}));
    let k1 = k1["Ok"]["id"].as_u64().unwrap_or_else(|| panic!("{k1}"));
    assert_eq!(env.api(json!({"RetireKey": k1}))["Ok"]["status"], "retired");
    env.eventually("the pool-empty alert", || {
        env.api(json!({"ListAlerts": {}}))["Ok"]["open"].as_array().is_some_and(|open| open.iter().any(|a| a["alert"] == "pool-empty"))
    });
    let (webhook, bodies) = receiver();
    env.run_browser_script("alerts.mjs", &[("WEBHOOK_URL", &webhook), ("TEST_API_KEY", &secret(3))], &[secret(1), secret(3)]);
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.iter().filter(|b| b.contains("[test]")).count(), 1, "the test button posted once: {bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("[resolved] no eligible key left")), "the clear was posted: {bodies:?}");
    for body in &bodies {
        assert!(!body.contains(&secret(1)) && !body.contains(&secret(3)) && !body.contains(ADMIN_KEY), "a webhook body holds a secret");
    }
    let logs = env.logs() + &env.process_output();
    assert!(!logs.contains("/hook"), "the webhook URL was logged");
}
