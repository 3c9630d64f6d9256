//! `cargo xtask build`: WIT, wasm, components, UI, api.zip, the installable zip, and a summary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::paths::{self, run};
use crate::{component, identity, ui, wit, Result};

pub const WASM_TARGET: &str = "wasm32-wasip1";
const COMPONENT_BUDGET_BYTES: u64 = 1_500_000;
const COLD_BUILD_GOAL_SECS: u64 = 8 * 60;

pub struct Process {
    pub name: String,
    pub wasm_path: String,
}

/// Processes listed in `pkg/manifest.json`.
pub fn manifest_processes(manifest: &[u8]) -> Result<Vec<Process>> {
    let value: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| format!("pkg/manifest.json: {e}"))?;
    let entries = value.as_array().ok_or("pkg/manifest.json must be an array")?;
    let mut processes = vec![];
    for entry in entries {
        let name = entry["process_name"].as_str().ok_or("pkg/manifest.json: an entry lacks process_name")?;
        let wasm = entry["process_wasm_path"].as_str().ok_or("pkg/manifest.json: an entry lacks process_wasm_path")?;
        processes.push(Process { name: name.to_string(), wasm_path: wasm.trim_start_matches('/').to_string() });
    }
    if processes.is_empty() {
        return Err("pkg/manifest.json lists no process".into());
    }
    Ok(processes)
}

/// `package_name:publisher` from metadata.json.
pub fn package_id(metadata: &[u8]) -> Result<String> {
    let value: serde_json::Value = serde_json::from_slice(metadata).map_err(|e| format!("metadata.json: {e}"))?;
    let name = value["properties"]["package_name"].as_str().filter(|s| !s.is_empty());
    let publisher = value["properties"]["publisher"].as_str().filter(|s| !s.is_empty());
    match (name, publisher) {
        (Some(n), Some(p)) => Ok(format!("{n}:{p}")),
        _ => Err("metadata.json: properties.package_name and properties.publisher must be set".into()),
    }
}

pub fn ensure_wasm_target() -> Result<()> {
    let output = std::process::Command::new("rustc").args(["--print", "target-libdir", "--target", WASM_TARGET]).output();
    let installed = output
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.exists());
    if !installed {
        println!("xtask: installing the {WASM_TARGET} target");
        run(std::process::Command::new("rustup").args(["target", "add", WASM_TARGET]), "rustup target add")?;
    }
    Ok(())
}

/// Files of `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A reproducible zip of `files` (relative to `dir`): sorted, deflate, fixed time, mode 0755.
pub fn zip_files(dir: &Path, files: &[PathBuf]) -> Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let time = zip::DateTime::from_date_and_time(2023, 6, 19, 0, 0, 0).map_err(|_| "bad zip time")?;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(time)
        .unix_permissions(0o755);
    for rel in files {
        let name = rel.to_string_lossy().replace('\\', "/");
        writer.start_file(name, options)?;
        writer.write_all(&std::fs::read(dir.join(rel))?)?;
    }
    Ok(writer.finish()?.into_inner())
}

/// `cargo xtask build [--publisher NODE] [--issuer-process NAME] [--relabel-only]`: the package
/// under its default identity, then under the given one if it differs (see `identity`).
pub fn build_command(args: &[String]) -> Result<()> {
    let options = identity::parse_build_flags(args)?;
    if !options.relabel_only {
        build()?;
    }
    if !options.identity.is_default() {
        identity::build(&options.identity)?;
    }
    Ok(())
}

pub struct BuildReport {
    pub zip_path: PathBuf,
}

pub fn build() -> Result<BuildReport> {
    let started = Instant::now();
    let root = paths::root();
    let package = package_id(&std::fs::read(root.join("metadata.json")).map_err(|e| format!("metadata.json: {e}"))?)?;
    let manifest = std::fs::read(root.join("pkg/manifest.json")).map_err(|e| format!("pkg/manifest.json: {e}"))?;
    let processes = manifest_processes(&manifest)?;

    ensure_wasm_target()?;
    wit::assemble()?;

    let mut cargo = paths::cargo();
    cargo.args(["build", "--release", "--target", WASM_TARGET]);
    for p in &processes {
        cargo.args(["-p", &p.name]);
    }
    run(&mut cargo, "wasm build of the processes")?;

    let mut sizes = vec![];
    for p in &processes {
        let core = paths::target().join(WASM_TARGET).join("release").join(format!("{}.wasm", p.name.replace('-', "_")));
        let out = root.join("pkg").join(&p.wasm_path);
        let component = component::componentize(&core, &out)?;
        sizes.push((p.wasm_path.clone(), component.len() as u64));
    }

    ui::build()?;

    let api_dir = root.join("api");
    let api_files: Vec<PathBuf> = files_under(&api_dir)?.into_iter().filter(|f| f.extension().is_some_and(|e| e == "wit")).collect();
    paths::write_if_changed(&root.join("pkg/api.zip"), &zip_files(&api_dir, &api_files)?)?;

    let pkg_dir = root.join("pkg");
    let files = files_under(&pkg_dir)?;
    for p in &processes {
        if !files.iter().any(|f| f == Path::new(&p.wasm_path)) {
            return Err(format!("pkg/{} is missing after the build", p.wasm_path).into());
        }
    }
    let zip = zip_files(&pkg_dir, &files)?;
    let zip_path = paths::target().join("pkg").join(format!("{package}.zip"));
    paths::write_if_changed(&zip_path, &zip)?;
    // Also where `kit start-package` looks for it: kit names it with `Path::with_extension`, which
    // replaces the publisher's last dot-part (`...:keymanager.zip`; kit src/build/mod.rs).
    paths::write_if_changed(&paths::target().join(kit_zip_name(&package)), &zip)?;
    let sha = Sha256::digest(&zip);
    let elapsed = started.elapsed().as_secs();

    println!();
    println!("xtask: built {package}");
    println!("  {:<28} {:>12}  budget", "component", "bytes");
    for (name, size) in &sizes {
        let verdict = if *size < COMPONENT_BUDGET_BYTES { "< 1.5 MB: met" } else { "< 1.5 MB: NOT met" };
        println!("  {name:<28} {size:>12}  {verdict}");
    }
    println!("  {:<28} {:>12}", format!("{package}.zip"), zip.len());
    println!("  sha256 {}", sha.iter().map(|b| format!("{b:02x}")).collect::<String>());
    println!("  build time {elapsed} s (goal for a cold build: < {} min)", COLD_BUILD_GOAL_SECS / 60);
    println!("  zip: {}", zip_path.display());
    Ok(BuildReport { zip_path })
}

/// The zip's name as `kit start-package` computes it (`target/<package id>` with its extension
/// set to `zip`).
fn kit_zip_name(package: &str) -> PathBuf {
    PathBuf::from(package).with_extension("zip")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_is_reproducible() {
        let dir = std::env::temp_dir().join(format!("xtask-zip-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("ui")).unwrap();
        std::fs::write(dir.join("manifest.json"), b"[]").unwrap();
        std::fs::write(dir.join("ui/index.html"), b"<p>hi</p>").unwrap();
        let files = files_under(&dir).unwrap();
        assert_eq!(files, vec![PathBuf::from("manifest.json"), PathBuf::from("ui/index.html")]);
        let a = zip_files(&dir, &files).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = zip_files(&dir, &files).unwrap();
        assert_eq!(a, b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifest_and_metadata_are_read() {
        let processes = manifest_processes(br#"[{"process_name":"a","process_wasm_path":"/a.wasm"}]"#).unwrap();
        assert_eq!(processes[0].wasm_path, "a.wasm");
        assert!(manifest_processes(b"[]").is_err());
        assert!(manifest_processes(b"{}").is_err());
        assert_eq!(package_id(br#"{"properties":{"package_name":"p","publisher":"x.os"}}"#).unwrap(), "p:x.os");
        assert!(package_id(br#"{"properties":{"package_name":""}}"#).is_err());
    }

    /// kit (src/build/mod.rs) builds every top-level folder holding `src/lib.rs`, `src/lib.py` or
    /// `src/lib.js` as a process, and names its wasm after the folder: those folders must be
    /// exactly the manifest's processes, so `kit build` works on this repo as it is.
    #[test]
    fn kit_finds_exactly_the_manifests_processes() {
        let root = paths::root();
        let mut kit_processes: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|dir| ["src/lib.rs", "src/lib.py", "src/lib.js"].iter().any(|src| dir.join(src).exists()))
            .map(|dir| format!("{}.wasm", dir.file_name().unwrap().to_string_lossy()))
            .collect();
        kit_processes.sort();
        let manifest = std::fs::read(root.join("pkg/manifest.json")).unwrap();
        let mut wasm: Vec<String> = manifest_processes(&manifest).unwrap().into_iter().map(|p| p.wasm_path).collect();
        wasm.sort();
        assert_eq!(kit_processes, wasm, "top-level folders kit would build as processes");
    }

    #[test]
    fn the_zip_is_where_kit_start_package_looks() {
        assert_eq!(kit_zip_name("anthropic-api-key-manager:keymanager.os"), PathBuf::from("anthropic-api-key-manager:keymanager.zip"));
        assert_eq!(kit_zip_name("free-key-er:ware.hypr"), PathBuf::from("free-key-er:ware.zip"));
    }

    /// kit refuses to build when crates ask for `hyperware_process_lib` with different version
    /// requirements as written (kit src/build/mod.rs `check_process_lib_version`), including
    /// `hyperapp_macro`'s own.
    #[test]
    fn every_crate_asks_for_the_same_process_lib_version() {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--offline", "--manifest-path"])
            .arg(paths::root().join("Cargo.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
        let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut requirements = std::collections::BTreeMap::<String, Vec<String>>::new();
        for package in metadata["packages"].as_array().unwrap() {
            for dep in package["dependencies"].as_array().unwrap() {
                if dep["name"] == "hyperware_process_lib" && dep["kind"].is_null() {
                    requirements.entry(dep["req"].as_str().unwrap().to_string()).or_default().push(package["name"].as_str().unwrap().to_string());
                }
            }
        }
        assert_eq!(requirements.len(), 1, "kit build would refuse: {requirements:?}");
    }

    #[test]
    fn the_real_manifest_names_both_processes() {
        let manifest = std::fs::read(paths::root().join("pkg/manifest.json")).unwrap();
        let names: Vec<String> = manifest_processes(&manifest).unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["key-issuer", "cost-poller"]);
    }
}
