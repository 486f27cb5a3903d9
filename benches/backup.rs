//! Backups while writers go on: a sled store with many incidents (56,000 by
//! default, about 3.7 KB each as stored, like the store in issue 14's
//! finding) is backed up to a file while another thread keeps writing
//! transactions the size of one alert opening an incident. Reports the
//! backup's time and size, the writers' latency while it ran (p50, p99,
//! max: the stall), and the process's peak RSS growth.
//!
//! `cargo bench --bench backup` (`BENCH_INCIDENTS=N` to change the size)

use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tocsin::incident::Incident;
use tocsin::intake::{AlertAction, AlertEvent};
use tocsin::store::{SledStore, Store};

fn event(key: &str) -> AlertEvent {
    AlertEvent {
        dedup_key: key.into(),
        fingerprint: Some(key.into()),
        action: AlertAction::Trigger,
        summary: format!("Disk almost full on {key}"),
        incident_title: None,
        source: "bench".into(),
        severity: None,
        labels: (0..12)
            .map(|i| (format!("label{i}"), format!("value-{key}-{i}")))
            .collect(),
        details: serde_json::json!({"description": "x".repeat(2400)}),
        links: vec![],
        left_out: None,
        expires_at: None,
    }
}

fn open_one(store: &SledStore, key: &str) {
    store
        .transact(&mut |tx| {
            let id = tx.next_incident_id()?;
            #[allow(clippy::disallowed_methods)]
            let change = Incident::open(id, "api", "bench", &event(key), Utc::now());
            tx.put_incident(&change.incident)?;
            tx.set_open_incident("api", key, Some(id))?;
            for e in &change.entries {
                tx.append_timeline(id, e)?;
            }
            Ok(())
        })
        .unwrap();
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("BENCH_INCIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(56_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
    let started = Instant::now();
    for i in 0..n {
        open_one(&store, &format!("old-{i}"));
        if i % 1000 == 999 {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    println!(
        "store: {n} incidents written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let store = store.clone();
        let running = running.clone();
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut i = 0;
            while running.load(Ordering::SeqCst) {
                let t = Instant::now();
                open_one(&store, &format!("new-{i}"));
                store.flush().unwrap();
                lat.push(t.elapsed());
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            lat
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = vm_hwm_kib();
    let file = dir.path().join("backup.jsonl");
    let t = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    #[allow(clippy::disallowed_methods)]
    let records = store.backup(&mut out, Utc::now()).unwrap();
    drop(out);
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    running.store(false, Ordering::SeqCst);
    let mut lat = writer.join().unwrap();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let size = std::fs::metadata(&file).unwrap().len();
    println!(
        "backup: {records} records, {:.0} MB, {:.2} s; peak RSS grew {} MiB",
        size as f64 / 1e6,
        took.as_secs_f64(),
        (vm_hwm_kib().saturating_sub(rss_before)) / 1024
    );
    println!(
        "writers meanwhile: {} transactions, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
}
