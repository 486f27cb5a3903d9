//! The scheduler task: sleeps until the earliest timer in the store (or
//! until told of an earlier one), then fires what is due. Timers that came
//! due while tocsin was down fire at start.

use crate::service::Service;
use std::time::Duration;
use tokio::sync::watch;
use tracing::error;

/// Longest sleep between checks, so a clock jump is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs until `shutdown` turns true.
pub async fn run(service: Service, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        // This also records the heartbeat /readyz looks at.
        if let Err(e) = service.fire_due_timers(service.clock().now()).await {
            error!(error = %e, "Firing escalation timers failed; retrying in 1s");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let wait = match service.store().next_timer() {
            Ok(Some(t)) => (t.due - service.clock().now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(e) => {
                error!(error = %e, "Reading the next timer failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = service.wakers().scheduler.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
