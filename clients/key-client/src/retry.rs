//! When asking again helps, and how long to wait first. Pure: no node needed.

use std::time::Duration;

use crate::answer::KeyError;

/// How `request_key_with` retries. Only answers that can change by asking again are retried:
/// no answer in time (asking again is safe: the same node gets the same key), `try again`,
/// `temporarily unavailable`, and `rate limited` (with a growing wait). A refusal is final for
/// now and is returned at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests sent at most, the first included (at least 1).
    pub max_attempts: u32,
    /// How long each request waits for its answer, in seconds.
    pub timeout_secs: u64,
    /// The wait before asking again after `try again` or `temporarily unavailable`.
    pub retry_delay: Duration,
    /// The first wait after `rate limited`; doubled after each further one.
    pub rate_limit_backoff: Duration,
    /// No single wait is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            // The first message between two nodes that have not met waits for their connection:
            // about 25 s was seen on a real node.
            timeout_secs: 30,
            retry_delay: Duration::from_millis(500),
            rate_limit_backoff: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Sends once and never retries.
    pub fn once(timeout_secs: u64) -> RetryPolicy {
        RetryPolicy { max_attempts: 1, timeout_secs, ..RetryPolicy::default() }
    }

    /// After attempt number `attempt` (1 for the first) failed with `error`: how long to wait
    /// before the next one, or `None` to give up with `error`.
    pub fn wait_before_retry(&self, attempt: u32, error: &KeyError) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let wait = match error {
            // The wait for the answer was the delay.
            KeyError::Timeout => Duration::ZERO,
            KeyError::TryAgain | KeyError::Unavailable => self.retry_delay,
            KeyError::RateLimited => self.rate_limit_backoff.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1))),
            _ => return None,
        };
        Some(wait.min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::RetirementReason;

    #[test]
    fn refusals_are_never_retried() {
        let policy = RetryPolicy::default();
        for error in [
            KeyError::NoKeysAvailable,
            KeyError::Retired(RetirementReason::Operator),
            KeyError::PendingApproval,
            KeyError::NotAllowed,
            KeyError::ApprovalQueueFull,
            KeyError::SameNode,
            KeyError::Offline,
            KeyError::Other("x".into()),
            KeyError::UnreadableAnswer,
        ] {
            assert_eq!(policy.wait_before_retry(1, &error), None, "{error:?}");
        }
    }

    #[test]
    fn lost_answers_and_busy_storage_are_retried_soon() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.wait_before_retry(1, &KeyError::Timeout), Some(Duration::ZERO));
        assert_eq!(policy.wait_before_retry(1, &KeyError::TryAgain), Some(Duration::from_millis(500)));
        assert_eq!(policy.wait_before_retry(2, &KeyError::Unavailable), Some(Duration::from_millis(500)));
    }

    #[test]
    fn rate_limits_back_off_and_attempts_are_bounded() {
        let policy = RetryPolicy { max_attempts: 10, max_delay: Duration::from_secs(20), ..RetryPolicy::default() };
        let waits: Vec<_> = (1..=5).map(|a| policy.wait_before_retry(a, &KeyError::RateLimited).unwrap().as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 20]);
        assert_eq!(policy.wait_before_retry(10, &KeyError::RateLimited), None);
        assert_eq!(policy.wait_before_retry(u32::MAX - 1, &KeyError::Timeout), None);
        let once = RetryPolicy::once(5);
        assert_eq!(once.wait_before_retry(1, &KeyError::Timeout), None);
    }
}
