//! Which replica runs the singletons: the one holding the store's
//! singleton lock ([`crate::store::Leadership`]). The election runs every
//! [`LEADER_TICK`]; [`Service::leader_watch`] says whether this replica
//! leads, and the singletons (the retention sweep, the Discord gateway
//! connection) run only while it does. With the embedded store there is
//! one replica, and it leads. On a shared store the same tick reads the
//! runtime overrides again, which other replicas may have changed, and
//! every [`REFRESH_EVERY`] ticks the other caches.

use super::Service;
use crate::metrics::METRICS;
use std::time::Duration;
use tracing::{info, warn};

/// How often a replica renews (or tries to take) the singleton lock: a
/// survivor takes over within about this long after the leader's session
/// ends.
pub const LEADER_TICK: Duration = Duration::from_secs(1);

/// On a shared store, every this many ticks the services' latest changes
/// and the flapping incidents are read again (they cost a read of the open
/// incidents; the overrides are read every tick).
pub const REFRESH_EVERY: u64 = 10;

impl Service {
    /// Whether this replica runs the singletons now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows [`Service::is_leader`].
    pub fn leader_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Holds the singleton lock, or tries to take it, every
    /// [`LEADER_TICK`] until `stop`; then lets it go, so another replica
    /// takes over at once.
    pub async fn run_election(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let lock = self.store.leadership();
        let mut ticks: u64 = 0;
        loop {
            let l = lock.clone();
            let held = match tokio::task::spawn_blocking(move || l.hold()).await {
                Ok(Ok(held)) => held,
                Ok(Err(e)) => {
                    if self.is_leader() {
                        warn!(error = %e, "The singleton lock is lost with its database session");
                    } else {
                        tracing::debug!(error = %e, "Could not try for the singleton lock");
                    }
                    false
                }
                Err(e) => {
                    warn!(error = %e, "The singleton lock check failed");
                    false
                }
            };
            let was = self.leader.send_replace(held);
            match (was, held) {
                (false, true) => info!(
                    "This replica now leads: it runs the retention sweep and the Discord gateway connection"
                ),
                (true, false) => warn!("This replica no longer leads; another takes over"),
                _ => {}
            }
            METRICS.leader.set(i64::from(held));
            if self.store.is_shared() {
                // Another replica may have added or removed an override:
                // read them again, so a schedule pages who is on call by
                // every replica's changes, at most a tick late; and every
                // REFRESH_EVERY ticks what is shown of others' writes (the
                // services' latest changes, the flapping incidents).
                ticks += 1;
                let all = ticks.is_multiple_of(REFRESH_EVERY);
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.refresh_shared_caches(all)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "Could not refresh the caches"),
                    Err(e) => warn!(error = %e, "Refreshing the caches failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LEADER_TICK) => {}
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
            }
        }
        self.leader.send_replace(false);
        METRICS.leader.set(0);
        let _ = tokio::task::spawn_blocking(move || lock.release()).await;
        info!("Let the singleton lock go");
    }
}
