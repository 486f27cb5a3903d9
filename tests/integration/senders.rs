//! What real senders send (`tests/fixtures/senders/`, built from each
//! sender's source, and PagerDuty's and Sumo Logic's published payloads in
//! `../shared/reference/senders/`) gets the status and the incident effect
//! the sender meant.

use crate::common::*;
use serde_json::{Value, json};
use std::sync::Arc;

/// The keys the sender fixtures carry, and PagerDuty's documented example key.
const SENDERS: &str = r#"
[[integrations]]
name = "pd-v2"
kind = "pagerduty"
key = "pd-routing-key"
service = "payments"
[[integrations]]
name = "pd-v1"
kind = "pagerduty"
key = "pd-service-key"
service = "payments"
[[integrations]]
name = "pd-refusals"
kind = "pagerduty"
key = "pd-refusals-key"
service = "payments"
[[integrations]]
name = "am-refusals"
kind = "alertmanager"
key = "am-refusals-key"
service = "api"
[[integrations]]
name = "pd-docs"
kind = "pagerduty"
key = "example-pagerduty-key"
service = "payments"
"#;

async fn app() -> TestApp {
    spawn_app_with(Arc::new(tocsin::clock::SystemClock), None, SENDERS).await
}

/// The same server on a manual clock set to 2026-12-01T10:00:00Z.
async fn manual_app() -> (
    TestApp,
    tocsin::clock::ManualClock,
    chrono::DateTime<chrono::Utc>,
) {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .to_utc();
    let clock = tocsin::clock::ManualClock::new(t0);
    let app = spawn_app_with(Arc::new(clock.clone()), None, SENDERS).await;
    (app, clock, t0)
}

/// Pushes alerts to `/api/v2/alerts` with `key` as bearer, as Prometheus
/// and amtool do: the status and the answer.
async fn push_alerts(app: &TestApp, key: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/api/v2/alerts"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sender(name: &str) -> Vec<u8> {
    fixture(&format!("senders/{name}.json"))
}

fn reference(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/senders")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .request(method, app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn status_of(list: &[Value], title_part: &str) -> String {
    let inc = list
        .iter()
        .find(|i| i["title"].as_str().unwrap_or_default().contains(title_part))
        .unwrap_or_else(|| panic!("no incident titled *{title_part}* in {list:#?}"));
    inc["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn events_v2_senders_open_and_resolve() {
    let app = app().await;
    // (trigger, resolve, a word of the title, the path the sender posts to)
    let cases = [
        (
            "go-pagerduty-v2-trigger",
            Some("go-pagerduty-v2-resolve"),
            "Replication lag",
            "/v2/enqueue",
        ),
        (
            "kapacitor-pagerduty2-trigger",
            Some("kapacitor-pagerduty2-resolve"),
            "cpu_alert",
            "/v2/enqueue",
        ),
        // Sentry posts to the URL with a trailing slash.
        (
            "sentry-issue-alert-trigger",
            None,
            "Payment provider",
            "/v2/enqueue/",
        ),
        ("elastalert-v2-trigger", None, "Nginx", "/v2/enqueue"),
        // Netdata: no offset on the timestamp, a form content type (below).
        ("netdata-pd-v2-trigger", None, "disk", "/v2/enqueue"),
    ];
    for (trigger, resolve, title, path) in cases {
        let (s, b) = send(&app, reqwest::Method::POST, path, sender(trigger)).await;
        assert_eq!(s, 202, "{trigger}: {b}");
        assert_eq!(b["status"], "success", "{trigger}: {b}");
        assert!(!b["dedup_key"].as_str().unwrap().is_empty(), "{b}");
        assert_eq!(status_of(&app.incidents().await, title), "triggered");
        if let Some(resolve) = resolve {
            let (s, b) = send(&app, reqwest::Method::POST, path, sender(resolve)).await;
            assert_eq!(s, 202, "{resolve}: {b}");
            assert_eq!(status_of(&app.incidents().await, title), "resolved");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn pagerdutys_and_sumo_logics_documented_payloads_page() {
    let app = app().await;
    let (s, b) = app
        .post_raw("/v2/enqueue", reference("pagerduty-docs-2026-trigger.json"))
        .await;
    assert_eq!(s, 202, "{b}");
    let list = app.incidents().await;
    assert_eq!(status_of(&list, "host1.example.com"), "triggered");
    let id = list[0]["key"].as_str().unwrap().to_string();
    let inc = app.incident(&id).await["incident"].clone();
    let alert = inc["alerts"].as_object().unwrap().values().next().unwrap();
    assert_eq!(
        alert["details"]["timestamp_utc"],
        "2015-07-17T08:42:58.315Z"
    );
    for name in [
        "pagerduty-docs-2026-acknowledge.json",
        "pagerduty-docs-2026-resolve.json",
    ] {
        let (s, _) = app.post_raw("/v2/enqueue", reference(name)).await;
        assert_eq!(s, 202, "{name}");
    }
    assert_eq!(
        status_of(&app.incidents().await, "host1.example.com"),
        "resolved"
    );
    let (s, b) = app
        .post_raw(
            "/v2/enqueue",
            reference("pagerduty-openapi-events-v2-trigger.json"),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    // Sumo Logic's top-level `description` is kept, and counted.
    let (s, b) = app
        .post_raw(
            "/v2/enqueue",
            reference("sumologic-docs-pagerduty-v2-trigger.json"),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(app.incidents().await.len(), 3);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"tocsin_intake_unknown_fields_total{integration="pd-docs"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn events_v1_senders_get_v1_answers() {
    let app = app().await;
    let path = "/generic/2010-04-15/create_event.json";
    for (trigger, resolve, title) in [
        (
            "alertmanager-pagerduty-v1-trigger",
            Some("alertmanager-pagerduty-v1-resolve"),
            "HighErrorRate",
        ),
        (
            "netdata-pd-v1-trigger",
            Some("netdata-pd-v1-resolve"),
            "disk_space_usage",
        ),
        ("elastalert-v1-trigger", None, "Nginx"),
    ] {
        let (s, b) = send(&app, reqwest::Method::POST, path, sender(trigger)).await;
        assert_eq!(s, 200, "{trigger}: {b}");
        assert_eq!(b["status"], "success");
        assert_eq!(b["message"], "Event processed");
        assert!(!b["incident_key"].as_str().unwrap().is_empty(), "{b}");
        assert_eq!(status_of(&app.incidents().await, title), "triggered");
        if let Some(resolve) = resolve {
            let (s, b) = send(&app, reqwest::Method::POST, path, sender(resolve)).await;
            assert_eq!(s, 200, "{resolve}: {b}");
            assert_eq!(status_of(&app.incidents().await, title), "resolved");
        }
    }
    // v1's refusal, in v1's shape.
    let (s, b) = app
        .post_json(
            path,
            &json!({"service_key": "pd-service-key", "event_type": "trigger"}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(b["status"], "invalid event");
    assert!(b["errors"][0].as_str().unwrap().contains("description"));
    app.stop().await;
}

#[tokio::test]
async fn netdatas_form_content_type_is_read_as_json() {
    let app = app().await;
    let resp = app
        .http
        .post(app.url("/v2/enqueue"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(sender("netdata-pd-v2-trigger"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    app.stop().await;
}

#[tokio::test]
async fn amtool_and_grafanas_alertmanager_contact_point() {
    let app = app().await;
    // amtool 0.25 `alert add`: Go's zero time for startsAt and endsAt.
    let (s, b) = push_alerts(&app, AM_KEY, sender("amtool-alert-add-minimal")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(status_of(&app.incidents().await, "DiskFull"), "triggered");
    // Grafana's Alertmanager contact point: basic auth only, untagged Go
    // fields in the body. It sends firing alerts with `endsAt` a few
    // minutes ahead, so the fixture's are moved to now.
    let mut alerts: Value = serde_json::from_slice(&sender("grafana-alertmanager-alerts")).unwrap();
    use tocsin::clock::Clock;
    let ends = (tocsin::clock::SystemClock.now() + chrono::Duration::minutes(5)).to_rfc3339();
    for a in alerts.as_array_mut().unwrap() {
        a["endsAt"] = json!(ends);
    }
    let resp = app
        .http
        .post(app.url("/api/v2/alerts"))
        .basic_auth("grafana", Some(AM_KEY))
        .header("content-type", "application/json")
        .body(alerts.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(status_of(&app.incidents().await, "HighCPU"), "triggered");
    // The key in the path, for senders that can set a prefix only.
    let (s, b) = app
        .post_raw(
            &format!("/hooks/{AM_KEY}/api/v2/alerts"),
            br#"[{"labels":{"alertname":"ViaPrefix"}}]"#.to_vec(),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(status_of(&app.incidents().await, "ViaPrefix"), "triggered");
    app.stop().await;
}

#[tokio::test]
async fn grafanas_webhook_by_put_with_basic_auth() {
    let app = app().await;
    let resp = app
        .http
        .put(app.url("/hooks"))
        .basic_auth("anyone", Some(GRAFANA_KEY))
        .header("content-type", "application/json")
        .body(sender("grafana-webhook-put-truncated"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let b: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{b}");
    assert_eq!(b["results"][0]["effect"], "opened");
    // Alertmanager's `http_config.basic_auth` on a webhook receiver.
    let resp = app
        .http
        .post(app.url("/hooks/"))
        .basic_auth("alertmanager", Some(AM_KEY))
        .header("content-type", "application/json")
        .body(fixture("alertmanager/firing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    // A wrong password is refused, and says how to send the key.
    let resp = app
        .http
        .post(app.url("/hooks"))
        .basic_auth("alertmanager", Some("wrong"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_truncated_resolved_notification_keeps_the_incident_open() {
    let app = app().await;
    let am = format!("/hooks/{AM_KEY}");
    let firing = json!({
        "version": "4", "status": "firing", "receiver": "tocsin",
        "groupKey": "{}:{alertname=\"HighErrorRate\", service=\"api\"}",
        "truncatedAlerts": 3,
        "groupLabels": {"alertname": "HighErrorRate"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am", "alerts": [
            {"status": "firing", "labels": {"alertname": "HighErrorRate", "instance": "api-1:8080"},
             "fingerprint": "abcc45788bcf7aa8", "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"},
            {"status": "firing", "labels": {"alertname": "HighErrorRate", "instance": "api-2:8080"},
             "fingerprint": "5becaa63e842270d", "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}
        ]
    });
    let (s, b) = app.post_json(&am, &firing).await;
    assert_eq!(s, 202, "{b}");
    // The listed alerts resolved; Alertmanager says "resolved" though 3
    // alerts it left out still fire.
    let (s, b) = app
        .post_raw(&am, sender("alertmanager-webhook-max-alerts-resolved"))
        .await;
    assert_eq!(s, 202, "{b}");
    let list = app.incidents().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "triggered");
    let timeline = app.incident("INC-1").await["timeline"].clone();
    let held = timeline_entry(&timeline, "resolve_held");
    assert_eq!(held["left_out"], 3);
    // A notification that lists every alert resolved closes it.
    let mut all =
        serde_json::from_slice::<Value>(&sender("alertmanager-webhook-max-alerts-resolved"))
            .unwrap();
    all["truncatedAlerts"] = json!(0);
    let (s, _) = app.post_json(&am, &all).await;
    assert_eq!(s, 202);
    assert_eq!(app.incidents().await[0]["status"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn refusals_are_counted_under_the_integration() {
    let app = app().await;
    let (s, _) = app
        .post_json(
            "/v2/enqueue",
            &json!({"routing_key": "pd-refusals-key", "event_action": "trigger",
                    "payload": {"summary": "x".repeat(1025), "source": "h", "severity": "info"}}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .post_raw("/hooks/am-refusals-key", b"{not json".to_vec())
        .await;
    assert_eq!(s, 400);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            r#"tocsin_alerts_received_total{integration="pd-refusals",outcome="rejected"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"tocsin_alerts_received_total{integration="am-refusals",outcome="rejected"} 1"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

/// Alertmanager's semantics for `/api/v2/alerts`: an alert without `endsAt`
/// fires for `resolve_timeout`, each re-send refreshes it, and one that is
/// not re-sent resolves by itself (a timer in the store, so restarts keep it).
#[tokio::test]
async fn pushed_alerts_without_ends_at_expire_after_resolve_timeout() {
    use tocsin::clock::Clock;
    let (app, clock, t0) = manual_app().await;
    let push = |body: &'static str| {
        let app = &app;
        async move { push_alerts(app, AM_KEY, body).await.0 }
    };
    let amtool = r#"[{"labels":{"alertname":"Disk","instance":"a"},"startsAt":"0001-01-01T00:00:00.000Z","endsAt":"0001-01-01T00:00:00.000Z"},
                     {"labels":{"alertname":"Disk","instance":"b"}}]"#;
    assert_eq!(push(amtool).await, 200);
    assert_eq!(app.incidents().await[0]["status"], "triggered");
    // Four minutes on, only instance a is sent again.
    clock.advance(chrono::Duration::minutes(4));
    assert_eq!(
        push(r#"[{"labels":{"alertname":"Disk","instance":"a"}}]"#).await,
        200
    );
    // At 5m b expires; a (refreshed at 4m) still fires.
    clock.advance(chrono::Duration::seconds(61));
    app.tick().await;
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "triggered");
    let expired = timeline_entry(&inc["timeline"], "alert_expired");
    assert_eq!(expired["actor"]["kind"], "system");
    // At 9m a expires too, and with it the incident.
    clock.advance(chrono::Duration::minutes(4));
    app.tick().await;
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["status"], "resolved", "{inc:#}");
    assert!(inc["incident"]["resolved_at"].as_str().is_some());
    assert_eq!(clock.now(), t0 + chrono::Duration::seconds(9 * 60 + 1));
    // Nothing left pending.
    assert_eq!(
        tocsin::store::Store::timer_count(app.store.as_ref()).unwrap(),
        0
    );
    app.stop().await;
}

/// An Alertmanager-kind integration on `payments`, whose policy pages alice
/// by webhook at once; tight flood limits.
fn flood_config(recv: &crate::common::receiver::Receiver) -> String {
    crate::restart::chain(recv, ["1h", "1h", "1h"])
        + r#"
[[integrations]]
name = "flood-am"
kind = "alertmanager"
key = "flood-am-key"
service = "payments"
[intake]
max_new_incidents_per_request = 5
max_new_incidents_per_minute = 8
"#
}

fn alertmanager_group(n: usize, status: &str) -> Value {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({"status": status, "labels": {"alertname": "NodeDown", "instance": format!("node-{i:04}:9100"),
                     "job": "node", "severity": "critical", "cluster": "prod-eu-west-1", "team": "platform",
                     "namespace": "monitoring", "node": format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i / 250, i % 250)},
                   "annotations": {"summary": format!("node-{i:04} is down"), "description": "No scrape for 5 minutes.",
                     "runbook_url": "https://runbooks.example.internal/node/NodeDown"},
                   "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                   "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
                   "fingerprint": format!("{i:016x}")})
        })
        .collect();
    json!({"version": "4", "status": status, "receiver": "tocsin", "groupKey": "{}:{alertname=\"NodeDown\"}",
           "truncatedAlerts": 0, "groupLabels": {"alertname": "NodeDown"},
           "commonLabels": {"alertname": "NodeDown", "job": "node", "severity": "critical"},
           "commonAnnotations": {"description": "No scrape for 5 minutes."},
           "externalURL": "http://alertmanager:9093", "alerts": alerts})
}

#[tokio::test]
async fn a_1000_alert_group_is_one_incident_and_pages_once() {
    let recv = crate::common::receiver::Receiver::start().await;
    let app = spawn_app_with(
        Arc::new(tocsin::clock::SystemClock),
        Some("chain"),
        &flood_config(&recv),
    )
    .await;
    let body = alertmanager_group(1000, "firing").to_string();
    assert!(body.len() > 512 * 1024, "{} bytes", body.len());
    let (s, b) = app.post_raw("/hooks/flood-am-key", body).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["events"], 1000);
    assert_eq!(b["effects"]["opened"], 1);
    assert_eq!(b["effects"]["appended"], 999);
    let list = app.incidents().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["alerts"].as_object().unwrap().len(), 1000);
    assert_eq!(list[0]["event_count"], 1000);
    app.tick().await;
    assert_eq!(recv.at("alice").len(), 1, "one page for the whole group");
    // The group resolves: one resolve for all.
    let (s, _) = app
        .post_raw(
            "/hooks/flood-am-key",
            alertmanager_group(1000, "resolved").to_string(),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(app.incidents().await[0]["status"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn a_flood_of_new_alerts_opens_one_flood_incident_that_pages_once() {
    let recv = crate::common::receiver::Receiver::start().await;
    let app = spawn_app_with(
        Arc::new(tocsin::clock::SystemClock),
        Some("chain"),
        &flood_config(&recv),
    )
    .await;
    let push = |alerts: Value| {
        let app = &app;
        async move { push_alerts(app, "flood-am-key", alerts.to_string()).await }
    };
    let names = |from: usize, to: usize| -> Value {
        Value::Array(
            (from..to)
                .map(|i| json!({"labels": {"alertname": format!("Rule{i:03}"), "severity": "warning"}}))
                .collect(),
        )
    };
    // 20 distinct rules in one push: 5 open their own incidents (the
    // per-request limit), 15 join the flood incident.
    let (s, b) = push(names(0, 20)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["effects"]["opened"], 5, "{b}");
    assert_eq!(b["effects"]["flood"], 15, "{b}");
    let list = app.incidents().await;
    assert_eq!(list.len(), 6);
    let flood = list
        .iter()
        .find(|i| i["dedup_key"] == "flood:flood-am")
        .expect("a flood incident");
    assert_eq!(
        flood["title"],
        "Alert flood from flood-am: 15 alerts beyond the new-incident limits"
    );
    // 5 more: 3 left of this minute's 8, 2 to the flood.
    let (_, b) = push(names(20, 25)).await;
    assert_eq!(b["effects"]["opened"], 3, "{b}");
    assert_eq!(b["effects"]["flood"], 2, "{b}");
    let list = app.incidents().await;
    assert_eq!(list.len(), 9);
    app.tick().await;
    // One page per incident: 8 own, 1 flood.
    assert_eq!(recv.at("alice").len(), 9);
    // A re-send of a flooded alert stays in the flood incident, paging nobody.
    let (_, b) = push(names(10, 11)).await;
    assert_eq!(b["effects"]["flood"], 1, "{b}");
    app.tick().await;
    assert_eq!(recv.at("alice").len(), 9);
    // Its resolve resolves it there; the flood incident holds 17 alerts.
    let ended = json!([{"labels": {"alertname": "Rule010", "severity": "warning"},
                        "endsAt": "2020-01-01T00:00:00Z"}]);
    let (_, b) = push(ended).await;
    assert_eq!(b["effects"]["flood"], 1, "{b}");
    let list = app.incidents().await;
    let flood = list
        .iter()
        .find(|i| i["dedup_key"] == "flood:flood-am")
        .unwrap();
    assert_eq!(flood["status"], "triggered");
    let resolved: Vec<&String> = flood["alerts"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, a)| a["state"] == "resolved")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(resolved.len(), 1);
    assert!(
        resolved[0].starts_with("prometheus:Rule010#"),
        "{resolved:?}"
    );
    assert_eq!(
        flood["title"],
        "Alert flood from flood-am: 17 alerts beyond the new-incident limits"
    );
    app.stop().await;
}

/// PagerDuty change events: stored, and shown on the next incident of the
/// service (card, timeline, summary), as PagerDuty's "recent changes".
#[tokio::test]
async fn change_events_show_on_the_next_incident() {
    let app = app().await;
    let (s, b) = app
        .post_raw("/v2/change/enqueue", sender("go-pagerduty-change-event"))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["status"], "success");
    assert_eq!(b["message"], "Change event processed");
    // PagerDuty's own example, with its `+0000` timestamp, and a trailing slash.
    let (s, b) = app
        .post_raw(
            "/v2/change/enqueue/",
            reference("pagerduty-docs-2026-change-event.json"),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    // A change needs a summary, as PagerDuty says.
    let (s, b) = app
        .post_json(
            "/v2/change/enqueue",
            &json!({"routing_key": "pd-routing-key", "payload": {"source": "x"}}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        b["errors"][0].as_str().unwrap().contains("payload.summary"),
        "{b}"
    );
    // The docs' change is from 2020: too old to be "recent". The deploy
    // (2026-12-01T09:58Z) is recent only if the test runs within a day of
    // it, so send one stamped now.
    use tocsin::clock::Clock;
    let now = tocsin::clock::SystemClock.now();
    let (s, _) = app
        .post_json(
            "/v2/change/enqueue",
            &json!({"routing_key": "pd-routing-key",
                    "payload": {"summary": "Deploy payments 2026.12.1", "source": "deploybot",
                                "timestamp": now.to_rfc3339()},
                    "links": [{"href": "https://ci.example/1", "text": "Pipeline"}]}),
        )
        .await;
    assert_eq!(s, 202);
    let (s, _) = send(
        &app,
        reqwest::Method::POST,
        "/v2/enqueue",
        sender("go-pagerduty-v2-trigger"),
    )
    .await;
    assert_eq!(s, 202);
    let id = app.incidents().await[0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let inc = app.incident(&id).await;
    let changes = inc["incident"]["recent_changes"].as_array().unwrap();
    assert_eq!(changes[0]["summary"], "Deploy payments 2026.12.1");
    assert!(
        changes.iter().all(
            |c| c["summary"] != "Build Success: Increase snapshot create timeout to 30 seconds"
        ),
        "a 2020 change is not recent"
    );
    let entry = timeline_entry(&inc["timeline"], "recent_changes");
    assert_eq!(entry["changes"][0]["source"], "deploybot");
    // The summary lists it.
    let resolve = json!({"routing_key": "pd-routing-key", "event_action": "resolve",
                         "dedup_key": "db-primary/replication-lag"});
    assert_eq!(app.post_json("/v2/enqueue", &resolve).await.0, 202);
    let text = app.get_text(&format!("/v1/incidents/{id}/summary")).await;
    assert!(text.contains("Recent changes before it opened"), "{text}");
    assert!(
        text.contains("Deploy payments 2026.12.1 (deploybot)"),
        "{text}"
    );
    app.stop().await;
}

/// A held resolve stands once `held_resolve_timeout` passes with no
/// notification saying the left-out alerts fire; a firing one cancels it.
#[tokio::test]
async fn a_held_resolve_stands_after_the_hold_unless_contradicted() {
    let (app, clock, _) = manual_app().await;
    let am = format!("/hooks/{AM_KEY}");
    let group = |status: &str, key: &str| {
        json!({"version": "4", "status": status, "groupKey": key, "truncatedAlerts": 20,
               "alerts": [{"status": status, "labels": {"alertname": "Big", "i": "1"}, "fingerprint": "f1"}]})
    };
    for key in ["g-stands", "g-contradicted"] {
        assert_eq!(app.post_json(&am, &group("firing", key)).await.0, 202);
        assert_eq!(app.post_json(&am, &group("resolved", key)).await.0, 202);
    }
    // The second group still fires after all: Alertmanager says so.
    clock.advance(chrono::Duration::hours(1));
    assert_eq!(
        app.post_json(&am, &group("firing", "g-contradicted"))
            .await
            .0,
        202
    );
    clock.advance(chrono::Duration::hours(3));
    app.tick().await;
    let status = |list: &[Value], key: &str| {
        list.iter().find(|i| i["dedup_key"] == key).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let list = app.incidents().await;
    assert_eq!(status(&list, "g-stands"), "triggered", "held for 4h10m");
    clock.advance(chrono::Duration::minutes(11));
    app.tick().await;
    let list = app.incidents().await;
    assert_eq!(status(&list, "g-stands"), "resolved");
    assert_eq!(status(&list, "g-contradicted"), "triggered");
    app.stop().await;
}
