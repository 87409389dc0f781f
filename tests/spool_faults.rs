//! The spool's promise under faults (issue 4, "Faults"): a 204 means every
//! circle gets the points, whatever happens to the proxy, its disk or its
//! backends. Every test runs against real influxd; only the "500 forever for
//! one batch" test uses a fake backend, since a real one cannot fail on cue.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

/// Timestamps of all points are `BASE_TS + n` with a distinct `n` per point.
const BASE_TS: i64 = 1_700_000_000_000_000_000;
/// How long delivery of a backlog may take on a loaded 2-core machine.
const DRAIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Helpers.

/// The first `n` names `<prefix><i>` that backend `b` owns in a 2-backend
/// circle (same in every circle: the default `hash_key` is `idx`).
fn owned(db: &str, prefix: &str, b: usize, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..1000)
        .map(|i| format!("{prefix}{i}"))
        .filter(|mm| owner(db, mm, 2) == b)
        .take(n)
        .collect();
    assert_eq!(names.len(), n, "found too few names owned by backend {b}");
    names
}

/// Two measurements owned by each backend of a 2-backend circle.
fn four_measurements(db: &str, prefix: &str) -> Vec<String> {
    let mut all = owned(db, prefix, 0, 2);
    all.extend(owned(db, prefix, 1, 2));
    all
}

/// The body of request `req` in a test where every request has `per_req`
/// points spread round-robin over `mms`: point `i` has timestamp
/// `BASE_TS + req * per_req + i`. Returns (body, timestamps per measurement).
fn batch(mms: &[String], req: u64, per_req: u64) -> (String, BTreeMap<String, Vec<i64>>) {
    let mut body = String::with_capacity(per_req as usize * 48);
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for i in 0..per_req {
        let mm = &mms[(i as usize) % mms.len()];
        let ts = BASE_TS + (req * per_req + i) as i64;
        body.push_str(&format!("{mm},host=h v={req}i {ts}\n"));
        times.entry(mm.clone()).or_default().push(ts);
    }
    (body, times)
}

/// Timestamps per measurement of the given requests (see [`batch`]).
fn times_of(mms: &[String], reqs: &[u64], per_req: u64) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out: BTreeMap<String, BTreeSet<i64>> =
        mms.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for &r in reqs {
        for (mm, ts) in batch(mms, r, per_req).1 {
            out.entry(mm).or_default().extend(ts);
        }
    }
    out
}

/// Timestamps of every point of `mm` in `db` on `d`.
fn stored_times(d: &Influxd, db: &str, mm: &str) -> BTreeSet<i64> {
    let v = d.query(db, &format!("SELECT v FROM {}", quote_ident(mm)));
    let r = &v["results"][0];
    if let Some(err) = r["error"].as_str() {
        if err.contains("database not found") {
            return BTreeSet::new();
        }
        panic!("influxd {} SELECT v FROM {mm}: {err}", d.url());
    }
    assert!(
        r["partial"].is_null() || r["partial"] == false,
        "influxd {} truncated the answer for {mm}: {v}",
        d.url()
    );
    let mut out = BTreeSet::new();
    for series in r["series"].as_array().into_iter().flatten() {
        for row in series["values"].as_array().into_iter().flatten() {
            out.insert(row[0].as_i64().expect("epoch=ns time is an integer"));
        }
    }
    out
}

/// A `u64` counter of `/health` for backend `name`: `section`.`key`.
fn counter(proxy: &Proxy, name: &str, section: &str, key: &str) -> u64 {
    let b = proxy.backend_health(name);
    b[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("/health {name}.{section}.{key} is not a number: {b}"))
}

/// `records_waiting` of every backend, by name.
fn waiting(proxy: &Proxy) -> BTreeMap<String, u64> {
    let h = proxy.health();
    let mut out = BTreeMap::new();
    for c in h["circles"].as_array().into_iter().flatten() {
        for b in c["backends"].as_array().into_iter().flatten() {
            out.insert(
                b["name"].as_str().unwrap_or_default().to_string(),
                b["spool"]["records_waiting"].as_u64().unwrap_or(u64::MAX),
            );
        }
    }
    out
}

/// Waits until no backend has records waiting in its spool.
fn wait_drained(proxy: &Proxy, timeout: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut last = BTreeMap::new();
    while start.elapsed() < timeout {
        last = waiting(proxy);
        if last.values().all(|&n| n == 0) {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out after {timeout:?} waiting for every spool to drain ({what}); records_waiting: {last:?}\nhealth: {}",
        proxy.health()
    );
}

/// Up to 5 elements of a set, for messages.
fn some<T: std::fmt::Debug>(set: &BTreeSet<T>) -> Vec<&T> {
    set.iter().take(5).collect()
}

/// xorshift64*, seeded from the clock (the seed is printed to replay a run).
struct Rng(u64);

impl Rng {
    fn from_clock() -> Rng {
        let seed = (now_ns() as u64) | 1;
        eprintln!("random seed: {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Asserts that on every circle the owner of each measurement holds at
/// least the points of `acked` (a map measurement -> timestamps).
fn assert_acked_stored(
    cluster: &Cluster,
    db: &str,
    acked: &BTreeMap<String, BTreeSet<i64>>,
    what: &str,
) {
    for c in 0..2 {
        for (mm, want) in acked {
            let d = cluster.owner_of(c, db, mm);
            let got = stored_times(d, db, mm);
            let missing: BTreeSet<i64> = want.difference(&got).copied().collect();
            assert!(
                missing.is_empty(),
                "{what}: circle {} owner of {mm} ({}) lacks {} of {} acknowledged points (holds {}); first missing timestamps (offset from BASE_TS): {:?}",
                c + 1,
                d.url(),
                missing.len(),
                want.len(),
                got.len(),
                missing.iter().take(5).map(|t| t - BASE_TS).collect::<Vec<_>>()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 1. kill -9 under load.

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_point() {
    const PER_REQ: u64 = 200;
    const ROUNDS: usize = 5;
    const MAX_REQUESTS: u64 = 20_000;
    let db = "killnine";
    let mut cluster = Cluster::start(&[db], |_| {});
    let mms = four_measurements(db, "k");
    let url = format!("{}/write", cluster.proxy.url());

    // The client: one request after another, recording each outcome.
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, acks, mms) = (stop.clone(), acks.clone(), mms.clone());
        thread::spawn(move || {
            let agent = agent(Duration::from_secs(10));
            let start = Instant::now();
            let mut outcomes: Vec<(u64, Result<u16, String>)> = Vec::new();
            for req in 0..MAX_REQUESTS {
                if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(100) {
                    break;
                }
                let (body, _) = batch(&mms, req, PER_REQ);
                let r = try_http_post(&agent, &url, &[("db", db)], body.as_bytes());
                match &r {
                    Ok(resp) if resp.status == 204 => {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    // The proxy is down: do not spin while it restarts.
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
                outcomes.push((req, r.map(|resp| resp.status)));
            }
            outcomes
        })
    };

    let mut rng = Rng::from_clock();
    let mut delays = Vec::new();
    for round in 0..ROUNDS {
        // Load is flowing into this incarnation of the proxy...
        let before = acks.load(Ordering::Relaxed);
        wait_until(
            Duration::from_secs(20),
            &format!("round {round}: the client to get a 204 from the (re)started proxy"),
            || acks.load(Ordering::Relaxed) > before,
        );
        // ...and at a random moment of it, the proxy dies without warning.
        let delay = Duration::from_millis(50 + rng.below(351));
        delays.push(delay.as_millis());
        thread::sleep(delay);
        cluster.proxy.kill9();
        cluster.proxy.restart();
    }
    // Some load after the last restart too.
    let before = acks.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(20),
        "the client to get a 204 after the last restart",
        || acks.load(Ordering::Relaxed) > before,
    );
    stop.store(true, Ordering::Relaxed);
    let outcomes = client.join().expect("client thread panicked");

    let acked: Vec<u64> = outcomes
        .iter()
        .filter(|(_, r)| matches!(r, Ok(204)))
        .map(|(req, _)| *req)
        .collect();
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    let mut other: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, r) in &outcomes {
        if let Ok(s) = r {
            if *s != 204 {
                *other.entry(*s).or_default() += 1;
            }
        }
    }
    eprintln!(
        "kill -9 delays {delays:?} ms; {} requests: {} acknowledged ({} points), {failed} failed in transport, other statuses {other:?}",
        outcomes.len(),
        acked.len(),
        acked.len() as u64 * PER_REQ
    );

    let took = wait_drained(&cluster.proxy, DRAIN, "after five kill -9");
    eprintln!("spools drained {took:?} after the load stopped");
    let want = times_of(&mms, &acked, PER_REQ);
    assert_acked_stored(&cluster, db, &want, "after 5 x kill -9");
    cluster.proxy.assert_running();
}

// ---------------------------------------------------------------------------
// 2. A backend down under load.

#[test]
fn backend_down_under_load_gets_every_point_after_restart_with_bounded_rss() {
    /// The stated bound on the proxy's resident memory while a backend is
    /// down and its spool grows (debug build, 2 x 2 cluster).
    const RSS_BOUND_KIB: u64 = 64 * 1024;
    const REQUESTS: u64 = 100;
    const PER_REQ: u64 = 1000;
    let db = "outage";
    let mut cluster = Cluster::start(&[db], |_| {});
    let mms = four_measurements(db, "o");
    let pid = cluster.proxy.pid().expect("proxy pid");
    let idle_rss = vm_rss_kib(pid).expect("VmRSS of the proxy");

    cluster.influxds[0].stop();

    // Sample VmRSS every 10 ms: phase 1 = outage, phase 2 = catching up.
    let phase = Arc::new(AtomicU64::new(1));
    let sampler = {
        let phase = phase.clone();
        thread::spawn(move || {
            let mut max = [0u64; 3];
            let mut samples = [0u64; 3];
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(150) {
                let p = phase.load(Ordering::Relaxed) as usize;
                if p == 0 {
                    break;
                }
                if let Some(kib) = vm_rss_kib(pid) {
                    max[p] = max[p].max(kib);
                    samples[p] += 1;
                }
                thread::sleep(Duration::from_millis(10));
            }
            (max, samples)
        })
    };

    let t = Instant::now();
    for req in 0..REQUESTS {
        let (body, _) = batch(&mms, req, PER_REQ);
        let (status, text) = cluster.proxy.write(db, None, &body);
        assert_eq!(
            status, 204,
            "request {req} while influxdb-1-1 is down: body {text:?}"
        );
    }
    let wrote = t.elapsed();
    // Every request had points for influxdb-1-1: one record each, waiting.
    wait_for_eq(
        Duration::from_secs(5),
        "influxdb-1-1 to hold one spooled record per request",
        &REQUESTS,
        || counter(&cluster.proxy, "influxdb-1-1", "spool", "records_waiting"),
    );
    let bytes_waiting = counter(&cluster.proxy, "influxdb-1-1", "spool", "bytes_waiting");

    phase.store(2, Ordering::Relaxed);
    cluster.influxds[0].restart();
    let t = Instant::now();
    let per_mm = REQUESTS * PER_REQ / mms.len() as u64;
    for c in 0..2 {
        for mm in &mms {
            let d = cluster.owner_of(c, db, mm);
            wait_for_eq(
                DRAIN.saturating_sub(t.elapsed()),
                &format!("circle {} owner of {mm} to hold every point", c + 1),
                &per_mm,
                || d.count_v(db, mm),
            );
        }
    }
    let caught_up = t.elapsed();
    wait_drained(&cluster.proxy, DRAIN, "after influxdb-1-1 came back");
    phase.store(0, Ordering::Relaxed);
    let (max, samples) = sampler.join().expect("sampler thread panicked");
    eprintln!(
        "VmRSS: idle {idle_rss} KiB; max during the outage {} KiB ({} samples, {} points in {wrote:?}, {bytes_waiting} bytes spooled for influxdb-1-1); max while catching up {} KiB ({} samples, {caught_up:?}); bound {RSS_BOUND_KIB} KiB",
        max[1], samples[1], REQUESTS * PER_REQ, max[2], samples[2]
    );
    assert!(
        samples[1] > 0,
        "no VmRSS sample was taken during the outage"
    );
    assert!(
        max[1] <= RSS_BOUND_KIB,
        "proxy VmRSS during the outage reached {} KiB, over the bound of {RSS_BOUND_KIB} KiB",
        max[1]
    );
    assert!(
        max[2] <= RSS_BOUND_KIB,
        "proxy VmRSS while delivering the backlog reached {} KiB, over the bound of {RSS_BOUND_KIB} KiB",
        max[2]
    );
}

// ---------------------------------------------------------------------------
// 3. A full spool.

#[test]
fn full_spool_answers_503_and_loses_nothing_acknowledged() {
    const MAX_SIZE: u64 = 200_000;
    const PER_REQ: u64 = 100;
    let db = "fullspool";
    let mut cluster = Cluster::start(&[db], |c| {
        c["spool_max_size"] = MAX_SIZE.into();
    });
    let mms = four_measurements(db, "f");
    cluster.influxds[0].stop();

    let mut acked = Vec::new();
    let mut refused = Vec::new();
    let mut first_503 = None;
    for req in 0..2000u64 {
        let (body, _) = batch(&mms, req, PER_REQ);
        let (status, text) = cluster.proxy.write(db, None, &body);
        match status {
            204 => acked.push(req),
            503 => {
                refused.push(req);
                first_503 = Some(text);
                break;
            }
            s => panic!("request {req}: expected 204 or 503, got {s}: {text:?}"),
        }
    }
    let text = first_503.expect("no 503 after 2000 requests to a full spool");
    eprintln!(
        "{} requests acknowledged before the first 503: {text}",
        acked.len()
    );
    assert!(
        !acked.is_empty(),
        "the very first write was refused: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("503 body is not JSON ({e}): {text:?}"));
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("influxdb-1-1") && msg.contains("full"),
        "503 error should name the full backend influxdb-1-1 and say full: {text:?}"
    );
    // The spool stays full while the backend is down: more writes, more 503s.
    for req in acked.len() as u64 + 1..acked.len() as u64 + 4 {
        let (body, _) = batch(&mms, req, PER_REQ);
        let (status, text) = cluster.proxy.write(db, None, &body);
        assert_eq!(
            status, 503,
            "request {req} to a still-full spool: body {text:?}"
        );
        refused.push(req);
    }
    let refusals = counter(&cluster.proxy, "influxdb-1-1", "spool", "full_refusals");
    assert!(
        refusals >= refused.len() as u64,
        "full_refusals of influxdb-1-1 is {refusals}, expected at least {}",
        refused.len()
    );
    let bytes = counter(&cluster.proxy, "influxdb-1-1", "spool", "bytes_waiting");
    assert!(
        bytes <= MAX_SIZE,
        "bytes_waiting {bytes} of influxdb-1-1 exceeds spool_max_size {MAX_SIZE}"
    );

    cluster.influxds[0].restart();
    wait_drained(&cluster.proxy, DRAIN, "after influxdb-1-1 came back");
    // Exactly the acknowledged points, in both circles.
    let want = times_of(&mms, &acked, PER_REQ);
    for c in 0..2 {
        for (mm, want) in &want {
            let d = cluster.owner_of(c, db, mm);
            let got = stored_times(d, db, mm);
            let missing: BTreeSet<i64> = want.difference(&got).copied().collect();
            let extra: BTreeSet<i64> = got.difference(want).copied().collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "circle {} owner of {mm}: {} acknowledged points missing (e.g. {:?}), {} points of refused requests present (e.g. {:?})",
                c + 1,
                missing.len(),
                some(&missing),
                extra.len(),
                some(&extra)
            );
        }
    }
    // Nothing of a refused request anywhere.
    let refused_times = times_of(&mms, &refused, PER_REQ);
    for d in &cluster.influxds {
        for (mm, bad) in &refused_times {
            let got = stored_times(d, db, mm);
            let leaked: BTreeSet<i64> = got.intersection(bad).copied().collect();
            assert!(
                leaked.is_empty(),
                "{} holds {} points of requests answered 503 (measurement {mm})",
                d.url(),
                leaked.len()
            );
        }
    }
    // Room again once delivered.
    let (body, _) = batch(&mms, 5000, PER_REQ);
    let (status, text) = cluster.proxy.write(db, None, &body);
    assert_eq!(status, 204, "write after the spool drained: {text:?}");
}

// ---------------------------------------------------------------------------
// 4. data_dir not writable.

#[test]
fn unwritable_data_dir_exits_non_zero_with_a_clear_message() {
    let tmp = TempDir::new("datadir");
    let file = tmp.path().join("file");
    std::fs::write(&file, "a regular file, not a folder\n").expect("write file");
    let data_dir = file.join("spool");
    let mut config = config_for_urls(&[vec![refused_url()]]);
    config["listen_addr"] = json!(format!("127.0.0.1:{}", free_port()));
    config["data_dir"] = json!(data_dir.display().to_string());
    config["tlog_dir"] = json!(tmp.path().join("tlog").display().to_string());
    let config_path = tmp.path().join("proxy.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
        .expect("write config");

    let (code, out) = run_proxy_binary(
        &["-config", &config_path.display().to_string()],
        tmp.path(),
        Duration::from_secs(15),
    );
    let code = code.unwrap_or_else(|| {
        panic!("proxy with data_dir under a regular file kept running; output:\n{out}")
    });
    assert_ne!(
        code, 0,
        "proxy with data_dir under a regular file exited 0; output:\n{out}"
    );
    assert!(
        out.contains("data_dir") && out.contains(&data_dir.display().to_string()),
        "exit message should name `data_dir` and the path {}; output:\n{out}",
        data_dir.display()
    );
}

// ---------------------------------------------------------------------------
// 5. A damaged spool.

/// A record found in a segment file: its offset, total size and the
/// timestamps of its lines.
#[derive(Debug)]
struct SegRecord {
    at: usize,
    size: usize,
    times: Vec<i64>,
}

/// Walks the records of a segment (magic `IPR1`, LE length after the CRC
/// field) up to the first place without a magic.
fn seg_records(bytes: &[u8]) -> Vec<SegRecord> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() && &bytes[at..at + 4] == b"IPR1" {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let size = 12 + len;
        assert!(
            at + size <= bytes.len(),
            "record at {at} runs past the file"
        );
        let rec = &bytes[at..at + size];
        let d = u16::from_le_bytes([rec[26], rec[27]]) as usize;
        let r = u16::from_le_bytes([rec[28 + d], rec[29 + d]]) as usize;
        let payload = std::str::from_utf8(&rec[30 + d + r..]).expect("payload is UTF-8");
        let times = payload
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("line without timestamp in spool: {l:?}"))
            })
            .collect();
        out.push(SegRecord { at, size, times });
        at += size;
    }
    out
}

/// The `.seg` files of a spool folder, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

#[test]
fn damaged_spool_skips_only_damaged_records() {
    const REQUESTS: u64 = 30;
    const PER_REQ: u64 = 10;
    let db = "damage";
    let mut cluster = Cluster::start(&[db], |c| {
        c["spool_segment_size"] = 4096.into();
    });
    // One measurement owned by backend 0: each request is one record in the
    // spool of influxdb-1-1, which is down.
    let mm = owned(db, "d", 0, 1);
    cluster.influxds[0].stop();
    for req in 0..REQUESTS {
        let (body, _) = batch(&mm, req, PER_REQ);
        let (status, text) = cluster.proxy.write(db, None, &body);
        assert_eq!(status, 204, "request {req}: {text:?}");
    }
    wait_for_eq(
        Duration::from_secs(5),
        "influxdb-1-1 to hold one record per request",
        &REQUESTS,
        || counter(&cluster.proxy, "influxdb-1-1", "spool", "records_waiting"),
    );
    let status = cluster.proxy.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "proxy should exit 0 within 10 s of SIGTERM, got {status:?}; log:\n{}",
        file_tail(cluster.proxy.log_path(), 20)
    );

    // Damage: flip bytes in the middle of a middle record of the first
    // segment; cut the last segment holding records in its last record.
    let dir = cluster.proxy.spool_dir("influxdb-1-1");
    let with_records: Vec<(PathBuf, Vec<SegRecord>)> = segments(&dir)
        .into_iter()
        .map(|p| {
            let recs = seg_records(&std::fs::read(&p).expect("read segment"));
            (p, recs)
        })
        .filter(|(_, recs)| !recs.is_empty())
        .collect();
    let total: usize = with_records.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(
        total as u64,
        REQUESTS,
        "records found in the segments of {}",
        dir.display()
    );
    assert!(
        with_records.len() >= 3 && with_records[0].1.len() >= 3,
        "expected at least 3 segments with 3+ records in the first; got {:?}",
        with_records
            .iter()
            .map(|(p, r)| (p.file_name().unwrap().to_owned(), r.len()))
            .collect::<Vec<_>>()
    );
    let (first_path, first_recs) = &with_records[0];
    let flipped = &first_recs[first_recs.len() / 2];
    let mut bytes = std::fs::read(first_path).expect("read segment");
    let mid = flipped.at + flipped.size / 2;
    for b in &mut bytes[mid..mid + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(first_path, &bytes).expect("write damaged segment");
    let (last_path, last_recs) = with_records.last().unwrap();
    let cut = last_recs.last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last_path)
        .and_then(|f| f.set_len((cut.at + cut.size / 2) as u64))
        .expect("cut the last segment");
    let lost: BTreeSet<i64> = flipped.times.iter().chain(&cut.times).copied().collect();
    let all: BTreeSet<i64> = times_of(&mm, &(0..REQUESTS).collect::<Vec<_>>(), PER_REQ)
        .remove(&mm[0])
        .unwrap();
    let want: BTreeSet<i64> = all.difference(&lost).copied().collect();

    cluster.influxds[0].restart();
    cluster.proxy.restart();
    let d = &cluster.influxds[0];
    wait_for_eq(
        DRAIN,
        "influxdb-1-1 to hold every point but those of the 2 damaged records",
        &want,
        || stored_times(d, db, &mm[0]),
    );
    wait_drained(
        &cluster.proxy,
        DRAIN,
        "after the damaged spool was replayed",
    );
    cluster.proxy.assert_running();
    let corrupt = counter(&cluster.proxy, "influxdb-1-1", "spool", "corrupt_records");
    let log = cluster.proxy.log();
    let damaged: Vec<&str> = log.lines().filter(|l| l.contains("damaged")).collect();
    assert_eq!(
        corrupt,
        2,
        "corrupt_records of influxdb-1-1 (1 record with flipped bytes, 1 cut); the log has {} lines about damage, first ones:\n{}",
        damaged.len(),
        damaged[..damaged.len().min(4)].join("\n")
    );
    assert!(
        log.contains("damaged record"),
        "the proxy log should mention the damaged records:\n{}",
        file_tail(cluster.proxy.log_path(), 30)
    );
    assert!(
        !log.contains("panicked"),
        "the proxy panicked:\n{}",
        file_tail(cluster.proxy.log_path(), 30)
    );
    // Circle 2 was up all along and has everything.
    let d2 = cluster.owner_of(1, db, &mm[0]);
    assert_eq!(
        stored_times(d2, db, &mm[0]),
        all,
        "circle 2 owner of {} should hold every point",
        mm[0]
    );
}

// ---------------------------------------------------------------------------
// 6. The Go proxy's queue.

/// One record of the Go proxy's `.dat`: u32 BE length, then
/// `QueryEscape(db) + " " + QueryEscape(rp) + " " + gzip(lines)`.
fn go_record(db: &str, rp: &str, lines: &str) -> Vec<u8> {
    let mut body = format!("{db} {rp} ").into_bytes();
    body.extend(gzip(lines.as_bytes()));
    let mut rec = (body.len() as u32).to_be_bytes().to_vec();
    rec.extend(body);
    rec
}

fn go_lines(mm: &str, n: i64, from: i64) -> String {
    (0..n)
        .map(|i| format!("{mm},src=go v={i}i {}\n", BASE_TS + from + i))
        .collect()
}

#[test]
fn go_queue_files_are_imported_and_delivered_exactly_once() {
    let db = "goqueue";
    let name = "influxdb-1-1";
    let mms = owned(db, "g", 0, 4);
    let (old, a, b, sentinel) = (&mms[0], &mms[1], &mms[2], &mms[3]);
    let data = TempDir::new("goqueue");
    let first = go_record(db, "", &go_lines(old, 5, 0));
    let mut dat = first.clone();
    dat.extend(go_record(db, "autogen", &go_lines(a, 10, 100)));
    dat.extend(go_record(db, "", &go_lines(b, 7, 200)));
    std::fs::write(data.path().join(format!("{name}.dat")), &dat).expect("write .dat");
    std::fs::write(
        data.path().join(format!("{name}.rec")),
        (first.len() as i64).to_be_bytes(),
    )
    .expect("write .rec");

    let data_dir = data.path().display().to_string();
    let mut cluster = Cluster::start(&[db], |c| {
        c["data_dir"] = json!(data_dir);
    });
    let d = &cluster.influxds[0];
    for (mm, n) in [(a, 10), (b, 7)] {
        wait_for_eq(
            DRAIN,
            &format!("{name} to hold the {n} imported points of {mm}"),
            &n,
            || d.count_v(db, mm),
        );
    }
    wait_drained(&cluster.proxy, DRAIN, "after the import");
    assert_eq!(
        counter(&cluster.proxy, name, "points", "delivered"),
        17,
        "points delivered to {name}: the 2 records after the committed offset, once"
    );
    assert_eq!(
        d.count_v(db, old),
        0,
        "the record before the .rec offset ({old}) was delivered already by the Go proxy"
    );
    for other in &cluster.influxds[1..] {
        for mm in [old, a, b] {
            assert_eq!(
                other.count_v(db, mm),
                0,
                "{} got {mm}, queued only for {name}",
                other.url()
            );
        }
    }
    for f in ["dat", "rec"] {
        let p = data.path().join(format!("{name}.{f}"));
        assert!(
            !p.exists(),
            "{} should be renamed after the import",
            p.display()
        );
        let p = data.path().join(format!("{name}.{f}.imported"));
        assert!(p.exists(), "{} should exist after the import", p.display());
    }

    // Restart: nothing imported again, nothing delivered again. A new point
    // behind anything that could be replayed proves the spool was read.
    let status = cluster.proxy.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "proxy should exit 0 on SIGTERM: {status:?}"
    );
    cluster.proxy.restart();
    let (status, text) = cluster.proxy.write(
        db,
        None,
        &format!("{sentinel},src=test v=1i {}\n", BASE_TS + 999),
    );
    assert_eq!(status, 204, "sentinel write: {text:?}");
    let d = &cluster.influxds[0];
    wait_for_eq(DRAIN, "the sentinel point on influxdb-1-1", &1, || {
        d.count_v(db, sentinel)
    });
    // The counter moves once the sender has the backend's answer, a moment
    // after influxd has the point: read it once the spool is drained.
    wait_drained(&cluster.proxy, DRAIN, "after the restart");
    assert_eq!(
        counter(&cluster.proxy, name, "points", "delivered"),
        1,
        "points delivered to {name} after the restart: only the sentinel"
    );
    for (mm, n) in [(a, 10), (b, 7), (old, 0)] {
        assert_eq!(
            d.count_v(db, mm),
            n,
            "points of {mm} on {name} after the restart"
        );
    }
}

// ---------------------------------------------------------------------------
// 7. "database not found".

#[test]
fn database_missing_on_one_backend_is_created_and_points_arrive() {
    let db = "halfmissing";
    let mm = "dm";
    let o = owner(db, mm, 2);
    // The database exists everywhere except on circle 1's owner of `mm`.
    let influxds = Influxd::start_many(4);
    for (i, d) in influxds.iter().enumerate() {
        if i != o {
            d.create_db(db);
        }
    }
    let mut config = two_by_two_config(&influxds);
    config["rewrite_interval"] = json!(0.5);
    let proxy = Proxy::start(config);
    let mut cluster = Cluster { influxds, proxy };
    let body: String = (0..20)
        .map(|i| format!("{mm},host=h v={i}i {}\n", BASE_TS + i))
        .collect();
    let (status, text) = cluster.proxy.write(db, None, &body);
    assert_eq!(status, 204, "write: {text:?}");
    cluster.wait_in_every_circle(DRAIN, db, mm, 20);
    let name = backend_name(0, o);
    assert_eq!(
        counter(&cluster.proxy, &name, "spool", "parked_records"),
        0,
        "{name} should have created the database, not parked"
    );

    // A database that exists nowhere is refused as influxd refuses it.
    let nowhere = "nowhere";
    let lines: Vec<String> = (0..5)
        .map(|i| format!("{mm},host=h v={i}i {}", BASE_TS + 100 + i))
        .collect();
    let body = lines.join("\n") + "\n";
    let (status, text) = cluster.proxy.write(nowhere, None, &body);
    assert_eq!(status, 404, "write to {nowhere}: {text:?}");
    // Taken while no backend could say (all down), it is parked once they
    // are back: visible, kept in parked.lp.
    for d in cluster.influxds.iter_mut() {
        d.stop();
    }
    let (status, text) = cluster.proxy.write(nowhere, None, &body);
    assert_eq!(
        status, 204,
        "write to {nowhere} with every backend down: {text:?}"
    );
    for d in cluster.influxds.iter_mut() {
        d.restart();
    }
    for c in 0..2 {
        let name = backend_name(c, o);
        wait_until(
            DRAIN,
            &format!("{name} to report parked_records > 0"),
            || counter(&cluster.proxy, &name, "spool", "parked_records") > 0,
        );
        let parked = cluster.proxy.spool_dir(&name).join("parked.lp");
        let text = std::fs::read_to_string(&parked)
            .unwrap_or_else(|e| panic!("read {}: {e}", parked.display()));
        for l in &lines {
            assert!(
                text.lines().any(|x| x == l),
                "{} lacks the line {l:?}; it holds:\n{text}",
                parked.display()
            );
        }
        assert_eq!(
            counter(&cluster.proxy, &name, "points", "parked"),
            5,
            "points.parked of {name}"
        );
    }
    for d in &cluster.influxds {
        let v = d.query("", "SHOW DATABASES");
        assert!(
            !v.to_string().contains(nowhere),
            "{} got database {nowhere}, which exists on no backend: {v}",
            d.url()
        );
    }
}

// ---------------------------------------------------------------------------
// 8. A batch a backend refuses forever.

#[test]
fn backend_500_forever_for_one_batch_goes_to_dead_letter_and_later_batches_arrive() {
    let db = "poisoned";
    let fake = FakeBackend::start(Fault::RejectContaining("poison"));
    let real = Influxd::start();
    real.create_db(db);
    // Circle 1: the fake backend alone; circle 2: a real influxd alone.
    let mut config = config_for_urls(&[vec![fake.url()], vec![real.url()]]);
    config["rewrite_interval"] = json!(0.2);
    let proxy = Proxy::start(config);

    let poison: Vec<String> = (0..3)
        .map(|i| format!("poison,host=h v={i}i {}", BASE_TS + i))
        .collect();
    let (status, text) = proxy.write(db, None, &(poison.join("\n") + "\n"));
    assert_eq!(status, 204, "poison write: {text:?}");
    let decoded = |r: &Recorded| -> String {
        let gzipped = r
            .headers
            .get("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let body = if gzipped {
            gunzip(&r.body, "fake backend /write")
        } else {
            r.body.clone()
        };
        String::from_utf8_lossy(&body).into_owned()
    };
    wait_until(
        Duration::from_secs(10),
        "the fake backend to answer 500 to the poison batch",
        || {
            fake.recorded()
                .iter()
                .any(|r| r.status == 500 && decoded(r).contains("poison"))
        },
    );

    // Later batches, one request each.
    let mut normal = Vec::new();
    for k in 0..5i64 {
        let lines: Vec<String> = (0..10)
            .map(|i| format!("normal,host=h v={k}i {}", BASE_TS + 1000 + k * 10 + i))
            .collect();
        let (status, text) = proxy.write(db, None, &(lines.join("\n") + "\n"));
        assert_eq!(status, 204, "normal write {k}: {text:?}");
        normal.extend(lines);
    }

    // Every later line reaches the fake backend in a request it took.
    let took = || -> BTreeSet<String> {
        fake.recorded()
            .iter()
            .filter(|r| r.path() == "/write" && r.status == 204)
            .flat_map(|r| decoded(r).lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let start = Instant::now();
    let mut got = took();
    while !normal.iter().all(|l| got.contains(l)) && start.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(50));
        got = took();
    }
    let missing: Vec<&String> = normal.iter().filter(|l| !got.contains(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} later lines never reached the fake backend in a 204-answered request within 20 s (e.g. {:?}); requests seen, (path, status, lines) -> how many: {:?}; health: {}",
        missing.len(),
        normal.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        fake.recorded()
            .iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry((r.path().to_string(), r.status, decoded(r).lines().count()))
                    .or_insert(0) += 1;
                m
            }),
        proxy.backend_health("influxdb-1-1")
    );

    // The poison batch is in the dead-letter file, and only it.
    let file = proxy.spool_dir("influxdb-1-1").join("deadletter.lp");
    wait_until(
        Duration::from_secs(10),
        "dead_letter_records of influxdb-1-1 >= 1",
        || counter(&proxy, "influxdb-1-1", "spool", "dead_letter_records") >= 1,
    );
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    for l in &poison {
        assert!(
            text.lines().any(|x| x == l),
            "{} lacks the poison line {l:?}; it holds:\n{text}",
            file.display()
        );
    }
    let wrongly: Vec<&String> = normal
        .iter()
        .filter(|l| text.lines().any(|x| x == l.as_str()))
        .collect();
    assert!(
        wrongly.is_empty(),
        "{} later lines were dead-lettered with the poison batch (e.g. {:?})",
        wrongly.len(),
        wrongly.iter().take(3).collect::<Vec<_>>()
    );
    // Circle 2 took everything.
    wait_for_eq(
        DRAIN,
        "the real influxd of circle 2 to hold the poison and later points",
        &(3, 50),
        || (real.count_v(db, "poison"), real.count_v(db, "normal")),
    );
}

// ---------------------------------------------------------------------------
// 6. A full disk, admission under concurrency, one proxy per data_dir.

/// A tmpfs of a few MB mounted on a fresh folder, unmounted when dropped
/// (before its folder is removed).
struct SmallDisk {
    at: PathBuf,
    _dir: TempDir,
}

impl SmallDisk {
    /// `None`, said on stderr, when this user may not mount (CI runs as
    /// root, so the test runs there).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = TempDir::new("smalldisk");
        let at = dir.path().join("fs");
        std::fs::create_dir_all(&at).expect("create mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { at, _dir: dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: `mount -t tmpfs` refused ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run `mount`: {e}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a proxy still holding a file does not keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// `n` points of measurement `m` for request `req`, each with a `pad` of
/// `pad` bytes; timestamps `BASE_TS + req * 1000 + j`.
fn padded_batch(req: u64, n: u64, pad: usize) -> String {
    let pad = "x".repeat(pad);
    (0..n)
        .map(|j| {
            format!(
                "m,req={req} v={j}i,pad=\"{pad}\" {}\n",
                BASE_TS + (req * 1000 + j) as i64
            )
        })
        .collect()
}

/// Requests as (request number, points).
type Requests = Vec<(u64, u64)>;

fn padded_times(reqs: &[(u64, u64)]) -> BTreeSet<i64> {
    reqs.iter()
        .flat_map(|&(req, n)| (0..n).map(move |j| BASE_TS + (req * 1000 + j) as i64))
        .collect()
}

/// Writes requests of `PER_REQ` points from `*next` on until `stop_after`
/// 503s in a row; returns (acknowledged, refused) as (request, points) and
/// the last 503 body. Bounded by count and time.
fn write_until_refused(
    proxy: &mut Proxy,
    db: &str,
    next: &mut u64,
    stop_after: usize,
) -> (Requests, Requests, String) {
    const PER_REQ: u64 = 100;
    let (mut acked, mut refused, mut last) = (Vec::new(), Vec::new(), String::new());
    let start = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < stop_after {
        assert!(
            *next < 100_000 && start.elapsed() < Duration::from_secs(180),
            "no {stop_after} 503s in a row after {} requests; acknowledged {}",
            *next,
            acked.len()
        );
        let req = *next;
        *next += 1;
        let resp = try_http_post(
            &agent(Duration::from_secs(30)),
            &format!("{}/write", proxy.url()),
            &[("db", db)],
            padded_batch(req, PER_REQ, 200).as_bytes(),
        );
        match resp {
            Ok(r) if r.status == 204 => {
                acked.push((req, PER_REQ));
                in_a_row = 0;
            }
            Ok(r) if r.status == 503 => {
                refused.push((req, PER_REQ));
                last = r.body;
                in_a_row += 1;
            }
            Ok(r) => panic!(
                "request {req}: expected 204 or 503, got {}: {}",
                r.status, r.body
            ),
            Err(e) => {
                proxy.assert_running();
                panic!("request {req}: no answer from a running proxy: {e}");
            }
        }
    }
    (acked, refused, last)
}

#[test]
fn full_disk_answers_503_naming_the_cause_and_delivers_every_acknowledged_point() {
    let Some(disk) = SmallDisk::mount("16m") else {
        return;
    };
    let db = "fulldisk";
    let mut influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(db);
    }
    let mut config = config_for_urls(&[vec![influxds[0].url()], vec![influxds[1].url()]]);
    config["data_dir"] = json!(disk.at.join("spool").display().to_string());
    let mut proxy = Proxy::start(config);
    for d in &mut influxds {
        d.stop();
    }

    // Both backends down: fill the disk until every write is refused.
    let mut next = 0;
    let (mut acked, mut refused, text) = write_until_refused(&mut proxy, db, &mut next, 5);
    eprintln!("{} requests acknowledged, then 503: {text}", acked.len());
    assert!(!acked.is_empty(), "the first write was refused: {text}");
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("503 body is not JSON ({e}): {text:?}"));
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no space left on device")
            && msg.contains("influxdb-")
            && msg.contains(&disk.at.display().to_string()),
        "503 should name the backend, the cause and the folder: {text:?}"
    );
    proxy.assert_running();

    // A restart on the full disk: the proxy starts and answers again.
    proxy.terminate(Duration::from_secs(10));
    proxy.restart();
    let (more_acked, more_refused, text) = write_until_refused(&mut proxy, db, &mut next, 3);
    eprintln!(
        "after a restart on the full disk: {} more acknowledged, then 503: {text}",
        more_acked.len()
    );
    assert!(text.contains("no space left on device"), "{text}");
    acked.extend(more_acked);
    refused.extend(more_refused);
    proxy.assert_running();

    // The backends come back: every acknowledged point arrives, nothing of
    // a refused request, and writes are taken again.
    for d in &mut influxds {
        d.restart();
    }
    wait_drained(&proxy, DRAIN, "after both backends came back");
    let want = padded_times(&acked);
    let bad = padded_times(&refused);
    for d in &influxds {
        let got = stored_times(d, db, "m");
        let missing: BTreeSet<i64> = want.difference(&got).copied().collect();
        let leaked: BTreeSet<i64> = got.intersection(&bad).copied().collect();
        assert!(
            missing.is_empty() && leaked.is_empty(),
            "{}: {} acknowledged points missing (e.g. {:?}), {} points of refused requests present (e.g. {:?})",
            d.url(),
            missing.len(),
            some(&missing),
            leaked.len(),
            some(&leaked)
        );
    }
    let (status, text) = proxy.write(db, None, &padded_batch(next, 10, 10));
    assert_eq!(status, 204, "write after the spools drained: {text}");
    proxy.kill9();
}

/// Writes `PER_THREAD` requests from each of `THREADS` threads at once,
/// with request numbers from `first`: (request, points, status).
fn concurrent_small_writes(proxy: &Proxy, db: &str, first: u64) -> Vec<(u64, u64, u16)> {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 80;
    let outcomes = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let outcomes = &outcomes;
            s.spawn(move || {
                let client = agent(Duration::from_secs(30));
                let mut rng = Rng(now_ns() as u64 | 1 | t << 40);
                for i in 0..PER_THREAD {
                    if start.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    let req = first + t * PER_THREAD + i;
                    // Small requests of finely varied sizes: the last bytes
                    // of the spool are fought over, header bytes included.
                    let n = 1 + rng.below(3);
                    let body = padded_batch(req, n, rng.below(60) as usize);
                    let status = try_http_post(
                        &client,
                        &format!("{}/write", proxy.url()),
                        &[("db", db)],
                        body.as_bytes(),
                    )
                    .map(|r| r.status)
                    .unwrap_or(0);
                    outcomes.lock().unwrap().push((req, n, status));
                }
            });
        }
    });
    outcomes.into_inner().unwrap()
}

#[test]
fn concurrent_writes_answered_503_leave_no_point_in_any_circle() {
    let db = "admission";
    let mut down = Influxd::start();
    let live = Influxd::start();
    for d in [&down, &live] {
        d.create_db(db);
    }
    // Circle 1's only backend is down: its spool fills to spool_max_size
    // while circle 2 takes everything and delivers as it goes.
    let mut config = config_for_urls(&[vec![down.url()], vec![live.url()]]);
    config["spool_max_size"] = json!(60_000);
    config["worker_threads"] = json!(8);
    config["flush_size"] = json!(10);
    let proxy = Proxy::start(config);
    down.stop();
    // A few rounds, each filling circle 1's spool then draining it: each
    // fill is a new fight over its last bytes.
    let mut outcomes = Vec::new();
    for round in 0..3 {
        outcomes.extend(concurrent_small_writes(&proxy, db, round * 10_000));
        down.restart();
        wait_drained(&proxy, DRAIN, "after the circle 1 backend came back");
        down.stop();
    }
    let pick = |want: fn(u16) -> bool| -> Requests {
        outcomes
            .iter()
            .filter(|o| want(o.2))
            .map(|o| (o.0, o.1))
            .collect()
    };
    let (acked, refused) = (pick(|s| s == 204), pick(|s| s == 503));
    let other: Vec<_> = outcomes
        .iter()
        .filter(|o| o.2 != 204 && o.2 != 503)
        .collect();
    eprintln!(
        "{} requests: {} answered 204, {} answered 503",
        outcomes.len(),
        acked.len(),
        refused.len()
    );
    assert!(other.is_empty(), "statuses other than 204/503: {other:?}");
    assert!(
        !acked.is_empty() && !refused.is_empty(),
        "the spool never filled (or never took a write): tune the sizes"
    );
    down.restart();
    let (want, bad) = (padded_times(&acked), padded_times(&refused));
    for (c, d) in [&down, &live].into_iter().enumerate() {
        let got = stored_times(d, db, "m");
        let missing: BTreeSet<i64> = want.difference(&got).copied().collect();
        let leaked: BTreeSet<i64> = got.intersection(&bad).copied().collect();
        let half_stored: BTreeSet<i64> = leaked.iter().map(|t| (t - BASE_TS) / 1000).collect();
        assert!(
            leaked.is_empty(),
            "circle {} holds {} points of {} requests answered 503 (e.g. requests {:?}): a 503 must mean nothing was written",
            c + 1,
            leaked.len(),
            half_stored.len(),
            some(&half_stored)
        );
        assert!(
            missing.is_empty(),
            "circle {} lacks {} acknowledged points (e.g. {:?})",
            c + 1,
            missing.len(),
            some(&missing)
        );
    }
}

#[test]
fn a_second_proxy_on_the_same_data_dir_refuses_to_start_naming_the_first() {
    let mut first = Proxy::start(config_for_urls(&[vec![refused_url()]]));
    let pid = first.pid().expect("first proxy pid");
    let tmp = TempDir::new("second");
    let mut config = config_for_urls(&[vec![refused_url()]]);
    config["listen_addr"] = json!(format!("127.0.0.1:{}", free_port()));
    config["data_dir"] = json!(first.data_dir().display().to_string());
    config["tlog_dir"] = json!(tmp.path().join("tlog").display().to_string());
    let config_path = tmp.path().join("proxy.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
        .expect("write config");
    let args = ["-config", &config_path.display().to_string()];
    let (code, out) = run_proxy_binary(&args, tmp.path(), Duration::from_secs(15));
    let code = code.unwrap_or_else(|| {
        panic!("a second proxy on the data_dir of a running one kept running; output:\n{out}")
    });
    assert_ne!(code, 0, "second proxy exited 0; output:\n{out}");
    assert!(
        out.contains(&format!("pid {pid}")) && out.contains("data_dir"),
        "the refusal should name `data_dir` and the first proxy's pid {pid}; output:\n{out}"
    );
    first.assert_running();
    // Killed without a chance to clean up: the kernel released the lock.
    first.kill9();
    config.as_object_mut().unwrap().remove("listen_addr");
    let mut second = Proxy::start(config);
    second.assert_running();
}
