//! CSV exports of the dashboard (issue 12): cost per key per hour or day, nodes with their
//! attributed cost, the audit log.
//!
//! An export is paged: each `Export` call answers one chunk of CSV text and a cursor for the next;
//! the first chunk opens with the header line. What is written follows RFC 4180 (fields holding a
//! comma, a quote, CR or LF are quoted, quotes doubled; lines end in CRLF), in UTF-8. Text that
//! others choose (key names, node names, audit texts) is neutralised against formula injection: a
//! spreadsheet runs a cell starting with `=`, `+`, `-`, `@` (or tab, CR) as a formula, so such a
//! field gets a leading `'`. Values this module formats itself (numbers, money, times) are never
//! touched: a negative amount must stay a number. Money is exact: µUSD written as USD with six
//! decimals. Times are RFC 3339 UTC.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cost::TokenCounts;
use crate::http_api::{AuditEntry, NodeView};
use crate::pool::KeyId;
use crate::MicroUsd;

/// What to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// Tokens and estimated cost per key per hour (or day).
    KeyCosts,
    /// Every issued node with its key, issue time and attributed cost (an estimate).
    Nodes,
    /// The audit log, newest first.
    Audit,
}

/// The period of one key-costs row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Hour,
    /// UTC days.
    Day,
}

impl Granularity {
    pub fn secs(self) -> i64 {
        match self {
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }
}

/// `{"Export": {"what": "key_costs", "granularity": "hour", "key": null, "cursor": null, "limit": null}}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportQuery {
    pub what: ExportKind,
    /// Key costs only.
    #[serde(default)]
    pub granularity: Granularity,
    /// Key costs and nodes: one key only.
    #[serde(default)]
    pub key: Option<KeyId>,
    /// `next_cursor` of the previous chunk; None for the first chunk.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Rows per chunk (clamped to the kind's maximum).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// One chunk of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportChunk {
    /// CSV text: whole lines, each ending in CRLF; the first chunk starts with the header line.
    pub csv: String,
    /// Data rows in this chunk (the header not counted).
    pub rows: u64,
    /// Pass it back as `cursor` for the next chunk; None: the export is complete.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExportError {
    #[error("field `cursor`: {0:?} is not a cursor of this export (pass back `next_cursor` as it came)")]
    BadCursor(String),
    #[error("field `key`: the audit log is not kept per key")]
    KeyNotApplicable,
    #[error("the database answered a malformed usage row: {0}")]
    MalformedRow(String),
}

impl ExportQuery {
    /// Refuses a query whose fields do not fit together; nothing is read then.
    pub fn validate(&self) -> Result<(), ExportError> {
        if self.what == ExportKind::Audit && self.key.is_some() {
            return Err(ExportError::KeyNotApplicable);
        }
        Ok(())
    }

    /// Rows per chunk. The maxima keep one call far below the node's 15 s HTTP limit at a year
    /// of hourly data for 100 keys (docs/benchmarks.md); the defaults are what the UI asks for.
    pub fn rows_per_chunk(&self) -> u64 {
        let (default, max) = match self.what {
            ExportKind::KeyCosts => (100_000, 200_000),
            ExportKind::Nodes => (10_000, 20_000),
            ExportKind::Audit => (5_000, 10_000),
        };
        self.limit.unwrap_or(default).clamp(1, max)
    }

    pub fn is_first_chunk(&self) -> bool {
        self.cursor.is_none()
    }
}

// ----- CSV writing -----

/// Characters that make a spreadsheet read a cell as a formula when they lead it.
const FORMULA_LEADS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `s` with a leading `'` when a spreadsheet would run it as a formula.
pub fn neutralise_formula(s: &str) -> Cow<'_, str> {
    if s.starts_with(FORMULA_LEADS) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` as one RFC 4180 field: quoted (quotes doubled) when it holds a comma, quote, CR or LF.
pub fn quote(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// A text field chosen by others: neutralised, then quoted as needed.
pub fn text_field(s: &str) -> String {
    quote(&neutralise_formula(s)).into_owned()
}

/// Builds CSV text row by row.
#[derive(Debug, Default)]
pub struct CsvWriter {
    out: String,
    row_open: bool,
    rows: u64,
}

impl CsvWriter {
    pub fn with_capacity(bytes: usize) -> CsvWriter {
        CsvWriter { out: String::with_capacity(bytes), ..CsvWriter::default() }
    }

    fn separate(&mut self) {
        if self.row_open {
            self.out.push(',');
        }
        self.row_open = true;
    }

    /// A field chosen by others (names, audit texts).
    pub fn text(&mut self, s: &str) {
        self.separate();
        self.out.push_str(&quote(&neutralise_formula(s)));
    }

    /// A field already made safe by [`text_field`] (computed once, written many times).
    pub fn prepared(&mut self, field: &str) {
        self.separate();
        self.out.push_str(field);
    }

    pub fn int(&mut self, n: impl Into<i128>) {
        self.separate();
        let n: i128 = n.into();
        if n < 0 {
            self.out.push('-');
        }
        // From an i64 or a u64: the magnitude fits a u64 (u64 arithmetic is native in wasm).
        push_unsigned(&mut self.out, n.unsigned_abs() as u64);
    }

    /// Exact USD, six decimals: 1234567 µUSD → `1.234567`, −1 → `-0.000001` (as
    /// `MicroUsd::format_usd`, without its allocations: a year of hours writes it a million times).
    pub fn usd(&mut self, amount: MicroUsd) {
        self.separate();
        if amount.0 < 0 {
            self.out.push('-');
        }
        let micro = amount.0.unsigned_abs();
        push_unsigned(&mut self.out, micro / 1_000_000);
        self.out.push('.');
        push_digits(&mut self.out, (micro % 1_000_000) as u32, 6);
    }

    /// Unix seconds as RFC 3339 UTC (`2026-11-24T10:00:00Z`).
    pub fn time(&mut self, secs: i64) {
        self.separate();
        push_rfc3339(&mut self.out, secs);
    }

    /// A header line (our own column names).
    pub fn header(&mut self, columns: &[&str]) {
        for column in columns {
            self.prepared(column);
        }
        self.out.push_str("\r\n");
        self.row_open = false;
    }

    pub fn end_row(&mut self) {
        self.out.push_str("\r\n");
        self.row_open = false;
        self.rows += 1;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Appends unix seconds as RFC 3339 UTC. Years 0 to 9999 are written digit by digit (a year of
/// hourly rows formats a million times); anything else goes through chrono.
pub fn push_rfc3339(out: &mut String, secs: i64) {
    const MAX_FAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    const MIN_FAST: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    if !(MIN_FAST..=MAX_FAST).contains(&secs) {
        match chrono::DateTime::from_timestamp(secs, 0) {
            Some(t) => out.push_str(&crate::wit_api::rfc3339(t)),
            None => {
                let _ = write!(out, "{secs}");
            }
        }
        return;
    }
    let (days, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    push_digits(out, year as u32, 4);
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push('T');
    push_digits(out, (in_day / 3600) as u32, 2);
    out.push(':');
    push_digits(out, (in_day % 3600 / 60) as u32, 2);
    out.push(':');
    push_digits(out, (in_day % 60) as u32, 2);
    out.push('Z');
}

/// Appends the decimal digits of `n`.
fn push_unsigned(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Appends `value` as exactly `width` digits, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
    }
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ----- key costs -----

/// Tokens and estimated cost of one key in one period (hour or UTC day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCostRow {
    pub key: KeyId,
    /// Start of the period, unix seconds.
    pub period_start: i64,
    pub tokens: TokenCounts,
    pub cost: MicroUsd,
}

/// Where the next key-costs chunk starts: rows with (key, period start) ≥ this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCostCursor {
    pub key: KeyId,
    pub from: i64,
}

impl KeyCostCursor {
    pub const START: KeyCostCursor = KeyCostCursor { key: KeyId(0), from: i64::MIN };

    pub fn encode(&self) -> String {
        format!("c:{}:{}", self.key.0, self.from)
    }

    pub fn parse(s: &str) -> Result<KeyCostCursor, ExportError> {
        let bad = || ExportError::BadCursor(s.chars().take(40).collect());
        let (key, from) = s.strip_prefix("c:").and_then(|rest| rest.split_once(':')).ok_or_else(bad)?;
        Ok(KeyCostCursor { key: KeyId(key.parse().map_err(|_| bad())?), from: from.parse().map_err(|_| bad())? })
    }
}

/// One stored usage row as the database answers it for an export, in this order: key,
/// bucket start, uncached input, cache write 5m, cache write 1h, cache read, output, web search
/// requests, µUSD.
pub type SampleRow = [i64; 9];

/// Separates rows in the database's text for a chunk; fields are separated by commas.
pub const DB_ROW_SEPARATOR: u8 = b';';

/// Parses the database's text for a chunk of usage rows: `k,b,u,w5,w1,r,o,s,c;k,b,...` (nine
/// integers a row). The issuer reads a chunk as this one text value (SQLite's `printf` and
/// `group_concat`): a million JSON objects would cost more to answer and to parse than the
/// export may take.
pub fn parse_sample_rows(text: &str) -> Result<Vec<SampleRow>, ExportError> {
    let mut rows = Vec::with_capacity(text.len() / 24 + 1);
    for line in text.as_bytes().split(|&b| b == DB_ROW_SEPARATOR).filter(|line| !line.is_empty()) {
        rows.push(parse_sample_line(line).ok_or_else(|| ExportError::MalformedRow(String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()))?);
    }
    Ok(rows)
}

fn parse_sample_line(line: &[u8]) -> Option<SampleRow> {
    let mut row = [0i64; 9];
    let mut fields = line.split(|&b| b == b',');
    for value in row.iter_mut() {
        *value = parse_i64(fields.next()?)?;
    }
    fields.next().is_none().then_some(row)
}

fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

/// One key-costs chunk: its rows and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCostChunk {
    pub rows: Vec<KeyCostRow>,
    /// None: nothing is left.
    pub next: Option<KeyCostCursor>,
}

impl KeyCostChunk {
    /// A chunk that could not finish even one period: that period holds more stored rows than a
    /// chunk reads, so the issuer reads it alone.
    pub fn stuck_at(&self) -> Option<KeyCostCursor> {
        self.next.filter(|_| self.rows.is_empty())
    }
}

/// Sums stored usage rows (one per key, bucket, model, tier and context window) into one row
/// per key and period. `more` says the database had rows beyond these (the chunk was full): the
/// last period may then be cut short, so it is left whole for the next chunk.
pub fn sum_periods(mut samples: Vec<SampleRow>, granularity: Granularity, more: bool) -> Result<KeyCostChunk, ExportError> {
    // The database answers in this order; sorting is only the safety net.
    if !samples.is_sorted_by_key(|s| (s[0], s[1])) {
        samples.sort_by_key(|s| (s[0], s[1]));
    }
    let mut rows: Vec<KeyCostRow> = Vec::with_capacity(samples.len());
    for sample in &samples {
        let (key, tokens, cost) = parse_sample(sample)?;
        let period_start = sample[1] - sample[1].rem_euclid(granularity.secs());
        match rows.last_mut() {
            Some(last) if last.key == key && last.period_start == period_start => {
                last.tokens.add(&tokens);
                last.cost += cost;
            }
            _ => rows.push(KeyCostRow { key, period_start, tokens, cost }),
        }
    }
    let next = match (more, rows.last()) {
        (true, Some(last)) => {
            let next = KeyCostCursor { key: last.key, from: last.period_start };
            rows.pop();
            Some(next)
        }
        _ => None,
    };
    Ok(KeyCostChunk { rows, next })
}

fn parse_sample(sample: &SampleRow) -> Result<(KeyId, TokenCounts, MicroUsd), ExportError> {
    let bad = || ExportError::MalformedRow(format!("{sample:?}"));
    let count = |i: usize| u64::try_from(sample[i]).map_err(|_| bad());
    let key = KeyId(u64::try_from(sample[0]).map_err(|_| bad())?);
    let tokens = TokenCounts {
        uncached_input: count(2)?,
        cache_write_5m: count(3)?,
        cache_write_1h: count(4)?,
        cache_read: count(5)?,
        output: count(6)?,
        web_search_requests: count(7)?,
    };
    Ok((key, tokens, MicroUsd(sample[8])))
}

pub fn key_costs_header(granularity: Granularity) -> [&'static str; 10] {
    let period = match granularity {
        Granularity::Hour => "hour_start",
        Granularity::Day => "day_start",
    };
    [
        "key_id",
        "key_name",
        period,
        "uncached_input_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_tokens",
        "output_tokens",
        "web_search_requests",
        "estimated_cost_usd",
    ]
}

/// Writes key-costs rows; `name_of` gives a key's name (each name is made safe once per chunk).
pub fn write_key_cost_rows(w: &mut CsvWriter, rows: &[KeyCostRow], name_of: impl Fn(KeyId) -> String) {
    let mut names: HashMap<KeyId, String> = HashMap::new();
    for row in rows {
        let name = names.entry(row.key).or_insert_with(|| text_field(&name_of(row.key)));
        w.int(row.key.0);
        w.prepared(name);
        w.time(row.period_start);
        let t = &row.tokens;
        for n in [t.uncached_input, t.cache_write_5m, t.cache_write_1h, t.cache_read, t.output, t.web_search_requests] {
            w.int(n);
        }
        w.usd(row.cost);
        w.end_row();
    }
}

// ----- nodes -----

pub const NODES_HEADER: [&str; 6] = ["node", "key_id", "key_name", "masked_key", "issued_at", "attributed_cost_usd_estimate"];

/// Where the next nodes chunk starts: the `index`-th holder (in issue order) of `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeCursor {
    pub key: KeyId,
    pub index: usize,
}

impl NodeCursor {
    pub const START: NodeCursor = NodeCursor { key: KeyId(0), index: 0 };

    pub fn encode(&self) -> String {
        format!("n:{}:{}", self.key.0, self.index)
    }

    pub fn parse(s: &str) -> Result<NodeCursor, ExportError> {
        let bad = || ExportError::BadCursor(s.chars().take(40).collect());
        let (key, index) = s.strip_prefix("n:").and_then(|rest| rest.split_once(':')).ok_or_else(bad)?;
        Ok(NodeCursor { key: KeyId(key.parse().map_err(|_| bad())?), index: index.parse().map_err(|_| bad())? })
    }
}

/// Plans one nodes chunk: nodes are exported key by key (ascending id), each key's holders in
/// issue order, so that a chunk splits the cost of one or two keys, not of every key on it.
/// `holders` is (key, number of holders) in ascending key order. Answers the ranges of holder
/// indices to export per key and the cursor after them (None: nothing is left).
pub fn plan_nodes_chunk(holders: &[(KeyId, usize)], cursor: NodeCursor, limit: usize) -> (Vec<(KeyId, Range<usize>)>, Option<NodeCursor>) {
    let mut plan = vec![];
    let mut room = limit;
    for &(key, count) in holders.iter().filter(|(key, _)| *key >= cursor.key) {
        let start = if key == cursor.key { cursor.index.min(count) } else { 0 };
        if start == count {
            continue;
        }
        if room == 0 {
            return (plan, Some(NodeCursor { key, index: start }));
        }
        let end = count.min(start + room);
        plan.push((key, start..end));
        room -= end - start;
        if end < count && room == 0 {
            return (plan, Some(NodeCursor { key, index: end }));
        }
    }
    (plan, None)
}

pub fn write_node_rows(w: &mut CsvWriter, nodes: &[NodeView]) {
    for node in nodes {
        w.text(&node.node);
        w.int(node.key_id.0);
        w.text(&node.key_name);
        w.text(&node.masked_key);
        w.text(&node.issued_at);
        w.usd(MicroUsd(node.cost_micro_usd));
        w.end_row();
    }
}

// ----- audit log -----

pub const AUDIT_HEADER: [&str; 6] = ["seq", "at", "actor", "action", "detail", "outcome"];

/// Audit chunks page backwards by sequence number: the cursor is the last `seq` written.
pub fn encode_audit_cursor(before_seq: i64) -> String {
    format!("a:{before_seq}")
}

pub fn parse_audit_cursor(s: &str) -> Result<i64, ExportError> {
    s.strip_prefix("a:").and_then(|n| n.parse().ok()).ok_or_else(|| ExportError::BadCursor(s.chars().take(40).collect()))
}

pub fn write_audit_rows(w: &mut CsvWriter, entries: &[AuditEntry]) {
    for entry in entries {
        w.int(entry.seq);
        w.text(&entry.at);
        w.text(&entry.actor);
        w.text(&entry.action);
        w.text(&entry.detail);
        w.text(&entry.outcome);
        w.end_row();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_row(fields: &[&str]) -> String {
        let mut w = CsvWriter::default();
        for f in fields {
            w.text(f);
        }
        w.end_row();
        w.finish()
    }

    #[test]
    fn fields_are_quoted_per_rfc_4180() {
        assert_eq!(one_row(&["plain", "a,b", "say \"hi\"", "two\r\nlines", "lf\n"]), "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\r\nlines\",\"lf\n\"\r\n");
        assert_eq!(one_row(&[""]), "\r\n");
        assert_eq!(one_row(&["", ""]), ",\r\n");
    }

    #[test]
    fn formulas_are_neutralised_in_text_only() {
        assert_eq!(one_row(&["=SUM(A1)", "+1", "-cmd.os", "@x", "\tx", "a=b"]), "'=SUM(A1),'+1,'-cmd.os,'@x,'\tx,a=b\r\n");
        // Neutralised and quoted: the quote goes around the prefixed text.
        assert_eq!(one_row(&["=HYPERLINK(\"x\",1)"]), "\"'=HYPERLINK(\"\"x\"\",1)\"\r\n");
        let mut w = CsvWriter::default();
        w.usd(MicroUsd(-1));
        w.int(-5);
        w.end_row();
        assert_eq!(w.finish(), "-0.000001,-5\r\n", "our own numbers stay numbers");
    }

    #[test]
    fn money_is_exact_usd_with_six_decimals() {
        let mut w = CsvWriter::default();
        for m in [1_234_567, 0, 1, -1_234_567, 5_000_000, i64::MIN, i64::MAX] {
            w.usd(MicroUsd(m));
        }
        w.end_row();
        assert_eq!(
            w.finish(),
            "1.234567,0.000000,0.000001,-1.234567,5.000000,-9223372036854.775808,9223372036854.775807\r\n"
        );
    }

    #[test]
    fn times_are_rfc_3339_utc() {
        let mut s = String::new();
        push_rfc3339(&mut s, 1_764_000_000);
        assert_eq!(s, "2025-11-24T16:00:00Z");
        for (secs, expected) in [(0, "1970-01-01T00:00:00Z"), (951_782_400, "2000-02-29T00:00:00Z"), (-1, "1969-12-31T23:59:59Z"), (253_402_300_799, "9999-12-31T23:59:59Z"), (253_402_300_800, "+10000-01-01T00:00:00Z")] {
            let mut s = String::new();
            push_rfc3339(&mut s, secs);
            assert_eq!(s, expected);
        }
    }

    fn sample(key: i64, bucket: i64, output: i64, cost: i64) -> SampleRow {
        [key, bucket, 1, 0, 0, 0, output, 0, cost]
    }

    #[test]
    fn samples_sum_per_key_and_period_and_write_with_a_header() {
        // Two models in key 1's first hour; the database's order is not relied on.
        let samples = [sample(2, 7200, 5, 1_234_567), sample(1, 3600, 20, 2), sample(1, 3600, 1, 3)];
        let chunk = sum_periods(samples.to_vec(), Granularity::Hour, false).unwrap();
        assert_eq!(chunk.next, None);
        let mut w = CsvWriter::default();
        w.header(&key_costs_header(Granularity::Hour));
        write_key_cost_rows(&mut w, &chunk.rows, |k| if k == KeyId(1) { "=evil, \"quoted\"".into() } else { "trial 2".into() });
        assert_eq!(w.rows(), 2);
        assert_eq!(
            w.finish(),
            "key_id,key_name,hour_start,uncached_input_tokens,cache_write_5m_tokens,cache_write_1h_tokens,cache_read_tokens,output_tokens,web_search_requests,estimated_cost_usd\r\n\
             1,\"'=evil, \"\"quoted\"\"\",1970-01-01T01:00:00Z,2,0,0,0,21,0,0.000005\r\n\
             2,trial 2,1970-01-01T02:00:00Z,1,0,0,0,5,0,1.234567\r\n"
        );
        let days = sum_periods(samples.to_vec(), Granularity::Day, false).unwrap();
        assert_eq!(days.rows.iter().map(|r| (r.key, r.period_start, r.cost)).collect::<Vec<_>>(), vec![(KeyId(1), 0, MicroUsd(5)), (KeyId(2), 0, MicroUsd(1_234_567))]);
        for bad in [[-1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, -5, 0, 0]] {
            assert!(matches!(sum_periods(vec![bad], Granularity::Hour, false), Err(ExportError::MalformedRow(_))));
        }
    }

    #[test]
    fn database_text_parses_into_rows() {
        assert_eq!(parse_sample_rows("1,3600,1,0,0,0,20,0,-5;2,7200,9,8,7,6,5,4,3;").unwrap(), vec![[1, 3600, 1, 0, 0, 0, 20, 0, -5], [2, 7200, 9, 8, 7, 6, 5, 4, 3]]);
        assert_eq!(parse_sample_rows("").unwrap(), Vec::<SampleRow>::new());
        assert_eq!(parse_sample_rows("9223372036854775807,-9223372036854775807,0,0,0,0,0,0,0").unwrap()[0][..2], [i64::MAX, -i64::MAX]);
        for bad in ["1,2,3", "1,2,3,4,5,6,7,8,9,10", "x,2,3,4,5,6,7,8,9", "1,,3,4,5,6,7,8,9", "1,2,3,4,5,6,7,8,9223372036854775808", "1,2,3,4,5,6,7,8,1.5", "-,2,3,4,5,6,7,8,9"] {
            assert!(matches!(parse_sample_rows(bad), Err(ExportError::MalformedRow(_))), "{bad}");
        }
    }

    #[test]
    fn a_full_chunk_leaves_its_last_period_whole_for_the_next() {
        let samples = [sample(1, 0, 1, 1), sample(1, 3600, 1, 1), sample(2, 0, 1, 1), sample(2, 3600, 1, 1)];
        let chunk = sum_periods(samples.to_vec(), Granularity::Hour, true).unwrap();
        assert_eq!(chunk.rows.len(), 3);
        assert_eq!(chunk.next, Some(KeyCostCursor { key: KeyId(2), from: 3600 }));
        assert_eq!(chunk.stuck_at(), None);
        let chunk = sum_periods(samples[..2].to_vec(), Granularity::Day, true).unwrap();
        assert_eq!(chunk.stuck_at(), Some(KeyCostCursor { key: KeyId(1), from: 0 }), "one day fills the chunk");
        let c = KeyCostCursor { key: KeyId(7), from: -3600 };
        assert_eq!(KeyCostCursor::parse(&c.encode()), Ok(c));
        for bad in ["", "c:", "c:1", "n:1:2", "c:x:1", "c:1:2:3"] {
            assert!(KeyCostCursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_chunks_go_key_by_key_in_issue_order() {
        let holders = [(KeyId(1), 3), (KeyId(2), 0), (KeyId(3), 2)];
        let (plan, next) = plan_nodes_chunk(&holders, NodeCursor::START, 2);
        assert_eq!(plan, vec![(KeyId(1), 0..2)]);
        assert_eq!(next, Some(NodeCursor { key: KeyId(1), index: 2 }));
        let (plan, next) = plan_nodes_chunk(&holders, next.unwrap(), 2);
        assert_eq!(plan, vec![(KeyId(1), 2..3), (KeyId(3), 0..1)]);
        assert_eq!(next, Some(NodeCursor { key: KeyId(3), index: 1 }));
        let (plan, next) = plan_nodes_chunk(&holders, next.unwrap(), 2);
        assert_eq!(plan, vec![(KeyId(3), 1..2)]);
        assert_eq!(next, None);
        // Exactly full, nothing left: no further chunk.
        assert_eq!(plan_nodes_chunk(&holders, NodeCursor::START, 5).1, None);
        assert_eq!(plan_nodes_chunk(&[], NodeCursor::START, 5), (vec![], None));
        let c = NodeCursor { key: KeyId(3), index: 1 };
        assert_eq!(NodeCursor::parse(&c.encode()), Ok(c));
        assert!(NodeCursor::parse("c:3:1").is_err());
    }

    #[test]
    fn audit_rows_and_cursor() {
        let entry = AuditEntry { seq: 4, at: "2026-11-24T10:05:00Z".into(), actor: "-x.os".into(), action: "key issued".into(), detail: "key k1, again".into(), outcome: "issued".into() };
        let mut w = CsvWriter::default();
        write_audit_rows(&mut w, &[entry]);
        assert_eq!(w.finish(), "4,2026-11-24T10:05:00Z,'-x.os,key issued,\"key k1, again\",issued\r\n");
        assert_eq!(parse_audit_cursor(&encode_audit_cursor(42)), Ok(42));
        assert!(parse_audit_cursor("42").is_err());
    }

    #[test]
    fn queries_parse_with_defaults_and_limits_are_clamped() {
        let q: ExportQuery = serde_json::from_value(serde_json::json!({"what": "key_costs"})).unwrap();
        assert_eq!((q.granularity, q.key, q.is_first_chunk(), q.rows_per_chunk()), (Granularity::Hour, None, true, 100_000));
        let q: ExportQuery = serde_json::from_value(serde_json::json!({"what": "audit", "limit": 10_000_000})).unwrap();
        assert_eq!(q.rows_per_chunk(), 10_000);
        let q: ExportQuery = serde_json::from_value(serde_json::json!({"what": "audit", "key": 1})).unwrap();
        assert_eq!(q.validate(), Err(ExportError::KeyNotApplicable));
        assert!(serde_json::from_value::<ExportQuery>(serde_json::json!({"what": "secrets"})).is_err());
        assert!(serde_json::from_value::<ExportQuery>(serde_json::json!({"what": "key_costs", "granularity": "minute"})).is_err());
    }
}
