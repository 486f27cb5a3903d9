//! `/v1/maintenance`: list, make and end maintenance windows. Listing
//! needs a read token; making and ending one, a write token (the caller,
//! or `by` for an admin, is recorded as who made or ended it).

use super::auth::authorize;
use super::{ApiError, AppState};
use crate::access::Scope;
use crate::service::maintenance::{NewWindow, WindowError, WindowView};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

/// The routes, for the API listener.
pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/maintenance", get(list).post(create))
        .route("/v1/maintenance/{id}", get(show).delete(end))
}

impl From<WindowError> for ApiError {
    fn from(e: WindowError) -> Self {
        match e {
            WindowError::Invalid(m) => ApiError::bad_request(m),
            WindowError::FromConfig(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            WindowError::NotFound(_) => ApiError::not_found(e.to_string()),
            WindowError::Service(s) => s.into(),
        }
    }
}

/// `POST /v1/maintenance` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    start: Option<DateTime<Utc>>,
    #[serde(default)]
    end: Option<DateTime<Utc>>,
    /// Instead of `end`: how long from `start` (`2h`, `90m`).
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

/// `GET /v1/maintenance`: every window, configured and runtime, with
/// whether it is active now.
async fn list(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let windows = st.service.maintenance_windows().await?;
    Ok(Json(json!({ "windows": windows })).into_response())
}

/// `GET /v1/maintenance/{id}`: one window's record.
async fn show(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let windows = st.service.maintenance_windows().await?;
    let w = windows
        .into_iter()
        .find(|w| w.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no maintenance window {id}")))?;
    Ok(Json(w).into_response())
}

/// `POST /v1/maintenance` `{"services": ["api"], "duration": "2h", "reason": "..."}`.
async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &headers, Scope::Write)?;
    let body = body?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let b: CreateBody = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        match field.as_str() {
            "start" | "end" => ApiError::bad_request(format!(
                "'{field}' must be an RFC 3339 date-time such as 2026-12-01T09:00:00Z: {inner}"
            )),
            "." => ApiError::bad_request(format!("invalid JSON body: {inner}")),
            _ => ApiError::bad_request(format!("'{field}': {inner}")),
        }
    })?;
    let by = caller.acting_user(&st, b.by.as_deref())?;
    let now = st.service.clock().now();
    let from = b.start.unwrap_or(now);
    let end = match (b.end, b.duration.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give 'end' or 'duration', not both"));
        }
        (Some(end), None) => end,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d.trim()).map_err(|e| {
                ApiError::bad_request(format!("'duration' must be like 2h or 90m: {e}"))
            })?;
            from + chrono::Duration::from_std(d)
                .map_err(|_| ApiError::bad_request("'duration' is too long"))?
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "a window needs 'end' (RFC 3339) or 'duration' (like 2h)",
            ));
        }
    };
    let w = st
        .service
        .create_window(
            NewWindow {
                name: b.name,
                services: b.services,
                matchers: b.matchers,
                reason: b.reason,
                start: Some(from),
                end,
            },
            &by,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(WindowView::of_stored(w, now))).into_response())
}

/// `DELETE /v1/maintenance/{id}` (optionally `?by=USER` for an admin):
/// ends the window now; what it held and still fires is paged.
async fn end(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &headers, Scope::Write)?;
    let by = caller.acting_user(&st, query.get("by").map(String::as_str))?;
    let w = st.service.end_window(&id, &by).await?;
    let now = st.service.clock().now();
    Ok(Json(WindowView::of_stored(w, now)).into_response())
}
