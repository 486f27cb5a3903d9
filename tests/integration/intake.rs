//! Alerts in through every route, out as incidents.

use crate::common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn pagerduty_trigger_dedups_resolves_and_retriggers() {
    let app = spawn_app().await;
    let (s, b) = app.pd("trigger", "db-disk", "Disk 95% full").await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["status"], "success");
    assert_eq!(b["message"], "Event processed");
    assert_eq!(b["dedup_key"], "db-disk");

    // The same key again is the same incident.
    let (s, _) = app.pd("trigger", "db-disk", "Disk 96% full").await;
    assert_eq!(s, 202);
    let list = app.incidents().await;
    assert_eq!(list.len(), 1);
    let inc = &list[0];
    assert_eq!(inc["key"], "INC-1");
    assert_eq!(inc["title"], "Disk 95% full");
    assert_eq!(inc["service"], "payments");
    assert_eq!(inc["severity"], "sev2");
    assert_eq!(inc["status"], "triggered");
    assert_eq!(inc["event_count"], 2);

    // Acknowledge from the sender.
    let (s, _) = app.pd("acknowledge", "db-disk", "").await;
    assert_eq!(s, 202);
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "acknowledged"
    );

    // Resolve closes it; a trigger after that opens INC-2.
    let (s, _) = app.pd("resolve", "db-disk", "").await;
    assert_eq!(s, 202);
    assert_eq!(app.incident("1").await["incident"]["status"], "resolved");
    app.pd("trigger", "db-disk", "Disk full again").await;
    let list = app.incidents().await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["key"], "INC-2");
    assert_eq!(list[0]["status"], "triggered");

    let timeline = app.incident("INC-1").await["timeline"].clone();
    let types: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["opened", "alert_received", "acknowledged", "resolved"]
    );
    assert_eq!(timeline[2]["actor"]["name"], "pd");
    app.stop().await;
}

#[tokio::test]
async fn trigger_without_dedup_key_gets_one_back() {
    let app = spawn_app().await;
    let (s, b) = app
        .post_json(
            "/v2/enqueue",
            &json!({"routing_key": PD_KEY, "event_action": "trigger",
                    "payload": {"summary": "x", "source": "y", "severity": "info"}}),
        )
        .await;
    assert_eq!(s, 202);
    let key = b["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    let (s, _) = app.pd("resolve", &key, "").await;
    assert_eq!(s, 202);
    assert_eq!(app.incidents().await[0]["status"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn pdpyras_and_alertmanager_pagerduty_fixtures() {
    let app = spawn_app().await;
    for name in ["pdpyras-trigger", "pdpyras-acknowledge", "pdpyras-resolve"] {
        let mut body: Value =
            serde_json::from_slice(&fixture(&format!("pagerduty/{name}.json"))).unwrap();
        body["routing_key"] = json!(PD_KEY);
        let (s, b) = app.post_json("/v2/enqueue", &body).await;
        assert_eq!(s, 202, "{name}: {b}");
        assert_eq!(b["dedup_key"], "pdpyras-1");
    }
    let mut trigger: Value =
        serde_json::from_slice(&fixture("pagerduty/alertmanager-trigger.json")).unwrap();
    trigger["routing_key"] = json!(PD_KEY);
    assert_eq!(app.post_json("/v2/enqueue", &trigger).await.0, 202);
    let list = app.incidents().await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["status"], "resolved");
    assert_eq!(list[0]["status"], "triggered");
    assert_eq!(list[0]["severity"], "sev1");
    let mut resolve: Value =
        serde_json::from_slice(&fixture("pagerduty/alertmanager-resolve.json")).unwrap();
    resolve["routing_key"] = json!(PD_KEY);
    assert_eq!(app.post_json("/v2/enqueue", &resolve).await.0, 202);
    assert_eq!(app.incidents().await[0]["status"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn alertmanager_group_is_one_incident_until_all_resolve() {
    let app = spawn_app().await;
    let (s, b) = app
        .post_raw(
            &format!("/hooks/{AM_KEY}"),
            fixture("alertmanager/firing.json"),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["events"], 2);
    assert_eq!(b["results"][0]["effect"], "opened");
    assert_eq!(b["results"][1]["effect"], "appended");
    let list = app.incidents().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["alerts"].as_object().unwrap().len(), 2);
    assert_eq!(list[0]["severity"], "sev1");
    assert_eq!(list[0]["service"], "api");

    // Alertmanager repeats the notification: still one incident.
    app.post_raw(
        &format!("/hooks/{AM_KEY}"),
        fixture("alertmanager/firing.json"),
    )
    .await;
    assert_eq!(app.incidents().await.len(), 1);

    // One alert resolving alone keeps the incident open.
    let mut partial: Value =
        serde_json::from_slice(&fixture("alertmanager/resolved.json")).unwrap();
    partial["status"] = json!("firing");
    partial["alerts"].as_array_mut().unwrap().truncate(1);
    let (s, _) = app.post_json(&format!("/hooks/{AM_KEY}"), &partial).await;
    assert_eq!(s, 202);
    let inc = &app.incidents().await[0];
    assert_eq!(inc["status"], "triggered");

    // The group resolving resolves it, through the bearer form of the route.
    let resp = app
        .http
        .post(app.url("/hooks"))
        .bearer_auth(AM_KEY)
        .header("content-type", "application/json")
        .body(fixture("alertmanager/resolved.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(app.incidents().await[0]["status"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn grafana_unified_and_legacy() {
    let app = spawn_app().await;
    let hook = format!("/hooks/{GRAFANA_KEY}");
    assert_eq!(
        app.post_raw(&hook, fixture("grafana/unified-firing.json"))
            .await
            .0,
        202
    );
    assert_eq!(
        app.post_raw(&hook, fixture("grafana/legacy-alerting.json"))
            .await
            .0,
        202
    );
    let list = app.incidents().await;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|i| i["status"] == "triggered"));
    assert_eq!(
        app.post_raw(&hook, fixture("grafana/unified-resolved.json"))
            .await
            .0,
        202
    );
    assert_eq!(
        app.post_raw(&hook, fixture("grafana/legacy-ok.json"))
            .await
            .0,
        202
    );
    assert!(
        app.incidents()
            .await
            .iter()
            .all(|i| i["status"] == "resolved")
    );
    app.stop().await;
}

#[tokio::test]
async fn generic_json_round_trip() {
    let app = spawn_app().await;
    let hook = format!("/hooks/{GENERIC_KEY}");
    let (s, b) = app
        .post_json(
            &hook,
            &json!({"summary": "Queue backlog", "severity": "critical", "dedup_key": "q1",
                                  "details": {"depth": 12000}, "labels": {"team": "core"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["results"][0]["incident"], "INC-1");
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["severity"], "sev1");
    assert_eq!(inc["incident"]["alerts"]["q1"]["details"]["depth"], 12000);
    let (s, _) = app
        .post_json(&hook, &json!({"dedup_key": "q1", "status": "resolve"}))
        .await;
    assert_eq!(s, 202);
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "resolved"
    );
    app.stop().await;
}

#[tokio::test]
async fn prometheus_alert_push_fires_and_resolves() {
    let app = spawn_app().await;
    let now = tocsin::clock::Clock::now(&tocsin::clock::SystemClock);
    let alert = |ends: chrono::DateTime<chrono::Utc>, instance: &str| {
        json!({"labels": {"alertname": "InstanceDown", "instance": instance, "severity": "warning"},
               "annotations": {"summary": format!("{instance} is down")},
               "startsAt": (now - chrono::Duration::minutes(5)).to_rfc3339(),
               "endsAt": ends.to_rfc3339(),
               "generatorURL": "http://prometheus.test/graph"})
    };
    let later = now + chrono::Duration::minutes(4);
    let push = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(app.url("/api/v2/alerts"))
                .bearer_auth(AM_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    assert_eq!(
        push(json!([alert(later, "a"), alert(later, "b")])).await,
        200
    );
    let list = app.incidents().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["title"], "InstanceDown");
    assert_eq!(list[0]["alerts"].as_object().unwrap().len(), 2);
    let past =
        tocsin::clock::Clock::now(&tocsin::clock::SystemClock) - chrono::Duration::seconds(1);
    assert_eq!(push(json!([alert(past, "a")])).await, 200);
    assert_eq!(app.incidents().await[0]["status"], "triggered");
    assert_eq!(push(json!([alert(past, "b")])).await, 200);
    assert_eq!(app.incidents().await[0]["status"], "resolved");

    // The Prometheus fixture too (its endsAt decides; now is after it).
    assert_eq!(
        push(serde_json::from_slice(&fixture("prometheus/resolved.json")).unwrap()).await,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn same_dedup_key_in_two_services_is_two_incidents() {
    let app = spawn_app().await;
    app.post_json(
        &format!("/hooks/{GENERIC_KEY}"),
        &json!({"summary": "x", "dedup_key": "shared"}),
    )
    .await;
    let body = json!({"version": "4", "groupKey": "shared", "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "X"}, "fingerprint": "f1"}]});
    app.post_json(&format!("/hooks/{AM_KEY}"), &body).await;
    let list = app.incidents().await;
    assert_eq!(list.len(), 2);
    assert_ne!(list[0]["service"], list[1]["service"]);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_senders_lose_nothing() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = app.http.clone();
        let url = app.url("/v2/enqueue");
        tasks.push(tokio::spawn(async move {
            let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": format!("k{}", i % 50),
                              "payload": {"summary": "s", "source": "t", "severity": "info"}});
            http.post(url).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    let (events, incidents) = app.store_counts();
    assert_eq!(events, 200);
    assert_eq!(incidents, 50);
    app.stop().await;
}
