//! Intake handlers: authenticate the sender, parse, apply, answer.

use super::{ApiError, AppState};
use crate::config::{IntegrationConfig, IntegrationKind};
use crate::intake::{self, AlertEvent, IntakeError};
use crate::service::EventOutcome;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics::{METRICS, labels};

fn count(integration: &str, outcome: &str, n: u64) {
    METRICS
        .alerts_received
        .get_or_create(&labels([
            ("integration", integration),
            ("outcome", outcome),
        ]))
        .inc_by(n);
}

/// `POST /v2/enqueue`: PagerDuty Events API v2, with PagerDuty's answers.
pub async fn enqueue(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            let status = r.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "Request body is larger than {} bytes",
                    st.config.server.max_body_bytes
                )
            } else {
                r.body_text()
            };
            return pd_error(status, &message, vec![message.clone()]);
        }
    };
    let req = match intake::pagerduty::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            count("unknown", "rejected", 1);
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
                "'routing_key' belongs to integration '{}' of kind {}; send its alerts to /hooks, or use the key of a pagerduty integration",
                i.name, i.kind
            );
            return pd_error(StatusCode::BAD_REQUEST, "Invalid routing key", vec![msg]);
        }
        None => {
            return pd_error(
                StatusCode::BAD_REQUEST,
                "Invalid routing key",
                vec!["'routing_key' does not match any pagerduty integration".into()],
            );
        }
    };
    match st
        .service
        .ingest(integration, std::slice::from_ref(&req.event))
        .await
    {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": req.event.dedup_key,
            })),
        )
            .into_response(),
        Err(e) => {
            let api: ApiError = e.into();
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

/// `POST /hooks/{key}`: the key in the path.
pub async fn hook_path(
    State(st): State<AppState>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let integration = authenticate(&st, &key)?;
    hook(&st, integration, body?).await
}

/// `POST /hooks`: the key as `Authorization: Bearer KEY`.
pub async fn hook_bearer(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = bearer(&headers).ok_or_else(|| {
        ApiError::unauthorized(
            "missing integration key: post to /hooks/KEY or send 'Authorization: Bearer KEY'",
        )
    })?;
    let integration = authenticate(&st, key)?;
    hook(&st, integration, body?).await
}

async fn hook(
    st: &AppState,
    integration: &IntegrationConfig,
    body: Bytes,
) -> Result<Response, ApiError> {
    let events = match integration.kind {
        IntegrationKind::Alertmanager => intake::alertmanager::parse(&body),
        IntegrationKind::Grafana => intake::grafana::parse(&body),
        IntegrationKind::Generic => intake::generic::parse(&body),
        IntegrationKind::Pagerduty => {
            return Err(ApiError::bad_request(format!(
                "integration '{}' is of kind pagerduty: send its events to /v2/enqueue",
                integration.name
            )));
        }
    }
    .map_err(|e| {
        count(&integration.name, "rejected", 1);
        intake_error(e)
    })?;
    apply(st, integration, &events, StatusCode::ACCEPTED).await
}

/// `POST /api/v2/alerts`: Prometheus' alert push, bearer-authenticated.
pub async fn prometheus_alerts(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = bearer(&headers).ok_or_else(|| {
        ApiError::unauthorized(
            "missing integration key: set 'authorization: {credentials: KEY}' in Prometheus' alerting config",
        )
    })?;
    let integration = authenticate(&st, key)?;
    if integration.kind != IntegrationKind::Alertmanager {
        return Err(ApiError::bad_request(format!(
            "integration '{}' is of kind {}; /api/v2/alerts takes the key of an alertmanager integration",
            integration.name, integration.kind
        )));
    }
    let body = body?;
    let events =
        intake::prometheus::parse(&body, st.service.clock().now()).map_err(intake_error)?;
    apply(&st, integration, &events, StatusCode::OK).await
}

async fn apply(
    st: &AppState,
    integration: &IntegrationConfig,
    events: &[AlertEvent],
    status: StatusCode,
) -> Result<Response, ApiError> {
    let outcomes = st.service.ingest(integration, events).await?;
    Ok((status, Json(accepted_body(&outcomes))).into_response())
}

fn accepted_body(outcomes: &[EventOutcome]) -> serde_json::Value {
    json!({
        "status": "accepted",
        "events": outcomes.len(),
        "results": outcomes.iter().map(|o| json!({
            "dedup_key": o.dedup_key,
            "incident": o.incident.map(|i| i.to_string()),
            "effect": o.effect,
        })).collect::<Vec<_>>(),
    })
}

fn authenticate<'a>(st: &'a AppState, key: &str) -> Result<&'a IntegrationConfig, ApiError> {
    st.config.integration_by_key(key).ok_or_else(|| {
        count("unknown", "rejected", 1);
        ApiError::unauthorized("no integration has this key")
    })
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

fn intake_error(e: IntakeError) -> ApiError {
    match e {
        IntakeError::Malformed(m) => ApiError::new(StatusCode::BAD_REQUEST, "malformed", m),
        IntakeError::Invalid(errors) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            format!("the event is invalid: {}", errors.join("; ")),
        )
        .with_errors(errors),
    }
}
