//! Opt-in timers of where a message's time goes inside devnode (the benchmark's breakdown): per
//! stage, how many times it ran, its total and longest time and a histogram. Off unless
//! `DEVNODE_TIMINGS=1` or `POST /devnode/timings {"enabled": true}`; when off, a timing point costs
//! one relaxed atomic load and nothing is recorded.
//!
//! Stages (names as `GET /devnode/timings` reports them):
//! - `control api: p2p call`: the control API's handling of `POST /devnode/p2p`, from the request's
//!   head to its answer's body (reading and parsing the body, routing, waiting, writing JSON);
//! - `control api: awaiting the answer`: of that, from routing the request to its answer arriving;
//! - `kernel: route`: routing one message (capability checks, delivery to a mailbox, a waiter or
//!   a service task), wherever it was sent from;
//! - `component: <process id>`: a process running between taking a message and asking for the next
//!   one (guest code and its host calls, less the routing and state saves it does, counted above
//!   and below);
//! - `sqlite: <action>` (`write INSERT INTO issuances`, `query`, `commit`, ...): the sqlite service
//!   executing one request; a write is named by its keywords and table, never its values;
//! - `state: save`: a process's `set-state`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const CONTROL_P2P: &str = "control api: p2p call";
pub const CONTROL_AWAITING: &str = "control api: awaiting the answer";
pub const ROUTE: &str = "kernel: route";
pub const STATE_SAVE: &str = "state: save";

/// Histogram buckets: bucket `i` holds times below 2^i µs (the last one everything longer).
const BUCKETS: usize = 24;

#[derive(Default)]
struct Stage {
    count: u64,
    total: Duration,
    longest: Duration,
    buckets: [u64; BUCKETS],
}

impl Stage {
    fn add(&mut self, took: Duration) {
        self.count += 1;
        self.total += took;
        self.longest = self.longest.max(took);
        self.buckets[bucket_of(took)] += 1;
    }

    fn report(&self) -> Value {
        let histogram: Vec<Value> =
            self.buckets.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| json!({"below_us": bucket_limit_us(i), "count": n})).collect();
        json!({
            "count": self.count,
            "total_us": self.total.as_secs_f64() * 1e6,
            "mean_us": self.total.as_secs_f64() * 1e6 / self.count.max(1) as f64,
            "max_us": self.longest.as_secs_f64() * 1e6,
            "histogram": histogram,
        })
    }
}

fn bucket_of(took: Duration) -> usize {
    let micros = took.as_micros().min(u64::MAX as u128) as u64;
    // Times below 1 µs land in bucket 0 (below 2^0 µs).
    let bucket = if micros == 0 { 0 } else { 64 - micros.leading_zeros() as usize };
    bucket.min(BUCKETS - 1)
}

/// The upper limit of bucket `i` in µs (the last bucket has none: `null`).
fn bucket_limit_us(i: usize) -> Option<u64> {
    (i < BUCKETS - 1).then(|| 1u64 << i)
}

pub struct Timings {
    enabled: AtomicBool,
    stages: Mutex<BTreeMap<String, Stage>>,
}

impl Timings {
    pub fn new(enabled: bool) -> Timings {
        Timings { enabled: AtomicBool::new(enabled), stages: Mutex::new(BTreeMap::new()) }
    }

    /// On when the environment says `DEVNODE_TIMINGS=1`.
    pub fn from_env() -> Timings {
        Timings::new(std::env::var_os("DEVNODE_TIMINGS").is_some_and(|v| v == "1"))
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The start of a timed stage: `None` when timings are off.
    pub fn start(&self) -> Option<Instant> {
        self.is_enabled().then(Instant::now)
    }

    /// Records the time since `started` under `stage` (nothing when `started` is `None`).
    pub fn record(&self, stage: &str, started: Option<Instant>) -> Option<Duration> {
        let took = started?.elapsed();
        self.add(stage, took);
        Some(took)
    }

    /// Like [`Timings::record`] for a stage whose name is built only when timings are on.
    pub fn record_named(&self, stage: impl FnOnce() -> String, started: Option<Instant>) -> Option<Duration> {
        let took = started?.elapsed();
        self.add(&stage(), took);
        Some(took)
    }

    /// Records `took` under `stage` (callers that measured it themselves, only when on).
    pub fn add(&self, stage: &str, took: Duration) {
        let mut stages = self.stages.lock().unwrap();
        match stages.get_mut(stage) {
            Some(s) => s.add(took),
            None => stages.entry(stage.to_string()).or_default().add(took),
        }
    }

    /// Turns timings on or off; either way the totals start again from zero.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.reset();
    }

    pub fn reset(&self) {
        self.stages.lock().unwrap().clear();
    }

    /// `{"enabled", "stages": {name: {count, total_us, mean_us, max_us, histogram: [{below_us, count}]}}}`.
    pub fn report(&self) -> Value {
        let stages: serde_json::Map<String, Value> = self.stages.lock().unwrap().iter().map(|(name, s)| (name.clone(), s.report())).collect();
        json!({"enabled": self.is_enabled(), "stages": stages})
    }
}

/// How the `sqlite` stage of a request is named: its action, and for a write the statement's
/// leading keywords and table (`write INSERT INTO issuances`) — never its values, which may be secrets.
pub fn sqlite_stage(action: &Value) -> String {
    let name = action.as_str().map(str::to_string).or_else(|| action.as_object().and_then(|o| o.keys().next().cloned())).unwrap_or_default();
    let statement = action.get("Write").and_then(|w| w.get("statement")).and_then(Value::as_str);
    match statement {
        Some(statement) => format!("sqlite: write {}", statement_head(statement)),
        None => format!("sqlite: {}", snake_case(&name)),
    }
}

/// The statement's leading keywords and the first name after them (the table), each word cut at
/// its first character that is not part of a name (`INSERT INTO t(a) VALUES ('...')` →
/// `INSERT INTO t`): a value is never reached, and a quoted one would end the head at once.
fn statement_head(statement: &str) -> String {
    let mut head = vec![];
    for word in statement.split_whitespace().take(6) {
        let word = word.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("");
        if word.is_empty() {
            break;
        }
        head.push(word);
        let keyword = word.chars().all(|c| c.is_ascii_uppercase());
        if !keyword {
            break;
        }
    }
    head.join(" ")
}

/// `BeginTx` → `begin_tx`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_recorded_when_off() {
        let t = Timings::new(false);
        assert!(t.start().is_none());
        assert_eq!(t.record(ROUTE, t.start()), None);
        assert_eq!(t.report()["stages"], json!({}));
    }

    #[test]
    fn stages_count_and_sum_their_times() {
        let t = Timings::new(true);
        t.add(ROUTE, Duration::from_micros(3));
        t.add(ROUTE, Duration::from_micros(5));
        let route = &t.report()["stages"][ROUTE];
        assert_eq!(route["count"], 2);
        assert_eq!(route["total_us"], 8.0);
        assert_eq!(route["max_us"], 5.0);
        // 3 µs is below 4 µs, 5 µs below 8 µs.
        assert_eq!(route["histogram"], json!([{"below_us": 4, "count": 1}, {"below_us": 8, "count": 1}]));
        t.set_enabled(true);
        assert_eq!(t.report()["stages"], json!({}));
    }

    #[test]
    fn very_long_times_land_in_the_last_bucket() {
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
        assert_eq!(bucket_limit_us(BUCKETS - 1), None);
        assert_eq!(bucket_of(Duration::from_nanos(10)), 0);
    }

    #[test]
    fn sqlite_stages_name_the_statement_but_never_its_values() {
        let write = json!({"Write": {"statement": "INSERT INTO issuances (node, key_id) VALUES ('a.os', 1)", "tx_id": null}});
        assert_eq!(sqlite_stage(&write), "sqlite: write INSERT INTO issuances");
        let glued = json!({"Write": {"statement": "INSERT INTO keys(secret)VALUES('sk-ant-api03-x')"}});
        assert_eq!(sqlite_stage(&glued), "sqlite: write INSERT INTO keys");
        assert_eq!(sqlite_stage(&json!({"Write": {"statement": "DELETE FROM t WHERE a = 1"}})), "sqlite: write DELETE FROM t");
        let upsert = json!({"Write": {"statement": "INSERT OR REPLACE INTO usage_samples (key_id) VALUES (1)"}});
        assert_eq!(sqlite_stage(&upsert), "sqlite: write INSERT OR REPLACE INTO usage_samples");
        let shouting = json!({"Write": {"statement": "INSERT INTO T VALUES ('SECRET')"}});
        assert_eq!(sqlite_stage(&shouting), "sqlite: write INSERT INTO T VALUES");
        assert_eq!(sqlite_stage(&json!({"Query": "SELECT 1"})), "sqlite: query");
        assert_eq!(sqlite_stage(&json!({"Commit": {"tx_id": 1}})), "sqlite: commit");
        assert_eq!(sqlite_stage(&json!("BeginTx")), "sqlite: begin_tx");
    }
}
