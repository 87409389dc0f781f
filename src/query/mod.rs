//! The query path: InfluxQL statements, routing to backends, merging answers.

pub mod forward;
