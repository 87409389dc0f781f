//! The stock `influx` shell pointed at the proxy.

mod common;

use std::path::Path;
use std::time::Duration;

use common::query::influx;
use common::*;
use serde_json::json;

const INFLUX: &str = "/usr/bin/influx";

#[test]
fn influx_shell_insert_through_the_proxy_lands_on_the_owner_in_every_circle() {
    if !Path::new(INFLUX).exists() {
        eprintln!("NOTICE: {INFLUX} is not installed (Debian influxdb-client); test skipped");
        return;
    }
    let db = "shell";
    let cluster = Cluster::start(&[db], |_| {});
    let before = now_ns();
    let (code, out) = influx(
        cluster.proxy.port(),
        &["-database", db, "-execute", "INSERT cpu,host=a value=1"],
    );
    let after = now_ns();
    assert_eq!(code, Some(0), "influx shell exit code; output:\n{out}");
    assert!(
        !out.contains("ERR"),
        "influx shell reported an error:\n{out}"
    );
    let mut stamps = Vec::new();
    for c in 0..2 {
        let d = cluster.owner_of(c, db, "cpu");
        let rows = poll_for(
            Duration::from_secs(10),
            &format!("the shell's point on circle {}", c + 1),
            || {
                let rows = d.rows(db, None, "cpu");
                (!rows.is_empty()).then_some(rows)
            },
        );
        assert_eq!(rows.len(), 1, "circle {}: {rows:?}", c + 1);
        let row = &rows[0];
        assert_eq!(
            (row.tags.clone(), row.fields.clone()),
            (
                Row::new("cpu", 0, &[("host", "a")], &[("value", json!(1))]).tags,
                Row::new("cpu", 0, &[("host", "a")], &[("value", json!(1))]).fields
            ),
            "circle {}: stored point",
            c + 1
        );
        stamps.push(row.time);
        // The other backend of the circle has nothing.
        let other = cluster.backend(c, 1 - owner(db, "cpu", 2));
        assert!(
            other.rows(db, None, "cpu").is_empty(),
            "circle {}: the non-owner has the point too",
            c + 1
        );
    }
    assert_eq!(
        stamps[0], stamps[1],
        "the circles stored different timestamps"
    );
    assert!(
        stamps[0] >= before - 1_000_000_000 && stamps[0] <= after + 1_000_000_000,
        "timestamp {} is not close to now [{before}, {after}]",
        stamps[0]
    );
}
