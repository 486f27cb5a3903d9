//! Durability: what got a 2xx survives SIGKILL.

use crate::common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[tokio::test]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start(dir.path(), port).await;
    let base = server.base.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (stop, acked, base) = (stop.clone(), acked.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{worker}-e{n}");
                n += 1;
                let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                                  "payload": {"summary": "crash test", "source": "t", "severity": "error"}});
                match http.post(format!("{base}/v2/enqueue")).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => acked.lock().push(key),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Let a batch through, then kill the server right after its latest 2xx.
    while acked.lock().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().iter().cloned().collect();
    assert!(acked.len() >= 300);

    let server = ServerProcess::start(dir.path(), port).await;
    let body: serde_json::Value = reqwest::get(format!("{}/v1/incidents?limit=10000", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: HashSet<String> = body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dedup_key"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Incident numbers stay unique after the restart.
    let mut ids: Vec<u64> = body["incidents"]
        .as_array()
        .unwrap()
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
    let body: serde_json::Value = reqwest::get(format!("{}/v1/incidents/INC-1", server.base))
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
    let extra = crate::restart::chain(&recv, ["1s", "1h", "1h"]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Per dedup key: how many of its events got a 202.
    let acked = Arc::new(parking_lot::Mutex::new(std::collections::HashMap::<
        String,
        u64,
    >::new()));
    let mut senders = Vec::new();
    for worker in 0..8u64 {
        let (stop, acked, base) = (stop.clone(), acked.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            // Worker w sends events w, w+8, ...; event e goes to key e % 500.
            let mut e = worker;
            while e < 5000 && !stop.load(Ordering::Relaxed) {
                let key = format!("k{}", e % 500);
                let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                                  "payload": {"summary": "load", "source": "t", "severity": "error"}});
                match http.post(format!("{base}/v2/enqueue")).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => *acked.lock().entry(key).or_default() += 1,
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break,
                }
                e += 8;
            }
        }));
    }
    // Kill mid-load, after the first incidents' step 2 came due.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    while acked.lock().values().sum::<u64>() < 2500 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().clone();
    // Down for 2 s: every incident's step 2 is now overdue.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let body: serde_json::Value = reqwest::get(format!("{}/v1/incidents?limit=10000", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incidents = body["incidents"].as_array().unwrap().clone();
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
            let key = format!("{k}/g0/r0/s{step}/user:{who}/m0");
            assert!(keys.contains_key(&key), "{key} was never delivered");
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
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("t{worker}-{n}");
                n += 1;
                let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                                  "payload": {"summary": "sigterm", "source": "t", "severity": "info"}});
                match http.post(format!("{base}/v2/enqueue")).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => acked.lock().push(key),
                    // Refused or cut off while shutting down: not acknowledged.
                    Ok(_) | Err(_) => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    while acked.lock().len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let status = server.terminate();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    let acked: HashSet<String> = acked.lock().iter().cloned().collect();
    let server = ServerProcess::start(dir.path(), port).await;
    let body: serde_json::Value = reqwest::get(format!("{}/v1/incidents?limit=10000", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: HashSet<String> = body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dedup_key"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost across SIGTERM",
        lost.len()
    );
}
