//! Timeouts on client sockets, which tiny_http does not set.
//!
//! tiny_http accepts connections in its own thread and gives no access to
//! the sockets, so a client that stops sending in the middle of a body would
//! hold a worker forever. The *socket janitor* thread closes that gap: every
//! half second it lists the process's file descriptors (`/proc/self/fd`),
//! picks the TCP sockets accepted on our listening port, and gives each one
//! that has none yet `SO_RCVTIMEO` and `SO_SNDTIMEO` of `idle_timeout`. A
//! read or write that waits longer then fails: tiny_http answers 408 and
//! closes an idle keep-alive connection, and a worker reading a stalled body
//! gets an error and moves on.
//!
//! A `recv` that is already blocked when the timeout is set keeps waiting, so
//! the sweep alone cannot protect a body read. Workers therefore call
//! [`ClientSockets::ensure`] before reading a body: it finds the socket of
//! the request's peer (remembered per peer address, checked with
//! `getpeername` so a reused address is caught) and sets the timeouts first.
//! The sweep covers what workers never see: the header reads of the next
//! request on a keep-alive connection.
//!
//! A socket is only touched when its local port is ours and it has a peer,
//! so backend connections and the listener itself are left alone.

use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use fxhash::FxHashMap;

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How often the janitor looks for new connections.
const SWEEP: Duration = Duration::from_millis(500);

/// Starts the janitor for connections accepted on `port`.
pub fn start_janitor(
    port: u16,
    timeout: Duration,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("socket-janitor".into())
        .spawn(move || loop {
            sweep(port, timeout);
            match stop.recv_timeout(SWEEP) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
}

/// One pass over the open descriptors; returns how many got timeouts.
pub fn sweep(port: u16, timeout: Duration) -> usize {
    let mut set = 0;
    for fd in client_fds(port) {
        if !has_timeout(fd) {
            set_timeouts(fd, timeout);
            set += 1;
        }
    }
    set
}

/// Descriptors of connected TCP sockets whose local port is `port`.
fn client_fds(port: u16) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let link = std::fs::read_link(entry.path()).ok()?;
            let is_socket = link.as_os_str().as_encoded_bytes().starts_with(b"socket:");
            (is_socket && is_client_of(fd, port)).then_some(fd)
        })
        .collect()
}

/// Makes sure the socket of a request's peer has its timeouts before a
/// worker reads from it.
pub struct ClientSockets {
    port: u16,
    timeout: Duration,
    /// Peer address -> descriptor, as last found.
    known: Mutex<FxHashMap<SocketAddr, i32>>,
}

/// Most peers remembered; the map starts over beyond it.
const KNOWN_LIMIT: usize = 16_384;

impl ClientSockets {
    pub fn new(port: u16, timeout: Duration) -> ClientSockets {
        ClientSockets {
            port,
            timeout,
            known: Mutex::new(FxHashMap::default()),
        }
    }

    /// Sets the timeouts on `peer`'s socket if it has none yet.
    pub fn ensure(&self, peer: SocketAddr) {
        let cached = self.known.lock().ok().and_then(|k| k.get(&peer).copied());
        if let Some(fd) = cached {
            if peer_of(fd) == Some(peer) && has_timeout(fd) {
                return;
            }
        }
        let found: Vec<i32> = client_fds(self.port)
            .into_iter()
            .filter(|&fd| peer_of(fd) == Some(peer))
            .collect();
        for &fd in &found {
            if !has_timeout(fd) {
                set_timeouts(fd, self.timeout);
            }
        }
        if let (Some(&fd), Ok(mut known)) = (found.first(), self.known.lock()) {
            if known.len() >= KNOWN_LIMIT {
                known.clear();
            }
            known.insert(peer, fd);
        }
    }
}

/// The peer address of a connected socket.
fn peer_of(fd: i32) -> Option<SocketAddr> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid out pointers of the advertised size; a bad fd just fails.
    if unsafe { libc::getpeername(fd, addr.as_mut_ptr().cast(), &mut len) } != 0 {
        return None;
    }
    // SAFETY: zero-initialised and possibly filled by the kernel.
    let addr = unsafe { addr.assume_init_ref() };
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(addr as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(addr as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

/// Local port of an IPv4/IPv6 socket.
fn port_of(addr: &libc::sockaddr_storage) -> Option<u16> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(addr as *const _ as *const libc::sockaddr_in) };
            Some(u16::from_be(a.sin_port))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(addr as *const _ as *const libc::sockaddr_in6) };
            Some(u16::from_be(a.sin6_port))
        }
        _ => None,
    }
}

/// Whether `fd` is a connected TCP socket whose local port is `port`.
fn is_client_of(fd: i32, port: u16) -> bool {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid out pointers of the advertised size; a bad fd just fails.
    if unsafe { libc::getsockname(fd, addr.as_mut_ptr().cast(), &mut len) } != 0 {
        return false;
    }
    // SAFETY: zero-initialised and possibly filled by the kernel.
    if port_of(unsafe { addr.assume_init_ref() }) != Some(port) {
        return false;
    }
    let mut peer = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // The listener has no peer: getpeername fails with ENOTCONN.
    // SAFETY: as above.
    unsafe { libc::getpeername(fd, peer.as_mut_ptr().cast(), &mut len) == 0 }
}

fn has_timeout(fd: i32) -> bool {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: valid out pointer of the advertised size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    rc != 0 || tv.tv_sec != 0 || tv.tv_usec != 0
}

/// Sets TCP_NODELAY on a socket (best effort).
pub fn set_nodelay(fd: i32) {
    let on: libc::c_int = 1;
    // SAFETY: valid pointer to an int of the advertised size; a bad fd
    // just fails.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn set_timeouts(fd: i32, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    set_nodelay(fd);
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: valid pointer to a timeval of the advertised size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    #[test]
    fn accepted_sockets_get_timeouts_and_others_do_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        assert!(sweep(port, Duration::from_millis(200)) >= 1);
        // The client side (another local port) was left alone.
        assert_eq!(client.read_timeout().unwrap(), None);
        let t = Instant::now();
        let mut buf = [0u8; 1];
        assert!(server_side.read(&mut buf).is_err(), "read must time out");
        assert!(t.elapsed() < Duration::from_secs(2));
        // A second sweep finds nothing new.
        assert_eq!(sweep(port, Duration::from_millis(200)), 0);
    }

    #[test]
    fn ensure_finds_the_socket_of_a_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let sockets = ClientSockets::new(port, Duration::from_millis(300));
        sockets.ensure(peer);
        assert_eq!(
            server_side.read_timeout().unwrap(),
            Some(Duration::from_millis(300))
        );
        // Cached: a second call does not need to scan.
        sockets.ensure(peer);
    }
}
