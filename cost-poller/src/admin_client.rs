//! Calls to the Anthropic Admin API through the node's http-client, with retries.
//!
//! Retry policy (shared_types::admin_api::classify): 429 waits `retry-after`; 5xx, 529, timeouts
//! and transport failures back off exponentially with jitter; 401/403 stop at once and are shown
//! to the operator. Request headers carry the admin key and are never logged.

use std::collections::HashMap;

use hyperware_process_lib::http::client::send_request_await_response;
use hyperware_process_lib::http::Method;
use hyperware_process_lib::hyperapp;
use rand::Rng;
use shared_types::admin_api::{self, Outcome};
use shared_types::AdminKey;

/// Attempts per call before giving up until the next tick.
const MAX_ATTEMPTS: u32 = 5;
/// Seconds to wait for one answer.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// Seconds an interactive call waits for its one answer.
const INTERACTIVE_TIMEOUT_SECS: u64 = 6;

/// Why a call failed, as the operator will read it.
#[derive(Debug, Clone)]
pub struct CallError {
    pub message: String,
    /// The operator must act (admin key refused or lacking rights, bad base URL).
    pub needs_operator: bool,
    /// The HTTP status of a refusal (400, 401, 403, 404, ...), when there was an answer.
    pub http_status: Option<u16>,
}

impl CallError {
    pub fn transient(message: String) -> CallError {
        CallError { message, needs_operator: false, http_status: None }
    }

    pub fn for_operator(message: String) -> CallError {
        CallError { message, needs_operator: true, http_status: None }
    }

    fn refused(message: String, status: u16) -> CallError {
        CallError { message, needs_operator: matches!(status, 401 | 403), http_status: Some(status) }
    }
}

pub struct AdminClient {
    pub admin_key: AdminKey,
    pub beta: Option<&'static str>,
    /// The operator is waiting (a dashboard call under the node's 15 s HTTP limit): one attempt
    /// with a short timeout instead of retries with backoff.
    pub interactive: bool,
}

impl AdminClient {
    pub async fn get(&self, url: url::Url) -> Result<Vec<u8>, CallError> {
        self.call(Method::GET, url, Vec::new()).await
    }

    pub async fn post(&self, url: url::Url, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.call(Method::POST, url, body).await
    }

    async fn call(&self, method: Method, url: url::Url, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let endpoint = url.path().to_string();
        let mut last_error = String::new();
        let (attempts, timeout_secs) = if self.interactive { (1, INTERACTIVE_TIMEOUT_SECS) } else { (MAX_ATTEMPTS, REQUEST_TIMEOUT_SECS) };
        for attempt in 0..attempts {
            let headers: HashMap<String, String> = admin_api::request_headers(self.admin_key.expose(), self.beta)
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect();
            let answer =
                send_request_await_response(method.clone(), url.clone(), Some(headers), timeout_secs, body.clone()).await;
            let wait_secs = match answer {
                Err(e) => {
                    last_error = format!("{endpoint}: no answer ({})", transport_error(&e));
                    admin_api::backoff_secs(attempt, jitter())
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = response.into_body();
                    match admin_api::classify(status, retry_after.as_deref(), &body) {
                        Outcome::Success => return Ok(body),
                        Outcome::RetryAfter(secs) => {
                            last_error = format!("{endpoint}: rate limited (429)");
                            secs
                        }
                        Outcome::Backoff(why) => {
                            last_error = format!("{endpoint}: {why}");
                            admin_api::backoff_secs(attempt, jitter())
                        }
                        Outcome::AuthFailed(message) => return Err(CallError::refused(message, status)),
                        Outcome::NotFound => return Err(CallError::refused(format!("{endpoint}: not found (404)"), status)),
                        Outcome::BadRequest(why) => return Err(CallError::refused(format!("{endpoint}: {why}"), status)),
                        Outcome::Fatal(why) => return Err(CallError::transient(format!("{endpoint}: {why}"))),
                    }
                }
            };
            if attempt + 1 < attempts {
                let _ = hyperapp::sleep(wait_secs.saturating_mul(1000)).await;
            }
        }
        if self.interactive {
            return Err(CallError::transient(format!("{last_error}; try again in a moment")));
        }
        Err(CallError::transient(format!("{last_error} (gave up after {MAX_ATTEMPTS} attempts; retrying next poll)")))
    }
}

fn jitter() -> u32 {
    rand::thread_rng().gen_range(0..1000)
}

/// What went wrong in the transport, without echoing URLs or headers.
fn transport_error(e: &hyperware_process_lib::http::client::HttpClientError) -> &'static str {
    use hyperware_process_lib::http::client::HttpClientError as E;
    match e {
        E::ExecuteRequestFailed(_) => "timed out or connection failed",
        E::BadUrl { .. } => "bad URL",
        E::MalformedRequest => "malformed request",
        _ => "http-client error",
    }
}
