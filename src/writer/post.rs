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

use std::sync::{Arc, Condvar, Mutex};
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

/// The poster threads of one backend, started as the sender needs them:
/// one at first, another only when every one started is busy, up to `max`
/// (`rewrite_threads`). A backend that answers quickly keeps one or two, so
/// threads and their connection buffers do not grow with the number of
/// backends for nothing. Jobs go in on a channel bounded to `max`;
/// outcomes come back on [`Posters::outcomes`]. The threads end when the
/// `Posters` is dropped.
pub struct Posters {
    cluster: Arc<Cluster>,
    backend: Arc<Backend>,
    timeout: Duration,
    max: usize,
    started: usize,
    jobs: Tx<Job>,
    job_rx: Receiver<Job>,
    done_tx: Tx<Posted>,
    done_rx: Receiver<Posted>,
}

impl Posters {
    pub fn new(
        cluster: &Arc<Cluster>,
        backend: &Arc<Backend>,
        max: usize,
        timeout: Duration,
    ) -> Posters {
        let max = max.max(1);
        let (jobs, job_rx) = bounded::<Job>(max);
        let (done_tx, done_rx) = unbounded::<Posted>();
        Posters {
            cluster: Arc::clone(cluster),
            backend: Arc::clone(backend),
            timeout,
            max,
            started: 0,
            jobs,
            job_rx,
            done_tx,
            done_rx,
        }
    }

    /// Groups back from the posters with their outcome.
    pub fn outcomes(&self) -> &Receiver<Posted> {
        &self.done_rx
    }

    /// Hands `job` to a poster; `busy` is how many jobs are with posters
    /// now. Starts a poster first when every one started is busy. The job
    /// comes back (`Some`) when no poster can take it (all `max` busy, or
    /// none could be started).
    pub fn offer(&mut self, job: Job, busy: usize) -> Option<Job> {
        if busy >= self.started && self.started < self.max {
            self.start_one();
        }
        if self.started == 0 {
            return Some(job);
        }
        self.jobs.try_send(job).err().map(|e| e.into_inner())
    }

    fn start_one(&mut self) {
        let (jobs, done) = (self.job_rx.clone(), self.done_tx.clone());
        let (c, b, timeout) = (
            Arc::clone(&self.cluster),
            Arc::clone(&self.backend),
            self.timeout,
        );
        let spawned = std::thread::Builder::new()
            .name(format!("poster-{}-{}", self.backend.name, self.started))
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
        match spawned {
            Ok(_) => self.started += 1,
            Err(e) => log!(
                "backend {}: cannot start a poster thread: {e}",
                self.backend.name
            ),
        }
    }
}

/// A poster's HTTP client: one keep-alive agent.
pub struct Poster {
    agent: ureq::Agent,
}

impl Poster {
    pub fn new(timeout: Duration) -> Poster {
        Poster {
            // Answers are small; a body goes out in 16 KiB writes. Each
            // connection keeps both buffers for its life.
            agent: http_client::agent(timeout, 8 * 1024, 16 * 1024),
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
        // Only 413 halves come here: no buffer is kept for them.
        let gz = match gzip(lines, Vec::new()) {
            Ok(gz) => gz,
            Err(e) => return Outcome::NotSent(format!("gzip: {e}")),
        };
        self.write_gzipped(backend, db, rp, &gz)
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

/// Gzips `data` into `out` (cleared first) at level 1, with a compressor
/// of the shared pool; see [`Gzipper`].
pub fn gzip(data: &[u8], out: Vec<u8>) -> std::io::Result<Vec<u8>> {
    with_pooled(|z| z.gzip(data, out))
}

/// Compressors shared by every sender and poster: a deflate state is a few
/// hundred KiB, and a thread per backend keeping its own made memory grow
/// with the number of backends. At most [`max_compressors`] exist: one per
/// core and one more is all the compressing two cores can do at once, and
/// a sender preempted while it holds one would otherwise make another
/// sender create one more, up to one per backend.
struct Pool {
    idle: Vec<Gzipper>,
    created: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    idle: Vec::new(),
    created: 0,
});
static RETURNED: Condvar = Condvar::new();

/// The most compressors [`with_pooled`] creates.
fn max_compressors() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// Runs `f` with a compressor of the shared pool and puts it back
/// afterwards. When every compressor is in use and no more may be created,
/// waits until one comes back (a compressor is only held while compressing
/// and reading the spool, never across a network call).
pub fn with_pooled<R>(f: impl FnOnce(&mut Gzipper) -> R) -> R {
    let mut zip = take_pooled();
    let result = f(&mut zip);
    if let Ok(mut pool) = POOL.lock() {
        pool.idle.push(zip);
        RETURNED.notify_one();
    }
    result
}

fn take_pooled() -> Gzipper {
    let Ok(mut pool) = POOL.lock() else {
        return Gzipper::new();
    };
    loop {
        if let Some(zip) = pool.idle.pop() {
            return zip;
        }
        if pool.created < max_compressors() {
            pool.created += 1;
            drop(pool);
            return Gzipper::new();
        }
        pool = match RETURNED.wait(pool) {
            Ok(pool) => pool,
            Err(_) => return Gzipper::new(),
        };
    }
}

/// A reusable level-1 gzip compressor. The deflate state (a few hundred
/// KiB of tables) is allocated once and reset per body instead of being
/// allocated and zeroed for every batch. The deflate stream comes from
/// flate2 (zlib-rs); header and trailer are written here so the CRC-32 is
/// crc32fast's SIMD one. A body is gzipped at once ([`Gzipper::gzip`]) or
/// fed in pieces ([`Gzipper::begin`], [`Gzipper::feed`],
/// [`Gzipper::finish`]) straight from where it lies.
pub struct Gzipper {
    deflate: Compress,
    crc: crc32fast::Hasher,
    len: u32,
    /// A body was begun and not finished. zlib-rs's reset does not clear
    /// everything its level-1 (quick) deflate keeps in the middle of a
    /// stream: a body begun after an abandoned one came out corrupt. So an
    /// abandoned stream is finished (into nothing) before the next begins.
    open: bool,
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
            crc: crc32fast::Hasher::new(),
            len: 0,
            open: false,
        }
    }

    /// Gzips `data` into `out` (cleared first) and returns it.
    pub fn gzip(&mut self, data: &[u8], mut out: Vec<u8>) -> std::io::Result<Vec<u8>> {
        self.begin(&mut out);
        out.reserve(data.len() / 4 + 64);
        self.feed(data, &mut out)?;
        self.finish(&mut out)?;
        Ok(out)
    }

    /// Starts a body in `out` (cleared first): the gzip header.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        out.clear();
        self.begin_member(out);
    }

    /// Starts another gzip member at the end of `out` (after members
    /// already finished there): a body of several members is one valid
    /// gzip stream.
    pub fn begin_member(&mut self, out: &mut Vec<u8>) {
        if self.open {
            let mut discard = Vec::new();
            if self.end_stream(&mut discard).is_err() {
                // Start over with a new state rather than a doubtful one.
                self.deflate = Compress::new(Compression::new(1), false);
            }
        }
        self.deflate.reset();
        self.open = true;
        self.crc = crc32fast::Hasher::new();
        self.len = 0;
        // Magic, deflate, no flags, no mtime, fastest, unknown OS.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    }

    /// Compresses the next piece of the body into `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        self.crc.update(data);
        // ISIZE is the length modulo 2^32.
        self.len = self.len.wrapping_add(data.len() as u32);
        let start = self.deflate.total_in();
        loop {
            let consumed = (self.deflate.total_in() - start) as usize;
            let Some(rest) = data.get(consumed..).filter(|r| !r.is_empty()) else {
                return Ok(());
            };
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            self.deflate
                .compress_vec(rest, out, FlushCompress::None)
                .map_err(std::io::Error::other)?;
        }
    }

    /// Ends the body: the rest of the deflate stream and the trailer.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.end_stream(out)?;
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        Ok(())
    }

    /// Writes the rest of the deflate stream into `out`.
    fn end_stream(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let status = self
                .deflate
                .compress_vec(&[], out, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == Status::StreamEnd {
                self.open = false;
                return Ok(());
            }
        }
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
    fn a_body_fed_in_pieces_is_the_same_gzip_stream() {
        use std::io::Read;
        let data = b"cpu,host=a v=1 1\nmem,host=b v=2 2\n".repeat(20_000);
        let mut z = Gzipper::new();
        for piece in [1usize, 7, 4096, data.len()] {
            let mut out = Vec::new();
            z.begin(&mut out);
            for chunk in data.chunks(piece) {
                z.feed(chunk, &mut out).unwrap();
            }
            z.finish(&mut out).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "pieces of {piece}");
        }
    }

    #[test]
    fn a_body_of_poorly_compressible_pieces_into_a_small_buffer_stays_valid() {
        use std::io::Read;
        // Line protocol with pseudo-random values, fed record by record
        // into an output that starts empty (its room runs out mid-record).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut records = Vec::new();
        for r in 0..40 {
            let mut rec = Vec::new();
            for i in 0..2500 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                rec.extend_from_slice(
                    format!(
                        "cpu-{},host=h{} v={},n={}i {}\n",
                        r % 7,
                        x % 1000,
                        x % 100_000,
                        x >> 40,
                        1_600_000_000_000_000_000u64 + i
                    )
                    .as_bytes(),
                );
            }
            records.push(rec);
        }
        let mut z = Gzipper::new();
        for _round in 0..3 {
            let mut out = Vec::new();
            z.begin(&mut out);
            for rec in &records {
                z.feed(rec, &mut out).unwrap();
            }
            z.finish(&mut out).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, records.concat());
        }
    }

    #[test]
    fn a_body_abandoned_half_way_leaves_the_next_one_valid() {
        use std::io::Read;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut data = Vec::new();
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(format!("m,t=a{} v={} {i}\n", x % 977, x % 100_003).as_bytes());
        }
        let mut z = Gzipper::new();
        let mut abandoned = Vec::new();
        z.begin(&mut abandoned);
        z.feed(&data[..data.len() / 3], &mut abandoned).unwrap();
        // A group that lingers gives its compressor back mid-body.
        let mut out = Vec::new();
        z.begin(&mut out);
        z.feed(&data, &mut out).unwrap();
        z.finish(&mut out).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn members_appended_one_after_another_read_as_one_body() {
        use std::io::Read;
        let parts: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                format!("cpu,host=h{i} v={i} {i}\n")
                    .repeat(300 * (i + 1))
                    .into_bytes()
            })
            .collect();
        let mut z = Gzipper::new();
        let mut out = Vec::new();
        z.begin(&mut out);
        z.feed(&parts[0], &mut out).unwrap();
        z.finish(&mut out).unwrap();
        for p in &parts[1..] {
            z.begin_member(&mut out);
            z.feed(p, &mut out).unwrap();
            z.finish(&mut out).unwrap();
        }
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, parts.concat());
    }

    #[test]
    fn the_shared_pool_never_holds_more_compressors_than_its_bound() {
        let threads: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || {
                    with_pooled(|z| {
                        std::thread::sleep(Duration::from_millis(5));
                        z.gzip(format!("m v={i}\n").as_bytes(), Vec::new())
                            .map(|g| g.len())
                    })
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().unwrap() > 0);
        }
        let pool = POOL.lock().unwrap();
        assert!(
            pool.created <= max_compressors(),
            "{} created",
            pool.created
        );
        assert!(pool.idle.len() <= pool.created);
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
