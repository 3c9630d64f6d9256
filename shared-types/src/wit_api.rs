//! Types of the WIT API (`api/key-issuer.wit`) as they travel in JSON, and of the p2p answer.
//!
//! Field names are the snake_case twins of the WIT record fields; nothing here holds a secret
//! except [`IssuedKey`], the one answer sent to the node the key was issued to.

use serde::{Deserialize, Serialize};

use crate::pool::{Issuance, KeyPool};
use crate::{MicroUsd, Timestamp};

/// `key-state` in WIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Retired,
}

/// `node-key-status` in WIT: answer to `{"KeyStatus": "<node>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeyStatus {
    pub node: String,
    pub key_id: u64,
    pub masked_key: String,
    pub issued_at: String,
    pub expires_at: String,
    pub state: KeyState,
    pub retired_reason: Option<String>,
}

/// `pool-summary` in WIT: answer to `{"PoolSummary": null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSummary {
    pub active_keys: u32,
    pub historical_keys: u32,
    pub eligible_keys: u32,
    pub nodes_issued: u64,
    pub spent_micro_usd: i64,
    pub active_budget_micro_usd: i64,
}

/// `issued-key` in WIT: the `Ok` of the p2p answer. The only type that carries a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    pub api_key: String,
    pub issued_at: String,
    pub expires_at: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("api_key", &"<redacted>")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// RFC 3339 with second precision and a `Z`, the one time format of every answer.
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Key status of `node`, or `None` when it was never issued a key.
pub fn node_key_status(pool: &KeyPool, node: &str, now: Timestamp) -> Option<NodeKeyStatus> {
    let Issuance { key, issued_at, .. } = pool.issuance(node)?;
    let record = pool.key(*key)?;
    let retired_reason = record
        .retirement
        .as_ref()
        .map(|r| r.reason)
        .or_else(|| record.due_retirement(now));
    Some(NodeKeyStatus {
        node: node.to_string(),
        key_id: record.id.0,
        masked_key: record.hint.to_string(),
        issued_at: rfc3339(*issued_at),
        expires_at: rfc3339(record.expires_at),
        state: if retired_reason.is_some() { KeyState::Retired } else { KeyState::Active },
        retired_reason: retired_reason.map(|r| r.to_string()),
    })
}

/// Counts and money of the whole pool.
pub fn pool_summary(pool: &KeyPool, now: Timestamp) -> PoolSummary {
    let mut summary = PoolSummary {
        active_keys: 0,
        historical_keys: 0,
        eligible_keys: pool.eligible_keys(now).len() as u32,
        nodes_issued: pool.issued_node_count() as u64,
        spent_micro_usd: 0,
        active_budget_micro_usd: 0,
    };
    let mut spent = MicroUsd::ZERO;
    let mut budget = MicroUsd::ZERO;
    for record in pool.keys() {
        spent += record.spent;
        if record.is_active() {
            summary.active_keys += 1;
            budget += record.budget;
        } else {
            summary.historical_keys += 1;
        }
    }
    summary.spent_micro_usd = spent.0;
    summary.active_budget_micro_usd = budget.0;
    summary
}
