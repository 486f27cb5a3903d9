//! Push pages through ntfy (<https://ntfy.sh>, or a self-hosted server):
//! one JSON publish to the server's base URL, with the topic in the body.
//!
//! ```json
//! {"topic": "alice-pages", "title": "INC-42 SEV1 payments", "message": "Checkout is down",
//!  "priority": 5, "tags": ["rotating_light", "sev1"],
//!  "actions": [{"action": "http", "label": "Acknowledge", "url": "https://tocsin.example/push/...",
//!               "method": "POST", "clear": true}]}
//! ```
//!
//! ntfy answers 200 with the message, or an error like
//! `{"code": 40301, "http": 403, "error": "forbidden", "link": "..."}`.

use super::DeliveryError;
use super::push::{Publish, PushMessage, PushService};
use crate::config::NtfyConfig;
use crate::secret::Secret;
use reqwest::StatusCode;
use serde_json::json;

/// An ntfy server.
pub struct Ntfy {
    http: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

impl Ntfy {
    /// A publisher for `[ntfy]` over `http`.
    pub fn new(http: reqwest::Client, cfg: &NtfyConfig) -> Self {
        Self {
            http,
            url: cfg.url.trim_end_matches('/').to_string() + "/",
            token: cfg.token.clone(),
        }
    }
}

/// The JSON body publishing `message` to `topic`.
pub fn body(topic: &str, message: &PushMessage) -> serde_json::Value {
    let mut body = json!({
        "topic": topic,
        "title": message.title,
        "message": message.message,
        "priority": message.priority,
        "tags": message.tags,
        "actions": message.actions.iter().map(|a| json!({
            "action": "http",
            "label": a.label,
            "url": a.url,
            "method": "POST",
            "clear": true,
        })).collect::<Vec<_>>(),
    });
    if let Some(click) = &message.click {
        body["click"] = json!(click);
    }
    body
}

impl PushService for Ntfy {
    fn name(&self) -> &'static str {
        "ntfy"
    }

    fn publish<'a>(&'a self, topic: &'a str, message: &'a PushMessage) -> Publish<'a> {
        Box::pin(async move {
            let mut req = self.http.post(&self.url).json(&body(topic, message));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            let resp = req.send().await.map_err(|e| {
                DeliveryError::retryable(if e.is_timeout() {
                    "ntfy timed out".to_string()
                } else {
                    "ntfy connection failed".to_string()
                })
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| std::time::Duration::from_secs(s.min(3600)));
            let err: serde_json::Value = resp.json().await.unwrap_or_default();
            let detail = err["error"].as_str().unwrap_or("no detail");
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            Err(DeliveryError {
                message: format!("ntfy answered {status}: {detail}"),
                retryable,
                retry_after: if retryable { retry_after } else { None },
            })
        })
    }
}
