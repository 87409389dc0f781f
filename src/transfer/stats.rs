//! The JSON of `/transfer/state` and `/transfer/stats`: the Go proxy's keys,
//! plus ours.
//!
//! `/transfer/state`: `circles` (id, name, transferring) and `resyncing` as
//! the Go proxy has them, plus `operation` (null before the first one, else
//! its type, circle, state and error) and `peers` (address -> the last
//! notification's error, `""` when delivered).
//!
//! `/transfer/stats`: per backend URL of the circle (its current backends
//! and the sources of the operation in that circle, removed ones included)
//! the Go keys `database_total`, `database_done`, `measurement_total`,
//! `measurement_done`, `transfer_count`, `inplace_count`, and
//! `points_copied`, `bytes_copied`, `points_per_second`,
//! `measurements_verified`, `measurements_unverified` (and their names in
//! `unverified_measurements`, when there are any), `last_error`,
//! `state` (`idle` before any operation). For a copy, a "measurement" is
//! one measurement of one retention policy (a task); `transfer_count`
//! counts those copied. For a cleanup, `transfer_count` counts the
//! measurements dropped and `measurements_unverified` those kept for want
//! of proof.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::run::Job;
use super::tlog::TaskState;
use super::{lock, Transfers};
use crate::transfer::plan::Kind;

/// One backend's line of `/transfer/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendStats {
    pub database_total: u64,
    pub database_done: u64,
    pub measurement_total: u64,
    pub measurement_done: u64,
    pub transfer_count: u64,
    pub inplace_count: u64,
    pub points_copied: u64,
    pub bytes_copied: u64,
    pub points_per_second: f64,
    pub measurements_verified: u64,
    pub measurements_unverified: u64,
    /// Those measurements by name (`db.rp.measurement` for a copy,
    /// `db.measurement` for a cleanup), when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unverified_measurements: Vec<String>,
    pub last_error: String,
    pub state: String,
}

/// `/transfer/state`'s body.
pub fn state(svc: &Transfers) -> Value {
    let c = svc.cluster();
    let circles: Vec<Value> = c
        .circles
        .iter()
        .map(|circle| json!({"id": circle.id, "name": circle.name, "transferring": c.is_transferring(circle.id)}))
        .collect();
    let operation = svc.current().map(|job| {
        let p = lock(&job.progress);
        json!({
            "type": job.op.kind.as_str(),
            "circle_id": job.op.target_circle(),
            "state": p.state,
            "error": p.file.error,
        })
    });
    json!({
        "circles": circles,
        "resyncing": c.is_resyncing(),
        "operation": operation,
        "peers": svc.peer_report(),
    })
}

/// `/transfer/stats`' body for circle `circle`.
pub fn stats(svc: &Transfers, circle: usize) -> BTreeMap<String, BackendStats> {
    let mut out: BTreeMap<String, BackendStats> = BTreeMap::new();
    let job = svc.current();
    let state = job
        .as_ref()
        .map_or("idle".to_string(), |j| lock(&j.progress).state.to_string());
    if let Some(c) = svc.cluster().circles.get(circle) {
        for b in &c.backends {
            out.insert(
                b.url.clone(),
                BackendStats {
                    state: state.clone(),
                    ..BackendStats::default()
                },
            );
        }
    }
    if let Some(job) = job {
        fill(&job, circle, &state, &mut out);
    }
    out
}

/// Adds what `job` did from the sources of circle `circle`.
fn fill(job: &Job, circle: usize, state: &str, out: &mut BTreeMap<String, BackendStats>) {
    let elapsed = job.elapsed().max(1e-3);
    let p = lock(&job.progress);
    // The line of `url`, with the operation's state and the source's error.
    let entry = |out: &mut BTreeMap<String, BackendStats>, url: &str| {
        let mut s = out.remove(url).unwrap_or_default();
        s.state = state.to_string();
        s.last_error = p.last_errors.get(url).cloned().unwrap_or_default();
        s
    };
    if job.op.kind == Kind::Cleanup {
        for (url, c) in p.cleanup.iter().filter(|(_, c)| c.circle == circle) {
            let mut s = entry(out, url);
            s.database_total = c.database_total;
            s.database_done = c.database_done;
            s.measurement_total = c.measurement_total;
            s.measurement_done = c.measurement_done;
            s.transfer_count = c.dropped;
            s.inplace_count = c.inplace;
            s.measurements_verified = c.verified;
            s.measurements_unverified = c.kept.len() as u64;
            s.unverified_measurements = c.kept.clone();
            out.insert(url.clone(), s);
        }
        return;
    }
    for (url, src) in p.file.sources.iter().filter(|(_, s)| s.circle == circle) {
        let mut s = entry(out, url);
        let tasks: Vec<_> = p.file.tasks.iter().filter(|t| &t.source == url).collect();
        s.database_total = src.databases.len() as u64;
        s.database_done = src
            .databases
            .iter()
            .filter(|db| {
                tasks
                    .iter()
                    .filter(|t| &t.db == *db)
                    .all(|t| t.state.is_finished())
            })
            .count() as u64;
        let finished = tasks.iter().filter(|t| t.state.is_finished()).count() as u64;
        s.inplace_count = src.inplace;
        s.measurement_total = src.inplace + tasks.len() as u64;
        s.measurement_done = src.inplace + finished;
        s.transfer_count = finished;
        s.points_copied = tasks.iter().map(|t| t.points).sum();
        s.bytes_copied = tasks.iter().map(|t| t.bytes).sum();
        s.points_per_second = (s.points_copied as f64 / elapsed).round();
        s.measurements_verified = tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Verified { .. }))
            .count() as u64;
        s.unverified_measurements = tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Unverified { .. }))
            .map(|t| format!("{}.{}.{}", t.db, t.rp, t.mm))
            .collect();
        s.measurements_unverified = s.unverified_measurements.len() as u64;
        if s.last_error.is_empty() {
            if let Some(TaskState::Failed { error }) = tasks
                .iter()
                .rev()
                .map(|t| &t.state)
                .find(|st| matches!(st, TaskState::Failed { .. }))
            {
                s.last_error = error.clone();
            }
        }
        out.insert(url.clone(), s);
    }
    if state == "failed" {
        // The operation's own error names what stopped it.
        for s in out.values_mut().filter(|s| s.last_error.is_empty()) {
            s.last_error = p.file.error.clone();
        }
    }
}
