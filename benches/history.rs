//! Cost independent of history: the release `tocsin` binary on a store
//! filled with many resolved incidents (200,000 by default), against an
//! empty store in the same run. Measures the time to ready after a
//! restart, RSS (after start, and the peak over the whole run, scrapes
//! included), one `/metrics` scrape, the open-incident listing, a
//! `status=acknowledged` listing that matches nothing, a page of history
//! from the middle, a new alert's latency at one connection (right after
//! start, and again after a pause), and the disk used per resolved incident.
//!
//! The store is filled directly through [`SledStore`] in transactions of
//! 1,000 incidents (each opened, resolved, with its timeline and raw
//! event, about 3 KB of JSON), so filling takes minutes, not hours.
//!
//! `cargo bench --bench history` (`BENCH_INCIDENTS=N` to change the size)

use chrono::{Duration as Span, Utc};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tocsin::incident::{Actor, Incident};
use tocsin::intake::{AlertAction, AlertEvent};
use tocsin::store::{SledStore, Store, StoredEvent};

const KEY: &str = "bench-pagerduty-key";
/// The API's admin token: the listings need a read token.
const API_TOKEN: &str = "bench-api-token-0123456789";
/// How long the second round of new alerts waits after the first.
const SETTLE_SECS: u64 = 30;
/// Open incidents on each store, opened over HTTP before measuring.
const OPEN: usize = 50;

fn config(data: &Path, port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{}"
[log]
level = "warn"
[api]
token = "{API_TOKEN}"
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
[[services]]
name = "bench"
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "{KEY}"
service = "bench"
"#,
        data.display()
    )
}

fn event(key: &str) -> AlertEvent {
    AlertEvent {
        dedup_key: key.into(),
        fingerprint: Some(key.into()),
        action: AlertAction::Trigger,
        summary: format!("Disk almost full on {key}"),
        incident_title: None,
        source: "bench".into(),
        severity: None,
        labels: (0..8)
            .map(|i| (format!("label{i}"), format!("value-{key}-{i}")))
            .collect(),
        details: serde_json::json!({"description": "x".repeat(600)}),
        links: vec![],
        left_out: None,
        expires_at: None,
    }
}

/// Writes `n` resolved incidents, a year of history ending a day ago.
fn fill(data: &Path, n: usize) -> Duration {
    let store = SledStore::open(data).unwrap();
    let started = Instant::now();
    #[allow(clippy::disallowed_methods)]
    let end = Utc::now() - Span::days(1);
    let step = Span::seconds(365 * 86_400 / n.max(1) as i64);
    let mut written = 0;
    while written < n {
        let batch = 1000.min(n - written);
        store
            .transact(&mut |tx| {
                for i in 0..batch {
                    let k = written + i;
                    let at = end - step * (n - k) as i32;
                    let key = format!("old-{k}");
                    let ev = event(&key);
                    let id = tx.next_incident_id()?;
                    let opened = Incident::open(id, "bench", "pd", &ev, at);
                    let resolved = opened
                        .incident
                        .resolve(Actor::System, None, at + Span::minutes(20))
                        .unwrap();
                    tx.put_incident(&resolved.incident)?;
                    for e in opened.entries.iter().chain(&resolved.entries) {
                        tx.append_timeline(id, e)?;
                    }
                    tx.record_event(&StoredEvent {
                        received_at: at,
                        integration: "pd".into(),
                        incident: Some(id),
                        event: ev,
                    })?;
                }
                Ok(())
            })
            .unwrap();
        store.flush().unwrap();
        written += batch;
        if written % 50_000 == 0 {
            eprintln!(
                "filled {written} of {n} in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    started.elapsed()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server process, killed when dropped (so a failed run leaves none behind).
struct Server(Child);

impl Server {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server; how long until `/readyz` said ready.
async fn start(config_path: &Path, port: u16) -> (Server, Duration) {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(config_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("start tocsin");
    let http = reqwest::Client::new();
    for _ in 0..6000 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return (Server(child), t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tocsin did not start");
}

/// A `/proc/PID/status` figure, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_bytes(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i])
}

/// The median of `runs` timed GETs of `path`, checking each is a 200.
async fn timed_get(http: &reqwest::Client, url: &str, runs: usize) -> (f64, f64, usize) {
    let mut lat = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let r = http.get(url).bearer_auth(API_TOKEN).send().await.unwrap();
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        bytes = r.bytes().await.unwrap().len();
        lat.push(t.elapsed());
    }
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 1.0), bytes)
}

struct Figures {
    fill: Option<Duration>,
    disk_per_incident: Option<f64>,
    ready: Duration,
    rss_start: f64,
    metrics: (f64, f64),
    open_list: (f64, f64, usize),
    acked_list: (f64, f64),
    history_page: (f64, f64, usize),
    /// p50 and p99 of a new alert: right after start, and after a pause.
    alerts: Vec<(f64, f64)>,
    rss_peak: f64,
}

async fn measure(n: usize) -> Figures {
    let dir = tempfile::Builder::new()
        .prefix("tocsin-history")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .unwrap();
    let data = dir.path().join("data");
    let fill_took = (n > 0).then(|| fill(&data, n));
    let disk = (n > 0).then(|| dir_bytes(&data) as f64 / n as f64);
    let port = free_port();
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(&cfg, config(&data, port)).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Open some incidents, then restart: the restart is what is timed.
    let (server, _) = start(&cfg, port).await;
    let enqueue = |key: String| {
        http.post(format!("{base}/v2/enqueue"))
            .header("content-type", "application/json")
            .body(
                json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": key,
                "payload": {"summary": "High error rate on api", "source": "bench", "severity": "critical"}})
                .to_string(),
            )
            .send()
    };
    for i in 0..OPEN {
        assert_eq!(enqueue(format!("open-{i}")).await.unwrap().status(), 202);
    }
    server.stop();
    let (server, ready) = start(&cfg, port).await;
    let pid = server.id();
    let rss_start = status_mib(pid, "VmRSS:");
    let (m50, mmax, _) = timed_get(&http, &format!("{base}/metrics"), 20).await;
    let open_list = timed_get(
        &http,
        &format!("{base}/v1/incidents?status=triggered&limit=100"),
        20,
    )
    .await;
    let (a50, amax, _) = timed_get(
        &http,
        &format!("{base}/v1/incidents?status=acknowledged&limit=10"),
        20,
    )
    .await;
    let middle = (n / 2).max(1);
    let history_page = timed_get(
        &http,
        &format!("{base}/v1/incidents?status=resolved&limit=100&before=INC-{middle}"),
        20,
    )
    .await;
    let mut rounds = Vec::new();
    for round in 0..2 {
        if round == 1 {
            // Again once sled has had time to settle after the fill.
            tokio::time::sleep(Duration::from_secs(SETTLE_SECS)).await;
        }
        let mut lat = Vec::new();
        for i in 0..2000 {
            let t = Instant::now();
            let r = enqueue(format!("new-{round}-{i}")).await.unwrap();
            assert_eq!(r.status(), 202);
            let _ = r.bytes().await;
            lat.push(t.elapsed());
        }
        lat.sort();
        rounds.push((pct(&lat, 0.5), pct(&lat, 0.99)));
    }
    // Scrapes once more, then the peak over the whole run.
    timed_get(&http, &format!("{base}/metrics"), 5).await;
    let rss_peak = status_mib(pid, "VmHWM:");
    server.stop();
    Figures {
        fill: fill_took,
        disk_per_incident: disk,
        ready,
        rss_start,
        metrics: (m50, mmax),
        open_list,
        acked_list: (a50, amax),
        history_page,
        alerts: rounds,
        rss_peak,
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_INCIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let empty = measure(0).await;
    let full = measure(n).await;
    if let (Some(f), Some(d)) = (full.fill, full.disk_per_incident) {
        println!(
            "filled {n} resolved incidents in {:.0} s; {:.1} KB on disk each",
            f.as_secs_f64(),
            d / 1000.0
        );
    }
    println!("| operation | empty store | {n} resolved incidents |");
    println!("| --- | --- | --- |");
    let row = |what: &str, a: String, b: String| println!("| {what} | {a} | {b} |");
    row(
        "ready after a restart",
        format!("{:.0} ms", ms(empty.ready)),
        format!("{:.0} ms", ms(full.ready)),
    );
    row(
        "RSS after start",
        format!("{:.0} MiB", empty.rss_start),
        format!("{:.0} MiB", full.rss_start),
    );
    row(
        "`/metrics` scrape, median (max of 20)",
        format!("{:.2} ms ({:.2})", empty.metrics.0, empty.metrics.1),
        format!("{:.2} ms ({:.2})", full.metrics.0, full.metrics.1),
    );
    row(
        &format!("open listing (`status=triggered`, {OPEN} open), median (max)"),
        format!("{:.2} ms ({:.2})", empty.open_list.0, empty.open_list.1),
        format!("{:.2} ms ({:.2})", full.open_list.0, full.open_list.1),
    );
    row(
        "`status=acknowledged&limit=10` (none match), median (max)",
        format!("{:.2} ms ({:.2})", empty.acked_list.0, empty.acked_list.1),
        format!("{:.2} ms ({:.2})", full.acked_list.0, full.acked_list.1),
    );
    row(
        "a page of history (`status=resolved&limit=100&before=`), median (max)",
        format!(
            "{:.2} ms ({:.2}), {} bytes",
            empty.history_page.0, empty.history_page.1, empty.history_page.2
        ),
        format!(
            "{:.2} ms ({:.2}), {} bytes",
            full.history_page.0, full.history_page.1, full.history_page.2
        ),
    );
    for (i, when) in ["right after start", "after a pause"].iter().enumerate() {
        row(
            &format!("a new alert {when}, 1 connection, p50 / p99"),
            format!("{:.2} / {:.2} ms", empty.alerts[i].0, empty.alerts[i].1),
            format!("{:.2} / {:.2} ms", full.alerts[i].0, full.alerts[i].1),
        );
    }
    row(
        "peak RSS (scrapes included)",
        format!("{:.0} MiB", empty.rss_peak),
        format!("{:.0} MiB", full.rss_peak),
    );
}
