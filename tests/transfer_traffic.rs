//! Live traffic while a transfer fills a circle: reads stay whole, writes
//! are acknowledged and land on their owners, `/health` says transferring.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use influx_proxy::cluster::{Backend, Cluster};
use influx_proxy::config::{BackendConfig, Config};
use influx_proxy::query::forward::QueryClient;
use serde_json::Value;

const DB: &str = "tt";
const MEASUREMENTS: usize = 10;
const POINTS: usize = 3000;
/// Points acknowledged this long before a query must be in its answer
/// (flush_time 1 s, plus the load of a shared machine).
const DELIVERY: Duration = Duration::from_secs(4);

fn backend_config(url: &str) -> BackendConfig {
    BackendConfig {
        name: "removed".into(),
        url: url.into(),
        username: String::new(),
        password: String::new(),
        auth_encrypt: false,
        write_only: false,
    }
}

/// `v` values of `mm` with tag `src` through the proxy (raw points).
fn proxy_values(proxy: &Proxy, mm: &str, src: &str) -> Result<Vec<i64>, String> {
    let q = format!("SELECT v FROM {} WHERE src = '{src}'", quote_ident(mm));
    let r = http_get(
        &format!("{}/query", proxy.url()),
        &[("db", DB), ("q", &q), ("epoch", "ns")],
    );
    if r.status != 200 {
        return Err(format!("{q}: {} {}", r.status, r.body));
    }
    values_of(&r.json()).ok_or_else(|| format!("{q}: {}", r.body))
}

/// The `v` column of a one-statement answer (none: empty).
fn values_of(answer: &Value) -> Option<Vec<i64>> {
    let result = &answer["results"][0];
    if result.get("error").is_some() {
        return None;
    }
    let mut out = Vec::new();
    for s in result["series"].as_array().into_iter().flatten() {
        for row in s["values"].as_array()? {
            out.push(row[1].as_f64()? as i64);
        }
    }
    Some(out)
}

#[test]
fn a_backend_removed_from_its_circle_is_still_queried() {
    // The cluster knows i1 as backend 0; the removed backend is i0, with an
    // id the query client has no origin for, or with i1's id.
    let influxds = Influxd::start_many(2);
    influxds[0].create_db(DB);
    let w = influxds[0].write(DB, Some("s"), b"m,src=pre v=7 1\n");
    assert_eq!(w.status, 204, "{}", w.body);
    let cfg = Config::from_json(&config_for_urls(&[vec![influxds[1].url()]]).to_string())
        .expect("config")
        .0;
    let cluster = Cluster::new(&cfg);
    let client = QueryClient::new(Duration::from_secs(5), &cluster.backends);
    for id in [5, 0] {
        let removed = Backend::new(id, 0, &backend_config(&influxds[0].url()));
        let answer = client
            .json(&removed, false, &[("db", DB), ("q", "SELECT v FROM m")])
            .unwrap_or_else(|e| panic!("removed backend with id {id}: {e}"));
        assert_eq!(values_of(&answer), Some(vec![7]), "id {id}: {answer}");
    }
}

/// `/transfer/state`: (circle 0 transferring, operation state).
fn transfer_state(proxy: &Proxy) -> (bool, String) {
    let v = proxy.get_resp("/transfer/state").json();
    (
        v["circles"][0]["transferring"].as_bool().unwrap_or(false),
        v["operation"]["state"].as_str().unwrap_or("").to_string(),
    )
}

/// Acknowledged load points: per measurement, `v` -> when acknowledged.
type Acked = Arc<Mutex<Vec<BTreeMap<i64, Instant>>>>;

/// Writes one point per measurement per request until `stop`, recording
/// what the proxy acknowledged; returns the number of refused requests.
fn load_writer(proxy_url: String, stop: Arc<AtomicBool>, acked: Acked) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let base = now_ns();
        let started = Instant::now();
        let mut refused = 0;
        for seq in 0..100_000i64 {
            if stop.load(Ordering::Acquire) || started.elapsed() > Duration::from_secs(300) {
                break;
            }
            let body: String = (0..MEASUREMENTS)
                .map(|k| format!("m{k},src=load v={seq} {}\n", base + seq))
                .collect();
            let r = http_post(
                &format!("{proxy_url}/write"),
                &[("db", DB)],
                &[],
                body.as_bytes(),
            );
            if r.status == 204 {
                let at = Instant::now();
                let mut acked = acked.lock().unwrap();
                for per in acked.iter_mut() {
                    per.insert(seq, at);
                }
            } else {
                refused += 1;
            }
            thread::sleep(Duration::from_millis(20));
        }
        refused
    })
}

/// HTTP contract of issue 13 (`/rebalance`, `/transfer/state`): fails with
/// a 404 until the transfer endpoints exist.
#[test]
fn rebalance_add_keeps_every_query_whole_and_every_write_on_its_owner() {
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(DB);
    }
    // One circle of one backend holds everything.
    for k in 0..MEASUREMENTS {
        let body: String = (0..POINTS)
            .map(|i| format!("m{k},src=pre v={i} {}\n", 1_600_000_000 + i))
            .collect();
        let w = influxds[0].write(DB, Some("s"), body.as_bytes());
        assert_eq!(w.status, 204, "{}", w.body);
    }
    // The circle gets a second backend: half the measurements now belong
    // to it, and only a transfer brings them there.
    let proxy = Proxy::start(config_for_urls(&[vec![
        influxds[0].url(),
        influxds[1].url(),
    ]]));
    let acked: Acked = Arc::new(Mutex::new(vec![BTreeMap::new(); MEASUREMENTS]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load_writer(proxy.url(), Arc::clone(&stop), Arc::clone(&acked));
    // Let some writes land before the transfer begins.
    wait_until(Duration::from_secs(30), "first acknowledged writes", || {
        acked.lock().unwrap()[0].len() >= 20
    });

    let r = http_post(
        &format!("{}/rebalance", proxy.url()),
        &[
            ("circle_id", "0"),
            ("operation", "add"),
            ("worker", "1"),
            ("batch", "200"),
        ],
        &[],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (202, "accepted\n"));

    let deadline = Instant::now() + Duration::from_secs(240);
    let mut health_checked = 0;
    let mut rounds = 0;
    loop {
        assert!(Instant::now() < deadline, "rebalance not done within 240 s");
        rounds += 1;
        let (before, state) = transfer_state(&proxy);
        if !before && state == "done" {
            break;
        }
        assert_ne!(
            state,
            "failed",
            "{}",
            proxy
                .get_resp("/transfer/stats?circle_id=0&type=rebalance")
                .body
        );
        // The flag is set once and cleared once: seen on both sides of the
        // /health read, /health must show it.
        let health = proxy.health();
        if before && transfer_state(&proxy).0 {
            health_checked += 1;
            let circle = &health["circles"][0];
            assert_eq!(circle["circle"]["transferring"], true, "{health}");
            assert_eq!(circle["circle"]["write_only"], true, "{health}");
            for b in circle["backends"].as_array().unwrap() {
                assert_eq!(b["transferring"], true, "{health}");
            }
        }
        // Every measurement answers all its points: the old ones, and the
        // new ones acknowledged long enough ago.
        for k in 0..MEASUREMENTS {
            let mm = format!("m{k}");
            let asked = Instant::now();
            let pre = proxy_values(&proxy, &mm, "pre").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                pre.len(),
                POINTS,
                "{mm}: old points answered during the rebalance (round {rounds})"
            );
            let load: BTreeSet<i64> = proxy_values(&proxy, &mm, "load")
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .collect();
            let acked = acked.lock().unwrap();
            let missing: Vec<i64> = acked[k]
                .iter()
                .filter(|(v, at)| **at + DELIVERY < asked && !load.contains(v))
                .map(|(v, _)| *v)
                .collect();
            assert!(
                missing.is_empty(),
                "{mm}: acknowledged points not answered: {missing:?}"
            );
        }
    }
    assert!(health_checked > 0, "never saw the rebalance running");
    stop.store(true, Ordering::Release);
    let refused = writer.join().expect("writer thread");
    assert_eq!(refused, 0, "writes refused during the rebalance");

    // Afterwards every point is on its owner under the new ring.
    let acked = acked.lock().unwrap();
    for k in 0..MEASUREMENTS {
        let mm = format!("m{k}");
        let owner = &influxds[owner(DB, &mm, 2)];
        let want: BTreeSet<i64> = acked[k].keys().copied().collect();
        wait_for_eq(
            Duration::from_secs(30),
            &format!("{mm} on its owner"),
            &want,
            || {
                let q = format!("SELECT v FROM {mm} WHERE src = 'load'");
                let got: BTreeSet<i64> = values_of(&owner.query(DB, &q))
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                // Points whose acknowledgement was lost may be there too.
                got.intersection(&want).copied().collect()
            },
        );
        let stored = owner.count_v(DB, &mm) as usize;
        assert!(
            stored >= POINTS + want.len(),
            "{mm}: {stored} points on its owner"
        );
        let pre = proxy_values(&proxy, &mm, "pre").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pre.len(),
            POINTS,
            "{mm} through the proxy after the rebalance"
        );
    }
}
