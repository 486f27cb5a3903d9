//! Pages that reach a phone (SMS, calls, push): what the carrier reports
//! about them after tocsin handed them over, and which incidents a reply
//! from a person can mean.

use super::writer::Priority;
use super::{Service, ServiceError};
use crate::escalation::Recipient;
use crate::incident::{Actor, Change, Incident, Status, TimelineEvent};
use crate::notify::{DeliveryState, Job, OutboxEntry};

impl Service {
    /// The page receivers know by `key` (its
    /// [`external_key`](OutboxEntry::external_key)).
    pub fn page_by_external_key(&self, key: &str) -> Result<Option<OutboxEntry>, ServiceError> {
        let found = |k: &str| -> Result<Option<OutboxEntry>, ServiceError> {
            Ok(self
                .store
                .outbox_entry(k)?
                .filter(|e| e.job == Job::Page && e.external_key() == key))
        };
        if let Some(e) = found(key)? {
            return Ok(Some(e));
        }
        match key.rsplit_once('/') {
            Some((store_key, _uid)) => found(store_key),
            None => Ok(None),
        }
    }

    /// Records what the carrier said about a delivered page. When the
    /// person was not `reached` (an SMS undelivered, a call unanswered or
    /// answered by a machine), their next contact method comes forward:
    /// the escalation goes on as if this one had failed. `false` if no
    /// page has this key.
    pub async fn record_carrier_report(
        &self,
        key: &str,
        status: String,
        reached: bool,
        detail: Option<String>,
    ) -> Result<bool, ServiceError> {
        let Some(page) = self.page_by_external_key(key)? else {
            return Ok(false);
        };
        let now = self.clock.now();
        let svc = self.clone();
        self.write(Priority::Now, move |tx| {
            let Some(entry) = tx.outbox_entry(&page.key)? else {
                return Ok(());
            };
            let Some(inc) = tx.incident(entry.incident)? else {
                return Ok(());
            };
            let mut change = Change {
                incident: inc,
                entries: Vec::new(),
            };
            change.incident.record(
                &mut change.entries,
                now,
                Actor::System,
                TimelineEvent::DeliveryReport {
                    recipient: entry.recipient.to_string(),
                    method: entry.method.as_str().to_string(),
                    status: status.clone(),
                    reached,
                    detail: detail.clone(),
                },
            );
            if !reached && matches!(entry.state, DeliveryState::Delivered { .. }) {
                super::paging::bring_next_method_forward(tx, &entry, now)?;
            }
            svc.write_change(tx, &change)
        })
        .await?;
        Ok(true)
    }

    /// The open incidents that paged `user` (newest first): what a reply
    /// from their phone can be about.
    pub fn open_incidents_paging(&self, user: &str) -> Result<Vec<Incident>, ServiceError> {
        let who = Recipient::User(user.to_string());
        let mut out = Vec::new();
        let mut open = self.store.incidents(Some(Status::Triggered), None, 1000)?;
        open.extend(
            self.store
                .incidents(Some(Status::Acknowledged), None, 1000)?,
        );
        for inc in open {
            if self
                .store
                .outbox_for(inc.id)?
                .iter()
                .any(|e| e.job == Job::Page && e.recipient == who)
            {
                out.push(inc);
            }
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.id.0));
        Ok(out)
    }
}
