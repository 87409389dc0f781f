//! The health checker: one thread per backend pings it every
//! `check_interval` with the backend's own credentials (the Go proxy sends
//! none, its issue #65) and records the verdict in the backend's `active`
//! flag. 204 or 200 is healthy; anything else, or no answer, is not. After
//! a healthy ping it lets [`Databases`] fetch the backend's databases when
//! they are due.
//!
//! Threads stop when the shutdown channel disconnects.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{Backend, Databases};
use crate::log;
use crate::writer::sender::agent;

/// Starts one checker thread per backend.
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
                .name(format!("health-{}", b.name))
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
    let agent = agent(timeout);
    let url = format!("{}/ping", backend.url);
    loop {
        let mut req = agent.get(&url);
        if let Some(auth) = &backend.authorization {
            req = req.header("Authorization", auth);
        }
        let verdict = match req.call() {
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
