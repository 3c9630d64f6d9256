//! Hosting one process component in wasmtime: the `hyperware:process/standard` imports.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::{IoView, WasiCtx, WasiCtxBuilder, WasiView};

use crate::kernel::{Kernel, VirtualWallClock};
use crate::types::{Addr, Blob, Cap, Delivery, Envelope, ErrorKind, Msg};

wasmtime::component::bindgen!({
    path: "../../target/wit",
    world: "process-v1",
    async: true,
    trappable_imports: true,
});

use hyperware::process::standard as wit;

pub struct ProcState {
    kernel: Arc<Kernel>,
    our: Addr,
    /// Taken back when the process restarts after exiting (its queued messages stay).
    rx: Option<mpsc::UnboundedReceiver<Delivery>>,
    deferred: VecDeque<Delivery>,
    /// The request being handled (responses go to its rsvp or source).
    prompting: Option<Envelope>,
    current_blob: Option<Blob>,
    last_blob: Option<Blob>,
    /// Our requests awaiting an answer: id → (context, prompting message at the time).
    pending: HashMap<u64, (Option<Vec<u8>>, Option<Envelope>)>,
    state_file: PathBuf,
    on_exit: wit::OnExit,
    busy: bool,
    /// When the process took its current message, less the host's own work since (timings on).
    running_since: Option<Instant>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl IoView for ProcState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for ProcState {
    fn ctx(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

fn to_wit_addr(a: &Addr) -> wit::Address {
    let mut parts = a.process.splitn(3, ':');
    wit::Address {
        node: a.node.clone(),
        process: wit::ProcessId {
            process_name: parts.next().unwrap_or("").to_string(),
            package_name: parts.next().unwrap_or("").to_string(),
            publisher_node: parts.next().unwrap_or("").to_string(),
        },
    }
}

fn from_wit_addr(a: &wit::Address) -> Addr {
    Addr {
        node: a.node.clone(),
        process: format!("{}:{}:{}", a.process.process_name, a.process.package_name, a.process.publisher_node),
    }
}

fn to_wit_caps(caps: &[Cap]) -> Vec<wit::Capability> {
    caps.iter().map(|c| wit::Capability { issuer: to_wit_addr(&c.issuer), params: c.params.clone() }).collect()
}

fn from_wit_caps(caps: &[wit::Capability]) -> Vec<Cap> {
    caps.iter().map(|c| Cap { issuer: from_wit_addr(&c.issuer), params: c.params.clone() }).collect()
}

fn to_wit_blob(b: &Blob) -> wit::LazyLoadBlob {
    wit::LazyLoadBlob { mime: b.mime.clone(), bytes: b.bytes.clone() }
}

fn from_wit_blob(b: wit::LazyLoadBlob) -> Blob {
    Blob { mime: b.mime, bytes: b.bytes }
}

fn to_wit_request(m: &Msg) -> wit::Request {
    match m {
        Msg::Request { inherit, expects_response, body, metadata, capabilities } => wit::Request {
            inherit: *inherit,
            expects_response: *expects_response,
            body: body.clone(),
            metadata: metadata.clone(),
            capabilities: to_wit_caps(capabilities),
        },
        Msg::Response { body, .. } => wit::Request {
            inherit: false,
            expects_response: None,
            body: body.clone(),
            metadata: None,
            capabilities: vec![],
        },
    }
}

/// A stopped instance (trap, return or restart) gives back its share of the kernel's counters.
impl Drop for ProcState {
    fn drop(&mut self) {
        self.mark_busy(false);
        if let Some(rx) = self.rx.as_mut() {
            while rx.try_recv().is_ok() {
                self.kernel.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

type ReceiveResult = Result<(wit::Address, wit::Message), (wit::SendError, Option<Vec<u8>>)>;

impl ProcState {
    fn mark_busy(&mut self, busy: bool) {
        if busy != self.busy {
            self.busy = busy;
            if busy {
                self.kernel.busy.fetch_add(1, Ordering::SeqCst);
            } else {
                self.kernel.busy.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// The process asks for its next message: its time since taking the last one was its own.
    fn stop_running(&mut self) {
        let our = &self.our.process;
        self.kernel.network.timings.record_named(|| format!("component: {our}"), self.running_since.take());
    }

    fn start_running(&mut self) {
        self.running_since = self.kernel.network.timings.start();
    }

    /// Time a host call spent on the kernel's or the state's work is timed as theirs, not the component's.
    fn exclude(&mut self, took: Option<Duration>) {
        if let (Some(since), Some(took)) = (self.running_since.as_mut(), took) {
            *since += took;
        }
    }

    fn route(&mut self, env: Envelope) {
        let started = self.kernel.network.timings.start();
        self.kernel.route(env);
        self.exclude(started.map(|s| s.elapsed()));
    }

    async fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(d) = self.deferred.pop_front() {
            return Some(d);
        }
        self.next_incoming().await
    }

    /// The next message from the mailbox, ignoring deferred ones.
    async fn next_incoming(&mut self) -> Option<Delivery> {
        let rx = self.rx.as_mut()?;
        if self.busy {
            if let Ok(d) = rx.try_recv() {
                self.kernel.queued.fetch_sub(1, Ordering::SeqCst);
                return Some(d);
            }
            self.mark_busy(false);
        }
        let d = self.rx.as_mut()?.recv().await;
        if d.is_some() {
            self.kernel.queued.fetch_sub(1, Ordering::SeqCst);
        }
        d
    }

    /// Makes `delivery` the current message and converts it for the guest.
    fn accept(&mut self, delivery: Delivery) -> ReceiveResult {
        self.mark_busy(true);
        match delivery {
            Delivery::Message(env) => {
                self.current_blob = env.blob.clone();
                if env.blob.is_some() {
                    self.last_blob = env.blob.clone();
                }
                let source = to_wit_addr(&env.source);
                match &env.msg {
                    Msg::Request { expects_response, .. } => {
                        let request = to_wit_request(&env.msg);
                        // As on a node, only a request someone waits for becomes the message
                        // that `send-response` answers.
                        if expects_response.is_some() || env.rsvp.is_some() {
                            self.prompting = Some(env);
                        }
                        Ok((source, wit::Message::Request(request)))
                    }
                    Msg::Response { inherit, body, metadata, capabilities } => {
                        let (context, prompting) = self.pending.remove(&env.id).unwrap_or((None, None));
                        self.prompting = prompting;
                        let response = wit::Response {
                            inherit: *inherit,
                            body: body.clone(),
                            metadata: metadata.clone(),
                            capabilities: to_wit_caps(capabilities),
                        };
                        Ok((source, wit::Message::Response((response, context))))
                    }
                }
            }
            Delivery::Error { kind, original } => {
                let (context, prompting) = self.pending.remove(&original.id).unwrap_or((None, None));
                self.prompting = prompting;
                self.current_blob = None;
                let error = wit::SendError {
                    kind: match kind {
                        ErrorKind::Offline => wit::SendErrorKind::Offline,
                        ErrorKind::Timeout => wit::SendErrorKind::Timeout,
                    },
                    target: to_wit_addr(&original.target),
                    message: wit::Message::Request(to_wit_request(&original.msg)),
                    lazy_load_blob: original.blob.as_ref().map(to_wit_blob),
                };
                Err((error, context))
            }
        }
    }

    /// Builds and routes a request; returns its id.
    fn send(&mut self, target: &wit::Address, request: wit::Request, context: Option<Vec<u8>>, blob: Option<wit::LazyLoadBlob>) -> u64 {
        let mut target = from_wit_addr(target);
        if target.node == "our" {
            target.node = self.kernel.node.clone();
        }
        // A node: `inherit` takes the prompting message's id and, without a blob of its own,
        // the last blob received; the answer goes to us if we expect one, else (inheriting) to
        // the prompting message's rsvp.
        let id = match (&self.prompting, request.inherit) {
            (Some(p), true) => p.id,
            _ => self.kernel.next_id(),
        };
        let rsvp = match (request.expects_response, request.inherit, &self.prompting) {
            (Some(_), _, _) => Some(self.our.clone()),
            (None, true, Some(p)) => p.rsvp.clone(),
            _ => None,
        };
        let blob = match blob {
            Some(b) => Some(from_wit_blob(b)),
            None if request.inherit => self.last_blob.clone(),
            None => None,
        };
        if request.expects_response.is_some() {
            self.pending.insert(id, (context, self.prompting.clone()));
        }
        let env = Envelope {
            id,
            source: self.our.clone(),
            target,
            rsvp,
            msg: Msg::Request {
                inherit: request.inherit,
                expects_response: request.expects_response,
                body: request.body,
                metadata: request.metadata,
                capabilities: from_wit_caps(&request.capabilities),
            },
            blob,
        };
        self.route(env);
        id
    }
}

impl wit::Host for ProcState {
    async fn print_to_terminal(&mut self, _verbosity: u8, message: String) -> wasmtime::Result<()> {
        self.kernel.log(&self.our.process, &message);
        Ok(())
    }

    async fn our(&mut self) -> wasmtime::Result<wit::Address> {
        Ok(to_wit_addr(&self.our))
    }

    async fn get_on_exit(&mut self) -> wasmtime::Result<wit::OnExit> {
        Ok(self.on_exit.clone())
    }

    async fn set_on_exit(&mut self, on_exit: wit::OnExit) -> wasmtime::Result<()> {
        self.on_exit = on_exit;
        Ok(())
    }

    async fn get_state(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(std::fs::read(&self.state_file).ok())
    }

    async fn set_state(&mut self, bytes: Vec<u8>) -> wasmtime::Result<()> {
        let started = self.kernel.network.timings.start();
        // Write then rename: a crash never leaves half a state.
        let tmp = self.state_file.with_extension("tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &self.state_file)?;
        let took = self.kernel.network.timings.record(crate::timings::STATE_SAVE, started);
        self.exclude(took);
        Ok(())
    }

    async fn clear_state(&mut self) -> wasmtime::Result<()> {
        let _ = std::fs::remove_file(&self.state_file);
        Ok(())
    }

    async fn spawn(
        &mut self,
        _name: Option<String>,
        _wasm_path: String,
        _on_exit: wit::OnExit,
        _request_capabilities: Vec<wit::Capability>,
        _grant_capabilities: Vec<(wit::ProcessId, String)>,
        _public: bool,
    ) -> wasmtime::Result<Result<wit::ProcessId, wit::SpawnError>> {
        Ok(Err(wit::SpawnError::NoFileAtPath))
    }

    async fn save_capabilities(&mut self, _caps: Vec<wit::Capability>) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn drop_capabilities(&mut self, _caps: Vec<wit::Capability>) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn our_capabilities(&mut self) -> wasmtime::Result<Vec<wit::Capability>> {
        Ok(vec![])
    }

    async fn receive(&mut self) -> wasmtime::Result<ReceiveResult> {
        self.stop_running();
        let delivery = self.next_delivery().await;
        self.start_running();
        match delivery {
            Some(d) => Ok(self.accept(d)),
            None => Err(wasmtime::Error::msg("process stopped")),
        }
    }

    async fn has_blob(&mut self) -> wasmtime::Result<bool> {
        Ok(self.current_blob.is_some())
    }

    async fn get_blob(&mut self) -> wasmtime::Result<Option<wit::LazyLoadBlob>> {
        Ok(self.current_blob.as_ref().map(to_wit_blob))
    }

    async fn last_blob(&mut self) -> wasmtime::Result<Option<wit::LazyLoadBlob>> {
        Ok(self.last_blob.as_ref().map(to_wit_blob))
    }

    async fn send_request(
        &mut self,
        target: wit::Address,
        request: wit::Request,
        context: Option<Vec<u8>>,
        lazy_load_blob: Option<wit::LazyLoadBlob>,
    ) -> wasmtime::Result<()> {
        self.send(&target, request, context, lazy_load_blob);
        Ok(())
    }

    async fn send_requests(
        &mut self,
        requests: Vec<(wit::Address, wit::Request, Option<Vec<u8>>, Option<wit::LazyLoadBlob>)>,
    ) -> wasmtime::Result<()> {
        for (target, request, context, blob) in requests {
            self.send(&target, request, context, blob);
        }
        Ok(())
    }

    async fn send_response(&mut self, response: wit::Response, lazy_load_blob: Option<wit::LazyLoadBlob>) -> wasmtime::Result<()> {
        // A node needs a prompting message (a request that someone waits for) and nothing else.
        let Some(prompting) = self.prompting.clone() else {
            self.kernel.log("kernel", &format!("{}: send-response without a request to answer: dropped", self.our.process));
            return Ok(());
        };
        // `inherit` answers with the last blob received, even when a blob is given.
        let blob = if response.inherit { self.last_blob.clone() } else { lazy_load_blob.map(from_wit_blob) };
        let env = Envelope {
            id: prompting.id,
            source: self.our.clone(),
            target: prompting.rsvp.clone().unwrap_or_else(|| prompting.source.clone()),
            rsvp: None,
            msg: Msg::Response {
                inherit: response.inherit,
                body: response.body,
                metadata: response.metadata,
                capabilities: from_wit_caps(&response.capabilities),
            },
            blob,
        };
        self.route(env);
        Ok(())
    }

    async fn send_and_await_response(
        &mut self,
        target: wit::Address,
        request: wit::Request,
        lazy_load_blob: Option<wit::LazyLoadBlob>,
    ) -> wasmtime::Result<Result<(wit::Address, wit::Message), wit::SendError>> {
        if request.expects_response.is_none() {
            return Err(wasmtime::Error::msg("send-and-await-response needs a timeout"));
        }
        if from_wit_addr(&target).process == self.our.process && (target.node == self.our.node || target.node == "our") {
            return Err(wasmtime::Error::msg("send-and-await-response may not target the calling process"));
        }
        let id = self.send(&target, request, None, lazy_load_blob);
        // Waiting for the answer is not the component's time.
        self.stop_running();
        loop {
            // Messages that are not our answer wait in `deferred` for the next `receive`.
            let Some(delivery) = self.next_incoming().await else {
                return Err(wasmtime::Error::msg("process stopped"));
            };
            let ours = match &delivery {
                Delivery::Message(env) => matches!(env.msg, Msg::Response { .. }) && env.id == id,
                Delivery::Error { original, .. } => original.id == id,
            };
            if !ours {
                self.deferred.push_back(delivery);
                continue;
            }
            self.start_running();
            // Keep the prompting message: the caller is still handling it.
            let prompting = self.prompting.clone();
            let answer = self.accept(delivery);
            self.prompting = prompting;
            return Ok(match answer {
                Ok((source, message)) => Ok((source, message)),
                Err((error, _)) => Err(error),
            });
        }
    }
}

pub struct ProcessSpec {
    pub our: Addr,
    pub component: Component,
    pub on_exit_restart: bool,
}

pub fn engine() -> wasmtime::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.async_support(true);
    // `DEVNODE_PERFMAP=1`: write /tmp/perf-<pid>.map so `perf record` names the components'
    // functions (build the package with `CARGO_PROFILE_RELEASE_STRIP=false` to keep the names).
    if std::env::var_os("DEVNODE_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
}

/// Runs the process until the devnode stops it; restarts it when its manifest asks for that.
pub async fn run_process(kernel: Arc<Kernel>, engine: Engine, spec: Arc<ProcessSpec>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    let mut linker: Linker<ProcState> = Linker::new(&engine);
    if let Err(e) = ProcessV1::add_to_linker(&mut linker, |s: &mut ProcState| s) {
        kernel.log("devnode", &format!("{}: linking failed: {e}", spec.our.process));
        return;
    }
    if let Err(e) = wasmtime_wasi::p2::add_to_linker_async(&mut linker) {
        kernel.log("devnode", &format!("{}: linking WASI failed: {e}", spec.our.process));
        return;
    }
    let state_dir = kernel.data_dir.join("state");
    let _ = std::fs::create_dir_all(&state_dir);
    let mut attempt = 0u32;
    loop {
        let wasi = WasiCtxBuilder::new().inherit_stderr().wall_clock(VirtualWallClock(kernel.clone())).build();
        let state = ProcState {
            kernel: kernel.clone(),
            our: spec.our.clone(),
            rx: Some(rx),
            deferred: VecDeque::new(),
            prompting: None,
            current_blob: None,
            last_blob: None,
            pending: HashMap::new(),
            state_file: state_dir.join(format!("{}.state", spec.our.process.replace(':', "_"))),
            on_exit: if spec.on_exit_restart { wit::OnExit::Restart } else { wit::OnExit::None },
            busy: false,
            running_since: None,
            wasi,
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        let outcome = match ProcessV1::instantiate_async(&mut store, &spec.component, &linker).await {
            Ok(instance) => instance.call_init(&mut store, &spec.our.to_string()).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("instantiation failed: {e:#}")),
        };
        let mut state = store.into_data();
        state.mark_busy(false);
        match outcome {
            Ok(()) => kernel.log("devnode", &format!("{} returned from init", spec.our.process)),
            Err(e) => kernel.log("devnode", &format!("{} stopped: {}", spec.our.process, e.lines().next().unwrap_or(""))),
        }
        if !matches!(state.on_exit, wit::OnExit::Restart) {
            return;
        }
        attempt += 1;
        let backoff = std::time::Duration::from_millis(250 * 2u64.pow(attempt.min(6)));
        tokio::time::sleep(backoff).await;
        rx = state.rx.take().expect("the mailbox is kept until the process ends");
        kernel.log("devnode", &format!("restarting {}", spec.our.process));
    }
}
