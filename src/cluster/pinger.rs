//! The pinger: one thread per backend sends `GET /ping` every
//! `check_interval` with the backend's own credentials (the Go proxy sends
//! none, its issue #65) and records the verdict in the backend's `active`
//! flag. 204 or 200 is healthy; anything else, or no answer, is not. After
//! a healthy ping it lets [`Databases`] fetch the backend's databases when
//! they are due. (The `/health` endpoint that reports the flags is
//! [`crate::admin::health`].)
//!
//! Threads stop when the shutdown channel disconnects.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{Backend, Databases};
use crate::http_client::{self, BackendRequest};
use crate::log;

/// Starts one pinger thread per backend.
pub fn start(
    backends: &[Arc<Backend>],
    databases: &Arc<Databases>,
    interval: Duration,
    timeout: Duration,
    shutdown: &Receiver<()>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    backends
        .iter()
        .map(|b| {
            let (backend, stop) = (Arc::clone(b), shutdown.clone());
            let databases = Arc::clone(databases);
            std::thread::Builder::new()
                .name(format!("pinger-{}", b.name))
                .spawn(move || run(&backend, &databases, interval, timeout, &stop))
        })
        .collect()
}

fn run(
    backend: &Backend,
    databases: &Databases,
    interval: Duration,
    timeout: Duration,
    stop: &Receiver<()>,
) {
    // An answer to /ping is empty; the request has no body. The same agent
    // fetches the backend's databases (see `Databases::after_ping`).
    let agent = http_client::agent(timeout, 16 * 1024, 16 * 1024);
    let ping = BackendRequest::get(backend, "/ping", &[]);
    loop {
        let verdict = match ping.send(&agent, &backend.url) {
            Ok(resp) if matches!(resp.status().as_u16(), 200 | 204) => Ok(()),
            Ok(resp) => Err(format!("ping status code: {}", resp.status().as_u16())),
            Err(e) => Err(e.to_string()),
        };
        let was_active = backend.set_active(verdict.is_ok());
        if verdict.is_ok() {
            databases.after_ping(backend, &agent, was_active);
        }
        match verdict {
            Ok(()) if !was_active => {
                log!("backend {} ({}) is active again", backend.name, backend.url)
            }
            Err(reason) if was_active => log!(
                "backend {} ({}) is inactive: {reason}",
                backend.name,
                backend.url
            ),
            _ => {}
        }
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
