//! Prometheus metrics, served at `GET /metrics`.
//!
//! One process-wide set (like most exporters): counters and histograms
//! move where things happen; gauges of stored state (open incidents,
//! outbox depth, pending timers) are set at scrape time from the counts
//! the store keeps as its transactions commit ([`crate::store::Gauges`]),
//! so a scrape costs the same at any history and never drifts from the
//! store.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS.iter().copied())
}

/// HTTP latency buckets, seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Timer lateness buckets, seconds.
const LATENESS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0];
/// Time-to-acknowledge and -resolve buckets, seconds.
const RESPONSE_BUCKETS: &[f64] = &[
    30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 86400.0,
];

/// Every metric tocsin exports.
pub struct Metrics {
    registry: Registry,
    /// Alerts received, by integration and outcome (`accepted`, `rejected`).
    pub alerts_received: Family<Labels, Counter>,
    /// Fields of received alerts that tocsin does not know (kept, not
    /// refused), by integration.
    pub intake_unknown_fields: Family<Labels, Counter>,
    /// HTTP requests, by route (the matched path), method and status.
    pub http_requests: Family<Labels, Counter>,
    /// Open HTTP connections.
    pub http_connections_open: Gauge,
    /// HTTP connections the server closed or refused, by reason
    /// (`evicted`, `refused`, `timed_out`).
    pub http_connections_cut: Family<Labels, Counter>,
    /// HTTP request duration, by route.
    pub http_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// Pages delivered, by contact method.
    pub pages_sent: Family<Labels, Counter>,
    /// Pages given up on, by contact method.
    pub pages_failed: Family<Labels, Counter>,
    /// Failed delivery attempts (retried or given up), by method.
    pub deliveries_retried: Family<Labels, Counter>,
    /// Chat platform calls (one per outbox job attempt), by platform, job and outcome.
    pub chat_calls: Family<Labels, Counter>,
    /// Chat platform rate limits (429), by platform and job.
    pub chat_rate_limited: Family<Labels, Counter>,
    /// How late escalation timers fired.
    pub timer_lateness: Histogram,
    /// Time from opening to the first acknowledgement.
    pub time_to_acknowledge: Histogram,
    /// Time from opening to resolve.
    pub time_to_resolve: Histogram,
    /// Open incidents, by severity and status (set at scrape).
    pub incidents_open: Family<Labels, Gauge>,
    /// Pending outbox entries (set at scrape).
    pub outbox_depth: Gauge,
    /// Age of the oldest due outbox entry, seconds (set at scrape).
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    /// Pending escalation timers (set at scrape).
    pub timers_pending: Gauge,
    /// Each heartbeat's last ping, unix seconds, by name.
    pub heartbeat_last_seen: Family<Labels, Gauge>,
    /// Open incidents that are flapping (set at scrape).
    pub incidents_flapping: Gauge,
    /// 1 while this replica holds the singleton lock (runs the retention
    /// sweep and the Discord gateway connection), else 0.
    pub leader: Gauge,
    /// Maintenance windows active now, configured and runtime (set at scrape).
    pub maintenance_windows_active: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let http_duration: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(http_histogram);
        let m = Self {
            alerts_received: Family::default(),
            intake_unknown_fields: Family::default(),
            http_requests: Family::default(),
            http_duration,
            http_connections_open: Gauge::default(),
            http_connections_cut: Family::default(),
            pages_sent: Family::default(),
            pages_failed: Family::default(),
            deliveries_retried: Family::default(),
            chat_calls: Family::default(),
            chat_rate_limited: Family::default(),
            timer_lateness: Histogram::new(LATENESS_BUCKETS.iter().copied()),
            time_to_acknowledge: Histogram::new(RESPONSE_BUCKETS.iter().copied()),
            time_to_resolve: Histogram::new(RESPONSE_BUCKETS.iter().copied()),
            incidents_open: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            timers_pending: Gauge::default(),
            heartbeat_last_seen: Family::default(),
            incidents_flapping: Gauge::default(),
            leader: Gauge::default(),
            maintenance_windows_active: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tocsin_maintenance_windows_active",
            "Maintenance windows active now (configured and runtime): alerts they cover page nobody",
            m.maintenance_windows_active.clone(),
        );
        registry.register(
            "tocsin_heartbeat_last_seen_seconds",
            "When each heartbeat last pinged (unix seconds; at start, as the stored timer says), by name",
            m.heartbeat_last_seen.clone(),
        );
        registry.register(
            "tocsin_alerts_received",
            "Alert events received, by integration and outcome",
            m.alerts_received.clone(),
        );
        registry.register(
            "tocsin_intake_unknown_fields",
            "Fields of received alerts that tocsin does not know (kept with the event), by integration",
            m.intake_unknown_fields.clone(),
        );
        registry.register(
            "tocsin_http_requests",
            "HTTP requests, by matched route, method and status",
            m.http_requests.clone(),
        );
        registry.register(
            "tocsin_http_request_duration_seconds",
            "HTTP request duration, by matched route",
            m.http_duration.clone(),
        );
        registry.register(
            "tocsin_http_connections_open",
            "Open HTTP connections",
            m.http_connections_open.clone(),
        );
        registry.register(
            "tocsin_http_connections_cut",
            "HTTP connections closed or refused by the server, by reason (evicted, refused, timed_out)",
            m.http_connections_cut.clone(),
        );
        registry.register(
            "tocsin_pages_sent",
            "Pages delivered, by contact method",
            m.pages_sent.clone(),
        );
        registry.register(
            "tocsin_pages_failed",
            "Pages given up on, by contact method",
            m.pages_failed.clone(),
        );
        registry.register(
            "tocsin_delivery_failures",
            "Failed delivery attempts (retried or given up), by method",
            m.deliveries_retried.clone(),
        );
        registry.register(
            "tocsin_chat_api_calls",
            "Chat platform jobs attempted, by platform, job and outcome",
            m.chat_calls.clone(),
        );
        registry.register(
            "tocsin_chat_rate_limited",
            "Chat platform 429 answers, by platform and job",
            m.chat_rate_limited.clone(),
        );
        registry.register(
            "tocsin_escalation_timer_lateness_seconds",
            "How late escalation timers fired",
            m.timer_lateness.clone(),
        );
        registry.register(
            "tocsin_time_to_acknowledge_seconds",
            "Time from an incident opening to its first acknowledgement",
            m.time_to_acknowledge.clone(),
        );
        registry.register(
            "tocsin_time_to_resolve_seconds",
            "Time from an incident opening to its resolve",
            m.time_to_resolve.clone(),
        );
        registry.register(
            "tocsin_incidents_open",
            "Open incidents, by severity and status",
            m.incidents_open.clone(),
        );
        registry.register(
            "tocsin_outbox_depth",
            "Pending outbox entries",
            m.outbox_depth.clone(),
        );
        registry.register(
            "tocsin_outbox_oldest_age_seconds",
            "Age of the oldest due outbox entry",
            m.outbox_oldest_age.clone(),
        );
        registry.register(
            "tocsin_escalation_timers_pending",
            "Pending escalation timers",
            m.timers_pending.clone(),
        );
        registry.register(
            "tocsin_incidents_flapping",
            "Open incidents that are flapping (resolves held, re-fires paging nobody)",
            m.incidents_flapping.clone(),
        );
        registry.register(
            "tocsin_leader",
            "1 while this replica holds the singleton lock (the retention sweep, the Discord gateway connection), else 0",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// The exposition text, with the stored-state gauges set from `gauges`
    /// as of `now`.
    pub fn encode_with(&self, gauges: &crate::store::Gauges, now: DateTime<Utc>) -> String {
        let _one = SCRAPE.lock();
        self.set_and_encode(gauges, now)
    }

    /// [`Metrics::encode_with`], and `flapping` open incidents flapping.
    pub fn encode_scrape(
        &self,
        gauges: &crate::store::Gauges,
        flapping: usize,
        now: DateTime<Utc>,
    ) -> String {
        let _one = SCRAPE.lock();
        self.incidents_flapping.set(flapping as i64);
        self.set_and_encode(gauges, now)
    }

    fn set_and_encode(&self, gauges: &crate::store::Gauges, now: DateTime<Utc>) -> String {
        self.incidents_open.clear();
        for (severity, status, n) in &gauges.open {
            self.incidents_open
                .get_or_create(&labels([
                    ("severity", severity.label()),
                    ("status", status.as_str()),
                ]))
                .set(*n as i64);
        }
        let oldest = gauges
            .outbox_next_due
            .filter(|d| *d <= now)
            .map(|d| (now - d).num_milliseconds().max(0) as f64 / 1000.0);
        self.outbox_oldest_age.set(oldest.unwrap_or(0.0));
        self.outbox_depth.set(gauges.outbox_depth as i64);
        self.timers_pending.set(gauges.timers_pending as i64);
        self.encode()
    }
}

/// One scrape at a time: another's clear must not land between this one's
/// set and encode.
static SCRAPE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Shorthand for a label set.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}
