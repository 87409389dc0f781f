//! The HTTP clients this proxy uses towards its backends (ureq agents).
//!
//! ureq's default resolver, once a timeout is set, looks every host up in a
//! new thread so the lookup can be abandoned: a thread per request, even
//! for `127.0.0.1` and even on a pooled connection. Backends are nearly
//! always given as IP addresses, so [`IpFirst`] answers an IP literal at
//! once and hands only real host names to ureq's resolver.
//!
//! `https://` backends are verified: against Mozilla's roots, or the CAs in
//! `backend_ca_file`; `backend_insecure_skip_verify` turns verification off
//! (the Go proxy's behaviour). [`configure`] sets this once at start, before
//! any agent is built. Backends are reached directly: `http_proxy` and
//! `https_proxy` in the environment are ignored, as by the Go proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use ureq::config::{Config, ConfigBuilder};
use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

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

/// An agent built from `config` with the backend TLS settings and the
/// IP-first resolver, connecting directly (no proxy from the environment).
pub fn agent(config: ConfigBuilder<AgentScope>) -> ureq::Agent {
    let config = config.proxy(None);
    let config: Config = match BACKEND_TLS.get() {
        Some(tls) => config.tls_config(tls.clone()).build(),
        None => config.build(),
    };
    ureq::Agent::with_parts(config, DefaultConnector::new(), IpFirst::default())
}
