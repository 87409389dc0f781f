//! Importing the Go influx-proxy's failure queue, so that switching binaries
//! loses nothing it had queued.
//!
//! The Go proxy keeps `<data_dir>/<backend name>.dat` (records of a u32
//! big-endian length then `QueryEscape(db) + " " + QueryEscape(rp) + " " +
//! gzip(lines)`) and `<backend name>.rec` (the i64 big-endian offset up to
//! which records were delivered; empty means 0). Records from that offset
//! are appended to our spool, then both files are renamed `*.imported`.
//! When the spool has no room (`spool_max_size`, a full disk), the import
//! stops there: the offset reached goes into `.rec` and the next start
//! imports the rest.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::record::Kind;
use super::{AppendError, Appender};
use crate::log;
use crate::url;

/// What an import brought in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub records: u64,
    pub points: u64,
    /// Records that could not be decoded (logged and skipped).
    pub skipped: u64,
}

/// The Go proxy's file names for `backend`, if that name is a plain file
/// name (the Go proxy used it raw; anything with a path separator or a dot
/// name could point outside `data_dir`, so it is not looked for).
fn go_paths(data_dir: &Path, backend: &str) -> Option<(PathBuf, PathBuf)> {
    if backend.is_empty() || backend.contains(['/', '\\', '\0']) || backend.starts_with('.') {
        return None;
    }
    Some((
        data_dir.join(format!("{backend}.dat")),
        data_dir.join(format!("{backend}.rec")),
    ))
}

/// Imports `<backend>.dat` from its committed offset into `appender`, then
/// renames the files. Does nothing when there is no `.dat`.
pub fn import(data_dir: &Path, backend: &str, appender: &mut Appender) -> io::Result<Imported> {
    let Some((dat, rec)) = go_paths(data_dir, backend) else {
        return Ok(Imported::default());
    };
    let data = match std::fs::read(&dat) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Imported::default()),
        Err(e) => return Err(e),
    };
    let offset = match std::fs::read(&rec) {
        Ok(b) if b.len() >= 8 => {
            let mut o = [0u8; 8];
            o.copy_from_slice(&b[..8]);
            i64::from_be_bytes(o).clamp(0, data.len() as i64) as usize
        }
        Ok(_) => 0,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let mut done = Imported::default();
    let mut pos = offset;
    let mut lines = Vec::new();
    while pos + 4 <= data.len() {
        let len =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let Some(body) = data.get(pos + 4..pos + 4 + len) else {
            log!(
                "{}: record at {pos} is cut short, stopping there",
                dat.display()
            );
            done.skipped += 1;
            break;
        };
        let at = pos;
        pos += 4 + len;
        match decode_go_record(body, &mut lines) {
            Some((db, rp, points)) => {
                let appended = appender
                    .shared()
                    .reserve_record(&db, &rp, lines.len())
                    .and_then(|room| appender.append(room, Kind::Write, points, &db, &rp, &lines));
                match appended {
                    Ok(()) => {}
                    Err(e @ (AppendError::Full | AppendError::NoRoom(_))) => {
                        // No room now (a full disk must not stop the proxy
                        // from starting): keep the rest for the next start.
                        appender.sync()?;
                        appender.publish();
                        log!(
                            "{}: import stopped at offset {at} ({e}); the rest is imported at the next start",
                            dat.display()
                        );
                        if let Err(e) = std::fs::write(&rec, (at as i64).to_be_bytes()) {
                            log!("cannot write {}: {e}; the next start imports the records before offset {at} again", rec.display());
                        }
                        return Ok(done);
                    }
                    Err(AppendError::Io(e)) => return Err(e),
                }
                done.records += 1;
                done.points += u64::from(points);
            }
            None => {
                log!(
                    "{}: record at {} is not readable, skipped",
                    dat.display(),
                    pos - 4 - len
                );
                done.skipped += 1;
            }
        }
    }
    appender.sync()?;
    appender.publish();
    std::fs::rename(&dat, dat.with_extension("dat.imported"))?;
    if rec.exists() {
        std::fs::rename(&rec, rec.with_extension("rec.imported"))?;
    }
    log!(
        "imported {} records ({} points) of the Go proxy's queue for backend {backend}",
        done.records,
        done.points
    );
    Ok(done)
}

/// `db rp gzip` -> (db, rp, points) with the lines in `lines`, each ending
/// in `\n`.
fn decode_go_record(body: &[u8], lines: &mut Vec<u8>) -> Option<(String, String, u32)> {
    let sp1 = body.iter().position(|&b| b == b' ')?;
    let sp2 = sp1 + 1 + body[sp1 + 1..].iter().position(|&b| b == b' ')?;
    let db = url::decode(std::str::from_utf8(&body[..sp1]).ok()?);
    let rp = url::decode(std::str::from_utf8(&body[sp1 + 1..sp2]).ok()?);
    lines.clear();
    MultiGzDecoder::new(&body[sp2 + 1..])
        .read_to_end(lines)
        .ok()?;
    if !lines.is_empty() && !lines.ends_with(b"\n") {
        lines.push(b'\n');
    }
    let points = lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u32;
    Some((db, rp, points))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{open, SpoolConfig, SyncMode};
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn go_record(db: &str, rp: &str, lines: &str) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(lines.as_bytes()).unwrap();
        let mut body = format!("{} {} ", url::encode(db), url::encode(rp)).into_bytes();
        body.extend(gz.finish().unwrap());
        let mut rec = (body.len() as u32).to_be_bytes().to_vec();
        rec.extend(body);
        rec
    }

    /// An empty folder of its own under the temp dir.
    fn fresh_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("influx-proxy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn go_queue_is_imported_from_its_committed_offset() {
        let dir = fresh_dir("goimport");
        let first = go_record("db", "", "old v=1 1\n");
        let mut dat = first.clone();
        dat.extend(go_record("my db", "rp", "a v=1 1\nb v=2 2"));
        std::fs::write(dir.join("b1.dat"), &dat).unwrap();
        std::fs::write(dir.join("b1.rec"), (first.len() as i64).to_be_bytes()).unwrap();
        let cfg = SpoolConfig {
            dir: dir.join("b1"),
            segment_size: 1 << 20,
            max_size: 1 << 30,
            sync: SyncMode::None,
            window: crate::spool::MAX_WINDOW,
        };
        let (mut a, mut r) = open(&cfg).unwrap();
        let done = import(&dir, "b1", &mut a).unwrap();
        assert_eq!(
            done,
            Imported {
                records: 1,
                points: 2,
                skipped: 0
            }
        );
        let rec = r.next(r.cursor()).unwrap().unwrap();
        assert_eq!((rec.record.db, rec.record.rp), ("my db", "rp"));
        assert_eq!(rec.record.payload, b"a v=1 1\nb v=2 2\n");
        assert!(dir.join("b1.dat.imported").exists());
        assert!(dir.join("b1.rec.imported").exists());
        // Nothing left to import a second time.
        assert_eq!(import(&dir, "b1", &mut a).unwrap(), Imported::default());
        assert!(go_paths(&dir, "../x").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_import_without_room_stops_and_the_next_start_takes_the_rest() {
        let dir = fresh_dir("goimport-full");
        let mut dat = go_record("db", "", "a v=1 1\n");
        dat.extend(go_record("db", "", "b v=2 2\n"));
        std::fs::write(dir.join("b1.dat"), &dat).unwrap();
        let mut cfg = SpoolConfig {
            dir: dir.join("b1"),
            segment_size: 1 << 20,
            max_size: crate::spool::record::encoded_len("db", "", 8) as u64,
            sync: SyncMode::None,
            window: crate::spool::MAX_WINDOW,
        };
        {
            let (mut a, _r) = open(&cfg).unwrap();
            assert_eq!(import(&dir, "b1", &mut a).unwrap().records, 1);
            a.close();
        }
        assert!(dir.join("b1.dat").exists() && dir.join("b1.rec").exists());
        cfg.max_size = 1 << 20;
        let (mut a, mut r) = open(&cfg).unwrap();
        assert_eq!(import(&dir, "b1", &mut a).unwrap().records, 1);
        let first = r.next(r.cursor()).unwrap().unwrap().end;
        let second = r.next(first).unwrap().unwrap();
        assert_eq!(second.record.payload, b"b v=2 2\n");
        assert!(dir.join("b1.dat.imported").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
