//! `/query` through the proxy (2 circles x 2 real influxd) answers exactly
//! what one standalone influxd holding the same points answers.

mod common;

use std::time::{Duration, Instant};

use common::query::*;
use common::*;

/// The data set spreads over both backends of a circle, so fan-out and
/// merging are really exercised.
fn assert_placement() {
    let owners: Vec<(&str, usize)> = ["cpu", "mem", "disk", "net", "h2o_feet", "cpu-load.1m"]
        .iter()
        .map(|m| (*m, owner(DB, m, 2)))
        .collect();
    assert_ne!(
        owner(DB, "cpu", 2),
        owner(DB, "mem", 2),
        "cpu and mem of {DB} must live on different backends of a circle: {owners:?}"
    );
    assert_ne!(
        owner(DB2, "cpu", 2),
        owner(DB2, "mem", 2),
        "cpu and mem of {DB2} must live on different backends of a circle"
    );
    eprintln!("placement in {DB}: {owners:?}");
}

#[test]
fn query_corpus_answers_equal_the_reference_influxd() {
    assert_placement();
    let t = Instant::now();
    let bench = QueryBench::start(|_| {});
    eprintln!("cluster, reference and data ready in {:?}", t.elapsed());
    // Each backend really holds only its share (the proxy has to combine).
    for c in 0..2 {
        let d = bench.cluster.owner_of(c, DB, "cpu");
        assert!(
            !d.measurements(DB).contains("mem"),
            "the owner of cpu in circle {} also holds mem",
            c + 1
        );
    }
    let cases = full_corpus(&bench.ds);
    assert_corpus(
        "differential corpus",
        &bench.cluster.proxy.url(),
        &bench.reference.url(),
        &cases,
    );
    assert!(
        ping_ok(&bench.cluster.proxy.url()),
        "the proxy stopped answering /ping"
    );
}

/// `Accept: application/csv`: every answer (one backend's, merged ones,
/// several statements, chunked, errors, `SHOW`) is influxd's CSV, byte for
/// byte.
#[test]
fn csv_answers_equal_the_reference_influxd_byte_for_byte() {
    let bench = QueryBench::start(|_| {});
    let qd = Some(DB);
    let mut cases: Vec<Case> = small_corpus(&bench.ds).into_iter().map(Case::csv).collect();
    cases.extend([
        Case::get(qd, "SELECT * FROM cpu WHERE").csv(),
        Case::get(qd, "SELECT * FROM cpu GROUP BY *").csv(),
        Case::get(qd, "SELECT * FROM disk, h2o_feet GROUP BY *").csv(),
        Case::get(qd, "SELECT * FROM cpu, mem GROUP BY * ORDER BY time DESC LIMIT 3").csv(),
        Case::get(qd, "SELECT * FROM nosuch; SELECT * FROM mem; SELECT * FROM nosuch; SELECT * FROM \"cpu-load.1m\"")
            .csv(),
        Case::get(qd, r#"SELECT * FROM "cpu-load.1m", mem"#).csv().param("epoch", "s"),
        Case::get(Some("nosuchdb"), "SELECT * FROM cpu").csv(),
        Case::get(qd, "SELECT * FROM cpu, mem").pretty().csv(),
        Case::get(qd, "SHOW TAG KEYS; SHOW FIELD KEYS; SHOW SERIES CARDINALITY").csv(),
    ]);
    assert_corpus(
        "CSV corpus",
        &bench.cluster.proxy.url(),
        &bench.reference.url(),
        &cases,
    );
}

/// Compares answers of the proxy and the reference and collects every
/// difference.
struct Differ {
    proxy: String,
    reference: String,
    diffs: Vec<String>,
}

impl Differ {
    /// Compares `case` once.
    fn same(&mut self, case: Case) {
        if let Some(m) = compare_case(&self.proxy, &self.reference, &case) {
            self.diffs.push(m);
        }
    }

    /// Compares `case` until both sides agree or `timeout` passes (reads
    /// after writes are eventually consistent); keeps the last difference.
    fn eventually(&mut self, label: &str, case: Case, timeout: Duration) {
        let start = Instant::now();
        loop {
            let Some(diff) = compare_case(&self.proxy, &self.reference, &case) else {
                return;
            };
            if start.elapsed() >= timeout {
                self.diffs
                    .push(format!("{label} (still after {timeout:?}): {diff}"));
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Writes `body` (precision s) to `db` through the proxy and to the reference.
fn write_both(proxy: &Proxy, reference: &Influxd, db: &str, body: &str) {
    let r = proxy.write_with(&[("db", db), ("precision", "s")], &[], body.as_bytes());
    assert_eq!(r.status, 204, "proxy write to {db}: {}", r.body);
    let r = reference.write(db, Some("s"), body.as_bytes());
    assert_eq!(r.status, 204, "reference write to {db}: {}", r.body);
}

/// DDL and SHOW of what it changed, interleaved with writes: every answer,
/// and what the data looks like after each step, is what influxd does.
#[test]
fn ddl_statements_answer_like_influxdb_and_apply_in_order_with_writes() {
    let mut influxds = Influxd::start_many(5);
    let reference = influxds.pop().unwrap();
    let proxy = Proxy::start(two_by_two_config(&influxds));
    let cluster = Cluster { influxds, proxy };
    let mut t = Differ {
        proxy: cluster.proxy.url(),
        reference: reference.url(),
        diffs: Vec::new(),
    };
    let wait = Duration::from_secs(10);
    let now = now_ns() / 1_000_000_000 - 600;
    let db = "ddl1";
    let d = Some(db);

    t.same(Case::get(None, "CREATE DATABASE ddl1").post_form());
    t.same(Case::get(None, "CREATE DATABASE ddl1").post_form());
    t.same(Case::get(None, "CREATE DATABASE ddl2").post_url());
    t.same(Case::get(None, "CREATE DATABASE ddl2"));
    t.same(Case::get(None, r#"CREATE DATABASE "odd name-1""#).post_form());
    t.same(Case::get(None, "SHOW DATABASES").unordered());
    t.same(
        Case::get(
            None,
            r#"CREATE RETENTION POLICY "week" ON ddl1 DURATION 7d REPLICATION 1"#,
        )
        .post_form(),
    );
    t.same(
        Case::get(
            None,
            r#"ALTER RETENTION POLICY "week" ON "ddl1" DURATION 14d DEFAULT"#,
        )
        .post_form(),
    );
    t.same(Case::get(None, "SHOW RETENTION POLICIES ON ddl1").unordered());
    t.same(
        Case::get(
            None,
            "CREATE RETENTION POLICY r ON nosuchdb DURATION 1d REPLICATION 1",
        )
        .post_form(),
    );
    t.same(
        Case::get(
            None,
            "CREATE DATABASE ddl3; CREATE RETENTION POLICY a ON ddl3 DURATION 1d REPLICATION 1; SHOW RETENTION POLICIES ON ddl3",
        )
        .post_form()
        .unordered(),
    );

    // Writes into the new default retention policy, read back.
    let m1: String = (0..6)
        .map(|i| {
            format!(
                "m1,host={} v={i}i {}\n",
                ["a", "b"][i % 2],
                now + i as i64 * 10
            )
        })
        .collect();
    write_both(&cluster.proxy, &reference, db, &m1);
    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!("m2,host=a v=1i {now}\n"),
    );
    for q in [
        "SELECT * FROM m1 GROUP BY *",
        "SELECT * FROM week.m2",
        "SHOW MEASUREMENTS",
    ] {
        t.eventually("after the first writes", Case::get(d, q), wait);
    }

    // Each DDL right after a write it must follow, then a later write (the
    // marker) to the same measurement: once the marker is there, everything
    // written before it was delivered, so the data shows whether the DDL ran
    // in order with the writes.
    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!(
            "m1,host=a v=100i {}\nm1,host=b v=101i {}\n",
            now + 100,
            now + 100
        ),
    );
    t.same(Case::get(d, "DROP SERIES FROM m1 WHERE host = 'a'").post_form());
    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!("m1,host=b v=102i {}\n", now + 110),
    );
    t.eventually(
        "after DROP SERIES",
        Case::get(d, "SELECT * FROM m1 GROUP BY *"),
        wait,
    );

    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!("m1,host=c v=200i {}\n", now + 5),
    );
    t.same(Case::get(d, format!("DELETE FROM m1 WHERE time < {}s", now + 50)).post_form());
    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!("m1,host=c v=201i {}\n", now + 120),
    );
    t.eventually(
        "after DELETE",
        Case::get(d, "SELECT * FROM m1 GROUP BY *"),
        wait,
    );

    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!("m2,host=b v=2i {}\n", now + 1),
    );
    t.same(Case::get(d, "DROP MEASUREMENT m2").post_form());
    write_both(
        &cluster.proxy,
        &reference,
        db,
        &format!("m2,host=c v=3i {}\n", now + 2),
    );
    t.eventually(
        "after DROP MEASUREMENT",
        Case::get(d, "SELECT * FROM m2 GROUP BY *"),
        wait,
    );
    t.same(Case::get(d, "SHOW MEASUREMENTS"));
    t.same(Case::get(d, "SHOW SERIES"));

    t.same(Case::get(None, r#"DROP RETENTION POLICY "a" ON ddl3"#).post_form());
    t.same(Case::get(None, "SHOW RETENTION POLICIES ON ddl3").unordered());
    t.same(Case::get(None, "DROP DATABASE ddl2").post_form());
    t.same(Case::get(None, r#"DROP DATABASE "odd name-1"; DROP DATABASE ddl3"#).post_form());
    t.same(Case::get(None, "DROP DATABASE nosuch").post_form());
    t.same(Case::get(None, "SHOW DATABASES").unordered());
    t.same(Case::get(d, "SELECT count(*) FROM m1"));

    assert!(
        t.diffs.is_empty(),
        "{} DDL steps answer differently through the proxy than on the reference influxd:\n\n{}",
        t.diffs.len(),
        t.diffs.join("\n\n")
    );
}
