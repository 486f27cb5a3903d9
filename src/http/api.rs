//! The REST API: incidents, and health.

use super::auth::{Principal, authorize, metrics_network};
use super::{ApiError, AppState};
use crate::access::Scope;
use crate::incident::{Actor, Incident, IncidentId, Status, TimelineEntry};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// An incident as the API shows it.
#[derive(Debug, Serialize)]
pub struct IncidentView<'a> {
    /// `INC-n`.
    pub key: String,
    /// The incident.
    #[serde(flatten)]
    pub incident: &'a Incident,
    /// "flapping: 5 changes in 30m" while it flaps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flapping: Option<String>,
}

impl<'a> From<&'a Incident> for IncidentView<'a> {
    fn from(incident: &'a Incident) -> Self {
        Self {
            key: incident.id.to_string(),
            incident,
            flapping: incident.flapping_line(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub(super) status: Option<String>,
    /// Open incidents of this service only.
    pub(super) service: Option<String>,
    /// Open incidents of this severity only (`sev1`..`sev4`).
    pub(super) severity: Option<String>,
    pub(super) limit: Option<usize>,
    /// Only incidents older than this one (`INC-n` or `n`): the `next` of
    /// the previous page.
    pub(super) before: Option<String>,
}

/// `GET /v1/incidents?status=&service=&severity=&limit=&before=`: a page of incidents, newest
/// first, and the `next` cursor (pass it as `before`) when the page is full.
pub async fn list_incidents(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (incidents, next) = incident_page(&st, &q, 100).await?;
    let views: Vec<IncidentView> = incidents.iter().map(IncidentView::from).collect();
    Ok(Json(json!({ "incidents": views, "next": next })).into_response())
}

/// The page of incidents `q` asks for (`default_limit` without `limit`),
/// and the cursor of the next page when this one is full: the API's list
/// and the console's.
pub(super) async fn incident_page(
    st: &AppState,
    q: &ListQuery,
    default_limit: usize,
) -> Result<(Vec<Incident>, Option<String>), ApiError> {
    let limit = q.limit.unwrap_or(default_limit).clamp(1, 10_000);
    let before = q.before.as_deref().map(parse_id).transpose()?;
    let open_only = q.status.as_deref() == Some("open");
    let status = q
        .status
        .as_deref()
        .filter(|s| *s != "open")
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("{e}, or open (both unresolved)")))?;
    let severity = q
        .severity
        .as_deref()
        .map(|s| {
            crate::incident::Severity::from_sender(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown severity '{s}'; use sev1, sev2, sev3 or sev4"
                ))
            })
        })
        .transpose()?;
    let incidents = if open_only || q.service.is_some() || severity.is_some() {
        // Served from the open index, so the cost never grows with history.
        if status == Some(Status::Resolved) {
            return Err(ApiError::bad_request(
                "service and severity filter open incidents: use status=open, triggered or acknowledged",
            ));
        }
        let filter = crate::store::OpenFilter {
            status,
            service: q.service.clone(),
            severity,
        };
        st.service
            .read(move |s| s.open_incidents(&filter, before, limit))
            .await?
    } else {
        st.service
            .read(move |s| s.incidents(status, before, limit))
            .await?
    };
    let next = (incidents.len() == limit)
        .then(|| incidents.last().map(|i| i.id.to_string()))
        .flatten();
    Ok((incidents, next))
}

/// An incident and its timeline, read off the async runtime.
async fn read_with_timeline(
    st: &AppState,
    id: IncidentId,
) -> Result<(Incident, Vec<TimelineEntry>), ApiError> {
    st.service
        .read(move |s| {
            Ok(match s.incident(id)? {
                Some(i) => Some((i, s.timeline(id)?)),
                None => None,
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("incident {id} does not exist")))
}

pub(super) fn parse_id(raw: &str) -> Result<IncidentId, ApiError> {
    raw.parse()
        .map_err(|e: crate::incident::BadIncidentId| ApiError::bad_request(e.to_string()))
}

/// `GET /v1/incidents/{id}`, with its timeline.
pub async fn show_incident(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let id = parse_id(&raw)?;
    let (incident, timeline) = read_with_timeline(&st, id).await?;
    Ok(Json(json!({
        "incident": IncidentView::from(&incident),
        "timeline": timeline,
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    /// Who is acting; defaults to `api`.
    by: Option<String>,
    /// A note (resolve only).
    note: Option<String>,
    /// How long (snooze only), like `30m`.
    duration: Option<String>,
    /// The note's or status update's text (notes and updates only).
    text: Option<String>,
    /// Whether the public status page shows it (`public` only).
    public: Option<bool>,
}

fn change_body(body: Result<Bytes, BytesRejection>) -> Result<ChangeBody, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ChangeBody::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// What every write call on an incident starts with: a write token, the
/// id, the body (only the fields this call takes), and who acts.
fn command_request(
    st: &AppState,
    raw: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<(IncidentId, ChangeBody, Actor), ApiError> {
    let caller: Principal = authorize(st, headers, Scope::Write)?;
    let id = parse_id(raw)?;
    let body = change_body(body)?;
    only(&body, allowed)?;
    let actor = caller.actor(st, body.by.as_deref())?;
    Ok((id, body, actor))
}

/// `POST /v1/incidents/{id}/acknowledge`
pub async fn acknowledge(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, _, actor) = command_request(&st, &raw, &headers, body, &[])?;
    let incident = st.service.acknowledge(id, actor).await?;
    Ok(Json(json!({ "incident": IncidentView::from(&incident) })).into_response())
}

/// `POST /v1/incidents/{id}/resolve`
pub async fn resolve(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, body, actor) = command_request(&st, &raw, &headers, body, &["note"])?;
    let incident = st.service.resolve(id, actor, body.note.clone()).await?;
    Ok(Json(json!({ "incident": IncidentView::from(&incident) })).into_response())
}

/// The longest note the API takes (chat messages carry it whole).
pub(super) const MAX_NOTE_CHARS: usize = 3000;

/// The body's `text`, trimmed: required, and at most `max` characters
/// for `what` (`a note`); `example` shows what to send.
fn required_text<'a>(
    body: &'a ChangeBody,
    what: &str,
    max: usize,
    example: &str,
) -> Result<&'a str, ApiError> {
    let text = body.text.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request(format!(
            "'text' is required: {{\"text\": \"{example}\"}}"
        )));
    }
    let n = text.chars().count();
    if n > max {
        return Err(ApiError::bad_request(format!(
            "'text' is {n} characters; {what} may have at most {max}"
        )));
    }
    Ok(text)
}

/// `POST /v1/incidents/{id}/notes` `{"text": "..."}`: a note on the
/// timeline (`action: ...` makes it an action item), as from chat.
pub async fn add_note(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, body, by) = command_request(&st, &raw, &headers, body, &["text"])?;
    let text = required_text(&body, "a note", MAX_NOTE_CHARS, "what you found")?;
    let incident = st.service.add_note(id, text, by).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "incident": IncidentView::from(&incident) })),
    )
        .into_response())
}

/// `POST /v1/incidents/{id}/updates` `{"text": "..."}`: a status update
/// for stakeholders, as `/incident update` posts it.
pub async fn post_update(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, body, by) = command_request(&st, &raw, &headers, body, &["text"])?;
    let text = required_text(
        &body,
        "a status update",
        crate::incident::UPDATE_MAX,
        "what stakeholders should know",
    )?;
    let (incident, sent) = st.service.post_update(id, text, by).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "incident": IncidentView::from(&incident), "sent": sent })),
    )
        .into_response())
}

/// `POST /v1/incidents/{id}/public` `{"public": true}`: shows it on its
/// service's public status page (or, with `false`, takes it off).
pub async fn set_public(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, body, by) = command_request(&st, &raw, &headers, body, &["public"])?;
    let Some(public) = body.public else {
        return Err(ApiError::bad_request(
            "'public' is required: {\"public\": true} or {\"public\": false}",
        ));
    };
    let (incident, on_page) = st.service.set_public(id, public, by).await?;
    Ok(Json(json!({
        "incident": IncidentView::from(&incident),
        "service_public": on_page,
    }))
    .into_response())
}

/// `GET /v1/incidents/{id}/summary`: the post-incident summary (Markdown).
pub async fn summary(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let id = parse_id(&raw)?;
    let md = st.service.summary_markdown(id).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/markdown; charset=utf-8",
        )],
        md,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    format: Option<String>,
}

/// `GET /v1/incidents/{id}/timeline?format=json|jsonl`: the timeline with
/// its hash chain, for audits. The chain's head is in the
/// `x-tocsin-timeline-head` header (and in the JSON form).
pub async fn timeline(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = parse_id(&raw)?;
    let (incident, entries) = read_with_timeline(&st, id).await?;
    let head = incident.timeline_head.clone();
    match q.format.as_deref().unwrap_or("json") {
        "jsonl" => {
            let mut body = String::new();
            for e in &entries {
                body.push_str(&serde_json::to_string(e).expect("entries serialize"));
                body.push('\n');
            }
            Ok((
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "application/jsonl; charset=utf-8".to_string(),
                    ),
                    (
                        axum::http::header::HeaderName::from_static("x-tocsin-timeline-head"),
                        head,
                    ),
                ],
                body,
            )
                .into_response())
        }
        "json" => Ok(Json(
            json!({ "incident": id.to_string(), "head": head, "timeline": entries }),
        )
        .into_response()),
        other => Err(ApiError::bad_request(format!(
            "unknown format '{other}'; use json or jsonl"
        ))),
    }
}

/// `GET /v1/stats`: how many alert events and incidents are stored.
pub async fn stats(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let (events, incidents) = st
        .service
        .read(|s| Ok((s.event_count()?, s.incident_count()?)))
        .await?;
    Ok(Json(json!({ "events": events, "incidents": incidents })).into_response())
}

/// Refuses fields that the call does not take.
fn only(body: &ChangeBody, allowed: &[&str]) -> Result<(), ApiError> {
    for (name, present) in [
        ("note", body.note.is_some()),
        ("duration", body.duration.is_some()),
        ("text", body.text.is_some()),
        ("public", body.public.is_some()),
    ] {
        if present && !allowed.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "'{name}' is not accepted by this call"
            )));
        }
    }
    Ok(())
}

/// `POST /v1/incidents/{id}/snooze` `{"duration": "30m"}`
pub async fn snooze(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, body, actor) = command_request(&st, &raw, &headers, body, &["duration"])?;
    let raw_duration = body
        .duration
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("'duration' is required, like \"30m\""))?;
    let duration = humantime::parse_duration(raw_duration)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(7))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "'duration' must be like 30m or 2h, at most 7 days, not '{raw_duration}'"
            ))
        })?;
    let incident = st.service.snooze(id, actor, duration).await?;
    Ok(Json(json!({ "incident": IncidentView::from(&incident) })).into_response())
}

/// `POST /v1/incidents/{id}/escalate`: the next escalation step, now.
pub async fn escalate(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, _, actor) = command_request(&st, &raw, &headers, body, &[])?;
    let incident = st.service.escalate(id, actor).await?;
    Ok(Json(json!({ "incident": IncidentView::from(&incident) })).into_response())
}

/// `GET /v1/incidents/{id}/notifications`: its pages and their delivery state.
pub async fn notifications(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Read)?;
    let id = parse_id(&raw)?;
    let outbox = st
        .service
        .read(move |s| match s.incident(id)? {
            Some(_) => s.outbox_for(id).map(Some),
            None => Ok(None),
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("incident {id} does not exist")))?;
    let entries: Vec<serde_json::Value> = outbox
        .into_iter()
        .map(|e| {
            // The key receivers saw, to match their logs against.
            let mut v = json!(e);
            v["idempotency_key"] = json!(e.external_key());
            v
        })
        .collect();
    Ok(Json(json!({ "notifications": entries })).into_response())
}

/// `GET /v1/backup`: a consistent snapshot of the store as JSON lines
/// (admin token). Restore it with `tocsin restore`.
pub async fn backup(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Admin)?;
    let store = st.service.store().clone();
    let now = st.service.clock().now();
    // Streamed as the store is read: memory stays bounded by the channel,
    // and writers go on (see `Store::backup`). A failure part way ends
    // the stream with an error, so no client takes a cut backup for whole
    // (and a v2 backup without its end line is refused by restore).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter(tx.clone()));
        let result = store.backup(&mut out, now).and_then(|n| {
            use std::io::Write;
            out.flush()
                .map(|()| n)
                .map_err(|e| crate::store::StoreError::Backend(e.to_string()))
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "The backup failed part way; the client's stream is cut");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/jsonl")],
        axum::body::Body::from_stream(Chunks(rx)),
    )
        .into_response())
}

/// Sends what is written through a channel, waiting while it is full.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The receiving end, as a body stream.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// `GET /metrics`: Prometheus exposition text, for a read token or a peer
/// in `[server] metrics_networks`. Gauges of stored state come from the
/// store's in-memory counts (the same cost at any history).
pub async fn metrics(
    State(st): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Response, ApiError> {
    if !metrics_network(&st, extensions.get()) {
        authorize(&st, &headers, Scope::Read).map_err(|mut e| {
            if e.status == StatusCode::UNAUTHORIZED {
                e.message = format!(
                    "{}, or scrape from a network in [server] metrics_networks",
                    e.message
                );
            }
            e
        })?;
    }
    let now = st.service.clock().now();
    let gauges = st.service.read(|s| s.gauges()).await?;
    let active = st.service.active_windows().await?;
    crate::metrics::METRICS
        .maintenance_windows_active
        .set(active as i64);
    let text = crate::metrics::METRICS.encode_scrape(&gauges, st.service.flapping_count(), now);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /healthz`: the process is alive, and its store has not been
/// failing writes (without recovering) for longer than `[storage]
/// unhealthy_after`.
pub async fn healthz(State(st): State<AppState>) -> Response {
    match st.service.store().failing_for() {
        Some(d) if d > st.config.storage.unhealthy_after => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failing",
                "store": format!("writes have failed for {} s and reopening the store did not help; restart tocsin", d.as_secs()),
            })),
        )
            .into_response(),
        _ => Json(json!({ "status": "ok" })).into_response(),
    }
}

/// `GET /readyz`: ready when the store is open and writable and the
/// escalation scheduler is running. Chat platforms are reported (their
/// last call) but do not make tocsin unready: alerts must still be taken
/// and paged by other means while Slack or Discord is down.
pub async fn readyz(State(st): State<AppState>) -> Response {
    let store = st.service.store().clone();
    let store_check = match tokio::task::spawn_blocking(move || store.check_writable()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("check failed: {e}")),
    };
    let beat = st
        .service
        .wakers()
        .scheduler_beat
        .load(std::sync::atomic::Ordering::Relaxed);
    let now = st.service.clock().now().timestamp_millis();
    let scheduler_check = if beat == 0 {
        Err("the escalation scheduler has not started".to_string())
    } else if now - beat > 90_000 {
        Err(format!(
            "the escalation scheduler last ran {} s ago",
            (now - beat) / 1000
        ))
    } else {
        Ok(())
    };
    let mut platforms = serde_json::Map::new();
    for p in st.service.chat_platforms() {
        let last = st.service.wakers().chat_health.lock().get(p).cloned();
        platforms.insert(
            p.to_string(),
            json!(match last {
                None => "configured; no call yet".to_string(),
                Some(None) => "ok".to_string(),
                Some(Some(e)) => format!("last call failed: {e}"),
            }),
        );
    }
    let word = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let ready = store_check.is_ok() && scheduler_check.is_ok();
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "checks": {
            "store": word(&store_check),
            "scheduler": word(&scheduler_check),
            "chat": platforms,
        },
        // Informational: a replica that does not lead is as ready as one
        // that does.
        "leader": st.service.is_leader(),
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Unknown route.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see the README for the API")
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
