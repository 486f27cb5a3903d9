//! The console's POSTs: sign in and out, the incident actions, overrides.
//! Each goes through the same service call as the REST API, as the
//! signed-in token's user.

use super::markdown::escape;
use super::session::{self, bootstrap_id};
use super::{Form, Refusal, check_post, pages::layout, signer};
use crate::access::Scope;
use crate::http::AppState;
use crate::http::api::{MAX_NOTE_CHARS, parse_id};
use crate::store::StoredOverride;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{NaiveDateTime, Utc};

/// The sign-in page: the token form, and how else to sign in where the
/// config allows (a link by chat or by email).
fn login_page(st: &AppState, message: Option<&str>, notice: Option<&str>) -> Html<String> {
    let error = message
        .map(|m| format!(r#"<p class="error" role="alert">{}</p>"#, escape(m)))
        .unwrap_or_default();
    let notice = notice
        .map(|m| format!(r#"<p class="notice" role="status">{}</p>"#, escape(m)))
        .unwrap_or_default();
    let config = &st.config;
    let links = config.console.url.is_some();
    let mut other = String::new();
    if links && (config.slack.is_some() || config.discord.is_some()) {
        other.push_str(r#"<p>Or type <code>/incident login</code> in Slack or Discord: tocsin answers you alone with a link that signs you in once.</p>"#);
    }
    if links && config.smtp.is_some() {
        other.push_str(r#"<form method="post" action="/login/email" class="login"><label>Your tocsin user name or email <input type="text" name="who" autocomplete="username" required></label> <button>Email me a sign-in link</button></form>"#);
    }
    layout(
        None,
        "Sign in",
        &format!(
            r#"<h1>Sign in</h1>{error}{notice}
<form method="post" action="/login" class="login"><label>API token <input type="password" name="token" autocomplete="off" required autofocus placeholder="tsn_..."></label> <button>Sign in</button></form>
{other}<p class="muted">Make a token with <code>tocsin token create --user YOU --scope read|write|admin</code>. A read token shows incidents and schedules; a write token acts on incidents; an admin token also edits schedules.</p>"#
        ),
    )
}

/// Starts a session naming `token_id` and sends the browser to the
/// incidents.
fn start_session(st: &AppState, token_id: &str) -> Response {
    let ttl = st.config.console.session_ttl;
    let expires = st.service.clock().now()
        + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    let (_, value) = signer(st).issue(token_id, expires);
    let cookie = session::set_cookie(&value, ttl, st.config.console.secure_cookie);
    let mut resp = Redirect::to("/incidents").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("the cookie is ASCII"),
    );
    resp
}

/// `GET /login`
pub async fn login_form(State(st): State<AppState>) -> Html<String> {
    login_page(&st, None, None)
}

/// `POST /login` `token=...`: checks the token as the API would and sets
/// the session cookie.
pub async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    super::same_origin(&headers)?;
    let form = Form::parse(&body)?;
    let presented = form.get("token").unwrap_or_default().trim();
    let principal = match crate::http::auth::identify(&st, presented) {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            tracing::info!("Console sign-in refused: wrong or revoked token");
            return Ok((
                StatusCode::UNAUTHORIZED,
                login_page(&st, Some("That token is wrong or was revoked."), None),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let token_id = match principal.principal.strip_prefix("token:") {
        Some(id) => id.to_string(),
        None => bootstrap_id(presented),
    };
    tracing::info!(principal = %principal.principal, scope = %principal.scope, "Console sign-in");
    Ok(start_session(&st, &token_id))
}

/// `GET /login/link?code=...`: asks before using the link, so a chat
/// client's or a mail scanner's preview of the URL does not spend it.
pub async fn link_form(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(code) = q.get("code").filter(|c| !c.trim().is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            login_page(
                &st,
                Some("That sign-in link has no code; ask for a new one."),
                None,
            ),
        )
            .into_response();
    };
    layout(
        None,
        "Sign in",
        &format!(
            r#"<h1>Sign in</h1>
<p>This one-time link signs you in to the tocsin console.</p>
<form method="post" action="/login/link" class="login"><input type="hidden" name="code" value="{}"><button autofocus>Sign in</button></form>
<p class="muted">The link works once. If you did not ask for it, close this page.</p>"#,
            escape(code)
        ),
    )
    .into_response()
}

/// `POST /login/link` `code=...`: uses a one-time sign-in link and sets
/// the session cookie; a used, expired or unknown link is refused (401)
/// and signs nobody in.
pub async fn link_login(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    super::same_origin(&headers)?;
    let form = Form::parse(&body)?;
    let code = form.get("code").unwrap_or_default();
    match st.service.redeem_sign_in(code).await? {
        Ok(record) => {
            tracing::info!(principal = %format!("token:{}", record.id), user = %record.user, scope = %record.scope, "Console sign-in by link");
            Ok(start_session(&st, &record.id))
        }
        Err(refusal) => {
            let message = refusal.to_string();
            let mut m = message.chars();
            let message: String = m
                .next()
                .map(|c| c.to_uppercase().chain(m).collect())
                .unwrap_or_default();
            Ok((
                StatusCode::UNAUTHORIZED,
                login_page(&st, Some(&format!("{message}.")), None),
            )
                .into_response())
        }
    }
}

/// `POST /login/email` `who=...`: emails the user a sign-in link, and
/// answers the same whether or not there is such a user.
pub async fn email_link(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    super::same_origin(&headers)?;
    let form = Form::parse(&body)?;
    let who = form.get("who").unwrap_or_default().trim().to_string();
    if who.is_empty() || who.chars().count() > 200 {
        return Err(bad("Give your tocsin user name or email address."));
    }
    st.service.email_sign_in_link(&who).await;
    let valid = humantime::format_duration(st.config.console.link_ttl).to_string();
    Ok(login_page(
        &st,
        None,
        Some(&format!(
            "If {who} is a tocsin user with an email address, a sign-in link is on its way. It works once, within {valid}."
        )),
    )
    .into_response())
}

/// `POST /logout`: forgets the cookie.
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    check_post(&st, &headers, &form, Scope::Read)?;
    let mut resp = Redirect::to("/login").into_response();
    let cookie = session::clear_cookie(st.config.console.secure_cookie);
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("the cookie is ASCII"),
    );
    Ok(resp)
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::Page(StatusCode::BAD_REQUEST, message.into())
}

/// `POST /incidents/{id}/{action}`: acknowledge, resolve, escalate,
/// snooze (`duration`), note (`text`), update (`text`: a status update),
/// public (`public`: true or false), severity (`severity`), step
/// (`step`, `note`: a runbook step done) and next-phase.
pub async fn incident_action(
    State(st): State<AppState>,
    Path((raw, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    let viewer = check_post(&st, &headers, &form, Scope::Write)?;
    let id = parse_id(&raw)?;
    let by = viewer.principal.actor(&st, None)?;
    let svc = &st.service;
    match action.as_str() {
        "acknowledge" => svc.acknowledge(id, by).await?,
        "resolve" => {
            let note = form
                .get("note")
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            svc.resolve(id, by, note).await?
        }
        "escalate" => svc.escalate(id, by).await?,
        "snooze" => {
            let raw = form.get("duration").unwrap_or_default();
            let d = humantime::parse_duration(raw)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(7))
                .ok_or_else(|| bad(format!("snooze for 30m or 2h, at most 7 days, not '{raw}'")))?;
            svc.snooze(id, by, d).await?
        }
        "note" => {
            let text = form.get("text").map(str::trim).unwrap_or_default();
            if text.is_empty() {
                return Err(bad("the note is empty"));
            }
            if text.chars().count() > MAX_NOTE_CHARS {
                return Err(bad(format!(
                    "a note may have at most {MAX_NOTE_CHARS} characters"
                )));
            }
            svc.add_note(id, text, by).await?
        }
        "update" => {
            let text = form.get("text").map(str::trim).unwrap_or_default();
            if text.is_empty() {
                return Err(bad("the status update is empty"));
            }
            let max = crate::incident::UPDATE_MAX;
            if text.chars().count() > max {
                return Err(bad(format!(
                    "a status update may have at most {max} characters"
                )));
            }
            svc.post_update(id, text, by).await?.0
        }
        "public" => {
            let public = match form.get("public") {
                Some("true") => true,
                Some("false") => false,
                other => {
                    return Err(bad(format!(
                        "'public' must be true or false, not '{}'",
                        other.unwrap_or_default()
                    )));
                }
            };
            svc.set_public(id, public, by).await?.0
        }
        "severity" => {
            let raw = form.get("severity").unwrap_or_default();
            let to = crate::incident::Severity::from_sender(raw)
                .ok_or_else(|| bad(format!("unknown severity '{raw}'; use sev1 to sev4")))?;
            svc.set_severity(id, to, by).await?
        }
        "step" => {
            let step = form.get("step").unwrap_or_default().to_string();
            let note = form
                .get("note")
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            let step = crate::incident::RunbookStep::Done { step, note };
            svc.runbook_step(id, step, by).await?
        }
        "next-phase" => {
            svc.runbook_step(id, crate::incident::RunbookStep::NextPhase, by)
                .await?
        }
        "role" => {
            // As chat's default (`[services.permissions] roles = "admins"`):
            // roles are given by admins.
            if !viewer.is_admin() {
                return Err(Refusal::Page(
                    StatusCode::FORBIDDEN,
                    "giving a role takes an admin token".into(),
                ));
            }
            let role = form.get("role").unwrap_or_default();
            if !["commander", "comms", "scribe"].contains(&role) {
                return Err(bad(format!(
                    "unknown role '{role}'; use commander, comms or scribe"
                )));
            }
            let user = form.get("user").unwrap_or_default();
            if !st.config.users.iter().any(|u| u.name == user) {
                return Err(bad(format!("'{user}' is not a tocsin user")));
            }
            svc.assign_role(id, role, user, by).await?
        }
        other => {
            return Err(Refusal::Page(
                StatusCode::NOT_FOUND,
                format!("no such action '{other}'"),
            ));
        }
    };
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

/// `POST /incidents` `title`, `severity`: declares an incident on `[chat]
/// default_service`, as `/incident new` does, and shows it.
pub async fn declare(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    let viewer = check_post(&st, &headers, &form, Scope::Write)?;
    let title = form.get("title").unwrap_or_default().trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(bad("An incident needs a title of at most 200 characters."));
    }
    let severity = match form
        .get("severity")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(raw) => Some(
            crate::incident::Severity::from_sender(raw)
                .ok_or_else(|| bad(format!("unknown severity '{raw}'; use sev1 to sev4")))?,
        ),
        None => None,
    };
    let by = viewer.principal.actor(&st, None)?;
    let inc = st.service.open_manual(title, severity, by, None).await?;
    Ok(Redirect::to(&format!("/incidents/{}", inc.id)).into_response())
}

fn form_time(form: &Form, field: &str) -> Result<chrono::DateTime<Utc>, Refusal> {
    let raw = form.get(field).unwrap_or_default();
    raw.parse::<chrono::DateTime<Utc>>()
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| bad(format!("'{field}' must be a date and time, not '{raw}'")))
}

/// `POST /schedules/{name}/overrides` `user, start, end` (UTC): admin only,
/// as in the API.
pub async fn add_override(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    let viewer = check_post(&st, &headers, &form, Scope::Admin)?;
    let dir = st.service.directory();
    if dir.schedule(&name).is_none() {
        return Err(Refusal::Page(
            StatusCode::NOT_FOUND,
            format!("schedule '{name}' does not exist"),
        ));
    }
    let user = form.get("user").unwrap_or_default().to_string();
    if dir.user(&user).is_none() {
        return Err(bad(format!("unknown user '{user}'")));
    }
    let (start, end) = (form_time(&form, "start")?, form_time(&form, "end")?);
    if end <= start {
        return Err(bad("'Until' must be after 'From'"));
    }
    let created_by = viewer.principal.acting_user(&st, None)?;
    st.service
        .add_override(StoredOverride {
            id: 0,
            schedule: name.clone(),
            user,
            start,
            end,
            created_by,
        })
        .await?;
    Ok(redirect_to_week(&name, start))
}

fn redirect_to_week(name: &str, at: chrono::DateTime<Utc>) -> Response {
    let qs =
        serde_urlencoded::to_string([("from", at.date_naive().to_string())]).unwrap_or_default();
    let path: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    Redirect::to(&format!("/schedules/{path}?{qs}")).into_response()
}

/// `POST /schedules/{name}/overrides/{id}/delete`: admin only.
pub async fn delete_override(
    State(st): State<AppState>,
    Path((name, id)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form = Form::parse(&body)?;
    check_post(&st, &headers, &form, Scope::Admin)?;
    let dir = st.service.directory();
    let Some(o) = dir.stored_overrides(&name).into_iter().find(|o| o.id == id) else {
        return Err(Refusal::Page(
            StatusCode::NOT_FOUND,
            format!("schedule '{name}' has no override {id}"),
        ));
    };
    st.service.delete_override(&name, id).await?;
    Ok(redirect_to_week(&name, o.start))
}
