//! The placement survey of `/health?stats=true`: per backend and database,
//! how many measurements the backend holds, how many of them the ring puts
//! on it (`inplace`) and how many it holds though their owner in its circle
//! is another backend (`incorrect`), as the Go proxy reports them.
//!
//! Computed live: `SHOW DATABASES`, then `SHOW MEASUREMENTS` per database,
//! on every backend at once (a scoped thread each), through the query
//! path's client ([`QueryClient`]: the backend's own credentials, every call
//! bounded by `query_timeout`), each name re-hashed with the circle's ring.
//! Nothing here takes a lock the write path takes: the survey reads the
//! cluster's immutable rings and the backends' atomic flags only, and its
//! request waits on backends in the query pool, not on a worker (see
//! [`crate::server::query_pool`]). The whole survey of one backend stops at
//! `query_timeout`; a backend that is down, or does not answer in time, gets
//! an error instead of stats, and the others still get theirs.
//!
//! `_internal` is left out, as the Go proxy leaves it out: influxd's own
//! monitoring database is not placed by the ring.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Backend, Cluster};
use crate::query::forward::{error_text, read_all, QueryClient};
use crate::query::lexer::quote_ident;

/// What one backend holds of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbPlacement {
    pub measurements: u64,
    pub inplace: u64,
    pub incorrect: u64,
}

/// One backend's databases, or why they could not be surveyed.
pub type BackendPlacement = Result<BTreeMap<String, DbPlacement>, String>;

/// Rows per chunk of a `SHOW` answer: chunked, so that no `max-row-limit`
/// of the backend cuts a long list of measurements.
const CHUNK: &str = "10000";

/// The survey of every backend of `cluster`, indexed by backend id; each
/// backend's survey ends within `timeout` (plus one call's own bound).
pub fn survey(client: &QueryClient, cluster: &Cluster, timeout: Duration) -> Vec<BackendPlacement> {
    let deadline = Instant::now() + timeout;
    std::thread::scope(|scope| {
        let running: Vec<_> = cluster
            .backends
            .iter()
            .map(|b| {
                // `Copy` (references and an instant): when its thread cannot
                // be started, the copy kept here runs on this thread.
                let job = move || of_backend(client, cluster, b, deadline);
                std::thread::Builder::new()
                    .name("health-stats".into())
                    .spawn_scoped(scope, job)
                    .map_err(|_| job)
            })
            .collect();
        running
            .into_iter()
            .map(|r| match r {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err("the survey failed".to_string())),
                Err(job) => job(),
            })
            .collect()
    })
}

fn of_backend(
    client: &QueryClient,
    cluster: &Cluster,
    backend: &Backend,
    deadline: Instant,
) -> BackendPlacement {
    if !backend.is_active() {
        return Err("backend is down: no stats".into());
    }
    let mut out = BTreeMap::new();
    for db in show(client, backend, "", "SHOW DATABASES", deadline)? {
        if db == "_internal" {
            continue;
        }
        let q = format!("SHOW MEASUREMENTS ON {}", quote_ident(&db));
        let names = show(client, backend, &db, &q, deadline)?;
        let placement = count(cluster, backend, &db, &names);
        out.insert(db, placement);
    }
    Ok(out)
}

/// Counts which of `names` (measurements of `db` on `backend`) the ring of
/// the backend's circle puts on it.
pub fn count(cluster: &Cluster, backend: &Backend, db: &str, names: &[String]) -> DbPlacement {
    let mut p = DbPlacement {
        measurements: names.len() as u64,
        ..DbPlacement::default()
    };
    let Some(circle) = cluster.circles.get(backend.circle) else {
        // A backend of no circle of the cluster owns nothing.
        p.incorrect = p.measurements;
        return p;
    };
    let mut key = Vec::new();
    for name in names {
        key.clear();
        cluster
            .shard_key
            .render_into(db.as_bytes(), name.as_bytes(), &mut key);
        if circle.owner(&key).id == backend.id {
            p.inplace += 1;
        } else {
            p.incorrect += 1;
        }
    }
    p
}

/// The first column of every row of `q`'s answer (read chunked).
fn show(
    client: &QueryClient,
    backend: &Backend,
    db: &str,
    q: &str,
    deadline: Instant,
) -> Result<Vec<String>, String> {
    if Instant::now() >= deadline {
        return Err("no answer within query_timeout".into());
    }
    let params = [
        ("q", q),
        ("db", db),
        ("chunked", "true"),
        ("chunk_size", CHUNK),
    ];
    let mut answer = client
        .send(backend, false, &params, false)
        .map_err(|e| e.to_string())?;
    let status = answer.status;
    let body = read_all(&mut answer).map_err(|e| e.to_string())?;
    first_column(status, &body)
}

/// The names of a chunked `SHOW` answer: one JSON document per line.
fn first_column(status: u16, body: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let doc: Value = serde_json::from_slice(line)
            .map_err(|_| format!("HTTP {status}: an answer that is not JSON"))?;
        if let Some(e) = error_text(&doc) {
            return Err(e);
        }
        let results = doc.get("results").and_then(Value::as_array);
        for result in results.into_iter().flatten() {
            if let Some(e) = error_text(result) {
                return Err(e);
            }
            let series = result.get("series").and_then(Value::as_array);
            for s in series.into_iter().flatten() {
                let rows = s.get("values").and_then(Value::as_array);
                for row in rows.into_iter().flatten() {
                    if let Some(name) = row.get(0).and_then(Value::as_str) {
                        names.push(name.to_string());
                    }
                }
            }
        }
    }
    if status >= 400 {
        return Err(format!("HTTP {status}"));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn chunked_show_answers_are_read_line_by_line() {
        let body = br#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["a"],["b b"]]}],"partial":true}]}
{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["c"]]}]}]}
"#;
        assert_eq!(first_column(200, body).unwrap(), ["a", "b b", "c"]);
        // A database without measurements: no series.
        assert!(first_column(200, br#"{"results":[{"statement_id":0}]}"#)
            .unwrap()
            .is_empty());
        let e = br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#;
        assert_eq!(first_column(200, e).unwrap_err(), "database not found: x");
        assert_eq!(
            first_column(401, br#"{"error":"authorization failed"}"#).unwrap_err(),
            "authorization failed"
        );
        assert!(first_column(502, b"<html>").is_err());
    }

    #[test]
    fn a_measurement_counts_inplace_only_on_its_owner_in_its_circle() {
        let text = r#"{"circles":[
            {"name":"c1","backends":[{"name":"a","url":"http://127.0.0.1:1"},{"name":"b","url":"http://127.0.0.1:2"}]},
            {"name":"c2","backends":[{"name":"c","url":"http://127.0.0.1:3"}]}]}"#;
        let cluster = Cluster::new(&Config::from_json(text).unwrap().0);
        let names: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        let on_a = count(&cluster, &cluster.backends[0], "db", &names);
        let on_b = count(&cluster, &cluster.backends[1], "db", &names);
        assert_eq!(on_a.measurements, 40);
        assert_eq!(on_a.inplace + on_a.incorrect, 40);
        // Circle c1's two backends split the names: each is in place on one.
        assert_eq!(on_a.inplace, on_b.incorrect);
        assert_eq!(on_a.incorrect, on_b.inplace);
        assert!(on_a.inplace > 0 && on_b.inplace > 0, "{on_a:?} {on_b:?}");
        // The only backend of c2 owns them all.
        let on_c = count(&cluster, &cluster.backends[2], "db", &names);
        assert_eq!((on_c.inplace, on_c.incorrect), (40, 0));
    }
}
