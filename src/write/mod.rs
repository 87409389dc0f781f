//! The write path inside a worker: scan a `/write` body into lines and group
//! them into one batch per backend.

pub mod line;
