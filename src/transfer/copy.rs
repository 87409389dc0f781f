//! SKELETON (owned by helper A; replace this header): reading a measurement
//! from a source backend and writing it to a destination backend, and the
//! schema questions a transfer asks a backend.
//!
//! Every function talks to one backend directly (its own URL and
//! credentials), never through the proxy's spool. Errors are [`CopyError`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Backend;

/// Why a transfer step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// The backend brought no usable answer (network, timeout, 5xx) after
    /// the retries: worth retrying later.
    Unreachable { backend: String, cause: String },
    /// The backend refused the request for good (a 4xx, an InfluxQL error).
    Refused { backend: String, message: String },
    /// The proxy is stopping.
    Stopped,
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Unreachable { backend, cause } => write!(f, "backend {backend}: {cause}"),
            CopyError::Refused { backend, message } => write!(f, "backend {backend}: {message}"),
            CopyError::Stopped => write!(f, "the proxy is stopping"),
        }
    }
}

/// A retention policy as `SHOW RETENTION POLICIES` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub name: String,
    /// InfluxQL duration text as influxd prints it (`168h0m0s`, `0s`).
    pub duration: String,
    pub shard_group_duration: String,
    pub replication: u64,
    pub default: bool,
}

/// What to copy: one measurement of one retention policy of one database,
/// from `source` to `dest`, points with `since_ns <= time` (and `time <=
/// until_ns` when set).
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub source: Arc<Backend>,
    pub dest: Arc<Backend>,
    pub db: String,
    pub rp: String,
    /// Unescaped measurement name, as `SHOW MEASUREMENTS` gives it.
    pub measurement: String,
    pub since_ns: i64,
    pub until_ns: Option<i64>,
    /// Rows per chunk read and per batch written (the `batch` parameter).
    pub batch: usize,
}

/// How far a copy got: `last_time` is the time of the last row written to
/// the destination (`i64::MIN` before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub points: u64,
    pub bytes: u64,
    pub last_time: i64,
}

/// Point counts of a measurement over a range, per field, on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Largest per-field count (= points) on the source and the destination.
    pub source_points: u64,
    pub dest_points: u64,
    /// Every field has at least as many values on the destination.
    pub complete: bool,
}

/// The client settings of a transfer.
#[derive(Debug, Clone)]
pub struct Client {
    pub timeout: Duration,
    /// Attempts per request before `Unreachable` (backoff between them).
    pub attempts: u32,
    pub backoff: Duration,
}

pub fn databases(_c: &Client, _b: &Backend) -> Result<Vec<String>, CopyError> {
    unimplemented!()
}
pub fn retention_policies(
    _c: &Client,
    _b: &Backend,
    _db: &str,
) -> Result<Vec<RetentionPolicy>, CopyError> {
    unimplemented!()
}
pub fn measurements(_c: &Client, _b: &Backend, _db: &str) -> Result<Vec<String>, CopyError> {
    unimplemented!()
}
/// Creates `db` and every policy of `rps` (same duration, shard duration,
/// default flag) on `b`; existing ones are left as they are.
pub fn ensure_database(
    _c: &Client,
    _b: &Backend,
    _db: &str,
    _rps: &[RetentionPolicy],
) -> Result<(), CopyError> {
    unimplemented!()
}
/// Streams the job; `on_batch` runs after each batch the destination
/// accepted (persist `Progress::last_time` there); an `Err` from it stops
/// the copy. `stop` set: returns `CopyError::Stopped` between batches.
pub fn copy_measurement(
    _c: &Client,
    _job: &CopyJob,
    _stop: &AtomicBool,
    _on_batch: &mut dyn FnMut(&Progress) -> Result<(), CopyError>,
) -> Result<Progress, CopyError> {
    unimplemented!()
}
/// Compares per-field counts of the job's range on source and destination.
pub fn verify(_c: &Client, _job: &CopyJob) -> Result<Verification, CopyError> {
    unimplemented!()
}
/// Largest per-field count of `db`.`rp`.`measurement` (all time) on `b`.
pub fn count_points(
    _c: &Client,
    _b: &Backend,
    _db: &str,
    _rp: &str,
    _measurement: &str,
) -> Result<u64, CopyError> {
    unimplemented!()
}
/// `DROP MEASUREMENT` of `measurement` in `db` on `b`.
pub fn drop_measurement(
    _c: &Client,
    _b: &Backend,
    _db: &str,
    _measurement: &str,
) -> Result<(), CopyError> {
    unimplemented!()
}
