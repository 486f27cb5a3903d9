//! Heartbeat monitors: a ping moves the heartbeat's durable timer to
//! `now + interval + grace` and resolves its open "missed" incident; the
//! timer firing opens that incident on the heartbeat's service, paged like
//! any alert. Both happen in one transaction with the incident they touch.

use super::intake::RequestBudget;
use super::writer::Priority;
use super::{EventOutcome, Service, ServiceError};
use crate::config::{HeartbeatConfig, IntegrationConfig, IntegrationKind};
use crate::escalation::{Timer, TimerKind, heartbeat_id};
use crate::incident::IncidentId;
use crate::intake::{AlertAction, AlertEvent};
use crate::store::{StoreError, Tx};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use tracing::{info, warn};

/// What the service remembers of each heartbeat, by [`heartbeat_id`]: its
/// pending timer. Updated after each write commits; the
/// store's timers are the truth, this only finds the one to replace.
pub(super) type Beats = parking_lot::Mutex<HashMap<u32, Beat>>;

/// One heartbeat's pending timer.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Beat {
    timer: Option<Timer>,
}

/// The dedup key of a heartbeat's incident.
pub fn dedup_key(name: &str) -> String {
    format!("heartbeat:{name}")
}

fn dur(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::days(365))
}

/// The integration a heartbeat's incidents come from.
fn integration(hb: &HeartbeatConfig) -> IntegrationConfig {
    IntegrationConfig {
        name: dedup_key(&hb.name),
        kind: IntegrationKind::Generic,
        key: hb.key.clone(),
        service: hb.service.clone(),
        resolve_timeout: std::time::Duration::from_secs(300),
        held_resolve_timeout: std::time::Duration::from_secs(4 * 3600),
        resolve_after: None,
        max_requests_per_second: None,
        routes: Vec::new(),
    }
}

fn event(hb: &HeartbeatConfig, action: AlertAction, expected: DateTime<Utc>) -> AlertEvent {
    let summary = match action {
        AlertAction::Trigger => format!(
            "Heartbeat {} missed since {}",
            hb.name,
            expected.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        _ => format!("Heartbeat {} seen again", hb.name),
    };
    AlertEvent {
        dedup_key: dedup_key(&hb.name),
        fingerprint: Some(dedup_key(&hb.name)),
        action,
        summary,
        incident_title: None,
        source: format!("heartbeat {}", hb.name),
        severity: None,
        labels: [("heartbeat".to_string(), hb.name.clone())].into(),
        details: serde_json::json!({
            "heartbeat": hb.name,
            "interval": humantime::format_duration(hb.interval).to_string(),
            "grace": humantime::format_duration(hb.grace).to_string(),
            "expected_at": expected,
        }),
        links: Vec::new(),
        left_out: None,
        expires_at: None,
    }
}

fn timer(hb: &HeartbeatConfig, due: DateTime<Utc>, expected: DateTime<Utc>) -> Timer {
    Timer {
        due,
        incident: IncidentId(0),
        generation: 0,
        kind: TimerKind::Heartbeat {
            heartbeat: heartbeat_id(&hb.name),
            expected,
        },
    }
}

fn note_last_seen(hb: &HeartbeatConfig, at: DateTime<Utc>) {
    crate::metrics::METRICS
        .heartbeat_last_seen
        .get_or_create(&crate::metrics::labels([("name", &hb.name)]))
        .set(at.timestamp());
}

/// The outcome of a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// When the heartbeat's incident opens unless it pings again.
    pub due: DateTime<Utc>,
    /// The missed-heartbeat incident this ping resolved, if one was open.
    pub resolved: Option<IncidentId>,
}

impl Service {
    /// A ping from `hb`: its timer restarts, and its open incident resolves.
    pub async fn heartbeat_ping(&self, hb: &HeartbeatConfig) -> Result<Ping, ServiceError> {
        let now = self.clock.now();
        let id = heartbeat_id(&hb.name);
        let old = self.beats.lock().get(&id).and_then(|b| b.timer);
        let expected = now + dur(hb.interval);
        let new = timer(hb, expected + dur(hb.grace), expected);
        let (svc, hb2) = (self.clone(), hb.clone());
        let outcomes: Vec<EventOutcome> = self
            .write(Priority::Now, move |tx| {
                if let Some(old) = old {
                    tx.delete_timer(&old)?;
                }
                tx.put_timer(&new)?;
                if tx
                    .open_incident(&hb2.service, &dedup_key(&hb2.name))?
                    .is_none()
                {
                    return Ok(Vec::new());
                }
                let resolve = event(&hb2, AlertAction::Resolve, now);
                svc.apply_events(
                    tx,
                    &integration(&hb2),
                    &[resolve],
                    now,
                    &RequestBudget::new(0),
                )
            })
            .await?;
        self.beats.lock().insert(id, Beat { timer: Some(new) });
        note_last_seen(hb, now);
        let resolved = outcomes
            .iter()
            .find(|o| o.effect == super::Effect::Resolved)
            .and_then(|o| o.incident);
        if let Some(inc) = resolved {
            info!(heartbeat = %hb.name, incident = %inc, "Heartbeat seen again; its incident resolved");
        }
        Ok(Ping {
            due: new.due,
            resolved,
        })
    }

    /// At start: arms every configured heartbeat that has no timer (as if
    /// it had just pinged), gives one that came due while tocsin was down
    /// its `grace` to catch up, and drops the timers of heartbeats no
    /// longer configured.
    pub async fn start_heartbeats(&self) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let mut by_id: HashMap<u32, Vec<Timer>> = HashMap::new();
        for t in self.store.heartbeat_timers()? {
            if let TimerKind::Heartbeat { heartbeat, .. } = t.kind {
                by_id.entry(heartbeat).or_default().push(t);
            }
        }
        let mut plans = Vec::new();
        for hb in &self.directory.config.heartbeats {
            let mut timers = by_id.remove(&heartbeat_id(&hb.name)).unwrap_or_default();
            timers.sort_by_key(|t| t.due);
            let latest = timers.pop();
            let catch_up = now + dur(hb.grace);
            let keep = match latest {
                None => {
                    let expected = now + dur(hb.interval);
                    timer(hb, expected + dur(hb.grace), expected)
                }
                Some(t) if t.due < catch_up => {
                    if let TimerKind::Heartbeat { expected, .. } = t.kind {
                        info!(heartbeat = %hb.name, expected = %expected, "Heartbeat came due while tocsin was down; waiting its grace for a ping");
                    }
                    timers.push(t);
                    Timer { due: catch_up, ..t }
                }
                Some(t) => t,
            };
            if let TimerKind::Heartbeat { expected, .. } = keep.kind {
                note_last_seen(hb, expected - dur(hb.interval));
            }
            plans.push((hb.clone(), timers, keep));
        }
        let orphans: Vec<Timer> = by_id.into_values().flatten().collect();
        let plans2 = plans.clone();
        let armed: Vec<Option<Timer>> = self
            .write(Priority::Background, move |tx| {
                for t in &orphans {
                    tx.delete_timer(t)?;
                }
                let mut armed = Vec::new();
                for (hb, stale, keep) in &plans2 {
                    for t in stale {
                        tx.delete_timer(t)?;
                    }
                    if tx
                        .open_incident(&hb.service, &dedup_key(&hb.name))?
                        .is_some()
                    {
                        // Already missed and paged; the next ping resolves it.
                        tx.delete_timer(keep)?;
                        armed.push(None);
                    } else {
                        tx.put_timer(keep)?;
                        armed.push(Some(*keep));
                    }
                }
                Ok(armed)
            })
            .await?;
        let mut beats = self.beats.lock();
        for ((hb, _, _), timer) in plans.iter().zip(armed) {
            beats.insert(heartbeat_id(&hb.name), Beat { timer });
        }
        Ok(())
    }

    /// A heartbeat's timer fired (and was deleted): unless a later ping
    /// superseded it, its incident opens on its service and pages.
    pub(super) fn fire_heartbeat(
        &self,
        tx: &mut dyn Tx,
        timer: &Timer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let TimerKind::Heartbeat {
            heartbeat,
            expected,
        } = timer.kind
        else {
            return Ok(());
        };
        let Some(hb) = self
            .directory
            .config
            .heartbeats
            .iter()
            .find(|h| heartbeat_id(&h.name) == heartbeat)
        else {
            return Ok(()); // no longer configured
        };
        if let Some(current) = self.beats.lock().get(&heartbeat).and_then(|b| b.timer)
            && current != *timer
            && current.due > timer.due
        {
            return Ok(()); // a later ping replaced it
        }
        warn!(heartbeat = %hb.name, service = %hb.service, expected = %expected, "Heartbeat missed; opening an incident");
        let trigger = event(hb, AlertAction::Trigger, expected);
        self.apply_events(
            tx,
            &integration(hb),
            &[trigger],
            now,
            &RequestBudget::new(1),
        )?;
        Ok(())
    }
}
