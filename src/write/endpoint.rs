//! `POST /write`: check the parameters, read the body (gunzip when asked),
//! route its lines and hand one batch per backend to the writers.
//!
//! Checks run in the Go proxy's order: method and auth (by the router),
//! precision, database (missing, forbidden, then, as influxd, unknown to
//! every backend: 404), then the body. The answer follows InfluxDB: 204 when
//! every line is valid, 400 `unable to parse ...` when none is, and 400
//! `partial write: ... dropped=0` when some are (the valid ones are written).
//!
//! Nothing is answered before every batch is in the spool of its backend:
//! the worker hands the batches to the writers and waits for their acks.
//! First it reserves the room of every batch in its backend's spool; if one
//! spool is full (`spool_max_size`, or no space left on its disk), the
//! reservations already taken are dropped, nothing is handed over at all,
//! and the client gets 503 naming the backend and the cause.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::read::MultiGzDecoder;

use super::batch::Batcher;
use super::line::Precision;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::log;
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};
use crate::spool::Reservation;
use crate::writer::{Ack, AckError, Entry, Writers};

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    InvalidPrecision(String),
    DatabaseNotFound,
    DatabaseForbidden(String),
    /// No backend has the database (influxd's 404).
    UnknownDatabase(String),
    TooLarge,
    BadGzip(String),
    BodyRead(String),
    /// No line of the body is valid.
    Unparsable(Vec<String>),
    /// Some lines were invalid; the others were accepted.
    Partial(Vec<String>),
    /// A spool could not take the points (full, disk error, stopping).
    Unavailable(AckError),
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::InvalidPrecision(p) => ApiError::bad_request(format!(
                "invalid precision {p:?} (use n, ns, u, ms, s, m or h)"
            )),
            WriteError::DatabaseNotFound => ApiError::bad_request("database not found"),
            WriteError::DatabaseForbidden(db) => {
                ApiError::bad_request(format!("database forbidden: {db}"))
            }
            WriteError::UnknownDatabase(db) => {
                ApiError::new(404, format!("database not found: {}", go_quote(&db)))
            }
            WriteError::TooLarge => ApiError::new(413, "Request Entity Too Large"),
            WriteError::BadGzip(m) => ApiError::bad_request(m),
            WriteError::BodyRead(m) => ApiError::bad_request(format!("unable to read body: {m}")),
            WriteError::Unparsable(errors) => ApiError::bad_request(errors.join("\n")),
            WriteError::Partial(errors) => {
                ApiError::bad_request(format!("partial write: {} dropped=0", errors.join("\n")))
            }
            WriteError::Unavailable(e) => ApiError::new(503, e.to_string()),
        }
    }
}

/// What the `/write` endpoint needs, shared by all workers.
pub struct WriteService {
    pub cluster: Arc<Cluster>,
    pub writers: Writers,
    db_list: Vec<String>,
    max_body_size: usize,
    tracing: bool,
}

/// Per-worker buffers, reused from request to request.
pub struct WriteScratch {
    pub batcher: Batcher,
    body: Vec<u8>,
    unzipped: Vec<u8>,
    /// This worker's ack channel and the tag of its current request.
    ack_tx: crossbeam_channel::Sender<Ack>,
    ack_rx: crossbeam_channel::Receiver<Ack>,
    tag: u64,
    /// The room reserved for each batch of the current request, in order.
    rooms: Vec<Reservation>,
}

impl WriteScratch {
    pub fn new(cluster: Arc<Cluster>) -> WriteScratch {
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        WriteScratch {
            batcher: Batcher::new(cluster),
            body: Vec::new(),
            unzipped: Vec::new(),
            ack_tx,
            ack_rx,
            tag: 0,
            rooms: Vec::new(),
        }
    }
}

/// Longest a worker waits for the writers' acks (they only touch the disk).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

impl WriteService {
    pub fn new(cfg: &Config, cluster: Arc<Cluster>, writers: Writers) -> WriteService {
        WriteService {
            cluster,
            writers,
            db_list: cfg.db_list.clone(),
            max_body_size: cfg.max_body_size,
            tracing: cfg.write_tracing,
        }
    }

    /// Whether `db` may be used (an empty `db_list` allows all).
    pub fn db_allowed(&self, db: &str) -> bool {
        self.db_list.is_empty() || self.db_list.iter().any(|d| d == db)
    }

    /// Largest body accepted, before and after decompression.
    pub fn max_body_size(&self) -> usize {
        self.max_body_size
    }

    /// Refuses a database the way `/write` does: missing, forbidden by
    /// `db_list`, then unknown to every backend (influxd's 404).
    pub fn check_db(&self, db: &str) -> Result<(), WriteError> {
        if db.is_empty() {
            return Err(WriteError::DatabaseNotFound);
        }
        if !self.db_allowed(db) {
            return Err(WriteError::DatabaseForbidden(db.to_string()));
        }
        if !self.cluster.databases.admits(db) {
            return Err(WriteError::UnknownDatabase(db.to_string()));
        }
        Ok(())
    }

    /// Handles `/write` once method and auth have been checked.
    pub fn handle(
        &self,
        scratch: &mut WriteScratch,
        req: &mut Request,
    ) -> Result<Response, WriteError> {
        let precision_text = req.params.get("precision").to_string();
        let precision = Precision::parse_v1(&precision_text)
            .ok_or_else(|| WriteError::InvalidPrecision(precision_text.clone()))?;
        let db = req.params.get("db").to_string();
        self.check_db(&db)?;
        let rp = req.params.get("rp").to_string();
        self.write_body(scratch, req, &db, &rp, precision)
    }

    /// Reads a line-protocol body (gunzipped when `Content-Encoding: gzip`)
    /// and stores its lines for (`db`, `rp`) as [`WriteService::write_lines`]
    /// does; the caller has checked the parameters ([`WriteService::check_db`]).
    pub fn write_body(
        &self,
        scratch: &mut WriteScratch,
        req: &mut Request,
        db: &str,
        rp: &str,
        precision: Precision,
    ) -> Result<Response, WriteError> {
        let gzipped = req.header("content-encoding") == Some("gzip");
        let mut body = std::mem::take(&mut scratch.body);
        let mut unzipped = std::mem::take(&mut scratch.unzipped);
        let result = match self.read_body(&mut body, &mut unzipped, req, gzipped) {
            Ok(lines) => self.write_lines(scratch, db, rp, precision, lines),
            Err(e) => Err(e),
        };
        scratch.body = body;
        scratch.unzipped = unzipped;
        result
    }

    /// Routes `lines` (line protocol) of (`db`, `rp`) to their backends and
    /// answers only once every batch is in its backend's spool: 204 when
    /// every line is valid, 400 as influxd when some or all are not, 503
    /// when a spool cannot take its batch (then nothing is handed over).
    pub fn write_lines(
        &self,
        scratch: &mut WriteScratch,
        db: &str,
        rp: &str,
        precision: Precision,
        lines: &[u8],
    ) -> Result<Response, WriteError> {
        let WriteScratch {
            batcher,
            ack_tx,
            ack_rx,
            tag,
            rooms,
            ..
        } = scratch;
        if self.tracing {
            log!(
                "write: db={db} rp={rp} precision={} body={}",
                precision.name(),
                String::from_utf8_lossy(lines)
            );
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let routed = batcher.route(db, rp, precision, now, lines);
        // Reserve on every backend before handing anything over, so a 503
        // leaves no circle with points the others lack; a refusal drops the
        // reservations already taken.
        rooms.clear();
        for (id, batch) in &routed.batches {
            match self.writers.reserve(*id, batch) {
                Ok(room) => rooms.push(room),
                Err(e) => {
                    rooms.clear();
                    return Err(WriteError::Unavailable(e));
                }
            }
        }
        *tag += 1;
        let expected = routed.batches.len();
        for ((id, batch), room) in routed.batches.into_iter().zip(rooms.drain(..)) {
            self.writers
                .submit(id, Entry::Write(batch), room, *tag, ack_tx)
                .map_err(WriteError::Unavailable)?;
        }
        wait_for_acks(ack_rx, *tag, expected, batcher)?;
        match (routed.points, routed.errors.is_empty()) {
            (_, true) => Ok(Response::no_content()),
            (0, false) => Err(WriteError::Unparsable(routed.errors)),
            (_, false) => Err(WriteError::Partial(routed.errors)),
        }
    }

    /// Reads the whole body into the scratch buffers, gunzipping if needed,
    /// and refuses anything over `max_body_size` before or after gunzip.
    fn read_body<'s>(
        &self,
        body: &'s mut Vec<u8>,
        unzipped: &'s mut Vec<u8>,
        req: &mut Request,
        gzipped: bool,
    ) -> Result<&'s [u8], WriteError> {
        let limit = self.max_body_size;
        if req.content_length.is_some_and(|n| n > limit) {
            return Err(WriteError::TooLarge);
        }
        body.clear();
        read_limited(&mut *req.body, body, limit)
            .map_err(|e| WriteError::BodyRead(e.to_string()))?;
        if body.len() > limit {
            return Err(WriteError::TooLarge);
        }
        if !gzipped {
            return Ok(body);
        }
        if !body.starts_with(&[0x1f, 0x8b]) {
            return Err(WriteError::BadGzip("unable to decode gzip body".into()));
        }
        unzipped.clear();
        let mut decoder = MultiGzDecoder::new(&body[..]);
        read_limited(&mut decoder, unzipped, limit)
            .map_err(|e| WriteError::BadGzip(format!("unable to decode gzip body: {e}")))?;
        if unzipped.len() > limit {
            return Err(WriteError::TooLarge);
        }
        Ok(unzipped)
    }
}

/// Waits for `expected` acks of request `tag`; the first failure wins. The
/// line buffers that come back go to the batcher for the next request.
fn wait_for_acks(
    acks: &crossbeam_channel::Receiver<Ack>,
    tag: u64,
    expected: usize,
    batcher: &mut Batcher,
) -> Result<(), WriteError> {
    let deadline = Instant::now() + ACK_TIMEOUT;
    let mut failure = None;
    let mut got = 0;
    while got < expected {
        let ack = match acks.recv_deadline(deadline) {
            Ok(ack) => ack,
            Err(_) => {
                log!("writers did not acknowledge within {ACK_TIMEOUT:?}");
                return Err(WriteError::Unavailable(AckError::Stopped));
            }
        };
        batcher.recycle(ack.backend, ack.lines);
        // An answer to an earlier request this worker gave up on.
        if ack.tag != tag {
            continue;
        }
        got += 1;
        if let (Err(e), None) = (ack.result, &failure) {
            failure = Some(e);
        }
    }
    match failure {
        Some(e) => Err(WriteError::Unavailable(e)),
        None => Ok(()),
    }
}

/// Reads into `out` until EOF or until more than `limit` bytes were read.
fn read_limited(r: &mut dyn Read, out: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
    r.take(limit as u64 + 1).read_to_end(out).map(|_| ())
}

/// `s` quoted as Go's `%q` (`strconv.Quote`) writes it, as influxd quotes
/// names in its messages: `\"` and `\\`, C escapes for the usual controls,
/// `\xHH` for other ASCII controls, `\uHHHH` for non-printing characters.
pub(crate) fn go_quote(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c.is_whitespace() || is_format(c) => {
                let _ = match c as u32 {
                    n @ 0..=0xffff => write!(out, "\\u{n:04x}"),
                    n => write!(out, "\\U{n:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The format characters (Unicode Cf) a name may plausibly hold, which Go
/// does not print: soft hyphen, zero-width and direction marks, BOM.
fn is_format(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
        || ('\u{e000}'..='\u{f8ff}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_go_quotes_them() {
        // Expected: influxd 1.6.7's 404 message for a write to each name.
        let cases = [
            ("nope", r#""nope""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\there\n", r#""tab\there\n""#),
            ("\x01\x7f", r#""\x01\x7f""#),
            ("é<&> x", r#""é<&> x""#),
            ("\u{a0}\u{200b}\u{85}", r#""\u00a0\u200b\u0085""#),
        ];
        for (name, want) in cases {
            assert_eq!(go_quote(name), want, "{name:?}");
        }
    }
}
