//! Checks of the test harness itself against real influxd (no proxy needed).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn four_influxd_start_in_parallel_and_answer_ping() {
    let start = Instant::now();
    let all = Influxd::start_many(4);
    let took = start.elapsed();
    let ports: std::collections::BTreeSet<u16> = all.iter().map(|d| d.port()).collect();
    assert_eq!(
        ports.len(),
        4,
        "every influxd needs its own port: {ports:?}"
    );
    for d in &all {
        assert!(
            ping_ok(&d.url()),
            "influxd {} does not answer /ping",
            d.url()
        );
    }
    eprintln!("4 influxd ready in {took:?}");
}

#[test]
fn influxd_keeps_its_data_across_restart_and_rows_split_tags_from_fields() {
    let mut d = Influxd::start();
    d.create_db("h");
    let r = d.write(
        "h",
        Some("s"),
        b"cpu\\ load,host=a\\ b v=1.5,i=3i,s=\"x \\\"y\\\"\",b=true 1700000000\n",
    );
    assert_eq!(r.status, 204, "direct write: {}", r.body);
    let expected = vec![Row::new(
        "cpu load",
        1_700_000_000_000_000_000,
        &[("host", "a b")],
        &[
            ("v", json!(1.5)),
            ("i", json!(3)),
            ("s", json!("x \"y\"")),
            ("b", json!(true)),
        ],
    )];
    assert_eq!(d.rows("h", None, "cpu load"), expected);
    let port = d.port();
    d.stop();
    assert!(!ping_ok(&d.url()), "stopped influxd still answers");
    d.restart();
    assert_eq!(d.port(), port, "restart must keep the port");
    assert_eq!(
        d.rows("h", None, "cpu load"),
        expected,
        "data lost across restart"
    );
    assert_eq!(
        d.measurements("h"),
        ["cpu load".to_string()].into_iter().collect()
    );
}

#[test]
fn fake_backends_misbehave_as_asked() {
    let hang = FakeBackend::start(Fault::Hang);
    let a = agent(Duration::from_millis(300));
    let t = Instant::now();
    assert!(
        a.get(&format!("{}/ping", hang.url())).call().is_err(),
        "hanging backend answered"
    );
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert!(hang.hits() >= 1);

    let err = FakeBackend::start(Fault::Error500);
    let r = http_get(&format!("{}/ping", err.url()), &[]);
    assert_eq!(r.status, 500);

    let slow = FakeBackend::start(Fault::Slow(Duration::from_millis(200)));
    let t = Instant::now();
    assert!(ping_ok(&slow.url()));
    assert!(t.elapsed() >= Duration::from_millis(180));

    assert!(!ping_ok(&refused_url()), "refused url answered");
}

#[test]
fn helpers_decode_and_encode_like_the_standards() {
    assert_eq!(percent_decode("a+b%26c%2"), "a b&c%2");
    assert_eq!(percent_decode("%zz%41"), "%zzA");
    assert_eq!(base64(b"u:p w"), "dTpwIHc=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(gunzip(&gzip(b"hello"), "roundtrip"), b"hello");
}
