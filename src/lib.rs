//! influx-proxy: a high-availability and sharding proxy for InfluxDB 1.x,
//! a drop-in for the Go influx-proxy v2.
//!
//! Map of the crate, the write path top to bottom:
//! - [`config`]: `proxy.json`, validated once at start into plain data.
//! - [`server`]: the tiny_http listener, the worker pool, routing, auth and
//!   error bodies. The only module that knows tiny_http.
//! - [`write`]: inside a worker, the `/write` endpoint scans a body into
//!   lines ([`write::line`]) and groups them per backend ([`write::batch`]).
//! - [`ring`] and [`cluster`]: Go-compatible placement of a shard key on one
//!   backend per circle; backends' health flags and counters; the databases
//!   the backends have (a write to another gets influxd's 404).
//! - [`writer`]: one writer thread (coalescing) and one sender thread
//!   (delivery, retries) per backend.
//! - [`admin`]: `/health` and `/replica`.
//! - [`alloc`]: the global allocator of the binary (huge blocks mapped
//!   lazily, for tiny_http's body drain).
//! - [`proxy`]: starts everything in order and stops it on SIGTERM/SIGINT
//!   ([`signals`]).

pub mod admin;
pub mod alloc;
pub mod cipher;
pub mod cluster;
pub mod config;
pub mod http_client;
pub mod log;
pub mod proxy;
pub mod query;
pub mod ring;
pub mod server;
pub mod signals;
pub mod spool;
pub mod url;
pub mod write;
pub mod writer;

/// The proxy's version, also sent as `X-Influxdb-Version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
