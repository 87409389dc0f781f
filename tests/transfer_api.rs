//! The HTTP surface of the transfer operations (reference section 6):
//! methods, auth, every parameter error and busy answer byte for byte, the
//! shapes of `/transfer/state` and `/transfer/stats`, and the peers of
//! `ha_addrs`. The data moved is tested in `tests/transfer.rs`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const USER: &str = "admin";
const PASS: &str = "s3cret";

/// Two circles of one real influxd each, behind a proxy; `tweak` edits
/// the config first.
fn start(tweak: impl FnOnce(&mut Value)) -> (Vec<Influxd>, Proxy) {
    let influxds = Influxd::start_many(2);
    let mut config = config_for_urls(&[vec![influxds[0].url()], vec![influxds[1].url()]]);
    tweak(&mut config);
    (influxds, Proxy::start(config))
}

fn post(
    p: &Proxy,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    http_post(&format!("{}{path}", p.url()), params, headers, body)
}

fn get(p: &Proxy, path: &str, params: &[(&str, &str)]) -> Resp {
    http_get(&format!("{}{path}", p.url()), params)
}

/// A plain-text answer, as Go's `http.Error`-like writes of the Go proxy.
fn assert_text(r: &Resp, what: &str, status: u16, text: &str) {
    assert_eq!(r.status, status, "{what}: status (body {:?})", r.body);
    assert_eq!(r.body, format!("{text}\n"), "{what}: body");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{what}: Content-Type {:?}",
        r.header("content-type")
    );
}

#[test]
fn transfer_endpoints_check_the_method_before_the_credentials() {
    let (_d, p) = start(|c| {
        c["username"] = json!(USER);
        c["password"] = json!(PASS);
    });
    for path in ["/rebalance", "/recovery", "/resync", "/cleanup", "/clear"] {
        assert_error(
            &get(&p, path, &[]),
            &format!("GET {path}"),
            405,
            "method not allow",
        );
        assert_error(
            &post(&p, path, &[("circle_id", "0")], &[], b""),
            &format!("POST {path} without credentials"),
            401,
            "authentication failed",
        );
    }
    for path in ["/transfer/stats", "/migrate/stats"] {
        assert_error(
            &post(&p, path, &[], &[], b""),
            &format!("POST {path}"),
            405,
            "method not allow",
        );
        assert_error(
            &get(&p, path, &[]),
            &format!("GET {path} without credentials"),
            401,
            "authentication failed",
        );
    }
    for path in ["/transfer/state", "/migrate/state"] {
        let raw = raw_request(
            p.addr(),
            format!(
                "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
            Duration::from_secs(5),
        );
        let r = parse_raw(&raw).unwrap_or_else(|| panic!("PUT {path}: no answer"));
        assert_error(&r, &format!("PUT {path}"), 405, "method not allow");
        assert_error(
            &get(&p, path, &[]),
            &format!("GET {path} without credentials"),
            401,
            "authentication failed",
        );
        assert_error(
            &post(&p, path, &[("resyncing", "true")], &[], b""),
            &format!("POST {path} without credentials"),
            401,
            "authentication failed",
        );
    }
    // With credentials a parameter error comes next: auth passed.
    let creds = [("u", USER), ("p", PASS)];
    assert_error(
        &post(&p, "/rebalance", &creds, &[], b""),
        "POST /rebalance with u/p",
        400,
        "invalid circle_id",
    );
}

/// A path, its parameters, a body and the error message it must get.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static [u8],
    &'static str,
);

#[test]
fn transfer_parameter_errors_answer_the_go_texts() {
    let (_d, p) = start(|_| {});
    let cases: Vec<Case> = vec![
        ("/rebalance", vec![], b"", "invalid circle_id"),
        (
            "/rebalance",
            vec![("circle_id", "2")],
            b"",
            "invalid circle_id",
        ),
        (
            "/rebalance",
            vec![("circle_id", "-1")],
            b"",
            "invalid circle_id",
        ),
        (
            "/rebalance",
            vec![("circle_id", "x")],
            b"",
            "invalid circle_id",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0")],
            b"",
            "invalid operation",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "del")],
            b"",
            "invalid operation",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "rm")],
            b"",
            "invalid backends from body",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "rm")],
            b"{\"backends\":[]}",
            "invalid backends from body",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "rm")],
            b"{\"backends\":[{\"name\":",
            "invalid backends from body",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "rm")],
            b"{\"backends\":[{\"name\":\"x\"}]}",
            "invalid backends from body",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "add"), ("worker", "0")],
            b"",
            "invalid worker, require positive integer",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "add"), ("worker", "many")],
            b"",
            "invalid worker, require positive integer",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "add"), ("batch", "-5")],
            b"",
            "invalid batch, require positive integer",
        ),
        (
            "/rebalance",
            vec![
                ("circle_id", "0"),
                ("operation", "add"),
                ("since", "yesterday"),
            ],
            b"",
            "invalid since, require non-negative integer",
        ),
        (
            "/rebalance",
            vec![("circle_id", "0"), ("operation", "add"), ("tick", "-1")],
            b"",
            "invalid since, require non-negative integer",
        ),
        (
            "/rebalance",
            vec![
                ("circle_id", "0"),
                ("operation", "add"),
                ("ha_addrs", "10.0.0.1:7076"),
            ],
            b"",
            "invalid ha_addrs, require at least two addresses as <host:port>, comma-separated",
        ),
        (
            "/resync",
            vec![("ha_addrs", "10.0.0.1:7076,http://10.0.0.2:7076")],
            b"",
            "invalid ha_addrs, require at least two addresses as <host:port>, comma-separated",
        ),
        ("/recovery", vec![], b"", "invalid from_circle_id"),
        (
            "/recovery",
            vec![("from_circle_id", "0")],
            b"",
            "invalid to_circle_id",
        ),
        (
            "/recovery",
            vec![("from_circle_id", "0"), ("to_circle_id", "7")],
            b"",
            "invalid to_circle_id",
        ),
        (
            "/recovery",
            vec![("from_circle_id", "1"), ("to_circle_id", "1")],
            b"",
            "from_circle_id and to_circle_id cannot be same",
        ),
        (
            "/recovery",
            vec![
                ("from_circle_id", "1"),
                ("to_circle_id", "0"),
                ("batch", "0"),
            ],
            b"",
            "invalid batch, require positive integer",
        ),
        (
            "/resync",
            vec![("worker", "-2")],
            b"",
            "invalid worker, require positive integer",
        ),
        ("/cleanup", vec![], b"", "invalid circle_id"),
        (
            "/cleanup",
            vec![("circle_id", "9")],
            b"",
            "invalid circle_id",
        ),
        ("/clear", vec![("circle_id", "9")], b"", "invalid circle_id"),
        ("/transfer/state", vec![], b"", "missing query parameter"),
        ("/migrate/state", vec![], b"", "missing query parameter"),
        (
            "/transfer/state",
            vec![("resyncing", "maybe")],
            b"",
            "illegal resyncing",
        ),
        (
            "/transfer/state",
            vec![("circle_id", "0"), ("transferring", "yes")],
            b"",
            "illegal transferring",
        ),
        (
            "/transfer/state",
            vec![("circle_id", "0")],
            b"",
            "illegal transferring",
        ),
        (
            "/transfer/state",
            vec![("circle_id", "5"), ("transferring", "true")],
            b"",
            "invalid circle_id",
        ),
        (
            "/transfer/state",
            vec![("transferring", "true")],
            b"",
            "invalid circle_id",
        ),
    ];
    for (path, params, body, message) in cases {
        let what = format!(
            "POST {path} {params:?} body {:?}",
            String::from_utf8_lossy(body)
        );
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        let r = post(&p, path, &params, headers, body);
        if message.contains('<') {
            // Go's JSON encoder writes `<` and `>` as \u003c and \u003e.
            assert_eq!(r.status, 400, "{what}");
            let escaped = message.replace('<', "\\u003c").replace('>', "\\u003e");
            assert_eq!(r.body, format!("{{\"error\":\"{escaped}\"}}\n"), "{what}");
            assert_eq!(r.header("x-influxdb-error"), Some(message), "{what}");
        } else {
            assert_error(&r, &what, 400, message);
        }
    }
    for path in ["/transfer/stats", "/migrate/stats"] {
        assert_error(
            &get(&p, path, &[]),
            &format!("GET {path}"),
            400,
            "invalid circle_id",
        );
        assert_error(
            &get(&p, path, &[("circle_id", "2"), ("type", "resync")]),
            &format!("GET {path} circle 2"),
            400,
            "invalid circle_id",
        );
        assert_error(
            &get(&p, path, &[("circle_id", "0"), ("type", "move")]),
            &format!("GET {path} type"),
            400,
            "invalid stats type",
        );
        assert_error(
            &get(&p, path, &[("circle_id", "0")]),
            &format!("GET {path} no type"),
            400,
            "invalid stats type",
        );
    }
    // Parameters from a form body count as the URL's (Go's FormValue).
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_error(
        &post(&p, "/rebalance", &[], &form, b"circle_id=1&operation=move"),
        "form body",
        400,
        "invalid operation",
    );
    // pretty=true indents the error as every JSON answer.
    let r = post(&p, "/recovery", &[("pretty", "true")], &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "{\n    \"error\": \"invalid from_circle_id\"\n}\n");
}

#[test]
fn transfer_state_marks_circles_and_busy_operations_answer_plain_text() {
    let (_d, p) = start(|_| {});
    let r = get(&p, "/transfer/state", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "circles": [
                {"id": 0, "name": "circle-1", "transferring": false},
                {"id": 1, "name": "circle-2", "transferring": false}
            ],
            "resyncing": false,
            "operation": null,
            "peers": {}
        })
    );
    let r = post(
        &p,
        "/transfer/state",
        &[("circle_id", "0"), ("transferring", "true")],
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        "{\"circle\":{\"id\":0,\"name\":\"circle-1\",\"transferring\":true}}\n"
    );
    assert_eq!(
        get(&p, "/migrate/state", &[]).json()["circles"][0]["transferring"],
        json!(true)
    );
    let busy = "circle 0 is transferring";
    assert_text(
        &post(
            &p,
            "/rebalance",
            &[("circle_id", "0"), ("operation", "add")],
            &[],
            b"",
        ),
        "rebalance",
        400,
        busy,
    );
    assert_text(
        &post(&p, "/cleanup", &[("circle_id", "0")], &[], b""),
        "cleanup",
        400,
        busy,
    );
    assert_text(&post(&p, "/resync", &[], &[], b""), "resync", 400, busy);
    assert_text(
        &post(
            &p,
            "/recovery",
            &[("from_circle_id", "1"), ("to_circle_id", "0")],
            &[],
            b"",
        ),
        "recovery",
        400,
        "circle 1 or 0 is transferring",
    );
    // Both at once echo both.
    let r = post(
        &p,
        "/transfer/state",
        &[
            ("circle_id", "0"),
            ("transferring", "false"),
            ("resyncing", "true"),
        ],
        &[],
        b"",
    );
    assert_eq!(
        r.body,
        "{\"circle\":{\"id\":0,\"name\":\"circle-1\",\"transferring\":false},\"resyncing\":true}\n"
    );
    let resyncing = "proxy is resyncing";
    assert_text(
        &post(
            &p,
            "/rebalance",
            &[("circle_id", "1"), ("operation", "add")],
            &[],
            b"",
        ),
        "rebalance",
        400,
        resyncing,
    );
    assert_text(
        &post(
            &p,
            "/recovery",
            &[("from_circle_id", "0"), ("to_circle_id", "1")],
            &[],
            b"",
        ),
        "recovery",
        400,
        resyncing,
    );
    assert_text(
        &post(&p, "/resync", &[], &[], b""),
        "resync",
        400,
        resyncing,
    );
    assert_text(
        &post(&p, "/clear", &[("circle_id", "1")], &[], b""),
        "clear",
        400,
        resyncing,
    );
    let r = post(&p, "/transfer/state", &[("resyncing", "0")], &[], b"");
    assert_eq!(r.body, "{\"resyncing\":false}\n");
    assert_eq!(
        get(&p, "/transfer/state", &[]).json()["resyncing"],
        json!(false)
    );
}

#[test]
fn transfer_stats_have_the_go_keys_and_ours_for_every_backend_of_the_circle() {
    let (d, p) = start(|_| {});
    let r = get(
        &p,
        "/transfer/stats",
        &[("circle_id", "1"), ("type", "rebalance")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.is_json());
    assert_eq!(
        r.json(),
        json!({
            (d[1].url()): {
                "database_total": 0, "database_done": 0,
                "measurement_total": 0, "measurement_done": 0,
                "transfer_count": 0, "inplace_count": 0,
                "points_copied": 0, "bytes_copied": 0, "points_per_second": 0.0,
                "measurements_verified": 0, "measurements_unverified": 0,
                "last_error": "", "state": "idle"
            }
        })
    );
}

#[test]
fn peers_are_told_with_our_credentials_and_an_unreachable_one_is_reported() {
    let auth = |c: &mut Value| {
        c["username"] = json!(USER);
        c["password"] = json!(PASS);
    };
    let (_d, p1) = start(auth);
    let (_d2, p2) = start(auth);
    let dead = format!("127.0.0.1:{}", free_port());
    let peer = format!("127.0.0.1:{}", p2.port());
    let addrs = format!("127.0.0.1:{},{peer},{dead}", p1.port());
    let creds = [("u", USER), ("p", PASS)];
    // A resync of empty backends: planned, nothing to copy, done.
    let mut params = creds.to_vec();
    params.push(("ha_addrs", &addrs));
    let r = post(&p1, "/resync", &params, &[], b"");
    assert_text(&r, "POST /resync", 202, "accepted");
    let state = poll_for(Duration::from_secs(30), "the resync to end", || {
        let s = get(&p1, "/transfer/state", &creds).json();
        (s["operation"]["state"] != "running").then_some(s)
    });
    assert_eq!(state["operation"]["type"], "resync");
    assert_eq!(state["peers"][&peer], "", "the peer was told: {state}");
    let unreachable = state["peers"][&dead].as_str().unwrap_or_default();
    assert!(
        !unreachable.is_empty(),
        "the dead peer is reported: {state}"
    );
    assert!(
        state["peers"]
            .get(format!("127.0.0.1:{}", p1.port()))
            .is_none(),
        "we are not our own peer: {state}"
    );
    let log = std::fs::read_to_string(p1.log_path().parent().unwrap().join("tlog/resync.log"))
        .unwrap_or_default();
    assert!(
        log.contains(&format!("peer {dead}: not told")),
        "op log: {log}"
    );
    // The peer was marked and unmarked: it ends not resyncing.
    assert_eq!(
        get(&p2, "/transfer/state", &creds).json()["resyncing"],
        json!(false)
    );
}

#[test]
fn a_proxy_stopped_mid_transfer_saves_its_progress_and_finishes_after_restart() {
    const DB: &str = "stopdb";
    const MEASUREMENTS: usize = 8;
    const POINTS: usize = 50_000;
    let influxds = Influxd::start_many(2);
    influxds[0].create_db(DB);
    for k in 0..MEASUREMENTS {
        let body: String = (0..POINTS)
            .map(|i| format!("m{k},t=a v={i}i {}\n", 1_600_000_000 + i))
            .collect();
        let w = influxds[0].write(DB, Some("s"), body.as_bytes());
        assert_eq!(w.status, 204, "{}", w.body);
    }
    let mut p = Proxy::start(config_for_urls(&[vec![
        influxds[0].url(),
        influxds[1].url(),
    ]]));
    let tlog = p.log_path().parent().unwrap().join("tlog");
    let r = post(
        &p,
        "/rebalance",
        &[
            ("circle_id", "0"),
            ("operation", "add"),
            ("worker", "1"),
            ("batch", "500"),
        ],
        &[],
        b"",
    );
    assert_text(&r, "POST /rebalance", 202, "accepted");
    poll_for(Duration::from_secs(60), "a copy under way", || {
        let s = get(
            &p,
            "/transfer/stats",
            &[("circle_id", "0"), ("type", "rebalance")],
        )
        .json();
        let copied = s[influxds[0].url()]["points_copied"].as_u64().unwrap_or(0);
        assert_eq!(
            s[influxds[0].url()]["state"],
            "running",
            "the rebalance ended before the stop: {s}"
        );
        (copied > 0).then_some(())
    });
    let status = p.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit: {status:?}"
    );
    let saved: Value = serde_json::from_slice(
        &std::fs::read(tlog.join("transfer.json")).expect("transfer.json kept"),
    )
    .expect("transfer.json is JSON");
    assert_eq!(saved["state"], "stopped", "{saved}");
    let tasks = saved["tasks"].as_array().expect("tasks");
    assert!(
        tasks.iter().any(|t| t["state"] != "verified"),
        "some work is left for the resume: {saved}"
    );
    let log = std::fs::read_to_string(tlog.join("rebalance.log")).unwrap_or_default();
    assert!(
        log.contains("stopped by the proxy's shutdown"),
        "op log: {log}"
    );

    // Started again: the proxy resumes by itself and finishes.
    p.restart();
    poll_for(
        Duration::from_secs(120),
        "the resumed rebalance to end",
        || {
            let s = get(&p, "/transfer/state", &[]).json();
            match s["operation"]["state"].as_str() {
                Some("done") if s["circles"][0]["transferring"] == false => Some(()),
                Some("failed") => panic!("the resumed rebalance failed: {s}"),
                _ => None,
            }
        },
    );
    assert!(
        !tlog.join("transfer.json").exists(),
        "a done transfer leaves no transfer.json"
    );
    for k in 0..MEASUREMENTS {
        let mm = format!("m{k}");
        let owner = &influxds[owner(DB, &mm, 2)];
        assert_eq!(owner.count_v(DB, &mm), POINTS as u64, "{mm} on its owner");
    }
}
