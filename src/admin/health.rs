//! `GET /health`: the state of every circle and backend, in the Go proxy's
//! shape (keys sorted), plus our counters under `stats` per backend.
//!
//! Unlike the Go proxy, `status` is `fail` (still 200) when no circle has all
//! its backends active, i.e. when reads cannot be served completely.

use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use crate::cluster::Cluster;
use crate::server::http::Response;
use crate::VERSION;

pub fn handle(cluster: &Cluster, pretty: bool) -> Response {
    let circles: Vec<Value> = cluster
        .circles
        .iter()
        .map(|c| {
            let backends: Vec<Value> = c
                .backends
                .iter()
                .map(|b| {
                    let s = &b.stats;
                    json!({
                        "name": b.name,
                        "url": b.url,
                        "active": b.is_active(),
                        "backlog": b.has_backlog(),
                        "rewriting": b.is_rewriting(),
                        "write_only": b.write_only,
                        "stats": {
                            "points_in": s.points_in.load(Ordering::Relaxed),
                            "points_delivered": s.points_delivered.load(Ordering::Relaxed),
                            "points_rejected": s.points_rejected.load(Ordering::Relaxed),
                            "points_overflowed": s.points_overflowed.load(Ordering::Relaxed),
                            "backlog_batches": s.backlog_batches.load(Ordering::Relaxed),
                            "backlog_bytes": s.backlog_bytes.load(Ordering::Relaxed),
                            "send_failures": s.send_failures.load(Ordering::Relaxed),
                        },
                    })
                })
                .collect();
            json!({
                "circle": {
                    "id": c.id,
                    "name": c.name,
                    "active": c.is_active(),
                    "write_only": c.is_write_only(),
                },
                "backends": backends,
            })
        })
        .collect();
    let (status, message) = if cluster.can_serve_reads() {
        ("pass", "ready for queries and writes")
    } else {
        (
            "fail",
            "no circle has all its backends active: queries may be incomplete",
        )
    };
    let body = json!({
        "checks": [],
        "circles": circles,
        "message": message,
        "name": "influx-proxy",
        "status": status,
        "version": VERSION,
    });
    Response::json(200, &body, pretty)
}
