//! Discord end to end, through serenity against a fake Discord: incident
//! channels with permission overwrites, cards, paging DMs with nonces,
//! signed interactions (commands and buttons), deferred answers, rate
//! limits, archiving, command registration and gateway mode.

use crate::common::fake_discord::{APPLICATION, BOT_USER, Fail, FakeDiscord, GENERAL, GUILD};
use crate::common::*;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tocsin::clock::{Clock, SystemClock};
use tocsin::store::Store;

const ALICE: &str = "1300000000000000011";
const BOB: &str = "1300000000000000012";
const STRANGER: &str = "1300000000000000099";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

struct Opts {
    archive_after: &'static str,
    defer_after: &'static str,
    mode: &'static str,
}

const DEFAULT: Opts = Opts {
    archive_after: "1h",
    defer_after: "2s",
    mode: "interactions",
};

fn discord_config(fake: &FakeDiscord, o: &Opts) -> String {
    format!(
        r#"
[discord]
application_id = "{APPLICATION}"
public_key = "{public}"
bot_token = "test-bot-token"
guild_id = {GUILD}
api_url = "{api}"
mode = "{mode}"
defer_after = "{defer}"
{people}"#,
        public = hex::encode(key().verifying_key().to_bytes()),
        api = fake.api_url(),
        defer = o.defer_after,
        mode = o.mode,
        people = chat_people("discord", ALICE, BOB, o.archive_after),
    )
}

struct Discord {
    app: TestApp,
    fake: FakeDiscord,
}

async fn discord_with(o: &Opts) -> Discord {
    let fake = FakeDiscord::start().await;
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &discord_config(&fake, o),
    )
    .await;
    app.start_background();
    Discord { app, fake }
}

async fn discord() -> Discord {
    discord_with(&DEFAULT).await
}

static SEQ: AtomicU64 = AtomicU64::new(1);

fn next_id() -> String {
    (1_400_000_000_000_000_000u64 + SEQ.fetch_add(1, Ordering::SeqCst)).to_string()
}

fn user_obj(id: &str) -> Value {
    json!({"id": id, "username": format!("user{id}"), "discriminator": "0", "global_name": null,
           "avatar": null, "public_flags": 0})
}

fn member(id: &str) -> Value {
    json!({"user": user_obj(id), "nick": null, "avatar": null, "roles": [],
           "joined_at": "2026-01-01T00:00:00.000000+00:00", "premium_since": null,
           "deaf": false, "mute": false, "flags": 0, "pending": false, "permissions": "2147483647"})
}

/// The documented interaction object of a guild slash command.
fn command(user: &str, channel: &str, name: &str, options: Value) -> Value {
    json!({
        "type": 2, "id": next_id(), "application_id": APPLICATION,
        "token": format!("token-{}", next_id()), "version": 1,
        "guild_id": GUILD, "channel_id": channel,
        "channel": {"id": channel, "type": 0, "guild_id": GUILD, "name": "x", "permissions": "2147483647"},
        "member": member(user), "app_permissions": "2147483647",
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD}, "context": 0,
        "attachment_size_limit": 8388608,
        "data": {"id": "1300000000000000100", "name": name, "type": 1, "options": options},
    })
}

fn sub(name: &str, options: Value) -> Value {
    json!([{"name": name, "type": 1, "options": options}])
}

fn opt(name: &str, value: &str) -> Value {
    json!({"name": name, "type": 3, "value": value})
}

fn user_opt(name: &str, id: &str) -> Value {
    json!({"name": name, "type": 6, "value": id})
}

/// A button press: in a DM (`user`), or in a guild channel (`member`).
fn press(user: &str, channel: &str, custom_id: &str, in_dm: bool) -> Value {
    let mut v = json!({
        "type": 3, "id": next_id(), "application_id": APPLICATION,
        "token": format!("token-{}", next_id()), "version": 1,
        "channel_id": channel, "channel": {"id": channel, "type": if in_dm { 1 } else { 0 }},
        "app_permissions": "2147483647", "locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"1": user}, "context": if in_dm { 1 } else { 0 },
        "attachment_size_limit": 8388608,
        "message": {"id": "1300000000000000200", "channel_id": channel, "author": user_obj("1100000000000000003"),
                    "content": "", "timestamp": "2026-01-05T10:00:00.000000+00:00", "edited_timestamp": null,
                    "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
                    "attachments": [], "embeds": [], "components": [], "pinned": false, "type": 0, "flags": 0},
        "data": {"custom_id": custom_id, "component_type": 2},
    });
    if in_dm {
        v["user"] = user_obj(user);
    } else {
        v["guild_id"] = json!(GUILD);
        v["member"] = member(user);
    }
    v
}

fn now_ts() -> String {
    SystemClock.now().timestamp().to_string()
}

fn sign(ts: &str, body: &str) -> String {
    hex::encode(key().sign(format!("{ts}{body}").as_bytes()).to_bytes())
}

impl Discord {
    async fn post_signed(&self, body: &str, ts: &str, signature: &str) -> (u16, Value) {
        let resp = self
            .app
            .http
            .post(self.app.url("/discord/interactions"))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", signature)
            .header("x-signature-timestamp", ts)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A correctly signed interaction; the HTTP status and answer.
    async fn interact(&self, interaction: &Value) -> (u16, Value) {
        let body = interaction.to_string();
        let ts = now_ts();
        self.post_signed(&body, &ts, &sign(&ts, &body)).await
    }

    /// A signed command that must get an immediate message; its content.
    async fn say(&self, user: &str, channel: &str, name: &str, options: Value) -> (String, bool) {
        let (status, answer) = self.interact(&command(user, channel, name, options)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["type"], 4, "{answer}");
        let ephemeral = answer["data"]["flags"].as_u64().unwrap_or(0) & 64 == 64;
        (
            answer["data"]["content"].as_str().unwrap().to_string(),
            ephemeral,
        )
    }

    /// Waits for the incident channel of INC-n.
    async fn channel_of(&self, n: u64) -> String {
        let key = format!("INC-{n}");
        for _ in 0..400 {
            let inc = self.app.incident(&key).await;
            if let Some(c) = inc["incident"]["chat"]["discord"]["channel_id"].as_str()
                && inc["incident"]["chat"]["discord"]["card_id"].is_string()
            {
                return c.to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no channel for {key}: {:#?}", self.fake.calls());
    }

    async fn dm_page(&self, user: &str) -> Value {
        self.fake
            .wait_until("the DM page", |f| {
                f.dm_of(user).is_some_and(|dm| !f.messages(&dm).is_empty())
            })
            .await;
        let dm = self.fake.dm_of(user).unwrap();
        self.fake
            .ok_calls("create_message")
            .into_iter()
            .find(|c| c.path == format!("/channels/{dm}/messages"))
            .unwrap()
            .body
    }
}

async fn trigger(app: &TestApp, key: &str) {
    let (s, b) = app.pd("trigger", key, "Payment errors above 5%").await;
    assert_eq!(s, 202, "{b}");
}

fn status(app_incident: &Value) -> String {
    app_incident["incident"]["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_alert_opens_a_channel_lets_responders_in_and_pages_by_dm_with_a_nonce() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let channel = d.channel_of(1).await;

    // The "incidents" category is made once, the channel under it.
    let created = d.fake.ok_calls("create_channel");
    assert_eq!(created.len(), 2, "{created:#?}");
    assert_eq!(created[0].body["name"], "incidents");
    assert_eq!(created[0].body["type"], 4);
    let category = d.fake.channel_named("incidents").unwrap()["id"].clone();
    assert_eq!(created[1].body["name"], "inc-1-payment-errors-above-5");
    assert_eq!(created[1].body["type"], 0);
    assert_eq!(created[1].body["parent_id"], category);
    assert_eq!(created[1].path, format!("/guilds/{GUILD}/channels"));
    assert_eq!(
        created[1].authorization.as_deref(),
        Some("Bot test-bot-token")
    );

    // Alice (paged) is let in: VIEW_CHANNEL | SEND_MESSAGES for her user.
    let ch = d.fake.channel(&channel).unwrap();
    let overwrites = ch["permission_overwrites"].as_array().unwrap();
    assert_eq!(
        overwrites,
        &vec![json!({"id": ALICE, "type": 1, "allow": "3072", "deny": "0"})]
    );
    assert_eq!(
        ch["topic"],
        "[SEV2] INC-1: Payment errors above 5% (payments)"
    );

    // The card: an embed with buttons whose custom ids name the incident.
    let card = &d.fake.messages(&channel)[0];
    let embed = &card["embeds"][0];
    assert_eq!(embed["title"], "🟠 INC-1: Payment errors above 5%");
    assert!(embed["fields"].to_string().contains(&format!("<@{ALICE}>")));
    let ids: Vec<&str> = card["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "tocsin_ack:INC-1",
            "tocsin_resolve:INC-1",
            "tocsin_escalate:INC-1",
            "tocsin_runbook:INC-1"
        ]
    );

    // The page: a DM to alice with Acknowledge and Resolve, and the
    // idempotency key's nonce, enforced.
    let page = d.dm_page(ALICE).await;
    assert_eq!(
        d.fake.ok_calls("create_dm")[0].body,
        json!({"recipient_id": ALICE})
    );
    assert_eq!(
        page["nonce"],
        tocsin::chat::discord::nonce(&d.app.page_key("INC-1", "alice").await)
    );
    assert!(
        d.app
            .page_key("INC-1", "alice")
            .await
            .starts_with("INC-1/g0/r0/s0/user:alice/m0/")
    );
    assert_eq!(page["nonce"].as_str().unwrap().len(), 25);
    assert_eq!(page["enforce_nonce"], true);
    assert_eq!(
        page["content"],
        "You are paged: [SEV2] INC-1: Payment errors above 5% (payments)"
    );
    let buttons = page["components"][0]["components"].to_string();
    assert!(
        buttons.contains("tocsin_ack:INC-1") && buttons.contains("tocsin_resolve:INC-1"),
        "{buttons}"
    );
    assert_eq!(page["allowed_mentions"]["parse"], json!([]));
    assert_eq!(page["allowed_mentions"]["users"], json!([]));
    d.app.stop().await;
}

#[tokio::test]
async fn a_button_in_the_dm_acknowledges_stops_escalation_and_the_embed_is_edited() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let channel = d.channel_of(1).await;
    d.dm_page(ALICE).await;
    assert_eq!(d.app.store.timer_count().unwrap(), 1);
    let dm = d.fake.dm_of(ALICE).unwrap();
    let (st, answer) = d
        .interact(&press(ALICE, &dm, "tocsin_ack:INC-1", true))
        .await;
    assert_eq!(st, 200, "{answer}");
    assert_eq!(answer["type"], 4);
    assert_eq!(
        answer["data"]["content"],
        "INC-1 acknowledged by alice. Paging stopped."
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "acknowledged");
    assert_eq!(d.app.store.timer_count().unwrap(), 0);
    d.fake
        .wait_until("the card edit", |f| !f.ok_calls("edit_message").is_empty())
        .await;
    let edit = &d.fake.ok_calls("edit_message")[0];
    let card_id = d.app.incident("INC-1").await["incident"]["chat"]["discord"]["card_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(edit.path, format!("/channels/{channel}/messages/{card_id}"));
    let body = edit.body.to_string();
    assert!(
        body.contains("Acknowledged") && !body.contains("tocsin_ack"),
        "{body}"
    );
    // Bob was never paged: escalation stopped.
    assert!(d.fake.dm_of(BOB).is_none());
    d.app.stop().await;
}

#[tokio::test]
async fn ping_gets_pong() {
    let d = discord().await;
    let (st, answer) = d
        .interact(&json!({"type": 1, "id": next_id(), "application_id": APPLICATION, "token": "t", "version": 1}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(answer, json!({"type": 1}));
    d.app.stop().await;
}

#[tokio::test]
async fn every_incident_subcommand() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let say = |name: &'static str, options: Value| {
        let d = &d;
        let ch = ch.clone();
        async move { d.say(ALICE, &ch, "incident", sub(name, options)).await }
    };

    let (text, private) = say("status", json!([])).await;
    assert!(
        text.starts_with("**INC-1** Payment errors above 5%"),
        "{text}"
    );
    assert!(private);
    let (text, private) = say("summary", json!([])).await;
    assert!(text.starts_with("**INC-1**"), "{text}");
    assert!(private);
    assert_eq!(
        say("severity", json!([opt("level", "sev1")])).await,
        ("alice set INC-1 to SEV1.".to_string(), false)
    );
    assert_eq!(
        say(
            "role",
            json!([opt("role", "commander"), user_opt("user", BOB)])
        )
        .await,
        (format!("<@{BOB}> is now commander of INC-1."), false)
    );
    assert_eq!(
        say("note", json!([opt("text", "action: alert on queue depth")])).await,
        ("Action item added to INC-1.".to_string(), true)
    );
    assert_eq!(
        say("note", json!([opt("text", "rolled back v2")])).await,
        ("Note added to INC-1.".to_string(), true)
    );
    let (text, _) = say("runbook", json!([])).await;
    assert!(text.contains("runbook"), "{text}");
    let (text, _) = say("help", json!([])).await;
    assert!(text.contains("Usage: /incident"), "{text}");
    assert_eq!(
        say("snooze", json!([opt("duration", "30m")])).await,
        (
            "alice snoozed INC-1 for 30m. It triggers again after that.".to_string(),
            false
        )
    );
    let (text, _) = say("snooze", json!([opt("duration", "forever")])).await;
    assert!(text.contains("'snooze' needs one duration"), "{text}");
    let (text, private) = say("escalate", json!([])).await;
    assert!(text.starts_with("alice escalated INC-1: step"), "{text}");
    assert!(!private);
    assert_eq!(
        say("ack", json!([])).await,
        (
            "INC-1 acknowledged by alice. Paging stopped.".to_string(),
            false
        )
    );
    assert_eq!(d.app.store.timer_count().unwrap(), 0);

    // Outside the incident channel the incident must be named.
    let (text, private) = d
        .say(ALICE, GENERAL, "incident", sub("resolve", json!([])))
        .await;
    assert!(text.contains("not an incident channel"), "{text}");
    assert!(private);
    assert_eq!(
        d.say(
            ALICE,
            GENERAL,
            "incident",
            sub(
                "resolve",
                json!([opt("note", "fixed it"), opt("incident", "INC-1")])
            )
        )
        .await,
        // Named outside its channel: the answer is for the asker alone.
        ("INC-1 resolved by alice: fixed it".to_string(), true)
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "resolved");
    let (text, _) = d
        .say(
            ALICE,
            GENERAL,
            "incident",
            sub(
                "new",
                json!([
                    opt("title", "Login failures critical"),
                    opt("severity", "sev1")
                ]),
            ),
        )
        .await;
    assert!(
        text.starts_with("Opened INC-2: Login failures critical (SEV1)"),
        "{text}"
    );

    let inc = d.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["roles"]["commander"], "bob");
    assert_eq!(inc["incident"]["severity"], "sev1");
    let types: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "role_assigned",
        "action_item",
        "note",
        "severity_changed",
        "snoozed",
        "resolved",
        "channel_opened",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    d.app.stop().await;
}

/// `/incident login`: an ephemeral answer with a one-time console link
/// that signs in as the asker.
#[tokio::test]
async fn incident_login_answers_with_a_one_time_console_link() {
    let fake = FakeDiscord::start().await;
    let config = format!(
        r#"{}
[console]
enabled = true
session_key = "discord-console-key-0123456789abcdef0123"
url = "https://console.example.test"
"#,
        discord_config(&fake, &DEFAULT)
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("payments"), &config).await;
    app.start_background();
    let d = Discord { app, fake };
    let (text, private) = d
        .say(BOB, GENERAL, "incident", sub("login", json!([])))
        .await;
    assert!(private, "only bob sees his link");
    assert!(
        text.starts_with("Your sign-in link to the tocsin console, as bob. It works once, within 10m; do not share it:\n<https://console.example.test/login/link?code=tsn_"),
        "{text}"
    );
    let code = text
        .split("code=")
        .nth(1)
        .unwrap()
        .trim_end_matches('>')
        .to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http
        .post(d.app.url("/login/link"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(d.app.url("/incidents"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("bob"), "{page}");
    let again = http
        .post(d.app.url("/login/link"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    d.app.stop().await;
}

#[tokio::test]
async fn oncall_cover_and_page_commands() {
    let d = discord().await;
    let (text, private) = d
        .say(ALICE, GENERAL, "oncall", sub("show", json!([])))
        .await;
    assert!(text.contains(&format!("**primary**: <@{ALICE}>")), "{text}");
    assert!(private);
    // Bob may not put alice on call; alice (an admin) may put bob on call.
    let (text, _) = d
        .say(
            BOB,
            GENERAL,
            "oncall",
            sub(
                "cover",
                json!([user_opt("user", ALICE), opt("duration", "2h")]),
            ),
        )
        .await;
    assert!(text.contains("Only admins"), "{text}");
    let (text, private) = d
        .say(
            ALICE,
            GENERAL,
            "oncall",
            sub(
                "cover",
                json!([
                    user_opt("user", BOB),
                    opt("duration", "2h"),
                    opt("schedule", "primary")
                ]),
            ),
        )
        .await;
    assert!(
        text.starts_with(&format!("<@{BOB}> is on call for primary until")),
        "{text}"
    );
    assert!(!private);
    let (_, oncall) = d.app.get("/v1/oncall").await;
    assert_eq!(oncall["oncall"][0]["on_call"]["user"], "bob");

    assert_eq!(
        d.say(
            ALICE,
            GENERAL,
            "page",
            json!([
                opt("message", "the EU checkout is down"),
                user_opt("user", BOB)
            ])
        )
        .await,
        (
            format!("Opened INC-1 and paged <@{BOB}>: the EU checkout is down"),
            false
        )
    );
    d.dm_page(BOB).await;
    let (text, _) = d
        .say(
            ALICE,
            GENERAL,
            "page",
            json!([opt("message", "DB latency"), opt("schedule", "primary")]),
        )
        .await;
    assert_eq!(
        text,
        "Opened INC-2 and paged whoever is on call for primary: DB latency"
    );
    let (text, private) = d
        .say(ALICE, GENERAL, "page", json!([opt("message", "who?")]))
        .await;
    assert!(text.contains("either a user or a schedule"), "{text}");
    assert!(private);
    d.app.stop().await;
}

#[tokio::test]
async fn every_button() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let click = |user: &'static str, id: &'static str| {
        let d = &d;
        let ch = ch.clone();
        async move {
            let (st, answer) = d.interact(&press(user, &ch, id, false)).await;
            assert_eq!(st, 200, "{answer}");
            assert_eq!(answer["type"], 4, "{answer}");
            answer["data"]["content"].as_str().unwrap().to_string()
        }
    };
    assert!(click(BOB, "tocsin_runbook:INC-1").await.contains("runbook"));
    assert_eq!(
        click(BOB, "tocsin_escalate:INC-1").await,
        "bob escalated INC-1: step 2 is being paged."
    );
    d.dm_page(BOB).await;
    assert_eq!(
        click(BOB, "tocsin_ack:INC-1").await,
        "INC-1 acknowledged by bob. Paging stopped."
    );
    assert_eq!(
        d.app.incident("INC-1").await["incident"]["acknowledged_by"]["name"],
        json!({"user": "bob", "principal": format!("discord:{GUILD}/{BOB}")})
    );
    assert_eq!(
        click(ALICE, "tocsin_resolve:INC-1").await,
        "INC-1 resolved by alice."
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "resolved");
    let (st, answer) = d
        .interact(&press(ALICE, &ch, "tocsin_frobnicate:INC-1", false))
        .await;
    assert_eq!(st, 200);
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Unknown button")
    );
    d.app.stop().await;
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_strangers_change_nothing() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let ack = command(ALICE, &ch, "incident", sub("ack", json!([])));
    let body = ack.to_string();
    let calls_before = d.fake.calls().len();

    // A bad signature.
    let ts = now_ts();
    let (st, answer) = d.post_signed(&body, &ts, &"00".repeat(64)).await;
    assert_eq!(st, 401, "{answer}");
    assert_eq!(answer["error"], "unauthorized");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("signature does not match")
    );
    // A valid signature over a different body.
    let (st, _) = d.post_signed(&body, &ts, &sign(&ts, "{}")).await;
    assert_eq!(st, 401);
    // No signature at all.
    let resp = d
        .app
        .http
        .post(d.app.url("/discord/interactions"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A correct signature, 10 minutes old (a replay).
    let stale = (SystemClock.now().timestamp() - 600).to_string();
    let (st, answer) = d.post_signed(&body, &stale, &sign(&stale, &body)).await;
    assert_eq!(st, 401);
    assert!(
        answer["message"].as_str().unwrap().contains("5 minutes"),
        "{answer}"
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "triggered");
    assert_eq!(d.app.store.timer_count().unwrap(), 1);

    // A correctly signed command and button from someone tocsin does not know.
    let (text, private) = d
        .say(STRANGER, &ch, "incident", sub("ack", json!([])))
        .await;
    assert!(text.contains("not a tocsin user"), "{text}");
    assert!(text.contains(STRANGER), "{text}");
    assert!(private);
    let (_, answer) = d
        .interact(&press(STRANGER, &ch, "tocsin_resolve:INC-1", false))
        .await;
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("not a tocsin user")
    );
    assert_eq!(answer["data"]["flags"], 64);
    assert_eq!(status(&d.app.incident("INC-1").await), "triggered");
    assert_eq!(d.app.store.timer_count().unwrap(), 1);
    // Nothing was sent to Discord for any of them.
    assert!(
        d.fake.calls()[calls_before..]
            .iter()
            .all(|c| c.route != "edit_message" && c.route != "edit_original"),
        "{:#?}",
        &d.fake.calls()[calls_before..]
    );
    d.app.stop().await;
}

#[tokio::test]
async fn slow_work_gets_a_deferred_answer_then_the_webhook_edit_or_followup() {
    let d = discord_with(&Opts {
        defer_after: "0s",
        ..DEFAULT
    })
    .await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let (st, answer) = d
        .interact(&command(ALICE, &ch, "incident", sub("status", json!([]))))
        .await;
    assert_eq!(st, 200);
    assert_eq!(answer["type"], 5, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "status is private: {answer}");
    let interaction = command(ALICE, &ch, "incident", sub("ack", json!([])));
    let token = interaction["token"].as_str().unwrap().to_string();
    let (_, answer) = d.interact(&interaction).await;
    assert_eq!(answer["type"], 5, "{answer}");
    assert_eq!(
        answer["data"]["flags"], 64,
        "deferred private, as it could have been a refusal: {answer}"
    );
    // The public reply is a message in the channel; the private "thinking"
    // answer is deleted.
    d.fake
        .wait_until("the ack in the channel", |f| {
            f.messages(&ch)
                .iter()
                .any(|m| m["content"] == "INC-1 acknowledged by alice. Paging stopped.")
        })
        .await;
    let path = format!("/webhooks/{APPLICATION}/{token}/messages/@original");
    d.fake.wait_for_call("delete_original", &path).await;
    assert!(
        d.fake
            .ok_calls("edit_original")
            .iter()
            .all(|c| c.path != path),
        "{:?}",
        d.fake.ok_calls("edit_original")
    );

    // A button: deferred update (type 6), then a follow-up message.
    let click = press(ALICE, &ch, "tocsin_resolve:INC-1", false);
    let token = click["token"].as_str().unwrap().to_string();
    let (_, answer) = d.interact(&click).await;
    assert_eq!(answer, json!({"type": 6}));
    let path = format!("/webhooks/{APPLICATION}/{token}");
    let followup = d.fake.wait_for_call("followup", &path).await;
    assert_eq!(followup.body["content"], "INC-1 resolved by alice.");
    assert_eq!(status(&d.app.incident("INC-1").await), "resolved");
    d.app.stop().await;
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_and_the_page_arrives_once() {
    let fake = FakeDiscord::start().await;
    fake.fail("create_dm", &[Fail::RateLimited(1.5), Fail::ServerError]);
    fake.fail("list_channels", &[Fail::RateLimitedHeaderOnly(1)]);
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &discord_config(&fake, &DEFAULT),
    )
    .await;
    app.start_background();
    let d = Discord { app, fake };
    trigger(&d.app, "pay").await;
    d.channel_of(1).await;
    d.dm_page(ALICE).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let dm = d.fake.dm_of(ALICE).unwrap();
    assert_eq!(d.fake.messages(&dm).len(), 1, "one page");
    assert_eq!(
        d.fake.ok_calls("create_channel").len(),
        2,
        "category + channel"
    );

    // The second attempt waited for Discord's retry_after (1.5 s), not the
    // 200 ms backoff.
    let dm_calls: Vec<_> = d
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "create_dm")
        .collect();
    assert_eq!(dm_calls[0].status, 429);
    assert_eq!(dm_calls[1].status, 500);
    assert_eq!(dm_calls[2].status, 200);
    let waited = dm_calls[1].at - dm_calls[0].at;
    assert!(
        waited >= std::time::Duration::from_millis(1450),
        "{waited:?}"
    );

    let timeline = d.app.incident("INC-1").await["timeline"].clone();
    let retries: Vec<String> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "delivery_retry")
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert!(
        retries.contains(&"discord open DM: rate limited".to_string()),
        "{retries:?}"
    );
    assert!(
        retries
            .iter()
            .any(|r| r.starts_with("discord open DM: HTTP 500 Internal Server Error")),
        "{retries:?}"
    );
    assert!(
        retries.contains(&"discord list channels: rate limited".to_string()),
        "{retries:?}"
    );
    let paged = timeline_entry(&timeline, "paged");
    assert_eq!(paged["attempts"], 3);
    d.app.stop().await;
}

pub fn platform(fake: &FakeDiscord) -> tocsin::chat::discord::DiscordPlatform {
    let cfg = tocsin::config::Config::from_toml_str(
        &format!(
            "[discord]\napplication_id = \"{APPLICATION}\"\npublic_key = \"{}\"\nbot_token = \"t\"\nguild_id = \"{GUILD}\"\napi_url = \"{}\"\n",
            hex::encode(key().verifying_key().to_bytes()),
            fake.api_url()
        ),
        &Default::default(),
    )
    .unwrap();
    tocsin::chat::discord::DiscordPlatform::new(
        cfg.discord.as_ref().unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
}

#[tokio::test]
async fn a_retried_dm_whose_answer_was_lost_is_sent_once() {
    use tocsin::chat::{ChatMessage, ChatPlatform};
    let fake = FakeDiscord::start().await;
    let discord = platform(&fake);
    // Discord sends the message, but the answer never arrives.
    fake.fail("create_message", &[Fail::LoseResponse]);
    let msg = ChatMessage::Text("page".into());
    let key = "INC-9/g0/r0/s0/user:alice/m0";
    let err = discord.send_dm(ALICE, &msg, key).await.unwrap_err();
    assert!(err.retryable, "{err:?}");
    let again = discord.send_dm(ALICE, &msg, key).await.unwrap();
    let dm = fake.dm_of(ALICE).unwrap();
    let sent = fake.messages(&dm);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["id"], again);
    let other = discord
        .send_dm(ALICE, &msg, "INC-9/g0/r0/s1/user:alice/m0")
        .await
        .unwrap();
    assert_ne!(again, other);
    assert_eq!(fake.messages(&dm).len(), 2);
}

#[tokio::test]
async fn channels_reuse_the_category_and_a_lost_create_does_not_make_two() {
    use tocsin::chat::ChatPlatform;
    let fake = FakeDiscord::start().await;
    let category = fake.add_channel(4, "Incidents", None);
    let discord = platform(&fake);
    fake.fail("create_channel", &[Fail::LoseResponse]);
    assert!(discord.create_channel("inc-3-db", false).await.is_err());
    let ch = discord.create_channel("inc-3-db", false).await.unwrap();
    assert_eq!(ch.name, "inc-3-db");
    let made: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "create_channel")
        .collect();
    assert_eq!(made.len(), 1, "the retry found the first one: {made:#?}");
    assert_eq!(made[0].body["parent_id"], category.as_str());
    // Errors are mapped: 404 is permanent.
    let err = discord
        .set_topic("1999999999999999999", "x")
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(
        err.message,
        "discord set topic: HTTP 404 Not Found: Unknown Channel (10003)"
    );
}

#[tokio::test]
async fn resolved_channels_are_moved_to_the_archive_and_locked() {
    let d = discord_with(&Opts {
        archive_after: "1s",
        ..DEFAULT
    })
    .await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    d.say(ALICE, &ch, "incident", sub("resolve", json!([])))
        .await;
    d.fake
        .wait_until("the archive", |f| {
            f.ok_calls("edit_channel")
                .iter()
                .any(|c| c.body.get("parent_id").is_some())
        })
        .await;
    let archive = d.fake.channel_named("incidents-archive").unwrap();
    assert_eq!(archive["type"], 4);
    let channel = d.fake.channel(&ch).unwrap();
    assert_eq!(channel["parent_id"], archive["id"]);
    let overwrites = channel["permission_overwrites"].as_array().unwrap();
    let find = |id: &str| {
        overwrites
            .iter()
            .find(|o| o["id"] == id)
            .unwrap_or_else(|| panic!("no overwrite for {id}: {overwrites:?}"))
    };
    let bits = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    const SEND: u64 = 1 << 11;
    const VIEW: u64 = 1 << 10;
    let alice = find(ALICE);
    assert_eq!(alice["type"], 1);
    assert_eq!(bits(&alice["allow"]), VIEW, "alice can still read");
    assert!(bits(&alice["deny"]) & SEND == SEND);
    let everyone = find(GUILD);
    assert_eq!(everyone["type"], 0);
    assert!(bits(&everyone["deny"]) & SEND == SEND);
    for _ in 0..100 {
        if d.app.incident("INC-1").await["incident"]["chat"]["discord"]["archived"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        d.app.incident("INC-1").await["incident"]["chat"]["discord"]["archived"],
        true
    );
    d.app.stop().await;
}

#[tokio::test]
async fn tocsin_discord_register_overwrites_the_guild_commands() {
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.toml");
    std::fs::write(
        &config,
        config_text_with(
            &dir.path().join("data"),
            "127.0.0.1:0",
            Some("payments"),
            &discord_config(&fake, &DEFAULT),
        ),
    )
    .unwrap();
    // Async: the fake answers on this test's runtime.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["discord", "register", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("Registered /incident, /oncall, /page, /maintenance in guild {GUILD}")
    );
    let calls = fake.ok_calls("register_commands");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "PUT");
    assert_eq!(
        call.path,
        format!("/applications/{APPLICATION}/guilds/{GUILD}/commands")
    );
    assert_eq!(call.authorization.as_deref(), Some("Bot test-bot-token"));
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&call.body),
        ["incident", "oncall", "page", "maintenance"]
    );
    assert_eq!(
        names(&call.body[0]["options"]),
        [
            "new", "ack", "resolve", "escalate", "snooze", "status", "severity", "role", "note",
            "update", "public", "private", "summary", "login", "runbook", "step", "phase", "drill",
            "help"
        ]
    );
    assert_eq!(names(&call.body[1]["options"]), ["show", "cover"]);
    assert_eq!(
        names(&call.body[2]["options"]),
        ["message", "user", "schedule"]
    );
    // The payload is exactly the definitions the parser is tested against.
    assert_eq!(
        call.body,
        serde_json::to_value(tocsin::chat::discord::commands::definitions()).unwrap()
    );
}

#[tokio::test]
async fn gateway_mode_answers_interactions_from_a_fake_gateway() {
    let gateway = Opts {
        mode: "gateway",
        ..DEFAULT
    };
    let d = discord_with(&gateway).await;
    // Gateway mode serves no interactions endpoint.
    let (st, _) = d
        .interact(&json!({"type": 1, "id": "1", "token": "t"}))
        .await;
    assert_eq!(st, 404);

    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let cfg = tocsin::config::Config::from_toml_str(
        &config_text_with(
            std::path::Path::new("/unused"),
            "127.0.0.1:0",
            Some("payments"),
            &discord_config(&d.fake, &gateway),
        ),
        &Default::default(),
    )
    .unwrap();
    let c = cfg.discord.as_ref().unwrap();
    let platform = Arc::new(
        tocsin::chat::discord::DiscordPlatform::new(c, std::time::Duration::from_secs(5)).unwrap(),
    );
    let runtime = tocsin::chat::discord::Discord::new(
        c,
        platform,
        tocsin::chat::handler::ChatHandler::new(d.app.service.clone()),
        d.app.service.clock().clone(),
    )
    .unwrap();
    let (stop, _) = tokio::sync::watch::channel(false);
    // A replica that does not lead opens no gateway connection.
    let (leads, leader) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(runtime.run(stop.subscribe(), leader));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        d.fake.ok_calls("gateway").is_empty(),
        "no gateway while following"
    );
    leads.send(true).unwrap();

    // serenity asks for the gateway URL through the proxy, connects to the
    // fake's ws:// URL, identifies with the bot token and gets READY.
    d.fake
        .wait_until("the gateway session", |f| f.gateway_connected())
        .await;
    assert!(
        d.fake
            .ok_calls("gateway")
            .iter()
            .any(|c| c.path == "/gateway")
    );
    let identify = d
        .fake
        .gateway_received()
        .into_iter()
        .find(|m| m["op"] == 2)
        .unwrap();
    assert!(
        identify["d"]["token"]
            .as_str()
            .unwrap()
            .ends_with("test-bot-token")
    );
    // Commands are registered at start in gateway mode too.
    d.fake
        .wait_until("the registration", |f| {
            !f.ok_calls("register_commands").is_empty()
        })
        .await;

    let interaction = command(ALICE, &ch, "incident", sub("ack", json!([])));
    let id = interaction["id"].as_str().unwrap().to_string();
    let token = interaction["token"].as_str().unwrap().to_string();
    d.fake.dispatch_interaction(interaction);
    let path = format!("/interactions/{id}/{token}/callback");
    let answer = d
        .fake
        .wait_for_call("interaction_callback", &path)
        .await
        .body;
    assert_eq!(answer["type"], 4);
    assert_eq!(
        answer["data"]["content"],
        "INC-1 acknowledged by alice. Paging stopped."
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "acknowledged");
    assert_eq!(d.app.store.timer_count().unwrap(), 0);

    // A button press over the gateway, from a DM.
    let dm_press = press(ALICE, "1300000000000000300", "tocsin_resolve:INC-1", true);
    let path = format!(
        "/interactions/{}/{}/callback",
        dm_press["id"].as_str().unwrap(),
        dm_press["token"].as_str().unwrap()
    );
    d.fake.dispatch_interaction(dm_press);
    d.fake.wait_for_call("interaction_callback", &path).await;
    assert_eq!(status(&d.app.incident("INC-1").await), "resolved");

    // Losing the lead closes the connection; leading again opens a new
    // session (a second IDENTIFY).
    let identifies = |f: &FakeDiscord| f.gateway_received().iter().filter(|m| m["op"] == 2).count();
    assert_eq!(identifies(&d.fake), 1);
    leads.send(false).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    leads.send(true).unwrap();
    d.fake
        .wait_until("a second gateway session", |f| identifies(f) == 2)
        .await;

    let _ = stop.send(true);
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("the gateway client stops")
        .unwrap();
    d.app.stop().await;
}

#[tokio::test]
async fn runbooks_and_drills_work_the_same_on_discord() {
    let d = discord().await;
    let (st, b) = d
        .app
        .post_raw(
            &format!("/hooks/{AM_KEY}"),
            fixture("alertmanager/firing.json"),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    let ch = d.channel_of(1).await;
    let say = |name: &'static str, args: &'static str| {
        let d = &d;
        let ch = ch.clone();
        async move {
            let options = if args.is_empty() {
                json!([])
            } else {
                json!([opt("args", args)])
            };
            d.say(ALICE, &ch, "incident", sub(name, options)).await.0
        }
    };
    let list = say("runbook", "").await;
    assert!(
        list.contains("`high-error-rate` High error rate (attached)"),
        "{list}"
    );
    let card = say("runbook", "show").await;
    assert!(
        card.contains("phase 1 of 6") && card.contains("Detection and reporting"),
        "{card}"
    );
    assert!(
        say("step", "done confirm-errors")
            .await
            .contains("needs evidence")
    );
    assert_eq!(
        say("step", "done confirm-errors 12% 5xx").await,
        "alice did step `confirm-errors` of INC-1."
    );
    assert_eq!(
        say("step", "done check-burn-rate 14x").await,
        "alice did step `check-burn-rate` of INC-1."
    );
    assert_eq!(
        say("step", "skip start-timeline tocsin keeps it").await,
        "alice skipped step `start-timeline` of INC-1."
    );
    assert!(
        say("phase", "next")
            .await
            .contains("finish or skip these steps")
    );
    say("step", "skip post-status-page internal only").await;
    let (st, answer) = d
        .interact(&command(
            ALICE,
            &ch,
            "incident",
            sub("phase", json!([opt("args", "next")])),
        ))
        .await;
    assert_eq!(st, 200, "{answer}");
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("phase 2 of 6"),
        "{answer}"
    );
    let ids: Vec<&str> = answer["data"]["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "tocsin_step_done:INC-1:read-error-samples",
            "tocsin_phase_next:INC-1"
        ]
    );
    let (_, done) = d
        .interact(&press(
            ALICE,
            &ch,
            "tocsin_step_done:INC-1:read-error-samples",
            false,
        ))
        .await;
    assert_eq!(
        done["data"]["content"],
        "alice did step `read-error-samples` of INC-1."
    );

    let drill = d
        .say(
            ALICE,
            &ch,
            "incident",
            sub("drill", json!([opt("runbook", "high-error-rate")])),
        )
        .await
        .0;
    assert!(drill.starts_with("Drill INC-2 opened"), "{drill}");
    let inc = d.app.incident("INC-2").await;
    assert_eq!(inc["incident"]["drill"], true);
    assert_eq!(inc["incident"]["runbook"]["runbook"], "high-error-rate");
    d.app.stop().await;
}

#[tokio::test]
async fn alert_text_reaches_discord_as_text_and_pings_nobody_it_names() {
    let d = discord().await;
    let (s, b) = d
        .app
        .pd(
            "trigger",
            "hostile",
            "Disk <!channel> full & <@U999> @everyone",
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let channel = d.channel_of(1).await;
    d.fake
        .wait_until("the intro", |f| {
            f.messages(&channel)
                .iter()
                .any(|m| m["content"].to_string().contains("Use the buttons"))
        })
        .await;
    let escaped = "Disk \\\\<!channel\\\\> full & \\\\<@U999\\\\> @\u{200b}everyone";
    let messages = d.fake.messages(&channel);
    let card = &messages[0];
    assert!(
        card["embeds"][0]["title"].to_string().contains(escaped),
        "{card}"
    );
    let intro = messages
        .iter()
        .find(|m| m["content"].to_string().contains("Use the buttons"))
        .unwrap();
    assert!(intro["content"].to_string().contains(escaped), "{intro}");
    for c in d.fake.ok_calls("create_message") {
        let body = c.body.to_string();
        assert!(
            !body.contains("<!channel>") && !body.contains(" <@U999>"),
            "{body}"
        );
        assert!(!body.contains("@everyone"), "{body}");
        if let Some(m) = c.body.get("allowed_mentions") {
            assert_eq!(m["parse"], json!([]), "{body}");
            assert_eq!(m["roles"], json!([]), "{body}");
        }
    }
    d.app.stop().await;
}

/// Posts `text` as the outbox job `key` would be posted: attempts until it
/// goes through, waiting what Discord asks (or 200 ms after a 5xx), like
/// the outbox's retries.
async fn post_like_the_outbox(
    discord: &tocsin::chat::discord::DiscordPlatform,
    channel: &str,
    text: &str,
    key: &str,
) -> (String, u32) {
    use tocsin::chat::{ChatMessage, ChatPlatform};
    let msg = ChatMessage::Text(text.into());
    let mut attempts = 0;
    loop {
        attempts += 1;
        match discord.post_once(channel, &msg, key).await {
            Ok(id) => return (id, attempts),
            Err(e) => {
                assert!(e.retryable, "{e:?}");
                assert!(attempts < 20, "gave up: {e:?}");
                let wait = e
                    .retry_after
                    .unwrap_or(std::time::Duration::from_millis(200));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A summary of `pieces` messages: every line numbered, so each piece says
/// where it starts.
fn long_summary(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("line {i:05} {}", "x".repeat(80)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a posted message (content, or its embeds' descriptions).
pub fn posted_text(m: &Value) -> String {
    let content = m["content"].as_str().unwrap_or_default().to_string();
    let embeds: Vec<String> = m["embeds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["description"].as_str().map(str::to_string))
        .collect();
    [vec![content], embeds]
        .concat()
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_long_summary_arrives_whole_each_piece_once_under_the_channel_bucket() {
    let fake = FakeDiscord::start().await;
    let discord = platform(&fake);
    let channel = fake.add_channel(0, "inc-1-summary", None);
    // About 44,000 characters: 8 messages of up to 6,000.
    let text = long_summary(500);
    assert!(text.chars().count() > 44_000);
    let want = tocsin::chat::discord::embeds::split(&text, 10);
    assert_eq!(want.len(), 8);
    let (first, attempts) =
        post_like_the_outbox(&discord, &channel, &text, "INC-1/chat/discord/summary").await;
    let sent = fake.messages(&channel);
    assert_eq!(sent.len(), 8, "each piece once");
    assert_eq!(sent[0]["id"], first);
    for (i, (m, piece)) in sent.iter().zip(&want).enumerate() {
        assert_eq!(posted_text(m), *piece, "piece {} in order", i + 1);
    }
    // The bucket's headers said when it was empty: the 6th piece waited
    // for the reset instead of meeting a 429.
    let calls: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "create_message")
        .collect();
    assert_eq!(fake.rate_limited(), 0, "{calls:#?}");
    assert!(calls.iter().all(|c| c.status == 200), "{calls:#?}");
    assert_eq!(calls.len(), 8);
    assert_eq!(attempts, 1);
    let waited = calls[5].at - calls[0].at;
    assert!(
        waited >= std::time::Duration::from_millis(4900),
        "{waited:?}"
    );
    assert!(calls[4].at - calls[0].at < std::time::Duration::from_secs(2));
}

/// A 429 (a bucket shared with something tocsin did not count) is waited
/// out and the job resumes at the refused piece.
#[tokio::test]
async fn a_429_mid_post_resumes_at_the_refused_piece() {
    let fake = FakeDiscord::start().await;
    let discord = platform(&fake);
    let channel = fake.add_channel(0, "inc-1-summary", None);
    let text = long_summary(180);
    let want = tocsin::chat::discord::embeds::split(&text, 10);
    assert_eq!(want.len(), 3);
    fake.fail("create_message", &[Fail::Pass, Fail::RateLimited(1.2)]);
    let (_, attempts) =
        post_like_the_outbox(&discord, &channel, &text, "INC-1/chat/discord/summary").await;
    assert_eq!(attempts, 2);
    let sent: Vec<String> = fake.messages(&channel).iter().map(posted_text).collect();
    assert_eq!(sent, want, "each piece once, in order");
    let calls: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "create_message")
        .collect();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 429, 200, 200]);
    assert_eq!(calls[2].body["nonce"], calls[1].body["nonce"]);
    assert!(calls[2].at - calls[1].at >= std::time::Duration::from_millis(1200));
}

#[tokio::test]
async fn a_failed_piece_is_retried_alone_and_a_lost_answer_is_not_posted_twice() {
    use tocsin::chat::discord::embeds::split;
    for fail in [Fail::ServerError, Fail::LoseResponse] {
        let fake = FakeDiscord::start().await;
        let discord = platform(&fake);
        let channel = fake.add_channel(0, "inc-2-summary", None);
        let text = long_summary(180);
        let want = split(&text, 10);
        assert_eq!(want.len(), 3);
        fake.fail("create_message", &[Fail::Pass, fail.clone()]);
        post_like_the_outbox(&discord, &channel, &text, "INC-2/chat/discord/summary").await;
        let sent: Vec<String> = fake.messages(&channel).iter().map(posted_text).collect();
        assert_eq!(sent, want, "{fail:?}: each piece once, in order");
        let statuses: Vec<u16> = fake
            .calls()
            .iter()
            .filter(|c| c.route == "create_message")
            .map(|c| c.status)
            .collect();
        assert_eq!(statuses, [200, 500, 200, 200], "{fail:?}");
    }
}

const LONG_STEP: &str =
    "check-every-upstream-dependency-of-the-payments-api-in-every-region-and-availability-zone";

fn long_runbook_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let steps: String = ["one", "two", "three"]
        .iter()
        .map(|s| {
            format!(
                "[[phases.steps]]\nid = \"{LONG_STEP}-{s}\"\ntext = \"Step {s}.\"\nowner = \"any\"\n\n"
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("long-ids.toml"),
        format!(
            "name = \"long-ids\"\ntitle = \"Long step ids\"\ndescription = \"Steps with long ids.\"\n\n[match]\nservices = []\nseverities = [\"sev1\", \"sev2\", \"sev3\", \"sev4\"]\nlabels = []\n\n[[phases]]\nphase = \"detection\"\ntitle = \"Detection\"\n\n{steps}"
        ),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn done_buttons_of_long_step_ids_are_unique_and_mark_the_right_step() {
    let runbooks = long_runbook_dir();
    let fake = FakeDiscord::start().await;
    // Every answer is deferred, so the runbook card reaches the fake
    // Discord, which refuses what Discord refuses.
    let o = Opts {
        defer_after: "0s",
        ..DEFAULT
    };
    let config = format!(
        "{}\n[runbooks]\ndir = {:?}\n",
        discord_config(&fake, &o),
        runbooks.path().display().to_string()
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("payments"), &config).await;
    app.start_background();
    let d = Discord { app, fake };
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let inc = d.app.incident("INC-1").await;
    if inc["incident"]["runbook"]["runbook"] != "long-ids" {
        let (st, _) = d
            .interact(&command(
                ALICE,
                &ch,
                "incident",
                sub("runbook", json!([opt("args", "long-ids")])),
            ))
            .await;
        assert_eq!(st, 200);
    }
    let (st, answer) = d
        .interact(&command(
            ALICE,
            &ch,
            "incident",
            sub("runbook", json!([opt("args", "show")])),
        ))
        .await;
    assert_eq!(st, 200, "{answer}");
    assert_eq!(answer["type"], 5, "{answer}");
    d.fake
        .wait_until("the runbook card", |f| {
            f.calls().iter().any(|c| {
                c.route == "edit_original"
                    && !c.body["components"].as_array().is_none_or(Vec::is_empty)
            })
        })
        .await;
    let card = d
        .fake
        .calls()
        .into_iter()
        .rfind(|c| c.route == "edit_original" && c.body["components"].is_array())
        .unwrap();
    assert_eq!(card.status, 200, "Discord takes the card: {card:#?}");
    let ids: Vec<String> = card.body["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["components"].as_array().unwrap().clone())
        .map(|b| b["custom_id"].as_str().unwrap().to_string())
        .collect();
    let done: Vec<&String> = ids
        .iter()
        .filter(|i| i.starts_with("tocsin_step_done:"))
        .collect();
    assert_eq!(done.len(), 3, "{ids:?}");
    for id in &ids {
        assert!(id.chars().count() <= 100, "{id}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");

    // Pressing the second Done marks the second step, not another.
    let (st, answer) = d.interact(&press(ALICE, &ch, done[1], false)).await;
    assert_eq!(st, 200, "{answer}");
    let said = format!("alice did step `{LONG_STEP}-two` of INC-1.");
    d.fake
        .wait_until("the step's reply", |f| {
            f.ok_calls("followup").iter().any(|c| {
                c.body["content"]
                    .as_str()
                    .is_some_and(|t| t.contains(&said))
            })
        })
        .await;
    let inc = d.app.incident("INC-1").await;
    let rb = inc["incident"]["runbook"].to_string();
    assert!(rb.contains(&format!("{LONG_STEP}-two")), "{rb}");
    assert!(!rb.contains(&format!("{LONG_STEP}-one\"")), "{rb}");
    d.app.stop().await;
}

#[test]
fn the_fake_discord_refuses_components_discord_refuses() {
    let button = |id: &str| json!({"type": 2, "style": 2, "label": "x", "custom_id": id});
    let row = |ids: &[&str]| json!({"type": 1, "components": ids.iter().map(|i| button(i)).collect::<Vec<_>>()});
    let refused = |body: Value| {
        crate::common::fake_discord::invalid_components(&body).map(|e| e["code"].as_u64().unwrap())
    };
    assert_eq!(refused(json!({"components": [row(&["a", "b"])]})), None);
    assert_eq!(
        refused(json!({"components": [row(&["a"]), row(&["a"])]})),
        Some(50035)
    );
    assert_eq!(
        refused(json!({"components": [row(&[&"a".repeat(101)])]})),
        Some(50035)
    );
    assert_eq!(
        refused(json!({"components": [row(&["a", "b", "c", "d", "e", "f"])]})),
        Some(50035)
    );
    let six: Vec<Value> = (0..6).map(|i| row(&[&format!("b{i}")])).collect();
    assert_eq!(refused(json!({"components": six})), Some(50035));
}

/// The messages of `channel` that are cards (the embed with the footer
/// naming the incident).
fn cards(fake: &FakeDiscord, channel: &str) -> Vec<Value> {
    fake.messages(channel)
        .into_iter()
        .filter(|m| m["embeds"][0]["footer"]["text"] == "tocsin · inc-1")
        .collect()
}

#[tokio::test]
async fn a_card_whose_answer_was_lost_is_posted_once() {
    let fake = FakeDiscord::start().await;
    // Discord posts the card, then the answer is lost.
    fake.lose_answer_when("create_message", "tocsin · inc-1");
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &discord_config(&fake, &DEFAULT),
    )
    .await;
    app.start_background();
    let d = Discord { app, fake };
    trigger(&d.app, "pay").await;
    let channel = d.channel_of(1).await;
    for _ in 0..200 {
        let inc = d.app.incident("INC-1").await;
        if inc["incident"]["chat"]["discord"]["card_id"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let inc = d.app.incident("INC-1").await;
    let card_id = inc["incident"]["chat"]["discord"]["card_id"].clone();
    let cards = cards(&d.fake, &channel);
    assert_eq!(cards.len(), 1, "one card: {cards:#?}");
    assert_eq!(card_id, cards[0]["id"], "the card found again is recorded");
    let posts: Vec<_> = d
        .fake
        .calls()
        .into_iter()
        .filter(|c| {
            c.route == "create_message" && c.path == format!("/channels/{channel}/messages")
        })
        .filter(|c| c.body.to_string().contains("tocsin · inc-1"))
        .collect();
    assert_eq!(posts.len(), 2, "the lost one and its retry: {posts:#?}");
    assert_eq!(posts[0].status, 500);
    assert_eq!(posts[1].body["nonce"], posts[0].body["nonce"]);
    assert_eq!(posts[1].body["enforce_nonce"], true);
    d.app.stop().await;
}

#[tokio::test]
async fn a_1000_alert_summary_is_one_embed_with_the_whole_summary_attached_once() {
    let d = discord().await;
    let hook = format!("/hooks/{AM_KEY}");
    let (st, b) = d
        .app
        .post_json(&hook, &crate::slack::alertmanager_group(1000, "firing"))
        .await;
    assert_eq!(st, 202, "{b}");
    let channel = d.channel_of(1).await;
    d.fake
        .wait_until("the card", |f| !cards(f, &channel).is_empty())
        .await;
    let before = d.fake.calls().len();
    let started = std::time::Instant::now();
    let (st, b) = d
        .app
        .post_json(&hook, &crate::slack::alertmanager_group(1000, "resolved"))
        .await;
    assert_eq!(st, 202, "{b}");
    d.fake
        .wait_until("the summary attachment", |f| {
            !f.attachments(&channel).is_empty()
        })
        .await;
    let elapsed = started.elapsed();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let full = d.app.get_text("/v1/incidents/INC-1/summary").await;
    let files = d.fake.attachments(&channel);
    assert_eq!(files.len(), 1, "one attachment");
    assert_eq!(files[0].0, "summary-INC-1.md");
    let content = String::from_utf8(files[0].1.clone()).unwrap();
    assert_eq!(content, full, "the attachment is the whole summary");
    for i in 0..1000 {
        assert!(content.contains(&format!("node-{i:04}")), "node-{i:04}");
    }
    let summaries: Vec<Value> = d
        .fake
        .messages(&channel)
        .into_iter()
        .filter(|m| {
            m["embeds"][0]["title"]
                .as_str()
                .unwrap_or_default()
                .contains("Summary of INC-1")
        })
        .collect();
    assert_eq!(summaries.len(), 1, "one message");
    let embed = &summaries[0]["embeds"][0];
    let field = |name: &str| {
        embed["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["value"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no field {name}: {embed}"))
    };
    assert_eq!(field("Status"), "resolved");
    assert!(
        field("Alerts").starts_with("1000 alert(s)"),
        "{}",
        field("Alerts")
    );
    assert!(!field("First lines").is_empty());
    assert!(embed["description"].as_str().unwrap().chars().count() <= 4096);
    assert_eq!(
        summaries[0]["attachments"][0]["filename"],
        "summary-INC-1.md"
    );
    let after: Vec<_> = d.fake.calls().into_iter().skip(before).collect();
    let posts: Vec<_> = after
        .iter()
        .filter(|c| {
            c.route == "create_message" && c.path == format!("/channels/{channel}/messages")
        })
        .collect();
    let summary_posts: Vec<_> = posts
        .iter()
        .filter(|c| c.body.to_string().contains("Summary of INC-1"))
        .collect();
    let retries = summary_posts.len() - 1;
    let refused: Vec<_> = d
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.status >= 400)
        .map(|c| (c.route, c.status))
        .collect();
    eprintln!(
        "FIGURE discord 1000-alert summary: {} characters, {} message(s), {} retries, posted {:?} after the resolve",
        full.chars().count(),
        summaries.len(),
        retries,
        elapsed
    );
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(retries, 0);
    d.app.stop().await;
}

#[tokio::test]
async fn the_fake_refuses_attachments_and_embeds_discord_refuses() {
    let fake = FakeDiscord::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v10/channels/{GENERAL}/messages", fake.api_url());
    let send = |form: reqwest::multipart::Form| {
        let req = http
            .post(&url)
            .header("authorization", "Bot t")
            .multipart(form);
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let file =
        |n: usize| reqwest::multipart::Part::bytes(vec![b'x'; n]).file_name("summary-INC-1.md");
    let payload =
        json!({"content": "s", "attachments": [{"id": 0, "filename": "summary-INC-1.md"}]});
    // No payload_json: an empty message.
    let (st, b) = send(reqwest::multipart::Form::new().part("files[0]", file(10))).await;
    assert_eq!((st, b["code"].clone()), (400, json!(50006)), "{b}");
    // Over Discord's default 10 MiB.
    let (st, b) = send(
        reqwest::multipart::Form::new()
            .text("payload_json", payload.to_string())
            .part("files[0]", file(10 * 1024 * 1024 + 1)),
    )
    .await;
    assert_eq!((st, b["code"].clone()), (413, json!(40005)), "{b}");
    // An attachment named without its file.
    let (st, _) =
        send(reqwest::multipart::Form::new().text("payload_json", payload.to_string())).await;
    assert_eq!(st, 400);
    // Embeds over their limits, as JSON or as the payload.
    let embed = |e: Value| json!({"embeds": [e]});
    for body in [
        embed(json!({"description": "d".repeat(4097)})),
        embed(json!({"title": "t".repeat(257)})),
        embed(json!({"fields": vec![json!({"name": "n", "value": "v"}); 26]})),
        embed(json!({"fields": [{"name": "n", "value": "v".repeat(1025)}]})),
        json!({"embeds": [{"description": "d".repeat(4000)}, {"description": "d".repeat(2001)}]}),
    ] {
        let r = http
            .post(&url)
            .header("authorization", "Bot t")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let (st, _) =
            send(reqwest::multipart::Form::new().text("payload_json", body.to_string())).await;
        assert_eq!(st, 400);
    }
    // Within the limits, the file is kept.
    let (st, b) = send(
        reqwest::multipart::Form::new()
            .text("payload_json", payload.to_string())
            .part("files[0]", file(10 * 1024 * 1024)),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["attachments"][0]["filename"], "summary-INC-1.md");
    let kept = fake.attachments(GENERAL);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1.len(), 10 * 1024 * 1024);
}

#[tokio::test]
async fn a_summary_whose_answer_was_lost_is_posted_once() {
    let d = discord().await;
    d.fake
        .lose_answer_when("create_message", "Summary of INC-1");
    trigger(&d.app, "pay").await;
    let channel = d.channel_of(1).await;
    d.fake
        .wait_until("the card", |f| !cards(f, &channel).is_empty())
        .await;
    let (st, b) = d
        .app
        .post_with_token("/v1/incidents/INC-1/resolve", Some(API_TOKEN), &json!({}))
        .await;
    assert!(st < 300, "{st} {b}");
    wait_summary_delivered(&d.app, "INC-1", "discord").await;
    let summaries: Vec<Value> = d
        .fake
        .messages(&channel)
        .into_iter()
        .filter(|m| {
            m["embeds"][0]["title"]
                .as_str()
                .unwrap_or_default()
                .contains("Summary of INC-1")
        })
        .collect();
    assert_eq!(summaries.len(), 1, "one summary: {summaries:#?}");
    assert_eq!(d.fake.attachments(&channel).len(), 1);
    let posts: Vec<u16> = d
        .fake
        .calls()
        .iter()
        .filter(|c| c.route == "create_message" && c.body.to_string().contains("Summary of INC-1"))
        .map(|c| c.status)
        .collect();
    assert_eq!(posts, [500, 200], "the retry got the first message back");
    d.app.stop().await;
}

/// The users a channel lets in (member permission overwrites).
fn members(fake: &FakeDiscord, channel: &str) -> Vec<String> {
    let mut ids: Vec<String> = fake
        .channel(channel)
        .map(|c| {
            c["permission_overwrites"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
        .iter()
        .filter(|o| o["type"] == 1)
        .map(|o| o["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn whoever_is_paged_later_opens_it_or_gets_a_role_is_let_in() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    assert_eq!(members(&d.fake, &ch), [ALICE]);
    // The second escalation step pages bob: he is let in as he is paged.
    d.say(ALICE, &ch, "incident", sub("escalate", json!([])))
        .await;
    d.fake
        .wait_until("bob let in by his page", |f| {
            members(f, &ch).contains(&BOB.to_string())
        })
        .await;

    // Bob opens INC-2 by command (nobody is paged for the chat service):
    // the opener is in.
    d.say(
        BOB,
        GENERAL,
        "incident",
        sub("new", json!([opt("title", "Login failures")])),
    )
    .await;
    let ch2 = d.channel_of(2).await;
    d.fake
        .wait_until("the opener", |f| members(f, &ch2) == [BOB])
        .await;

    // Alice opens INC-3; bob is let in when he is made commander.
    d.say(
        ALICE,
        GENERAL,
        "incident",
        sub("new", json!([opt("title", "Checkout slow")])),
    )
    .await;
    let ch3 = d.channel_of(3).await;
    assert_eq!(members(&d.fake, &ch3), [ALICE]);
    d.say(
        ALICE,
        &ch3,
        "incident",
        sub(
            "role",
            json!([opt("role", "commander"), user_opt("user", BOB)]),
        ),
    )
    .await;
    d.fake
        .wait_until("the commander let in", |f| members(f, &ch3) == [ALICE, BOB])
        .await;
    d.app.stop().await;
}

#[tokio::test]
async fn a_strangers_deferred_command_is_refused_privately_never_in_the_channel() {
    let d = discord_with(&Opts {
        defer_after: "0s",
        ..DEFAULT
    })
    .await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let interaction = command(STRANGER, &ch, "incident", sub("ack", json!([])));
    let token = interaction["token"].as_str().unwrap().to_string();
    let (st, answer) = d.interact(&interaction).await;
    assert_eq!(st, 200);
    assert_eq!(answer["type"], 5, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    let path = format!("/webhooks/{APPLICATION}/{token}/messages/@original");
    let edit = d.fake.wait_for_call("edit_original", &path).await;
    let refusal = edit.body["content"].as_str().unwrap().to_string();
    assert!(refusal.contains("not a tocsin user"), "{refusal}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let public: Vec<_> = d
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "create_message" || c.route == "followup")
        .filter(|c| c.body.to_string().contains("not a tocsin user"))
        .collect();
    assert!(public.is_empty(), "{public:#?}");
    assert!(d.fake.ok_calls("delete_original").is_empty());
    assert_eq!(status(&d.app.incident("INC-1").await), "triggered");
    d.app.stop().await;
}

#[tokio::test]
async fn the_same_signed_interaction_three_times_opens_one_incident() {
    let d = discord().await;
    let body = command(
        ALICE,
        GENERAL,
        "incident",
        sub("new", json!([opt("title", "Checkout is down")])),
    )
    .to_string();
    let ts = now_ts();
    let sig = sign(&ts, &body);
    let (st, answer) = d.post_signed(&body, &ts, &sig).await;
    assert_eq!(st, 200, "{answer}");
    for _ in 0..2 {
        let (st, answer) = d.post_signed(&body, &ts, &sig).await;
        assert_eq!(st, 401, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains("already received"),
            "{answer}"
        );
    }
    let incidents = d.app.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["title"], "Checkout is down");
    d.app.stop().await;
}

/// A Discord tocsin with `chat` keys added to `[chat]`.
async fn discord_with_chat(chat: &str) -> Discord {
    let fake = FakeDiscord::start().await;
    let config = discord_config(&fake, &DEFAULT).replace(
        &chat_people("discord", ALICE, BOB, DEFAULT.archive_after),
        &chat_people_with("discord", ALICE, BOB, DEFAULT.archive_after, chat),
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("payments"), &config).await;
    app.start_background();
    Discord { app, fake }
}

#[tokio::test]
async fn other_servers_other_applications_and_dm_commands_are_refused() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    let ch = d.channel_of(1).await;
    let refused = |answer: &Value| {
        assert_eq!(answer["type"], 4, "{answer}");
        assert_eq!(answer["data"]["flags"], 64, "{answer}");
        answer["data"]["content"].as_str().unwrap().to_string()
    };
    let mut other_guild = command(ALICE, &ch, "incident", sub("ack", json!([])));
    other_guild["guild_id"] = json!("1100000000000000999");
    let (st, answer) = d.interact(&other_guild).await;
    assert_eq!(st, 200);
    assert_eq!(
        refused(&answer),
        "This tocsin serves another Discord server; nothing was done."
    );
    let mut other_app = press(ALICE, &ch, "tocsin_ack:INC-1", false);
    other_app["application_id"] = json!("1100000000000000998");
    let (_, answer) = d.interact(&other_app).await;
    assert!(refused(&answer).contains("another application"));
    // A slash command in a DM: refused, whoever sends it.
    let dm = d.dm_page(ALICE).await;
    let _ = dm;
    let dm_channel = d.fake.dm_of(ALICE).unwrap();
    let mut in_dm = command(ALICE, &dm_channel, "incident", sub("ack", json!([])));
    in_dm.as_object_mut().unwrap().remove("guild_id");
    in_dm.as_object_mut().unwrap().remove("member");
    in_dm["user"] = user_obj(ALICE);
    in_dm["channel"] = json!({"id": dm_channel, "type": 1});
    in_dm["context"] = json!(1);
    let (_, answer) = d.interact(&in_dm).await;
    assert!(
        refused(&answer).contains("not in direct messages"),
        "{answer}"
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "triggered");
    d.app.stop().await;
}

#[tokio::test]
async fn a_button_for_another_incident_or_someone_elses_page_is_refused() {
    let d = discord().await;
    trigger(&d.app, "pay").await;
    trigger(&d.app, "pay-2").await;
    let first = d.channel_of(1).await;
    d.channel_of(2).await;
    let (_, answer) = d
        .interact(&press(ALICE, &first, "tocsin_ack:INC-2", false))
        .await;
    let text = answer["data"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("This button is for INC-2, and it works only in INC-2's channel"),
        "{answer}"
    );
    assert_eq!(answer["data"]["flags"], 64);
    assert_eq!(status(&d.app.incident("INC-2").await), "triggered");
    // bob was not paged (step 2 has not run): his DM's button is refused.
    let (_, answer) = d
        .interact(&press(BOB, "1300000000000000301", "tocsin_ack:INC-1", true))
        .await;
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("This button is for INC-1"),
        "{answer}"
    );
    assert_eq!(status(&d.app.incident("INC-1").await), "triggered");
    // In INC-2's own channel it works, and the actor names the guild.
    let second = d.channel_of(2).await;
    let (_, answer) = d
        .interact(&press(ALICE, &second, "tocsin_ack:INC-2", false))
        .await;
    assert_eq!(
        answer["data"]["content"],
        "INC-2 acknowledged by alice. Paging stopped."
    );
    assert_eq!(
        d.app.incident("INC-2").await["incident"]["acknowledged_by"]["name"]["principal"],
        format!("discord:{GUILD}/{ALICE}")
    );
    d.app.stop().await;
}

#[tokio::test]
async fn a_sev1_gets_a_channel_only_its_responders_see() {
    let d = discord_with_chat("private_severities = [\"SEV1\"]").await;
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "leak",
        "payload": {"summary": "Signing key exposed", "source": "test", "severity": "critical"}});
    assert_eq!(d.app.post_json("/v2/enqueue", &body).await.0, 202);
    let ch = d.channel_of(1).await;
    let create = d
        .fake
        .ok_calls("create_channel")
        .into_iter()
        .find(|c| c.body["type"] == 0)
        .unwrap();
    assert_eq!(
        create.body["permission_overwrites"][0],
        json!({"id": GUILD, "type": 0, "allow": 0, "deny": 1024}),
        "@everyone may not see it"
    );
    let bot = &create.body["permission_overwrites"][1];
    assert_eq!(
        (bot["id"].as_str(), bot["type"].as_u64()),
        (Some(BOT_USER), Some(1))
    );
    assert_eq!(
        bot["allow"].as_u64().unwrap() & 1024,
        1024,
        "the bot sees it"
    );
    let overwrites = |d: &Discord| d.fake.channel(&ch).unwrap()["permission_overwrites"].clone();
    let allowed = |o: &Value, user: &str| {
        o.as_array().unwrap().iter().any(|w| {
            w["id"] == user && w["allow"].as_str().unwrap().parse::<u64>().unwrap() & 1024 == 1024
        })
    };
    assert!(allowed(&overwrites(&d), ALICE), "{}", overwrites(&d));
    assert!(!allowed(&overwrites(&d), BOB));
    // Escalating pages bob: he is let in too.
    let (text, _) = d
        .say(ALICE, &ch, "incident", sub("escalate", json!([])))
        .await;
    assert!(text.contains("escalated INC-1"), "{text}");
    d.fake
        .wait_until("bob's overwrite", |f| {
            f.channel(&ch).unwrap()["permission_overwrites"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["id"] == BOB)
        })
        .await;
    assert!(d.fake.take_violations().is_empty());
    // A SEV2 stays visible to the server.
    trigger(&d.app, "pay").await;
    let public = d.channel_of(2).await;
    assert!(
        d.fake.channel(&public).unwrap()["permission_overwrites"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["id"] != GUILD),
    );
    d.app.stop().await;
}

#[tokio::test]
async fn a_status_update_is_posted_in_the_discord_status_channel_escaped() {
    let fake = FakeDiscord::start().await;
    let status = fake.add_channel(0, "payments-status", None);
    let config = format!(
        r#"{base}
[[services]]
name = "shop"
escalation_policy = "payments"
status_channel = "{status}"
[[integrations]]
name = "shop-pd"
kind = "pagerduty"
key = "shop-discord-key"
service = "shop"
"#,
        base = discord_config(&fake, &DEFAULT),
    );
    let app = spawn_app_with(Arc::new(SystemClock), Some("payments"), &config).await;
    app.start_background();
    let d = Discord { app, fake };
    let body = json!({"routing_key": "shop-discord-key", "event_action": "trigger", "dedup_key": "c",
        "payload": {"summary": "Checkout *down*", "source": "db-7", "severity": "critical"}});
    let (s, b) = d.app.post_json("/v2/enqueue", &body).await;
    assert_eq!(s, 202, "{b}");
    let ch = d.channel_of(1).await;
    let (reply, ephemeral) = d
        .say(
            ALICE,
            &ch,
            "incident",
            sub(
                "update",
                json!([opt("text", "Rolled back @everyone; watching.")]),
            ),
        )
        .await;
    assert!(ephemeral);
    assert_eq!(
        reply,
        "Status update posted on INC-1 (to 1 status channel)."
    );
    d.fake
        .wait_until("the status channel post", |f| {
            !f.messages(&status).is_empty()
        })
        .await;
    let content = d.fake.messages(&status)[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        content.starts_with("**Status update: INC-1 Checkout \\*down\\* \\(SEV1, triggered\\)**\n"),
        "{content}"
    );
    // Alert text and the update never ping anyone.
    assert!(!content.contains("@everyone"), "{content}");
    assert!(d.fake.take_violations().is_empty());
    d.app.stop().await;
}
