//! What a transfer keeps in `tlog_dir` (config `tlog_dir`, old `mlog_dir`):
//!
//! - `transfer.json`: the running (or failed, or stopped) operation, its
//!   parameters, the removed backends of a `rebalance rm`, and every task
//!   with its state. Rewritten whole and atomically (temporary file, fsync,
//!   rename, fsync of the folder), so after `kill -9` it is the last
//!   complete version; deleted when the operation is done. A proxy that
//!   starts with one resumes it.
//! - `verified.jsonl`: one JSON line per copy whose point counts were
//!   checked complete (source, destination, db, rp, measurement, counts),
//!   appended and fsynced, kept across operations: the proof `cleanup`
//!   asks for before it drops a measurement. A torn last line is ignored.
//! - `<operation>.log`: one timestamped line per measurement started,
//!   finished, verified, skipped or failed, and per peer notified.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::plan::Operation;
use crate::config::BackendConfig;

/// Version of the `transfer.json` layout.
const VERSION: u32 = 1;

/// Where one task stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    /// Copied up to `last_time` (ns, inclusive); a resume reads from there.
    Copying {
        last_time: i64,
    },
    /// Copied, not yet counted.
    Copied,
    Verified {
        source_points: u64,
        dest_points: u64,
    },
    /// Counted and found short on the destination: not proof for cleanup.
    Unverified {
        source_points: u64,
        dest_points: u64,
    },
    Failed {
        error: String,
    },
}

impl TaskState {
    /// Whether nothing is left to do for it (a failed task is retried by a
    /// resume).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            TaskState::Verified { .. } | TaskState::Unverified { .. }
        )
    }
}

/// One (source, destination, db, rp, measurement) and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub source: String,
    pub dest: String,
    /// The circle of `dest`.
    pub circle: usize,
    pub db: String,
    pub rp: String,
    pub mm: String,
    /// Points and bytes written to `dest` so far, over all attempts.
    #[serde(default)]
    pub points: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(flatten)]
    pub state: TaskState,
}

/// A retention policy to create on a destination (the copy module's
/// [`RetentionPolicy`](super::copy::RetentionPolicy), kept on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpRecord {
    pub name: String,
    pub duration: String,
    pub shard_group_duration: String,
    pub replication: u64,
    pub default: bool,
}

impl From<&super::copy::RetentionPolicy> for RpRecord {
    fn from(r: &super::copy::RetentionPolicy) -> RpRecord {
        RpRecord {
            name: r.name.clone(),
            duration: r.duration.clone(),
            shard_group_duration: r.shard_group_duration.clone(),
            replication: r.replication,
            default: r.default,
        }
    }
}

impl From<&RpRecord> for super::copy::RetentionPolicy {
    fn from(r: &RpRecord) -> super::copy::RetentionPolicy {
        super::copy::RetentionPolicy {
            name: r.name.clone(),
            duration: r.duration.clone(),
            shard_group_duration: r.shard_group_duration.clone(),
            replication: r.replication,
            default: r.default,
        }
    }
}

/// A database to create on a destination before copying into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRecord {
    pub dest: String,
    pub db: String,
    pub rps: Vec<RpRecord>,
}

/// A backend named in the body of `rebalance rm`, as the Go proxy reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RemovedBackend {
    pub name: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub auth_encrypt: bool,
}

impl RemovedBackend {
    pub fn config(&self) -> BackendConfig {
        BackendConfig {
            name: if self.name.is_empty() {
                self.url.clone()
            } else {
                self.name.clone()
            },
            url: self.url.trim_end_matches('/').to_string(),
            username: self.username.clone(),
            password: self.password.clone(),
            auth_encrypt: self.auth_encrypt,
            write_only: false,
        }
    }
}

/// What a source backend held when the operation was planned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceRecord {
    pub circle: usize,
    pub databases: Vec<String>,
    /// (db, rp, measurement) units already on their owner.
    pub inplace: u64,
}

/// The content of `transfer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferFile {
    pub version: u32,
    pub operation: Operation,
    #[serde(default)]
    pub removed: Vec<RemovedBackend>,
    /// The peers told of the operation (`ha_addrs`), told again by a resume.
    #[serde(default)]
    pub ha_addrs: Vec<String>,
    /// `running`, `failed` or `stopped`.
    pub state: String,
    #[serde(default)]
    pub error: String,
    /// Whether the tasks below are the whole plan (listing done).
    pub planned: bool,
    /// Source URL -> what it held.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceRecord>,
    #[serde(default)]
    pub schema: Vec<SchemaRecord>,
    #[serde(default)]
    pub tasks: Vec<TaskRecord>,
}

impl TransferFile {
    pub fn new(operation: Operation, removed: Vec<RemovedBackend>) -> TransferFile {
        TransferFile {
            version: VERSION,
            operation,
            removed,
            ha_addrs: Vec::new(),
            state: "running".into(),
            error: String::new(),
            planned: false,
            sources: BTreeMap::new(),
            schema: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Prepares a resume: failed tasks are tried again.
    pub fn reopen(&mut self) {
        self.state = "running".into();
        self.error.clear();
        for t in &mut self.tasks {
            if matches!(t.state, TaskState::Failed { .. }) {
                t.state = TaskState::Pending;
            }
        }
    }
}

fn transfer_path(dir: &Path) -> PathBuf {
    dir.join("transfer.json")
}

/// Writes `file` as `<dir>/transfer.json`, atomically and durably.
pub fn save(dir: &Path, file: &TransferFile) -> io::Result<()> {
    let bytes = serde_json::to_vec(file).map_err(io::Error::other)?;
    write_atomic(&transfer_path(dir), &bytes)
}

/// `path` holds `bytes` or its former content, whatever happens: write a
/// temporary file, fsync it, rename it over, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The unfinished operation of `<dir>/transfer.json`, if any. A file that
/// cannot be read as one is renamed `transfer.json.bad` (kept for a look)
/// and reported as the error.
pub fn load(dir: &Path) -> Result<Option<TransferFile>, String> {
    let path = transfer_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    match serde_json::from_slice::<TransferFile>(&bytes) {
        Ok(f) if f.version == VERSION => Ok(Some(f)),
        Ok(f) => Err(format!("{}: unknown version {}", path.display(), f.version)),
        Err(e) => {
            let bad = path.with_extension("json.bad");
            let _ = std::fs::rename(&path, &bad);
            Err(format!(
                "{} is damaged ({e}); moved to {}",
                path.display(),
                bad.display()
            ))
        }
    }
}

/// Deletes `<dir>/transfer.json`: the operation is over.
pub fn remove(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(transfer_path(dir)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One checked-complete copy, a line of `verified.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedCopy {
    pub source: String,
    pub dest: String,
    pub db: String,
    pub rp: String,
    pub mm: String,
    pub source_points: u64,
    pub dest_points: u64,
    /// Unix seconds.
    pub at: u64,
}

/// (source, dest, db, rp, measurement) of a verified copy.
pub type CopyKey = (String, String, String, String, String);

fn verified_path(dir: &Path) -> PathBuf {
    dir.join("verified.jsonl")
}

/// Appends `v` to `<dir>/verified.jsonl` and fsyncs it.
pub fn record_verified(dir: &Path, v: &VerifiedCopy) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut line = serde_json::to_vec(v).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(verified_path(dir))?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Every verified copy recorded in `dir` (lines that do not parse, such as
/// one torn by a crash, are skipped).
pub fn verified(dir: &Path) -> io::Result<HashSet<CopyKey>> {
    let f = match File::open(verified_path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    let mut out = HashSet::new();
    for line in io::BufReader::new(f).lines() {
        if let Ok(v) = serde_json::from_str::<VerifiedCopy>(&line?) {
            out.insert((v.source, v.dest, v.db, v.rp, v.mm));
        }
    }
    Ok(out)
}

/// `<tlog_dir>/<operation>.log`: the human record of an operation. Past
/// [`OPLOG_LIMIT`] bytes it is rotated as the Go proxy rotates its own:
/// `<operation>.log.1` is the newest of [`OPLOG_BACKUPS`] kept.
pub struct OpLog {
    path: PathBuf,
    limit: u64,
    file: Mutex<Option<(File, u64)>>,
}

/// Size of an operation log before it is rotated.
pub const OPLOG_LIMIT: u64 = 100 << 20;
/// Rotated operation logs kept.
pub const OPLOG_BACKUPS: usize = 5;

impl OpLog {
    /// Opens (appending) `<dir>/<name>.log`; when it cannot be opened the
    /// lines go to the proxy's log only.
    pub fn open(dir: &Path, name: &str) -> OpLog {
        OpLog::with_limit(dir, name, OPLOG_LIMIT)
    }

    /// [`OpLog::open`], rotated past `limit` bytes.
    pub fn with_limit(dir: &Path, name: &str, limit: u64) -> OpLog {
        let path = dir.join(format!("{name}.log"));
        let file = std::fs::create_dir_all(dir).and_then(|()| open_append(&path));
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                crate::log!("transfer: cannot open {}: {e}", path.display());
                None
            }
        };
        OpLog {
            path,
            limit,
            file: Mutex::new(file),
        }
    }

    /// Appends one line, prefixed with the time as the proxy's log has it.
    pub fn line(&self, text: &str) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let line = format!("{} {text}\n", crate::log::timestamp());
        if guard
            .as_ref()
            .is_some_and(|(_, size)| size + line.len() as u64 > self.limit && *size > 0)
        {
            *guard = None;
            match self.rotate() {
                Ok(f) => *guard = Some(f),
                Err(e) => crate::log!("transfer: cannot rotate {}: {e}", self.path.display()),
            }
        }
        if let Some((f, size)) = guard.as_mut() {
            match f.write_all(line.as_bytes()) {
                Ok(()) => *size += line.len() as u64,
                Err(e) => {
                    crate::log!("transfer: cannot write the operation log: {e}");
                    *guard = None;
                }
            }
        }
    }

    /// Shifts `<name>.log.<k>` to `.<k+1>` (the oldest dropped), the log
    /// to `.1`, and opens a new one.
    fn rotate(&self) -> std::io::Result<(File, u64)> {
        let numbered = |k: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{k}"));
            PathBuf::from(p)
        };
        for k in (1..OPLOG_BACKUPS).rev() {
            if numbered(k).exists() {
                std::fs::rename(numbered(k), numbered(k + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        open_append(&self.path)
    }
}

/// `path` opened for appending, with its size.
fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let size = f.metadata()?.len();
    Ok((f, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::plan::Kind;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tlog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn task(mm: &str, state: TaskState) -> TaskRecord {
        TaskRecord {
            source: "http://a".into(),
            dest: "http://b".into(),
            circle: 0,
            db: "db".into(),
            rp: "autogen".into(),
            mm: mm.into(),
            points: 7,
            bytes: 70,
            state,
        }
    }

    fn file() -> TransferFile {
        let op = Operation {
            kind: Kind::Rebalance,
            circle_id: Some(0),
            operation: "rm".into(),
            from_circle_id: None,
            to_circle_id: None,
            backend_urls: Vec::new(),
            dbs: vec!["db".into()],
            worker: 2,
            batch: 100,
            since: 0,
            force: false,
        };
        let removed = vec![RemovedBackend {
            name: "old".into(),
            url: "http://old:8086/".into(),
            ..RemovedBackend::default()
        }];
        let mut f = TransferFile::new(op, removed);
        f.planned = true;
        f.tasks = vec![
            task("a", TaskState::Pending),
            task("b", TaskState::Copying { last_time: 1_500 }),
            task(
                "c",
                TaskState::Failed {
                    error: "backend b: refused".into(),
                },
            ),
            task(
                "d",
                TaskState::Verified {
                    source_points: 7,
                    dest_points: 7,
                },
            ),
        ];
        f
    }

    #[test]
    fn transfer_file_round_trips_and_a_crash_leaves_the_last_complete_version() {
        let d = dir("round");
        assert_eq!(load(&d).unwrap(), None);
        let f = file();
        save(&d, &f).unwrap();
        // A crash during the next save leaves its temporary file behind:
        // the load still sees the last complete version.
        std::fs::write(d.join("transfer.json.tmp"), b"{\"version\":1,\"trunc").unwrap();
        let back = load(&d).unwrap().unwrap();
        assert_eq!(back, f);
        assert_eq!(back.removed[0].config().url, "http://old:8086");
        // The resume set: failed tasks again, copying ones from last_time.
        let mut resumed = back;
        resumed.reopen();
        let states: Vec<&TaskState> = resumed.tasks.iter().map(|t| &t.state).collect();
        assert_eq!(
            states,
            [
                &TaskState::Pending,
                &TaskState::Copying { last_time: 1_500 },
                &TaskState::Pending,
                &TaskState::Verified {
                    source_points: 7,
                    dest_points: 7
                }
            ]
        );
        let todo = resumed
            .tasks
            .iter()
            .filter(|t| !t.state.is_finished())
            .count();
        assert_eq!(todo, 3);
        remove(&d).unwrap();
        assert_eq!(load(&d).unwrap(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_transfer_file_is_set_aside_with_an_error() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("transfer.json"), b"not json").unwrap();
        let e = load(&d).unwrap_err();
        assert!(e.contains("damaged"), "{e}");
        assert!(d.join("transfer.json.bad").exists());
        assert_eq!(load(&d).unwrap(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn verified_copies_survive_a_torn_last_line() {
        let d = dir("verified");
        let v = VerifiedCopy {
            source: "http://a".into(),
            dest: "http://b".into(),
            db: "db".into(),
            rp: "autogen".into(),
            mm: "cpu".into(),
            source_points: 3,
            dest_points: 3,
            at: 1,
        };
        record_verified(&d, &v).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join("verified.jsonl"))
            .unwrap();
        f.write_all(b"{\"source\":\"http://a\",\"de").unwrap();
        let set = verified(&d).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.contains(&(
            "http://a".into(),
            "http://b".into(),
            "db".into(),
            "autogen".into(),
            "cpu".into()
        )));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn op_log_lines_carry_a_timestamp() {
        let d = dir("oplog");
        let log = OpLog::open(&d, "rebalance");
        log.line("started db.autogen.cpu");
        let text = std::fs::read_to_string(d.join("rebalance.log")).unwrap();
        assert!(text.ends_with(" started db.autogen.cpu\n"), "{text}");
        assert_eq!(&text[4..5], "/");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn operation_log_is_rotated_past_its_limit_keeping_five() {
        let dir = std::env::temp_dir().join(format!("oplog-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = OpLog::with_limit(&dir, "rebalance", 200);
        for i in 0..100 {
            log.line(&format!("line {i:03} {}", "x".repeat(40)));
        }
        let current = std::fs::read_to_string(dir.join("rebalance.log")).unwrap();
        assert!(
            current.len() <= 200 && current.contains("line 099"),
            "{current}"
        );
        for k in 1..=OPLOG_BACKUPS {
            let backup = std::fs::read_to_string(dir.join(format!("rebalance.log.{k}"))).unwrap();
            assert!(
                !backup.is_empty() && backup.len() <= 200,
                "backup {k}: {backup}"
            );
        }
        assert!(!dir
            .join(format!("rebalance.log.{}", OPLOG_BACKUPS + 1))
            .exists());
        let newest = std::fs::read_to_string(dir.join("rebalance.log.1")).unwrap();
        assert!(newest < current, "{newest} then {current}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
