//! Real clients through the proxy's `/query`: the `influx` shell (Debian
//! `influxdb-client`) and the Python `influxdb` client (PyPI).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::query::*;
use common::*;
use serde_json::{json, Value};

const INFLUX: &str = "/usr/bin/influx";

fn require_influx() {
    assert!(
        Path::new(INFLUX).exists(),
        "{INFLUX} is missing: install Debian's influxdb-client (scripts/test.sh installs it)"
    );
}

#[test]
fn rfc3339_formatting_matches_influxdb() {
    assert_eq!(
        rfc3339_nano(1_795_680_000_000_000_000),
        "2026-11-26T08:00:00Z"
    );
    assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339_nano(1_700_000_000_123_000_000),
        "2023-11-14T22:13:20.123Z"
    );
    assert_eq!(
        rfc3339_nano(951_782_400_000_000_001),
        "2000-02-29T00:00:00.000000001Z"
    );
}

#[test]
fn influx_shell_session_through_the_proxy() {
    require_influx();
    let cluster = Cluster::start(&[], |_| {});
    let port = cluster.proxy.port();
    let start = Instant::now();

    let (code, out) = influx(port, &["-execute", "CREATE DATABASE x"]);
    assert_eq!(
        code,
        Some(0),
        "CREATE DATABASE x: exit code; output:\n{out}"
    );
    assert_eq!(out.trim(), "", "CREATE DATABASE x: output");
    for (i, d) in cluster.influxds.iter().enumerate() {
        let v = d.query("", "SHOW DATABASES");
        assert!(
            v.to_string().contains("\"x\""),
            "database x not on {}: {v}",
            backend_name(i / 2, i % 2)
        );
    }

    let (code, out) = influx(
        port,
        &["-database", "x", "-execute", "INSERT cpu,host=a value=1"],
    );
    assert_eq!(code, Some(0), "INSERT: exit code; output:\n{out}");
    assert!(!out.contains("ERR"), "INSERT: {out}");

    // SHOW MEASUREMENTS shows cpu once the point is delivered.
    let want = "name: measurements\nname\n----\ncpu";
    let shown = retry_for(Duration::from_secs(15), || {
        let (code, out) = influx(port, &["-database", "x", "-execute", "SHOW MEASUREMENTS"]);
        assert_eq!(
            code,
            Some(0),
            "SHOW MEASUREMENTS: exit code; output:\n{out}"
        );
        if out.trim() == want {
            Ok(())
        } else {
            Err(out)
        }
    });
    if let Err(last) = shown {
        assert_eq!(last.trim(), want, "SHOW MEASUREMENTS output");
    }

    // The stored timestamp (the proxy's clock), to check what SELECT prints.
    let stored = poll_for(Duration::from_secs(10), "the point on circle 2", || {
        let rows = cluster.owner_of(1, "x", "cpu").rows("x", None, "cpu");
        (rows.len() == 1).then(|| rows[0].time)
    });
    let (code, out) = influx(
        port,
        &[
            "-database",
            "x",
            "-precision",
            "rfc3339",
            "-format",
            "json",
            "-execute",
            "SELECT * FROM cpu",
        ],
    );
    assert_eq!(code, Some(0), "SELECT (json): exit code; output:\n{out}");
    let got: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("SELECT -format json printed no JSON ({e}):\n{out}"));
    assert_eq!(
        got,
        json!({"results": [{"series": [{
            "name": "cpu",
            "columns": ["time", "host", "value"],
            "values": [[rfc3339_nano(stored), "a", 1]],
        }]}]}),
        "SELECT * FROM cpu, -precision rfc3339 -format json"
    );

    let (code, out) = influx(
        port,
        &[
            "-database",
            "x",
            "-precision",
            "rfc3339",
            "-execute",
            "SELECT * FROM cpu",
        ],
    );
    assert_eq!(code, Some(0), "SELECT (column): exit code; output:\n{out}");
    let lines: Vec<&str> = out.trim().lines().map(str::trim_end).collect();
    assert_eq!(lines.first(), Some(&"name: cpu"), "SELECT (column):\n{out}");
    assert!(
        lines.last().is_some_and(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells == [rfc3339_nano(stored).as_str(), "a", "1"]
        }),
        "SELECT (column) last line should be the point:\n{out}"
    );

    // Several statements in one -execute, csv.
    let (code, out) = influx(
        port,
        &[
            "-database",
            "x",
            "-format",
            "csv",
            "-execute",
            "SELECT count(value) FROM cpu; SHOW MEASUREMENTS; SHOW DATABASES",
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "several statements: exit code; output:\n{out}"
    );
    let lines: Vec<&str> = out.trim().lines().collect();
    assert_eq!(
        lines,
        [
            "name,time,count",
            "cpu,0,1",
            "name,name",
            "measurements,cpu",
            "name,name",
            "databases,x"
        ],
        "several statements, csv:\n{out}"
    );

    // Errors reach the shell as InfluxDB's do.
    let (code, out) = influx(port, &["-database", "x", "-execute", "SHOW USERS"]);
    assert_eq!(code, Some(1), "SHOW USERS: exit code; output:\n{out}");
    assert!(
        out.contains("ERR: illegal InfluxQL"),
        "SHOW USERS output: {out}"
    );
    let (code, out) = influx(port, &["-database", "x", "-execute", "SELECT * FROM \""]);
    assert_eq!(code, Some(1), "a lone quote: exit code; output:\n{out}");
    assert!(out.starts_with("ERR:"), "a lone quote: {out}");
    let (code, out) = influx(port, &["-execute", "SELECT * FROM cpu"]);
    assert_eq!(code, Some(1), "no database: exit code; output:\n{out}");
    assert!(out.starts_with("ERR:"), "no database: {out}");

    let (code, out) = influx(port, &["-execute", "DROP DATABASE x"]);
    assert_eq!(code, Some(0), "DROP DATABASE x: exit code; output:\n{out}");
    for (i, d) in cluster.influxds.iter().enumerate() {
        let v = d.query("", "SHOW DATABASES");
        assert!(
            !v.to_string().contains("\"x\""),
            "database x still on {}: {v}",
            backend_name(i / 2, i % 2)
        );
    }
    eprintln!("influx shell session took {:?}", start.elapsed());
}

/// The Python client's session; prints one JSON object.
const PY_SCRIPT: &str = r#"
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

port, base = int(sys.argv[1]), int(sys.argv[2])
# The client's default asks for MessagePack; a second one asks for JSON
# (as Grafana does), a third one gzips its writes and accepts gzip answers.
c = InfluxDBClient(host="127.0.0.1", port=port, database="py", timeout=10, retries=1)
cj = InfluxDBClient(host="127.0.0.1", port=port, database="py", timeout=10, retries=1,
                    headers={"Accept": "application/json"})
cz = InfluxDBClient(host="127.0.0.1", port=port, database="py", timeout=10, retries=1,
                    gzip=True, headers={"Accept": "application/json"})
out = {}
c.create_database("py")
out["databases"] = sorted(d["name"] for d in c.get_list_database())
points = [
    {"measurement": "cpu", "tags": {"host": "a", "region": "us"},
     "time": (base + i) * 10**9, "fields": {"usage": 1.5 + i, "n": i}}
    for i in range(3)
] + [
    {"measurement": "mem", "tags": {"host": "b"},
     "time": (base + i) * 10**9, "fields": {"used": 100 + i, "ok": i % 2 == 0, "note": "s%d" % i}}
    for i in range(2)
]
out["write"] = c.write_points(points)
out["write_gzip"] = cz.write_points(
    [{"measurement": "disk", "tags": {"host": "a"}, "time": base * 10**9, "fields": {"pct": 5.5}}])
cpu, mem, disk = poll(
    lambda: [list(c.query("SELECT * FROM " + m).get_points()) for m in ("cpu", "mem", "disk")],
    lambda got: [len(rows) for rows in got] == [3, 2, 1])
out["cpu"] = cpu
out["mem"] = mem
out["disk"] = disk
out["cpu_json"] = list(cj.query("SELECT * FROM cpu").get_points())
out["cpu_gzip"] = list(cz.query("SELECT * FROM cpu, mem").get_points())
out["cpu_ms"] = list(c.query("SELECT usage FROM cpu WHERE host = $h",
                             bind_params={"h": "a"}, epoch="ms").get_points())
out["measurements"] = c.get_list_measurements()
out["multi"] = [list(r.get_points()) for r in
                c.query("SELECT count(usage) FROM cpu; SELECT count(used) FROM mem")]
out["both"] = sorted([k[0], list(v)] for k, v in c.query("SELECT * FROM cpu, mem").items())
out["chunked"] = [list(r.get_points())
                  for r in cj.query("SELECT * FROM cpu", chunked=True, chunk_size=1)]
out["tag_values"] = list(c.query('SHOW TAG VALUES WITH KEY = "host"').get_points())
out["series"] = c.get_list_series()
out["retention"] = c.get_list_retention_policies()
for name, client in (("show_users", c), ("show_users_json", cj)):
    try:
        client.query("SHOW USERS")
        out[name] = "no error"
    except InfluxDBClientError as e:
        try:
            msg = json.loads(e.content)["error"]
        except Exception:
            msg = e.content
        out[name] = [e.code, msg]
c.drop_measurement("mem")
out["after_drop"] = c.get_list_measurements()
print(json.dumps(out, sort_keys=True))
"#;

fn run_python_session(port: u16, base: i64) -> Value {
    run_python_json(
        PY_SCRIPT,
        &[&port.to_string(), &base.to_string()],
        Duration::from_secs(60),
    )
}

/// Same session against the proxy and against one influxd: the same results
/// (except `SHOW USERS`, which the proxy refuses).
#[test]
fn python_influxdb_client_session_through_the_proxy() {
    require_python_influxdb();
    let mut influxds = Influxd::start_many(5);
    let reference = influxds.pop().unwrap();
    let proxy = Proxy::start(two_by_two_config(&influxds));
    let cluster = Cluster { influxds, proxy };
    let base = now_ns() / 1_000_000_000 - 600;

    let mut got = run_python_session(cluster.proxy.port(), base);
    let mut want = run_python_session(reference.port(), base);

    for key in ["show_users", "show_users_json"] {
        assert_eq!(
            got[key],
            json!([400, "illegal InfluxQL"]),
            "{key}: SHOW USERS through the proxy"
        );
        assert_eq!(want[key], json!("no error"), "{key}: SHOW USERS on influxd");
        for v in [&mut got, &mut want] {
            v.as_object_mut().unwrap().remove(key);
        }
    }
    assert_eq!(got["write"], json!(true), "write_points: {got}");
    assert_eq!(
        got["cpu"].as_array().map(Vec::len),
        Some(3),
        "cpu points: {got}"
    );
    assert_eq!(
        got["measurements"],
        json!([{"name": "cpu"}, {"name": "disk"}, {"name": "mem"}]),
        "get_list_measurements"
    );
    assert_eq!(
        got["after_drop"],
        json!([{"name": "cpu"}, {"name": "disk"}]),
        "get_list_measurements after drop_measurement(mem)"
    );
    let mut diffs = Vec::new();
    for (k, w) in want.as_object().unwrap() {
        if got.get(k) != Some(w) {
            diffs.push(format!(
                "{k}:\n      proxy: {}\n  reference: {w}",
                got.get(k).unwrap_or(&Value::Null)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "the Python client sees different results through the proxy:\n{}",
        diffs.join("\n")
    );
}
