//! On-call schedules over HTTP: who is on call, shifts, iCal, overrides.

use super::auth::authorize;
use super::{ApiError, AppState};
use crate::access::Scope;
use crate::oncall::{Shift, to_ical};
use crate::store::StoredOverride;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;

/// The longest range `shifts` and the iCal feed cover.
const MAX_RANGE_DAYS: i64 = 366;

fn schedule<'a>(st: &'a AppState, name: &str) -> Result<&'a crate::oncall::Schedule, ApiError> {
    st.service
        .directory()
        .schedule(name)
        .ok_or_else(|| ApiError::not_found(format!("schedule '{name}' does not exist")))
}

/// `GET /v1/oncall`: who is on call now in every schedule, and who is next.
pub async fn oncall_now(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let now = st.service.clock().now();
    let mut out = Vec::new();
    for s in st.service.directory().schedules() {
        let extra = st.service.directory().runtime_overrides(s.name());
        let current = s.who_is_on_call(now, &extra);
        let next = s.next_on_call(current.as_ref().map_or(now, |c| c.end), &extra);
        out.push(json!({
            "schedule": s.name(),
            "time_zone": s.time_zone().name(),
            "on_call": current,
            "next": next,
        }));
    }
    Ok(Json(json!({ "at": now, "oncall": out })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

fn range(
    st: &AppState,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
    default_from: Duration,
    default_to: Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = st.service.clock().now();
    let from = q.from.unwrap_or(now + default_from);
    // A range that names only its start covers the default span from there.
    let to = q.to.unwrap_or(from + (default_to - default_from));
    if to <= from {
        return Err(ApiError::bad_request("'to' must be after 'from'"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::bad_request(format!(
            "the range may span at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok((from, to))
}

fn shifts_of(
    st: &AppState,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Shift>, ApiError> {
    let s = schedule(st, name)?;
    let extra = st.service.directory().runtime_overrides(name);
    Ok(s.shifts(from, to, &extra))
}

/// `GET /v1/schedules/{name}/shifts?from=&to=` (RFC 3339; default the next 7 days).
pub async fn shifts(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let (from, to) = range(&st, q, Duration::zero(), Duration::days(7))?;
    let shifts = shifts_of(&st, &name, from, to)?;
    Ok(Json(json!({ "schedule": name, "from": from, "to": to, "shifts": shifts })).into_response())
}

/// `GET /v1/schedules/{name}/ical`: the last 7 and the next 90 days, for
/// calendar subscriptions.
pub async fn ical(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let (from, to) = range(&st, q, -Duration::days(7), Duration::days(90))?;
    // Whole shifts: one that began before the window is not cut at its
    // edge, so its DTSTART and UID stay the same from one fetch to the next.
    let mut shifts = shifts_of(&st, &name, from - Duration::days(35), to)?;
    shifts.retain(|s| s.end > from);
    Ok((
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        to_ical(&name, &shifts, st.service.clock().now()),
    )
        .into_response())
}

/// `GET /v1/schedules/{name}/overrides`
pub async fn list_overrides(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    schedule(&st, &name)?;
    let list = st.service.directory().stored_overrides(&name);
    Ok(Json(json!({ "overrides": list })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    user: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    #[serde(default)]
    by: Option<String>,
}

/// `POST /v1/schedules/{name}/overrides` `{"user","start","end"}`
pub async fn add_override(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &headers, Scope::Admin)?;
    schedule(&st, &name)?;
    let body = body?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let o: NewOverride = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if matches!(field.as_str(), "start" | "end") {
            ApiError::bad_request(format!(
                "'{field}' must be an RFC 3339 date-time such as 2026-12-01T09:00:00Z: {inner}"
            ))
        } else if field == "." {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("'{field}': {inner}"))
        }
    })?;
    if st.service.directory().user(&o.user).is_none() {
        return Err(ApiError::bad_request(format!("unknown user '{}'", o.user)));
    }
    if o.end <= o.start {
        return Err(ApiError::bad_request("'end' must be after 'start'"));
    }
    let created_by = caller.acting_user(&st, o.by.as_deref())?;
    let stored = st
        .service
        .add_override(StoredOverride {
            id: 0,
            schedule: name,
            user: o.user,
            start: o.start,
            end: o.end,
            created_by,
        })
        .await?;
    // What the schedule now says over the override's time and that of every
    // override it overlaps: the newest override wins, so the caller sees
    // whom it displaced and where they still cover.
    let overlapped: Vec<_> = st
        .service
        .directory()
        .stored_overrides(&stored.schedule)
        .into_iter()
        .filter(|o| o.id != stored.id && o.start < stored.end && stored.start < o.end)
        .collect();
    let from = overlapped
        .iter()
        .map(|o| o.start)
        .fold(stored.start, DateTime::min);
    let to = overlapped
        .iter()
        .map(|o| o.end)
        .fold(stored.end, DateTime::max);
    let coverage = shifts_of(&st, &stored.schedule, from, to)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "override": stored,
            "overrides_overlapped": overlapped,
            "coverage": coverage,
        })),
    )
        .into_response())
}

/// `DELETE /v1/schedules/{name}/overrides/{id}`
pub async fn delete_override(
    State(st): State<AppState>,
    Path((name, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Admin)?;
    schedule(&st, &name)?;
    let existed = st.service.delete_override(&name, id).await?;
    if existed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "schedule '{name}' has no override {id}"
        )))
    }
}
