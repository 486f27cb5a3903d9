//! Hostile and broken input: a clear 4xx, nothing written, still serving.

use crate::common::*;
use serde_json::json;

/// Sends a request, checks status and that the message mentions `needle`,
/// and that the store did not change.
async fn refused(app: &TestApp, path: &str, body: Vec<u8>, status: u16, needle: &str) {
    let before = app.store_counts();
    let (s, b) = app.post_raw(path, body).await;
    assert_eq!(s, status, "{path}: {b}");
    let text = b.to_string();
    assert!(
        text.contains(needle),
        "{path}: expected '{needle}' in {text}"
    );
    assert_eq!(app.store_counts(), before, "{path} changed the store");
}

#[tokio::test]
async fn every_bad_input_gets_its_4xx_and_changes_nothing() {
    let app = spawn_app().await;
    // Something in the store first, so "unchanged" means something.
    assert_eq!(app.pd("trigger", "seed", "seed").await.0, 202);

    let am = format!("/hooks/{AM_KEY}");
    let generic = format!("/hooks/{GENERIC_KEY}");

    // Malformed JSON.
    refused(
        &app,
        "/v2/enqueue",
        b"{\"routing_key\": ".to_vec(),
        400,
        "malformed JSON",
    )
    .await;
    refused(
        &app,
        &am,
        b"not json at all".to_vec(),
        400,
        "malformed JSON",
    )
    .await;
    refused(&app, &generic, vec![0xff, 0xfe, 0x00], 400, "malformed").await;
    // Missing fields, named in PagerDuty's shape.
    refused(
        &app,
        "/v2/enqueue",
        json!({"routing_key": PD_KEY, "event_action": "trigger", "payload": {"summary": "x"}})
            .to_string()
            .into_bytes(),
        400,
        "payload.source",
    )
    .await;
    let (_, b) = app
        .post_json(
            "/v2/enqueue",
            &json!({"routing_key": PD_KEY, "event_action": "trigger", "payload": {}}),
        )
        .await;
    assert_eq!(b["status"], "invalid event");
    assert_eq!(b["message"], "Event object is invalid");
    assert_eq!(b["errors"].as_array().unwrap().len(), 3, "{b}");
    // Wrong types.
    refused(
        &app,
        "/v2/enqueue",
        json!({"routing_key": PD_KEY, "event_action": 7})
            .to_string()
            .into_bytes(),
        400,
        "event_action",
    )
    .await;
    refused(
        &app,
        &am,
        br#"{"version":"4","groupKey":"g","status":"firing","alerts":"x"}"#.to_vec(),
        400,
        "alerts",
    )
    .await;
    // Invalid values.
    refused(
        &app,
        &generic,
        br#"{"summary":"x","severity":"purple"}"#.to_vec(),
        422,
        "severity",
    )
    .await;
    refused(
        &app,
        &am,
        br#"{"version":"4","groupKey":"g","status":"firing","alerts":[{"status":"burning"}]}"#
            .to_vec(),
        422,
        "alerts[0].status",
    )
    .await;
    // Unknown and misused keys.
    refused(
        &app,
        "/hooks/not-a-real-key",
        b"{}".to_vec(),
        401,
        "no integration has this key",
    )
    .await;
    refused(
        &app,
        "/v2/enqueue",
        json!({"routing_key": "nope-nope", "event_action": "trigger",
               "payload": {"summary": "x", "source": "y", "severity": "info"}})
        .to_string()
        .into_bytes(),
        400,
        "does not match any pagerduty integration",
    )
    .await;
    refused(
        &app,
        &format!("/hooks/{PD_KEY}"),
        b"{}".to_vec(),
        400,
        "/v2/enqueue",
    )
    .await;
    refused(
        &app,
        "/hooks",
        b"{}".to_vec(),
        401,
        "missing integration key",
    )
    .await;
    // Oversized bodies: PagerDuty's 512 KB on /v2/enqueue, 16 MiB on hooks.
    let big = format!(r#"{{"summary":"{}"}}"#, "x".repeat(600 * 1024)).into_bytes();
    refused(&app, "/v2/enqueue", big, 413, "larger than 524288").await;
    let huge = format!(r#"{{"summary":"{}"}}"#, "x".repeat(17 * 1024 * 1024)).into_bytes();
    refused(&app, &generic, huge, 413, "max_alert_body_bytes").await;
    // Deeply nested JSON.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    refused(&app, &generic, deep, 400, "malformed").await;

    // Still serving.
    let (s, _) = app.pd("trigger", "after", "after the storm").await;
    assert_eq!(s, 202);
    assert_eq!(app.incidents().await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let (s, b) = app.get("/nope").await;
    assert_eq!(s, 404);
    assert_eq!(b["error"], "not_found");
    let (s, b) = app.get("/v2/enqueue").await;
    assert_eq!(s, 405);
    assert_eq!(b["error"], "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /v2/enqueue HTTP/1.1\r\nHost: tocsin\r\nX-Slow: ")
        .await
        .unwrap();
    // Others are served meanwhile.
    let (s, _) = app.pd("trigger", "during-slowloris", "x").await;
    assert_eq!(s, 202);
    // The slow client is dropped after the 1 s header timeout of the test server.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf)).await;
    match read {
        Ok(Ok(n)) => {
            let answer = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
        Ok(Err(_)) => {} // reset: also cut off
        Err(_) => panic!("the slow connection was still open after 5 s"),
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(
        format!("POST /hooks/{GENERIC_KEY} HTTP/1.1\r\nHost: tocsin\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"summ")
            .as_bytes(),
    )
    .await
    .unwrap();
    let before = app.store_counts();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), slow.read(&mut buf))
        .await
        .expect("the server answers within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(app.store_counts(), before);
    app.stop().await;
}
