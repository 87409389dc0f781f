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
use influx_proxy::query::endpoint::QueryService;
use influx_proxy::query::forward::QueryClient;
use influx_proxy::server::http::{Headers, Request};
use influx_proxy::url::Params;
use influx_proxy::write::endpoint::{WriteScratch, WriteService};
use influx_proxy::writer::{WriterSettings, Writers};
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

/// The proxy's write and query services in this process, over a cluster
/// whose moves the test sets itself (no HTTP endpoint for them yet).
struct InProcess {
    cluster: Arc<Cluster>,
    write: WriteService,
    scratch: WriteScratch,
    query: QueryService,
    _dir: TempDir,
}

impl InProcess {
    fn start(urls: &[String]) -> InProcess {
        let dir = TempDir::new("transfer-traffic");
        let mut cfg = Config::from_json(&config_for_urls(&[urls.to_vec()]).to_string())
            .expect("config")
            .0;
        cfg.data_dir = dir.path().join("data");
        let cluster = Arc::new(Cluster::new(&cfg));
        let writers = Writers::start(&cluster, &WriterSettings::from_config(&cfg), &cfg.data_dir)
            .expect("writers");
        InProcess {
            write: WriteService::new(&cfg, Arc::clone(&cluster), writers),
            scratch: WriteScratch::new(Arc::clone(&cluster)),
            query: QueryService::new(&cfg, Arc::clone(&cluster)),
            cluster,
            _dir: dir,
        }
    }

    /// `POST /write?db=tt&precision=s`: the status.
    fn write(&mut self, lines: &str) -> u16 {
        let mut body = lines.as_bytes();
        let mut req = request("POST", "/write", "db=tt&precision=s", &mut body);
        match self.write.handle(&mut self.scratch, &mut req) {
            Ok(r) => r.status,
            Err(e) => panic!("write refused: {e:?}"),
        }
    }

    /// `GET /query?db=tt&q=..`, the parsed answer.
    fn query(&self, q: &str) -> Value {
        let mut body: &[u8] = b"";
        let query = format!("db=tt&epoch=s&q={}", encode(q));
        let mut req = request("GET", "/query", &query, &mut body);
        let r = match self.query.handle(&self.write.writers, &mut req) {
            Ok(r) => r,
            Err(e) => panic!("{q}: {e:?}"),
        };
        let mut bytes = r.body;
        if let Some(mut stream) = r.stream {
            std::io::Read::read_to_end(&mut stream, &mut bytes).expect("answer");
        }
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{q}: {e}"))
    }
}

fn request<'a>(method: &str, path: &str, query: &str, body: &'a mut &[u8]) -> Request<'a> {
    Request {
        method: method.into(),
        path: path.into(),
        params: Params::parse(query),
        headers: Headers::default(),
        content_length: Some(body.len()),
        body,
    }
}

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `count` of a one-statement `SELECT count(v)` answer.
fn count_of(answer: &Value) -> Option<u64> {
    answer["results"][0]["series"][0]["values"][0][1].as_u64()
}

/// `v = 0..n` of `mm`, tag `src`, at seconds `t0 + v`, as line protocol.
fn points(mm: &str, src: &str, t0: i64, range: std::ops::Range<i64>) -> String {
    range
        .map(|v| format!("{mm},src={src} v={v} {}\n", t0 + v))
        .collect()
}

/// A measurement whose owner in a circle of two is the second backend.
fn owned_by_second() -> String {
    (0..100)
        .map(|k| format!("m{k}"))
        .find(|mm| owner(DB, mm, 2) == 1)
        .expect("some measurement hashes to the second backend")
}

#[test]
fn a_one_circle_cluster_reads_a_moving_measurement_whole_and_its_writes_reach_both_copies() {
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(DB);
    }
    let urls: Vec<String> = influxds.iter().map(Influxd::url).collect();
    let mut p = InProcess::start(&urls);
    let mm = owned_by_second();
    let t0 = 1_600_000_000;
    // Written under the old ring (one backend), half copied already.
    influxds[0].write(DB, Some("s"), points(&mm, "pre", t0, 0..100).as_bytes());
    influxds[1].write(DB, Some("s"), points(&mm, "pre", t0, 0..50).as_bytes());
    // A point written to the new owner before the move began.
    assert_eq!(p.write(&points(&mm, "early", t0, 200..201)), 204);
    wait_until(
        Duration::from_secs(10),
        "the early point on the owner",
        || influxds[1].count_v(DB, &mm) == 51,
    );

    p.cluster.set_transferring(0, true);
    p.cluster
        .begin_move(0, DB, &mm, Arc::clone(&p.cluster.backends[0]));
    assert_eq!(p.write(&points(&mm, "load", t0, 300..310)), 204);
    for (d, want) in [(&influxds[0], 110), (&influxds[1], 61)] {
        wait_until(
            Duration::from_secs(10),
            "writes of the move on owner and source",
            || d.count_v(DB, &mm) == want,
        );
    }
    // Raw points: owner and source merged, each point once.
    let raw = p.query(&format!("SELECT v FROM {mm}"));
    assert_eq!(values_of(&raw).map(|v| v.len()), Some(111), "{raw}");
    let limited = p.query(&format!("SELECT v FROM {mm} LIMIT 60"));
    let want: Vec<i64> = (0..60).collect();
    assert_eq!(values_of(&limited), Some(want), "{limited}");
    // An aggregate: the source alone (it misses only the early point).
    let count = p.query(&format!("SELECT count(v) FROM {mm}"));
    assert_eq!(count_of(&count), Some(110), "{count}");

    // The copy is done: the owner answers alone.
    influxds[1].write(DB, Some("s"), points(&mm, "pre", t0, 50..100).as_bytes());
    p.cluster.end_move(0, DB, &mm);
    p.cluster.set_transferring(0, false);
    let count = p.query(&format!("SELECT count(v) FROM {mm}"));
    assert_eq!(count_of(&count), Some(111), "{count}");
    assert_eq!(p.write(&points(&mm, "after", t0, 400..401)), 204);
    wait_until(
        Duration::from_secs(10),
        "a write after the move on the owner",
        || influxds[1].count_v(DB, &mm) == 112,
    );
    assert_eq!(
        influxds[0].count_v(DB, &mm),
        110,
        "the source gets no more writes"
    );
}

#[test]
fn a_measurement_moving_from_a_removed_backend_is_read_from_both() {
    // i0 was removed from the circle; i1 is left and owns everything.
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(DB);
    }
    let mut p = InProcess::start(&[influxds[1].url()]);
    let mm = "m0";
    let t0 = 1_600_000_000;
    influxds[0].write(DB, Some("s"), points(mm, "pre", t0, 0..100).as_bytes());
    influxds[1].write(DB, Some("s"), points(mm, "pre", t0, 0..30).as_bytes());
    let removed = Arc::new(Backend::new(1, 0, &backend_config(&influxds[0].url())));
    p.cluster.set_transferring(0, true);
    p.cluster.begin_move(0, DB, mm, removed);
    assert_eq!(p.write(&points(mm, "load", t0, 300..305)), 204);
    wait_until(Duration::from_secs(10), "writes on the owner", || {
        influxds[1].count_v(DB, mm) == 35
    });
    assert_eq!(
        influxds[0].count_v(DB, mm),
        100,
        "a removed backend gets no writes"
    );
    let raw = p.query(&format!("SELECT v FROM {mm}"));
    assert_eq!(values_of(&raw).map(|v| v.len()), Some(105), "{raw}");
    let tags = p.query(&format!("SHOW TAG VALUES FROM {mm} WITH KEY = src"));
    assert_eq!(
        tags["results"][0]["series"][0]["values"],
        serde_json::json!([["src", "load"], ["src", "pre"]]),
        "{tags}"
    );
    // No backend holds every point: an aggregate is an error, not a number.
    let count = p.query(&format!("SELECT count(v) FROM {mm}"));
    let error = count["results"][0]["error"].as_str().unwrap_or("");
    assert!(error.starts_with("cannot combine series"), "{count}");
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

/// A peer of the proxy running a rebalance (`ha_addrs`) in a one-circle
/// cluster learns the moves with `transferring=true`: it reads a moving
/// measurement from its source (whole, not what the new owner has so far)
/// and sends its writes there too, so aggregates answered from the source
/// count them.
#[test]
fn a_peer_reads_and_writes_moving_measurements_as_the_proxy_running_the_move() {
    const MOVING: i64 = 100_000;
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(DB);
    }
    let mm = (0..100)
        .map(|i| format!("peer{i}"))
        .find(|m| owner(DB, m, 2) == 1)
        .expect("a measurement the second backend owns");
    let body: String = (0..MOVING)
        .map(|i| format!("{mm},src=pre v={i} {}\n", 1_600_000_000 + i))
        .collect();
    let w = influxds[0].write(DB, Some("s"), body.as_bytes());
    assert_eq!(w.status, 204, "{}", w.body);
    let config = config_for_urls(&[vec![influxds[0].url(), influxds[1].url()]]);
    let running = Proxy::start(config.clone());
    let peer = Proxy::start(config);
    let addrs = format!("127.0.0.1:{},127.0.0.1:{}", running.port(), peer.port());
    let r = http_post(
        &format!("{}/rebalance", running.url()),
        &[
            ("circle_id", "0"),
            ("operation", "add"),
            ("worker", "1"),
            ("batch", "20"),
            ("ha_addrs", &addrs),
        ],
        &[],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (202, "accepted\n"));
    let count = |p: &Proxy| {
        let q = format!("SELECT count(v) FROM {}", quote_ident(&mm));
        let r = http_get(&format!("{}/query", p.url()), &[("db", DB), ("q", &q)]);
        r.json()["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    };
    assert_eq!(
        count(&peer),
        MOVING,
        "the peer reads the moving measurement whole"
    );
    let (status, body) = peer.write(DB, Some("s"), &format!("{mm},src=peer v=1 1700000000\n"));
    assert_eq!(status, 204, "{body}");
    // Delivered within a flush: an aggregate through the running proxy
    // (answered by the source alone) counts the peer's write.
    wait_until(
        Duration::from_secs(10),
        "the peer's write on the source",
        || count(&running) == MOVING + 1,
    );
    assert!(
        transfer_state(&running).0,
        "the move was still running when checked: make it larger"
    );
    poll_for(Duration::from_secs(120), "the rebalance done", || {
        (transfer_state(&running) == (false, "done".to_string())).then_some(())
    });
    wait_until(
        Duration::from_secs(10),
        "the peer told the move ended",
        || !transfer_state(&peer).0,
    );
    assert_eq!(
        count(&peer),
        MOVING + 1,
        "the peer reads the new owner, whole"
    );
}
