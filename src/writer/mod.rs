//! One writer per backend: it appends the batches workers hand it to the
//! backend's spool and acknowledges them; a companion sender delivers the
//! spool, oldest first.
//!
//! Threads per backend (started by [`Writers::start`]):
//! - **writer** `writer-<name>`: owns the spool's [`Appender`]. Fed by a
//!   bounded crossbeam channel of [`Submission`]s. It drains what is queued
//!   (group commit), appends each batch as one record, syncs when
//!   `spool_sync` asks, publishes the new head to the sender, and answers
//!   every submission on its ack channel. It never touches the network, so a
//!   worker waits for a local append, never for a backend.
//! - **sender** `sender-<name>`: owns the spool's [`Reader`](crate::spool::Reader); see
//!   [`sender`]. It cuts the records into groups of one (db, rp) up to
//!   `flush_size` points (a young group lingers up to `flush_time`), gzips
//!   them, and moves the cursor only past groups whose outcome is final.
//! - **posters** `poster-<name>-<i>` (`rewrite_threads` of them): POST the
//!   groups the sender hands them, several in flight at once; see [`post`].
//!
//! A slow or dead backend therefore only grows its own spool, on disk and up
//! to `spool_max_size`; workers and other backends never wait for it.
//!
//! Admission: a worker reserves the room of every batch of a request
//! ([`Writers::reserve`]) before it submits any of them; a refusal on one
//! backend drops the reservations taken on the others, so a 503 means that
//! nothing of the request was written. A submission carries its reservation
//! and the writer spends it on append.

pub mod group;
pub mod post;
pub mod sender;
pub mod statement;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender as Tx, TrySendError};

use crate::cluster::{Backend, Cluster};
use crate::config::Config;
use crate::log;
use crate::spool::record::Kind;
use crate::spool::{self, Appender, Reservation, Shared, SpoolConfig, SyncMode};
use crate::write::batch::Batch;

/// Submissions a writer may have queued before workers wait. A worker has
/// at most one submission per backend in flight (it waits for the acks), so
/// this is ample; the channel's slots are allocated up front, per backend.
const CHANNEL_CAPACITY: usize = 64;
/// Submissions appended before one sync and one round of acks.
const GROUP_COMMIT: usize = 256;

/// Why a writer did not take a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// The backend's spool reached `spool_max_size`.
    Full { backend: String },
    /// The file system under the backend's spool has no room left: the
    /// cause and the spool's folder.
    NoRoom { backend: String, cause: String },
    /// The disk refused the append or the sync.
    Disk { backend: String, message: String },
    /// The proxy is stopping.
    Stopped,
}

impl AckError {
    /// The answer to a spool's refusal, naming the backend.
    fn of_spool(backend: &str, e: spool::AppendError) -> AckError {
        let backend = backend.to_string();
        match e {
            spool::AppendError::Full => AckError::Full { backend },
            spool::AppendError::NoRoom(cause) => AckError::NoRoom { backend, cause },
            spool::AppendError::Io(e) => AckError::Disk {
                backend,
                message: e.to_string(),
            },
        }
    }
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Full { backend } => write!(
                f,
                "spool of backend {backend} is full (spool_max_size); the backend is down or slow, nothing was written"
            ),
            AckError::NoRoom { backend, cause } => write!(
                f,
                "spool of backend {backend} is full: {cause}; nothing was written, writes are taken again once the spooled points are delivered or space is freed"
            ),
            AckError::Disk { backend, message } => {
                write!(f, "spool of backend {backend} cannot be written: {message}")
            }
            AckError::Stopped => f.write_str("proxy is shutting down"),
        }
    }
}

/// The answer to one submission.
pub struct Ack {
    /// The submission's tag.
    pub tag: u64,
    /// The backend it was for.
    pub backend: usize,
    pub result: Result<(), AckError>,
    /// The batch's line buffer, emptied, for the worker to reuse: the write
    /// path allocates nothing per request once warm.
    pub lines: Vec<u8>,
}

/// What a writer appends to its backend's spool, one record each.
pub enum Entry {
    /// A request's lines for this backend.
    Write(Batch),
    /// An InfluxQL statement (DDL of a backend down or behind), run by the
    /// sender in order with the writes before and after it.
    Statement { db: Arc<str>, text: String },
}

impl Entry {
    /// The record's kind, points, database, retention policy and payload.
    fn parts(&self) -> (Kind, u32, &str, &str, &[u8]) {
        match self {
            Entry::Write(b) => (Kind::Write, b.points, &b.db, &b.rp, &b.lines),
            Entry::Statement { db, text } => (Kind::Statement, 0, db, "", text.as_bytes()),
        }
    }
}

/// An entry for one backend, the room reserved for it, and where to answer.
pub struct Submission {
    pub entry: Entry,
    /// The room reserved for the entry's record ([`Writers::reserve`]).
    pub room: Reservation,
    /// Echoed in the ack, so a worker can ignore answers to an older request.
    pub tag: u64,
    pub ack: Tx<Ack>,
}

/// Timing and size knobs of writers and senders, from the config.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub flush_size: usize,
    pub flush_time: Duration,
    pub write_timeout: Duration,
    pub retry_max: Duration,
    pub check_interval: Duration,
    /// POSTs in flight per backend (`rewrite_threads`).
    pub in_flight: usize,
    pub sync: SyncMode,
    pub spool_max_size: u64,
    pub segment_size: u64,
}

impl WriterSettings {
    pub fn from_config(cfg: &Config) -> WriterSettings {
        WriterSettings {
            flush_size: cfg.flush_size,
            flush_time: cfg.flush_time,
            write_timeout: cfg.write_timeout,
            retry_max: cfg.rewrite_interval,
            check_interval: cfg.check_interval,
            in_flight: cfg.rewrite_threads,
            sync: cfg.spool_sync,
            spool_max_size: cfg.spool_max_size,
            segment_size: cfg.spool_segment_size,
        }
    }
}

/// Handle on every backend's writer.
pub struct Writers {
    inputs: Vec<Tx<Submission>>,
    /// Backend names, for the errors of [`Writers::reserve`].
    names: Vec<String>,
    spools: Vec<Arc<Shared>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Opens every backend's spool under `data_dir` (replaying what it holds
    /// and importing the Go proxy's queue files), then starts a writer and a
    /// sender thread per backend.
    pub fn start(
        cluster: &Arc<Cluster>,
        settings: &WriterSettings,
        data_dir: &Path,
    ) -> Result<Writers, String> {
        let mut w = Writers {
            inputs: Vec::new(),
            names: Vec::new(),
            spools: Vec::new(),
            threads: Vec::new(),
        };
        // The spools share one budget of resident bytes (see spool::window_for).
        let window = spool::window_for(cluster.backends.len());
        for backend in &cluster.backends {
            let dir = spool::backend_dir(data_dir, &backend.name);
            let cfg = SpoolConfig {
                dir: dir.clone(),
                segment_size: settings.segment_size,
                max_size: settings.spool_max_size,
                sync: settings.sync,
                window,
            };
            let fail = |e: std::io::Error| {
                format!(
                    "cannot open the spool of backend {} in {}: {e} (check that `data_dir` is writable)",
                    backend.name,
                    dir.display()
                )
            };
            let (mut appender, reader) = spool::open(&cfg).map_err(fail)?;
            spool::goimport::import(data_dir, &backend.name, &mut appender).map_err(fail)?;
            let (tx, rx) = bounded(CHANNEL_CAPACITY);
            w.spools.push(Arc::clone(appender.shared()));
            let (b, s) = (Arc::clone(backend), settings.clone());
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("writer-{}", backend.name))
                    .spawn(move || write_loop(&b, appender, &rx, &s))
                    .map_err(|e| format!("cannot start a writer thread: {e}"))?,
            );
            let (c, b, s) = (Arc::clone(cluster), Arc::clone(backend), settings.clone());
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("sender-{}", backend.name))
                    .spawn(move || sender::run(&c, &b, reader, &s, &dir))
                    .map_err(|e| format!("cannot start a sender thread: {e}"))?,
            );
            w.inputs.push(tx);
            w.names.push(backend.name.clone());
        }
        Ok(w)
    }

    /// Reserves room in backend `id`'s spool for `batch` as one record
    /// (header included), before it becomes an [`Entry::Write`]; dropping
    /// the reservation gives it back.
    pub fn reserve(&self, id: usize, batch: &Batch) -> Result<Reservation, AckError> {
        self.reserve_record(id, &batch.db, &batch.rp, batch.lines.len())
    }

    fn reserve_record(
        &self,
        id: usize,
        db: &str,
        rp: &str,
        payload: usize,
    ) -> Result<Reservation, AckError> {
        let spool = self.spools.get(id).ok_or(AckError::Stopped)?;
        spool
            .reserve_record(db, rp, payload)
            .map_err(|e| AckError::of_spool(self.names.get(id).map_or("", |n| n), e))
    }

    /// Hands an entry and the room reserved for it to the writer of backend
    /// `id`; the answer comes on `ack` with `tag`.
    pub fn submit(
        &self,
        id: usize,
        entry: Entry,
        room: Reservation,
        tag: u64,
        ack: &Tx<Ack>,
    ) -> Result<(), AckError> {
        let input = self.inputs.get(id).ok_or(AckError::Stopped)?;
        let sub = Submission {
            entry,
            room,
            tag,
            ack: ack.clone(),
        };
        match input.try_send(sub) {
            Ok(()) => Ok(()),
            // Full: wait, the writer only does local disk work.
            Err(TrySendError::Full(sub)) => input.send(sub).map_err(|_| AckError::Stopped),
            Err(TrySendError::Disconnected(_)) => Err(AckError::Stopped),
        }
    }

    /// Appends an InfluxQL statement to backend `id`'s spool, to run there
    /// in order with the writes before it; waits for the append.
    fn queue_statement(&self, id: usize, db: &str, text: &str) -> Result<(), AckError> {
        let (tx, rx) = bounded(1);
        let room = self.reserve_record(id, db, "", text.len())?;
        let entry = Entry::Statement {
            db: Arc::from(db),
            text: text.to_string(),
        };
        self.submit(id, entry, room, 0, &tx)?;
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ack) => ack.result,
            Err(_) => Err(AckError::Stopped),
        }
    }

    /// The spool state of backend `id`.
    pub fn spool(&self, id: usize) -> Option<&Arc<Shared>> {
        self.spools.get(id)
    }

    /// What waits in backend `id`'s spool as of `now_ms` (unix ms), for
    /// `/health` and `/metrics`; all zero when it has no spool.
    pub fn backlog(&self, id: usize, now_ms: u64) -> crate::spool::Backlog {
        self.spool(id)
            .map(|sp| sp.stats.backlog(now_ms))
            .unwrap_or_default()
    }

    /// Stops taking batches: writers sync and close their spools, senders
    /// finish the POST in flight. Waits at most `grace` for the threads.
    pub fn stop(self, grace: Duration) {
        drop(self.inputs);
        let deadline = Instant::now() + grace;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The writer thread: append, sync as configured, acknowledge.
fn write_loop(
    backend: &Backend,
    mut appender: Appender,
    input: &Receiver<Submission>,
    s: &WriterSettings,
) {
    let mut acks: Vec<(Tx<Ack>, Ack)> = Vec::with_capacity(GROUP_COMMIT);
    loop {
        let first = match input.recv_timeout(s.flush_time) {
            Ok(sub) => sub,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = appender.sync_if_needed(s.flush_time) {
                    log!("backend {}: spool sync failed: {e}", backend.name);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = Some(first);
        while let Some(sub) = next.take() {
            let Submission {
                entry,
                room,
                tag,
                ack: ack_tx,
            } = sub;
            let (kind, points, db, rp, payload) = entry.parts();
            let result = appender
                .append(room, kind, points, db, rp, payload)
                .map(|()| {
                    backend
                        .stats
                        .points_in
                        .fetch_add(u64::from(points), Ordering::Relaxed);
                })
                .map_err(|e| AckError::of_spool(&backend.name, e));
            // The line buffer goes back to the worker for its next request.
            let mut lines = match entry {
                Entry::Write(b) => b.lines,
                Entry::Statement { .. } => Vec::new(),
            };
            lines.clear();
            let ack = Ack {
                tag,
                backend: backend.id,
                result,
                lines,
            };
            acks.push((ack_tx, ack));
            if acks.len() < GROUP_COMMIT {
                next = input.try_recv().ok();
            }
        }
        appender.publish();
        if let Err(e) = appender.sync_if_needed(s.flush_time) {
            log!("backend {}: spool sync failed: {e}", backend.name);
            if s.sync == SyncMode::Always {
                // Not on stable storage: do not promise it is.
                for (_, ack) in acks.iter_mut().filter(|(_, a)| a.result.is_ok()) {
                    ack.result = Err(AckError::Disk {
                        backend: backend.name.clone(),
                        message: format!("fdatasync: {e}"),
                    });
                }
            }
        }
        for (tx, ack) in acks.drain(..) {
            // The worker may have given up waiting; nothing to do then.
            let _ = tx.send(ack);
        }
    }
    appender.close();
}
