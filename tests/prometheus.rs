//! Prometheus remote storage through the proxy (`/api/v1/prom/write` and
//! `/api/v1/prom/read`) in front of real influxd 1.6.7: a real Prometheus
//! writing and reading through it, the stored points compared with what
//! influxd's own remote-write endpoint stores, and bad input refused with
//! nothing written.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::*;
use influx_proxy::prom::proto::{
    Label, LabelMatcher, Query, ReadRequest, ReadResponse, Sample, TimeSeries, WriteRequest,
};
use prost::Message;
use serde_json::{json, Value};

/// A delivered batch shows up within this (flush_time 1 s, loaded machine).
const DELIVERY: Duration = Duration::from_secs(20);

/// The `max_body_size` of the bad-input proxy.
const MAX_BODY: usize = 64 * 1024;

/// A series of `labels` with `samples` (value, ms).
fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|&(name, value)| Label {
                name: name.into(),
                value: value.into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
    }
}

fn snappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy compress")
}

fn unsnappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .expect("snappy decompress")
}

/// A snappy `WriteRequest` body.
fn write_body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    snappy(&WriteRequest { timeseries }.encode_to_vec())
}

/// A snappy `ReadRequest` body of one query per matcher list (type, name, value).
fn read_body(queries: &[&[(i32, &str, &str)]], start_ms: i64, end_ms: i64) -> Vec<u8> {
    let queries = queries
        .iter()
        .map(|matchers| Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers
                .iter()
                .map(|&(t, name, value)| LabelMatcher {
                    r#type: t,
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
        })
        .collect();
    snappy(
        &ReadRequest {
            queries,
            accepted_response_types: vec![0],
        }
        .encode_to_vec(),
    )
}

/// An answer with its body as bytes.
struct Bin {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Bin {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// As the harness' `Resp`, for `assert_error`.
    fn resp(&self) -> Resp {
        Resp {
            status: self.status,
            headers: self.headers.iter().cloned().collect(),
            body: self.text(),
        }
    }
}

/// `POST <base><path>?db=<db>` with a remote-protocol body and the headers
/// Prometheus sends.
fn post_prom(base: &str, path: &str, params: &[(&str, &str)], body: &[u8]) -> Bin {
    let mut req = agent(Duration::from_secs(15)).post(&format!("{base}{path}"));
    for (k, v) in params {
        req = req.query(*k, *v);
    }
    let resp = req
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .send(body)
        .unwrap_or_else(|e| panic!("POST {base}{path}: {e}"));
    let (status, headers, body) = read_answer(resp).unwrap_or_else(|e| panic!("{e}"));
    Bin {
        status,
        headers,
        body,
    }
}

/// `SHOW SERIES` of `db` on `d`: the series keys as influxd writes them.
fn series_keys(d: &Influxd, db: &str) -> BTreeSet<String> {
    let v = d.query(db, "SHOW SERIES");
    v["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(str::to_string))
        .collect()
}

/// `SHOW FIELD KEYS` of `db` on `d`: (measurement, field, type).
fn field_keys(d: &Influxd, db: &str) -> BTreeSet<(String, String, String)> {
    let v = d.query(db, "SHOW FIELD KEYS");
    let mut out = BTreeSet::new();
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        for row in s["values"].as_array().into_iter().flatten() {
            out.insert((
                s["name"].as_str().unwrap_or_default().to_string(),
                row[0].as_str().unwrap_or_default().to_string(),
                row[1].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// A measurement name whose owner in a circle of two is backend `b`.
fn name_owned_by(db: &str, prefix: &str, b: usize) -> String {
    (0..100)
        .map(|i| format!("{prefix}_{i}"))
        .find(|m| owner(db, m, 2) == b)
        .expect("some name lands on each backend")
}

#[test]
fn prometheus_writes_and_reads_through_the_proxy() {
    let cluster = Cluster::start(&["prom"], |_| {});
    let proxy = cluster.proxy.url();
    // Samples Prometheus does not scrape, written through the proxy: a
    // remote-read query can only find them through the proxy.
    let now_ms = now_ns() / 1_000_000;
    let samples: Vec<(f64, i64)> = (0..5)
        .map(|i| (i as f64 * 1.5, now_ms - 60_000 + i * 10_000))
        .collect();
    let labels = [("__name__", "proxy_remote_metric"), ("job", "external")];
    let r = post_prom(
        &proxy,
        "/api/v1/prom/write",
        &[("db", "prom")],
        &write_body(vec![series(&labels, &samples)]),
    );
    assert_eq!(r.status, 204, "remote write: {}", r.text());
    cluster.wait_in_every_circle_v(DELIVERY, "prom", "proxy_remote_metric", 5);

    let prometheus = Prometheus::start(&format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ['{{{{self}}}}']
remote_write:
  - url: {proxy}/api/v1/prom/write?db=prom
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send: false
remote_read:
  - url: {proxy}/api/v1/prom/read?db=prom
    read_recent: true
"#
    ));

    // Its own scrapes arrive in influxd, on the owner of (prom, metric) in
    // each circle and nowhere else.
    for metric in ["up", "prometheus_build_info"] {
        for c in 0..2 {
            let owner = owner("prom", metric, 2);
            let d = cluster.backend(c, owner);
            poll_for(DELIVERY, &format!("{metric} in circle {}", c + 1), || {
                let v = d.query(
                    "prom",
                    &format!("SELECT count(value) FROM {}", quote_ident(metric)),
                );
                v["results"][0]["series"][0]["values"][0][1]
                    .as_u64()
                    .filter(|&n| n >= 2)
            });
            let other = cluster.backend(c, 1 - owner);
            assert!(
                !other.measurements("prom").contains(metric),
                "{metric} also on the non-owner of circle {}",
                c + 1
            );
            let rows = d.rows("prom", None, metric);
            let row = rows.first().expect("a row");
            assert_eq!(row.tags.get("__name__").map(String::as_str), Some(metric));
            assert_eq!(row.tags.get("job").map(String::as_str), Some("self"));
            assert!(row.fields.contains_key("value"), "{row:?}");
        }
    }

    // A range query through remote read answers what influxd holds.
    let stored: Vec<(i64, f64)> = cluster
        .owner_of(0, "prom", "proxy_remote_metric")
        .rows("prom", None, "proxy_remote_metric")
        .iter()
        .map(|r| {
            let v: f64 = r.fields["value"].parse().expect("float value");
            (r.time / 1_000_000, v)
        })
        .collect();
    let expected: Vec<(i64, f64)> = samples.iter().map(|&(v, t)| (t, v)).collect();
    assert_eq!(stored, expected, "influxd's points");
    let result = poll_for(DELIVERY, "proxy_remote_metric through remote read", || {
        let r = prometheus.query("proxy_remote_metric[5m]");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(result.len(), 1, "one series: {result:?}");
    assert_eq!(
        result[0]["metric"],
        json!({"__name__": "proxy_remote_metric", "job": "external"})
    );
    let got: Vec<(i64, f64)> = result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().expect("value").parse().expect("float");
            (t, v)
        })
        .collect();
    assert_eq!(got, stored, "Prometheus' answer through the proxy");
    drop(prometheus);
}

#[test]
fn remote_write_stores_what_influxd_itself_stores_and_bad_input_writes_nothing() {
    let reference = Influxd::start();
    reference.create_db("cmp");
    let cluster = Cluster::start(&["cmp", "prom"], |c| {
        c["max_body_size"] = json!(MAX_BODY);
        c["db_list"] = json!(["cmp", "prom", "absent"]);
    });
    let proxy = cluster.proxy.url();
    let now_ms = now_ns() / 1_000_000;
    let t = |i: i64| now_ms - 100_000 + i;

    // One request, as a Prometheus with awkward labels would send it.
    let timeseries = vec![
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("code", "200"),
            ],
            &[(1.0, t(0)), (2.5, t(1)), (1e300, t(2)), (-1e-7, t(3))],
        ),
        series(
            &[
                ("code", "500"),
                ("__name__", "http_requests_total"),
                ("job", "api"),
            ],
            &[(0.0, t(0)), (-0.0, t(1)), (f64::MAX, t(2))],
        ),
        series(
            &[
                ("__name__", "odd name,with=chars"),
                ("path", "/a b,c=d"),
                ("quote", "say \"hi\""),
                ("back", r"c:\dir\x"),
                ("utf", "héllo ☃"),
                ("cr", "a\rb\t"),
            ],
            &[(42.0, t(5))],
        ),
        series(
            &[("instance", "no-name:9090"), ("empty", "")],
            &[(7.0, t(6))],
        ),
        series(
            &[("__name__", "dup"), ("job", "first"), ("job", "last")],
            &[(3.0, t(7))],
        ),
        series(&[("__name__", "no_samples")], &[]),
    ];
    let body = write_body(timeseries);
    let direct = post_prom(
        &reference.url(),
        "/api/v1/prom/write",
        &[("db", "cmp")],
        &body,
    );
    assert_eq!(
        direct.status,
        204,
        "influxd's own remote write: {}",
        direct.text()
    );
    let ours = post_prom(&proxy, "/api/v1/prom/write", &[("db", "cmp")], &body);
    assert_eq!(ours.status, 204, "the proxy: {}", ours.text());

    let want_series = series_keys(&reference, "cmp");
    let want_rows = reference.all_rows("cmp", None);
    let want_fields = field_keys(&reference, "cmp");
    assert_eq!(
        want_rows.len(),
        10,
        "influxd stored every sample: {want_rows:#?}"
    );
    for c in 0..2 {
        let circle = [cluster.backend(c, 0), cluster.backend(c, 1)];
        // Points first: influxd indexes a series a moment before its
        // points can be read.
        wait_for_eq(
            DELIVERY,
            &format!("circle {} points", c + 1),
            &want_rows,
            || {
                circle
                    .iter()
                    .flat_map(|d| d.all_rows("cmp", None))
                    .collect::<BTreeSet<Row>>()
            },
        );
        let got_series: BTreeSet<_> = circle.iter().flat_map(|d| series_keys(d, "cmp")).collect();
        assert_eq!(got_series, want_series, "circle {} series keys", c + 1);
        let got_fields: BTreeSet<_> = circle.iter().flat_map(|d| field_keys(d, "cmp")).collect();
        assert_eq!(got_fields, want_fields, "circle {} field types", c + 1);
        // Each measurement only on its owner.
        for (b, d) in circle.iter().enumerate() {
            for m in d.measurements("cmp") {
                assert_eq!(
                    owner("cmp", &m, 2),
                    b,
                    "{m} on backend {b} of circle {}",
                    c + 1
                );
            }
        }
    }

    // influxd's own remote read finds the proxy's points, and the proxy's
    // read (relayed to the owner) answers as influxd's read of its own.
    let read = read_body(
        &[&[(0, "__name__", "http_requests_total"), (0, "job", "api")]],
        t(0) - 1,
        t(10),
    );
    let theirs = post_prom(
        &reference.url(),
        "/api/v1/prom/read",
        &[("db", "cmp")],
        &read,
    );
    let ours = post_prom(&proxy, "/api/v1/prom/read", &[("db", "cmp")], &read);
    assert_eq!(theirs.status, 200, "influxd's read: {}", theirs.text());
    assert_eq!(ours.status, 200, "the proxy's read: {}", ours.text());
    assert_eq!(ours.header("content-encoding"), Some("snappy"));
    assert_eq!(ours.header("content-type"), theirs.header("content-type"));
    let decode =
        |b: &Bin| ReadResponse::decode(unsnappy(&b.body).as_slice()).expect("ReadResponse");
    let (want, got) = (decode(&theirs), decode(&ours));
    assert_eq!(want.results.len(), 1);
    assert_eq!(want.results[0].timeseries.len(), 2, "{want:?}");
    assert_eq!(got, want, "the proxy's read answer");

    bad_input(&cluster);
}

/// Every bad request gets its status and text, and none writes anything:
/// at the end each backend holds only the points of the good requests.
fn bad_input(cluster: &Cluster) {
    let proxy = cluster.proxy.url();
    let now_ms = now_ns() / 1_000_000;
    let good = write_body(vec![series(
        &[("__name__", "must_not_exist")],
        &[(1.0, now_ms)],
    )]);
    let write = |params: &[(&str, &str)], body: &[u8]| {
        post_prom(&proxy, "/api/v1/prom/write", params, body).resp()
    };
    let prom = [("db", "prom")];

    let r = write(&prom, b"\x0anot snappy at all");
    assert_eq!(r.status, 400, "corrupt snappy: {}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unable to decode snappy body: ")),
        "corrupt snappy: {}",
        r.body
    );

    let whole = WriteRequest {
        timeseries: vec![series(&[("__name__", "must_not_exist")], &[(1.0, now_ms)])],
    }
    .encode_to_vec();
    let truncated = snappy(&whole[..whole.len() - 3]);
    let r = write(&prom, &truncated);
    assert_eq!(r.status, 400, "truncated protobuf: {}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unable to decode prometheus write request: ")),
        "truncated protobuf: {}",
        r.body
    );

    let r = write(&prom, &write_body(vec![]));
    assert_eq!((r.status, r.body.as_str()), (204, ""), "empty WriteRequest");
    // Only metadata (field 3, a MetricMetadata naming `foo`), as Prometheus
    // sends it apart from the samples.
    let r = write(&prom, &snappy(&[0x1a, 0x05, 0x12, 0x03, b'f', b'o', b'o']));
    assert_eq!((r.status, r.body.as_str()), (204, ""), "metadata only");
    let r = write(
        &prom,
        &write_body(vec![series(
            &[("__name__", "must_not_exist")],
            &[(f64::NAN, now_ms)],
        )]),
    );
    assert_eq!((r.status, r.body.as_str()), (204, ""), "only a NaN sample");

    // NaN and infinities dropped, the other sample stored.
    let nan_metric = "nan_metric";
    let r = write(
        &prom,
        &write_body(vec![series(
            &[("__name__", nan_metric)],
            &[
                (f64::NAN, now_ms - 3),
                (f64::INFINITY, now_ms - 2),
                (2.0, now_ms - 1),
                (f64::NEG_INFINITY, now_ms),
            ],
        )]),
    );
    assert_eq!((r.status, r.body.as_str()), (204, ""), "NaN and infinities");

    // Over max_body_size once decompressed (the compressed body is small).
    let big = WriteRequest {
        timeseries: (0..2000)
            .map(|_| {
                series(
                    &[
                        ("__name__", "must_not_exist"),
                        ("k", "vvvvvvvvvvvvvvvvvvvv"),
                    ],
                    &[(1.0, now_ms)],
                )
            })
            .collect(),
    }
    .encode_to_vec();
    assert!(big.len() > MAX_BODY);
    let packed = snappy(&big);
    assert!(packed.len() < MAX_BODY, "{} bytes compressed", packed.len());
    assert_error(
        &write(&prom, &packed),
        "decompressed too large",
        413,
        "Request Entity Too Large",
    );
    // Under it as protobuf, over it as line protocol (long labels on every
    // line of one series).
    let long = "x".repeat(1000);
    let many: Vec<(f64, i64)> = (0..100).map(|i| (1.0, now_ms - i)).collect();
    let labels = [("__name__", "must_not_exist"), ("long", long.as_str())];
    let packed = write_body(vec![series(&labels, &many)]);
    assert!(unsnappy(&packed).len() < MAX_BODY);
    assert_error(
        &write(&prom, &packed),
        "lines too large",
        413,
        "Request Entity Too Large",
    );
    // And over it as sent.
    let noise: Vec<u8> = (0..MAX_BODY + 10).map(|i| (i * 7919 % 251) as u8).collect();
    assert_error(
        &write(&prom, &noise),
        "body too large",
        413,
        "Request Entity Too Large",
    );

    // A series line protocol cannot carry refuses the whole request.
    let r = write(
        &prom,
        &write_body(vec![
            series(&[("__name__", "must_not_exist")], &[(1.0, now_ms)]),
            series(
                &[("__name__", "must_not_exist"), ("k", "two\nlines")],
                &[(1.0, now_ms)],
            ),
        ]),
    );
    assert_eq!(r.status, 400, "newline in a label: {}", r.body);

    // Databases: missing, forbidden, unknown to every backend.
    assert_error(&write(&[], &good), "no db", 400, "database not found");
    assert_error(
        &write(&[("db", "nope")], &good),
        "forbidden db",
        400,
        "database forbidden: nope",
    );
    assert_error(
        &write(&[("db", "absent")], &good),
        "db no backend has",
        404,
        "database not found: \"absent\"",
    );

    // Reads.
    let read = |params: &[(&str, &str)], body: &[u8]| {
        post_prom(&proxy, "/api/v1/prom/read", params, body).resp()
    };
    let name = [(0, "__name__", "up")];
    assert_error(
        &read(&prom, &read_body(&[&name[..], &name[..]], 0, now_ms)),
        "two queries",
        400,
        "prometheus read endpoint currently only supports one query at a time",
    );
    assert_error(
        &read(&prom, &read_body(&[&[(0, "job", "self")]], 0, now_ms)),
        "no __name__ matcher",
        400,
        "prometheus metric not found",
    );
    assert_error(
        &read(&[("db", "nope")], &read_body(&[&name[..]], 0, now_ms)),
        "read of a forbidden db",
        400,
        "database forbidden: nope",
    );
    let r = read(&prom, b"\xff\xff\xff\xff\x0f");
    assert_error(&r, "read announcing 4 GiB", 413, "Request Entity Too Large");
    let r = post_prom(&proxy, "/api/v1/prom/read", &prom, b"junk");
    assert_eq!(r.status, 400, "corrupt read body: {}", r.text());
    let get = agent(Duration::from_secs(5))
        .get(&format!("{proxy}/api/v1/prom/write?db=prom"))
        .call()
        .expect("GET");
    assert_eq!(get.status().as_u16(), 405);

    // Markers written last, one per backend: once they are in, everything
    // queued before them on that backend is too.
    let markers = [
        name_owned_by("prom", "marker", 0),
        name_owned_by("prom", "marker", 1),
    ];
    for m in &markers {
        let r = write(
            &prom,
            &write_body(vec![series(&[("__name__", m)], &[(1.0, now_ms)])]),
        );
        assert_eq!(r.status, 204, "marker {m}: {}", r.body);
    }
    for m in &markers {
        cluster.wait_in_every_circle_v(DELIVERY, "prom", m, 1);
    }
    for c in 0..2 {
        let mut stored = BTreeSet::new();
        for b in 0..2 {
            stored.extend(cluster.backend(c, b).measurements("prom"));
            assert!(cluster.backend(c, b).measurements("absent").is_empty());
        }
        let want: BTreeSet<String> = [nan_metric, &markers[0], &markers[1]]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(stored, want, "circle {}: measurements of db prom", c + 1);
        let rows = cluster
            .owner_of(c, "prom", nan_metric)
            .rows("prom", None, nan_metric);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].fields["value"], "2", "{rows:?}");
        assert_eq!(rows[0].time, (now_ms - 1) * 1_000_000);
    }
}

/// `count(value)` waits, as `Cluster::wait_in_every_circle` counts `v`.
trait WaitValue {
    fn wait_in_every_circle_v(&self, timeout: Duration, db: &str, mm: &str, points: u64);
}

impl WaitValue for Cluster {
    fn wait_in_every_circle_v(&self, timeout: Duration, db: &str, mm: &str, points: u64) {
        for c in 0..2 {
            let d = self.owner_of(c, db, mm);
            wait_for_eq(
                timeout,
                &format!("circle {} owner of {mm} to hold {points} values", c + 1),
                &points,
                || {
                    let v: Value =
                        d.query(db, &format!("SELECT count(value) FROM {}", quote_ident(mm)));
                    v["results"][0]["series"][0]["values"][0][1]
                        .as_u64()
                        .unwrap_or(0)
                },
            );
        }
    }
}

#[test]
fn remote_read_is_relayed_unchanged_to_the_owner_with_failover() {
    // Circle 1: an influxd without the database (its read fails); circle 2:
    // a fake backend that records what it gets. Reads start from a rotating
    // circle, so one of two reads fails over from circle 1.
    let failing = Influxd::start();
    let fake = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![failing.url()], vec![fake.url()]]);
    config["username"] = json!("admin");
    config["password"] = json!("secret");
    let proxy = Proxy::start(config);
    let auth = [
        ("db", "prom"),
        ("rp", "autogen"),
        ("u", "admin"),
        ("p", "secret"),
    ];
    let body = read_body(&[&[(0, "__name__", "up"), (2, "job", "s.*")]], 1, 2);
    let relayed = || {
        fake.recorded()
            .into_iter()
            .filter(|r| r.path() == "/api/v1/prom/read")
            .collect::<Vec<_>>()
    };

    let direct = post_prom(
        &failing.url(),
        "/api/v1/prom/read",
        &[("db", "prom")],
        &body,
    );
    assert!(
        direct.status >= 400,
        "influxd without the db answers {}",
        direct.status
    );
    let r = post_prom(&proxy.url(), "/api/v1/prom/read", &[("db", "prom")], &body);
    assert_error(&r.resp(), "no credentials", 401, "authentication failed");
    for i in 0..2 {
        let r = post_prom(&proxy.url(), "/api/v1/prom/read", &auth, &body);
        assert_eq!(
            r.status,
            204,
            "read {i}: the fake backend's answer: {}",
            r.text()
        );
    }
    let got = relayed();
    assert_eq!(got.len(), 2, "both reads reach the fake backend: {got:#?}");
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, body, "the body is relayed unchanged");
        let mut params = r.params();
        params.sort();
        assert_eq!(
            params,
            [
                ("db".to_string(), "prom".to_string()),
                ("rp".into(), "autogen".into())
            ],
            "the client's u and p stay with the proxy"
        );
        for (k, v) in [
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "snappy"),
            ("x-prometheus-remote-read-version", "0.1.0"),
        ] {
            assert_eq!(r.headers.get(k).map(String::as_str), Some(v), "{k}");
        }
    }

    // Without a `__name__` matcher nothing is relayed (the Go proxy's bug).
    let nameless = read_body(&[&[(0, "job", "self")]], 1, 2);
    let r = post_prom(&proxy.url(), "/api/v1/prom/read", &auth, &nameless);
    assert_error(&r.resp(), "no __name__", 400, "prometheus metric not found");
    assert_eq!(relayed().len(), 2, "a read without a metric was relayed");
}
