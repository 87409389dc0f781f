//! The request and response values handlers work with, so that no handler
//! knows tiny_http and every handler can be tested without a socket.

use std::io::Read;

use super::error::ApiError;
use crate::url::Params;

/// What a handler sees of a client request.
pub struct Request<'a> {
    /// Upper-case method name (`GET`, `POST`, ...).
    pub method: String,
    /// Path without the query string, e.g. `/write`.
    pub path: String,
    /// Decoded URL query parameters.
    pub params: Params,
    /// Header names in lower case, values as sent.
    pub headers: Headers,
    /// `Content-Length`, when the client sent one.
    pub content_length: Option<usize>,
    /// The body, read at most once.
    pub body: &'a mut dyn Read,
}

impl Request<'_> {
    /// The first value of header `name` (give it in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Whether `?pretty=true` asks for indented JSON (URL only, as Go).
    pub fn pretty(&self) -> bool {
        self.params.get("pretty") == "true"
    }

    /// Whether the body is a form (`application/x-www-form-urlencoded`).
    pub fn has_form_body(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
    }

    /// The whole body, at most `limit` bytes: more is a 413.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        (&mut *self.body)
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| ApiError::bad_request(format!("unable to read body: {e}")))?;
        if body.len() as u64 > limit {
            return Err(ApiError::new(413, "Request Entity Too Large"));
        }
        Ok(body)
    }
}

/// Header fields with lower-case names, all in one buffer: a request's or a
/// backend answer's headers cost one allocation, not two per field.
///
/// Invariant: `text` is a run of `name:value\n` lines; a name has no `:` or
/// `\n` (HTTP field names are tokens) and a value no `\n` ([`Headers::push`]
/// turns one into a space).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
}

impl Headers {
    /// Room for `bytes` of names and values.
    pub fn with_capacity(bytes: usize) -> Headers {
        Headers {
            text: String::with_capacity(bytes),
        }
    }

    /// Adds a field; the name is stored in lower case.
    pub fn push(&mut self, name: &str, value: &str) {
        let name = name.trim();
        if name.is_empty() || name.contains([':', '\n']) {
            return;
        }
        self.text
            .extend(name.chars().map(|c| c.to_ascii_lowercase()));
        self.text.push(':');
        for (i, part) in value.split('\n').enumerate() {
            if i > 0 {
                self.text.push(' ');
            }
            self.text.push_str(part);
        }
        self.text.push('\n');
    }

    /// The first value of field `name` (give it in lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|&(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every field, in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text.lines().filter_map(|l| l.split_once(':'))
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(fields: I) -> Headers {
        let mut headers = Headers::default();
        for (k, v) in fields {
            headers.push(k, v);
        }
        headers
    }
}

/// An answer: a body in memory, or a stream copied to the client as it
/// arrives (a backend's query answer, chunked or large).
pub struct Response {
    pub status: u16,
    /// Names as sent, e.g. `Content-Type`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// When set, sent instead of `body`, with chunked transfer encoding.
    pub stream: Option<Box<dyn Read + Send>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("stream", &self.stream.is_some())
            .finish()
    }
}

impl Response {
    /// 204 with no body.
    pub fn no_content() -> Response {
        Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
            stream: None,
        }
    }

    /// A JSON body followed by `\n`, indented 4 spaces when `pretty`.
    pub fn json<T: serde::Serialize>(status: u16, value: &T, pretty: bool) -> Response {
        let mut body = if pretty {
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            match value.serialize(&mut ser) {
                Ok(()) => out,
                Err(_) => b"{}".to_vec(),
            }
        } else {
            serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
        };
        body.push(b'\n');
        Response {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: escape_html(body),
            stream: None,
        }
    }

    /// A plain text body (Go's `http.Error` shape: text plus `\n`).
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: format!("{text}\n").into_bytes(),
            stream: None,
        }
    }

    /// The Go mux's answer to an unknown path.
    pub fn not_found() -> Response {
        Response::text(404, "404 page not found")
    }
}

/// Escapes `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`, as Go's
/// encoding/json (and so InfluxDB and the Go proxy) does. In JSON text these
/// bytes can only occur inside strings, so a byte-wise rewrite is exact.
fn escape_html(body: Vec<u8>) -> Vec<u8> {
    if !body.iter().any(|&b| matches!(b, b'<' | b'>' | b'&')) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    for b in body {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_fields_in_order_with_lower_case_names() {
        let h: Headers = [
            ("Content-Type", "text/plain; a=b:c"),
            ("X-Two", "a\nb"),
            ("X-Colon", ":x:"),
            ("content-type", "second"),
            ("bad:name", "dropped"),
            ("Empty", ""),
        ]
        .into_iter()
        .collect();
        assert_eq!(h.get("content-type"), Some("text/plain; a=b:c"));
        assert_eq!(h.get("x-two"), Some("a b"));
        assert_eq!(h.get("empty"), Some(""));
        assert_eq!(h.get("x-colon"), Some(":x:"));
        assert_eq!(h.get("Content-Type"), None);
        let all: Vec<_> = h.iter().collect();
        assert_eq!(
            all,
            [
                ("content-type", "text/plain; a=b:c"),
                ("x-two", "a b"),
                ("x-colon", ":x:"),
                ("content-type", "second"),
                ("empty", ""),
            ]
        );
    }

    #[test]
    fn json_escapes_html_like_go() {
        let r = Response::json(400, &serde_json::json!({"error": "a > b & c < d"}), false);
        assert_eq!(r.body, b"{\"error\":\"a \\u003e b \\u0026 c \\u003c d\"}\n");
    }
}
