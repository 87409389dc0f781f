//! The other proxies of an HA pair or group (`ha_addrs`): the address rule
//! of the Go proxy, and telling them that a circle is being filled (or that
//! a resync runs) so that their reads avoid it too.
//!
//! Unlike the Go proxy (always `http://`, no credentials), a peer is asked
//! with our own scheme (`https` when `https_enabled`) and our own proxy
//! credentials as Basic auth (peers of a group share them); each answer is
//! kept: an unreachable peer or a non-2xx is reported, not ignored. An
//! `https` peer's certificate is checked as a backend's is
//! (`backend_ca_file`, `backend_insecure_skip_verify`).

use std::time::Duration;

/// Timeout of one notification.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The Go proxy's error text for a bad `ha_addrs`.
pub const INVALID: &str =
    "invalid ha_addrs, require at least two addresses as <host:port>, comma-separated";

/// Parses `ha_addrs`: `None` when the parameter is empty (keep the ones
/// given before), else at least two addresses matching
/// `^[\w-.]+:\d{1,5}$`.
pub fn parse(value: &str) -> Result<Option<Vec<String>>, &'static str> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let addrs: Vec<String> = value.split(',').map(|a| a.trim().to_string()).collect();
    if addrs.len() < 2 || !addrs.iter().all(|a| valid(a)) {
        return Err(INVALID);
    }
    Ok(Some(addrs))
}

/// `^[\w-.]+:\d{1,5}$` (`\w` is ASCII letters, digits and `_`, as in Go).
fn valid(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
}

/// The measurements a circle of ours is moving, sent to our peers with
/// `transferring=true` as a JSON body that the Go proxy ignores: a peer of
/// ours reads them from their sources and writes them there too, as we do,
/// so that a cluster of one circle answers whole through every proxy.
/// Sources are named by URL; a peer applies the moves whose source is one
/// of its backends (a removed backend is not).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Moves {
    pub moves: Vec<Move>,
}

/// One measurement moving inside `circle` from the backend at `source`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Move {
    pub circle: usize,
    pub db: String,
    pub measurement: String,
    pub source: String,
}

/// Moves sent in one notification (its body stays well under the 1 MB an
/// endpoint reads).
pub const MOVES_PER_NOTIFICATION: usize = 4000;

/// How we reach our peers.
#[derive(Debug, Clone)]
pub struct PeerClient {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `Basic ...` of our own proxy credentials, when auth is on.
    pub authorization: Option<String>,
    /// Our `listen_addr`: the entry of `ha_addrs` that is us is skipped.
    pub listen_addr: String,
}

impl PeerClient {
    pub fn new(cfg: &crate::config::Config) -> PeerClient {
        // With auth_encrypt the config holds cipher text: decrypted here.
        let authorization = crate::cluster::backend::basic_authorization(
            &cfg.username,
            &cfg.password,
            cfg.auth_encrypt,
        );
        PeerClient {
            scheme: if cfg.https_enabled { "https" } else { "http" },
            authorization,
            listen_addr: cfg.listen_addr.clone(),
        }
    }

    /// Whether `addr` (`host:port`) is this proxy.
    pub fn is_self(&self, addr: &str) -> bool {
        if addr == self.listen_addr {
            return true;
        }
        let (Some((host, port)), Some((own_host, own_port))) =
            (addr.rsplit_once(':'), self.listen_addr.rsplit_once(':'))
        else {
            return false;
        };
        let local = |h: &str| {
            matches!(
                h,
                "" | "0.0.0.0" | "localhost" | "127.0.0.1" | "[::]" | "[::1]"
            )
        };
        port == own_port && (host == own_host || (local(own_host) && local(host)))
    }

    /// `POST <scheme>://<addr>/transfer/state?<query>` to every peer but
    /// us, with `body` as JSON when not empty (see [`Moves`]); returns per
    /// address `""` (2xx) or what went wrong.
    pub fn notify(&self, addrs: &[String], query: &str, body: &[u8]) -> Vec<(String, String)> {
        let agent = crate::http_client::agent(TIMEOUT, 4096, 4096);
        addrs
            .iter()
            .filter(|a| !self.is_self(a))
            .map(|addr| {
                let url = format!("{}://{addr}/transfer/state?{query}", self.scheme);
                let mut req = agent.post(&url);
                if let Some(auth) = &self.authorization {
                    req = req.header("Authorization", auth);
                }
                if !body.is_empty() {
                    req = req.header("Content-Type", "application/json");
                }
                let outcome = match req.send(body) {
                    Ok(r) if r.status().is_success() => String::new(),
                    Ok(r) => format!("status {}", r.status().as_u16()),
                    Err(e) => e.to_string(),
                };
                (addr.clone(), outcome)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_addrs_need_two_host_port_entries() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(parse("a:1"), Err(INVALID));
        assert_eq!(
            parse("proxy-1.local:7076, 10.0.0.2:7076"),
            Ok(Some(vec![
                "proxy-1.local:7076".into(),
                "10.0.0.2:7076".into()
            ]))
        );
        for bad in [
            "a:1,b",
            "a:1,b:",
            "a:1,:2",
            "a:1,b:123456",
            "a:1,b c:2",
            "a:1,b:2x",
            "a:1,",
            "a:1,http://b:2",
        ] {
            assert_eq!(parse(bad), Err(INVALID), "{bad}");
        }
        assert!(parse("a_b:1,c-d.e:65535,f:0").is_ok());
    }

    #[test]
    fn our_own_address_is_recognised() {
        let client = |listen: &str| PeerClient {
            scheme: "http",
            authorization: None,
            listen_addr: listen.into(),
        };
        assert!(client(":7076").is_self("127.0.0.1:7076"));
        assert!(client(":7076").is_self("localhost:7076"));
        assert!(!client(":7076").is_self("10.0.0.2:7076"));
        assert!(!client(":7076").is_self("127.0.0.1:7077"));
        assert!(client("10.0.0.2:7076").is_self("10.0.0.2:7076"));
        assert!(!client("10.0.0.2:7076").is_self("10.0.0.3:7076"));
    }
}
