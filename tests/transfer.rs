//! Transfer operations end to end on real influxd: `rebalance` (add and
//! rm), `recovery`, `resync` and `cleanup` leave every measurement on its
//! owner only, with exactly the points a single reference influxd that got
//! the same writes holds, and the proxy answering a differential corpus as
//! the reference does; a proxy killed mid-transfer resumes by itself; writes
//! during a rebalance all land on their owners; `cleanup` drops nothing
//! unverified; a target that dies mid-copy fails the transfer, which a new
//! POST resumes.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::query;
use common::transfer::*;
use common::*;

/// How long a transfer of a test's data may take.
const TRANSFER: Duration = Duration::from_secs(90);
/// How long a cleanup may take.
const CLEANUP: Duration = Duration::from_secs(30);

/// A test's influxd processes, its reference and its proxy, with the
/// corpus loaded.
struct Loaded {
    all: Vec<Influxd>,
    reference: Influxd,
    corpus: Corpus,
    proxy: Proxy,
}

/// `n` influxd and a reference; a proxy whose circles are the first
/// `sizes[0]` of them, the next `sizes[1]`...; the mixed corpus written
/// through it, on every circle's owners.
fn load_mixed(n: usize, sizes: &[usize]) -> Loaded {
    let mut all = Influxd::start_many(n + 1);
    let reference = all.pop().unwrap();
    let corpus = Corpus::mixed();
    let b: Vec<&Influxd> = all.iter().collect();
    let mut groups: Vec<&[&Influxd]> = Vec::new();
    let mut first = 0;
    for size in sizes {
        groups.push(&b[first..first + size]);
        first += size;
    }
    let proxy = Proxy::start(circles_config(&groups));
    load_through_proxy(&proxy, &reference, &corpus);
    for g in &groups {
        wait_on_owners(g, &corpus, Duration::from_secs(30));
    }
    drop(groups);
    drop(b);
    Loaded {
        all,
        reference,
        corpus,
        proxy,
    }
}

/// 3 influxd, a reference and a proxy of one circle of the 3; bulk data
/// (20 measurements x 5000 points) written straight to the owners among
/// the first 2 (as a circle of 2 placed it) and to the reference; the third
/// starts empty, so a rebalance has work.
fn load_bulk() -> Loaded {
    let mut all = Influxd::start_many(4);
    let reference = all.pop().unwrap();
    let corpus = Corpus::bulk("bk", "bulk_", 20, 5000);
    create_schema(&[&all[0], &all[1], &reference], &corpus);
    load_on_owners(&[&all[0], &all[1]], &reference, &corpus);
    assert!(
        corpus.moving(2, 3).len() >= 3,
        "a few bulk measurements move"
    );
    let proxy = Proxy::start(one_circle(&[&all[0], &all[1], &all[2]]));
    Loaded {
        all,
        reference,
        corpus,
        proxy,
    }
}

/// A rebalance `add` of circle 0 slow enough to act on while it runs: one
/// worker, batches of 500 points.
const SLOW_ADD: [(&str, &str); 4] = [
    ("circle_id", "0"),
    ("operation", "add"),
    ("worker", "1"),
    ("batch", "500"),
];

/// POSTs [`SLOW_ADD`] and waits until part of it is done.
fn start_slow_rebalance(proxy: &Proxy) {
    start_transfer(proxy, "/rebalance", &SLOW_ADD, b"");
    poll_for(Duration::from_secs(60), "the rebalance under way", || {
        partly_done(&transfer_stats(proxy, 0, "rebalance")).then_some(())
    });
}

/// The ground the transfer tests stand on. The corpus through a proxy of 2
/// backends lands on its owners, equal to the reference, and the proxy
/// answers the differential corpus like the reference. Restarted on a
/// 3-backend config, the same checks fail without a transfer and pass after
/// a hand-made one (copies to the new owners, `DROP MEASUREMENT` on the old
/// ones). An influxd restarted empty has nothing left.
#[test]
fn fixtures_checks_fail_without_a_transfer_and_pass_after_a_hand_made_one() {
    let t = Instant::now();
    let Loaded {
        mut all,
        reference,
        corpus,
        mut proxy,
    } = load_mixed(3, &[2]);
    let b: Vec<&Influxd> = all.iter().collect();
    eprintln!(
        "{} measurements, {} points loaded in {:?}",
        corpus.points().len(),
        corpus.points().values().sum::<usize>(),
        t.elapsed()
    );
    assert!(corpus.points().len() >= 40, "at least 40 measurements");
    assert_circle_matches("2 backends, no transfer", &b[..2], &reference, &corpus);
    assert_proxy_answers_like_reference("2 backends, no transfer", &proxy, &reference, &corpus);
    assert_same_retention_policies(
        "CREATE RETENTION POLICY through the proxy",
        b[1],
        &reference,
        DBS,
    );
    let moving = corpus.moving(2, 3);
    assert!(
        moving.len() >= 5 && moving.len() < corpus.points().len(),
        "adding a third backend moves some measurements: {moving:?}"
    );

    restart_with_config(&mut proxy, one_circle(&b));
    let h = proxy.health();
    assert_eq!(
        h["circles"][0]["backends"].as_array().map(|b| b.len()),
        Some(3),
        "the restarted proxy has 3 backends: {h}"
    );
    let misplaced = circle_differences(&b, &reference, &corpus);
    assert!(
        misplaced.len() >= moving.len(),
        "without a transfer every moving measurement is misplaced: {misplaced:?}"
    );
    let differing = corpus_cases(&corpus)
        .iter()
        .filter(|c| query::compare_case(&proxy.url(), &reference.url(), c).is_some())
        .count();
    assert!(
        differing >= moving.len(),
        "without a transfer, queries of moving measurements differ ({differing} do)"
    );
    eprintln!(
        "without a transfer: {} misplaced, {differing} queries differ",
        misplaced.len()
    );

    // A hand-made rebalance and cleanup: the checks pass.
    create_schema(&[b[2]], &corpus);
    for p in &corpus.parts {
        if moving.contains(&(p.key.db, p.key.mm.clone())) {
            query::write_batch(b[owner(p.key.db, &p.key.mm, 3)], &p.batch);
        }
    }
    for (db, mm) in &moving {
        drop_measurement(b[owner(db, mm, 2)], db, mm);
    }
    assert_circle_matches("a hand-made rebalance", &b, &reference, &corpus);
    assert_proxy_answers_like_reference("a hand-made rebalance", &proxy, &reference, &corpus);

    drop(b);
    all[1].restart_empty();
    assert!(
        all[1].measurements(DBS[0]).is_empty() && all[0].measurements(DBS[0]).len() > 1,
        "only the influxd restarted empty lost its data"
    );
    eprintln!("fixtures checked in {:?}", t.elapsed());
}

/// A circle of 2 backends gets a third: after `rebalance` and `cleanup`
/// every measurement lives only on its owner among 3, the new backend has
/// the source's retention policies, and the proxy answers like the reference.
#[test]
fn rebalance_add_moves_every_measurement_to_its_owner() {
    let Loaded {
        all,
        reference,
        corpus,
        mut proxy,
    } = load_mixed(3, &[2]);
    let backends: Vec<&Influxd> = all.iter().collect();
    let moving = corpus.moving(2, 3);
    assert!(!moving.is_empty(), "nothing would move");

    restart_with_config(&mut proxy, one_circle(&backends));
    let t = Instant::now();
    let stats = rebalance_add(&proxy, &[], TRANSFER);
    eprintln!(
        "rebalance of {} measurements took {:?}: {stats}",
        moving.len(),
        t.elapsed()
    );
    let state = transfer_state(&proxy);
    let want = json!({
        "circles": [{"id": 0, "name": "circle-1", "transferring": false}],
        "resyncing": false,
    });
    assert_eq!(
        (&state["circles"], &state["resyncing"]),
        (&want["circles"], &want["resyncing"]),
        "/transfer/state after the rebalance: {state}"
    );
    for (key, value) in [("type", "rebalance"), ("state", "done"), ("error", "")] {
        assert_eq!(state["operation"][key], value, "/transfer/state: {state}");
    }
    assert_eq!(
        state["operation"]["circle_id"], 0,
        "/transfer/state: {state}"
    );
    let urls: Vec<String> = backends.iter().map(|d| d.url()).collect();
    assert_stats_shape(&stats, &urls);
    assert_eq!(
        stats_errors(&stats),
        Vec::<String>::new(),
        "errors: {stats}"
    );
    assert_eq!(
        stats_sum(&stats, "measurement_done"),
        stats_sum(&stats, "measurement_total"),
        "every measurement done: {stats}"
    );
    assert_eq!(
        stats_sum(&stats, "database_done"),
        stats_sum(&stats, "database_total"),
        "every database done: {stats}"
    );
    assert!(stats_sum(&stats, "transfer_count") >= 1, "{stats}");
    let moved_points: usize = corpus
        .points()
        .iter()
        .filter(|(k, _)| moving.contains(&(k.db, k.mm.clone())))
        .map(|(_, n)| n)
        .sum();
    assert!(
        stats_sum(&stats, "points_copied") >= moved_points as u64,
        "at least the {moved_points} points of the moving measurements copied: {stats}"
    );
    assert!(stats_sum(&stats, "measurements_verified") >= 1, "{stats}");

    let stats = cleanup(&proxy, 0, &[], CLEANUP);
    assert_stats_shape(&stats, &urls);
    assert_eq!(stats_sum(&stats, "measurements_unverified"), 0, "{stats}");

    assert_circle_matches(
        "after rebalance add and cleanup",
        &backends,
        &reference,
        &corpus,
    );
    // The new backend has the source's policies (durations too) where it
    // got measurements.
    let filled = corpus.dbs_on(2, 3);
    assert_same_retention_policies("the new backend", backends[2], &reference, filled);
    assert_proxy_answers_like_reference("after rebalance add", &proxy, &reference, &corpus);
}

/// 3 backends down to 2: `rebalance` with the removed one in the body, then
/// `cleanup`: the 2 left hold everything, each on its owner.
#[test]
fn rebalance_rm_moves_the_removed_backends_measurements() {
    let Loaded {
        all,
        reference,
        corpus,
        mut proxy,
    } = load_mixed(3, &[3]);
    let backends: Vec<&Influxd> = all.iter().collect();
    assert!(
        corpus
            .parts
            .iter()
            .any(|p| owner(p.key.db, &p.key.mm, 3) == 2),
        "the removed backend holds something"
    );

    restart_with_config(&mut proxy, one_circle(&backends[..2]));
    let body = json!({"backends": [{"name": backend_name(0, 2), "url": backends[2].url()}]});
    start_transfer(
        &proxy,
        "/rebalance",
        &[("circle_id", "0"), ("operation", "rm")],
        body.to_string().as_bytes(),
    );
    wait_transfer(&proxy, "rebalance", "done", TRANSFER);
    let stats = transfer_stats(&proxy, 0, "rebalance");
    assert_eq!(
        stats_errors(&stats),
        Vec::<String>::new(),
        "errors: {stats}"
    );
    cleanup(&proxy, 0, &[], CLEANUP);

    assert_circle_matches(
        "after rebalance rm and cleanup",
        &backends[..2],
        &reference,
        &corpus,
    );
    assert_proxy_answers_like_reference("after rebalance rm", &proxy, &reference, &corpus);
}

/// Two circles; one backend of circle 2 loses its disk (restarted empty):
/// `recovery` from circle 1 makes both circles equal to the reference.
#[test]
fn recovery_refills_a_wiped_backend_from_the_other_circle() {
    let Loaded {
        mut all,
        reference,
        corpus,
        proxy,
    } = load_mixed(4, &[2, 2]);
    all[2].restart_empty();
    wait_active(&proxy, &backend_name(1, 0));
    let b: Vec<&Influxd> = all.iter().collect();
    assert!(
        !circle_differences(&b[2..], &reference, &corpus).is_empty(),
        "the wiped backend lost data"
    );

    start_transfer(
        &proxy,
        "/recovery",
        &[("from_circle_id", "0"), ("to_circle_id", "1")],
        b"",
    );
    wait_transfer(&proxy, "recovery", "done", TRANSFER);
    assert_circle_matches("circle 1 after recovery", &b[..2], &reference, &corpus);
    assert_circle_matches("circle 2 after recovery", &b[2..], &reference, &corpus);
    let filled = corpus.dbs_on(0, 2);
    assert_same_retention_policies("the recovered backend", b[2], &reference, filled);
    assert_proxy_answers_like_reference("after recovery", &proxy, &reference, &corpus);
}

/// Two circles made to differ (points only one circle got, as if an
/// incident lost them on the other): `resync` makes them equal to each
/// other and to the reference.
#[test]
fn resync_makes_two_differing_circles_equal() {
    let Loaded {
        all,
        reference,
        mut corpus,
        proxy,
    } = load_mixed(4, &[2, 2]);
    let b: Vec<&Influxd> = all.iter().collect();

    // Lost by circle 2: more points of an existing measurement; lost by
    // circle 1: a whole measurement of the month policy.
    let base = corpus.base_s + 3600;
    let only_c1: String = (0..30)
        .map(|j| {
            format!(
                "load_3,host=x f={j}.5,i={j}i,s=\"c1\",b=true {}\n",
                base + j
            )
        })
        .collect();
    let only_c2: String = (0..25)
        .map(|j| {
            format!(
                "lost,host=y f={j}.25,i={j}i,s=\"c2\",b=false {}\n",
                base + j
            )
        })
        .collect();
    corpus.push(DBS[0], None, "load_3", only_c1, 30);
    corpus.push(DBS[1], Some(RP_MONTH), "lost", only_c2, 25);
    for (circle, p) in [
        (&b[..2], &corpus.parts[corpus.parts.len() - 2]),
        (&b[2..], &corpus.parts[corpus.parts.len() - 1]),
    ] {
        query::write_batch(circle[owner(p.key.db, &p.key.mm, 2)], &p.batch);
        query::write_batch(&reference, &p.batch);
    }
    assert!(!circle_differences(&b[..2], &reference, &corpus).is_empty());
    assert!(!circle_differences(&b[2..], &reference, &corpus).is_empty());

    start_transfer(&proxy, "/resync", &[], b"");
    wait_transfer(&proxy, "resync", "done", TRANSFER);
    assert_circle_matches("circle 1 after resync", &b[..2], &reference, &corpus);
    assert_circle_matches("circle 2 after resync", &b[2..], &reference, &corpus);
    assert_proxy_answers_like_reference("after resync", &proxy, &reference, &corpus);
}

/// The proxy killed with SIGKILL in the middle of a rebalance and started
/// again (same `data_dir` and `tlog_dir`, no new POST) resumes it, and ends
/// as an uninterrupted run would; its progress file and log show the way.
#[test]
fn kill9_resume_finishes_the_rebalance_after_restart() {
    let Loaded {
        all,
        reference,
        corpus,
        mut proxy,
    } = load_bulk();
    let b: Vec<&Influxd> = all.iter().collect();
    let progress = tlog_dir(&proxy).join("transfer.json");

    start_transfer(&proxy, "/rebalance", &SLOW_ADD, b"");
    let mut seen_progress_file = false;
    let stats = poll_for(Duration::from_secs(60), "the rebalance under way", || {
        seen_progress_file |= progress.exists();
        let s = transfer_stats(&proxy, 0, "rebalance");
        partly_done(&s).then_some(s)
    });
    seen_progress_file |= progress.exists();
    proxy.kill9();
    eprintln!("killed at {stats}");
    assert!(
        seen_progress_file,
        "{} existed during the run",
        progress.display()
    );
    assert!(
        progress.exists(),
        "{} survives the kill",
        progress.display()
    );

    proxy.restart();
    let t = Instant::now();
    wait_transfer(&proxy, "rebalance", "done", TRANSFER);
    eprintln!(
        "resumed rebalance finished {:?} after the restart",
        t.elapsed()
    );
    let log = op_log(&proxy, "rebalance");
    for word in ["started", "finished", "verified"] {
        assert!(
            log.to_ascii_lowercase().contains(word),
            "rebalance.log has {word:?} lines:\n{log}"
        );
    }
    cleanup(&proxy, 0, &[], CLEANUP);
    assert_circle_matches("after a resumed rebalance", &b, &reference, &corpus);
}

/// A client writes through the proxy during the whole rebalance (into the
/// measurements being moved among others): every acknowledged point ends on
/// its owner, and the circle equals the reference.
#[test]
fn writes_during_rebalance_all_land_on_their_owners() {
    let Loaded {
        all,
        reference,
        corpus,
        proxy,
    } = load_bulk();
    let b: Vec<&Influxd> = all.iter().collect();
    let mms: Vec<String> = corpus.parts.iter().map(|p| p.key.mm.clone()).collect();
    let writer = LiveWriter::start(&proxy, &reference, "bk", mms, 20_000);

    rebalance_add(&proxy, &[("worker", "1"), ("batch", "500")], TRANSFER);
    let report = writer.finish();
    eprintln!(
        "{} batches written during the rebalance, {} points acknowledged",
        report.batches,
        report.acked.len()
    );
    assert!(report.batches >= 10, "the writer ran during the rebalance");
    wait_acked_on_owners(&b, &report.acked, Duration::from_secs(30));
    cleanup(&proxy, 0, &[], CLEANUP);
    wait_acked_on_owners(&b, &report.acked, Duration::from_secs(5));
    assert_eq!(
        report.refused,
        Vec::<String>::new(),
        "writes refused during the rebalance"
    );
    // The live points went to the reference too, into the same measurements.
    assert_circle_matches("after a rebalance under writes", &b, &reference, &corpus);
}

/// Measurements a backend holds but does not own, never copied: `cleanup`
/// drops one whose owner holds at least as many points, keeps (and lists,
/// and logs) those whose owner lacks them or has fewer; `force=true` drops
/// them too.
#[test]
fn cleanup_unverified_drops_nothing_unless_forced() {
    let all = Influxd::start_many(2);
    let b: Vec<&Influxd> = all.iter().collect();
    let db = "cl";
    for d in &b {
        d.create_db(db);
    }
    let line = |mm: &str, j: i64| format!("{mm},host=a f={j}.5 {}\n", recent_base_s() + j);
    let points = |mm: &str, n: i64| -> String { (0..n).map(|j| line(mm, j)).collect() };
    // absent: the owner lacks it; fewer: the owner has 5 of 10; covered:
    // the owner has the 5 and 5 more.
    for (mm, stray, owned) in [("absent", 10, 0), ("fewer", 10, 5), ("covered", 5, 10)] {
        let o = owner(db, mm, 2);
        let r = b[1 - o].write(db, Some("s"), points(mm, stray).as_bytes());
        assert_eq!(r.status, 204, "{}", r.body);
        if owned > 0 {
            let r = b[o].write(db, Some("s"), points(mm, owned).as_bytes());
            assert_eq!(r.status, 204, "{}", r.body);
        }
    }
    let proxy = Proxy::start(one_circle(&b));
    let (status, body) = proxy.write(db, Some("s"), &points("placed", 7));
    assert_eq!(status, 204, "{body}");
    wait_until(Duration::from_secs(10), "placed on its owner", || {
        b[owner(db, "placed", 2)]
            .measurements(db)
            .contains("placed")
    });
    let holds = |mm: &str, on_owner: bool| {
        let o = owner(db, mm, 2);
        b[if on_owner { o } else { 1 - o }]
            .measurements(db)
            .contains(mm)
    };

    let stats = cleanup(&proxy, 0, &[], CLEANUP);
    eprintln!("cleanup stats: {stats}");
    assert!(
        holds("absent", false) && holds("fewer", false),
        "nothing unverified dropped"
    );
    assert!(
        !holds("covered", false),
        "a measurement its owner covers is dropped"
    );
    assert!(holds("placed", true) && holds("fewer", true) && holds("covered", true));
    assert!(
        stats_sum(&stats, "measurements_unverified") >= 2,
        "unverified counted: {stats}"
    );
    let listed: Vec<String> = stats
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, s)| {
            s["unverified_measurements"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(
        listed.contains(&"cl.absent".to_string()) && listed.contains(&"cl.fewer".to_string()),
        "unverified listed by name: {stats}"
    );
    let log = op_log(&proxy, "cleanup");
    assert!(
        log.contains("absent") && log.contains("fewer"),
        "cleanup.log names what it kept:\n{log}"
    );

    cleanup(&proxy, 0, &[("force", "true")], CLEANUP);
    assert!(
        !holds("absent", false) && !holds("fewer", false),
        "force drops them"
    );
    assert!(holds("placed", true) && holds("fewer", true) && holds("covered", true));
    let fewer = Key {
        db,
        rp: None,
        mm: "fewer".into(),
    };
    assert_eq!(
        count_points(b[owner(db, "fewer", 2)], &fewer),
        5,
        "the owner's points kept"
    );
}

/// The new backend's influxd stops in the middle of a rebalance: the
/// transfer ends `failed` with the error in the stats; once it is back, a
/// new POST resumes and completes it.
#[test]
fn target_dying_mid_copy_fails_the_transfer_and_a_new_post_resumes_it() {
    let Loaded {
        mut all,
        reference,
        corpus,
        proxy,
    } = load_bulk();
    start_slow_rebalance(&proxy);
    all[2].stop();
    let t = Instant::now();
    wait_transfer(&proxy, "rebalance", "failed", Duration::from_secs(120));
    let stats = transfer_stats(&proxy, 0, "rebalance");
    eprintln!("failed {:?} after the target stopped: {stats}", t.elapsed());
    assert!(
        !stats_errors(&stats).is_empty(),
        "the error is in the stats: {stats}"
    );

    all[2].restart();
    wait_active(&proxy, &backend_name(0, 2));
    start_transfer(&proxy, "/rebalance", &SLOW_ADD, b"");
    wait_transfer(&proxy, "rebalance", "done", TRANSFER);
    cleanup(&proxy, 0, &[], CLEANUP);
    let b: Vec<&Influxd> = all.iter().collect();
    assert_circle_matches(
        "after a failed and resumed rebalance",
        &b,
        &reference,
        &corpus,
    );
}

/// Points acknowledged under the old ring and still in an old owner's
/// spool when the rebalance starts (the backend took no writes for a
/// while) are moved too: the rebalance waits for the source's spool before
/// listing it, instead of listing it without them and leaving them behind
/// on it once delivered.
#[test]
fn points_still_spooled_for_an_old_owner_are_moved_too() {
    let all = Influxd::start_many(3);
    // A measurement owned by backend 1 of two and by backend 2 of three.
    let mm = (0..200)
        .map(|i| format!("spooled{i}"))
        .find(|m| owner("db", m, 2) == 1 && owner("db", m, 3) == 2)
        .expect("a measurement that moves from backend 1 to backend 2");
    for d in &all {
        d.create_db("db");
    }
    // Backend 1 answers pings and queries but refuses writes until opened.
    let gate = WriteGate::start(&all[1]);
    let urls = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| if i == 1 { gate.url() } else { all[i].url() })
            .collect()
    };
    let mut proxy = Proxy::start(config_for_urls(&[urls(2)]));
    let body: String = (0..50)
        .map(|i| format!("{mm},k=v v={i}i {}\n", 1_600_000_000_000_000_000i64 + i))
        .collect();
    assert_eq!(proxy.write("db", None, &body).0, 204);
    restart_with_config(&mut proxy, config_for_urls(&[urls(3)]));
    // The points reach backend 1 a second after the rebalance began.
    gate.open_after(Duration::from_secs(1));
    start_transfer(
        &proxy,
        "/rebalance",
        &[("circle_id", "0"), ("operation", "add")],
        b"",
    );
    wait_transfer(&proxy, "rebalance", "done", TRANSFER);
    assert_eq!(
        all[2].count_v("db", &mm),
        50,
        "the spooled points reached the new owner"
    );
}

/// A measurement dropped on its source while the rebalance copies: no
/// panic, the operation ends (done, or failed naming it and done after a
/// second POST), and every other moving measurement is whole on its owner.
#[test]
fn a_source_measurement_dropped_mid_copy_loses_nothing_else() {
    let Loaded {
        all,
        reference,
        corpus,
        mut proxy,
    } = load_bulk();
    let moving: Vec<(&str, String)> = corpus.moving(2, 3).into_iter().collect();
    let (db, dropped) = moving.last().cloned().expect("a moving measurement");
    start_slow_rebalance(&proxy);
    drop_measurement(&all[owner(db, &dropped, 2)], db, &dropped);
    let ended = poll_for(TRANSFER, "the rebalance over", || {
        let state = transfer_state(&proxy);
        let st = state["operation"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        matches!(st.as_str(), "done" | "failed").then_some(st)
    });
    proxy.assert_running();
    eprintln!("the rebalance ended {ended} after {dropped} was dropped");
    if ended == "failed" {
        let log = op_log(&proxy, "rebalance");
        assert!(log.contains(&dropped), "the log names {dropped}:\n{log}");
        start_transfer(&proxy, "/rebalance", &SLOW_ADD, b"");
        wait_transfer(&proxy, "rebalance", "done", TRANSFER);
    }
    for (db, mm) in moving.iter().filter(|(_, mm)| *mm != dropped) {
        let key = corpus
            .parts
            .iter()
            .map(|p| &p.key)
            .find(|k| k.db == *db && k.mm == *mm)
            .expect("a part of the corpus");
        assert_eq!(
            count_points(&all[owner(db, mm, 3)], key),
            count_points(&reference, key),
            "{db}.{mm} whole on its new owner"
        );
    }
}
