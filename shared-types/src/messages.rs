//! Messages between the key-issuer and the cost-poller (local requests, hyperapp JSON bodies).
//!
//! Issuer → poller: `Configure`, `SetAdminKey`, `ClearAdminKey`, `TestConnection`, `PollNow`,
//! `DoPendingWork`, `ListOrgKeys`, `CreateWorkspace`. Poller → issuer: `FetchWork`, `PushOrgKeys`,
//! `PushUsage`, `PushWorkspaceCosts`, `PushKeyCosts`, `PushBackfillDone`, `PushRetirementResults`,
//! `PushPollerStatus`. Each side accepts them only from the other process of the same package on
//! the same node: the issuer from the process named [`COST_POLLER`] ([`is_sibling`]), the poller from
//! the one other process ([`is_other_process_of_our_package`]), since a build may give the issuer
//! another name (README, "Deploying as a drop-in"); the poller reads that name from its package's
//! manifest ([`issuer_name_in_manifest`]).
//! The admin key crosses only in `SetAdminKey`, issuer → poller, in the message blob (a node prints
//! bodies, not blobs); API key secrets never cross: the poller sees hints only.

use serde::{Deserialize, Serialize};

use crate::cost::ModelUsage;
use crate::pool::{KeyId, Resolution};
use crate::{MicroUsd, Timestamp};

/// The cost-poller's process name, the same in every build. The key-issuer's name is a build
/// option, so no process assumes it.
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

/// `package:publisher` of a process id `process:package:publisher`.
fn package_of(process_id: &str) -> Option<&str> {
    process_id.split_once(':').map(|(_, package)| package).filter(|p| p.contains(':'))
}

/// Whether a message source is another process of this package on this node.
///
/// The package has two processes, so to the cost-poller this is the key-issuer, whatever name the
/// build gave it. The node assigns the package id when it installs the package, so no process of
/// another package carries it.
pub fn is_other_process_of_our_package(source_node: &str, source_process: &str, our_node: &str, our_process: &str) -> bool {
    source_node == our_node
        && source_process != our_process
        && package_of(source_process).is_some_and(|package| package_of(our_process) == Some(package))
}

/// Why the key-issuer's name could not be read from the package's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest.json is not a list of processes: {0}")]
    Unreadable(String),
    #[error("manifest.json lists {0} processes besides the cost-poller; the package has exactly one, the key-issuer")]
    NotOneIssuer(usize),
}

#[derive(Deserialize)]
struct ManifestEntry {
    process_name: String,
}

/// The key-issuer's process name: the one process in the package's manifest that is not the
/// cost-poller (`poller`, its own process name).
pub fn issuer_name_in_manifest(manifest: &[u8], poller: &str) -> Result<String, ManifestError> {
    let entries: Vec<ManifestEntry> = serde_json::from_slice(manifest).map_err(|e| ManifestError::Unreadable(e.to_string()))?;
    let mut others: Vec<String> = entries.into_iter().map(|e| e.process_name).filter(|name| name != poller).collect();
    match others.len() {
        1 => Ok(others.remove(0)),
        n => Err(ManifestError::NotOneIssuer(n)),
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

    #[test]
    fn the_pollers_issuer_is_the_other_process_of_its_package_on_its_node() {
        let poller = "cost-poller:anthropic-api-key-manager:ware.hypr";
        let issuer = "anthropic-api-key-manager:anthropic-api-key-manager:ware.hypr";
        let is_issuer = |node: &str, process: &str| is_other_process_of_our_package(node, process, "free-key-er.os", poller);
        assert!(is_issuer("free-key-er.os", issuer));
        assert!(is_issuer("free-key-er.os", "key-issuer:anthropic-api-key-manager:ware.hypr"));
        assert!(!is_issuer("alice.os", issuer), "another node");
        assert!(!is_issuer("free-key-er.os", poller), "itself");
        assert!(!is_issuer("free-key-er.os", "anthropic-api-key-manager:anthropic-api-key-manager:keymanager.os"), "another publisher");
        assert!(!is_issuer("free-key-er.os", "key-issuer:other-package:ware.hypr"), "another package");
        assert!(!is_issuer("free-key-er.os", "garbage"));
        assert!(!is_issuer("free-key-er.os", "x:ware.hypr"), "no package part");
    }

    #[test]
    fn the_issuers_name_is_read_from_the_manifest() {
        let manifest = br#"[{"process_name": "anthropic-api-key-manager", "public": true}, {"process_name": "cost-poller"}]"#;
        assert_eq!(issuer_name_in_manifest(manifest, COST_POLLER).unwrap(), "anthropic-api-key-manager");
        let default = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../pkg/manifest.json")).unwrap();
        assert_eq!(issuer_name_in_manifest(&default, COST_POLLER).unwrap(), "key-issuer");
        assert_eq!(issuer_name_in_manifest(br#"[{"process_name": "cost-poller"}]"#, COST_POLLER), Err(ManifestError::NotOneIssuer(0)));
        let three = br#"[{"process_name": "a"}, {"process_name": "b"}, {"process_name": "cost-poller"}]"#;
        assert_eq!(issuer_name_in_manifest(three, COST_POLLER), Err(ManifestError::NotOneIssuer(2)));
        assert!(matches!(issuer_name_in_manifest(b"{}", COST_POLLER), Err(ManifestError::Unreadable(_))));
    }
}
