//! The POST of a group to a backend, and what its answer means.
//!
//! Each `poster-<backend>-<i>` thread ([`start_posters`]) owns a [`Poster`]
//! (a keep-alive ureq agent, see [`crate::http_client`]) and sends the
//! groups the sender thread hands it: a write group, gzipped, to
//! `<url>/write?db=..&rp=..` (timestamps are already nanoseconds, so no
//! `precision`), a statement as a form to `<url>/query`, always with the
//! backend's own credentials. Before giving an outcome back a poster does
//! what the answer asks of the same group: on 413 it splits the lines in
//! halves at a line boundary, recursively; on 404 `database not found` it
//! creates the database when another active backend has it, and sends
//! again. The answer is classified by [`classify`], a pure function of
//! status and body; the sender thread acts on the [`Outcome`].
//!
//! Groups are gzipped at level 1 (the backend is near, CPU is not free) by
//! a reused [`Gzipper`].

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender as Tx};
use flate2::{Compress, Compression, FlushCompress, Status};

use super::group::Group;
use crate::cluster::databases::show_databases;
use crate::cluster::{Backend, Cluster};
use crate::http_client::{self, BackendError, BackendRequest};
use crate::log;
use crate::query::statement::quote_ident;
use crate::spool::record::Kind;

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: stored.
    Delivered,
    /// 400: InfluxDB stored the valid points and refused the rest for good
    /// (partial write, field type conflict, unparsable line).
    Rejected(String),
    /// 404 `database not found`: the database does not exist there.
    DatabaseNotFound(String),
    /// `retention policy not found` (InfluxDB answers 500): nothing stored.
    RetentionPolicyNotFound(String),
    /// 413: the batch is too big for the backend; split it.
    TooLarge,
    /// Any other status (5xx, 401, ...), or no answer at all (the backend
    /// is down: [`BackendError::is_no_answer`]): try again later, keep the
    /// order.
    Failed(BackendError),
    /// Not sent: the body could not be gzipped. Try again later.
    NotSent(String),
}

/// Classifies a backend's answer to a write.
pub fn classify(status: u16, body: &str) -> Outcome {
    let message = error_message(body);
    match status {
        200..=299 => Outcome::Delivered,
        _ if message.contains("retention policy not found") => {
            Outcome::RetentionPolicyNotFound(message)
        }
        400 => Outcome::Rejected(message),
        404 if message.contains("database not found") => Outcome::DatabaseNotFound(message),
        413 => Outcome::TooLarge,
        _ => Outcome::Failed(BackendError::Status { status, message }),
    }
}

/// The `error` of an InfluxDB JSON body, or the trimmed body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| body.trim().chars().take(512).collect())
}

/// A group for a poster, with the number of its flight.
pub struct Job {
    pub flight: u64,
    pub group: Group,
}

/// A group back from a poster with what became of it (the group comes back
/// so that its buffers are reused).
pub struct Posted {
    pub flight: u64,
    pub group: Group,
    pub outcome: Outcome,
}

/// Starts `count` poster threads for `backend`. Jobs go in on the returned
/// sender, bounded to `count` (a `try_send` fails while every poster is
/// busy); outcomes come back on the receiver. The threads end when the job
/// sender is dropped.
pub fn start_posters(
    cluster: &Arc<Cluster>,
    backend: &Arc<Backend>,
    count: usize,
    timeout: Duration,
) -> (Tx<Job>, Receiver<Posted>) {
    let (job_tx, job_rx) = bounded::<Job>(count);
    let (done_tx, done_rx) = unbounded::<Posted>();
    for i in 0..count {
        let (jobs, done) = (job_rx.clone(), done_tx.clone());
        let (c, b) = (Arc::clone(cluster), Arc::clone(backend));
        let spawned = std::thread::Builder::new()
            .name(format!("poster-{}-{i}", backend.name))
            .spawn(move || {
                let mut poster = Poster::new(timeout);
                for Job { flight, group } in jobs {
                    let outcome = poster.post_group(&c, &b, &group);
                    let posted = Posted {
                        flight,
                        group,
                        outcome,
                    };
                    if done.send(posted).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            log!(
                "backend {}: cannot start a poster thread: {e}",
                backend.name
            );
        }
    }
    (job_tx, done_rx)
}

/// A poster's HTTP client: one keep-alive agent, a reused gzip buffer.
pub struct Poster {
    agent: ureq::Agent,
    gz: Vec<u8>,
}

impl Poster {
    pub fn new(timeout: Duration) -> Poster {
        Poster {
            // Bodies go out in one write; answers are small.
            agent: http_client::agent(timeout, 16 * 1024, 64 * 1024),
            gz: Vec::new(),
        }
    }

    /// Sends a group, splitting it on 413 and creating a missing database.
    fn post_group(&mut self, cluster: &Cluster, backend: &Backend, g: &Group) -> Outcome {
        if g.kind == Some(Kind::Statement) {
            let text = String::from_utf8_lossy(&g.lines);
            return self.query(backend, &g.db, &text);
        }
        let outcome = self.post_packed(backend, g);
        let Outcome::DatabaseNotFound(reason) = outcome else {
            return outcome;
        };
        if !self.exists_elsewhere(cluster, backend, &g.db) {
            return Outcome::DatabaseNotFound(reason);
        }
        let create = format!("CREATE DATABASE {}", quote_ident(&g.db));
        match self.query(backend, "", &create) {
            Outcome::Delivered => {
                log!(
                    "backend {}: created database {:?}, which other backends have",
                    backend.name,
                    g.db
                );
                self.post_packed(backend, g)
            }
            other => other,
        }
    }

    /// POSTs a packed write group; on 413 sends its lines in halves.
    fn post_packed(&mut self, backend: &Backend, g: &Group) -> Outcome {
        match self.write_gzipped(backend, &g.db, &g.rp, &g.gz) {
            Outcome::TooLarge if g.points > 1 => {
                let lines = g.text();
                self.post_halves(backend, &g.db, &g.rp, &lines, g.points, 0)
            }
            other => other,
        }
    }

    /// POSTs lines; on 413 sends them in halves.
    fn post_lines(
        &mut self,
        backend: &Backend,
        db: &str,
        rp: &str,
        lines: &[u8],
        points: u32,
        depth: u32,
    ) -> Outcome {
        match self.write(backend, db, rp, lines) {
            Outcome::TooLarge if points > 1 && depth < 32 => {
                self.post_halves(backend, db, rp, lines, points, depth)
            }
            other => other,
        }
    }

    /// POSTs the two halves of lines the backend found too large (413),
    /// cut at a line boundary, in turn.
    fn post_halves(
        &mut self,
        backend: &Backend,
        db: &str,
        rp: &str,
        lines: &[u8],
        points: u32,
        depth: u32,
    ) -> Outcome {
        let half = points / 2;
        let cut = lines
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(half as usize - 1)
            .map_or(lines.len(), |(i, _)| i + 1);
        let first = self.post_lines(backend, db, rp, &lines[..cut], half, depth + 1);
        if first != Outcome::Delivered {
            return first;
        }
        // The first half is stored: a retry of the whole group resends it,
        // which InfluxDB absorbs (same series and timestamps).
        self.post_lines(backend, db, rp, &lines[cut..], points - half, depth + 1)
    }

    /// Whether another active backend has database `db`.
    fn exists_elsewhere(&mut self, cluster: &Cluster, me: &Backend, db: &str) -> bool {
        cluster
            .backends
            .iter()
            .filter(|b| b.id != me.id && b.is_active())
            .any(|b| show_databases(&self.agent, b).is_some_and(|dbs| dbs.contains(db)))
    }

    /// POSTs `lines` to `backend`'s `/write` and classifies the answer.
    fn write(&mut self, backend: &Backend, db: &str, rp: &str, lines: &[u8]) -> Outcome {
        let gz = match gzip(lines, std::mem::take(&mut self.gz)) {
            Ok(gz) => gz,
            Err(e) => return Outcome::NotSent(format!("gzip: {e}")),
        };
        let outcome = self.write_gzipped(backend, db, rp, &gz);
        self.gz = gz;
        outcome
    }

    /// POSTs an already gzipped body to `backend`'s `/write`.
    fn write_gzipped(&mut self, backend: &Backend, db: &str, rp: &str, gz: &[u8]) -> Outcome {
        let params = [("db", db), ("rp", rp)];
        let req = BackendRequest::post(backend, "/write", &params, http_client::LINES, gz)
            .header("Content-Encoding", "gzip");
        match req.send(&self.agent, &backend.url) {
            Ok(resp) => answer(resp),
            Err(e) => Outcome::Failed(BackendError::from_ureq(backend, &e)),
        }
    }

    /// POSTs an InfluxQL statement to `backend`'s `/query`. A statement
    /// error inside a 200 answer counts as `Rejected`.
    fn query(&mut self, backend: &Backend, db: &str, q: &str) -> Outcome {
        let req = BackendRequest::post_form(backend, "/query", &[("q", q), ("db", db)]);
        match req.send(&self.agent, &backend.url) {
            Ok(mut resp) if resp.status().as_u16() / 100 == 2 => {
                let body = read_body(&mut resp);
                match statement_error(&body) {
                    Some(e) => Outcome::Rejected(e),
                    None => Outcome::Delivered,
                }
            }
            Ok(resp) => answer(resp),
            Err(e) => Outcome::Failed(BackendError::from_ureq(backend, &e)),
        }
    }
}

fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    resp.body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default()
}

/// Classifies a backend's HTTP answer.
fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Outcome {
    let status = resp.status().as_u16();
    let body = if status / 100 == 2 {
        // Drain so the connection can be reused.
        let _ = read_body(&mut resp);
        String::new()
    } else {
        read_body(&mut resp)
    };
    classify(status, &body)
}

/// The first `error` of a `/query` answer's results, if any.
fn statement_error(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Some(e.to_string());
    }
    v.get("results")?
        .as_array()?
        .iter()
        .find_map(|r| r.get("error").and_then(|e| e.as_str()).map(String::from))
}

/// Gzips `data` into `out` (cleared first) at level 1; see [`Gzipper`].
pub fn gzip(data: &[u8], out: Vec<u8>) -> std::io::Result<Vec<u8>> {
    Gzipper::new().gzip(data, out)
}

/// A reusable level-1 gzip compressor. The deflate state (a few hundred
/// KiB of tables) is allocated once and reset per body instead of being
/// allocated and zeroed for every batch. The deflate stream comes from
/// flate2 (zlib-rs); header and trailer are written here so the CRC-32 is
/// crc32fast's SIMD one.
pub struct Gzipper {
    deflate: Compress,
}

impl Default for Gzipper {
    fn default() -> Self {
        Gzipper::new()
    }
}

impl Gzipper {
    pub fn new() -> Gzipper {
        Gzipper {
            deflate: Compress::new(Compression::new(1), false),
        }
    }

    /// Gzips `data` into `out` (cleared first) and returns it.
    pub fn gzip(&mut self, data: &[u8], mut out: Vec<u8>) -> std::io::Result<Vec<u8>> {
        self.deflate.reset();
        out.clear();
        // Magic, deflate, no flags, no mtime, fastest, unknown OS.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        out.reserve(data.len() / 4 + 64);
        loop {
            let consumed = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(&data[consumed..], &mut out, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == Status::StreamEnd {
                break;
            }
            // Out of room: grow and go on.
            out.reserve(out.capacity().max(4096));
        }
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_output_is_a_valid_gzip_stream() {
        use std::io::Read;
        let mut z = Gzipper::new();
        for n in [0usize, 1, 100, 50_000] {
            let data = b"cpu v=1 1\nmem v=2 2\n".repeat(n);
            // Twice with the same compressor: reset must be complete.
            for _ in 0..2 {
                let gz = z.gzip(&data, Vec::new()).unwrap();
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn statement_errors_are_found_in_results() {
        assert_eq!(statement_error(r#"{"results":[{"statement_id":0}]}"#), None);
        assert_eq!(
            statement_error(r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#),
            Some("database not found: x".into())
        );
    }

    #[test]
    fn influxdb_answers_are_classified() {
        assert_eq!(classify(204, ""), Outcome::Delivered);
        assert_eq!(
            classify(400, r#"{"error":"partial write: x dropped=1"}"#),
            Outcome::Rejected("partial write: x dropped=1".into())
        );
        assert!(matches!(
            classify(404, r#"{"error":"database not found: \"nodb\""}"#),
            Outcome::DatabaseNotFound(_)
        ));
        assert!(matches!(
            classify(500, r#"{"error":"retention policy not found: nope"}"#),
            Outcome::RetentionPolicyNotFound(_)
        ));
        assert_eq!(classify(413, "{}"), Outcome::TooLarge);
        let busy = classify(503, "busy");
        assert!(
            matches!(&busy, Outcome::Failed(e) if e.reason() == "status 503: busy" && !e.is_no_answer()),
            "{busy:?}"
        );
        assert!(matches!(
            classify(404, "404 page not found"),
            Outcome::Failed(BackendError::Status { status: 404, .. })
        ));
        assert!(matches!(
            classify(401, r#"{"error":"authorization failed"}"#),
            Outcome::Failed(BackendError::Status { status: 401, .. })
        ));
    }
}
