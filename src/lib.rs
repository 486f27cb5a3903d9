//! tocsin: a chat-ops bot and alert escalator.
//!
//! The map of the crate, from the edge inwards:
//!
//! - [`http`]: the axum router. Alert intake routes, the REST API, health,
//!   and the web console (`http::console`: server-rendered pages, signed
//!   session cookies, live updates from the service's feed). It
//!   authenticates, limits bodies and turns errors into one JSON shape; it
//!   holds no domain logic.
//! - [`chat`]: the chat core (command language, shared handler, the
//!   `ChatPlatform` trait, channel upkeep) and the Slack and Discord adapters.
//! - [`intake`]: one pure parser per alert source (PagerDuty Events v2,
//!   Alertmanager webhook, Prometheus' `/api/v2/alerts`, Grafana, generic
//!   JSON), each turning bytes into normalised [`incident::AlertEvent`]s.
//! - [`oncall`]: on-call schedules: layered rotations with restrictions and
//!   overrides, DST-safe handoffs, shifts and iCalendar feeds. Pure: takes
//!   the instants it is asked about.
//! - [`service`]: the one writer. Every state change (an alert, an
//!   acknowledgement, a resolve) goes through it: it asks the pure domain
//!   for the decision and writes state and timeline in one transaction,
//!   on a writer thread that batches queued changes into one transaction
//!   and one fsync, so nothing is acknowledged before it is on disk.
//! - [`incident`]: incidents, their state machine, dedup and grouping, and
//!   the typed timeline. Pure: takes `now`, does no I/O.
//! - [`escalation`]: escalation policies, the pure "what does this step
//!   notify and what comes next", durable timers and the scheduler task
//!   (over a `TimerHost` that the service implements).
//! - [`notify`]: the outbox (one entry per page, with an idempotency key),
//!   delivery with retries and backoff, and the notifiers (webhook, email,
//!   log). Chat goes through its `ChatDelivery` trait, which the chat layer
//!   implements, and the worker through an `OutboxHost`, which the service
//!   implements: notify names neither.
//! - [`runbook`]: runbook files (loading with file-and-line errors,
//!   matching by service, severity and labels) and progress through their
//!   phases and steps.
//! - [`summary`]: the post-incident summary built from the timeline;
//!   [`templates`]: the minijinja templates that render it and the chat
//!   messages.
//! - [`store`]: the [`store::Store`] trait and its sled backend, with group
//!   commit.
//! - [`config`]: the TOML configuration, environment overrides and
//!   validation that reports every error at once.
//! - [`access`]: API tokens and scopes, metrics networks and the API
//!   listener's `Host` names. Pure.
//! - [`clock`]: the only place that reads the system time.
//! - [`markup`]: escaping for Slack's and Discord's markup, shared by the
//!   chat adapters and the templates.
//! - [`app`]: wires the pieces together and runs the server until shutdown;
//!   it implements the lower layers' host traits for the service.
//!
//! Arrows point down: a lower module owns a trait or a type, an upper one
//! implements or uses it. `tests/integration/architecture.rs` holds the
//! layers and fails on an arrow that points up.
//! - [`client`]: a small REST client used by the CLI.
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.
//! - [`maintenance`]: maintenance windows: what they cover and when. Pure.

#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod chat;
pub mod client;
pub mod clock;
pub mod config;
pub mod escalation;
pub mod http;
pub mod incident;
pub mod intake;
pub mod maintenance;
pub mod markup;
pub mod matchers;
pub mod metrics;
pub mod notify;
pub mod oncall;
pub mod runbook;
pub mod secret;
pub mod service;
pub mod store;
pub mod summary;
pub mod templates;
