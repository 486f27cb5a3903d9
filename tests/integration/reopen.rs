//! `reopen_within`: a resolved incident whose alert fires again soon after
//! reopens (same number, pages again) instead of opening a new one.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use chrono::Duration;
use serde_json::json;
use std::sync::Arc;
use tocsin::clock::ManualClock;

const SHOP_KEY: &str = "test-shop-key";

fn shop() -> String {
    format!(
        r#"
[[services]]
name = "checkout"
escalation_policy = "payments"
reopen_within = "15m"

[[integrations]]
name = "shop"
kind = "generic"
key = "{SHOP_KEY}"
service = "checkout"
"#
    )
}

#[tokio::test]
async fn a_resolve_then_trigger_within_reopen_within_reopens_the_incident_and_pages_again() {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let extra = format!("{}{}", paging_config(&recv, smtp.port, ""), shop());
    let app = spawn_app_with(Arc::new(clock.clone()), Some("payments"), &extra).await;
    let hook = format!("/hooks/{SHOP_KEY}");
    let fire = json!({"summary": "Checkout errors", "dedup_key": "errors"});
    let clear = json!({"dedup_key": "errors", "status": "resolve"});

    let (s, body) = app.post_json(&hook, &fire).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["results"][0]["effect"], "opened", "{body}");
    app.tick().await;
    assert_eq!(recv.at("users/alice").len(), 1, "{:?}", recv.received());

    clock.advance(Duration::minutes(2));
    let (s, body) = app.post_json(&hook, &clear).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "resolved"
    );

    // Fires again 10 minutes after the resolve: INC-1 again, not INC-2.
    clock.advance(Duration::minutes(10));
    let (s, body) = app.post_json(&hook, &fire).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["results"][0]["effect"], "reopened", "{body}");
    assert_eq!(body["results"][0]["incident"], "INC-1", "{body}");
    let list = app.incidents().await;
    assert_eq!(list.len(), 1, "{list:?}");
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "triggered");
    assert_eq!(inc["incident"]["resolved_at"], serde_json::Value::Null);
    let reopened = timeline_entry(&inc["timeline"], "reopened");
    assert_eq!(reopened["actor"]["kind"], "system");
    // Escalation starts over: the first step pages alice again.
    app.tick().await;
    assert_eq!(recv.at("users/alice").len(), 2, "{:?}", recv.received());

    // Resolved again, and quiet for longer than reopen_within: a new one.
    let (s, _) = app.post_json(&hook, &clear).await;
    assert_eq!(s, 202);
    clock.advance(Duration::minutes(16));
    let (s, body) = app.post_json(&hook, &fire).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["results"][0]["effect"], "opened", "{body}");
    assert_eq!(body["results"][0]["incident"], "INC-2", "{body}");
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "resolved"
    );

    // A service without reopen_within opens a new incident every time.
    let scripts = format!("/hooks/{GENERIC_KEY}");
    let disk = json!({"summary": "Disk full", "dedup_key": "disk"});
    app.post_json(&scripts, &disk).await;
    app.post_json(&scripts, &json!({"dedup_key": "disk", "status": "resolve"}))
        .await;
    clock.advance(Duration::minutes(1));
    let (_, body) = app.post_json(&scripts, &disk).await;
    assert_eq!(body["results"][0]["effect"], "opened", "{body}");
    assert_eq!(body["results"][0]["incident"], "INC-4", "{body}");
}
