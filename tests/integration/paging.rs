//! Paging: escalation on the manual clock, acknowledgement, snooze, manual
//! escalation, contact methods, retries and give-up, a wedged receiver.

use crate::common::receiver::{Answer, Receiver};
use crate::common::smtp::SmtpSink;
use crate::common::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::sync::Arc;
use tocsin::clock::ManualClock;
use tocsin::store::Store;

pub fn t0() -> DateTime<Utc> {
    // A Sunday: alice's week (handoff Mondays 09:00 UTC) started 2026-11-23.
    DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Users, a weekly schedule and a two-step policy that repeats once.
pub fn paging_config(recv: &Receiver, smtp_port: u16, notify: &str) -> String {
    format!(
        r#"
[notify]
{notify}

[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "tocsin@example.test"
tls = "none"

[[users]]
name = "alice"
email = "alice@example.test"
webhook = {{ url = "{alice}", secret = "alice-secret" }}
contact_methods = [{{ kind = "webhook" }}, {{ kind = "email", after = "2m" }}]

[[users]]
name = "bob"
webhook = {{ url = "{bob}", secret = "bob-secret" }}
contact_methods = [{{ kind = "webhook" }}]

[[users]]
name = "carol"
webhook = {{ url = "{carol}" }}
contact_methods = [{{ kind = "webhook" }}]

[[webhooks]]
name = "ops"
url = "{ops}"
secret = "ops-secret"

[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
start = "2026-11-23T09:00:00"
handoff = "0 0 9 * * Mon"

[[escalation_policies]]
name = "payments"
repeat = 1
[[escalation_policies.steps]]
targets = [{{ schedule = "primary" }}]
delay = "5m"
[[escalation_policies.steps]]
targets = [{{ user = "carol" }}, {{ webhook = "ops" }}]
delay = "10m"
"#,
        alice = recv.url("users/alice"),
        bob = recv.url("users/bob"),
        carol = recv.url("users/carol"),
        ops = recv.url("hooks/ops"),
    )
}

const QUICK_NOTIFY: &str = r#"initial_backoff = "1s"
max_backoff = "60s"
give_up_after = "2m"
request_timeout = "2s""#;

struct Paging {
    app: TestApp,
    clock: ManualClock,
    recv: Receiver,
    smtp: SmtpSink,
}

async fn paging() -> Paging {
    paging_with(QUICK_NOTIFY).await
}

async fn paging_with(notify: &str) -> Paging {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let app = spawn_app_with(
        Arc::new(clock.clone()),
        Some("payments"),
        &paging_config(&recv, smtp.port, notify),
    )
    .await;
    Paging {
        app,
        clock,
        recv,
        smtp,
    }
}

impl Paging {
    /// Moves the manual clock minute by minute, firing and delivering, and
    /// returns what arrived: (minutes after t0, path or "mail:to").
    async fn run_minutes(&self, minutes: i64, log: &mut Vec<(i64, String)>) {
        for _ in 0..minutes {
            self.clock.advance(Duration::minutes(1));
            self.app.tick().await;
            self.collect(log);
        }
    }

    /// Appends what arrived since the last call, stamped with this minute.
    fn collect(&self, log: &mut Vec<(i64, String)>) {
        let minute = (self.clock_now() - t0()).num_minutes();
        let seen_hooks = log.iter().filter(|(_, p)| !p.starts_with("mail:")).count();
        let seen_mails = log.len() - seen_hooks;
        let hooks: Vec<String> = self
            .recv
            .received()
            .iter()
            .map(|r| r.path.clone())
            .collect();
        let mails: Vec<String> = self
            .smtp
            .mails
            .lock()
            .iter()
            .map(|m| format!("mail:{}", m.to.join(",")))
            .collect();
        for item in hooks.into_iter().skip(seen_hooks) {
            log.push((minute, item));
        }
        for item in mails.into_iter().skip(seen_mails) {
            log.push((minute, item));
        }
    }

    fn clock_now(&self) -> DateTime<Utc> {
        tocsin::clock::Clock::now(&self.clock)
    }
}

async fn trigger(app: &TestApp, dedup: &str) {
    let (s, b) = app.pd("trigger", dedup, "Payment errors above 5%").await;
    assert_eq!(s, 202, "{b}");
}

#[tokio::test]
async fn two_hours_of_escalation_in_milliseconds() {
    let p = paging().await;
    trigger(&p.app, "pay-1").await;
    let mut log = Vec::new();
    p.app.tick().await;
    p.collect(&mut log);
    p.run_minutes(120, &mut log).await;
    let expected: Vec<(i64, String)> = vec![
        (0, "/users/alice".into()),
        (2, "mail:alice@example.test".into()),
        (5, "/users/carol".into()),
        (5, "/hooks/ops".into()),
        (15, "/users/alice".into()),
        (17, "mail:alice@example.test".into()),
        (20, "/users/carol".into()),
        (20, "/hooks/ops".into()),
    ];
    // Mail is collected after webhooks within a minute; compare as sets per minute.
    let mut got = log.clone();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want, "pages: {log:?}");

    let inc = p.app.incident("INC-1").await;
    let types: Vec<String> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "escalation_step").count(), 4);
    assert_eq!(types.iter().filter(|t| *t == "paged").count(), 8);
    assert_eq!(types.last().unwrap(), "escalation_exhausted");
    let exhausted = inc["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        exhausted["at"],
        json!((t0() + Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    );
    assert_eq!(p.app.store.timer_count().unwrap(), 0);

    // Every webhook page is signed with its target's secret and carries its key.
    for r in p.recv.received() {
        assert!(
            r.idempotency_key.starts_with("INC-1/g0/"),
            "{}",
            r.idempotency_key
        );
        let secret = match r.path.as_str() {
            "/users/alice" => Some("alice-secret"),
            "/hooks/ops" => Some("ops-secret"),
            _ => None,
        };
        match secret {
            Some(s) => assert_eq!(
                r.signature.as_deref(),
                Some(
                    tocsin::notify::webhook::signature(&tocsin::secret::Secret::new(s), &r.raw)
                        .as_str()
                )
            ),
            None => assert_eq!(r.signature, None),
        }
        assert_eq!(r.body["incident"]["id"], "INC-1");
    }
    p.app.stop().await;
}

#[tokio::test]
async fn acknowledging_mid_step_stops_everything() {
    let p = paging().await;
    trigger(&p.app, "pay-1").await;
    let mut log = Vec::new();
    p.app.tick().await;
    p.collect(&mut log);
    p.run_minutes(1, &mut log).await;
    let (s, _) = p
        .app
        .post_with_token(
            "/v1/incidents/INC-1/acknowledge",
            Some(API_TOKEN),
            &json!({"by": "alice"}),
        )
        .await;
    assert_eq!(s, 200);
    p.run_minutes(180, &mut log).await;
    // The page at once, and nothing after: not the email at 2m, not step 2.
    assert_eq!(log, vec![(0, "/users/alice".to_string())]);
    let notes = p.app.get("/v1/incidents/INC-1/notifications").await.1;
    let states: Vec<(&str, &str)> = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["method"].as_str().unwrap(),
                n["state"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("webhook", "delivered"), ("email", "cancelled")]
    );
    assert_eq!(p.app.store.timer_count().unwrap(), 0);
    p.app.stop().await;
}

#[tokio::test]
async fn resolving_stops_escalation_too() {
    let p = paging().await;
    trigger(&p.app, "pay-1").await;
    p.app.tick().await;
    p.app.pd("resolve", "pay-1", "").await;
    let mut log = Vec::new();
    p.collect(&mut log);
    p.run_minutes(60, &mut log).await;
    assert_eq!(log, vec![(0, "/users/alice".to_string())]);
    p.app.stop().await;
}

#[tokio::test]
async fn a_storm_of_alerts_pages_once_per_step() {
    let p = paging().await;
    for _ in 0..50 {
        trigger(&p.app, "storm").await;
    }
    p.app.tick().await;
    assert_eq!(p.recv.at("users/alice").len(), 1);
    p.clock.advance(Duration::minutes(1));
    for _ in 0..50 {
        trigger(&p.app, "storm").await;
    }
    p.app.tick().await;
    assert_eq!(p.recv.received().len(), 1);
    assert_eq!(p.app.incidents().await[0]["event_count"], 100);
    p.app.stop().await;
}

#[tokio::test]
async fn concurrent_alerts_batched_together_still_group_and_page_once() {
    // 64 requests for one key and 64 for distinct keys, all in flight at
    // once, so the writer applies many of them in shared transactions.
    let p = paging().await;
    let url = p.app.url("/v2/enqueue");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..128 {
        let url = url.clone();
        tasks.spawn(async move {
            let dedup = if i % 2 == 0 {
                "storm".to_string()
            } else {
                format!("own-{i}")
            };
            let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": dedup,
                              "payload": {"summary": "concurrent", "source": "test", "severity": "error"}});
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    p.app.tick().await;
    let incidents = p.app.incidents().await;
    assert_eq!(incidents.len(), 65, "one for the storm, one per own key");
    let storm: Vec<_> = incidents
        .iter()
        .filter(|i| i["dedup_key"] == "storm")
        .collect();
    assert_eq!(storm.len(), 1);
    assert_eq!(storm[0]["event_count"], 64);
    // Numbers are handed out once each, with no gap.
    let mut ids: Vec<u64> = incidents
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=65).collect::<Vec<_>>());
    // One page per incident, however the requests were batched.
    let keys = p.recv.delivered_keys();
    assert_eq!(keys.len(), 65, "{keys:?}");
    assert!(keys.values().all(|&n| n == 1), "{keys:?}");
    assert_eq!(p.app.store_counts().0, 128);
    p.app.stop().await;
}

#[tokio::test]
async fn snooze_then_trigger_again() {
    let p = paging().await;
    trigger(&p.app, "pay-1").await;
    p.app.tick().await;
    let (s, b) = p
        .app
        .post_with_token(
            "/v1/incidents/INC-1/snooze",
            Some(API_TOKEN),
            &json!({"duration": "30m", "by": "alice"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["incident"]["status"], "acknowledged");
    let mut log = Vec::new();
    p.collect(&mut log);
    p.run_minutes(29, &mut log).await;
    assert_eq!(log.len(), 1, "nothing while snoozed: {log:?}");
    p.run_minutes(1, &mut log).await;
    assert_eq!(log.last().unwrap(), &(30, "/users/alice".to_string()));
    let inc = p.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "triggered");
    let last_page = p.recv.at("users/alice").last().unwrap().clone();
    assert!(
        last_page.idempotency_key.starts_with("INC-1/g1/"),
        "{}",
        last_page.idempotency_key
    );
    let (s, b) = p
        .app
        .post_with_token(
            "/v1/incidents/INC-1/snooze",
            Some(API_TOKEN),
            &json!({"duration": "forever"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("forever"));
    p.app.stop().await;
}

/// A delayed contact method of a run that was stopped is not sent when the
/// incident escalates again before it was due: the new run pages afresh.
#[tokio::test]
async fn a_stopped_runs_delayed_page_is_cancelled_when_escalation_starts_again() {
    let p = paging().await;
    trigger(&p.app, "pay-1").await;
    p.app.tick().await;
    // Alice's webhook at once; her email (after 2m) is pending. Snooze 1m.
    let (s, b) = p
        .app
        .post_with_token(
            "/v1/incidents/INC-1/snooze",
            Some(API_TOKEN),
            &json!({"duration": "1m", "by": "alice"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mut log = Vec::new();
    p.collect(&mut log);
    p.run_minutes(4, &mut log).await;
    let mails: Vec<i64> = log
        .iter()
        .filter(|(_, what)| what.starts_with("mail:"))
        .map(|(m, _)| *m)
        .collect();
    // The stopped run's email (due at 2m) is cancelled; the new run (from
    // 1m) sends its own at 3m.
    assert_eq!(mails, vec![3], "{log:?}");
    let notes = p.app.get("/v1/incidents/INC-1/notifications").await.1;
    let cancelled: Vec<&serde_json::Value> = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["key"].as_str().unwrap().starts_with("INC-1/g0/") && n["method"] == "email")
        .collect();
    assert_eq!(cancelled.len(), 1, "{notes:#}");
    assert!(
        cancelled[0]
            .to_string()
            .contains("was stopped before the page was due"),
        "{}",
        cancelled[0]
    );
    p.app.stop().await;
}

#[tokio::test]
async fn manual_escalation_runs_the_next_step_now() {
    let p = paging().await;
    trigger(&p.app, "pay-1").await;
    p.app.tick().await;
    p.clock.advance(Duration::minutes(1));
    let (s, b) = p
        .app
        .post_with_token(
            "/v1/incidents/INC-1/escalate",
            Some(API_TOKEN),
            &json!({"by": "alice"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    p.app.tick().await;
    assert_eq!(p.recv.at("users/carol").len(), 1);
    assert_eq!(p.recv.at("hooks/ops").len(), 1);
    // Step 2's own delay now counts from the manual escalation.
    let mut log = Vec::new();
    p.collect(&mut log);
    p.run_minutes(9, &mut log).await;
    assert_eq!(p.recv.at("users/alice").len(), 1);
    p.run_minutes(1, &mut log).await;
    assert_eq!(p.recv.at("users/alice").len(), 2, "{log:?}");
    let timeline = p.app.incident("INC-1").await["timeline"].clone();
    let manual = timeline
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "escalation_step" && e["actor"]["name"]["user"] == "alice")
        .expect("manual step on the timeline");
    assert_eq!(manual["step"], 2);
    p.app.stop().await;
}

#[tokio::test]
async fn a_flaky_receiver_gets_the_page_once_and_the_timeline_shows_retries() {
    let p = paging().await;
    p.recv.script(
        "users/alice",
        &[
            Answer::Status(500),
            Answer::RetryAfter(429, 7),
            Answer::Status(200),
        ],
    );
    trigger(&p.app, "pay-1").await;
    p.app.tick().await;
    assert_eq!(p.recv.at("users/alice").len(), 1);
    // First retry after ~1s (±20%).
    p.clock.advance(Duration::milliseconds(1300));
    p.app.tick().await;
    assert_eq!(p.recv.at("users/alice").len(), 2);
    // 429 said 7 seconds: not at 6.
    p.clock.advance(Duration::seconds(6));
    p.app.tick().await;
    assert_eq!(p.recv.at("users/alice").len(), 2);
    p.clock.advance(Duration::seconds(1));
    p.app.tick().await;
    let got = p.recv.at("users/alice");
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 429, 200]
    );
    assert!(
        got.iter()
            .all(|r| r.idempotency_key == got[0].idempotency_key)
    );
    assert_eq!(
        p.recv
            .delivered_keys()
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![1]
    );
    let timeline = p.app.incident("INC-1").await["timeline"].clone();
    let retries: Vec<&serde_json::Value> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "delivery_retry")
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(
        retries[0]["error"],
        "receiver answered 500 Internal Server Error"
    );
    assert_eq!(
        retries[1]["error"],
        "receiver answered 429 Too Many Requests"
    );
    let paged = timeline_entry(&timeline, "paged");
    assert_eq!(paged["attempts"], 3);
    p.app.stop().await;
}

#[tokio::test]
async fn a_redirecting_receiver_is_not_followed_and_the_page_is_not_marked_delivered() {
    for status in [301, 302, 303, 307, 308] {
        let p = paging().await;
        p.recv.script("users/alice", &[Answer::Redirect(status)]);
        trigger(&p.app, "pay-1").await;
        p.app.tick().await;
        let got = p.recv.received();
        assert_eq!(
            got.iter()
                .map(|r| (r.method.as_str(), r.path.as_str(), r.answered))
                .collect::<Vec<_>>(),
            vec![("POST", "/users/alice", status)],
            "the redirect must not be followed"
        );
        let timeline = p.app.incident("INC-1").await["timeline"].clone();
        assert!(
            !timeline
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["type"] == "paged"),
            "a redirect is not a delivery: {timeline}"
        );
        let retry = timeline_entry(&timeline, "delivery_retry");
        let error = retry["error"].as_str().unwrap();
        assert!(
            error.contains(&status.to_string()) && error.contains("/landing"),
            "{error}"
        );
        // The retry goes to the configured URL again, which now answers 200.
        p.clock.advance(Duration::milliseconds(1300));
        p.app.tick().await;
        assert_eq!(p.recv.at("users/alice").len(), 2);
        assert!(p.recv.at("landing").is_empty());
        let timeline = p.app.incident("INC-1").await["timeline"].clone();
        assert_eq!(timeline_entry(&timeline, "paged")["attempts"], 2);
        p.app.stop().await;
    }
}

#[tokio::test]
async fn giving_up_is_loud_and_moves_to_the_next_contact_method() {
    let p = paging().await;
    p.recv.script("users/alice", &[Answer::Status(503); 50]);
    trigger(&p.app, "pay-1").await;
    let mut log = Vec::new();
    p.app.tick().await;
    p.collect(&mut log);
    // Tick every 10 s for two minutes of retries: the email (normally due
    // at 2m) goes as soon as the webhook is given up on.
    for _ in 0..13 {
        p.clock.advance(Duration::seconds(10));
        p.app.tick().await;
    }
    let timeline = p.app.incident("INC-1").await["timeline"].clone();
    let failed = timeline_entry(&timeline, "delivery_failed");
    assert_eq!(failed["recipient"], "alice");
    assert_eq!(failed["method"], "webhook");
    assert_eq!(p.smtp.mails.lock().len(), 1);
    let mail = p.smtp.mails.lock()[0].data.clone();
    assert!(
        mail.contains("Subject: [SEV2] INC-1: Payment errors above 5% (payments)"),
        "{mail}"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn a_wedged_receiver_holds_up_nobody_else() {
    // Real time and the real background tasks for this one.
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let notify = r#"initial_backoff = "1s"
max_backoff = "60s"
give_up_after = "2m"
request_timeout = "30s""#;
    let app = spawn_app_with(
        Arc::new(tocsin::clock::SystemClock),
        Some("payments"),
        &paging_config(&recv, smtp.port, notify),
    )
    .await;
    app.start_background();
    // Whoever the rotation puts on call at this real time (alice or bob),
    // their receiver hangs.
    recv.script("users/alice", &[Answer::Hang]);
    recv.script("users/bob", &[Answer::Hang]);
    trigger(&app, "wedge").await;
    // The on-call user's receiver hangs; an incident paged by the API to carol goes through.
    let (s, _) = app
        .post_with_token("/v1/incidents/INC-1/escalate", Some(API_TOKEN), &json!({}))
        .await;
    assert_eq!(s, 200);
    assert!(
        recv.wait_for(2, std::time::Duration::from_secs(5)).await,
        "carol and ops should be paged while alice's receiver hangs: {:?}",
        recv.received()
    );
    let paths: Vec<String> = recv.received().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/users/carol".to_string()) && paths.contains(&"/hooks/ops".to_string()),
        "{paths:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receiver_holds_only_its_own_slots() {
    let hung = Receiver::start().await;
    let healthy = Receiver::start().await;
    let n = 150;
    hung.script("users/hung", &vec![Answer::Hang; 2 * n]);
    let extra = format!(
        r#"
[notify]
initial_backoff = "1s"
max_backoff = "60s"
give_up_after = "10m"
request_timeout = "10s"

[[users]]
name = "hung"
webhook = {{ url = "{hung}" }}
contact_methods = [{{ kind = "webhook" }}]

[[users]]
name = "healthy"
webhook = {{ url = "{healthy}" }}
contact_methods = [{{ kind = "webhook" }}]

[[escalation_policies]]
name = "payments"
[[escalation_policies.steps]]
targets = [{{ user = "hung" }}, {{ user = "healthy" }}]
delay = "10m"
"#,
        hung = hung.url("users/hung"),
        healthy = healthy.url("users/healthy"),
    );
    let app = spawn_app_with(
        Arc::new(tocsin::clock::SystemClock),
        Some("payments"),
        &extra,
    )
    .await;
    let started = std::time::Instant::now();
    for i in 0..n {
        trigger(&app, &format!("hung-{i}")).await;
    }
    let triggered = started.elapsed();
    app.start_background();
    let arrived = healthy
        .wait_for(n, std::time::Duration::from_secs(60))
        .await;
    let took = started.elapsed();
    assert!(
        arrived,
        "the healthy receiver got {} of {n}",
        healthy.received().len()
    );
    println!(
        "{n} incidents paging a hung and a healthy receiver: the healthy one had all {n} pages \
         {took:?} after the first alert ({triggered:?} of it opening the incidents)"
    );
    // Shared slots only: every round of 64 would wait out the hung
    // receiver's 10 s timeout.
    assert!(
        took < triggered + std::time::Duration::from_secs(5),
        "the healthy receiver waited {took:?} behind the hung one"
    );
    assert_eq!(healthy.delivered_keys().len(), n);
    app.stop().await;
}

/// An email page names the incident as its subject does and says how to
/// acknowledge from a mailbox: a signed link whose GET only shows a
/// button (mail scanners open links), whose POST acknowledges once.
#[tokio::test]
async fn an_email_page_carries_a_one_click_acknowledge_link() {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let extra = paging_config(&recv, smtp.port, QUICK_NOTIFY).replace(
        "tls = \"none\"",
        "tls = \"none\"\naction_secret = \"email-links-secret-0123456789\"",
    );
    let app = spawn_app_with_server(
        Arc::new(clock.clone()),
        Some("payments"),
        &extra,
        crate::common::test_limits(),
        "public_url = \"https://tocsin.example/base\"",
    )
    .await;
    // alice's receiver refuses, so her email comes forward.
    recv.script("users/alice", &[Answer::Status(410)]);
    trigger(&app, "mail-ack").await;
    app.tick().await;
    for _ in 0..3 {
        clock.advance(Duration::minutes(1));
        app.tick().await;
    }
    let mail = smtp
        .mails
        .lock()
        .first()
        .map(|m| m.data.clone())
        .expect("an email page");
    // The body is quoted-printable: undo soft line breaks and `=3D`.
    let mail = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(mail.contains("INC-1: Payment errors above 5%"), "{mail}");
    assert!(
        mail.contains("From a terminal: tocsin incidents ack INC-1"),
        "{mail}"
    );
    assert!(!mail.contains("POST /v1/"), "{mail}");
    let url = mail
        .lines()
        .find(|l| l.starts_with("https://tocsin.example/base/ack/"))
        .unwrap_or_else(|| panic!("no link in {mail}"))
        .trim()
        .to_string();
    let path = url.trim_start_matches("https://tocsin.example/base");

    // GET shows the button and changes nothing.
    let page = app.get_text(path).await;
    assert!(page.contains("<form method=\"post\">"), "{page}");
    assert!(page.contains("Acknowledge INC-1 as alice"), "{page}");
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    // POST acknowledges as alice, recorded with the link as principal.
    let r = app.http.post(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("INC-1 is acknowledged"));
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "acknowledged");
    assert_eq!(inc["incident"]["acknowledged_by"]["name"]["user"], "alice");
    assert!(
        inc["incident"]["acknowledged_by"]["name"]["principal"]
            .as_str()
            .unwrap()
            .starts_with("email:")
    );
    // Once only; a forged token is refused.
    let again = app.http.post(app.url(path)).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let forged = app
        .http
        .post(app.url(&format!("{path}x")))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    app.stop().await;
}
