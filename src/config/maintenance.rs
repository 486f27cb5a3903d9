//! `[[maintenance]]`: maintenance windows from the config, one-off (a
//! `start` and an `end`) or recurring (a `cron` and a `duration`, in a
//! `time_zone`). What they do is in [`crate::maintenance`].

use super::{ConfigIssue, Origins};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::HashSet;

/// `[[maintenance]]`: a window that silences the alerts of some services
/// (or of the alerts its label matchers match) while it lasts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Unique name, shown on every alert it suppresses.
    pub name: String,
    /// The services it covers (none: any service, then `matchers` decide).
    #[serde(default)]
    pub services: Vec<String>,
    /// Label matchers an alert must all match (Alertmanager syntax).
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Why, shown with it.
    #[serde(default)]
    pub reason: Option<String>,
    /// A one-off window's start (RFC 3339).
    #[serde(default)]
    pub start: Option<String>,
    /// A one-off window's end (RFC 3339).
    #[serde(default)]
    pub end: Option<String>,
    /// A recurring window's starts (six-field cron, like handoffs).
    #[serde(default)]
    pub cron: Option<String>,
    /// How long each recurring occurrence lasts.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<std::time::Duration>,
    /// The time zone `cron` is read in (IANA name; default UTC).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// When a configured window applies.
#[derive(Debug, Clone)]
pub enum MaintenanceTimes {
    /// From `start` until `end`.
    Once {
        /// Start.
        start: DateTime<Utc>,
        /// End.
        end: DateTime<Utc>,
    },
    /// Each start of the cron expression, for the duration.
    Recurring(crate::oncall::Recurrence),
}

/// An RFC 3339 time, or why not.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.to_utc())
        .map_err(|e| {
            format!("'{s}' is not an RFC 3339 time ({e}): write it like \"2026-12-06T02:00:00Z\" or with an offset, \"2026-12-06T03:00:00+01:00\"")
        })
}

impl MaintenanceConfig {
    /// When it applies; `Err` says what is wrong (with the key it concerns).
    pub fn times(&self) -> Result<MaintenanceTimes, (&'static str, String)> {
        match (&self.cron, &self.start, &self.end) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err((
                "cron",
                "give either start and end (one window) or cron and duration (a recurring one), not both".into(),
            )),
            (Some(cron), None, None) => {
                let Some(d) = self.duration else {
                    return Err(("duration", "a recurring window (cron) needs a duration, like \"2h\"".into()));
                };
                if d.is_zero() {
                    return Err(("duration", "must be longer than 0s".into()));
                }
                let length = chrono::Duration::from_std(d)
                    .map_err(|_| ("duration", "is too long".to_string()))?;
                crate::oncall::Recurrence::new(cron, &self.time_zone, length)
                    .map(MaintenanceTimes::Recurring)
                    .map_err(|e| {
                        let key = if e.contains("time zone") { "time_zone" } else { "cron" };
                        (key, e)
                    })
            }
            (None, Some(start), Some(end)) => {
                if self.duration.is_some() {
                    return Err(("duration", "only a recurring window (cron) has a duration; a one-off window has start and end".into()));
                }
                let start = parse_time(start).map_err(|e| ("start", e))?;
                let end = parse_time(end).map_err(|e| ("end", e))?;
                if end <= start {
                    return Err(("end", format!("{end} is not after the start, {start}")));
                }
                Ok(MaintenanceTimes::Once { start, end })
            }
            (None, None, _) | (None, _, None) => Err((
                "start",
                "a window needs start and end (RFC 3339), or cron and duration for a recurring one".into(),
            )),
        }
    }
}

/// Every problem of `[[maintenance]]`.
pub(super) fn validate(config: &super::Config, origins: &Origins) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });
    let services: HashSet<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    let mut names = HashSet::new();
    for (i, w) in config.maintenance.iter().enumerate() {
        let i = origins.at("maintenance", i);
        let at = |key: &str| format!("maintenance[{i}].{key}");
        if w.name.trim().is_empty() {
            issue(at("name"), "must not be empty".into());
        } else if !names.insert(w.name.as_str()) {
            issue(at("name"), format!("window '{}' is defined twice", w.name));
        }
        if w.services.is_empty() && w.matchers.is_empty() {
            issue(
                at("services"),
                "a window must name services or label matchers (or both), or it would silence everything".into(),
            );
        }
        for (j, s) in w.services.iter().enumerate() {
            if !services.contains(s.as_str()) {
                issue(
                    format!("maintenance[{i}].services[{j}]"),
                    format!("unknown service '{s}'; define it under [[services]]"),
                );
            }
        }
        for (j, m) in w.matchers.iter().enumerate() {
            if let Err(e) = crate::matchers::Matcher::parse_all(m) {
                issue(format!("maintenance[{i}].matchers[{j}]"), e);
            }
        }
        if let Err((key, message)) = w.times() {
            issue(at(key), message);
        }
    }
    issues
}
