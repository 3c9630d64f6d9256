//! The package under another identity (README, "Deploying as a drop-in"): another publisher and
//! another process name for the key-issuer, so that the package can live at an address a client
//! already calls (hyperdrive's spider asks
//! `free-key-er.os@anthropic-api-key-manager:anthropic-api-key-manager:ware.hypr`).
//!
//! The processes learn their package id from `our()` and the cost-poller reads the issuer's name
//! from the installed manifest, so the components are the same for every identity: an identity
//! build copies the built `pkg/`, rewrites its manifest, and zips it into its own directory,
//! `target/pkg-identities/<publisher>/<issuer process>/`. `pkg/` and the default zip stay as they are.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{package, paths, Result};

pub const DEFAULT_PUBLISHER: &str = "keymanager.os";
pub const DEFAULT_ISSUER_PROCESS: &str = "key-issuer";
/// The cost-poller keeps its name in every identity: the key-issuer finds it by that name.
const POLLER_PROCESS: &str = "cost-poller";

/// Publisher node and key-issuer process name of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub publisher: String,
    pub issuer_process: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity { publisher: DEFAULT_PUBLISHER.to_string(), issuer_process: DEFAULT_ISSUER_PROCESS.to_string() }
    }
}

impl Identity {
    pub fn is_default(&self) -> bool {
        *self == Identity::default()
    }

    /// Where this identity's `pkg/`, `metadata.json` and zip are written.
    pub fn out_dir(&self) -> PathBuf {
        paths::target().join("pkg-identities").join(&self.publisher).join(&self.issuer_process)
    }
}

/// `cargo xtask build` flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildOptions {
    pub identity: Identity,
    /// Give the package already built in `pkg/` the identity, without building it again.
    pub relabel_only: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum IdentityError {
    BadFlag(String),
    BadPublisher(String),
    BadProcessName(String),
    /// `--relabel-only` with the default identity: nothing to relabel.
    NothingToRelabel,
    /// The manifest has no process of the default issuer's name to rename.
    NoIssuerInManifest,
    Malformed(String),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityError::BadFlag(flag) => write!(f, "{flag} (build flags: --publisher NODE, --issuer-process NAME, --relabel-only)"),
            IdentityError::BadPublisher(p) => write!(f, "--publisher {p:?} is not a node name (lowercase labels of a-z, 0-9, '-' joined by '.', e.g. ware.hypr)"),
            IdentityError::BadProcessName(n) => write!(f, "--issuer-process {n:?} is not a usable process name (a-z, 0-9, '-'; not {POLLER_PROCESS})"),
            IdentityError::NothingToRelabel => write!(f, "--relabel-only needs --publisher or --issuer-process other than the defaults"),
            IdentityError::NoIssuerInManifest => write!(f, "pkg/manifest.json has no process named {DEFAULT_ISSUER_PROCESS} to rename"),
            IdentityError::Malformed(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for IdentityError {}

fn is_label(label: &str) -> bool {
    !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_publisher(publisher: &str) -> std::result::Result<(), IdentityError> {
    let labels: Vec<&str> = publisher.split('.').collect();
    if labels.len() >= 2 && labels.iter().all(|l| is_label(l)) {
        Ok(())
    } else {
        Err(IdentityError::BadPublisher(publisher.to_string()))
    }
}

fn check_process_name(name: &str) -> std::result::Result<(), IdentityError> {
    if is_label(name) && name != POLLER_PROCESS {
        Ok(())
    } else {
        Err(IdentityError::BadProcessName(name.to_string()))
    }
}

/// Parses `--publisher NODE`, `--issuer-process NAME` and `--relabel-only`.
pub fn parse_build_flags(args: &[String]) -> std::result::Result<BuildOptions, IdentityError> {
    let mut options = BuildOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| IdentityError::BadFlag(format!("{flag} needs a value")));
        match flag.as_str() {
            "--publisher" => options.identity.publisher = value()?,
            "--issuer-process" => options.identity.issuer_process = value()?,
            "--relabel-only" => options.relabel_only = true,
            other => return Err(IdentityError::BadFlag(format!("unknown flag {other}"))),
        }
    }
    check_publisher(&options.identity.publisher)?;
    check_process_name(&options.identity.issuer_process)?;
    if options.relabel_only && options.identity.is_default() {
        return Err(IdentityError::NothingToRelabel);
    }
    Ok(options)
}

/// A process id of the package (`process:package:old_publisher`) under the new identity.
fn relabel_process_id(id: &str, package_id: &str, identity: &Identity) -> Option<String> {
    let (process, rest) = id.split_once(':')?;
    if rest != package_id {
        return None;
    }
    let process = if process == DEFAULT_ISSUER_PROCESS { identity.issuer_process.as_str() } else { process };
    let package_name = package_id.split_once(':')?.0;
    Some(format!("{process}:{package_name}:{}", identity.publisher))
}

/// Rewrites one capability entry (a process id string, or `{"process": id, "params": ...}`).
fn relabel_capability(entry: &mut Value, package_id: &str, identity: &Identity) {
    let id = match entry {
        Value::String(id) => id,
        Value::Object(map) => match map.get_mut("process") {
            Some(Value::String(id)) => id,
            _ => return,
        },
        _ => return,
    };
    if let Some(relabelled) = relabel_process_id(id, package_id, identity) {
        *id = relabelled;
    }
}

/// The manifest under `identity`: the key-issuer renamed, and every capability naming a process of
/// this package (`package_id` = `package:default publisher`) moved to the new publisher and name.
pub fn relabel_manifest(manifest: &[u8], package_id: &str, identity: &Identity) -> std::result::Result<Vec<u8>, IdentityError> {
    let malformed = |what: &str| IdentityError::Malformed(format!("pkg/manifest.json: {what}"));
    let mut entries: Vec<Value> = serde_json::from_slice(manifest).map_err(|e| malformed(&e.to_string()))?;
    let mut renamed = false;
    for entry in &mut entries {
        let name = entry.get_mut("process_name").ok_or_else(|| malformed("an entry lacks process_name"))?;
        if name.as_str() == Some(DEFAULT_ISSUER_PROCESS) {
            *name = Value::String(identity.issuer_process.clone());
            renamed = true;
        }
        for list in ["request_capabilities", "grant_capabilities"] {
            for capability in entry.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                relabel_capability(capability, package_id, identity);
            }
        }
    }
    if !renamed {
        return Err(IdentityError::NoIssuerInManifest);
    }
    let mut bytes = serde_json::to_vec_pretty(&entries).map_err(|e| malformed(&e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// metadata.json with the new publisher.
pub fn relabel_metadata(metadata: &[u8], identity: &Identity) -> std::result::Result<Vec<u8>, IdentityError> {
    let malformed = |what: &str| IdentityError::Malformed(format!("metadata.json: {what}"));
    let mut value: Value = serde_json::from_slice(metadata).map_err(|e| malformed(&e.to_string()))?;
    let publisher = value.pointer_mut("/properties/publisher").ok_or_else(|| malformed("no properties.publisher"))?;
    *publisher = Value::String(identity.publisher.clone());
    let mut bytes = serde_json::to_vec_pretty(&value).map_err(|e| malformed(&e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Copies the built `pkg/` into `dest` (emptied first), all but its manifest.
fn copy_built_pkg(src: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| format!("clearing {}: {e}", dest.display()))?;
    }
    for rel in package::files_under(src)? {
        if rel == Path::new("manifest.json") {
            continue;
        }
        let to = dest.join(&rel);
        std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
        std::fs::copy(src.join(&rel), &to).map_err(|e| format!("copying pkg/{}: {e}", rel.display()))?;
    }
    Ok(())
}

/// Writes the package already built in `pkg/` under `identity` into [`Identity::out_dir`]; returns
/// the zip's path.
pub fn build(identity: &Identity) -> Result<PathBuf> {
    let root = paths::root();
    let metadata = std::fs::read(root.join("metadata.json")).map_err(|e| format!("metadata.json: {e}"))?;
    let package_id = package::package_id(&metadata)?;
    let manifest = std::fs::read(root.join("pkg/manifest.json")).map_err(|e| format!("pkg/manifest.json: {e}"))?;
    for process in package::manifest_processes(&manifest)? {
        if !root.join("pkg").join(&process.wasm_path).exists() {
            return Err(format!("pkg/{} is missing: run `cargo xtask build` first", process.wasm_path).into());
        }
    }
    let out = identity.out_dir();
    let pkg = out.join("pkg");
    copy_built_pkg(&root.join("pkg"), &pkg)?;
    paths::write_if_changed(&pkg.join("manifest.json"), &relabel_manifest(&manifest, &package_id, identity)?)?;
    paths::write_if_changed(&out.join("metadata.json"), &relabel_metadata(&metadata, identity)?)?;

    let package_name = package_id.split_once(':').map_or(package_id.as_str(), |(name, _)| name);
    let new_package_id = format!("{package_name}:{}", identity.publisher);
    let zip = package::zip_files(&pkg, &package::files_under(&pkg)?)?;
    let zip_path = out.join(format!("{new_package_id}.zip"));
    paths::write_if_changed(&zip_path, &zip)?;

    println!();
    println!("xtask: built {new_package_id} with the key-issuer as process {}", identity.issuer_process);
    println!("  address  <node>@{}:{new_package_id}", identity.issuer_process);
    println!("  sha256   {}", Sha256::digest(&zip).iter().map(|b| format!("{b:02x}")).collect::<String>());
    println!("  zip      {}", zip_path.display());
    Ok(zip_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn drop_in() -> Identity {
        Identity { publisher: "ware.hypr".into(), issuer_process: "anthropic-api-key-manager".into() }
    }

    #[test]
    fn build_flags_default_to_the_default_identity() {
        assert_eq!(parse_build_flags(&[]).unwrap(), BuildOptions::default());
        assert!(BuildOptions::default().identity.is_default());
        let options = parse_build_flags(&args(&["--publisher", "ware.hypr", "--issuer-process", "anthropic-api-key-manager"])).unwrap();
        assert_eq!(options.identity, drop_in());
        assert!(!options.relabel_only);
        assert!(parse_build_flags(&args(&["--publisher", "ware.hypr", "--relabel-only"])).unwrap().relabel_only);
    }

    #[test]
    fn bad_build_flags_are_refused() {
        let refused = |list: &[&str]| parse_build_flags(&args(list)).unwrap_err();
        assert!(matches!(refused(&["--publisher"]), IdentityError::BadFlag(_)));
        assert!(matches!(refused(&["--bogus"]), IdentityError::BadFlag(_)));
        assert!(matches!(refused(&["--publisher", "ware"]), IdentityError::BadPublisher(_)));
        assert!(matches!(refused(&["--publisher", "Ware.hypr"]), IdentityError::BadPublisher(_)));
        assert!(matches!(refused(&["--publisher", "ware..hypr"]), IdentityError::BadPublisher(_)));
        assert!(matches!(refused(&["--issuer-process", "a:b"]), IdentityError::BadProcessName(_)));
        assert!(matches!(refused(&["--issuer-process", ""]), IdentityError::BadProcessName(_)));
        assert!(matches!(refused(&["--issuer-process", "cost-poller"]), IdentityError::BadProcessName(_)));
        assert_eq!(refused(&["--relabel-only"]), IdentityError::NothingToRelabel);
    }

    #[test]
    fn the_real_manifest_is_relabelled_for_the_drop_in_address() {
        let manifest = std::fs::read(paths::root().join("pkg/manifest.json")).unwrap();
        let relabelled = relabel_manifest(&manifest, "anthropic-api-key-manager:keymanager.os", &drop_in()).unwrap();
        let entries: Vec<Value> = serde_json::from_slice(&relabelled).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e["process_name"].as_str().unwrap()).collect();
        assert_eq!(names, ["anthropic-api-key-manager", "cost-poller"]);
        let poller_grants: Vec<&str> = entries[1]["grant_capabilities"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(poller_grants.contains(&"anthropic-api-key-manager:anthropic-api-key-manager:ware.hypr"), "{poller_grants:?}");
        let text = String::from_utf8(relabelled.clone()).unwrap();
        assert!(!text.contains("keymanager.os") && !text.contains("key-issuer:"), "{text}");
        // The components keep their file names; only names and ids change.
        assert_eq!(entries[0]["process_wasm_path"], "/key-issuer.wasm");
        // System processes are left alone.
        assert!(text.contains("\"http-server:distro:sys\""));
        assert_eq!(package::manifest_processes(&relabelled).unwrap().len(), 2);
    }

    #[test]
    fn object_capabilities_and_other_packages_are_handled() {
        let manifest = br#"[{"process_name": "key-issuer", "process_wasm_path": "/k.wasm",
            "request_capabilities": [{"process": "cost-poller:p:old.os", "params": "x"}, "key-issuer:other:old.os"]}]"#;
        let out = relabel_manifest(manifest, "p:old.os", &drop_in()).unwrap();
        let entries: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(entries[0]["request_capabilities"][0]["process"], "cost-poller:p:ware.hypr");
        assert_eq!(entries[0]["request_capabilities"][0]["params"], "x");
        assert_eq!(entries[0]["request_capabilities"][1], "key-issuer:other:old.os");
        let no_issuer = br#"[{"process_name": "cost-poller", "process_wasm_path": "/c.wasm"}]"#;
        assert_eq!(relabel_manifest(no_issuer, "p:old.os", &drop_in()), Err(IdentityError::NoIssuerInManifest));
    }

    #[test]
    fn metadata_gets_the_new_publisher() {
        let metadata = std::fs::read(paths::root().join("metadata.json")).unwrap();
        let relabelled = relabel_metadata(&metadata, &drop_in()).unwrap();
        assert_eq!(package::package_id(&relabelled).unwrap(), "anthropic-api-key-manager:ware.hypr");
        assert!(relabel_metadata(b"{}", &drop_in()).is_err());
    }

    #[test]
    fn each_identity_has_its_own_directory() {
        let out = drop_in().out_dir();
        assert!(out.ends_with("pkg-identities/ware.hypr/anthropic-api-key-manager"), "{}", out.display());
        assert_ne!(out, Identity::default().out_dir());
    }
}
