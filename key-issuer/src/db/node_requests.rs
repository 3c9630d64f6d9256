//! The `node_requests` table: approval requests and the operator's decisions (issuance policy).
//! One row per node, written when its status changes, never per request: the pending ones are
//! capped (`shared_types::policy::MAX_PENDING`), so remote nodes cannot grow it without bound.

use shared_types::policy::{NodeRequest, RequestStatus};
use shared_types::sql::text;

use super::{int, string, timestamp, Db, DbResult};

/// Created by migration 5 (`MIGRATIONS` in db.rs).
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS node_requests (node TEXT PRIMARY KEY, status TEXT NOT NULL, requested_at INTEGER NOT NULL, decided_at INTEGER)";

impl Db {
    /// Every stored request (at most the pending cap plus the operator's decisions).
    pub async fn load_node_requests(&self) -> DbResult<Vec<NodeRequest>> {
        let rows = self.read("SELECT node, status, requested_at, decided_at FROM node_requests".to_string(), "loading approval requests").await?;
        rows.iter()
            .map(|row| {
                let status = string(row, "status")?;
                Ok(NodeRequest {
                    node: string(row, "node")?,
                    status: RequestStatus::parse(&status).ok_or_else(|| format!("stored approval request has unknown status {status}"))?,
                    requested_at: timestamp(int(row, "requested_at")?)?,
                    decided_at: row.get("decided_at").and_then(serde_json::Value::as_i64).map(timestamp).transpose()?,
                })
            })
            .collect()
    }

    /// Writes one node's request as it now stands.
    pub async fn put_node_request(&self, request: &NodeRequest) -> DbResult<()> {
        let decided_at = request.decided_at.map_or("NULL".to_string(), |t| t.timestamp().to_string());
        self.write(
            format!(
                "INSERT OR REPLACE INTO node_requests (node, status, requested_at, decided_at) VALUES ({}, {}, {}, {decided_at})",
                text(&request.node),
                text(request.status.as_str()),
                request.requested_at.timestamp(),
            ),
            "recording an approval request",
        )
        .await
    }
}
