//! Slack's rate limits, honoured before the 429.
//!
//! Slack sends no "remaining" headers, only `Retry-After` on a 429, so
//! calls are paced by the limits Slack documents
//! (api.slack.com/apis/rate-limits): `chat.postMessage` about one message
//! per second per channel with short bursts allowed, and the other methods
//! by their tier, per workspace (Tier 2 20+ a minute, Tier 3 50+ a
//! minute). Each limit is a token bucket: `burst` calls at once, then one
//! every `every`. A 429 holds its key for `Retry-After`, so the calls
//! behind it wait too instead of meeting the same 429.
//!
//! The clock is tokio's (monotonic, paused in tests), not tocsin's
//! [`Clock`](crate::clock::Clock): these are seconds of wall time on
//! Slack's side, not domain time.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// A documented limit as a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls that may go at once.
    pub burst: u32,
    /// Then one call per this.
    pub every: Duration,
}

/// `chat.postMessage`, per channel: a burst of 4, then a little under one
/// a second (Slack allows "short bursts" above 1 a second).
pub const POST_MESSAGE: Rate = Rate {
    burst: 4,
    every: Duration::from_millis(1050),
};

/// Tier 2 (20+ a minute): `conversations.create`, `.setTopic`, `.archive`.
pub const TIER_2: Rate = Rate {
    burst: 20,
    every: Duration::from_secs(3),
};

/// Tier 3 (50+ a minute): `conversations.invite`, `.open`, `.history`,
/// `chat.update`.
pub const TIER_3: Rate = Rate {
    burst: 50,
    every: Duration::from_millis(1200),
};

/// The rate of a Web API method tocsin calls, and whether it is per
/// channel (`chat.postMessage`) rather than per workspace.
pub fn rate_of(method: &str) -> (Rate, bool) {
    match method {
        "chat.postMessage" => (POST_MESSAGE, true),
        "conversations.create" | "conversations.setTopic" | "conversations.archive" => {
            (TIER_2, false)
        }
        _ => (TIER_3, false),
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Calls that may still go at once; below zero, calls are queued.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    /// Until when a 429 holds the key.
    held_until: Option<Instant>,
}

/// The buckets of one workspace's Web API calls.
#[derive(Debug, Default)]
pub struct Pacer {
    slots: Mutex<HashMap<String, Slot>>,
}

/// The key a call of `method` on `channel` is counted under.
pub fn key(method: &str, channel: &str) -> String {
    match rate_of(method) {
        (_, true) => format!("{method} {channel}"),
        (_, false) => method.to_string(),
    }
}

impl Pacer {
    /// Takes a place for a call of `method` on `channel`: how long to
    /// wait before sending it.
    fn reserve(&self, method: &str, channel: &str, now: Instant) -> Duration {
        let (rate, _) = rate_of(method);
        let burst = f64::from(rate.burst);
        let mut slots = self.slots.lock();
        let slot = slots.entry(key(method, channel)).or_insert(Slot {
            tokens: burst,
            at: now,
            held_until: None,
        });
        let earned = now.duration_since(slot.at).as_secs_f64() / rate.every.as_secs_f64();
        slot.tokens = (slot.tokens + earned).min(burst);
        slot.at = now;
        slot.tokens -= 1.0;
        let queued = if slot.tokens >= 0.0 {
            Duration::ZERO
        } else {
            rate.every.mul_f64(-slot.tokens)
        };
        let held = slot
            .held_until
            .map_or(Duration::ZERO, |h| h.saturating_duration_since(now));
        queued.max(held)
    }

    /// Waits until a call of `method` on `channel` may go.
    pub async fn wait(&self, method: &str, channel: &str) {
        let wait = self.reserve(method, channel, Instant::now());
        if !wait.is_zero() {
            debug!(method, channel, ?wait, "Pacing a Slack call");
            tokio::time::sleep(wait).await;
        }
    }

    /// Slack answered 429: nothing more on this key for `retry_after`.
    pub fn hold(&self, method: &str, channel: &str, retry_after: Duration) {
        let now = Instant::now();
        let mut slots = self.slots.lock();
        let (rate, _) = rate_of(method);
        let slot = slots.entry(key(method, channel)).or_insert(Slot {
            tokens: f64::from(rate.burst),
            at: now,
            held_until: None,
        });
        let until = now + retry_after;
        slot.held_until = Some(slot.held_until.map_or(until, |h| h.max(until)));
        // After the hold, start again from one call at a time.
        slot.tokens = slot.tokens.min(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn posts_to_one_channel_burst_then_go_one_a_second() {
        let pacer = Pacer::default();
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..7 {
            pacer.wait("chat.postMessage", "C1").await;
            at.push(Instant::now() - start);
        }
        assert!(at[..4].iter().all(|d| d.is_zero()), "{at:?}");
        assert_eq!(at[4], Duration::from_millis(1050));
        assert_eq!(at[6], Duration::from_millis(3150));
        // Another channel has its own bucket.
        let before = Instant::now();
        pacer.wait("chat.postMessage", "C2").await;
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_calls_queue_behind_each_other() {
        let pacer = std::sync::Arc::new(Pacer::default());
        let start = Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let p = pacer.clone();
                tokio::spawn(async move {
                    p.wait("chat.postMessage", "C1").await;
                    Instant::now() - start
                })
            })
            .collect();
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        at.sort();
        assert_eq!(
            at[4..],
            [Duration::from_millis(1050), Duration::from_millis(2100)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_its_key_for_retry_after() {
        let pacer = Pacer::default();
        pacer.hold("chat.postMessage", "C1", Duration::from_secs(3));
        let start = Instant::now();
        pacer.wait("chat.postMessage", "C2").await;
        assert_eq!(Instant::now(), start);
        pacer.wait("chat.postMessage", "C1").await;
        assert!(Instant::now() - start >= Duration::from_secs(3));
        // Tier methods are per workspace, whatever the channel.
        assert_eq!(
            key("conversations.setTopic", "C1"),
            key("conversations.setTopic", "C2")
        );
        assert_eq!(rate_of("conversations.invite").0, TIER_3);
    }
}
