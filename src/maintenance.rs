//! Maintenance windows: while one covers an alert's service (or its labels
//! match the window's matchers), the alert is stored and shown but pages
//! nobody and opens no channel; when the window ends, what still fires is
//! paged as if it had just arrived.
//!
//! Windows come from the config (`[[maintenance]]`, one-off or recurring)
//! or are made at runtime (REST API, CLI, chat) and stored as
//! [`StoredWindow`]s. Pure: every question takes `now`.

use crate::config::{MaintenanceConfig, MaintenanceTimes};
use crate::matchers::Matcher;
use crate::oncall::Recurrence;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long an ended runtime window's record is kept (listed as ended).
pub const KEEP_ENDED_DAYS: i64 = 30;

/// A window made at runtime, as stored: its own record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWindow {
    /// Its number (ids of runtime windows are these numbers).
    pub id: u64,
    /// Its name, shown on what it suppresses.
    pub name: String,
    /// The services it covers (none: matchers decide).
    #[serde(default)]
    pub services: Vec<String>,
    /// Label matchers an alert must all match.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// From.
    pub start: DateTime<Utc>,
    /// Until (moved to when it was ended, if ended early).
    pub end: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Who ended it early, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
}

/// Where a window is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `[[maintenance]]` in the config: ended by editing the config.
    Config,
    /// The REST API, the CLI or chat.
    Api,
}

#[derive(Debug, Clone)]
enum Times {
    Once {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Recurring(Recurrence),
}

/// A window, from the config or the store, ready to be asked what it covers.
#[derive(Debug, Clone)]
pub struct Window {
    /// Its id: a runtime window's number, or `config:NAME`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The services it covers.
    pub services: Vec<String>,
    /// The matchers as written.
    pub matcher_texts: Vec<String>,
    matchers: Option<Vec<Matcher>>,
    /// Why.
    pub reason: Option<String>,
    /// Where it is defined.
    pub source: Source,
    /// Who made it (runtime windows).
    pub created_by: Option<String>,
    times: Times,
}

/// One period of a window that covers an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// The window's id.
    pub window: String,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: Option<String>,
    /// When this period started.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
}

/// The id of a window from the config.
pub fn config_id(name: &str) -> String {
    format!("config:{name}")
}

impl Window {
    /// A configured window (`None` if its config is invalid, which
    /// `tocsin check` reports).
    pub fn from_config(cfg: &MaintenanceConfig) -> Option<Self> {
        let times = match cfg.times().ok()? {
            MaintenanceTimes::Once { start, end } => Times::Once { start, end },
            MaintenanceTimes::Recurring(r) => Times::Recurring(r),
        };
        Some(Self {
            id: config_id(&cfg.name),
            name: cfg.name.clone(),
            services: cfg.services.clone(),
            matcher_texts: cfg.matchers.clone(),
            matchers: Some(crate::matchers::parse_list(&cfg.matchers).ok()?),
            reason: cfg.reason.clone(),
            source: Source::Config,
            created_by: None,
            times,
        })
    }

    /// A runtime window.
    pub fn from_stored(w: &StoredWindow) -> Self {
        Self {
            id: w.id.to_string(),
            name: w.name.clone(),
            services: w.services.clone(),
            matcher_texts: w.matchers.clone(),
            // Checked when it was made; should one no longer parse, the
            // window matches nothing rather than everything.
            matchers: crate::matchers::parse_list(&w.matchers).ok(),
            reason: w.reason.clone(),
            source: Source::Api,
            created_by: Some(w.created_by.clone()),
            times: Times::Once {
                start: w.start,
                end: w.end,
            },
        }
    }

    /// The period holding `now`, if the window is active then.
    pub fn period_at(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.times {
            Times::Once { start, end } => (*start <= now && now < *end).then_some((*start, *end)),
            Times::Recurring(r) => r.around(now),
        }
    }

    /// The period holding `now`, else the next one (`None`: over for good).
    pub fn current_or_next(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.times {
            Times::Once { start, end } => (now < *end).then_some((*start, *end)),
            Times::Recurring(r) => r.around(now).or_else(|| r.next_after(now)),
        }
    }

    /// Whether it is recurring.
    pub fn recurring(&self) -> bool {
        matches!(self.times, Times::Recurring(_))
    }

    /// Whether it applies to an alert of `service` with `labels` (at any
    /// time): its services name the service (or it names none), and every
    /// matcher matches.
    pub fn applies_to(&self, service: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.services.is_empty() || self.services.iter().any(|s| s == service))
            && self
                .matchers
                .as_ref()
                .is_some_and(|ms| ms.iter().all(|m| m.matches(labels)))
    }

    /// The period covering an alert of `service` with `labels` at `now`.
    pub fn covers(
        &self,
        service: &str,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Option<Occurrence> {
        if !self.applies_to(service, labels) {
            return None;
        }
        let (start, end) = self.period_at(now)?;
        Some(Occurrence {
            window: self.id.clone(),
            name: self.name.clone(),
            reason: self.reason.clone(),
            start,
            end,
        })
    }
}

/// Of every window covering the alert at `now`, the one that ends last (so
/// the alert is held until no window covers it).
pub fn covering(
    windows: &[Window],
    service: &str,
    labels: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Option<Occurrence> {
    windows
        .iter()
        .filter_map(|w| w.covers(service, labels, now))
        .max_by_key(|o| o.end)
}

/// How many windows are active at `now`.
pub fn active_count(windows: &[Window], now: DateTime<Utc>) -> usize {
    windows
        .iter()
        .filter(|w| w.period_at(now).is_some())
        .count()
}

/// A window's default name: its services, else its matchers.
pub fn default_name(services: &[String], matchers: &[String]) -> String {
    if services.is_empty() {
        matchers.join(", ")
    } else {
        services.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn stored(services: &[&str], matchers: &[&str], start: &str, end: &str) -> StoredWindow {
        StoredWindow {
            id: 1,
            name: "db upgrade".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            matchers: matchers.iter().map(|s| s.to_string()).collect(),
            reason: Some("upgrade".into()),
            start: at(start),
            end: at(end),
            created_by: "alice".into(),
            created_at: at(start),
            ended_by: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_window_covers_its_services_during_its_time_only() {
        let w = Window::from_stored(&stored(
            &["api"],
            &[],
            "2026-12-01T10:00:00Z",
            "2026-12-01T12:00:00Z",
        ));
        let none = labels(&[]);
        let o = w.covers("api", &none, at("2026-12-01T10:00:00Z")).unwrap();
        assert_eq!(
            (o.window.as_str(), o.end),
            ("1", at("2026-12-01T12:00:00Z"))
        );
        assert!(w.covers("db", &none, at("2026-12-01T11:00:00Z")).is_none());
        assert!(w.covers("api", &none, at("2026-12-01T12:00:00Z")).is_none());
        assert!(w.covers("api", &none, at("2026-12-01T09:59:59Z")).is_none());
    }

    #[test]
    fn matchers_narrow_a_window_and_may_replace_services() {
        let w = Window::from_stored(&stored(
            &[],
            &["env=staging", "team=~\"db|storage\""],
            "2026-12-01T10:00:00Z",
            "2026-12-01T12:00:00Z",
        ));
        let t = at("2026-12-01T11:00:00Z");
        assert!(
            w.covers("any", &labels(&[("env", "staging"), ("team", "db")]), t)
                .is_some()
        );
        assert!(w.covers("any", &labels(&[("env", "staging")]), t).is_none());
        assert!(
            w.covers("any", &labels(&[("env", "prod"), ("team", "db")]), t)
                .is_none()
        );
    }

    #[test]
    fn the_covering_window_that_ends_last_is_chosen() {
        let mut a = stored(
            &["api"],
            &[],
            "2026-12-01T10:00:00Z",
            "2026-12-01T11:00:00Z",
        );
        let mut b = stored(
            &["api"],
            &[],
            "2026-12-01T09:00:00Z",
            "2026-12-01T13:00:00Z",
        );
        a.id = 1;
        b.id = 2;
        let ws = [Window::from_stored(&a), Window::from_stored(&b)];
        let t = at("2026-12-01T10:30:00Z");
        assert_eq!(covering(&ws, "api", &labels(&[]), t).unwrap().window, "2");
        assert_eq!(active_count(&ws, t), 2);
        assert_eq!(active_count(&ws, at("2026-12-01T12:00:00Z")), 1);
    }

    #[test]
    fn a_recurring_config_window_covers_each_occurrence() {
        let cfg: MaintenanceConfig = toml::from_str(
            "name = \"nightly\"\nservices = [\"api\"]\ncron = \"0 0 2 * * *\"\nduration = \"1h\"\ntime_zone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        let w = Window::from_config(&cfg).unwrap();
        assert_eq!(w.id, "config:nightly");
        // 02:00 Berlin is 01:00 UTC in December.
        let o = w
            .covers("api", &labels(&[]), at("2026-12-03T01:15:00Z"))
            .unwrap();
        assert_eq!(
            (o.start, o.end),
            (at("2026-12-03T01:00:00Z"), at("2026-12-03T02:00:00Z"))
        );
        assert!(
            w.covers("api", &labels(&[]), at("2026-12-03T02:00:00Z"))
                .is_none()
        );
        assert_eq!(
            w.current_or_next(at("2026-12-03T02:00:00Z")).unwrap().0,
            at("2026-12-04T01:00:00Z")
        );
    }
}
