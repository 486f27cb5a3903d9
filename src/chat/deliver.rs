//! Runs the outbox's chat jobs through a [`ChatPlatform`]: open an incident
//! channel, refresh the card, post, archive, and page by direct message.

use super::{CardView, ChatMessage, ChatPlatform, InviteFailure, channel_name};
use crate::escalation::Recipient;
use crate::incident::{ChatLink, Incident, TimelineEvent};
use crate::notify::worker::{ChatDelivery, DeliveryFuture};
use crate::notify::{DeliveryError, Job, OutboxEntry};
use crate::service::Service;
use crate::templates::Markup;
use std::sync::Arc;

/// One platform's side of the outbox: the worker's chat jobs and chat
/// pages, run through [`run`] (notify owns the trait, chat implements it).
pub struct PlatformDelivery {
    service: Service,
    platform: Arc<dyn ChatPlatform>,
}

impl PlatformDelivery {
    /// Delivers through `platform`, reading and writing through `service`.
    pub fn new(service: Service, platform: Arc<dyn ChatPlatform>) -> Self {
        Self { service, platform }
    }
}

impl ChatDelivery for PlatformDelivery {
    fn platform(&self) -> &str {
        self.platform.name()
    }

    fn deliver<'a>(&'a self, entry: &'a OutboxEntry) -> DeliveryFuture<'a> {
        Box::pin(run(&self.service, self.platform.as_ref(), entry))
    }
}

fn store_error(e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::retryable(format!("store: {e}"))
}

/// The id of a tocsin user on `platform`.
fn platform_id(service: &Service, platform: &str, user: &str) -> Option<String> {
    service
        .directory()
        .user(user)?
        .chat_id(platform)
        .map(str::to_string)
}

/// The people working the incident: whoever was paged for it, and its roles.
fn responders(service: &Service, inc: &Incident) -> Result<Vec<String>, DeliveryError> {
    let mut users: Vec<String> = Vec::new();
    for e in service.store().outbox_for(inc.id).map_err(store_error)? {
        if let (Job::Page, Recipient::User(u)) = (&e.job, &e.recipient)
            && !users.contains(u)
        {
            users.push(u.clone());
        }
    }
    for u in inc.roles.values() {
        if !users.contains(u) {
            users.push(u.clone());
        }
    }
    Ok(users)
}

/// Everyone to invite into the incident's channel: its responders, and
/// whoever opened it by command.
fn invitees(service: &Service, inc: &Incident) -> Result<Vec<String>, DeliveryError> {
    let mut users = responders(service, inc)?;
    let opened = service.store().timeline(inc.id).map_err(store_error)?;
    if let Some(u) = opened
        .iter()
        .find(|e| matches!(e.event, TimelineEvent::Opened { .. }))
        .and_then(|e| e.actor.user_name())
        && !users.iter().any(|x| x == u)
    {
        users.insert(0, u.to_string());
    }
    Ok(users)
}

/// Invites `users` (tocsin names) into `channel`, and says in the channel
/// who could not be invited (once per job: the post carries the job's key).
async fn invite_into(
    service: &Service,
    platform: &dyn ChatPlatform,
    inc: &Incident,
    channel: &str,
    users: Vec<String>,
) -> Result<Option<String>, DeliveryError> {
    let name = platform.name();
    let people: Vec<(String, String)> = users
        .into_iter()
        .filter_map(|u| platform_id(service, name, &u).map(|id| (u, id)))
        .collect();
    let ids: Vec<String> = people.iter().map(|(_, id)| id.clone()).collect();
    // A stale id must not cost the channel its topic and card:
    // the others are invited, the failure is reported in the channel.
    let failed = if ids.is_empty() {
        Vec::new()
    } else {
        platform.invite_each(channel, &ids).await?
    };
    for f in &failed {
        tracing::warn!(incident = %inc.id, platform = name, user = %f.user, error = %f.error,
            "Could not invite a user into the incident channel; check their {name}_id");
    }
    Ok(invite_notice(
        Markup::of_platform(name),
        name,
        &people,
        &failed,
    ))
}

/// A short notice naming the users `platform` would not invite, their
/// values escaped for it; `None` if everyone was invited.
fn invite_notice(
    markup: Markup,
    platform: &str,
    people: &[(String, String)],
    failed: &[InviteFailure],
) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let who: Vec<String> = failed
        .iter()
        .map(|f| {
            let user = people
                .iter()
                .find(|(_, id)| *id == f.user)
                .map(|(u, _)| format!("{} ", markup.escape(u)))
                .unwrap_or_default();
            format!(
                "{user}({platform} id {}: {})",
                markup.escape(&f.user),
                markup.escape(&f.error)
            )
        })
        .collect();
    Some(format!(
        "⚠️ Could not invite {} into this channel. Check the {platform}_id in tocsin's config.",
        who.join(", ")
    ))
}

/// The card of an incident as `platform` shows it.
pub fn card(service: &Service, platform: &str, inc: &Incident) -> Result<CardView, DeliveryError> {
    let paged = responders(service, inc)?
        .iter()
        .map(|u| service.directory().mention(platform, u))
        .collect();
    let roles = inc
        .roles
        .iter()
        .map(|(r, u)| (r.clone(), service.directory().mention(platform, u)))
        .collect();
    Ok(CardView::of(inc, paged, roles))
}

/// Runs one chat job or chat page.
pub async fn run(
    service: &Service,
    platform: &dyn ChatPlatform,
    entry: &OutboxEntry,
) -> Result<(), DeliveryError> {
    let name = platform.name();
    if entry.job == Job::Page {
        let Recipient::User(user) = &entry.recipient else {
            return Err(DeliveryError::permanent("a chat page needs a user"));
        };
        let id = platform_id(service, name, user)
            .ok_or_else(|| DeliveryError::permanent(format!("user '{user}' has no {name} id")))?;
        platform
            .send_dm(&id, &ChatMessage::Page(entry.page.clone()), &entry.key)
            .await?;
        return Ok(());
    }
    let inc = service
        .store()
        .incident(entry.incident)
        .map_err(store_error)?
        .ok_or_else(|| DeliveryError::permanent(format!("{} does not exist", entry.incident)))?;
    let link = inc.chat.get(name).cloned();
    match &entry.job {
        Job::OpenChannel => {
            // Each part is recorded as it is done, so a retry after a
            // partial failure picks up where it stopped (one channel, one card).
            let channel_id = match &link {
                Some(ChatLink {
                    card_id: Some(_), ..
                }) => return Ok(()),
                Some(l) => l.channel_id.clone(),
                None => {
                    let prefix = &service.directory().config.chat.channel_prefix;
                    // Decided once, when the channel opens: a later change
                    // of severity leaves the channel as it is.
                    let private = service.directory().is_private(&inc);
                    let channel = platform
                        .create_channel(&channel_name(prefix, &inc), private)
                        .await?;
                    if private {
                        tracing::info!(incident = %inc.id, platform = name, "Opening a private incident channel");
                    }
                    service
                        .record_channel(
                            inc.id,
                            name,
                            ChatLink {
                                channel_id: channel.id.clone(),
                                channel_name: channel.name,
                                card_id: None,
                                archived: false,
                            },
                        )
                        .await
                        .map_err(store_error)?;
                    channel.id
                }
            };
            let notice = invite_into(
                service,
                platform,
                &inc,
                &channel_id,
                invitees(service, &inc)?,
            )
            .await?;
            let markup = Markup::of_platform(name);
            let view = card(service, name, &inc)?;
            platform.set_topic(&channel_id, &view.headline()).await?;
            // Posted once per job key: a retry after a lost answer finds
            // the card instead of posting a second one.
            let card_id = platform
                .post_once(&channel_id, &ChatMessage::Card(view), &entry.key)
                .await?;
            let rb = inc
                .runbook
                .as_ref()
                .and_then(|p| service.directory().runbooks.get(&p.runbook));
            let intro = service
                .directory()
                .templates
                .render_for(
                    markup,
                    "channel_intro.md",
                    serde_json::json!({
                        "incident": crate::service::incident_context(&inc),
                        "runbook": rb.map(|r| serde_json::json!({"name": r.name, "title": r.title})),
                    }),
                )
                .map_err(|e| tracing::error!(error = %e, "The channel intro template failed; no intro posted"))
                .ok();
            // The notice rides with the intro: one post, sent once.
            let intro = match (intro, notice) {
                (Some(i), Some(n)) => Some(format!("{i}\n\n{n}")),
                (i, n) => i.or(n),
            };
            // The intro goes out as its own job, so a failure to post it
            // is retried without posting the card twice.
            service
                .record_card(inc.id, name, card_id, inc.updated_at, intro)
                .await
                .map_err(store_error)
        }
        Job::UpdateCard => match link {
            Some(ChatLink {
                channel_id,
                card_id: Some(card_id),
                ..
            }) => {
                let view = card(service, name, &inc)?;
                platform
                    .update(&channel_id, &card_id, &ChatMessage::Card(view))
                    .await
            }
            // No channel yet: opening it posts the current card.
            _ => Ok(()),
        },
        Job::Post { text } => match link {
            Some(l) => platform
                .post_once(&l.channel_id, &ChatMessage::Text(text.clone()), &entry.key)
                .await
                .map(|_| ()),
            None => Err(DeliveryError::retryable(
                "the incident channel is not open yet",
            )),
        },
        Job::PostSummary => match link {
            Some(l) => {
                // Chat builds its post from the service's summary (the
                // service knows no chat types): the key figures, the
                // summary rendered for the platform, the plain record.
                let markup = Markup::of_platform(name);
                let markdown = service
                    .summary_markdown(inc.id)
                    .await
                    .map_err(store_error)?;
                let text = service
                    .summary_for(inc.id, markup)
                    .await
                    .map_err(store_error)?;
                let (_, summary) = service.summary_data(inc.id).map_err(store_error)?;
                let post = super::SummaryPost::of(inc.id, &summary, text, markdown);
                // Each platform posts it in its own form, once per job key:
                // a retry finds a post whose answer was lost.
                platform
                    .post_once(&l.channel_id, &ChatMessage::Summary(post), &entry.key)
                    .await
                    .map(|_| ())
            }
            None => Ok(()),
        },
        Job::Invite { users } => match link {
            Some(l) if !l.archived => {
                let notice =
                    invite_into(service, platform, &inc, &l.channel_id, users.clone()).await?;
                if let Some(n) = notice {
                    platform
                        .post_once(&l.channel_id, &ChatMessage::Text(n), &entry.key)
                        .await?;
                }
                Ok(())
            }
            // Not open yet: opening it invites everyone paged by then.
            _ => Ok(()),
        },
        Job::Archive => match link {
            Some(l) if !l.archived => {
                platform.archive(&l.channel_id).await?;
                service
                    .mark_archived(inc.id, name)
                    .await
                    .map_err(store_error)
            }
            _ => Ok(()),
        },
        // To the service's stakeholder channel, not the incident's.
        Job::StatusUpdate { text, channel, .. } => platform
            .post_once(channel, &ChatMessage::Text(text.clone()), &entry.key)
            .await
            .map(|_| ()),
        Job::Page | Job::AuditHead { .. } => unreachable!("handled above"),
    }
}
