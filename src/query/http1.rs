//! A small HTTP/1.1 client for queries to plain `http://` backends.
//!
//! A query is latency-bound: the proxy's CPU per query is what clients wait
//! for once the cores are busy. Through ureq a pooled `SELECT last(v)` took
//! 12 syscalls (two three-syscall liveness probes, a socket timeout before
//! each read and write) and header maps, URI parsing and timing bookkeeping
//! in user space; this client writes a request once, usually reads the
//! answer in one `read`, and peeks once to check a pooled connection. The
//! proxy's CPU per query fell from 94 to 79 µs (`scripts/bench.sh`).
//!
//! Invariants:
//! - A connection goes back to the pool only after its answer's body was
//!   read to its end (by length or the last chunk) and the backend did not
//!   ask to close; anything else drops it.
//! - Every read and write is bounded by the deadline of the request
//!   (`query_timeout` from when it was sent); the socket timeout is moved
//!   only when it is off by more than 1/64 (see `keep_timeout`).
//! - A request on a pooled connection that the backend had closed (nothing
//!   came back) is sent once more on a new connection, as Go's client does.
//!
//! The request comes built ([`BackendRequest`]); this module only writes
//! it. `https://` backends go through ureq (see [`super::forward`], and
//! [`crate::http_client`] for which client carries what).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fxhash::FxHashMap;

use crate::http_client::{BackendRequest, USER_AGENT};
use crate::server::http::Headers;

/// Largest answer header accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;

/// Read buffer of a connection: a small answer arrives in one read.
const READ_BUF: usize = 16 * 1024;

/// Idle connections kept per backend.
const MAX_IDLE: usize = 64;

/// Where a backend is: `host:port` and the path its URL starts with.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub authority: String,
    /// The URL's path without the trailing `/` (usually empty).
    pub prefix: String,
}

impl Origin {
    /// Parses `http://host[:port][/prefix]`; `None` for any other scheme.
    pub fn parse(url: &str) -> Option<Origin> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return None;
        }
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Some(Origin {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

/// One keep-alive connection to a backend.
struct Conn {
    stream: TcpStream,
    /// Grows (to MAX_HEAD) only for an answer head that does not fit.
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Conn {
    fn open(origin: &Origin, deadline: Instant) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in origin.authority.to_socket_addrs()? {
            let left = remaining(deadline)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Conn {
                        stream,
                        buf: vec![0; READ_BUF],
                        pos: 0,
                        end: 0,
                        read_timeout: None,
                        write_timeout: None,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether an idle connection can take a request: nothing to read yet
    /// (end-of-file or stray bytes mean it cannot).
    fn is_reusable(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a live local on a socket this
        // connection owns.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let left = remaining(deadline)?;
        let stream = &self.stream;
        keep_timeout(&mut self.write_timeout, Some(left), |t| {
            stream.set_write_timeout(t)
        })?;
        self.stream.write_all(bytes).map_err(timeout_kind)
    }

    /// Reads more bytes into the buffer (compacting it first); 0 at EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_HEAD {
                return Err(bad("header too large"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let left = remaining(deadline)?;
        let stream = &self.stream;
        keep_timeout(&mut self.read_timeout, Some(left), |t| {
            stream.set_read_timeout(t)
        })?;
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(timeout_kind(e)),
            }
        }
    }

    /// Copies up to `out.len()` buffered or fresh bytes, at most `max`.
    fn read_some(&mut self, out: &mut [u8], max: usize, deadline: Instant) -> io::Result<usize> {
        if self.pos == self.end && self.fill(deadline)? == 0 {
            return Ok(0);
        }
        let n = (self.end - self.pos).min(out.len()).min(max);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Reads one CRLF-terminated line (a chunk size line), without the CRLF.
    fn read_line(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.end - self.pos > 4096 {
                return Err(bad("chunk size line too long"));
            }
            if self.fill(deadline)? == 0 {
                return Err(eof());
            }
        }
    }
}

/// Sets a socket timeout unless the one in place is within 1/64 of `wanted`
/// (a deadline 30 s away moves by less than 0.5 s): a timeout that shrinks
/// with the deadline would otherwise cost a syscall before every read.
fn keep_timeout(
    current: &mut Option<Duration>,
    wanted: Option<Duration>,
    set: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let close_enough = match (*current, wanted) {
        (Some(c), Some(w)) => c.abs_diff(w) <= w / 64,
        (None, None) => true,
        _ => false,
    };
    if !close_enough {
        set(wanted)?;
        *current = wanted;
    }
    Ok(())
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "query_timeout reached",
        ));
    }
    Ok(left)
}

/// A socket timeout reads as `WouldBlock`; callers want `TimedOut`.
fn timeout_kind(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "query_timeout reached")
    } else {
        e
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {what}"))
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the backend closed the connection mid-answer",
    )
}

/// Idle connections of every backend, by backend id.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<FxHashMap<usize, Vec<Conn>>>,
}

impl Pool {
    fn take(&self, backend: usize) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(&backend)?;
        while let Some(conn) = conns.pop() {
            if conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, backend: usize, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(backend).or_default();
        if conns.len() < MAX_IDLE {
            conns.push(conn);
        }
    }
}

/// A backend's answer; its body is read through [`Answer`] as `Read`.
pub struct Answer {
    pub status: u16,
    pub headers: Headers,
    body: Body,
}

/// How the body ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    Length(u64),
    /// Bytes left in the current chunk; `None` before a size line.
    Chunked(Option<u64>),
    UntilClose,
    Done,
}

struct Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    deadline: Instant,
    pool: Arc<Pool>,
    backend: usize,
}

impl Body {
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.pos == conn.end {
                self.pool.put(self.backend, conn);
            }
        }
    }
}

impl Read for Answer {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let b = &mut self.body;
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(conn) = b.conn.as_mut() else {
                return Ok(0);
            };
            match b.framing {
                Framing::Done => return Ok(0),
                Framing::Length(0) => {
                    b.finish();
                    return Ok(0);
                }
                Framing::Length(left) => {
                    let max = usize::try_from(left).unwrap_or(usize::MAX);
                    let n = conn.read_some(out, max, b.deadline)?;
                    if n == 0 {
                        return Err(eof());
                    }
                    b.framing = Framing::Length(left - n as u64);
                    if left == n as u64 {
                        b.finish();
                    }
                    return Ok(n);
                }
                Framing::UntilClose => {
                    let n = conn.read_some(out, usize::MAX, b.deadline)?;
                    if n == 0 {
                        b.conn = None;
                        b.framing = Framing::Done;
                    }
                    return Ok(n);
                }
                Framing::Chunked(None) => {
                    let line = conn.read_line(b.deadline)?;
                    let size = line.split(|&c| c == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                        .ok_or_else(|| bad("chunk size"))?;
                    if size == 0 {
                        // Trailers, then the empty line.
                        loop {
                            if conn.read_line(b.deadline)?.is_empty() {
                                break;
                            }
                        }
                        b.finish();
                        return Ok(0);
                    }
                    b.framing = Framing::Chunked(Some(size));
                }
                Framing::Chunked(Some(0)) => {
                    if !conn.read_line(b.deadline)?.is_empty() {
                        return Err(bad("chunk not followed by CRLF"));
                    }
                    b.framing = Framing::Chunked(None);
                }
                Framing::Chunked(Some(left)) => {
                    let max = usize::try_from(left).unwrap_or(usize::MAX);
                    let n = conn.read_some(out, max, b.deadline)?;
                    if n == 0 {
                        return Err(eof());
                    }
                    b.framing = Framing::Chunked(Some(left - n as u64));
                    return Ok(n);
                }
            }
        }
    }
}

/// Sends `req` to a backend at `origin` (pool key `backend`) and reads the
/// answer's head; the body is read from the returned [`Answer`].
pub fn send(
    pool: &Arc<Pool>,
    backend: usize,
    origin: &Origin,
    req: &BackendRequest,
    timeout: Duration,
) -> io::Result<Answer> {
    let deadline = Instant::now() + timeout;
    let wire = wire_request(origin, req);
    if let Some(mut conn) = pool.take(backend) {
        match exchange(&mut conn, &wire, deadline) {
            Ok(head) => return answer(pool, backend, conn, head, deadline),
            // The backend closed a pooled connection before answering.
            Err(Exchange::Stale(_)) => {}
            Err(Exchange::Failed(e)) => return Err(e),
        }
    }
    let mut conn = Conn::open(origin, deadline)?;
    match exchange(&mut conn, &wire, deadline) {
        Ok(head) => answer(pool, backend, conn, head, deadline),
        Err(Exchange::Stale(e) | Exchange::Failed(e)) => Err(e),
    }
}

/// The request as bytes on the wire: request line, `Host`, `User-Agent`,
/// the request's headers, `Content-Length` of a POST, the body.
fn wire_request(origin: &Origin, req: &BackendRequest) -> Vec<u8> {
    let mut wire = Vec::with_capacity(256 + req.target.len() + req.body.len());
    let method = if req.post { "POST" } else { "GET" };
    let _ = write!(
        wire,
        "{method} {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n",
        origin.prefix, req.target, origin.authority,
    );
    for (name, value) in &req.headers {
        let _ = write!(wire, "{name}: {value}\r\n");
    }
    if req.post {
        let _ = write!(wire, "Content-Length: {}\r\n", req.body.len());
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&req.body);
    wire
}

enum Exchange {
    /// Nothing came back on a reused connection: safe to send again.
    Stale(io::Error),
    Failed(io::Error),
}

/// A parsed answer head: status, headers, and where the body starts.
struct Head {
    status: u16,
    /// HTTP/1.1 (an HTTP/1.0 answer closes unless it says keep-alive).
    http11: bool,
    headers: Headers,
}

fn exchange(conn: &mut Conn, wire: &[u8], deadline: Instant) -> Result<Head, Exchange> {
    let stale = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut => Exchange::Failed(e),
        _ => Exchange::Stale(e),
    };
    conn.write_all(wire, deadline).map_err(stale)?;
    let mut got_any = false;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&conn.buf[conn.pos..conn.end]) {
            Ok(httparse::Status::Complete(len)) => {
                let mut headers = Headers::with_capacity(len);
                for h in parsed.headers.iter() {
                    headers.push(h.name, &String::from_utf8_lossy(h.value));
                }
                let head = Head {
                    status: parsed.code.unwrap_or(0),
                    http11: parsed.version == Some(1),
                    headers,
                };
                conn.pos += len;
                return Ok(head);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(Exchange::Failed(bad(&e.to_string()))),
        }
        match conn.fill(deadline) {
            Ok(0) if !got_any => return Err(Exchange::Stale(eof())),
            Ok(0) => return Err(Exchange::Failed(eof())),
            Ok(_) => got_any = true,
            Err(e) if !got_any => return Err(stale(e)),
            Err(e) => return Err(Exchange::Failed(e)),
        }
    }
}

fn answer(
    pool: &Arc<Pool>,
    backend: usize,
    conn: Conn,
    head: Head,
    deadline: Instant,
) -> io::Result<Answer> {
    let find = |name: &str| head.headers.get(name);
    let chunked =
        find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let connection = find("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => head.http11,
    };
    let framing = if matches!(head.status, 204 | 304) || (100..200).contains(&head.status) {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(None)
    } else if let Some(len) = find("content-length") {
        Framing::Length(len.trim().parse().map_err(|_| bad("Content-Length"))?)
    } else {
        Framing::UntilClose
    };
    let mut answer = Answer {
        status: head.status,
        headers: head.headers,
        body: Body {
            conn: Some(conn),
            framing,
            keep_alive,
            deadline,
            pool: Arc::clone(pool),
            backend,
        },
    };
    if framing == Framing::Length(0) {
        answer.body.finish();
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn origins() {
        let o = Origin::parse("http://127.0.0.1:8086").unwrap();
        assert_eq!(o.authority, "127.0.0.1:8086");
        assert_eq!(o.prefix, "");
        let o = Origin::parse("http://db.example/influx/").unwrap();
        assert_eq!(o.authority, "db.example:80");
        assert_eq!(o.prefix, "/influx");
        let o = Origin::parse("http://[::1]").unwrap();
        assert_eq!(o.authority, "[::1]:80");
        assert_eq!(
            Origin::parse("http://[::1]:9").unwrap().authority,
            "[::1]:9"
        );
        assert!(Origin::parse("https://127.0.0.1:8086").is_none());
        assert!(Origin::parse("http://").is_none());
    }

    #[test]
    fn a_request_is_written_once_with_host_user_agent_its_headers_and_length() {
        let origin = Origin::parse("http://127.0.0.1:8086/influx").unwrap();
        let req = BackendRequest {
            post: true,
            target: "/query".into(),
            headers: vec![
                ("Content-Type", crate::http_client::FORM),
                ("Authorization", "Basic eDp5"),
            ],
            body: b"q=x"[..].into(),
        };
        let want = format!(
            "POST /influx/query HTTP/1.1\r\nHost: 127.0.0.1:8086\r\nUser-Agent: {USER_AGENT}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic eDp5\r\n\
             Content-Length: 3\r\n\r\nq=x"
        );
        assert_eq!(String::from_utf8_lossy(&wire_request(&origin, &req)), want);
    }

    /// A backend that answers each connection's requests with `answers`,
    /// in turn, then closes.
    fn serve(answers: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (mut sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for a in answers {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed early");
                    req.extend_from_slice(&buf[..n]);
                }
                seen.push(req);
                sock.write_all(&a).unwrap();
            }
            seen
        });
        (addr, handle)
    }

    /// `GET /query?q=x`, without credentials.
    fn get_query() -> BackendRequest<'static> {
        BackendRequest {
            post: false,
            target: "/query?q=x".into(),
            headers: Vec::new(),
            body: b""[..].into(),
        }
    }

    fn get(pool: &Arc<Pool>, origin: &Origin) -> io::Result<(u16, Vec<u8>)> {
        let mut a = send(pool, 0, origin, &get_query(), Duration::from_secs(5))?;
        let mut body = Vec::new();
        a.read_to_end(&mut body)?;
        Ok((a.status, body))
    }

    #[test]
    fn length_and_chunked_answers_reuse_one_connection() {
        let (addr, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"
                .to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ]);
        let origin = Origin::parse(&format!("http://{addr}")).unwrap();
        let pool = Arc::new(Pool::default());
        assert_eq!(get(&pool, &origin).unwrap(), (200, b"hello".to_vec()));
        assert_eq!(get(&pool, &origin).unwrap(), (200, b"abcde".to_vec()));
        assert_eq!(get(&pool, &origin).unwrap(), (204, Vec::new()));
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3, "all three on one connection");
        let first = String::from_utf8_lossy(&seen[0]);
        assert!(
            first.starts_with("GET /query?q=x HTTP/1.1\r\nHost: 127.0.0.1:"),
            "{first}"
        );
    }

    #[test]
    fn a_pooled_connection_closed_by_the_backend_is_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // First connection: one answer, then close. Second: one answer.
            for body in ["one", "two"] {
                let (mut sock, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).unwrap();
                let a = format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{body}");
                sock.write_all(a.as_bytes()).unwrap();
            }
        });
        let origin = Origin::parse(&format!("http://{addr}")).unwrap();
        let pool = Arc::new(Pool::default());
        assert_eq!(get(&pool, &origin).unwrap().1, b"one");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(get(&pool, &origin).unwrap().1, b"two");
        server.join().unwrap();
    }

    #[test]
    fn an_http10_answer_without_keep_alive_is_not_pooled() {
        let (addr, server) = serve(vec![
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
        ]);
        let origin = Origin::parse(&format!("http://{addr}")).unwrap();
        let pool = Arc::new(Pool::default());
        assert_eq!(get(&pool, &origin).unwrap(), (200, b"ok".to_vec()));
        server.join().unwrap();
        let kept = pool.idle.lock().unwrap().get(&0).map_or(0, Vec::len);
        assert_eq!(kept, 0, "an HTTP/1.0 connection was kept");
    }

    #[test]
    fn a_truncated_or_garbled_answer_is_an_error() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let wire = wire.to_vec();
            let server = std::thread::spawn(move || {
                let (mut sock, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).unwrap();
                sock.write_all(&wire).unwrap();
            });
            let origin = Origin::parse(&format!("http://{addr}")).unwrap();
            let pool = Arc::new(Pool::default());
            assert!(get(&pool, &origin).is_err());
            server.join().unwrap();
        }
    }

    /// Mutations of well-formed answers (cut, bytes flipped, garbage
    /// spliced in): whatever a broken backend sends, the client answers
    /// with a status and body or an error, never a panic or a hang.
    #[test]
    fn any_answer_bytes_give_a_result_or_an_error() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngSeed, TestRunner};
        let valid: Vec<&[u8]> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n{\"error\":\"x\"}",
            b"HTTP/1.0 204 No Content\r\n\r\n",
        ];
        let answer = (
            proptest::sample::select(valid),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            proptest::option::of(any::<prop::sample::Index>()),
            proptest::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(|(base, flips, cut, junk)| {
                let mut bytes = base.to_vec();
                for (at, b) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                if let Some(at) = cut {
                    bytes.truncate(at.index(bytes.len() + 1));
                }
                bytes.extend_from_slice(&junk);
                bytes
            });
        let mut runner = TestRunner::new(Config {
            cases: 200,
            rng_seed: RngSeed::Fixed(7),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&answer, |wire| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut sock, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf);
                let _ = sock.write_all(&wire);
            });
            let origin = Origin::parse(&format!("http://{addr}")).unwrap();
            let pool = Arc::new(Pool::default());
            let started = Instant::now();
            if let Ok(mut a) = send(&pool, 0, &origin, &get_query(), Duration::from_secs(5)) {
                let mut body = Vec::new();
                let _ = a.read_to_end(&mut body);
            }
            server.join().unwrap();
            prop_assert!(started.elapsed() < Duration::from_secs(4), "hung");
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    #[test]
    fn a_silent_backend_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = Origin::parse(&format!("http://{addr}")).unwrap();
        let pool = Arc::new(Pool::default());
        let req = BackendRequest {
            post: true,
            target: "/query".into(),
            headers: vec![("Content-Type", crate::http_client::FORM)],
            body: b"q=x"[..].into(),
        };
        let started = Instant::now();
        let err = send(&pool, 0, &origin, &req, Duration::from_millis(200))
            .err()
            .expect("no answer must fail");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }
}
