//! HTTPS: TLS in front of the tiny_http listener, with rustls.
//!
//! tiny_http's own TLS features are not used: `ssl-rustls` pulls rustls
//! 0.20 (RUSTSEC-2024-0336, and a line no longer maintained) and
//! `ssl-openssl` needs the system's OpenSSL headers; both do the handshake
//! in tiny_http's single accept thread, where one client that never
//! finishes its handshake stops every other from connecting.
//!
//! Instead, with `https_enabled`, tiny_http listens on a private loopback
//! port and this module owns the public one:
//!
//! * the *acceptor* thread accepts a connection, refuses it at once when
//!   `max_connections` are already open, and hands it to a new *TLS
//!   connection* thread (so there are at most `max_connections` of them);
//! * the TLS connection thread does the handshake (it must finish within
//!   `idle_timeout`), connects to tiny_http's loopback port and relays:
//!   decrypted bytes to tiny_http, tiny_http's answers encrypted back, with
//!   `poll` on both sockets. It ends when either side closes. An idle or
//!   stalled client is tiny_http's to time out (the janitor gives the
//!   loopback sockets `idle_timeout`), and a client that stops reading
//!   fails the relay's write after `idle_timeout`.
//!
//! Everything behind the relay is the plain-HTTP server, unchanged: the
//! connection janitor watches the loopback sockets, so its header budget
//! and slow-header rule apply to decrypted bytes.
//!
//! The loopback port is reachable by any local user, so it must not be a
//! way around TLS. Each relay connection's local address is registered in
//! [`Relays`] after it connects and before its first byte is sent, and
//! unregistered before its socket closes; a worker serves a request only if
//! its peer is registered, and shuts any other connection down unanswered
//! (`server::worker`). No one else can hold a registered address: it is a
//! connected socket of ours until it is unregistered (a 4-tuple is unique),
//! and registration before the first byte means no relay request is ever
//! refused. This keeps the loopback TCP port, and with it every limit the
//! janitor enforces through `TCP_INFO` on those sockets; a Unix socket
//! would close the port as well but would lose that byte accounting, and
//! the limits would have to be written a second time inside the relay.
//!
//! Versions and suites follow `tls.min_version`, `tls.max_version` and
//! `tls.ciphers` with the Go names. rustls offers TLS 1.2 and 1.3 only, and
//! only AEAD suites: older versions and CBC/RC4/3DES suites named in a Go
//! config are not offered (logged once at start).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, SupportedCipherSuite, SupportedProtocolVersion};

use crate::config::Config;
use crate::log;

/// The local addresses of the relay's connections to tiny_http: the only
/// peers served on the loopback port behind the TLS front.
#[derive(Default)]
pub struct Relays {
    peers: Mutex<fxhash::FxHashSet<SocketAddr>>,
}

impl Relays {
    /// Whether `peer` is one of the relay's own connections.
    pub fn admits(&self, peer: SocketAddr) -> bool {
        self.peers.lock().is_ok_and(|p| p.contains(&peer))
    }

    /// Registers `addr` until the returned guard is dropped.
    fn register(&self, addr: SocketAddr) -> Registered<'_> {
        if let Ok(mut p) = self.peers.lock() {
            p.insert(addr);
        }
        Registered { relays: self, addr }
    }
}

/// A registered relay address; dropping it unregisters the address.
struct Registered<'a> {
    relays: &'a Relays,
    addr: SocketAddr,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.relays.peers.lock() {
            p.remove(&self.addr);
        }
    }
}

/// What a Go cipher-suite name is to rustls.
pub enum Suite {
    /// Offered.
    Offered(SupportedCipherSuite),
    /// A real Go name rustls does not implement (CBC, RC4, 3DES, RSA key
    /// exchange): skipped.
    NotOffered,
}

/// Go's cipher-suite names (crypto/tls), including the legacy aliases.
pub fn suite_by_go_name(name: &str) -> Option<Suite> {
    use provider::cipher_suite as cs;
    let offered = match name {
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_FALLBACK_SCSV" => return Some(Suite::NotOffered),
        _ => return None,
    };
    Some(Suite::Offered(offered))
}

/// A `tls.*_version` value as a number to compare: 30 (ssl3.0) to 13.
fn version_rank(v: &str) -> Option<u8> {
    match v.to_ascii_lowercase().as_str() {
        "ssl3.0" => Some(9),
        "tls1.0" | "1.0" => Some(10),
        "tls1.1" | "1.1" => Some(11),
        "tls1.2" | "1.2" => Some(12),
        "tls1.3" | "1.3" => Some(13),
        _ => None,
    }
}

/// The rustls server configuration from `https_cert`, `https_key` and
/// `tls.*`; errors name the key to fix.
pub fn server_config(cfg: &Config) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.https_cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read https_cert {}: {e}", cfg.https_cert))?;
    if certs.is_empty() {
        return Err(format!(
            "https_cert {} holds no PEM certificate",
            cfg.https_cert
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.https_key).map_err(|e| {
        format!(
            "cannot read a PEM private key from https_key {}: {e}",
            cfg.https_key
        )
    })?;

    let min = version_rank(&cfg.tls.min_version).unwrap_or(12);
    let max = version_rank(&cfg.tls.max_version).unwrap_or(13);
    if min < 12 {
        log!(
            "tls.min_version {}: TLS below 1.2 is never offered (rustls has none)",
            cfg.tls.min_version
        );
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(rank, _)| (min.max(12)..=max).contains(rank))
            .map(|(_, v)| v)
            .collect();
    if versions.is_empty() {
        return Err(format!(
            "tls.min_version {:?} and tls.max_version {:?} leave no version to offer: TLS 1.2 and 1.3 are supported",
            cfg.tls.min_version, cfg.tls.max_version
        ));
    }

    let mut provider = provider::default_provider();
    if !cfg.tls.ciphers.is_empty() {
        // As in Go, the list chooses the TLS 1.2 suites; TLS 1.3 keeps its own.
        let mut chosen: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .collect();
        for name in &cfg.tls.ciphers {
            match suite_by_go_name(name) {
                Some(Suite::Offered(s)) if s.version() == &rustls::version::TLS12 => chosen.push(s),
                Some(Suite::Offered(_)) => {}
                Some(Suite::NotOffered) => {
                    log!("tls.ciphers: {name} is not offered (rustls has AEAD suites only)")
                }
                None => return Err(format!("unknown cipher suite: {name}")),
            }
        }
        let tls12 = chosen
            .iter()
            .any(|s| s.version() == &rustls::version::TLS12);
        if !tls12 && versions == [&rustls::version::TLS12] {
            return Err(
                "tls.ciphers leaves no TLS 1.2 suite and tls.max_version is tls1.2: add an ECDHE GCM or CHACHA20 suite".into(),
            );
        }
        provider.cipher_suites = chosen;
    }

    let config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls settings: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "https_cert {} and https_key {} do not make a usable pair: {e}",
                cfg.https_cert, cfg.https_key
            )
        })?;
    Ok(Arc::new(config))
}

/// The TLS front: the acceptor thread on the public listener. Its
/// connections to `inner` are registered in `relays`.
pub fn start(
    public: TcpListener,
    inner: SocketAddr,
    relays: Arc<Relays>,
    config: Arc<ServerConfig>,
    max_connections: usize,
    idle_timeout: Duration,
) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("tls-acceptor".into())
        .spawn(move || loop {
            let (client, peer) = match public.accept() {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    log!("tls: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if open.load(Ordering::Acquire) >= max_connections {
                // Refused: without a handshake no HTTP answer can be read.
                continue;
            }
            open.fetch_add(1, Ordering::AcqRel);
            let (config, open2) = (Arc::clone(&config), Arc::clone(&open));
            let relays = Arc::clone(&relays);
            let spawned = std::thread::Builder::new()
                .name("tls-conn".into())
                .spawn(move || {
                    if let Err(e) = serve(client, inner, &relays, config, idle_timeout) {
                        if !quiet(&e) {
                            log!("tls: {peer}: {e}");
                        }
                    }
                    open2.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::AcqRel);
            }
        })
        .map(|_| ())
}

/// Errors that are a client going away, not worth a log line.
fn quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// One TLS connection: handshake, then relay until either side closes.
fn serve(
    mut client: TcpStream,
    inner: SocketAddr,
    relays: &Relays,
    config: Arc<ServerConfig>,
    idle_timeout: Duration,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    client.set_read_timeout(Some(idle_timeout))?;
    client.set_write_timeout(Some(idle_timeout))?;
    let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
    let deadline = Instant::now() + idle_timeout;
    while tls.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        client.set_read_timeout(Some(left))?;
        client.set_write_timeout(Some(left))?;
        while tls.wants_write() {
            tls.write_tls(&mut client)?;
        }
        if !tls.is_handshaking() {
            break;
        }
        if tls.read_tls(&mut client)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = tls.write_tls(&mut client);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    client.set_read_timeout(Some(idle_timeout))?;
    client.set_write_timeout(Some(idle_timeout))?;
    let mut backend = TcpStream::connect(inner)?;
    // Declared after `backend`, so dropped (unregistered) before it closes.
    let _registered = relays.register(backend.local_addr()?);
    backend.set_nodelay(true)?;
    backend.set_write_timeout(Some(idle_timeout))?;
    relay(&mut client, &mut tls, &mut backend)
}

/// Moves bytes both ways until a side closes.
fn relay(
    client: &mut TcpStream,
    tls: &mut ServerConnection,
    backend: &mut TcpStream,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    // Plaintext that came with the handshake's last flight (a TLS 1.3
    // client's first request right behind its Finished).
    loop {
        match tls.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => backend.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    // After the client's end of sending (EOF or close_notify), answers
    // still flow back until tiny_http closes.
    let mut client_sending = true;
    loop {
        while tls.wants_write() {
            tls.write_tls(client)?;
        }
        let mut fds = [
            libc::pollfd {
                // poll skips a negative descriptor.
                fd: if client_sending {
                    client.as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: backend.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let ready = |i: usize| fds[i].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        if client_sending && ready(0) {
            if tls.read_tls(client)? == 0 {
                let _ = backend.shutdown(std::net::Shutdown::Write);
                client_sending = false;
                continue;
            }
            let state = match tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    let _ = tls.write_tls(client);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            let mut plain = state.plaintext_bytes_to_read();
            while plain > 0 {
                let want = plain.min(buf.len());
                let n = tls.reader().read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                backend.write_all(&buf[..n])?;
                plain -= n;
            }
            if state.peer_has_closed() {
                let _ = backend.shutdown(std::net::Shutdown::Write);
                client_sending = false;
            }
        }
        if ready(1) {
            let n = match backend.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                tls.send_close_notify();
                while tls.wants_write() {
                    tls.write_tls(client)?;
                }
                return Ok(());
            }
            tls.writer().write_all(&buf[..n])?;
        }
    }
}
