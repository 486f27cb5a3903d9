//! Runbooks on incidents, drills and post-incident summaries.

use super::{Service, ServiceError};
use crate::config::TargetConfig;
use crate::incident::{Actor, Change, Incident, IncidentError, IncidentId, RunbookStep, Status};
use crate::runbook::Runbook;
use tracing::{Instrument, info_span, warn};

impl Service {
    /// Attaches the first runbook (by name) that fits a new incident.
    pub(super) fn auto_attach(&self, change: &mut Change, now: chrono::DateTime<chrono::Utc>) {
        if change.incident.runbook.is_some() {
            return;
        }
        let Some(rb) = self.directory.runbooks.matching(&change.incident).next() else {
            return;
        };
        match change.incident.attach_runbook(rb, Actor::System, now) {
            Ok(c) => {
                change.incident = c.incident;
                change.entries.extend(c.entries);
            }
            Err(e) => warn!(error = %e, "Could not attach the matching runbook"),
        }
    }

    /// The runbooks that fit an incident.
    pub fn runbooks_for<'a>(&'a self, incident: &'a Incident) -> Vec<&'a Runbook> {
        self.directory.runbooks.matching(incident).collect()
    }

    /// Attaches a runbook by name.
    pub async fn attach_runbook(
        &self,
        id: IncidentId,
        name: &str,
        by: Actor,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let rb = self
            .directory
            .runbooks
            .get(name)
            .ok_or_else(|| IncidentError::Unchanged(format!("there is no runbook '{name}'")))?
            .clone();
        self.change(id, move |_, inc| {
            Ok(inc.attach_runbook(&rb, by.clone(), now)?)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Marks a step done or skipped, or moves to the next phase.
    pub async fn runbook_step(
        &self,
        id: IncidentId,
        step: RunbookStep,
        by: Actor,
    ) -> Result<Incident, ServiceError> {
        let now = self.clock.now();
        let svc = self.clone();
        self.change(id, move |_, inc| {
            let progress = inc
                .runbook
                .as_ref()
                .ok_or(crate::runbook::RunbookCommandError::NoneAttached)
                .map_err(IncidentError::from)?;
            let rb = svc
                .directory
                .runbooks
                .get(&progress.runbook)
                .ok_or_else(|| {
                    IncidentError::from(crate::runbook::RunbookCommandError::Missing(
                        progress.runbook.clone(),
                    ))
                })?;
            Ok(inc.runbook_step(rb, step.clone(), by.clone(), now)?)
        })
        .instrument(info_span!("incident", incident = %id))
        .await
    }

    /// Opens a drill: an incident marked as such, with `runbook` attached,
    /// paging only `starter` (unless `[chat] drills_use_policy`).
    pub async fn open_drill(&self, runbook: &str, starter: &str) -> Result<Incident, ServiceError> {
        let rb =
            self.directory.runbooks.get(runbook).ok_or_else(|| {
                IncidentError::Unchanged(format!("there is no runbook '{runbook}'"))
            })?;
        let page = if self.directory.config.chat.drills_use_policy {
            None
        } else {
            Some(vec![TargetConfig::User(starter.to_string())])
        };
        let title = format!("Drill: {}", rb.title);
        self.open_incident(&title, None, Actor::user(starter), page, Some(rb), true)
            .await
    }

    /// The post-incident summary rendered for `markup` (the values escaped
    /// for a chat platform). Plain is [`Self::summary_markdown`], the
    /// stored record; the others are rendered from the same state, and
    /// the plain record is stored too when it is due.
    pub async fn summary_for(
        &self,
        id: IncidentId,
        markup: crate::templates::Markup,
    ) -> Result<String, ServiceError> {
        let plain = self.summary_markdown(id).await?;
        if markup == crate::templates::Markup::Plain {
            return Ok(plain);
        }
        let (_, summary) = self.summary_data(id)?;
        Ok(
            crate::summary::render_for(&self.directory.templates, markup, &summary)
                .map_err(|e| IncidentError::Unchanged(e.to_string()))?,
        )
    }

    /// The post-incident summary of an incident as it stands: the incident
    /// and its summary data (for the platforms' own renderings).
    pub fn summary_data(
        &self,
        id: IncidentId,
    ) -> Result<(crate::incident::Incident, crate::summary::Summary), ServiceError> {
        let inc = self.store.incident(id)?.ok_or(ServiceError::NotFound(id))?;
        let timeline = self.store.timeline(id)?;
        let rb = inc
            .runbook
            .as_ref()
            .and_then(|p| self.directory.runbooks.get(&p.runbook));
        let summary = crate::summary::build(&inc, &timeline, rb);
        Ok((inc, summary))
    }

    /// The post-incident summary as Markdown: the stored one once the
    /// incident is resolved, or rendered from the current state.
    pub async fn summary_markdown(&self, id: IncidentId) -> Result<String, ServiceError> {
        if let Some(s) = self.store.summary(id)? {
            return Ok(s);
        }
        let (inc, summary) = self.summary_data(id)?;
        let md = crate::summary::render(&self.directory.templates, &summary)
            .map_err(|e| IncidentError::Unchanged(e.to_string()))?;
        if inc.status == Status::Resolved {
            // Keep the record as it was written at the time.
            let store = self.store.clone();
            let text = md.clone();
            tokio::task::spawn_blocking(move || store.put_summary(id, &text))
                .await
                .map_err(|e| crate::store::StoreError::Backend(e.to_string()))??;
        }
        Ok(md)
    }
}
