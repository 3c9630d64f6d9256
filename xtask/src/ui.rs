//! Builds the dashboard into `pkg/ui` (Vite app when `ui/package.json` exists; static files otherwise).

use std::path::Path;
use std::process::Command;

use crate::paths::{self, run};
use crate::Result;

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &dst, skip)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn npm() -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(paths::root().join("ui"));
    cmd
}

/// Whether `npm ci` must run: no node_modules, or the lock file is newer than it.
fn needs_install(ui: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&ui.join("package-lock.json")), modified(&ui.join("node_modules/.package-lock.json"))) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    }
}

/// Budget for the production bundle: JS and CSS together, gzipped.
const BUNDLE_BUDGET_GZIP_BYTES: u64 = 250 * 1024;

/// Gzipped size of every JS and CSS file under `dir`.
fn gzipped_size(dir: &Path) -> Result<u64> {
    use std::io::Write;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            total += gzipped_size(&path)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("js" | "css")) {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&std::fs::read(&path)?)?;
            total += gz.finish()?.len() as u64;
        }
    }
    Ok(total)
}

/// Prints the bundle's gzipped size against its budget (a goal, not a failure).
fn report_bundle_size(out: &Path) -> Result<()> {
    let size = gzipped_size(out)?;
    let verdict = if size <= BUNDLE_BUDGET_GZIP_BYTES { "within" } else { "OVER" };
    println!(
        "xtask: UI bundle {:.1} KB gzipped (JS + CSS), {verdict} the {} KB budget",
        size as f64 / 1024.0,
        BUNDLE_BUDGET_GZIP_BYTES / 1024
    );
    Ok(())
}

/// Installs the UI's npm dependencies when they are missing or older than the lock file.
pub fn ensure_npm_deps() -> Result<()> {
    let ui = paths::root().join("ui");
    if needs_install(&ui) {
        run(npm().args(["ci", "--no-audit", "--no-fund"]), "npm ci in ui/")?;
    }
    Ok(())
}

/// The UI's unit tests (Vitest).
pub fn unit_tests() -> Command {
    let mut cmd = npm();
    cmd.args(["run", "test"]);
    cmd
}

pub fn build() -> Result<()> {
    let ui = paths::root().join("ui");
    let out = paths::root().join("pkg").join("ui");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    if ui.join("package.json").exists() {
        ensure_npm_deps()?;
        run(npm().args(["run", "build"]), "UI build (npm run build)")?;
        copy_dir(&ui.join("dist"), &out, &[])?;
        report_bundle_size(&out)?;
    } else if ui.join("index.html").exists() {
        copy_dir(&ui, &out, &["node_modules", "dist"])?;
    } else {
        return Err("ui/ has neither package.json nor index.html; the key-issuer needs pkg/ui".into());
    }
    println!("xtask: UI built into pkg/ui");
    Ok(())
}
