//! Notifications: the outbox, delivery with retries, and the notifiers.
//!
//! A page is an [`OutboxEntry`] written in the same transaction as the
//! escalation step that caused it, keyed by an idempotency key that is
//! unique per incident, escalation run, round, step, recipient and contact
//! method: however many alerts arrive, a user gets one page per step. The
//! [`worker`] delivers due entries, records each attempt on the incident's
//! timeline, retries with exponential backoff and jitter (or the receiver's
//! `Retry-After`), and gives up after a deadline, moving on to the
//! recipient's next contact method.

pub mod email;
pub mod ntfy;
pub mod push;
pub mod twilio;
pub mod webhook;
pub mod worker;

use crate::config::{ContactKind, NotifyConfig};
use crate::escalation::Recipient;
use crate::incident::{IncidentId, Severity};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// What a page says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageContent {
    /// The incident.
    pub incident: IncidentId,
    /// Its title.
    pub title: String,
    /// Its severity when paged.
    pub severity: Severity,
    /// Its service.
    pub service: String,
    /// The escalation step, from 1.
    pub step: usize,
    /// The round, from 1.
    pub round: u32,
}

impl PageContent {
    /// One line for a log, an SMS-sized message or an email subject.
    pub fn headline(&self) -> String {
        format!(
            "[{}] {}: {} ({})",
            self.severity, self.incident, self.title, self.service
        )
    }
}

/// Where an entry is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for `due`.
    Pending,
    /// Delivered.
    Delivered {
        /// When.
        at: DateTime<Utc>,
    },
    /// Not sent: the incident was acknowledged or resolved first.
    Cancelled {
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
    /// Given up after the deadline or a permanent error.
    Failed {
        /// When.
        at: DateTime<Utc>,
    },
}

/// What an outbox entry does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// Page the recipient by the method.
    #[default]
    Page,
    /// Open the incident's channel (create, invite, topic, card).
    OpenChannel,
    /// Bring the incident card up to date.
    UpdateCard,
    /// Post a message in the incident channel.
    Post {
        /// The text (Markdown).
        text: String,
    },
    /// Post the post-incident summary in the incident channel.
    PostSummary,
    /// Archive the incident channel.
    Archive,
    /// Invite tocsin users (by name) into the incident channel: someone
    /// paged or given a role after it opened. Inviting a member is no error.
    Invite {
        /// The tocsin user names.
        users: Vec<String>,
    },
    /// Send a stakeholder status update: to the channel `channel` on the
    /// recipient's chat platform, or by email to a subscriber.
    StatusUpdate {
        /// The message, rendered for the recipient (the platform's markup,
        /// or an email's plain text).
        text: String,
        /// The status channel, for a chat recipient.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        channel: String,
        /// The email's subject, for a subscriber.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        subject: String,
    },
    /// Post a resolved incident's audit chain head to `[audit] webhook`.
    AuditHead {
        /// The chain head at resolve.
        head: String,
        /// How many entries it covers.
        entries: u64,
    },
}

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The idempotency key, also the store key.
    pub key: String,
    /// What to do.
    #[serde(flatten)]
    pub job: Job,
    /// The incident it is about.
    pub incident: IncidentId,
    /// Who it goes to.
    pub recipient: Recipient,
    /// How.
    pub method: ContactKind,
    /// Position of `method` in the user's contact methods.
    pub method_index: usize,
    /// What it says.
    pub page: PageContent,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it first came due; the give-up deadline counts from here.
    pub first_due: DateTime<Utc>,
    /// When the next attempt may run.
    pub due: DateTime<Utc>,
    /// Attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Where it is.
    pub state: DeliveryState,
    /// For a page: the escalation generation that queued it. A page of a
    /// generation that has since been stopped (acknowledged or snoozed, then
    /// escalating again) is cancelled, not sent beside the new run's pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// The incident's [`uid`](crate::incident::Incident::uid), carried in
    /// the key receivers see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incident_uid: String,
}

impl OutboxEntry {
    /// The idempotency key receivers and chat platforms see: the store key
    /// and the incident's uid. Incident numbers repeat after a restore or a
    /// damaged store; with the uid, a new incident's pages never carry the
    /// key of a page delivered before, while a restored incident's pages
    /// keep theirs (so a receiver drops the ones it already has).
    pub fn external_key(&self) -> String {
        if self.incident_uid.is_empty() {
            self.key.clone()
        } else {
            format!("{}/{}", self.key, self.incident_uid)
        }
    }

    /// This entry as adapters see it: keyed with [`external_key`](Self::external_key).
    pub fn for_delivery(&self) -> Self {
        Self {
            key: self.external_key(),
            ..self.clone()
        }
    }

    /// The chat platform that carries it: a channel job's, or a chat page's.
    pub fn chat_platform(&self) -> Option<&str> {
        match &self.recipient {
            Recipient::Channel(p) => Some(p.as_str()),
            _ => self.method.chat_platform(),
        }
    }
}

/// Delivers a page by the `log` contact method: one WARN line (target
/// `tocsin::page`), keyed as adapters see the entry (see
/// [`OutboxEntry::for_delivery`]).
pub fn log_page(entry: &OutboxEntry, user: &str) {
    tracing::warn!(target: "tocsin::page", user = %user, incident = %entry.incident, key = %entry.key, "PAGE {}", entry.page.headline());
}

/// The idempotency key of a chat job on `platform` (one per kind: a
/// pending card update absorbs the next).
pub fn chat_key(incident: IncidentId, platform: &str, what: &str) -> String {
    format!("{incident}/chat/{platform}/{what}")
}

/// The idempotency key of a page.
pub fn page_key(
    incident: IncidentId,
    generation: u32,
    round: u32,
    step: usize,
    recipient: &Recipient,
    method_index: usize,
) -> String {
    let who = match recipient {
        Recipient::User(u) => format!("user:{u}"),
        Recipient::Webhook(w) => format!("webhook:{w}"),
        Recipient::Channel(p) => format!("channel:{p}"),
        Recipient::Subscriber(a) => format!("subscriber:{a}"),
    };
    format!("{incident}/g{generation}/r{round}/s{step}/{who}/m{method_index}")
}

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What went wrong, safe to show (no secrets).
    pub message: String,
    /// Whether trying again may help.
    pub retryable: bool,
    /// The receiver's `Retry-After`, if it sent one.
    pub retry_after: Option<std::time::Duration>,
}

impl DeliveryError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that retrying will not fix (bad address, 4xx).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Stop trying.
    GiveUp,
}

/// Decides the next attempt after the `attempts`th failure at `now`.
/// `jitter` is in `[0, 1)`: it spreads retries by ±20% so receivers that
/// come back are not hit by every sender at once.
pub fn after_failure(
    entry: &OutboxEntry,
    err: &DeliveryError,
    now: DateTime<Utc>,
    cfg: &NotifyConfig,
    jitter: f64,
) -> AfterFailure {
    let deadline = entry.first_due + to_chrono(cfg.give_up_after);
    if !err.retryable || now >= deadline {
        return AfterFailure::GiveUp;
    }
    let delay = match err.retry_after {
        Some(d) => to_chrono(d),
        None => {
            let exp = entry.attempts.saturating_sub(1).min(30);
            let base = cfg.initial_backoff.as_secs_f64() * 2f64.powi(exp as i32);
            let capped = base.min(cfg.max_backoff.as_secs_f64());
            let spread = capped * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
            Duration::milliseconds((spread * 1000.0) as i64)
        }
    };
    let at = now + delay;
    if at > deadline {
        // One last try at the deadline rather than none.
        AfterFailure::RetryAt(deadline.max(now))
    } else {
        AfterFailure::RetryAt(at)
    }
}

fn to_chrono(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(attempts: u32) -> OutboxEntry {
        OutboxEntry {
            generation: None,
            key: "k".into(),
            job: Job::Page,
            incident: IncidentId(1),
            recipient: Recipient::User("alice".into()),
            method: ContactKind::Webhook,
            method_index: 0,
            incident_uid: String::new(),
            page: PageContent {
                incident: IncidentId(1),
                title: "t".into(),
                severity: Severity::Sev1,
                service: "api".into(),
                step: 1,
                round: 1,
            },
            created_at: t0(),
            first_due: t0(),
            due: t0(),
            attempts,
            last_error: None,
            state: DeliveryState::Pending,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let cfg = NotifyConfig::default();
        let err = DeliveryError::retryable("500");
        let at = |attempts, jitter| match after_failure(&entry(attempts), &err, t0(), &cfg, jitter)
        {
            AfterFailure::RetryAt(at) => (at - t0()).num_milliseconds(),
            AfterFailure::GiveUp => -1,
        };
        assert_eq!(at(1, 0.5), 1000);
        assert_eq!(at(2, 0.5), 2000);
        assert_eq!(at(3, 0.0), 3200);
        assert_eq!(at(3, 0.999_999), 4799);
        assert_eq!(at(20, 0.5), 300_000);
    }

    #[test]
    fn retry_after_wins_and_deadline_ends_it() {
        let cfg = NotifyConfig::default();
        let mut err = DeliveryError::retryable("429");
        err.retry_after = Some(std::time::Duration::from_secs(7));
        assert_eq!(
            after_failure(&entry(1), &err, t0(), &cfg, 0.5),
            AfterFailure::RetryAt(t0() + Duration::seconds(7))
        );
        let late = t0() + Duration::minutes(10);
        assert_eq!(
            after_failure(&entry(9), &err, late, &cfg, 0.5),
            AfterFailure::GiveUp
        );
        let nearly = t0() + Duration::seconds(598);
        assert_eq!(
            after_failure(&entry(9), &err, nearly, &cfg, 0.5),
            AfterFailure::RetryAt(t0() + Duration::minutes(10))
        );
        assert_eq!(
            after_failure(&entry(1), &DeliveryError::permanent("404"), t0(), &cfg, 0.5),
            AfterFailure::GiveUp
        );
    }
}
