//! Requests to backends: which HTTP client carries which request and why,
//! the one place requests are built, and the type of their failures.
//!
//! | client | carries | why this one |
//! |---|---|---|
//! | [`crate::writer::post::Poster`] (ureq, an agent per poster thread) | `POST /write` (gzipped groups), queued statements (`POST /query`), `SHOW DATABASES` of the other backends on a 404 `database not found` | bodies of megabytes, keep-alive per thread, `https://` backends; a request per group of thousands of points, so ureq's cost per request does not show |
//! | [`crate::cluster::pinger`] (ureq, an agent per pinger thread) | `GET /ping` every `check_interval`, and `SHOW DATABASES` when the backend's list is due ([`crate::cluster::databases`]) | one small request per interval; `https://` as for writes |
//! | ureq agent of [`crate::cluster::Databases`] | `SHOW DATABASES` of every live backend when a write names an unknown database | rare (one refresh at a time), small answers; `https://` as for writes |
//! | [`crate::query::http1`] (ours, a keep-alive pool shared by the query threads) | `/query` to `http://` backends | latency-bound: one write per request and usually one read per answer, where ureq took 12 syscalls (see its module doc) |
//! | ureq agent of [`crate::query::forward::QueryClient`] | `/query` to `https://` backends | TLS, which `query::http1` does not speak |
//! | ureq agents of [`crate::transfer::copy`] (per call; a copy's poster thread has its own) | a transfer's schema questions and statements, the chunked `SELECT *` of a copied measurement ([`BackendRequest::send_streaming`]), its gzipped `/write` batches | answers of any length read as a stream, bodies of megabytes, `https://` backends |
//!
//! Every request is a [`BackendRequest`]: its path and query string (each
//! parameter percent-encoded as Go's `url.Values` does), the backend's own
//! credentials as `Authorization` (never the client's), and the headers of
//! its kind; every client writes the same `User-Agent` ([`USER_AGENT`]).
//! A request that brings no usable answer is a [`BackendError`], whose
//! variant says what kind of failure it was.
//!
//! ureq agents are built by [`agent`]. ureq's default resolver, once a
//! timeout is set, looks every host up in a new thread so the lookup can be
//! abandoned: a thread per request, even for `127.0.0.1` and even on a
//! pooled connection. Backends are nearly always given as IP addresses, so
//! `IpFirst` answers an IP literal at once and hands only real host names
//! to ureq's resolver.
//!
//! `https://` backends are verified: against Mozilla's roots, or the CAs in
//! `backend_ca_file`; `backend_insecure_skip_verify` turns verification off
//! (the Go proxy's behaviour). [`configure`] sets this once at start, before
//! any agent is built. Backends are reached directly: `http_proxy` and
//! `https_proxy` in the environment are ignored, as by the Go proxy.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::cluster::Backend;
use crate::url;

/// The `User-Agent` of every request to a backend.
pub const USER_AGENT: &str = concat!("influx-proxy/", env!("CARGO_PKG_VERSION"));

/// `Content-Type` of a form body (`/query` by POST).
pub const FORM: &str = "application/x-www-form-urlencoded";

/// `Content-Type` of line protocol (`/write`).
pub const LINES: &str = "text/plain; charset=utf-8";

/// `k=v&k2=v2`, keys and values percent-encoded, in the order given.
pub fn form(params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(128);
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        url::encode_into(&mut out, k);
        out.push('=');
        url::encode_into(&mut out, v);
    }
    out
}

/// One request to a backend, whichever client carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRequest<'a> {
    /// `POST`, else `GET`.
    pub post: bool,
    /// Path and query string under the backend's URL: `/write?db=x&rp=`.
    pub target: String,
    /// Headers besides `Host`, `User-Agent` and `Content-Length`, which
    /// each client writes itself.
    pub headers: Vec<(&'static str, &'a str)>,
    pub body: Cow<'a, [u8]>,
}

impl<'a> BackendRequest<'a> {
    /// `GET path?params` with `backend`'s credentials.
    pub fn get(backend: &'a Backend, path: &str, params: &[(&str, &str)]) -> BackendRequest<'a> {
        let mut target = String::from(path);
        if !params.is_empty() {
            target.push('?');
            target.push_str(&form(params));
        }
        let mut headers = Vec::with_capacity(4);
        if let Some(auth) = &backend.authorization {
            headers.push(("Authorization", auth.as_str()));
        }
        BackendRequest {
            post: false,
            target,
            headers,
            body: Cow::Borrowed(b""),
        }
    }

    /// `POST path?params` with `body` of `content_type`, and `backend`'s
    /// credentials.
    pub fn post(
        backend: &'a Backend,
        path: &str,
        params: &[(&str, &str)],
        content_type: &'static str,
        body: &'a [u8],
    ) -> BackendRequest<'a> {
        let mut req = BackendRequest::get(backend, path, params);
        req.post = true;
        req.body = Cow::Borrowed(body);
        req.header("Content-Type", content_type)
    }

    /// `POST path` with `params` as a form body, and `backend`'s
    /// credentials.
    pub fn post_form(
        backend: &'a Backend,
        path: &str,
        params: &[(&str, &str)],
    ) -> BackendRequest<'a> {
        let mut req = BackendRequest::post(backend, path, &[], FORM, b"");
        req.body = Cow::Owned(form(params).into_bytes());
        req
    }

    /// The same request with one more header.
    pub fn header(mut self, name: &'static str, value: &'a str) -> BackendRequest<'a> {
        self.headers.push((name, value));
        self
    }

    /// Sends it through a ureq `agent` to the backend at `base_url`. Any
    /// HTTP status is an answer (agents from [`agent`] do not turn statuses
    /// into errors); `Err` is a request that got none.
    pub fn send(
        &self,
        agent: &ureq::Agent,
        base_url: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.send_with(agent, base_url, None)
    }

    /// Sends it as [`send`](Self::send) does, for an answer read as a
    /// stream (a chunked `GET /query` of a whole measurement): the agent's
    /// overall timeout is lifted, and connecting, the answer's head and
    /// each read of its body must each come within `per_read` instead. A
    /// POST is sent as by `send`.
    pub fn send_streaming(
        &self,
        agent: &ureq::Agent,
        base_url: &str,
        per_read: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.send_with(agent, base_url, Some(per_read))
    }

    fn send_with(
        &self,
        agent: &ureq::Agent,
        base_url: &str,
        per_read: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let uri = format!("{base_url}{}", self.target);
        if self.post {
            let mut req = agent.post(uri);
            for &(name, value) in &self.headers {
                req = req.header(name, value);
            }
            req.send(&self.body[..])
        } else {
            let mut req = agent.get(uri);
            for &(name, value) in &self.headers {
                req = req.header(name, value);
            }
            if let Some(t) = per_read {
                // No bound on the whole call, a bound on each step and read.
                req = req
                    .config()
                    .timeout_global(None)
                    .timeout_connect(Some(t))
                    .timeout_recv_response(Some(t))
                    .timeout_per_read(Some(t))
                    .build();
            }
            req.call()
        }
    }
}

/// Why a request to a backend brought no usable answer. The variants are
/// kinds callers treat differently: no answer means the backend is down
/// (the writer marks it inactive, a query tries another circle, DDL is
/// queued); an error status is the backend's verdict on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// No answer: connection refused or reset, a name or TLS failure, an
    /// answer that is not HTTP.
    Unreachable {
        backend: String,
        url: String,
        cause: String,
    },
    /// No answer within the timeout.
    TimedOut {
        backend: String,
        url: String,
        cause: String,
    },
    /// An answer whose body broke off before its end.
    BrokenBody(String),
    /// An answer whose body should be JSON and is not.
    NotJson {
        backend: String,
        status: u16,
        /// The first bytes of the body.
        start: String,
    },
    /// An error status; `message` is InfluxDB's `error` text (or the
    /// start of a body without one; empty when there is none).
    Status { status: u16, message: String },
}

impl BackendError {
    /// A request that ureq could not get an answer to.
    pub fn from_ureq(backend: &Backend, e: &ureq::Error) -> BackendError {
        let timed_out = match e {
            ureq::Error::Timeout(_) => true,
            ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
            _ => false,
        };
        BackendError::no_answer(backend, timed_out, e.to_string())
    }

    /// A request that [`crate::query::http1`] could not get an answer to.
    pub fn from_io(backend: &Backend, e: &std::io::Error) -> BackendError {
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
        BackendError::no_answer(backend, timed_out, e.to_string())
    }

    fn no_answer(backend: &Backend, timed_out: bool, cause: String) -> BackendError {
        let (backend, url) = (backend.name.clone(), backend.url.clone());
        if timed_out {
            BackendError::TimedOut {
                backend,
                url,
                cause,
            }
        } else {
            BackendError::Unreachable {
                backend,
                url,
                cause,
            }
        }
    }

    /// The backend gave no answer: it is down, unreachable or too slow.
    pub fn is_no_answer(&self) -> bool {
        matches!(
            self,
            BackendError::Unreachable { .. } | BackendError::TimedOut { .. }
        )
    }

    /// The failure for a log line that already names the backend (the
    /// [`Display`](std::fmt::Display) text names it, except for an error
    /// status, whose text is InfluxDB's own message for the client).
    pub fn reason(&self) -> String {
        match self {
            BackendError::Unreachable { cause, .. } | BackendError::TimedOut { cause, .. } => {
                cause.clone()
            }
            BackendError::BrokenBody(cause) => cause.clone(),
            BackendError::NotJson { status, start, .. } => {
                format!("unreadable answer (status {status}): {start}")
            }
            BackendError::Status { status, message } => format!("status {status}: {message}"),
        }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Unreachable {
                backend,
                url,
                cause,
            }
            | BackendError::TimedOut {
                backend,
                url,
                cause,
            } => write!(f, "backend {backend} ({url}): {cause}"),
            BackendError::BrokenBody(cause) => write!(f, "reading a backend's answer: {cause}"),
            BackendError::NotJson {
                backend,
                status,
                start,
            } => write!(
                f,
                "backend {backend}: unreadable answer (status {status}): {start}"
            ),
            BackendError::Status { status, message } if message.is_empty() => {
                write!(f, "status {status}")
            }
            BackendError::Status { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for BackendError {}

/// Resolves IP literals without a lookup; names as ureq does.
#[derive(Debug, Default)]
struct IpFirst {
    names: DefaultResolver,
}

impl Resolver for IpFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(authority) = uri.authority() {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>() {
                let default_port = if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                };
                let port = authority.port_u16().unwrap_or(default_port);
                let mut out = self.empty();
                out.push(SocketAddr::new(ip, port));
                return Ok(out);
            }
        }
        self.names.resolve(uri, config, timeout)
    }
}

/// TLS towards backends, set by [`configure`].
static BACKEND_TLS: OnceLock<TlsConfig> = OnceLock::new();

/// Sets how `https://` backends are verified, from `backend_ca_file` and
/// `backend_insecure_skip_verify`. Errors name the key to fix.
pub fn configure(ca_file: &str, skip_verify: bool) -> Result<(), String> {
    let mut tls = TlsConfig::builder().disable_verification(skip_verify);
    if !ca_file.is_empty() {
        let pem = std::fs::read(ca_file)
            .map_err(|e| format!("cannot read backend_ca_file {ca_file}: {e}"))?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("backend_ca_file {ca_file}: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "backend_ca_file {ca_file} holds no PEM certificate"
            ));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    // A second call (tests starting several proxies in one process) keeps
    // the first setting.
    let _ = BACKEND_TLS.set(tls.build());
    Ok(())
}

/// A ureq agent towards backends: each request bounded by `timeout`,
/// every status an answer (not an error), [`USER_AGENT`], the backend TLS
/// settings and the IP-first resolver, connecting directly (no proxy from
/// the environment). Buffer sizes are per connection: ureq's 128 KiB
/// default is more than InfluxDB's small answers need.
pub fn agent(timeout: Duration, input_buffer: usize, output_buffer: usize) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .input_buffer_size(input_buffer)
        .output_buffer_size(output_buffer)
        .proxy(None);
    let config: Config = match BACKEND_TLS.get() {
        Some(tls) => config.tls_config(tls.clone()).build(),
        None => config.build(),
    };
    ureq::Agent::with_parts(config, DefaultConnector::new(), IpFirst::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn backend(username: &str, password: &str) -> Backend {
        Backend::new(
            0,
            0,
            &BackendConfig {
                name: "b1".into(),
                url: "http://127.0.0.1:8086".into(),
                username: username.into(),
                password: password.into(),
                auth_encrypt: false,
                write_only: false,
            },
        )
    }

    #[test]
    fn requests_carry_encoded_parameters_and_the_backends_own_credentials() {
        let b = backend("admin", "pw");
        let auth = b.authorization.clone().unwrap();
        let get = BackendRequest::get(&b, "/query", &[("q", "SHOW DATABASES")]);
        assert_eq!(get.target, "/query?q=SHOW+DATABASES");
        assert_eq!(get.headers, vec![("Authorization", auth.as_str())]);
        assert!(!get.post && get.body.is_empty());

        let write = BackendRequest::post(
            &b,
            "/write",
            &[("db", "a b"), ("rp", "r/1")],
            LINES,
            b"m v=1\n",
        )
        .header("Content-Encoding", "gzip");
        assert_eq!(write.target, "/write?db=a+b&rp=r%2F1");
        assert_eq!(
            write.headers,
            vec![
                ("Authorization", auth.as_str()),
                ("Content-Type", LINES),
                ("Content-Encoding", "gzip")
            ]
        );
        assert_eq!(&write.body[..], b"m v=1\n");

        let anonymous = backend("", "");
        let form = BackendRequest::post_form(
            &anonymous,
            "/query",
            &[("q", "DROP DATABASE \"x\""), ("db", "")],
        );
        assert_eq!(form.target, "/query");
        assert_eq!(form.headers, vec![("Content-Type", FORM)]);
        assert_eq!(&form.body[..], b"q=DROP+DATABASE+%22x%22&db=");
    }

    #[test]
    fn backend_errors_say_what_failed() {
        let b = backend("", "");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = BackendError::from_io(&b, &refused);
        assert!(matches!(e, BackendError::Unreachable { .. }) && e.is_no_answer());
        assert_eq!(
            e.to_string(),
            format!("backend b1 (http://127.0.0.1:8086): {refused}")
        );
        assert_eq!(e.reason(), refused.to_string());

        let slow = std::io::Error::new(std::io::ErrorKind::TimedOut, "query_timeout reached");
        let e = BackendError::from_io(&b, &slow);
        assert!(matches!(e, BackendError::TimedOut { .. }) && e.is_no_answer());
        assert_eq!(
            e.to_string(),
            "backend b1 (http://127.0.0.1:8086): query_timeout reached"
        );

        let refusal = BackendError::Status {
            status: 400,
            message: "error parsing query: x".into(),
        };
        assert!(!refusal.is_no_answer());
        assert_eq!(refusal.to_string(), "error parsing query: x");
        assert_eq!(refusal.reason(), "status 400: error parsing query: x");
        let bare = BackendError::Status {
            status: 502,
            message: String::new(),
        };
        assert_eq!(bare.to_string(), "status 502");

        let not_json = BackendError::NotJson {
            backend: "b1".into(),
            status: 200,
            start: "<html>".into(),
        };
        assert!(!not_json.is_no_answer());
        assert_eq!(
            not_json.to_string(),
            "backend b1: unreadable answer (status 200): <html>"
        );
        let broken = BackendError::BrokenBody("early eof".into());
        assert_eq!(broken.to_string(), "reading a backend's answer: early eof");
    }
}
