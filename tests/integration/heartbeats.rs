//! Heartbeat monitors and auto-resolve: a heartbeat that stops pinging
//! opens an incident that pages, the next ping resolves it, on the manual
//! clock and across a real restart; a generic alert not re-sent within
//! `resolve_after` resolves itself.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use chrono::Duration;
use serde_json::json;
use std::sync::Arc;
use tocsin::clock::ManualClock;

const HB_KEY: &str = "hb-db-backup-key";

fn heartbeat(interval: &str, grace: &str) -> String {
    format!(
        r#"
[[heartbeats]]
name = "db-backup"
key = "{HB_KEY}"
service = "payments"
interval = "{interval}"
grace = "{grace}"
"#
    )
}

async fn ping_status(
    app: &TestApp,
    path: &str,
    bearer: Option<&str>,
    post: bool,
) -> (u16, serde_json::Value) {
    let url = app.public_url(path);
    let mut req = if post {
        app.http.post(url)
    } else {
        app.http.get(url)
    };
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_stopped_heartbeat_opens_an_incident_that_pages_and_the_next_ping_resolves_it() {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let extra = format!(
        "{}{}",
        paging_config(&recv, smtp.port, ""),
        heartbeat("1h", "10m")
    );
    let app = spawn_app_with(Arc::new(clock.clone()), Some("payments"), &extra).await;
    app.service.start_heartbeats().await.unwrap();

    // A ping at t0 (GET with the key in the path): due at 1h10m.
    let (s, body) = ping_status(&app, &format!("/heartbeat/{HB_KEY}"), None, false).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["heartbeat"], "db-backup");
    assert_eq!(body["resolved"], serde_json::Value::Null);

    // A wrong key is a 404 and changes nothing; so is no key at all.
    let (s, body) = ping_status(&app, "/heartbeat/not-the-key", None, true).await;
    assert_eq!(s, 404, "{body}");
    let (s, _) = ping_status(&app, "/heartbeat", Some("not-the-key"), true).await;
    assert_eq!(s, 404);
    let (s, _) = ping_status(&app, "/heartbeat", None, false).await;
    assert_eq!(s, 404);
    // An integration's key is not a heartbeat's.
    let (s, _) = ping_status(&app, &format!("/heartbeat/{GENERIC_KEY}"), None, false).await;
    assert_eq!(s, 404);

    // Late but within grace: nothing.
    clock.advance(Duration::minutes(69));
    app.tick().await;
    assert!(app.incidents().await.is_empty());
    assert!(recv.received().is_empty());

    // Past interval + grace: an incident on payments, paged by its policy.
    clock.advance(Duration::minutes(2));
    app.tick().await;
    let list = app.incidents().await;
    assert_eq!(list.len(), 1, "{list:?}");
    let inc = app.incident("INC-1").await;
    assert_eq!(
        inc["incident"]["title"],
        "Heartbeat db-backup missed since 2026-11-29 11:00:00 UTC"
    );
    assert_eq!(inc["incident"]["service"], "payments");
    assert_eq!(inc["incident"]["dedup_key"], "heartbeat:db-backup");
    assert_eq!(inc["incident"]["status"], "triggered");
    assert_eq!(recv.at("users/alice").len(), 1, "{:?}", recv.received());
    timeline_entry(&inc["timeline"], "escalation_step");

    // Still silent: the open incident is not opened twice.
    clock.advance(Duration::hours(3));
    app.tick().await;
    assert_eq!(app.incidents().await.len(), 1);

    // The next ping (POST, key as bearer) resolves it.
    let (s, body) = ping_status(&app, "/heartbeat", Some(HB_KEY), true).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["resolved"], "INC-1");
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "resolved");

    // And the timer runs again from that ping.
    clock.advance(Duration::minutes(69));
    app.tick().await;
    assert_eq!(app.incidents().await.len(), 1);
    clock.advance(Duration::minutes(2));
    app.tick().await;
    let list = app.incidents().await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        app.incident("INC-2").await["incident"]["status"],
        "triggered"
    );

    let metrics = app.get_text("/metrics").await;
    let expect = format!(
        "tocsin_heartbeat_last_seen_seconds{{name=\"db-backup\"}} {}",
        (t0() + Duration::hours(3) + Duration::minutes(71)).timestamp()
    );
    assert!(metrics.contains(&expect), "{expect} not in metrics");
}

#[tokio::test]
async fn a_heartbeat_never_seen_opens_after_its_interval_from_start() {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let extra = format!(
        "{}{}",
        paging_config(&recv, smtp.port, ""),
        heartbeat("30m", "5m")
    );
    let app = spawn_app_with(Arc::new(clock.clone()), Some("payments"), &extra).await;
    app.service.start_heartbeats().await.unwrap();
    clock.advance(Duration::minutes(34));
    app.tick().await;
    assert!(app.incidents().await.is_empty());
    clock.advance(Duration::minutes(2));
    app.tick().await;
    assert_eq!(app.incidents().await.len(), 1);
    assert_eq!(recv.at("users/alice").len(), 1);
}

#[tokio::test]
async fn a_heartbeat_overdue_while_tocsin_was_down_fires_after_its_grace_and_a_ping_resolves_it() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "{}{}",
        crate::restart::chain(&recv, ["1h", "1h", "1h"]),
        heartbeat("1s", "5s")
    );
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let http = reqwest::Client::new();
    let ping = |path: String| {
        let http = http.clone();
        async move {
            let r = http.post(path).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, _) = ping(format!("{}/heartbeat/{HB_KEY}", server.base)).await;
    assert_eq!(s, 200);
    // Down past the heartbeat's interval + grace (6 s).
    server.kill();
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let started = std::time::Instant::now();
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    // Its sender gets the grace to catch up: nothing yet...
    if started.elapsed() < std::time::Duration::from_secs(4) {
        assert!(server.incidents().await.is_empty());
        assert!(recv.received().is_empty());
    }
    // ...then the incident opens and pages alice.
    assert!(recv.wait_for(1, std::time::Duration::from_secs(15)).await);
    assert_eq!(recv.at("alice").len(), 1);
    let list = server.incidents().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["dedup_key"], "heartbeat:db-backup");
    assert_eq!(list[0]["status"], "triggered");
    // The next ping resolves it.
    let (s, body) = ping(format!("{}/heartbeat/{HB_KEY}", server.base)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["resolved"], "INC-1");
    assert_eq!(server.incidents().await[0]["status"], "resolved");
}

#[tokio::test]
async fn a_generic_alert_not_sent_again_within_resolve_after_resolves_itself() {
    let clock = ManualClock::new(t0());
    let extra = r#"
[[integrations]]
name = "cron"
kind = "generic"
key = "test-cron-key"
service = "payments"
resolve_after = "30m"
"#;
    let app = spawn_app_with(Arc::new(clock.clone()), None, extra).await;
    let alert = json!({"summary": "Nightly export failed", "dedup_key": "export"});
    let (s, body) = app.post_json("/hooks/test-cron-key", &alert).await;
    assert_eq!(s, 202, "{body}");
    // Sent again at 20m: the 30 minutes start over.
    clock.advance(Duration::minutes(20));
    app.tick().await;
    let (s, _) = app.post_json("/hooks/test-cron-key", &alert).await;
    assert_eq!(s, 202);
    clock.advance(Duration::minutes(29));
    app.tick().await;
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    clock.advance(Duration::minutes(2));
    app.tick().await;
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "resolved");
    let expired = timeline_entry(&inc["timeline"], "alert_expired");
    assert_eq!(expired["actor"]["kind"], "system");

    // The same sender without resolve_after keeps its alert open.
    let (s, _) = app
        .post_json(
            &format!("/hooks/{GENERIC_KEY}"),
            &json!({"summary": "Disk full", "dedup_key": "disk"}),
        )
        .await;
    assert_eq!(s, 202);
    clock.advance(Duration::hours(5));
    app.tick().await;
    let list = app.incidents().await;
    let disk = list.iter().find(|i| i["dedup_key"] == "disk").unwrap();
    assert_eq!(disk["status"], "triggered");
}

#[tokio::test]
async fn heartbeats_are_pinged_on_the_public_listener_only() {
    let app = spawn_split(&heartbeat("1h", "5m"), "").await;
    let url = |base: std::net::SocketAddr| format!("http://{base}/heartbeat/{HB_KEY}");
    let public = app.http.get(url(app.public_addr)).send().await.unwrap();
    assert_eq!(public.status().as_u16(), 200);
    let api = app.http.get(url(app.addr)).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 404);
}
