//! The application service as the hosts the background tasks need: the
//! outbox worker's [`OutboxHost`] and the scheduler's [`TimerHost`]. The
//! traits belong to the lower layers (notify, escalation); this top layer
//! implements them, so every arrow points down.

use crate::clock::Clock;
use crate::escalation::scheduler::{FireError, TimerHost};
use crate::incident::IncidentId;
use crate::notify::DeliveryError;
use crate::notify::OutboxEntry;
use crate::notify::worker::{HostError, HostFuture, OutboxHost};
use crate::service::Service;
use crate::templates::Templates;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

/// How often a replica looks for timers and pages other replicas wrote
/// (which wake only the writer): once a second on a shared database.
fn shared_poll(service: &Service) -> Option<std::time::Duration> {
    service
        .store()
        .is_shared()
        .then_some(std::time::Duration::from_secs(1))
}

impl OutboxHost for Service {
    fn idle_poll(&self) -> std::time::Duration {
        shared_poll(self).unwrap_or(std::time::Duration::from_secs(30))
    }

    fn clock(&self) -> &Arc<dyn Clock> {
        Service::clock(self)
    }

    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, HostError> {
        Ok(self.store().due_outbox(now, limit)?)
    }

    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, HostError> {
        Ok(self.store().next_outbox_due()?)
    }

    fn outbox_for(&self, incident: IncidentId) -> Result<Vec<OutboxEntry>, HostError> {
        Ok(self.store().outbox_for(incident)?)
    }

    fn templates(&self) -> &Templates {
        &self.directory().templates
    }

    fn outbox_waker(&self) -> &Notify {
        &self.wakers().outbox
    }

    fn chat_health(&self, platform: &str, error: Option<String>) {
        self.wakers()
            .chat_health
            .lock()
            .insert(platform.to_string(), error);
    }

    fn claim_delivery<'a>(
        &'a self,
        key: &'a str,
        now: DateTime<Utc>,
    ) -> HostFuture<'a, Option<OutboxEntry>> {
        Box::pin(async move { Ok(Service::claim_delivery(self, key, now).await?) })
    }

    fn record_delivery<'a>(
        &'a self,
        key: &'a str,
        result: Result<(), DeliveryError>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move { Ok(Service::record_delivery(self, key, result, now, jitter).await?) })
    }
}

impl TimerHost for Service {
    fn clock(&self) -> &Arc<dyn Clock> {
        Service::clock(self)
    }

    fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, FireError> {
        Ok(self.store().next_timer()?.map(|t| t.due))
    }

    fn max_sleep(&self) -> std::time::Duration {
        shared_poll(self).unwrap_or(crate::escalation::scheduler::MAX_SLEEP)
    }

    fn scheduler_waker(&self) -> &Notify {
        &self.wakers().scheduler
    }

    async fn fire_due(&self, now: DateTime<Utc>) -> Result<usize, FireError> {
        Ok(self.fire_due_timers(now).await?)
    }
}
