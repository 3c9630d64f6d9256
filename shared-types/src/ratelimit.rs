//! Per-node rate limit of p2p requests (sliding one-minute window).

use std::collections::{HashMap, VecDeque};

use crate::Timestamp;

const WINDOW_SECS: i64 = 60;

#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_minute: u32,
    /// node → times of its requests in the current window, oldest first.
    recent: HashMap<String, VecDeque<i64>>,
    /// Nodes in the order they were first seen in a window, for amortised pruning.
    order: VecDeque<(i64, String)>,
    /// node → requests refused since its last allowed one (summarised, not logged one by one).
    refused: HashMap<String, u64>,
}

/// What the limiter decided, with what the audit log needs to record refusals per episode
/// rather than per request (a flood must not grow storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Allowed; `refused_before` requests of this node were refused since its last allowed one.
    Allowed { refused_before: u64 },
    /// Refused; `first` for the first refusal of an episode.
    Refused { first: bool },
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(10)
    }
}

impl RateLimiter {
    /// `per_minute` is raised to 1: a node's first request is never blocked.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute: per_minute.max(1), recent: HashMap::new(), order: VecDeque::new(), refused: HashMap::new() }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Records a request of `node` at `now` and says whether it is allowed, counting refusals.
    pub fn decide(&mut self, node: &str, now: Timestamp) -> RateDecision {
        if self.check_and_record(node, now) {
            RateDecision::Allowed { refused_before: self.refused.remove(node).unwrap_or(0) }
        } else {
            let count = self.refused.entry(node.to_string()).or_default();
            *count += 1;
            RateDecision::Refused { first: *count == 1 }
        }
    }

    /// Records a request of `node` at `now`; false when it is over the limit (nothing recorded).
    pub fn check_and_record(&mut self, node: &str, now: Timestamp) -> bool {
        let now = now.timestamp();
        self.prune(now);
        let times = match self.recent.get_mut(node) {
            Some(times) => times,
            None => {
                self.order.push_back((now, node.to_string()));
                self.recent.entry(node.to_string()).or_default()
            }
        };
        while times.front().is_some_and(|&t| t <= now - WINDOW_SECS) {
            times.pop_front();
        }
        if times.len() >= self.per_minute as usize {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Drops nodes whose newest request left the window; each node is visited once per window.
    fn prune(&mut self, now: i64) {
        while let Some((first_seen, _)) = self.order.front() {
            if *first_seen > now - WINDOW_SECS {
                break;
            }
            let (_, node) = self.order.pop_front().expect("front exists");
            let keep = self.recent.get(&node).and_then(|t| t.back()).is_some_and(|&last| last > now - WINDOW_SECS);
            if keep {
                self.order.push_back((now, node));
            } else {
                // Its refusal count stays (one number per limited node) until it is let through
                // again and the count goes to the audit log.
                self.recent.remove(&node);
            }
        }
    }

    pub fn tracked_nodes(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn limits_per_node_per_minute() {
        let mut limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.check_and_record("a.os", t(0)));
        }
        assert!(!limiter.check_and_record("a.os", t(1)));
        assert!(limiter.check_and_record("b.os", t(1)), "other nodes are not affected");
        assert!(limiter.check_and_record("a.os", t(61)), "the window slides");
    }

    #[test]
    fn refusals_are_counted_per_episode() {
        let mut limiter = RateLimiter::new(1);
        assert_eq!(limiter.decide("a.os", t(0)), RateDecision::Allowed { refused_before: 0 });
        assert_eq!(limiter.decide("a.os", t(1)), RateDecision::Refused { first: true });
        for i in 2..1000 {
            assert_eq!(limiter.decide("a.os", t(i % 50)), RateDecision::Refused { first: false });
        }
        assert_eq!(limiter.decide("a.os", t(61)), RateDecision::Allowed { refused_before: 999 });
        assert_eq!(limiter.decide("a.os", t(62)), RateDecision::Refused { first: true });
    }

    #[test]
    fn first_request_is_never_blocked_and_memory_is_bounded() {
        let mut limiter = RateLimiter::new(0);
        assert!(limiter.check_and_record("a.os", t(0)));
        for i in 0..1000 {
            limiter.check_and_record(&format!("n{i}.os"), t(i / 100));
        }
        limiter.check_and_record("late.os", t(500));
        assert!(limiter.tracked_nodes() <= 2, "{}", limiter.tracked_nodes());
    }
}
