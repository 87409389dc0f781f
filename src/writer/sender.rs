//! The sender thread of one backend: delivers its spool, oldest first, with
//! up to `rewrite_threads` POSTs in flight.
//!
//! The sender owns the spool's [`Reader`] and repeats a few steps, each a
//! method of `Sender`: **gather** the next [`Group`] from the spool (a
//! small one at the head lingers up to `flush_time` after its first record
//! was written), **compress** it (gzip, a compressor of the shared pool), **hand it
//! out** to a free `poster-<backend>-<i>` thread ([`super::post`]), **act on
//! the outcome** each poster gives back, and **commit**: move the cursor
//! past the oldest groups that are done.
//!
//! | outcome | action |
//! |---|---|
//! | 2xx | delivered |
//! | 400 (partial write, type conflict) | InfluxDB kept the good points: count, log, done |
//! | 404 `database not found` | the poster creates the database when another backend has it, and sends again; else parked |
//! | `retention policy not found` | parked |
//! | 413 | the poster splits it in halves, recursively |
//! | other status | retried with backoff, the group unchanged; once the oldest group has failed `PROBE_AFTER` times while a later one went through, it is poison: dead-letter file |
//! | no answer | the backend is marked inactive; retried once it is back |
//!
//! The spool cursor only moves past the oldest groups that are done, in
//! order, so a crash replays at most the groups that were in flight (InfluxDB
//! absorbs the duplicates: same series, same timestamps). A statement is a
//! barrier: it is sent alone, after everything before it is done, and
//! nothing after it is sent before it is done. Nothing leaves the spool
//! without being delivered, refused by InfluxDB, parked or dead-lettered,
//! and each of those is counted in `/health` and logged.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;

use super::group::Group;
use super::post::{self, Gzipper, Job, Outcome, Posted, Posters};
use super::WriterSettings;
use crate::cluster::{Backend, Cluster};
use crate::log;
use crate::spool::record::Kind;
use crate::spool::{Pos, Reader, SyncMode};

/// Failures of one group before the next group is tried past it.
const PROBE_AFTER: u32 = 3;
/// Finished groups kept for their small buffers (names, statement text).
const MAX_SPARE: usize = 2;
/// How often a lingering group looks for more records.
const LINGER_POLL: Duration = Duration::from_millis(20);
/// Longest wait for a wake-up or an outcome before looking again.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Wait after the spool could not be read or a group gzipped.
const AFTER_ERROR: Duration = Duration::from_secs(1);
/// How long the POSTs in flight may take at shutdown.
const FINISH_WAIT: Duration = Duration::from_secs(2);

/// The sender thread. Returns when the spool is closed (shutdown), after
/// giving the POSTs in flight a moment to finish.
pub fn run(
    cluster: &Arc<Cluster>,
    backend: &Arc<Backend>,
    reader: Reader,
    settings: &WriterSettings,
    dir: &Path,
) {
    let posters = Posters::new(
        cluster,
        backend,
        settings.in_flight.max(1),
        settings.write_timeout,
    );
    Sender {
        backend,
        settings,
        dir,
        wake: reader.wakeups(),
        reader,
        posters,
        flights: VecDeque::new(),
        next_flight: 0,
        spare: Vec::new(),
        gathered: Group::default(),
        last_cursor_sync: Instant::now(),
    }
    .run();
}

/// What cutting the next group gave.
enum Cut {
    /// A group packed for a poster.
    Packed(Group),
    /// Nothing to hand out now.
    Nothing,
    /// Look again after this long.
    Wait(Option<Duration>),
}

/// A group handed to a poster, until its outcome is final.
struct Flight {
    id: u64,
    /// Where the group ends in the spool (the next group starts there).
    end: Pos,
    /// When its first record was written, for `/health`'s oldest age.
    first_ms: u64,
    /// A statement: nothing else is sent while it is pending.
    statement: bool,
    /// The group, except while a poster has it.
    group: Option<Group>,
    attempts: u32,
    state: FlightState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlightState {
    /// With a poster now.
    Sending,
    /// Failed; send again at this time.
    RetryAt(Instant),
    /// Final outcome recorded; waits for the groups before it.
    Done,
}

/// Everything the sender thread owns.
struct Sender<'a> {
    backend: &'a Backend,
    settings: &'a WriterSettings,
    /// The spool's folder, where parked and dead-lettered groups are filed.
    dir: &'a Path,
    reader: Reader,
    /// One message per publish of the writer.
    wake: Receiver<()>,
    /// The poster threads: groups go out, outcomes come back.
    posters: Posters,
    /// Groups handed out, oldest first, until committed.
    flights: VecDeque<Flight>,
    next_flight: u64,
    /// Finished groups, whose small buffers are reused.
    spare: Vec<Group>,
    /// The group being cut from the spool (a lingering one stays here).
    gathered: Group,
    last_cursor_sync: Instant,
}

impl Sender<'_> {
    /// Each turn: take the outcomes that came back, commit what is done,
    /// then (with the backend active) resend what is due and hand out new
    /// groups, and wait for an outcome, a new record or the next due time.
    fn run(mut self) {
        loop {
            self.sync_cursor_when_due();
            // Outcomes that arrived, then commit what is done, oldest first.
            while let Ok(posted) = self.posters.outcomes().try_recv() {
                self.on_outcome(posted);
            }
            self.set_aside_poison();
            self.commit_done();
            if self.reader.is_closed() {
                self.finish();
                return;
            }
            let active = self.backend.is_active();
            self.backend.set_rewriting(
                !self.flights.is_empty()
                    && (!active || self.flights.iter().any(|f| f.attempts > 0)),
            );
            let mut wait = IDLE_WAIT;
            if active {
                if let Some(next_retry) = self.resend_due() {
                    wait = wait.min(next_retry);
                }
                if let Some(linger) = self.hand_out() {
                    wait = wait.min(linger);
                }
            }
            self.wait(wait);
        }
    }

    /// Syncs the cursor file every `flush_time` (unless `spool_sync` is
    /// `none`).
    fn sync_cursor_when_due(&mut self) {
        if self.settings.sync != SyncMode::None
            && self.last_cursor_sync.elapsed() >= self.settings.flush_time
        {
            self.last_cursor_sync = Instant::now();
            if let Err(e) = self.reader.sync_cursor() {
                log!(
                    "backend {}: cannot sync the spool cursor: {e}",
                    self.backend.name
                );
            }
        }
    }

    /// Waits up to `wait` for an outcome or a new record.
    fn wait(&mut self, wait: Duration) {
        let posted = if self.gathered.kind.is_some() {
            // A group is lingering: new records need not wake us one by one
            // (every append publishes); look again in a little while.
            let posted = crossbeam_channel::select! {
                recv(self.posters.outcomes()) -> posted => posted.ok(),
                default(wait.min(LINGER_POLL)) => None,
            };
            let _ = self.wake.try_recv();
            posted
        } else {
            crossbeam_channel::select! {
                recv(self.posters.outcomes()) -> posted => posted.ok(),
                recv(self.wake) -> _ => None,
                default(wait) => None,
            }
        };
        if let Some(posted) = posted {
            self.on_outcome(posted);
        }
    }

    fn sending(&self) -> usize {
        self.flights
            .iter()
            .filter(|f| f.state == FlightState::Sending)
            .count()
    }

    /// Hands failed groups whose time has come to a poster again. Returns
    /// how long until the next one is due, if one waits.
    fn resend_due(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut next = None::<Duration>;
        let mut busy = self.sending();
        for f in self.flights.iter_mut() {
            match f.state {
                FlightState::RetryAt(at) if at <= now => {
                    if let Some(group) = f.group.take() {
                        let job = Job {
                            flight: f.id,
                            group,
                        };
                        match self.posters.offer(job, busy) {
                            None => {
                                f.state = FlightState::Sending;
                                busy += 1;
                                self.backend
                                    .stats
                                    .send_retries
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            Some(job) => f.group = Some(job.group),
                        }
                    }
                }
                FlightState::RetryAt(at) => {
                    let left = at - now;
                    next = Some(next.map_or(left, |n| n.min(left)));
                }
                _ => {}
            }
        }
        next
    }

    /// Cuts new groups from the spool and hands them to free posters, while
    /// there are free posters and no statement barrier. Returns how long the
    /// newest group may still linger, if it does.
    fn hand_out(&mut self) -> Option<Duration> {
        let slots = self.settings.in_flight.max(1);
        loop {
            // Bound the groups held in memory, and respect statement barriers.
            let barrier = self.flights.iter().any(|f| f.statement);
            if self.sending() >= slots || self.flights.len() >= 2 * slots || barrier {
                return None;
            }
            // One compressor of the shared pool for cutting and packing
            // the group: its lines are gzipped as they are found.
            let group = match post::with_pooled(|zip| self.cut(zip)) {
                Cut::Packed(group) => group,
                Cut::Nothing => return None,
                Cut::Wait(wait) => return wait,
            };
            self.gathered.kind = None;
            if !self.hand_to_poster(group) {
                return None;
            }
        }
    }

    /// Cuts the next group and packs it for a poster with `zip`, unless
    /// nothing waits, a statement must wait for the groups before it, or
    /// the group lingers.
    fn cut(&mut self, zip: &mut Gzipper) -> Cut {
        match self.gather(zip) {
            Ok(true) => {}
            Ok(false) => {
                self.step_over_unreadable();
                return Cut::Nothing;
            }
            Err(e) => {
                log!("backend {}: cannot read the spool: {e}", self.backend.name);
                self.gathered.kind = None;
                return Cut::Wait(Some(AFTER_ERROR));
            }
        }
        if self.gathered.kind == Some(Kind::Statement) && !self.flights.is_empty() {
            // A statement waits until everything before it is done.
            return Cut::Nothing;
        }
        if let Some(linger) = self.lingers() {
            // The compressor goes back to the pool with the turn.
            if let Err(e) = self.gathered.seal(zip) {
                log!("backend {}: cannot gzip a batch: {e}", self.backend.name);
                self.gathered.kind = None;
                return Cut::Wait(Some(AFTER_ERROR));
            }
            return Cut::Wait(Some(linger));
        }
        let into = self.spare.pop().unwrap_or_default();
        match self.gathered.pack(into, zip) {
            Ok(group) => Cut::Packed(group),
            Err(e) => {
                log!("backend {}: cannot gzip a batch: {e}", self.backend.name);
                Cut::Wait(Some(AFTER_ERROR))
            }
        }
    }

    /// Gathers the group after the last one handed out, its lines gzipped
    /// with `zip` as they are read. A group that lingered last turn grows
    /// from where it ended instead of being read again. `false` when
    /// nothing is waiting.
    fn gather(&mut self, zip: &mut Gzipper) -> std::io::Result<bool> {
        let from = self.flights.back().map_or(self.reader.cursor(), |f| f.end);
        let g = &mut self.gathered;
        if g.kind.is_some() && g.start == from && g.at_head {
            g.extend(&mut self.reader, self.settings.flush_size, zip)
        } else {
            g.gather(&mut self.reader, from, self.settings.flush_size, zip)
        }
    }

    /// Only segment ends or damaged bytes after the cursor: step over them
    /// for good, or they would be read again and again.
    fn step_over_unreadable(&mut self) {
        let to = self.reader.scanned_to();
        if self.flights.is_empty() && to > self.reader.cursor() {
            if let Err(e) = self.reader.commit(to, 0, 0, 0) {
                log!(
                    "backend {}: cannot move the spool cursor: {e}",
                    self.backend.name
                );
            }
        }
    }

    /// How much longer the gathered group may wait for more records: a
    /// young, small write group at the head lingers.
    fn lingers(&self) -> Option<Duration> {
        let g = &self.gathered;
        let age = Duration::from_millis(now_ms().saturating_sub(g.first_ms));
        let lingers = g.kind == Some(Kind::Write)
            && g.at_head
            && (g.points as usize) < self.settings.flush_size
            && age < self.settings.flush_time;
        lingers.then(|| self.settings.flush_time - age)
    }

    /// Hands a packed group to a free poster and records its flight.
    /// `false` when no poster was free after all (or they are gone): the
    /// group is gathered again next turn.
    fn hand_to_poster(&mut self, group: Group) -> bool {
        let flight = Flight {
            id: self.next_flight,
            end: group.end,
            first_ms: group.first_ms,
            statement: group.kind == Some(Kind::Statement),
            group: None,
            attempts: 0,
            state: FlightState::Sending,
        };
        let job = Job {
            flight: flight.id,
            group,
        };
        let busy = self.sending();
        if let Some(job) = self.posters.offer(job, busy) {
            self.spare.push(job.group);
            return false;
        }
        self.next_flight += 1;
        self.flights.push_back(flight);
        true
    }

    /// Acts on a poster's outcome: counts and files a final one, schedules
    /// a retry otherwise.
    fn on_outcome(&mut self, posted: Posted) {
        let Posted {
            flight,
            group,
            outcome,
        } = posted;
        let Some(f) = self.flights.iter_mut().find(|f| f.id == flight) else {
            return;
        };
        let backend = self.backend;
        match settle(backend, &group, outcome, self.dir) {
            Settled::Done => f.state = FlightState::Done,
            Settled::Retry {
                unreachable,
                reason,
            } => {
                f.attempts += 1;
                backend.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                if f.attempts == 1 || f.attempts % 10 == 0 {
                    log!(
                        "backend {}: sending {} failed (attempt {}), will retry: {reason}",
                        backend.name,
                        group.label(),
                        f.attempts
                    );
                }
                if unreachable && backend.set_active(false) {
                    log!(
                        "backend {} ({}) is now inactive: {reason}",
                        backend.name,
                        backend.url
                    );
                }
                let delay = backoff(f.attempts, self.settings.retry_max);
                f.state = FlightState::RetryAt(Instant::now() + delay);
            }
        }
        f.group = Some(group);
    }

    /// The oldest group keeps failing while a later one went through: the
    /// backend works, that group is what it refuses. Set it aside.
    fn set_aside_poison(&mut self) {
        let later_done = self
            .flights
            .iter()
            .skip(1)
            .any(|f| f.state == FlightState::Done && f.attempts == 0);
        let (backend, dir) = (self.backend, self.dir);
        let Some(front) = self.flights.front_mut() else {
            return;
        };
        if later_done
            && front.attempts >= PROBE_AFTER
            && matches!(front.state, FlightState::RetryAt(_))
        {
            if let Some(group) = &front.group {
                dead_letter(
                    backend,
                    group,
                    "refused again and again while later batches were accepted",
                    dir,
                );
                front.state = FlightState::Done;
            }
        }
    }

    /// Moves the cursor past the oldest groups that are done, in order.
    fn commit_done(&mut self) {
        while self
            .flights
            .front()
            .is_some_and(|f| f.state == FlightState::Done)
        {
            let Some(done) = self.flights.pop_front() else {
                break;
            };
            if let Some(mut group) = done.group {
                self.commit(&group);
                // The gzipped body goes back to the allocator, for any
                // backend's next group: kept here, every backend would hold
                // one for good.
                group.gz = Vec::new();
                if self.spare.len() < MAX_SPARE {
                    self.spare.push(group);
                }
            }
        }
    }

    /// Moves the cursor past a finished group, which was the oldest.
    fn commit(&mut self, group: &Group) {
        // The oldest age `/health` reports is now the next group's.
        let next_oldest = match self.flights.front().map(|n| n.first_ms) {
            Some(ms) if ms > 0 => ms,
            _ if group.at_head => 0,
            _ => now_ms(),
        };
        let (reader, backend) = (&mut self.reader, self.backend);
        if let Err(e) = reader.commit(group.end, group.records, group.bytes, next_oldest) {
            log!(
                "backend {}: cannot move the spool cursor: {e}",
                backend.name
            );
        }
        if self.settings.sync == SyncMode::Always {
            if let Err(e) = reader.sync_cursor() {
                log!(
                    "backend {}: cannot sync the spool cursor: {e}",
                    backend.name
                );
            }
        }
    }

    /// At shutdown: wait a moment for the POSTs in flight, record what is
    /// done, and leave the rest in the spool for the next start.
    fn finish(&mut self) {
        let deadline = Instant::now() + FINISH_WAIT;
        let mut sending = self.sending();
        while sending > 0 {
            match self.posters.outcomes().recv_deadline(deadline) {
                Ok(posted) => {
                    self.on_outcome(posted);
                    sending -= 1;
                }
                Err(_) => break,
            }
        }
        self.commit_done();
        let _ = self.reader.sync_cursor();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Delay before retry number `attempt` (1-based): 100 ms doubling, capped.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    Duration::from_millis(ms).min(max)
}

enum Settled {
    /// Final: delivered, refused for good, parked or dead-lettered.
    Done,
    Retry {
        /// No answer: the backend is down.
        unreachable: bool,
        reason: String,
    },
}

/// Counts and files a final outcome; says whether to retry.
fn settle(backend: &Backend, g: &Group, outcome: Outcome, dir: &Path) -> Settled {
    let stats = &backend.stats;
    let points = u64::from(g.points);
    let final_outcome = !matches!(outcome, Outcome::Failed(_) | Outcome::NotSent(_));
    if g.kind == Some(Kind::Statement) && final_outcome {
        let _ = stats
            .statements_pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
        let text = String::from_utf8_lossy(&g.lines);
        match &outcome {
            Outcome::Delivered => log!("backend {}: ran queued statement: {text}", backend.name),
            other => log!(
                "backend {}: queued statement {text:?} failed: {other:?}",
                backend.name
            ),
        }
    }
    match outcome {
        Outcome::Delivered => {
            stats.points_delivered.fetch_add(points, Ordering::Relaxed);
            Settled::Done
        }
        Outcome::Rejected(reason) => {
            log!(
                "backend {}: refused part of {}: {reason}",
                backend.name,
                g.label()
            );
            stats.points_rejected.fetch_add(points, Ordering::Relaxed);
            Settled::Done
        }
        Outcome::DatabaseNotFound(reason) | Outcome::RetentionPolicyNotFound(reason) => {
            log!(
                "backend {}: parked {} ({reason}); it exists on no other backend: create it and re-send {}",
                backend.name,
                g.label(),
                dir.join("parked.lp").display()
            );
            file_aside(dir, "parked.lp", g, &reason);
            stats.records_parked.fetch_add(g.records, Ordering::Relaxed);
            stats.points_parked.fetch_add(points, Ordering::Relaxed);
            Settled::Done
        }
        Outcome::TooLarge => {
            dead_letter(
                backend,
                g,
                "a single point is larger than the backend accepts (413)",
                dir,
            );
            Settled::Done
        }
        Outcome::Failed(e) => Settled::Retry {
            unreachable: e.is_no_answer(),
            reason: e.reason(),
        },
        Outcome::NotSent(reason) => Settled::Retry {
            unreachable: false,
            reason,
        },
    }
}

fn dead_letter(backend: &Backend, g: &Group, reason: &str, dir: &Path) {
    log!(
        "backend {}: {} rejected for good ({reason}); written to {}",
        backend.name,
        g.label(),
        dir.join("deadletter.lp").display()
    );
    file_aside(dir, "deadletter.lp", g, reason);
    let stats = &backend.stats;
    stats
        .records_dead_lettered
        .fetch_add(g.records, Ordering::Relaxed);
    stats
        .points_dead_lettered
        .fetch_add(u64::from(g.points), Ordering::Relaxed);
}

/// Appends a group to a text file beside the spool: a `#` header line (a
/// comment to InfluxDB) and the lines as they were, so the file can be
/// re-sent with curl once the cause is fixed.
fn file_aside(dir: &Path, name: &str, g: &Group, reason: &str) {
    let mut text = format!(
        "# time_ms={} db={:?} rp={:?} points={} reason={:?}\n",
        now_ms(),
        g.db,
        g.rp,
        g.points,
        reason
    )
    .into_bytes();
    if g.kind == Some(Kind::Statement) {
        text.extend_from_slice(b"# statement: ");
        text.extend(g.lines.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        text.push(b'\n');
    } else {
        text.extend_from_slice(&g.text());
    }
    let result = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_data()));
    if let Err(e) = result {
        log!("cannot write {}: {e}", dir.join(name).display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(10);
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(2, max), Duration::from_millis(200));
        assert_eq!(backoff(40, max), max);
    }
}
