//! `cleanup`: on each backend of a circle, drop the measurements another
//! backend owns, only where their copy there is proven.
//!
//! Proof, per retention policy of the measurement: a verified copy from
//! this backend to the owner in `<tlog_dir>/verified.jsonl`, or the owner
//! holding at least as many points (`copy::count_points`). A measurement
//! without proof for every policy is kept, counted in
//! `measurements_unverified` and named in `cleanup.log`; `force=true`
//! drops it anyway. A cleanup never copies and never touches a backend
//! outside the circle (a removed one).

use super::copy::{self, CopyError};
use super::plan::{self, DbListing};
use super::run::{list, Job};
use super::tlog;
use super::{lock, Transfers};
use crate::cluster::Backend;

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
    /// Kept for want of proof of a copy, as `db.measurement`.
    pub kept: Vec<String>,
}

/// Drops from each backend of the circle the measurements owned by
/// another backend, where a copy to the owner is proven.
pub(super) fn cleanup(svc: &Transfers, job: &Job) -> Result<(), String> {
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
                        stats(&|s| s.kept.push(format!("{}.{mm}", db.name)));
                        job.oplog.line(&format!(
                            "kept {name}: no verified copy, the owner holds fewer points"
                        ));
                    }
                    Err(e) => {
                        stats(&|s| s.kept.push(format!("{}.{mm}", db.name)));
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
