//! Routing, methods, the common headers, `/ping`, `/replica` and `/health`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Sends `method path` with an empty body on a fresh connection.
fn raw(proxy: &Proxy, method: &str, path: &str) -> Resp {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let got = raw_request(proxy.addr(), req.as_bytes(), Duration::from_secs(5));
    parse_raw(&got).unwrap_or_else(|| {
        panic!(
            "{method} {path}: no HTTP response, got {:?}",
            String::from_utf8_lossy(&got)
        )
    })
}

fn assert_proxy_headers(r: &Resp, what: &str, version: &str) {
    assert_eq!(
        r.header("x-influxdb-build"),
        Some("InfluxDB Proxy"),
        "{what}: X-Influxdb-Build header (headers {:?})",
        r.headers
    );
    assert_eq!(
        r.header("x-influxdb-version"),
        Some(version),
        "{what}: X-Influxdb-Version header (headers {:?})",
        r.headers
    );
}

fn proxy_version(proxy: &Proxy) -> String {
    let (status, headers, _) = proxy.get("/ping");
    assert_eq!(status, 204);
    let v = headers
        .get("x-influxdb-version")
        .cloned()
        .expect("/ping has X-Influxdb-Version");
    assert!(!v.trim().is_empty(), "empty X-Influxdb-Version");
    v
}

#[test]
fn ping_answers_204_with_proxy_headers_for_any_method() {
    let cluster = Cluster::start(&[], |_| {});
    let version = proxy_version(&cluster.proxy);
    for method in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PURGE",
    ] {
        let r = raw(&cluster.proxy, method, "/ping");
        assert_eq!(r.status, 204, "{method} /ping status (body {:?})", r.body);
        assert_eq!(r.body, "", "{method} /ping has a body");
        assert_proxy_headers(&r, &format!("{method} /ping"), &version);
    }
}

#[test]
fn every_response_carries_the_proxy_headers() {
    let cluster = Cluster::start(&["hdr"], |_| {});
    let p = &cluster.proxy;
    let version = proxy_version(p);
    let checks: Vec<(&str, Resp)> = vec![
        ("GET /health", p.get_resp("/health")),
        ("GET /replica ok", p.get_resp("/replica?db=hdr&mm=cpu")),
        ("GET /replica 400", p.get_resp("/replica")),
        ("GET /nope", p.get_resp("/nope")),
        ("GET /write", p.get_resp("/write?db=hdr")),
        (
            "POST /write 400",
            p.write_with(&[("db", "hdr"), ("precision", "xx")], &[], b"cpu v=1"),
        ),
        (
            "POST /write 204",
            p.write_with(&[("db", "hdr")], &[], b"cpu v=1"),
        ),
    ];
    for (what, r) in &checks {
        assert_proxy_headers(r, what, &version);
    }
}

#[test]
fn unknown_paths_are_404_page_not_found() {
    let cluster = Cluster::start(&[], |_| {});
    let version = proxy_version(&cluster.proxy);
    for path in [
        "/write/x",
        "/nope",
        "/query/",
        "/ping/",
        "/pingx",
        "/",
        "/health/x",
    ] {
        for method in ["GET", "POST"] {
            let r = raw(&cluster.proxy, method, path);
            assert_eq!(r.status, 404, "{method} {path}: status (body {:?})", r.body);
            assert_eq!(
                r.body.trim_end(),
                "404 page not found",
                "{method} {path}: body"
            );
            assert_proxy_headers(&r, &format!("{method} {path}"), &version);
        }
    }
}

#[test]
fn wrong_method_is_405_method_not_allow() {
    let cluster = Cluster::start(&[], |_| {});
    let version = proxy_version(&cluster.proxy);
    for (method, path) in [
        ("GET", "/write?db=x"),
        ("PUT", "/write?db=x"),
        ("DELETE", "/write"),
        ("HEAD", "/write"),
        ("POST", "/health"),
        ("POST", "/replica?db=a&mm=b"),
    ] {
        let r = raw(&cluster.proxy, method, path);
        let what = format!("{method} {path}");
        if method == "HEAD" {
            // No body on HEAD; status and headers still say 405.
            assert_eq!(r.status, 405, "{what}: status");
            assert_proxy_headers(&r, &what, &version);
            continue;
        }
        assert_error(&r, &what, 405, "method not allow");
        assert_proxy_headers(&r, &what, &version);
    }
}

#[test]
fn replica_names_the_ring_owner_in_every_circle() {
    let cluster = Cluster::start(&[], |_| {});
    let pairs = [
        ("db1", "cpu"),
        ("db1", "mem"),
        ("stress", "ctr"),
        ("telegraf", "cpu"),
        ("mydb", "h2o_feet"),
        ("db2", "cpu load"),
        ("db2", "a,b"),
        ("db3", "m=1&x"),
        ("d b", "ü"),
    ];
    let mut seen = [false, false];
    for (db, mm) in pairs {
        let b = owner(db, mm, 2);
        seen[b] = true;
        let r = http_get(
            &format!("{}/replica", cluster.proxy.url()),
            &[("db", db), ("mm", mm)],
        );
        assert_eq!(r.status, 200, "/replica db={db} mm={mm}: {:?}", r.body);
        assert!(
            r.body.ends_with('\n'),
            "/replica body does not end in a newline"
        );
        let want: Value = json!([
            {
                "backend": {"name": backend_name(0, b), "url": cluster.backend(0, b).url()},
                "circle": {"id": 0, "name": "circle-1"}
            },
            {
                "backend": {"name": backend_name(1, b), "url": cluster.backend(1, b).url()},
                "circle": {"id": 1, "name": "circle-2"}
            }
        ]);
        assert_eq!(r.json(), want, "/replica db={db} mm={mm}");
    }
    assert!(seen[0] && seen[1], "test pairs must touch both backends");
}

#[test]
fn replica_without_db_or_mm_is_400() {
    let cluster = Cluster::start(&[], |_| {});
    let version = proxy_version(&cluster.proxy);
    for path in [
        "/replica",
        "/replica?db=a",
        "/replica?mm=b",
        "/replica?db=&mm=b",
        "/replica?db=a&mm=",
    ] {
        let r = cluster.proxy.get_resp(path);
        assert_error(&r, path, 400, "invalid db or mm");
        assert_proxy_headers(&r, path, &version);
    }
}

#[test]
fn health_lists_every_backend_with_its_state() {
    let cluster = Cluster::start(&[], |_| {});
    let version = proxy_version(&cluster.proxy);
    let backend = |c: usize, b: usize| {
        json!({
            "name": backend_name(c, b),
            "url": cluster.backend(c, b).url(),
            "active": true,
            "backlog": false,
            "rewriting": false,
            "write_only": false,
        })
    };
    let want = json!({
        "checks": [],
        "circles": [
            {
                "circle": {"id": 0, "name": "circle-1", "active": true, "write_only": false},
                "backends": [backend(0, 0), backend(0, 1)],
            },
            {
                "circle": {"id": 1, "name": "circle-2", "active": true, "write_only": false},
                "backends": [backend(1, 0), backend(1, 1)],
            }
        ],
        "message": "ready for queries and writes",
        "name": "influx-proxy",
        "status": "pass",
        "version": version,
    });
    let r = cluster.proxy.get_resp("/health");
    assert_eq!(r.status, 200, "/health: {:?}", r.body);
    assert!(
        r.is_json(),
        "/health Content-Type {:?}",
        r.header("content-type")
    );
    assert!(
        r.body.ends_with('\n'),
        "/health body does not end in a newline"
    );
    // Our additions per backend (spool and point counters) come on top of
    // the Go proxy's keys; everything else must be exactly the Go shape.
    let mut got = r.json();
    for circle in got["circles"].as_array_mut().expect("circles array") {
        for b in circle["backends"].as_array_mut().expect("backends array") {
            let obj = b.as_object_mut().expect("backend object");
            for extra in ["spool", "points"] {
                assert!(
                    obj.remove(extra).is_some_and(|v| v.is_object()),
                    "/health backend {:?} lacks the {extra:?} object",
                    obj.get("name")
                );
            }
        }
    }
    assert_eq!(got, want, "/health body");
}

#[test]
fn health_fails_when_no_circle_can_serve_reads() {
    let influxds = Influxd::start_many(2);
    // One dead backend in each circle: no circle is complete.
    let config = config_for_urls(&[
        vec![influxds[0].url(), refused_url()],
        vec![refused_url(), influxds[1].url()],
    ]);
    let proxy = Proxy::start(config);
    wait_until(
        Duration::from_secs(3),
        "/health to show both refused backends active:false",
        || {
            proxy.backend_active("influxdb-1-2") == Some(false)
                && proxy.backend_active("influxdb-2-1") == Some(false)
        },
    );
    let r = proxy.get_resp("/health");
    let h = r.json();
    assert_eq!(h["status"], "fail", "status with no complete circle: {h}");
    assert_eq!(h["circles"][0]["circle"]["active"], false, "{h}");
    assert_eq!(h["circles"][1]["circle"]["active"], false, "{h}");
    assert_eq!(h["circles"][0]["backends"][0]["active"], true, "{h}");
    assert_eq!(h["circles"][1]["backends"][1]["active"], true, "{h}");
    eprintln!("/health status code with status=fail: {}", r.status);
}
