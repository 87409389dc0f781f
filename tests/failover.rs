//! A backend that is down or hangs must not hold up the others, is reported
//! by `/health`, and gets its points once it is back.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

/// flush_time (1 s) + 1 s: how soon a point for a healthy backend must land.
const PROMPT: Duration = Duration::from_secs(2);
/// Slack for a loaded 2-core machine on top of the deadlines above.
const SLACK: Duration = Duration::from_millis(1000);

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn body_for(names: &[String], ts: i64) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n},host=a v={i}i {}\n", ts + i as i64))
        .collect()
}

/// Measurement names of `db` on `d`.
fn stored(d: &Influxd, db: &str) -> BTreeSet<String> {
    d.measurements(db)
}

/// Measurements of `all` owned in a 2-backend circle by backend `b`.
fn owned_by(db: &str, all: &[String], b: usize) -> BTreeSet<String> {
    all.iter()
        .filter(|n| owner(db, n, 2) == b)
        .cloned()
        .collect()
}

#[test]
fn stopped_backend_is_reported_inactive_and_gets_its_points_after_restart() {
    let db = "fo";
    let mut cluster = Cluster::start(&[db], |c| {
        c["rewrite_interval"] = 1.into();
    });
    let first = names("m", 20);
    assert!(
        !owned_by(db, &first, 0).is_empty() && !owned_by(db, &first, 1).is_empty(),
        "test data must touch both backends"
    );

    // Stop influxdb-1-1 (circle 1, backend 0).
    cluster.influxds[0].stop();
    let stopped_at = Instant::now();

    let t_write = Instant::now();
    let (status, text) =
        cluster
            .proxy
            .write(db, None, &body_for(&first, 1_700_000_000_000_000_000));
    assert_eq!(status, 204, "write while a backend is down: {text:?}");

    // /health: inactive within two check intervals (+ slack) of the stop.
    wait_until(
        (Duration::from_secs(2) + SLACK).saturating_sub(stopped_at.elapsed()),
        "/health to show influxdb-1-1 active:false",
        || cluster.proxy.backend_active("influxdb-1-1") == Some(false),
    );
    eprintln!(
        "influxdb-1-1 inactive {:?} after the stop",
        stopped_at.elapsed()
    );

    // The three healthy backends get their share promptly.
    for (c, b) in [(0, 1), (1, 0), (1, 1)] {
        let want = owned_by(db, &first, b);
        let d = cluster.backend(c, b);
        let left = (PROMPT + SLACK).saturating_sub(t_write.elapsed());
        wait_for_eq(
            left,
            &format!(
                "{} to hold its measurements while influxdb-1-1 is down",
                backend_name(c, b)
            ),
            &want,
            || stored(d, db),
        );
        eprintln!(
            "{} filled {:?} after the write",
            backend_name(c, b),
            t_write.elapsed()
        );
    }

    // Circle-1 not active; status still "pass" because circle-2 can serve reads.
    let h = cluster.proxy.health();
    assert_eq!(
        h["circles"][0]["circle"]["active"], false,
        "circle-1 active: {h}"
    );
    assert_eq!(
        h["circles"][1]["circle"]["active"], true,
        "circle-2 active: {h}"
    );
    assert_eq!(h["status"], "pass", "circle-2 can still serve reads: {h}");
    for name in ["influxdb-1-2", "influxdb-2-1", "influxdb-2-2"] {
        assert_eq!(
            cluster.proxy.backend_active(name),
            Some(true),
            "{name} should stay active: {h}"
        );
    }

    // More points while it is known to be down.
    let second = names("n", 20);
    let (status, text) =
        cluster
            .proxy
            .write(db, None, &body_for(&second, 1_700_000_100_000_000_000));
    assert_eq!(status, 204, "write while a backend is known down: {text:?}");
    let d = cluster.backend(1, 0);
    let want: BTreeSet<String> = owned_by(db, &first, 0)
        .into_iter()
        .chain(owned_by(db, &second, 0))
        .collect();
    wait_for_eq(
        PROMPT + SLACK,
        "influxdb-2-1 to hold both rounds",
        &want,
        || stored(d, db),
    );

    // Back up: everything held for it arrives, and /health says active again.
    let t_restart = Instant::now();
    cluster.influxds[0].restart();
    let d = &cluster.influxds[0];
    let took = wait_for_eq(
        Duration::from_secs(15),
        "influxdb-1-1 to receive the points held while it was down",
        &want,
        || stored(d, db),
    );
    eprintln!(
        "held points delivered {took:?} after the check began ({:?} after restart)",
        t_restart.elapsed()
    );
    // Exactly the points written: one per measurement, value and time intact.
    for (round, (list, base)) in [
        (&first, 1_700_000_000_000_000_000i64),
        (&second, 1_700_000_100_000_000_000i64),
    ]
    .into_iter()
    .enumerate()
    {
        for (i, n) in list.iter().enumerate() {
            if owner(db, n, 2) != 0 {
                continue;
            }
            let rows = d.rows(db, None, n);
            let want = vec![Row::new(
                n,
                base + i as i64,
                &[("host", "a")],
                &[("v", serde_json::json!(i))],
            )];
            assert_eq!(rows, want, "round {round}, measurement {n} on influxdb-1-1");
        }
    }
    wait_until(
        Duration::from_secs(2) + SLACK,
        "/health to show influxdb-1-1 active:true again",
        || cluster.proxy.backend_active("influxdb-1-1") == Some(true),
    );
    cluster.proxy.assert_running();
}

#[test]
fn hanging_backend_in_circle_2_does_not_delay_the_others() {
    let db = "hang";
    let influxds = Influxd::start_many(3);
    for d in &influxds {
        d.create_db(db);
    }
    let hang = FakeBackend::start(Fault::Hang);
    // circle-1: two real; circle-2: the hanging one first, then a real one.
    let config = config_for_urls(&[
        vec![influxds[0].url(), influxds[1].url()],
        vec![hang.url(), influxds[2].url()],
    ]);
    let mut proxy = Proxy::start(config);
    let all = names("h", 20);
    let circle2_real = owned_by(db, &all, 1);
    assert!(
        !owned_by(db, &all, 0).is_empty() && !circle2_real.is_empty(),
        "test data must touch both backends"
    );

    for round in 0..3i64 {
        let base = 1_700_000_000_000_000_000 + round * 1_000_000_000;
        let body = body_for(&all, base);
        let t = Instant::now();
        let (status, text) = proxy.write(db, None, &body);
        let answered = t.elapsed();
        assert_eq!(status, 204, "round {round}: {text:?}");
        assert!(
            answered < Duration::from_secs(1),
            "round {round}: /write took {answered:?} with a hanging backend"
        );
        for (i, d) in [&influxds[0], &influxds[1]].into_iter().enumerate() {
            let want = owned_by(db, &all, i);
            wait_for_eq(
                (PROMPT + SLACK).saturating_sub(t.elapsed()),
                &format!(
                    "round {round}: circle-1 backend {} to hold its share",
                    i + 1
                ),
                &want,
                || stored(d, db),
            );
            for n in &want {
                let times: BTreeSet<i64> = d.rows(db, None, n).iter().map(|r| r.time).collect();
                let i = all.iter().position(|x| x == n).unwrap() as i64;
                let expect: BTreeSet<i64> = (0..=round)
                    .map(|r| 1_700_000_000_000_000_000 + r * 1_000_000_000 + i)
                    .collect();
                if times != expect {
                    // The points of this round may still be on their way.
                    wait_until(
                        (PROMPT + SLACK).saturating_sub(t.elapsed()),
                        &format!("round {round}: all rounds of {n} on circle-1"),
                        || {
                            d.rows(db, None, n)
                                .iter()
                                .map(|r| r.time)
                                .collect::<BTreeSet<_>>()
                                == expect
                        },
                    );
                }
            }
        }
        let d = &influxds[2];
        wait_for_eq(
            (PROMPT + SLACK).saturating_sub(t.elapsed()),
            &format!("round {round}: the real backend of circle-2 to hold its share"),
            &circle2_real,
            || stored(d, db),
        );
    }
    assert!(
        hang.hits() >= 1,
        "the proxy never contacted the hanging backend"
    );
    let t = Instant::now();
    let (status, _, _) = proxy.get("/ping");
    assert_eq!(status, 204);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "/ping slow: {:?}",
        t.elapsed()
    );
    proxy.assert_running();
}

#[test]
fn backend_answering_500_does_not_delay_the_others() {
    let db = "e500";
    let influxds = Influxd::start_many(3);
    for d in &influxds {
        d.create_db(db);
    }
    let bad = FakeBackend::start(Fault::Error500);
    let config = config_for_urls(&[
        vec![influxds[0].url(), bad.url()],
        vec![influxds[1].url(), influxds[2].url()],
    ]);
    let mut proxy = Proxy::start(config);
    let all = names("e", 20);
    let t = Instant::now();
    let (status, text) = proxy.write(db, None, &body_for(&all, 1_700_000_000_000_000_000));
    assert_eq!(status, 204, "{text:?}");
    for (d, b, what) in [
        (&influxds[0], 0, "influxdb-1-1"),
        (&influxds[1], 0, "influxdb-2-1"),
        (&influxds[2], 1, "influxdb-2-2"),
    ] {
        let want = owned_by(db, &all, b);
        wait_for_eq(
            (PROMPT + SLACK).saturating_sub(t.elapsed()),
            &format!("{what} to hold its share while influxdb-1-2 answers 500"),
            &want,
            || stored(d, db),
        );
    }
    wait_until(
        Duration::from_secs(2) + SLACK,
        "/health to show the 500-answering backend active:false",
        || proxy.backend_active("influxdb-1-2") == Some(false),
    );
    proxy.assert_running();
}
