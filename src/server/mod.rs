//! The HTTP front: the tiny_http listener, a fixed pool of worker threads,
//! and the [`query_pool`] for requests that wait on backends.
//!
//! Every worker loops on `Server::recv`. A query it hands to the query pool
//! unless another worker is left free (see [`query_pool`]); anything else,
//! and such a query, it turns into a [`http::Request`], lets
//! [`router::route`] answer, and sends the [`http::Response`] back with the
//! common `X-Influxdb-*` headers (`serve`, which the query pool's threads
//! run too). This is the only module that knows tiny_http. A panic inside a
//! handler is caught and answered with a 500, so no request can take a
//! thread down.

pub mod auth;
pub mod connections;
pub mod error;
pub mod http;
pub mod query_pool;
pub mod router;
pub mod sockets;
pub mod tls;

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::log;
use crate::query::endpoint::QueryService;
use crate::transfer::Transfers;
use crate::url::Params;
use crate::write::endpoint::{WriteScratch, WriteService};
use crate::VERSION;
use auth::Auth;
use error::ApiError;
use query_pool::QueryPool;

/// What every worker shares.
pub struct State {
    pub cluster: Arc<Cluster>,
    pub write: WriteService,
    pub query: QueryService,
    /// Rebalance, recovery, resync and cleanup ([`crate::transfer`]).
    pub transfer: Arc<Transfers>,
    pub auth: Option<Auth>,
    pub ping_auth: bool,
    /// Who is being served; puts timeouts on a socket before a body read.
    pub conns: Arc<connections::Connections>,
    /// With `https_enabled`: the TLS relay's connections, the only peers
    /// served (see [`tls`]).
    pub relays: Option<Arc<tls::Relays>>,
    /// Requests by endpoint and status, and their latency (`/metrics`).
    pub requests: crate::metrics::Requests,
}

/// Where tiny_http listens, as [`bind`] set it up.
pub struct Listen {
    pub addr: SocketAddr,
    /// With `https_enabled`: the relay connections of the TLS front.
    pub relays: Option<Arc<tls::Relays>>,
}

impl State {
    /// `listen`: where tiny_http listens.
    pub fn new(
        cfg: &Config,
        cluster: Arc<Cluster>,
        write: WriteService,
        transfer: Arc<Transfers>,
        listen: Listen,
    ) -> State {
        State {
            transfer,
            auth: Auth::new(&cfg.username, &cfg.password, cfg.auth_encrypt),
            ping_auth: cfg.ping_auth_enabled,
            query: QueryService::new(cfg, Arc::clone(&cluster)),
            cluster,
            write,
            relays: listen.relays,
            requests: crate::metrics::Requests::new(),
            conns: Arc::new(connections::Connections::new(
                listen.addr,
                connections::Limits {
                    idle_timeout: cfg.idle_timeout,
                    workers: cfg.worker_threads,
                    max_connections: cfg.max_connections,
                    max_header_size: cfg.max_header_size,
                },
            )),
        }
    }
}

/// Binds the listener; errors say what to change. Returns the server and
/// where tiny_http listens: the public address, or with `https_enabled` a
/// loopback port behind the TLS front (see [`tls`]), served to the relay's
/// connections only.
pub fn bind(cfg: &Config) -> Result<(Arc<tiny_http::Server>, Listen), String> {
    let addr = cfg.bind_addr();
    let hint = "change `listen_addr` in the config or stop what uses the port";
    let tls_config = if cfg.https_enabled {
        Some(tls::server_config(cfg)?)
    } else {
        None
    };
    let public = std::net::TcpListener::bind(&addr)
        .map_err(|e| format!("cannot listen on {addr}: {e} ({hint})"))?;
    let mut relays = None;
    let listener = match tls_config {
        None => public,
        Some(config) => {
            sockets::set_backlog(std::os::fd::AsRawFd::as_raw_fd(&public), LISTEN_BACKLOG);
            let inner = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr().map(|a| (l, a)));
            let (inner, inner_addr) =
                inner.map_err(|e| format!("cannot listen on a loopback port for https: {e}"))?;
            let registered = Arc::new(tls::Relays::default());
            relays = Some(Arc::clone(&registered));
            tls::start(
                public,
                inner_addr,
                registered,
                config,
                cfg.max_connections,
                cfg.idle_timeout,
            )
            .map_err(|e| format!("cannot start the https front: {e}"))?;
            inner
        }
    };
    // Accepted sockets inherit TCP_NODELAY: tiny_http writes a response in
    // pieces, and Nagle's algorithm would hold the last one for an ACK.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    sockets::set_nodelay(fd);
    sockets::set_backlog(fd, LISTEN_BACKLOG);
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| format!("cannot listen on {addr}: {e} ({hint})"))?;
    let listen = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("cannot listen on {addr}: not an IP address ({hint})"))?;
    Ok((
        Arc::new(server),
        Listen {
            addr: listen,
            relays,
        },
    ))
}

/// The threads that answer requests: see [`start_workers`].
pub struct Workers {
    workers: Vec<JoinHandle<()>>,
    queries: Arc<QueryPool>,
}

impl Workers {
    /// Lets the workers go (no request is taken any more), waits for them,
    /// then for the queries in flight or queued.
    pub fn stop(self, server: &tiny_http::Server) {
        for _ in 0..self.workers.len() {
            server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        match Arc::try_unwrap(self.queries) {
            Ok(pool) => pool.stop(),
            Err(_) => log!("the query pool is still referenced at shutdown"),
        }
    }
}

/// Starts `n` workers taking requests from `server`, with a query pool of
/// at most `query_threads` threads.
pub fn start_workers(
    server: &Arc<tiny_http::Server>,
    state: &Arc<State>,
    n: usize,
    query_threads: usize,
) -> std::io::Result<Workers> {
    let queries = Arc::new(QueryPool::new(Arc::clone(state), query_threads, n));
    let workers = (0..n)
        .map(|i| {
            let (server, state, queries) =
                (Arc::clone(server), Arc::clone(state), Arc::clone(&queries));
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(&server, &state, &queries))
        })
        .collect::<std::io::Result<_>>()?;
    Ok(Workers { workers, queries })
}

fn worker(server: &tiny_http::Server, state: &State, queries: &QueryPool) {
    let mut scratch = WriteScratch::new(Arc::clone(&state.cluster));
    loop {
        let rq = match server.recv() {
            Ok(rq) => rq,
            // `unblock` at shutdown, or the listener is gone.
            Err(_) => return,
        };
        if let Some(relays) = &state.relays {
            if !rq.remote_addr().is_some_and(|&peer| relays.admits(peer)) {
                refuse_outsider(state, rq);
                continue;
            }
        }
        if let (Some(n), Some(&peer)) = (rq.body_length(), rq.remote_addr()) {
            if n as u64 > crate::alloc::LAZY_LIMIT && n <= isize::MAX as usize {
                refuse_unmappable_body(state, rq, peer, n);
                continue;
            }
        }
        let peer = rq.remote_addr().copied();
        state.conns.begin(peer);
        if QueryPool::takes(rq.url()) {
            if let Some(_leave) = queries.wait_here() {
                serve(state, &mut scratch, rq, state.conns.resume(peer));
            } else if let Some((rq, peer)) = queries.submit(rq, peer) {
                // No query thread could be started: answered here.
                serve(state, &mut scratch, rq, state.conns.resume(peer));
            }
        } else {
            serve(state, &mut scratch, rq, state.conns.resume(peer));
        }
    }
}

/// Answers `rq`, whose visit is `visit`, and sends the answer.
fn serve(
    state: &State,
    scratch: &mut WriteScratch,
    mut rq: tiny_http::Request,
    visit: connections::Visit<'_>,
) {
    let mut body_read = 0u64;
    let response = match catch_unwind(AssertUnwindSafe(|| {
        answer(state, scratch, &mut rq, &mut body_read)
    })) {
        Ok(r) => r,
        Err(_) => {
            log!(
                "a handler panicked on {} {}",
                rq.method(),
                path_of(rq.url())
            );
            // The scratch buffers may hold a half-routed request.
            *scratch = WriteScratch::new(Arc::clone(&state.cluster));
            ApiError::new(500, "internal error").into_response(false)
        }
    };
    // tiny_http drops a `Connection: close` header, so a connection
    // that must end gets its read side shut: the client sees the answer,
    // then the end of the connection. That is the case after a 431 (the
    // rest of the request cannot be trusted) and when more than
    // DRAIN_LIMIT bytes of body were left unread, which tiny_http would
    // otherwise read (and buffer) after the answer.
    let unread = rq
        .body_length()
        .map_or(0, |n| (n as u64).saturating_sub(body_read));
    if response.status == 431 || unread > DRAIN_LIMIT {
        if let Some(peer) = rq.remote_addr() {
            state.conns.shut_reads(*peer);
        }
    }
    let response = to_tiny(response);
    // tiny_http discards an unread body when the request is dropped,
    // with a buffer as large as what is left (see `crate::alloc`); a
    // length no buffer can have panics there, not in our code.
    if catch_unwind(AssertUnwindSafe(move || rq.respond(response))).is_err() {
        log!("tiny_http failed to discard an unread request body ({unread} bytes)");
    }
    drop(visit);
}

/// Answers a request whose `Content-Length` is too large for tiny_http to
/// survive: dropping the request would make tiny_http allocate a buffer of
/// that size (tiny-http issue #252), more than the address space holds, and
/// the process would abort. The answer (413) is written to the socket
/// directly, the connection is shut down, and the request is deliberately
/// leaked with its tiny_http connection thread (a few KiB each).
fn refuse_unmappable_body(state: &State, rq: tiny_http::Request, peer: SocketAddr, n: usize) {
    let err = ApiError::new(
        413,
        format!("Content-Length {n} is beyond any body this proxy accepts"),
    );
    state.conns.reject_peer(peer, &err.to_wire());
    log!("refused {peer}: Content-Length {n}; its connection thread is left parked");
    std::mem::forget(rq);
}

/// Refuses a request that reached the loopback port behind the TLS front
/// from anyone but the relay: its connection is shut down both ways first,
/// so the 500 tiny_http writes for a request dropped unanswered goes nowhere.
/// A body too large for tiny_http's drain is left parked, as in
/// [`refuse_unmappable_body`].
fn refuse_outsider(state: &State, rq: tiny_http::Request) {
    let Some(&peer) = rq.remote_addr() else {
        // Not a TCP peer: nothing to shut down, so nothing may be written.
        std::mem::forget(rq);
        return;
    };
    state.conns.reject_peer(peer, b"");
    match rq.body_length() {
        Some(n) if n as u64 > crate::alloc::LAZY_LIMIT => std::mem::forget(rq),
        _ => drop(rq),
    }
}

/// Connections the kernel queues before tiny_http accepts them (std's
/// default is 128: a burst of clients would wait for SYN retries).
const LISTEN_BACKLOG: i32 = 1024;

/// Unread body bytes tiny_http may drain to keep a connection alive.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// A URL without its query string (which may hold `u` and `p`).
fn path_of(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

fn answer(
    state: &State,
    scratch: &mut WriteScratch,
    rq: &mut tiny_http::Request,
    body_read: &mut u64,
) -> http::Response {
    let limit = state.conns.limits().max_header_size;
    let size = header_size(rq);
    if size > limit {
        // The janitor stops an endless header; one that ended in time but
        // is still too large is refused here.
        return ApiError::new(431, "request header too large").into_response(false);
    }
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut headers = http::Headers::with_capacity(size);
    for h in rq.headers() {
        headers.push(h.field.as_str().as_str(), h.value.as_str());
    }
    let method = rq.method().as_str().to_ascii_uppercase();
    // A body is coming (small ones were read by tiny_http already): make
    // sure a stalled client cannot hold this worker past idle_timeout.
    let may_have_body = !matches!(method.as_str(), "GET" | "HEAD");
    if may_have_body && rq.body_length().is_none_or(|n| n > 1024) {
        if let Some(peer) = rq.remote_addr() {
            state.conns.ensure_timeouts(*peer);
        }
    }
    let content_length = rq.body_length();
    let mut body = Counted {
        inner: rq.as_reader(),
        count: body_read,
    };
    let mut req = http::Request {
        method,
        path: path.to_string(),
        params: Params::parse(query),
        headers,
        content_length,
        body: &mut body,
    };
    router::route(state, scratch, &mut req)
}

/// A body reader that counts what was read.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    count: &'a mut u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
}

/// Bytes of the request line and headers, as sent (give or take spaces).
fn header_size(rq: &tiny_http::Request) -> usize {
    let line = rq.method().as_str().len() + rq.url().len() + 12;
    rq.headers().iter().fold(line, |n, h| {
        n + h.field.as_str().as_str().len() + h.value.as_str().len() + 4
    })
}

fn to_tiny(resp: http::Response) -> tiny_http::Response<Box<dyn Read + Send>> {
    let (reader, length): (Box<dyn Read + Send>, Option<usize>) = match resp.stream {
        Some(stream) => (stream, None),
        None => {
            let n = resp.body.len();
            (Box::new(Cursor::new(resp.body)), Some(n))
        }
    };
    let mut out = tiny_http::Response::new(
        tiny_http::StatusCode(resp.status),
        Vec::new(),
        reader,
        length,
        None,
    );
    let common = [
        ("X-Influxdb-Version", VERSION),
        ("X-Influxdb-Build", "InfluxDB Proxy"),
    ];
    // Headers the handler sets (a backend's, on a passthrough query) win.
    let own = |name: &str| {
        resp.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let all = common
        .iter()
        .filter(|(k, _)| !own(k))
        .map(|&(k, v)| (k, v))
        .chain(resp.headers.iter().map(|&(k, ref v)| (k, v.as_str())));
    for (k, v) in all {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
    out
}
