//! The connection discipline (`src/server/connections.rs`) against hostile
//! and slow clients, with the proxy in front of a real influxd: slowloris,
//! the `max_connections` cap, `max_header_size`, keep-alive clients and
//! stalled bodies. The proxy's thread count and RSS are read from
//! `/proc/<pid>/status` while it is under attack.
//!
//! Every loop is bounded by a count and a time; everything is on 127.0.0.1.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const DELIVERY: Duration = Duration::from_secs(15);
const HEADER_TOO_LARGE: &str = "{\"error\":\"request header too large\"}\n";
const T0: i64 = 1_700_000_000_000_000_000;

// ---------------------------------------------------------------------------
// Helpers.

/// One influxd with `db`, and a proxy (one circle, one backend) in front of
/// it, with `extra` keys added to the config.
fn start(db: &str, extra: serde_json::Value) -> (Influxd, Proxy) {
    let d = Influxd::start();
    d.create_db(db);
    let mut config = config_for_urls(&[vec![d.url()]]);
    for (k, v) in extra.as_object().expect("extra config is an object") {
        config[k] = v.clone();
    }
    (d, Proxy::start(config))
}

/// `n` points of `mm`, tag `batch`, distinct timestamps.
fn lines(mm: &str, batch: usize, n: usize) -> String {
    (0..n)
        .map(|j| format!("{mm},batch={batch} v={j}i {}\n", T0 + j as i64))
        .collect()
}

/// Highest thread count and RSS of a process, sampled every 20 ms in the
/// background (at most 2 minutes).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Peak>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    samples: usize,
    threads: u64,
    rss_kib: u64,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut peak = Peak::default();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let (Some(t), Some(r)) = (proc_threads(pid), vm_rss_kib(pid)) {
                    peak.samples += 1;
                    peak.threads = peak.threads.max(t);
                    peak.rss_kib = peak.rss_kib.max(r);
                }
                // The sampling period, not a wait for anything.
                thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        assert!(peak.samples > 0, "no sample of the proxy's /proc status");
        peak
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn threads(proxy: &Proxy) -> u64 {
    proxy
        .pid()
        .and_then(proc_threads)
        .expect("proxy thread count")
}

/// Whether an I/O error means the peer closed or reset the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
    )
}

/// A client connection kept alive over many requests; it reads exactly one
/// response per request, so anything the proxy sends unasked shows up as
/// the answer to the next request.
struct KeepAlive {
    s: TcpStream,
    pending: Vec<u8>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> KeepAlive {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("write timeout");
        KeepAlive {
            s,
            pending: Vec::new(),
        }
    }

    fn write_head(db: &str, len: usize) -> String {
        format!("POST /write?db={db} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n")
    }

    /// `POST /write` on this connection: the answer, or why there is none.
    fn write(&mut self, db: &str, body: &str) -> Result<Resp, String> {
        let mut req = KeepAlive::write_head(db, body.len()).into_bytes();
        req.extend_from_slice(body.as_bytes());
        self.s
            .write_all(&req)
            .map_err(|e| format!("sending the request: {e}"))?;
        self.response(Duration::from_secs(5))
    }

    /// Reads one response (head and `Content-Length` body).
    fn response(&mut self, timeout: Duration) -> Result<Resp, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_raw(&self.pending[..end + 4])
                    .ok_or_else(|| format!("not HTTP: {:?}", self.text()))?;
                let len = head
                    .header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if self.pending.len() >= end + 4 + len {
                    let body = self.pending[end + 4..end + 4 + len].to_vec();
                    self.pending.drain(..end + 4 + len);
                    return Ok(Resp {
                        body: String::from_utf8_lossy(&body).into_owned(),
                        ..head
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no complete answer in {timeout:?}: {:?}",
                    self.text()
                ));
            }
            self.s.set_read_timeout(Some(left)).expect("read timeout");
            match self.s.read(&mut buf) {
                Ok(0) => return Err(format!("closed by the proxy after {:?}", self.text())),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("{e} after {:?}", self.text())),
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// What happened to a flood of request bytes (see [`flood`]).
#[derive(Debug)]
struct Flood {
    /// Bytes the client managed to send.
    sent: u64,
    /// Why the client stopped sending (`None`: it sent everything).
    write_error: Option<io::Error>,
    /// What the proxy answered before closing.
    answer: Vec<u8>,
    /// How the read side ended: `answered` (a whole response came), `eof`,
    /// an error, or `timeout`.
    read_end: String,
    /// From the first byte to the end of the read side.
    took: Duration,
}

impl Flood {
    /// Prints what happened to the flood `what`, then `extra`.
    fn report(&self, what: &str, extra: &str) {
        eprintln!(
            "{what}: sent {:.1} MiB, stopped by {:?}, read side {} after {:?} (answer {:?}); {extra}",
            self.sent as f64 / f64::from(1u32 << 20),
            self.write_error,
            self.read_end,
            self.took,
            String::from_utf8_lossy(&self.answer),
        );
    }
}

/// Sends `head`, then `chunk` `count` times (stopping after `max_time`),
/// then `tail`, from a second thread, while this one reads what the proxy
/// answers until it closes (at most `max_time` + 5 s).
fn flood(
    addr: SocketAddr,
    head: Vec<u8>,
    chunk: Vec<u8>,
    count: usize,
    tail: Vec<u8>,
    max_time: Duration,
) -> Flood {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    let mut w = s.try_clone().expect("clone");
    // A proxy that stops reading without closing shows up as a timeout.
    w.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let start = Instant::now();
    let writer = thread::spawn(move || {
        let mut sent = 0u64;
        w.write_all(&head).map_err(|e| (0, e))?;
        sent += head.len() as u64;
        for _ in 0..count {
            if start.elapsed() > max_time {
                return Ok(sent);
            }
            w.write_all(&chunk).map_err(|e| (sent, e))?;
            sent += chunk.len() as u64;
        }
        w.write_all(&tail).map_err(|e| (sent, e))?;
        Ok(sent + tail.len() as u64)
    });
    let deadline = start + max_time + Duration::from_secs(5);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let read_end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "timeout".to_string();
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => break "eof".to_string(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break e.to_string(),
        }
        if complete(&answer) {
            break "answered".to_string();
        }
    };
    let took = start.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    let (sent, write_error) = match writer.join().expect("flood writer") {
        Ok(sent) => (sent, None),
        Err((sent, e)) => (sent, Some(e)),
    };
    Flood {
        sent,
        write_error,
        answer,
        read_end,
        took,
    }
}

/// Whether `got` holds a whole response (head and `Content-Length` body).
fn complete(got: &[u8]) -> bool {
    parse_raw(got).is_some_and(|r| {
        r.header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| r.body.len() >= n)
    })
}

/// Asserts that a flood ended with a 431, or with the proxy closing the
/// connection (with at most a 431 as answer).
fn assert_cut_off(f: &Flood, what: &str) {
    assert!(
        f.read_end != "timeout",
        "{what}: neither answered nor closed within {:?}: {f:?} ({:?})",
        f.took,
        String::from_utf8_lossy(&f.answer)
    );
    if let Some(e) = &f.write_error {
        assert!(is_closed(e), "{what}: the client's write failed with {e:?}");
    }
    if !f.answer.is_empty() {
        let r = parse_raw(&f.answer).unwrap_or_else(|| {
            panic!(
                "{what}: answer is not HTTP: {:?}",
                String::from_utf8_lossy(&f.answer)
            )
        });
        assert_eq!(r.status, 431, "{what}: {r:?}");
        assert_eq!(r.body, HEADER_TOO_LARGE, "{what}");
    }
}

// ---------------------------------------------------------------------------
// 1. Slowloris.

/// One trickling client's fate.
#[derive(Debug, Clone)]
struct Trickled {
    sent: usize,
    closed_after: Option<Duration>,
    got: Vec<u8>,
}

/// Opens `n` connections that each send one byte of a never-ending request
/// header every `every` (says on `ready` how long opening them took);
/// returns when all were closed by the proxy or after `max_time`.
fn slowloris(
    addr: SocketAddr,
    n: usize,
    every: Duration,
    max_time: Duration,
    ready: std::sync::mpsc::Sender<Duration>,
) -> Vec<Trickled> {
    const PREFIX: &[u8] = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    struct Loris {
        s: TcpStream,
        opened: Instant,
        next_byte: Instant,
        fate: Trickled,
    }
    let start = Instant::now();
    let mut all: Vec<Loris> = (0..n)
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            let now = Instant::now();
            Loris {
                s,
                opened: now,
                next_byte: now,
                fate: Trickled {
                    sent: 0,
                    closed_after: None,
                    got: Vec::new(),
                },
            }
        })
        .collect();
    let _ = ready.send(start.elapsed());
    let mut buf = [0u8; 1024];
    while start.elapsed() < max_time && all.iter().any(|l| l.fate.closed_after.is_none()) {
        for l in all.iter_mut().filter(|l| l.fate.closed_after.is_none()) {
            let now = Instant::now();
            let mut closed = false;
            if now >= l.next_byte {
                let byte = PREFIX.get(l.fate.sent).copied().unwrap_or(b'a');
                match l.s.write(&[byte]) {
                    Ok(1) => {
                        l.fate.sent += 1;
                        l.next_byte += every;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
            }
            match l.s.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(k) => l.fate.got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
            if closed {
                l.fate.closed_after = Some(l.opened.elapsed());
            }
        }
        // The poll period of the non-blocking sockets (each byte is due at
        // its own `next_byte`).
        thread::sleep(Duration::from_millis(20));
    }
    all.into_iter().map(|l| l.fate).collect()
}

#[test]
fn slowloris_is_cut_off_while_normal_writes_flow() {
    let db = "loris";
    let idle = Duration::from_secs(2);
    let (d, mut proxy) = start(db, json!({"idle_timeout": 2}));
    let pid = proxy.pid().expect("proxy pid");
    let base_threads = threads(&proxy);
    let base_rss = vm_rss_kib(pid).expect("proxy RSS");
    let sampler = Sampler::start(pid);
    let addr = proxy.addr();

    const TRICKLERS: usize = 300;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let attack = thread::spawn(move || {
        slowloris(
            addr,
            TRICKLERS,
            Duration::from_millis(500),
            Duration::from_secs(12),
            ready_tx,
        )
    });
    // The normal client starts once they are all connected: during a burst
    // of connections beyond the listen backlog (128), any connect may wait
    // for a SYN retransmit (1 s).
    let opening = ready
        .recv_timeout(Duration::from_secs(15))
        .expect("the trickling connections to open");

    // A normal client writes a batch every 50 ms for 6 s meanwhile.
    let client = agent(Duration::from_secs(5));
    let url = format!("{}/write", proxy.url());
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut batches = 0;
    let mut mid_threads = Vec::new();
    while started.elapsed() < Duration::from_secs(6) && batches < 200 {
        let t = Instant::now();
        let r = try_http_post(
            &client,
            &url,
            &[("db", db)],
            lines("normal", batches, 100).as_bytes(),
        );
        let took = t.elapsed();
        match r {
            Ok(r) if r.status == 204 => {}
            other => panic!("normal write {batches} during the attack: {other:?}"),
        }
        assert!(
            took < Duration::from_secs(1),
            "normal write {batches} during the attack took {took:?}"
        );
        slowest = slowest.max(took);
        batches += 1;
        if batches % 20 == 0 {
            mid_threads.push(threads(&proxy));
        }
        // The normal client's pace (the behaviour under test).
        thread::sleep(Duration::from_millis(50));
    }
    let fates = attack.join().expect("slowloris thread");

    // Every trickling connection was closed by the proxy, idle_timeout
    // after it opened (plus a janitor tick and the client's polling).
    let open: Vec<usize> = (0..TRICKLERS)
        .filter(|&i| fates[i].closed_after.is_none())
        .collect();
    assert!(
        open.is_empty(),
        "{} of {TRICKLERS} trickling connections still open after 12 s (e.g. #{} sent {} bytes)",
        open.len(),
        open[0],
        fates[open[0]].sent
    );
    let latencies: Vec<Duration> = fates.iter().filter_map(|f| f.closed_after).collect();
    let (first, last) = (
        *latencies.iter().min().unwrap(),
        *latencies.iter().max().unwrap(),
    );
    let answered = fates.iter().filter(|f| !f.got.is_empty()).count();
    eprintln!(
        "slowloris: {TRICKLERS} trickling connections opened in {opening:?}, closed \
         {first:?}..{last:?} after opening ({answered} got bytes, e.g. {:?}); {batches} normal writes, slowest {slowest:?}; \
         threads at base {base_threads}, during {mid_threads:?}",
        fates
            .iter()
            .find(|f| !f.got.is_empty())
            .map(|f| String::from_utf8_lossy(&f.got).into_owned())
    );
    assert!(
        first >= idle - Duration::from_millis(100),
        "a trickling connection was closed {first:?} after it opened, before idle_timeout"
    );
    assert!(
        last <= idle + Duration::from_secs(2),
        "a trickling connection was closed only {last:?} after it opened (idle_timeout {idle:?})"
    );
    assert!(batches >= 50, "only {batches} normal writes in 6 s");

    // The threads tiny_http gave them go away once idle (5 s in its pool).
    let t = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the proxy's thread count to come back down",
        || threads(&proxy) <= base_threads + 16,
    );
    let settled = threads(&proxy);
    let peak = sampler.finish();
    eprintln!(
        "slowloris: threads peak {} (base {base_threads}), back to {settled} {:?} after the \
         normal writes ended; RSS peak {} KiB (base {base_rss} KiB)",
        peak.threads,
        t.elapsed(),
        peak.rss_kib
    );
    assert!(
        peak.threads < TRICKLERS as u64 + 64,
        "threads peaked at {}",
        peak.threads
    );
    assert!(
        peak.rss_kib < 150 * 1024,
        "RSS peaked at {} KiB",
        peak.rss_kib
    );

    // Every acknowledged point is in influxd.
    let expected = batches as u64 * 100;
    wait_for_eq(DELIVERY, "the normal writes in influxd", &expected, || {
        d.count_v(db, "normal")
    });
    proxy.assert_running();
}

// ---------------------------------------------------------------------------
// 2. The max_connections cap.

/// An idle client connection and what the proxy did with it.
struct Idle {
    s: TcpStream,
    got: Vec<u8>,
    closed_after: Option<Duration>,
}

/// Polls idle connections (non-blocking), collecting what they receive and
/// when the proxy closes them, until `closed` of them are closed (at most
/// `limit`), then `settle` longer: no more may close meanwhile, which the
/// caller checks.
fn watch(conns: &mut [Idle], since: Instant, closed: usize, limit: Duration, settle: Duration) {
    let mut buf = [0u8; 4096];
    let mut until = Instant::now() + limit;
    let mut settling = false;
    while Instant::now() < until {
        for c in conns.iter_mut().filter(|c| c.closed_after.is_none()) {
            match c.s.read(&mut buf) {
                Ok(0) => c.closed_after = Some(since.elapsed()),
                Ok(n) => c.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => c.closed_after = Some(since.elapsed()),
            }
        }
        if !settling && conns.iter().filter(|c| c.closed_after.is_some()).count() >= closed {
            settling = true;
            until = Instant::now() + settle;
        }
        // The poll period of the non-blocking sockets.
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn connections_beyond_max_connections_get_503_and_are_closed() {
    let db = "cap";
    const CAP: usize = 50;
    const OPENED: usize = 200;
    // idle_timeout is long so that tiny_http does not time out the held
    // connections itself (408) during the test.
    let (d, mut proxy) = start(db, json!({"max_connections": CAP, "idle_timeout": 30}));
    let pid = proxy.pid().expect("proxy pid");
    let base_threads = threads(&proxy);
    let sampler = Sampler::start(pid);
    let addr = proxy.addr();

    // Connect only, send nothing (paced under the listen backlog).
    let mut conns = Vec::new();
    for i in 0..OPENED {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.set_nonblocking(true).expect("nonblocking");
        conns.push(Idle {
            s,
            got: Vec::new(),
            closed_after: None,
        });
        if i % 50 == 49 {
            wait_accepted(addr.port(), Duration::from_secs(10));
        }
    }
    let opened = Instant::now();
    watch(
        &mut conns,
        opened,
        OPENED - CAP,
        Duration::from_secs(10),
        Duration::from_secs(1),
    );

    let closed: Vec<&Idle> = conns.iter().filter(|c| c.closed_after.is_some()).collect();
    let within_1s = closed
        .iter()
        .filter(|c| c.closed_after.unwrap() <= Duration::from_secs(1))
        .count();
    let answered: Vec<Resp> = closed.iter().filter_map(|c| parse_raw(&c.got)).collect();
    let slowest = closed.iter().filter_map(|c| c.closed_after).max();
    eprintln!(
        "cap: {OPENED} idle connections, max_connections {CAP}: {} closed ({within_1s} within 1 s, \
         last after {slowest:?}), {} with an HTTP answer (e.g. {:?})",
        closed.len(),
        answered.len(),
        answered.first()
    );
    for c in &closed {
        if c.got.is_empty() {
            continue;
        }
        let r = parse_raw(&c.got).unwrap_or_else(|| {
            panic!(
                "a closed connection got a non-HTTP answer: {:?}",
                String::from_utf8_lossy(&c.got)
            )
        });
        assert_eq!(r.status, 503, "{r:?}");
        assert!(
            String::from_utf8_lossy(&c.got).starts_with("HTTP/1.1 503 "),
            "{r:?}"
        );
        let v = r.json();
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("max_connections is 50"),
            "503 body {:?}",
            r.body
        );
    }
    assert!(
        within_1s >= OPENED - CAP,
        "only {within_1s} of {OPENED} idle connections were closed within 1 s (max_connections {CAP})"
    );
    assert!(
        answered.len() >= (OPENED - CAP) * 9 / 10,
        "only {} of the closed connections were told 503",
        answered.len()
    );
    // Some clients stay (exactly max_connections: see
    // `connections_up_to_max_connections_are_kept`).
    let held = OPENED - closed.len();
    assert!(
        (1..=CAP).contains(&held),
        "{held} idle connections left open with max_connections {CAP}"
    );

    // The threads of the closed connections go (5 s idle in tiny_http's
    // pool); those of the held ones stay.
    let t = Instant::now();
    wait_until(
        Duration::from_secs(9),
        "the thread count to drop below max_connections + 64",
        || threads(&proxy) < CAP as u64 + 64,
    );
    let settled = threads(&proxy);
    eprintln!(
        "cap: threads base {base_threads}, down to {settled} {:?} after the cap acted",
        t.elapsed()
    );

    // A new client while the cap is full: served, or told 503.
    for i in 0..3 {
        let got = raw_request(
            addr,
            b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        );
        let r = parse_raw(&got);
        eprintln!("cap: /ping {i} while {CAP} are held: {r:?}");
        match r {
            Some(r) if r.status == 204 => {}
            Some(r) if r.status == 503 => {
                assert!(r.body.contains("max_connections is 50"), "{r:?}")
            }
            other => panic!("/ping while the cap is full: {other:?}"),
        }
    }

    // Once they are gone, everyone is served again.
    drop(conns);
    wait_until(
        Duration::from_secs(5),
        "/ping after the idle clients left",
        || ping_ok(&proxy.url()),
    );
    let (status, text) = proxy.write(db, None, &lines("after_cap", 0, 10));
    assert_eq!(status, 204, "write after the idle clients left: {text:?}");
    wait_for_eq(DELIVERY, "the write in influxd", &10, || {
        d.count_v(db, "after_cap")
    });
    let peak = sampler.finish();
    eprintln!(
        "cap: threads peak {}, RSS peak {} KiB",
        peak.threads, peak.rss_kib
    );
    assert!(
        peak.threads < OPENED as u64 + 64,
        "threads peaked at {}",
        peak.threads
    );
    proxy.assert_running();
}

// ---------------------------------------------------------------------------
// 3. Header limits.

/// A `POST /write` whose head holds `headers` (each `Name: value\r\n`).
fn write_with_headers(db: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /write?db={db} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `n` headers of `len` bytes each (with their CRLF).
fn padding_headers(n: usize, len: usize) -> String {
    (0..n)
        .map(|i| {
            let name = format!("X-Pad-{i:04}: ");
            format!("{name}{}\r\n", "p".repeat(len - name.len() - 2))
        })
        .collect()
}

fn assert_431(got: &[u8], what: &str) {
    let text = String::from_utf8_lossy(got);
    assert!(text.starts_with("HTTP/1.1 431 "), "{what}: {text:?}");
    let r = parse_raw(got).unwrap_or_else(|| panic!("{what}: {text:?}"));
    assert_eq!(r.body, HEADER_TOO_LARGE, "{what}: body");
    assert_eq!(
        r.header("x-influxdb-error"),
        Some("request header too large"),
        "{what}"
    );
    assert!(r.is_json(), "{what}: {r:?}");
}

#[test]
fn headers_over_max_header_size_get_431_and_under_it_are_served() {
    let db = "hdr";
    let (d, mut proxy) = start(db, json!({"max_header_size": 16384, "idle_timeout": 2}));
    let addr = proxy.addr();

    // 40 KB of headers at once (400 of 100 bytes), and 20 KB: 431.
    for (case, (what, n)) in [("40 KB of headers", 400), ("20 KB of headers", 200)]
        .into_iter()
        .enumerate()
    {
        for round in 0..3 {
            let req = write_with_headers(db, &padding_headers(n, 100), &lines("refused", 0, 1));
            let t = Instant::now();
            let got = raw_request(addr, &req, Duration::from_secs(5));
            let what = format!("{what} (round {round})");
            assert_431(&got, &what);
            eprintln!("headers: {what}: 431 in {:?}", t.elapsed());
            // And the proxy keeps serving others.
            let (status, text) = proxy.write(db, None, &lines("served", case * 3 + round, 10));
            assert_eq!(status, 204, "{what}: a normal write afterwards: {text:?}");
        }
    }

    // 12 KB of headers is within the limit: served.
    for (what, headers) in [
        (
            "one 12 KB header",
            format!("X-Big: {}\r\n", "b".repeat(12_000)),
        ),
        ("120 headers of 100 bytes", padding_headers(120, 100)),
    ] {
        let req = write_with_headers(
            db,
            &headers,
            &lines(&format!("under_{}", headers.len()), 0, 5),
        );
        let got = raw_request(addr, &req, Duration::from_secs(5));
        assert_eq!(
            raw_status(&got),
            Some(204),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
        wait_for_eq(
            DELIVERY,
            &format!("{what}: the points in influxd"),
            &5,
            || d.count_v(db, &format!("under_{}", headers.len())),
        );
    }
    wait_for_eq(DELIVERY, "the normal writes in influxd", &60, || {
        d.count_v(db, "served")
    });
    assert_eq!(d.count_v(db, "refused"), 0, "a refused request was written");
    proxy.assert_running();
}

#[test]
fn endless_or_countless_header_lines_are_cut_off_in_bounded_memory() {
    let db = "flood";
    let (d, mut proxy) = start(db, json!({"max_header_size": 16384, "idle_timeout": 2}));
    let pid = proxy.pid().expect("proxy pid");
    let base_rss = vm_rss_kib(pid).expect("proxy RSS");
    let addr = proxy.addr();
    const MIB: u64 = 1 << 20;

    // b. One header line that never ends: 64 KiB chunks, up to 200 MiB or 10 s.
    for round in 0..2 {
        let sampler = Sampler::start(pid);
        let f = flood(
            addr,
            format!("POST /write?db={db} HTTP/1.1\r\nHost: x\r\nX-Flood: ").into_bytes(),
            vec![b'a'; 64 << 10],
            3200,
            Vec::new(),
            Duration::from_secs(10),
        );
        let peak = sampler.finish();
        let what = format!("endless header (round {round})");
        f.report(
            &what,
            &format!("RSS peak {} KiB (base {base_rss} KiB)", peak.rss_kib),
        );
        assert_cut_off(&f, &what);
        assert!(
            f.write_error.is_some() && f.sent < 100 * MIB,
            "{what}: the client sent {} bytes without being stopped",
            f.sent
        );
        assert!(
            f.took < Duration::from_secs(3),
            "{what}: closed after {:?}",
            f.took
        );
        assert!(
            peak.rss_kib < 100 * 1024,
            "{what}: RSS peaked at {} KiB",
            peak.rss_kib
        );
        let (status, text) = proxy.write(db, None, &lines("after_flood", round, 10));
        assert_eq!(status, 204, "{what}: a normal write afterwards: {text:?}");
    }

    // c. 100k header lines of `X-a: b`, as fast as possible, then the end of
    // the head and a body: 431 (the connection is not closed after it: see
    // `a_431_from_a_worker_ends_the_connection`).
    for round in 0..2 {
        let sampler = Sampler::start(pid);
        let body = lines("countless", round, 1);
        let f = flood(
            addr,
            format!("POST /write?db={db} HTTP/1.1\r\nHost: x\r\n").into_bytes(),
            b"X-a: b\r\n".repeat(1000),
            100,
            format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
            Duration::from_secs(10),
        );
        let peak = sampler.finish();
        let what = format!("100k header lines (round {round})");
        f.report(&what, &format!("RSS peak {} KiB", peak.rss_kib));
        assert_cut_off(&f, &what);
        assert!(
            f.took < Duration::from_secs(3),
            "{what}: closed after {:?}",
            f.took
        );
        assert!(
            peak.rss_kib < 100 * 1024,
            "{what}: RSS peaked at {} KiB",
            peak.rss_kib
        );
        let (status, text) = proxy.write(db, None, &lines("after_flood", 10 + round, 10));
        assert_eq!(status, 204, "{what}: a normal write afterwards: {text:?}");
    }

    wait_for_eq(DELIVERY, "the normal writes in influxd", &40, || {
        d.count_v(db, "after_flood")
    });
    assert_eq!(
        d.count_v(db, "countless"),
        0,
        "a refused request was written"
    );
    assert!(ping_ok(&proxy.url()));
    proxy.assert_running();
}

// ---------------------------------------------------------------------------
// 4. Keep-alive clients and long requests in service.

#[test]
fn keep_alive_clients_and_slow_uploads_in_service_are_not_cut_off() {
    let db = "ka";
    let idle = Duration::from_secs(2);
    let (d, mut proxy) = start(db, json!({"idle_timeout": 2, "worker_threads": 2}));
    let addr = proxy.addr();

    // 200 writes on one connection over ~5 s: short pauses, and two gaps of
    // 1.2 s (each under idle_timeout).
    let mut ka = KeepAlive::connect(addr);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        let r = ka
            .write(db, &lines("keepalive", i, 20))
            .unwrap_or_else(|e| panic!("keep-alive write {i} ({:?} in): {e}", started.elapsed()));
        assert_eq!(r.status, 204, "keep-alive write {i}: {r:?}");
        slowest = slowest.max(t.elapsed());
        // The client's pace and its two gaps are the behaviour under test.
        if i == 80 || i == 160 {
            thread::sleep(Duration::from_millis(1200));
        } else if i % 10 == 9 {
            thread::sleep(Duration::from_millis(100));
        }
    }
    let lasted = started.elapsed();
    eprintln!("keep-alive: 200 writes on one connection over {lasted:?}, slowest {slowest:?}");
    assert!(
        lasted > idle * 2,
        "the keep-alive run was too short: {lasted:?}"
    );

    // Left idle past idle_timeout, the connection is closed (maybe with a
    // 408 from tiny_http).
    let t = Instant::now();
    let r = ka.response(idle + Duration::from_secs(3));
    let after = t.elapsed();
    eprintln!("keep-alive: idle connection ended after {after:?}: {r:?}");
    match &r {
        Err(e) if e.starts_with("closed by the proxy") => {}
        Ok(r) if r.status == 408 => {
            assert!(
                ka.response(Duration::from_secs(1)).is_err(),
                "open after 408"
            );
        }
        other => panic!("an idle keep-alive connection: {other:?}"),
    }
    assert!(
        after >= idle - Duration::from_millis(300) && after < idle + Duration::from_millis(1500),
        "an idle keep-alive connection was closed after {after:?} (idle_timeout {idle:?})"
    );

    // One upload at a steady pace for ~3 s (longer than idle_timeout): 15
    // chunks, one every 200 ms. It is in service the whole time.
    let body: String = (0..15).map(|c| lines("upload", c, 1000)).collect();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.write_all(KeepAlive::write_head(db, body.len()).as_bytes())
        .expect("head");
    let t = Instant::now();
    for piece in body.as_bytes().chunks(body.len().div_ceil(15)) {
        // The upload's pace (the behaviour under test).
        thread::sleep(Duration::from_millis(200));
        s.write_all(piece).unwrap_or_else(|e| {
            panic!(
                "the slow upload was cut off after {:?}: {e} (answer {:?})",
                t.elapsed(),
                String::from_utf8_lossy(&read_all(&mut s))
            )
        });
    }
    let mut up = KeepAlive {
        s,
        pending: Vec::new(),
    };
    let r = up
        .response(Duration::from_secs(10))
        .expect("the slow upload's answer");
    let took = t.elapsed();
    eprintln!(
        "slow upload: {} bytes over {took:?}: {}",
        body.len(),
        r.status
    );
    assert_eq!(r.status, 204, "slow upload: {r:?}");
    assert!(took > idle, "the upload was not slow: {took:?}");

    wait_for_eq(DELIVERY, "the keep-alive writes in influxd", &4000, || {
        d.count_v(db, "keepalive")
    });
    wait_for_eq(DELIVERY, "the slow upload in influxd", &15_000, || {
        d.count_v(db, "upload")
    });
    proxy.assert_running();
}

/// Reads what is there until EOF (at most 1 s), for failure messages.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut out = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut out);
    out
}

/// The janitor resets a connection's header budget when a request begins,
/// is in service, or ends: body bytes a worker reads after the janitor's
/// last look (here ~900 KB sent at once after a 500 ms pause) are not
/// header bytes, and the idle keep-alive connection must not get an unasked
/// `431 request header too large`.
#[test]
fn a_keep_alive_connection_survives_a_large_body() {
    let db = "kabody";
    let (d, mut proxy) = start(
        db,
        json!({"idle_timeout": 5, "max_header_size": 16384, "worker_threads": 2}),
    );
    let mut ka = KeepAlive::connect(proxy.addr());
    let mut failures = Vec::new();
    for round in 0..3 {
        // A body of ~1 MB: 100 KB, a pause (the janitor sees the request in
        // service), then the rest at once.
        let body = lines("bigbody", round, 25_000);
        let (first, rest) = body.as_bytes().split_at(100_000);
        let mut req = KeepAlive::write_head(db, body.len()).into_bytes();
        req.extend_from_slice(first);
        ka.s.write_all(&req).expect("send head and 100 KB");
        // The pause is the scenario: janitor ticks (200 ms) pass while the
        // request is in service, before the rest of the body comes.
        thread::sleep(Duration::from_millis(500));
        ka.s.write_all(rest).expect("send the rest");
        let r = ka.response(Duration::from_secs(10));
        assert!(
            matches!(&r, Ok(r) if r.status == 204),
            "large body {round}: {r:?}"
        );
        // The connection idles a moment (janitor ticks), then is reused:
        // the idle time is the scenario.
        thread::sleep(Duration::from_millis(600));
        match ka.write(db, &lines("afterbody", round, 10)) {
            Ok(r) if r.status == 204 => {}
            other => {
                failures.push(format!(
                    "round {round}: the next request on the connection: {other:?}"
                ));
                ka = KeepAlive::connect(proxy.addr());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    wait_for_eq(DELIVERY, "the big bodies in influxd", &75_000, || {
        d.count_v(db, "bigbody")
    });
    proxy.assert_running();
}

/// tiny_http's connection thread blocks in `recv` for the next request
/// right after answering one, and a timeout set on the socket afterwards
/// does not apply to that `recv`; the janitor sets `SO_RCVTIMEO` only at
/// its first tick (up to 200 ms after the connection opened). A client
/// that sends one request at once and then stays silent kept its
/// connection, and a tiny_http thread, for ever until the janitor closed
/// idle connections itself (cd9fdea).
#[test]
fn an_idle_connection_is_closed_after_idle_timeout_even_after_a_quick_request() {
    let idle = Duration::from_secs(2);
    let (_d, proxy) = start("quick", json!({"idle_timeout": 2}));
    let mut failures = Vec::new();
    for delay_ms in [0u64, 0, 0, 500] {
        let mut ka = KeepAlive::connect(proxy.addr());
        // How long the client waits before its request is the case.
        thread::sleep(Duration::from_millis(delay_ms));
        ka.s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send /ping");
        let r = ka.response(Duration::from_secs(3));
        assert!(matches!(&r, Ok(r) if r.status == 204), "{r:?}");
        let t = Instant::now();
        let end = ka.response(idle + Duration::from_secs(3));
        let after = t.elapsed();
        eprintln!("first request sent {delay_ms} ms after connecting: idle for {after:?}: {end:?}");
        let closed = match &end {
            Err(e) => e.starts_with("closed by the proxy"),
            Ok(r) => r.status == 408,
        };
        if !closed || after > idle + Duration::from_millis(1500) {
            failures.push(format!(
                "first request {delay_ms} ms after connecting: the idle connection was not \
                 closed within {after:?} (idle_timeout {idle:?}): {end:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// 5. A stalled body.

/// Sends the head of a 1 MB `POST /write` and 10 KB of it, then stops.
fn start_staller(addr: SocketAddr, db: &str) -> TcpStream {
    let body = lines("stalled", 0, 400);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    let mut req = KeepAlive::write_head(db, 1_000_000).into_bytes();
    req.extend_from_slice(&body.as_bytes()[..10_000]);
    s.write_all(&req).expect("send the staller's start");
    s
}

/// Waits (at most `max`) for the proxy to answer or close a stalled
/// connection: (time, status if any).
fn wait_released(s: &mut TcpStream, max: Duration) -> (Duration, Option<u16>) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t.elapsed() < max {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if parse_raw(&got).is_some() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let took = t.elapsed();
    assert!(
        took < max,
        "a stalled body still holds its connection after {took:?}"
    );
    (took, raw_status(&got))
}

/// Writes every 100 ms for `time` on new connections; each must be a 204
/// within `limit`. Returns the slowest.
fn normal_writes(proxy: &Proxy, db: &str, mm: &str, time: Duration, limit: Duration) -> Duration {
    let client = agent(Duration::from_secs(10));
    let url = format!("{}/write", proxy.url());
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut i = 0;
    while t.elapsed() < time && i < 100 {
        let w = Instant::now();
        let r = try_http_post(&client, &url, &[("db", db)], lines(mm, i, 10).as_bytes());
        let took = w.elapsed();
        assert!(
            matches!(&r, Ok(r) if r.status == 204),
            "{mm} write {i}: {r:?}"
        );
        assert!(took < limit, "{mm} write {i} took {took:?}");
        slowest = slowest.max(took);
        i += 1;
        // The normal clients' pace.
        thread::sleep(Duration::from_millis(100));
    }
    slowest
}

#[test]
fn a_stalled_body_frees_its_worker_after_idle_timeout() {
    let db = "stall";
    let idle = Duration::from_secs(2);
    let (d, mut proxy) = start(db, json!({"idle_timeout": 2, "worker_threads": 2}));
    let addr = proxy.addr();

    for round in 0..2 {
        let mut staller = start_staller(addr, db);
        let stalled_at = Instant::now();
        // One worker is held; the other serves everyone meanwhile.
        let slowest = normal_writes(
            &proxy,
            db,
            &format!("during_stall_{round}"),
            Duration::from_millis(1500),
            Duration::from_secs(1),
        );
        let (_, status) = wait_released(&mut staller, Duration::from_secs(8));
        let released = stalled_at.elapsed();
        eprintln!(
            "stall {round}: others served meanwhile (slowest {slowest:?}); the staller was \
             answered {status:?} {released:?} after it stopped"
        );
        assert!(
            released >= idle - Duration::from_millis(300)
                && released < idle + Duration::from_millis(1500),
            "stall {round}: released after {released:?} (idle_timeout {idle:?})"
        );
    }
    // Both stalls freed their worker: two more at once still leave the
    // proxy answering within idle_timeout, and a write right after is quick.
    let mut two = [start_staller(addr, db), start_staller(addr, db)];
    for s in &two {
        wait_read_by_server(
            s,
            Duration::from_secs(10),
            "a stalled body (a worker holds it)",
        );
    }
    let t = Instant::now();
    let (status, text) = proxy.write(db, None, &lines("both_stalled", 0, 10));
    let waited = t.elapsed();
    eprintln!("stall: a write while both workers hold a staller waited {waited:?}");
    assert_eq!(status, 204, "{text:?}");
    assert!(
        waited < idle + Duration::from_millis(1500),
        "a write waited {waited:?} while both workers held a staller"
    );
    for s in &mut two {
        wait_released(s, Duration::from_secs(8));
    }
    normal_writes(
        &proxy,
        db,
        "after_stall",
        Duration::from_millis(500),
        Duration::from_secs(1),
    );

    for (mm, n) in [
        ("during_stall_0", 1),
        ("during_stall_1", 1),
        ("both_stalled", 1),
        ("after_stall", 1),
    ] {
        wait_until(DELIVERY, &format!("{mm} in influxd"), || {
            d.count_v(db, mm) >= n * 10
        });
    }
    assert_eq!(d.count_v(db, "stalled"), 0, "a stalled body was written");
    proxy.assert_running();
}

// ---------------------------------------------------------------------------
// Found by these tests and fixed: each guards its fix.

/// A head over `max_header_size` that ended within the janitor's budget is
/// answered 431 by the worker; tiny_http drops `Connection` headers, so the
/// worker shuts the socket's read side to end the connection.
#[test]
fn a_431_from_a_worker_ends_the_connection() {
    let (_d, proxy) = start(
        "close431",
        json!({"max_header_size": 16384, "idle_timeout": 5}),
    );
    let mut ka = KeepAlive::connect(proxy.addr());
    // Late enough that the janitor has seen the connection: its ticks
    // (200 ms) leave no trace outside the proxy. Should load delay the
    // tick, the janitor answers the 431 itself and closes: the test still
    // holds, it only checks the janitor's path instead of the worker's.
    thread::sleep(Duration::from_millis(500));
    ka.s.write_all(&write_with_headers(
        "close431",
        &padding_headers(200, 100),
        "cpu v=1 1\n",
    ))
    .expect("send 20 KB of headers");
    let r = ka.response(Duration::from_secs(3)).expect("an answer");
    assert_eq!(r.status, 431, "{r:?}");
    let t = Instant::now();
    let end = ka.response(Duration::from_secs(3));
    assert!(
        matches!(&end, Err(e) if e.starts_with("closed by the proxy")),
        "after a 431 (Connection header {:?}) the connection is still open {:?} later: {end:?}",
        r.header("connection"),
        t.elapsed()
    );
}

/// tiny_http holds two descriptors per connection (its read and write
/// halves are `try_clone`s of the socket): the janitor counts connections
/// by peer, so `max_connections` 10 keeps 10 (not 5).
#[test]
fn connections_up_to_max_connections_are_kept() {
    const CAP: usize = 10;
    let (_d, proxy) = start("keep", json!({"max_connections": CAP, "idle_timeout": 30}));
    let mut conns: Vec<Idle> = (0..3 * CAP)
        .map(|_| {
            let s =
                TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(2)).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            Idle {
                s,
                got: Vec::new(),
                closed_after: None,
            }
        })
        .collect();
    watch(
        &mut conns,
        Instant::now(),
        2 * CAP,
        Duration::from_secs(10),
        Duration::from_secs(1),
    );
    let held = conns.iter().filter(|c| c.closed_after.is_none()).count();
    assert_eq!(
        held,
        CAP,
        "{held} of {} idle connections kept with max_connections {CAP}",
        conns.len()
    );
}

/// tiny_http's task pool (`util::TaskPool::spawn`) queues a new connection
/// instead of starting a thread whenever some thread is idle, without
/// reserving that thread: in a burst of connections on a pool with idle
/// threads (a fresh proxy has 4), most of the burst waits behind those few
/// threads, each of which keeps its own keep-alive client. Before the
/// janitor's starvation relief, one to two bursts of 30 out of five had
/// clients unanswered for 2 s (up to 26 of 30). The relief must not close a
/// client's connection either: a write benchmark saw `Peer disconnected`
/// when it closed idle keep-alive connections instead.
#[test]
fn every_client_of_a_burst_of_connections_is_served() {
    const BURST: usize = 30;
    let mut failures = Vec::new();
    for round in 0..5 {
        let mut config = config_for_urls(&[vec![refused_url()]]);
        config["idle_timeout"] = json!(30);
        let proxy = Proxy::start(config);
        let mut conns: Vec<KeepAlive> = (0..BURST)
            .map(|_| KeepAlive::connect(proxy.addr()))
            .collect();
        wait_accepted(proxy.port(), Duration::from_secs(10));
        for c in &mut conns {
            c.s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send /ping");
        }
        let t = Instant::now();
        let mut unanswered = 0;
        for c in &mut conns {
            let left = Duration::from_secs(2).saturating_sub(t.elapsed());
            let r = c.response(left.max(Duration::from_millis(1)));
            if !matches!(r, Ok(r) if r.status == 204) {
                unanswered += 1;
            }
        }
        eprintln!("burst {round}: {unanswered} of {BURST} clients got no answer within 2 s");
        if unanswered > 0 {
            failures.push(format!(
                "burst {round}: {unanswered} of {BURST} clients got no answer within 2 s"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The idle rule waits while every worker is busy (a whole request may then
/// be queued in tiny_http), but a connection still sending bytes without a
/// request is cut even then: a client keeping `worker_threads` + 1 stalled
/// bodies going must not shield trickling connections (before the fix, 100
/// of 100 were still open after 8 s with idle_timeout 2 s).
#[test]
fn slow_headers_are_cut_off_even_while_stalled_bodies_hold_every_worker() {
    let db = "stallers";
    let idle = Duration::from_secs(2);
    let (_d, proxy) = start(db, json!({"idle_timeout": 2, "worker_threads": 2}));
    let addr = proxy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let (in_workers, stalled) = std::sync::mpsc::channel();
    // worker_threads + 1 stalled bodies, each replaced as soon as released.
    let stallers = thread::spawn(move || {
        let mut held: Vec<TcpStream> = (0..3).map(|_| start_staller(addr, db)).collect();
        // Both workers hold a stalled body when two were read.
        wait_until(
            Duration::from_secs(10),
            "two stalled bodies in the workers",
            || {
                held.iter()
                    .filter(|s| unread_by_server(s) == Some(0))
                    .count()
                    >= 2
            },
        );
        let _ = in_workers.send(());
        let mut renewed = 0;
        let t = Instant::now();
        let mut buf = [0u8; 4096];
        while !stop2.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(15) {
            for s in held.iter_mut() {
                s.set_nonblocking(true).expect("nonblocking");
                let released =
                    !matches!(s.read(&mut buf), Err(ref e) if e.kind() == ErrorKind::WouldBlock);
                if released {
                    *s = start_staller(addr, db);
                    renewed += 1;
                }
            }
            // The poll period of the stallers' sockets.
            thread::sleep(Duration::from_millis(5));
        }
        renewed
    });
    stalled
        .recv_timeout(Duration::from_secs(15))
        .expect("the stalled bodies to hold both workers");
    let (ready, _) = std::sync::mpsc::channel();
    let fates = slowloris(
        addr,
        100,
        Duration::from_millis(500),
        Duration::from_secs(8),
        ready,
    );
    stop.store(true, Ordering::Relaxed);
    let renewed = stallers.join().expect("staller thread");
    let open = fates.iter().filter(|f| f.closed_after.is_none()).count();
    let last = fates.iter().filter_map(|f| f.closed_after).max();
    eprintln!(
        "stalled workers: {renewed} stalls replaced; trickling connections still open after 8 s: \
         {open} of 100 (last closed after {last:?}); threads {}",
        threads(&proxy)
    );
    assert_eq!(
        open, 0,
        "trickling connections never closed while stalls go on"
    );
    assert!(
        last.is_some_and(|l| l <= idle + Duration::from_secs(2)),
        "a trickling connection was closed only {last:?} after it opened"
    );
}
