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
    pub process: String,
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
    transactions: Mutex<HashMap<u64, (String, Vec<(String, Vec<Value>)>)>>,
    /// Tests make SQLite writes and commits slow (`POST /devnode/sqlite/delay`), as on a busy disk.
    pub write_delay_ms: std::sync::atomic::AtomicU64,
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
    if std::env::var_os("DEVNODE_TRACE").is_some() {
        eprintln!("trace: service {} handles {}", env.target.process, env.id);
    }
    let Msg::Request { .. } = &env.msg else { return };
    let body: Value = match serde_json::from_slice(env.msg.body()) {
        Ok(v) => v,
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
            let (answer, blob) = sqlite(&kernel, &env, &body);
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
        _ => kernel.respond(&env, json_bytes(json!({"Ok": null})), None),
    }
}

fn timer(kernel: &Arc<Kernel>, env: &Envelope, body: &Value) {
    match body.get("SetTimer").and_then(Value::as_u64) {
        Some(ms) => kernel.add_timer(kernel.clock.now_ms() + ms as i64, env.clone()),
        None => kernel.respond(env, json_bytes(json!({"Err": "MalformedRequest"})), None),
    }
}

fn http_server(kernel: &Kernel, env: &Envelope, body: &Value) -> Value {
    let prefix = format!("/{}", env.source.process);
    let full = |path: &str| {
        let p = format!("{prefix}{}", if path.starts_with('/') { path.to_string() } else { format!("/{path}") });
        let trimmed = p.trim_end_matches('/').to_string();
        if trimmed.is_empty() { "/".to_string() } else { trimmed }
    };
    if let Some(bind) = body.get("Bind") {
        let Some(path) = bind.get("path").and_then(Value::as_str) else { return json!({"Err": "MalformedRequest"}) };
        let cache = bind.get("cache").and_then(Value::as_bool).unwrap_or(false);
        if cache && env.blob.is_none() {
            return json!({"Err": "NoBlob"});
        }
        kernel.services.bindings.lock().unwrap().insert(
            full(path),
            Binding {
                process: env.source.process.clone(),
                authenticated: bind.get("authenticated").and_then(Value::as_bool).unwrap_or(true),
                local_only: bind.get("local_only").and_then(Value::as_bool).unwrap_or(false),
                content: if cache { env.blob.clone() } else { None },
            },
        );
        return json!({"Ok": null});
    }
    if let Some(bind) = body.get("SecureBind") {
        let Some(path) = bind.get("path").and_then(Value::as_str) else { return json!({"Err": "MalformedRequest"}) };
        kernel.services.bindings.lock().unwrap().insert(
            full(path),
            Binding { process: env.source.process.clone(), authenticated: true, local_only: false, content: None },
        );
        return json!({"Ok": null});
    }
    if let Some(unbind) = body.get("Unbind") {
        if let Some(path) = unbind.get("path").and_then(Value::as_str) {
            kernel.services.bindings.lock().unwrap().remove(&full(path));
        }
        return json!({"Ok": null});
    }
    // WebSocket binds are accepted; the package uses none.
    json!({"Ok": null})
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

/// JSON parameter → SQLite value. As on a node, a string that decodes as base64 is bound as a BLOB.
fn sql_param(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(*b as i64),
        Value::Number(n) => n.as_i64().map(V::Integer).unwrap_or_else(|| V::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(bytes) => V::Blob(bytes),
            Err(_) => V::Text(s.clone()),
        },
        other => V::Text(other.to_string()),
    }
}

fn sql_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as R;
    match v {
        R::Null => Value::Null,
        R::Integer(i) => json!(i),
        R::Real(f) => json!(f),
        R::Text(t) => json!(String::from_utf8_lossy(t)),
        R::Blob(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

const READ_KEYWORDS: &[&str] = &["SELECT", "WITH", "PRAGMA", "EXPLAIN", "VALUES"];
const WRITE_KEYWORDS: &[&str] = &["INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "REPLACE", "BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "WITH"];

fn first_keyword(statement: &str) -> String {
    statement.trim_start().split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("").to_uppercase()
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
    let params: Vec<Value> = env.blob.as_ref().and_then(|b| serde_json::from_slice(&b.bytes).ok()).unwrap_or_default();
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
            if !READ_KEYWORDS.contains(&first_keyword(query).as_str()) {
                return err(json!("NotAReadKeyword"));
            }
            let conn = match open(false) {
                Ok(c) => c,
                Err(e) => return err(e),
            };
            let conn = conn.lock().unwrap();
            let result = (|| -> rusqlite::Result<Vec<Value>> {
                let mut stmt = conn.prepare(query)?;
                let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
                let values: Vec<rusqlite::types::Value> = params.iter().map(sql_param).collect();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = vec![];
                while let Some(row) = rows.next()? {
                    let mut obj = serde_json::Map::new();
                    for (i, c) in columns.iter().enumerate() {
                        obj.insert(c.clone(), sql_value(row.get_ref(i)?));
                    }
                    out.push(Value::Object(obj));
                }
                Ok(out)
            })();
            match result {
                Ok(rows) => (json!("Read"), Some(Blob { mime: None, bytes: json_bytes(Value::Array(rows)) })),
                Err(e) => err(json!({"RusqliteError": e.to_string()})),
            }
        }
        Some("Write") => {
            let write = &action["Write"];
            let Some(statement) = write.get("statement").and_then(Value::as_str) else { return err(json!("MalformedRequest")) };
            if !WRITE_KEYWORDS.contains(&first_keyword(statement).as_str()) {
                return err(json!("NotAWriteKeyword"));
            }
            if let Some(tx) = write.get("tx_id").and_then(Value::as_u64) {
                let mut txs = services.transactions.lock().unwrap();
                return match txs.get_mut(&tx) {
                    Some((tx_key, queued)) if *tx_key == key => {
                        queued.push((statement.to_string(), params));
                        (json!("Ok"), None)
                    }
                    _ => err(json!({"NoTx": tx})),
                };
            }
            let conn = match open(false) {
                Ok(c) => c,
                Err(e) => return err(e),
            };
            let conn = conn.lock().unwrap();
            let values: Vec<rusqlite::types::Value> = params.iter().map(sql_param).collect();
            match conn.execute(statement, rusqlite::params_from_iter(values.iter())) {
                Ok(_) => (json!("Ok"), None),
                Err(e) => err(json!({"RusqliteError": e.to_string()})),
            }
        }
        Some("BeginTx") => {
            if let Err(e) = open(false) {
                return err(e);
            }
            let id = kernel.next_id();
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
                for (statement, params) in &queued {
                    let values: Vec<rusqlite::types::Value> = params.iter().map(sql_param).collect();
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

async fn http_client(env: &Envelope, body: &Value) -> (Value, Option<Blob>) {
    let err = |e: Value| (json!({"Err": e}), None);
    let Some(http) = body.get("Http") else { return err(json!("MalformedRequest")) };
    let (Some(method), Some(url)) = (http.get("method").and_then(Value::as_str), http.get("url").and_then(Value::as_str)) else {
        return err(json!("MalformedRequest"));
    };
    if !["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"].contains(&method) {
        return err(json!({"BadMethod": {"method": method}}));
    }
    if url::Url::parse(url).is_err() {
        return err(json!({"BadUrl": {"url": url}}));
    }
    let headers: Vec<(String, String)> = http
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| h.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default();
    let timeout = match env.msg {
        Msg::Request { expects_response: Some(secs), .. } => secs,
        _ => 30,
    };
    let (method, url) = (method.to_string(), url.to_string());
    let body = env.blob.as_ref().map(|b| b.bytes.clone()).unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(timeout)).build();
        let mut request = agent.request(&method, &url);
        for (k, v) in &headers {
            request = request.set(k, v);
        }
        let answer = if body.is_empty() && method == "GET" { request.call() } else { request.send_bytes(&body) };
        let response = match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = response.status();
        let mut headers = serde_json::Map::new();
        for name in response.headers_names() {
            if let Some(v) = response.header(&name) {
                headers.insert(name.to_lowercase(), json!(v));
            }
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
