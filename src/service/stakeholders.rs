//! Stakeholder updates: a status update posted on an incident goes, in the
//! transaction that records it, to the outbox for the service's status
//! channel on each chat platform and for each email subscriber; and the
//! public status page's view of the open incidents.

use super::{Service, ServiceError};
use crate::config::{ContactKind, ServiceConfig};
use crate::escalation::Recipient;
use crate::incident::{
    Actor, Incident, IncidentId, Severity, Status, TimelineEntry, TimelineEvent,
};
use crate::notify::{DeliveryState, Job, OutboxEntry, PageContent};
use crate::store::{StoreError, Tx};
use crate::templates::Markup;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{Instrument, info_span};

/// Where a status update was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct UpdateSent {
    /// Status channels it goes to.
    pub channels: usize,
    /// Email subscribers it goes to.
    pub subscribers: usize,
    /// Whether it was held back because the incident is a drill.
    pub drill: bool,
}

impl UpdateSent {
    /// `" (to 1 channel and 2 subscribers)"`, for a reply.
    pub fn describe(&self) -> String {
        if self.drill {
            return " (a drill: recorded, not sent to stakeholders)".into();
        }
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        match (self.channels, self.subscribers) {
            (0, 0) => " (its service has no status_channel or subscribers: recorded only)".into(),
            (c, 0) => format!(" (to {})", plural(c, "status channel", "status channels")),
            (0, s) => format!(" (to {})", plural(s, "subscriber", "subscribers")),
            (c, s) => format!(
                " (to {} and {})",
                plural(c, "status channel", "status channels"),
                plural(s, "subscriber", "subscribers")
            ),
        }
    }
}

/// An incident as the public status page shows it: no alerts, labels,
/// notes, people or timeline, only what stakeholders were told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicIncident {
    /// Its number.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its service.
    pub service: String,
    /// Its severity.
    pub severity: Severity,
    /// Its status.
    pub status: Status,
    /// When it opened.
    pub started_at: DateTime<Utc>,
    /// Its status updates, newest first, without who posted them.
    pub updates: Vec<PublicUpdate>,
}

/// A status update as the public page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicUpdate {
    /// When it was posted.
    pub at: DateTime<Utc>,
    /// What it says.
    pub text: String,
}

impl PublicIncident {
    fn of(inc: &Incident) -> Self {
        Self {
            id: inc.id.to_string(),
            title: inc.title.clone(),
            service: inc.service.clone(),
            severity: inc.severity,
            status: inc.status,
            started_at: inc.created_at,
            updates: inc
                .updates
                .iter()
                .rev()
                .map(|u| PublicUpdate {
                    at: u.at,
                    text: u.text.clone(),
                })
                .collect(),
        }
    }
}

/// The most incidents the status page lists.
pub const STATUS_PAGE_MAX: usize = 100;

/// The message a status channel gets, in `markup`: a bold heading naming
/// the incident, its severity and status, then the update.
pub fn update_message(markup: Markup, inc: &Incident, text: &str) -> String {
    let heading = markup.escape(&format!(
        "Status update: {} {} ({}, {})",
        inc.id, inc.title, inc.severity, inc.status
    ));
    let heading = match markup {
        Markup::Slack => format!("*{heading}*"),
        Markup::Discord => format!("**{heading}**"),
        Markup::Plain => heading,
    };
    format!("{heading}\n{}", markup.escape(text))
}

/// The subject of a status update email.
pub fn update_subject(inc: &Incident) -> String {
    format!("[{}] Update on {}: {}", inc.severity, inc.id, inc.title)
}

/// The body of a status update email.
pub fn update_email(inc: &Incident, update: &str, at: DateTime<Utc>) -> String {
    format!(
        "{update}\n\n--\n{}: {}\nService: {}\nSeverity: {}, status: {}\nPosted {}\n\nYou get this because you are subscribed to status updates for {}.\n",
        inc.id,
        inc.title,
        inc.service,
        inc.severity,
        inc.status,
        at.format("%Y-%m-%d %H:%M UTC"),
        inc.service,
    )
}

impl Service {
    fn service_config(&self, name: &str) -> Option<&ServiceConfig> {
        self.directory
            .config
            .services
            .iter()
            .find(|s| s.name == name)
    }

    /// Posts a status update on an incident: recorded on its timeline,
    /// kept for the status page, and queued (in the same transaction) for
    /// its service's status channels and email subscribers.
    pub async fn post_update(
        &self,
        id: IncidentId,
        text: &str,
        by: Actor,
    ) -> Result<(Incident, UpdateSent), ServiceError> {
        let now = self.clock.now();
        let text = text.to_string();
        let inc = self
            .change(id, move |_, inc| {
                Ok(inc.post_update(&text, by.clone(), now)?)
            })
            .instrument(info_span!("incident", incident = %id))
            .await?;
        let sent = self.audience(&inc);
        Ok((inc, sent))
    }

    /// Shows an incident on its service's public status page, or takes it
    /// off. Also says whether its service is on the status page at all.
    pub async fn set_public(
        &self,
        id: IncidentId,
        public: bool,
        by: Actor,
    ) -> Result<(Incident, bool), ServiceError> {
        let now = self.clock.now();
        let inc = self
            .change(id, move |_, inc| {
                Ok(inc.set_public(public, by.clone(), now)?)
            })
            .instrument(info_span!("incident", incident = %id))
            .await?;
        let shown = self
            .service_config(&inc.service)
            .is_some_and(|s| s.public && !s.private);
        Ok((inc, shown))
    }

    /// Who a status update on `inc` reaches.
    fn audience(&self, inc: &Incident) -> UpdateSent {
        if inc.drill {
            return UpdateSent {
                drill: true,
                ..UpdateSent::default()
            };
        }
        let Some(svc) = self.service_config(&inc.service) else {
            return UpdateSent::default();
        };
        let platforms = self.chat_platforms();
        UpdateSent {
            channels: svc.status_channel.as_ref().map_or(0, |c| {
                platforms
                    .iter()
                    .filter(|p| c.on(p, &platforms).is_some())
                    .count()
            }),
            subscribers: svc.subscribers.len(),
            drill: false,
        }
    }

    /// Queues the stakeholder deliveries of the status updates among
    /// `entries` (a drill's stay on its timeline).
    pub(super) fn queue_stakeholders(
        &self,
        tx: &mut dyn Tx,
        inc: &Incident,
        entries: &[TimelineEntry],
    ) -> Result<(), StoreError> {
        if inc.drill {
            return Ok(());
        }
        let Some(svc) = self.service_config(&inc.service) else {
            return Ok(());
        };
        let platforms = self.chat_platforms();
        for e in entries {
            let TimelineEvent::StatusUpdate { text } = &e.event else {
                continue;
            };
            if let Some(channels) = &svc.status_channel {
                for p in &platforms {
                    if let Some(channel) = channels.on(p, &platforms) {
                        tx.put_outbox(&job_entry(
                            inc,
                            format!("{}/update/{}/chat/{p}", inc.id, e.seq),
                            Recipient::Channel(p.to_string()),
                            ContactKind::of_chat_platform(p).unwrap_or(ContactKind::Slack),
                            Job::StatusUpdate {
                                text: update_message(Markup::of_platform(p), inc, text),
                                channel: channel.to_string(),
                                subject: String::new(),
                            },
                            e.at,
                            e.at,
                        ))?;
                    }
                }
            }
            for (j, addr) in svc.subscribers.iter().enumerate() {
                tx.put_outbox(&job_entry(
                    inc,
                    format!("{}/update/{}/email/{j}", inc.id, e.seq),
                    Recipient::Subscriber(addr.clone()),
                    ContactKind::Email,
                    Job::StatusUpdate {
                        text: update_email(inc, text, e.at),
                        channel: String::new(),
                        subject: update_subject(inc),
                    },
                    e.at,
                    e.at,
                ))?;
            }
        }
        Ok(())
    }

    /// The public status page: the open incidents marked public on the
    /// services marked public, newest first, at most [`STATUS_PAGE_MAX`].
    pub async fn public_incidents(&self) -> Result<Vec<PublicIncident>, ServiceError> {
        let public: Vec<String> = self
            .directory
            .config
            .services
            .iter()
            .filter(|s| s.public && !s.private)
            .map(|s| s.name.clone())
            .collect();
        if public.is_empty() {
            return Ok(Vec::new());
        }
        let open = self
            .read(move |s| {
                // From the open index, a page at a time: the cost follows
                // the open incidents, never the resolved history.
                let mut shown = Vec::new();
                for name in &public {
                    let filter = crate::store::OpenFilter {
                        service: Some(name.clone()),
                        ..Default::default()
                    };
                    let mut before = None;
                    loop {
                        let page = s.open_incidents(&filter, before, 200)?;
                        before = page.last().map(|i| i.id);
                        let last = page.len() < 200;
                        shown.extend(
                            page.iter()
                                .filter(|i| i.public && !i.drill && !i.is_suppressed())
                                .map(PublicIncident::of),
                        );
                        if last || shown.len() >= STATUS_PAGE_MAX {
                            break;
                        }
                    }
                }
                Ok(shown)
            })
            .await?;
        let mut open = open;
        open.sort_by_key(|i| std::cmp::Reverse(i.started_at));
        open.truncate(STATUS_PAGE_MAX);
        Ok(open)
    }
}

/// A non-page outbox entry about `inc` (a chat job, a status update),
/// written at `now` and due at `due`.
pub(super) fn job_entry(
    inc: &Incident,
    key: String,
    recipient: Recipient,
    method: ContactKind,
    job: Job,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> OutboxEntry {
    OutboxEntry {
        generation: None,
        incident_uid: inc.uid.clone(),
        key,
        job,
        incident: inc.id,
        recipient,
        method,
        method_index: 0,
        page: PageContent {
            incident: inc.id,
            title: inc.title.clone(),
            severity: inc.severity,
            service: inc.service.clone(),
            step: 0,
            round: 0,
        },
        created_at: now,
        first_due: due,
        due,
        attempts: 0,
        last_error: None,
        state: DeliveryState::Pending,
    }
}
