//! Sending one batch to a backend and deciding what its answer means.
//!
//! The batch is gzipped (level 1: the backend is near, CPU is not free) and
//! POSTed to `<url>/write?db=..&rp=..` with the backend's own credentials.
//! Timestamps are already nanoseconds, so no `precision` is sent. The answer
//! is classified by [`classify`], a pure function of status and body.

use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::cluster::Backend;
use crate::url;

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

    /// POSTs `lines` to `backend`'s `/write` and classifies the answer.
    pub fn send(&mut self, backend: &Backend, db: &str, rp: &str, lines: &[u8]) -> Outcome {
        let gz = match gzip(lines, std::mem::take(&mut self.gz)) {
            Ok(gz) => gz,
            Err(e) => return Outcome::Retry(format!("gzip: {e}")),
        };
        let outcome = self.send_gzipped(backend, db, rp, &gz);
        self.gz = gz;
        outcome
    }

    /// POSTs an already gzipped body to `backend`'s `/write`.
    pub fn send_gzipped(&mut self, backend: &Backend, db: &str, rp: &str, gz: &[u8]) -> Outcome {
        let target = format!(
            "{}/write?db={}&rp={}",
            backend.url,
            url::encode(db),
            url::encode(rp)
        );
        let mut req = self
            .agent
            .post(&target)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &backend.authorization {
            req = req.header("Authorization", auth);
        }
        match req.send(gz) {
            Ok(resp) => answer(resp),
            Err(e) => Outcome::Unreachable(e.to_string()),
        }
    }

    /// POSTs an InfluxQL statement to `backend`'s `/query`. A statement
    /// error inside a 200 answer counts as `Rejected`.
    pub fn query(&mut self, backend: &Backend, db: &str, q: &str) -> Outcome {
        let form = format!("q={}&db={}", url::encode(q), url::encode(db));
        let mut req = self
            .agent
            .post(format!("{}/query", backend.url))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(auth) = &backend.authorization {
            req = req.header("Authorization", auth);
        }
        match req.send(form.as_bytes()) {
            Ok(mut resp) if resp.status().as_u16() / 100 == 2 => {
                let body = read_body(&mut resp);
                match statement_error(&body) {
                    Some(e) => Outcome::Rejected(e),
                    None => Outcome::Delivered,
                }
            }
            Ok(resp) => answer(resp),
            Err(e) => Outcome::Unreachable(e.to_string()),
        }
    }

    /// The databases `backend` has (`SHOW DATABASES`), if it answers.
    pub fn databases(&mut self, backend: &Backend) -> Option<fxhash::FxHashSet<String>> {
        crate::cluster::databases::show_databases(&self.agent, backend)
    }
}

fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    resp.body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default()
}

/// Classifies a backend's HTTP answer.
fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Outcome {
    let status = resp.status().as_u16();
    let body = if status / 100 == 2 {
        // Drain so the connection can be reused.
        let _ = read_body(&mut resp);
        String::new()
    } else {
        read_body(&mut resp)
    };
    classify(status, &body)
}

/// The first `error` of a `/query` answer's results, if any.
fn statement_error(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Some(e.to_string());
    }
    v.get("results")?
        .as_array()?
        .iter()
        .find_map(|r| r.get("error").and_then(|e| e.as_str()).map(String::from))
}

/// Gzips `data` into `out` (cleared first) at level 1; see [`Gzipper`].
pub fn gzip(data: &[u8], out: Vec<u8>) -> std::io::Result<Vec<u8>> {
    Gzipper::new().gzip(data, out)
}

/// A reusable level-1 gzip compressor. The deflate state (a few hundred
/// KiB of tables) is allocated once and reset per body instead of being
/// allocated and zeroed for every batch. The deflate stream comes from
/// flate2 (zlib-rs); header and trailer are written here so the CRC-32 is
/// crc32fast's SIMD one.
pub struct Gzipper {
    deflate: Compress,
}

impl Default for Gzipper {
    fn default() -> Self {
        Gzipper::new()
    }
}

impl Gzipper {
    pub fn new() -> Gzipper {
        Gzipper {
            deflate: Compress::new(Compression::new(1), false),
        }
    }

    /// Gzips `data` into `out` (cleared first) and returns it.
    pub fn gzip(&mut self, data: &[u8], mut out: Vec<u8>) -> std::io::Result<Vec<u8>> {
        self.deflate.reset();
        out.clear();
        // Magic, deflate, no flags, no mtime, fastest, unknown OS.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        out.reserve(data.len() / 4 + 64);
        loop {
            let consumed = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(&data[consumed..], &mut out, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == Status::StreamEnd {
                break;
            }
            // Out of room: grow and go on.
            out.reserve(out.capacity().max(4096));
        }
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        Ok(out)
    }
}

/// A ureq agent that reports every status as a response, not an error.
pub fn agent(timeout: Duration) -> ureq::Agent {
    crate::http_client::agent(
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("influx-proxy/", env!("CARGO_PKG_VERSION")))
            // Answers from InfluxDB are small and bodies go out in one write:
            // smaller buffers than ureq's 128 KiB keep many connections cheap.
            .input_buffer_size(16 * 1024)
            .output_buffer_size(64 * 1024),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_output_is_a_valid_gzip_stream() {
        use std::io::Read;
        let mut z = Gzipper::new();
        for n in [0usize, 1, 100, 50_000] {
            let data = b"cpu v=1 1\nmem v=2 2\n".repeat(n);
            // Twice with the same compressor: reset must be complete.
            for _ in 0..2 {
                let gz = z.gzip(&data, Vec::new()).unwrap();
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn statement_errors_are_found_in_results() {
        assert_eq!(statement_error(r#"{"results":[{"statement_id":0}]}"#), None);
        assert_eq!(
            statement_error(r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#),
            Some("database not found: x".into())
        );
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
