//! Applying a request's alert events: grouping, dedup, and flood control.
//!
//! A request's events go to the writer in chunks of [`CHUNK`], each one
//! transaction and one flush, all of them on disk before the sender is
//! answered. Within a chunk an incident is loaded once, the events are
//! applied to it in memory, and it is written once at the end (or as soon as
//! its status changes, so a resolve and a later re-trigger in the same
//! request still open a new incident): a 1,000-alert group costs one
//! incident write, not 1,000.
//!
//! Flood control: a request may open at most
//! `[intake] max_new_incidents_per_request` incidents, and an integration
//! at most `max_new_incidents_per_minute`. Alerts past that join the
//! integration's flood incident (dedup key `flood:<integration>`), which
//! pages once like any other and says in its title how many alerts it
//! holds. Their keys point at it in the open index, so their resolves find
//! them there. Nothing is refused.

use super::{Effect, EventOutcome, Service, ServiceError, paging};
use crate::config::IntegrationConfig;
use crate::incident::{AlertAction, AlertEvent};
use crate::incident::{Change, Incident, IncidentId, Status};
use crate::store::{StoreError, StoredEvent, Tx};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing::info;

/// Events per transaction.
pub(super) const CHUNK: usize = 1024;

/// The dedup key of an integration's flood incident.
pub fn flood_key(integration: &str) -> String {
    format!("flood:{integration}")
}

/// How many new incidents each integration opened in the current minute.
#[derive(Debug, Default)]
pub(super) struct FloodWindows(parking_lot::Mutex<HashMap<String, (i64, usize)>>);

impl FloodWindows {
    /// Takes one from the integration's budget for this minute, if any is left.
    fn take(&self, integration: &str, now: DateTime<Utc>, per_minute: usize) -> bool {
        let minute = now.timestamp().div_euclid(60);
        let mut w = self.0.lock();
        let slot = w.entry(integration.to_string()).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        if slot.1 >= per_minute {
            return false;
        }
        slot.1 += 1;
        true
    }
}

/// One request's budget of new incidents.
#[derive(Debug)]
pub(super) struct RequestBudget {
    left: AtomicUsize,
}

impl RequestBudget {
    pub(super) fn new(n: usize) -> Self {
        Self {
            left: AtomicUsize::new(n),
        }
    }

    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// An incident loaded (or opened) in this chunk, with what was last written.
struct Pending {
    written: Option<Incident>,
    change: Change,
    dirty: bool,
}

impl Service {
    /// Applies one chunk of a request's events in one transaction.
    pub(super) fn apply_events(
        &self,
        tx: &mut dyn Tx,
        integration: &IntegrationConfig,
        events: &[AlertEvent],
        now: DateTime<Utc>,
        budget: &RequestBudget,
    ) -> Result<Vec<EventOutcome>, StoreError> {
        let mut cache: HashMap<IncidentId, Pending> = HashMap::new();
        let mut order: Vec<IncidentId> = Vec::new();
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let routed = self.directory.routes.route(integration, event);
            if routed.drop {
                tx.record_event(&StoredEvent {
                    received_at: now,
                    integration: integration.name.clone(),
                    incident: None,
                    event: event.clone(),
                })?;
                outcomes.push(EventOutcome {
                    dedup_key: event.dedup_key.clone(),
                    incident: None,
                    effect: Effect::Dropped,
                });
                continue;
            }
            let service = routed.service;
            // `resolve_after`: a trigger that is not sent again resolves by
            // itself, as an alert past its `endsAt` does.
            let expires_at = match (integration.resolve_after, event.action) {
                (Some(after), AlertAction::Trigger) if event.expires_at.is_none() => {
                    chrono::Duration::from_std(after).ok().map(|d| now + d)
                }
                _ => event.expires_at,
            };
            let reshaped;
            let event = match routed.severity {
                Some(sev) if event.severity != Some(sev) || expires_at != event.expires_at => {
                    reshaped = AlertEvent {
                        severity: Some(sev),
                        expires_at,
                        ..event.clone()
                    };
                    &reshaped
                }
                None if expires_at != event.expires_at => {
                    reshaped = AlertEvent {
                        expires_at,
                        ..event.clone()
                    };
                    &reshaped
                }
                _ => event,
            };
            let open = self.open_for(tx, &mut cache, &mut order, service, &event.dedup_key)?;
            let (incident, effect) = match (open, event.action) {
                (Some(id), _) => {
                    let p = cache.get_mut(&id).expect("loaded by open_for");
                    let member = p.change.incident.dedup_key != event.dedup_key;
                    let effect = self.apply_to(tx, p, event, member, service, now)?;
                    (Some(id), effect)
                }
                (None, AlertAction::Trigger)
                    if let Some(id) =
                        self.reopen(tx, service, event, now, &mut cache, &mut order)? =>
                {
                    (Some(id), Effect::Reopened)
                }
                (None, AlertAction::Trigger) => {
                    let may_open = budget.take()
                        && self.floods.take(
                            &integration.name,
                            now,
                            self.directory.config.intake.max_new_incidents_per_minute,
                        );
                    if may_open {
                        let id = self.open_new(tx, integration, &routed, event, now, &mut cache)?;
                        if let Some(f) = self.flapping_of(service) {
                            let p = cache.get_mut(&id).expect("just opened");
                            p.change.incident.flap =
                                Some(crate::incident::FlapState::new(f.changes, f.within, now));
                        }
                        order.push(id);
                        tx.set_open_incident(service, &event.dedup_key, Some(id))?;
                        (Some(id), Effect::Opened)
                    } else {
                        let id = self.to_flood(
                            tx,
                            integration,
                            service,
                            event,
                            now,
                            &mut cache,
                            &mut order,
                        )?;
                        (Some(id), Effect::Flood)
                    }
                }
                (None, _) => (None, Effect::NoOpenIncident),
            };
            tx.record_event(&StoredEvent {
                received_at: now,
                integration: integration.name.clone(),
                incident,
                event: event.clone(),
            })?;
            outcomes.push(EventOutcome {
                dedup_key: event.dedup_key.clone(),
                incident,
                effect,
            });
        }
        for id in order {
            let p = cache.get_mut(&id).expect("ordered ids are cached");
            if p.dirty {
                self.flush(tx, p)?;
            }
        }
        Ok(outcomes)
    }

    /// The open incident `dedup_key` points at, loaded into the cache. An
    /// index entry that points at a closed incident (a flood incident
    /// resolved by hand) is dropped.
    fn open_for(
        &self,
        tx: &mut dyn Tx,
        cache: &mut HashMap<IncidentId, Pending>,
        order: &mut Vec<IncidentId>,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        let Some(id) = tx.open_incident(service, dedup_key)? else {
            return Ok(None);
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(id) {
            let current = tx.incident(id)?.ok_or_else(|| StoreError::Corrupt {
                key: format!("open/{service}/{dedup_key}"),
                message: format!("points at {id}, which does not exist"),
            })?;
            slot.insert(Pending {
                written: Some(current.clone()),
                change: Change {
                    incident: current,
                    entries: Vec::new(),
                },
                dirty: false,
            });
            order.push(id);
        }
        if !cache[&id].change.incident.status.is_open() {
            tx.set_open_incident(service, dedup_key, None)?;
            return Ok(None);
        }
        Ok(Some(id))
    }

    /// Applies `event` to an open incident (its own, or, for a `member`, the
    /// flood incident that holds its alerts).
    fn apply_to(
        &self,
        tx: &mut dyn Tx,
        p: &mut Pending,
        event: &AlertEvent,
        member: bool,
        service: &str,
        now: DateTime<Utc>,
    ) -> Result<Effect, StoreError> {
        let was = p.change.incident.status;
        if member {
            apply_member(&mut p.change, event, now);
            let prefix = member_prefix(&event.dedup_key);
            let still_firing = p.change.incident.alerts.iter().any(|(fp, a)| {
                fp.starts_with(&prefix) && a.state == crate::incident::AlertState::Firing
            });
            if !still_firing {
                tx.set_open_incident(service, &event.dedup_key, None)?;
            }
        } else {
            p.change
                .incident
                .apply_alert_in(event, now, &mut p.change.entries);
        }
        p.dirty = true;
        let status = p.change.incident.status;
        if status != was {
            // The sender acknowledged or resolved it: no more pages. (A
            // repeat trigger on a snoozed incident keeps its snooze.)
            if status != Status::Triggered {
                paging::stop_escalation(tx, &mut p.change.incident)?;
            }
            // Written now, so the open index and chat see the transition.
            self.flush(tx, p)?;
        }
        Ok(match (was, status) {
            _ if member => Effect::Flood,
            (s, Status::Resolved) if s != Status::Resolved => Effect::Resolved,
            (Status::Triggered, Status::Acknowledged) => Effect::Acknowledged,
            _ => Effect::Appended,
        })
    }

    /// The service's `flapping`, if it has one.
    fn flapping_of(&self, service: &str) -> Option<crate::config::FlappingConfig> {
        self.directory
            .config
            .services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.flapping)
    }

    /// Reopens the last incident of `event`'s key if it resolved recently
    /// enough. With the service's `flapping`, a re-fire within
    /// `flapping.within` of its resolve, while the incident still counts
    /// recent changes, reopens it without paging: the re-fire is one more
    /// change, and the settle timer pages if it stays firing. Otherwise,
    /// within `reopen_within`, it reopens as triggered, the trigger
    /// applied, escalation from its first step.
    fn reopen(
        &self,
        tx: &mut dyn Tx,
        service: &str,
        event: &AlertEvent,
        now: DateTime<Utc>,
        cache: &mut HashMap<IncidentId, Pending>,
        order: &mut Vec<IncidentId>,
    ) -> Result<Option<IncidentId>, StoreError> {
        let Some(config) = self
            .directory
            .config
            .services
            .iter()
            .find(|s| s.name == service)
        else {
            return Ok(None);
        };
        let to_chrono = |d: std::time::Duration| chrono::Duration::from_std(d).ok();
        let reopen_within = config.reopen_within.and_then(to_chrono);
        let flapping = config.flapping;
        let flap_within = flapping.and_then(|f| to_chrono(f.within));
        let Some(window) = reopen_within.max(flap_within) else {
            return Ok(None);
        };
        let Some(last) = tx.recently_resolved(service, &event.dedup_key)? else {
            return Ok(None);
        };
        let age = now - last.at;
        if age >= window {
            tx.set_recently_resolved(service, &event.dedup_key, None)?;
            return Ok(None);
        }
        let current = match cache.get(&last.incident) {
            Some(p) => p.change.incident.clone(),
            None => match tx.incident(last.incident)? {
                Some(inc) => inc,
                None => return Ok(None),
            },
        };
        // Resolved since (the index is only written at resolve), and not
        // reopened by hand or by an earlier event of this chunk.
        if current.status != Status::Resolved || current.resolved_at != Some(last.at) {
            return Ok(None);
        }
        let quiet = flap_within.is_some_and(|w| age < w)
            && current.flap.as_ref().is_some_and(|f| f.quiet_refire(now));
        if !quiet && reopen_within.is_none_or(|w| age >= w) {
            tx.set_recently_resolved(service, &event.dedup_key, None)?;
            return Ok(None);
        }
        let Ok(mut change) = current.reopen(now) else {
            return Ok(None);
        };
        if !quiet {
            // Paged afresh: its changes are counted afresh too (the trigger
            // below is the first).
            change.incident.flap = None;
        }
        change
            .incident
            .apply_alert_in(event, now, &mut change.entries);
        if quiet {
            // Pages still queued from before the resolve (a later contact
            // method, a retry) belong to a run that is over: dropped.
            if let Some(e) = change.incident.escalation.as_mut() {
                e.generation += 1;
            }
            info!(incident = %last.incident, "Alert fired again soon after resolving; reopened without paging (flapping watch)");
        } else {
            if let Some(f) = flapping {
                change.incident.flap =
                    Some(crate::incident::FlapState::new(f.changes, f.within, now));
            }
            if !self.hold_if_covered(tx, &mut change, &event.labels, now)? {
                self.start_escalation(tx, &mut change, now)?;
            }
        }
        let written = match cache.remove(&last.incident) {
            Some(p) => p.written,
            None => {
                order.push(last.incident);
                Some(current)
            }
        };
        let mut p = Pending {
            written,
            change,
            dirty: true,
        };
        tx.set_recently_resolved(service, &event.dedup_key, None)?;
        tx.set_open_incident(service, &event.dedup_key, Some(last.incident))?;
        // Written now, so chat sees it open again.
        self.flush(tx, &mut p)?;
        cache.insert(last.incident, p);
        Ok(Some(last.incident))
    }

    /// Opens a new incident from its first trigger; its first escalation
    /// step runs in this transaction.
    fn open_new(
        &self,
        tx: &mut dyn Tx,
        integration: &IntegrationConfig,
        routed: &super::routing::Routed<'_>,
        event: &AlertEvent,
        now: DateTime<Utc>,
        cache: &mut HashMap<IncidentId, Pending>,
    ) -> Result<IncidentId, StoreError> {
        let id = tx.next_incident_id()?;
        let mut change = Incident::open(id, routed.service, &integration.name, event, now);
        if let Some(rule) = routed.rule {
            change.incident.escalation_policy = routed.escalation_policy.map(str::to_string);
            let matchers = integration.routes[rule].matchers.clone();
            change.incident.record(
                &mut change.entries,
                now,
                crate::incident::Actor::System,
                crate::incident::TimelineEvent::Routed {
                    rule,
                    matchers,
                    service: routed.service.to_string(),
                    severity: routed.severity,
                    escalation_policy: routed.escalation_policy.map(str::to_string),
                },
            );
        }
        let recent = self.recent_changes(routed.service);
        change
            .incident
            .note_recent_changes(&recent, now, &mut change.entries);
        self.auto_attach(&mut change, now);
        if !self.hold_if_covered(tx, &mut change, &event.labels, now)? {
            self.start_escalation(tx, &mut change, now)?;
        }
        cache.insert(
            id,
            Pending {
                written: None,
                change,
                dirty: true,
            },
        );
        Ok(id)
    }

    /// Puts an alert that may not open its own incident into the
    /// integration's flood incident, opening that if needed.
    #[allow(clippy::too_many_arguments)] // the chunk's state, as open_for takes it
    fn to_flood(
        &self,
        tx: &mut dyn Tx,
        integration: &IntegrationConfig,
        member_service: &str,
        event: &AlertEvent,
        now: DateTime<Utc>,
        cache: &mut HashMap<IncidentId, Pending>,
        order: &mut Vec<IncidentId>,
    ) -> Result<IncidentId, StoreError> {
        let service = integration.service.as_str();
        let key = flood_key(&integration.name);
        let id = match self.open_for(tx, cache, order, service, &key)? {
            Some(id) => id,
            None => {
                let first = AlertEvent {
                    dedup_key: key.clone(),
                    fingerprint: Some(member_fingerprint(event)),
                    incident_title: Some(flood_title(&integration.name, 1)),
                    left_out: None,
                    ..event.clone()
                };
                tracing::warn!(
                    integration = %integration.name,
                    "Alert flood: more new incidents than [intake] allows; further alerts join one flood incident"
                );
                let fallback = super::routing::Routed {
                    rule: None,
                    service,
                    severity: None,
                    escalation_policy: None,
                    drop: false,
                };
                let id = self.open_new(tx, integration, &fallback, &first, now, cache)?;
                order.push(id);
                tx.set_open_incident(service, &key, Some(id))?;
                let p = cache.get_mut(&id).expect("just opened");
                p.change.incident.title = flood_title(&integration.name, 1);
                tx.set_open_incident(member_service, &event.dedup_key, Some(id))?;
                return Ok(id);
            }
        };
        let p = cache.get_mut(&id).expect("loaded by open_for");
        apply_member(&mut p.change, event, now);
        p.dirty = true;
        if p.change
            .incident
            .alerts
            .contains_key(&member_fingerprint(event))
        {
            tx.set_open_incident(member_service, &event.dedup_key, Some(id))?;
        }
        Ok(id)
    }

    /// Writes a pending incident's change (and what chat must show of it).
    fn flush(&self, tx: &mut dyn Tx, p: &mut Pending) -> Result<(), StoreError> {
        paging::sync_expiry(tx, &mut p.change.incident)?;
        self.write_change_after(tx, p.written.as_ref(), &p.change)?;
        p.written = Some(p.change.incident.clone());
        p.change.entries.clear();
        p.dirty = false;
        Ok(())
    }
}

fn flood_title(integration: &str, alerts: u64) -> String {
    format!("Alert flood from {integration}: {alerts} alerts beyond the new-incident limits")
}

fn member_prefix(dedup_key: &str) -> String {
    format!("{dedup_key}#")
}

/// A member alert's fingerprint inside the flood incident: its key, then
/// its own fingerprint.
fn member_fingerprint(event: &AlertEvent) -> String {
    let own = event.fingerprint.as_deref().unwrap_or(&event.dedup_key);
    format!("{}{own}", member_prefix(&event.dedup_key))
}

/// Applies a member alert's event to the flood incident: its alerts under
/// their prefixed fingerprints, a whole-key resolve to each of them, a
/// sender's acknowledge not at all (it would acknowledge everyone's).
fn apply_member(change: &mut Change, event: &AlertEvent, now: DateTime<Utc>) {
    let inc = &mut change.incident;
    let before = inc.alerts.len() as u64 + inc.untracked_alerts;
    match (event.action, &event.fingerprint) {
        (AlertAction::Acknowledge, _) => return,
        (AlertAction::Resolve, None) => {
            let prefix = member_prefix(&event.dedup_key);
            let fps: Vec<String> = inc
                .alerts
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for fp in fps {
                let one = AlertEvent {
                    fingerprint: Some(fp),
                    left_out: None,
                    ..event.clone()
                };
                inc.apply_alert_in(&one, now, &mut change.entries);
            }
        }
        _ => {
            let one = AlertEvent {
                fingerprint: Some(member_fingerprint(event)),
                left_out: None,
                ..event.clone()
            };
            inc.apply_alert_in(&one, now, &mut change.entries);
        }
    }
    let after = inc.alerts.len() as u64 + inc.untracked_alerts;
    if after != before {
        inc.title = flood_title(&inc.integration, after);
    }
}

/// Each integration's request bucket (`max_requests_per_second`): tokens
/// left and when they were counted.
#[derive(Default)]
pub(crate) struct RateLimits(
    parking_lot::Mutex<std::collections::HashMap<String, (f64, DateTime<Utc>)>>,
);

impl Service {
    /// Admits one request from `integration` under its
    /// `max_requests_per_second` (a burst of two seconds' worth, then that
    /// rate): past it the sender is told to retry (429 on PagerDuty's
    /// routes, 503 elsewhere, both with `Retry-After`), nothing applied.
    /// Without the key every request is admitted.
    pub fn admit(&self, integration: &IntegrationConfig) -> Result<(), ServiceError> {
        let Some(rate) = integration.max_requests_per_second else {
            return Ok(());
        };
        let rate = f64::from(rate.max(1));
        let burst = rate * 2.0;
        let now = self.clock.now();
        let mut buckets = self.rates.0.lock();
        let (tokens, at) = buckets
            .entry(integration.name.clone())
            .or_insert((burst, now));
        let elapsed = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(ServiceError::Store(StoreError::Overloaded(format!(
            "integration '{}' sends more than its max_requests_per_second ({rate}); nothing was applied, retry shortly",
            integration.name
        ))))
    }
}
