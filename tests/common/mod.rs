//! Integration-test harness: real `influxd` processes, the proxy binary, small
//! fake backends for fault injection, and bounded polling helpers.
//!
//! Everything listens on 127.0.0.1 on ports picked at run time, lives in its own
//! temporary directory, and is stopped and removed on `Drop` (also when a test
//! panics). Child processes additionally get `PR_SET_PDEATHSIG = SIGKILL`, so a
//! test binary that dies abruptly does not leave an `influxd` behind. Because
//! that signal fires when the *thread* that spawned the child exits, children
//! are always spawned from the test's own thread, never from a helper thread.
//!
//! Tests synchronise on conditions, never on a fixed sleep: [`wait_until`]
//! and its kin poll with a deadline; [`holds_for`] watches for something
//! that must not happen during a window; the kernel's view of a socket
//! ([`unaccepted`], [`unread_by_server`]) and a process's threads
//! ([`threads_named`]) tell
//! what a server did with a connection. A sleep left in a test is the
//! behaviour under test (a client's pace, an idle gap) and says so.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub mod haproxy;
pub mod prometheus;
/// Helpers for the `/query` tests (data set, query cases, comparison).
pub mod query;
pub mod transfer;

// ---------------------------------------------------------------------------
// Small OS helpers (no libc crate: these symbols are in the C library std links).

mod sys {
    extern "C" {
        pub fn kill(pid: i32, sig: i32) -> i32;
        pub fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
        pub fn getppid() -> i32;
    }
    pub const SIGTERM: i32 = 15;
    pub const SIGKILL: i32 = 9;
    pub const PR_SET_PDEATHSIG: i32 = 1;
}

/// Makes the child die with the test process (see the module comment).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            sys::prctl(sys::PR_SET_PDEATHSIG, sys::SIGKILL as u64, 0, 0, 0);
            if sys::getppid() != parent {
                return Err(io::Error::other("test process already gone"));
            }
            Ok(())
        });
    }
}

/// Starts `cmd` (stdin closed, stdout and stderr appended to `log`) as a
/// child that dies with the test; `what` names it in the panic message
/// when it cannot be run.
pub fn spawn_logged(mut cmd: Command, log: &Path, what: &str) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log handle"))
        .stderr(file);
    die_with_parent(&mut cmd);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// Waits up to `timeout` for a server just spawned as `child` until `ready`
/// holds; the error names it (`what`) with the tail of its `log`. A child
/// that exited is reaped and cleared.
pub fn wait_started(
    child: &mut Option<Child>,
    what: &str,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                *child = None;
                return Err(format!(
                    "{what} exited with {status}; log tail:\n{}",
                    file_tail(log, 20)
                ));
            }
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{what} not ready within {timeout:?}; log tail:\n{}",
                file_tail(log, 20)
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `timeout` for `child` to exit; kills and reaps it after
/// that (`None`).
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then up to `grace` for the process to exit, then SIGKILL; reaps
/// it. Its exit status, or `None` if it had to be SIGKILLed.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        sys::kill(child.id() as i32, sys::SIGTERM);
    }
    wait_child(child, grace)
}

// ---------------------------------------------------------------------------
// Time, polling, temporary directories, ports.

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos() as i64
}

/// How often the polling helpers below look again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `cond` every 50 ms until it is true; panics after `timeout` saying
/// what was awaited and how long. Returns the time it took.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:?} (limit {timeout:?}) waiting for: {what}",
                start.elapsed()
            );
        }
        thread::sleep(POLL);
    }
}

/// Checks `cond` every 50 ms for `window`, for something that must NOT
/// happen (a late write, a backend turning active): the window is the
/// behaviour under test. Panics at the first look where it fails, saying
/// when.
pub fn holds_for(window: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if !cond() {
            panic!(
                "{what}: no longer true {:?} into a {window:?} window",
                start.elapsed()
            );
        }
        if start.elapsed() >= window {
            return;
        }
        thread::sleep(POLL);
    }
}

/// Polls `f` every 50 ms until it returns `Some`; panics after `timeout`.
pub fn poll_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(POLL);
    }
}

/// Calls `f` every 50 ms until it gives `Ok`; after `timeout`, its last
/// answer (the `Err` saying what was wrong at the end).
pub fn retry_for<T, E>(timeout: Duration, mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let start = Instant::now();
    loop {
        let got = f();
        if got.is_ok() || start.elapsed() >= timeout {
            return got;
        }
        thread::sleep(POLL);
    }
}

/// Polls `f` every 50 ms until it equals `expected`; on timeout panics showing
/// the expected value and the last value seen. Returns the time it took.
pub fn wait_for_eq<T: PartialEq + Debug>(
    timeout: Duration,
    what: &str,
    expected: &T,
    mut f: impl FnMut() -> T,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = f();
        if &got == expected {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n expected: {expected:#?}\n      got: {got:#?}"
            );
        }
        thread::sleep(POLL);
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SWEEP: OnceLock<()> = OnceLock::new();
        SWEEP.get_or_init(sweep_dead_runs);
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "influx-proxy-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes temp dirs left by test processes that were killed (`kill -9`
/// skips `Drop`): `influx-proxy-test-<tag>-<pid>-...` whose pid is gone.
fn sweep_dead_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("influx-proxy-test-") else {
            continue;
        };
        let Some(pid) = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port nothing listens on right now (bind :0, read, drop). Ports
/// already handed out by this process are never handed out again.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 100 tries");
}

/// The tail (last `lines` lines) of a text file, for failure messages.
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// HTTP client helpers.

/// An HTTP response, headers with lower-case names.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    /// Whether `Content-Type` says JSON.
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status, self.body
            )
        })
    }
}

/// A ureq agent that reports HTTP errors as responses, uses no proxy and
/// gives up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .max_idle_connections(0)
        .build()
        .into()
}

fn default_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| agent(Duration::from_secs(15)))
}

fn into_resp(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Resp {
    r.map_err(|e| format!("request failed: {e}"))
        .and_then(read_resp)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Status, lower-case headers and body of an answer.
fn read_resp(resp: ureq::http::Response<ureq::Body>) -> Result<Resp, String> {
    let (status, headers, body) = read_answer(resp)?;
    Ok(Resp {
        status,
        headers: headers.into_iter().collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An answer read whole: status, lower-case headers (in order), body bytes.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Status, lower-case headers (in order) and the body as bytes.
pub fn read_answer(resp: ureq::http::Response<ureq::Body>) -> Result<Answer, String> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    resp.into_body()
        .into_reader()
        .read_to_end(&mut body)
        .map_err(|e| format!("reading body failed: {e}"))?;
    Ok((status, headers, body))
}

/// `GET` or `POST` through `agent`, with query parameters, headers and (for
/// `POST`) a body. An answer of any status is `Ok`; a transport or TLS
/// failure is `Err`.
pub fn http_send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let result = match method {
        "GET" => {
            let mut rb = agent.get(url);
            for (k, v) in params {
                rb = rb.query(*k, *v);
            }
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            rb.call()
        }
        "POST" => {
            let mut rb = agent.post(url);
            for (k, v) in params {
                rb = rb.query(*k, *v);
            }
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            rb.send(body)
        }
        other => return Err(format!("unsupported method {other}")),
    };
    read_resp(result.map_err(|e| e.to_string())?)
}

/// `GET url` with query parameters.
pub fn http_get(url: &str, params: &[(&str, &str)]) -> Resp {
    let mut req = default_agent().get(url);
    for (k, v) in params {
        req = req.query(*k, *v);
    }
    into_resp(req.call(), &format!("GET {url}"))
}

/// `POST url` with query parameters, extra headers and a body.
pub fn http_post(
    url: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = default_agent().post(url);
    for (k, v) in params {
        req = req.query(*k, *v);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    into_resp(req.send(body), &format!("POST {url}"))
}

/// Whether `GET url/ping` answers 204 within a short timeout. A readiness
/// probe: an `https://` server's certificate is not checked.
pub fn ping_ok(base_url: &str) -> bool {
    static PING: OnceLock<ureq::Agent> = OnceLock::new();
    let agent = PING.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .max_idle_connections(0)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .build()
            .into()
    });
    matches!(agent.get(&format!("{base_url}/ping")).call(), Ok(r) if r.status().as_u16() == 204)
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// Sends raw bytes on a fresh connection and returns what came back: the
/// response head and `Content-Length` body, or everything until EOF, or what
/// arrived before `timeout`. Connection errors give an empty result.
pub fn raw_request(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return Vec::new();
    };
    let _ = stream.set_write_timeout(Some(timeout));
    let deadline = Instant::now() + timeout;
    if stream.write_all(request).is_err() {
        // The server may answer (e.g. 413/431) before reading everything.
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if response_complete(&got) {
            break;
        }
    }
    got
}

fn response_complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let status_204_or_304 = head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(n) => got.len() >= end + 4 + n,
        None => status_204_or_304,
    }
}

/// Parses a raw HTTP/1.x response (head and whatever body came with it).
pub fn parse_raw(response: &[u8]) -> Option<Resp> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = raw_status(lines.next()?.as_bytes())?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&response[end + 4..]).into_owned(),
    })
}

/// The status code of a raw HTTP response, if it has one.
pub fn raw_status(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    let mut parts = text.split_whitespace();
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Asserts an InfluxDB-style error answer: `status`, the body
/// `{"error":"<message>"}` and a newline, a JSON `Content-Type`, and the
/// message again in `X-Influxdb-Error`.
pub fn assert_error(r: &Resp, what: &str, status: u16, message: &str) {
    assert_eq!(r.status, status, "{what}: status (body {:?})", r.body);
    assert_eq!(
        r.body,
        format!("{}\n", json!({ "error": message })),
        "{what}: body"
    );
    assert!(
        r.is_json(),
        "{what}: Content-Type {:?}",
        r.header("content-type")
    );
    assert_eq!(
        r.header("x-influxdb-error"),
        Some(message),
        "{what}: X-Influxdb-Error header"
    );
}

// ---------------------------------------------------------------------------
// Sockets as the kernel sees them, to wait for what a server did with a
// connection instead of sleeping.

/// Whether the peer has closed `stream` (a read gives EOF, or an error
/// other than a timeout), waiting at most `wait`; bytes read meanwhile (an
/// answer, a TLS alert) are dropped.
pub fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// One IPv4 TCP socket of the machine, a line of `/proc/net/tcp`.
#[derive(Debug, Clone, Copy)]
pub struct KernelSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `st`: 1 established, 6 time-wait, 8 close-wait, 10 listen, ...
    pub state: u8,
    /// Bytes received and not yet read by the socket's owner; for a
    /// listening socket, connections not yet accepted.
    pub rx_queue: u64,
}

const TCP_LISTEN: u8 = 10;

/// Every IPv4 TCP socket of the machine (loopback ones included).
pub fn kernel_sockets() -> Vec<KernelSocket> {
    fn addr(hex: &str) -> Option<SocketAddr> {
        let (ip, port) = hex.split_once(':')?;
        // The address is printed as the host-order (little-endian) u32.
        let ip = u32::from_str_radix(ip, 16).ok()?.to_le_bytes();
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((ip, port)))
    }
    let text = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (_, rx) = f.get(4)?.split_once(':')?;
            Some(KernelSocket {
                local: addr(f.get(1)?)?,
                remote: addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
            })
        })
        .collect()
}

/// Connections the server listening on `port` has not accepted yet
/// (`None`: nothing listens there).
pub fn unaccepted(port: u16) -> Option<u64> {
    kernel_sockets()
        .iter()
        .find(|k| k.state == TCP_LISTEN && k.local.port() == port)
        .map(|k| k.rx_queue)
}

/// Waits until the server on `port` has accepted every connection made to
/// it so far (its listen backlog is empty).
pub fn wait_accepted(port: u16, timeout: Duration) -> Duration {
    wait_until(
        timeout,
        &format!("the server on port {port} to accept its pending connections"),
        || unaccepted(port) == Some(0),
    )
}

/// Bytes `client` sent that the server side of its connection has not read
/// yet (`None`: the server side is gone).
pub fn unread_by_server(client: &TcpStream) -> Option<u64> {
    let (me, server) = (client.local_addr().ok()?, client.peer_addr().ok()?);
    kernel_sockets()
        .into_iter()
        .find(|k| k.local == server && k.remote == me)
        .map(|k| k.rx_queue)
}

/// Waits until the server has read everything `client` sent.
pub fn wait_read_by_server(client: &TcpStream, timeout: Duration, what: &str) -> Duration {
    wait_until(timeout, &format!("the server to read {what}"), || {
        unread_by_server(client) == Some(0)
    })
}

// ---------------------------------------------------------------------------
// Real influxd.

const INFLUXD: &str = "/usr/bin/influxd";

/// A real InfluxDB 1.x server on loopback with its own directories and ports.
pub struct Influxd {
    http_port: u16,
    rpc_port: u16,
    /// `https-certificate` and `https-private-key`: serves HTTPS only.
    https: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
    dir: TempDir,
}

impl Influxd {
    /// Starts one influxd and waits for its `/ping`.
    pub fn start() -> Influxd {
        Influxd::start_many(1).pop().unwrap()
    }

    /// Starts `n` influxd processes at once (they boot in parallel) and waits
    /// until every one answers `/ping`.
    pub fn start_many(n: usize) -> Vec<Influxd> {
        Influxd::start_all((0..n).map(|_| Influxd::spawn_new(None)).collect())
    }

    /// Starts one influxd serving HTTPS only, with this PEM certificate and
    /// key; [`Influxd::url`] is then `https://`. Its `query`, `exec` and
    /// friends verify against Mozilla's roots, so a test with its own CA
    /// talks to it with its own client.
    pub fn start_https(cert: &Path, key: &Path) -> Influxd {
        let https = Some((cert.to_path_buf(), key.to_path_buf()));
        Influxd::start_all(vec![Influxd::spawn_new(https)])
            .pop()
            .unwrap()
    }

    fn start_all(mut all: Vec<Influxd>) -> Vec<Influxd> {
        for d in all.iter_mut() {
            // A port taken between picking and binding: retry with new ports.
            let mut attempts = 0;
            while let Err(e) = d.wait_ready(Duration::from_secs(20)) {
                attempts += 1;
                if attempts >= 3 {
                    panic!("influxd did not start: {e}");
                }
                eprintln!("influxd start failed ({e}); retrying with new ports");
                d.stop();
                d.http_port = free_port();
                d.rpc_port = free_port();
                d.write_config();
                d.spawn();
            }
        }
        all
    }

    /// Starts one influxd on this HTTP port (for a config that names a
    /// fixed address, as the Debian package's default does); panics with
    /// the log's tail if it does not answer `/ping` (the port taken?).
    pub fn start_on_port(http_port: u16) -> Influxd {
        let mut d = Influxd::spawn_at(None, http_port);
        if let Err(e) = d.wait_ready(Duration::from_secs(20)) {
            panic!("influxd on 127.0.0.1:{http_port} did not start: {e}");
        }
        d
    }

    fn spawn_new(https: Option<(PathBuf, PathBuf)>) -> Influxd {
        Influxd::spawn_at(https, free_port())
    }

    fn spawn_at(https: Option<(PathBuf, PathBuf)>, http_port: u16) -> Influxd {
        let dir = TempDir::new("influxd");
        let mut d = Influxd {
            http_port,
            rpc_port: free_port(),
            https,
            child: None,
            log: dir.path().join("influxd.log"),
            config: dir.path().join("influxd.toml"),
            dir,
        };
        d.write_config();
        d.spawn();
        d
    }

    fn write_config(&self) {
        let p = self.dir.path();
        let https = match &self.https {
            Some((cert, key)) => format!(
                "  https-enabled = true\n  https-certificate = \"{}\"\n  https-private-key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let text = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = "{meta}"

[data]
  dir = "{data}"
  wal-dir = "{wal}"
  query-log-enabled = false
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
{https}
[logging]
  level = "error"

[continuous_queries]
  enabled = false
"#,
            rpc = self.rpc_port,
            http = self.http_port,
            meta = p.join("meta").display(),
            data = p.join("data").display(),
            wal = p.join("wal").display(),
        );
        std::fs::write(&self.config, text).expect("write influxd config");
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(INFLUXD);
        cmd.arg("-config").arg(&self.config);
        self.child = Some(spawn_logged(cmd, &self.log, INFLUXD));
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let url = self.url();
        let what = format!("influxd on port {}", self.http_port);
        wait_started(&mut self.child, &what, &self.log, timeout, || ping_ok(&url))
    }

    /// `http://127.0.0.1:<port>` (`https://` with [`Influxd::start_https`]).
    pub fn url(&self) -> String {
        let scheme = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.http_port)
    }

    pub fn port(&self) -> u16 {
        self.http_port
    }

    /// SIGTERM (then SIGKILL after 10 s); the data directory is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Starts it again with the same ports and data, and waits for `/ping`.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        // The old process released the port; a restart should bind at once,
        // but a socket in TIME_WAIT or a stray client can delay it briefly.
        if let Err(e) = self.wait_ready(Duration::from_secs(20)) {
            panic!("influxd restart failed: {e}");
        }
    }

    /// `GET /query?db=..&q=..&epoch=ns`, the parsed JSON answer.
    pub fn query(&self, db: &str, q: &str) -> Value {
        let r = http_get(
            &format!("{}/query", self.url()),
            &[("db", db), ("q", q), ("epoch", "ns")],
        );
        assert_eq!(
            r.status, 200,
            "influxd query {q:?} on db {db:?}: {}",
            r.body
        );
        r.json()
    }

    /// `count(v)` of `mm` in `db` (0 when there is no such series or no
    /// such database).
    pub fn count_v(&self, db: &str, mm: &str) -> u64 {
        let v = self.query(db, &format!("SELECT count(v) FROM {}", quote_ident(mm)));
        v["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0)
    }

    /// `POST /query` (for statements that change things); panics on any error.
    pub fn exec(&self, q: &str) {
        let r = http_post(&format!("{}/query", self.url()), &[("q", q)], &[], b"");
        assert_eq!(r.status, 200, "influxd exec {q:?}: {}", r.body);
        assert!(
            !r.body.contains("\"error\""),
            "influxd exec {q:?} failed: {}",
            r.body
        );
    }

    pub fn create_db(&self, name: &str) {
        self.exec(&format!("CREATE DATABASE {}", quote_ident(name)));
    }

    /// `POST /write` directly to this influxd.
    pub fn write(&self, db: &str, precision: Option<&str>, body: &[u8]) -> Resp {
        let mut params = vec![("db", db)];
        if let Some(p) = precision {
            params.push(("precision", p));
        }
        http_post(&format!("{}/write", self.url()), &params, &[], body)
    }

    /// Names from `SHOW MEASUREMENTS`.
    pub fn measurements(&self, db: &str) -> BTreeSet<String> {
        let v = self.query(db, "SHOW MEASUREMENTS");
        let mut out = BTreeSet::new();
        for series in v["results"][0]["series"].as_array().into_iter().flatten() {
            for row in series["values"].as_array().into_iter().flatten() {
                if let Some(name) = row[0].as_str() {
                    out.insert(name.to_string());
                }
            }
        }
        out
    }

    /// Every point of measurement `mm` (stored name, not escaped) in `db`
    /// (retention policy `rp`, default if `None`).
    pub fn rows(&self, db: &str, rp: Option<&str>, mm: &str) -> Vec<Row> {
        let from = match rp {
            Some(rp) => format!("{}.{}", quote_ident(rp), quote_ident(mm)),
            None => quote_ident(mm),
        };
        self.select_rows(db, &format!("SELECT * FROM {from} GROUP BY *"))
    }

    /// Every point of every measurement in `db` (retention policy `rp`).
    pub fn all_rows(&self, db: &str, rp: Option<&str>) -> BTreeSet<Row> {
        let from = match rp {
            Some(rp) => format!("{}./.*/", quote_ident(rp)),
            None => "/.*/".to_string(),
        };
        self.select_rows(db, &format!("SELECT * FROM {from} GROUP BY *"))
            .into_iter()
            .collect()
    }

    fn select_rows(&self, db: &str, q: &str) -> Vec<Row> {
        let v = self.query(db, q);
        if let Some(err) = v["results"][0]["error"].as_str() {
            panic!("influxd {} query {q:?}: {err}", self.url());
        }
        rows_of(&v)
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Data is thrown away with the directory; no need to be gentle.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// InfluxQL double-quoted identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One stored point: measurement, tags, time (ns) and fields (each value as
/// its JSON text, so rows compare and sort).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub measurement: String,
    pub time: i64,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
}

impl Row {
    /// Builds an expected row; field values are given as JSON values.
    pub fn new(mm: &str, time: i64, tags: &[(&str, &str)], fields: &[(&str, Value)]) -> Row {
        Row {
            measurement: mm.to_string(),
            time,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Rows of a `SELECT * ... GROUP BY *` answer (null fields left out).
pub fn rows_of(v: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    for series in v["results"][0]["series"].as_array().into_iter().flatten() {
        let mm = series["name"].as_str().unwrap_or_default().to_string();
        let tags: BTreeMap<String, String> = series["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| v.as_str().is_some_and(|s| !s.is_empty()))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let columns: Vec<String> = series["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect();
        for values in series["values"].as_array().into_iter().flatten() {
            let values = values.as_array().expect("row is an array");
            let mut time = 0;
            let mut fields = BTreeMap::new();
            for (col, val) in columns.iter().zip(values) {
                if col == "time" {
                    time = val.as_i64().expect("epoch=ns time is an integer");
                } else if !val.is_null() {
                    fields.insert(col.clone(), val.to_string());
                }
            }
            out.push(Row {
                measurement: mm.clone(),
                time,
                tags: tags.clone(),
                fields,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Placement oracle (the crate's own pure ring, Go-compatible).

/// Index, inside a circle of `n` backends (default `hash_key` idx, default
/// `shard_key` `%db,%mm`), of the backend that owns (`db`, `mm`); `mm` is the
/// measurement unescaped by the Go rule.
pub fn owner(db: &str, mm: &str, n: usize) -> usize {
    use influx_proxy::ring::{HashKey, Ring, ShardKey};
    let hk = HashKey::parse("idx").expect("idx hash key");
    let elements: Vec<String> = (0..n)
        .map(|i| hk.element(i, &format!("b{i}"), &format!("http://b{i}")))
        .collect();
    let ring = Ring::new(&elements, 256);
    let key = ShardKey::parse("%db,%mm")
        .expect("default shard key")
        .render(db, mm);
    ring.get(&key).expect("non-empty ring")
}

// ---------------------------------------------------------------------------
// The proxy binary.

pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_influx-proxy");

/// A running proxy with its own temp dir (config, data_dir, log).
pub struct Proxy {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: TempDir,
}

impl Proxy {
    /// Writes `config` (adding `listen_addr`, and `data_dir`/`tlog_dir` inside
    /// the temp dir unless given), starts the binary and waits for `/ping` 204.
    pub fn start(config: Value) -> Proxy {
        Proxy::start_with_flag(config, "-config")
    }

    /// Same, passing the config file with `flag` (`-config` or `--config`).
    pub fn start_with_flag(config: Value, flag: &str) -> Proxy {
        Proxy::start_until(config, flag, &ping_ok)
    }

    /// Same, but ready once `ready(url)` holds instead of an open `/ping`
    /// answering 204 (with `ping_auth_enabled`, a `/ping` with credentials).
    pub fn start_until(config: Value, flag: &str, ready: &dyn Fn(&str) -> bool) -> Proxy {
        let mut last_err = String::new();
        for _ in 0..3 {
            match Proxy::try_start(config.clone(), flag, ready) {
                Ok(p) => return p,
                Err(e) if e.contains("in use") => {
                    eprintln!("proxy start failed ({e}); retrying with another port");
                    last_err = e;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}");
    }

    fn try_start(
        mut config: Value,
        flag: &str,
        ready: &dyn Fn(&str) -> bool,
    ) -> Result<Proxy, String> {
        let dir = TempDir::new("proxy");
        let port = free_port();
        let obj = config
            .as_object_mut()
            .expect("proxy config is a JSON object");
        obj.insert("listen_addr".into(), json!(format!("127.0.0.1:{port}")));
        obj.entry("data_dir")
            .or_insert_with(|| json!(dir.path().join("spool").display().to_string()));
        obj.entry("tlog_dir")
            .or_insert_with(|| json!(dir.path().join("tlog").display().to_string()));
        let config_path = dir.path().join("proxy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
            .expect("write proxy config");
        let log = dir.path().join("proxy.log");
        let mut cmd = Command::new(PROXY_BIN);
        cmd.arg(flag).arg(&config_path).current_dir(dir.path());
        let child = spawn_logged(cmd, &log, PROXY_BIN);
        let mut proxy = Proxy {
            port,
            child: Some(child),
            log,
            dir,
        };
        let start = Instant::now();
        loop {
            if ready(&proxy.url()) {
                return Ok(proxy);
            }
            if let Some(status) = proxy.exit_status() {
                let tail = file_tail(&proxy.log, 30);
                let in_use = if tail.to_ascii_lowercase().contains("in use") {
                    " (address in use)"
                } else {
                    ""
                };
                return Err(format!(
                    "proxy exited with {status} before answering /ping{in_use}; log {}:\n{tail}",
                    proxy.log.display()
                ));
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err(format!(
                    "proxy did not answer /ping 204 within 15 s; log {}:\n{}",
                    proxy.log.display(),
                    file_tail(&proxy.log, 30)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// `POST /write?db=..[&precision=..]`: (status, body).
    pub fn write(&self, db: &str, precision: Option<&str>, body: &str) -> (u16, String) {
        let r = self.write_with(&write_params(db, precision), &[], body.as_bytes());
        (r.status, r.body)
    }

    /// Same, with the body gzip-compressed and `Content-Encoding: gzip`.
    pub fn write_gzip(&self, db: &str, precision: Option<&str>, body: &str) -> (u16, String) {
        let r = self.write_with(
            &write_params(db, precision),
            &[("Content-Encoding", "gzip")],
            &gzip(body.as_bytes()),
        );
        (r.status, r.body)
    }

    /// `POST /write` with arbitrary parameters, headers and body.
    pub fn write_with(
        &self,
        params: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        http_post(&format!("{}/write", self.url()), params, headers, body)
    }

    /// `GET <path>` (path may carry a query string): (status, headers, body).
    pub fn get(&self, path: &str) -> (u16, HashMap<String, String>, String) {
        let r = self.get_resp(path);
        (r.status, r.headers, r.body)
    }

    pub fn get_resp(&self, path: &str) -> Resp {
        let url = format!("{}{path}", self.url());
        into_resp(default_agent().get(&url).call(), &format!("GET {url}"))
    }

    /// `GET /health`, parsed.
    pub fn health(&self) -> Value {
        let r = self.get_resp("/health");
        assert_eq!(r.status, 200, "GET /health: {}", r.body);
        r.json()
    }

    /// `active` of backend `name` in `/health`.
    pub fn backend_active(&self, name: &str) -> Option<bool> {
        let h = self.health();
        for c in h["circles"].as_array().into_iter().flatten() {
            for b in c["backends"].as_array().into_iter().flatten() {
                if b["name"] == name {
                    return b["active"].as_bool();
                }
            }
        }
        None
    }

    /// Panics (with the log tail) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            panic!(
                "proxy exited with {status}; log {}:\n{}",
                self.log.display(),
                file_tail(&self.log, 40)
            );
        }
    }
}

fn write_params<'a>(db: &'a str, precision: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![("db", db)];
    if let Some(p) = precision {
        params.push(("precision", p));
    }
    params
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- proxy log tail ({}) ----\n{}\n---- end of proxy log ----",
                self.log.display(),
                file_tail(&self.log, 40)
            );
        }
    }
}

/// Runs the proxy binary with `args` (cwd `dir`) and waits at most `timeout`
/// for it to exit; a process still running then is killed and reported as
/// `None`. Returns (exit code, stdout + stderr).
pub fn run_proxy_binary(args: &[&str], dir: &Path, timeout: Duration) -> (Option<i32>, String) {
    let out_path = dir.join(format!("run-{}.out", now_ns()));
    let out = std::fs::File::create(&out_path).expect("create output file");
    let mut cmd = Command::new(PROXY_BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone output handle"))
        .stderr(out);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PROXY_BIN}: {e}"));
    let code = wait_child(&mut child, timeout).map(|status| status.code().unwrap_or(-1));
    let text = std::fs::read(&out_path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    (code, text)
}

// ---------------------------------------------------------------------------
// Cluster configs.

/// Standard backend name: `influxdb-<circle 1-based>-<backend 1-based>`.
pub fn backend_name(circle: usize, backend: usize) -> String {
    format!("influxdb-{}-{}", circle + 1, backend + 1)
}

/// A proxy config with one circle per entry of `circles`, each a list of
/// backend URLs (named by [`backend_name`]), circles named `circle-1`...,
/// `flush_time` 1 and `check_interval` 1.
pub fn config_for_urls(circles: &[Vec<String>]) -> Value {
    let circles: Vec<Value> = circles
        .iter()
        .enumerate()
        .map(|(c, urls)| {
            let backends: Vec<Value> = urls
                .iter()
                .enumerate()
                .map(|(b, url)| json!({"name": backend_name(c, b), "url": url}))
                .collect();
            json!({"name": format!("circle-{}", c + 1), "backends": backends})
        })
        .collect();
    json!({
        "circles": circles,
        "flush_time": 1,
        "check_interval": 1,
    })
}

/// 2 circles x 2 backends: `influxds[0..2]` form circle-1, `[2..4]` circle-2.
pub fn two_by_two_config(influxds: &[Influxd]) -> Value {
    assert_eq!(influxds.len(), 4, "two_by_two_config needs 4 influxd");
    config_for_urls(&[
        vec![influxds[0].url(), influxds[1].url()],
        vec![influxds[2].url(), influxds[3].url()],
    ])
}

/// Four real influxd (databases created on all) behind a 2 x 2 proxy.
pub struct Cluster {
    /// circle c, backend b is `influxds[c * 2 + b]`.
    pub influxds: Vec<Influxd>,
    pub proxy: Proxy,
}

impl Cluster {
    /// Starts 4 influxd, creates `dbs` on each, and a proxy with the 2 x 2
    /// config after `tweak` edited it.
    pub fn start(dbs: &[&str], tweak: impl FnOnce(&mut Value)) -> Cluster {
        let influxds = Influxd::start_many(4);
        for d in &influxds {
            for db in dbs {
                d.create_db(db);
            }
        }
        let mut config = two_by_two_config(&influxds);
        tweak(&mut config);
        let proxy = Proxy::start(config);
        Cluster { influxds, proxy }
    }

    /// The influxd of circle `c`, backend `b` (0-based).
    pub fn backend(&self, c: usize, b: usize) -> &Influxd {
        &self.influxds[c * 2 + b]
    }

    /// The influxd that owns (`db`, `mm`) in circle `c`.
    pub fn owner_of(&self, c: usize, db: &str, mm: &str) -> &Influxd {
        self.backend(c, owner(db, mm, 2))
    }

    /// Waits (at most `timeout`) until the owner of (`db`, `mm`) in each of
    /// the two circles holds `points` values of `v`.
    pub fn wait_in_every_circle(&self, timeout: Duration, db: &str, mm: &str, points: u64) {
        for c in 0..2 {
            let d = self.owner_of(c, db, mm);
            wait_for_eq(
                timeout,
                &format!("circle {} owner of {mm} to hold {points} points", c + 1),
                &points,
                || d.count_v(db, mm),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Fake backends for fault injection.

/// How a [`FakeBackend`] misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Accepts connections, reads nothing, never answers.
    Hang,
    /// Answers every request with 500.
    Error500,
    /// Answers like a healthy InfluxDB (204 to /ping and /write), after a delay.
    Slow(Duration),
    /// Answers `/ping` and `/write` at once (204), and `/query` after the
    /// delay with an empty result; each request on its own thread. Records
    /// every request when it comes.
    SlowQueries(Duration),
    /// Answers 204 at once and records every request.
    Record,
    /// Records every request; answers 500 to a `/write` whose body (gunzipped
    /// when `Content-Encoding: gzip`) contains the marker, 204 to anything else.
    RejectContaining(&'static str),
    /// Records every request; answers a request for `path` with `status`,
    /// `content_type` and `body`, anything else (`/ping`) 204.
    Answer {
        path: &'static str,
        status: u16,
        content_type: &'static str,
        body: &'static str,
    },
}

/// [`Fault::SlowQueries`]: a query's empty result after `delay`, anything
/// else 204 at once. The proxy's `SHOW DATABASES` is answered at once, as
/// influxd answers it from memory however busy its queries are; its empty
/// result lists nothing, so the proxy takes writes to any database.
fn answer_slow_query(req: tiny_http::Request, delay: Duration, stop: &AtomicBool) {
    if !req.url().starts_with("/query") {
        let _ = req.respond(tiny_http::Response::from_string("").with_status_code(204));
        return;
    }
    let listing = req.url() == "/query?q=SHOW+DATABASES";
    let until = Instant::now() + if listing { Duration::ZERO } else { delay };
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
    }
    let json = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("static header");
    let body = "{\"results\":[{\"statement_id\":0}]}\n";
    let _ = req.respond(tiny_http::Response::from_string(body).with_header(json));
}

/// A request a [`Fault::Record`] or [`Fault::RejectContaining`] backend received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and raw query string.
    pub url: String,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status the fake backend answered.
    pub status: u16,
}

impl Recorded {
    fn of(req: &tiny_http::Request, body: Vec<u8>, status: u16) -> Recorded {
        let headers = req
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        Recorded {
            method: req.method().as_str().to_string(),
            url: req.url().to_string(),
            headers,
            body,
            status,
        }
    }

    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }

    /// Decoded query parameters (`+` is a space, `%XX` a byte).
    pub fn params(&self) -> Vec<(String, String)> {
        let query = self.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// The body as text, gunzipped when it came with `Content-Encoding: gzip`.
    pub fn text(&self) -> String {
        let gzipped = self
            .headers
            .get("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        let mut out = Vec::new();
        if !gzipped
            || flate2::read::MultiGzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .is_err()
        {
            out = self.body.clone();
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether this is the proxy's own listing of the backend's databases
    /// (`GET /query?q=SHOW DATABASES`, from its health checker, or when a
    /// write names a database it does not know).
    pub fn is_database_listing(&self) -> bool {
        self.path() == "/query" && self.param("q").as_deref() == Some("SHOW DATABASES")
    }
}

/// Decodes a query-string component (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Gunzips `data`; panics with `what` if it is not gzip.
pub fn gunzip(data: &[u8], what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{what}: body is not gzip: {e}"));
    out
}

/// Standard base64 (with padding), for expected `Authorization` headers.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= n {
                out.push(A[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A tiny misbehaving HTTP server on loopback, stopped on drop. It counts
/// the requests (connections for `Hang`) it received.
pub struct FakeBackend {
    port: u16,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeBackend {
    pub fn start(fault: Fault) -> FakeBackend {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (port, thread) = match fault {
            Fault::Hang => {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake backend");
                listener.set_nonblocking(true).expect("nonblocking");
                let port = listener.local_addr().unwrap().port();
                let (stop2, hits2) = (stop.clone(), hits.clone());
                let t = thread::spawn(move || {
                    let mut held = Vec::new();
                    while !stop2.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((s, _)) => {
                                hits2.fetch_add(1, Ordering::Relaxed);
                                held.push(s);
                            }
                            Err(_) => thread::sleep(Duration::from_millis(20)),
                        }
                    }
                });
                (port, t)
            }
            Fault::Error500
            | Fault::Slow(_)
            | Fault::SlowQueries(_)
            | Fault::Record
            | Fault::RejectContaining(_)
            | Fault::Answer { .. } => {
                let server = tiny_http::Server::http("127.0.0.1:0").expect("bind fake backend");
                let port = server.server_addr().to_ip().expect("ip listener").port();
                let (stop2, hits2, rec2) = (stop.clone(), hits.clone(), recorded.clone());
                let t = thread::spawn(move || {
                    while !stop2.load(Ordering::Relaxed) {
                        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50))
                        else {
                            continue;
                        };
                        hits2.fetch_add(1, Ordering::Relaxed);
                        let mut sink = Vec::new();
                        let _ = req.as_reader().read_to_end(&mut sink);
                        if let Fault::SlowQueries(d) = fault {
                            rec2.lock().unwrap().push(Recorded::of(&req, sink, 200));
                            let stop3 = stop2.clone();
                            thread::spawn(move || answer_slow_query(req, d, &stop3));
                            continue;
                        }
                        let status = match fault {
                            Fault::Error500 => 500,
                            Fault::RejectContaining(marker) => {
                                reject_status(req.url(), req.headers(), &sink, marker)
                            }
                            Fault::Answer { path, status, .. }
                                if req.url().split('?').next() == Some(path) =>
                            {
                                status
                            }
                            _ => 204,
                        };
                        if let Fault::Record | Fault::RejectContaining(_) | Fault::Answer { .. } =
                            fault
                        {
                            rec2.lock().unwrap().push(Recorded::of(&req, sink, status));
                        }
                        let resp = match fault {
                            Fault::Error500 => tiny_http::Response::from_string(
                                "{\"error\":\"injected failure\"}\n",
                            )
                            .with_status_code(500),
                            Fault::Slow(d) => {
                                let until = Instant::now() + d;
                                while Instant::now() < until && !stop2.load(Ordering::Relaxed) {
                                    thread::sleep(Duration::from_millis(20));
                                }
                                tiny_http::Response::from_string("").with_status_code(204)
                            }
                            Fault::Record => {
                                tiny_http::Response::from_string("").with_status_code(204)
                            }
                            Fault::RejectContaining(_) if status == 500 => {
                                tiny_http::Response::from_string(
                                    "{\"error\":\"injected failure for this batch\"}\n",
                                )
                                .with_status_code(500)
                            }
                            Fault::RejectContaining(_) => {
                                tiny_http::Response::from_string("").with_status_code(204)
                            }
                            Fault::Answer {
                                path,
                                status,
                                content_type,
                                body,
                            } if req.url().split('?').next() == Some(path) => {
                                let ct = tiny_http::Header::from_bytes(
                                    &b"Content-Type"[..],
                                    content_type.as_bytes(),
                                )
                                .expect("a valid content type");
                                tiny_http::Response::from_string(body)
                                    .with_status_code(status)
                                    .with_header(ct)
                            }
                            Fault::Answer { .. } => {
                                tiny_http::Response::from_string("").with_status_code(204)
                            }
                            Fault::Hang | Fault::SlowQueries(_) => unreachable!(),
                        };
                        let _ = req.respond(resp);
                    }
                });
                (port, t)
            }
        };
        FakeBackend {
            port,
            stop,
            hits,
            recorded,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Requests recorded so far (only with [`Fault::Record`],
    /// [`Fault::RejectContaining`], [`Fault::Answer`] and [`Fault::SlowQueries`]).
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on which nothing listens (connection refused).
pub fn refused_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// What a [`Fault::RejectContaining`] backend answers: 500 to a `/write`
/// whose (decoded) body holds `marker`, else 204.
fn reject_status(url: &str, headers: &[tiny_http::Header], body: &[u8], marker: &str) -> u16 {
    if !url.starts_with("/write") {
        return 204;
    }
    let gzipped = headers.iter().any(|h| {
        h.field.equiv("Content-Encoding") && h.value.as_str().eq_ignore_ascii_case("gzip")
    });
    let text = if gzipped {
        let mut out = Vec::new();
        match flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out) {
            Ok(_) => out,
            Err(_) => body.to_vec(),
        }
    } else {
        body.to_vec()
    };
    if text.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        500
    } else {
        204
    }
}

// ---------------------------------------------------------------------------
// Spool tests: stopping, killing and restarting the proxy on its data_dir.

/// The folder name the proxy gives a backend's spool: bytes outside
/// `[A-Za-z0-9_-]` written `%XX`.
pub fn spool_dir_name(backend: &str) -> String {
    let mut out = String::new();
    for &b in backend.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `VmRSS` of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `Threads` of process `pid` (its thread count), from `/proc/<pid>/status`.
pub fn proc_threads(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// How many threads of process `pid` are named `name` (`/proc/<pid>/task/*/comm`).
pub fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

/// `POST url` that reports transport failures (refused, reset, timeout) as
/// `Err` instead of panicking: for clients that run while the proxy dies.
pub fn try_http_post(
    agent: &ureq::Agent,
    url: &str,
    params: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    http_send(agent, "POST", url, params, &[], body)
}

impl Proxy {
    /// The process id, while it runs (or until reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The proxy's temp dir (config, log, default data_dir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the proxy was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("proxy.json")
    }

    /// `data_dir` from the config file.
    pub fn data_dir(&self) -> PathBuf {
        let text = std::fs::read(self.config_path()).expect("read proxy config");
        let v: Value = serde_json::from_slice(&text).expect("proxy config is JSON");
        PathBuf::from(v["data_dir"].as_str().expect("data_dir in proxy config"))
    }

    /// The spool folder of backend `name`.
    pub fn spool_dir(&self, name: &str) -> PathBuf {
        self.data_dir().join(spool_dir_name(name))
    }

    /// The `/health` object of backend `name`.
    pub fn backend_health(&self, name: &str) -> Value {
        let h = self.health();
        for c in h["circles"].as_array().into_iter().flatten() {
            for b in c["backends"].as_array().into_iter().flatten() {
                if b["name"] == name {
                    return b.clone();
                }
            }
        }
        panic!("backend {name} not in /health: {h}");
    }

    /// Records of backend `name` waiting in its spool (`/health`).
    pub fn records_waiting(&self, name: &str) -> u64 {
        self.backend_health(name)["spool"]["records_waiting"]
            .as_u64()
            .unwrap_or(0)
    }

    /// `VmRSS` of the proxy process in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid().and_then(vm_rss_kib)
    }

    /// SIGKILL (no chance to clean up) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` for the process to exit by itself.
    /// Returns its exit status, or `None` if it had to be SIGKILLed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        terminate(&mut self.child.take()?, grace)
    }

    /// Starts the binary again with the same config (same port, same
    /// data_dir) after [`Proxy::kill9`] or [`Proxy::terminate`]; the log is
    /// appended to. Waits for `/ping` 204 (retrying a few times if the port
    /// is briefly not bindable).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart: the proxy is still running; kill9 or terminate it first"
        );
        let mut last_err = String::new();
        for attempt in 0..5 {
            let mut log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open proxy log");
            let _ = writeln!(
                log_file,
                "---- test harness: restart (attempt {attempt}) ----"
            );
            let mut cmd = Command::new(PROXY_BIN);
            cmd.arg("-config")
                .arg(self.config_path())
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file);
            die_with_parent(&mut cmd);
            self.child = Some(
                cmd.spawn()
                    .unwrap_or_else(|e| panic!("cannot run {PROXY_BIN}: {e}")),
            );
            let start = Instant::now();
            loop {
                if ping_ok(&self.url()) {
                    return;
                }
                if let Some(status) = self.exit_status() {
                    self.child = None;
                    last_err = format!(
                        "proxy exited with {status} after a restart; log {}:\n{}",
                        self.log.display(),
                        file_tail(&self.log, 30)
                    );
                    break;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    panic!(
                        "proxy did not answer /ping 204 within 20 s of a restart; log {}:\n{}",
                        self.log.display(),
                        file_tail(&self.log, 30)
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
            if !last_err.to_ascii_lowercase().contains("in use") {
                panic!("{last_err}");
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!("{last_err}");
    }
}
