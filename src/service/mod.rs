//! The one writer: every state change goes through [`Service`].
//!
//! `mod.rs` holds intake and the incident commands; `paging.rs` the
//! escalation steps, timers and outbox bookkeeping; `directory.rs` the
//! read-only view of users, schedules and policies built from the config;
//! `feed.rs` the broadcast of changed incidents (after each write is on
//! disk) that the console's live updates read.
//!
//! Intake, the REST API and chat commands call it. It asks the pure domain
//! ([`crate::incident`]) for the decision, writes the new state and its
//! timeline entries in one store transaction, and returns only once they
//! are on disk. `writer.rs` runs those transactions on one thread, batching
//! whatever is queued into one transaction and one flush.

mod chat;
pub mod directory;
pub mod feed;
pub mod heartbeat;
mod intake;
pub mod leader;
pub mod maintenance;
mod paging;
mod phone;
mod report;
pub mod retention;
pub mod routing;
mod runbook;
pub mod sign_in;
pub mod stakeholders;
mod writer;

pub use chat::incident_context;
pub use directory::Directory;
pub use intake::flood_key;

use crate::clock::Clock;
use crate::config::IntegrationConfig;
use crate::incident::AlertEvent;
use crate::incident::{Actor, Change, Incident, IncidentError, IncidentId, ServiceChange};
use crate::store::{Store, StoreError, Tx};
use serde::Serialize;
use std::sync::Arc;
use tracing::{Instrument, info, info_span};

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such incident.
    #[error("incident {0} does not exist")]
    NotFound(IncidentId),
    /// The domain refused the command (already resolved, ...).
    #[error(transparent)]
    Refused(#[from] IncidentError),
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one alert event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Opened a new incident.
    Opened,
    /// Was grouped into an open incident.
    Appended,
    /// Acknowledged an incident.
    Acknowledged,
    /// Resolved an incident.
    Resolved,
    /// Reopened an incident that resolved within its service's
    /// `reopen_within`.
    Reopened,
    /// Concerned no open incident (a resolve or acknowledge for an unknown
    /// or already resolved key); stored, changed nothing.
    NoOpenIncident,
    /// Went to its integration's flood incident: the request or the
    /// integration had opened as many incidents as `[intake]` allows.
    Flood,
    /// A routing rule with `drop = true` matched: stored, nothing opened.
    Dropped,
}

/// The outcome of one alert event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The event's dedup key.
    pub dedup_key: String,
    /// The incident it went to.
    pub incident: Option<IncidentId>,
    /// What it did.
    pub effect: Effect,
}

/// Wakes the background tasks when new work is written, and records that
/// they are alive (for `/readyz`).
#[derive(Debug, Default)]
pub struct Wakers {
    /// The escalation scheduler: a timer was added.
    pub scheduler: tokio::sync::Notify,
    /// The outbox worker: an entry was queued or came due.
    pub outbox: tokio::sync::Notify,
    /// When the scheduler last went round its loop (unix millis; 0: never).
    pub scheduler_beat: std::sync::atomic::AtomicI64,
    /// The last chat call per platform: `None` if it worked, else the error.
    pub chat_health: parking_lot::Mutex<std::collections::BTreeMap<String, Option<String>>>,
}

/// How many API store reads run at once (see [`Service::read`]).
pub const READERS: usize = 2;

/// The application service.
#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    directory: Arc<Directory>,
    wakers: Arc<Wakers>,
    writer: Arc<writer::Writer>,
    floods: Arc<intake::FloodWindows>,
    rates: Arc<intake::RateLimits>,
    /// Each service's latest changes, newest first (loaded at start, kept
    /// up to date by [`Service::record_change`]): a new incident shows them
    /// without a store scan inside its transaction.
    changes: Arc<parking_lot::Mutex<std::collections::HashMap<String, Vec<ServiceChange>>>>,
    /// Store reads for the API run on blocking threads, at most this many
    /// at once, so readers queue instead of taking every core from intake.
    readers: Arc<tokio::sync::Semaphore>,
    /// Each heartbeat's pending timer.
    beats: Arc<heartbeat::Beats>,
    /// Incidents changed by each write, once it is on disk.
    feed: Arc<feed::Feed>,
    /// The open incidents that are flapping (loaded at start from the open
    /// incidents, kept up to date as writes commit).
    flapping: Arc<parking_lot::Mutex<std::collections::BTreeSet<IncidentId>>>,
    /// The `[[maintenance]]` windows (runtime ones are in the store).
    config_windows: Arc<Vec<crate::maintenance::Window>>,
    /// Sends sign-in links by email, once the app installs `[smtp]`.
    mailer: Arc<std::sync::OnceLock<Arc<dyn sign_in::Mailer>>>,
    /// Whether this replica runs the singletons (see [`leader`]).
    leader: Arc<tokio::sync::watch::Sender<bool>>,
    /// When each user was last emailed a sign-in link (at most one a
    /// minute, so the form cannot flood an inbox).
    emailed:
        Arc<parking_lot::Mutex<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>>>,
}

/// Each service's latest changes, from the store.
fn load_changes(
    store: &dyn Store,
    directory: &Directory,
) -> Result<std::collections::HashMap<String, Vec<ServiceChange>>, StoreError> {
    let mut changes = std::collections::HashMap::new();
    for svc in &directory.config.services {
        let recent = store.recent_changes(&svc.name, crate::incident::RECENT_CHANGES_SHOWN)?;
        changes.insert(svc.name.clone(), recent);
    }
    Ok(changes)
}

/// The open incidents that are flapping, from the store. Only a service
/// with `flapping` configured marks its incidents so, so only its open
/// incidents are read: a restart with a million open incidents of other
/// services reads none of them here.
fn load_flapping(
    store: &dyn Store,
    directory: &Directory,
) -> Result<std::collections::BTreeSet<IncidentId>, StoreError> {
    let mut flapping = std::collections::BTreeSet::new();
    for svc in directory
        .config
        .services
        .iter()
        .filter(|s| s.flapping.is_some())
    {
        let filter = crate::store::OpenFilter {
            service: Some(svc.name.clone()),
            ..Default::default()
        };
        each_open(store, &filter, |i| {
            if i.is_flapping() {
                flapping.insert(i.id);
            }
        })?;
    }
    Ok(flapping)
}

/// Calls `f` with each open incident the filter admits, newest first, a
/// page at a time from the open index, so memory holds one page however
/// many are open (decoding all 100,000 open incidents at once took a
/// restart's RSS to 650 MB).
pub(crate) fn each_open(
    store: &dyn Store,
    filter: &crate::store::OpenFilter,
    mut f: impl FnMut(Incident),
) -> Result<(), StoreError> {
    const PAGE: usize = 256;
    let mut before = None;
    loop {
        // A page can come back short when incidents were resolved
        // meanwhile, so only an empty one is the end.
        let page = store.open_incidents(filter, before, PAGE)?;
        let Some(last) = page.last().map(|i| i.id) else {
            return Ok(());
        };
        before = Some(last);
        page.into_iter().for_each(&mut f);
    }
}

impl Service {
    /// Reads again what this process caches from a store other replicas
    /// also write: the runtime overrides (each call), and with `all`, each
    /// service's latest changes and the flapping incidents.
    pub(crate) fn refresh_shared_caches(&self, all: bool) -> Result<(), StoreError> {
        self.directory.load_overrides(self.store.as_ref())?;
        if all {
            let changes = load_changes(self.store.as_ref(), &self.directory)?;
            *self.changes.lock() = changes;
            let flapping = load_flapping(self.store.as_ref(), &self.directory)?;
            *self.flapping.lock() = flapping;
        }
        Ok(())
    }

    /// A service over `store`, telling time by `clock`, paging per
    /// `directory` (whose runtime overrides it loads from the store).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        directory: Arc<Directory>,
    ) -> Result<Self, StoreError> {
        directory.load_overrides(store.as_ref())?;
        let changes = load_changes(store.as_ref(), &directory)?;
        let flapping = load_flapping(store.as_ref(), &directory)?;
        let config_windows = Arc::new(maintenance::config_windows(&directory.config));
        let wakers = Arc::new(Wakers::default());
        {
            // Another replica's timers and pages wake this one's scheduler
            // and outbox worker (a shared store; the embedded one never
            // calls).
            let wakers = Arc::downgrade(&wakers);
            store.on_wake(Arc::new(move |w| {
                if let Some(wakers) = wakers.upgrade() {
                    match w {
                        crate::store::Wake::Timers => wakers.scheduler.notify_one(),
                        crate::store::Wake::Outbox => wakers.outbox.notify_one(),
                    }
                }
            }));
        }
        let writer = Arc::new(writer::Writer::start(
            store.clone(),
            directory.config.server.max_queued_writes,
        )?);
        Ok(Self {
            writer,
            store,
            clock,
            directory,
            wakers,
            floods: Arc::default(),
            rates: Arc::default(),
            changes: Arc::new(parking_lot::Mutex::new(changes)),
            readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
            beats: Arc::default(),
            feed: Arc::default(),
            flapping: Arc::new(parking_lot::Mutex::new(flapping)),
            config_windows,
            mailer: Arc::default(),
            emailed: Arc::default(),
            leader: Arc::new(tokio::sync::watch::channel(false).0),
        })
    }

    /// How many open incidents are flapping now.
    pub fn flapping_count(&self) -> usize {
        self.flapping.lock().len()
    }

    /// Runs `read` against the store on a blocking thread (never on the
    /// async runtime's), at most [`READERS`] at once.
    pub async fn read<T, F>(&self, read: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .readers
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(format!("reading: {e}")))?;
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || read(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend(format!("reading: {e}")))??)
    }

    /// Stores a runtime schedule override.
    pub async fn add_override(
        &self,
        o: crate::store::StoredOverride,
    ) -> Result<crate::store::StoredOverride, ServiceError> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.add_override(o))
            .await
            .map_err(|e| StoreError::Backend(format!("adding an override: {e}")))??;
        self.directory.remember_override(stored.clone());
        info!(schedule = %stored.schedule, user = %stored.user, start = %stored.start, end = %stored.end, "Override added");
        Ok(stored)
    }

    /// Deletes a runtime schedule override; whether it existed.
    pub async fn delete_override(&self, schedule: &str, id: u64) -> Result<bool, ServiceError> {
        let store = self.store.clone();
        let name = schedule.to_string();
        let existed = tokio::task::spawn_blocking(move || store.delete_override(&name, id))
            .await
            .map_err(|e| StoreError::Backend(format!("deleting an override: {e}")))??;
        self.directory.forget_override(schedule, id);
        Ok(existed)
    }

    /// Makes an API token for the configured `user`: its record and the
    /// token, which exists nowhere else (only its hash is stored).
    pub async fn create_token(
        &self,
        user: &str,
        scope: crate::access::Scope,
        created_by: &str,
    ) -> Result<(crate::access::ApiToken, String), ServiceError> {
        let (record, token) =
            crate::access::ApiToken::generate(user, scope, created_by, self.clock.now());
        let store = self.store.clone();
        let stored = record.clone();
        tokio::task::spawn_blocking(move || store.put_token(&stored))
            .await
            .map_err(|e| StoreError::Backend(format!("storing a token: {e}")))??;
        info!(id = %record.id, user = %record.user, scope = %record.scope, by = %created_by, "API token created");
        Ok((record, token))
    }

    /// Revokes an API token: the record as it now is, or `None` if there
    /// is no such token. Revoking twice keeps the first revocation's time.
    pub async fn revoke_token(
        &self,
        id: &str,
        by: &str,
    ) -> Result<Option<crate::access::ApiToken>, ServiceError> {
        let Some(mut record) = self.store.token(id)? else {
            return Ok(None);
        };
        if record.revoked_at.is_none() {
            record.revoked_at = Some(self.clock.now());
            let store = self.store.clone();
            let stored = record.clone();
            tokio::task::spawn_blocking(move || store.put_token(&stored))
                .await
                .map_err(|e| StoreError::Backend(format!("revoking a token: {e}")))??;
            info!(id = %record.id, user = %record.user, by, "API token revoked");
        }
        Ok(Some(record))
    }

    /// Users, schedules and policies.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The wakers of the background tasks.
    pub fn wakers(&self) -> &Arc<Wakers> {
        &self.wakers
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The feed of incident changes (for the console's live updates).
    pub fn feed(&self) -> &Arc<feed::Feed> {
        &self.feed
    }

    /// Applies the events of one request from `integration`, in chunks of a
    /// few hundred (each one transaction), and returns once all are on disk.
    /// A failure part-way means no answer to the sender, who sends again;
    /// events applied twice change nothing but the event count.
    pub async fn ingest(
        &self,
        integration: &IntegrationConfig,
        events: Vec<AlertEvent>,
    ) -> Result<Vec<EventOutcome>, ServiceError> {
        let session = self.ingest_session(integration);
        let mut outcomes = Vec::with_capacity(events.len());
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<AlertEvent> = events.by_ref().take(INGEST_CHUNK).collect();
            outcomes.extend(session.apply(chunk).await?);
        }
        Ok(outcomes)
    }

    /// Records a change to `integration`'s service (a PagerDuty change
    /// event); incidents that open on it in the next day show it.
    pub async fn record_change(
        &self,
        integration: &IntegrationConfig,
        change: ServiceChange,
    ) -> Result<(), ServiceError> {
        let service = integration.service.clone();
        let (svc_name, stored) = (service.clone(), change.clone());
        self.write(writer::Priority::Now, move |tx| {
            tx.record_change(&svc_name, &stored)
        })
        .await?;
        let mut all = self.changes.lock();
        let list = all.entry(service.clone()).or_default();
        list.push(change);
        list.sort_by_key(|c| std::cmp::Reverse(c.at));
        list.truncate(crate::incident::RECENT_CHANGES_SHOWN);
        info!(service = %service, integration = %integration.name, "Change recorded");
        Ok(())
    }

    /// The service's latest changes, newest first.
    pub fn recent_changes(&self, service: &str) -> Vec<ServiceChange> {
        self.changes
            .lock()
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// One request's intake, fed in chunks of at most [`INGEST_CHUNK`]
    /// events as they are parsed; the request's new-incident budget spans
    /// all of them.
    pub fn ingest_session(&self, integration: &IntegrationConfig) -> IngestSession {
        IngestSession {
            svc: self.clone(),
            integration: Arc::new(integration.clone()),
            budget: Arc::new(intake::RequestBudget::new(
                self.directory.config.intake.max_new_incidents_per_request,
            )),
            now: self.clock.now(),
        }
    }

    /// A person acknowledges an incident; escalation stops.
    pub async fn acknowledge(&self, id: IncidentId, by: Actor) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        self.change(id, move |tx, inc| {
            let mut change = inc.acknowledge(by.clone(), now)?;
            paging::stop_escalation(tx, &mut change.incident)?;
            Ok(change)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// A person resolves an incident.
    pub async fn resolve(
        &self,
        id: IncidentId,
        by: Actor,
        note: Option<String>,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        self.change(id, move |tx, inc| {
            let mut change = inc.resolve(by.clone(), note.clone(), now)?;
            paging::stop_escalation(tx, &mut change.incident)?;
            paging::sync_expiry(tx, &mut change.incident)?;
            Ok(change)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Pauses paging for `duration`; the incident triggers again after it.
    pub async fn snooze(
        &self,
        id: IncidentId,
        by: Actor,
        duration: chrono::Duration,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let svc = self.clone();
        self.change(id, move |tx, inc| {
            let mut change = inc.snooze(by.clone(), now + duration, now)?;
            svc.schedule_unsnooze(tx, &mut change, now + duration)
                .map_err(ChangeError::Store)?;
            Ok(change)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Runs the next escalation step now.
    pub async fn escalate(&self, id: IncidentId, by: Actor) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let svc = self.clone();
        self.change(id, move |tx, inc| {
            svc.escalate_now(tx, inc, by.clone(), now)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Runs `decide` on the incident in one transaction and writes the change.
    async fn change<D>(&self, id: IncidentId, decide: D) -> Result<Incident, ServiceError>
    where
        D: Fn(&mut dyn Tx, &Incident) -> Result<Change, ChangeError> + Send + 'static,
    {
        let svc = self.clone();
        let incident = self
            .write(writer::Priority::Now, move |tx| {
                let Some(current) = tx.incident(id)? else {
                    return Ok(Err(ServiceError::NotFound(id)));
                };
                match decide(tx, &current) {
                    Ok(change) => {
                        svc.write_change(tx, &change)?;
                        Ok(Ok(change.incident))
                    }
                    Err(ChangeError::Refused(e)) => Ok(Err(e.into())),
                    Err(ChangeError::Store(e)) => Err(e),
                }
            })
            .await??;
        info!(status = %incident.status, "Incident changed");
        Ok(incident)
    }

    /// Runs `f` through the writer (see [`writer`]), before background work
    /// if somebody waits for it: returns once its
    /// transaction is on disk, then wakes the scheduler if it added a timer
    /// and the outbox worker if it queued an entry.
    async fn write<R, F>(&self, priority: writer::Priority, mut f: F) -> Result<R, StoreError>
    where
        F: FnMut(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (result, wrote, changed) = self
            .writer
            .write(priority, move |tx| {
                let mut noted = writer::Noting::new(tx);
                let result = f(&mut noted)?;
                Ok((result, noted.wrote, noted.changed))
            })
            .await?;
        self.feed.publish(&changed);
        if wrote.timer {
            self.wakers.scheduler.notify_one();
        }
        if wrote.outbox {
            self.wakers.outbox.notify_one();
        }
        if !wrote.flapping.is_empty() {
            let mut set = self.flapping.lock();
            for (id, flapping) in wrote.flapping {
                if flapping {
                    set.insert(id);
                } else {
                    set.remove(&id);
                }
            }
        }
        Ok(result)
    }
}

/// Events per intake transaction.
pub const INGEST_CHUNK: usize = intake::CHUNK;

/// One request's intake; see [`Service::ingest_session`].
pub struct IngestSession {
    svc: Service,
    integration: Arc<IntegrationConfig>,
    budget: Arc<intake::RequestBudget>,
    now: chrono::DateTime<chrono::Utc>,
}

impl IngestSession {
    /// Applies the next chunk in one transaction; returns once it is on disk.
    pub async fn apply(&self, chunk: Vec<AlertEvent>) -> Result<Vec<EventOutcome>, ServiceError> {
        let total = chunk.len() as u64;
        let chunk = Arc::new(chunk);
        let (svc, integration, budget, now) = (
            self.svc.clone(),
            self.integration.clone(),
            self.budget.clone(),
            self.now,
        );
        let outcomes = self
            .svc
            .write(writer::Priority::Now, move |tx| {
                svc.apply_events(tx, &integration, &chunk, now, &budget)
            })
            .await?;
        let name = &self.integration.name;
        crate::metrics::METRICS
            .alerts_received
            .get_or_create(&crate::metrics::labels([
                ("integration", name),
                ("outcome", "accepted"),
            ]))
            .inc_by(total);
        for o in &outcomes {
            if let Some(id) = o.incident
                && !matches!(o.effect, Effect::Appended | Effect::Flood)
            {
                let span = info_span!("incident", incident = %id);
                span.in_scope(|| {
                    info!(integration = %name, dedup_key = %o.dedup_key, effect = ?o.effect, "Alert applied");
                });
            }
        }
        Ok(outcomes)
    }
}

/// Why a command's decision failed inside a transaction.
enum ChangeError {
    Refused(IncidentError),
    Store(StoreError),
}

impl From<IncidentError> for ChangeError {
    fn from(e: IncidentError) -> Self {
        Self::Refused(e)
    }
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Service {
    /// Writes an incident and its new timeline entries, and queues what chat
    /// must show of the change. A resolved incident leaves the open index,
    /// so the next trigger opens a new one.
    pub(crate) fn write_change(&self, tx: &mut dyn Tx, change: &Change) -> Result<(), StoreError> {
        let before = tx.incident(change.incident.id)?;
        self.write_change_after(tx, before.as_ref(), change)
    }

    /// [`Service::write_change`] when the stored state is already at hand.
    pub(crate) fn write_change_after(
        &self,
        tx: &mut dyn Tx,
        before: Option<&Incident>,
        change: &Change,
    ) -> Result<(), StoreError> {
        observe_response_times(before, &change.incident);
        let audit = &self.directory.config.audit;
        let reopens = self.directory.config.services.iter().any(|s| {
            s.name == change.incident.service && (s.reopen_within.is_some() || s.flapping.is_some())
        });
        if change.incident.flap.is_some() {
            sync_flap_timers(tx, before, &change.incident)?;
        }
        let head = write_incident(tx, change, audit.key.as_ref(), reopens)?;
        let inc = &change.incident;
        if inc.status == crate::incident::Status::Resolved
            && before.is_some_and(|b| b.status != crate::incident::Status::Resolved)
        {
            self.record_chain_head(tx, inc, &head)?;
        }
        self.queue_stakeholders(tx, &change.incident, &change.entries)?;
        self.queue_chat(tx, before, &change.incident, &change.entries)
    }

    /// Writes a resolved incident's chain head to the log and, with
    /// `[audit] webhook`, queues it for that webhook in the same
    /// transaction: a copy outside the store that `tocsin audit verify
    /// --head` checks the stored chain against.
    fn record_chain_head(
        &self,
        tx: &mut dyn Tx,
        inc: &Incident,
        head: &str,
    ) -> Result<(), StoreError> {
        info!(target: "tocsin::audit", incident = %inc.id, uid = %inc.uid, entries = inc.timeline_len, head = %head, "audit chain head at resolve");
        let Some(hook) = &self.directory.config.audit.webhook else {
            return Ok(());
        };
        let now = self.clock.now();
        tx.put_outbox(&crate::notify::OutboxEntry {
            key: format!("{}/audit/{}", inc.id, inc.timeline_len),
            job: crate::notify::Job::AuditHead {
                head: head.to_string(),
                entries: inc.timeline_len,
            },
            incident: inc.id,
            recipient: crate::escalation::Recipient::Webhook(hook.clone()),
            method: crate::config::ContactKind::Webhook,
            method_index: 0,
            page: crate::notify::PageContent {
                incident: inc.id,
                title: String::new(),
                severity: inc.severity,
                service: inc.service.clone(),
                step: 0,
                round: 0,
            },
            created_at: now,
            first_due: now,
            due: now,
            attempts: 0,
            last_error: None,
            state: crate::notify::DeliveryState::Pending,
            generation: None,
            incident_uid: inc.uid.clone(),
        })
    }
}

/// Keeps a watched incident's timers on its flap state, in the change's
/// transaction: the settle timer on [`Incident::settle_due`], and an
/// escalation timer the domain dropped (a held resolve ends the run) gone.
fn sync_flap_timers(
    tx: &mut dyn Tx,
    before: Option<&Incident>,
    after: &Incident,
) -> Result<(), StoreError> {
    use crate::escalation::Timer;
    let old = before.and_then(Incident::settle_due);
    let new = after.settle_due();
    if old != new {
        if let Some(due) = old {
            tx.delete_timer(&Timer::flap_settle(after.id, due))?;
        }
        if let Some(due) = new {
            tx.put_timer(&Timer::flap_settle(after.id, due))?;
        }
    }
    let timer = |i: &Incident| i.escalation.as_ref().and_then(|e| e.timer);
    if let Some(t) = before.and_then(timer)
        && timer(after).is_none()
    {
        tx.delete_timer(&t)?;
    }
    Ok(())
}

/// Time to acknowledge and to resolve, when a change first reaches them.
fn observe_response_times(before: Option<&Incident>, after: &Incident) {
    use crate::metrics::METRICS;
    if let Some(at) = after.acknowledged_at
        && before.is_none_or(|b| b.acknowledged_at.is_none())
    {
        METRICS
            .time_to_acknowledge
            .observe((at - after.created_at).num_milliseconds() as f64 / 1000.0);
    }
    if let Some(at) = after.resolved_at
        && before.is_none_or(|b| b.resolved_at.is_none())
    {
        METRICS
            .time_to_resolve
            .observe((at - after.created_at).num_milliseconds() as f64 / 1000.0);
    }
}

/// Writes the incident and its new entries, sealing the entries' links with
/// the audit key if one is set; returns the chain head as stored.
/// With `remember_resolve` (the service has `reopen_within`), an incident
/// leaving the open index resolved is noted as its key's last resolved one.
fn write_incident(
    tx: &mut dyn Tx,
    change: &Change,
    key: Option<&crate::secret::Secret>,
    remember_resolve: bool,
) -> Result<String, StoreError> {
    let sealed;
    let (inc, entries) = match key {
        Some(k) if !change.entries.is_empty() => {
            let mut inc = change.incident.clone();
            let mut entries = change.entries.clone();
            inc.timeline_head = crate::incident::seal(&mut entries, k).unwrap_or_default();
            sealed = (inc, entries);
            (&sealed.0, sealed.1.as_slice())
        }
        _ => (&change.incident, change.entries.as_slice()),
    };
    tx.put_incident(inc)?;
    for entry in entries {
        tx.append_timeline(inc.id, entry)?;
    }
    if !inc.status.is_open() && tx.open_incident(&inc.service, &inc.dedup_key)? == Some(inc.id) {
        tx.set_open_incident(&inc.service, &inc.dedup_key, None)?;
        if let Some(at) = inc.resolved_at.filter(|_| remember_resolve) {
            let last = crate::store::RecentlyResolved {
                incident: inc.id,
                at,
            };
            tx.set_recently_resolved(&inc.service, &inc.dedup_key, Some(&last))?;
        }
    }
    Ok(inc.timeline_head.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenFilter, SledStore};

    /// More open incidents than a page: each is seen once, newest first,
    /// and the resolved ones between them never.
    #[test]
    fn each_open_visits_every_open_incident_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .transact(&mut |tx| {
                for i in 0..700u64 {
                    let id = tx.next_incident_id()?;
                    let mut inc = crate::store::suite::opening(id, &format!("k{i}")).incident;
                    if i % 3 == 0 {
                        inc.status = crate::incident::Status::Resolved;
                    }
                    tx.put_incident(&inc)?;
                }
                Ok(())
            })
            .unwrap();
        let mut seen = Vec::new();
        each_open(&store, &OpenFilter::default(), |i| seen.push(i.id.0)).unwrap();
        let want: Vec<u64> = (1..=700u64).rev().filter(|id| (id - 1) % 3 != 0).collect();
        assert_eq!(want.len(), 466);
        assert_eq!(seen, want);
    }
}
