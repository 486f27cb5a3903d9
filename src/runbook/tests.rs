use super::*;
use crate::incident::{Incident, IncidentId};

use std::path::Path;

const GOOD: &str = r#"
name = "high-error-rate"
title = "High error rate"

[match]
severities = ["sev1", "sev2"]
labels = ['alertname=~"(?i).*error.*rate.*"', 'env!="staging"']

[[phases]]
phase = "detection"
[[phases.steps]]
id = "confirm"
text = "Confirm the error rate on the dashboard."
owner = "commander"

[[phases]]
phase = "containment"
[[phases.steps]]
id = "rollback"
text = "Roll back the last deploy."
evidence = true
command = "kubectl rollout undo deploy/api"
[[phases.steps]]
id = "status-page"
text = "Post on the status page."
owner = "comms"
"#;

fn parse_good() -> Runbook {
    parse(Path::new("runbooks/high-error-rate.toml"), GOOD).unwrap()
}

fn t0() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn incident_from_fixture(path: &str, service: &str) -> Incident {
    let events = crate::intake::alertmanager::parse(&crate::intake::test_support::fixture(path))
        .unwrap()
        .events;
    let mut change = Incident::open(IncidentId(1), service, "am", &events[0], t0());
    for e in &events[1..] {
        change = change.incident.apply_alert(e, t0());
    }
    change.incident
}

#[test]
fn parses_a_runbook() {
    let r = parse_good();
    assert_eq!(r.phases.len(), 2);
    assert_eq!(r.phases[1].title, "Containment");
    assert_eq!(r.phases[1].steps[0].owner, Owner::Any);
    assert!(r.phases[1].steps[0].evidence);
    assert_eq!(r.step("status-page").unwrap().0, 1);
}

#[test]
fn every_error_is_reported_with_file_and_line() {
    let bad = r#"name = "other"
title = "x"
[match]
labels = ['alertname=~"("', 'env>prod']
severities = ["sev9"]
[[phases]]
phase = "containment"
[[phases.steps]]
id = "a"
text = "one"
owner = "janitor"
[[phases]]
phase = "detection"
[[phases.steps]]
id = "a"
text = "two"
"#;
    let errors = parse(Path::new("runbooks/bad.toml"), bad).unwrap_err();
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let all = lines.join("\n");
    assert!(
        all.contains("runbooks/bad.toml:1: name 'other' must match the file name 'bad'"),
        "{all}"
    );
    assert!(
        all.contains("runbooks/bad.toml:4: bad label matcher: 'alertname=~\"(\"': bad regex"),
        "{all}"
    );
    assert!(
        all.contains("runbooks/bad.toml:4: bad label matcher: 'env>prod'"),
        "{all}"
    );
    assert!(
        all.contains("runbooks/bad.toml:5: unknown severity 'sev9'"),
        "{all}"
    );
    assert!(
        all.contains("runbooks/bad.toml:11: unknown role 'janitor'"),
        "{all}"
    );
    assert!(
        all.contains("runbooks/bad.toml:13: phase 'detection' is out of order"),
        "{all}"
    );
    assert!(
        all.contains("runbooks/bad.toml:15: duplicate step id 'a'"),
        "{all}"
    );
}

#[test]
fn unknown_fields_and_syntax_errors_have_lines() {
    let e = parse(
        Path::new("r/x.toml"),
        "name = \"x\"\ntitle = \"t\"\ncolour = 3\n[[phases]]\n",
    )
    .unwrap_err();
    assert_eq!(e[0].line, Some(3), "{e:?}");
    assert!(e[0].message.contains("unknown field `colour`"), "{e:?}");
    let e = parse(Path::new("r/x.toml"), "name = \"x\"\ntitle = \n").unwrap_err();
    assert_eq!(e[0].line, Some(2), "{e:?}");
}

#[test]
fn matches_real_alerts() {
    let r = parse_good();
    // The Alertmanager fixture: HighErrorRate, severity critical.
    let inc = incident_from_fixture("alertmanager/firing.json", "api");
    assert!(r.matches(&inc));
    let mut staging = inc.clone();
    for a in staging.alerts.values_mut() {
        a.labels.insert("env".into(), "staging".into());
    }
    assert!(!r.matches(&staging));
    let mut minor = inc.clone();
    minor.severity = crate::incident::Severity::Sev4;
    assert!(!r.matches(&minor));
    let mut scoped = r.clone();
    scoped.matcher.services = vec!["payments".into()];
    assert!(!scoped.matches(&inc));
}

#[test]
fn progress_through_steps_and_phases() {
    let r = parse_good();
    let mut p = Progress::start(&r);
    assert_eq!(
        p.next_phase(&r).unwrap_err(),
        RunbookCommandError::PhaseOpen {
            phase: "Detection and reporting".into(),
            steps: "confirm".into(),
        }
    );
    p.done(&r, "confirm", None, "alice", t0()).unwrap();
    assert_eq!(
        p.done(&r, "confirm", None, "alice", t0()),
        Err(RunbookCommandError::AlreadyFinished(
            "confirm".into(),
            "done"
        ))
    );
    assert_eq!(p.next_phase(&r).unwrap().phase, PhaseKind::Containment);
    assert_eq!(
        p.done(&r, "rollback", Some("  ".into()), "bob", t0()),
        Err(RunbookCommandError::NeedsEvidence("rollback".into()))
    );
    p.done(
        &r,
        "rollback",
        Some("rolled back to v41".into()),
        "bob",
        t0(),
    )
    .unwrap();
    assert_eq!(
        p.skip(&r, "status-page", "", "bob", t0()),
        Err(RunbookCommandError::NeedsReason("status-page".into()))
    );
    p.skip(&r, "status-page", "internal only", "bob", t0())
        .unwrap();
    assert_eq!(
        p.next_phase(&r).unwrap_err(),
        RunbookCommandError::LastPhase
    );
    assert!(matches!(
        p.done(&r, "nope", None, "a", t0()),
        Err(RunbookCommandError::UnknownStep { .. })
    ));
}

#[test]
fn every_shipped_runbook_loads_and_covers_every_phase() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let all = load_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    for name in [
        "api-credential-leak",
        "api-abuse-ddos",
        "api-data-exposure",
        "compromised-dependency",
        "service-outage",
        "high-error-rate",
    ] {
        let r = all.get(name).unwrap_or_else(|| panic!("{name} is missing"));
        let kinds: Vec<PhaseKind> = r.phases.iter().map(|p| p.phase).collect();
        assert_eq!(kinds, PhaseKind::ALL.to_vec(), "{name}");
    }
}

#[test]
fn a_missing_directory_is_no_runbooks() {
    assert!(
        load_dir(Path::new("/nonexistent/runbooks"))
            .unwrap()
            .is_empty()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
    /// Any bytes, and any edit of a good file: a runbook or errors, never a panic.
    #[test]
    fn the_loader_never_panics(cut in 0usize..GOOD.len(), insert in "\\PC{0,12}") {
        let mut text = GOOD.to_string();
        let at = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(at, &insert);
        let _ = parse(Path::new("runbooks/high-error-rate.toml"), &text);
    }
}

#[test]
fn runbooks_naming_security_tags_are_private_by_default() {
    let labels = |ls: &[&str]| Match {
        labels: ls
            .iter()
            .map(|l| matcher::LabelMatcher::parse(l).unwrap())
            .collect(),
        ..Match::default()
    };
    assert!(names_security_tags(&labels(&[r#"category="security""#])));
    assert!(names_security_tags(&labels(&[
        r#"type=~"security|abuse""#,
        r#"alertname="X""#
    ])));
    assert!(names_security_tags(&labels(&[r#"security="true""#])));
    assert!(!names_security_tags(&labels(&[r#"category!="security""#])));
    assert!(!names_security_tags(&labels(&[r#"category="capacity""#])));
    assert!(!names_security_tags(&labels(&[r#"alertname="security""#])));
    assert!(!names_security_tags(&labels(&[])));
    // The default: the good runbook names no tag; a file may say so itself.
    assert!(!parse_good().private);
    let private = GOOD.replacen("title =", "private = true\ntitle =", 1);
    assert!(
        parse(Path::new("runbooks/high-error-rate.toml"), &private)
            .unwrap()
            .private
    );
}
