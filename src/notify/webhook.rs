//! Outbound webhooks: a JSON body, an `Idempotency-Key` header, and
//! `X-Tocsin-Signature: sha256=<hex HMAC-SHA256 of the body>` with the
//! target's secret, so receivers can check the page came from tocsin and
//! drop retries they already handled.

use super::{DeliveryError, OutboxEntry};
use crate::secret::Secret;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

/// The signature header value for `body` under `secret`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of a page (or of an audit chain head).
pub fn body(entry: &OutboxEntry) -> serde_json::Value {
    if let super::Job::AuditHead { head, entries } = &entry.job {
        // No title or details: the receiver is an audit log, not a responder.
        return json!({
            "event": "incident.audit_head",
            "idempotency_key": entry.key,
            "incident": {
                "id": entry.incident.to_string(),
                "uid": entry.incident_uid,
                "service": entry.page.service,
            },
            "head": head,
            "entries": entries,
            "at": entry.created_at,
        });
    }
    json!({
        "event": "incident.page",
        "idempotency_key": entry.key,
        "recipient": entry.recipient,
        "incident": {
            "id": entry.page.incident.to_string(),
            "title": entry.page.title,
            "severity": entry.page.severity,
            "service": entry.page.service,
        },
        "escalation": { "step": entry.page.step, "round": entry.page.round },
        "message": entry.page.headline(),
    })
}

/// POSTs `entry` to `url`.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&Secret>,
    entry: &OutboxEntry,
) -> Result<(), DeliveryError> {
    let payload = serde_json::to_vec(&body(entry)).expect("JSON");
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", &entry.key);
    if let Some(s) = secret {
        req = req.header("x-tocsin-signature", signature(s, &payload));
    }
    let resp = req.body(payload).send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        DeliveryError::retryable(format!("webhook {what}: {}", without_url(&e)))
    })?;
    classify(resp.status(), resp.headers())
}

/// Maps an HTTP answer to a delivery result: 2xx delivered; 408, 429 and
/// 5xx worth retrying (honouring `Retry-After`); other 4xx permanent.
///
/// Redirects are never followed (the client has no redirect policy): a
/// 301/302/303 would be replayed as a GET without the page, and the landing
/// page's 200 would record a page nobody got. A 3xx is a retryable failure
/// naming its `Location`, so the timeline shows where the receiver moved.
pub fn classify(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no Location header");
        return Err(DeliveryError::retryable(format!(
            "receiver answered {status}, a redirect to {location}: tocsin does not follow redirects, configure the final URL"
        )));
    }
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    let retryable = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error();
    Err(DeliveryError {
        message: format!("receiver answered {status}"),
        retryable,
        retry_after,
    })
}

/// reqwest's errors name the URL, which may carry a token: keep it out.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let s = Secret::new("Jefe");
        assert_eq!(
            signature(&s, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn classifies_statuses() {
        let none = reqwest::header::HeaderMap::new();
        assert!(classify(StatusCode::NO_CONTENT, &none).is_ok());
        assert!(
            classify(StatusCode::BAD_GATEWAY, &none)
                .unwrap_err()
                .retryable
        );
        assert!(
            !classify(StatusCode::NOT_FOUND, &none)
                .unwrap_err()
                .retryable
        );
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &h).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_redirect_is_a_retryable_failure_naming_its_location() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LOCATION,
            "https://new.example/hook".parse().unwrap(),
        );
        for status in [
            StatusCode::MOVED_PERMANENTLY,
            StatusCode::FOUND,
            StatusCode::SEE_OTHER,
            StatusCode::TEMPORARY_REDIRECT,
            StatusCode::PERMANENT_REDIRECT,
        ] {
            let e = classify(status, &h).unwrap_err();
            assert!(e.retryable, "{status}");
            assert!(
                e.message.contains("https://new.example/hook"),
                "{}",
                e.message
            );
        }
    }
}
