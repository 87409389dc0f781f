//! The copy workers of an operation: the `transfer-<i>` threads that copy
//! one task each (one measurement of one retention policy, from its
//! `last_time` on) and the `transfer-verify` thread that counts each
//! complete copy on both sides and records the verdict.
//!
//! A task's move ends (`Cluster::end_move`) when the last task of its
//! measurement is verified or found incomplete. A backend that stays
//! unreachable through the copy's retries and `task_attempts` more halts
//! the operation as failed; a refusal fails the task alone; a panic fails
//! the task, never the workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::copy::{self, CopyError, CopyJob};
use super::run::{save, Job};
use super::tlog::{self, TaskRecord, TaskState, VerifiedCopy};
use super::{lock, Transfers};
use crate::log;

/// Runs every unfinished task of the planned `job` on `worker` threads and
/// a verifier, saving the progress every second meanwhile; returns once
/// they are all over or the job halted.
pub(super) fn copy_all(svc: &Arc<Transfers>, job: &Arc<Job>) -> Result<(), String> {
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
                if !copy::sleep_unless_stopped(Some(&job.halt), pause) {
                    return false;
                }
            }
        }
    }
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
                if !copy::sleep_unless_stopped(Some(&job.halt), settings.task_backoff) {
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
    }
    let (state, verdict) = if v.complete {
        let state = TaskState::Verified {
            source_points,
            dest_points,
        };
        (state, "verified")
    } else {
        let state = TaskState::Unverified {
            source_points,
            dest_points,
        };
        (state, "unverified")
    };
    job.update(i, |t| t.state = state);
    job.oplog.line(&format!(
        "{verdict} {name}: source {source_points} points, destination {dest_points}"
    ));
    let rec = lock(&job.progress).file.tasks.get(i).cloned();
    if let Some(t) = rec {
        task_over(svc, job, &t);
    }
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
