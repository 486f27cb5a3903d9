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
