//! Sending one batch to a backend and deciding what its answer means.
//!
//! The batch is gzipped (level 1: the backend is near, CPU is not free) and
//! POSTed to `<url>/write?db=..&rp=..` with the backend's own credentials.
//! Timestamps are already nanoseconds, so no `precision` is sent. The answer
//! is classified by [`classify`], a pure function of status and body.

use std::io::Write;
use std::time::Duration;

use flate2::write::DeflateEncoder;
use flate2::Compression;

use crate::cluster::Backend;
use crate::url;
use crate::write::batch::Batch;

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: stored.
    Delivered,
    /// 400: InfluxDB stored the valid points and refused the rest for good
    /// (partial write, field type conflict, unparsable line).
    Rejected(String),
    /// 404 `database not found`: the database does not exist there.
    DatabaseNotFound(String),
    /// `retention policy not found` (InfluxDB answers 500): nothing stored.
    RetentionPolicyNotFound(String),
    /// 413: the batch is too big for the backend; split it.
    TooLarge,
    /// Any other status (5xx, 401, ...): try again later, keep the order.
    Retry(String),
    /// No HTTP answer (refused, reset, timeout): the backend is down.
    Unreachable(String),
}

/// Classifies a backend's answer to a write.
pub fn classify(status: u16, body: &str) -> Outcome {
    let message = error_message(body);
    match status {
        200..=299 => Outcome::Delivered,
        _ if message.contains("retention policy not found") => {
            Outcome::RetentionPolicyNotFound(message)
        }
        400 => Outcome::Rejected(message),
        404 if message.contains("database not found") => Outcome::DatabaseNotFound(message),
        413 => Outcome::TooLarge,
        _ => Outcome::Retry(format!("status {status}: {message}")),
    }
}

/// The `error` of an InfluxDB JSON body, or the trimmed body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| body.trim().chars().take(512).collect())
}

/// A backend's HTTP client: one keep-alive agent, reused gzip buffer.
pub struct Sender {
    agent: ureq::Agent,
    gz: Vec<u8>,
}

impl Sender {
    pub fn new(timeout: Duration) -> Sender {
        Sender {
            agent: agent(timeout),
            gz: Vec::new(),
        }
    }

    /// POSTs `batch` to `backend` and classifies the answer.
    pub fn send(&mut self, backend: &Backend, batch: &Batch) -> Outcome {
        let gz = match gzip(&batch.lines, std::mem::take(&mut self.gz)) {
            Ok(gz) => gz,
            Err(e) => return Outcome::Retry(format!("gzip: {e}")),
        };
        let target = format!(
            "{}/write?db={}&rp={}",
            backend.url,
            url::encode(&batch.db),
            url::encode(&batch.rp)
        );
        let mut req = self
            .agent
            .post(&target)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &backend.authorization {
            req = req.header("Authorization", auth);
        }
        let outcome = match req.send(&gz[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let body = if status / 100 == 2 {
                    String::new()
                } else {
                    resp.body_mut()
                        .with_config()
                        .limit(64 * 1024)
                        .read_to_string()
                        .unwrap_or_default()
                };
                classify(status, &body)
            }
            Err(e) => Outcome::Unreachable(e.to_string()),
        };
        self.gz = gz;
        outcome
    }
}

/// Gzips `data` into `out` (cleared first) at level 1. The deflate stream
/// comes from flate2; header and trailer are written here so the CRC32 is
/// crc32fast's SIMD one rather than the deflate backend's.
pub fn gzip(data: &[u8], mut out: Vec<u8>) -> std::io::Result<Vec<u8>> {
    out.clear();
    // Magic, deflate, no flags, no mtime, fastest, unknown OS.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    let mut enc = DeflateEncoder::new(out, Compression::new(1));
    enc.write_all(data)?;
    let mut out = enc.finish()?;
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(out)
}

/// A ureq agent that reports every status as a response, not an error.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("influx-proxy/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_output_is_a_valid_gzip_stream() {
        use std::io::Read;
        let data = b"cpu v=1 1\nmem v=2 2\n".repeat(100);
        let gz = gzip(&data, Vec::new()).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn influxdb_answers_are_classified() {
        assert_eq!(classify(204, ""), Outcome::Delivered);
        assert_eq!(
            classify(400, r#"{"error":"partial write: x dropped=1"}"#),
            Outcome::Rejected("partial write: x dropped=1".into())
        );
        assert!(matches!(
            classify(404, r#"{"error":"database not found: \"nodb\""}"#),
            Outcome::DatabaseNotFound(_)
        ));
        assert!(matches!(
            classify(500, r#"{"error":"retention policy not found: nope"}"#),
            Outcome::RetentionPolicyNotFound(_)
        ));
        assert_eq!(classify(413, "{}"), Outcome::TooLarge);
        assert!(matches!(classify(503, "busy"), Outcome::Retry(m) if m == "status 503: busy"));
        assert!(matches!(
            classify(404, "404 page not found"),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            classify(401, r#"{"error":"authorization failed"}"#),
            Outcome::Retry(_)
        ));
    }
}
