//! peer-client: a test-only process for a node other than the dispenser's. On a local request it
//! asks the dispenser for this node's key with `anthropic-key-client` and answers what it got,
//! never the key itself: its last four characters and its lease times, or the typed error.
//!
//! Requests (from a process on its own node, e.g. devnode's `POST /devnode/local`):
//! - `{"Ask": "operator.os"}`: a lease from the dispenser on that node (default identity), or
//!   `{"Ask": "node@process:package:publisher"}` for another address;
//! - `{"AskKey": "..."}`: the bare key (`RequestApiKey`), same addresses;
//! - `{"AskOnce": {"dispenser": "...", "timeout_secs": 1}}`: one lease request, no retry.
//!
//! Answers: `{"Ok": {"key_last4", "issued_at"?, "expires_at"?}}` or `{"Err": <KeyError as JSON>}`.

use anthropic_key_client::{dispenser_on, request_api_key, request_key, request_key_with, KeyError, KeyLease, RetryPolicy};
use hyperware_process_lib::{await_message, call_init, println, Address, Message, Response};
use serde::Deserialize;
use serde_json::{json, Value};

wit_bindgen::generate!({
    path: "../../target/wit",
    world: "process-v1",
});

#[derive(Deserialize)]
enum Command {
    Ask(String),
    AskKey(String),
    AskOnce { dispenser: String, timeout_secs: u64 },
}

call_init!(init);

fn init(our: Address) {
    println!("peer-client on {} ready", our.node);
    loop {
        // Late answers and send errors of finished requests need nothing.
        let Ok(Message::Request { source, body, expects_response: Some(_), .. }) = await_message() else { continue };
        let answer = if source.node == our.node { run(&body) } else { json!({"Err": "peer-client takes requests from its own node only"}) };
        let _ = Response::new().body(answer.to_string().into_bytes()).send();
    }
}

fn run(body: &[u8]) -> Value {
    let Ok(command) = serde_json::from_slice::<Command>(body) else {
        return json!({"Err": "expected {\"Ask\": node}, {\"AskKey\": node} or {\"AskOnce\": {\"dispenser\", \"timeout_secs\"}}"});
    };
    let outcome = match command {
        Command::Ask(to) => dispenser(&to).and_then(|d| request_key(&d)).map(|lease| lease_summary(&lease)),
        Command::AskKey(to) => dispenser(&to).and_then(|d| request_api_key(&d)).map(|key| json!({"key_last4": last_four(&key)})),
        Command::AskOnce { dispenser: to, timeout_secs } => {
            dispenser(&to).and_then(|d| request_key_with(&d, &RetryPolicy::once(timeout_secs))).map(|lease| lease_summary(&lease))
        }
    };
    match outcome {
        Ok(summary) => json!({ "Ok": summary }),
        Err(error) => {
            println!("peer-client: no key: {error}");
            json!({ "Err": error })
        }
    }
}

/// `node` (the default identity there) or a full `node@process:package:publisher`.
fn dispenser(to: &str) -> Result<Address, KeyError> {
    if to.contains('@') {
        to.parse().map_err(|_| KeyError::Other(format!("not an address: {to}")))
    } else {
        Ok(dispenser_on(to))
    }
}

fn lease_summary(lease: &KeyLease) -> Value {
    json!({"key_last4": lease.key_hint(), "issued_at": lease.issued_at, "expires_at": lease.expires_at})
}

fn last_four(key: &str) -> String {
    key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect()
}
