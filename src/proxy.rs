//! Wiring: build the cluster from the config, start the writers, the
//! pingers, the listener and the workers, wait for SIGTERM or SIGINT, then
//! stop in reverse order.
//!
//! Start order matters: the `data_dir` lock comes first (a second proxy on
//! the same spools stops before touching them), writers exist before any
//! worker can hand them a batch, and the listener is bound last so `/ping`
//! answers only when the proxy can take writes. Stop order too: the workers finish their requests
//! first, then the writers seal what they hold and the senders deliver it
//! (for at most `write_timeout`, capped at 5 s).

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{pinger, Cluster};
use crate::config::Config;
use crate::log;
use crate::server::{self, State};
use crate::signals;
use crate::transfer::{self, Transfers};
use crate::write::endpoint::WriteService;
use crate::writer::{WriterSettings, Writers};

/// Runs the proxy until SIGTERM or SIGINT; returns a message on failure.
/// Call [`crate::signals::block`] first, before any thread exists.
pub fn run(cfg: Config) -> Result<(), String> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        format!(
            "cannot create data_dir {}: {e} (set `data_dir` to a writable folder)",
            cfg.data_dir.display()
        )
    })?;
    // Held until `run` returns; the kernel releases it if the process dies.
    let _lock = crate::spool::lock::lock(&cfg.data_dir).map_err(|e| e.to_string())?;
    crate::http_client::configure(&cfg.backend_ca_file, cfg.backend_insecure_skip_verify)?;
    let cluster = Arc::new(Cluster::new(&cfg));
    for c in &cluster.circles {
        log!("circle {}: {} backends loaded", c.id, c.backends.len());
    }
    let writers = Writers::start(&cluster, &WriterSettings::from_config(&cfg), &cfg.data_dir)?;
    let (stop_health, health_stop) = crossbeam_channel::bounded::<()>(0);
    let ping_timeout = cfg
        .write_timeout
        .min(cfg.check_interval * 2)
        .max(std::time::Duration::from_secs(1));
    let pingers = pinger::start(
        &cluster.backends,
        &cluster.databases,
        cfg.check_interval,
        ping_timeout,
        &health_stop,
    )
    .map_err(|e| format!("cannot start the pingers: {e}"))?;
    let spools = (0..cluster.backends.len())
        .map(|id| writers.spool(id).cloned())
        .collect();
    let write = WriteService::new(&cfg, Arc::clone(&cluster), writers);
    let transfer = Arc::new(Transfers::new(
        Arc::clone(&cluster),
        transfer::Settings::from_config(&cfg),
        spools,
    ));
    let (listener, listen) = server::bind(&cfg)?;
    let state = Arc::new(State::new(
        &cfg,
        cluster,
        write,
        Arc::clone(&transfer),
        listen,
    ));
    let janitor = server::connections::start_janitor(Arc::clone(&state.conns), health_stop.clone())
        .map_err(|e| format!("cannot start the connection janitor: {e}"))?;
    // The writers are up, so a resumed transfer's moves can route writes;
    // its moves are known before the first request is served.
    transfer.resume();
    let workers = server::start_workers(&listener, &state, cfg.worker_threads, cfg.query_threads)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    log!(
        "http service start, listen on {} with {} workers",
        cfg.listen_addr,
        cfg.worker_threads
    );
    let signal = signals::wait();
    log!("{signal} received, stopping: no new requests, finishing the ones in flight");
    // The transfer's progress is saved for the resume at the next start.
    transfer.stop(Duration::from_secs(2));
    drop(transfer);
    workers.stop(&listener);
    drop(listener);
    drop(stop_health);
    let grace = cfg.write_timeout.min(Duration::from_secs(5));
    match Arc::try_unwrap(state) {
        Ok(state) => state.write.writers.stop(grace),
        Err(_) => log!("writers still referenced at shutdown; pending batches not flushed"),
    }
    for h in pingers.into_iter().chain([janitor]) {
        let _ = h.join();
    }
    log!("stopped");
    Ok(())
}
