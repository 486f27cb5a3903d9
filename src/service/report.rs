//! Reports over the stored incidents: response times, and pages per person.

use super::{Service, ServiceError};
use crate::escalation::Recipient;
use crate::incident::Incident;
use crate::notify::{DeliveryState, Job};
use crate::store::{Store, StoreError};
use crate::summary::pages::{PagesReport, SentPage};
use crate::summary::report::{Report, build};
use chrono::{DateTime, Utc};

/// Incidents read per store call while gathering a report.
const REPORT_PAGE: usize = 500;

/// The incidents opened since `since`, read newest first a page at a time,
/// so the cost grows with the window, not with all history.
fn incidents_since(s: &dyn Store, since: DateTime<Utc>) -> Result<Vec<Incident>, StoreError> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = s.incidents(None, before, REPORT_PAGE)?;
        let done = page.len() < REPORT_PAGE || page.last().is_some_and(|i| i.created_at < since);
        before = page.last().map(|i| i.id);
        all.extend(page.into_iter().filter(|i| i.created_at >= since));
        if done {
            return Ok(all);
        }
    }
}

impl Service {
    /// MTTA and MTTR by service and week over the incidents opened since
    /// `since`, read from the store.
    pub async fn response_report(&self, since: DateTime<Utc>) -> Result<Report, ServiceError> {
        let until = self.clock.now();
        let incidents = self.read(move |s| incidents_since(s, since)).await?;
        Ok(build(&incidents, since, until))
    }

    /// Pages per person over the window, and how many of them reached
    /// their person outside working hours: the pages delivered since
    /// `since` to users (not webhooks) for the incidents opened since then
    /// (drills left out, as in the response report), read from the store's
    /// record of each incident's pages.
    pub async fn pages_report(&self, since: DateTime<Utc>) -> Result<PagesReport, ServiceError> {
        let until = self.clock.now();
        let pages = self
            .read(move |s| {
                let mut pages = Vec::new();
                for inc in incidents_since(s, since)? {
                    if inc.drill {
                        continue;
                    }
                    for e in s.outbox_for(inc.id)? {
                        if let (Job::Page, Recipient::User(user), DeliveryState::Delivered { at }) =
                            (&e.job, &e.recipient, &e.state)
                        {
                            pages.push(SentPage {
                                user: user.clone(),
                                at: *at,
                            });
                        }
                    }
                }
                Ok(pages)
            })
            .await?;
        Ok(crate::summary::pages::build(
            &pages,
            since,
            until,
            &self.directory.working_time,
        ))
    }
}
