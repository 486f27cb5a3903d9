use super::*;
use proptest::prelude::*;

fn inc(text: &str) -> Result<Command, UsageError> {
    parse("/incident", text)
}

#[test]
fn incident_commands() {
    assert_eq!(
        inc("ack").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Ack
        }
    );
    assert_eq!(
        inc("INC-42 resolve rolled back the deploy").unwrap(),
        Command::Incident {
            id: Some(IncidentId(42)),
            action: IncidentAction::Resolve {
                note: Some("rolled back the deploy".into())
            }
        }
    );
    assert_eq!(
        inc("new  API error rate   above 5%  sev2").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::New {
                title: "API error rate   above 5%".into(),
                severity: Some(Severity::Sev2)
            }
        }
    );
    assert_eq!(
        inc("new Checkout broken").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::New {
                title: "Checkout broken".into(),
                severity: None
            }
        }
    );
    assert_eq!(
        inc("snooze 30m").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Snooze {
                duration: std::time::Duration::from_secs(1800)
            }
        }
    );
    assert_eq!(
        inc("role commander <@U123|alice>").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Role {
                role: Role::Commander,
                user: UserRef::Platform("U123".into())
            }
        }
    );
    assert_eq!(
        inc("role scribe <@!998877>").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Role {
                role: Role::Scribe,
                user: UserRef::Platform("998877".into())
            }
        }
    );
    assert_eq!(
        inc("note action: add an alert on queue depth").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Note("action: add an alert on queue depth".into())
        }
    );
    assert_eq!(
        inc("INC-4 update  Checkout is back; we keep watching.").unwrap(),
        Command::Incident {
            id: Some(IncidentId(4)),
            action: IncidentAction::Update("Checkout is back; we keep watching.".into())
        }
    );
    assert_eq!(inc("login").unwrap(), Command::Login);
    assert_eq!(inc("Sign-In").unwrap(), Command::Login);
    assert!(
        inc("INC-4 login")
            .unwrap_err()
            .problem
            .contains("'login' takes nothing")
    );
    assert!(inc("login bob").is_err());
    assert!(
        inc("update")
            .unwrap_err()
            .problem
            .contains("needs the text")
    );
    assert!(
        inc(&format!("update {}", "x".repeat(2001)))
            .unwrap_err()
            .problem
            .contains("longer than 2000")
    );
    assert_eq!(
        inc("public").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Public(true)
        }
    );
    assert_eq!(
        inc("private").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Public(false)
        }
    );
    assert_eq!(
        inc("severity SEV1").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Severity(Severity::Sev1)
        }
    );
    assert_eq!(
        inc("INC-3").unwrap(),
        Command::Incident {
            id: Some(IncidentId(3)),
            action: IncidentAction::Status
        }
    );
    assert_eq!(inc("").unwrap(), Command::Help);
    assert_eq!(
        inc("runbook show").unwrap(),
        Command::Incident {
            id: None,
            action: IncidentAction::Runbook(vec!["show".into()])
        }
    );
}

#[test]
fn bad_incident_commands_get_usage() {
    for (text, needle) in [
        ("frobnicate", "Unknown subcommand 'frobnicate'"),
        ("new", "needs a title"),
        ("new sev1", "needs a title"),
        ("new Payment timeouts sev9", "'sev9' is not a severity"),
        ("new Payment timeouts SEV0", "'SEV0' is not a severity"),
        ("snooze", "duration"),
        ("snooze forever", "duration"),
        ("snooze 90d", "duration"),
        ("severity purple", "sev1"),
        ("role king <@U1>", "commander"),
        ("role comms", "@user"),
        ("note", "needs some text"),
        ("INC-4 new thing", "do not name one"),
    ] {
        let e = inc(text).unwrap_err();
        assert!(e.problem.contains(needle), "{text}: {e}");
        assert_eq!(e.usage, INCIDENT_USAGE);
    }
}

#[test]
fn oncall_and_page() {
    assert_eq!(
        parse("oncall", "").unwrap(),
        Command::OnCall { schedule: None }
    );
    assert_eq!(
        parse("/oncall", "primary").unwrap(),
        Command::OnCall {
            schedule: Some("primary".into())
        }
    );
    assert_eq!(
        parse("/oncall", "cover <@U9> 4h").unwrap(),
        Command::Cover {
            user: UserRef::Platform("U9".into()),
            duration: std::time::Duration::from_secs(4 * 3600),
            schedule: None
        }
    );
    assert!(
        parse("/oncall", "cover <@U9>")
            .unwrap_err()
            .problem
            .contains("duration")
    );
    assert_eq!(
        parse("/page", "<@U7> checkout is down for EU").unwrap(),
        Command::Page {
            target: PageTarget::User(UserRef::Platform("U7".into())),
            message: "checkout is down for EU".into()
        }
    );
    assert_eq!(
        parse("/page", "primary db replica lag").unwrap(),
        Command::Page {
            target: PageTarget::Schedule("primary".into()),
            message: "db replica lag".into()
        }
    );
    assert!(
        parse("/page", "primary")
            .unwrap_err()
            .problem
            .contains("why")
    );
    assert!(
        parse("/frob", "x")
            .unwrap_err()
            .problem
            .contains("Unknown command")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Any text: a command or a usage message, never a panic.
    #[test]
    fn never_panics(cmd in prop::sample::select(vec!["incident", "/oncall", "page", "x"]), text in "\\PC{0,80}") {
        match parse(cmd, &text) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.problem.is_empty() && !e.usage.is_empty()),
        }
    }

    /// Word salad from the command vocabulary, the likeliest input to trip the parser.
    #[test]
    fn vocabulary_salad(words in prop::collection::vec(prop::sample::select(vec![
        "new", "ack", "resolve", "snooze", "30m", "role", "commander", "<@U1>", "<@!>", "<@|x>", "note",
        "action:", "INC-1", "inc-0", "sev1", "severity", "cover", "help", "  ", "é", "step", "done",
    ]), 0..8)) {
        let text = words.join(" ");
        for cmd in ["incident", "oncall", "page", "maintenance"] {
            let _ = parse(cmd, &text);
        }
    }
}

#[test]
fn maintenance_start_end_and_list_parse() {
    use super::MaintenanceAction as M;
    assert_eq!(
        parse("/maintenance", "start api 2h db upgrade").unwrap(),
        Command::Maintenance(M::Start {
            service: "api".into(),
            duration: std::time::Duration::from_secs(7200),
            reason: Some("db upgrade".into()),
        })
    );
    assert_eq!(
        parse("maintenance", "start api 30m").unwrap(),
        Command::Maintenance(M::Start {
            service: "api".into(),
            duration: std::time::Duration::from_secs(1800),
            reason: None,
        })
    );
    assert_eq!(
        parse("maintenance", "end").unwrap(),
        Command::Maintenance(M::End { id: None })
    );
    assert_eq!(
        parse("maintenance", "end 3").unwrap(),
        Command::Maintenance(M::End {
            id: Some("3".into())
        })
    );
    assert_eq!(
        parse("maintenance", "").unwrap(),
        Command::Maintenance(M::List)
    );
    let e = parse("maintenance", "start api soon").unwrap_err();
    assert!(e.problem.contains("'soon' is not a duration"), "{e}");
    let e = parse("maintenance", "start api").unwrap_err();
    assert!(e.problem.contains("needs a service and a duration"), "{e}");
    let e = parse("maintenance", "stop").unwrap_err();
    assert!(e.to_string().contains("/maintenance start"), "{e}");
}
