//! Chat-side commands and bookkeeping: severity, roles, notes, incidents
//! opened from chat, and the outbox jobs that keep incident channels and
//! cards in step with the incident.

use super::{ChangeError, Service, ServiceError};
use crate::config::{ContactKind, TargetConfig};
use crate::escalation::{EscalationState, Recipient, resolve_targets};
use crate::incident::{
    Actor, Change, ChatLink, Incident, IncidentId, Severity, Status, TimelineEntry, TimelineEvent,
};
use crate::incident::{AlertAction, AlertEvent};
use crate::notify::{DeliveryState, Job, OutboxEntry, PageContent, chat_key, page_key};
use crate::store::{StoreError, Tx};
use crate::templates::Markup;
use chrono::{DateTime, Utc};
use tracing::{Instrument, info_span};

/// A page delivered in the transaction that queued it (a `log` page).
pub(super) struct DeliveredNow {
    recipient: String,
    method: String,
}

/// Whether a page due now may go out at once: what the outbox worker's
/// claim checks (see `paging::page_wanted`), for an incident in the
/// escalation run that queues it.
fn log_page_wanted(inc: &Incident, direct: bool) -> bool {
    if direct {
        inc.status != Status::Resolved
    } else {
        inc.status == Status::Triggered
    }
}

/// Records the pages delivered at once on the timeline, after the step
/// that sent them, as the outbox worker's record would.
pub(super) fn record_delivered(
    inc: &mut Incident,
    entries: &mut Vec<TimelineEntry>,
    now: DateTime<Utc>,
    delivered: Vec<DeliveredNow>,
) {
    for d in delivered {
        inc.record(
            entries,
            now,
            Actor::System,
            TimelineEvent::Paged {
                recipient: d.recipient,
                method: d.method,
                attempts: 1,
            },
        );
    }
}

impl Service {
    /// The chat platforms configured, by name.
    pub fn chat_platforms(&self) -> Vec<&'static str> {
        self.directory.config.chat_platforms()
    }

    /// Changes an incident's severity.
    pub async fn set_severity(
        &self,
        id: IncidentId,
        to: Severity,
        by: Actor,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        self.change(id, move |_, inc| {
            Ok(inc.set_severity(to, by.clone(), now)?)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Gives a tocsin user a role on an incident.
    pub async fn assign_role(
        &self,
        id: IncidentId,
        role: &str,
        user: &str,
        by: Actor,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let (role, user) = (role.to_string(), user.to_string());
        self.change(id, move |_, inc| {
            Ok(inc.assign_role(&role, &user, by.clone(), now)?)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Adds a note (or, with `action:`, an action item).
    pub async fn add_note(
        &self,
        id: IncidentId,
        text: &str,
        by: Actor,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let text = text.to_string();
        self.change(id, move |_, inc| Ok(inc.add_note(&text, by.clone(), now)))
            .instrument(info_span!("incident", incident = %id))
            .await
    }

    /// Opens an incident by hand (from chat) on the chat default service.
    /// With `page`, those targets are paged now instead of the service's
    /// escalation policy.
    pub async fn open_manual(
        &self,
        title: &str,
        severity: Option<Severity>,
        by: Actor,
        page: Option<Vec<TargetConfig>>,
    ) -> Result<Incident, ServiceError> {
        self.open_incident(title, severity, by, page, None, false)
            .await
    }

    /// Opens an incident by hand: with `runbook` attached (or the first that
    /// fits), marked as a drill or not.
    pub(super) async fn open_incident(
        &self,
        title: &str,
        severity: Option<Severity>,
        by: Actor,
        page: Option<Vec<TargetConfig>>,
        runbook: Option<&crate::runbook::Runbook>,
        drill: bool,
    ) -> Result<Incident, ServiceError> {
        let config = &self.directory.config;
        let service = config
            .chat
            .service(config)
            .ok_or_else(|| {
                ServiceError::Refused(crate::incident::IncidentError::Unchanged(
                    "no service is configured to open incidents in".into(),
                ))
            })?
            .to_string();
        let now = self.clock.now();
        let (svc, title, runbook) = (self.clone(), title.to_string(), runbook.cloned());
        let opened = self
            .write(super::writer::Priority::Now, move |tx| {
                let id = tx.next_incident_id()?;
                let event = AlertEvent {
                    dedup_key: format!("manual-{}", id.0),
                    fingerprint: None,
                    action: AlertAction::Trigger,
                    summary: title.clone(),
                    incident_title: None,
                    source: by.to_string(),
                    severity: Some(severity.unwrap_or(crate::incident::DEFAULT_SEVERITY)),
                    labels: Default::default(),
                    details: serde_json::Value::Null,
                    links: Vec::new(),
                    left_out: None,
                    expires_at: None,
                };
                let mut change =
                    Incident::open_as(id, &service, "chat", &event, now, Some(by.clone()));
                change.incident.drill = drill;
                match &runbook {
                    Some(rb) => match change.incident.attach_runbook(rb, by.clone(), now) {
                        Ok(c) => {
                            change.incident = c.incident;
                            change.entries.extend(c.entries);
                        }
                        Err(e) => tracing::warn!(error = %e, "Could not attach the runbook"),
                    },
                    None => svc.auto_attach(&mut change, now),
                }
                match &page {
                    Some(targets) => svc.page_targets(tx, &mut change, targets, by.clone(), now)?,
                    None => svc.start_escalation(tx, &mut change, now)?,
                }
                svc.write_change(tx, &change)?;
                tx.set_open_incident(&service, &event.dedup_key, Some(id))?;
                Ok(change.incident)
            })
            .await?;
        Ok(opened)
    }

    /// Pages `targets` now into the open incident `id` (`/page` typed in its
    /// channel): the pages go out even if it is acknowledged, and its own
    /// escalation carries on untouched.
    pub async fn page_into(
        &self,
        id: IncidentId,
        targets: Vec<TargetConfig>,
        by: Actor,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let svc = self.clone();
        self.change(id, move |tx, inc| {
            if inc.status == crate::incident::Status::Resolved {
                return Err(super::ChangeError::Refused(
                    crate::incident::IncidentError::Unchanged(format!(
                        "{} is resolved: open a new incident with /page outside its channel",
                        inc.id
                    )),
                ));
            }
            let mut change = Change {
                incident: inc.clone(),
                entries: Vec::new(),
            };
            let mut on_call = |s: &str| svc.directory.on_call(s, now).map(|o| o.user);
            let (recipients, uncovered) = resolve_targets(&targets, &mut on_call);
            let delivered = svc.queue_pages(tx, &change.incident, &recipients, None, 0, 0, now)?;
            change.incident.record(
                &mut change.entries,
                now,
                by.clone(),
                TimelineEvent::EscalationStep {
                    policy: "direct page".into(),
                    step: 1,
                    round: 1,
                    notified: recipients.iter().map(|r| r.to_string()).collect(),
                },
            );
            for schedule in uncovered {
                change.incident.record(
                    &mut change.entries,
                    now,
                    Actor::System,
                    TimelineEvent::NobodyOnCall { schedule },
                );
            }
            record_delivered(&mut change.incident, &mut change.entries, now, delivered);
            Ok(change)
        })
        .await
    }

    /// Pages `targets` once, now (for `/page`): no policy, no timer.
    fn page_targets(
        &self,
        tx: &mut dyn Tx,
        change: &mut Change,
        targets: &[TargetConfig],
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut on_call = |s: &str| self.directory.on_call(s, now).map(|o| o.user);
        let (recipients, uncovered) = resolve_targets(targets, &mut on_call);
        let inc = &mut change.incident;
        inc.escalation = Some(EscalationState {
            policy: String::new(),
            generation: 0,
            step: 0,
            round: 0,
            timer: None,
            exhausted: false,
        });
        let delivered = self.queue_pages(tx, inc, &recipients, Some(0), 0, 0, now)?;
        inc.record(
            &mut change.entries,
            now,
            by,
            TimelineEvent::EscalationStep {
                policy: "direct page".into(),
                step: 1,
                round: 1,
                notified: recipients.iter().map(|r| r.to_string()).collect(),
            },
        );
        for schedule in uncovered {
            inc.record(
                &mut change.entries,
                now,
                Actor::System,
                TimelineEvent::NobodyOnCall { schedule },
            );
        }
        record_delivered(inc, &mut change.entries, now, delivered);
        Ok(())
    }

    /// Queues a page per recipient and contact method (skipping any already
    /// queued: one page per step).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue_pages(
        &self,
        tx: &mut dyn Tx,
        inc: &Incident,
        recipients: &[Recipient],
        generation: Option<u32>,
        round: u32,
        step: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveredNow>, StoreError> {
        // `None`: a person paged someone into the running incident (`/page`
        // in its channel): keyed by the timeline position it was asked at,
        // and sent unless the incident resolves, whatever escalation does.
        let direct = generation.is_none();
        let generation_label = generation.unwrap_or(0);
        let page = PageContent {
            incident: inc.id,
            title: inc.title.clone(),
            severity: inc.severity,
            service: inc.service.clone(),
            step: step + 1,
            round: round + 1,
        };
        let paged: Vec<String> = recipients
            .iter()
            .filter_map(|r| match r {
                Recipient::User(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        self.queue_invites(
            tx,
            inc,
            &paged,
            &if direct {
                format!("direct{}", inc.timeline_len)
            } else {
                format!("g{generation_label}/r{round}/s{step}")
            },
            now,
        )?;
        let mut delivered = Vec::new();
        for r in recipients {
            let methods: Vec<(ContactKind, chrono::Duration)> = match r {
                Recipient::User(name) => match self.directory.user(name) {
                    Some(u) => u
                        .contact_methods
                        .iter()
                        .map(|m| {
                            (
                                m.kind,
                                chrono::Duration::from_std(m.after)
                                    .unwrap_or(chrono::Duration::MAX),
                            )
                        })
                        .collect(),
                    None => Vec::new(),
                },
                Recipient::Webhook(_) => vec![(ContactKind::Webhook, chrono::Duration::zero())],
                Recipient::Channel(_) | Recipient::Subscriber(_) => Vec::new(),
            };
            for (i, (method, after)) in methods.into_iter().enumerate() {
                let mut key = page_key(inc.id, generation_label, round, step, r, i);
                if direct {
                    key = key.replacen(
                        &format!("/g{generation_label}/r{round}/s{step}/"),
                        &format!("/direct{}/", inc.timeline_len),
                        1,
                    );
                }
                if tx.outbox_entry(&key)?.is_some() {
                    continue;
                }
                let due = now + after;
                let mut entry = OutboxEntry {
                    key,
                    job: Job::Page,
                    incident: inc.id,
                    recipient: r.clone(),
                    method,
                    method_index: i,
                    page: page.clone(),
                    created_at: now,
                    first_due: due,
                    due,
                    attempts: 0,
                    last_error: None,
                    state: DeliveryState::Pending,
                    generation,
                    incident_uid: inc.uid.clone(),
                };
                if let (ContactKind::Log, Recipient::User(user)) = (method, r)
                    && due <= now
                    && log_page_wanted(inc, direct)
                {
                    // A log page is a log line: written here, in the
                    // transaction that queues it, and recorded delivered
                    // with it, rather than by the outbox worker in a
                    // second transaction. If this transaction is not
                    // committed, the line was written all the same (at
                    // least once, like every page).
                    crate::notify::log_page(&entry.for_delivery(), user);
                    entry.attempts = 1;
                    entry.state = DeliveryState::Delivered { at: now };
                    super::paging::count_delivery(&entry, &Ok(()));
                    delivered.push(DeliveredNow {
                        recipient: r.to_string(),
                        method: method.as_str().to_string(),
                    });
                }
                tx.put_outbox(&entry)?;
            }
        }
        Ok(delivered)
    }

    /// Queues an invite of `users` into each of the incident's open
    /// channels, keyed by `what` caused it. A channel not open yet needs
    /// none: opening it invites everyone paged or holding a role by then.
    pub(super) fn queue_invites(
        &self,
        tx: &mut dyn Tx,
        inc: &Incident,
        users: &[String],
        what: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for platform in self.chat_platforms() {
            if inc.chat.get(platform).is_none_or(|l| l.archived) {
                continue;
            }
            let users: Vec<String> = users
                .iter()
                .filter(|u| {
                    self.directory
                        .user(u)
                        .and_then(|c| c.chat_id(platform))
                        .is_some()
                })
                .cloned()
                .collect();
            if users.is_empty() {
                continue;
            }
            tx.put_outbox(&chat_entry(
                inc,
                platform,
                Job::Invite { users },
                &format!("invite/{what}"),
                now,
                now,
            ))?;
        }
        Ok(())
    }

    /// Queues the chat jobs a change calls for: open the channel of a new
    /// incident, refresh its card when what the card shows changed, archive
    /// it some time after it resolved.
    pub(super) fn queue_chat(
        &self,
        tx: &mut dyn Tx,
        before: Option<&Incident>,
        after: &Incident,
        entries: &[TimelineEntry],
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        // Held by a maintenance window: no channel, no posts. When the
        // window ends, the channel opens as for a new incident.
        if after.is_suppressed() {
            return Ok(());
        }
        let before = before.filter(|b| !b.is_suppressed());
        if let Some(b) = before {
            // Whoever is given a role joins the channel.
            for user in after.roles.values() {
                if !b.roles.values().any(|u| u == user) {
                    self.queue_invites(
                        tx,
                        after,
                        std::slice::from_ref(user),
                        &format!("role/{user}"),
                        now,
                    )?;
                }
            }
        }
        for platform in self.chat_platforms() {
            // Rendered for each platform: the values are escaped its way.
            let posts = self.channel_posts(Markup::of_platform(platform), before, after, entries);
            let job = |job: Job, what: &str, due: DateTime<Utc>| {
                chat_entry(after, platform, job, what, now, due)
            };
            for (seq, text) in &posts {
                tx.put_outbox(&job(
                    Job::Post { text: text.clone() },
                    &format!("post/{seq}"),
                    now,
                ))?;
            }
            if before.is_some_and(|b| b.status != Status::Resolved)
                && after.status == Status::Resolved
            {
                tx.put_outbox(&job(Job::PostSummary, "summary", now))?;
            }
            match before {
                None => tx.put_outbox(&job(Job::OpenChannel, "open", now))?,
                Some(b) => {
                    if card_changed(b, after) {
                        tx.put_outbox(&job(Job::UpdateCard, "card", now))?;
                    }
                    if b.status != Status::Resolved && after.status == Status::Resolved {
                        let delay =
                            chrono::Duration::from_std(self.directory.config.chat.archive_after)
                                .unwrap_or(chrono::Duration::days(1));
                        tx.put_outbox(&job(Job::Archive, "archive", now + delay))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records the channel opened for an incident.
    pub async fn record_channel(
        &self,
        id: IncidentId,
        platform: &str,
        link: ChatLink,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let platform = platform.to_string();
        self.change(id, move |tx, inc| {
            tx.set_channel(&platform, &link.channel_id, id)?;
            let mut change = Change {
                incident: inc.clone(),
                entries: Vec::new(),
            };
            change
                .incident
                .chat
                .insert(platform.to_string(), link.clone());
            change.incident.record(
                &mut change.entries,
                now,
                Actor::System,
                TimelineEvent::ChannelOpened {
                    platform: platform.to_string(),
                    channel: link.channel_name.clone(),
                },
            );
            Ok(change)
        })
        .await
        .map(|_| ())
    }

    /// Records the card posted in an incident's channel, and refreshes it if
    /// the incident changed since it was rendered at `rendered_at`.
    pub async fn record_card(
        &self,
        id: IncidentId,
        platform: &str,
        card_id: String,
        rendered_at: DateTime<Utc>,
        intro: Option<String>,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let platform = platform.to_string();
        self.change(id, move |tx, inc| {
            let platform = platform.as_str();
            let mut inc2 = inc.clone();
            if let Some(l) = inc2.chat.get_mut(platform) {
                l.card_id = Some(card_id.clone());
            }
            if let Some(text) = &intro {
                tx.put_outbox(&chat_entry(
                    inc,
                    platform,
                    Job::Post { text: text.clone() },
                    "post/intro",
                    now,
                    now,
                ))
                .map_err(ChangeError::Store)?;
            }
            if inc.updated_at > rendered_at {
                tx.put_outbox(&chat_entry(
                    inc,
                    platform,
                    Job::UpdateCard,
                    "card",
                    now,
                    now,
                ))
                .map_err(ChangeError::Store)?;
            }
            Ok(Change {
                incident: inc2,
                entries: Vec::new(),
            })
        })
        .await
        .map(|_| ())
    }

    /// Marks an incident's channel archived.
    pub async fn mark_archived(&self, id: IncidentId, platform: &str) -> Result<(), ServiceError> {
        let platform = platform.to_string();
        self.change(id, move |_, inc| {
            let mut inc = inc.clone();
            if let Some(l) = inc.chat.get_mut(&platform) {
                l.archived = true;
            }
            Ok(Change {
                incident: inc,
                entries: Vec::new(),
            })
        })
        .await
        .map(|_| ())
    }
}

impl Service {
    /// The messages a change posts in the incident channel, rendered from
    /// the templates for `markup` (values escaped for the platform), keyed by the timeline entry that caused each. A
    /// template that fails to render is logged and skipped: it must never
    /// stop the state change.
    fn channel_posts(
        &self,
        markup: Markup,
        before: Option<&Incident>,
        after: &Incident,
        entries: &[TimelineEntry],
    ) -> Vec<(u64, String)> {
        let Some(_) = before else {
            return Vec::new(); // the channel's intro covers the opening
        };
        let t = &self.directory.templates;
        let inc = incident_context(after);
        let mut posts = Vec::new();
        for e in entries {
            let rendered = match &e.event {
                TimelineEvent::EscalationStep {
                    policy,
                    step,
                    round,
                    notified,
                } => t.render_for(
                    markup,
                    "escalation.md",
                    serde_json::json!({"incident": inc, "policy": policy, "step": step, "round": round, "notified": notified}),
                ),
                TimelineEvent::Acknowledged => t.render_for(
                    markup,
                    "acknowledged.md",
                    serde_json::json!({"incident": inc, "by": e.actor.to_string(),
                        "tta": (e.at - after.created_at).num_seconds()}),
                ),
                TimelineEvent::Resolved { note } => t.render_for(
                    markup,
                    "resolved.md",
                    serde_json::json!({"incident": inc, "by": e.actor.to_string(), "note": note,
                        "ttr": (e.at - after.created_at).num_seconds(),
                        "archive_after": humantime::format_duration(self.directory.config.chat.archive_after).to_string()}),
                ),
                TimelineEvent::StatusUpdate { text } => Ok(format!(
                    "{} {}",
                    markup.escape(&format!("Status update by {}:", e.actor)),
                    markup.escape(text)
                )),
                _ => continue,
            };
            match rendered {
                Ok(text) => posts.push((e.seq, text)),
                Err(err) => {
                    tracing::error!(error = %err, "A chat template failed to render; the message is skipped")
                }
            }
        }
        posts
    }
}

/// What templates see of an incident.
pub fn incident_context(inc: &Incident) -> serde_json::Value {
    serde_json::json!({
        "key": inc.id.to_string(),
        "id": inc.id.0,
        "title": inc.title,
        "severity": inc.severity.label(),
        "service": inc.service,
        "status": inc.status.as_str(),
        "drill": inc.drill,
        "created_at": inc.created_at,
        "roles": inc.roles,
    })
}

/// An outbox entry for a chat job on `platform`, due at `due`.
fn chat_entry(
    inc: &Incident,
    platform: &str,
    job: Job,
    what: &str,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> OutboxEntry {
    super::stakeholders::job_entry(
        inc,
        chat_key(inc.id, platform, what),
        Recipient::Channel(platform.to_string()),
        ContactKind::of_chat_platform(platform).unwrap_or(ContactKind::Slack),
        job,
        now,
        due,
    )
}

/// Whether anything the incident card shows changed.
fn card_changed(a: &Incident, b: &Incident) -> bool {
    a.status != b.status
        || a.severity != b.severity
        || a.title != b.title
        || a.roles != b.roles
        || a.firing_alerts() != b.firing_alerts()
        || a.alerts.len() != b.alerts.len()
        || a.is_flapping() != b.is_flapping()
}
