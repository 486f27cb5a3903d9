//! The scheduler task: sleeps until the earliest timer in the store (or
//! until told of an earlier one), then fires what is due. Timers that came
//! due while tocsin was down fire at start.

use crate::clock::Clock;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::error;

/// A failure to fire timers (the store, the writer), logged as it is.
pub type FireError = Box<dyn std::error::Error + Send + Sync>;

/// What the scheduler needs from the application: the clock, when the
/// next timer is due, its wake-up, and firing through the one writer. The
/// application service implements it (in `app`), so escalation calls
/// nothing above it.
pub trait TimerHost: Send + Sync + 'static {
    /// The clock.
    fn clock(&self) -> &Arc<dyn Clock>;
    /// When the earliest timer is due, if there is one.
    fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, FireError>;
    /// The longest the scheduler sleeps between looks: [`MAX_SLEEP`], or
    /// less where other processes add timers that wake nobody here (a
    /// shared database).
    fn max_sleep(&self) -> Duration {
        MAX_SLEEP
    }
    /// Notified when a timer is added.
    fn scheduler_waker(&self) -> &Notify;
    /// Fires every timer due at `now` (and records the scheduler's
    /// heartbeat); returns how many fired.
    fn fire_due(&self, now: DateTime<Utc>)
    -> impl Future<Output = Result<usize, FireError>> + Send;
}

/// Longest sleep between checks, so a clock jump is noticed.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs until `shutdown` turns true.
pub async fn run(host: impl TimerHost, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        // This also records the heartbeat /readyz looks at.
        if let Err(e) = host.fire_due(host.clock().now()).await {
            error!(error = %e, "Firing escalation timers failed; retrying in 1s");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let wait = match host.next_timer_due() {
            Ok(Some(due)) => (due - host.clock().now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(host.max_sleep()),
            Ok(None) => host.max_sleep(),
            Err(e) => {
                error!(error = %e, "Reading the next timer failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = host.scheduler_waker().notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
