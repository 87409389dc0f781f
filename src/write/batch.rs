//! Grouping a request's lines into one batch per backend.
//!
//! A [`Batcher`] lives in one worker thread and is reused for every request,
//! so its buffers and its placement cache are never shared or locked. For
//! each valid line it finds the owner in every circle (by the shard key of
//! the request's database and the line's unescaped measurement) and appends
//! the line, timestamp normalised to nanoseconds, to that backend's buffer.
//! While a transfer moves the line's measurement, its source backend gets
//! the line too ([`Cluster::owners_into`]); the cache of placements is
//! dropped whenever the moves change ([`Cluster::placement_generation`],
//! checked once per request).

use std::sync::Arc;

use fxhash::FxHashMap;

use super::line::{
    next_line_quoted, reads_back, scan, unescape_measurement, LineError, Precision, Scanned,
};
use crate::cluster::Cluster;

/// Lines bound for one backend, ready for its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub db: Arc<str>,
    pub rp: Arc<str>,
    /// Line protocol, one point per `\n`-terminated line, timestamps in ns.
    pub lines: Vec<u8>,
    pub points: u32,
}

/// What a request body turned into.
#[derive(Debug, Default)]
pub struct Routed {
    /// `(backend id, batch)` for every backend that got lines.
    pub batches: Vec<(usize, Batch)>,
    /// Valid points (counted once, not once per circle).
    pub points: usize,
    /// InfluxDB-style `unable to parse '<line>': <reason>` for each bad line.
    pub errors: Vec<String>,
}

/// Largest line buffer kept for reuse; bigger ones (a rare huge request)
/// are freed.
const RECYCLE_LIMIT: usize = 4 << 20;

/// Most distinct shard keys a worker remembers before starting over.
const CACHE_LIMIT: usize = 65_536;

/// Measurements of the current request remembered without hashing (bodies
/// usually cycle through a few).
const RECENT: usize = 16;

/// Per-worker routing state.
pub struct Batcher {
    cluster: Arc<Cluster>,
    /// Rendered shard key -> its range in `owner_table`. Bounded by
    /// `CACHE_LIMIT`; cleared together with `owner_table`.
    cache: FxHashMap<Box<[u8]>, Owners>,
    /// For each cached key, back to back: the owner id in every circle,
    /// then the moving sources that also get its writes (usually none).
    owner_table: Vec<u32>,
    /// The cluster's placement generation the cache was filled under.
    generation: u64,
    key: Vec<u8>,
    /// Per backend id: lines and point count of the current request.
    buffers: Vec<(Vec<u8>, u32)>,
}

impl Batcher {
    pub fn new(cluster: Arc<Cluster>) -> Batcher {
        let n = cluster.backends.len();
        let generation = cluster.placement_generation();
        Batcher {
            cluster,
            cache: FxHashMap::default(),
            owner_table: Vec::new(),
            generation,
            key: Vec::with_capacity(128),
            buffers: vec![(Vec::new(), 0); n],
        }
    }

    /// Scans `body` and groups its valid lines per backend. `now` (ns) is
    /// the stamp of lines without a timestamp: one value for the whole
    /// request, so every circle stores the same point.
    pub fn route(
        &mut self,
        db: &str,
        rp: &str,
        precision: Precision,
        now: i64,
        body: &[u8],
    ) -> Routed {
        let mut routed = Routed::default();
        // A transfer began or ended a move since the last request: the
        // cached placements may miss (or still name) a moving source.
        let generation = self.cluster.placement_generation();
        if generation != self.generation {
            self.generation = generation;
            self.cache.clear();
            self.owner_table.clear();
        }
        // (measurement as written, range of its owners), this request only.
        let mut recent: Vec<(&[u8], Owners)> = Vec::with_capacity(RECENT);
        let mut pos = 0;
        while pos < body.len() {
            let (raw, next, quoted) = next_line_quoted(body, pos);
            pos = next;
            let line = match scan(raw) {
                Scanned::Skip => continue,
                Scanned::Invalid { text, error } => {
                    routed.errors.push(format!(
                        "unable to parse '{}': {error}",
                        String::from_utf8_lossy(text)
                    ));
                    continue;
                }
                Scanned::Point(line) => line,
            };
            // A measurement seen in this request is found by comparing its
            // bytes, without unescaping, rendering or hashing the key.
            let owners = match recent.iter().find(|(m, _)| *m == line.measurement) {
                Some(&(_, owners)) => owners,
                None => {
                    let (owners, cleared) = self.owners(db, line.measurement);
                    if cleared || recent.len() == RECENT {
                        recent.clear();
                    }
                    recent.push((line.measurement, owners));
                    owners
                }
            };
            let offset = owners.start as usize;
            let mut failed = None;
            for k in offset..owners.end as usize {
                let id = self.owner_table[k];
                let (buf, count) = &mut self.buffers[id as usize];
                let start = buf.len();
                if let Err(e) = line.write_normalized(precision, now, buf) {
                    failed = Some(e);
                    break;
                }
                // A line with a quote must still read back as itself once
                // sent (timestamp added, other lines around it).
                if quoted && k == offset && !reads_back(&line, &buf[start..]) {
                    buf.truncate(start);
                    failed = Some(LineError::AmbiguousQuotes);
                    break;
                }
                *count += 1;
            }
            if let Some(error) = failed {
                // Only the first backend can fail (an overflowing timestamp,
                // ambiguous quotes), and nothing of the line is kept then.
                routed.errors.push(format!(
                    "unable to parse '{}': {error}",
                    String::from_utf8_lossy(line.text)
                ));
                continue;
            }
            routed.points += 1;
        }
        let db: Arc<str> = Arc::from(db);
        let rp: Arc<str> = Arc::from(rp);
        for (id, (buf, count)) in self.buffers.iter_mut().enumerate() {
            if *count > 0 {
                let lines = std::mem::take(buf);
                routed.batches.push((
                    id,
                    Batch {
                        db: Arc::clone(&db),
                        rp: Arc::clone(&rp),
                        lines,
                        points: std::mem::take(count),
                    },
                ));
            }
        }
        routed
    }

    /// Takes back a line buffer the writer is done with, so the next
    /// request for that backend reuses it instead of allocating.
    pub fn recycle(&mut self, backend: usize, mut lines: Vec<u8>) {
        if let Some((buf, _)) = self.buffers.get_mut(backend) {
            if buf.capacity() == 0 && lines.capacity() <= RECYCLE_LIMIT {
                lines.clear();
                *buf = lines;
            }
        }
    }

    /// The range in `owner_table` of the backends that get (db,
    /// measurement), through the cache; `true` when the cache was just
    /// cleared (ranges handed out before are no longer valid).
    fn owners(&mut self, db: &str, measurement: &[u8]) -> (Owners, bool) {
        let unescaped = unescape_measurement(measurement);
        self.cluster
            .shard_key
            .render_into(db.as_bytes(), &unescaped, &mut self.key);
        if let Some(&owners) = self.cache.get(self.key.as_slice()) {
            return (owners, false);
        }
        let cleared = self.cache.len() >= CACHE_LIMIT;
        if cleared {
            self.cache.clear();
            self.owner_table.clear();
        }
        let start = self.owner_table.len() as u32;
        self.cluster.owners_into(&self.key, &mut self.owner_table);
        let owners = Owners {
            start,
            end: self.owner_table.len() as u32,
        };
        self.cache
            .insert(self.key.clone().into_boxed_slice(), owners);
        (owners, cleared)
    }
}

/// Where the backends of one shard key are in `owner_table`.
#[derive(Debug, Clone, Copy)]
struct Owners {
    start: u32,
    end: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster() -> Arc<Cluster> {
        let text = r#"{"circles":[
            {"name":"c1","backends":[{"name":"a","url":"http://h:1"},{"name":"b","url":"http://h:2"}]},
            {"name":"c2","backends":[{"name":"c","url":"http://h:3"},{"name":"d","url":"http://h:4"}]}]}"#;
        Arc::new(Cluster::new(&Config::from_json(text).unwrap().0))
    }

    #[test]
    fn every_point_goes_once_to_every_circle_on_its_owner() {
        let mut b = Batcher::new(cluster());
        // db1,cpu -> idx 0, db1,mem -> idx 1 (reference 3.4, idx n=2).
        let body = b"cpu v=1 1\nmem v=2 2\ncpu v=3\n";
        let r = b.route("db1", "", Precision::Nanosecond, 99, body);
        assert_eq!(r.points, 3);
        assert!(r.errors.is_empty());
        let got: Vec<(usize, String)> = r
            .batches
            .iter()
            .map(|(id, b)| (*id, String::from_utf8(b.lines.clone()).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "cpu v=1 1\ncpu v=3 99\n".to_string()),
                (1, "mem v=2 2\n".to_string()),
                (2, "cpu v=1 1\ncpu v=3 99\n".to_string()),
                (3, "mem v=2 2\n".to_string()),
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_and_good_ones_kept() {
        let mut b = Batcher::new(cluster());
        let r = b.route(
            "db1",
            "",
            Precision::Second,
            0,
            b"cpu v=1 1\ncpu\n# c\n\n,a=b v=1\n",
        );
        assert_eq!(r.points, 1);
        assert_eq!(
            r.errors,
            vec![
                "unable to parse 'cpu': missing fields".to_string(),
                "unable to parse ',a=b v=1': missing measurement".to_string()
            ]
        );
        assert_eq!(r.batches[0].1.lines, b"cpu v=1 1000000000\n");
        // Buffers are empty again for the next request.
        let again = b.route("db1", "", Precision::Second, 0, b"");
        assert!(again.batches.is_empty());
    }

    #[test]
    fn escaped_measurement_is_placed_by_its_unescaped_name() {
        let c = cluster();
        let mut b = Batcher::new(Arc::clone(&c));
        let r = b.route("db1", "", Precision::Nanosecond, 0, b"cpu\\ load v=1 1\n");
        let want = c.replicas("db1", "cpu load");
        let ids: Vec<usize> = r.batches.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, want.iter().map(|b| b.id).collect::<Vec<_>>());
    }

    /// `(backend id, lines)` of each batch of a request.
    fn sent(r: &Routed) -> Vec<(usize, String)> {
        r.batches
            .iter()
            .map(|(id, b)| (*id, String::from_utf8(b.lines.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn a_moving_measurement_also_goes_to_its_source_until_the_move_ends() {
        let c = cluster();
        let mut b = Batcher::new(Arc::clone(&c));
        let body = b"cpu v=1 1\nmem v=2 2\n";
        // Cached before the move: the move must still be seen.
        let before = b.route("db1", "", Precision::Nanosecond, 0, body);
        assert_eq!(before.batches.len(), 4);
        // db1,cpu is owned by a (0) and c (2); circle c2 copies it from d (3).
        c.begin_move(1, "db1", "cpu", Arc::clone(&c.backends[3]));
        let during = b.route("db1", "", Precision::Nanosecond, 0, body);
        assert_eq!(during.points, 2);
        assert_eq!(
            sent(&during),
            [
                (0, "cpu v=1 1\n".to_string()),
                (1, "mem v=2 2\n".to_string()),
                (2, "cpu v=1 1\n".to_string()),
                (3, "cpu v=1 1\nmem v=2 2\n".to_string()),
            ]
        );
        // A source that is the owner, or a removed backend, adds nothing.
        c.begin_move(0, "db1", "cpu", Arc::clone(&c.backends[0]));
        c.begin_move(
            1,
            "db1",
            "mem",
            crate::cluster::moves::tests::removed(4, "http://h:9"),
        );
        let owners_only = b.route("db1", "", Precision::Nanosecond, 0, b"mem v=2 2\n");
        assert_eq!(
            sent(&owners_only),
            [
                (1, "mem v=2 2\n".to_string()),
                (3, "mem v=2 2\n".to_string())
            ]
        );
        c.end_move(1, "db1", "cpu");
        let after = b.route("db1", "", Precision::Nanosecond, 0, body);
        assert_eq!(sent(&after), sent(&before));
    }
}
