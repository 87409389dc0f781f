//! `GET /health`: the state of every circle and backend, in the Go proxy's
//! shape (keys sorted), plus per backend our `spool` state (records, bytes
//! and age of what waits, dead letters, parked, damaged records, refusals)
//! and `points` counters.
//!
//! Unlike the Go proxy, `status` is `fail` (still 200) when no circle has all
//! its backends active, i.e. when reads cannot be served completely.
//!
//! A circle a transfer is filling is `write_only` (as in the Go proxy, its
//! backends too) and carries our extra key `"transferring": true`, in the
//! circle object and in each of its backends; the key is absent otherwise.
//!
//! With `?stats=true`, each backend also gets the Go proxy's `healthy` and
//! `stats` (`{"<db>":{"measurements":N,"inplace":N,"incorrect":N}}`,
//! surveyed live, see [`super::placement`]). `healthy` is true when the
//! survey found no measurement out of place. Unlike the Go proxy, whose
//! `omitempty` drops `"healthy": false` from the answer, ours always gives
//! the key (a reader of `backend.healthy` sees false either way); a backend
//! that could not be surveyed (down, or no answer within `query_timeout`)
//! gets `"healthy": false` and `"stats_error"` saying why, no `stats`.

use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use super::placement::BackendPlacement;
use crate::cluster::Cluster;
use crate::server::http::Response;
use crate::writer::Writers;
use crate::VERSION;

/// The answer; `stats`: the placement survey by backend id, when asked.
pub fn handle(
    cluster: &Cluster,
    writers: &Writers,
    stats: Option<&[BackendPlacement]>,
    pretty: bool,
) -> Response {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let circles: Vec<Value> = cluster
        .circles
        .iter()
        .map(|c| {
            let transferring = cluster.is_transferring(c.id);
            let backends: Vec<Value> = c
                .backends
                .iter()
                .map(|b| {
                    let s = &b.stats;
                    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                    let backlog = writers.backlog(b.id, now_ms);
                    let waiting = backlog.records;
                    let mut backend = json!({
                        "name": b.name,
                        "url": b.url,
                        "active": b.is_active(),
                        "backlog": waiting > 0,
                        "rewriting": b.is_rewriting(),
                        "write_only": b.write_only || transferring,
                        "spool": {
                            "records_waiting": waiting,
                            "bytes_waiting": backlog.bytes,
                            "oldest_waiting_age_s": backlog.oldest_age_s,
                            "dead_letter_records": load(&s.records_dead_lettered),
                            "parked_records": load(&s.records_parked),
                            "corrupt_records": backlog.corrupt_records,
                            "full_refusals": backlog.full_refusals,
                            "statements_pending": load(&s.statements_pending),
                        },
                        "points": {
                            "accepted": load(&s.points_in),
                            "delivered": load(&s.points_delivered),
                            "rejected": load(&s.points_rejected),
                            "dead_lettered": load(&s.points_dead_lettered),
                            "parked": load(&s.points_parked),
                            "send_failures": load(&s.send_failures),
                            "send_retries": load(&s.send_retries),
                        },
                    });
                    if transferring {
                        backend["transferring"] = true.into();
                    }
                    match stats.map(|s| s.get(b.id)) {
                        None => {}
                        Some(Some(Ok(dbs))) => {
                            let healthy = dbs.values().all(|d| d.incorrect == 0);
                            backend["healthy"] = healthy.into();
                            backend["stats"] = dbs
                                .iter()
                                .map(|(db, d)| {
                                    let counts = json!({
                                        "measurements": d.measurements,
                                        "inplace": d.inplace,
                                        "incorrect": d.incorrect,
                                    });
                                    (db.clone(), counts)
                                })
                                .collect::<serde_json::Map<_, _>>()
                                .into();
                        }
                        Some(other) => {
                            backend["healthy"] = false.into();
                            let why = match other {
                                Some(Err(e)) => e.clone(),
                                _ => "not surveyed".to_string(),
                            };
                            backend["stats_error"] = why.into();
                        }
                    }
                    backend
                })
                .collect();
            let mut circle = json!({
                "id": c.id,
                "name": c.name,
                "active": c.is_active(),
                "write_only": c.is_write_only() || transferring,
            });
            if transferring {
                circle["transferring"] = true.into();
            }
            json!({
                "circle": circle,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::writer::WriterSettings;
    use std::sync::Arc;

    #[test]
    fn a_transferring_circle_is_write_only_and_says_so() {
        let text = r#"{"circles":[
            {"name":"c1","backends":[{"name":"a","url":"http://127.0.0.1:1"}]},
            {"name":"c2","backends":[{"name":"b","url":"http://127.0.0.1:1"}]}]}"#;
        let cfg = Config::from_json(text).unwrap().0;
        let cluster = Arc::new(Cluster::new(&cfg));
        let dir = std::env::temp_dir().join(format!("influx-proxy-health-{}", std::process::id()));
        let writers = Writers::start(&cluster, &WriterSettings::from_config(&cfg), &dir).unwrap();
        let health = || -> Value {
            serde_json::from_slice(&handle(&cluster, &writers, None, false).body).unwrap()
        };
        cluster.set_transferring(1, true);
        let h = health();
        assert_eq!(h["circles"][0]["circle"].get("transferring"), None);
        assert_eq!(h["circles"][0]["circle"]["write_only"], false);
        assert_eq!(h["circles"][0]["backends"][0].get("transferring"), None);
        assert_eq!(h["circles"][1]["circle"]["transferring"], true);
        assert_eq!(h["circles"][1]["circle"]["write_only"], true);
        assert_eq!(h["circles"][1]["backends"][0]["transferring"], true);
        assert_eq!(h["circles"][1]["backends"][0]["write_only"], true);
        cluster.set_transferring(1, false);
        let h = health();
        assert_eq!(h["circles"][1]["circle"].get("transferring"), None);
        assert_eq!(h["circles"][1]["circle"]["write_only"], false);
        writers.stop(std::time::Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
