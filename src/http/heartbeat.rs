//! `GET|POST /heartbeat/{key}` (or `/heartbeat` with `Authorization:
//! Bearer KEY`), on the public listener: a heartbeat's ping. It restarts
//! the heartbeat's timer and resolves its missed-heartbeat incident. A key
//! no heartbeat has gets 404 and a log line (never the key).

use super::AppState;
use super::error::ApiError;
use super::intake::bearer;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tracing::warn;

/// The heartbeat routes; merge them into the public listener's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/heartbeat", get(ping_header).post(ping_header))
        .route("/heartbeat/{key}", get(ping_path).post(ping_path))
}

async fn ping_path(
    State(st): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    ping(&st, Some(&key)).await
}

async fn ping_header(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    ping(&st, bearer(&headers)).await
}

async fn ping(st: &AppState, key: Option<&str>) -> Result<Response, ApiError> {
    let Some(hb) = key.and_then(|k| st.config.heartbeat_by_key(k)) else {
        let reason = if key.is_some() {
            "no heartbeat has this key"
        } else {
            "no key: ping /heartbeat/KEY or send 'Authorization: Bearer KEY'"
        };
        warn!(
            route = "/heartbeat",
            status = 404,
            reason,
            "Heartbeat ping refused"
        );
        return Err(ApiError::not_found(reason));
    };
    let ping = st.service.heartbeat_ping(hb).await?;
    Ok(Json(json!({
        "heartbeat": hb.name,
        "next_due": ping.due,
        "resolved": ping.resolved.map(|id| id.to_string()),
    }))
    .into_response())
}
