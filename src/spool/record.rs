//! The framing of one spool record: pure encode/decode, no I/O.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset  size  field
//! 0       4     magic "IPR1"
//! 4       4     len: bytes after the crc field (header rest + payload)
//! 8       4     crc: CRC-32 (IEEE, crc32fast) of those `len` bytes
//! 12      1     kind: 1 = write batch, 2 = statement
//! 13      1     precision of the payload's timestamps: 0 = ns
//! 14      4     points (write) or 0 (statement)
//! 18      8     appended_at: unix milliseconds
//! 26      2     db length D, then D bytes of db
//! 28+D    2     rp length R, then R bytes of rp
//! 30+D+R  ...   payload: line protocol, `\n`-terminated lines (write), or
//!               the InfluxQL text (statement)
//! ```
//!
//! A record is `12 + len` bytes. Segments are pre-sized files full of zeros,
//! so four zero bytes where a magic should be mean "nothing more here". Any
//! other mismatch (magic, length, CRC, header) is corruption: the reader
//! skips forward to the next magic whose record checks out.

/// Marks the start of every record.
pub const MAGIC: [u8; 4] = *b"IPR1";
/// Magic, length and CRC.
pub const PREFIX: usize = 12;
/// Largest record we write or accept (a sanity bound on `len`).
pub const MAX_RECORD: usize = 1 << 30;

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Line protocol for `/write`.
    Write = 1,
    /// An InfluxQL statement to run on the backend (queued DDL).
    Statement = 2,
}

/// A decoded record, borrowing from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub points: u32,
    pub appended_at_ms: u64,
    pub db: &'a str,
    pub rp: &'a str,
    pub payload: &'a [u8],
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Zeros where the magic goes: the end of the written part.
    End,
    /// The buffer stops before the record does (read more).
    Incomplete { needed: usize },
    /// Not a valid record.
    Corrupt,
}

/// Bytes `encode` will produce for these parts.
pub fn encoded_len(db: &str, rp: &str, payload_len: usize) -> usize {
    PREFIX + 18 + db.len() + rp.len() + payload_len
}

/// Appends a record to `out`. `db` and `rp` longer than 65,535 bytes are
/// refused by the caller (InfluxDB names are far shorter).
pub fn encode(
    out: &mut Vec<u8>,
    kind: Kind,
    points: u32,
    appended_at_ms: u64,
    db: &str,
    rp: &str,
    payload: &[u8],
) {
    let start = out.len();
    let len = encoded_len(db, rp, payload.len()) - PREFIX;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&points.to_le_bytes());
    out.extend_from_slice(&appended_at_ms.to_le_bytes());
    out.extend_from_slice(&(db.len() as u16).to_le_bytes());
    out.extend_from_slice(db.as_bytes());
    out.extend_from_slice(&(rp.len() as u16).to_le_bytes());
    out.extend_from_slice(rp.as_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + PREFIX..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Writes a record straight into `dst`, which must be exactly
/// [`encoded_len`] bytes (a slice of a mapped segment).
pub fn encode_into(
    dst: &mut [u8],
    kind: Kind,
    points: u32,
    appended_at_ms: u64,
    db: &str,
    rp: &str,
    payload: &[u8],
) {
    let len = dst.len() - PREFIX;
    let mut pos = 0;
    let mut put = |bytes: &[u8]| {
        dst[pos..pos + bytes.len()].copy_from_slice(bytes);
        pos += bytes.len();
    };
    put(&MAGIC);
    put(&(len as u32).to_le_bytes());
    put(&[0; 4]);
    put(&[kind as u8, 0]);
    put(&points.to_le_bytes());
    put(&appended_at_ms.to_le_bytes());
    put(&(db.len() as u16).to_le_bytes());
    put(db.as_bytes());
    put(&(rp.len() as u16).to_le_bytes());
    put(rp.as_bytes());
    put(payload);
    let crc = crc32fast::hash(&dst[PREFIX..]);
    dst[8..12].copy_from_slice(&crc.to_le_bytes());
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

/// Decodes the record at the start of `buf`; returns it and its size.
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), DecodeError> {
    if buf.len() < PREFIX {
        if buf.iter().all(|&b| b == 0) && buf.len() >= 4 {
            return Err(DecodeError::End);
        }
        return Err(DecodeError::Incomplete { needed: PREFIX });
    }
    if buf[..4] != MAGIC {
        return Err(if buf[..4] == [0; 4] {
            DecodeError::End
        } else {
            DecodeError::Corrupt
        });
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if !(18..=MAX_RECORD).contains(&len) {
        return Err(DecodeError::Corrupt);
    }
    let total = PREFIX + len;
    if buf.len() < total {
        return Err(DecodeError::Incomplete { needed: total });
    }
    let body = &buf[PREFIX..total];
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::Corrupt);
    }
    let kind = match body[0] {
        1 => Kind::Write,
        2 => Kind::Statement,
        _ => return Err(DecodeError::Corrupt),
    };
    let points = u32::from_le_bytes([body[2], body[3], body[4], body[5]]);
    let mut at = [0u8; 8];
    at.copy_from_slice(&body[6..14]);
    let appended_at_ms = u64::from_le_bytes(at);
    let db_len = u16_at(body, 14).ok_or(DecodeError::Corrupt)?;
    let db_end = 16 + db_len;
    let rp_len = u16_at(body, db_end).ok_or(DecodeError::Corrupt)?;
    let rp_start = db_end + 2;
    let rp_end = rp_start + rp_len;
    if rp_end > body.len() {
        return Err(DecodeError::Corrupt);
    }
    let db = std::str::from_utf8(&body[16..db_end]).map_err(|_| DecodeError::Corrupt)?;
    let rp = std::str::from_utf8(&body[rp_start..rp_end]).map_err(|_| DecodeError::Corrupt)?;
    Ok((
        Record {
            kind,
            points,
            appended_at_ms,
            db,
            rp,
            payload: &body[rp_end..],
        },
        total,
    ))
}

/// Offset of the next position after `from` where a magic starts, if any.
pub fn find_magic(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == MAGIC)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_both_encoders_agree() {
        let mut v = Vec::new();
        encode(
            &mut v,
            Kind::Write,
            2,
            1234,
            "db",
            "rp",
            b"a v=1 1\nb v=2 2\n",
        );
        assert_eq!(v.len(), encoded_len("db", "rp", 16));
        let mut w = vec![0u8; v.len()];
        encode_into(
            &mut w,
            Kind::Write,
            2,
            1234,
            "db",
            "rp",
            b"a v=1 1\nb v=2 2\n",
        );
        assert_eq!(v, w);
        let (r, n) = decode(&v).unwrap();
        assert_eq!(n, v.len());
        assert_eq!(
            r,
            Record {
                kind: Kind::Write,
                points: 2,
                appended_at_ms: 1234,
                db: "db",
                rp: "rp",
                payload: b"a v=1 1\nb v=2 2\n"
            }
        );
    }

    #[test]
    fn zeros_end_and_damage_is_corrupt() {
        assert_eq!(decode(&[0u8; 64]).unwrap_err(), DecodeError::End);
        let mut v = Vec::new();
        encode(&mut v, Kind::Statement, 0, 1, "db", "", b"DROP DATABASE x");
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(
                    decode(&bad),
                    Err(DecodeError::Corrupt | DecodeError::Incomplete { .. })
                ),
                "flip at {i} went unnoticed"
            );
        }
        assert!(matches!(
            decode(&v[..v.len() - 1]),
            Err(DecodeError::Incomplete { .. })
        ));
    }

    #[test]
    fn find_magic_resyncs_after_garbage() {
        let mut v = b"garbage".to_vec();
        encode(&mut v, Kind::Write, 1, 0, "d", "", b"m v=1 1\n");
        assert_eq!(find_magic(&v, 0), Some(7));
        assert_eq!(find_magic(&v, 8), None);
    }
}
