//! `GET /v1/reports/response`: MTTA and MTTR by service and week from the
//! stored incidents; `GET /v1/reports/pages`: pages per person, and how many
//! outside working hours, from their stored pages. Each as JSON, CSV, a text
//! table (the CLI's) or an SVG chart.

use super::auth::authorize;
use super::{ApiError, AppState};
use crate::access::Scope;
use crate::summary::{pages as pages_report, report};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The longest window a report covers.
pub const MAX_REPORT_DAYS: i64 = 366;

/// `?since=30d` (a duration back from now, or an RFC 3339 time) and
/// `format=json|csv|text|svg`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    pub(super) since: Option<String>,
    pub(super) format: Option<String>,
    /// For CSV of the response report: `service` (default) or `severity`.
    pub(super) by: Option<String>,
}

/// The CSV of the response report grouped as `by` asks.
pub(super) fn response_csv(by: Option<&str>) -> Result<fn(&report::Report) -> String, ApiError> {
    match by.unwrap_or("service") {
        "service" => Ok(report::csv),
        "severity" => Ok(report::csv_by_severity),
        other => Err(ApiError::bad_request(format!(
            "unknown grouping by={other}; use service or severity"
        ))),
    }
}

/// The start of the window `since` names (default 30 days back).
pub(super) fn since(st: &AppState, raw: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let now = st.service.clock().now();
    let raw = raw.filter(|s| !s.is_empty()).unwrap_or("30d");
    let at = match raw.parse::<DateTime<Utc>>() {
        Ok(t) => t,
        Err(_) => humantime::parse_duration(raw)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now - d)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "'since' must be a duration like 30d or an RFC 3339 time, not '{raw}'"
                ))
            })?,
    };
    if now - at > chrono::Duration::days(MAX_REPORT_DAYS) || at > now {
        return Err(ApiError::bad_request(format!(
            "'since' must be in the past, at most {MAX_REPORT_DAYS} days back"
        )));
    }
    Ok(at)
}

/// A report in the `format` asked for.
fn respond<T: serde::Serialize>(
    format: Option<&str>,
    r: &T,
    csv: fn(&T) -> String,
    text: fn(&T) -> String,
    svg: fn(&T) -> String,
) -> Result<Response, ApiError> {
    Ok(match format.unwrap_or("json") {
        "json" => Json(r).into_response(),
        "csv" => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv(r)).into_response(),
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text(r),
        )
            .into_response(),
        "svg" => ([(header::CONTENT_TYPE, "image/svg+xml")], svg(r)).into_response(),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown format '{other}'; use json, csv, text or svg"
            )));
        }
    })
}

/// `GET /v1/reports/response?since=30d&format=json|csv|text|svg`
pub async fn response(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let from = since(&st, q.since.as_deref())?;
    let csv = response_csv(q.by.as_deref())?;
    let r = st.service.response_report(from).await?;
    respond(q.format.as_deref(), &r, csv, report::table, report::svg)
}

/// `GET /v1/reports/pages?since=30d&format=json|csv|text|svg`: pages per
/// person in the window, and how many were outside working hours.
pub async fn pages(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let from = since(&st, q.since.as_deref())?;
    let r = st.service.pages_report(from).await?;
    respond(
        q.format.as_deref(),
        &r,
        pages_report::csv,
        pages_report::table,
        pages_report::svg,
    )
}
