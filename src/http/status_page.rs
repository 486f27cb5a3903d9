//! The public status page, on the public listener: `GET /status` (HTML)
//! and `GET /status.json`. It shows, for services marked `public = true`,
//! the open incidents a responder marked public (`/incident public`) with
//! their status updates, and nothing else: no alerts, labels, notes,
//! people or timeline.
//!
//! Nobody signs in to read it, so it must stay cheap under any load: the
//! view is cached, rebuilt when an incident changed (at most every
//! [`REBUILD_EVERY`]) or after [`MAX_AGE`], and only from the open index.

use super::{ApiError, AppState};
use crate::markup::html::escape;
use crate::service::stakeholders::PublicIncident;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest time between two rebuilds while incidents keep changing.
pub const REBUILD_EVERY: Duration = Duration::from_millis(250);
/// The longest a built view is served without a rebuild.
pub const MAX_AGE: Duration = Duration::from_secs(15);
/// What browsers and proxies may cache it for, in seconds.
const CLIENT_MAX_AGE: &str = "public, max-age=10";

#[derive(Default)]
struct Cache {
    built: Option<Built>,
}

struct Built {
    at: Instant,
    version: u64,
    incidents: Arc<Vec<PublicIncident>>,
}

/// The routes, for the public listener.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/status", get(html))
        .route("/status.json", get(json))
        .layer(Extension(Arc::new(Mutex::new(Cache::default()))))
}

async fn view(st: &AppState, cache: &Mutex<Cache>) -> Result<Arc<Vec<PublicIncident>>, ApiError> {
    if !st.config.services.iter().any(|s| s.public && !s.private) {
        return Err(ApiError::not_found(
            "no service is on the status page (set public = true on a [[services]] entry)",
        ));
    }
    let version = st.service.feed().version();
    if let Some(b) = &cache.lock().built {
        let age = b.at.elapsed();
        if age < MAX_AGE && (b.version == version || age < REBUILD_EVERY) {
            return Ok(b.incidents.clone());
        }
    }
    let incidents = Arc::new(st.service.public_incidents().await?);
    cache.lock().built = Some(Built {
        at: Instant::now(),
        version,
        incidents: incidents.clone(),
    });
    Ok(incidents)
}

fn cacheable(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CLIENT_MAX_AGE),
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /status.json`: `{"title", "incidents": [...]}`.
async fn json(
    State(st): State<AppState>,
    Extension(cache): Extension<Arc<Mutex<Cache>>>,
) -> Result<Response, ApiError> {
    let incidents = view(&st, &cache).await?;
    Ok(cacheable(
        Json(serde_json::json!({
            "title": st.config.status_page.title,
            "all_clear": incidents.is_empty(),
            "incidents": *incidents,
        }))
        .into_response(),
    ))
}

/// `GET /status`: the page.
async fn html(
    State(st): State<AppState>,
    Extension(cache): Extension<Arc<Mutex<Cache>>>,
) -> Result<Response, ApiError> {
    let incidents = view(&st, &cache).await?;
    let services: Vec<&str> = st
        .config
        .services
        .iter()
        .filter(|s| s.public && !s.private)
        .map(|s| s.name.as_str())
        .collect();
    let page = render(&st.config.status_page.title, &services, &incidents);
    Ok(cacheable(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
    ))
}

/// The page's HTML: every value escaped.
pub fn render(title: &str, services: &[&str], incidents: &[PublicIncident]) -> String {
    let title = escape(title);
    let mut body = String::new();
    if incidents.is_empty() {
        body.push_str("<p class=\"clear\">All systems operational.</p>\n");
    }
    for inc in incidents {
        body.push_str(&format!(
            "<section class=\"incident\" aria-labelledby=\"{id}\">\n<h2 id=\"{id}\">{t}</h2>\n<p class=\"meta\">{svc} · {sev} · {status} · since <time datetime=\"{start}\">{start_h}</time></p>\n",
            id = escape(&inc.id),
            t = escape(&inc.title),
            svc = escape(&inc.service),
            sev = inc.severity,
            status = match inc.status {
                crate::incident::Status::Triggered => "investigating",
                crate::incident::Status::Acknowledged => "identified, being worked on",
                crate::incident::Status::Resolved => "resolved",
            },
            start = inc.started_at.to_rfc3339(),
            start_h = inc.started_at.format("%Y-%m-%d %H:%M UTC"),
        ));
        if inc.updates.is_empty() {
            body.push_str("<p class=\"none\">We are looking into it; updates follow here.</p>\n");
        } else {
            body.push_str("<ol class=\"updates\">\n");
            for u in &inc.updates {
                body.push_str(&format!(
                    "<li><time datetime=\"{}\">{}</time> {}</li>\n",
                    u.at.to_rfc3339(),
                    u.at.format("%Y-%m-%d %H:%M UTC"),
                    escape(&u.text).replace('\n', "<br>")
                ));
            }
            body.push_str("</ol>\n");
        }
        body.push_str("</section>\n");
    }
    let services = services
        .iter()
        .map(|s| escape(s))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}<p class=\"foot\">Services: {services}.</p>\n</main>\n</body>\n</html>\n"
    )
}

/// Dark text on white and white on dark blue: both above WCAG AA contrast.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;margin:0}main{max-width:44rem;margin:0 auto;padding:1.5rem}h1{font-size:1.6rem}.clear{padding:1rem;background:#0b5d1e;color:#fff;border-radius:.4rem}.incident{border:1px solid #767676;border-radius:.4rem;padding:0 1rem;margin:1rem 0}.meta,.foot{color:#4a4a4a}.updates{padding-left:1.2rem}.updates li{margin:.5rem 0}time{font-weight:600}";
