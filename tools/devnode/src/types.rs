//! Messages as the devnode kernel routes them (plain Rust; converted at the wasm boundary).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Addr {
    pub node: String,
    /// `process:package:publisher`
    pub process: String,
}

impl Addr {
    pub fn new(node: &str, process: &str) -> Addr {
        Addr { node: node.to_string(), process: process.to_string() }
    }

    /// Parses `node@process:package:publisher`.
    pub fn parse(s: &str) -> Option<Addr> {
        let (node, process) = s.split_once('@')?;
        (process.split(':').count() == 3 && !node.is_empty()).then(|| Addr::new(node, process))
    }

    pub fn process_name(&self) -> &str {
        self.process.split(':').next().unwrap_or("")
    }

    /// `package:publisher`
    pub fn package_id(&self) -> &str {
        self.process.split_once(':').map(|(_, p)| p).unwrap_or("")
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.process)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub mime: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    pub issuer: Addr,
    pub params: String,
}

#[derive(Clone, Debug)]
pub enum Msg {
    Request { inherit: bool, expects_response: Option<u64>, body: Vec<u8>, metadata: Option<String>, capabilities: Vec<Cap> },
    Response { inherit: bool, body: Vec<u8>, metadata: Option<String>, capabilities: Vec<Cap> },
}

impl Msg {
    pub fn body(&self) -> &[u8] {
        match self {
            Msg::Request { body, .. } | Msg::Response { body, .. } => body,
        }
    }

    pub fn request(body: Vec<u8>, expects_response: Option<u64>) -> Msg {
        Msg::Request { inherit: false, expects_response, body, metadata: None, capabilities: vec![] }
    }

    pub fn response(body: Vec<u8>) -> Msg {
        Msg::Response { inherit: false, body, metadata: None, capabilities: vec![] }
    }
}

#[derive(Clone, Debug)]
pub struct Envelope {
    pub id: u64,
    pub source: Addr,
    pub target: Addr,
    pub rsvp: Option<Addr>,
    pub msg: Msg,
    pub blob: Option<Blob>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Offline,
    Timeout,
}

/// What lands in a process's mailbox (or a waiter).
#[derive(Clone, Debug)]
pub enum Delivery {
    Message(Envelope),
    /// The request `original` (sent with `id`) failed.
    Error { kind: ErrorKind, original: Envelope },
}
