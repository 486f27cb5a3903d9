//! The console's maintenance windows: every window as `GET
//! /v1/maintenance` lists it, and for a write token the form that starts
//! one and the **End** button on an active runtime window, through the
//! same service calls as the REST API, as the signed-in user.

use super::markdown::escape;
use super::pages::{layout, time};
use super::{Form, Refusal, check_post, viewer};
use crate::access::Scope;
use crate::http::{ApiError, AppState};
use crate::maintenance::Source;
use crate::service::maintenance::NewWindow;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::fmt::Write;

/// The longest window the console starts (the API takes any `end`).
const MAX_DAYS: i64 = 30;

/// `GET /maintenance`
pub async fn page(State(st): State<AppState>, headers: HeaderMap) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let windows = st.service.maintenance_windows().await?;
    let now = st.service.clock().now();
    let mut b = String::from(
        "<h1>Maintenance windows</h1><p class=\"muted\">An alert that arrives during an active window opens its incident but pages nobody; when the window ends, what still fires is paged.</p>",
    );
    if windows.is_empty() {
        b.push_str("<p class=\"empty\">No maintenance windows.</p>");
    } else {
        b.push_str("<table class=\"maintenance\"><thead><tr><th>Window</th><th>State</th><th>Covers</th><th>Reason</th><th>From</th><th>Until</th><th>Source</th><th></th></tr></thead><tbody>");
        for w in &windows {
            let state = if w.active {
                "active"
            } else if w.ended_by.is_some() {
                "ended"
            } else if w.start.is_some_and(|s| s > now) {
                "scheduled"
            } else {
                "over"
            };
            let mut covers: Vec<String> = w.services.iter().map(|s| escape(s)).collect();
            covers.extend(
                w.matchers
                    .iter()
                    .map(|m| format!("<code>{}</code>", escape(m))),
            );
            if covers.is_empty() {
                covers.push("everything".into());
            }
            let source = match w.source {
                Source::Config => {
                    if w.recurring {
                        "config (recurring)".to_string()
                    } else {
                        "config".to_string()
                    }
                }
                Source::Api => {
                    let mut s =
                        format!("made by {}", escape(w.created_by.as_deref().unwrap_or("?")));
                    if let Some(by) = &w.ended_by {
                        let _ = write!(s, ", ended by {}", escape(by));
                    }
                    s
                }
            };
            let end = if viewer.can_write() && w.active && w.source == Source::Api {
                format!(
                    r#"<form method="post" action="/maintenance/{}/end" class="inline"><input type="hidden" name="csrf" value="{}"><button>End</button></form>"#,
                    escape(&w.id),
                    escape(&viewer.csrf)
                )
            } else {
                String::new()
            };
            let _ = write!(
                b,
                r#"<tr id="window-{id}"><td>{}</td><td><span class="badge {state}">{state}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{source}</td><td>{end}</td></tr>"#,
                escape(&w.name),
                covers.join(", "),
                w.reason.as_deref().map(escape).unwrap_or_default(),
                w.start.map(time).unwrap_or_default(),
                w.end.map(time).unwrap_or_default(),
                id = escape(&w.id),
            );
        }
        b.push_str("</tbody></table>\n");
    }
    if viewer.can_write() {
        let _ = write!(
            b,
            r#"<h2>Start a window</h2><form method="post" action="/maintenance" class="maintenance"><input type="hidden" name="csrf" value="{}"><label>Service <select name="service">"#,
            escape(&viewer.csrf)
        );
        for s in &st.config.services {
            let _ = write!(b, "<option>{}</option>", escape(&s.name));
        }
        b.push_str(r#"</select></label> <label>For <input name="duration" value="1h" size="6" required aria-label="Duration, like 2h or 90m"></label> <label>Reason <input name="reason" maxlength="500" placeholder="db upgrade"></label> <button>Start window</button></form>"#);
    }
    Ok(layout(Some(&viewer), "Maintenance", &b))
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::Page(StatusCode::BAD_REQUEST, message.into())
}

/// `POST /maintenance` `service, duration, reason`: a window from now, as
/// `POST /v1/maintenance` makes it (write scope).
pub async fn start(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    let viewer = check_post(&st, &headers, &form, Scope::Write)?;
    let service = form.get("service").unwrap_or_default().trim().to_string();
    if service.is_empty() {
        return Err(bad("choose a service"));
    }
    let raw = form.get("duration").unwrap_or_default().trim();
    let d = humantime::parse_duration(raw)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(MAX_DAYS))
        .ok_or_else(|| {
            bad(format!(
                "a window lasts like 30m or 2h, at most {MAX_DAYS} days, not '{raw}'"
            ))
        })?;
    let reason = form
        .get("reason")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let by = viewer.principal.acting_user(&st, None)?;
    let now = st.service.clock().now();
    st.service
        .create_window(
            NewWindow {
                name: None,
                services: vec![service],
                matchers: Vec::new(),
                reason,
                start: Some(now),
                end: now + d,
            },
            &by,
        )
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/maintenance").into_response())
}

/// `POST /maintenance/{id}/end`: ends a runtime window now, as `DELETE
/// /v1/maintenance/{id}` does (write scope).
pub async fn end(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    let viewer = check_post(&st, &headers, &form, Scope::Write)?;
    let by = viewer.principal.acting_user(&st, None)?;
    st.service
        .end_window(&id, &by)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/maintenance").into_response())
}
