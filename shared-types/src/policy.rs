//! Issuance policy (SPEC §4): which nodes may get a key. The operator picks a mode (`open`,
//! `allowlist`, `approval`) and keeps a denylist that applies in every mode. This module decides;
//! the key-issuer records and answers.
//!
//! Node names and patterns. Names are compared in lowercase. A list entry is either a node name
//! (`alice.os`) or a pattern `*.<suffix>` (`*.os`, `*.team.hypr`): `*` is allowed only as the whole
//! first label and stands for one or more whole labels, so `*.os` matches `alice.os` and
//! `dev.alice.os` but neither `os` nor `alice.xos`. No other wildcard exists.
//!
//! Bounded writes: remote nodes choose their names freely, so nothing a remote node does may grow
//! storage per request. The pending list is capped ([`MAX_PENDING`]), and repeated refusals of one
//! node are counted in memory ([`RefusalEpisodes`]) and audited once per episode.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::http_api::RequestError;
use crate::pool::validate_node_name;
use crate::Timestamp;

/// At most this many nodes wait for approval; beyond it a new node is refused (nothing recorded)
/// until the operator decides some.
pub const MAX_PENDING: usize = 10_000;
/// At most this many entries in each of the allowlist and the denylist.
pub const MAX_LIST_ENTRIES: usize = 1_000;
/// Node names longer than this are not names (the pool refuses them too).
const MAX_NAME_LEN: usize = 255;
/// Nodes whose repeated refusals are counted at once; the oldest is forgotten beyond it (its next
/// refusal then opens a new episode: one more audit row for that node, never one per request).
pub const MAX_COUNTED_NODES: usize = 20_000;

/// The stable answers of the policy to a p2p request (documented in README's p2p section).
pub const PENDING_APPROVAL: &str = "pending approval";
pub const NOT_ALLOWED: &str = "not allowed";
pub const APPROVAL_QUEUE_FULL: &str = "approval queue full";

/// Who may get a key, besides the denylist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Every node may ask (the first release's behaviour).
    #[default]
    Open,
    /// Only nodes on the allowlist.
    Allowlist,
    /// Nodes on the allowlist, and nodes the operator approved after their first request.
    Approval,
}

impl std::fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyMode::Open => "open",
            PolicyMode::Allowlist => "allowlist",
            PolicyMode::Approval => "approval",
        })
    }
}

/// The policy part of the settings. Its field names are also those of `GetSettings` and
/// `UpdateSettings` (docs/http-api.md). List entries are stored normalised (lowercase, trimmed,
/// validated, no duplicates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuancePolicy {
    #[serde(default)]
    pub issuance_policy: PolicyMode,
    #[serde(default)]
    pub allowlist: Vec<String>,
    #[serde(default)]
    pub denylist: Vec<String>,
}

/// Why an operator's list entry or node name was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EntryError {
    #[error("an entry is empty")]
    Empty,
    #[error("an entry looks like an API key: give node names, never a secret")]
    LooksLikeKey,
    #[error("\"{0}\": `*` may only stand as the whole first label, as in *.os")]
    MisplacedWildcard(String),
    #[error("\"{0}\" is not a node name: use lowercase letters, digits, `.`, `-` and `_`, not starting or ending with `.`")]
    NotANodeName(String),
    #[error("\"{0}\" is a pattern; a node name is needed here")]
    PatternNotAllowed(String),
}

/// An `UpdateSettings` policy field that was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("field `{field}`: {problem}")]
pub struct PolicyUpdateError {
    pub field: &'static str,
    pub problem: String,
}

impl From<PolicyUpdateError> for RequestError {
    fn from(e: PolicyUpdateError) -> RequestError {
        RequestError::Invalid { field: e.field, problem: crate::admin_api::redact(&e.problem) }
    }
}

/// Keeps an entry short in an error (the operator sees what was refused, not a page of it).
fn shown(entry: &str) -> String {
    entry.chars().take(64).collect()
}

/// Normalises and checks one operator-given node name (`ApproveNode`, `DenyNode`): lowercase,
/// trimmed, a valid node name, no pattern.
pub fn normalize_node_name(raw: &str) -> Result<String, EntryError> {
    let name = normalize_entry(raw)?;
    if name.starts_with('*') {
        return Err(EntryError::PatternNotAllowed(shown(&name)));
    }
    Ok(name)
}

/// Normalises and checks one list entry: a node name or a `*.<suffix>` pattern.
pub fn normalize_entry(raw: &str) -> Result<String, EntryError> {
    let entry = raw.trim().to_ascii_lowercase();
    if entry.is_empty() {
        return Err(EntryError::Empty);
    }
    // Entries go to the audit log and every screen, and errors quote them: a pasted secret must not.
    if entry.contains("sk-ant-") {
        return Err(EntryError::LooksLikeKey);
    }
    let name_part = match entry.strip_prefix("*.") {
        Some(suffix) => suffix,
        None => &entry,
    };
    if name_part.contains('*') || entry == "*" {
        return Err(EntryError::MisplacedWildcard(shown(&entry)));
    }
    if name_part.len() > MAX_NAME_LEN || validate_node_name(name_part).is_err() || name_part.contains("..") {
        return Err(EntryError::NotANodeName(shown(&entry)));
    }
    Ok(entry)
}

/// Normalises a whole list: every entry valid, duplicates dropped (first kept), at most
/// [`MAX_LIST_ENTRIES`].
pub fn normalize_list(raw: &[String]) -> Result<Vec<String>, EntryError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for entry in raw {
        let entry = normalize_entry(entry)?;
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Whether a list entry (normalised) covers `node`.
pub fn entry_matches(entry: &str, node: &str) -> bool {
    match entry.strip_prefix('*') {
        // `suffix` keeps its leading dot: at least one whole label must come before it.
        Some(suffix) => node.len() > suffix.len() && ends_with_ignore_case(node, suffix),
        None => entry.eq_ignore_ascii_case(node),
    }
}

fn ends_with_ignore_case(node: &str, suffix: &str) -> bool {
    let start = node.len() - suffix.len();
    node.is_char_boundary(start) && node[start..].eq_ignore_ascii_case(suffix)
}

/// Whether any entry of `list` covers `node`.
pub fn list_matches(list: &[String], node: &str) -> bool {
    list.iter().any(|entry| entry_matches(entry, node))
}

impl IssuancePolicy {
    /// Applies the policy fields of an `UpdateSettings` body (`issuance_policy`, `allowlist`,
    /// `denylist`; absent or null = unchanged). All or nothing.
    pub fn apply_update(&self, body: &serde_json::Map<String, serde_json::Value>) -> Result<IssuancePolicy, PolicyUpdateError> {
        let mut next = self.clone();
        match body.get("issuance_policy") {
            None | Some(serde_json::Value::Null) => {}
            Some(value) => {
                next.issuance_policy = serde_json::from_value(value.clone()).map_err(|_| PolicyUpdateError {
                    field: "issuance_policy",
                    problem: "expected \"open\", \"allowlist\" or \"approval\"".to_string(),
                })?;
            }
        }
        if let Some(list) = list_field(body, "allowlist")? {
            next.allowlist = list;
        }
        if let Some(list) = list_field(body, "denylist")? {
            next.denylist = list;
        }
        Ok(next)
    }

    pub fn is_denylisted(&self, node: &str) -> bool {
        list_matches(&self.denylist, node)
    }

    pub fn is_allowlisted(&self, node: &str) -> bool {
        list_matches(&self.allowlist, node)
    }
}

fn list_field(body: &serde_json::Map<String, serde_json::Value>, field: &'static str) -> Result<Option<Vec<String>>, PolicyUpdateError> {
    let refuse = |problem: String| PolicyUpdateError { field, problem };
    let items = match body.get(field) {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => return Err(refuse("expected a list of node names or patterns like \"*.os\"".to_string())),
    };
    if items.len() > MAX_LIST_ENTRIES {
        return Err(refuse(format!("at most {MAX_LIST_ENTRIES} entries")));
    }
    let strings = items
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| refuse("every entry must be a string".to_string()))?;
    normalize_list(&strings).map(Some).map_err(|e| refuse(e.to_string()))
}

/// What the operator decided about a node that asked in approval mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<RequestStatus> {
        match s {
            "pending" => Some(RequestStatus::Pending),
            "approved" => Some(RequestStatus::Approved),
            "denied" => Some(RequestStatus::Denied),
            _ => None,
        }
    }
}

/// One node's request for approval, as stored and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub node: String,
    pub status: RequestStatus,
    /// When the node first asked (for a node decided before it asked: when it was decided).
    pub requested_at: Timestamp,
    pub decided_at: Option<Timestamp>,
}

/// The approval requests: every node that asked in approval mode or that the operator decided.
/// Rebuilt from storage at start; pending ones are at most [`MAX_PENDING`].
#[derive(Clone, Debug, Default)]
pub struct Requests {
    by_node: HashMap<String, NodeRequest>,
    pending: usize,
}

/// Why an approval request could not be recorded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestsError {
    #[error("{APPROVAL_QUEUE_FULL}: {MAX_PENDING} nodes are waiting for the operator")]
    QueueFull,
}

impl Requests {
    /// Rebuilds from stored rows (a later row for the same node wins).
    pub fn restore(rows: impl IntoIterator<Item = NodeRequest>) -> Requests {
        let mut requests = Requests::default();
        for row in rows {
            requests.put(row);
        }
        requests
    }

    fn put(&mut self, request: NodeRequest) {
        if request.status == RequestStatus::Pending {
            self.pending += 1;
        }
        if let Some(old) = self.by_node.insert(request.node.clone(), request) {
            if old.status == RequestStatus::Pending {
                self.pending -= 1;
            }
        }
    }

    pub fn get(&self, node: &str) -> Option<&NodeRequest> {
        self.by_node.get(node)
    }

    pub fn status_of(&self, node: &str) -> Option<RequestStatus> {
        self.get(node).map(|r| r.status)
    }

    pub fn pending_count(&self) -> usize {
        self.pending
    }

    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// Records `node` as pending (it has no request yet); refused when the queue is full.
    pub fn add_pending(&mut self, node: &str, at: Timestamp) -> Result<NodeRequest, RequestsError> {
        if self.pending >= MAX_PENDING {
            return Err(RequestsError::QueueFull);
        }
        let request = NodeRequest { node: node.to_string(), status: RequestStatus::Pending, requested_at: at, decided_at: None };
        self.put(request.clone());
        Ok(request)
    }

    /// The operator's decision about `node` (asked or not); answers the new record.
    pub fn decide(&mut self, node: &str, status: RequestStatus, at: Timestamp) -> NodeRequest {
        let requested_at = self.get(node).map_or(at, |r| r.requested_at);
        let request = NodeRequest { node: node.to_string(), status, requested_at, decided_at: Some(at) };
        self.put(request.clone());
        request
    }

    /// Undoes [`Requests::add_pending`] or puts back `previous` (storage refused the change).
    pub fn restore_one(&mut self, node: &str, previous: Option<NodeRequest>) {
        match previous {
            Some(request) => self.put(request),
            None => {
                if let Some(old) = self.by_node.remove(node) {
                    if old.status == RequestStatus::Pending {
                        self.pending -= 1;
                    }
                }
            }
        }
    }

    /// Requests with `status` (all when None), pending ones oldest first, decided ones newest
    /// decision first; one page of them and how many there are.
    pub fn page(&self, status: Option<RequestStatus>, offset: usize, limit: usize) -> (usize, Vec<NodeRequest>) {
        let mut matching: Vec<&NodeRequest> = self.by_node.values().filter(|r| status.is_none_or(|s| r.status == s)).collect();
        matching.sort_by(|a, b| order_key(a).cmp(&order_key(b)).then_with(|| a.node.cmp(&b.node)));
        let total = matching.len();
        (total, matching.into_iter().skip(offset).take(limit).cloned().collect())
    }
}

/// `ListRequests` argument: `{"status": "pending" | "approved" | "denied" | null, "offset", "limit"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    #[serde(default)]
    pub status: Option<RequestStatus>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// One approval request as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequestView {
    pub node: String,
    pub status: RequestStatus,
    pub requested_at: String,
    pub decided_at: Option<String>,
    /// The node was issued a key (an approved node that asked again).
    pub holds_key: bool,
}

impl NodeRequestView {
    pub fn of(request: &NodeRequest, holds_key: bool) -> NodeRequestView {
        NodeRequestView {
            node: request.node.clone(),
            status: request.status,
            requested_at: crate::wit_api::rfc3339(request.requested_at),
            decided_at: request.decided_at.map(crate::wit_api::rfc3339),
            holds_key,
        }
    }
}

/// `ListRequests` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestsPage {
    /// Requests with the asked status.
    pub total: u64,
    /// Nodes waiting for the operator, and how many may wait at most.
    pub pending_total: u64,
    pub pending_cap: u64,
    pub requests: Vec<NodeRequestView>,
}

/// Most requests in one page.
pub const MAX_REQUESTS_PAGE: u64 = 500;

impl RequestsPage {
    pub fn of(requests: &Requests, query: &RequestsQuery, holds_key: impl Fn(&str) -> bool) -> RequestsPage {
        let limit = query.limit.unwrap_or(100).clamp(1, MAX_REQUESTS_PAGE) as usize;
        let offset = query.offset.unwrap_or(0).min(usize::MAX as u64) as usize;
        let (total, page) = requests.page(query.status, offset, limit);
        RequestsPage {
            total: total as u64,
            pending_total: requests.pending_count() as u64,
            pending_cap: MAX_PENDING as u64,
            requests: page.iter().map(|r| NodeRequestView::of(r, holds_key(&r.node))).collect(),
        }
    }
}

/// Pending first (oldest first: the operator's queue), then decisions, newest first.
fn order_key(r: &NodeRequest) -> (u8, i64) {
    match r.decided_at {
        None => (0, r.requested_at.timestamp()),
        Some(at) => (1, -at.timestamp()),
    }
}

/// Why a node is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// On the denylist (every mode, also a node that holds a key).
    Denylisted,
    /// Allowlist mode, not on the allowlist.
    NotListed,
    /// Approval mode, denied by the operator.
    Denied,
}

impl Refusal {
    /// The audit log's words for it.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Denylisted => "on the denylist",
            Refusal::NotListed => "not on the allowlist",
            Refusal::Denied => "denied by the operator",
        }
    }
}

/// What the policy says about one p2p request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyDecision {
    /// Go on to issuance (which may still answer `no keys available`, a retirement, ...).
    Issue,
    /// Approval mode, a node never seen: record it as pending, answer `pending approval`.
    RecordPending,
    /// Approval mode, already waiting: answer `pending approval`, record nothing.
    StillPending,
    /// Approval mode, a new node while [`MAX_PENDING`] wait: answer `approval queue full`,
    /// record nothing.
    QueueFull,
    /// Answer `not allowed`.
    Refuse(Refusal),
}

impl PolicyDecision {
    /// The p2p answer's error string, or None when issuance goes on.
    pub fn answer(self) -> Option<&'static str> {
        match self {
            PolicyDecision::Issue => None,
            PolicyDecision::RecordPending | PolicyDecision::StillPending => Some(PENDING_APPROVAL),
            PolicyDecision::QueueFull => Some(APPROVAL_QUEUE_FULL),
            PolicyDecision::Refuse(_) => Some(NOT_ALLOWED),
        }
    }
}

/// Decides a request of `node` (a valid node name). `holds_key`: the node was issued a key before;
/// the policy never takes a key back, so such a node goes on to issuance (and gets its same key, or
/// hears that it retired) unless it is on the denylist.
pub fn decide(policy: &IssuancePolicy, requests: &Requests, node: &str, holds_key: bool) -> PolicyDecision {
    if policy.is_denylisted(node) {
        return PolicyDecision::Refuse(Refusal::Denylisted);
    }
    if holds_key {
        return PolicyDecision::Issue;
    }
    match policy.issuance_policy {
        PolicyMode::Open => PolicyDecision::Issue,
        PolicyMode::Allowlist if policy.is_allowlisted(node) => PolicyDecision::Issue,
        PolicyMode::Allowlist => PolicyDecision::Refuse(Refusal::NotListed),
        PolicyMode::Approval if policy.is_allowlisted(node) => PolicyDecision::Issue,
        PolicyMode::Approval => match requests.status_of(node) {
            Some(RequestStatus::Approved) => PolicyDecision::Issue,
            Some(RequestStatus::Denied) => PolicyDecision::Refuse(Refusal::Denied),
            Some(RequestStatus::Pending) => PolicyDecision::StillPending,
            None if requests.pending_count() >= MAX_PENDING => PolicyDecision::QueueFull,
            None => PolicyDecision::RecordPending,
        },
    }
}

/// The kinds of refusal that are audited once per episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeKind {
    Pending,
    QueueFull,
    Refused(Refusal),
}

impl EpisodeKind {
    /// The episode a decision belongs to (None: issuance goes on, audited by issuance itself).
    pub fn of(decision: PolicyDecision) -> Option<EpisodeKind> {
        match decision {
            PolicyDecision::Issue => None,
            PolicyDecision::RecordPending | PolicyDecision::StillPending => Some(EpisodeKind::Pending),
            PolicyDecision::QueueFull => Some(EpisodeKind::QueueFull),
            PolicyDecision::Refuse(r) => Some(EpisodeKind::Refused(r)),
        }
    }
}

/// What to audit for one refused request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    /// The first refusal of this kind for this node since it was last counted: write one row.
    pub first: bool,
    /// Repeats counted in the node's previous episode (of another kind), to write with this row.
    pub repeats_before: u64,
}

/// Counts repeated policy refusals per node in memory, so that a flood from one node writes one
/// audit row per episode (a change of answer), never one per request. Bounded to
/// [`MAX_COUNTED_NODES`] nodes, the oldest forgotten first.
#[derive(Clone, Debug, Default)]
pub struct RefusalEpisodes {
    current: HashMap<String, (EpisodeKind, u64)>,
    order: VecDeque<String>,
}

impl RefusalEpisodes {
    /// Notes one refusal of `node` of `kind`.
    pub fn note(&mut self, node: &str, kind: EpisodeKind) -> Episode {
        match self.current.get_mut(node) {
            Some((current, repeats)) if *current == kind => {
                *repeats += 1;
                Episode { first: false, repeats_before: 0 }
            }
            Some(entry) => {
                let repeats_before = entry.1;
                *entry = (kind, 0);
                Episode { first: true, repeats_before }
            }
            None => {
                self.make_room();
                self.current.insert(node.to_string(), (kind, 0));
                self.order.push_back(node.to_string());
                Episode { first: true, repeats_before: 0 }
            }
        }
    }

    /// Ends `node`'s episode (it was let through, or the operator decided it): the repeats counted
    /// in it.
    pub fn take(&mut self, node: &str) -> u64 {
        // Its place in `order` is dropped lazily in `make_room`.
        self.current.remove(node).map_or(0, |(_, repeats)| repeats)
    }

    pub fn counted_nodes(&self) -> usize {
        self.current.len()
    }

    fn make_room(&mut self) {
        while self.current.len() >= MAX_COUNTED_NODES {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.current.remove(&oldest);
                }
                None => break,
            }
        }
        // Entries of nodes already taken are dropped too, so `order` stays bounded.
        while self.order.len() >= 2 * MAX_COUNTED_NODES {
            let Some(oldest) = self.order.pop_front() else { break };
            self.current.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn policy(mode: PolicyMode, allow: &[&str], deny: &[&str]) -> IssuancePolicy {
        IssuancePolicy {
            issuance_policy: mode,
            allowlist: allow.iter().map(|s| s.to_string()).collect(),
            denylist: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn patterns_match_whole_labels_only() {
        assert!(entry_matches("*.os", "alice.os"));
        assert!(entry_matches("*.os", "dev.alice.os"));
        assert!(entry_matches("*.os", "ALICE.OS"));
        assert!(!entry_matches("*.os", "os"));
        assert!(!entry_matches("*.os", ".os"));
        assert!(!entry_matches("*.os", "alice.xos"));
        assert!(!entry_matches("*.os", "alice.os.hypr"));
        assert!(entry_matches("*.team.hypr", "bob.team.hypr"));
        assert!(!entry_matches("*.team.hypr", "team.hypr"));
        assert!(entry_matches("alice.os", "Alice.OS"));
        assert!(!entry_matches("alice.os", "malice.os"));
    }

    #[test]
    fn entries_are_normalised_or_refused() {
        assert_eq!(normalize_entry("  Alice.OS "), Ok("alice.os".to_string()));
        assert_eq!(normalize_entry("*.Hypr"), Ok("*.hypr".to_string()));
        for bad in ["*", "*.", "*os", "a*.os", "alice.*", "*.*.os", "**.os", "*.os*", "al ice.os", "alice..os", ".os", "alice.os.", "*..os", "ali/ce.os"] {
            assert!(normalize_entry(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(normalize_entry("   "), Err(EntryError::Empty));
        assert!(matches!(normalize_entry("a*.os"), Err(EntryError::MisplacedWildcard(_))));
        assert!(matches!(normalize_node_name("*.os"), Err(EntryError::PatternNotAllowed(_))));
        assert_eq!(normalize_node_name("Bob.os"), Ok("bob.os".to_string()));
        assert!(normalize_entry(&"a".repeat(300)).is_err());
        let pasted = "sk-ant-api03-TESTkey0001abcdefghijklmnopqrstuvwxyz0001";
        assert_eq!(normalize_node_name(pasted), Err(EntryError::LooksLikeKey));
        assert!(!normalize_entry(&format!("*.{pasted}")).unwrap_err().to_string().contains("TESTkey"));
    }

    #[test]
    fn lists_drop_duplicates_and_are_bounded() {
        let list = normalize_list(&["a.os".into(), "A.os".into(), "*.os".into()]).unwrap();
        assert_eq!(list, vec!["a.os".to_string(), "*.os".to_string()]);
        let body = serde_json::json!({"allowlist": (0..=MAX_LIST_ENTRIES).map(|i| format!("n{i}.os")).collect::<Vec<_>>()});
        let err = IssuancePolicy::default().apply_update(body.as_object().unwrap()).unwrap_err();
        assert_eq!(err.field, "allowlist");
    }

    #[test]
    fn an_update_is_all_or_nothing_and_says_what_is_wrong() {
        let current = IssuancePolicy::default();
        let body = serde_json::json!({"issuance_policy": "allowlist", "allowlist": ["*.os"], "denylist": ["bad*.os"]});
        let err = current.apply_update(body.as_object().unwrap()).unwrap_err();
        assert_eq!(err.field, "denylist");
        assert!(err.to_string().contains("`*` may only stand as the whole first label"), "{err}");
        let body = serde_json::json!({"issuance_policy": "closed"});
        assert_eq!(current.apply_update(body.as_object().unwrap()).unwrap_err().field, "issuance_policy");
        let body = serde_json::json!({"allowlist": "alice.os"});
        assert_eq!(current.apply_update(body.as_object().unwrap()).unwrap_err().field, "allowlist");
        let body = serde_json::json!({"allowlist": [1]});
        assert_eq!(current.apply_update(body.as_object().unwrap()).unwrap_err().field, "allowlist");
        let body = serde_json::json!({"issuance_policy": "approval", "allowlist": ["Alice.os", "*.hypr"]});
        let next = current.apply_update(body.as_object().unwrap()).unwrap();
        assert_eq!(next, policy(PolicyMode::Approval, &["alice.os", "*.hypr"], &[]));
        let body = serde_json::json!({"issuance_policy": null});
        assert_eq!(next.apply_update(body.as_object().unwrap()).unwrap(), next, "null leaves it unchanged");
    }

    #[test]
    fn open_mode_issues_to_everyone_but_the_denylist() {
        let p = policy(PolicyMode::Open, &[], &["*.bad"]);
        let r = Requests::default();
        assert_eq!(decide(&p, &r, "alice.os", false), PolicyDecision::Issue);
        assert_eq!(decide(&p, &r, "eve.bad", false), PolicyDecision::Refuse(Refusal::Denylisted));
        assert_eq!(decide(&p, &r, "eve.bad", true), PolicyDecision::Refuse(Refusal::Denylisted), "the denylist refuses a holder too");
    }

    #[test]
    fn allowlist_mode_issues_to_listed_nodes_and_holders() {
        let p = policy(PolicyMode::Allowlist, &["alice.os", "*.hypr"], &["eve.hypr"]);
        let r = Requests::default();
        assert_eq!(decide(&p, &r, "alice.os", false), PolicyDecision::Issue);
        assert_eq!(decide(&p, &r, "bob.hypr", false), PolicyDecision::Issue);
        assert_eq!(decide(&p, &r, "bob.os", false), PolicyDecision::Refuse(Refusal::NotListed));
        assert_eq!(decide(&p, &r, "bob.os", true), PolicyDecision::Issue, "a key already issued is never taken back");
        assert_eq!(decide(&p, &r, "eve.hypr", false), PolicyDecision::Refuse(Refusal::Denylisted));
    }

    #[test]
    fn approval_mode_follows_the_operators_decisions() {
        let p = policy(PolicyMode::Approval, &["*.team"], &[]);
        let mut r = Requests::default();
        assert_eq!(decide(&p, &r, "bob.os", false), PolicyDecision::RecordPending);
        r.add_pending("bob.os", t(0)).unwrap();
        assert_eq!(decide(&p, &r, "bob.os", false), PolicyDecision::StillPending);
        assert_eq!(decide(&p, &r, "ann.team", false), PolicyDecision::Issue, "the allowlist needs no approval");
        r.decide("bob.os", RequestStatus::Approved, t(5));
        assert_eq!(decide(&p, &r, "bob.os", false), PolicyDecision::Issue);
        r.decide("bob.os", RequestStatus::Denied, t(6));
        assert_eq!(decide(&p, &r, "bob.os", false), PolicyDecision::Refuse(Refusal::Denied));
        assert_eq!(r.get("bob.os").unwrap().requested_at, t(0), "the first request's time stays");
        assert_eq!(PolicyDecision::StillPending.answer(), Some("pending approval"));
        assert_eq!(PolicyDecision::Refuse(Refusal::Denied).answer(), Some("not allowed"));
    }

    #[test]
    fn the_pending_queue_is_capped() {
        let p = policy(PolicyMode::Approval, &[], &[]);
        let mut r = Requests::default();
        for i in 0..MAX_PENDING {
            r.add_pending(&format!("n{i}.os"), t(i as i64)).unwrap();
        }
        assert_eq!(decide(&p, &r, "late.os", false), PolicyDecision::QueueFull);
        assert_eq!(r.add_pending("late.os", t(0)), Err(RequestsError::QueueFull));
        assert_eq!(decide(&p, &r, "n0.os", false), PolicyDecision::StillPending, "the oldest are kept");
        r.decide("n0.os", RequestStatus::Denied, t(1));
        assert_eq!(r.pending_count(), MAX_PENDING - 1);
        assert_eq!(decide(&p, &r, "late.os", false), PolicyDecision::RecordPending);
    }

    #[test]
    fn pages_list_the_queue_oldest_first_then_decisions_newest_first() {
        let mut r = Requests::default();
        r.add_pending("b.os", t(2)).unwrap();
        r.add_pending("a.os", t(1)).unwrap();
        r.add_pending("c.os", t(3)).unwrap();
        r.decide("c.os", RequestStatus::Approved, t(10));
        r.decide("d.os", RequestStatus::Denied, t(11));
        let (total, all) = r.page(None, 0, 10);
        assert_eq!(total, 4);
        let names: Vec<_> = all.iter().map(|x| x.node.as_str()).collect();
        assert_eq!(names, ["a.os", "b.os", "d.os", "c.os"]);
        let (pending, _) = r.page(Some(RequestStatus::Pending), 0, 1);
        assert_eq!(pending, 2);
        r.restore_one("a.os", None);
        assert_eq!(r.pending_count(), 1);
    }

    #[test]
    fn repeated_refusals_are_audited_once_per_episode() {
        let mut e = RefusalEpisodes::default();
        assert_eq!(e.note("a.os", EpisodeKind::Pending), Episode { first: true, repeats_before: 0 });
        for _ in 0..1999 {
            assert!(!e.note("a.os", EpisodeKind::Pending).first);
        }
        let denied = EpisodeKind::Refused(Refusal::Denied);
        assert_eq!(e.note("a.os", denied), Episode { first: true, repeats_before: 1999 });
        assert!(!e.note("a.os", denied).first);
        assert_eq!(e.take("a.os"), 1);
        assert!(e.note("a.os", denied).first);
    }

    #[test]
    fn the_episode_counter_is_bounded() {
        let mut e = RefusalEpisodes::default();
        for i in 0..(MAX_COUNTED_NODES + 500) {
            e.note(&format!("n{i}.os"), EpisodeKind::Pending);
            if i % 2 == 0 {
                e.take(&format!("n{i}.os"));
            }
        }
        assert!(e.counted_nodes() <= MAX_COUNTED_NODES);
        assert!(e.order.len() <= 2 * MAX_COUNTED_NODES);
    }
}
