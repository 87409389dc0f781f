//! `/query` when things go wrong: a backend down (reads fail over, DDL is
//! queued and applied in order with writes after the restart), hostile
//! queries, forbidden statements, and databases outside `db_list`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::query::*;
use common::*;
use serde_json::{json, Value};

/// How long one hostile or refused query may take to be answered.
const QUICK: Duration = Duration::from_secs(5);

/// `statements_pending` of backend `name` in `/health`.
fn statements_pending(proxy: &Proxy, name: &str) -> Option<u64> {
    proxy.backend_health(name)["spool"]["statements_pending"].as_u64()
}

#[test]
fn with_one_backend_down_every_query_answers_fully_from_the_other_circle() {
    let mut bench = QueryBench::start(|_| {});
    let cases = small_corpus(&bench.ds);
    let reference = bench.reference.url();
    assert_corpus(
        "all backends up",
        &bench.cluster.proxy.url(),
        &reference,
        &cases,
    );

    // influxdb-1-1 (holds mem, disk, net... of circle 1) stops: at once,
    // before /health notices, and again once it is known down.
    bench.cluster.influxds[0].stop();
    assert_corpus(
        "influxdb-1-1 just stopped",
        &bench.cluster.proxy.url(),
        &reference,
        &cases,
    );
    wait_until(
        Duration::from_secs(5),
        "/health to show influxdb-1-1 inactive",
        || bench.cluster.proxy.backend_active("influxdb-1-1") == Some(false),
    );
    assert_corpus(
        "influxdb-1-1 known down",
        &bench.cluster.proxy.url(),
        &reference,
        &cases,
    );

    // The other way round: circle 1 whole again, a backend of circle 2 down.
    bench.cluster.influxds[0].restart();
    wait_until(
        Duration::from_secs(5),
        "/health to show influxdb-1-1 active again",
        || bench.cluster.proxy.backend_active("influxdb-1-1") == Some(true),
    );
    bench.cluster.influxds[3].stop();
    assert_corpus(
        "influxdb-2-2 just stopped",
        &bench.cluster.proxy.url(),
        &reference,
        &cases,
    );
    wait_until(
        Duration::from_secs(5),
        "/health to show influxdb-2-2 inactive",
        || bench.cluster.proxy.backend_active("influxdb-2-2") == Some(false),
    );
    assert_corpus(
        "influxdb-2-2 known down",
        &bench.cluster.proxy.url(),
        &reference,
        &cases,
    );
    bench.cluster.proxy.assert_running();
}

/// `POST /query` with `q` (and `db`) in a form body; the parsed answer.
fn post_query(proxy: &Proxy, db: Option<&str>, q: &str) -> Resp {
    let mut params = vec![("q".to_string(), q.to_string())];
    if let Some(db) = db {
        params.push(("db".to_string(), db.to_string()));
    }
    http_post(
        &format!("{}/query", proxy.url()),
        &[],
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form_encode(&params).as_bytes(),
    )
}

fn assert_ok_empty(r: &Resp, what: &str) {
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"results": [{"statement_id": 0}]})),
        "{what}: InfluxDB's answer expected; body {:?}",
        r.body
    );
}

/// Names of the databases on `d`.
fn databases(d: &Influxd) -> Vec<String> {
    let v = d.query("", "SHOW DATABASES");
    v["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(String::from))
        .collect()
}

/// Retention policies of `db` on `d`: (name, default).
fn retention_policies(d: &Influxd, db: &str) -> Vec<(String, bool)> {
    let v = d.query(db, &format!("SHOW RETENTION POLICIES ON {db}"));
    v["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            (
                row[0].as_str().unwrap_or_default().to_string(),
                row[4].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn ddl_while_a_backend_is_down_reaches_it_after_restart_in_order_with_writes() {
    let db = "fdb";
    // "gone" lives on backend 0 of each circle; influxdb-1-1 is the one stopped.
    assert_eq!(owner(db, "gone", 2), 0, "placement of {db}/gone changed");
    let (m0, m1) = ("m1", "cpu");
    assert_eq!(owner("newdb", m0, 2), 0, "placement of newdb/{m0} changed");
    assert_eq!(owner("newdb", m1, 2), 1, "placement of newdb/{m1} changed");
    assert_eq!(
        owner("newdb2", "cpu", 2),
        0,
        "placement of newdb2/cpu changed"
    );

    let mut cluster = Cluster::start(&[db], |c| {
        c["rewrite_interval"] = 1.into();
    });
    let t0 = now_ns() / 1_000_000_000 - 300;
    let (s, b) = cluster
        .proxy
        .write(db, Some("s"), &format!("gone,host=a v=1i {t0}\n"));
    assert_eq!(s, 204, "first write: {b}");
    for c in 0..2 {
        let d = cluster.owner_of(c, db, "gone");
        wait_until(Duration::from_secs(10), "the first point of gone", || {
            d.rows(db, None, "gone").len() == 1
        });
    }

    cluster.influxds[0].stop();
    wait_until(
        Duration::from_secs(5),
        "/health to show influxdb-1-1 inactive",
        || cluster.proxy.backend_active("influxdb-1-1") == Some(false),
    );

    // CREATE DATABASE answers as InfluxDB does and is pending for the
    // stopped backend; writes to the new database follow at once.
    let r = post_query(&cluster.proxy, None, "CREATE DATABASE newdb");
    assert_ok_empty(&r, "CREATE DATABASE newdb with influxdb-1-1 down");
    let pending = statements_pending(&cluster.proxy, "influxdb-1-1");
    assert!(
        pending >= Some(1),
        "statements_pending of influxdb-1-1 after CREATE DATABASE: {pending:?}; {}",
        cluster.proxy.backend_health("influxdb-1-1")
    );
    let r = post_query(
        &cluster.proxy,
        None,
        r#"CREATE DATABASE newdb2 WITH DURATION 3650d NAME "ten_years""#,
    );
    assert_ok_empty(&r, "CREATE DATABASE newdb2 WITH ... NAME");
    let body = format!("{m0},host=a v=1i {t0}\n{m1},host=a v=2i {t0}\n");
    let (s, b) = cluster.proxy.write("newdb", Some("s"), &body);
    assert_eq!(s, 204, "write to newdb: {b}");
    let (s, b) = cluster
        .proxy
        .write("newdb2", Some("s"), &format!("cpu,host=a v=3i {t0}\n"));
    assert_eq!(s, 204, "write to newdb2: {b}");

    // DROP MEASUREMENT, then a new point of the same measurement.
    let r = post_query(&cluster.proxy, Some(db), "DROP MEASUREMENT gone");
    assert_ok_empty(&r, "DROP MEASUREMENT gone with influxdb-1-1 down");
    let (s, b) = cluster
        .proxy
        .write(db, Some("s"), &format!("gone,host=a v=2i {}\n", t0 + 60));
    assert_eq!(s, 204, "write after the DROP MEASUREMENT: {b}");
    let pending = statements_pending(&cluster.proxy, "influxdb-1-1");
    assert!(
        pending >= Some(3),
        "statements_pending of influxdb-1-1 after three DDL statements: {pending:?}; {}",
        cluster.proxy.backend_health("influxdb-1-1")
    );

    let later = vec![Row::new(
        "gone",
        (t0 + 60) * 1_000_000_000,
        &[("host", "a")],
        &[("v", json!(2))],
    )];
    // The live backends have it all already.
    for (c, b) in [(0, 1), (1, 0), (1, 1)] {
        let d = cluster.backend(c, b);
        wait_until(
            Duration::from_secs(10),
            &format!("newdb and newdb2 on {}", backend_name(c, b)),
            || {
                let dbs = databases(d);
                dbs.iter().any(|x| x == "newdb") && dbs.iter().any(|x| x == "newdb2")
            },
        );
    }
    let d = cluster.owner_of(1, "newdb", m0);
    wait_until(Duration::from_secs(10), "newdb/m1 on circle 2", || {
        d.rows("newdb", None, m0).len() == 1
    });
    for c in 0..2 {
        let d = cluster.owner_of(c, "newdb", m1);
        wait_until(
            Duration::from_secs(10),
            &format!("newdb/cpu on circle {}", c + 1),
            || d.rows("newdb", None, m1).len() == 1,
        );
    }
    let d = cluster.owner_of(1, db, "gone");
    wait_for_eq(
        Duration::from_secs(10),
        "circle 2: gone holds only the point written after the DROP",
        &later,
        || d.rows(db, None, "gone"),
    );

    // Back up: the statements and the writes arrive, in order.
    cluster.influxds[0].restart();
    let d = &cluster.influxds[0];
    wait_until(
        Duration::from_secs(20),
        "newdb and newdb2 created on influxdb-1-1 after its restart",
        || {
            let dbs = databases(d);
            dbs.iter().any(|x| x == "newdb") && dbs.iter().any(|x| x == "newdb2")
        },
    );
    wait_for_eq(
        Duration::from_secs(20),
        "influxdb-1-1: newdb/m1 holds the point written after CREATE DATABASE",
        &1,
        || d.rows("newdb", None, m0).len(),
    );
    // newdb2 was created with its own default policy before the point came:
    // the point is in "ten_years", and autogen does not exist there.
    wait_for_eq(
        Duration::from_secs(20),
        "influxdb-1-1: newdb2 has the retention policies of the CREATE",
        &vec![("ten_years".to_string(), true)],
        || retention_policies(d, "newdb2"),
    );
    wait_for_eq(
        Duration::from_secs(20),
        "influxdb-1-1: newdb2/ten_years/cpu holds the point",
        &1,
        || d.rows("newdb2", Some("ten_years"), "cpu").len(),
    );
    wait_for_eq(
        Duration::from_secs(20),
        "influxdb-1-1: gone holds only the point written after the DROP",
        &later,
        || d.rows(db, None, "gone"),
    );
    wait_for_eq(
        Duration::from_secs(10),
        "statements_pending of influxdb-1-1 back to 0",
        &Some(0),
        || statements_pending(&cluster.proxy, "influxdb-1-1"),
    );
    // And it stays so (no late replay of the DROP).
    holds_for(
        Duration::from_secs(2),
        "influxdb-1-1: gone holds only the point written after the DROP, after the spool drained",
        || d.rows(db, None, "gone") == later,
    );
    // The other backends agree on newdb2's policies.
    let want = retention_policies(cluster.backend(1, 0), "newdb2");
    assert_eq!(
        retention_policies(&cluster.influxds[0], "newdb2"),
        want,
        "retention policies of newdb2: influxdb-1-1 vs influxdb-2-1"
    );
    cluster.proxy.assert_running();
}

// ---------------------------------------------------------------------------
// Hostile queries.

/// Removes HTTP/1.1 chunked framing from `body` (a body that is not framed
/// is returned as is).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Sends `q` (raw bytes, percent-encoded) to `/query` on a fresh
/// connection: by GET in the URL or by POST in a form body.
fn raw_query(addr: SocketAddr, db: &str, q: &[u8], post: bool) -> (Option<Resp>, Duration) {
    let enc = format!("db={db}&q={}", pct(q));
    let request = if post {
        let mut r = format!(
            "POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            enc.len()
        )
        .into_bytes();
        r.extend_from_slice(enc.as_bytes());
        r
    } else {
        format!("GET /query?{enc} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .into_bytes()
    };
    let start = Instant::now();
    let got = raw_request(addr, &request, Duration::from_secs(20));
    let took = start.elapsed();
    let resp = parse_raw(&got).map(|mut r| {
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            r.body = dechunk(&r.body);
        }
        r
    });
    (resp, took)
}

fn show(q: &[u8]) -> String {
    let s = String::from_utf8_lossy(q);
    if s.len() > 80 {
        format!("{:?}... ({} bytes)", &s[..80.min(s.len())], q.len())
    } else {
        format!("{s:?}")
    }
}

/// Checks one hostile answer: a 400 JSON `{"error": ...}` within [`QUICK`].
fn check_400(q: &[u8], how: &str, resp: Option<Resp>, took: Duration) -> Option<String> {
    if std::env::var_os("QUERY_TEST_SHOW").is_some() {
        eprintln!(
            "{how} {} -> {:?} in {took:?}",
            show(q),
            resp.as_ref()
                .map(|r| (r.status, r.body.chars().take(150).collect::<String>()))
        );
    }
    let Some(r) = resp else {
        return Some(format!(
            "{how} {}: no complete HTTP response within {took:?}",
            show(q)
        ));
    };
    let err = serde_json::from_str::<Value>(r.body.trim_end())
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from));
    let json_ct = r.is_json();
    if r.status != 400 || err.as_deref().is_none_or(|e| e.is_empty()) || !json_ct {
        return Some(format!(
            "{how} {}: want 400 with a JSON {{\"error\": ...}}, got {} (content-type {:?}) {:?}",
            show(q),
            r.status,
            r.header("content-type"),
            &r.body[..r.body.len().min(300)]
        ));
    }
    if took > QUICK {
        return Some(format!("{how} {}: answered in {took:?}", show(q)));
    }
    None
}

#[test]
fn hostile_queries_get_a_clean_400_quickly_and_break_nothing() {
    let db = "qh";
    let mut cluster = Cluster::start(&[db], |_| {});
    let (s, b) = cluster
        .proxy
        .write(db, None, "cpu,host=a v=1 1700000000000000000\n");
    assert_eq!(s, 204, "{b}");
    let addr = cluster.proxy.addr();
    let mb = 1 << 20;
    let small: Vec<Vec<u8>> = vec![
        b"\"".to_vec(),
        b"'".to_vec(),
        b"(".to_vec(),
        b")".to_vec(),
        b"\\".to_vec(),
        b"SELECT * FROM cpu WHERE (host = 'a'".to_vec(),
        b"SELECT * FROM cpu WHERE host = 'a')".to_vec(),
        b"SELECT * FROM \"cpu".to_vec(),
        b"SELECT * FROM cpu WHERE host = 'a".to_vec(),
        b"SELECT * FROM /cpu".to_vec(),
        b"SELECT * FROM \"a\\".to_vec(),
        b"SELECT * FROM 'a\\".to_vec(),
        b";".to_vec(),
        b";;;".to_vec(),
        b"SELECT".to_vec(),
        b"SELECT *".to_vec(),
        b"SELECT * FROM".to_vec(),
        b"SHOW".to_vec(),
        b"FROM cpu".to_vec(),
        b"/* unterminated".to_vec(),
        b"SELECT * FROM cpu /*".to_vec(),
        b"--".to_vec(),
        b"SELECT * FROM cpu; \"".to_vec(),
        b")))(((".to_vec(),
        b"\0".to_vec(),
        b"SELECT * FROM cpu\0".to_vec(),
        b"SELECT\0* FROM cpu".to_vec(),
        b"\0SELECT * FROM cpu".to_vec(),
        b"\xff".to_vec(),
        b"SELECT * FROM \xff".to_vec(),
        b"SELECT * FROM cpu WHERE host = '\xff'".to_vec(),
        b"SELECT * FROM \"\xc3\x28\"".to_vec(),
        b"\xed\xa0\x80".to_vec(),
    ];
    let big: Vec<Vec<u8>> = vec![
        vec![b'('; mb],
        [b"SELECT * FROM \"".to_vec(), vec![b'a'; mb]].concat(),
        [b"SELECT * FROM cpu WHERE ".to_vec(), vec![b'('; mb]].concat(),
        [b"/*".to_vec(), vec![b'x'; mb]].concat(),
        [
            b"SELECT * FROM cpu WHERE host = '".to_vec(),
            vec![b'\\'; mb],
        ]
        .concat(),
        [b"SELECT * FROM ".to_vec(), b"\"a\".".repeat(mb / 4)].concat(),
        b";".repeat(mb),
    ];
    let mut problems = Vec::new();
    let started = Instant::now();
    for q in &small {
        for post in [false, true] {
            let (r, took) = raw_query(addr, db, q, post);
            let how = if post { "POST form" } else { "GET" };
            problems.extend(check_400(q, how, r, took));
        }
    }
    // Deep but well-formed nesting: any clean answer (200 or 400 JSON), never
    // a crash (a stack overflow would take the whole proxy down).
    let deep: Vec<Vec<u8>> = vec![
        format!(
            "SELECT * FROM cpu WHERE {}host = 'a'{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        )
        .into_bytes(),
        format!(
            "SELECT * FROM {}cpu{}",
            "(SELECT * FROM ".repeat(200),
            ")".repeat(200)
        )
        .into_bytes(),
        format!(
            "SELECT * FROM cpu WHERE host = 'a'{}",
            " OR host = 'b'".repeat(300)
        )
        .into_bytes(),
    ];
    for q in &deep {
        let (r, took) = raw_query(addr, db, q, true);
        if std::env::var_os("QUERY_TEST_SHOW").is_some() {
            eprintln!(
                "deep {} -> {:?} in {took:?}",
                show(q),
                r.as_ref()
                    .map(|r| (r.status, r.body.chars().take(150).collect::<String>()))
            );
        }
        let ok = r.as_ref().is_some_and(|r| {
            matches!(r.status, 200 | 400)
                && serde_json::from_str::<Value>(r.body.trim_end()).is_ok()
        }) && took <= Duration::from_secs(15);
        if !ok {
            problems.push(format!(
                "deep query {}: want a JSON answer (200 or 400) within 15 s, got {:?} in {took:?}",
                show(q),
                r.map(|r| (r.status, r.body.chars().take(200).collect::<String>()))
            ));
        }
    }

    for q in &big {
        let (r, took) = raw_query(addr, db, q, true);
        problems.extend(check_400(q, "POST form (1 MB)", r, took));
    }
    // A 1 MB query in the URL: refused (any 4xx, or the connection closed),
    // quickly, never a hang.
    let (r, took) = raw_query(addr, db, &vec![b'('; mb], false);
    match r {
        _ if took > QUICK => problems.push(format!("GET with a 1 MB q: took {took:?}")),
        Some(r) if !(400..500).contains(&r.status) => problems.push(format!(
            "GET with a 1 MB q: want a 4xx, got {}: {:?}",
            r.status,
            &r.body[..r.body.len().min(200)]
        )),
        _ => {}
    }
    eprintln!(
        "{} hostile queries answered in {:?}",
        small.len() * 2 + big.len() + 1,
        started.elapsed()
    );

    // Still serving: /ping, a real query, and every backend is alive (a
    // hostile query passed on could crash an influxd).
    cluster.proxy.assert_running();
    assert!(
        ping_ok(&cluster.proxy.url()),
        "the proxy stopped answering /ping"
    );
    let r = http_get(
        &format!("{}/query", cluster.proxy.url()),
        &[("db", db), ("q", "SELECT count(v) FROM cpu")],
    );
    if r.status != 200 {
        problems.push(format!(
            "a normal query after the hostile ones: {} {}",
            r.status, r.body
        ));
    }
    for (i, d) in cluster.influxds.iter().enumerate() {
        if !ping_ok(&d.url()) {
            problems.push(format!(
                "backend {} no longer answers /ping after the hostile queries",
                backend_name(i / 2, i % 2)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} hostile queries were not answered cleanly:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Forbidden statements and db_list.

/// Checks an error answer: status, exact body, JSON content type, header.
fn error_problem(r: &Resp, what: &str, status: u16, message: &str) -> Option<String> {
    let want_body = format!("{}\n", json!({ "error": message }));
    let ct_ok = r.is_json();
    if r.status != status || r.body != want_body || !ct_ok {
        return Some(format!(
            "{what}: want {status} {want_body:?}, got {} {:?} (content-type {:?})",
            r.status,
            r.body,
            r.header("content-type")
        ));
    }
    if r.header("x-influxdb-error") != Some(message) {
        return Some(format!(
            "{what}: X-Influxdb-Error {:?}, want {message:?}",
            r.header("x-influxdb-error")
        ));
    }
    None
}

/// Sends `q` by GET and by POST form; each answer is checked with `check`.
fn both_ways(
    proxy: &Proxy,
    db: Option<&str>,
    q: &str,
    mut check: impl FnMut(&Resp, &str) -> Option<String>,
) -> Vec<String> {
    let mut case = Case::get(db, q);
    let mut out = Vec::new();
    for post in [false, true] {
        if post {
            case = case.post_form();
        }
        let start = Instant::now();
        let r = send(&proxy.url(), &case);
        let what = case.describe();
        out.extend(check(&r, &what));
        if start.elapsed() > QUICK {
            out.push(format!("{what}: took {:?}", start.elapsed()));
        }
    }
    out
}

const FORBIDDEN: &[&str] = &[
    "GRANT ALL TO bob",
    "GRANT READ ON qd TO bob",
    "REVOKE ALL PRIVILEGES FROM bob",
    "REVOKE WRITE ON qd FROM bob",
    "KILL QUERY 1",
    "KILL QUERY 1 ON \"host:8088\"",
    "SELECT * INTO cpu2 FROM cpu",
    "SELECT mean(usage) INTO \"qd\".\"autogen\".\"x\" FROM cpu GROUP BY time(1m)",
    "SELECT * INTO \"other\"..:MEASUREMENT FROM /.*/",
    "CREATE CONTINUOUS QUERY cq ON qd BEGIN SELECT mean(usage) INTO x FROM cpu GROUP BY time(1m) END",
    "DROP CONTINUOUS QUERY cq ON qd",
    "SHOW CONTINUOUS QUERIES",
    "CREATE USER bob WITH PASSWORD 'x'",
    "CREATE USER bob WITH PASSWORD 'x' WITH ALL PRIVILEGES",
    "DROP USER bob",
    "SET PASSWORD FOR bob = 'y'",
    "SHOW USERS",
    "SHOW GRANTS FOR bob",
    "SHOW QUERIES",
    "SHOW SHARDS",
    "SHOW SHARD GROUPS",
    "SHOW DIAGNOSTICS",
    "SHOW SUBSCRIPTIONS",
    "CREATE SUBSCRIPTION s ON qd.autogen DESTINATIONS ALL 'http://h:1'",
    "DROP SUBSCRIPTION s ON qd.autogen",
    "DROP SHARD 1",
    "EXPLAIN SELECT * FROM cpu",
    "EXPLAIN ANALYZE SELECT * FROM cpu",
    // Case, whitespace and comments.
    "grant all to bob",
    "GrAnT aLl To bob",
    "show users",
    "  Show\tUsers  ",
    "SHOW\nUSERS",
    "SHOW /* x */ USERS",
    "/* c */ GRANT ALL TO bob",
    "-- c\nKILL QUERY 1",
    "select * into cpu2 from cpu",
    "SELECT\n*\nINTO\ncpu2\nFROM\ncpu",
    "SELECT * /* c */ INTO \"cpu2\" FROM cpu",
    "SELECT * INTO cpu2 FROM cpu WHERE host = 'FROM'",
    // A second statement (or a subquery) smuggling one in.
    "SELECT * FROM cpu; DROP USER bob",
    "SELECT * FROM cpu;\nGRANT ALL TO bob",
    "SELECT * FROM cpu WHERE host = 'a'; show grants for \"bob\"",
    "SELECT count(*) FROM cpu;;KILL QUERY 1",
    "SHOW MEASUREMENTS; SHOW USERS",
    "CREATE DATABASE x; CREATE USER bob WITH PASSWORD 'x'",
    "SELECT * FROM cpu -- comment\n; GRANT ALL TO bob",
];

/// Forbidden statements are refused by the proxy itself: backends that record
/// what they get never see a `/query`.
#[test]
fn forbidden_statements_are_illegal_and_never_reach_a_backend() {
    let fakes: Vec<FakeBackend> = (0..4).map(|_| FakeBackend::start(Fault::Record)).collect();
    let config = config_for_urls(&[
        vec![fakes[0].url(), fakes[1].url()],
        vec![fakes[2].url(), fakes[3].url()],
    ]);
    let proxy = Proxy::start(config);
    let mut problems = Vec::new();
    for q in FORBIDDEN {
        problems.extend(both_ways(&proxy, Some(DB), q, |r, what| {
            error_problem(r, what, 400, "illegal InfluxQL")
        }));
    }
    // INTO inside a subquery: refused one way or another (InfluxQL itself
    // does not parse it), and not passed on.
    problems.extend(both_ways(
        &proxy,
        Some(DB),
        "SELECT * FROM (SELECT * INTO x FROM cpu)",
        |r, what| {
            let is_error = r.status == 400
                && serde_json::from_str::<Value>(r.body.trim_end())
                    .is_ok_and(|v| v["error"].as_str().is_some_and(|e| !e.is_empty()));
            (!is_error).then(|| {
                format!(
                    "{what}: want a 400 JSON error, got {} {:?}",
                    r.status, r.body
                )
            })
        },
    ));
    // Without a db parameter: still illegal (checked before the database).
    for q in ["GRANT ALL TO bob", "SHOW USERS", "SELECT * INTO x FROM cpu"] {
        problems.extend(both_ways(&proxy, None, q, |r, what| {
            error_problem(r, what, 400, "illegal InfluxQL")
        }));
    }
    for (i, f) in fakes.iter().enumerate() {
        for rec in f.recorded() {
            if rec.path() != "/ping" && !rec.is_database_listing() {
                problems.push(format!(
                    "backend {} received {} {} (body {:?})",
                    backend_name(i / 2, i % 2),
                    rec.method,
                    rec.url,
                    String::from_utf8_lossy(&rec.body)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} forbidden statements were not refused as they should be:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Every database a request names must be in `db_list`; a statement that
/// needs a database and has none is `database not found`; empty `q` is
/// `empty query`.
#[test]
fn db_list_is_checked_for_every_database_a_request_names() {
    let cluster = Cluster::start(&["a", "b"], |c| {
        c["db_list"] = json!(["a"]);
    });
    let (s, b) = cluster
        .proxy
        .write("a", None, "m,host=x v=1 1700000000000000000\n");
    assert_eq!(s, 204, "{b}");
    let forbidden_b: &[(Option<&str>, &str)] = &[
        (Some("a"), "SELECT * FROM b..m"),
        (Some("a"), r#"SELECT * FROM "b"."autogen"."m""#),
        (Some("a"), "SELECT * FROM b.autogen.m"),
        (Some("b"), "SELECT * FROM m"),
        (None, "SELECT * FROM b..m"),
        (Some("a"), "SHOW MEASUREMENTS ON b"),
        (None, "SHOW MEASUREMENTS ON b"),
        (Some("a"), "SHOW TAG KEYS ON b FROM m"),
        (Some("a"), "SHOW FIELD KEYS ON \"b\""),
        (Some("a"), "SHOW RETENTION POLICIES ON b"),
        (Some("a"), "SHOW SERIES ON b"),
        (Some("a"), "SELECT * FROM m; SELECT * FROM b..m"),
        (Some("a"), "SHOW MEASUREMENTS; SHOW MEASUREMENTS ON b"),
        (Some("a"), "SELECT * FROM a..m, b..m"),
        (Some("a"), "SELECT * FROM (SELECT * FROM b..m)"),
        (Some("a"), "SELECT * FROM\n\"b\"..m"),
        (None, "CREATE DATABASE b"),
        (None, "DROP DATABASE b"),
        (
            Some("a"),
            "CREATE RETENTION POLICY r ON b DURATION 1d REPLICATION 1",
        ),
        (Some("b"), "DROP MEASUREMENT m"),
        (Some("b"), "DROP SERIES FROM m"),
        (Some("b"), "DELETE FROM m WHERE time < 0"),
    ];
    let mut problems = Vec::new();
    for (db, q) in forbidden_b {
        problems.extend(both_ways(&cluster.proxy, *db, q, |r, what| {
            error_problem(r, what, 400, "database forbidden: b")
        }));
    }
    for q in [
        "SELECT * FROM m",
        "SHOW MEASUREMENTS",
        "SHOW TAG KEYS",
        "DROP MEASUREMENT m",
    ] {
        problems.extend(both_ways(&cluster.proxy, None, q, |r, what| {
            error_problem(r, what, 400, "database not found")
        }));
    }
    for q in ["", " ", "\n\t "] {
        problems.extend(both_ways(&cluster.proxy, Some("a"), q, |r, what| {
            error_problem(r, what, 400, "empty query")
        }));
    }
    let r = http_get(&format!("{}/query", cluster.proxy.url()), &[("db", "a")]);
    problems.extend(error_problem(&r, "no q at all", 400, "empty query"));

    // What db_list allows works (eventually: writes are asynchronous).
    let allowed: &[(Option<&str>, &str)] = &[
        (Some("a"), "SELECT * FROM m"),
        (None, "SELECT * FROM a..m"),
        (None, "SHOW MEASUREMENTS ON a"),
        (Some("a"), "SHOW MEASUREMENTS"),
    ];
    for (db, q) in allowed {
        let case = Case::get(*db, *q);
        let answered = retry_for(Duration::from_secs(10), || {
            let r = send(&cluster.proxy.url(), &case);
            if r.status == 200 && r.body.contains("\"m\"") {
                return Ok(());
            }
            Err(format!(
                "{}: want 200 naming m, got {} {:?}",
                case.describe(),
                r.status,
                r.body
            ))
        });
        problems.extend(answered.err());
    }
    assert!(
        problems.is_empty(),
        "{} requests were not checked against db_list as they should be:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Three queries to `backend`, which takes `slow` to answer each, sent at
/// once through `proxy`; returns when all are answered, with the time taken,
/// after checking that a write and a ping sent while `in_flight` of them
/// are at the backend are answered at once.
fn slow_queries_beside_a_write(
    proxy: &Proxy,
    backend: &FakeBackend,
    slow: Duration,
    in_flight: usize,
) -> Duration {
    let before = queries_received(backend);
    let t = Instant::now();
    let queries: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("{}/query", proxy.url());
            std::thread::spawn(move || {
                let q = format!("SELECT * FROM m{i}");
                http_get(&url, &[("db", "slow"), ("q", q.as_str())])
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        &format!("{in_flight} slow queries at the backend"),
        || queries_received(backend) >= before + in_flight,
    );
    let w = Instant::now();
    let (status, text) = proxy.write("slow", None, "m v=1");
    assert_eq!(status, 204, "{text:?}");
    assert!(
        w.elapsed() < Duration::from_secs(1),
        "a write waited {:?} behind slow queries",
        w.elapsed()
    );
    let p = Instant::now();
    assert!(ping_ok(&proxy.url()));
    assert!(
        p.elapsed() < Duration::from_secs(1),
        "a ping waited {:?}",
        p.elapsed()
    );
    for q in queries {
        let r = q.join().expect("query thread");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!({"results": [{"statement_id": 0}]}));
    }
    let took = t.elapsed();
    assert!(took >= slow, "answered in {took:?}, before the backend did");
    took
}

/// How many `SELECT`s `backend` received (health checks aside).
fn queries_received(backend: &FakeBackend) -> usize {
    backend
        .recorded()
        .iter()
        .filter(|r| r.path() == "/query" && r.param("q").is_some_and(|q| q.starts_with("SELECT")))
        .count()
}

/// Queries wait on backends off the workers (a worker answers one itself
/// only while another worker is left): slow queries hold up neither writes
/// nor each other, up to `query_threads`.
#[test]
fn slow_queries_hold_up_neither_writes_nor_each_other() {
    let slow = Duration::from_millis(1500);
    let backend = FakeBackend::start(Fault::SlowQueries(slow));
    let mut config = config_for_urls(&[vec![backend.url()]]);
    for workers in [1, 2] {
        config["worker_threads"] = json!(workers);
        let proxy = Proxy::start(config.clone());
        let took = slow_queries_beside_a_write(&proxy, &backend, slow, 3);
        assert!(
            took < slow * 2,
            "{workers} workers: three concurrent queries took {took:?}: they waited for each other"
        );
    }

    // With room for two at a time, the third waits for one of them.
    config["worker_threads"] = json!(1);
    config["query_threads"] = json!(2);
    let proxy = Proxy::start(config);
    let took = slow_queries_beside_a_write(&proxy, &backend, slow, 2);
    assert!(
        took >= slow * 2,
        "query_threads=2 ran three queries at once ({took:?})"
    );
}
