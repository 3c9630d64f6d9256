//! Property tests of the issuance policy: pattern matching, the decision, and the bounds that keep
//! a flood of requests from growing storage.

use std::collections::HashMap;

use proptest::prelude::*;
use shared_types::policy::{
    decide, entry_matches, normalize_entry, EpisodeKind, IssuancePolicy, PolicyDecision, PolicyMode, Refusal, RefusalEpisodes,
    RequestStatus, Requests, MAX_PENDING,
};
use shared_types::Timestamp;

fn t(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,6}"
}

/// A valid node name of one to four labels.
fn node_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
}

fn mode() -> impl Strategy<Value = PolicyMode> {
    prop_oneof![Just(PolicyMode::Open), Just(PolicyMode::Allowlist), Just(PolicyMode::Approval)]
}

/// Entries drawn from a small universe so that they often match the drawn nodes.
fn small_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![Just("a.os"), Just("b.os"), Just("c.hypr"), Just("d.x.os")].prop_map(str::to_string),
        prop_oneof![Just("*.os"), Just("*.hypr"), Just("*.x.os")].prop_map(str::to_string),
    ]
}

fn small_node() -> impl Strategy<Value = String> {
    prop_oneof![Just("a.os"), Just("b.os"), Just("c.hypr"), Just("d.x.os"), Just("e.os"), Just("f.hypr"), Just("os")].prop_map(str::to_string)
}

proptest! {
    /// `*.<suffix>` matches exactly the names that end in `.<suffix>` with at least one label before.
    #[test]
    fn a_pattern_matches_whole_trailing_labels(node in node_name(), suffix in node_name()) {
        let pattern = format!("*.{suffix}");
        prop_assert_eq!(normalize_entry(&pattern), Ok(pattern.clone()));
        let expected = node.ends_with(&format!(".{suffix}"));
        prop_assert_eq!(entry_matches(&pattern, &node), expected);
        prop_assert!(!entry_matches(&pattern, &suffix), "a pattern never matches its bare suffix");
        let longer = format!("{node}.{suffix}");
        prop_assert!(entry_matches(&pattern, &longer));
    }

    /// Matching ignores case, and an exact entry matches only its own name.
    #[test]
    fn matching_ignores_case(node in node_name(), other in node_name()) {
        prop_assert!(entry_matches(&node, &node.to_ascii_uppercase()));
        prop_assert_eq!(entry_matches(&node, &other), node == other);
        let pattern = format!("*.{other}");
        prop_assert_eq!(entry_matches(&pattern, &node), entry_matches(&pattern, &node.to_ascii_uppercase()));
    }

    /// Normalising is idempotent, and what it accepts has `*` only as the whole first label.
    #[test]
    fn accepted_entries_are_stable_and_well_formed(raw in "[ *.a-zA-Z0-9_-]{0,20}") {
        if let Ok(entry) = normalize_entry(&raw) {
            prop_assert_eq!(normalize_entry(&entry), Ok(entry.clone()));
            prop_assert!(!entry.contains('*') || (entry.starts_with("*.") && entry.matches('*').count() == 1), "{}", entry);
            prop_assert_eq!(entry.clone(), entry.to_ascii_lowercase());
        }
    }

    /// The denylist refuses in every mode, holders keep going to issuance otherwise, open mode lets
    /// everyone else through, and allowlist mode only the listed.
    #[test]
    fn the_decision_follows_the_rules(
        mode in mode(),
        allow in proptest::collection::vec(small_entry(), 0..4),
        deny in proptest::collection::vec(small_entry(), 0..3),
        node in small_node(),
        holds_key in any::<bool>(),
        status in proptest::option::of(prop_oneof![Just(RequestStatus::Pending), Just(RequestStatus::Approved), Just(RequestStatus::Denied)]),
    ) {
        let policy = IssuancePolicy { issuance_policy: mode, allowlist: allow, denylist: deny };
        let mut requests = Requests::default();
        if let Some(status) = status {
            requests.decide(&node, status, t(0));
        }
        let decision = decide(&policy, &requests, &node, holds_key);
        let denylisted = policy.is_denylisted(&node);
        if denylisted {
            prop_assert_eq!(decision, PolicyDecision::Refuse(Refusal::Denylisted));
        } else if holds_key || mode == PolicyMode::Open {
            prop_assert_eq!(decision, PolicyDecision::Issue);
        }
        if decision == PolicyDecision::Issue {
            prop_assert!(!denylisted);
            prop_assert!(holds_key || mode == PolicyMode::Open || policy.is_allowlisted(&node) || status == Some(RequestStatus::Approved));
        }
        if mode == PolicyMode::Allowlist && !holds_key && !denylisted {
            prop_assert_eq!(decision == PolicyDecision::Issue, policy.is_allowlisted(&node));
        }
        if matches!(decision, PolicyDecision::RecordPending | PolicyDecision::StillPending) {
            prop_assert_eq!(mode, PolicyMode::Approval);
            prop_assert_eq!(decision == PolicyDecision::StillPending, status == Some(RequestStatus::Pending));
        }
    }

    /// For one node, a flood writes one audit row per change of answer, never one per request.
    #[test]
    fn a_flood_is_audited_once_per_episode(notes in proptest::collection::vec((0u8..5, 0u8..3), 1..400)) {
        let kinds = [EpisodeKind::Pending, EpisodeKind::QueueFull, EpisodeKind::Refused(Refusal::Denied)];
        let mut episodes = RefusalEpisodes::default();
        let mut last: HashMap<u8, EpisodeKind> = HashMap::new();
        let mut repeats: HashMap<u8, u64> = HashMap::new();
        for (node, kind) in notes {
            let kind = kinds[kind as usize];
            let episode = episodes.note(&format!("n{node}.os"), kind);
            let changed = last.insert(node, kind) != Some(kind);
            prop_assert_eq!(episode.first, changed);
            if changed {
                prop_assert_eq!(episode.repeats_before, repeats.insert(node, 0).unwrap_or(0));
            } else {
                *repeats.entry(node).or_default() += 1;
            }
        }
    }

    /// The pending count always equals the pending entries and stays within the cap.
    #[test]
    fn the_pending_count_is_exact(ops in proptest::collection::vec((0u8..20, 0u8..4), 0..200)) {
        let mut requests = Requests::default();
        for (i, (node, op)) in ops.into_iter().enumerate() {
            let node = format!("n{node}.os");
            let at = t(i as i64);
            match op {
                0 => { if requests.status_of(&node).is_none() { requests.add_pending(&node, at).unwrap(); } }
                1 => { requests.decide(&node, RequestStatus::Approved, at); }
                2 => { requests.decide(&node, RequestStatus::Denied, at); }
                _ => requests.restore_one(&node, None),
            }
            let (pending, _) = requests.page(Some(RequestStatus::Pending), 0, 0);
            prop_assert_eq!(requests.pending_count(), pending);
            prop_assert!(requests.pending_count() <= MAX_PENDING);
        }
    }
}
