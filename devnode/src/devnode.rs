//! devnode: a local Hyperware node emulator on wasmtime that runs a built package offline.
//! See docs/devnode.md.

pub mod caps;
pub mod host;
pub mod http;
pub mod kernel;
pub mod package;
pub mod services;
pub mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use kernel::{Kernel, ProcessEntry};
use types::Addr;

pub struct Config {
    pub package: PathBuf,
    pub package_id: Option<String>,
    pub data_dir: PathBuf,
    pub http_port: u16,
    pub control_port: u16,
    pub password: String,
    pub node: String,
    pub peers: Vec<String>,
    pub quiet: bool,
}

/// `name:publisher` from the zip name, the package's metadata.json, or the flag.
fn package_id(config: &Config) -> Result<String, String> {
    if let Some(id) = &config.package_id {
        return Ok(id.clone());
    }
    let name = config.package.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if let Some(stem) = name.strip_suffix(".zip") {
        if stem.split(':').count() == 2 {
            return Ok(stem.to_string());
        }
    }
    let metadata = config.package.parent().map(|p| p.join("metadata.json")).filter(|p| p.exists());
    if let Some(path) = metadata {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", path.display()))?;
        if let (Some(n), Some(p)) = (v["properties"]["package_name"].as_str(), v["properties"]["publisher"].as_str()) {
            return Ok(format!("{n}:{p}"));
        }
    }
    Err("cannot tell the package id: name the zip <package>:<publisher>.zip or pass --package-id".to_string())
}

fn check_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.contains('.') && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(format!("invalid node name {name:?} (expected e.g. alice.os)")) }
}

pub async fn run(config: Config) -> Result<(), String> {
    check_node_name(&config.node)?;
    for peer in &config.peers {
        check_node_name(peer)?;
        if *peer == config.node {
            return Err(format!("peer {peer} is the operator node itself"));
        }
    }
    if config.password.is_empty() {
        return Err("--password must not be empty".to_string());
    }
    let package_id = package_id(&config)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("data dir {}: {e}", config.data_dir.display()))?;
    let kernel = Kernel::new(config.node.clone(), config.peers.iter().cloned().collect(), config.data_dir.clone(), config.quiet);
    if let Ok(text) = std::fs::read_to_string(config.data_dir.join("clock-offset-ms")) {
        kernel.clock.set_offset_ms(text.trim().parse().map_err(|_| "data dir: clock-offset-ms is corrupt".to_string())?);
    }
    let drive = kernel.services.vfs_root().join(&package_id).join("pkg");
    let manifest = package::install(&config.package, &drive, &package_id)?;
    *kernel.caps.write().unwrap() = caps::Capabilities::for_package(&manifest, &package_id);

    let engine = host::engine().map_err(|e| format!("wasmtime: {e}"))?;
    let mut specs: HashMap<String, Arc<host::ProcessSpec>> = HashMap::new();
    let mut order = vec![];
    for entry in &manifest {
        let process_id = format!("{}:{package_id}", entry.process_name);
        let wasm = drive.join(entry.process_wasm_path.trim_start_matches('/'));
        let bytes = std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
        let component = wasmtime::component::Component::from_binary(&engine, &bytes)
            .map_err(|e| format!("{} is not a valid component: {e:#}", entry.process_wasm_path))?;
        specs.insert(
            process_id.clone(),
            Arc::new(host::ProcessSpec { our: Addr::new(&config.node, &process_id), component, on_exit_restart: entry.restarts() }),
        );
        order.push(process_id);
    }

    let mut handles: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let start = |process_id: &str, handles: &mut HashMap<String, tokio::task::JoinHandle<()>>| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        kernel.processes.lock().unwrap().insert(
            process_id.to_string(),
            ProcessEntry { tx },
        );
        let handle = tokio::spawn(host::run_process(kernel.clone(), engine.clone(), specs[process_id].clone(), rx));
        handles.insert(process_id.to_string(), handle);
    };
    for id in &order {
        start(id, &mut handles);
    }
    tokio::spawn(kernel.clone().run_timers());

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
    let (restart_tx, mut restart_rx) = tokio::sync::mpsc::unbounded_channel::<(String, tokio::sync::oneshot::Sender<()>)>();
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let control = Arc::new(http::Control { kernel: kernel.clone(), package_processes: order.clone(), restart: restart_tx, shutdown: shutdown_tx });
    tokio::spawn(http::serve(control_listener, move |req, peer| control.clone().handle(req, peer)));

    println!("devnode ready http=http://{http_addr} control=http://{control_addr} node={} package={package_id}", config.node);
    loop {
        tokio::select! {
            Some((process, done)) = restart_rx.recv() => {
                if let Some(handle) = handles.remove(&process) {
                    handle.abort();
                    let _ = handle.await;
                }
                kernel.log("devnode", &format!("restart of {process} requested"));
                start(&process, &mut handles);
                let _ = done.send(());
            }
            _ = shutdown_rx.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    kernel.log("devnode", "shutting down");
    for (_, handle) in handles {
        handle.abort();
    }
    Ok(())
}

pub fn default_data_dir() -> PathBuf {
    Path::new("target").join("devnode-data")
}
