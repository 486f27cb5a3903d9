//! Backpressure: a sender that outruns the writer is told to slow down
//! (PagerDuty's 429 with `Retry-After` on `/v2/enqueue`, 503 with
//! `Retry-After` elsewhere) instead of memory growing, and what it was told
//! matches what was kept.

use crate::common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use tocsin::clock::SystemClock;

#[tokio::test]
async fn a_sender_outrunning_the_writer_is_told_to_retry_and_nothing_it_was_refused_is_kept() {
    let app = spawn_app_with_server(
        Arc::new(SystemClock),
        None,
        "",
        test_limits(),
        "max_queued_writes = 2",
    )
    .await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(400)
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let http = http.clone();
        let url = app.url("/v2/enqueue");
        tasks.spawn(async move {
            let key = format!("burst-{i}");
            let r = http
                .post(url)
                .json(&json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                              "payload": {"summary": format!("burst {i}"), "source": "t", "severity": "critical"}}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = r.json().await.unwrap();
            (key, status, retry, body)
        });
    }
    let mut accepted = HashSet::new();
    let mut refused = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let (key, status, retry, body) = r.unwrap();
        match status {
            202 => {
                accepted.insert(key);
            }
            429 => {
                assert_eq!(retry.as_deref(), Some("1"), "{body}");
                assert_eq!(body["status"], "error", "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("max_queued_writes"),
                    "{body}"
                );
                refused.insert(key);
            }
            other => panic!("{key}: {other} {body}"),
        }
    }
    eprintln!(
        "400 concurrent alerts with max_queued_writes = 2: {} accepted, {} told to retry (429)",
        accepted.len(),
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "a burst past the queue bound is refused"
    );
    assert!(!accepted.is_empty());
    let stored: HashSet<String> = app
        .incidents()
        .await
        .iter()
        .map(|i| i["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, accepted, "every 202 is kept and no 429 is");

    // Elsewhere the same overload is a 503 with Retry-After.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let http = http.clone();
        let url = app.url(&format!("/hooks/{GENERIC_KEY}"));
        tasks.spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"summary": format!("generic {i}"), "dedup_key": format!("g-{i}")}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        });
    }
    let mut unavailable = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, retry) = r.unwrap();
        match status {
            200..=299 => {}
            503 => {
                assert!(retry, "a 503 for overload says when to retry");
                unavailable += 1;
            }
            other => panic!("generic intake answered {other}"),
        }
    }
    assert!(unavailable > 0, "the generic route is told to retry too");
    app.stop().await;
}

/// A sender past its integration's `max_requests_per_second` is told to
/// retry (a burst of two seconds' worth first), and is admitted again as
/// time passes; other integrations are not slowed by it.
#[tokio::test]
async fn an_integration_past_its_request_rate_is_told_to_retry_and_others_are_not() {
    let clock = Arc::new(tocsin::clock::ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    ));
    let app = spawn_app_with(
        clock.clone(),
        None,
        r#"
[[integrations]]
name = "chatty"
kind = "pagerduty"
key = "chatty-key-0123456789"
service = "payments"
max_requests_per_second = 2

[[integrations]]
name = "chatty-hook"
kind = "generic"
key = "chatty-hook-key-0123456789"
service = "api"
max_requests_per_second = 1
"#,
    )
    .await;
    let http = reqwest::Client::new();
    let send = |key: &'static str, dedup: String| {
        let http = http.clone();
        let url = app.url("/v2/enqueue");
        async move {
            let r = http
                .post(url)
                .json(
                    &json!({"routing_key": key, "event_action": "trigger", "dedup_key": dedup,
                              "payload": {"summary": "s", "source": "t", "severity": "critical"}}),
                )
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry)
        }
    };
    let mut got = Vec::new();
    for i in 0..6 {
        got.push(send("chatty-key-0123456789", format!("c{i}")).await);
    }
    assert_eq!(
        got,
        [
            (202, false),
            (202, false),
            (202, false),
            (202, false),
            (429, true),
            (429, true)
        ],
        "a burst of 4 (2 per second, two seconds' worth), then 429 with Retry-After"
    );
    // Others are not slowed down by it.
    assert_eq!(send(PD_KEY, "other".into()).await, (202, false));
    // Half a second later one more is admitted.
    clock.advance(chrono::Duration::milliseconds(500));
    assert_eq!(send("chatty-key-0123456789", "c6".into()).await.0, 202);
    assert_eq!(send("chatty-key-0123456789", "c7".into()).await.0, 429);
    let stored: HashSet<String> = app
        .incidents()
        .await
        .iter()
        .map(|i| i["dedup_key"].as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> = ["c0", "c1", "c2", "c3", "c6", "other"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(stored, want);

    // On /hooks the same limit is a 503 with Retry-After.
    let hook = |i: usize| {
        let http = http.clone();
        let url = app.url("/hooks/chatty-hook-key-0123456789");
        async move {
            let r = http
                .post(url)
                .json(&json!({"summary": "hook", "dedup_key": format!("h{i}")}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        }
    };
    assert_eq!(hook(0).await.0 / 100, 2);
    assert_eq!(hook(1).await.0 / 100, 2);
    assert_eq!(hook(2).await, (503, true));
    app.stop().await;
}
