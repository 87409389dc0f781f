//! The write path inside a worker: the `/write` endpoint (and its
//! `/api/v2/write` form, [`v2`]), the line scanner and the per-backend
//! batching of a request's lines.

pub mod batch;
pub mod endpoint;
pub mod line;
pub mod v2;
