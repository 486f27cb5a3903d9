//! Chat: the platform-neutral core that Slack and Discord plug into.
//!
//! - [`access`]: who may do what to an incident from chat.
//! - [`command`]: the `/incident`, `/oncall`, `/page` language, parsed once
//!   for every platform.
//! - [`handler`]: carries out a parsed command for a verified platform user,
//!   through the [`Service`](crate::service::Service), and says what to reply.
//! - [`ChatPlatform`]: what an adapter does (channels, messages, DMs);
//!   [`deliver`] runs the outbox's chat jobs through it.
//! - [`replay`]: remembers signed requests for the replay window, so one
//!   captured request cannot act twice.
//! - [`slack`]: the Slack adapter.
//! - [`discord`]: the Discord adapter.

pub mod access;
pub mod command;
pub mod deliver;
pub mod discord;
pub mod handler;
#[cfg(test)]
mod proptests;
pub mod replay;
pub mod slack;

use crate::incident::{Incident, IncidentId, Severity, Status};
use crate::notify::{DeliveryError, PageContent};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so platforms can sit behind `dyn ChatPlatform`.
pub type ChatFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DeliveryError>> + Send + 'a>>;

/// A channel a platform created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRef {
    /// Its id.
    pub id: String,
    /// Its name (possibly with a suffix the platform needed).
    pub name: String,
}

/// The buttons a message can carry; each names the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Button {
    /// Acknowledge.
    Ack,
    /// Resolve.
    Resolve,
    /// Escalate.
    Escalate,
    /// Show the runbook.
    Runbook,
    /// Mark a runbook step done (the step id travels with the button).
    StepDone,
    /// Move to the runbook's next phase.
    PhaseNext,
}

impl Button {
    /// The action id carried by the button (and parsed back on a press).
    pub fn action_id(self) -> &'static str {
        match self {
            Self::Ack => "tocsin_ack",
            Self::Resolve => "tocsin_resolve",
            Self::Escalate => "tocsin_escalate",
            Self::Runbook => "tocsin_runbook",
            Self::StepDone => "tocsin_step_done",
            Self::PhaseNext => "tocsin_phase_next",
        }
    }

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ack => "Acknowledge",
            Self::Resolve => "Resolve",
            Self::Escalate => "Escalate",
            Self::Runbook => "Runbook",
            Self::StepDone => "Done",
            Self::PhaseNext => "Next phase",
        }
    }

    /// The button for an action id.
    pub fn from_action_id(id: &str) -> Option<Self> {
        [
            Self::Ack,
            Self::Resolve,
            Self::Escalate,
            Self::Runbook,
            Self::StepDone,
            Self::PhaseNext,
        ]
        .into_iter()
        .find(|b| b.action_id() == id)
    }
}

pub use crate::markup::is_unsafe_char;

/// What the incident card shows; each platform renders it its own way.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CardView {
    /// The incident.
    pub id: IncidentId,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Service.
    pub service: String,
    /// Status.
    pub status: Status,
    /// Who is on call for it now (platform mentions where known).
    pub on_call: Vec<String>,
    /// Roles, as `role: who`.
    pub roles: Vec<(String, String)>,
    /// Alerts firing / in all.
    pub alerts: (usize, usize),
    /// Buttons that make sense in this status.
    pub buttons: Vec<Button>,
    /// Changes to the service shortly before it opened, one line each.
    pub changes: Vec<String>,
    /// "flapping: 5 changes in 30m" while it flaps.
    pub flapping: Option<String>,
    /// The maintenance window that held it ("suppressed by maintenance
    /// window NAME ..."), if one did.
    pub maintenance: Option<String>,
}

impl CardView {
    /// The card of `incident`; `on_call` already rendered as mentions.
    pub fn of(incident: &Incident, on_call: Vec<String>, roles: Vec<(String, String)>) -> Self {
        let buttons = buttons_for(incident.status);
        Self {
            id: incident.id,
            title: incident.title.clone(),
            severity: incident.severity,
            service: incident.service.clone(),
            status: incident.status,
            on_call,
            roles,
            alerts: (incident.firing_alerts(), incident.alerts.len()),
            buttons,
            changes: incident
                .recent_changes
                .iter()
                .map(crate::incident::ServiceChange::line)
                .collect(),
            flapping: incident.flapping_line(),
            maintenance: incident.suppressed.as_ref().map(|s| s.line()),
        }
    }

    /// One line for notifications and channel topics.
    pub fn headline(&self) -> String {
        format!(
            "[{}] {}: {} ({})",
            self.severity, self.id, self.title, self.service
        )
    }
}

/// The card's buttons in a status: nothing to press once resolved.
pub fn buttons_for(status: Status) -> Vec<Button> {
    match status {
        Status::Triggered => vec![
            Button::Ack,
            Button::Resolve,
            Button::Escalate,
            Button::Runbook,
        ],
        Status::Acknowledged => vec![Button::Resolve, Button::Escalate, Button::Runbook],
        Status::Resolved => vec![],
    }
}

/// A card for rendering tests: INC-42, SEV1, with one person paged and a
/// commander, named by the platform's mentions.
#[cfg(test)]
pub(crate) fn sample_card(status: Status, paged: &str, commander: &str) -> CardView {
    CardView {
        id: IncidentId(42),
        title: "API error rate above 5%".into(),
        severity: Severity::Sev1,
        service: "api".into(),
        status,
        on_call: vec![paged.into()],
        roles: vec![("commander".into(), commander.into())],
        alerts: (2, 3),
        buttons: buttons_for(status),
        changes: vec![],
        flapping: None,
        maintenance: None,
    }
}

/// A message to post.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    /// The incident card.
    Card(CardView),
    /// A page to a person, with Acknowledge and Resolve buttons.
    Page(PageContent),
    /// Plain text (Markdown).
    Text(String),
    /// A post-incident summary: each platform shows its key figures its
    /// own way and carries the whole of it (as a file where it is long).
    Summary(SummaryPost),
}

/// A post-incident summary as a chat platform posts it.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryPost {
    /// The incident.
    pub id: IncidentId,
    /// Its title (raw: each platform escapes it).
    pub title: String,
    /// Its status word, like `resolved`.
    pub status: String,
    /// Time to resolve, in seconds, once resolved.
    pub duration_seconds: Option<i64>,
    /// Distinct alerts.
    pub alerts: usize,
    /// Alert events received.
    pub events: u64,
    /// Who acknowledged it first (raw).
    pub acknowledged_by: Option<String>,
    /// Who resolved it (raw).
    pub resolved_by: Option<String>,
    /// The first timeline lines, raw: what happened first.
    pub first_lines: Vec<String>,
    /// The whole summary rendered for the platform (its markup, values
    /// escaped): what a short summary is posted as.
    pub text: String,
    /// The whole summary as plain Markdown: the file a long one carries.
    pub markdown: String,
}

/// Timeline lines a summary card shows.
pub const SUMMARY_FIRST_LINES: usize = 5;

impl SummaryPost {
    /// The post of incident `id`'s `summary`, with its renderings for the
    /// platform (`text`) and as plain Markdown (`markdown`).
    pub fn of(
        id: IncidentId,
        summary: &crate::summary::Summary,
        text: String,
        markdown: String,
    ) -> Self {
        Self {
            id,
            title: summary.title.clone(),
            status: summary.status.clone(),
            duration_seconds: summary.ttr_seconds,
            alerts: summary.alert_count,
            events: summary.event_count,
            acknowledged_by: summary.acknowledged_by.clone(),
            resolved_by: summary.resolved_by.clone(),
            first_lines: summary
                .timeline
                .iter()
                .take(SUMMARY_FIRST_LINES)
                .map(|l| format!("{} {}: {}", l.at.format("%H:%M:%S"), l.actor, l.text))
                .collect(),
            text,
            markdown,
        }
    }

    /// The name of the file that carries the whole summary.
    pub fn filename(&self) -> String {
        format!("summary-{}.md", self.id)
    }

    /// The key figures, as (name, value, whether the value came from
    /// outside and needs escaping) triples; tocsin's own figures are
    /// shown as they are.
    pub fn figures(&self) -> Vec<(&'static str, String, bool)> {
        vec![
            ("Status", self.status.clone(), false),
            (
                "Duration",
                self.duration_seconds
                    .map_or_else(|| "—".to_string(), crate::templates::human_duration),
                false,
            ),
            (
                "Alerts",
                format!("{} alert(s), {} event(s)", self.alerts, self.events),
                false,
            ),
            (
                "Acknowledged by",
                self.acknowledged_by
                    .clone()
                    .unwrap_or_else(|| "nobody".into()),
                true,
            ),
            (
                "Resolved by",
                self.resolved_by.clone().unwrap_or_else(|| "nobody".into()),
                true,
            ),
        ]
    }
}

/// A user a platform would not invite into a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteFailure {
    /// The platform user id.
    pub user: String,
    /// The platform's reason, like `user_not_found`.
    pub error: String,
}

/// What a chat adapter can do. Every call reports failures as a
/// [`DeliveryError`] that knows whether a retry may help (and how long the
/// platform asked to wait).
pub trait ChatPlatform: Send + Sync + 'static {
    /// `slack` or `discord`.
    fn name(&self) -> &'static str;
    /// Creates a channel named `name` (adding a suffix if it is taken);
    /// a `private` one is seen only by tocsin and whoever it invites.
    fn create_channel<'a>(&'a self, name: &'a str, private: bool) -> ChatFuture<'a, ChannelRef>;
    /// Invites platform users into a channel.
    fn invite<'a>(&'a self, channel: &'a str, users: &'a [String]) -> ChatFuture<'a, ()>;
    /// Invites every user the platform will take: one it refuses (a stale
    /// id) comes back with the platform's reason instead of failing the
    /// whole invite, so the channel's setup goes on. By default, [`invite`]
    /// (all or nothing).
    ///
    /// [`invite`]: ChatPlatform::invite
    fn invite_each<'a>(
        &'a self,
        channel: &'a str,
        users: &'a [String],
    ) -> ChatFuture<'a, Vec<InviteFailure>> {
        Box::pin(async move { self.invite(channel, users).await.map(|()| Vec::new()) })
    }
    /// Sets the channel topic.
    fn set_topic<'a>(&'a self, channel: &'a str, topic: &'a str) -> ChatFuture<'a, ()>;
    /// Posts a message; returns its id.
    fn post<'a>(&'a self, channel: &'a str, message: &'a ChatMessage) -> ChatFuture<'a, String>;
    /// Posts a message as the outbox job `idempotency_key`, each piece of a
    /// message the platform splits (a long summary) at most once: a retry
    /// after a failed piece resumes at that piece instead of the first. By
    /// default, [`post`](ChatPlatform::post).
    fn post_once<'a>(
        &'a self,
        channel: &'a str,
        message: &'a ChatMessage,
        idempotency_key: &'a str,
    ) -> ChatFuture<'a, String> {
        let _ = idempotency_key;
        self.post(channel, message)
    }
    /// Replaces a message.
    fn update<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        message: &'a ChatMessage,
    ) -> ChatFuture<'a, ()>;
    /// Sends a direct message to a platform user; `idempotency_key` lets a
    /// retry find a message that was sent before a crash instead of sending
    /// it twice.
    fn send_dm<'a>(
        &'a self,
        user: &'a str,
        message: &'a ChatMessage,
        idempotency_key: &'a str,
    ) -> ChatFuture<'a, String>;
    /// Archives (or locks) a channel.
    fn archive<'a>(&'a self, channel: &'a str) -> ChatFuture<'a, ()>;
}

/// A channel name for an incident: `inc-42-api-error-rate`, lowercase,
/// at most 80 characters (Slack's limit; Discord allows 100).
pub fn channel_name(prefix: &str, incident: &Incident) -> String {
    let mut slug = String::new();
    for c in incident.title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let mut name = format!("{prefix}-{}", incident.id.0);
    if !slug.is_empty() {
        name.push('-');
        name.push_str(slug);
    }
    name.truncate(80);
    name.trim_end_matches('-').to_string()
}
