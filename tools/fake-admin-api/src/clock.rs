//! The fake's clock: devnode's virtual clock when following it, else real time plus an offset
//! (or a frozen time, for tests that need a clock that does not tick).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::{parse_time, Shared};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    devnode_url: Option<String>,
    offset_secs: i64,
    frozen_at: Option<i64>,
    /// The last time read from devnode, and when: if devnode does not answer once, its clock is
    /// estimated from that instead of falling back to real time (which may be days behind it).
    last_devnode_reading: Option<(i64, Instant)>,
}

impl Clock {
    pub fn new(devnode_url: Option<String>) -> Clock {
        Clock { devnode_url, ..Clock::default() }
    }
}

fn real_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn read_devnode_clock(url: &str) -> Option<i64> {
    let answer = ureq::get(&format!("{url}/devnode/clock")).timeout(Duration::from_secs(2)).call().ok()?;
    let v: Value = serde_json::from_str(&answer.into_string().ok()?).ok()?;
    Some(v.get("now_ms")?.as_i64()? / 1000)
}

/// Now, in Unix seconds. Reads devnode's clock (an HTTP call) without holding the state's lock.
pub fn now(state: &Shared) -> i64 {
    let clock = state.lock().unwrap().clock.clone();
    if let Some(t) = clock.frozen_at {
        return t;
    }
    let Some(url) = clock.devnode_url else { return real_now() + clock.offset_secs };
    if let Some(t) = read_devnode_clock(&url) {
        state.lock().unwrap().clock.last_devnode_reading = Some((t, Instant::now()));
        return t;
    }
    match clock.last_devnode_reading {
        Some((t, at)) => t + at.elapsed().as_secs() as i64,
        None => real_now(),
    }
}

/// `POST /_control/clock`: `{"advance_seconds": N}` or `{"now": "<RFC 3339>"}`, optionally with
/// `"frozen": true|false` (omitted: unchanged). Refused while following devnode's clock.
pub fn set(state: &Shared, body: &Value) -> Result<i64, String> {
    if state.lock().unwrap().clock.devnode_url.is_some() {
        return Err("the clock follows devnode's: advance devnode's clock instead".to_string());
    }
    let current = now(state);
    let target = if let Some(secs) = body.get("advance_seconds").and_then(Value::as_i64) {
        current + secs
    } else if let Some(t) = body.get("now").and_then(Value::as_str).and_then(parse_time) {
        t
    } else {
        return Err("expected {\"advance_seconds\": N} or {\"now\": \"<RFC 3339>\"}".to_string());
    };
    let frozen = match body.get("frozen") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err("frozen must be true or false".to_string()),
    };
    let mut s = state.lock().unwrap();
    if frozen.unwrap_or(s.clock.frozen_at.is_some()) {
        s.clock.frozen_at = Some(target);
    } else {
        s.clock.frozen_at = None;
        s.clock.offset_secs = target - real_now();
    }
    Ok(target)
}
