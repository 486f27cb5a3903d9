//! Slack end to end, through slack-morphism against a fake Slack Web API:
//! channels, cards, paging DMs, signed commands and buttons, rate limits.

use crate::common::fake_slack::{Fail, FakeSlack};
use crate::common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin::clock::{Clock, SystemClock};
use tocsin::store::Store;

const SECRET: &str = "test-signing-secret";

pub fn slack_config(fake: &FakeSlack) -> String {
    format!(
        r#"
[slack]
bot_token = "xoxb-test-token"
signing_secret = "{SECRET}"
team_id = "T0TEAM"
api_url = "{api}"
{people}"#,
        api = fake.api_url(),
        people = chat_people("slack", "U0ALICE", "U0BOB", "1h"),
    )
}

pub struct Slack {
    pub app: TestApp,
    pub fake: FakeSlack,
}

async fn slack() -> Slack {
    let fake = FakeSlack::start().await;
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &slack_config(&fake),
    )
    .await;
    app.start_background();
    Slack { app, fake }
}

fn sign(ts: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn now_ts() -> String {
    SystemClock.now().timestamp().to_string()
}

impl Slack {
    async fn post_signed(
        &self,
        path: &str,
        body: &str,
        ts: &str,
        signature: &str,
        ct: &str,
    ) -> (u16, String) {
        let resp = self
            .app
            .http
            .post(self.app.url(path))
            .header("content-type", ct)
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// A signed slash command; returns the HTTP status.
    pub async fn command(
        &self,
        user: &str,
        channel: &str,
        command: &str,
        text: &str,
        reply_id: &str,
    ) -> u16 {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", "unused")
            .append_pair("team_id", "T0TEAM")
            .append_pair("channel_id", channel)
            .append_pair("user_id", user)
            .append_pair("command", command)
            .append_pair("text", text)
            .append_pair("response_url", &self.fake.response_url(reply_id))
            .append_pair("trigger_id", "1.2.3")
            .finish();
        let ts = now_ts();
        let sig = sign(&ts, &body);
        self.post_signed(
            "/slack/commands",
            &body,
            &ts,
            &sig,
            "application/x-www-form-urlencoded",
        )
        .await
        .0
    }

    /// A signed button press in the incident's channel.
    pub async fn press(&self, user: &str, action: &str, incident: &str, reply_id: &str) -> u16 {
        let key = incident.split(' ').next().unwrap_or_default();
        let n: u64 = key.trim_start_matches("INC-").parse().unwrap();
        let channel = self.channel_of(n).await;
        self.press_in(user, &channel, "T0TEAM", action, incident, reply_id)
            .await
    }

    /// A signed button press in `channel`, from workspace `team`.
    pub async fn press_in(
        &self,
        user: &str,
        channel: &str,
        team: &str,
        action: &str,
        incident: &str,
        reply_id: &str,
    ) -> u16 {
        let payload = json!({
            "type": "block_actions",
            "team": {"id": team, "domain": "test"},
            "user": {"id": user, "name": user, "team_id": team},
            "api_app_id": "A0APP",
            "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel, "is_ephemeral": false},
            "channel": {"id": channel, "name": if channel.starts_with('D') { "directmessage" } else { "incident" }},
            "trigger_id": "1.2.3",
            "response_url": self.fake.response_url(reply_id),
            "actions": [{"type": "button", "action_id": action, "block_id": "b", "value": incident, "action_ts": "1700000000.1"}],
        });
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let ts = now_ts();
        let sig = sign(&ts, &body);
        self.post_signed(
            "/slack/interactions",
            &body,
            &ts,
            &sig,
            "application/x-www-form-urlencoded",
        )
        .await
        .0
    }

    /// A signed slash command and the reply it gets.
    pub async fn ask(
        &self,
        user: &str,
        channel: &str,
        command: &str,
        text: &str,
        reply_id: &str,
    ) -> Value {
        assert_eq!(
            self.command(user, channel, command, text, reply_id).await,
            200
        );
        self.reply(reply_id).await
    }

    pub async fn reply(&self, id: &str) -> Value {
        self.fake
            .wait_until(&format!("a reply on {id}"), |f| !f.responses(id).is_empty())
            .await;
        self.fake.responses(id)[0].clone()
    }

    /// Waits for the incident channel and the card of INC-n.
    pub async fn channel_of(&self, n: u64) -> String {
        let key = format!("INC-{n}");
        let mut channel = String::new();
        for _ in 0..200 {
            let inc = self.app.incident(&key).await;
            if let Some(c) = inc["incident"]["chat"]["slack"]["channel_id"].as_str() {
                channel = c.to_string();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(
            !channel.is_empty(),
            "no channel for {key}: {:#?}",
            self.fake.calls()
        );
        channel
    }
}

async fn trigger(app: &TestApp, key: &str) {
    let (s, b) = app.pd("trigger", key, "Payment errors above 5%").await;
    assert_eq!(s, 202, "{b}");
}

fn blocks_text(params: &Value) -> String {
    params["blocks"].to_string()
}

#[tokio::test]
async fn an_alert_opens_a_channel_invites_posts_the_card_and_pages_by_dm() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    // The card is posted last of the setup; wait for it.
    let card = card_post(&s, &channel).await;
    let create = s.fake.ok_calls("conversations.create");
    assert_eq!(create.len(), 1);
    assert_eq!(create[0].params["name"], "inc-1-payment-errors-above-5");
    assert_eq!(
        create[0].authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    let invite = s.fake.ok_calls("conversations.invite");
    assert_eq!(invite[0].params["channel"], channel);
    assert!(
        invite[0].params["users"].to_string().contains("U0ALICE"),
        "{:?}",
        invite[0].params
    );
    let topic = s.fake.ok_calls("conversations.setTopic");
    assert_eq!(
        topic[0].params["topic"],
        "[SEV2] INC-1: Payment errors above 5% (payments)"
    );
    let blocks = blocks_text(&card.params);
    assert!(
        blocks.contains("tocsin_ack") && blocks.contains("INC-1"),
        "{blocks}"
    );
    assert!(
        blocks.contains("<@U0ALICE>"),
        "the card names who was paged: {blocks}"
    );

    // The page: a DM to alice with buttons and the idempotency key in its metadata.
    s.fake.wait_for_dm("U0ALICE").await;
    let dm = s
        .fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .find(|c| c.params["channel"] == "DU0ALICE")
        .unwrap();
    assert_eq!(dm.params["metadata"]["event_type"], "tocsin_page");
    let key = s.app.page_key("INC-1", "alice").await;
    assert!(key.starts_with("INC-1/g0/r0/s0/user:alice/m0/"), "{key}");
    assert_eq!(
        dm.params["metadata"]["event_payload"]["idempotency_key"],
        key
    );
    assert!(blocks_text(&dm.params).contains("tocsin_resolve"));
    s.app.stop().await;
}

#[tokio::test]
async fn a_signed_ack_command_stops_escalation_and_updates_the_card() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    assert_eq!(s.app.store.timer_count().unwrap(), 1);
    let reply = s.ask("U0ALICE", &channel, "/incident", "ack", "r1").await;
    assert_eq!(reply["response_type"], "in_channel");
    assert_eq!(
        reply["text"],
        "INC-1 acknowledged by alice. Paging stopped."
    );
    assert_eq!(
        s.app.incident("INC-1").await["incident"]["status"],
        "acknowledged"
    );
    assert_eq!(s.app.store.timer_count().unwrap(), 0);
    s.fake
        .wait_until("the card update", |f| !f.ok_calls("chat.update").is_empty())
        .await;
    let update = &s.fake.ok_calls("chat.update")[0];
    assert_eq!(update.params["channel"], channel);
    let blocks = blocks_text(&update.params);
    assert!(
        blocks.contains("Acknowledged") && !blocks.contains("tocsin_ack"),
        "{blocks}"
    );
    // Slack asks for new block ids on update.
    let actions_id = |c: &crate::common::fake_slack::Call| {
        c.params["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .map(|b| b["block_id"].as_str().unwrap().to_string())
            .unwrap()
    };
    let posted = actions_id(&card_post(&s, &channel).await);
    let updated = actions_id(update);
    assert!(posted.starts_with("tocsin_card_1_"), "{posted}");
    assert!(updated.starts_with("tocsin_card_1_"), "{updated}");
    assert_ne!(posted, updated);

    // Inside the channel the incident is implied; elsewhere it must be named.
    assert!(
        s.ask("U0ALICE", "C9OTHER", "/incident", "resolve", "r2")
            .await["text"]
            .as_str()
            .unwrap()
            .contains("not an incident channel")
    );
    assert_eq!(
        s.ask(
            "U0ALICE",
            "C9OTHER",
            "/incident",
            "INC-1 resolve fixed it",
            "r3"
        )
        .await["text"],
        "INC-1 resolved by alice: fixed it"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_button_press_acknowledges() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    s.channel_of(1).await;
    assert_eq!(s.press("U0BOB", "tocsin_ack", "INC-1", "b1").await, 200);
    assert_eq!(
        s.reply("b1").await["text"],
        "INC-1 acknowledged by bob. Paging stopped."
    );
    let inc = s.app.incident("INC-1").await;
    assert_eq!(
        inc["incident"]["acknowledged_by"]["name"],
        json!({"user": "bob", "principal": "slack:T0TEAM/U0BOB"})
    );
    assert_eq!(s.app.store.timer_count().unwrap(), 0);
    s.app.stop().await;
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_strangers_change_nothing() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    let body = format!(
        "command=%2Fincident&text=ack&user_id=U0ALICE&channel_id={channel}&response_url=x&team_id=T&trigger_id=1"
    );
    let ts = now_ts();
    let (st, b) = s
        .post_signed(
            "/slack/commands",
            &body,
            &ts,
            "v0=deadbeef",
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_eq!(st, 401, "{b}");
    assert!(b.contains("signature does not match"), "{b}");
    let stale = (SystemClock.now().timestamp() - 600).to_string();
    let (st, b) = s
        .post_signed(
            "/slack/commands",
            &body,
            &stale,
            &sign(&stale, &body),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_eq!(st, 401);
    assert!(b.contains("5 minutes"), "{b}");
    let (st, _) = s
        .post_signed(
            "/slack/interactions",
            "payload=%7B%7D",
            &ts,
            "v0=00",
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_eq!(st, 401);
    // A correctly signed command from someone tocsin does not know.
    let reply = s
        .ask("U0STRANGER", &channel, "/incident", "ack", "s1")
        .await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("not a tocsin user")
    );
    assert_eq!(
        s.app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    assert_eq!(s.app.store.timer_count().unwrap(), 1);
    // Bad usage gets the usage, not silence.
    assert!(
        s.ask("U0ALICE", &channel, "/incident", "frobnicate", "u1")
            .await["text"]
            .as_str()
            .unwrap()
            .contains("Usage: /incident")
    );
    s.app.stop().await;
}

#[tokio::test]
async fn rate_limits_and_errors_are_retried_and_the_page_arrives_once() {
    let fake = FakeSlack::start().await;
    // The channel card is posted first, then the DM: fail both kinds a little.
    fake.fail(
        "conversations.open",
        &[Fail::RateLimited(1), Fail::ServerError],
    );
    fake.fail("conversations.create", &[Fail::RateLimited(1)]);
    // A transient Slack error after the channel exists: the retry must not
    // create a second channel.
    fake.fail("conversations.invite", &[Fail::Error("fatal_error")]);
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &slack_config(&fake),
    )
    .await;
    app.start_background();
    let s = Slack { app, fake };
    trigger(&s.app, "pay").await;
    s.channel_of(1).await;
    s.fake.wait_for_dm("U0ALICE").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let dms = s
        .fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.params["channel"] == "DU0ALICE")
        .count();
    assert_eq!(dms, 1);
    assert_eq!(s.fake.ok_calls("conversations.create").len(), 1);
    assert_eq!(s.fake.ok_calls("conversations.invite").len(), 1);
    let timeline = s.app.incident("INC-1").await["timeline"].clone();
    let retries: Vec<String> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "delivery_retry")
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert!(
        retries.contains(&"slack conversations.open: rate limited".to_string()),
        "{retries:?}"
    );
    assert!(
        retries.contains(&"slack conversations.open: HTTP 500 Internal Server Error".to_string()),
        "{retries:?}"
    );
    let paged = timeline_entry(&timeline, "paged");
    assert_eq!(paged["attempts"], 3);
    s.app.stop().await;
}

#[tokio::test]
async fn a_taken_channel_name_gets_a_suffix() {
    let s = slack().await;
    s.fake.take_name("inc-1-payment-errors-above-5");
    trigger(&s.app, "pay").await;
    s.channel_of(1).await;
    let inc = s.app.incident("INC-1").await;
    assert_eq!(
        inc["incident"]["chat"]["slack"]["channel_name"],
        "inc-1-payment-errors-above-5-2"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn url_verification_and_app_mentions() {
    let s = slack().await;
    let body = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let ts = now_ts();
    let (st, b) = s
        .post_signed(
            "/slack/events",
            &body,
            &ts,
            &sign(&ts, &body),
            "application/json",
        )
        .await;
    assert_eq!(st, 200);
    assert!(b.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));

    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    let body = json!({
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": "Ev1", "event_time": 1_700_000_000,
        "event": {"type": "app_mention", "user": "U0ALICE", "text": "<@U0TOCSIN> ack", "ts": "1700000000.000200",
                  "channel": channel, "event_ts": "1700000000.000200"}
    })
    .to_string();
    let (st, b) = s
        .post_signed(
            "/slack/events",
            &body,
            &ts,
            &sign(&ts, &body),
            "application/json",
        )
        .await;
    assert_eq!(st, 200, "{b}");
    s.fake
        .wait_until("the mention reply", |f| {
            f.ok_calls("chat.postMessage").iter().any(|c| {
                c.params["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("acknowledged by alice")
            })
        })
        .await;
    assert_eq!(
        s.app.incident("INC-1").await["incident"]["status"],
        "acknowledged"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn oncall_cover_and_page_commands() {
    let s = slack().await;
    assert!(
        s.ask("U0ALICE", "C1", "/oncall", "", "o1").await["text"]
            .as_str()
            .unwrap()
            .contains("*primary*: <@U0ALICE>")
    );
    // Bob may not put alice on call; alice (an admin) may put bob on call.
    assert!(
        s.ask("U0BOB", "C1", "/oncall", "cover <@U0ALICE> 2h", "o2")
            .await["text"]
            .as_str()
            .unwrap()
            .contains("Only admins")
    );
    assert!(
        s.ask("U0ALICE", "C1", "/oncall", "cover <@U0BOB> 2h", "o3")
            .await["text"]
            .as_str()
            .unwrap()
            .starts_with("<@U0BOB> is on call for primary until")
    );
    let (_, oncall) = s.app.get("/v1/oncall").await;
    assert_eq!(oncall["oncall"][0]["on_call"]["user"], "bob");

    let reply = s
        .ask(
            "U0ALICE",
            "C1",
            "/page",
            "<@U0BOB> the EU checkout is down",
            "p1",
        )
        .await;
    assert_eq!(
        reply["text"],
        "Opened INC-1 and paged <@U0BOB>: the EU checkout is down"
    );
    s.fake.wait_for_dm("U0BOB").await;
    assert!(
        s.ask(
            "U0ALICE",
            "C1",
            "/incident",
            "new Login failures spiking sev1",
            "n1"
        )
        .await["text"]
            .as_str()
            .unwrap()
            .starts_with("Opened INC-2: Login failures spiking (SEV1)")
    );
    s.app.stop().await;
}

/// `/page` typed inside an incident's channel pages for that incident, even
/// once it is acknowledged, instead of opening a new one.
#[tokio::test]
async fn page_inside_an_incident_channel_pages_for_that_incident() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let ch = s.channel_of(1).await;
    s.ask("U0ALICE", &ch, "/incident", "ack", "a").await;
    let dms_to_bob = |f: &crate::common::fake_slack::FakeSlack| {
        f.ok_calls("chat.postMessage")
            .iter()
            .filter(|c| c.params["channel"] == "DU0BOB")
            .count()
    };
    let before = dms_to_bob(&s.fake);
    let reply = s
        .ask(
            "U0ALICE",
            &ch,
            "/page",
            "<@U0BOB> need a second pair of eyes",
            "p",
        )
        .await;
    assert_eq!(reply["text"], "Paged <@U0BOB> for INC-1.");
    s.fake
        .wait_until("bob's page", |f| dms_to_bob(f) > before)
        .await;
    assert_eq!(s.app.incidents().await.len(), 1, "no new incident");
    let inc = s.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "acknowledged");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "escalation_step"
                && e["policy"] == "direct page"
                && e["notified"][0] == "bob"),
        "{inc:#}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn roles_notes_severity_and_resolve_archive_later() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let ch = s.channel_of(1).await;
    assert_eq!(
        s.ask("U0ALICE", &ch, "/incident", "role commander <@U0BOB>", "a")
            .await["text"],
        "<@U0BOB> is now commander of INC-1."
    );
    assert_eq!(
        s.ask(
            "U0ALICE",
            &ch,
            "/incident",
            "note action: alert on queue depth",
            "b"
        )
        .await["text"],
        "Action item added to INC-1."
    );
    assert_eq!(
        s.ask("U0ALICE", &ch, "/incident", "severity sev1", "c")
            .await["text"],
        "alice set INC-1 to SEV1."
    );
    s.ask("U0ALICE", &ch, "/incident", "resolve", "d").await;
    let inc = s.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["roles"]["commander"], "bob");
    let types: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "role_assigned",
        "action_item",
        "severity_changed",
        "resolved",
        "channel_opened",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    // The archive waits for [chat] archive_after (1h).
    let notes = s.app.get("/v1/incidents/INC-1/notifications").await.1;
    let archive = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["job"] == "archive")
        .expect("an archive job");
    assert_eq!(archive["state"]["state"], "pending");
    assert!(s.fake.ok_calls("conversations.archive").is_empty());
    s.app.stop().await;
}

#[tokio::test]
async fn a_retried_dm_finds_the_first_one_instead_of_paging_twice() {
    use tocsin::chat::{ChatMessage, ChatPlatform};
    let fake = FakeSlack::start().await;
    let cfg = tocsin::config::Config::from_toml_str(
        &format!(
            "[slack]\nbot_token = \"xoxb-t\"\nsigning_secret = \"s\"\nteam_id = \"T0TEAM\"\napi_url = \"{}\"\n",
            fake.api_url()
        ),
        &Default::default(),
    )
    .unwrap();
    let slack = tocsin::chat::slack::SlackPlatform::new(cfg.slack.as_ref().unwrap()).unwrap();
    let msg = ChatMessage::Text("page".into());
    let first = slack
        .send_dm("U0ALICE", &msg, "INC-9/g0/r0/s0/user:alice/m0")
        .await
        .unwrap();
    let again = slack
        .send_dm("U0ALICE", &msg, "INC-9/g0/r0/s0/user:alice/m0")
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(fake.ok_calls("chat.postMessage").len(), 1);
    let other = slack
        .send_dm("U0ALICE", &msg, "INC-9/g0/r0/s1/user:alice/m0")
        .await
        .unwrap();
    assert_ne!(first, other);
}

#[tokio::test]
async fn alert_text_reaches_slack_as_text_not_as_mentions() {
    let s = slack().await;
    let (st, b) = s
        .app
        .pd(
            "trigger",
            "hostile",
            "Disk <!channel> full & <@U999> @everyone",
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let channel = s.channel_of(1).await;
    let escaped = "Disk &lt;!channel&gt; full &amp; &lt;@U999&gt; @everyone";
    let mut intro = None;
    for _ in 0..100 {
        intro = s.fake.ok_calls("chat.postMessage").into_iter().find(|c| {
            c.params["channel"] == channel && blocks_text(&c.params).contains("Use the buttons")
        });
        if intro.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let intro = intro.expect("the channel intro");
    assert!(
        blocks_text(&intro.params).contains(escaped),
        "{}",
        intro.params
    );
    let card = s
        .fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .find(|c| c.params["channel"] == channel && blocks_text(&c.params).contains("tocsin_ack"))
        .expect("the card");
    assert!(
        blocks_text(&card.params).contains(escaped),
        "{}",
        card.params
    );
    assert!(
        blocks_text(&card.params).contains("<@U0ALICE>"),
        "tocsin's own mention stays"
    );
    for c in s.fake.calls() {
        let body = c.params.to_string();
        assert!(
            !body.contains("<!channel>") && !body.contains("<@U999>"),
            "{body}"
        );
    }
    s.app.stop().await;
}

/// Waits for the card of INC-n in its channel; returns the post.
async fn card_post(s: &Slack, channel: &str) -> crate::common::fake_slack::Call {
    let channel = channel.to_string();
    s.fake
        .wait_until("the card", |f| {
            f.ok_calls("chat.postMessage").iter().any(|c| {
                c.params["channel"] == channel.as_str()
                    && blocks_text(&c.params).contains("tocsin_ack")
            })
        })
        .await;
    s.fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .find(|c| {
            c.params["channel"] == channel.as_str() && blocks_text(&c.params).contains("tocsin_ack")
        })
        .unwrap()
}

#[tokio::test]
async fn the_fake_invites_nobody_when_one_id_is_unknown_unless_forced() {
    let fake = FakeSlack::start().await;
    fake.unknown_user("U0STALE");
    let http = reqwest::Client::new();
    let invite = |force: Option<&str>| {
        let mut form = vec![("channel", "C9"), ("users", "U0STALE,U0BOB")];
        if let Some(f) = force {
            form.push(("force", f));
        }
        let req = http
            .post(format!("{}/conversations.invite", fake.api_url()))
            .header("authorization", "Bearer xoxb-t")
            .form(&form);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let refused = invite(None).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"], "failed_for_some_users");
    assert_eq!(refused["errors"][0]["user"], "U0STALE");
    assert!(fake.members("C9").is_empty());
    let forced = invite(Some("true")).await;
    assert_eq!(forced["ok"], true, "{forced}");
    assert_eq!(
        forced["errors"],
        json!([{"user": "U0STALE", "ok": false, "error": "user_not_found"}])
    );
    assert_eq!(fake.members("C9"), ["U0BOB".to_string()].into());
}

#[tokio::test]
async fn a_stale_slack_id_is_reported_once_and_the_channel_is_still_set_up() {
    let fake = FakeSlack::start().await;
    // Alice, on call, left the workspace; her slack_id is stale.
    fake.unknown_user("U0STALE");
    let cfg = format!(
        "{}\n[[escalation_policies]]\nname = \"pair\"\n[[escalation_policies.steps]]\n\
         targets = [{{ schedule = \"primary\" }}, {{ user = \"bob\" }}]\ndelay = \"5m\"\n",
        slack_config(&fake).replace("U0ALICE", "U0STALE")
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("pair"), &cfg).await;
    app.start_background();
    let s = Slack { app, fake };
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    let card = card_post(&s, &channel).await;
    assert!(blocks_text(&card.params).contains("tocsin_resolve"));
    // Bob is in; the invite asked Slack to go past the stale id.
    assert_eq!(s.fake.members(&channel), ["U0BOB".to_string()].into());
    let invite = &s.fake.ok_calls("conversations.invite")[0];
    assert_eq!(invite.params["force"], true, "{:?}", invite.params);
    assert_eq!(
        s.fake.ok_calls("conversations.setTopic")[0].params["topic"],
        "[SEV2] INC-1: Payment errors above 5% (payments)"
    );
    // One notice names the stale id.
    let notice = |f: &FakeSlack| {
        f.ok_calls("chat.postMessage")
            .into_iter()
            .filter(|c| {
                c.params["channel"] == channel.as_str()
                    && c.params["text"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("Could not invite")
            })
            .collect::<Vec<_>>()
    };
    s.fake
        .wait_until("the notice", |f| !notice(f).is_empty())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let posts = notice(&s.fake);
    assert_eq!(posts.len(), 1);
    let text = posts[0].params["text"].as_str().unwrap();
    assert!(
        text.contains("alice (slack id U0STALE: user_not_found)"),
        "{text}"
    );
    assert!(!text.contains("U0BOB"), "{text}");
    let inc = s.app.incident("INC-1").await;
    assert!(
        inc["incident"]["chat"]["slack"]["card_id"].is_string(),
        "{inc}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn the_fake_refuses_what_slack_refuses() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C1", "one", false, true);
    fake.add_channel("C2", "two", false, true);
    fake.add_channel("C3", "secret", true, false);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let req = http
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .header("authorization", "Bearer xoxb-t")
            .json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["error"].clone() }
    };
    let section =
        |n: usize| json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(n)}});
    let blocks = |v: Vec<Value>| json!({"channel": "C1", "text": "t", "blocks": v});
    assert_eq!(post(blocks(vec![section(10); 51])).await, "invalid_blocks");
    assert_eq!(post(blocks(vec![section(3001)])).await, "invalid_blocks");
    assert_eq!(
        post(blocks(vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}})
        ]))
        .await,
        "invalid_blocks"
    );
    assert_eq!(
        post(blocks(vec![section(3000); 5])).await,
        "msg_blocks_too_long"
    );
    assert_eq!(
        post(json!({"channel": "C1", "text": "t".repeat(40_001)})).await,
        "msg_too_long"
    );
    // A channel Slack does not know, or a private one the bot is not in.
    for ch in ["C9", "C3"] {
        assert_eq!(
            post(json!({"channel": ch, "text": "t"})).await,
            "channel_not_found"
        );
    }
    // Another channel: C1 has had its burst of 5 (Slack's per-channel limit).
    let mut fine = blocks(vec![section(3000); 4]);
    fine["channel"] = "C2".into();
    assert_eq!(post(fine).await, Value::Null);
}

pub(crate) fn alertmanager_group(n: usize, status: &str) -> Value {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({"status": status,
                   "labels": {"alertname": "NodeDown", "instance": format!("node-{i:04}:9100"), "job": "node"},
                   "annotations": {"summary": format!("node-{i:04} is down")},
                   "startsAt": "2026-12-01T10:00:00Z",
                   "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-12-01T10:30:00Z" },
                   "fingerprint": format!("{i:016x}")})
        })
        .collect();
    json!({"version": "4", "status": status, "receiver": "tocsin", "groupKey": "{}:{alertname=\"NodeDown\"}",
           "truncatedAlerts": 0, "groupLabels": {"alertname": "NodeDown"},
           "commonLabels": {"alertname": "NodeDown", "job": "node"}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "alerts": alerts})
}

#[tokio::test]
async fn a_1000_alert_summary_is_one_card_with_the_whole_summary_as_a_file_once() {
    let s = slack().await;
    let hook = format!("/hooks/{AM_KEY}");
    let (st, b) = s
        .app
        .post_json(&hook, &alertmanager_group(1000, "firing"))
        .await;
    assert_eq!(st, 202, "{b}");
    let channel = s.channel_of(1).await;
    card_post(&s, &channel).await;
    let before = s.fake.calls().len();
    let started = std::time::Instant::now();
    let (st, b) = s
        .app
        .post_json(&hook, &alertmanager_group(1000, "resolved"))
        .await;
    assert_eq!(st, 202, "{b}");
    s.fake
        .wait_until("the summary file", |f| !f.shared_files().is_empty())
        .await;
    let elapsed = started.elapsed();
    let full = s.app.get_text("/v1/incidents/INC-1/summary").await;
    assert!(full.chars().count() > 12_000, "{} characters", full.len());
    // Nothing more comes (a duplicate would follow the first).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let files = s.fake.shared_files();
    assert_eq!(files.len(), 1, "{files:#?}");
    let file = &files[0];
    assert_eq!(file.channel, channel);
    assert_eq!(file.filename, "summary-INC-1.md");
    let content = String::from_utf8(file.content.clone()).unwrap();
    assert_eq!(content, full, "the file is the whole summary");
    for line in full.lines().filter(|l| l.contains("node-")) {
        assert!(content.contains(line), "{line}");
    }
    for i in 0..1000 {
        assert!(content.contains(&format!("node-{i:04}")), "node-{i:04}");
    }
    // The card: the key figures and the first lines, pointing at the file.
    let comment = file.initial_comment.clone().unwrap_or_default();
    for want in [
        "*Summary of INC-1*",
        "*Status:* resolved",
        "*Alerts:* 1000 alert(s)",
        "*Resolved by:*",
        "*First lines*",
        "`summary-INC-1.md`",
    ] {
        assert!(comment.contains(want), "{want}: {comment}");
    }
    // One message in the channel for the summary: no block post of it.
    let after: Vec<_> = s.fake.calls().into_iter().skip(before).collect();
    let summary_posts = after
        .iter()
        .filter(|c| {
            c.method == "chat.postMessage"
                && c.params["channel"] == channel.as_str()
                && c.params["text"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("# INC-1")
        })
        .count();
    assert_eq!(summary_posts, 0);
    let shares = after
        .iter()
        .filter(|c| c.method == "files.completeUploadExternal" && c.status == 200)
        .count();
    // Nothing tocsin sent was refused.
    let refused: Vec<_> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.params.get("__error").is_some() || c.status >= 400)
        .map(|c| (c.method, c.params["__error"].clone(), c.status))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    let summary_calls = after
        .iter()
        .filter(|c| {
            matches!(
                c.method.as_str(),
                "files.getUploadURLExternal" | "upload" | "files.completeUploadExternal"
            )
        })
        .count();
    eprintln!(
        "FIGURE slack 1000-alert summary: {} characters, {} message(s) ({} file share), {} retries, {} API calls, posted {:?} after the resolve",
        full.chars().count(),
        shares,
        shares,
        summary_calls - 3,
        summary_calls,
        elapsed
    );
    assert_eq!(shares, 1);
    s.app.stop().await;
}

#[tokio::test]
async fn the_fake_refuses_uploads_slack_refuses() {
    let fake = FakeSlack::start().await;
    let http = reqwest::Client::new();
    let call = |method: &str, body: Value| {
        let req = http
            .post(format!("{}/{method}", fake.api_url()))
            .header("authorization", "Bearer xoxb-t")
            .json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let url = |length: Value| {
        call(
            "files.getUploadURLExternal",
            json!({"filename": "a.md", "length": length}),
        )
    };
    assert_eq!(
        call("files.getUploadURLExternal", json!({"length": 3})).await["error"],
        "invalid_arguments"
    );
    assert_eq!(
        call("files.getUploadURLExternal", json!({"filename": "a.md"})).await["error"],
        "invalid_arguments"
    );
    assert_eq!(url(json!(0)).await["error"], "missing_argument");
    let got = url(json!(5)).await;
    assert_eq!(got["ok"], true, "{got}");
    let (id, upload) = (
        got["file_id"].as_str().unwrap().to_string(),
        got["upload_url"].as_str().unwrap().to_string(),
    );
    let complete = |id: &str| {
        call(
            "files.completeUploadExternal",
            json!({"files": [{"id": id, "title": "t"}], "channel_id": "C1"}),
        )
    };
    // Not uploaded yet, or never handed out.
    assert_eq!(complete(&id).await["error"], "file_not_found");
    assert_eq!(complete("F999999").await["error"], "file_not_found");
    assert_eq!(
        call("files.completeUploadExternal", json!({"channel_id": "C1"})).await["error"],
        "invalid_arguments"
    );
    let send = |to: String, bytes: &'static [u8]| {
        let req = http.post(to).body(bytes);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        send(upload.clone(), b"four").await,
        400,
        "length 5 declared"
    );
    let unknown = upload.replace(&id, "F000000");
    assert_eq!(send(unknown, b"hello").await, 404);
    assert_eq!(send(upload, b"hello").await, 200);
    let done = complete(&id).await;
    assert_eq!(done["ok"], true, "{done}");
    let files = fake.shared_files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].content, b"hello");
    assert_eq!(files[0].title.as_deref(), Some("t"));
    assert_eq!(files[0].file_id, id);
    // A file is shared once.
    assert_eq!(complete(&id).await["error"], "file_not_found");
}

#[tokio::test]
async fn a_card_whose_answer_was_lost_is_posted_once() {
    let fake = FakeSlack::start().await;
    // Slack posts the card, then the answer is lost.
    fake.lose_answer_when("chat.postMessage", "tocsin_card_");
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &slack_config(&fake),
    )
    .await;
    app.start_background();
    let s = Slack { app, fake };
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    for _ in 0..200 {
        let inc = s.app.incident("INC-1").await;
        if inc["incident"]["chat"]["slack"]["card_id"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let history = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "conversations.history" && c.params["channel"] == channel.as_str())
        .count();
    assert!(history >= 2, "the retry looked for the card first");
    let posts: Vec<_> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| {
            c.method == "chat.postMessage"
                && c.params["channel"] == channel.as_str()
                && blocks_text(&c.params).contains("tocsin_ack")
        })
        .collect();
    assert_eq!(posts.len(), 1, "one card posted: {posts:#?}");
    assert_eq!(posts[0].status, 500, "its answer was lost");
    assert_eq!(posts[0].params["metadata"]["event_type"], "tocsin_card");
    let inc = s.app.incident("INC-1").await;
    assert!(
        inc["incident"]["chat"]["slack"]["card_id"].is_string(),
        "the card found again is recorded: {inc}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_short_summary_is_blocks_and_a_long_ones_lost_share_is_not_shared_twice() {
    let s = slack().await;
    // Short: mrkdwn blocks, with the job's key in the metadata.
    trigger(&s.app, "pay").await;
    let ch = s.channel_of(1).await;
    card_post(&s, &ch).await;
    s.ask("U0ALICE", &ch, "/incident", "resolve", "d").await;
    let note = wait_summary_delivered(&s.app, "INC-1", "slack").await;
    let posts: Vec<_> = s
        .fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| {
            c.params["channel"] == ch.as_str()
                && c.params["text"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("# INC-1")
        })
        .collect();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert!(blocks_text(&posts[0].params).contains("Who was paged"));
    assert_eq!(posts[0].params["metadata"]["event_type"], "tocsin_post");
    assert_eq!(
        posts[0].params["metadata"]["event_payload"]["idempotency_key"],
        note["idempotency_key"]
    );
    assert!(s.fake.shared_files().is_empty());

    // Long: the share is done but its answer is lost; the retry finds the
    // file in the channel's history.
    s.fake
        .lose_answer_when("files.completeUploadExternal", "summary-INC-2");
    let hook = format!("/hooks/{AM_KEY}");
    let (st, b) = s
        .app
        .post_json(&hook, &alertmanager_group(150, "firing"))
        .await;
    assert_eq!(st, 202, "{b}");
    let ch2 = s.channel_of(2).await;
    card_post(&s, &ch2).await;
    let (st, b) = s
        .app
        .post_json(&hook, &alertmanager_group(150, "resolved"))
        .await;
    assert_eq!(st, 202, "{b}");
    wait_summary_delivered(&s.app, "INC-2", "slack").await;
    let shared: Vec<_> = s
        .fake
        .shared_files()
        .into_iter()
        .filter(|f| f.channel == ch2)
        .collect();
    assert_eq!(shared.len(), 1, "{shared:#?}");
    assert_eq!(shared[0].filename, "summary-INC-2.md");
    let completes: Vec<u16> = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "files.completeUploadExternal")
        .map(|c| c.status)
        .collect();
    assert_eq!(completes, [500], "shared once; the retry found it");
    s.app.stop().await;
}

#[tokio::test]
async fn without_the_new_scopes_the_card_and_a_cut_summary_are_still_posted() {
    let fake = FakeSlack::start().await;
    // An app installed before files:write and channels:history.
    fake.fail_when(
        "conversations.history",
        "\"channel\":\"C",
        Fail::Error("missing_scope"),
    );
    fake.fail(
        "files.getUploadURLExternal",
        &[Fail::Error("missing_scope")],
    );
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &slack_config(&fake),
    )
    .await;
    app.start_background();
    let s = Slack { app, fake };
    let hook = format!("/hooks/{AM_KEY}");
    let (st, b) = s
        .app
        .post_json(&hook, &alertmanager_group(150, "firing"))
        .await;
    assert_eq!(st, 202, "{b}");
    let ch = s.channel_of(1).await;
    card_post(&s, &ch).await;
    let (st, b) = s
        .app
        .post_json(&hook, &alertmanager_group(150, "resolved"))
        .await;
    assert_eq!(st, 202, "{b}");
    wait_summary_delivered(&s.app, "INC-1", "slack").await;
    assert!(s.fake.shared_files().is_empty());
    let posts: Vec<_> = s
        .fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| {
            c.params["channel"] == ch.as_str()
                && c.params["text"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("# INC-1")
        })
        .collect();
    assert_eq!(posts.len(), 1);
    let last = posts[0].params["blocks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["text"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("`GET /v1/incidents/INC-1/summary`"),
        "cut, pointing at the whole: {last}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn whoever_is_paged_later_opens_it_or_gets_a_role_is_invited() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let ch = s.channel_of(1).await;
    s.fake
        .wait_until("alice invited", |f| f.members(&ch).contains("U0ALICE"))
        .await;
    assert!(!s.fake.members(&ch).contains("U0BOB"));
    // The second escalation step pages bob: he is invited as he is paged.
    s.ask("U0ALICE", &ch, "/incident", "escalate", "e1").await;
    s.fake
        .wait_until("bob invited by his page", |f| {
            f.members(&ch).contains("U0BOB")
        })
        .await;
    // A role for someone already in the channel is no error.
    s.ask("U0ALICE", &ch, "/incident", "role scribe <@U0ALICE>", "e2")
        .await;
    let key = "INC-1/chat/slack/invite/role/alice";
    let mut state = Value::Null;
    for _ in 0..200 {
        let notes = s.app.get("/v1/incidents/INC-1/notifications").await.1;
        state = notes["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["key"] == key)
            .map(|n| n["state"]["state"].clone())
            .unwrap_or_default();
        if state == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(state, "delivered", "the invite of a member went through");

    // Bob opens INC-2 by command (nobody is paged for the chat service):
    // the opener is in.
    s.ask("U0BOB", "C1", "/incident", "new Login failures", "n1")
        .await;
    let ch2 = s.channel_of(2).await;
    s.fake
        .wait_until("the opener", |f| {
            f.members(&ch2) == ["U0BOB".to_string()].into()
        })
        .await;

    // Alice opens INC-3; bob joins when he is made commander.
    s.ask("U0ALICE", "C1", "/incident", "new Checkout slow", "n2")
        .await;
    let ch3 = s.channel_of(3).await;
    s.fake
        .wait_until("alice in INC-3", |f| f.members(&ch3).contains("U0ALICE"))
        .await;
    assert!(!s.fake.members(&ch3).contains("U0BOB"));
    s.ask(
        "U0ALICE",
        &ch3,
        "/incident",
        "role commander <@U0BOB>",
        "n3",
    )
    .await;
    s.fake
        .wait_until("the commander invited", |f| {
            f.members(&ch3).contains("U0BOB")
        })
        .await;
    let notices = s
        .fake
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.params["text"].to_string().contains("Could not invite"))
        .count();
    assert_eq!(notices, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn channel_notices_keep_their_order_when_the_first_is_retried() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let ch = s.channel_of(1).await;
    s.fake.wait_for_dm("U0ALICE").await;
    let posts = |f: &FakeSlack, ok_only: bool| -> Vec<String> {
        f.calls()
            .into_iter()
            .filter(|c| c.method == "chat.postMessage" && c.params["channel"] == ch.as_str())
            .filter(|c| !ok_only || c.status == 200)
            .map(|c| c.params["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    s.fake
        .wait_until("the card and the intro", |f| posts(f, true).len() >= 2)
        .await;
    // The next post, the ack notice, fails once; the resolve right after
    // it must not overtake it.
    s.fake.fail("chat.postMessage", &[Fail::ServerError]);
    s.ask("U0ALICE", &ch, "/incident", "ack", "o1").await;
    s.ask("U0ALICE", &ch, "/incident", "resolve", "o2").await;
    let at = |texts: &[String], what: &str| texts.iter().position(|t| t.contains(what));
    s.fake
        .wait_until("the resolve notice and the summary after it", |f| {
            let texts = posts(f, true);
            at(&texts, "resolved by").is_some_and(|r| r + 1 < texts.len())
        })
        .await;
    let all = posts(&s.fake, false);
    let failed = s
        .fake
        .calls()
        .into_iter()
        .find(|c| c.method == "chat.postMessage" && c.status == 500)
        .expect("a failed post");
    assert!(
        failed.params["text"]
            .as_str()
            .unwrap()
            .contains("acknowledged by"),
        "the ack notice was the one that failed: {all:#?}"
    );
    let texts = posts(&s.fake, true);
    let (ack, resolved) = (
        at(&texts, "acknowledged by").expect("the ack notice"),
        at(&texts, "resolved by").unwrap(),
    );
    assert!(ack < resolved, "{texts:#?}");
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("acknowledged by"))
            .count(),
        1,
        "{texts:#?}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn the_same_signed_command_three_times_opens_one_incident() {
    let s = slack().await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("team_id", "T0TEAM")
        .append_pair("channel_id", "C0GENERAL")
        .append_pair("user_id", "U0ALICE")
        .append_pair("command", "/incident")
        .append_pair("text", "new Checkout is down sev1")
        .append_pair("response_url", &s.fake.response_url("new"))
        .append_pair("trigger_id", "1.2.3")
        .finish();
    let ts = now_ts();
    let sig = sign(&ts, &body);
    let ct = "application/x-www-form-urlencoded";
    let (first, _) = s.post_signed("/slack/commands", &body, &ts, &sig, ct).await;
    assert_eq!(first, 200);
    for _ in 0..2 {
        let (st, b) = s.post_signed("/slack/commands", &body, &ts, &sig, ct).await;
        assert_eq!(st, 401, "{b}");
        assert!(b.contains("already received"), "{b}");
    }
    let reply = s.reply("new").await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Opened INC-1"),
        "{reply}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.fake.responses("new").len(), 1);
    let incidents = s.app.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["title"], "Checkout is down");
    // A fresh signature of the same command is a new request, and acts.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ts2 = now_ts();
    let (st, _) = s
        .post_signed("/slack/commands", &body, &ts2, &sign(&ts2, &body), ct)
        .await;
    assert_eq!(st, 200);
    s.app.stop().await;
}

#[tokio::test]
async fn a_slack_retry_of_a_handled_event_gets_200_and_acts_once() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    let body = json!({
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": "Ev0RETRY", "event_time": 1_700_000_000,
        "event": {"type": "app_mention", "user": "U0ALICE", "text": "<@U0TOCSIN> note first look", "ts": "1700000000.000200",
                  "channel": channel, "event_ts": "1700000000.000200"}
    })
    .to_string();
    let ts = now_ts();
    let sig = sign(&ts, &body);
    let (st, b) = s
        .post_signed("/slack/events", &body, &ts, &sig, "application/json")
        .await;
    assert_eq!(st, 200, "{b}");
    // The same signed request again: a replay.
    let (st, b) = s
        .post_signed("/slack/events", &body, &ts, &sig, "application/json")
        .await;
    assert_eq!(st, 401, "{b}");
    // Slack's own retry: re-signed, with X-Slack-Retry-Num, same event id.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ts2 = now_ts();
    let resp = s
        .app
        .http
        .post(s.app.url("/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts2)
        .header("x-slack-signature", sign(&ts2, &body))
        .header("x-slack-retry-num", "1")
        .header("x-slack-retry-reason", "http_timeout")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let timeline = s.app.incident("INC-1").await["timeline"].clone();
    let notes = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "note")
        .count();
    assert_eq!(notes, 1, "{timeline}");
    s.app.stop().await;
}

/// A Slack tocsin with `chat` keys added to `[chat]`, and dave: a tocsin
/// user with a Slack id who is nobody's responder.
async fn slack_with_chat(chat: &str) -> Slack {
    let fake = FakeSlack::start().await;
    let config = format!(
        r#"
[slack]
bot_token = "xoxb-test-token"
signing_secret = "{SECRET}"
team_id = "T0TEAM"
api_url = "{api}"
{people}
[[users]]
name = "dave"
slack_id = "U0DAVE"
contact_methods = [{{ kind = "log" }}]
"#,
        api = fake.api_url(),
        people = chat_people_with("slack", "U0ALICE", "U0BOB", "1h", chat),
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("payments"), &config).await;
    app.start_background();
    Slack { app, fake }
}

static MENTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000);

impl Slack {
    /// A signed slash command from workspace `team`; the HTTP status and body.
    async fn command_from(
        &self,
        team: &str,
        user: &str,
        channel: &str,
        text: &str,
    ) -> (u16, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("team_id", team)
            .append_pair("channel_id", channel)
            .append_pair("user_id", user)
            .append_pair("command", "/incident")
            .append_pair("text", text)
            .append_pair("response_url", &self.fake.response_url("other"))
            .append_pair("trigger_id", "1.2.3")
            .finish();
        let ts = now_ts();
        let sig = sign(&ts, &body);
        self.post_signed(
            "/slack/commands",
            &body,
            &ts,
            &sig,
            "application/x-www-form-urlencoded",
        )
        .await
    }

    /// A signed app mention `@tocsin <text>` by `user` in `channel`, from `team`.
    async fn mention(&self, team: &str, user: &str, channel: &str, text: &str) -> (u16, String) {
        let event = json!({
            "token": "x", "team_id": team, "api_app_id": "A0APP", "type": "event_callback",
            "event_id": format!("Ev{}", MENTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
            "event_time": 1_700_000_000,
            "event": {"type": "app_mention", "user": user, "text": format!("<@U0TOCSIN> {text}"),
                      "ts": "1700000000.000100", "channel": channel, "event_ts": "1700000000.000100"},
        })
        .to_string();
        let ts = now_ts();
        let sig = sign(&ts, &event);
        self.post_signed("/slack/events", &event, &ts, &sig, "application/json")
            .await
    }
}

#[tokio::test]
async fn requests_from_another_workspace_are_refused_and_change_nothing() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    // A slash command: refused in the answer itself, nothing posted.
    let (st, body) = s.command_from("T0OTHER", "U0ALICE", &channel, "ack").await;
    assert_eq!(st, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response_type"], "ephemeral");
    assert_eq!(
        answer["text"],
        "This tocsin serves another Slack workspace; nothing was done."
    );
    // A button: the refusal goes to the asker alone.
    assert_eq!(
        s.press_in("U0ALICE", &channel, "T0OTHER", "tocsin_ack", "INC-1", "x1")
            .await,
        200
    );
    let reply = s.reply("x1").await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("another Slack workspace")
    );
    // An event: 403.
    let (st, body) = s.mention("T0OTHER", "U0ALICE", &channel, "ack").await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        s.app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    // The same from tocsin's workspace works, and the actor names it.
    let (st, _) = s.mention("T0TEAM", "U0ALICE", &channel, "ack").await;
    assert_eq!(st, 200);
    for _ in 0..200 {
        if s.app.incident("INC-1").await["incident"]["status"] == "acknowledged" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let inc = s.app.incident("INC-1").await;
    assert_eq!(
        inc["incident"]["acknowledged_by"]["name"]["principal"],
        "slack:T0TEAM/U0ALICE"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_button_acts_only_on_the_incident_it_was_posted_for() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    trigger(&s.app, "pay-2").await;
    let first = s.channel_of(1).await;
    let second = s.channel_of(2).await;
    assert_ne!(first, second);
    // INC-2's button pressed in INC-1's channel.
    assert_eq!(
        s.press_in("U0ALICE", &first, "T0TEAM", "tocsin_ack", "INC-2", "w1")
            .await,
        200
    );
    let reply = s.reply("w1").await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("This button is for INC-2, and it works only in INC-2's channel"),
        "{reply}"
    );
    assert_eq!(
        s.app.incident("INC-2").await["incident"]["status"],
        "triggered"
    );
    // From a page's DM it works for whoever was paged for it...
    s.fake.wait_for_dm("U0ALICE").await;
    assert_eq!(
        s.press_in("U0ALICE", "DU0ALICE", "T0TEAM", "tocsin_ack", "INC-2", "w2")
            .await,
        200
    );
    assert_eq!(
        s.reply("w2").await["text"],
        "INC-2 acknowledged by alice. Paging stopped."
    );
    // ...and not for someone tocsin did not page for it.
    assert_eq!(
        s.press_in("U0BOB", "DU0BOB", "T0TEAM", "tocsin_resolve", "INC-1", "w3")
            .await,
        200
    );
    assert!(
        s.reply("w3").await["text"]
            .as_str()
            .unwrap()
            .starts_with("This button is for INC-1")
    );
    assert_eq!(
        s.app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn only_responders_act_on_an_incident_and_a_refusal_says_who_can() {
    let s = slack_with_chat("").await;
    trigger(&s.app, "pay").await;
    let channel = s.channel_of(1).await;
    // dave is a tocsin user, but not in payments' policy or schedules.
    let reply = s.ask("U0DAVE", &channel, "/incident", "ack", "d1").await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(
        reply["text"],
        "You may not acknowledge INC-1: only its responders and admins may. Responders: alice, bob \
(the payments escalation policy and its schedules, [[services]] responders, and whoever was paged \
for it, holds a role in it or opened it). Admins: alice."
    );
    assert_eq!(
        s.app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    // He may read it (it is not private) and open incidents of his own.
    let reply = s.ask("U0DAVE", &channel, "/incident", "status", "d2").await;
    assert!(
        reply["text"].as_str().unwrap().contains("Payment errors"),
        "{reply}"
    );
    // bob, at step 2 of the policy, is a responder before he is paged.
    let reply = s.ask("U0BOB", &channel, "/incident", "ack", "d3").await;
    assert_eq!(reply["text"], "INC-1 acknowledged by bob. Paging stopped.");
    // Roles are for admins: bob may not, alice may.
    let reply = s
        .ask(
            "U0BOB",
            &channel,
            "/incident",
            "role commander <@U0BOB>",
            "d4",
        )
        .await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("You may not give roles on INC-1"),
        "{reply}"
    );
    let reply = s
        .ask(
            "U0ALICE",
            &channel,
            "/incident",
            "role commander <@U0DAVE>",
            "d5",
        )
        .await;
    assert_eq!(reply["text"], "<@U0DAVE> is now commander of INC-1.");
    // Holding a role makes dave one of the incident's people.
    let reply = s
        .ask(
            "U0DAVE",
            &channel,
            "/incident",
            "note checking the db",
            "d6",
        )
        .await;
    assert_eq!(reply["text"], "Note added to INC-1.");
    s.app.stop().await;
}

#[tokio::test]
async fn what_is_said_about_an_incident_outside_its_channel_is_ephemeral() {
    let s = slack().await;
    trigger(&s.app, "pay").await;
    s.channel_of(1).await;
    // `@tocsin INC-1 status` in #general: shown to alice alone.
    let (st, _) = s
        .mention("T0TEAM", "U0ALICE", "C0GENERAL", "INC-1 status")
        .await;
    assert_eq!(st, 200);
    s.fake
        .wait_until("the ephemeral answer", |f| !f.ephemeral().is_empty())
        .await;
    let (channel, user, text) = s.fake.ephemeral()[0].clone();
    assert_eq!((channel.as_str(), user.as_str()), ("C0GENERAL", "U0ALICE"));
    assert!(text.contains("Payment errors above 5%"), "{text}");
    assert!(
        s.fake
            .ok_calls("chat.postMessage")
            .iter()
            .all(|c| c.params["channel"] != "C0GENERAL"),
        "nothing is posted in #general"
    );
    // A slash command acting on it from elsewhere: the asker sees the answer.
    let reply = s
        .ask("U0ALICE", "C0GENERAL", "/incident", "INC-1 ack", "g1")
        .await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(
        reply["text"],
        "INC-1 acknowledged by alice. Paging stopped."
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_sev1_gets_a_private_channel_with_its_responders_invited() {
    let s = slack_with_chat("private_severities = [\"SEV1\"]").await;
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "leak",
        "payload": {"summary": "Signing key exposed", "source": "test", "severity": "critical"}});
    assert_eq!(s.app.post_json("/v2/enqueue", &body).await.0, 202);
    let channel = s.channel_of(1).await;
    card_post(&s, &channel).await;
    let create = s.fake.ok_calls("conversations.create");
    assert_eq!(
        create[0].params["is_private"], true,
        "{:?}",
        create[0].params
    );
    assert!(s.fake.is_private(&channel));
    assert!(s.fake.members(&channel).contains("U0ALICE"));
    assert!(!s.fake.members(&channel).contains("U0DAVE"));
    // Its status is for its responders: dave may not read it from elsewhere.
    let reply = s
        .ask("U0DAVE", "C0GENERAL", "/incident", "INC-1 status", "p1")
        .await;
    let text = reply["text"].as_str().unwrap();
    assert!(text.starts_with("You may not see private INC-1"), "{text}");
    assert!(!text.contains("Signing key"), "{text}");
    let reply = s
        .ask("U0ALICE", "C0GENERAL", "/incident", "INC-1 status", "p2")
        .await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("Signing key exposed")
    );
    // A SEV2 on the same tocsin stays public.
    trigger(&s.app, "pay").await;
    let public = s.channel_of(2).await;
    assert!(!s.fake.is_private(&public));
    s.app.stop().await;
}

#[tokio::test]
async fn the_fake_refuses_a_private_channel_without_groups_write() {
    let fake = FakeSlack::start().await;
    assert!(
        fake::manifest_has("groups:write") && fake::manifest_has("groups:history"),
        "the manifest asks for the private-channel scopes"
    );
    fake.set_scopes(&["channels:manage", "chat:write"]);
    let platform = tocsin::chat::slack::SlackPlatform::new(
        &tocsin::config::Config::from_toml_str(
            &format!(
                "[slack]\nbot_token = \"xoxb-t\"\nsigning_secret = \"s\"\nteam_id = \"T0TEAM\"\napi_url = \"{}\"\n",
                fake.api_url()
            ),
            &Default::default(),
        )
        .unwrap()
        .slack
        .unwrap(),
    )
    .unwrap();
    use tocsin::chat::ChatPlatform;
    let err = platform
        .create_channel("inc-9-leak", true)
        .await
        .unwrap_err();
    assert_eq!(err.message, "slack conversations.create: missing_scope");
    assert!(!err.retryable);
    assert!(platform.create_channel("inc-9-leak", false).await.is_ok());
}

mod fake {
    /// Whether the repository's manifest asks for `scope`.
    pub fn manifest_has(scope: &str) -> bool {
        crate::common::fake_slack::manifest_scopes().contains(scope)
    }
}
