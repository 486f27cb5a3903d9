//! The PostgreSQL backend: the same [`Store`] as sled, for several replicas
//! on one database.
//!
//! Values are the JSON text the sled backend stores (so a backup moves
//! between the two unchanged); the columns beside them are what queries
//! filter and sort on. The schema is in `migrations/` and is applied at open
//! under a PostgreSQL advisory lock, so replicas starting together migrate
//! once.
//!
//! With several writers:
//! - one open incident per (service, dedup key) is the primary key of
//!   `open_incidents`: two replicas opening the same one conflict, and the
//!   loser's transaction runs again and finds the winner's incident;
//! - incident numbers come from a sequence, so none is handed out twice
//!   (an aborted transaction leaves a gap, never a reuse);
//! - reading an incident inside a transaction locks its row
//!   (`SELECT ... FOR UPDATE`), so its timeline positions and hash chain
//!   are extended by one writer at a time;
//! - serialization failures, deadlocks and unique violations re-run the
//!   transaction (the [`Store::transact`] contract allows it).
//!
//! The client is the synchronous `postgres` crate (it fits the synchronous
//! `transact` and the writer thread) over an r2d2 pool. It runs its own
//! small runtime, which must not be started on a thread of tokio's: a call
//! made on one is moved to a thread of its own (see [`off_runtime`]).

use super::{
    BACKUP_END, BACKUP_FORMAT, BACKUP_VERSION, Expired, Gauges, OpenFilter, RecentlyResolved,
    RestoreReport, Store, StoreError, StoredEvent, StoredOverride, Tx,
};
use crate::escalation::Timer;
use crate::incident::{Incident, IncidentId, ServiceChange, Severity, Status, TimelineEntry};
use crate::notify::{DeliveryState, OutboxEntry};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// The schema, in order: (version, name, SQL). Never edit one that has
/// shipped; add the next.
const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "initial", include_str!("migrations/0001_initial.sql"))];

/// The advisory lock key the migrations run under ("tocsin" in ASCII).
const MIGRATION_LOCK: i64 = 0x746f_6373_696e;

/// How long a caller waits for a connection while the database is
/// unreachable before its write fails (and intake answers 503).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// How many times a transaction is run before a conflict is reported.
const MAX_ATTEMPTS: u32 = 20;

/// The PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    /// Always `Some` until dropped (see the `Drop` impl).
    pool: Option<Pool>,
    /// This process's name in outbox leases (`claimed_by`).
    replica: String,
    /// Since when the database has been unreachable, if it is.
    outage: Mutex<Option<std::time::Instant>>,
    /// The singleton lock, on a session of its own.
    leadership: Arc<PgLeadership>,
    /// Set when the store is dropped: the `LISTEN` thread ends.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// The `LISTEN` session: calls `wake` for each notification from another
/// replica's commit, reconnecting (each second) while the database is
/// away, until `stop`. The one-second poll of the scheduler and the outbox
/// covers what is missed meanwhile.
fn listen(config: postgres::Config, stop: Arc<std::sync::atomic::AtomicBool>, wake: super::WakeFn) {
    use std::sync::atomic::Ordering;
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        let session = config.connect(NoTls).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {TIMERS_CHANNEL}; LISTEN {OUTBOX_CHANNEL}"))?;
            Ok(c)
        });
        let mut client = match session {
            Ok(c) => {
                if reported {
                    tracing::info!("LISTEN session back: wake-ups from other replicas resume");
                }
                reported = false;
                c
            }
            Err(e) => {
                if !reported {
                    tracing::warn!(error = %e, "No LISTEN session; polling each second until it is back");
                    reported = true;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
        };
        'session: while !stop.load(Ordering::Relaxed) {
            use postgres::fallible_iterator::FallibleIterator;
            {
                let mut notifications = client.notifications();
                let mut batch = notifications.timeout_iter(std::time::Duration::from_millis(500));
                loop {
                    match batch.next() {
                        Ok(Some(n)) if n.channel() == TIMERS_CHANNEL => wake(super::Wake::Timers),
                        Ok(Some(n)) if n.channel() == OUTBOX_CHANNEL => wake(super::Wake::Outbox),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "The LISTEN session failed; reconnecting");
                            reported = true;
                            break 'session;
                        }
                    }
                }
            }
            if client.is_closed() {
                break;
            }
        }
    }
}

/// The advisory lock the replica running the singletons holds ("tocsin1").
const SINGLETON_LOCK: i64 = 0x0074_6f63_7369_6e31;

/// The singleton lock: a session-level advisory lock on a connection of
/// its own (outside the pool, so no other work ever runs on it or returns
/// it). It is held as long as that session lives: a replica that dies
/// closes its socket and PostgreSQL lets the lock go at once; one cut off
/// from the database is noticed by TCP keepalives on both sides.
pub struct PgLeadership {
    config: postgres::Config,
    /// The session, and whether it holds the lock.
    session: Mutex<Option<(postgres::Client, bool)>>,
}

impl PgLeadership {
    fn new(mut config: postgres::Config) -> Self {
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(5))
            .keepalives_interval(std::time::Duration::from_secs(2))
            .keepalives_retries(3)
            .application_name("tocsin-leader");
        Self {
            config,
            session: Mutex::new(None),
        }
    }
}

impl super::Leadership for PgLeadership {
    fn hold(&self) -> Result<bool, StoreError> {
        off_runtime(|| {
            let mut session = self.session.lock();
            if session.is_none() {
                let client = self.config.connect(NoTls).map_err(|e| {
                    StoreError::Backend(format!(
                        "cannot reach PostgreSQL for the singleton lock: {e}"
                    ))
                })?;
                *session = Some((client, false));
            }
            let Some((client, held)) = session.as_mut() else {
                return Ok(false);
            };
            let result = if *held {
                // Still our session, so still our lock.
                client.simple_query("SELECT 1").map(|_| true)
            } else {
                client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&SINGLETON_LOCK])
                    .map(|row| row.get::<_, bool>(0))
            };
            match result {
                Ok(now_held) => {
                    *held = now_held;
                    Ok(now_held)
                }
                Err(e) => {
                    // The session is gone, and the lock with it.
                    *session = None;
                    Err(StoreError::Backend(format!(
                        "the singleton lock's PostgreSQL session failed: {e}"
                    )))
                }
            }
        })
    }

    fn release(&self) {
        off_runtime(|| {
            if let Some((mut client, held)) = self.session.lock().take()
                && held
            {
                let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&SINGLETON_LOCK]);
            }
        })
    }
}

impl Drop for PgLeadership {
    fn drop(&mut self) {
        let session = self.session.get_mut().take();
        off_runtime(move || drop(session));
    }
}

/// The runtime maintenance windows: one record, as in sled's `meta` tree
/// (a backup carries it either way).
const MAINTENANCE_KEY: &[u8] = b"maintenance_windows";
/// The next maintenance window number, as in sled's `meta` tree.
const NEXT_MAINTENANCE_KEY: &[u8] = b"next_maintenance";

/// Closing a pooled client blocks on the client's own runtime, which may
/// not start on a thread of tokio's: the pool is closed where it may.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(pool) = self.pool.take() {
            off_runtime(move || drop(pool));
        }
    }
}

/// A row limit for SQL (`usize::MAX` means no limit).
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Runs `f` where the synchronous client may block: on this thread, or, on
/// a thread of tokio's (where the client's own runtime may not start), on
/// a scoped thread of its own.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// [`off_runtime`] for a closure that cannot move to another thread (a
/// transaction's): on a multi-threaded runtime the worker gives its tasks
/// away meanwhile; a single-threaded one cannot, and is refused.
fn off_runtime_here<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match tokio::runtime::Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => Err(StoreError::Backend(
            "a PostgreSQL transaction was started on a single-threaded async runtime; run it on the writer or a blocking thread".into(),
        )),
    }
}

fn pg(e: postgres::Error) -> StoreError {
    pg_ref(&e)
}

/// Whether a failed statement is worth running the transaction again for.
fn retryable(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    })
}

fn decode<T: DeserializeOwned>(
    text: &str,
    table: &str,
    key: &dyn std::fmt::Display,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: format!("{table}/{key}"),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("tocsin's records always serialize")
}

/// A serde unit-variant name (`"sev1"`, `"triggered"`).
fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("severity and status serialize as strings"),
    }
}

fn parse_name<T: DeserializeOwned>(name: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|e| {
        StoreError::Corrupt {
            key: format!("incidents/{what}"),
            message: e.to_string(),
        }
    })
}

fn id_i64(id: IncidentId) -> i64 {
    id.0 as i64
}

impl PostgresStore {
    /// Connects to `url` with a pool of at most `pool_size` connections and
    /// brings the schema up to date (under an advisory lock, so replicas
    /// starting together migrate once).
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let config: postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!("storage.url is not a PostgreSQL URL: {e}"))
        })?;
        let leadership = Arc::new(PgLeadership::new(config.clone()));
        off_runtime(move || {
            let manager = PostgresConnectionManager::new(config, NoTls);
            let pool = r2d2::Pool::builder()
                .max_size(pool_size.max(1))
                .min_idle(Some(1))
                .connection_timeout(CONNECT_TIMEOUT)
                .build(manager)
                .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
            let store = Self {
                pool: Some(pool),
                replica: uuid::Uuid::new_v4().simple().to_string(),
                outage: Mutex::new(None),
                leadership,
                stop: Arc::default(),
            };
            store.migrate()?;
            Ok(store)
        })
    }

    /// A pooled connection; notes an outage when there is none.
    fn conn(&self) -> Result<Conn, StoreError> {
        let Some(pool) = self.pool.as_ref() else {
            return Err(StoreError::Backend("the PostgreSQL store is closed".into()));
        };
        match pool.get() {
            Ok(c) => Ok(c),
            Err(e) => {
                self.outage
                    .lock()
                    .get_or_insert_with(std::time::Instant::now);
                Err(StoreError::Backend(format!("cannot reach PostgreSQL: {e}")))
            }
        }
    }

    /// Runs `f` on a connection, off tokio's threads; a failure that is
    /// not the database refusing a statement (a lost connection) counts
    /// as an outage, a success ends one.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let result = f(&mut conn);
            self.note(&result);
            result.map_err(pg)
        })
    }

    fn note<T>(&self, result: &Result<T, postgres::Error>) {
        match result {
            Ok(_) => *self.outage.lock() = None,
            Err(e) if e.as_db_error().is_none() => {
                self.outage
                    .lock()
                    .get_or_insert_with(std::time::Instant::now);
            }
            Err(_) => {}
        }
    }

    /// Applies the migrations not applied yet, each in its own transaction,
    /// holding the advisory lock throughout.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(pg)?;
        let result = migrate_locked(&mut conn);
        let unlocked = conn
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .map_err(pg);
        result.and(unlocked.map(|_| ()))
    }

    /// Restores a backup (sled's format, [`BACKUP_FORMAT`]) into the
    /// database at `url`, which must hold no tocsin data yet, in one
    /// transaction: all of it or nothing.
    pub fn restore<R: std::io::BufRead + Send>(
        url: &str,
        input: R,
    ) -> Result<RestoreReport, StoreError> {
        let store = Self::open(url, 2)?;
        off_runtime(move || {
            let mut conn = store.conn()?;
            let mut t = conn.transaction().map_err(pg)?;
            let held: bool = t
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM incidents) OR EXISTS (SELECT 1 FROM events) \
                     OR EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM overrides)",
                    &[],
                )
                .map_err(pg)?
                .get(0);
            if held {
                return Err(StoreError::Backend(
                    "the database already holds tocsin data; restore only into a new database"
                        .into(),
                ));
            }
            let (records, created_at, next_incident) = restore_lines(&mut t, input)?;
            // Sequences and counts from what was restored.
            t.batch_execute(
                "SELECT setval('events_id_seq', COALESCE((SELECT max(id) FROM events), 0) + 1, false);
                 SELECT setval('changes_id_seq', COALESCE((SELECT max(id) FROM changes), 0) + 1, false);
                 SELECT setval('overrides_id_seq', COALESCE((SELECT max(id) FROM overrides), 0) + 1, false);
                 UPDATE counters SET value = (SELECT count(*) FROM incidents) WHERE name = 'incidents';
                 UPDATE counters SET value = (SELECT count(*) FROM events) WHERE name = 'events';",
            )
            .map_err(pg)?;
            let highest: i64 = t
                .query_one("SELECT COALESCE(max(id), 0) FROM incidents", &[])
                .map_err(pg)?
                .get(0);
            let next = next_incident.max(highest as u64 + 1);
            t.execute(
                "SELECT setval('incident_numbers', $1, false)",
                &[&(next as i64)],
            )
            .map_err(pg)?;
            let row = t
                .query_one(
                    "SELECT (SELECT count(*) FROM incidents), \
                     (SELECT count(*) FROM incidents WHERE status <> 'resolved')",
                    &[],
                )
                .map_err(pg)?;
            let (incidents, open): (i64, i64) = (row.get(0), row.get(1));
            t.commit().map_err(pg)?;
            Ok(RestoreReport {
                records,
                incidents: incidents as u64,
                open: open as u64,
                next_incident: next,
                created_at,
            })
        })
    }
}

fn migrate_locked(conn: &mut Conn) -> Result<(), StoreError> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS tocsin_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(pg)?;
    let applied: HashMap<i32, String> = conn
        .query("SELECT version, checksum FROM tocsin_migrations", &[])
        .map_err(pg)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    if let Some(newer) = applied.keys().filter(|v| **v > known).max() {
        return Err(StoreError::Backend(format!(
            "the database's schema is at version {newer}, newer than this tocsin knows ({known}); run the newer tocsin"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        let checksum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sql.as_bytes()));
        match applied.get(version) {
            Some(c) if *c == checksum => continue,
            Some(_) => {
                return Err(StoreError::Backend(format!(
                    "schema migration {version} ({name}) in the database differs from this tocsin's"
                )));
            }
            None => {}
        }
        let mut t = conn.transaction().map_err(pg)?;
        t.batch_execute(sql).map_err(pg)?;
        t.execute(
            "INSERT INTO tocsin_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &checksum],
        )
        .map_err(pg)?;
        t.commit().map_err(pg)?;
        tracing::info!(version, name, "Applied a schema migration");
    }
    Ok(())
}

/// A key of two strings joined by a 0 byte (sled's `open`, `channels`,
/// `recently_resolved` keys).
fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn split_pair(key: &[u8]) -> Option<(String, String)> {
    let at = key.iter().position(|b| *b == 0)?;
    Some((
        String::from_utf8(key[..at].to_vec()).ok()?,
        String::from_utf8(key[at + 1..].to_vec()).ok()?,
    ))
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// Big-endian millis with the sign bit flipped (sled's time keys).
fn time_key(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// Applies a backup's records in `t`: how many, when it was made, and the
/// next incident number it records.
fn restore_lines(
    t: &mut postgres::Transaction<'_>,
    input: impl std::io::BufRead,
) -> Result<(u64, Option<String>, u64), StoreError> {
    let bad = |line: usize, m: String| StoreError::Backend(format!("backup line {line}: {m}"));
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
    let mut n = 0;
    let mut ended = false;
    let mut next_incident = 1;
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let line = line.map_err(|e| bad(line_no, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        if ended {
            return Err(bad(line_no, "records after the backup's end line".into()));
        }
        let rec: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(line_no, e.to_string()))?;
        if rec["format"] == BACKUP_END {
            if rec["records"].as_u64() != Some(n) {
                return Err(bad(
                    line_no,
                    format!(
                        "the end line counts {} records, the backup has {n}",
                        rec["records"]
                    ),
                ));
            }
            ended = true;
            continue;
        }
        let tree = rec["tree"].as_str().unwrap_or_default().to_string();
        let key = hex::decode(rec["key"].as_str().unwrap_or_default())
            .map_err(|e| bad(line_no, format!("bad key: {e}")))?;
        let value = if rec["deleted"] == true {
            None
        } else {
            Some(
                rec["value"]
                    .as_str()
                    .ok_or_else(|| bad(line_no, "no value".into()))?
                    .to_string(),
            )
        };
        if tree == "meta" && key == b"next_incident" {
            if let Some(v) = &value {
                next_incident = serde_json::from_str(v).map_err(|e| bad(line_no, e.to_string()))?;
            }
        } else {
            restore_record(t, &tree, &key, value.as_deref())
                .map_err(|e| bad(line_no, format!("{tree}: {e}")))?;
        }
        n += 1;
    }
    if version >= 2 && !ended {
        return Err(StoreError::Backend(format!(
            "the backup has no end line after {n} records: it was cut short; take it again"
        )));
    }
    Ok((
        n,
        header["created_at"].as_str().map(str::to_string),
        next_incident,
    ))
}

/// Writes (or, with `None`, deletes) one backup record as its table holds it.
fn restore_record(
    t: &mut postgres::Transaction<'_>,
    tree: &str,
    key: &[u8],
    value: Option<&str>,
) -> Result<(), String> {
    let bad_key = || format!("bad key {}", hex::encode(key));
    let pg = |e: postgres::Error| pg(e).to_string();
    let id = || be_u64(key).map(|v| v as i64).ok_or_else(bad_key);
    match (tree, value) {
        ("incidents", Some(v)) => {
            let inc: Incident = serde_json::from_str(v).map_err(|e| e.to_string())?;
            t.execute(
                "INSERT INTO incidents (id, status, severity, service, value) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET status = $2, severity = $3, service = $4, value = $5",
                &[&id_i64(inc.id), &name_of(&inc.status), &name_of(&inc.severity), &inc.service, &v],
            )
            .map_err(pg)?;
        }
        ("incidents", None) => {
            t.execute("DELETE FROM incidents WHERE id = $1", &[&id()?])
                .map_err(pg)?;
        }
        ("open" | "recently_resolved", _) => {
            let (a, b) = split_pair(key).ok_or_else(bad_key)?;
            let table = if tree == "open" {
                "open_incidents"
            } else {
                "recently_resolved"
            };
            t.execute(
                &format!("DELETE FROM {table} WHERE service = $1 AND dedup_key = $2"),
                &[&a, &b],
            )
            .map_err(pg)?;
            if let Some(v) = value {
                if tree == "open" {
                    let inc: IncidentId = serde_json::from_str(v).map_err(|e| e.to_string())?;
                    t.execute(
                        "INSERT INTO open_incidents (service, dedup_key, incident) VALUES ($1, $2, $3)",
                        &[&a, &b, &id_i64(inc)],
                    )
                    .map_err(pg)?;
                } else {
                    t.execute(
                        "INSERT INTO recently_resolved (service, dedup_key, value) VALUES ($1, $2, $3)",
                        &[&a, &b, &v],
                    )
                    .map_err(pg)?;
                }
            }
        }
        ("timeline", _) => {
            let (inc, seq) = (
                be_u64(key.get(..8).ok_or_else(bad_key)?).ok_or_else(bad_key)? as i64,
                be_u64(key.get(8..).ok_or_else(bad_key)?).ok_or_else(bad_key)? as i64,
            );
            t.execute(
                "DELETE FROM timeline WHERE incident = $1 AND seq = $2",
                &[&inc, &seq],
            )
            .map_err(pg)?;
            if let Some(v) = value {
                t.execute(
                    "INSERT INTO timeline (incident, seq, value) VALUES ($1, $2, $3)",
                    &[&inc, &seq, &v],
                )
                .map_err(pg)?;
            }
        }
        ("events", _) => {
            let id = id()?;
            t.execute("DELETE FROM events WHERE id = $1", &[&id])
                .map_err(pg)?;
            if let Some(v) = value {
                let e: StoredEvent = serde_json::from_str(v).map_err(|e| e.to_string())?;
                t.execute(
                    "INSERT INTO events (id, received_at, incident, value) VALUES ($1, $2, $3, $4)",
                    &[&id, &e.received_at, &e.incident.map(id_i64), &v],
                )
                .map_err(pg)?;
            }
        }
        ("timers", _) => {
            t.execute("DELETE FROM timers WHERE key = $1", &[&key])
                .map_err(pg)?;
            if let Some(v) = value {
                let timer: Timer = serde_json::from_str(v).map_err(|e| e.to_string())?;
                t.execute(
                    "INSERT INTO timers (key, due, incident, value) VALUES ($1, $2, $3, $4)",
                    &[&key, &timer.due, &id_i64(timer.incident), &v],
                )
                .map_err(pg)?;
            }
        }
        ("outbox", _) => {
            let k = String::from_utf8(key.to_vec()).map_err(|_| bad_key())?;
            t.execute("DELETE FROM outbox WHERE key = $1", &[&k])
                .map_err(pg)?;
            if let Some(v) = value {
                let e: OutboxEntry = serde_json::from_str(v).map_err(|e| e.to_string())?;
                t.execute(
                    "INSERT INTO outbox (key, incident, pending, due, value) VALUES ($1, $2, $3, $4, $5)",
                    &[&k, &id_i64(e.incident), &(e.state == DeliveryState::Pending), &e.due, &v],
                )
                .map_err(pg)?;
            }
        }
        // The pending queue is the outbox's `pending` column here.
        ("outbox_queue" | "open_incidents", _) => {}
        ("overrides", _) => {
            let at = key.iter().position(|b| *b == 0).ok_or_else(bad_key)?;
            let oid = be_u64(&key[at + 1..]).ok_or_else(bad_key)? as i64;
            t.execute("DELETE FROM overrides WHERE id = $1", &[&oid])
                .map_err(pg)?;
            if let Some(v) = value {
                let o: StoredOverride = serde_json::from_str(v).map_err(|e| e.to_string())?;
                t.execute(
                    "INSERT INTO overrides (id, schedule, value) VALUES ($1, $2, $3)",
                    &[&oid, &o.schedule, &v],
                )
                .map_err(pg)?;
            }
        }
        ("channels", _) => {
            let (platform, channel) = split_pair(key).ok_or_else(bad_key)?;
            t.execute(
                "DELETE FROM channels WHERE platform = $1 AND channel = $2",
                &[&platform, &channel],
            )
            .map_err(pg)?;
            if let Some(v) = value {
                let inc: IncidentId = serde_json::from_str(v).map_err(|e| e.to_string())?;
                t.execute(
                    "INSERT INTO channels (platform, channel, incident) VALUES ($1, $2, $3)",
                    &[&platform, &channel, &id_i64(inc)],
                )
                .map_err(pg)?;
            }
        }
        ("summaries", _) => {
            let id = id()?;
            t.execute("DELETE FROM summaries WHERE incident = $1", &[&id])
                .map_err(pg)?;
            if let Some(v) = value {
                t.execute(
                    "INSERT INTO summaries (incident, value) VALUES ($1, $2)",
                    &[&id, &v],
                )
                .map_err(pg)?;
            }
        }
        ("changes", _) => {
            let at = key.iter().position(|b| *b == 0).ok_or_else(bad_key)?;
            let service = String::from_utf8(key[..at].to_vec()).map_err(|_| bad_key())?;
            let cid = be_u64(key.get(at + 9..).ok_or_else(bad_key)?).ok_or_else(bad_key)? as i64;
            t.execute("DELETE FROM changes WHERE id = $1", &[&cid])
                .map_err(pg)?;
            if let Some(v) = value {
                let c: ServiceChange = serde_json::from_str(v).map_err(|e| e.to_string())?;
                t.execute(
                    "INSERT INTO changes (id, service, at, value) VALUES ($1, $2, $3, $4)",
                    &[&cid, &service, &c.at, &v],
                )
                .map_err(pg)?;
            }
        }
        ("tokens", _) => {
            let k = String::from_utf8(key.to_vec()).map_err(|_| bad_key())?;
            t.execute("DELETE FROM tokens WHERE id = $1", &[&k])
                .map_err(pg)?;
            if let Some(v) = value {
                t.execute("INSERT INTO tokens (id, value) VALUES ($1, $2)", &[&k, &v])
                    .map_err(pg)?;
            }
        }
        // The maintenance windows are data: kept in `kv` as sled keeps them.
        ("meta", _) if key == MAINTENANCE_KEY || key == NEXT_MAINTENANCE_KEY => {
            t.execute("DELETE FROM kv WHERE tree = 'meta' AND key = $1", &[&key])
                .map_err(pg)?;
            if let Some(v) = value {
                t.execute(
                    "INSERT INTO kv (tree, key, value) VALUES ('meta', $1, $2)",
                    &[&key, &v],
                )
                .map_err(pg)?;
            }
        }
        // Counts are recomputed after the restore; the probe is not data.
        ("meta", _) => {}
        // A tree this backend has no table for keeps its records as they are.
        (tree, _) => {
            t.execute(
                "DELETE FROM kv WHERE tree = $1 AND key = $2",
                &[&tree, &key],
            )
            .map_err(pg)?;
            if let Some(v) = value {
                t.execute(
                    "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3)",
                    &[&tree, &key, &v],
                )
                .map_err(pg)?;
            }
        }
    }
    Ok(())
}

/// A transaction in progress.
struct PgTx<'a> {
    t: RefCell<postgres::Transaction<'a>>,
    /// The first statement that failed: PostgreSQL refuses everything after
    /// it, and a conflict means the whole transaction runs again.
    failed: RefCell<Option<postgres::Error>>,
    /// Open-index keys this transaction read (and so locked, when present).
    seen_open: RefCell<HashMap<(String, String), Option<IncidentId>>>,
    incidents: i64,
    events: i64,
    /// Whether it wrote timers, or outbox entries: other replicas are told
    /// at commit (`NOTIFY`).
    timers_put: bool,
    outbox_put: bool,
}

/// The channels other replicas `LISTEN` on.
const TIMERS_CHANNEL: &str = "tocsin_timers";
const OUTBOX_CHANNEL: &str = "tocsin_outbox";

impl PgTx<'_> {
    /// Runs one statement, remembering its failure.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        if let Some(e) = self.failed.borrow().as_ref() {
            return Err(StoreError::Backend(format!(
                "an earlier statement in this transaction failed: {}",
                pg_ref(e)
            )));
        }
        let result = f(&mut self.t.borrow_mut());
        result.map_err(|e| {
            let err = pg_ref(&e);
            *self.failed.borrow_mut() = Some(e);
            err
        })
    }

    fn value<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        table: &str,
        key: &dyn std::fmt::Display,
    ) -> Result<Option<T>, StoreError> {
        let row = self.run(|t| t.query_opt(sql, params))?;
        row.map(|r| decode(r.get::<_, &str>(0), table, key))
            .transpose()
    }

    /// A record of a tree this backend keeps in `kv`, locked for the rest
    /// of the transaction when it exists.
    fn kv_get(&self, tree: &str, key: &[u8]) -> Result<Option<String>, StoreError> {
        let row = self.run(|t| {
            t.query_opt(
                "SELECT value FROM kv WHERE tree = $1 AND key = $2 FOR UPDATE",
                &[&tree, &key],
            )
        })?;
        Ok(row.map(|r| r.get::<_, String>(0)))
    }

    /// Stores a record in `kv` (a conflicting insert by another replica
    /// makes the transaction run again).
    fn kv_put(&self, tree: &str, key: &[u8], value: &str) -> Result<(), StoreError> {
        self.run(|t| {
            t.execute(
                "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                &[&tree, &key, &value],
            )
        })?;
        Ok(())
    }

    /// Tells the other replicas, at commit, what this transaction wrote
    /// (PostgreSQL sends a `NOTIFY` only when the transaction commits).
    fn notify(&mut self) -> Result<(), StoreError> {
        for (put, channel) in [
            (self.timers_put, TIMERS_CHANNEL),
            (self.outbox_put, OUTBOX_CHANNEL),
        ] {
            if put {
                self.run(|t| t.execute("SELECT pg_notify($1, '')", &[&channel]))?;
            }
        }
        Ok(())
    }

    fn write_counts(&mut self) -> Result<(), StoreError> {
        for (name, delta) in [("incidents", self.incidents), ("events", self.events)] {
            if delta != 0 {
                self.run(|t| {
                    t.execute(
                        "UPDATE counters SET value = value + $2 WHERE name = $1",
                        &[&name, &delta],
                    )
                })?;
            }
        }
        Ok(())
    }
}

fn pg_ref(e: &postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            StoreError::Backend(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

impl Tx for PgTx<'_> {
    fn maintenance_windows(&self) -> Result<Vec<crate::maintenance::StoredWindow>, StoreError> {
        match self.kv_get("meta", MAINTENANCE_KEY)? {
            Some(v) => decode(&v, "meta", &"maintenance_windows"),
            None => Ok(Vec::new()),
        }
    }

    fn put_maintenance_window(
        &mut self,
        window: &crate::maintenance::StoredWindow,
    ) -> Result<(), StoreError> {
        let mut all = self.maintenance_windows()?;
        match all.iter_mut().find(|w| w.id == window.id) {
            Some(w) => *w = window.clone(),
            None => all.push(window.clone()),
        }
        all.sort_by_key(|w| w.id);
        self.kv_put("meta", MAINTENANCE_KEY, &encode(&all))
    }

    fn delete_maintenance_window(&mut self, id: u64) -> Result<bool, StoreError> {
        let mut all = self.maintenance_windows()?;
        let before = all.len();
        all.retain(|w| w.id != id);
        if all.len() == before {
            return Ok(false);
        }
        self.kv_put("meta", MAINTENANCE_KEY, &encode(&all))?;
        Ok(true)
    }

    fn next_maintenance_id(&mut self) -> Result<u64, StoreError> {
        let next: u64 = match self.kv_get("meta", NEXT_MAINTENANCE_KEY)? {
            Some(v) => decode(&v, "meta", &"next_maintenance")?,
            None => 1,
        };
        self.kv_put("meta", NEXT_MAINTENANCE_KEY, &encode(&(next + 1)))?;
        Ok(next)
    }

    fn open_incident(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        let row = self.run(|t| {
            t.query_opt(
                "SELECT incident FROM open_incidents WHERE service = $1 AND dedup_key = $2 FOR UPDATE",
                &[&service, &dedup_key],
            )
        })?;
        let found = row.map(|r| IncidentId(r.get::<_, i64>(0) as u64));
        self.seen_open
            .borrow_mut()
            .insert((service.to_string(), dedup_key.to_string()), found);
        Ok(found)
    }

    fn set_open_incident(
        &mut self,
        service: &str,
        dedup_key: &str,
        id: Option<IncidentId>,
    ) -> Result<(), StoreError> {
        let key = (service.to_string(), dedup_key.to_string());
        match id {
            None => {
                self.run(|t| {
                    t.execute(
                        "DELETE FROM open_incidents WHERE service = $1 AND dedup_key = $2",
                        &[&service, &dedup_key],
                    )
                })?;
                self.seen_open.borrow_mut().insert(key, None);
            }
            Some(id) => {
                // Replacing a marker needs its row read (and so locked) in
                // this transaction; otherwise this is a plain insert, and a
                // replica that opened one meanwhile makes it conflict.
                if matches!(self.seen_open.borrow().get(&key), Some(Some(_))) {
                    self.run(|t| {
                        t.execute(
                            "UPDATE open_incidents SET incident = $3 WHERE service = $1 AND dedup_key = $2",
                            &[&service, &dedup_key, &id_i64(id)],
                        )
                    })?;
                } else {
                    self.run(|t| {
                        t.execute(
                            "INSERT INTO open_incidents (service, dedup_key, incident) VALUES ($1, $2, $3)",
                            &[&service, &dedup_key, &id_i64(id)],
                        )
                    })?;
                }
                self.seen_open.borrow_mut().insert(key, Some(id));
            }
        }
        Ok(())
    }

    fn recently_resolved(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<RecentlyResolved>, StoreError> {
        self.value(
            "SELECT value FROM recently_resolved WHERE service = $1 AND dedup_key = $2 FOR UPDATE",
            &[&service, &dedup_key],
            "recently_resolved",
            &format!("{service}/{dedup_key}"),
        )
    }

    fn set_recently_resolved(
        &mut self,
        service: &str,
        dedup_key: &str,
        resolved: Option<&RecentlyResolved>,
    ) -> Result<(), StoreError> {
        match resolved {
            Some(r) => self.run(|t| {
                t.execute(
                    "INSERT INTO recently_resolved (service, dedup_key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (service, dedup_key) DO UPDATE SET value = EXCLUDED.value",
                    &[&service, &dedup_key, &encode(r)],
                )
            }),
            None => self.run(|t| {
                t.execute(
                    "DELETE FROM recently_resolved WHERE service = $1 AND dedup_key = $2",
                    &[&service, &dedup_key],
                )
            }),
        }
        .map(|_| ())
    }

    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        // The row lock: one writer at a time extends this incident's timeline.
        self.value(
            "SELECT value FROM incidents WHERE id = $1 FOR UPDATE",
            &[&id_i64(id)],
            "incidents",
            &id,
        )
    }

    fn put_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let inserted: bool = self
            .run(|t| {
                t.query_one(
                    "INSERT INTO incidents (id, status, severity, service, value) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, severity = EXCLUDED.severity, \
                     service = EXCLUDED.service, value = EXCLUDED.value \
                     RETURNING (xmax = 0)",
                    &[
                        &id_i64(incident.id),
                        &name_of(&incident.status),
                        &name_of(&incident.severity),
                        &incident.service,
                        &encode(incident),
                    ],
                )
            })?
            .get(0);
        if inserted {
            self.incidents += 1;
        }
        Ok(())
    }

    fn next_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        let n: i64 = self
            .run(|t| t.query_one("SELECT nextval('incident_numbers')", &[]))?
            .get(0);
        Ok(IncidentId(n as u64))
    }

    fn append_timeline(&mut self, id: IncidentId, entry: &TimelineEntry) -> Result<(), StoreError> {
        // A position taken twice is a fork of the chain: a conflict, run again.
        self.run(|t| {
            t.execute(
                "INSERT INTO timeline (incident, seq, value) VALUES ($1, $2, $3)",
                &[&id_i64(id), &(entry.seq as i64), &encode(entry)],
            )
        })
        .map(|_| ())
    }

    fn record_event(&mut self, event: &StoredEvent) -> Result<(), StoreError> {
        self.run(|t| {
            t.execute(
                "INSERT INTO events (received_at, incident, value) VALUES ($1, $2, $3)",
                &[
                    &event.received_at,
                    &event.incident.map(id_i64),
                    &encode(event),
                ],
            )
        })?;
        self.events += 1;
        Ok(())
    }

    fn record_change(&mut self, service: &str, change: &ServiceChange) -> Result<(), StoreError> {
        self.run(|t| {
            t.execute(
                "INSERT INTO changes (service, at, value) VALUES ($1, $2, $3)",
                &[&service, &change.at, &encode(change)],
            )
        })
        .map(|_| ())
    }

    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.timers_put = true;
        self.run(|t| {
            t.execute(
                "INSERT INTO timers (key, due, incident, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET due = EXCLUDED.due, value = EXCLUDED.value",
                &[
                    &timer.key().as_slice(),
                    &timer.due,
                    &id_i64(timer.incident),
                    &encode(timer),
                ],
            )
        })
        .map(|_| ())
    }

    /// The claim: a timer another replica's transaction holds (it is
    /// firing or cancelling it) is skipped, not waited for, and counts as
    /// gone here. The firing re-checks the incident under its row lock,
    /// so a skipped cancel never lets a stale step page.
    fn delete_timer(&mut self, timer: &Timer) -> Result<bool, StoreError> {
        let key = timer.key();
        let n = self.run(|t| {
            t.execute(
                "DELETE FROM timers WHERE key = \
                 (SELECT key FROM timers WHERE key = $1 FOR UPDATE SKIP LOCKED)",
                &[&key.as_slice()],
            )
        })?;
        Ok(n > 0)
    }

    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        self.value(
            "SELECT value FROM outbox WHERE key = $1 FOR UPDATE",
            &[&key],
            "outbox",
            &key,
        )
    }

    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox_put = true;
        self.run(|t| {
            t.execute(
                "INSERT INTO outbox (key, incident, pending, due, value) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key) DO UPDATE SET incident = EXCLUDED.incident, pending = EXCLUDED.pending, \
                 due = EXCLUDED.due, value = EXCLUDED.value, claimed_by = NULL, lease_until = NULL",
                &[
                    &entry.key,
                    &id_i64(entry.incident),
                    &(entry.state == DeliveryState::Pending),
                    &entry.due,
                    &encode(entry),
                ],
            )
        })
        .map(|_| ())
    }

    fn set_channel(
        &mut self,
        platform: &str,
        channel: &str,
        id: IncidentId,
    ) -> Result<(), StoreError> {
        self.run(|t| {
            t.execute(
                "INSERT INTO channels (platform, channel, incident) VALUES ($1, $2, $3) \
                 ON CONFLICT (platform, channel) DO UPDATE SET incident = EXCLUDED.incident",
                &[&platform, &channel, &id_i64(id)],
            )
        })
        .map(|_| ())
    }

    fn remove_incident(&mut self, expired: &Expired) -> Result<bool, StoreError> {
        let id = id_i64(expired.incident.id);
        let removed = self.run(|t| t.execute("DELETE FROM incidents WHERE id = $1", &[&id]))?;
        if removed == 0 {
            return Ok(false);
        }
        self.incidents -= 1;
        let keys = &expired.outbox_keys;
        self.run(|t| {
            t.execute("DELETE FROM timeline WHERE incident = $1", &[&id])?;
            t.execute("DELETE FROM summaries WHERE incident = $1", &[&id])?;
            t.execute("DELETE FROM outbox WHERE key = ANY($1)", &[keys])?;
            t.execute("DELETE FROM channels WHERE incident = $1", &[&id])
        })?;
        Ok(true)
    }

    fn remove_event(&mut self, id: u64) -> Result<bool, StoreError> {
        let n = self.run(|t| t.execute("DELETE FROM events WHERE id = $1", &[&(id as i64)]))?;
        if n > 0 {
            self.events -= 1;
        }
        Ok(n > 0)
    }
}

/// Rows of `value` text, decoded.
fn values<T: DeserializeOwned>(
    rows: Vec<postgres::Row>,
    table: &str,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|r| decode(r.get::<_, &str>(0), table, &"row"))
        .collect()
}

impl Store for PostgresStore {
    fn on_wake(&self, wake: super::WakeFn) {
        let mut config = self.leadership.config.clone();
        config.application_name("tocsin-listen");
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("tocsin-listen".into())
            .spawn(move || listen(config, stop, wake));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "Could not start the LISTEN thread; replicas poll each second instead");
        }
    }

    fn leadership(&self) -> Arc<dyn super::Leadership> {
        self.leadership.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        off_runtime_here(|| {
            let mut conn = self.conn()?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let t = match conn.transaction() {
                    Ok(t) => t,
                    Err(e) => {
                        let err = pg_ref(&e);
                        self.note::<()>(&Err(e));
                        return Err(err);
                    }
                };
                let mut tx = PgTx {
                    t: RefCell::new(t),
                    failed: RefCell::new(None),
                    seen_open: RefCell::new(HashMap::new()),
                    incidents: 0,
                    events: 0,
                    timers_put: false,
                    outbox_put: false,
                };
                let outcome = f(&mut tx)
                    .and_then(|()| tx.write_counts())
                    .and_then(|()| tx.notify());
                let PgTx { t, failed, .. } = tx;
                let t = t.into_inner();
                // A statement failed even if the closure went on: PostgreSQL
                // would turn the COMMIT into a rollback.
                let failure = match (outcome, failed.into_inner()) {
                    (Ok(()), None) => match t.commit() {
                        Ok(()) => {
                            *self.outage.lock() = None;
                            return Ok(());
                        }
                        Err(e) => e,
                    },
                    (_, Some(e)) => {
                        drop(t);
                        e
                    }
                    (Err(e), None) => {
                        // The closure refused: nothing is written.
                        drop(t);
                        return Err(e);
                    }
                };
                if retryable(&failure) && attempt < MAX_ATTEMPTS {
                    tracing::debug!(attempt, error = %failure, "A PostgreSQL transaction conflicted; running it again");
                    std::thread::sleep(std::time::Duration::from_millis(
                        (attempt as u64 * 3).min(50) + rand::random::<u64>() % 5,
                    ));
                    continue;
                }
                let err = pg_ref(&failure);
                self.note::<()>(&Err(failure));
                return Err(err);
            }
        })
    }

    /// A committed PostgreSQL transaction is already durable
    /// (`synchronous_commit`): nothing is left to flush.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let row = self
            .with(|c| c.query_opt("SELECT value FROM incidents WHERE id = $1", &[&id_i64(id)]))?;
        row.map(|r| decode(r.get::<_, &str>(0), "incidents", &id))
            .transpose()
    }

    fn incidents(
        &self,
        status: Option<Status>,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let before = before.map_or(i64::MAX, id_i64);
        let status = status.map(|s| name_of(&s));
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM incidents WHERE id < $1 AND ($2::text IS NULL OR status = $2) \
                 ORDER BY id DESC LIMIT $3",
                &[&before, &status, &sql_limit(limit)],
            )
        })?;
        values(rows, "incidents")
    }

    fn open_incidents(
        &self,
        filter: &OpenFilter,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let before = before.map_or(i64::MAX, id_i64);
        let status = filter.status.map(|s| name_of(&s));
        let severity = filter.severity.map(|s| name_of(&s));
        let service = filter.service.clone();
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM incidents WHERE status <> 'resolved' AND id < $1 \
                 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR severity = $3) \
                 AND ($4::text IS NULL OR service = $4) ORDER BY id DESC LIMIT $5",
                &[&before, &status, &severity, &service, &sql_limit(limit)],
            )
        })?;
        values(rows, "incidents")
    }

    fn gauges(&self) -> Result<Gauges, StoreError> {
        let (open, row) = self.with(|c| {
            let open = c.query(
                "SELECT severity, status, count(*) FROM incidents WHERE status <> 'resolved' GROUP BY 1, 2",
                &[],
            )?;
            let row = c.query_one(
                "SELECT (SELECT count(*) FROM outbox WHERE pending), \
                        (SELECT min(due) FROM outbox WHERE pending), \
                        (SELECT count(*) FROM timers)",
                &[],
            )?;
            Ok((open, row))
        })?;
        let mut counted = std::collections::BTreeMap::new();
        for r in open {
            let severity: Severity = parse_name(r.get(0), "severity")?;
            let status: Status = parse_name(r.get(1), "status")?;
            counted.insert(
                (severity, status.as_str()),
                (status, r.get::<_, i64>(2) as u64),
            );
        }
        Ok(Gauges {
            open: counted
                .into_iter()
                .map(|((sev, _), (st, n))| (sev, st, n))
                .collect(),
            outbox_depth: row.get::<_, i64>(0) as u64,
            outbox_next_due: row.get(1),
            timers_pending: row.get::<_, i64>(2) as u64,
        })
    }

    fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM timeline WHERE incident = $1 ORDER BY seq",
                &[&id_i64(id)],
            )
        })?;
        values(rows, "timeline")
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .with(|c| c.query_one("SELECT value FROM counters WHERE name = 'events'", &[]))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    fn recent_changes(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<ServiceChange>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM changes WHERE service = $1 ORDER BY at DESC, id DESC LIMIT $2",
                &[&service, &sql_limit(limit)],
            )
        })?;
        values(rows, "changes")
    }

    fn incident_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .with(|c| c.query_one("SELECT value FROM counters WHERE name = 'incidents'", &[]))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// The sled backup format, read in one `REPEATABLE READ` snapshot: the
    /// backup is the database as it was when the snapshot was taken, while
    /// writers go on.
    fn backup(&self, out: &mut dyn std::io::Write, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::Backend(format!("writing the backup: {e}"));
        let mut conn = off_runtime(|| self.conn())?;
        let mut lines: Vec<String> = Vec::new();
        // Read in the snapshot, then written out; large stores are read a
        // table at a time.
        let header = serde_json::json!({
            "format": BACKUP_FORMAT,
            "version": BACKUP_VERSION,
            "created_at": now,
            "trees": super::sled_store::TREE_NAMES,
        });
        writeln!(out, "{header}").map_err(io)?;
        let mut n = 0u64;
        let mut emit =
            |out: &mut dyn std::io::Write, lines: &mut Vec<String>| -> Result<(), StoreError> {
                for l in lines.drain(..) {
                    writeln!(out, "{l}").map_err(io)?;
                    n += 1;
                }
                Ok(())
            };
        let record = |tree: &str, key: &[u8], value: &str| {
            serde_json::json!({"tree": tree, "key": hex::encode(key), "value": value}).to_string()
        };
        let queries: [(&str, &str); 13] = [
            ("incidents", "SELECT id, value FROM incidents ORDER BY id"),
            (
                "open",
                "SELECT service, dedup_key, incident FROM open_incidents ORDER BY 1, 2",
            ),
            (
                "timeline",
                "SELECT incident, seq, value FROM timeline ORDER BY 1, 2",
            ),
            ("events", "SELECT id, value FROM events ORDER BY id"),
            (
                "meta",
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM incident_numbers",
            ),
            ("timers", "SELECT key, value FROM timers ORDER BY key"),
            (
                "outbox",
                "SELECT key, value, pending, due FROM outbox ORDER BY key",
            ),
            (
                "overrides",
                "SELECT schedule, id, value FROM overrides ORDER BY 1, 2",
            ),
            (
                "channels",
                "SELECT platform, channel, incident FROM channels ORDER BY 1, 2",
            ),
            (
                "summaries",
                "SELECT incident, value FROM summaries ORDER BY 1",
            ),
            (
                "changes",
                "SELECT service, at, id, value FROM changes ORDER BY 1, 2, 3",
            ),
            ("tokens", "SELECT id, value FROM tokens ORDER BY 1"),
            (
                "recently_resolved",
                "SELECT service, dedup_key, value FROM recently_resolved ORDER BY 1, 2",
            ),
        ];
        let result = off_runtime(
            || -> Result<Vec<(String, Vec<postgres::Row>)>, StoreError> {
                let mut t = conn
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(pg)?;
                let mut all = Vec::new();
                for (tree, sql) in queries {
                    all.push((tree.to_string(), t.query(sql, &[]).map_err(pg)?));
                }
                all.push((
                    "kv".into(),
                    t.query(
                        "SELECT tree, key, value FROM kv WHERE tree <> 'meta' \
                         OR key IN (convert_to('maintenance_windows', 'UTF8'), convert_to('next_maintenance', 'UTF8')) \
                         ORDER BY 1, 2",
                        &[],
                    )
                    .map_err(pg)?,
                ));
                t.commit().map_err(pg)?;
                Ok(all)
            },
        )?;
        for (tree, rows) in result {
            for r in rows {
                match tree.as_str() {
                    "incidents" | "events" | "summaries" => {
                        let id: i64 = r.get(0);
                        lines.push(record(&tree, &(id as u64).to_be_bytes(), r.get(1)));
                    }
                    "open" => {
                        let id: i64 = r.get(2);
                        lines.push(record(
                            &tree,
                            &pair_key(r.get(0), r.get(1)),
                            &id.to_string(),
                        ));
                    }
                    "recently_resolved" => {
                        lines.push(record(&tree, &pair_key(r.get(0), r.get(1)), r.get(2)));
                    }
                    "channels" => {
                        let id: i64 = r.get(2);
                        lines.push(record(
                            &tree,
                            &pair_key(r.get(0), r.get(1)),
                            &id.to_string(),
                        ));
                    }
                    "timeline" => {
                        let (inc, seq): (i64, i64) = (r.get(0), r.get(1));
                        let mut k = (inc as u64).to_be_bytes().to_vec();
                        k.extend_from_slice(&(seq as u64).to_be_bytes());
                        lines.push(record(&tree, &k, r.get(2)));
                    }
                    "meta" => {
                        let next: i64 = r.get(0);
                        lines.push(record(&tree, b"next_incident", &next.to_string()));
                    }
                    "timers" => lines.push(record(&tree, r.get::<_, &[u8]>(0), r.get(1))),
                    "outbox" => {
                        let key: &str = r.get(0);
                        lines.push(record(&tree, key.as_bytes(), r.get(1)));
                        // sled's pending queue, for a restore into sled.
                        if r.get::<_, bool>(2) {
                            let mut q = time_key(r.get(3)).to_vec();
                            q.extend_from_slice(key.as_bytes());
                            lines.push(record("outbox_queue", &q, ""));
                        }
                    }
                    "overrides" => {
                        let id: i64 = r.get(1);
                        let mut k = r.get::<_, &str>(0).as_bytes().to_vec();
                        k.push(0);
                        k.extend_from_slice(&(id as u64).to_be_bytes());
                        lines.push(record(&tree, &k, r.get(2)));
                    }
                    "changes" => {
                        let at: DateTime<Utc> = r.get(1);
                        let id: i64 = r.get(2);
                        let mut k = r.get::<_, &str>(0).as_bytes().to_vec();
                        k.push(0);
                        k.extend_from_slice(&time_key(at));
                        k.extend_from_slice(&(id as u64).to_be_bytes());
                        lines.push(record(&tree, &k, r.get(3)));
                    }
                    "tokens" => {
                        let id: &str = r.get(0);
                        lines.push(record(&tree, id.as_bytes(), r.get(1)));
                    }
                    _ => lines.push(record(r.get(0), r.get::<_, &[u8]>(1), r.get(2))),
                }
            }
            emit(out, &mut lines)?;
        }
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
        let got: String = self
            .with(|c| {
                c.query_one(
                    "INSERT INTO kv (tree, key, value) VALUES ('meta', 'readyz_probe', $1) \
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value RETURNING value",
                    &[&"\"probe\""],
                )
            })?
            .get(0);
        if got != "\"probe\"" {
            return Err(StoreError::Backend("the probe did not read back".into()));
        }
        Ok(())
    }

    fn failing_for(&self) -> Option<std::time::Duration> {
        self.outage.lock().map(|t| t.elapsed())
    }

    fn next_timer(&self) -> Result<Option<Timer>, StoreError> {
        let row =
            self.with(|c| c.query_opt("SELECT value FROM timers ORDER BY key LIMIT 1", &[]))?;
        row.map(|r| decode(r.get::<_, &str>(0), "timers", &"first"))
            .transpose()
    }

    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM timers WHERE due <= $1 ORDER BY key LIMIT $2",
                &[&now, &sql_limit(limit)],
            )
        })?;
        values(rows, "timers")
    }

    fn heartbeat_timers(&self) -> Result<Vec<Timer>, StoreError> {
        let at = crate::escalation::TIMER_KIND_AT as i32;
        let tag = i32::from(crate::escalation::HEARTBEAT_TAG);
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM timers WHERE get_byte(key, $1) = $2 ORDER BY key",
                &[&at, &tag],
            )
        })?;
        values(rows, "timers")
    }

    fn timer_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .with(|c| c.query_one("SELECT count(*) FROM timers", &[]))?
            .get(0);
        Ok(n as u64)
    }

    /// Entries another replica holds a lease on are left to it until the
    /// lease runs out.
    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM outbox WHERE pending AND due <= $1 \
                 AND (claimed_by IS NULL OR claimed_by = $3 OR lease_until <= $1) \
                 ORDER BY due, key LIMIT $2",
                &[&now, &sql_limit(limit), &self.replica],
            )
        })?;
        values(rows, "outbox")
    }

    fn outbox_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .with(|c| c.query_one("SELECT count(*) FROM outbox WHERE pending", &[]))?
            .get(0);
        Ok(n as u64)
    }

    /// An entry another replica holds is due here when its lease runs out.
    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .with(|c| {
                c.query_one(
                    "SELECT min(CASE WHEN claimed_by IS NOT NULL AND claimed_by <> $1 \
                     THEN greatest(due, lease_until) ELSE due END) FROM outbox WHERE pending",
                    &[&self.replica],
                )
            })?
            .get(0))
    }

    fn lease_outbox(
        &self,
        key: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = self.with(|c| {
            c.execute(
                // A replica leasing it at this moment has it: skipped, not waited for.
                "UPDATE outbox SET claimed_by = $2, lease_until = $3 WHERE key = \
                 (SELECT key FROM outbox WHERE key = $1 AND pending \
                  AND (claimed_by IS NULL OR claimed_by = $2 OR lease_until <= $4) \
                  FOR UPDATE SKIP LOCKED)",
                &[&key, &self.replica, &until, &now],
            )
        })?;
        Ok(n == 1)
    }

    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        let row = self.with(|c| c.query_opt("SELECT value FROM outbox WHERE key = $1", &[&key]))?;
        row.map(|r| decode(r.get::<_, &str>(0), "outbox", &key))
            .transpose()
    }

    fn outbox_for(&self, incident: IncidentId) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM outbox WHERE incident = $1 ORDER BY key",
                &[&id_i64(incident)],
            )
        })?;
        values(rows, "outbox")
    }

    fn expired(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<Vec<Expired>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM incidents ORDER BY id LIMIT $1",
                &[&sql_limit(limit)],
            )
        })?;
        let oldest_first = values::<Incident>(rows, "incidents")?.into_iter().map(Ok);
        super::gather_expired(self, oldest_first, cutoff)
    }

    fn expired_events(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<u64>,
        scan: usize,
    ) -> Result<(Vec<u64>, Option<u64>), StoreError> {
        let after = after.map_or(0, |a| a as i64);
        let rows = self.with(|c| {
            c.query(
                "SELECT e.id, e.received_at, \
                        e.incident IS NULL OR NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = e.incident) \
                 FROM events e WHERE e.id > $1 ORDER BY e.id LIMIT $2",
                &[&after, &sql_limit(scan).saturating_add(1)],
            )
        })?;
        let mut out = Vec::new();
        for (scanned, r) in rows.iter().enumerate() {
            let id = r.get::<_, i64>(0) as u64;
            if scanned >= scan {
                return Ok((out, Some(id - 1)));
            }
            let received_at: DateTime<Utc> = r.get(1);
            if received_at >= cutoff {
                break;
            }
            if r.get::<_, bool>(2) {
                out.push(id);
            }
        }
        Ok((out, None))
    }

    fn put_summary(&self, id: IncidentId, markdown: &str) -> Result<(), StoreError> {
        let value = encode(&markdown);
        self.with(|c| {
            c.execute(
                "INSERT INTO summaries (incident, value) VALUES ($1, $2) \
                 ON CONFLICT (incident) DO UPDATE SET value = EXCLUDED.value",
                &[&id_i64(id), &value],
            )
        })
        .map(|_| ())
    }

    fn summary(&self, id: IncidentId) -> Result<Option<String>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT value FROM summaries WHERE incident = $1",
                &[&id_i64(id)],
            )
        })?;
        row.map(|r| decode(r.get::<_, &str>(0), "summaries", &id))
            .transpose()
    }

    fn incident_by_channel(
        &self,
        platform: &str,
        channel: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT incident FROM channels WHERE platform = $1 AND channel = $2",
                &[&platform, &channel],
            )
        })?;
        Ok(row.map(|r| IncidentId(r.get::<_, i64>(0) as u64)))
    }

    fn add_override(&self, mut o: StoredOverride) -> Result<StoredOverride, StoreError> {
        self.with(|c| {
            let id: i64 = c
                .query_one(
                    "SELECT nextval(pg_get_serial_sequence('overrides', 'id'))",
                    &[],
                )?
                .get(0);
            o.id = id as u64;
            c.execute(
                "INSERT INTO overrides (id, schedule, value) VALUES ($1, $2, $3)",
                &[&id, &o.schedule, &encode(&o)],
            )?;
            Ok(o)
        })
    }

    fn overrides(&self, schedule: &str) -> Result<Vec<StoredOverride>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT value FROM overrides WHERE schedule = $1 ORDER BY id",
                &[&schedule],
            )
        })?;
        values(rows, "overrides")
    }

    fn delete_override(&self, schedule: &str, id: u64) -> Result<bool, StoreError> {
        let n = self.with(|c| {
            c.execute(
                "DELETE FROM overrides WHERE schedule = $1 AND id = $2",
                &[&schedule, &(id as i64)],
            )
        })?;
        Ok(n > 0)
    }

    fn put_token(&self, token: &crate::access::ApiToken) -> Result<(), StoreError> {
        let value = encode(token);
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (id, value) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
                &[&token.id, &value],
            )
        })
        .map(|_| ())
    }

    fn update_token(
        &self,
        id: &str,
        f: &mut dyn FnMut(&crate::access::ApiToken) -> Option<crate::access::ApiToken>,
    ) -> Result<Option<crate::access::ApiToken>, StoreError> {
        // The row is locked from the read to the commit: a second replica
        // using the same sign-in link waits, then sees it used.
        off_runtime_here(|| {
            let mut conn = self.conn()?;
            let result = (|| {
                let mut t = conn.transaction()?;
                let Some(row) =
                    t.query_opt("SELECT value FROM tokens WHERE id = $1 FOR UPDATE", &[&id])?
                else {
                    return Ok(Ok(None));
                };
                let current: crate::access::ApiToken =
                    match decode(row.get::<_, &str>(0), "tokens", &id) {
                        Ok(c) => c,
                        Err(e) => return Ok(Err(e)),
                    };
                let Some(new) = f(&current) else {
                    return Ok(Ok(None));
                };
                t.execute(
                    "UPDATE tokens SET value = $2 WHERE id = $1",
                    &[&id, &encode(&new)],
                )?;
                t.commit()?;
                Ok(Ok(Some(new)))
            })();
            self.note(&result);
            result.map_err(pg)?
        })
    }

    fn token(&self, id: &str) -> Result<Option<crate::access::ApiToken>, StoreError> {
        let row = self.with(|c| c.query_opt("SELECT value FROM tokens WHERE id = $1", &[&id]))?;
        row.map(|r| decode(r.get::<_, &str>(0), "tokens", &id))
            .transpose()
    }

    fn tokens(&self) -> Result<Vec<crate::access::ApiToken>, StoreError> {
        let rows = self.with(|c| c.query("SELECT value FROM tokens ORDER BY id", &[]))?;
        values(rows, "tokens")
    }

    fn maintenance_windows(&self) -> Result<Vec<crate::maintenance::StoredWindow>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT value FROM kv WHERE tree = 'meta' AND key = $1",
                &[&MAINTENANCE_KEY],
            )
        })?;
        match row {
            Some(r) => decode(r.get::<_, &str>(0), "meta", &"maintenance_windows"),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use crate::store::suite::{event, now, postgres_database};
    use std::sync::Arc;

    fn store(test: &str) -> Option<(String, PostgresStore)> {
        let url = postgres_database(test)?;
        let store = PostgresStore::open(&url, 8).unwrap();
        Some((url, store))
    }

    /// Opens an incident for `key` unless one is open, as intake does:
    /// read the open index, then open or append.
    fn open_or_append(tx: &mut dyn Tx, key: &str, alert: &str) -> Result<IncidentId, StoreError> {
        let mut ev = event(key);
        ev.fingerprint = Some(alert.into());
        if let Some(id) = tx.open_incident("api", key)? {
            let inc = tx.incident(id)?.unwrap();
            let change = inc.apply_alert(&ev, now());
            tx.put_incident(&change.incident)?;
            for e in &change.entries {
                tx.append_timeline(id, e)?;
            }
            return Ok(id);
        }
        let id = tx.next_incident_id()?;
        let change = Incident::open(id, "api", "int", &ev, now());
        tx.put_incident(&change.incident)?;
        for e in &change.entries {
            tx.append_timeline(id, e)?;
        }
        tx.set_open_incident("api", key, Some(id))?;
        Ok(id)
    }

    /// Two replicas using one sign-in link at the same instant: one of
    /// them signs in.
    #[test]
    fn a_sign_in_link_is_used_once_across_replicas() {
        let Some((url, first)) = store("link") else {
            return;
        };
        let min = chrono::Duration::minutes;
        let (link, code) = crate::access::ApiToken::sign_in_link(
            "alice",
            crate::access::Scope::Write,
            "email",
            now(),
            now() + min(10),
        );
        first.put_token(&link).unwrap();
        let (_, secret) = crate::access::split_token(&code).unwrap();
        let stores: Vec<Arc<PostgresStore>> = (0..4)
            .map(|_| Arc::new(PostgresStore::open(&url, 2).unwrap()))
            .collect();
        let barrier = Arc::new(std::sync::Barrier::new(stores.len()));
        let used: Vec<bool> = stores
            .iter()
            .map(|s| {
                let (s, id, secret, barrier) = (
                    s.clone(),
                    link.id.clone(),
                    secret.to_string(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    s.update_token(&id, &mut |t| t.redeem(&secret, now(), now() + min(60)).ok())
                        .unwrap()
                        .is_some()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(used.iter().filter(|u| **u).count(), 1, "{used:?}");
    }

    /// A commit that writes a timer wakes the other replicas' schedulers
    /// through `LISTEN/NOTIFY`; one that writes neither timers nor pages
    /// wakes nobody; a rolled-back one neither.
    #[test]
    fn a_commit_with_timers_wakes_the_other_replicas() {
        let Some((url, writer)) = store("wake") else {
            return;
        };
        let other = PostgresStore::open(&url, 2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        other.on_wake(Arc::new(move |w| {
            let _ = tx.send(w);
        }));
        // The LISTEN session is up once a notification gets through.
        let timer = |minutes| crate::escalation::Timer {
            due: now() + chrono::Duration::minutes(minutes),
            incident: IncidentId(1),
            generation: 0,
            kind: crate::escalation::TimerKind::Escalate { step: 1, round: 0 },
        };
        let mut woke = None;
        for attempt in 0..50 {
            writer
                .transact(&mut |tx| tx.put_timer(&timer(attempt)))
                .unwrap();
            if let Ok(w) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                woke = Some(w);
                break;
            }
        }
        assert_eq!(woke, Some(crate::store::Wake::Timers));
        while rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_ok()
        {}
        // Nothing scheduled: no wake-up.
        writer
            .transact(&mut |tx| open_or_append(tx, "quiet", "a").map(|_| ()))
            .unwrap();
        // Refused: rolled back, no wake-up.
        let refused = writer.transact(&mut |tx| {
            tx.put_timer(&timer(99))?;
            Err(StoreError::Backend("refused".into()))
        });
        assert!(refused.is_err());
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(700))
                .is_err(),
            "woken without a timer or page"
        );
    }

    #[test]
    fn passes_the_store_suite() {
        let Some((_, store)) = store("suite") else {
            return;
        };
        crate::store::suite::run(&store);
    }

    #[test]
    fn migrations_run_once_when_replicas_start_together() {
        let Some(url) = postgres_database("migrate") else {
            return;
        };
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || PostgresStore::open(&url, 2).map(|_| ()))
            })
            .collect();
        for t in opened {
            t.join().unwrap().unwrap();
        }
        let mut c = postgres::Client::connect(&url, NoTls).unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM tocsin_migrations", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, MIGRATIONS.len() as i64);
        // A database migrated by a newer tocsin is refused, not written.
        c.execute(
            "INSERT INTO tocsin_migrations (version, name, checksum) VALUES (999, 'future', '')",
            &[],
        )
        .unwrap();
        let e = PostgresStore::open(&url, 1).err().unwrap();
        assert!(e.to_string().contains("newer than this tocsin"), "{e}");
    }

    /// Eight writers (as eight replicas) send alerts for the same few
    /// dedup keys at once: one incident per key, every alert on it, no
    /// number twice, every timeline gapless.
    #[test]
    fn concurrent_writers_open_one_incident_per_dedup_key() {
        let Some((url, first)) = store("concurrent") else {
            return;
        };
        let replicas: Vec<Arc<PostgresStore>> = std::iter::once(Arc::new(first))
            .chain((1..8).map(|_| Arc::new(PostgresStore::open(&url, 2).unwrap())))
            .collect();
        let threads: Vec<_> = replicas
            .iter()
            .cloned()
            .enumerate()
            .map(|(r, s)| {
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..12 {
                        let key = format!("k{}", i % 3);
                        let alert = format!("{key}-{r}-{i}");
                        let mut got = None;
                        s.transact(&mut |tx| {
                            got = Some(open_or_append(tx, &key, &alert)?);
                            Ok(())
                        })
                        .unwrap();
                        ids.push((key, got.unwrap()));
                    }
                    ids
                })
            })
            .collect();
        let mut by_key =
            std::collections::BTreeMap::<String, std::collections::BTreeSet<u64>>::new();
        for t in threads {
            for (k, id) in t.join().unwrap() {
                by_key.entry(k).or_default().insert(id.0);
            }
        }
        assert_eq!(by_key.len(), 3);
        for (k, ids) in &by_key {
            assert_eq!(ids.len(), 1, "{k} opened {ids:?}");
        }
        let s = &replicas[0];
        assert_eq!(s.incident_count().unwrap(), 3);
        let mut alerts = 0;
        for ids in by_key.values() {
            let id = IncidentId(*ids.iter().next().unwrap());
            let timeline = s.timeline(id).unwrap();
            let inc = s.incident(id).unwrap().unwrap();
            assert_eq!(timeline.len() as u64, inc.timeline_len);
            for (i, e) in timeline.iter().enumerate() {
                assert_eq!(e.seq, i as u64, "{id}'s timeline has a gap");
            }
            crate::incident::verify_chain(&timeline, &inc.timeline_head, Default::default())
                .unwrap_or_else(|e| panic!("{id}'s hash chain: {e:?}"));
            alerts += inc.alerts.len();
        }
        assert_eq!(alerts, 8 * 12, "every alert is on its incident");
    }

    /// A sled deployment's backup restored into PostgreSQL, and that
    /// database's backup restored into sled again: the same incidents,
    /// timelines, pending pages and timers, and numbering goes on.
    #[test]
    fn a_sled_backup_moves_to_postgres_and_back() {
        let Some(url) = postgres_database("restore") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(&dir.path().join("data")).unwrap();
        crate::store::suite::run(&sled);
        let mut backup = Vec::new();
        sled.backup(&mut backup, now()).unwrap();
        let report = PostgresStore::restore(&url, std::io::Cursor::new(&backup)).unwrap();
        assert_eq!(report.incidents, sled.incident_count().unwrap());
        let pg = PostgresStore::open(&url, 2).unwrap();
        let listed = |s: &dyn Store| s.incidents(None, None, 100).unwrap();
        assert_eq!(listed(&pg), listed(&sled));
        assert_eq!(
            pg.timeline(IncidentId(1)).unwrap(),
            sled.timeline(IncidentId(1)).unwrap()
        );
        assert_eq!(pg.gauges().unwrap(), sled.gauges().unwrap());
        assert_eq!(pg.event_count().unwrap(), sled.event_count().unwrap());
        assert_eq!(pg.next_timer().unwrap(), sled.next_timer().unwrap());
        assert_eq!(
            pg.due_outbox(now(), 10).unwrap(),
            sled.due_outbox(now(), 10).unwrap()
        );
        assert_eq!(
            pg.summary(IncidentId(1)).unwrap(),
            sled.summary(IncidentId(1)).unwrap()
        );
        assert_eq!(
            pg.incident_by_channel("slack", "C1").unwrap(),
            Some(IncidentId(1))
        );
        assert_eq!(pg.tokens().unwrap(), sled.tokens().unwrap());
        let mut next = None;
        pg.transact(&mut |tx| {
            next = Some(tx.next_incident_id()?);
            Ok(())
        })
        .unwrap();
        assert_eq!(next.unwrap().0, report.next_incident);
        assert!(report.next_incident > sled.incidents(None, None, 1).unwrap()[0].id.0);
        // A second restore into a database that holds data is refused.
        let e = PostgresStore::restore(&url, std::io::Cursor::new(&backup)).unwrap_err();
        assert!(e.to_string().contains("already holds"), "{e}");
        // And back: PostgreSQL's backup restores into sled.
        let mut again = Vec::new();
        pg.backup(&mut again, now()).unwrap();
        let back = tempfile::tempdir().unwrap();
        let path = back.path().join("data");
        SledStore::restore(&path, std::io::Cursor::new(&again)).unwrap();
        let restored = SledStore::open(&path).unwrap();
        assert_eq!(listed(&restored), listed(&pg));
        assert_eq!(restored.gauges().unwrap(), pg.gauges().unwrap());
        assert_eq!(
            restored.due_outbox(now(), 10).unwrap(),
            pg.due_outbox(now(), 10).unwrap()
        );
    }

    /// A backup cut short writes nothing into PostgreSQL.
    #[test]
    fn a_backup_cut_short_restores_nothing() {
        let Some(url) = postgres_database("cut") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(&dir.path().join("data")).unwrap();
        crate::store::suite::run(&sled);
        let mut backup = Vec::new();
        sled.backup(&mut backup, now()).unwrap();
        let text = String::from_utf8(backup).unwrap();
        let without_end: Vec<&str> = text.lines().collect();
        let cut = without_end[..without_end.len() - 1].join("\n");
        let e = PostgresStore::restore(&url, std::io::Cursor::new(cut)).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        let pg = PostgresStore::open(&url, 1).unwrap();
        assert_eq!(pg.incident_count().unwrap(), 0);
        assert!(pg.incidents(None, None, 10).unwrap().is_empty());
    }

    fn timer(n: u64) -> Timer {
        Timer {
            due: now() + chrono::Duration::milliseconds(n as i64),
            incident: IncidentId(n),
            generation: 0,
            kind: crate::escalation::TimerKind::Escalate { step: 1, round: 0 },
        }
    }

    /// Four replicas fire the same 60 due timers at once, as their
    /// schedulers would: each timer is claimed (and so fires) exactly once.
    #[test]
    fn each_due_timer_is_claimed_by_one_replica() {
        let Some((url, first)) = store("timers") else {
            return;
        };
        let timers: Vec<Timer> = (1..=60).map(timer).collect();
        first
            .transact(&mut |tx| timers.iter().try_for_each(|t| tx.put_timer(t)))
            .unwrap();
        let replicas: Vec<Arc<PostgresStore>> = std::iter::once(Arc::new(first))
            .chain((1..4).map(|_| Arc::new(PostgresStore::open(&url, 2).unwrap())))
            .collect();
        let threads: Vec<_> = replicas
            .iter()
            .cloned()
            .map(|s| {
                std::thread::spawn(move || {
                    let mut fired = Vec::new();
                    // Every replica sees every timer due and tries each, in
                    // batches of 8 per transaction, as the scheduler does.
                    let due = s
                        .due_timers(now() + chrono::Duration::hours(1), 100)
                        .unwrap();
                    for batch in due.chunks(8) {
                        let mut claimed = Vec::new();
                        s.transact(&mut |tx| {
                            claimed.clear();
                            for t in batch {
                                if tx.delete_timer(t)? {
                                    claimed.push(t.incident.0);
                                }
                            }
                            Ok(())
                        })
                        .unwrap();
                        fired.extend(claimed);
                    }
                    fired
                })
            })
            .collect();
        let mut fired: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        fired.sort_unstable();
        assert_eq!(fired, (1..=60).collect::<Vec<_>>(), "each timer fired once");
        assert_eq!(replicas[0].timer_count().unwrap(), 0);
    }

    /// A timer another replica's transaction holds is skipped at once, not
    /// waited for; if that transaction rolls back, the timer is still there.
    #[test]
    fn a_held_timer_is_skipped_and_kept_if_its_holder_rolls_back() {
        let Some((url, first)) = store("held") else {
            return;
        };
        let t = timer(1);
        first.transact(&mut |tx| tx.put_timer(&t)).unwrap();
        let other = PostgresStore::open(&url, 1).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let result = first.transact(&mut |tx| {
                assert!(tx.delete_timer(&t)?);
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                Err(StoreError::Aborted("the holder dies".into()))
            });
            assert!(matches!(result, Err(StoreError::Aborted(_))));
            first
        });
        held_rx.recv().unwrap();
        let started = std::time::Instant::now();
        let mut claimed = None;
        other
            .transact(&mut |tx| {
                claimed = Some(tx.delete_timer(&t)?);
                Ok(())
            })
            .unwrap();
        assert_eq!(claimed, Some(false), "held elsewhere: not ours to fire");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        go_tx.send(()).unwrap();
        let first = holder.join().unwrap();
        assert_eq!(first.next_timer().unwrap(), Some(t), "the rollback kept it");
    }

    /// Two replicas, one pending page: the first to lease it delivers it;
    /// the other neither gets it from `due_outbox` nor may lease it, and
    /// waits for the lease's end. Once the holder is gone past its lease,
    /// the other takes it over, with the same key; a recorded delivery ends
    /// the lease.
    #[test]
    fn a_page_is_leased_to_one_replica_and_taken_over_when_its_lease_runs_out() {
        let Some((url, a)) = store("lease") else {
            return;
        };
        let b = PostgresStore::open(&url, 1).unwrap();
        let entry = crate::store::suite::page_entry();
        a.transact(&mut |tx| tx.put_outbox(&entry)).unwrap();
        let until = now() + chrono::Duration::seconds(30);
        assert!(a.lease_outbox(&entry.key, now(), until).unwrap());
        assert!(
            a.lease_outbox(&entry.key, now(), until).unwrap(),
            "still ours"
        );
        assert!(!b.lease_outbox(&entry.key, now(), until).unwrap());
        assert!(b.due_outbox(now(), 10).unwrap().is_empty());
        assert_eq!(a.due_outbox(now(), 10).unwrap(), vec![entry.clone()]);
        assert_eq!(b.next_outbox_due().unwrap(), Some(until));
        // A dies mid-delivery: at the lease's end B delivers the same page.
        let later = until + chrono::Duration::seconds(1);
        assert_eq!(b.due_outbox(later, 10).unwrap(), vec![entry.clone()]);
        assert!(
            b.lease_outbox(&entry.key, later, later + chrono::Duration::seconds(30))
                .unwrap()
        );
        assert!(
            !a.lease_outbox(&entry.key, later, later).unwrap(),
            "B holds it now"
        );
        let delivered = OutboxEntry {
            state: DeliveryState::Delivered { at: later },
            ..entry.clone()
        };
        b.transact(&mut |tx| tx.put_outbox(&delivered)).unwrap();
        assert!(
            !a.lease_outbox(&entry.key, later, later).unwrap(),
            "delivered: nothing to lease"
        );
        assert_eq!(a.outbox_entry(&entry.key).unwrap(), Some(delivered));
    }

    /// `cargo test --release --lib postgres_write_rate -- --ignored --nocapture`
    /// (with `TOCSIN_TEST_POSTGRES_URL`): transactions that open an incident
    /// (incident, open index, timeline, raw event), committed one at a time
    /// and in batches of 32 as the writer thread batches a burst, by one
    /// process and by 3 at once.
    #[test]
    #[ignore = "a measurement"]
    fn postgres_write_rate() {
        let Some((url, first)) = store("rate") else {
            return;
        };
        let first = Arc::new(first);
        let run = |stores: Vec<Arc<PostgresStore>>, batch: usize, total: usize| -> f64 {
            let started = std::time::Instant::now();
            let per = total / stores.len();
            let threads: Vec<_> = stores
                .into_iter()
                .enumerate()
                .map(|(r, s)| {
                    std::thread::spawn(move || {
                        for b in 0..per / batch {
                            s.transact(&mut |tx| {
                                for i in 0..batch {
                                    let key = format!("r{r}-{b}-{i}");
                                    open_or_append(tx, &key, &key)?;
                                    tx.record_event(&StoredEvent {
                                        received_at: now(),
                                        integration: "int".into(),
                                        incident: None,
                                        event: event(&key),
                                    })?;
                                }
                                Ok(())
                            })
                            .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let done = per / batch * batch * (total / per);
            done as f64 / started.elapsed().as_secs_f64()
        };
        let three: Vec<_> = std::iter::once(first.clone())
            .chain((1..3).map(|_| Arc::new(PostgresStore::open(&url, 2).unwrap())))
            .collect();
        for (name, stores, batch) in [
            ("1 process, 1 per transaction", vec![first.clone()], 1),
            ("1 process, 32 per transaction", vec![first.clone()], 32),
            ("3 processes, 1 per transaction", three.clone(), 1),
            ("3 processes, 32 per transaction", three.clone(), 32),
        ] {
            let rate = run(stores, batch, 1536);
            println!("{name}: {rate:.0} incidents/s");
        }
    }
}
