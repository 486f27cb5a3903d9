//! Paging across restarts and crashes, and one end-to-end run in real time.

use crate::common::receiver::Receiver;
use crate::common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Three one-person steps, `delay` apart.
pub fn chain(recv: &Receiver, delays: [&str; 3]) -> String {
    format!(
        r#"
[[users]]
name = "alice"
webhook = {{ url = "{a}" }}
contact_methods = [{{ kind = "webhook" }}]
[[users]]
name = "bob"
webhook = {{ url = "{b}" }}
contact_methods = [{{ kind = "webhook" }}]
[[users]]
name = "carol"
webhook = {{ url = "{c}" }}
contact_methods = [{{ kind = "webhook" }}]
[[escalation_policies]]
name = "chain"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}]
delay = "{d0}"
[[escalation_policies.steps]]
targets = [{{ user = "bob" }}]
delay = "{d1}"
[[escalation_policies.steps]]
targets = [{{ user = "carol" }}]
delay = "{d2}"
"#,
        a = recv.url("alice"),
        b = recv.url("bob"),
        c = recv.url("carol"),
        d0 = delays[0],
        d1 = delays[1],
        d2 = delays[2],
    )
}

/// Waits until tocsin has recorded `n` deliveries of INC-1.
async fn wait_recorded(base: &str, n: usize) {
    let http = reqwest::Client::new();
    for _ in 0..250 {
        let body: serde_json::Value = http
            .get(format!("{base}/v1/incidents/INC-1/notifications"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let delivered = body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"]["state"] == "delivered")
            .count();
        if delivered >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tocsin did not record {n} deliveries");
}

async fn trigger(base: &str, key: &str) {
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                      "payload": {"summary": "restart test", "source": "t", "severity": "critical"}});
    let r = reqwest::Client::new()
        .post(format!("{base}/v2/enqueue"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test]
async fn timers_survive_a_crash_and_overdue_ones_fire_once_at_start() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = chain(&recv, ["3s", "3s", "1h"]);
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    trigger(&server.base, "crash-1").await;
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(recv.at("alice").len(), 1);
    wait_recorded(&server.base, 1).await;
    // Let the record's group commit finish (the API cannot show it).
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Crash with bob's step pending, stay down past its due time.
    server.kill();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(recv.received().len(), 1);
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    // Bob's overdue step fires at start...
    assert!(recv.wait_for(2, Duration::from_secs(5)).await);
    assert_eq!(recv.at("bob").len(), 1);
    // ...and carol's, pending across the restart, 3 s later.
    assert!(recv.wait_for(3, Duration::from_secs(6)).await);
    assert_eq!(recv.at("carol").len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys = recv.delivered_keys();
    assert_eq!(keys.len(), 3);
    assert!(keys.values().all(|n| *n == 1), "{keys:?}");
    drop(server);
}

#[tokio::test]
async fn a_page_recorded_before_sigkill_is_not_sent_again() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = chain(&recv, ["1h", "1h", "1h"]);
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    trigger(&server.base, "once").await;
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    // Wait until tocsin has recorded the delivery (and the record's group
    // commit, which the API cannot show, has had time to finish), then crash it.
    wait_recorded(&server.base, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();
    let _server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(recv.received().len(), 1, "{:?}", recv.received());
}

#[tokio::test]
async fn a_page_cut_off_by_sigkill_is_resent_with_the_same_key() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = chain(&recv, ["1h", "1h", "1h"]);
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    trigger(&server.base, "cut").await;
    // Kill the moment the receiver has the page: tocsin may not have
    // recorded it yet.
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    server.kill();
    let _server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = recv.received();
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    // At-least-once, but a receiver deduplicating by key sees one page.
    assert_eq!(recv.delivered_keys().len(), 1);
}

#[tokio::test]
async fn end_to_end_in_real_time() {
    let recv = Receiver::start().await;
    let app = spawn_app_with(
        Arc::new(tocsin::clock::SystemClock),
        Some("chain"),
        &chain(&recv, ["1s", "1s", "1s"]),
    )
    .await;
    app.start_background();
    let started = std::time::Instant::now();
    trigger(&format!("http://{}", app.addr), "e2e").await;
    assert!(recv.wait_for(1, Duration::from_secs(3)).await);
    assert_eq!(recv.at("alice").len(), 1);
    assert!(recv.wait_for(2, Duration::from_secs(3)).await);
    assert_eq!(recv.at("bob").len(), 1);
    // Bob's step waits its 1 s delay from the incident's opening.
    let second = started.elapsed();
    assert!(
        second >= Duration::from_millis(950),
        "bob paged after {second:?}"
    );
    let (s, _) = app
        .post_with_token(
            "/v1/incidents/INC-1/acknowledge",
            Some(API_TOKEN),
            &json!({"by": "bob"}),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        recv.at("carol").len(),
        0,
        "no third page after the acknowledgement"
    );
    assert_eq!(recv.received().len(), 2);
    app.stop().await;
}
