//! One-time sign-in links to the console: `/incident login` answers the
//! asker alone with a link, the sign-in page emails one; each works once,
//! before it expires, signs in as the person who asked with their scope,
//! and never works as an API token.

use crate::common::fake_slack::FakeSlack;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::slack::{Slack, slack_config};
use std::sync::Arc;
use std::time::Duration;
use tocsin::clock::{Clock, ManualClock, SystemClock};

const CONSOLE: &str = r#"
[console]
enabled = true
session_key = "sign-in-test-key-0123456789abcdef0123"
session_ttl = "1h"
url = "http://console.internal.example/"
link_ttl = "5m"
"#;

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The link in a message, made to point at the test server (the config's
/// `[console] url` is where a real browser would go).
fn link_in(app: &TestApp, text: &str) -> String {
    let at = text
        .find("http://console.internal.example/login/link?code=")
        .unwrap_or_else(|| panic!("no sign-in link in {text}"));
    let url: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '|')
        .collect();
    url.replace("http://console.internal.example/", &app.url("/"))
}

/// A quoted-printable body as a mail client reads it: soft line breaks
/// joined, `=XX` decoded.
fn quoted_printable(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn code_of(link: &str) -> String {
    link.split("code=").nth(1).unwrap().to_string()
}

/// Opens the link as a browser does: the GET only asks; the POST of its
/// form signs in. Returns the POST's status and the session cookie.
async fn follow(app: &TestApp, link: &str) -> (u16, Option<String>, String) {
    let http = browser();
    let page = http.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers().get("set-cookie").is_none(),
        "a GET signs nobody in"
    );
    let page = page.text().await.unwrap();
    let code = code_of(link);
    assert!(
        page.contains(&format!(
            r#"<form method="post" action="/login/link" class="login"><input type="hidden" name="code" value="{code}">"#
        )),
        "{page}"
    );
    let resp = http
        .post(app.url("/login/link"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string());
    (status, cookie, resp.text().await.unwrap())
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let resp = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn slack_with(clock: Arc<ManualClock>, console: &str) -> Slack {
    let fake = FakeSlack::start().await;
    let config = format!("{}{console}", slack_config(&fake));
    let app = spawn_app_with(clock, Some("payments"), &config).await;
    app.start_background();
    Slack { app, fake }
}

#[tokio::test]
async fn incident_login_on_slack_answers_the_asker_alone_with_a_link_that_works_once() {
    // Slack signs with the real time; the clock starts there and is moved
    // by hand to expire links.
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let s = slack_with(clock.clone(), CONSOLE).await;
    let reply = s
        .ask("U0BOB", "C0GENERAL", "/incident", "login", "l1")
        .await;
    assert_eq!(reply["response_type"], "ephemeral", "{reply}");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("Your sign-in link to the tocsin console, as bob. It works once, within 5m; do not share it:\n<http://console.internal.example/login/link?code=tsn_"),
        "{text}"
    );
    let link = link_in(&s.app, text);

    // The code is no API token.
    let (status, _) = s.app.get_as("/v1/incidents", Some(&code_of(&link))).await;
    assert_eq!(status, 401);

    let (status, cookie, _) = follow(&s.app, &link).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    let (status, incidents) = page(&s.app, &cookie, "/incidents").await;
    assert_eq!(status, 200);
    assert!(incidents.contains("bob"), "{incidents}");
    // bob is no [chat] admin: the link's session has [console] link_scope
    // (write), so he may act but not edit schedules.
    let (_, schedule) = page(&s.app, &cookie, "/schedules/primary").await;
    assert!(!schedule.contains("Add override"), "{schedule}");

    // A second use signs nobody in.
    let (status, cookie2, body) = follow(&s.app, &link).await;
    assert_eq!(status, 401);
    assert!(cookie2.is_none());
    assert!(
        body.contains("That sign-in link was used already; ask for a new one."),
        "{body}"
    );

    // The sign-in is on the token list: who, how, when; revoking it signs
    // the session out.
    let (_, tokens) = s.app.get("/v1/tokens").await;
    let rec = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["created_by"] == "sign-in:slack")
        .unwrap_or_else(|| panic!("{tokens}"))
        .clone();
    assert_eq!(rec["user"], "bob");
    assert_eq!(rec["scope"], "write");
    let id = rec["id"].as_str().unwrap();
    assert_eq!(rec["sign_in"]["via"], "slack", "{rec}");
    assert!(rec["sign_in"]["used_at"].is_string(), "{rec}");
    s.app.service.revoke_token(id, "test").await.unwrap();
    let (status, _) = page(&s.app, &cookie, "/incidents").await;
    assert_eq!(status, 303, "a revoked sign-in is signed out");

    // alice is a [chat] admin: her session may edit schedules.
    let reply = s
        .ask("U0ALICE", "C0GENERAL", "/incident", "login", "l2")
        .await;
    let (status, cookie, _) =
        follow(&s.app, &link_in(&s.app, reply["text"].as_str().unwrap())).await;
    assert_eq!(status, 303);
    let (_, schedule) = page(&s.app, &cookie.unwrap(), "/schedules/primary").await;
    assert!(schedule.contains("Add override"), "{schedule}");

    // A link not used within link_ttl has expired.
    let reply = s
        .ask("U0ALICE", "C0GENERAL", "/incident", "login", "l3")
        .await;
    let late = link_in(&s.app, reply["text"].as_str().unwrap());
    clock.advance(chrono::Duration::minutes(5));
    let (status, cookie, body) = follow(&s.app, &late).await;
    assert_eq!((status, cookie), (401, None));
    assert!(body.contains("That sign-in link has expired"), "{body}");

    // A made-up or mangled code is refused the same way.
    let fake = format!("{}0", code_of(&late));
    let resp = browser()
        .post(s.app.url("/login/link"))
        .form(&[("code", fake.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("not one tocsin made"));
    s.app.stop().await;
}

#[tokio::test]
async fn without_a_console_url_there_is_no_link_and_strangers_get_none() {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let s = slack_with(
        clock,
        "[console]\nenabled = true\nsession_key = \"sign-in-test-key-0123456789abcdef0123\"\n",
    )
    .await;
    let reply = s
        .ask("U0BOB", "C0GENERAL", "/incident", "login", "n1")
        .await;
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("No sign-in link: sign-in links need the console: set [console] enabled = true and [console] url"),
        "{reply}"
    );
    // Someone who is no tocsin user gets no link either.
    let reply = s
        .ask("U0STRANGER", "C0GENERAL", "/incident", "login", "n2")
        .await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("You are not a tocsin user"),
        "{reply}"
    );
    let (_, tokens) = s.app.get("/v1/tokens").await;
    assert_eq!(
        tokens["tokens"],
        serde_json::json!([]),
        "no link was stored"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn the_sign_in_page_emails_a_link_and_tells_nobody_who_the_users_are() {
    let smtp = SmtpSink::start().await;
    let clock = Arc::new(ManualClock::new("2026-12-03T10:00:00Z".parse().unwrap()));
    let config = format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
from = "tocsin@example.test"
tls = "none"
[[users]]
name = "erin"
email = "erin@example.test"
[[users]]
name = "frank"
{CONSOLE}"#,
        port = smtp.port
    );
    let app = spawn_app_with(clock.clone(), None, &config).await;
    let http = browser();
    let form = http
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains(r#"<form method="post" action="/login/email" class="login">"#),
        "{form}"
    );
    assert!(
        !form.contains("/incident login"),
        "no chat is configured: {form}"
    );

    let ask = |who: &'static str| {
        let http = http.clone();
        let url = app.url("/login/email");
        async move {
            let resp = http.post(url).form(&[("who", who)]).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    // By email address, any case.
    let (status, body) = ask("Erin@Example.test").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("If Erin@Example.test is a tocsin user with an email address, a sign-in link is on its way. It works once, within 5m."),
        "{body}"
    );
    let mail = {
        let mut mails = Vec::new();
        for _ in 0..200 {
            mails = smtp.mails.lock().clone();
            if !mails.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(mails.len(), 1, "{mails:?}");
        mails[0].clone()
    };
    assert_eq!(mail.to, ["erin@example.test"]);
    assert!(
        mail.data
            .contains("Subject: Your tocsin console sign-in link"),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("Content-Transfer-Encoding: quoted-printable")
    );
    let body = quoted_printable(&mail.data);
    assert!(
        body.contains("asked to sign in to the tocsin console as erin."),
        "{body}"
    );
    let (status, cookie, _) = follow(&app, &link_in(&app, &body)).await;
    assert_eq!(status, 303);
    let (status, incidents) = page(&app, &cookie.unwrap(), "/incidents").await;
    assert_eq!(status, 200);
    assert!(incidents.contains("erin"), "{incidents}");

    // A stranger, a user without email, and erin again within the minute
    // all get the same answer, and no mail.
    for who in ["mallory", "frank", "erin"] {
        let (status, body) = ask(who).await;
        assert_eq!(status, 200);
        assert!(
            body.contains(&format!("If {who} is a tocsin user")),
            "{body}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.mails.lock().len(), 1, "no more mail");
    // A minute later erin may ask again.
    clock.advance(chrono::Duration::minutes(1));
    ask("erin").await;
    for _ in 0..200 {
        if smtp.mails.lock().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(smtp.mails.lock().len(), 2);

    // An empty name is a clear 400.
    let resp = http
        .post(app.url("/login/email"))
        .form(&[("who", " ")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // A link without a code says so.
    let resp = http.get(app.url("/login/link")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("has no code"));
    app.stop().await;
}
