//! Transfer operations (reference section 6): `rebalance` a circle after a
//! backend was added or removed, `recovery` of a circle from another,
//! `resync` of all circles with each other, and `cleanup` of what a circle's
//! backends hold but no longer own. They run in background threads; the
//! HTTP side ([`endpoint`]) only starts them and reports on them.
//!
//! - [`plan`]: what to copy where, a pure function of the cluster and what
//!   each source holds.
//! - [`copy`]: reading a measurement from one backend and writing it to
//!   another, counting points, the schema questions ([`lines`]: its pure
//!   half, answers in and line protocol out).
//! - [`run`]: one operation's coordinator thread and the [`run::Job`] it
//!   shares; [`tasks`]: its copy workers and verifier; [`cleanup`]: the
//!   drops a cleanup makes, with their proof.
//! - [`tlog`]: what survives a crash in `tlog_dir` (the running operation,
//!   the verified copies, the operation log).
//! - [`peers`]: telling the other proxies of `ha_addrs`.
//! - [`stats`]: `/transfer/state` and `/transfer/stats`.
//!
//! Invariants: at most one operation runs at a time ([`Transfers`] holds
//! it); while it runs its target circle is marked transferring in the
//! cluster (resync: the cluster is resyncing), and the marks are cleared
//! when it ends (not when the proxy stops: the resume sets them again).
//! A measurement is recorded as verified only after its point counts on
//! the destination were checked, and only verified copies let a cleanup
//! drop data (unless `force`).

pub mod cleanup;
pub mod copy;
pub mod endpoint;
pub mod lines;
pub mod peers;
pub mod plan;
pub mod run;
pub mod stats;
pub mod tasks;
pub mod tlog;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::cluster::{Backend, Cluster};
use crate::config::Config;
use crate::log;
use plan::{Kind, Operation};
use run::Job;
use tlog::{RemovedBackend, TransferFile};

/// Defaults of the Go proxy.
pub const DEFAULT_WORKER: usize = 5;
pub const DEFAULT_BATCH: usize = 20_000;

/// How long starting an operation waits for its plan: once the cluster
/// knows which measurements move, reads of them are answered from their
/// sources (a cluster of one circle has no other copy to read).
const PLAN_WAIT: Duration = Duration::from_secs(10);

/// How an operation runs; fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tlog_dir: PathBuf,
    pub client: copy::Client,
    pub peers: peers::PeerClient,
    /// Attempts of a task whose backend is unreachable, after the copy's
    /// own retries, before the operation stops as failed.
    pub task_attempts: u32,
    /// First pause between them (doubling).
    pub task_backoff: Duration,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            tlog_dir: cfg.tlog_dir.clone(),
            client: copy::Client {
                timeout: cfg.write_timeout.max(Duration::from_secs(30)),
                attempts: 3,
                backoff: Duration::from_millis(500),
            },
            peers: peers::PeerClient::new(cfg),
            task_attempts: 3,
            task_backoff: Duration::from_secs(1),
        }
    }
}

/// The transfer service the HTTP workers share: the operation running (or
/// the last one, for its state and stats) and the peers to tell.
pub struct Transfers {
    cluster: Arc<Cluster>,
    settings: Settings,
    /// `ha_addrs` as last given (kept across operations, as the Go proxy).
    ha_addrs: Mutex<Vec<String>>,
    /// The spool of each backend of the cluster, by id (`None`: none
    /// opened), to wait for what a source still has to deliver.
    spools: Vec<Option<Arc<crate::spool::Shared>>>,
    /// The current or last operation.
    job: Mutex<Option<Arc<Job>>>,
    /// Per peer address, the last notification's error ("" = delivered).
    peer_report: Mutex<BTreeMap<String, String>>,
}

/// Locks `m`, taking over a lock a panicking thread left (the data it
/// guards stays consistent: every writer replaces whole values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transfers {
    /// `spools`: each backend's spool by id, as [`crate::writer::Writers::spool`]
    /// gives them.
    pub fn new(
        cluster: Arc<Cluster>,
        settings: Settings,
        spools: Vec<Option<Arc<crate::spool::Shared>>>,
    ) -> Transfers {
        Transfers {
            cluster,
            settings,
            spools,
            ha_addrs: Mutex::new(Vec::new()),
            job: Mutex::new(None),
            peer_report: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Keeps `addrs` as the peers of every later operation.
    fn set_ha_addrs(&self, addrs: Vec<String>) {
        *lock(&self.ha_addrs) = addrs;
    }

    /// The Go proxy's busy answer for `op`, if something runs that it
    /// would disturb: the cluster's marks (ours, or set by a peer through
    /// `/transfer/state`) and our own running operation.
    pub fn busy(&self, op: &Operation) -> Option<String> {
        let job = lock(&self.job);
        self.busy_locked(op, job.as_ref())
    }

    fn busy_locked(&self, op: &Operation, running: Option<&Arc<Job>>) -> Option<String> {
        let c = &self.cluster;
        let marked = match op.kind {
            Kind::Rebalance | Kind::Cleanup => op
                .circle_id
                .filter(|&id| c.is_transferring(id))
                .map(|id| format!("circle {id} is transferring")),
            Kind::Recovery => {
                let (f, t) = (op.from_circle_id.unwrap_or(0), op.to_circle_id.unwrap_or(0));
                (c.is_transferring(f) || c.is_transferring(t))
                    .then(|| format!("circle {f} or {t} is transferring"))
            }
            Kind::Resync => c
                .circles
                .iter()
                .find(|circle| c.is_transferring(circle.id))
                .map(|circle| format!("circle {} is transferring", circle.id)),
        };
        if marked.is_some() {
            return marked;
        }
        if c.is_resyncing() {
            return Some("proxy is resyncing".into());
        }
        let running = running.filter(|j| j.is_running())?;
        Some(match running.op.target_circle() {
            None => "proxy is resyncing".into(),
            Some(id) => format!("circle {id} is transferring"),
        })
    }

    /// Starts `op` in the background unless something runs (then the busy
    /// text); `ha_addrs`, when given, are the peers from now on. An
    /// unfinished `transfer.json` of the same work is resumed (its progress
    /// kept, this request's `worker`, `batch` and `force` used); one of
    /// other work is replaced. A cleanup leaves it alone.
    pub fn start(
        self: &Arc<Self>,
        op: Operation,
        removed: Vec<RemovedBackend>,
        ha_addrs: Option<Vec<String>>,
    ) -> Result<(), String> {
        let mut job = lock(&self.job);
        if let Some(busy) = self.busy_locked(&op, job.as_ref()) {
            return Err(busy);
        }
        if let Some(addrs) = ha_addrs {
            *lock(&self.ha_addrs) = addrs;
        }
        let dir = &self.settings.tlog_dir;
        let previous = match op.kind {
            Kind::Cleanup => Ok(None),
            _ => tlog::load(dir),
        };
        let mut file = match previous {
            Ok(Some(mut old)) if old.operation.same_work(&op) => {
                log!(
                    "transfer: resuming the unfinished {} in {}",
                    op.kind.as_str(),
                    dir.display()
                );
                old.reopen();
                old.operation = op;
                if !removed.is_empty() {
                    old.removed = removed;
                }
                old
            }
            Ok(Some(old)) => {
                log!(
                    "transfer: the unfinished {} in {} is replaced by a {}",
                    old.operation.kind.as_str(),
                    dir.display(),
                    op.kind.as_str()
                );
                TransferFile::new(op, removed)
            }
            Ok(None) => TransferFile::new(op, removed),
            Err(e) => {
                log!("transfer: {e}");
                TransferFile::new(op, removed)
            }
        };
        file.ha_addrs = lock(&self.ha_addrs).clone();
        let started =
            run::spawn(self, file).map_err(|e| format!("cannot start the transfer: {e}"))?;
        *job = Some(Arc::clone(&started));
        drop(job);
        started.wait_announced(PLAN_WAIT);
        Ok(())
    }

    /// At start: resumes the operation a previous run left unfinished in
    /// `tlog_dir`, without a request.
    pub fn resume(self: &Arc<Self>) {
        let mut file = match tlog::load(&self.settings.tlog_dir) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                log!("transfer: {e}; nothing resumed");
                return;
            }
        };
        log!(
            "transfer: resuming the unfinished {} ({} tasks) from {}",
            file.operation.kind.as_str(),
            file.tasks.len(),
            self.settings.tlog_dir.display()
        );
        file.reopen();
        if !file.ha_addrs.is_empty() {
            self.set_ha_addrs(file.ha_addrs.clone());
        }
        let started = match run::spawn(self, file) {
            Ok(j) => j,
            Err(e) => {
                log!("transfer: cannot resume: {e}");
                return;
            }
        };
        *lock(&self.job) = Some(Arc::clone(&started));
        started.wait_announced(PLAN_WAIT);
    }

    /// At shutdown: the running operation stops between batches; waits at
    /// most `grace` for it to save its progress (left for the resume).
    pub fn stop(&self, grace: Duration) {
        let job = lock(&self.job).clone();
        if let Some(job) = job {
            job.shut_down(grace);
        }
    }

    /// The current or last operation.
    pub(crate) fn current(&self) -> Option<Arc<Job>> {
        lock(&self.job).clone()
    }

    /// Tells every peer `query` (`circle_id=..&transferring=..` or
    /// `resyncing=..`); what failed is kept for `/transfer/state` and
    /// written to `oplog`.
    pub(crate) fn notify_peers(&self, query: &str, oplog: &tlog::OpLog) {
        self.notify_peers_with(query, b"", oplog);
    }

    /// [`Transfers::notify_peers`] with a JSON `body` ([`peers::Moves`]).
    pub(crate) fn notify_peers_with(&self, query: &str, body: &[u8], oplog: &tlog::OpLog) {
        let addrs = lock(&self.ha_addrs).clone();
        if addrs.is_empty() {
            return;
        }
        let outcomes = self.settings.peers.notify(&addrs, query, body);
        let mut report = lock(&self.peer_report);
        for (addr, error) in outcomes {
            if error.is_empty() {
                oplog.line(&format!("peer {addr}: told {query}"));
            } else {
                log!("transfer: peer {addr} not told {query}: {error}");
                oplog.line(&format!("peer {addr}: not told {query}: {error}"));
            }
            report.insert(addr, error);
        }
    }

    pub(crate) fn peer_report(&self) -> BTreeMap<String, String> {
        lock(&self.peer_report).clone()
    }

    /// A backend of the cluster, or a removed one of the operation, by URL.
    pub(crate) fn backend_by_url(
        &self,
        url: &str,
        removed: &[Arc<Backend>],
    ) -> Option<Arc<Backend>> {
        self.cluster
            .backends
            .iter()
            .chain(removed)
            .find(|b| b.url == url)
            .cloned()
    }
}
