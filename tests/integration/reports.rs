//! The pages report: pages per person, and how many outside working hours,
//! from the stored pages, as the API (JSON, CSV, text, SVG), the console
//! and `tocsin report --pages` show them.

use crate::common::receiver::Receiver;
use crate::common::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::sync::Arc;
use tocsin::access::Scope;
use tocsin::clock::ManualClock;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// alice works in UTC (the default), bob in New York; both are paged by
/// log lines (bob twice, the second after 2 minutes), the first step also
/// pages a webhook, which is nobody's page.
fn config(recv: &Receiver) -> String {
    format!(
        r#"
[[users]]
name = "alice"
[[users]]
name = "bob"
time_zone = "America/New_York"
contact_methods = [{{ kind = "log" }}, {{ kind = "log", after = "2m" }}]
[[webhooks]]
name = "ops"
url = "{ops}"
[[escalation_policies]]
name = "payments"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}, {{ webhook = "ops" }}]
delay = "5m"
[[escalation_policies.steps]]
targets = [{{ user = "bob" }}]
delay = "10m"
[console]
enabled = true
session_key = "console-test-key-0123456789abcdef0123"
"#,
        ops = recv.url("hooks/ops")
    )
}

async fn ack(app: &TestApp, id: &str) {
    let (s, b) = app
        .post_with_token(
            &format!("/v1/incidents/{id}/acknowledge"),
            Some(API_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

async fn trigger(app: &TestApp, key: &str) {
    let (s, b) = app.pd("trigger", key, key).await;
    assert_eq!(s, 202, "{b}");
    app.tick().await;
}

async fn get_text(app: &TestApp, path: &str) -> (u16, String, String) {
    let resp = app
        .http
        .get(app.url(path))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

/// Pages of a week, some before nine, one on a Saturday, one at 03:55 in
/// New York, counted per person on their own clock; an older incident's
/// pages fall outside the window and the webhook's page is nobody's.
#[tokio::test]
async fn pages_per_person_and_outside_working_hours() {
    let recv = Receiver::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-20T10:00:00Z")));
    let app = spawn_app_with(clock.clone(), Some("payments"), &config(&recv)).await;

    // INC-1, ten days before the window: alice paged, not counted.
    trigger(&app, "old").await;
    ack(&app, "INC-1").await;

    // INC-2, Monday 08:50 UTC: alice before nine; at 08:55 step 2 pages
    // bob (03:55 in New York), and his second method at 08:57.
    clock.set(at("2026-11-30T08:50:00Z"));
    trigger(&app, "early").await;
    clock.advance(Duration::minutes(5));
    app.tick().await;
    clock.advance(Duration::minutes(2));
    app.tick().await;
    ack(&app, "INC-2").await;

    // INC-3, Monday 09:00 sharp: alice at work.
    clock.set(at("2026-11-30T09:00:00Z"));
    trigger(&app, "nine").await;
    ack(&app, "INC-3").await;

    // INC-4, Monday 14:00: alice at work; bob at 14:05 (09:05 in New
    // York), acknowledged before his second method.
    clock.set(at("2026-11-30T14:00:00Z"));
    trigger(&app, "afternoon").await;
    clock.advance(Duration::minutes(5));
    app.tick().await;
    ack(&app, "INC-4").await;
    clock.advance(Duration::minutes(5));
    app.tick().await;

    // INC-5, Saturday noon: alice, at the weekend.
    clock.set(at("2026-12-05T12:00:00Z"));
    trigger(&app, "saturday").await;
    ack(&app, "INC-5").await;
    assert!(
        recv.at("hooks/ops").len() >= 5,
        "the webhook was paged too: {:?}",
        recv.received()
    );

    let (s, body) = app.get("/v1/reports/pages?since=7d").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["since"], "2026-11-28T12:00:00Z");
    assert_eq!(body["until"], "2026-12-05T12:00:00Z");
    assert_eq!(body["working_hours"], "09:00-18:00");
    assert_eq!(
        body["working_days"],
        json!(["mon", "tue", "wed", "thu", "fri"])
    );
    assert_eq!(body["default_time_zone"], "UTC");
    assert_eq!(
        (body["pages"].as_u64(), body["outside_hours"].as_u64()),
        (Some(7), Some(4))
    );
    assert_eq!(
        body["rows"],
        json!([
            {"user": "alice", "time_zone": "UTC", "pages": 4, "outside_hours": 2},
            {"user": "bob", "time_zone": "America/New_York", "pages": 3, "outside_hours": 2},
        ]),
        "{body:#}"
    );

    let (s, ctype, csv) = get_text(&app, "/v1/reports/pages?since=7d&format=csv").await;
    assert_eq!(s, 200);
    assert_eq!(ctype, "text/csv; charset=utf-8");
    assert_eq!(
        csv,
        "user,time_zone,pages,outside_hours\n\
         alice,UTC,4,2\n\
         bob,America/New_York,3,2\n"
    );

    let (s, _, text) = get_text(&app, "/v1/reports/pages?since=7d&format=text").await;
    assert_eq!(s, 200);
    assert!(
        text.contains("alice  UTC                   4              2\n"),
        "{text}"
    );
    assert!(
        text.contains("bob    America/New_York      3              2\n"),
        "{text}"
    );

    let (s, ctype, svg) = get_text(&app, "/v1/reports/pages?since=7d&format=svg").await;
    assert_eq!(s, 200);
    assert_eq!(ctype, "image/svg+xml");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let labels: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for label in ["alice", "bob", "4 (2 outside hours)", "3 (2 outside hours)"] {
        assert!(labels.contains(&label), "{label} not in {labels:?}");
    }

    // The whole history: INC-1's page (a Friday at 10:00) is inside hours.
    let (_, all) = app.get("/v1/reports/pages?since=30d").await;
    assert_eq!(all["rows"][0]["pages"], 5, "{all:#}");
    assert_eq!(all["rows"][0]["outside_hours"], 2, "{all:#}");

    // The console shows the same table and chart, with the CSV a link away.
    let token = app
        .service
        .create_token("alice", Scope::Read, "test")
        .await
        .unwrap()
        .1;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(app.url("/login"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(app.url("/reports?since=7d"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>Pages per person</h2>"), "{page}");
    assert!(
        page.contains("<tr><td>alice</td><td>UTC</td><td>4</td><td>2</td></tr><tr><td>bob</td><td>America/New_York</td><td>3</td><td>2</td></tr>"),
        "{page}"
    );
    assert!(page.contains(">3 (2 outside hours)</text>"), "{page}");
    assert!(
        page.contains(r#"<a href="/reports/pages.csv?since=7d">Download CSV</a>"#),
        "{page}"
    );
    let resp = http
        .get(app.url("/reports/pages.csv?since=7d"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("tocsin-pages-per-person.csv")
    );
    assert_eq!(resp.text().await.unwrap(), csv);

    // And `tocsin report --pages`, as a table and as CSV.
    let url = app.url("");
    let run = move |extra: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
                .args([
                    "report", "--pages", "--since", "7d", "--url", &url, "--token", API_TOKEN,
                ])
                .args(extra)
                .env_remove("TOCSIN_CONFIG")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    let table = run(&[]).await.unwrap();
    assert!(
        table.contains("bob    America/New_York      3              2\n"),
        "{table}"
    );
    assert!(table.contains("TOTAL"), "{table}");
    assert_eq!(run(&["--csv"]).await.unwrap(), csv);
    app.stop().await;
}

/// `[reports]` moves the hours and the default clock; the endpoint takes
/// the same window and formats as the response report, with a read token.
#[tokio::test]
async fn working_hours_and_time_zone_come_from_the_config() {
    let clock = Arc::new(ManualClock::new(at("2026-11-30T01:00:00Z")));
    let extra = r#"
[[users]]
name = "alice"
[[escalation_policies]]
name = "payments"
[[escalation_policies.steps]]
targets = [{ user = "alice" }]
delay = "5m"
[reports]
time_zone = "Asia/Tokyo"
working_hours = "09:00-19:00"
working_days = ["mon", "tue", "wed", "thu", "fri", "sat"]
"#;
    let app = spawn_app_with(clock.clone(), Some("payments"), extra).await;
    // 10:00 on a Monday in Tokyo: at work.
    trigger(&app, "morning").await;
    ack(&app, "INC-1").await;
    // 19:00 in Tokyo: the end is not included.
    clock.set(at("2026-11-30T10:00:00Z"));
    trigger(&app, "evening").await;
    ack(&app, "INC-2").await;
    // Saturday 10:00 in Tokyo: a working day here.
    clock.set(at("2026-12-05T01:00:00Z"));
    trigger(&app, "saturday").await;
    ack(&app, "INC-3").await;

    let (s, body) = app.get("/v1/reports/pages").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["default_time_zone"], "Asia/Tokyo");
    assert_eq!(body["working_hours"], "09:00-19:00");
    assert_eq!(
        body["rows"],
        json!([{"user": "alice", "time_zone": "Asia/Tokyo", "pages": 3, "outside_hours": 1}])
    );

    let (s, b) = app.get("/v1/reports/pages?since=banana").await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = app.get("/v1/reports/pages?since=400d").await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = app.get("/v1/reports/pages?format=pdf").await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = app.get_as("/v1/reports/pages", None).await;
    assert_eq!(s, 401);
    let read = app
        .service
        .create_token("alice", Scope::Read, "test")
        .await
        .unwrap()
        .1;
    let (s, _) = app.get_as("/v1/reports/pages?since=1d", Some(&read)).await;
    assert_eq!(s, 200);
    app.stop().await;
}
