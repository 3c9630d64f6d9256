//! The capabilities a node gives at install, and its kernel's rule for delivering a message
//! (hyperdrive `state.rs` bootstrap, app-store `install`, `kernel/mod.rs` event loop).
//!
//! The kernel checks **every** local message, requests and responses alike: unless the source is
//! `kernel`, `state` or `vfs`, the target must be public or the source must hold the messaging
//! capability on it. So a runtime module's answer (timer, sqlite, http-client, http-server...)
//! reaches a non-public process only if that process granted the module messaging in its manifest.
//! Messages leaving the node need the sender's `network` capability; messages arriving from
//! other nodes need the target's.

use std::collections::{HashMap, HashSet};

use crate::package::{parse_capability, ManifestEntry};

/// The node's runtime modules and whether each is public (hyperdrive `main.rs`), plus `kernel`
/// and `net`, which bootstrap registers the same way (not public).
pub const RUNTIME_MODULES: &[(&str, bool)] = &[
    ("http-server:distro:sys", false),
    ("http-client:distro:sys", false),
    ("timer:distro:sys", true),
    ("eth:distro:sys", false),
    ("vfs:distro:sys", false),
    ("state:distro:sys", false),
    ("kv:distro:sys", false),
    ("sqlite:distro:sys", false),
    ("fd-manager:distro:sys", false),
    ("notifications:distro:sys", false),
    ("kernel:distro:sys", false),
    ("net:distro:sys", false),
];

/// Sources the kernel lets message any local process.
pub const UNCHECKED_SOURCES: &[&str] = &["kernel:distro:sys", "state:distro:sys", "vfs:distro:sys"];

/// The homepage app of the distro: not public; it requests http-server, notifications and vfs
/// and grants http-server and notifications (its manifest).
const HOMEPAGE: &str = "homepage:homepage:sys";

/// Who holds which capability, as the routing rule needs it.
#[derive(Debug, Default, Clone)]
pub struct Capabilities {
    /// holder → processes on which it holds the messaging capability.
    messaging: HashMap<String, HashSet<String>>,
    network: HashSet<String>,
    public: HashSet<String>,
    /// Every process the node runs (runtime modules, the homepage, the package's processes).
    known: HashSet<String>,
}

impl Capabilities {
    /// The node's runtime modules and homepage, and the package's processes with what their
    /// manifest requests and grants. `manifest` has been checked by `package::parse_manifest`.
    pub fn for_package(manifest: &[ManifestEntry], package_id: &str) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.add_runtime_modules();
        caps.add_homepage();
        for entry in manifest {
            let id = format!("{}:{package_id}", entry.process_name);
            caps.known.insert(id.clone());
            if entry.public {
                caps.public.insert(id.clone());
            }
            if entry.request_networking {
                caps.network.insert(id.clone());
            }
            // A node gives each process messaging on itself.
            caps.grant_messaging(&id, &id);
            for cap in entry.request_capabilities.iter().filter_map(|c| parse_capability(c).ok()) {
                if cap.is_messaging() {
                    caps.grant_messaging(&id, &cap.process);
                }
            }
        }
        // Grants run once every process exists (a grant to an unknown process is lost).
        for entry in manifest {
            let granter = format!("{}:{package_id}", entry.process_name);
            for cap in entry.grant_capabilities.iter().filter_map(|c| parse_capability(c).ok()) {
                if cap.is_messaging() && caps.known.contains(&cap.process) {
                    caps.grant_messaging(&cap.process, &granter);
                }
            }
        }
        caps
    }

    /// Runtime modules hold messaging on each other, on `kernel` and `net`, and `network`.
    fn add_runtime_modules(&mut self) {
        for (module, public) in RUNTIME_MODULES {
            self.known.insert(module.to_string());
            self.network.insert(module.to_string());
            if *public {
                self.public.insert(module.to_string());
            }
            for (other, _) in RUNTIME_MODULES {
                self.grant_messaging(module, other);
            }
        }
    }

    fn add_homepage(&mut self) {
        self.known.insert(HOMEPAGE.to_string());
        for issuer in [HOMEPAGE, "http-server:distro:sys", "notifications:distro:sys", "vfs:distro:sys"] {
            self.grant_messaging(HOMEPAGE, issuer);
        }
        for grantee in ["http-server:distro:sys", "notifications:distro:sys"] {
            self.grant_messaging(grantee, HOMEPAGE);
        }
    }

    fn grant_messaging(&mut self, holder: &str, issuer: &str) {
        self.messaging.entry(holder.to_string()).or_default().insert(issuer.to_string());
    }

    pub fn is_known(&self, process: &str) -> bool {
        self.known.contains(process)
    }

    pub fn is_public(&self, process: &str) -> bool {
        self.public.contains(process)
    }

    pub fn has_network(&self, process: &str) -> bool {
        self.network.contains(process)
    }

    /// The local rule: the target is public, or the source holds messaging on it.
    pub fn may_message(&self, source: &str, target: &str) -> bool {
        UNCHECKED_SOURCES.contains(&source) || self.is_public(target) || self.messaging.get(source).is_some_and(|s| s.contains(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PKG: &str = "anthropic-api-key-manager:keymanager.os";
    const ISSUER: &str = "key-issuer:anthropic-api-key-manager:keymanager.os";
    const POLLER: &str = "cost-poller:anthropic-api-key-manager:keymanager.os";

    fn caps(poller_grants: serde_json::Value) -> Capabilities {
        let manifest = json!([
            {"process_name": "key-issuer", "process_wasm_path": "/k.wasm", "on_exit": "Restart", "request_networking": true,
             "request_capabilities": ["http-server:distro:sys", "sqlite:distro:sys"], "grant_capabilities": ["http-server:distro:sys"], "public": true},
            {"process_name": "cost-poller", "process_wasm_path": "/c.wasm", "on_exit": "Restart", "request_networking": false,
             "request_capabilities": ["http-client:distro:sys"], "grant_capabilities": poller_grants, "public": false},
        ]);
        let entries = crate::package::parse_manifest(&serde_json::to_vec(&manifest).unwrap(), PKG).unwrap();
        Capabilities::for_package(&entries, PKG)
    }

    #[test]
    fn a_module_answers_a_private_process_only_if_granted() {
        let without = caps(json!([]));
        assert!(!without.may_message("timer:distro:sys", POLLER));
        assert!(!without.may_message("http-client:distro:sys", POLLER));
        let with = caps(json!(["timer:distro:sys", {"process": "http-client:distro:sys", "params": "messaging"}]));
        assert!(with.may_message("timer:distro:sys", POLLER));
        assert!(with.may_message("http-client:distro:sys", POLLER));
    }

    #[test]
    fn public_targets_and_unchecked_sources_pass() {
        let c = caps(json!([]));
        assert!(c.may_message("sqlite:distro:sys", ISSUER), "the issuer is public");
        assert!(c.may_message("vfs:distro:sys", POLLER), "vfs may message anyone");
        assert!(c.may_message(POLLER, "timer:distro:sys"), "the timer is public");
    }

    #[test]
    fn requests_to_modules_need_a_requested_capability() {
        let c = caps(json!([]));
        assert!(c.may_message(ISSUER, "sqlite:distro:sys"));
        assert!(!c.may_message(POLLER, "sqlite:distro:sys"));
        assert!(!c.may_message(ISSUER, POLLER), "the poller granted the issuer nothing");
    }

    #[test]
    fn params_other_than_messaging_give_no_messaging() {
        let c = caps(json!([{"process": "timer:distro:sys", "params": {"kind": "read"}}]));
        assert!(!c.may_message("timer:distro:sys", POLLER));
    }

    #[test]
    fn network_is_only_what_was_requested() {
        let c = caps(json!([]));
        assert!(c.has_network(ISSUER));
        assert!(!c.has_network(POLLER));
    }
}
