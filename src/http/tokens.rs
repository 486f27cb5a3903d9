//! API tokens over HTTP (admin scope): create, list, revoke.

use super::auth::authorize;
use super::{ApiError, AppState};
use crate::access::{ApiToken, Scope};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// A token as the API shows it: never its hash.
fn view(t: &ApiToken) -> Value {
    json!({
        "id": t.id,
        "user": t.user,
        "scope": t.scope,
        "created_at": t.created_at,
        "created_by": t.created_by,
        "revoked_at": t.revoked_at,
        "sign_in": t.sign_in,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    user: String,
    scope: String,
}

/// `POST /v1/tokens` `{"user": "alice", "scope": "read|write|admin"}`:
/// the token, shown this once.
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &headers, Scope::Admin)?;
    let body = body?;
    let new: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let scope: Scope = new
        .scope
        .parse()
        .map_err(|e: String| ApiError::bad_request(format!("'scope': {e}")))?;
    if st.service.directory().user(&new.user).is_none() {
        return Err(ApiError::bad_request(format!(
            "'user' must name a configured user ([[users]] name); '{}' is not one",
            new.user.escape_debug()
        )));
    }
    let (record, token) = st
        .service
        .create_token(&new.user, scope, &caller.principal)
        .await?;
    let mut shown = view(&record);
    shown["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(json!({ "token": shown }))).into_response())
}

/// `GET /v1/tokens`: every token, revoked ones too, without secrets.
pub async fn list(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers, Scope::Admin)?;
    let mut tokens = st
        .service
        .store()
        .tokens()
        .map_err(crate::service::ServiceError::from)?;
    tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let list: Vec<Value> = tokens.iter().map(view).collect();
    Ok(Json(json!({ "tokens": list })).into_response())
}

/// `DELETE /v1/tokens/{id}`: revokes the token; it is refused from then on.
pub async fn revoke(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authorize(&st, &headers, Scope::Admin)?;
    match st.service.revoke_token(&id, &caller.principal).await? {
        Some(t) => Ok(Json(json!({ "token": view(&t) })).into_response()),
        None => Err(ApiError::not_found(format!(
            "there is no token '{}'",
            id.escape_debug()
        ))),
    }
}
