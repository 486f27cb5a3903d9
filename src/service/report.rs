//! Response reports over the stored incidents.

use super::{Service, ServiceError};
use crate::summary::report::{Report, build};
use chrono::{DateTime, Utc};

/// Incidents read per store call while gathering a report.
const REPORT_PAGE: usize = 500;

impl Service {
    /// MTTA and MTTR by service and week over the incidents opened since
    /// `since`, read from the store (newest first, a page at a time, so the
    /// cost grows with the window, not with all history).
    pub async fn response_report(&self, since: DateTime<Utc>) -> Result<Report, ServiceError> {
        let until = self.clock.now();
        let incidents = self
            .read(move |s| {
                let mut all = Vec::new();
                let mut before = None;
                loop {
                    let page = s.incidents(None, before, REPORT_PAGE)?;
                    let done = page.len() < REPORT_PAGE
                        || page.last().is_some_and(|i| i.created_at < since);
                    before = page.last().map(|i| i.id);
                    all.extend(page.into_iter().filter(|i| i.created_at >= since));
                    if done {
                        return Ok(all);
                    }
                }
            })
            .await?;
        Ok(build(&incidents, since, until))
    }
}
