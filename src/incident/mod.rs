//! Incidents: the state machine, dedup and grouping of alerts, the timeline.
//!
//! Pure: every function takes `now` and returns the changes as data
//! (the new state and the timeline events to append). The service writes
//! them in one transaction.

mod alert;
pub mod flapping;
mod severity;
mod suppression;
mod timeline;

pub use alert::{AlertAction, AlertEvent, AlertLink};
pub use flapping::{FlapState, Settled};
pub use severity::Severity;
pub use suppression::{AfterWindow, Suppression};
pub use timeline::{
    Actor, ChainError, ChainReport, TimelineEntry, TimelineEvent, UserRef, VerifyOptions, seal,
    verify_chain,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An incident's number, shown as `INC-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

/// An id that is neither a number nor `INC-n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an incident id; use a number or INC-<number>")]
pub struct BadIncidentId(pub String);

impl FromStr for IncidentId {
    type Err = BadIncidentId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let digits = match t.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("inc-") => &t[4..],
            _ => t,
        };
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(IncidentId(n)),
            _ => Err(BadIncidentId(s.to_string())),
        }
    }
}

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Open, nobody has taken it.
    Triggered,
    /// Someone is on it.
    Acknowledged,
    /// Over.
    Resolved,
}

impl Status {
    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Triggered => "triggered",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    /// Whether the incident is still open.
    pub fn is_open(self) -> bool {
        self != Self::Resolved
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "triggered" => Ok(Self::Triggered),
            "acknowledged" => Ok(Self::Acknowledged),
            "resolved" => Ok(Self::Resolved),
            other => Err(format!(
                "unknown status '{other}'; use triggered, acknowledged or resolved"
            )),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an alert inside an incident still fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Firing.
    Firing,
    /// Stopped firing.
    Resolved,
}

/// One alert grouped into an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Its summary as last received.
    pub summary: String,
    /// Where it comes from.
    pub source: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// Its severity, if the sender gave one.
    pub severity: Option<Severity>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The sender's extra details, as last received.
    pub details: serde_json::Value,
    /// Links as last received.
    pub links: Vec<AlertLink>,
    /// How many events concerned it.
    pub count: u64,
    /// First event.
    pub first_seen: DateTime<Utc>,
    /// Latest event.
    pub last_seen: DateTime<Utc>,
    /// When it resolves by itself unless its sender re-sends it (alerts
    /// pushed to `/api/v2/alerts`: `endsAt`, or `resolve_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Its number.
    pub id: IncidentId,
    /// A random id drawn when it opened, unique across stores: numbers
    /// repeat after a restore or a damaged store, this never does, so the
    /// idempotency keys of its pages never match an earlier incident's.
    /// Empty for incidents stored before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// What is wrong, from the first alert.
    pub title: String,
    /// The service it concerns.
    pub service: String,
    /// The escalation policy it pages, when a routing rule chose one
    /// instead of the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_policy: Option<String>,
    /// The integration that opened it.
    pub integration: String,
    /// Groups alerts into it while it is open.
    pub dedup_key: String,
    /// Current severity.
    pub severity: Severity,
    /// Current status.
    pub status: Status,
    /// When it opened.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// First acknowledgement.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged.
    pub acknowledged_by: Option<Actor>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved.
    pub resolved_by: Option<Actor>,
    /// Events received for it, of every alert.
    pub event_count: u64,
    /// Latest alert event.
    pub last_event_at: DateTime<Utc>,
    /// Its alerts, by fingerprint.
    pub alerts: BTreeMap<String, Alert>,
    /// How many of its group's alerts the sender's latest notification left
    /// out (Alertmanager's `truncatedAlerts` under `max_alerts`). While
    /// above 0 the incident does not resolve by itself: nobody can tell
    /// whether the left-out alerts still fire.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left_out_alerts: u64,
    /// A held resolve (see [`TimelineEvent::ResolveHeld`]) stands at this
    /// time unless a notification that still fires contradicts it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
    /// Alerts beyond [`MAX_TRACKED_ALERTS`] that joined it, counted but not
    /// tracked one by one; while above 0 only a resolve of the whole group
    /// (or a person) resolves it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub untracked_alerts: u64,
    /// The timer that resolves its alerts whose `expires_at` passes (the
    /// earliest of them), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<crate::escalation::Timer>,
    /// How many timeline entries it has (the next entry's `seq`).
    pub timeline_len: u64,
    /// Its escalation, if its service has a policy.
    #[serde(default)]
    pub escalation: Option<crate::escalation::EscalationState>,
    /// Who holds which role (`commander`, `comms`, `scribe`) by tocsin user name.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Its chat channels, by platform (`slack`, `discord`).
    #[serde(default)]
    pub chat: BTreeMap<String, ChatLink>,
    /// SHA-256 of the last timeline entry: the head of the audit chain.
    #[serde(default)]
    pub timeline_head: String,
    /// Whether this is a drill, not a real incident.
    #[serde(default)]
    pub drill: bool,
    /// The runbook attached to it and the progress through it.
    #[serde(default)]
    pub runbook: Option<crate::runbook::Progress>,
    /// Changes to its service in the day before it opened, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_changes: Vec<ServiceChange>,
    /// Its alert's recent fire/resolve changes and whether it is flapping,
    /// on a service with `flapping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap: Option<FlapState>,
    /// The maintenance window that holds (or held) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
    /// Whether its service's public status page shows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// Its latest stakeholder status updates, oldest first (at most
    /// [`KEPT_UPDATES`]; the timeline keeps every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<StatusUpdate>,
}

/// How many status updates an incident keeps for the status page.
pub const KEPT_UPDATES: usize = 20;

/// The longest status update, in characters.
pub const UPDATE_MAX: usize = 2000;

/// A status update for stakeholders: what is known, in words meant for
/// people outside the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// When it was posted.
    pub at: DateTime<Utc>,
    /// Who posted it.
    pub by: Actor,
    /// What it says.
    pub text: String,
}

/// A change to a service (a deploy, a config push), as a PagerDuty change
/// event tells it: shown on the service's incidents, "what changed before
/// it broke".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceChange {
    /// When it happened (the sender's timestamp, else when it arrived).
    pub at: DateTime<Utc>,
    /// What changed.
    pub summary: String,
    /// Where (the pipeline, the tool).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The integration that told tocsin.
    pub integration: String,
    /// Links (the build, the diff).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<AlertLink>,
    /// The sender's details (`custom_details`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ServiceChange {
    /// One line: time, summary, source.
    pub fn line(&self) -> String {
        let mut l = format!("{} {}", self.at.format("%Y-%m-%d %H:%M UTC"), self.summary);
        if !self.source.is_empty() {
            l.push_str(&format!(" ({})", self.source));
        }
        l
    }
}

/// How far back changes count as "recent" for a new incident.
pub const RECENT_CHANGES_WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// How many recent changes an incident shows.
pub const RECENT_CHANGES_SHOWN: usize = 5;

/// An incident's channel on one chat platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLink {
    /// The channel id.
    pub channel_id: String,
    /// Its name.
    pub channel_name: String,
    /// The incident card's message id (Slack `ts`, Discord snowflake).
    pub card_id: Option<String>,
    /// Whether the channel was archived.
    #[serde(default)]
    pub archived: bool,
}

/// A runbook progress command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunbookStep {
    /// Mark a step done.
    Done {
        /// The step id.
        step: String,
        /// The evidence or remark.
        note: Option<String>,
    },
    /// Skip a step.
    Skip {
        /// The step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// Move to the next phase.
    NextPhase,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How many alerts one incident tracks one by one; more are counted.
pub const MAX_TRACKED_ALERTS: usize = 2_000;

/// The severity given to incidents whose sender named none.
pub const DEFAULT_SEVERITY: Severity = Severity::Sev3;

/// A change to an incident, decided by the domain and written by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The incident after the change.
    pub incident: Incident,
    /// Timeline entries to append, in order.
    pub entries: Vec<TimelineEntry>,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentError {
    /// The incident is already resolved.
    #[error("{0} is already resolved")]
    AlreadyResolved(IncidentId),
    /// The incident is already acknowledged.
    #[error("{0} is already acknowledged")]
    AlreadyAcknowledged(IncidentId),
    /// Nothing to escalate to.
    #[error("{0}'s service has no escalation policy")]
    NoEscalationPolicy(IncidentId),
    /// The policy has no step after the current one.
    #[error("{0} is at the last step of its escalation policy")]
    NoFurtherStep(IncidentId),
    /// The command would change nothing.
    #[error("{0}")]
    Unchanged(String),
    /// A runbook command was refused.
    #[error(transparent)]
    Runbook(#[from] crate::runbook::RunbookCommandError),
}

impl Incident {
    /// Opens an incident from its first (trigger) event.
    pub fn open(
        id: IncidentId,
        service: &str,
        integration: &str,
        event: &AlertEvent,
        now: DateTime<Utc>,
    ) -> Change {
        Self::open_as(id, service, integration, event, now, None)
    }

    /// Opens an incident, recording `opened_by` (default: the integration)
    /// as the one who opened it.
    pub fn open_as(
        id: IncidentId,
        service: &str,
        integration: &str,
        event: &AlertEvent,
        now: DateTime<Utc>,
        opened_by: Option<Actor>,
    ) -> Change {
        let severity = event.severity.unwrap_or(DEFAULT_SEVERITY);
        let title = event
            .incident_title
            .clone()
            .unwrap_or_else(|| event.summary.clone());
        let mut incident = Incident {
            id,
            uid: uuid::Uuid::new_v4().simple().to_string(),
            title: title.clone(),
            service: service.to_string(),
            integration: integration.to_string(),
            dedup_key: event.dedup_key.clone(),
            severity,
            status: Status::Triggered,
            created_at: now,
            updated_at: now,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            event_count: 0,
            last_event_at: now,
            alerts: BTreeMap::new(),
            left_out_alerts: 0,
            held_until: None,
            untracked_alerts: 0,
            expiry: None,
            timeline_len: 0,
            escalation: None,
            roles: BTreeMap::new(),
            chat: BTreeMap::new(),
            timeline_head: String::new(),
            drill: false,
            runbook: None,
            recent_changes: Vec::new(),
            escalation_policy: None,
            flap: None,
            suppressed: None,
            public: false,
            updates: Vec::new(),
        };
        let actor = opened_by.unwrap_or_else(|| Actor::Integration(integration.to_string()));
        let mut entries = Vec::new();
        incident.push(
            &mut entries,
            now,
            actor.clone(),
            TimelineEvent::Opened { title, severity },
        );
        let more = incident.apply_alert(event, now);
        entries.extend(more.entries);
        Change {
            incident: more.incident,
            entries,
        }
    }

    /// Applies an alert event to this open incident: dedup, grouping,
    /// severity, and resolve once every alert has resolved.
    pub fn apply_alert(&self, event: &AlertEvent, now: DateTime<Utc>) -> Change {
        let mut incident = self.clone();
        let mut entries = Vec::new();
        incident.apply_alert_in(event, now, &mut entries);
        Change { incident, entries }
    }

    /// [`Incident::apply_alert`] in place, appending its timeline entries to
    /// `entries`: the service applies a request's events for one incident
    /// without copying a large group once per event.
    pub fn apply_alert_in(
        &mut self,
        event: &AlertEvent,
        now: DateTime<Utc>,
        entries: &mut Vec<TimelineEntry>,
    ) {
        let inc = self;
        let actor = Actor::Integration(inc.integration.clone());
        inc.event_count += 1;
        inc.last_event_at = now;
        inc.updated_at = now;
        if let Some(n) = event.left_out {
            inc.left_out_alerts = n;
            // A later notification of the group says what fires now.
            inc.held_until = None;
        }
        match event.action {
            AlertAction::Trigger => {
                let was_quiet = inc.firing_alerts() == 0 && inc.untracked_alerts == 0;
                let fp = event
                    .fingerprint
                    .clone()
                    .unwrap_or_else(|| event.dedup_key.clone());
                let full = inc.alerts.len() >= MAX_TRACKED_ALERTS;
                match inc.alerts.get_mut(&fp) {
                    Some(alert) => {
                        alert.count += 1;
                        alert.last_seen = now;
                        alert.summary = event.summary.clone();
                        alert.details = event.details.clone();
                        alert.links = event.links.clone();
                        alert.expires_at = event.expires_at;
                        if alert.state == AlertState::Resolved {
                            alert.state = AlertState::Firing;
                            inc.push(
                                entries,
                                now,
                                actor.clone(),
                                TimelineEvent::AlertRefired { fingerprint: fp },
                            );
                        }
                    }
                    None if full => {
                        // Beyond the cap an alert is counted, not tracked: a
                        // group this large is one outage, and one incident
                        // document must stay bounded.
                        inc.untracked_alerts += 1;
                        if inc.untracked_alerts == 1 {
                            inc.push(
                                entries,
                                now,
                                actor.clone(),
                                TimelineEvent::AlertsUntracked {
                                    tracked: MAX_TRACKED_ALERTS,
                                },
                            );
                        }
                    }
                    None => {
                        inc.alerts.insert(
                            fp.clone(),
                            Alert {
                                summary: event.summary.clone(),
                                source: event.source.clone(),
                                state: AlertState::Firing,
                                severity: event.severity,
                                labels: event.labels.clone(),
                                details: event.details.clone(),
                                links: event.links.clone(),
                                count: 1,
                                first_seen: now,
                                last_seen: now,
                                expires_at: event.expires_at,
                            },
                        );
                        inc.push(
                            entries,
                            now,
                            actor.clone(),
                            TimelineEvent::AlertReceived {
                                fingerprint: fp,
                                summary: event.summary.clone(),
                            },
                        );
                    }
                }
                if let Some(sev) = event.severity
                    && sev < inc.severity
                {
                    let from = inc.severity;
                    inc.severity = sev;
                    inc.push(
                        entries,
                        now,
                        actor.clone(),
                        TimelineEvent::SeverityChanged { from, to: sev },
                    );
                }
                inc.note_refire(was_quiet, now, entries);
            }
            AlertAction::Acknowledge => {
                if inc.status == Status::Triggered {
                    inc.status = Status::Acknowledged;
                    inc.acknowledged_at = Some(now);
                    inc.acknowledged_by = Some(actor.clone());
                    inc.push(entries, now, actor, TimelineEvent::Acknowledged);
                }
            }
            AlertAction::Resolve => {
                let was_firing = inc.firing_alerts() > 0 || inc.untracked_alerts > 0;
                let others_firing = |inc: &Incident, fp: &str| {
                    inc.alerts
                        .iter()
                        .any(|(k, a)| k != fp && a.state == AlertState::Firing)
                };
                match &event.fingerprint {
                    Some(fp) if inc.alerts.contains_key(fp) => {
                        let still_firing = others_firing(inc, fp);
                        let alert = inc.alerts.get_mut(fp).expect("checked above");
                        alert.count += 1;
                        alert.last_seen = now;
                        alert.details = event.details.clone();
                        let was_firing = alert.state == AlertState::Firing;
                        alert.state = AlertState::Resolved;
                        alert.expires_at = None;
                        // With other alerts still firing the incident stays
                        // open, so the alert's own resolve is worth a line;
                        // otherwise the incident's resolve says it all.
                        if was_firing && still_firing {
                            inc.push(
                                entries,
                                now,
                                actor.clone(),
                                TimelineEvent::AlertResolved {
                                    fingerprint: fp.clone(),
                                },
                            );
                        }
                    }
                    // An alert this incident never saw: nothing to resolve.
                    Some(_) => {}
                    // The whole incident, unless the sender left alerts out
                    // of the notification that says so.
                    None if inc.left_out_alerts > 0 => {
                        inc.held_until = event.expires_at;
                        inc.push(
                            entries,
                            now,
                            actor.clone(),
                            TimelineEvent::ResolveHeld {
                                left_out: inc.left_out_alerts,
                                until: event.expires_at,
                            },
                        );
                    }
                    None => {
                        for alert in inc.alerts.values_mut() {
                            alert.state = AlertState::Resolved;
                            alert.expires_at = None;
                        }
                        inc.untracked_alerts = 0;
                    }
                }
                let all_resolved = inc.alerts.values().all(|a| a.state == AlertState::Resolved);
                // A repeated resolve of a flapping incident's held resolve
                // is no new change.
                let repeat = inc.is_flapping() && !was_firing;
                if all_resolved && inc.left_out_alerts == 0 && inc.untracked_alerts == 0 && !repeat
                {
                    inc.alerts_resolved(entries, now, actor, None);
                }
            }
        }
    }

    /// Notes the service's changes shortly before `now` (newest first) on a
    /// new incident: on its card, its timeline and so its summary.
    pub fn note_recent_changes(
        &mut self,
        changes: &[ServiceChange],
        now: DateTime<Utc>,
        entries: &mut Vec<TimelineEntry>,
    ) {
        let recent: Vec<ServiceChange> = changes
            .iter()
            .filter(|c| c.at <= now && now - c.at <= RECENT_CHANGES_WINDOW)
            .take(RECENT_CHANGES_SHOWN)
            .cloned()
            .collect();
        if recent.is_empty() {
            return;
        }
        self.recent_changes = recent.clone();
        self.push(
            entries,
            now,
            Actor::System,
            TimelineEvent::RecentChanges { changes: recent },
        );
    }

    /// The earliest time one of its firing alerts expires, while it is open.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        if !self.status.is_open() {
            return None;
        }
        self.alerts
            .values()
            .filter(|a| a.state == AlertState::Firing)
            .filter_map(|a| a.expires_at)
            .chain(self.held_until)
            .min()
    }

    /// Resolves the firing alerts whose `expires_at` is not after `now` (their
    /// sender stopped re-sending them), and the incident if that was the
    /// last of them. `None` if none expired.
    pub fn expire(&self, now: DateTime<Utc>) -> Option<Change> {
        if !self.status.is_open() {
            return None;
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        let expired: Vec<String> = inc
            .alerts
            .iter()
            .filter(|(_, a)| {
                a.state == AlertState::Firing && a.expires_at.is_some_and(|t| t <= now)
            })
            .map(|(fp, _)| fp.clone())
            .collect();
        let held_ends = self.held_until.is_some_and(|t| t <= now);
        if expired.is_empty() && !held_ends {
            return None;
        }
        if held_ends {
            // No notification contradicted the group's resolve in time: the
            // left-out alerts resolved with the rest.
            inc.held_until = None;
            inc.left_out_alerts = 0;
            for alert in inc.alerts.values_mut() {
                alert.state = AlertState::Resolved;
                alert.expires_at = None;
            }
        }
        for fp in expired {
            let alert = inc.alerts.get_mut(&fp).expect("listed above");
            alert.state = AlertState::Resolved;
            let until = alert.expires_at.take().expect("filtered on it");
            inc.push(
                &mut entries,
                now,
                Actor::System,
                TimelineEvent::AlertExpired {
                    fingerprint: fp,
                    ends_at: until,
                },
            );
        }
        inc.updated_at = now;
        let all_resolved = inc.alerts.values().all(|a| a.state == AlertState::Resolved);
        if all_resolved && inc.left_out_alerts == 0 && inc.untracked_alerts == 0 {
            inc.alerts_resolved(
                &mut entries,
                now,
                Actor::System,
                Some(if held_ends {
                    "the group's resolve stood: no notification said its left-out alerts still fire"
                        .into()
                } else {
                    "every alert's endsAt passed without the sender re-sending it".into()
                }),
            );
        }
        Some(Change {
            incident: inc,
            entries,
        })
    }

    /// A person acknowledges.
    pub fn acknowledge(&self, by: Actor, now: DateTime<Utc>) -> Result<Change, IncidentError> {
        match self.status {
            Status::Resolved => Err(IncidentError::AlreadyResolved(self.id)),
            Status::Acknowledged => Err(IncidentError::AlreadyAcknowledged(self.id)),
            Status::Triggered => {
                let mut inc = self.clone();
                let mut entries = Vec::new();
                inc.status = Status::Acknowledged;
                inc.acknowledged_at = Some(now);
                inc.acknowledged_by = Some(by.clone());
                inc.updated_at = now;
                inc.push(&mut entries, now, by, TimelineEvent::Acknowledged);
                Ok(Change {
                    incident: inc,
                    entries,
                })
            }
        }
    }

    /// A person resolves, with an optional note.
    pub fn resolve(
        &self,
        by: Actor,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        if self.status == Status::Resolved {
            return Err(IncidentError::AlreadyResolved(self.id));
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        inc.close(&mut entries, now, by, note);
        // A person's word ends any flapping; a later re-fire is judged afresh.
        if let Some(f) = inc.flap.as_mut() {
            f.clear();
        }
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Pauses paging until `until`: the incident counts as acknowledged
    /// (by `by`, if nobody had) and triggers again when the snooze ends.
    pub fn snooze(
        &self,
        by: Actor,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        if self.status == Status::Resolved {
            return Err(IncidentError::AlreadyResolved(self.id));
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        if inc.status == Status::Triggered {
            inc.status = Status::Acknowledged;
            inc.acknowledged_at.get_or_insert(now);
            inc.acknowledged_by.get_or_insert(by.clone());
        }
        inc.updated_at = now;
        inc.push(&mut entries, now, by, TimelineEvent::Snoozed { until });
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// The snooze ended: triggered again, if still acknowledged.
    pub fn unsnooze(&self, now: DateTime<Utc>) -> Option<Change> {
        if self.status != Status::Acknowledged {
            return None;
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        inc.status = Status::Triggered;
        inc.updated_at = now;
        inc.push(&mut entries, now, Actor::System, TimelineEvent::SnoozeEnded);
        Some(Change {
            incident: inc,
            entries,
        })
    }

    /// A resolved incident's alert fires again within `reopen_within`: it
    /// is open (triggered, nobody on it) again, with a `reopened` entry;
    /// the caller applies the trigger and starts escalation again.
    pub fn reopen(&self, now: DateTime<Utc>) -> Result<Change, IncidentError> {
        let Some(resolved_at) = self.resolved_at.filter(|_| self.status == Status::Resolved) else {
            return Err(IncidentError::Unchanged(format!(
                "{} is not resolved",
                self.id
            )));
        };
        let mut inc = self.clone();
        let mut entries = Vec::new();
        inc.status = Status::Triggered;
        inc.resolved_at = None;
        inc.resolved_by = None;
        inc.acknowledged_at = None;
        inc.acknowledged_by = None;
        inc.updated_at = now;
        inc.push(
            &mut entries,
            now,
            Actor::System,
            TimelineEvent::Reopened { resolved_at },
        );
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Someone asks for the next escalation step now: the incident
    /// triggers again (it needs someone else) and the step runs.
    pub fn reopen_for_escalation(&self, now: DateTime<Utc>) -> Result<Incident, IncidentError> {
        if self.status == Status::Resolved {
            return Err(IncidentError::AlreadyResolved(self.id));
        }
        let mut inc = self.clone();
        inc.status = Status::Triggered;
        inc.updated_at = now;
        Ok(inc)
    }

    /// Changes the severity.
    pub fn set_severity(
        &self,
        to: Severity,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        if self.status == Status::Resolved {
            return Err(IncidentError::AlreadyResolved(self.id));
        }
        if self.severity == to {
            return Err(IncidentError::Unchanged(format!(
                "{} is already {to}",
                self.id
            )));
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        let from = inc.severity;
        inc.severity = to;
        inc.updated_at = now;
        inc.push(
            &mut entries,
            now,
            by,
            TimelineEvent::SeverityChanged { from, to },
        );
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Gives `user` a role (replacing whoever held it).
    pub fn assign_role(
        &self,
        role: &str,
        user: &str,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        if self.roles.get(role).map(String::as_str) == Some(user) {
            return Err(IncidentError::Unchanged(format!(
                "{user} is already {role} of {}",
                self.id
            )));
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        inc.roles.insert(role.to_string(), user.to_string());
        inc.updated_at = now;
        inc.push(
            &mut entries,
            now,
            by,
            TimelineEvent::RoleAssigned {
                role: role.to_string(),
                user: user.to_string(),
            },
        );
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Adds a note; a note starting with `action:` is an action item.
    pub fn add_note(&self, text: &str, by: Actor, now: DateTime<Utc>) -> Change {
        let mut inc = self.clone();
        let mut entries = Vec::new();
        let trimmed = text.trim();
        let event = match trimmed
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("action:"))
        {
            Some(_) => TimelineEvent::ActionItem {
                text: trimmed[7..].trim().to_string(),
            },
            None => TimelineEvent::Note {
                text: trimmed.to_string(),
            },
        };
        inc.push(&mut entries, now, by, event);
        Change {
            incident: inc,
            entries,
        }
    }

    /// Posts a status update for stakeholders: kept on the incident for the
    /// status page and recorded on the timeline.
    pub fn post_update(
        &self,
        text: &str,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IncidentError::Unchanged(
                "a status update needs some text".into(),
            ));
        }
        let chars = text.chars().count();
        if chars > UPDATE_MAX {
            return Err(IncidentError::Unchanged(format!(
                "a status update is at most {UPDATE_MAX} characters, this one has {chars}"
            )));
        }
        let mut inc = self.clone();
        inc.updates.push(StatusUpdate {
            at: now,
            by: by.clone(),
            text: text.to_string(),
        });
        if inc.updates.len() > KEPT_UPDATES {
            let extra = inc.updates.len() - KEPT_UPDATES;
            inc.updates.drain(..extra);
        }
        let mut entries = Vec::new();
        inc.push(
            &mut entries,
            now,
            by,
            TimelineEvent::StatusUpdate {
                text: text.to_string(),
            },
        );
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Shows it on (or hides it from) its service's public status page.
    pub fn set_public(
        &self,
        public: bool,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        if self.public == public {
            return Err(IncidentError::Unchanged(format!(
                "{} is already {} the status page",
                self.id,
                if public { "on" } else { "off" }
            )));
        }
        let mut inc = self.clone();
        inc.public = public;
        let mut entries = Vec::new();
        inc.push(&mut entries, now, by, TimelineEvent::Visibility { public });
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Attaches a runbook (replacing one nobody has started on).
    pub fn attach_runbook(
        &self,
        runbook: &crate::runbook::Runbook,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        if let Some(p) = &self.runbook {
            if p.runbook == runbook.name {
                return Err(IncidentError::Unchanged(format!(
                    "runbook {} is already attached to {}",
                    runbook.name, self.id
                )));
            }
            if !p.steps.is_empty() {
                return Err(IncidentError::Unchanged(format!(
                    "{} already has runbook {} under way",
                    self.id, p.runbook
                )));
            }
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        inc.runbook = Some(crate::runbook::Progress::start(runbook));
        inc.updated_at = now;
        inc.push(
            &mut entries,
            now,
            by,
            TimelineEvent::RunbookAttached {
                runbook: runbook.name.clone(),
                title: runbook.title.clone(),
            },
        );
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Runs a runbook command against the attached runbook's progress.
    pub fn runbook_step(
        &self,
        runbook: &crate::runbook::Runbook,
        command: RunbookStep,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, IncidentError> {
        use crate::runbook::RunbookCommandError as E;
        let mut inc = self.clone();
        let progress = inc.runbook.as_mut().ok_or(E::NoneAttached)?;
        if progress.runbook != runbook.name {
            return Err(E::Missing(progress.runbook.clone()).into());
        }
        let who = by.to_string();
        let event = match command {
            RunbookStep::Done { step, note } => {
                progress.done(runbook, &step, note.clone(), &who, now)?;
                TimelineEvent::StepDone {
                    step,
                    note: note.filter(|n| !n.trim().is_empty()),
                }
            }
            RunbookStep::Skip { step, reason } => {
                progress.skip(runbook, &step, &reason, &who, now)?;
                TimelineEvent::StepSkipped { step, reason }
            }
            RunbookStep::NextPhase => {
                let phase = progress.next_phase(runbook)?;
                TimelineEvent::PhaseStarted {
                    phase: phase.title.clone(),
                }
            }
        };
        let mut entries = Vec::new();
        inc.updated_at = now;
        inc.push(&mut entries, now, by, event);
        Ok(Change {
            incident: inc,
            entries,
        })
    }

    /// Appends a timeline entry to a change being built.
    pub fn record(
        &mut self,
        entries: &mut Vec<TimelineEntry>,
        at: DateTime<Utc>,
        actor: Actor,
        event: TimelineEvent,
    ) {
        self.push(entries, at, actor, event);
    }

    /// How many of its alerts still fire.
    pub fn firing_alerts(&self) -> usize {
        self.alerts
            .values()
            .filter(|a| a.state == AlertState::Firing)
            .count()
    }

    fn close(
        &mut self,
        entries: &mut Vec<TimelineEntry>,
        now: DateTime<Utc>,
        by: Actor,
        note: Option<String>,
    ) {
        self.status = Status::Resolved;
        self.resolved_at = Some(now);
        self.resolved_by = Some(by.clone());
        self.updated_at = now;
        self.push(entries, now, by, TimelineEvent::Resolved { note });
    }

    fn push(
        &mut self,
        entries: &mut Vec<TimelineEntry>,
        at: DateTime<Utc>,
        actor: Actor,
        event: TimelineEvent,
    ) {
        let entry = TimelineEntry {
            seq: self.timeline_len,
            at,
            actor,
            event,
            prev: std::mem::take(&mut self.timeline_head),
        };
        self.timeline_head = entry.digest();
        entries.push(entry);
        self.timeline_len += 1;
    }
}

#[cfg(test)]
mod tests;
