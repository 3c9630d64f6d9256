//! The issuance policy in the issuer (SPEC §4): the decision of `shared_types::policy` applied to
//! each p2p request before issuance, the approval requests it records, and the operator's
//! decisions. Audit rows are written once per episode (a change of answer for a node), never
//! once per request: remote nodes must not be able to grow storage by repeating themselves.

use hyperware_process_lib::http::StatusCode;
use shared_types::policy::{
    self, EpisodeKind, NodeRequest, PolicyDecision, RefusalEpisodes, RequestStatus, Requests, RequestsPage, RequestsQuery,
};
use shared_types::pool::validate_node_name;

use crate::{http_result, now, KeyIssuer, STORAGE_UNAVAILABLE};

/// What the issuer keeps in memory for the policy (rebuilt from SQLite at start).
#[derive(Default)]
pub struct PolicyRuntime {
    pub requests: Requests,
    refusals: RefusalEpisodes,
    /// Requests refused since the approval queue was last found full (one audit row per episode).
    queue_full_refusals: u64,
}

impl KeyIssuer {
    /// Decides whether `node` may go on to issuance; the refusal's stable answer otherwise.
    /// Records a new pending request (approval mode) and audits each episode once.
    pub(crate) async fn apply_issuance_policy(&mut self, node: &str) -> Result<(), String> {
        validate_node_name(node).map_err(|e| e.to_string())?;
        let holds_key = self.pool.issuance(node).is_some();
        let decision = policy::decide(&self.settings.issuance, &self.rt.policy.requests, node, holds_key);
        match decision {
            PolicyDecision::Issue => {
                let repeats = self.rt.policy.refusals.take(node);
                if repeats > 0 {
                    self.audit(node, "key request", "", &format!("let through by the issuance policy after {repeats} repeated refusals"));
                }
                Ok(())
            }
            PolicyDecision::RecordPending => self.record_pending(node).await,
            PolicyDecision::QueueFull => {
                self.rt.policy.queue_full_refusals += 1;
                if self.rt.policy.queue_full_refusals == 1 {
                    self.audit(node, "key request", "", &format!("refused: {} (new nodes are refused until the operator decides some; further refusals are counted)", policy::APPROVAL_QUEUE_FULL));
                }
                Err(policy::APPROVAL_QUEUE_FULL.to_string())
            }
            PolicyDecision::StillPending | PolicyDecision::Refuse(_) => {
                self.audit_refusal_once(node, decision);
                Err(decision.answer().unwrap_or(policy::NOT_ALLOWED).to_string())
            }
        }
    }

    /// Audits a repeated refusal only when it opens an episode for the node.
    fn audit_refusal_once(&mut self, node: &str, decision: PolicyDecision) {
        let Some(kind) = EpisodeKind::of(decision) else { return };
        let episode = self.rt.policy.refusals.note(node, kind);
        if !episode.first {
            return;
        }
        let before = match episode.repeats_before {
            0 => String::new(),
            n => format!("; {n} repeated requests before were counted"),
        };
        let outcome = match decision {
            PolicyDecision::Refuse(refusal) => format!("refused: {} ({}); further refusals are counted{before}", policy::NOT_ALLOWED, refusal.reason()),
            _ => format!("{}: still waiting for the operator; further requests are counted{before}", policy::PENDING_APPROVAL),
        };
        self.audit(node, "key request", "", &outcome);
    }

    /// Approval mode, a node never seen: record it as pending (storage first, so that a restart
    /// keeps it), answer `pending approval`.
    async fn record_pending(&mut self, node: &str) -> Result<(), String> {
        let at = now();
        // Reserve the place in memory before the write: requests arriving meanwhile see it.
        let request = match self.rt.policy.requests.add_pending(node, at) {
            Ok(request) => request,
            Err(_) => return Err(policy::APPROVAL_QUEUE_FULL.to_string()),
        };
        let stored = match &self.rt.db {
            Some(db) => db.clone().put_node_request(&request).await,
            None => Err(STORAGE_UNAVAILABLE.to_string()),
        };
        if let Err(e) = stored {
            self.rt.policy.requests.restore_one(node, None);
            crate::log::warn(&e);
            return Err(STORAGE_UNAVAILABLE.to_string());
        }
        self.rt.policy.refusals.note(node, EpisodeKind::Pending);
        let full_before = std::mem::take(&mut self.rt.policy.queue_full_refusals);
        if full_before > 0 {
            self.audit("key-issuer", "approval queue", "", &format!("room again after {full_before} requests were refused as {}", policy::APPROVAL_QUEUE_FULL));
        }
        self.audit(node, "key request", "", &format!("{}: recorded, waiting for the operator", policy::PENDING_APPROVAL));
        Err(policy::PENDING_APPROVAL.to_string())
    }

    /// `ApproveNode` and `DenyNode`: the operator approves or denies the node named by `arg`
    /// (asked or not). Answers the request's view, or the HTTP error.
    pub(crate) async fn decide_node(&mut self, arg: serde_json::Value, status: RequestStatus) -> Result<policy::NodeRequestView, String> {
        if let Some(refused) = crate::refuse_cross_site() {
            return refused;
        }
        let raw_node: String = match crate::read_arg(arg) {
            Ok(node) => node,
            Err(refused) => return refused,
        };
        let action = if status == RequestStatus::Approved { "approve node" } else { "deny node" };
        let node = match policy::normalize_node_name(&raw_node) {
            Ok(node) => node,
            Err(e) => return http_result(Err(format!("field `node`: {e}")), StatusCode::BAD_REQUEST),
        };
        let db = match self.db().await {
            Ok(db) => db,
            Err(e) => return http_result(Err(e), StatusCode::SERVICE_UNAVAILABLE),
        };
        let previous: Option<NodeRequest> = self.rt.policy.requests.get(&node).cloned();
        let request = self.rt.policy.requests.decide(&node, status, now());
        if let Err(e) = db.put_node_request(&request).await {
            self.rt.policy.requests.restore_one(&node, previous);
            crate::log::warn(&e);
            return http_result(Err(STORAGE_UNAVAILABLE.to_string()), StatusCode::SERVICE_UNAVAILABLE);
        }
        let repeats = self.rt.policy.refusals.take(&node);
        let counted = if repeats > 0 { format!(" ({repeats} repeated requests before)") } else { String::new() };
        let was = previous.map_or("never asked".to_string(), |p| format!("was {}", p.status.as_str()));
        self.audit("operator", action, &format!("{node} ({was})"), &format!("{}{counted}", status.as_str()));
        Ok(policy::NodeRequestView::of(&request, self.pool.issuance(&node).is_some()))
    }

    /// A page of the approval requests.
    pub(crate) fn requests_page(&self, query: &RequestsQuery) -> RequestsPage {
        RequestsPage::of(&self.rt.policy.requests, query, |node| self.pool.issuance(node).is_some())
    }
}
