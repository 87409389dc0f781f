//! Copying a measurement from a source backend to a destination backend,
//! and the schema questions a transfer asks a backend. The I/O half of a
//! copy; [`super::lines`] is its pure half (chunk parsing, line building).
//!
//! Every function talks to one backend directly, with ureq agents of its
//! own (see [`crate::http_client`]), the backend's own credentials, and
//! never through the proxy's spool. A request that gets no answer, or a
//! 5xx, is tried `Client::attempts` times with a backoff doubling from
//! `Client::backoff` (at most 15 s) and then is `CopyError::Unreachable`;
//! a 4xx or an InfluxQL `error` is `CopyError::Refused` at once.
//!
//! A copy streams: one `GET /query` of `SELECT * FROM "db"."rp"."mm"` with
//! `chunked=true&chunk_size=<batch, at most 5,000>&epoch=ns`, read one JSON
//! document (one line) at a time into a reused buffer, each row turned into
//! line protocol in a reused batch buffer. Every `batch` rows the batch
//! goes to one of the copy's [`IN_FLIGHT`] poster threads, which gzips it
//! with a reused compressor and POSTs it to `/write?db=&rp=&precision=ns`
//! while the next batches are built: influxd takes a few concurrent writes
//! faster than one at a time. A copy always has one batch out; more only
//! while the process has fewer than [`SHARED_IN_FLIGHT`] out, so a lone
//! copy gets the concurrency and five parallel ones do not flood the
//! destinations. Memory is one chunk plus `IN_FLIGHT + 1` batches,
//! whatever the size of the measurement. Batches are settled in
//! the order they were built, whatever order their POSTs end in.
//! `SELECT *` answers rows in time order, so the time of the last row of
//! the last batch settled (`Progress::last_time`) is a watermark:
//! everything before it is on the destination, and a copy
//! resumed with `since_ns = last_time` redoes at most the rows of that
//! instant, which InfluxDB stores once (a point written twice is the same
//! point). A stream broken in the middle is opened again from that
//! watermark, within the same attempts. `Progress::bytes` counts line
//! protocol before gzip; `points` counts rows written, so rows written
//! again after a broken stream count twice.
//!
//! Field types: `SELECT *` answers a field that has several types (in
//! different shards) in one of them (see [`super::lines`]: float >
//! integer > string > boolean), integer values cast to float under float,
//! and leaves the values of the other types out. Those are copied first,
//! by one pass per (field, type) with `SELECT "f"::type,*::tag`, before
//! the main pass; they do not move the watermark, so a resumed copy runs
//! them again. On the destination a field that was integer in some shards
//! and float in others is float everywhere (what a query of the source
//! answers); strings and booleans keep their own type in their shards.
//! Verification counts with `count(*)`, which counts the answered type only,
//! the same on both sides.
//!
//! Errors name the backend by its URL.

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lines::{Cell, Chunk, FieldType, Layout, LineWriter, Schema};
use crate::cluster::Backend;
use crate::http_client::{self, BackendError, BackendRequest};
use crate::query::statement::quote_ident;
use crate::writer::post::{classify, Gzipper, Outcome};
use crossbeam_channel::{bounded, Receiver, Sender};

/// Why a transfer step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// The backend brought no usable answer (network, timeout, 5xx) after
    /// the retries: worth retrying later.
    Unreachable { backend: String, cause: String },
    /// The backend refused the request for good (a 4xx, an InfluxQL error).
    Refused { backend: String, message: String },
    /// The proxy is stopping.
    Stopped,
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Unreachable { backend, cause } => write!(f, "backend {backend}: {cause}"),
            CopyError::Refused { backend, message } => write!(f, "backend {backend}: {message}"),
            CopyError::Stopped => write!(f, "the proxy is stopping"),
        }
    }
}

/// A retention policy as `SHOW RETENTION POLICIES` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub name: String,
    /// InfluxQL duration text as influxd prints it (`168h0m0s`, `0s`).
    pub duration: String,
    pub shard_group_duration: String,
    pub replication: u64,
    pub default: bool,
}

/// What to copy: one measurement of one retention policy of one database,
/// from `source` to `dest`, points with `since_ns <= time` (and `time <=
/// until_ns` when set).
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub source: Arc<Backend>,
    pub dest: Arc<Backend>,
    pub db: String,
    pub rp: String,
    /// Unescaped measurement name, as `SHOW MEASUREMENTS` gives it.
    pub measurement: String,
    pub since_ns: i64,
    pub until_ns: Option<i64>,
    /// Rows per chunk read and per batch written (the `batch` parameter).
    pub batch: usize,
}

/// How far a copy got: `last_time` is the time of the last row written to
/// the destination (`i64::MIN` before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub points: u64,
    pub bytes: u64,
    pub last_time: i64,
}

/// Point counts of a measurement over a range, per field, on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Largest per-field count (= points) on the source and the destination.
    pub source_points: u64,
    pub dest_points: u64,
    /// Every field has at least as many values on the destination.
    pub complete: bool,
}

/// The client settings of a transfer.
#[derive(Debug, Clone)]
pub struct Client {
    pub timeout: Duration,
    /// Attempts per request before `Unreachable` (backoff between them).
    pub attempts: u32,
    pub backoff: Duration,
}

/// Longest answer read whole (an error body, a statement's answer).
const MAX_ANSWER: u64 = 16 << 20;
/// Longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// Buffer of the stream of a `/query` answer, and of a `/write` body.
const IO_BUFFER: usize = 64 << 10;
/// Rows per chunk of a copy's answer, whatever the batch: a chunk is held
/// as JSON text and parsed rows, a batch only as line protocol.
const MAX_CHUNK_ROWS: usize = 5_000;

/// Batches of one copy POSTed at the same time (one poster thread each).
pub const IN_FLIGHT: usize = 3;

/// Batches of all copies of the process POSTed at the same time, beyond
/// the one each copy may always have.
pub const SHARED_IN_FLIGHT: usize = 4;

/// Batches of all copies POSTed and not settled yet.
static POSTS_OUT: AtomicUsize = AtomicUsize::new(0);
/// Rows per chunk of a schema question's answer (`SHOW ...`): chunked, so
/// that no `max-row-limit` of the backend truncates it.
const SHOW_CHUNK: &str = "10000";
/// The earliest and latest times InfluxDB stores (`influxql.MinTime`,
/// `MaxTime`): a bound beyond them is no bound.
const MIN_TIME: i64 = i64::MIN + 2;
const MAX_TIME: i64 = i64::MAX - 1;

/// `SHOW DATABASES` of `b`: every name, `_internal` included (the caller
/// decides what to copy).
pub fn databases(c: &Client, b: &Backend) -> Result<Vec<String>, CopyError> {
    show(c, b, "", "SHOW DATABASES", |_, row| {
        row.first()?.as_str().map(String::from)
    })
}

/// `SHOW RETENTION POLICIES ON "db"` of `b`.
pub fn retention_policies(
    c: &Client,
    b: &Backend,
    db: &str,
) -> Result<Vec<RetentionPolicy>, CopyError> {
    let q = format!("SHOW RETENTION POLICIES ON {}", quote_ident(db));
    show(c, b, db, &q, |columns, row| {
        let cell = |name: &str| {
            columns
                .iter()
                .position(|c| c == name)
                .and_then(|i| row.get(i))
        };
        Some(RetentionPolicy {
            name: cell("name")?.as_str()?.to_string(),
            duration: cell("duration")?.as_str()?.to_string(),
            shard_group_duration: cell("shardGroupDuration")?.as_str()?.to_string(),
            replication: cell("replicaN").and_then(Cell::as_u64).unwrap_or(1),
            default: matches!(cell("default"), Some(Cell::Bool(true))),
        })
    })
}

/// `SHOW MEASUREMENTS ON "db"` of `b`, all of them (the answer is read
/// chunked, so no `max-row-limit` cuts it), names as stored (unescaped).
pub fn measurements(c: &Client, b: &Backend, db: &str) -> Result<Vec<String>, CopyError> {
    let q = format!("SHOW MEASUREMENTS ON {}", quote_ident(db));
    show(c, b, db, &q, |_, row| {
        row.first()?.as_str().map(String::from)
    })
}

/// Tag keys and field types of `db`.`rp`.`measurement` on `b`.
pub fn schema(
    c: &Client,
    b: &Backend,
    db: &str,
    rp: &str,
    measurement: &str,
) -> Result<Schema, CopyError> {
    let on_from = format!(
        "ON {} FROM {}.{}",
        quote_ident(db),
        quote_ident(rp),
        quote_ident(measurement)
    );
    let tags = show(c, b, db, &format!("SHOW TAG KEYS {on_from}"), |_, row| {
        row.first()?.as_str().map(String::from)
    })?;
    let fields = show(c, b, db, &format!("SHOW FIELD KEYS {on_from}"), |_, row| {
        let t = FieldType::parse(row.get(1)?.as_str()?)?;
        Some((row.first()?.as_str()?.to_string(), t))
    })?;
    let mut schema = Schema {
        tags: tags.into_iter().collect(),
        ..Schema::default()
    };
    for (name, t) in fields {
        schema.fields.entry(name).or_default().insert(t);
    }
    Ok(schema)
}

/// Creates `db` and every policy of `rps` on `b`; a policy that exists
/// with another duration, shard duration or default flag than the
/// source's is altered to the source's (replication is left: a single
/// influxd ignores it).
pub fn ensure_database(
    c: &Client,
    b: &Backend,
    db: &str,
    rps: &[RetentionPolicy],
) -> Result<(), CopyError> {
    exec(c, b, "", &format!("CREATE DATABASE {}", quote_ident(db)))?;
    let existing = retention_policies(c, b, db)?;
    for rp in rps {
        for text in [&rp.duration, &rp.shard_group_duration] {
            if text.is_empty() || !text.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(CopyError::Refused {
                    backend: b.url.clone(),
                    message: format!("retention policy {}: duration {text:?}", rp.name),
                });
            }
        }
        let on = format!("{} ON {}", quote_ident(&rp.name), quote_ident(db));
        let default = if rp.default { " DEFAULT" } else { "" };
        let q = match existing.iter().find(|e| e.name == rp.name) {
            None => format!(
                "CREATE RETENTION POLICY {on} DURATION {} REPLICATION {} SHARD DURATION {}{default}",
                rp.duration,
                rp.replication.max(1),
                rp.shard_group_duration
            ),
            Some(e)
                if e.duration != rp.duration
                    || e.shard_group_duration != rp.shard_group_duration
                    || (rp.default && !e.default) =>
            {
                format!(
                    "ALTER RETENTION POLICY {on} DURATION {} SHARD DURATION {}{default}",
                    rp.duration, rp.shard_group_duration
                )
            }
            Some(_) => continue,
        };
        exec(c, b, db, &q)?;
    }
    Ok(())
}

/// Streams the job; `on_batch` runs after each batch the destination
/// accepted (persist `Progress::last_time` there); an `Err` from it stops
/// the copy. `stop` set: returns `CopyError::Stopped` between batches.
pub fn copy_measurement(
    c: &Client,
    job: &CopyJob,
    stop: &AtomicBool,
    on_batch: &mut dyn FnMut(&Progress) -> Result<(), CopyError>,
) -> Result<Progress, CopyError> {
    if stop.load(Ordering::Acquire) {
        return Err(CopyError::Stopped);
    }
    let schema = schema(c, &job.source, &job.db, &job.rp, &job.measurement)?;
    // The destination's POSTs run on threads of their own, so that the
    // next batch is read and built while the last ones are written.
    let (batches, poster_in) = bounded::<Batch>(IN_FLIGHT);
    let (poster_out, posted) = bounded::<Posted>(IN_FLIGHT);
    std::thread::scope(|scope| {
        for _ in 0..IN_FLIGHT {
            let (poster_in, poster_out) = (poster_in.clone(), poster_out.clone());
            std::thread::Builder::new()
                .name("transfer-post".into())
                .spawn_scoped(scope, move || {
                    post_batches(c, job, stop, poster_in, poster_out)
                })
                .map_err(|e| unreachable(&job.dest, format!("cannot start a thread: {e}")))?;
        }
        drop((poster_in, poster_out));
        let mut copier = Copier {
            c,
            job,
            stop,
            on_batch,
            read: http_client::agent(c.timeout, IO_BUFFER, 4 << 10),
            batches,
            posted,
            in_flight: 0,
            sent: 0,
            settled: 0,
            arrived: Vec::with_capacity(IN_FLIGHT),
            spares: Vec::with_capacity(IN_FLIGHT),
            batch: job.batch.max(1),
            lines: LineWriter::new(&job.measurement),
            chunk: Vec::with_capacity(IO_BUFFER),
            body: Vec::with_capacity(IO_BUFFER),
            rows: 0,
            pass_last: i64::MIN,
            progress: Progress {
                points: 0,
                bytes: 0,
                last_time: i64::MIN,
            },
            schema,
        };
        for (field, t) in copier.schema.hidden_types() {
            let select = format!("SELECT {}::{},*::tag", quote_ident(&field), t.cast());
            copier.pass(&select, Pass::OneField(&field, t))?;
        }
        copier.pass("SELECT *", Pass::All)?;
        Ok(copier.progress)
        // The copier (with the batch sender) is dropped here: the poster
        // ends, and the scope joins it.
    })
}

/// Compares per-field counts of the job's range on source and destination.
pub fn verify(c: &Client, job: &CopyJob) -> Result<Verification, CopyError> {
    let q = format!(
        "SELECT count(*) FROM {}{}",
        from(&job.db, &job.rp, &job.measurement),
        time_range(job.since_ns, job.until_ns)
    );
    let source = counts(c, &job.source, &job.db, &q)?;
    let dest = counts(c, &job.dest, &job.db, &q)?;
    let on_dest = |field: &str| dest.iter().find(|(f, _)| f == field).map_or(0, |&(_, n)| n);
    Ok(Verification {
        source_points: largest(&source),
        dest_points: largest(&dest),
        complete: source.iter().all(|(f, n)| *n <= on_dest(f)),
    })
}

/// Largest per-field count of `db`.`rp`.`measurement` (all time) on `b`.
pub fn count_points(
    c: &Client,
    b: &Backend,
    db: &str,
    rp: &str,
    measurement: &str,
) -> Result<u64, CopyError> {
    let q = format!("SELECT count(*) FROM {}", from(db, rp, measurement));
    Ok(largest(&counts(c, b, db, &q)?))
}

/// `DROP MEASUREMENT` of `measurement` in `db` on `b`.
pub fn drop_measurement(
    c: &Client,
    b: &Backend,
    db: &str,
    measurement: &str,
) -> Result<(), CopyError> {
    exec(
        c,
        b,
        db,
        &format!("DROP MEASUREMENT {}", quote_ident(measurement)),
    )
}

/// `"db"."rp"."mm"`.
fn from(db: &str, rp: &str, measurement: &str) -> String {
    format!(
        "{}.{}.{}",
        quote_ident(db),
        quote_ident(rp),
        quote_ident(measurement)
    )
}

/// ` WHERE time >= since [AND time <= until]`, bounds beyond what InfluxDB
/// stores left out (a literal below `MinTime` would not parse as one).
fn time_range(since_ns: i64, until_ns: Option<i64>) -> String {
    let mut out = String::new();
    if since_ns > MIN_TIME {
        out = format!(" WHERE time >= {since_ns}");
    }
    if let Some(until) = until_ns.filter(|&u| u < MAX_TIME) {
        let glue = if out.is_empty() { " WHERE" } else { " AND" };
        out.push_str(&format!("{glue} time <= {until}"));
    }
    out
}

/// Per-field counts of a `SELECT count(*)` (`count_<field>` columns); a
/// database, policy or measurement the backend lacks counts nothing.
fn counts(c: &Client, b: &Backend, db: &str, q: &str) -> Result<Vec<(String, u64)>, CopyError> {
    let rows = show(c, b, db, q, |columns, row| {
        let counts: Vec<(String, u64)> = columns
            .iter()
            .zip(row)
            .filter_map(|(col, cell)| {
                Some((col.strip_prefix("count_")?.to_string(), cell.as_u64()?))
            })
            .collect();
        Some(counts)
    });
    match rows {
        Ok(rows) => Ok(rows.into_iter().flatten().collect()),
        Err(CopyError::Refused { message, .. })
            if message.contains("database not found")
                || message.contains("retention policy not found") =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

fn largest(counts: &[(String, u64)]) -> u64 {
    counts.iter().map(|&(_, n)| n).max().unwrap_or(0)
}

/// Which rows a pass asks for.
#[derive(Clone, Copy)]
enum Pass<'a> {
    /// `SELECT *`: every field in the type a query answers; moves the
    /// watermark.
    All,
    /// One field in one of its other types, with the tags.
    OneField(&'a str, FieldType),
}

/// A batch of line protocol for the poster thread; `last_time` is the
/// watermark it moves, if any.
struct Batch {
    /// Its place in the order batches were built.
    seq: u64,
    body: Vec<u8>,
    rows: usize,
    last_time: Option<i64>,
}

/// A batch back from the poster (its buffer emptied, for reuse).
struct Posted {
    batch: Batch,
    bytes: usize,
    result: Result<(), CopyError>,
}

/// The state of one `copy_measurement` on its calling thread: the read
/// side, the batch being built, the way to the poster thread.
struct Copier<'j> {
    c: &'j Client,
    job: &'j CopyJob,
    stop: &'j AtomicBool,
    on_batch: &'j mut dyn FnMut(&Progress) -> Result<(), CopyError>,
    read: ureq::Agent,
    batches: Sender<Batch>,
    posted: Receiver<Posted>,
    /// Batches handed to the posters and not settled yet.
    in_flight: usize,
    /// Sequence numbers of the next batch sent and the next to settle.
    sent: u64,
    settled: u64,
    /// Batches back from the posters before an earlier one.
    arrived: Vec<Posted>,
    batch: usize,
    schema: Schema,
    lines: LineWriter,
    /// One document of the answer.
    chunk: Vec<u8>,
    /// Line protocol of the batch being built, `rows` lines.
    body: Vec<u8>,
    /// Buffers of batches back from the posters, for reuse.
    spares: Vec<Vec<u8>>,
    rows: usize,
    /// Time of the last row of this pass in `body`.
    pass_last: i64,
    /// What the destination accepted.
    progress: Progress,
}

impl Copier<'_> {
    /// Runs one pass to its end, opening the stream again from the last
    /// accepted row when it breaks (within the attempts).
    fn pass(&mut self, select: &str, pass: Pass<'_>) -> Result<(), CopyError> {
        let mut since = self.job.since_ns;
        let mut failures = 0;
        loop {
            let accepted = self.progress.points;
            match self.stream(select, pass, since) {
                Ok(()) => return Ok(()),
                // A broken read; the destination's failures already had
                // their attempts.
                Err(CopyError::Unreachable { backend, cause })
                    if backend == self.job.source.url =>
                {
                    // Rows not yet sent are read again, from the watermark
                    // of what the destination accepted.
                    self.body.clear();
                    self.rows = 0;
                    self.settle()?;
                    if self.progress.points > accepted {
                        failures = 0;
                    }
                    failures += 1;
                    if failures >= self.c.attempts.max(1) {
                        return Err(CopyError::Unreachable { backend, cause });
                    }
                    backoff(self.c, failures - 1, Some(self.stop))?;
                    if let Pass::All = pass {
                        since = since.max(self.progress.last_time);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One stream of a pass from `since`.
    fn stream(&mut self, select: &str, pass: Pass<'_>, since: i64) -> Result<(), CopyError> {
        let job = self.job;
        let q = format!(
            "{select} FROM {}{}",
            from(&job.db, &job.rp, &job.measurement),
            time_range(since, job.until_ns)
        );
        let chunk_size = self.batch.min(MAX_CHUNK_ROWS).to_string();
        let mut answer = open_query(&self.read, self.c, &job.source, &job.db, &q, &chunk_size)?;
        let mut layout: Option<(Vec<String>, Layout)> = None;
        let mut refreshed = false;
        while next_chunk(&mut answer, &mut self.chunk, &job.source)? {
            let chunk_bytes = std::mem::take(&mut self.chunk);
            let result = self.rows_of(&chunk_bytes, pass, &mut layout, &mut refreshed);
            self.chunk = chunk_bytes;
            result?;
        }
        self.flush(pass)?;
        self.settle()
    }

    /// Turns the rows of one chunk into lines, sending each full batch.
    fn rows_of(
        &mut self,
        bytes: &[u8],
        pass: Pass<'_>,
        layout: &mut Option<(Vec<String>, Layout)>,
        refreshed: &mut bool,
    ) -> Result<(), CopyError> {
        let source = &self.job.source;
        let chunk = parse_chunk(source, bytes)?;
        for series in chunk.series() {
            let known = layout.as_ref().is_some_and(|(cols, _)| {
                cols.len() == series.columns.len()
                    && cols.iter().zip(&series.columns).all(|(a, b)| a == b)
            });
            if !known {
                let l = match self.layout(&series.columns, pass) {
                    Err(_) if !*refreshed => {
                        // A field written after the schema was read.
                        *refreshed = true;
                        let job = self.job;
                        self.schema = schema(self.c, source, &job.db, &job.rp, &job.measurement)?;
                        self.layout(&series.columns, pass)
                    }
                    l => l,
                };
                let l = l.map_err(|column| CopyError::Refused {
                    backend: source.url.clone(),
                    message: format!(
                        "measurement {:?}: column {column:?} is neither a tag nor a field of it",
                        self.job.measurement
                    ),
                })?;
                let columns = series.columns.iter().map(|c| c.to_string()).collect();
                *layout = Some((columns, l));
            }
            let Some((_, l)) = layout.as_ref() else {
                continue;
            };
            for row in &series.values {
                let written = self.lines.push_row(l, row, &mut self.body).map_err(|e| {
                    CopyError::Refused {
                        backend: source.url.clone(),
                        message: format!("measurement {:?}: {}", self.job.measurement, e.0),
                    }
                })?;
                if let Some(time) = written {
                    self.rows += 1;
                    self.pass_last = time;
                    if self.rows >= self.batch {
                        self.flush(pass)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn layout(&self, columns: &[Cow<'_, str>], pass: Pass<'_>) -> Result<Layout, String> {
        match pass {
            Pass::All => self.schema.select_all_layout(columns),
            Pass::OneField(field, t) => self.schema.one_field_layout(columns, field, t),
        }
    }

    /// Hands the batch built so far to a poster, once fewer than
    /// [`IN_FLIGHT`] are out; then looks at `stop`.
    fn flush(&mut self, pass: Pass<'_>) -> Result<(), CopyError> {
        if self.rows == 0 {
            return Ok(());
        }
        let crowded = self.in_flight > 0
            && (self.in_flight >= IN_FLIGHT
                || POSTS_OUT.load(Ordering::Relaxed) >= SHARED_IN_FLIGHT);
        if crowded {
            self.settle_one()?;
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(CopyError::Stopped);
        }
        let body = std::mem::replace(&mut self.body, self.spares.pop().unwrap_or_default());
        let batch = Batch {
            seq: self.sent,
            body,
            rows: self.rows,
            last_time: matches!(pass, Pass::All).then_some(self.pass_last),
        };
        self.rows = 0;
        self.batches
            .send(batch)
            .map_err(|_| unreachable(&self.job.dest, "the poster thread is gone"))?;
        self.sent += 1;
        self.in_flight += 1;
        POSTS_OUT.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for every batch in flight (see [`Copier::settle_one`]); then
    /// looks at `stop`.
    fn settle(&mut self) -> Result<(), CopyError> {
        while self.in_flight > 0 {
            self.settle_one()?;
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(CopyError::Stopped);
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight: counts it and reports
    /// progress once accepted. Batches that end before it wait in
    /// `arrived`, so the watermark only moves over accepted rows.
    fn settle_one(&mut self) -> Result<(), CopyError> {
        let next = loop {
            if let Some(i) = self
                .arrived
                .iter()
                .position(|p| p.batch.seq == self.settled)
            {
                break self.arrived.swap_remove(i);
            }
            let p = self
                .posted
                .recv()
                .map_err(|_| unreachable(&self.job.dest, "the poster thread is gone"))?;
            self.arrived.push(p);
        };
        let Posted {
            batch,
            bytes,
            result,
        } = next;
        self.in_flight -= 1;
        POSTS_OUT.fetch_sub(1, Ordering::Relaxed);
        self.settled += 1;
        self.spares.push(batch.body);
        result?;
        self.progress.points += batch.rows as u64;
        self.progress.bytes += bytes as u64;
        if let Some(t) = batch.last_time {
            self.progress.last_time = t;
        }
        (self.on_batch)(&self.progress)
    }
}

impl Drop for Copier<'_> {
    /// A copy that ends with batches out (an error, a stop) gives their
    /// share of [`SHARED_IN_FLIGHT`] back.
    fn drop(&mut self) {
        POSTS_OUT.fetch_sub(self.in_flight, Ordering::Relaxed);
    }
}

/// The poster thread of a copy: gzips each batch with a reused compressor
/// and POSTs it (with retries), handing it back with the outcome. Ends
/// when the copier drops its sender or stops listening.
fn post_batches(
    c: &Client,
    job: &CopyJob,
    stop: &AtomicBool,
    batches: Receiver<Batch>,
    posted: Sender<Posted>,
) {
    let agent = http_client::agent(c.timeout, 4 << 10, IO_BUFFER);
    let mut gzipper = Gzipper::new();
    let mut gzipped = Vec::with_capacity(IO_BUFFER);
    for mut batch in batches {
        let result = match gzipper.gzip(&batch.body, std::mem::take(&mut gzipped)) {
            Ok(body) => {
                gzipped = body;
                post_write(&agent, c, job, &gzipped, stop)
            }
            Err(e) => Err(refused(&job.dest, format!("gzip: {e}"))),
        };
        let bytes = batch.body.len();
        batch.body.clear();
        if posted
            .send(Posted {
                batch,
                bytes,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// POSTs one gzipped batch to the job's destination.
fn post_write(
    agent: &ureq::Agent,
    c: &Client,
    job: &CopyJob,
    gzipped: &[u8],
    stop: &AtomicBool,
) -> Result<(), CopyError> {
    let b = &*job.dest;
    let params = [
        ("db", job.db.as_str()),
        ("rp", job.rp.as_str()),
        ("precision", "ns"),
    ];
    let req = BackendRequest::post(b, "/write", &params, http_client::LINES, gzipped)
        .header("Content-Encoding", "gzip");
    with_retries(c, Some(stop), || {
        let mut resp = req
            .send(agent, &b.url)
            .map_err(|e| unreachable(b, BackendError::from_ureq(b, &e).reason()))?;
        let status = resp.status().as_u16();
        let body = read_small(b, &mut resp)?;
        match classify(status, &body) {
            Outcome::Delivered => Ok(()),
            Outcome::Failed(e) if e.is_no_answer() || status >= 500 => {
                Err(unreachable(b, e.reason()))
            }
            Outcome::Failed(e) => Err(refused(b, e.to_string())),
            Outcome::TooLarge => Err(refused(
                b,
                format!(
                    "a batch of {} bytes is too large; lower `batch`",
                    gzipped.len()
                ),
            )),
            Outcome::Rejected(m)
            | Outcome::DatabaseNotFound(m)
            | Outcome::RetentionPolicyNotFound(m)
            | Outcome::NotSent(m) => Err(refused(b, m)),
        }
    })
}

/// Runs a statement that changes things (`POST /query`), with retries.
fn exec(c: &Client, b: &Backend, db: &str, q: &str) -> Result<(), CopyError> {
    let agent = http_client::agent(c.timeout, 16 << 10, 4 << 10);
    let mut params = vec![("q", q)];
    if !db.is_empty() {
        params.push(("db", db));
    }
    let req = BackendRequest::post_form(b, "/query", &params);
    with_retries(c, None, || {
        let mut resp = req
            .send(&agent, &b.url)
            .map_err(|e| unreachable(b, BackendError::from_ureq(b, &e).reason()))?;
        let status = resp.status().as_u16();
        let body = read_small(b, &mut resp)?;
        if status != 200 {
            return Err(status_error(b, status, &body));
        }
        let chunk = parse_chunk(b, body.as_bytes())?;
        match chunk.error() {
            Some(e) => Err(refused(b, format!("{q}: {e}"))),
            None => Ok(()),
        }
    })
}

/// Every row of every series of a small question (`SHOW ...`, a count),
/// through `row` (its columns, its cells) where it gives `Some`; with
/// retries (a broken answer is asked again whole).
fn show<T>(
    c: &Client,
    b: &Backend,
    db: &str,
    q: &str,
    mut row: impl FnMut(&[Cow<'_, str>], &[Cell<'_>]) -> Option<T>,
) -> Result<Vec<T>, CopyError> {
    let agent = http_client::agent(c.timeout, 16 << 10, 4 << 10);
    with_retries(c, None, || {
        let mut answer = open_query(&agent, c, b, db, q, SHOW_CHUNK)?;
        let mut out = Vec::new();
        let mut line = Vec::new();
        while next_chunk(&mut answer, &mut line, b)? {
            let chunk = parse_chunk(b, &line)?;
            for series in chunk.series() {
                out.extend(series.values.iter().filter_map(|r| row(&series.columns, r)));
            }
        }
        Ok(out)
    })
}

/// The body of a chunked answer, read one document at a time.
type Answer = BufReader<ureq::BodyReader<'static>>;

/// Opens a chunked `GET /query` answer (one attempt).
fn open_query(
    agent: &ureq::Agent,
    c: &Client,
    b: &Backend,
    db: &str,
    q: &str,
    chunk_size: &str,
) -> Result<Answer, CopyError> {
    let mut params = vec![("q", q)];
    if !db.is_empty() {
        params.push(("db", db));
    }
    params.extend([
        ("epoch", "ns"),
        ("chunked", "true"),
        ("chunk_size", chunk_size),
    ]);
    let req = BackendRequest::get(b, "/query", &params);
    let mut resp = req
        .send_streaming(agent, &b.url, c.timeout)
        .map_err(|e| unreachable(b, BackendError::from_ureq(b, &e).reason()))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = read_small(b, &mut resp)?;
        return Err(status_error(b, status, &body));
    }
    Ok(BufReader::with_capacity(
        IO_BUFFER,
        resp.into_body().into_reader(),
    ))
}

/// Reads the next document of `answer` into `line`; `false` at the end.
fn next_chunk(answer: &mut Answer, line: &mut Vec<u8>, b: &Backend) -> Result<bool, CopyError> {
    loop {
        line.clear();
        let n = answer
            .read_until(b'\n', line)
            .map_err(|e| unreachable(b, format!("reading an answer: {e}")))?;
        if n == 0 {
            return Ok(false);
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Ok(true);
        }
    }
}

/// One document of an answer; its InfluxQL error is a refusal.
fn parse_chunk<'a>(b: &Backend, bytes: &'a [u8]) -> Result<Chunk<'a>, CopyError> {
    let chunk: Chunk = serde_json::from_slice(bytes).map_err(|e| {
        // A document cut short is an answer broken off on the way.
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        unreachable(b, format!("unreadable answer ({e}): {start}"))
    })?;
    if let Some(e) = chunk.error() {
        return Err(refused(b, e.to_string()));
    }
    Ok(chunk)
}

/// The body of an answer that is not a stream, bounded.
fn read_small(
    b: &Backend,
    resp: &mut ureq::http::Response<ureq::Body>,
) -> Result<String, CopyError> {
    resp.body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| unreachable(b, format!("reading an answer: {e}")))
}

/// An error status: a 5xx may pass, anything else is the backend's verdict.
fn status_error(b: &Backend, status: u16, body: &str) -> CopyError {
    let message = match classify(status, body) {
        Outcome::Failed(e) => e.to_string(),
        Outcome::Rejected(m)
        | Outcome::DatabaseNotFound(m)
        | Outcome::RetentionPolicyNotFound(m) => m,
        _ => format!("status {status}"),
    };
    if status >= 500 {
        unreachable(b, format!("status {status}: {message}"))
    } else {
        refused(b, message)
    }
}

/// Runs `attempt` until it succeeds, fails otherwise than `Unreachable`,
/// or has failed `c.attempts` times, with a doubling backoff between.
fn with_retries<T>(
    c: &Client,
    stop: Option<&AtomicBool>,
    mut attempt: impl FnMut() -> Result<T, CopyError>,
) -> Result<T, CopyError> {
    let attempts = c.attempts.max(1);
    let mut n = 0;
    loop {
        match attempt() {
            Err(CopyError::Unreachable { .. }) if n + 1 < attempts => {
                backoff(c, n, stop)?;
                n += 1;
            }
            other => return other,
        }
    }
}

/// Sleeps the backoff after failure `n` (0 first): `c.backoff * 2^n`, at
/// most [`MAX_BACKOFF`], waking to return `Stopped` once `stop` is set.
fn backoff(c: &Client, n: u32, stop: Option<&AtomicBool>) -> Result<(), CopyError> {
    let delay = c.backoff.saturating_mul(1u32 << n.min(16)).min(MAX_BACKOFF);
    if sleep_unless_stopped(stop, delay) {
        Ok(())
    } else {
        Err(CopyError::Stopped)
    }
}

/// Sleeps `delay` in steps of at most 100 ms; `false` (at once) when
/// `stop` is or gets set.
pub fn sleep_unless_stopped(stop: Option<&AtomicBool>, delay: Duration) -> bool {
    let end = Instant::now() + delay;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

fn unreachable(b: &Backend, cause: impl Into<String>) -> CopyError {
    CopyError::Unreachable {
        backend: b.url.clone(),
        cause: cause.into(),
    }
}

fn refused(b: &Backend, message: impl Into<String>) -> CopyError {
    CopyError::Refused {
        backend: b.url.clone(),
        message: message.into(),
    }
}
