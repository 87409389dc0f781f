//! `/query` statements whose sources live on different backends of one
//! circle (the same measurement name in two databases), `SHOW DATABASES`
//! with no database, and the series order of `ORDER BY time DESC` inside a
//! subquery: the proxy (one circle of two real influxd) answers what one
//! standalone influxd holding the same points answers.

mod common;

use std::time::Duration;

use common::query::*;
use common::*;

/// Two databases whose `cpu` lives on different backends of a circle of 2.
fn split_databases() -> (String, String) {
    let names: Vec<String> = (0..20).map(|i| format!("src{i}")).collect();
    let first = &names[0];
    let other = names
        .iter()
        .find(|n| owner(n, "cpu", 2) != owner(first, "cpu", 2))
        .expect("a database whose cpu has another owner");
    (first.clone(), other.clone())
}

#[test]
fn sources_over_several_databases_reach_their_owners() {
    let (a, b) = split_databases();
    let mut influxds = Influxd::start_many(3);
    let reference = influxds.pop().unwrap();
    let proxy = Proxy::start(config_for_urls(&[vec![
        influxds[0].url(),
        influxds[1].url(),
    ]]));
    let mut diffs = Vec::new();
    let mut same = |case: Case| {
        if let Some(d) = compare_case(&proxy.url(), &reference.url(), &case) {
            diffs.push(d);
        }
    };

    // No database anywhere yet: influxd still answers the empty series.
    same(Case::get(None, "SHOW DATABASES"));
    same(Case::get(None, "SHOW DATABASES").csv());

    for d in influxds.iter().chain([&reference]) {
        for db in [&a, &b] {
            d.exec(&format!("CREATE DATABASE {db} WITH NAME rp0"));
        }
    }
    let t0 = now_ns() / 1_000_000_000 - 600;
    // The same series (`cpu,t=x`) in both databases, at times that
    // interleave and collide; `t=y` only in the second.
    let body_a: String = (0..6)
        .map(|i| format!("cpu,t=x value={i} {}\n", t0 + i * 20))
        .collect();
    let body_b: String = (0..6)
        .map(|i| {
            format!(
                "cpu,t=x value={} {}\ncpu,t=y value={} {}\n",
                100 + i,
                t0 + i * 30,
                200 + i,
                t0 + i * 10
            )
        })
        .collect();
    for (db, body) in [(&a, &body_a), (&b, &body_b)] {
        let params = [("db", db.as_str()), ("rp", "rp0"), ("precision", "s")];
        let r = proxy.write_with(&params, &[], body.as_bytes());
        assert_eq!(r.status, 204, "proxy write to {db}: {}", r.body);
        let r = http_post(
            &format!("{}/write", reference.url()),
            &params,
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, 204, "reference write to {db}: {}", r.body);
    }
    for (db, n) in [(&a, 6), (&b, 12)] {
        let d = &influxds[owner(db, "cpu", 2)];
        wait_until(
            Duration::from_secs(20),
            &format!("{n} points of {db}.rp0.cpu on its owner"),
            || d.rows(db, Some("rp0"), "cpu").len() == n,
        );
    }

    let from = format!("{a}.rp0.cpu, {b}.rp0.cpu");
    for q in [
        format!("SELECT value FROM {from}"),
        format!("SELECT * FROM {from} GROUP BY *"),
        format!("SELECT value FROM {from} GROUP BY t ORDER BY time DESC"),
        format!("SELECT value FROM {b}.rp0.cpu, {a}.rp0.cpu WHERE time > 0"),
        format!("SELECT value FROM {from} WHERE t != 'DESC' GROUP BY t"),
        // DESC inside the subquery only: influxd refuses mixed directions.
        format!(
            "SELECT value FROM (SELECT value FROM {from} GROUP BY t ORDER BY time DESC) GROUP BY t"
        ),
        format!(
            "SELECT value FROM (SELECT value FROM {from} GROUP BY t) GROUP BY t ORDER BY time DESC"
        ),
        format!("SELECT value FROM {a}.rp0.cpu; SELECT value FROM {from} GROUP BY t"),
        // influxd cuts the merged series, not each database's part.
        format!("SELECT value FROM {from} LIMIT 4"),
        format!("SELECT value FROM {from} GROUP BY t ORDER BY time DESC LIMIT 3"),
    ] {
        same(Case::get(None, q.clone()));
        same(Case::get(None, q).param("epoch", "s"));
    }
    same(Case::get(None, "SHOW DATABASES"));
    // Two backends' counts of one series cannot be added up in general (a
    // mean could not): the proxy says so rather than answer two rows.
    let q = format!("SELECT count(value) FROM {from}");
    let got = send(&proxy.url(), &Case::get(None, q.clone())).json();
    let error = got["results"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("cannot combine series \"cpu\""),
        "{q}: {got}"
    );
    assert!(
        diffs.is_empty(),
        "{} queries answer differently through the proxy than on the reference influxd:\n\n{}",
        diffs.len(),
        diffs.join("\n\n")
    );
}
