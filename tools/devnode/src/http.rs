//! The node's HTTP server (bindings, login, static UI) and the devnode control API.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::kernel::Kernel;
use crate::services::Binding;
use crate::types::{Addr, Blob};

type HttpResponse = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

fn json_response(status: StatusCode, v: Value) -> HttpResponse {
    respond(status, "application/json", serde_json::to_vec(&v).expect("json"))
}

/// Serves `handler` on `listener` until the process ends.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = HttpResponse> + Send + 'static,
{
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn body_bytes(req: Request<Incoming>) -> Result<(hyper::http::request::Parts, Vec<u8>), String> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts, bytes.to_vec()))
}

// ----- the node's HTTP server -----

pub struct NodeHttp {
    pub kernel: Arc<Kernel>,
    pub password: String,
    /// Session token set by a successful login (one per devnode run).
    pub token: String,
}

const LOGIN_PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Log in</title><link rel="icon" href="data:,"></head>
<body><main><h1>Log in to your node</h1><form id="f"><label>Password <input id="p" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button></form><p id="e" role="alert"></p></main>
<script>document.getElementById('f').onsubmit=async(ev)=>{ev.preventDefault();
const r=await fetch('/login',{method:'POST',headers:{'content-type':'application/json'},body:JSON.stringify({password:document.getElementById('p').value})});
if(r.ok){location.reload()}else{document.getElementById('e').textContent='Wrong password'}}</script></body></html>"#;

/// A node's HTTP server answers 408 when a process has not answered within 15 s
/// (hyperdrive's `HTTP_SELF_IMPOSED_TIMEOUT`); the client may change it with this header.
const HTTP_SELF_IMPOSED_TIMEOUT_SECS: u64 = 15;
const TIMEOUT_HEADER: &str = "x-hyperware-http-server-timeout";

/// Headers that mark a request as coming through a reverse proxy: `local_only` refuses it.
const REVERSE_PROXY_HEADERS: &[&str] = &["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"];

/// The content type a node's server (warp) gives a byte body the process did not type.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// What a node's server answers by itself (404, 408, 403, 500): status only, an empty byte body.
fn bare(status: StatusCode) -> HttpResponse {
    respond(status, DEFAULT_CONTENT_TYPE, Bytes::new())
}

/// A node drops one trailing `/` (hyperdrive `normalize_path`).
pub fn normalize_path(path: &str) -> &str {
    path.strip_suffix('/').unwrap_or(path)
}

/// The host of a `Host` header without its port, as a node puts it in the request's `url`.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// The login token in a `Cookie` header, read as a node reads it: entries split on exactly
/// `"; "`, each `name=value` with no other `=`.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split("; ").find_map(|entry| {
        let mut parts = entry.split('=');
        let (key, value) = (parts.next()?, parts.next()?);
        (parts.next().is_none() && key == name && !value.is_empty()).then_some(value)
    })
}

/// Request headers as a node hands them to a process: lower-case names, one value per name
/// (the last), a value that is not visible ASCII becomes empty.
pub fn serialize_headers(headers: &hyper::HeaderMap) -> serde_json::Map<String, Value> {
    headers.iter().map(|(name, value)| (name.as_str().to_string(), json!(value.to_str().unwrap_or("")))).collect()
}

/// How long the process has to answer: 15 s, or what the client's timeout header says.
pub fn http_timeout_secs(headers: &hyper::HeaderMap) -> u64 {
    headers.get(TIMEOUT_HEADER).and_then(|t| t.to_str().ok()).and_then(|t| t.parse().ok()).unwrap_or(HTTP_SELF_IMPOSED_TIMEOUT_SECS)
}

/// The `{"Http": IncomingHttpRequest}` body a node sends the bound process: `url` is
/// `http://<host without port><path without one trailing slash>` (no query), `query_params` the
/// decoded query.
pub fn incoming_request(peer: SocketAddr, method: &str, host: &str, path: &str, query: &str, bound_path: &str, headers: serde_json::Map<String, Value>) -> Value {
    let query_params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    json!({"Http": {
        "source_socket_addr": peer.to_string(), "method": method,
        "url": format!("http://{}{}", host_without_port(host), normalize_path(path)),
        "bound_path": bound_path, "headers": headers, "url_params": {}, "query_params": query_params,
    }})
}

/// The process's `HttpResponse` body: `{"status": u16, "headers": {string: string}}`, both required.
#[derive(serde::Deserialize)]
struct ProcessHttpResponse {
    status: u16,
    headers: HashMap<String, String>,
}

/// Builds the client's answer from the process's, as a node does: the body is bytes
/// (`application/octet-stream` unless the process set a content type), header names or values
/// that are not valid are left out, a status that is not one is 500.
pub fn answer_from_process(head: &[u8], body: Vec<u8>) -> HttpResponse {
    let Ok(head) = serde_json::from_slice::<ProcessHttpResponse>(head) else {
        return bare(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(status, DEFAULT_CONTENT_TYPE, body);
    for (name, value) in head.headers {
        if let (Ok(name), Ok(value)) = (hyper::header::HeaderName::from_bytes(name.as_bytes()), hyper::header::HeaderValue::from_str(&value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

impl NodeHttp {
    fn cookie_name(&self) -> String {
        format!("hyperware-auth_{}", self.kernel.node)
    }

    /// Only the last `Cookie` header counts, as on a node (one value per header name).
    fn authenticated(&self, headers: &hyper::HeaderMap) -> bool {
        let cookie = headers.get_all("cookie").iter().last().and_then(|v| v.to_str().ok()).unwrap_or("");
        cookie_value(cookie, &self.cookie_name()) == Some(self.token.as_str())
    }

    async fn login(&self, req: Request<Incoming>) -> HttpResponse {
        if req.method() == hyper::Method::GET {
            return respond(StatusCode::OK, "text/html; charset=utf-8", LOGIN_PAGE);
        }
        let Ok((_, body)) = body_bytes(req).await else { return respond(StatusCode::BAD_REQUEST, "text/plain", "bad body") };
        let password = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("password").and_then(Value::as_str).map(str::to_string));
        if password.as_deref() != Some(self.password.as_str()) {
            return respond(StatusCode::UNAUTHORIZED, "text/plain", "wrong password");
        }
        Response::builder()
            .status(StatusCode::OK)
            .header("set-cookie", format!("{}={}; Path=/; HttpOnly; SameSite=Strict", self.cookie_name(), self.token))
            .body(Full::new(Bytes::new()))
            .expect("valid")
    }

    /// The binding for `path`, else the UI root of its first segment (the process id). An
    /// unbound path is a binding without a process (404), as on a node.
    fn binding_for(&self, path: &str) -> Option<(String, Binding)> {
        let bindings = self.kernel.services.bindings.lock().unwrap();
        let path = if path.is_empty() { "/" } else { path };
        bindings.get(path).cloned().map(|b| (path.to_string(), b)).or_else(|| {
            let root = format!("/{}", path.split('/').nth(1).unwrap_or(""));
            bindings.get(&root).cloned().map(|b| (root, b))
        })
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let path = req.uri().path().to_string();
        if path == "/login" {
            return self.login(req).await;
        }
        if path == "/our.js" {
            return respond(StatusCode::OK, "text/javascript", format!("window.our = {{}}; window.our.node = '{}';", self.kernel.node));
        }
        let Some((bound_path, binding)) = self.binding_for(normalize_path(&path)) else {
            return bare(StatusCode::NOT_FOUND);
        };
        let Some(process) = binding.process.clone() else {
            return bare(StatusCode::NOT_FOUND);
        };
        if binding.authenticated && !self.authenticated(req.headers()) {
            // As on a node: the login page, status 200 and no content type, the process is never called.
            return Response::builder().status(StatusCode::OK).body(Full::new(Bytes::from_static(LOGIN_PAGE.as_bytes()))).expect("valid");
        }
        let behind_proxy = REVERSE_PROXY_HEADERS.iter().any(|h| req.headers().contains_key(*h));
        if binding.local_only && (!peer.ip().is_loopback() || behind_proxy) {
            return bare(StatusCode::FORBIDDEN);
        }
        // Only GET is served from static content; HEAD and the rest go to the process.
        if let (Some(content), true) = (&binding.content, req.method() == hyper::Method::GET) {
            return respond(StatusCode::OK, content.mime.as_deref().unwrap_or("text/plain"), content.bytes.clone());
        }
        self.ask_process(req, peer, &bound_path, &process).await
    }

    /// Hands the request to the bound process and waits for its answer (408 when late).
    async fn ask_process(&self, req: Request<Incoming>, peer: SocketAddr, bound_path: &str, process: &str) -> HttpResponse {
        let timeout = http_timeout_secs(req.headers());
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
        let (method, path, query) = (req.method().to_string(), req.uri().path().to_string(), req.uri().query().unwrap_or("").to_string());
        let headers = serialize_headers(req.headers());
        let Ok((_, body)) = body_bytes(req).await else { return respond(StatusCode::BAD_REQUEST, "text/plain", "bad body") };
        let request = incoming_request(peer, &method, &host, &path, &query, bound_path, headers);
        let from = Addr::new(&self.kernel.node, "http-server:distro:sys");
        let to = Addr::new(&self.kernel.node, process);
        let blob = Some(Blob { mime: None, bytes: body });
        match self.kernel.call(from, to, serde_json::to_vec(&request).expect("json"), blob, timeout).await {
            Ok((head, blob)) => answer_from_process(&head, blob.map(|b| b.bytes).unwrap_or_default()),
            Err(e) if e.starts_with("timeout") => bare(StatusCode::REQUEST_TIMEOUT),
            Err(_) => bare(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_split_on_semicolon_space_only() {
        assert_eq!(cookie_value("a=1; hyperware-auth_x.os=tok", "hyperware-auth_x.os"), Some("tok"));
        assert_eq!(cookie_value("a=1;hyperware-auth_x.os=tok", "hyperware-auth_x.os"), None);
        assert_eq!(cookie_value("hyperware-auth_x.os=tok=", "hyperware-auth_x.os"), None);
        assert_eq!(cookie_value("hyperware-auth_x.os=", "hyperware-auth_x.os"), None);
    }

    #[test]
    fn the_url_has_neither_port_nor_query() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let v = incoming_request(peer, "GET", "127.0.0.1:8080", "/p:a:b.os/api/", "x=1&y=a+b", "/p:a:b.os/api", serde_json::Map::new());
        assert_eq!(v["Http"]["url"], "http://127.0.0.1/p:a:b.os/api");
        assert_eq!(v["Http"]["bound_path"], "/p:a:b.os/api");
        assert_eq!(v["Http"]["query_params"]["y"], "a b");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("localhost"), "localhost");
    }

    #[test]
    fn only_one_trailing_slash_is_dropped() {
        assert_eq!(normalize_path("/a//"), "/a/");
        assert_eq!(normalize_path("/"), "");
    }

    #[test]
    fn the_answer_is_bytes_unless_typed() {
        let r = answer_from_process(br#"{"status":201,"headers":{}}"#, b"{}".to_vec());
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["content-type"], DEFAULT_CONTENT_TYPE);
        let r = answer_from_process(br#"{"status":200,"headers":{"Content-Type":"text/csv","bad header":"x"}}"#, vec![]);
        assert_eq!(r.headers()["content-type"], "text/csv");
        assert_eq!(r.headers().len(), 1);
    }

    #[test]
    fn an_answer_that_is_not_an_http_response_is_500() {
        assert_eq!(answer_from_process(br#"{"status":200}"#, vec![]).status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer_from_process(br#"{"status":200,"headers":{"a":1}}"#, vec![]).status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer_from_process(br#"{"status":7,"headers":{}}"#, vec![]).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_client_may_set_the_timeout() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(http_timeout_secs(&h), 15);
        h.insert("X-Hyperware-Http-Server-Timeout", "600".parse().unwrap());
        assert_eq!(http_timeout_secs(&h), 600);
        h.insert("X-Hyperware-Http-Server-Timeout", "soon".parse().unwrap());
        assert_eq!(http_timeout_secs(&h), 15);
    }

    #[test]
    fn request_headers_keep_the_last_value() {
        let mut h = hyper::HeaderMap::new();
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.insert("x-b", hyper::header::HeaderValue::from_bytes(b"\xff").unwrap());
        let m = serialize_headers(&h);
        assert_eq!(m["x-a"], "2");
        assert_eq!(m["x-b"], "");
    }
}

// ----- the control API -----

pub struct Control {
    /// The main node's kernel (`--node`); the other nodes are on its network.
    pub kernel: Arc<Kernel>,
    /// The package's process ids on each node that runs one.
    pub processes: std::collections::BTreeMap<String, Vec<String>>,
    pub restart: tokio::sync::mpsc::UnboundedSender<RestartOrder>,
    pub shutdown: tokio::sync::mpsc::UnboundedSender<()>,
}

/// Restart `process` on `node`; `done` once its new instance runs.
pub struct RestartOrder {
    pub node: String,
    pub process: String,
    pub done: tokio::sync::oneshot::Sender<()>,
}

fn bad(msg: impl Into<String>) -> HttpResponse {
    json_response(StatusCode::BAD_REQUEST, json!({"error": msg.into()}))
}

impl Control {
    /// The kernel of `node` (the main node when absent), or why there is none.
    fn kernel_of(&self, node: Option<&Value>) -> Result<Arc<Kernel>, String> {
        match node {
            None | Some(Value::Null) => Ok(self.kernel.clone()),
            Some(Value::String(name)) => self.kernel.network.kernel(name).ok_or_else(|| format!("`node`: devnode runs no node {name:?} (--node or --peer-package)")),
            Some(other) => Err(format!("`node` must be a node name, not {other}")),
        }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, _peer: SocketAddr) -> HttpResponse {
        let timings = &self.kernel.network.timings;
        let handling_started = timings.start();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        let Ok((_, body)) = body_bytes(req).await else { return bad("could not read the body") };
        let json_body = || serde_json::from_slice::<Value>(&body).map_err(|e| format!("body is not JSON: {e}"));
        match (method.as_str(), path.as_str()) {
            ("GET", "/devnode/clock") => json_response(StatusCode::OK, json!({"now": self.kernel.clock.now_rfc3339(), "now_ms": self.kernel.clock.now_ms()})),
            ("POST", "/devnode/clock/advance") => {
                let secs = match json_body().map(|v| v.get("seconds").and_then(Value::as_i64)) {
                    Ok(Some(s)) if (0..=10 * 365 * 86_400).contains(&s) => s,
                    Ok(_) => return bad("expected {\"seconds\": N} with 0 <= N <= ten years"),
                    Err(e) => return bad(e),
                };
                self.kernel.advance(secs).await;
                json_response(StatusCode::OK, json!({"now": self.kernel.clock.now_rfc3339()}))
            }
            ("POST", "/devnode/p2p") | ("POST", "/devnode/local") => {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(e) => return bad(e),
                };
                let (Some(from), Some(to), Some(msg)) = (v.get("from").and_then(Value::as_str), v.get("to").and_then(Value::as_str), v.get("body")) else {
                    return bad("expected {\"from\", \"to\", \"body\"}");
                };
                if to.split(':').count() != 3 {
                    return bad("`to` must be a process id process:package:publisher");
                }
                // `/devnode/local` may name another node devnode runs (`"node"`); p2p goes to the main node.
                let kernel = match self.kernel_of(if path == "/devnode/local" { v.get("node") } else { None }) {
                    Ok(k) => k,
                    Err(e) => return bad(e),
                };
                let source = if path == "/devnode/p2p" {
                    if from == kernel.node || !kernel.network.is_simulated(from) {
                        return bad(format!("`from` must be a simulated peer (--peer), not {from:?}"));
                    }
                    let process = v.get("from_process").and_then(Value::as_str).unwrap_or("client:remote-app:sys");
                    Addr::new(from, process)
                } else {
                    if from.split(':').count() != 3 {
                        return bad("`from` must be a process id process:package:publisher");
                    }
                    Addr::new(&kernel.node, from)
                };
                let target = Addr::new(&kernel.node, to);
                let timeout = v.get("timeout_secs").and_then(Value::as_u64).unwrap_or(30).clamp(1, 600);
                let body = serde_json::to_vec(msg).expect("json");
                // `"public": false`: a simulated caller that granted nothing, so no answer reaches it.
                let private = path == "/devnode/local" && v.get("public") == Some(&Value::Bool(false));
                kernel.set_caller_private(&source.process, private);
                let awaiting_started = timings.start();
                let answer = kernel.call(source.clone(), target, body, None, timeout).await;
                let awaited = awaiting_started.map(|s| s.elapsed());
                kernel.set_caller_private(&source.process, false);
                let response = match answer {
                    Ok((answer, _)) => match serde_json::from_slice::<Value>(&answer) {
                        Ok(v) => json_response(StatusCode::OK, json!({"response": v})),
                        Err(_) => json_response(StatusCode::OK, json!({"response_text": String::from_utf8_lossy(&answer)})),
                    },
                    Err(e) => json_response(StatusCode::OK, json!({"error": e})),
                };
                // Only the p2p path is the benchmark's; its two stages are recorded together.
                if let (true, Some(_), Some(awaited)) = (path == "/devnode/p2p", handling_started, awaited) {
                    timings.add(crate::timings::CONTROL_AWAITING, awaited);
                    timings.record(crate::timings::CONTROL_P2P, handling_started);
                }
                response
            }
            ("GET", "/devnode/logs") => {
                let since = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "since")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0);
                let (next, lines) = self.kernel.logs_since(since);
                json_response(StatusCode::OK, json!({"next": next, "lines": lines}))
            }
            ("GET", "/devnode/quiet") => json_response(StatusCode::OK, json!({"quiet": self.kernel.network.is_quiet()})),
            ("POST", "/devnode/offline") => {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(e) => return bad(e),
                };
                let (Some(node), Some(offline)) = (v.get("node").and_then(Value::as_str), v.get("offline").and_then(Value::as_bool)) else {
                    return bad("expected {\"node\": \"<node>\", \"offline\": true|false}");
                };
                if !self.kernel.network.is_known(node) {
                    return bad(format!("devnode knows no node {node:?}"));
                }
                self.kernel.network.set_offline(node, offline);
                json_response(StatusCode::OK, json!({"node": node, "offline": offline}))
            }
            ("GET", "/devnode/homepage") => {
                let apps: Vec<Value> = self.kernel.services.homepage.lock().unwrap().values().cloned().collect();
                json_response(StatusCode::OK, json!({"apps": apps}))
            }
            ("POST", "/devnode/restart") => {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(e) => return bad(e),
                };
                let Some(process) = v.get("process").and_then(Value::as_str).map(str::to_string) else {
                    return bad("expected {\"process\": \"<process id>\", \"node\"?: \"<node>\"}");
                };
                let node = match self.kernel_of(v.get("node")) {
                    Ok(k) => k.node.clone(),
                    Err(e) => return bad(e),
                };
                if !self.processes.get(&node).is_some_and(|p| p.contains(&process)) {
                    return bad(format!("no process {process:?} in the package of {node}"));
                }
                // Answer once the new instance runs, so that callers never reach the old one.
                let (done, restarted) = tokio::sync::oneshot::channel();
                let _ = self.restart.send(RestartOrder { node, process: process.clone(), done });
                let _ = restarted.await;
                json_response(StatusCode::OK, json!({"restarted": process}))
            }
            ("POST", "/devnode/sqlite/delay") => {
                let ms = match json_body().map(|v| v.get("ms").and_then(Value::as_u64)) {
                    Ok(Some(ms)) if ms <= 600_000 => ms,
                    Ok(_) => return bad("expected {\"ms\": N} with N at most 600000"),
                    Err(e) => return bad(e),
                };
                self.kernel.services.write_delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
                json_response(StatusCode::OK, json!({"write_delay_ms": ms}))
            }
            ("GET", "/devnode/timings") => json_response(StatusCode::OK, timings.report()),
            ("POST", "/devnode/timings") => {
                let Ok(Some(enabled)) = json_body().map(|v| v.get("enabled").and_then(Value::as_bool)) else {
                    return bad("expected {\"enabled\": true|false}");
                };
                timings.set_enabled(enabled);
                json_response(StatusCode::OK, json!({"enabled": enabled}))
            }
            ("POST", "/devnode/timings/reset") => {
                timings.reset();
                json_response(StatusCode::OK, timings.report())
            }
            ("POST", "/devnode/shutdown") => {
                let _ = self.shutdown.send(());
                json_response(StatusCode::OK, json!({"stopping": true}))
            }
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": format!("no control endpoint {method} {path}")})),
        }
    }
}
