//! The spool: one memory-mapped append log per backend, on disk, so that a
//! 204 means the points will reach the backend whatever happens next.
//!
//! Two halves share a [`Shared`] state:
//! - the [`Appender`], owned by the backend's writer thread, copies each
//!   record into the mapped tail segment and publishes the new head;
//! - the [`Reader`], owned by the backend's sender thread, reads records
//!   between the persisted cursor and the head (with `pread`, so reading
//!   never maps memory), and moves the cursor once a backend confirmed them.
//!
//! Invariants:
//! - Records are only appended, never rewritten; the head only moves forward.
//! - The cursor never passes the head and only moves forward; segments wholly
//!   before it are deleted.
//! - After a restart the appender starts a fresh segment, so older segments
//!   are read-only and their written part ends at the first zero magic.
//! - A write to a `MAP_SHARED` mapping is in the page cache at once, so a
//!   killed process loses no appended record; `spool_sync` adds fdatasync
//!   for power loss.
//! - Pages already written are dropped from the mapping (`MADV_DONTNEED`)
//!   every `window` bytes ([`SpoolConfig::window`]), so the proxy's resident
//!   memory does not grow with the spool (the data stays in the page cache
//!   and on disk); the reader reads ahead as much.
//! - Nothing is written through the mapping without a disk block reserved
//!   behind it (`fallocate`, see [`segment::reserve_blocks`]), and nothing
//!   is appended without a [`Reservation`] taken first: a request is
//!   admitted on every backend it touches, or on none, before any append,
//!   and an admitted append cannot fail for lack of room.

pub mod goimport;
pub mod lock;
pub mod record;
pub mod segment;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::{MmapMut, MmapOptions};

use crate::log;
use record::{DecodeError, Kind, Record};

/// Default size of a segment file.
pub const DEFAULT_SEGMENT_SIZE: u64 = 32 << 20;
/// The most a spool keeps resident at each end: written bytes are released
/// from the mapping (and the next bytes faulted in) in chunks of this size,
/// and the reader reads ahead as much. Fewer, larger `madvise` calls cost
/// less CPU (each `MADV_DONTNEED` may stop the other cores for a TLB
/// flush); many backends share [`WINDOW_BUDGET`] instead.
pub const MAX_WINDOW: usize = 256 << 10;
/// The least window: a few `madvise` calls and reads per group.
pub const MIN_WINDOW: usize = 64 << 10;
/// The resident bytes all spools' windows may take together.
pub const WINDOW_BUDGET: usize = 2 << 20;

/// The window of each of `spools` spools: [`WINDOW_BUDGET`] shared, a power
/// of two between [`MIN_WINDOW`] and [`MAX_WINDOW`].
pub fn window_for(spools: usize) -> usize {
    let share = WINDOW_BUDGET / spools.max(1);
    let mut w = MIN_WINDOW;
    while w * 2 <= share && w * 2 <= MAX_WINDOW {
        w *= 2;
    }
    w
}

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Never by us: the kernel writes back when it likes.
    None,
    /// fdatasync every `flush_time`.
    Interval,
    /// fdatasync before the writer acknowledges.
    Always,
}

impl SyncMode {
    pub fn parse(value: &str) -> Option<SyncMode> {
        match value {
            "none" => Some(SyncMode::None),
            "" | "interval" => Some(SyncMode::Interval),
            "always" => Some(SyncMode::Always),
            _ => None,
        }
    }
}

/// A place in the log: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// Counters of one spool, readable at any time.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Records and bytes between cursor and head.
    pub waiting_records: AtomicU64,
    pub waiting_bytes: AtomicU64,
    /// Unix ms of the oldest waiting record (0 when none).
    pub oldest_ms: AtomicU64,
    /// Records skipped because they were damaged.
    pub corrupt_records: AtomicU64,
    /// Writes refused because the spool was full (`spool_max_size` or no
    /// space left on the disk).
    pub full_refusals: AtomicU64,
}

/// What waits in a spool at one moment, as `/health` and `/metrics` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub records: u64,
    pub bytes: u64,
    /// Seconds since the oldest waiting record was appended (0 when none).
    pub oldest_age_s: f64,
    pub corrupt_records: u64,
    pub full_refusals: u64,
}

impl SpoolStats {
    /// The backlog as of `now_ms` (unix ms); each counter read on its own
    /// (relaxed), so the figures may be a few records apart.
    pub fn backlog(&self, now_ms: u64) -> Backlog {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let records = load(&self.waiting_records);
        let oldest = load(&self.oldest_ms);
        let oldest_age_s = if records == 0 || oldest == 0 {
            0.0
        } else {
            now_ms.saturating_sub(oldest) as f64 / 1000.0
        };
        Backlog {
            records,
            bytes: load(&self.waiting_bytes),
            oldest_age_s,
            corrupt_records: load(&self.corrupt_records),
            full_refusals: load(&self.full_refusals),
        }
    }
}

/// Disk blocks reserved ahead of the writer, shared with the workers that
/// reserve room (they grow it) and the writer (it rolls into it).
struct Blocks {
    /// Sequence number of the next segment to create.
    next_seq: u64,
    /// The segment the writer rolls into next, created and reserved ahead:
    /// its number, file and length.
    spare: Option<(u64, File, u64)>,
}

struct State {
    head: Pos,
    /// The reader's cursor, published at every commit.
    delivered: Pos,
    closed: bool,
}

/// What both halves share.
pub struct Shared {
    state: Mutex<State>,
    appended: Condvar,
    /// Also signalled on every publish and on close, for a reader that
    /// waits on other channels too (`crossbeam_channel::select!`).
    wake_tx: crossbeam_channel::Sender<()>,
    wake_rx: crossbeam_channel::Receiver<()>,
    pub stats: SpoolStats,
    /// Bytes still admissible under `spool_max_size`: the limit, minus the
    /// bytes waiting, minus the reservations not yet appended.
    quota: AtomicI64,
    /// Bytes admissible on disk blocks already reserved ahead of the writer
    /// (the rest of its segment and the spare), minus what reservations
    /// hold: see [`Reservation`].
    disk: AtomicI64,
    blocks: Mutex<Blocks>,
    dir: PathBuf,
    segment_size: u64,
}

/// Takes `n` from `room` if it holds that much (a compare-and-swap loop,
/// so concurrent takers never overdraw it).
fn take(room: &AtomicI64, n: i64) -> bool {
    room.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        (v >= n).then_some(v - n)
    })
    .is_ok()
}

/// Room held for one record on one spool, taken before the record is
/// handed to the writer: `bytes` under `spool_max_size` and twice that on
/// reserved disk blocks. Appending it spends it ([`Appender::append`]);
/// dropping it unspent gives it back, so a request refused on one backend
/// releases what it took on the others.
///
/// Why twice on disk: a record is never split across segments, so when it
/// does not fit the rest of the writer's segment, that rest (smaller than
/// the record) is left unused and the record goes to the spare. Counting
/// each record twice covers that loss whatever the order the writer
/// appends the reserved records in: reserved records always fit the
/// reserved blocks. The writer gives back what a record did not use.
pub struct Reservation {
    shared: Arc<Shared>,
    bytes: u64,
    disk: u64,
}

impl Reservation {
    /// Bytes reserved for the record.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The record took `used` bytes and left `wasted` bytes of a segment
    /// unused; what is left of the reservation goes back.
    fn spend(mut self, used: u64, wasted: u64) {
        self.bytes = self.bytes.saturating_sub(used);
        self.disk = self.disk.saturating_sub(used + wasted);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.shared
                .quota
                .fetch_add(self.bytes as i64, Ordering::AcqRel);
        }
        if self.disk > 0 {
            self.shared
                .disk
                .fetch_add(self.disk as i64, Ordering::AcqRel);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few assignments; a poisoned lock
        // still holds a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_blocks(&self) -> MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves room for a record of `bytes` (its [`record::encoded_len`]):
    /// under `spool_max_size`, then on disk, reserving more blocks when the
    /// ones ahead do not suffice. Refusals are counted in `full_refusals`.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, AppendError> {
        let refused = |e| {
            self.stats.full_refusals.fetch_add(1, Ordering::Relaxed);
            Err(e)
        };
        let Ok(signed) = i64::try_from(bytes) else {
            return refused(AppendError::Full);
        };
        if !take(&self.quota, signed) {
            return refused(AppendError::Full);
        }
        // From here the reservation exists: an early return releases it.
        let mut held = Reservation {
            shared: Arc::clone(self),
            bytes,
            disk: 0,
        };
        let disk = signed.saturating_mul(2);
        if !take(&self.disk, disk) {
            if let Err(e) = self.grow(disk) {
                return refused(e);
            }
        }
        held.disk = disk as u64;
        Ok(held)
    }

    /// [`Shared::reserve`] for the record these parts encode to.
    pub fn reserve_record(
        self: &Arc<Self>,
        db: &str,
        rp: &str,
        payload_len: usize,
    ) -> Result<Reservation, AppendError> {
        self.reserve(record::encoded_len(db, rp, payload_len) as u64)
    }

    /// Reserves disk blocks until `need` bytes can be taken from the disk
    /// room, and takes them. Workers call it when the blocks ahead run
    /// short; one at a time (the lock is off the hot path).
    fn grow(&self, need: i64) -> Result<(), AppendError> {
        let mut blocks = self.lock_blocks();
        // Each pass adds at least what was missing; another worker may take
        // it first, so a few passes.
        for _ in 0..4 {
            if take(&self.disk, need) {
                return Ok(());
            }
            let missing = (need - self.disk.load(Ordering::Acquire)).max(1) as u64;
            // A whole segment when the disk has room for it; else half of
            // what is left (other spools share the disk), at least what is
            // missing. statvfs is only a hint: fallocate decides.
            let free = segment::free_bytes(&self.dir).unwrap_or(u64::MAX);
            let size = if self.segment_size <= free {
                self.segment_size.max(missing)
            } else if missing <= free {
                (free / 2).max(missing)
            } else {
                return Err(AppendError::NoRoom(self.no_room("no space left on device")));
            };
            let added = match self.add_blocks(&mut blocks, size) {
                // A quota, or a file system that counts differently.
                Err(AppendError::NoRoom(_)) if size > missing => {
                    self.add_blocks(&mut blocks, missing)?
                }
                other => other?,
            };
            self.disk.fetch_add(added as i64, Ordering::AcqRel);
        }
        Err(AppendError::NoRoom(self.no_room("no space left on device")))
    }

    /// Reserves `size` more bytes of blocks in the spare segment (created
    /// when there is none); returns `size`.
    fn add_blocks(&self, blocks: &mut Blocks, size: u64) -> Result<u64, AppendError> {
        let result = match &mut blocks.spare {
            Some((_, file, len)) => segment::extend(file, *len, size).map(|()| *len += size),
            None => segment::create(&self.dir, blocks.next_seq, size).map(|file| {
                blocks.spare = Some((blocks.next_seq, file, size));
                blocks.next_seq += 1;
            }),
        };
        match result {
            Ok(()) => Ok(size),
            Err(e) => Err(match segment::no_room_cause(&e) {
                Some(cause) => AppendError::NoRoom(self.no_room(cause)),
                None => AppendError::Io(e),
            }),
        }
    }

    fn no_room(&self, cause: &str) -> String {
        format!("{cause} ({})", self.dir.display())
    }

    /// The head (end of the last appended record).
    pub fn head(&self) -> Pos {
        self.lock().head
    }

    /// Waits up to `timeout` until everything appended before `target` has
    /// been delivered (the cursor reached it); false on timeout.
    pub fn wait_delivered(&self, target: Pos, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while st.delivered < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || st.closed {
                return false;
            }
            st = match self.appended.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

/// Settings of one spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The backend's folder (already the safe encoding of its name).
    pub dir: PathBuf,
    pub segment_size: u64,
    pub max_size: u64,
    pub sync: SyncMode,
    /// Bytes released from the mapping at a time and read ahead by the
    /// reader ([`window_for`]).
    pub window: usize,
}

/// Opens (or creates) the spool in `cfg.dir`: finds the persisted cursor,
/// counts what is waiting, and starts a fresh segment for appends.
pub fn open(cfg: &SpoolConfig) -> io::Result<(Appender, Reader)> {
    std::fs::create_dir_all(&cfg.dir)?;
    let seqs = segment::list_segments(&cfg.dir)?;
    let cursor_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(cfg.dir.join("cursor"))?;
    let mut cursor = read_cursor(&cursor_file).unwrap_or_default();
    let first = seqs.first().copied().unwrap_or(1);
    if cursor.seg < first {
        cursor = Pos { seg: first, off: 0 };
    }
    for &seq in seqs.iter().filter(|&&s| s < cursor.seg) {
        segment::remove(&cfg.dir, seq)?;
    }
    // Segments reserved ahead and never written (a spare, or the tail of a
    // proxy stopped before its first append) hold disk blocks for nothing.
    let mut seqs: Vec<u64> = seqs.into_iter().filter(|&s| s >= cursor.seg).collect();
    while let Some(&last) = seqs.last() {
        if !segment::is_unwritten(&cfg.dir, last)? {
            break;
        }
        segment::remove(&cfg.dir, last)?;
        seqs.pop();
    }
    let next_seq = seqs.last().map_or(cursor.seg, |&s| s + 1).max(cursor.seg);
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            head: Pos {
                seg: next_seq,
                off: 0,
            },
            delivered: cursor,
            closed: false,
        }),
        appended: Condvar::new(),
        wake_tx,
        wake_rx,
        stats: SpoolStats::default(),
        quota: AtomicI64::new(0),
        disk: AtomicI64::new(0),
        blocks: Mutex::new(Blocks {
            next_seq,
            spare: None,
        }),
        dir: cfg.dir.clone(),
        segment_size: cfg.segment_size.max(1),
    });
    let mut reader = Reader {
        shared: Arc::clone(&shared),
        dir: cfg.dir.clone(),
        cursor,
        cursor_file,
        open: None,
        buf: Vec::new(),
        buf_len: 0,
        buf_at: cursor,
        read_ahead: cfg.window.max(4096),
        cursor_dirty: false,
        scanned: cursor,
        damage_seen: Pos::default(),
    };
    reader.count_waiting()?;
    let waiting = shared.stats.waiting_bytes.load(Ordering::Relaxed);
    let limit = cfg.max_size.min(i64::MAX as u64 / 4);
    shared
        .quota
        .store(limit.saturating_sub(waiting) as i64, Ordering::Release);
    let appender = Appender::new(cfg, shared, next_seq)?;
    Ok((appender, reader))
}

fn read_cursor(file: &File) -> Option<Pos> {
    let mut b = [0u8; 20];
    file.read_exact_at(&mut b, 0).ok()?;
    let crc = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    if crc32fast::hash(&b[..16]) != crc {
        log!("spool cursor is damaged; replaying from the oldest segment");
        return None;
    }
    let mut seg = [0u8; 8];
    let mut off = [0u8; 8];
    seg.copy_from_slice(&b[..8]);
    off.copy_from_slice(&b[8..16]);
    Some(Pos {
        seg: u64::from_le_bytes(seg),
        off: u64::from_le_bytes(off),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why room could not be reserved, or an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// `spool_max_size` reached.
    Full,
    /// The file system has no block left: the cause and the spool's folder.
    NoRoom(String),
    /// The disk refused otherwise (no permission, I/O error, ...).
    Io(io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Full => f.write_str("spool is full (spool_max_size)"),
            AppendError::NoRoom(cause) => write!(f, "spool is full: {cause}"),
            AppendError::Io(e) => write!(f, "spool write failed: {e}"),
        }
    }
}

/// The writing half, owned by the writer thread.
pub struct Appender {
    shared: Arc<Shared>,
    dir: PathBuf,
    segment_size: u64,
    sync: SyncMode,
    seq: u64,
    map: Option<MmapMut>,
    /// The current segment's file, for fdatasync.
    file: Option<File>,
    pos: usize,
    /// End of the bytes already synced.
    synced: usize,
    /// End of the bytes already released from the mapping.
    released: usize,
    /// End of the pages already faulted in for writing.
    populated: usize,
    /// Bytes released and faulted in at a time (the spool's window).
    chunk: usize,
    last_sync: Instant,
}

impl Appender {
    fn new(cfg: &SpoolConfig, shared: Arc<Shared>, seq: u64) -> io::Result<Appender> {
        Ok(Appender {
            shared,
            dir: cfg.dir.clone(),
            segment_size: cfg.segment_size,
            sync: cfg.sync,
            // The first append creates segment `seq`.
            seq: seq.saturating_sub(1),
            map: None,
            file: None,
            pos: 0,
            synced: 0,
            released: 0,
            populated: 0,
            chunk: cfg.window.max(4096) / 4096 * 4096,
            last_sync: Instant::now(),
        })
    }

    /// The state both halves share (for reservations and counters).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Appends one record in the room reserved for it (at least its
    /// [`record::encoded_len`]); the caller acknowledges after this returns
    /// (and after [`Appender::sync_if_needed`] under `spool_sync=always`).
    pub fn append(
        &mut self,
        room: Reservation,
        kind: Kind,
        points: u32,
        db: &str,
        rp: &str,
        payload: &[u8],
    ) -> Result<(), AppendError> {
        let n = record::encoded_len(db, rp, payload.len());
        if n > record::MAX_RECORD || db.len() > u16::MAX as usize || rp.len() > u16::MAX as usize {
            return Err(AppendError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "record too large for the spool",
            )));
        }
        if room.bytes() < n as u64 || !Arc::ptr_eq(&room.shared, &self.shared) {
            return Err(AppendError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "record larger than the room reserved for it",
            )));
        }
        let fits = self.map.as_ref().is_some_and(|m| self.pos + n <= m.len());
        let mut wasted = 0;
        if !fits {
            wasted = self.map.as_ref().map_or(0, |m| m.len() - self.pos);
            self.roll(n)?;
        }
        room.spend(n as u64, wasted as u64);
        self.populate_ahead(n);
        let at = now_ms();
        let Some(map) = self.map.as_mut() else {
            return Err(AppendError::Io(io::Error::other("no segment mapped")));
        };
        record::encode_into(
            &mut map[self.pos..self.pos + n],
            kind,
            points,
            at,
            db,
            rp,
            payload,
        );
        self.pos += n;
        self.release_written();
        let stats = &self.shared.stats;
        stats.waiting_records.fetch_add(1, Ordering::Relaxed);
        stats.waiting_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let _ = stats
            .oldest_ms
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the records appended so far visible to the reader.
    pub fn publish(&self) {
        let mut st = self.shared.lock();
        st.head = Pos {
            seg: self.seq,
            off: self.pos as u64,
        };
        drop(st);
        self.shared.appended.notify_all();
        let _ = self.shared.wake_tx.try_send(());
    }

    /// Syncs what was appended since the last sync, when the mode asks for
    /// it now: always under `always`, every `interval` under `interval`.
    pub fn sync_if_needed(&mut self, interval: Duration) -> io::Result<()> {
        let due = match self.sync {
            SyncMode::None => false,
            SyncMode::Always => true,
            SyncMode::Interval => self.last_sync.elapsed() >= interval,
        };
        if due {
            self.sync()?;
        }
        Ok(())
    }

    /// Forces what was appended to the current segment to stable storage
    /// (fdatasync: it covers pages already dropped from the mapping).
    pub fn sync(&mut self) -> io::Result<()> {
        self.last_sync = Instant::now();
        if let Some(file) = &self.file {
            if self.pos > self.synced {
                file.sync_data()?;
                self.synced = self.pos;
            }
        }
        Ok(())
    }

    /// Closes the current segment and maps the spare, which must hold at
    /// least `need` bytes. Reserved records always fit the spare; should one
    /// not, the spare is extended first (or created if there is none).
    fn roll(&mut self, need: usize) -> Result<(), AppendError> {
        if self.map.is_some() {
            // The rest of the old segment stays zero: the reader's end mark.
            self.sync().map_err(AppendError::Io)?;
        }
        let mut blocks = self.shared.lock_blocks();
        let short = match &blocks.spare {
            Some((_, _, len)) => (need as u64).saturating_sub(*len),
            None => (need as u64).max(self.segment_size),
        };
        if short > 0 {
            self.shared.add_blocks(&mut blocks, short)?;
        }
        let Some((seq, file, size)) = blocks.spare.take() else {
            return Err(AppendError::Io(io::Error::other("no spare segment")));
        };
        // SAFETY: the file was created by us, its blocks are reserved, and
        // it is only ever written through this mapping; readers use pread
        // on the same page cache.
        let mapped = usize::try_from(size)
            .map_err(|_| io::Error::other("segment too large to map"))
            .and_then(|len| unsafe { MmapOptions::new().len(len).map_mut(&file) });
        let map = match mapped {
            Ok(map) => map,
            Err(e) => {
                // Its blocks stay counted as room: keep it for the next try.
                blocks.spare = Some((seq, file, size));
                return Err(AppendError::Io(e));
            }
        };
        drop(blocks);
        self.map = Some(map);
        self.file = Some(file);
        self.seq = seq;
        self.pos = 0;
        self.synced = 0;
        self.released = 0;
        self.populated = 0;
        Ok(())
    }

    /// Faults in the pages the next `n` bytes need, a chunk at a time, with
    /// one `MADV_POPULATE_WRITE` instead of a page fault per 4 KiB. Where
    /// the kernel lacks it, the writes fault the pages in as usual.
    fn populate_ahead(&mut self, n: usize) {
        let Some(map) = &self.map else { return };
        let need = self.pos + n;
        if need <= self.populated {
            return;
        }
        let end = need
            .div_ceil(self.chunk)
            .saturating_mul(self.chunk)
            .min(map.len());
        let from = self.populated.max(self.pos / 4096 * 4096);
        if map
            .advise_range(memmap2::Advice::PopulateWrite, from, end - from)
            .is_ok()
        {
            self.populated = end;
        } else {
            // Do not try again for this segment.
            self.populated = map.len();
        }
    }

    /// Drops whole written chunks from the mapping (they stay in the page
    /// cache and on disk) so resident memory stays small.
    fn release_written(&mut self) {
        let Some(map) = &self.map else { return };
        let upto = self.pos / self.chunk * self.chunk;
        if upto > self.released {
            // Dropping the pages from our mapping leaves them dirty in the
            // page cache: `sync` (fdatasync of the file) still covers them.
            // SAFETY: the range is inside the mapping and never read or
            // written through it again (the log is append-only).
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    upto - self.released,
                )
            };
            self.released = upto;
        }
    }

    /// Syncs and tells the reader that nothing more will come.
    pub fn close(mut self) {
        if let Err(e) = self.sync() {
            log!("spool {}: final sync failed: {e}", self.dir.display());
        }
        self.publish();
        self.shared.lock().closed = true;
        self.shared.appended.notify_all();
        let _ = self.shared.wake_tx.try_send(());
    }
}

/// A record read from the spool, with where it ends.
pub struct ReadRecord<'a> {
    pub record: Record<'a>,
    pub end: Pos,
}

/// The reading half, owned by the sender thread.
pub struct Reader {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// Everything before this was delivered.
    cursor: Pos,
    cursor_file: File,
    /// The segment being read and its file.
    open: Option<(u64, File)>,
    /// Bytes read ahead from `buf_at`: `buf[..buf_len]` (the vector keeps
    /// its size so refills do not zero it again).
    buf: Vec<u8>,
    buf_len: usize,
    buf_at: Pos,
    /// How much a read brings in at least (the spool's window).
    read_ahead: usize,
    cursor_dirty: bool,
    /// Where the last `next` that found nothing stopped: past segment ends
    /// and damaged bytes, so the caller can move the cursor over them.
    scanned: Pos,
    /// The furthest damaged record counted, so a re-read does not count it
    /// again.
    damage_seen: Pos,
}

impl Reader {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn cursor(&self) -> Pos {
        self.cursor
    }

    /// Where the last [`Reader::next`] that returned `None` stopped. When
    /// that is past the cursor, only segment ends and damaged bytes lie in
    /// between: commit it so they are not read again.
    pub fn scanned_to(&self) -> Pos {
        self.scanned
    }

    /// A channel that receives a message after new records are published
    /// or the spool is closed (at most one is pending).
    pub fn wakeups(&self) -> crossbeam_channel::Receiver<()> {
        self.shared.wake_rx.clone()
    }

    /// Whether the appender closed the spool.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Reads the next record at or after `from` (a position at a record
    /// boundary, normally the end of the previous one). Damaged bytes are
    /// skipped, counted and logged. `None` when nothing more is written.
    pub fn next(&mut self, from: Pos) -> io::Result<Option<ReadRecord<'_>>> {
        let head = self.shared.head();
        let mut at = from;
        loop {
            if at >= head {
                self.scanned = at;
                return Ok(None);
            }
            let limit = if at.seg == head.seg {
                head.off
            } else {
                u64::MAX
            };
            match self.decode_at(at, limit)? {
                Step::Record(len) => {
                    let start = (at.off - self.buf_at.off) as usize;
                    let end = Pos {
                        seg: at.seg,
                        off: at.off + len as u64,
                    };
                    let (record, _) = record::decode(&self.buf[start..start + len])
                        .map_err(|_| io::Error::other("record changed under the reader"))?;
                    return Ok(Some(ReadRecord { record, end }));
                }
                Step::Skip(to) => at = to,
                Step::NextSegment => {
                    at = Pos {
                        seg: at.seg + 1,
                        off: 0,
                    };
                    // Segments may be missing (deleted by hand): find the next.
                    if at.seg < head.seg && !segment::segment_path(&self.dir, at.seg).exists() {
                        let next = segment::list_segments(&self.dir)?
                            .into_iter()
                            .find(|&s| s > at.seg)
                            .unwrap_or(head.seg);
                        at = Pos { seg: next, off: 0 };
                    }
                }
            }
        }
    }

    /// Makes `buf` hold the record at `at` (reading ahead) and decodes it.
    fn decode_at(&mut self, at: Pos, limit: u64) -> io::Result<Step> {
        let mut want = record::PREFIX;
        loop {
            let have_from = if self.buf_at.seg == at.seg && self.buf_at.off <= at.off {
                (at.off - self.buf_at.off) as usize
            } else {
                usize::MAX
            };
            if have_from == usize::MAX || have_from + want > self.buf_len {
                let got = self.fill(at, want.max(self.read_ahead), limit)?;
                if got == 0 && self.open.as_ref().is_some_and(|(s, _)| *s == at.seg) {
                    // The segment's file ends here: filled to the last byte.
                    return Ok(Step::NextSegment);
                }
                if got < want {
                    // The segment ends (or was cut) before the record does.
                    return Ok(self.damaged(at, got, true));
                }
                continue;
            }
            let bytes = &self.buf[have_from..self.buf_len];
            return Ok(match record::decode(bytes) {
                Ok((_, len)) => Step::Record(len),
                Err(DecodeError::Incomplete { needed }) if needed > want => {
                    want = needed;
                    continue;
                }
                Err(DecodeError::End) => Step::NextSegment,
                Err(DecodeError::Incomplete { .. }) | Err(DecodeError::Corrupt) => {
                    self.damaged(at, bytes.len(), false)
                }
            });
        }
    }

    /// Reads up to `len` bytes of segment `at.seg` from `at.off` (not past
    /// `limit`) into the buffer; returns how many bytes are available.
    fn fill(&mut self, at: Pos, len: usize, limit: u64) -> io::Result<usize> {
        if self.open.as_ref().map(|(s, _)| *s) != Some(at.seg) {
            match segment::open_read(&self.dir, at.seg) {
                Ok(f) => self.open = Some((at.seg, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.buf_len = 0;
                    self.buf_at = at;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
        let Some((_, file)) = &self.open else {
            return Ok(0);
        };
        let max = limit.saturating_sub(at.off).min(len as u64) as usize;
        if self.buf.len() < max {
            self.buf.resize(max, 0);
        }
        let mut got = 0;
        while got < max {
            match file.read_at(&mut self.buf[got..max], at.off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf_len = got;
        self.buf_at = at;
        Ok(got)
    }

    /// Skips a damaged record at `at`: to the next magic in the bytes at
    /// hand, or to the next segment when `at_end` or none is found.
    fn damaged(&mut self, at: Pos, available: usize, at_end: bool) -> Step {
        // The same damage is met again when a group is read twice: count
        // and log it once.
        let first_time = at > self.damage_seen;
        if first_time {
            self.damage_seen = at;
            self.shared
                .stats
                .corrupt_records
                .fetch_add(1, Ordering::Relaxed);
        }
        let start = (at.off.saturating_sub(self.buf_at.off)) as usize;
        let next = if at_end {
            None
        } else {
            record::find_magic(&self.buf[..start + available], start + 1)
        };
        match next {
            Some(p) => {
                let to = Pos {
                    seg: at.seg,
                    off: self.buf_at.off + p as u64,
                };
                if first_time {
                    log!(
                        "spool {}: damaged record at segment {} offset {}, skipped {} bytes",
                        self.dir.display(),
                        at.seg,
                        at.off,
                        to.off - at.off
                    );
                }
                Step::Skip(to)
            }
            None => {
                if first_time {
                    log!(
                    "spool {}: damaged record at segment {} offset {}, skipped the rest of the segment",
                    self.dir.display(),
                    at.seg,
                    at.off
                );
                }
                Step::NextSegment
            }
        }
    }

    /// Marks everything before `to` delivered (or set aside): moves the
    /// cursor, persists it, and deletes segments wholly before it.
    /// `records`/`bytes` are what the caller consumed, for the counters.
    pub fn commit(
        &mut self,
        to: Pos,
        records: u64,
        bytes: u64,
        next_oldest_ms: u64,
    ) -> io::Result<()> {
        if to <= self.cursor {
            return Ok(());
        }
        let stats = &self.shared.stats;
        let _ = stats
            .waiting_records
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(records))
            });
        let _ = stats
            .waiting_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
        stats.oldest_ms.store(next_oldest_ms, Ordering::Relaxed);
        if let Ok(freed) = i64::try_from(bytes) {
            self.shared.quota.fetch_add(freed, Ordering::AcqRel);
        }
        let old = self.cursor;
        self.cursor = to;
        self.shared.lock().delivered = to;
        self.shared.appended.notify_all();
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&to.seg.to_le_bytes());
        b[8..16].copy_from_slice(&to.off.to_le_bytes());
        let crc = crc32fast::hash(&b[..16]);
        b[16..].copy_from_slice(&crc.to_le_bytes());
        // On a full disk the cursor file may not take the write: the
        // delivered segments are deleted all the same (that frees the disk;
        // a restart then starts at the oldest segment left).
        let written = self.cursor_file.write_all_at(&b, 0);
        self.cursor_dirty = true;
        for seq in old.seg..to.seg {
            if self.open.as_ref().is_some_and(|(s, _)| *s == seq) {
                self.open = None;
            }
            segment::remove(&self.dir, seq)?;
        }
        written
    }

    /// fsyncs the cursor file if it changed.
    pub fn sync_cursor(&mut self) -> io::Result<()> {
        if self.cursor_dirty {
            self.cursor_file.sync_data()?;
            self.cursor_dirty = false;
        }
        Ok(())
    }

    /// At open: counts records and bytes from the cursor to the end of the
    /// old segments, and notes the oldest record's time.
    fn count_waiting(&mut self) -> io::Result<()> {
        let mut at = self.cursor;
        let (mut records, mut bytes, mut oldest) = (0u64, 0u64, 0u64);
        while let Some(r) = self.next(at)? {
            records += 1;
            bytes += if r.end.seg == at.seg {
                r.end.off - at.off
            } else {
                r.end.off
            };
            if oldest == 0 {
                oldest = r.record.appended_at_ms;
            }
            at = r.end;
        }
        let stats = &self.shared.stats;
        stats.waiting_records.store(records, Ordering::Relaxed);
        stats.waiting_bytes.store(bytes, Ordering::Relaxed);
        stats.oldest_ms.store(oldest, Ordering::Relaxed);
        if records > 0 {
            log!(
                "spool {}: {records} records ({bytes} bytes) to replay",
                self.dir.display()
            );
        }
        Ok(())
    }
}

enum Step {
    /// A valid record of this many bytes.
    Record(usize),
    /// Damaged bytes: resume here.
    Skip(Pos),
    /// Nothing more in this segment.
    NextSegment,
}

/// Where a backend's spool lives under `data_dir`.
pub fn backend_dir(data_dir: &Path, backend: &str) -> PathBuf {
    data_dir.join(segment::dir_name(backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "influx-proxy-spool-{}-{name}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn windows_share_the_budget_within_their_bounds() {
        assert_eq!(window_for(0), MAX_WINDOW);
        assert_eq!(window_for(2), MAX_WINDOW);
        assert_eq!(window_for(8), MAX_WINDOW);
        assert_eq!(window_for(16), 128 << 10);
        assert_eq!(window_for(32), MIN_WINDOW);
        assert_eq!(window_for(1000), MIN_WINDOW);
    }

    fn cfg(dir: &Path, segment_size: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            segment_size,
            max_size: 1 << 30,
            sync: SyncMode::Interval,
            window: MAX_WINDOW,
        }
    }

    /// Reserves and appends a one-point write record of db `db`.
    fn put(a: &mut Appender, payload: &[u8]) {
        let room = a.shared().reserve_record("db", "", payload.len()).unwrap();
        a.append(room, Kind::Write, 1, "db", "", payload).unwrap();
    }

    fn drain(r: &mut Reader) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let mut at = r.cursor();
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut last = at;
        while let Some(rec) = r.next(at).unwrap() {
            out.push((
                String::from_utf8_lossy(rec.record.payload).into_owned(),
                rec.record.points,
            ));
            n += 1;
            bytes += 1;
            at = rec.end;
            last = rec.end;
        }
        r.commit(last, n, bytes, 0).unwrap();
        out
    }

    #[test]
    fn appended_records_are_read_in_order_across_segments_and_after_restart() {
        let dir = tmp("order");
        {
            let (mut a, mut r) = open(&cfg(&dir, 256)).unwrap();
            for i in 0..20u32 {
                let line = format!("m v={i} {i}\n");
                put(&mut a, line.as_bytes());
            }
            a.publish();
            let got = drain(&mut r);
            assert_eq!(got.len(), 20);
            assert_eq!(got[7].0, "m v=7 7\n");
            for i in 20..25u32 {
                put(&mut a, format!("m v={i} {i}\n").as_bytes());
            }
            a.publish();
            a.close();
        }
        // Restart: only the 5 undelivered records come back.
        let (_a, mut r) = open(&cfg(&dir, 256)).unwrap();
        assert_eq!(r.shared().stats.waiting_records.load(Ordering::Relaxed), 5);
        let got = drain(&mut r);
        assert_eq!(
            got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            vec![
                "m v=20 20\n",
                "m v=21 21\n",
                "m v=22 22\n",
                "m v=23 23\n",
                "m v=24 24\n"
            ]
        );
        // Delivered segments are gone.
        let left = segment::list_segments(&dir).unwrap();
        assert!(left.len() <= 2, "segments left: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_records_are_skipped_and_counted() {
        let dir = tmp("damage");
        {
            let (mut a, _r) = open(&cfg(&dir, 1 << 20)).unwrap();
            for i in 0..10u32 {
                put(&mut a, format!("m v={i} {i}\n").as_bytes());
            }
            a.close();
        }
        let seg = segment::list_segments(&dir).unwrap()[0];
        let path = segment::segment_path(&dir, seg);
        let mut bytes = std::fs::read(&path).unwrap();
        let one = record::encoded_len("db", "", "m v=0 0\n".len());
        // Flip a byte inside record 3's payload.
        bytes[3 * one + one - 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_a, mut r) = open(&cfg(&dir, 1 << 20)).unwrap();
        let got = drain(&mut r);
        assert_eq!(got.len(), 9, "{got:?}");
        assert!(!got.iter().any(|g| g.0 == "m v=3 3\n"));
        assert!(r.shared().stats.corrupt_records.load(Ordering::Relaxed) >= 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_segment_cut_mid_record_loses_only_that_record() {
        let dir = tmp("cut");
        {
            let (mut a, _r) = open(&cfg(&dir, 1 << 20)).unwrap();
            for i in 0..10u32 {
                put(&mut a, format!("m v={i} {i}\n").as_bytes());
            }
            a.close();
        }
        let seg = segment::list_segments(&dir).unwrap()[0];
        let one = record::encoded_len("db", "", "m v=0 0\n".len()) as u64;
        let f = OpenOptions::new()
            .write(true)
            .open(segment::segment_path(&dir, seg))
            .unwrap();
        f.set_len(6 * one + 5).unwrap();
        let (_a, mut r) = open(&cfg(&dir, 1 << 20)).unwrap();
        assert_eq!(drain(&mut r).len(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh spool limited to `max_size` bytes, and its shared state.
    fn limited(name: &str, max_size: u64) -> (PathBuf, Appender, Reader, Arc<Shared>) {
        let dir = tmp(name);
        let mut c = cfg(&dir, 4096);
        c.max_size = max_size;
        let (a, r) = open(&c).unwrap();
        let shared = Arc::clone(a.shared());
        (dir, a, r, shared)
    }

    #[test]
    fn reservations_count_against_the_limit_and_dropping_one_gives_it_back() {
        let (dir, mut a, _r, shared) = limited("reserve", 1000);
        let first = shared.reserve(600).unwrap();
        // Held but not appended: it counts.
        assert!(matches!(shared.reserve(600), Err(AppendError::Full)));
        drop(first);
        let again = shared.reserve(600).unwrap();
        let payload = vec![b'x'; 600 - record::encoded_len("db", "", 0)];
        a.append(again, Kind::Write, 1, "db", "", &payload).unwrap();
        // Appended: it counts as waiting now, until delivered.
        assert!(matches!(shared.reserve(600), Err(AppendError::Full)));
        assert_eq!(shared.stats.full_refusals.load(Ordering::Relaxed), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let (dir, _a, _r, shared) = limited("race", 10_000);
        let held = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(r) = shared.reserve(300) {
                            held.lock().unwrap().push(r);
                        }
                    }
                });
            }
        });
        assert_eq!(held.lock().unwrap().len(), 10_000 / 300);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reserved_records_fit_whatever_the_order_they_are_appended_in() {
        let dir = tmp("fit");
        let (mut a, mut r) = open(&cfg(&dir, 1000)).unwrap();
        let shared = Arc::clone(a.shared());
        let mut rooms = Vec::new();
        for i in 0..40usize {
            let payload = vec![b'a' + (i % 26) as u8; 50 + (i * 37) % 700];
            let n = record::encoded_len("db", "", payload.len()) as u64;
            rooms.push((shared.reserve(n).unwrap(), payload));
        }
        // Appended in another order than reserved: every one still fits
        // the blocks reserved ahead, and none is ever short of room.
        rooms.reverse();
        for (room, payload) in rooms {
            a.append(room, Kind::Write, 1, "db", "", &payload).unwrap();
            assert!(shared.disk.load(Ordering::Relaxed) >= 0);
        }
        a.publish();
        assert_eq!(drain(&mut r).len(), 40);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_spare_segment_never_written_is_removed_at_restart() {
        let dir = tmp("spare");
        {
            let (mut a, _r) = open(&cfg(&dir, 4096)).unwrap();
            put(&mut a, b"m v=1 1\n");
            // Reserved ahead, never appended: the spare exists on disk.
            let room = a.shared().reserve(3000).unwrap();
            assert_eq!(segment::list_segments(&dir).unwrap().len(), 2);
            drop(room);
            a.close();
        }
        let (_a, mut r) = open(&cfg(&dir, 4096)).unwrap();
        assert_eq!(segment::list_segments(&dir).unwrap().len(), 1);
        assert_eq!(drain(&mut r).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
