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
use crate::intake::{self, AlertEvent, Checked, IntakeError};
use crate::service::{EventOutcome, INGEST_CHUNK};
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
    pub const CHANGE: &str = "/v2/change/enqueue";
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
fn note_unknown(route: &str, integration: &str, unknown: &[String]) {
    if unknown.is_empty() {
        return;
    }
    METRICS
        .intake_unknown_fields
        .get_or_create(&labels([("integration", integration)]))
        .inc_by(unknown.len() as u64);
    info!(
        route,
        integration,
        fields = %unknown.join(", "),
        "Alert has fields tocsin does not know; kept with the event"
    );
}

/// What a body rejection (too large, cut off) says, with the limit named.
fn body_message(r: &BytesRejection, limit: usize, setting: &str) -> String {
    if super::error::deadline_passed(r) {
        super::error::DEADLINE_MESSAGE.to_string()
    } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
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
            let status = super::error::rejection_status(&r);
            refused(route, None, status, &message);
            return pd_error(status, &message, vec![message.clone()]);
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
    if let Err(e) = st.service.admit(integration) {
        return pd_service_error(route, integration, e);
    }
    let dedup_key = req.event.dedup_key.clone();
    let parsed = req.into_parsed();
    note_unknown(route, &integration.name, &parsed.unknown_fields);
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
        Err(e) => pd_service_error(route, integration, e),
    }
}

/// A service failure on PagerDuty's routes, in PagerDuty's shape. An
/// overload (a full write queue, a sender past its rate) is 429 with
/// `Retry-After`: PagerDuty's contract for "slow down and retry", which its
/// client libraries back off on.
fn pd_service_error(
    route: &str,
    integration: &IntegrationConfig,
    e: crate::service::ServiceError,
) -> Response {
    let api: ApiError = e.into();
    let status = if api.code == "overloaded" {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        api.status
    };
    refused(route, Some(&integration.name), status, &api.message);
    let mut resp = (
        status,
        Json(json!({ "status": "error", "message": api.message })),
    )
        .into_response();
    if let Some(secs) = api.retry_after {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    resp
}

/// `POST /v2/change/enqueue`: PagerDuty change events (deploys, config
/// changes), shown on the service's next incidents; PagerDuty's answers.
pub async fn change_enqueue(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = route::CHANGE;
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            let message = body_message(&r, st.config.server.max_body_bytes, "PagerDuty's limit");
            let status = super::error::rejection_status(&r);
            refused(route, None, status, &message);
            return pd_error(status, &message, vec![message.clone()]);
        }
    };
    let req = match intake::pagerduty::parse_change(&body) {
        Ok(r) => r,
        Err(e) => {
            refused(route, None, StatusCode::BAD_REQUEST, &e.to_string());
            return pd_error(
                StatusCode::BAD_REQUEST,
                "Event object is invalid",
                e.messages(),
            );
        }
    };
    let integration = match st.config.integration_by_key(&req.routing_key) {
        Some(i) if i.kind == IntegrationKind::Pagerduty => i,
        _ => {
            let msg = "'routing_key' does not match any pagerduty integration".to_string();
            refused(route, None, StatusCode::BAD_REQUEST, &msg);
            return pd_error(StatusCode::BAD_REQUEST, "Invalid routing key", vec![msg]);
        }
    };
    if let Err(e) = st.service.admit(integration) {
        return pd_service_error(route, integration, e);
    }
    note_unknown(route, &integration.name, &req.unknown_fields);
    let change = crate::incident::ServiceChange {
        at: req.at.unwrap_or_else(|| st.service.clock().now()),
        summary: req.summary,
        source: req.source,
        integration: integration.name.clone(),
        links: req.links,
        details: req.details,
    };
    match st.service.record_change(integration, change).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "success", "message": "Change event processed"})),
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
    json_content_type(route, integration, headers)?;
    admit(st, route, integration)?;
    let body = alert_body(st, route, integration, body)?;
    let hold = intake::alertmanager::Hold {
        now: st.service.clock().now(),
        after: chrono::Duration::from_std(integration.held_resolve_timeout)
            .unwrap_or(chrono::Duration::hours(4)),
    };
    let check: BoxedCheck = match integration.kind {
        IntegrationKind::Alertmanager => {
            Box::new(move |b| intake::alertmanager::check(b, &[], Some(hold)))
        }
        IntegrationKind::Grafana => Box::new(intake::grafana::check),
        IntegrationKind::Generic => Box::new(intake::generic::check),
        IntegrationKind::Pagerduty => {
            let e = ApiError::bad_request(format!(
                "integration '{}' is of kind pagerduty: send its events to /v2/enqueue",
                integration.name
            ));
            refused(route, Some(&integration.name), e.status, &e.message);
            return Err(e);
        }
    };
    ingest(st, route, integration, body, check, StatusCode::ACCEPTED).await
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
    json_content_type(route, integration, headers)?;
    admit(st, route, integration)?;
    let body = alert_body(st, route, integration, body)?;
    let resolve_timeout = chrono::Duration::from_std(integration.resolve_timeout)
        .unwrap_or(chrono::Duration::minutes(5));
    let now = st.service.clock().now();
    let check = move |b: &[u8]| intake::prometheus::check(b, now, resolve_timeout);
    ingest(st, route, integration, body, check, StatusCode::OK).await
}

/// Refuses (415) a webhook body sent as one of the types an HTML form
/// can post across sites without a CORS preflight (`text/plain`,
/// `application/x-www-form-urlencoded`, `multipart/form-data`): with a key
/// in the URL, a page on any site could otherwise post alerts. Every sender
/// of these routes (Alertmanager, Prometheus, amtool, Grafana) sends
/// `application/json`; a request without a content type is still read as
/// JSON (Python `requests.post(url, data=json.dumps(...))` and `curl -T`
/// send none). The PagerDuty routes take any type: Netdata posts JSON as a
/// form, as PagerDuty accepts, and their key is in the body.
fn json_content_type(
    route: &str,
    integration: &IntegrationConfig,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let media = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if matches!(
        media.as_str(),
        "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    ) {
        let e = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body is sent as {media}, a type web forms send; send it as application/json (curl: -H 'Content-Type: application/json')"
            ),
        );
        refused(route, Some(&integration.name), e.status, &e.message);
        return Err(e);
    }
    Ok(())
}

/// The body of an alert webhook, or the logged refusal.
/// Admits a request under its integration's rate (503 with `Retry-After`
/// past it).
fn admit(st: &AppState, route: &str, integration: &IntegrationConfig) -> Result<(), ApiError> {
    st.service.admit(integration).map_err(|e| {
        let api: ApiError = e.into();
        refused(route, Some(&integration.name), api.status, &api.message);
        api
    })
}

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
        let status = super::error::rejection_status(&r);
        refused(route, Some(&integration.name), status, &message);
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            _ => "bad_body",
        };
        ApiError::new(status, code, message)
    })
}

/// Checks the whole body (a refusal writes nothing), then parses it a
/// second time into events that go to the store a chunk at a time as they
/// are read, so memory stays bounded by the body and a few chunks however
/// many alerts it holds. Both reads run off the async runtime.
async fn ingest<C>(
    st: &AppState,
    route: &str,
    integration: &IntegrationConfig,
    body: Bytes,
    check: C,
    status: StatusCode,
) -> Result<Response, ApiError>
where
    C: FnOnce(&[u8]) -> Result<Box<dyn Checked>, IntakeError> + Send + 'static,
{
    let read = body.clone();
    let checked = tokio::task::spawn_blocking(move || check(&read))
        .await
        .map_err(|e| ApiError::internal(format!("reading the request failed: {e}")))?
        .map_err(|e| intake_error(route, integration, e))?;
    let unknown = checked.unknown_fields().to_vec();
    note_unknown(route, &integration.name, &unknown);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AlertEvent>>(1);
    let producer = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(INGEST_CHUNK);
        checked.stream(&body, &mut |e| {
            chunk.push(e);
            if chunk.len() >= INGEST_CHUNK {
                tx.blocking_send(std::mem::take(&mut chunk))
                    .map_err(|_| "intake stopped".to_string())?;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        Ok::<(), IntakeError>(())
    });
    let session = st.service.ingest_session(integration);
    let mut summary = Summary::default();
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        match session.apply(chunk).await {
            Ok(outcomes) => summary.add(&outcomes),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(rx);
    let produced = producer.await;
    if let Some(e) = failed {
        let api: ApiError = e.into();
        refused(route, Some(&integration.name), api.status, &api.message);
        return Err(api);
    }
    match produced {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(intake_error(route, integration, e)),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "reading the request failed: {e}"
            )));
        }
    }
    let mut body = summary.body();
    if !unknown.is_empty() {
        body["warnings"] = json!(
            unknown
                .iter()
                .map(|f| format!("unknown field '{f}' kept in the event's details"))
                .collect::<Vec<_>>()
        );
    }
    Ok((status, Json(body)).into_response())
}

type CheckResult = Result<Box<dyn Checked>, IntakeError>;
/// A parser's first read of a body.
type BoxedCheck = Box<dyn FnOnce(&[u8]) -> CheckResult + Send>;

/// Results listed in an answer; a larger request's answer counts them.
const MAX_RESULTS: usize = 1_000;

/// What an answer says of a request's events: how many had each effect,
/// and the first [`MAX_RESULTS`] one by one.
#[derive(Default)]
struct Summary {
    events: usize,
    effects: std::collections::BTreeMap<String, u64>,
    results: Vec<Value>,
}

impl Summary {
    fn add(&mut self, outcomes: &[EventOutcome]) {
        for o in outcomes {
            self.events += 1;
            let name = serde_json::to_value(&o.effect)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *self.effects.entry(name).or_default() += 1;
            if self.results.len() < MAX_RESULTS {
                self.results.push(json!({
                    "dedup_key": o.dedup_key,
                    "incident": o.incident.map(|i| i.to_string()),
                    "effect": o.effect,
                }));
            }
        }
    }

    fn body(self) -> Value {
        let mut body = json!({
            "status": "accepted",
            "events": self.events,
            "effects": self.effects,
            "results": self.results,
        });
        if self.events > MAX_RESULTS {
            body["results_truncated"] = json!(true);
        }
        body
    }
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
pub(crate) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
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
