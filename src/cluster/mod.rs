//! Circles and backends: who owns a shard key, and who is healthy.
//!
//! A circle is a full copy of the data; inside it each shard key has exactly
//! one owner, named by the circle's [`Ring`]. Every point goes to its owner in
//! every circle. The cluster is built once from the config and shared
//! read-only; only the backends' flags and counters, the set of known
//! databases ([`databases`]) and the transfer state ([`moves`]: circles
//! being filled, measurements being copied, whose sources also get writes
//! and answer reads until copied) change.

pub mod backend;
pub mod databases;
pub mod moves;
pub mod pinger;

use std::sync::Arc;

pub use backend::Backend;
pub use databases::Databases;

use crate::config::Config;
use crate::ring::{Ring, ShardKey};

/// One full copy of the data.
#[derive(Debug)]
pub struct Circle {
    pub id: usize,
    pub name: String,
    /// Its backends in config order.
    pub backends: Vec<Arc<Backend>>,
    ring: Ring,
}

impl Circle {
    /// The owner of a rendered shard key.
    pub fn owner(&self, key: &[u8]) -> &Arc<Backend> {
        // A circle always has backends (validated), so the ring is not empty.
        let idx = self.ring.get(key).unwrap_or(0);
        &self.backends[idx]
    }

    /// All backends active: the circle can answer reads.
    pub fn is_active(&self) -> bool {
        self.backends.iter().all(|b| b.is_active())
    }

    /// Any backend write-only: reads avoid the circle.
    pub fn is_write_only(&self) -> bool {
        self.backends.iter().any(|b| b.write_only)
    }
}

/// All circles, and all backends in one flat list (ids are indexes into it).
#[derive(Debug)]
pub struct Cluster {
    pub circles: Vec<Circle>,
    pub backends: Vec<Arc<Backend>>,
    pub shard_key: ShardKey,
    /// The databases the backends have (writes to others get a 404).
    pub databases: Arc<Databases>,
    /// Circles under transfer and their moving measurements (see [`moves`]).
    transfers: moves::Transfers,
}

impl Cluster {
    pub fn new(cfg: &Config) -> Cluster {
        let mut backends = Vec::new();
        let mut circles = Vec::new();
        for (ci, circle) in cfg.circles.iter().enumerate() {
            let mut members = Vec::new();
            let mut elements = Vec::new();
            for (bi, b) in circle.backends.iter().enumerate() {
                let backend = Arc::new(Backend::new(backends.len(), ci, b));
                elements.push(cfg.hash_key.element(bi, &b.name, &b.url));
                backends.push(Arc::clone(&backend));
                members.push(backend);
            }
            circles.push(Circle {
                id: ci,
                name: circle.name.clone(),
                backends: members,
                ring: Ring::new(&elements, cfg.vnode_size),
            });
        }
        Cluster {
            databases: Arc::new(Databases::new(&backends)),
            transfers: moves::Transfers::new(circles.len()),
            circles,
            backends,
            shard_key: cfg.shard_key.clone(),
        }
    }

    /// Appends to `out` the ids of the backends that get the writes of
    /// `key`: its owner in every circle, in circle order, then the source of
    /// each move of `key` that is a backend of the cluster (see [`moves`]).
    /// Without moves, exactly one id per circle.
    pub fn owners_into(&self, key: &[u8], out: &mut Vec<u32>) {
        let start = out.len();
        out.extend(self.circles.iter().map(|c| c.owner(key).id as u32));
        let mut sources = Vec::new();
        self.moving_sources_into(key, &mut sources);
        for id in sources {
            if !out[start..].contains(&id) {
                out.push(id);
            }
        }
    }

    /// The owner of (`db`, `measurement`) in every circle, in circle order.
    pub fn replicas(&self, db: &str, measurement: &str) -> Vec<&Arc<Backend>> {
        let key = self.shard_key.render(db, measurement);
        self.circles.iter().map(|c| c.owner(&key)).collect()
    }

    /// Whether some circle can answer reads (all its backends active).
    pub fn can_serve_reads(&self) -> bool {
        self.circles.iter().any(|c| c.is_active())
    }
}
