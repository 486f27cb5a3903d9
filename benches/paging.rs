//! Paging benchmarks: the release `tocsin` binary on loopback paging a
//! webhook receiver that runs inside this process.
//!
//! 1. Alert-to-first-page latency: PagerDuty Events v2 triggers, each with
//!    its own dedup key, so each opens an incident whose one-step policy
//!    pages `alice` by webhook at once. Latency is from the moment the
//!    trigger is sent to the moment the receiver sees the page.
//! 2. Restart with many pending timers: a data directory is written
//!    in-process (one incident with one escalation timer each), then the
//!    binary is started on it and timed until `/readyz` answers 200. With
//!    timers an hour away nothing may page; with timers a minute overdue
//!    every one fires at start and the run is timed until all pages arrived.
//!
//! `cargo bench --bench paging` (optionally `-- --pages 1000 --timers 100000 --senders 1,8`).
//! `-- --only-pending --timers N` runs only the restart with pending timers;
//! `-- --only-overdue --overdue N --wait S` only the one with overdue timers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tocsin::clock::{Clock, SystemClock};
use tocsin::escalation::{EscalationState, Timer, TimerKind};
use tocsin::incident::{Incident, IncidentId, Severity, TimelineEvent};
use tocsin::intake::{AlertAction, AlertEvent};
use tocsin::store::{SledStore, Store};

const KEY: &str = "bench-pagerduty-key";
const PROBE_KEY: &str = "bench-probe-key";
const SERVICE: &str = "bench";
const INTEGRATION: &str = "pd";
const POLICY: &str = "page-alice";
/// Incidents written per store transaction when preparing a data directory.
const BATCH: usize = 1000;

fn config(data: &Path, port: u16, webhook: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{data}"
[log]
level = "warn"
# Every event opens its own incident here: the flood limits would group them.
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
[[users]]
name = "alice"
webhook = {{ url = "{webhook}" }}
contact_methods = [{{ kind = "webhook" }}]
[[escalation_policies]]
name = "{POLICY}"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}]
delay = "1h"
[[services]]
name = "{SERVICE}"
escalation_policy = "{POLICY}"
[[integrations]]
name = "{INTEGRATION}"
kind = "pagerduty"
key = "{KEY}"
service = "{SERVICE}"
# New alerts sent while a backlog of timers fires: no policy, no pages.
[[services]]
name = "quiet"
[[integrations]]
name = "probe"
kind = "pagerduty"
key = "{PROBE_KEY}"
service = "quiet"
"#,
        data = data.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One page as the receiver first saw it.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    /// The incident title, which the bench sets to the trigger's dedup key.
    title: String,
}

#[derive(Default)]
struct Arrivals {
    /// By `Idempotency-Key`, first arrival only.
    first: HashMap<String, Arrival>,
    /// Every request, duplicates included.
    requests: u64,
}

/// A webhook receiver on 127.0.0.1:0 that answers 200 to everything and
/// records when each idempotency key first arrived.
#[derive(Clone)]
struct Receiver {
    inner: Arc<Mutex<Arrivals>>,
    url: String,
}

impl Receiver {
    async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Arrivals::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alice", listener.local_addr().unwrap());
        let r = Receiver { inner, url };
        let app = Router::new()
            .route("/alice", post(record))
            .with_state(r.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        r
    }

    fn distinct(&self) -> usize {
        self.inner.lock().first.len()
    }

    fn requests(&self) -> u64 {
        self.inner.lock().requests
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.inner.lock().first.values().cloned().collect()
    }

    /// Waits until `n` distinct pages arrived, up to `timeout`.
    async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.distinct() < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

async fn record(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> &'static str {
    let at = Instant::now();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let title = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["incident"]["title"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut a = r.inner.lock();
    a.requests += 1;
    a.first.entry(key).or_insert(Arrival { at, title });
    "ok"
}

fn spawn_server(config_path: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(config_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("start tocsin")
}

/// Starts the server and polls `/readyz` every 5 ms; returns the server and
/// the time from spawn to the first 200.
async fn start_timed(config_path: &Path, port: u16) -> (Child, Duration) {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    let mut child = spawn_server(config_path);
    loop {
        if let Ok(r) = http.get(&url).timeout(Duration::from_secs(5)).send().await
            && r.status().is_success()
        {
            return (child, started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tocsin exited before it was ready: {status}");
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tocsin was not ready after 180 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGTERM, then wait for a clean exit (SIGKILL after 30 s).
async fn terminate(mut child: Child) -> Duration {
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tocsin did not stop within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct LatencyResult {
    sent: usize,
    received: usize,
    requests: u64,
    latencies: Vec<Duration>,
    acks: Vec<Duration>,
}

/// Sends `pages` triggers over `senders` connections, each sender waiting
/// for its 202 before the next, and times each page's arrival.
async fn latency_run(pages: usize, senders: usize) -> LatencyResult {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(&cfg, config(&dir.path().join("data"), port, &recv.url)).unwrap();
    let (server, _) = start_timed(&cfg, port).await;
    let url = format!("http://127.0.0.1:{port}/v2/enqueue");
    let mut tasks = Vec::new();
    for s in 0..senders {
        let url = url.clone();
        let count = pages / senders + usize::from(s < pages % senders);
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut sent = Vec::with_capacity(count);
            for i in 0..count {
                let dedup = format!("s{s}-{i}");
                let body =
                    json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": dedup,
                    "payload": {"summary": dedup, "source": "bench", "severity": "critical"}})
                    .to_string();
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status().as_u16(), 202);
                let answer: serde_json::Value = r.json().await.unwrap();
                assert_eq!(answer["dedup_key"], dedup.as_str());
                sent.push((dedup, t, t.elapsed()));
            }
            sent
        }));
    }
    let mut sent_at = HashMap::new();
    let mut acks = Vec::new();
    for t in tasks {
        for (dedup, at, ack) in t.await.unwrap() {
            sent_at.insert(dedup, at);
            acks.push(ack);
        }
    }
    recv.wait_for(pages, Duration::from_secs(30)).await;
    // Anything still to come would be a duplicate; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminate(server).await;
    let mut latencies: Vec<Duration> = recv
        .arrivals()
        .iter()
        .map(|a| {
            let sent = sent_at
                .get(&a.title)
                .unwrap_or_else(|| panic!("a page for an unknown trigger: {}", a.title));
            a.at.saturating_duration_since(*sent)
        })
        .collect();
    latencies.sort();
    acks.sort();
    LatencyResult {
        sent: sent_at.len(),
        received: recv.distinct(),
        requests: recv.requests(),
        latencies,
        acks,
    }
}

/// Writes `count` open incidents, each with one escalation timer (run step
/// 1 of the policy) due at `due`, the way tocsin itself stores them.
fn write_store(data: &Path, count: usize, due: DateTime<Utc>) {
    let store = SledStore::open(data).unwrap();
    let now = SystemClock.now();
    let mut written = 0;
    while written < count {
        let batch = (count - written).min(BATCH);
        store
            .transact(&mut |tx| {
                for _ in 0..batch {
                    let id = tx.next_incident_id()?;
                    let dedup = format!("restart-{}", id.0);
                    let event = AlertEvent {
                        dedup_key: dedup.clone(),
                        fingerprint: Some(dedup.clone()),
                        action: AlertAction::Trigger,
                        summary: dedup.clone(),
                        incident_title: None,
                        source: "bench".into(),
                        severity: Some(Severity::Sev1),
                        labels: Default::default(),
                        details: serde_json::Value::Null,
                        links: Vec::new(),
                        left_out: None,
                        expires_at: None,
                    };
                    let change = Incident::open(id, SERVICE, INTEGRATION, &event, now);
                    let mut incident = change.incident;
                    let timer = Timer {
                        due,
                        incident: id,
                        generation: 0,
                        kind: TimerKind::Escalate { step: 0, round: 0 },
                    };
                    incident.escalation = Some(EscalationState {
                        policy: POLICY.into(),
                        generation: 0,
                        step: 0,
                        round: 0,
                        timer: Some(timer),
                        exhausted: false,
                    });
                    tx.put_incident(&incident)?;
                    for entry in &change.entries {
                        tx.append_timeline(id, entry)?;
                    }
                    tx.put_timer(&timer)?;
                    tx.set_open_incident(SERVICE, &dedup, Some(id))?;
                }
                Ok(())
            })
            .unwrap();
        written += batch;
    }
    store.flush().unwrap();
    assert_eq!(store.timer_count().unwrap(), count as u64);
}

/// Prepares a data directory off the async runtime; returns how long it took.
async fn prepare(data: &Path, count: usize, due: DateTime<Utc>) -> Duration {
    let started = Instant::now();
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || write_store(&data, count, due))
        .await
        .unwrap();
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let pages: usize = arg("--pages").and_then(|s| s.parse().ok()).unwrap_or(1000);
    let timers: usize = arg("--timers")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // `--only-pending`: just the restart with pending timers (for large
    // counts like 1,000,000, where firing them all would take minutes).
    let only_pending = args.iter().any(|a| a == "--only-pending");
    // `--only-overdue`: just the restart with overdue timers, with
    // `--overdue N` of them (default: `--timers`), waiting up to `--wait`
    // seconds (default 240) for their pages.
    let only_overdue = args.iter().any(|a| a == "--only-overdue");
    let overdue: usize = arg("--overdue")
        .and_then(|s| s.parse().ok())
        .unwrap_or(timers);
    let wait: u64 = arg("--wait").and_then(|s| s.parse().ok()).unwrap_or(240);
    let senders: Vec<usize> = if only_pending || only_overdue {
        Vec::new()
    } else {
        arg("--senders")
            .unwrap_or_else(|| "1,8".into())
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect()
    };

    println!("### Alert-to-first-page latency");
    println!();
    println!(
        "{pages} PagerDuty Events v2 triggers, each opening an incident that pages one webhook at once; \
         latency from sending the trigger to the page reaching the receiver"
    );
    println!();
    println!(
        "| senders | triggers | pages received | requests | p50 ms | p90 ms | p99 ms | max ms | 202 p50 ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in senders {
        let r = latency_run(pages, s).await;
        println!(
            "| {s} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.sent,
            r.received,
            r.requests,
            pct(&r.latencies, 0.50),
            pct(&r.latencies, 0.90),
            pct(&r.latencies, 0.99),
            pct(&r.latencies, 1.0),
            pct(&r.acks, 0.50),
        );
        assert_eq!(r.received, r.sent, "a trigger was never paged");
    }

    if !only_overdue {
        pending_restarts(timers).await;
    }
    if only_pending {
        return;
    }
    overdue_restart(overdue, wait).await;
}

/// Restarts with `timers` timers due in an hour: start-up must not depend
/// on them.
async fn pending_restarts(timers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let port = free_port();
    let data = dir.path().join("data");
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(&cfg, config(&data, port, &recv.url)).unwrap();
    let due = SystemClock.now() + chrono::Duration::hours(1);
    let wrote = prepare(&data, timers, due).await;
    let size = dir_size(&data);
    println!();
    println!("### Restart with {timers} pending timers");
    println!();
    println!(
        "{timers} open incidents, each with one escalation timer due in 1 hour, written in-process \
         ({BATCH} per transaction) in {:.1} s, {:.0} MiB on disk; spawn to first 200 from /readyz (polled every 5 ms)",
        wrote.as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    println!();
    println!("| run | ready ms | stop after SIGTERM ms | pages sent |");
    println!("| --- | --- | --- | --- |");
    for run in 1..=3 {
        let (server, ready) = start_timed(&cfg, port).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stop = terminate(server).await;
        println!(
            "| {run} | {:.0} | {:.0} | {} |",
            ready.as_secs_f64() * 1000.0,
            stop.as_secs_f64() * 1000.0,
            recv.requests()
        );
    }
    assert_eq!(recv.requests(), 0, "a timer an hour away fired");
}

/// A restart with `timers` timers a minute overdue: every one fires at
/// start. Waits up to `wait` seconds for the pages, then reads from the
/// store when each timer fired and when its page was recorded.
async fn overdue_restart(timers: usize, wait: u64) {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let port = free_port();
    let data = dir.path().join("data");
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(&cfg, config(&data, port, &recv.url)).unwrap();
    let due = SystemClock.now() - chrono::Duration::seconds(60);
    let wrote = prepare(&data, timers, due).await;
    let spawned = Instant::now();
    let spawned_utc = SystemClock.now();
    let (server, ready) = start_timed(&cfg, port).await;
    // Meanwhile new alerts keep coming, one every 20 ms, each timed to its
    // 202: the backlog shares the writer with them.
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = tokio::spawn(probe_intake(port, probing.clone()));
    let all = recv.wait_for(timers, Duration::from_secs(wait)).await;
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut probes = probe.await.unwrap();
    probes.sort();
    let done = spawned.elapsed();
    let stop = terminate(server).await;
    let arrivals = recv.arrivals();
    let first = arrivals.iter().map(|a| a.at).min();
    let last = arrivals.iter().map(|a| a.at).max();
    let since = |t: Option<Instant>| {
        t.map(|t| t.duration_since(spawned).as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let span = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => f64::NAN,
    };
    println!();
    println!("### Restart with {timers} timers 1 minute overdue");
    println!();
    println!(
        "the same data set with every timer due 1 minute before it was written (written in {:.1} s); times from spawn",
        wrote.as_secs_f64()
    );
    println!();
    println!(
        "| timers | ready ms | first page s | last page s | pages received | requests | pages/s (first to last) | pages/s (from spawn) | stop after SIGTERM ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {timers} | {:.0} | {:.2} | {:.2} | {} | {} | {:.0} | {:.0} | {:.0} |",
        ready.as_secs_f64() * 1000.0,
        since(first),
        since(last),
        arrivals.len(),
        recv.requests(),
        arrivals.len() as f64 / span,
        arrivals.len() as f64 / since(last),
        stop.as_secs_f64() * 1000.0,
    );
    if !all {
        println!();
        println!(
            "(stopped waiting after {:.0} s with {} of {timers} pages)",
            done.as_secs_f64(),
            arrivals.len()
        );
    }

    // When each timer fired and its page was recorded, from the incidents'
    // own timelines: the EscalationStep entry is written in the transaction
    // that fires the timer, the Paged entry in the one that records the
    // webhook's 2xx.
    let (fired, paged) = tokio::task::spawn_blocking(move || firing_times(&data, timers))
        .await
        .unwrap();
    let overdue_at_spawn = (spawned_utc - due).num_milliseconds() as f64 / 1000.0;
    println!();
    println!(
        "Per timer, read back from the store: seconds after spawn at which it fired and its page was recorded \
         (each timer was already {overdue_at_spawn:.1} s overdue at spawn; add that for the full lateness)"
    );
    println!();
    println!("| what | count | p50 s | p99 s | max s |");
    println!("| --- | --- | --- | --- | --- |");
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "| new alert's 202 while the backlog fires (one every 20 ms) | {} | {:.4} | {:.4} | {:.4} |",
        probes.len(),
        secs(probes.get(probes.len() / 2).copied().unwrap_or_default()),
        secs(
            probes
                .get((probes.len() as f64 * 0.99) as usize)
                .copied()
                .unwrap_or_default()
        ),
        secs(probes.last().copied().unwrap_or_default()),
    );
    for (what, times) in [("timer fired", fired), ("page recorded", paged)] {
        let mut secs: Vec<f64> = times
            .iter()
            .map(|t| (*t - spawned_utc).num_milliseconds() as f64 / 1000.0)
            .collect();
        secs.sort_by(f64::total_cmp);
        let q = |p: f64| {
            secs.get(((secs.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "| {what} | {} | {:.2} | {:.2} | {:.2} |",
            secs.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
}

/// Sends a trigger to the probe integration every 20 ms while `on`, each
/// with its own dedup key; returns how long each took to get its 202.
async fn probe_intake(port: u16, on: Arc<std::sync::atomic::AtomicBool>) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v2/enqueue");
    let mut took = Vec::new();
    let mut n = 0;
    while on.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let body = json!({"routing_key": PROBE_KEY, "event_action": "trigger", "dedup_key": format!("probe-{n}"),
                          "payload": {"summary": "probe", "source": "bench", "severity": "warning"}});
        let t = Instant::now();
        let r = http.post(&url).json(&body).send().await.expect("probe");
        assert_eq!(r.status().as_u16(), 202);
        took.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took
}

/// For incidents 1..=count: when the first escalation step ran (the timer
/// fired) and when the first page was recorded.
fn firing_times(data: &Path, count: usize) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let store = SledStore::open(data).unwrap();
    let (mut fired, mut paged) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for id in 1..=count as u64 {
        let timeline = store.timeline(IncidentId(id)).unwrap();
        if let Some(e) = timeline
            .iter()
            .find(|e| matches!(e.event, TimelineEvent::EscalationStep { .. }))
        {
            fired.push(e.at);
        }
        if let Some(e) = timeline
            .iter()
            .find(|e| matches!(e.event, TimelineEvent::Paged { .. }))
        {
            paged.push(e.at);
        }
    }
    (fired, paged)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
