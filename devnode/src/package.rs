//! Loading a built package (zip or `pkg/` directory) and its manifest.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestEntry {
    pub process_name: String,
    pub process_wasm_path: String,
    #[serde(default)]
    pub on_exit: serde_json::Value,
    #[serde(default)]
    pub request_networking: bool,
    #[serde(default)]
    pub request_capabilities: Vec<serde_json::Value>,
    #[serde(default)]
    pub grant_capabilities: Vec<serde_json::Value>,
    #[serde(default)]
    pub public: bool,
}

impl ManifestEntry {
    pub fn restarts(&self) -> bool {
        self.on_exit.as_str() == Some("Restart")
    }
}

/// Process id named by a capability entry (a string, or `{"process": ...}`).
pub fn capability_process(entry: &serde_json::Value) -> Option<String> {
    entry.as_str().map(str::to_string).or_else(|| entry.get("process").and_then(|p| p.as_str()).map(str::to_string))
}

/// Unpacks the package into `dest` (the package drive) and reads its manifest.
pub fn install(package: &Path, dest: &Path) -> Result<Vec<ManifestEntry>, String> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| format!("clearing {}: {e}", dest.display()))?;
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    if package.is_dir() {
        copy_dir(package, dest).map_err(|e| format!("copying the package from {}: {e}", package.display()))?;
    } else {
        let file = std::fs::File::open(package).map_err(|e| format!("opening {}: {e}", package.display()))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("{} is not a zip: {e}", package.display()))?;
        archive.extract(dest).map_err(|e| format!("unpacking {}: {e}", package.display()))?;
    }
    let manifest = std::fs::read(dest.join("manifest.json")).map_err(|_| format!("{} has no manifest.json", package.display()))?;
    let entries: Vec<ManifestEntry> = serde_json::from_slice(&manifest).map_err(|e| format!("manifest.json: {e}"))?;
    if entries.is_empty() {
        return Err("manifest.json lists no process".to_string());
    }
    Ok(entries)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
