//! One operation at work: the `transfer` coordinator thread, and the
//! [`Job`] it shares with the copy workers ([`super::tasks`]) and the
//! endpoints.
//!
//! The coordinator marks the target circle (resync: the cluster), tells
//! the peers, waits for each source's spool to deliver what it held, lists
//! the sources and plans the tasks (unless the tlog holds the plan already:
//! a resume), announces the moves to the cluster, creates every database
//! and retention policy on the destinations, then runs the tasks
//! (`tasks::copy_all`) or the cleanup ([`super::cleanup`]). It
//! is the only writer of `transfer.json`: at most once a second while
//! something changed, and at each end.
//!
//! A backend that stays unreachable stops the whole operation as `failed`
//! (the tlog stays: a POST of the same operation or a restart resumes it).
//! A refused task fails alone; the operation then ends `failed` listing
//! it, and a resume tries it again. At shutdown the workers stop between
//! batches and the file is saved as `stopped`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::copy::{self, CopyError};
use super::plan::{self, DbListing, Kind, Listing};
use super::tlog::{self, OpLog, SchemaRecord, SourceRecord, TaskRecord, TaskState, TransferFile};
use super::{cleanup, lock, peers, tasks, Transfers};
use crate::cluster::Backend;
use crate::log;

/// What the workers and the coordinator share under one lock.
pub struct Progress {
    pub file: TransferFile,
    /// Changed since the last save.
    pub(super) dirty: bool,
    /// `running`, `done`, `failed` or `stopped`.
    pub state: &'static str,
    pub finished: Option<Instant>,
    /// Source URL -> its last error.
    pub last_errors: HashMap<String, String>,
    pub cleanup: HashMap<String, cleanup::CleanupStats>,
    /// (circle, db, measurement) -> tasks not finished, for `end_move`.
    pub(super) moving: HashMap<(usize, String, String), usize>,
}

/// The current or last operation.
pub struct Job {
    pub op: plan::Operation,
    pub removed: Vec<Arc<Backend>>,
    pub progress: Mutex<Progress>,
    /// Workers stop between batches (failure or shutdown).
    pub(super) halt: AtomicBool,
    /// The halt is the proxy stopping: the state is `stopped`.
    shutdown: AtomicBool,
    pub started: Instant,
    pub(super) oplog: OpLog,
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
    pub(super) fn fail(&self, error: String) {
        let mut p = lock(&self.progress);
        if p.file.error.is_empty() {
            p.file.error = error;
        }
        self.halt.store(true, Ordering::Release);
    }

    pub(super) fn halted(&self) -> bool {
        self.halt.load(Ordering::Acquire)
    }

    pub(super) fn note_error(&self, source: &str, error: &str) {
        lock(&self.progress)
            .last_errors
            .insert(source.to_string(), error.to_string());
    }

    pub(super) fn update(&self, i: usize, f: impl FnOnce(&mut TaskRecord)) {
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
        Kind::Cleanup => cleanup::cleanup(svc, job),
        _ => prepare(svc, job, announce).and_then(|()| tasks::copy_all(svc, job)),
    };
    announce.take();
    if let Err(e) = outcome {
        job.fail(e);
    }
    finish(svc, job);
}

/// Saves `transfer.json` if something changed (or `force`).
pub(super) fn save(svc: &Transfers, job: &Job, force: bool) {
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
pub(super) fn list(
    client: &copy::Client,
    src: &Arc<Backend>,
    dbs: &[String],
) -> Result<Listing, CopyError> {
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
    let mut told = Vec::new();
    {
        let mut p = lock(&job.progress);
        let mut moving: HashMap<(usize, String, String), usize> = HashMap::new();
        for t in p.file.tasks.iter().filter(|t| !t.state.is_finished()) {
            let key = (t.circle, t.db.clone(), t.mm.clone());
            let n = moving.entry(key).or_default();
            if *n == 0 {
                if let Some(src) = svc.backend_by_url(&t.source, &job.removed) {
                    svc.cluster.begin_move(t.circle, &t.db, &t.mm, src);
                }
                told.push(peers::Move {
                    circle: t.circle,
                    db: t.db.clone(),
                    measurement: t.mm.clone(),
                    source: t.source.clone(),
                });
            }
            *n += 1;
        }
        p.moving = moving;
    }
    // The peers learn the moves too, before the 202.
    let query = peer_query(&job.op, true);
    for chunk in told.chunks(peers::MOVES_PER_NOTIFICATION) {
        let body = peers::Moves {
            moves: chunk.to_vec(),
        };
        if let Ok(body) = serde_json::to_vec(&body) {
            svc.notify_peers_with(&query, &body, &job.oplog);
        }
    }
}

/// Plans the copies (unless a resumed tlog holds the plan), saves it,
/// announces the moves to the cluster (then lets the `202` go) and creates
/// the databases and retention policies on the destinations.
fn prepare(
    svc: &Transfers,
    job: &Job,
    announce: &mut Option<crossbeam_channel::Sender<()>>,
) -> Result<(), String> {
    let planned = lock(&job.progress).file.planned;
    if !planned {
        make_plan(svc, job)?;
    }
    save(svc, job, true);
    announce_moves(svc, job);
    announce.take();
    make_schema(svc, job)
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
