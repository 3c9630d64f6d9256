//! The CSV exports (`Export`) through the real package in devnode: each export paged to its end
//! equals what the API shows (per-key cost and tokens, the nodes of ListNodes, the audit log),
//! holds no secret, and neutralises names that a spreadsheet would run as formulas.
//! Requires `cargo xtask build` (cargo xtask test runs it first).

use std::collections::{BTreeMap, HashMap};

use e2e::*;
use serde_json::{json, Value};
use shared_types::MicroUsd;

/// A peer whose name a spreadsheet would read as a formula (`-` leads; node names allow it).
const FORMULA_NODE: &str = "-cmd.os";
const FORMULA_KEY_NAME: &str = "=SUM(A1)";
const QUOTED_KEY_NAME: &str = "trial, \"two\"";

/// A plain RFC 4180 reader (records end in CRLF; quoted fields may hold commas, quotes, CR, LF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (vec![], vec![], String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted && field.is_empty() && record.is_empty(), "the CSV ends inside a record");
    records
}

/// Pages an export to its end: the whole CSV text and the number of chunks.
fn export_all(env: &Env, query: Value) -> (String, usize) {
    let mut csv = String::new();
    let mut cursor = Value::Null;
    for chunks in 1.. {
        let mut call = query.clone();
        call["cursor"] = cursor;
        let answer = env.api(json!({ "Export": call }));
        let chunk = answer.get("Ok").unwrap_or_else(|| panic!("export {query}: {answer}"));
        let text = chunk["csv"].as_str().unwrap();
        assert!(text.is_empty() || text.ends_with("\r\n"), "a chunk holds whole lines");
        let lines = parse_csv(text).len() as u64;
        let header = u64::from(chunks == 1);
        assert_eq!(chunk["rows"].as_u64().unwrap() + header, lines, "{query}: rows counted");
        csv.push_str(text);
        cursor = chunk["next_cursor"].clone();
        if cursor.is_null() {
            return (csv, chunks);
        }
        assert!(chunks < 10_000, "the export never ends");
    }
    unreachable!()
}

/// Records as maps from column name to field, the header checked.
fn rows_of(csv: &str, header: &[&str]) -> Vec<HashMap<String, String>> {
    let records = parse_csv(csv);
    assert_eq!(records[0], header, "header");
    assert!(records[1..].iter().all(|r| r != &records[0]), "the header appears once");
    records[1..].iter().map(|r| header.iter().map(|h| h.to_string()).zip(r.iter().cloned()).collect()).collect()
}

fn micro(usd: &str) -> i64 {
    MicroUsd::parse_usd(usd).unwrap_or_else(|e| panic!("{usd:?}: {e}")).0
}

fn int(field: &str) -> i64 {
    field.parse().unwrap_or_else(|_| panic!("{field:?} is not an integer"))
}

const COST_COLUMNS: [&str; 10] = [
    "key_id", "key_name", "hour_start", "uncached_input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
    "cache_read_tokens", "output_tokens", "web_search_requests", "estimated_cost_usd",
];

fn cost_columns(period: &str) -> Vec<&str> {
    COST_COLUMNS.iter().map(|c| if *c == "hour_start" { period } else { c }).collect()
}

/// Per key: (cost µUSD, input tokens of every kind, output tokens) summed over the rows.
fn totals(rows: &[HashMap<String, String>]) -> BTreeMap<i64, (i64, i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for row in rows {
        let t = out.entry(int(&row["key_id"])).or_default();
        t.0 += micro(&row["estimated_cost_usd"]);
        t.1 += ["uncached_input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens"].iter().map(|c| int(&row[*c])).sum::<i64>();
        t.2 += int(&row["output_tokens"]);
    }
    out
}

/// Per key, what the API shows: ListKeys' spend, and KeyDetail's spend and tokens by model.
fn api_totals(env: &Env) -> BTreeMap<i64, (i64, i64, i64)> {
    let keys = env.api(json!({"ListKeys": null}));
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let id = k["id"].as_i64().unwrap();
            let detail = env.api(json!({"KeyDetail": id}))["Ok"].clone();
            assert_eq!(detail["key"]["spent_micro_usd"], k["spent_micro_usd"]);
            let models = detail["usage_by_model"].as_array().unwrap();
            let sum = |field: &str| models.iter().map(|m| m[field].as_i64().unwrap()).sum::<i64>();
            (id, (k["spent_micro_usd"].as_i64().unwrap(), sum("input_tokens"), sum("output_tokens")))
        })
        .collect()
}

fn assert_no_secret(csv: &str) {
    for secret in [secret(1), secret(2), ADMIN_KEY.to_string()] {
        assert!(!csv.contains(&secret), "an export holds a secret");
    }
    assert!(!csv.contains("TESTkey0001abc") && !csv.contains("TESTkey0002abc"), "an export holds part of a secret");
}

/// No field starts with a character a spreadsheet runs as a formula, except our own negative numbers.
fn assert_no_formula(records: &[Vec<String>]) {
    for field in records.iter().flatten() {
        let numeric = field.parse::<f64>().is_ok();
        assert!(numeric || !field.starts_with(['=', '+', '-', '@', '\t', '\r']), "unguarded formula {field:?}");
    }
}

fn add_key(env: &Env, n: u32, name: &str) -> i64 {
    let r = env.add_key(json!({"secret": secret(n), "name": name, "node_cap": null, "budget_usd": "100000"}));
    r["Ok"]["id"].as_i64().unwrap_or_else(|| panic!("add key {n}: {r}"))
}

#[test]
fn exports_equal_the_api_hold_no_secret_and_neutralise_formulas() {
    let peers: Vec<String> = [FORMULA_NODE, "node0.os", "node1.os", "node2.os"].iter().map(|s| s.to_string()).collect();
    let env = Env::start("exports", "small.json", &peers);
    env.configure_admin_api();
    let k1 = add_key(&env, 1, FORMULA_KEY_NAME);
    let k2 = add_key(&env, 2, QUOTED_KEY_NAME);
    for node in &peers {
        let r = env.p2p(node, json!({"RequestApiKey": null}));
        assert!(r["response"]["Ok"].is_string(), "{node}: {r}");
    }
    // The first poll fetches a week of usage; a few more hours follow.
    env.api(json!({"PollNow": null}));
    env.eventually("a first poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    env.advance(3 * 3600);
    let polls = env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap();
    env.api(json!({"PollNow": null}));
    env.eventually("a later poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap() > polls);

    // Key costs per hour, in small chunks, and per day: each key's totals are the API's. A poll
    // may land meanwhile (the open hour grows), so compare a stable moment.
    let mut checked = false;
    for _ in 0..3 {
        let before = api_totals(&env);
        let (hourly_csv, chunks) = export_all(&env, json!({"what": "key_costs", "granularity": "hour", "limit": 50}));
        let (daily_csv, _) = export_all(&env, json!({"what": "key_costs", "granularity": "day"}));
        if api_totals(&env) != before {
            continue;
        }
        assert!(chunks > 3, "a week of hours for two keys takes several chunks of 50 ({chunks})");
        let hours = rows_of(&hourly_csv, &cost_columns("hour_start"));
        let days = rows_of(&daily_csv, &cost_columns("day_start"));
        assert!(before.values().all(|t| t.0 > 0), "{before:?}");
        assert_eq!(totals(&hours), before, "hourly export vs ListKeys / KeyDetail");
        assert_eq!(totals(&days), before, "daily export vs ListKeys / KeyDetail");
        // Every hour once, on the hour; a day row is the sum of its hours.
        let mut seen = std::collections::HashSet::new();
        let mut day_sums: BTreeMap<(i64, String), i64> = BTreeMap::new();
        for row in &hours {
            let at = &row["hour_start"];
            assert!(at.ends_with(":00:00Z") && at.len() == 20, "{at}");
            assert!(seen.insert((row["key_id"].clone(), at.clone())), "hour {at} twice");
            *day_sums.entry((int(&row["key_id"]), format!("{}T00:00:00Z", &at[..10]))).or_default() += micro(&row["estimated_cost_usd"]);
        }
        let from_days: BTreeMap<(i64, String), i64> = days.iter().map(|r| ((int(&r["key_id"]), r["day_start"].clone()), micro(&r["estimated_cost_usd"]))).collect();
        assert_eq!(from_days, day_sums);
        // Names: the formula guarded, quotes and commas kept.
        let names: BTreeMap<i64, String> = hours.iter().map(|r| (int(&r["key_id"]), r["key_name"].clone())).collect();
        assert_eq!(names[&k1], format!("'{FORMULA_KEY_NAME}"));
        assert_eq!(names[&k2], QUOTED_KEY_NAME);
        // One key alone.
        let (one, _) = export_all(&env, json!({"what": "key_costs", "key": k2, "limit": 1000}));
        let one = rows_of(&one, &cost_columns("hour_start"));
        assert!(one.iter().all(|r| int(&r["key_id"]) == k2));
        assert_eq!(one, hours.iter().filter(|r| int(&r["key_id"]) == k2).cloned().collect::<Vec<_>>());
        for csv in [&hourly_csv, &daily_csv] {
            assert_no_secret(csv);
            assert_no_formula(&parse_csv(csv));
        }
        checked = true;
        break;
    }
    assert!(checked, "the figures never held still for an export");

    // Nodes, two per chunk: exactly ListNodes' nodes, keys, issue times and attributed costs.
    let (nodes_csv, chunks) = export_all(&env, json!({"what": "nodes", "limit": 2}));
    assert!(chunks >= 2);
    let header = ["node", "key_id", "key_name", "masked_key", "issued_at", "attributed_cost_usd_estimate"];
    let exported: BTreeMap<String, Vec<String>> = rows_of(&nodes_csv, &header)
        .into_iter()
        .map(|r| (r["node"].clone(), header[1..].iter().map(|h| r[*h].clone()).collect()))
        .collect();
    let listed = env.api(json!({"ListNodes": {"limit": 500}}));
    let listed: BTreeMap<String, Vec<String>> = listed["Ok"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let guard = |s: &str| if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
            let fields = vec![
                n["key_id"].to_string(),
                guard(n["key_name"].as_str().unwrap()),
                n["masked_key"].as_str().unwrap().to_string(),
                n["issued_at"].as_str().unwrap().to_string(),
                MicroUsd(n["cost_micro_usd"].as_i64().unwrap()).format_usd(),
            ];
            (guard(n["node"].as_str().unwrap()), fields)
        })
        .collect();
    assert_eq!(exported.len(), peers.len());
    assert_eq!(exported, listed, "nodes export vs ListNodes");
    assert!(exported.contains_key(&format!("'{FORMULA_NODE}")), "the formula node name is guarded");
    let attributed: i64 = exported.values().map(|f| micro(&f[4])).sum();
    assert!(attributed > 0);
    assert_no_secret(&nodes_csv);
    assert_no_formula(&parse_csv(&nodes_csv));
    let (one_key, _) = export_all(&env, json!({"what": "nodes", "key": k1}));
    assert!(rows_of(&one_key, &header).iter().all(|r| int(&r["key_id"]) == k1));

    // The audit log, seven entries per chunk: the entries AuditLog shows, newest first.
    let (audit_csv, chunks) = export_all(&env, json!({"what": "audit", "limit": 7}));
    assert!(chunks >= 2);
    let audit_header = ["seq", "at", "actor", "action", "detail", "outcome"];
    let exported: Vec<Vec<String>> = rows_of(&audit_csv, &audit_header).iter().map(|r| audit_header.iter().map(|h| r[*h].clone()).collect()).collect();
    let newest_exported = int(&exported[0][0]);
    let listed: Vec<Vec<String>> = env.api(json!({"AuditLog": {"limit": 500}}))["Ok"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_i64().unwrap() <= newest_exported)
        .map(|e| {
            let guard = |s: &str| if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
            vec![e["seq"].to_string(), guard(e["at"].as_str().unwrap()), guard(e["actor"].as_str().unwrap()), guard(e["action"].as_str().unwrap()), guard(e["detail"].as_str().unwrap()), guard(e["outcome"].as_str().unwrap())]
        })
        .collect();
    assert_eq!(exported, listed, "audit export vs AuditLog");
    assert!(exported.iter().any(|e| e[2] == format!("'{FORMULA_NODE}")), "the node's issuance is audited, guarded");
    assert_no_secret(&audit_csv);
    assert_no_formula(&parse_csv(&audit_csv));
}

#[test]
fn bad_export_calls_are_refused_and_change_nothing() {
    let env = Env::start("exports-refusals", "small.json", &[]);
    let keys_before = env.api(json!({"ListKeys": null}));
    for (call, status) in [
        (json!({"Export": {"what": "audit", "key": 1}}), 400),
        (json!({"Export": {"what": "key_costs", "cursor": "n:1:2"}}), 400),
        (json!({"Export": {"what": "nodes", "cursor": "not a cursor"}}), 400),
        (json!({"Export": {"what": "secrets"}}), 400),
        (json!({"Export": {"what": "key_costs", "granularity": "minute"}}), 400),
        (json!({"Export": "key_costs"}), 400),
        (json!({"Export": {"what": "key_costs", "key": 99}}), 404),
        (json!({"Export": {"what": "nodes", "key": 99}}), 404),
    ] {
        let (code, answer) = env.api_with(call.clone(), &[("content-type", "application/json")]);
        assert_eq!(code, status, "{call}: {answer}");
        assert!(answer["Err"].is_string(), "{call}: {answer}");
    }
    // A page on another site may not read an export.
    let (code, _) = env.api_with(json!({"Export": {"what": "audit"}}), &[("content-type", "application/json"), ("origin", "https://evil.example")]);
    assert_eq!(code, 403);
    // An empty pool exports its header alone.
    let answer = env.api(json!({"Export": {"what": "key_costs", "granularity": "day"}}));
    assert_eq!(answer["Ok"]["csv"], format!("{}\r\n", cost_columns("day_start").join(",")));
    assert_eq!(answer["Ok"]["next_cursor"], Value::Null);
    assert_eq!(env.api(json!({"ListKeys": null})), keys_before);
}
