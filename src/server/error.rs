//! The error every endpoint answers with: InfluxDB's JSON shape.
//!
//! `{"error":"<msg>"}` plus `\n`, `Content-Type: application/json` and the
//! header `X-Influxdb-Error: <msg>`, with the status that InfluxDB (or the Go
//! proxy, where it differs) uses for the same failure.

use super::http::Response;

/// Longest `X-Influxdb-Error` value sent.
const MAX_ERROR_HEADER: usize = 4096;

/// A failed request: status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    /// 405, with the Go proxy's wording.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "method not allow")
    }

    /// The response carrying this error; `pretty` indents the JSON.
    pub fn into_response(self, pretty: bool) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message.clone().into());
        let mut resp = Response::json(self.status, &body, pretty);
        // A header value cannot hold a newline (multi-line parse errors),
        // and clients refuse huge headers: the body has the full text.
        let mut header = self.message.replace(['\r', '\n'], " ");
        if header.len() > MAX_ERROR_HEADER {
            let mut cut = MAX_ERROR_HEADER;
            while !header.is_char_boundary(cut) {
                cut -= 1;
            }
            header.truncate(cut);
        }
        resp.headers.push(("X-Influxdb-Error", header));
        resp
    }
}

impl ApiError {
    /// The whole HTTP/1.1 response, for a connection closed outside
    /// tiny_http (see `connections`): same body and headers, plus
    /// `Connection: close`.
    pub fn to_wire(&self) -> Vec<u8> {
        let resp = self.clone().into_response(false);
        let reason = match self.status {
            400 => "Bad Request",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        let common = [
            ("X-Influxdb-Version", crate::VERSION),
            ("X-Influxdb-Build", "InfluxDB Proxy"),
        ];
        for (k, v) in resp
            .headers
            .iter()
            .map(|&(k, ref v)| (k, v.as_str()))
            .chain(common)
        {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            resp.body.len()
        ));
        let mut wire = out.into_bytes();
        wire.extend_from_slice(&resp.body);
        wire
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}
