//! A request body relayed unchanged to the backend that owns one (database,
//! measurement), with the read failover of `/query`: Flux
//! (`/api/v2/query`) and Prometheus remote read (`/api/v1/prom/read`).
//!
//! The owner is asked circle by circle, in the order [`QueryService::read_owners`]
//! gives: circles that are whole first (owner up, not write-only nor catching
//! up, circle not being filled by a transfer), starting from a rotating
//! circle so reads spread, then circles that are up but catching up,
//! write-only or transferring. A backend that does not answer, or answers an
//! error status, hands the request to the next; the first success is copied
//! back (status, content headers, body streamed). When every owner failed the
//! client gets 400 with the last backend's error, as the Go proxy answers.

use std::sync::Arc;

use super::endpoint::QueryService;
use super::forward::{first_answer, passed_headers};
use crate::cluster::backend::Backend;
use crate::http_client::BackendRequest;
use crate::server::error::ApiError;
use crate::server::http::Response;

/// What is relayed: a POST to `path?params` with `body` as it came.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// Path under the backend's URL, e.g. `/api/v2/query`.
    pub path: &'a str,
    /// Query-string parameters for the backend (never the client's `u`, `p`).
    pub params: &'a [(&'a str, &'a str)],
    /// The client's `Content-Type`, passed on.
    pub content_type: &'a str,
    /// Extra headers passed on as they came (`Accept`, `Content-Encoding`,
    /// `X-Prometheus-Remote-Read-Version`, ...); empty values are skipped.
    pub headers: &'a [(&'static str, &'a str)],
    pub body: &'a [u8],
}

impl QueryService {
    /// The owner of (`db`, `measurement`) in each circle that can serve a
    /// read, best first (see the module comment). A measurement being moved
    /// by a transfer is read from the backend that still holds all of it.
    pub fn read_owners(&self, db: &str, measurement: &str) -> Vec<Arc<Backend>> {
        let cluster = &self.cluster;
        let key = cluster.shard_key.render(db, measurement);
        let reader = |c: usize| {
            let owner = cluster.circles[c].owner(&key);
            match cluster
                .moves_in(c)
                .as_ref()
                .and_then(|moves| moves.get(&key))
            {
                Some(m) if m.member => Arc::clone(&m.source),
                _ => Arc::clone(owner),
            }
        };
        self.in_read_order(reader, std::slice::from_ref)
    }

    /// Relays `raw` to the owner of (`db`, `measurement`) with failover.
    pub fn relay(
        &self,
        db: &str,
        measurement: &str,
        raw: &RawRequest<'_>,
    ) -> Result<Response, ApiError> {
        let owners = self.read_owners(db, measurement);
        let mut last = String::from("backends unavailable");
        let send = |backend: &Backend| {
            let mut req = BackendRequest::get(backend, raw.path, raw.params);
            req.post = true;
            req.body = std::borrow::Cow::Borrowed(raw.body);
            if !raw.content_type.is_empty() {
                req = req.header("Content-Type", raw.content_type);
            }
            for &(name, value) in raw.headers {
                if !value.is_empty() {
                    req = req.header(name, value);
                }
            }
            self.client.send_request(backend, &req)
        };
        if let Some((_, answer)) = first_answer(&mut owners.iter(), &mut last, send) {
            return Ok(Response {
                status: answer.status,
                headers: passed_headers(&answer),
                body: Vec::new(),
                stream: Some(answer.into_reader()),
            });
        }
        Err(ApiError::bad_request(last))
    }
}
