//! The feed of incident changes: after each write is on disk, the ids of
//! the incidents it changed are broadcast, for the console's live updates.
//!
//! A slow subscriber misses events rather than holding memory: the channel
//! keeps the last [`FEED_CAPACITY`] and a lagging receiver is told how many
//! it lost (the console then reloads the page).

use crate::incident::IncidentId;
use tokio::sync::broadcast;

/// Changes kept for subscribers that have not read them yet.
pub const FEED_CAPACITY: usize = 1024;

/// The broadcast of changed incidents.
#[derive(Debug)]
pub struct Feed {
    tx: broadcast::Sender<IncidentId>,
    /// Turns true at shutdown, so long-lived subscribers (the console's
    /// event streams) end instead of holding the drain.
    closed: tokio::sync::watch::Sender<bool>,
    /// Counts published changes: a cache of incident views is fresh while
    /// this has not moved.
    version: std::sync::atomic::AtomicU64,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(FEED_CAPACITY).0,
            closed: tokio::sync::watch::channel(false).0,
            version: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Feed {
    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<IncidentId> {
        self.tx.subscribe()
    }

    /// How many changes were published so far: unchanged, nothing changed.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Ends every subscriber's stream (at shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`Feed::close`] was called.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Tells subscribers that these incidents changed (once each, in order).
    pub(crate) fn publish(&self, ids: &[IncidentId]) {
        if !ids.is_empty() {
            self.version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        if self.tx.receiver_count() == 0 {
            return;
        }
        for id in ids {
            let _ = self.tx.send(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_each_change_in_order() {
        let feed = Feed::default();
        feed.publish(&[IncidentId(1)]);
        let mut rx = feed.subscribe();
        feed.publish(&[IncidentId(2), IncidentId(3)]);
        assert_eq!(rx.recv().await.unwrap(), IncidentId(2));
        assert_eq!(rx.recv().await.unwrap(), IncidentId(3));
    }
}
