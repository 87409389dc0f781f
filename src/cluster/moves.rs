//! The circles under transfer and the measurements moving inside them.
//!
//! A transfer marks the circle it fills as *transferring*: reads avoid it
//! while another circle can answer (its backends count as write-only, as
//! in the Go proxy), and `/health` says so. Inside that circle each
//! (database, measurement) being copied is a *move*, from a source backend
//! to its owner under the current ring, between [`Cluster::begin_move`] and
//! [`Cluster::end_move`]:
//! - writes of it go to the owner as always and also to the source when the
//!   source is a backend of the cluster, so the source keeps a complete copy
//!   while it is being copied;
//! - reads of it in that circle ask the source (see
//!   `query::endpoint` for which statements also ask the owner).
//!
//! Moves are keyed by the rendered shard key, per circle, behind a lock
//! that only statements and write requests touching a circle *with moves*
//! take. With no transfer running the write path pays one atomic load per
//! request ([`Cluster::placement_generation`]) and the read path one per
//! statement and circle ([`Cluster::moves_in`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::{Backend, Cluster};

/// One measurement being copied to its owner.
#[derive(Debug, Clone)]
pub struct Move {
    pub source: Arc<Backend>,
    /// The source is a backend of the cluster (not a removed one): it has a
    /// writer, gets the measurement's writes during the move, and so holds
    /// all of it.
    pub member: bool,
}

/// Shard key (rendered) -> its move, for one circle.
type MoveMap = HashMap<Box<[u8]>, Move>;

/// Transfer state of one circle.
#[derive(Debug, Default)]
struct CircleTransfer {
    transferring: AtomicBool,
    /// `moves` is not empty: the fast path of readers and writers.
    has_moves: AtomicBool,
    moves: RwLock<MoveMap>,
}

/// Transfer state of the whole cluster, one entry per circle.
#[derive(Debug, Default)]
pub struct Transfers {
    circles: Vec<CircleTransfer>,
    /// Some circle has moves.
    any_moves: AtomicBool,
    resyncing: AtomicBool,
    /// Bumped after every change of the moves: placements cached before are
    /// stale.
    generation: AtomicU64,
}

impl Transfers {
    pub fn new(circles: usize) -> Transfers {
        Transfers {
            circles: (0..circles).map(|_| CircleTransfer::default()).collect(),
            ..Transfers::default()
        }
    }
}

/// The moves of one circle, read-locked while a statement is placed.
pub struct MovesView<'a>(RwLockReadGuard<'a, MoveMap>);

impl MovesView<'_> {
    /// The move of a rendered shard key, if it is moving.
    pub fn get(&self, key: &[u8]) -> Option<&Move> {
        self.0.get(key)
    }

    /// Every move of the circle.
    pub fn iter(&self) -> impl Iterator<Item = &Move> {
        self.0.values()
    }
}

impl Cluster {
    /// Marks circle `circle` as being filled by a transfer (reads avoid it
    /// while another circle can answer); `false` also forgets its moves.
    pub fn set_transferring(&self, circle: usize, on: bool) {
        let Some(c) = self.transfers.circles.get(circle) else {
            return;
        };
        c.transferring.store(on, Ordering::Release);
        if !on {
            self.change_moves(circle, |moves| moves.clear());
        }
    }

    pub fn is_transferring(&self, circle: usize) -> bool {
        self.transfers
            .circles
            .get(circle)
            .is_some_and(|c| c.transferring.load(Ordering::Acquire))
    }

    /// The proxy is resyncing (`/transfer/state`'s `resyncing`).
    pub fn set_resyncing(&self, on: bool) {
        self.transfers.resyncing.store(on, Ordering::Release);
    }

    pub fn is_resyncing(&self) -> bool {
        self.transfers.resyncing.load(Ordering::Acquire)
    }

    /// (`db`, `measurement`) of circle `circle` is being copied from
    /// `source` to its owner: until [`Cluster::end_move`], writes of it also
    /// go to `source` when `source` is a backend of the cluster, and reads of
    /// it in that circle are answered with `source`'s data.
    pub fn begin_move(&self, circle: usize, db: &str, measurement: &str, source: Arc<Backend>) {
        let key = self.shard_key.render(db, measurement).into_boxed_slice();
        let member = self.is_member(&source);
        self.change_moves(circle, |moves| {
            moves.insert(key, Move { source, member });
        });
    }

    /// The copy of (`db`, `measurement`) is complete: reads go to the owner.
    pub fn end_move(&self, circle: usize, db: &str, measurement: &str) {
        let key = self.shard_key.render(db, measurement);
        self.change_moves(circle, |moves| {
            moves.remove(key.as_slice());
        });
    }

    /// Changes the moves of a circle and publishes the change: the flags
    /// are set and the generation bumped after the map changed, so a write
    /// request that sees the new generation finds the new moves.
    fn change_moves(&self, circle: usize, change: impl FnOnce(&mut MoveMap)) {
        let t = &self.transfers;
        let Some(c) = t.circles.get(circle) else {
            return;
        };
        {
            // A poisoned lock only means a panic elsewhere mid-change of a
            // plain map: its content is still a valid map.
            let mut moves = c.moves.write().unwrap_or_else(|e| e.into_inner());
            change(&mut moves);
            c.has_moves.store(!moves.is_empty(), Ordering::Release);
            let any = t
                .circles
                .iter()
                .any(|o| o.has_moves.load(Ordering::Acquire));
            t.any_moves.store(any, Ordering::Release);
        }
        t.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever the moves change: the write path compares it once
    /// per request and drops its cached placements when it moved.
    pub fn placement_generation(&self) -> u64 {
        self.transfers.generation.load(Ordering::Acquire)
    }

    /// The moves of circle `circle`, read-locked; `None` (one atomic load)
    /// when it has none.
    pub fn moves_in(&self, circle: usize) -> Option<MovesView<'_>> {
        let c = self.transfers.circles.get(circle)?;
        if !c.has_moves.load(Ordering::Acquire) {
            return None;
        }
        Some(MovesView(c.moves.read().unwrap_or_else(|e| e.into_inner())))
    }

    /// Appends to `out` the id of every source that must also get the
    /// writes of `key` (a backend of the cluster moving it to another
    /// owner), after the owners [`Cluster::owners_into`] gave.
    pub(crate) fn moving_sources_into(&self, key: &[u8], out: &mut Vec<u32>) {
        if !self.transfers.any_moves.load(Ordering::Acquire) {
            return;
        }
        for circle in &self.circles {
            let Some(moves) = self.moves_in(circle.id) else {
                continue;
            };
            if let Some(m) = moves.get(key).filter(|m| m.member) {
                if circle.owner(key).id != m.source.id {
                    out.push(m.source.id as u32);
                }
            }
        }
    }

    /// `backend` is one of the cluster's (not a removed one).
    fn is_member(&self, backend: &Arc<Backend>) -> bool {
        self.backends
            .get(backend.id)
            .is_some_and(|b| Arc::ptr_eq(b, backend) || b.url == backend.url)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{BackendConfig, Config};

    /// One circle of two backends (`db1,cpu` -> a, `db1,mem` -> b).
    fn cluster() -> Cluster {
        let text = r#"{"circles":[
            {"name":"c1","backends":[{"name":"a","url":"http://h:1"},{"name":"b","url":"http://h:2"}]}]}"#;
        Cluster::new(&Config::from_json(text).unwrap().0)
    }

    /// A backend taken out of circle 0 (`rebalance rm`).
    pub(crate) fn removed(id: usize, url: &str) -> Arc<Backend> {
        let cfg = BackendConfig {
            name: "gone".into(),
            url: url.into(),
            username: String::new(),
            password: String::new(),
            auth_encrypt: false,
            write_only: false,
        };
        Arc::new(Backend::new(id, 0, &cfg))
    }

    #[test]
    fn a_move_is_seen_until_it_ends_and_bumps_the_generation() {
        let c = cluster();
        assert!(c.moves_in(0).is_none());
        let g0 = c.placement_generation();
        let b = Arc::clone(&c.backends[1]);
        c.begin_move(0, "db1", "cpu", b);
        assert!(c.placement_generation() > g0);
        let key = c.shard_key.render("db1", "cpu");
        {
            let moves = c.moves_in(0).unwrap();
            let m = moves.get(&key).unwrap();
            assert_eq!((m.source.id, m.member), (1, true));
        }
        let g1 = c.placement_generation();
        c.end_move(0, "db1", "cpu");
        assert!(c.placement_generation() > g1);
        assert!(c.moves_in(0).is_none());
    }

    #[test]
    fn writes_of_a_moving_key_also_go_to_a_member_source_only() {
        let c = cluster();
        let key = c.shard_key.render("db1", "cpu");
        let mut out = Vec::new();
        c.moving_sources_into(&key, &mut out);
        assert!(out.is_empty());
        c.begin_move(0, "db1", "cpu", Arc::clone(&c.backends[1]));
        c.moving_sources_into(&key, &mut out);
        assert_eq!(out, [1]);
        // A removed backend has no writer: it gets nothing.
        c.begin_move(0, "db1", "cpu", removed(2, "http://h:9"));
        out.clear();
        c.moving_sources_into(&key, &mut out);
        assert!(out.is_empty());
        assert!(!c.moves_in(0).unwrap().get(&key).unwrap().member);
    }

    #[test]
    fn ending_the_transfer_forgets_the_moves_and_resync_is_a_flag() {
        let c = cluster();
        c.set_transferring(0, true);
        assert!(c.is_transferring(0));
        c.begin_move(0, "db1", "cpu", Arc::clone(&c.backends[1]));
        c.set_transferring(0, false);
        assert!(!c.is_transferring(0));
        assert!(c.moves_in(0).is_none());
        // Unknown circles are ignored.
        c.set_transferring(7, true);
        assert!(!c.is_transferring(7));
        c.set_resyncing(true);
        assert!(c.is_resyncing());
        c.set_resyncing(false);
        assert!(!c.is_resyncing());
    }
}
