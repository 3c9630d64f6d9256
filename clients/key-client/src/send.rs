//! Sending the request from the process and waiting for the answer (wasm only).
//!
//! These functions block the calling process until the dispenser answers (or the attempts run
//! out): other messages wait in its queue meanwhile, as with any `send_and_await_response`.

use hyperware_process_lib::{Address, Message, Request, SendErrorKind};

use crate::{parse_key_answer, parse_lease_answer, KeyError, KeyLease, RetryPolicy, DEFAULT_PROCESS, KEY_REQUEST, LEASE_REQUEST};

/// The dispenser on `node` under the package's default identity
/// (`<node>@key-issuer:anthropic-api-key-manager:keymanager.os`).
pub fn dispenser_on(node: &str) -> Address {
    Address::new(node, DEFAULT_PROCESS)
}

/// This node's key and its lease times, retried as [`RetryPolicy::default`] says.
pub fn request_key(dispenser: &Address) -> Result<KeyLease, KeyError> {
    request_key_with(dispenser, &RetryPolicy::default())
}

/// This node's key and its lease times, retried as `policy` says.
pub fn request_key_with(dispenser: &Address, policy: &RetryPolicy) -> Result<KeyLease, KeyError> {
    ask(dispenser, LEASE_REQUEST, policy, parse_lease_answer)
}

/// This node's key alone (the `RequestApiKey` form), retried as [`RetryPolicy::default`] says.
pub fn request_api_key(dispenser: &Address) -> Result<String, KeyError> {
    request_api_key_with(dispenser, &RetryPolicy::default())
}

/// This node's key alone, retried as `policy` says.
pub fn request_api_key_with(dispenser: &Address, policy: &RetryPolicy) -> Result<String, KeyError> {
    ask(dispenser, KEY_REQUEST, policy, parse_key_answer)
}

fn ask<T>(dispenser: &Address, request: &[u8], policy: &RetryPolicy, parse: fn(&[u8]) -> Result<T, KeyError>) -> Result<T, KeyError> {
    let mut attempt = 1;
    loop {
        let error = match send_once(dispenser, request, policy.timeout_secs).and_then(|answer| parse(&answer)) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(wait) = policy.wait_before_retry(attempt, &error) else { return Err(error) };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        attempt += 1;
    }
}

/// One request and the body of its answer.
fn send_once(dispenser: &Address, request: &[u8], timeout_secs: u64) -> Result<Vec<u8>, KeyError> {
    match Request::to(dispenser).body(request.to_vec()).send_and_await_response(timeout_secs.max(1)) {
        Ok(Ok(Message::Response { body, .. })) => Ok(body),
        Ok(Ok(Message::Request { .. })) => Err(KeyError::UnreadableAnswer),
        Ok(Err(error)) => Err(match error.kind {
            SendErrorKind::Offline => KeyError::Offline,
            SendErrorKind::Timeout => KeyError::Timeout,
        }),
        // Target and body are always set.
        Err(build) => Err(KeyError::Other(format!("the request could not be built: {build}"))),
    }
}
