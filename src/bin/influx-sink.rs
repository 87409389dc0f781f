//! `influx-sink`: a null InfluxDB 1.x backend for benchmarking the proxy alone.
//!
//! It accepts writes and throws them away, counting points (non-empty lines
//! not starting with `#`), bytes and requests. Endpoints: `/ping` (204),
//! `POST /write` (204, gzip bodies understood), `/query` (an empty result),
//! `GET /count` (points received, plain text), `GET /stats` (JSON),
//! `POST /reset` (zero the counters). Anything else is 404.

use std::io::Read;
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use tiny_http::{Header, Method, Request, Response, Server};

const USAGE: &str = "\
Usage: influx-sink [--listen ADDR] [--threads N]

A null InfluxDB: counts the points written to it and discards them.
  --listen ADDR   address to listen on (default 127.0.0.1:8086; port 0 picks one)
  --threads N     request-handling threads (default 2)
";

#[derive(Default)]
struct Counters {
    points: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
}

/// Headers built once at startup.
struct Headers {
    version: Header,
    json: Header,
    text: Header,
}

fn fail(msg: &str) -> ! {
    eprintln!("influx-sink: {msg}");
    exit(1)
}

fn usage_error(msg: &str) -> ! {
    eprintln!("influx-sink: {msg}\n\n{USAGE}");
    exit(2)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name, value).unwrap_or_else(|_| fail(&format!("bad header {name}")))
}

/// Counts line-protocol points: non-empty lines whose first non-blank byte is not `#`.
fn count_points(body: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut at_line_start = true;
    for &b in body {
        if at_line_start {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'#' => at_line_start = false,
                _ => {
                    n += 1;
                    at_line_start = false;
                }
            }
        } else if b == b'\n' {
            at_line_start = true;
        }
    }
    n
}

fn is_gzip(req: &Request) -> bool {
    req.headers()
        .iter()
        .any(|h| h.field.equiv("Content-Encoding") && h.value.as_str().eq_ignore_ascii_case("gzip"))
}

/// Reads (and if needed gunzips) a write body into the reused buffers, returning the points.
fn read_write(
    req: &mut Request,
    raw: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    c: &Counters,
) -> Result<u64, String> {
    raw.clear();
    req.as_reader()
        .read_to_end(raw)
        .map_err(|e| format!("reading body: {e}"))?;
    c.bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
    if is_gzip(req) {
        plain.clear();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(plain)
            .map_err(|e| format!("bad gzip body: {e}"))?;
        Ok(count_points(plain))
    } else {
        Ok(count_points(raw))
    }
}

fn handle(mut req: Request, c: &Counters, h: &Headers, raw: &mut Vec<u8>, plain: &mut Vec<u8>) {
    c.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.url().split('?').next().unwrap_or_default().to_string();
    let method = req.method().clone();
    let result = match (path.as_str(), &method) {
        ("/ping", _) => req.respond(Response::empty(204).with_header(h.version.clone())),
        ("/write", Method::Post) => match read_write(&mut req, raw, plain, c) {
            Ok(n) => {
                c.points.fetch_add(n, Ordering::Relaxed);
                req.respond(Response::empty(204).with_header(h.version.clone()))
            }
            Err(e) => {
                let body = serde_json::json!({ "error": e }).to_string();
                req.respond(
                    Response::from_string(body)
                        .with_status_code(400)
                        .with_header(h.json.clone()),
                )
            }
        },
        ("/query", _) => req.respond(
            Response::from_string(r#"{"results":[{"statement_id":0}]}"#)
                .with_header(h.json.clone())
                .with_header(h.version.clone()),
        ),
        ("/count", Method::Get) => {
            let body = c.points.load(Ordering::Relaxed).to_string();
            req.respond(Response::from_string(body).with_header(h.text.clone()))
        }
        ("/stats", Method::Get) => {
            let body = serde_json::json!({
                "points": c.points.load(Ordering::Relaxed),
                "requests": c.requests.load(Ordering::Relaxed),
                "bytes": c.bytes.load(Ordering::Relaxed),
            })
            .to_string();
            req.respond(Response::from_string(body).with_header(h.json.clone()))
        }
        ("/reset", Method::Post) => {
            c.points.store(0, Ordering::Relaxed);
            c.bytes.store(0, Ordering::Relaxed);
            c.requests.store(0, Ordering::Relaxed);
            req.respond(Response::empty(204))
        }
        _ => req.respond(Response::from_string("404 page not found\n").with_status_code(404)),
    };
    // A client that hung up early is its own problem; the sink carries on.
    let _ = result;
}

fn main() {
    let mut listen = "127.0.0.1:8086".to_string();
    let mut threads = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            "--listen" | "-listen" | "--threads" | "-threads" => {
                let Some(value) = inline.or_else(|| args.next()) else {
                    usage_error(&format!("flag {flag} needs a value"));
                };
                if flag.ends_with("listen") {
                    listen = value;
                } else {
                    threads = match value.parse() {
                        Ok(n) if n > 0 => n,
                        _ => usage_error(&format!("invalid thread count {value:?}")),
                    };
                }
            }
            _ => usage_error(&format!("unknown argument {arg}")),
        }
    }

    let server = match Server::http(&listen) {
        Ok(s) => Arc::new(s),
        Err(e) => fail(&format!("cannot listen on {listen}: {e}")),
    };
    eprintln!(
        "influx-sink: listening on {} with {threads} thread(s)",
        server.server_addr()
    );
    let counters = Arc::new(Counters::default());
    let headers = Arc::new(Headers {
        version: header("X-Influxdb-Version", "sink"),
        json: header("Content-Type", "application/json"),
        text: header("Content-Type", "text/plain; charset=utf-8"),
    });
    let mut handles = Vec::new();
    for i in 0..threads {
        let (server, counters, headers) = (server.clone(), counters.clone(), headers.clone());
        let spawned = thread::Builder::new()
            .name(format!("sink-{i}"))
            .spawn(move || {
                let (mut raw, mut plain) = (Vec::new(), Vec::new());
                loop {
                    match server.recv() {
                        Ok(req) => handle(req, &counters, &headers, &mut raw, &mut plain),
                        Err(e) => {
                            eprintln!("influx-sink: accept failed: {e}");
                            thread::sleep(std::time::Duration::from_millis(10));
                        }
                    }
                }
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => fail(&format!("cannot start thread: {e}")),
        }
    }
    for h in handles {
        if h.join().is_err() {
            fail("a handler thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count_points;

    #[test]
    fn counts_points_not_comments_or_blanks() {
        assert_eq!(count_points(b""), 0);
        assert_eq!(count_points(b"a v=1"), 1);
        assert_eq!(count_points(b"a v=1\n"), 1);
        assert_eq!(count_points(b"a v=1\r\n\n  \n# c v=1\n  b v=2\nc v=3"), 3);
    }
}
