//! Segment files and the folder of one backend's spool.
//!
//! A backend's spool lives in `<data_dir>/<encoded name>/`: segment files
//! `<seq>.seg` (20 decimal digits, so names sort by number), a `cursor`
//! file, and the text files `deadletter.lp` and `parked.lp`. The folder
//! name is [`dir_name`]: every byte outside `[A-Za-z0-9_-]` is written
//! `%XX`, so no backend name can produce `.`, `..` or a path separator.

use std::fs::{self, File, OpenOptions};
use std::io;
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

/// Creates segment `seq` of `size` bytes (sparse zeros) for writing.
pub fn create(dir: &Path, seq: u64, size: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(segment_path(dir, seq))?;
    file.set_len(size)?;
    Ok(file)
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
