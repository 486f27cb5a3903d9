//! Retention: removes resolved incidents older than `[storage] retention`
//! with their timelines, summaries, outbox entries and raw events, after
//! appending each to the export file (if configured) and syncing it, so no
//! record is removed that was not exported.

use super::writer::Priority;
use super::{Service, ServiceError};
use crate::store::{Expired, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tracing::info;

/// How many incidents (or raw events) one removal transaction takes, so a
/// large backlog never stalls intake for long.
pub const RETENTION_BATCH: usize = 500;

/// How often the retention task runs (it also runs once at start).
pub const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Incidents removed.
    pub incidents: u64,
    /// Raw events removed.
    pub events: u64,
}

/// One line of the retention export.
#[derive(Serialize)]
struct ExportLine<'a> {
    key: String,
    uid: &'a str,
    service: &'a str,
    title: &'a str,
    created_at: chrono::DateTime<chrono::Utc>,
    resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    summary: Option<&'a str>,
    timeline_head: &'a str,
}

/// Appends one JSON line per incident to `path` and syncs it to disk.
fn export(path: &Path, batch: &[Expired]) -> Result<(), StoreError> {
    use std::io::Write;
    let fail = |e: std::io::Error| {
        StoreError::Backend(format!(
            "writing the retention export {}: {e}",
            path.display()
        ))
    };
    let mut text = String::new();
    for e in batch {
        let i = &e.incident;
        let line = ExportLine {
            key: i.id.to_string(),
            uid: &i.uid,
            service: &i.service,
            title: &i.title,
            created_at: i.created_at,
            resolved_at: i.resolved_at,
            summary: e.summary.as_deref(),
            timeline_head: &i.timeline_head,
        };
        text.push_str(&serde_json::to_string(&line).expect("an export line serialises"));
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

impl Service {
    /// Removes what is older than `keep` (by the service's clock): resolved
    /// incidents, oldest first, in batches of [`RETENTION_BATCH`], each
    /// exported to `export_to` first, then the raw events received before
    /// the cutoff whose incident is gone.
    pub async fn apply_retention(
        &self,
        keep: std::time::Duration,
        export_to: Option<PathBuf>,
    ) -> Result<RetentionReport, ServiceError> {
        let keep = chrono::Duration::from_std(keep)
            .map_err(|e| StoreError::Backend(format!("retention: {e}")))?;
        let cutoff = self.clock.now() - keep;
        let mut report = RetentionReport::default();
        loop {
            let batch = self
                .read(move |s| s.expired(cutoff, RETENTION_BATCH))
                .await?;
            if batch.is_empty() {
                break;
            }
            if let Some(path) = export_to.clone() {
                let batch = batch.clone();
                tokio::task::spawn_blocking(move || export(&path, &batch))
                    .await
                    .map_err(|e| StoreError::Backend(format!("retention export: {e}")))??;
            }
            let removed = self
                .writer
                .write(Priority::Background, move |tx| {
                    let mut n = 0;
                    for e in &batch {
                        n += u64::from(tx.remove_incident(e)?);
                    }
                    Ok(n)
                })
                .await?;
            report.incidents += removed;
        }
        let mut after = None;
        loop {
            let (ids, next) = self
                .read(move |s| s.expired_events(cutoff, after, RETENTION_BATCH))
                .await?;
            if !ids.is_empty() {
                let removed = self
                    .writer
                    .write(Priority::Background, move |tx| {
                        let mut n = 0;
                        for id in &ids {
                            n += u64::from(tx.remove_event(*id)?);
                        }
                        Ok(n)
                    })
                    .await?;
                report.events += removed;
            }
            match next {
                Some(id) => after = Some(id),
                None => break,
            }
        }
        if report != RetentionReport::default() {
            info!(incidents = report.incidents, events = report.events, cutoff = %cutoff,
                "Removed resolved incidents past [storage] retention");
        }
        Ok(report)
    }

    /// Runs [`Service::apply_retention`] at once and then every
    /// [`RETENTION_EVERY`] until `stop` turns true, if `[storage] retention`
    /// is set.
    pub async fn run_retention(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let storage = self.directory.config.storage.clone();
        let Some(keep) = storage.retention else {
            return;
        };
        let mut leader = self.leader_watch();
        loop {
            // One replica sweeps: the one that leads.
            tokio::select! {
                ok = async { leader.wait_for(|l| *l).await.is_ok() } => if !ok { return },
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
            }
            if let Err(e) = self
                .apply_retention(keep, storage.retention_export.clone())
                .await
            {
                tracing::error!(error = %e, "Retention failed; nothing unexported was removed, it runs again in an hour");
            }
            tokio::select! {
                _ = tokio::time::sleep(RETENTION_EVERY) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}
