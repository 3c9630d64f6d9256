//! Fuzzing through the real handlers (SPEC §7, §9): thousands of random and malformed bodies sent
//! to every dashboard call, and to the p2p and local handlers, through devnode. Each gets a clear
//! refusal, no answer repeats a secret it carried, and a digest of both processes' state and the
//! issuer's database (all but the audit log, which records refusals by design) is unchanged.
//! Requires `cargo xtask build` (cargo xtask test runs it first).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use e2e::*;
use serde_json::{json, Map, Value};

/// Every secret the fuzzer sends carries this marker, which masking never keeps.
const MARK: &str = "fuzzSECRET";

/// Calls that take an argument they must read (a key id, a query, a body), or none at all: any
/// generated argument is wrong for them and must be refused.
const REFUSING_CALLS: &[&str] = &[
    "AddKey", "RetireKey", "RemoveKey", "MatchKey", "PrepareWorkspace", "TestKey", "KeyDetail", "UpdateSettings",
    "SetAdminKey", "ClearAdminKey", "TestConnection", "GetCheck", "PollNow", "Export", "SendTestAlert", "ApproveNode", "DenyNode",
];
/// Calls whose argument is a node name: a generated string that is a valid one is a valid call
/// (it records a decision), so they get only arguments that are not.
const NODE_CALLS: &[&str] = &["ApproveNode", "DenyNode"];
/// Calls that read and may accept a generated argument (a query whose fields are all optional),
/// or ignore it (reads that take no argument). Either way they change nothing.
const READING_CALLS: &[&str] = &["ListKeys", "ListWorkspaces", "GetSettings", "Status", "Overview", "Summary", "ListNodes", "CostSeries", "AuditLog", "ListRequests", "ListAlerts"];

/// xorshift64*: a fixed seed makes every run send the same bodies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn fake_secret(rng: &mut Rng) -> String {
    let n = rng.below(10_000);
    match rng.below(3) {
        0 => format!("sk-ant-api03-TEST{MARK}{n:04}abcdefghijklmnopqrstuvwxyz"),
        1 => format!("sk-ant-admin01-TEST{MARK}{n:04}abcdefghijklmnopqrst"),
        _ => format!("  sk-ant-api03-TEST{MARK}{n:04}-with spaces and ünïcode  "),
    }
}

/// A JSON value of the kinds that break parsers: wrong types, huge or negative numbers, long
/// strings, secrets as values and as field names, nesting. Never `null` at the top (a `null`
/// argument is the valid one for calls that take none) and never a small number (a real key id).
fn wrong_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 7 } else { 10 }) {
        0 => json!(fake_secret(rng)),
        1 => json!(*rng.pick(&[-1i64, 1000, 4_294_967_296, i64::MAX, i64::MIN, 1_000_000_007])),
        2 => json!(*rng.pick(&[1.5f64, -0.0, 1e300, -1e-300])),
        3 => json!(*rng.pick(&[true, false])),
        4 => json!(*rng.pick(&["", "1", "ListKeys", "../../etc/passwd", "<script>alert(1)</script>", "\u{0}\u{7}", "9999999999999999999999"])),
        5 => json!("x".repeat(rng.below(100_000) as usize)),
        6 => json!(format!("{}{}", "é".repeat(rng.below(50) as usize), fake_secret(rng))),
        7 => Value::Array((0..rng.below(4)).map(|_| wrong_value(rng, depth + 1)).collect()),
        _ => {
            // Never empty: `{}` is a valid (empty) settings update.
            let mut map = Map::new();
            for _ in 0..=rng.below(4) {
                let name = match rng.below(4) {
                    0 => fake_secret(rng),
                    1 => "nmae".to_string(),
                    2 => "".to_string(),
                    _ => format!("field{}", rng.below(100)),
                };
                map.insert(name, wrong_value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

/// A body as bytes: mostly `{"Call": <wrong value>}`, also raw text the framework must refuse.
fn malformed_body(rng: &mut Rng) -> (Vec<u8>, Option<&'static str>) {
    let call = if rng.below(2) == 0 { *rng.pick(REFUSING_CALLS) } else { *rng.pick(READING_CALLS) };
    let raw = |text: String| (text.into_bytes(), None);
    match rng.below(20) {
        0 => raw(format!("{{\"{call}\": {}{}}}", "[".repeat(5000), "]".repeat(5000))),
        1 => (vec![b'{', b'"', 0xff, 0xfe, b'"', b':', 0xc3, b'}'], None),
        2 => raw(format!("{{\"{call}\": 1}} trailing")),
        3 => (format!("{{\"{call}\": 18446744073709551616}}").into_bytes(), Some(call)),
        4 => raw("not json at all".to_string()),
        5 => raw(String::new()),
        // A call that does not exist: the framework answers it (without a secret in the body).
        6 => raw(json!({format!("{call}x"): 1}).to_string()),
        7 => raw(json!([call]).to_string()),
        8 if rng.below(10) == 0 => (json!({call: {"name": "x".repeat(1 << 20)}}).to_string().into_bytes(), Some(call)),
        _ => {
            let mut arg = wrong_value(rng, 0);
            while NODE_CALLS.contains(&call) && arg.as_str().is_some_and(|s| shared_types::policy::normalize_node_name(s).is_ok()) {
                arg = wrong_value(rng, 0);
            }
            (json!({call: arg}).to_string().into_bytes(), Some(call))
        }
    }
}

fn hash_of(data: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// Both processes' saved state and every table of the issuer's database but the audit log.
fn digest(env: &Env) -> Vec<(String, u64)> {
    let mut parts = vec![];
    let mut states: Vec<_> = std::fs::read_dir(env.data_dir.join("state")).unwrap().map(|e| e.unwrap().path()).collect();
    states.sort();
    for path in states {
        parts.push((path.file_name().unwrap().to_string_lossy().to_string(), hash_of(&std::fs::read(&path).unwrap())));
    }
    let db = rusqlite::Connection::open_with_flags(env.issuer_db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'audit_log' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY rowid")).unwrap();
        let columns = stmt.column_count();
        let rows: Vec<String> = stmt
            .query_map([], |r| Ok((0..columns).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        parts.push((table, hash_of(&rows)));
    }
    parts
}

#[test]
fn thousands_of_malformed_bodies_change_nothing_and_repeat_no_secret() {
    let env = Arc::new(Env::start("handler-fuzz", "truth.json", &["n0.os".to_string()]));
    env.configure_admin_api();
    let r = env.add_key(json!({"secret": secret(1), "name": "k1", "node_cap": null}));
    assert!(r.get("Ok").is_some(), "{r}");
    assert!(env.p2p("n0.os", json!({"RequestApiKey": null}))["response"]["Ok"].is_string());
    env.api(json!({"PollNow": null}));
    env.eventually("the first poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    assert!(env.wait_quiet(30));
    let before = digest(&env);

    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let started = Instant::now();
    let (mut refused, mut read) = (0, 0);
    for i in 0..5000 {
        let (body, call) = malformed_body(&mut rng);
        let (status, answer) = env.api_bytes(&body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).replace(MARK, "<secret>");
        assert!(!answer.contains(MARK), "body {i} ({shown}) came back with its secret: {status}");
        match call {
            Some(call) if READING_CALLS.contains(&call) => {
                assert!(status == 200 || status == 400, "{call} answered {status} to body {i} ({shown})");
                read += 1;
            }
            Some(call) => {
                let parsed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
                assert!(status >= 400 && status < 500, "{call} accepted body {i} ({shown}): {status}");
                let why = parsed["Err"].as_str().unwrap_or_default();
                assert!(!why.is_empty(), "{call}: no clear error for body {i} ({shown}): {status}");
                refused += 1;
            }
            None => {
                assert!(status >= 400 && status < 500 && !answer.is_empty(), "raw body {i} ({shown}): {status}");
                refused += 1;
            }
        }
    }
    println!("dashboard fuzz: {refused} refused, {read} reads, in {:.1} s", started.elapsed().as_secs_f64());

    // Remote nodes and local apps: garbage, and well-formed calls only the poller may make.
    let poller_calls = [
        json!({"PushOrgKeys": []}),
        json!({"FetchWork": null}),
        json!({"PushBackfillDone": 1}),
        json!({"PushRetirementResults": []}),
        json!({"PushUsage": {"buckets": []}}),
    ];
    let mut bodies: Vec<Value> = poller_calls.to_vec();
    for _ in 0..40 {
        bodies.push(json!({*rng.pick(&["RequestApiKey", "RequestKeyLease", "KeyStatus", "PushUsage", "Nope"]): wrong_value(&mut rng, 0)}));
    }
    let started = Instant::now();
    let threads: Vec<_> = bodies
        .chunks(6)
        .map(|chunk| {
            let (env, chunk) = (env.clone(), chunk.to_vec());
            std::thread::spawn(move || {
                for body in chunk {
                    for (path, from) in [("p2p", "m0.os"), ("local", "some-app:some-app:sys")] {
                        let answer = post(
                            &format!("{}/devnode/{path}", env.control),
                            &json!({"from": from, "to": ISSUER, "body": body, "timeout_secs": 2}),
                        );
                        let text = answer.to_string();
                        assert!(!text.contains(MARK) && !text.contains("sk-ant-api03-TESTkey"), "{path} answer to a malformed body carried a secret");
                        // KeyStatus of any string is a read the WIT API allows (null for an unknown node).
                        if answer.get("response").is_some() && body.get("KeyStatus").is_none() {
                            assert!(answer["response"]["Err"].is_string(), "{path}: {} was not refused", body.to_string().replace(MARK, "<secret>"));
                        }
                    }
                }
            })
        })
        .collect();
    // Join every thread before judging, so a failure leaves no thread holding the devnode.
    let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    assert!(results.iter().all(Result::is_ok), "a p2p or local answer failed a check (see above)");
    println!("p2p and local fuzz: {} bodies in {:.1} s", bodies.len() * 2, started.elapsed().as_secs_f64());

    assert!(env.wait_quiet(30));
    assert_eq!(digest(&env), before, "state or database changed");
    let audit = env.api(json!({"AuditLog": {"limit": 500}})).to_string();
    assert!(!audit.contains(MARK), "a secret reached the audit log");
    assert!(!env.logs().contains(MARK) && !env.process_output().contains(MARK), "a secret reached a log");
    assert_eq!(env.api(json!({"ListNodes": {}}))["Ok"]["total"], 1, "only n0.os holds a key");
}
