//! Pages that reach a phone: SMS and calls through a fake Twilio, push
//! through a fake ntfy, acknowledged from the phone; Twilio's requests
//! verified by signature; Twilio's errors retried or given up on.

use crate::common::fake_ntfy::{FakeNtfy, NTFY_TOKEN};
use crate::common::fake_twilio::{FROM, FakeTwilio, Script, TwilioSide, twiml_message};
use crate::common::*;
use crate::paging::t0;
use chrono::Duration;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin::clock::ManualClock;

const PUBLIC: &str = "https://tocsin.example";
const ALICE: &str = "+15551230001";
const BOB: &str = "+15551230002";
const DAVE: &str = "+15551230004";

fn phone_config(twilio: &FakeTwilio, ntfy: &FakeNtfy, twilio_more: &str) -> String {
    format!(
        r#"
[notify]
initial_backoff = "1s"
max_backoff = "10s"
give_up_after = "2m"
request_timeout = "2s"

{twilio}

[ntfy]
url = "{ntfy}"
token = "{NTFY_TOKEN}"
action_secret = "push-action-secret-0123456789"

[[users]]
name = "alice"
phone = "{ALICE}"
contact_methods = [{{ kind = "sms" }}, {{ kind = "voice", after = "5m" }}]

[[users]]
name = "bob"
phone = "{BOB}"
contact_methods = [{{ kind = "voice" }}]

[[users]]
name = "carol"
ntfy_topic = "carol-pages"
contact_methods = [{{ kind = "push" }}]

[[users]]
name = "dave"
phone = "{DAVE}"
contact_methods = [{{ kind = "sms" }}, {{ kind = "log", after = "10m" }}]

[[escalation_policies]]
name = "sms-first"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}]
delay = "5m"
[[escalation_policies.steps]]
targets = [{{ user = "bob" }}]
delay = "10m"

[[escalation_policies]]
name = "voice-first"
[[escalation_policies.steps]]
targets = [{{ user = "bob" }}]
delay = "10m"

[[escalation_policies]]
name = "push-first"
[[escalation_policies.steps]]
targets = [{{ user = "carol" }}]
delay = "10m"

[[escalation_policies]]
name = "dave-first"
repeat = 3
[[escalation_policies.steps]]
targets = [{{ user = "dave" }}]
delay = "1m"
"#,
        twilio = twilio.config(twilio_more),
        ntfy = ntfy.url(),
    )
}

struct Phones {
    app: TestApp,
    clock: ManualClock,
    twilio: FakeTwilio,
    ntfy: FakeNtfy,
    side: TwilioSide,
}

async fn phones(policy: &str) -> Phones {
    phones_with(policy, "").await
}

async fn phones_with(policy: &str, twilio_more: &str) -> Phones {
    let twilio = FakeTwilio::start().await;
    let ntfy = FakeNtfy::start().await;
    let clock = ManualClock::new(t0());
    let app = spawn_app_with_server(
        Arc::new(clock.clone()),
        Some(policy),
        &phone_config(&twilio, &ntfy, twilio_more),
        test_limits(),
        &format!("public_url = \"{PUBLIC}\""),
    )
    .await;
    Phones {
        app,
        clock,
        twilio,
        ntfy,
        side: TwilioSide::new(PUBLIC),
    }
}

impl Phones {
    fn base(&self) -> String {
        format!("http://{}", self.app.addr)
    }

    /// Opens a payments incident (PagerDuty event, `severity`) and runs
    /// its first step; returns its key.
    async fn trigger(&self, dedup: &str, title: &str, severity: &str) -> String {
        let (status, body) = self
            .app
            .post_json(
                "/v2/enqueue",
                &json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": dedup,
                        "payload": {"summary": title, "source": "test", "severity": severity}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        self.app.tick().await;
        let incidents = self.app.incidents().await;
        incidents.iter().find(|i| i["dedup_key"] == dedup).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn timeline(&self, id: &str) -> Value {
        self.app.incident(id).await["timeline"].clone()
    }

    async fn minutes(&self, n: i64) {
        for _ in 0..n {
            self.clock.advance(Duration::minutes(1));
            self.app.tick().await;
        }
    }
}

fn entries<'a>(timeline: &'a Value, kind: &str) -> Vec<&'a Value> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

#[tokio::test]
async fn an_sms_page_is_acknowledged_by_replying_1_and_escalation_stops() {
    let p = phones("sms-first").await;
    let id = p.trigger("db", "Checkout is down", "critical").await;
    let sms = p.twilio.messages_to(ALICE);
    assert_eq!(sms.len(), 1, "{sms:?}");
    let body = sms[0].get("Body");
    assert_eq!(
        body,
        "INC-1 SEV1 payments: Checkout is down. Reply 1 to ack, 2 to resolve"
    );
    assert!(body.chars().count() <= 160);
    assert_eq!(sms[0].get("From"), FROM);
    let callback = sms[0].get("StatusCallback").to_string();
    assert!(
        callback.starts_with(&format!("{PUBLIC}/twilio/status?key=")),
        "{callback}"
    );

    // Twilio reports the SMS delivered, then alice answers.
    let a = p
        .side
        .post(
            &p.base(),
            &callback,
            &[
                ("MessageSid", &sms[0].sid),
                ("MessageStatus", "delivered"),
                ("To", ALICE),
                ("From", FROM),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = p.side.sms(&p.base(), ALICE, " 1 ").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("text/xml"), "{}", a.content_type);
    let said = twiml_message(&a.body);
    assert!(
        said.starts_with("Acknowledged INC-1: Checkout is down."),
        "{said}"
    );

    let inc = p.app.incident(&id).await;
    assert_eq!(inc["incident"]["status"], "acknowledged");
    let timeline = p.timeline(&id).await;
    let report = timeline_entry(&timeline, "delivery_report");
    assert_eq!(report["status"], "delivered");
    assert_eq!(report["reached"], true);
    let ack = timeline_entry(&timeline, "acknowledged");
    assert_eq!(
        ack["actor"],
        json!({"kind": "user", "name": {"user": "alice", "principal": format!("sms:{ALICE}")}})
    );

    // Nobody else is paged: not alice's call at 5 minutes, not bob at step 2.
    p.minutes(20).await;
    assert_eq!(p.twilio.sent().len(), 1, "{:?}", p.twilio.sent());

    // Replying 2 resolves it.
    let said = twiml_message(&p.side.sms(&p.base(), ALICE, "resolve").await.body);
    assert!(said.starts_with("Resolved INC-1"), "{said}");
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "resolved");
    p.app.stop().await;
}

#[tokio::test]
async fn unsigned_or_tampered_twilio_requests_get_403_and_change_nothing() {
    let p = phones("sms-first").await;
    let id = p.trigger("db", "Checkout is down", "critical").await;
    let url = format!("{PUBLIC}/twilio/sms");
    let reply = [("From", ALICE), ("To", FROM), ("Body", "1")];
    // No signature.
    let a = p.side.post_as(&p.base(), &url, &reply, Some("")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    // Signed for "2", sent saying "1".
    let other = crate::common::fake_twilio::twilio_signature(
        crate::common::fake_twilio::AUTH_TOKEN,
        &url,
        &[("From", ALICE), ("To", FROM), ("Body", "2")],
    );
    let a = p.side.post_as(&p.base(), &url, &reply, Some(&other)).await;
    assert_eq!(a.status, 403);
    // Signed with another account's token.
    let wrong = crate::common::fake_twilio::twilio_signature("not-the-token", &url, &reply);
    let a = p.side.post_as(&p.base(), &url, &reply, Some(&wrong)).await;
    assert_eq!(a.status, 403);
    // Signed over another host than public_url.
    let a = p
        .side
        .post_as(
            &p.base(),
            &url,
            &reply,
            Some(&crate::common::fake_twilio::twilio_signature(
                crate::common::fake_twilio::AUTH_TOKEN,
                "https://elsewhere.example/twilio/sms",
                &reply,
            )),
        )
        .await;
    assert_eq!(a.status, 403);
    // A status callback with a bad signature records nothing.
    let callback = p.twilio.messages_to(ALICE)[0]
        .get("StatusCallback")
        .to_string();
    let a = p
        .side
        .post_as(
            &p.base(),
            &callback,
            &[("MessageStatus", "failed")],
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        )
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "triggered");
    assert!(entries(&p.timeline(&id).await, "delivery_report").is_empty());
    // The same reply, signed, works.
    let a = p.side.post(&p.base(), &url, &reply).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        p.app.incident(&id).await["incident"]["status"],
        "acknowledged"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn replies_from_strangers_are_refused_politely_and_several_pages_ask_which() {
    let p = phones("sms-first").await;
    let first = p.trigger("db", "Database down", "critical").await;
    let second = p.trigger("cache", "Cache cold", "error").await;
    assert_eq!(p.twilio.messages_to(ALICE).len(), 2);

    let said = twiml_message(&p.side.sms(&p.base(), "+15559990000", "1").await.body);
    assert!(said.contains("not registered with tocsin"), "{said}");

    let said = twiml_message(&p.side.sms(&p.base(), ALICE, "1").await.body);
    assert!(
        said.contains("2 open pages: INC-2, INC-1") && said.contains("'ack 2'"),
        "{said}"
    );
    assert_eq!(
        p.app.incident(&first).await["incident"]["status"],
        "triggered"
    );

    let said = twiml_message(&p.side.sms(&p.base(), ALICE, "what?").await.body);
    assert!(said.contains("reply 1 to acknowledge"), "{said}");

    let said = twiml_message(&p.side.sms(&p.base(), ALICE, "ack 2").await.body);
    assert!(said.starts_with("Acknowledged INC-2"), "{said}");
    assert_eq!(
        p.app.incident(&second).await["incident"]["status"],
        "acknowledged"
    );
    // Now only INC-1 waits for an acknowledgement: "1" means it.
    let said = twiml_message(&p.side.sms(&p.base(), ALICE, "1").await.body);
    assert!(said.starts_with("Acknowledged INC-1"), "{said}");
    let said = twiml_message(&p.side.sms(&p.base(), ALICE, "ack 1").await.body);
    assert_eq!(said, "INC-1 is already acknowledged.");
    p.app.stop().await;
}

#[tokio::test]
async fn an_undelivered_sms_brings_the_call_forward_and_a_call_answered_with_1_acknowledges() {
    let p = phones("sms-first").await;
    let id = p
        .trigger("db", "Checkout & <payments> down", "critical")
        .await;
    assert!(p.twilio.calls_to(ALICE).is_empty());
    let sms = &p.twilio.messages_to(ALICE)[0];
    let a = p
        .side
        .post(
            &p.base(),
            sms.get("StatusCallback"),
            &[
                ("MessageSid", &sms.sid),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30003"),
            ],
        )
        .await;
    assert_eq!(a.status, 200);
    // The call was due at 5 minutes; it goes now.
    p.app.tick().await;
    let calls = p.twilio.calls_to(ALICE);
    assert_eq!(calls.len(), 1, "{:?}", p.twilio.sent());
    let timeline = p.timeline(&id).await;
    let report = timeline_entry(&timeline, "delivery_report");
    assert_eq!(report["status"], "undelivered");
    assert_eq!(report["reached"], false);
    assert_eq!(report["detail"], "Twilio error 30003");

    // The TwiML is a Response with a one-digit Gather posting to tocsin.
    let twiml = calls[0].get("Twiml");
    let doc = roxmltree::Document::parse(twiml).expect("the call's TwiML is XML");
    assert_eq!(doc.root_element().tag_name().name(), "Response");
    let gather = doc
        .descendants()
        .find(|n| n.has_tag_name("Gather"))
        .expect("a Gather");
    assert_eq!(gather.attribute("numDigits"), Some("1"));
    let action = gather.attribute("action").unwrap().to_string();
    assert!(
        action.starts_with(&format!("{PUBLIC}/twilio/voice?key=")),
        "{action}"
    );
    let say = gather.children().find(|n| n.has_tag_name("Say")).unwrap();
    let text = say.text().unwrap();
    assert!(
        text.contains("Checkout & <payments> down") && text.contains("Press 1 to acknowledge"),
        "{text}"
    );
    assert_eq!(calls[0].get("MachineDetection"), "Enable");

    let press = |digits: &'static str| {
        let action = action.clone();
        let side = &p.side;
        let base = p.base();
        async move {
            side.post(
                &base,
                &action,
                &[
                    ("CallSid", "CA00000000000000000000000000000001"),
                    ("From", FROM),
                    ("To", ALICE),
                    ("CallStatus", "in-progress"),
                    ("Digits", digits),
                ],
            )
            .await
        }
    };
    // A key that does nothing repeats the prompt.
    let a = press("7").await;
    assert_eq!(a.status, 200);
    let again = roxmltree::Document::parse(&a.body).unwrap();
    assert!(
        again.descendants().any(|n| n.has_tag_name("Gather")),
        "{}",
        a.body
    );
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "triggered");

    let a = press("1").await;
    assert!(
        twiml_message(&a.body).starts_with("Acknowledged"),
        "{}",
        a.body
    );
    let inc = p.app.incident(&id).await;
    assert_eq!(inc["incident"]["status"], "acknowledged");
    let ack = timeline_entry(&inc["timeline"], "acknowledged");
    assert_eq!(ack["actor"]["name"]["principal"], format!("voice:{ALICE}"));
    p.minutes(20).await;
    assert!(p.twilio.calls_to(BOB).is_empty(), "escalation stopped");
    p.app.stop().await;
}

#[tokio::test]
async fn an_unanswered_call_is_recorded_and_the_escalation_goes_on() {
    let p = phones("voice-first").await;
    let id = p.trigger("db", "Checkout is down", "critical").await;
    let call = p.twilio.calls_to(BOB)[0].clone();
    for (status, answered_by, word) in [
        ("no-answer", "", "no-answer"),
        (
            "completed",
            "machine_end_beep",
            "answered by machine_end_beep",
        ),
    ] {
        let mut params = vec![("CallSid", call.sid.as_str()), ("CallStatus", status)];
        if !answered_by.is_empty() {
            params.push(("AnsweredBy", answered_by));
        }
        let a = p
            .side
            .post(&p.base(), call.get("StatusCallback"), &params)
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let timeline = p.timeline(&id).await;
        let last = entries(&timeline, "delivery_report").pop().unwrap().clone();
        assert_eq!(last["status"], word);
        assert_eq!(last["reached"], false);
    }
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "triggered");
    // Pressing 3 escalates: with one step, there is nothing further.
    let gather_action = {
        let doc = roxmltree::Document::parse(call.get("Twiml")).unwrap();
        doc.descendants()
            .find(|n| n.has_tag_name("Gather"))
            .unwrap()
            .attribute("action")
            .unwrap()
            .to_string()
    };
    let a = p
        .side
        .post(&p.base(), &gather_action, &[("To", BOB), ("Digits", "3")])
        .await;
    assert!(
        twiml_message(&a.body).contains("last step of its escalation policy"),
        "{}",
        a.body
    );
    let a = p
        .side
        .post(&p.base(), &gather_action, &[("To", BOB), ("Digits", "2")])
        .await;
    assert!(twiml_message(&a.body).starts_with("Resolved"), "{}", a.body);
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "resolved");
    // The summary lists the call nobody answered.
    let summary = p.app.get_text(&format!("/v1/incidents/{id}/summary")).await;
    assert!(
        summary.contains("voice") && summary.contains("no-answer"),
        "{summary}"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn twilio_errors_are_retried_or_given_up_with_the_next_method_brought_forward() {
    // 20429 twice, then a 503: retried (after Twilio's pace, then with
    // backoff), then sent.
    let p = phones("dave-first").await;
    p.twilio.script(DAVE, Script::RateLimited(2));
    p.twilio.script(DAVE, Script::Unavailable(1));
    let id = p.trigger("a", "Disk full", "error").await;
    assert!(p.twilio.messages_to(DAVE).is_empty());
    for _ in 0..3 {
        p.clock.advance(Duration::seconds(5));
        p.app.tick().await;
    }
    assert_eq!(p.twilio.messages_to(DAVE).len(), 1);
    let timeline = p.timeline(&id).await;
    let retries = entries(&timeline, "delivery_retry");
    assert_eq!(retries.len(), 3, "{timeline:#}");
    assert!(
        retries[2]["error"].as_str().unwrap().contains("503"),
        "{}",
        retries[2]
    );
    assert!(
        retries[0]["error"].as_str().unwrap().contains("20429"),
        "{}",
        retries[0]
    );
    let paged = timeline_entry(&timeline, "paged");
    assert_eq!(paged["method"], "sms");
    assert_eq!(paged["attempts"], 4);
    assert_eq!(
        p.twilio.refused().iter().filter(|r| r.1 == 20429).count(),
        2
    );
    p.app.stop().await;

    // 21610 (unsubscribed) and 21211 (invalid): given up at once, and
    // dave's next method (log, due at 10 minutes) goes now.
    for (script, code) in [(Script::Unsubscribed, 21610), (Script::Invalid, 21211)] {
        let p = phones("dave-first").await;
        p.twilio.script(DAVE, script);
        let id = p.trigger("a", "Disk full", "error").await;
        let timeline = p.timeline(&id).await;
        let failed = timeline_entry(&timeline, "delivery_failed");
        assert_eq!(failed["method"], "sms");
        assert_eq!(failed["attempts"], 1);
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .contains(&code.to_string()),
            "{failed}"
        );
        let paged = timeline_entry(&timeline, "paged");
        assert_eq!(paged["method"], "log", "{timeline:#}");
        assert!(p.twilio.messages_to(DAVE).is_empty());
        p.app.stop().await;
    }
}

#[tokio::test]
async fn sms_and_calls_are_capped_per_incident() {
    let p = phones_with("dave-first", "max_per_incident = 2").await;
    let id = p.trigger("a", "Disk full", "error").await;
    // Rounds at 0, 1, 2 and 3 minutes: two SMS, then the cap.
    p.minutes(3).await;
    assert_eq!(p.twilio.messages_to(DAVE).len(), 2);
    let timeline = p.timeline(&id).await;
    let failed = timeline_entry(&timeline, "delivery_failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("max_per_incident = 2"),
        "{failed}"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn sms_to_one_number_go_at_most_one_a_second() {
    let p = phones("sms-first").await;
    for k in ["a", "b", "c"] {
        p.app
            .post_json(
                "/v2/enqueue",
                &json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": k,
                        "payload": {"summary": k, "source": "test", "severity": "error"}}),
            )
            .await;
    }
    p.app.tick().await;
    let sms = p.twilio.messages_to(ALICE);
    assert_eq!(sms.len(), 3);
    let mut at: Vec<_> = sms.iter().map(|s| s.at).collect();
    at.sort();
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= std::time::Duration::from_millis(950),
            "two SMS {gap:?} apart"
        );
    }
    p.app.stop().await;
}

#[tokio::test]
async fn a_push_page_is_acknowledged_by_its_button_once() {
    let p = phones("push-first").await;
    let id = p.trigger("db", "Checkout is down", "critical").await;
    let published = p.ntfy.published();
    assert_eq!(published.len(), 1, "{:?}", p.ntfy.refused());
    let msg = &published[0];
    assert_eq!(msg["topic"], "carol-pages");
    assert_eq!(msg["priority"], 5, "SEV1 is urgent");
    assert_eq!(msg["title"], "INC-1 SEV1 payments");
    assert_eq!(msg["message"], "Checkout is down");
    assert_eq!(msg["tags"][0], "rotating_light");
    let actions = msg["actions"].as_array().unwrap();
    let labels: Vec<&str> = actions
        .iter()
        .map(|a| a["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Acknowledge", "Resolve"]);
    assert!(actions.iter().all(|a| a["method"] == "POST"));
    let url = |i: usize| {
        actions[i]["url"]
            .as_str()
            .unwrap()
            .replace(PUBLIC, &p.base())
    };
    let press = |u: String| {
        let http = p.app.http.clone();
        async move {
            let r = http.post(u).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        }
    };

    // Tapping the notification opens the incident's page; it changes nothing.
    let click = msg["click"].as_str().unwrap().replace(PUBLIC, &p.base());
    assert_eq!(click, url(0));
    let page = p.app.http.get(&click).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("INC-1 SEV1: Checkout is down")
            && html.contains("<strong>triggered</strong>"),
        "{html}"
    );
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "triggered");

    // A forged token is refused and changes nothing.
    let ack = url(0);
    let (token_payload, _) = ack.rsplit_once('/').unwrap().1.split_once('.').unwrap();
    let forged = format!("{}/push/{token_payload}.AAAA", p.base());
    assert_eq!(press(forged).await.0, 403);
    assert_eq!(p.app.incident(&id).await["incident"]["status"], "triggered");

    let (status, body) = press(ack.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "acknowledged");
    let inc = p.app.incident(&id).await;
    assert_eq!(inc["incident"]["status"], "acknowledged");
    let entry = timeline_entry(&inc["timeline"], "acknowledged");
    assert_eq!(entry["actor"]["name"]["user"], "carol");
    assert!(
        entry["actor"]["name"]["principal"]
            .as_str()
            .unwrap()
            .starts_with("push:"),
        "{entry}"
    );
    // Once only.
    let (status, body) = press(ack).await;
    assert_eq!(status, 409, "{body}");
    // Past its expiry (24 h), the Resolve button no longer works.
    p.clock.advance(Duration::hours(25));
    let (status, body) = press(url(1)).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(
        p.app.incident(&id).await["incident"]["status"],
        "acknowledged"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn ntfy_refusals_are_retried_or_given_up() {
    let p = phones("push-first").await;
    p.ntfy.rate_limit(1);
    let id = p.trigger("db", "Checkout is down", "error").await;
    assert!(p.ntfy.published().is_empty());
    p.clock.advance(Duration::seconds(2));
    p.app.tick().await;
    let published = p.ntfy.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["priority"], 4, "SEV2");
    let timeline = p.timeline(&id).await;
    let retry = timeline_entry(&timeline, "delivery_retry");
    assert!(retry["error"].as_str().unwrap().contains("429"), "{retry}");
    assert_eq!(p.ntfy.refused(), [42901]);
    p.app.stop().await;
}

#[tokio::test]
async fn notify_test_sends_a_test_sms_call_and_push() {
    let twilio = FakeTwilio::start().await;
    let ntfy = FakeNtfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text_with(
        &dir.path().join("data"),
        "127.0.0.1:0",
        Some("sms-first"),
        &phone_config(&twilio, &ntfy, ""),
    )
    .replacen(
        "[server]\n",
        &format!("[server]\npublic_url = \"{PUBLIC}\"\n"),
        1,
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, text).unwrap();
    let run = |user: &'static str, method: &'static str| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
                .args([
                    "notify", "test", "--user", user, "--method", method, "--config",
                ])
                .arg(&path)
                .output()
                .unwrap()
        })
    };
    let out = run("alice", "sms").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Twilio accepted the test sms"));
    let sms = twilio.messages_to(ALICE);
    assert_eq!(sms.len(), 1);
    assert!(sms[0].get("Body").contains("test page for alice"));

    let out = run("bob", "voice").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let call = &twilio.calls_to(BOB)[0];
    let said = twiml_message(call.get("Twiml"));
    assert!(said.contains("test call for bob"), "{said}");

    let out = run("carol", "push").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ntfy.published()[0]["topic"], "carol-pages");

    // Twilio's refusal is the command's failure.
    twilio.script(ALICE, Script::Unsubscribed);
    let out = run("alice", "sms").await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("21610"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("carol", "sms").await.unwrap();
    assert!(!out.status.success(), "carol has no phone");
}

/// The example config's commented Twilio, ntfy and phone lines, switched
/// on, pass the checks `tocsin check` runs.
#[test]
fn the_example_configs_phone_sections_are_valid_once_uncommented() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tocsin.example.toml"))
        .unwrap();
    let mut out = Vec::new();
    let mut in_block = false;
    let mut alice = false;
    for line in text.lines() {
        if line == "# [twilio]" || line == "# [ntfy]" {
            in_block = true;
        }
        if line.trim().is_empty() {
            in_block = false;
        }
        if line == "name = \"alice\"" {
            alice = true;
        } else if line.starts_with("[[") {
            alice = false;
        }
        if alice && line == "contact_methods = [{ kind = \"log\" }]" {
            continue; // replaced by the commented one below
        }
        let uncomment = in_block
            || (alice
                && ["# phone", "# contact_methods", "# ntfy_topic"]
                    .iter()
                    .any(|p| line.starts_with(p)));
        out.push(match line.strip_prefix("# ") {
            Some(rest) if uncomment => rest.to_string(),
            _ => line.to_string(),
        });
    }
    let text = out.join("\n").replacen(
        "[server]\n",
        "[server]\npublic_url = \"https://tocsin.example.com\"\n",
        1,
    );
    assert!(text.contains("\n[twilio]\n") && text.contains("\n[ntfy]\n"));
    assert!(text.contains("\nphone = \"+15551230001\""), "{text}");
    let env: std::collections::HashMap<String, String> = [
        ("TWILIO_AUTH_TOKEN", "a-real-looking-token-1234"),
        ("TOCSIN_PUSH_SECRET", "0123456789abcdef0123456789abcdef"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = tocsin::config::Config::from_toml_str(&text, &env)
        .unwrap_or_else(|e| panic!("the uncommented example: {e}"));
    assert!(config.twilio.is_some() && config.ntfy.is_some());
    let alice = config.users.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.contact_methods.len(), 2);
}

#[tokio::test]
async fn pressing_3_on_a_call_escalates_to_the_next_step() {
    let p = phones("sms-first").await;
    let id = p.trigger("db", "Checkout is down", "critical").await;
    // alice's SMS fails, so her call goes now.
    let sms = &p.twilio.messages_to(ALICE)[0];
    p.side
        .post(
            &p.base(),
            sms.get("StatusCallback"),
            &[("MessageSid", &sms.sid), ("MessageStatus", "failed")],
        )
        .await;
    p.app.tick().await;
    let call = p.twilio.calls_to(ALICE)[0].clone();
    let doc = roxmltree::Document::parse(call.get("Twiml")).unwrap();
    let action = doc
        .descendants()
        .find(|n| n.has_tag_name("Gather"))
        .unwrap()
        .attribute("action")
        .unwrap()
        .to_string();
    let a = p
        .side
        .post(&p.base(), &action, &[("To", ALICE), ("Digits", "3")])
        .await;
    assert!(
        twiml_message(&a.body).starts_with("Escalated"),
        "{}",
        a.body
    );
    p.app.tick().await;
    assert_eq!(p.twilio.calls_to(BOB).len(), 1, "step 2 calls bob");
    let timeline = p.timeline(&id).await;
    let steps = entries(&timeline, "escalation_step");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["step"], 2);
    assert_eq!(
        steps[1]["actor"]["name"]["principal"],
        format!("voice:{ALICE}")
    );
    p.app.stop().await;
}
