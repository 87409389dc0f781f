//! `influx-stress`: the benchmark's load generator, a synchronous stand-in for
//! influxdata/influx-stress's `insert` command (same flags, series and output
//! where it matters) that also records per-request latency.
//!
//! Points are written by `pps / batch-size` writer threads, each with its own
//! keep-alive HTTP agent and its own disjoint slice of the series. Each writer
//! gives every point a timestamp one unit (of `--precision`) above the last
//! one it sent, starting from the wall clock, so no two points ever share a
//! series and a timestamp: a backend that stores everything counts exactly the
//! points acknowledged here.
//!
//! `influx-stress query` (not in influxdata's tool) measures reads instead:
//! `--concurrency` threads, each with its own keep-alive agent, send the same
//! `GET /query` back to back until `--requests` have been sent in all (or
//! `--runtime` is over) and report queries per second and latency
//! percentiles. A non-2xx answer or a body containing `"error"` is an error.

use std::io::Write as _;
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
Usage: influx-stress [insert] [SERIES KEY] [FIELD STR] [flags]
       influx-stress query [flags]     (read benchmark: influx-stress query -h)

Writes generated points to InfluxDB (or anything speaking its /write API).
SERIES KEY defaults to 'ctr,some=tag', FIELD STR to 'n=0i'.

Flags:
      --host URL            address of InfluxDB (default http://localhost:8086)
      --db NAME             database written to (default stress)
      --rp NAME             retention policy written to (default none)
  -p, --precision P         n|ns|u|us|ms|s|m|h (default n)
  -c, --consistency C       sent as consistency=C when given
  -s, --series N            number of series (default 100000)
  -n, --points N            points to write (default: until --runtime ends)
  -b, --batch-size N        points per request (default 10000)
      --pps N               points per second; writers = pps / batch-size (default 200000)
  -f, --fast                no rate limiting
  -r, --runtime DURATION    Go duration, e.g. 10s, 1m30s (default unlimited)
      --gzip LEVEL          gzip bodies at LEVEL 1-9, -1 = default, 0 = off (default 0)
      --user NAME           basic-auth user
      --pass PASSWORD       basic-auth password
      --create QUERY        create statement sent first (default CREATE DATABASE <db>)
  -k, --kapacitor           send no create statement
      --strict              exit 1 on the first error or non-2xx response
      --measurements N      spread series over N measurements <name>-<k> (default 1)
      --timeout DURATION    per-request timeout (default 60s)
  -q, --quiet               print only the write throughput
      --json                print only a one-line JSON summary
  -h, --help                this text
";

/// Parsed command line.
struct Opts {
    host: String,
    db: String,
    rp: String,
    precision: String,
    consistency: String,
    series: u64,
    points: u64,
    batch: u64,
    pps: u64,
    fast: bool,
    runtime: Option<Duration>,
    gzip: i64,
    user: String,
    pass: String,
    create: String,
    kapacitor: bool,
    strict: bool,
    measurements: u64,
    timeout: Duration,
    quiet: bool,
    json: bool,
    series_key: String,
    fields: String,
}

fn fail(msg: &str) -> ! {
    eprintln!("influx-stress: {msg}");
    exit(1)
}

fn usage_error(msg: &str) -> ! {
    eprintln!("influx-stress: {msg}\n\n{USAGE}");
    exit(2)
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    parse_num_or(flag, v, usage_error)
}

fn parse_bool(flag: &str, v: &str) -> bool {
    parse_bool_or(flag, v, usage_error)
}

/// A flag's number, or `usage_error` with the value at fault.
fn parse_num_or<T: std::str::FromStr>(flag: &str, v: &str, usage_error: fn(&str) -> !) -> T {
    v.parse()
        .unwrap_or_else(|_| usage_error(&format!("invalid value {v:?} for {flag}")))
}

/// A flag's boolean as Go's strconv.ParseBool reads it.
fn parse_bool_or(flag: &str, v: &str, usage_error: fn(&str) -> !) -> bool {
    match v {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
        "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
        _ => usage_error(&format!("invalid value {v:?} for {flag}")),
    }
}

/// Prints a request error, at most `MAX_PRINTED_ERRORS` of them; with
/// `--strict` the first one ends the run.
fn report_error(strict: bool, printed: &AtomicU64, msg: &str) {
    if strict {
        eprintln!("influx-stress: {msg} (--strict: giving up)");
        exit(1);
    }
    let n = printed.fetch_add(1, Ordering::Relaxed);
    if n < MAX_PRINTED_ERRORS {
        eprintln!("influx-stress: {msg}");
    } else if n == MAX_PRINTED_ERRORS {
        eprintln!("influx-stress: further errors are counted but not printed");
    }
}

/// Parses a Go `time.Duration` string such as `10s`, `1m30s`, `1.5h`, `250ms`.
fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let (mut rest, mut total) = (s, 0f64);
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += num * nanos;
    }
    // Anything beyond ~292 years is "forever", as Go's MaxInt64 default.
    Some(Duration::from_nanos(total.min(i64::MAX as f64) as u64))
}

/// Flags that take a value (short and long names, without dashes).
const VALUE_FLAGS: &[&str] = &[
    "host",
    "db",
    "rp",
    "p",
    "precision",
    "c",
    "consistency",
    "s",
    "series",
    "n",
    "points",
    "b",
    "batch-size",
    "pps",
    "gzip",
    "user",
    "pass",
    "create",
    "measurements",
    "r",
    "runtime",
    "timeout",
];

fn parse_args() -> Opts {
    let mut o = Opts {
        host: "http://localhost:8086".into(),
        db: "stress".into(),
        rp: String::new(),
        precision: "n".into(),
        consistency: String::new(),
        series: 100_000,
        points: i64::MAX as u64,
        batch: 10_000,
        pps: 200_000,
        fast: false,
        runtime: None,
        gzip: 0,
        user: String::new(),
        pass: String::new(),
        create: String::new(),
        kapacitor: false,
        strict: false,
        measurements: 1,
        timeout: Duration::from_secs(60),
        quiet: false,
        json: false,
        series_key: "ctr,some=tag".into(),
        fields: "n=0i".into(),
    };
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') || arg == "-" {
            positional.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let name = flag.trim_start_matches('-');
        let bool_flag = |o: &mut Opts, set: fn(&mut Opts, bool)| {
            set(o, inline.as_deref().is_none_or(|v| parse_bool(&flag, v)));
        };
        match name {
            "f" | "fast" => bool_flag(&mut o, |o, v| o.fast = v),
            "strict" => bool_flag(&mut o, |o, v| o.strict = v),
            "q" | "quiet" => bool_flag(&mut o, |o, v| o.quiet = v),
            "json" => bool_flag(&mut o, |o, v| o.json = v),
            "k" | "kapacitor" => bool_flag(&mut o, |o, v| o.kapacitor = v),
            "h" | "help" => {
                print!("{USAGE}");
                exit(0)
            }
            _ if !VALUE_FLAGS.contains(&name) => usage_error(&format!("unknown flag {flag}")),
            _ => {
                let value = match inline.clone().or_else(|| args.next()) {
                    Some(v) => v,
                    None => usage_error(&format!("flag {flag} needs a value")),
                };
                match name {
                    "host" => o.host = value.trim_end_matches('/').to_string(),
                    "db" => o.db = value,
                    "rp" => o.rp = value,
                    "p" | "precision" => o.precision = value,
                    "c" | "consistency" => o.consistency = value,
                    "s" | "series" => o.series = parse_num(&flag, &value),
                    "n" | "points" => o.points = parse_num(&flag, &value),
                    "b" | "batch-size" => o.batch = parse_num(&flag, &value),
                    "pps" => o.pps = parse_num(&flag, &value),
                    "gzip" => o.gzip = parse_num(&flag, &value),
                    "user" => o.user = value,
                    "pass" => o.pass = value,
                    "create" => o.create = value,
                    "measurements" => o.measurements = parse_num(&flag, &value),
                    "r" | "runtime" | "timeout" => {
                        let d = parse_duration(&value).unwrap_or_else(|| {
                            usage_error(&format!("invalid duration {value:?} for {flag}"))
                        });
                        if name == "timeout" {
                            o.timeout = d;
                        } else {
                            o.runtime = Some(d);
                        }
                    }
                    _ => usage_error(&format!("unknown flag {flag}")),
                }
            }
        }
    }
    if positional.first().map(String::as_str) == Some("insert") {
        positional.remove(0);
    }
    if positional.first().map(String::as_str) == Some("query") {
        usage_error("the query subcommand must come first: influx-stress query [flags]");
    }
    if positional.len() > 2 {
        usage_error(&format!("too many arguments: {positional:?}"));
    }
    let mut positional = positional.into_iter();
    if let Some(key) = positional.next() {
        o.series_key = key;
    }
    if let Some(fields) = positional.next() {
        o.fields = fields;
    }
    if o.batch == 0 || o.pps == 0 || o.series == 0 || o.measurements == 0 {
        usage_error("--batch-size, --pps, --series and --measurements must be positive");
    }
    if !(-1..=9).contains(&o.gzip) {
        usage_error("--gzip must be between -1 and 9");
    }
    o
}

/// Appends the decimal form of `v`.
fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Series keys, influx-stress style: the series count is factored into primes
/// that are dealt round-robin to the tags, and series `i` gets, on each tag,
/// the value `<value>-<i mod that tag's cardinality>`. With one tag this is
/// simply `<value>-<i>`. With `--measurements N` the measurement gets `-<i mod N>`.
/// Returns all keys concatenated, plus the start offsets (one extra at the end).
fn build_series(key: &str, n: u64, measurements: u64) -> Result<(Vec<u8>, Vec<usize>), String> {
    let mut parts = key.split(',');
    let measurement = parts.next().unwrap_or_default();
    let tags: Vec<&str> = parts.collect();
    if measurement.is_empty() || tags.is_empty() || tags.iter().any(|t| !t.contains('=')) {
        return Err(format!(
            "series key must look like 'measurement,tag=value[,tag=value...]', got {key:?}"
        ));
    }
    let mut factors = Vec::new();
    let (mut rest, mut p) = (n, 2u64);
    while rest > 1 {
        if p * p > rest {
            factors.push(rest);
            break;
        }
        while rest % p == 0 {
            factors.push(p);
            rest /= p;
        }
        p += 1;
    }
    let mut card = vec![1u64; tags.len()];
    for (i, f) in factors.iter().enumerate() {
        card[(i + 1) % tags.len()] *= f;
    }
    let mut buf = Vec::with_capacity(n as usize * (key.len() + 8));
    let mut offsets = Vec::with_capacity(n as usize + 1);
    for i in 0..n {
        offsets.push(buf.len());
        buf.extend_from_slice(measurement.as_bytes());
        if measurements > 1 {
            buf.push(b'-');
            push_u64(&mut buf, i % measurements);
        }
        for (tag, c) in tags.iter().zip(&card) {
            buf.push(b',');
            buf.extend_from_slice(tag.as_bytes());
            buf.push(b'-');
            push_u64(&mut buf, i % c);
        }
    }
    offsets.push(buf.len());
    Ok((buf, offsets))
}

/// One field of the field string. Numbers count up by one each time their
/// series is written again, as influx-stress does; anything else is literal.
enum FieldValue {
    Int(i64),
    Float(f64),
    Literal(String),
}

struct Field {
    /// `key=` with a leading comma for all but the first field.
    prefix: Vec<u8>,
    value: FieldValue,
}

fn parse_fields(s: &str) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "field string must look like 'key=value[,key=value...]', got {s:?}"
            ));
        };
        if k.is_empty() || v.is_empty() {
            return Err(format!("empty field key or value in {s:?}"));
        }
        let value = match v.strip_suffix('i').map(str::parse::<i64>) {
            Some(Ok(n)) => FieldValue::Int(n),
            _ => match v.parse::<f64>() {
                Ok(f) if f.is_finite() => FieldValue::Float(f),
                _ => FieldValue::Literal(v.to_string()),
            },
        };
        let sep = if i == 0 { "" } else { "," };
        out.push(Field {
            prefix: format!("{sep}{k}=").into_bytes(),
            value,
        });
    }
    Ok(out)
}

fn push_fields(buf: &mut Vec<u8>, fields: &[Field], round: u64) {
    for f in fields {
        buf.extend_from_slice(&f.prefix);
        match &f.value {
            FieldValue::Int(n) => {
                push_i64(buf, n.wrapping_add(round as i64));
                buf.push(b'i');
            }
            FieldValue::Float(x) => {
                let _ = write!(buf, "{}", x + round as f64);
            }
            FieldValue::Literal(s) => buf.extend_from_slice(s.as_bytes()),
        }
    }
}

/// Nanoseconds per unit of a write precision, as InfluxDB 1.x reads it.
fn precision_nanos(p: &str) -> Option<u64> {
    Some(match p {
        "" | "n" | "ns" => 1,
        "u" | "us" | "µ" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Everything the writers share, read-only.
struct Shared {
    url: String,
    auth: Option<String>,
    series: Vec<u8>,
    offsets: Vec<usize>,
    fields: Vec<Field>,
    unit_nanos: u64,
    batch: u64,
    gzip: i64,
    fast: bool,
    interval: Duration,
    start: Instant,
    deadline: Option<Instant>,
    strict: bool,
    timeout: Duration,
    /// Error messages printed so far, to cap the noise.
    printed: AtomicU64,
}

#[derive(Default)]
struct Tally {
    acked: u64,
    failed_points: u64,
    requests: u64,
    non_2xx: u64,
    errors: u64,
    latencies: Vec<Duration>,
}

const MAX_PRINTED_ERRORS: u64 = 20;

impl Shared {
    fn report(&self, msg: &str) {
        report_error(self.strict, &self.printed, msg);
    }

    fn now_units(&self) -> u64 {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ns / self.unit_nanos
    }
}

/// One writer: sends `quota` points over series `lo..hi`, starting at `start + offset`.
fn writer(sh: Arc<Shared>, quota: u64, lo: usize, hi: usize, offset: Duration) -> Tally {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(sh.timeout))
        .proxy(None)
        .build()
        .into();
    let mut t = Tally::default();
    let len = (hi - lo) as u64;
    let mut body: Vec<u8> = Vec::with_capacity(sh.batch as usize * 48);
    let mut zipped: Vec<u8> = Vec::new();
    let mut next_ts = 0u64;
    let mut next_send = sh.start + offset;
    let mut sent = 0u64;
    while sent < quota {
        if !sh.fast {
            if sh.deadline.is_some_and(|d| next_send >= d) {
                break;
            }
            let now = Instant::now();
            if next_send > now {
                thread::sleep(next_send - now);
                next_send += sh.interval;
            } else {
                // Behind schedule: like Go's time.Tick, drop the missed ticks.
                next_send = now + sh.interval;
            }
        }
        if sh.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = sh.batch.min(quota - sent);
        body.clear();
        let base = sh.now_units().max(next_ts);
        for j in 0..n {
            let k = sent + j;
            let s = lo + (k % len) as usize;
            body.extend_from_slice(&sh.series[sh.offsets[s]..sh.offsets[s + 1]]);
            body.push(b' ');
            push_fields(&mut body, &sh.fields, k / len);
            body.push(b' ');
            push_u64(&mut body, base + j);
            body.push(b'\n');
        }
        next_ts = base + n;
        sent += n;
        let payload: &[u8] = if sh.gzip != 0 {
            let level = if sh.gzip < 0 { 6 } else { sh.gzip as u32 };
            zipped.clear();
            let mut enc = flate2::write::GzEncoder::new(
                std::mem::take(&mut zipped),
                flate2::Compression::new(level),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&body);
            zipped = enc.finish().unwrap_or_default();
            &zipped
        } else {
            &body
        };
        let mut req = agent
            .post(&sh.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if sh.gzip != 0 {
            req = req.header("Content-Encoding", "gzip");
        }
        if let Some(a) = &sh.auth {
            req = req.header("Authorization", a);
        }
        let began = Instant::now();
        let result = req.send(payload);
        t.requests += 1;
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_vec().unwrap_or_default();
                t.latencies.push(began.elapsed());
                if (200..300).contains(&status) {
                    t.acked += n;
                } else {
                    t.non_2xx += 1;
                    t.failed_points += n;
                    let text = String::from_utf8_lossy(&text);
                    let text: String = text.trim().chars().take(300).collect();
                    sh.report(&format!("unexpected write status {status}, body: {text}"));
                }
            }
            Err(e) => {
                t.latencies.push(began.elapsed());
                t.errors += 1;
                t.failed_points += n;
                sh.report(&format!("error sending write to {}: {e}", sh.url));
            }
        }
    }
    t
}

/// Sends the create-database statement as a form POST to `/query`.
fn create_db(o: &Opts, auth: Option<&str>) -> Result<(), String> {
    let q = if o.create.is_empty() {
        let plain = o.db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !o.db.starts_with(|c: char| c.is_ascii_digit());
        if plain {
            format!("CREATE DATABASE {}", o.db)
        } else {
            format!("CREATE DATABASE \"{}\"", o.db.replace('"', "\\\""))
        }
    } else {
        o.create.clone()
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(o.timeout))
        .proxy(None)
        .build()
        .into();
    let url = format!("{}/query", o.host);
    let mut req = agent
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let form = format!("q={}", percent_encode(&q));
    let mut resp = req
        .send(form.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_vec().unwrap_or_default();
    if status != 200 {
        let text = String::from_utf8_lossy(&text);
        return Err(format!("{url}: status {status}: {}", text.trim()));
    }
    Ok(())
}

/// Nearest-rank percentile of sorted latencies (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).as_secs_f64() * 1000.0
}

/// The `query` subcommand: the same query from concurrent keep-alive clients.
mod query {
    use std::io::Read as _;
    use std::process::exit;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{base64, fail, parse_duration, percent_encode, percentile};

    const USAGE: &str = "\
Usage: influx-stress query -q QUERY [flags]

Sends the same InfluxQL query as GET /query?db=DB&q=QUERY from concurrent
clients, each with its own keep-alive connection, back to back, and reports
queries/s and latency percentiles. An answer that is not 2xx or whose body
contains \"error\" counts as an error.

Flags:
      --host URL            address of InfluxDB (default http://localhost:8086)
      --db NAME             database, sent as db= (default stress; empty: not sent)
  -q, --query QUERY         the query, e.g. 'SELECT last(v) FROM q' (required)
  -c, --concurrency N       concurrent clients (default 4)
  -n, --requests N          queries in all (default 2000, or unlimited when only
                            --runtime is given)
  -r, --runtime DURATION    stop after this long, Go duration, e.g. 10s (default none)
      --warmup N            queries per client before the clock starts, not
                            counted (default 0)
      --epoch P             sent as epoch=P when given
      --user NAME           basic-auth user
      --pass PASSWORD       basic-auth password
      --timeout DURATION    per-request timeout (default 60s)
      --strict              exit 1 on the first error
      --json                print only a one-line JSON summary
  -h, --help                this text
";

    fn usage_error(msg: &str) -> ! {
        eprintln!("influx-stress query: {msg}\n\n{USAGE}");
        exit(2)
    }

    fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
        super::parse_num_or(flag, v, usage_error)
    }

    fn parse_bool(flag: &str, v: &str) -> bool {
        super::parse_bool_or(flag, v, usage_error)
    }

    /// Parsed command line of `query`.
    struct Opts {
        host: String,
        db: String,
        query: String,
        concurrency: u64,
        requests: Option<u64>,
        runtime: Option<Duration>,
        warmup: u64,
        epoch: String,
        user: String,
        pass: String,
        timeout: Duration,
        strict: bool,
        json: bool,
    }

    /// Flags that take a value (short and long names, without dashes).
    const VALUE_FLAGS: &[&str] = &[
        "host",
        "db",
        "q",
        "query",
        "c",
        "concurrency",
        "n",
        "requests",
        "r",
        "runtime",
        "warmup",
        "epoch",
        "user",
        "pass",
        "timeout",
    ];

    fn parse_args(mut args: impl Iterator<Item = String>) -> Opts {
        let mut o = Opts {
            host: "http://localhost:8086".into(),
            db: "stress".into(),
            query: String::new(),
            concurrency: 4,
            requests: None,
            runtime: None,
            warmup: 0,
            epoch: String::new(),
            user: String::new(),
            pass: String::new(),
            timeout: Duration::from_secs(60),
            strict: false,
            json: false,
        };
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') || arg == "-" {
                usage_error(&format!("unexpected argument {arg:?}"));
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let name = flag.trim_start_matches('-');
            let on = || inline.as_deref().is_none_or(|v| parse_bool(&flag, v));
            match name {
                "strict" => o.strict = on(),
                "json" => o.json = on(),
                "h" | "help" => {
                    print!("{USAGE}");
                    exit(0)
                }
                _ if !VALUE_FLAGS.contains(&name) => usage_error(&format!("unknown flag {flag}")),
                _ => {
                    let value = match inline.clone().or_else(|| args.next()) {
                        Some(v) => v,
                        None => usage_error(&format!("flag {flag} needs a value")),
                    };
                    match name {
                        "host" => o.host = value.trim_end_matches('/').to_string(),
                        "db" => o.db = value,
                        "q" | "query" => o.query = value,
                        "c" | "concurrency" => o.concurrency = parse_num(&flag, &value),
                        "n" | "requests" => o.requests = Some(parse_num(&flag, &value)),
                        "warmup" => o.warmup = parse_num(&flag, &value),
                        "epoch" => o.epoch = value,
                        "user" => o.user = value,
                        "pass" => o.pass = value,
                        "r" | "runtime" | "timeout" => {
                            let d = parse_duration(&value).unwrap_or_else(|| {
                                usage_error(&format!("invalid duration {value:?} for {flag}"))
                            });
                            if name == "timeout" {
                                o.timeout = d;
                            } else {
                                o.runtime = Some(d);
                            }
                        }
                        _ => usage_error(&format!("unknown flag {flag}")),
                    }
                }
            }
        }
        if o.query.trim().is_empty() {
            usage_error("-q/--query is required");
        }
        if o.concurrency == 0 {
            usage_error("--concurrency must be positive");
        }
        if o.requests == Some(0) {
            usage_error("--requests must be positive");
        }
        o
    }

    /// The request URL: `/query` with `db`, `q` and `epoch` as parameters.
    fn query_url(o: &Opts) -> String {
        let mut url = format!("{}/query?", o.host);
        if !o.db.is_empty() {
            url.push_str(&format!("db={}&", percent_encode(&o.db)));
        }
        url.push_str(&format!("q={}", percent_encode(&o.query)));
        if !o.epoch.is_empty() {
            url.push_str(&format!("&epoch={}", percent_encode(&o.epoch)));
        }
        url
    }

    /// Whether an InfluxDB answer body reports an error (top level or per statement).
    fn has_error(body: &[u8]) -> bool {
        body.windows(7).any(|w| w == b"\"error\"")
    }

    /// Everything the clients share.
    struct Shared {
        url: String,
        auth: Option<String>,
        timeout: Duration,
        /// Measured queries claimed so far; a client stops once it reaches `limit`.
        claimed: AtomicU64,
        limit: u64,
        runtime: Option<Duration>,
        warmup: u64,
        strict: bool,
        /// Error messages printed so far, to cap the noise.
        printed: AtomicU64,
    }

    enum Outcome {
        Ok,
        Non2xx,
        ErrorBody,
        Transport,
    }

    #[derive(Default)]
    struct Tally {
        requests: u64,
        non_2xx: u64,
        error_bodies: u64,
        transport: u64,
        latencies: Vec<Duration>,
    }

    impl Shared {
        fn report(&self, msg: &str) {
            super::report_error(self.strict, &self.printed, msg);
        }

        /// Sends the query once and reads the whole answer into `body`;
        /// returns the time from sending to the last byte, and the outcome.
        fn once(&self, agent: &ureq::Agent, body: &mut Vec<u8>) -> (Duration, Outcome) {
            let mut req = agent.get(&self.url);
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a);
            }
            body.clear();
            let began = Instant::now();
            let result = req.call().and_then(|mut resp| {
                resp.body_mut().as_reader().read_to_end(body)?;
                Ok(resp.status().as_u16())
            });
            let took = began.elapsed();
            let outcome = match result {
                Ok(status) if !(200..300).contains(&status) => {
                    let text = String::from_utf8_lossy(body);
                    let text: String = text.trim().chars().take(300).collect();
                    self.report(&format!("unexpected query status {status}, body: {text}"));
                    Outcome::Non2xx
                }
                Ok(_) if has_error(body) => {
                    let text = String::from_utf8_lossy(body);
                    let text: String = text.trim().chars().take(300).collect();
                    self.report(&format!("error in the answer: {text}"));
                    Outcome::ErrorBody
                }
                Ok(_) => Outcome::Ok,
                Err(e) => {
                    self.report(&format!("error sending query to {}: {e}", self.url));
                    Outcome::Transport
                }
            };
            (took, outcome)
        }
    }

    /// One client: warms up, waits for the others, then queries until the
    /// shared request count or its deadline is reached.
    fn client(sh: Arc<Shared>, ready: Arc<Barrier>) -> Tally {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(sh.timeout))
            .proxy(None)
            .build()
            .into();
        let mut body = Vec::with_capacity(4096);
        for _ in 0..sh.warmup {
            sh.once(&agent, &mut body);
        }
        ready.wait();
        let deadline = sh.runtime.and_then(|d| Instant::now().checked_add(d));
        let mut t = Tally::default();
        while sh.claimed.fetch_add(1, Ordering::Relaxed) < sh.limit {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let (took, outcome) = sh.once(&agent, &mut body);
            t.requests += 1;
            t.latencies.push(took);
            match outcome {
                Outcome::Ok => {}
                Outcome::Non2xx => t.non_2xx += 1,
                Outcome::ErrorBody => t.error_bodies += 1,
                Outcome::Transport => t.transport += 1,
            }
        }
        t
    }

    fn micros(d: Duration) -> f64 {
        (d.as_nanos() as f64 / 100.0).round() / 10.0
    }

    pub fn main(args: impl Iterator<Item = String>) -> ! {
        let o = parse_args(args);
        let limit = match (o.requests, o.runtime) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => 2000,
        };
        let auth = (!o.user.is_empty() || !o.pass.is_empty()).then(|| {
            format!(
                "Basic {}",
                base64(format!("{}:{}", o.user, o.pass).as_bytes())
            )
        });
        let url = query_url(&o);
        if !o.json {
            println!("Query: {}", o.query);
            let runtime = o
                .runtime
                .map_or("forever".to_string(), |d| format!("{d:?}"));
            let requests = if limit == u64::MAX {
                "unlimited".to_string()
            } else {
                limit.to_string()
            };
            println!(
                "Sending {requests} queries from {} keep-alive client(s) to {}, or until ~{runtime} has elapsed",
                o.concurrency, o.host
            );
        }
        let shared = Arc::new(Shared {
            url,
            auth,
            timeout: o.timeout,
            claimed: AtomicU64::new(0),
            limit,
            runtime: o.runtime,
            warmup: o.warmup,
            strict: o.strict,
            printed: AtomicU64::new(0),
        });
        let ready = Arc::new(Barrier::new(o.concurrency as usize + 1));
        let mut handles = Vec::new();
        for c in 0..o.concurrency {
            let sh = Arc::clone(&shared);
            let ready = Arc::clone(&ready);
            let h = thread::Builder::new()
                .name(format!("client-{c}"))
                .spawn(move || client(sh, ready))
                .unwrap_or_else(|e| fail(&format!("cannot start client thread: {e}")));
            handles.push(h);
        }
        ready.wait();
        let start = Instant::now();
        let mut total = Tally::default();
        for h in handles {
            let t = h
                .join()
                .unwrap_or_else(|_| fail("a client thread panicked"));
            total.requests += t.requests;
            total.non_2xx += t.non_2xx;
            total.error_bodies += t.error_bodies;
            total.transport += t.transport;
            total.latencies.extend(t.latencies);
        }
        let secs = start.elapsed().as_secs_f64();
        total.latencies.sort_unstable();
        let [p50, p90, p99] = [50.0, 90.0, 99.0].map(|p| percentile(&total.latencies, p));
        let qps = if secs > 0.0 {
            total.requests as f64 / secs
        } else {
            0.0
        };
        let errors = total.non_2xx + total.error_bodies + total.transport;
        if o.json {
            let summary = serde_json::json!({
                "requests": total.requests,
                "seconds": (secs * 1e6).round() / 1e6,
                "qps": (qps * 10.0).round() / 10.0,
                "p50_us": micros(p50),
                "p90_us": micros(p90),
                "p99_us": micros(p99),
                "max_us": micros(total.latencies.last().copied().unwrap_or_default()),
                "warmup": o.warmup * o.concurrency,
                "errors": errors,
                "non_2xx": total.non_2xx,
                "error_bodies": total.error_bodies,
                "transport_errors": total.transport,
                "concurrency": o.concurrency,
            });
            println!("{summary}");
        } else {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!("Queries: {}", total.requests);
            println!("Time: {secs:.3}s");
            println!("Queries/s: {qps:.1}");
            println!(
                "Latency p50: {:.3} ms p90: {:.3} ms p99: {:.3} ms",
                ms(p50),
                ms(p90),
                ms(p99)
            );
            println!(
                "Errors: {errors} (non-2xx: {}, error bodies: {}, transport: {})",
                total.non_2xx, total.error_bodies, total.transport
            );
        }
        exit(0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn url_and_errors() {
            let args = [
                "--host",
                "http://h:1/",
                "-q",
                "SELECT last(v) FROM q",
                "--epoch=ms",
            ];
            let o = parse_args(args.map(String::from).into_iter());
            assert_eq!(o.concurrency, 4);
            assert_eq!(o.requests, None);
            assert_eq!(
                query_url(&o),
                "http://h:1/query?db=stress&q=SELECT%20last%28v%29%20FROM%20q&epoch=ms"
            );
            assert!(has_error(br#"{"results":[{"error":"x"}]}"#));
            assert!(has_error(br#"{"error":"missing parameter"}"#));
            assert!(!has_error(br#"{"results":[{"series":[]}]}"#));
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("query") {
        query::main(std::env::args().skip(2));
    }
    let o = parse_args();
    let unit_nanos = precision_nanos(&o.precision)
        .unwrap_or_else(|| usage_error(&format!("unknown precision {:?}", o.precision)));
    // influx-stress: pps takes precedence over the batch size.
    let mut batch = o.batch;
    let mut concurrency = o.pps / batch;
    if o.pps < batch {
        batch = o.pps;
        concurrency = 1;
    }
    if o.series < concurrency {
        fail(&format!(
            "series number ({}) should not be smaller than the number of writers ({concurrency})",
            o.series
        ));
    }
    let fields = parse_fields(&o.fields).unwrap_or_else(|e| usage_error(&e));
    let (series, offsets) =
        build_series(&o.series_key, o.series, o.measurements).unwrap_or_else(|e| usage_error(&e));

    let banner = !o.quiet && !o.json;
    if banner {
        println!(
            "Using point template: {} {} <timestamp>",
            o.series_key, o.fields
        );
        println!("Using batch size of {batch} line(s)");
        println!("Spreading writes across {} series", o.series);
        if o.fast {
            println!("Output is unthrottled");
        } else {
            println!("Throttling output to ~{} points/sec", o.pps);
        }
        println!("Using {concurrency} concurrent writer(s)");
        let runtime = o
            .runtime
            .map_or("forever".to_string(), |d| format!("{d:?}"));
        println!(
            "Running until ~{} points sent or until ~{runtime} has elapsed",
            o.points
        );
    }

    let auth = (!o.user.is_empty() || !o.pass.is_empty()).then(|| {
        format!(
            "Basic {}",
            base64(format!("{}:{}", o.user, o.pass).as_bytes())
        )
    });
    if !o.kapacitor {
        if let Err(e) = create_db(&o, auth.as_deref()) {
            fail(&format!("failed to create database: {e}\nAborting."));
        }
    }

    let mut url = format!("{}/write?db={}", o.host, percent_encode(&o.db));
    if !o.rp.is_empty() {
        url.push_str(&format!("&rp={}", percent_encode(&o.rp)));
    }
    url.push_str(&format!("&precision={}", percent_encode(&o.precision)));
    if !o.consistency.is_empty() {
        url.push_str(&format!("&consistency={}", percent_encode(&o.consistency)));
    }

    let interval = Duration::from_secs_f64(batch as f64 * concurrency as f64 / o.pps as f64);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        url,
        auth,
        series,
        offsets,
        fields,
        unit_nanos,
        batch,
        gzip: o.gzip,
        fast: o.fast,
        interval,
        start,
        deadline: o.runtime.and_then(|d| start.checked_add(d)),
        strict: o.strict,
        timeout: o.timeout,
        printed: AtomicU64::new(0),
    });

    let mut handles = Vec::new();
    let per_series = o.series / concurrency;
    for w in 0..concurrency {
        // Exact split of points and series; the last writer takes any leftover series.
        let quota = o.points / concurrency + u64::from(w < o.points % concurrency);
        let lo = (w * per_series) as usize;
        let hi = if w + 1 == concurrency {
            o.series as usize
        } else {
            lo + per_series as usize
        };
        // Spread the writers' sends evenly over one interval.
        let offset = interval.mul_f64(w as f64 / concurrency as f64);
        let sh = Arc::clone(&shared);
        let h = thread::Builder::new()
            .name(format!("writer-{w}"))
            .spawn(move || writer(sh, quota, lo, hi, offset))
            .unwrap_or_else(|e| fail(&format!("cannot start writer thread: {e}")));
        handles.push(h);
    }
    let mut total = Tally::default();
    for h in handles {
        let t = h
            .join()
            .unwrap_or_else(|_| fail("a writer thread panicked"));
        total.acked += t.acked;
        total.failed_points += t.failed_points;
        total.requests += t.requests;
        total.non_2xx += t.non_2xx;
        total.errors += t.errors;
        total.latencies.extend(t.latencies);
    }
    let secs = start.elapsed().as_secs_f64();
    total.latencies.sort_unstable();
    let p50 = percentile_ms(&total.latencies, 50.0);
    let p99 = percentile_ms(&total.latencies, 99.0);
    let throughput = if secs > 0.0 {
        (total.acked as f64 / secs) as u64
    } else {
        0
    };
    let failed = total.non_2xx + total.errors;

    if o.json {
        let summary = serde_json::json!({
            "points": total.acked,
            "seconds": (secs * 1e6).round() / 1e6,
            "throughput": throughput,
            "p50_ms": (p50 * 1000.0).round() / 1000.0,
            "p99_ms": (p99 * 1000.0).round() / 1000.0,
            "errors": failed,
            "non_2xx": total.non_2xx,
            "transport_errors": total.errors,
            "failed_points": total.failed_points,
            "requests": total.requests,
            "writers": concurrency,
            "batch_size": batch,
        });
        println!("{summary}");
    } else if o.quiet {
        println!("{throughput}");
    } else {
        println!("Write Throughput: {throughput}");
        println!("Points Written: {}", total.acked);
        println!("Time: {secs:.3}s");
        println!("Requests: {}", total.requests);
        println!("Latency p50: {p50:.2} ms p99: {p99:.2} ms");
        println!(
            "Non-2xx responses: {} Errors: {} Points failed: {}",
            total.non_2xx, total.errors, total.failed_points
        );
    }
    if failed > 0 && o.strict {
        exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn series_like_influx_stress() {
        let keys = |key: &str, n: u64, m: u64| {
            let (buf, off) = build_series(key, n, m).unwrap_or_default();
            (0..off.len().saturating_sub(1))
                .map(|i| String::from_utf8_lossy(&buf[off[i]..off[i + 1]]).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys("ctr,some=tag", 3, 1),
            ["ctr,some=tag-0", "ctr,some=tag-1", "ctr,some=tag-2"]
        );
        // 6 = 2 * 3: the first prime goes to the second tag, the next to the first.
        assert_eq!(
            keys("cpu,host=a,region=b", 6, 2),
            [
                "cpu-0,host=a-0,region=b-0",
                "cpu-1,host=a-1,region=b-1",
                "cpu-0,host=a-2,region=b-0",
                "cpu-1,host=a-0,region=b-1",
                "cpu-0,host=a-1,region=b-0",
                "cpu-1,host=a-2,region=b-1",
            ]
        );
        assert!(build_series("ctr", 3, 1).is_err());
    }

    #[test]
    fn fields_count_up() {
        let fields = parse_fields("n=0i,v=1.5,s=\"x\",b=true").unwrap_or_default();
        let mut buf = Vec::new();
        push_fields(&mut buf, &fields, 2);
        assert_eq!(buf, b"n=2i,v=3.5,s=\"x\",b=true");
        assert!(parse_fields("n").is_err());
    }

    #[test]
    fn encodings() {
        assert_eq!(base64(b"bob:p@ss"), "Ym9iOnBAc3M=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(percent_encode("CREATE DATABASE x"), "CREATE%20DATABASE%20x");
        let mut buf = Vec::new();
        push_i64(&mut buf, -120);
        push_u64(&mut buf, 0);
        assert_eq!(buf, b"-1200");
    }

    #[test]
    fn percentiles() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&lat, 50.0), 50.0);
        assert_eq!(percentile_ms(&lat, 99.0), 99.0);
        assert_eq!(percentile_ms(&[], 99.0), 0.0);
    }
}
