//! Connection hygiene: hostile connections (idle, trickling headers,
//! trickling bodies) cannot stop intake, a trickle cannot extend the
//! request deadline, idle connections are closed, excess ones refused.

use crate::common::*;
use std::sync::Arc;
use std::time::Duration;
use tocsin::clock::SystemClock;
use tocsin::http::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn limits(max_connections: usize, request: Duration, idle: Duration) -> Limits {
    Limits {
        max_connections,
        request_timeout: request,
        idle_timeout: idle,
        shutdown_grace: Duration::from_secs(5),
    }
}

async fn app_with(limits: Limits) -> TestApp {
    spawn_app_with_limits(Arc::new(SystemClock), None, "", limits).await
}

/// Reads until the server closes the connection (or resets it), up to
/// `within`; what it answered and when it closed.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<(String, Instant)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((String::from_utf8_lossy(&out).to_string(), Instant::now()));
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn body_trickle_head(len: usize) -> String {
    format!(
        "POST /hooks/{GENERIC_KEY} HTTP/1.1\r\nHost: tocsin\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's soft open-file limit (Linux).
fn file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_keeps_working_with_2000_hostile_connections_open() {
    // Long timeouts: the sender must get in by eviction, not by waiting
    // for hostile connections to time out.
    let max = 256;
    let app = app_with(limits(
        max,
        Duration::from_secs(60),
        Duration::from_secs(60),
    ))
    .await;
    // Both ends of every connection live in this process: scale to its file limit.
    let hostile = file_limit()
        .map(|l| l.saturating_sub(max + 300).min(2000))
        .unwrap_or(2000);
    let body_tricklers = 100;
    assert!(
        hostile > body_tricklers * 2,
        "file limit too low: {hostile}"
    );
    let rss_before = rss_kib();
    let mut held = Vec::with_capacity(hostile);
    for i in 0..hostile {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        match i % 3 {
            // Idle: never sends a byte.
            0 => {}
            // Slowloris: a request line and half a header.
            1 => s
                .write_all(b"POST /v2/enqueue HTTP/1.1\r\nHost: tocsin\r\nX-Slow: ")
                .await
                .unwrap(),
            // Trickled body: headers, then a few bytes of 1,000 (a bounded
            // number of these: each holds its slot until the deadline).
            _ if i / 3 < body_tricklers => s
                .write_all(format!("{}{{\"summ", body_trickle_head(1000)).as_bytes())
                .await
                .unwrap(),
            _ => {}
        }
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (s, b) = app.pd("trigger", "well-behaved", "a real alert").await;
    let took = started.elapsed();
    assert_eq!(s, 202, "{b}");
    assert!(
        took < Duration::from_secs(2),
        "the sender waited {took:?} behind hostile connections"
    );
    let keys: Vec<String> = app
        .incidents()
        .await
        .iter()
        .map(|i| i["title"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(keys.contains(&"a real alert".to_string()), "{keys:?}");
    // The server holds at most `max` of them; the rest were closed.
    let mut open = 0;
    let mut buf = [0u8; 1];
    for s in &held {
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            _ => {}
        }
    }
    assert!(open <= max, "{open} hostile connections still open");
    let rss_after = rss_kib();
    println!(
        "{hostile} hostile connections: the server held {open} (max_connections {max}); \
         the well-behaved alert took {took:?}; RSS {rss_before:?} KiB -> {rss_after:?} KiB"
    );
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_at_the_deadline_and_nothing_is_stored() {
    let app = app_with(limits(64, Duration::from_secs(2), Duration::from_secs(30))).await;
    let before = app.store_counts();
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let first_byte = Instant::now();
    s.write_all(body_trickle_head(200).as_bytes())
        .await
        .unwrap();
    // One byte every 300 ms: a per-read timeout would never fire.
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        for b in b"{\"summary\":\"slow\",\"source\":\"x\",\"severity\":\"error\""
            .iter()
            .cycle()
        {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(6), r.read(&mut buf))
        .await
        .expect("answered within the deadline")
        .unwrap();
    answer.extend_from_slice(&buf[..n]);
    let at = first_byte.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        at >= Duration::from_millis(1800) && at < Duration::from_secs(4),
        "cut off after {at:?}, the deadline is 2 s"
    );
    println!("a body trickled a byte every 300 ms was cut off after {at:?}");
    assert_eq!(app.store_counts(), before);
    app.stop().await;
}

#[tokio::test]
async fn trickled_headers_are_cut_off_at_the_deadline() {
    let app = app_with(limits(64, Duration::from_secs(2), Duration::from_secs(30))).await;
    let s = TcpStream::connect(app.addr).await.unwrap();
    let first_byte = Instant::now();
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        w.write_all(b"POST /v2/enqueue HTTP/1.1\r\nHost: tocsin\r\n")
            .await
            .unwrap();
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(6), r.read(&mut buf))
        .await
        .expect("closed within the deadline");
    let at = first_byte.elapsed();
    trickle.abort();
    assert!(
        at >= Duration::from_millis(1800) && at < Duration::from_secs(4),
        "cut off after {at:?}, the deadline is 2 s"
    );
    app.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let app = app_with(limits(64, Duration::from_secs(10), Duration::from_secs(1))).await;
    // One that never sends a byte.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    let (answer, closed) = read_to_close(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection is closed");
    assert_eq!(answer, "");
    let after = closed - opened;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}, the idle timeout is 1 s"
    );
    // A keep-alive connection, idle after its request.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: tocsin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let (_, closed) = read_to_close(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    let after = closed - answered;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}, the idle timeout is 1 s"
    );
    app.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_gets_503_at_once() {
    let max = 16;
    let app = app_with(limits(
        max,
        Duration::from_secs(30),
        Duration::from_secs(30),
    ))
    .await;
    let mut busy = Vec::new();
    for _ in 0..max {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(format!("{}{{", body_trickle_head(100)).as_bytes())
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    let (answer, _) = read_to_close(&mut extra, Duration::from_secs(2))
        .await
        .expect("refused at once, not queued");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{answer}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"], "overloaded");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_connections"),
        "{body}"
    );
    // The busy ones were not cut: one finishes its body and is served.
    let mut s = busy.pop().unwrap();
    let rest = format!("{:<99}", r#""summary":"finished after all"}"#);
    s.write_all(rest.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    app.stop().await;
}
