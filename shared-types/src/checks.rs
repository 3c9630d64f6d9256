//! Background checks the dashboard starts and then follows (SPEC §7: the node answers an HTTP
//! request within 15 s, and a check through the Admin API can take longer).
//!
//! A check is started by one call (which answers its id at once) and read by another until it is
//! no longer running. Checks live in memory only: after a restart an unknown id tells the UI the
//! check was interrupted.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::messages::{ConnectionTest, KeyCheck};
use crate::pool::KeyId;
use crate::Timestamp;

pub type CheckId = u64;

/// How many checks are remembered; the oldest finished ones are forgotten first.
pub const MAX_CHECKS: usize = 64;

/// What a check looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// Whether the admin key reaches the Admin API.
    Connection,
    /// Whether the organization knows this key and holds it active.
    Key(KeyId),
}

/// What a finished check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckOutcome {
    Connection(ConnectionTest),
    Key(KeyCheck),
    /// The check could not be carried out (the cost-poller did not answer, the Admin API could
    /// not be read); the message says why.
    Failed(String),
}

/// A check as the dashboard reads it: `outcome` is `None` while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: CheckId,
    pub kind: CheckKind,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: Option<CheckOutcome>,
}

impl Check {
    pub fn is_running(&self) -> bool {
        self.outcome.is_none()
    }
}

/// The checks started since the process started, newest last.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    next_id: CheckId,
    checks: VecDeque<Check>,
}

impl Checks {
    /// Starts a check of `kind`, or answers the one of that kind still running (a second click
    /// must not queue a second trip to the Admin API). The bool is true when a new one started.
    pub fn start(&mut self, kind: CheckKind, at: Timestamp) -> (CheckId, bool) {
        if let Some(running) = self.checks.iter().find(|c| c.kind == kind && c.is_running()) {
            return (running.id, false);
        }
        self.next_id += 1;
        self.checks.push_back(Check { id: self.next_id, kind, started_at: at, finished_at: None, outcome: None });
        self.forget_beyond_limit();
        (self.next_id, true)
    }

    /// Records what a check found. A check already finished or forgotten is left as it is.
    pub fn finish(&mut self, id: CheckId, outcome: CheckOutcome, at: Timestamp) {
        if let Some(check) = self.checks.iter_mut().find(|c| c.id == id && c.is_running()) {
            check.outcome = Some(outcome);
            check.finished_at = Some(at);
        }
    }

    pub fn get(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Forgets the oldest finished checks beyond `MAX_CHECKS`. Running checks are kept: at most
    /// one per kind runs, so they are bounded by the number of keys.
    fn forget_beyond_limit(&mut self) {
        while self.checks.len() > MAX_CHECKS {
            match self.checks.iter().position(|c| !c.is_running()) {
                Some(oldest_finished) => {
                    self.checks.remove(oldest_finished);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn failed(why: &str) -> CheckOutcome {
        CheckOutcome::Failed(why.to_string())
    }

    #[test]
    fn a_running_check_of_the_same_kind_is_answered_again() {
        let mut checks = Checks::default();
        let (a, new_a) = checks.start(CheckKind::Connection, t(0));
        let (b, new_b) = checks.start(CheckKind::Connection, t(1));
        assert!(new_a && !new_b);
        assert_eq!(a, b);
        let (c, new_c) = checks.start(CheckKind::Key(KeyId(3)), t(1));
        assert!(new_c && c != a);
        checks.finish(a, failed("no answer"), t(2));
        let (d, new_d) = checks.start(CheckKind::Connection, t(3));
        assert!(new_d && d != a, "a finished check is not reused");
    }

    #[test]
    fn finishing_records_the_outcome_once() {
        let mut checks = Checks::default();
        let (id, _) = checks.start(CheckKind::Key(KeyId(1)), t(0));
        assert!(checks.get(id).unwrap().is_running());
        checks.finish(id, failed("first"), t(5));
        checks.finish(id, failed("second"), t(6));
        let check = checks.get(id).unwrap();
        assert_eq!(check.outcome, Some(failed("first")));
        assert_eq!(check.finished_at, Some(t(5)));
        assert!(checks.get(id + 100).is_none());
    }

    #[test]
    fn old_finished_checks_are_forgotten_running_ones_kept() {
        let mut checks = Checks::default();
        let (first, _) = checks.start(CheckKind::Key(KeyId(0)), t(0));
        for key in 1..200u64 {
            let (id, _) = checks.start(CheckKind::Key(KeyId(key)), t(key as i64));
            checks.finish(id, failed("x"), t(key as i64));
        }
        assert!(checks.checks.len() <= MAX_CHECKS + 1);
        assert!(checks.get(first).is_some_and(Check::is_running), "the running check survives");
        assert!(checks.get(2).is_none(), "the oldest finished ones are gone");
        assert!(checks.get(200).is_some());
    }
}
