//! Wiring: build the cluster from the config, start the writers, the health
//! checkers, the listener and the workers, then wait.
//!
//! Start order matters: writers exist before any worker can hand them a
//! batch, and the listener is bound last so `/ping` answers only when the
//! proxy can take writes.

use std::sync::Arc;

use crate::cluster::{health, Cluster};
use crate::config::Config;
use crate::log;
use crate::server::{self, State};
use crate::write::endpoint::WriteService;
use crate::writer::{WriterSettings, Writers};

/// Runs the proxy until the listener fails; returns a message on failure.
pub fn run(cfg: Config) -> Result<(), String> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        format!(
            "cannot create data_dir {}: {e} (set `data_dir` to a writable folder)",
            cfg.data_dir.display()
        )
    })?;
    let cluster = Arc::new(Cluster::new(&cfg));
    for c in &cluster.circles {
        log!("circle {}: {} backends loaded", c.id, c.backends.len());
    }
    let writers = Writers::start(&cluster, &WriterSettings::from_config(&cfg))
        .map_err(|e| format!("cannot start writer threads: {e}"))?;
    let (_stop_health, health_stop) = crossbeam_channel::bounded::<()>(0);
    let ping_timeout = cfg
        .write_timeout
        .min(cfg.check_interval * 2)
        .max(std::time::Duration::from_secs(1));
    let _health = health::start(
        &cluster.backends,
        cfg.check_interval,
        ping_timeout,
        &health_stop,
    )
    .map_err(|e| format!("cannot start health checkers: {e}"))?;
    let write = WriteService::new(&cfg, Arc::clone(&cluster), writers);
    let state = Arc::new(State::new(&cfg, cluster, write));
    let listener = server::bind(&cfg)?;
    let workers = server::start_workers(&listener, &state, cfg.worker_threads)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    log!(
        "http service start, listen on {} with {} workers",
        cfg.listen_addr,
        cfg.worker_threads
    );
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}
