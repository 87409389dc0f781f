//! `POST /api/v2/query`: a Flux query relayed to the backend that owns its
//! (database, measurement), with the read failover of `/query`.
//!
//! The request is read as the Go proxy reads it: `Content-Type` (default
//! `application/json`) must parse as a media type ([`media`]);
//! `application/vnd.flux` makes the body the query, anything else is JSON
//! `{"query","type","spec",...}`. A query or a spec is required and `type`
//! is `""` or `flux`. [`source`] finds the bucket and the measurement.
//!
//! Unlike the Go proxy, a `db/rp` bucket is routed by its database alone
//! (split as `/api/v2/write` splits it), so the query reaches the backend
//! that holds the writes of that measurement; `db_list` is checked against
//! that database. The body is read under `max_body_size` (413), gunzipped
//! under the same limit when it came with `Content-Encoding: gzip`, and
//! relayed unchanged (decompressed) with the client's `Content-Type`,
//! `Accept` and `Accept-Encoding`, without the client's query string; the
//! owner's answer (status, content headers, body) goes back as it came.

pub mod media;
pub mod source;

use std::io::Read;

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::query::endpoint::QueryService;
use crate::query::relay::RawRequest;
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};
use crate::write::v2::bucket_to_db_rp;

/// The Flux endpoint's view of the proxy.
pub struct FluxLimits<'a> {
    /// Largest body, before and after gunzip.
    pub max_body_size: usize,
    /// Whether `db_list` allows a database.
    pub db_allowed: &'a dyn Fn(&str) -> bool,
}

/// A Flux request as the client sent it.
#[derive(Debug, Default, PartialEq)]
struct FluxRequest {
    query: String,
    kind: String,
    spec: Option<Value>,
}

/// Handles `/api/v2/query` once the method and credentials are checked.
pub fn handle(
    query: &QueryService,
    limits: &FluxLimits<'_>,
    req: &mut Request,
) -> Result<Response, ApiError> {
    let content_type = req.header("content-type").unwrap_or_default().to_string();
    let media = match content_type.as_str() {
        "" => "application/json".to_string(),
        t => media::parse(t).map_err(ApiError::bad_request)?,
    };
    let body = read_body(req, limits.max_body_size)?;
    let flux = parse_request(&media, &body)?;
    let found = if flux.query.is_empty() {
        source::from_spec(flux.spec.as_ref().unwrap_or(&Value::Null))
    } else {
        source::from_flux(&flux.query)
    };
    let found = found.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (db, _rp) =
        bucket_to_db_rp(&found.bucket).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !(limits.db_allowed)(db) {
        return Err(ApiError::bad_request(format!("database forbidden: {db}")));
    }
    let headers = [
        ("Accept", req.header("accept").unwrap_or_default()),
        (
            "Accept-Encoding",
            req.header("accept-encoding").unwrap_or_default(),
        ),
    ];
    let raw = RawRequest {
        path: "/api/v2/query",
        params: &[],
        content_type: &content_type,
        headers: &headers,
        body: &body,
    };
    query.relay(db, &found.measurement, &raw)
}

/// The body, gunzipped when it says so, at most `limit` bytes either way.
fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    if req.content_length.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let body = req.read_body(limit as u64)?;
    if req.header("content-encoding") != Some("gzip") {
        return Ok(body);
    }
    let mut unzipped = Vec::new();
    MultiGzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut unzipped)
        .map_err(|e| ApiError::bad_request(format!("unable to decode gzip body: {e}")))?;
    if unzipped.len() > limit {
        return Err(too_large());
    }
    Ok(unzipped)
}

fn too_large() -> ApiError {
    ApiError::new(413, "Request Entity Too Large")
}

/// The query, its type and spec from a body of media type `media`, with
/// the Go proxy's refusals.
fn parse_request(media: &str, body: &[u8]) -> Result<FluxRequest, ApiError> {
    let flux = if media == "application/vnd.flux" {
        FluxRequest {
            query: String::from_utf8_lossy(body).into_owned(),
            ..FluxRequest::default()
        }
    } else {
        parse_json(body).map_err(|e| {
            ApiError::bad_request(format!("failed parsing request body as JSON: {e}"))
        })?
    };
    if flux.query.is_empty() && flux.spec.is_none() {
        return Err(ApiError::bad_request(
            "request body requires either spec or query",
        ));
    }
    if !flux.kind.is_empty() && flux.kind != "flux" {
        return Err(ApiError::bad_request(format!(
            "unknown query type: {}",
            flux.kind
        )));
    }
    Ok(flux)
}

/// A JSON request body. Keys match as Go's `encoding/json` matches them
/// (exactly, else ignoring case); other keys (`dialect`, `extern`, `now`)
/// are the backend's business; `null` is as absent.
fn parse_json(body: &[u8]) -> Result<FluxRequest, String> {
    let map = match serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())? {
        Value::Object(map) => map,
        Value::Null => return Ok(FluxRequest::default()),
        other => return Err(format!("expected a JSON object, found {}", kind_of(&other))),
    };
    let field = |name: &str| {
        map.get(name).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    };
    let text = |name: &str| match field(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field {name:?} must be a string, found {}",
            kind_of(other)
        )),
    };
    let spec = match field("spec") {
        None | Some(Value::Null) => None,
        Some(spec @ Value::Object(_)) => Some(spec.clone()),
        Some(other) => {
            return Err(format!(
                "field \"spec\" must be an object, found {}",
                kind_of(other)
            ))
        }
    };
    Ok(FluxRequest {
        query: text("query")?,
        kind: text("type")?,
        spec,
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(media: &str, body: &str) -> String {
        match parse_request(media, body.as_bytes()) {
            Ok(r) => panic!("{body:?} was accepted: {r:?}"),
            Err(e) => {
                assert_eq!(e.status, 400, "{body:?}");
                e.message
            }
        }
    }

    #[test]
    fn requests_are_read_as_the_go_proxy_reads_them() {
        let r = parse_request("application/vnd.flux", b"from(bucket:\"db\")").unwrap();
        assert_eq!(r.query, "from(bucket:\"db\")");
        let r = parse_request(
            "application/json",
            br#"{"query":"q","type":"flux","dialect":{"header":true},"extern":null}"#,
        )
        .unwrap();
        assert_eq!((r.query.as_str(), r.kind.as_str()), ("q", "flux"));
        let r = parse_request("text/plain", br#"{"Query":"q","spec":{"operations":[]}}"#).unwrap();
        assert_eq!(r.query, "q");
        assert!(r.spec.is_some());
    }

    #[test]
    fn bad_requests_get_the_go_texts() {
        let json = "application/json";
        assert!(refusal(json, "from(bucket").starts_with("failed parsing request body as JSON: "));
        assert!(refusal(json, "[1]").starts_with("failed parsing request body as JSON: "));
        assert!(
            refusal(json, r#"{"query":5}"#).starts_with("failed parsing request body as JSON: ")
        );
        assert!(
            refusal(json, r#"{"spec":"x"}"#).starts_with("failed parsing request body as JSON: ")
        );
        let either = "request body requires either spec or query";
        assert_eq!(refusal(json, "{}"), either);
        assert_eq!(refusal(json, "null"), either);
        assert_eq!(refusal(json, r#"{"query":"","spec":null}"#), either);
        assert_eq!(refusal("application/vnd.flux", ""), either);
        assert_eq!(
            refusal(json, r#"{"query":"q","type":"influxql"}"#),
            "unknown query type: influxql"
        );
    }
}
