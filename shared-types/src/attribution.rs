//! The cost attributed to each issued node (`cost::split_cost` over its key's holders), kept per
//! key until one of its inputs changes. A page of nodes then reads shares instead of splitting a
//! year of hourly cost among every holder of every key it shows (a million holders at 100 keys).
//!
//! A key's shares depend on its hourly costs, its holders (in issue order) and when it retired;
//! each has a version or a value here, so a cached split is used only while all three are what
//! it was computed from, and it then equals a fresh `split_cost`.

use std::collections::HashMap;

use crate::cost::{split_cost, HourlyCosts};
use crate::pool::{IssuePos, KeyId, KeyPool};
use crate::{MicroUsd, Timestamp};

/// What a key's shares were computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inputs {
    hourly: u64,
    holders: u64,
    until: Option<Timestamp>,
}

impl Inputs {
    fn of(pool: &KeyPool, hourly: &HourlyCosts, key: KeyId) -> Inputs {
        Inputs {
            hourly: hourly.version(key),
            holders: pool.issue_log().holders_version(key),
            until: retired_at(pool, key),
        }
    }
}

/// Holders keep a key until it retires.
fn retired_at(pool: &KeyPool, key: KeyId) -> Option<Timestamp> {
    pool.key(key).and_then(|r| r.retirement.as_ref().map(|r| r.at))
}

/// Each holder's share of `key`'s cost, in the key's issue order: `split_cost` computed afresh.
pub fn compute_shares(pool: &KeyPool, hourly: &HourlyCosts, key: KeyId) -> Vec<MicroUsd> {
    let until = retired_at(pool, key);
    let log = pool.issue_log();
    let spans: Vec<_> = log.of_key(key).iter().map(|&pos| (log.at(pos).issued_at, until)).collect();
    split_cost(&hourly.points(Some(key)), &spans)
}

/// Shares per key, each with the inputs it was computed from.
#[derive(Clone, Debug, Default)]
pub struct NodeShares {
    per_key: HashMap<KeyId, (Inputs, Vec<MicroUsd>)>,
}

impl NodeShares {
    /// Keys with holders whose shares are missing or out of date.
    pub fn stale_keys(&self, pool: &KeyPool, hourly: &HourlyCosts) -> Vec<KeyId> {
        pool.keys().map(|r| r.id).filter(|&key| pool.node_count_of(key) > 0 && !self.is_fresh(pool, hourly, key)).collect()
    }

    fn is_fresh(&self, pool: &KeyPool, hourly: &HourlyCosts, key: KeyId) -> bool {
        self.per_key.get(&key).is_some_and(|(inputs, _)| *inputs == Inputs::of(pool, hourly, key))
    }

    /// Computes `key`'s shares again if an input changed; true when it did.
    pub fn refresh(&mut self, pool: &KeyPool, hourly: &HourlyCosts, key: KeyId) -> bool {
        if self.is_fresh(pool, hourly, key) {
            return false;
        }
        self.per_key.insert(key, (Inputs::of(pool, hourly, key), compute_shares(pool, hourly, key)));
        true
    }

    /// The cost attributed to the issuance at `pos` (refreshing its key's shares if needed).
    pub fn share_at(&mut self, pool: &KeyPool, hourly: &HourlyCosts, pos: IssuePos) -> Option<MicroUsd> {
        let log = pool.issue_log();
        let key = log.all().get(pos as usize)?.key;
        self.refresh(pool, hourly, key);
        let index = log.index_in_key(pos)?;
        self.per_key.get(&key).and_then(|(_, shares)| shares.get(index).copied())
    }

    /// Forgets keys the pool no longer has.
    pub fn retain_keys_of(&mut self, pool: &KeyPool) {
        self.per_key.retain(|key, _| pool.key(*key).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Issuance, NewKey};
    use crate::{ApiKeySecret, RetireReason};
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 - 1_800_000_000 % 3600 + secs, 0).unwrap()
    }

    fn pool_with_keys(keys: u32) -> KeyPool {
        let mut pool = KeyPool::new();
        for n in 0..keys {
            let secret = ApiKeySecret::parse(&format!("sk-ant-api03-TEST{n:04}abcdefghijklmnopqrstuvwxyz{n:04}")).unwrap();
            let new = NewKey { secret, name: format!("k{n}"), lifetime_secs: 3650 * 86_400, budget: MicroUsd(i64::MAX / 4), node_cap: None };
            pool.add_key(new, t(0)).unwrap();
        }
        pool.set_issue_unmatched(true);
        pool.apply_org_keys(&[], t(0));
        pool
    }

    /// One change to the inputs of the shares.
    #[derive(Clone, Debug)]
    enum Change {
        Cost { key: u64, hour: i64, amount: i64 },
        Issue { minute: i64 },
        Undo { newest: bool },
        Retire { key: u64, minute: i64 },
        Refresh { key: u64 },
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (1u64..4, 0i64..30, 0i64..2_000_000).prop_map(|(key, hour, amount)| Change::Cost { key, hour, amount }),
            (0i64..30 * 60).prop_map(|minute| Change::Issue { minute }),
            any::<bool>().prop_map(|newest| Change::Undo { newest }),
            (1u64..4, 0i64..30 * 60).prop_map(|(key, minute)| Change::Retire { key, minute }),
            (1u64..4).prop_map(|key| Change::Refresh { key }),
        ]
    }

    proptest! {
        /// After any sequence of cost upserts, issuances, take-backs and retirements, with
        /// refreshes in between, every cached share equals a fresh `split_cost`.
        #[test]
        fn cached_shares_equal_a_fresh_split(changes in proptest::collection::vec(change(), 1..60)) {
            let mut pool = pool_with_keys(3);
            let mut hourly = HourlyCosts::default();
            let mut shares = NodeShares::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut issued = 0;
            // Issue times only move forward, as the issuer's clock does.
            let mut clock = 0i64;
            for change in changes {
                match change {
                    Change::Cost { key, hour, amount } => hourly.set(KeyId(key), t(hour * 3600).timestamp(), MicroUsd(amount)),
                    Change::Issue { minute } => {
                        clock = clock.max(minute * 60);
                        issued += 1;
                        let _ = pool.issue_to(&format!("n{issued}.os"), t(clock), &mut rng);
                    }
                    Change::Undo { newest } => {
                        let all = pool.issuances_in_order(None);
                        let node = if newest { all.last() } else { all.first() }.map(|i| i.node.clone());
                        if let Some(node) = node {
                            pool.undo_issue(&node);
                        }
                    }
                    Change::Retire { key, minute } => {
                        let _ = pool.retire(KeyId(key), RetireReason::Operator, t(minute * 60));
                    }
                    Change::Refresh { key } => {
                        shares.refresh(&pool, &hourly, KeyId(key));
                    }
                }
            }
            for (pos, issuance) in pool.issuances_in_order(None).into_iter().enumerate() {
                let fresh = compute_shares(&pool, &hourly, issuance.key);
                let index = pool.issue_log().index_in_key(pos as IssuePos).unwrap();
                prop_assert_eq!(shares.share_at(&pool, &hourly, pos as IssuePos), Some(fresh[index]));
            }
            prop_assert!(shares.stale_keys(&pool, &hourly).is_empty());
        }
    }

    #[test]
    fn a_restored_pool_is_never_mistaken_for_the_old() {
        let mut pool = pool_with_keys(1);
        let mut hourly = HourlyCosts::default();
        hourly.set(KeyId(1), t(0).timestamp(), MicroUsd(10));
        let a = Issuance { node: "a.os".into(), key: KeyId(1), issued_at: t(0) };
        let b = Issuance { node: "b.os".into(), key: KeyId(1), issued_at: t(0) };
        pool.restore_issuances(vec![a.clone()]).unwrap();
        let mut shares = NodeShares::default();
        assert_eq!(shares.share_at(&pool, &hourly, 0), Some(MicroUsd(10)));
        // The same holder count, other holders: a rebuild gets new versions.
        pool.restore_issuances(vec![a, b]).unwrap();
        assert_eq!(shares.stale_keys(&pool, &hourly), vec![KeyId(1)]);
        assert_eq!(shares.share_at(&pool, &hourly, 1), Some(MicroUsd(5)));
        let mut rebuilt = HourlyCosts::default();
        rebuilt.set(KeyId(1), t(0).timestamp(), MicroUsd(10));
        assert_eq!(shares.stale_keys(&pool, &rebuilt), vec![KeyId(1)]);
    }
}
