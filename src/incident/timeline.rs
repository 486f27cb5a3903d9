//! The typed incident timeline.

use super::Severity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    /// tocsin itself (timers, grouping).
    System,
    /// An alert sender, by integration name.
    Integration(String),
    /// A person, by tocsin user name (or the API caller's label).
    User(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("tocsin"),
            Self::Integration(n) => write!(f, "integration {n}"),
            Self::User(n) => f.write_str(n),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// The incident was opened by its first alert.
    Opened {
        /// The incident title.
        title: String,
        /// Its severity at opening.
        severity: Severity,
    },
    /// A new alert joined the incident.
    AlertReceived {
        /// The alert's fingerprint.
        fingerprint: String,
        /// The alert's summary.
        summary: String,
    },
    /// An alert stopped firing.
    AlertResolved {
        /// The alert's fingerprint.
        fingerprint: String,
    },
    /// An alert that had resolved fires again.
    AlertRefired {
        /// The alert's fingerprint.
        fingerprint: String,
    },
    /// The severity changed.
    SeverityChanged {
        /// Before.
        from: Severity,
        /// After.
        to: Severity,
    },
    /// Someone took the incident.
    Acknowledged,
    /// The incident is over.
    Resolved {
        /// Why, or how, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A free-text note.
    Note {
        /// The text.
        text: String,
    },
    /// Someone took a role.
    RoleAssigned {
        /// The role.
        role: String,
        /// The tocsin user.
        user: String,
    },
    /// A follow-up to do after the incident.
    ActionItem {
        /// What to do.
        text: String,
    },
    /// tocsin opened the incident's chat channel.
    ChannelOpened {
        /// `slack` or `discord`.
        platform: String,
        /// The channel's name.
        channel: String,
    },
    /// An escalation step ran.
    EscalationStep {
        /// The policy.
        policy: String,
        /// The step, from 1.
        step: usize,
        /// The round, from 1.
        round: u32,
        /// Who and what it notified.
        notified: Vec<String>,
    },
    /// A step targeted a schedule that nobody covers right now.
    NobodyOnCall {
        /// The schedule.
        schedule: String,
    },
    /// The policy ran out with nobody acknowledging.
    EscalationExhausted {
        /// The policy.
        policy: String,
    },
    /// Paging paused until `until`.
    Snoozed {
        /// When it triggers again.
        until: DateTime<Utc>,
    },
    /// The snooze ended; the incident triggers again.
    SnoozeEnded,
    /// A notification was delivered.
    Paged {
        /// Who or what.
        recipient: String,
        /// How.
        method: String,
        /// After how many attempts.
        attempts: u32,
    },
    /// A delivery attempt failed; it will be retried.
    DeliveryRetry {
        /// Who or what.
        recipient: String,
        /// How.
        method: String,
        /// Which attempt failed.
        attempt: u32,
        /// Why.
        error: String,
        /// The next try.
        retry_at: DateTime<Utc>,
    },
    /// tocsin gave up on a delivery.
    DeliveryFailed {
        /// Who or what.
        recipient: String,
        /// How.
        method: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

impl TimelineEvent {
    /// One readable line, for the CLI and summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Opened { title, severity } => format!("Opened as {severity}: {title}"),
            Self::AlertReceived { summary, .. } => format!("Alert received: {summary}"),
            Self::AlertResolved { fingerprint } => format!("Alert {fingerprint} resolved"),
            Self::AlertRefired { fingerprint } => format!("Alert {fingerprint} fired again"),
            Self::SeverityChanged { from, to } => format!("Severity changed from {from} to {to}"),
            Self::Acknowledged => "Acknowledged".into(),
            Self::Resolved { note: Some(n) } => format!("Resolved: {n}"),
            Self::Resolved { note: None } => "Resolved".into(),
            Self::Note { text } => format!("Note: {text}"),
            Self::RoleAssigned { role, user } => format!("{user} is {role}"),
            Self::ActionItem { text } => format!("Action item: {text}"),
            Self::ChannelOpened { platform, channel } => {
                format!("Opened {platform} channel #{channel}")
            }
            Self::EscalationStep {
                policy,
                step,
                round,
                notified,
            } => {
                let who = if notified.is_empty() {
                    "nobody".to_string()
                } else {
                    notified.join(", ")
                };
                format!("Escalation {policy} step {step} (round {round}): notified {who}")
            }
            Self::NobodyOnCall { schedule } => format!("Nobody is on call for {schedule}"),
            Self::EscalationExhausted { policy } => {
                format!("Escalation {policy} exhausted: nobody acknowledged")
            }
            Self::Snoozed { until } => {
                format!("Snoozed until {}", until.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            Self::SnoozeEnded => "Snooze ended; triggered again".into(),
            Self::Paged {
                recipient,
                method,
                attempts,
            } => {
                if *attempts > 1 {
                    format!("Paged {recipient} by {method} (after {attempts} attempts)")
                } else {
                    format!("Paged {recipient} by {method}")
                }
            }
            Self::DeliveryRetry {
                recipient,
                method,
                attempt,
                error,
                retry_at,
            } => format!(
                "Paging {recipient} by {method} failed (attempt {attempt}: {error}); retrying at {}",
                retry_at.format("%H:%M:%S UTC")
            ),
            Self::DeliveryFailed {
                recipient,
                method,
                attempts,
                error,
            } => {
                format!("GAVE UP paging {recipient} by {method} after {attempts} attempts: {error}")
            }
        }
    }
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Position in the incident's timeline, from 0.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    #[serde(flatten)]
    pub event: TimelineEvent,
}
