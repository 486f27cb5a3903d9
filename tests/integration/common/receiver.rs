//! A local webhook receiver that records every request and answers from a
//! script (500, then 429 with Retry-After, then 200...), like a flaky
//! real-world endpoint.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub idempotency_key: String,
    pub signature: Option<String>,
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
    /// The status the receiver answered.
    pub answered: u16,
}

/// What to answer next.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    RetryAfter(u16, u32),
    /// Never answer (a wedged receiver).
    Hang,
    /// Redirect with this status to `/landing` on this receiver, which
    /// answers any method with 200 (what a moved endpoint looks like).
    Redirect(u16),
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: HashMap<String, VecDeque<Answer>>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
    notify: Arc<tokio::sync::Notify>,
}

impl Receiver {
    pub async fn start() -> Self {
        let mut r = Receiver::default();
        let app = Router::new()
            .route("/{*path}", axum::routing::any(handle))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}/{}",
            self.addr.unwrap(),
            path.trim_start_matches('/')
        )
    }

    /// Answers for the next requests to `path`, in order; then 200.
    pub fn script(&self, path: &str, answers: &[Answer]) {
        self.inner.lock().script.insert(
            format!("/{}", path.trim_start_matches('/')),
            answers.iter().copied().collect(),
        );
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().received.clone()
    }

    /// Requests to `path`.
    pub fn at(&self, path: &str) -> Vec<Received> {
        let p = format!("/{}", path.trim_start_matches('/'));
        self.received()
            .into_iter()
            .filter(|r| r.path == p)
            .collect()
    }

    /// Distinct idempotency keys delivered with a 2xx, with how many 2xx each got.
    pub fn delivered_keys(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.received() {
            if (200..300).contains(&r.answered) {
                *m.entry(r.idempotency_key).or_default() += 1;
            }
        }
        m
    }

    /// Waits until at least `n` requests arrived, up to `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.lock().received.len() >= n {
                return true;
            }
            let notified = self.notify.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inner.lock().received.len() >= n;
            }
        }
    }
}

async fn handle(
    State(r): State<Receiver>,
    method: axum::http::Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{path}");
    let answer = r
        .inner
        .lock()
        .script
        .get_mut(&path)
        .and_then(|q| q.pop_front())
        .unwrap_or(Answer::Status(200));
    if let Answer::Hang = answer {
        std::future::pending::<()>().await;
    }
    let status = match answer {
        Answer::Status(s) | Answer::RetryAfter(s, _) | Answer::Redirect(s) => s,
        Answer::Hang => unreachable!(),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    r.inner.lock().received.push(Received {
        method: method.to_string(),
        path,
        idempotency_key: header("idempotency-key").unwrap_or_default(),
        signature: header("x-tocsin-signature"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
        answered: status,
    });
    r.notify.notify_waiters();
    let code = StatusCode::from_u16(status).unwrap();
    match answer {
        Answer::RetryAfter(_, secs) => {
            (code, [("retry-after", secs.to_string())], "slow down").into_response()
        }
        Answer::Redirect(_) => (code, [("location", "/landing")], "moved").into_response(),
        _ => (code, "ok").into_response(),
    }
}
