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

pub fn build() -> Result<()> {
    let ui = paths::root().join("ui");
    let out = paths::root().join("pkg").join("ui");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    if ui.join("package.json").exists() {
        if needs_install(&ui) {
            let install = if ui.join("package-lock.json").exists() { "ci" } else { "install" };
            run(npm().args([install, "--no-audit", "--no-fund"]), "npm install of ui/")?;
        }
        run(npm().args(["run", "build"]), "UI build (npm run build)")?;
        copy_dir(&ui.join("dist"), &out, &[])?;
    } else if ui.join("index.html").exists() {
        copy_dir(&ui, &out, &["node_modules", "dist"])?;
    } else {
        return Err("ui/ has neither package.json nor index.html; the key-issuer needs pkg/ui".into());
    }
    println!("xtask: UI built into pkg/ui");
    Ok(())
}
