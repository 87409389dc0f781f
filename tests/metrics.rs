//! `/metrics` against real components: writes and queries through the proxy
//! into real influxd show up as the right counts; a backend that is down
//! shows `up` 0 and a waiting spool; `promtool check metrics` finds nothing
//! to say about the exposition; a real Prometheus scrapes the proxy and
//! answers PromQL over its series; credentials are asked for only with
//! `ping_auth_enabled`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use common::prometheus::{promtool_check_metrics, Prometheus};
use common::*;
use serde_json::json;

const USER: &str = "admin";
const PASS: &str = "s3cret";
const DB: &str = "metricsdb";

/// One sample line of an exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of an exposition (comments skipped); panics on a line that
/// is not `name{labels} value`.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("bad sample line {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    chars.next().filter(|&(_, q)| q == '"')?;
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The samples of `name` whose labels include `labels`.
fn matching<'a>(
    samples: &'a [Sample],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// The one sample of `name` with `labels`, if there is exactly one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = matching(samples, name, labels).collect();
    match found.as_slice() {
        [one] => Some(one.value),
        _ => None,
    }
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(samples, name, labels).map(|s| s.value).sum()
}

/// `GET /metrics` with extra query parameters and headers.
fn scrape_with(p: &Proxy, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
    let url = format!("{}/metrics", p.url());
    http_send(
        &agent(Duration::from_secs(10)),
        "GET",
        &url,
        params,
        headers,
        b"",
    )
    .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `GET /metrics` without credentials; must answer 200 in the format.
fn scrape(p: &Proxy) -> (String, Vec<Sample>) {
    let r = scrape_with(p, &[], &[]);
    assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse(&r.body);
    (r.body, samples)
}

/// `promtool check metrics` passes and prints nothing: no lint warning
/// either (promtool prints one line per problem).
fn assert_promtool_clean(exposition: &str) {
    let (ok, out) = promtool_check_metrics(exposition);
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics (ok: {ok}):\n{out}\n--- exposition ---\n{exposition}"
    );
}

fn backend_labels(name: &str) -> [(&str, &str); 1] {
    [("backend", name)]
}

/// A URL where nothing listens: a backend that is down.
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn with_credentials<'a>(params: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut out = params.to_vec();
    out.extend([("u", USER), ("p", PASS)]);
    out
}

fn query(p: &Proxy, q: &str) -> Resp {
    http_get(
        &format!("{}/query", p.url()),
        &with_credentials(&[("db", DB), ("q", q)]),
    )
}

#[test]
fn the_exposition_counts_points_requests_by_status_and_statements_by_route() {
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db(DB);
    }
    let mut config = config_for_urls(&[vec![influxds[0].url(), influxds[1].url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    let p = Proxy::start(config);

    // Measurement m<i> gets i + 1 points, over two requests; each backend
    // owns some of them.
    let mut expected = [0u64; 2];
    let mut bodies = [String::new(), String::new()];
    for i in 0..8u64 {
        let mm = format!("m{i}");
        expected[owner(DB, &mm, 2)] += i + 1;
        for t in 0..=i {
            bodies[(t % 2) as usize].push_str(&format!("{mm},host=h v={t} {}\n", 1000 + t));
        }
    }
    assert_eq!(expected.iter().sum::<u64>(), 36);
    assert!(expected.iter().all(|&n| n > 0), "{expected:?}");
    for body in &bodies {
        let r = p.write_with(&with_credentials(&[("db", DB)]), &[], body.as_bytes());
        assert_eq!(r.status, 204, "write: {}", r.body);
    }
    let bad = p.write_with(&with_credentials(&[("db", DB)]), &[], b"not line protocol");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let anonymous = p.write_with(&[("db", DB)], &[], b"m0 v=1 1");
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(p.get_resp("/no/such/path").status, 404);

    // One owner (passed through), several backends merged, DDL run.
    let single = query(&p, "SELECT count(v) FROM m7");
    assert_eq!(single.status, 200, "{}", single.body);
    let fan_out = query(&p, "SHOW MEASUREMENTS");
    assert_eq!(fan_out.status, 200, "{}", fan_out.body);
    let ddl = query(&p, "CREATE DATABASE metricsdb2");
    assert_eq!(ddl.status, 200, "{}", ddl.body);

    // Without ping_auth_enabled, /metrics wants no credentials even though
    // the proxy has some.
    let delivered = |samples: &[Sample], b: usize| {
        value(
            samples,
            "influxproxy_backend_points_delivered_total",
            &backend_labels(&backend_name(0, b)),
        )
    };
    let (text, samples) = poll_for(Duration::from_secs(20), "every point delivered", || {
        let (text, samples) = scrape(&p);
        let done = (0..2).all(|b| delivered(&samples, b) == Some(expected[b] as f64));
        done.then_some((text, samples))
    });
    for (b, &n) in expected.iter().enumerate() {
        let name = backend_name(0, b);
        let labels = backend_labels(&name);
        let n = n as f64;
        let get = |name: &str| value(&samples, name, &labels);
        assert_eq!(get("influxproxy_backend_points_accepted_total"), Some(n));
        assert_eq!(get("influxproxy_backend_points_delivered_total"), Some(n));
        assert_eq!(get("influxproxy_backend_points_rejected_total"), Some(0.0));
        assert_eq!(get("influxproxy_backend_up"), Some(1.0));
        assert_eq!(get("influxproxy_backend_spool_waiting_records"), Some(0.0));
        assert_eq!(
            get("influxproxy_backend_spool_oldest_waiting_age_seconds"),
            Some(0.0)
        );
        assert_eq!(get("influxproxy_backend_statements_pending"), Some(0.0));
        // The labels say where the backend is.
        let s = matching(&samples, "influxproxy_backend_up", &labels)
            .next()
            .unwrap();
        assert_eq!(s.labels["circle"], "circle-1");
        assert_eq!(s.labels["url"], influxds[b].url());
    }
    let requests = |path: &str, code: &str| {
        value(
            &samples,
            "influxproxy_http_requests_total",
            &[("path", path), ("code", code)],
        )
    };
    assert_eq!(requests("/write", "204"), Some(2.0));
    assert_eq!(requests("/write", "400"), Some(1.0));
    assert_eq!(requests("/write", "401"), Some(1.0));
    assert_eq!(requests("/query", "200"), Some(3.0));
    assert_eq!(requests("other", "404"), Some(1.0));
    assert_eq!(requests("/no/such/path", "404"), None, "paths are bounded");
    // Every endpoint's histogram counts its requests, whatever their code.
    let histogram = "influxproxy_http_request_duration_seconds";
    let paths: Vec<String> = matching(&samples, "influxproxy_http_requests_total", &[])
        .map(|s| s.labels["path"].clone())
        .collect();
    assert!(paths.len() >= 4, "{paths:?}");
    for path in &paths {
        let labels = [("path", path.as_str())];
        let n = sum(&samples, "influxproxy_http_requests_total", &labels);
        let count = value(&samples, &format!("{histogram}_count"), &labels);
        assert_eq!(count, Some(n), "{path}: histogram count vs requests");
        let inf = [("path", path.as_str()), ("le", "+Inf")];
        assert_eq!(
            value(&samples, &format!("{histogram}_bucket"), &inf),
            Some(n)
        );
        let sum = value(&samples, &format!("{histogram}_sum"), &labels);
        assert!(sum.is_some_and(|s| s > 0.0), "{path}: sum {sum:?}");
    }
    let statements = |kind: &str| {
        value(
            &samples,
            "influxproxy_query_statements_total",
            &[("kind", kind)],
        )
    };
    assert_eq!(statements("single_owner"), Some(1.0));
    assert_eq!(statements("fan_out"), Some(1.0));
    assert_eq!(statements("ddl"), Some(1.0));
    assert_eq!(statements("ddl_queued"), Some(0.0));
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "process_threads",
        "influxproxy_connections_open",
    ] {
        assert!(value(&samples, name, &[]).is_some(), "{name} missing");
    }
    assert_promtool_clean(&text);

    // A transfer (a cleanup of the circle, which has nothing to drop)
    // shows up with its progress once it ran.
    let cleanup = http_post(
        &format!("{}/cleanup", p.url()),
        &with_credentials(&[("circle_id", "0")]),
        &[],
        b"",
    );
    assert_eq!(cleanup.status, 202, "{}", cleanup.body);
    let running = [("operation", "cleanup"), ("circle", "circle-1")];
    let (text, samples) = poll_for(Duration::from_secs(20), "the cleanup to end", || {
        let (text, samples) = scrape(&p);
        let done = value(&samples, "influxproxy_transfer_running", &running) == Some(0.0);
        done.then_some((text, samples))
    });
    let measurements = sum(&samples, "influxproxy_transfer_measurements", &[]);
    assert!(measurements >= 8.0, "{measurements}");
    assert_eq!(
        sum(&samples, "influxproxy_transfer_measurements_done", &[]),
        measurements
    );
    assert_eq!(
        value(
            &samples,
            "influxproxy_http_requests_total",
            &[("path", "/cleanup"), ("code", "202")]
        ),
        Some(1.0)
    );
    assert_promtool_clean(&text);
}

#[test]
fn a_backend_down_is_up_0_with_its_spool_waiting_and_prometheus_sees_it() {
    let live = Influxd::start();
    live.create_db(DB);
    let config = config_for_urls(&[vec![live.url()], vec![dead_url()]]);
    let p = Proxy::start(config);
    let (up, down) = (backend_name(0, 0), backend_name(1, 0));
    let (status, body) = p.write(DB, None, "cpu v=1 1\ncpu v=2 2\ncpu v=3 3\n");
    assert_eq!(status, 204, "{body}");
    // DDL reaches the dead backend through its spool.
    let ddl = http_post(
        &format!("{}/query", p.url()),
        &[("q", "CREATE DATABASE later")],
        &[],
        b"",
    );
    assert_eq!(ddl.status, 200, "{}", ddl.body);

    let (text, samples) = poll_for(
        Duration::from_secs(20),
        "the dead backend down and waiting, the live one delivered",
        || {
            let (text, samples) = scrape(&p);
            let get = |b: &str, name: &str| value(&samples, name, &backend_labels(b));
            let ok = get(&down, "influxproxy_backend_up") == Some(0.0)
                && get(&up, "influxproxy_backend_up") == Some(1.0)
                && get(&up, "influxproxy_backend_points_delivered_total") == Some(3.0)
                && get(
                    &down,
                    "influxproxy_backend_spool_oldest_waiting_age_seconds",
                )
                .is_some_and(|age| age > 0.0);
            ok.then_some((text, samples))
        },
    );
    let get = |b: &str, name: &str| value(&samples, name, &backend_labels(b));
    assert_eq!(
        get(&down, "influxproxy_backend_points_accepted_total"),
        Some(3.0)
    );
    assert_eq!(
        get(&down, "influxproxy_backend_points_delivered_total"),
        Some(0.0)
    );
    // The batch and the statement wait.
    assert_eq!(
        get(&down, "influxproxy_backend_spool_waiting_records"),
        Some(2.0)
    );
    assert!(get(&down, "influxproxy_backend_spool_waiting_bytes").is_some_and(|b| b > 0.0));
    assert_eq!(
        get(&down, "influxproxy_backend_statements_pending"),
        Some(1.0)
    );
    assert_eq!(
        get(&up, "influxproxy_backend_spool_waiting_records"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "influxproxy_query_statements_total",
            &[("kind", "ddl_queued")]
        ),
        Some(1.0)
    );
    assert_promtool_clean(&text);

    // A real Prometheus scrapes the proxy every second.
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: influx-proxy\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        p.port()
    ));
    wait_until(Duration::from_secs(30), "the proxy target up", || {
        prometheus
            .active_targets()
            .iter()
            .any(|t| t["labels"]["job"] == "influx-proxy" && t["health"] == "up")
    });
    let series = |promql: &str| -> BTreeMap<String, String> {
        prometheus
            .query(promql)
            .iter()
            .map(|r| {
                (
                    r["metric"]["backend"].as_str().unwrap_or("").to_string(),
                    r["value"][1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let want: BTreeMap<String, String> = [(up.clone(), "1".into()), (down.clone(), "0".into())]
        .into_iter()
        .collect();
    wait_for_eq(
        Duration::from_secs(10),
        "influxproxy_backend_up through Prometheus",
        &want,
        || series("influxproxy_backend_up"),
    );
    assert_eq!(
        series("up{job=\"influx-proxy\"}"),
        [(String::new(), "1".to_string())].into_iter().collect()
    );
    let waiting = series(&format!(
        "influxproxy_backend_spool_waiting_records{{backend=\"{down}\"}}"
    ));
    assert_eq!(
        waiting.get(&down).map(String::as_str),
        Some("2"),
        "{waiting:?}"
    );
    let scrapes =
        prometheus.query("sum(influxproxy_http_request_duration_seconds_count{path=\"/metrics\"})");
    assert_eq!(scrapes.len(), 1, "{scrapes:?}");
}

#[test]
fn with_ping_auth_enabled_metrics_wants_the_proxy_credentials() {
    let mut config = config_for_urls(&[vec![dead_url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    config["ping_auth_enabled"] = json!(true);
    let ready = |url: &str| {
        http_send(
            &agent(Duration::from_secs(2)),
            "GET",
            &format!("{url}/ping"),
            &[("u", USER), ("p", PASS)],
            &[],
            b"",
        )
        .is_ok_and(|r| r.status == 204)
    };
    let p = Proxy::start_until(config, "-config", &ready);

    let anonymous = scrape_with(&p, &[], &[]);
    assert_error(
        &anonymous,
        "/metrics without credentials",
        401,
        "authentication failed",
    );
    let wrong = scrape_with(&p, &[("u", USER), ("p", "wrong")], &[]);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let by_params = scrape_with(&p, &[("u", USER), ("p", PASS)], &[]);
    assert_eq!(by_params.status, 200, "{}", by_params.body);
    assert!(by_params.body.contains("influxproxy_backend_up{"));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    );
    let by_header = scrape_with(&p, &[], &[("Authorization", basic.as_str())]);
    assert_eq!(by_header.status, 200, "{}", by_header.body);
    assert_eq!(
        by_header.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    // Any method, as /ping.
    let post = http_post(
        &format!("{}/metrics", p.url()),
        &[("u", USER), ("p", PASS)],
        &[],
        b"",
    );
    assert_eq!(post.status, 200, "{}", post.body);
    let (text, samples) = (post.body.clone(), parse(&post.body));
    assert_eq!(
        value(
            &samples,
            "influxproxy_http_requests_total",
            &[("path", "/metrics"), ("code", "401")]
        ),
        Some(2.0)
    );
    assert_promtool_clean(&text);
}

#[test]
fn a_batch_the_backend_keeps_refusing_counts_send_failures_and_retries() {
    let fake = FakeBackend::start(Fault::RejectContaining("poison"));
    let mut config = config_for_urls(&[vec![fake.url()]]);
    config["rewrite_interval"] = json!(0.2);
    let p = Proxy::start(config);
    let (status, body) = p.write(DB, None, "poison v=1 1\npoison v=2 2\n");
    assert_eq!(status, 204, "{body}");
    let name = backend_name(0, 0);
    let labels = backend_labels(&name);
    let samples = poll_for(Duration::from_secs(20), "three retries", || {
        let (_, samples) = scrape(&p);
        let retries = value(&samples, "influxproxy_backend_send_retries_total", &labels);
        retries.is_some_and(|n| n >= 3.0).then_some(samples)
    });
    let get = |name: &str| value(&samples, name, &labels).unwrap_or(f64::NAN);
    let (failures, retries) = (
        get("influxproxy_backend_send_failures_total"),
        get("influxproxy_backend_send_retries_total"),
    );
    // Each failure schedules one retry, sent once its backoff is over.
    assert!(
        failures == retries || failures == retries + 1.0,
        "failures {failures}, retries {retries}"
    );
    assert_eq!(get("influxproxy_backend_points_accepted_total"), 2.0);
    assert_eq!(get("influxproxy_backend_points_delivered_total"), 0.0);
    assert_eq!(get("influxproxy_backend_spool_waiting_records"), 1.0);
    // A 500 is the backend's answer, not its absence: it stays up.
    assert_eq!(get("influxproxy_backend_up"), 1.0);
}
