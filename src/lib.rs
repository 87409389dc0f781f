//! influx-proxy: a high-availability and sharding proxy for InfluxDB 1.x,
//! a drop-in for the Go influx-proxy v2.
//!
//! Map of the crate, every module, the write path top to bottom:
//! - [`config`]: `proxy.json` (or YAML, TOML), validated once at start into plain data
//!   ([`cipher`]: the Go proxy's `auth_encrypt` cipher for its secrets).
//! - [`server`]: the tiny_http listener (and its TLS front), the worker and
//!   query pools, connection limits, routing, auth and error bodies. The
//!   only module that knows tiny_http. [`url`] decodes client parameters.
//! - [`write`](mod@write): inside a worker, the `/write` endpoint scans a body into
//!   lines ([`write::line`]) and groups them per backend ([`write::batch`]).
//! - [`ring`] and [`cluster`]: Go-compatible placement of a shard key on one
//!   backend per circle; backends' health flags and counters (the
//!   [`cluster::pinger`] threads); the databases the backends have (a write
//!   to another gets influxd's 404).
//! - [`writer`]: per backend, one writer thread appending batches to the
//!   backend's [`spool`] (memory-mapped segments on disk, the failure log
//!   behind every 204) and one sender thread delivering it (POSTs, retries).
//! - [`query`]: `/query`: InfluxQL statements, routing to owners, merging
//!   several backends' answers; DDL through the writer's queue.
//! - [`flux`]: `/api/v2/query`: the bucket and measurement of a Flux query,
//!   relayed to their owner with the read failover of `/query`.
//! - [`http_client`]: the clients towards backends, which carries what, and
//!   the request building they share; [`http_client::BackendError`].
//! - [`admin`]: `/health` and `/replica`.
//! - [`prom`]: Prometheus remote write and read (`/api/v1/prom/*`).
//! - [`metrics`]: `/metrics`, the proxy's counters in the Prometheus text
//!   format, and the per-endpoint request counts the router keeps.
//! - [`transfer`]: rebalance, recovery, resync and cleanup: what to copy
//!   where, the copy itself, progress kept in `tlog_dir` across crashes.
//! - [`log`](mod@log): log lines in the Go proxy's format (ours and dependencies').
//! - [`alloc`]: the global allocator of the binary (huge blocks mapped
//!   lazily, for tiny_http's body drain).
//! - [`proxy`]: starts everything in order and stops it on SIGTERM/SIGINT
//!   ([`signals`]).

pub mod admin;
pub mod alloc;
pub mod cipher;
pub mod cluster;
pub mod config;
pub mod flux;
pub mod http_client;
pub mod log;
pub mod metrics;
pub mod prom;
pub mod proxy;
pub mod query;
pub mod ring;
pub mod server;
pub mod signals;
pub mod spool;
pub mod transfer;
pub mod url;
pub mod write;
pub mod writer;

/// The proxy's version, also sent as `X-Influxdb-Version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
