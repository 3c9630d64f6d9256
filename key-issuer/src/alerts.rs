//! Alerts in the issuer: evaluates `shared_types::alerts` wherever state changes (sweeps, pushes
//! from the poller, operator actions, the expiry timer), writes each transition to SQLite, then
//! posts it to the operator's webhook.
//!
//! The open alerts are read back from SQLite once the database opens; until then nothing is
//! evaluated, so a restart never raises an open alert again. Writes and webhook posts each run
//! in one background worker, in order: the HTTP client reads an answer's body from the process's
//! last message, so posts go one at a time.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use hyperware_process_lib::http::client::send_request_await_response;
use hyperware_process_lib::http::Method;
use hyperware_process_lib::{hyperapp, our};
use shared_types::alerts::{
    self, AlertBook, AlertEntry, AlertQuery, AlertView, AlertsPage, Condition, DeliveryStep, OpenAlert, Snapshot, Transition,
    WebhookDelivery,
};
use shared_types::sql::text;
use shared_types::wit_api::rfc3339;
use shared_types::Timestamp;

use crate::db::{self, Db, DbResult};
use crate::{log, now, KeyIssuer};

/// Seconds one webhook attempt may take.
const WEBHOOK_TIMEOUT_SECS: u64 = 10;
/// Attempts to write one transition before it is given up (and logged).
const WRITE_ATTEMPTS: u32 = 3;
/// Deliveries waiting beyond this are dropped, oldest first: a dead webhook must not grow memory.
const MAX_QUEUED_DELIVERIES: usize = 200;

/// The issuer's alert machinery, shared with its background workers.
#[derive(Clone, Default)]
pub struct Alerts(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    /// None until the open alerts are read back from SQLite.
    book: Option<AlertBook>,
    loading: bool,
    /// Transitions to write, in order, each with the webhook to post it to.
    writes: VecDeque<(Transition, Option<String>)>,
    writing: bool,
    /// Webhook posts waiting their turn: (URL, text).
    deliveries: VecDeque<(String, String)>,
    delivering: bool,
    last_delivery: Option<WebhookDelivery>,
}

impl Alerts {
    fn loaded(&self) -> bool {
        self.0.borrow().book.is_some()
    }

    /// Reads the open alerts back from SQLite (once; a failure is retried at the next evaluation).
    pub async fn load(&self, db: &Db) {
        if self.loaded() || self.0.borrow().loading {
            return;
        }
        self.0.borrow_mut().loading = true;
        let open = db.open_alerts().await;
        let mut inner = self.0.borrow_mut();
        inner.loading = false;
        match open {
            Ok(open) => inner.book = Some(AlertBook::restore(open)),
            Err(e) => log::warn(&format!("open alerts not read yet: {e}")),
        }
    }

    fn load_in_background(&self, db: Db) {
        let alerts = self.clone();
        hyperapp::spawn(async move { alerts.load(&db).await });
    }

    /// Applies what holds now; None while the book is not loaded.
    fn apply(&self, holding: std::collections::BTreeMap<Condition, String>, at: Timestamp) -> Option<Vec<Transition>> {
        self.0.borrow_mut().book.as_mut().map(|book| book.apply(holding, at))
    }

    fn open_views(&self) -> Vec<AlertView> {
        let inner = self.0.borrow();
        let Some(book) = &inner.book else { return vec![] };
        let mut open: Vec<AlertView> = book.open().map(|(c, a)| AlertView::open(c, a)).collect();
        // Newest first, critical before warning.
        open.sort_by(|a, b| (b.severity == alerts::Severity::Critical).cmp(&(a.severity == alerts::Severity::Critical)).then(b.raised_at.cmp(&a.raised_at)));
        open
    }

    /// Queues transitions to be written and then posted.
    fn record(&self, db: Db, transitions: Vec<Transition>, webhook: Option<String>) {
        let start = {
            let mut inner = self.0.borrow_mut();
            inner.writes.extend(transitions.into_iter().map(|t| (t, webhook.clone())));
            !std::mem::replace(&mut inner.writing, true)
        };
        if start {
            let alerts = self.clone();
            hyperapp::spawn(async move { alerts.write_all(db).await });
        }
    }

    async fn write_all(self, db: Db) {
        loop {
            let next = self.0.borrow_mut().writes.pop_front();
            let Some((transition, webhook)) = next else { break };
            if let Err(e) = write_with_retries(&db, &transition).await {
                log::warn(&format!("alert {} not stored: {e}", transition.condition()));
            }
            if let Some(url) = webhook {
                self.deliver(db.clone(), url, alerts::webhook_text(our().node(), &transition));
            }
        }
        self.0.borrow_mut().writing = false;
    }

    /// Queues one webhook post.
    pub fn deliver(&self, db: Db, url: String, text: String) {
        let start = {
            let mut inner = self.0.borrow_mut();
            if inner.deliveries.len() >= MAX_QUEUED_DELIVERIES {
                inner.deliveries.pop_front();
            }
            inner.deliveries.push_back((url, text));
            !std::mem::replace(&mut inner.delivering, true)
        };
        if start {
            let alerts = self.clone();
            hyperapp::spawn(async move { alerts.deliver_all(db).await });
        }
    }

    async fn deliver_all(self, db: Db) {
        loop {
            let next = self.0.borrow_mut().deliveries.pop_front();
            let Some((url, text)) = next else { break };
            let outcome = post_with_retries(&url, &text).await;
            if !outcome.delivered {
                // The URL is a credential of the channel: neither it nor the answer is logged.
                // Written straight to the database: through the one masking every audit text gets.
                let detail = shared_types::admin_api::redact(&text.chars().take(120).collect::<String>());
                if let Err(e) = db.append_audit(now(), "key-issuer", "alert webhook", &detail, &format!("not delivered: {}", outcome.outcome)).await {
                    log::warn(&e);
                }
            }
            self.0.borrow_mut().last_delivery = Some(outcome);
        }
        self.0.borrow_mut().delivering = false;
    }

    fn queued(&self) -> u32 {
        self.0.borrow().deliveries.len() as u32
    }

    fn last_delivery(&self) -> Option<WebhookDelivery> {
        self.0.borrow().last_delivery.clone()
    }
}

async fn write_with_retries(db: &Db, transition: &Transition) -> DbResult<()> {
    let mut last = String::new();
    for attempt in 0..WRITE_ATTEMPTS {
        match db.write_transition(transition).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        let _ = hyperapp::sleep(1000 << attempt).await;
    }
    Err(last)
}

/// Posts `text` with retries and backoff (`alerts::delivery_step`).
async fn post_with_retries(url: &str, text: &str) -> WebhookDelivery {
    let outcome = |delivered: bool, outcome: String, attempts: u32| WebhookDelivery { at: rfc3339(now()), delivered, outcome, attempts };
    let Ok(parsed) = url::Url::parse(url) else {
        return outcome(false, "the webhook URL is not valid".to_string(), 0);
    };
    let body = alerts::webhook_body(text).to_string().into_bytes();
    let headers: HashMap<String, String> = [("Content-Type".to_string(), "application/json".to_string())].into();
    let mut why = String::new();
    for attempt in 0..alerts::WEBHOOK_ATTEMPTS {
        let answer = send_request_await_response(Method::POST, parsed.clone(), Some(headers.clone()), WEBHOOK_TIMEOUT_SECS, body.clone()).await;
        let status = answer.as_ref().ok().map(|r| r.status().as_u16());
        why = match status {
            Some(s) => format!("HTTP {s}"),
            None => "no answer (timed out or connection failed)".to_string(),
        };
        match alerts::delivery_step(status) {
            DeliveryStep::Delivered => return outcome(true, "delivered".to_string(), attempt + 1),
            DeliveryStep::GiveUp => return outcome(false, format!("refused ({why}): check the webhook URL"), attempt + 1),
            DeliveryStep::Retry if attempt + 1 < alerts::WEBHOOK_ATTEMPTS => {
                let _ = hyperapp::sleep(alerts::webhook_backoff_secs(attempt) * 1000).await;
            }
            DeliveryStep::Retry => {}
        }
    }
    outcome(false, format!("{why} after {} attempts", alerts::WEBHOOK_ATTEMPTS), alerts::WEBHOOK_ATTEMPTS)
}

impl Db {
    /// The alerts never cleared, as the book holds them.
    pub async fn open_alerts(&self) -> DbResult<Vec<(Condition, OpenAlert)>> {
        let rows = self.read("SELECT alert, message, raised_at FROM alerts WHERE cleared_at IS NULL ORDER BY id".to_string(), "reading open alerts").await?;
        let mut open = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = db::string(row, "alert")?;
            // An id this release does not know (written by a newer one) is left to that release.
            let Ok(condition) = Condition::parse_id(&id) else { continue };
            open.push((condition, OpenAlert { message: db::string(row, "message")?, raised_at: db::timestamp(db::int(row, "raised_at")?)? }));
        }
        Ok(open)
    }

    pub async fn write_transition(&self, transition: &Transition) -> DbResult<()> {
        let statement = match transition {
            Transition::Raised { condition, message, at } => format!(
                "INSERT INTO alerts (alert, kind, message, raised_at, cleared_at) VALUES ({}, {}, {}, {}, NULL)",
                text(&condition.id()),
                text(condition.kind()),
                text(&shared_types::admin_api::redact(message)),
                at.timestamp()
            ),
            Transition::Cleared { condition, at, .. } => format!(
                "UPDATE alerts SET cleared_at = {} WHERE alert = {} AND cleared_at IS NULL",
                at.timestamp(),
                text(&condition.id())
            ),
        };
        self.write(statement, "storing an alert").await
    }

    /// A page of alert history, newest first.
    pub async fn alerts_page(&self, query: &AlertQuery, limit: u64) -> DbResult<Vec<AlertEntry>> {
        let mut filters = vec![];
        if let Some(kind) = &query.kind {
            filters.push(format!("kind = {}", text(kind)));
        }
        match query.state.as_deref() {
            Some("open") => filters.push("cleared_at IS NULL".to_string()),
            Some("cleared") => filters.push("cleared_at IS NOT NULL".to_string()),
            _ => {}
        }
        if let Some(before) = query.before_id {
            filters.push(format!("id < {before}"));
        }
        let filter = if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
        let rows = self
            .read(format!("SELECT id, alert, message, raised_at, cleared_at FROM alerts{filter} ORDER BY id DESC LIMIT {limit}"), "reading alerts")
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let Ok(condition) = Condition::parse_id(&db::string(row, "alert")?) else { continue };
            let cleared_at = match row.get("cleared_at").and_then(serde_json::Value::as_i64) {
                Some(secs) => Some(db::timestamp(secs)?),
                None => None,
            };
            let raised_at = db::timestamp(db::int(row, "raised_at")?)?;
            entries.push(AlertEntry { id: db::int(row, "id")?, alert: AlertView::of(&condition, &db::string(row, "message")?, raised_at, cleared_at) });
        }
        Ok(entries)
    }
}

impl KeyIssuer {
    /// Evaluates every alert against the state now and records what changed. Cheap when nothing
    /// changed (no I/O), so it runs at every state change.
    pub(crate) fn evaluate_alerts(&mut self, at: Timestamp) {
        let Some(db) = self.rt.db.clone() else { return };
        // Until the stored usage is read back, what holds is not known yet (the spend saved with
        // the state, no models seen): evaluating then would clear open alerts only to raise them again.
        if !self.rt.models_seen_loaded {
            return;
        }
        let alerts = self.rt.alerts.clone();
        if !alerts.loaded() {
            alerts.load_in_background(db);
            return;
        }
        let unknown_models: Vec<String> = self.unknown_models().into_iter().map(|m| m.model).collect();
        let snapshot = Snapshot {
            now: at,
            pool: &self.pool,
            poller: &self.poller_status,
            poll_interval_secs: self.settings.poller.poll_interval_secs,
            unknown_models: &unknown_models,
            settings: &self.settings.alerts,
        };
        let holding = alerts::holding(&snapshot);
        match alerts.apply(holding, at) {
            Some(transitions) if !transitions.is_empty() => {
                for t in &transitions {
                    let state = if matches!(t, Transition::Raised { .. }) { "raised" } else { "cleared" };
                    log::info(&format!("alert {state}: {}", t.condition()));
                }
                alerts.record(db, transitions, self.settings.alerts.webhook_url.clone());
            }
            _ => {}
        }
    }

    /// Reads the open alerts back once the database is open (at start).
    pub(crate) async fn load_alerts(&mut self) {
        if let Some(db) = self.rt.db.clone() {
            self.rt.alerts.clone().load(&db).await;
            self.evaluate_alerts(now());
        }
    }

    /// `ListAlerts`: the open alerts, a page of history and the webhook's state.
    pub(crate) async fn alerts_page(&mut self, query: AlertQuery) -> Result<AlertsPage, String> {
        let db = self.db().await?;
        let limit = shared_types::http_api::page_limit(query.limit);
        let history = db.alerts_page(&query, limit).await?;
        let next_before_id = if history.len() as u64 == limit { history.last().map(|e| e.id) } else { None };
        let view = alerts::AlertSettingsView::of(&self.settings.alerts);
        Ok(AlertsPage {
            open: self.rt.alerts.open_views(),
            history,
            next_before_id,
            webhook_set: view.webhook_set,
            webhook_hint: view.webhook_hint,
            last_delivery: self.rt.alerts.last_delivery(),
            deliveries_queued: self.rt.alerts.queued(),
        })
    }

    /// `SendTestAlert`: queues one test post to the webhook; its outcome shows in `ListAlerts`.
    pub(crate) async fn queue_test_alert(&mut self) -> Result<(), String> {
        let Some(url) = self.settings.alerts.webhook_url.clone() else {
            return Err("no webhook URL is set: set one under Settings → Alerts first".to_string());
        };
        let db = self.db().await?;
        self.rt.alerts.deliver(db, url, alerts::test_webhook_text(our().node()));
        Ok(())
    }
}
