//! Assembles `target/wit` (`paths::wit_dir`): the platform's `hyperware.wit` (from the process_lib crate source) plus `api/*.wit`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::paths::{self, write_if_changed};
use crate::Result;

/// Directory of the `hyperware_process_lib` crate source, from `cargo metadata`.
fn process_lib_dir() -> Result<PathBuf> {
    let output = paths::cargo()
        .args(["metadata", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "hyperware_process_lib")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("cargo metadata lists no hyperware_process_lib package")?;
    Ok(PathBuf::from(manifest).parent().ok_or("bad manifest path")?.to_path_buf())
}

pub fn assemble() -> Result<()> {
    let out = paths::wit_dir();
    std::fs::create_dir_all(&out)?;
    let platform = process_lib_dir()?.join("hyperware-wit").join("hyperware.wit");
    let mut wanted = BTreeSet::new();
    let bytes = std::fs::read(&platform).map_err(|e| format!("reading {}: {e}", platform.display()))?;
    write_if_changed(&out.join("hyperware.wit"), &bytes)?;
    wanted.insert("hyperware.wit".to_string());
    for entry in std::fs::read_dir(paths::root().join("api"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") {
            let name = path.file_name().expect("file").to_string_lossy().to_string();
            write_if_changed(&out.join(&name), &std::fs::read(&path)?)?;
            wanted.insert(name);
        }
    }
    // Drop files that no longer exist in api/.
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        let name = path.file_name().expect("file").to_string_lossy().to_string();
        if !wanted.contains(&name) {
            std::fs::remove_file(&path)?;
        }
    }
    println!("xtask: target/wit assembled ({} files)", wanted.len());
    Ok(())
}
