//! Connection discipline: the rules tiny_http does not enforce.
//!
//! tiny_http gives every connection a thread, reads headers without a size
//! limit and has no timeouts. It also gives no access to the sockets. This
//! module closes those gaps from the outside, with two parts:
//!
//! * [`Connections`], shared by the workers: each request a worker serves is
//!   a [`Visit`] of its peer (begin and end are counted per peer address),
//!   and before a worker reads a body, the peer's socket gets its timeouts.
//! * The *janitor* thread, which every [`TICK`] (more often with few
//!   connections, see [`next_tick`]) lists the process's file
//!   descriptors, picks the TCP sockets accepted on our port and applies:
//!   1. **timeouts**: a new socket gets `SO_RCVTIMEO`/`SO_SNDTIMEO` of
//!      `idle_timeout` (and `TCP_NODELAY`), so a read or write that waits
//!      longer fails;
//!   2. **header budget**: a connection that is not being served and has
//!      handed tiny_http more than `max_header_size` bytes since its last
//!      request was dispatched is answered 431 and closed (tiny_http would
//!      buffer an endless header whole);
//!   3. **idle and slow connections**: a connection that has not had a
//!      request dispatched for `idle_timeout` since its last one ended (or
//!      since it opened) is closed, whether it is silent, keeps trickling
//!      bytes of an unfinished request, or stopped halfway. tiny_http's own
//!      408 cannot be relied on: its read for the next request usually
//!      starts before the janitor has set the socket's timeout, and a read
//!      already blocked keeps waiting for ever. While every worker is busy
//!      a silent connection is spared, since a whole request may then be
//!      waiting in tiny_http's queue; one still sending bytes is not;
//!   4. **cap**: beyond `max_connections` open connections, the newest ones
//!      that are not being served are closed, with a 503 for those that
//!      never had a request;
//!   5. **starvation relief**: tiny_http's thread pool queues a new
//!      connection behind an idle thread without reserving it, so in a burst
//!      many connections wait behind a few threads, each of which keeps
//!      serving its own keep-alive client for as long as it lasts. A
//!      connection whose bytes wait unread is *starved*. For each, the
//!      janitor connects to the listener itself and hangs up at once: with
//!      every pool thread busy, tiny_http starts a new thread for that
//!      connection, which ends at once, and the thread goes on with the
//!      first queued connection. It looks again every 20 ms until none
//!      starves. No client's connection is touched.
//!
//! Connections are told apart by peer address: tiny_http holds two
//! descriptors of each socket (its read and write halves).
//!
//! "Bytes handed to tiny_http" are the kernel's count of bytes received
//! (`TCP_INFO`) minus what still waits in the socket (`FIONREAD`). A
//! request's body is only read by a worker while the request is in service,
//! so outside service these bytes are header bytes. A request that is parsed
//! and queued for a worker consumes nothing more, so a queue that waits for
//! a busy pool is not mistaken for a slow client.
//!
//! Invariants: the janitor never touches a socket whose peer has a request
//! in service, nor one that is not ours (its local port is not the
//! listener's, or it has no peer: the listener itself).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fxhash::FxHashMap;

use super::error::ApiError;
use super::sockets;
use crate::log;

/// How often the janitor looks at the connections.
pub const TICK: Duration = Duration::from_millis(200);

/// How often while connections starve (see [`TickReport::starved`]).
const STARVED_TICK: Duration = Duration::from_millis(20);

/// How often with at most [`FEW`] connections open: a pass then costs a few
/// hundred syscalls, and a header flood is stopped four times sooner.
const FEW_TICK: Duration = Duration::from_millis(50);

/// See [`FEW_TICK`].
const FEW: usize = 64;

/// When the janitor looks again after a pass that saw `report`.
pub fn next_tick(report: &TickReport) -> Duration {
    if report.starved > 0 {
        STARVED_TICK
    } else if report.open <= FEW {
        FEW_TICK
    } else {
        TICK
    }
}

/// A connection whose bytes have waited unread this long is starved.
const STARVED_AFTER: Duration = Duration::from_millis(50);

/// Bytes tiny_http may read past a header (its read-ahead buffer).
const READ_AHEAD_SLACK: u64 = 16 * 1024;

/// The limits the janitor enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    /// Worker threads: when all are serving, requests may be queued.
    pub workers: usize,
    pub max_connections: usize,
    pub max_header_size: usize,
}

/// What the workers share with the janitor: who is being served.
pub struct Connections {
    /// Where tiny_http listens, as the janitor connects to it.
    listen: SocketAddr,
    port: u16,
    limits: Limits,
    peers: Mutex<FxHashMap<SocketAddr, Service>>,
    /// Peer address -> descriptor, as last found by [`Connections::ensure_timeouts`].
    known_fds: Mutex<FxHashMap<SocketAddr, i32>>,
    /// What the janitor's passes found, for `/metrics`.
    seen: Seen,
}

/// The janitor's findings, published at the end of every pass: the
/// connections open after it, and running totals of those it closed.
#[derive(Debug, Default)]
struct Seen {
    open: AtomicU64,
    over_cap: AtomicU64,
    header_too_large: AtomicU64,
    slow_header: AtomicU64,
    idle: AtomicU64,
}

/// [`Connections::counts`]: what the janitor last saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Client connections open after the janitor's last pass.
    pub open: u64,
    /// Connections closed since start beyond `max_connections`.
    pub over_cap: u64,
    /// Closed for a header over `max_header_size` (431).
    pub header_too_large: u64,
    /// Closed for a request still incomplete after `idle_timeout`.
    pub slow_header: u64,
    /// Closed after `idle_timeout` without a request.
    pub idle: u64,
}

/// The requests of one peer.
#[derive(Debug, Clone, Copy)]
struct Service {
    /// Requests of this peer in a worker now.
    active: u32,
    /// Requests of this peer dispatched so far.
    dispatched: u64,
    /// Requests of this peer ended so far.
    ended: u64,
    /// When the last one ended.
    last_end: Instant,
}

/// Most peers remembered by `ensure_timeouts`; the map starts over beyond it.
const KNOWN_LIMIT: usize = 16_384;

impl Connections {
    /// `listen` is tiny_http's listening address (an unspecified IP means
    /// loopback here).
    pub fn new(listen: SocketAddr, limits: Limits) -> Connections {
        let mut listen = listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(match listen {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Connections {
            listen,
            port: listen.port(),
            limits,
            peers: Mutex::new(FxHashMap::default()),
            known_fds: Mutex::new(FxHashMap::default()),
            seen: Seen::default(),
        }
    }

    /// What the janitor found at its last pass (zero before the first).
    pub fn counts(&self) -> ConnectionCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.seen;
        ConnectionCounts {
            open: load(&s.open),
            over_cap: load(&s.over_cap),
            header_too_large: load(&s.header_too_large),
            slow_header: load(&s.slow_header),
            idle: load(&s.idle),
        }
    }

    /// Publishes a pass's findings for [`Connections::counts`].
    fn publish(&self, report: &TickReport) {
        let s = &self.seen;
        let closed = report.header_too_large + report.slow_header + report.idle + report.over_cap;
        s.open
            .store(report.open.saturating_sub(closed) as u64, Ordering::Relaxed);
        for (total, n) in [
            (&s.over_cap, report.over_cap),
            (&s.header_too_large, report.header_too_large),
            (&s.slow_header, report.slow_header),
            (&s.idle, report.idle),
        ] {
            total.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Marks a request of `peer` as in service until the visit is dropped.
    pub fn visit(&self, peer: Option<SocketAddr>) -> Visit<'_> {
        self.begin(peer);
        self.resume(peer)
    }

    /// The first half of [`Connections::visit`], for a request that another
    /// thread will answer: in service from now on, until that thread's
    /// [`Connections::resume`] guard is dropped.
    pub fn begin(&self, peer: Option<SocketAddr>) {
        if let (Some(peer), Ok(mut peers)) = (peer, self.peers.lock()) {
            let s = peers.entry(peer).or_insert(Service {
                active: 0,
                dispatched: 0,
                ended: 0,
                last_end: Instant::now(),
            });
            s.active += 1;
            s.dispatched += 1;
        }
    }

    /// The guard of a visit that [`Connections::begin`] started.
    pub fn resume(&self, peer: Option<SocketAddr>) -> Visit<'_> {
        Visit { owner: self, peer }
    }

    /// Sets the timeouts on `peer`'s socket if it has none yet: a `recv`
    /// already blocked when the janitor sets them would keep waiting, so a
    /// worker calls this before it reads a body.
    pub fn ensure_timeouts(&self, peer: SocketAddr) {
        let cached = self
            .known_fds
            .lock()
            .ok()
            .and_then(|k| k.get(&peer).copied());
        if let Some(fd) = cached {
            if sockets::peer_of(fd) == Some(peer) && sockets::has_timeout(fd) {
                return;
            }
        }
        let found = self.fds_of(peer);
        for &fd in &found {
            if !sockets::has_timeout(fd) {
                sockets::set_timeouts(fd, self.limits.idle_timeout);
            }
        }
        if let (Some(&fd), Ok(mut known)) = (found.first(), self.known_fds.lock()) {
            if known.len() >= KNOWN_LIMIT {
                known.clear();
            }
            known.insert(peer, fd);
        }
    }

    /// Shuts the read side of `peer`'s socket: what the client still sends
    /// is dropped, and a read of it returns at once.
    pub fn shut_reads(&self, peer: SocketAddr) {
        for fd in self.fds_of(peer) {
            sockets::shut_reads(fd);
        }
    }

    /// Sends `wire` to `peer` and shuts its connection down both ways.
    pub fn reject_peer(&self, peer: SocketAddr, wire: &[u8]) {
        if let Some(&fd) = self.fds_of(peer).first() {
            sockets::reject(fd, wire);
        }
    }

    /// The descriptors of `peer`'s socket (tiny_http holds two).
    fn fds_of(&self, peer: SocketAddr) -> Vec<i32> {
        sockets::client_fds(self.port)
            .into_iter()
            .filter(|&(_, p)| p == peer)
            .map(|(fd, _)| fd)
            .collect()
    }

    fn service_of(&self, peer: SocketAddr) -> Option<Service> {
        self.peers.lock().ok()?.get(&peer).copied()
    }

    /// Requests in a worker now.
    fn in_service(&self) -> usize {
        self.peers
            .lock()
            .map(|p| p.values().map(|s| s.active as usize).sum())
            .unwrap_or(0)
    }

    /// Forgets the peers that are neither connected nor served.
    fn forget_gone(&self, connected: &FxHashMap<SocketAddr, i32>) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|peer, s| s.active > 0 || connected.contains_key(peer));
        }
    }
}

/// A request in service; ends when dropped.
pub struct Visit<'a> {
    owner: &'a Connections,
    peer: Option<SocketAddr>,
}

impl Drop for Visit<'_> {
    fn drop(&mut self) {
        if let (Some(peer), Ok(mut peers)) = (self.peer, self.owner.peers.lock()) {
            if let Some(s) = peers.get_mut(&peer) {
                s.active = s.active.saturating_sub(1);
                s.ended += 1;
                s.last_end = Instant::now();
            }
        }
    }
}

/// What the janitor remembers of one open connection.
struct Tracked {
    opened: Instant,
    /// The peer's (`dispatched`, `ended`) counts when last looked at.
    seen: (u64, u64),
    /// Bytes handed to tiny_http when a request was last seen beginning,
    /// going on or ending (or when the connection was first seen).
    baseline: u64,
    /// Bytes handed to tiny_http at the previous tick.
    last_consumed: u64,
    /// Already shut down by the janitor; tiny_http has yet to close it.
    rejected: bool,
}

/// Why the janitor closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    HeaderTooLarge,
    /// Bytes still coming, no request yet.
    SlowHeader,
    /// Nothing coming.
    Idle,
}

/// Starts the janitor; it stops when `stop` is dropped or sent to.
pub fn start_janitor(
    conns: std::sync::Arc<Connections>,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("conn-janitor".into())
        .spawn(move || {
            let mut janitor = Janitor::default();
            loop {
                let report = janitor.tick(&conns, Instant::now());
                match stop.recv_timeout(next_tick(&report)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
}

/// The janitor's memory between ticks.
#[derive(Default)]
pub struct Janitor {
    /// By peer address: tiny_http holds two descriptors of each socket (its
    /// read and write halves), so descriptors would count twice.
    tracked: FxHashMap<SocketAddr, Tracked>,
}

/// What one tick did, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub open: usize,
    pub timeouts_set: usize,
    pub header_too_large: usize,
    pub slow_header: usize,
    pub idle: usize,
    pub over_cap: usize,
    /// Connections with a request waiting that no tiny_http thread reads.
    pub starved: usize,
    /// Connections the janitor opened and closed to make tiny_http start a
    /// thread for them.
    pub relieved: usize,
}

/// An open connection that may be closed for the cap or for starvation.
struct Candidate {
    peer: SocketAddr,
    fd: i32,
    opened: Instant,
    never_served: bool,
}

impl Janitor {
    /// One pass over the open connections.
    pub fn tick(&mut self, conns: &Connections, now: Instant) -> TickReport {
        let limits = conns.limits;
        let mut by_peer: FxHashMap<SocketAddr, i32> = FxHashMap::default();
        for (fd, peer) in sockets::client_fds(conns.port) {
            by_peer.entry(peer).or_insert(fd);
        }
        self.tracked.retain(|peer, _| by_peer.contains_key(peer));
        let mut report = TickReport {
            open: by_peer.len(),
            ..TickReport::default()
        };
        // With every worker busy, a complete request may wait in tiny_http's
        // queue: silence is then not a slow client.
        let saturated = conns.in_service() >= limits.workers;
        let mut candidates: Vec<Candidate> = Vec::new();
        for (&peer, &fd) in &by_peer {
            let (received, queued) = sockets::byte_counts(fd).unwrap_or((0, 0));
            let consumed = received.saturating_sub(queued);
            let t = self
                .tracked
                .entry(peer)
                .or_insert_with(|| Tracked::new(now, consumed));
            if t.rejected {
                report.open -= 1;
                continue;
            }
            if !sockets::has_timeout(fd) {
                sockets::set_timeouts(fd, limits.idle_timeout);
                report.timeouts_set += 1;
            }
            // tiny_http's pool may queue a new connection behind a thread
            // that keeps serving another one: bytes wait, nobody reads.
            if consumed == 0 && queued > 0 && now.duration_since(t.opened) >= STARVED_AFTER {
                report.starved += 1;
            }
            let service = conns.service_of(peer);
            let verdict = t.judge(service, consumed, now, &limits, saturated);
            t.rejected = verdict != Verdict::Keep;
            match verdict {
                Verdict::Keep => {
                    if service.is_none_or(|s| s.active == 0) {
                        candidates.push(Candidate {
                            peer,
                            fd,
                            opened: t.opened,
                            never_served: service.is_none(),
                        });
                    }
                }
                Verdict::HeaderTooLarge => {
                    report.header_too_large += 1;
                    let err = ApiError::new(431, "request header too large");
                    sockets::reject(fd, &err.to_wire());
                    log!(
                        "closed {peer}: header over max_header_size ({} bytes)",
                        limits.max_header_size
                    );
                }
                Verdict::SlowHeader => {
                    report.slow_header += 1;
                    sockets::reject(fd, &[]);
                    log!("closed {peer}: request still incomplete after idle_timeout");
                }
                Verdict::Idle => {
                    report.idle += 1;
                    sockets::reject(fd, &[]);
                }
            }
        }

        let open = report.open - report.header_too_large - report.slow_header - report.idle;
        if open > limits.max_connections {
            // Newest first: old connections carry the clients that were
            // here before the surge.
            candidates.sort_by(|a, b| b.opened.cmp(&a.opened).then(b.fd.cmp(&a.fd)));
            let excess = open - limits.max_connections;
            for c in candidates.drain(..excess.min(candidates.len())) {
                report.over_cap += 1;
                let wire = if c.never_served {
                    ApiError::new(
                        503,
                        format!(
                            "too many open connections (max_connections is {}), retry later",
                            limits.max_connections
                        ),
                    )
                    .to_wire()
                } else {
                    Vec::new()
                };
                self.close(c.peer, c.fd, &wire);
            }
            log!(
                "{open} connections open, max_connections is {}: closed {}",
                limits.max_connections,
                report.over_cap
            );
        }

        if report.starved > 0 {
            for _ in 0..report.starved {
                if let Ok(dummy) = TcpStream::connect_timeout(&conns.listen, TICK) {
                    drop(dummy);
                    report.relieved += 1;
                }
            }
            log!(
                "{} connections waited for a tiny_http thread: opened {} to start threads",
                report.starved,
                report.relieved
            );
        }
        conns.forget_gone(&by_peer);
        conns.publish(&report);
        report
    }

    /// Sends `wire` (possibly nothing) and shuts the connection down.
    fn close(&mut self, peer: SocketAddr, fd: i32, wire: &[u8]) {
        sockets::reject(fd, wire);
        if let Some(t) = self.tracked.get_mut(&peer) {
            t.rejected = true;
        }
    }
}

impl Tracked {
    fn new(now: Instant, consumed: u64) -> Tracked {
        Tracked {
            opened: now,
            seen: (0, 0),
            baseline: consumed,
            last_consumed: consumed,
            rejected: false,
        }
    }

    /// Applies the header budget and the idle rule to one connection.
    fn judge(
        &mut self,
        service: Option<Service>,
        consumed: u64,
        now: Instant,
        limits: &Limits,
        saturated: bool,
    ) -> Verdict {
        let previous = std::mem::replace(&mut self.last_consumed, consumed);
        let seen = service.map_or((0, 0), |s| (s.dispatched, s.ended));
        let serving = service.is_some_and(|s| s.active > 0);
        if serving || seen != self.seen {
            // A request began, is going on or ended since the last look:
            // what it read of its body is not header bytes.
            self.seen = seen;
            self.baseline = consumed;
            return Verdict::Keep;
        }
        let header_bytes = consumed.saturating_sub(self.baseline);
        if header_bytes > limits.max_header_size as u64 + READ_AHEAD_SLACK {
            return Verdict::HeaderTooLarge;
        }
        let waiting_since = service.map_or(self.opened, |s| s.last_end.max(self.opened));
        if now.duration_since(waiting_since) <= limits.idle_timeout {
            return Verdict::Keep;
        }
        if consumed > previous {
            // Still sending, yet no request: slow, even if workers are busy
            // (a request queued for a worker receives nothing more).
            Verdict::SlowHeader
        } else if saturated {
            Verdict::Keep
        } else {
            Verdict::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn limits() -> Limits {
        Limits {
            idle_timeout: Duration::from_millis(300),
            workers: 2,
            max_connections: 2,
            max_header_size: 1024,
        }
    }

    /// A listener and the Connections of its port.
    fn setup() -> (TcpListener, Connections) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, Connections::new(addr, limits()))
    }

    /// Reads what the server side sent until EOF (bounded by a timeout).
    fn read_all(client: &mut TcpStream) -> Vec<u8> {
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        out
    }

    #[test]
    fn new_sockets_get_timeouts_and_client_sides_do_not() {
        let (listener, conns) = setup();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        let mut janitor = Janitor::default();
        assert_eq!(janitor.tick(&conns, Instant::now()).timeouts_set, 1);
        assert_eq!(client.read_timeout().unwrap(), None);
        assert_eq!(janitor.tick(&conns, Instant::now()).timeouts_set, 0);
        let t = Instant::now();
        assert!(
            server_side.read(&mut [0u8; 1]).is_err(),
            "read must time out"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn ensure_timeouts_finds_the_socket_of_a_peer() {
        let (listener, conns) = setup();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        conns.ensure_timeouts(peer);
        assert_eq!(
            server_side.read_timeout().unwrap(),
            Some(Duration::from_millis(300))
        );
        conns.ensure_timeouts(peer);
    }

    #[test]
    fn a_header_over_budget_gets_431_but_a_body_in_service_does_not() {
        let (listener, conns) = setup();
        let mut flood = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut flood_server, _) = listener.accept().unwrap();
        let mut upload = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut upload_server, upload_peer) = listener.accept().unwrap();
        let mut janitor = Janitor::default();
        janitor.tick(&conns, Instant::now());

        let visit = conns.visit(Some(upload_peer));
        let big = vec![b'x'; 64 * 1024];
        for (client, server) in [
            (&mut flood, &mut flood_server),
            (&mut upload, &mut upload_server),
        ] {
            client.write_all(&big).unwrap();
            let mut got = vec![0u8; big.len()];
            server.read_exact(&mut got).unwrap();
        }
        let report = janitor.tick(&conns, Instant::now());
        assert_eq!(report.header_too_large, 1, "{report:?}");
        let answer = String::from_utf8_lossy(&read_all(&mut flood)).to_string();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.contains("request header too large"), "{answer}");
        drop(visit);
        // The upload's bytes were a body: its connection stays open, and
        // the next request starts a fresh budget.
        assert_eq!(janitor.tick(&conns, Instant::now()).header_too_large, 0);
        upload.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        upload_server.read_exact(&mut [0u8; 16]).unwrap();
        assert_eq!(janitor.tick(&conns, Instant::now()).header_too_large, 0);
    }

    #[test]
    fn trickling_and_silent_connections_are_closed_after_idle_timeout() {
        let (listener, conns) = setup();
        let mut trickle = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut trickle_server, _) = listener.accept().unwrap();
        let _quiet = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_quiet_server, _) = listener.accept().unwrap();
        let mut janitor = Janitor::default();
        let start = Instant::now();
        janitor.tick(&conns, start);
        let mut buf = [0u8; 1];
        trickle.write_all(b"G").unwrap();
        trickle_server.read_exact(&mut buf).unwrap();
        // Within idle_timeout: kept.
        assert_eq!(janitor.tick(&conns, start).slow_header, 0);
        trickle.write_all(b"E").unwrap();
        trickle_server.read_exact(&mut buf).unwrap();
        let later = start + Duration::from_secs(1);
        let report = janitor.tick(&conns, later);
        assert_eq!((report.slow_header, report.idle), (1, 1), "{report:?}");
        assert!(read_all(&mut trickle).is_empty());
    }

    #[test]
    fn nothing_is_closed_for_idleness_while_every_worker_is_busy() {
        let (listener, conns) = setup();
        let addr = listener.local_addr().unwrap();
        let _waiting = TcpStream::connect(addr).unwrap();
        let (_waiting_server, _) = listener.accept().unwrap();
        let mut janitor = Janitor::default();
        let start = Instant::now();
        janitor.tick(&conns, start);
        let busy: Vec<SocketAddr> = (0..2)
            .map(|i| SocketAddr::from(([10, 0, 0, 1], 1000 + i)))
            .collect();
        let visits: Vec<Visit<'_>> = busy.iter().map(|&p| conns.visit(Some(p))).collect();
        let later = start + Duration::from_secs(1);
        assert_eq!(janitor.tick(&conns, later).idle, 0);
        drop(visits);
        assert_eq!(janitor.tick(&conns, later).idle, 1);
    }

    #[test]
    fn beyond_the_cap_the_newest_idle_connections_get_503() {
        let (listener, conns) = setup();
        let addr = listener.local_addr().unwrap();
        let mut janitor = Janitor::default();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).unwrap());
            servers.push(listener.accept().unwrap());
        }
        let t0 = Instant::now();
        assert_eq!(janitor.tick(&conns, t0).over_cap, 0);
        // One old connection is being served; two new ones arrive.
        let _visit = conns.visit(Some(servers[0].1));
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).unwrap());
            servers.push(listener.accept().unwrap());
        }
        let report = janitor.tick(&conns, t0 + Duration::from_millis(10));
        assert_eq!(report.over_cap, 2, "{report:?}");
        let counts = conns.counts();
        assert_eq!((counts.open, counts.over_cap), (2, 2), "{counts:?}");
        for client in &mut clients[2..] {
            let answer = String::from_utf8_lossy(&read_all(client)).to_string();
            assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
            assert!(answer.contains("max_connections is 2"), "{answer}");
        }
        // The old ones are untouched.
        for client in &mut clients[..2] {
            client
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let err = client.read(&mut [0u8; 1]).unwrap_err();
            assert!(matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ));
        }
    }
}
