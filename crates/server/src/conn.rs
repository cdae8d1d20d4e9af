//! Connections under load and abuse: a bound on how many are served at once, timeouts
//! for the TLS handshake, for a request head that arrives too slowly, for a connection
//! idle between requests and for a transfer that stalls, and eviction of idle
//! connections when the bound is reached, so that a crowd of idle or half-open
//! connections cannot keep new clients out.
//!
//! Each connection has a [`Tracker`]: the I/O wrapper ([`Tracked`]) notes every byte
//! read or written, the service wrapper counts requests in flight (until their response
//! body is dropped), and one timer per connection ([`watch`]) closes it when a deadline
//! passes. At the bound, the accept loop asks the [`Pool`] to close the connection that
//! has been idle (or in its handshake) the longest, then waits for its slot; connections
//! with requests in flight are never evicted, so when every slot is busy, new
//! connections wait in the kernel's accept queue.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The connection limits of `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub tls_handshake: Duration,
    /// From the first byte of a request head to its end (HTTP/1.1).
    pub header: Duration,
    /// Without a byte in either direction: between requests, or in a stalled transfer.
    pub idle: Duration,
    pub max_connections: usize,
}

/// One connection's state, shared by its I/O, its service and its timer.
pub struct Tracker {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written.
    last_io: AtomicU64,
    /// 1 + milliseconds since `epoch` when the first byte of a request head arrived with
    /// no request in flight (0: none). HTTP/1.1 only.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
    handshaking: AtomicBool,
    http1: AtomicBool,
    evict: Notify,
}

impl Tracker {
    fn new(epoch: Instant) -> Tracker {
        let t = Tracker {
            epoch,
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            handshaking: AtomicBool::new(true),
            http1: AtomicBool::new(true),
            evict: Notify::new(),
        };
        t.touch();
        t
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    fn read_some(&self) {
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if self.http1.load(Ordering::Relaxed)
            && !self.handshaking.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(now + 1, Ordering::Relaxed);
        }
    }

    /// A request head was read: the service is called.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The handshake is over; `http1`: the connection speaks HTTP/1.1 (not h2).
    pub fn established(&self, http1: bool) {
        self.http1.store(http1, Ordering::Relaxed);
        self.handshaking.store(false, Ordering::Relaxed);
        self.touch();
    }

    /// Resolves when the pool asks this connection to close.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    fn evictable(&self) -> bool {
        self.handshaking.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// A request in flight: held by its response body, released when that is dropped.
pub struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Idle,
    SlowHeader,
    Stalled,
    Evicted,
}

/// Wait until `t`'s connection must close, and say why.
pub async fn watch(t: &Tracker, limits: &ConnLimits) -> Closed {
    let ms = |d: Duration| d.as_millis() as u64;
    loop {
        let now = t.now_ms();
        let last = t.last_io.load(Ordering::Relaxed);
        let head = t.head_since.load(Ordering::Relaxed);
        let busy = t.in_flight.load(Ordering::Relaxed) > 0;
        let idle_at = last + ms(limits.idle);
        let header_at = if head != 0 && !busy {
            head - 1 + ms(limits.header)
        } else {
            u64::MAX
        };
        if now >= header_at {
            return Closed::SlowHeader;
        }
        if now >= idle_at {
            return if busy { Closed::Stalled } else { Closed::Idle };
        }
        // A head that begins while this timer sleeps is not announced (that would cost a
        // wake-up per request): the timer looks again every header timeout, so a slow head
        // is cut between one and two header timeouts after it began.
        let recheck = now + ms(limits.header);
        let wake = idle_at.min(header_at).min(recheck) - now;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wake.max(1))) => {}
            () = t.evict.notified() => return Closed::Evicted,
        }
    }
}

/// The I/O of a connection, noting every byte on its tracker.
pub struct Tracked<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, tracker: Arc<Tracker>) -> Self {
        Tracked { inner, tracker }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.tracker.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.tracker.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.tracker.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connections being served.
pub struct Pool {
    epoch: Instant,
    live: Mutex<std::collections::HashMap<u64, Arc<Tracker>>>,
    next_id: AtomicU64,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            epoch: Instant::now(),
            live: Mutex::new(Default::default()),
            next_id: AtomicU64::new(0),
        }
    }
}

/// A connection's place in the pool, given back when its task ends.
pub struct Slot {
    pool: Arc<Pool>,
    id: u64,
    pub tracker: Arc<Tracker>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.lock().remove(&self.id);
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Tracker>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection's slot.
    pub fn add(self: &Arc<Self>) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracker = Arc::new(Tracker::new(self.epoch));
        self.lock().insert(id, tracker.clone());
        Slot {
            pool: self.clone(),
            id,
            tracker,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ask the connection idle (or handshaking) the longest to close. `false`: every
    /// connection has a request in flight.
    pub fn evict_one(&self) -> bool {
        let live = self.lock();
        let oldest = live
            .values()
            .filter(|t| t.evictable())
            .min_by_key(|t| t.last_io.load(Ordering::Relaxed));
        match oldest {
            Some(t) => {
                t.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The soft limit of open files, raised to the hard limit; the value in force.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            let raised = rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return max;
            }
        }
        return cur;
    }
    lim.current.unwrap_or(u64::MAX)
}

/// Descriptors kept free for everything but connections (databases, blobs, uploads,
/// the listener, logs).
pub const RESERVED_FDS: u64 = 128;

/// The connection bound for `wanted` under a descriptor limit of `nofile`.
pub fn connection_bound(wanted: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS).max(16);
    (wanted as u64).min(room) as usize
}

/// Whether an accept error means "out of descriptors" (back off and retry).
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
        || code == rustix::io::Errno::NFILE.raw_os_error())
}

/// Logs a repeated condition at most once per `every`.
pub struct Throttle {
    last: Mutex<Option<Instant>>,
    every: Duration,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            last: Mutex::new(None),
            every,
        }
    }

    pub fn ready(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|l| l.elapsed() >= self.every) {
            *last = Some(Instant::now());
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadlines() {
        let limits = ConnLimits {
            tls_handshake: Duration::from_secs(1),
            header: Duration::from_millis(50),
            idle: Duration::from_millis(150),
            max_connections: 10,
        };
        let pool = Arc::new(Pool::default());
        let s1 = pool.add();
        let t = &s1.tracker;
        t.established(true);
        let started = Instant::now();
        assert_eq!(watch(t, &limits).await, Closed::Idle);
        assert!(started.elapsed() >= Duration::from_millis(140));
        // A head that starts and does not finish.
        let s2 = pool.add();
        let t = &s2.tracker;
        t.established(true);
        t.read_some();
        assert_eq!(watch(t, &limits).await, Closed::SlowHeader);
        // A request in flight with no bytes moving: stalled; HTTP/2 has no head timer.
        let s3 = pool.add();
        let t = &s3.tracker;
        t.established(false);
        t.read_some();
        let req = t.request_started();
        assert_eq!(watch(t, &limits).await, Closed::Stalled);
        drop(req);
        // Eviction picks the longest idle, never a busy one.
        drop((s1, s2, s3));
        let idle = pool.add();
        idle.tracker.established(true);
        let busy = pool.add();
        busy.tracker.established(true);
        let _r = busy.tracker.request_started();
        assert!(pool.evict_one());
        assert_eq!(watch(&idle.tracker, &limits).await, Closed::Evicted);
        drop(idle);
        assert_eq!(pool.len(), 1);
        assert!(!pool.evict_one());
        assert_eq!(connection_bound(10_000, 1024), 896);
        assert_eq!(connection_bound(100, 1024), 100);
    }
}
