//! The sender thread of one backend: delivers its spool in order.
//!
//! Loop: wait for records after the cursor; while the backend is inactive,
//! wait; otherwise gather a *group* (consecutive write records of one
//! (db, rp), up to `flush_size` points; a statement record is a group of its
//! own), linger up to `flush_time` for a group that is still small, send it,
//! and act on the outcome:
//!
//! | outcome | action |
//! |---|---|
//! | 2xx | delivered: commit |
//! | 400 (partial write, type conflict) | InfluxDB kept the good points: count, log, commit |
//! | 404 `database not found` | create the database when another backend has it, and retry; else park |
//! | `retention policy not found` | park |
//! | 413 | split in halves, send each (recursively) |
//! | other status | retry with backoff; after [`PROBE_AFTER`] failures send the next group: if it goes through, the stuck group is poison and goes to the dead-letter file |
//! | no answer | mark the backend inactive, retry after it is back |
//!
//! "Commit" moves the spool cursor past the group; nothing is ever skipped
//! without being delivered, refused by InfluxDB, parked or dead-lettered,
//! and each of those is counted in `/health` and logged.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::sender::{Outcome, Sender};
use super::WriterSettings;
use crate::cluster::{Backend, Cluster};
use crate::log;
use crate::spool::record::Kind;
use crate::spool::{Pos, Reader};

/// Failures of one group before the next group is tried past it.
const PROBE_AFTER: u32 = 3;
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
    /// A send failed: the group is retried as it is and never grows, so
    /// what comes after it can be tried past it (poison detection).
    frozen: bool,
}

impl Group {
    fn label(&self) -> String {
        format!(
            "{} points for db {:?} rp {:?}",
            self.points, self.db, self.rp
        )
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
    out.frozen = false;
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

/// The sender thread. Returns when the spool is closed (shutdown).
pub fn send_loop(
    cluster: &Cluster,
    backend: &Backend,
    mut reader: Reader,
    s: &WriterSettings,
    dir: &Path,
) {
    let mut client = Sender::new(s.write_timeout);
    let mut group = Group::default();
    let mut probe = Group::default();
    let mut attempts = 0u32;
    let mut last_cursor_sync = Instant::now();
    loop {
        if s.sync != crate::spool::SyncMode::None && last_cursor_sync.elapsed() >= s.flush_time {
            last_cursor_sync = Instant::now();
            if let Err(e) = reader.sync_cursor() {
                log!(
                    "backend {}: cannot sync the spool cursor: {e}",
                    backend.name
                );
            }
        }
        let cursor = reader.cursor();
        // Keep a group that was not sent yet (lingering, or to retry) and
        // only read what arrived after it.
        let kept = group.kind.is_some() && group.start == cursor;
        if !kept && !reader.wait_for_more(cursor, Duration::from_millis(200)) {
            backend.set_rewriting(false);
            if reader.is_closed() {
                let _ = reader.sync_cursor();
                return;
            }
            continue;
        }
        if reader.is_closed() {
            // Shutdown: what is left stays in the spool for the next start.
            let _ = reader.sync_cursor();
            return;
        }
        if !backend.is_active() {
            backend.set_rewriting(true);
            std::thread::sleep(s.check_interval.min(Duration::from_millis(200)));
            continue;
        }
        let read = if kept {
            if group.at_head && !group.frozen {
                extend(&mut reader, s.flush_size, &mut group)
            } else {
                Ok(true)
            }
        } else {
            gather(&mut reader, cursor, s.flush_size, &mut group)
        };
        match read {
            Ok(true) => {}
            Ok(false) => {
                // Nothing deliverable after the cursor: only the end of an
                // old segment or damaged bytes. Step over them for good, or
                // this loop would spin on them.
                let to = reader.scanned_to();
                if to > cursor {
                    if let Err(e) = reader.commit(to, 0, 0, 0) {
                        log!(
                            "backend {}: cannot move the spool cursor: {e}",
                            backend.name
                        );
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                continue;
            }
            Err(e) => {
                log!("backend {}: cannot read the spool: {e}", backend.name);
                group.kind = None;
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        // A small group that is still fresh waits for company, up to
        // flush_time after its first record was written.
        let age = Duration::from_millis(now_ms().saturating_sub(group.first_ms));
        if group.kind == Some(Kind::Write)
            && group.at_head
            && (group.points as usize) < s.flush_size
            && age < s.flush_time
        {
            reader.wait_for_more(group.end, s.flush_time - age);
            // Next turn extends the group with whatever arrived.
            continue;
        }
        let outcome = send_group(&mut client, cluster, backend, &group);
        match settle(backend, &group, outcome, dir) {
            Settled::Done => {
                attempts = 0;
                commit(&mut reader, backend, &group, s);
                group.kind = None;
            }
            Settled::Retry {
                unreachable,
                reason,
            } => {
                group.frozen = true;
                attempts += 1;
                backend.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                backend.set_rewriting(true);
                if attempts == 1 || attempts % 10 == 0 {
                    log!(
                        "backend {}: sending {} failed (attempt {attempts}), will retry: {reason}",
                        backend.name,
                        group.label()
                    );
                }
                if unreachable {
                    if backend.set_active(false) {
                        log!(
                            "backend {} ({}) is now inactive: {reason}",
                            backend.name,
                            backend.url
                        );
                    }
                } else if attempts >= PROBE_AFTER
                    && try_past_poison(
                        &mut client,
                        cluster,
                        backend,
                        &mut reader,
                        &group,
                        &mut probe,
                        s,
                        dir,
                        &reason,
                    )
                {
                    attempts = 0;
                    group.kind = None;
                    continue;
                }
                if reader.is_closed() {
                    let _ = reader.sync_cursor();
                    return;
                }
                std::thread::sleep(backoff(attempts, s.retry_max));
            }
        }
    }
}

/// Sends the group after a stuck one. If the backend takes it, the stuck
/// group is poison: it goes to the dead-letter file and both are committed.
#[allow(clippy::too_many_arguments)]
fn try_past_poison(
    client: &mut Sender,
    cluster: &Cluster,
    backend: &Backend,
    reader: &mut Reader,
    stuck: &Group,
    probe: &mut Group,
    s: &WriterSettings,
    dir: &Path,
    reason: &str,
) -> bool {
    match gather(reader, stuck.end, s.flush_size, probe) {
        Ok(true) => {}
        _ => return false,
    }
    let outcome = send_group(client, cluster, backend, probe);
    match settle(backend, probe, outcome, dir) {
        Settled::Done => {
            dead_letter(backend, stuck, reason, dir);
            commit(reader, backend, stuck, s);
            commit(reader, backend, probe, s);
            true
        }
        Settled::Retry { .. } => false,
    }
}

fn commit(reader: &mut Reader, backend: &Backend, group: &Group, s: &WriterSettings) {
    let next_oldest = if group.at_head { 0 } else { now_ms() };
    if let Err(e) = reader.commit(group.end, group.records, group.bytes, next_oldest) {
        log!(
            "backend {}: cannot move the spool cursor: {e}",
            backend.name
        );
    }
    if s.sync == crate::spool::SyncMode::Always {
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
            let outcome = send_lines(client, backend, &g.db, &g.rp, &g.lines, g.points, 0);
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
                    send_lines(client, backend, &g.db, &g.rp, &g.lines, g.points, 0)
                }
                other => other,
            }
        }
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
        text.extend_from_slice(&g.lines);
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
