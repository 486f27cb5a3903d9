//! The web console, on the API listener at `/`: server-rendered pages over
//! the same store reads and service calls as the REST API, signed in with
//! an API token (see [`session`]).
//!
//! Every page names its viewer's scope: a read token sees no action forms,
//! and its POSTs are refused (403) server-side all the same. Every POST
//! carries the session's CSRF token and, if the browser sends `Origin`, it
//! must be this host. Every response forbids framing and foreign scripts
//! (`Content-Security-Policy`); every string from an incident is escaped.

mod actions;
mod events;
mod maintenance;
pub mod markdown;
mod pages;
mod services;
pub mod session;

use super::auth::Principal;
use super::{ApiError, AppState};
use crate::access::Scope;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use session::{BOOTSTRAP_PREFIX, Session, Signer, bootstrap_id};

/// The console's routes (none unless `[console] enabled`).
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.config.console.enabled {
        return Router::new();
    }
    Router::new()
        .route("/", get(|| async { Redirect::to("/incidents") }))
        .route("/login", get(actions::login_form).post(actions::login))
        .route(
            "/login/link",
            get(actions::link_form).post(actions::link_login),
        )
        .route("/login/email", axum::routing::post(actions::email_link))
        .route("/logout", post(actions::logout))
        .route("/incidents", get(pages::incidents).post(actions::declare))
        .route("/incidents/{id}", get(pages::incident))
        .route("/incidents/{id}/{action}", post(actions::incident_action))
        .route("/oncall", get(pages::oncall))
        .route("/schedules/{name}", get(pages::schedule))
        .route("/schedules/{name}/overrides", post(actions::add_override))
        .route(
            "/schedules/{name}/overrides/{id}/delete",
            post(actions::delete_override),
        )
        .route(
            "/maintenance",
            get(maintenance::page).post(maintenance::start),
        )
        .route("/maintenance/{id}/end", post(maintenance::end))
        .route("/services", get(services::page))
        .route("/reports", get(pages::reports))
        .route("/reports.csv", get(pages::reports_csv))
        .route("/reports/pages.csv", get(pages::pages_csv))
        .route("/events", get(events::events))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(axum::middleware::map_response(protect))
}

/// Headers every console response carries: no framing, no script or style
/// from anywhere else, no caching of pages that hold incidents, no
/// referrer to other sites. (`no-referrer` would make browsers send
/// `Origin: null` on the console's own forms, which [`same_origin`] refuses.)
async fn protect(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Who is looking: the token behind the session, and the session.
pub struct Viewer {
    /// The token's user, principal and scope.
    pub principal: Principal,
    /// The session (for its CSRF token).
    pub session: Session,
    /// The CSRF token every form carries.
    pub csrf: String,
}

impl Viewer {
    /// The name shown in the header.
    pub fn name(&self) -> &str {
        self.principal.user.as_deref().unwrap_or("api")
    }

    /// Whether the viewer may act on incidents.
    pub fn can_write(&self) -> bool {
        self.principal.scope >= Scope::Write
    }

    /// Whether the viewer may change schedules.
    pub fn is_admin(&self) -> bool {
        self.principal.scope >= Scope::Admin
    }
}

/// A console failure, shown as a page.
#[derive(Debug)]
pub enum Refusal {
    /// No valid session: to the sign-in page.
    SignIn,
    /// Shown with this status.
    Page(StatusCode, String),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self::Page(e.status, e.message)
    }
}

impl From<crate::service::ServiceError> for Refusal {
    fn from(e: crate::service::ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

impl Refusal {
    fn forbidden(message: impl Into<String>) -> Self {
        Self::Page(StatusCode::FORBIDDEN, message.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/login").into_response(),
            Self::Page(status, message) => {
                let body = pages::layout(
                    None,
                    "Refused",
                    &format!(
                        "<h1>{} {}</h1><p class=\"error\">{}</p><p><a href=\"/incidents\">Back to the incidents</a></p>",
                        status.as_u16(),
                        markdown::escape(status.canonical_reason().unwrap_or("")),
                        markdown::escape(&message)
                    ),
                );
                (status, body).into_response()
            }
        }
    }
}

/// The signer of `[console] session_key`.
pub fn signer(st: &AppState) -> Signer {
    let key = st
        .config
        .console
        .session_key
        .as_ref()
        .map(|k| k.expose().as_bytes().to_vec())
        .unwrap_or_default();
    Signer::new(&key)
}

/// The viewer behind the request's session cookie: [`Refusal::SignIn`]
/// without one, with a forged or expired one, or when its token was
/// revoked since.
pub fn viewer(st: &AppState, headers: &HeaderMap) -> Result<Viewer, Refusal> {
    let signer = signer(st);
    let value = session::cookie_value(headers).ok_or(Refusal::SignIn)?;
    let session = signer
        .verify(value, st.service.clock().now())
        .ok_or(Refusal::SignIn)?;
    let principal = if session.token_id.starts_with(BOOTSTRAP_PREFIX) {
        let current = st.config.api.token.as_ref().ok_or(Refusal::SignIn)?;
        if bootstrap_id(current.expose()) != session.token_id {
            return Err(Refusal::SignIn);
        }
        Principal {
            user: None,
            principal: "config-token".into(),
            scope: Scope::Admin,
        }
    } else {
        let record = st
            .service
            .store()
            .token(&session.token_id)
            .map_err(crate::service::ServiceError::from)?
            .filter(|t| t.session_ok(st.service.clock().now()))
            .ok_or(Refusal::SignIn)?;
        Principal {
            user: Some(record.user),
            principal: format!("token:{}", record.id),
            scope: record.scope,
        }
    };
    let csrf = signer.csrf(&session);
    Ok(Viewer {
        principal,
        session,
        csrf,
    })
}

/// The checks every POST of a signed-in viewer passes: a same-origin
/// request (when the browser says), the session's CSRF token, and `need`.
pub fn check_post(
    st: &AppState,
    headers: &HeaderMap,
    form: &Form,
    need: Scope,
) -> Result<Viewer, Refusal> {
    same_origin(headers)?;
    let viewer = viewer(st, headers)?;
    let presented = form.get("csrf").unwrap_or_default();
    if !signer(st).csrf_ok(&viewer.session, presented) {
        return Err(Refusal::forbidden(
            "the form's CSRF token is missing or wrong: reload the page and try again",
        ));
    }
    if viewer.principal.scope < need {
        return Err(Refusal::forbidden(format!(
            "this needs a {need} token; you signed in with a {} token",
            viewer.principal.scope
        )));
    }
    Ok(viewer)
}

/// Refuses a POST whose `Origin` is another site's.
fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(Refusal::forbidden("cross-site form posts are refused")),
    }
}

/// A urlencoded form body.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a form body (400 if it is not one).
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        serde_urlencoded::from_bytes(body).map(Self).map_err(|e| {
            Refusal::Page(
                StatusCode::BAD_REQUEST,
                format!("the form could not be read: {e}"),
            )
        })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
