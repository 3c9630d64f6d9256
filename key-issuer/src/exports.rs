//! The dashboard's CSV exports (`Export`, docs/http-api.md): one chunk per call, each well within
//! the node's 15 s HTTP limit, the CSV itself written by `shared_types::export`.
//!
//! Key costs are read from the stored usage rows (tokens and cost per key, hour, model, tier and
//! window) in primary-key order, a chunk at a time, as one text value: a year of hourly rows for
//! 100 keys must not become a million JSON objects. Nodes come from the pool in memory, key by
//! key, with the cost the node views attribute. The audit log pages backwards by sequence number.
//! No export holds a secret: key names refuse key-shaped text, audit rows are redacted when
//! written, and keys appear only as their masked hint.

use hyperware_process_lib::http::StatusCode;
use shared_types::cost::CostSource;
use shared_types::export::{
    self, encode_audit_cursor, parse_audit_cursor, plan_nodes_chunk, sum_periods, CsvWriter, ExportChunk, ExportError,
    ExportKind, ExportQuery, Granularity, KeyCostChunk, KeyCostCursor, NodeCursor, SampleRow,
};
use shared_types::http_api;
use shared_types::pool::KeyId;
use shared_types::sql::text;

use crate::db::{Db, DbResult};
use crate::{log, KeyIssuer};

/// An export call refused: the HTTP status and the message.
pub(crate) type Refusal = (StatusCode, String);

/// Bytes to reserve per CSV row (a key-costs row is about 90).
const ROW_BYTES: usize = 96;

fn bad_request(e: ExportError) -> Refusal {
    (StatusCode::BAD_REQUEST, e.to_string())
}

fn storage_failed(e: String) -> Refusal {
    log::warn(&e);
    (StatusCode::SERVICE_UNAVAILABLE, e)
}

impl Db {
    /// Stored usage estimates at or after `from` (by key, then bucket), of one key or all,
    /// before bucket `until` when given, at most `limit` rows, in primary-key order.
    async fn usage_samples(&self, key: Option<KeyId>, from: KeyCostCursor, until: Option<i64>, limit: Option<u64>) -> DbResult<Vec<SampleRow>> {
        // `+`: the primary key (key, bucket, ...) must serve this range and order, not the index
        // by source; ordering by anything past (key, bucket) would sort the rows again.
        let mut filters = vec![format!("+source = {}", text(&CostSource::UsageEstimate.to_string()))];
        if from != KeyCostCursor::START {
            filters.push(format!("(key_id, bucket_start) >= ({}, {})", from.key.0, from.from));
        }
        if let Some(key) = key {
            filters.push(format!("key_id = {}", key.0));
        }
        if let Some(until) = until {
            filters.push(format!("bucket_start < {until}"));
        }
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let separator = char::from(export::DB_ROW_SEPARATOR);
        let rows = self
            .read(
                format!(
                    "SELECT group_concat(r, '{separator}') AS rows FROM (SELECT printf('%d,%d,%d,%d,%d,%d,%d,%d,%d', key_id, bucket_start, uncached_input, cache_write_5m, cache_write_1h, cache_read, output, web_search_requests, micro_usd) AS r FROM usage_samples WHERE {} ORDER BY key_id, bucket_start{limit})",
                    filters.join(" AND ")
                ),
                "reading usage for an export",
            )
            .await?;
        let text = rows.first().and_then(|row| row.get("rows")).and_then(serde_json::Value::as_str).unwrap_or("");
        export::parse_sample_rows(text).map_err(|e| e.to_string())
    }
}

impl KeyIssuer {
    /// One chunk of the export `query` asks for.
    pub(crate) async fn export_chunk(&mut self, query: &ExportQuery) -> Result<ExportChunk, Refusal> {
        query.validate().map_err(bad_request)?;
        if let Some(key) = query.key {
            if self.pool.key(key).is_none() {
                return Err((StatusCode::NOT_FOUND, format!("unknown key {key}")));
            }
        }
        let db = self.costs().await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))?;
        match query.what {
            ExportKind::KeyCosts => self.key_costs_chunk(&db, query).await,
            ExportKind::Nodes => self.nodes_chunk(query),
            ExportKind::Audit => audit_chunk(&db, query).await,
        }
    }

    async fn key_costs_chunk(&self, db: &Db, query: &ExportQuery) -> Result<ExportChunk, Refusal> {
        let cursor = query.cursor.as_deref().map(KeyCostCursor::parse).transpose().map_err(bad_request)?.unwrap_or(KeyCostCursor::START);
        let chunk = read_key_costs(db, query.key, query.granularity, cursor, query.rows_per_chunk()).await?;
        let mut w = CsvWriter::with_capacity(chunk.rows.len() * ROW_BYTES + 256);
        if query.is_first_chunk() {
            w.header(&export::key_costs_header(query.granularity));
        }
        let name_of = |key: KeyId| self.pool.key(key).map_or_else(|| "(unknown key)".to_string(), |r| r.name.clone());
        export::write_key_cost_rows(&mut w, &chunk.rows, name_of);
        Ok(finish(w, chunk.next.map(|c| c.encode())))
    }

    /// Nodes key by key, each key's holders in issue order, with the cost `ListNodes` shows.
    fn nodes_chunk(&mut self, query: &ExportQuery) -> Result<ExportChunk, Refusal> {
        let cursor = query.cursor.as_deref().map(NodeCursor::parse).transpose().map_err(bad_request)?.unwrap_or(NodeCursor::START);
        let keys: Vec<KeyId> = match query.key {
            Some(key) => vec![key],
            None => self.pool.keys().map(|r| r.id).collect(),
        };
        let holders: Vec<(KeyId, usize)> = keys.into_iter().map(|key| (key, self.pool.node_count_of(key))).collect();
        let (plan, next) = plan_nodes_chunk(&holders, cursor, query.rows_per_chunk() as usize);
        let mut w = CsvWriter::with_capacity(query.rows_per_chunk() as usize * ROW_BYTES);
        if query.is_first_chunk() {
            w.header(&export::NODES_HEADER);
        }
        for (key, range) in plan {
            let positions = self.pool.issue_log().of_key(key).get(range).unwrap_or_default();
            let views = http_api::node_views(&self.pool, &self.rt.hourly, &mut self.rt.node_shares, positions);
            export::write_node_rows(&mut w, &views);
        }
        Ok(finish(w, next.map(|c| c.encode())))
    }
}

/// Reads stored usage from `cursor` and sums it per key and period. A period with more stored
/// rows than a chunk (many models in a day) is read alone, so every chunk makes progress.
async fn read_key_costs(db: &Db, key: Option<KeyId>, granularity: Granularity, cursor: KeyCostCursor, limit: u64) -> Result<KeyCostChunk, Refusal> {
    // One row beyond the chunk says whether more follow.
    let mut samples = db.usage_samples(key, cursor, None, Some(limit + 1)).await.map_err(storage_failed)?;
    let more = samples.len() as u64 > limit;
    samples.truncate(limit as usize);
    let chunk = sum_periods(samples, granularity, more).map_err(|e| storage_failed(e.to_string()))?;
    let Some(stuck) = chunk.stuck_at() else {
        return Ok(chunk);
    };
    let end = stuck.from.saturating_add(granularity.secs());
    let whole = db.usage_samples(Some(stuck.key), stuck, Some(end), None).await.map_err(storage_failed)?;
    let mut chunk = sum_periods(whole, granularity, false).map_err(|e| storage_failed(e.to_string()))?;
    chunk.next = Some(KeyCostCursor { key: stuck.key, from: end });
    Ok(chunk)
}

async fn audit_chunk(db: &Db, query: &ExportQuery) -> Result<ExportChunk, Refusal> {
    let before_seq = query.cursor.as_deref().map(parse_audit_cursor).transpose().map_err(bad_request)?;
    let limit = query.rows_per_chunk();
    let entries = db.audit_page(before_seq, limit).await.map_err(storage_failed)?;
    let next = entries.last().filter(|_| entries.len() as u64 == limit).map(|e| encode_audit_cursor(e.seq));
    let mut w = CsvWriter::with_capacity(entries.len() * ROW_BYTES * 2);
    if query.is_first_chunk() {
        w.header(&export::AUDIT_HEADER);
    }
    export::write_audit_rows(&mut w, &entries);
    Ok(finish(w, next))
}

fn finish(w: CsvWriter, next_cursor: Option<String>) -> ExportChunk {
    let rows = w.rows();
    ExportChunk { csv: w.finish(), rows, next_cursor }
}
