//! Sending a query to one backend, with the backend's own credentials.
//!
//! One keep-alive agent is shared by every worker (ureq's pool is keyed by
//! host). The client's `Authorization` header and its `u`/`p` parameters are
//! never passed on. Every call is bounded by `query_timeout`.

use std::io::Read;
use std::time::Duration;

use crate::cluster::Backend;
use crate::url;

/// A backend's successful answer, body not read yet.
pub type Answer = ureq::http::Response<ureq::Body>;

/// The HTTP client of the query path.
pub struct QueryClient {
    agent: ureq::Agent,
}

/// Parameters a client may send that reach the backend (`u`, `p` never do).
pub const FORWARDED: &[&str] = &[
    "q",
    "db",
    "rp",
    "epoch",
    "chunked",
    "chunk_size",
    "pretty",
    "params",
];

impl QueryClient {
    pub fn new(timeout: Duration) -> QueryClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("influx-proxy/", env!("CARGO_PKG_VERSION")))
            .input_buffer_size(64 * 1024)
            .output_buffer_size(16 * 1024);
        QueryClient {
            agent: crate::http_client::agent(config),
        }
    }

    /// Sends `/query` with `params` as a form (POST) or a query string (GET).
    /// `accept_gzip` asks the backend to gzip its answer. Any HTTP status is
    /// an `Ok`; only a failure to get an answer is an `Err`.
    pub fn send(
        &self,
        backend: &Backend,
        post: bool,
        params: &[(&str, &str)],
        accept_gzip: bool,
    ) -> Result<Answer, String> {
        let encoded: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", url::encode(k), url::encode(v)))
            .collect();
        let form = encoded.join("&");
        let result = if post {
            let mut req = self
                .agent
                .post(format!("{}/query", backend.url))
                .header("Content-Type", "application/x-www-form-urlencoded");
            if let Some(auth) = &backend.authorization {
                req = req.header("Authorization", auth);
            }
            if accept_gzip {
                req = req.header("Accept-Encoding", "gzip");
            }
            req.send(form.as_bytes())
        } else {
            let mut req = self.agent.get(format!("{}/query?{form}", backend.url));
            if let Some(auth) = &backend.authorization {
                req = req.header("Authorization", auth);
            }
            if accept_gzip {
                req = req.header("Accept-Encoding", "gzip");
            }
            req.call()
        };
        result.map_err(|e| format!("backend {} ({}): {e}", backend.name, backend.url))
    }

    /// Runs `q` and returns the parsed JSON body; an HTTP error status, or a
    /// body that is not JSON, is an `Err` with InfluxDB's message.
    pub fn json(
        &self,
        backend: &Backend,
        post: bool,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let mut answer = self.send(backend, post, params, false)?;
        let status = answer.status().as_u16();
        let body = read_all(&mut answer)?;
        // Floats must come back digit for digit: merge's own parser.
        let value = super::merge::parse_json(&body).map_err(|_| {
            format!(
                "backend {}: unreadable answer (status {status}): {}",
                backend.name,
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })?;
        if status >= 400 {
            return Err(error_text(&value).unwrap_or_else(|| format!("status {status}")));
        }
        Ok(value)
    }
}

/// Reads an answer's whole body (bounded at 1 GiB).
pub fn read_all(answer: &mut Answer) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    answer
        .body_mut()
        .as_reader()
        .take(1 << 30)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading a backend's answer: {e}"))?;
    Ok(body)
}

/// The `error` string of an InfluxDB JSON body.
pub fn error_text(value: &serde_json::Value) -> Option<String> {
    value
        .get("error")
        .and_then(|e| e.as_str())
        .map(String::from)
}
