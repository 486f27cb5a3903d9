//! The REST API: listing, showing, acknowledging and resolving.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn list_and_show() {
    let app = spawn_app().await;
    app.pd("trigger", "a", "first").await;
    app.pd("trigger", "b", "second").await;
    app.pd("resolve", "a", "").await;

    let (s, b) = app.get("/v1/incidents?status=triggered").await;
    assert_eq!(s, 200);
    let list = b["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["title"], "second");
    let (_, b) = app.get("/v1/incidents?status=resolved").await;
    assert_eq!(b["incidents"][0]["key"], "INC-1");
    let (s, b) = app.get("/v1/incidents?status=sleeping").await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("sleeping"));

    let shown = app.incident("inc-2").await;
    assert_eq!(shown["incident"]["key"], "INC-2");
    assert_eq!(shown["timeline"][0]["type"], "opened");
    let (s, b) = app.get("/v1/incidents/INC-99").await;
    assert_eq!(s, 404);
    assert_eq!(b["message"], "incident INC-99 does not exist");
    let (s, _) = app.get("/v1/incidents/banana").await;
    assert_eq!(s, 400);
    app.stop().await;
}

/// History is served in pages: `next` is the cursor for the page after.
/// Open incidents filtered by service and severity come from the open
/// index; asking that of resolved history is refused.
#[tokio::test]
async fn open_incidents_are_filtered_by_service_and_severity() {
    let app = spawn_app().await;
    app.pd("trigger", "a", "PD one").await; // payments, sev2
    app.post_json(
        &format!("/hooks/{GENERIC_KEY}"),
        &json!({"summary": "Script one", "severity": "critical", "dedup_key": "g"}),
    )
    .await; // payments, sev1
    app.pd("trigger", "c", "PD two").await;
    app.pd("resolve", "c", "").await;
    let keys = |path: &str| {
        let app = &app;
        let path = path.to_string();
        async move {
            let (s, b) = app.get(&path).await;
            assert_eq!(s, 200, "{b}");
            b["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys("/v1/incidents?status=open").await, ["INC-2", "INC-1"]);
    assert_eq!(
        keys("/v1/incidents?service=payments").await,
        ["INC-2", "INC-1"]
    );
    assert!(keys("/v1/incidents?service=api").await.is_empty());
    assert_eq!(keys("/v1/incidents?severity=sev1").await, ["INC-2"]);
    assert_eq!(
        keys("/v1/incidents?status=triggered&severity=SEV2").await,
        ["INC-1"]
    );
    let (s, b) = app
        .get("/v1/incidents?status=resolved&service=payments")
        .await;
    assert_eq!(s, 400);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("filter open incidents"),
        "{b}"
    );
    let (s, b) = app.get("/v1/incidents?severity=purple").await;
    assert_eq!(s, 400, "{b}");
    app.stop().await;
}

#[tokio::test]
async fn incidents_are_listed_in_pages_with_a_cursor() {
    let app = spawn_app().await;
    for key in ["a", "b", "c"] {
        app.pd("trigger", key, key).await;
    }
    app.pd("resolve", "b", "").await;
    let keys = |b: &serde_json::Value| -> Vec<String> {
        b["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, b) = app.get("/v1/incidents?limit=2").await;
    assert_eq!(s, 200);
    assert_eq!(keys(&b), ["INC-3", "INC-2"]);
    assert_eq!(b["next"], "INC-2");
    let (_, b) = app.get("/v1/incidents?limit=2&before=INC-2").await;
    assert_eq!(keys(&b), ["INC-1"]);
    assert_eq!(b["next"], serde_json::Value::Null);
    let (_, b) = app.get("/v1/incidents?status=triggered&limit=1").await;
    assert_eq!(keys(&b), ["INC-3"]);
    let next = b["next"].as_str().unwrap().to_string();
    let (_, b) = app
        .get(&format!(
            "/v1/incidents?status=triggered&limit=1&before={next}"
        ))
        .await;
    assert_eq!(keys(&b), ["INC-1"]);
    let (_, b) = app.get("/v1/incidents?status=resolved&before=3").await;
    assert_eq!(keys(&b), ["INC-2"]);
    let (s, b) = app.get("/v1/incidents?before=yesterday").await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("yesterday"), "{b}");
    app.stop().await;
}

#[tokio::test]
async fn acknowledge_and_resolve_need_the_token() {
    let app = spawn_app_with(
        std::sync::Arc::new(tocsin::clock::SystemClock),
        None,
        crate::access::PEOPLE,
    )
    .await;
    app.pd("trigger", "a", "first").await;
    let ack = "/v1/incidents/INC-1/acknowledge";

    let (s, b) = app.post_with_token(ack, None, &json!({})).await;
    assert_eq!(s, 401);
    assert!(b["message"].as_str().unwrap().contains("missing API token"));
    let (s, _) = app
        .post_with_token(ack, Some("wrong-token"), &json!({}))
        .await;
    assert_eq!(s, 401);
    assert_eq!(app.incident("1").await["incident"]["status"], "triggered");

    let (s, b) = app
        .post_with_token(ack, Some(API_TOKEN), &json!({"by": "alice"}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["incident"]["status"], "acknowledged");
    assert_eq!(
        b["incident"]["acknowledged_by"]["name"],
        json!({"user": "alice", "principal": "config-token"})
    );
    let (s, b) = app.post_with_token(ack, Some(API_TOKEN), &json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(b["message"], "INC-1 is already acknowledged");

    let (s, b) = app
        .post_with_token(
            "/v1/incidents/1/resolve",
            Some(API_TOKEN),
            &json!({"by": "bob", "note": "rolled back the deploy"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let shown = app.incident("INC-1").await;
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["type"], "resolved");
    assert_eq!(last["note"], "rolled back the deploy");
    assert_eq!(
        last["actor"]["name"],
        json!({"user": "bob", "principal": "config-token"})
    );

    // A trigger on the same key now opens a new incident.
    app.pd("trigger", "a", "again").await;
    assert_eq!(app.incidents().await.len(), 2);

    let (s, _) = app
        .post_with_token("/v1/incidents/INC-7/resolve", Some(API_TOKEN), &json!({}))
        .await;
    assert_eq!(s, 404);
    let (s, b) = app
        .post_with_token(
            "/v1/incidents/INC-2/resolve",
            Some(API_TOKEN),
            &json!({"nope": 1}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("nope"));
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    // Not ready until the scheduler runs.
    let (s, b) = app.get("/readyz").await;
    assert_eq!(s, 503);
    assert_eq!(
        b["checks"]["scheduler"],
        "the escalation scheduler has not started"
    );
    app.start_background();
    for _ in 0..100 {
        if app.get("/readyz").await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (s, b) = app.get("/healthz").await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, b) = app.get("/v1/stats").await;
    assert_eq!(
        (s, b["events"].as_u64(), b["incidents"].as_u64()),
        (200, Some(0), Some(0))
    );
    let (s, b) = app.get("/readyz").await;
    assert_eq!((s, b["checks"]["store"].as_str()), (200, Some("ok")));
    assert_eq!(b["checks"]["scheduler"], "ok");

    // A broken disk: unready, with the reason; alerts get a 503 and nothing is stored.
    app.store.set_write_failure(true);
    let (s, b) = app.get("/readyz").await;
    assert_eq!(s, 503);
    assert_eq!(
        b["checks"]["store"],
        "storage backend: write failed (fault injected)"
    );
    let before = app.store_counts();
    let (s, b) = app.pd("trigger", "disk-broken", "x").await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["status"], "error");
    assert_eq!(app.store_counts(), before);
    app.store.set_write_failure(false);
    assert_eq!(app.get("/readyz").await.0, 200);
    assert_eq!(app.pd("trigger", "disk-ok", "x").await.0, 202);
    app.stop().await;
}
