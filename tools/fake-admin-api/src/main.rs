//! `fake-admin-api --scenario <file.json> [--port <p>] [--clock-url <devnode control url>] [--quiet]`

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fake_admin_api::{handle_api, handle_control, Scenario, Shared, State};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

async fn serve(state: Shared, quiet: bool, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_lowercase(), v.to_string())))
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    // The handlers may read devnode's clock over HTTP: keep that off the async workers.
    let (m, p) = (method.clone(), path.clone());
    let answer = tokio::task::spawn_blocking(move || {
        if p.starts_with("/_control") {
            handle_control(&state, &m, &p, &query, &body)
        } else {
            handle_api(&state, &m, &p, &query, &headers, &body)
        }
    })
    .await
    .expect("handler");
    // One line per request: method, path (no query) and status; never the headers (they carry the admin key).
    if !quiet {
        println!("{method} {path} -> {}", answer.status);
    }
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    let mut builder = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        builder = builder.header(k, v);
    }
    builder.body(Full::new(answer.body.into())).expect("response")
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut scenario_path, mut port, mut clock_url) = (None, 0u16, None);
    // --quiet: no line per request (`cargo xtask run` passes it: the lines would flood a terminal).
    let mut quiet = false;
    while let Some(flag) = args.next() {
        if flag == "--quiet" {
            quiet = true;
            continue;
        }
        match (flag.as_str(), args.next()) {
            ("--scenario", Some(v)) => scenario_path = Some(v),
            ("--port", Some(v)) => match v.parse() {
                Ok(p) => port = p,
                Err(_) => {
                    eprintln!("fake-admin-api: --port needs a port number");
                    return ExitCode::from(2);
                }
            },
            ("--clock-url", Some(v)) => clock_url = Some(v),
            (other, _) => {
                eprintln!("fake-admin-api: unknown flag or missing value: {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(scenario_path) = scenario_path else {
        eprintln!("fake-admin-api: --scenario <file.json> is required");
        return ExitCode::from(2);
    };
    let scenario = match std::fs::read_to_string(&scenario_path).map_err(|e| format!("{scenario_path}: {e}")).and_then(|t| Scenario::parse(&t)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-admin-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state: Shared = Arc::new(Mutex::new(State::new(scenario, clock_url)));
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-admin-api: port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("bound");
    println!("fake-admin-api ready url=http://{addr} control=http://{addr}/_control");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(serve(state, quiet, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}
