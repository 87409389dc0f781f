//! influx-proxy: a high-availability and sharding proxy for InfluxDB 1.x.
//!
//! Map of the crate (the write path reads top to bottom):
//! - [`config`]: `proxy.json`, validated once at start.
//! - [`ring`]: the Go-compatible consistent-hash ring and shard keys.
//! - [`write`]: line scanning and per-backend batching of `/write` bodies.

pub mod config;
pub mod ring;
pub mod write;
