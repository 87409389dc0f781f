//! The copy engine of transfers (`influx_proxy::transfer::copy`) between two
//! real influxd: a copied measurement reads back on the destination exactly
//! as on the source (names, tag sets, every field type, retention policies,
//! a field whose type differs between shards), counts verify, a resumed or
//! repeated copy ends in the same state, and failures say what they are.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use influx_proxy::cluster::Backend;
use influx_proxy::config::BackendConfig;
use influx_proxy::transfer::copy::*;
use serde_json::Value;

use common::*;

const WEEK_NS: i64 = 7 * 86_400 * 1_000_000_000;

fn backend(id: usize, url: &str) -> Arc<Backend> {
    Arc::new(Backend::new(
        id,
        0,
        &BackendConfig {
            name: format!("b{id}"),
            url: url.to_string(),
            username: String::new(),
            password: String::new(),
            auth_encrypt: false,
            write_only: false,
        },
    ))
}

fn client(attempts: u32) -> Client {
    Client {
        timeout: Duration::from_secs(10),
        attempts,
        backoff: Duration::from_millis(20),
    }
}

fn job(src: &Influxd, dst: &Influxd, db: &str, rp: &str, mm: &str, batch: usize) -> CopyJob {
    CopyJob {
        source: backend(0, &src.url()),
        dest: backend(1, &dst.url()),
        db: db.to_string(),
        rp: rp.to_string(),
        measurement: mm.to_string(),
        since_ns: i64::MIN,
        until_ns: None,
        batch,
    }
}

/// Runs a copy to its end, returning its progress and every progress seen.
fn copy(c: &Client, job: &CopyJob) -> Result<(Progress, Vec<Progress>), CopyError> {
    let mut seen = Vec::new();
    let stop = AtomicBool::new(false);
    let done = copy_measurement(c, job, &stop, &mut |p| {
        seen.push(*p);
        Ok(())
    })?;
    Ok((done, seen))
}

fn write_rp(d: &Influxd, db: &str, rp: &str, body: &str) {
    let r = http_post(
        &format!("{}/write", d.url()),
        &[("db", db), ("rp", rp), ("precision", "ns")],
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 204, "write to {rp}: {}", r.body);
}

/// `SHOW FIELD KEYS` of one measurement: (field, type) pairs.
fn field_keys(d: &Influxd, db: &str, rp: &str, mm: &str) -> Vec<(String, String)> {
    let q = format!(
        "SHOW FIELD KEYS FROM {}.{}",
        quote_ident(rp),
        quote_ident(mm)
    );
    let v = d.query(db, &q);
    let mut out: Vec<(String, String)> = v["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
        .collect();
    out.sort();
    out
}

/// Every value of `v` cast to `t` (only the values of that type), with
/// tags: the answer as JSON text.
fn cast_values(d: &Influxd, db: &str, rp: &str, mm: &str, t: &str) -> Value {
    let q = format!(
        "SELECT \"v\"::{t},*::tag FROM {}.{}",
        quote_ident(rp),
        quote_ident(mm)
    );
    d.query(db, &q)["results"][0]["series"].clone()
}

fn sorted_policies(mut rps: Vec<RetentionPolicy>) -> Vec<RetentionPolicy> {
    rps.sort_by(|a, b| a.name.cmp(&b.name));
    rps
}

/// Measurements with every field type, escaped names, several tag sets,
/// nulls, a tag key that is also a field key, in a non-default policy of
/// two weeks; and, in a policy without end, a field whose type differs
/// between shards years apart.
fn fill_source(src: &Influxd, db: &str) -> Vec<(String, String)> {
    src.create_db(db);
    let q = |s: &str| src.exec(&s.replace("DB", &quote_ident(db)));
    q("CREATE RETENTION POLICY \"two weeks\" ON DB DURATION 336h REPLICATION 1 SHARD DURATION 1d DEFAULT");
    q("CREATE RETENTION POLICY \"for ever\" ON DB DURATION 0s REPLICATION 1 SHARD DURATION 168h");
    let base = now_ns() - 3_600_000_000_000;
    let mut recent = String::new();
    for i in 0..25i64 {
        let t = base + i * 1_000_000_000;
        let host = ["h1", "h 2", "h,3=x"][i as usize % 3];
        recent.push_str(&format!(
            "types,host={},dc=eu f={},i={}i,s=\"q\\\"x\\\\y {i}\",b={} {t}\n",
            host.replace(' ', "\\ ")
                .replace(',', "\\,")
                .replace('=', "\\="),
            [1.0, 0.1, -2.5e-300, 1e300, 123456789.125][i as usize % 5],
            i64::MAX - i,
            i % 2 == 0,
            t = t
        ));
        // Nulls: not every field in every row, not every tag in every series.
        if i % 4 == 0 {
            recent.push_str(&format!("types f=-{i}.5 {t}\n"));
        } else {
            recent.push_str(&format!("types,dc=us i={i}i {t}\n"));
        }
        recent.push_str(&format!(
            "a\\ b,t=1 v={i} {t}\na\\,b v={i} {t}\na\"b v={i} {t}\na\\b v={i} {t}\nü∂,ñ=ü v={i} {t}\n"
        ));
        recent.push_str(&format!("clash,x=tag{} x={i}i,y=1 {t}\n", i % 2));
    }
    write_rp(src, db, "two weeks", &recent);

    let t0 = 1_600_000_000_000_000_000i64;
    let mut old = String::new();
    for i in 0..5i64 {
        old.push_str(&format!("mixed,k=a v={i}.5 {}\n", t0 + i));
        old.push_str(&format!("mixed,k=b v={i}i {}\n", t0 + 10 * WEEK_NS + i));
        old.push_str(&format!("mixed,k=c v=\"s{i}\" {}\n", t0 + 20 * WEEK_NS + i));
        old.push_str(&format!("mixed,k=d v=true {}\n", t0 + 30 * WEEK_NS + i));
        old.push_str(&format!("plain w={i} {}\n", t0 + i * WEEK_NS));
    }
    write_rp(src, db, "for ever", &old);

    let mut out = Vec::new();
    for mm in ["types", "a b", "a,b", "a\"b", "a\\b", "ü∂", "clash"] {
        out.push(("two weeks".to_string(), mm.to_string()));
    }
    for mm in ["mixed", "plain"] {
        out.push(("for ever".to_string(), mm.to_string()));
    }
    out
}

#[test]
fn copied_measurements_read_back_exactly_as_on_the_source() {
    let ds = Influxd::start_many(2);
    let (src, dst) = (&ds[0], &ds[1]);
    let db = "tr db";
    let copies = fill_source(src, db);
    let c = client(3);
    let (sb, db_b) = (backend(0, &src.url()), backend(1, &dst.url()));

    assert!(databases(&c, &sb).unwrap().contains(&db.to_string()));
    let mut names = measurements(&c, &sb, db).unwrap();
    names.sort();
    let mut expected: Vec<String> = copies.iter().map(|(_, mm)| mm.clone()).collect();
    expected.sort();
    assert_eq!(names, expected, "SHOW MEASUREMENTS, escaped names included");

    let rps = retention_policies(&c, &sb, db).unwrap();
    let two_weeks = rps.iter().find(|r| r.name == "two weeks").unwrap();
    assert_eq!(
        (
            two_weeks.duration.as_str(),
            two_weeks.shard_group_duration.as_str()
        ),
        ("336h0m0s", "24h0m0s")
    );
    assert!(two_weeks.default);
    // The destination has the database already, its policy with other
    // settings: altered to the source's.
    dst.create_db(db);
    dst.exec(&format!(
        "CREATE RETENTION POLICY \"for ever\" ON {} DURATION 1h REPLICATION 1 SHARD DURATION 1h",
        quote_ident(db)
    ));
    ensure_database(&c, &db_b, db, &rps).unwrap();
    ensure_database(&c, &db_b, db, &rps).unwrap();
    assert_eq!(
        sorted_policies(retention_policies(&c, &db_b, db).unwrap()),
        sorted_policies(rps.clone()),
        "policies with their durations and default flag"
    );

    for (rp, mm) in &copies {
        // A batch of 4 rows: many batches and chunks per measurement.
        let j = job(src, dst, db, rp, mm, 4);
        let (done, seen) = copy(&c, &j).unwrap_or_else(|e| panic!("copy {rp}.{mm}: {e}"));
        let want = src.rows(db, Some(rp), mm);
        assert!(!want.is_empty(), "{rp}.{mm} has rows on the source");
        assert_eq!(dst.rows(db, Some(rp), mm), want, "rows of {rp}.{mm}");
        assert_eq!(
            field_keys(dst, db, rp, mm),
            if mm == "mixed" {
                // Integer under float is answered (and copied) as float.
                vec![
                    ("v".to_string(), "boolean".to_string()),
                    ("v".to_string(), "float".to_string()),
                    ("v".to_string(), "string".to_string()),
                ]
            } else {
                field_keys(src, db, rp, mm)
            },
            "field types of {rp}.{mm}"
        );
        assert!(
            done.points >= want.len() as u64 && done.bytes > 0,
            "{done:?}"
        );
        assert!(
            seen.len() >= 2,
            "{rp}.{mm}: one progress per batch: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[0].last_time <= w[1].last_time),
            "the watermark never goes back: {seen:?}"
        );
        let v = verify(&c, &j).unwrap();
        assert!(v.complete, "{rp}.{mm}: {v:?}");
        assert_eq!(v.source_points, v.dest_points, "{rp}.{mm}");
        assert_eq!(
            count_points(&c, &db_b, db, rp, mm).unwrap(),
            v.source_points
        );
    }
    for t in ["string", "boolean"] {
        let want = cast_values(src, db, "for ever", "mixed", t);
        assert!(want.is_array(), "{t} values on the source: {want}");
        assert_eq!(cast_values(dst, db, "for ever", "mixed", t), want, "{t}");
    }
    assert_eq!(
        field_keys(dst, db, "two weeks", "types"),
        vec![
            ("b".to_string(), "boolean".to_string()),
            ("f".to_string(), "float".to_string()),
            ("i".to_string(), "integer".to_string()),
            ("s".to_string(), "string".to_string()),
        ]
    );
}

#[test]
fn a_resumed_or_repeated_copy_ends_in_the_same_state() {
    let ds = Influxd::start_many(2);
    let (src, dst) = (&ds[0], &ds[1]);
    src.create_db("r");
    let mut body = String::new();
    for i in 0..200i64 {
        // Several series at each instant: a watermark inside an instant.
        for h in 0..3 {
            body.push_str(&format!("m,h={h} v={i}i,w=\"{h}\" {}\n", 1_000_000_000 + i));
        }
    }
    assert_eq!(src.write("r", None, body.as_bytes()).status, 204);
    let c = client(3);
    let rps = retention_policies(&c, &backend(0, &src.url()), "r").unwrap();
    ensure_database(&c, &backend(1, &dst.url()), "r", &rps).unwrap();
    let mut j = job(src, dst, "r", "autogen", "m", 50);

    // Interrupted after its third batch, as a crash would.
    let stop = AtomicBool::new(false);
    let mut batches = 0;
    let mut last = None;
    let interrupted = copy_measurement(&c, &j, &stop, &mut |p| {
        batches += 1;
        last = Some(*p);
        if batches == 3 {
            return Err(CopyError::Stopped);
        }
        Ok(())
    });
    assert_eq!(interrupted, Err(CopyError::Stopped));
    let last = last.unwrap();
    assert_eq!(last.points, 150);
    assert!(dst.rows("r", None, "m").len() < 600);
    let unfinished = verify(&c, &j).unwrap();
    assert!(!unfinished.complete, "{unfinished:?}");

    j.since_ns = last.last_time;
    let (resumed, _) = copy(&c, &j).unwrap();
    assert!(
        resumed.points >= 450 && resumed.points <= 453,
        "{resumed:?}"
    );
    let want = src.rows("r", None, "m");
    assert_eq!(want.len(), 600);
    assert_eq!(dst.rows("r", None, "m"), want);
    j.since_ns = i64::MIN;
    assert!(verify(&c, &j).unwrap().complete);

    // Again from the start: nothing changes.
    copy(&c, &j).unwrap();
    assert_eq!(dst.rows("r", None, "m"), want);

    // A range: only its rows are counted, on both sides.
    j.since_ns = 1_000_000_010;
    j.until_ns = Some(1_000_000_019);
    let v = verify(&c, &j).unwrap();
    assert_eq!((v.source_points, v.dest_points, v.complete), (30, 30, true));

    // A stop asked for during a batch: no batch after it.
    j.since_ns = i64::MIN;
    j.until_ns = None;
    let mut accepted = 0;
    let stopped = copy_measurement(&c, &j, &stop, &mut |_| {
        accepted += 1;
        stop.store(true, Ordering::Release);
        Ok(())
    });
    assert_eq!((stopped, accepted), (Err(CopyError::Stopped), 1));
    assert_eq!(
        copy_measurement(&c, &j, &stop, &mut |_| Ok(())),
        Err(CopyError::Stopped)
    );

    // Dropped on the destination: nothing left, and a verify says so.
    drop_measurement(&c, &j.dest, "r", "m").unwrap();
    assert!(dst.rows("r", None, "m").is_empty());
    assert_eq!(count_points(&c, &j.dest, "r", "autogen", "m").unwrap(), 0);
    let v = verify(&c, &j).unwrap();
    assert_eq!(
        (v.source_points, v.dest_points, v.complete),
        (600, 0, false)
    );
}

#[test]
fn a_destination_that_is_down_is_unreachable_after_the_retries() {
    let src = Influxd::start();
    src.create_db("d");
    assert_eq!(src.write("d", None, b"m v=1 1\n").status, 204);
    let down = format!("http://127.0.0.1:{}", free_port());
    let c = client(3);
    let mut j = job(&src, &src, "d", "autogen", "m", 10);
    j.dest = backend(1, &down);

    let start = Instant::now();
    let e = copy(&c, &j).unwrap_err();
    // Backoffs of 20 and 40 ms between the three attempts.
    assert!(
        start.elapsed() >= Duration::from_millis(60),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(&e, CopyError::Unreachable { backend, .. } if *backend == down),
        "{e:?}"
    );
    assert!(matches!(
        databases(&c, &j.dest),
        Err(CopyError::Unreachable { .. })
    ));
    // A count it cannot take is no verdict.
    assert!(matches!(verify(&c, &j), Err(CopyError::Unreachable { .. })));
}

#[test]
fn refusals_are_refused_at_once_with_influxds_message() {
    let ds = Influxd::start_many(2);
    let (src, dst) = (&ds[0], &ds[1]);
    src.create_db("d");
    dst.create_db("d");
    assert_eq!(src.write("d", None, b"m v=1.5 1000\n").status, 204);
    // The destination's shard already holds `v` as a string.
    assert_eq!(dst.write("d", None, b"m v=\"x\" 2000\n").status, 204);
    // A retry would wait a minute.
    let c = Client {
        backoff: Duration::from_secs(60),
        ..client(2)
    };
    let j = job(src, dst, "d", "autogen", "m", 10);
    let start = Instant::now();
    let e = copy(&c, &j).unwrap_err();
    assert!(
        matches!(&e, CopyError::Refused { message, .. } if message.contains("field type conflict")),
        "{e:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(30), "no retry");

    let e = retention_policies(&c, &backend(0, &src.url()), "nodb").unwrap_err();
    assert!(
        matches!(&e, CopyError::Refused { message, .. } if message.contains("database not found")),
        "{e:?}"
    );
    // A database the destination lacks counts nothing.
    let empty = Influxd::start();
    let missing = job(src, &empty, "d", "autogen", "m", 10);
    let v = verify(&c, &missing).unwrap();
    assert_eq!((v.source_points, v.dest_points, v.complete), (1, 0, false));
}

/// CPU seconds this process has used (influxd runs in processes of its
/// own, so during a copy this is the copy's cost, its poster thread
/// included).
fn process_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Not a test: the cost of a copy, printed (run it with `--release
/// --ignored --nocapture`). 1M points (100 series, two fields each) are
/// written to one influxd, timed, then copied to another; the CPU time of
/// this process meanwhile is the proxy's cost.
#[test]
#[ignore]
fn copy_cost_per_million_points() {
    let ds = Influxd::start_many(2);
    let (src, dst) = (&ds[0], &ds[1]);
    src.create_db("bench");
    let rows: i64 = std::env::var("COPY_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t0 = now_ns() - rows * 1_000_000;
    let start = Instant::now();
    let mut body = String::new();
    for i in 0..rows {
        body.push_str(&format!(
            "cpu,host=server-{:03},region=eu-{} usage={}.{},count={}i {}\n",
            i % 100,
            i % 7,
            i % 1000,
            i % 97,
            i,
            t0 + (i / 100) * 100_000_000 + i % 100
        ));
        if (i + 1) % 10_000 == 0 || i + 1 == rows {
            assert_eq!(src.write("bench", None, body.as_bytes()).status, 204);
            body.clear();
        }
    }
    let fill = start.elapsed().as_secs_f64();
    let c = client(3);
    let rps = retention_policies(&c, &backend(0, &src.url()), "bench").unwrap();
    ensure_database(&c, &backend(1, &dst.url()), "bench", &rps).unwrap();
    let j = job(src, dst, "bench", "autogen", "cpu", 20_000);
    let (cpu0, start) = (process_cpu(), Instant::now());
    let (done, _) = copy(&c, &j).unwrap();
    let (cpu, wall) = (process_cpu() - cpu0, start.elapsed().as_secs_f64());
    let v = verify(&c, &j).unwrap();
    assert!(v.complete && v.dest_points == rows as u64, "{v:?}");
    println!(
        "copy of {} points: {wall:.2} s wall, {:.0} points/s; proxy CPU {cpu:.2} s = {:.2} s per million points; \
         direct write of the same points (one thread, 10k per POST): {fill:.2} s, {:.0} points/s",
        done.points,
        done.points as f64 / wall,
        cpu * 1e6 / done.points as f64,
        rows as f64 / fill
    );
}

/// A TCP relay to `127.0.0.1:port` that breaks the connection of the first
/// `SELECT *` it carries once `cut` bytes of the answer went through;
/// returns its port and the number of connections it broke.
fn cutting_relay(port: u16, cut: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let cuts = Arc::new(AtomicUsize::new(0));
    let broken = Arc::clone(&cuts);
    thread::spawn(move || {
        for client in listener.incoming().take(100) {
            let Ok(mut client) = client else { return };
            let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let broken = Arc::clone(&broken);
            thread::spawn(move || {
                let mut head = [0u8; 8192];
                let n = client.read(&mut head).unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]).into_owned();
                let select_all =
                    text.contains("q=SELECT+%2A+FROM") || text.contains("q=SELECT+*+FROM");
                if upstream.write_all(&head[..n]).is_err() {
                    return;
                }
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(Shutdown::Write);
                });
                let cutting = select_all && broken.fetch_add(1, Ordering::SeqCst) == 0;
                if !cutting {
                    broken.fetch_sub(select_all as usize, Ordering::SeqCst);
                    let _ = std::io::copy(&mut upstream, &mut client);
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                }
                let mut passed = 0;
                let mut buf = [0u8; 4096];
                while passed < cut {
                    let n = match upstream.read(&mut buf[..(cut - passed).min(4096)]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    passed += n;
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
            });
        }
    });
    (relay_port, cuts)
}

#[test]
fn a_source_answer_broken_off_is_read_again_from_the_watermark() {
    let ds = Influxd::start_many(2);
    let (src, dst) = (&ds[0], &ds[1]);
    src.create_db("r");
    let mut body = String::new();
    for i in 0..2000i64 {
        body.push_str(&format!("m,h={} v={i}i {}\n", i % 3, 1_000_000_000 + i / 3));
    }
    assert_eq!(src.write("r", None, body.as_bytes()).status, 204);
    let c = client(3);
    ensure_database(&c, &backend(1, &dst.url()), "r", &[]).unwrap();
    let (relay, cuts) = cutting_relay(src.port(), 20_000);
    let mut j = job(src, dst, "r", "autogen", "m", 100);
    j.source = backend(0, &format!("http://127.0.0.1:{relay}"));

    let (done, seen) = copy(&c, &j).unwrap();
    assert_eq!(cuts.load(Ordering::SeqCst), 1, "the answer was broken once");
    assert!(done.points >= 2000, "{done:?}");
    assert!(
        seen.windows(2).all(|w| w[0].last_time <= w[1].last_time),
        "{seen:?}"
    );
    assert_eq!(dst.rows("r", None, "m"), src.rows("r", None, "m"));
    assert!(verify(&c, &j).unwrap().complete);
}
