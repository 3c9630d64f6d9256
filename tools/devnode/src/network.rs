//! The nodes one devnode runs and the ones it only simulates.
//!
//! Every node that runs a package has a kernel of its own (its processes, capabilities, state,
//! VFS and SQLite); the kernels hand messages for each other's node to one another through this
//! network, as nodes do over the net layer. A `--peer` node runs nothing: its messages come from
//! the control API. The nodes share one virtual clock (time is the same everywhere), one log
//! and one message-id counter.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use crate::kernel::{Clock, Kernel, LogLine};
use crate::timings::Timings;

/// Where a message for another node goes.
pub enum Reach {
    /// A node devnode runs: its kernel takes the message.
    Node(Arc<Kernel>),
    /// A simulated peer (`--peer`): it runs no process, so requests to it time out.
    Simulated,
    /// An unknown node, or one taken offline: the net layer answers `Offline`.
    Offline,
}

pub struct Network {
    kernels: RwLock<BTreeMap<String, Weak<Kernel>>>,
    simulated: HashSet<String>,
    /// Nodes taken offline through the control API: nothing reaches them, nothing leaves them.
    offline: Mutex<HashSet<String>>,
    pub clock: Arc<Clock>,
    next_id: AtomicU64,
    log: Log,
    /// Where messages' time goes, every node's (`GET /devnode/timings`); off unless asked for.
    pub timings: Timings,
}

impl Network {
    pub fn new(simulated: HashSet<String>, quiet: bool) -> Arc<Network> {
        Arc::new(Network {
            kernels: RwLock::new(BTreeMap::new()),
            simulated,
            offline: Mutex::new(HashSet::new()),
            clock: Arc::new(Clock::default()),
            next_id: AtomicU64::new(1),
            log: Log { lines: Mutex::new(Vec::new()), first_node: OnceLock::new(), quiet },
            timings: Timings::from_env(),
        })
    }

    /// Makes `kernel`'s node reachable from the others. The first node to join is the main one
    /// (`--node`): its log lines print without a node name, as with one node.
    pub fn join(&self, kernel: &Arc<Kernel>) {
        let _ = self.log.first_node.set(kernel.node.clone());
        self.kernels.write().unwrap().insert(kernel.node.clone(), Arc::downgrade(kernel));
    }

    pub fn kernel(&self, node: &str) -> Option<Arc<Kernel>> {
        self.kernels.read().unwrap().get(node).and_then(Weak::upgrade)
    }

    /// Every running node's kernel, by node name.
    pub fn kernels(&self) -> Vec<Arc<Kernel>> {
        self.kernels.read().unwrap().values().filter_map(Weak::upgrade).collect()
    }

    pub fn is_simulated(&self, node: &str) -> bool {
        self.simulated.contains(node)
    }

    /// Where a message from node `from` to node `to` goes.
    pub fn reach(&self, from: &str, to: &str) -> Reach {
        let offline = self.offline.lock().unwrap();
        if offline.contains(from) || offline.contains(to) {
            return Reach::Offline;
        }
        drop(offline);
        if let Some(kernel) = self.kernel(to) {
            return Reach::Node(kernel);
        }
        if self.simulated.contains(to) { Reach::Simulated } else { Reach::Offline }
    }

    /// Takes a node off the network (or puts it back): its processes go on running.
    pub fn set_offline(&self, node: &str, offline: bool) {
        let mut nodes = self.offline.lock().unwrap();
        if offline {
            nodes.insert(node.to_string());
        } else {
            nodes.remove(node);
        }
    }

    pub fn is_known(&self, node: &str) -> bool {
        self.simulated.contains(node) || self.kernels.read().unwrap().contains_key(node)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// True when no node has anything queued, handled or in flight.
    pub fn is_quiet(&self) -> bool {
        self.kernels().iter().all(|k| k.is_quiet())
    }

    pub fn log(&self, node: &str, process: &str, text: &str) {
        self.log.push(node, process, text);
    }

    pub fn logs_since(&self, since: u64) -> (u64, Vec<LogLine>) {
        self.log.since(since)
    }
}

/// The log of every node, in the order lines were written.
struct Log {
    lines: Mutex<Vec<LogLine>>,
    first_node: OnceLock<String>,
    quiet: bool,
}

impl Log {
    fn push(&self, node: &str, process: &str, text: &str) {
        let mut lines = self.lines.lock().unwrap();
        let seq = lines.len() as u64;
        if !self.quiet {
            if self.first_node.get().is_some_and(|first| first == node) {
                println!("[{process}] {text}");
            } else {
                println!("[{node} {process}] {text}");
            }
        }
        lines.push(LogLine { seq, node: node.to_string(), process: process.to_string(), text: text.to_string() });
    }

    fn since(&self, since: u64) -> (u64, Vec<LogLine>) {
        let lines = self.lines.lock().unwrap();
        let start = (since as usize).min(lines.len());
        (lines.len() as u64, lines[start..].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::kernel::ProcessEntry;
    use crate::types::{Addr, Delivery, Envelope, ErrorKind, Msg};

    const ISSUER: &str = "key-issuer:keys:pub.os";
    const CLIENT: &str = "client:asker:test.os";

    fn data_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("devnode-network-{name}-{}", std::process::id()))
    }

    /// A node on `network` running one process `process_id` (whose mailbox the test holds).
    fn node(network: &Arc<Network>, node: &str, process_id: &str, networking: bool) -> (Arc<Kernel>, UnboundedReceiver<Delivery>) {
        let kernel = Kernel::join(node.to_string(), network, data_dir(node));
        let (name, package) = process_id.split_once(':').unwrap();
        let manifest = json!([{"process_name": name, "process_wasm_path": "/p.wasm", "on_exit": "None", "request_networking": networking,
            "request_capabilities": [], "grant_capabilities": [], "public": true}]);
        let entries = crate::package::parse_manifest(&serde_json::to_vec(&manifest).unwrap(), package).unwrap();
        *kernel.caps.write().unwrap() = crate::caps::Capabilities::for_package(&entries, package);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        kernel.processes.lock().unwrap().insert(process_id.to_string(), ProcessEntry { tx });
        (kernel, rx)
    }

    fn request(id: u64, from: Addr, to: Addr, secs: u64) -> Envelope {
        Envelope { id, source: from.clone(), target: to, rsvp: Some(from), msg: Msg::request(b"ask".to_vec(), Some(secs)), blob: None }
    }

    fn response(id: u64, from: Addr, to: Addr) -> Envelope {
        Envelope { id, source: from, target: to, rsvp: None, msg: Msg::response(b"answer".to_vec()), blob: None }
    }

    async fn next(rx: &mut UnboundedReceiver<Delivery>) -> Delivery {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.expect("a delivery in time").expect("open mailbox")
    }

    fn error_kind(d: &Delivery) -> Option<ErrorKind> {
        match d {
            Delivery::Error { kind, .. } => Some(*kind),
            Delivery::Message(_) => None,
        }
    }

    #[tokio::test]
    async fn a_request_and_its_answer_cross_between_two_nodes() {
        let network = Network::new(HashSet::new(), true);
        let (operator, mut issuer_box) = node(&network, "operator.os", ISSUER, true);
        let (alice, mut client_box) = node(&network, "alice.os", CLIENT, true);
        let (client, issuer) = (Addr::new("alice.os", CLIENT), Addr::new("operator.os", ISSUER));
        alice.route(request(7, client.clone(), issuer.clone(), 5));
        let Delivery::Message(arrived) = next(&mut issuer_box).await else { panic!("the request arrives") };
        assert_eq!((arrived.id, &arrived.source), (7, &client));
        operator.route(response(7, issuer.clone(), client.clone()));
        let Delivery::Message(answer) = next(&mut client_box).await else { panic!("the answer arrives") };
        assert_eq!((answer.id, answer.msg.body()), (7, &b"answer"[..]));
        // The other way round too.
        operator.route(request(8, issuer.clone(), client.clone(), 5));
        assert!(matches!(next(&mut client_box).await, Delivery::Message(e) if e.id == 8));
    }

    #[tokio::test]
    async fn an_unknown_or_offline_node_is_offline_at_once() {
        let network = Network::new(HashSet::from(["sim.os".to_string()]), true);
        let (_operator, _issuer_box) = node(&network, "operator.os", ISSUER, true);
        let (alice, mut client_box) = node(&network, "alice.os", CLIENT, true);
        let client = Addr::new("alice.os", CLIENT);
        alice.route(request(1, client.clone(), Addr::new("nobody.os", ISSUER), 30));
        assert_eq!(error_kind(&next(&mut client_box).await), Some(ErrorKind::Offline));
        network.set_offline("operator.os", true);
        alice.route(request(2, client.clone(), Addr::new("operator.os", ISSUER), 30));
        assert_eq!(error_kind(&next(&mut client_box).await), Some(ErrorKind::Offline));
        network.set_offline("operator.os", false);
        // A simulated peer runs nothing: the request times out.
        alice.route(request(3, client, Addr::new("sim.os", ISSUER), 1));
        assert_eq!(error_kind(&next(&mut client_box).await), Some(ErrorKind::Timeout));
    }

    #[tokio::test]
    async fn networking_is_needed_on_both_ends() {
        let network = Network::new(HashSet::new(), true);
        let (_operator, mut issuer_box) = node(&network, "operator.os", ISSUER, false);
        let (alice, mut client_box) = node(&network, "alice.os", CLIENT, true);
        let (bob, mut bob_box) = node(&network, "bob.os", "client:asker:other.os", false);
        let client = Addr::new("alice.os", CLIENT);
        // The target may not receive from other nodes: dropped there, the sender times out.
        alice.route(request(1, client.clone(), Addr::new("operator.os", ISSUER), 1));
        assert_eq!(error_kind(&next(&mut client_box).await), Some(ErrorKind::Timeout));
        assert!(issuer_box.try_recv().is_err());
        // The sender may not send over the network: refused at once.
        bob.route(request(2, Addr::new("bob.os", "client:asker:other.os"), client, 30));
        assert_eq!(error_kind(&next(&mut bob_box).await), Some(ErrorKind::Timeout));
        assert!(client_box.try_recv().is_err());
        assert!(network.logs_since(0).1.iter().any(|l| l.text.contains("no request_networking")));
    }

    #[tokio::test]
    async fn a_late_answer_from_another_node_is_dropped() {
        let network = Network::new(HashSet::new(), true);
        let (operator, _issuer_box) = node(&network, "operator.os", ISSUER, true);
        let (alice, mut client_box) = node(&network, "alice.os", CLIENT, true);
        let (client, issuer) = (Addr::new("alice.os", CLIENT), Addr::new("operator.os", ISSUER));
        alice.route(request(1, client.clone(), issuer.clone(), 0));
        assert_eq!(error_kind(&next(&mut client_box).await), Some(ErrorKind::Timeout));
        operator.route(response(1, issuer, client));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(client_box.try_recv().is_err());
    }

    #[test]
    fn each_node_keeps_its_own_data_dir_and_all_share_the_clock() {
        let network = Network::new(HashSet::new(), true);
        let operator = Kernel::join("operator.os".into(), &network, data_dir("a"));
        let alice = Kernel::join("alice.os".into(), &network, crate::node::peer_data_dir(&data_dir("a"), "alice.os"));
        assert_ne!(operator.services.vfs_root(), alice.services.vfs_root());
        assert!(alice.data_dir.ends_with("nodes/alice.os"));
        network.clock.advance(60);
        assert_eq!(operator.clock.offset_ms(), 60_000);
        assert_eq!(alice.clock.offset_ms(), 60_000);
        assert_eq!(network.kernels().len(), 2);
    }
}
