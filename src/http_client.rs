//! The HTTP clients this proxy uses towards its backends (ureq agents).
//!
//! ureq's default resolver, once a timeout is set, looks every host up in a
//! new thread so the lookup can be abandoned: a thread per request, even
//! for `127.0.0.1` and even on a pooled connection. Backends are nearly
//! always given as IP addresses, so [`IpFirst`] answers an IP literal at
//! once and hands only real host names to ureq's resolver.

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
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

/// An agent with `config` and the IP-first resolver.
pub fn agent(config: Config) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::new(), IpFirst::default())
}
