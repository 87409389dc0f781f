//! The query path: InfluxQL statements, routing to backends, merging answers.
//!
//! - [`lexer`] and [`statement`]: a real InfluxQL tokenizer, statement
//!   splitting and classification, the forbidden set (pure).
//! - [`merge`]: combining several backends' answers to one statement into
//!   what one InfluxDB would answer (pure).
//! - [`render`]: writing the answer byte for byte as influxd does, as JSON
//!   or CSV (pure).
//! - [`forward`]: sending a query to one backend; [`http1`], the small
//!   HTTP/1.1 client it uses for plain `http://` backends.
//! - [`endpoint`]: `/query` itself: routing, failover, fan-out, DDL.
//! - [`relay`]: a body relayed unchanged to the owner of one measurement
//!   with the same read failover (Flux, Prometheus remote read).

pub mod endpoint;
pub mod forward;
pub mod http1;
pub mod lexer;
pub mod merge;
pub mod relay;
pub mod render;
pub mod statement;
