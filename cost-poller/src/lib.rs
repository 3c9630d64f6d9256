//! cost-poller: holds the admin key, polls the Admin API on a timer, carries out retirements and
//! key resolutions, and pushes the results to the key-issuer.
//!
//! The admin key never leaves this process except in requests to the Admin API. Only this
//! package's key-issuer may call the handlers below.

mod admin_client;
mod log;

use chrono::{DurationRound, TimeDelta};
use hyperware_process_lib::hyperapp::{self, SaveOptions};
use hyperware_process_lib::{our, Address, Request};
use serde::{Deserialize, Serialize};
use shared_types::admin_api::{self, AdminApiBase, ApiKeyObject, ReportPage, UpdateApiKeyBody};
use shared_types::messages::{
    self, AdminKeyInfo, ConnectionTest, HintQuery, KeyCheck, KeyResolution, PollError, PollerConfig, PollerStatus, PollerWork,
    RetireOrder, RetirementOutcome, RetirementResult, UsageBucket, UsagePush, WorkspaceCost,
};
use shared_types::pool::Resolution;
use shared_types::{AdminKey, KeyHint, Timestamp};

use admin_client::{AdminClient, CallError};

/// Hours re-fetched on every poll: open buckets grow and late usage arrives.
const USAGE_OVERLAP_HOURS: i64 = 6;
/// Days of cost report re-fetched on every poll.
const COST_OVERLAP_DAYS: i64 = 2;
/// Buckets per push message, to keep messages small.
const BUCKETS_PER_PUSH: usize = 500;

#[derive(Default, Serialize, Deserialize)]
pub struct CostPoller {
    admin_key: Option<AdminKey>,
    config: PollerConfig,
    status: PollerStatus,
    /// Start of the oldest usage bucket to fetch on the next poll.
    usage_cursor: Option<Timestamp>,
    /// Start of the oldest cost-report day to fetch on the next poll.
    cost_cursor: Option<Timestamp>,
    #[serde(skip)]
    polling: bool,
    /// A poll was asked for while one was running: run another right after it.
    #[serde(skip)]
    poll_again: bool,
}

fn now() -> Timestamp {
    chrono::Utc::now()
}

fn issuer_address() -> Address {
    let us = our();
    Address::new(us.node(), (messages::KEY_ISSUER, us.package(), us.publisher()))
}

fn from_our_issuer(source: &Address) -> bool {
    let us = our();
    messages::is_sibling(source.node(), &source.process.to_string(), us.node(), &us.process.to_string(), messages::KEY_ISSUER)
}

const NOT_FROM_ISSUER: &str = "refused: only this package's key-issuer may send this message";

/// Sends `body` to the key-issuer and waits for its `Result`.
async fn tell_issuer<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, String> {
    let request = Request::to(issuer_address())
        .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
        .expects_response(60);
    match hyperapp::send::<Result<T, String>>(request).await {
        Ok(answer) => answer,
        Err(_) => Err("the key-issuer did not answer".to_string()),
    }
}

fn floor_hour(t: Timestamp) -> Timestamp {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

fn floor_day(t: Timestamp) -> Timestamp {
    t.duration_trunc(TimeDelta::days(1)).unwrap_or(t)
}

fn poll_error(message: String, needs_operator: bool) -> PollError {
    PollError { at: now(), message, needs_operator }
}

type ReportUrl = fn(&AdminApiBase, Timestamp, Timestamp, Option<&str>) -> Result<url::Url, admin_api::AdminApiError>;
type ReportParser<R> = fn(&[u8]) -> Result<ReportPage<R>, admin_api::AdminApiError>;

/// Fetches every page of a report (usage or cost) for [from, to).
async fn fetch_report<R>(
    client: &AdminClient,
    base: &AdminApiBase,
    from: Timestamp,
    to: Timestamp,
    url: ReportUrl,
    parse: ReportParser<R>,
) -> Result<Vec<ReportPage<R>>, PollError> {
    let mut pages = vec![];
    let mut page_token: Option<String> = None;
    loop {
        let url = url(base, from, to, page_token.as_deref()).map_err(|e| poll_error(e.to_string(), false))?;
        let body = client.get(url).await.map_err(|e| poll_error(e.message, e.needs_operator))?;
        let page = parse(&body).map_err(|e| poll_error(e.to_string(), false))?;
        page_token = admin_api::next_report_page(&page).map_err(|e| poll_error(e.to_string(), false))?;
        pages.push(page);
        if page_token.is_none() {
            return Ok(pages);
        }
    }
}

impl CostPoller {
    fn save(&self) {
        match rmp_serde::to_vec(self) {
            Ok(bytes) => hyperware_process_lib::set_state(&bytes),
            Err(e) => log::warn(&format!("could not serialise state: {e}")),
        }
    }

    fn base(&self) -> Result<AdminApiBase, PollError> {
        AdminApiBase::parse(&self.config.admin_api_base_url)
            .map_err(|e| poll_error(format!("Admin API base URL: {e}"), true))
    }

    fn client(&self) -> Result<AdminClient, PollError> {
        match &self.admin_key {
            Some(admin_key) => Ok(AdminClient { admin_key: admin_key.clone(), beta: None }),
            None => Err(poll_error("the admin key is not set: set it in Settings".to_string(), true)),
        }
    }

    /// Runs a tick, or queues one if a tick is running (so "poll now" is never lost).
    async fn tick(&mut self) {
        if self.polling {
            self.poll_again = true;
            return;
        }
        self.polling = true;
        loop {
            self.poll_again = false;
            self.tick_once().await;
            if !self.poll_again {
                break;
            }
        }
        self.polling = false;
    }

    /// One tick: poll usage and cost, report status, then do the work the issuer hands back.
    async fn tick_once(&mut self) {
        let started = now();
        self.status.last_poll_started = Some(started);
        self.status.admin_key_set = self.admin_key.is_some();
        match self.poll_usage_and_cost(started).await {
            Ok(()) => {
                self.status.last_success = Some(now());
                self.status.polls_total += 1;
            }
            Err(e) => {
                log::warn(&format!("poll failed: {}", e.message));
                self.status.last_error = Some(e);
            }
        }
        self.status.next_poll = Some(now() + TimeDelta::seconds(self.config.poll_interval_secs as i64));
        self.save();
        match tell_issuer::<PollerWork>(serde_json::json!({"PushPollerStatus": self.status})).await {
            Ok(work) => self.do_work(work).await,
            Err(e) => log::warn(&e),
        }
    }

    async fn poll_usage_and_cost(&mut self, at: Timestamp) -> Result<(), PollError> {
        let base = self.base()?;
        let client = self.client()?;
        let backfill = TimeDelta::hours(self.config.backfill_hours as i64);

        // Usage per key per model, hourly.
        let usage_from = self.usage_cursor.unwrap_or_else(|| floor_hour(at - backfill));
        let usage_to = floor_hour(at) + TimeDelta::hours(1);
        let pages = fetch_report(&client, &base, usage_from, usage_to, AdminApiBase::usage_report, admin_api::parse_usage_page).await?;
        let (by_key, skipped) = admin_api::usage_by_key(&pages);
        let buckets: Vec<UsageBucket> = by_key
            .into_iter()
            .map(|((api_key_id, bucket_start), models)| UsageBucket { api_key_id, bucket_start, models })
            .collect();
        for chunk in buckets.chunks(BUCKETS_PER_PUSH) {
            tell_issuer::<u64>(serde_json::json!({"PushUsage": UsagePush { buckets: chunk.to_vec() }}))
                .await
                .map_err(|e| poll_error(e, false))?;
        }
        self.status.skipped_rows = skipped as u64;
        self.usage_cursor = Some(usage_from.max(floor_hour(at) - TimeDelta::hours(USAGE_OVERLAP_HOURS)));

        // Authoritative cost per workspace, daily.
        let cost_from = self.cost_cursor.unwrap_or_else(|| floor_day(at - backfill));
        let cost_to = floor_day(at) + TimeDelta::days(1);
        let pages = fetch_report(&client, &base, cost_from, cost_to, AdminApiBase::cost_report, admin_api::parse_cost_page).await?;
        let costs: Vec<WorkspaceCost> = admin_api::cost_by_workspace(&pages)
            .into_iter()
            .map(|((workspace_id, day_start), amount)| WorkspaceCost { workspace_id, day_start, amount })
            .collect();
        if !costs.is_empty() {
            tell_issuer::<u64>(serde_json::json!({"PushWorkspaceCosts": costs})).await.map_err(|e| poll_error(e, false))?;
        }
        self.cost_cursor = Some(cost_from.max(floor_day(at) - TimeDelta::days(COST_OVERLAP_DAYS)));
        self.status.last_error = None;
        Ok(())
    }

    async fn do_work(&mut self, work: PollerWork) {
        if !work.retire.is_empty() {
            let results = self.retire(work.retire).await;
            if let Err(e) = tell_issuer::<()>(serde_json::json!({"PushRetirementResults": results})).await {
                log::warn(&e);
            }
        }
        if !work.resolve.is_empty() {
            match self.resolve(work.resolve).await {
                Ok(resolutions) => {
                    if let Err(e) = tell_issuer::<()>(serde_json::json!({"PushResolutions": resolutions})).await {
                        log::warn(&e);
                    }
                }
                Err(e) => log::warn(&format!("could not resolve keys: {}", e.message)),
            }
        }
    }

    async fn retire(&self, orders: Vec<RetireOrder>) -> Vec<RetirementResult> {
        let mut results = Vec::with_capacity(orders.len());
        for order in orders {
            let outcome = match self.set_status(&order).await {
                Ok(status) => RetirementOutcome::Confirmed { status },
                Err(error) => RetirementOutcome::Failed { error },
            };
            results.push(RetirementResult { key: order.key, api_key_id: order.api_key_id, outcome });
        }
        results
    }

    /// Sets the key's Admin API status; confirmed only when the answer shows the new status.
    async fn set_status(&self, order: &RetireOrder) -> Result<String, String> {
        let base = self.base().map_err(|e| e.message)?;
        let client = self.client().map_err(|e| e.message)?;
        let url = base.update_api_key(&order.api_key_id).map_err(|e| e.to_string())?;
        let body = UpdateApiKeyBody { name: None, status: Some(order.status.as_str().to_string()) };
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let answer = client.post(url, body).await.map_err(|e| e.message)?;
        let key = admin_api::parse_api_key(&answer).map_err(|e| e.to_string())?;
        let status = key.status.to_string();
        if status == order.status.as_str() {
            Ok(status)
        } else {
            Err(format!("the Admin API answered with status {status}, expected {}", order.status.as_str()))
        }
    }

    async fn list_all_keys(&self) -> Result<Vec<ApiKeyObject>, CallError> {
        let to_call_error = CallError::transient;
        let base = self.base().map_err(|e| CallError { message: e.message, needs_operator: true })?;
        let client = self.client().map_err(|e| CallError { message: e.message, needs_operator: true })?;
        let mut keys = vec![];
        let mut after: Option<String> = None;
        loop {
            let url = base.list_api_keys(after.as_deref(), 1000).map_err(|e| to_call_error(e.to_string()))?;
            let body = client.get(url).await?;
            let page = admin_api::parse_api_key_page(&body).map_err(|e| to_call_error(e.to_string()))?;
            after = admin_api::next_list_cursor(&page).map_err(|e| to_call_error(e.to_string()))?;
            keys.extend(page.data);
            if after.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn resolve(&self, queries: Vec<HintQuery>) -> Result<Vec<KeyResolution>, CallError> {
        let keys = self.list_all_keys().await?;
        Ok(queries
            .into_iter()
            .map(|q| {
                let resolution = match KeyHint::parse(&q.hint) {
                    Ok(hint) => admin_api::resolve_hint(&hint, &keys),
                    Err(e) => Resolution::Unresolved { why: format!("bad hint: {e}") },
                };
                KeyResolution { key: q.key, resolution }
            })
            .collect())
    }
}

#[hyperapp_macro::hyperapp(
    name = "Anthropic API Key Manager cost poller",
    ui = None,
    endpoints = vec![],
    save_config = SaveOptions::OnDiff,
    wit_world = "anthropic-api-key-manager-keymanager-dot-os-v0"
)]
impl CostPoller {
    /// Runs the poll loop for the life of the process.
    #[init]
    async fn start(&mut self) {
        log::init_logging();
        self.polling = false;
        log::info("ready");
        loop {
            self.tick().await;
            let wait_ms = self.config.poll_interval_secs.max(1).saturating_mul(1000);
            let _ = hyperapp::sleep(wait_ms).await;
        }
    }

    #[local]
    fn configure(&mut self, config: PollerConfig) -> Result<(), String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        AdminApiBase::parse(&config.admin_api_base_url).map_err(|e| format!("Admin API base URL: {e}"))?;
        if config.poll_interval_secs == 0 {
            return Err("poll interval must be above zero".to_string());
        }
        if config.admin_api_base_url != self.config.admin_api_base_url {
            // Another organization or server: fetch its history afresh.
            self.usage_cursor = None;
            self.cost_cursor = None;
        }
        self.config = config;
        self.save();
        Ok(())
    }

    /// Receives the admin key from the issuer; answers only its display prefix.
    #[local]
    fn set_admin_key(&mut self, admin_key: String) -> Result<AdminKeyInfo, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        let admin_key = AdminKey::parse(&admin_key).map_err(|e| e.to_string())?;
        let info = AdminKeyInfo { prefix: admin_key.display_prefix(), set_at: now() };
        self.admin_key = Some(admin_key);
        self.status.admin_key_set = true;
        self.status.last_error = None;
        self.save();
        Ok(info)
    }

    #[local]
    fn clear_admin_key(&mut self) -> Result<(), String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        self.admin_key = None;
        self.status.admin_key_set = false;
        self.save();
        Ok(())
    }

    #[local]
    async fn test_connection(&mut self) -> Result<ConnectionTest, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        Ok(match self.list_all_keys().await {
            Ok(keys) => ConnectionTest {
                ok: true,
                message: format!("connected: the admin key can see {} API keys", keys.len()),
                api_keys_visible: keys.len() as u64,
            },
            Err(e) => ConnectionTest { ok: false, message: e.message, api_keys_visible: 0 },
        })
    }

    /// Starts a tick now (answers at once; the tick runs on its own).
    #[local]
    fn poll_now(&mut self) -> Result<(), String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        let this: *mut CostPoller = self;
        // Same aliasing discipline as the framework's own async handlers: one thread, one task at a time.
        hyperapp::spawn(async move { unsafe { (*this).tick().await } });
        Ok(())
    }

    /// "Test key" from the dashboard: the key's status in the organization, found by its hint.
    #[local]
    async fn check_key(&mut self, query: HintQuery) -> Result<KeyCheck, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        let hint = KeyHint::parse(&query.hint).map_err(|e| format!("bad hint: {e}"))?;
        let keys = self.list_all_keys().await.map_err(|e| e.message)?;
        Ok(admin_api::check_key(&hint, &keys))
    }

    #[local]
    async fn resolve_keys(&mut self, queries: Vec<HintQuery>) -> Result<Vec<KeyResolution>, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        self.resolve(queries).await.map_err(|e| e.message)
    }
}
