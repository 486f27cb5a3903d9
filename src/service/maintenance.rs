//! Maintenance windows in the writer: holding an incident that opens during
//! one, the timer at the window's end that pages what still fires, and
//! making, listing and ending runtime windows. What a window covers is
//! decided by [`crate::maintenance`]; this file writes it, in the
//! transaction of the alert or the window it concerns.

use super::writer::Priority;
use super::{Service, ServiceError};
use crate::escalation::{Timer, TimerKind};
use crate::incident::{AfterWindow, Change, Incident};
use crate::maintenance::{KEEP_ENDED_DAYS, Source, StoredWindow, Window, covering};
use crate::store::{OpenFilter, StoreError, Tx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::info;

/// A window to make at runtime (REST API, CLI, chat).
#[derive(Debug, Clone, Default)]
pub struct NewWindow {
    /// Its name (default: its services, else its matchers).
    pub name: Option<String>,
    /// The services it covers.
    pub services: Vec<String>,
    /// Label matchers an alert must all match.
    pub matchers: Vec<String>,
    /// Why.
    pub reason: Option<String>,
    /// From (default: now).
    pub start: Option<DateTime<Utc>>,
    /// Until.
    pub end: DateTime<Utc>,
}

/// Why a window could not be made or ended.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The request is wrong (unknown service, bad matcher, end before start).
    #[error("{0}")]
    Invalid(String),
    /// A configured window: edit the config to end it.
    #[error(
        "maintenance window {0} is defined in the config ([[maintenance]]); edit the config to end it"
    )]
    FromConfig(String),
    /// No window has this id.
    #[error("no maintenance window {0}")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A window as the API lists it: configured and runtime ones alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowView {
    /// A runtime window's number, or `config:NAME`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `config` or `api`.
    pub source: Source,
    /// The services it covers.
    pub services: Vec<String>,
    /// Its label matchers.
    pub matchers: Vec<String>,
    /// Why.
    pub reason: Option<String>,
    /// The current (or next) period's start; `None` for a recurring window
    /// that never starts again.
    pub start: Option<DateTime<Utc>>,
    /// Its end.
    pub end: Option<DateTime<Utc>>,
    /// Whether it holds alerts now.
    pub active: bool,
    /// Whether it recurs (config `cron`).
    pub recurring: bool,
    /// Who made it (runtime windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When (runtime windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Who ended it early, if anyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
}

impl WindowView {
    /// A runtime window's record as listed at `now`.
    pub fn of_stored(s: StoredWindow, now: DateTime<Utc>) -> Self {
        Self {
            id: s.id.to_string(),
            active: s.start <= now && now < s.end,
            name: s.name,
            source: Source::Api,
            services: s.services,
            matchers: s.matchers,
            reason: s.reason,
            start: Some(s.start),
            end: Some(s.end),
            recurring: false,
            created_by: Some(s.created_by),
            created_at: Some(s.created_at),
            ended_by: s.ended_by,
        }
    }
}

/// The timer that ends an incident's hold at `until`.
fn end_timer(incident: &Incident, until: DateTime<Utc>) -> Timer {
    Timer {
        due: until,
        incident: incident.id,
        generation: 0,
        kind: TimerKind::MaintenanceEnd,
    }
}

/// Holds the incident in the window's period `o`: the `suppressed` entry,
/// and the timer at its end in the same transaction.
fn hold(
    tx: &mut dyn Tx,
    change: &mut Change,
    o: &crate::maintenance::Occurrence,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    change.incident.suppress(
        &mut change.entries,
        &o.window,
        &o.name,
        o.reason.as_deref(),
        o.end,
        now,
    );
    tx.put_timer(&end_timer(&change.incident, o.end))
}

/// The labels windows are matched against: the incident's alerts', the
/// first alert's value winning.
fn labels_of(incident: &Incident) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for a in incident.alerts.values() {
        for (k, v) in &a.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    labels
}

/// The configured windows (those whose config is valid).
pub(super) fn config_windows(config: &crate::config::Config) -> Vec<Window> {
    config
        .maintenance
        .iter()
        .filter_map(Window::from_config)
        .collect()
}

impl Service {
    /// Every window, the config's and the runtime ones as this transaction
    /// sees them.
    fn windows_in(&self, tx: &dyn Tx) -> Result<Vec<Window>, StoreError> {
        let mut all: Vec<Window> = self.config_windows.as_ref().clone();
        all.extend(tx.maintenance_windows()?.iter().map(Window::from_stored));
        Ok(all)
    }

    /// If a window covers the new (or reopened) incident at `now`, holds it
    /// there (a `suppressed` entry and the timer at the window's end) and
    /// returns `true`: the caller then starts no escalation, and no channel
    /// opens (see `queue_chat`).
    pub(super) fn hold_if_covered(
        &self,
        tx: &mut dyn Tx,
        change: &mut Change,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let windows = self.windows_in(tx)?;
        let Some(o) = covering(&windows, &change.incident.service, labels, now) else {
            return Ok(false);
        };
        info!(incident = %change.incident.id, window = %o.window, name = %o.name, until = %o.end, "Suppressed by a maintenance window; nobody paged");
        hold(tx, change, &o, now)?;
        Ok(true)
    }

    /// The timer at a window's end fired for `inc`.
    pub(super) fn fire_maintenance_end(
        &self,
        tx: &mut dyn Tx,
        inc: Incident,
        timer: &Timer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &inc.suppressed {
            Some(s) if s.ended_at.is_none() && s.until == timer.due => {}
            _ => return Ok(()), // superseded, or ended early
        }
        self.end_hold(tx, inc, now, None)
    }

    /// Ends `inc`'s hold at `now`: held on by another window that covers it
    /// now, else paged as if it had just arrived (still triggered) or shown
    /// in its channel (acknowledged meanwhile). A resolved one stays as it is.
    fn end_hold(
        &self,
        tx: &mut dyn Tx,
        inc: Incident,
        now: DateTime<Utc>,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(held) = inc.suppressed.clone() else {
            return Ok(());
        };
        tx.delete_timer(&end_timer(&inc, held.until))?;
        let Some((mut change, after)) = inc.end_suppression(now, by) else {
            return Ok(());
        };
        let windows: Vec<Window> = self
            .windows_in(tx)?
            .into_iter()
            .filter(|w| w.id != held.window)
            .collect();
        let labels = labels_of(&change.incident);
        if let Some(o) = covering(&windows, &change.incident.service, &labels, now) {
            hold(tx, &mut change, &o, now)?;
            info!(incident = %change.incident.id, window = %o.window, "Maintenance window ended; another one holds the incident");
            return self.write_change(tx, &change);
        }
        if after == AfterWindow::Page {
            info!(incident = %change.incident.id, window = %held.window, "Maintenance window ended; still firing, paging");
            self.start_escalation(tx, &mut change, now)?;
        }
        self.write_change(tx, &change)
    }

    /// Makes a runtime window (and its record), after checking it.
    pub async fn create_window(
        &self,
        new: NewWindow,
        by: &str,
    ) -> Result<StoredWindow, WindowError> {
        let now = self.clock.now();
        let config = &self.directory.config;
        for s in &new.services {
            if !config.services.iter().any(|c| &c.name == s) {
                return Err(WindowError::Invalid(format!(
                    "unknown service '{s}'; the services are: {}",
                    config
                        .services
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if new.services.is_empty() && new.matchers.is_empty() {
            return Err(WindowError::Invalid(
                "a window must name services or label matchers (or both)".into(),
            ));
        }
        crate::matchers::parse_list(&new.matchers).map_err(WindowError::Invalid)?;
        let start = new.start.unwrap_or(now);
        if new.end <= start {
            return Err(WindowError::Invalid(format!(
                "the end, {}, is not after the start, {start}",
                new.end
            )));
        }
        if new.end <= now {
            return Err(WindowError::Invalid(format!(
                "the end, {}, has already passed",
                new.end
            )));
        }
        let name = new
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| crate::maintenance::default_name(&new.services, &new.matchers));
        let by = by.to_string();
        let window = self
            .write(Priority::Now, move |tx| {
                let window = StoredWindow {
                    id: tx.next_maintenance_id()?,
                    name: name.clone(),
                    services: new.services.clone(),
                    matchers: new.matchers.clone(),
                    reason: new.reason.clone(),
                    start,
                    end: new.end,
                    created_by: by.clone(),
                    created_at: now,
                    ended_by: None,
                };
                // Records of windows long over go, so the list stays short.
                for old in tx.maintenance_windows()? {
                    if old.end < now - chrono::Duration::days(KEEP_ENDED_DAYS) {
                        tx.delete_maintenance_window(old.id)?;
                    }
                }
                tx.put_maintenance_window(&window)?;
                Ok(window)
            })
            .await
            .map_err(ServiceError::from)?;
        info!(id = window.id, name = %window.name, services = ?window.services, start = %window.start, end = %window.end, by = %window.created_by, "Maintenance window made");
        Ok(window)
    }

    /// Ends a runtime window now: what it holds is paged (or held on by
    /// another window) in the same transaction. Ending one that is over
    /// already changes nothing.
    pub async fn end_window(&self, id: &str, by: &str) -> Result<StoredWindow, WindowError> {
        if self.config_windows.iter().any(|w| w.id == id) {
            return Err(WindowError::FromConfig(id.to_string()));
        }
        let number: u64 = id
            .trim()
            .parse()
            .map_err(|_| WindowError::NotFound(id.to_string()))?;
        let now = self.clock.now();
        // The incidents it may hold are open ones; each is read again in
        // the transaction.
        let held = number.to_string();
        let open: Vec<crate::incident::IncidentId> = self
            .read(move |s| {
                let mut ids = Vec::new();
                super::each_open(s, &OpenFilter::default(), |i| {
                    if i.suppressed
                        .as_ref()
                        .is_some_and(|s| s.ended_at.is_none() && s.window == held)
                    {
                        ids.push(i.id);
                    }
                })?;
                Ok(ids)
            })
            .await?;
        let by = by.to_string();
        let svc = self.clone();
        let ended = self
            .write(Priority::Now, move |tx| {
                let Some(mut w) = tx.maintenance_window(number)? else {
                    return Ok(None);
                };
                if w.end <= now {
                    return Ok(Some(w));
                }
                w.end = now.max(w.start);
                w.ended_by = Some(by.clone());
                tx.put_maintenance_window(&w)?;
                for &id in &open {
                    if let Some(inc) = tx.incident(id)?
                        && inc
                            .suppressed
                            .as_ref()
                            .is_some_and(|s| s.ended_at.is_none() && s.window == number.to_string())
                    {
                        svc.end_hold(tx, inc, now, Some(&by))?;
                    }
                }
                Ok(Some(w))
            })
            .await
            .map_err(ServiceError::from)?;
        let w = ended.ok_or_else(|| WindowError::NotFound(id.to_string()))?;
        info!(id = w.id, name = %w.name, by = ?w.ended_by, "Maintenance window ended");
        Ok(w)
    }

    /// How many windows are active now.
    pub async fn active_windows(&self) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let stored = self.read(|s| s.maintenance_windows()).await?;
        let runtime: Vec<Window> = stored.iter().map(Window::from_stored).collect();
        Ok(crate::maintenance::active_count(&self.config_windows, now)
            + crate::maintenance::active_count(&runtime, now))
    }

    /// Every window: the configured ones, then the runtime ones by id.
    pub async fn maintenance_windows(&self) -> Result<Vec<WindowView>, ServiceError> {
        let now = self.clock.now();
        let stored = self.read(|s| s.maintenance_windows()).await?;
        let mut views: Vec<WindowView> = self
            .config_windows
            .iter()
            .map(|w| {
                let period = w.current_or_next(now);
                WindowView {
                    id: w.id.clone(),
                    name: w.name.clone(),
                    source: Source::Config,
                    services: w.services.clone(),
                    matchers: w.matcher_texts.clone(),
                    reason: w.reason.clone(),
                    start: period.map(|p| p.0),
                    end: period.map(|p| p.1),
                    active: w.period_at(now).is_some(),
                    recurring: w.recurring(),
                    created_by: None,
                    created_at: None,
                    ended_by: None,
                }
            })
            .collect();
        views.extend(stored.into_iter().map(|s| WindowView::of_stored(s, now)));
        Ok(views)
    }
}
