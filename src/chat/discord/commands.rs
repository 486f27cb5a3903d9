//! The application commands: their definitions (registered with Discord)
//! and the translation of an invocation's typed options into the same
//! [`Command`] the Slack text parser produces.
//!
//! `/incident` subcommands whose arguments are words (ack, resolve, snooze,
//! note...) are turned back into command text and go through
//! [`command::parse`], so both platforms share one set of checks; those
//! whose arguments are free text next to typed values (`new`), and `/oncall`
//! and `/page`, are built directly.

use crate::chat::command::{
    self, Command, INCIDENT_USAGE, IncidentAction, ONCALL_USAGE, PAGE_USAGE, PageTarget,
    UsageError, UserRef,
};
use crate::incident::{IncidentId, Severity};
use serde_json::Value;
use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption};

/// The longest incident title (as in the text parser).
const TITLE_MAX: u16 = 200;
/// The longest note (as in the text parser).
const NOTE_MAX: u16 = 3000;
/// The longest status update (as in the text parser).
const UPDATE_MAX: u16 = crate::incident::UPDATE_MAX as u16;

fn usage(problem: impl Into<String>, usage: &'static str) -> UsageError {
    UsageError {
        problem: problem.into(),
        usage,
    }
}

fn string(name: &str, description: &str, required: bool) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::String, name, description).required(required)
}

fn incident_option() -> CreateCommandOption {
    string(
        "incident",
        "The incident, like INC-42 (default: this channel's)",
        false,
    )
    .max_length(24)
}

fn severity_option(name: &str, required: bool) -> CreateCommandOption {
    let mut o = string(name, "How bad", required);
    for s in ["sev1", "sev2", "sev3", "sev4"] {
        o = o.add_string_choice(s.to_ascii_uppercase(), s);
    }
    o
}

fn sub(name: &str, description: &str, options: Vec<CreateCommandOption>) -> CreateCommandOption {
    let mut o = CreateCommandOption::new(CommandOptionType::SubCommand, name, description);
    for opt in options {
        o = o.add_sub_option(opt);
    }
    o
}

/// `/incident`, `/oncall` and `/page`, as registered in the guild.
pub fn definitions() -> Vec<CreateCommand> {
    let on = |mut v: Vec<CreateCommandOption>| {
        v.push(incident_option());
        v
    };
    let incident = [
        sub(
            "new",
            "Open an incident",
            vec![
                string("title", "What is wrong", true).max_length(TITLE_MAX),
                severity_option("severity", false),
            ],
        ),
        sub("ack", "Acknowledge (stops paging)", on(vec![])),
        sub(
            "resolve",
            "Resolve",
            on(vec![
                string("note", "What fixed it", false).max_length(NOTE_MAX),
            ]),
        ),
        sub("escalate", "Page the next escalation step now", on(vec![])),
        sub(
            "snooze",
            "Pause paging",
            on(vec![
                string("duration", "How long, like 30m or 2h", true).max_length(20),
            ]),
        ),
        sub("status", "Show the incident", on(vec![])),
        sub(
            "severity",
            "Change the severity",
            on(vec![severity_option("level", true)]),
        ),
        sub(
            "role",
            "Give someone a role",
            on(vec![
                string("role", "Which role", true)
                    .add_string_choice("Commander", "commander")
                    .add_string_choice("Comms", "comms")
                    .add_string_choice("Scribe", "scribe"),
                CreateCommandOption::new(CommandOptionType::User, "user", "Who").required(true),
            ]),
        ),
        sub(
            "note",
            "Add a note; 'action: ...' adds an action item",
            on(vec![string("text", "The note", true).max_length(NOTE_MAX)]),
        ),
        sub(
            "update",
            "Post a status update for stakeholders",
            on(vec![
                string("text", "What stakeholders should read", true).max_length(UPDATE_MAX),
            ]),
        ),
        sub("public", "Show it on the public status page", on(vec![])),
        sub("private", "Take it off the public status page", on(vec![])),
        sub("summary", "Show the summary", on(vec![])),
        sub(
            "login",
            "A one-time link that signs you in to the web console",
            vec![],
        ),
        sub(
            "runbook",
            "Runbooks",
            on(vec![string("args", "show, or a runbook name", false)]),
        ),
        sub(
            "step",
            "Runbook steps",
            on(vec![string("args", "done or skip, and a step", true)]),
        ),
        sub(
            "phase",
            "Runbook phases",
            on(vec![string("args", "next", true)]),
        ),
        sub(
            "drill",
            "Rehearse with a drill incident",
            vec![string("runbook", "The runbook to drill", false)],
        ),
        sub("help", "How to use /incident", vec![]),
    ];
    let oncall = [
        sub(
            "show",
            "Who is on call now and next",
            vec![string("schedule", "Only this schedule", false)],
        ),
        sub(
            "cover",
            "Put someone on call from now",
            vec![
                CreateCommandOption::new(CommandOptionType::User, "user", "Who covers")
                    .required(true),
                string("duration", "How long, like 4h", true).max_length(20),
                string("schedule", "Which schedule (default: the first)", false),
            ],
        ),
    ];
    let page = [
        string("message", "Why you are paging", true).max_length(TITLE_MAX),
        CreateCommandOption::new(CommandOptionType::User, "user", "Page this person"),
        string(
            "schedule",
            "Page whoever is on call in this schedule",
            false,
        ),
    ];
    let maintenance = [
        sub(
            "start",
            "Silence a service's alerts for a while",
            vec![
                string("service", "The service", true).max_length(100),
                string("duration", "How long, like 2h", true).max_length(20),
                string("reason", "Why", false).max_length(TITLE_MAX),
            ],
        ),
        sub(
            "end",
            "End a window now; what still fires is paged",
            vec![string("id", "The window (default: the only active one)", false).max_length(40)],
        ),
        sub("list", "The windows, active and coming", vec![]),
    ];
    vec![
        CreateCommand::new("incident")
            .description("Work an incident")
            .set_options(incident.into()),
        CreateCommand::new("oncall")
            .description("Who is on call; cover a shift")
            .set_options(oncall.into()),
        CreateCommand::new("page")
            .description("Open an incident and page someone directly")
            .set_options(page.into()),
        CreateCommand::new("maintenance")
            .description("Silence a service for a while; end or list windows")
            .set_options(maintenance.into()),
    ]
}

/// The named options of an options array, as `(name, value)`; a
/// subcommand's value is its own options array.
struct Options<'a>(Vec<(&'a str, &'a Value)>);

impl<'a> Options<'a> {
    fn of(options: &'a Value) -> Self {
        Self(
            options
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .filter_map(|o| {
                    let name = o.get("name")?.as_str()?;
                    let value = o.get("value").or_else(|| o.get("options"))?;
                    Some((name, value))
                })
                .collect(),
        )
    }

    /// The first option that is a subcommand: its name and options.
    fn subcommand(options: &'a Value) -> Option<(&'a str, Options<'a>)> {
        let o = options.as_array()?.first()?;
        let name = o.get("name")?.as_str()?;
        Some((name, Options::of(o.get("options").unwrap_or(&Value::Null))))
    }

    /// A string (or snowflake) option, trimmed; empty counts as absent.
    fn text(&self, name: &str) -> Option<String> {
        let v = self.0.iter().find(|(n, _)| *n == name)?.1;
        let s = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        (!s.is_empty()).then_some(s)
    }
}

fn required(o: &Options<'_>, name: &str, usage_text: &'static str) -> Result<String, UsageError> {
    o.text(name)
        .ok_or_else(|| usage(format!("'{name}' is required."), usage_text))
}

/// The [`Command`] of an application command invocation: its name and its
/// `options` array as Discord sends it.
pub fn to_command(name: &str, options: &Value) -> Result<Command, UsageError> {
    match name {
        "incident" => incident(options),
        "oncall" => oncall(options),
        "page" => page(options),
        "maintenance" => maintenance(options),
        other => Err(usage(
            format!("Unknown command '/{other}'."),
            "Commands: /incident, /oncall, /page, /maintenance",
        )),
    }
}

fn maintenance(options: &Value) -> Result<Command, UsageError> {
    use crate::chat::command::{MAINTENANCE_USAGE, MaintenanceAction};
    let Some((sub, o)) = Options::subcommand(options) else {
        return Ok(Command::Maintenance(MaintenanceAction::List));
    };
    let action = match sub {
        "start" => {
            let service = required(&o, "service", MAINTENANCE_USAGE)?;
            let raw = required(&o, "duration", MAINTENANCE_USAGE)?;
            let duration = crate::chat::command::parse_duration(&raw).ok_or_else(|| {
                usage(
                    format!("'{raw}' is not a duration like 2h (at most 30 days)."),
                    MAINTENANCE_USAGE,
                )
            })?;
            MaintenanceAction::Start {
                service,
                duration,
                reason: o.text("reason"),
            }
        }
        "end" => MaintenanceAction::End { id: o.text("id") },
        "list" => MaintenanceAction::List,
        other => {
            return Err(usage(
                format!("Unknown maintenance command '{other}'."),
                MAINTENANCE_USAGE,
            ));
        }
    };
    Ok(Command::Maintenance(action))
}

fn incident(options: &Value) -> Result<Command, UsageError> {
    let Some((sub, o)) = Options::subcommand(options) else {
        return Ok(Command::Help);
    };
    let id = match o.text("incident") {
        Some(raw) => Some(raw.parse::<IncidentId>().map_err(|_| {
            usage(
                format!("'{raw}' is not an incident id like INC-42."),
                INCIDENT_USAGE,
            )
        })?),
        None => None,
    };
    let words = match sub {
        "help" => return Ok(Command::Help),
        "new" => {
            let title = required(&o, "title", INCIDENT_USAGE)?;
            if title.chars().count() > usize::from(TITLE_MAX) {
                return Err(usage(
                    "The title is longer than 200 characters.",
                    INCIDENT_USAGE,
                ));
            }
            let severity =
                match o.text("severity") {
                    Some(s) => Some(Severity::from_sender(&s).ok_or_else(|| {
                        usage(format!("'{s}' is not a severity."), INCIDENT_USAGE)
                    })?),
                    None => None,
                };
            return Ok(Command::Incident {
                id: None,
                action: IncidentAction::New { title, severity },
            });
        }
        "ack" | "escalate" | "status" | "summary" | "public" | "private" | "login" => {
            sub.to_string()
        }
        "resolve" => match o.text("note") {
            Some(note) => format!("resolve {note}"),
            None => "resolve".into(),
        },
        "snooze" => format!("snooze {}", required(&o, "duration", INCIDENT_USAGE)?),
        "severity" => format!("severity {}", required(&o, "level", INCIDENT_USAGE)?),
        "role" => format!(
            "role {} <@{}>",
            required(&o, "role", INCIDENT_USAGE)?,
            required(&o, "user", INCIDENT_USAGE)?
        ),
        "note" => format!("note {}", required(&o, "text", INCIDENT_USAGE)?),
        "update" => format!("update {}", required(&o, "text", INCIDENT_USAGE)?),
        "runbook" | "step" | "phase" => {
            format!("{sub} {}", o.text("args").unwrap_or_default())
        }
        "drill" => format!("drill {}", o.text("runbook").unwrap_or_default()),
        other => {
            return Err(usage(
                format!("Unknown subcommand '{other}'."),
                INCIDENT_USAGE,
            ));
        }
    };
    let text = match id {
        Some(id) => format!("{id} {words}"),
        None => words,
    };
    command::parse("incident", &text)
}

fn oncall(options: &Value) -> Result<Command, UsageError> {
    let Some((sub, o)) = Options::subcommand(options) else {
        return Ok(Command::OnCall { schedule: None });
    };
    match sub {
        "show" => Ok(Command::OnCall {
            schedule: o.text("schedule"),
        }),
        "cover" => {
            let user = required(&o, "user", ONCALL_USAGE)?;
            let raw = required(&o, "duration", ONCALL_USAGE)?;
            let duration = command::parse_duration(&raw).ok_or_else(|| {
                usage(format!("'{raw}' is not a duration like 4h."), ONCALL_USAGE)
            })?;
            Ok(Command::Cover {
                user: UserRef::Platform(user),
                duration,
                schedule: o.text("schedule"),
            })
        }
        other => Err(usage(
            format!("Unknown subcommand '{other}'."),
            ONCALL_USAGE,
        )),
    }
}

fn page(options: &Value) -> Result<Command, UsageError> {
    let o = Options::of(options);
    let message = required(&o, "message", PAGE_USAGE)?;
    let target = match (o.text("user"), o.text("schedule")) {
        (Some(user), None) => PageTarget::User(UserRef::Platform(user)),
        (None, Some(schedule)) => PageTarget::Schedule(schedule),
        _ => {
            return Err(usage(
                "Give either a user or a schedule to page.",
                PAGE_USAGE,
            ));
        }
    };
    Ok(Command::Page { target, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::command::Role;
    use serde_json::json;

    fn sub(name: &str, options: Value) -> Value {
        json!([{"name": name, "type": 1, "options": options}])
    }

    fn opt(name: &str, kind: u8, value: &str) -> Value {
        json!({"name": name, "type": kind, "value": value})
    }

    #[test]
    fn definitions_snapshot() {
        insta::assert_json_snapshot!(serde_json::to_value(definitions()).unwrap());
    }

    #[test]
    fn incident_subcommands_become_the_text_parsers_commands() {
        let inc = |s: &str, options: Value| to_command("incident", &sub(s, options));
        let named = |action| Command::Incident {
            id: Some(IncidentId(7)),
            action,
        };
        let here = |action| Command::Incident { id: None, action };
        assert_eq!(inc("ack", json!([])), Ok(here(IncidentAction::Ack)));
        assert_eq!(
            inc("ack", json!([opt("incident", 3, "INC-7")])),
            Ok(named(IncidentAction::Ack))
        );
        assert_eq!(
            inc("ack", json!([opt("incident", 3, "7")])),
            Ok(named(IncidentAction::Ack))
        );
        assert!(inc("ack", json!([opt("incident", 3, "banana")])).is_err());
        assert_eq!(
            inc("resolve", json!([opt("note", 3, "rolled back  v2")])),
            Ok(here(IncidentAction::Resolve {
                note: Some("rolled back  v2".into())
            }))
        );
        assert_eq!(
            inc("escalate", json!([])),
            Ok(here(IncidentAction::Escalate))
        );
        assert_eq!(
            inc("snooze", json!([opt("duration", 3, "30m")])),
            Ok(here(IncidentAction::Snooze {
                duration: std::time::Duration::from_secs(1800)
            }))
        );
        assert!(inc("snooze", json!([opt("duration", 3, "forever")])).is_err());
        assert_eq!(inc("status", json!([])), Ok(here(IncidentAction::Status)));
        assert_eq!(inc("summary", json!([])), Ok(here(IncidentAction::Summary)));
        assert_eq!(
            inc("severity", json!([opt("level", 3, "sev1")])),
            Ok(here(IncidentAction::Severity(Severity::Sev1)))
        );
        assert_eq!(
            inc(
                "role",
                json!([
                    opt("role", 3, "commander"),
                    opt("user", 6, "80351110224678912")
                ])
            ),
            Ok(here(IncidentAction::Role {
                role: Role::Commander,
                user: UserRef::Platform("80351110224678912".into())
            }))
        );
        assert_eq!(
            inc("note", json!([opt("text", 3, "action: add an alert")])),
            Ok(here(IncidentAction::Note("action: add an alert".into())))
        );
        assert_eq!(
            inc("update", json!([opt("text", 3, "rolling back now")])),
            Ok(here(IncidentAction::Update("rolling back now".into())))
        );
        assert_eq!(
            inc("public", json!([])),
            Ok(here(IncidentAction::Public(true)))
        );
        assert_eq!(
            inc("private", json!([])),
            Ok(here(IncidentAction::Public(false)))
        );
        assert!(inc("update", json!([])).is_err());
        assert_eq!(inc("login", json!([])), Ok(Command::Login));
        assert_eq!(
            inc("runbook", json!([])),
            Ok(here(IncidentAction::Runbook(vec![])))
        );
        assert_eq!(
            inc("step", json!([opt("args", 3, "done 2")])),
            Ok(here(IncidentAction::Step(vec!["done".into(), "2".into()])))
        );
        assert_eq!(
            inc("phase", json!([opt("args", 3, "next")])),
            Ok(here(IncidentAction::Phase(vec!["next".into()])))
        );
        assert_eq!(
            inc("drill", json!([opt("runbook", 3, "db-failover")])),
            Ok(here(IncidentAction::Drill(Some("db-failover".into()))))
        );
        assert_eq!(inc("help", json!([])), Ok(Command::Help));
        // A title ending in a severity word stays whole: options are typed.
        assert_eq!(
            inc("new", json!([opt("title", 3, "Disk critical")])),
            Ok(here(IncidentAction::New {
                title: "Disk critical".into(),
                severity: None
            }))
        );
        assert_eq!(
            inc(
                "new",
                json!([
                    opt("title", 3, "Login failures"),
                    opt("severity", 3, "sev2")
                ])
            ),
            Ok(here(IncidentAction::New {
                title: "Login failures".into(),
                severity: Some(Severity::Sev2)
            }))
        );
        assert!(inc("new", json!([opt("title", 3, &"x".repeat(201))])).is_err());
        assert!(inc("frobnicate", json!([])).is_err());
    }

    #[test]
    fn oncall_and_page() {
        assert_eq!(
            to_command("oncall", &sub("show", json!([]))),
            Ok(Command::OnCall { schedule: None })
        );
        assert_eq!(
            to_command(
                "oncall",
                &sub("show", json!([opt("schedule", 3, "primary")]))
            ),
            Ok(Command::OnCall {
                schedule: Some("primary".into())
            })
        );
        assert_eq!(
            to_command(
                "oncall",
                &sub(
                    "cover",
                    json!([opt("user", 6, "42"), opt("duration", 3, "4h")])
                )
            ),
            Ok(Command::Cover {
                user: UserRef::Platform("42".into()),
                duration: std::time::Duration::from_secs(4 * 3600),
                schedule: None
            })
        );
        assert!(
            to_command(
                "oncall",
                &sub(
                    "cover",
                    json!([opt("user", 6, "42"), opt("duration", 3, "soon")])
                )
            )
            .is_err()
        );
        assert_eq!(
            to_command(
                "page",
                &json!([opt("message", 3, "checkout down"), opt("user", 6, "42")])
            ),
            Ok(Command::Page {
                target: PageTarget::User(UserRef::Platform("42".into())),
                message: "checkout down".into()
            })
        );
        assert_eq!(
            to_command(
                "page",
                &json!([
                    opt("message", 3, "checkout down"),
                    opt("schedule", 3, "primary")
                ])
            ),
            Ok(Command::Page {
                target: PageTarget::Schedule("primary".into()),
                message: "checkout down".into()
            })
        );
        assert!(to_command("page", &json!([opt("message", 3, "who?")])).is_err());
        assert!(to_command("nope", &json!([])).is_err());
    }

    /// Every subcommand and option the parser reads is registered, and the
    /// other way round.
    #[test]
    fn definitions_match_the_parser() {
        let defs = serde_json::to_value(definitions()).unwrap();
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&defs), ["incident", "oncall", "page", "maintenance"]);
        for cmd in defs.as_array().unwrap() {
            let name = cmd["name"].as_str().unwrap();
            assert!(cmd["description"].as_str().unwrap().len() <= 100);
            let subs = cmd["options"].as_array().unwrap();
            assert!(subs.len() <= 25);
            let invocations: Vec<Value> = if subs.iter().all(|s| s["type"] == 1) {
                subs.iter()
                    .map(|s| {
                        let opts: Vec<Value> = s["options"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .filter(|o| o["required"] == true)
                            .map(sample)
                            .collect();
                        sub(s["name"].as_str().unwrap(), json!(opts))
                    })
                    .collect()
            } else {
                let mut opts: Vec<Value> = subs
                    .iter()
                    .filter(|o| o["required"] == true)
                    .map(sample)
                    .collect();
                opts.push(opt("schedule", 3, "primary"));
                vec![json!(opts)]
            };
            for inv in invocations {
                assert!(
                    to_command(name, &inv).is_ok(),
                    "/{name} {inv} does not parse: {:?}",
                    to_command(name, &inv)
                );
            }
        }
    }

    fn sample(o: &Value) -> Value {
        let name = o["name"].as_str().unwrap();
        let value = match (name, o["type"].as_u64().unwrap()) {
            (_, 6) => "80351110224678912".to_string(),
            (_, _) if o["choices"].as_array().is_some_and(|c| !c.is_empty()) => {
                o["choices"][0]["value"].as_str().unwrap().to_string()
            }
            ("duration", _) => "30m".into(),
            _ => "something".into(),
        };
        opt(name, o["type"].as_u64().unwrap() as u8, &value)
    }
}
