//! The HTTP surface: alert intake, the REST API, health checks, Twilio's
//! webhooks and the push buttons.
//!
//! Handlers authenticate, bound and parse the request, call the
//! [`Service`], and map results to responses. Spans
//! carry the matched route, never the raw URL (which may hold a key).
//!
//! Routes come in two sets, for two listeners: [`Routes::public`] (alert
//! intake, and the chat platforms' routes the app adds) and
//! [`Routes::api`] (the REST API, `/metrics`, `/readyz`, behind tokens and
//! the `Host` check); `/healthz` is in both. A route on the other
//! listener is a 404.

mod api;
mod auth;
pub mod console;
mod error;
mod heartbeat;
mod intake;
mod maintenance;
mod push;
pub(crate) mod reports;
mod schedules;
mod serve;
pub mod status_page;
mod tokens;
mod twilio;

pub use auth::LocalAddr;

pub use serve::{Limits, RequestDeadline, serve};

pub use error::ApiError;

use crate::config::Config;
use crate::service::Service;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{get, post};
use std::sync::Arc;
use tower_http::trace::TraceLayer;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The one writer.
    pub service: Service,
    /// The loaded configuration.
    pub config: Arc<Config>,
}

/// Counts and times each request by its matched route (never the raw URL,
/// which may hold a key, and which would explode the label cardinality).
pub async fn track(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use crate::metrics::{METRICS, labels};
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    METRICS
        .http_requests
        .get_or_create(&labels([
            ("route", &route),
            ("method", &method),
            ("status", &status),
        ]))
        .inc();
    METRICS
        .http_duration
        .get_or_create(&labels([("route", &route)]))
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// The routes, by the listener that serves them.
pub struct Routes {
    /// Alert intake: what senders on the internet must reach.
    pub public: Router,
    /// The REST API, `/metrics` and `/readyz`, with the `Host` check.
    pub api: Router,
    /// `/healthz`, served on both listeners.
    pub health: Router,
}

/// Builds the routes.
pub fn routes(state: AppState) -> Routes {
    let alert_limit = DefaultBodyLimit::max(state.config.server.max_alert_body_bytes);
    let hook_header = post(intake::hook_header)
        .put(intake::hook_header)
        .layer(alert_limit);
    let hook_path = post(intake::hook_path)
        .put(intake::hook_path)
        .layer(alert_limit);
    let alerts = post(intake::prometheus_alerts).layer(alert_limit);
    let alerts_path = post(intake::prometheus_alerts_path).layer(alert_limit);
    let mut public = Router::new();
    // Every intake route also answers with a trailing slash (Sentry posts
    // to `/v2/enqueue/`).
    for (path, handler) in [
        ("/v2/enqueue", post(intake::enqueue)),
        ("/v2/change/enqueue", post(intake::change_enqueue)),
        (
            "/generic/2010-04-15/create_event.json",
            post(intake::enqueue_v1),
        ),
        ("/hooks", hook_header),
        ("/hooks/{key}", hook_path),
        ("/api/v2/alerts", alerts.clone()),
        ("/api/v1/alerts", alerts),
        ("/hooks/{key}/api/v2/alerts", alerts_path.clone()),
        ("/hooks/{key}/api/v1/alerts", alerts_path),
    ] {
        public = public
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    // Twilio's webhooks and the push buttons face the internet.
    let public = public
        .merge(twilio::routes())
        .merge(push::routes())
        .merge(heartbeat::routes())
        .merge(status_page::routes());
    let api = Router::new()
        .route("/v1/incidents", get(api::list_incidents))
        .route("/v1/incidents/{id}", get(api::show_incident))
        .route("/v1/incidents/{id}/acknowledge", post(api::acknowledge))
        .route("/v1/incidents/{id}/resolve", post(api::resolve))
        .route("/v1/incidents/{id}/snooze", post(api::snooze))
        .route("/v1/incidents/{id}/escalate", post(api::escalate))
        .route("/v1/incidents/{id}/notes", post(api::add_note))
        .route("/v1/incidents/{id}/updates", post(api::post_update))
        .route("/v1/incidents/{id}/public", post(api::set_public))
        .route("/v1/incidents/{id}/notifications", get(api::notifications))
        .route("/v1/incidents/{id}/summary", get(api::summary))
        .route("/v1/incidents/{id}/timeline", get(api::timeline))
        .route("/v1/oncall", get(schedules::oncall_now))
        .route("/v1/schedules/{name}/shifts", get(schedules::shifts))
        .route("/v1/schedules/{name}/ical", get(schedules::ical))
        .route(
            "/v1/schedules/{name}/overrides",
            get(schedules::list_overrides).post(schedules::add_override),
        )
        .route(
            "/v1/schedules/{name}/overrides/{id}",
            axum::routing::delete(schedules::delete_override),
        )
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/v1/stats", get(api::stats))
        .route("/metrics", get(api::metrics))
        .route("/v1/backup", get(api::backup))
        .route("/readyz", get(api::readyz))
        .route("/v1/reports/response", get(reports::response))
        .route("/v1/reports/pages", get(reports::pages))
        .merge(console::routes(&state))
        .merge(maintenance::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check_host,
        ));
    let health = Router::new().route("/healthz", get(api::healthz));
    Routes {
        public: public.with_state(state.clone()),
        api: api.with_state(state.clone()),
        health: health.with_state(state),
    }
}

/// The protections and instrumentation every route gets, the chat
/// platforms' included: body limit, metrics, a span per request keyed by
/// the matched route. Apply after merging all routes. (The request
/// deadline is [`serve`]'s: it covers the headers too.)
pub fn finish(router: Router, max_body_bytes: usize) -> Router {
    router
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .route_layer(axum::middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "unmatched".into());
            tracing::info_span!("request", method = %req.method(), route = %route)
        }))
}
