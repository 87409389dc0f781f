//! What each fuzz target checks on one input, shared by the cargo-fuzz
//! targets (`fuzz_targets/*.rs`) and by `tests/properties.rs`, which replays
//! every input kept in `fuzz/regressions/<target>/` through the same check.
//! A check panics when an input breaks a property.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use influx_proxy::cluster::Cluster;
use influx_proxy::config::Config;
use influx_proxy::query::merge::parse_json;
use influx_proxy::query::{lexer, statement};
use influx_proxy::spool::record::{self, DecodeError};
use influx_proxy::write::batch::Batcher;
use influx_proxy::write::line::{next_line, scan, unescape_measurement, Line, Precision, Scanned};

/// A target's check of one input.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` names its binaries.
pub const TARGETS: &[(&str, Check)] = &[
    ("line_split", line_split),
    ("line_scan", line_scan),
    ("influxql", influxql),
    ("spool_record", spool_record),
    ("query_json", query_json),
];

pub const PRECISIONS: [Precision; 6] = [
    Precision::Nanosecond,
    Precision::Microsecond,
    Precision::Millisecond,
    Precision::Second,
    Precision::Minute,
    Precision::Hour,
];

const NOW: i64 = 1_700_000_000_000_000_000;

/// Two circles, of two and three backends.
pub fn cluster() -> Arc<Cluster> {
    static CLUSTER: OnceLock<Arc<Cluster>> = OnceLock::new();
    let text = r#"{"circles":[
        {"name":"c1","backends":[{"name":"a","url":"http://h:1"},{"name":"b","url":"http://h:2"}]},
        {"name":"c2","backends":[{"name":"c","url":"http://h:3"},{"name":"d","url":"http://h:4"},
                                 {"name":"e","url":"http://h:5"}]}]}"#;
    Arc::clone(
        CLUSTER.get_or_init(|| Arc::new(Cluster::new(&Config::from_json(text).expect("config").0))),
    )
}

/// The lines of `body` as the write path (and InfluxDB's `scanLine`) cut
/// them, checking that each step advances and that the lines with the `\n`s
/// between them rebuild the body.
pub fn split(body: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rebuilt = Vec::with_capacity(body.len());
    let mut pos = 0;
    while pos < body.len() {
        let (line, next) = next_line(body, pos);
        assert!(next > pos && next <= body.len(), "{pos} -> {next}");
        let end = pos + line.len();
        assert_eq!(line, &body[pos..end]);
        rebuilt.extend_from_slice(line);
        if next == end + 1 {
            assert_eq!(body[end], b'\n');
            rebuilt.push(b'\n');
        } else {
            assert_eq!(next, end, "a line ends at a newline or at the end");
            assert_eq!(next, body.len());
        }
        lines.push(line);
        pos = next;
    }
    assert_eq!(rebuilt, body);
    lines
}

/// The line splitter.
pub fn line_split(body: &[u8]) {
    split(body);
}

/// The measurement scanner and the router: an accepted line normalizes, in
/// every precision, to a line a backend reads back as the same single point;
/// routing the body puts each accepted point once in every circle, as lines
/// the backend accepts.
pub fn line_scan(body: &[u8]) {
    for raw in split(body) {
        scanned_line(raw);
    }
    let cluster = cluster();
    let mut batcher = Batcher::new(Arc::clone(&cluster));
    let precision = PRECISIONS[body.first().map_or(0, |&b| b as usize % PRECISIONS.len())];
    let routed = batcher.route("db", "rp", precision, NOW, body);
    let mut per_circle = vec![0usize; cluster.circles.len()];
    for (id, batch) in &routed.batches {
        let lines = split(&batch.lines);
        assert_eq!(
            lines.len(),
            batch.points as usize,
            "backend {id} reads {lines:?}"
        );
        for line in lines {
            assert!(
                matches!(scan(line), Scanned::Point(_)),
                "backend {id} refuses {:?}",
                String::from_utf8_lossy(line)
            );
        }
        per_circle[cluster.backends[*id].circle] += batch.points as usize;
    }
    assert!(
        per_circle.iter().all(|&n| n == routed.points),
        "{per_circle:?} != {}",
        routed.points
    );
}

fn scanned_line(raw: &[u8]) {
    let Scanned::Point(line) = scan(raw) else {
        return;
    };
    assert!(line.text.starts_with(line.measurement));
    assert!(!line.measurement.is_empty());
    assert!(line.body_len <= line.text.len());
    let _ = unescape_measurement(line.measurement);
    // The trimmed text scans to the same line, but for the blanks kept
    // in front of a line that holds a quoted newline.
    let Scanned::Point(again) = scan(line.text) else {
        panic!("the trimmed text of an accepted line is refused");
    };
    assert_eq!(
        Line {
            lead: line.lead,
            ..again
        },
        line.clone()
    );
    for precision in PRECISIONS {
        let mut out = Vec::new();
        if line.write_normalized(precision, NOW, &mut out).is_err() {
            assert!(line.timestamp.is_some() && out.is_empty());
            continue;
        }
        // A line with a quote may read back differently: the batcher
        // refuses those (LineError::AmbiguousQuotes) instead of sending them.
        if !influx_proxy::write::line::reads_back(&line, &out) {
            assert!(
                line.text.contains(&b'"'),
                "only a quoted line may be ambiguous"
            );
            continue;
        }
        let normalized = &out[..out.len() - 1];
        assert_eq!(
            next_line(&out, 0),
            (normalized, out.len()),
            "a backend splits the normalized line {:?}",
            String::from_utf8_lossy(&out)
        );
        match scan(normalized) {
            Scanned::Point(again) => {
                assert_eq!(again.measurement, line.measurement);
                assert_eq!(&again.text[..again.body_len], &line.text[..line.body_len]);
            }
            other => panic!("normalized line refused: {other:?}"),
        }
    }
}

/// The InfluxQL tokenizer and statement splitter: tokens cover their source
/// in order; each accepted statement, sent alone, is read back as exactly
/// the same statement.
pub fn influxql(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tokens) = lexer::tokenize(q) {
        let mut last = 0;
        for t in &tokens {
            assert!(
                t.start >= last && t.start < t.end && t.end <= q.len(),
                "{t:?}"
            );
            assert_eq!(q.get(t.start..t.end), Some(t.text));
            let _ = t.value();
            last = t.end;
        }
    }
    if let Ok(statements) = statement::parse(q) {
        assert!(!statements.is_empty());
        for s in statements {
            assert_eq!(statement::parse(&s.text), Ok(vec![s.clone()]), "in {q:?}");
            assert!(statement::parse(&s.text_without_limit).is_ok(), "in {q:?}");
            assert!(
                only_clauses_removed(&s.text, &s.text_without_limit),
                "{:?} without its LIMIT/OFFSET is {:?}",
                s.text,
                s.text_without_limit
            );
        }
    }
}

/// Whether the tokens of `cut` are those of `full` but for at most four
/// `LIMIT x` / `OFFSET x` pairs (the outermost LIMIT and OFFSET clauses).
pub fn only_clauses_removed(full: &str, cut: &str) -> bool {
    const MAX_PAIRS: usize = 4;
    let (Ok(full), Ok(cut)) = (lexer::tokenize(full), lexer::tokenize(cut)) else {
        return false;
    };
    let clause_at = |i: usize| {
        matches!(
            full.get(i).and_then(|t| t.keyword()),
            Some(lexer::Keyword::Limit | lexer::Keyword::Offset)
        ) && i + 1 < full.len()
    };
    // reached[i][r]: full[..i] matches cut[..i - 2r] with r pairs left out.
    let mut reached = vec![[false; MAX_PAIRS + 1]; full.len() + 1];
    reached[0][0] = true;
    for i in 0..full.len() {
        for r in 0..=MAX_PAIRS {
            if !reached[i][r] || i < 2 * r {
                continue;
            }
            let j = i - 2 * r;
            if cut
                .get(j)
                .is_some_and(|t| t.kind == full[i].kind && t.text == full[i].text)
            {
                reached[i + 1][r] = true;
            }
            if r < MAX_PAIRS && clause_at(i) {
                reached[i + 2][r + 1] = true;
            }
        }
    }
    (0..=MAX_PAIRS).any(|r| reached[full.len()][r] && full.len() == cut.len() + 2 * r)
}

/// The spool record decoder: a record that decodes re-encodes to the same
/// bytes; the segment reader's loop (decode, or resync at the next magic)
/// always ends.
pub fn spool_record(data: &[u8]) {
    if let Ok((r, n)) = record::decode(data) {
        assert!(n >= record::PREFIX + 18 && n <= data.len());
        let mut again = Vec::new();
        record::encode(
            &mut again,
            r.kind,
            r.points,
            r.appended_at_ms,
            r.db,
            r.rp,
            r.payload,
        );
        // Byte 13 (precision) is not read back; it is 0 in what we write.
        if data[13] == 0 {
            assert_eq!(again, &data[..n]);
        } else {
            assert_eq!(again.len(), n);
        }
    }
    let mut pos = 0;
    while pos < data.len() {
        match record::decode(&data[pos..]) {
            Ok((_, n)) => pos += n,
            Err(DecodeError::End) => break,
            Err(_) => match record::find_magic(data, pos + 1) {
                Some(p) => {
                    assert!(p > pos);
                    assert_eq!(&data[p..p + 4], &record::MAGIC[..]);
                    pos = p;
                }
                None => break,
            },
        }
    }
}

/// The JSON reader of backend answers: what it accepts it reads back the
/// same once written out again.
pub fn query_json(data: &[u8]) {
    if let Ok(v) = parse_json(data) {
        let text = serde_json::to_vec(&v).expect("serialize");
        assert_eq!(parse_json(&text), Ok(v));
    }
}
