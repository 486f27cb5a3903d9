//! Who is calling the API: the bearer token, its scope, the acting user,
//! and the API listener's `Host` check.

use super::intake::{basic, bearer};
use super::{ApiError, AppState};
use crate::access::{Scope, split_token};
use crate::incident::Actor;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use tracing::info;

/// The address of the listener a request came in on (set by
/// [`super::serve`]).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's user; `None` for the bootstrap token, which is no one.
    pub user: Option<String>,
    /// `config-token` or `token:<id>`, as timelines record it.
    pub principal: String,
    /// What it may do.
    pub scope: Scope,
}

impl Principal {
    /// Who acts: the token's user, or for an admin the configured user
    /// named in `by` (refused for anyone else: 403; unknown users and
    /// control characters: 400 naming the field).
    pub fn actor(&self, st: &AppState, by: Option<&str>) -> Result<Actor, ApiError> {
        let name = self.acting_user(st, by)?;
        Ok(Actor::authenticated(name, self.principal.clone()))
    }

    /// The name [`Principal::actor`] records.
    pub fn acting_user(&self, st: &AppState, by: Option<&str>) -> Result<String, ApiError> {
        let Some(by) = by else {
            return Ok(self.user.clone().unwrap_or_else(|| "api".into()));
        };
        if by.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "'by' must not contain newlines or other control characters",
            ));
        }
        if self.user.as_deref() == Some(by) {
            return Ok(by.to_string());
        }
        if self.scope < Scope::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "'by' may name another user only with an admin token; this {} token acts as '{}'",
                    self.scope,
                    self.user.as_deref().unwrap_or("api")
                ),
            ));
        }
        if st.service.directory().user(by).is_none() {
            return Err(ApiError::bad_request(format!(
                "'by' must name a configured user ([[users]] name); '{by}' is not one"
            )));
        }
        Ok(by.to_string())
    }
}

/// The caller behind `Authorization: Bearer TOKEN`, if its scope reaches
/// `need`: 401 without a valid token, 403 with one whose scope is short.
pub fn authorize(st: &AppState, headers: &HeaderMap, need: Scope) -> Result<Principal, ApiError> {
    let result = check_token(st, headers, need);
    if let Err(e) = &result {
        // The span names the route; the token itself is never logged.
        info!(status = e.status.as_u16(), reason = %e.message, "API request refused");
    }
    result
}

fn check_token(st: &AppState, headers: &HeaderMap, need: Scope) -> Result<Principal, ApiError> {
    // Basic auth with the token as password, for calendar apps subscribing
    // to the iCal feed (they cannot send a bearer token).
    let from_basic = basic(headers).map(|(_, password)| password);
    let Some(presented) = bearer(headers).or(from_basic.as_deref()) else {
        return Err(ApiError::unauthorized(
            "missing API token: send 'Authorization: Bearer TOKEN' (tocsin token create makes one)",
        ));
    };
    let principal = identify(st, presented)?;
    if principal.scope < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this call needs a {need} token; {} has {}",
                principal.principal, principal.scope
            ),
        ));
    }
    Ok(principal)
}

pub(super) fn identify(st: &AppState, presented: &str) -> Result<Principal, ApiError> {
    if let Some(bootstrap) = &st.config.api.token
        && bootstrap.matches(presented)
    {
        return Ok(Principal {
            user: None,
            principal: "config-token".into(),
            scope: Scope::Admin,
        });
    }
    let wrong = || ApiError::unauthorized("the API token is wrong or was revoked");
    let (id, secret) = split_token(presented).ok_or_else(wrong)?;
    let record = st
        .service
        .store()
        .token(id)
        .map_err(crate::service::ServiceError::from)?
        .ok_or_else(wrong)?;
    if !record.matches(secret) {
        return Err(wrong());
    }
    Ok(Principal {
        user: Some(record.user),
        principal: format!("token:{}", record.id),
        scope: record.scope,
    })
}

/// Whether the peer may scrape `/metrics` without a token.
pub fn metrics_network(st: &AppState, peer: Option<&ConnectInfo<SocketAddr>>) -> bool {
    peer.is_some_and(|ConnectInfo(p)| {
        st.config
            .server
            .metrics_networks
            .iter()
            .any(|n| n.contains(p.ip()))
    })
}

/// Refuses (421) a request to the API whose `Host` is neither the
/// listener's own address nor a name in `[server] api_hosts`: a page on
/// another site that rebinds its name to this address learns nothing.
pub async fn check_host(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let local_port = req.extensions().get::<LocalAddr>().map(|l| l.0.port());
    match host {
        Some(h) if crate::access::host_allowed(&h, local_port, &st.config.server.api_hosts) => {
            next.run(req).await
        }
        host => {
            let shown = host.as_deref().unwrap_or("(none)");
            info!(host = %shown.escape_debug(), path = %req.uri().path(), "Refused an API request for another host");
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                format!(
                    "this tocsin does not answer the API for host '{}': use its address, localhost, or a name in [server] api_hosts",
                    shown.escape_debug()
                ),
            )
            .into_response()
        }
    }
}
