//! One operation at work: the `transfer` coordinator thread and its pool
//! of `transfer-<i>` copy workers.
//!
//! The coordinator marks the target circle (resync: the cluster), tells
//! the peers, lists the sources and plans the tasks (unless the tlog holds
//! the plan already: a resume), creates every database and retention policy
//! on the destinations, announces the moves to the cluster, then hands the
//! unfinished tasks to `worker` threads over a channel and, while they work,
//! writes `transfer.json` at most once a second when something changed. It
//! is the only writer of that file. A worker copies one measurement of one
//! retention policy per task, from the task's `last_time` on, then counts
//! the points on both sides.
//!
//! A backend that stays unreachable through the copy's retries and
//! `task_attempts` more (backoff doubling) stops the whole operation as
//! `failed` (the tlog stays: a POST of the same operation or a restart
//! resumes it). A refusal (the measurement vanished, an InfluxQL error)
//! fails that task only; the operation then ends `failed` listing it, and a
//! resume tries it again. At shutdown the workers stop between batches and
//! the file is saved as `stopped`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::copy::{self, CopyError, CopyJob};
use super::plan::{self, DbListing, Kind, Listing};
use super::tlog::{
    self, OpLog, SchemaRecord, SourceRecord, TaskRecord, TaskState, TransferFile, VerifiedCopy,
};
use super::{lock, Transfers};
use crate::cluster::Backend;
use crate::log;

/// Cleanup counters of one backend.
#[derive(Debug, Clone, Default)]
pub struct CleanupStats {
    pub circle: usize,
    pub database_total: u64,
    pub database_done: u64,
    pub measurement_total: u64,
    pub measurement_done: u64,
    pub dropped: u64,
    pub inplace: u64,
    /// Dropped with proof (a verified copy, or the owner holds as many).
    pub verified: u64,
    /// Kept: no proof of a copy.
    pub unverified: u64,
}

/// What the workers and the coordinator share under one lock.
pub struct Progress {
    pub file: TransferFile,
    /// Changed since the last save.
    dirty: bool,
    /// `running`, `done`, `failed` or `stopped`.
    pub state: &'static str,
    pub finished: Option<Instant>,
    /// Source URL -> its last error.
    pub last_errors: HashMap<String, String>,
    pub cleanup: HashMap<String, CleanupStats>,
    /// (circle, db, measurement) -> tasks not finished, for `end_move`.
    moving: HashMap<(usize, String, String), usize>,
}

/// The current or last operation.
pub struct Job {
    pub op: plan::Operation,
    pub removed: Vec<Arc<Backend>>,
    pub progress: Mutex<Progress>,
    /// Workers stop between batches (failure or shutdown).
    halt: AtomicBool,
    /// The halt is the proxy stopping: the state is `stopped`.
    shutdown: AtomicBool,
    pub started: Instant,
    oplog: OpLog,
    /// Disconnected once the coordinator is done.
    ended: Receiver<()>,
    /// Disconnected once the moves are announced to the cluster (or the
    /// coordinator gave up before).
    announced: Receiver<()>,
}

impl Job {
    /// Waits at most `limit` until the cluster knows which measurements
    /// move, so that reads of them are answered from their sources.
    pub fn wait_announced(&self, limit: Duration) {
        let _ = self.announced.recv_timeout(limit);
    }

    pub fn is_running(&self) -> bool {
        lock(&self.progress).state == "running"
    }

    /// Seconds of work (until the end, once ended).
    pub fn elapsed(&self) -> f64 {
        let end = lock(&self.progress).finished.unwrap_or_else(Instant::now);
        end.duration_since(self.started).as_secs_f64()
    }

    /// Stops the operation at shutdown and waits at most `grace` for it.
    pub fn shut_down(&self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.shutdown.store(true, Ordering::Release);
        self.halt.store(true, Ordering::Release);
        if let Err(RecvTimeoutError::Timeout) = self.ended.recv_timeout(grace) {
            log!("transfer: the operation did not stop within {grace:?}; its last saved progress will be resumed");
        }
    }

    /// Stops the operation as failed with `error` (the first one wins).
    fn fail(&self, error: String) {
        let mut p = lock(&self.progress);
        if p.file.error.is_empty() {
            p.file.error = error;
        }
        self.halt.store(true, Ordering::Release);
    }

    fn halted(&self) -> bool {
        self.halt.load(Ordering::Acquire)
    }

    fn note_error(&self, source: &str, error: &str) {
        lock(&self.progress)
            .last_errors
            .insert(source.to_string(), error.to_string());
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut TaskRecord)) {
        let mut p = lock(&self.progress);
        if let Some(t) = p.file.tasks.get_mut(i) {
            f(t);
        }
        p.dirty = true;
    }
}

/// Marks the cluster, starts the coordinator of `file`'s operation and
/// returns its job.
pub fn spawn(svc: &Arc<Transfers>, file: TransferFile) -> std::io::Result<Arc<Job>> {
    let removed: Vec<Arc<Backend>> = file
        .removed
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let circle = file.operation.circle_id.unwrap_or(0);
            Arc::new(Backend::new(
                svc.cluster.backends.len() + i,
                circle,
                &r.config(),
            ))
        })
        .collect();
    let (end_tx, ended) = crossbeam_channel::bounded::<()>(0);
    let (announce_tx, announced) = crossbeam_channel::bounded::<()>(0);
    let job = Arc::new(Job {
        op: file.operation.clone(),
        removed,
        oplog: OpLog::open(&svc.settings.tlog_dir, file.operation.kind.as_str()),
        progress: Mutex::new(Progress {
            file,
            dirty: true,
            state: "running",
            finished: None,
            last_errors: HashMap::new(),
            cleanup: HashMap::new(),
            moving: HashMap::new(),
        }),
        halt: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        started: Instant::now(),
        ended,
        announced,
    });
    mark(svc, &job.op, true);
    let (svc2, job2) = (Arc::clone(svc), Arc::clone(&job));
    let spawned = std::thread::Builder::new()
        .name("transfer".into())
        .spawn(move || {
            // A bug must not leave the operation "running" for ever (every
            // later one would be refused as busy).
            let mut announce = Some(announce_tx);
            if catch_unwind(AssertUnwindSafe(|| coordinate(&svc2, &job2, &mut announce))).is_err() {
                job2.fail("internal error: the transfer thread panicked".into());
                let _ = catch_unwind(AssertUnwindSafe(|| finish(&svc2, &job2)));
            }
            drop(end_tx);
        });
    if let Err(e) = spawned {
        mark(svc, &job.op, false);
        return Err(e);
    }
    Ok(job)
}

/// Sets or clears the cluster's mark of `op`'s target.
fn mark(svc: &Transfers, op: &plan::Operation, on: bool) {
    match op.target_circle() {
        Some(c) => svc.cluster.set_transferring(c, on),
        None => svc.cluster.set_resyncing(on),
    }
}

/// The peers' query of `op`'s mark.
fn peer_query(op: &plan::Operation, on: bool) -> String {
    match op.target_circle() {
        Some(c) => format!("circle_id={c}&transferring={on}"),
        None => format!("resyncing={on}"),
    }
}

/// `announce` is dropped once the moves are known to the cluster.
fn coordinate(
    svc: &Arc<Transfers>,
    job: &Arc<Job>,
    announce: &mut Option<crossbeam_channel::Sender<()>>,
) {
    let kind = job.op.kind.as_str();
    job.oplog.line(&format!(
        "{kind} started: {}",
        serde_json::to_string(&job.op).unwrap_or_default()
    ));
    log!("transfer: {kind} started");
    svc.notify_peers(&peer_query(&job.op, true), &job.oplog);
    let outcome = match job.op.kind {
        Kind::Cleanup => cleanup(svc, job),
        _ => copy_all(svc, job, announce),
    };
    announce.take();
    if let Err(e) = outcome {
        job.fail(e);
    }
    finish(svc, job);
}

/// Saves `transfer.json` if something changed (or `force`).
fn save(svc: &Transfers, job: &Job, force: bool) {
    if job.op.kind == Kind::Cleanup {
        return;
    }
    let bytes = {
        let mut p = lock(&job.progress);
        if !p.dirty && !force {
            return;
        }
        p.dirty = false;
        serde_json::to_vec(&p.file)
    };
    let path = svc.settings.tlog_dir.join("transfer.json");
    match bytes
        .map_err(std::io::Error::other)
        .and_then(|b| tlog::write_atomic(&path, &b))
    {
        Ok(()) => {}
        Err(e) => log!("transfer: cannot save {}: {e}", path.display()),
    }
}

fn copy_all(
    svc: &Arc<Transfers>,
    job: &Arc<Job>,
    announce: &mut Option<crossbeam_channel::Sender<()>>,
) -> Result<(), String> {
    let planned = lock(&job.progress).file.planned;
    if !planned {
        make_plan(svc, job)?;
    }
    save(svc, job, true);
    announce_moves(svc, job);
    announce.take();
    make_schema(svc, job)?;
    let todo: Vec<usize> = {
        let p = lock(&job.progress);
        (0..p.file.tasks.len())
            .filter(|&i| !p.file.tasks[i].state.is_finished())
            .collect()
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    for &i in &todo {
        let _ = tx.send(i);
    }
    drop(tx);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    // Copies verified by one thread of their own, so a worker goes on to
    // the next copy at once: counting both sides takes a while, and the
    // last copies would otherwise wait for it.
    let (verify_tx, verify_rx) = crossbeam_channel::unbounded::<Copied>();
    let workers = job.op.worker.clamp(1, todo.len().max(1));
    let mut started = 0;
    for i in 0..workers {
        let (svc, job, rx, verify, done) = (
            Arc::clone(svc),
            Arc::clone(job),
            rx.clone(),
            verify_tx.clone(),
            done_tx.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("transfer-{i}"))
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    if job.halted() {
                        break;
                    }
                    match catch_unwind(AssertUnwindSafe(|| run_task(&svc, &job, task))) {
                        Ok(Some(copied)) => {
                            let _ = verify.send(copied);
                        }
                        Ok(None) => {}
                        Err(_) => panicked(&job, task),
                    }
                }
                drop(done);
            });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => log!("transfer: cannot start worker {i}: {e}"),
        }
    }
    drop(verify_tx);
    if started == 0 && !todo.is_empty() {
        return Err("cannot start any transfer worker".into());
    }
    let (verifier_svc, verifier_job, done) = (Arc::clone(svc), Arc::clone(job), done_tx.clone());
    let verifier = std::thread::Builder::new()
        .name("transfer-verify".into())
        .spawn(move || {
            // Ends when every worker is gone and their copies are verified.
            while let Ok(c) = verify_rx.recv() {
                if verifier_job.halted() {
                    break;
                }
                let (svc, job) = (&verifier_svc, &verifier_job);
                let verified = catch_unwind(AssertUnwindSafe(|| {
                    verify_task(svc, job, c.task, &c.job, &c.name)
                }));
                if verified.is_err() {
                    panicked(job, c.task);
                }
            }
            drop(done);
        });
    if let Err(e) = verifier {
        return Err(format!("cannot start the transfer verifier: {e}"));
    }
    drop(done_tx);
    // The workers end when the tasks run out or the job halts.
    loop {
        match done_rx.recv_timeout(Duration::from_secs(1)) {
            Err(RecvTimeoutError::Disconnected) => break,
            _ => save(svc, job, false),
        }
    }
    Ok(())
}

/// How long planning waits for a source's spool to deliver what it held
/// when the operation started.
const SPOOL_DRAIN: Duration = Duration::from_secs(60);

/// Lists every source and plans the tasks into the file.
fn make_plan(svc: &Transfers, job: &Job) -> Result<(), String> {
    let client = &svc.settings.client;
    let mut listings = Vec::new();
    for src in plan::sources(&job.op, &svc.cluster, &job.removed) {
        if !src.is_active() {
            job.oplog.line(&format!("skipped {}: inactive", src.url));
            job.note_error(&src.url, "inactive: skipped");
            continue;
        }
        // Points acknowledged before the operation and still in the
        // source's spool may be of measurements it no longer owns: they
        // must be on it before it is listed and copied, or they would
        // stay behind on it (and a cleanup would drop them).
        if let Some(spool) = svc.spools.get(src.id).and_then(Option::as_ref) {
            if !spool.wait_delivered(spool.head(), SPOOL_DRAIN) {
                let error = format!(
                    "the spool of backend {} still holds points after {} s: retry once /health shows its records_waiting at 0",
                    src.name,
                    SPOOL_DRAIN.as_secs()
                );
                job.note_error(&src.url, &error);
                return Err(error);
            }
        }
        let listing = list(client, &src, &job.op.dbs).map_err(|e| {
            job.note_error(&src.url, &e.to_string());
            format!("listing {}: {e}", src.url)
        })?;
        listings.push(listing);
    }
    let planned = plan::plan(&job.op, &svc.cluster, &listings);
    let schema = plan::schema(&planned, &listings);
    let mut p = lock(&job.progress);
    let f = &mut p.file;
    for l in &listings {
        f.sources.insert(
            l.source.url.clone(),
            SourceRecord {
                circle: l.source.circle,
                databases: l.dbs.iter().map(|d| d.name.clone()).collect(),
                inplace: planned.inplace.get(&l.source.url).copied().unwrap_or(0),
            },
        );
    }
    f.schema = schema
        .iter()
        .map(|(dest, db, rps)| SchemaRecord {
            dest: dest.url.clone(),
            db: db.clone(),
            rps: rps.iter().map(Into::into).collect(),
        })
        .collect();
    f.tasks = planned
        .tasks
        .iter()
        .map(|t| TaskRecord {
            source: t.source.url.clone(),
            dest: t.dest.url.clone(),
            circle: t.circle,
            db: t.db.clone(),
            rp: t.rp.clone(),
            mm: t.measurement.clone(),
            points: 0,
            bytes: 0,
            state: TaskState::Pending,
        })
        .collect();
    f.planned = true;
    let n = f.tasks.len();
    p.dirty = true;
    job.oplog.line(&format!(
        "planned {n} tasks from {} sources",
        listings.len()
    ));
    Ok(())
}

/// The databases (restricted to `dbs` when given), their retention
/// policies and measurements on `src`.
fn list(client: &copy::Client, src: &Arc<Backend>, dbs: &[String]) -> Result<Listing, CopyError> {
    let mut out = Vec::new();
    for db in copy::databases(client, src)? {
        if db == "_internal" || (!dbs.is_empty() && !dbs.contains(&db)) {
            continue;
        }
        out.push(DbListing {
            rps: copy::retention_policies(client, src, &db)?,
            measurements: copy::measurements(client, src, &db)?,
            name: db,
        });
    }
    Ok(Listing {
        source: Arc::clone(src),
        dbs: out,
    })
}

/// Creates the databases and retention policies the copies write into.
fn make_schema(svc: &Transfers, job: &Job) -> Result<(), String> {
    let schema = lock(&job.progress).file.schema.clone();
    for s in schema {
        let Some(dest) = svc.backend_by_url(&s.dest, &job.removed) else {
            return Err(format!("backend {} is no longer in the config", s.dest));
        };
        let rps: Vec<copy::RetentionPolicy> = s.rps.iter().map(Into::into).collect();
        copy::ensure_database(&svc.settings.client, &dest, &s.db, &rps).map_err(|e| {
            job.note_error(&s.dest, &e.to_string());
            format!("creating database {} on {}: {e}", s.db, s.dest)
        })?;
        svc.cluster.databases.created(&s.db);
    }
    Ok(())
}

/// Tells the cluster which measurements move (rebalance and recovery; a
/// resync has several sources per measurement and moves nothing).
fn announce_moves(svc: &Transfers, job: &Job) {
    if !matches!(job.op.kind, Kind::Rebalance | Kind::Recovery) {
        return;
    }
    let mut p = lock(&job.progress);
    let mut moving: HashMap<(usize, String, String), usize> = HashMap::new();
    for t in p.file.tasks.iter().filter(|t| !t.state.is_finished()) {
        let key = (t.circle, t.db.clone(), t.mm.clone());
        let n = moving.entry(key).or_default();
        if *n == 0 {
            if let Some(src) = svc.backend_by_url(&t.source, &job.removed) {
                svc.cluster.begin_move(t.circle, &t.db, &t.mm, src);
            }
        }
        *n += 1;
    }
    p.moving = moving;
}

/// The task is over (verified or not): the last one of its measurement
/// ends the move.
fn task_over(svc: &Transfers, job: &Job, t: &TaskRecord) {
    let key = (t.circle, t.db.clone(), t.mm.clone());
    let mut p = lock(&job.progress);
    if let Some(n) = p.moving.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            p.moving.remove(&key);
            drop(p);
            svc.cluster.end_move(t.circle, &t.db, &t.mm);
        }
    }
}

/// A task whose copy is complete, waiting for its verification.
struct Copied {
    task: usize,
    job: CopyJob,
    name: String,
}

/// A task whose copy or verification panicked fails; the others go on.
fn panicked(job: &Job, task: usize) {
    let error = "internal error: the copy panicked".to_string();
    job.oplog.line(&format!("failed task {task}: {error}"));
    job.update(task, |t| t.state = TaskState::Failed { error });
}

/// What a worker does with task `i`: copy from where it stopped; the
/// complete copy, to be counted and recorded (`verify_task`).
fn run_task(svc: &Transfers, job: &Job, i: usize) -> Option<Copied> {
    let rec = lock(&job.progress).file.tasks.get(i).cloned()?;
    let name = format!(
        "{} -> {} {}.{}.{}",
        rec.source, rec.dest, rec.db, rec.rp, rec.mm
    );
    let (Some(source), Some(dest)) = (
        svc.backend_by_url(&rec.source, &job.removed),
        svc.backend_by_url(&rec.dest, &job.removed),
    ) else {
        let error = "backend no longer in the config".to_string();
        job.oplog.line(&format!("failed {name}: {error}"));
        job.update(i, |t| t.state = TaskState::Failed { error });
        return None;
    };
    let since_ns = job.op.since.saturating_mul(1_000_000_000);
    let mut cj = CopyJob {
        source,
        dest,
        db: rec.db.clone(),
        rp: rec.rp.clone(),
        measurement: rec.mm.clone(),
        since_ns,
        until_ns: None,
        batch: job.op.batch,
    };
    if rec.state != TaskState::Copied {
        if let TaskState::Copying { last_time } = rec.state {
            cj.since_ns = last_time.max(since_ns);
        }
        if !copy_task(svc, job, i, &mut cj, &name) {
            return None;
        }
    }
    cj.since_ns = since_ns;
    Some(Copied {
        task: i,
        job: cj,
        name,
    })
}

/// Copies with retries; true when the copy is complete.
fn copy_task(svc: &Transfers, job: &Job, i: usize, cj: &mut CopyJob, name: &str) -> bool {
    let settings = &svc.settings;
    let from = cj.since_ns;
    job.update(i, |t| t.state = TaskState::Copying { last_time: from });
    job.oplog.line(&format!("started {name} since {from}"));
    let t0 = Instant::now();
    let totals = |job: &Job| {
        lock(&job.progress)
            .file
            .tasks
            .get(i)
            .map_or((0, 0), |t| (t.points, t.bytes))
    };
    let (points0, bytes0) = totals(job);
    let mut attempt = 0;
    loop {
        let (base_points, base_bytes) = totals(job);
        let result = copy::copy_measurement(&settings.client, cj, &job.halt, &mut |pr| {
            job.update(i, |t| {
                t.points = base_points + pr.points;
                t.bytes = base_bytes + pr.bytes;
                if pr.last_time != i64::MIN {
                    t.state = TaskState::Copying {
                        last_time: pr.last_time,
                    };
                }
            });
            Ok(())
        });
        match result {
            Ok(pr) => {
                job.update(i, |t| {
                    t.points = base_points + pr.points;
                    t.bytes = base_bytes + pr.bytes;
                    t.state = TaskState::Copied;
                });
                let (points, bytes) = totals(job);
                job.oplog.line(&format!(
                    "finished {name}: {} points, {} bytes, {:.3} s",
                    points - points0,
                    bytes - bytes0,
                    t0.elapsed().as_secs_f64()
                ));
                return true;
            }
            Err(CopyError::Stopped) => return false,
            Err(e @ CopyError::Refused { .. }) => {
                let error = e.to_string();
                job.oplog.line(&format!("failed {name}: {error}"));
                job.note_error(&cj.source.url, &error);
                job.update(i, |t| t.state = TaskState::Failed { error });
                return false;
            }
            Err(e @ CopyError::Unreachable { .. }) => {
                let error = e.to_string();
                job.note_error(&cj.source.url, &error);
                // The next attempt starts where this one got.
                let resume = lock(&job.progress)
                    .file
                    .tasks
                    .get(i)
                    .map(|t| t.state.clone());
                if let Some(TaskState::Copying { last_time }) = resume {
                    cj.since_ns = last_time.max(cj.since_ns);
                }
                attempt += 1;
                if attempt > settings.task_attempts {
                    job.oplog.line(&format!(
                        "failed {name}: {error}; the {} stops",
                        job.op.kind.as_str()
                    ));
                    job.fail(error);
                    return false;
                }
                let pause = settings.task_backoff * 2u32.saturating_pow(attempt - 1);
                job.oplog
                    .line(&format!("retrying {name} in {pause:?}: {error}"));
                if !sleep_unless_halted(job, pause) {
                    return false;
                }
            }
        }
    }
}

/// Sleeps `d`; false if the job halted meanwhile.
fn sleep_unless_halted(job: &Job, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if job.halted() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    !job.halted()
}

/// Counts the copied range on both sides and records the verdict.
fn verify_task(svc: &Transfers, job: &Job, i: usize, cj: &CopyJob, name: &str) {
    let settings = &svc.settings;
    let mut attempt = 0;
    let v = loop {
        match copy::verify(&settings.client, cj) {
            Ok(v) => break v,
            Err(CopyError::Stopped) => return,
            Err(e @ CopyError::Refused { .. }) => {
                let error = e.to_string();
                job.oplog.line(&format!("failed to verify {name}: {error}"));
                job.note_error(&cj.source.url, &error);
                job.update(i, |t| t.state = TaskState::Failed { error });
                return;
            }
            Err(e @ CopyError::Unreachable { .. }) => {
                attempt += 1;
                if attempt > settings.task_attempts {
                    job.fail(format!("verifying {name}: {e}"));
                    return;
                }
                if !sleep_unless_halted(job, settings.task_backoff) {
                    return;
                }
            }
        }
    };
    let (source_points, dest_points) = (v.source_points, v.dest_points);
    if v.complete {
        let rec = VerifiedCopy {
            source: cj.source.url.clone(),
            dest: cj.dest.url.clone(),
            db: cj.db.clone(),
            rp: cj.rp.clone(),
            mm: cj.measurement.clone(),
            source_points,
            dest_points,
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if let Err(e) = tlog::record_verified(&settings.tlog_dir, &rec) {
            // Without the record a cleanup would keep the source: safe.
            log!("transfer: cannot record a verified copy: {e}");
        }
        job.update(i, |t| {
            t.state = TaskState::Verified {
                source_points,
                dest_points,
            }
        });
        job.oplog.line(&format!(
            "verified {name}: source {source_points} points, destination {dest_points}"
        ));
    } else {
        job.update(i, |t| {
            t.state = TaskState::Unverified {
                source_points,
                dest_points,
            }
        });
        job.oplog.line(&format!(
            "unverified {name}: source {source_points} points, destination {dest_points}"
        ));
    }
    let rec = lock(&job.progress).file.tasks.get(i).cloned();
    if let Some(t) = rec {
        task_over(svc, job, &t);
    }
}

/// Drops from each backend of the circle the measurements owned by
/// another backend, where a copy to the owner is proven.
fn cleanup(svc: &Transfers, job: &Job) -> Result<(), String> {
    let client = &svc.settings.client;
    let circle = job.op.circle_id.unwrap_or(0);
    let verified = tlog::verified(&svc.settings.tlog_dir).map_err(|e| {
        format!(
            "cannot read the verified copies in {}: {e}",
            svc.settings.tlog_dir.display()
        )
    })?;
    for b in plan::sources(&job.op, &svc.cluster, &[]) {
        if job.halted() {
            return Ok(());
        }
        let stats = |f: &dyn Fn(&mut CleanupStats)| {
            let mut p = lock(&job.progress);
            let s = p.cleanup.entry(b.url.clone()).or_default();
            s.circle = circle;
            f(s);
        };
        stats(&|_| ());
        if !b.is_active() {
            job.oplog.line(&format!("skipped {}: inactive", b.url));
            job.note_error(&b.url, "inactive: skipped");
            continue;
        }
        let listing = list(client, &b, &job.op.dbs).map_err(|e| {
            job.note_error(&b.url, &e.to_string());
            format!("listing {}: {e}", b.url)
        })?;
        let n = listing.dbs.len() as u64;
        stats(&|s| s.database_total = n);
        for db in &listing.dbs {
            let n = db.measurements.len() as u64;
            stats(&|s| s.measurement_total += n);
            for mm in &db.measurements {
                if job.halted() {
                    return Ok(());
                }
                let Some(owner) = plan::misplaced(&svc.cluster, circle, &b, &db.name, mm) else {
                    stats(&|s| {
                        s.inplace += 1;
                        s.measurement_done += 1;
                    });
                    continue;
                };
                let name = format!("{} {}.{} (owner {})", b.url, db.name, mm, owner.url);
                let proof = if job.op.force {
                    Ok(true)
                } else {
                    proven(client, &verified, &b, &owner, db, mm)
                };
                match proof {
                    Ok(true) => {
                        copy::drop_measurement(client, &b, &db.name, mm).map_err(|e| {
                            job.note_error(&b.url, &e.to_string());
                            format!("dropping {name}: {e}")
                        })?;
                        let forced = job.op.force;
                        stats(&|s| {
                            s.dropped += 1;
                            s.verified += u64::from(!forced);
                        });
                        job.oplog.line(&format!(
                            "dropped {name}{}",
                            if forced { " (forced)" } else { "" }
                        ));
                    }
                    Ok(false) => {
                        stats(&|s| s.unverified += 1);
                        job.oplog.line(&format!(
                            "kept {name}: no verified copy, the owner holds fewer points"
                        ));
                    }
                    Err(e) => {
                        stats(&|s| s.unverified += 1);
                        job.note_error(&b.url, &e.to_string());
                        job.oplog.line(&format!("kept {name}: {e}"));
                    }
                }
                stats(&|s| s.measurement_done += 1);
            }
            stats(&|s| s.database_done += 1);
        }
    }
    Ok(())
}

/// Whether every retention policy's points of `mm` on `src` are safe on
/// `owner`: a verified copy, or the owner holds at least as many.
fn proven(
    client: &copy::Client,
    verified: &std::collections::HashSet<tlog::CopyKey>,
    src: &Backend,
    owner: &Backend,
    db: &DbListing,
    mm: &str,
) -> Result<bool, CopyError> {
    for rp in &db.rps {
        let key = (
            src.url.clone(),
            owner.url.clone(),
            db.name.clone(),
            rp.name.clone(),
            mm.to_string(),
        );
        if verified.contains(&key) {
            continue;
        }
        let here = copy::count_points(client, src, &db.name, &rp.name, mm)?;
        if here > 0 && copy::count_points(client, owner, &db.name, &rp.name, mm)? < here {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Ends the operation: its state, the tlog, the marks, the peers.
fn finish(svc: &Transfers, job: &Job) {
    let kind = job.op.kind.as_str();
    if job.shutdown.load(Ordering::Acquire) {
        {
            let mut p = lock(&job.progress);
            p.state = "stopped";
            p.file.state = "stopped".into();
            p.finished = Some(Instant::now());
        }
        save(svc, job, true);
        job.oplog.line(&format!(
            "{kind} stopped by the proxy's shutdown; resumed at the next start"
        ));
        return;
    }
    let (state, error) = {
        let mut p = lock(&job.progress);
        if p.file.error.is_empty() {
            let failed: Vec<String> = p
                .file
                .tasks
                .iter()
                .filter_map(|t| match &t.state {
                    TaskState::Failed { error } => {
                        Some(format!("{}.{}.{}: {error}", t.db, t.rp, t.mm))
                    }
                    _ => None,
                })
                .collect();
            let left = p
                .file
                .tasks
                .iter()
                .filter(|t| !t.state.is_finished())
                .count();
            if let Some(first) = failed.first() {
                p.file.error = format!("{} measurements failed, first {first}", failed.len());
            } else if left > 0 {
                p.file.error = format!("{left} measurements were not copied");
            }
        }
        let state = if p.file.error.is_empty() {
            "done"
        } else {
            "failed"
        };
        p.state = state;
        p.file.state = state.into();
        p.finished = Some(Instant::now());
        (state, p.file.error.clone())
    };
    if job.op.kind != Kind::Cleanup {
        if state == "done" {
            if let Err(e) = tlog::remove(&svc.settings.tlog_dir) {
                log!("transfer: cannot remove the finished transfer.json: {e}");
            }
        } else {
            save(svc, job, true);
        }
    }
    mark(svc, &job.op, false);
    svc.notify_peers(&peer_query(&job.op, false), &job.oplog);
    job.oplog.line(&format!(
        "{kind} {state}{}{error}",
        if error.is_empty() { "" } else { ": " }
    ));
    log!(
        "transfer: {kind} {state}{}{error}",
        if error.is_empty() { "" } else { ": " }
    );
}
