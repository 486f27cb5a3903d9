//! Storage: the [`Store`] trait, its sled backend (the default) and its
//! PostgreSQL backend ([`PostgresStore`], for several replicas).
//!
//! Writes happen in [`Store::transact`]: everything a state change touches
//! (incident, timeline entries, the raw alert events, and later timers and
//! outbox entries) is written atomically or not at all. Durability is
//! separate: [`Store::flush`] returns once everything written before the
//! call is on disk (the sled backend syncs each transaction's log record
//! before it returns, so its flush has only the state marker left to do). The service's writer thread calls it once per batch of
//! transactions (group commit).

mod applier;
mod sled_store;
mod wal;

pub use sled_store::{
    BACKUP_END, BACKUP_FORMAT, BACKUP_VERSION, RestoreReport, STATE_MARKER, SledStore,
};

mod postgres;
pub use postgres::PostgresStore;

use crate::escalation::Timer;
use crate::incident::AlertEvent;
use crate::incident::{Incident, IncidentId, Severity, Status, TimelineEntry};
use crate::maintenance::StoredWindow;
use crate::notify::OutboxEntry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("stored record {key} is unreadable: {message}")]
    Corrupt {
        /// Which record.
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// The transaction's closure refused to go on; nothing was written.
    #[error("{0}")]
    Aborted(String),
    /// Too many writes are waiting: the write was not queued, nothing was
    /// written, and the caller should try again shortly.
    #[error("{0}")]
    Overloaded(String),
}

/// A raw alert event as received, kept for audit and replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// When tocsin received it.
    pub received_at: DateTime<Utc>,
    /// The integration that sent it.
    pub integration: String,
    /// The incident it went to, if any.
    pub incident: Option<IncidentId>,
    /// The normalised event.
    pub event: AlertEvent,
}

/// The last incident of a (service, dedup key) that resolved: what
/// `reopen_within` reopens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentlyResolved {
    /// The incident.
    pub incident: IncidentId,
    /// When it resolved.
    pub at: DateTime<Utc>,
}

/// The operations available inside a transaction.
pub trait Tx {
    /// The open incident for this service and dedup key.
    fn open_incident(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<IncidentId>, StoreError>;
    /// Marks (or, with `None`, unmarks) the open incident for a dedup key.
    fn set_open_incident(
        &mut self,
        service: &str,
        dedup_key: &str,
        id: Option<IncidentId>,
    ) -> Result<(), StoreError>;
    /// The last incident for this service and dedup key that resolved, and
    /// when (kept only for services with `reopen_within`).
    fn recently_resolved(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<RecentlyResolved>, StoreError>;
    /// Records (or, with `None`, forgets) the last resolved incident for a
    /// dedup key.
    fn set_recently_resolved(
        &mut self,
        service: &str,
        dedup_key: &str,
        resolved: Option<&RecentlyResolved>,
    ) -> Result<(), StoreError>;
    /// Reads an incident.
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// Writes an incident.
    fn put_incident(&mut self, incident: &Incident) -> Result<(), StoreError>;
    /// Allocates the next incident number.
    fn next_incident_id(&mut self) -> Result<IncidentId, StoreError>;
    /// Appends a timeline entry (its `seq` is its position).
    fn append_timeline(&mut self, id: IncidentId, entry: &TimelineEntry) -> Result<(), StoreError>;
    /// Records a raw event.
    fn record_event(&mut self, event: &StoredEvent) -> Result<(), StoreError>;
    /// Stores a change to a service (a PagerDuty change event).
    fn record_change(
        &mut self,
        service: &str,
        change: &crate::incident::ServiceChange,
    ) -> Result<(), StoreError>;
    /// Adds a timer.
    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError>;
    /// Removes a timer; whether it was there.
    fn delete_timer(&mut self, timer: &Timer) -> Result<bool, StoreError>;
    /// Reads an outbox entry by its idempotency key.
    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError>;
    /// Writes an outbox entry; a pending one is queued at its `due` time.
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// Records that a chat channel belongs to an incident.
    fn set_channel(
        &mut self,
        platform: &str,
        channel: &str,
        id: IncidentId,
    ) -> Result<(), StoreError>;
    /// Removes an incident past retention (see [`Store::expired`]) with its
    /// timeline, summary, outbox entries and channel links; whether it was there.
    fn remove_incident(&mut self, expired: &Expired) -> Result<bool, StoreError>;
    /// Removes a raw event by its id (see [`Store::expired_events`]); whether it was there.
    fn remove_event(&mut self, id: u64) -> Result<bool, StoreError>;
    /// Every runtime maintenance window (the config's are not stored), by id.
    fn maintenance_windows(&self) -> Result<Vec<StoredWindow>, StoreError>;
    /// Stores a runtime maintenance window, replacing the one with its id.
    fn put_maintenance_window(&mut self, window: &StoredWindow) -> Result<(), StoreError>;
    /// Removes a runtime maintenance window's record; whether it was there.
    fn delete_maintenance_window(&mut self, id: u64) -> Result<bool, StoreError>;
    /// Allocates the next maintenance window number.
    fn next_maintenance_id(&mut self) -> Result<u64, StoreError>;
    /// A runtime maintenance window, by id.
    fn maintenance_window(&self, id: u64) -> Result<Option<StoredWindow>, StoreError> {
        Ok(self.maintenance_windows()?.into_iter().find(|w| w.id == id))
    }
}

/// A resolved incident past retention, as gathered for its removal.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    /// The incident.
    pub incident: Incident,
    /// Its stored post-incident summary.
    pub summary: Option<String>,
    /// The idempotency keys of its outbox entries (none of them pending).
    pub outbox_keys: Vec<String>,
}

/// [`Store::expired`] for either backend: walks `oldest_first` (the stored
/// incidents, oldest first, already cut to the caller's limit) and stops at
/// the first one still open, newer than `cutoff`, or with a page waiting,
/// so the cost is bounded by what is removed.
pub(crate) fn gather_expired<S: Store + ?Sized>(
    store: &S,
    oldest_first: impl IntoIterator<Item = Result<Incident, StoreError>>,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Expired>, StoreError> {
    let mut out = Vec::new();
    for incident in oldest_first {
        let incident = incident?;
        match incident.resolved_at {
            Some(at) if !incident.status.is_open() && at < cutoff => {}
            _ => break,
        }
        let entries = store.outbox_for(incident.id)?;
        if entries
            .iter()
            .any(|e| e.state == crate::notify::DeliveryState::Pending)
        {
            break;
        }
        out.push(Expired {
            summary: store.summary(incident.id)?,
            outbox_keys: entries.into_iter().map(|e| e.key).collect(),
            incident,
        });
    }
    Ok(out)
}

/// A schedule override made at runtime (REST API, CLI, chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOverride {
    /// Its id, for deletion.
    pub id: u64,
    /// The schedule.
    pub schedule: String,
    /// Who covers.
    pub user: String,
    /// From.
    pub start: DateTime<Utc>,
    /// Until.
    pub end: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
}

/// An open incident as the open-incident index holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncident {
    /// Its status (never resolved).
    pub status: Status,
    /// Its severity.
    pub severity: Severity,
    /// Its service.
    pub service: String,
}

/// Which open incidents [`Store::open_incidents`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenFilter {
    /// Triggered or acknowledged; `None` for both.
    pub status: Option<Status>,
    /// Only this service's.
    pub service: Option<String>,
    /// Only this severity.
    pub severity: Option<Severity>,
}

impl OpenFilter {
    /// Whether an open-index entry passes.
    pub fn admits(&self, o: &OpenIncident) -> bool {
        self.status.is_none_or(|s| s == o.status)
            && self.service.as_deref().is_none_or(|s| s == o.service)
            && self.severity.is_none_or(|s| s == o.severity)
    }
}

/// The stored-state gauges `/metrics` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Open incidents by severity and status (only the pairs that have some).
    pub open: Vec<(Severity, Status, u64)>,
    /// Pending outbox entries.
    pub outbox_depth: u64,
    /// When the earliest pending outbox entry is due.
    pub outbox_next_due: Option<DateTime<Utc>>,
    /// Pending escalation timers.
    pub timers_pending: u64,
}

/// Which replica runs the work that must run once (the Discord gateway
/// connection, the retention sweep): the one holding the store's singleton
/// lock. Escalation timers and outbox entries need none: they are claimed
/// one by one.
pub trait Leadership: Send + Sync {
    /// Holds the lock, or tries to take it: whether this replica holds it
    /// now. Called every second or so; a lock lost with its database
    /// session reads as not held, and is tried for again on the next call.
    fn hold(&self) -> Result<bool, StoreError>;
    /// Lets the lock go (at shutdown), so another replica takes over at
    /// once rather than when the session times out.
    fn release(&self);
}

/// The only replica there can be (an embedded store, locked to one
/// process): it always leads.
pub struct SoleReplica;

impl Leadership for SoleReplica {
    fn hold(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn release(&self) {}
}

/// What another process sharing the store wrote, for [`Store::on_wake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// It added or moved escalation timers.
    Timers,
    /// It queued pages or other outbox entries.
    Outbox,
}

/// Called by [`Store::on_wake`], from a thread of the store's.
pub type WakeFn = std::sync::Arc<dyn Fn(Wake) + Send + Sync>;

/// Durable storage for tocsin's state.
pub trait Store: Send + Sync + 'static {
    /// Calls `wake` whenever a transaction that wrote timers or outbox
    /// entries commits in any process sharing the store, so this one looks
    /// at once rather than at its next poll. An embedded store has no other
    /// process: it never calls.
    fn on_wake(&self, wake: WakeFn) {
        let _ = wake;
    }

    /// How this store elects the replica that runs the singletons; an
    /// embedded store has one replica, which leads.
    fn leadership(&self) -> std::sync::Arc<dyn Leadership> {
        std::sync::Arc::new(SoleReplica)
    }

    /// Whether other processes may write to this store at the same time
    /// (a database several replicas share): what this process caches from
    /// it must then be read again, not trusted.
    fn is_shared(&self) -> bool {
        false
    }

    /// Runs `f` in one atomic transaction. `f` may be run more than once
    /// (on a write conflict), so it must only touch the store through `tx`.
    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Puts every write committed before the call on disk; blocks the
    /// calling thread meanwhile.
    fn flush(&self) -> Result<(), StoreError>;

    /// The last call at shutdown: like [`Store::flush`], and the backend
    /// may also tidy up so that the next start has less to do (the sled
    /// store checkpoints its write-ahead log).
    fn close(&self) -> Result<(), StoreError> {
        self.flush()
    }

    /// Reads an incident.
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;

    /// At most `limit` incidents, newest first, optionally only those with
    /// `status` and only those older than `before` (a page of history:
    /// pass the last id of the previous page). The cost is bounded by
    /// `limit` and the number of open incidents, not by history.
    fn incidents(
        &self,
        status: Option<Status>,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Open incidents, newest first, older than `before`, filtered by status
    /// (`None`: triggered and acknowledged), service and severity, from the
    /// open index: never touches resolved history.
    fn open_incidents(
        &self,
        filter: &OpenFilter,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// The stored-state gauges, kept up to date as transactions commit
    /// (nothing is counted at the call).
    fn gauges(&self) -> Result<Gauges, StoreError>;

    /// An incident's timeline, in order.
    fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError>;

    /// How many raw events are stored.
    fn event_count(&self) -> Result<u64, StoreError>;

    /// The service's latest `limit` changes, newest first.
    fn recent_changes(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<crate::incident::ServiceChange>, StoreError>;

    /// How many incidents exist, of every status.
    fn incident_count(&self) -> Result<u64, StoreError>;

    /// Writes a consistent snapshot of everything as JSON lines: a header
    /// (`{"format": "tocsin-backup", "version": 1, ...}`), then one
    /// `{"tree", "key" (hex), "value" (the stored JSON text)}` per record.
    /// Returns how many records.
    fn backup(&self, out: &mut dyn std::io::Write, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Writes and reads back a probe; for readiness checks.
    fn check_writable(&self) -> Result<(), StoreError>;

    /// How long writes have been failing without recovering, if they are;
    /// liveness fails when this grows long (a restart may help where
    /// reopening did not).
    fn failing_for(&self) -> Option<std::time::Duration> {
        None
    }

    /// The earliest timer.
    fn next_timer(&self) -> Result<Option<Timer>, StoreError>;

    /// The earliest timers due at or before `now`, at most `limit`.
    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError>;

    /// How many timers are pending.
    fn timer_count(&self) -> Result<u64, StoreError>;

    /// Every pending heartbeat timer, whenever due (read at start, to arm,
    /// catch up or drop each heartbeat's): picked out by the kind in the
    /// key, so the escalation timers beside them are never decoded.
    fn heartbeat_timers(&self) -> Result<Vec<Timer>, StoreError>;

    /// Pending outbox entries due at or before `now`, earliest first.
    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// How many outbox entries are pending.
    fn outbox_depth(&self) -> Result<u64, StoreError>;

    /// When the earliest pending outbox entry is due.
    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// An outbox entry, by its idempotency key.
    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError>;

    /// Every outbox entry of an incident, by key.
    fn outbox_for(&self, incident: IncidentId) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Leases the pending outbox entry `key` to this process until `until`,
    /// so one replica delivers it at a time; whether this process holds it
    /// (`false`: another replica's lease has not run out). Writing the
    /// entry again (its delivery recorded) ends the lease; a replica that
    /// dies mid-delivery loses it at `until`, and another delivers the page
    /// with the same idempotency key. A store only one process opens has
    /// nobody to share with.
    fn lease_outbox(
        &self,
        key: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _ = (key, now, until);
        Ok(true)
    }

    /// The oldest incidents (by id, ascending), at most `limit`, that are
    /// resolved before `cutoff` and have no pending outbox entry. It stops
    /// at the first incident that is not, so the cost is bounded by what it
    /// returns (ids grow with time).
    fn expired(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<Vec<Expired>, StoreError>;

    /// Raw events received before `cutoff` whose incident is gone (or that
    /// have none), oldest first, scanning from just after the event id
    /// `after` through at most `scan` events: the ids to remove and, if it
    /// stopped short of `cutoff`, the id to go on after. Events of
    /// incidents still stored are skipped, so they stay.
    fn expired_events(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<u64>,
        scan: usize,
    ) -> Result<(Vec<u64>, Option<u64>), StoreError>;

    /// Stores an incident's rendered post-incident summary.
    fn put_summary(&self, id: IncidentId, markdown: &str) -> Result<(), StoreError>;

    /// An incident's stored summary.
    fn summary(&self, id: IncidentId) -> Result<Option<String>, StoreError>;

    /// The incident whose channel this is.
    fn incident_by_channel(
        &self,
        platform: &str,
        channel: &str,
    ) -> Result<Option<IncidentId>, StoreError>;

    /// Stores a runtime override (assigning its id) and flushes it.
    fn add_override(&self, o: StoredOverride) -> Result<StoredOverride, StoreError>;

    /// Runtime overrides of a schedule.
    fn overrides(&self, schedule: &str) -> Result<Vec<StoredOverride>, StoreError>;

    /// Deletes a runtime override; whether it existed.
    fn delete_override(&self, schedule: &str, id: u64) -> Result<bool, StoreError>;

    /// Stores (or replaces, by id) an API token record and flushes it.
    fn put_token(&self, token: &crate::access::ApiToken) -> Result<(), StoreError>;

    /// An API token record, by its id.
    fn token(&self, id: &str) -> Result<Option<crate::access::ApiToken>, StoreError>;

    /// Reads the token record `id` and, if `f` returns a new one, stores
    /// it (and flushes it), atomically against every other writer of the
    /// store, other processes sharing it too: a one-time sign-in link is
    /// used once. What `f` returned; `None` when there is no such record.
    fn update_token(
        &self,
        id: &str,
        f: &mut dyn FnMut(&crate::access::ApiToken) -> Option<crate::access::ApiToken>,
    ) -> Result<Option<crate::access::ApiToken>, StoreError>;

    /// Every API token record (revoked ones too), by id.
    fn tokens(&self) -> Result<Vec<crate::access::ApiToken>, StoreError>;

    /// Every runtime maintenance window, by id (as [`Tx::maintenance_windows`]).
    fn maintenance_windows(&self) -> Result<Vec<StoredWindow>, StoreError>;
}

#[cfg(test)]
pub(crate) mod suite;
