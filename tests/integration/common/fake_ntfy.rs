//! A fake ntfy server: JSON publishing to the root URL as ntfy documents it
//! (<https://docs.ntfy.sh/publish/#publish-as-json>), refusing what ntfy
//! refuses: a body that is not a JSON object with a valid `topic` (40001,
//! 40009), a priority outside 1..=5 (40007), more than three actions or an
//! `http` action without a label or URL (40018), a wrong or missing token
//! when the server wants one (40101/40301); scripted 429s (42901).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

pub const NTFY_TOKEN: &str = "tk_testtokentesttokentesttoken1";

#[derive(Default)]
struct Inner {
    published: Vec<Value>,
    refused: Vec<u32>,
    rate_limited: u32,
}

#[derive(Clone, Default)]
pub struct FakeNtfy {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
}

impl FakeNtfy {
    pub async fn start() -> Self {
        let mut f = FakeNtfy::default();
        let app = Router::new()
            .route("/", axum::routing::post(publish).put(publish))
            .with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        f.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        f
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn published(&self) -> Vec<Value> {
        self.inner.lock().published.clone()
    }

    pub fn refused(&self) -> Vec<u32> {
        self.inner.lock().refused.clone()
    }

    /// Answer 429 to the next `n` publishes.
    pub fn rate_limit(&self, n: u32) {
        self.inner.lock().rate_limited = n;
    }
}

fn error(f: &FakeNtfy, http: u16, code: u32, text: &str) -> Response {
    f.inner.lock().refused.push(code);
    (
        StatusCode::from_u16(http).unwrap(),
        axum::Json(json!({"code": code, "http": http, "error": text, "link": "https://ntfy.sh/docs/publish/"})),
    )
        .into_response()
}

async fn publish(State(f): State<FakeNtfy>, headers: HeaderMap, body: Bytes) -> Response {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => return error(&f, 401, 40101, "unauthorized"),
        Some(v) if v != format!("Bearer {NTFY_TOKEN}") => {
            return error(&f, 403, 40301, "forbidden");
        }
        _ => {}
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return error(&f, 400, 40001, "invalid request: invalid JSON");
    };
    let topic = msg["topic"].as_str().unwrap_or_default();
    if topic.is_empty()
        || topic.len() > 64
        || !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return error(&f, 400, 40009, "invalid request: topic invalid");
    }
    if let Some(p) = msg.get("priority")
        && !p.as_u64().is_some_and(|p| (1..=5).contains(&p))
    {
        return error(&f, 400, 40007, "invalid priority");
    }
    let actions = msg["actions"].as_array().cloned().unwrap_or_default();
    if actions.len() > 3
        || actions.iter().any(|a| {
            a["action"] != "http"
                || a["label"].as_str().unwrap_or_default().is_empty()
                || !a["url"].as_str().unwrap_or_default().starts_with("http")
        })
    {
        return error(&f, 400, 40018, "invalid request: actions invalid");
    }
    {
        let mut i = f.inner.lock();
        if i.rate_limited > 0 {
            i.rate_limited -= 1;
            drop(i);
            return error(
                &f,
                429,
                42901,
                "limit reached: too many requests, please be nice",
            );
        }
        i.published.push(msg.clone());
    }
    axum::Json(json!({
        "id": "sPs1i4wM7Jqa",
        "time": 1_795_000_000,
        "event": "message",
        "topic": topic,
        "title": msg["title"],
        "message": msg["message"],
        "priority": msg["priority"],
    }))
    .into_response()
}
