//! The sender of one backend: delivers its spool, oldest first, with up to
//! `rewrite_threads` POSTs in flight.
//!
//! The sender thread reads the spool and cuts it into *groups*: consecutive
//! write records of one (db, rp), up to `flush_size` points (a statement
//! record is a group of its own). A group at the head that is still small
//! lingers up to `flush_time` after its first record was written. Groups are
//! handed to `poster-<backend>-<i>` threads, each with its own keep-alive
//! client; their outcomes come back over a channel and the sender acts on
//! them:
//!
//! | outcome | action |
//! |---|---|
//! | 2xx | delivered |
//! | 400 (partial write, type conflict) | InfluxDB kept the good points: count, log, done |
//! | 404 `database not found` | the poster creates the database when another backend has it, and sends again; else parked |
//! | `retention policy not found` | parked |
//! | 413 | the poster splits it in halves, recursively |
//! | other status | retried with backoff, the group unchanged; once the oldest group has failed [`PROBE_AFTER`] times while a later one went through, it is poison: dead-letter file |
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
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, unbounded};

use super::sender::{Gzipper, Outcome, Sender};
use super::WriterSettings;
use crate::cluster::{Backend, Cluster};
use crate::log;
use crate::spool::record::Kind;
use crate::spool::{Pos, Reader, SyncMode};

/// Failures of one group before the next group is tried past it.
const PROBE_AFTER: u32 = 3;
/// How often a lingering group looks for more records.
const LINGER_POLL: Duration = Duration::from_millis(20);
/// Most bytes of lines gathered into one POST.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// Consecutive records sent as one request.
#[derive(Debug, Default)]
struct Group {
    kind: Option<Kind>,
    db: String,
    rp: String,
    lines: Vec<u8>,
    points: u32,
    records: u64,
    bytes: u64,
    first_ms: u64,
    start: Pos,
    end: Pos,
    /// The group reaches the head: nothing more was written yet.
    at_head: bool,
    /// A write group once handed to a poster: its lines gzipped (the lines
    /// themselves stay in the sender's one gathering buffer).
    gz: Vec<u8>,
}

impl Group {
    fn label(&self) -> String {
        format!(
            "{} points for db {:?} rp {:?}",
            self.points, self.db, self.rp
        )
    }

    /// A packet for a poster: this group's description, and its lines
    /// gzipped (a statement keeps its text). Reuses `into`'s buffers.
    fn pack(&self, mut into: Group, zip: &mut Gzipper) -> std::io::Result<Group> {
        into.kind = self.kind;
        into.db.clone_from(&self.db);
        into.rp.clone_from(&self.rp);
        into.points = self.points;
        into.records = self.records;
        into.bytes = self.bytes;
        into.first_ms = self.first_ms;
        into.start = self.start;
        into.end = self.end;
        into.at_head = self.at_head;
        into.lines.clear();
        if self.kind == Some(Kind::Statement) {
            into.lines.extend_from_slice(&self.lines);
        } else {
            into.gz = zip.gzip(&self.lines, std::mem::take(&mut into.gz))?;
        }
        Ok(into)
    }

    /// The lines as text: the gathered ones, or a packet's gunzipped (only
    /// needed on rare paths: 413 splits, parking, dead letters).
    fn text(&self) -> std::borrow::Cow<'_, [u8]> {
        if !self.lines.is_empty() || self.gz.is_empty() {
            return std::borrow::Cow::Borrowed(&self.lines);
        }
        let mut out = Vec::new();
        let _ = flate2::read::GzDecoder::new(&self.gz[..]).read_to_end(&mut out);
        std::borrow::Cow::Owned(out)
    }
}

/// Reads a group from `from`. `None` when nothing is waiting.
fn gather(
    reader: &mut Reader,
    from: Pos,
    max_points: usize,
    out: &mut Group,
) -> std::io::Result<bool> {
    out.kind = None;
    out.lines.clear();
    out.points = 0;
    out.records = 0;
    out.bytes = 0;
    out.start = from;
    out.end = from;
    extend(reader, max_points, out)
}

/// Reads more records into `out`, from its end, while they belong to it.
/// A lingering group grows this way without reading its records again.
fn extend(reader: &mut Reader, max_points: usize, out: &mut Group) -> std::io::Result<bool> {
    if out.kind == Some(Kind::Statement) {
        return Ok(true);
    }
    out.at_head = false;
    let mut at = out.end;
    loop {
        let Some(r) = reader.next(at)? else {
            out.at_head = true;
            break;
        };
        let rec = &r.record;
        let size = if r.end.seg == at.seg {
            r.end.off - at.off
        } else {
            r.end.off
        };
        match out.kind {
            None => {
                out.kind = Some(rec.kind);
                out.db.clear();
                out.db.push_str(rec.db);
                out.rp.clear();
                out.rp.push_str(rec.rp);
                out.first_ms = rec.appended_at_ms;
            }
            Some(Kind::Write)
                if rec.kind == Kind::Write
                    && rec.db == out.db
                    && rec.rp == out.rp
                    && (out.points as usize) < max_points
                    && out.lines.len() + rec.payload.len() <= MAX_GROUP_BYTES => {}
            Some(_) => break,
        }
        out.lines.extend_from_slice(rec.payload);
        out.points += rec.points;
        out.records += 1;
        out.bytes += size;
        out.end = r.end;
        at = r.end;
        if rec.kind == Kind::Statement {
            break;
        }
    }
    Ok(out.kind.is_some())
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

/// A group handed to a poster, until its outcome is final.
struct Flight {
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

/// Work for a poster: flight number and the group (given back with the
/// outcome so its buffer is reused).
type Job = (u64, Group);
type Posted = (u64, Group, Outcome);

/// The sender thread. Returns when the spool is closed (shutdown), after
/// giving the POSTs in flight a moment to finish.
pub fn send_loop(
    cluster: &Arc<Cluster>,
    backend: &Arc<Backend>,
    mut reader: Reader,
    s: &WriterSettings,
    dir: &Path,
) {
    let slots = s.in_flight.max(1);
    let (job_tx, job_rx) = bounded::<Job>(slots);
    let (done_tx, done_rx) = unbounded::<Posted>();
    for i in 0..slots {
        let (jobs, done) = (job_rx.clone(), done_tx.clone());
        let (c, b, timeout) = (Arc::clone(cluster), Arc::clone(backend), s.write_timeout);
        let spawned = std::thread::Builder::new()
            .name(format!("poster-{}-{i}", backend.name))
            .spawn(move || {
                let mut client = Sender::new(timeout);
                for (id, group) in jobs {
                    let outcome = send_group(&mut client, &c, &b, &group);
                    if done.send((id, group, outcome)).is_err() {
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
    drop((job_rx, done_tx));
    let wake = reader.wakeups();
    let mut flights: VecDeque<(u64, Flight)> = VecDeque::new();
    let mut next_id = 0u64;
    let mut spare: Vec<Group> = Vec::new();
    // The one buffer lines are gathered in (a lingering group stays here).
    let mut gathered = Group::default();
    let mut zip = Gzipper::new();
    let mut last_cursor_sync = Instant::now();
    loop {
        if s.sync != SyncMode::None && last_cursor_sync.elapsed() >= s.flush_time {
            last_cursor_sync = Instant::now();
            if let Err(e) = reader.sync_cursor() {
                log!(
                    "backend {}: cannot sync the spool cursor: {e}",
                    backend.name
                );
            }
        }
        // Outcomes that arrived, then commit what is done, oldest first.
        while let Ok(posted) = done_rx.try_recv() {
            on_posted(backend, &mut flights, posted, s, dir);
        }
        find_poison(backend, &mut flights, dir);
        while flights
            .front()
            .is_some_and(|(_, f)| f.state == FlightState::Done)
        {
            if let Some((_, f)) = flights.pop_front() {
                let next = flights.front().map(|(_, n)| n.first_ms);
                if let Some(group) = f.group {
                    commit(&mut reader, backend, &group, next, s);
                    spare.push(group);
                }
            }
        }
        let sending = flights
            .iter()
            .filter(|(_, f)| f.state == FlightState::Sending)
            .count();
        if reader.is_closed() {
            finish(
                backend,
                &mut reader,
                &done_rx,
                &mut flights,
                sending,
                s,
                dir,
            );
            return;
        }
        let active = backend.is_active();
        backend.set_rewriting(
            !flights.is_empty() && (!active || flights.iter().any(|(_, f)| f.attempts > 0)),
        );
        let mut wait = Duration::from_millis(200);
        if active {
            // Failed groups whose time has come go out again.
            let now = Instant::now();
            for (id, f) in flights.iter_mut() {
                match f.state {
                    FlightState::RetryAt(at) if at <= now => {
                        if let Some(group) = f.group.take() {
                            match job_tx.try_send((*id, group)) {
                                Ok(()) => f.state = FlightState::Sending,
                                Err(e) => f.group = Some(e.into_inner().1),
                            }
                        }
                    }
                    FlightState::RetryAt(at) => wait = wait.min(at - now),
                    _ => {}
                }
            }
            // New groups, while there are free posters and no barrier.
            if let Some(linger) = dispatch(
                &mut reader,
                &mut flights,
                &mut next_id,
                &mut spare,
                &mut gathered,
                &mut zip,
                &job_tx,
                s,
                backend,
            ) {
                wait = wait.min(linger);
            }
        }
        if gathered.kind.is_some() {
            // A group is lingering: new records need not wake us one by one
            // (every append publishes); look again in a little while.
            crossbeam_channel::select! {
                recv(done_rx) -> posted => {
                    if let Ok(posted) = posted {
                        on_posted(backend, &mut flights, posted, s, dir);
                    }
                }
                default(wait.min(LINGER_POLL)) => {}
            }
            let _ = wake.try_recv();
            continue;
        }
        crossbeam_channel::select! {
            recv(done_rx) -> posted => {
                if let Ok(posted) = posted {
                    on_posted(backend, &mut flights, posted, s, dir);
                }
            }
            recv(wake) -> _ => {}
            default(wait) => {}
        }
    }
}

/// Cuts new groups from the spool and hands them to free posters. Returns
/// how long the newest group may still linger, if it does.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    reader: &mut Reader,
    flights: &mut VecDeque<(u64, Flight)>,
    next_id: &mut u64,
    spare: &mut Vec<Group>,
    gathered: &mut Group,
    zip: &mut Gzipper,
    job_tx: &crossbeam_channel::Sender<Job>,
    s: &WriterSettings,
    backend: &Backend,
) -> Option<Duration> {
    let slots = s.in_flight.max(1);
    loop {
        let sending = flights
            .iter()
            .filter(|(_, f)| f.state == FlightState::Sending)
            .count();
        // Bound the groups held in memory, and respect statement barriers.
        let barrier = flights.iter().any(|(_, f)| f.statement);
        if sending >= slots || flights.len() >= 2 * slots || barrier {
            return None;
        }
        let from = flights.back().map_or(reader.cursor(), |(_, f)| f.end);
        // A group that lingered last turn grows from where it ended instead
        // of being read again.
        let read = if gathered.kind.is_some() && gathered.start == from && gathered.at_head {
            extend(reader, s.flush_size, gathered)
        } else {
            gather(reader, from, s.flush_size, gathered)
        };
        match read {
            Ok(true) => {}
            Ok(false) => {
                // Only segment ends or damaged bytes after the cursor: step
                // over them for good, or they would be read again and again.
                let to = reader.scanned_to();
                if flights.is_empty() && to > reader.cursor() {
                    if let Err(e) = reader.commit(to, 0, 0, 0) {
                        log!(
                            "backend {}: cannot move the spool cursor: {e}",
                            backend.name
                        );
                    }
                }
                return None;
            }
            Err(e) => {
                log!("backend {}: cannot read the spool: {e}", backend.name);
                gathered.kind = None;
                return Some(Duration::from_secs(1));
            }
        }
        if gathered.kind == Some(Kind::Statement) && !flights.is_empty() {
            // A statement waits until everything before it is done.
            return None;
        }
        let age = Duration::from_millis(now_ms().saturating_sub(gathered.first_ms));
        if gathered.kind == Some(Kind::Write)
            && gathered.at_head
            && (gathered.points as usize) < s.flush_size
            && age < s.flush_time
        {
            return Some(s.flush_time - age);
        }
        let group = match gathered.pack(spare.pop().unwrap_or_default(), zip) {
            Ok(g) => g,
            Err(e) => {
                log!("backend {}: cannot gzip a batch: {e}", backend.name);
                return Some(Duration::from_secs(1));
            }
        };
        gathered.kind = None;
        let id = *next_id;
        *next_id += 1;
        let flight = Flight {
            end: group.end,
            first_ms: group.first_ms,
            statement: group.kind == Some(Kind::Statement),
            group: None,
            attempts: 0,
            state: FlightState::Sending,
        };
        if let Err(e) = job_tx.try_send((id, group)) {
            // No poster free after all (or gone): try again next turn.
            spare.push(e.into_inner().1);
            return None;
        }
        flights.push_back((id, flight));
    }
}

/// Records a poster's outcome on its flight.
fn on_posted(
    backend: &Backend,
    flights: &mut VecDeque<(u64, Flight)>,
    (id, group, outcome): Posted,
    s: &WriterSettings,
    dir: &Path,
) {
    let Some((_, f)) = flights.iter_mut().find(|(i, _)| *i == id) else {
        return;
    };
    match settle(backend, &group, outcome, dir) {
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
            f.state = FlightState::RetryAt(Instant::now() + backoff(f.attempts, s.retry_max));
        }
    }
    f.group = Some(group);
}

/// The oldest group keeps failing while a later one went through: the
/// backend works, that group is what it refuses. Set it aside.
fn find_poison(backend: &Backend, flights: &mut VecDeque<(u64, Flight)>, dir: &Path) {
    let later_done = flights
        .iter()
        .skip(1)
        .any(|(_, f)| f.state == FlightState::Done && f.attempts == 0);
    if let Some((_, front)) = flights.front_mut() {
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
}

/// At shutdown: wait a moment for the POSTs in flight, record what is done,
/// and leave the rest in the spool for the next start.
fn finish(
    backend: &Backend,
    reader: &mut Reader,
    done_rx: &crossbeam_channel::Receiver<Posted>,
    flights: &mut VecDeque<(u64, Flight)>,
    mut sending: usize,
    s: &WriterSettings,
    dir: &Path,
) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while sending > 0 {
        match done_rx.recv_deadline(deadline) {
            Ok(posted) => {
                on_posted(backend, flights, posted, s, dir);
                sending -= 1;
            }
            Err(_) => break,
        }
    }
    while flights
        .front()
        .is_some_and(|(_, f)| f.state == FlightState::Done)
    {
        if let Some((_, f)) = flights.pop_front() {
            let next = flights.front().map(|(_, n)| n.first_ms);
            if let Some(group) = f.group {
                commit(reader, backend, &group, next, s);
            }
        }
    }
    let _ = reader.sync_cursor();
}

/// Moves the cursor past a finished group. `next_first_ms` is when the
/// group after it was written, if one is in flight (for the oldest age).
fn commit(
    reader: &mut Reader,
    backend: &Backend,
    group: &Group,
    next_first_ms: Option<u64>,
    s: &WriterSettings,
) {
    let next_oldest = match next_first_ms {
        Some(ms) if ms > 0 => ms,
        _ if group.at_head => 0,
        _ => now_ms(),
    };
    if let Err(e) = reader.commit(group.end, group.records, group.bytes, next_oldest) {
        log!(
            "backend {}: cannot move the spool cursor: {e}",
            backend.name
        );
    }
    if s.sync == SyncMode::Always {
        if let Err(e) = reader.sync_cursor() {
            log!(
                "backend {}: cannot sync the spool cursor: {e}",
                backend.name
            );
        }
    }
}

enum Settled {
    /// Final: delivered, refused for good, parked or dead-lettered.
    Done,
    Retry {
        unreachable: bool,
        reason: String,
    },
}

/// Sends a group, splitting it on 413 and creating a missing database.
fn send_group(client: &mut Sender, cluster: &Cluster, backend: &Backend, g: &Group) -> Outcome {
    match g.kind {
        Some(Kind::Statement) => {
            let text = String::from_utf8_lossy(&g.lines);
            client.query(backend, &g.db, &text)
        }
        _ => {
            let outcome = send_packed(client, backend, g);
            let Outcome::DatabaseNotFound(reason) = outcome else {
                return outcome;
            };
            if !exists_elsewhere(client, cluster, backend, &g.db) {
                return Outcome::DatabaseNotFound(reason);
            }
            let create = format!(
                "CREATE DATABASE \"{}\"",
                g.db.replace('\\', "\\\\").replace('"', "\\\"")
            );
            match client.query(backend, "", &create) {
                Outcome::Delivered => {
                    log!(
                        "backend {}: created database {:?}, which other backends have",
                        backend.name,
                        g.db
                    );
                    send_packed(client, backend, g)
                }
                other => other,
            }
        }
    }
}

/// POSTs a packed write group; on 413 splits its lines in halves.
fn send_packed(client: &mut Sender, backend: &Backend, g: &Group) -> Outcome {
    match client.send_gzipped(backend, &g.db, &g.rp, &g.gz) {
        Outcome::TooLarge if g.points > 1 => {
            let lines = g.text();
            send_lines(client, backend, &g.db, &g.rp, &lines, g.points, 0)
        }
        other => other,
    }
}

/// POSTs lines; on 413 sends the two halves in turn.
fn send_lines(
    client: &mut Sender,
    backend: &Backend,
    db: &str,
    rp: &str,
    lines: &[u8],
    points: u32,
    depth: u32,
) -> Outcome {
    match client.send(backend, db, rp, lines) {
        Outcome::TooLarge if points > 1 && depth < 32 => {
            let half = points / 2;
            let cut = lines
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .nth(half as usize - 1)
                .map_or(lines.len(), |(i, _)| i + 1);
            let first = send_lines(client, backend, db, rp, &lines[..cut], half, depth + 1);
            if first != Outcome::Delivered {
                return first;
            }
            // The first half is stored: a retry of the whole group resends
            // it, which InfluxDB absorbs (same series and timestamps).
            send_lines(
                client,
                backend,
                db,
                rp,
                &lines[cut..],
                points - half,
                depth + 1,
            )
        }
        other => other,
    }
}

/// Whether another active backend has database `db`.
fn exists_elsewhere(client: &mut Sender, cluster: &Cluster, me: &Backend, db: &str) -> bool {
    cluster
        .backends
        .iter()
        .filter(|b| b.id != me.id && b.is_active())
        .any(|b| {
            client
                .databases(b)
                .is_some_and(|dbs| dbs.iter().any(|d| d == db))
        })
}

/// Counts and files a final outcome; says whether to retry.
fn settle(backend: &Backend, g: &Group, outcome: Outcome, dir: &Path) -> Settled {
    let stats = &backend.stats;
    let points = u64::from(g.points);
    let final_outcome = !matches!(outcome, Outcome::Retry(_) | Outcome::Unreachable(_));
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
        Outcome::Retry(reason) => Settled::Retry {
            unreachable: false,
            reason,
        },
        Outcome::Unreachable(reason) => Settled::Retry {
            unreachable: true,
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

    #[test]
    fn group_label_names_db_and_rp() {
        let g = Group {
            db: "d".into(),
            rp: "r".into(),
            points: 3,
            ..Group::default()
        };
        assert_eq!(g.label(), "3 points for db \"d\" rp \"r\"");
    }
}
