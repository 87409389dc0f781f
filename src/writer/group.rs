//! A group: consecutive records of a backend's spool sent as one request.
//!
//! A write group is consecutive write records of one (db, rp), up to
//! `flush_size` points and [`MAX_GROUP_BYTES`] of lines; a statement record
//! is a group of its own. The sender thread finds a group's records in the
//! spool ([`Group::gather`]) and gzips their lines as it reads them, then
//! packs it for a poster ([`Group::pack`]): the description and the
//! finished gzip body. So the only copy of a group in memory is its gzipped
//! body (a fifth or less of its lines), and memory does not grow with the
//! number of backends times `flush_size`. A group that lingers at the head
//! gives its compressor back after sealing what it has as one gzip member
//! ([`Group::seal`]); when it grows ([`Group::extend`]) the new lines go
//! into a new member after it. Concatenated members are one valid gzip body
//! (RFC 1952; InfluxDB's reader takes them as one stream), so no line is
//! read or compressed twice and no compressor waits with a lingering group. A group
//! knows where it starts and ends in the spool, so the cursor can be moved
//! past it once it is done.

use std::borrow::Cow;
use std::io::Read;

use super::post::Gzipper;
use crate::spool::record::Kind;
use crate::spool::{Pos, Reader};

/// Most bytes of lines gathered into one POST.
pub const MAX_GROUP_BYTES: usize = 16 << 20;

/// Consecutive records sent as one request.
#[derive(Debug, Default)]
pub struct Group {
    /// `None` while nothing is gathered.
    pub kind: Option<Kind>,
    pub db: String,
    pub rp: String,
    /// A statement's text (write groups leave their lines in the spool
    /// until [`Group::pack`] gzips them).
    pub lines: Vec<u8>,
    /// Bytes of lines of its records.
    pub line_bytes: usize,
    pub points: u32,
    pub records: u64,
    /// Bytes of its records in the spool.
    pub bytes: u64,
    /// When its first record was written, unix ms.
    pub first_ms: u64,
    pub start: Pos,
    pub end: Pos,
    /// The group reaches the head: nothing more was written yet.
    pub at_head: bool,
    /// A write group's lines gzipped, as gzip members: while it is
    /// gathered, its last member may be open (see `member_open`); once
    /// packed, the whole body.
    pub gz: Vec<u8>,
    /// The last member of `gz` is unfinished: the compressor it was begun
    /// with holds the rest of its state (only within one turn of the
    /// sender, which seals or packs the group before it lets go of the
    /// compressor).
    member_open: bool,
}

impl Group {
    pub fn label(&self) -> String {
        format!(
            "{} points for db {:?} rp {:?}",
            self.points, self.db, self.rp
        )
    }

    /// Finds the group that starts at `from`, feeding its lines to `zip`
    /// as they are read. `false` when nothing is waiting.
    pub fn gather(
        &mut self,
        reader: &mut Reader,
        from: Pos,
        max_points: usize,
        zip: &mut Gzipper,
    ) -> std::io::Result<bool> {
        self.kind = None;
        self.lines.clear();
        self.line_bytes = 0;
        self.points = 0;
        self.records = 0;
        self.bytes = 0;
        self.start = from;
        self.end = from;
        self.gz.clear();
        self.member_open = false;
        self.take_in(reader, max_points, zip)
    }

    /// Takes in more records, from the group's end, while they belong to
    /// it, their lines gzipped with `zip` into a new member. A lingering
    /// group grows this way without reading its records again.
    pub fn extend(
        &mut self,
        reader: &mut Reader,
        max_points: usize,
        zip: &mut Gzipper,
    ) -> std::io::Result<bool> {
        self.take_in(reader, max_points, zip)
    }

    /// Finishes the open gzip member, so the group can wait (linger)
    /// without holding `zip`, the compressor the member was begun with.
    pub fn seal(&mut self, zip: &mut Gzipper) -> std::io::Result<()> {
        if self.member_open {
            self.member_open = false;
            zip.finish(&mut self.gz)?;
        }
        Ok(())
    }

    /// Takes in records from the group's end while they belong to it,
    /// feeding their lines to `zip` (in an open member, begun at the first).
    fn take_in(
        &mut self,
        reader: &mut Reader,
        max_points: usize,
        zip: &mut Gzipper,
    ) -> std::io::Result<bool> {
        if self.kind == Some(Kind::Statement) {
            return Ok(true);
        }
        self.at_head = false;
        let mut at = self.end;
        loop {
            let Some(r) = reader.next(at)? else {
                self.at_head = true;
                break;
            };
            let rec = &r.record;
            let size = if r.end.seg == at.seg {
                r.end.off - at.off
            } else {
                r.end.off
            };
            match self.kind {
                None => {
                    self.kind = Some(rec.kind);
                    self.db.clear();
                    self.db.push_str(rec.db);
                    self.rp.clear();
                    self.rp.push_str(rec.rp);
                    self.first_ms = rec.appended_at_ms;
                }
                Some(Kind::Write)
                    if rec.kind == Kind::Write
                        && rec.db == self.db
                        && rec.rp == self.rp
                        && (self.points as usize) < max_points
                        && self.line_bytes + rec.payload.len() <= MAX_GROUP_BYTES => {}
                Some(_) => break,
            }
            if rec.kind == Kind::Statement {
                self.lines.extend_from_slice(rec.payload);
            } else {
                if !self.member_open {
                    zip.begin_member(&mut self.gz);
                    self.member_open = true;
                }
                zip.feed(rec.payload, &mut self.gz)?;
            }
            self.line_bytes += rec.payload.len();
            self.points += rec.points;
            self.records += 1;
            self.bytes += size;
            self.end = r.end;
            at = r.end;
            if rec.kind == Kind::Statement {
                break;
            }
        }
        Ok(self.kind.is_some())
    }

    /// A packet for a poster: this group's description and its gzipped
    /// lines (a statement keeps its text). `zip` must be the compressor the
    /// group was gathered or last extended with. Reuses `into`'s buffers.
    pub fn pack(&mut self, mut into: Group, zip: &mut Gzipper) -> std::io::Result<Group> {
        into.kind = self.kind;
        into.db.clone_from(&self.db);
        into.rp.clone_from(&self.rp);
        into.points = self.points;
        into.records = self.records;
        into.bytes = self.bytes;
        into.line_bytes = self.line_bytes;
        into.first_ms = self.first_ms;
        into.start = self.start;
        into.end = self.end;
        into.at_head = self.at_head;
        into.lines.clear();
        if self.kind == Some(Kind::Statement) {
            into.lines.extend_from_slice(&self.lines);
            return Ok(into);
        }
        self.seal(zip)?;
        into.gz = std::mem::take(&mut self.gz);
        Ok(into)
    }

    /// The lines as text: a statement's, or a packet's gunzipped (only
    /// needed on rare paths: 413 splits, parking, dead letters).
    pub fn text(&self) -> Cow<'_, [u8]> {
        if !self.lines.is_empty() || self.gz.is_empty() {
            return Cow::Borrowed(&self.lines);
        }
        let mut out = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(&self.gz[..]).read_to_end(&mut out);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_label_names_db_and_rp() {
        let g = Group {
            db: "d".into(),
            rp: "r".into(),
            points: 3,
            ..Group::default()
        };
        assert_eq!(g.label(), "3 points for db \"d\" rp \"r\"");
    }
}
