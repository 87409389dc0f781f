//! `/health?stats=true`: the Go proxy's per-backend placement survey
//! (`stats: {"<db>": {measurements, inplace, incorrect}}`, `healthy`),
//! against four real influxd (2 circles x 2 backends): the counts equal what
//! each influxd holds, a measurement written to the wrong backend counts as
//! incorrect there, a backend down still gets a quick 200, and writes keep
//! being acknowledged while surveys wait on slow backends.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const DBS: [&str; 2] = ["stats_a", "stats_b"];
/// Measurements written to each database.
const PER_DB: usize = 12;

fn health_stats(proxy: &Proxy) -> Value {
    let r = http_get(&format!("{}/health", proxy.url()), &[("stats", "true")]);
    assert_eq!(r.status, 200, "/health?stats=true: {}", r.body);
    r.json()
}

/// The entry of circle `c`, backend `b` (0-based) in a `/health` answer.
fn entry(h: &Value, c: usize, b: usize) -> &Value {
    &h["circles"][c]["backends"][b]
}

#[test]
fn stats_count_what_each_backend_holds_and_name_misplaced_measurements() {
    let mut cluster = Cluster::start(&DBS, |_| {});
    let proxy = &cluster.proxy;
    let mut body = String::new();
    for db in DBS {
        body.clear();
        for i in 0..PER_DB {
            body.push_str(&format!("m_{i},host=h v={i} 1\n"));
        }
        let (status, text) = proxy.write(db, Some("s"), &body);
        assert_eq!(status, 204, "write to {db}: {text}");
    }
    for db in DBS {
        for i in 0..PER_DB {
            cluster.wait_in_every_circle(Duration::from_secs(20), db, &format!("m_{i}"), 1);
        }
    }

    // Every backend: the per-db counts of its influxd, all in place.
    let h = health_stats(proxy);
    let wanted_dbs: BTreeSet<String> = DBS.iter().map(|d| d.to_string()).collect();
    for c in 0..2 {
        let mut per_circle = [0u64; 2];
        for b in 0..2 {
            let e = entry(&h, c, b);
            let stats = e["stats"].as_object().unwrap_or_else(|| panic!("{e}"));
            let dbs: BTreeSet<String> = stats.keys().cloned().collect();
            // `_internal` (when influxd has it) is left out, as in Go.
            assert_eq!(dbs, wanted_dbs, "circle {c} backend {b}: databases");
            for (i, db) in DBS.iter().enumerate() {
                let held = cluster.backend(c, b).measurements(db).len() as u64;
                let s = &stats[*db];
                assert_eq!(
                    s,
                    &json!({"measurements": held, "inplace": held, "incorrect": 0}),
                    "circle {c} backend {b} db {db}"
                );
                per_circle[i] += held;
            }
            assert_eq!(e["healthy"], true, "circle {c} backend {b}: {e}");
        }
        assert_eq!(
            per_circle, [PER_DB as u64; 2],
            "circle {c} holds every measurement once"
        );
    }

    // A measurement written straight to the backend that does not own it.
    let db = DBS[0];
    let stray = (0..)
        .map(|i| format!("stray_{i}"))
        .find(|m| owner(db, m, 2) == 0)
        .expect("a name owned by backend 0");
    let wrong = cluster.backend(0, 1);
    let r = wrong.write(db, Some("s"), format!("{stray} v=1 1\n").as_bytes());
    assert_eq!(r.status, 204, "direct write: {}", r.body);
    let h = health_stats(proxy);
    let e = entry(&h, 0, 1);
    let held = wrong.measurements(db).len() as u64;
    assert_eq!(
        e["stats"][db],
        json!({"measurements": held, "inplace": held - 1, "incorrect": 1}),
        "{e}"
    );
    assert_eq!(
        e["healthy"], false,
        "a backend holding a stray is not healthy: {e}"
    );
    assert_eq!(entry(&h, 0, 0)["healthy"], true);
    assert_eq!(entry(&h, 0, 0)["stats"][db]["incorrect"], 0);

    // A backend down: still a 200, at once, its entry without stats.
    cluster.influxds[3].stop();
    let start = Instant::now();
    let h = health_stats(&cluster.proxy);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "/health?stats=true took {took:?}"
    );
    let down = entry(&h, 1, 1);
    assert!(down.get("stats").is_none(), "{down}");
    assert_eq!(down["healthy"], false, "{down}");
    assert!(
        down["stats_error"].as_str().is_some_and(|s| !s.is_empty()),
        "the entry says why it has no stats: {down}"
    );
    for (c, b) in [(0, 0), (0, 1), (1, 0)] {
        assert!(
            entry(&h, c, b)["stats"].is_object(),
            "circle {c} backend {b}"
        );
    }
    // Without `stats=true` the answer has neither key.
    let r = http_get(&format!("{}/health", cluster.proxy.url()), &[]);
    let plain: Value = r.json();
    assert!(entry(&plain, 0, 0).get("stats").is_none());
    assert!(entry(&plain, 0, 0).get("healthy").is_none());
}

/// Surveys that wait on slow backends (circle 2 answers queries after
/// 1.5 s, up to four surveys at once: more than the proxy's workers) run in
/// the query pool: every write meanwhile is acknowledged at once, and every
/// point reaches circle 1.
#[test]
fn writes_keep_being_acknowledged_while_stats_are_polled() {
    let real = Influxd::start_many(2);
    for d in &real {
        d.create_db("load");
    }
    let slow = [
        FakeBackend::start(Fault::SlowQueries(Duration::from_millis(1500))),
        FakeBackend::start(Fault::SlowQueries(Duration::from_millis(1500))),
    ];
    let mut config = config_for_urls(&[
        vec![real[0].url(), real[1].url()],
        vec![slow[0].url(), slow[1].url()],
    ]);
    config["query_timeout"] = json!(10);
    config["worker_threads"] = json!(3);
    let proxy = Proxy::start(config);

    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, polls) = (proxy.url(), stop.clone(), polls.clone());
            thread::spawn(move || {
                // Bounded: at most 20 surveys of at most ~2 s each.
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = http_get(&format!("{url}/health"), &[("stats", "true")]);
                    assert_eq!(r.status, 200, "{}", r.body);
                    let h: Value = r.json();
                    // The slow backend's entry has its stats, or (on a
                    // machine so loaded that 1.5 s answers pass the bound)
                    // says the survey ran out of time: never nothing.
                    let slow = &h["circles"][1]["backends"][0];
                    assert!(
                        slow["stats"].is_object()
                            || slow["stats_error"]
                                .as_str()
                                .is_some_and(|e| e.contains("query_timeout")),
                        "{h}"
                    );
                    polls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Writes for 5 s while the surveys run; each must be answered at once.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut written = 0u64;
    let mut batch = 0u64;
    while start.elapsed() < Duration::from_secs(5) && batch < 2_000 {
        let mut body = String::new();
        for i in 0..50 {
            body.push_str(&format!(
                "load v={} {}\n",
                batch * 50 + i,
                batch * 50 + i + 1
            ));
        }
        let t = Instant::now();
        let (status, text) = proxy.write("load", None, &body);
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 204, "write {batch}: {text}");
        written += 50;
        batch += 1;
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().expect("poller");
    }
    let surveys = polls.load(Ordering::Relaxed);
    eprintln!("{written} points in {batch} writes, slowest ack {slowest:?}, {surveys} surveys");
    assert!(surveys >= 4, "surveys answered while writing: {surveys}");
    assert!(
        slowest < Duration::from_millis(1000),
        "a write waited {slowest:?} while surveys waited on slow backends"
    );
    let owner = &real[owner("load", "load", 2)];
    wait_for_eq(
        Duration::from_secs(20),
        "circle 1's owner to hold every point",
        &written,
        || owner.count_v("load", "load"),
    );
}

/// A backend that accepts connections and never answers costs the survey
/// `query_timeout`, not more: the answer is a 200 with its entry saying why
/// it has no stats, the other backend's stats present.
#[test]
fn a_backend_that_never_answers_costs_the_survey_query_timeout() {
    let hang = FakeBackend::start(Fault::Hang);
    let ok = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![hang.url()], vec![ok.url()]]);
    config["query_timeout"] = json!(1);
    config["write_timeout"] = json!(30);
    let proxy = Proxy::start(config);
    let start = Instant::now();
    let h = health_stats(&proxy);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "/health?stats=true took {took:?}"
    );
    let silent = entry(&h, 0, 0);
    assert!(silent.get("stats").is_none(), "{silent}");
    assert_eq!(silent["healthy"], false);
    assert!(silent["stats_error"].is_string(), "{silent}");
    assert!(entry(&h, 1, 0)["stats"].is_object(), "{h}");
    eprintln!("silent backend: {} after {took:?}", silent["stats_error"]);
}
