//! Property tests of the alert state machines: whatever the order and repetition of evaluations,
//! an alert is raised once per crossing (a clear → holds change) and cleared when its condition
//! ends, and the open alerts are exactly the conditions that hold at the last evaluation.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use shared_types::alerts::{holding, AlertBook, AlertSettings, Condition, Snapshot, Transition};
use shared_types::messages::PollerStatus;
use shared_types::pool::{KeyPool, NewKey};
use shared_types::{ApiKeySecret, KeyId, MicroUsd, Timestamp};

fn t(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn condition(n: u8) -> Condition {
    match n % 8 {
        0 => Condition::Budget { key: KeyId(u64::from(n / 8)), percent: 80 },
        1 => Condition::ExpiresSoon { key: KeyId(u64::from(n / 8)) },
        2 => Condition::PoolEmpty,
        3 => Condition::PoolLow,
        4 => Condition::AdminKeyRefused,
        5 => Condition::RetirementStuck { key: KeyId(u64::from(n / 8)) },
        6 => Condition::PollerSilent,
        _ => Condition::UnknownModel { model: format!("m{}", n / 8) },
    }
}

/// Checks one run of evaluations against the edges of each condition's hold sequence.
fn check_run(snapshots: &[BTreeSet<Condition>]) {
    let mut book = AlertBook::default();
    let mut raised: BTreeMap<Condition, u32> = BTreeMap::new();
    let mut cleared: BTreeMap<Condition, u32> = BTreeMap::new();
    let mut open: BTreeSet<Condition> = BTreeSet::new();
    for (i, holds) in snapshots.iter().enumerate() {
        let input = holds.iter().map(|c| (c.clone(), format!("{c} holds"))).collect();
        for transition in book.apply(input, t(i as i64)) {
            match transition {
                Transition::Raised { condition, .. } => {
                    assert!(open.insert(condition.clone()), "{condition} raised while open");
                    *raised.entry(condition).or_default() += 1;
                }
                Transition::Cleared { condition, raised_at, at, .. } => {
                    assert!(open.remove(&condition), "{condition} cleared while clear");
                    assert!(raised_at <= at);
                    *cleared.entry(condition).or_default() += 1;
                }
            }
        }
        assert_eq!(&open, holds, "open alerts are what holds now");
        let book_open: BTreeSet<Condition> = book.open().map(|(c, _)| c.clone()).collect();
        assert_eq!(&book_open, holds);
    }
    let all: BTreeSet<Condition> = snapshots.iter().flatten().cloned().collect();
    for c in all {
        let mut previous = false;
        let (mut rising, mut falling) = (0, 0);
        for holds in snapshots {
            let now = holds.contains(&c);
            rising += u32::from(now && !previous);
            falling += u32::from(!now && previous);
            previous = now;
        }
        assert_eq!(raised.get(&c).copied().unwrap_or(0), rising, "{c}: one raise per crossing");
        assert_eq!(cleared.get(&c).copied().unwrap_or(0), falling, "{c}: one clear per end");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any sequence of condition sets, each possibly evaluated several times in a row.
    #[test]
    fn raised_once_per_crossing_and_cleared_when_it_ends(
        steps in proptest::collection::vec((proptest::collection::btree_set(0u8..24, 0..8), 1usize..4), 0..40)
    ) {
        let snapshots: Vec<BTreeSet<Condition>> = steps
            .iter()
            .flat_map(|(set, repeat)| std::iter::repeat(set.iter().map(|n| condition(*n)).collect()).take(*repeat))
            .collect();
        check_run(&snapshots);
    }

    /// The same snapshots of a key's spend, evaluated in any order and with repeats: each budget
    /// threshold is raised exactly as often as spend crosses it upwards in that order.
    #[test]
    fn budget_thresholds_follow_spend_in_any_order(
        spends in proptest::collection::vec(0i64..=120, 1..30),
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 1..60),
    ) {
        let mut pool = KeyPool::new();
        pool.set_issue_unmatched(true);
        let secret = ApiKeySecret::parse("sk-ant-api03-TEST001abcdefghijklmnopqrstuvwxyz001Z").unwrap();
        let key = pool
            .add_key(NewKey { secret, name: "k".into(), lifetime_secs: 365 * 86_400, budget: MicroUsd::from_usd(100), node_cap: None }, t(0))
            .unwrap();
        pool.end_first_match(key);
        let settings = AlertSettings::default();
        let poller = PollerStatus::default();
        // Evaluation order: snapshots picked in an arbitrary order, repeats allowed.
        let picked: Vec<i64> = order.iter().map(|i| spends[i.index(spends.len())]).collect();
        let mut snapshots = vec![];
        for (i, usd) in picked.iter().enumerate() {
            // Spend below the budget keeps the key active (no sweep here): only thresholds vary.
            pool.set_spent(key, MicroUsd::from_usd(*usd));
            let now = t(10 + i as i64);
            let holds = holding(&Snapshot { now, pool: &pool, poller: &poller, poll_interval_secs: 3600, unknown_models: &[], settings: &settings });
            let expected: BTreeSet<Condition> = settings
                .budget_percents
                .iter()
                .filter(|p| *usd >= i64::from(**p))
                .map(|p| Condition::Budget { key, percent: *p })
                .collect();
            let budget_holds: BTreeSet<Condition> = holds.keys().filter(|c| matches!(c, Condition::Budget { .. })).cloned().collect();
            prop_assert_eq!(&budget_holds, &expected);
            snapshots.push(budget_holds);
        }
        check_run(&snapshots);
    }
}

#[test]
fn a_restored_book_does_not_raise_again() {
    let mut book = AlertBook::default();
    let holds: BTreeMap<Condition, String> = [(Condition::PoolEmpty, "empty".to_string())].into();
    assert_eq!(book.apply(holds.clone(), t(0)).len(), 1);
    let open: Vec<_> = book.open().map(|(c, a)| (c.clone(), a.clone())).collect();
    let mut restored = AlertBook::restore(open);
    assert!(restored.apply(holds, t(5)).is_empty(), "after a restart the open alert stays open, not raised again");
    let cleared = restored.apply(BTreeMap::new(), t(9));
    assert!(matches!(&cleared[..], [Transition::Cleared { raised_at, .. }] if *raised_at == t(0)));
}
