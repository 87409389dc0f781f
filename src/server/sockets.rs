//! Socket-level helpers for the connection discipline (see
//! [`super::connections`]): finding the sockets tiny_http accepted, their
//! timeouts, how many bytes tiny_http has read from them, and closing them
//! from outside tiny_http.
//!
//! tiny_http gives no access to its sockets, so they are found in
//! `/proc/self/fd`: a socket is ours when its local port is the listener's
//! and it has a peer (the listener itself has none; backend connections have
//! other local ports).

use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Connected TCP sockets whose local port is `port`, with their peers.
pub fn client_fds(port: u16) -> Vec<(i32, SocketAddr)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
            if !has_local_port(fd, port) {
                return None;
            }
            Some((fd, peer_of(fd)?))
        })
        .collect()
}

/// The peer address of a connected socket.
pub fn peer_of(fd: i32) -> Option<SocketAddr> {
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

/// Whether `fd` is an IP socket bound to local port `port` (a descriptor
/// that is no socket fails `getsockname`).
fn has_local_port(fd: i32, port: u16) -> bool {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid out pointers of the advertised size; a bad fd just fails.
    if unsafe { libc::getsockname(fd, addr.as_mut_ptr().cast(), &mut len) } != 0 {
        return false;
    }
    // SAFETY: zero-initialised and possibly filled by the kernel.
    port_of(unsafe { addr.assume_init_ref() }) == Some(port)
}

pub fn has_timeout(fd: i32) -> bool {
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

pub fn set_timeouts(fd: i32, timeout: Duration) {
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

/// Bytes the kernel received on the connection, and those of them still
/// queued (not yet read by the application, tiny_http).
pub fn byte_counts(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: an all-zero tcp_info is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid out pointer of the advertised size; the kernel fills at
    // most `len` bytes (older kernels fill less, leaving zeros).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
        return None;
    }
    Some((info.tcpi_bytes_received, queued.max(0) as u64))
}

/// Sends `wire` (a whole HTTP response, or nothing) without blocking, then
/// shuts the socket down both ways: tiny_http's blocked read returns at once
/// and its thread lets the connection go.
pub fn reject(fd: i32, wire: &[u8]) {
    if !wire.is_empty() {
        // SAFETY: valid buffer of the given length; a full or dead socket
        // just fails.
        unsafe {
            libc::send(
                fd,
                wire.as_ptr().cast(),
                wire.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            );
        }
    }
    // SAFETY: shutdown on any descriptor is harmless; tiny_http still owns
    // and closes it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Shuts the read side only: the answer can still be written.
pub fn shut_reads(fd: i32) {
    // SAFETY: shutdown on any descriptor is harmless.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RD);
    }
}

/// Listens again with a longer queue of pending connections (Linux updates
/// the backlog of a socket already listening).
pub fn set_backlog(fd: i32, backlog: i32) {
    // SAFETY: listen on a listening socket only changes its backlog.
    unsafe {
        libc::listen(fd, backlog);
    }
}
