//! Bad `/write` requests get InfluxDB's answers, and no request, however
//! malformed, panics a thread or stops the server.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const DELIVERY: Duration = Duration::from_secs(10);

#[test]
fn invalid_precision_is_400_with_the_allowed_list() {
    let cluster = Cluster::start(&["bi"], |_| {});
    for p in ["xx", "us", "S", "nanoseconds", " s"] {
        let r = cluster
            .proxy
            .write_with(&[("db", "bi"), ("precision", p)], &[], b"cpu v=1\n");
        assert_error(
            &r,
            &format!("precision={p:?}"),
            400,
            &format!("invalid precision \"{p}\" (use n, ns, u, ms, s, m or h)"),
        );
    }
    // Every accepted precision is accepted.
    for p in ["", "n", "ns", "u", "ms", "s", "m", "h"] {
        let r = cluster
            .proxy
            .write_with(&[("db", "bi"), ("precision", p)], &[], b"cpu v=1 1\n");
        assert_eq!(r.status, 204, "precision={p:?}: {:?}", r.body);
    }
}

#[test]
fn write_without_db_is_400_database_not_found() {
    let cluster = Cluster::start(&[], |_| {});
    let r = cluster.proxy.write_with(&[], &[], b"cpu v=1\n");
    assert_error(&r, "no db parameter", 400, "database not found");
    let r = cluster.proxy.write_with(&[("db", "")], &[], b"cpu v=1\n");
    assert_error(&r, "db=", 400, "database not found");
}

#[test]
fn precision_is_checked_before_db() {
    let cluster = Cluster::start(&[], |_| {});
    let r = cluster
        .proxy
        .write_with(&[("precision", "xx")], &[], b"cpu v=1\n");
    assert_error(
        &r,
        "no db and bad precision",
        400,
        "invalid precision \"xx\" (use n, ns, u, ms, s, m or h)",
    );
}

#[test]
fn db_outside_db_list_is_forbidden() {
    let cluster = Cluster::start(&["allowed"], |c| {
        c["db_list"] = json!(["allowed"]);
    });
    let r = cluster
        .proxy
        .write_with(&[("db", "other")], &[], b"cpu v=1\n");
    assert_error(&r, "db=other", 400, "database forbidden: other");
    let r = cluster
        .proxy
        .write_with(&[("db", "allowed")], &[], b"cpu v=1 1\n");
    assert_eq!(r.status, 204, "db=allowed: {:?}", r.body);
}

#[test]
fn gzip_header_with_plain_body_is_400() {
    let cluster = Cluster::start(&["gz"], |_| {});
    let r = cluster.proxy.write_with(
        &[("db", "gz")],
        &[("Content-Encoding", "gzip")],
        b"cpu v=1 1\n",
    );
    assert_eq!(r.status, 400, "plain body sent as gzip: {:?}", r.body);
    let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("gzip"), "error should mention gzip: {msg:?}");
    assert_eq!(r.header("x-influxdb-error"), Some(msg.as_str()));

    // A valid gzip header followed by a corrupt stream.
    let mut corrupt = gzip(b"cpu v=1 1\ncpu v=2 2\n");
    let n = corrupt.len();
    corrupt.truncate(n - 10);
    corrupt.extend_from_slice(b"0123456789");
    let r = cluster
        .proxy
        .write_with(&[("db", "gz")], &[("Content-Encoding", "gzip")], &corrupt);
    assert_eq!(r.status, 400, "corrupt gzip stream: {:?}", r.body);
}

#[test]
fn body_over_max_body_size_is_413() {
    let db = "big";
    let cluster = Cluster::start(&[db], |c| {
        c["max_body_size"] = json!(1000);
    });
    let line = "cpu,host=a v=1 1700000000000000000\n"; // 35 bytes
    let big = line.repeat(60); // 2100 bytes
    let r = cluster.proxy.write_with(&[("db", db)], &[], big.as_bytes());
    assert_error(
        &r,
        "plain body of 2100 bytes",
        413,
        "Request Entity Too Large",
    );

    let gz = gzip(line.repeat(200).as_bytes()); // 7000 bytes once expanded
    assert!(
        gz.len() < 1000,
        "gzip body itself must be small: {}",
        gz.len()
    );
    let r = cluster
        .proxy
        .write_with(&[("db", db)], &[("Content-Encoding", "gzip")], &gz);
    assert_error(
        &r,
        "gzip body expanding to 7000 bytes",
        413,
        "Request Entity Too Large",
    );

    // Just under the limit, plain and gzip: accepted and stored.
    let small = "small,host=a v=1 1700000000000000000\n".repeat(20); // 740 bytes
    let r = cluster
        .proxy
        .write_with(&[("db", db)], &[], small.as_bytes());
    assert_eq!(r.status, 204, "740-byte body: {:?}", r.body);
    let small_gz = "smallgz,host=a v=1 1700000000000000000\n".repeat(20); // 780 bytes
    let r = cluster.proxy.write_with(
        &[("db", db)],
        &[("Content-Encoding", "gzip")],
        &gzip(small_gz.as_bytes()),
    );
    assert_eq!(
        r.status, 204,
        "gzip body expanding to 780 bytes: {:?}",
        r.body
    );
    for mm in ["small", "smallgz"] {
        for c in 0..2 {
            let d = cluster.owner_of(c, db, mm);
            wait_until(DELIVERY, &format!("{mm} on circle {}", c + 1), || {
                !d.rows(db, None, mm).is_empty()
            });
        }
    }
    // Nothing of the refused bodies was stored.
    for c in 0..2 {
        let d = cluster.owner_of(c, db, "cpu");
        assert!(
            d.rows(db, None, "cpu").is_empty(),
            "a 413 body was partly stored on circle {}",
            c + 1
        );
    }
}

/// Lines InfluxDB refuses: the proxy answers exactly what influxd answers for
/// the same body, and still stores the valid lines of the body.
#[test]
fn unparsable_lines_get_the_same_answer_as_influxdb_and_valid_lines_are_kept() {
    let db = "lp";
    let (cluster, reference) = cluster_and_reference(db);
    let ts = "1700000000000000000";
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("cpu\n".into(), vec![]),
        ("cpu,host=a\n".into(), vec![]),
        (",host=a v=1\n".into(), vec![]),
        (
            format!("good_a v=1 {ts}\ncpu\ngood_b v=2 {ts}\n"),
            vec!["good_a", "good_b"],
        ),
        (
            format!("good_c v=3 {ts}\ncpu\n,host=a v=1\n"),
            vec!["good_c"],
        ),
        (format!(",host=a v=1\ngood_d v=4 {ts}"), vec!["good_d"]),
        ("\n\n\n".into(), vec![]),
        ("".into(), vec![]),
        (format!("# a comment\ngood_e v=5 {ts}\n"), vec!["good_e"]),
    ];
    for (body, good) in &cases {
        let want = reference.write(db, None, body.as_bytes());
        let got = cluster
            .proxy
            .write_with(&[("db", db)], &[], body.as_bytes());
        assert_eq!(
            (got.status, got.body.as_str()),
            (want.status, want.body.as_str()),
            "body {body:?}: proxy answer (left) differs from influxd's (right)"
        );
        for mm in good {
            for c in 0..2 {
                let d = cluster.owner_of(c, db, mm);
                wait_until(
                    DELIVERY,
                    &format!("valid line {mm} of body {body:?} on circle {}", c + 1),
                    || d.rows(db, None, mm).len() == 1,
                );
            }
        }
    }
    // The refused lines were not stored anywhere (and nothing else was).
    let good: std::collections::BTreeSet<String> = cases
        .iter()
        .flat_map(|(_, g)| g.iter().map(|s| s.to_string()))
        .collect();
    for c in 0..2 {
        for b in 0..2 {
            let have = cluster.backend(c, b).measurements(db);
            let want: std::collections::BTreeSet<String> = good
                .iter()
                .filter(|m| owner(db, m, 2) == b)
                .cloned()
                .collect();
            assert_eq!(have, want, "measurements on {}", backend_name(c, b));
        }
    }
}

/// influxd takes text after a string field's closing quote, so a line can
/// end in a backslash (`f="b"\`): the timestamp the proxy appends would be
/// read as part of the field, and each circle would stamp the point with
/// its own time. Such a line is refused, the others of the body are kept.
#[test]
fn a_line_that_reads_differently_once_stamped_is_refused_and_not_stored() {
    let db = "stamp";
    let cluster = Cluster::start(&[db], |_| {});
    // Last in the body: a backslash before a newline would escape it.
    let body = "good v=1 1700000000000000000\ntrail f=\"b\"\\";
    let got = cluster
        .proxy
        .write_with(&[("db", db)], &[], body.as_bytes());
    assert_eq!(got.status, 400, "{}", got.body);
    assert!(
        got.body.contains("partial write") && got.body.contains("ambiguous quotes"),
        "{}",
        got.body
    );
    cluster.wait_in_every_circle(DELIVERY, db, "good", 1);
    for c in 0..2 {
        for b in 0..2 {
            let have = cluster.backend(c, b).measurements(db);
            assert!(
                !have.contains("trail"),
                "the refused line reached {}",
                backend_name(c, b)
            );
        }
    }
}

/// Every other kind of line InfluxDB refuses, alone and between good lines,
/// with the precisions that change the timestamp check: the proxy answers what
/// influxd answers for the same body and keeps the good lines.
#[test]
fn other_refused_lines_get_the_same_answer_as_influxdb() {
    let db = "lp2";
    let (cluster, reference) = cluster_and_reference(db);
    let bad_lines = [
        "cpu,a v=1",
        "cpu,a= v=1",
        "cpu,=a v=1",
        "cpu, v=1",
        "cpu,a=b=c v=1",
        "cpu,a=1,a=2 v=1",
        "cpu v",
        "cpu =1",
        "cpu v=1,=2",
        "cpu v=",
        "cpu v=,w=1",
        "cpu v=1,",
        "cpu v=1,,w=2",
        "cpu v=1 abc",
        "cpu v=1 1.5",
        "cpu v=1 0x5",
        "cpu v=1 1 2",
        "cpu v=1x",
        "cpu v=1.2.3",
        "cpu v=--1",
        "cpu v=1.5i",
        "cpu v=1e",
        "cpu v=\"abc",
        "cpu v=tru",
        "cpu v=NaN",
        "cpu v=99999999999999999999i",
        "cpu v=1 99999999999999999999",
        "cpu v=1 9223372036854775808",
        "cpu v=1 -9223372036854775808",
    ];
    let mut cases: Vec<(Option<&str>, String, Vec<String>)> = Vec::new();
    for (k, bad) in bad_lines.iter().enumerate() {
        cases.push((None, format!("{bad}\n"), vec![]));
        let (a, b) = (format!("ok_{k}_a"), format!("ok_{k}_b"));
        let body = format!("{a} v=1 1700000000000000000\n{bad}\n{b} v=2 1700000000000000000\n");
        cases.push((None, body, vec![a, b]));
    }
    // Timestamps that only overflow once scaled by the precision.
    for (k, (p, line)) in [
        ("h", "cpu v=1 9223372036854775807"),
        ("m", "cpu v=1 9223372036854775807"),
        ("s", "cpu v=1 9223372036854775807"),
        ("ms", "cpu v=1 99999999999999999"),
        ("u", "cpu v=1 -9223372036854775808"),
        ("h", "cpu v=1 -9223372036854775808"),
        ("h", "cpu v=1 2562047"),
        ("h", "cpu v=1 2562048"),
    ]
    .into_iter()
    .enumerate()
    {
        let a = format!("okp_{k}");
        let body = format!("{a} v=1 472223\n{line}\n");
        cases.push((Some(p), body, vec![a]));
    }
    // A series key longer than InfluxDB accepts.
    let long = format!("{} v=1 1\n", "k".repeat(70_000));
    cases.push((None, long, vec![]));

    let sent: Vec<(Option<&str>, String)> = cases
        .iter()
        .map(|(p, body, _)| (*p, body.clone()))
        .collect();
    assert_answers_as_influxd(&cluster, &reference, db, &sent);
    // Exactly what the reference stored was stored, each on its owner (a
    // quote left open swallows the next line in both; `2562047` hours is a
    // valid `cpu` point).
    let good = reference.measurements(db);
    for c in 0..2 {
        for b in 0..2 {
            let d = cluster.backend(c, b);
            let want: std::collections::BTreeSet<String> = good
                .iter()
                .filter(|m| owner(db, m, 2) == b)
                .cloned()
                .collect();
            wait_for_eq(
                DELIVERY,
                &format!("measurements on {}", backend_name(c, b)),
                &want,
                || d.measurements(db),
            );
        }
    }
}

/// A broad corpus of bad (and borderline) lines, each alone and between good
/// lines: the proxy's answer is byte for byte influxd's, so the reason names
/// the first thing InfluxDB's reader trips over (`m a,b=v` is an invalid
/// boolean: the key runs to the `=`, and `v` is read as a boolean).
#[test]
fn bad_lines_are_named_as_influxdb_reads_them() {
    let db = "lp3";
    let (cluster, reference) = cluster_and_reference(db);
    // Lines that end in blanks are left out: the proxy trims them, as the
    // Go proxy does; so is `m a=1,a="x"` (a field type conflict inside one
    // point: influxd's shard refuses it after parsing, the proxy forwards it).
    // `m` is replaced by a measurement of its own per body so
    // field types never conflict between cases.
    let corpus = [
        "m a,b=v",
        "m 1,t=1=v",
        "m a,b=1",
        "m a b=1",
        "m a=1 b=1",
        "m a=1,b",
        "m a=1,b,c=2",
        "m a=1,b=",
        "m a=,b=1",
        "m a=",
        "m =1",
        "m ,a=1",
        "m a=1,,b=1",
        "m a=1,",
        "m a==1",
        "m a=1=2",
        "m a=t=1",
        "m a=tru",
        "m a=truee",
        "m a=True,b=TRUE,c=F",
        "m a=tRUE",
        "m a=fals",
        "m a=falsy",
        "m a=1.2.3",
        "m a=1i2",
        "m a=1i2i",
        "m a=-",
        "m a=-i",
        "m a=i",
        "m a=1ii",
        "m a=1.5i",
        "m a=1e5i",
        "m a=1e",
        "m a=1e+",
        "m a=1e-",
        "m a=1e+5",
        "m a=1E5",
        "m a=e5",
        "m a=1ee5",
        "m a=1e5e5",
        "m a=1.e5",
        "m a=.e5",
        "m a=.",
        "m a=-.",
        "m a=-.5",
        "m a=..5",
        "m a=1.",
        "m a=+1",
        "m a=--1",
        "m a=1-",
        "m a=1-2",
        "m a=1+2",
        "m a=NaN",
        "m a=nan",
        "m a=Nan",
        "m a=n",
        "m a=N",
        "m a=no",
        "m a=Inf",
        "m a=inf",
        "m a=-Inf",
        "m a=1u",
        "m a=1ui",
        "m a=1iu",
        "m a=\"abc",
        "m a=\"abc\"",
        "m a=\"abc\"x",
        "m a=\"abc\"x=1",
        "m a=\"ab\\\"c",
        "m a=\"a\",b=\"b",
        "m a=1,b=\"x",
        "m a=abc",
        "m a=x",
        "m a=1\\ 2",
        "m a=1\\,b=2",
        "m a=t\\ rue",
        "m a=1x",
        "m a=0x10",
        "m a=1_000",
        "m a=99999999999999999999i",
        "m a=9223372036854775808i",
        "m a=-9223372036854775809i",
        "m a=9223372036854775807i",
        "m a=99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999",
        "m a=1e400",
        "m a=1e-400",
        "m a=-1e400",
        "m a=1,a=2",
        "m a=1 abc",
        "m a=1 1.5",
        "m a=1 1e5",
        "m a=1 0x5",
        "m a=1 1 2",
        "m a=1 -",
        "m a=1 +5",
        "m a=1 1i",
        "m a=1 99999999999999999999",
        "m a=1 9223372036854775808",
        "m a=1 -9223372036854775808",
        "m a=1 -9223372036854775807",
        "m a=1 9223372036854775807",
        "m,a v=1",
        "m,a= v=1",
        "m,=a v=1",
        "m, v=1",
        "m,a=b=c v=1",
        "m,a=1,a=2 v=1",
        "m,a=1, v=1",
        "m,a=1,,b=2 v=1",
        "m,a=b,c v=1",
        "m,a=b c=d e=f",
        "m,a=b",
        "m,a=b,",
        "m,a\\=b=c v=1",
        "m,a=b\\ c v=1",
        "m,a=b\\=c v=1",
        "m\\ x v=1",
        "m\\,x v=1",
        " m v=1",
        ",m v=1",
        "=m v=1",
        "m=x v=1",
        "m\"x v=1",
        "m v=\"x y\" 1",
        "m v=\"x,y=z\"",
        "m v=\"x\\\" 1",
        "m v=1,w=\"z",
        "m v=t,w=tru",
        "m v=tru,w=1.2.3",
        "m v=1.2.3,w=tru",
        "m v\\ =1",
        "m v\\,=1",
        "m v\\==1",
        "m \\ =1",
        "m ,=1",
        "m v=1,\\ =2",
        "m  v=1",
        "m\tv=1",
        "m v=1\t1",
        "m v= 1",
        "m v =1",
        "m v=1,w =2",
        "m v=1, w=2",
        "m v=t,",
        "m v=1i,",
        "m v=\"a\",",
        "m v=\"a\"w=1",
        "m v=\"a\"\",w=1",
        "m v=\"\"",
        "m v=\"\",w=1",
        "m v=1e5,w=2",
        "m v=1.5E-3,w=-2i",
        "m v=F",
        "m v=f1",
        "m v=t1",
        "m v=Tru",
        "m v=-0",
        "m v=-0i",
        "m v=0.0.",
        "m v=5.",
        "m v=.5.",
        "m v=1,v=2 1",
        "m v=-1e",
        "m v=-e",
        "m v=1,w=-",
        "m v=1,w=1e",
        "m v=t,w=1e",
        "m a=1 x 2",
        "m a=1 - 2",
        "m a=1 1 x",
        "m a=1 --5",
        "m a=1e5-",
        "m a=1e-+5",
        "m a=1e5.5",
        "m a=\"x\"y\"z",
        "m a=1,b\"c=2",
        "m a=t\"x",
        "m a=\"a\\\\\"",
        "m,a=b\\\\ v=1",
        "m,a=b\\ v=1",
        "m v=1\\\\",
        "m,a=\"b c\" v=1",
        "m,a=b,a=b v=1",
        "m,b=1,a=2,b=3 v=1",
        "m, a=1 v=1",
        "m,a=1  v=1",
        "m,a=1 ,v=1",
        "m v=\"\\\\\"",
        "m v=\"\\\"",
        "m v=1 1\\\\",
        "m v=1 -0",
        "m v=1 00",
        "m v=\"x\" 1x",
        "m v=t 1",
        "m\\\\ v=1",
        "\\ m v=1",
        "m v=1,w=2,w=3",
        "m v=1i 1",
        "m v=0x1p-2",
        "m v=-1.5e-3",
        "m v=1..",
        "m v=.1e",
        "m v=+",
        "m v=-N",
        "m v=N1",
        "m v=\"é\"",
        "mé v=1",
        "m v=1e5 x",
        "m v=1 9223372036854775807 x",
        "m,a=b=c,d v=1",
        "m,a=,b=c v=1",
        "m,a v=1 2",
        "m v=1,w",
        "m v=1 ,",
        "m =",
        "m a",
        "m ,",
        "m \"",
        "m v=\"a\" \"",
        "m v=1e-5i",
        "m v=-0.0",
        "m v=1E+308",
        "m v=1.8E+308",
        "m v=-1.8E308",
        "m,a",
        "m,ab",
        "m,a==b v=1",
        "m,a=b= v=1",
        "m \t=1",
        "m \tv=1",
        "m v=1 \t5",
        "m,\\\\=a=b v=1",
        "m,a\\\\ =b v=1",
        "m,a=\\\\ v=1",
        "m,a=b,c=\\\\, v=1",
        "m,=",
        "m,a=",
        "m,a=b,c",
        "m,a=b,c=",
    ];
    let mut bodies = Vec::new();
    for (k, line) in corpus.iter().enumerate() {
        bodies.push((None, line.replacen('m', &format!("m{k}_"), 1)));
        let between = format!(
            "g{k} v=1 1700000000000000000\n{}\ng{k}_b v=2 1700000000000000000\n",
            line.replacen('m', &format!("mb{k}_"), 1)
        );
        bodies.push((None, between));
    }
    assert_answers_as_influxd(&cluster, &reference, db, &bodies);
}

/// A 2x2 cluster and a lone influxd to compare it with, both holding `db`.
fn cluster_and_reference(db: &str) -> (Cluster, Influxd) {
    let cluster = Cluster::start(&[db], |_| {});
    let reference = Influxd::start();
    reference.create_db(db);
    (cluster, reference)
}

/// Sends each `(precision, body)` to `reference` and to the proxy and fails,
/// listing them, if any body gets a different status or body.
fn assert_answers_as_influxd(
    cluster: &Cluster,
    reference: &Influxd,
    db: &str,
    bodies: &[(Option<&str>, String)],
) {
    let mut mismatches = Vec::new();
    for (precision, body) in bodies {
        let want = reference.write(db, *precision, body.as_bytes());
        let mut params = vec![("db", db)];
        if let Some(p) = precision {
            params.push(("precision", p));
        }
        let got = cluster.proxy.write_with(&params, &[], body.as_bytes());
        if (got.status, &got.body) != (want.status, &want.body) {
            let shown: String = body.chars().take(200).collect();
            let cut = |t: &str| -> String { t.chars().take(300).collect() };
            mismatches.push(format!(
                "precision {precision:?} body {shown:?}\n   proxy: {} {:?}\n  influx: {} {:?}",
                got.status,
                cut(&got.body),
                want.status,
                cut(&want.body)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} bodies answered differently from influxd:\n{}",
        mismatches.len(),
        bodies.len(),
        mismatches.join("\n")
    );
}

/// `POST path` with extra header lines (each ending in CRLF) and a body.
fn post(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A request head (`head` lines joined by CRLF, then an empty line) and body.
fn raw(head: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = head.join("\r\n").into_bytes();
    r.extend_from_slice(b"\r\n\r\n");
    r.extend_from_slice(body);
    r
}

/// Raw requests that a robust server must survive.
fn garbage(db: &str) -> Vec<(&'static str, Vec<u8>)> {
    let w = format!("/write?db={db}");
    let pw = format!("POST {w} HTTP/1.1");
    let with_precision = |p: &str, body: &[u8]| post(&format!("{w}&precision={p}"), "", body);
    let gz = "Content-Encoding: gzip\r\n";
    let max = b"cpu v=1 9223372036854775807\n";
    let min = b"cpu v=1 -9223372036854775808\n";
    let many_headers: Vec<String> = std::iter::once("GET /ping HTTP/1.1".to_string())
        .chain((0..5000).map(|i| format!("X-H{i}: v")))
        .collect();
    let many_headers: Vec<&str> = many_headers.iter().map(|s| s.as_str()).collect();
    let big_header = format!("X-Big: {}", "a".repeat(200_000));
    let big_url = format!("GET /write?db={} HTTP/1.1", "a".repeat(100_000));
    let long_ts = format!("cpu v=1 {}\n", "9".repeat(500));
    let long_mm = format!("{} v=1 1\n", "m".repeat(1 << 20));
    let pipelined = [
        "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        format!("POST {w} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
        "GET /nope HTTP/1.1\r\n\r\n".to_string(),
    ]
    .concat();
    vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("binary junk", b"\x00\x01\x02\xff\xfe\r\n\r\n".to_vec()),
        ("request line only", raw(&["GET /ping"], b"")),
        ("http/0.9", raw(&["GET /ping HTTP/0.9"], b"")),
        ("unknown protocol", raw(&["GET /ping FOO/9.9"], b"")),
        (
            "huge header",
            raw(&["GET /ping HTTP/1.1", "Host: x", &big_header], b""),
        ),
        ("many headers", raw(&many_headers, b"")),
        ("huge url", raw(&[&big_url, "Host: x"], b"")),
        (
            "method PURGE",
            raw(&["PURGE /write?db=x HTTP/1.1", "Host: x"], b""),
        ),
        (
            "method BREW",
            raw(
                &["BREW /write?db=x HTTP/1.1", "Content-Length: 7"],
                b"cpu v=1",
            ),
        ),
        (
            "method CONNECT",
            raw(&["CONNECT 127.0.0.1:1 HTTP/1.1", "Host: x"], b""),
        ),
        (
            "method TRACE",
            raw(&["TRACE /write HTTP/1.1", "Host: x"], b""),
        ),
        ("db=%ff", post("/write?db=%ff", "", b"cpu v=1\n")),
        (
            "db=%zz precision=%ff",
            post("/write?db=%zz&precision=%ff", "", b"cpu v=1\n"),
        ),
        ("precision=xx", with_precision("xx", b"cpu v=1\n")),
        (
            "duplicate params",
            with_precision("s&db=e&precision=ms", b"cpu v=1 1\n"),
        ),
        ("path with NUL", post("/wri%00te?db=x", "", b"cpu v=1\n")),
        ("bad percent in path", post("/%zz%", "", b"")),
        (
            "invalid utf-8 body",
            post(&w, "", b"\xff\xfe v=1\n\xc3\x28 f=1 1\nc,h=\xff v=1 1\n"),
        ),
        ("body of only newlines", post(&w, "", &b"\n".repeat(10_000))),
        (
            "NUL bytes in lines",
            post(&w, "", b"cpu\x00 v=1\n\x00\x00\ncpu v=1\x00 1\n"),
        ),
        (
            "lone backslashes",
            post(&w, "", b"\\\ncpu\\\n\\ v=1\n,\n \n=\ncpu,=,= =\n\\\\\\\n"),
        ),
        (
            "unterminated string",
            post(&w, "", b"cpu v=\"unterminated\n"),
        ),
        ("hour overflow", with_precision("h", max)),
        ("minute overflow", with_precision("m", max)),
        ("second overflow", with_precision("s", max)),
        (
            "ms overflow",
            with_precision("ms", b"cpu v=1 99999999999999999\n"),
        ),
        ("u underflow", with_precision("u", min)),
        ("hour underflow", with_precision("h", min)),
        ("timestamp too long", post(&w, "", long_ts.as_bytes())),
        ("1 MB measurement", post(&w, "", long_mm.as_bytes())),
        ("gzip header, empty body", post(&w, gz, b"")),
        (
            "gzip header, junk body",
            post(&w, gz, b"\x1f\x8b\x08\x00junk"),
        ),
        ("gzip bomb", post(&w, gz, &gzip(&vec![b'\n'; 16 << 20]))),
        (
            "short body",
            raw(&[&pw, "Host: x", "Content-Length: 100"], b"cpu v=1\n"),
        ),
        (
            "absurd content-length",
            raw(&[&pw, "Content-Length: 99999999999999999999"], b"cpu v=1\n"),
        ),
        (
            "negative content-length",
            raw(&[&pw, "Content-Length: -1"], b"cpu v=1\n"),
        ),
        (
            "bad chunked encoding",
            raw(&[&pw, "Transfer-Encoding: chunked"], b"zz\r\ncpu\r\n"),
        ),
        (
            "both chunked and length",
            raw(
                &[&pw, "Transfer-Encoding: chunked", "Content-Length: 5"],
                b"5\r\ncpu v\r\n0\r\n\r\n",
            ),
        ),
        ("pipelined requests", pipelined.into_bytes()),
        (
            "header without colon",
            raw(&["GET /ping HTTP/1.1", "Host x", "junk"], b""),
        ),
        (
            "bad auth header",
            raw(&["GET /health HTTP/1.1", "Authorization: Basic %%%"], b""),
        ),
        (
            "replica with junk",
            raw(&["GET /replica?db=%ff&mm=%00 HTTP/1.1"], b""),
        ),
    ]
}

#[test]
fn malformed_requests_never_stop_the_server() {
    let db = "junk";
    // A small body limit keeps the gzip bomb cheap to build and to refuse.
    let mut cluster = Cluster::start(&[db], |c| {
        c["max_body_size"] = json!(4 << 20);
    });
    let addr = cluster.proxy.addr();
    for (what, request) in garbage(db) {
        let t = Instant::now();
        let answer = raw_request(addr, &request, Duration::from_millis(1500));
        let status = raw_status(&answer);
        eprintln!("{what}: {status:?} in {:?}", t.elapsed());
        cluster.proxy.assert_running();
        assert!(
            ping_ok(&cluster.proxy.url()),
            "after {what:?} (answered {status:?} in {:?}) /ping no longer answers",
            t.elapsed()
        );
        if what == "gzip bomb" {
            assert_eq!(status, Some(413), "gzip bomb past max_body_size");
        }
    }
    // A valid write still works and arrives in both circles.
    let (status, text) =
        cluster
            .proxy
            .write(db, None, "after_junk,host=a v=42 1700000000000000000\n");
    assert_eq!(status, 204, "valid write after the junk: {text:?}");
    for c in 0..2 {
        let d = cluster.owner_of(c, db, "after_junk");
        let want = vec![Row::new(
            "after_junk",
            1_700_000_000_000_000_000,
            &[("host", "a")],
            &[("v", json!(42))],
        )];
        wait_for_eq(
            DELIVERY,
            &format!("the valid write on circle {}", c + 1),
            &want,
            || d.rows(db, None, "after_junk"),
        );
    }
    cluster.proxy.assert_running();
    let log = cluster.proxy.log();
    assert!(
        !log.contains("panicked"),
        "a thread panicked; log {}:\n{}",
        cluster.proxy.log_path().display(),
        file_tail(cluster.proxy.log_path(), 40)
    );
}

#[test]
fn stalled_uploads_do_not_block_other_clients() {
    let db = "stall";
    // Client sockets time out after `idle_timeout`: a stalled body frees
    // its worker then, so the proxy is back within that bound.
    let mut cluster = Cluster::start(&[db], |c| c["idle_timeout"] = json!(1));
    let addr = cluster.proxy.addr();
    // Many clients that announce a body and never finish sending it.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        let _ = s.write_all(
            format!(
                "POST /write?db={db} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\ncpu v=1"
            )
            .as_bytes(),
        );
        stalled.push(s);
    }
    // And many that connect and say nothing at all.
    for _ in 0..8 {
        stalled.push(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect"));
    }
    // Each stalled body holds a worker for at most idle_timeout (plus one
    // janitor sweep of 0.5 s), so with W workers the proxy answers again
    // within about 8 / W seconds here.
    wait_until(
        Duration::from_secs(10),
        "/ping to answer while 16 clients stall (idle_timeout 1 s)",
        || ping_ok(&cluster.proxy.url()),
    );
    let (status, text) =
        cluster
            .proxy
            .write(db, None, "unblocked,host=a v=1 1700000000000000000\n");
    assert_eq!(status, 204, "write while clients stall: {text:?}");
    for c in 0..2 {
        let d = cluster.owner_of(c, db, "unblocked");
        wait_until(DELIVERY, &format!("the write on circle {}", c + 1), || {
            d.rows(db, None, "unblocked").len() == 1
        });
    }
    drop(stalled);
    cluster.proxy.assert_running();
}
