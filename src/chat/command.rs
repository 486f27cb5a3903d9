//! The chat command language, shared by Slack and Discord.
//!
//! `/incident ...`, `/oncall ...` and `/page ...` arrive as a command name
//! and its text; [`parse`] turns them into a [`Command`] or a short usage
//! message. Mentions are platform ids (`<@U123>`, `<@!123>`); the handler
//! maps them to tocsin users.

use crate::incident::{IncidentId, Severity};
use std::fmt;

/// An incident role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the response.
    Commander,
    /// Talks to stakeholders.
    Comms,
    /// Keeps the record.
    Scribe,
}

impl Role {
    /// Its name in commands.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commander => "commander",
            Self::Comms => "comms",
            Self::Scribe => "scribe",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Someone named in a command: a platform mention or a tocsin user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// A platform user id from a mention.
    Platform(String),
    /// A tocsin user name.
    Name(String),
}

/// What to do to an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentAction {
    /// Open one.
    New {
        /// What is wrong.
        title: String,
        /// How bad (default SEV3).
        severity: Option<Severity>,
    },
    /// Acknowledge.
    Ack,
    /// Resolve, with an optional note.
    Resolve {
        /// The note.
        note: Option<String>,
    },
    /// Run the next escalation step now.
    Escalate,
    /// Pause paging.
    Snooze {
        /// For how long.
        duration: std::time::Duration,
    },
    /// Show the status.
    Status,
    /// Change the severity.
    Severity(Severity),
    /// Give someone a role.
    Role {
        /// The role.
        role: Role,
        /// Who.
        user: UserRef,
    },
    /// Add a note (`action:` notes are action items).
    Note(String),
    /// Post a status update for stakeholders.
    Update(String),
    /// Show it on the public status page (`true`) or take it off.
    Public(bool),
    /// Show the summary.
    Summary,
    /// Runbook subcommands, for the runbooks module: the words after `runbook`.
    Runbook(Vec<String>),
    /// Runbook step subcommands: the words after `step`.
    Step(Vec<String>),
    /// Runbook phase subcommands: the words after `phase`.
    Phase(Vec<String>),
    /// Start a drill.
    Drill(Option<String>),
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `/incident [INC-n] <action>`.
    Incident {
        /// The incident, if named; otherwise the channel's.
        id: Option<IncidentId>,
        /// What to do.
        action: IncidentAction,
    },
    /// `/incident help`, `/oncall help`, `/page help`.
    Help,
    /// `/oncall [schedule]`.
    OnCall {
        /// Only this schedule.
        schedule: Option<String>,
    },
    /// `/oncall cover <@user> <duration> [schedule]`.
    Cover {
        /// Who covers.
        user: UserRef,
        /// For how long from now.
        duration: std::time::Duration,
        /// Which schedule (default: the only one, or the first).
        schedule: Option<String>,
    },
    /// `/page <@user|schedule> <message>`.
    Page {
        /// Who.
        target: PageTarget,
        /// Why.
        message: String,
    },
    /// `/maintenance start|end|list`.
    Maintenance(MaintenanceAction),
    /// `/incident login`: a one-time link that signs the asker in to the
    /// web console.
    Login,
}

/// What `/maintenance` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceAction {
    /// `/maintenance start <service> <duration> [reason]`.
    Start {
        /// The service.
        service: String,
        /// For how long from now.
        duration: std::time::Duration,
        /// Why.
        reason: Option<String>,
    },
    /// `/maintenance end [id]` (no id: the only active runtime window).
    End {
        /// The window's id.
        id: Option<String>,
    },
    /// `/maintenance list` (or no words).
    List,
}

/// The usage text of `/maintenance`.
pub const MAINTENANCE_USAGE: &str = "Usage: /maintenance start <service> <duration> [reason]   silence a service's alerts, e.g. /maintenance start api 2h db upgrade
       /maintenance end [id]    end a window now (what still fires is paged)
       /maintenance list        the windows, active and coming";

/// Who `/page` pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageTarget {
    /// A person.
    User(UserRef),
    /// Whoever is on call in a schedule.
    Schedule(String),
}

/// The usage text of `/incident`.
pub const INCIDENT_USAGE: &str = "Usage: /incident [INC-n] <command>
  new <title> [sev1..sev4]   open an incident
  ack                        acknowledge (stops paging)
  resolve [note]             resolve
  escalate                   page the next escalation step now
  snooze <duration>          pause paging, e.g. snooze 30m
  status                     show the incident
  severity <sev1..sev4>      change the severity
  role <commander|comms|scribe> <@user>
  note <text>                add a note; 'note action: ...' adds an action item
  update <text>              post a status update for stakeholders
  public | private           show it on the public status page, or take it off
  summary                    show the summary
  runbook [show|<name>]      runbooks (step done|skip, phase next)
  drill [runbook]            rehearse with a drill incident
  login                      a one-time link that signs you in to the web console
Inside an incident channel the incident is implied; elsewhere name it: /incident INC-42 ack";

/// The usage text of `/oncall`.
pub const ONCALL_USAGE: &str = "Usage: /oncall [schedule]          who is on call now and next
       /oncall cover <@user> <duration> [schedule]   put someone on call, e.g. /oncall cover @sam 4h";

/// The usage text of `/page`.
pub const PAGE_USAGE: &str =
    "Usage: /page <@user|schedule> <message>   open an incident and page them";

/// Why a command could not be parsed: a short message and the usage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n{usage}")]
pub struct UsageError {
    /// What is wrong.
    pub problem: String,
    /// How to use the command.
    pub usage: &'static str,
}

fn usage(problem: impl Into<String>, usage: &'static str) -> UsageError {
    UsageError {
        problem: problem.into(),
        usage,
    }
}

/// Parses `command` (with or without the slash: `incident`, `/oncall`) and
/// its text.
pub fn parse(command: &str, text: &str) -> Result<Command, UsageError> {
    match command.trim().trim_start_matches('/') {
        "incident" => parse_incident(text),
        "oncall" => parse_oncall(text),
        "page" => parse_page(text),
        "maintenance" => parse_maintenance(text),
        other => Err(usage(
            format!("Unknown command '/{other}'."),
            "Commands: /incident, /oncall, /page, /maintenance",
        )),
    }
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// The text after the first `n` words, with its own spacing.
fn rest_after(text: &str, n: usize) -> String {
    let mut rest = text.trim_start();
    for _ in 0..n {
        rest = rest.trim_start();
        match rest.find(char::is_whitespace) {
            Some(i) => rest = &rest[i..],
            None => return String::new(),
        }
    }
    rest.trim().to_string()
}

fn parse_severity(word: &str) -> Option<Severity> {
    match word.to_ascii_lowercase().as_str() {
        "sev1" | "sev2" | "sev3" | "sev4" | "critical" | "error" | "warning" | "info" => {
            Severity::from_sender(word)
        }
        _ => None,
    }
}

/// Parses a duration like `30m`, `2h`, `1h30m` (at most 30 days).
pub fn parse_duration(word: &str) -> Option<std::time::Duration> {
    let d = humantime::parse_duration(word).ok()?;
    (d.as_secs() >= 1 && d.as_secs() <= 30 * 24 * 3600).then_some(d)
}

/// A mention (`<@U123>`, `<@U123|name>`, `<@!123>`, `<@123>`) or a plain
/// user name (`@alice`, `alice`).
pub fn parse_user(word: &str) -> Option<UserRef> {
    if let Some(inner) = word.strip_prefix("<@").and_then(|w| w.strip_suffix('>')) {
        let id = inner.trim_start_matches('!');
        let id = id.split('|').next().unwrap_or_default();
        return (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| UserRef::Platform(id.to_string()));
    }
    let name = word.strip_prefix('@').unwrap_or(word);
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-')))
    .then(|| UserRef::Name(name.to_string()))
}

fn parse_incident(text: &str) -> Result<Command, UsageError> {
    let w = words(text);
    let (id, skip) = match w.first().map(|f| f.parse::<IncidentId>()) {
        Some(Ok(id)) if w[0].to_ascii_lowercase().starts_with("inc-") => (Some(id), 1),
        _ => (None, 0),
    };
    let Some(verb) = w.get(skip) else {
        return if id.is_some() {
            Ok(Command::Incident {
                id,
                action: IncidentAction::Status,
            })
        } else {
            Ok(Command::Help)
        };
    };
    let args = &w[skip + 1..];
    let rest = rest_after(text, skip + 1);
    let action = match verb.to_ascii_lowercase().as_str() {
        "help" => return Ok(Command::Help),
        "login" | "signin" | "sign-in" => {
            return if id.is_none() && args.is_empty() {
                Ok(Command::Login)
            } else {
                Err(usage(
                    "'login' takes nothing: it signs you in as yourself.",
                    INCIDENT_USAGE,
                ))
            };
        }
        "new" | "open" | "declare" => {
            if args.is_empty() {
                return Err(usage("'new' needs a title.", INCIDENT_USAGE));
            }
            // A last word that reads as a severity but is none (`sev9`,
            // `sev0`) is a typo, not part of the title.
            if let Some(last) = args.last()
                && parse_severity(last).is_none()
                && last.len() > 3
                && last[..3].eq_ignore_ascii_case("sev")
                && last[3..].chars().all(|c| c.is_ascii_digit())
            {
                return Err(usage(
                    format!("'{last}' is not a severity: use sev1, sev2, sev3 or sev4."),
                    INCIDENT_USAGE,
                ));
            }
            let (title, severity) = match args.last().and_then(|l| parse_severity(l)) {
                Some(sev) if args.len() > 1 => {
                    let t = rest
                        .rsplit_once(char::is_whitespace)
                        .map(|(t, _)| t)
                        .unwrap_or("");
                    (t.trim().to_string(), Some(sev))
                }
                Some(_) => return Err(usage("'new' needs a title.", INCIDENT_USAGE)),
                None => (rest.clone(), None),
            };
            if title.chars().count() > 200 {
                return Err(usage(
                    "The title is longer than 200 characters.",
                    INCIDENT_USAGE,
                ));
            }
            IncidentAction::New { title, severity }
        }
        "ack" | "acknowledge" => IncidentAction::Ack,
        "resolve" | "close" => IncidentAction::Resolve {
            note: (!rest.is_empty()).then_some(rest),
        },
        "escalate" => IncidentAction::Escalate,
        "snooze" => match args.first().and_then(|d| parse_duration(d)) {
            Some(duration) if args.len() == 1 => IncidentAction::Snooze { duration },
            _ => {
                return Err(usage(
                    "'snooze' needs one duration between 1s and 30 days, like 30m or 2h.",
                    INCIDENT_USAGE,
                ));
            }
        },
        "status" | "show" => IncidentAction::Status,
        "severity" | "sev" => match args.first().and_then(|s| parse_severity(s)) {
            Some(s) if args.len() == 1 => IncidentAction::Severity(s),
            _ => {
                return Err(usage(
                    "'severity' needs one of sev1, sev2, sev3, sev4.",
                    INCIDENT_USAGE,
                ));
            }
        },
        "role" => {
            let role = match args.first().map(|r| r.to_ascii_lowercase()).as_deref() {
                Some("commander" | "ic") => Role::Commander,
                Some("comms" | "communications") => Role::Comms,
                Some("scribe") => Role::Scribe,
                _ => {
                    return Err(usage(
                        "'role' needs commander, comms or scribe, then a @user.",
                        INCIDENT_USAGE,
                    ));
                }
            };
            match (args.get(1).and_then(|u| parse_user(u)), args.len()) {
                (Some(user), 2) => IncidentAction::Role { role, user },
                _ => {
                    return Err(usage(
                        "'role' needs one @user after the role.",
                        INCIDENT_USAGE,
                    ));
                }
            }
        }
        "note" => {
            if rest.is_empty() {
                return Err(usage("'note' needs some text.", INCIDENT_USAGE));
            }
            if rest.chars().count() > 3000 {
                return Err(usage(
                    "The note is longer than 3000 characters.",
                    INCIDENT_USAGE,
                ));
            }
            IncidentAction::Note(rest)
        }
        "update" => {
            if rest.is_empty() {
                return Err(usage(
                    "'update' needs the text stakeholders should read.",
                    INCIDENT_USAGE,
                ));
            }
            let max = crate::incident::UPDATE_MAX;
            if rest.chars().count() > max {
                return Err(usage(
                    format!("The status update is longer than {max} characters."),
                    INCIDENT_USAGE,
                ));
            }
            IncidentAction::Update(rest)
        }
        "public" => IncidentAction::Public(true),
        "private" => IncidentAction::Public(false),
        "summary" => IncidentAction::Summary,
        "runbook" => IncidentAction::Runbook(args.iter().map(|s| s.to_string()).collect()),
        "step" => IncidentAction::Step(args.iter().map(|s| s.to_string()).collect()),
        "phase" => IncidentAction::Phase(args.iter().map(|s| s.to_string()).collect()),
        "drill" => IncidentAction::Drill(args.first().map(|s| s.to_string())),
        other => {
            return Err(usage(
                format!("Unknown subcommand '{other}'."),
                INCIDENT_USAGE,
            ));
        }
    };
    if id.is_some()
        && matches!(
            action,
            IncidentAction::New { .. } | IncidentAction::Drill(_)
        )
    {
        return Err(usage(
            "'new' and 'drill' open a new incident; do not name one.",
            INCIDENT_USAGE,
        ));
    }
    Ok(Command::Incident { id, action })
}

fn parse_oncall(text: &str) -> Result<Command, UsageError> {
    let w = words(text);
    match w.as_slice() {
        [] => Ok(Command::OnCall { schedule: None }),
        ["help"] => Ok(Command::Help),
        ["cover", user, duration, rest @ ..] if rest.len() <= 1 => {
            let user = parse_user(user)
                .ok_or_else(|| usage(format!("'{user}' is not a user."), ONCALL_USAGE))?;
            let duration = parse_duration(duration).ok_or_else(|| {
                usage(
                    format!("'{duration}' is not a duration like 4h."),
                    ONCALL_USAGE,
                )
            })?;
            Ok(Command::Cover {
                user,
                duration,
                schedule: rest.first().map(|s| s.to_string()),
            })
        }
        ["cover", ..] => Err(usage("'cover' needs a @user and a duration.", ONCALL_USAGE)),
        [schedule] => Ok(Command::OnCall {
            schedule: Some(schedule.to_string()),
        }),
        _ => Err(usage("Too many words.", ONCALL_USAGE)),
    }
}

fn parse_page(text: &str) -> Result<Command, UsageError> {
    let w = words(text);
    let Some(first) = w.first() else {
        return Err(usage(
            "'/page' needs someone to page and a message.",
            PAGE_USAGE,
        ));
    };
    if *first == "help" {
        return Ok(Command::Help);
    }
    let message = rest_after(text, 1);
    if message.is_empty() {
        return Err(usage("Say why you are paging.", PAGE_USAGE));
    }
    let target = if first.starts_with("<@") || first.starts_with('@') {
        PageTarget::User(
            parse_user(first)
                .ok_or_else(|| usage(format!("'{first}' is not a user."), PAGE_USAGE))?,
        )
    } else {
        PageTarget::Schedule(first.to_string())
    };
    Ok(Command::Page { target, message })
}

fn parse_maintenance(text: &str) -> Result<Command, UsageError> {
    let w = words(text);
    let action = match w.as_slice() {
        [] | ["list"] => MaintenanceAction::List,
        ["help"] => return Ok(Command::Help),
        ["start", service, duration, ..] => {
            let duration = parse_duration(duration).ok_or_else(|| {
                usage(
                    format!("'{duration}' is not a duration like 2h (at most 30 days)."),
                    MAINTENANCE_USAGE,
                )
            })?;
            let reason = rest_after(text, 3);
            MaintenanceAction::Start {
                service: service.to_string(),
                duration,
                reason: (!reason.is_empty()).then_some(reason),
            }
        }
        ["start", ..] => {
            return Err(usage(
                "'start' needs a service and a duration.",
                MAINTENANCE_USAGE,
            ));
        }
        ["end"] => MaintenanceAction::End { id: None },
        ["end", id] => MaintenanceAction::End {
            id: Some(id.to_string()),
        },
        [other, ..] => {
            return Err(usage(
                format!("Unknown maintenance command '{other}'."),
                MAINTENANCE_USAGE,
            ));
        }
    };
    Ok(Command::Maintenance(action))
}

#[cfg(test)]
mod tests;
