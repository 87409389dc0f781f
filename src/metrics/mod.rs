//! `/metrics`: the proxy's own state in the Prometheus text format.
//!
//! Nothing here counts on the write path. The figures are the counters the
//! rest of the proxy keeps anyway (each backend's [`BackendStats`], its
//! spool's [`Backlog`], the query endpoint's [`QueryCounts`], what the
//! connection janitor found, the transfer's progress) read with relaxed
//! loads at scrape time, plus the one thing counted for this module alone:
//! [`requests::Requests`], three relaxed atomic adds per request in
//! [`crate::server::router::route`]. A scrape takes no lock a write takes
//! (the transfer's progress mutex only while an operation's stats are read).
//!
//! Families (all `influxproxy_*` unless they are the standard `process_*`):
//! per backend (labels `backend`, `circle`, `url`) up, points accepted,
//! delivered, rejected, dead-lettered and parked, send failures and
//! retries, the spool's waiting records, bytes and oldest age, damaged
//! records, refusals for a full spool, statements pending; per endpoint
//! requests by code and a latency histogram; statements by route;
//! connections open and refused; the transfer's progress; process gauges.

pub mod exposition;
pub mod histogram;
pub mod process;
pub mod requests;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::backend::BackendStats;
use crate::cluster::{Backend, Cluster};
use crate::query::endpoint::QueryCounts;
use crate::server::connections::ConnectionCounts;
use crate::server::http::Response;
use crate::server::State;
use crate::spool::Backlog;
use crate::transfer::Transfers;
use crate::writer::Writers;
use exposition::{Exposition, Kind, Value, CONTENT_TYPE};
pub use requests::{Endpoint, Requests};

/// The exposition of everything `state` knows, as the `/metrics` answer.
pub fn handle(state: &State) -> Response {
    let mut out = Exposition::with_capacity(32 * 1024);
    out.family(
        "influxproxy_build_info",
        Kind::Gauge,
        "Always 1; the proxy's version as a label.",
    );
    out.sample(
        "influxproxy_build_info",
        &[("version", crate::VERSION)],
        1u64,
    );
    backends(&mut out, &state.cluster, &state.write.writers);
    state.requests.render(&mut out);
    queries(&mut out, &state.query.counts);
    connections(&mut out, state.conns.counts());
    transfers(&mut out, &state.transfer);
    process::render(&mut out);
    Response {
        status: 200,
        headers: vec![("Content-Type", CONTENT_TYPE.into())],
        body: out.into_string().into_bytes(),
        stream: None,
    }
}

/// One backend as its families see it.
struct BackendView<'a> {
    backend: &'a Backend,
    circle: &'a str,
    backlog: Backlog,
}

/// A per-backend family: name, type, help, and its value for a backend.
type BackendFamily = (&'static str, Kind, &'static str, fn(&BackendView) -> Value);

fn load(a: &AtomicU64) -> Value {
    Value::Int(a.load(Ordering::Relaxed))
}

fn stats<'a>(v: &BackendView<'a>) -> &'a BackendStats {
    &v.backend.stats
}

const BACKEND_FAMILIES: [BackendFamily; 17] = [
    (
        "influxproxy_backend_up",
        Kind::Gauge,
        "1 when the backend's last health check (or send) succeeded, else 0.",
        |v| v.backend.is_active().into(),
    ),
    (
        "influxproxy_backend_points_accepted_total",
        Kind::Counter,
        "Points acknowledged to clients and stored in the backend's spool.",
        |v| load(&stats(v).points_in),
    ),
    (
        "influxproxy_backend_points_delivered_total",
        Kind::Counter,
        "Points the backend confirmed (2xx).",
        |v| load(&stats(v).points_delivered),
    ),
    (
        "influxproxy_backend_points_rejected_total",
        Kind::Counter,
        "Points the backend refused for good (400 partial write and the like).",
        |v| load(&stats(v).points_rejected),
    ),
    (
        "influxproxy_backend_dead_lettered_records_total",
        Kind::Counter,
        "Spool records set aside in deadletter.lp after repeated refusals.",
        |v| load(&stats(v).records_dead_lettered),
    ),
    (
        "influxproxy_backend_dead_lettered_points_total",
        Kind::Counter,
        "Points of the records set aside in deadletter.lp.",
        |v| load(&stats(v).points_dead_lettered),
    ),
    (
        "influxproxy_backend_parked_records_total",
        Kind::Counter,
        "Spool records parked in parked.lp: their database or retention policy exists nowhere.",
        |v| load(&stats(v).records_parked),
    ),
    (
        "influxproxy_backend_parked_points_total",
        Kind::Counter,
        "Points of the records parked in parked.lp.",
        |v| load(&stats(v).points_parked),
    ),
    (
        "influxproxy_backend_send_failures_total",
        Kind::Counter,
        "Failed POSTs to the backend (no answer, timeout, 5xx).",
        |v| load(&stats(v).send_failures),
    ),
    (
        "influxproxy_backend_send_retries_total",
        Kind::Counter,
        "Batches sent to the backend again after a failed attempt.",
        |v| load(&stats(v).send_retries),
    ),
    (
        "influxproxy_backend_spool_waiting_records",
        Kind::Gauge,
        "Records in the backend's spool not yet delivered.",
        |v| v.backlog.records.into(),
    ),
    (
        "influxproxy_backend_spool_waiting_bytes",
        Kind::Gauge,
        "Bytes of the records in the backend's spool not yet delivered.",
        |v| v.backlog.bytes.into(),
    ),
    (
        "influxproxy_backend_spool_oldest_waiting_age_seconds",
        Kind::Gauge,
        "Age of the oldest record waiting in the backend's spool (0 when none waits).",
        |v| v.backlog.oldest_age_s.into(),
    ),
    (
        "influxproxy_backend_spool_corrupt_records_total",
        Kind::Counter,
        "Damaged spool records skipped when reading.",
        |v| v.backlog.corrupt_records.into(),
    ),
    (
        "influxproxy_backend_spool_full_refusals_total",
        Kind::Counter,
        "Writes refused (503) because the backend's spool was full.",
        |v| v.backlog.full_refusals.into(),
    ),
    (
        "influxproxy_backend_statements_pending",
        Kind::Gauge,
        "Statements (DDL) queued in the backend's spool and not yet run there.",
        |v| load(&stats(v).statements_pending),
    ),
    (
        "influxproxy_backend_rewriting",
        Kind::Gauge,
        "1 while the backend's sender is catching up on a backlog, else 0.",
        |v| v.backend.is_rewriting().into(),
    ),
];

fn backends(out: &mut Exposition, cluster: &Cluster, writers: &Writers) {
    let now_ms = (process::unix_now() * 1000.0) as u64;
    let views: Vec<BackendView> = cluster
        .backends
        .iter()
        .map(|b| BackendView {
            backend: b,
            circle: cluster.circles.get(b.circle).map_or("", |c| &c.name),
            backlog: writers.backlog(b.id, now_ms),
        })
        .collect();
    for (name, kind, help, value) in BACKEND_FAMILIES {
        out.family(name, kind, help);
        for v in &views {
            let labels = [
                ("backend", v.backend.name.as_str()),
                ("circle", v.circle),
                ("url", v.backend.url.as_str()),
            ];
            out.sample(name, &labels, value(v));
        }
    }
}

fn queries(out: &mut Exposition, counts: &QueryCounts) {
    const NAME: &str = "influxproxy_query_statements_total";
    out.family(
        NAME,
        Kind::Counter,
        "InfluxQL statements answered, by route: single_owner (one backend; passed through \
         when alone), fan_out (several backends, merged), ddl (run on every backend it had to \
         reach), ddl_queued (queued in the spool of a backend that was down or behind).",
    );
    for (kind, counter) in [
        ("single_owner", &counts.single_owner),
        ("fan_out", &counts.fan_out),
        ("ddl", &counts.ddl_ran),
        ("ddl_queued", &counts.ddl_queued),
    ] {
        out.sample(NAME, &[("kind", kind)], load(counter));
    }
}

fn connections(out: &mut Exposition, c: ConnectionCounts) {
    out.single(
        "influxproxy_connections_open",
        Kind::Gauge,
        "Client connections open at the connection janitor's last pass.",
        c.open,
    );
    const REFUSED: &str = "influxproxy_connections_refused_total";
    out.family(
        REFUSED,
        Kind::Counter,
        "Client connections the proxy shut: beyond max_connections (503 when no request was \
         served yet), a header over max_header_size (431), a request still incomplete after \
         idle_timeout.",
    );
    for (reason, n) in [
        ("max_connections", c.over_cap),
        ("header_too_large", c.header_too_large),
        ("slow_header", c.slow_header),
    ] {
        out.sample(REFUSED, &[("reason", reason)], n);
    }
    out.single(
        "influxproxy_connections_idle_closed_total",
        Kind::Counter,
        "Client connections closed after idle_timeout without a request.",
        c.idle,
    );
}

/// The running flag of the current (or last) operation, and per backend of
/// each circle the progress `/transfer/stats` shows.
fn transfers(out: &mut Exposition, svc: &Transfers) {
    const RUNNING: &str = "influxproxy_transfer_running";
    out.family(
        RUNNING,
        Kind::Gauge,
        "1 while the operation (rebalance, recovery, resync, cleanup) runs on its circle \
         (empty for resync), 0 once it ended; the last operation stays listed.",
    );
    let cluster = svc.cluster();
    if let Some(job) = svc.current() {
        let circle = job
            .op
            .target_circle()
            .and_then(|id| cluster.circles.get(id))
            .map_or("", |c| c.name.as_str());
        out.sample(
            RUNNING,
            &[("operation", job.op.kind.as_str()), ("circle", circle)],
            job.is_running(),
        );
    }
    let per_circle: Vec<_> = cluster
        .circles
        .iter()
        .map(|c| (c.name.as_str(), crate::transfer::stats::stats(svc, c.id)))
        .collect();
    type Field = fn(&crate::transfer::stats::BackendStats) -> u64;
    let families: [(&str, &str, Field); 6] = [
        (
            "influxproxy_transfer_points_copied",
            "Points the current or last operation copied from this source backend.",
            |s| s.points_copied,
        ),
        (
            "influxproxy_transfer_bytes_copied",
            "Line-protocol bytes the current or last operation copied from this source backend.",
            |s| s.bytes_copied,
        ),
        (
            "influxproxy_transfer_measurements",
            "Measurements (of one retention policy) of this source backend the operation handles.",
            |s| s.measurement_total,
        ),
        (
            "influxproxy_transfer_measurements_done",
            "Measurements of this source backend the operation finished (in place included).",
            |s| s.measurement_done,
        ),
        (
            "influxproxy_transfer_measurements_verified",
            "Copies from this source backend whose point counts matched on both sides.",
            |s| s.measurements_verified,
        ),
        (
            "influxproxy_transfer_measurements_unverified",
            "Copies from this source backend whose counts differed (or, for cleanup, measurements kept).",
            |s| s.measurements_unverified,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, Kind::Gauge, help);
        for (circle, by_url) in &per_circle {
            for (url, s) in by_url {
                out.sample(name, &[("circle", circle), ("url", url)], field(s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_family_names_are_unique_and_typed_by_suffix() {
        let mut names: Vec<&str> = BACKEND_FAMILIES.iter().map(|f| f.0).collect();
        for (name, kind, _, _) in BACKEND_FAMILIES {
            assert!(name.starts_with("influxproxy_backend_"), "{name}");
            assert_eq!(name.ends_with("_total"), kind == Kind::Counter, "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BACKEND_FAMILIES.len());
    }
}
