//! The normalised alert event: what every intake source is turned into,
//! and what an incident is opened from and grouped by. It lives with the
//! incident domain so intake's parsers point down at it.

use super::Severity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertAction {
    /// The alert is firing.
    Trigger,
    /// Someone (or something) acknowledged it at the source.
    Acknowledge,
    /// The alert stopped firing.
    Resolve,
}

/// A link attached to an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLink {
    /// The URL.
    pub href: String,
    /// Its caption.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// One normalised alert event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Groups events into one incident (within a service).
    pub dedup_key: String,
    /// Identifies the alert inside the incident; `None` on a resolve or
    /// acknowledge that concerns the whole incident.
    pub fingerprint: Option<String>,
    /// Trigger, acknowledge or resolve.
    pub action: AlertAction,
    /// One-line description of this alert.
    pub summary: String,
    /// Title for the incident if this event opens one (a group's summary);
    /// `summary` is used when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_title: Option<String>,
    /// Where the alert comes from (host, job, rule).
    pub source: String,
    /// Mapped severity, if the sender gave one.
    pub severity: Option<Severity>,
    /// Labels (Alertmanager, Prometheus, Grafana) or tags.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Anything else the sender said, kept as given.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Links (runbooks, dashboards, generator URLs).
    #[serde(default)]
    pub links: Vec<AlertLink>,
    /// For an event from a group notification (Alertmanager, Grafana): how
    /// many of the group's alerts the sender left out of it (Alertmanager's
    /// `truncatedAlerts`, under `max_alerts`). `None` for senders without
    /// groups. While the latest notification left alerts out, the incident
    /// does not resolve by itself: tocsin cannot know whether they fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<u64>,
    /// For senders that re-send firing alerts instead of resolving them
    /// (Alertmanager's API, `/api/v2/alerts`): the alert resolves by itself
    /// at this time unless an event refreshes it (its `endsAt`, or, when
    /// unset, now plus the integration's `resolve_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}
