//! The command handler every platform shares: a verified platform user and
//! a parsed [`Command`] in, a [`Reply`] out. Everything it changes goes
//! through the [`Service`], so a Slack button, a Discord command and the
//! REST API behave the same.

use super::Button;
use super::access;
use super::command::{
    Command, INCIDENT_USAGE, IncidentAction, MAINTENANCE_USAGE, MaintenanceAction, ONCALL_USAGE,
    PAGE_USAGE, PageTarget, UserRef,
};
use crate::config::{TargetConfig, UserConfig};
use crate::escalation::Recipient;
use crate::incident::{Actor, Incident, IncidentError, IncidentId, RunbookStep, TimelineEvent};
use crate::notify::Job;
use crate::service::{Service, ServiceError};
use crate::store::StoredOverride;
use crate::templates::Markup;
use std::collections::BTreeSet;

/// How to use `/incident step`.
const STEP_USAGE: &str =
    "Usage: /incident step done <id> [note] · /incident step skip <id> <reason>";

/// Text from an alert or a person, escaped for `platform`'s markup.
fn esc(platform: &str, text: &str) -> String {
    Markup::of_platform(platform).escape(text)
}
use chrono::Duration;

/// Who sees a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Only the person who asked.
    Ephemeral,
    /// Everyone in the channel.
    InChannel,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The text (Markdown).
    pub text: String,
    /// Who sees it.
    pub visibility: Visibility,
    /// Buttons under the text (the runbook card's), each with the incident
    /// and its argument (a step id, or empty).
    pub buttons: Vec<(Button, IncidentId, String)>,
}

impl Reply {
    /// A reply only the asker sees.
    pub fn private(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            visibility: Visibility::Ephemeral,
            buttons: Vec::new(),
        }
    }

    /// A reply the channel sees.
    pub fn public(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            visibility: Visibility::InChannel,
            buttons: Vec::new(),
        }
    }

    fn with_buttons(mut self, buttons: Vec<(Button, IncidentId, String)>) -> Self {
        self.buttons = buttons;
        self
    }
}

/// Where a command or a button press came from, as the adapter verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `slack` or `discord`.
    pub platform: &'static str,
    /// The workspace (Slack team or enterprise id) or guild it came from,
    /// already checked against the config.
    pub workspace: String,
    /// The platform's id of the user (verified by the adapter).
    pub user_id: String,
    /// The channel it came from.
    pub channel_id: Option<String>,
    /// Whether that channel is a direct message with tocsin.
    pub in_dm: bool,
}

/// A command from a platform user.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Where it came from and who sent it.
    pub origin: Origin,
    /// What they asked.
    pub command: Command,
}

/// The shared handler.
#[derive(Clone)]
pub struct ChatHandler {
    service: Service,
}

impl ChatHandler {
    /// A handler over the service.
    pub fn new(service: Service) -> Self {
        Self { service }
    }

    /// The tocsin user behind a platform id.
    pub fn user(&self, platform: &str, id: &str) -> Option<&UserConfig> {
        self.service.directory().user_by_chat_id(platform, id)
    }

    fn resolve_user(&self, platform: &str, r: &UserRef) -> Result<String, String> {
        match r {
            UserRef::Platform(id) => {
                self.user(platform, id)
                    .map(|u| u.name.clone())
                    .ok_or_else(|| {
                        format!(
                            "{} is not a tocsin user.",
                            esc(platform, &format!("<@{id}>"))
                        )
                    })
            }
            UserRef::Name(n) => self
                .service
                .directory()
                .user(n)
                .map(|u| u.name.clone())
                .ok_or_else(|| format!("'{}' is not a tocsin user.", esc(platform, n))),
        }
    }

    /// The platform mention of a tocsin user, or their name.
    pub fn mention(&self, platform: &str, user: &str) -> String {
        self.service.directory().mention(platform, user)
    }

    /// Carries out a command.
    pub async fn handle(&self, inv: Invocation) -> Reply {
        let origin = inv.origin;
        let platform = origin.platform;
        let Some(user) = self.user(platform, &origin.user_id).map(|u| u.name.clone()) else {
            return Reply::private(format!(
                "You are not a tocsin user: ask an admin to add your {} id ({}) to a [[users]] entry.",
                platform, origin.user_id
            ));
        };
        // The workspace or guild and the platform's user id: which account
        // acted, whatever the display name.
        let by = Actor::authenticated(
            user.clone(),
            format!("{platform}:{}/{}", origin.workspace, origin.user_id),
        );
        let inv = Invocation {
            command: inv.command,
            origin: origin.clone(),
        };
        match inv.command {
            Command::Help => {
                // The usage texts' `<placeholders>` are text, not Slack markup.
                Reply::private(esc(
                    platform,
                    &format!("{INCIDENT_USAGE}\n{ONCALL_USAGE}\n{PAGE_USAGE}\n{MAINTENANCE_USAGE}"),
                ))
            }
            Command::OnCall { schedule } => self.on_call(platform, schedule.as_deref()),
            Command::Cover {
                user: who,
                duration,
                schedule,
            } => self.cover(platform, &user, &who, duration, schedule).await,
            Command::Page { target, message } => {
                let here = self.channel_incident(platform, origin.channel_id.as_deref());
                self.page(platform, by, target, message, here).await
            }
            Command::Maintenance(action) => self.maintenance(platform, &user, action).await,
            Command::Login => match self.service.sign_in_link(&user, platform).await {
                // Only the asker sees the reply, and it is not kept in the
                // channel's history: the link is theirs alone.
                Ok(link) => Reply::private(format!(
                    "Your sign-in link to the tocsin console, as {}. It works once, within {}; do not share it:\n{}",
                    esc(platform, &user),
                    link.valid_for,
                    Markup::of_platform(platform).link(&link.url)
                )),
                Err(e) => {
                    tracing::warn!(%user, error = %e, "No console sign-in link");
                    Reply::private(esc(platform, &format!("No sign-in link: {e}.")))
                }
            },
            Command::Incident { id, action } => {
                if let IncidentAction::New { title, severity } = action {
                    return self.open(platform, by, title, severity).await;
                }
                if let IncidentAction::Drill(runbook) = action {
                    return self.drill(platform, &user, runbook).await;
                }
                let id = match id {
                    Some(id) => id,
                    None => match self.channel_incident(platform, origin.channel_id.as_deref()) {
                        Some(id) => id,
                        None => {
                            return Reply::private(
                                "This is not an incident channel: name the incident, like /incident INC-42 ack",
                            );
                        }
                    },
                };
                let inc = match self.service.store().incident(id) {
                    Ok(Some(inc)) => inc,
                    Ok(None) => {
                        return Reply::private(esc(
                            platform,
                            &ServiceError::NotFound(id).to_string(),
                        ));
                    }
                    Err(e) => return Reply::private(esc(platform, &e.to_string())),
                };
                if let Err(refused) = self.authorize(&user, &inc, &action) {
                    tracing::warn!(incident = %id, user = %user, platform, action = access::verb(&action),
                        "Refused a chat action by someone not allowed");
                    return Reply::private(esc(platform, &refused));
                }
                let in_channel = inc
                    .chat
                    .get(platform)
                    .is_some_and(|l| Some(&l.channel_id) == origin.channel_id.as_ref());
                let mut reply = self.incident_action(platform, id, by, action).await;
                // Outside the incident's channel, what is said about it is
                // for the asker only (it may name a private incident's
                // title), and its buttons, which work only where the
                // incident was posted, are left off.
                if !in_channel {
                    reply.visibility = Visibility::Ephemeral;
                    if !origin.in_dm {
                        reply.buttons.clear();
                    }
                }
                reply
            }
        }
    }

    /// The people who may work `inc` as its responders: the service's
    /// (its escalation policy, schedules and `responders`), whoever was
    /// paged for it, holds a role in it, or opened it.
    pub fn responders_of(&self, inc: &Incident) -> BTreeSet<String> {
        let dir = self.service.directory();
        let mut people = dir.responders(&inc.service);
        people.extend(inc.roles.values().cloned());
        if let Ok(entries) = self.service.store().outbox_for(inc.id) {
            people.extend(
                entries
                    .into_iter()
                    .filter_map(|e| match (e.job, e.recipient) {
                        (Job::Page, Recipient::User(u)) => Some(u),
                        _ => None,
                    }),
            );
        }
        if let Ok(timeline) = self.service.store().timeline(inc.id)
            && let Some(opener) = timeline
                .iter()
                .find(|e| matches!(e.event, TimelineEvent::Opened { .. }))
                .and_then(|e| e.actor.user_name())
        {
            people.insert(opener.to_string());
        }
        people
    }

    /// Whether `user` may do `action` to `inc`; the refusal if not.
    fn authorize(&self, user: &str, inc: &Incident, action: &IncidentAction) -> Result<(), String> {
        let dir = self.service.directory();
        let responders = self.responders_of(inc);
        let subject = access::Subject {
            user,
            admins: &dir.config.chat.admins,
            responders: &responders,
            permissions: dir.permissions(&inc.service),
            private: dir.is_private(inc),
        };
        access::decide(&subject, access::Need::of(action)).map_err(|who| {
            access::refusal(
                &subject,
                who,
                access::verb(action),
                &inc.id.to_string(),
                &inc.service,
            )
        })
    }

    /// Whether tocsin paged `user` for `id` by a direct message on `platform`.
    fn paged_by_dm(&self, platform: &str, user: &str, id: IncidentId) -> bool {
        let kind = crate::config::ContactKind::of_chat_platform(platform);
        self.service.store().outbox_for(id).is_ok_and(|entries| {
            entries.iter().any(|e| {
                e.job == Job::Page
                    && Some(e.method) == kind
                    && matches!(&e.recipient, Recipient::User(u) if u == user)
            })
        })
    }

    /// A button press on a card or a page. A button acts only on the
    /// incident it was posted for: pressed in that incident's channel, or
    /// in a direct message by someone tocsin paged for it there.
    pub async fn press(&self, origin: Origin, button: Button, id: IncidentId, arg: &str) -> Reply {
        let platform = origin.platform;
        let user = self.user(platform, &origin.user_id).map(|u| u.name.clone());
        if let Some(user) = &user {
            let inc = match self.service.store().incident(id) {
                Ok(Some(inc)) => inc,
                Ok(None) => {
                    return Reply::private(esc(platform, &ServiceError::NotFound(id).to_string()));
                }
                Err(e) => return Reply::private(esc(platform, &e.to_string())),
            };
            let link = inc.chat.get(platform);
            let here = link.is_some_and(|l| Some(&l.channel_id) == origin.channel_id.as_ref());
            let page = origin.in_dm && self.paged_by_dm(platform, user, id);
            if !here && !page {
                tracing::warn!(incident = %id, user = %user, platform, channel = ?origin.channel_id,
                    "Refused a button pressed outside the incident's channel");
                let channel = link
                    .map(|l| format!(" (#{})", esc(platform, &l.channel_name)))
                    .unwrap_or_default();
                return Reply::private(format!(
                    "This button is for {id}, and it works only in {id}'s channel{channel} or in the page tocsin sent you for it."
                ));
            }
        }
        let action = match button {
            Button::Ack => IncidentAction::Ack,
            Button::Resolve => IncidentAction::Resolve { note: None },
            Button::Escalate => IncidentAction::Escalate,
            Button::Runbook => IncidentAction::Runbook(vec!["show".into()]),
            Button::StepDone => IncidentAction::Step(vec!["done".into(), arg.to_string()]),
            Button::PhaseNext => IncidentAction::Phase(vec!["next".into()]),
        };
        self.handle(Invocation {
            origin,
            command: Command::Incident {
                id: Some(id),
                action,
            },
        })
        .await
    }

    fn channel_incident(&self, platform: &str, channel: Option<&str>) -> Option<IncidentId> {
        self.service
            .store()
            .incident_by_channel(platform, channel?)
            .ok()
            .flatten()
    }

    async fn incident_action(
        &self,
        platform: &str,
        id: IncidentId,
        by: Actor,
        action: IncidentAction,
    ) -> Reply {
        // A user name from the config: shown as text.
        let who = esc(platform, &by.to_string());
        let result: Result<Reply, ServiceError> = async {
            Ok(match action {
                IncidentAction::Ack => {
                    self.service.acknowledge(id, by).await?;
                    Reply::public(format!("{id} acknowledged by {who}. Paging stopped."))
                }
                IncidentAction::Resolve { note } => {
                    self.service.resolve(id, by, note.clone()).await?;
                    match note {
                        Some(n) => {
                            Reply::public(format!("{id} resolved by {who}: {}", esc(platform, &n)))
                        }
                        None => Reply::public(format!("{id} resolved by {who}.")),
                    }
                }
                IncidentAction::Escalate => {
                    let inc = self.service.escalate(id, by).await?;
                    let step = inc.escalation.as_ref().map(|e| e.step + 1).unwrap_or(1);
                    Reply::public(format!("{who} escalated {id}: step {step} is being paged."))
                }
                IncidentAction::Snooze { duration } => {
                    let d = Duration::from_std(duration).unwrap_or(Duration::hours(1));
                    self.service.snooze(id, by, d).await?;
                    Reply::public(format!(
                        "{who} snoozed {id} for {}. It triggers again after that.",
                        humantime::format_duration(duration)
                    ))
                }
                IncidentAction::Status | IncidentAction::Summary => {
                    let inc = self
                        .service
                        .store()
                        .incident(id)?
                        .ok_or(ServiceError::NotFound(id))?;
                    Reply::private(self.status_text(platform, &inc))
                }
                IncidentAction::Severity(sev) => {
                    self.service.set_severity(id, sev, by).await?;
                    Reply::public(format!("{who} set {id} to {sev}."))
                }
                IncidentAction::Role { role, user } => match self.resolve_user(platform, &user) {
                    Ok(name) => {
                        self.service
                            .assign_role(id, role.as_str(), &name, by)
                            .await?;
                        Reply::public(format!(
                            "{} is now {role} of {id}.",
                            self.mention(platform, &name)
                        ))
                    }
                    Err(e) => Reply::private(e),
                },
                IncidentAction::Note(text) => {
                    let action_item = text.to_ascii_lowercase().starts_with("action:");
                    self.service.add_note(id, &text, by).await?;
                    Reply::private(if action_item {
                        format!("Action item added to {id}.")
                    } else {
                        format!("Note added to {id}.")
                    })
                }
                IncidentAction::Update(text) => {
                    let (_, sent) = self.service.post_update(id, &text, by).await?;
                    Reply::private(format!("Status update posted on {id}{}.", sent.describe()))
                }
                IncidentAction::Public(public) => {
                    let (_, on_page) = self.service.set_public(id, public, by).await?;
                    Reply::public(match (public, on_page) {
                        (true, true) => format!("{who} put {id} on the public status page."),
                        (true, false) => format!(
                            "{who} marked {id} public; its service is not on the public status page (`public = true` on the service), so nothing shows yet."
                        ),
                        (false, _) => format!("{who} took {id} off the public status page."),
                    })
                }
                IncidentAction::Runbook(args) => self.runbook(platform, id, by, args).await?,
                IncidentAction::Step(args) => {
                    let (step, rest) = match args.split_first() {
                        Some((verb, rest)) => (verb.to_ascii_lowercase(), rest),
                        None => (String::new(), &[][..]),
                    };
                    let Some((step_id, words)) = rest.split_first() else {
                        return Ok(Reply::private(esc(platform, STEP_USAGE)));
                    };
                    let text = words.join(" ");
                    let command = match step.as_str() {
                        "done" => RunbookStep::Done {
                            step: step_id.clone(),
                            note: (!text.is_empty()).then_some(text),
                        },
                        "skip" => RunbookStep::Skip {
                            step: step_id.clone(),
                            reason: text,
                        },
                        _ => {
                            return Ok(Reply::private(esc(platform, STEP_USAGE)));
                        }
                    };
                    let done = matches!(command, RunbookStep::Done { .. });
                    self.service.runbook_step(id, command, by).await?;
                    Reply::public(format!(
                        "{who} {} step `{}` of {id}.",
                        if done { "did" } else { "skipped" },
                        esc(platform, step_id)
                    ))
                }
                IncidentAction::Phase(args) => {
                    if args.first().map(|a| a.to_ascii_lowercase()).as_deref() != Some("next") {
                        return Ok(Reply::private("Usage: /incident phase next"));
                    }
                    let inc = self
                        .service
                        .runbook_step(id, RunbookStep::NextPhase, by)
                        .await?;
                    let card = self.runbook_card(platform, &inc)?;
                    Reply::public(card).with_buttons(self.runbook_buttons(&inc))
                }
                IncidentAction::New { .. } | IncidentAction::Drill(_) => {
                    unreachable!("handled before an incident is resolved")
                }
            })
        }
        .await;
        result.unwrap_or_else(|e| Reply::private(esc(platform, &e.to_string())))
    }

    async fn runbook(
        &self,
        platform: &str,
        id: IncidentId,
        by: Actor,
        args: Vec<String>,
    ) -> Result<Reply, ServiceError> {
        let inc = self
            .service
            .store()
            .incident(id)?
            .ok_or(ServiceError::NotFound(id))?;
        match args.first().map(|a| a.as_str()) {
            None | Some("list") => {
                let fits = self.service.runbooks_for(&inc);
                let attached = inc.runbook.as_ref().map(|p| p.runbook.as_str());
                let mut lines = vec![format!("Runbooks that fit {id}:")];
                if fits.is_empty() {
                    lines = vec![format!(
                        "No runbook fits {id} by its service, severity and labels. All runbooks: {}",
                        self.service
                            .directory()
                            .runbooks
                            .all()
                            .map(|r| format!("`{}`", esc(platform, &r.name)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )];
                }
                for r in fits {
                    let mark = if Some(r.name.as_str()) == attached {
                        " (attached)"
                    } else {
                        ""
                    };
                    lines.push(format!(
                        "• `{}` {}{mark}",
                        esc(platform, &r.name),
                        esc(platform, &r.title)
                    ));
                }
                lines.push(esc(
                    platform,
                    "Attach one with /incident runbook <name>; see it with /incident runbook show",
                ));
                Ok(Reply::private(lines.join("\n")))
            }
            Some("show") => Ok(Reply::private(self.runbook_card(platform, &inc)?)
                .with_buttons(self.runbook_buttons(&inc))),
            Some(name) => {
                let inc = self.service.attach_runbook(id, name, by).await?;
                Ok(Reply::public(self.runbook_card(platform, &inc)?)
                    .with_buttons(self.runbook_buttons(&inc)))
            }
        }
    }

    /// The runbook card's buttons: Done for the current phase's open steps
    /// that need no evidence (evidence needs a note, so a command), and
    /// Next phase. At most five, as Discord allows in a row.
    pub fn runbook_buttons(&self, inc: &Incident) -> Vec<(Button, IncidentId, String)> {
        let Some(progress) = &inc.runbook else {
            return Vec::new();
        };
        let Some(rb) = self.service.directory().runbooks.get(&progress.runbook) else {
            return Vec::new();
        };
        let mut buttons: Vec<(Button, IncidentId, String)> = progress
            .open_steps(rb, progress.phase)
            .into_iter()
            .filter(|s| !s.evidence)
            .take(4)
            .map(|s| (Button::StepDone, inc.id, s.id.clone()))
            .collect();
        buttons.push((Button::PhaseNext, inc.id, String::new()));
        buttons
    }

    /// The runbook card (current phase and its steps) from its template.
    pub fn runbook_card(&self, platform: &str, inc: &Incident) -> Result<String, ServiceError> {
        use crate::runbook::{RunbookCommandError, StepState};
        let progress = inc
            .runbook
            .as_ref()
            .ok_or(IncidentError::from(RunbookCommandError::NoneAttached))?;
        let dir = self.service.directory();
        let rb = dir.runbooks.get(&progress.runbook).ok_or_else(|| {
            IncidentError::from(RunbookCommandError::Missing(progress.runbook.clone()))
        })?;
        let phase = &rb.phases[progress.phase.min(rb.phases.len() - 1)];
        let steps: Vec<minijinja::Value> = phase
            .steps
            .iter()
            .map(|s| {
                let owner_user = s
                    .owner
                    .role()
                    .and_then(|r| inc.roles.get(r))
                    .map(|u| Markup::safe(self.mention(platform, u)));
                let mut v = serde_json::json!({
                    "id": s.id, "text": s.text, "link": s.link, "command": s.command,
                    "owner": s.owner.to_string(), "evidence": s.evidence,
                    "state": "open", "by": null, "note": null, "reason": null,
                });
                match progress.steps.get(&s.id) {
                    Some(StepState::Done { by, note, .. }) => {
                        v["state"] = "done".into();
                        v["by"] = by.clone().into();
                        v["note"] = note.clone().into();
                    }
                    Some(StepState::Skipped { by, reason, .. }) => {
                        v["state"] = "skipped".into();
                        v["by"] = by.clone().into();
                        v["reason"] = reason.clone().into();
                    }
                    None => {}
                }
                // The owner's mention is tocsin's markup: put in unescaped.
                let mut step: std::collections::BTreeMap<String, minijinja::Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            minijinja::Value::from(minijinja::value::Serde(v)),
                        )
                    })
                    .collect();
                step.insert(
                    "owner_user".into(),
                    owner_user.unwrap_or(minijinja::Value::from(())),
                );
                minijinja::Value::from(step)
            })
            .collect();
        dir.templates
            .render_for(
                Markup::of_platform(platform),
                "runbook_card.md",
                minijinja::context! {
                    incident => minijinja::Value::from(minijinja::value::Serde(crate::service::incident_context(inc))),
                    runbook => minijinja::Value::from(minijinja::value::Serde(serde_json::json!({"name": rb.name, "title": rb.title}))),
                    phase => minijinja::Value::from(minijinja::value::Serde(serde_json::json!({"title": phase.title, "kind": phase.phase}))),
                    phase_number => progress.phase + 1,
                    phase_count => rb.phases.len(),
                    steps => steps,
                },
            )
            .map_err(|e| IncidentError::Unchanged(e.to_string()).into())
    }

    async fn drill(&self, platform: &str, user: &str, runbook: Option<String>) -> Reply {
        let dir = self.service.directory();
        let name = match runbook {
            Some(n) => n,
            None => {
                let names: Vec<String> = dir
                    .runbooks
                    .all()
                    .map(|r| format!("`{}`", esc(platform, &r.name)))
                    .collect();
                return Reply::private(if names.is_empty() {
                    "Drills walk a runbook, and this tocsin has none.".to_string()
                } else {
                    format!(
                        "Name the runbook to rehearse: {}. Runbooks: {}",
                        esc(platform, "/incident drill <runbook>"),
                        names.join(", ")
                    )
                });
            }
        };
        match self.service.open_drill(&name, user).await {
            Ok(inc) => Reply::public(format!(
                "Drill {} opened: {}. Only {} is paged; walk the runbook with /incident runbook show.",
                inc.id,
                esc(platform, &inc.title),
                esc(platform, user)
            )),
            Err(e) => Reply::private(esc(platform, &e.to_string())),
        }
    }

    async fn open(
        &self,
        platform: &str,
        by: Actor,
        title: String,
        severity: Option<crate::incident::Severity>,
    ) -> Reply {
        match self.service.open_manual(&title, severity, by, None).await {
            Ok(inc) => Reply::public(format!(
                "Opened {}: {} ({}). Escalation and the incident channel follow.",
                inc.id,
                esc(platform, &inc.title),
                inc.severity
            )),
            Err(e) => Reply::private(esc(platform, &e.to_string())),
        }
    }

    /// `/page`: inside an incident's channel it pages for that incident;
    /// elsewhere it opens a new one.
    async fn page(
        &self,
        platform: &str,
        by: Actor,
        target: PageTarget,
        message: String,
        here: Option<IncidentId>,
    ) -> Reply {
        let target = match target {
            PageTarget::User(u) => match self.resolve_user(platform, &u) {
                Ok(name) => TargetConfig::User(name),
                Err(e) => return Reply::private(e),
            },
            PageTarget::Schedule(s) => {
                if self.service.directory().schedule(&s).is_none() {
                    return Reply::private(format!(
                        "'{}' is neither a @user nor a schedule.",
                        esc(platform, &s)
                    ));
                }
                TargetConfig::Schedule(s)
            }
        };
        let what = match &target {
            TargetConfig::User(u) => self.mention(platform, u),
            TargetConfig::Schedule(s) => format!("whoever is on call for {}", esc(platform, s)),
            TargetConfig::Webhook(w) => esc(platform, w),
        };
        if let Some(id) = here {
            return match self.service.page_into(id, vec![target], by).await {
                Ok(inc) => Reply::public(format!("Paged {what} for {}.", inc.id)),
                Err(e) => Reply::private(esc(platform, &e.to_string())),
            };
        }
        match self
            .service
            .open_manual(&message, None, by, Some(vec![target]))
            .await
        {
            Ok(inc) => Reply::public(format!(
                "Opened {} and paged {what}: {}",
                inc.id,
                esc(platform, &inc.title)
            )),
            Err(e) => Reply::private(esc(platform, &e.to_string())),
        }
    }

    fn on_call(&self, platform: &str, only: Option<&str>) -> Reply {
        let dir = self.service.directory();
        let now = self.service.clock().now();
        let mut lines = Vec::new();
        for s in dir.schedules() {
            if only.is_some_and(|o| o != s.name()) {
                continue;
            }
            let extra = dir.runtime_overrides(s.name());
            let now_on = s.who_is_on_call(now, &extra);
            let next = now_on
                .as_ref()
                .and_then(|c| s.who_is_on_call(c.end, &extra));
            let who = |o: &Option<crate::oncall::OnCall>| match o {
                Some(o) => format!(
                    "{} until {}",
                    self.mention(platform, &o.user),
                    o.end.format("%a %d %b %H:%M UTC")
                ),
                None => "nobody".into(),
            };
            lines.push(format!(
                "*{}*: {} (next: {})",
                esc(platform, s.name()),
                who(&now_on),
                who(&next)
            ));
        }
        match (lines.is_empty(), only) {
            (true, Some(o)) => Reply::private(format!(
                "There is no schedule '{}'.\n{}",
                esc(platform, o),
                esc(platform, ONCALL_USAGE)
            )),
            (true, None) => Reply::private("No schedules are configured."),
            (false, _) => Reply::private(lines.join("\n")),
        }
    }

    /// Whether `user` may start or end a window over `services`: a
    /// responder of each, or a `[chat] admins` member.
    fn may_silence(&self, user: &str, services: &[String]) -> bool {
        let dir = self.service.directory();
        dir.config.chat.admins.iter().any(|a| a == user)
            || (!services.is_empty() && services.iter().all(|s| dir.responders(s).contains(user)))
    }

    /// `/maintenance start|end|list`.
    async fn maintenance(&self, platform: &str, user: &str, action: MaintenanceAction) -> Reply {
        use crate::service::maintenance::{NewWindow, WindowError, WindowView};
        let line = |w: &WindowView| {
            let when = match (w.start, w.end) {
                (Some(s), Some(e)) => format!(
                    "{} to {}",
                    s.format("%Y-%m-%d %H:%M UTC"),
                    e.format("%Y-%m-%d %H:%M UTC")
                ),
                _ => "not again".to_string(),
            };
            let mut covers = w.services.clone();
            covers.extend(w.matchers.iter().cloned());
            esc(
                platform,
                &format!(
                    "{} {} ({}) {}{}{}{}",
                    w.id,
                    w.name,
                    covers.join(", "),
                    when,
                    if w.active { ", active" } else { "" },
                    w.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default(),
                    if w.source == crate::maintenance::Source::Config {
                        " [config]"
                    } else {
                        ""
                    }
                ),
            )
        };
        let failed = |e: WindowError| Reply::private(esc(platform, &e.to_string()));
        match action {
            MaintenanceAction::List => match self.service.maintenance_windows().await {
                Ok(ws) => {
                    let now = self.service.clock().now();
                    let shown: Vec<String> = ws
                        .iter()
                        .filter(|w| w.end.is_some_and(|e| e > now))
                        .map(line)
                        .collect();
                    if shown.is_empty() {
                        Reply::private("No maintenance windows are active or coming.")
                    } else {
                        Reply::private(format!("Maintenance windows:\n{}", shown.join("\n")))
                    }
                }
                Err(e) => Reply::private(esc(platform, &e.to_string())),
            },
            MaintenanceAction::Start {
                service,
                duration,
                reason,
            } => {
                if self
                    .service
                    .directory()
                    .config
                    .services
                    .iter()
                    .all(|s| s.name != service)
                {
                    return Reply::private(format!(
                        "There is no service '{}'.\n{MAINTENANCE_USAGE}",
                        esc(platform, &service)
                    ));
                }
                let services = vec![service];
                if !self.may_silence(user, &services) {
                    tracing::warn!(user, platform, services = ?services, "Refused a maintenance window by someone not allowed");
                    return Reply::private(
                        "Only the service's responders and [chat] admins can silence it.",
                    );
                }
                let now = self.service.clock().now();
                let end = now + Duration::from_std(duration).unwrap_or(Duration::hours(1));
                let new = NewWindow {
                    services,
                    reason,
                    start: Some(now),
                    end,
                    ..NewWindow::default()
                };
                match self.service.create_window(new, user).await {
                    Ok(w) => Reply::public(format!(
                        "🔧 Maintenance window {} started by {}: {}'s alerts page nobody until {}. End it early with /maintenance end {}",
                        w.id,
                        self.mention(platform, user),
                        esc(platform, &w.name),
                        w.end.format("%Y-%m-%d %H:%M UTC"),
                        w.id
                    )),
                    Err(e) => failed(e),
                }
            }
            MaintenanceAction::End { id } => {
                let windows = match self.service.maintenance_windows().await {
                    Ok(ws) => ws,
                    Err(e) => return Reply::private(esc(platform, &e.to_string())),
                };
                let id = match id {
                    Some(id) => id,
                    None => {
                        let active: Vec<&WindowView> = windows
                            .iter()
                            .filter(|w| w.active && w.source == crate::maintenance::Source::Api)
                            .collect();
                        match active.as_slice() {
                            [one] => one.id.clone(),
                            [] => return Reply::private("No maintenance window is active."),
                            many => {
                                return Reply::private(format!(
                                    "Several windows are active; name one, like /maintenance end {}:\n{}",
                                    many[0].id,
                                    many.iter().map(|w| line(w)).collect::<Vec<_>>().join("\n")
                                ));
                            }
                        }
                    }
                };
                if let Some(w) = windows.iter().find(|w| w.id == id)
                    && !self.may_silence(user, &w.services)
                {
                    return Reply::private(
                        "Only the service's responders and [chat] admins can end its window.",
                    );
                }
                match self.service.end_window(&id, user).await {
                    Ok(w) => Reply::public(format!(
                        "Maintenance window {} ({}) ended by {}; alerts it held that still fire are paged now.",
                        w.id,
                        esc(platform, &w.name),
                        self.mention(platform, user)
                    )),
                    Err(e) => failed(e),
                }
            }
        }
    }

    async fn cover(
        &self,
        platform: &str,
        invoker: &str,
        who: &UserRef,
        duration: std::time::Duration,
        schedule: Option<String>,
    ) -> Reply {
        let name = match self.resolve_user(platform, who) {
            Ok(n) => n,
            Err(e) => return Reply::private(e),
        };
        let dir = self.service.directory();
        if name != invoker && !dir.config.chat.admins.iter().any(|a| a == invoker) {
            return Reply::private(
                "Only admins ([chat] admins) can put someone else on call; you can cover yourself.",
            );
        }
        let schedule = match schedule
            .or_else(|| dir.schedules().next().map(|s| s.name().to_string()))
        {
            Some(s) if dir.schedule(&s).is_some() => s,
            Some(s) => {
                return Reply::private(format!("There is no schedule '{}'.", esc(platform, &s)));
            }
            None => return Reply::private("No schedules are configured."),
        };
        let start = self.service.clock().now();
        let end = start + Duration::from_std(duration).unwrap_or(Duration::hours(1));
        match self
            .service
            .add_override(StoredOverride {
                id: 0,
                schedule: schedule.clone(),
                user: name.clone(),
                start,
                end,
                created_by: invoker.to_string(),
            })
            .await
        {
            Ok(_) => Reply::public(format!(
                "{} is on call for {} until {}.",
                self.mention(platform, &name),
                esc(platform, &schedule),
                end.format("%a %d %b %H:%M UTC")
            )),
            Err(e) => Reply::private(esc(platform, &e.to_string())),
        }
    }

    /// The status of an incident, as text.
    pub fn status_text(&self, platform: &str, inc: &Incident) -> String {
        let mut lines = vec![
            format!(
                "*{}* {} — {} — {}",
                inc.id,
                esc(platform, &inc.title),
                inc.severity,
                inc.status
            ),
            format!(
                "Service {} · {} of {} alerts firing · opened {}",
                esc(platform, &inc.service),
                inc.firing_alerts(),
                inc.alerts.len(),
                inc.created_at.format("%Y-%m-%d %H:%M UTC")
            ),
        ];
        if !inc.roles.is_empty() {
            lines.push(
                inc.roles
                    .iter()
                    .map(|(r, u)| format!("{r}: {}", self.mention(platform, u)))
                    .collect::<Vec<_>>()
                    .join(" · "),
            );
        }
        if let Some(a) = inc.acknowledged_at {
            lines.push(format!("Acknowledged {}", a.format("%H:%M UTC")));
        }
        lines.join("\n")
    }
}
