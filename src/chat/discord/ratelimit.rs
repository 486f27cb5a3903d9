//! Discord's rate limits, honoured before the 429.
//!
//! Every answer carries `X-RateLimit-Bucket` (a hash naming the route's
//! limit), `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset-After` (seconds, with a fraction). A bucket is the
//! hash and the route's major parameter (the channel, guild or webhook id):
//! two channels share a hash but not a bucket. A request on a bucket with
//! nothing remaining waits until the bucket resets instead of being sent;
//! a 429 holds its bucket (or, with `X-RateLimit-Global`, every bucket)
//! for `Retry-After`. serenity has its own limiter, but tocsin sends its
//! requests itself (so a 429's `retry_after` reaches the outbox), and
//! serenity's limiter is keyed to discord.com whatever the proxy.
//!
//! The clock is tokio's (monotonic, paused in tests), not tocsin's
//! [`Clock`](crate::clock::Clock): a bucket is a few seconds of wall time
//! on Discord's side, not domain time.

use parking_lot::Mutex;
use reqwest::header::HeaderMap;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// Waited past a reset, so a request does not race Discord's own clock.
const MARGIN: Duration = Duration::from_millis(25);

/// Longest wait taken from a header (a broken proxy must not wedge a route).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A request's route (method and path with ids as `{}`) and its major
/// parameter, as Discord groups them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// Like `POST /channels/{}/messages`.
    pub route: String,
    /// Like `123` (a channel id), or empty.
    pub major: String,
}

impl RouteKey {
    /// The key of `method` on `path` (the path may carry a proxy's prefix
    /// and `/api/v10`).
    pub fn of(method: &str, path: &str) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let start = segments
            .iter()
            .position(|s| s.starts_with('v') && s[1..].parse::<u32>().is_ok())
            .map_or(0, |i| i + 1);
        let segments = &segments[start..];
        let major_len = match segments.first() {
            Some(&"channels") | Some(&"guilds") => 1,
            // A webhook's id and token.
            Some(&"webhooks") => 2,
            _ => 0,
        };
        let major = segments
            .iter()
            .skip(1)
            .take(major_len)
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let route = segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty();
                if id || (i >= 1 && i <= major_len) {
                    "{}"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        Self {
            route: format!("{} /{route}", method.to_ascii_uppercase()),
            major,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: u32,
    remaining: u32,
    reset_at: Instant,
    /// The longest reset-after seen: about the bucket's period.
    window: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// Route → the bucket hash Discord named for it.
    hashes: HashMap<String, String>,
    /// Hash (or route, before a hash is known) and major → its bucket.
    buckets: HashMap<(String, String), Bucket>,
    /// Until when every request waits (a global 429).
    global_until: Option<Instant>,
}

impl State {
    fn bucket_id(&self, key: &RouteKey) -> (String, String) {
        let hash = self.hashes.get(&key.route).unwrap_or(&key.route);
        (hash.clone(), key.major.clone())
    }
}

/// Discord's buckets as the answers describe them.
#[derive(Debug, Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

/// A header as seconds.
fn seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let s: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s).min(MAX_WAIT))
}

fn number(headers: &HeaderMap, name: &str) -> Option<u32> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl RateLimiter {
    /// How long a request on `key` must wait now; zero if it may go, and
    /// then its place in the bucket is taken.
    fn reserve(&self, key: &RouteKey, now: Instant) -> Duration {
        let mut st = self.state.lock();
        if let Some(until) = st.global_until {
            if until > now {
                return until - now;
            }
            st.global_until = None;
        }
        let id = st.bucket_id(key);
        let Some(bucket) = st.buckets.get_mut(&id) else {
            return Duration::ZERO;
        };
        if bucket.reset_at <= now {
            if bucket.window.is_zero() {
                // Only a 429 made it: nothing known past its wait.
                st.buckets.remove(&id);
                return Duration::ZERO;
            }
            // A new window, until the answers say more.
            bucket.remaining = bucket.limit;
            bucket.reset_at = now + bucket.window;
        }
        if bucket.remaining == 0 {
            return bucket.reset_at - now;
        }
        bucket.remaining -= 1;
        Duration::ZERO
    }

    /// Waits until a request on `key` may be sent without a 429.
    pub async fn acquire(&self, key: &RouteKey) {
        loop {
            let wait = self.reserve(key, Instant::now());
            if wait.is_zero() {
                return;
            }
            debug!(route = %key.route, major = %key.major, ?wait, "Waiting for a Discord rate-limit bucket");
            tokio::time::sleep(wait).await;
        }
    }

    /// Learns from an answer: its bucket's headers, and on a 429 the wait
    /// (`retry_after` from the body, else `Retry-After`) and whether it is
    /// global (the body's `global`, or `X-RateLimit-Global`).
    pub fn update(
        &self,
        key: &RouteKey,
        status: u16,
        headers: &HeaderMap,
        retry_after: Option<f64>,
        global: bool,
    ) {
        let now = Instant::now();
        let mut st = self.state.lock();
        if let Some(hash) = headers
            .get("x-ratelimit-bucket")
            .and_then(|v| v.to_str().ok())
        {
            let hash = hash.to_string();
            let before = st.bucket_id(key);
            if before.0 != hash {
                st.hashes.insert(key.route.clone(), hash);
                // What was counted under the route counts under the hash.
                if let Some(b) = st.buckets.remove(&before) {
                    let id = st.bucket_id(key);
                    st.buckets.entry(id).or_insert(b);
                }
            }
        }
        let id = st.bucket_id(key);
        let reset_after = seconds(headers, "x-ratelimit-reset-after");
        if let (Some(remaining), Some(reset_after)) =
            (number(headers, "x-ratelimit-remaining"), reset_after)
        {
            let limit = number(headers, "x-ratelimit-limit").unwrap_or(remaining.max(1));
            let window = st
                .buckets
                .get(&id)
                .map_or(Duration::ZERO, |b| b.window)
                .max(reset_after + MARGIN);
            st.buckets.insert(
                id.clone(),
                Bucket {
                    limit,
                    remaining,
                    reset_at: now + reset_after + MARGIN,
                    window,
                },
            );
        }
        if status != 429 {
            return;
        }
        let wait = retry_after
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s).min(MAX_WAIT))
            .or_else(|| seconds(headers, "retry-after"))
            .or(reset_after)
            .unwrap_or(Duration::from_secs(1));
        let until = now + wait + MARGIN;
        if global || headers.contains_key("x-ratelimit-global") {
            st.global_until = Some(st.global_until.map_or(until, |g| g.max(until)));
            return;
        }
        let bucket = st.buckets.entry(id).or_insert(Bucket {
            limit: 1,
            remaining: 0,
            reset_at: until,
            window: Duration::ZERO,
        });
        bucket.remaining = 0;
        bucket.reset_at = bucket.reset_at.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn routes_keep_the_major_parameter_and_hide_other_ids() {
        let k = RouteKey::of("post", "/api/v10/channels/123/messages");
        assert_eq!(k.route, "POST /channels/{}/messages");
        assert_eq!(k.major, "123");
        let k = RouteKey::of("PATCH", "/proxy/api/v10/channels/9/messages/77");
        assert_eq!(k.route, "PATCH /channels/{}/messages/{}");
        assert_eq!(k.major, "9");
        let k = RouteKey::of("PATCH", "/api/v10/webhooks/5/tok-en/messages/@original");
        assert_eq!(k.route, "PATCH /webhooks/{}/{}/messages/@original");
        assert_eq!(k.major, "5/tok-en");
        let k = RouteKey::of("POST", "/api/v10/users/@me/channels");
        assert_eq!(k.major, "");
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_waits_for_its_reset_and_other_channels_do_not() {
        let limiter = RateLimiter::default();
        let a = RouteKey::of("POST", "/api/v10/channels/1/messages");
        let b = RouteKey::of("POST", "/api/v10/channels/2/messages");
        let start = Instant::now();
        limiter.acquire(&a).await;
        limiter.update(
            &a,
            200,
            &headers(&[
                ("x-ratelimit-bucket", "abcd"),
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", "2.500"),
            ]),
            None,
            false,
        );
        // Another channel with the same hash is another bucket.
        limiter.acquire(&b).await;
        assert_eq!(Instant::now(), start);
        limiter.acquire(&a).await;
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_millis(2500), "{waited:?}");
        assert!(waited < Duration::from_millis(2600), "{waited:?}");
        // The new window has the limit again, less the request just sent.
        for _ in 0..4 {
            limiter.acquire(&a).await;
        }
        assert_eq!(Instant::now() - start, waited);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_take_their_place_before_the_answers_come() {
        let limiter = RateLimiter::default();
        let a = RouteKey::of("POST", "/api/v10/channels/1/messages");
        limiter.acquire(&a).await;
        limiter.update(
            &a,
            200,
            &headers(&[
                ("x-ratelimit-bucket", "abcd"),
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "2"),
                ("x-ratelimit-reset-after", "4"),
            ]),
            None,
            false,
        );
        let start = Instant::now();
        limiter.acquire(&a).await;
        limiter.acquire(&a).await;
        assert_eq!(Instant::now(), start);
        limiter.acquire(&a).await;
        assert!(Instant::now() - start >= Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_the_bucket_and_a_global_one_holds_every_route() {
        let limiter = RateLimiter::default();
        let a = RouteKey::of("POST", "/api/v10/channels/1/messages");
        let b = RouteKey::of("POST", "/api/v10/users/@me/channels");
        let start = Instant::now();
        limiter.update(&a, 429, &headers(&[("retry-after", "3")]), Some(1.5), false);
        limiter.acquire(&b).await;
        assert_eq!(Instant::now(), start);
        limiter.acquire(&a).await;
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(2));
        limiter.update(
            &a,
            429,
            &headers(&[("retry-after", "2"), ("x-ratelimit-global", "true")]),
            None,
            false,
        );
        let start = Instant::now();
        limiter.acquire(&b).await;
        assert!(Instant::now() - start >= Duration::from_secs(2));
    }
}
