//! A write names a database: one that no backend has gets influxd's own 404,
//! one that some backend has (or that was just created, through the proxy
//! or directly on the backends) is taken, and with every backend down the
//! write is spooled as before.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A delivered batch shows up within this (flush_time 1 s, loaded machine).
const DELIVERY: Duration = Duration::from_secs(15);

/// One circle of one influxd behind a proxy.
fn single(dbs: &[&str]) -> (Influxd, Proxy) {
    let d = Influxd::start();
    for db in dbs {
        d.create_db(db);
    }
    let proxy = Proxy::start(config_for_urls(&[vec![d.url()]]));
    (d, proxy)
}

/// `POST /query` through the proxy; panics unless it is a 200 without error.
fn exec(proxy: &Proxy, q: &str) {
    let r = http_post(&format!("{}/query", proxy.url()), &[("q", q)], &[], b"");
    assert_eq!(r.status, 200, "{q} through the proxy: {}", r.body);
    assert!(!r.body.contains("\"error\""), "{q}: {}", r.body);
}

#[test]
fn write_to_missing_database_gets_influxds_own_404() {
    let (d, proxy) = single(&["have"]);
    let (status, body) = proxy.write("have", None, "m v=1 1\n");
    assert_eq!(
        (status, body.as_str()),
        (204, ""),
        "write to an existing db"
    );
    for db in ["nope", "a<b \"c\"\\d\t&\x01", "é\u{a0}"] {
        let direct = d.write(db, None, b"m v=1 1\n");
        let ours = proxy.write_with(&[("db", db)], &[], b"m v=1 1\n");
        assert_eq!(direct.status, 404, "influxd itself, db {db:?}");
        assert_eq!(
            (ours.status, ours.body.as_str()),
            (direct.status, direct.body.as_str()),
            "db {db:?}: the proxy's answer differs from influxd's"
        );
        assert_eq!(
            ours.header("content-type"),
            direct.header("content-type"),
            "db {db:?}"
        );
        // tiny_http sends ASCII header values only: influxd's raw UTF-8
        // `X-Influxdb-Error` is left out for a name beyond ASCII.
        if db.is_ascii() {
            assert_eq!(
                ours.header("x-influxdb-error"),
                direct.header("x-influxdb-error"),
                "db {db:?}"
            );
        }
    }
    // The body is not even read: a bad body to a missing database is a 404
    // too, as influxd answers it.
    let r = proxy.write_with(&[("db", "nope")], &[], b"m v=\n");
    assert_eq!(r.status, 404, "bad body to a missing db: {}", r.body);
    wait_for_eq(DELIVERY, "the point in `have`", &1, || {
        d.count_v("have", "m")
    });
}

#[test]
fn database_created_or_dropped_through_the_proxy_is_known_at_once() {
    let (d, proxy) = single(&[]);
    exec(&proxy, "CREATE DATABASE fresh");
    let (status, body) = proxy.write("fresh", None, "m v=1 1\n");
    assert_eq!(status, 204, "write right after CREATE DATABASE: {body}");
    wait_for_eq(DELIVERY, "the point in `fresh`", &1, || {
        d.count_v("fresh", "m")
    });
    exec(&proxy, "DROP DATABASE fresh");
    let (status, body) = proxy.write("fresh", None, "m v=1 2\n");
    assert_eq!(status, 404, "write right after DROP DATABASE: {body}");
}

#[test]
fn database_created_directly_on_the_backend_is_taken_at_the_next_write() {
    let (d, proxy) = single(&["other"]);
    let (status, _) = proxy.write("other", None, "m v=1 1\n");
    assert_eq!(status, 204, "the proxy knows the backend's databases");
    let (status, body) = proxy.write("late", None, "m v=1 1\n");
    assert_eq!(status, 404, "before the database exists: {body}");
    d.create_db("late");
    let (status, body) = proxy.write("late", None, "m v=1 1\n");
    assert_eq!(
        status, 204,
        "the write after CREATE DATABASE on influxd: {body}"
    );
    wait_for_eq(DELIVERY, "the point in `late`", &1, || {
        d.count_v("late", "m")
    });
}

#[test]
fn database_on_one_backend_is_enough_and_is_created_on_the_others() {
    let db = "some";
    let mm = "cpu";
    let influxds = Influxd::start_many(4);
    // Only the owner of `mm` in circle 2 has the database.
    let o = owner(db, mm, 2);
    influxds[2 + o].create_db(db);
    let proxy = Proxy::start(two_by_two_config(&influxds));
    let cluster = Cluster { influxds, proxy };
    let (status, body) = cluster.proxy.write(db, None, &format!("{mm} v=1 1\n"));
    assert_eq!(status, 204, "write: {body}");
    cluster.wait_in_every_circle(DELIVERY, db, mm, 1);
}

#[test]
fn with_every_backend_down_writes_are_spooled_and_arrive_later() {
    let mut d = Influxd::start();
    d.create_db("later");
    d.stop();
    let proxy = Proxy::start(config_for_urls(&[vec![d.url()]]));
    // Nobody can say whether the database exists: taken, as before.
    let started = Instant::now();
    let (status, body) = proxy.write("later", None, "m v=1 1\n");
    assert_eq!(status, 204, "write with the backend down: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the check took {:?}",
        started.elapsed()
    );
    d.restart();
    wait_for_eq(DELIVERY, "the point in `later`", &1, || {
        d.count_v("later", "m")
    });
}

/// A backend that answers `SHOW DATABASES` without a list (a null backend,
/// or one that keeps its databases to itself) cannot say a database is
/// missing: writes are taken, and the proxy stops asking at every write.
#[test]
fn backends_without_a_list_are_not_asked_at_every_write() {
    let fake = FakeBackend::start(Fault::Record);
    let proxy = Proxy::start(config_for_urls(&[vec![fake.url()]]));
    let writes = 30;
    for i in 0..writes {
        let (status, body) = proxy.write("anydb", None, &format!("m v={i} {i}\n"));
        assert_eq!(status, 204, "write {i}: {body}");
    }
    let listings = fake
        .recorded()
        .iter()
        .filter(|r| r.is_database_listing())
        .count();
    assert!(
        listings <= 3,
        "{listings} SHOW DATABASES for {writes} writes: the proxy asked at every write"
    );
}
