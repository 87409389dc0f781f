//! Sending a query to one backend, with the backend's own credentials.
//!
//! Plain `http://` backends of the cluster are reached through
//! [`super::http1`], pooled per backend; `https://` ones, and a backend the
//! client was not built with (a backend removed from its circle that a
//! transfer still reads from), through one shared ureq agent (why two:
//! [`crate::http_client`]). Both send the same [`BackendRequest`]. The
//! client's `Authorization` header and its `u`/`p` parameters are never
//! passed on. Every call is bounded by `query_timeout`. A call that brings
//! no usable answer is a [`BackendError`].

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::http1::{self, Origin};
use crate::cluster::Backend;
use crate::http_client::{self, BackendError, BackendRequest};
use crate::server::http::Headers;

/// A backend's answer, body not read yet.
pub struct Answer {
    pub status: u16,
    headers: Headers,
    body: Box<dyn Read + Send>,
}

impl Answer {
    /// The first value of header `name` (give it in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body, read as it arrives.
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        self.body
    }
}

/// The HTTP client of the query path.
pub struct QueryClient {
    /// `http://` origins by backend id, with the backend's URL (`None`:
    /// https, through ureq).
    origins: Vec<Option<(String, Origin)>>,
    pool: Arc<http1::Pool>,
    agent: ureq::Agent,
    timeout: Duration,
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
    pub fn new(timeout: Duration, backends: &[Arc<Backend>]) -> QueryClient {
        let mut origins = vec![None; backends.len()];
        for b in backends {
            if let Some(slot) = origins.get_mut(b.id) {
                *slot = Origin::parse(&b.url).map(|o| (b.url.clone(), o));
            }
        }
        QueryClient {
            origins,
            pool: Arc::new(http1::Pool::default()),
            // Answers can be large; requests are small.
            agent: http_client::agent(timeout, 64 * 1024, 16 * 1024),
            timeout,
        }
    }

    /// How long one call may take (`query_timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
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
    ) -> Result<Answer, BackendError> {
        let mut req = if post {
            BackendRequest::post_form(backend, "/query", params)
        } else {
            BackendRequest::get(backend, "/query", params)
        };
        if accept_gzip {
            req = req.header("Accept-Encoding", "gzip");
        }
        // A backend with another id or URL than the cluster's (a removed
        // one) has no pooled origin: ureq.
        if let Some(Some((_, origin))) = self
            .origins
            .get(backend.id)
            .filter(|o| o.as_ref().is_some_and(|(url, _)| *url == backend.url))
        {
            let mut answer = http1::send(&self.pool, backend.id, origin, &req, self.timeout)
                .map_err(|e| BackendError::from_io(backend, &e))?;
            return Ok(Answer {
                status: answer.status,
                headers: std::mem::take(&mut answer.headers),
                body: Box::new(answer),
            });
        }
        self.send_request(backend, &req)
    }

    /// Sends any request to `backend` (through ureq, not the pooled
    /// `/query` origins). Any HTTP status is an `Ok`.
    pub fn send_request(
        &self,
        backend: &Backend,
        req: &BackendRequest<'_>,
    ) -> Result<Answer, BackendError> {
        let answer = req
            .send(&self.agent, &backend.url)
            .map_err(|e| BackendError::from_ureq(backend, &e))?;
        let headers = answer
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        Ok(Answer {
            status: answer.status().as_u16(),
            headers,
            body: Box::new(answer.into_body().into_reader()),
        })
    }

    /// Runs `q` and returns the parsed JSON body; an HTTP error status, or a
    /// body that is not JSON, is an `Err` (an error status with InfluxDB's
    /// message).
    pub fn json(
        &self,
        backend: &Backend,
        post: bool,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, BackendError> {
        let mut answer = self.send(backend, post, params, false)?;
        let status = answer.status;
        let body = read_all(&mut answer)?;
        // Floats must come back digit for digit: merge's own parser.
        let value = super::merge::parse_json(&body).map_err(|_| BackendError::NotJson {
            backend: backend.name.clone(),
            status,
            start: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        })?;
        if status >= 400 {
            return Err(BackendError::Status {
                status,
                message: error_text(&value).unwrap_or_default(),
            });
        }
        Ok(value)
    }
}

/// The backend's answer headers a passed-through answer keeps: the name
/// looked up (lower case) and the name sent, with Go's capitals.
pub const PASSED_HEADERS: [(&str, &str); 6] = [
    ("content-type", "Content-Type"),
    ("content-encoding", "Content-Encoding"),
    ("request-id", "Request-Id"),
    ("x-request-id", "X-Request-Id"),
    ("x-influxdb-version", "X-Influxdb-Version"),
    ("x-influxdb-build", "X-Influxdb-Build"),
];

/// The [`PASSED_HEADERS`] of `answer`, named as sent.
pub fn passed_headers(answer: &Answer) -> Vec<(&'static str, String)> {
    PASSED_HEADERS
        .iter()
        .filter_map(|&(name, sent)| Some((sent, answer.header(name)?.to_string())))
        .collect()
}

/// Read failover: sends to `backends` in turn until one answers below 400,
/// and gives that backend and its answer (the iterator then holds the
/// backends not tried yet). Each failure on the way, no answer or an error
/// status, leaves its text in `last`; `None` when every backend failed.
pub fn first_answer<'b>(
    backends: &mut dyn Iterator<Item = &'b Arc<Backend>>,
    last: &mut String,
    mut send: impl FnMut(&Backend) -> Result<Answer, BackendError>,
) -> Option<(&'b Arc<Backend>, Answer)> {
    for backend in backends {
        match send(backend) {
            Ok(answer) if answer.status < 400 => return Some((backend, answer)),
            Ok(mut answer) => *last = failure_text(backend, &mut answer),
            Err(e) => *last = e.to_string(),
        }
    }
    None
}

/// What a backend's error answer says: InfluxDB's `error`, else the start
/// of a plain-text body, else its status. Reads the body.
pub fn failure_text(backend: &Backend, answer: &mut Answer) -> String {
    let body = read_all(answer).unwrap_or_default();
    if let Some(text) = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| error_text(&v))
    {
        return text;
    }
    match String::from_utf8_lossy(&body).trim() {
        "" => format!("backend {} answered {}", backend.name, answer.status),
        t => t.chars().take(512).collect(),
    }
}

/// Reads an answer's whole body (bounded at 1 GiB).
pub fn read_all(answer: &mut Answer) -> Result<Vec<u8>, BackendError> {
    let mut body = Vec::new();
    (&mut answer.body)
        .take(1 << 30)
        .read_to_end(&mut body)
        .map_err(|e| BackendError::BrokenBody(e.to_string()))?;
    Ok(body)
}

/// The `error` string of an InfluxDB JSON body.
pub fn error_text(value: &serde_json::Value) -> Option<String> {
    value
        .get("error")
        .and_then(|e| e.as_str())
        .map(String::from)
}
