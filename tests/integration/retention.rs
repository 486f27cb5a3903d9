//! `[storage] retention`: resolved incidents past it vanish from the API
//! with their raw events, after being exported; open and recent ones stay.

use crate::common::*;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tocsin::clock::ManualClock;
use tocsin::store::Store;

fn t0() -> DateTime<Utc> {
    "2025-01-10T09:00:00Z".parse().unwrap()
}

const YEAR: Duration = Duration::from_secs(365 * 86_400);

async fn stats(app: &TestApp) -> (u64, u64) {
    let (status, body) = app.get("/v1/stats").await;
    assert_eq!(status, 200, "{body}");
    (
        body["events"].as_u64().unwrap(),
        body["incidents"].as_u64().unwrap(),
    )
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn resolved_incidents_past_retention_are_exported_then_removed() {
    let clock = ManualClock::new(t0());
    let app = spawn_app_with_clock(Arc::new(clock.clone())).await;
    for key in ["old-a", "old-b", "old-open"] {
        assert_eq!(app.pd("trigger", key, key).await.0, 202);
    }
    clock.advance(chrono::Duration::hours(1));
    for key in ["old-a", "old-b"] {
        assert_eq!(app.pd("resolve", key, key).await.0, 202);
    }
    app.store
        .put_summary(tocsin::incident::IncidentId(1), "# INC-1 summary")
        .unwrap();
    let (status, timeline) = app.get("/v1/incidents/INC-1/timeline").await;
    assert_eq!(status, 200, "{timeline}");
    let head1 = timeline["head"].clone();
    assert!(head1.as_str().is_some_and(|h| !h.is_empty()), "{head1}");
    clock.advance(chrono::Duration::days(400));
    assert_eq!(app.pd("trigger", "recent", "recent").await.0, 202);
    assert_eq!(app.pd("resolve", "recent", "recent").await.0, 202);
    assert_eq!(stats(&app).await, (7, 4));

    let dir = tempfile::tempdir().unwrap();
    // An export that cannot be written removes nothing.
    let unwritable = dir.path().join("missing").join("export.jsonl");
    assert!(
        app.service
            .apply_retention(YEAR, Some(unwritable))
            .await
            .is_err()
    );
    assert_eq!(stats(&app).await, (7, 4));
    assert_eq!(app.get("/v1/incidents/INC-1").await.0, 200);

    let export = dir.path().join("export.jsonl");
    let report = app
        .service
        .apply_retention(YEAR, Some(export.clone()))
        .await
        .unwrap();
    assert_eq!((report.incidents, report.events), (2, 4));
    for gone in ["INC-1", "INC-2"] {
        assert_eq!(app.get(&format!("/v1/incidents/{gone}")).await.0, 404);
        let timeline = format!("/v1/incidents/{gone}/timeline");
        assert_eq!(app.get(&timeline).await.0, 404);
    }
    // The old open incident stays (with its raw event), and stops the
    // sweep: INC-4 is recent anyway.
    assert_eq!(
        app.incident("INC-3").await["incident"]["status"],
        "triggered"
    );
    assert_eq!(
        app.incident("INC-4").await["incident"]["status"],
        "resolved"
    );
    assert_eq!(ids(&app.incidents().await), ["INC-4", "INC-3"]);
    let (_, resolved) = app.get("/v1/incidents?status=resolved").await;
    assert_eq!(ids(resolved["incidents"].as_array().unwrap()), ["INC-4"]);
    assert_eq!(stats(&app).await, (3, 2));

    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["key"], "INC-1");
    assert_eq!(lines[0]["service"], "payments");
    assert_eq!(lines[0]["title"], "old-a");
    assert_eq!(lines[0]["summary"], "# INC-1 summary");
    assert_eq!(lines[0]["timeline_head"], head1);
    assert_eq!(lines[0]["created_at"], "2025-01-10T09:00:00Z");
    assert_eq!(lines[0]["resolved_at"], "2025-01-10T10:00:00Z");
    assert!(lines[0]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(lines[1]["key"], "INC-2");
    assert_eq!(lines[1]["summary"], Value::Null);

    // Nothing more is due: a second pass removes and exports nothing.
    let again = app
        .service
        .apply_retention(YEAR, Some(export.clone()))
        .await
        .unwrap();
    assert_eq!((again.incidents, again.events), (0, 0));
    assert_eq!(std::fs::read_to_string(&export).unwrap().lines().count(), 2);

    // Once the old open one resolves and ages, it goes too, and so does
    // the recent one a year later.
    assert_eq!(app.pd("resolve", "old-open", "old-open").await.0, 202);
    clock.advance(chrono::Duration::days(366));
    let last = app.service.apply_retention(YEAR, None).await.unwrap();
    assert_eq!((last.incidents, last.events), (2, 4));
    assert_eq!(stats(&app).await, (0, 0));
    assert!(app.incidents().await.is_empty());
    // New incidents still get new numbers.
    assert_eq!(app.pd("trigger", "new", "new").await.0, 202);
    assert_eq!(ids(&app.incidents().await), ["INC-5"]);
    app.stop().await;
}
