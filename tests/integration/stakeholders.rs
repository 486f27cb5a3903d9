//! Stakeholder updates and the public status page: `/incident update`
//! reaches the service's status channel and email subscribers and the
//! timeline; `/incident public` puts the incident on `/status`, which
//! shows its title and updates and nothing of its alerts.

use crate::common::fake_slack::FakeSlack;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::slack::{Slack, slack_config};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tocsin::clock::SystemClock;

const SHOP_KEY: &str = "test-shop-pd-key";

fn shop(extra_service_keys: &str) -> String {
    format!(
        r#"
[[services]]
name = "shop"
{extra_service_keys}
[[integrations]]
name = "shop-pd"
kind = "pagerduty"
key = "{SHOP_KEY}"
service = "shop"
"#
    )
}

async fn stakeholders() -> (Slack, SmtpSink) {
    let fake = FakeSlack::start().await;
    // The status channel exists already; tocsin was never invited to it
    // (the manifest's chat:write.public lets it post there).
    fake.add_channel("C0STATUS", "payments-status", false, false);
    let smtp = SmtpSink::start().await;
    let config = format!(
        r#"{slack}
[smtp]
host = "127.0.0.1"
port = {port}
from = "tocsin@example.test"
tls = "none"

[status_page]
title = "Example & Co status"
{shop}
[[users]]
name = "dave"
slack_id = "U0DAVE"
contact_methods = [{{ kind = "log" }}]
"#,
        slack = slack_config(&fake),
        port = smtp.port,
        shop = shop(
            r#"escalation_policy = "payments"
status_channel = "C0STATUS"
subscribers = ["cfo@example.test", "support@example.test"]
public = true"#
        ),
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("payments"), &config).await;
    app.start_background();
    (Slack { app, fake }, smtp)
}

async fn open_shop_incident(app: &TestApp) {
    let body = json!({"routing_key": SHOP_KEY, "event_action": "trigger", "dedup_key": "checkout",
        "payload": {"summary": "Checkout errors above 5%", "source": "db-7.internal", "severity": "error",
                    "custom_details": {"secret_customer": "acct-4242"}}});
    let (s, b) = app.post_json("/v2/enqueue", &body).await;
    assert_eq!(s, 202, "{b}");
}

async fn api(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    app.post_with_token(path, Some(API_TOKEN), body).await
}

async fn status_json(app: &TestApp) -> (u16, Value, String) {
    let resp = app
        .http
        .get(app.public_url("/status.json"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, resp.json().await.unwrap(), cache)
}

/// Polls `/status.json` until `check` holds (its view is rebuilt at most
/// every 250 ms while incidents change).
async fn wait_status(app: &TestApp, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (s, body, _) = status_json(app).await;
        assert_eq!(s, 200, "{body}");
        if check(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the status page never showed {what}");
}

async fn wait_mails(smtp: &SmtpSink, n: usize) -> Vec<crate::common::smtp::Mail> {
    for _ in 0..200 {
        let mails = smtp.mails.lock().clone();
        if mails.len() >= n {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} mails, got {:?}", smtp.mails.lock());
}

#[tokio::test]
async fn an_update_reaches_the_status_channel_subscribers_and_the_incident_channel() {
    let (s, smtp) = stakeholders().await;
    open_shop_incident(&s.app).await;
    let ch = s.channel_of(1).await;
    let text =
        "Card payments fail for some customers <b>& we roll back</b>; next update in 30 min.";
    let reply = s
        .ask("U0ALICE", &ch, "/incident", &format!("update {text}"), "u1")
        .await;
    assert_eq!(
        reply["text"],
        "Status update posted on INC-1 (to 1 status channel and 2 subscribers)."
    );

    // The stakeholder channel, escaped for Slack (no tag, no stray &).
    s.fake
        .wait_until("the status channel post", |f| {
            !f.messages("C0STATUS").is_empty()
        })
        .await;
    let posted = s.fake.messages("C0STATUS")[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        posted,
        "*Status update: INC-1 Checkout errors above 5% (SEV2, triggered)*\n\
Card payments fail for some customers &lt;b&gt;&amp; we roll back&lt;/b&gt;; next update in 30 min."
    );
    assert!(s.fake.take_violations().is_empty());

    // Each subscriber gets one email with the update and no alert detail.
    let mails = wait_mails(&smtp, 2).await;
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["cfo@example.test", "support@example.test"]);
    for m in &mails {
        assert!(
            m.data
                .contains("Subject: [SEV2] Update on INC-1: Checkout errors above 5%"),
            "{}",
            m.data
        );
        assert!(m.data.contains("Card payments fail for some customers"));
        assert!(!m.data.contains("acct-4242"), "{}", m.data);
    }

    // The responders see it in the incident channel, and on the timeline.
    s.fake
        .wait_until("the incident channel post", |f| {
            f.messages(&ch).iter().any(|m| {
                m["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Status update by alice:"))
            })
        })
        .await;
    let inc = s.app.incident("INC-1").await;
    assert_eq!(
        timeline_entry(&inc["timeline"], "status_update")["text"],
        text
    );
    assert_eq!(inc["incident"]["updates"][0]["text"], text);

    // Resolved, the summary lists it.
    s.ask("U0ALICE", &ch, "/incident", "resolve", "u2").await;
    let summary = s.app.get_text("/v1/incidents/INC-1/summary").await;
    assert!(summary.contains("## Status updates"), "{summary}");
    assert!(summary.contains(&format!("alice: {text}")), "{summary}");
    s.app.stop().await;
}

#[tokio::test]
async fn the_status_page_shows_public_incidents_and_their_updates_only() {
    let (s, _smtp) = stakeholders().await;
    open_shop_incident(&s.app).await;
    // A payments incident: its service is not public, so never shown.
    let (st, b) = s.app.pd("trigger", "pay", "Payments queue stuck").await;
    assert_eq!(st, 202, "{b}");
    let ch = s.channel_of(1).await;

    let (code, body, cache) = status_json(&s.app).await;
    assert_eq!(code, 200);
    assert_eq!(cache, "public, max-age=10");
    assert_eq!(body["all_clear"], true, "not public yet: {body}");

    // dave is nobody's responder: he may not put it on the page.
    let reply = s.ask("U0DAVE", &ch, "/incident", "public", "p0").await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("You may not change the status page of INC-1"),
        "{reply}"
    );
    let reply = s.ask("U0ALICE", &ch, "/incident", "public", "p1").await;
    assert_eq!(reply["text"], "alice put INC-1 on the public status page.");
    s.ask(
        "U0ALICE",
        &ch,
        "/incident",
        "update We are investigating slow checkouts.",
        "p2",
    )
    .await;
    let body = wait_status(&s.app, "INC-1 with its update", |b| {
        b["incidents"][0]["updates"][0]["text"] == "We are investigating slow checkouts."
    })
    .await;
    assert_eq!(body["title"], "Example & Co status");
    let incidents = body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{body}");
    let inc = &incidents[0];
    assert_eq!(inc["id"], "INC-1");
    assert_eq!(inc["title"], "Checkout errors above 5%");
    assert_eq!(inc["service"], "shop");
    assert_eq!(inc["status"], "triggered");
    // Only what stakeholders were told: no alerts, sources, details, people.
    let text = body.to_string();
    for hidden in [
        "db-7.internal",
        "acct-4242",
        "alice",
        "Payments queue stuck",
    ] {
        assert!(!text.contains(hidden), "{hidden} leaked: {text}");
    }
    let keys: Vec<&String> = inc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "service",
            "severity",
            "started_at",
            "status",
            "title",
            "updates"
        ]
    );

    // The HTML page: escaped, and as bare.
    let html = s
        .app
        .http
        .get(s.app.public_url("/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<h1>Example &amp; Co status</h1>"), "{html}");
    assert!(html.contains("We are investigating slow checkouts."));
    assert!(!html.contains("db-7.internal") && !html.contains("acct-4242"));

    // Taken off again, the page is all clear.
    let reply = s.ask("U0ALICE", &ch, "/incident", "private", "p3").await;
    assert_eq!(
        reply["text"],
        "alice took INC-1 off the public status page."
    );
    wait_status(&s.app, "all clear", |b| b["all_clear"] == true).await;
    s.app.stop().await;
}

#[tokio::test]
async fn the_api_posts_updates_and_refuses_what_is_wrong() {
    let smtp = SmtpSink::start().await;
    let config = format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
from = "tocsin@example.test"
tls = "none"
{shop}"#,
        port = smtp.port,
        shop = shop(
            r#"subscribers = ["cfo@example.test"]
public = true"#
        ),
    );
    let app = spawn_app_with(Arc::new(SystemClock), None, &config).await;
    app.start_background();
    open_shop_incident(&app).await;

    for (body, want) in [
        (json!({}), "'text' is required"),
        (json!({"text": "   "}), "'text' is required"),
        (json!({"text": "x".repeat(2001)}), "at most 2000"),
        (
            json!({"text": "ok", "note": "no"}),
            "'note' is not accepted",
        ),
    ] {
        let (s, b) = api(&app, "/v1/incidents/INC-1/updates", &body).await;
        assert_eq!(s, 400, "{b}");
        assert!(b["message"].as_str().unwrap().contains(want), "{b}");
    }
    let (s, b) = api(
        &app,
        "/v1/incidents/INC-1/updates",
        &json!({"text": "Fixed; monitoring."}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["sent"],
        json!({"channels": 0, "subscribers": 1, "drill": false})
    );
    assert_eq!(b["incident"]["updates"][0]["text"], "Fixed; monitoring.");
    let mails = wait_mails(&smtp, 1).await;
    assert!(mails[0].data.contains("Fixed; monitoring."));

    let (s, b) = api(&app, "/v1/incidents/INC-1/public", &json!({})).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = api(&app, "/v1/incidents/INC-1/public", &json!({"public": true})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["service_public"], true);
    let (s, b) = api(&app, "/v1/incidents/INC-1/public", &json!({"public": true})).await;
    assert_eq!(s, 409, "{b}");
    let body = wait_status(&app, "INC-1", |b| b["incidents"][0]["id"] == "INC-1").await;
    assert_eq!(
        body["incidents"][0]["updates"][0]["text"],
        "Fixed; monitoring."
    );

    // A wrong token may not post.
    let (s, _) = app
        .post_with_token(
            "/v1/incidents/INC-1/updates",
            Some("not-a-token"),
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(s, 401);
    // Nothing more was sent than the one update.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.mails.lock().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn without_a_public_service_there_is_no_status_page() {
    let app = spawn_app().await;
    let (s, b, _) = status_json(&app).await;
    assert_eq!(s, 404, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("public = true"),
        "{b}"
    );
    app.stop().await;
}

#[test]
fn tocsin_check_explains_bad_stakeholder_keys() {
    let bad = [
        (
            r#"status_channel = "C0STATUS""#,
            "services[2].status_channel",
            "needs a [slack] or [discord] section",
        ),
        (
            r#"subscribers = ["not an address"]"#,
            "services[2].subscribers[0]",
            "does not look like an email address",
        ),
        (
            r#"subscribers = ["cfo@example.test"]"#,
            "services[2].subscribers",
            "needs an [smtp] section",
        ),
        (
            "public = true\nprivate = true",
            "services[2].public",
            "cannot be on the public status page",
        ),
        (
            r#"status_channel = { discord = "123" }"#,
            "services[2].status_channel.discord",
            "needs a [discord] section",
        ),
    ];
    for (keys, path, message) in bad {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text_with(dir.path(), "127.0.0.1:0", None, &shop(keys));
        let err = tocsin::config::Config::from_toml_str(&text, &Default::default())
            .expect_err(keys)
            .to_string();
        assert!(err.contains(path), "{keys}: {err}");
        assert!(err.contains(message), "{keys}: {err}");
    }
}
