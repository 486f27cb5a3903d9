//! `POST /push/{token}`: the Acknowledge and Resolve buttons of a push
//! page, on the public listener; `GET` shows the incident (what tapping the
//! notification opens) and changes nothing. The token is signed by tocsin
//! ([`crate::notify::push::sign`]), expires (`[ntfy] action_ttl`), and
//! works once: its use is recorded on the incident's timeline as the
//! acting principal, in the transaction that acts, and a second use is
//! refused.

use super::{ApiError, AppState};
use crate::incident::Actor;
use crate::notify::push::{LinkAction, LinkError, verify};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

/// The push buttons' route and the email pages' acknowledge link; merge
/// them into the public listener's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/push/{token}", post(press).get(view))
        .route("/ack/{token}", post(email_press).get(email_view))
}

/// The email link's claim, checked with `[smtp] action_secret`.
fn email_claim(st: &AppState, token: &str) -> Result<crate::notify::push::LinkClaim, ApiError> {
    let Some(secret) = st
        .config
        .smtp
        .as_ref()
        .and_then(|s| s.action_secret.as_ref())
    else {
        return Err(ApiError::not_found("email links are not configured"));
    };
    verify(secret, token, st.service.clock().now()).map_err(|e| match e {
        LinkError::BadSignature => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
        LinkError::Expired => ApiError::new(
            StatusCode::GONE,
            "expired",
            "this link expired: acknowledge in chat or with tocsin incidents ack",
        ),
    })
}

fn html_page(title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><meta name=\"referrer\" content=\"no-referrer\"><title>{}</title></head><body>{body}</body></html>",
        html_escape(title)
    );
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// `GET /ack/{token}`: the email's link. It changes nothing (mail
/// scanners and link previews open links): it shows the incident and an
/// Acknowledge button that POSTs back here.
async fn email_view(
    State(st): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let claim = email_claim(&st, &token)?;
    let inc = st
        .service
        .store()
        .incident(claim.incident)
        .map_err(crate::service::ServiceError::from)?
        .ok_or_else(|| ApiError::not_found(format!("{} does not exist", claim.incident)))?;
    let action = if inc.status == crate::incident::Status::Triggered {
        format!(
            "<form method=\"post\"><button type=\"submit\">Acknowledge {} as {}</button></form>",
            inc.id,
            html_escape(&claim.user)
        )
    } else {
        "<p>Nothing to do: it is no longer waiting for someone.</p>".to_string()
    };
    Ok(html_page(
        &inc.id.to_string(),
        &format!(
            "<h1>{id} {severity}: {title}</h1><p>Service {service}. Status: <strong>{status}</strong>.</p>{action}",
            id = inc.id,
            severity = inc.severity,
            title = html_escape(&inc.title),
            service = html_escape(&inc.service),
            status = inc.status,
        ),
    ))
}

/// `POST /ack/{token}`: acknowledges as the user the email went to, once.
async fn email_press(
    State(st): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let claim = email_claim(&st, &token)?;
    let inc = act(&st, &claim, claim.principal_via("email")).await?;
    Ok(html_page(
        &inc.id.to_string(),
        &format!(
            "<h1>{} is {}</h1><p>Paging stopped. Thank you, {}.</p>",
            inc.id,
            inc.status,
            html_escape(&claim.user)
        ),
    ))
}

/// Acts on the claim once, as its user with `principal`.
async fn act(
    st: &AppState,
    claim: &crate::notify::push::LinkClaim,
    principal: String,
) -> Result<crate::incident::Incident, ApiError> {
    if st.service.directory().user(&claim.user).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("user '{}' is no longer configured", claim.user),
        ));
    }
    let used = st
        .service
        .store()
        .timeline(claim.incident)
        .map_err(crate::service::ServiceError::from)?
        .iter()
        .any(|e| e.actor.principal() == Some(principal.as_str()));
    if used {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "used",
            "this link was already used",
        ));
    }
    let actor = Actor::authenticated(&claim.user, principal);
    let result = match claim.action {
        LinkAction::Acknowledge => st.service.acknowledge(claim.incident, actor).await,
        LinkAction::Resolve => st.service.resolve(claim.incident, actor, None).await,
    };
    result.map_err(|e| match e {
        crate::service::ServiceError::Refused(r) => {
            ApiError::new(StatusCode::CONFLICT, "refused", r.to_string())
        }
        e => ApiError::from(e),
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /push/{token}`: a small page with the incident's state and its
/// latest timeline entries, for the person the page went to.
async fn view(State(st): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let Some(cfg) = &st.config.ntfy else {
        return Err(ApiError::not_found("push is not configured"));
    };
    let now = st.service.clock().now();
    let claim = verify(&cfg.action_secret, &token, now).map_err(|e| match e {
        LinkError::BadSignature => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
        LinkError::Expired => ApiError::new(StatusCode::GONE, "expired", e.to_string()),
    })?;
    let store = st.service.store();
    let inc = store
        .incident(claim.incident)
        .map_err(crate::service::ServiceError::from)?
        .ok_or_else(|| ApiError::not_found(format!("{} does not exist", claim.incident)))?;
    let timeline = store
        .timeline(claim.incident)
        .map_err(crate::service::ServiceError::from)?;
    let lines: String = timeline
        .iter()
        .rev()
        .take(10)
        .map(|e| {
            format!(
                "<li>{} {}: {}</li>",
                e.at.format("%H:%M:%S UTC"),
                html_escape(&e.actor.to_string()),
                html_escape(&e.event.describe())
            )
        })
        .collect();
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{id}</title></head>\
<body><h1>{id} {severity}: {title}</h1><p>Service {service}. Status: <strong>{status}</strong>.</p>\
<p>Acknowledge or resolve with the notification's buttons.</p><h2>Latest</h2><ul>{lines}</ul></body></html>",
        id = inc.id,
        severity = inc.severity,
        title = html_escape(&inc.title),
        service = html_escape(&inc.service),
        status = inc.status,
    );
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response())
}

async fn press(
    State(st): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Some(cfg) = &st.config.ntfy else {
        return Err(ApiError::not_found("push is not configured"));
    };
    let now = st.service.clock().now();
    let claim = verify(&cfg.action_secret, &token, now).map_err(|e| match e {
        LinkError::BadSignature => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
        LinkError::Expired => ApiError::new(StatusCode::GONE, "expired", e.to_string()),
    })?;
    let inc = act(&st, &claim, claim.principal()).await?;
    Ok(Json(json!({
        "incident": inc.id.to_string(),
        "status": inc.status,
        "message": format!("{} is {}", inc.id, inc.status),
    }))
    .into_response())
}
