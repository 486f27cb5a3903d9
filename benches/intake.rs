//! Intake load generator: the release `tocsin` binary on loopback, PagerDuty
//! Events v2 triggers, one event per request, N keep-alive connections.
//!
//! After each run the server is killed with SIGKILL and restarted on the same
//! data directory, and every event that got a 202 must be there: the figures
//! are for durable intake, not for writes that might still be in memory.
//!
//! `cargo bench --bench intake` (optionally `-- --seconds 10 --connections 1,8`).
//! `-- --paging` uses the example config's shape instead: every new incident
//! escalates through a two-step policy over an on-call schedule and pages by
//! the `log` contact method (a WARN line, recorded on the timeline), with
//! info logging.

use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "bench-pagerduty-key";

/// tocsin.example.toml's users, schedule and escalation policy, paging by log.
const PAGING: &str = r#"
[[users]]
name = "alice"
contact_methods = [{ kind = "log" }]
[[users]]
name = "bob"
contact_methods = [{ kind = "log" }]
[[users]]
name = "carol"
contact_methods = [{ kind = "log" }]
[[schedules]]
name = "primary"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
start = "2026-01-05T09:00:00"
handoff = "0 0 9 * * Mon"
[[escalation_policies]]
name = "default"
repeat = 2
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }]
delay = "5m"
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }, { user = "carol" }]
delay = "10m"
"#;

fn config(data: &Path, port: u16, paging: bool) -> String {
    let (level, extra, policy) = if paging {
        ("info", PAGING, "escalation_policy = \"default\"")
    } else {
        ("warn", "", "")
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{}"
[api]
token = "bench-api-token"
[log]
level = "{level}"
# Every event opens its own incident here: the flood limits would group them.
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
{extra}
[[services]]
name = "bench"
{policy}
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "{KEY}"
service = "bench"
"#,
        data.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(config_path: &Path, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(config_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("start tocsin");
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tocsin did not start");
}

struct RunResult {
    acked: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    durable: u64,
}

async fn run(connections: usize, seconds: u64, paging: bool) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(&cfg, config(&dir.path().join("data"), port, paging)).unwrap();
    let mut server = start(&cfg, port).await;
    let url = format!("http://127.0.0.1:{port}/v2/enqueue");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (stop, url) = (stop.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut lat = Vec::with_capacity(100_000);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"routing_key": KEY, "event_action": "trigger",
                    "dedup_key": format!("c{c}-{n}"),
                    "payload": {"summary": "High error rate on api", "source": "bench", "severity": "critical",
                                "custom_details": {"rate": "12%", "threshold": "5%"}}})
                .to_string();
                n += 1;
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status().as_u16(), 202);
                let _ = r.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let acked = latencies.len() as u64;

    // SIGKILL right after the last 2xx, restart, count what is on disk.
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = start(&cfg, port).await;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/stats"))
        .bearer_auth("bench-api-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let durable = body["events"].as_u64().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    latencies.sort();
    RunResult {
        acked,
        elapsed,
        latencies,
        durable,
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: Vec<usize> = arg("--connections")
        .unwrap_or_else(|| "1,8".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let paging = args.iter().any(|a| a == "--paging");
    println!(
        "durable intake, PagerDuty Events v2 trigger, one event per request, {seconds} s per run{}",
        if paging {
            ", every new incident paging (the example config's shape)"
        } else {
            ""
        }
    );
    println!("| connections | events/s | p50 ms | p99 ms | max ms | 2xx | durable after SIGKILL |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for c in conns {
        let r = run(c, seconds, paging).await;
        println!(
            "| {c} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.acked as f64 / r.elapsed.as_secs_f64(),
            pct(&r.latencies, 0.50),
            pct(&r.latencies, 0.99),
            pct(&r.latencies, 1.0),
            r.acked,
            r.durable
        );
        assert_eq!(r.durable, r.acked, "an acknowledged event was lost");
    }
}
