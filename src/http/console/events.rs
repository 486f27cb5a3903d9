//! `GET /events`: server-sent events for the open console pages. Each
//! change the service's feed reports is read back from the store and sent
//! as `event: incident` with `{"key", "html"}`: the incidents table's row
//! for it, or `null` when it no longer passes the page's filters. A
//! receiver that fell behind gets `event: reload`.

use super::pages::incident_row;
use super::{Refusal, viewer};
use crate::http::AppState;
use crate::http::api::parse_id;
use crate::incident::{Incident, IncidentId, Severity, Status};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

/// The page's filters, as on `/incidents`; `incident` for one incident's page.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    status: Option<String>,
    service: Option<String>,
    severity: Option<String>,
    incident: Option<String>,
    /// The list page's cursor: ignored (only the first page is live).
    #[serde(default)]
    #[allow(dead_code)]
    before: Option<String>,
}

struct Filter {
    status: Option<String>,
    service: Option<String>,
    severity: Option<Severity>,
    incident: Option<IncidentId>,
}

impl Filter {
    fn admits(&self, inc: &Incident) -> bool {
        let status = match self.status.as_deref() {
            None => true,
            Some("open") => inc.status != Status::Resolved,
            Some(s) => inc.status.as_str() == s,
        };
        status
            && self.service.as_deref().is_none_or(|s| s == inc.service)
            && self.severity.is_none_or(|s| s == inc.severity)
    }
}

/// `GET /events?status=&service=&severity=` or `?incident=INC-n`
pub async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    viewer(&st, &headers)?;
    let Query(q) = query.map_err(|e| crate::http::ApiError::bad_request(e.body_text()))?;
    let empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = Filter {
        status: empty(q.status),
        service: empty(q.service),
        severity: empty(q.severity).and_then(|s| Severity::from_sender(&s)),
        incident: empty(q.incident).map(|i| parse_id(&i)).transpose()?,
    };
    let mut feed = st.service.feed().subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let closed = st.service.feed().clone();
        loop {
            let id = tokio::select! {
                r = feed.recv() => r,
                _ = tx.closed() => return,
                _ = closed.closed() => return,
            };
            let event = match id {
                Ok(id) if filter.incident.is_some_and(|want| want != id) => continue,
                Ok(id) => {
                    let Ok(Some(inc)) = st.service.read(move |s| s.incident(id)).await else {
                        continue;
                    };
                    let html = filter.admits(&inc).then(|| incident_row(&inc));
                    Event::default()
                        .event("incident")
                        .id(inc.id.to_string())
                        .data(
                            json!({ "key": inc.id.to_string(), "status": inc.status.as_str(), "html": html })
                                .to_string(),
                        )
                }
                Err(RecvError::Lagged(_)) => Event::default().event("reload").data("{}"),
                Err(RecvError::Closed) => return,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(Events(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The receiving end, as an event stream.
struct Events(tokio::sync::mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}
