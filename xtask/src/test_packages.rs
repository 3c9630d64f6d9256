//! Test-only packages, built for the end-to-end tests and the benchmark, never part of the shipped
//! zip: `tools/peer-client`, a process for another node that asks the dispenser for a key with
//! `clients/key-client` (devnode runs it with `--peer-package alice.os=<its zip>`), and
//! `tools/echo`, which answers every request with a fixed body: the floor `cargo xtask bench`
//! measures issuance against (devnode runs it as the `--package` of a devnode of its own).

use std::path::{Path, PathBuf};

use crate::package::{self, WASM_TARGET};
use crate::paths::{self, run};
use crate::{component, wit, Result};

/// Each folder holds `metadata.json`, `pkg/manifest.json` and one crate per process, named
/// after it.
const TEST_PACKAGES: &[&str] = &["tools/peer-client", "tools/echo"];

/// Where the zips land: `target/test-packages/<package>:<publisher>.zip`.
pub fn dir() -> PathBuf {
    paths::target().join("test-packages")
}

/// Builds every test package's processes (one cargo run), componentizes them and writes each
/// package's zip (untouched when nothing changed).
pub fn build() -> Result<Vec<PathBuf>> {
    package::ensure_wasm_target()?;
    wit::assemble()?;
    let mut packages = vec![];
    for folder in TEST_PACKAGES {
        let source = paths::root().join(folder);
        let id = package::package_id(&std::fs::read(source.join("metadata.json")).map_err(|e| format!("{folder}/metadata.json: {e}"))?)?;
        let manifest = std::fs::read(source.join("pkg/manifest.json")).map_err(|e| format!("{folder}/pkg/manifest.json: {e}"))?;
        packages.push((source, id, manifest));
    }
    let mut cargo = paths::cargo();
    cargo.args(["build", "--release", "--target", WASM_TARGET]);
    for (_, _, manifest) in &packages {
        for p in package::manifest_processes(manifest)? {
            cargo.args(["-p", &p.name]);
        }
    }
    run(&mut cargo, "wasm build of the test packages")?;
    let mut zips = vec![];
    for (source, id, manifest) in &packages {
        zips.push(assemble(source, id, manifest)?);
    }
    Ok(zips)
}

/// `target/test-packages/<name>/pkg` (manifest and components) zipped to `<id>.zip`.
fn assemble(source: &Path, id: &str, manifest: &[u8]) -> Result<PathBuf> {
    let name = id.split(':').next().unwrap_or(id);
    let pkg = dir().join(name).join("pkg");
    paths::write_if_changed(&pkg.join("manifest.json"), manifest)?;
    for p in package::manifest_processes(manifest)? {
        let core = paths::target().join(WASM_TARGET).join("release").join(format!("{}.wasm", p.name.replace('-', "_")));
        component::componentize(&core, &pkg.join(&p.wasm_path)).map_err(|e| format!("{}: {e}", source.display()))?;
    }
    let zip = dir().join(format!("{id}.zip"));
    paths::write_if_changed(&zip, &package::zip_files(&pkg, &package::files_under(&pkg)?)?)?;
    println!("xtask: test package {}", zip.display());
    Ok(zip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_package_names_its_processes_and_identity() {
        for folder in TEST_PACKAGES {
            let source = paths::root().join(folder);
            let id = package::package_id(&std::fs::read(source.join("metadata.json")).unwrap()).unwrap();
            assert_ne!(id, "anthropic-api-key-manager:keymanager.os", "{folder} must not pose as the shipped package");
            let processes = package::manifest_processes(&std::fs::read(source.join("pkg/manifest.json")).unwrap()).unwrap();
            for p in processes {
                assert!(source.join("Cargo.toml").exists() || source.join(&p.name).join("Cargo.toml").exists(), "{folder}: no crate for {}", p.name);
            }
        }
    }
}
