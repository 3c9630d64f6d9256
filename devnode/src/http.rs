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

fn mime_of(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript",
        "css" => "text/css",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

impl NodeHttp {
    fn cookie_name(&self) -> String {
        format!("hyperware-auth_{}", self.kernel.node)
    }

    fn authenticated(&self, headers: &hyper::HeaderMap) -> bool {
        let wanted = format!("{}={}", self.cookie_name(), self.token);
        headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|c| c.trim() == wanted)
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().to_string();
        if path == "/login" {
            if method == "GET" {
                return respond(StatusCode::OK, "text/html; charset=utf-8", LOGIN_PAGE);
            }
            let Ok((_, body)) = body_bytes(req).await else { return respond(StatusCode::BAD_REQUEST, "text/plain", "bad body") };
            let password = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("password").and_then(Value::as_str).map(str::to_string));
            if password.as_deref() != Some(self.password.as_str()) {
                return respond(StatusCode::UNAUTHORIZED, "text/plain", "wrong password");
            }
            return Response::builder()
                .status(StatusCode::OK)
                .header("set-cookie", format!("{}={}; Path=/; HttpOnly; SameSite=Strict", self.cookie_name(), self.token))
                .body(Full::new(Bytes::new()))
                .expect("valid");
        }
        if path == "/our.js" {
            return respond(StatusCode::OK, "text/javascript", format!("window.our = {{}}; window.our.node = '{}';", self.kernel.node));
        }
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let binding = {
            let bindings = self.kernel.services.bindings.lock().unwrap();
            bindings.get(trimmed).cloned().map(|b| (trimmed.to_string(), b)).or_else(|| {
                // Unbound paths fall back to the UI root of the first segment (the process id).
                let first = trimmed.split('/').nth(1).unwrap_or("");
                let root = format!("/{first}");
                bindings.get(&root).cloned().map(|b| (root, b))
            })
        };
        let Some((bound_path, binding)) = binding else {
            return respond(StatusCode::NOT_FOUND, "text/plain", "not found");
        };
        if binding.authenticated && !self.authenticated(req.headers()) {
            // As on a node: the login page, status 200, the process is never called.
            return respond(StatusCode::OK, "text/html; charset=utf-8", LOGIN_PAGE);
        }
        if binding.local_only && !peer.ip().is_loopback() {
            return respond(StatusCode::FORBIDDEN, "text/plain", "local only");
        }
        if let Some(content) = &binding.content {
            if method == "GET" || method == "HEAD" {
                let mime = content.mime.clone().unwrap_or_else(|| mime_of(&bound_path).to_string());
                return respond(StatusCode::OK, &mime, content.bytes.clone());
            }
        }
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
        let mut headers = serde_json::Map::new();
        for (name, value) in req.headers() {
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().to_lowercase(), json!(v));
            }
        }
        let query_params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let Ok((_, body)) = body_bytes(req).await else { return respond(StatusCode::BAD_REQUEST, "text/plain", "bad body") };
        let url = format!("http://{host}{path}{}", if query.is_empty() { String::new() } else { format!("?{query}") });
        let request = json!({"Http": {
            "source_socket_addr": peer.to_string(), "method": method, "url": url, "bound_path": bound_path,
            "headers": headers, "url_params": {}, "query_params": query_params,
        }});
        let from = Addr::new(&self.kernel.node, "http-server:distro:sys");
        let to = Addr::new(&self.kernel.node, &binding.process);
        let blob = Some(Blob { mime: None, bytes: body });
        match self.kernel.call(from, to, serde_json::to_vec(&request).expect("json"), blob, HTTP_SELF_IMPOSED_TIMEOUT_SECS).await {
            Ok((answer, blob)) => {
                let Ok(head) = serde_json::from_slice::<Value>(&answer) else {
                    return respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "the process answered with something other than an HTTP response");
                };
                let Some(status) = head.get("status").and_then(Value::as_u64).and_then(|s| StatusCode::from_u16(s as u16).ok()) else {
                    return respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "the process answered with something other than an HTTP response");
                };
                let mut builder = Response::builder().status(status);
                let mut has_type = false;
                if let Some(h) = head.get("headers").and_then(Value::as_object) {
                    for (k, v) in h {
                        if let Some(v) = v.as_str() {
                            has_type |= k.eq_ignore_ascii_case("content-type");
                            builder = builder.header(k, v);
                        }
                    }
                }
                let bytes = blob.map(|b| b.bytes).unwrap_or_default();
                if !has_type && serde_json::from_slice::<Value>(&bytes).is_ok() {
                    builder = builder.header("content-type", "application/json");
                }
                builder.body(Full::new(bytes.into())).unwrap_or_else(|_| respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "bad headers"))
            }
            Err(e) if e.starts_with("timeout") => respond(StatusCode::REQUEST_TIMEOUT, "text/plain", e),
            Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e),
        }
    }
}

/// A node's HTTP server answers 408 when a process has not answered within 15 s
/// (hyperdrive's `HTTP_SELF_IMPOSED_TIMEOUT`); devnode is no more patient.
const HTTP_SELF_IMPOSED_TIMEOUT_SECS: u64 = 15;

// ----- the control API -----

pub struct Control {
    pub kernel: Arc<Kernel>,
    pub package_processes: Vec<String>,
    pub restart: tokio::sync::mpsc::UnboundedSender<(String, tokio::sync::oneshot::Sender<()>)>,
    pub shutdown: tokio::sync::mpsc::UnboundedSender<()>,
}

fn bad(msg: impl Into<String>) -> HttpResponse {
    json_response(StatusCode::BAD_REQUEST, json!({"error": msg.into()}))
}

impl Control {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, _peer: SocketAddr) -> HttpResponse {
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
                let source = if path == "/devnode/p2p" {
                    if from == self.kernel.node || !self.kernel.peers.contains(from) {
                        return bad(format!("`from` must be a simulated peer (--peer), not {from:?}"));
                    }
                    let process = v.get("from_process").and_then(Value::as_str).unwrap_or("client:remote-app:sys");
                    Addr::new(from, process)
                } else {
                    if from.split(':').count() != 3 {
                        return bad("`from` must be a process id process:package:publisher");
                    }
                    Addr::new(&self.kernel.node, from)
                };
                let target = Addr::new(&self.kernel.node, to);
                let timeout = v.get("timeout_secs").and_then(Value::as_u64).unwrap_or(30).clamp(1, 600);
                let body = serde_json::to_vec(msg).expect("json");
                match self.kernel.call(source, target, body, None, timeout).await {
                    Ok((answer, _)) => match serde_json::from_slice::<Value>(&answer) {
                        Ok(v) => json_response(StatusCode::OK, json!({"response": v})),
                        Err(_) => json_response(StatusCode::OK, json!({"response_text": String::from_utf8_lossy(&answer)})),
                    },
                    Err(e) => json_response(StatusCode::OK, json!({"error": e})),
                }
            }
            ("GET", "/devnode/logs") => {
                let since = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "since")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0);
                let (next, lines) = self.kernel.logs_since(since);
                json_response(StatusCode::OK, json!({"next": next, "lines": lines}))
            }
            ("GET", "/devnode/quiet") => json_response(StatusCode::OK, json!({"quiet": self.kernel.is_quiet()})),
            ("POST", "/devnode/restart") => {
                let process = match json_body().map(|v| v.get("process").and_then(Value::as_str).map(str::to_string)) {
                    Ok(Some(p)) => p,
                    Ok(None) => return bad("expected {\"process\": \"<process id>\"}"),
                    Err(e) => return bad(e),
                };
                if !self.package_processes.contains(&process) {
                    return bad(format!("no process {process:?} in the package"));
                }
                // Answer once the new instance runs, so that callers never reach the old one.
                let (done, restarted) = tokio::sync::oneshot::channel();
                let _ = self.restart.send((process.clone(), done));
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
            ("POST", "/devnode/shutdown") => {
                let _ = self.shutdown.send(());
                json_response(StatusCode::OK, json!({"stopping": true}))
            }
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": format!("no control endpoint {method} {path}")})),
        }
    }
}
