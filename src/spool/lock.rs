//! One owner per `data_dir`: the proxy holds an exclusive `flock` on
//! `<data_dir>/LOCK` for its whole life, with its pid written inside.
//!
//! A second proxy on the same `data_dir` would share the spools (two
//! appenders on one segment, two senders moving one cursor), so it refuses
//! to start and names the holder. The kernel drops the lock when the holder
//! exits, however it exits (`kill -9` included), so a stale file never
//! blocks a restart: only a live process holds the lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the lock file inside `data_dir`.
pub const LOCK_FILE: &str = "LOCK";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another live process holds it; its pid as written in the file.
    Held { path: PathBuf, holder: String },
    /// The file could not be opened or locked.
    Io { path: PathBuf, error: io::Error },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, holder } => write!(
                f,
                "data_dir {} is in use by another influx-proxy ({holder}, lock {}); stop that process or give this one another `data_dir`",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            LockError::Io { path, error } => write!(
                f,
                "cannot lock {}: {error} (check that `data_dir` is writable)",
                path.display()
            ),
        }
    }
}

/// Takes the exclusive lock of `data_dir` without waiting and writes our
/// pid into the lock file.
pub fn lock(data_dir: &Path) -> Result<DataDirLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io_err = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err(error));
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder = match text.trim() {
            "" => "pid unknown".to_string(),
            pid => format!("pid {pid}"),
        };
        return Err(LockError::Held { path, holder });
    }
    // The pid is for the message of a second proxy; failing to write it
    // (a full disk) does not weaken the lock.
    // Written over the old pid before cutting the rest, so that on a full
    // disk the page already there is reused.
    let pid = format!("{}\n", std::process::id());
    let written = file
        .write_all_at(pid.as_bytes(), 0)
        .and_then(|()| file.set_len(pid.len() as u64));
    if let Err(e) = written {
        crate::log!("cannot write the pid into {}: {e}", path.display());
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_and_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("influx-proxy-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = lock(&dir).unwrap();
        // flock locks belong to the open file description: a second open in
        // the same process conflicts like another process would.
        let err = lock(&dir).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        assert!(lock(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
