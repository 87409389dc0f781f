//! Helpers for the transfer tests (`tests/transfer.rs`): a corpus of
//! measurements over several databases and retention policies (every field
//! type, escaped and unicode names), written through the proxy and straight
//! to a reference influxd; restarting a proxy on another config and an
//! influxd on an empty data directory; starting and waiting for a transfer;
//! and the checks that a circle holds exactly what the reference holds, each
//! measurement on its owner only.
//!
//! The corpus is cut in parts of one measurement each, so a part can be
//! written straight to the backend that owns it as well as through the
//! proxy. Every point has the float field `f`, so `count(f)` counts points.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::query::{self, Batch, Case, DataSet};
use super::*;

/// The databases of [`Corpus::mixed`].
pub const DBS: [&str; 3] = ["tr1", "tr2", "tr3"];
/// The non-default retention policy every database of the corpus has.
pub const RP_MONTH: &str = "month";
/// How [`RP_MONTH`] is created (through the proxy and on the reference).
pub const RP_MONTH_SPEC: &str = "DURATION 30d REPLICATION 1 SHARD DURATION 1d";

/// One measurement of the corpus: database, retention policy (`None`: the
/// default one) and stored (unescaped) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub db: &'static str,
    pub rp: Option<&'static str>,
    pub mm: String,
}

impl Key {
    /// `"rp"."mm"` or `"mm"`, for a `FROM` clause.
    pub fn qualified(&self) -> String {
        match self.rp {
            Some(rp) => format!("{}.{}", quote_ident(rp), quote_ident(&self.mm)),
            None => quote_ident(&self.mm),
        }
    }
}

/// The points of one measurement, as one `/write` body (precision s).
#[derive(Debug, Clone)]
pub struct Part {
    pub key: Key,
    pub points: usize,
    pub batch: Batch,
}

/// What the transfer tests write: parts of one measurement each.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// First timestamp, seconds.
    pub base_s: i64,
    pub parts: Vec<Part>,
}

/// String field values (stored form): quotes, backslashes, a real newline,
/// a backslash-n that is not one, a tab, unicode.
const STRINGS: [&str; 8] = [
    "plain",
    "say \"hi\"",
    "back\\slash",
    "two\nlines",
    "literal \\n here",
    "tab\there",
    "ends with a backslash\\",
    "unicode ✓ café 温度",
];

/// Line-protocol form of a measurement name.
pub fn escape_measurement(name: &str) -> String {
    name.replace(',', "\\,").replace(' ', "\\ ")
}

/// Line-protocol form of a tag key or value.
pub fn escape_tag(s: &str) -> String {
    s.replace(',', "\\,")
        .replace('=', "\\=")
        .replace(' ', "\\ ")
}

/// Line-protocol form of a string field value, quotes included.
pub fn quote_string_field(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The seconds timestamp 3 hours ago, rounded down to 10 minutes: inside
/// every retention policy of the corpus.
pub fn recent_base_s() -> i64 {
    (now_ns() / 1_000_000_000) / 600 * 600 - 3 * 3600
}

impl Corpus {
    /// 42 measurements of the default retention policy (14 per database:
    /// `load_0`..`load_9`, a name with a space and a comma, a unicode one,
    /// one with every integer and float extreme, one with escaped tags) and
    /// 2 per database in [`RP_MONTH`] (one sharing its name with the default
    /// policy's). 3 tag sets of 20 points each; every point has a float, an
    /// integer, a string and a boolean field.
    pub fn mixed() -> Corpus {
        let mut c = Corpus {
            base_s: recent_base_s(),
            parts: Vec::new(),
        };
        for (d, db) in DBS.into_iter().enumerate() {
            let mut names: Vec<String> = (0..10).map(|i| format!("load_{i}")).collect();
            names.extend(["my mm,x", "温度", "types", "esc_tags"].map(String::from));
            for name in &names {
                c.push_mixed(d, db, None, name);
            }
            for name in ["load_0", "only_month"] {
                c.push_mixed(d, db, Some(RP_MONTH), name);
            }
        }
        c
    }

    fn push_mixed(&mut self, d: usize, db: &'static str, rp: Option<&'static str>, mm: &str) {
        let seed = d as i64 * 1000 + mm.len() as i64 * 7 + i64::from(rp.is_some()) * 500;
        let mut body = String::new();
        let mut points = 0;
        for k in 0..3i64 {
            let tags = match mm {
                "esc_tags" => format!(
                    "host=h{k},{}={},{}={}",
                    escape_tag("k=ey"),
                    escape_tag(&format!("v=1 x,y{k}")),
                    escape_tag("城市"),
                    escape_tag(&format!("東京 {k}"))
                ),
                "types" => format!("host=h{k},region=r{}", k % 2),
                _ => format!("host=h{k}"),
            };
            for j in 0..20i64 {
                let n = seed + j * 3 + k;
                let mut fields = format!(
                    "f={},i={}i,s={},b={}",
                    (n as f64) * 0.37 - 5.0,
                    n * (1 - 2 * (j % 2)),
                    quote_string_field(STRINGS[((j + k) % STRINGS.len() as i64) as usize]),
                    (j + k) % 3 == 0
                );
                if mm == "types" {
                    fields += &format!(
                        ",big={}i,small={}i,e=1.5e300,tiny=-2.5e-300,t=t,ff=F",
                        i64::MAX - j,
                        i64::MIN + j
                    );
                }
                body += &format!(
                    "{},{tags} {fields} {}\n",
                    escape_measurement(mm),
                    self.base_s + j * 60 + k
                );
                points += 1;
            }
        }
        self.push(db, rp, mm, body, points);
    }

    /// `n_mm` measurements `<prefix><i>` in `db` (default retention policy)
    /// of `per_mm` points each, one per second over 4 tag sets, fields `f`
    /// and `i`.
    pub fn bulk(db: &'static str, prefix: &str, n_mm: usize, per_mm: usize) -> Corpus {
        let mut c = Corpus {
            base_s: recent_base_s(),
            parts: Vec::new(),
        };
        for m in 0..n_mm {
            let mm = format!("{prefix}{m}");
            let mut body = String::with_capacity(per_mm * 48);
            for j in 0..per_mm as i64 {
                body += &format!(
                    "{mm},host=h{} f={}.25,i={}i {}\n",
                    j % 4,
                    j % 1000,
                    j * 31 + m as i64,
                    c.base_s + j
                );
            }
            c.push(db, None, &mm, body, per_mm);
        }
        c
    }

    /// Adds a part: `body` (precision s) holds `points` points of `mm`.
    pub fn push(
        &mut self,
        db: &'static str,
        rp: Option<&'static str>,
        mm: &str,
        body: String,
        points: usize,
    ) {
        self.parts.push(Part {
            key: Key {
                db,
                rp,
                mm: mm.to_string(),
            },
            points,
            batch: Batch { db, rp, body },
        });
    }

    /// The parts as a [`DataSet`], for `query::load_proxy` and `load_direct`.
    pub fn data_set(&self) -> DataSet {
        DataSet {
            base_s: self.base_s,
            batches: self.parts.iter().map(|p| p.batch.clone()).collect(),
        }
    }

    /// Points per measurement.
    pub fn points(&self) -> BTreeMap<Key, usize> {
        let mut out = BTreeMap::new();
        for p in &self.parts {
            *out.entry(p.key.clone()).or_insert(0) += p.points;
        }
        out
    }

    /// The databases of the corpus.
    pub fn dbs(&self) -> BTreeSet<&'static str> {
        self.parts.iter().map(|p| p.key.db).collect()
    }

    /// The retention policies of the corpus besides the default one.
    pub fn extra_rps(&self) -> BTreeSet<&'static str> {
        self.parts.iter().filter_map(|p| p.key.rp).collect()
    }

    /// Measurement names of `db` (every retention policy).
    pub fn measurements(&self, db: &str) -> BTreeSet<String> {
        self.parts
            .iter()
            .filter(|p| p.key.db == db)
            .map(|p| p.key.mm.clone())
            .collect()
    }

    /// The databases with a measurement that backend `idx` of a circle of
    /// `n` owns.
    pub fn dbs_on(&self, idx: usize, n: usize) -> Vec<&'static str> {
        DBS.into_iter()
            .filter(|db| {
                self.measurements(db)
                    .iter()
                    .any(|mm| owner(db, mm, n) == idx)
            })
            .collect()
    }

    /// (db, measurement) pairs whose owner differs between a circle of
    /// `from` and one of `to` backends.
    pub fn moving(&self, from: usize, to: usize) -> BTreeSet<(&'static str, String)> {
        self.parts
            .iter()
            .filter(|p| owner(p.key.db, &p.key.mm, from) != owner(p.key.db, &p.key.mm, to))
            .map(|p| (p.key.db, p.key.mm.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Loading.

/// `POST /query` of a statement on `base_url` (proxy or influxd): 200 and
/// no error in the body.
pub fn exec_on(base_url: &str, q: &str) {
    let r = http_post(&format!("{base_url}/query"), &[("q", q)], &[], b"");
    assert!(
        r.status == 200 && !r.body.contains("\"error\""),
        "{base_url}: {q:?} answered {} {}",
        r.status,
        r.body
    );
}

/// The statements that create the corpus's databases and retention policies.
pub fn schema_statements(corpus: &Corpus) -> Vec<String> {
    let mut out = Vec::new();
    for db in corpus.dbs() {
        out.push(format!("CREATE DATABASE {}", quote_ident(db)));
        for rp in corpus.extra_rps() {
            let spec = if rp == RP_MONTH {
                RP_MONTH_SPEC
            } else {
                "DURATION 0s REPLICATION 1"
            };
            out.push(format!(
                "CREATE RETENTION POLICY {} ON {} {spec}",
                quote_ident(rp),
                quote_ident(db)
            ));
        }
    }
    out
}

/// Creates the schema through the proxy (which runs it on every backend)
/// and on the reference, then writes the corpus through both.
pub fn load_through_proxy(proxy: &Proxy, reference: &Influxd, corpus: &Corpus) {
    for q in schema_statements(corpus) {
        exec_on(&proxy.url(), &q);
        reference.exec(&q);
    }
    let ds = corpus.data_set();
    query::load_direct(reference, &ds);
    query::load_proxy(proxy, &ds);
}

/// Creates the schema on every influxd of `all` (backends and reference).
pub fn create_schema(all: &[&Influxd], corpus: &Corpus) {
    for q in schema_statements(corpus) {
        for d in all {
            d.exec(&q);
        }
    }
}

/// Writes every part straight to its owner among `backends` (a circle) and
/// to the reference; the schema must exist on both.
pub fn load_on_owners(backends: &[&Influxd], reference: &Influxd, corpus: &Corpus) {
    for p in &corpus.parts {
        let d = backends[owner(p.key.db, &p.key.mm, backends.len())];
        for target in [d, reference] {
            query::write_batch(target, &p.batch);
        }
    }
}

/// `DROP MEASUREMENT` of `mm` in `db`, straight on `d`.
pub fn drop_measurement(d: &Influxd, db: &str, mm: &str) {
    let q = format!("DROP MEASUREMENT {}", quote_ident(mm));
    let r = http_post(
        &format!("{}/query", d.url()),
        &[("db", db), ("q", &q)],
        &[],
        b"",
    );
    assert!(
        r.status == 200 && !r.body.contains("\"error\""),
        "{}: {q:?} on {db} answered {} {}",
        d.url(),
        r.status,
        r.body
    );
}

/// `count(f)` of a measurement on `d`, 0 when it (or its database) is missing.
pub fn count_points(d: &Influxd, key: &Key) -> u64 {
    let v = d.query(key.db, &format!("SELECT count(f) FROM {}", key.qualified()));
    v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until the owner of every measurement among `backends` (a circle)
/// holds all its points.
pub fn wait_on_owners(backends: &[&Influxd], corpus: &Corpus, timeout: Duration) {
    let start = Instant::now();
    for (key, n) in corpus.points() {
        let d = backends[owner(key.db, &key.mm, backends.len())];
        wait_for_eq(
            timeout.saturating_sub(start.elapsed()),
            &format!("{key:?} on its owner {}", d.url()),
            &(n as u64),
            || count_points(d, &key),
        );
    }
}

// ---------------------------------------------------------------------------
// Comparing with the reference.

/// Every point of a measurement on `d`, sorted; `Err` with influxd's error
/// (a missing database, for one).
pub fn stored_rows(d: &Influxd, key: &Key) -> Result<Vec<Row>, String> {
    let v = d.query(
        key.db,
        &format!("SELECT * FROM {} GROUP BY *", key.qualified()),
    );
    if let Some(err) = v["results"][0]["error"].as_str() {
        return Err(err.to_string());
    }
    let mut rows = rows_of(&v);
    rows.sort();
    Ok(rows)
}

/// What differs between `got` and `want` rows, in a few lines.
fn rows_diff(got: &[Row], want: &[Row]) -> Option<String> {
    if got == want {
        return None;
    }
    let g: BTreeSet<&Row> = got.iter().collect();
    let w: BTreeSet<&Row> = want.iter().collect();
    let missing: Vec<&&Row> = w.difference(&g).take(2).collect();
    let extra: Vec<&&Row> = g.difference(&w).take(2).collect();
    Some(format!(
        "{} rows where the reference has {}; missing e.g. {missing:?}; extra e.g. {extra:?}",
        got.len(),
        want.len()
    ))
}

/// Every difference between the circle `backends` and the reference: a
/// measurement on a backend that does not own it (or missing from its
/// owner's `SHOW MEASUREMENTS`), and rows on the owner unlike the
/// reference's.
pub fn circle_differences(
    backends: &[&Influxd],
    reference: &Influxd,
    corpus: &Corpus,
) -> Vec<String> {
    let n = backends.len();
    let mut diffs = Vec::new();
    for db in corpus.dbs() {
        let all = corpus.measurements(db);
        for (i, d) in backends.iter().enumerate() {
            let want: BTreeSet<String> = all
                .iter()
                .filter(|mm| owner(db, mm, n) == i)
                .cloned()
                .collect();
            let got = d.measurements(db);
            if got != want {
                diffs.push(format!(
                    "backend {i} ({}) db {db}: measurements not owned {:?}, owned but missing {:?}",
                    d.url(),
                    got.difference(&want).collect::<Vec<_>>(),
                    want.difference(&got).collect::<Vec<_>>()
                ));
            }
        }
    }
    for key in corpus.points().keys() {
        let d = backends[owner(key.db, &key.mm, n)];
        let want = stored_rows(reference, key).unwrap_or_else(|e| panic!("reference {key:?}: {e}"));
        match stored_rows(d, key) {
            Err(e) => diffs.push(format!("{key:?} on its owner {}: {e}", d.url())),
            Ok(got) => {
                if let Some(diff) = rows_diff(&got, &want) {
                    diffs.push(format!("{key:?} on its owner {}: {diff}", d.url()));
                }
            }
        }
    }
    diffs
}

/// Panics listing every difference [`circle_differences`] finds.
pub fn assert_circle_matches(
    what: &str,
    backends: &[&Influxd],
    reference: &Influxd,
    corpus: &Corpus,
) {
    let diffs = circle_differences(backends, reference, corpus);
    assert!(
        diffs.is_empty(),
        "{what}: {} differences from the reference:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The differential queries of a corpus: per database the `SHOW`s and
/// counts over every measurement, per measurement its points, counts and
/// selectors of every field type.
pub fn corpus_cases(corpus: &Corpus) -> Vec<Case> {
    let mut cases = vec![Case::get(None, "SHOW DATABASES").unordered()];
    for db in corpus.dbs() {
        let d = Some(db);
        cases.extend([
            Case::get(d, "SHOW MEASUREMENTS"),
            Case::get(d, "SHOW SERIES"),
            Case::get(d, "SHOW TAG KEYS"),
            Case::get(d, "SHOW FIELD KEYS"),
            Case::get(d, r#"SHOW TAG VALUES WITH KEY = "host""#),
            Case::get(d, "SHOW RETENTION POLICIES").unordered(),
            Case::get(d, "SELECT count(f) FROM /.*/"),
            Case::get(d, "SELECT count(*) FROM /^load_[0-4]$/ GROUP BY *"),
        ]);
        for rp in corpus.extra_rps() {
            cases.push(Case::get(
                d,
                format!("SELECT count(*) FROM {}./.*/", quote_ident(rp)),
            ));
        }
    }
    for key in corpus.points().keys() {
        let d = Some(key.db);
        let from = key.qualified();
        cases.extend([
            Case::get(d, format!("SELECT * FROM {from} GROUP BY *")).param("epoch", "ns"),
            Case::get(d, format!("SELECT count(*) FROM {from} GROUP BY *")),
            Case::get(
                d,
                format!("SELECT max(i), min(f), last(s), first(b) FROM {from}"),
            ),
        ]);
    }
    cases
}

/// Runs [`corpus_cases`] through the proxy and on the reference; panics
/// listing every answer that differs.
pub fn assert_proxy_answers_like_reference(
    what: &str,
    proxy: &Proxy,
    reference: &Influxd,
    corpus: &Corpus,
) {
    query::assert_corpus(what, &proxy.url(), &reference.url(), &corpus_cases(corpus));
}

/// Asserts that `d` has the reference's retention policies (durations,
/// shard durations, default flag) in every database of `dbs`.
pub fn assert_same_retention_policies<'a>(
    what: &str,
    d: &Influxd,
    reference: &Influxd,
    dbs: impl IntoIterator<Item = &'a str>,
) {
    for db in dbs {
        assert_eq!(
            retention_policies(d, db),
            retention_policies(reference, db),
            "{what}: retention policies of {db} on {}",
            d.url()
        );
    }
}

/// `SHOW RETENTION POLICIES ON db` of `d`, rows as a set (name, duration,
/// shard group duration, replication, default).
pub fn retention_policies(d: &Influxd, db: &str) -> BTreeSet<String> {
    let v = d.query(
        db,
        &format!("SHOW RETENTION POLICIES ON {}", quote_ident(db)),
    );
    v["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| row.to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Processes.

impl Influxd {
    /// Stops it, throws its data away (meta, data, WAL: databases too) and
    /// starts it again on the same ports, empty, as a replaced disk would.
    pub fn restart_empty(&mut self) {
        self.stop();
        for sub in ["meta", "data", "wal"] {
            let path = self.dir.path().join(sub);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
            }
        }
        self.spawn();
        if let Err(e) = self.wait_ready(Duration::from_secs(20)) {
            panic!("influxd restart on an empty data dir failed: {e}");
        }
    }
}

/// A proxy config of one circle of `backends`.
pub fn one_circle(backends: &[&Influxd]) -> Value {
    config_for_urls(&[backends.iter().map(|d| d.url()).collect()])
}

/// A proxy config of one circle per entry of `circles`.
pub fn circles_config(circles: &[&[&Influxd]]) -> Value {
    let urls: Vec<Vec<String>> = circles
        .iter()
        .map(|c| c.iter().map(|d| d.url()).collect())
        .collect();
    config_for_urls(&urls)
}

/// The proxy's config file, parsed.
fn proxy_config(proxy: &Proxy) -> Value {
    let text = std::fs::read(proxy.config_path()).expect("read proxy config");
    serde_json::from_slice(&text).expect("proxy config is JSON")
}

/// `tlog_dir` from the proxy's config.
pub fn tlog_dir(proxy: &Proxy) -> PathBuf {
    PathBuf::from(
        proxy_config(proxy)["tlog_dir"]
            .as_str()
            .expect("tlog_dir in proxy config"),
    )
}

/// The text of `<tlog_dir>/<operation>.log` ("" when missing).
pub fn op_log(proxy: &Proxy, operation: &str) -> String {
    std::fs::read_to_string(tlog_dir(proxy).join(format!("{operation}.log"))).unwrap_or_default()
}

/// Stops the proxy (SIGTERM), replaces its config by `config` (keeping its
/// port, `data_dir` and `tlog_dir`) and starts it again: what an operator
/// does after editing `proxy.json`.
pub fn restart_with_config(proxy: &mut Proxy, mut config: Value) {
    let old = proxy_config(proxy);
    for key in ["listen_addr", "data_dir", "tlog_dir"] {
        config[key] = old[key].clone();
    }
    proxy.terminate(Duration::from_secs(15));
    std::fs::write(
        proxy.config_path(),
        serde_json::to_vec_pretty(&config).expect("config to JSON"),
    )
    .expect("write proxy config");
    proxy.restart();
}

/// Waits until `/health` shows backend `name` active (a restarted influxd
/// seen by the proxy's pinger).
pub fn wait_active(proxy: &Proxy, name: &str) {
    wait_until(
        Duration::from_secs(15),
        &format!("{name} active in /health"),
        || proxy.backend_active(name) == Some(true),
    );
}

// ---------------------------------------------------------------------------
// Transfers.

/// `POST <path>` on the proxy with `params` and `body`: must answer 202
/// `accepted`.
pub fn start_transfer(proxy: &Proxy, path: &str, params: &[(&str, &str)], body: &[u8]) {
    let r = http_post(&format!("{}{path}", proxy.url()), params, &[], body);
    assert_eq!(
        (r.status, r.body.as_str()),
        (202, "accepted\n"),
        "POST {path} {params:?}"
    );
}

/// `GET /transfer/state`, parsed (`Null` when it does not answer 200 JSON).
pub fn transfer_state(proxy: &Proxy) -> Value {
    let r = proxy.get_resp("/transfer/state");
    if r.status != 200 {
        return json!({ "status": r.status, "body": r.body });
    }
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// `GET /transfer/stats?circle_id=..&type=..`, parsed; panics unless 200 JSON.
pub fn transfer_stats(proxy: &Proxy, circle: usize, kind: &str) -> Value {
    let r = proxy.get_resp(&format!("/transfer/stats?circle_id={circle}&type={kind}"));
    assert_eq!(
        r.status, 200,
        "GET /transfer/stats {circle} {kind}: {}",
        r.body
    );
    r.json()
}

/// Whether no circle is transferring and the proxy is not resyncing.
fn idle(state: &Value) -> bool {
    state["resyncing"] == false
        && state["circles"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["transferring"] == false))
}

/// Waits until the last operation is of type `op` and in state `want`
/// (`done`, `failed`), no circle transferring and not resyncing; returns
/// `/transfer/state`. Another end state of the same type is taken for the
/// previous run's for 5 s (a new POST replaces it at once), then fails.
pub fn wait_transfer(proxy: &Proxy, op: &str, want: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    let mut other_since: Option<Instant> = None;
    loop {
        let state = transfer_state(proxy);
        let operation = &state["operation"];
        let st = operation["state"].as_str().unwrap_or_default();
        let mine = operation["type"] == op;
        if mine && st == want && idle(&state) {
            return state;
        }
        if mine && st != want && matches!(st, "done" | "failed" | "stopped") {
            let since = *other_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                panic!(
                    "{op} ended {st:?}, not {want:?}: state {state}\nproxy log:\n{}",
                    file_tail(proxy.log_path(), 30)
                );
            }
        } else {
            other_since = None;
        }
        if start.elapsed() > timeout {
            panic!(
                "{op} not {want:?} after {timeout:?}: state {state}\nproxy log:\n{}",
                file_tail(proxy.log_path(), 30)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The number keys of a backend's `/transfer/stats` entry.
pub const STATS_NUMBERS: [&str; 11] = [
    "database_total",
    "database_done",
    "measurement_total",
    "measurement_done",
    "transfer_count",
    "inplace_count",
    "points_copied",
    "bytes_copied",
    "points_per_second",
    "measurements_verified",
    "measurements_unverified",
];

/// Asserts the shape of `/transfer/stats`: an entry per URL of `urls`, each
/// with every number key, a string `last_error` and a known `state`.
pub fn assert_stats_shape(stats: &Value, urls: &[String]) {
    for url in urls {
        let s = &stats[url.as_str()];
        for key in STATS_NUMBERS {
            assert!(
                s[key].is_number(),
                "stats of {url}: {key} is not a number: {stats}"
            );
        }
        assert!(
            s["last_error"].is_string(),
            "stats of {url}: last_error: {stats}"
        );
        assert!(
            matches!(
                s["state"].as_str(),
                Some("running" | "done" | "failed" | "stopped")
            ),
            "stats of {url}: state: {stats}"
        );
    }
}

/// The sum of number `key` over every backend of `stats`.
pub fn stats_sum(stats: &Value, key: &str) -> u64 {
    stats
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, s)| s[key].as_f64().unwrap_or(0.0) as u64)
        .sum()
}

/// The non-empty `last_error`s of `stats`.
pub fn stats_errors(stats: &Value) -> Vec<String> {
    stats
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(url, s)| {
            let e = s["last_error"].as_str().unwrap_or_default();
            (!e.is_empty()).then(|| format!("{url}: {e}"))
        })
        .collect()
}

/// A rebalance of circle 0 after a backend was added: POST, wait until
/// done, and the stats say every measurement was done without an error.
/// Returns the stats.
pub fn rebalance_add(proxy: &Proxy, extra: &[(&str, &str)], timeout: Duration) -> Value {
    let mut params = vec![("circle_id", "0"), ("operation", "add")];
    params.extend_from_slice(extra);
    start_transfer(proxy, "/rebalance", &params, b"");
    wait_transfer(proxy, "rebalance", "done", timeout);
    transfer_stats(proxy, 0, "rebalance")
}

/// `POST /cleanup?circle_id=..` (plus `extra`), waits until done; returns
/// the cleanup stats.
pub fn cleanup(proxy: &Proxy, circle: usize, extra: &[(&str, &str)], timeout: Duration) -> Value {
    let id = circle.to_string();
    let mut params = vec![("circle_id", id.as_str())];
    params.extend_from_slice(extra);
    start_transfer(proxy, "/cleanup", &params, b"");
    wait_transfer(proxy, "cleanup", "done", timeout);
    transfer_stats(proxy, circle, "cleanup")
}

/// Whether `stats` show a copy under way: points copied, not every
/// measurement done.
pub fn partly_done(stats: &Value) -> bool {
    stats_sum(stats, "points_copied") > 0
        && stats_sum(stats, "measurement_done") < stats_sum(stats, "measurement_total")
}

// ---------------------------------------------------------------------------
// Live writes during a transfer.

/// A point a [`LiveWriter`] had acknowledged: database, measurement, time (ns).
pub type Acked = (&'static str, String, i64);

/// What a [`LiveWriter`] did.
#[derive(Debug, Default)]
pub struct LiveReport {
    pub acked: Vec<Acked>,
    pub batches: usize,
    /// Batches the proxy did not answer 204 (or not at all).
    pub refused: Vec<String>,
}

/// A client writing through the proxy on its own thread: one point per
/// measurement per batch (field `f`, tag `w=live`, distinct times, precision
/// ns), each acknowledged batch also written to the reference.
pub struct LiveWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<LiveReport>>,
}

impl LiveWriter {
    /// Starts writing to `mms` of `db`; at most `max_batches` batches and
    /// 3 minutes.
    pub fn start(
        proxy: &Proxy,
        reference: &Influxd,
        db: &'static str,
        mms: Vec<String>,
        max_batches: usize,
    ) -> LiveWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let (proxy_url, reference_url) = (proxy.url(), reference.url());
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let agent = agent(Duration::from_secs(10));
            let mut report = LiveReport::default();
            let t0 = now_ns() - 60_000_000_000;
            let start = Instant::now();
            while !stop2.load(Ordering::Relaxed)
                && report.batches < max_batches
                && start.elapsed() < Duration::from_secs(180)
            {
                let ts = t0 + report.batches as i64 * 1000;
                let body: String = mms
                    .iter()
                    .enumerate()
                    .map(|(i, mm)| {
                        format!(
                            "{},w=live f={}.5,i={i}i {ts}\n",
                            escape_measurement(mm),
                            report.batches
                        )
                    })
                    .collect();
                report.batches += 1;
                let params = [("db", db), ("precision", "ns")];
                match try_http_post(
                    &agent,
                    &format!("{proxy_url}/write"),
                    &params,
                    body.as_bytes(),
                ) {
                    Ok(r) if r.status == 204 => {
                        report
                            .acked
                            .extend(mms.iter().map(|mm| (db, mm.clone(), ts)));
                        let r = try_http_post(
                            &agent,
                            &format!("{reference_url}/write"),
                            &params,
                            body.as_bytes(),
                        );
                        if !matches!(&r, Ok(r) if r.status == 204) {
                            report.refused.push(format!("the reference: {r:?}"));
                        }
                    }
                    other => report.refused.push(format!("batch {ts}: {other:?}")),
                }
                // The client's pace: a batch every 10 ms.
                thread::sleep(Duration::from_millis(10));
            }
            report
        });
        LiveWriter {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writer and returns what it did.
    pub fn finish(mut self) -> LiveReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("live writer thread panicked"))
            .unwrap_or_default()
    }
}

impl Drop for LiveWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until every acknowledged point is on the owner of its measurement
/// among `backends`; panics with the count missing per measurement.
pub fn wait_acked_on_owners(backends: &[&Influxd], acked: &[Acked], timeout: Duration) {
    let mut by_mm: BTreeMap<(&'static str, String), BTreeSet<i64>> = BTreeMap::new();
    for (db, mm, ts) in acked {
        by_mm.entry((*db, mm.clone())).or_default().insert(*ts);
    }
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for ((db, mm), times) in &by_mm {
            let d = backends[owner(db, mm, backends.len())];
            let v = d.query(
                db,
                &format!("SELECT f FROM {} WHERE w = 'live'", quote_ident(mm)),
            );
            let stored: BTreeSet<i64> = rows_of(&v).iter().map(|r| r.time).collect();
            let lost = times.difference(&stored).count();
            if lost > 0 {
                missing.push(format!(
                    "{db}/{mm} on {}: {lost} of {}",
                    d.url(),
                    times.len()
                ));
            }
        }
        if missing.is_empty() {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "acknowledged points missing from their owners after {timeout:?}:\n{}",
                missing.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// A backend whose writes can be held back.

/// An HTTP front of a real influxd that passes every request through,
/// except `/write` while closed (503): a backend that answers pings and
/// queries but does not take writes yet, so the proxy's spool of it keeps
/// its points for as long as the test wants.
pub struct WriteGate {
    pub port: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WriteGate {
    /// Starts closed in front of `target`.
    pub fn start(target: &Influxd) -> WriteGate {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind the write gate");
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let (open, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (is_open, stopping, base) = (Arc::clone(&open), Arc::clone(&stop), target.url());
        let thread = thread::spawn(move || {
            let agent = agent(Duration::from_secs(30));
            while !stopping.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                if req.url().starts_with("/write") && !is_open.load(Ordering::Relaxed) {
                    let _ = req.respond(
                        tiny_http::Response::from_string("{\"error\":\"gate closed\"}")
                            .with_status_code(503),
                    );
                    continue;
                }
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
                let headers: Vec<(String, String)> = req
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .filter(|(name, _)| {
                        ["authorization", "content-encoding", "content-type"]
                            .contains(&name.to_ascii_lowercase().as_str())
                    })
                    .collect();
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let method = if req.method() == &tiny_http::Method::Post {
                    "POST"
                } else {
                    "GET"
                };
                let url = format!("{base}{}", req.url());
                let answer = match http_send(&agent, method, &url, &[], &pairs, &body) {
                    Ok(r) => tiny_http::Response::from_data(r.body.into_bytes())
                        .with_status_code(r.status),
                    Err(e) => tiny_http::Response::from_string(e).with_status_code(502),
                };
                let _ = req.respond(answer);
            }
        });
        WriteGate {
            port,
            open,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lets writes through once `delay` has passed (from another thread).
    pub fn open_after(&self, delay: Duration) {
        let open = Arc::clone(&self.open);
        thread::spawn(move || {
            thread::sleep(delay);
            open.store(true, Ordering::Relaxed);
        });
    }
}

impl Drop for WriteGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
