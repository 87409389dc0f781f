//! One writer per backend: it coalesces the batches workers hand it and a
//! companion sender thread delivers them in order.
//!
//! Threads per backend (both started by [`Writers::start`]):
//! - **writer** `writer-<name>`: owns the pending buffers, one per (db, rp).
//!   Fed by a bounded crossbeam channel of [`Batch`]es from the workers. It
//!   seals a buffer into the backlog when it holds `flush_size` points or
//!   `flush_time` after its first line, so a worker's send never waits for
//!   the network.
//! - **sender** `sender-<name>`: takes sealed batches from the backlog in
//!   order and POSTs them; on failure it keeps the batch and retries with
//!   backoff, so nothing behind it overtakes it. While the backend is
//!   inactive it does not try at all.
//!
//! A slow or dead backend therefore only fills its own backlog; workers and
//! other backends never wait for it. The backlog is bounded; batches that do
//! not fit are counted in `points_overflowed` and logged.

pub mod backlog;
pub mod sender;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender as Tx};
use fxhash::FxHashMap;

use crate::cluster::{Backend, Cluster};
use crate::config::Config;
use crate::log;
use crate::write::batch::Batch;
use backlog::{Backlog, Taken};
use sender::{Outcome, Sender};

/// Batches a worker may queue for one writer before it waits.
const CHANNEL_CAPACITY: usize = 1024;

/// The writer could not take a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterError {
    /// The proxy is shutting down.
    Stopped,
}

/// Timing knobs of the writers, from the config.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub flush_size: usize,
    pub flush_time: Duration,
    pub write_timeout: Duration,
    pub retry_max: Duration,
    pub check_interval: Duration,
    pub max_backlog_size: usize,
}

impl WriterSettings {
    pub fn from_config(cfg: &Config) -> WriterSettings {
        WriterSettings {
            flush_size: cfg.flush_size,
            flush_time: cfg.flush_time,
            write_timeout: cfg.write_timeout,
            retry_max: cfg.rewrite_interval,
            check_interval: cfg.check_interval,
            max_backlog_size: cfg.max_backlog_size,
        }
    }
}

/// Handle on every backend's writer.
pub struct Writers {
    inputs: Vec<Tx<Batch>>,
    backlogs: Vec<Arc<Backlog>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts a writer and a sender thread for every backend.
    pub fn start(cluster: &Cluster, settings: &WriterSettings) -> std::io::Result<Writers> {
        let mut w = Writers {
            inputs: Vec::new(),
            backlogs: Vec::new(),
            threads: Vec::new(),
        };
        for backend in &cluster.backends {
            let (tx, rx) = bounded(CHANNEL_CAPACITY);
            let backlog = Arc::new(Backlog::new(settings.max_backlog_size));
            let writer = Writer {
                backend: Arc::clone(backend),
                backlog: Arc::clone(&backlog),
                settings: settings.clone(),
                pending: FxHashMap::default(),
                armed: None,
                last_overflow_log: None,
            };
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("writer-{}", backend.name))
                    .spawn(move || writer.run(rx))?,
            );
            let (b, q, s) = (Arc::clone(backend), Arc::clone(&backlog), settings.clone());
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("sender-{}", backend.name))
                    .spawn(move || send_loop(&b, &q, &s))?,
            );
            w.inputs.push(tx);
            w.backlogs.push(backlog);
        }
        Ok(w)
    }

    /// Hands `batch` to the writer of backend `id`.
    pub fn submit(&self, id: usize, batch: Batch) -> Result<(), WriterError> {
        let input = self.inputs.get(id).ok_or(WriterError::Stopped)?;
        input.send(batch).map_err(|_| WriterError::Stopped)
    }

    /// Batches waiting and bytes held for backend `id`.
    pub fn depth(&self, id: usize) -> (usize, usize) {
        self.backlogs.get(id).map(|b| b.depth()).unwrap_or((0, 0))
    }

    /// Seals every pending buffer, lets the senders try what they hold for
    /// up to `grace`, and joins the threads.
    pub fn stop(self, grace: Duration) {
        drop(self.inputs);
        let deadline = Instant::now() + grace;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Lines accumulated for one (db, rp).
struct Pending {
    lines: Vec<u8>,
    points: u32,
}

struct Writer {
    backend: Arc<Backend>,
    backlog: Arc<Backlog>,
    settings: WriterSettings,
    pending: FxHashMap<(Arc<str>, Arc<str>), Pending>,
    /// When the pending buffers must be flushed (flush_time after the first).
    armed: Option<Instant>,
    last_overflow_log: Option<Instant>,
}

impl Writer {
    fn run(mut self, input: Receiver<Batch>) {
        loop {
            let msg = match self.armed {
                Some(at) => input.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => input.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(batch) => self.add(batch),
                Err(RecvTimeoutError::Timeout) => self.flush_all(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_all();
                    self.backlog.close();
                    return;
                }
            }
        }
    }

    fn add(&mut self, batch: Batch) {
        let stats = &self.backend.stats;
        stats
            .points_in
            .fetch_add(u64::from(batch.points), Ordering::Relaxed);
        let key = (Arc::clone(&batch.db), Arc::clone(&batch.rp));
        let full = match self.pending.get_mut(&key) {
            Some(p) => {
                p.lines.extend_from_slice(&batch.lines);
                p.points += batch.points;
                p.points as usize >= self.settings.flush_size
            }
            None if batch.points as usize >= self.settings.flush_size => {
                // Big enough on its own: no copy.
                self.seal(batch);
                return;
            }
            None => {
                self.pending.insert(
                    key.clone(),
                    Pending {
                        lines: batch.lines,
                        points: batch.points,
                    },
                );
                false
            }
        };
        if full {
            if let Some(p) = self.pending.remove(&key) {
                self.seal(Batch {
                    db: key.0,
                    rp: key.1,
                    lines: p.lines,
                    points: p.points,
                });
            }
        }
        if self.armed.is_none() && !self.pending.is_empty() {
            self.armed = Some(Instant::now() + self.settings.flush_time);
        }
    }

    fn flush_all(&mut self) {
        self.armed = None;
        let pending = std::mem::take(&mut self.pending);
        for ((db, rp), p) in pending {
            self.seal(Batch {
                db,
                rp,
                lines: p.lines,
                points: p.points,
            });
        }
    }

    fn seal(&mut self, batch: Batch) {
        let stats = &self.backend.stats;
        let points = u64::from(batch.points);
        account(&self.backend, &batch);
        match self.backlog.push(batch) {
            Ok(()) => {}
            Err(batch) => {
                finish(&self.backend, Some(batch));
                let total = stats.points_overflowed.fetch_add(points, Ordering::Relaxed) + points;
                let quiet = self
                    .last_overflow_log
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                if !quiet {
                    self.last_overflow_log = Some(Instant::now());
                    log!(
                        "backend {}: backlog full ({} bytes, max_backlog_size), {} points dropped so far",
                        self.backend.name,
                        self.backlog.depth().1,
                        total
                    );
                }
            }
        }
    }
}

/// Delay before retry number `attempt` (1-based): 100 ms doubling, capped.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    Duration::from_millis(ms).min(max)
}

/// The sender thread: delivers the backlog in order until it is closed and
/// drained, or gives up on an unreachable backend at shutdown.
fn send_loop(backend: &Backend, backlog: &Backlog, settings: &WriterSettings) {
    let mut client = Sender::new(settings.write_timeout);
    // Batches taken from the backlog and not finished yet, oldest first. A
    // batch stays at the front until its outcome is final.
    let mut local: VecDeque<Batch> = VecDeque::new();
    let mut attempt = 0u32;
    loop {
        if local.is_empty() {
            match backlog.take(Duration::from_millis(200)) {
                Taken::Batch(b) => local.push_back(b),
                Taken::Empty => {
                    backend.set_rewriting(false);
                    continue;
                }
                Taken::Closed => return,
            }
        }
        let closing = backlog.is_closed();
        if !backend.is_active() {
            if closing {
                abandon(backend, backlog, &mut local);
                return;
            }
            backend.set_rewriting(true);
            std::thread::sleep(settings.check_interval.min(Duration::from_millis(200)));
            continue;
        }
        let Some(batch) = local.front() else { continue };
        let stats = &backend.stats;
        let points = u64::from(batch.points);
        match client.send(backend, batch) {
            Outcome::Delivered => {
                attempt = 0;
                stats.points_delivered.fetch_add(points, Ordering::Relaxed);
                finish(backend, local.pop_front());
            }
            Outcome::TooLarge if batch.points > 1 => {
                // Split in two and send the halves first, in order.
                let (first, second) = split(batch);
                finish(backend, local.pop_front());
                for half in [second, first] {
                    account(backend, &half);
                    local.push_front(half);
                }
            }
            Outcome::Rejected(reason)
            | Outcome::DatabaseNotFound(reason)
            | Outcome::RetentionPolicyNotFound(reason) => {
                attempt = 0;
                log!(
                    "backend {}: refused {} points for db {:?} rp {:?}: {}",
                    backend.name,
                    points,
                    batch.db,
                    batch.rp,
                    reason
                );
                stats.points_rejected.fetch_add(points, Ordering::Relaxed);
                finish(backend, local.pop_front());
            }
            Outcome::TooLarge => {
                log!(
                    "backend {}: a single point is too large, dropped",
                    backend.name
                );
                stats.points_rejected.fetch_add(points, Ordering::Relaxed);
                finish(backend, local.pop_front());
            }
            Outcome::Retry(reason) | Outcome::Unreachable(reason) => {
                attempt += 1;
                stats.send_failures.fetch_add(1, Ordering::Relaxed);
                backend.set_rewriting(true);
                if attempt == 1 || attempt % 10 == 0 {
                    log!(
                        "backend {}: write failed (attempt {attempt}), will retry: {reason}",
                        backend.name
                    );
                }
                let unreachable = !reason.starts_with("status ");
                if unreachable && backend.set_active(false) {
                    log!(
                        "backend {} ({}) is now inactive: {reason}",
                        backend.name,
                        backend.url
                    );
                }
                if closing && attempt > 3 {
                    abandon(backend, backlog, &mut local);
                    return;
                }
                std::thread::sleep(backoff(attempt, settings.retry_max));
            }
        }
    }
}

/// At shutdown with the backend unreachable: what is held in memory cannot
/// be kept (the on-disk spool will keep it); count and log it.
fn abandon(backend: &Backend, backlog: &Backlog, local: &mut VecDeque<Batch>) {
    let mut lost = 0u64;
    loop {
        let batch = match local.pop_front() {
            Some(b) => b,
            None => match backlog.take(Duration::ZERO) {
                Taken::Batch(b) => b,
                Taken::Empty | Taken::Closed => break,
            },
        };
        lost += u64::from(batch.points);
        finish(backend, Some(batch));
    }
    if lost > 0 {
        backend
            .stats
            .points_overflowed
            .fetch_add(lost, Ordering::Relaxed);
        log!(
            "backend {}: unreachable at shutdown, {lost} points not delivered",
            backend.name
        );
    }
}

/// Counts a batch as waiting.
fn account(backend: &Backend, batch: &Batch) {
    let stats = &backend.stats;
    stats.backlog_batches.fetch_add(1, Ordering::AcqRel);
    stats
        .backlog_bytes
        .fetch_add(batch.lines.len() as u64, Ordering::Relaxed);
}

/// Counts a batch as no longer waiting, whatever its outcome.
fn finish(backend: &Backend, batch: Option<Batch>) {
    if let Some(batch) = batch {
        let stats = &backend.stats;
        stats.backlog_batches.fetch_sub(1, Ordering::AcqRel);
        stats
            .backlog_bytes
            .fetch_sub(batch.lines.len() as u64, Ordering::Relaxed);
    }
}

/// Splits a batch into two halves at a line boundary.
fn split(batch: &Batch) -> (Batch, Batch) {
    let target = batch.points / 2;
    let mut seen = 0;
    let mut cut = batch.lines.len();
    for (i, &b) in batch.lines.iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == target {
                cut = i + 1;
                break;
            }
        }
    }
    let half = |lines: &[u8], points| Batch {
        db: Arc::clone(&batch.db),
        rp: Arc::clone(&batch.rp),
        lines: lines.to_vec(),
        points,
    };
    (
        half(&batch.lines[..cut], target),
        half(&batch.lines[cut..], batch.points - target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_at_a_line_boundary() {
        let b = Batch {
            db: Arc::from("d"),
            rp: Arc::from(""),
            lines: b"a v=1 1\nb v=2 2\nc v=3 3\n".to_vec(),
            points: 3,
        };
        let (x, y) = split(&b);
        assert_eq!((x.points, y.points), (1, 2));
        assert_eq!(x.lines, b"a v=1 1\n");
        assert_eq!(y.lines, b"b v=2 2\nc v=3 3\n");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(10);
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(2, max), Duration::from_millis(200));
        assert_eq!(backoff(40, max), max);
    }
}
