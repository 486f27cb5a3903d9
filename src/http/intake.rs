//! Intake handlers: authenticate the sender, bound and parse the body,
//! apply, answer.
//!
//! Liberal in what they take: every route also answers with a trailing
//! slash, `/hooks` takes PUT as well as POST (Grafana's webhook contact
//! point can use either), and a key may come in the path, as
//! `Authorization: Bearer KEY`, or as HTTP basic auth (the key as password,
//! any user name; or the key as user with no password), all compared in
//! constant time. Strict where the sender's own receiver is strict (the
//! PagerDuty Events API's checks, in its answer shapes). Every refusal writes
//! one info log line (route, integration when the key matched, status and
//! reason) and counts under the integration's name.

use super::{ApiError, AppState};
use crate::config::{IntegrationConfig, IntegrationKind};
use crate::intake::{self, IntakeError, Parsed};
use crate::service::EventOutcome;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::info;

use crate::metrics::{METRICS, labels};

/// Route labels, for logs and metrics.
mod route {
    pub const ENQUEUE: &str = "/v2/enqueue";
    pub const ENQUEUE_V1: &str = "/generic/2010-04-15/create_event.json";
    pub const HOOKS: &str = "/hooks";
    pub const ALERTS: &str = "/api/v2/alerts";
}

fn count(integration: &str, outcome: &str, n: u64) {
    METRICS
        .alerts_received
        .get_or_create(&labels([
            ("integration", integration),
            ("outcome", outcome),
        ]))
        .inc_by(n);
}

/// Logs and counts a refused request: one info line, one count.
fn refused(route: &str, integration: Option<&str>, status: StatusCode, reason: &str) {
    info!(
        route,
        integration = integration.unwrap_or("-"),
        status = status.as_u16(),
        reason,
        "Alert refused"
    );
    count(integration.unwrap_or("unknown"), "rejected", 1);
}

/// Counts and logs the fields a sender sent that tocsin does not know.
fn note_unknown(route: &str, integration: &str, parsed: &Parsed) {
    if parsed.unknown_fields.is_empty() {
        return;
    }
    METRICS
        .intake_unknown_fields
        .get_or_create(&labels([("integration", integration)]))
        .inc_by(parsed.unknown_fields.len() as u64);
    info!(
        route,
        integration,
        fields = %parsed.unknown_fields.join(", "),
        "Alert has fields tocsin does not know; kept with the event"
    );
}

/// What a body rejection (too large, cut off) says, with the limit named.
fn body_message(r: &BytesRejection, limit: usize, setting: &str) -> String {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than {limit} bytes ({setting})")
    } else {
        r.body_text()
    }
}

// ---------------------------------------------------------------- PagerDuty

/// `POST /v2/enqueue`: PagerDuty Events API v2, with PagerDuty's answers.
pub async fn enqueue(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    pagerduty(&st, route::ENQUEUE, body, intake::pagerduty::parse).await
}

/// `POST /generic/2010-04-15/create_event.json`: PagerDuty Events API v1,
/// with v1's answers (`incident_key`, 200).
pub async fn enqueue_v1(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    pagerduty(&st, route::ENQUEUE_V1, body, intake::pagerduty::parse_v1).await
}

async fn pagerduty(
    st: &AppState,
    route: &'static str,
    body: Result<Bytes, BytesRejection>,
    parse: fn(&[u8]) -> Result<intake::pagerduty::EnqueueRequest, IntakeError>,
) -> Response {
    let v1 = route == route::ENQUEUE_V1;
    let key_field = if v1 { "service_key" } else { "routing_key" };
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            let message = body_message(&r, st.config.server.max_body_bytes, "PagerDuty's limit");
            refused(route, None, r.status(), &message);
            return pd_error(r.status(), &message, vec![message.clone()]);
        }
    };
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => {
            // The key, if the body has one that matches, names the sender.
            let integration = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get(key_field)?.as_str().map(str::to_owned))
                .and_then(|k| st.config.integration_by_key(&k))
                .map(|i| i.name.as_str());
            refused(route, integration, StatusCode::BAD_REQUEST, &e.to_string());
            return pd_error(
                StatusCode::BAD_REQUEST,
                "Event object is invalid",
                e.messages(),
            );
        }
    };
    let integration = match st.config.integration_by_key(&req.routing_key) {
        Some(i) if i.kind == IntegrationKind::Pagerduty => i,
        Some(i) => {
            let msg = format!(
                "'{key_field}' belongs to integration '{}' of kind {}; send its alerts to /hooks, or use the key of a pagerduty integration",
                i.name, i.kind
            );
            refused(route, Some(&i.name), StatusCode::BAD_REQUEST, &msg);
            return pd_error(StatusCode::BAD_REQUEST, "Invalid routing key", vec![msg]);
        }
        None => {
            let msg = format!("'{key_field}' does not match any pagerduty integration");
            refused(route, None, StatusCode::BAD_REQUEST, &msg);
            return pd_error(StatusCode::BAD_REQUEST, "Invalid routing key", vec![msg]);
        }
    };
    let dedup_key = req.event.dedup_key.clone();
    let parsed = req.into_parsed();
    note_unknown(route, &integration.name, &parsed);
    match st.service.ingest(integration, parsed.events).await {
        Ok(_) if v1 => (
            StatusCode::OK,
            Json(json!({
                "status": "success",
                "message": "Event processed",
                "incident_key": dedup_key,
            })),
        )
            .into_response(),
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": dedup_key,
            })),
        )
            .into_response(),
        Err(e) => {
            let api: ApiError = e.into();
            refused(route, Some(&integration.name), api.status, &api.message);
            (
                api.status,
                Json(json!({ "status": "error", "message": api.message })),
            )
                .into_response()
        }
    }
}

fn pd_error(status: StatusCode, message: &str, errors: Vec<String>) -> Response {
    (
        status,
        Json(json!({ "status": "invalid event", "message": message, "errors": errors })),
    )
        .into_response()
}

// ---------------------------------------------------------------- webhooks

/// `POST|PUT /hooks/{key}`: the key in the path.
pub async fn hook_path(
    State(st): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    hook(&st, Some(&key), &headers, body).await
}

/// `POST|PUT /hooks`: the key as `Authorization: Bearer KEY` or basic auth.
pub async fn hook_header(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    hook(&st, None, &headers, body).await
}

async fn hook(
    st: &AppState,
    path_key: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = route::HOOKS;
    let integration = authenticate(
        st,
        route,
        path_key,
        headers,
        "post to /hooks/KEY, or send 'Authorization: Bearer KEY' or basic auth with the key as password",
    )?;
    let body = alert_body(st, route, integration, body)?;
    let parsed = match integration.kind {
        IntegrationKind::Alertmanager => intake::alertmanager::parse(&body),
        IntegrationKind::Grafana => intake::grafana::parse(&body),
        IntegrationKind::Generic => intake::generic::parse(&body),
        IntegrationKind::Pagerduty => {
            let e = ApiError::bad_request(format!(
                "integration '{}' is of kind pagerduty: send its events to /v2/enqueue",
                integration.name
            ));
            refused(route, Some(&integration.name), e.status, &e.message);
            return Err(e);
        }
    }
    .map_err(|e| intake_error(route, integration, e))?;
    apply(st, route, integration, parsed, StatusCode::ACCEPTED).await
}

/// `POST /api/v2/alerts` (and `/api/v1/alerts`): Prometheus' alert push,
/// with the key as bearer token or basic auth.
pub async fn prometheus_alerts(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    prometheus(&st, None, &headers, body).await
}

/// `POST /hooks/{key}/api/v2/alerts`: the same with the key in the path, for
/// senders that can set a path prefix but no credentials (Prometheus'
/// `path_prefix`, Grafana's Alertmanager contact point URL).
pub async fn prometheus_alerts_path(
    State(st): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    prometheus(&st, Some(&key), &headers, body).await
}

async fn prometheus(
    st: &AppState,
    path_key: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = route::ALERTS;
    let integration = authenticate(
        st,
        route,
        path_key,
        headers,
        "set 'authorization: {credentials: KEY}' or 'basic_auth: {password: KEY}' in Prometheus' alerting config, or post to /hooks/KEY/api/v2/alerts",
    )?;
    if integration.kind != IntegrationKind::Alertmanager {
        let e = ApiError::bad_request(format!(
            "integration '{}' is of kind {}; /api/v2/alerts takes the key of an alertmanager integration",
            integration.name, integration.kind
        ));
        refused(route, Some(&integration.name), e.status, &e.message);
        return Err(e);
    }
    let body = alert_body(st, route, integration, body)?;
    let resolve_timeout = chrono::Duration::from_std(integration.resolve_timeout)
        .unwrap_or(chrono::Duration::minutes(5));
    let parsed = intake::prometheus::parse(&body, st.service.clock().now(), resolve_timeout)
        .map_err(|e| intake_error(route, integration, e))?;
    apply(st, route, integration, parsed, StatusCode::OK).await
}

/// The body of an alert webhook, or the logged refusal.
fn alert_body(
    st: &AppState,
    route: &str,
    integration: &IntegrationConfig,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let message = body_message(
            &r,
            st.config.server.max_alert_body_bytes,
            "[server] max_alert_body_bytes",
        );
        refused(route, Some(&integration.name), r.status(), &message);
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(r.status(), code, message)
    })
}

async fn apply(
    st: &AppState,
    route: &str,
    integration: &IntegrationConfig,
    parsed: Parsed,
    status: StatusCode,
) -> Result<Response, ApiError> {
    note_unknown(route, &integration.name, &parsed);
    let outcomes = match st.service.ingest(integration, parsed.events).await {
        Ok(o) => o,
        Err(e) => {
            let api: ApiError = e.into();
            refused(route, Some(&integration.name), api.status, &api.message);
            return Err(api);
        }
    };
    let mut body = accepted_body(&outcomes);
    if !parsed.unknown_fields.is_empty() {
        body["warnings"] = json!(
            parsed
                .unknown_fields
                .iter()
                .map(|f| format!("unknown field '{f}' kept in the event's details"))
                .collect::<Vec<_>>()
        );
    }
    Ok((status, Json(body)).into_response())
}

/// Results listed in an answer; a larger request's answer counts them.
const MAX_RESULTS: usize = 1_000;

fn accepted_body(outcomes: &[EventOutcome]) -> Value {
    let mut effects = serde_json::Map::new();
    for o in outcomes {
        let name = serde_json::to_value(&o.effect)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let n = effects.entry(name).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    let mut body = json!({
        "status": "accepted",
        "events": outcomes.len(),
        "effects": effects,
        "results": outcomes.iter().take(MAX_RESULTS).map(|o| json!({
            "dedup_key": o.dedup_key,
            "incident": o.incident.map(|i| i.to_string()),
            "effect": o.effect,
        })).collect::<Vec<_>>(),
    });
    if outcomes.len() > MAX_RESULTS {
        body["results_truncated"] = json!(true);
    }
    body
}

/// The integration a request's key names: from the path, else the
/// `Authorization` header (bearer, or basic with the key as password or as
/// user). Every presented key is compared in constant time.
fn authenticate<'a>(
    st: &'a AppState,
    route: &str,
    path_key: Option<&str>,
    headers: &HeaderMap,
    how: &str,
) -> Result<&'a IntegrationConfig, ApiError> {
    let candidates: Vec<String> = match path_key {
        Some(k) => vec![k.to_string()],
        None => header_keys(headers),
    };
    if candidates.is_empty() {
        let message = format!("missing integration key: {how}");
        refused(route, None, StatusCode::UNAUTHORIZED, &message);
        return Err(ApiError::unauthorized(message));
    }
    candidates
        .iter()
        .find_map(|k| st.config.integration_by_key(k))
        .ok_or_else(|| {
            let message = "no integration has this key";
            refused(route, None, StatusCode::UNAUTHORIZED, message);
            ApiError::unauthorized(message)
        })
}

/// Keys an `Authorization` header presents: a bearer token, or basic auth's
/// password (and its user name, for senders that put the key there).
fn header_keys(headers: &HeaderMap) -> Vec<String> {
    if let Some(t) = bearer(headers) {
        return vec![t.to_string()];
    }
    let Some((user, password)) = basic(headers) else {
        return Vec::new();
    };
    [password, user]
        .into_iter()
        .filter(|k| !k.is_empty())
        .collect()
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// User and password of an `Authorization: Basic ...` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    Some((user.to_string(), password.to_string()))
}

fn intake_error(route: &str, integration: &IntegrationConfig, e: IntakeError) -> ApiError {
    let api = match e {
        IntakeError::Malformed(m) => ApiError::new(StatusCode::BAD_REQUEST, "malformed", m),
        IntakeError::Invalid(errors) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            format!("the event is invalid: {}", errors.join("; ")),
        )
        .with_errors(errors),
    };
    refused(route, Some(&integration.name), api.status, &api.message);
    api
}
