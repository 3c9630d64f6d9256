//! One node's kernel: routing between its processes, its services, the other nodes (through the
//! `network`) and the control API; capability checks; request timeouts; the virtual clock's timers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify};

use crate::caps::Capabilities;
use crate::network::{Network, Reach};
use crate::types::{Addr, Blob, Delivery, Envelope, ErrorKind, Msg};

pub const SERVICES: &[&str] = &[
    "http-server:distro:sys",
    "http-client:distro:sys",
    "timer:distro:sys",
    "vfs:distro:sys",
    "sqlite:distro:sys",
    "kernel:distro:sys",
    "state:distro:sys",
    "homepage:homepage:sys",
];

/// Virtual wall clock: real time plus an offset that `advance` grows.
#[derive(Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        real + self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn advance(&self, secs: i64) {
        self.offset_ms.fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn set_offset_ms(&self, ms: i64) {
        self.offset_ms.store(ms, Ordering::SeqCst);
    }

    pub fn now_rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.now_ms())
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
}

/// WASI sees the virtual clock.
pub struct VirtualWallClock(pub Arc<Kernel>);

impl wasmtime_wasi::HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.clock.now_ms().max(0) as u64)
    }
}

pub struct ProcessEntry {
    pub tx: mpsc::UnboundedSender<Delivery>,
}

#[derive(Clone, serde::Serialize)]
pub struct LogLine {
    pub seq: u64,
    pub node: String,
    pub process: String,
    pub text: String,
}

pub struct Kernel {
    pub node: String,
    /// The other nodes, the shared clock, ids and log.
    pub network: Arc<Network>,
    /// This node's state, VFS and SQLite live here.
    pub data_dir: PathBuf,
    pub clock: Arc<Clock>,
    pub processes: Mutex<HashMap<String, ProcessEntry>>,
    /// Who may message whom (set once the manifest is read).
    pub caps: RwLock<Capabilities>,
    /// Simulated local callers (control API) that are not public: answers to them are
    /// delivered only from processes holding messaging on them, i.e. never.
    private_callers: Mutex<HashSet<String>>,
    waiters: Mutex<HashMap<(String, u64), oneshot::Sender<Delivery>>>,
    /// Requests from processes that expect a response: (requester, id) → the request.
    outstanding: Mutex<HashMap<(String, u64), Envelope>>,
    /// Timers on the virtual clock: (due ms, seq) → the SetTimer request to answer.
    timers: Mutex<BTreeMap<(i64, u64), Envelope>>,
    pub timer_changed: Notify,
    /// Messages queued in mailboxes, processes handling one, service calls in flight.
    pub queued: AtomicUsize,
    pub busy: AtomicUsize,
    pub inflight: AtomicUsize,
    pub services: crate::services::Services,
}

impl Kernel {
    /// A node alone on a network of its own, with `peers` simulated.
    pub fn new(node: String, peers: HashSet<String>, data_dir: PathBuf, quiet: bool) -> Arc<Kernel> {
        Kernel::join(node, &Network::new(peers, quiet), data_dir)
    }

    /// A node on `network`, keeping its state, VFS and SQLite in `data_dir`.
    pub fn join(node: String, network: &Arc<Network>, data_dir: PathBuf) -> Arc<Kernel> {
        let services = crate::services::Services::new(&data_dir);
        let kernel = Arc::new(Kernel {
            node,
            network: network.clone(),
            data_dir,
            clock: network.clock.clone(),
            processes: Mutex::new(HashMap::new()),
            caps: RwLock::new(Capabilities::default()),
            private_callers: Mutex::new(HashSet::new()),
            waiters: Mutex::new(HashMap::new()),
            outstanding: Mutex::new(HashMap::new()),
            timers: Mutex::new(BTreeMap::new()),
            timer_changed: Notify::new(),
            queued: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            services,
        });
        network.join(&kernel);
        kernel
    }

    pub fn next_id(&self) -> u64 {
        self.network.next_id()
    }

    pub fn log(&self, process: &str, text: &str) {
        self.network.log(&self.node, process, text);
    }

    /// The log of every node devnode runs.
    pub fn logs_since(&self, since: u64) -> (u64, Vec<LogLine>) {
        self.network.logs_since(since)
    }

    /// Registers a one-shot waiter for the answer to request `id` sent from `from`.
    pub fn wait_for(&self, from: &Addr, id: u64) -> oneshot::Receiver<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert((from.to_string(), id), tx);
        rx
    }

    pub fn forget_waiter(&self, from: &Addr, id: u64) {
        self.waiters.lock().unwrap().remove(&(from.to_string(), id));
    }

    fn deliver_to_waiter(&self, target: &Addr, id: u64, delivery: Delivery) -> bool {
        match self.waiters.lock().unwrap().remove(&(target.to_string(), id)) {
            Some(tx) => {
                let _ = tx.send(delivery);
                true
            }
            None => false,
        }
    }

    fn deliver_to_process(&self, process: &str, delivery: Delivery) -> bool {
        let processes = self.processes.lock().unwrap();
        match processes.get(process) {
            Some(entry) => {
                self.queued.fetch_add(1, Ordering::SeqCst);
                if entry.tx.send(delivery).is_err() {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return false;
                }
                true
            }
            None => false,
        }
    }

    /// Tells the sender of `original` that it failed.
    fn fail(self: &Arc<Self>, original: Envelope, kind: ErrorKind) {
        let expects = matches!(original.msg, Msg::Request { expects_response: Some(_), .. });
        if !expects {
            return;
        }
        let key = (original.source.to_string(), original.id);
        if self.outstanding.lock().unwrap().remove(&key).is_none() && self.is_process(&original.source) {
            return; // already answered or timed out
        }
        let source = original.source.clone();
        let id = original.id;
        let delivery = Delivery::Error { kind, original };
        if !self.deliver_to_waiter(&source, id, delivery.clone()) && source.node == self.node {
            self.deliver_to_process(&source.process, delivery);
        }
    }

    fn is_process(&self, addr: &Addr) -> bool {
        addr.node == self.node && self.processes.lock().unwrap().contains_key(&addr.process)
    }

    /// A process the node runs: the package's, a runtime module, the homepage.
    fn runs(&self, process: &str) -> bool {
        self.processes.lock().unwrap().contains_key(process) || self.caps.read().unwrap().is_known(process)
    }

    /// Marks a simulated local caller (control API) as not public, or public again.
    pub fn set_caller_private(&self, process: &str, private: bool) {
        let mut callers = self.private_callers.lock().unwrap();
        if private {
            callers.insert(process.to_string());
        } else {
            callers.remove(process);
        }
    }

    /// Why the node's kernel would not deliver `env`, if it would not (see `caps`).
    fn refusal(&self, env: &Envelope) -> Option<String> {
        let (source, target) = (&env.source, &env.target);
        let caps = self.caps.read().unwrap();
        if source.node == self.node && target.node != self.node {
            return (!caps.has_network(&source.process)).then(|| format!("{} may not send over the network (no request_networking)", source.process));
        }
        if source.node != self.node {
            if !self.runs(&target.process) {
                return Some(format!("{} messaged {}, which does not exist on {}", env.source, target.process, self.node));
            }
            return (!caps.has_network(&target.process)).then(|| format!("{} may not receive from other nodes (no request_networking)", target.process));
        }
        let is_response = matches!(env.msg, Msg::Response { .. });
        // Simulated local callers of the control API exist only as the targets of answers.
        let simulated = is_response && !self.runs(&target.process);
        if !simulated && !self.runs(&target.process) {
            return Some(format!("{} messaged {}, which does not exist", source.process, target.process));
        }
        let allowed = if simulated {
            crate::caps::UNCHECKED_SOURCES.contains(&source.process.as_str()) || !self.private_callers.lock().unwrap().contains(&target.process)
        } else {
            caps.may_message(&source.process, &target.process)
        };
        (!allowed).then(|| format!("{} may not message {} (not public, no messaging capability)", source.process, target.process))
    }

    /// Routes one message. Requests that expect a response are tracked for their timeout.
    pub fn route(self: &Arc<Self>, env: Envelope) {
        let started = self.network.timings.start();
        self.route_untimed(env);
        self.network.timings.record(crate::timings::ROUTE, started);
    }

    fn route_untimed(self: &Arc<Self>, mut env: Envelope) {
        if env.target.node == "our" {
            env.target.node = self.node.clone();
        }
        if env.source.node == "our" {
            env.source.node = self.node.clone();
        }
        if crate::tracing_messages() {
            let kind = if matches!(env.msg, Msg::Request { .. }) { "request" } else { "response" };
            let body = String::from_utf8_lossy(env.msg.body());
            eprintln!("trace: {kind} {} {} -> {}: {}", env.id, env.source, env.target, body.chars().take(160).collect::<String>());
        }
        if let Msg::Request { expects_response: Some(secs), .. } = env.msg {
            if self.is_process(&env.source) {
                self.track_timeout(&env, secs);
            }
        }
        if let Some(why) = self.refusal(&env) {
            self.refuse(env, &why);
            return;
        }
        if env.target.node != self.node {
            self.send_away(env);
            return;
        }
        self.deliver(env);
    }

    /// A message for another node: that node's kernel takes it (and checks it as arriving from a
    /// peer); a simulated peer's answer goes to the control API caller waiting for it; a request
    /// to a simulated peer times out; an unknown or offline node is `Offline` at once.
    fn send_away(self: &Arc<Self>, env: Envelope) {
        let is_request = matches!(env.msg, Msg::Request { .. });
        match self.network.reach(&self.node, &env.target.node) {
            Reach::Node(kernel) => kernel.arrive(env),
            Reach::Simulated if !is_request => {
                let (target, id) = (env.target.clone(), env.id);
                self.deliver_to_waiter(&target, id, Delivery::Message(env));
            }
            Reach::Simulated => {}
            Reach::Offline if is_request => self.fail(env, ErrorKind::Offline),
            Reach::Offline => self.log("kernel", &format!("dropped a response from {} to {}: the node is offline", env.source, env.target)),
        }
    }

    /// A message from another node devnode runs, checked as a node checks what its peers send.
    fn arrive(self: &Arc<Self>, env: Envelope) {
        if let Some(why) = self.refusal(&env) {
            self.refuse(env, &why);
            return;
        }
        self.deliver(env);
    }

    /// Delivers a message for this node: to a process, a service, or a control API caller.
    fn deliver(self: &Arc<Self>, env: Envelope) {
        if let Msg::Response { .. } = env.msg {
            if self.processes.lock().unwrap().contains_key(&env.target.process) {
                // Only an awaited answer is delivered; a late one is dropped.
                if self.outstanding.lock().unwrap().remove(&(env.target.to_string(), env.id)).is_none() {
                    return;
                }
                self.deliver_to_process(&env.target.process.clone(), Delivery::Message(env));
                return;
            }
            let (target, id) = (env.target.clone(), env.id);
            self.deliver_to_waiter(&target, id, Delivery::Message(env));
            return;
        }
        let target_process = env.target.process.clone();
        if self.processes.lock().unwrap().contains_key(&target_process) {
            self.deliver_to_process(&target_process, Delivery::Message(env));
            return;
        }
        if SERVICES.contains(&target_process.as_str()) {
            let kernel = self.clone();
            self.inflight.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                crate::services::handle(kernel.clone(), env).await;
                kernel.inflight.fetch_sub(1, Ordering::SeqCst);
            });
            return;
        }
        // A runtime module devnode does not emulate (eth, kv, ...): nothing answers.
        self.log("kernel", &format!("{} is not emulated: the request from {} times out", target_process, env.source.process));
        self.fail(env, ErrorKind::Timeout);
    }

    /// As a node's kernel: a refused local request gets a `Timeout` error at once; a refused
    /// response, or anything refused from another node, is dropped.
    fn refuse(self: &Arc<Self>, env: Envelope, why: &str) {
        let kind = if matches!(env.msg, Msg::Request { .. }) { "request" } else { "response" };
        self.log("kernel", &format!("dropped a {kind} from {} to {}: {why}", env.source, env.target));
        if kind == "request" && env.source.node == self.node {
            self.fail(env, ErrorKind::Timeout);
        }
    }

    /// Delivers a `Timeout` error to the requester if no answer came within `secs` (0: at once,
    /// as on a node).
    fn track_timeout(self: &Arc<Self>, env: &Envelope, secs: u64) {
        self.outstanding.lock().unwrap().insert((env.source.to_string(), env.id), env.clone());
        let kernel = self.clone();
        let key = (env.source.to_string(), env.id);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let timed_out = kernel.outstanding.lock().unwrap().remove(&key);
            if let Some(original) = timed_out {
                let source = original.source.clone();
                kernel.deliver_to_process(&source.process, Delivery::Error { kind: ErrorKind::Timeout, original });
            }
        });
    }

    /// Answers `request` from a service.
    pub fn respond(self: &Arc<Self>, request: &Envelope, body: Vec<u8>, blob: Option<Blob>) {
        if !matches!(request.msg, Msg::Request { expects_response: Some(_), .. }) {
            return;
        }
        let target = request.rsvp.clone().unwrap_or_else(|| request.source.clone());
        self.route(Envelope {
            id: request.id,
            source: request.target.clone(),
            target,
            rsvp: None,
            msg: Msg::response(body),
            blob,
        });
    }

    /// Sends `body` from `from` to `to` and waits for the answer (control API, http-server).
    pub async fn call(self: &Arc<Self>, from: Addr, to: Addr, body: Vec<u8>, blob: Option<Blob>, timeout_secs: u64) -> Result<(Vec<u8>, Option<Blob>), String> {
        let id = self.next_id();
        let waiter = self.wait_for(&from, id);
        // A process awaiting an answer names itself as rsvp; a runtime module (http-server) does not.
        let from_module = crate::caps::RUNTIME_MODULES.iter().any(|(m, _)| *m == from.process);
        let rsvp = (!from_module).then(|| from.clone());
        self.route(Envelope { id, source: from.clone(), target: to, rsvp, msg: Msg::request(body, Some(timeout_secs)), blob });
        match tokio::time::timeout(Duration::from_secs(timeout_secs), waiter).await {
            Ok(Ok(Delivery::Message(env))) => Ok((env.msg.body().to_vec(), env.blob)),
            Ok(Ok(Delivery::Error { kind, .. })) => Err(match kind {
                ErrorKind::Offline => "offline: no such node or process".to_string(),
                ErrorKind::Timeout => "timeout: the target refused the message or did not answer".to_string(),
            }),
            Ok(Err(_)) => Err("the answer was lost".to_string()),
            Err(_) => {
                self.forget_waiter(&from, id);
                Err(format!("timeout: no answer within {timeout_secs} s"))
            }
        }
    }

    pub fn add_timer(&self, due_ms: i64, request: Envelope) {
        let seq = self.next_id();
        self.timers.lock().unwrap().insert((due_ms, seq), request);
        self.timer_changed.notify_one();
    }

    /// Fires due timers; returns the time until the next one.
    pub fn fire_due_timers(self: &Arc<Self>) -> Option<Duration> {
        let now = self.clock.now_ms();
        let due: Vec<Envelope> = {
            let mut timers = self.timers.lock().unwrap();
            let later = timers.split_off(&(now + 1, 0));
            std::mem::replace(&mut *timers, later).into_values().collect()
        };
        for request in due {
            self.respond(&request, Vec::new(), None);
        }
        let timers = self.timers.lock().unwrap();
        timers.keys().next().map(|(due, _)| Duration::from_millis((due - now).max(0) as u64))
    }

    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let wait = self.fire_due_timers().unwrap_or(Duration::from_secs(3600)).min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.timer_changed.notified() => {}
            }
        }
    }

    /// True when nothing is queued, handled or in flight.
    pub fn is_quiet(&self) -> bool {
        self.queued.load(Ordering::SeqCst) == 0 && self.busy.load(Ordering::SeqCst) == 0 && self.inflight.load(Ordering::SeqCst) == 0
    }

    /// Advances the virtual clock (every node's), fires due timers in order, and waits until the
    /// processes of every node are idle.
    pub async fn advance(self: &Arc<Self>, secs: i64) {
        self.clock.advance(secs);
        // Time never runs backwards across a devnode restart on the same data dir.
        let _ = std::fs::write(self.data_dir.join("clock-offset-ms"), self.clock.offset_ms().to_string());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut quiet_rounds = 0;
        while tokio::time::Instant::now() < deadline {
            for kernel in self.network.kernels() {
                kernel.fire_due_timers();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.network.is_quiet() {
                quiet_rounds += 1;
                if quiet_rounds >= 5 {
                    break;
                }
            } else {
                quiet_rounds = 0;
            }
        }
    }
}
