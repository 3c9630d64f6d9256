//! `/v1/organizations/api_keys`: list, read, and update (name, status).
//! Keys cannot be created or deleted through the API; `archived` and `expired` are final.

use serde_json::{json, Value};

use crate::scenario::{KeyStatus, ScenarioKey};
use crate::{answer, invalid, list_answer, list_page, list_params, not_found, object_body, rfc, Answer, Query, Shared};

/// Who made every key (the fake has one user).
const CREATOR: &str = "user_TEST";

/// The status the API reports now: an active key past its own expiry reads `expired`.
pub fn effective_status(key: &ScenarioKey, now: i64) -> KeyStatus {
    match key.status {
        KeyStatus::Active if key.expires_at.is_some_and(|e| now >= e.timestamp()) => KeyStatus::Expired,
        status => status,
    }
}

pub fn key_json(k: &ScenarioKey, now: i64) -> Value {
    json!({"type": "api_key", "id": k.id, "name": k.name, "status": effective_status(k, now).as_str(),
           "workspace_id": k.workspace_id,
           "created_at": k.created_at.map(|t| rfc(t.timestamp())).unwrap_or_else(|| "2026-01-01T00:00:00Z".into()),
           "created_by": {"id": CREATOR, "type": "user"}, "partial_key_hint": k.partial_key_hint,
           "expires_at": k.expires_at.map(|t| rfc(t.timestamp()))})
}

/// `GET /v1/organizations/api_keys`: `limit`, `after_id`/`before_id`, `status`, `workspace_id`, `created_by_user_id`.
pub fn list(state: &Shared, q: &Query, now: i64) -> Answer {
    let status = match q.one("status") {
        None => None,
        Some(s) => match KeyStatus::parse(s) {
            Some(st) => Some(st),
            None => return invalid("status must be active, inactive, archived or expired"),
        },
    };
    let (workspace, creator) = (q.one("workspace_id"), q.one("created_by_user_id"));
    let s = state.lock().unwrap();
    let params = match list_params(q, s.scenario.page_size) {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let keep = |k: &ScenarioKey| {
        status.is_none_or(|st| effective_status(k, now) == st) && workspace.is_none_or(|w| k.workspace_id.as_deref() == Some(w)) && creator.is_none_or(|c| c == CREATOR)
    };
    match list_page(&s.keys, |k| &k.id, keep, &params) {
        Ok((page, has_more)) => list_answer(page.into_iter().map(|k| key_json(k, now)).collect(), has_more),
        Err(refused) => refused,
    }
}

/// `GET /v1/organizations/api_keys/{id}`.
pub fn get(state: &Shared, id: &str, now: i64) -> Answer {
    let s = state.lock().unwrap();
    match s.keys.iter().find(|k| k.id == id) {
        Some(k) => answer(200, key_json(k, now)),
        None => not_found("no such api key"),
    }
}

/// What an update asks for, checked before anything changes.
struct KeyUpdate {
    name: Option<String>,
    status: Option<KeyStatus>,
}

fn parse_update(body: &[u8]) -> Result<KeyUpdate, Answer> {
    let fields = object_body(body, &["name", "status"])?;
    let name = match fields.get("name") {
        None => None,
        Some(Value::String(n)) if !n.is_empty() => Some(n.clone()),
        Some(_) => return Err(invalid("name must be a non-empty string")),
    };
    let status = match fields.get("status") {
        None => None,
        Some(Value::String(s)) => match KeyStatus::parse(s) {
            Some(st @ (KeyStatus::Active | KeyStatus::Inactive | KeyStatus::Archived)) => Some(st),
            _ => return Err(invalid("status must be active, inactive or archived")),
        },
        Some(_) => return Err(invalid("status must be active, inactive or archived")),
    };
    Ok(KeyUpdate { name, status })
}

/// `POST /v1/organizations/api_keys/{id}` `{name?, status?}`. A status change of an archived or
/// expired key is refused (400); successful status changes are recorded for `/_control/seen`.
pub fn update(state: &Shared, id: &str, body: &[u8], now: i64) -> Answer {
    let update = match parse_update(body) {
        Ok(u) => u,
        Err(refused) => return refused,
    };
    let mut s = state.lock().unwrap();
    let Some(i) = s.keys.iter().position(|k| k.id == id) else { return not_found("no such api key") };
    if let Some(status) = update.status {
        match effective_status(&s.keys[i], now) {
            KeyStatus::Archived => return invalid("cannot change the status of an archived API key"),
            KeyStatus::Expired => return invalid("cannot change the status of an expired API key"),
            _ => {}
        }
        s.keys[i].status = status;
        s.status_updates.push(json!({"api_key_id": id, "status": status.as_str(), "at": rfc(now)}));
    }
    if let Some(name) = update.name {
        s.keys[i].name = name;
    }
    answer(200, key_json(&s.keys[i], now))
}

/// `POST /_control/key_status` `{"id", "status"?, "expires_at"?}`: the operator changing a key in the
/// Console. Not recorded as an API update. An archived key stays archived, as in the Console.
pub fn operator_change(state: &Shared, body: &Value) -> Result<Value, Answer> {
    let refuse = |m: &str| answer(400, json!({"error": m}));
    let Some(fields) = body.as_object() else { return Err(refuse("the body must be a JSON object")) };
    if let Some(extra) = fields.keys().find(|k| !["id", "status", "expires_at"].contains(&k.as_str())) {
        return Err(refuse(&format!("unknown field {extra}")));
    }
    let Some(id) = fields.get("id").and_then(Value::as_str) else { return Err(refuse("id is required")) };
    let status = match fields.get("status") {
        None => None,
        Some(v) => Some(v.as_str().and_then(KeyStatus::parse).ok_or_else(|| refuse("status must be active, inactive, archived or expired"))?),
    };
    let expires_at = match fields.get("expires_at") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).ok_or_else(|| refuse("expires_at must be RFC 3339 or null"))?.to_utc())),
    };
    if status.is_none() && expires_at.is_none() {
        return Err(refuse("expected status and/or expires_at"));
    }
    let mut s = state.lock().unwrap();
    let Some(key) = s.keys.iter_mut().find(|k| k.id == id) else { return Err(answer(404, json!({"error": format!("no key {id}")}))) };
    if key.status == KeyStatus::Archived {
        return Err(refuse("an archived key cannot be changed"));
    }
    if let Some(st) = status {
        key.status = st;
    }
    if let Some(e) = expires_at {
        key.expires_at = e;
    }
    Ok(json!({"ok": true}))
}

/// Why a key added by `/_control/keys` is refused, if it is.
pub fn check_new_key(state: &crate::State, key: &ScenarioKey) -> Result<(), String> {
    if state.keys.iter().any(|k| k.id == key.id) {
        return Err(format!("key {} exists already", key.id));
    }
    let Some(ws) = &key.workspace_id else { return Ok(()) };
    match state.workspaces.iter().find(|w| &w.id == ws) {
        Some(w) if w.archived_at.is_some() && key.status != KeyStatus::Archived => Err(format!("workspace {ws} is archived")),
        None if state.scenario.workspaces.is_some() => Err(format!("unknown workspace {ws}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::test_support::*;

    const KEY1: &str = "/v1/organizations/api_keys/apikey_TEST01";

    fn status_of(state: &crate::Shared, path: &str) -> Value {
        get(state, path, &[]).1["status"].clone()
    }

    fn error_message(answer: &(u16, Value)) -> (u16, String) {
        (answer.0, answer.1["error"]["message"].as_str().unwrap_or("").to_string())
    }

    #[test]
    fn archived_is_final_and_failures_are_not_recorded() {
        let state = small_state();
        assert_eq!(post(&state, KEY1, json!({"status": "inactive"})).0, 200);
        assert_eq!(post(&state, KEY1, json!({"status": "active"})).0, 200);
        assert_eq!(post(&state, KEY1, json!({"status": "archived"})).0, 200);
        for to in ["active", "inactive", "archived"] {
            let (status, message) = error_message(&post(&state, KEY1, json!({"status": to})));
            assert_eq!(status, 400);
            assert_eq!(message, "cannot change the status of an archived API key");
        }
        let (_, seen) = control(&state, "GET", "/_control/seen", Value::Null);
        let updates: Vec<&str> = seen["status_updates"].as_array().unwrap().iter().map(|u| u["status"].as_str().unwrap()).collect();
        assert_eq!(updates, ["inactive", "active", "archived"]);
        assert_eq!(seen["status_updates"][0]["api_key_id"], "apikey_TEST01");
        assert_eq!(seen["status_updates"][0]["at"], "2026-03-01T10:30:00Z");
        // Renaming is still possible.
        assert_eq!(post(&state, KEY1, json!({"name": "renamed"})).1["name"], "renamed");
    }

    #[test]
    fn bad_updates_are_refused_and_change_nothing() {
        let state = small_state();
        for body in [json!({"status": "expired"}), json!({"status": "deleted"}), json!({"status": 1}), json!({"name": ""}), json!({"name": "x", "status": "gone"}), json!({"colour": "red"}), json!([1])] {
            let (status, answer) = post(&state, KEY1, body.clone());
            assert_eq!((status, answer["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{body}");
        }
        assert_eq!(get(&state, KEY1, &[]).1["name"], "demo key 1");
        assert_eq!(post(&state, "/v1/organizations/api_keys/apikey_NOPE", json!({"status": "inactive"})).0, 404);
        assert_eq!(control(&state, "GET", "/_control/seen", Value::Null).1["status_updates"], json!([]));
    }

    #[test]
    fn keys_expire_on_the_fakes_clock() {
        let state = small_state();
        let (status, _) = control(&state, "POST", "/_control/key_status", json!({"id": "apikey_TEST01", "expires_at": "2026-03-01T11:00:00Z"}));
        assert_eq!(status, 200);
        let (_, key) = get(&state, KEY1, &[]);
        assert_eq!((key["status"].as_str(), key["expires_at"].as_str()), (Some("active"), Some("2026-03-01T11:00:00Z")));
        assert_eq!(get(&state, "/v1/organizations/api_keys/apikey_TEST02", &[]).1["expires_at"], Value::Null);
        control(&state, "POST", "/_control/clock", json!({"advance_seconds": 1800}));
        assert_eq!(status_of(&state, KEY1), "expired");
        let (status, message) = error_message(&post(&state, KEY1, json!({"status": "inactive"})));
        assert_eq!((status, message.as_str()), (400, "cannot change the status of an expired API key"));
        let (_, list) = get(&state, "/v1/organizations/api_keys", &[("status", "expired")]);
        assert_eq!(list["data"].as_array().unwrap().len(), 1);
        // An inactive key past its expiry stays inactive.
        control(&state, "POST", "/_control/key_status", json!({"id": "apikey_TEST02", "status": "inactive", "expires_at": "2026-01-01T00:00:00Z"}));
        assert_eq!(status_of(&state, "/v1/organizations/api_keys/apikey_TEST02"), "inactive");
    }

    #[test]
    fn scenario_keys_may_expire() {
        let text = scenario_text("small.json").replacen(r#""status": "active""#, r#""status": "active", "expires_at": "2026-02-01T00:00:00Z""#, 1);
        let state = state_at(&text, "2026-03-01T00:00:00Z");
        assert_eq!(status_of(&state, KEY1), "expired");
    }

    #[test]
    fn operator_changes_in_the_console() {
        let state = small_state();
        for st in ["inactive", "expired", "active", "archived"] {
            assert_eq!(control(&state, "POST", "/_control/key_status", json!({"id": "apikey_TEST03", "status": st})).0, 200);
            assert_eq!(status_of(&state, "/v1/organizations/api_keys/apikey_TEST03"), st);
        }
        assert_eq!(control(&state, "POST", "/_control/key_status", json!({"id": "apikey_TEST03", "status": "active"})).0, 400, "archived is final");
        assert_eq!(control(&state, "POST", "/_control/key_status", json!({"id": "apikey_NOPE", "status": "active"})).0, 404);
        for bad in [json!({"id": "apikey_TEST01"}), json!({"id": "apikey_TEST01", "status": "gone"}), json!({"id": "apikey_TEST01", "expires_at": "soon"}), json!({"status": "active"})] {
            assert_eq!(control(&state, "POST", "/_control/key_status", bad.clone()).0, 400, "{bad}");
        }
        assert_eq!(control(&state, "GET", "/_control/seen", Value::Null).1["status_updates"], json!([]), "operator changes are not API updates");
    }

    #[test]
    fn lists_page_forwards_and_backwards_and_filter() {
        let state = small_state();
        let ids = |v: &Value| v["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let (_, p1) = get(&state, "/v1/organizations/api_keys", &[("limit", "2")]);
        assert_eq!(ids(&p1), ["apikey_TEST01", "apikey_TEST02"]);
        assert_eq!((p1["has_more"].as_bool(), p1["first_id"].as_str(), p1["last_id"].as_str()), (Some(true), Some("apikey_TEST01"), Some("apikey_TEST02")));
        let (_, p3) = get(&state, "/v1/organizations/api_keys", &[("limit", "2"), ("after_id", "apikey_TEST04")]);
        assert_eq!((ids(&p3), p3["has_more"].as_bool()), (vec!["apikey_TEST05".to_string()], Some(false)));
        let (_, back) = get(&state, "/v1/organizations/api_keys", &[("limit", "2"), ("before_id", "apikey_TEST04")]);
        assert_eq!((ids(&back), back["has_more"].as_bool()), (vec!["apikey_TEST02".to_string(), "apikey_TEST03".to_string()], Some(true)));
        for bad in [[("limit", "0")], [("limit", "1001")], [("limit", "x")], [("status", "gone")], [("after_id", "apikey_NOPE")]] {
            assert_eq!(get(&state, "/v1/organizations/api_keys", &bad).0, 400, "{bad:?}");
        }
        assert_eq!(get(&state, "/v1/organizations/api_keys", &[("after_id", "apikey_TEST01"), ("before_id", "apikey_TEST03")]).0, 400);
        post(&state, KEY1, json!({"status": "inactive"}));
        assert_eq!(ids(&get(&state, "/v1/organizations/api_keys", &[("status", "inactive")]).1), ["apikey_TEST01"]);
        assert_eq!(ids(&get(&state, "/v1/organizations/api_keys", &[("created_by_user_id", "user_OTHER")]).1), Vec::<String>::new());
        // The scenario's page_size (7) caps the limit.
        let (_, all) = get(&state, "/v1/organizations/api_keys", &[("limit", "1000")]);
        assert_eq!(ids(&all).len(), 5);
    }
}
