//! Prometheus remote storage: `POST /api/v1/prom/write` and
//! `POST /api/v1/prom/read`, as InfluxDB 1.x serves them.
//!
//! Both bodies are a protobuf message ([`proto`]) in the snappy block format.
//! A write becomes line protocol ([`write`]): one point per sample, the
//! measurement from `__name__`, the labels as tags, the field `value`, the
//! time in nanoseconds, exactly as influxd stores a sample; it then takes the
//! `/write` path (routing by (db, measurement), spool, the 204 promise). A
//! read ([`read`]) is relayed unchanged to the owner of its metric with the
//! read failover of `/query`; influxd answers it from the points written.
//!
//! Invariant: a body is decompressed only after the length its snappy header
//! announces was checked against `max_body_size`, so a small body cannot make
//! the proxy allocate more than the limit.

pub mod proto;
pub mod read;
pub mod write;

use crate::server::error::ApiError;

/// The label Prometheus keeps the metric name in.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Why a remote-storage body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The snappy framing is broken.
    Snappy(String),
    /// The announced or actual size is over `max_body_size`.
    TooLarge,
    /// The protobuf message is truncated or malformed.
    Protobuf(String),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::Snappy(m) => {
                ApiError::bad_request(format!("unable to decode snappy body: {m}"))
            }
            BodyError::TooLarge => ApiError::new(413, "Request Entity Too Large"),
            BodyError::Protobuf(m) => ApiError::bad_request(m),
        }
    }
}

/// Decompresses a snappy block of at most `limit` bytes once decompressed;
/// the announced length is checked before anything is allocated.
pub fn unsnappy(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let len = snap::raw::decompress_len(body).map_err(|e| BodyError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(BodyError::TooLarge);
    }
    let mut out = vec![0; len];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(|e| BodyError::Snappy(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_length_is_checked_before_allocating() {
        // A header announcing 2^32 - 1 bytes, followed by nothing.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(unsnappy(&body, 1 << 20), Err(BodyError::TooLarge));
        let ok = snap::raw::Encoder::new()
            .compress_vec(b"hello hello hello")
            .unwrap();
        assert_eq!(unsnappy(&ok, 17).unwrap(), b"hello hello hello");
        assert_eq!(unsnappy(&ok, 16), Err(BodyError::TooLarge));
        assert!(matches!(
            unsnappy(b"\x05garbage", 100),
            Err(BodyError::Snappy(_))
        ));
        assert!(matches!(unsnappy(b"", 100), Err(BodyError::Snappy(_))));
    }
}
