//! `/v1/organizations/workspaces`: list, read, create, rename, archive.
//! Archiving a workspace archives every key in it. The default workspace has no id (keys show
//! `workspace_id: null`) and cannot be archived.

use serde_json::{json, Value};

use crate::scenario::{check_workspace_name, KeyStatus, Scenario};
use crate::{answer, invalid, list_answer, list_page, list_params, not_found, object_body, rfc, Answer, Query, Shared, Workspace};

/// Display colours handed out in turn.
const COLORS: [&str; 6] = ["#6C5BB9", "#C76D3B", "#3B82C7", "#4CA361", "#B9465B", "#8A8A8A"];
/// When a scripted workspace without `created_at` was made.
const SCENARIO_EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

pub fn from_scenario(scenario: &Scenario) -> Vec<Workspace> {
    scenario
        .workspaces
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| Workspace {
            id: w.id.clone(),
            name: w.name.clone(),
            created_at: w.created_at.map_or(SCENARIO_EPOCH, |t| t.timestamp()),
            archived_at: w.archived_at.map(|t| t.timestamp()),
            display_color: w.display_color.clone().unwrap_or_else(|| COLORS[i % COLORS.len()].to_string()),
        })
        .collect()
}

fn workspace_json(w: &Workspace) -> Value {
    json!({"type": "workspace", "id": w.id, "name": w.name, "created_at": rfc(w.created_at),
           "archived_at": w.archived_at.map(rfc), "display_color": w.display_color})
}

/// `GET /v1/organizations/workspaces`: `limit`, `after_id`/`before_id`, `include_archived` (default false).
pub fn list(state: &Shared, q: &Query) -> Answer {
    let include_archived = match q.one("include_archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return invalid("include_archived must be true or false"),
    };
    let s = state.lock().unwrap();
    let params = match list_params(q, s.scenario.page_size) {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    match list_page(&s.workspaces, |w| &w.id, |w| include_archived || w.archived_at.is_none(), &params) {
        Ok((page, has_more)) => list_answer(page.into_iter().map(workspace_json).collect(), has_more),
        Err(refused) => refused,
    }
}

/// `GET /v1/organizations/workspaces/{id}` (archived ones too).
pub fn get(state: &Shared, id: &str) -> Answer {
    let s = state.lock().unwrap();
    match s.workspaces.iter().find(|w| w.id == id) {
        Some(w) => answer(200, workspace_json(w)),
        None => not_found("no such workspace"),
    }
}

fn parse_name(body: &[u8]) -> Result<String, Answer> {
    let fields = object_body(body, &["name"])?;
    let Some(Value::String(name)) = fields.get("name") else { return Err(invalid("name is required (a string)")) };
    check_workspace_name(name).map_err(|e| invalid(&e))?;
    Ok(name.clone())
}

/// `POST /v1/organizations/workspaces` `{"name"}`: ids are `wrkspc_TEST` and a counter, skipping taken ones.
pub fn create(state: &Shared, body: &[u8], now: i64) -> Answer {
    let name = match parse_name(body) {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    let mut s = state.lock().unwrap();
    let id = loop {
        s.workspaces_created += 1;
        let id = format!("wrkspc_TEST{:04}", s.workspaces_created);
        if !s.workspaces.iter().any(|w| w.id == id) {
            break id;
        }
    };
    let display_color = COLORS[s.workspaces.len() % COLORS.len()].to_string();
    let workspace = Workspace { id: id.clone(), name: name.clone(), created_at: now, archived_at: None, display_color };
    s.workspace_events.push(json!({"workspace_id": id, "event": "created", "name": name, "at": rfc(now)}));
    s.workspaces.push(workspace.clone());
    answer(200, workspace_json(&workspace))
}

/// `POST /v1/organizations/workspaces/{id}` `{"name"}`; an archived workspace cannot be renamed.
pub fn rename(state: &Shared, id: &str, body: &[u8]) -> Answer {
    let name = match parse_name(body) {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    let mut s = state.lock().unwrap();
    let Some(w) = s.workspaces.iter_mut().find(|w| w.id == id) else { return not_found("no such workspace") };
    if w.archived_at.is_some() {
        return invalid("cannot update an archived workspace");
    }
    w.name = name;
    answer(200, workspace_json(w))
}

/// `POST /v1/organizations/workspaces/{id}/archive`: archives the workspace and every key in it.
/// Archiving it again is refused (400), as is archiving the default workspace.
pub fn archive(state: &Shared, id: &str, now: i64) -> Answer {
    if id == "default" {
        return invalid("the default workspace cannot be archived");
    }
    let mut s = state.lock().unwrap();
    let Some(i) = s.workspaces.iter().position(|w| w.id == id) else { return not_found("no such workspace") };
    if s.workspaces[i].archived_at.is_some() {
        return invalid("the workspace is already archived");
    }
    s.workspaces[i].archived_at = Some(now);
    let mut archived_keys = vec![];
    for key in s.keys.iter_mut().filter(|k| k.workspace_id.as_deref() == Some(id)) {
        key.status = KeyStatus::Archived;
        archived_keys.push(key.id.clone());
    }
    s.workspace_events.push(json!({"workspace_id": id, "event": "archived", "at": rfc(now), "archived_api_key_ids": archived_keys}));
    answer(200, workspace_json(&s.workspaces[i]))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::test_support::*;

    fn with_workspaces() -> crate::Shared {
        let text = scenario_text("small.json")
            .replacen(r#""keys": ["#, r#""workspaces": [{"id": "wrkspc_TESTa", "name": "alpha"}, {"id": "wrkspc_TESTold", "name": "old", "archived_at": "2026-01-15T00:00:00Z"}], "keys": ["#, 1)
            .replacen(r#""partial_key_hint": "sk-ant-api03-TES...0003",
   "workspace_id": null"#, r#""partial_key_hint": "sk-ant-api03-TES...0003",
   "workspace_id": "wrkspc_TESTa""#, 1);
        state_at(&text, "2026-03-01T10:30:00Z")
    }

    fn ids(v: &Value) -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn list_get_create_and_archive() {
        let state = with_workspaces();
        assert_eq!(ids(&get(&state, "/v1/organizations/workspaces", &[]).1), ["wrkspc_TESTa"]);
        assert_eq!(ids(&get(&state, "/v1/organizations/workspaces", &[("include_archived", "true")]).1), ["wrkspc_TESTa", "wrkspc_TESTold"]);
        assert_eq!(get(&state, "/v1/organizations/workspaces", &[("include_archived", "yes")]).0, 400);
        let (status, old) = get(&state, "/v1/organizations/workspaces/wrkspc_TESTold", &[]);
        assert_eq!((status, old["archived_at"].as_str()), (200, Some("2026-01-15T00:00:00Z")));

        let (status, made) = post(&state, "/v1/organizations/workspaces", json!({"name": "key 7"}));
        assert_eq!(status, 200);
        assert_eq!(made["type"], "workspace");
        assert_eq!(made["id"], "wrkspc_TEST0001");
        assert_eq!((made["name"].as_str(), made["created_at"].as_str(), made["archived_at"].clone()), (Some("key 7"), Some("2026-03-01T10:30:00Z"), Value::Null));
        assert!(made["display_color"].as_str().unwrap().starts_with('#'));
        assert_eq!(post(&state, "/v1/organizations/workspaces", json!({"name": "key 8"})).1["id"], "wrkspc_TEST0002", "ids are deterministic");

        let (status, archived) = post(&state, "/v1/organizations/workspaces/wrkspc_TESTa/archive", json!({}));
        assert_eq!((status, archived["archived_at"].as_str()), (200, Some("2026-03-01T10:30:00Z")));
        assert_eq!(get(&state, "/v1/organizations/api_keys/apikey_TEST03", &[]).1["status"], "archived", "its keys are archived");
        assert_eq!(get(&state, "/v1/organizations/api_keys/apikey_TEST01", &[]).1["status"], "active");
        assert_eq!(post(&state, "/v1/organizations/api_keys/apikey_TEST03", json!({"status": "active"})).0, 400);
        let (status, again) = post(&state, "/v1/organizations/workspaces/wrkspc_TESTa/archive", json!({}));
        assert_eq!((status, again["error"]["type"].as_str()), (400, Some("invalid_request_error")), "archiving twice is refused");
        assert_eq!(post(&state, "/v1/organizations/workspaces/default/archive", json!({})).0, 400);
        assert_eq!(post(&state, "/v1/organizations/workspaces/wrkspc_NOPE/archive", json!({})).0, 404);
        assert_eq!(post(&state, "/v1/organizations/workspaces/wrkspc_TESTa", json!({"name": "renamed"})).0, 400, "archived: no rename");
        assert_eq!(post(&state, "/v1/organizations/workspaces/wrkspc_TEST0001", json!({"name": "renamed"})).1["name"], "renamed");

        let (_, seen) = control(&state, "GET", "/_control/seen", Value::Null);
        let events = seen["workspace_events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], json!({"workspace_id": "wrkspc_TEST0001", "event": "created", "name": "key 7", "at": "2026-03-01T10:30:00Z"}));
        assert_eq!(events[2], json!({"workspace_id": "wrkspc_TESTa", "event": "archived", "at": "2026-03-01T10:30:00Z", "archived_api_key_ids": ["apikey_TEST03"]}));
    }

    #[test]
    fn names_are_one_to_forty_characters() {
        let state = with_workspaces();
        for bad in [json!({}), json!({"name": ""}), json!({"name": "x".repeat(41)}), json!({"name": 5}), json!({"name": "ok", "color": "red"})] {
            let (status, body) = post(&state, "/v1/organizations/workspaces", bad.clone());
            assert_eq!((status, body["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{bad}");
        }
        assert_eq!(post(&state, "/v1/organizations/workspaces", json!({"name": "é".repeat(40)})).0, 200);
    }

    #[test]
    fn control_keys_must_name_a_known_open_workspace_when_workspaces_are_scripted() {
        let state = with_workspaces();
        let key = |id: &str, ws: &str| json!({"id": id, "name": "n", "partial_key_hint": "sk-ant-api03-TES...0009", "workspace_id": ws});
        assert_eq!(control(&state, "POST", "/_control/keys", key("apikey_TEST09", "wrkspc_NOPE")).0, 400);
        assert_eq!(control(&state, "POST", "/_control/keys", key("apikey_TEST09", "wrkspc_TESTold")).0, 400);
        assert_eq!(control(&state, "POST", "/_control/keys", key("apikey_TEST01", "wrkspc_TESTa")).0, 400, "duplicate id");
        assert_eq!(control(&state, "POST", "/_control/keys", key("apikey_TEST09", "wrkspc_TESTa")).0, 200);
        // Old scenarios (no workspaces): any workspace id is accepted.
        let old = small_state();
        assert_eq!(control(&old, "POST", "/_control/keys", key("apikey_TEST09", "wrkspc_ANY")).0, 200);
        assert_eq!(get(&old, "/v1/organizations/workspaces", &[]).1["data"], json!([]));
    }
}
