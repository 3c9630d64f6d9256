//! Faults queued from the control API: each matching Admin API request consumes one.

use std::time::Duration;

use serde::Deserialize;

use crate::{error, Answer, Shared};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Answer with this HTTP status and the Admin API's error body for it.
    #[serde(default)]
    pub status: Option<u16>,
    /// Seconds, sent as the `retry-after` header (with `status`).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering (alone: delays the normal answer).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer 200 with a truncated JSON body.
    #[serde(default)]
    pub malformed: bool,
    /// How many matching requests it hits.
    #[serde(default = "one")]
    pub count: u32,
    /// Only requests whose path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Only requests with this method (`GET` or `POST`).
    #[serde(default)]
    pub method: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn validate(&self) -> Result<(), String> {
        if self.status.is_some_and(|s| !(400..=599).contains(&s)) {
            return Err("fault status must be 400 to 599".to_string());
        }
        if self.status.is_some() && self.malformed {
            return Err("a fault is either a status or malformed, not both".to_string());
        }
        if self.status.is_none() && !self.malformed && self.delay_ms.is_none() {
            return Err("a fault needs status, malformed or delay_ms".to_string());
        }
        if self.count == 0 {
            return Err("fault count must be at least 1".to_string());
        }
        if self.method.as_deref().is_some_and(|m| m != "GET" && m != "POST") {
            return Err("fault method must be GET or POST".to_string());
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p)) && self.method.as_deref().is_none_or(|m| m == method)
    }
}

/// Takes one hit of the first queued fault that matches the request.
pub fn take(state: &Shared, method: &str, path: &str) -> Option<Fault> {
    let mut s = state.lock().unwrap();
    let i = s.faults.iter().position(|f| f.matches(method, path))?;
    let fault = s.faults[i].clone();
    if s.faults[i].count <= 1 {
        s.faults.remove(i);
    } else {
        s.faults[i].count -= 1;
    }
    Some(fault)
}

/// The Admin API's error kind for an HTTP status.
pub fn error_kind(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn message(status: u16) -> &'static str {
    match status {
        400 => "invalid request (injected fault)",
        401 => "invalid x-api-key",
        403 => "this admin key does not have permission for this request",
        404 => "not found",
        429 => "rate limited",
        529 => "overloaded",
        _ => "internal error",
    }
}

/// The answer a fault forces, or None when it only delays the normal answer.
pub fn forced_answer(f: &Fault) -> Option<Answer> {
    let mut a = if f.malformed {
        Answer { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: b"{\"data\": [ {\"starting_at\": ".to_vec(), delay: None }
    } else {
        let status = f.status?;
        error(status, error_kind(status), message(status))
    };
    if let (Some(ra), false) = (f.retry_after, f.malformed) {
        a.headers.push(("retry-after".into(), ra.to_string()));
    }
    a.delay = f.delay_ms.map(Duration::from_millis);
    Some(a)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_support::*;

    #[test]
    fn fault_statuses_answer_the_matching_error_kind() {
        let state = small_state();
        for (status, kind) in [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"), (429, "rate_limit_error"), (500, "api_error"), (503, "api_error"), (529, "overloaded_error")] {
            control(&state, "POST", "/_control/faults", json!({"faults": [{"status": status}]}));
            let (got, body) = get(&state, "/v1/organizations/api_keys", &[]);
            assert_eq!(got, status);
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "{status}");
            assert!(body["error"]["message"].is_string());
        }
    }

    #[test]
    fn faults_can_target_updates_only() {
        let state = small_state();
        control(&state, "POST", "/_control/faults", json!({"faults": [{"status": 403, "method": "POST", "path_prefix": "/v1/organizations/api_keys/"}]}));
        let (status, _) = get(&state, "/v1/organizations/api_keys/apikey_TEST01", &[]);
        assert_eq!(status, 200, "a GET does not consume a POST fault");
        let (status, body) = post(&state, "/v1/organizations/api_keys/apikey_TEST01", json!({"status": "inactive"}));
        assert_eq!((status, body["error"]["type"].as_str()), (403, Some("permission_error")));
        assert_eq!(control(&state, "GET", "/_control/seen", json!(null)).1["status_updates"], json!([]), "a failed update is not recorded");
        let (status, _) = post(&state, "/v1/organizations/api_keys/apikey_TEST01", json!({"status": "inactive"}));
        assert_eq!(status, 200);
    }

    #[test]
    fn retry_after_and_malformed_and_bad_faults() {
        let state = small_state();
        control(&state, "POST", "/_control/faults", json!({"faults": [{"status": 429, "retry_after": 2}, {"malformed": true}]}));
        let a = crate::handle_api(&state, "GET", "/v1/organizations/api_keys", &[], &admin_headers(), b"");
        assert_eq!(a.status, 429);
        assert!(a.headers.contains(&("retry-after".to_string(), "2".to_string())));
        let a = crate::handle_api(&state, "GET", "/v1/organizations/api_keys", &[], &admin_headers(), b"");
        assert!(a.status == 200 && serde_json::from_slice::<serde_json::Value>(&a.body).is_err());
        for bad in [json!({"status": 200}), json!({"method": "PUT", "status": 500}), json!({}), json!({"status": 500, "surprise": 1}), json!({"status": 500, "count": 0})] {
            let (status, _) = control(&state, "POST", "/_control/faults", json!({"faults": [bad]}));
            assert_eq!(status, 400, "{bad}");
        }
    }
}
