//! key-issuer: hands out API keys to other nodes, serves the dashboard and its API, answers the
//! WIT API for local processes, and stores what the cost-poller pushes.
//!
//! Handlers are thin: they check who is calling, call `shared_types` logic, and persist.

mod alerts;
mod db;
mod exports;
mod homepage;
mod issuance_policy;
mod log;

use std::collections::HashSet;

use hyperware_process_lib::http::StatusCode;
use hyperware_process_lib::hyperapp::{self, SaveOptions};
use hyperware_process_lib::{our, Address, Request};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use shared_types::attribution::NodeShares;
use shared_types::cost::{self, CostSource, HourlyCosts};
use shared_types::http_api::{
    self, AuditPage, AuditQuery, CostSeries, CostSeriesQuery, JoinEvent, KeyDetail, KeyView, ModelUsageView, NodesPage,
    NodesQuery, PreparedWorkspace, Settings, SettingsView, StatusView,
};
use shared_types::admin_api::{self, ApiKeyObject, Workspace};
use shared_types::checks::{Check, CheckId, CheckKind, CheckOutcome, Checks};
use shared_types::messages::{
    self, AdminKeyInfo, BackfillOrder, ConnectionTest, KeyDailyCost, PollerStatus, PollerWork, RetireOrder,
    RetirementOutcome, RetirementResult, UsagePush, WorkspaceCost,
};
use shared_types::pool::{Issuance, IssueError, KeyId, OrgSync, Resolution, RetirementError};
use shared_types::price::PriceMatch;
use shared_types::ratelimit::{RateDecision, RateLimiter};
use shared_types::wit_api::{self, rfc3339, IssuedKey, NodeKeyStatus, PoolSummary};
use shared_types::{KeyPool, MicroUsd, RetireReason, Timestamp};

use db::Db;

/// Persisted state: small things only (key metadata, settings). Node maps, samples and the audit
/// log live in SQLite; the runtime part is rebuilt at start.
#[derive(Default, Serialize, Deserialize)]
pub struct KeyIssuer {
    pool: KeyPool,
    settings: Settings,
    admin_key: Option<AdminKeyInfo>,
    poller_status: PollerStatus,
    /// Workspaces prepared for one key each (workspace-per-key mode).
    #[serde(default)]
    workspaces: Vec<PreparedWorkspace>,
    /// The price table changed and stored usage is still to be priced with it (retried until it
    /// succeeds, also across restarts).
    #[serde(default)]
    reprice_pending: bool,
    #[serde(skip)]
    rt: Runtime,
}

#[derive(Default)]
struct Runtime {
    db: Option<Db>,
    opening: bool,
    rate: Option<RateLimiter>,
    /// Nodes whose issuance row is being committed; their repeat requests wait for it.
    pending_nodes: HashSet<String>,
    rng: Option<StdRng>,
    poller_reachable: bool,
    /// Estimated cost per hour, per key and in total (rebuilt from SQLite at start).
    hourly: HourlyCosts,
    /// The cost attributed to each node, split per key and kept until the key's hourly costs,
    /// holders or retirement change (`attribution`); refreshed in the background after a push.
    node_shares: NodeShares,
    /// A background refresh of `node_shares` is running.
    refreshing_shares: bool,
    /// `hourly` is rebuilt from SQLite (`costs`), or being rebuilt.
    costs_loaded: bool,
    costs_loading: bool,
    /// The models seen in stored usage are loaded (after the costs): alerts are evaluated only
    /// then, or an open unknown-model alert would clear and rise again at every restart.
    models_seen_loaded: bool,
    /// Every model id seen in usage (read from SQLite after `hourly`), to list those priced by the
    /// fallback rate on the status page.
    models_seen: std::collections::BTreeSet<String>,
    /// Usage pushes being stored, and whether stored usage is being priced again: the two never
    /// overlap, so no row is written with the old table after the re-pricing ran.
    usage_writers: u32,
    repricing: bool,
    /// Audit entries made before the database was open (at start), written once it opens.
    audit_backlog: Vec<AuditRow>,
    audit_pruned_at: Option<Timestamp>,
    /// Checks the dashboard started and follows (`GetCheck`).
    checks: Checks,
    /// Open alerts, and their writes and webhook posts in progress (`alerts.rs`).
    alerts: alerts::Alerts,
    /// Approval requests and counted refusals of the issuance policy.
    policy: issuance_policy::PolicyRuntime,
    /// The state as last saved (`KeyIssuer::save` writes only a change).
    saved: Option<Vec<u8>>,
}

/// Slow work a dashboard call starts and answers before it ends (the node gives an HTTP request
/// 15 s): the UI follows the key's `matching` flag or the check's outcome.
enum Background {
    /// The first look-up of a just-added key in the organization's keys.
    FirstMatch(KeyId),
    TestKey(CheckId, KeyId),
    TestConnection(CheckId),
    /// Splits again the cost of the keys whose node shares are out of date.
    RefreshNodeShares,
    /// Rebuilds the hourly cost index after the node maps (at start).
    LoadCosts,
}

/// One audit entry to write: time, actor, action, detail, outcome.
pub(crate) type AuditRow = (Timestamp, String, String, String, String);

/// An issuance to take back and draw again (see `KeyIssuer::issue_once`).
struct IssueAgain;

/// The issuer's own expiry timer wakes at least this often (keys added or shortened since the
/// last wake are then looked at), and exactly at the next expiry when that is sooner.
const EXPIRY_CHECK_SECS: i64 = 60;
/// How long a dashboard call waits for the cost-poller (the node's HTTP server gives a request
/// 15 s; the poller answers such calls within about 9 s: 3 s for a running poll, 6 s per page).
const INTERACTIVE_POLLER_SECS: u64 = 10;
/// How long background work waits for the cost-poller: it waits its turn behind a running poll
/// and retries the Admin API as a poll does.
const BACKGROUND_POLLER_SECS: u64 = 600;

fn now() -> Timestamp {
    chrono::Utc::now()
}

/// The cost-poller of this package on this node.
fn poller_address() -> Address {
    let us = our();
    Address::new(us.node(), (messages::COST_POLLER, us.package(), us.publisher()))
}

fn from_our_poller(source: &Address) -> bool {
    let us = our();
    messages::is_sibling(
        source.node(),
        &source.process.to_string(),
        us.node(),
        &us.process.to_string(),
        messages::COST_POLLER,
    )
}

const NOT_FROM_POLLER: &str = "refused: only this package's cost-poller may send this message";
const LOCAL_CALLER: &str = "refused: apps on this node use the WIT API (KeyStatus, PoolSummary), which never returns a secret";
const TRY_AGAIN: &str = "try again";
/// How long a repeat request waits for the first issuance of its node to commit.
const REPEAT_WAIT_MS: i64 = 5000;
const STORAGE_UNAVAILABLE: &str = "temporarily unavailable: storage did not answer, try again";

/// Marks an HTTP answer as failed with `status`, passing the result through.
fn http_result<T>(result: Result<T, String>, status: StatusCode) -> Result<T, String> {
    if result.is_err() {
        hyperapp::set_response_status(status);
    }
    result
}

/// How long each phase of the rebuild from SQLite took, and the process's linear memory after it:
/// logged once at start, so a slow restart says where its time went.
struct RestorePhases {
    started: Timestamp,
    last: Timestamp,
    phases: Vec<(&'static str, i64)>,
}

impl RestorePhases {
    fn start() -> RestorePhases {
        let at = now();
        RestorePhases { started: at, last: at, phases: vec![] }
    }

    fn done(&mut self, phase: &'static str) {
        let at = now();
        self.phases.push((phase, (at - self.last).num_milliseconds()));
        self.last = at;
    }
}

impl std::fmt::Display for RestorePhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms:", (self.last - self.started).num_milliseconds())?;
        for (phase, ms) in &self.phases {
            write!(f, " {phase} {ms} ms,")?;
        }
        write!(f, " linear memory {} MB", linear_memory_bytes() / (1 << 20))
    }
}

/// The process's wasm linear memory (it only grows), for the restore log line.
fn linear_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size::<0>() * 65_536;
    #[cfg(not(target_arch = "wasm32"))]
    return 0;
}

/// An audit entry as written: every text passes through one redaction.
pub(crate) fn audit_row(actor: &str, action: &str, detail: &str, outcome: &str) -> AuditRow {
    let redact = shared_types::admin_api::redact;
    (now(), redact(actor), redact(action), redact(detail), redact(outcome))
}

/// Appends audit rows in order, in the background.
fn write_audit(db: Db, rows: Vec<AuditRow>) {
    if rows.is_empty() {
        return;
    }
    hyperapp::spawn(async move {
        for (at, actor, action, detail, outcome) in rows {
            if let Err(e) = db.append_audit(at, &actor, &action, &detail, &outcome).await {
                log::warn(&e);
            }
        }
    });
}

/// Reads a dashboard call's argument, or the 400 answer that refuses it (see `http_api::parse_arg`:
/// the framework would repeat a body it cannot parse, secrets included).
fn read_arg<T: serde::de::DeserializeOwned, R>(arg: serde_json::Value) -> Result<T, Result<R, String>> {
    http_api::parse_arg(arg).map_err(|e| http_result(Err(e.to_string()), StatusCode::BAD_REQUEST))
}

/// Refuses (403, nothing changes) a dashboard call that may come from a page on another site:
/// see `http_api::check_same_origin`.
fn refuse_cross_site<T>() -> Option<Result<T, String>> {
    let header = hyperapp::get_request_header;
    let checked = http_api::check_same_origin(
        header("content-type").as_deref(),
        header("origin").as_deref(),
        &[header("host").as_deref(), header("x-forwarded-host").as_deref()],
        header("sec-fetch-site").as_deref(),
    );
    checked.err().map(|e| http_result(Err(e.to_string()), StatusCode::FORBIDDEN))
}

/// Sends `body` to the cost-poller and waits for its `Result`.
async fn ask_poller<T: serde::de::DeserializeOwned>(body: serde_json::Value, timeout_secs: u64) -> Result<T, String> {
    ask_poller_with_blob(body, None, timeout_secs).await
}

/// [`ask_poller`] carrying a secret in the message's blob: a node prints message bodies at high
/// verbosity, never blobs.
async fn ask_poller_with_blob<T: serde::de::DeserializeOwned>(
    body: serde_json::Value,
    secret: Option<&[u8]>,
    timeout_secs: u64,
) -> Result<T, String> {
    let mut request = Request::to(poller_address())
        .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
        .expects_response(timeout_secs);
    if let Some(bytes) = secret {
        request = request.blob_bytes(bytes.to_vec());
    }
    match hyperapp::send::<Result<T, String>>(request).await {
        Ok(answer) => answer,
        Err(e) => Err(format!("the cost-poller did not answer ({})", send_error_kind(&e))),
    }
}

fn send_error_kind(e: &hyperapp::AppSendError) -> &'static str {
    match e {
        hyperapp::AppSendError::SendError(_) => "timeout or offline",
        hyperapp::AppSendError::BuildError(_) => "bad answer",
    }
}

impl KeyIssuer {
    /// Persists the saved state now if it changed since the last save. Called by every path
    /// that changes a saved field (the framework saves nothing: `save_config`), and by the
    /// expiry timer as a safety net.
    fn save(&mut self) {
        match rmp_serde::to_vec(self) {
            Ok(bytes) if self.rt.saved.as_deref() == Some(bytes.as_slice()) => {}
            Ok(bytes) => {
                hyperware_process_lib::set_state(&bytes);
                self.rt.saved = Some(bytes);
            }
            Err(e) => log::warn(&format!("could not serialise state: {e}")),
        }
    }

    /// Opens SQLite and rebuilds the node maps once; concurrent callers wait for the first.
    async fn db(&mut self) -> Result<Db, String> {
        loop {
            if let Some(db) = &self.rt.db {
                return Ok(db.clone());
            }
            if !self.rt.opening {
                break;
            }
            let _ = hyperapp::sleep(20).await;
        }
        self.rt.opening = true;
        let opened = self.open_and_restore().await;
        self.rt.opening = false;
        match opened {
            Ok(db) => {
                self.rt.db = Some(db.clone());
                write_audit(db.clone(), std::mem::take(&mut self.rt.audit_backlog));
                self.start_in_background(Background::LoadCosts);
                Ok(db)
            }
            Err(e) => {
                log::warn(&e);
                Err(STORAGE_UNAVAILABLE.to_string())
            }
        }
    }

    async fn open_and_restore(&mut self) -> Result<Db, String> {
        let mut phases = RestorePhases::start();
        let db = Db::open().await?;
        phases.done("open");
        let issuances = db.load_issuances().await?;
        let count = issuances.len();
        phases.done("read issuances");
        self.pool.restore_issuances(issuances).map_err(|e| format!("stored issuances are inconsistent: {e}"))?;
        phases.done("index issuances");
        // The issuance policy decides p2p requests: its approval requests come before them.
        self.rt.policy.requests = shared_types::policy::Requests::restore(db.load_node_requests().await?);
        phases.done("approval requests");
        log::info(&format!("restored {count} issued nodes and {} keys ({phases}); answering p2p requests", self.pool.keys().count()));
        Ok(db)
    }

    /// The hourly cost index, rebuilt from SQLite after the node maps so that p2p requests do not
    /// wait for a year of cost (until it is loaded, each key's spend is the one saved with the
    /// state). Every user of the index waits for it here; concurrent callers wait for one load.
    async fn costs(&mut self) -> Result<Db, String> {
        let db = self.db().await?;
        loop {
            if self.rt.costs_loaded {
                return Ok(db);
            }
            if !self.rt.costs_loading {
                break;
            }
            let _ = hyperapp::sleep(20).await;
        }
        self.rt.costs_loading = true;
        let loaded = self.load_costs(&db).await;
        self.rt.costs_loading = false;
        match loaded {
            Ok(()) => {
                self.rt.costs_loaded = true;
                self.sweep(now());
                self.refresh_node_shares_in_background();
                self.load_models_seen(&db).await;
                Ok(db)
            }
            Err(e) => {
                log::warn(&e);
                Err(STORAGE_UNAVAILABLE.to_string())
            }
        }
    }

    async fn load_costs(&mut self, db: &Db) -> Result<(), String> {
        let mut phases = RestorePhases::start();
        let pool_keys: Vec<KeyId> = self.pool.keys().map(|r| r.id).collect();
        let series = db.hourly_costs(&pool_keys).await?;
        phases.done("read hourly costs");
        let keys: Vec<KeyId> = series.iter().map(|(key, _)| *key).collect();
        let hourly = HourlyCosts::from_series(series);
        for key in &keys {
            self.pool.set_spent(*key, hourly.spent(*key));
        }
        self.rt.hourly = hourly;
        self.save();
        phases.done("index hourly costs");
        log::info(&format!("restored the hourly costs of {} keys ({phases})", keys.len()));
        Ok(())
    }

    /// Every model id in stored usage, for the status page's list of models priced by the
    /// fallback rate; nothing waits for it. Added to the ones pushes have already noted.
    async fn load_models_seen(&mut self, db: &Db) {
        match db.models_seen().await {
            Ok(models) => self.rt.models_seen.extend(models),
            Err(e) => log::warn(&e),
        }
        self.rt.models_seen_loaded = true;
        self.evaluate_alerts(now());
    }

    fn rate_limiter(&mut self) -> &mut RateLimiter {
        let per_minute = self.settings.p2p_requests_per_minute;
        let limiter = self.rt.rate.get_or_insert_with(|| RateLimiter::new(per_minute));
        if limiter.per_minute() != per_minute {
            *limiter = RateLimiter::new(per_minute);
        }
        limiter
    }

    /// Appends to the audit log; every text passes through one redaction (anything key-shaped is
    /// masked), whatever its source.
    fn audit(&mut self, actor: &str, action: &str, detail: &str, outcome: &str) {
        let row = audit_row(actor, action, detail, outcome);
        match self.rt.db.clone() {
            Some(db) => write_audit(db, vec![row]),
            None => self.rt.audit_backlog.push(row),
        }
    }

    /// Retires every key that is due, then evaluates the alerts.
    fn sweep(&mut self, at: Timestamp) {
        if !self.retire_due(at) {
            self.evaluate_alerts(at);
        }
    }

    /// Retires every key that is due, on our own clock (the poller sets their Admin API status),
    /// and evaluates the alerts if any was: an issuance's path, which evaluates them only when
    /// the pool changed (they are most of its own work otherwise).
    fn retire_due(&mut self, at: Timestamp) -> bool {
        let retired = self.pool.sweep(at);
        if retired.is_empty() {
            return false;
        }
        for (key, reason) in &retired {
            self.audit("key-issuer", "key retired", &format!("key {key}"), &reason.to_string());
        }
        self.save();
        self.wake_poller_for_work();
        self.evaluate_alerts(at);
        true
    }

    /// Asks the poller to carry out pending retirements (and fetch the usage of keys matched
    /// late) now rather than at its next tick.
    fn wake_poller_for_work(&self) {
        let work = self.pending_work();
        if work.retire.is_empty() && work.backfill.is_empty() {
            return;
        }
        hyperapp::spawn(async {
            let _ = ask_poller::<()>(serde_json::json!({"DoPendingWork": null}), 5).await;
        });
    }

    /// Audits and persists what a read of the organization's keys changed.
    fn note_org_sync(&mut self, sync: &OrgSync, actor: &str) {
        for (key, status) in &sync.retired {
            self.audit(actor, "key retired", &format!("key {key}: the organization holds it as {status}"), "retired: organization");
        }
        for key in &sync.matched {
            let id = match self.pool.key(*key).map(|r| &r.resolution) {
                Some(Resolution::Resolved { api_key_id, .. }) => api_key_id.clone(),
                _ => continue,
            };
            self.audit(actor, "key matched", &format!("key {key} is {id}"), "matched");
        }
        for key in &sync.shortened {
            self.audit(actor, "key expiry shortened", &format!("key {key}"), "the organization's own expiry is earlier");
        }
        for (key, status) in &sync.confirmed {
            self.audit(actor, "Admin API status set", &format!("key {key}"), status);
        }
        for key in &sync.reactivated {
            self.audit(actor, "retired key active again", &format!("key {key}: the organization holds it as active"), "its status will be set again");
        }
        self.save();
        self.evaluate_alerts(now());
    }

    /// The issuer's own expiry timer: retires keys when they expire, without waiting for a
    /// request or a push from the poller.
    async fn run_expiry_timer(&mut self) {
        loop {
            let at = now();
            let until_next = self.pool.next_expiry().map_or(EXPIRY_CHECK_SECS, |t| (t - at).num_seconds() + 1);
            let wait_secs = until_next.clamp(1, EXPIRY_CHECK_SECS) as u64;
            let _ = hyperapp::sleep(wait_secs * 1000).await;
            // The safety net of explicit saves: a change a path forgot to save is saved here.
            self.save();
            self.sweep(now());
            self.reprice_if_pending().await;
            self.prune_audit_hourly().await;
        }
    }

    fn key_view(&self, key: KeyId, at: Timestamp) -> Option<KeyView> {
        let record = self.pool.key(key)?;
        let eligible = self.pool.eligible_keys(at).contains(&key);
        Some(KeyView::of(record, self.pool.node_count_of(key), eligible, at))
    }

    /// Retirements to carry out and late-matched keys whose usage must be fetched.
    fn pending_work(&self) -> PollerWork {
        let mut work = PollerWork::default();
        for key in self.pool.pending_remote_retirements() {
            if let Some(Resolution::Resolved { api_key_id, workspace_id }) = self.pool.key(key).map(|r| &r.resolution) {
                // Only a workspace this app prepared is archived: archiving stops every key in it.
                let archive_workspace = workspace_id
                    .as_ref()
                    .filter(|ws| self.settings.archive_workspace_on_retire && self.workspaces.iter().any(|p| &p.id == *ws && p.archived_at.is_none()))
                    .cloned();
                work.retire.push(RetireOrder { key, api_key_id: api_key_id.clone(), status: self.settings.retire_to, archive_workspace });
            }
        }
        work.backfill = self
            .pool
            .pending_backfills()
            .into_iter()
            .map(|(key, api_key_id, from)| BackfillOrder { key, api_key_id, from })
            .collect();
        work
    }

    /// Remembers whether the poller answered, for the status page.
    fn note_poller<T>(&mut self, answer: Result<T, String>) -> Result<T, String> {
        self.rt.poller_reachable = answer.is_ok() || answer.as_ref().is_err_and(|e| !e.starts_with("the cost-poller did not answer"));
        answer
    }

    /// An operator's retire or remove: apply `change`, persist, audit, and have the poller set the
    /// Admin API status.
    fn end_key(
        &mut self,
        key: KeyId,
        action: &str,
        outcome: &str,
        change: impl FnOnce(&mut KeyPool, Timestamp) -> Result<(), shared_types::pool::PoolError>,
    ) -> Result<KeyView, String> {
        let at = now();
        if let Err(e) = change(&mut self.pool, at) {
            let status = if self.pool.key(key).is_none() { StatusCode::NOT_FOUND } else { StatusCode::CONFLICT };
            return http_result(Err(e.to_string()), status);
        }
        self.save();
        self.audit("operator", action, &format!("key {key}"), outcome);
        self.evaluate_alerts(at);
        self.wake_poller_for_work();
        Ok(self.key_view(key, at).expect("the key exists"))
    }

    fn settings_view(&self) -> SettingsView {
        let s = &self.settings;
        SettingsView {
            admin_key_set: self.admin_key.is_some(),
            admin_key_prefix: self.admin_key.as_ref().map(|k| k.prefix.clone()),
            admin_api_base_url: s.poller.admin_api_base_url.clone(),
            poll_interval_secs: s.poller.poll_interval_secs,
            default_lifetime_days: s.default_lifetime_secs / 86_400,
            default_budget_micro_usd: s.default_budget.0,
            default_node_cap: s.default_node_cap,
            retire_to: s.retire_to,
            price_table: s.price_table.clone(),
            p2p_requests_per_minute: s.p2p_requests_per_minute,
            issue_unmatched_keys: s.issue_unmatched_keys,
            workspace_per_key: s.workspace_per_key,
            archive_workspace_on_retire: s.archive_workspace_on_retire,
            audit_retention_days: s.audit_retention_days,
            issuance: s.issuance.clone(),
            alerts: shared_types::alerts::AlertSettingsView::of(&s.alerts),
        }
    }

    /// Stores one usage push: prices each bucket with the current table and upserts it.
    async fn store_usage(&mut self, push: UsagePush) -> Result<u64, String> {
        while self.rt.repricing {
            let _ = hyperapp::sleep(20).await;
        }
        self.rt.usage_writers += 1;
        let stored = self.store_usage_now(push).await;
        self.rt.usage_writers -= 1;
        stored
    }

    async fn store_usage_now(&mut self, push: UsagePush) -> Result<u64, String> {
        let db = self.costs().await?;
        let stored = self.store_buckets(&db, push).await;
        // Also after a failed upsert: the buckets stored before it changed spend.
        self.save();
        self.sweep(now());
        self.refresh_node_shares_in_background();
        stored
    }

    /// Prices and upserts each bucket in turn, updating the hourly index and spend after each
    /// commit; stops at the first failure.
    async fn store_buckets(&mut self, db: &Db, push: UsagePush) -> Result<u64, String> {
        let mut stored = 0;
        for bucket in push.buckets {
            let Some(key) = self.pool.key_by_api_id(&bucket.api_key_id) else { continue };
            let mut priced = Vec::with_capacity(bucket.models.len());
            for usage in bucket.models {
                let (amount, _) = cost::price_usage(&usage, &self.settings.price_table);
                if !self.rt.models_seen.contains(&usage.model) {
                    self.rt.models_seen.insert(usage.model.clone());
                }
                priced.push((usage, amount));
            }
            let amount: MicroUsd = priced.iter().map(|(_, m)| *m).sum();
            db.upsert_bucket(key, bucket.bucket_start, CostSource::UsageEstimate, &priced).await?;
            self.rt.hourly.set(key, bucket.bucket_start.timestamp(), amount);
            let spent = self.rt.hourly.spent(key);
            self.pool.set_spent(key, spent);
            stored += 1;
        }
        Ok(stored)
    }

    /// The one issuance path of both p2p requests (SPEC §4): the calling node gets one key, ever.
    async fn issue_to_caller(&mut self) -> Result<IssuedKey, String> {
        let node = hyperapp::source().node().to_string();
        // Local messages reach remote handlers too: an app on this node never gets a secret.
        if node == our().node() {
            return Err(LOCAL_CALLER.to_string());
        }
        let at = now();
        // One audit row when a node starts being limited and one count when it is let through
        // again: a flood of refused requests cannot grow the audit log.
        match self.rate_limiter().decide(&node, at) {
            RateDecision::Refused { first } => {
                if first {
                    self.audit(&node, "key request", "", "refused: rate limited (further refusals are counted)");
                }
                return Err("rate limited".to_string());
            }
            RateDecision::Allowed { refused_before } if refused_before > 0 => {
                self.audit(&node, "key request", "", &format!("{refused_before} requests were refused as rate limited"));
            }
            RateDecision::Allowed { .. } => {}
        }
        self.db().await?;
        // Who may get a key (operator's policy), before any issuance.
        self.apply_issuance_policy(&node).await?;
        // A repeat request while the first is being committed waits for that commit; it never
        // carries a key whose issuance might still be undone.
        // The wait is measured on the clock, not in sleeps: on a busy node each timer round trip
        // takes longer than asked.
        let started = now();
        while self.rt.pending_nodes.contains(&node) {
            if now() - started >= chrono::TimeDelta::milliseconds(REPEAT_WAIT_MS) {
                return Err(TRY_AGAIN.to_string());
            }
            let _ = hyperapp::sleep(20).await;
        }
        // A key retired while its issuance was being committed is taken back and another drawn.
        for _ in 0..3 {
            match self.issue_once(&node).await {
                Err(IssueAgain) => continue,
                Ok(answer) => return answer,
            }
        }
        Err(STORAGE_UNAVAILABLE.to_string())
    }

    /// One issuance attempt: `Err(IssueAgain)` when the drawn key was retired while its issuance
    /// was being committed (its row is taken back: the node was never sent it).
    async fn issue_once(&mut self, node: &str) -> Result<Result<IssuedKey, String>, IssueAgain> {
        let at = now();
        self.retire_due(at);
        let rng = self.rt.rng.get_or_insert_with(StdRng::from_entropy);
        Ok(match self.pool.issue_to(node, at, rng) {
            Ok(issued) => {
                if issued.first_time {
                    self.rt.pending_nodes.insert(node.to_string());
                    let issuance = Issuance { node: node.to_string(), key: issued.key, issued_at: issued.issued_at };
                    let committed = match &self.rt.db {
                        Some(db) => db.clone().insert_issuance_audited(&issuance).await,
                        None => Err(STORAGE_UNAVAILABLE.to_string()),
                    };
                    if let Err(e) = committed {
                        self.rt.pending_nodes.remove(node);
                        self.pool.undo_issue(node);
                        // The key's place is free again: an alert raised meanwhile may no longer hold.
                        self.evaluate_alerts(now());
                        log::warn(&e);
                        self.audit(node, "key request", "", "refused: storage error");
                        return Ok(Err(STORAGE_UNAVAILABLE.to_string()));
                    }
                    if let Some(reason) = self.pool.key(issued.key).and_then(|r| r.retirement.as_ref().map(|x| x.reason).or(r.due_retirement(now()))) {
                        let taken_back = match &self.rt.db {
                            Some(db) => db.clone().delete_issuance(node).await,
                            None => Err(STORAGE_UNAVAILABLE.to_string()),
                        };
                        self.rt.pending_nodes.remove(node);
                        if taken_back.is_ok() {
                            self.pool.undo_issue(node);
                            self.audit(node, "key issued", &format!("key {}", issued.key), &format!("taken back before it was sent: the key retired ({reason}); another is drawn"));
                            return Err(IssueAgain);
                        }
                        // The row stays: the node holds the key, retired as it is.
                        self.audit(node, "key issued", &format!("key {}", issued.key), &format!("retired while being issued: {reason}"));
                        return Ok(Err(IssueError::KeyRetired(reason).to_string()));
                    }
                    self.rt.pending_nodes.remove(node);
                    // The key's last place under its node cap: the pool can issue fewer keys.
                    if !self.pool.is_eligible_key(issued.key, at) {
                        self.evaluate_alerts(at);
                    }
                } else {
                    self.audit(node, "key request", &format!("key {}", issued.key), "same key sent again");
                }
                Ok(IssuedKey {
                    api_key: issued.secret.expose().to_string(),
                    issued_at: rfc3339(issued.issued_at),
                    expires_at: rfc3339(issued.expires_at),
                })
            }
            Err(e) => {
                if !matches!(e, IssueError::InvalidNode(_)) {
                    self.audit(node, "key request", "", &format!("refused: {e}"));
                }
                Err(e.to_string())
            }
        })
    }

    /// Prices every stored usage row again with the current table (the raw token counts are
    /// kept), then rebuilds spend and the hourly series from SQLite, so that budgets follow the
    /// operator's table.
    async fn reprice_stored_usage(&mut self) -> Result<(), String> {
        while self.rt.repricing || self.rt.usage_writers > 0 {
            let _ = hyperapp::sleep(20).await;
        }
        self.rt.repricing = true;
        let table = self.settings.price_table.clone();
        let done = self.reprice_now().await;
        self.rt.repricing = false;
        // A table changed again meanwhile is still owed.
        if done.is_ok() && self.settings.price_table == table {
            self.reprice_pending = false;
            self.save();
        }
        done
    }

    /// Deletes audit entries older than the retention setting, at most once an hour.
    async fn prune_audit_hourly(&mut self) {
        let at = now();
        if self.rt.audit_pruned_at.is_some_and(|t| at - t < chrono::TimeDelta::hours(1)) {
            return;
        }
        self.rt.audit_pruned_at = Some(at);
        let Some(db) = self.rt.db.clone() else { return };
        let before = at - chrono::TimeDelta::days(i64::from(self.settings.audit_retention_days));
        match db.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => log::info(&format!("deleted {n} audit entries older than {} days", self.settings.audit_retention_days)),
            Err(e) => log::warn(&e),
        }
    }

    /// Runs a re-pricing still owed from a price table change (at start and on the expiry timer).
    async fn reprice_if_pending(&mut self) {
        if self.reprice_pending {
            if let Err(e) = self.reprice_stored_usage().await {
                log::warn(&format!("stored usage could not be priced with the current table yet: {e}"));
            }
        }
    }

    async fn reprice_now(&mut self) -> Result<(), String> {
        let db = self.costs().await?;
        db.reprice(&self.settings.price_table).await?;
        let pool_keys: Vec<KeyId> = self.pool.keys().map(|r| r.id).collect();
        let hourly = HourlyCosts::from_series(db.hourly_costs(&pool_keys).await?);
        for key in pool_keys {
            self.pool.set_spent(key, hourly.spent(key));
        }
        self.rt.hourly = hourly;
        self.save();
        self.sweep(now());
        self.refresh_node_shares_in_background();
        Ok(())
    }

    /// Models seen in usage that no price entry matches: priced at the highest known rates until
    /// the operator prices them.
    fn unknown_models(&self) -> Vec<http_api::UnknownModelView> {
        let table = &self.settings.price_table;
        self.rt
            .models_seen
            .iter()
            .filter(|m| table.match_model(m).1 == PriceMatch::Fallback)
            .map(|m| http_api::UnknownModelView::of(m, table))
            .collect()
    }

    /// Asks the poller for the organization's keys (every page): `patient` for background work
    /// (waits for a running poll, retries), else bounded for a dashboard call.
    async fn org_keys(&mut self, patient: bool) -> Result<Vec<ApiKeyObject>, String> {
        let timeout_secs = if patient { BACKGROUND_POLLER_SECS } else { INTERACTIVE_POLLER_SECS };
        let answer = ask_poller::<Vec<ApiKeyObject>>(serde_json::json!({"ListOrgKeys": patient}), timeout_secs).await;
        self.note_poller(answer)
    }

    /// Starts `job` and returns at once; the job runs on the process's own executor.
    fn start_in_background(&mut self, job: Background) {
        let this: *mut KeyIssuer = self;
        // Same aliasing discipline as the framework's own async handlers: one thread, one task at a time.
        hyperapp::spawn(async move {
            let issuer = unsafe { &mut *this };
            match job {
                Background::FirstMatch(key) => issuer.first_match(key).await,
                Background::TestKey(check, key) => {
                    let outcome = issuer.check_key(key).await;
                    issuer.rt.checks.finish(check, outcome, now());
                }
                Background::TestConnection(check) => {
                    let answer = ask_poller::<ConnectionTest>(serde_json::json!({"TestConnection": null}), BACKGROUND_POLLER_SECS).await;
                    let outcome = match issuer.note_poller(answer) {
                        Ok(test) => CheckOutcome::Connection(test),
                        Err(e) => CheckOutcome::Failed(e),
                    };
                    issuer.rt.checks.finish(check, outcome, now());
                }
                Background::RefreshNodeShares => issuer.refresh_node_shares().await,
                Background::LoadCosts => {
                    let _ = issuer.costs().await;
                }
            }
            issuer.save();
        });
    }

    /// Brings the node shares of every key up to date (after a push, a re-pricing or the rebuild at
    /// start), so that the next page of nodes reads them instead of splitting a year of cost. One
    /// key at a time, yielding between keys so that p2p requests are answered meanwhile; only the
    /// keys stale when it starts, so a burst of issuances does not keep it running (a page
    /// refreshes what it shows itself).
    fn refresh_node_shares_in_background(&mut self) {
        if !self.rt.refreshing_shares {
            self.rt.refreshing_shares = true;
            self.start_in_background(Background::RefreshNodeShares);
        }
    }

    async fn refresh_node_shares(&mut self) {
        let stale = self.rt.node_shares.stale_keys(&self.pool, &self.rt.hourly);
        for key in stale {
            self.rt.node_shares.refresh(&self.pool, &self.rt.hourly, key);
            let _ = hyperapp::sleep(0).await;
        }
        self.rt.node_shares.retain_keys_of(&self.pool);
        self.rt.refreshing_shares = false;
    }

    /// Looks a just-added key up in the organization's keys: a key the organization stopped is
    /// retired (reason `organization`) before it can be issued; when the keys cannot be read the
    /// key is left unmatched and the next poll matches it.
    async fn first_match(&mut self, key: KeyId) {
        match self.org_keys(true).await {
            Ok(keys) => {
                let sync = self.pool.apply_org_keys(&keys, now());
                self.note_org_sync(&sync, "key-issuer");
                if !sync.matched.contains(&key) && !sync.retired.iter().any(|(k, _)| *k == key) {
                    self.audit("key-issuer", "key matching", &format!("key {key}"), "not found in the organization's keys: left unmatched");
                }
            }
            Err(e) => {
                self.pool.end_first_match(key);
                self.audit("key-issuer", "key matching", &format!("key {key}"), &format!("the organization's keys could not be read ({e}): the next poll matches it"));
                self.save();
            }
        }
        self.wake_poller_for_work();
    }

    /// What "test key" finds: the key's status in the organization, applied to the pool.
    async fn check_key(&mut self, key: KeyId) -> CheckOutcome {
        let Some(hint) = self.pool.key(key).map(|r| r.hint.clone()) else {
            return CheckOutcome::Failed(format!("unknown key {key}"));
        };
        let keys = match self.org_keys(true).await {
            Ok(keys) => keys,
            Err(e) => return CheckOutcome::Failed(e),
        };
        let check = admin_api::check_key(&hint, &keys);
        let sync = self.pool.apply_org_keys(&keys, now());
        self.note_org_sync(&sync, "operator");
        self.wake_poller_for_work();
        self.audit("operator", "test key", &format!("key {key}"), &check.message);
        CheckOutcome::Key(check)
    }

    /// Starts a check of `kind` (or answers the one already running) and answers at once.
    fn start_check(&mut self, kind: CheckKind, job: impl FnOnce(CheckId) -> Background) -> Check {
        let (id, started) = self.rt.checks.start(kind, now());
        if started {
            self.start_in_background(job(id));
        }
        self.rt.checks.get(id).cloned().expect("just started")
    }
}

#[hyperapp_macro::hyperapp(
    name = "Anthropic API Key Manager",
    ui = Some(HttpBindingConfig::default()),
    endpoints = vec![Binding::Http { path: "/api", config: HttpBindingConfig::default() }],
    // The framework's `OnDiff` serialises the whole state at every message to compare it (about
    // 60% of a p2p issuance's time in the component, measured with perf); the issuer saves
    // itself instead, where it changes what is saved (`KeyIssuer::save`).
    save_config = SaveOptions::Never,
    wit_world = "anthropic-api-key-manager-keymanager-dot-os-v0"
)]
impl KeyIssuer {
    #[init]
    async fn start(&mut self) {
        log::init_logging();
        self.rt.rng = Some(StdRng::from_entropy());
        self.pool.upgrade_saved_state();
        if self.settings.upgrade_saved_state() {
            log::info("price table: added the default prices this release knows for models it lacked");
            self.reprice_pending = true;
        }
        self.pool.set_issue_unmatched(self.settings.issue_unmatched_keys);
        self.save();
        homepage::add_tile();
        // Keys added just before a stop were still being looked up: look them up again (a key
        // is not issued while its first look-up is pending).
        let pending: Vec<KeyId> = self.pool.keys().filter(|r| r.first_match_pending).map(|r| r.id).collect();
        for key in pending {
            self.start_in_background(Background::FirstMatch(key));
        }
        match self.db().await {
            Ok(_) => {
                log::info("ready");
                self.load_alerts().await;
            }
            Err(e) => log::warn(&format!("starting without storage: {e}")),
        }
        self.reprice_if_pending().await;
        // Tell the poller its settings (it may start after us: retry a few times).
        let config = self.settings.poller.clone();
        for attempt in 0..5u64 {
            if ask_poller::<()>(serde_json::json!({"Configure": config}), 5).await.is_ok() {
                self.rt.poller_reachable = true;
                break;
            }
            let _ = hyperapp::sleep(1000 * (attempt + 1)).await;
        }
        self.run_expiry_timer().await;
    }

    // ----- peer-to-peer: the one handler other nodes may call -----

    /// `{"RequestApiKey": null}` from another node → `{"Ok": "<key>"}` or `{"Err": "<stable message>"}`:
    /// exactly what the platform's own client (hyperdrive's spider package) parses.
    #[remote]
    async fn request_api_key(&mut self) -> Result<String, String> {
        self.issue_to_caller().await.map(|issued| issued.api_key)
    }

    /// `{"RequestKeyLease": null}` → `{"Ok": {"api_key", "issued_at", "expires_at"}}`: the same
    /// issuance, with the lease's times.
    #[remote]
    async fn request_key_lease(&mut self) -> Result<IssuedKey, String> {
        self.issue_to_caller().await
    }

    // ----- WIT API for local processes (api/key-issuer.wit) -----

    /// `{"KeyStatus": "alice.os"}` → the node's key status (masked) or `null`.
    #[local]
    fn key_status(&self, node: String) -> Option<NodeKeyStatus> {
        wit_api::node_key_status(&self.pool, &node, now())
    }

    /// `{"PoolSummary": null}`
    #[local]
    fn pool_summary(&self) -> PoolSummary {
        wit_api::pool_summary(&self.pool, now())
    }

    // ----- pushed by this package's cost-poller only -----

    #[local]
    async fn push_usage(&mut self, push: UsagePush) -> Result<u64, String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        self.store_usage(push).await
    }

    #[local]
    async fn push_workspace_costs(&mut self, costs: Vec<WorkspaceCost>) -> Result<u64, String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        let db = self.db().await?;
        db.upsert_workspace_costs(&costs).await?;
        Ok(costs.len() as u64)
    }

    /// The organization's keys, read in full by the poller at every tick: the truth about each
    /// key's life. Answers the work that follows from it (retirements, backfills).
    #[local]
    fn push_org_keys(&mut self, keys: Vec<ApiKeyObject>) -> Result<PollerWork, String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        let sync = self.pool.apply_org_keys(&keys, now());
        self.note_org_sync(&sync, "cost-poller");
        self.sweep(now());
        Ok(self.pending_work())
    }

    /// The poller's retirement timer (and the start of each tick) asks what is due.
    #[local]
    fn fetch_work(&mut self) -> Result<PollerWork, String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        self.sweep(now());
        Ok(self.pending_work())
    }

    /// Per-key daily cost from the analytics endpoint (authoritative, a third source).
    #[local]
    async fn push_key_costs(&mut self, costs: Vec<KeyDailyCost>) -> Result<u64, String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        let db = self.db().await?;
        let rows: Vec<_> = costs
            .iter()
            .filter_map(|c| self.pool.key_by_api_id(&c.api_key_id).map(|key| (key, c.day_start, c.amount)))
            .collect();
        db.upsert_key_costs(&rows, CostSource::Analytics).await?;
        Ok(rows.len() as u64)
    }

    /// A late-matched key's usage since it was added has been pushed.
    #[local]
    fn push_backfill_done(&mut self, key: KeyId) -> Result<(), String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        self.pool.usage_backfilled(key);
        self.save();
        self.audit("cost-poller", "usage fetched", &format!("key {key}: usage since it was added"), "done");
        Ok(())
    }

    #[local]
    fn push_retirement_results(&mut self, results: Vec<RetirementResult>) -> Result<(), String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        for result in results {
            match result.outcome {
                RetirementOutcome::Confirmed { status } => {
                    self.pool.confirm_remote_retirement(result.key, status.clone());
                    self.audit("cost-poller", "Admin API status set", &format!("key {}", result.key), &status);
                    if let Some(ws) = &result.workspace_archived {
                        if let Some(prepared) = self.workspaces.iter_mut().find(|p| &p.id == ws) {
                            prepared.archived_at = Some(now());
                        }
                        self.audit("cost-poller", "workspace archived", &format!("{ws} of key {}", result.key), "archived");
                    }
                }
                RetirementOutcome::Failed { error, needs_operator } => {
                    // Audit a failure once, not at every retry.
                    let previous = self.pool.key(result.key).and_then(|r| r.retirement.as_ref()).and_then(|r| r.last_error.clone());
                    if previous.as_ref().map(|e| &e.message) != Some(&error) {
                        self.audit("cost-poller", "Admin API status change failed", &format!("key {}", result.key), &error);
                    }
                    self.pool.note_retirement_error(result.key, RetirementError { message: error, needs_operator, at: now() });
                }
            }
        }
        self.save();
        Ok(())
    }

    /// The poller reports its status at the end of each tick and receives what is left to do.
    #[local]
    fn push_poller_status(&mut self, status: PollerStatus) -> Result<PollerWork, String> {
        if !from_our_poller(&hyperapp::source()) {
            return Err(NOT_FROM_POLLER.to_string());
        }
        self.poller_status = status;
        self.rt.poller_reachable = true;
        self.save();
        self.sweep(now());
        Ok(self.pending_work())
    }

    // ----- dashboard API: POST /api with a JSON body {"Handler": args} (authenticated binding) -----
    // Every call takes its argument as JSON and reads it itself (`read_arg`): the framework
    // answers a body it cannot parse by repeating it. Reads that take no argument ignore one.

    #[http(path = "/api/keys")]
    fn list_keys(&self, _ignored: serde_json::Value) -> Vec<KeyView> {
        let at = now();
        let eligible = self.pool.eligible_keys(at);
        self.pool
            .keys()
            .map(|r| KeyView::of(r, self.pool.node_count_of(r.id), eligible.contains(&r.id), at))
            .collect()
    }

    #[http]
    async fn add_key(&mut self, body: serde_json::Value) -> Result<KeyView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let at = now();
        let new_key = match http_api::parse_add_key(&body, &self.settings) {
            Ok(k) => k,
            Err(e) => return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST),
        };
        let name = new_key.name.clone();
        let hint = new_key.secret.hint();
        let key = match self.pool.add_key(new_key, at) {
            Ok(key) => key,
            Err(e) => {
                self.audit("operator", "add key", &format!("\"{name}\" ({hint})"), &format!("refused: {e}"));
                return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST);
            }
        };
        self.audit("operator", "add key", &format!("key {key} \"{name}\" ({hint})"), "added");
        self.save();
        // Matching reads every page of the organization's keys, which can outlast the node's
        // 15 s: the answer is the saved key, shown as "matching…" until that read is done.
        self.start_in_background(Background::FirstMatch(key));
        Ok(self.key_view(key, now()).expect("the key was just added"))
    }

    /// `{"MatchKey": {"key": 3, "api_key_id": "apikey_..."}}`: the operator names a key's Admin API
    /// id; it is checked against the organization's keys.
    #[http]
    async fn match_key(&mut self, body: serde_json::Value) -> Result<KeyView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let (key, api_key_id) = match http_api::parse_match_key(&body) {
            Ok(parsed) => parsed,
            Err(e) => return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST),
        };
        if self.pool.key(key).is_none() {
            return http_result(Err(format!("unknown key {key}")), StatusCode::NOT_FOUND);
        }
        let keys = match self.org_keys(false).await {
            Ok(keys) => keys,
            Err(e) => return http_result(Err(format!("could not read the organization's keys: {e}")), StatusCode::BAD_GATEWAY),
        };
        match self.pool.match_by_hand(key, &api_key_id, &keys, now()) {
            Ok(sync) => {
                self.audit("operator", "match key by hand", &format!("key {key} is {api_key_id}"), "matched");
                self.note_org_sync(&OrgSync { matched: vec![], ..sync }, "operator");
                self.wake_poller_for_work();
                Ok(self.key_view(key, now()).expect("checked above"))
            }
            Err(e) => {
                self.audit("operator", "match key by hand", &format!("key {key} as {api_key_id}"), &format!("refused: {e}"));
                http_result(Err(e.to_string()), StatusCode::BAD_REQUEST)
            }
        }
    }

    /// `{"PrepareWorkspace": {"name": "trial for alice"}}`: creates a workspace through the Admin
    /// API for one new key (workspace-per-key mode); the operator then creates the key in it in
    /// the Console (keys cannot be created through the API) and adds it here.
    #[http]
    async fn prepare_workspace(&mut self, body: serde_json::Value) -> Result<http_api::WorkspaceView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        if !self.settings.workspace_per_key {
            return http_result(Err("turn on workspace-per-key mode in Settings first".to_string()), StatusCode::CONFLICT);
        }
        let name = match http_api::parse_workspace_name(&body) {
            Ok(name) => name,
            Err(e) => return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST),
        };
        let answer = ask_poller::<Workspace>(serde_json::json!({"CreateWorkspace": name}), INTERACTIVE_POLLER_SECS).await;
        let workspace = match self.note_poller(answer) {
            Ok(ws) => ws,
            Err(e) => {
                self.audit("operator", "prepare workspace", &name, &format!("failed: {e}"));
                return http_result(Err(format!("the Admin API did not create the workspace: {e}")), StatusCode::BAD_GATEWAY);
            }
        };
        let prepared = PreparedWorkspace { id: workspace.id.clone(), name: workspace.name.unwrap_or(name), created_at: now(), archived_at: None };
        self.audit("operator", "prepare workspace", &format!("{} \"{}\"", prepared.id, prepared.name), "created");
        let view = http_api::WorkspaceView::of(&prepared, &self.pool);
        self.workspaces.push(prepared);
        self.save();
        Ok(view)
    }

    #[http]
    fn list_workspaces(&self, _ignored: serde_json::Value) -> Vec<http_api::WorkspaceView> {
        self.workspaces.iter().rev().map(|ws| http_api::WorkspaceView::of(ws, &self.pool)).collect()
    }

    #[http]
    async fn retire_key(&mut self, arg: serde_json::Value) -> Result<KeyView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let key: KeyId = match read_arg(arg) {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        self.end_key(key, "retire key", "retired: operator", |pool, at| pool.retire(key, RetireReason::Operator, at))
    }

    #[http]
    async fn remove_key(&mut self, arg: serde_json::Value) -> Result<KeyView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let key: KeyId = match read_arg(arg) {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        self.end_key(key, "remove key", "secret erased, key retired", |pool, at| pool.remove(key, at))
    }

    #[http]
    async fn list_nodes(&mut self, arg: serde_json::Value) -> Result<NodesPage, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let query: NodesQuery = match read_arg(arg) {
            Ok(query) => query,
            Err(refused) => return refused,
        };
        // The issue log and the hourly costs the shares split are rebuilt from storage at start.
        if let Err(e) = self.costs().await {
            return http_result(Err(e), StatusCode::SERVICE_UNAVAILABLE);
        }
        let limit = http_api::page_limit(query.limit);
        // Served from the pool's issue log (every issuance is in memory), not from SQLite.
        let page = self.pool.newest_first(query.key, query.search.as_deref(), query.offset, limit);
        let nodes = http_api::node_views(&self.pool, &self.rt.hourly, &mut self.rt.node_shares, &page.positions);
        Ok(NodesPage { total: page.total, nodes })
    }

    #[http]
    async fn cost_series(&mut self, arg: serde_json::Value) -> Result<CostSeries, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let query: CostSeriesQuery = match read_arg(arg) {
            Ok(query) => query,
            Err(refused) => return refused,
        };
        if let Some(key) = query.key {
            if self.pool.key(key).is_none() {
                return http_result(Err(format!("unknown key {key}")), StatusCode::NOT_FOUND);
            }
        }
        if let Err(e) = self.costs().await {
            return http_result(Err(e), StatusCode::SERVICE_UNAVAILABLE);
        }
        let hourly = self.rt.hourly.points(query.key);
        let cumulative = cost::cumulative(&hourly);
        let total = cumulative.last().map(|p| p.amount.0).unwrap_or(0);
        let from = query.from.unwrap_or(i64::MIN);
        let to = query.to.unwrap_or(i64::MAX);
        if from > to {
            return http_result(Err("`from` is after `to`".to_string()), StatusCode::BAD_REQUEST);
        }
        let in_range = cost::cumulative_in_range(&cumulative, from, to);
        let max_points = query.max_points.unwrap_or(2000).clamp(2, 20_000) as usize;
        let points = cost::downsample_cumulative(&in_range, max_points);
        // Issue order is time order: find the range by binary search, build only the kept events.
        let (from_t, to_t) = (clamp_time(from), clamp_time(to));
        let in_range = self.pool.issued_between(query.key, from_t, to_t);
        let joins_total = in_range.len() as u64;
        let joins = http_api::even_indices(in_range.len(), http_api::MAX_JOINS)
            .into_iter()
            .filter_map(|i| in_range.get(i))
            .map(|i| JoinEvent { t: i.issued_at.timestamp(), node: i.node.clone(), key: i.key })
            .collect();
        Ok(CostSeries {
            key: query.key,
            source: CostSource::UsageEstimate.to_string(),
            t: points.iter().map(|p| p.at.timestamp()).collect(),
            v: points.iter().map(|p| p.amount.0).collect(),
            joins,
            joins_total,
            total_micro_usd: total,
        })
    }

    /// One key with its nodes, usage by model, burn rate, runway and drift.
    #[http]
    async fn key_detail(&mut self, arg: serde_json::Value) -> Result<KeyDetail, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let key: KeyId = match read_arg(arg) {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let at = now();
        let Some(view) = self.key_view(key, at) else {
            return http_result(Err(format!("unknown key {key}")), StatusCode::NOT_FOUND);
        };
        let db = match self.costs().await {
            Ok(db) => db,
            Err(e) => return http_result(Err(e), StatusCode::SERVICE_UNAVAILABLE),
        };
        let page = self.pool.newest_first(Some(key), None, 0, http_api::MAX_PAGE);
        let nodes = http_api::node_views(&self.pool, &self.rt.hourly, &mut self.rt.node_shares, &page.positions);
        let usage_by_model = db
            .usage_by_model(key)
            .await?
            .into_iter()
            .map(|(model, cost, input, output)| ModelUsageView { model, cost_micro_usd: cost.0, input_tokens: input, output_tokens: output })
            .collect();
        let hourly = self.rt.hourly.points(Some(key));
        let record = self.pool.key(key).expect("checked above");
        let runway = http_api::KeyRunway::of(record, &hourly, at);
        // Authoritative figure: the key's own workspace, when no other pool key shares it.
        let workspace = match &record.resolution {
            Resolution::Resolved { workspace_id: Some(ws), .. } => Some(ws.clone()),
            _ => None,
        };
        let alone = workspace.as_ref().is_some_and(|ws| {
            self.pool.keys().filter(|r| matches!(&r.resolution, Resolution::Resolved { workspace_id: Some(w), .. } if w == ws)).count() == 1
        });
        // The analytics endpoint's per-key cost first; else the key's own workspace's cost report.
        let mut days = db.key_daily_costs(key, CostSource::Analytics).await?;
        let mut source = CostSource::Analytics;
        if days.is_empty() {
            if let (true, Some(ws)) = (alone, &workspace) {
                days = db.workspace_daily_costs(Some(ws)).await?;
                source = CostSource::CostReport;
            }
        }
        let (mut authoritative, mut estimate, mut authoritative_source) = (None, None, None);
        let today = at.timestamp() - at.timestamp().rem_euclid(86_400);
        // Compare whole days the estimate covers: its first day may start mid-day (the first
        // poll reaches back a set number of hours), and a part day would show as drift.
        let estimate_from = hourly.first().map_or(i64::MAX, |p| {
            let t = p.at.timestamp();
            if t.rem_euclid(86_400) == 0 {
                t
            } else {
                t - t.rem_euclid(86_400) + 86_400
            }
        });
        let closed: Vec<_> = days.iter().filter(|d| (estimate_from..today).contains(&d.at.timestamp())).collect();
        if let Some(first) = closed.first() {
            let from = first.at.timestamp();
            authoritative = Some(closed.iter().map(|d| d.amount).sum::<MicroUsd>());
            estimate = Some(hourly.iter().filter(|p| (from..today).contains(&p.at.timestamp())).map(|p| p.amount).sum::<MicroUsd>());
            authoritative_source = Some(source.to_string());
        }
        let drift = match (estimate, authoritative) {
            (Some(e), Some(a)) => cost::drift_basis_points(e, a),
            _ => None,
        };
        Ok(KeyDetail {
            key: view,
            nodes,
            usage_by_model,
            burn_rate_micro_usd_per_hour: runway.burn_rate_micro_usd_per_hour,
            budget_runs_out_in_secs: runway.budget_runs_out_in_secs,
            authoritative_micro_usd: authoritative.map(|m| m.0),
            estimate_same_days_micro_usd: estimate.map(|m| m.0),
            drift_basis_points: drift,
            drift_warning: drift.is_some_and(|d| d.abs() > cost::DRIFT_WARNING_BASIS_POINTS),
            authoritative_source,
            estimate_source: CostSource::UsageEstimate.to_string(),
        })
    }

    #[http(path = "/api/settings")]
    fn get_settings(&self, _ignored: serde_json::Value) -> SettingsView {
        self.settings_view()
    }

    #[http]
    async fn update_settings(&mut self, body: serde_json::Value) -> Result<SettingsView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let next = match http_api::apply_settings_update(&self.settings, &body) {
            Ok(next) => next,
            Err(e) => return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST),
        };
        let poller_changed = next.poller != self.settings.poller;
        // Another Admin API server must never receive the admin key set for the old one.
        let base_url_changed = next.poller.admin_api_base_url != self.settings.poller.admin_api_base_url;
        if next.price_table != self.settings.price_table {
            self.reprice_pending = true;
        }
        self.settings = next;
        self.pool.set_issue_unmatched(self.settings.issue_unmatched_keys);
        self.save();
        self.audit("operator", "settings changed", &body_keys(&body), "saved");
        self.evaluate_alerts(now());
        let mut problems = vec![];
        if base_url_changed && self.admin_key.is_some() {
            self.admin_key = None;
            self.save();
            self.audit("operator", "admin key cleared", "", "the Admin API base URL changed");
        }
        if poller_changed {
            let config = self.settings.poller.clone();
            if let Err(e) = ask_poller::<()>(serde_json::json!({"Configure": config}), 10).await {
                problems.push(format!("{e}; it will get the settings when it answers"));
            }
        }
        if self.reprice_pending {
            if let Err(e) = self.reprice_stored_usage().await {
                problems.push(format!("stored usage is not priced with the new table yet ({e}); it is retried every minute"));
            }
        }
        if !problems.is_empty() {
            return http_result(Err(format!("saved, but {}", problems.join("; "))), StatusCode::BAD_GATEWAY);
        }
        Ok(self.settings_view())
    }

    /// `{"SetAdminKey": {"admin_key": "sk-ant-admin01-..."}}`: forwarded to the poller, never stored here.
    #[http]
    async fn set_admin_key(&mut self, body: serde_json::Value) -> Result<SettingsView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let admin_key = match http_api::parse_admin_key(&body) {
            Ok(k) => k,
            Err(e) => return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST),
        };
        let answer =
            ask_poller_with_blob::<AdminKeyInfo>(serde_json::json!({"SetAdminKey": null}), Some(admin_key.expose().as_bytes()), 10).await;
        let answer = self.note_poller(answer);
        drop(admin_key);
        match answer {
            Ok(info) => {
                self.audit("operator", "admin key set", &info.prefix, "forwarded to the cost-poller");
                self.admin_key = Some(info);
                self.save();
                Ok(self.settings_view())
            }
            Err(e) => http_result(Err(e), StatusCode::BAD_GATEWAY),
        }
    }

    #[http(path = "/api/admin-key/clear")]
    async fn clear_admin_key(&mut self, arg: serde_json::Value) -> Result<SettingsView, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        if let Err(refused) = read_arg::<(), _>(arg) {
            return refused;
        }
        let answer = ask_poller::<()>(serde_json::json!({"ClearAdminKey": null}), 10).await;
        if let Err(e) = answer {
            return http_result(Err(e), StatusCode::BAD_GATEWAY);
        }
        self.admin_key = None;
        self.save();
        self.audit("operator", "admin key cleared", "", "done");
        Ok(self.settings_view())
    }

    /// Starts a test of the admin key against the Admin API; the UI follows it with `GetCheck`.
    #[http(path = "/api/test-connection")]
    fn test_connection(&mut self, arg: serde_json::Value) -> Result<Check, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        if let Err(refused) = read_arg::<(), _>(arg) {
            return refused;
        }
        Ok(self.start_check(CheckKind::Connection, Background::TestConnection))
    }

    /// `{"GetCheck": 7}`: a check started by TestKey or TestConnection; `outcome` is null while
    /// it runs. An unknown id is a check from before a restart, or long forgotten.
    #[http]
    fn get_check(&self, arg: serde_json::Value) -> Result<Check, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let id: CheckId = match read_arg(arg) {
            Ok(id) => id,
            Err(refused) => return refused,
        };
        match self.rt.checks.get(id) {
            Some(check) => Ok(check.clone()),
            None => http_result(Err(format!("unknown check {id}: it was interrupted by a restart or is too old; start it again")), StatusCode::NOT_FOUND),
        }
    }

    #[http(path = "/api/poll-now")]
    async fn poll_now(&mut self, arg: serde_json::Value) -> Result<(), String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        if let Err(refused) = read_arg::<(), _>(arg) {
            return refused;
        }
        self.audit("operator", "poll now", "", "requested");
        let answer = ask_poller::<()>(serde_json::json!({"PollNow": null}), 10).await;
        let answer = self.note_poller(answer);
        http_result(answer, StatusCode::BAD_GATEWAY)
    }

    #[http(path = "/api/status")]
    fn status(&self, _ignored: serde_json::Value) -> StatusView {
        let at = now();
        let summary = wit_api::pool_summary(&self.pool, at);
        let mut view = StatusView::of(&self.pool, self.poller_status.clone(), self.rt.poller_reachable, &summary, at);
        view.unknown_models = self.unknown_models();
        view
    }

    /// Figures beside the overview plot.
    #[http]
    fn overview(&self, _ignored: serde_json::Value) -> http_api::OverviewView {
        http_api::overview(&self.pool, &self.rt.hourly, now())
    }

    /// Starts a check with the Admin API (through the cost-poller) that the key exists in the
    /// organization and is active; the UI follows it with `GetCheck`. Never sends the secret
    /// anywhere: the poller lists keys, and the key is found by its hint.
    #[http]
    fn test_key(&mut self, arg: serde_json::Value) -> Result<Check, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let key: KeyId = match read_arg(arg) {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        if self.pool.key(key).is_none() {
            return http_result(Err(format!("unknown key {key}")), StatusCode::NOT_FOUND);
        }
        Ok(self.start_check(CheckKind::Key(key), |id| Background::TestKey(id, key)))
    }

    #[http(path = "/api/summary")]
    fn summary(&self, _ignored: serde_json::Value) -> PoolSummary {
        wit_api::pool_summary(&self.pool, now())
    }

    #[http]
    async fn audit_log(&mut self, arg: serde_json::Value) -> Result<AuditPage, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let query: AuditQuery = match read_arg(arg) {
            Ok(query) => query,
            Err(refused) => return refused,
        };
        let db = match self.db().await {
            Ok(db) => db,
            Err(e) => return http_result(Err(e), StatusCode::SERVICE_UNAVAILABLE),
        };
        let limit = http_api::page_limit(query.limit);
        let entries = db.audit_page(query.before_seq, limit).await?;
        let next_before_seq = if entries.len() as u64 == limit { entries.last().map(|e| e.seq) } else { None };
        Ok(AuditPage { entries, next_before_seq })
    }

    /// `{"Export": {"what": "key_costs" | "nodes" | "audit", ...}}`: one chunk of a CSV export
    /// and the cursor of the next (`exports.rs`).
    #[http]
    async fn export(&mut self, arg: serde_json::Value) -> Result<shared_types::export::ExportChunk, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let query: shared_types::export::ExportQuery = match read_arg(arg) {
            Ok(query) => query,
            Err(refused) => return refused,
        };
        self.export_chunk(&query).await.map_err(|(status, e)| {
            hyperapp::set_response_status(status);
            e
        })
    }

    // ----- issuance policy: approval requests (docs/http-api.md, "Requests") -----

    /// `{"ListRequests": {"status": "pending", "offset": 0, "limit": 100}}`
    #[http]
    async fn list_requests(&mut self, arg: serde_json::Value) -> Result<shared_types::policy::RequestsPage, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let query: shared_types::policy::RequestsQuery = match read_arg(arg) {
            Ok(query) => query,
            Err(refused) => return refused,
        };
        // The requests are rebuilt from storage when it opens.
        if let Err(e) = self.db().await {
            return http_result(Err(e), StatusCode::SERVICE_UNAVAILABLE);
        }
        Ok(self.requests_page(&query))
    }

    /// `{"ApproveNode": "alice.os"}`: the node gets its key at its next request (approval mode).
    #[http]
    async fn approve_node(&mut self, arg: serde_json::Value) -> Result<shared_types::policy::NodeRequestView, String> {
        self.decide_node(arg, shared_types::policy::RequestStatus::Approved).await
    }

    /// `{"DenyNode": "alice.os"}`: the node's requests are answered `not allowed` (approval mode).
    #[http]
    async fn deny_node(&mut self, arg: serde_json::Value) -> Result<shared_types::policy::NodeRequestView, String> {
        self.decide_node(arg, shared_types::policy::RequestStatus::Denied).await
    }

    /// `{"ListAlerts": {"kind"?, "state"?, "before_id"?, "limit"?}}`: open alerts, history, webhook.
    #[http]
    async fn list_alerts(&mut self, arg: serde_json::Value) -> Result<shared_types::alerts::AlertsPage, String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        let query: shared_types::alerts::AlertQuery = match read_arg(arg) {
            Ok(query) => query,
            Err(refused) => return refused,
        };
        if let Err(e) = query.validate() {
            return http_result(Err(e.to_string()), StatusCode::BAD_REQUEST);
        }
        let page = self.alerts_page(query).await;
        http_result(page, StatusCode::SERVICE_UNAVAILABLE)
    }

    /// `{"SendTestAlert": null}`: posts a test alert to the webhook in the background.
    #[http]
    async fn send_test_alert(&mut self, arg: serde_json::Value) -> Result<(), String> {
        if let Some(refused) = refuse_cross_site() {
            return refused;
        }
        if let Err(refused) = read_arg::<(), _>(arg) {
            return refused;
        }
        let sent = self.queue_test_alert().await;
        let status = if self.settings.alerts.webhook_url.is_none() { StatusCode::CONFLICT } else { StatusCode::SERVICE_UNAVAILABLE };
        if sent.is_ok() {
            self.audit("operator", "send test alert", "", "queued");
        }
        http_result(sent, status)
    }

    /// Any API path or method without a JSON body lands here.
    #[http]
    fn api_usage(&self) -> Result<(), String> {
        http_result(
            Err("POST a JSON body naming the call, e.g. {\"ListKeys\": null}; see docs/http-api.md".to_string()),
            StatusCode::NOT_FOUND,
        )
    }
}

/// A unix time as a timestamp, clamped to what chrono can hold (open ranges use i64 extremes).
fn clamp_time(secs: i64) -> Timestamp {
    let bounded = secs.clamp(-8_000_000_000_000, 8_000_000_000_000);
    chrono::DateTime::from_timestamp(bounded, 0).unwrap_or_default()
}

/// Names of the settings a request changed, for the audit log (values may be long; keys are enough).
fn body_keys(body: &serde_json::Value) -> String {
    body.as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
