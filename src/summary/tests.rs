use super::*;
use crate::incident::{Actor, Change, Incident, IncidentId, RunbookStep, Severity};
use crate::incident::{AlertAction, AlertEvent};
use crate::templates::Templates;
use chrono::Duration;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const RUNBOOK: &str = r#"
name = "high-error-rate"
title = "High error rate"
[[phases]]
phase = "detection"
[[phases.steps]]
id = "confirm"
text = "Confirm the error rate on the dashboard."
[[phases.steps]]
id = "scope"
text = "Find which endpoints fail."
[[phases]]
phase = "containment"
[[phases.steps]]
id = "rollback"
text = "Roll back the last deploy."
evidence = true
[[phases.steps]]
id = "status-page"
text = "Post on the status page."
owner = "comms"
"#;

/// An incident scripted minute by minute, and its whole timeline.
fn scripted() -> (
    Incident,
    Vec<crate::incident::TimelineEntry>,
    crate::runbook::Runbook,
) {
    let rb = crate::runbook::parse(
        std::path::Path::new("runbooks/high-error-rate.toml"),
        RUNBOOK,
    )
    .unwrap();
    let event = AlertEvent {
        dedup_key: "api-5xx".into(),
        fingerprint: Some("api-5xx".into()),
        action: AlertAction::Trigger,
        summary: "API 5xx rate above 5%".into(),
        incident_title: None,
        source: "prometheus".into(),
        severity: Some(Severity::Sev2),
        labels: Default::default(),
        details: serde_json::Value::Null,
        links: vec![],
        left_out: None,
        expires_at: None,
    };
    let mut timeline = Vec::new();
    let step = |c: Change, timeline: &mut Vec<_>| {
        timeline.extend(c.entries);
        c.incident
    };
    let alice = || Actor::user("alice");
    let bob = || Actor::user("bob");
    let inc = step(
        Incident::open(IncidentId(42), "api", "prometheus", &event, t0()),
        &mut timeline,
    );
    let inc = step(
        inc.attach_runbook(&rb, Actor::System, t0()).unwrap(),
        &mut timeline,
    );
    let mut inc = inc;
    let mut paged = Vec::new();
    inc.record(
        &mut paged,
        t0() + Duration::seconds(1),
        Actor::System,
        crate::incident::TimelineEvent::EscalationStep {
            policy: "api".into(),
            step: 1,
            round: 1,
            notified: vec!["alice".into()],
        },
    );
    inc.record(
        &mut paged,
        t0() + Duration::seconds(2),
        Actor::System,
        crate::incident::TimelineEvent::Paged {
            recipient: "alice".into(),
            method: "slack".into(),
            attempts: 1,
        },
    );
    timeline.extend(paged);
    let at = |m: i64, s: i64| t0() + Duration::minutes(m) + Duration::seconds(s);
    let inc = step(inc.acknowledge(alice(), at(4, 12)).unwrap(), &mut timeline);
    let inc = step(
        inc.assign_role("commander", "alice", alice(), at(5, 0))
            .unwrap(),
        &mut timeline,
    );
    let inc = step(
        inc.runbook_step(
            &rb,
            RunbookStep::Done {
                step: "confirm".into(),
                note: None,
            },
            alice(),
            at(6, 0),
        )
        .unwrap(),
        &mut timeline,
    );
    let inc = step(
        inc.runbook_step(
            &rb,
            RunbookStep::Skip {
                step: "scope".into(),
                reason: "all endpoints fail".into(),
            },
            alice(),
            at(7, 0),
        )
        .unwrap(),
        &mut timeline,
    );
    let inc = step(
        inc.runbook_step(&rb, RunbookStep::NextPhase, alice(), at(8, 0))
            .unwrap(),
        &mut timeline,
    );
    let inc = step(
        inc.runbook_step(
            &rb,
            RunbookStep::Done {
                step: "rollback".into(),
                note: Some("rolled back to v41".into()),
            },
            bob(),
            at(20, 0),
        )
        .unwrap(),
        &mut timeline,
    );
    let inc = step(
        inc.add_note("error rate back under 0.1%", bob(), at(30, 0)),
        &mut timeline,
    );
    let inc = step(
        inc.add_note(
            "action: add a canary stage to the deploy",
            alice(),
            at(31, 0),
        ),
        &mut timeline,
    );
    let inc = step(
        inc.resolve(alice(), Some("rolled back".into()), at(63, 0))
            .unwrap(),
        &mut timeline,
    );
    (inc, timeline, rb)
}

#[test]
fn time_to_acknowledge_and_resolve_by_value() {
    let (inc, timeline, rb) = scripted();
    let s = build(&inc, &timeline, Some(&rb));
    assert_eq!(s.tta_seconds, Some(4 * 60 + 12));
    assert_eq!(s.ttr_seconds, Some(63 * 60));
    assert_eq!(s.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(s.pages.len(), 1);
    let r = s.runbook.as_ref().unwrap();
    assert_eq!(
        (r.done.len(), r.skipped.len(), r.not_reached.len()),
        (2, 1, 1)
    );
    assert_eq!(r.skipped[0].reason.as_deref(), Some("all endpoints fail"));
    assert_eq!(r.not_reached[0].id, "status-page");
    assert_eq!(s.action_items[0].text, "add a canary stage to the deploy");
    assert_eq!(s.notes.len(), 1);
    assert_eq!(s.timeline.len(), timeline.len());
    assert_eq!(
        s.escalation.as_deref(),
        Some("api: 1 step(s) run, reached step 1")
    );
}

#[test]
fn summary_markdown() {
    let (inc, timeline, rb) = scripted();
    let templates = Templates::load(None).unwrap();
    let md = render(&templates, &build(&inc, &timeline, Some(&rb))).unwrap();
    assert!(md.contains("| Time to acknowledge | 4m 12s |"), "{md}");
    assert!(md.contains("| Time to resolve | 1h 3m |"), "{md}");
    insta::assert_snapshot!(md);
}

#[test]
fn a_drill_says_so() {
    let (mut inc, timeline, rb) = scripted();
    inc.drill = true;
    let templates = Templates::load(None).unwrap();
    let md = render(&templates, &build(&inc, &timeline, Some(&rb))).unwrap();
    assert!(
        md.starts_with("# [DRILL] INC-42: API 5xx rate above 5%"),
        "{md}"
    );
}
