//! `POST /api/v1/prom/write?db=<db>[&rp=<rp>]`: a snappy `WriteRequest`
//! stored as InfluxDB 1.x stores it.
//!
//! Each sample is one point: measurement = the value of the `__name__`
//! label (`prom_metric_not_specified` without one), every label a tag
//! (`__name__` included; the last of two labels with one name wins, tags
//! sorted by key as influxd sorts them), the field `value` a float, the time
//! the sample's milliseconds times 1,000,000. NaN and ±Inf samples are
//! dropped (the Go proxy drops both; influxd drops NaN and refuses a request
//! with an infinity whole). A label with an empty value is no label, as in
//! Prometheus.
//!
//! The points are written as line protocol and go through
//! [`WriteService::write_lines`], the path of `/write`: routed by (db,
//! measurement), spooled, 204 only once they are in every spool.
//!
//! Nothing is half written: every line is built and checked with the line
//! scanner of `/write` before the one `write_lines` call. A series whose
//! names line protocol cannot carry (a newline, a name ending in a
//! backslash, a metric name line protocol reads differently) refuses the
//! whole request with 400 naming it, as influxd refuses a request with a
//! point it cannot make. The lines are held to `max_body_size` like a
//! `/write` body (413), since every line repeats its series' labels. A
//! request with no series, or only dropped samples, is answered 204 with
//! nothing written.

use std::io::Write;

use prost::Message;

use super::proto::{TimeSeries, WriteRequest};
use super::{unsnappy, BodyError, METRIC_NAME_LABEL};
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};
use crate::write::endpoint::{WriteScratch, WriteService};
use crate::write::line::{one_line, push_i64, scan, Precision, Scanned};

/// The measurement of a series without a `__name__` label (influxd's).
pub const DEFAULT_MEASUREMENT: &str = "prom_metric_not_specified";

/// Why a remote write was refused before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromWriteError {
    Body(BodyError),
    /// A series line protocol cannot carry: its labels and why.
    Unwritable {
        series: String,
        reason: String,
    },
    /// A sample time whose nanoseconds do not fit InfluxDB's range.
    TimeOutOfRange(i64),
}

impl From<PromWriteError> for ApiError {
    fn from(e: PromWriteError) -> ApiError {
        match e {
            PromWriteError::Body(b) => b.into(),
            PromWriteError::Unwritable { series, reason } => ApiError::bad_request(format!(
                "prometheus series {series} cannot be written as line protocol: {reason}"
            )),
            PromWriteError::TimeOutOfRange(ms) => ApiError::bad_request(format!(
                "prometheus sample time {ms} ms is out of InfluxDB's time range"
            )),
        }
    }
}

impl From<BodyError> for PromWriteError {
    fn from(e: BodyError) -> PromWriteError {
        PromWriteError::Body(e)
    }
}

/// Handles `/api/v1/prom/write` once method and auth have been checked.
pub fn handle(
    service: &WriteService,
    scratch: &mut WriteScratch,
    req: &mut Request,
) -> Result<Response, ApiError> {
    let db = req.params.get("db").to_string();
    service.check_db(&db)?;
    let rp = req.params.get("rp").to_string();
    let limit = service.max_body_size();
    let body = req.read_body(limit as u64)?;
    let lines = decode_lines(&body, limit)?;
    if lines.is_empty() {
        return Ok(Response::no_content());
    }
    Ok(service.write_lines(scratch, &db, &rp, Precision::Nanosecond, &lines)?)
}

/// The line protocol of a snappy `WriteRequest` body (empty when there is
/// no sample to store), every line checked.
pub fn decode_lines(body: &[u8], limit: usize) -> Result<Vec<u8>, PromWriteError> {
    let raw = unsnappy(body, limit)?;
    let request = WriteRequest::decode(raw.as_slice()).map_err(|e| {
        BodyError::Protobuf(format!("unable to decode prometheus write request: {e}"))
    })?;
    to_lines(&request, limit)
}

/// The line protocol of `request`'s samples, one line per sample, at most
/// `limit` bytes (a `/write` body's limit: the labels repeated on every
/// line must not make a small request a huge one).
pub fn to_lines(request: &WriteRequest, limit: usize) -> Result<Vec<u8>, PromWriteError> {
    let mut out = Vec::new();
    let mut prefix = Vec::new();
    for series in &request.timeseries {
        if !series.samples.iter().any(|s| s.value.is_finite()) {
            continue;
        }
        series_prefix(series, &mut prefix)?;
        for sample in series.samples.iter().filter(|s| s.value.is_finite()) {
            let ns = sample
                .timestamp
                .checked_mul(1_000_000)
                .ok_or(PromWriteError::TimeOutOfRange(sample.timestamp))?;
            out.extend_from_slice(&prefix);
            out.extend_from_slice(b" value=");
            // Shortest text that reads back as the same f64 (exponent form
            // for very large or small magnitudes), which InfluxDB parses.
            let _ = write!(out, "{:?}", sample.value);
            out.push(b' ');
            push_i64(&mut out, ns);
            out.push(b'\n');
            if out.len() > limit {
                return Err(BodyError::TooLarge.into());
            }
        }
    }
    Ok(out)
}

/// The measurement a metric is stored and placed under: its name as a
/// remote write makes it (see [`placement_measurement`]).
pub fn measurement_of(series: &TimeSeries) -> &str {
    series
        .labels
        .iter()
        .rev()
        .find(|l| l.name == METRIC_NAME_LABEL)
        .map_or(DEFAULT_MEASUREMENT, |l| l.value.as_str())
}

/// Writes `measurement[,key=value...]` of `series` into `prefix`, after
/// checking that InfluxDB reads it back as these names.
fn series_prefix(series: &TimeSeries, prefix: &mut Vec<u8>) -> Result<(), PromWriteError> {
    let unwritable = |reason: &str| PromWriteError::Unwritable {
        series: describe(series),
        reason: reason.to_string(),
    };
    let measurement = measurement_of(series);
    // Sorted by key, the last of equal keys kept (influxd builds a map).
    let mut tags: Vec<(&str, &str)> = Vec::with_capacity(series.labels.len());
    for label in &series.labels {
        if label.value.is_empty() {
            continue;
        }
        if label.name.is_empty() {
            return Err(unwritable("a label has an empty name"));
        }
        match tags.iter_mut().find(|(k, _)| *k == label.name) {
            Some(tag) => tag.1 = &label.value,
            None => tags.push((&label.name, &label.value)),
        }
    }
    tags.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let names = std::iter::once(measurement).chain(tags.iter().flat_map(|&(k, v)| [k, v]));
    for name in names {
        if name.contains('\n') {
            return Err(unwritable("a name holds a line break"));
        }
        if name.ends_with('\\') {
            return Err(unwritable("a name ends in a backslash"));
        }
    }
    prefix.clear();
    escape_measurement(measurement, prefix);
    let escaped_len = prefix.len();
    for (key, value) in &tags {
        prefix.push(b',');
        escape_tag(key, prefix);
        prefix.push(b'=');
        escape_tag(value, prefix);
    }
    // The line `/write`'s scanner will see: one line, valid, the same
    // measurement (a leading tab or `#` would be trimmed or read as a
    // comment).
    let mut probe = prefix.clone();
    probe.extend_from_slice(b" value=0 0\n");
    if !one_line(&probe) {
        return Err(unwritable("line protocol would split it"));
    }
    match scan(&probe[..probe.len() - 1]) {
        Scanned::Point(line) if line.measurement == &prefix[..escaped_len] => Ok(()),
        Scanned::Invalid { error, .. } => Err(unwritable(&error.to_string())),
        _ => Err(unwritable("line protocol reads another measurement")),
    }
}

/// `{name="value", ...}` of a series, for messages.
fn describe(series: &TimeSeries) -> String {
    let labels: Vec<String> = series
        .labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", labels.join(", "))
}

/// A measurement as line protocol writes it: `,` and space escaped.
pub fn escape_measurement(name: &str, out: &mut Vec<u8>) {
    for &b in name.as_bytes() {
        if matches!(b, b',' | b' ') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// A tag key or value as line protocol writes it: `,`, `=` and space escaped.
fn escape_tag(name: &str, out: &mut Vec<u8>) {
    for &b in name.as_bytes() {
        if matches!(b, b',' | b'=' | b' ') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The measurement name `/write`'s placement uses for the points of
/// `metric` (the written name, unescaped as the Go proxy unescapes it), so
/// a read finds the backend the samples were routed to.
pub fn placement_measurement(metric: &str) -> String {
    let mut escaped = Vec::with_capacity(metric.len());
    escape_measurement(metric, &mut escaped);
    String::from_utf8_lossy(&crate::write::line::unescape_measurement(&escaped)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::proto::{Label, Sample};
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|&(n, v)| Label {
                    name: n.into(),
                    value: v.into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
        }
    }

    fn lines(ts: Vec<TimeSeries>) -> Result<String, PromWriteError> {
        to_lines(&WriteRequest { timeseries: ts }, 1 << 20)
            .map(|l| String::from_utf8(l).unwrap_or_default())
    }

    #[test]
    fn samples_become_points_with_sorted_escaped_tags() {
        let got = lines(vec![series(
            &[("job", "a b"), ("__name__", "up"), ("instance", "h:1,x=y")],
            &[(1.0, 1000), (0.25, 2000), (1e300, 3), (-1e-7, 4)],
        )])
        .unwrap();
        let prefix = r"up,__name__=up,instance=h:1\,x\=y,job=a\ b";
        assert_eq!(
            got,
            format!(
                "{prefix} value=1.0 1000000000\n{prefix} value=0.25 2000000000\n\
                 {prefix} value=1e300 3000000\n{prefix} value=-1e-7 4000000\n"
            )
        );
    }

    #[test]
    fn nan_and_infinities_are_dropped_and_empty_requests_write_nothing() {
        let got = lines(vec![
            series(
                &[("__name__", "m")],
                &[(f64::NAN, 1), (2.0, 2), (f64::INFINITY, 3)],
            ),
            series(&[("__name__", "n")], &[(f64::NEG_INFINITY, 1)]),
            series(&[], &[(3.0, 5)]),
        ])
        .unwrap();
        assert_eq!(
            got,
            "m,__name__=m value=2.0 2000000\nprom_metric_not_specified value=3.0 5000000\n"
        );
        assert_eq!(lines(vec![]).unwrap(), "");
    }

    #[test]
    fn the_lines_are_held_to_the_body_limit() {
        let request = WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, 1), (2.0, 2)])],
        };
        let one = "m,__name__=m value=1.0 1000000\n".len();
        assert!(to_lines(&request, 2 * one).is_ok());
        assert_eq!(
            to_lines(&request, 2 * one - 1),
            Err(PromWriteError::Body(BodyError::TooLarge))
        );
    }

    #[test]
    fn unwritable_names_refuse_the_request() {
        for labels in [
            &[("__name__", "a\nb")][..],
            &[("__name__", "m"), ("k", "v\\")],
            &[("__name__", "\tm")],
            &[("__name__", "#m")],
            &[("__name__", "")],
            &[("__name__", "m"), ("", "v")],
        ] {
            let got = lines(vec![series(labels, &[(1.0, 1)])]);
            assert!(
                matches!(got, Err(PromWriteError::Unwritable { .. })),
                "{labels:?}: {got:?}"
            );
        }
        let got = lines(vec![series(
            &[("__name__", "m")],
            &[(1.0, i64::MAX / 1000)],
        )]);
        assert!(matches!(got, Err(PromWriteError::TimeOutOfRange(_))));
    }

    /// The tags of a line's key as InfluxDB reads them: split at `,` and
    /// `=` not preceded by a backslash, then `\,`, `\=`, `\ ` unescaped.
    fn influx_tags(key: &[u8]) -> Vec<(String, String)> {
        let split = |text: &[u8], stop: u8| -> Vec<Vec<u8>> {
            let mut parts = vec![Vec::new()];
            for (i, &b) in text.iter().enumerate() {
                if b == stop && (i == 0 || text[i - 1] != b'\\') {
                    parts.push(Vec::new());
                } else if let Some(last) = parts.last_mut() {
                    last.push(b);
                }
            }
            parts
        };
        let unescape = |t: &[u8]| {
            String::from_utf8_lossy(t)
                .replace("\\,", ",")
                .replace("\\=", "=")
                .replace("\\ ", " ")
        };
        split(key, b',')
            .iter()
            .skip(1)
            .map(|kv| {
                let parts = split(kv, b'=');
                (unescape(&parts[0]), unescape(&parts[1..].join(&b'=')))
            })
            .collect()
    }

    proptest::proptest! {
        /// Any body decodes to an answer, never a panic; any labels give
        /// lines `/write` takes as one point each, with the measurement and
        /// tags InfluxDB reads back as the labels, or a refusal.
        #[test]
        fn any_input_gives_faithful_lines_or_a_refusal(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            name in "[a-z ,=\\\\\"#\t\n]{0,6}",
            labels in proptest::collection::vec(("[a-z_ ,=\\\\\"\t\n]{0,4}", "[a-z ,=\\\\\"\n]{0,4}"), 0..4),
            value in proptest::prelude::any::<f64>(),
            ms in proptest::prelude::any::<i64>(),
        ) {
            let _ = decode_lines(&body, 1 << 16);
            // The same bytes as a protobuf message in a valid snappy block.
            if let Ok(packed) = snap::raw::Encoder::new().compress_vec(&body) {
                let _ = decode_lines(&packed, 1 << 16);
            }
            let mut all: Vec<(&str, &str)> = vec![("__name__", name.as_str())];
            all.extend(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let request = WriteRequest { timeseries: vec![series(&all, &[(value, ms)])] };
            if let Ok(out) = to_lines(&request, 1 << 20) {
                let mut escaped = Vec::new();
                escape_measurement(&name, &mut escaped);
                let mut want: Vec<(String, String)> = Vec::new();
                for &(k, v) in all.iter().filter(|(_, v)| !v.is_empty()) {
                    want.retain(|(wk, _)| wk != k);
                    want.push((k.to_string(), v.to_string()));
                }
                want.sort();
                let mut n = 0;
                let mut pos = 0;
                while pos < out.len() {
                    let (line, next) = crate::write::line::next_line(&out, pos);
                    pos = next;
                    match scan(line) {
                        Scanned::Point(p) => {
                            proptest::prop_assert_eq!(p.measurement, &escaped[..]);
                            let key_end = (1..p.text.len())
                                .find(|&i| p.text[i] == b' ' && p.text[i - 1] != b'\\')
                                .unwrap_or(p.text.len());
                            proptest::prop_assert_eq!(influx_tags(&p.text[..key_end]), want.clone());
                        }
                        other => proptest::prop_assert!(false, "{:?}", other),
                    }
                    n += 1;
                }
                proptest::prop_assert_eq!(n, usize::from(value.is_finite()));
            }
        }
    }

    #[test]
    fn placement_follows_the_written_name() {
        assert_eq!(placement_measurement("up"), "up");
        assert_eq!(placement_measurement("a b,c"), "a b,c");
        assert_eq!(placement_measurement(r"a\b"), "ab");
    }
}
