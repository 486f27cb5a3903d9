//! The sled backend.
//!
//! Trees (keys are big-endian so they sort numerically):
//! - `incidents`: id → JSON [`Incident`]
//! - `open`: `service 0x00 dedup_key` → id of the open incident
//! - `timeline`: id | seq → JSON [`TimelineEntry`], or a JSON array of the
//!   entries from `seq` on that one transaction appended (one sled key for
//!   the four entries of a new paged incident); readers take both
//! - `events`: monotonic id → JSON [`StoredEvent`]
//! - `meta`: counters (`next_incident`) and the readiness probe
//! - `timers`: [`Timer::key`] (due time first) → JSON [`Timer`]
//! - `outbox`: idempotency key → JSON [`OutboxEntry`]
//! - `outbox_queue`: due time | idempotency key → () for pending entries
//! - `overrides`: schedule 0x00 id → JSON [`StoredOverride`]
//! - `channels`: platform 0x00 channel id → incident id
//! - `summaries`: id → the rendered post-incident summary (JSON string)
//! - `changes`: `service 0x00` due-time-like big-endian millis | id → JSON
//!   [`ServiceChange`] (PagerDuty change events)
//! - `tokens`: token id → JSON [`crate::access::ApiToken`] (hashes only)
//! - `open_incidents`: id → JSON [`OpenIncident`], for every incident not
//!   resolved; written in the transaction that writes the incident. It is
//!   derived (rebuilt at restore, and once when an older store is opened),
//!   so backups leave it out.
//!
//! Writes do not use sled transactions: each transaction is one record of
//! the write-ahead log ([`super::wal`]), synced before its writes are
//! applied to the trees as plain inserts and removes, by the applier thread
//! ([`super::applier`]) while the writer goes on.
//!
//! What `/metrics` and the listings need is kept in memory ([`Live`]):
//! loaded at open from `open_incidents`, the pending trees and the counts in
//! `meta`, and moved by each transaction as it commits.

use super::applier::{Applier, Writes};
use super::wal::{WAL_FILE, Wal};
use super::{Expired, Gauges, OpenIncident, Store, StoreError, StoredEvent, StoredOverride, Tx};
use crate::escalation::Timer;
use crate::incident::{Incident, IncidentId, ServiceChange, Status, TimelineEntry};
use crate::notify::{DeliveryState, OutboxEntry};
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const INCIDENTS: usize = 0;
const OPEN: usize = 1;
const TIMELINE: usize = 2;
const EVENTS: usize = 3;
const META: usize = 4;
const TIMERS: usize = 5;
const OUTBOX: usize = 6;
const OUTBOX_QUEUE: usize = 7;
const OVERRIDES: usize = 8;
const CHANNELS: usize = 9;
const SUMMARIES: usize = 10;
const CHANGES: usize = 11;
const TOKENS: usize = 12;
const OPEN_INCIDENTS: usize = 13;
const RECENTLY_RESOLVED: usize = 14;
/// The trees, by index; also the record names of the backup format, which
/// the PostgreSQL backend writes and reads too.
pub(crate) const TREE_NAMES: [&str; 15] = [
    "incidents",
    "open",
    "timeline",
    "events",
    "meta",
    "timers",
    "outbox",
    "outbox_queue",
    "overrides",
    "channels",
    "summaries",
    "changes",
    "tokens",
    "open_incidents",
    "recently_resolved",
];

/// Trees derived from the others: not backed up, rebuilt at restore.
const DERIVED: [usize; 1] = [OPEN_INCIDENTS];

/// The version of the derived trees and counts; a store below it gets them
/// built once at open.
const INDEX_VERSION: u64 = 1;

/// The counts kept in `meta` (key `counts`), moved in each transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Counts {
    incidents: u64,
    events: u64,
}

/// What is kept in memory so that gauges and listings do not scan history.
#[derive(Debug, Default)]
struct Live {
    /// Every incident not resolved.
    open: std::collections::BTreeMap<u64, OpenIncident>,
    counts: Counts,
    outbox_depth: u64,
    timers: u64,
}

/// What a transaction changes in [`Live`], applied once it commits.
#[derive(Debug, Default)]
struct Delta {
    open: std::collections::BTreeMap<u64, Option<OpenIncident>>,
    incidents: i64,
    events: i64,
    outbox: i64,
    timers: i64,
}

impl Live {
    fn apply(&mut self, d: Delta) {
        for (id, o) in d.open {
            match o {
                Some(o) => self.open.insert(id, o),
                None => self.open.remove(&id),
            };
        }
        let add = |v: u64, d: i64| v.saturating_add_signed(d);
        self.counts.incidents = add(self.counts.incidents, d.incidents);
        self.counts.events = add(self.counts.events, d.events);
        self.outbox_depth = add(self.outbox_depth, d.outbox);
        self.timers = add(self.timers, d.timers);
    }
}

/// The fields of a stored incident the index needs, decoded without the rest.
#[derive(serde::Deserialize)]
struct IncidentHead {
    status: Status,
    severity: crate::incident::Severity,
    service: String,
}

/// Writes (and removes) a 2 MiB file in `dir`: whether a reopened
/// database would have room to start.
fn probe_space(dir: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    let path = dir.join("space-probe.tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..32 {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))
}

/// Opens the database in `path` and its trees.
fn open_handles(path: &Path, cache_bytes: u64) -> Result<Handles, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(500));
    // sled releases its file lock from a background thread after the
    // last handle is dropped: reopening in the same process (restore,
    // tests, recovery) may find it still held for a moment. A second
    // process on the same directory still fails, after the wait.
    let mut attempts = 0;
    let db = loop {
        match config.open() {
            Ok(db) => break db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && attempts < 30 =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                return Err(StoreError::Backend(format!(
                    "cannot open {}: another tocsin is using this data directory (stop it, or give this one its own [storage] path)",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(StoreError::Backend(format!(
                    "cannot open {}: {e}",
                    path.display()
                )));
            }
        }
    };
    let trees = TREE_NAMES
        .iter()
        .map(|n| db.open_tree(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(Handles { db, trees })
}

/// The file beside the database that remembers the incident counter, so a
/// database that lost writes is noticed at start.
pub const STATE_MARKER: &str = "tocsin-state.json";

/// The state marker's length in bytes: its JSON, padded with spaces (a
/// `u64` counter always fits).
const MARKER_LEN: usize = 48;

/// Reads the state marker's counter; `None` if there is no marker.
fn read_marker(path: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Backend(format!(
                    "{} is unreadable ({e}); if the database is intact, delete the file and start again",
                    path.display()
                ))
            })?;
            Ok(v["next_incident"].as_u64())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Backend(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

/// The `format` of a backup's header line.
pub const BACKUP_FORMAT: &str = "tocsin-backup";
/// The backup format's version; restore refuses others.
pub const BACKUP_VERSION: u64 = 2;

/// The `format` of a backup's last line (version 2): a backup without it
/// was cut short, and restore refuses it.
pub const BACKUP_END: &str = "tocsin-backup-end";

/// What `tocsin restore` put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Records written.
    pub records: u64,
    /// Incidents among them.
    pub incidents: u64,
    /// Incidents not resolved (their escalations resume when tocsin starts).
    pub open: u64,
    /// The number the next incident gets.
    pub next_incident: u64,
    /// When the backup was made, as its header says.
    pub created_at: Option<String>,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records: {} incidents ({} not resolved; their escalations resume when tocsin starts), next incident INC-{}",
            self.records, self.incidents, self.open, self.next_incident
        )?;
        if let Some(at) = &self.created_at {
            write!(f, "; backup made at {at}")?;
        }
        Ok(())
    }
}

/// An open sled database and its trees.
struct Handles {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl super::applier::Target for Handles {
    fn apply(&self, tree: usize, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        match value {
            Some(v) => self.trees[tree].insert(key, v).map(|_| ()),
            None => self.trees[tree].remove(key).map(|_| ()),
        }
        .map_err(|e| e.to_string())
    }
}

/// The state of a write outage.
#[derive(Default)]
struct Outage {
    since: Option<std::time::Instant>,
    last_attempt: Option<std::time::Instant>,
    last_error: String,
}

/// The keys written while a backup is being read: at its end they are
/// written again with their values as of that moment (or as deleted), so
/// the backup is the store as it was at its end, without stopping writers
/// while it is read.
type Journal = std::collections::BTreeSet<(usize, Vec<u8>)>;

/// The log size past which a commit checkpoints (see [`super::wal`]).
const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

/// How often a broken store tries to reopen itself.
const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The sled-backed [`Store`].
pub struct SledStore {
    /// The open database; `None` while it is being reopened (see
    /// [`SledStore::recover`]).
    handles: RwLock<Option<Arc<Handles>>>,
    /// The data directory (for the state marker beside the database).
    path: std::path::PathBuf,
    cache_bytes: u64,
    /// Set by a failed write: sled keeps failing every write after an I/O
    /// error (a full disk), even once the cause is gone, until reopened.
    broken: AtomicBool,
    /// Since when writes have failed, and when a reopen was last tried.
    outage: Mutex<Outage>,
    /// The incident counter last written to the state marker.
    marked: AtomicU64,
    /// The state marker, open for rewriting in place (see
    /// [`SledStore::write_marker`]); `None` until it is first written.
    marker_file: Mutex<Option<std::fs::File>>,
    /// Whether the marker was rewritten since it was last synced.
    marker_dirty: AtomicBool,
    /// The keys written while a backup runs; `None` otherwise.
    journal: Mutex<Option<Journal>>,
    /// One writer at a time, and the write-ahead log it appends to (see
    /// [`super::wal`]).
    write_lock: Mutex<Wal>,
    /// How many flushes; see [`SledStore::flush_count`].
    flushes: AtomicU64,
    fail_writes: std::sync::atomic::AtomicBool,
    /// Gauges and the open incidents, in memory.
    live: RwLock<Live>,
    /// Set by tests to drop the store as a crash would: no checkpoint.
    crashed: AtomicBool,
    /// The thread that applies logged writes to sled.
    applier: Applier,
    /// The incident counter as of the last commit (for the state marker,
    /// without waiting for the applier).
    counter: AtomicU64,
}

impl Drop for SledStore {
    /// Checkpoints, so the next open has no log to apply (a crash skips
    /// this, and the next open applies the log instead).
    fn drop(&mut self) {
        if *self.crashed.get_mut() {
            self.applier.halt();
            return;
        }
        self.applier.stop();
        let handles = self.handles.get_mut().clone();
        let mut wal = self.write_lock.lock();
        if let Some(h) = handles
            && let Err(e) = self.checkpoint(&mut wal, &h)
        {
            tracing::warn!(error = %e, "Could not checkpoint the store at close");
        }
    }
}

impl SledStore {
    /// Opens (or creates) the database in `path`, with a 64 MiB cache.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, 64 * 1024 * 1024)
    }

    /// Opens (or creates) the database in `path` with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let handles = open_handles(path, cache_bytes)?;
        let (wal, replay) = Wal::open(path).map_err(|e| {
            StoreError::Backend(format!("opening {}: {e}", path.join(WAL_FILE).display()))
        })?;
        let store = Self {
            handles: RwLock::new(Some(Arc::new(handles))),
            path: path.to_path_buf(),
            cache_bytes,
            broken: AtomicBool::new(false),
            outage: Mutex::new(Outage::default()),
            marked: AtomicU64::new(0),
            marker_file: Mutex::new(None),
            marker_dirty: AtomicBool::new(false),
            journal: Mutex::new(None),
            write_lock: Mutex::new(wal),
            flushes: AtomicU64::new(0),
            fail_writes: std::sync::atomic::AtomicBool::new(false),
            live: RwLock::new(Live::default()),
            crashed: AtomicBool::new(false),
            applier: Applier::start()
                .map_err(|e| StoreError::Backend(format!("cannot start the applier: {e}")))?,
            counter: AtomicU64::new(1),
        };
        {
            let mut wal = store.write_lock.lock();
            let h = store.h()?;
            store.replay(&mut wal, &h, replay)?;
        }
        store.check_counter()?;
        if store.get::<u64>(META, b"index_version")? != Some(INDEX_VERSION) {
            store.rebuild_indexes()?;
        }
        store.load_live()?;
        Ok(store)
    }

    /// Builds the derived trees and counts from the incidents and events
    /// (once per store: at the first open by a version that has them, and
    /// at restore), and records that they are built.
    fn rebuild_indexes(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let h = self.h()?;
        for t in DERIVED {
            h.trees[t].clear().map_err(backend)?;
        }
        let mut counts = Counts::default();
        let mut batch = sled::Batch::default();
        for item in h.trees[INCIDENTS].iter() {
            let (k, v) = item.map_err(backend)?;
            let head: IncidentHead = decode(&v, INCIDENTS, &k)?;
            counts.incidents += 1;
            if head.status.is_open() {
                batch.insert(
                    k,
                    encode(&OpenIncident {
                        status: head.status,
                        severity: head.severity,
                        service: head.service,
                    }),
                );
            }
        }
        h.trees[OPEN_INCIDENTS]
            .apply_batch(batch)
            .map_err(backend)?;
        counts.events = h.trees[EVENTS].len() as u64;
        h.trees[META]
            .insert(b"counts", encode(&counts))
            .map_err(backend)?;
        h.trees[META]
            .insert(b"index_version", encode(&INDEX_VERSION))
            .map_err(backend)?;
        h.db.flush().map_err(backend)?;
        tracing::info!(incidents = counts.incidents, events = counts.events,
            elapsed_ms = started.elapsed().as_millis() as u64, path = %self.path.display(),
            "Built the store's open-incident index and counts");
        Ok(())
    }

    /// Loads [`Live`] from the index, the pending trees and the counts:
    /// none of them grows with history.
    fn load_live(&self) -> Result<(), StoreError> {
        let h = self.h()?;
        let mut live = Live {
            counts: self.get(META, b"counts")?.unwrap_or_default(),
            outbox_depth: h.trees[OUTBOX_QUEUE].len() as u64,
            timers: h.trees[TIMERS].len() as u64,
            ..Live::default()
        };
        for item in h.trees[OPEN_INCIDENTS].iter() {
            let (k, v) = item.map_err(backend)?;
            live.open
                .insert(id_of(&k, OPEN_INCIDENTS)?, decode(&v, OPEN_INCIDENTS, &k)?);
        }
        *self.live.write() = live;
        Ok(())
    }

    /// The open database for a read: once every write committed before
    /// the call is applied (see [`super::applier`]).
    fn h(&self) -> Result<Arc<Handles>, StoreError> {
        self.applier.settle();
        self.open_db()
    }

    /// The open database, or why there is none; for the writer, which
    /// reads through the writes not yet applied.
    fn open_db(&self) -> Result<Arc<Handles>, StoreError> {
        self.handles.read().clone().ok_or_else(|| {
            StoreError::Backend(format!(
                "the store is not open (reopening after: {})",
                self.outage.lock().last_error
            ))
        })
    }

    /// Notes a failed write: the next write (or readiness probe) reopens
    /// the database first.
    fn note_failure(&self, e: &StoreError) {
        if matches!(e, StoreError::Backend(_)) && !self.fail_writes.load(Ordering::SeqCst) {
            let mut o = self.outage.lock();
            o.since.get_or_insert_with(std::time::Instant::now);
            o.last_error = e.to_string();
            self.broken.store(true, Ordering::SeqCst);
        }
    }

    /// Adds written keys to the backup journal, if a backup runs.
    fn journal_touch(&self, keys: Vec<(usize, Vec<u8>)>) {
        if let Some(j) = self.journal.lock().as_mut() {
            j.extend(keys);
        }
    }

    /// How long writes have been failing, if they are.
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        self.outage.lock().since.map(|t| t.elapsed())
    }

    /// After a failed write, reopens the database (at most once a second),
    /// so a disk that filled and was freed works again without a restart:
    /// sled refuses every write after an I/O error until reopened. Every
    /// write whose log record was synced is applied again from the log; a
    /// write whose record was not synced was never answered with success
    /// (its sender got a 503). The caller holds the write lock.
    fn recover(&self, wal: &mut Wal) -> Result<(), StoreError> {
        if let Some(e) = self.applier.take_failure() {
            let e = StoreError::Backend(e);
            tracing::error!(error = %e, path = %self.path.display(),
                "sled refused a logged write; the store reopens itself and applies the log again");
            self.note_failure(&e);
        }
        if !self.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Nothing of the old database is being applied any more.
        self.applier.settle();
        {
            let mut o = self.outage.lock();
            if o.last_attempt.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return Err(StoreError::Backend(format!(
                    "writes are failing: {}",
                    o.last_error
                )));
            }
            o.last_attempt = Some(std::time::Instant::now());
        }
        // Reopening means letting go of the database, and reads with it:
        // only once the directory takes a write of a few sled segments.
        if let Err(e) = probe_space(&self.path) {
            let mut o = self.outage.lock();
            o.last_error = e.to_string();
            return Err(e);
        }
        let old = self.handles.write().take();
        if let Some(old) = old {
            // Readers finish with their clones; then sled lets go of the files.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(old);
        }
        let reopened = open_handles(&self.path, self.cache_bytes).and_then(|h| {
            // Reads work again at once; writes once the database takes one.
            let h = Arc::new(h);
            *self.handles.write() = Some(h.clone());
            h.trees[META]
                .insert(b"readyz_probe", encode(&"probe"))
                .map_err(backend)?;
            let logged = wal.read().map_err(|e| {
                StoreError::Backend(format!("reading {}: {e}", wal.path().display()))
            })?;
            self.replay(wal, &h, logged)?;
            // Count again from what the reopened database holds.
            self.load_live()
        });
        let mut o = self.outage.lock();
        match reopened {
            Ok(()) => {
                self.broken.store(false, Ordering::SeqCst);
                let lasted = o.since.take().map(|t| t.elapsed()).unwrap_or_default();
                tracing::warn!(path = %self.path.display(), after_ms = lasted.as_millis() as u64,
                    "The store takes writes again; reopened it");
                o.last_error.clear();
                Ok(())
            }
            Err(e) => {
                o.last_error = e.to_string();
                Err(e)
            }
        }
    }

    fn marker_path(&self) -> std::path::PathBuf {
        self.path.join(STATE_MARKER)
    }

    /// The incident counter as stored (the next number to hand out).
    fn stored_counter(&self) -> Result<u64, StoreError> {
        Ok(self.get::<u64>(META, b"next_incident")?.unwrap_or(1))
    }

    /// Refuses to hand out an incident number twice. The counter must be
    /// past every incident the store holds and past the number the state
    /// marker (written beside the database after each flush that opened an
    /// incident) last saw: a counter behind either means the database lost
    /// writes (a damaged or truncated file, an older copy put in its place).
    /// The counter is moved forward, loudly, so the lost numbers are never
    /// reused.
    fn check_counter(&self) -> Result<(), StoreError> {
        let counter = self.stored_counter()?;
        let highest = match self.h()?.trees[INCIDENTS].last().map_err(backend)? {
            Some((k, _)) => {
                let bytes: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: format!("incidents/{}", hex::encode(&k)),
                    message: "an incident key is not 8 bytes".into(),
                })?;
                u64::from_be_bytes(bytes)
            }
            None => 0,
        };
        let marked = read_marker(&self.marker_path())?;
        let wanted = counter.max(highest + 1).max(marked.unwrap_or(0));
        if wanted > counter {
            let held = self.h()?.trees[INCIDENTS].len();
            if highest >= counter {
                tracing::error!(counter, highest, path = %self.path.display(),
                    "The store's incident counter is behind the incidents it holds; moved it to INC-{wanted} so no number is handed out twice");
            }
            if let Some(m) = marked.filter(|m| *m > counter.max(highest + 1)) {
                tracing::error!(held, highest, marked = m, path = %self.path.display(),
                    "The store lost writes: INC-{} to INC-{} were handed out but are not in it (a damaged or truncated database, or an older copy put in its place). Numbering goes on from INC-{m}; restore a backup with `tocsin restore` to get them back",
                    highest + 1, m - 1);
            }
            self.h()?.trees[META]
                .insert(b"next_incident", encode(&wanted))
                .map_err(backend)?;
            self.h()?.db.flush().map_err(backend)?;
        }
        self.counter.fetch_max(wanted, Ordering::SeqCst);
        self.write_marker(wanted, true)
    }

    /// Writes the state marker if the counter moved since it was last written.
    ///
    /// The first write in a process makes a new file, syncs it and renames
    /// it into place; later ones (one after every flush that opened an
    /// incident) rewrite its bytes in place. The text is always
    /// [`MARKER_LEN`] bytes (JSON padded with spaces), so a rewrite changes
    /// no file metadata and stays within one disk sector. A rewrite is
    /// synced only with `sync` (at open, and at each checkpoint of the
    /// write-ahead log): in between it is in the kernel's page cache, which
    /// outlives a crash of tocsin but not of the machine. So after a power
    /// loss the marker can be behind by the incidents of one checkpoint
    /// (4 MiB of log); the log itself, synced before every answer, still
    /// holds the counter.
    fn write_marker(&self, counter: u64, sync: bool) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        if counter <= self.marked.load(Ordering::SeqCst) {
            if sync && self.marker_dirty.swap(false, Ordering::SeqCst) {
                let file = self.marker_file.lock();
                if let Some(f) = file.as_ref() {
                    f.sync_data().map_err(|e| {
                        self.marker_dirty.store(true, Ordering::SeqCst);
                        StoreError::Backend(format!(
                            "writing {}: {e}",
                            self.marker_path().display()
                        ))
                    })?;
                }
            }
            return Ok(());
        }
        let path = self.marker_path();
        let io =
            |e: std::io::Error| StoreError::Backend(format!("writing {}: {e}", path.display()));
        let mut body = serde_json::json!({"next_incident": counter}).to_string();
        body.extend(std::iter::repeat_n(
            ' ',
            MARKER_LEN.saturating_sub(body.len()),
        ));
        let mut file = self.marker_file.lock();
        match file.as_ref() {
            Some(f) => {
                f.write_all_at(body.as_bytes(), 0).map_err(io)?;
                if sync {
                    f.sync_data().map_err(io)?;
                    self.marker_dirty.store(false, Ordering::SeqCst);
                } else {
                    self.marker_dirty.store(true, Ordering::SeqCst);
                }
            }
            None => {
                use std::io::Write;
                let tmp = path.with_extension("tmp");
                {
                    let mut f = std::fs::File::create(&tmp).map_err(io)?;
                    f.write_all(body.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
                std::fs::rename(&tmp, &path).map_err(io)?;
                *file = Some(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io)?,
                );
            }
        }
        self.marked.store(counter, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` as one transaction: its writes are logged, synced and
    /// applied together, or (if `f` fails) not at all.
    fn write_with(
        &self,
        f: &mut dyn FnMut(&mut SledTx<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.writes_failing()?;
        let mut wal = self.write_lock.lock();
        self.recover(&mut wal)?;
        let h = self.open_db()?;
        // A batch that failed to apply since `recover` looked: refused, and
        // the next write reopens the store and applies the log again.
        let pending = self.applier.pending().map_err(|e| {
            let e = StoreError::Backend(format!("writes are failing: {e}"));
            self.note_failure(&e);
            e
        })?;
        let journaling = self.journal.lock().is_some();
        // Only this thread (holding the write lock) changes it, after the commit.
        let live = self.live.read();
        let mut tx = SledTx {
            handles: &h,
            pending,
            live: &live,
            delta: Delta::default(),
            touched: journaling.then(Vec::new),
            writes: vec![Default::default(); TREE_NAMES.len()],
            timeline: Default::default(),
            fresh: Default::default(),
        };
        let outcome = f(&mut tx)
            .and_then(|()| tx.write_timeline())
            .and_then(|()| tx.write_counts());
        let SledTx {
            delta,
            touched,
            writes,
            ..
        } = tx;
        drop(live);
        // An error in the closure: nothing was written anywhere.
        outcome?;
        self.commit(&mut wal, &h, writes)?;
        self.live.write().apply(delta);
        if let Some(t) = touched {
            self.journal_touch(t);
        }
        Ok(())
    }

    /// Writes (or, with `None`, removes) one record durably.
    fn write(&self, tree: usize, key: &[u8], value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let mut value = Some(value);
        self.write_with(&mut |tx| match value.take().flatten() {
            Some(v) => tx.tput(tree, key, v),
            None => tx.tremove(tree, key).map(|_| ()),
        })
    }

    /// Logs a transaction's writes, syncs the log, and hands them to the
    /// applier. The caller holds the write lock. An error before the sync
    /// leaves nothing written; one after it (sled refusing a write) leaves
    /// the writes in the log, and the store reopens itself and applies them
    /// again before the next write.
    fn commit(&self, wal: &mut Wal, h: &Arc<Handles>, writes: Writes) -> Result<(), StoreError> {
        if writes.iter().all(|w| w.is_empty()) {
            return Ok(());
        }
        let logged = wal.append(
            writes
                .iter()
                .enumerate()
                .flat_map(|(t, w)| w.iter().map(move |(k, v)| (t, k.as_slice(), v.as_deref()))),
        );
        if let Err(e) = logged {
            let e = StoreError::Backend(format!("writing {}: {e}", wal.path().display()));
            self.note_failure(&e);
            return Err(e);
        }
        if let Some(Some(v)) = writes[META].get(&b"next_incident"[..])
            && let Ok(n) = serde_json::from_slice::<u64>(v)
        {
            self.counter.fetch_max(n, Ordering::SeqCst);
        }
        self.applier.push(h.clone(), writes);
        if wal.size() > CHECKPOINT_BYTES
            && let Err(e) = self.checkpoint(wal, h)
        {
            // The log keeps growing and is applied again at the next
            // start: slower, not wrong.
            tracing::warn!(error = %e, "A store checkpoint failed; will try again");
        }
        Ok(())
    }

    /// Puts every applied write into sled's files and starts the log
    /// afresh. The caller holds the write lock.
    fn checkpoint(&self, wal: &mut Wal, h: &Handles) -> Result<(), StoreError> {
        self.applier.settle();
        if let Some(e) = self.applier.take_failure() {
            // Not all of the log is in sled: it must stay.
            let e = StoreError::Backend(e);
            self.note_failure(&e);
            return Err(e);
        }
        h.db.flush().map_err(backend)?;
        if self.marked.load(Ordering::SeqCst) > 0 {
            self.write_marker(self.marked.load(Ordering::SeqCst), true)?;
        }
        wal.checkpoint()
            .map_err(|e| StoreError::Backend(format!("writing {}: {e}", wal.path().display())))
    }

    /// Applies the log's writes again (after a crash, or a reopen), then
    /// checkpoints.
    fn replay(
        &self,
        wal: &mut Wal,
        h: &Handles,
        writes: Vec<super::wal::Write>,
    ) -> Result<(), StoreError> {
        let n = writes.len();
        for (t, k, v) in writes {
            let tree = h.trees.get(t).ok_or_else(|| StoreError::Corrupt {
                key: format!("{}", wal.path().display()),
                message: format!("a logged write names tree {t}, which does not exist"),
            })?;
            match v {
                Some(v) => tree.insert(k, v).map(|_| ()),
                None => tree.remove(k).map(|_| ()),
            }
            .map_err(backend)?;
        }
        if n > 0 {
            tracing::info!(writes = n, path = %wal.path().display(),
                "Applied the write-ahead log's writes since the last checkpoint again");
        }
        self.checkpoint(wal, h)
    }

    /// How many times [`Store::flush`] has put writes on disk; for benchmarks and tests.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Fault injection: while on, every write fails as a broken disk would
    /// (transactions and the readiness probe). For tests and failure drills.
    pub fn set_write_failure(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    fn writes_failing(&self) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            Err(StoreError::Backend("write failed (fault injected)".into()))
        } else {
            Ok(())
        }
    }

    /// Restores a backup into `path`, which must not hold a database yet,
    /// and says what it restored.
    pub fn restore<R: std::io::BufRead>(
        path: &Path,
        input: R,
    ) -> Result<RestoreReport, StoreError> {
        let bad = |line: usize, m: String| StoreError::Backend(format!("backup line {line}: {m}"));
        if path.exists()
            && std::fs::read_dir(path)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?
                .next()
                .is_some()
        {
            return Err(StoreError::Backend(format!(
                "{} is not empty; restore only into a new data directory",
                path.display()
            )));
        }
        let mut lines = input.lines();
        let header: serde_json::Value = match lines.next() {
            Some(Ok(l)) => serde_json::from_str(&l).map_err(|e| bad(1, e.to_string()))?,
            _ => return Err(bad(1, "the backup is empty".into())),
        };
        if header["format"] != BACKUP_FORMAT {
            return Err(bad(1, "this is not a tocsin backup".into()));
        }
        let version = header["version"].as_u64().unwrap_or(0);
        if !(1..=BACKUP_VERSION).contains(&version) {
            return Err(bad(
                1,
                format!(
                    "backup version {} is not one this tocsin reads (1 to {BACKUP_VERSION})",
                    header["version"]
                ),
            ));
        }
        let store = Self::open(path)?;
        let result = store.restore_records(lines, version).map(|mut r| {
            r.created_at = header["created_at"].as_str().map(str::to_string);
            r
        });
        if result.is_err() {
            // Nothing half-restored is left to be served by mistake.
            drop(store);
            let _ = std::fs::remove_dir_all(path);
        }
        result
    }

    fn restore_records(
        &self,
        lines: std::io::Lines<impl std::io::BufRead>,
        version: u64,
    ) -> Result<RestoreReport, StoreError> {
        let bad = |line: usize, m: String| StoreError::Backend(format!("backup line {line}: {m}"));
        let store = self;
        let mut n = 0;
        let mut ended = false;
        for (i, line) in lines.enumerate() {
            let line = line.map_err(|e| bad(i + 2, e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            if ended {
                return Err(bad(i + 2, "records after the backup's end line".into()));
            }
            let rec: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| bad(i + 2, e.to_string()))?;
            if rec["format"] == BACKUP_END {
                if rec["records"].as_u64() != Some(n) {
                    return Err(bad(
                        i + 2,
                        format!(
                            "the end line counts {} records, the backup has {n}",
                            rec["records"]
                        ),
                    ));
                }
                ended = true;
                continue;
            }
            let tree = rec["tree"].as_str().unwrap_or_default();
            let t = TREE_NAMES
                .iter()
                .position(|n| *n == tree)
                .ok_or_else(|| bad(i + 2, format!("unknown tree '{tree}'")))?;
            let key = hex::decode(rec["key"].as_str().unwrap_or_default())
                .map_err(|e| bad(i + 2, format!("bad key: {e}")))?;
            if rec["deleted"] == true {
                store.h()?.trees[t].remove(key).map_err(backend)?;
                n += 1;
                continue;
            }
            let value = rec["value"]
                .as_str()
                .ok_or_else(|| bad(i + 2, "no value".into()))?;
            store.h()?.trees[t]
                .insert(key, value.as_bytes())
                .map_err(backend)?;
            n += 1;
        }
        if version >= 2 && !ended {
            return Err(StoreError::Backend(format!(
                "the backup has no end line after {n} records: it was cut short; take it again"
            )));
        }
        {
            // Written straight into sled: into its files now.
            let mut wal = store.write_lock.lock();
            let h = store.h()?;
            store.checkpoint(&mut wal, &h)?;
        }
        store.check_counter()?;
        store.rebuild_indexes()?;
        store.load_live()?;
        let live = store.live.read();
        Ok(RestoreReport {
            records: n,
            incidents: live.counts.incidents,
            open: live.open.len() as u64,
            next_incident: store.stored_counter()?,
            created_at: None,
        })
    }

    fn get<T: DeserializeOwned>(&self, tree: usize, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.h()?.trees[tree]
            .get(key)
            .map_err(backend)?
            .map(|v| decode(&v, tree, key))
            .transpose()
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8], tree: usize, key: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("{}/{}", TREE_NAMES[tree], hex::encode(key)),
        message: e.to_string(),
    })
}

/// One `timeline` record's entries, onto `out`: one entry, or an array of
/// the entries one transaction appended.
fn decode_timeline(
    bytes: &[u8],
    key: &[u8],
    out: &mut Vec<TimelineEntry>,
) -> Result<(), StoreError> {
    if bytes.first() == Some(&b'[') {
        out.extend(decode::<Vec<TimelineEntry>>(bytes, TIMELINE, key)?);
    } else {
        out.push(decode(bytes, TIMELINE, key)?);
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("tocsin's records always serialize")
}

fn open_key(service: &str, dedup_key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(service.len() + 1 + dedup_key.len());
    k.extend_from_slice(service.as_bytes());
    k.push(0);
    k.extend_from_slice(dedup_key.as_bytes());
    k
}

/// Big-endian millis with the sign bit flipped, so keys sort by time.
fn time_key(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time a [`time_key`] (or a key starting with one) holds.
fn time_of(key: &[u8], tree: usize) -> Result<DateTime<Utc>, StoreError> {
    let millis = key
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        .and_then(DateTime::from_timestamp_millis);
    millis.ok_or_else(|| StoreError::Corrupt {
        key: format!("{}/{}", TREE_NAMES[tree], hex::encode(key)),
        message: "the key does not start with a time".into(),
    })
}

/// The incident number an 8-byte big-endian key holds.
fn id_of(key: &[u8], tree: usize) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            key: format!("{}/{}", TREE_NAMES[tree], hex::encode(key)),
            message: "an incident key is not 8 bytes".into(),
        })
}

fn queue_key(due: DateTime<Utc>, key: &str) -> Vec<u8> {
    let mut k = time_key(due).to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn override_key(schedule: &str, id: u64) -> Vec<u8> {
    let mut k = schedule.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn timeline_key(id: IncidentId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The runtime maintenance windows: one record in `meta`, so a transaction
/// reads them all with one get (sled's transactional trees cannot iterate)
/// and intake sees a window in the same transaction as its alerts.
const MAINTENANCE_KEY: &[u8] = b"maintenance_windows";

/// A transaction: its writes gathered in memory (reads see them), then
/// logged, synced and applied by [`SledStore::commit`].
struct SledTx<'a> {
    handles: &'a Handles,
    /// Committed writes the applier has not put into sled yet, oldest
    /// first: read before sled.
    pending: Vec<Arc<Writes>>,
    /// The in-memory state as of the transaction's start.
    live: &'a Live,
    /// What this transaction changes in it.
    delta: Delta,
    /// The keys written, while a backup runs (see [`Journal`]).
    touched: Option<Vec<(usize, Vec<u8>)>>,
    /// The writes, per tree: key → new value (`None`: removed). A key
    /// written twice is written once, with its last value.
    writes: Vec<std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Timeline entries appended, per incident: the first one's seq and
    /// each entry's JSON, written as one record at the end
    /// ([`SledTx::write_timeline`]).
    timeline: std::collections::BTreeMap<u64, (u64, Vec<Vec<u8>>)>,
    /// The incident numbers this transaction handed out: nothing outside
    /// it can hold their incident, timers or outbox entries yet (numbers
    /// are never handed out twice, see [`SledStore::check_counter`]), so
    /// their keys are looked up in its own writes only, not in sled.
    fresh: std::collections::BTreeSet<u64>,
}

impl SledTx<'_> {
    fn tget<T: DeserializeOwned>(&self, tree: usize, key: &[u8]) -> Result<Option<T>, StoreError> {
        if let Some(v) = self.unapplied(tree, key) {
            return v.map(|v| decode(v, tree, key)).transpose();
        }
        self.handles.trees[tree]
            .get(key)
            .map_err(backend)?
            .map(|v| decode(&v, tree, key))
            .transpose()
    }

    fn exists(&self, tree: usize, key: &[u8]) -> Result<bool, StoreError> {
        match self.unapplied(tree, key) {
            Some(v) => Ok(v.is_some()),
            None => self.handles.trees[tree].contains_key(key).map_err(backend),
        }
    }

    /// [`SledTx::exists`] for a key of `incident`'s: without reading sled
    /// when this transaction handed out its number.
    fn exists_of(&self, incident: IncidentId, tree: usize, key: &[u8]) -> Result<bool, StoreError> {
        if self.fresh.contains(&incident.0) {
            return Ok(self.unapplied(tree, key).is_some_and(|v| v.is_some()));
        }
        self.exists(tree, key)
    }

    /// The key's last value among the writes sled does not have yet (this
    /// transaction's, then the committed ones not yet applied); `None` if
    /// none of them writes it.
    fn unapplied(&self, tree: usize, key: &[u8]) -> Option<Option<&[u8]>> {
        std::iter::once(&self.writes)
            .chain(self.pending.iter().rev().map(|w| &**w))
            .find_map(|w| w[tree].get(key))
            .map(|v| v.as_deref())
    }

    /// Writes the timeline entries appended, one record per incident
    /// ([`SledTx::put_timeline_record`]).
    fn write_timeline(&mut self) -> Result<(), StoreError> {
        for (id, (first, entries)) in std::mem::take(&mut self.timeline) {
            self.put_timeline_record(id, first, entries)?;
        }
        Ok(())
    }

    /// One `timeline` record under the first entry's seq: the entry itself
    /// if it is alone, else a JSON array of them.
    fn put_timeline_record(
        &mut self,
        id: u64,
        first: u64,
        entries: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let value = match <[_; 1]>::try_from(entries) {
            Ok([one]) => one,
            Err(entries) => {
                let mut v =
                    Vec::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
                v.push(b'[');
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        v.push(b',');
                    }
                    v.extend_from_slice(e);
                }
                v.push(b']');
                v
            }
        };
        self.tput(TIMELINE, &timeline_key(IncidentId(id), first), value)
    }

    /// Writes the counts this transaction moved, with it.
    fn write_counts(&mut self) -> Result<(), StoreError> {
        if self.delta.incidents == 0 && self.delta.events == 0 {
            return Ok(());
        }
        let c = self.live.counts;
        let counts = Counts {
            incidents: c.incidents.saturating_add_signed(self.delta.incidents),
            events: c.events.saturating_add_signed(self.delta.events),
        };
        self.tput(META, b"counts", encode(&counts))
    }

    fn touch(&mut self, tree: usize, key: &[u8]) {
        if let Some(t) = &mut self.touched {
            t.push((tree, key.to_vec()));
        }
    }

    fn tput(&mut self, tree: usize, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.touch(tree, key);
        self.writes[tree].insert(key.to_vec(), Some(value));
        Ok(())
    }

    fn tremove(&mut self, tree: usize, key: &[u8]) -> Result<bool, StoreError> {
        if !self.exists(tree, key)? {
            return Ok(false);
        }
        self.touch(tree, key);
        self.writes[tree].insert(key.to_vec(), None);
        Ok(true)
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        self.handles.db.generate_id().map_err(backend)
    }
}

impl Tx for SledTx<'_> {
    fn open_incident(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        self.tget(OPEN, &open_key(service, dedup_key))
    }

    fn set_open_incident(
        &mut self,
        service: &str,
        dedup_key: &str,
        id: Option<IncidentId>,
    ) -> Result<(), StoreError> {
        let key = open_key(service, dedup_key);
        match id {
            Some(id) => self.tput(OPEN, &key, encode(&id)),
            None => self.tremove(OPEN, &key).map(|_| ()),
        }
    }

    fn recently_resolved(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<super::RecentlyResolved>, StoreError> {
        self.tget(RECENTLY_RESOLVED, &open_key(service, dedup_key))
    }

    fn set_recently_resolved(
        &mut self,
        service: &str,
        dedup_key: &str,
        resolved: Option<&super::RecentlyResolved>,
    ) -> Result<(), StoreError> {
        let key = open_key(service, dedup_key);
        match resolved {
            Some(r) => self.tput(RECENTLY_RESOLVED, &key, encode(r)),
            None => self.tremove(RECENTLY_RESOLVED, &key).map(|_| ()),
        }
    }

    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.tget(INCIDENTS, &id.0.to_be_bytes())
    }

    fn put_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let key = incident.id.0.to_be_bytes();
        let id = incident.id.0;
        if !self.exists_of(incident.id, INCIDENTS, &key)? {
            self.delta.incidents += 1;
        }
        let was = match self.delta.open.get(&id) {
            Some(o) => o.clone(),
            None => self.live.open.get(&id).cloned(),
        };
        let now = incident.status.is_open().then(|| OpenIncident {
            status: incident.status,
            severity: incident.severity,
            service: incident.service.clone(),
        });
        if was != now {
            match &now {
                Some(o) => self.tput(OPEN_INCIDENTS, &key, encode(o))?,
                None => {
                    self.tremove(OPEN_INCIDENTS, &key)?;
                }
            }
            self.delta.open.insert(id, now);
        }
        self.tput(INCIDENTS, &key, encode(incident))
    }

    fn maintenance_windows(&self) -> Result<Vec<crate::maintenance::StoredWindow>, StoreError> {
        Ok(self.tget(META, MAINTENANCE_KEY)?.unwrap_or_default())
    }

    fn put_maintenance_window(
        &mut self,
        window: &crate::maintenance::StoredWindow,
    ) -> Result<(), StoreError> {
        let mut all = self.maintenance_windows()?;
        match all.iter_mut().find(|w| w.id == window.id) {
            Some(w) => *w = window.clone(),
            None => {
                all.push(window.clone());
                all.sort_by_key(|w| w.id);
            }
        }
        self.tput(META, MAINTENANCE_KEY, encode(&all))
    }

    fn delete_maintenance_window(&mut self, id: u64) -> Result<bool, StoreError> {
        let mut all = self.maintenance_windows()?;
        let before = all.len();
        all.retain(|w| w.id != id);
        if all.len() == before {
            return Ok(false);
        }
        self.tput(META, MAINTENANCE_KEY, encode(&all))?;
        Ok(true)
    }

    fn next_maintenance_id(&mut self) -> Result<u64, StoreError> {
        let next: u64 = self.tget(META, b"next_maintenance")?.unwrap_or(1);
        self.tput(META, b"next_maintenance", encode(&(next + 1)))?;
        Ok(next)
    }

    fn next_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        let next: u64 = self.tget(META, b"next_incident")?.unwrap_or(1);
        self.tput(META, b"next_incident", encode(&(next + 1)))?;
        self.fresh.insert(next);
        Ok(IncidentId(next))
    }

    fn append_timeline(&mut self, id: IncidentId, entry: &TimelineEntry) -> Result<(), StoreError> {
        let json = encode(entry);
        match self.timeline.get_mut(&id.0) {
            Some((first, entries)) if *first + entries.len() as u64 == entry.seq => {
                entries.push(json);
            }
            _ => {
                // A seq that does not follow the last (never so today)
                // ends the record before it.
                if let Some((first, entries)) = self.timeline.insert(id.0, (entry.seq, vec![json]))
                {
                    self.put_timeline_record(id.0, first, entries)?;
                }
            }
        }
        Ok(())
    }

    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        let key = timer.key();
        if !self.exists_of(timer.incident, TIMERS, &key)? {
            self.delta.timers += 1;
        }
        self.tput(TIMERS, &key, encode(timer))
    }

    fn delete_timer(&mut self, timer: &Timer) -> Result<bool, StoreError> {
        let existed = self.tremove(TIMERS, &timer.key())?;
        if existed {
            self.delta.timers -= 1;
        }
        Ok(existed)
    }

    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        // Every outbox key begins with its incident's id (`INC-n/`).
        let incident = key
            .split_once('/')
            .and_then(|(id, _)| id.strip_prefix("INC-")?.parse().ok());
        if let Some(id) = incident
            && self.fresh.contains(&id)
        {
            return self
                .unapplied(OUTBOX, key.as_bytes())
                .flatten()
                .map(|v| decode(v, OUTBOX, key.as_bytes()))
                .transpose();
        }
        self.tget(OUTBOX, key.as_bytes())
    }

    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        if let Some(old) = self.outbox_entry(&entry.key)?
            && old.state == DeliveryState::Pending
        {
            self.tremove(OUTBOX_QUEUE, &queue_key(old.due, &old.key))?;
            self.delta.outbox -= 1;
        }
        if entry.state == DeliveryState::Pending {
            self.tput(OUTBOX_QUEUE, &queue_key(entry.due, &entry.key), Vec::new())?;
            self.delta.outbox += 1;
        }
        self.tput(OUTBOX, entry.key.as_bytes(), encode(entry))
    }

    fn set_channel(
        &mut self,
        platform: &str,
        channel: &str,
        id: IncidentId,
    ) -> Result<(), StoreError> {
        self.tput(CHANNELS, &open_key(platform, channel), encode(&id))
    }

    fn record_event(&mut self, event: &StoredEvent) -> Result<(), StoreError> {
        let id = self.generate_id()?;
        self.delta.events += 1;
        self.tput(EVENTS, &id.to_be_bytes(), encode(event))
    }

    fn record_change(&mut self, service: &str, change: &ServiceChange) -> Result<(), StoreError> {
        let id = self.generate_id()?;
        let mut key = change_prefix(service);
        let at = (change.at.timestamp_millis() as u64) ^ (1 << 63);
        key.extend_from_slice(&at.to_be_bytes());
        key.extend_from_slice(&id.to_be_bytes());
        self.tput(CHANGES, &key, encode(change))
    }
    fn remove_incident(&mut self, expired: &Expired) -> Result<bool, StoreError> {
        let inc = &expired.incident;
        let key = inc.id.0.to_be_bytes();
        if !self.tremove(INCIDENTS, &key)? {
            return Ok(false);
        }
        self.delta.incidents -= 1;
        let was_open = match self.delta.open.get(&inc.id.0) {
            Some(o) => o.is_some(),
            None => self.live.open.contains_key(&inc.id.0),
        };
        if was_open {
            self.tremove(OPEN_INCIDENTS, &key)?;
            self.delta.open.insert(inc.id.0, None);
        }
        self.timeline.remove(&inc.id.0);
        for seq in 0..inc.timeline_len {
            let k = timeline_key(inc.id, seq);
            // A seq inside another's record is no key, but a backup
            // running meanwhile must still hear it is gone.
            if !self.tremove(TIMELINE, &k)? {
                self.touch(TIMELINE, &k);
            }
        }
        self.tremove(SUMMARIES, &key)?;
        for k in &expired.outbox_keys {
            if let Some(old) = self.outbox_entry(k)?
                && old.state == DeliveryState::Pending
            {
                self.tremove(OUTBOX_QUEUE, &queue_key(old.due, &old.key))?;
                self.delta.outbox -= 1;
            }
            self.tremove(OUTBOX, k.as_bytes())?;
        }
        for (platform, link) in &inc.chat {
            let ck = open_key(platform, &link.channel_id);
            if self.tget::<IncidentId>(CHANNELS, &ck)? == Some(inc.id) {
                self.tremove(CHANNELS, &ck)?;
            }
        }
        Ok(true)
    }

    fn remove_event(&mut self, id: u64) -> Result<bool, StoreError> {
        let removed = self.tremove(EVENTS, &id.to_be_bytes())?;
        if removed {
            self.delta.events -= 1;
        }
        Ok(removed)
    }
}

/// The fields of a stored event retention needs.
#[derive(serde::Deserialize)]
struct EventHead {
    received_at: DateTime<Utc>,
    incident: Option<IncidentId>,
}

fn change_prefix(service: &str) -> Vec<u8> {
    let mut key = service.as_bytes().to_vec();
    key.push(0);
    key
}

impl Store for SledStore {
    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.write_with(&mut |tx| f(tx))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Each commit synced its log record before it returned: what is
        // left is the state marker.
        self.writes_failing()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        // Only a flush that opened an incident rewrites the marker.
        self.write_marker(self.counter.load(Ordering::SeqCst), false)
    }

    fn close(&self) -> Result<(), StoreError> {
        self.flush()?;
        let mut wal = self.write_lock.lock();
        let h = self.h()?;
        self.checkpoint(&mut wal, &h)
    }

    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.get(INCIDENTS, &id.0.to_be_bytes())
    }

    fn incidents(
        &self,
        status: Option<Status>,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let end = before.map_or(u64::MAX, |b| b.0);
        let mut out = Vec::new();
        if let Some(s) = status.filter(|s| s.is_open()) {
            // From the open index: never touches resolved history.
            let filter = super::OpenFilter {
                status: Some(s),
                ..Default::default()
            };
            return self.open_incidents(&filter, before, limit);
        }
        // Newest first; with `resolved`, the open ones are skipped by the
        // index without decoding them, so at most `limit` plus the open
        // incidents are read.
        let skip_open = status == Some(Status::Resolved);
        let tree = &self.h()?.trees[INCIDENTS];
        for item in tree.range(..end.to_be_bytes()).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            if skip_open && self.live.read().open.contains_key(&id_of(&k, INCIDENTS)?) {
                continue;
            }
            let inc: Incident = decode(&v, INCIDENTS, &k)?;
            if status.is_none_or(|s| s == inc.status) {
                out.push(inc);
            }
        }
        Ok(out)
    }

    fn open_incidents(
        &self,
        filter: &super::OpenFilter,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut end = before.map_or(u64::MAX, |b| b.0);
        let mut out = Vec::with_capacity(limit.min(1024));
        // An incident resolved (or changed) between reading the index and
        // reading it is left out, and the index is read on past it: a page
        // is short only at the end, so callers that stop at a short page
        // (the API's cursor, the status page) miss nobody.
        while out.len() < limit {
            let want = limit - out.len();
            let ids: Vec<u64> = self
                .live
                .read()
                .open
                .range(..end)
                .rev()
                .filter(|(_, o)| filter.admits(o))
                .map(|(id, _)| *id)
                .take(want)
                .collect();
            let Some(&last) = ids.last() else { break };
            end = last;
            let exhausted = ids.len() < want;
            for id in ids {
                if let Some(inc) = self.incident(IncidentId(id))?
                    && inc.status.is_open()
                    && filter.status.is_none_or(|s| s == inc.status)
                {
                    out.push(inc);
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    fn gauges(&self) -> Result<Gauges, StoreError> {
        let outbox_next_due = match self.h()?.trees[OUTBOX_QUEUE].first().map_err(backend)? {
            Some((k, _)) => Some(time_of(&k, OUTBOX_QUEUE)?),
            None => None,
        };
        let live = self.live.read();
        let mut open = std::collections::BTreeMap::new();
        for o in live.open.values() {
            *open.entry((o.severity, o.status.as_str())).or_insert(0u64) += 1;
        }
        Ok(Gauges {
            open: open
                .into_iter()
                .map(|((sev, st), n)| (sev, st.parse().expect("a status name"), n))
                .collect(),
            outbox_depth: live.outbox_depth,
            outbox_next_due,
            timers_pending: live.timers,
        })
    }

    fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        self.h()?.trees[TIMELINE]
            .scan_prefix(id.0.to_be_bytes())
            .try_fold(Vec::new(), |mut all, item| {
                let (k, v) = item.map_err(backend)?;
                decode_timeline(&v, &k, &mut all)?;
                Ok(all)
            })
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.live.read().counts.events)
    }

    fn recent_changes(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<ServiceChange>, StoreError> {
        let mut out = Vec::new();
        for item in self.h()?.trees[CHANGES]
            .scan_prefix(change_prefix(service))
            .rev()
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            out.push(decode(&v, CHANGES, &k)?);
        }
        Ok(out)
    }

    fn incident_count(&self) -> Result<u64, StoreError> {
        Ok(self.live.read().counts.incidents)
    }

    /// Writes a consistent snapshot as JSON lines (see [`BACKUP_FORMAT`]):
    /// a header line, then one line per record, streamed as the trees are
    /// read. Writers go on meanwhile; the keys they write are journaled and
    /// written again at the end (as `deleted` if they are gone), under the
    /// write lock for just that long, so the backup is the store as it was
    /// at its end. Restore applies the lines in order.
    fn backup(&self, out: &mut dyn std::io::Write, now: DateTime<Utc>) -> Result<u64, StoreError> {
        struct Stop<'a>(&'a SledStore);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                let _writer = self.0.write_lock.lock();
                *self.0.journal.lock() = None;
            }
        }
        let io = |e: std::io::Error| StoreError::Backend(format!("writing the backup: {e}"));
        {
            let _writer = self.write_lock.lock();
            let mut j = self.journal.lock();
            if j.is_some() {
                return Err(StoreError::Backend(
                    "another backup is being taken; try again when it is done".into(),
                ));
            }
            *j = Some(Journal::new());
        }
        let stop = Stop(self);
        let header = serde_json::json!({
            "format": BACKUP_FORMAT,
            "version": BACKUP_VERSION,
            "created_at": now,
            "trees": TREE_NAMES,
        });
        writeln!(out, "{header}").map_err(io)?;
        let line = |out: &mut dyn std::io::Write, t: usize, k: &[u8], v: Option<&[u8]>| {
            let line = match v {
                Some(v) => serde_json::json!({
                    "tree": TREE_NAMES[t],
                    "key": hex::encode(k),
                    "value": String::from_utf8_lossy(v),
                }),
                None => serde_json::json!({
                    "tree": TREE_NAMES[t],
                    "key": hex::encode(k),
                    "deleted": true,
                }),
            };
            writeln!(out, "{line}").map_err(io)
        };
        // A timeline record of several entries goes out as one record per
        // entry, so the format does not change with how they were stored.
        // Returns how many records were written.
        let record = |out: &mut dyn std::io::Write,
                      t: usize,
                      k: &[u8],
                      v: Option<&[u8]>|
         -> Result<u64, StoreError> {
            match v {
                Some(v) if t == TIMELINE && v.first() == Some(&b'[') => {
                    let entries: Vec<TimelineEntry> = decode(v, t, k)?;
                    let id = id_of(k.get(..8).unwrap_or(k), TIMELINE)?;
                    for e in &entries {
                        line(
                            out,
                            t,
                            &timeline_key(IncidentId(id), e.seq),
                            Some(&encode(e)),
                        )?;
                    }
                    Ok(entries.len() as u64)
                }
                v => line(out, t, k, v).map(|()| 1),
            }
        };
        let h = self.h()?;
        let mut n = 0;
        for (i, tree) in h.trees.iter().enumerate() {
            if DERIVED.contains(&i) {
                continue;
            }
            for item in tree.iter() {
                let (k, v) = item.map_err(backend)?;
                n += record(out, i, &k, Some(&v))?;
            }
        }
        // The keys written meanwhile, as they are now.
        {
            let _writer = self.write_lock.lock();
            self.applier.settle();
            let journal = self.journal.lock().take().unwrap_or_default();
            for (t, k) in journal {
                if DERIVED.contains(&t) {
                    continue;
                }
                let v = h.trees[t].get(&k).map_err(backend)?;
                n += record(out, t, &k, v.as_deref())?;
            }
        }
        drop(stop);
        writeln!(
            out,
            "{}",
            serde_json::json!({"format": BACKUP_END, "records": n})
        )
        .map_err(io)?;
        out.flush().map_err(io)?;
        Ok(n)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        self.writes_failing()?;
        {
            let mut wal = self.write_lock.lock();
            self.recover(&mut wal)?;
        }
        let probe = encode(&"probe");
        let h = self.h()?;
        let result = (|| {
            h.trees[META]
                .insert(b"readyz_probe", probe.clone())
                .map_err(backend)?;
            match h.trees[META].get(b"readyz_probe").map_err(backend)? {
                Some(v) if v.as_ref() == probe.as_slice() => {}
                _ => return Err(StoreError::Backend("the probe did not read back".into())),
            }
            h.db.flush().map(|_| ()).map_err(backend)
        })();
        if let Err(e) = &result {
            self.note_failure(e);
        }
        result
    }

    fn failing_for(&self) -> Option<std::time::Duration> {
        SledStore::failing_for(self)
    }

    fn next_timer(&self) -> Result<Option<Timer>, StoreError> {
        match self.h()?.trees[TIMERS].first().map_err(backend)? {
            Some((k, v)) => decode(&v, TIMERS, &k).map(Some),
            None => Ok(None),
        }
    }

    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let mut due = Vec::new();
        for kv in self.h()?.trees[TIMERS].iter() {
            let (k, v) = kv.map_err(backend)?;
            let timer: Timer = decode(&v, TIMERS, &k)?;
            if timer.due > now || due.len() == limit {
                break;
            }
            due.push(timer);
        }
        Ok(due)
    }

    fn timer_count(&self) -> Result<u64, StoreError> {
        Ok(self.live.read().timers)
    }

    fn heartbeat_timers(&self) -> Result<Vec<Timer>, StoreError> {
        let mut out = Vec::new();
        for kv in self.h()?.trees[TIMERS].iter() {
            let (k, v) = kv.map_err(backend)?;
            if k.get(crate::escalation::TIMER_KIND_AT) == Some(&crate::escalation::HEARTBEAT_TAG) {
                out.push(decode(&v, TIMERS, &k)?);
            }
        }
        Ok(out)
    }

    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let end = time_key(now + chrono::Duration::milliseconds(1));
        let mut out = Vec::new();
        for item in self.h()?.trees[OUTBOX_QUEUE].range(..end.to_vec()) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(backend)?;
            if let Some(e) = self.get::<OutboxEntry>(OUTBOX, &k[8..])? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn outbox_depth(&self) -> Result<u64, StoreError> {
        Ok(self.live.read().outbox_depth)
    }

    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.h()?.trees[OUTBOX_QUEUE].first().map_err(backend)? {
            Some((k, _)) => Ok(self.get::<OutboxEntry>(OUTBOX, &k[8..])?.map(|e| e.due)),
            None => Ok(None),
        }
    }

    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        self.get(OUTBOX, key.as_bytes())
    }

    fn outbox_for(&self, incident: IncidentId) -> Result<Vec<OutboxEntry>, StoreError> {
        let prefix = format!("{incident}/");
        self.h()?.trees[OUTBOX]
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                decode(&v, OUTBOX, &k)
            })
            .collect()
    }

    fn expired(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<Vec<Expired>, StoreError> {
        let h = self.h()?;
        let oldest_first = h.trees[INCIDENTS].iter().take(limit).map(|item| {
            let (k, v) = item.map_err(backend)?;
            decode::<Incident>(&v, INCIDENTS, &k)
        });
        super::gather_expired(self, oldest_first, cutoff)
    }

    fn expired_events(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<u64>,
        scan: usize,
    ) -> Result<(Vec<u64>, Option<u64>), StoreError> {
        let h = self.h()?;
        let mut out = Vec::new();
        let from = match after {
            Some(id) => std::ops::Bound::Excluded(id.to_be_bytes()),
            None => std::ops::Bound::Unbounded,
        };
        let range = h.trees[EVENTS].range::<[u8; 8], _>((from, std::ops::Bound::Unbounded));
        for (scanned, item) in range.enumerate() {
            let (k, v) = item.map_err(backend)?;
            let id = id_of(&k, EVENTS)?;
            if scanned >= scan {
                return Ok((out, Some(id - 1)));
            }
            let head: EventHead = decode(&v, EVENTS, &k)?;
            if head.received_at >= cutoff {
                break;
            }
            let gone = match head.incident {
                Some(inc) => !h.trees[INCIDENTS]
                    .contains_key(inc.0.to_be_bytes())
                    .map_err(backend)?,
                None => true,
            };
            if gone {
                out.push(id);
            }
        }
        Ok((out, None))
    }

    fn put_summary(&self, id: IncidentId, markdown: &str) -> Result<(), StoreError> {
        self.write(SUMMARIES, &id.0.to_be_bytes(), Some(encode(&markdown)))
    }

    fn summary(&self, id: IncidentId) -> Result<Option<String>, StoreError> {
        self.get(SUMMARIES, &id.0.to_be_bytes())
    }

    fn incident_by_channel(
        &self,
        platform: &str,
        channel: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        self.get(CHANNELS, &open_key(platform, channel))
    }

    fn add_override(&self, mut o: StoredOverride) -> Result<StoredOverride, StoreError> {
        o.id = self.h()?.db.generate_id().map_err(backend)? + 1;
        self.write(
            OVERRIDES,
            &override_key(&o.schedule, o.id),
            Some(encode(&o)),
        )?;
        Ok(o)
    }

    fn overrides(&self, schedule: &str) -> Result<Vec<StoredOverride>, StoreError> {
        let mut prefix = schedule.as_bytes().to_vec();
        prefix.push(0);
        self.h()?.trees[OVERRIDES]
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                decode(&v, OVERRIDES, &k)
            })
            .collect()
    }

    fn delete_override(&self, schedule: &str, id: u64) -> Result<bool, StoreError> {
        let key = override_key(schedule, id);
        let existed = self.h()?.trees[OVERRIDES]
            .contains_key(&key)
            .map_err(backend)?;
        if existed {
            self.write(OVERRIDES, &key, None)?;
        }
        Ok(existed)
    }

    fn put_token(&self, token: &crate::access::ApiToken) -> Result<(), StoreError> {
        self.write(TOKENS, token.id.as_bytes(), Some(encode(token)))
    }

    fn token(&self, id: &str) -> Result<Option<crate::access::ApiToken>, StoreError> {
        self.get(TOKENS, id.as_bytes())
    }

    fn update_token(
        &self,
        id: &str,
        f: &mut dyn FnMut(&crate::access::ApiToken) -> Option<crate::access::ApiToken>,
    ) -> Result<Option<crate::access::ApiToken>, StoreError> {
        // One process opens the store, and its writes to tokens take the
        // writer lock: nothing changes the record between the read and
        // the write.
        let mut new = None;
        self.write_with(&mut |tx| {
            new = None;
            let Some(current) = tx.tget::<crate::access::ApiToken>(TOKENS, id.as_bytes())? else {
                return Ok(());
            };
            if let Some(n) = f(&current) {
                tx.tput(TOKENS, n.id.as_bytes(), encode(&n))?;
                new = Some(n);
            }
            Ok(())
        })?;
        Ok(new)
    }

    fn maintenance_windows(&self) -> Result<Vec<crate::maintenance::StoredWindow>, StoreError> {
        Ok(self.get(META, MAINTENANCE_KEY)?.unwrap_or_default())
    }

    fn tokens(&self) -> Result<Vec<crate::access::ApiToken>, StoreError> {
        self.h()?.trees[TOKENS]
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                decode(&v, TOKENS, &k)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        crate::store::suite::run(&store);
    }

    #[test]
    fn flushes_are_counted_and_refused_while_writes_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.flush().unwrap();
        store.flush().unwrap();
        assert_eq!(store.flush_count(), 2);
        store.set_write_failure(true);
        assert!(store.flush().is_err());
        store.set_write_failure(false);
        assert_eq!(store.flush_count(), 2);
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .transact(&mut |tx| tx.next_incident_id().map(|_| ()))
                .unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let mut got = None;
        store
            .transact(&mut |tx| {
                got = Some(tx.next_incident_id()?);
                Ok(())
            })
            .unwrap();
        assert_eq!(got, Some(IncidentId(2)));
    }

    /// Opens an incident for dedup key `key` in `tx`, with its open index
    /// and timeline.
    fn open_in(tx: &mut dyn Tx, key: &str) -> Result<IncidentId, StoreError> {
        let id = tx.next_incident_id()?;
        let change = crate::store::suite::opening(id, key);
        tx.put_incident(&change.incident)?;
        tx.set_open_incident("api", key, Some(id))?;
        for e in &change.entries {
            tx.append_timeline(id, e)?;
        }
        Ok(id)
    }

    fn allocate(store: &SledStore, n: usize) -> IncidentId {
        let mut last = IncidentId(0);
        for _ in 0..n {
            store
                .transact(&mut |tx| {
                    last = open_in(tx, "k")?;
                    Ok(())
                })
                .unwrap();
        }
        store.flush().unwrap();
        last
    }

    fn next(store: &SledStore) -> IncidentId {
        let mut got = IncidentId(0);
        store
            .transact(&mut |tx| {
                got = tx.next_incident_id()?;
                Ok(())
            })
            .unwrap();
        got
    }

    #[test]
    fn a_counter_behind_the_incidents_it_holds_is_moved_past_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            allocate(&store, 5);
            store.h().unwrap().trees[META]
                .insert(b"next_incident", encode(&2u64))
                .unwrap();
            std::fs::remove_file(dir.path().join(STATE_MARKER)).unwrap();
            store.h().unwrap().db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(next(&store), IncidentId(6));
    }

    #[test]
    fn the_state_marker_is_rewritten_in_place_after_each_flush_that_opened_an_incident() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let marker = dir.path().join(STATE_MARKER);
        for n in 1..=3u64 {
            allocate(&store, 1);
            let text = std::fs::read_to_string(&marker).unwrap();
            assert_eq!(text.len(), MARKER_LEN, "{text:?}");
            assert_eq!(read_marker(&marker).unwrap(), Some(n + 1), "{text:?}");
        }
        assert!(!marker.with_extension("tmp").exists());
    }

    #[test]
    fn an_older_copy_of_the_database_does_not_reuse_numbers_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            allocate(&store, 1);
        }
        copy_db(dir.path(), old.path());
        {
            let store = SledStore::open(dir.path()).unwrap();
            assert_eq!(allocate(&store, 9), IncidentId(10));
        }
        // The database is put back as it was (a disk snapshot, a bad
        // copy); the marker beside it remembers INC-10.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() != STATE_MARKER {
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
        copy_db(old.path(), dir.path());
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.h().unwrap().trees[INCIDENTS].len(), 1);
        assert_eq!(next(&store), IncidentId(11));
    }

    #[test]
    fn a_truncated_database_is_refused_or_numbers_go_on_past_the_lost_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            allocate(&store, 200);
        }
        let db = dir.path().join("db");
        let len = std::fs::metadata(&db).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(len * 9 / 10).unwrap();
        drop(f);
        match SledStore::open(dir.path()) {
            Ok(store) => assert!(next(&store).0 > 200, "a lost number was handed out again"),
            Err(e) => assert!(e.to_string().contains("cannot open"), "{e}"),
        }
    }

    /// Writes that land while the backup is read (in trees it has already
    /// passed) are in it: the backup is the store as it was at its end.
    #[test]
    fn a_backup_taken_while_writers_go_on_is_the_store_at_its_end() {
        struct Meddler<'a> {
            store: &'a SledStore,
            out: Vec<u8>,
            done: bool,
        }
        impl std::io::Write for Meddler<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.out.extend_from_slice(buf);
                let text = String::from_utf8_lossy(&self.out);
                if !self.done && text.contains("\"tree\":\"timeline\"") {
                    // Incidents and the open index are already read.
                    self.done = true;
                    self.store
                        .transact(&mut |tx| {
                            open_in(tx, "late")?;
                            tx.set_open_incident("api", "early", None)
                        })
                        .unwrap();
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .transact(&mut |tx| open_in(tx, "early").map(|_| ()))
            .unwrap();
        let mut m = Meddler {
            store: &store,
            out: Vec::new(),
            done: false,
        };
        store.backup(&mut m, crate::store::suite::now()).unwrap();
        assert!(m.done);
        let backup = m.out;
        let last = String::from_utf8_lossy(&backup)
            .trim_end()
            .rsplit('\n')
            .next()
            .unwrap()
            .to_string();
        let end: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(end["format"], BACKUP_END);
        let restored_dir = tempfile::tempdir().unwrap();
        let path = restored_dir.path().join("data");
        let report = SledStore::restore(&path, std::io::Cursor::new(&backup)).unwrap();
        assert_eq!((report.incidents, report.next_incident), (2, 3));
        let restored = SledStore::open(&path).unwrap();
        let mut open = (None, None);
        restored
            .transact(&mut |tx| {
                open = (
                    tx.open_incident("api", "early")?,
                    tx.open_incident("api", "late")?,
                );
                Ok(())
            })
            .unwrap();
        assert_eq!(open, (None, Some(IncidentId(2))));
        // The backup leaves the derived index out; restore builds it again.
        assert!(!String::from_utf8_lossy(&backup).contains("\"tree\":\"open_incidents\""));
        let triggered: Vec<u64> = restored
            .incidents(Some(Status::Triggered), None, 10)
            .unwrap()
            .iter()
            .map(|i| i.id.0)
            .collect();
        assert_eq!(triggered, vec![2, 1]);
        assert_eq!(restored.gauges().unwrap().open.len(), 1);
        assert_eq!(restored.incident_count().unwrap(), 2);
        // A backup cut short is refused, and leaves nothing behind.
        let cut = &backup[..backup.len() - 10];
        let cut_dir = tempfile::tempdir().unwrap();
        let cut_path = cut_dir.path().join("data");
        let e = SledStore::restore(&cut_path, std::io::Cursor::new(cut)).unwrap_err();
        assert!(e.to_string().contains("line"), "{e}");
        let cut = backup
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>();
        let without_end = cut[..cut.len() - 1].join(&b'\n');
        let e = SledStore::restore(&cut_path, std::io::Cursor::new(without_end)).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        assert!(!cut_path.exists());
    }

    /// A number handed out in a transaction has nothing in sled, so its
    /// keys are looked up in the transaction's own writes only: written
    /// twice, each is counted once and read back.
    #[test]
    fn a_new_incidents_keys_are_read_from_the_transactions_own_writes() {
        use crate::escalation::{Timer, TimerKind};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut seen = (None, None);
        store
            .transact(&mut |tx| {
                let id = tx.next_incident_id()?;
                let inc = crate::store::suite::opening(id, "k").incident;
                let timer = Timer {
                    due: crate::store::suite::now(),
                    incident: id,
                    generation: 0,
                    kind: TimerKind::Escalate { step: 0, round: 0 },
                };
                let mut entry = crate::store::suite::page_entry();
                entry.key = format!("{id}/g0/r0/s0/user:alice/m0");
                entry.incident = id;
                seen.0 = tx.outbox_entry(&entry.key)?;
                for _ in 0..2 {
                    tx.put_incident(&inc)?;
                    tx.put_timer(&timer)?;
                    tx.put_outbox(&entry)?;
                }
                seen.1 = tx.outbox_entry(&entry.key)?.map(|e| e.key);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.0, None);
        assert_eq!(seen.1.as_deref(), Some("INC-1/g0/r0/s0/user:alice/m0"));
        let g = store.gauges().unwrap();
        assert_eq!(store.incident_count().unwrap(), 1);
        assert_eq!((g.timers_pending, g.outbox_depth), (1, 1));
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        let g = store.gauges().unwrap();
        assert_eq!((g.timers_pending, g.outbox_depth), (1, 1));
        assert_eq!(store.incident_count().unwrap(), 1);
    }

    /// An incident resolved between the open index's read and its own is
    /// left out, and the page is filled from further down the index: a
    /// short page means the end, so nobody is missed by a caller that
    /// stops there.
    #[test]
    fn open_listings_fill_their_page_past_an_incident_resolved_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for key in ["a", "b", "c", "d"] {
            store
                .transact(&mut |tx| {
                    let id = tx.next_incident_id()?;
                    tx.put_incident(&crate::store::suite::opening(id, key).incident)
                })
                .unwrap();
        }
        // INC-4 and INC-3 resolve in sled behind the index's back, as a
        // commit landing between the two reads would look to the listing.
        for id in [4u64, 3] {
            let mut inc = store.incident(IncidentId(id)).unwrap().unwrap();
            inc.status = Status::Resolved;
            store.h().unwrap().trees[INCIDENTS]
                .insert(id.to_be_bytes(), serde_json::to_vec(&inc).unwrap())
                .unwrap();
        }
        let all = super::super::OpenFilter::default();
        let ids = |page: Vec<Incident>| page.iter().map(|i| i.id.0).collect::<Vec<_>>();
        assert_eq!(ids(store.open_incidents(&all, None, 2).unwrap()), [2, 1]);
        assert_eq!(ids(store.open_incidents(&all, None, 3).unwrap()), [2, 1]);
        let triggered = store.incidents(Some(Status::Triggered), None, 2).unwrap();
        assert_eq!(ids(triggered), [2, 1]);
        assert_eq!(
            ids(store.open_incidents(&all, Some(IncidentId(2)), 2).unwrap()),
            [1]
        );
        assert!(
            store
                .open_incidents(&all, Some(IncidentId(1)), 2)
                .unwrap()
                .is_empty()
        );
    }

    /// The entries one transaction appends to an incident's timeline are
    /// one sled record; reads, backups (one record per entry, as before),
    /// restores and retention still see each entry.
    #[test]
    fn a_transactions_timeline_entries_are_one_record_and_still_read_as_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut inc = None;
        store
            .transact(&mut |tx| {
                let id = tx.next_incident_id()?;
                let change = crate::store::suite::opening(id, "k");
                let mut i = change.incident.clone();
                i.timeline_len = 5;
                tx.put_incident(&i)?;
                for seq in 0..4 {
                    let mut e = change.entries[0].clone();
                    e.seq = seq;
                    tx.append_timeline(id, &e)?;
                }
                inc = Some((i, change.entries[0].clone()));
                Ok(())
            })
            .unwrap();
        let (inc, entry) = inc.unwrap();
        let records = || store.h().unwrap().trees[TIMELINE].len();
        assert_eq!(records(), 1);
        store
            .transact(&mut |tx| {
                let mut e = entry.clone();
                e.seq = 4;
                tx.append_timeline(inc.id, &e)
            })
            .unwrap();
        assert_eq!(records(), 2);
        let seqs = |s: &SledStore| -> Vec<u64> {
            s.timeline(inc.id).unwrap().iter().map(|e| e.seq).collect()
        };
        assert_eq!(seqs(&store), vec![0, 1, 2, 3, 4]);

        let mut backup = Vec::new();
        store
            .backup(&mut backup, crate::store::suite::now())
            .unwrap();
        let keys: Vec<String> = String::from_utf8_lossy(&backup)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["tree"] == "timeline")
            .map(|r| r["key"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..5u64)
            .map(|seq| hex::encode(timeline_key(inc.id, seq)))
            .collect();
        assert_eq!(keys, want, "one backup record per entry");
        let restored_dir = tempfile::tempdir().unwrap();
        let path = restored_dir.path().join("data");
        SledStore::restore(&path, std::io::Cursor::new(&backup)).unwrap();
        assert_eq!(seqs(&SledStore::open(&path).unwrap()), vec![0, 1, 2, 3, 4]);

        let expired = Expired {
            incident: inc.clone(),
            summary: None,
            outbox_keys: Vec::new(),
        };
        let mut removed = false;
        store
            .transact(&mut |tx| {
                removed = tx.remove_incident(&expired)?;
                Ok(())
            })
            .unwrap();
        assert!(removed);
        assert_eq!(records(), 0);
        assert_eq!(seqs(&store), Vec::<u64>::new());
    }

    /// A store written before the open-incident index existed gets it
    /// (and its counts) built at its first open, once.
    #[test]
    fn an_older_store_gets_its_index_built_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            allocate(&store, 3);
            store
                .transact(&mut |tx| {
                    let mut inc = tx.incident(IncidentId(2))?.unwrap();
                    inc.status = Status::Resolved;
                    tx.put_incident(&inc)
                })
                .unwrap();
            // As an older tocsin left it: no index, no counts.
            let h = store.h().unwrap();
            h.trees[OPEN_INCIDENTS].clear().unwrap();
            h.trees[META].remove(b"counts").unwrap();
            h.trees[META].remove(b"index_version").unwrap();
            h.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let open: Vec<u64> = store
            .incidents(Some(Status::Triggered), None, 10)
            .unwrap()
            .iter()
            .map(|i| i.id.0)
            .collect();
        assert_eq!(open, vec![3, 1]);
        assert_eq!(store.incident_count().unwrap(), 3);
        let g = store.gauges().unwrap();
        assert_eq!(g.open.iter().map(|(_, _, n)| n).sum::<u64>(), 2);
        // Recorded: the next open trusts the stored counts, no rebuild.
        store.h().unwrap().trees[META]
            .insert(
                b"counts",
                encode(&Counts {
                    incidents: 40,
                    events: 7,
                }),
            )
            .unwrap();
        store.h().unwrap().db.flush().unwrap();
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.incident_count().unwrap(), 40);
        assert_eq!(store.event_count().unwrap(), 7);
    }

    /// The counts survive a restart, and restart reads the index, not history.
    /// Opens `n` incidents, each with a raw event, and resolves them at `at`.
    fn resolved(store: &SledStore, n: usize, at: DateTime<Utc>) {
        for _ in 0..n {
            store
                .transact(&mut |tx| {
                    let id = open_in(tx, "k")?;
                    let inc = tx.incident(id)?.unwrap();
                    let change = inc
                        .resolve(crate::incident::Actor::System, None, at)
                        .unwrap();
                    tx.put_incident(&change.incident)?;
                    for e in &change.entries {
                        tx.append_timeline(id, e)?;
                    }
                    tx.set_open_incident("api", "k", None)?;
                    tx.record_event(&StoredEvent {
                        received_at: at,
                        integration: "int".into(),
                        incident: Some(id),
                        event: crate::store::suite::event("k"),
                    })
                })
                .unwrap();
        }
        store.flush().unwrap();
    }

    /// Removes what [`Store::expired`] and [`Store::expired_events`] give.
    fn sweep(store: &SledStore, cutoff: DateTime<Utc>) -> (usize, usize) {
        let (mut incidents, mut events) = (0, 0);
        loop {
            let batch = store.expired(cutoff, 500).unwrap();
            if batch.is_empty() {
                break;
            }
            incidents += batch.len();
            store
                .transact(&mut |tx| {
                    for e in &batch {
                        assert!(tx.remove_incident(e)?);
                    }
                    Ok(())
                })
                .unwrap();
        }
        let mut after = None;
        loop {
            let (ids, next) = store.expired_events(cutoff, after, 500).unwrap();
            events += ids.len();
            store
                .transact(&mut |tx| {
                    for id in &ids {
                        assert!(tx.remove_event(*id)?);
                    }
                    Ok(())
                })
                .unwrap();
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        store.flush().unwrap();
        (incidents, events)
    }

    #[test]
    fn retention_removes_old_resolved_incidents_and_counts_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::store::suite::now();
        {
            let store = SledStore::open(dir.path()).unwrap();
            resolved(&store, 3, t);
            allocate(&store, 1); // INC-4 stays open
            resolved(&store, 2, t);
            store.put_summary(IncidentId(2), "# INC-2").unwrap();
            let cutoff = t + chrono::Duration::days(1);
            assert_eq!(store.expired(cutoff, 2).unwrap().len(), 2);
            let first = store.expired(cutoff, 10).unwrap();
            assert_eq!(first.len(), 3, "stops at the open INC-4");
            assert_eq!(first[1].summary.as_deref(), Some("# INC-2"));
            assert_eq!(
                store.expired(t, 10).unwrap(),
                vec![],
                "not older than the cutoff"
            );
            assert_eq!(sweep(&store, cutoff), (3, 3));
            assert_eq!(store.incident_count().unwrap(), 3);
            assert_eq!(store.event_count().unwrap(), 2);
            assert_eq!(store.incident(IncidentId(1)).unwrap(), None);
            assert_eq!(store.timeline(IncidentId(1)).unwrap(), vec![]);
            assert_eq!(store.summary(IncidentId(2)).unwrap(), None);
            assert_eq!(store.gauges().unwrap().open.len(), 1);
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.incident_count().unwrap(), 3);
        assert_eq!(store.event_count().unwrap(), 2);
        let ids: Vec<u64> = store
            .incidents(None, None, 10)
            .unwrap()
            .iter()
            .map(|i| i.id.0)
            .collect();
        assert_eq!(ids, [6, 5, 4]);
        assert_eq!(next(&store), IncidentId(7), "numbers are never reused");
    }

    /// `cargo test --release --lib retention_of_10000 -- --ignored --nocapture`:
    /// the figure in `docs/benchmarks.md`.
    #[test]
    #[ignore = "a measurement"]
    fn retention_of_10000_incidents_takes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let t = crate::store::suite::now();
        resolved(&store, 10_000, t);
        let size = |d: &Path| -> u64 { walk(d) };
        fn walk(d: &Path) -> u64 {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    if m.is_dir() { walk(&e.path()) } else { m.len() }
                })
                .sum()
        }
        let before = size(dir.path());
        let started = std::time::Instant::now();
        let removed = sweep(&store, t + chrono::Duration::days(1));
        let elapsed = started.elapsed();
        assert_eq!(removed, (10_000, 10_000));
        assert_eq!(store.incident_count().unwrap(), 0);
        println!(
            "removed 10,000 incidents and 10,000 events in {} ms (store {} KB before)",
            elapsed.as_millis(),
            before / 1024
        );
    }

    #[test]
    fn gauges_and_counts_are_the_same_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let store = SledStore::open(dir.path()).unwrap();
            allocate(&store, 4);
            store
                .transact(&mut |tx| {
                    tx.record_event(&StoredEvent {
                        received_at: crate::store::suite::now(),
                        integration: "int".into(),
                        incident: Some(IncidentId(1)),
                        event: crate::store::suite::event("k"),
                    })
                })
                .unwrap();
            store.flush().unwrap();
            (
                store.gauges().unwrap(),
                store.incident_count().unwrap(),
                store.event_count().unwrap(),
            )
        };
        assert_eq!((before.1, before.2), (4, 1));
        let store = SledStore::open(dir.path()).unwrap();
        let after = (
            store.gauges().unwrap(),
            store.incident_count().unwrap(),
            store.event_count().unwrap(),
        );
        assert_eq!(after, before);
    }

    /// A crash after a commit's log record is synced but before sled has
    /// all of its writes: the next open applies the record again, and the
    /// transaction is whole.
    #[test]
    fn a_commit_logged_but_not_all_in_sled_is_whole_after_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut wal = store.write_lock.lock();
            wal.append(
                [
                    (META, &b"crash_a"[..], Some(&b"\"1\""[..])),
                    (SUMMARIES, &b"crash_b"[..], Some(&b"\"2\""[..])),
                ]
                .into_iter(),
            )
            .unwrap();
            // The process dies here: only the first write reached sled.
            store.h().unwrap().trees[META]
                .insert(b"crash_a", &b"\"1\""[..])
                .unwrap();
            drop(wal);
            store.crashed.store(true, Ordering::SeqCst);
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get::<String>(META, b"crash_a").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(
            store
                .get::<String>(SUMMARIES, b"crash_b")
                .unwrap()
                .as_deref(),
            Some("2")
        );
        // And the log was checkpointed: applying it is done once.
        assert!(store.write_lock.lock().size() < 100);
    }

    /// Writes the applier has not put into sled yet: the next transaction
    /// reads them, and a crash before they are applied loses none of them
    /// (the log has them).
    #[test]
    fn committed_writes_not_yet_in_sled_are_read_and_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.applier.pause(true);
            assert_eq!(next(&store), IncidentId(1));
            // Read from the first commit's writes, which sled does not have.
            assert_eq!(next(&store), IncidentId(2));
            assert!(
                store.handles.read().as_ref().unwrap().trees[META]
                    .get(b"next_incident")
                    .unwrap()
                    .is_none(),
                "the applier was paused: sled has none of it"
            );
            store.crashed.store(true, Ordering::SeqCst);
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(next(&store), IncidentId(3));
    }

    #[test]
    fn the_log_is_checkpointed_as_it_grows_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(1024 * 1024);
        {
            let store = SledStore::open(dir.path()).unwrap();
            for i in 0..6u64 {
                store.put_summary(IncidentId(i), &big).unwrap();
            }
            assert!(store.write_lock.lock().size() <= CHECKPOINT_BYTES);
        }
        let store = SledStore::open(dir.path()).unwrap();
        for i in 0..6u64 {
            assert_eq!(
                store.summary(IncidentId(i)).unwrap().as_deref(),
                Some(big.as_str())
            );
        }
    }

    /// A transaction whose closure fails writes nothing, and a transaction
    /// reads its own writes.
    #[test]
    fn a_transaction_reads_its_own_writes_and_a_failed_one_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let before = store.write_lock.lock().size();
        let err = store.transact(&mut |tx| {
            let id = tx.next_incident_id()?;
            assert_eq!(tx.next_incident_id()?, IncidentId(id.0 + 1));
            Err(StoreError::Aborted("no".into()))
        });
        assert!(err.is_err());
        assert_eq!(store.write_lock.lock().size(), before);
        assert_eq!(next(&store), IncidentId(1));
    }

    fn copy_db(from: &Path, to: &Path) {
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap();
            if name == STATE_MARKER {
                continue;
            }
            if p.is_dir() {
                std::fs::create_dir_all(to.join(name)).unwrap();
                copy_db(&p, &to.join(name));
            } else {
                std::fs::copy(&p, to.join(name)).unwrap();
            }
        }
    }
}
