//! cost-poller: holds the admin key, polls the Admin API on a timer, carries out retirements and
//! key resolutions, and pushes the results to the key-issuer.
//!
//! The admin key never leaves this process except in requests to the Admin API. Only this
//! package's key-issuer may call the handlers below.

mod admin_client;
mod log;

use std::sync::OnceLock;

use chrono::{DurationRound, TimeDelta};
use hyperware_process_lib::hyperapp::{self, SaveOptions};
use hyperware_process_lib::vfs::file_async::FileAsync;
use hyperware_process_lib::{our, Address, Request};
use serde::{Deserialize, Serialize};
use shared_types::admin_api::{
    self, AdminApiBase, ApiKeyObject, ApiKeyStatus, CreateWorkspaceBody, ReportPage, UpdateApiKeyBody, Workspace,
};
use shared_types::messages::{
    self, AdminKeyInfo, BackfillOrder, ConnectionTest, KeyDailyCost, PollError, PollerConfig, PollerStatus, PollerWork,
    RetireOrder, RetirementOutcome, RetirementResult, UsageBucket, UsagePush, WorkspaceCost,
};
use shared_types::{AdminKey, Timestamp};

use admin_client::{AdminClient, CallError};

/// Hours re-fetched on every poll: open buckets grow and late usage arrives.
const USAGE_OVERLAP_HOURS: i64 = 6;
/// Days of cost report re-fetched on every poll.
const COST_OVERLAP_DAYS: i64 = 2;
/// Buckets per push message, to keep messages small.
const BUCKETS_PER_PUSH: usize = 500;
/// Work started by a handler that answers at once.
enum Background {
    Tick,
    PendingWork,
}

/// How long a dashboard call waits for a running tick to let go of the Admin API.
const INTERACTIVE_WAIT_MS: u64 = 3_000;
/// Retirements are carried out on their own timer too, whatever the poll interval (SPEC §5: a due
/// key is deactivated within 5 minutes).
const RETIREMENT_CHECK_SECS: i64 = 300;

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
    /// An Admin API flow (tick, retirement pass, key list) is running. Flows take turns: the
    /// process_lib HTTP client reads an answer's body from the process's last message, which a
    /// concurrent flow's answer could replace.
    #[serde(skip)]
    admin_api_in_use: bool,
}

fn now() -> Timestamp {
    chrono::Utc::now()
}

/// The key-issuer's process name. A build may give the issuer another name (README, "Deploying as
/// a drop-in"), and the wasm is the same in every build: the name is read from this package's
/// manifest at start ([`learn_issuer_name`]), or else taken from the first message the issuer sends.
static ISSUER_NAME: OnceLock<String> = OnceLock::new();

fn issuer_address() -> Option<Address> {
    let us = our();
    ISSUER_NAME.get().map(|name| Address::new(us.node(), (name.as_str(), us.package(), us.publisher())))
}

fn from_our_issuer(source: &Address) -> bool {
    let us = our();
    if !messages::is_other_process_of_our_package(source.node(), &source.process.to_string(), us.node(), &us.process.to_string()) {
        return false;
    }
    ISSUER_NAME.get_or_init(|| source.process().to_string()) == source.process()
}

/// Reads the key-issuer's name from `/<package>/pkg/manifest.json`. The node lets a process read
/// its own package's drive without a drive capability; messaging the VFS at all takes the
/// `vfs:distro:sys` capability the manifest requests.
async fn learn_issuer_name() {
    let path = format!("/{}/pkg/manifest.json", our().package_id());
    let manifest = match FileAsync::new(path, 5).read_to_string().await {
        Ok(text) => text,
        Err(e) => return log::warn(&format!("could not read the package manifest ({e}); the key-issuer is known once it sends a message")),
    };
    match messages::issuer_name_in_manifest(manifest.as_bytes(), our().process()) {
        Ok(name) => {
            let _ = ISSUER_NAME.set(name);
        }
        Err(e) => log::warn(&format!("{e}; the key-issuer is known once it sends a message")),
    }
}

const NOT_FROM_ISSUER: &str = "refused: only this package's key-issuer may send this message";

/// Sends `body` to the key-issuer and waits for its `Result`.
async fn tell_issuer<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, String> {
    let issuer = issuer_address().ok_or_else(|| "the key-issuer's process name is not known yet".to_string())?;
    let request = Request::to(issuer)
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

type ReportParser<R> = fn(&[u8]) -> Result<ReportPage<R>, admin_api::AdminApiError>;

/// Why fetching a report failed: the call (with its HTTP status), or an answer we cannot read.
enum ReportError {
    Call(CallError),
    Unreadable(String),
}

impl From<ReportError> for PollError {
    fn from(e: ReportError) -> PollError {
        match e {
            ReportError::Call(e) => poll_error(e.message, e.needs_operator),
            ReportError::Unreadable(message) => poll_error(message, false),
        }
    }
}

/// Fetches every page of a report (usage, cost, analytics); `url` builds the address of a page.
async fn fetch_report<R>(
    client: &AdminClient,
    url: impl Fn(Option<&str>) -> Result<url::Url, admin_api::AdminApiError>,
    parse: ReportParser<R>,
) -> Result<Vec<ReportPage<R>>, ReportError> {
    let unreadable = |e: admin_api::AdminApiError| ReportError::Unreadable(e.to_string());
    let mut pages = vec![];
    let mut page_token: Option<String> = None;
    loop {
        let url = url(page_token.as_deref()).map_err(unreadable)?;
        let body = client.get(url).await.map_err(ReportError::Call)?;
        let page = parse(&body).map_err(unreadable)?;
        page_token = admin_api::next_report_page(&page).map_err(unreadable)?;
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
            Some(admin_key) => Ok(AdminClient { admin_key: admin_key.clone(), beta: None, interactive: false }),
            None => Err(poll_error("the admin key is not set: set it in Settings".to_string(), true)),
        }
    }

    /// Waits for the Admin API to be free, then holds it (release with `release_admin_api`).
    async fn take_admin_api(&mut self) {
        while self.admin_api_in_use {
            let _ = hyperapp::sleep(50).await;
        }
        self.admin_api_in_use = true;
    }

    fn release_admin_api(&mut self) {
        self.admin_api_in_use = false;
    }

    /// Starts work that a handler answers before it ends.
    fn start_in_background(&mut self, job: Background) {
        let this: *mut CostPoller = self;
        // Same aliasing discipline as the framework's own async handlers: one thread, one task at a time.
        hyperapp::spawn(async move {
            let poller = unsafe { &mut *this };
            match job {
                Background::Tick => poller.tick().await,
                Background::PendingWork => poller.retire_pass().await,
            }
        });
    }

    /// For a dashboard call (the node answers 408 after 15 s): waits at most `INTERACTIVE_WAIT_MS`
    /// for a running tick to let go of the Admin API.
    async fn take_admin_api_interactively(&mut self) -> Result<(), String> {
        // Measured on the clock, not in sleeps: on a busy node each timer round trip takes longer.
        let started = now();
        while self.admin_api_in_use {
            if now() - started >= TimeDelta::milliseconds(INTERACTIVE_WAIT_MS as i64) {
                return Err("the cost-poller is busy with a poll of the Admin API: try again in a minute".to_string());
            }
            let _ = hyperapp::sleep(50).await;
        }
        self.admin_api_in_use = true;
        Ok(())
    }

    /// The org's keys for a dashboard call: one attempt, bounded waits.
    async fn list_all_keys_interactively(&mut self) -> Result<Vec<ApiKeyObject>, String> {
        self.take_admin_api_interactively().await?;
        let keys = self.list_keys_with(true).await;
        self.release_admin_api();
        keys.map_err(|e| e.message)
    }

    /// The org's keys for background work: waits for the Admin API, retries as a poll does.
    async fn list_all_keys_patiently(&mut self) -> Result<Vec<ApiKeyObject>, String> {
        self.take_admin_api().await;
        let keys = self.list_all_keys().await;
        self.release_admin_api();
        keys.map_err(|e| e.message)
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
            self.take_admin_api().await;
            self.tick_once().await;
            self.release_admin_api();
            if !self.poll_again {
                break;
            }
        }
        self.polling = false;
    }

    /// One tick: retirements first, then the organization's keys (the truth about each key's
    /// life), then usage and cost; reports status and does the work the issuer hands back.
    async fn tick_once(&mut self) {
        let started = now();
        self.status.last_poll_started = Some(started);
        self.status.admin_key_set = self.admin_key.is_some();
        self.do_fetched_work().await;
        // Usage and cost are fetched even when the key list fails: spend must not freeze.
        let synced = self.sync_org_keys().await;
        self.do_fetched_work().await;
        let polled = self.poll_usage_and_cost(started).await.and(synced);
        self.do_fetched_work().await;
        match polled {
            Ok(()) => {
                self.status.last_success = Some(now());
                self.status.polls_total += 1;
                self.status.last_error = None;
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

    /// Carries out due retirements and backfills between ticks (the retirement timer, the
    /// issuer's wake-up), taking its turn at the Admin API.
    async fn retire_pass(&mut self) {
        if self.admin_key.is_none() {
            return;
        }
        self.take_admin_api().await;
        self.do_fetched_work().await;
        self.release_admin_api();
    }

    /// Asks the issuer for due retirements and backfills and carries them out.
    async fn do_fetched_work(&mut self) {
        match tell_issuer::<PollerWork>(serde_json::json!({"FetchWork": null})).await {
            Ok(work) => self.do_work(work).await,
            Err(e) => log::warn(&e),
        }
    }

    /// Reads every page of the organization's keys and hands them to the issuer, which matches,
    /// retires and shortens keys by them.
    async fn sync_org_keys(&mut self) -> Result<(), PollError> {
        let keys = self.list_all_keys().await.map_err(|e| poll_error(e.message, e.needs_operator))?;
        self.status.org_keys_read_at = Some(now());
        let work = tell_issuer::<PollerWork>(serde_json::json!({"PushOrgKeys": keys})).await.map_err(|e| poll_error(e, false))?;
        self.do_work(work).await;
        Ok(())
    }

    /// Usage of the given key (or all keys) in [from, to), pushed to the issuer.
    async fn fetch_and_push_usage(
        &mut self,
        client: &AdminClient,
        base: &AdminApiBase,
        api_key_id: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<usize, PollError> {
        let url = |page: Option<&str>| base.usage_report_of(api_key_id, from, to, page);
        let pages = fetch_report(client, url, admin_api::parse_usage_page).await.map_err(PollError::from)?;
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
        Ok(skipped)
    }

    async fn poll_usage_and_cost(&mut self, at: Timestamp) -> Result<(), PollError> {
        let base = self.base()?;
        let client = self.client()?;
        let backfill = TimeDelta::hours(self.config.backfill_hours as i64);

        // Usage per key, model, tier and context window, hourly, up to the end of the open bucket
        // (never later: the Admin API's answer past it is not documented).
        let usage_from = self.usage_cursor.unwrap_or_else(|| floor_hour(at - backfill));
        let usage_to = floor_hour(at) + TimeDelta::hours(1);
        let skipped = self.fetch_and_push_usage(&client, &base, None, usage_from, usage_to).await?;
        self.status.skipped_rows = skipped as u64;
        self.usage_cursor = Some(usage_from.max(floor_hour(at) - TimeDelta::hours(USAGE_OVERLAP_HOURS)));

        // Authoritative cost per workspace, daily.
        let cost_from = self.cost_cursor.unwrap_or_else(|| floor_day(at - backfill));
        let cost_to = floor_day(at) + TimeDelta::days(1);
        let url = |page: Option<&str>| base.cost_report(cost_from, cost_to, page);
        let pages = fetch_report(&client, url, admin_api::parse_cost_page).await.map_err(PollError::from)?;
        let costs: Vec<WorkspaceCost> = admin_api::cost_by_workspace(&pages)
            .into_iter()
            .map(|((workspace_id, day_start), amount)| WorkspaceCost { workspace_id, day_start, amount })
            .collect();
        if !costs.is_empty() {
            tell_issuer::<u64>(serde_json::json!({"PushWorkspaceCosts": costs})).await.map_err(|e| poll_error(e, false))?;
        }
        self.poll_analytics(&base, cost_from, cost_to, at).await?;
        self.cost_cursor = Some(cost_from.max(floor_day(at) - TimeDelta::days(COST_OVERLAP_DAYS)));
        Ok(())
    }

    /// Per-key daily cost from the beta analytics endpoint, a third source. An organization
    /// without the beta answers 400/403/404: noted on the status page, never a poll error.
    async fn poll_analytics(&mut self, base: &AdminApiBase, from: Timestamp, to: Timestamp, at: Timestamp) -> Result<(), PollError> {
        let client = AdminClient { beta: Some(admin_api::ANALYTICS_BETA), ..self.client()? };
        let url = |page: Option<&str>| Ok(base.analytics_cost(from, to, at, page));
        let unavailable = match fetch_report(&client, url, admin_api::parse_analytics_cost_page).await {
            Ok(pages) => {
                self.push_analytics(&pages).await?;
                None
            }
            Err(ReportError::Call(CallError { http_status: Some(status @ (400 | 403 | 404)), .. })) => Some(format!(
                "the analytics endpoint answered {status}: this organization does not have it; usage estimates and workspace costs are used"
            )),
            // A beta whose fields are unconfirmed: an answer we cannot read is noted, not an error.
            Err(ReportError::Unreadable(e)) => Some(format!("the analytics answer could not be read: {e}")),
            Err(e) => return Err(e.into()),
        };
        self.status.analytics_available = Some(unavailable.is_none());
        self.status.analytics_note = unavailable;
        Ok(())
    }

    async fn push_analytics(&mut self, pages: &[ReportPage<admin_api::AnalyticsCostRow>]) -> Result<(), PollError> {
        let costs: Vec<KeyDailyCost> = admin_api::analytics_cost_by_key(pages)
            .into_iter()
            .map(|((api_key_id, day_start), amount)| KeyDailyCost { api_key_id, day_start, amount })
            .collect();
        if !costs.is_empty() {
            tell_issuer::<u64>(serde_json::json!({"PushKeyCosts": costs})).await.map_err(|e| poll_error(e, false))?;
        }
        Ok(())
    }

    /// Retirements first, then the usage of keys matched late.
    async fn do_work(&mut self, work: PollerWork) {
        if !work.retire.is_empty() {
            let results = self.retire(work.retire).await;
            if let Err(e) = tell_issuer::<()>(serde_json::json!({"PushRetirementResults": results})).await {
                log::warn(&e);
            }
        }
        for order in work.backfill {
            if let Err(e) = self.backfill(&order).await {
                log::warn(&format!("could not fetch the usage of key {} since it was added: {}", order.key, e.message));
            }
        }
    }

    /// Fetches a late-matched key's usage since it was added, by its id, then tells the issuer.
    async fn backfill(&mut self, order: &BackfillOrder) -> Result<(), PollError> {
        let base = self.base()?;
        let client = self.client()?;
        let to = floor_hour(now()) + TimeDelta::hours(1);
        self.fetch_and_push_usage(&client, &base, Some(&order.api_key_id), floor_hour(order.from), to).await?;
        tell_issuer::<()>(serde_json::json!({"PushBackfillDone": order.key})).await.map_err(|e| poll_error(e, false))
    }

    /// Sets each key's status, then archives its workspace when the order asks; confirmed only
    /// when both are done (a failed archive is retried: the status step then reads the key as
    /// already stopped and goes straight to the archive).
    async fn retire(&self, orders: Vec<RetireOrder>) -> Vec<RetirementResult> {
        let mut results = Vec::with_capacity(orders.len());
        for order in orders {
            let mut workspace_archived = None;
            let done = match self.set_status(&order).await {
                Ok(status) => match &order.archive_workspace {
                    Some(ws) => self.archive_workspace(ws).await.map(|()| {
                        workspace_archived = Some(ws.clone());
                        status
                    }),
                    None => Ok(status),
                },
                Err(e) => Err(e),
            };
            let outcome = match done {
                Ok(status) => RetirementOutcome::Confirmed { status },
                Err(e) => RetirementOutcome::Failed { error: e.message, needs_operator: e.needs_operator },
            };
            results.push(RetirementResult { key: order.key, api_key_id: order.api_key_id, outcome, workspace_archived });
        }
        results
    }

    /// Archives a workspace; one already archived counts as done.
    async fn archive_workspace(&self, id: &str) -> Result<(), CallError> {
        let setup = |e: PollError| CallError { message: e.message, needs_operator: e.needs_operator, http_status: None };
        let base = self.base().map_err(setup)?;
        let client = self.client().map_err(setup)?;
        let read = base.get_workspace(id).map_err(|e| CallError::transient(e.to_string()))?;
        let current = admin_api::parse_workspace(&client.get(read).await?).map_err(|e| CallError::transient(e.to_string()))?;
        if current.archived_at.is_some() {
            return Ok(());
        }
        let url = base.archive_workspace(id).map_err(|e| CallError::transient(e.to_string()))?;
        let answer = client.post(url, b"{}".to_vec()).await?;
        let archived = admin_api::parse_workspace(&answer).map_err(|e| CallError::transient(e.to_string()))?;
        if archived.archived_at.is_some() {
            Ok(())
        } else {
            Err(CallError::transient(format!("the Admin API did not archive workspace {id}")))
        }
    }

    async fn read_key(&self, client: &AdminClient, base: &AdminApiBase, id: &str) -> Result<ApiKeyObject, CallError> {
        let url = base.get_api_key(id).map_err(|e| CallError::transient(e.to_string()))?;
        let body = client.get(url).await?;
        admin_api::parse_api_key(&body).map_err(|e| CallError::transient(e.to_string()))
    }

    /// Sets the key's Admin API status. The key is read before and after: any status other than
    /// `active` counts as done (archived and expired keys cannot be changed, and are stopped
    /// already), so a retirement never loops on a key the organization has stopped.
    async fn set_status(&self, order: &RetireOrder) -> Result<String, CallError> {
        let setup = |e: PollError| CallError { message: e.message, needs_operator: e.needs_operator, http_status: None };
        let base = self.base().map_err(setup)?;
        let client = self.client().map_err(setup)?;
        let before = self.read_key(&client, &base, &order.api_key_id).await?;
        if before.status != ApiKeyStatus::Active {
            return Ok(before.status.to_string());
        }
        let url = base.update_api_key(&order.api_key_id).map_err(|e| CallError::transient(e.to_string()))?;
        let body = UpdateApiKeyBody { name: None, status: Some(order.status.as_str().to_string()) };
        let body = serde_json::to_vec(&body).map_err(|e| CallError::transient(e.to_string()))?;
        let update = client.post(url, body).await;
        // Read back whatever the update answered: a failed update may still have landed.
        let after = self.read_key(&client, &base, &order.api_key_id).await;
        match (after, update) {
            (Ok(key), _) if key.status != ApiKeyStatus::Active => Ok(key.status.to_string()),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(_), Ok(_)) => Err(CallError::transient(format!(
                "the Admin API still holds {} as active after setting it {}",
                order.api_key_id,
                order.status.as_str()
            ))),
        }
    }

    async fn list_all_keys(&self) -> Result<Vec<ApiKeyObject>, CallError> {
        self.list_keys_with(false).await
    }

    /// Every page of the organization's keys; `interactive`: one attempt per page, short timeout.
    async fn list_keys_with(&self, interactive: bool) -> Result<Vec<ApiKeyObject>, CallError> {
        let to_call_error = CallError::transient;
        let base = self.base().map_err(|e| CallError::for_operator(e.message))?;
        let client = AdminClient { interactive, ..self.client().map_err(|e| CallError::for_operator(e.message))? };
        let mut keys = vec![];
        let mut after: Option<String> = None;
        loop {
            let url = base.list_api_keys(after.as_deref(), 1000).map_err(|e| to_call_error(e.to_string()))?;
            let body = client.get(url).await?;
            let (page, left_out) = admin_api::parse_api_key_page(&body).map_err(|e| to_call_error(e.to_string()))?;
            if left_out > 0 {
                log::warn(&format!("{left_out} API key objects of the organization could not be read and were left out"));
            }
            after = admin_api::next_list_cursor(&page).map_err(|e| to_call_error(e.to_string()))?;
            keys.extend(page.data);
            if after.is_none() {
                return Ok(keys);
            }
        }
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
        learn_issuer_name().await;
        log::info("ready");
        self.tick().await;
        loop {
            let until_poll = self.status.next_poll.map_or(0, |t| (t - now()).num_seconds());
            if until_poll <= 0 && !self.polling {
                self.tick().await;
                continue;
            }
            // Between polls (or while a tick started by "poll now" runs), wake for retirements at
            // least every RETIREMENT_CHECK_SECS. Always await here: a loop that does not yield
            // would stall the process.
            let wait_secs = until_poll.clamp(1, RETIREMENT_CHECK_SECS) as u64;
            let _ = hyperapp::sleep(wait_secs * 1000).await;
            if !self.polling && self.status.next_poll.is_some_and(|t| now() < t) {
                self.retire_pass().await;
            }
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
            // Another organization or server: fetch its history afresh, and never send it the
            // admin key set for the old one.
            self.usage_cursor = None;
            self.cost_cursor = None;
            self.admin_key = None;
            self.status.admin_key_set = false;
        }
        self.config = config;
        self.save();
        Ok(())
    }

    /// Receives the admin key from the issuer; answers only its display prefix.
    #[local]
    fn set_admin_key(&mut self) -> Result<AdminKeyInfo, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        // The key comes in the message's blob, never its body (a node prints bodies).
        let blob = hyperware_process_lib::get_blob().ok_or("the admin key must come in the message's blob")?;
        let text = std::str::from_utf8(&blob.bytes).map_err(|_| "the admin key is not text".to_string())?;
        let admin_key = AdminKey::parse(text).map_err(|e| e.to_string())?;
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
        // Runs in the background of the dashboard (it follows the check): waits its turn and retries.
        Ok(match self.list_all_keys_patiently().await {
            Ok(keys) => ConnectionTest {
                ok: true,
                message: format!("connected: the admin key can see {} API keys", keys.len()),
                api_keys_visible: keys.len() as u64,
            },
            Err(message) => ConnectionTest { ok: false, message, api_keys_visible: 0 },
        })
    }

    /// Starts a tick now (answers at once; the tick runs on its own).
    #[local]
    fn poll_now(&mut self) -> Result<(), String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        self.start_in_background(Background::Tick);
        Ok(())
    }

    /// Every key of the organization (all pages), for matching a key the operator adds or
    /// matches by hand. Key objects carry hints only, never a secret.
    ///
    /// `patient` (background work): waits for a running poll and retries as a poll does;
    /// otherwise bounded for a dashboard call.
    #[local]
    async fn list_org_keys(&mut self, patient: bool) -> Result<Vec<ApiKeyObject>, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        if patient {
            self.list_all_keys_patiently().await
        } else {
            self.list_all_keys_interactively().await
        }
    }

    /// Creates a workspace for one key (workspace-per-key mode).
    #[local]
    async fn create_workspace(&mut self, name: String) -> Result<Workspace, String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        let base = self.base().map_err(|e| e.message)?;
        let client = self.client().map_err(|e| e.message)?;
        let body = serde_json::to_vec(&CreateWorkspaceBody { name }).map_err(|e| e.to_string())?;
        let client = AdminClient { interactive: true, ..client };
        self.take_admin_api_interactively().await?;
        let answer = client.post(base.create_workspace(), body).await;
        self.release_admin_api();
        admin_api::parse_workspace(&answer.map_err(|e| e.message)?).map_err(|e| e.to_string())
    }

    /// The issuer retired or matched a key: carry out the pending work now rather than at the
    /// next tick.
    #[local]
    fn do_pending_work(&mut self) -> Result<(), String> {
        if !from_our_issuer(&hyperapp::source()) {
            return Err(NOT_FROM_ISSUER.to_string());
        }
        self.start_in_background(Background::PendingWork);
        Ok(())
    }
}
