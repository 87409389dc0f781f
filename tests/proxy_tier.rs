//! A tier of proxies behind a real HAProxy (issue 15): two proxies with the
//! same cluster config (own ports and `data_dir`s) in front of real influxd
//! in two circles, HAProxy running the operators' `scripts/haproxy.cfg` as
//! `scripts/haproxy.sh` prints it. One proxy is killed with `kill -9` under
//! load and restarted: every point the load generator saw acknowledged is in
//! every circle, queries through HAProxy keep answering, and the restarted
//! proxy drains its spool. And the way back for a machine that never
//! returns: its `data_dir` copied to another proxy is delivered from there.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::haproxy::Haproxy;
use common::*;

const STRESS_BIN: &str = env!("CARGO_BIN_EXE_influx-stress");
const DB: &str = "tier";
/// Bound on delivery of what the spools hold once the load stops.
const DRAIN: Duration = Duration::from_secs(30);

/// A child process killed when the test ends, also by a panic.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Points of `db` in `influxd`: `count(n)` over every measurement.
fn points_in(influxd: &Influxd, db: &str) -> u64 {
    let v = influxd.query(db, "SELECT count(n) FROM /.*/");
    v["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["values"][0][1].as_u64())
        .sum()
}

/// Records waiting in every spool of `proxy` (`/health`).
fn waiting(proxy: &Proxy, backends: &[String]) -> u64 {
    backends.iter().map(|b| proxy.records_waiting(b)).sum()
}

/// Queries through `url` until `stop`, about every 50 ms, alternating a
/// single-measurement `SELECT` and a fanned-out `SHOW MEASUREMENTS`, over
/// one keep-alive connection as a dashboard would. Counts answers and
/// failures (no answer, a status other than 200, or an error in the body).
fn query_load(url: String, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, failed: Arc<AtomicU64>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let statements = ["SELECT count(n) FROM \"ctr-0\"", "SHOW MEASUREMENTS"];
    let mut i = 0usize;
    // Bounded by count as well as by the flag: 1,200 queries are a minute.
    while !stop.load(Ordering::Relaxed) && i < 1200 {
        let q = statements[i % statements.len()];
        i += 1;
        let answer = http_send(
            &agent,
            "GET",
            &format!("{url}/query"),
            &[("db", DB), ("q", q)],
            &[],
            b"",
        );
        match answer {
            Ok(r) if r.status == 200 && !r.body.contains("\"error\"") => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                eprintln!(
                    "query {q:?} through haproxy: {} {}",
                    r.status,
                    r.body.trim()
                );
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("query {q:?} through haproxy: {e}");
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The pace of a dashboard, not a synchronisation.
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_proxy_killed_under_load_behind_haproxy_loses_no_acknowledged_point() {
    let started = Instant::now();
    // Two circles of two influxd; circle c is influxds[2c..2c+2].
    let influxds = Influxd::start_many(4);
    for d in &influxds {
        d.create_db(DB);
    }
    let mut config = two_by_two_config(&influxds);
    // Small batches linger in the spool for `flush_time` before they are
    // sent: 3 s of them make sure proxy B dies holding undelivered points.
    config["flush_time"] = json!(3);
    let backends: Vec<String> = (0..2)
        .flat_map(|c| (0..2).map(move |b| backend_name(c, b)))
        .collect();
    let proxy_a = Proxy::start(config.clone());
    let mut proxy_b = Proxy::start(config);
    let haproxy = Haproxy::start(&[proxy_a.addr(), proxy_b.addr()]);
    let url = haproxy.url();

    let stop = Arc::new(AtomicBool::new(false));
    let queries_ok = Arc::new(AtomicU64::new(0));
    let queries_failed = Arc::new(AtomicU64::new(0));
    let query_thread = {
        let (url, stop, ok, failed) = (
            url.clone(),
            Arc::clone(&stop),
            Arc::clone(&queries_ok),
            Arc::clone(&queries_failed),
        );
        thread::spawn(move || query_load(url, stop, ok, failed))
    };

    // The load generator: 40 writers of 100 timestamped points each second
    // (4,000 points/s) for 10 s over 8 measurements, through HAProxy. Every
    // point has its own series and timestamp, so a circle that stored every
    // acknowledged point once holds exactly the count it reports.
    let stress_out = proxy_a.dir().join("stress.json");
    let mut stress = {
        let out = std::fs::File::create(&stress_out).expect("create stress output");
        let mut cmd = Command::new(STRESS_BIN);
        cmd.args(["--host", &url, "--db", DB, "-k", "--json"])
            .args(["--measurements", "8", "--series", "800"])
            .args(["--batch-size", "100", "--pps", "4000", "--runtime", "10s"])
            .args(["--timeout", "20s"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        Running(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {STRESS_BIN}: {e}")),
        )
    };

    // Kill proxy B once it has taken writes of its own.
    let accepted_by_b = |p: &Proxy| -> u64 {
        backends
            .iter()
            .map(|b| {
                p.backend_health(b)["points"]["accepted"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    wait_until(Duration::from_secs(15), "proxy B to take writes", || {
        accepted_by_b(&proxy_b) >= 2_000
    });
    let waiting_at_kill = waiting(&proxy_b, &backends);
    let kill_at = Instant::now();
    proxy_b.kill9();
    // The outage under test: B stays dead for 3 s (HAProxy marks it down
    // after two failed checks, ~1.5 s; the requests it was serving and
    // those sent to it before are resent to A).
    thread::sleep(Duration::from_secs(3));
    proxy_b.restart();
    let restarted_in = kill_at.elapsed();
    assert!(
        waiting_at_kill > 0,
        "proxy B had delivered everything when it was killed: nothing to replay"
    );

    let status = wait_child(&mut stress.0, Duration::from_secs(40))
        .expect("influx-stress did not finish within 40 s");
    let mut stress_err = String::new();
    if let Some(mut e) = stress.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stress_err);
    }
    assert!(status.success(), "influx-stress failed: {stress_err}");
    stop.store(true, Ordering::Relaxed);
    query_thread.join().expect("query thread");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&stress_out).expect("read influx-stress output"))
            .unwrap_or_else(|e| {
                panic!("influx-stress summary is not JSON ({e}); stderr: {stress_err}")
            });
    let acked = summary["points"].as_u64().expect("points in summary");
    let failed_writes = summary["errors"].as_u64().unwrap_or(0);
    let failed_points = summary["failed_points"].as_u64().unwrap_or(0);
    assert!(
        acked >= 20_000,
        "too few points acknowledged to mean anything: {summary}"
    );

    // Both proxies deliver everything they hold, the restarted one included.
    wait_until(DRAIN, "both proxies to drain their spools", || {
        waiting(&proxy_a, &backends) == 0 && waiting(&proxy_b, &backends) == 0
    });
    let found: Vec<u64> = (0..2)
        .map(|c| points_in(&influxds[2 * c], DB) + points_in(&influxds[2 * c + 1], DB))
        .collect();
    let (ok, failed_queries) = (
        queries_ok.load(Ordering::Relaxed),
        queries_failed.load(Ordering::Relaxed),
    );
    println!(
        "proxy tier: {acked} points acknowledged; found circle-1 {} circle-2 {}; \
         failed writes {failed_writes} ({failed_points} points); failed queries \
         {failed_queries} of {}; proxy B dead for {restarted_in:.1?}, {waiting_at_kill} \
         records in its spools at the kill; test took {:.1?}",
        found[0],
        found[1],
        ok + failed_queries,
        started.elapsed()
    );
    for (c, &n) in found.iter().enumerate() {
        assert!(
            n >= acked,
            "circle-{} holds {n} points, fewer than the {acked} acknowledged",
            c + 1
        );
        if failed_writes == 0 {
            assert_eq!(
                n,
                acked,
                "circle-{} holds more points than were sent",
                c + 1
            );
        }
        // Nothing beyond what was sent: a failed request may be stored.
        assert!(
            n <= acked + failed_points,
            "circle-{} holds {n} points, more than the {} sent",
            c + 1,
            acked + failed_points
        );
    }
    // HAProxy resends what the dead proxy refused or dropped: without its
    // retries (`retries 0`) this run loses about 26 of 400 write requests
    // and 9 of 180 queries.
    assert!(
        failed_writes <= 2,
        "{failed_writes} write requests through haproxy failed around the kill: {summary}"
    );
    assert!(ok > 0, "no query answered through haproxy");
    assert!(
        failed_queries <= 2,
        "{failed_queries} of {} queries through haproxy failed around the kill",
        ok + failed_queries
    );
}

#[test]
fn the_operators_haproxy_config_is_valid_alone_and_beside_debians() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    // The file as shipped, with its example servers.
    common::haproxy::check(&script_dir.join("haproxy.cfg"));
    // As the README installs it: generated into /etc/haproxy beside
    // Debian's haproxy.cfg (its global and defaults first), the folder
    // loaded whole.
    let debian = Path::new("/etc/haproxy/haproxy.cfg");
    let dir = TempDir::new("haproxy-folder");
    if debian.exists() {
        std::fs::copy(debian, dir.path().join("haproxy.cfg")).expect("copy debian's config");
    } else {
        eprintln!("no {} here: checking ours alone", debian.display());
    }
    let ours = common::haproxy::generate(
        8086,
        &[
            "10.0.0.11:7076".parse().unwrap(),
            "10.0.0.12:7076".parse().unwrap(),
        ],
    );
    std::fs::write(dir.path().join("influx-proxy.cfg"), ours).expect("write our config");
    common::haproxy::check(dir.path());
}

/// Copies `from` into `to` (folders and regular files).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn a_dead_proxys_data_dir_copied_to_another_proxy_is_delivered_from_there() {
    let mut influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(DB);
    }
    let config = config_for_urls(&[vec![influxds[0].url()], vec![influxds[1].url()]]);
    let mut dead = Proxy::start(config.clone());

    // Circle 2's backend is down: the acknowledged points wait in the spool.
    influxds[1].stop();
    let base = 1_700_000_000_000_000_000i64;
    let (requests, per_request) = (20, 50);
    for r in 0..requests {
        let body: String = (0..per_request)
            .map(|i| {
                let ts = base + (r * per_request + i) as i64;
                format!("ctr-{},host=h n={i}i {ts}\n", i % 4)
            })
            .collect();
        let (status, text) = dead.write(DB, None, &body);
        assert_eq!(status, 204, "write {r}: {text}");
    }
    let points = (requests * per_request) as u64;
    wait_for_eq(DRAIN, "circle 1 to hold every point", &points, || {
        points_in(&influxds[0], DB)
    });
    wait_until(DRAIN, "circle 1's spool to be delivered", || {
        dead.records_waiting(&backend_name(0, 0)) == 0
    });
    let backlog = dead.records_waiting(&backend_name(1, 0));
    assert!(backlog > 0, "circle 2's spool holds nothing to copy");

    // The machine is gone: its proxy never runs again. Its backends' spool
    // folders are copied to a new data_dir ...
    let old_data = dead.data_dir();
    dead.kill9();
    let scratch = TempDir::new("copied-data-dir");
    let new_data = scratch.path().join("spool");
    for c in 0..2 {
        let name = spool_dir_name(&backend_name(c, 0));
        copy_dir(&old_data.join(&name), &new_data.join(&name));
    }
    // ... and a proxy with the same backend names (the same config) is
    // started on it while circle 2 comes back.
    let mut config = config;
    config["data_dir"] = json!(new_data.display().to_string());
    let heir = Proxy::start(config);
    influxds[1].restart();
    wait_for_eq(
        DRAIN,
        "circle 2 to get the copied spool's points",
        &points,
        || points_in(&influxds[1], DB),
    );
    wait_until(DRAIN, "the new proxy's spools to be empty", || {
        heir.records_waiting(&backend_name(0, 0)) == 0
            && heir.records_waiting(&backend_name(1, 0)) == 0
    });
    // Circle 1 had everything already (the copied cursor says so): nothing
    // is sent to it twice, and it still holds each point once.
    assert_eq!(points_in(&influxds[0], DB), points);
    assert_eq!(
        heir.backend_health(&backend_name(0, 0))["points"]["delivered"].as_u64(),
        Some(0),
        "circle 1's copied spool was delivered again"
    );
}
