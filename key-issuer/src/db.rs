//! The issuer's SQLite tables: issuances (node → key), usage samples (tokens and their estimated
//! cost), workspace costs, audit log; `schema_version` says which migrations ran.
//!
//! Everything that grows lives here, written through one row per change; the hyperapp state holds
//! only small things. Text values are written as SQL literals (`shared_types::sql::text`) because
//! the node binds base64-looking string parameters as BLOBs.

use std::collections::HashMap;

use hyperware_process_lib::sqlite::{self, Sqlite};
use hyperware_process_lib::our;
use serde_json::Value;
use shared_types::cost::{CostPoint, CostSource, ModelUsage};

use shared_types::http_api::AuditEntry;
use shared_types::messages::WorkspaceCost;
use shared_types::price::PriceTable;
use shared_types::pool::{Issuance, KeyId};
use shared_types::sql::{opt_text, text};
use shared_types::wit_api::rfc3339;
use shared_types::{MicroUsd, Timestamp};

mod node_requests;

const DB_NAME: &str = "key-issuer";
const DB_TIMEOUT_SECS: u64 = 10;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS issuances (node TEXT PRIMARY KEY, key_id INTEGER NOT NULL, issued_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS issuances_by_time ON issuances (issued_at)",
    "CREATE TABLE IF NOT EXISTS workspace_costs (workspace_id TEXT NOT NULL, day_start INTEGER NOT NULL, micro_usd INTEGER NOT NULL, PRIMARY KEY (workspace_id, day_start))",
    "CREATE TABLE IF NOT EXISTS audit_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL, outcome TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
];

/// Migrations in order; migration `i` brings the schema to version `i + 1`. Each runs in one
/// transaction with the version bump, so a crash leaves the old schema whole.
const MIGRATIONS: &[&[&str]] = &[
    // 1: usage keyed by service tier and context window too (each has its own rate); rows of
    // older releases were all standard tier and the short window.
    &[
        // The table of the first release (absent in a new database).
        "CREATE TABLE IF NOT EXISTS cost_samples (key_id INTEGER NOT NULL, bucket_start INTEGER NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL, micro_usd INTEGER NOT NULL, uncached_input INTEGER NOT NULL, cache_write_5m INTEGER NOT NULL, cache_write_1h INTEGER NOT NULL, cache_read INTEGER NOT NULL, output INTEGER NOT NULL, web_search_requests INTEGER NOT NULL, PRIMARY KEY (key_id, bucket_start, source, model))",
        "CREATE TABLE usage_samples (key_id INTEGER NOT NULL, bucket_start INTEGER NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL, service_tier TEXT NOT NULL, context_window TEXT NOT NULL, micro_usd INTEGER NOT NULL, uncached_input INTEGER NOT NULL, cache_write_5m INTEGER NOT NULL, cache_write_1h INTEGER NOT NULL, cache_read INTEGER NOT NULL, output INTEGER NOT NULL, web_search_requests INTEGER NOT NULL, PRIMARY KEY (key_id, bucket_start, source, model, service_tier, context_window))",
        "INSERT INTO usage_samples SELECT key_id, bucket_start, source, model, '', '', micro_usd, uncached_input, cache_write_5m, cache_write_1h, cache_read, output, web_search_requests FROM cost_samples",
        "DROP TABLE cost_samples",
        "CREATE INDEX usage_samples_by_time ON usage_samples (source, bucket_start)",
    ],
    // 2: authoritative daily cost per key (the analytics endpoint).
    &["CREATE TABLE key_costs (key_id INTEGER NOT NULL, day_start INTEGER NOT NULL, source TEXT NOT NULL, micro_usd INTEGER NOT NULL, PRIMARY KEY (key_id, day_start, source))"],
    // 3: the audit log is pruned by time (retention setting).
    &["CREATE INDEX audit_log_by_time ON audit_log (at)"],
    // 4: alerts, one row per raise, with the time it was cleared (`alerts.rs`).
    &[
        "CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, alert TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, raised_at INTEGER NOT NULL, cleared_at INTEGER)",
        "CREATE INDEX alerts_open ON alerts (cleared_at, alert)",
        "CREATE INDEX alerts_by_kind ON alerts (kind, id)",
    ],
    // 5: approval requests of the issuance policy (`db/node_requests.rs`).
    &[node_requests::CREATE_TABLE],
    // 6: an issuance writes its own audit entry (`Db::insert_issuance_audited`).
    &[ISSUANCE_AUDIT_TRIGGER],
];

/// The audit entry of an issuance, written by SQLite in the statement that records it: one
/// message to the sqlite service and one sync per new node, and the entry is durable with the
/// issuance. The same entry as `audit_row(node, "key issued", "key k<id>", "issued")` for every node
/// name the audit's redaction leaves as it is; the others (named like a key, `sk-ant-`, or longer
/// than the 200 characters it keeps) are left to `insert_issuance_audited`.
const ISSUANCE_AUDIT_TRIGGER: &str = "CREATE TRIGGER issuances_audited AFTER INSERT ON issuances WHEN instr(NEW.node, 'sk-ant-') = 0 AND length(NEW.node) <= 200 BEGIN INSERT INTO audit_log (at, actor, action, detail, outcome) VALUES (NEW.issued_at, NEW.node, 'key issued', 'key k' || NEW.key_id, 'issued'); END";

/// Workspace id stored for the default workspace (the Admin API's null).
const DEFAULT_WORKSPACE: &str = "";

#[derive(Clone, Debug)]
pub struct Db {
    conn: Sqlite,
}

pub type DbResult<T> = Result<T, String>;

fn db_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("database error while {what}: {e}")
}

pub(crate) fn int(row: &HashMap<String, Value>, column: &str) -> DbResult<i64> {
    row.get(column)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("database row lacks integer column {column}"))
}

pub(crate) fn string(row: &HashMap<String, Value>, column: &str) -> DbResult<String> {
    row.get(column)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("database row lacks text column {column}"))
}

/// `bucket:amount,...` as (bucket start, amount) pairs.
fn hourly_series(series: &str) -> DbResult<Vec<(i64, MicroUsd)>> {
    series
        .split(',')
        .map(|pair| {
            let (t, v) = pair.split_once(':').ok_or("database holds a malformed hourly series")?;
            match (t.parse::<i64>(), v.parse::<i64>()) {
                (Ok(t), Ok(v)) => Ok((t, MicroUsd(v))),
                _ => Err("database holds a malformed hourly series".to_string()),
            }
        })
        .collect()
}

pub(crate) fn timestamp(secs: i64) -> DbResult<Timestamp> {
    chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| format!("database holds an impossible time {secs}"))
}

/// The statement that appends one audit entry.
fn audit_insert(at: Timestamp, actor: &str, action: &str, detail: &str, outcome: &str) -> String {
    format!(
        "INSERT INTO audit_log (at, actor, action, detail, outcome) VALUES ({}, {}, {}, {}, {})",
        at.timestamp(),
        text(actor),
        text(action),
        text(detail),
        text(outcome)
    )
}

impl Db {
    pub async fn open() -> DbResult<Db> {
        let conn = sqlite::open(our().package_id(), DB_NAME, Some(DB_TIMEOUT_SECS))
            .await
            .map_err(|e| db_error("opening", e))?;
        let db = Db { conn };
        // Write-ahead logging: one sync per commit instead of a rollback journal's several, with
        // the same durability (synchronous stays FULL).
        db.read("PRAGMA journal_mode=WAL".to_string(), "enabling write-ahead logging").await?;
        for statement in SCHEMA {
            db.write(statement.to_string(), "creating tables").await?;
        }
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> DbResult<()> {
        let rows = self.read("SELECT MAX(version) AS v FROM schema_version".to_string(), "reading the schema version").await?;
        let version = rows.first().and_then(|r| r.get("v")).and_then(Value::as_i64).unwrap_or(0) as usize;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let mut statements: Vec<String> = migration.iter().map(|s| s.to_string()).collect();
            statements.push(format!("INSERT INTO schema_version (version) VALUES ({})", i + 1));
            self.write_all(statements, &format!("migrating the database to version {}", i + 1)).await?;
        }
        Ok(())
    }

    pub(crate) async fn write(&self, statement: String, what: &str) -> DbResult<()> {
        self.conn.write(statement, vec![], None).await.map_err(|e| db_error(what, e))
    }

    pub(crate) async fn read(&self, query: String, what: &str) -> DbResult<Vec<HashMap<String, Value>>> {
        self.conn.read(query, vec![]).await.map_err(|e| db_error(what, e))
    }

    /// Runs `statements` in one transaction.
    async fn write_all(&self, statements: Vec<String>, what: &str) -> DbResult<()> {
        let tx = self.conn.begin_tx().await.map_err(|e| db_error(what, e))?;
        for statement in statements {
            self.conn.write(statement, vec![], Some(tx)).await.map_err(|e| db_error(what, e))?;
        }
        self.conn.commit_tx(tx).await.map_err(|e| db_error(what, e))
    }

    /// Every issuance in issue order. Each page of rowids comes back as one text, a line per row
    /// (`pool::issuance_line`): a row as a JSON object costs the process a map and four strings,
    /// which made this read most of a restart at a million nodes. Pages are rowid ranges, read
    /// in table order without a sort, and keep each answer to a few megabytes.
    pub async fn load_issuances(&self) -> DbResult<Vec<Issuance>> {
        const PAGE: i64 = 200_000;
        let rows = self.read("SELECT COUNT(*) AS n, MAX(rowid) AS last FROM issuances".to_string(), "counting issuances").await?;
        let row = rows.first().ok_or("database answered no row while counting issuances")?;
        let (count, last) = (int(row, "n")?, row.get("last").and_then(Value::as_i64).unwrap_or(0));
        let mut all = Vec::with_capacity(count as usize);
        let mut from = 0i64;
        while from < last {
            let rows = self
                .read(
                    format!(
                        "SELECT group_concat(printf('%d %d %d %s', rowid, key_id, issued_at, node), char(10)) AS page FROM issuances WHERE rowid > {from} AND rowid <= {}",
                        from.saturating_add(PAGE)
                    ),
                    "loading issuances",
                )
                .await?;
            // A range without rows (deleted ones) reads as NULL.
            if let Some(page) = rows.first().and_then(|row| row.get("page")).and_then(Value::as_str) {
                shared_types::pool::read_issuance_lines(page, &mut all).map_err(|e| e.to_string())?;
            }
            from = from.saturating_add(PAGE);
        }
        Ok(all)
    }

    /// Records an issuance and its audit entry atomically, so the key leaves only once both are
    /// durable: one statement whose trigger writes the entry (`ISSUANCE_AUDIT_TRIGGER`), or, for
    /// a node name the audit's redaction changes (the trigger's `WHEN` leaves exactly those out),
    /// one transaction with the redacted entry. Fails, and changes nothing, if the node already
    /// has a row.
    pub async fn insert_issuance_audited(&self, issuance: &Issuance) -> DbResult<()> {
        let insert = format!(
            "INSERT INTO issuances (node, key_id, issued_at) VALUES ({}, {}, {})",
            text(&issuance.node),
            issuance.key.0,
            issuance.issued_at.timestamp()
        );
        let (_, actor, action, detail, outcome) = crate::audit_row(&issuance.node, "key issued", &format!("key {}", issuance.key), "issued");
        if actor == issuance.node {
            return self.write(insert, "recording an issuance").await;
        }
        let entry = audit_insert(issuance.issued_at, &actor, &action, &detail, &outcome);
        self.write_all(vec![insert, entry], "recording an issuance").await
    }

    /// Takes back an issuance whose key retired before it was sent.
    pub async fn delete_issuance(&self, node: &str) -> DbResult<()> {
        self.write(format!("DELETE FROM issuances WHERE node = {}", text(node)), "taking back an issuance").await
    }

    /// Replaces everything held for (key, bucket start, source) with `models` — an upsert, so
    /// re-polling a bucket never double-counts.
    pub async fn upsert_bucket(
        &self,
        key: KeyId,
        bucket_start: Timestamp,
        source: CostSource,
        priced: &[(ModelUsage, MicroUsd)],
    ) -> DbResult<()> {
        let bucket = bucket_start.timestamp();
        let source = text(&source.to_string());
        let mut statements = vec![format!(
            "DELETE FROM usage_samples WHERE key_id = {} AND bucket_start = {bucket} AND source = {source}",
            key.0
        )];
        for (usage, amount) in priced {
            let t = &usage.tokens;
            statements.push(format!(
                "INSERT OR REPLACE INTO usage_samples (key_id, bucket_start, source, model, service_tier, context_window, micro_usd, uncached_input, cache_write_5m, cache_write_1h, cache_read, output, web_search_requests) VALUES ({}, {bucket}, {source}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                key.0,
                text(&usage.model),
                text(usage.service_tier.as_deref().unwrap_or("")),
                text(usage.context_window.as_deref().unwrap_or("")),
                amount.0,
                t.uncached_input,
                t.cache_write_5m,
                t.cache_write_1h,
                t.cache_read,
                t.output,
                t.web_search_requests,
            ));
        }
        self.write_all(statements, "storing cost samples").await
    }

    pub async fn upsert_workspace_costs(&self, costs: &[WorkspaceCost]) -> DbResult<()> {
        if costs.is_empty() {
            return Ok(());
        }
        let statements = costs
            .iter()
            .map(|c| {
                format!(
                    "INSERT OR REPLACE INTO workspace_costs (workspace_id, day_start, micro_usd) VALUES ({}, {}, {})",
                    text(c.workspace_id.as_deref().unwrap_or(DEFAULT_WORKSPACE)),
                    c.day_start.timestamp(),
                    c.amount.0
                )
            })
            .collect();
        self.write_all(statements, "storing workspace costs").await
    }

    /// Upserts authoritative daily costs of keys from `source`.
    pub async fn upsert_key_costs(&self, costs: &[(KeyId, Timestamp, MicroUsd)], source: CostSource) -> DbResult<()> {
        if costs.is_empty() {
            return Ok(());
        }
        let source = text(&source.to_string());
        let statements = costs
            .iter()
            .map(|(key, day, amount)| {
                format!(
                    "INSERT OR REPLACE INTO key_costs (key_id, day_start, source, micro_usd) VALUES ({}, {}, {source}, {})",
                    key.0,
                    day.timestamp(),
                    amount.0
                )
            })
            .collect();
        self.write_all(statements, "storing key costs").await
    }

    /// Authoritative daily cost of one key from `source`, oldest first.
    pub async fn key_daily_costs(&self, key: KeyId, source: CostSource) -> DbResult<Vec<CostPoint>> {
        let rows = self
            .read(
                format!(
                    "SELECT day_start, micro_usd FROM key_costs WHERE key_id = {} AND source = {} ORDER BY day_start",
                    key.0,
                    text(&source.to_string())
                ),
                "reading key costs",
            )
            .await?;
        rows.iter()
            .map(|row| Ok(CostPoint { at: timestamp(int(row, "day_start")?)?, amount: MicroUsd(int(row, "micro_usd")?) }))
            .collect()
    }

    /// Hourly estimated cost of `keys`, oldest first. One read per key, each key's series as one
    /// `bucket:amount,...` string: a year of hours for a hundred keys is a hundred short reads, so
    /// an issuance commit (the node's SQLite answers one request at a time) never waits behind one
    /// long read. `+source` keeps SQLite on the primary key, which gives the key's rows in hour
    /// order, rather than the (source, time) index, which holds every key's.
    pub async fn hourly_costs(&self, keys: &[KeyId]) -> DbResult<Vec<(KeyId, Vec<(i64, MicroUsd)>)>> {
        let source = text(&CostSource::UsageEstimate.to_string());
        let mut all = Vec::with_capacity(keys.len());
        for key in keys {
            let rows = self
                .read(
                    format!(
                        "SELECT group_concat(bucket_start || ':' || v, ',') AS series FROM (SELECT bucket_start, SUM(micro_usd) AS v FROM usage_samples WHERE key_id = {} AND +source = {source} GROUP BY bucket_start ORDER BY bucket_start)",
                        key.0
                    ),
                    "reading hourly costs",
                )
                .await?;
            // A key without usage reads as NULL.
            if let Some(series) = rows.first().and_then(|row| row.get("series")).and_then(Value::as_str) {
                all.push((*key, hourly_series(series)?));
            }
        }
        Ok(all)
    }

    /// Every model id in stored usage.
    pub async fn models_seen(&self) -> DbResult<Vec<String>> {
        let rows = self.read("SELECT DISTINCT model FROM usage_samples".to_string(), "reading models seen").await?;
        rows.iter().map(|row| string(row, "model")).collect()
    }

    /// Prices every stored usage estimate again with `table`, in one transaction: one UPDATE per
    /// (model, tier, window) class, computing Σ tokens × rate in SQLite's 64-bit integers (exact
    /// while a row's Σ stays below 9.2e18, i.e. up to billions of tokens per key per hour) and
    /// rounding half to even to the µUSD as `cost::price_tokens` does.
    pub async fn reprice(&self, table: &PriceTable) -> DbResult<()> {
        let classes = self
            .read(
                format!(
                    "SELECT DISTINCT model, service_tier, context_window FROM usage_samples WHERE source = {}",
                    text(&CostSource::UsageEstimate.to_string())
                ),
                "reading usage classes",
            )
            .await?;
        let mut statements = vec![];
        for row in &classes {
            let (model, tier, window) = (string(row, "model")?, string(row, "service_tier")?, string(row, "context_window")?);
            let price = table.price_for(&model, Some(tier.as_str()).filter(|t| !t.is_empty()), Some(window.as_str()).filter(|w| !w.is_empty()));
            let p = &price.prices;
            let n = format!(
                "(uncached_input * {} + cache_write_5m * {} + cache_write_1h * {} + cache_read * {} + output * {} + web_search_requests * {})",
                p.input.0,
                p.cache_write_5m.0,
                p.cache_write_1h.0,
                p.cache_read.0,
                p.output.0,
                price.web_search_per_thousand.0 as i128 * 1_000
            );
            statements.push(format!(
                "UPDATE usage_samples SET micro_usd = {n} / 1000000 + (CASE WHEN {n} % 1000000 > 500000 OR ({n} % 1000000 = 500000 AND ({n} / 1000000) % 2 = 1) THEN 1 ELSE 0 END) WHERE source = {} AND model = {} AND service_tier = {} AND context_window = {}",
                text(&CostSource::UsageEstimate.to_string()),
                text(&model),
                text(&tier),
                text(&window)
            ));
        }
        if statements.is_empty() {
            return Ok(());
        }
        self.write_all(statements, "pricing stored usage again").await
    }

    /// Token usage of one key per model, all time. `+source` makes SQLite read the key's rows by
    /// the primary key rather than every estimate by the (source, time) index (16 ms, not 490 ms,
    /// for one key of a hundred with a year of hours).
    pub async fn usage_by_model(&self, key: KeyId) -> DbResult<Vec<(String, MicroUsd, i64, i64)>> {
        let rows = self
            .read(
                format!(
                    "SELECT model, SUM(micro_usd) AS v, SUM(uncached_input + cache_write_5m + cache_write_1h + cache_read) AS input, SUM(output) AS output FROM usage_samples WHERE key_id = {} AND +source = {} GROUP BY model ORDER BY v DESC",
                    key.0,
                    text(&CostSource::UsageEstimate.to_string())
                ),
                "reading usage by model",
            )
            .await?;
        rows.iter()
            .map(|row| Ok((string(row, "model")?, MicroUsd(int(row, "v")?), int(row, "input")?, int(row, "output")?)))
            .collect()
    }

    pub async fn append_audit(&self, at: Timestamp, actor: &str, action: &str, detail: &str, outcome: &str) -> DbResult<()> {
        self.write(audit_insert(at, actor, action, detail, outcome), "writing the audit log").await
    }

    /// Deletes audit entries from before `before`; returns how many went.
    pub async fn prune_audit(&self, before: Timestamp) -> DbResult<u64> {
        let rows = self.read(format!("SELECT COUNT(*) AS n FROM audit_log WHERE at < {}", before.timestamp()), "counting old audit entries").await?;
        let n = rows.first().map(|r| int(r, "n")).transpose()?.unwrap_or(0) as u64;
        if n > 0 {
            self.write(format!("DELETE FROM audit_log WHERE at < {}", before.timestamp()), "deleting old audit entries").await?;
        }
        Ok(n)
    }

    pub async fn audit_page(&self, before_seq: Option<i64>, limit: u64) -> DbResult<Vec<AuditEntry>> {
        let filter = before_seq.map(|s| format!(" WHERE seq < {s}")).unwrap_or_default();
        let rows = self
            .read(
                format!("SELECT seq, at, actor, action, detail, outcome FROM audit_log{filter} ORDER BY seq DESC LIMIT {limit}"),
                "reading the audit log",
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    seq: int(row, "seq")?,
                    at: rfc3339(timestamp(int(row, "at")?)?),
                    actor: string(row, "actor")?,
                    action: string(row, "action")?,
                    detail: string(row, "detail")?,
                    outcome: string(row, "outcome")?,
                })
            })
            .collect()
    }

    /// Authoritative daily cost of a workspace (None = default workspace).
    pub async fn workspace_daily_costs(&self, workspace: Option<&str>) -> DbResult<Vec<CostPoint>> {
        let rows = self
            .read(
                format!(
                    "SELECT day_start, micro_usd FROM workspace_costs WHERE workspace_id = {} ORDER BY day_start",
                    opt_text(Some(workspace.unwrap_or(DEFAULT_WORKSPACE)))
                ),
                "reading workspace costs",
            )
            .await?;
        rows.iter()
            .map(|row| Ok(CostPoint { at: timestamp(int(row, "day_start")?)?, amount: MicroUsd(int(row, "micro_usd")?) }))
            .collect()
    }
}
