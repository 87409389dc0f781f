//! The InfluxDB 2.x compatibility endpoints: `/api/v2/write` into real
//! influxd 1.6.7 behind a 2-circle proxy (written with the Python v2 client
//! `influxdb_client`, read back with InfluxQL), and `/api/v2/query` (Flux),
//! which influxd 1.6.7 lacks, against recording fake backends: routing to
//! the owner of the bucket's database and measurement, failover, every
//! refusal of the Go proxy, and the v2 client's query API.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::query::run_python_json;
use common::*;
use serde_json::{json, Value};

const USER: &str = "v2user";
const PASS: &str = "v2-pass";

/// The Python v2 client writes through the proxy: bucket `db/rp` and `db`,
/// four precisions, one client gzipping its bodies; a client without the
/// token gets the 401 as an exception.
const PY_WRITE: &str = r#"
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

port, user, password, t0 = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
url = "http://127.0.0.1:" + port
out = {}
with InfluxDBClient(url=url, token=user + ":" + password, org="ignored") as client:
    w = client.write_api(write_options=SYNCHRONOUS)
    w.write(bucket="v2db/autogen", write_precision=WritePrecision.S,
            record=[Point("cpu").tag("host", "a").field("v", 1.5).time(t0, WritePrecision.S),
                    Point("mem").tag("host", "b").field("v", 2.5).time(t0, WritePrecision.S)])
    w.write(bucket="v2db", write_precision=WritePrecision.MS,
            record="disk,host=c v=3.5 %d" % (t0 * 1000 + 5))
    w.write(bucket="v2db/short", write_precision=WritePrecision.NS,
            record="net,host=d v=4.5 %d" % (t0 * 10**9 + 7))
    out["plain"] = True
with InfluxDBClient(url=url, token=user + ":" + password, org="ignored", enable_gzip=True) as client:
    client.write_api(write_options=SYNCHRONOUS).write(
        bucket="v2db", write_precision=WritePrecision.US,
        record="swap,host=e v=5.5 %d" % (t0 * 10**6 + 9))
    out["gzip"] = True
with InfluxDBClient(url=url, token="nobody:wrong", org="ignored") as client:
    try:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="v2db", record="cpu v=9")
        out["unauthorized"] = "accepted"
    except ApiException as e:
        out["unauthorized"] = [e.status, json.loads(e.body)["error"]]
print(json.dumps(out))
"#;

#[test]
fn python_v2_client_writes_land_on_their_owners_in_both_circles() {
    let cluster = Cluster::start(&["v2db"], |c| {
        c["username"] = json!(USER);
        c["password"] = json!(PASS);
    });
    for d in &cluster.influxds {
        d.exec("CREATE RETENTION POLICY short ON v2db DURATION 0s REPLICATION 1");
    }
    let t0: i64 = 1_700_000_000;
    let got = run_python_json(
        PY_WRITE,
        &[
            &cluster.proxy.port().to_string(),
            USER,
            PASS,
            &t0.to_string(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(got["plain"], json!(true), "{got}");
    assert_eq!(got["gzip"], json!(true), "{got}");
    assert_eq!(
        got["unauthorized"],
        json!([401, "authentication failed"]),
        "{got}"
    );

    let s = 1_000_000_000;
    // (measurement, retention policy, host, v, time in ns)
    let points = [
        ("cpu", None, "a", 1.5, t0 * s),
        ("mem", None, "b", 2.5, t0 * s),
        ("disk", None, "c", 3.5, t0 * s + 5_000_000),
        ("net", Some("short"), "d", 4.5, t0 * s + 7),
        ("swap", None, "e", 5.5, t0 * s + 9_000),
    ];
    for (mm, rp, host, v, time) in points {
        let want = vec![Row::new(mm, time, &[("host", host)], &[("v", json!(v))])];
        // On the owner in each circle, in the bucket's retention policy.
        for c in 0..2 {
            let owner = cluster.owner_of(c, "v2db", mm);
            let rows = poll_for(
                Duration::from_secs(15),
                &format!("{mm} on its owner in circle {}", c + 1),
                || Some(owner.rows("v2db", rp, mm)).filter(|r| !r.is_empty()),
            );
            assert_eq!(rows, want, "{mm} on its owner in circle {}", c + 1);
            let other = cluster.backend(c, 1 - owner_index(mm));
            assert!(
                other.rows("v2db", rp, mm).is_empty(),
                "{mm} also on the non-owner of circle {}",
                c + 1
            );
        }
        // Back through the proxy's /query with InfluxQL.
        let from = match rp {
            Some(rp) => format!("\"{rp}\".\"{mm}\""),
            None => format!("\"{mm}\""),
        };
        let q = format!("SELECT * FROM {from} GROUP BY *");
        let r = http_get(
            &format!("{}/query", cluster.proxy.url()),
            &[
                ("db", "v2db"),
                ("q", &q),
                ("epoch", "ns"),
                ("u", USER),
                ("p", PASS),
            ],
        );
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert_eq!(rows_of(&r.json()), want, "{q} through the proxy");
    }
}

/// URL parameters of a request.
type Params<'a> = &'a [(&'a str, &'a str)];

fn owner_index(mm: &str) -> usize {
    owner("v2db", mm, 2)
}

/// `POST /api/v2/write` with URL parameters, headers and a body.
fn write_v2(proxy: &Proxy, params: &[(&str, &str)], headers: &[(&str, &str)], body: &[u8]) -> Resp {
    http_post(
        &format!("{}/api/v2/write", proxy.url()),
        params,
        headers,
        body,
    )
}

#[test]
fn v2_write_refusals_have_the_go_texts_and_write_nothing() {
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db("v2e");
        d.create_db("other");
    }
    let mut config = config_for_urls(&[vec![influxds[0].url()], vec![influxds[1].url()]]);
    config["db_list"] = json!(["v2e", "nodb"]);
    config["max_body_size"] = json!(1000);
    let proxy = Proxy::start(config);

    let r = http_get(
        &format!("{}/api/v2/write", proxy.url()),
        &[("bucket", "v2e")],
    );
    assert_error(&r, "GET", 405, "method not allow");
    let cases: [(Params, u16, &str); 8] = [
        (
            &[("bucket", "v2e"), ("precision", "n")],
            400,
            r#"invalid precision "n" (use ns, us, ms or s)"#,
        ),
        (
            &[("bucket", "v2e"), ("precision", "h")],
            400,
            r#"invalid precision "h" (use ns, us, ms or s)"#,
        ),
        // The precision is checked before the bucket.
        (
            &[("precision", "u")],
            400,
            r#"invalid precision "u" (use ns, us, ms or s)"#,
        ),
        (
            &[("org", "x")],
            404,
            r#"bucket name "" is missing a slash; not in "database/retention-policy" format"#,
        ),
        (
            &[("bucket", "/rp")],
            404,
            r#"bucket name "/rp" is in db/rp form but has an empty database"#,
        ),
        (
            &[("bucket", "/")],
            404,
            r#"bucket name "/" is in db/rp form but has an empty database"#,
        ),
        (
            &[("bucket", "other/autogen")],
            400,
            "database forbidden: other",
        ),
        // Allowed, but no backend has it: influxd's 404.
        (&[("bucket", "nodb")], 404, r#"database not found: "nodb""#),
    ];
    for (params, status, message) in cases {
        let r = write_v2(&proxy, params, &[], b"refused v=1 1\n");
        assert_error(&r, &format!("{params:?}"), status, message);
    }

    let big = format!("refused v=1 {}\n", "1".repeat(1000));
    let r = write_v2(&proxy, &[("bucket", "v2e")], &[], big.as_bytes());
    assert_error(
        &r,
        "a body over max_body_size",
        413,
        "Request Entity Too Large",
    );
    let bomb = gzip("refused v=1 1\n".repeat(200).as_bytes());
    assert!(bomb.len() < 1000);
    let r = write_v2(
        &proxy,
        &[("bucket", "v2e")],
        &[("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_error(
        &r,
        "a gzip body over max_body_size once gunzipped",
        413,
        "Request Entity Too Large",
    );
    let r = write_v2(
        &proxy,
        &[("bucket", "v2e")],
        &[("Content-Encoding", "gzip")],
        b"refused v=1 1\n",
    );
    assert_error(
        &r,
        "a body that is not gzip",
        400,
        "unable to decode gzip body",
    );

    // influxd's partial write: the valid lines are stored, in both circles.
    let r = write_v2(
        &proxy,
        &[("bucket", "v2e/autogen"), ("precision", "s")],
        &[],
        b"part v=1 1\npart v=\npart v=2 2\n",
    );
    assert_error(
        &r,
        "a partial write",
        400,
        "partial write: unable to parse 'part v=': missing field value dropped=0",
    );
    // A good write after every refusal: once it is delivered, a refused
    // point would have been too.
    let r = write_v2(
        &proxy,
        &[("bucket", "v2e"), ("precision", "ms")],
        &[],
        b"refused v=7 7\n",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    for (c, d) in influxds.iter().enumerate() {
        wait_for_eq(
            Duration::from_secs(15),
            &format!("the last write in circle {}", c + 1),
            &1,
            || d.count_v("v2e", "refused"),
        );
        assert_eq!(
            d.rows("v2e", None, "refused"),
            vec![Row::new("refused", 7_000_000, &[], &[("v", json!(7))])],
            "circle {}: only the accepted point",
            c + 1
        );
        assert_eq!(
            d.rows("v2e", None, "part"),
            vec![
                Row::new("part", 1_000_000_000, &[], &[("v", json!(1))]),
                Row::new("part", 2_000_000_000, &[], &[("v", json!(2))]),
            ],
            "circle {}: the valid lines of the partial write",
            c + 1
        );
        assert!(d.measurements("other").is_empty(), "circle {}", c + 1);
    }
}

// ---------------------------------------------------------------------------
// /api/v2/query against recording fakes (influxd 1.6.7 has no Flux).

/// An annotated CSV answer as influxd 1.8 gives one.
const CSV: &str = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r\n\
#group,false,false,true,true,false,false,true,true,true\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,host\r\n\
,,0,2021-01-01T00:00:00Z,2021-01-02T00:00:00Z,2021-01-01T10:00:00Z,1.5,v,cpu,a\r\n\
,,0,2021-01-01T00:00:00Z,2021-01-02T00:00:00Z,2021-01-01T11:00:00Z,2.5,v,cpu,a\r\n\r\n";

const CSV_TYPE: &str = "text/csv; charset=utf-8";

fn flux_ok() -> FakeBackend {
    FakeBackend::start(Fault::Answer {
        path: "/api/v2/query",
        status: 200,
        content_type: CSV_TYPE,
        body: CSV,
    })
}

fn flux_failing(error: &'static str) -> FakeBackend {
    FakeBackend::start(Fault::Answer {
        path: "/api/v2/query",
        status: 500,
        content_type: "application/json",
        body: error,
    })
}

/// The Flux requests a fake received.
fn flux_requests(fake: &FakeBackend) -> Vec<Recorded> {
    fake.recorded()
        .into_iter()
        .filter(|r| r.path() == "/api/v2/query")
        .collect()
}

fn query_v2(proxy: &Proxy, params: &[(&str, &str)], headers: &[(&str, &str)], body: &[u8]) -> Resp {
    http_post(
        &format!("{}/api/v2/query", proxy.url()),
        params,
        headers,
        body,
    )
}

fn flux_text(bucket: &str, mm: &str) -> String {
    format!(
        "from(bucket: \"{bucket}\")\n  |> range(start: -1h)\n  |> filter(fn: (r) => r[\"_measurement\"] == \"{mm}\")"
    )
}

/// A measurement whose owner under the Go proxy's key for bucket `db/rp`
/// differs from its owner under `db` (where the writes go), in a circle of 2.
fn measurement_the_go_proxy_misroutes(db: &str, rp: &str) -> String {
    (0..100)
        .map(|i| format!("m{i}"))
        .find(|mm| owner(&format!("{db}/{rp}"), mm, 2) != owner(db, mm, 2))
        .expect("some measurement is placed differently")
}

#[test]
fn flux_query_reaches_the_owner_of_its_database_and_measurement() {
    let fakes: Vec<FakeBackend> = (0..4).map(|_| flux_ok()).collect();
    let proxy = Proxy::start(config_for_urls(&[
        vec![fakes[0].url(), fakes[1].url()],
        vec![fakes[2].url(), fakes[3].url()],
    ]));
    let mm = measurement_the_go_proxy_misroutes("fdb", "autogen");
    let owner_idx = owner("fdb", &mm, 2);
    let json_body = json!({"query": flux_text("fdb/autogen", &mm), "type": "flux", "dialect": {"header": true}})
        .to_string();
    let flux_body = flux_text("fdb", &mm);
    let sent: [(&str, &[u8]); 4] = [
        ("application/json", json_body.as_bytes()),
        ("application/vnd.flux", flux_body.as_bytes()),
        ("application/json; charset=utf-8", json_body.as_bytes()),
        ("application/vnd.flux", flux_body.as_bytes()),
    ];
    for (content_type, body) in sent {
        let r = query_v2(
            &proxy,
            &[("org", "my-org"), ("pretty", "true")],
            &[
                ("Content-Type", content_type),
                ("Accept", "application/csv"),
                ("Accept-Encoding", "identity"),
            ],
            body,
        );
        assert_eq!(r.status, 200, "{content_type}: {}", r.body);
        assert_eq!(r.body, CSV, "{content_type}: the owner's answer");
        assert_eq!(r.header("content-type"), Some(CSV_TYPE));
    }
    // Every request reached the owner of (fdb, mm) in some circle, the
    // backend that holds the writes of mm: a db/rp bucket included (the Go
    // proxy keys it by "fdb/autogen", whose owner is the other backend).
    let mut got = Vec::new();
    for (i, fake) in fakes.iter().enumerate() {
        let requests = flux_requests(fake);
        if i % 2 != owner_idx {
            let bodies: Vec<_> = requests
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect();
            assert!(
                bodies.is_empty(),
                "backend {i} owns nothing of {mm}: {bodies:?}"
            );
        }
        got.extend(requests.into_iter().map(|r| (i / 2, r)));
    }
    assert_eq!(got.len(), 4, "one backend request per query: {got:?}");
    let circles: BTreeSet<usize> = got.iter().map(|(c, _)| *c).collect();
    assert_eq!(circles.len(), 2, "reads spread over both circles: {got:?}");
    let mut bodies: Vec<(String, String)> = got
        .iter()
        .map(|(_, r)| {
            assert_eq!(r.method, "POST");
            assert_eq!(
                r.url, "/api/v2/query",
                "the client's query string is dropped"
            );
            assert_eq!(
                r.headers.get("accept").map(String::as_str),
                Some("application/csv")
            );
            assert_eq!(
                r.headers.get("accept-encoding").map(String::as_str),
                Some("identity")
            );
            (
                r.headers.get("content-type").cloned().unwrap_or_default(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect();
    bodies.sort();
    let mut want: Vec<(String, String)> = sent
        .iter()
        .map(|(t, b)| (t.to_string(), String::from_utf8_lossy(b).into_owned()))
        .collect();
    want.sort();
    assert_eq!(bodies, want, "raw bodies and content types, unchanged");
    // The write placement agrees (the proxy's own /replica).
    let r = http_get(
        &format!("{}/replica", proxy.url()),
        &[("db", "fdb"), ("mm", &mm)],
    );
    let names: Vec<String> = r
        .json()
        .as_array()
        .expect("replica list")
        .iter()
        .map(|e| {
            e["backend"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        vec![backend_name(0, owner_idx), backend_name(1, owner_idx)]
    );
}

#[test]
fn flux_query_fails_over_when_the_owner_refuses_or_errs() {
    let body = json!({"query": flux_text("fdb", "cpu")}).to_string();
    // Circle 1 answers 500, circle 2 answers: every query gets circle 2's.
    let failing = flux_failing("{\"error\":\"flux engine broke\"}\n");
    let good = flux_ok();
    let proxy = Proxy::start(config_for_urls(&[vec![failing.url()], vec![good.url()]]));
    for i in 0..4 {
        let r = query_v2(
            &proxy,
            &[],
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!((r.status, r.body.as_str()), (200, CSV), "query {i}");
    }
    assert!(
        !flux_requests(&failing).is_empty(),
        "circle 1 was asked first at least once"
    );
    assert_eq!(flux_requests(&good).len(), 4);
    drop(proxy);

    // Circle 1's backend refuses connections.
    let good = flux_ok();
    let proxy = Proxy::start(config_for_urls(&[vec![refused_url()], vec![good.url()]]));
    for i in 0..4 {
        let r = query_v2(
            &proxy,
            &[],
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!((r.status, r.body.as_str()), (200, CSV), "query {i}");
    }
    assert_eq!(flux_requests(&good).len(), 4);
}

#[test]
fn flux_query_with_every_owner_failing_is_a_400_with_the_last_error() {
    let a = flux_failing("{\"error\":\"engine a broke\"}\n");
    let b = flux_failing("{\"error\":\"engine b broke\"}\n");
    let proxy = Proxy::start(config_for_urls(&[vec![a.url()], vec![b.url()]]));
    let body = flux_text("fdb", "cpu");
    let mut messages = BTreeSet::new();
    for _ in 0..2 {
        let r = query_v2(
            &proxy,
            &[],
            &[("Content-Type", "application/vnd.flux")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 400, "{}", r.body);
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(r.header("x-influxdb-error"), Some(message.as_str()));
        messages.insert(message);
    }
    // The circle asked last alternates, and so does the error.
    assert_eq!(
        messages,
        BTreeSet::from(["engine a broke".to_string(), "engine b broke".to_string()])
    );
    assert_eq!(flux_requests(&a).len(), 2);
    assert_eq!(flux_requests(&b).len(), 2);
}

#[test]
fn flux_refusals_have_the_go_texts_and_reach_no_backend() {
    let fake = flux_ok();
    let mut config = config_for_urls(&[vec![fake.url()]]);
    config["db_list"] = json!(["fdb"]);
    config["max_body_size"] = json!(2000);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    let proxy = Proxy::start(config);
    let auth = [("u", USER), ("p", PASS)];
    let json_type = ("Content-Type", "application/json");
    let flux_type = ("Content-Type", "application/vnd.flux");

    let r = http_get(&format!("{}/api/v2/query", proxy.url()), &auth);
    assert_error(&r, "GET", 405, "method not allow");
    let r = query_v2(
        &proxy,
        &[],
        &[flux_type],
        flux_text("fdb", "cpu").as_bytes(),
    );
    assert_error(&r, "no credentials", 401, "authentication failed");

    let q = |m: &str| json!({ "query": m }).to_string();
    let cases: Vec<((&str, &str), String, &str)> = vec![
        (("Content-Type", "application json"), "{}".into(), "mime: expected slash after first token"),
        (("Content-Type", "/json"), "{}".into(), "mime: no media type"),
        (("Content-Type", "application/json; a"), "{}".into(), "mime: invalid media parameter"),
        (json_type, "{}".into(), "request body requires either spec or query"),
        (json_type, r#"{"query":"","spec":null}"#.into(), "request body requires either spec or query"),
        (flux_type, "".into(), "request body requires either spec or query"),
        (json_type, r#"{"query":"x","type":"influxql"}"#.into(), "unknown query type: influxql"),
        (json_type, q("buckets()"), "can't get bucket"),
        (json_type, q(r#"from(bucketID: "1") |> filter(fn: (r) => r._measurement == "cpu")"#), "can't get bucket"),
        (json_type, q(r#"from(bucket: "fdb" |> range(start: -1h"#), "illegal flux query"),
        (flux_type, r#"from(bucket: "fdb") |> filter(fn: (r) => r._measurement != "cpu")"#.into(), "measurement must use =="),
        (flux_type, r#"from(bucket: "fdb") |> filter(fn: (r) => r._measurement == "a" or r._measurement == "b")"#.into(), "illegal multi measurements"),
        (flux_type, r#"from(bucket: "fdb") |> range(start: -1h)"#.into(), "can't get measurement"),
        (json_type, q(&flux_text("other/autogen", "cpu")), "database forbidden: other"),
        (json_type, q(&flux_text("other", "cpu")), "database forbidden: other"),
        (json_type, q(&flux_text("/autogen", "cpu")), r#"bucket name "/autogen" is in db/rp form but has an empty database"#),
        (json_type, json!({"spec": {"operations": [{"kind": "influxDBFrom", "spec": {"bucket": "fdb"}}]}}).to_string(), "can't get measurement"),
        (json_type, json!({"spec": {"operations": []}}).to_string(), "can't get bucket"),
    ];
    for (content_type, body, message) in &cases {
        let r = query_v2(&proxy, &auth, &[*content_type], body.as_bytes());
        assert_error(&r, &format!("{content_type:?} {body}"), 400, message);
    }
    for body in ["from(", "[1]", r#"{"query": 5}"#] {
        let r = query_v2(&proxy, &auth, &[json_type], body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            message.starts_with("failed parsing request body as JSON: "),
            "{body}: {message}"
        );
    }
    // max_body_size, before and after gunzip.
    let long = format!("{}\n// {}", flux_text("fdb", "cpu"), "x".repeat(2000));
    let r = query_v2(&proxy, &auth, &[flux_type], long.as_bytes());
    assert_error(
        &r,
        "a body over max_body_size",
        413,
        "Request Entity Too Large",
    );
    let r = query_v2(
        &proxy,
        &auth,
        &[flux_type, ("Content-Encoding", "gzip")],
        &gzip(long.as_bytes()),
    );
    assert_error(
        &r,
        "a gzip body over max_body_size once gunzipped",
        413,
        "Request Entity Too Large",
    );
    assert!(
        flux_requests(&fake).is_empty(),
        "a refused query reached the backend"
    );

    // A gzipped body that fits is relayed decompressed.
    let text = flux_text("fdb", "cpu");
    let r = query_v2(
        &proxy,
        &auth,
        &[flux_type, ("Content-Encoding", "gzip")],
        &gzip(text.as_bytes()),
    );
    assert_eq!((r.status, r.body.as_str()), (200, CSV));
    let requests = flux_requests(&fake);
    assert_eq!(requests.len(), 1);
    assert_eq!(String::from_utf8_lossy(&requests[0].body), text);
    assert_eq!(requests[0].headers.get("content-encoding"), None);
}

/// The Python v2 client's query API through the proxy: the raw CSV and
/// the parsed tables.
const PY_QUERY: &str = r#"
from influxdb_client import InfluxDBClient

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
query = 'from(bucket: "fdb/autogen") |> range(start: -1d) |> filter(fn: (r) => r._measurement == "cpu")'
with InfluxDBClient(url="http://127.0.0.1:" + port, token=user + ":" + password, org="ignored") as client:
    api = client.query_api()
    raw = api.query_raw(query).data.decode()
    tables = api.query(query)
    rows = [[r.get_measurement(), r.get_field(), r.get_value(), r.values.get("host"), r.get_time().isoformat()]
            for t in tables for r in t.records]
print(json.dumps({"raw": raw, "rows": rows}))
"#;

#[test]
fn python_v2_client_query_api_returns_the_owner_csv() {
    let fake = flux_ok();
    let mut config = config_for_urls(&[vec![fake.url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    let proxy = Proxy::start(config);
    let got: Value = run_python_json(
        PY_QUERY,
        &[&proxy.port().to_string(), USER, PASS],
        Duration::from_secs(60),
    );
    assert_eq!(got["raw"], json!(CSV), "{got}");
    assert_eq!(
        got["rows"],
        json!([
            ["cpu", "v", 1.5, "a", "2021-01-01T10:00:00+00:00"],
            ["cpu", "v", 2.5, "a", "2021-01-01T11:00:00+00:00"],
        ]),
        "{got}"
    );
    let requests = flux_requests(&fake);
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert_eq!(r.url, "/api/v2/query");
        let sent: Value =
            serde_json::from_slice(&r.body).expect("the client's JSON body, unchanged");
        assert!(
            sent["query"]
                .as_str()
                .is_some_and(|q| q.contains("\"fdb/autogen\"")),
            "{sent}"
        );
        assert!(
            r.headers
                .get("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{:?}",
            r.headers
        );
        // The proxy's credentials are not the backend's: none go on.
        assert_eq!(r.headers.get("authorization"), None, "{:?}", r.headers);
    }
}
