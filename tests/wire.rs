//! What the proxy sends to a backend (seen by a recording fake backend next
//! to real influxd), flush_size, and proxy authentication order.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const DELIVERY: Duration = Duration::from_secs(10);

/// The `/write` requests a recording backend got.
fn writes(fake: &FakeBackend) -> Vec<Recorded> {
    fake.recorded()
        .into_iter()
        .filter(|r| r.path() == "/write")
        .collect()
}

/// Every line of every recorded `/write`, gunzipped.
fn written_lines(fake: &FakeBackend) -> BTreeSet<String> {
    writes(fake)
        .iter()
        .flat_map(|r| {
            let body = gunzip(&r.body, "backend write body");
            String::from_utf8_lossy(&body)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn batches_reach_backends_as_gzip_posts_with_db_rp_and_nanosecond_lines() {
    let db = "we ird&db";
    let rp = "r p";
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(db);
        d.exec(&format!(
            "CREATE RETENTION POLICY {} ON {} DURATION 0s REPLICATION 1",
            quote_ident(rp),
            quote_ident(db)
        ));
    }
    let fake = FakeBackend::start(Fault::Record);
    // circle-1: two real influxd; circle-2: the recorder alone (owns everything).
    let config = config_for_urls(&[vec![influxds[0].url(), influxds[1].url()], vec![fake.url()]]);
    let proxy = Proxy::start(config);
    let body =
        "cpu,host=a v=1 1700000000\ncpu\\ x,host=b v=2i 1700000001\nmem s=\"a b\" 1700000002\n";
    let r = proxy.write_with(
        &[("db", db), ("rp", rp), ("precision", "s")],
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 204, "write: {:?}", r.body);

    let want: BTreeSet<String> = [
        "cpu,host=a v=1 1700000000000000000",
        "cpu\\ x,host=b v=2i 1700000001000000000",
        "mem s=\"a b\" 1700000002000000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    wait_for_eq(
        DELIVERY,
        "the recorder to get every line, in nanoseconds",
        &want,
        || written_lines(&fake),
    );
    for w in writes(&fake) {
        assert_eq!(w.method, "POST", "backend write method: {w:?}");
        assert_eq!(
            w.headers.get("content-encoding").map(String::as_str),
            Some("gzip"),
            "backend write Content-Encoding: {:?}",
            w.headers
        );
        assert_eq!(w.param("db").as_deref(), Some(db), "db param of {}", w.url);
        assert_eq!(w.param("rp").as_deref(), Some(rp), "rp param of {}", w.url);
        let precision = w.param("precision");
        assert!(
            matches!(precision.as_deref(), None | Some("n") | Some("ns")),
            "lines are in ns but the backend write says precision {precision:?} ({})",
            w.url
        );
    }
    // And the real backends of circle-1 stored them in the policy.
    for stored in ["cpu", "cpu x", "mem"] {
        let d = &influxds[owner(db, stored, 2)];
        wait_until(
            DELIVERY,
            &format!("{stored} in {rp:?} on its circle-1 owner"),
            || d.rows(db, Some(rp), stored).len() == 1,
        );
    }
}

#[test]
fn backend_credentials_are_sent_on_pings_and_writes() {
    let d = Influxd::start();
    d.create_db("cred");
    let fake = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![d.url()], vec![fake.url()]]);
    config["circles"][1]["backends"][0]["username"] = json!("u");
    config["circles"][1]["backends"][0]["password"] = json!("p w");
    let proxy = Proxy::start(config);
    let (status, text) = proxy.write("cred", None, "cpu v=1 1\n");
    assert_eq!(status, 204, "{text:?}");
    wait_until(DELIVERY, "a /write and a /ping at the recorder", || {
        let rec = fake.recorded();
        rec.iter().any(|r| r.path() == "/write") && rec.iter().any(|r| r.path() == "/ping")
    });
    let want = format!("Basic {}", base64(b"u:p w"));
    for r in fake.recorded() {
        assert_eq!(
            r.headers.get("authorization"),
            Some(&want),
            "{} {} without the backend's credentials",
            r.method,
            r.path()
        );
    }
}

#[test]
fn flush_size_sends_a_batch_before_flush_time() {
    let db = "fs";
    let cluster = Cluster::start(&[db], |c| {
        c["flush_time"] = json!(30);
        c["flush_size"] = json!(10);
    });
    let mm = "sized";
    let body: String = (0..25)
        .map(|i| format!("{mm},host=a v={i}i {}\n", 1_700_000_000_000_000_000i64 + i))
        .collect();
    let t = Instant::now();
    let (status, text) = cluster.proxy.write(db, None, &body);
    assert_eq!(status, 204, "{text:?}");
    for c in 0..2 {
        let d = cluster.owner_of(c, db, mm);
        wait_until(
            Duration::from_secs(5),
            &format!(
                "at least 20 of 25 points on circle {} with flush_size 10, flush_time 30",
                c + 1
            ),
            || d.rows(db, None, mm).len() >= 20,
        );
    }
    eprintln!("flush_size batches arrived after {:?}", t.elapsed());
}

#[test]
fn auth_is_checked_after_method_and_before_precision() {
    let cluster = Cluster::start(&["au"], |c| {
        c["username"] = json!("admin");
        c["password"] = json!("s3cret");
    });
    let p = &cluster.proxy;
    let url = format!("{}/write", p.url());
    let fail = |r: &Resp, what: &str| {
        assert_eq!(r.status, 401, "{what}: status (body {:?})", r.body);
        assert_eq!(
            r.body, "{\"error\":\"authentication failed\"}\n",
            "{what}: body"
        );
    };
    // Method first.
    let r = http_get(&url, &[("db", "au")]);
    assert_eq!(
        r.status, 405,
        "GET /write without credentials: {:?}",
        r.body
    );
    // Then auth, before precision and db.
    fail(
        &http_post(
            &url,
            &[("db", "au"), ("precision", "xx")],
            &[],
            b"cpu v=1 1\n",
        ),
        "bad precision, no credentials",
    );
    fail(
        &http_post(&url, &[], &[], b"cpu v=1 1\n"),
        "no db, no credentials",
    );
    fail(
        &http_post(
            &url,
            &[("db", "au"), ("u", "admin"), ("p", "wrong")],
            &[],
            b"cpu v=1 1\n",
        ),
        "wrong password",
    );
    // Every credential source works.
    let basic = format!("Basic {}", base64(b"admin:s3cret"));
    for (what, params, headers) in [
        ("u/p params", vec![("u", "admin"), ("p", "s3cret")], vec![]),
        (
            "basic auth",
            vec![],
            vec![("Authorization", basic.as_str())],
        ),
        (
            "token header",
            vec![],
            vec![("Authorization", "Token admin:s3cret")],
        ),
    ] {
        let mut all = vec![("db", "au")];
        all.extend(params);
        let r = http_post(&url, &all, &headers, b"cpu v=1 1\n");
        assert_eq!(r.status, 204, "{what}: {:?}", r.body);
    }
    // With valid credentials the precision check comes next.
    let r = http_post(
        &url,
        &[
            ("db", "au"),
            ("u", "admin"),
            ("p", "s3cret"),
            ("precision", "xx"),
        ],
        &[],
        b"cpu v=1 1\n",
    );
    assert_eq!(r.status, 400, "authenticated, bad precision: {:?}", r.body);
    // /ping needs no credentials.
    let (status, _, _) = p.get("/ping");
    assert_eq!(status, 204, "/ping with auth enabled");
}
