//! Helpers for the `/query` tests: one data set written both through the
//! proxy and straight to a reference influxd, query cases, and a comparison
//! of the two answers that reports every difference at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// The main database of the data set.
pub const DB: &str = "qd";
/// The second database (different data under the same measurement names).
pub const DB2: &str = "qd2";
/// A non-default retention policy of [`DB`].
pub const RP2: &str = "r2";

/// One `/write` body: database, retention policy, line protocol (precision s).
#[derive(Debug, Clone)]
pub struct Batch {
    pub db: &'static str,
    pub rp: Option<&'static str>,
    pub body: String,
}

/// The points every `/query` test works on, with explicit timestamps in
/// seconds, all inside the last hour (so `now() - 1h` queries see them).
#[derive(Debug, Clone)]
pub struct DataSet {
    /// First timestamp, seconds, a multiple of 10 minutes.
    pub base_s: i64,
    pub batches: Vec<Batch>,
}

impl DataSet {
    /// 30 minutes of points, starting 50 to 60 minutes ago.
    pub fn new() -> DataSet {
        let now_s = now_ns() / 1_000_000_000;
        let base_s = now_s / 600 * 600 - 3000;
        DataSet::at(base_s)
    }

    pub fn at(base_s: i64) -> DataSet {
        let t = |i: i64| base_s + 60 * i;
        let mut qd = String::new();
        // cpu: 3 hosts (c is sparse), float/float/int fields.
        for (h, (host, region)) in [("a", "us"), ("b", "eu"), ("c", "us")].iter().enumerate() {
            let h = h as i64;
            for i in 0..30i64 {
                if h == 2 && i % 3 != 0 {
                    continue;
                }
                let usage = ((i * 7 + h * 13) % 50) as f64 + 0.25 * (h + 1) as f64;
                qd += &format!(
                    "cpu,host={host},region={region} usage={usage},idle={},n={}i {}\n",
                    100.0 - usage,
                    i * (h + 1),
                    t(i)
                );
            }
        }
        // mem: int / float / bool.
        for (h, host) in ["a", "b"].iter().enumerate() {
            for i in (0..30i64).step_by(2) {
                qd += &format!(
                    "mem,host={host} used={}i,free={},ok={} {}\n",
                    1000 + i * 10 + h as i64,
                    (i as f64) * 1.5 + 0.5,
                    (i / 2 + h as i64) % 2 == 0,
                    t(i)
                );
            }
        }
        // disk: float and string, two paths.
        for (p, path) in ["/", "/var"].iter().enumerate() {
            for i in (0..30i64).step_by(3) {
                let pct = 40.0 + (i + p as i64 * 5) as f64 * 0.5;
                let label = if pct > 50.0 { "warn" } else { "ok" };
                qd += &format!(
                    "disk,host=a,path={path} pct={pct},label=\"{label}\" {}\n",
                    t(i)
                );
            }
        }
        // net: ints, tx only every 4th minute (nulls in SELECT *, fill matters).
        for (h, host) in ["a", "b"].iter().enumerate() {
            for i in 0..30i64 {
                let rx = 100 * i + 7 * h as i64;
                if i % 4 == 0 {
                    qd += &format!("net,host={host} rx={rx}i,tx={}i {}\n", rx / 2, t(i));
                } else {
                    qd += &format!("net,host={host} rx={rx}i {}\n", t(i));
                }
            }
        }
        // h2o_feet (the InfluxDB docs' sample), a field key with a space.
        for (l, loc) in ["coyote_creek", "santa_monica"].iter().enumerate() {
            for i in (0..30i64).step_by(6) {
                let level = 2.0 + (i as f64) * 0.25 + l as f64;
                let desc = if level < 3.0 {
                    "below 3 feet"
                } else {
                    "between 3 and 6 feet"
                };
                qd += &format!(
                    "h2o_feet,location={loc} water_level={level},level\\ description=\"{desc}\" {}\n",
                    t(i)
                );
            }
        }
        // A name that needs quoting in InfluxQL.
        for i in (0..30i64).step_by(5) {
            qd += &format!("cpu-load.1m,host=a v={} {}\n", i as f64 / 10.0, t(i));
        }
        let mut r2 = String::new();
        for i in (0..30i64).step_by(10) {
            r2 += &format!("cpu,host=a,region=us usage={} {}\n", 900 + i, t(i));
        }
        r2 += &format!("rponly,host=z v=1i {}\n", t(1));
        let mut qd2 = String::new();
        for i in (0..30i64).step_by(5) {
            qd2 += &format!("cpu,host=x usage={} {}\n", 500.5 + i as f64, t(i));
            qd2 += &format!("mem,host=y used={}i {}\n", 7000 + i, t(i));
        }
        DataSet {
            base_s,
            batches: vec![
                Batch {
                    db: DB,
                    rp: None,
                    body: qd,
                },
                Batch {
                    db: DB,
                    rp: Some(RP2),
                    body: r2,
                },
                Batch {
                    db: DB2,
                    rp: None,
                    body: qd2,
                },
            ],
        }
    }

    /// Points per (db, rp, measurement).
    pub fn counts(&self) -> BTreeMap<(String, Option<String>, String), usize> {
        let mut out = BTreeMap::new();
        for b in &self.batches {
            for line in b.body.lines() {
                let mm = line.split([',', ' ']).next().unwrap_or_default();
                *out.entry((b.db.to_string(), b.rp.map(String::from), mm.to_string()))
                    .or_insert(0) += 1;
            }
        }
        out
    }
}

impl Default for DataSet {
    fn default() -> Self {
        DataSet::new()
    }
}

/// Creates the databases and the retention policy of the data set on `d`.
pub fn prepare(d: &Influxd) {
    d.create_db(DB);
    d.create_db(DB2);
    d.exec(&format!(
        "CREATE RETENTION POLICY {RP2} ON {DB} DURATION 0s REPLICATION 1"
    ));
}

/// Writes the data set straight to `d`.
pub fn load_direct(d: &Influxd, ds: &DataSet) {
    for b in &ds.batches {
        write_batch(d, b);
    }
}

/// Writes one batch (precision s) straight to `d`.
pub fn write_batch(d: &Influxd, b: &Batch) {
    let mut params = vec![("db", b.db), ("precision", "s")];
    if let Some(rp) = b.rp {
        params.push(("rp", rp));
    }
    let r = http_post(
        &format!("{}/write", d.url()),
        &params,
        &[],
        b.body.as_bytes(),
    );
    assert_eq!(
        r.status,
        204,
        "write to {} {}/{:?}: {}",
        d.url(),
        b.db,
        b.rp,
        r.body
    );
}

/// Writes the data set through the proxy.
pub fn load_proxy(p: &Proxy, ds: &DataSet) {
    for b in &ds.batches {
        let mut params = vec![("db", b.db), ("precision", "s")];
        if let Some(rp) = b.rp {
            params.push(("rp", rp));
        }
        let r = p.write_with(&params, &[], b.body.as_bytes());
        assert_eq!(r.status, 204, "proxy write {}/{:?}: {}", b.db, b.rp, r.body);
    }
}

/// Waits until every backend that owns a measurement of the data set holds
/// all its points, in every circle.
pub fn wait_loaded(cluster: &Cluster, ds: &DataSet, timeout: Duration) {
    let start = Instant::now();
    for ((db, rp, mm), n) in ds.counts() {
        for c in 0..2 {
            let d = cluster.owner_of(c, &db, &mm);
            let left = timeout.saturating_sub(start.elapsed());
            wait_until(
                left,
                &format!("{n} points of {db}/{rp:?}/{mm} on circle {}", c + 1),
                || d.rows(&db, rp.as_deref(), &mm).len() == n,
            );
        }
    }
}

/// Four backends (2 circles x 2) and a reference influxd, all prepared and
/// loaded with the data set (through the proxy and directly).
pub struct QueryBench {
    pub cluster: Cluster,
    pub reference: Influxd,
    pub ds: DataSet,
}

impl QueryBench {
    pub fn start(tweak: impl FnOnce(&mut Value)) -> QueryBench {
        let mut influxds = Influxd::start_many(5);
        let reference = influxds.pop().unwrap();
        for d in influxds.iter().chain(std::iter::once(&reference)) {
            prepare(d);
        }
        let mut config = two_by_two_config(&influxds);
        tweak(&mut config);
        let proxy = Proxy::start(config);
        let cluster = Cluster { influxds, proxy };
        let ds = DataSet::new();
        load_direct(&reference, &ds);
        load_proxy(&cluster.proxy, &ds);
        wait_loaded(&cluster, &ds, Duration::from_secs(20));
        QueryBench {
            cluster,
            reference,
            ds,
        }
    }
}

// ---------------------------------------------------------------------------
// Query cases.

/// How a query is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Everything in the URL query string.
    Get,
    /// POST, everything (q, db, ...) in an `application/x-www-form-urlencoded` body.
    PostForm,
    /// POST, everything in the URL query string, empty body.
    PostUrl,
}

/// How two answers are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Parsed JSON, equal.
    Exact,
    /// Parsed JSON, each series' rows compared as a set (InfluxDB's order is
    /// creation order there: databases, retention policies).
    Unordered,
    /// A stream of JSON objects (chunked): concatenated per statement and
    /// series (the `partial` flags dropped), then equal.
    Chunked,
    /// Like `Exact`, and both bodies must be indented (several lines).
    Pretty,
    /// Byte for byte: status, `Content-Type` and body (CSV answers).
    Bytes,
}

/// One query, sent the same way to the proxy and to the reference.
#[derive(Debug, Clone)]
pub struct Case {
    pub q: String,
    pub params: Vec<(String, String)>,
    /// Request headers besides the method's own.
    pub headers: Vec<(String, String)>,
    pub method: Method,
    pub cmp: Cmp,
    /// The answer depends on `now()`: a difference is retried (twice).
    pub now_dependent: bool,
}

impl Case {
    /// `GET /query?q=..[&db=..]`.
    pub fn get(db: Option<&str>, q: impl Into<String>) -> Case {
        let mut params = Vec::new();
        if let Some(db) = db {
            params.push(("db".to_string(), db.to_string()));
        }
        Case {
            q: q.into(),
            params,
            headers: Vec::new(),
            method: Method::Get,
            cmp: Cmp::Exact,
            now_dependent: false,
        }
    }

    pub fn param(mut self, k: &str, v: &str) -> Case {
        self.params.push((k.to_string(), v.to_string()));
        self
    }

    /// `Accept: application/csv`, answers compared byte for byte.
    pub fn csv(mut self) -> Case {
        self.headers
            .push(("Accept".into(), "application/csv".into()));
        self.cmp = Cmp::Bytes;
        self
    }

    pub fn post_form(mut self) -> Case {
        self.method = Method::PostForm;
        self
    }

    pub fn post_url(mut self) -> Case {
        self.method = Method::PostUrl;
        self
    }

    pub fn unordered(mut self) -> Case {
        self.cmp = Cmp::Unordered;
        self
    }

    pub fn chunked(mut self, size: Option<usize>) -> Case {
        self.cmp = Cmp::Chunked;
        self.params.push(("chunked".into(), "true".into()));
        if let Some(n) = size {
            self.params.push(("chunk_size".into(), n.to_string()));
        }
        self
    }

    pub fn pretty(mut self) -> Case {
        self.cmp = Cmp::Pretty;
        self.params.push(("pretty".into(), "true".into()));
        self
    }

    pub fn now(mut self) -> Case {
        self.now_dependent = true;
        self
    }

    /// All parameters, `q` first.
    pub fn all_params(&self) -> Vec<(String, String)> {
        let mut out = vec![("q".to_string(), self.q.clone())];
        out.extend(self.params.iter().cloned());
        out
    }

    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{:?} {:?} [{}]", self.method, self.q, params.join("&"))
    }
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k.as_bytes()), pct(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes every byte but the unreserved ones.
pub fn pct(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `case` to the server at `base_url` (`/query`).
pub fn send(base_url: &str, case: &Case) -> Resp {
    let url = format!("{base_url}/query");
    let params = case.all_params();
    let refs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let form = form_encode(&params);
    let (method, refs, body) = match case.method {
        Method::Get => ("GET", refs, &b""[..]),
        Method::PostUrl => ("POST", refs, &b""[..]),
        Method::PostForm => {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
            ("POST", Vec::new(), form.as_bytes())
        }
    };
    http_send(default_agent(), method, &url, &refs, &headers, body)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Every JSON value of a body (one, or several for a chunked answer);
/// `Err` with the body when it is not a stream of JSON values.
pub fn json_stream(body: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_str(body).into_iter::<Value>() {
        match v {
            Ok(v) => out.push(v),
            Err(e) => return Err(format!("not JSON ({e}): {body:?}")),
        }
    }
    Ok(out)
}

/// Concatenates chunked answers: one result per statement id, consecutive
/// pieces of the same series (name, tags, columns) joined, `partial` dropped.
pub fn join_chunks(chunks: &[Value]) -> Value {
    // A chunk that is an error object (no "results") is kept as is.
    if let [one] = chunks {
        if one.get("results").is_none() {
            return one.clone();
        }
    }
    let mut results: Vec<Value> = Vec::new();
    for chunk in chunks {
        let Some(rs) = chunk.get("results").and_then(|r| r.as_array()) else {
            results.push(json!({ "non-result chunk": chunk }));
            continue;
        };
        for r in rs {
            let id = r.get("statement_id").cloned().unwrap_or(Value::Null);
            let pos = match results
                .iter()
                .position(|x| x.get("statement_id") == Some(&id))
            {
                Some(p) => p,
                None => {
                    results.push(json!({ "statement_id": id }));
                    results.len() - 1
                }
            };
            let target = results[pos].as_object_mut().unwrap();
            for (k, v) in r.as_object().into_iter().flatten() {
                match k.as_str() {
                    "statement_id" | "partial" => {}
                    "series" => {
                        let list = target
                            .entry("series")
                            .or_insert_with(|| json!([]))
                            .as_array_mut()
                            .unwrap();
                        for s in v.as_array().into_iter().flatten() {
                            let mut s = s.clone();
                            if let Some(o) = s.as_object_mut() {
                                o.remove("partial");
                            }
                            let same = list.last().is_some_and(|last: &Value| {
                                last.get("name") == s.get("name")
                                    && last.get("tags") == s.get("tags")
                                    && last.get("columns") == s.get("columns")
                            });
                            if same {
                                let more = s["values"].as_array().cloned().unwrap_or_default();
                                let last = list.last_mut().unwrap();
                                if let Some(vals) = last
                                    .as_object_mut()
                                    .unwrap()
                                    .entry("values")
                                    .or_insert_with(|| json!([]))
                                    .as_array_mut()
                                {
                                    vals.extend(more);
                                }
                            } else {
                                list.push(s);
                            }
                        }
                    }
                    "messages" => {
                        let list = target
                            .entry("messages")
                            .or_insert_with(|| json!([]))
                            .as_array_mut()
                            .unwrap();
                        list.extend(v.as_array().cloned().unwrap_or_default());
                    }
                    _ => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    json!({ "results": results })
}

/// Sorts each series' rows (by their JSON text).
fn sort_rows(v: &mut Value) {
    for r in v
        .get_mut("results")
        .and_then(|r| r.as_array_mut())
        .into_iter()
        .flatten()
    {
        for s in r
            .get_mut("series")
            .and_then(|s| s.as_array_mut())
            .into_iter()
            .flatten()
        {
            if let Some(vals) = s.get_mut("values").and_then(|v| v.as_array_mut()) {
                vals.sort_by_key(|a| a.to_string());
            }
        }
    }
}

/// Sorts, in each series whose first column is `time`, every run of rows
/// with the same time: InfluxDB orders points by time, but leaves the order
/// of points of different series at the same time undefined (one influxd's
/// merge heap decides it, and it changes with the set of series it reads).
fn sort_equal_times(v: &mut Value) {
    for r in v
        .get_mut("results")
        .and_then(|r| r.as_array_mut())
        .into_iter()
        .flatten()
    {
        for s in r
            .get_mut("series")
            .and_then(|s| s.as_array_mut())
            .into_iter()
            .flatten()
        {
            if s["columns"].get(0).and_then(|c| c.as_str()) != Some("time") {
                continue;
            }
            let Some(vals) = s.get_mut("values").and_then(|v| v.as_array_mut()) else {
                continue;
            };
            let mut i = 0;
            while i < vals.len() {
                let t = vals[i].get(0).cloned();
                let mut j = i + 1;
                while j < vals.len() && vals[j].get(0).cloned() == t {
                    j += 1;
                }
                vals[i..j].sort_by_key(|a| a.to_string());
                i = j;
            }
        }
    }
}

/// A CSV body with every run of lines of the same name, tags and time (its
/// first three fields) sorted, as [`sort_equal_times`] does for JSON.
fn sort_equal_time_lines(body: &str) -> String {
    // The first three fields of a line, quotes and all.
    fn key(line: &str) -> &str {
        let (mut quoted, mut commas) = (false, 0);
        for (i, c) in line.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    commas += 1;
                    if commas == 3 {
                        return &line[..i];
                    }
                }
                _ => {}
            }
        }
        line
    }
    let mut lines: Vec<&str> = body.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i + 1;
        while j < lines.len() && key(lines[j]) == key(lines[i]) {
            j += 1;
        }
        lines[i..j].sort_unstable();
        i = j;
    }
    lines.concat()
}

/// What is compared of an answer: the status and the (normalised) body.
pub fn normalize(resp: &Resp, cmp: Cmp) -> Value {
    if cmp == Cmp::Bytes {
        return json!({
            "status": resp.status,
            "content-type": resp.header("content-type"),
            "body": sort_equal_time_lines(&resp.body),
        });
    }
    let body = match json_stream(&resp.body) {
        Err(e) => Value::String(e),
        Ok(values) => {
            let mut v = match (cmp, values.as_slice()) {
                (Cmp::Chunked, _) => join_chunks(&values),
                (_, [one]) => one.clone(),
                _ => Value::String(format!(
                    "{} JSON values where one was expected: {:?}",
                    values.len(),
                    resp.body
                )),
            };
            if cmp == Cmp::Unordered {
                sort_rows(&mut v);
            } else {
                sort_equal_times(&mut v);
            }
            v
        }
    };
    json!({ "status": resp.status, "body": body })
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// Runs `case` on both servers; `None` when the answers agree, else a report.
/// With `QUERY_TEST_SHOW` set in the environment, every query and both
/// answers are printed.
pub fn compare_case(proxy_url: &str, reference_url: &str, case: &Case) -> Option<String> {
    let tries = if case.now_dependent { 3 } else { 1 };
    let mut report = None;
    for _ in 0..tries {
        let want = send(reference_url, case);
        let got = send(proxy_url, case);
        if std::env::var_os("QUERY_TEST_SHOW").is_some() {
            eprintln!(
                "{}\n      proxy: {} {}\n  reference: {} {}",
                case.describe(),
                got.status,
                clip(&got.body, 600),
                want.status,
                clip(&want.body, 600)
            );
        }
        let (w, g) = (normalize(&want, case.cmp), normalize(&got, case.cmp));
        let mut problem = None;
        if w != g {
            problem = Some("answers differ");
        } else if case.cmp == Cmp::Pretty
            && (got.body.trim_end().lines().count() < 2)
                != (want.body.trim_end().lines().count() < 2)
        {
            problem = Some("pretty=true: one body is indented, the other is not");
        }
        match problem {
            None => return None,
            Some(p) => {
                report = Some(format!(
                    "{}: {p}\n      proxy: {} {}\n  reference: {} {}",
                    case.describe(),
                    got.status,
                    clip(&got.body, 1500),
                    want.status,
                    clip(&want.body, 1500)
                ));
            }
        }
    }
    report
}

/// Runs every case; panics listing every difference (query, proxy's
/// answer, reference's answer).
pub fn assert_corpus(what: &str, proxy_url: &str, reference_url: &str, cases: &[Case]) {
    let start = Instant::now();
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|c| compare_case(proxy_url, reference_url, c))
        .collect();
    eprintln!(
        "{what}: {} queries compared in {:?}, {} differ",
        cases.len(),
        start.elapsed(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} queries answer differently through the proxy than on the reference influxd:\n\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n\n")
    );
}

/// The whole corpus for the data set `ds`.
pub fn full_corpus(ds: &DataSet) -> Vec<Case> {
    let b = ds.base_s;
    let end = b + 1800;
    let (t0ms, t1ms) = (b * 1000, end * 1000);
    let qd = Some(DB);
    let mut c = vec![
        // The reference's examples: qualified and quoted names.
        Case::get(None, r#"SELECT * FROM "qd"."autogen"."cpu""#),
        Case::get(qd, r#"SELECT * FROM "qd"."autogen"."cpu""#),
        Case::get(None, "SELECT * FROM qd..cpu"),
        Case::get(Some(DB2), "SELECT * FROM qd..mem"),
        Case::get(Some(DB2), "SELECT * FROM cpu"),
        Case::get(qd, "SELECT * FROM r2.cpu"),
        Case::get(qd, r#"SELECT * FROM "r2"."cpu""#),
        Case::get(None, r#"SELECT * FROM "qd".r2."rponly""#),
        Case::get(qd, "SELECT * FROM cpu").param("rp", RP2),
        Case::get(qd, "SELECT * FROM rponly").param("rp", RP2),
        Case::get(
            qd,
            r#"SELECT "water_level", "level description" FROM "h2o_feet" WHERE "location" = 'santa_monica'"#,
        ),
        Case::get(qd, r#"SELECT * FROM "cpu-load.1m""#),
        Case::get(None, r#"SELECT * FROM "qd".."cpu-load.1m""#),
        Case::get(qd, "SELECT usage, host FROM cpu WHERE host = 'c' AND usage > 10"),
        // Grafana's usual ones.
        Case::get(
            qd,
            r#"SELECT mean("usage") FROM "cpu" WHERE "host" =~ /^a$/ AND time >= now() - 1h GROUP BY time(10m), "host" fill(null)"#,
        )
        .now(),
        Case::get(
            qd,
            format!(r#"SELECT mean("usage") FROM "autogen"."cpu" WHERE time >= {t0ms}ms and time <= {t1ms}ms GROUP BY time(5m), "host" fill(null)"#),
        ),
        Case::get(
            qd,
            format!(r#"SELECT mean("usage") AS "mean_usage", max("n") FROM "cpu" WHERE ("region" = 'us') AND time >= {t0ms}ms and time <= {t1ms}ms GROUP BY time(10m) fill(none)"#),
        ),
        Case::get(qd, "SELECT last(*) FROM cpu"),
        Case::get(qd, r#"SELECT last(*) FROM "cpu" GROUP BY "host""#),
        Case::get(qd, r#"SHOW TAG VALUES WITH KEY = "host""#),
        Case::get(qd, r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host""#),
        Case::get(qd, r#"SHOW TAG VALUES WITH KEY IN ("host", "region")"#),
        Case::get(qd, r#"SHOW TAG VALUES WITH KEY = "host" WHERE "region" = 'us'"#),
        Case::get(qd, r#"SHOW TAG VALUES WITH KEY =~ /^(host|location)$/"#),
        Case::get(qd, "SHOW MEASUREMENTS"),
        Case::get(qd, "SHOW MEASUREMENTS WITH MEASUREMENT =~ /^(cpu|mem|n.*)$/"),
        Case::get(qd, "SHOW MEASUREMENTS WHERE host = 'c'"),
        Case::get(None, "SHOW MEASUREMENTS ON qd2"),
        Case::get(qd, "SHOW FIELD KEYS"),
        Case::get(qd, "SHOW FIELD KEYS FROM cpu"),
        Case::get(qd, r#"SHOW FIELD KEYS FROM "h2o_feet""#),
        Case::get(None, "SHOW FIELD KEYS ON qd2"),
        Case::get(qd, "SHOW TAG KEYS"),
        Case::get(qd, "SHOW TAG KEYS FROM cpu"),
        Case::get(None, "SHOW TAG KEYS ON qd FROM mem"),
        Case::get(None, "SHOW RETENTION POLICIES ON qd").unordered(),
        Case::get(qd, "SHOW RETENTION POLICIES").unordered(),
        Case::get(None, "SHOW DATABASES").unordered(),
        Case::get(qd, "SHOW SERIES"),
        Case::get(qd, "SHOW SERIES FROM cpu"),
        Case::get(qd, "SHOW SERIES FROM cpu, mem"),
        Case::get(qd, "SHOW SERIES WHERE host = 'a'"),
        Case::get(qd, "SHOW SERIES FROM /^(cpu|net)$/"),
        Case::get(qd, "SHOW SERIES CARDINALITY"),
        Case::get(qd, "SHOW SERIES EXACT CARDINALITY"),
        Case::get(qd, "SHOW SERIES CARDINALITY FROM cpu"),
        Case::get(qd, "SHOW MEASUREMENT CARDINALITY"),
        Case::get(qd, "SHOW MEASUREMENT EXACT CARDINALITY"),
        Case::get(qd, "SHOW TAG VALUES CARDINALITY WITH KEY = host"),
        Case::get(qd, "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = host"),
        Case::get(qd, "SHOW FIELD KEY CARDINALITY"),
        Case::get(qd, "SHOW TAG KEY CARDINALITY"),
        // Several measurements.
        Case::get(qd, "SELECT * FROM cpu, mem"),
        Case::get(qd, "SELECT mean(*) FROM cpu, mem GROUP BY host"),
        Case::get(qd, "SELECT count(*) FROM cpu, mem, disk, net"),
        Case::get(qd, "SELECT * FROM cpu, mem WHERE host = 'a' LIMIT 3"),
        Case::get(qd, "SELECT * FROM mem, cpu ORDER BY time DESC LIMIT 2"),
        // A measurement without a matching row still gives its columns
        // (the proxy asks its backend for EXPLAIN).
        Case::get(qd, "SELECT * FROM cpu, mem WHERE usage > 0"),
        Case::get(qd, "SELECT *::field FROM mem, cpu WHERE used > 0 LIMIT 2"),
        Case::get(qd, "SELECT count(*) FROM cpu, mem WHERE usage > 0"),
        // GROUP BY *: tag keys of measurements without a matching row too
        // (the proxy asks their backends for SHOW TAG KEYS).
        // (cpu and h2o_feet share one backend, disk is on the other; see
        // the placement this test prints.)
        Case::get(qd, "SELECT * FROM /^(cpu|disk)$/ WHERE usage > 0 GROUP BY *"),
        Case::get(qd, "SELECT count(pct) FROM disk, h2o_feet GROUP BY *"),
        // Several wildcard calls: columns call by call, as influxd lists them.
        Case::get(qd, "SELECT mean(*), count(*) FROM cpu, mem"),
        Case::get(qd, "SELECT min(n), MAX(*) FROM mem, cpu GROUP BY host"),
        Case::get(qd, "SELECT mean(*) AS m, count(*) FROM cpu, mem"),
        Case::get(qd, "SELECT count(*) AS c FROM cpu, mem WHERE usage > 0"),
        Case::get(qd, "SELECT * FROM /^(cpu|mem)$/ WHERE \"free\" > 0 LIMIT 3"),
        Case::get(
            qd,
            format!(r#"SELECT * FROM "h2o_feet", net WHERE time >= {}s AND time < {}s"#, b + 600, b + 900),
        ),
        Case::get(None, "SELECT * FROM qd..mem, qd2..cpu"),
        // Regular expressions.
        Case::get(qd, "SELECT * FROM /^(cpu|mem)$/"),
        Case::get(qd, "SELECT count(*) FROM /.*/"),
        Case::get(qd, "SELECT last(*) FROM /^(cpu|mem)$/ GROUP BY *"),
        Case::get(qd, "SELECT * FROM r2./.*/"),
        Case::get(qd, "SELECT max(rx) FROM /^n/ GROUP BY host"),
        // Several statements.
        Case::get(qd, "SELECT count(*) FROM cpu; SELECT count(*) FROM disk; SHOW MEASUREMENTS"),
        Case::get(
            qd,
            "SHOW TAG KEYS; SHOW FIELD KEYS FROM mem; SELECT * FROM nosuch; SELECT last(used) FROM mem",
        ),
        Case::get(qd, "SELECT count(*) FROM cpu;"),
        // GROUP BY time and fill.
        Case::get(
            qd,
            format!("SELECT mean(usage), max(n) FROM cpu WHERE time >= {b}s AND time < {end}s GROUP BY time(5m)"),
        ),
        Case::get(
            qd,
            format!("SELECT max(tx) FROM net WHERE time >= {b}s AND time < {}s GROUP BY time(1m), host fill(previous)", b + 720),
        ),
        Case::get(
            qd,
            format!("SELECT max(tx) FROM net WHERE time >= {b}s AND time < {}s GROUP BY time(1m) fill(0)", b + 600),
        ),
        Case::get(
            qd,
            format!("SELECT mean(tx) FROM net WHERE host = 'a' AND time >= {b}s AND time < {}s GROUP BY time(1m) fill(linear)", b + 600),
        ),
        Case::get(
            qd,
            format!("SELECT count(usage) FROM cpu WHERE time >= {b}s AND time < {end}s GROUP BY time(7m, 2m), host fill(-1)"),
        ),
        // Subqueries.
        Case::get(qd, "SELECT max(m) FROM (SELECT mean(usage) AS m FROM cpu GROUP BY time(1m), host)"),
        Case::get(qd, "SELECT mean(used) FROM (SELECT used FROM mem WHERE host = 'a')"),
        Case::get(qd, "SELECT sum(c) FROM (SELECT count(usage) AS c FROM cpu GROUP BY host)"),
        // Subqueries over measurements on both backends (cpu and mem): an
        // outer query works per measurement, so each backend's part is whole.
        Case::get(qd, "SELECT max(m) FROM (SELECT mean(usage) AS m FROM cpu GROUP BY host), (SELECT mean(used) AS m FROM mem GROUP BY host)"),
        Case::get(qd, "SELECT count(*) FROM (SELECT * FROM cpu, mem)"),
        Case::get(qd, "SELECT sum(c) FROM (SELECT count(n) AS c FROM /^(cpu|mem)$/ GROUP BY host) GROUP BY *"),
        Case::get(qd, "SELECT last(v) FROM (SELECT used AS v FROM mem), (SELECT usage AS v FROM cpu) WHERE v > 10"),
        // Functions, expressions, empty answers, a statement error.
        Case::get(qd, "SELECT percentile(usage, 90), stddev(usage), spread(n) FROM cpu GROUP BY host"),
        Case::get(
            qd,
            format!("SELECT derivative(mean(rx), 1m) FROM net WHERE time >= {b}s AND time < {end}s GROUP BY time(2m)"),
        ),
        Case::get(qd, "SELECT top(usage, host, 2) FROM cpu"),
        Case::get(qd, "SELECT distinct(label) FROM disk"),
        Case::get(qd, "SELECT usage * 2 + idle AS x FROM cpu WHERE host = 'b' LIMIT 4"),
        Case::get(qd, "SELECT mean(label) FROM disk"),
        Case::get(qd, "SELECT * FROM nosuch"),
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'zzz'"),
        // epoch.
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'a'").param("epoch", "ms"),
        Case::get(qd, "SELECT * FROM cpu, mem").param("epoch", "s"),
        Case::get(qd, "SELECT * FROM /^(disk|net)$/ LIMIT 3").param("epoch", "u"),
        Case::get(qd, "SELECT count(*) FROM cpu; SELECT last(used) FROM mem").param("epoch", "ms"),
        Case::get(qd, "SELECT last(*) FROM cpu").param("epoch", "h"),
        // chunked.
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'a' LIMIT 7").chunked(Some(2)),
        Case::get(qd, "SELECT * FROM cpu, mem LIMIT 5").chunked(Some(2)),
        Case::get(qd, "SHOW SERIES").chunked(Some(2)),
        Case::get(qd, "SHOW MEASUREMENTS").chunked(Some(2)),
        Case::get(qd, "SELECT * FROM cpu GROUP BY host").chunked(None),
        Case::get(qd, "SELECT count(*) FROM cpu; SELECT * FROM mem LIMIT 3").chunked(Some(2)),
        // LIMIT / OFFSET / SLIMIT.
        Case::get(qd, "SHOW MEASUREMENTS LIMIT 2"),
        Case::get(qd, "SHOW MEASUREMENTS LIMIT 2 OFFSET 1"),
        Case::get(qd, "SHOW MEASUREMENTS OFFSET 3"),
        Case::get(qd, "SHOW SERIES LIMIT 3 OFFSET 2"),
        Case::get(qd, "SHOW TAG KEYS LIMIT 1"),
        Case::get(qd, "SHOW TAG VALUES WITH KEY = host LIMIT 1 OFFSET 1"),
        Case::get(qd, "SHOW FIELD KEYS LIMIT 2 OFFSET 1"),
        Case::get(qd, "SELECT * FROM cpu LIMIT 3 OFFSET 2"),
        Case::get(qd, "SELECT * FROM cpu GROUP BY host LIMIT 2"),
        Case::get(qd, "SELECT * FROM cpu GROUP BY host SLIMIT 1 SOFFSET 1"),
        Case::get(qd, "SELECT * FROM cpu, mem LIMIT 2 OFFSET 1"),
        Case::get(qd, "SELECT * FROM /^(cpu|mem|disk)$/ GROUP BY * SLIMIT 2"),
        // Whitespace, comments, case.
        Case::get(qd, "SELECT\n*\tFROM -- c\n cpu"),
        Case::get(qd, "/* lead */ SELECT count(*) /* mid */ FROM\r\n\"cpu\" ;"),
        Case::get(qd, "select count(*) from cpu group by host"),
        Case::get(qd, "SHOW\nMEASUREMENTS"),
        Case::get(qd, "show tag values\twith key = \"host\""),
        Case::get(qd, "SELECT count(*)\nFROM cpu;\n\nSELECT count(*)\n  FROM\tmem\n"),
        // Near misses of forbidden statements: allowed.
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'a' -- ; GRANT ALL TO bob"),
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'a;GRANT ALL PRIVILEGES TO bob'"),
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'INTO'"),
        Case::get(qd, r#"SELECT usage AS "into" FROM cpu WHERE host = 'b' LIMIT 2"#),
        Case::get(qd, r#"SELECT * FROM "grant""#),
        Case::get(qd, r#"SELECT * FROM "cpu" WHERE "host" = 'a' /* KILL QUERY 1 */"#),
        // POST (form body, URL) and pretty.
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'b'").post_form(),
        Case::get(qd, "SELECT * FROM cpu, mem; SHOW MEASUREMENTS")
            .param("epoch", "ms")
            .post_form(),
        Case::get(qd, "SHOW TAG VALUES WITH KEY = host").post_form(),
        Case::get(qd, "SELECT last(*) FROM /.*/").post_url(),
        Case::get(qd, "SELECT * FROM cpu LIMIT 2").pretty(),
        Case::get(qd, "SHOW MEASUREMENTS").pretty(),
        Case::get(qd, "SELECT * FROM cpu, mem LIMIT 1").pretty(),
    ];
    // The usual dashboard query with the "now" form, also on several measurements.
    c.push(
        Case::get(
            qd,
            "SELECT mean(*) FROM cpu, mem WHERE time >= now() - 1h GROUP BY time(10m) fill(null)",
        )
        .now(),
    );
    c
}

/// A smaller corpus: one of each kind (single, several, regex, SHOW without
/// FROM, cardinality, several statements, chunked, epoch, subquery).
pub fn small_corpus(ds: &DataSet) -> Vec<Case> {
    let b = ds.base_s;
    let qd = Some(DB);
    vec![
        Case::get(qd, "SELECT * FROM cpu"),
        Case::get(qd, "SELECT * FROM mem"),
        Case::get(None, "SELECT * FROM qd..disk"),
        Case::get(qd, "SELECT * FROM r2.cpu"),
        Case::get(qd, "SELECT * FROM cpu, mem"),
        Case::get(qd, "SELECT count(*) FROM /.*/"),
        Case::get(qd, "SHOW MEASUREMENTS"),
        Case::get(qd, "SHOW SERIES"),
        Case::get(qd, "SHOW TAG VALUES WITH KEY = host"),
        Case::get(qd, "SHOW FIELD KEYS"),
        Case::get(qd, "SHOW TAG KEYS"),
        Case::get(None, "SHOW DATABASES").unordered(),
        Case::get(qd, "SHOW RETENTION POLICIES").unordered(),
        Case::get(qd, "SHOW SERIES CARDINALITY"),
        Case::get(qd, "SHOW MEASUREMENT CARDINALITY"),
        Case::get(qd, "SELECT count(*) FROM cpu; SELECT count(*) FROM disk; SHOW MEASUREMENTS"),
        Case::get(qd, "SELECT * FROM net LIMIT 5").chunked(Some(2)),
        Case::get(qd, "SELECT * FROM cpu, mem").param("epoch", "ms"),
        Case::get(
            qd,
            format!("SELECT max(tx) FROM net WHERE time >= {b}s AND time < {}s GROUP BY time(1m) fill(previous)", b + 600),
        ),
        Case::get(qd, "SELECT max(m) FROM (SELECT mean(usage) AS m FROM cpu GROUP BY time(1m), host)"),
        Case::get(qd, "SELECT * FROM cpu WHERE host = 'a'").post_form(),
    ]
}

// ---------------------------------------------------------------------------
// External clients.

/// Fails the test when the Python `influxdb` client cannot be imported.
pub fn require_python_influxdb() {
    let (code, out, err) = run_tool(
        "python3",
        &["-c", "import influxdb"],
        Duration::from_secs(30),
    );
    assert_eq!(
        code,
        Some(0),
        "the Python influxdb client is missing (python3 -c 'import influxdb' failed: {out}{err}); \
         run scripts/test.sh, which installs it (pip install influxdb)"
    );
}

/// Put before every Python client script: the imports they share, and
/// `poll`, their one bounded wait for points written through the proxy.
const PY_PRELUDE: &str = r#"
import json, sys, time

def poll(fetch, done, timeout=15, every=0.2):
    """fetch() until done(its result), at most `timeout` s; the last result."""
    deadline = time.time() + timeout
    for _ in range(int(timeout / every) + 1):
        got = fetch()
        if done(got) or time.time() > deadline:
            break
        time.sleep(every)
    return got
"#;

/// Runs the Python client script `script` (after [`PY_PRELUDE`]) with
/// `args`: it must exit 0 and print one JSON object, which is returned.
pub fn run_python_json(script: &str, args: &[&str], timeout: Duration) -> Value {
    let dir = TempDir::new("py");
    let path = dir.path().join("session.py");
    std::fs::write(&path, format!("{PY_PRELUDE}{script}")).expect("write the Python script");
    let mut all = vec![path.to_str().expect("a UTF-8 temporary path")];
    all.extend_from_slice(args);
    let (code, out, err) = run_tool("python3", &all, timeout);
    assert_eq!(
        code,
        Some(0),
        "the Python session {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the Python session printed no JSON ({e}):\n{out}\n{err}"))
}

/// `influx -host 127.0.0.1 -port <port> ARGS` (Debian's `influx` shell):
/// (exit code, stdout + stderr).
pub fn influx(port: u16, args: &[&str]) -> (Option<i32>, String) {
    let port = port.to_string();
    let mut all = vec!["-host", "127.0.0.1", "-port", &port];
    all.extend_from_slice(args);
    let (code, out, err) = run_tool("/usr/bin/influx", &all, Duration::from_secs(20));
    (code, format!("{out}{err}"))
}

/// Runs `program` with `args` (stdin closed), killed after `timeout`:
/// (exit code, or `None` when it had to be killed; stdout; stderr).
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    let dir = TempDir::new("tool");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"));
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let code = wait_child(&mut child, timeout).and_then(|status| status.code());
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    (code, read(&out_path), read(&err_path))
}

/// RFC 3339 with nanoseconds, trailing zeros of the fraction dropped (Go's
/// `time.RFC3339Nano`, what InfluxDB prints for `precision rfc3339`).
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}
