//! `POST /push/{token}`: the Acknowledge and Resolve buttons of a push
//! page, on the public listener. The token is signed by tocsin
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

/// The push buttons' route; merge it into the public listener's router.
pub fn routes() -> Router<AppState> {
    Router::new().route("/push/{token}", post(press))
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
    if st.service.directory().user(&claim.user).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("user '{}' is no longer configured", claim.user),
        ));
    }
    let principal = claim.principal();
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
            "this button was already used",
        ));
    }
    let actor = Actor::authenticated(&claim.user, principal);
    let result = match claim.action {
        LinkAction::Acknowledge => st.service.acknowledge(claim.incident, actor).await,
        LinkAction::Resolve => st.service.resolve(claim.incident, actor, None).await,
    };
    let inc = result.map_err(|e| match e {
        crate::service::ServiceError::Refused(r) => {
            ApiError::new(StatusCode::CONFLICT, "refused", r.to_string())
        }
        e => ApiError::from(e),
    })?;
    Ok(Json(json!({
        "incident": inc.id.to_string(),
        "status": inc.status,
        "message": format!("{} is {}", inc.id, inc.status),
    }))
    .into_response())
}
