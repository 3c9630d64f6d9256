//! The key pool (SPEC §3–§5): keys with their lifecycle, and who was issued which key.
//!
//! Serialising a `KeyPool` keeps only the key records (small); the node maps, which can hold a
//! million nodes, are `#[serde(skip)]` and rebuilt with [`KeyPool::restore_issuances`] from the
//! issuer's SQLite rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::secret::{ApiKeySecret, KeyHint};
use crate::{MicroUsd, Timestamp};

pub(crate) mod issue_log;

pub use issue_log::{issuance_line, read_issuance_lines, IssueLog, IssuePos, MalformedIssuanceRow};

pub type NodeId = String;

/// Local id of a key in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub u64);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "k{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetireReason {
    Expired,
    Budget,
    Operator,
    /// The organization holds the key as something other than `active` (deactivated, archived or
    /// expired in the Console, or by its own expiry).
    Organization,
}

impl std::fmt::Display for RetireReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RetireReason::Expired => "expired",
            RetireReason::Budget => "budget",
            RetireReason::Operator => "operator",
            RetireReason::Organization => "organization",
        })
    }
}

/// The Admin API side of a retirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteRetirement {
    /// The poller still has to set the key's status.
    Pending,
    /// The Admin API answered with this status.
    Confirmed { status: String },
    /// Written by older releases for a key retired before it was matched; read as `AwaitingMatch`
    /// ([`KeyPool::upgrade_saved_state`]).
    NotNeeded,
    /// The key has no Admin API id yet: matching goes on, and the status is set once it matches.
    AwaitingMatch,
}

/// The last failed attempt to set a retired key's Admin API status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetirementError {
    pub message: String,
    /// 401/403: retrying will not help until the operator fixes the admin key's rights.
    pub needs_operator: bool,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    pub reason: RetireReason,
    pub at: Timestamp,
    pub remote: RemoteRetirement,
    #[serde(default)]
    pub last_error: Option<RetirementError>,
}

/// What the organization said about a key at its last full read of the organization's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgKeyState {
    /// The Admin API status (`active`, `inactive`, `archived`, `expired`, or a newer one);
    /// `None` when the key's id was absent from the organization's list.
    pub status: Option<String>,
    /// The key's own expiry in the organization, if it has one.
    pub expires_at: Option<Timestamp>,
    pub read_at: Timestamp,
}

impl OrgKeyState {
    /// A status other than `active` stops the key (absent is not a status: it is only reported).
    pub fn stopped_status(&self) -> Option<&str> {
        self.status.as_deref().filter(|s| *s != "active")
    }
}

/// Whether a key was matched to its Admin API key object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    Unresolved { why: String },
    Resolved { api_key_id: String, workspace_id: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: KeyId,
    pub name: String,
    /// `None` once the operator removed the key.
    pub secret: Option<ApiKeySecret>,
    pub hint: KeyHint,
    pub resolution: Resolution,
    pub added_at: Timestamp,
    pub expires_at: Timestamp,
    pub budget: MicroUsd,
    pub node_cap: Option<u32>,
    pub spent: MicroUsd,
    pub retirement: Option<Retirement>,
    pub removed: bool,
    /// The organization's view of the key (status, own expiry), refreshed every poll.
    #[serde(default)]
    pub org: Option<OrgKeyState>,
    /// Matched after it was added: its usage since `added_at` must be fetched by key id.
    #[serde(default)]
    pub usage_backfill_pending: bool,
    /// Just added: withheld from issuance until the organization's key list has been read once
    /// (a key the organization already stopped must never be handed out), shown as "matching…".
    #[serde(default)]
    pub first_match_pending: bool,
}

impl KeyRecord {
    pub fn is_active(&self) -> bool {
        self.retirement.is_none()
    }

    /// Why this active key must be retired now, if it must.
    pub fn due_retirement(&self, now: Timestamp) -> Option<RetireReason> {
        if !self.is_active() {
            return None;
        }
        if self.org.as_ref().is_some_and(|o| o.stopped_status().is_some()) {
            Some(RetireReason::Organization)
        } else if now >= self.expires_at {
            Some(RetireReason::Expired)
        } else if self.spent >= self.budget {
            Some(RetireReason::Budget)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub secret: ApiKeySecret,
    pub name: String,
    pub lifetime_secs: u64,
    pub budget: MicroUsd,
    pub node_cap: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    pub node: NodeId,
    pub key: KeyId,
    pub issued_at: Timestamp,
}

/// A key handed to a node. Holds the secret: only for the p2p answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub key: KeyId,
    pub secret: ApiKeySecret,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// False when the node already held this key (the answer is sent again).
    pub first_time: bool,
}

/// Refusals of a p2p request. The Display strings are a documented wire contract.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum IssueError {
    #[error("no keys available")]
    NoKeysAvailable,
    #[error("key retired: {0}")]
    KeyRetired(RetireReason),
    #[error("invalid node name: {0}")]
    InvalidNode(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PoolError {
    #[error("this key is already in the pool ({0})")]
    DuplicateKey(KeyId),
    #[error("unknown key {0}")]
    UnknownKey(KeyId),
    #[error("key {0} is already retired")]
    AlreadyRetired(KeyId),
    #[error("key {0} is already removed")]
    AlreadyRemoved(KeyId),
    #[error("name must be 1 to 80 characters without control characters")]
    InvalidName,
    #[error("the name looks like an API key: give the key a name, never its secret")]
    NameLooksLikeKey,
    #[error("lifetime must be above zero and at most 10 years")]
    InvalidLifetime,
    #[error("budget must be above zero")]
    InvalidBudget,
    #[error("node cap must be at least 1")]
    InvalidNodeCap,
    #[error("stored issuance of node {node} names unknown key {key}")]
    IssuanceOfUnknownKey { node: NodeId, key: KeyId },
    #[error("node {0} appears twice in the stored issuances")]
    NodeIssuedTwice(NodeId),
    #[error("{0}")]
    ManualMatch(String),
}

const MAX_LIFETIME_SECS: u64 = 10 * 366 * 24 * 3600;

/// Node names as Hyperware writes them: lowercase letters, digits, `.`, `-`, `_`.
pub fn validate_node_name(node: &str) -> Result<(), IssueError> {
    let ok = !node.is_empty()
        && node.len() <= 255
        && !node.starts_with('.')
        && !node.ends_with('.')
        && node.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(IssueError::InvalidNode(node.chars().take(64).collect()))
    }
}

/// A time range of issuances (see [`KeyPool::issued_between`]).
pub struct IssueRange<'a> {
    log: &'a IssueLog,
    positions: Positions<'a>,
}

/// Issuances in issue order: a run of the whole log, or picked positions (one key's).
enum Positions<'a> {
    Run(std::ops::Range<usize>),
    Picked(&'a [IssuePos]),
}

impl<'a> IssueRange<'a> {
    pub fn len(&self) -> usize {
        match &self.positions {
            Positions::Run(run) => run.len(),
            Positions::Picked(picked) => picked.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position in issue order of the `i`-th issuance of the range.
    pub fn position(&self, i: usize) -> Option<IssuePos> {
        match &self.positions {
            Positions::Run(run) => (i < run.len()).then(|| (run.start + i) as IssuePos),
            Positions::Picked(picked) => picked.get(i).copied(),
        }
    }

    /// The `i`-th issuance of the range, in issue order.
    pub fn get(&self, i: usize) -> Option<&'a Issuance> {
        self.position(i).map(|pos| self.log.at(pos))
    }
}

/// Finds a text in node names as SQL's `LIKE '%text%'` did: ASCII letters in either case.
struct NameFinder<'a> {
    needle: &'a [u8],
    first: u8,
}

impl<'a> NameFinder<'a> {
    fn new(needle: &'a str) -> NameFinder<'a> {
        let needle = needle.as_bytes();
        NameFinder { needle, first: needle.first().map_or(0, u8::to_ascii_lowercase) }
    }

    fn is_in(&self, name: &str) -> bool {
        let (name, n) = (name.as_bytes(), self.needle.len());
        if n == 0 {
            return true;
        }
        // A first-byte test before comparing: names are short, so this beats a general searcher.
        n <= name.len()
            && (0..=name.len() - n).any(|i| name[i].to_ascii_lowercase() == self.first && name[i..i + n].eq_ignore_ascii_case(self.needle))
    }
}

/// A page of `ListNodes`: how many issuances match, and the page's positions, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuancePage {
    pub total: u64,
    pub positions: Vec<IssuePos>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPool {
    keys: BTreeMap<KeyId, KeyRecord>,
    next_id: u64,
    /// Every issuance in issue order, indexed by node and by key (rebuilt from SQLite).
    #[serde(skip)]
    issued: IssueLog,
    /// api key id → key (rebuilt).
    #[serde(skip)]
    by_api_id: HashMap<String, KeyId>,
    /// Whether keys not yet matched to an Admin API id may be issued (a setting, off by default:
    /// their spend cannot be tracked, so their budget cannot be enforced).
    #[serde(skip)]
    issue_unmatched: bool,
}

/// What one read of the organization's keys changed in the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgSync {
    /// Active keys retired because the organization stopped them, with the status it holds.
    pub retired: Vec<(KeyId, String)>,
    /// Keys matched to their Admin API id by this read.
    pub matched: Vec<KeyId>,
    /// Keys whose expiry the organization's own expiry brought forward.
    pub shortened: Vec<KeyId>,
    /// Retirements confirmed because the organization already holds the key as not active.
    pub confirmed: Vec<(KeyId, String)>,
    /// Retired keys the organization holds as active again: their status is set again.
    pub reactivated: Vec<KeyId>,
}

fn parse_org_time(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&chrono::Utc))
}

impl KeyPool {
    pub fn new() -> KeyPool {
        KeyPool::default()
    }

    pub fn add_key(&mut self, new: NewKey, now: Timestamp) -> Result<KeyId, PoolError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(PoolError::InvalidName);
        }
        // Names go to the audit log and every screen: a pasted secret must not.
        if name.to_ascii_lowercase().contains("sk-ant-") {
            return Err(PoolError::NameLooksLikeKey);
        }
        if new.lifetime_secs == 0 || new.lifetime_secs > MAX_LIFETIME_SECS {
            return Err(PoolError::InvalidLifetime);
        }
        if new.budget <= MicroUsd::ZERO {
            return Err(PoolError::InvalidBudget);
        }
        if new.node_cap == Some(0) {
            return Err(PoolError::InvalidNodeCap);
        }
        let hint = new.secret.hint();
        // Same secret, or a removed key with the same hint (its secret is gone: the hint is all we have).
        if let Some(existing) = self.keys.values().find(|r| match &r.secret {
            Some(secret) => secret == &new.secret,
            None => r.hint == hint,
        }) {
            return Err(PoolError::DuplicateKey(existing.id));
        }
        self.next_id += 1;
        let id = KeyId(self.next_id);
        let expires_at = now + chrono::TimeDelta::seconds(new.lifetime_secs as i64);
        self.keys.insert(
            id,
            KeyRecord {
                id,
                name: name.to_string(),
                secret: Some(new.secret),
                hint,
                resolution: Resolution::Unresolved { why: "not checked yet".to_string() },
                added_at: now,
                expires_at,
                budget: new.budget,
                node_cap: new.node_cap,
                spent: MicroUsd::ZERO,
                retirement: None,
                removed: false,
                org: None,
                usage_backfill_pending: false,
                first_match_pending: true,
            },
        );
        Ok(id)
    }

    /// The first read of the organization's keys after `key` was added failed: the key falls
    /// back to the rule for unmatched keys, and the next poll matches it.
    pub fn end_first_match(&mut self, key: KeyId) {
        if let Some(record) = self.keys.get_mut(&key) {
            record.first_match_pending = false;
        }
    }

    /// Brings state saved by an older release up to date: retirements it called "not needed"
    /// (retired before the key was matched) wait for the match instead.
    pub fn upgrade_saved_state(&mut self) {
        for record in self.keys.values_mut() {
            if let Some(r) = record.retirement.as_mut() {
                if r.remote == RemoteRetirement::NotNeeded {
                    r.remote = RemoteRetirement::AwaitingMatch;
                }
            }
        }
    }

    pub fn set_issue_unmatched(&mut self, allowed: bool) {
        self.issue_unmatched = allowed;
    }

    /// Rebuilds the node maps from stored issuances, given in the order they were issued (at
    /// start, after deserialising). On error nothing changes.
    pub fn restore_issuances(&mut self, issuances: impl IntoIterator<Item = Issuance>) -> Result<(), PoolError> {
        let issuances: Vec<Issuance> = issuances.into_iter().collect();
        if let Some(unknown) = issuances.iter().find(|i| !self.keys.contains_key(&i.key)) {
            return Err(PoolError::IssuanceOfUnknownKey { node: unknown.node.clone(), key: unknown.key });
        }
        self.issued = IssueLog::from_ordered(issuances).map_err(PoolError::NodeIssuedTwice)?;
        self.rebuild_api_index();
        Ok(())
    }

    fn rebuild_api_index(&mut self) {
        self.by_api_id = self
            .keys
            .values()
            .filter_map(|r| match &r.resolution {
                Resolution::Resolved { api_key_id, .. } => Some((api_key_id.clone(), r.id)),
                Resolution::Unresolved { .. } => None,
            })
            .collect();
    }

    fn is_eligible(&self, record: &KeyRecord, now: Timestamp) -> bool {
        record.is_active()
            && !record.first_match_pending
            && record.due_retirement(now).is_none()
            && record.secret.is_some()
            && (self.issue_unmatched || matches!(record.resolution, Resolution::Resolved { .. }))
            // Absent from the organization's last full list: its usage cannot be fetched.
            && !record.org.as_ref().is_some_and(|o| o.status.is_none())
            && record
                .node_cap
                .map_or(true, |cap| self.node_count_of(record.id) < cap as usize)
    }

    /// Keys that may be issued to a new node right now.
    pub fn is_eligible_key(&self, key: KeyId, now: Timestamp) -> bool {
        self.keys.get(&key).is_some_and(|record| self.is_eligible(record, now))
    }

    pub fn eligible_keys(&self, now: Timestamp) -> Vec<KeyId> {
        self.keys.values().filter(|r| self.is_eligible(r, now)).map(|r| r.id).collect()
    }

    /// SPEC §4: one key per node, ever; the same key again while it is active.
    pub fn issue_to(&mut self, node: &str, now: Timestamp, rng: &mut impl Rng) -> Result<Issued, IssueError> {
        validate_node_name(node)?;
        if let Some(issuance) = self.issued.get(node) {
            let record = &self.keys[&issuance.key];
            if let Some(retirement) = &record.retirement {
                return Err(IssueError::KeyRetired(retirement.reason));
            }
            if let Some(reason) = record.due_retirement(now) {
                return Err(IssueError::KeyRetired(reason));
            }
            let secret = record.secret.clone().ok_or(IssueError::KeyRetired(RetireReason::Operator))?;
            return Ok(Issued {
                key: record.id,
                secret,
                issued_at: issuance.issued_at,
                expires_at: record.expires_at,
                first_time: false,
            });
        }
        let eligible = self.eligible_keys(now);
        if eligible.is_empty() {
            return Err(IssueError::NoKeysAvailable);
        }
        let key = eligible[rng.gen_range(0..eligible.len())];
        let record = &self.keys[&key];
        let issued = Issued {
            key,
            secret: record.secret.clone().expect("eligible keys hold their secret"),
            issued_at: now,
            expires_at: record.expires_at,
            first_time: true,
        };
        self.issued.push(Issuance { node: node.to_string(), key, issued_at: now });
        Ok(issued)
    }

    /// Takes back an issuance that could not be persisted.
    pub fn undo_issue(&mut self, node: &str) {
        self.issued.remove(node);
    }

    pub fn retire(&mut self, key: KeyId, reason: RetireReason, now: Timestamp) -> Result<(), PoolError> {
        let record = self.keys.get_mut(&key).ok_or(PoolError::UnknownKey(key))?;
        if record.retirement.is_some() {
            return Err(PoolError::AlreadyRetired(key));
        }
        let remote = match (record.org.as_ref().and_then(OrgKeyState::stopped_status), &record.resolution) {
            (Some(status), Resolution::Resolved { .. }) => RemoteRetirement::Confirmed { status: status.to_string() },
            (_, Resolution::Resolved { .. }) => RemoteRetirement::Pending,
            (_, Resolution::Unresolved { .. }) => RemoteRetirement::AwaitingMatch,
        };
        record.retirement = Some(Retirement { reason, at: now, remote, last_error: None });
        Ok(())
    }

    /// The earliest expiry among active keys, for the issuer's own expiry timer.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.keys.values().filter(|r| r.is_active()).map(|r| r.expires_at).min()
    }

    pub fn due_retirements(&self, now: Timestamp) -> Vec<(KeyId, RetireReason)> {
        self.keys.values().filter_map(|r| r.due_retirement(now).map(|reason| (r.id, reason))).collect()
    }

    /// Retires every key that is due; returns them.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<(KeyId, RetireReason)> {
        let due = self.due_retirements(now);
        for (key, reason) in &due {
            let _ = self.retire(*key, *reason, now);
        }
        due
    }

    /// Retires the key (operator) if active and erases its secret; the record stays.
    pub fn remove(&mut self, key: KeyId, now: Timestamp) -> Result<(), PoolError> {
        let record = self.keys.get(&key).ok_or(PoolError::UnknownKey(key))?;
        if record.removed {
            return Err(PoolError::AlreadyRemoved(key));
        }
        if record.is_active() {
            self.retire(key, RetireReason::Operator, now)?;
        }
        let record = self.keys.get_mut(&key).expect("checked above");
        record.secret = None;
        record.removed = true;
        Ok(())
    }

    pub fn set_spent(&mut self, key: KeyId, spent: MicroUsd) {
        if let Some(record) = self.keys.get_mut(&key) {
            record.spent = spent;
        }
    }

    /// Records whether the key matched its Admin API id. A first match asks for the key's usage
    /// since it was added (it was not fetched while the id was unknown), and a retirement decided
    /// before the match becomes due at the Admin API. A resolved key never goes back to unresolved
    /// (an id once matched stays; a later failed lookup changes nothing).
    pub fn set_resolution(&mut self, key: KeyId, resolution: Resolution) {
        let Some(record) = self.keys.get_mut(&key) else { return };
        match (&record.resolution, &resolution) {
            (Resolution::Resolved { .. }, Resolution::Unresolved { .. }) => return,
            (Resolution::Unresolved { .. }, Resolution::Resolved { .. }) => {
                record.usage_backfill_pending = true;
                if let Some(r) = record.retirement.as_mut() {
                    if matches!(r.remote, RemoteRetirement::AwaitingMatch | RemoteRetirement::NotNeeded) {
                        r.remote = RemoteRetirement::Pending;
                    }
                }
            }
            _ => {}
        }
        record.resolution = resolution;
        self.rebuild_api_index();
    }

    /// The key's usage since it was added has been fetched by its id.
    pub fn usage_backfilled(&mut self, key: KeyId) {
        if let Some(record) = self.keys.get_mut(&key) {
            record.usage_backfill_pending = false;
        }
    }

    /// Keys whose usage since they were added must be fetched, with their Admin API id.
    pub fn pending_backfills(&self) -> Vec<(KeyId, String, Timestamp)> {
        self.keys
            .values()
            .filter(|r| r.usage_backfill_pending)
            .filter_map(|r| match &r.resolution {
                Resolution::Resolved { api_key_id, .. } => Some((r.id, api_key_id.clone(), r.added_at)),
                Resolution::Unresolved { .. } => None,
            })
            .collect()
    }

    /// Keys still to be matched: active ones, and retired ones whose Admin API status is still to
    /// be set. Removed keys keep their hint, which is all matching needs.
    pub fn keys_to_match(&self) -> Vec<KeyId> {
        self.keys
            .values()
            .filter(|r| matches!(r.resolution, Resolution::Unresolved { .. }))
            .filter(|r| match &r.retirement {
                None => true,
                Some(ret) => matches!(ret.remote, RemoteRetirement::AwaitingMatch | RemoteRetirement::NotNeeded),
            })
            .map(|r| r.id)
            .collect()
    }

    /// Applies one full read of the organization's keys (every page): matches unmatched keys by
    /// their hint, records each matched key's status and own expiry, retires active keys the
    /// organization has stopped (reason `organization`, nothing to call: already not active),
    /// confirms pending retirements of keys it already holds as not active, and brings an expiry
    /// forward to the organization's own.
    pub fn apply_org_keys(&mut self, org_keys: &[crate::admin_api::ApiKeyObject], now: Timestamp) -> OrgSync {
        let mut sync = OrgSync::default();
        for record in self.keys.values_mut() {
            record.first_match_pending = false;
        }
        for key in self.keys_to_match() {
            let hint = self.keys[&key].hint.clone();
            // Two pool keys with one hint cannot be told apart by it: the operator matches by hand.
            if self.keys.values().any(|r| r.id != key && r.hint == hint && matches!(r.resolution, Resolution::Unresolved { .. })) {
                let why = "another key in the pool has the same hint: match it by hand".to_string();
                self.set_resolution(key, Resolution::Unresolved { why });
                continue;
            }
            let resolution = crate::admin_api::resolve_hint(&hint, org_keys);
            let matched = matches!(resolution, Resolution::Resolved { .. });
            if let Resolution::Resolved { api_key_id, .. } = &resolution {
                // An id already held by another pool key is not a match for this one.
                if self.by_api_id.get(api_key_id).is_some_and(|other| *other != key) {
                    continue;
                }
            }
            self.set_resolution(key, resolution);
            if matched {
                sync.matched.push(key);
            }
        }
        let by_id: HashMap<&str, &crate::admin_api::ApiKeyObject> = org_keys.iter().map(|k| (k.id.as_str(), k)).collect();
        let ids: Vec<(KeyId, String)> = self
            .keys
            .values()
            .filter_map(|r| match &r.resolution {
                Resolution::Resolved { api_key_id, .. } => Some((r.id, api_key_id.clone())),
                Resolution::Unresolved { .. } => None,
            })
            .collect();
        for (key, api_key_id) in ids {
            let found = by_id.get(api_key_id.as_str());
            let state = OrgKeyState {
                status: found.map(|k| k.status.to_string()),
                expires_at: found.and_then(|k| parse_org_time(k.expires_at.as_deref())),
                read_at: now,
            };
            let record = self.keys.get_mut(&key).expect("listed above");
            if let (Some(org_expiry), true) = (state.expires_at, record.is_active()) {
                if org_expiry < record.expires_at {
                    record.expires_at = org_expiry;
                    sync.shortened.push(key);
                }
            }
            let stopped = state.stopped_status().map(str::to_string);
            record.org = Some(state);
            match (stopped, record.retirement.as_mut()) {
                (Some(status), None) => {
                    record.retirement = Some(Retirement {
                        reason: RetireReason::Organization,
                        at: now,
                        remote: RemoteRetirement::Confirmed { status: status.clone() },
                        last_error: None,
                    });
                    sync.retired.push((key, status));
                }
                (Some(status), Some(r)) if r.remote == RemoteRetirement::Pending => {
                    r.remote = RemoteRetirement::Confirmed { status: status.clone() };
                    r.last_error = None;
                    sync.confirmed.push((key, status));
                }
                // Re-enabled in the Console after its retirement was confirmed: deactivate it again.
                (None, Some(r)) if matches!(r.remote, RemoteRetirement::Confirmed { .. }) && record.org.as_ref().is_some_and(|o| o.status.is_some()) => {
                    r.remote = RemoteRetirement::Pending;
                    sync.reactivated.push(key);
                }
                _ => {}
            }
        }
        sync
    }

    /// The operator matches a key by hand to `api_key_id`, checked against the organization's
    /// keys: the id must exist, be held by no other pool key, and its hint (when the organization
    /// gives one) must be this key's.
    pub fn match_by_hand(
        &mut self,
        key: KeyId,
        api_key_id: &str,
        org_keys: &[crate::admin_api::ApiKeyObject],
        now: Timestamp,
    ) -> Result<OrgSync, PoolError> {
        let record = self.keys.get(&key).ok_or(PoolError::UnknownKey(key))?;
        let refuse = |why: String| Err(PoolError::ManualMatch(why));
        if let Resolution::Resolved { api_key_id: held, .. } = &record.resolution {
            return refuse(format!("key {key} is already matched to {held}"));
        }
        let Some(org_key) = org_keys.iter().find(|k| k.id == api_key_id) else {
            return refuse(format!("the organization has no API key {api_key_id}"));
        };
        if let Some(other) = self.by_api_id.get(api_key_id) {
            return refuse(format!("{api_key_id} is already matched to key {other}"));
        }
        if let Some(h) = org_key.partial_key_hint.as_deref() {
            if !record.hint.matches(h) {
                return refuse(format!("{api_key_id} belongs to another secret (its hint is {h}, this key's is {})", record.hint));
            }
        }
        let resolution = Resolution::Resolved { api_key_id: org_key.id.clone(), workspace_id: org_key.workspace_id.clone() };
        self.set_resolution(key, resolution);
        let mut sync = self.apply_org_keys(org_keys, now);
        sync.matched.push(key);
        Ok(sync)
    }

    pub fn confirm_remote_retirement(&mut self, key: KeyId, status: String) {
        if let Some(retirement) = self.keys.get_mut(&key).and_then(|r| r.retirement.as_mut()) {
            retirement.remote = RemoteRetirement::Confirmed { status };
            retirement.last_error = None;
        }
    }

    /// Keeps the last failure of a pending retirement, for the operator (the poller retries).
    pub fn note_retirement_error(&mut self, key: KeyId, error: RetirementError) {
        if let Some(retirement) = self.keys.get_mut(&key).and_then(|r| r.retirement.as_mut()) {
            if retirement.remote == RemoteRetirement::Pending {
                retirement.last_error = Some(error);
            }
        }
    }

    pub fn pending_remote_retirements(&self) -> Vec<KeyId> {
        self.keys
            .values()
            .filter(|r| matches!(r.retirement, Some(Retirement { remote: RemoteRetirement::Pending, .. })))
            .map(|r| r.id)
            .collect()
    }

    pub fn key(&self, id: KeyId) -> Option<&KeyRecord> {
        self.keys.get(&id)
    }

    pub fn keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values()
    }

    pub fn active_ids(&self) -> BTreeSet<KeyId> {
        self.keys.values().filter(|r| r.is_active()).map(|r| r.id).collect()
    }

    pub fn historical_ids(&self) -> BTreeSet<KeyId> {
        self.keys.values().filter(|r| !r.is_active()).map(|r| r.id).collect()
    }

    pub fn issuance(&self, node: &str) -> Option<&Issuance> {
        self.issued.get(node)
    }

    pub fn issuances(&self) -> impl Iterator<Item = &Issuance> {
        self.issued.all().iter()
    }

    /// Every issuance, indexed by node and key, in issue order.
    pub fn issue_log(&self) -> &IssueLog {
        &self.issued
    }

    /// Issuances of one key (or of all keys) in issue order — time order, as the issuer's clock
    /// only moves forward.
    pub fn issuances_in_order(&self, key: Option<KeyId>) -> Vec<&Issuance> {
        match key {
            Some(k) => self.issued.of_key(k).iter().map(|&pos| self.issued.at(pos)).collect(),
            None => self.issued.all().iter().collect(),
        }
    }

    /// Issuances of one key (or all) issued within [from, to], found by binary search over issue
    /// order without touching the rest.
    pub fn issued_between(&self, key: Option<KeyId>, from: Timestamp, to: Timestamp) -> IssueRange<'_> {
        let log = &self.issued;
        let positions = match key {
            Some(k) => {
                let picked = log.of_key(k);
                let start = picked.partition_point(|&p| log.at(p).issued_at < from);
                let end = picked.partition_point(|&p| log.at(p).issued_at <= to).max(start);
                Positions::Picked(&picked[start..end])
            }
            None => {
                let all = log.all();
                let start = all.partition_point(|i| i.issued_at < from);
                let end = all.partition_point(|i| i.issued_at <= to).max(start);
                Positions::Run(start..end)
            }
        };
        IssueRange { log, positions }
    }

    /// A page of issuances, newest first, of one key or all, whose node name contains `search`
    /// (empty: every node): the matching count and the page's positions. Without a search it
    /// reads only the page; a search reads every name of the selection once.
    pub fn newest_first(&self, key: Option<KeyId>, search: Option<&str>, offset: u64, limit: u64) -> IssuancePage {
        let log = &self.issued;
        let count = match key {
            Some(k) => log.of_key(k).len(),
            None => log.len(),
        };
        // The i-th newest issuance of the selection.
        let nth_newest = |i: usize| -> IssuePos {
            match key {
                Some(k) => log.of_key(k)[count - 1 - i],
                None => (count - 1 - i) as IssuePos,
            }
        };
        let (offset, limit) = (offset.min(usize::MAX as u64) as usize, limit.min(usize::MAX as u64) as usize);
        match search.filter(|s| !s.is_empty()) {
            None => IssuancePage {
                total: count as u64,
                positions: (offset.min(count)..offset.saturating_add(limit).min(count)).map(nth_newest).collect(),
            },
            // Every name: one pass over the log's names buffer.
            Some(search) if key.is_none() => {
                let found = log.containing(search);
                let total = found.len();
                IssuancePage {
                    total: total as u64,
                    positions: found.iter().rev().skip(offset).take(limit).copied().collect(),
                }
            }
            // One key's names: few enough to test one by one.
            Some(search) => {
                let finder = NameFinder::new(search);
                let mut page = IssuancePage::default();
                for pos in (0..count).map(nth_newest).filter(|&pos| finder.is_in(&log.at(pos).node)) {
                    if page.total as usize >= offset && page.positions.len() < limit {
                        page.positions.push(pos);
                    }
                    page.total += 1;
                }
                page
            }
        }
    }

    pub fn nodes_of(&self, key: KeyId) -> impl Iterator<Item = &NodeId> {
        self.issued.of_key(key).iter().map(|&pos| &self.issued.at(pos).node)
    }

    pub fn node_count_of(&self, key: KeyId) -> usize {
        self.issued.of_key(key).len()
    }

    pub fn issued_node_count(&self) -> usize {
        self.issued.len()
    }

    pub fn key_by_api_id(&self, api_key_id: &str) -> Option<KeyId> {
        self.by_api_id.get(api_key_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn secret(n: u32) -> ApiKeySecret {
        ApiKeySecret::parse(&format!("sk-ant-api03-TEST{n:04}abcdefghijklmnopqrstuvwxyz{n:04}")).unwrap()
    }

    /// Most tests are about issuance itself: let unmatched keys be issued.
    fn pool_issuing_unmatched() -> KeyPool {
        let mut pool = KeyPool::new();
        pool.set_issue_unmatched(true);
        pool
    }

    /// Adds a key whose first look-up in the organization is over (it did not match).
    fn add_issuable(pool: &mut KeyPool, new: NewKey, at: Timestamp) -> KeyId {
        let key = pool.add_key(new, at).unwrap();
        pool.end_first_match(key);
        key
    }

    #[test]
    fn a_new_key_is_withheld_until_its_first_look_up_in_the_organization() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pool = pool_issuing_unmatched();
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        assert_eq!(pool.issue_to("alice.os", t(1), &mut rng), Err(IssueError::NoKeysAvailable));
        // The organization already stopped it: it is retired by the first read, never issued.
        let sync = pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "inactive")], t(2));
        assert_eq!(sync.retired, vec![(k1, "inactive".to_string())]);
        assert_eq!(pool.issue_to("alice.os", t(3), &mut rng), Err(IssueError::NoKeysAvailable));
        // A key the organization does not list (yet) is issued as unmatched once the read is over.
        let k2 = pool.add_key(new_key(2), t(4)).unwrap();
        assert!(pool.key(k2).unwrap().first_match_pending);
        pool.apply_org_keys(&[], t(5));
        assert!(!pool.key(k2).unwrap().first_match_pending);
        assert_eq!(pool.issue_to("alice.os", t(6), &mut rng).map(|i| i.key), Ok(k2));
        // When the read fails, the key falls back to the unmatched rule.
        let k3 = pool.add_key(new_key(3), t(7)).unwrap();
        pool.end_first_match(k3);
        assert!(pool.eligible_keys(t(8)).contains(&k3));
    }

    fn org_key(id: &str, n: u32, status: &str) -> crate::admin_api::ApiKeyObject {
        serde_json::from_value(serde_json::json!({"id": id, "status": status, "partial_key_hint": format!("sk-ant-api03-TES...{n:04}")})).unwrap()
    }

    #[test]
    fn unmatched_keys_are_not_issued_unless_allowed() {
        let mut pool = KeyPool::new();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        assert_eq!(pool.issue_to("alice.os", t(1), &mut rng), Err(IssueError::NoKeysAvailable));
        let sync = pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "active")], t(2));
        assert_eq!(sync.matched, vec![k1]);
        assert_eq!(pool.pending_backfills(), vec![(k1, "apikey_TEST01".to_string(), t(0))]);
        assert!(pool.issue_to("alice.os", t(3), &mut rng).is_ok());
        pool.usage_backfilled(k1);
        assert!(pool.pending_backfills().is_empty());
    }

    #[test]
    fn the_organization_stops_keys_and_shortens_expiry() {
        let mut pool = KeyPool::new();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        let k2 = pool.add_key(new_key(2), t(0)).unwrap();
        let mut active2 = org_key("apikey_TEST02", 2, "active");
        active2.expires_at = Some("2027-01-15T08:00:40Z".to_string());
        pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "active"), org_key("apikey_TEST02", 2, "active")], t(1));
        pool.issue_to("alice.os", t(2), &mut rng).unwrap();
        let holder_key = pool.issuance("alice.os").unwrap().key;
        // The organization deactivates key 1 and gives key 2 an expiry 40 s after t(0).
        let mut sync = pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "inactive"), active2], t(3));
        assert_eq!(sync.retired, vec![(k1, "inactive".to_string())]);
        assert_eq!(sync.shortened, vec![k2]);
        let r1 = pool.key(k1).unwrap().retirement.clone().unwrap();
        assert_eq!((r1.reason, r1.remote), (RetireReason::Organization, RemoteRetirement::Confirmed { status: "inactive".into() }));
        assert_eq!(pool.key(k2).unwrap().expires_at, t(40));
        if holder_key == k1 {
            assert_eq!(pool.issue_to("alice.os", t(4), &mut rng), Err(IssueError::KeyRetired(RetireReason::Organization)));
        }
        assert_eq!(IssueError::KeyRetired(RetireReason::Organization).to_string(), "key retired: organization");
        // Key 2 expires on its shortened date; a pending retirement of a key the organization
        // already holds as expired is confirmed without a call.
        assert_eq!(pool.sweep(t(41)), vec![(k2, RetireReason::Expired)]);
        assert_eq!(pool.pending_remote_retirements(), vec![k2]);
        sync = pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "inactive"), org_key("apikey_TEST02", 2, "expired")], t(42));
        assert_eq!(sync.confirmed, vec![(k2, "expired".to_string())]);
        assert!(pool.pending_remote_retirements().is_empty());
    }

    #[test]
    fn re_enabled_missing_and_twin_keys_are_handled_safely() {
        let mut pool = KeyPool::new();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        let k2 = pool.add_key(new_key(2), t(0)).unwrap();
        pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "active"), org_key("apikey_TEST02", 2, "active")], t(1));
        // Key 1 retired and confirmed, then re-enabled in the Console: its status is set again.
        pool.retire(k1, RetireReason::Operator, t(2)).unwrap();
        pool.confirm_remote_retirement(k1, "inactive".into());
        let sync = pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "active"), org_key("apikey_TEST02", 2, "active")], t(3));
        assert_eq!(sync.reactivated, vec![k1]);
        assert_eq!(pool.pending_remote_retirements(), vec![k1]);
        // Key 2 absent from a full list: reported, never retired, and not issued meanwhile.
        let sync = pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "inactive")], t(4));
        assert!(sync.retired.is_empty());
        assert!(pool.key(k2).unwrap().is_active());
        assert_eq!(pool.issue_to("alice.os", t(5), &mut rng), Err(IssueError::NoKeysAvailable));
        // Two pool keys with one hint are not matched by it.
        let mut twins = KeyPool::new();
        let a = twins.add_key(new_key(7), t(0)).unwrap();
        let other = ApiKeySecret::parse("sk-ant-api03-TESxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0007").unwrap();
        let b = twins.add_key(NewKey { secret: other, ..new_key(7) }, t(0)).unwrap();
        twins.apply_org_keys(&[org_key("apikey_TEST07", 7, "active")], t(1));
        for k in [a, b] {
            assert!(matches!(&twins.key(k).unwrap().resolution, Resolution::Unresolved { why } if why.contains("same hint")));
        }
    }

    #[test]
    fn a_key_retired_before_it_matched_is_deactivated_once_matched() {
        let mut pool = KeyPool::new();
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        pool.remove(k1, t(1)).unwrap();
        assert_eq!(pool.key(k1).unwrap().retirement.as_ref().unwrap().remote, RemoteRetirement::AwaitingMatch);
        assert_eq!(pool.keys_to_match(), vec![k1]);
        assert!(pool.pending_remote_retirements().is_empty());
        pool.apply_org_keys(&[org_key("apikey_TEST01", 1, "active")], t(2));
        assert_eq!(pool.pending_remote_retirements(), vec![k1]);
        assert!(pool.keys_to_match().is_empty());
    }

    #[test]
    fn old_not_needed_retirements_wait_for_a_match_after_upgrade() {
        let mut pool = KeyPool::new();
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        pool.retire(k1, RetireReason::Operator, t(1)).unwrap();
        pool.keys.get_mut(&k1).unwrap().retirement.as_mut().unwrap().remote = RemoteRetirement::NotNeeded;
        pool.upgrade_saved_state();
        assert_eq!(pool.key(k1).unwrap().retirement.as_ref().unwrap().remote, RemoteRetirement::AwaitingMatch);
    }

    #[test]
    fn matching_by_hand_is_checked_against_the_organization() {
        let mut pool = KeyPool::new();
        let k1 = pool.add_key(new_key(1), t(0)).unwrap();
        let k2 = pool.add_key(new_key(2), t(0)).unwrap();
        // Two organization keys share key 1's hint: matching by hint fails, by hand it works.
        let org = [
            org_key("apikey_A", 1, "active"),
            org_key("apikey_B", 1, "active"),
            org_key("apikey_C", 2, "active"),
            org_key("apikey_D", 3, "active"),
        ];
        pool.apply_org_keys(&org, t(1));
        assert!(matches!(pool.key(k1).unwrap().resolution, Resolution::Unresolved { .. }));
        let err = |r: Result<OrgSync, PoolError>| r.unwrap_err().to_string();
        assert!(err(pool.match_by_hand(k1, "apikey_Z", &org, t(2))).contains("no API key apikey_Z"));
        assert!(err(pool.match_by_hand(k1, "apikey_D", &org, t(2))).contains("belongs to another secret"));
        assert!(err(pool.match_by_hand(k1, "apikey_C", &org, t(2))).contains("already matched to key"));
        assert!(err(pool.match_by_hand(k2, "apikey_A", &org, t(2))).contains("already matched"));
        pool.match_by_hand(k1, "apikey_B", &org, t(2)).unwrap();
        assert_eq!(pool.key_by_api_id("apikey_B"), Some(k1));
        assert!(err(pool.match_by_hand(k1, "apikey_A", &org, t(3))).contains("already matched"));
    }

    fn new_key(n: u32) -> NewKey {
        NewKey { secret: secret(n), name: format!("key {n}"), lifetime_secs: 3600, budget: MicroUsd::from_usd(5), node_cap: None }
    }

    #[test]
    fn one_key_per_node_and_same_key_again() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        add_issuable(&mut pool, new_key(1), t(0));
        add_issuable(&mut pool, new_key(2), t(0));
        let first = pool.issue_to("alice.os", t(1), &mut rng).unwrap();
        assert!(first.first_time);
        let again = pool.issue_to("alice.os", t(2), &mut rng).unwrap();
        assert_eq!((again.key, again.issued_at, again.first_time), (first.key, first.issued_at, false));
        assert_eq!(pool.issued_node_count(), 1);
    }

    #[test]
    fn empty_pool_does_not_record_the_node() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(pool.issue_to("alice.os", t(0), &mut rng), Err(IssueError::NoKeysAvailable));
        assert!(pool.issuance("alice.os").is_none());
        assert_eq!(IssueError::NoKeysAvailable.to_string(), "no keys available");
    }

    #[test]
    fn retired_key_gives_an_error_and_never_a_second_key() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        pool.issue_to("alice.os", t(1), &mut rng).unwrap();
        pool.retire(k1, RetireReason::Operator, t(2)).unwrap();
        add_issuable(&mut pool, new_key(2), t(3));
        let err = pool.issue_to("alice.os", t(4), &mut rng).unwrap_err();
        assert_eq!(err.to_string(), "key retired: operator");
        assert!(pool.issue_to("bob.os", t(4), &mut rng).is_ok());
    }

    #[test]
    fn expiry_and_budget_stop_issuing_at_once() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        pool.issue_to("alice.os", t(1), &mut rng).unwrap();
        assert_eq!(pool.issue_to("alice.os", t(3600), &mut rng), Err(IssueError::KeyRetired(RetireReason::Expired)));
        assert_eq!(pool.issue_to("bob.os", t(3600), &mut rng), Err(IssueError::NoKeysAvailable));
        let k2 = add_issuable(&mut pool, new_key(2), t(3600));
        pool.set_spent(k2, MicroUsd::from_usd(5));
        assert_eq!(pool.issue_to("bob.os", t(3601), &mut rng), Err(IssueError::NoKeysAvailable));
        let swept = pool.sweep(t(3601));
        assert_eq!(swept, vec![(k1, RetireReason::Expired), (k2, RetireReason::Budget)]);
        assert!(pool.active_ids().is_empty());
    }

    #[test]
    fn node_cap_limits_nodes_per_key() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        add_issuable(&mut pool, NewKey { node_cap: Some(2), ..new_key(1) }, t(0));
        assert!(pool.issue_to("a.os", t(1), &mut rng).is_ok());
        assert!(pool.issue_to("b.os", t(1), &mut rng).is_ok());
        assert_eq!(pool.issue_to("c.os", t(1), &mut rng), Err(IssueError::NoKeysAvailable));
    }

    #[test]
    fn add_refuses_duplicates_and_bad_input() {
        let mut pool = pool_issuing_unmatched();
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        assert_eq!(pool.add_key(new_key(1), t(0)), Err(PoolError::DuplicateKey(k1)));
        pool.remove(k1, t(1)).unwrap();
        assert_eq!(pool.add_key(new_key(1), t(2)), Err(PoolError::DuplicateKey(k1)));
        assert_eq!(pool.add_key(NewKey { name: " ".into(), ..new_key(2) }, t(0)), Err(PoolError::InvalidName));
        let pasted = secret(3).expose().to_string();
        assert_eq!(pool.add_key(NewKey { name: pasted, ..new_key(2) }, t(0)), Err(PoolError::NameLooksLikeKey));
        assert_eq!(pool.add_key(NewKey { lifetime_secs: 0, ..new_key(2) }, t(0)), Err(PoolError::InvalidLifetime));
        assert_eq!(pool.add_key(NewKey { budget: MicroUsd::ZERO, ..new_key(2) }, t(0)), Err(PoolError::InvalidBudget));
        assert_eq!(pool.add_key(NewKey { node_cap: Some(0), ..new_key(2) }, t(0)), Err(PoolError::InvalidNodeCap));
        assert_eq!(pool.keys().count(), 1);
        assert!(!format!("{:?}", pool.add_key(new_key(1), t(0))).contains("TEST0001abc"));
    }

    #[test]
    fn removal_keeps_a_tombstone() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        pool.issue_to("alice.os", t(1), &mut rng).unwrap();
        pool.remove(k1, t(2)).unwrap();
        let record = pool.key(k1).unwrap();
        assert!(record.removed && record.secret.is_none());
        assert_eq!(pool.issue_to("alice.os", t(3), &mut rng), Err(IssueError::KeyRetired(RetireReason::Operator)));
        assert_eq!(pool.remove(k1, t(3)), Err(PoolError::AlreadyRemoved(k1)));
    }

    #[test]
    fn invalid_node_names_are_refused_without_recording() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        add_issuable(&mut pool, new_key(1), t(0));
        for bad in ["", "Alice.os", ".os", "a os", "a.os.", "x'; drop"] {
            assert!(matches!(pool.issue_to(bad, t(1), &mut rng), Err(IssueError::InvalidNode(_))), "{bad:?}");
        }
        assert_eq!(pool.issued_node_count(), 0);
    }

    #[test]
    fn resolution_indexes_and_remote_retirement() {
        let mut pool = pool_issuing_unmatched();
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        pool.retire(k1, RetireReason::Operator, t(1)).unwrap();
        assert!(pool.pending_remote_retirements().is_empty());
        pool.set_resolution(k1, Resolution::Resolved { api_key_id: "apikey_TEST01".into(), workspace_id: None });
        assert_eq!(pool.key_by_api_id("apikey_TEST01"), Some(k1));
        assert_eq!(pool.pending_remote_retirements(), vec![k1]);
        pool.confirm_remote_retirement(k1, "inactive".into());
        assert!(pool.pending_remote_retirements().is_empty());
    }

    #[test]
    fn issued_between_finds_time_ranges() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        for i in 0..10 {
            pool.issue_to(&format!("n{i}.os"), t(i * 10), &mut rng).unwrap();
        }
        let range = pool.issued_between(None, t(25), t(60));
        assert_eq!(range.len(), 4);
        assert_eq!(range.get(0).unwrap().node, "n3.os");
        assert_eq!(range.get(3).unwrap().node, "n6.os");
        assert_eq!(pool.issued_between(Some(k1), t(0), t(1000)).len(), 10);
        assert!(pool.issued_between(Some(KeyId(9)), t(0), t(1000)).is_empty());
        assert!(pool.issued_between(None, t(61), t(62)).is_empty());
    }

    #[test]
    fn pages_go_newest_first_by_key_and_by_name() {
        let mut pool = pool_issuing_unmatched();
        let mut rng = StdRng::seed_from_u64(1);
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        let k2 = add_issuable(&mut pool, new_key(2), t(0));
        let rows: Vec<Issuance> = (0..10)
            .map(|i| Issuance { node: format!("n{i}_x.os"), key: if i % 2 == 0 { k1 } else { k2 }, issued_at: t(i) })
            .collect();
        pool.restore_issuances(rows).unwrap();
        let names = |page: &IssuancePage| page.positions.iter().map(|&p| pool.issue_log().at(p).node.clone()).collect::<Vec<_>>();
        let page = pool.newest_first(None, None, 0, 3);
        assert_eq!((page.total, names(&page)), (10, vec!["n9_x.os".to_string(), "n8_x.os".into(), "n7_x.os".into()]));
        let last = pool.newest_first(None, None, 8, 100);
        assert_eq!(names(&last), vec!["n1_x.os", "n0_x.os"]);
        assert!(pool.newest_first(None, None, 50, 10).positions.is_empty());
        let of_k2 = pool.newest_first(Some(k2), None, 1, 2);
        assert_eq!((of_k2.total, names(&of_k2)), (5, vec!["n7_x.os".to_string(), "n5_x.os".into()]));
        // A search is a literal substring, ASCII letters in either case (as SQL's LIKE was).
        let found = pool.newest_first(None, Some("N1_"), 0, 10);
        assert_eq!((found.total, names(&found)), (1, vec!["n1_x.os".to_string()]));
        assert_eq!(pool.newest_first(None, Some("%"), 0, 10).total, 0);
        assert_eq!(pool.newest_first(None, Some("_x"), 0, 10).total, 10);
        let searched = pool.newest_first(Some(k1), Some("x.os"), 1, 2);
        assert_eq!((searched.total, names(&searched)), (5, vec!["n6_x.os".to_string(), "n4_x.os".into()]));
        assert_eq!(pool.newest_first(None, Some(""), 0, 1).total, 10);
        // Issued afterwards: first in the next page.
        pool.issue_to("late.os", t(100), &mut rng).unwrap();
        let newest = pool.newest_first(None, None, 0, 1);
        assert_eq!(pool.issue_log().at(newest.positions[0]).node, "late.os");
    }

    #[test]
    fn restore_rejects_inconsistent_rows() {
        let mut pool = pool_issuing_unmatched();
        let k1 = add_issuable(&mut pool, new_key(1), t(0));
        let row = |node: &str, key| Issuance { node: node.into(), key, issued_at: t(1) };
        assert!(pool.restore_issuances([row("a.os", KeyId(9))]).is_err());
        assert!(pool.restore_issuances([row("a.os", k1), row("a.os", k1)]).is_err());
        pool.restore_issuances([row("a.os", k1), row("b.os", k1)]).unwrap();
        assert_eq!(pool.nodes_of(k1).count(), 2);
    }
}
