//! Durability: what got a 2xx survives SIGKILL.

use crate::common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Eight senders posting PagerDuty triggers to `base` until stopped; the
/// dedup keys that got a 202 are recorded, one entry per event.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<parking_lot::Mutex<Vec<String>>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `key(worker, n)` names worker's n-th event (`None`: that worker is
    /// done). With `strict`, any answer but 202 fails the test; otherwise
    /// (a shutting-down server) it just is not acknowledged.
    fn start(base: &str, key: fn(u64, u64) -> Option<String>, strict: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let senders = (0..8u64)
            .map(|worker| {
                let (stop, acked, base) = (stop.clone(), acked.clone(), base.to_string());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(key) = key(worker, n) else { break };
                        n += 1;
                        let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                                          "payload": {"summary": "load", "source": "t", "severity": "error"}});
                        match http.post(format!("{base}/v2/enqueue")).json(&body).send().await {
                            Ok(r) if r.status().as_u16() == 202 => acked.lock().push(key),
                            Ok(r) if strict => panic!("unexpected status {}", r.status()),
                            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                            Err(_) => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            acked,
            senders,
        }
    }

    /// Waits until `n` events got a 202.
    async fn until(&self, n: usize) {
        while self.acked.lock().len() < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops the senders; the keys acknowledged, one per event.
    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.senders {
            s.await.unwrap();
        }
        self.acked.lock().clone()
    }
}

#[tokio::test]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start(dir.path(), port).await;
    let base = server.base.clone();

    let load = Load::start(&base, |w, n| Some(format!("w{w}-e{n}")), true);
    // Let a batch through, then kill the server right after its latest 2xx.
    load.until(300).await;
    server.kill();
    let acked = load.finish().await;
    let acked: HashSet<String> = acked.into_iter().collect();
    assert!(acked.len() >= 300);

    let server = ServerProcess::start(dir.path(), port).await;
    let incidents = server.incidents().await;
    let stored = server.dedup_keys().await;
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Incident numbers stay unique after the restart.
    let mut ids: Vec<u64> = incidents
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start(dir.path(), port).await;
    let http = reqwest::Client::new();
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "term",
                      "payload": {"summary": "before SIGTERM", "source": "t", "severity": "info"}});
    let r = http
        .post(format!("{}/v2/enqueue", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let server = ServerProcess::start(dir.path(), port).await;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/incidents/INC-1", server.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["incident"]["title"], "before SIGTERM");
}

/// 5,000 events over 500 dedup keys, with escalation steps coming due
/// during the load; SIGKILL mid-load, stay down past more due steps,
/// restart on the same data.
#[tokio::test]
async fn sigkill_mid_load_with_escalation_loses_nothing_and_pages_each_step_once() {
    use crate::common::receiver::Receiver;
    let recv = Receiver::start().await;
    // alice at once, bob 1 s later (during the load), carol an hour on.
    // 500 keys in a few seconds is past the default flood limits; this test
    // wants each key its own incident.
    let extra = crate::restart::chain(&recv, ["1s", "1h", "1h"]) + UNLIMITED_INTAKE;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let base = server.base.clone();
    // Worker w sends events w, w+8, ... up to 5000; event e goes to key e % 500.
    let load = Load::start(
        &base,
        |w, n| (w + 8 * n < 5000).then(|| format!("k{}", (w + 8 * n) % 500)),
        true,
    );
    // Kill mid-load, after the first incidents' step 2 came due.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    load.until(2500).await;
    server.kill();
    // Per dedup key: how many of its events got a 202.
    let mut acked = std::collections::HashMap::<String, u64>::new();
    for key in load.finish().await {
        *acked.entry(key).or_default() += 1;
    }
    // Down for 2 s: every incident's step 2 is now overdue.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let incidents = server.incidents().await;
    let by_key: std::collections::HashMap<String, u64> = incidents
        .iter()
        .map(|i| {
            (
                i["dedup_key"].as_str().unwrap().to_string(),
                i["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    for (key, n) in &acked {
        let stored = by_key.get(key).copied().unwrap_or(0);
        assert!(
            stored >= *n,
            "{key}: {n} events acknowledged, {stored} stored"
        );
    }
    // Every incident pages alice (step 1) and bob (step 2, due during the
    // load or the downtime), each exactly once by idempotency key.
    let want = incidents.len() * 2;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while recv.delivered_keys().len() < want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let keys = recv.delivered_keys();
    assert_eq!(
        keys.len(),
        want,
        "distinct pages delivered for {} incidents",
        incidents.len()
    );
    for i in &incidents {
        let k = i["key"].as_str().unwrap();
        for who in ["alice", "bob"] {
            let step = if who == "alice" { 0 } else { 1 };
            // The key receivers see ends with the incident's uid.
            let key = format!("{k}/g0/r0/s{step}/user:{who}/m0/");
            assert!(
                keys.keys().any(|d| d.starts_with(&key)),
                "{key}* was never delivered"
            );
        }
    }
    // Duplicates can only be pages cut off by the SIGKILL (sent, not yet recorded).
    let resent: usize = keys.values().filter(|n| **n > 1).count();
    assert!(
        resent <= 64,
        "{resent} pages were sent twice; only those in flight at the kill may be"
    );
    drop(server);
}

#[tokio::test]
async fn sigterm_during_load_keeps_every_acknowledged_event_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start(dir.path(), port).await;
    let base = server.base.clone();
    // Answers other than 202 while shutting down are simply not acknowledged.
    let load = Load::start(&base, |w, n| Some(format!("t{w}-{n}")), false);
    load.until(200).await;
    let status = server.terminate();
    let acked = load.finish().await;
    assert!(status.success(), "exit status {status:?}");
    let acked: HashSet<String> = acked.into_iter().collect();
    let server = ServerProcess::start(dir.path(), port).await;
    let stored = server.dedup_keys().await;
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost across SIGTERM",
        lost.len()
    );
}
