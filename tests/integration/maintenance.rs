//! Maintenance windows (issue 19): an alert that arrives during a window is
//! stored and shown but pages nobody; when the window ends, what still
//! fires is paged as if it had just arrived. On the manual clock, through
//! the REST API, the config, the CLI, chat, and a real restart.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use chrono::Duration;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin::access::Scope;
use tocsin::clock::ManualClock;

struct Env {
    app: TestApp,
    clock: ManualClock,
    recv: Receiver,
    _smtp: SmtpSink,
}

async fn env(extra: &str) -> Env {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let text = format!("{}{extra}", paging_config(&recv, smtp.port, ""));
    let app = spawn_app_with(Arc::new(clock.clone()), Some("payments"), &text).await;
    Env {
        app,
        clock,
        recv,
        _smtp: smtp,
    }
}

async fn delete(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let resp = app
        .http
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn kinds(timeline: &Value) -> Vec<String> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A 2h window on payments made through the API at t0.
async fn payments_window(app: &TestApp) -> Value {
    let (s, w) = app
        .post_with_token(
            "/v1/maintenance",
            Some(API_TOKEN),
            &json!({"services": ["payments"], "duration": "2h", "reason": "db upgrade", "name": "payments db upgrade"}),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    w
}

#[tokio::test]
async fn an_alert_during_a_window_pages_nobody_and_pages_when_the_window_ends_if_still_firing() {
    let e = env("").await;
    let w = payments_window(&e.app).await;
    assert_eq!(w["id"], "1");
    assert_eq!(w["created_by"], "api");
    assert_eq!(w["active"], true);
    assert_eq!(w["end"], "2026-11-29T12:00:00Z");

    let (s, body) = e.app.pd("trigger", "db-1", "Payments DB down").await;
    assert_eq!(s, 202, "{body}");
    // Stored and visible.
    let list = e.app.incidents().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "triggered");
    assert_eq!(list[0]["suppressed"]["window"], "1");
    assert_eq!(list[0]["suppressed"]["name"], "payments db upgrade");
    let inc = e.app.incident("INC-1").await;
    let entry = timeline_entry(&inc["timeline"], "suppressed");
    assert_eq!(entry["name"], "payments db upgrade");
    assert_eq!(entry["until"], "2026-11-29T12:00:00Z");
    assert!(!kinds(&inc["timeline"]).contains(&"escalation_step".to_string()));
    // Nobody paged, nothing queued, however long we wait inside the window.
    e.app.tick().await;
    e.clock.advance(Duration::minutes(119));
    e.app.tick().await;
    assert!(e.recv.received().is_empty(), "{:?}", e.recv.received());
    let (_, n) = e.app.get("/v1/incidents/INC-1/notifications").await;
    assert_eq!(n["notifications"], json!([]), "{n}");
    let metrics = e.app.get_text("/metrics").await;
    assert!(
        metrics.contains("tocsin_maintenance_windows_active 1"),
        "{metrics}"
    );
    // The summary says which window held it.
    let summary = e.app.get_text("/v1/incidents/INC-1/summary").await;
    assert!(
        summary.contains("suppressed by maintenance window payments db upgrade (db upgrade)"),
        "{summary}"
    );

    // The window ends with the alert still firing: paged as if just arrived.
    e.clock.advance(Duration::minutes(1));
    e.app.tick().await;
    assert_eq!(e.recv.at("users/alice").len(), 1, "{:?}", e.recv.received());
    let inc = e.app.incident("INC-1").await;
    let ended = timeline_entry(&inc["timeline"], "maintenance_ended");
    assert_eq!(ended["paged"], true);
    let k = kinds(&inc["timeline"]);
    let at = |kind: &str| k.iter().position(|x| x == kind).unwrap();
    assert!(at("suppressed") < at("maintenance_ended"), "{k:?}");
    assert!(at("maintenance_ended") < at("escalation_step"), "{k:?}");
    assert!(inc["incident"]["suppressed"]["ended_at"].is_string());
    let metrics = e.app.get_text("/metrics").await;
    assert!(
        metrics.contains("tocsin_maintenance_windows_active 0"),
        "{metrics}"
    );
    // Escalation then goes on as for any alert: step 2 after 5 minutes.
    e.clock.advance(Duration::minutes(5));
    e.app.tick().await;
    assert_eq!(e.recv.at("users/carol").len(), 1);
}

#[tokio::test]
async fn an_alert_resolved_before_the_window_ends_is_never_paged() {
    let e = env("").await;
    payments_window(&e.app).await;
    e.app.pd("trigger", "db-1", "Payments DB down").await;
    e.clock.advance(Duration::minutes(30));
    let (s, body) = e.app.pd("resolve", "db-1", "").await;
    assert_eq!(s, 202, "{body}");
    e.clock.advance(Duration::hours(3));
    e.app.tick().await;
    assert!(e.recv.received().is_empty(), "{:?}", e.recv.received());
    let inc = e.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "resolved");
    assert!(!kinds(&inc["timeline"]).contains(&"maintenance_ended".to_string()));
    // An alert on another service is not held.
    let (s, _) = e
        .app
        .post_with_token(
            "/v1/maintenance",
            Some(API_TOKEN),
            &json!({"services": ["api"], "duration": "1h"}),
        )
        .await;
    assert_eq!(s, 201);
    e.app.pd("trigger", "db-2", "Payments DB down again").await;
    e.app.tick().await;
    assert_eq!(e.recv.at("users/alice").len(), 1);
}

#[tokio::test]
async fn a_recurring_config_window_holds_alerts_in_each_occurrence_only() {
    // Nightly 02:00-03:00 in Berlin, which is 01:00-02:00 UTC in winter.
    let e = env(r#"
[[maintenance]]
name = "nightly"
services = ["payments"]
reason = "backups"
cron = "0 0 2 * * *"
duration = "1h"
time_zone = "Europe/Berlin"
"#)
    .await;
    // t0 is 10:00 UTC: outside the window, the alert pages at once.
    e.app.pd("trigger", "a", "Outside").await;
    e.app.tick().await;
    assert_eq!(e.recv.at("users/alice").len(), 1);
    e.app.pd("resolve", "a", "").await;
    // The list shows the config window, its next occurrence, inactive.
    let (_, l) = e.app.get("/v1/maintenance").await;
    let cw = &l["windows"][0];
    assert_eq!(cw["id"], "config:nightly");
    assert_eq!(cw["source"], "config");
    assert_eq!(cw["recurring"], true);
    assert_eq!(cw["active"], false);
    assert_eq!(cw["start"], "2026-11-30T01:00:00Z");

    // 01:30 UTC next day: inside the occurrence.
    e.clock
        .set(t0() + Duration::hours(15) + Duration::minutes(30));
    e.app.pd("trigger", "b", "Inside").await;
    e.app.tick().await;
    assert_eq!(e.recv.at("users/alice").len(), 1, "no new page");
    let inc = e.app.incident("INC-2").await;
    let entry = timeline_entry(&inc["timeline"], "suppressed");
    assert_eq!(entry["window"], "config:nightly");
    assert_eq!(entry["until"], "2026-11-30T02:00:00Z");
    let (_, l) = e.app.get("/v1/maintenance").await;
    assert_eq!(l["windows"][0]["active"], true);
    // 02:00 UTC: the occurrence ends, INC-2 pages.
    e.clock.set(t0() + Duration::hours(16));
    e.app.tick().await;
    assert_eq!(e.recv.at("users/alice").len(), 2);
    timeline_entry(
        &e.app.incident("INC-2").await["timeline"],
        "maintenance_ended",
    );
}

#[tokio::test]
async fn windows_are_made_with_a_write_token_listed_with_a_read_token_and_checked() {
    let e = env(r#"
[[maintenance]]
name = "freeze"
services = ["api"]
start = "2026-12-24T00:00:00Z"
end = "2026-12-27T00:00:00Z"
"#)
    .await;
    let (_, read) = e
        .app
        .service
        .create_token("bob", Scope::Read, "test")
        .await
        .unwrap();
    let (_, write) = e
        .app
        .service
        .create_token("alice", Scope::Write, "test")
        .await
        .unwrap();
    let body = json!({"services": ["payments"], "duration": "1h"});
    let (s, _) = e
        .app
        .post_with_token("/v1/maintenance", Some(&read), &body)
        .await;
    assert_eq!(s, 403);
    let (s, _) = e.app.post_with_token("/v1/maintenance", None, &body).await;
    assert_eq!(s, 401);
    let (s, w) = e
        .app
        .post_with_token("/v1/maintenance", Some(&write), &body)
        .await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(w["created_by"], "alice");
    assert_eq!(w["name"], "payments");

    // What is refused, and why.
    for (bad, why) in [
        (
            json!({"services": ["nope"], "duration": "1h"}),
            "unknown service 'nope'",
        ),
        (
            json!({"matchers": ["env=~\"(\""], "duration": "1h"}),
            "bad regex",
        ),
        (json!({"services": ["api"]}), "'end'"),
        (json!({"duration": "1h"}), "services or label matchers"),
        (
            json!({"services": ["api"], "start": "2026-11-29T12:00:00Z", "end": "2026-11-29T11:00:00Z"}),
            "not after the start",
        ),
        (
            json!({"services": ["api"], "duration": "soon"}),
            "'duration'",
        ),
    ] {
        let (s, b) = e
            .app
            .post_with_token("/v1/maintenance", Some(&write), &bad)
            .await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(b["message"].as_str().unwrap().contains(why), "{bad}: {b}");
    }

    // Listing: the config's window, then the runtime one.
    let (s, l) = e.app.get_as("/v1/maintenance", Some(&read)).await;
    assert_eq!(s, 200, "{l}");
    let ws = l["windows"].as_array().unwrap();
    assert_eq!(ws.len(), 2, "{l}");
    assert_eq!(
        (ws[0]["id"].as_str(), ws[0]["source"].as_str()),
        (Some("config:freeze"), Some("config"))
    );
    assert_eq!(ws[0]["active"], false);
    assert_eq!(
        (ws[1]["id"].as_str(), ws[1]["source"].as_str()),
        (Some("1"), Some("api"))
    );
    assert_eq!(ws[1]["active"], true);
    let (s, one) = e.app.get_as("/v1/maintenance/1", Some(&read)).await;
    assert_eq!((s, one["created_by"].as_str()), (200, Some("alice")));

    // Ending: a write token; not a config window; not an unknown one.
    let (s, _) = delete(&e.app, "/v1/maintenance/1", &read).await;
    assert_eq!(s, 403);
    let (s, b) = delete(&e.app, "/v1/maintenance/config:freeze", &write).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("edit the config"),
        "{b}"
    );
    let (s, _) = delete(&e.app, "/v1/maintenance/7", &write).await;
    assert_eq!(s, 404);
    let (s, b) = delete(&e.app, "/v1/maintenance/1", &write).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["ended_by"], "alice");
    assert_eq!(b["end"], "2026-11-29T10:00:00Z");
    let (_, l) = e.app.get("/v1/maintenance").await;
    assert_eq!(l["windows"][1]["active"], false);
}

#[tokio::test]
async fn ending_a_window_early_pages_what_it_held_at_once() {
    let e = env("").await;
    payments_window(&e.app).await;
    e.app.pd("trigger", "db-1", "Payments DB down").await;
    e.app.pd("trigger", "db-2", "Payments queue stuck").await;
    e.app.pd("acknowledge", "db-2", "").await;
    e.clock.advance(Duration::minutes(20));
    e.app.tick().await;
    assert!(e.recv.received().is_empty());
    let (s, b) = delete(&e.app, "/v1/maintenance/1", API_TOKEN).await;
    assert_eq!(s, 200, "{b}");
    e.app.tick().await;
    // The triggered one pages now; the acknowledged one pages nobody.
    let one = e.app.incident("INC-1").await;
    assert_eq!(
        e.recv.at("users/alice").len(),
        1,
        "{:?} {one:#}",
        e.recv.received()
    );
    let ended = timeline_entry(&one["timeline"], "maintenance_ended");
    assert_eq!(
        (ended["paged"].as_bool(), ended["ended_by"].as_str()),
        (Some(true), Some("api"))
    );
    let two = e.app.incident("INC-2").await;
    let ended = timeline_entry(&two["timeline"], "maintenance_ended");
    assert_eq!(ended["paged"], false);
    // The old end timer does nothing when its time comes.
    e.clock.advance(Duration::hours(2));
    e.app.tick().await;
    let one = e.app.incident("INC-1").await;
    assert_eq!(
        kinds(&one["timeline"])
            .iter()
            .filter(|k| *k == "maintenance_ended")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_window_held_through_a_restart_keeps_its_alert_held_and_pages_at_its_end() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = crate::restart::chain(&recv, ["1h", "1h", "1h"]);
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let http = reqwest::Client::new();
    let w: Value = http
        .post(format!("{}/v1/maintenance", server.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({"services": ["payments"], "duration": "4s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["id"], "1", "{w}");
    let r = http
        .post(format!("{}/v2/enqueue", server.base))
        .json(
            &json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "x",
            "payload": {"summary": "held", "source": "t", "severity": "error"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Killed at once: nothing to flush, nothing shut down.
    server.kill();
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let list = server.incidents().await;
    assert_eq!(list[0]["suppressed"]["window"], "1", "{list:?}");
    assert!(recv.at("alice").is_empty());
    // The end timer survived: alice is paged once the window is over.
    for _ in 0..200 {
        if !recv.at("alice").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(recv.at("alice").len(), 1, "{:?}", recv.received());
    let end: chrono::DateTime<chrono::Utc> = serde_json::from_value(w["end"].clone()).unwrap();
    use tocsin::clock::Clock;
    assert!(
        tocsin::clock::SystemClock.now() >= end,
        "paged before the window ended"
    );
}

#[tokio::test]
async fn the_cli_starts_lists_and_ends_a_window() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "{}\n[[maintenance]]\nname = \"nightly\"\nservices = [\"api\"]\ncron = \"0 0 2 * * *\"\nduration = \"1h\"\n",
        crate::restart::chain(&recv, ["1h", "1h", "1h"])
    );
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let url = server.base.clone();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", &url, "--token", API_TOKEN]);
        server.cli(&all)
    };
    let out = cli(&["maintenance", "start", "payments", "2h", "db", "upgrade"]);
    assert!(out.starts_with("Started maintenance window 1"), "{out}");
    assert!(
        out.contains("ACTIVE")
            && out.contains("payments (payments)")
            && out.contains(": db upgrade"),
        "{out}"
    );
    let out = cli(&["maintenance", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("config:nightly") && lines[0].ends_with("[config]"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains("ACTIVE"),
        "{out}"
    );
    let out = cli(&["maintenance", "end", "1"]);
    assert!(
        out.starts_with("Ended maintenance window 1") && out.contains("inactive"),
        "{out}"
    );
}

#[test]
fn check_names_each_bad_maintenance_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(
        &path,
        r#"
[[services]]
name = "api"

[[maintenance]]
name = "typo"
services = ["apj"]
start = "2026-12-01T10:00:00Z"
end = "2026-12-01T09:00:00Z"

[[maintenance]]
name = "both"
services = ["api"]
matchers = ["env=~\"(\""]
cron = "0 0 2 * * *"
start = "2026-12-01T10:00:00Z"

[[maintenance]]
name = "nothing"
cron = "0 0 2 * * *"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for line in [
        "maintenance[0].services[0]: unknown service 'apj'",
        "maintenance[0].end: 2026-12-01 09:00:00 UTC is not after the start",
        "maintenance[1].matchers[0]: ",
        "maintenance[1].cron: give either start and end (one window) or cron and duration",
        "maintenance[2].services: a window must name services or label matchers",
        "maintenance[2].duration: a recurring window (cron) needs a duration",
    ] {
        assert!(stderr.contains(line), "{line} not in: {stderr}");
    }
}

#[tokio::test]
async fn slack_maintenance_start_holds_alerts_and_end_opens_the_channel_and_pages() {
    use crate::common::fake_slack::FakeSlack;
    let fake = FakeSlack::start().await;
    let app = spawn_app_with(
        Arc::new(tocsin::clock::SystemClock),
        Some("payments"),
        &crate::slack::slack_config(&fake),
    )
    .await;
    let s = crate::slack::Slack { app, fake };
    let reply = s
        .ask(
            "U0ALICE",
            "C1",
            "/maintenance",
            "start payments 2h db upgrade",
            "m1",
        )
        .await;
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "🔧 Maintenance window 1 started by <@U0ALICE>: payments's alerts page nobody until"
        ),
        "{text}"
    );
    let (s_, _) = s.app.pd("trigger", "db-1", "Payments DB down").await;
    assert_eq!(s_, 202);
    s.app.tick().await;
    assert!(s.fake.ok_calls("conversations.create").is_empty());
    assert!(!s.fake.has_dm("U0ALICE"));
    let list = s.ask("U0BOB", "C1", "/maintenance", "list", "m2").await;
    let text = list["text"].as_str().unwrap();
    assert!(
        text.contains("1 payments (payments)") && text.contains(", active: db upgrade"),
        "{text}"
    );
    let bad = s
        .ask("U0ALICE", "C1", "/maintenance", "start nope 1h", "m3")
        .await;
    assert!(
        bad["text"]
            .as_str()
            .unwrap()
            .starts_with("There is no service 'nope'.")
    );

    // Ended early: the channel opens as for a new incident, alice is paged.
    let ended = s.ask("U0ALICE", "C1", "/maintenance", "end", "m4").await;
    let text = ended["text"].as_str().unwrap();
    assert!(
        text.starts_with("Maintenance window 1 (payments) ended by <@U0ALICE>"),
        "{text}"
    );
    s.app.tick().await;
    assert_eq!(s.fake.ok_calls("conversations.create").len(), 1);
    assert!(s.fake.has_dm("U0ALICE"));
    // The card says which window held it.
    let card = s.fake.ok_calls("chat.postMessage").into_iter().find(|c| {
        c.params
            .to_string()
            .contains("suppressed by maintenance window payments")
    });
    assert!(card.is_some(), "{:?}", s.fake.ok_calls("chat.postMessage"));
    let none = s.ask("U0ALICE", "C1", "/maintenance", "end", "m5").await;
    assert_eq!(none["text"], "No maintenance window is active.");
    s.app.stop().await;
}
