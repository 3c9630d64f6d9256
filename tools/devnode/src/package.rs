//! Loading a built package (zip or `pkg/` directory) and its manifest.
//!
//! The manifest is read as strictly as a node reads it (hyperdrive `PackageManifestEntry`): every
//! one of the seven fields is required, `on_exit` must be one of the node's variants, and process
//! ids must be Hypermap-safe. A node panics at boot (or the app store refuses the install) where
//! devnode exits with an error naming the entry and the field.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// One process of `manifest.json`. No field has a default: a node refuses an entry missing any.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestEntry {
    pub process_name: String,
    pub process_wasm_path: String,
    pub on_exit: OnExit,
    pub request_networking: bool,
    pub request_capabilities: Vec<Value>,
    pub grant_capabilities: Vec<Value>,
    pub public: bool,
}

/// The node's `OnExit` (externally tagged: `"None"`, `"Restart"`, `{"Requests": [...]}`).
#[derive(Debug, Clone, Deserialize)]
pub enum OnExit {
    None,
    Restart,
    /// `[address, request, blob?]` triples; devnode accepts them but does not send them.
    Requests(Vec<(Value, Value, Option<Value>)>),
}

impl ManifestEntry {
    pub fn restarts(&self) -> bool {
        matches!(self.on_exit, OnExit::Restart)
    }
}

/// Why a package cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    Io(String),
    NotAZip(String),
    NoManifest(String),
    /// manifest.json is not a JSON array of objects.
    ManifestShape(String),
    /// Entry `index` (named `process` when it has a name) is refused by a node.
    BadEntry { index: usize, process: Option<String>, reason: String },
    NoProcess,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Io(e) | InstallError::NotAZip(e) | InstallError::NoManifest(e) => write!(f, "{e}"),
            InstallError::ManifestShape(e) => write!(f, "manifest.json: {e}"),
            InstallError::BadEntry { index, process, reason } => {
                let name = process.as_deref().map(|p| format!(" ({p})")).unwrap_or_default();
                write!(f, "manifest.json: entry {index}{name}: {reason} (a node refuses this manifest)")
            }
            InstallError::NoProcess => write!(f, "manifest.json lists no process"),
        }
    }
}

impl From<InstallError> for String {
    fn from(e: InstallError) -> String {
        e.to_string()
    }
}

/// A Hypermap-safe name: lower-case ASCII letters, digits and `-` (and `.` where `dots`).
fn hypermap_safe(name: &str, dots: bool) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.'))
}

/// Parses `process:package:publisher` as a node does (three non-empty segments).
pub fn parse_process_id(s: &str) -> Option<(&str, &str, &str)> {
    let mut parts = s.split(':');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !a.is_empty() && !b.is_empty() && !c.is_empty()).then_some((a, b, c))
}

/// A capability named in `request_capabilities` or `grant_capabilities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestCap {
    /// The issuing process (for a request) or the receiving process (for a grant).
    pub process: String,
    /// The capability's params as JSON text; `"messaging"` for the string form.
    pub params: String,
}

pub const MESSAGING: &str = "\"messaging\"";

impl ManifestCap {
    pub fn is_messaging(&self) -> bool {
        self.params == MESSAGING
    }
}

/// Reads one capability entry: a process-id string (messaging) or `{"process", "params"}`. A node
/// panics at boot on an id that does not parse and ignores an object without `params`; devnode
/// refuses both, so the package never runs with a capability it would not hold.
pub fn parse_capability(entry: &Value) -> Result<ManifestCap, String> {
    let checked = |id: &str| match parse_process_id(id) {
        Some(_) => Ok(id.to_string()),
        None => Err(format!("capability {entry} does not name a process id process:package:publisher")),
    };
    match entry {
        Value::String(id) => Ok(ManifestCap { process: checked(id)?, params: MESSAGING.to_string() }),
        Value::Object(map) => {
            let process = map.get("process").and_then(Value::as_str).ok_or_else(|| format!("capability {entry} has no string `process`"))?;
            let params = map.get("params").ok_or_else(|| format!("capability {entry} has no `params` (a node ignores it)"))?;
            Ok(ManifestCap { process: checked(process)?, params: params.to_string() })
        }
        other => Err(format!("capability {other} is neither a process id nor {{\"process\", \"params\"}}")),
    }
}

/// Parses and checks manifest.json as a node would.
pub fn parse_manifest(bytes: &[u8], package_id: &str) -> Result<Vec<ManifestEntry>, InstallError> {
    let raw: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| InstallError::ManifestShape(e.to_string()))?;
    if raw.is_empty() {
        return Err(InstallError::NoProcess);
    }
    raw.into_iter().enumerate().map(|(index, value)| parse_entry(index, value, package_id)).collect()
}

fn parse_entry(index: usize, value: Value, package_id: &str) -> Result<ManifestEntry, InstallError> {
    let process = value.get("process_name").and_then(Value::as_str).map(str::to_string);
    let bad = |reason: String| InstallError::BadEntry { index, process: process.clone(), reason };
    let entry: ManifestEntry = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if !hypermap_safe(&entry.process_name, false) {
        return Err(bad(format!("process_name {:?} is not Hypermap-safe (a-z, 0-9, `-`)", entry.process_name)));
    }
    let process_id = format!("{}:{package_id}", entry.process_name);
    let (_, package, publisher) = parse_process_id(&process_id).ok_or_else(|| bad(format!("{process_id} is not a process id")))?;
    if !hypermap_safe(package, false) || !hypermap_safe(publisher, true) {
        return Err(bad(format!("package id {package_id} is not Hypermap-safe")));
    }
    for cap in entry.request_capabilities.iter().chain(&entry.grant_capabilities) {
        parse_capability(cap).map_err(bad)?;
    }
    Ok(entry)
}

/// Unpacks the package into `dest` (the package drive) and reads its manifest.
pub fn install(package: &Path, dest: &Path, package_id: &str) -> Result<Vec<ManifestEntry>, InstallError> {
    let io = |what: &str, path: &Path, e: &dyn fmt::Display| InstallError::Io(format!("{what} {}: {e}", path.display()));
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| io("clearing", dest, &e))?;
    }
    std::fs::create_dir_all(dest).map_err(|e| io("creating", dest, &e))?;
    if package.is_dir() {
        copy_dir(package, dest).map_err(|e| io("copying the package from", package, &e))?;
    } else {
        let file = std::fs::File::open(package).map_err(|e| io("opening", package, &e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| InstallError::NotAZip(format!("{} is not a zip: {e}", package.display())))?;
        archive.extract(dest).map_err(|e| io("unpacking", package, &e))?;
    }
    let manifest = std::fs::read(dest.join("manifest.json")).map_err(|_| InstallError::NoManifest(format!("{} has no manifest.json", package.display())))?;
    parse_manifest(&manifest, package_id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PKG: &str = "anthropic-api-key-manager:keymanager.os";

    fn entry() -> Value {
        json!({
            "process_name": "key-issuer", "process_wasm_path": "/key-issuer.wasm", "on_exit": "Restart",
            "request_networking": true, "request_capabilities": ["timer:distro:sys"],
            "grant_capabilities": [{"process": "vfs:distro:sys", "params": "messaging"}], "public": true,
        })
    }

    fn parse(v: Value) -> Result<Vec<ManifestEntry>, InstallError> {
        parse_manifest(&serde_json::to_vec(&json!([v])).unwrap(), PKG)
    }

    #[test]
    fn a_complete_entry_parses() {
        let entries = parse(entry()).unwrap();
        assert!(entries[0].restarts());
    }

    #[test]
    fn every_field_is_required() {
        for field in ["process_name", "process_wasm_path", "on_exit", "request_networking", "request_capabilities", "grant_capabilities", "public"] {
            let mut v = entry();
            v.as_object_mut().unwrap().remove(field);
            let e = parse(v).unwrap_err().to_string();
            assert!(e.contains(&format!("missing field `{field}`")), "{field}: {e}");
        }
    }

    #[test]
    fn on_exit_must_be_a_node_variant() {
        for bad in [json!("Sometimes"), json!("restart"), json!(null), json!({"Requests": "x"})] {
            let mut v = entry();
            v["on_exit"] = bad.clone();
            assert!(parse(v).is_err(), "{bad} was accepted");
        }
        let mut v = entry();
        v["on_exit"] = json!({"Requests": []});
        assert!(!parse(v).unwrap()[0].restarts());
    }

    #[test]
    fn fields_have_the_node_types() {
        let mut v = entry();
        v["public"] = json!("yes");
        assert!(parse(v).is_err());
    }

    #[test]
    fn process_names_are_hypermap_safe() {
        let mut v = entry();
        v["process_name"] = json!("Key_Issuer");
        assert!(parse(v).unwrap_err().to_string().contains("Hypermap-safe"));
    }

    #[test]
    fn capabilities_must_name_a_process_and_params() {
        for bad in [json!("timer"), json!({"process": "timer:distro:sys"}), json!(7)] {
            let mut v = entry();
            v["request_capabilities"] = json!([bad.clone()]);
            assert!(parse(v).is_err(), "{bad} was accepted");
        }
        let cap = parse_capability(&json!({"process": "sqlite:distro:sys", "params": {"kind": "read"}})).unwrap();
        assert!(!cap.is_messaging());
        assert!(parse_capability(&json!({"process": "vfs:distro:sys", "params": "messaging"})).unwrap().is_messaging());
    }
}
