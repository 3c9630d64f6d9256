//! Runtime services with the platform's request/response shapes: timer, vfs, sqlite,
//! http-client, and the binding side of http-server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::kernel::Kernel;
use crate::types::{Blob, Envelope, Msg};

/// An HTTP path bound by a process.
#[derive(Clone, Debug)]
pub struct Binding {
    /// None once the path was unbound: a node then answers 404 (no fallback to the UI root).
    pub process: Option<String>,
    pub authenticated: bool,
    pub local_only: bool,
    /// Static content served by the devnode itself (`cache: true`).
    pub content: Option<Blob>,
}

pub struct Services {
    vfs_root: PathBuf,
    sqlite_root: PathBuf,
    pub bindings: Mutex<HashMap<String, Binding>>,
    databases: Mutex<HashMap<String, Arc<Mutex<rusqlite::Connection>>>>,
    /// Open transactions: id → (database key, queued statements with their parameters).
    transactions: Mutex<HashMap<u64, (String, Vec<(String, Vec<rusqlite::types::Value>)>)>>,
    /// Tests make SQLite writes and commits slow (`POST /devnode/sqlite/delay`), as on a busy disk.
    pub write_delay_ms: std::sync::atomic::AtomicU64,
    /// The homepage's apps by process id, as its `Add` requests left them (`GET /devnode/homepage`).
    pub homepage: Mutex<std::collections::BTreeMap<String, Value>>,
}

impl Services {
    pub fn new(data_dir: &Path) -> Services {
        Services {
            vfs_root: data_dir.join("vfs"),
            sqlite_root: data_dir.join("sqlite"),
            bindings: Mutex::new(HashMap::new()),
            databases: Mutex::new(HashMap::new()),
            transactions: Mutex::new(HashMap::new()),
            write_delay_ms: std::sync::atomic::AtomicU64::new(0),
            homepage: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    pub fn vfs_root(&self) -> &Path {
        &self.vfs_root
    }
}

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("json")
}

pub async fn handle(kernel: Arc<Kernel>, env: Envelope) {
    if crate::tracing_messages() {
        eprintln!("trace: service {} handles {}", env.target.process, env.id);
    }
    let Msg::Request { .. } = &env.msg else { return };
    let body: Value = match serde_json::from_slice(env.msg.body()) {
        Ok(v) => v,
        // The timer ignores what it cannot read; the other services say so.
        Err(_) if env.target.process == "timer:distro:sys" => return timer(&kernel, &env, &Value::Null),
        Err(_) => {
            kernel.respond(&env, json_bytes(json!({"Err": "MalformedRequest"})), None);
            return;
        }
    };
    match env.target.process.as_str() {
        "timer:distro:sys" => timer(&kernel, &env, &body),
        "vfs:distro:sys" => {
            let (answer, blob) = vfs(&kernel, &env, &body);
            kernel.respond(&env, json_bytes(answer), blob);
        }
        "sqlite:distro:sys" => {
            let delay = kernel.services.write_delay_ms.load(std::sync::atomic::Ordering::SeqCst);
            let action = &body["action"];
            if delay > 0 && (action.get("Write").is_some() || action.get("Commit").is_some()) {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let timings = &kernel.network.timings;
            let started = timings.start();
            let (answer, blob) = sqlite(&kernel, &env, &body);
            timings.record_named(|| crate::timings::sqlite_stage(action), started);
            kernel.respond(&env, json_bytes(answer), blob);
        }
        "http-client:distro:sys" => {
            let (answer, blob) = http_client(&env, &body).await;
            kernel.respond(&env, json_bytes(answer), blob);
        }
        "http-server:distro:sys" => {
            let answer = http_server(&kernel, &env, &body);
            kernel.respond(&env, json_bytes(answer), None);
        }
        "homepage:homepage:sys" => homepage(&kernel, &env, &body),
        _ => kernel.respond(&env, json_bytes(json!({"Ok": null})), None),
    }
}

/// The homepage's `Add` and `Remove` from a process (hyperdrive packages/homepage): recorded as the
/// homepage keeps them, the path placed under the sender's process id; no answer, as on a node.
fn homepage(kernel: &Kernel, env: &Envelope, body: &Value) {
    let process = env.source.process.clone();
    let mut apps = kernel.services.homepage.lock().unwrap();
    if let Some(add) = body.get("Add") {
        let path = add["path"].as_str().map(|p| format!("/{process}/{}", p.strip_prefix('/').unwrap_or(p)));
        // The homepage's own record of an app (its WIT `app`, as `GET /apps` lists it).
        let (package_name, publisher) = env.source.package_id().split_once(':').unwrap_or_default();
        let app = json!({
            "id": process, "process": env.source.process_name(), "package_name": package_name, "publisher": publisher,
            "path": path, "label": add["label"], "base64_icon": add["icon"], "widget": add["widget"],
        });
        if app["label"].is_string() {
            apps.insert(process, app);
            return;
        }
    } else if body == &json!("Remove") {
        apps.remove(&process);
        return;
    }
    drop(apps);
    kernel.log("homepage", &format!("{process} sent a request the homepage does not read: ignored"));
}

/// `{"SetTimer": ms}` from a local process; anything else (a malformed body, `"Debug"`, a request
/// from another node) gets no answer, as on a node.
fn timer(kernel: &Arc<Kernel>, env: &Envelope, body: &Value) {
    if env.source.node != kernel.node {
        return;
    }
    match body.get("SetTimer").and_then(Value::as_u64) {
        Some(ms) => kernel.add_timer(kernel.clock.now_ms() + ms as i64, env.clone()),
        None => kernel.log("timer", &format!("{} sent a request with an invalid body: no answer", env.source.process)),
    }
}

/// `Bind`/`SecureBind`/`Unbind` as hyperdrive's `HttpServerAction`: every field is required.
/// WebSocket fields are parsed only to refuse a malformed action.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
enum HttpServerAction {
    Bind { path: String, authenticated: bool, local_only: bool, cache: bool },
    SecureBind { path: String, cache: bool },
    Unbind { path: String },
    WebSocketBind { path: String, authenticated: bool, extension: bool },
    WebSocketSecureBind { path: String, extension: bool },
    WebSocketUnbind { path: String },
    WebSocketPush { channel_id: u32, message_type: Value },
    WebSocketClose(u32),
}

/// `/<process id><path>` without one trailing `/` (hyperdrive `format_path_with_process`: the
/// leading `/` is looked at before the trailing one is dropped, so `/` binds `/<process id>`).
fn bound_path(process: &str, path: &str) -> String {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if path.starts_with('/') { format!("/{process}{trimmed}") } else { format!("/{process}/{trimmed}") }
}

fn http_server(kernel: &Kernel, env: &Envelope, body: &Value) -> Value {
    let Ok(action) = serde_json::from_value::<HttpServerAction>(body.clone()) else { return json!({"Err": "MalformedRequest"}) };
    let process = env.source.process.clone();
    let safe_source = crate::package::parse_process_id(&process).is_some_and(|(name, package, publisher)| {
        let safe = |s: &str, dots: bool| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.'));
        safe(name, false) && safe(package, false) && safe(publisher, true)
    });
    let mut bindings = kernel.services.bindings.lock().unwrap();
    let mut bind = |path: &str, authenticated: bool, local_only: bool, cache: bool| {
        if !safe_source {
            return json!({"Err": "InvalidSourceProcess"});
        }
        if cache && env.blob.is_none() {
            return json!({"Err": "NoBlob"});
        }
        let content = if cache { env.blob.clone() } else { None };
        bindings.insert(bound_path(&process, path), Binding { process: Some(process.clone()), authenticated, local_only, content });
        json!({"Ok": null})
    };
    match action {
        HttpServerAction::Bind { path, authenticated, local_only, cache } => bind(&path, authenticated, local_only, cache),
        HttpServerAction::SecureBind { path, cache } => bind(&path, true, false, cache),
        HttpServerAction::Unbind { path } => {
            bindings.insert(bound_path(&process, &path), Binding { process: None, authenticated: false, local_only: false, content: None });
            json!({"Ok": null})
        }
        // WebSocket actions are accepted; the package uses none.
        _ => json!({"Ok": null}),
    }
}

/// Maps a VFS path (`/<package>/<drive>/...` or without the leading slash) into the data dir,
/// refusing anything that climbs out.
fn vfs_path(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|seg| seg == ".." || seg == ".") {
        return None;
    }
    Some(root.join(rel))
}

fn vfs(kernel: &Kernel, env: &Envelope, body: &Value) -> (Value, Option<Blob>) {
    let err = |e: &str| (json!({"Err": e}), None);
    let (Some(path), Some(action)) = (body.get("path").and_then(Value::as_str), body.get("action")) else {
        return err("MalformedRequest");
    };
    let root = kernel.services.vfs_root();
    let Some(full) = vfs_path(root, path) else { return (json!({"Err": {"BadPath": {"path": path}}}), None) };
    // A process may touch only its own package's drives.
    let package = env.source.package_id();
    if !path.trim_start_matches('/').starts_with(package) {
        return err("NoReadCap");
    }
    let not_found = || (json!({"Err": {"NotFound": {"path": path}}}), None);
    let io = |e: std::io::Error| (json!({"Err": {"IOError": e.to_string()}}), None);
    let action_name = action.as_str().map(str::to_string).or_else(|| action.as_object().and_then(|o| o.keys().next().cloned()));
    match action_name.as_deref() {
        Some("CreateDrive" | "CreateDir" | "CreateDirAll") => match std::fs::create_dir_all(&full) {
            Ok(()) => (json!("Ok"), None),
            Err(e) => io(e),
        },
        Some("OpenFile" | "CreateFile") => {
            let create = action.get("OpenFile").and_then(|o| o.get("create")).and_then(Value::as_bool).unwrap_or(true);
            if !full.exists() {
                if !create {
                    return not_found();
                }
                if let Some(parent) = full.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                if let Err(e) = std::fs::write(&full, b"") {
                    return io(e);
                }
            }
            (json!("Ok"), None)
        }
        Some("CloseFile" | "SyncAll") => (json!("Ok"), None),
        Some("Read" | "ReadToEnd") => match std::fs::read(&full) {
            Ok(bytes) => (json!("Read"), Some(Blob { mime: None, bytes })),
            Err(_) => not_found(),
        },
        Some("ReadToString") => match std::fs::read_to_string(&full) {
            Ok(s) => (json!({"ReadToString": s}), None),
            Err(_) => not_found(),
        },
        Some("Write" | "WriteAll") => match std::fs::write(&full, env.blob.as_ref().map(|b| b.bytes.as_slice()).unwrap_or(&[])) {
            Ok(()) => (json!("Ok"), None),
            Err(e) => io(e),
        },
        Some("Append") => {
            use std::io::Write;
            let result = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&full)
                .and_then(|mut f| f.write_all(env.blob.as_ref().map(|b| b.bytes.as_slice()).unwrap_or(&[])));
            match result {
                Ok(()) => (json!("Ok"), None),
                Err(e) => io(e),
            }
        }
        Some("ReadDir") => match std::fs::read_dir(&full) {
            Ok(entries) => {
                let mut list = vec![];
                for entry in entries.flatten() {
                    let file_type = match entry.file_type() {
                        Ok(t) if t.is_dir() => "Directory",
                        Ok(t) if t.is_file() => "File",
                        Ok(t) if t.is_symlink() => "Symlink",
                        _ => "Other",
                    };
                    let rel = entry.path().strip_prefix(root).map(|p| p.to_string_lossy().to_string()).unwrap_or_default();
                    list.push(json!({"path": rel, "file_type": file_type}));
                }
                list.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
                (json!({"ReadDir": list}), None)
            }
            Err(_) => not_found(),
        },
        Some("Metadata" | "Len") => match std::fs::metadata(&full) {
            Ok(m) => {
                let file_type = if m.is_dir() { "Directory" } else { "File" };
                if action_name.as_deref() == Some("Len") {
                    (json!({"Len": m.len()}), None)
                } else {
                    (json!({"Metadata": {"file_type": file_type, "len": m.len()}}), None)
                }
            }
            Err(_) => not_found(),
        },
        Some("RemoveFile") => match std::fs::remove_file(&full) {
            Ok(()) => (json!("Ok"), None),
            Err(_) => not_found(),
        },
        Some("RemoveDir" | "RemoveDirAll") => match std::fs::remove_dir_all(&full) {
            Ok(()) => (json!("Ok"), None),
            Err(_) => not_found(),
        },
        _ => err("MalformedRequest"),
    }
}

/// Why SQLite parameters (the blob) are refused: a node answers `{"Err": "InvalidParameters"}`.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidParameters;

/// JSON parameter → SQLite value, as a node binds it: integers, else reals; a string that decodes
/// as base64 is a BLOB; booleans are 0/1; arrays and objects are refused.
fn sql_param(v: &Value) -> Result<rusqlite::types::Value, InvalidParameters> {
    use rusqlite::types::Value as V;
    Ok(match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(*b as i64),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => V::Integer(i),
            (None, Some(f)) => V::Real(f),
            (None, None) => return Err(InvalidParameters),
        },
        Value::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(bytes) => V::Blob(bytes),
            Err(_) => V::Text(s.clone()),
        },
        Value::Array(_) | Value::Object(_) => return Err(InvalidParameters),
    })
}

/// The parameters of a Write or Query: none without a blob, else the blob must be a JSON array
/// of plain values.
pub fn sql_params(blob: Option<&Blob>) -> Result<Vec<rusqlite::types::Value>, InvalidParameters> {
    let Some(blob) = blob else { return Ok(vec![]) };
    match serde_json::from_slice::<Value>(&blob.bytes) {
        Ok(Value::Array(values)) => values.iter().map(sql_param).collect(),
        _ => Err(InvalidParameters),
    }
}

/// A column value as a node returns it; text that is not UTF-8 is an error there too.
fn sql_value(v: rusqlite::types::ValueRef<'_>, column: usize) -> rusqlite::Result<Value> {
    use rusqlite::types::ValueRef as R;
    Ok(match v {
        R::Null => Value::Null,
        R::Integer(i) => json!(i),
        R::Real(f) => json!(f),
        R::Text(t) => json!(std::str::from_utf8(t).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(rusqlite::types::FromSqlError::InvalidType))
        })?),
        R::Blob(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    })
}

/// hyperdrive `sqlite.rs`: the first word of a Query must be one of these...
pub const READ_KEYWORDS: &[&str] = &["ANALYZE", "ATTACH", "BEGIN", "EXPLAIN", "PRAGMA", "SELECT", "VALUES", "WITH"];
/// ...and of a Write one of these.
pub const WRITE_KEYWORDS: &[&str] = &[
    "ALTER", "ANALYZE", "COMMIT", "CREATE", "DELETE", "DETACH", "DROP", "END", "INSERT", "REINDEX", "RELEASE", "RENAME", "REPLACE", "ROLLBACK",
    "SAVEPOINT", "UPDATE", "VACUUM",
];

/// The first whitespace-separated word, upper-cased: `SELECT(1)` is one word, as on a node.
pub fn first_keyword(statement: &str) -> String {
    statement.split_whitespace().next().unwrap_or("").to_uppercase()
}

fn sqlite(kernel: &Kernel, env: &Envelope, body: &Value) -> (Value, Option<Blob>) {
    let err = |e: Value| (json!({"Err": e}), None);
    let services = &kernel.services;
    let package = body.get("package_id");
    let (Some(name), Some(publisher), Some(db), Some(action)) = (
        package.and_then(|p| p.get("package_name")).and_then(Value::as_str),
        package.and_then(|p| p.get("publisher_node")).and_then(Value::as_str),
        body.get("db").and_then(Value::as_str),
        body.get("action"),
    ) else {
        return err(json!("MalformedRequest"));
    };
    let package_id = format!("{name}:{publisher}");
    if env.source.package_id() != package_id {
        return err(json!("MismatchingPackageId"));
    }
    if db.is_empty() || db.contains('/') || db.contains("..") {
        return err(json!("MalformedRequest"));
    }
    let key = format!("{package_id}/{db}");
    let open = |create: bool| -> Result<Arc<Mutex<rusqlite::Connection>>, Value> {
        if let Some(conn) = services.databases.lock().unwrap().get(&key) {
            return Ok(conn.clone());
        }
        let dir = services.sqlite_root.join(&package_id);
        let file = dir.join(format!("{db}.sqlite"));
        if !create && !file.exists() {
            return Err(json!({"NoDb": [{"package_name": name, "publisher_node": publisher}, db]}));
        }
        std::fs::create_dir_all(&dir).map_err(|e| json!({"IOError": e.to_string()}))?;
        let conn = rusqlite::Connection::open(&file).map_err(|e| json!({"RusqliteError": e.to_string()}))?;
        let conn = Arc::new(Mutex::new(conn));
        services.databases.lock().unwrap().insert(key.clone(), conn.clone());
        Ok(conn)
    };
    let action_name = action.as_str().map(str::to_string).or_else(|| action.as_object().and_then(|o| o.keys().next().cloned()));
    match action_name.as_deref() {
        Some("Open") => match open(true) {
            Ok(_) => (json!("Ok"), None),
            Err(e) => err(e),
        },
        Some("RemoveDb") => {
            services.databases.lock().unwrap().remove(&key);
            let _ = std::fs::remove_file(services.sqlite_root.join(&package_id).join(format!("{db}.sqlite")));
            (json!("Ok"), None)
        }
        Some("Query") => {
            let Some(query) = action.get("Query").and_then(Value::as_str) else { return err(json!("MalformedRequest")) };
            let conn = match open(false) {
                Ok(c) => c,
                Err(e) => return err(e),
            };
            if !READ_KEYWORDS.contains(&first_keyword(query).as_str()) {
                return err(json!("NotAReadKeyword"));
            }
            let Ok(values) = sql_params(env.blob.as_ref()) else { return err(json!("InvalidParameters")) };
            let conn = conn.lock().unwrap();
            let result = (|| -> rusqlite::Result<Vec<Value>> {
                let mut stmt = conn.prepare(query)?;
                let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = vec![];
                while let Some(row) = rows.next()? {
                    let mut obj = serde_json::Map::new();
                    for (i, c) in columns.iter().enumerate() {
                        obj.insert(c.clone(), sql_value(row.get_ref(i)?, i)?);
                    }
                    out.push(Value::Object(obj));
                }
                Ok(out)
            })();
            match result {
                Ok(rows) => (json!("Read"), Some(Blob { mime: Some("application/octet-stream".to_string()), bytes: json_bytes(Value::Array(rows)) })),
                Err(e) => err(json!({"RusqliteError": e.to_string()})),
            }
        }
        Some("Write") => {
            let write = &action["Write"];
            let Some(statement) = write.get("statement").and_then(Value::as_str) else { return err(json!("MalformedRequest")) };
            let conn = match open(false) {
                Ok(c) => c,
                Err(e) => return err(e),
            };
            if !WRITE_KEYWORDS.contains(&first_keyword(statement).as_str()) {
                return err(json!("NotAWriteKeyword"));
            }
            let Ok(values) = sql_params(env.blob.as_ref()) else { return err(json!("InvalidParameters")) };
            if let Some(tx) = write.get("tx_id").and_then(Value::as_u64) {
                let mut txs = services.transactions.lock().unwrap();
                return match txs.get_mut(&tx) {
                    Some((tx_key, queued)) if *tx_key == key => {
                        queued.push((statement.to_string(), values));
                        (json!("Ok"), None)
                    }
                    _ => err(json!({"NoTx": tx})),
                };
            }
            let conn = conn.lock().unwrap();
            match conn.execute(statement, rusqlite::params_from_iter(values.iter())) {
                Ok(_) => (json!("Ok"), None),
                Err(e) => err(json!({"RusqliteError": e.to_string()})),
            }
        }
        Some("BeginTx") => {
            if let Err(e) = open(false) {
                return err(e);
            }
            // A node's transaction ids are random u64s (often above 2^53).
            let id: u64 = rand::random();
            services.transactions.lock().unwrap().insert(id, (key.clone(), vec![]));
            (json!({"BeginTx": {"tx_id": id}}), None)
        }
        Some("Commit") => {
            let Some(tx) = action["Commit"].get("tx_id").and_then(Value::as_u64) else { return err(json!("MalformedRequest")) };
            let Some((tx_key, queued)) = services.transactions.lock().unwrap().remove(&tx) else { return err(json!({"NoTx": tx})) };
            if tx_key != key {
                return err(json!({"NoTx": tx}));
            }
            let conn = match open(false) {
                Ok(c) => c,
                Err(e) => return err(e),
            };
            let mut conn = conn.lock().unwrap();
            let result = (|| -> rusqlite::Result<()> {
                let t = conn.transaction()?;
                for (statement, values) in &queued {
                    t.execute(statement, rusqlite::params_from_iter(values.iter()))?;
                }
                t.commit()
            })();
            match result {
                Ok(()) => (json!("Ok"), None),
                Err(e) => err(json!({"RusqliteError": e.to_string()})),
            }
        }
        _ => err(json!("MalformedRequest")),
    }
}

/// hyperdrive's `OutgoingHttpRequest`: `version` may be null or absent, the rest is required.
#[derive(serde::Deserialize)]
struct OutgoingHttpRequest {
    method: String,
    version: Option<String>,
    url: String,
    headers: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
enum HttpClientAction {
    Http(OutgoingHttpRequest),
}

const HTTP_VERSIONS: &[&str] = &["HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"];

/// An HTTP method as `http::Method::from_bytes` takes it: any token, not only the usual seven.
fn is_method_token(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `content-type` → `Content-Type`: a node hands response header names to the process this way.
pub fn pascal_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Checks the request as a node's http-client does before sending it.
fn check_outgoing(body: &Value) -> Result<OutgoingHttpRequest, Value> {
    let Ok(HttpClientAction::Http(request)) = serde_json::from_value(body.clone()) else { return Err(json!("MalformedRequest")) };
    if !is_method_token(&request.method) {
        return Err(json!({"BadMethod": {"method": request.method}}));
    }
    if url::Url::parse(&request.url).is_err() {
        return Err(json!({"BadUrl": {"url": request.url}}));
    }
    if let Some(version) = request.version.as_ref().filter(|v| !HTTP_VERSIONS.contains(&v.as_str())) {
        return Err(json!({"BadVersion": {"version": version}}));
    }
    Ok(request)
}

/// The client itself has no time limit on a node: the requester's `expects_response` timeout
/// ends the wait with a `Timeout` SendError. ureq gets a generous bound only so that a stalled
/// server does not hold a thread forever; the kernel's timeout always comes first.
const CLIENT_SLACK_SECS: u64 = 120;

async fn http_client(env: &Envelope, body: &Value) -> (Value, Option<Blob>) {
    let err = |e: Value| (json!({"Err": e}), None);
    let request = match check_outgoing(body) {
        Ok(r) => r,
        Err(e) => return err(e),
    };
    let timeout = match env.msg {
        Msg::Request { expects_response: Some(secs), .. } => secs,
        _ => 30,
    } + CLIENT_SLACK_SECS;
    let body = env.blob.as_ref().map(|b| b.bytes.clone()).unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(timeout)).build();
        let mut call = agent.request(&request.method, &request.url);
        for (k, v) in &request.headers {
            call = call.set(k, v);
        }
        let answer = if body.is_empty() && request.method == "GET" { call.call() } else { call.send_bytes(&body) };
        let response = match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = response.status();
        let mut headers = serde_json::Map::new();
        for name in response.headers_names() {
            // One value per name, the last, as a node keeps it.
            let value = response.all(&name).last().copied().unwrap_or("").to_string();
            headers.insert(pascal_case(&name.to_lowercase()), json!(value));
        }
        let mut bytes = vec![];
        use std::io::Read;
        response.into_reader().take(64 * 1024 * 1024).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok((status, Value::Object(headers), bytes))
    })
    .await;
    match result {
        Ok(Ok((status, headers, bytes))) => (json!({"Ok": {"Http": {"status": status, "headers": headers}}}), Some(Blob { mime: None, bytes })),
        Ok(Err(e)) => err(json!({"ExecuteRequestFailed": e})),
        Err(e) => err(json!({"ExecuteRequestFailed": e.to_string()})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Addr;

    const PKG: &str = "anthropic-api-key-manager:keymanager.os";

    /// A kernel on a fresh data dir, with the issuer's database open.
    fn kernel(name: &str) -> Arc<Kernel> {
        let dir = std::env::temp_dir().join(format!("devnode-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kernel = Kernel::new("operator.os".into(), Default::default(), dir, true);
        assert_eq!(call(&kernel, json!("Open"), None), json!("Ok"));
        kernel
    }

    fn call(kernel: &Kernel, action: Value, params: Option<&[u8]>) -> Value {
        let body = json!({"package_id": {"package_name": "anthropic-api-key-manager", "publisher_node": "keymanager.os"}, "db": "t", "action": action});
        let env = Envelope {
            id: 1,
            source: Addr::new("operator.os", &format!("key-issuer:{PKG}")),
            target: Addr::new("operator.os", "sqlite:distro:sys"),
            rsvp: None,
            msg: Msg::request(vec![], Some(5)),
            blob: params.map(|p| Blob { mime: None, bytes: p.to_vec() }),
        };
        sqlite(kernel, &env, &body).0
    }

    fn write(kernel: &Kernel, statement: &str) -> Value {
        call(kernel, json!({"Write": {"statement": statement, "tx_id": null}}), None)
    }

    #[test]
    fn writes_must_start_with_a_node_write_keyword() {
        let k = kernel("write-keywords");
        assert_eq!(write(&k, "CREATE TABLE t (a INTEGER)"), json!("Ok"));
        for refused in ["BEGIN", "PRAGMA user_version = 3", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "SELECT 1", "INSERT(1)"] {
            assert_eq!(write(&k, refused), json!({"Err": "NotAWriteKeyword"}), "{refused}");
        }
        for accepted in ["SAVEPOINT s", "RELEASE s", "ANALYZE", "VACUUM", "REINDEX", "\n  insert into t values (1)"] {
            assert_eq!(write(&k, accepted), json!("Ok"), "{accepted}");
        }
    }

    #[test]
    fn queries_must_start_with_a_node_read_keyword() {
        let k = kernel("read-keywords");
        let query = |q: &str| call(&k, json!({"Query": q}), None);
        assert_eq!(query("SELECT(1)"), json!({"Err": "NotAReadKeyword"}), "the first word is split on whitespace only");
        assert_eq!(query("DELETE FROM x"), json!({"Err": "NotAReadKeyword"}));
        assert_eq!(query("ANALYZE"), json!("Read"));
        assert_eq!(query("\tselect 1"), json!("Read"));
    }

    #[test]
    fn bad_parameter_blobs_are_an_error() {
        let k = kernel("params");
        assert_eq!(write(&k, "CREATE TABLE t (a)"), json!("Ok"));
        let insert = |params: &[u8]| call(&k, json!({"Write": {"statement": "INSERT INTO t VALUES (?)", "tx_id": null}}), Some(params));
        for bad in [&b"not json"[..], b"{\"a\": 1}", b"[[1]]", b"[{\"a\": 1}]", b"7"] {
            assert_eq!(insert(bad), json!({"Err": "InvalidParameters"}), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(insert(b"[true]"), json!("Ok"));
        let rows = call(&k, json!({"Query": "SELECT a FROM t"}), Some(b"[]"));
        assert_eq!(rows, json!("Read"));
        assert_eq!(call(&k, json!({"Query": "SELECT a FROM t"}), Some(b"{}")), json!({"Err": "InvalidParameters"}));
    }

    #[test]
    fn transaction_ids_are_large_random_numbers() {
        let k = kernel("tx");
        let a = call(&k, json!("BeginTx"), None)["BeginTx"]["tx_id"].as_u64().unwrap();
        let b = call(&k, json!("BeginTx"), None)["BeginTx"]["tx_id"].as_u64().unwrap();
        assert_ne!(a, b);
        assert!(a.max(b) > u64::from(u32::MAX), "ids look sequential: {a}, {b}");
    }

    #[test]
    fn response_header_names_are_pascal_case() {
        assert_eq!(pascal_case("content-type"), "Content-Type");
        assert_eq!(pascal_case("retry-after"), "Retry-After");
        assert_eq!(pascal_case("x-ratelimit-remaining"), "X-Ratelimit-Remaining");
    }

    #[test]
    fn outgoing_requests_are_checked_as_on_a_node() {
        let http = |v: Value| check_outgoing(&json!({"Http": v})).err();
        assert_eq!(http(json!({"method": "GET", "url": "https://x.test/", "headers": {}})), None);
        assert_eq!(http(json!({"method": "PROPFIND", "version": null, "url": "https://x.test/", "headers": {}})), None);
        assert_eq!(http(json!({"method": "GET", "url": "https://x.test/"})), Some(json!("MalformedRequest")), "headers are required");
        assert_eq!(http(json!({"method": "G T", "url": "https://x.test/", "headers": {}})), Some(json!({"BadMethod": {"method": "G T"}})));
        assert_eq!(http(json!({"method": "GET", "url": "nope", "headers": {}})), Some(json!({"BadUrl": {"url": "nope"}})));
        assert_eq!(http(json!({"method": "GET", "version": "HTTP/1.2", "url": "https://x.test/", "headers": {}})), Some(json!({"BadVersion": {"version": "HTTP/1.2"}})));
    }

    #[test]
    fn binds_need_every_field_and_unbind_leaves_a_404() {
        let k = Kernel::new("operator.os".into(), Default::default(), std::env::temp_dir().join("devnode-bind-test"), true);
        let env = |blob: Option<Blob>| Envelope {
            id: 1,
            source: Addr::new("operator.os", &format!("key-issuer:{PKG}")),
            target: Addr::new("operator.os", "http-server:distro:sys"),
            rsvp: None,
            msg: Msg::request(vec![], Some(5)),
            blob,
        };
        assert_eq!(http_server(&k, &env(None), &json!({"Bind": {"path": "/api"}})), json!({"Err": "MalformedRequest"}));
        let bind = json!({"Bind": {"path": "/api/", "authenticated": true, "local_only": false, "cache": false}});
        assert_eq!(http_server(&k, &env(None), &bind), json!({"Ok": null}));
        let path = format!("/key-issuer:{PKG}/api");
        assert!(k.services.bindings.lock().unwrap()[&path].process.is_some());
        assert_eq!(http_server(&k, &env(None), &json!({"Unbind": {"path": "/api"}})), json!({"Ok": null}));
        assert!(k.services.bindings.lock().unwrap()[&path].process.is_none());
        assert_eq!(bound_path("p:a:b.os", "/"), "/p:a:b.os");
        assert_eq!(bound_path("p:a:b.os", "assets/x.js"), "/p:a:b.os/assets/x.js");
    }
}
