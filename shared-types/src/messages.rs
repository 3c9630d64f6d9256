//! Messages between the key-issuer and the cost-poller (local requests, hyperapp JSON bodies).
//!
//! Issuer → poller: `Configure`, `SetAdminKey`, `ClearAdminKey`, `TestConnection`, `PollNow`,
//! `DoPendingWork`, `ListOrgKeys`, `CreateWorkspace`. Poller → issuer: `FetchWork`, `PushOrgKeys`,
//! `PushUsage`, `PushWorkspaceCosts`, `PushKeyCosts`, `PushBackfillDone`, `PushRetirementResults`,
//! `PushPollerStatus`. Each side accepts them only from its sibling process of the same package on
//! the same node ([`is_sibling`]).
//! The admin key crosses only in `SetAdminKey`, issuer → poller, in the message blob (a node prints
//! bodies, not blobs); API key secrets never cross: the poller sees hints only.

use serde::{Deserialize, Serialize};

use crate::cost::ModelUsage;
use crate::pool::{KeyId, Resolution};
use crate::{MicroUsd, Timestamp};

/// Process names inside the package.
pub const KEY_ISSUER: &str = "key-issuer";
pub const COST_POLLER: &str = "cost-poller";

/// Whether a message source is `sibling` of this package on this node.
///
/// `source_node`/`source_process` come from the message (`process:package:publisher`),
/// `our_node`/`our_process` from `our()`.
pub fn is_sibling(
    source_node: &str,
    source_process: &str,
    our_node: &str,
    our_process: &str,
    sibling: &str,
) -> bool {
    if source_node != our_node {
        return false;
    }
    let Some((_, our_package)) = our_process.split_once(':') else {
        return false;
    };
    match source_process.split_once(':') {
        Some((name, package)) => name == sibling && package == our_package,
        None => false,
    }
}

/// What the Admin API status of a retired key is set to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetireTo {
    #[default]
    Inactive,
    Archived,
}

impl RetireTo {
    pub fn as_str(self) -> &'static str {
        match self {
            RetireTo::Inactive => "inactive",
            RetireTo::Archived => "archived",
        }
    }
}

/// Poller settings owned by the issuer (edited in the dashboard) and pushed to the poller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollerConfig {
    pub admin_api_base_url: String,
    pub poll_interval_secs: u64,
    /// How far back the first poll reaches.
    pub backfill_hours: u64,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            admin_api_base_url: crate::admin_api::DEFAULT_BASE_URL.to_string(),
            poll_interval_secs: 3600,
            backfill_hours: 24 * 7,
        }
    }
}

/// What the issuer may know of the admin key: whether it is set and its displayable prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminKeyInfo {
    pub prefix: String,
    pub set_at: Timestamp,
}


/// Set this key's Admin API status (retirement).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireOrder {
    pub key: KeyId,
    pub api_key_id: String,
    pub status: RetireTo,
    /// Also archive this workspace (workspace-per-key mode: a workspace this app prepared for the
    /// key). Archiving a workspace stops every key in it.
    #[serde(default)]
    pub archive_workspace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetirementOutcome {
    /// The Admin API answered with the key in this status.
    Confirmed { status: String },
    /// The call failed; the poller retries (on its retirement timer and every tick).
    Failed {
        error: String,
        /// 401/403: the operator must give the admin key the rights to change keys.
        #[serde(default)]
        needs_operator: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetirementResult {
    pub key: KeyId,
    pub api_key_id: String,
    pub outcome: RetirementOutcome,
    /// The workspace archived with the key, when the order asked for it and it is archived.
    #[serde(default)]
    pub workspace_archived: Option<String>,
}

/// Usage of one Admin API key in one hour bucket, all models of that bucket.
/// The issuer replaces whatever it held for (key, bucket start, source).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBucket {
    pub api_key_id: String,
    pub bucket_start: Timestamp,
    pub models: Vec<ModelUsage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePush {
    pub buckets: Vec<UsageBucket>,
}

/// Authoritative cost of one workspace (None = default workspace) for one day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCost {
    pub workspace_id: Option<String>,
    pub day_start: Timestamp,
    pub amount: MicroUsd,
}

/// Authoritative cost of one Admin API key for one day (the analytics endpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDailyCost {
    pub api_key_id: String,
    pub day_start: Timestamp,
    pub amount: MicroUsd,
}

/// How the poller is doing, shown on the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollerStatus {
    pub admin_key_set: bool,
    pub last_poll_started: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    pub next_poll: Option<Timestamp>,
    pub last_error: Option<PollError>,
    /// Usage rows skipped because they carry no key id (Console Workbench usage).
    pub skipped_rows: u64,
    pub polls_total: u64,
    /// When the organization's keys were last read in full (every poll).
    #[serde(default)]
    pub org_keys_read_at: Option<Timestamp>,
    /// Whether the beta analytics endpoint answered at the last poll (None: not asked yet), and
    /// why not when it did not.
    #[serde(default)]
    pub analytics_available: Option<bool>,
    #[serde(default)]
    pub analytics_note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollError {
    pub at: Timestamp,
    pub message: String,
    /// True when the operator must act (admin key refused, bad base URL).
    pub needs_operator: bool,
}

/// Fetch the usage of a key matched after it was added, from `from` on, by its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillOrder {
    pub key: KeyId,
    pub api_key_id: String,
    pub from: Timestamp,
}

/// The issuer's answer to `FetchWork`, `PushOrgKeys` and `PushPollerStatus`: what the poller
/// still has to do. Retirements come first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollerWork {
    pub retire: Vec<RetireOrder>,
    #[serde(default)]
    pub backfill: Vec<BackfillOrder>,
}

/// Result of `TestConnection`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTest {
    pub ok: bool,
    pub message: String,
    pub api_keys_visible: u64,
}

/// Answer to "test key": whether the Admin API knows the key and has it active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCheck {
    pub ok: bool,
    pub message: String,
    /// The Admin API status (`active`, `inactive`, `archived`, ...) when the key was found.
    pub status: Option<String>,
    pub resolution: Resolution,
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR: &str = "key-issuer:anthropic-api-key-manager:keymanager.os";

    #[test]
    fn sibling_must_be_same_node_same_package_right_name() {
        let poller = "cost-poller:anthropic-api-key-manager:keymanager.os";
        assert!(is_sibling("operator.os", poller, "operator.os", OUR, COST_POLLER));
        assert!(!is_sibling("alice.os", poller, "operator.os", OUR, COST_POLLER));
        assert!(!is_sibling(
            "operator.os",
            "cost-poller:other-package:keymanager.os",
            "operator.os",
            OUR,
            COST_POLLER
        ));
        assert!(!is_sibling(
            "operator.os",
            "cost-poller:anthropic-api-key-manager:someone-else.os",
            "operator.os",
            OUR,
            COST_POLLER
        ));
        assert!(!is_sibling("operator.os", "evil:anthropic-api-key-manager:keymanager.os", "operator.os", OUR, COST_POLLER));
        assert!(!is_sibling("operator.os", "garbage", "operator.os", OUR, COST_POLLER));
    }
}
