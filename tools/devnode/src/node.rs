//! One node devnode runs: its kernel, its installed package and the tasks of its processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use wasmtime::Engine;

use crate::host::{self, ProcessSpec};
use crate::kernel::{Kernel, ProcessEntry};
use crate::types::Addr;

pub struct Node {
    pub kernel: Arc<Kernel>,
    pub package_id: String,
    /// The package's process ids, in manifest order.
    pub processes: Vec<String>,
    engine: Engine,
    specs: HashMap<String, Arc<ProcessSpec>>,
    tasks: HashMap<String, JoinHandle<()>>,
}

impl Node {
    /// Installs `package` on `kernel`'s node as a node does: unpacks it into the package drive,
    /// reads its manifest strictly, gives the capabilities it asks for, compiles each component.
    pub fn install(kernel: Arc<Kernel>, engine: &Engine, package: &Path, package_id: &str) -> Result<Node, String> {
        let drive = kernel.services.vfs_root().join(package_id).join("pkg");
        let manifest = crate::package::install(package, &drive, package_id)?;
        *kernel.caps.write().unwrap() = crate::caps::Capabilities::for_package(&manifest, package_id);
        let mut specs = HashMap::new();
        let mut processes = vec![];
        for entry in &manifest {
            let process_id = format!("{}:{package_id}", entry.process_name);
            let wasm = drive.join(entry.process_wasm_path.trim_start_matches('/'));
            let bytes = std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
            let component = wasmtime::component::Component::from_binary(engine, &bytes)
                .map_err(|e| format!("{} is not a valid component: {e:#}", entry.process_wasm_path))?;
            let spec = ProcessSpec { our: Addr::new(&kernel.node, &process_id), component, on_exit_restart: entry.restarts() };
            specs.insert(process_id.clone(), Arc::new(spec));
            processes.push(process_id);
        }
        Ok(Node { kernel, package_id: package_id.to_string(), processes, engine: engine.clone(), specs, tasks: HashMap::new() })
    }

    /// Starts every process, and the node's timers.
    pub fn start(&mut self) {
        for process in self.processes.clone() {
            self.start_process(&process);
        }
        tokio::spawn(self.kernel.clone().run_timers());
    }

    fn start_process(&mut self, process_id: &str) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.kernel.processes.lock().unwrap().insert(process_id.to_string(), ProcessEntry { tx });
        let task = tokio::spawn(host::run_process(self.kernel.clone(), self.engine.clone(), self.specs[process_id].clone(), rx));
        self.tasks.insert(process_id.to_string(), task);
    }

    /// Stops the process and starts it again from its persisted state.
    pub async fn restart(&mut self, process_id: &str) {
        if let Some(task) = self.tasks.remove(process_id) {
            task.abort();
            let _ = task.await;
        }
        self.kernel.log("devnode", &format!("restart of {process_id} requested"));
        self.start_process(process_id);
    }

    pub fn stop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }
}

/// `name:publisher` of a package: `explicit` (the flag), else the zip's name
/// (`<name>:<publisher>.zip`), else the `metadata.json` next to the package.
pub fn package_id(package: &Path, explicit: Option<&str>) -> Result<String, String> {
    if let Some(id) = explicit {
        return Ok(id.to_string());
    }
    let name = package.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if let Some(stem) = name.strip_suffix(".zip") {
        if stem.split(':').count() == 2 {
            return Ok(stem.to_string());
        }
    }
    let metadata = package.parent().map(|p| p.join("metadata.json")).filter(|p| p.exists());
    if let Some(path) = metadata {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", path.display()))?;
        if let (Some(n), Some(p)) = (v["properties"]["package_name"].as_str(), v["properties"]["publisher"].as_str()) {
            return Ok(format!("{n}:{p}"));
        }
    }
    Err(format!("cannot tell the package id of {}: name the zip <package>:<publisher>.zip or pass --package-id", package.display()))
}

/// Where a peer node keeps its state, VFS and SQLite: its own sub-directory of the data dir.
pub fn peer_data_dir(data_dir: &Path, node: &str) -> PathBuf {
    data_dir.join("nodes").join(node)
}
