//! `POST /api/v1/prom/read?db=<db>[&rp=<rp>]`: a snappy `ReadRequest`
//! relayed unchanged to the backend that owns its metric.
//!
//! The request must hold exactly one query (the Go proxy's rule and text);
//! the metric is the value of its matcher on `__name__`, whatever the
//! matcher's type. Without one the answer is 400 `prometheus metric not
//! found` and nothing is relayed (the Go proxy writes that error and still
//! relays, a bug). The body goes to the owner of (db, metric), placed as
//! the samples of a remote write are placed, through
//! [`QueryService::relay`]: read failover over the circles, the backend's
//! answer (snappy `ReadResponse`) copied back.

use prost::Message;

use super::proto::ReadRequest;
use super::write::placement_measurement;
use super::{unsnappy, BodyError, METRIC_NAME_LABEL};
use crate::query::endpoint::QueryService;
use crate::query::relay::RawRequest;
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};
use crate::write::endpoint::WriteService;

/// Why a remote read was refused before it was relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromReadError {
    Body(BodyError),
    /// Zero or several queries in one request.
    QueryCount,
    /// No matcher on `__name__`.
    MetricNotFound,
}

impl From<PromReadError> for ApiError {
    fn from(e: PromReadError) -> ApiError {
        match e {
            PromReadError::Body(b) => b.into(),
            PromReadError::QueryCount => ApiError::bad_request(
                "prometheus read endpoint currently only supports one query at a time",
            ),
            PromReadError::MetricNotFound => ApiError::bad_request("prometheus metric not found"),
        }
    }
}

impl From<BodyError> for PromReadError {
    fn from(e: BodyError) -> PromReadError {
        PromReadError::Body(e)
    }
}

/// Headers of the client's request passed on to the backend.
const PASSED: [(&str, &str); 4] = [
    ("content-encoding", "Content-Encoding"),
    ("accept-encoding", "Accept-Encoding"),
    ("accept", "Accept"),
    (
        "x-prometheus-remote-read-version",
        "X-Prometheus-Remote-Read-Version",
    ),
];

/// Handles `/api/v1/prom/read` once method and auth have been checked.
pub fn handle(
    query: &QueryService,
    write: &WriteService,
    req: &mut Request,
) -> Result<Response, ApiError> {
    let db = req.params.get("db").to_string();
    if db.is_empty() {
        return Err(ApiError::bad_request("database not found"));
    }
    if !write.db_allowed(&db) {
        return Err(ApiError::bad_request(format!("database forbidden: {db}")));
    }
    let rp = req.params.get("rp").to_string();
    let limit = write.max_body_size();
    let body = req.read_body(limit as u64)?;
    let metric = metric_of(&body, limit)?;
    let mut params = vec![("db", db.as_str())];
    if !rp.is_empty() {
        params.push(("rp", rp.as_str()));
    }
    let headers: Vec<(&'static str, &str)> = PASSED
        .iter()
        .filter_map(|&(name, sent)| Some((sent, req.header(name)?)))
        .collect();
    let raw = RawRequest {
        path: "/api/v1/prom/read",
        params: &params,
        content_type: req.header("content-type").unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    query.relay(&db, &placement_measurement(&metric), &raw)
}

/// The metric a snappy `ReadRequest` body asks for.
pub fn metric_of(body: &[u8], limit: usize) -> Result<String, PromReadError> {
    let raw = unsnappy(body, limit)?;
    let request = ReadRequest::decode(raw.as_slice()).map_err(|e| {
        BodyError::Protobuf(format!("unable to decode prometheus read request: {e}"))
    })?;
    let [query] = request.queries.as_slice() else {
        return Err(PromReadError::QueryCount);
    };
    query
        .matchers
        .iter()
        .find(|m| m.name == METRIC_NAME_LABEL)
        .map(|m| m.value.clone())
        .filter(|m| !m.is_empty())
        .ok_or(PromReadError::MetricNotFound)
}

#[cfg(test)]
mod tests {
    use super::super::proto::{LabelMatcher, Query};
    use super::*;

    fn body(queries: Vec<Query>) -> Vec<u8> {
        let request = ReadRequest {
            queries,
            accepted_response_types: vec![0],
        };
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap_or_default()
    }

    fn query(matchers: &[(i32, &str, &str)]) -> Query {
        Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 1,
            matchers: matchers
                .iter()
                .map(|&(t, n, v)| LabelMatcher {
                    r#type: t,
                    name: n.into(),
                    value: v.into(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_metric_is_the_name_matcher_of_the_only_query() {
        let one = body(vec![query(&[(0, "job", "x"), (2, "__name__", "up")])]);
        assert_eq!(metric_of(&one, 1 << 20), Ok("up".into()));
        let two = body(vec![query(&[(0, "__name__", "up")]), query(&[])]);
        assert_eq!(metric_of(&two, 1 << 20), Err(PromReadError::QueryCount));
        assert_eq!(
            metric_of(&body(vec![]), 1 << 20),
            Err(PromReadError::QueryCount)
        );
        let nameless = body(vec![query(&[(0, "job", "x")])]);
        assert_eq!(
            metric_of(&nameless, 1 << 20),
            Err(PromReadError::MetricNotFound)
        );
        let truncated = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0x10, 0x08])
            .unwrap_or_default();
        assert!(matches!(
            metric_of(&truncated, 1 << 20),
            Err(PromReadError::Body(BodyError::Protobuf(_)))
        ));
    }
}
