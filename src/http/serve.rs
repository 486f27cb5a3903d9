//! The HTTP server loop, with every connection bounded so that nobody who
//! can reach the port can stop intake by holding connections open:
//!
//! - at most `max_connections` are open. At the limit, the connection that
//!   has waited longest without a request in flight is closed to make room;
//!   if every one has a request in flight, the newcomer gets a 503 at once
//!   (never a queue, never a file descriptor per attacker);
//! - a request's headers and body must all arrive within `request_timeout`
//!   of its first byte, however slowly they trickle (a late body is a 408
//!   and nothing is stored; late headers close the connection);
//! - a connection with no request in flight is closed after `idle_timeout`
//!   (this covers one that never sends a byte).
//!
//! Graceful shutdown finishes in-flight requests for up to a grace period.

use crate::config::ServerConfig;
use crate::metrics::{METRICS, labels};
use axum::Router;
use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use tracing::{debug, warn};

/// Connection limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a request's headers and body may take, from its first byte.
    pub request_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits `[server]` configures, with `shutdown_grace`.
    pub fn from_config(server: &ServerConfig, shutdown_grace: Duration) -> Self {
        Self {
            max_connections: server.max_connections,
            request_timeout: server.request_timeout,
            idle_timeout: server.idle_timeout,
            shutdown_grace,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&ServerConfig::default(), Duration::from_secs(10))
    }
}

/// The error a request body yields when `request_timeout` runs out; the
/// handlers answer it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request was not received within [server] request_timeout")]
pub struct RequestDeadline;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// A request's first byte arrived; its headers have not all.
    Head,
    /// Requests in flight (headers read; the handler or the response runs).
    Busy(usize),
}

/// One open connection, shared by its IO, its requests and its watchdog.
struct Conn {
    /// The phase, and since when.
    state: Mutex<(Phase, Instant)>,
    /// Wakes the watchdog when the phase changes or the server evicts it.
    changed: Notify,
    /// Closed by the server to make room.
    evicted: AtomicBool,
}

impl Conn {
    fn new() -> Self {
        Self {
            state: Mutex::new((Phase::Idle, Instant::now())),
            changed: Notify::new(),
            evicted: AtomicBool::new(false),
        }
    }

    fn bytes_arrived(&self) {
        let mut s = self.state.lock();
        if s.0 == Phase::Idle {
            *s = (Phase::Head, Instant::now());
            self.changed.notify_one();
        }
    }

    /// A request's headers are in: returns when its first byte arrived.
    fn request_started(&self) -> Instant {
        let mut s = self.state.lock();
        let now = Instant::now();
        let (phase, started) = match s.0 {
            Phase::Head => (Phase::Busy(1), s.1),
            // Pipelined behind a response, or HTTP/2's next stream.
            Phase::Idle => (Phase::Busy(1), now),
            Phase::Busy(n) => (Phase::Busy(n + 1), now),
        };
        *s = (phase, started);
        self.changed.notify_one();
        started
    }

    fn request_finished(&self) {
        let mut s = self.state.lock();
        *s = match s.0 {
            Phase::Busy(n) if n > 1 => (Phase::Busy(n - 1), s.1),
            _ => (Phase::Idle, Instant::now()),
        };
        self.changed.notify_one();
    }

    /// When the watchdog closes the connection, if nothing changes.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let (phase, since) = *self.state.lock();
        match phase {
            Phase::Idle => Some(since + limits.idle_timeout),
            Phase::Head => Some(since + limits.request_timeout),
            Phase::Busy(_) => None,
        }
    }

    /// Idle or still sending headers: a candidate for eviction, oldest first.
    fn waiting_since(&self) -> Option<Instant> {
        let (phase, since) = *self.state.lock();
        (!matches!(phase, Phase::Busy(_))).then_some(since)
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

/// The open connections.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Registry {
    /// Admits a new connection, evicting the longest-waiting one at the
    /// limit; `None` if every connection has a request in flight.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.conns.lock();
        if conns.len() >= max {
            let oldest = conns
                .iter()
                .filter_map(|(id, c)| c.waiting_since().map(|t| (t, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(c) = conns.remove(&oldest) {
                c.evict();
                METRICS.http_connections_open.dec();
                cut("evicted");
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new());
        conns.insert(id, conn.clone());
        METRICS.http_connections_open.inc();
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        if self.conns.lock().remove(&id).is_some() {
            METRICS.http_connections_open.dec();
        }
    }
}

/// The socket, telling its connection when bytes arrive.
struct Watched {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_arrived();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that fails with [`RequestDeadline`] once the request's
/// deadline passes: a trickle of bytes does not extend it.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(Box::new(RequestDeadline))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks its request finished when dropped.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request in flight until it is sent (or
/// dropped), so a long download is not taken for an idle connection.
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router, for one connection.
#[derive(Clone)]
struct Tracked {
    router: Router,
    conn: Arc<Conn>,
    request_timeout: Duration,
    /// Who is connected, for `ConnectInfo` (`/metrics`' networks).
    peer: std::net::SocketAddr,
    /// The listener's address, for the API's `Host` check.
    local: std::net::SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let started = self.conn.request_started();
        let in_flight = InFlight(self.conn.clone());
        let deadline = Box::pin(tokio::time::sleep_until(started + self.request_timeout));
        let mut req = req.map(|inner| DeadlineBody {
            inner,
            deadline,
            expired: false,
        });
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        req.extensions_mut().insert(super::LocalAddr(self.local));
        let router = self.router.clone();
        Box::pin(async move {
            let resp = router.oneshot(req).await?;
            Ok(resp.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

fn cut(reason: &str) {
    METRICS
        .http_connections_cut
        .get_or_create(&labels([("reason", reason)]))
        .inc();
}

/// What an excess connection reads before it is closed.
fn busy_response() -> Vec<u8> {
    let body = r#"{"error":"overloaded","message":"every connection has a request in flight ([server] max_connections)"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for in-flight requests (up to the grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
    limits: Limits,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog times headers (from the first byte, not from when
        // hyper starts reading) and idle keep-alive connections.
        .header_read_timeout(None);
    let graceful = GracefulShutdown::new();
    let registry = Arc::new(Registry::default());
    let busy = busy_response();
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "Accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some((id, conn)) = registry.admit(limits.max_connections) else {
                    // Never blocks: a fresh socket's send buffer has room.
                    let _ = stream.try_write(&busy);
                    cut("refused");
                    debug!(%peer, "Refused a connection: every one has a request in flight");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = Tracked {
                    router: app.clone(),
                    conn: conn.clone(),
                    request_timeout: limits.request_timeout,
                    peer,
                    local,
                };
                let io = TokioIo::new(Watched { io: stream, conn: conn.clone() });
                let served = builder.serve_connection_with_upgrades(io, service).into_owned();
                let served = graceful.watch(served);
                let registry = registry.clone();
                tokio::spawn(async move {
                    watch(served, &conn, &limits, peer).await;
                    registry.remove(id);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            warn!(grace = ?limits.shutdown_grace, "Shutdown grace ran out with requests in flight; dropping them");
        }
    }
    Ok(())
}

/// Drives one connection until it ends, or closes it (by dropping it) when
/// it idles or sends a request too slowly, or when the server evicts it.
async fn watch<E: std::fmt::Display>(
    served: impl Future<Output = Result<(), E>>,
    conn: &Conn,
    limits: &Limits,
    peer: std::net::SocketAddr,
) {
    tokio::pin!(served);
    loop {
        if conn.evicted.load(Ordering::Relaxed) {
            debug!(%peer, "Closed a waiting connection to make room for a new one");
            return;
        }
        let deadline = conn.deadline(limits);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The connection first: bytes that arrived with the timer (a
            // busy runtime polls both at once) are read before the
            // deadline is judged.
            biased;
            r = &mut served => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "Connection ended with an error");
                }
                return;
            }
            _ = conn.changed.notified() => {}
            _ = expired => {
                if conn.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    cut("timed_out");
                    debug!(%peer, "Closed a connection that idled or sent its request too slowly");
                    return;
                }
            }
        }
    }
}
