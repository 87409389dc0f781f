//! The write path inside a worker: the `/write` endpoint, the line scanner
//! and the per-backend batching of a request's lines.

pub mod batch;
pub mod endpoint;
pub mod line;
