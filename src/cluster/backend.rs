//! One InfluxDB server: its address, credentials, health flag and counters.
//!
//! A `Backend` is shared (`Arc`) by the workers that route to it, its writer
//! and sender threads, its pinger and the admin endpoints. Only the
//! pinger and the sender flip `active`; counters are plain atomics
//! that anyone may read for `/health`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use base64::Engine;

use crate::config::BackendConfig;

/// Counters of one backend, readable at any time.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Points accepted from clients for this backend (in its spool).
    pub points_in: AtomicU64,
    /// Points the backend confirmed (2xx).
    pub points_delivered: AtomicU64,
    /// Points the backend refused for good (400 partial write and the like).
    pub points_rejected: AtomicU64,
    /// Records (and their points) set aside in the dead-letter file.
    pub records_dead_lettered: AtomicU64,
    pub points_dead_lettered: AtomicU64,
    /// Records (and their points) parked: their database or retention policy
    /// exists nowhere in the cluster.
    pub records_parked: AtomicU64,
    pub points_parked: AtomicU64,
    /// Failed POST attempts (network errors, 5xx, timeouts).
    pub send_failures: AtomicU64,
    /// Groups sent again after a failed attempt (each resend counts once).
    pub send_retries: AtomicU64,
    /// Statements (DDL) queued in the spool and not yet run there.
    pub statements_pending: AtomicU64,
}

/// One InfluxDB server of a circle.
#[derive(Debug)]
pub struct Backend {
    /// Index among all backends of all circles, in config order.
    pub id: usize,
    /// Index of its circle.
    pub circle: usize,
    pub name: String,
    /// Base URL without a trailing slash.
    pub url: String,
    /// `Authorization` header value for the backend's own credentials.
    pub authorization: Option<String>,
    pub write_only: bool,
    active: AtomicBool,
    rewriting: AtomicBool,
    pub stats: BackendStats,
}

impl Backend {
    pub fn new(id: usize, circle: usize, cfg: &BackendConfig) -> Backend {
        let authorization = basic_authorization(&cfg.username, &cfg.password, cfg.auth_encrypt);
        Backend {
            id,
            circle,
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            authorization,
            write_only: cfg.write_only,
            // Optimistic start, as the Go proxy: the first ping corrects it.
            active: AtomicBool::new(true),
            rewriting: AtomicBool::new(false),
            stats: BackendStats::default(),
        }
    }

    /// Whether the last health check (or send) succeeded.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Records a health verdict; returns the previous one.
    pub fn set_active(&self, active: bool) -> bool {
        self.active.swap(active, Ordering::AcqRel)
    }

    /// Whether the sender is catching up on a backlog.
    pub fn is_rewriting(&self) -> bool {
        self.rewriting.load(Ordering::Acquire)
    }

    pub fn set_rewriting(&self, rewriting: bool) {
        self.rewriting.store(rewriting, Ordering::Release);
    }
}

/// The `Authorization` value (Basic) of a user and password, `None` when
/// both are empty; with `auth_encrypt` they are the Go proxy's cipher text.
pub fn basic_authorization(username: &str, password: &str, auth_encrypt: bool) -> Option<String> {
    if username.is_empty() && password.is_empty() {
        return None;
    }
    let (user, pass) = if auth_encrypt {
        (
            crate::cipher::decrypt(username).unwrap_or_default(),
            crate::cipher::decrypt(password).unwrap_or_default(),
        )
    } else {
        (username.to_string(), password.to_string())
    };
    let pair = format!("{user}:{pass}");
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}
