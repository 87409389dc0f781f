//! The write path end to end: proxy with 2 circles x 2 real influxd, every
//! backend queried directly afterwards.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// How long a flushed batch may take to show up (flush_time 1 s + slack for a
/// loaded 2-core machine running two tests at once).
const DELIVERY: Duration = Duration::from_secs(10);

/// A measurement as written in line protocol, as InfluxDB stores it, and as
/// the Go proxy unescapes it for the shard key.
struct Mm {
    line: &'static str,
    stored: &'static str,
    key: &'static str,
}

const fn mm(line: &'static str, stored: &'static str, key: &'static str) -> Mm {
    Mm { line, stored, key }
}

/// 20 measurements, two of them escaped so that the unescape rule matters.
const MEASUREMENTS: [Mm; 20] = [
    mm("cpu\\ load", "cpu load", "cpu load"),
    mm("a\\,b", "a,b", "a,b"),
    mm("cpu", "cpu", "cpu"),
    mm("mem", "mem", "mem"),
    mm("disk", "disk", "disk"),
    mm("net", "net", "net"),
    mm("swap", "swap", "swap"),
    mm("processes", "processes", "processes"),
    mm("kernel", "kernel", "kernel"),
    mm("system", "system", "system"),
    mm("h2o_feet", "h2o_feet", "h2o_feet"),
    mm("h2o_temperature", "h2o_temperature", "h2o_temperature"),
    mm("m12", "m12", "m12"),
    mm("m13", "m13", "m13"),
    mm("m14", "m14", "m14"),
    mm("m15", "m15", "m15"),
    mm("m16", "m16", "m16"),
    mm("m17", "m17", "m17"),
    mm("m18", "m18", "m18"),
    mm("m19", "m19", "m19"),
];

/// One line and the row InfluxDB must end up with.
fn point(m: &Mm, host_line: &str, host: &str, k: i64, ts_text: &str, ts_ns: i64) -> (String, Row) {
    let line = format!(
        "{},host={host_line} v={k}.25,i={k}i,s=\"say \\\"hi\\\" {k}\",b=true {ts_text}",
        m.line
    );
    let row = Row::new(
        m.stored,
        ts_ns,
        &[("host", host)],
        &[
            ("v", json!(k as f64 + 0.25)),
            ("i", json!(k)),
            ("s", json!(format!("say \"hi\" {k}"))),
            ("b", json!(true)),
        ],
    );
    (line, row)
}

/// Expected rows of every backend: `[circle][backend]`.
type Expected = [[BTreeSet<Row>; 2]; 2];

fn empty_expected() -> Expected {
    Default::default()
}

/// Adds `row` (shard key `key`) to the owner in both circles.
fn expect_row(exp: &mut Expected, db: &str, key: &str, row: Row) {
    let b = owner(db, key, 2);
    for circle in exp.iter_mut() {
        circle[b].insert(row.clone());
    }
}

/// Waits until every backend holds exactly the expected rows of `db`/`rp`.
fn assert_placed(cluster: &Cluster, db: &str, rp: Option<&str>, exp: &Expected) -> Duration {
    let started = Instant::now();
    for (c, circle) in exp.iter().enumerate() {
        for (b, rows) in circle.iter().enumerate() {
            let d = cluster.backend(c, b);
            wait_for_eq(
                DELIVERY.saturating_sub(started.elapsed()),
                &format!(
                    "rows of db {db:?} rp {rp:?} on {} ({}) to equal what the ring places there",
                    backend_name(c, b),
                    d.url()
                ),
                rows,
                || d.all_rows(db, rp),
            );
        }
    }
    started.elapsed()
}

#[test]
fn every_point_is_stored_once_per_circle_on_the_backend_the_ring_names() {
    let dbs = ["wp_a", "wp_b", "wp_c"];
    let cluster = Cluster::start(&dbs, |_| {});
    let base = 1_700_000_000_000_000_000i64;
    let mut per_db: BTreeMap<&str, Expected> = BTreeMap::new();
    for (d, db) in dbs.iter().enumerate() {
        let mut exp = empty_expected();
        let mut body = String::new();
        for (i, m) in MEASUREMENTS.iter().enumerate() {
            for (j, (host_line, host)) in [("h1", "h1"), ("web\\ 2", "web 2")].iter().enumerate() {
                let k = (d * 1000 + i * 10 + j) as i64;
                let ts = base + k * 1_000_000;
                let (line, row) = point(m, host_line, host, k, &ts.to_string(), ts);
                body.push_str(&line);
                body.push('\n');
                expect_row(&mut exp, db, m.key, row);
            }
        }
        let (status, text) = cluster.proxy.write(db, None, &body);
        assert_eq!(status, 204, "write to db {db}: body {text:?}");
        per_db.insert(db, exp);
    }
    // The test is only meaningful if both backends of a circle own something.
    for (db, exp) in &per_db {
        for (b, rows) in exp[0].iter().enumerate() {
            assert!(
                !rows.is_empty(),
                "test data puts nothing on backend {b} for {db}; pick other names"
            );
        }
    }
    for (db, exp) in &per_db {
        assert_placed(&cluster, db, None, exp);
    }
    // Measurement names too: present on the owner only.
    for (db, exp) in &per_db {
        for (c, circle) in exp.iter().enumerate() {
            for (b, rows) in circle.iter().enumerate() {
                let want: BTreeSet<String> = rows.iter().map(|r| r.measurement.clone()).collect();
                assert_eq!(
                    cluster.backend(c, b).measurements(db),
                    want,
                    "SHOW MEASUREMENTS of {db} on {}",
                    backend_name(c, b)
                );
            }
        }
    }
}

#[test]
fn timestamps_are_normalised_to_nanoseconds_for_every_precision() {
    let db = "wp_prec";
    let cluster = Cluster::start(&[db], |_| {});
    // (precision parameter, timestamp as written, the same instant in ns); all
    // within one shard group so influxd stays fast.
    let cases: [(Option<&str>, i64, i64); 8] = [
        (None, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        (
            Some("n"),
            1_700_000_001_123_456_789,
            1_700_000_001_123_456_789,
        ),
        (
            Some("ns"),
            1_700_000_002_123_456_789,
            1_700_000_002_123_456_789,
        ),
        (Some("u"), 1_700_000_003_123_456, 1_700_000_003_123_456_000),
        (Some("ms"), 1_700_000_004_123, 1_700_000_004_123_000_000),
        (Some("s"), 1_700_000_005, 1_700_000_005_000_000_000),
        (Some("m"), 28_333_334, 28_333_334 * 60_000_000_000),
        (Some("h"), 472_223, 472_223 * 3_600_000_000_000),
    ];
    let mut exp = empty_expected();
    for (n, (precision, written, ns)) in cases.iter().enumerate() {
        let mut body = String::new();
        for (i, m) in MEASUREMENTS.iter().enumerate().step_by(3) {
            let k = (n * 100 + i) as i64;
            let (line, mut row) = point(m, "h1", "h1", k, &written.to_string(), *ns);
            // One series per precision, so rows of different cases never merge.
            let p = precision.unwrap_or("none");
            let line = line.replacen(",host=h1", &format!(",host=h1,p={p}"), 1);
            row.tags.insert("p".into(), p.into());
            body.push_str(&line);
            body.push('\n');
            expect_row(&mut exp, db, m.key, row);
        }
        let (status, text) = cluster.proxy.write(db, *precision, &body);
        assert_eq!(status, 204, "write with precision {precision:?}: {text:?}");
    }
    assert_placed(&cluster, db, None, &exp);
}

#[test]
fn gzip_body_is_stored_like_a_plain_one() {
    let db = "wp_gzip";
    let cluster = Cluster::start(&[db], |_| {});
    let mut exp = empty_expected();
    let mut body = String::new();
    for (i, m) in MEASUREMENTS.iter().enumerate() {
        let ts = 1_700_000_000_000_000_000 + i as i64;
        let (line, row) = point(m, "g", "g", i as i64, &ts.to_string(), ts);
        body.push_str(&line);
        body.push('\n');
        expect_row(&mut exp, db, m.key, row);
    }
    let (status, text) = cluster.proxy.write_gzip(db, None, &body);
    assert_eq!(status, 204, "gzip write: {text:?}");
    assert_placed(&cluster, db, None, &exp);
}

#[test]
fn retention_policy_parameter_reaches_every_backend() {
    let db = "wp_rp";
    let cluster = Cluster::start(&[db], |_| {});
    for d in &cluster.influxds {
        d.exec(&format!(
            "CREATE RETENTION POLICY \"short\" ON {db} DURATION 1h REPLICATION 1"
        ));
    }
    // Inside the 1 h policy: recent timestamps.
    let base = now_ns() - 60_000_000_000;
    let mut exp = empty_expected();
    let mut body = String::new();
    for (i, m) in MEASUREMENTS.iter().enumerate() {
        let ts = base + i as i64 * 1000;
        let (line, row) = point(m, "r", "r", i as i64, &ts.to_string(), ts);
        body.push_str(&line);
        body.push('\n');
        expect_row(&mut exp, db, m.key, row);
    }
    let r = cluster
        .proxy
        .write_with(&[("db", db), ("rp", "short")], &[], body.as_bytes());
    assert_eq!(r.status, 204, "write with rp=short: {:?}", r.body);
    assert_placed(&cluster, db, Some("short"), &exp);
    // Nothing went to the default policy.
    for (c, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert_eq!(
            cluster.backend(c, b).all_rows(db, Some("autogen")),
            BTreeSet::new(),
            "points written with rp=short also landed in autogen on {}",
            backend_name(c, b)
        );
    }
}

#[test]
fn write_without_timestamp_gets_same_stamp_in_every_circle() {
    let db = "wp_now";
    let cluster = Cluster::start(&[db], |_| {});
    let names: Vec<String> = (0..8).map(|i| format!("now{i}")).collect();
    let mut body = String::new();
    for (i, n) in names.iter().enumerate() {
        body.push_str(&format!("{n},host=a v={i}.5\n"));
        // A second point of the same series with a timestamp, far in the past.
        body.push_str(&format!("{n},host=a v={i}.75 1600000000000000000\n"));
    }
    let before = now_ns();
    let (status, text) = cluster.proxy.write(db, None, &body);
    let after = now_ns();
    assert_eq!(status, 204, "write: {text:?}");
    // precision=s and no timestamp: still one stamp for both circles.
    let (status, text) = cluster.proxy.write(db, Some("s"), "now_s,host=a v=1.5\n");
    let after_s = now_ns();
    assert_eq!(status, 204, "write precision=s: {text:?}");

    let mut all = names.clone();
    all.push("now_s".into());
    for n in &all {
        let per_circle: Vec<Vec<Row>> = (0..2)
            .map(|c| {
                let d = cluster.owner_of(c, db, n);
                poll_for(
                    DELIVERY,
                    &format!("the untimed point of {n} on circle {}", c + 1),
                    || {
                        let rows: Vec<Row> = d
                            .rows(db, None, n)
                            .into_iter()
                            .filter(|r| r.time != 1_600_000_000_000_000_000)
                            .collect();
                        (!rows.is_empty()).then_some(rows)
                    },
                )
            })
            .collect();
        assert_eq!(
            per_circle[0], per_circle[1],
            "measurement {n}: circle-1 and circle-2 stored different points"
        );
        assert_eq!(per_circle[0].len(), 1, "{n}: one untimed point expected");
        let t = per_circle[0][0].time;
        let hi = if n == "now_s" { after_s } else { after };
        assert!(
            t >= before - 1_000_000_000 && t <= hi + 1_000_000_000,
            "{n}: stamp {t} is not close to the write time [{before}, {hi}]"
        );
    }
    // The timed points kept their own stamp.
    for n in &names {
        for c in 0..2 {
            let rows = cluster.owner_of(c, db, n).rows(db, None, n);
            assert!(
                rows.iter().any(|r| r.time == 1_600_000_000_000_000_000),
                "{n} on circle {}: the timed point is missing: {rows:?}",
                c + 1
            );
        }
    }
}

/// The Go proxy drops every backslash of a measurement for the shard key
/// (`m\x` -> `mx`), while InfluxDB keeps `\x`. Placement must follow the Go
/// rule, so that a user who swaps binaries finds every measurement where the
/// Go proxy put it.
#[test]
fn backslash_escapes_are_placed_by_the_go_unescape_rule() {
    let db = "wp_esc";
    let cluster = Cluster::start(&[db], |_| {});
    // Candidates whose Go key and InfluxDB name hash to different backends.
    let mut cases = Vec::new();
    for k in 0..200 {
        let line_name = format!("q\\x{k}");
        let go_key = format!("qx{k}");
        let influx_name = line_name.clone();
        if owner(db, &go_key, 2) != owner(db, &influx_name, 2) {
            cases.push((line_name, go_key));
        }
        if cases.len() == 6 {
            break;
        }
    }
    assert!(
        cases.len() >= 2,
        "found no names where the two rules disagree"
    );
    let mut body = String::new();
    for (id, (line_name, _)) in cases.iter().enumerate() {
        body.push_str(&format!("{line_name} id={id}i 1700000000000000000\n"));
    }
    let (status, text) = cluster.proxy.write(db, None, &body);
    assert_eq!(status, 204, "write: {text:?}");
    // Where each id ended up, by (circle, backend).
    let want: BTreeMap<(usize, i64), usize> = cases
        .iter()
        .enumerate()
        .flat_map(|(id, (_, go_key))| {
            let b = owner(db, go_key, 2);
            [((0, id as i64), b), ((1, id as i64), b)]
        })
        .collect();
    wait_for_eq(
        DELIVERY,
        "each point on the backend the Go rule names (map (circle, id) -> backend)",
        &want,
        || {
            let mut got = BTreeMap::new();
            for c in 0..2 {
                for b in 0..2 {
                    for row in cluster.backend(c, b).all_rows(db, None) {
                        let id: i64 = row.fields["id"].parse().unwrap();
                        got.insert((c, id), b);
                    }
                }
            }
            got
        },
    );
}

#[test]
fn batches_for_different_databases_and_policies_do_not_mix() {
    // Two databases interleaved in quick succession on the same backends.
    let dbs = ["wp_x", "wp_y"];
    let cluster = Cluster::start(&dbs, |_| {});
    let mut exp: BTreeMap<&str, Expected> = BTreeMap::new();
    for round in 0..5i64 {
        for db in dbs {
            let e = exp.entry(db).or_insert_with(empty_expected);
            let mut body = String::new();
            for (i, m) in MEASUREMENTS.iter().enumerate().take(6) {
                let k = round * 100 + i as i64;
                let ts = 1_700_000_000_000_000_000 + k;
                let (line, row) = point(m, db, db, k, &ts.to_string(), ts);
                body.push_str(&line);
                body.push('\n');
                expect_row(e, db, m.key, row);
            }
            let (status, text) = cluster.proxy.write(db, None, &body);
            assert_eq!(status, 204, "write to {db}: {text:?}");
        }
    }
    for (db, e) in &exp {
        assert_placed(&cluster, db, None, e);
    }
}

/// Small writes that come while a group lingers at the head of the spool go
/// into the same POST as further gzip members (the sender gives its
/// compressor back while the group waits): the body is one valid gzip
/// stream of several members, and influxd stores every point of it.
#[test]
fn a_lingering_group_grows_by_gzip_members_that_influxd_reads_whole() {
    let db = "wp_members";
    let points = 8;
    let lines: Vec<String> = (0..points)
        .map(|i| {
            format!(
                "linger,host=h{i} v={i}i {}",
                1_700_000_000_000_000_000i64 + i
            )
        })
        .collect();
    let write_slowly = |proxy: &Proxy| {
        for line in &lines {
            let (status, text) = proxy.write(db, None, line);
            assert_eq!(status, 204, "write: {text:?}");
            // The client's pace: each write comes while the group lingers
            // (flush_time 3 s), after the sender has looked at the last one.
            thread::sleep(Duration::from_millis(60));
        }
    };

    // What the backend receives: one POST holding several members.
    let fake = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![fake.url()]]);
    config["flush_time"] = json!(3);
    let proxy = Proxy::start(config);
    write_slowly(&proxy);
    let body = poll_for(
        Duration::from_secs(10),
        "the lingering group's POST",
        || {
            fake.recorded()
                .into_iter()
                .find(|r| r.path() == "/write")
                .map(|r| r.body)
        },
    );
    let mut whole = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut whole)
        .expect("the body is one gzip stream");
    assert_eq!(whole.lines().count(), points as usize, "{whole}");
    let mut first_member = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut first_member)
        .expect("the first member");
    assert!(
        first_member.lines().count() < points as usize,
        "expected several members, the first holds everything: {first_member}"
    );
    drop(proxy);

    // A real influxd reads such a body whole.
    let cluster = Cluster::start(&[db], |c| c["flush_time"] = json!(3));
    write_slowly(&cluster.proxy);
    cluster.wait_in_every_circle(Duration::from_secs(15), db, "linger", points as u64);
}
