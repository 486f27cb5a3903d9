//! The one writer: every state change goes through [`Service`].
//!
//! Intake, the REST API and (later) chat commands call it. It asks the pure
//! domain ([`crate::incident`]) for the decision, writes the new state and
//! its timeline entries in one store transaction, and returns only once the
//! group commit has put them on disk.

use crate::clock::Clock;
use crate::config::IntegrationConfig;
use crate::incident::{Actor, Change, Incident, IncidentError, IncidentId, Status};
use crate::intake::{AlertAction, AlertEvent};
use crate::store::{Store, StoreError, StoredEvent, Tx};
use serde::Serialize;
use std::sync::Arc;
use tracing::{Instrument, info, info_span};

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such incident.
    #[error("incident {0} does not exist")]
    NotFound(IncidentId),
    /// The domain refused the command (already resolved, ...).
    #[error(transparent)]
    Refused(#[from] IncidentError),
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one alert event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Opened a new incident.
    Opened,
    /// Was grouped into an open incident.
    Appended,
    /// Acknowledged an incident.
    Acknowledged,
    /// Resolved an incident.
    Resolved,
    /// Concerned no open incident (a resolve or acknowledge for an unknown
    /// or already resolved key); stored, changed nothing.
    NoOpenIncident,
}

/// The outcome of one alert event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The event's dedup key.
    pub dedup_key: String,
    /// The incident it went to.
    pub incident: Option<IncidentId>,
    /// What it did.
    pub effect: Effect,
}

/// The application service.
#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Service {
    /// A service over `store`, telling time by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Applies the events of one request from `integration`, atomically, and
    /// returns once they are on disk.
    pub async fn ingest(
        &self,
        integration: &IntegrationConfig,
        events: &[AlertEvent],
    ) -> Result<Vec<EventOutcome>, ServiceError> {
        let now = self.clock.now();
        let mut outcomes = Vec::new();
        self.store.transact(&mut |tx| {
            outcomes.clear();
            for event in events {
                outcomes.push(apply_event(tx, integration, event, now)?);
            }
            Ok(())
        })?;
        self.store.flush().await?;
        for o in &outcomes {
            if let Some(id) = o.incident {
                let span = info_span!("incident", incident = %id);
                span.in_scope(|| {
                    if o.effect != Effect::Appended {
                        info!(integration = %integration.name, dedup_key = %o.dedup_key, effect = ?o.effect, "Alert applied");
                    }
                });
            }
        }
        Ok(outcomes)
    }

    /// A person acknowledges an incident.
    pub async fn acknowledge(&self, id: IncidentId, by: Actor) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        self.change(id, move |inc| inc.acknowledge(by.clone(), now))
            .instrument(info_span!("incident", incident = %id))
            .await
    }

    /// A person resolves an incident.
    pub async fn resolve(
        &self,
        id: IncidentId,
        by: Actor,
        note: Option<String>,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        self.change(id, move |inc| inc.resolve(by.clone(), note.clone(), now))
            .instrument(info_span!("incident", incident = %id))
            .await
    }

    async fn change(
        &self,
        id: IncidentId,
        decide: impl Fn(&Incident) -> Result<Change, IncidentError>,
    ) -> Result<Incident, ServiceError> {
        let mut result: Option<Result<Incident, ServiceError>> = None;
        self.store.transact(&mut |tx| {
            let Some(current) = tx.incident(id)? else {
                result = Some(Err(ServiceError::NotFound(id)));
                return Ok(());
            };
            match decide(&current) {
                Ok(change) => {
                    write_change(tx, &change)?;
                    result = Some(Ok(change.incident));
                }
                Err(e) => result = Some(Err(e.into())),
            }
            Ok(())
        })?;
        let incident = result.expect("the transaction ran")?;
        self.store.flush().await?;
        info!(status = %incident.status, "Incident changed");
        Ok(incident)
    }
}

fn apply_event(
    tx: &mut dyn Tx,
    integration: &IntegrationConfig,
    event: &AlertEvent,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<EventOutcome, StoreError> {
    let service = integration.service.as_str();
    let open = tx.open_incident(service, &event.dedup_key)?;
    let (incident, effect) = match (open, event.action) {
        (Some(id), _) => {
            let current = tx.incident(id)?.ok_or_else(|| StoreError::Corrupt {
                key: format!("open/{service}/{}", event.dedup_key),
                message: format!("points at {id}, which does not exist"),
            })?;
            let was = current.status;
            let change = current.apply_alert(event, now);
            write_change(tx, &change)?;
            let effect = match (was, change.incident.status) {
                (s, Status::Resolved) if s != Status::Resolved => Effect::Resolved,
                (Status::Triggered, Status::Acknowledged) => Effect::Acknowledged,
                _ => Effect::Appended,
            };
            (Some(id), effect)
        }
        (None, AlertAction::Trigger) => {
            let id = tx.next_incident_id()?;
            let change = Incident::open(id, service, &integration.name, event, now);
            write_change(tx, &change)?;
            if change.incident.status.is_open() {
                tx.set_open_incident(service, &event.dedup_key, Some(id))?;
            }
            (Some(id), Effect::Opened)
        }
        (None, _) => (None, Effect::NoOpenIncident),
    };
    tx.record_event(&StoredEvent {
        received_at: now,
        integration: integration.name.clone(),
        incident,
        event: event.clone(),
    })?;
    Ok(EventOutcome {
        dedup_key: event.dedup_key.clone(),
        incident,
        effect,
    })
}

/// Writes an incident and its new timeline entries; a resolved incident
/// leaves the open index, so the next trigger opens a new one.
fn write_change(tx: &mut dyn Tx, change: &Change) -> Result<(), StoreError> {
    let inc = &change.incident;
    tx.put_incident(inc)?;
    for entry in &change.entries {
        tx.append_timeline(inc.id, entry)?;
    }
    if !inc.status.is_open() && tx.open_incident(&inc.service, &inc.dedup_key)? == Some(inc.id) {
        tx.set_open_incident(&inc.service, &inc.dedup_key, None)?;
    }
    Ok(())
}
