//! devnode: a local Hyperware node emulator on wasmtime that runs a built package offline.
//! See docs/devnode.md.

pub mod caps;

/// `DEVNODE_TRACE=1`: every routed message is printed. Read once: a lookup of the environment
/// at every message shows in the benchmark's routing time.
pub fn tracing_messages() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("DEVNODE_TRACE").is_some())
}
pub mod host;
pub mod http;
pub mod kernel;
pub mod network;
pub mod node;
pub mod package;
pub mod services;
pub mod timings;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use kernel::Kernel;
use network::Network;
use node::Node;

pub struct Config {
    pub package: PathBuf,
    pub package_id: Option<String>,
    pub data_dir: PathBuf,
    pub http_port: u16,
    pub control_port: u16,
    pub password: String,
    pub node: String,
    /// Simulated nodes: they run nothing, their messages come from the control API.
    pub peers: Vec<String>,
    /// Nodes that run a package of their own (`--peer-package NODE=ZIP`).
    pub peer_packages: Vec<PeerPackage>,
    pub quiet: bool,
}

/// A peer node and the package it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPackage {
    pub node: String,
    pub package: PathBuf,
}

impl PeerPackage {
    /// Parses `NODE=ZIP` (or `NODE=<pkg dir>`).
    pub fn parse(arg: &str) -> Result<PeerPackage, String> {
        match arg.split_once('=') {
            Some((node, package)) if !node.is_empty() && !package.is_empty() => Ok(PeerPackage { node: node.to_string(), package: PathBuf::from(package) }),
            _ => Err(format!("--peer-package needs NODE=ZIP, not {arg:?}")),
        }
    }
}

fn check_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.contains('.') && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(format!("invalid node name {name:?} (expected e.g. alice.os)")) }
}

/// Every node name is valid and appears once: the main node, the simulated peers, the peers
/// that run a package.
fn check_nodes(config: &Config) -> Result<(), String> {
    check_node_name(&config.node)?;
    let mut seen = std::collections::HashSet::from([config.node.as_str()]);
    let others = config.peers.iter().chain(config.peer_packages.iter().map(|p| &p.node));
    for peer in others {
        check_node_name(peer)?;
        if *peer == config.node {
            return Err(format!("peer {peer} is the operator node itself"));
        }
        if !seen.insert(peer) {
            return Err(format!("peer {peer} is named twice"));
        }
    }
    Ok(())
}

pub async fn run(config: Config) -> Result<(), String> {
    check_nodes(&config)?;
    if config.password.is_empty() {
        return Err("--password must not be empty".to_string());
    }
    let package_id = node::package_id(&config.package, config.package_id.as_deref())?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("data dir {}: {e}", config.data_dir.display()))?;
    let network = Network::new(config.peers.iter().cloned().collect(), config.quiet);
    if let Ok(text) = std::fs::read_to_string(config.data_dir.join("clock-offset-ms")) {
        network.clock.set_offset_ms(text.trim().parse().map_err(|_| "data dir: clock-offset-ms is corrupt".to_string())?);
    }
    let engine = host::engine().map_err(|e| format!("wasmtime: {e}"))?;
    // The main node first: it joins the network first, and keeps the data dir's top level.
    let kernel = Kernel::join(config.node.clone(), &network, config.data_dir.clone());
    let mut nodes = BTreeMap::new();
    nodes.insert(config.node.clone(), Node::install(kernel.clone(), &engine, &config.package, &package_id)?);
    for peer in &config.peer_packages {
        let peer_kernel = Kernel::join(peer.node.clone(), &network, node::peer_data_dir(&config.data_dir, &peer.node));
        let peer_package_id = node::package_id(&peer.package, None)?;
        let installed = Node::install(peer_kernel, &engine, &peer.package, &peer_package_id).map_err(|e| format!("{} (--peer-package {}): {e}", peer.package.display(), peer.node))?;
        nodes.insert(peer.node.clone(), installed);
    }
    for node in nodes.values_mut() {
        node.start();
    }

    let http_listener = TcpListener::bind(("127.0.0.1", config.http_port)).await.map_err(|e| format!("http port {}: {e}", config.http_port))?;
    let control_listener = TcpListener::bind(("127.0.0.1", config.control_port)).await.map_err(|e| format!("control port {}: {e}", config.control_port))?;
    let http_addr = http_listener.local_addr().map_err(|e| e.to_string())?;
    let control_addr = control_listener.local_addr().map_err(|e| e.to_string())?;

    let token: String = {
        use rand::Rng;
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(48).map(char::from).collect()
    };
    let node_http = Arc::new(http::NodeHttp { kernel: kernel.clone(), password: config.password.clone(), token });
    tokio::spawn(http::serve(http_listener, move |req, peer| node_http.clone().handle(req, peer)));
    let (restart_tx, mut restart_rx) = tokio::sync::mpsc::unbounded_channel::<http::RestartOrder>();
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let processes = nodes.iter().map(|(name, node)| (name.clone(), node.processes.clone())).collect();
    let control = Arc::new(http::Control { kernel: kernel.clone(), processes, restart: restart_tx, shutdown: shutdown_tx });
    tokio::spawn(http::serve(control_listener, move |req, peer| control.clone().handle(req, peer)));

    println!("devnode ready http=http://{http_addr} control=http://{control_addr} node={} package={package_id}", config.node);
    for (name, node) in nodes.iter().filter(|(name, _)| **name != config.node) {
        kernel.log("devnode", &format!("peer {name} runs {}", node.package_id));
    }
    loop {
        tokio::select! {
            Some(order) = restart_rx.recv() => {
                if let Some(node) = nodes.get_mut(&order.node) {
                    node.restart(&order.process).await;
                }
                let _ = order.done.send(());
            }
            _ = shutdown_rx.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    kernel.log("devnode", "shutting down");
    for node in nodes.values_mut() {
        node.stop();
    }
    Ok(())
}

pub fn default_data_dir() -> PathBuf {
    Path::new("target").join("devnode-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(peers: &[&str], peer_packages: &[&str]) -> Config {
        Config {
            package: PathBuf::from("p.zip"),
            package_id: None,
            data_dir: PathBuf::new(),
            http_port: 0,
            control_port: 0,
            password: "pw".into(),
            node: "operator.os".into(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            peer_packages: peer_packages.iter().map(|p| PeerPackage::parse(p).unwrap()).collect(),
            quiet: true,
        }
    }

    #[test]
    fn peer_packages_are_node_equals_package() {
        assert_eq!(PeerPackage::parse("alice.os=a:b.os.zip").unwrap(), PeerPackage { node: "alice.os".into(), package: PathBuf::from("a:b.os.zip") });
        assert!(PeerPackage::parse("alice.os").is_err());
        assert!(PeerPackage::parse("=x.zip").is_err());
    }

    #[test]
    fn every_node_is_named_once() {
        assert!(check_nodes(&config(&["bob.os"], &["alice.os=x.zip"])).is_ok());
        assert!(check_nodes(&config(&["alice.os"], &["alice.os=x.zip"])).unwrap_err().contains("twice"));
        assert!(check_nodes(&config(&[], &["operator.os=x.zip"])).unwrap_err().contains("operator node itself"));
        assert!(check_nodes(&config(&[], &["Alice=x.zip"])).unwrap_err().contains("invalid node name"));
    }
}
