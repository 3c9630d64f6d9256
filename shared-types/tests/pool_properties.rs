//! Property tests of the key pool: random sequences of operations keep its invariants.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use shared_types::pool::{IssueError, Issuance, KeyId, KeyPool, NewKey, Resolution};
use shared_types::{ApiKeySecret, MicroUsd, RetireReason, Timestamp};

fn t(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn secret(n: u8) -> ApiKeySecret {
    ApiKeySecret::parse(&format!("sk-ant-api03-TEST{n:03}abcdefghijklmnopqrstuvwxyz{n:03}Z")).unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Add { secret: u8, lifetime: u64, budget: i64, cap: Option<u32> },
    Issue { node: u8 },
    Retire { key: u64 },
    Remove { key: u64 },
    Spend { key: u64, usd: i64 },
    Advance { secs: i64 },
    Sweep,
    Resolve { key: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..12, 60u64..10_000, 1i64..10, proptest::option::of(1u32..4))
            .prop_map(|(secret, lifetime, budget, cap)| Op::Add { secret, lifetime, budget, cap }),
        6 => (0u8..40).prop_map(|node| Op::Issue { node }),
        1 => (1u64..14).prop_map(|key| Op::Retire { key }),
        1 => (1u64..14).prop_map(|key| Op::Remove { key }),
        1 => (1u64..14, 0i64..12).prop_map(|(key, usd)| Op::Spend { key, usd }),
        1 => (1i64..3_000).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Sweep),
        1 => (1u64..14).prop_map(|key| Op::Resolve { key }),
    ]
}

/// Everything that must hold after every step.
fn check_invariants(pool: &KeyPool, first_key_of: &HashMap<String, KeyId>) {
    // key → nodes and node → issuance agree exactly, and no node holds two keys.
    let mut from_keys = BTreeSet::new();
    for record in pool.keys() {
        let nodes: Vec<_> = pool.nodes_of(record.id).collect();
        let unique: BTreeSet<_> = nodes.iter().collect();
        assert_eq!(unique.len(), nodes.len(), "a node appears twice under {}", record.id);
        if let Some(cap) = record.node_cap {
            assert!(nodes.len() <= cap as usize, "cap of {} exceeded", record.id);
        }
        for node in nodes {
            assert!(from_keys.insert(node.clone()), "{node} holds two keys");
            assert_eq!(pool.issuance(node).map(|i| i.key), Some(record.id));
        }
    }
    let from_nodes: BTreeSet<_> = pool.issuances().map(|i| i.node.clone()).collect();
    assert_eq!(from_keys, from_nodes);
    assert_eq!(pool.issued_node_count(), from_nodes.len());
    // A node's key never changes.
    for (node, key) in first_key_of {
        assert_eq!(pool.issuance(node).map(|i| i.key), Some(*key));
    }
    // Active and historical partition the keys.
    let active = pool.active_ids();
    let historical = pool.historical_ids();
    assert!(active.is_disjoint(&historical));
    assert_eq!(active.len() + historical.len(), pool.keys().count());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>()) {
        let mut pool = KeyPool::new();
        // Half the runs with the default policy: unmatched keys are never issued.
        let issue_unmatched = seed % 2 == 0;
        pool.set_issue_unmatched(issue_unmatched);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut now = 0i64;
        let mut first_key_of: HashMap<String, KeyId> = HashMap::new();
        for op in ops {
            match op {
                Op::Add { secret: s, lifetime, budget, cap } => {
                    let added = pool.add_key(
                        NewKey { secret: secret(s), name: format!("key {s}"), lifetime_secs: lifetime, budget: MicroUsd::from_usd(budget), node_cap: cap },
                        t(now),
                    );
                    // Its first look-up in the organization found nothing (the pool has no org).
                    if let Ok(key) = added {
                        pool.end_first_match(key);
                    }
                }
                Op::Issue { node } => {
                    let node = format!("node{node}.os");
                    let before = pool.issuance(&node).cloned();
                    let historical = pool.historical_ids();
                    match pool.issue_to(&node, t(now), &mut rng) {
                        Ok(issued) => {
                            if let Some(before) = &before {
                                prop_assert!(!issued.first_time);
                                prop_assert_eq!(issued.key, before.key);
                            } else {
                                prop_assert!(issued.first_time);
                                prop_assert!(!historical.contains(&issued.key), "a historical key was issued");
                                let record = pool.key(issued.key).unwrap();
                                prop_assert!(record.due_retirement(t(now)).is_none());
                                prop_assert!(
                                    issue_unmatched || matches!(record.resolution, Resolution::Resolved { .. }),
                                    "an unmatched key was issued"
                                );
                                first_key_of.insert(node.clone(), issued.key);
                            }
                        }
                        Err(IssueError::NoKeysAvailable) => {
                            prop_assert!(before.is_none());
                            prop_assert!(pool.issuance(&node).is_none(), "a refused node was recorded");
                        }
                        Err(IssueError::KeyRetired(_)) => prop_assert!(before.is_some()),
                        Err(IssueError::InvalidNode(n)) => prop_assert!(false, "valid node refused: {}", n),
                    }
                }
                Op::Retire { key } => {
                    let _ = pool.retire(KeyId(key), RetireReason::Operator, t(now));
                }
                Op::Remove { key } => {
                    let _ = pool.remove(KeyId(key), t(now));
                }
                Op::Spend { key, usd } => pool.set_spent(KeyId(key), MicroUsd::from_usd(usd)),
                Op::Advance { secs } => now += secs,
                Op::Sweep => {
                    for (key, _) in pool.sweep(t(now)) {
                        prop_assert!(!pool.key(key).unwrap().is_active());
                    }
                }
                Op::Resolve { key } => pool.set_resolution(
                    KeyId(key),
                    Resolution::Resolved { api_key_id: format!("apikey_TEST{key:02}"), workspace_id: None },
                ),
            }
            check_invariants(&pool, &first_key_of);
        }

        // Persisted form + stored issuances reproduce the same pool, through JSON and MessagePack.
        // In issue order, as the issuer's table returns them (by rowid).
        let rows: Vec<Issuance> = pool.issuances_in_order(None).into_iter().cloned().collect();
        prop_assert_eq!(rows.len(), pool.issued_node_count());
        prop_assert!(rows.windows(2).all(|w| w[0].issued_at <= w[1].issued_at), "issue order is time order");
        for bytes in [serde_json::to_vec(&pool).unwrap(), rmp_serde::to_vec(&pool).unwrap()] {
            let mut restored: KeyPool = if bytes.first() == Some(&b'{') {
                serde_json::from_slice(&bytes).unwrap()
            } else {
                rmp_serde::from_slice(&bytes).unwrap()
            };
            restored.restore_issuances(rows.clone()).unwrap();
            restored.set_issue_unmatched(issue_unmatched);
            prop_assert_eq!(&restored, &pool);
        }
    }
}

/// Issuance is plausibly uniform: chi-square over 5 keys × 5,000 nodes (fixed seed).
#[test]
fn issuance_is_plausibly_uniform() {
    let mut pool = KeyPool::new();
    pool.set_issue_unmatched(true);
    let mut rng = StdRng::seed_from_u64(7);
    for n in 0..5 {
        pool.add_key(
            NewKey { secret: secret(n), name: format!("k{n}"), lifetime_secs: 86_400, budget: MicroUsd::from_usd(5), node_cap: None },
            t(0),
        )
        .map(|key| pool.end_first_match(key))
        .unwrap();
    }
    let mut counts: HashMap<KeyId, u64> = HashMap::new();
    for node in 0..5_000 {
        let issued = pool.issue_to(&format!("n{node}.os"), t(1), &mut rng).unwrap();
        *counts.entry(issued.key).or_default() += 1;
    }
    let expected = 1_000.0;
    let chi2: f64 = counts.values().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
    // 4 degrees of freedom: p = 0.001 at 18.47.
    assert_eq!(counts.len(), 5);
    assert!(chi2 < 18.47, "chi-square {chi2} with counts {counts:?}");
}
