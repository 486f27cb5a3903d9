//! On-call over HTTP and the CLI: who is on call, shifts, iCal, overrides.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use serde_json::json;
use std::sync::Arc;
use tocsin::clock::ManualClock;

async fn app() -> (TestApp, Receiver) {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(
        Arc::new(ManualClock::new(t0())),
        Some("payments"),
        &paging_config(&recv, smtp.port, ""),
    )
    .await;
    (app, recv)
}

#[tokio::test]
async fn who_is_on_call_now_and_next() {
    let (app, _recv) = app().await;
    let (s, b) = app.get("/v1/oncall").await;
    assert_eq!(s, 200, "{b}");
    let primary = &b["oncall"][0];
    assert_eq!(primary["schedule"], "primary");
    assert_eq!(primary["on_call"]["user"], "alice");
    assert_eq!(primary["on_call"]["end"], "2026-11-30T09:00:00Z");
    assert_eq!(primary["next"]["user"], "bob");
    assert_eq!(primary["next"]["start"], "2026-11-30T09:00:00Z");
    app.stop().await;
}

#[tokio::test]
async fn shifts_and_ical() {
    let (app, _recv) = app().await;
    let (s, b) = app
        .get("/v1/schedules/primary/shifts?from=2026-11-29T00:00:00Z&to=2026-12-14T00:00:00Z")
        .await;
    assert_eq!(s, 200, "{b}");
    let shifts: Vec<(String, String, String)> = b["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap().to_string(),
                s["start"].as_str().unwrap().to_string(),
                s["end"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let owned = |u: &str, a: &str, b: &str| (u.to_string(), a.to_string(), b.to_string());
    assert_eq!(
        shifts,
        vec![
            owned("alice", "2026-11-29T00:00:00Z", "2026-11-30T09:00:00Z"),
            owned("bob", "2026-11-30T09:00:00Z", "2026-12-07T09:00:00Z"),
            owned("alice", "2026-12-07T09:00:00Z", "2026-12-14T00:00:00Z"),
        ]
    );
    let resp = app
        .http
        .get(app.url("/v1/schedules/primary/ical"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    let ical = resp.text().await.unwrap();
    assert!(ical.starts_with("BEGIN:VCALENDAR"), "{ical}");
    assert!(ical.contains("SUMMARY:On call: bob"), "{ical}");
    assert!(ical.contains("DTSTART:20261130T090000Z"), "{ical}");
    let (s, b) = app.get("/v1/schedules/nope/shifts").await;
    assert_eq!(
        (s, b["message"].as_str()),
        (404, Some("schedule 'nope' does not exist"))
    );
    // A start weeks ahead without an end: the 7 days from there.
    let (s, b) = app
        .get("/v1/schedules/primary/shifts?from=2027-01-04T09:00:00Z")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["to"], "2027-01-11T09:00:00Z");
    // A bad override time names the field and the format.
    let (s, b) = app
        .post_with_token(
            "/v1/schedules/primary/overrides",
            Some(API_TOKEN),
            &json!({"user": "carol", "start": "tomorrow", "end": "2026-12-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(s, 400);
    let m = b["message"].as_str().unwrap();
    assert!(m.contains("'start'") && m.contains("RFC 3339"), "{m}");
    let (s, _) = app
        .get("/v1/schedules/primary/shifts?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z")
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .get("/v1/schedules/primary/shifts?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await;
    assert_eq!(s, 400);
    app.stop().await;
}

#[tokio::test]
async fn an_override_takes_the_pages() {
    let (app, recv) = app().await;
    let path = "/v1/schedules/primary/overrides";
    let body = json!({"user": "carol", "start": "2026-11-29T09:00:00Z", "end": "2026-11-29T12:00:00Z", "by": "alice"});
    assert_eq!(app.post_with_token(path, None, &body).await.0, 401);
    let (s, b) = app
        .post_with_token(path, Some(API_TOKEN), &json!({"user": "mallory", "start": "2026-11-29T09:00:00Z", "end": "2026-11-29T12:00:00Z"}))
        .await;
    assert_eq!(
        (s, b["message"].as_str()),
        (400, Some("unknown user 'mallory'"))
    );
    let (s, _) = app
        .post_with_token(path, Some(API_TOKEN), &json!({"user": "carol", "start": "2026-11-29T12:00:00Z", "end": "2026-11-29T09:00:00Z"}))
        .await;
    assert_eq!(s, 400);
    let (s, b) = app.post_with_token(path, Some(API_TOKEN), &body).await;
    assert_eq!(s, 201, "{b}");
    let id = b["override"]["id"].as_u64().unwrap();
    assert_eq!(b["coverage"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["coverage"][0]["user"], "carol", "{b}");
    assert_eq!(b["coverage"][0]["source"], "override", "{b}");
    assert_eq!(b["overrides_overlapped"], json!([]), "{b}");
    // An override made later over part of it wins there (the most recently
    // created wins), and the answer shows the whole resulting coverage:
    // carol, bob, carol again.
    let (s, later) = app
        .post_with_token(
            path,
            Some(API_TOKEN),
            &json!({"user": "bob", "start": "2026-11-29T10:00:00Z", "end": "2026-11-29T11:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201, "{later}");
    let who: Vec<(&str, &str)> = later["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["user"].as_str().unwrap(), s["start"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("carol", "2026-11-29T09:00:00Z"),
            ("bob", "2026-11-29T10:00:00Z"),
            ("carol", "2026-11-29T11:00:00Z")
        ],
        "{later}"
    );
    assert_eq!(later["overrides_overlapped"][0]["id"], id, "{later}");
    let later_id = later["override"]["id"].as_u64().unwrap();
    for extra in [later_id] {
        let resp = app
            .http
            .delete(app.url(&format!("{path}/{extra}")))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }

    let (_, b) = app.get("/v1/oncall").await;
    assert_eq!(b["oncall"][0]["on_call"]["user"], "carol");
    assert_eq!(b["oncall"][0]["on_call"]["source"], "override");
    assert_eq!(b["oncall"][0]["next"]["user"], "alice");

    // The page goes to whoever is on call when the step runs: carol.
    app.pd("trigger", "ovr", "Checkout latency").await;
    app.tick().await;
    assert_eq!(recv.at("users/carol").len(), 1);
    assert_eq!(recv.at("users/alice").len(), 0);

    let (_, list) = app.get(path).await;
    assert_eq!(list["overrides"][0]["created_by"], "alice");
    let resp = app
        .http
        .delete(app.url(&format!("{path}/{id}")))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (_, b) = app.get("/v1/oncall").await;
    assert_eq!(b["oncall"][0]["on_call"]["user"], "alice");
    let resp = app
        .http
        .delete(app.url(&format!("{path}/{id}")))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn oncall_cli_shows_and_overrides() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start_with(
        dir.path(),
        port,
        Some("payments"),
        &paging_config(&recv, 2525, ""),
    )
    .await;
    let run = |args: &[&str]| server.cli(args);
    let shown = run(&["oncall", "primary"]);
    assert!(shown.starts_with("primary (UTC)"), "{shown}");
    assert!(
        shown.contains("now:  alice") || shown.contains("now:  bob"),
        "{shown}"
    );
    let made = run(&[
        "oncall",
        "override",
        "--schedule",
        "primary",
        "--user",
        "carol",
        "--for",
        "2h",
    ]);
    assert!(made.contains("on primary: carol from"), "{made}");
    assert!(made.contains("On call over that time now:"), "{made}");
    assert!(made.contains("carol (override)"), "{made}");
    let shown = run(&["oncall", "primary"]);
    assert!(shown.contains("now:  carol until"), "{shown}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["oncall", "secondary", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no schedule named 'secondary'"));
}

#[test]
fn check_reports_every_paging_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[services]]
name = "api"
escalation_policy = "ghost-policy"
[[users]]
name = "alice"
contact_methods = [{ kind = "email" }]
[[schedules]]
name = "primary"
time_zone = "Mars/Olympus"
[[schedules.layers]]
name = "weekly"
users = ["alice", "zed"]
start = "2026-01-05T09:00:00"
handoff = "0 9 * * Mon"
[[escalation_policies]]
name = "empty"
[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
targets = [{ user = "nobody" }, { schedule = "secondary" }]
delay = "0s"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "services[0].escalation_policy: unknown escalation policy 'ghost-policy'",
        "users[0].contact_methods[0]",
        "schedules[0].time_zone",
        "schedules[0].layers[0].users",
        "schedules[0].layers[0].handoff",
        "escalation_policies[0].steps: a policy needs at least one step",
        "escalation_policies[1].steps[0].delay",
        "escalation_policies[1].steps[0].targets[0]: unknown user 'nobody'",
        "escalation_policies[1].steps[0].targets[1]: unknown schedule 'secondary'",
    ] {
        assert!(err.contains(expected), "missing '{expected}' in:\n{err}");
    }
}

/// The iCal feed keeps each shift whole: a shift that began before the
/// feed's window keeps its DTSTART and UID as the window moves, and DTSTAMP
/// says when the feed was made.
#[tokio::test]
async fn ical_events_stay_stable_as_time_passes() {
    let clock = ManualClock::new(t0());
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(
        Arc::new(clock.clone()),
        Some("payments"),
        &paging_config(&recv, smtp.port, ""),
    )
    .await;
    let uids = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("UID:"))
            .map(|u| u.trim().to_string())
            .collect()
    };
    let first = app.get_text("/v1/schedules/primary/ical").await;
    clock.advance(chrono::Duration::hours(1));
    let later = app.get_text("/v1/schedules/primary/ical").await;
    assert_eq!(
        uids(&first)[0],
        uids(&later)[0],
        "the first event is the same"
    );
    let first_start = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("DTSTART:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(first_start(&first), first_start(&later));
    let stamp = (t0() + chrono::Duration::hours(1))
        .format("DTSTAMP:%Y%m%dT%H%M%SZ")
        .to_string();
    assert!(later.contains(&stamp), "{later}");
    app.stop().await;
}
