//! The API's HTTP/1.1 server: an accept loop that keeps answering when clients hold
//! connections open.
//!
//! - At most `api.max_connections` connections are served at once, lowered so that
//!   [`FD_RESERVE`] descriptors stay free for the journal, the exchange and the rest of the
//!   daemon. A connection beyond the limit closes the connections that have been idle (no
//!   request in progress) the longest — a sixteenth of the limit at once, so a flood costs
//!   one scan per sixteen connections — and an operator's halt gets through however many
//!   idle or half-sent connections are open; when every connection is busy the new one is
//!   closed.
//! - A request head whose first byte has arrived must be complete within
//!   `api.header_read_timeout_ms`; a connection with no request in progress and no traffic
//!   for `api.idle_timeout_ms` (fresh, or kept alive after a response) is closed.
//! - Failing `accept` (out of descriptors) frees an idle connection and tries again at once,
//!   instead of waiting. The accept queue is deep ([`bind`]) so a burst is not dropped.
//! - [`raise_fd_limit`] raises the soft open-file limit to the hard limit.
//!
//! Upgraded connections (the WebSockets) leave the server's accounting once upgraded; they
//! need a viewer token and end with the daemon.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use gf_core::config::ApiConfig;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Open-file descriptors kept free for everything that is not an API connection (journal,
/// exchange and market connections, the token file, `/proc` reads).
pub const FD_RESERVE: u64 = 256;

/// Largest request head (and read buffer) per connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Connections the kernel may queue for `accept` (capped by `net.core.somaxconn`). A
/// burst of connections beyond it is dropped and retried by the client a second later, so
/// it is set well above `std`'s 128.
const LISTEN_BACKLOG: u32 = 4096;

/// The connection limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to complete a request head once its first byte arrived.
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request and no traffic.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The configured limits, with `max_connections` lowered to leave [`FD_RESERVE`]
    /// descriptors free under the soft open-file limit `fd_limit` (none: no lowering).
    #[must_use]
    pub fn new(api: &ApiConfig, fd_limit: Option<u64>) -> Self {
        let fit = fd_limit.map_or(usize::MAX, |soft| {
            usize::try_from(soft.saturating_sub(FD_RESERVE).max(8)).unwrap_or(usize::MAX)
        });
        Self {
            max_connections: api.max_connections.min(fit),
            header_read_timeout: Duration::from_millis(api.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(api.idle_timeout_ms),
        }
    }
}

/// Binds the API's listening socket (address reuse on, a deep accept queue).
///
/// # Errors
/// When the socket cannot be created or bound (address in use, not permitted).
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard limit and returns the soft
/// limit in force afterwards (`None`: unlimited or unknown). A refusal is logged, not fatal.
#[must_use]
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let before = getrlimit(Resource::Nofile);
        if before.maximum.is_some() && before.current != before.maximum {
            let raised = Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => tracing::info!(
                    from = ?before.current,
                    to = ?before.maximum,
                    "raised the open-file limit to the hard limit"
                ),
                Err(e) => tracing::warn!(
                    cause = %e,
                    soft = ?before.current,
                    hard = ?before.maximum,
                    "cannot raise the open-file limit"
                ),
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    None
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting, lets requests in
/// progress finish and closes idle connections. Raises the open-file limit first.
pub(crate) fn spawn(
    listener: TcpListener,
    router: Router,
    api: &ApiConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let fd_limit = raise_fd_limit();
    let limits = Limits::new(api, fd_limit);
    if limits.max_connections < api.max_connections {
        tracing::warn!(
            configured = api.max_connections,
            serving = limits.max_connections,
            fd_limit = ?fd_limit,
            "api.max_connections lowered to fit the open-file limit"
        );
    }
    tokio::spawn(accept_loop(listener, router, limits, shutdown))
}

/// One connection's activity, shared by its I/O, its requests and its watchdog.
#[derive(Debug)]
struct Activity {
    /// The server's time base.
    epoch: Instant,
    /// Requests in progress (head received, response not yet produced).
    busy: AtomicUsize,
    /// Microseconds since `epoch` of the last byte read or written, or of the last
    /// response.
    last_io: AtomicU64,
    /// 1 + microseconds since `epoch` at which the first byte of a request head arrived
    /// that is not complete yet; 0 when none is arriving.
    head_started: AtomicU64,
    /// Wakes the watchdog when a head starts or a request ends.
    changed: Notify,
    /// Cancelled to close the connection at once (eviction).
    kill: CancellationToken,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            busy: AtomicUsize::new(0),
            last_io: AtomicU64::new(micros_since(epoch, Instant::now())),
            head_started: AtomicU64::new(0),
            changed: Notify::new(),
            kill: CancellationToken::new(),
        }
    }

    fn now(&self) -> u64 {
        micros_since(self.epoch, Instant::now())
    }

    fn on_bytes_read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Acquire) == 0
            && self
                .head_started
                .compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn on_bytes_written(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// When to look again (microseconds since `epoch`), or why the connection is over.
    fn check(&self, now: u64, limits: &Limits) -> Result<u64, &'static str> {
        let header = duration_micros(limits.header_read_timeout);
        if self.busy.load(Ordering::Acquire) > 0 {
            return Ok(now.saturating_add(header));
        }
        let (deadline, why) = match self.head_started.load(Ordering::Acquire) {
            0 => (
                self.last_io
                    .load(Ordering::Relaxed)
                    .saturating_add(duration_micros(limits.idle_timeout)),
                "idle timeout",
            ),
            started => ((started - 1).saturating_add(header), "header read timeout"),
        };
        if now >= deadline {
            Err(why)
        } else {
            Ok(deadline)
        }
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        activity.head_started.store(0, Ordering::Release);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.on_bytes_written();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

fn micros_since(epoch: Instant, t: Instant) -> u64 {
    duration_micros(t.saturating_duration_since(epoch))
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The connections being served.
#[derive(Debug)]
struct Registry {
    max: usize,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    /// Admits a connection, closing the longest-idle ones when full (a sixteenth of the
    /// limit at once, so that a flood of connections costs one scan per sixteen); `None`
    /// when full of busy connections.
    fn admit(&self, epoch: Instant) -> Option<(u64, Arc<Activity>)> {
        let mut conns = self.conns.lock();
        if conns.len() >= self.max && !Self::evict_locked(&mut conns, (self.max / 16).max(1)) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(epoch));
        conns.insert(id, activity.clone());
        Some((id, activity))
    }

    /// Closes the longest-idle connection; false when every connection is busy.
    fn evict_one(&self) -> bool {
        Self::evict_locked(&mut self.conns.lock(), 1)
    }

    /// Closes up to `count` connections, longest idle first; false when none is idle.
    fn evict_locked(conns: &mut HashMap<u64, Arc<Activity>>, count: usize) -> bool {
        let mut idle: Vec<(u64, u64)> = conns
            .iter()
            .filter(|(_, a)| a.busy.load(Ordering::Acquire) == 0)
            .map(|(id, a)| (a.last_io.load(Ordering::Relaxed), *id))
            .collect();
        if idle.is_empty() {
            return false;
        }
        let count = count.min(idle.len());
        if count < idle.len() {
            idle.select_nth_unstable(count - 1);
        }
        for (_, id) in &idle[..count] {
            if let Some(activity) = conns.remove(id) {
                activity.kill.cancel();
            }
        }
        true
    }

    fn leave(&self, id: u64) {
        self.conns.lock().remove(&id);
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let epoch = Instant::now();
    let registry = Arc::new(Registry {
        max: limits.max_connections,
        next_id: AtomicU64::new(0),
        conns: Mutex::new(HashMap::new()),
    });
    let tracker = TaskTracker::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (or memory): free the longest-idle connection's
                // descriptor and try again; pause briefly only when nothing could be freed.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(cause = %e, "API accept failed; closing an idle connection");
                    last_warning = Some(Instant::now());
                }
                if !registry.evict_one() {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some((id, activity)) = registry.admit(epoch) else {
            tracing::debug!("API connection refused: every connection is busy");
            continue;
        };
        tracker.spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            activity,
            shutdown.clone(),
            Closer {
                registry: registry.clone(),
                id,
            },
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Takes a connection off the registry when its task ends, however it ends.
struct Closer {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.registry.leave(self.id);
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
    _closer: Closer,
) {
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::start(&activity);
            let mut router = router.clone();
            async move {
                let response = tower::Service::call(&mut router, req).await;
                drop(busy);
                response
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let next = match activity.check(activity.now(), &limits) {
            Ok(next) => next,
            Err(why) => {
                tracing::debug!(why, "API connection closed");
                return;
            }
        };
        let wake = activity.epoch + Duration::from_micros(next);
        tokio::select! {
            biased;
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(cause = %e, "API connection ended with an error");
                }
                return;
            }
            () = activity.kill.cancelled() => {
                tracing::debug!("API connection closed to admit a new one");
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = activity.changed.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// A TCP stream that records its traffic in the connection's [`Activity`].
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1_000),
        }
    }

    #[test]
    fn the_limit_leaves_a_descriptor_reserve() {
        let api = ApiConfig::default();
        assert_eq!(Limits::new(&api, None).max_connections, 256);
        assert_eq!(Limits::new(&api, Some(1024)).max_connections, 256);
        assert_eq!(Limits::new(&api, Some(400)).max_connections, 144);
        assert_eq!(Limits::new(&api, Some(100)).max_connections, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_half_sent_and_busy_connections_time_out_as_documented() {
        let a = Activity::new(Instant::now());
        let l = limits();
        const MS: u64 = 1_000;
        // Fresh and silent: the idle timeout.
        assert_eq!(a.check(0, &l), Ok(1_000 * MS));
        assert_eq!(a.check(1_000 * MS, &l), Err("idle timeout"));
        // A head starts arriving: the header timeout from its first byte, however the
        // bytes trickle.
        tokio::time::advance(Duration::from_millis(500)).await;
        a.on_bytes_read();
        assert_eq!(a.check(500 * MS, &l), Ok(600 * MS));
        tokio::time::advance(Duration::from_millis(90)).await;
        a.on_bytes_read();
        assert_eq!(a.check(600 * MS, &l), Err("header read timeout"));
        // A request in progress never times out here; its end restarts the idle clock.
        let busy = Busy::start(&Arc::new(Activity::new(Instant::now())));
        assert_eq!(busy.0.check(5_000 * MS, &l), Ok(5_100 * MS));
        let activity = busy.0.clone();
        drop(busy);
        assert_eq!(activity.check(0, &l), Ok(1_000 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_closes_the_longest_idle_connection_never_a_busy_one() {
        let epoch = Instant::now();
        let r = Registry {
            max: 2,
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        };
        let (_, first) = r.admit(epoch).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_, second) = r.admit(epoch).unwrap();
        let (_, third) = r.admit(epoch).unwrap();
        assert!(first.kill.is_cancelled(), "the oldest idle one goes");
        assert!(!second.kill.is_cancelled() && !third.kill.is_cancelled());

        let _b2 = Busy::start(&second);
        let _b3 = Busy::start(&third);
        assert!(
            r.admit(epoch).is_none(),
            "all busy: the newcomer is refused"
        );
        assert!(!second.kill.is_cancelled() && !third.kill.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_evicts_a_sixteenth_of_the_limit_at_once_oldest_first() {
        let epoch = Instant::now();
        let r = Registry {
            max: 32,
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        };
        let mut all = Vec::new();
        for _ in 0..32 {
            all.push(r.admit(epoch).unwrap().1);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let _newest = r.admit(epoch).unwrap();
        let closed: Vec<usize> = (0..32).filter(|i| all[*i].kill.is_cancelled()).collect();
        assert_eq!(closed, [0, 1], "the two longest idle");
        assert_eq!(r.conns.lock().len(), 31);
        let _next = r.admit(epoch).unwrap();
        assert!(
            !all[2].kill.is_cancelled(),
            "room was left: no scan this time"
        );
    }
}
