//! The fakes check every request against the platforms' published specs:
//! what Slack's or Discord's spec refuses is refused the platform's way and
//! recorded, so a test cannot pass on it.

use crate::common::fake_discord::FakeDiscord;
use crate::common::fake_slack::FakeSlack;
use serde_json::{Value, json};

async fn slack_call(fake: &FakeSlack, method: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/{method}", fake.api_url()))
        .bearer_auth("xoxb-test-token")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_fake_slack_refuses_calls_its_spec_refuses() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C1", "incident", false, true);
    let refused = json!({"ok": false, "error": "invalid_arguments"});
    for (method, body) in [
        ("chat.postMesage", json!({"channel": "C1", "text": "hi"})),
        ("chat.postMessage", json!({"text": "no channel"})),
        ("chat.postMessage", json!({"channel": "C1"})),
        (
            "chat.postMessage",
            json!({"channel": "C1", "text": "hi", "unfurl_link": false}),
        ),
        (
            "chat.postMessage",
            json!({"channel": "C1", "text": "hi", "mrkdwn": "maybe"}),
        ),
        ("conversations.open", json!({"users": ["U1", "U2"]})),
        (
            "conversations.history",
            json!({"channel": "D1", "limit": "twenty"}),
        ),
        ("conversations.create", json!({"is_private": false})),
    ] {
        assert_eq!(
            slack_call(&fake, method, body.clone()).await,
            refused,
            "{method} {body}"
        );
        assert_eq!(fake.take_violations().len(), 1, "{method} {body}");
    }
    // What the spec (and the arguments Slack documents since) allows.
    for (method, body) in [
        (
            "chat.postMessage",
            json!({"channel": "C1", "text": "hi", "blocks": [], "mrkdwn": true}),
        ),
        (
            "conversations.invite",
            json!({"channel": "C1", "users": "U1,U2", "force": true}),
        ),
        ("conversations.open", json!({"users": "U1"})),
        (
            "conversations.history",
            json!({"channel": "D1", "limit": 20, "include_all_metadata": true}),
        ),
    ] {
        assert_eq!(
            slack_call(&fake, method, body.clone()).await["ok"],
            true,
            "{method} {body}"
        );
    }
    assert!(fake.take_violations().is_empty());
    // Without a token the call is refused too.
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .json(&json!({"channel": "C1", "text": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp, refused);
    assert_eq!(
        fake.take_violations(),
        ["chat.postMessage: missing required argument `token`"]
    );
    fake.calls();
}

#[tokio::test]
async fn the_fake_discord_refuses_bodies_its_openapi_schema_refuses() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel(0, "inc-1", None);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!(
            "{}/api/v10/channels/{channel}/messages",
            fake.api_url()
        ))
        .header("authorization", "Bot t")
        .json(&body)
        .send()
    };
    let embed = |n: usize| json!({"title": "t", "description": "d".repeat(n)});
    for body in [
        json!({"content": "x".repeat(4001)}),
        json!({"content": 42}),
        json!({"content": "hi", "nonce": "n".repeat(26)}),
        json!({"content": "hi", "enforce_nonce": "yes"}),
        json!({"embeds": [embed(4000), embed(2500)]}),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["code"], 50035, "{body}");
        assert_eq!(answer["message"], "Invalid Form Body");
        assert!(answer["errors"].as_object().is_some_and(|e| !e.is_empty()));
        assert_eq!(fake.take_violations().len(), 1, "{body}");
    }
    assert!(fake.messages(&channel).is_empty(), "nothing half-written");
    let r = post(json!({"content": "hi", "nonce": "abc", "enforce_nonce": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(fake.take_violations().is_empty());
    fake.calls();
}
