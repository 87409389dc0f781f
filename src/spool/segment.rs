//! Segment files and the folder of one backend's spool.
//!
//! A backend's spool lives in `<data_dir>/<encoded name>/`: segment files
//! `<seq>.seg` (20 decimal digits, so names sort by number), a `cursor`
//! file, and the text files `deadletter.lp` and `parked.lp`. The folder
//! name is [`dir_name`]: every byte outside `[A-Za-z0-9_-]` is written
//! `%XX`, so no backend name can produce `.`, `..` or a path separator.
//!
//! Every segment's blocks are reserved on disk when it is created or
//! extended ([`reserve_blocks`]): the writer writes through a mapping, and a
//! mapped page with no block behind it on a full disk would be a SIGBUS.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The folder name for a backend name; safe whatever the name.
pub fn dir_name(backend: &str) -> String {
    let mut out = String::with_capacity(backend.len());
    for &b in backend.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// Sequence numbers of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(".seg")
            .filter(|s| s.len() == 20)
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Creates segment `seq` of `size` bytes with every block reserved on disk
/// (see [`reserve_blocks`]); on failure the file is removed again.
pub fn create(dir: &Path, seq: u64, size: u64) -> io::Result<File> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    if let Err(e) = extend(&file, 0, size) {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

/// Makes the file `more` bytes longer, with the new blocks reserved; on
/// failure the file keeps its old length.
pub fn extend(file: &File, len: u64, more: u64) -> io::Result<()> {
    let result = file
        .set_len(len + more)
        .and_then(|()| reserve_blocks(file, len, more));
    if result.is_err() {
        let _ = file.set_len(len);
    }
    result
}

/// Allocates the disk blocks of `[from, from + len)`, so that writing there
/// through a mapping can never meet a full disk (a write to a mapped page
/// without a block behind it is a SIGBUS, which kills the process).
/// `fallocate` where the file system has it, else zeros written with pwrite.
/// A full disk is an `ENOSPC` (or `EDQUOT`) error: see [`no_room_cause`].
pub fn reserve_blocks(file: &File, from: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(from), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "segment larger than the file system allows",
        ));
    };
    loop {
        // SAFETY: fallocate on a descriptor we own; no memory is passed.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, off, n) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => return write_zeros(file, from, len),
            _ => return Err(e),
        }
    }
}

/// The fallback of [`reserve_blocks`]: writing the zeros allocates blocks.
fn write_zeros(file: &File, from: u64, len: u64) -> io::Result<()> {
    let zeros = [0u8; 64 << 10];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], from + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Whether `e` says the file system has no block left for us (no space, or
/// the user's quota reached), and how to say it.
pub fn no_room_cause(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Some("no space left on device"),
        Some(libc::EDQUOT) => Some("disk quota exceeded"),
        _ => None,
    }
}

/// Bytes an unprivileged user may still allocate on the file system of
/// `dir` (statvfs), if it can be asked.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; `path` is a
    // NUL-terminated string that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// Whether the written part of segment `seq` is empty (zeros where the
/// first magic goes): a segment reserved ahead that was never written.
pub fn is_unwritten(dir: &Path, seq: u64) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    match open_read(dir, seq)?.read_exact_at(&mut magic, 0) {
        // Shorter than a magic: nothing was written either.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
        Err(e) => Err(e),
        Ok(()) => Ok(magic == [0; 4]),
    }
}

/// Opens segment `seq` for reading.
pub fn open_read(dir: &Path, seq: u64) -> io::Result<File> {
    File::open(segment_path(dir, seq))
}

/// Deletes segment `seq`; a missing file is not an error.
pub fn remove(dir: &Path, seq: u64) -> io::Result<()> {
    match fs::remove_file(segment_path(dir, seq)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_cannot_escape() {
        assert_eq!(dir_name("influxdb-1-1"), "influxdb-1-1");
        assert_eq!(dir_name("../x"), "%2E%2E%2Fx");
        assert_eq!(dir_name(".."), "%2E%2E");
        assert_eq!(dir_name("a b/c\\d"), "a%20b%2Fc%5Cd");
        assert_eq!(dir_name(""), "%00");
        assert_eq!(dir_name("é"), "%C3%A9");
    }

    #[test]
    fn segment_names_sort_by_number() {
        let p = segment_path(Path::new("/s"), 42);
        assert_eq!(p, PathBuf::from("/s/00000000000000000042.seg"));
    }
}
