//! `flapping = { changes, within }`: an alert that fires and resolves over
//! and over is held in one incident marked flapping, paged once, and paged
//! again only if it settles firing.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use chrono::Duration;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin::clock::ManualClock;

const SHOP_KEY: &str = "test-shop-key";
const SEARCH_KEY: &str = "test-search-key";

/// `checkout` flaps at more than `changes` within 30 minutes; `search`
/// flaps at more than 2 within 10 minutes and reopens within an hour.
fn services(changes: u32) -> String {
    format!(
        r#"
[[services]]
name = "checkout"
escalation_policy = "payments"
flapping = {{ changes = {changes}, within = "30m" }}

[[services]]
name = "search"
escalation_policy = "payments"
flapping = {{ changes = 2, within = "10m" }}
reopen_within = "1h"

[[integrations]]
name = "shop"
kind = "generic"
key = "{SHOP_KEY}"
service = "checkout"

[[integrations]]
name = "search"
kind = "generic"
key = "{SEARCH_KEY}"
service = "search"
"#
    )
}

struct Flaps {
    app: TestApp,
    clock: ManualClock,
    recv: Receiver,
    smtp: SmtpSink,
}

async fn flaps(changes: u32) -> Flaps {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let extra = format!(
        "{}{}",
        paging_config(&recv, smtp.port, ""),
        services(changes)
    );
    let app = spawn_app_with(Arc::new(clock.clone()), Some("payments"), &extra).await;
    Flaps {
        app,
        clock,
        recv,
        smtp,
    }
}

impl Flaps {
    /// Sends a trigger (`fire`) or a resolve of `checkout`'s `errors`, then
    /// fires and delivers what is due; the outcome's effect.
    async fn send(&self, key: &str, fire: bool) -> String {
        let body = if fire {
            json!({"summary": "Checkout errors", "dedup_key": "errors"})
        } else {
            json!({"dedup_key": "errors", "status": "resolve"})
        };
        let (s, out) = self.app.post_json(&format!("/hooks/{key}"), &body).await;
        assert_eq!(s, 202, "{out}");
        self.app.tick().await;
        out["results"][0]["effect"].as_str().unwrap().to_string()
    }

    /// Someone takes `id`: its escalation stops.
    async fn ack(&self, id: &str) {
        let (s, body) = self
            .app
            .post_with_token(
                &format!("/v1/incidents/{id}/acknowledge"),
                Some(API_TOKEN),
                &json!({}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }

    async fn after(&self, minutes: i64) {
        self.clock.advance(Duration::minutes(minutes));
        self.app.tick().await;
    }

    /// Every page that went out: webhooks and mails.
    fn pages(&self) -> usize {
        self.recv.received().len() + self.smtp.mails.lock().len()
    }

    /// `tocsin_incidents_flapping` as `/metrics` shows it.
    async fn flapping_gauge(&self) -> String {
        let text = self.app.get_text("/metrics").await;
        text.lines()
            .find(|l| l.starts_with("tocsin_incidents_flapping "))
            .unwrap_or_else(|| panic!("no flapping gauge in {text}"))
            .to_string()
    }
}

fn count(timeline: &Value, kind: &str) -> usize {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

#[tokio::test]
async fn five_flaps_within_the_window_page_once_and_the_timeline_shows_each() {
    let f = flaps(4).await;
    assert_eq!(f.send(SHOP_KEY, true).await, "opened");
    assert_eq!(f.recv.at("users/alice").len(), 1, "{:?}", f.recv.received());

    // Five flaps, a minute apart: resolved, fired again.
    for _ in 0..5 {
        f.after(1).await;
        f.send(SHOP_KEY, false).await;
        f.after(1).await;
        f.send(SHOP_KEY, true).await;
    }
    let list = f.app.incidents().await;
    assert_eq!(list.len(), 1, "one incident holds every flap: {list:?}");
    assert_eq!(f.pages(), 1, "paged once: {:?}", f.recv.received());

    let inc = f.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "triggered");
    assert_eq!(inc["incident"]["flap"]["flapping"], true, "{inc}");
    assert_eq!(
        inc["incident"]["flapping"], "flapping: 11 changes in 30m",
        "{inc}"
    );
    let tl = &inc["timeline"];
    // Opened, resolved, fired (3), resolved, fired (5 > 4): flapping from
    // there, every later change one `flap` entry.
    assert_eq!(count(tl, "resolved"), 2, "{tl}");
    assert_eq!(count(tl, "reopened"), 2, "{tl}");
    assert_eq!(count(tl, "flapping"), 1, "{tl}");
    assert_eq!(count(tl, "flap"), 6, "{tl}");
    assert_eq!(count(tl, "escalation_step"), 1, "{tl}");
    let flapping = timeline_entry(tl, "flapping");
    assert_eq!(flapping["changes"], 5);
    assert_eq!(f.flapping_gauge().await, "tocsin_incidents_flapping 1");

    // The summary says so too.
    let text = f.app.get_text("/v1/incidents/INC-1/summary").await;
    assert!(text.contains("flapping: 11 changes in 30m"), "{text}");
    assert!(text.contains("Flap: resolved"), "{text}");

    // It stays firing: nothing for 29 minutes, then one page, escalation
    // from its first step.
    f.after(29).await;
    assert_eq!(f.pages(), 1);
    f.after(1).await;
    assert_eq!(f.recv.at("users/alice").len(), 2, "{:?}", f.recv.received());
    let inc = f.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["flap"]["flapping"], false, "{inc}");
    assert_eq!(inc["incident"]["flapping"], Value::Null);
    let settled = timeline_entry(&inc["timeline"], "flap_settled");
    assert_eq!(settled["firing"], true);
    assert_eq!(count(&inc["timeline"], "escalation_step"), 2);
    assert_eq!(f.flapping_gauge().await, "tocsin_incidents_flapping 0");
}

#[tokio::test]
async fn a_flapping_alert_that_stays_resolved_resolves_for_real() {
    let f = flaps(2).await;
    f.send(SHOP_KEY, true).await;
    f.after(1).await;
    assert_eq!(f.send(SHOP_KEY, false).await, "resolved");
    f.after(1).await;
    // Fired again within the window: the same incident, quietly (3 > 2).
    assert_eq!(f.send(SHOP_KEY, true).await, "reopened");
    f.after(1).await;
    // Flapping: the resolve is held.
    assert_eq!(f.send(SHOP_KEY, false).await, "appended");
    let inc = f.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "triggered", "{inc}");
    assert_eq!(count(&inc["timeline"], "flap"), 1, "{inc}");

    // A repeated resolve (senders re-send them) is no new flap.
    f.send(SHOP_KEY, false).await;
    assert_eq!(count(&f.app.incident("INC-1").await["timeline"], "flap"), 1);

    f.after(29).await;
    assert_eq!(
        f.app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    f.after(1).await;
    let inc = f.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "resolved", "{inc}");
    assert_eq!(inc["incident"]["resolved_by"]["kind"], "system");
    let tl = &inc["timeline"];
    assert_eq!(timeline_entry(tl, "flap_settled")["firing"], false);
    let last = tl.as_array().unwrap().last().unwrap();
    assert_eq!(last["type"], "resolved");
    assert_eq!(
        last["note"], "its alert stayed resolved for 30m after flapping",
        "{last}"
    );
    assert_eq!(f.pages(), 1, "paged once: {:?}", f.recv.received());

    // Flapping cleared: a trigger now, long after, opens a new incident.
    f.after(60).await;
    assert_eq!(f.send(SHOP_KEY, true).await, "opened");
    assert_eq!(f.app.incidents().await.len(), 2);
}

#[tokio::test]
async fn flaps_spread_beyond_the_window_behave_as_without_flapping() {
    let f = flaps(2).await;
    // checkout (no reopen_within): a re-fire 31 minutes after the resolve
    // opens a new incident, which pages.
    f.send(SHOP_KEY, true).await;
    f.after(1).await;
    f.send(SHOP_KEY, false).await;
    f.after(31).await;
    assert_eq!(f.send(SHOP_KEY, true).await, "opened");
    assert_eq!(f.recv.at("users/alice").len(), 2);
    assert_eq!(f.app.incidents().await.len(), 2);

    // An alert that fired for 40 minutes (acknowledged at once; its page
    // long ago) and comes back 2 minutes after resolving is no flap
    // either: a new incident, paged.
    f.ack("INC-2").await;
    f.after(40).await;
    f.send(SHOP_KEY, false).await;
    f.after(2).await;
    assert_eq!(f.send(SHOP_KEY, true).await, "opened");
    assert_eq!(f.recv.at("users/alice").len(), 3);
    assert_eq!(f.app.incidents().await.len(), 3);
    f.ack("INC-3").await;

    // search (reopen_within = 1h, flapping within 10m): a re-fire 11
    // minutes after the resolve reopens the same incident and pages again.
    f.send(SEARCH_KEY, true).await;
    assert_eq!(f.recv.at("users/alice").len(), 4);
    f.after(1).await;
    f.send(SEARCH_KEY, false).await;
    f.after(11).await;
    assert_eq!(f.send(SEARCH_KEY, true).await, "reopened");
    assert_eq!(f.recv.at("users/alice").len(), 5, "{:?}", f.recv.received());
    let inc = f.app.incident("INC-4").await;
    assert_eq!(count(&inc["timeline"], "escalation_step"), 2, "{inc}");
    assert_eq!(inc["incident"]["flap"]["flapping"], false, "{inc}");

    // Within its 10 minutes the re-fire is quiet instead: no page.
    f.after(1).await;
    f.send(SEARCH_KEY, false).await;
    f.after(2).await;
    assert_eq!(f.send(SEARCH_KEY, true).await, "reopened");
    assert_eq!(f.recv.at("users/alice").len(), 5, "{:?}", f.recv.received());
}

#[tokio::test]
async fn a_person_resolving_a_flapping_incident_resolves_it() {
    let f = flaps(1).await;
    f.send(SHOP_KEY, true).await;
    f.after(1).await;
    // Opened and resolved: 2 changes > 1, so the resolve is held.
    assert_eq!(f.send(SHOP_KEY, false).await, "appended");
    let (s, body) = f
        .app
        .post_with_token(
            "/v1/incidents/INC-1/resolve",
            Some(API_TOKEN),
            &json!({"note": "fixed the cron"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let inc = f.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "resolved");
    assert_eq!(inc["incident"]["flap"]["flapping"], false);
    // The settle timer went with it: nothing happens 30 minutes on.
    f.after(31).await;
    let again = f.app.incident("INC-1").await;
    assert_eq!(again["timeline"], inc["timeline"]);
}

#[tokio::test]
async fn a_held_resolve_survives_a_crash_and_settles() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        r#"
[[users]]
name = "alice"
webhook = {{ url = "{a}" }}
contact_methods = [{{ kind = "webhook" }}]
[[escalation_policies]]
name = "solo"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}]
delay = "1h"
[[services]]
name = "checkout"
escalation_policy = "solo"
flapping = {{ changes = 1, within = "6s" }}
[[integrations]]
name = "shop"
kind = "generic"
key = "{SHOP_KEY}"
service = "checkout"
"#,
        a = recv.url("alice")
    );
    let mut server = ServerProcess::start_with(dir.path(), port, None, &extra).await;
    let http = reqwest::Client::new();
    let hook = format!("{}/hooks/{SHOP_KEY}", server.base);
    // The page goes out before the resolve arrives: a resolve stops the
    // run, and a page still queued then is dropped with it.
    let r = http
        .post(&hook)
        .json(&json!({"summary": "Checkout errors", "dedup_key": "errors"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert!(recv.wait_for(1, std::time::Duration::from_secs(20)).await);
    let r = http
        .post(&hook)
        .json(&json!({"dedup_key": "errors", "status": "resolve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let get = |base: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/v1/incidents/INC-1"))
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let inc = get(server.base.clone()).await;
    assert_eq!(inc["incident"]["status"], "triggered", "held: {inc}");
    assert_eq!(inc["incident"]["flap"]["flapping"], true, "{inc}");
    // Crashed and back before it settles: still held, still flapping (the
    // gauge counts it from the store), and the settle timer still set.
    server.kill();
    let server = ServerProcess::start_with(dir.path(), port, None, &extra).await;
    let inc = get(server.base.clone()).await;
    assert_eq!(inc["incident"]["status"], "triggered", "{inc}");
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\ntocsin_incidents_flapping 1\n"),
        "{metrics}"
    );
    let mut inc = Value::Null;
    for _ in 0..200 {
        inc = get(server.base.clone()).await;
        if inc["incident"]["status"] == "resolved" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(inc["incident"]["status"], "resolved", "{inc}");
    assert_eq!(
        timeline_entry(&inc["timeline"], "flap_settled")["firing"],
        false
    );
    assert_eq!(recv.received().len(), 1, "paged once");
}

/// `tocsin check` on `config`: whether it passed, and its stderr.
fn check(dir: &std::path::Path, config: &str) -> (bool, String) {
    let path = dir.join("flap.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn check_refuses_bad_flapping_config() {
    let dir = tempfile::tempdir().unwrap();
    let svc = "[[services]]\nname = \"checkout\"\n";
    let (ok, stderr) = check(
        dir.path(),
        &format!("{svc}flapping = {{ changes = 0, within = \"0s\" }}\n"),
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("flapping.changes: must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("flapping.within: must be longer than 0s"),
        "{stderr}"
    );

    let (ok, stderr) = check(
        dir.path(),
        &format!("{svc}flapping = {{ changes = 4, window = \"30m\" }}\n"),
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("window"), "{stderr}");

    let (ok, stderr) = check(
        dir.path(),
        &format!("{svc}flapping = {{ changes = 4, within = \"30m\" }}\n"),
    );
    assert!(ok, "{stderr}");
}
