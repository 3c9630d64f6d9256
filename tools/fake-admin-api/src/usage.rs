//! Token counts of the scripted usage lines over a window of time.

use std::ops::AddAssign;

use crate::scenario::{ContextWindow, ServiceTier, UsageLine};
use crate::State;

/// Token counts (and request counts) of some usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub uncached_input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    pub output: u64,
    pub web_search_requests: u64,
    pub requests: u64,
}

impl Tokens {
    /// Anything a usage row would show (requests alone are not usage).
    pub fn has_usage(&self) -> bool {
        [self.uncached_input, self.cache_write_5m, self.cache_write_1h, self.cache_read, self.output, self.web_search_requests].iter().any(|n| *n > 0)
    }
}

impl AddAssign for Tokens {
    fn add_assign(&mut self, o: Tokens) {
        self.uncached_input += o.uncached_input;
        self.cache_write_5m += o.cache_write_5m;
        self.cache_write_1h += o.cache_write_1h;
        self.cache_read += o.cache_read;
        self.output += o.output;
        self.web_search_requests += o.web_search_requests;
        self.requests += o.requests;
    }
}

/// Tokens of one usage line in [start, end), cut at `now`: `rate × seconds / 3600` (integer), so every
/// figure is deterministic and a closed hour holds exactly the hourly rate.
pub fn tokens_in(line: &UsageLine, start: i64, end: i64, now: i64) -> Tokens {
    let from = line.from.timestamp().max(start);
    let until = line.until.map(|u| u.timestamp()).unwrap_or(i64::MAX).min(end).min(now);
    if until <= from {
        return Tokens::default();
    }
    let secs = (until - from) as u128;
    let part = |rate: u64| (rate as u128 * secs / 3600) as u64;
    let r = &line.per_hour;
    Tokens {
        uncached_input: part(r.uncached_input),
        cache_write_5m: part(r.cache_write_5m),
        cache_write_1h: part(r.cache_write_1h),
        cache_read: part(r.cache_read),
        output: part(r.output),
        web_search_requests: part(r.web_search_requests),
        requests: part(r.requests),
    }
}

/// A usage line with what a report needs to know about it.
pub struct LineView<'a> {
    pub line: &'a UsageLine,
    /// The key's workspace, or the line's own for Workbench usage. None = the default workspace.
    pub workspace_id: Option<&'a str>,
}

impl LineView<'_> {
    pub fn api_key_id(&self) -> Option<&str> {
        self.line.api_key_id.as_deref()
    }

    pub fn model(&self) -> &str {
        &self.line.model
    }

    pub fn service_tier(&self) -> ServiceTier {
        self.line.service_tier
    }

    pub fn context_window(&self) -> ContextWindow {
        self.line.context_window
    }
}

/// Every scripted usage line, with its workspace resolved.
pub fn line_views(state: &State) -> Vec<LineView<'_>> {
    state
        .scenario
        .usage
        .iter()
        .map(|line| {
            let workspace_id = match &line.api_key_id {
                Some(id) => state.keys.iter().find(|k| &k.id == id).and_then(|k| k.workspace_id.as_deref()),
                None => line.workspace_id.as_deref(),
            };
            LineView { line, workspace_id }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn windows_prorate_exactly_and_stop_at_now() {
        let s = Scenario::parse(
            r#"{"admin_key": "sk-ant-admin01-TEST", "keys": [], "usage": [{"api_key_id": null, "model": "m",
                "per_hour": {"output": 3600, "requests": 60}, "from": "2026-01-01T00:00:00Z", "until": "2026-01-01T02:00:00Z"}]}"#,
        )
        .unwrap();
        let line = &s.usage[0];
        let t0 = line.from.timestamp();
        assert_eq!(tokens_in(line, t0, t0 + 3600, i64::MAX).output, 3600);
        assert_eq!(tokens_in(line, t0, t0 + 3600, t0 + 90).output, 90);
        assert_eq!(tokens_in(line, t0, t0 + 3600, t0 + 90).requests, 1);
        assert_eq!(tokens_in(line, t0 - 7200, t0 + 86_400, i64::MAX).output, 7200, "cut at until");
        assert!(!tokens_in(line, t0 + 7200, t0 + 9000, i64::MAX).has_usage());
    }
}
