//! The usage report (tokens) and cost report (money), and the time window and pagination rules
//! they share with the analytics endpoint.
//!
//! Pagination: `limit` counts bucket *slots* (time windows walked), not buckets returned. A bucket
//! with no usage is absent when its index (start / width) is even and present with `results: []`
//! when odd, so a page may hold fewer buckets than `limit` (even none, with `has_more: true`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::money::{self, cents, CostItem, Femto};
use crate::scenario::{ContextWindow, ServiceTier};
use crate::usage::{line_views, tokens_in, LineView, Tokens};
use crate::{answer, invalid, parse_time, rfc, Answer, Query, Shared};

/// The bucket widths one endpoint accepts, and the name of its width parameter.
pub struct WindowRules {
    pub width_param: &'static str,
    pub widths: &'static [(&'static str, i64)],
    pub default_width: &'static str,
}

const USAGE_WINDOWS: WindowRules = WindowRules { width_param: "bucket_width", widths: &[("1m", 60), ("1h", 3600), ("1d", 86_400)], default_width: "1d" };
const COST_WINDOWS: WindowRules = WindowRules { width_param: "bucket_width", widths: &[("1d", 86_400)], default_width: "1d" };

/// The buckets one request walks.
pub struct Window {
    /// Buckets start before this (`ending_at`, or the end of the open bucket).
    pub end: i64,
    pub width: i64,
    /// Bucket slots per page.
    pub limit: usize,
    /// Where this page starts (from the `page` token).
    pub first_bucket: i64,
}

/// (default, max) bucket slots per page for a width.
fn limits_for(width: i64) -> (usize, usize) {
    match width {
        60 => (60, 1440),
        3600 => (24, 168),
        _ => (7, 31),
    }
}

fn floor(t: i64, width: i64) -> i64 {
    t - t.rem_euclid(width)
}

fn parse_width(q: &Query, rules: &WindowRules) -> Result<i64, Answer> {
    let asked = q.one(rules.width_param).unwrap_or(rules.default_width);
    match rules.widths.iter().find(|(name, _)| *name == asked) {
        Some((_, w)) => Ok(*w),
        None => {
            let allowed: Vec<&str> = rules.widths.iter().map(|(n, _)| *n).collect();
            Err(invalid(&format!("{} must be one of {}", rules.width_param, allowed.join(", "))))
        }
    }
}

fn parse_limit(q: &Query, width: i64, page_size: Option<usize>) -> Result<usize, Answer> {
    let (default, max) = limits_for(width);
    let limit = match q.one("limit") {
        None => default,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(invalid(&format!("limit must be an integer from 1 to {max} for this bucket width"))),
        },
    };
    Ok(limit.min(page_size.unwrap_or(usize::MAX)))
}

/// Reads `starting_at`, `ending_at`, the width, `limit` and `page`. The app must never ask past the
/// end of the open bucket (by the fake's clock): such a request is refused, as is an empty range.
pub fn parse_window(q: &Query, now: i64, rules: &WindowRules, page_size: Option<usize>) -> Result<Window, Answer> {
    let width = parse_width(q, rules)?;
    let Some(starting_at) = q.one("starting_at").and_then(parse_time) else { return Err(invalid("starting_at is required (RFC 3339)")) };
    let open_end = floor(now, width) + width;
    let end = match q.one("ending_at") {
        None if starting_at >= open_end => return Err(invalid("starting_at is in the future")),
        None => open_end,
        Some(text) => {
            let Some(ending_at) = parse_time(text) else { return Err(invalid("ending_at must be RFC 3339")) };
            if ending_at > open_end {
                return Err(invalid("ending_at is in the future"));
            }
            if starting_at >= ending_at {
                return Err(invalid("starting_at must be before ending_at"));
            }
            ending_at
        }
    };
    // The first bucket starts at `starting_at` snapped down to the width.
    let start = floor(starting_at, width);
    let limit = parse_limit(q, width, page_size)?;
    let first_bucket = match q.one("page") {
        None => start,
        Some(token) => match token.strip_prefix("page_").and_then(|n| n.parse::<i64>().ok()) {
            Some(t) if t >= start && t < end && (t - start) % width == 0 => t,
            _ => return Err(invalid("page is not a page token of this query")),
        },
    };
    Ok(Window { end, width, limit, first_bucket })
}

/// Whether a bucket with nothing in it is listed (with `results: []`) or left out: the real API
/// does both, so the fake does both, deterministically.
fn empty_bucket_is_listed(start: i64, width: i64) -> bool {
    start.div_euclid(width).rem_euclid(2) == 1
}

/// One page of buckets: `{data: [{starting_at, ending_at, results}], has_more, next_page}`.
pub fn paginate(w: &Window, mut results_of: impl FnMut(i64, i64) -> Vec<Value>) -> Answer {
    let mut data = vec![];
    let mut t = w.first_bucket;
    for _ in 0..w.limit {
        if t >= w.end {
            break;
        }
        let results = results_of(t, t + w.width);
        if !results.is_empty() || empty_bucket_is_listed(t, w.width) {
            data.push(json!({"starting_at": rfc(t), "ending_at": rfc(t + w.width), "results": results}));
        }
        t += w.width;
    }
    let has_more = t < w.end;
    answer(200, json!({"data": data, "has_more": has_more, "next_page": if has_more { json!(format!("page_{t}")) } else { Value::Null }}))
}

/// `group_by[]` values, each one of `allowed` (duplicates dropped, order kept).
pub fn parse_group_by<'q>(q: &Query<'q>, allowed: &[&str]) -> Result<Vec<&'q str>, Answer> {
    let mut groups: Vec<&str> = vec![];
    for g in q.all("group_by[]") {
        if !allowed.contains(&g) {
            return Err(invalid(&format!("group_by[] {g:?} is not one of {}", allowed.join(", "))));
        }
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(groups)
}

/// Every `group_by[]` value the usage report documents. The fake does not model the last four:
/// grouped by them, rows carry null; filtered by them, nothing matches.
const USAGE_GROUPS: [&str; 9] = ["api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo", "speed", "account_id", "service_account_id"];

/// A usage line's value of a group field (None = null).
fn group_value(view: &LineView, field: &str) -> Option<String> {
    match field {
        "api_key_id" => view.api_key_id().map(str::to_string),
        "workspace_id" => view.workspace_id.map(str::to_string),
        "model" => Some(view.model().to_string()),
        "service_tier" => Some(view.service_tier().as_str().to_string()),
        "context_window" => Some(view.context_window().as_str().to_string()),
        _ => None,
    }
}

/// Filter parameter → the field it filters on.
const USAGE_FILTERS: [(&str, &str); 7] = [
    ("api_key_ids[]", "api_key_id"),
    ("workspace_ids[]", "workspace_id"),
    ("models[]", "model"),
    ("service_tiers[]", "service_tier"),
    ("context_window[]", "context_window"),
    ("inference_geos[]", "inference_geo"),
    ("account_ids[]", "account_id"),
];

/// The filters of one request: (field, accepted values), only those given.
pub struct Filters<'q>(Vec<(&'static str, Vec<&'q str>)>);

impl Filters<'_> {
    pub fn keep(&self, view: &LineView) -> bool {
        self.0.iter().all(|(field, values)| group_value(view, field).is_some_and(|v| values.contains(&v.as_str())))
    }
}

pub fn parse_filters<'q>(q: &Query<'q>, allowed: &[(&str, &'static str)]) -> Result<Filters<'q>, Answer> {
    let mut filters = vec![];
    for (param, field) in allowed {
        let values = q.all(param);
        let known: Vec<&str> = match *field {
            "service_tier" => ServiceTier::ALL.iter().map(|t| t.as_str()).collect(),
            "context_window" => ContextWindow::ALL.iter().map(|w| w.as_str()).collect(),
            _ => vec![],
        };
        if let Some(bad) = values.iter().find(|v| !known.is_empty() && !known.contains(v)) {
            return Err(invalid(&format!("{param} {bad:?} is not one of {}", known.join(", "))));
        }
        if !values.is_empty() {
            filters.push((*field, values));
        }
    }
    Ok(Filters(filters))
}

fn usage_row(t: &Tokens, groups: &[&str], values: &[Option<String>]) -> Value {
    let mut row = json!({"uncached_input_tokens": t.uncached_input, "cache_read_input_tokens": t.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": t.cache_write_5m, "ephemeral_1h_input_tokens": t.cache_write_1h},
        "output_tokens": t.output, "server_tool_use": {"web_search_requests": t.web_search_requests}});
    for (field, value) in groups.iter().zip(values) {
        row[*field] = json!(value);
    }
    row
}

/// `GET /v1/organizations/usage_report/messages`: token counts per bucket, one row per distinct
/// value of the `group_by[]` fields (lines differing only in other fields are merged).
pub fn usage_report(state: &Shared, q: &Query, now: i64) -> Answer {
    let s = state.lock().unwrap();
    let parsed = parse_window(q, now, &USAGE_WINDOWS, s.scenario.page_size)
        .and_then(|w| Ok((w, parse_group_by(q, &USAGE_GROUPS)?, parse_filters(q, &USAGE_FILTERS)?)));
    let (window, groups, filters) = match parsed {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let views: Vec<LineView> = line_views(&s).into_iter().filter(|v| filters.keep(v)).collect();
    paginate(&window, |start, end| {
        let mut rows: BTreeMap<Vec<Option<String>>, Tokens> = BTreeMap::new();
        for view in &views {
            let tokens = tokens_in(view.line, start, end, now);
            if tokens.has_usage() {
                *rows.entry(groups.iter().map(|g| group_value(view, g)).collect()).or_default() += tokens;
            }
        }
        rows.iter().map(|(values, tokens)| usage_row(tokens, &groups, values)).collect()
    })
}

/// What a cost line is about when grouped by description.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LineItem {
    model: String,
    /// Web search lines carry no tier or window: they are normalised here so they merge.
    tier: ServiceTier,
    window: ContextWindow,
    item: CostItem,
}

impl LineItem {
    fn describe(&self, row: &mut Value) {
        row["description"] = json!(money::description(&self.model, self.item, self.tier, self.window));
        row["model"] = json!(self.model);
        match self.item {
            CostItem::Tokens(kind) => {
                row["cost_type"] = json!("tokens");
                row["token_type"] = json!(kind.wire_name());
                row["service_tier"] = json!(self.tier.as_str());
                row["context_window"] = json!(self.window.as_str());
            }
            CostItem::WebSearch => {
                row["cost_type"] = json!("web_search");
                row["token_type"] = Value::Null;
                row["service_tier"] = Value::Null;
                row["context_window"] = Value::Null;
            }
        }
    }
}

/// `GET /v1/organizations/cost_report`: money per day, from the scenario's own prices. Priority-tier
/// usage is not in it (as in the real API), nor is a model the scenario has no price for.
pub fn cost_report(state: &Shared, q: &Query, now: i64) -> Answer {
    let s = state.lock().unwrap();
    let parsed = parse_window(q, now, &COST_WINDOWS, s.scenario.page_size).and_then(|w| Ok((w, parse_group_by(q, &["workspace_id", "description"])?)));
    let (window, groups) = match parsed {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let (by_workspace, by_description) = (groups.contains(&"workspace_id"), groups.contains(&"description"));
    let views = line_views(&s);
    paginate(&window, |start, end| {
        let mut lines: BTreeMap<(Option<Option<String>>, Option<LineItem>), Femto> = BTreeMap::new();
        for view in views.iter().filter(|v| v.service_tier() != ServiceTier::Priority) {
            let Some(prices) = s.scenario.prices_of(view.model()) else { continue };
            let tokens = tokens_in(view.line, start, end, now);
            for (item, amount) in money::priced_items(prices, view.service_tier(), view.context_window(), &tokens) {
                let workspace = by_workspace.then(|| view.workspace_id.map(str::to_string));
                let described = by_description.then(|| match item {
                    CostItem::WebSearch => LineItem { model: view.model().to_string(), tier: ServiceTier::Standard, window: ContextWindow::UpTo200k, item },
                    CostItem::Tokens(_) => LineItem { model: view.model().to_string(), tier: view.service_tier(), window: view.context_window(), item },
                });
                *lines.entry((workspace, described)).or_default() += amount;
            }
        }
        lines
            .into_iter()
            .map(|((workspace, described), amount)| {
                let mut row = json!({"currency": "USD", "amount": cents(amount)});
                if let Some(ws) = workspace {
                    row["workspace_id"] = json!(ws);
                }
                if let Some(d) = described {
                    d.describe(&mut row);
                }
                row
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::test_support::*;

    const USAGE: &str = "/v1/organizations/usage_report/messages";
    const COST: &str = "/v1/organizations/cost_report";

    /// The realistic scenario at 2026-03-03 10:30 (Tuesday).
    fn realistic() -> crate::Shared {
        state_at(&scenario_text("realistic.json"), "2026-03-03T10:30:00Z")
    }

    fn sum_field(buckets: &[Value], field: &str) -> u64 {
        buckets.iter().flat_map(|b| b["results"].as_array().unwrap()).map(|r| r[field].as_u64().unwrap()).sum()
    }

    #[test]
    fn window_rules() {
        let state = small_state(); // 2026-03-01T10:30:00Z
        let q = |s: &str, e: &str| vec![("starting_at", s.to_string()), ("ending_at", e.to_string()), ("bucket_width", "1h".to_string())];
        let ask = |q: Vec<(&str, String)>| {
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(&state, USAGE, &q)
        };
        assert_eq!(ask(q("2026-03-01T08:00:00Z", "2026-03-01T11:00:00Z")).0, 200, "up to the end of the open hour");
        let (status, body) = ask(q("2026-03-01T08:00:00Z", "2026-03-01T11:00:01Z"));
        assert_eq!((status, body["error"]["message"].as_str()), (400, Some("ending_at is in the future")));
        assert_eq!(ask(q("2026-03-01T09:00:00Z", "2026-03-01T09:00:00Z")).0, 400, "empty range");
        assert_eq!(ask(q("2026-03-01T10:00:00Z", "2026-03-01T09:00:00Z")).0, 400);
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-03-01T11:00:00Z"), ("bucket_width", "1h")]).0, 400, "starts in the future");
        assert_eq!(get(&state, USAGE, &[]).0, 400, "starting_at required");
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-03-01T00:00:00Z"), ("bucket_width", "2h")]).0, 400);
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-03-01T00:00:00Z"), ("bucket_width", "1h"), ("limit", "169")]).0, 400);
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-03-01T00:00:00Z"), ("page", "page_12")]).0, 400, "foreign page token");
        assert_eq!(get(&state, COST, &[("starting_at", "2026-03-01T00:00:00Z"), ("bucket_width", "1h")]).0, 400, "cost is daily only");
        assert_eq!(get(&state, COST, &[("starting_at", "2026-02-01T00:00:00Z"), ("ending_at", "2026-03-02T00:00:00Z")]).0, 200, "the open day");
        assert_eq!(get(&state, COST, &[("starting_at", "2026-02-01T00:00:00Z"), ("ending_at", "2026-03-03T00:00:00Z")]).0, 400);
        for g in ["api_key_id", "tier", "model"] {
            assert_eq!(get(&state, COST, &[("starting_at", "2026-02-01T00:00:00Z"), ("group_by[]", g)]).0, 400, "{g}");
        }
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-02-01T00:00:00Z"), ("group_by[]", "cost_type")]).0, 400);
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-02-01T00:00:00Z"), ("service_tiers[]", "flex")]).0, 400);
        assert_eq!(get(&state, USAGE, &[("starting_at", "2026-02-01T00:00:00Z"), ("group_by[]", "inference_geo")]).0, 200);
    }

    #[test]
    fn pagination_walks_every_slot_and_leaves_some_empty_buckets_out() {
        // Usage of the realistic scenario starts 2026-03-02T00:00Z; ask from 2026-03-01T00:00Z.
        let state = realistic();
        let q = [("starting_at", "2026-03-01T00:00:00Z"), ("ending_at", "2026-03-03T11:00:00Z"), ("bucket_width", "1h"), ("limit", "5"), ("group_by[]", "api_key_id")];
        let (buckets, pages) = all_buckets(&state, USAGE, &q, &admin_headers());
        assert_eq!(pages, 59usize.div_ceil(5), "59 hour slots, 5 per page");
        let starts: Vec<&str> = buckets.iter().map(|b| b["starting_at"].as_str().unwrap()).collect();
        // 24 empty hours of March 1: only odd hours are listed, with empty results.
        let empty: Vec<&Value> = buckets.iter().filter(|b| b["results"] == json!([])).collect();
        assert_eq!(empty.len(), 12);
        assert!(empty.iter().all(|b| b["starting_at"].as_str().unwrap()[11..13].parse::<u32>().unwrap() % 2 == 1));
        assert_eq!(starts.len(), 12 + 35, "listed empty buckets plus every hour with usage");
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*starts.last().unwrap(), "2026-03-03T10:00:00Z", "the open hour");
        // No fabricated zero rows.
        for b in &buckets {
            for r in b["results"].as_array().unwrap() {
                assert!(r["output_tokens"].as_u64().unwrap() + r["uncached_input_tokens"].as_u64().unwrap() + r["cache_read_input_tokens"].as_u64().unwrap() > 0, "{r}");
            }
        }
        // A page may hold no bucket at all and still say has_more.
        let (_, page) = get(&state, USAGE, &[("starting_at", "2026-03-01T00:00:00Z"), ("ending_at", "2026-03-02T00:00:00Z"), ("bucket_width", "1h"), ("limit", "1")]);
        assert_eq!((page["data"].clone(), page["has_more"].as_bool(), page["next_page"].as_str()), (json!([]), Some(true), Some("page_1772326800")));
    }

    #[test]
    fn usage_groups_merge_and_split_by_tier_and_window() {
        let state = realistic();
        let hour = [("starting_at", "2026-03-02T12:00:00Z"), ("ending_at", "2026-03-02T13:00:00Z"), ("bucket_width", "1h")];
        let rows = |extra: &[(&'static str, &'static str)]| {
            let q: Vec<(&str, &str)> = hour.iter().chain(extra).cloned().collect();
            let (status, body) = get(&state, USAGE, &q);
            assert_eq!(status, 200, "{body}");
            // 12:00 is an even hour: with nothing in it, the bucket is left out.
            body["data"].get(0).map_or(vec![], |b| b["results"].as_array().unwrap().clone())
        };
        // Key 1 has Sonnet at standard and batch, short and long context: one row when grouped by key and model.
        let merged = rows(&[("group_by[]", "api_key_id"), ("group_by[]", "model"), ("api_key_ids[]", "apikey_TEST01"), ("models[]", "claude-sonnet-4-5-20250929")]);
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert!(merged[0].get("service_tier").is_none() && merged[0].get("workspace_id").is_none());
        let split = rows(&[("group_by[]", "api_key_id"), ("group_by[]", "model"), ("group_by[]", "service_tier"), ("group_by[]", "context_window"), ("api_key_ids[]", "apikey_TEST01"), ("models[]", "claude-sonnet-4-5-20250929")]);
        assert_eq!(split.len(), 4, "standard and batch, short and long context");
        let total = |rows: &[Value]| rows.iter().map(|r| r["uncached_input_tokens"].as_u64().unwrap()).sum::<u64>();
        assert_eq!(total(&split), total(&merged));
        assert!(split.iter().any(|r| r["service_tier"] == "batch" && r["context_window"] == "0-200k"));
        assert!(split.iter().any(|r| r["service_tier"] == "standard" && r["context_window"] == "200k-1M"));
        let long = rows(&[("group_by[]", "context_window"), ("context_window[]", "200k-1M")]);
        assert_eq!(long.len(), 1);
        assert_eq!(long[0]["context_window"], "200k-1M");
        // Workbench usage: api_key_id null when grouped by key; its own workspace.
        let by_key = rows(&[("group_by[]", "api_key_id"), ("group_by[]", "workspace_id")]);
        let workbench: Vec<&Value> = by_key.iter().filter(|r| r["api_key_id"].is_null()).collect();
        assert_eq!(workbench.len(), 1, "{by_key:?}");
        assert_eq!(workbench[0]["workspace_id"], "wrkspc_TESTteam");
        assert!(by_key.iter().any(|r| r["api_key_id"] == "apikey_TEST03" && r["workspace_id"] == "wrkspc_TESTsolo"));
        assert!(by_key.iter().any(|r| r["api_key_id"] == "apikey_TEST01" && r["workspace_id"].is_null()));
        let in_team = rows(&[("group_by[]", "workspace_id"), ("workspace_ids[]", "wrkspc_TESTteam")]);
        assert_eq!(in_team.len(), 1);
        // Unmodelled groups are null; filters on them match nothing.
        assert!(rows(&[("group_by[]", "inference_geo")]).iter().all(|r| r.get("inference_geo") == Some(&Value::Null)));
        assert!(rows(&[("inference_geos[]", "us")]).is_empty());
        // Key filters never match Workbench usage.
        assert!(rows(&[("group_by[]", "api_key_id"), ("api_key_ids[]", "apikey_TEST03")]).iter().all(|r| r["api_key_id"] == "apikey_TEST03"));
    }

    #[test]
    fn usage_sums_match_the_hourly_rates() {
        let state = small_state();
        let q = [("starting_at", "2026-02-01T00:00:00Z"), ("ending_at", "2026-02-02T00:00:00Z"), ("bucket_width", "1h"), ("group_by[]", "api_key_id"), ("group_by[]", "model"), ("api_key_ids[]", "apikey_TEST01")];
        let (buckets, pages) = all_buckets(&state, USAGE, &q, &admin_headers());
        assert_eq!((buckets.len(), pages), (24, 4), "page_size 7 caps the pages");
        assert_eq!(sum_field(&buckets, "output_tokens"), 24 * (720 + 1800));
        // The open hour is prorated to the half hour elapsed.
        let (_, open) = get(&state, USAGE, &[("starting_at", "2026-03-01T10:00:00Z"), ("bucket_width", "1h"), ("api_key_ids[]", "apikey_TEST02")]);
        assert_eq!(open["data"][0]["results"][0]["output_tokens"], 180);
    }

    /// Amount of a row in µUSD×10^9 (femto-dollars), parsed exactly from the cents string.
    fn femto(amount: &str) -> i128 {
        let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
        assert!(frac.len() <= 13, "{amount}");
        int.parse::<i128>().unwrap() * 10_000_000_000_000 + format!("{frac:0<13}").parse::<i128>().unwrap()
    }

    #[test]
    fn cost_lines_by_description_add_up_to_the_workspace_day() {
        let state = realistic();
        let day = [("starting_at", "2026-03-02T00:00:00Z"), ("ending_at", "2026-03-03T00:00:00Z")];
        let results = |groups: &[&'static str]| {
            let q: Vec<(&str, &str)> = day.iter().cloned().chain(groups.iter().map(|g| ("group_by[]", *g))).collect();
            let (status, body) = get(&state, COST, &q);
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"].as_array().unwrap().len(), 1);
            body["data"][0]["results"].as_array().unwrap().clone()
        };
        let totals = results(&["workspace_id"]);
        let lines = results(&["workspace_id", "description"]);
        assert!(lines.len() > totals.len());
        for total in &totals {
            let sum: i128 = lines.iter().filter(|l| l["workspace_id"] == total["workspace_id"]).map(|l| femto(l["amount"].as_str().unwrap())).sum();
            assert_eq!(sum, femto(total["amount"].as_str().unwrap()), "{}", total["workspace_id"]);
            assert!(total.get("description").is_none() && total.get("cost_type").is_none());
        }
        let all = results(&[]);
        assert_eq!(all.len(), 1);
        assert_eq!(femto(all[0]["amount"].as_str().unwrap()), totals.iter().map(|t| femto(t["amount"].as_str().unwrap())).sum::<i128>());

        // Key 3 alone in its workspace: 24 h × (10,000 input × $1 + 2,000 output × $5 per Mtok) = $0.48 = 48 cents.
        let solo = totals.iter().find(|t| t["workspace_id"] == "wrkspc_TESTsolo").unwrap();
        assert_eq!(solo["amount"], "48");
        assert_eq!(solo["currency"], "USD");
        // Line items carry their token type, model, tier, window and a description.
        let input = lines
            .iter()
            .find(|l| l["token_type"] == "uncached_input_tokens" && l["workspace_id"] == "wrkspc_TESTsolo")
            .unwrap();
        assert_eq!(input["cost_type"], "tokens");
        assert_eq!(input["model"], "claude-haiku-4-5-20251001");
        assert_eq!((input["service_tier"].as_str(), input["context_window"].as_str()), (Some("standard"), Some("0-200k")));
        assert_eq!(input["description"], "Claude Haiku 4.5 Usage - Input Tokens");
        assert_eq!(input["amount"], "24");
        let search = lines.iter().find(|l| l["cost_type"] == "web_search").unwrap();
        assert_eq!((search["token_type"].clone(), search["description"].as_str()), (Value::Null, Some("Claude Opus 4.5 Usage - Web Search")));
        assert_eq!(search["amount"], "48", "2 searches an hour for a day at 1 cent each");
        // Batch and long-context lines are separate and carry their tier and window.
        assert!(lines.iter().any(|l| l["service_tier"] == "batch" && l["description"].as_str().unwrap().ends_with("- Batch")));
        assert!(lines.iter().any(|l| l["context_window"] == "200k-1M"));
        // Priority usage and unpriced models are not in the cost report.
        assert!(lines.iter().all(|l| l["service_tier"] != "priority"));
        assert!(lines.iter().all(|l| l["model"] != "claude-mystery-9"));
        // Workbench usage counts in its workspace.
        assert!(lines.iter().any(|l| l["workspace_id"] == "wrkspc_TESTteam"));
        // Amounts keep fractional cents exactly.
        assert!(lines.iter().any(|l| l["amount"].as_str().unwrap().contains('.')), "{lines:?}");
    }

    #[test]
    fn exact_fractional_cents() {
        let state = realistic();
        // Key 1's batch long-context Sonnet: 7 output tokens an hour.
        let (_, body) = get(&state, COST, &[("starting_at", "2026-03-02T00:00:00Z"), ("ending_at", "2026-03-03T00:00:00Z"), ("group_by[]", "description")]);
        let line = body["data"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["service_tier"] == "batch" && l["context_window"] == "200k-1M" && l["token_type"] == "output_tokens")
            .cloned()
            .unwrap();
        // 24 × 7 tokens × $15 × 1.5 × ½ per Mtok = $0.00189 = 0.189 cents.
        assert_eq!(line["amount"], "0.189");
        assert_eq!(line["description"], "Claude Sonnet 4.5 Usage - Output Tokens - Batch - Long Context");
    }
}
