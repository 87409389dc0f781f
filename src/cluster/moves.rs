//! SKELETON (owned by helper C; replace this header): the circles under
//! transfer and the measurements moving inside them.

use std::sync::Arc;

use super::{Backend, Cluster};

impl Cluster {
    /// Marks circle `circle` as being filled by a transfer (reads avoid it
    /// while another circle can answer); `false` also forgets its moves.
    pub fn set_transferring(&self, _circle: usize, _on: bool) {
        unimplemented!()
    }
    pub fn is_transferring(&self, _circle: usize) -> bool {
        unimplemented!()
    }
    /// The proxy is resyncing (`/transfer/state`'s `resyncing`).
    pub fn set_resyncing(&self, _on: bool) {
        unimplemented!()
    }
    pub fn is_resyncing(&self) -> bool {
        unimplemented!()
    }
    /// (`db`, `measurement`) of circle `circle` is being copied from
    /// `source` to its owner: until [`Cluster::end_move`], writes of it also
    /// go to `source` when `source` is a backend of the cluster, and reads of
    /// it in that circle are answered with `source`'s data.
    pub fn begin_move(&self, _circle: usize, _db: &str, _measurement: &str, _source: Arc<Backend>) {
        unimplemented!()
    }
    /// The copy of (`db`, `measurement`) is complete: reads go to the owner.
    pub fn end_move(&self, _circle: usize, _db: &str, _measurement: &str) {
        unimplemented!()
    }
}
