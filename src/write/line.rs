//! Line protocol scanning: split a body into lines, check each line's shape,
//! find its measurement and normalise its timestamp to nanoseconds.
//!
//! This is not a full parse: nothing is allocated and no value is decoded
//! except the timestamp. The checks mirror InfluxDB 1.x's parser closely
//! enough that a line it would refuse is refused here with the same message
//! (`missing fields`, `missing tag value`, `invalid number`, ...), so the
//! client gets InfluxDB's answer for the whole body at once instead of a 204
//! followed by a silent drop at the backend. The field section is walked in
//! InfluxDB's order (each value checked as it is reached), so the message is
//! the first problem influxd meets; `tests/bad_input.rs` compares a corpus
//! of bad lines with a real influxd 1.6.7. Known differences: trailing
//! blanks are trimmed first (see below), and a field repeated with another
//! type in one point is left to the backend, which refuses it after parsing.
//!
//! Invariants:
//! - [`next_line`] ends a line at `\n` unless the newline sits inside a quoted
//!   string field; a backslash always skips the byte after it.
//! - [`scan`] is given a line without its `\n`; it trims leading blanks
//!   (space, tab, NUL) as InfluxDB does and trailing ASCII whitespace
//!   (including `\r`) as the Go proxy does.
//! - The measurement used for placement is unescaped as the Go proxy does: a
//!   backslash is dropped and the next byte taken literally, whatever it is.

use std::fmt;

/// Why InfluxDB would refuse a line. `Display` gives InfluxDB's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    MissingMeasurement,
    MissingFields,
    MissingTagKey,
    MissingTagValue,
    InvalidTagFormat,
    DuplicateTags,
    MissingFieldKey,
    MissingFieldValue,
    InvalidFieldFormat,
    UnbalancedQuotes,
    InvalidNumber,
    InvalidFloat,
    InvalidBoolean,
    IntegerOutOfRange(String),
    BadTimestamp,
    TimestampOutOfRange(String),
    /// A timestamp that is only a `-`.
    TimestampSyntax,
    TimeOutsideRange,
    /// Measurement and tags longer than InfluxDB's 65,535 bytes.
    MaxKeyLength(usize),
    /// Quotes and backslashes whose meaning InfluxDB's line splitter would
    /// change once the proxy adds the timestamp (ours: refused rather than
    /// stored differently).
    AmbiguousQuotes,
    PointInvalid,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::MissingMeasurement => f.write_str("missing measurement"),
            LineError::MissingFields => f.write_str("missing fields"),
            LineError::MissingTagKey => f.write_str("missing tag key"),
            LineError::MissingTagValue => f.write_str("missing tag value"),
            LineError::InvalidTagFormat => f.write_str("invalid tag format"),
            LineError::DuplicateTags => f.write_str("duplicate tags"),
            LineError::MissingFieldKey => f.write_str("missing field key"),
            LineError::MissingFieldValue => f.write_str("missing field value"),
            LineError::InvalidFieldFormat => f.write_str("invalid field format"),
            LineError::UnbalancedQuotes => f.write_str("unbalanced quotes"),
            LineError::InvalidNumber => f.write_str("invalid number"),
            LineError::InvalidFloat => f.write_str("invalid float"),
            LineError::InvalidBoolean => f.write_str("invalid boolean"),
            LineError::IntegerOutOfRange(v) => write!(
                f,
                "unable to parse integer {v}: strconv.ParseInt: parsing \"{v}\": value out of range"
            ),
            LineError::BadTimestamp => f.write_str("bad timestamp"),
            LineError::TimestampOutOfRange(v) => {
                write!(f, "strconv.ParseInt: parsing \"{v}\": value out of range")
            }
            LineError::TimestampSyntax => {
                f.write_str("strconv.ParseInt: parsing \"-\": invalid syntax")
            }
            LineError::TimeOutsideRange => {
                write!(f, "time outside range {MIN_NANOS} - {MAX_NANOS}")
            }
            LineError::MaxKeyLength(n) => write!(f, "max key length exceeded: {n} > {MAX_KEY_LEN}"),
            LineError::AmbiguousQuotes => f.write_str(
                "ambiguous quotes: the line would split differently once forwarded; escape the quote or end the line differently",
            ),
            LineError::PointInvalid => f.write_str("point is invalid"),
        }
    }
}

/// Earliest and latest timestamps InfluxDB 1.x stores, in nanoseconds.
pub const MIN_NANOS: i64 = i64::MIN + 2;
pub const MAX_NANOS: i64 = i64::MAX - 1;

/// Longest series key (measurement and tags, as written) InfluxDB accepts.
pub const MAX_KEY_LEN: usize = 65_535;

/// Timestamp precision of a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
}

impl Precision {
    /// Parses the `precision` parameter of `/write` (`""` is nanoseconds).
    /// `us` is not accepted, as in the Go proxy's v1 endpoint.
    pub fn parse_v1(value: &str) -> Option<Precision> {
        match value {
            "" | "n" | "ns" => Some(Precision::Nanosecond),
            "u" => Some(Precision::Microsecond),
            "ms" => Some(Precision::Millisecond),
            "s" => Some(Precision::Second),
            "m" => Some(Precision::Minute),
            "h" => Some(Precision::Hour),
            _ => None,
        }
    }

    /// The short name InfluxDB gives the unit (`ns`, `u`, `ms`, `s`, `m`, `h`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Nanosecond => "ns",
            Precision::Microsecond => "u",
            Precision::Millisecond => "ms",
            Precision::Second => "s",
            Precision::Minute => "m",
            Precision::Hour => "h",
        }
    }

    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
        }
    }
}

/// Returns the line starting at `start` (without its `\n`) and where the next
/// one starts. A newline inside a quoted string field does not end the line.
pub fn next_line(body: &[u8], start: usize) -> (&[u8], usize) {
    let (line, next, _) = next_line_quoted(body, start);
    (line, next)
}

/// [`next_line`], also saying whether the line holds a double quote (only
/// such a line can be split differently by the backend, see [`reads_back`]).
#[inline]
pub fn next_line_quoted(body: &[u8], start: usize) -> (&[u8], usize, bool) {
    let rest = &body[start..];
    // Fast path: up to the newline without meeting a double quote, no
    // newline can be quoted. One pass over the bytes.
    match rest.iter().position(|&b| b == b'\n' || b == b'"') {
        Some(n) if rest[n] == b'\n' => return (&rest[..n], start + n + 1, false),
        None => return (rest, body.len(), false),
        Some(_) => {}
    }
    let end = quoted_line_end(rest);
    let next = if end < rest.len() { end + 1 } else { end };
    (&rest[..end], start + next, true)
}

/// The end of the first line of `buf` when quotes are involved. Quotes only
/// count in the field section (after the first space), and only once more
/// `=` than `,` have been seen there, so a quote in a tag or a key is literal.
fn quoted_line_end(buf: &[u8]) -> usize {
    let mut i = 0;
    let mut in_fields = false;
    let mut quoted = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while i < buf.len() {
        let b = buf[i];
        if b == b'\\' && i + 2 < buf.len() {
            i += 2;
            continue;
        }
        if b == b' ' {
            in_fields = true;
        }
        if in_fields && !quoted && b == b'=' {
            equals += 1;
        } else if in_fields && !quoted && b == b',' {
            commas += 1;
        } else if in_fields && b == b'"' && equals > commas {
            quoted = !quoted;
        } else if b == b'\n' && !quoted {
            return i;
        }
        i += 1;
    }
    buf.len()
}

/// A line that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The trimmed line, timestamp included.
    pub text: &'a [u8],
    /// The measurement as written (escapes kept).
    pub measurement: &'a [u8],
    /// Length of `text` without the timestamp and the blanks before it.
    pub body_len: usize,
    /// The timestamp's digits (in the request's precision), if the line has
    /// one. Checked to be an i64; its value is only computed when a
    /// precision other than ns needs scaling.
    pub timestamp: Option<&'a [u8]>,
    /// The blanks trimmed before `text` when `text` holds a newline (inside
    /// quotes), forwarded with it: they decide how InfluxDB splits such a
    /// line (a leading space opens its "field section" early), so dropping
    /// them could make the backend read two lines where the client sent one.
    /// Empty otherwise.
    pub lead: &'a [u8],
}

impl Line<'_> {
    /// The timestamp's value in the request's precision.
    pub fn timestamp_value(&self) -> Option<i64> {
        self.timestamp.and_then(|t| parse_i64(t).ok())
    }

    /// Appends the line to `out` with its timestamp in nanoseconds, stamping
    /// `now` (ns) when it has none, followed by `\n`. With nanosecond
    /// precision the original digits are copied untouched.
    pub fn write_normalized(
        &self,
        precision: Precision,
        now: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), LineError> {
        // Every check comes before the first byte is written: on an error
        // `out` is left as it was.
        match self.timestamp {
            Some(ts) if precision == Precision::Nanosecond => {
                if !ns_in_range(ts) {
                    return Err(LineError::TimeOutsideRange);
                }
                out.extend_from_slice(self.lead);
                out.extend_from_slice(self.text);
            }
            Some(ts) => {
                let ns = parse_i64(ts)
                    .ok()
                    .and_then(|v| v.checked_mul(precision.nanos()))
                    .filter(|ns| (MIN_NANOS..=MAX_NANOS).contains(ns))
                    .ok_or(LineError::TimeOutsideRange)?;
                out.extend_from_slice(self.lead);
                out.extend_from_slice(&self.text[..self.body_len]);
                out.push(b' ');
                push_i64(out, ns);
            }
            None => {
                out.extend_from_slice(self.lead);
                out.extend_from_slice(self.text);
                out.push(b' ');
                push_i64(out, now);
            }
        }
        out.push(b'\n');
        // With a quote in it, the line as sent (timestamp added) must still
        // be one line for InfluxDB's splitter, whose quote and backslash
        // rules depend on where the buffer ends.
        Ok(())
    }
}

/// Whether `written` (a line and its `\n`) is read back as exactly one line
/// by InfluxDB's splitter. A line with a quote can fail this once the proxy
/// appends a timestamp or batches it: the splitter's quote and backslash
/// rules depend on where the buffer ends.
pub fn one_line(written: &[u8]) -> bool {
    let (line, next) = next_line(written, 0);
    next == written.len() && line.len() + 1 == written.len()
}

/// Whether `written` (`line` normalized, and its `\n`) reads back as
/// `line` for InfluxDB: one line for its splitter, and the same
/// measurement, tags and fields for its parser. A line with a quote can
/// fail either once the proxy appends a timestamp: the splitter's quote
/// rules depend on where the buffer ends, and text after a closing quote
/// that ends in a backslash (`f="b"\`, which influxd takes) escapes the
/// space before the appended timestamp.
pub fn reads_back(line: &Line, written: &[u8]) -> bool {
    if !one_line(written) {
        return false;
    }
    match scan(&written[..written.len() - 1]) {
        Scanned::Point(again) => again.text[..again.body_len] == line.text[..line.body_len],
        _ => false,
    }
}

/// Decimal digits of `v` appended to `out`.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// What a raw line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned<'a> {
    /// Empty, blank or a `#` comment.
    Skip,
    Point(Line<'a>),
    /// Refused; `text` is the line as InfluxDB quotes it in its error.
    Invalid {
        text: &'a [u8],
        error: LineError,
    },
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == 0
}

/// Checks one line (without its `\n`).
// Inlined into the batcher's loop so the scanned line is built in place
// (a copy of the returned struct cost a store-forwarding stall per line).
#[inline(always)]
pub fn scan(raw: &[u8]) -> Scanned<'_> {
    let start = raw.iter().position(|&b| !is_blank(b)).unwrap_or(raw.len());
    let mut end = raw.len();
    while end > start && raw[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    let text = &raw[start..end];
    if text.is_empty() || text[0] == b'#' {
        return Scanned::Skip;
    }
    match check(text) {
        // Only a line that has blanks in front and holds a (quoted) newline
        // needs them kept; most lines have none, so no extra pass for them.
        Ok(line) if start > 0 && text.contains(&b'\n') => Scanned::Point(Line {
            lead: &raw[..start],
            ..line
        }),
        Ok(line) => Scanned::Point(line),
        Err(error) => Scanned::Invalid { text, error },
    }
}

/// A byte class: `STOP[b]` says whether `b` ends the token being scanned.
type Stops = [bool; 256];

const fn stops(set: &[u8]) -> Stops {
    let mut table = [false; 256];
    let mut i = 0;
    while i < set.len() {
        table[set[i] as usize] = true;
        i += 1;
    }
    table
}

/// Ends of a measurement, or of a field value that is not a string.
static COMMA_SPACE: Stops = stops(b", ");
/// Ends of a tag key or value, or of a field key.
static EQ_COMMA_SPACE: Stops = stops(b"=, ");
/// What the field section's walk stops at outside a string.
static FIELD_SPECIAL: Stops = stops(b"\\\"=, ");

/// Position of the first stop byte at or after `i` that does not follow a
/// backslash, or `len`. This is InfluxDB's rule for the measurement and the
/// tags: only the byte before counts, so `a\\ b` (two backslashes) still
/// escapes the space. `i` must be at least 1.
fn find_unescaped(buf: &[u8], mut i: usize, stop: &Stops) -> usize {
    while i < buf.len() {
        if stop[buf[i] as usize] && buf[i - 1] != b'\\' {
            return i;
        }
        i += 1;
    }
    buf.len()
}

// Inlined for the same reason as `scan`.
#[inline(always)]
fn check(text: &[u8]) -> Result<Line<'_>, LineError> {
    if text[0] == b',' || text[0] == b' ' {
        return Err(LineError::MissingMeasurement);
    }
    // The first byte is the measurement's, whatever it is.
    let m_end = find_unescaped(text, 1, &COMMA_SPACE);
    if m_end >= text.len() {
        return Err(LineError::MissingFields);
    }
    let measurement = &text[..m_end];
    let mut i = m_end;
    if text[i] == b',' {
        i = check_tags(text, i + 1)?;
    }
    // `i` is at the space ending the key; blanks may follow.
    if i > MAX_KEY_LEN {
        return Err(LineError::MaxKeyLength(i));
    }
    while i < text.len() && is_blank(text[i]) {
        i += 1;
    }
    if i >= text.len() {
        // An empty field section (only a NUL can get here: the line is
        // trimmed of whitespace).
        return Err(LineError::InvalidFieldFormat);
    }
    let fields_end = check_fields(text, i)?;
    let mut j = fields_end;
    while j < text.len() && is_blank(text[j]) {
        j += 1;
    }
    if j >= text.len() {
        return Ok(Line {
            text,
            measurement,
            body_len: fields_end,
            timestamp: None,
            lead: &[],
        });
    }
    // The timestamp runs to the next space; anything after it makes the
    // point invalid, but only once the timestamp itself passed.
    let ts_end = text[j..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(text.len(), |n| j + n);
    let ts_text = &text[j..ts_end];
    check_timestamp(ts_text)?;
    if ts_end < text.len() {
        // InfluxDB checks the time's range before what follows it (at
        // nanosecond precision here: the precision is not known yet).
        if !ns_in_range(ts_text) {
            return Err(LineError::TimeOutsideRange);
        }
        return Err(LineError::PointInvalid);
    }
    Ok(Line {
        text,
        measurement,
        body_len: fields_end,
        timestamp: Some(ts_text),
        lead: &[],
    })
}

/// Checks `k=v[,k=v]*` from `i` up to the space ending the key; returns
/// the position of that space. The order of the checks, and so the error
/// reported, is InfluxDB's (`scanTagsKey`, `scanTagsValue`, then duplicates).
fn check_tags(text: &[u8], mut i: usize) -> Result<usize, LineError> {
    let mut keys: [&[u8]; 16] = [&[]; 16];
    let mut count = 0usize;
    let mut sorted = true;
    let mut overflow: Vec<&[u8]> = Vec::new();
    loop {
        if matches!(text.get(i), None | Some(b' ' | b',' | b'=')) {
            return Err(LineError::MissingTagKey);
        }
        let key_end = find_unescaped(text, i + 1, &EQ_COMMA_SPACE);
        if key_end >= text.len() || text[key_end] != b'=' {
            return Err(LineError::MissingTagValue);
        }
        let key = &text[i..key_end];
        let value_start = key_end + 1;
        // The value's first byte may be `=`; a `,` or space there is no value.
        if matches!(text.get(value_start), None | Some(b' ' | b',')) {
            return Err(LineError::MissingTagValue);
        }
        let value_end = find_unescaped(text, value_start + 1, &EQ_COMMA_SPACE);
        if value_end >= text.len() {
            return Err(LineError::MissingFields);
        }
        if text[value_end] == b'=' {
            return Err(LineError::InvalidTagFormat);
        }
        if count > 0 {
            let prev = if count <= keys.len() {
                keys[count - 1]
            } else {
                overflow[overflow.len() - 1]
            };
            if key <= prev {
                sorted = false;
            }
        }
        if count < keys.len() {
            keys[count] = key;
        } else {
            overflow.push(key);
        }
        count += 1;
        if text[value_end] == b' ' {
            if !sorted {
                let mut all: Vec<&[u8]> = keys[..count.min(keys.len())].to_vec();
                all.extend(overflow);
                all.sort_unstable();
                if all.windows(2).any(|w| w[0] == w[1]) {
                    return Err(LineError::DuplicateTags);
                }
            }
            return Ok(value_end);
        }
        i = value_end + 1;
    }
}

/// Checks the field set starting at `i`; returns where it ends (a space or
/// the end of the line).
///
/// The walk is InfluxDB's own (`scanFields`): a key runs to the next
/// unquoted `=` whatever it holds, each value is checked as it is reached
/// (so `m a,b=v` is an invalid boolean, not a bad field format), and the
/// count of keys and commas is checked at the end.
fn check_fields(text: &[u8], mut i: usize) -> Result<usize, LineError> {
    let (mut equals, mut commas) = (0usize, 0usize);
    let mut quoted = false;
    while i < text.len() {
        if quoted {
            // Inside a string only a backslash or the closing quote counts.
            match text[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                None => break,
                Some(n) => i += n,
            }
            if text[i] == b'\\' {
                i += if i + 1 < text.len() { 2 } else { 1 };
            } else {
                quoted = false;
                i += 1;
            }
            continue;
        }
        let b = text[i];
        if !FIELD_SPECIAL[b as usize] {
            i += 1;
            continue;
        }
        match b {
            b'\\' => i += if i + 1 < text.len() { 2 } else { 1 },
            // A quote opens a string only where a value may be.
            b'"' => {
                quoted = equals > commas;
                i += 1;
            }
            b'=' => {
                equals += 1;
                // The fields start after a space, so `i >= 2` here.
                let before = text[i - 1];
                if (before == b' ' || before == b',') && text[i - 2] != b'\\' {
                    return Err(LineError::MissingFieldKey);
                }
                let v = i + 1;
                i = match text.get(v) {
                    None | Some(b',') | Some(b' ') => return Err(LineError::MissingFieldValue),
                    Some(b'"') => v,
                    Some(b'0'..=b'9' | b'.' | b'-' | b'N' | b'n') => number_end(text, v)?,
                    Some(_) => boolean_end(text, v)?,
                };
            }
            b',' => {
                commas += 1;
                i += 1;
            }
            // A space ends the field section.
            _ => break,
        }
    }
    if quoted {
        return Err(LineError::UnbalancedQuotes);
    }
    if equals == 0 || commas + 1 != equals {
        return Err(LineError::InvalidFieldFormat);
    }
    Ok(i)
}

/// End of the boolean value starting at `v` (a `,`, a space or the end of
/// the line; escapes mean nothing here, as in InfluxDB).
fn boolean_end(text: &[u8], v: usize) -> Result<usize, LineError> {
    if !matches!(text[v], b't' | b'f' | b'T' | b'F') {
        return Err(LineError::InvalidBoolean);
    }
    let end = text[v..]
        .iter()
        .position(|&b| b == b',' || b == b' ')
        .map_or(text.len(), |n| v + n);
    match &text[v..end] {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false" | b"False"
        | b"FALSE" => Ok(end),
        _ => Err(LineError::InvalidBoolean),
    }
}

/// End of the numeric value starting at `v`, checked as InfluxDB's
/// `scanNumber` does: a float, or an integer with `i` in i64's range
/// (`u` is refused: InfluxDB 1.6 has no unsigned fields).
fn number_end(text: &[u8], v: usize) -> Result<usize, LineError> {
    let mut i = v;
    if text[i] == b'-' {
        i += 1;
        if i == text.len() {
            return Err(LineError::InvalidNumber);
        }
    }
    let (mut integer, mut unsigned, mut decimal, mut scientific) = (false, false, false, false);
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_digit() {
            i += 1;
            continue;
        }
        if b == b',' || b == b' ' {
            break;
        }
        if i > v && !(integer || unsigned) && (b == b'i' || b == b'u') {
            integer = b == b'i';
            unsigned = b == b'u';
            i += 1;
            continue;
        }
        if b == b'.' {
            if decimal {
                return Err(LineError::InvalidNumber);
            }
            decimal = true;
        }
        if i > v && (b == b'e' || b == b'E') {
            scientific = true;
            i += 1;
            continue;
        }
        if (b == b'+' || b == b'-') && matches!(text[i - 1], b'e' | b'E') {
            i += 1;
            continue;
        }
        // Digits were taken above: only the decimal point is left.
        if b != b'.' {
            return Err(LineError::InvalidNumber);
        }
        i += 1;
    }
    if (integer || unsigned) && (decimal || scientific) {
        return Err(LineError::InvalidNumber);
    }
    let value = &text[v..i];
    let digits =
        value.len() - usize::from(integer) - usize::from(decimal) - usize::from(text[v] == b'-');
    if digits == 0 || unsigned {
        return Err(LineError::InvalidNumber);
    }
    if integer {
        // `9i10` has its `i` inside.
        if value.last() != Some(&b'i') {
            return Err(LineError::InvalidNumber);
        }
        let digits = &value[..value.len() - 1];
        let (negative, magnitude) = split_sign(digits);
        let limit: &[u8] = if negative {
            b"9223372036854775808"
        } else {
            b"9223372036854775807"
        };
        if magnitude_above(magnitude, limit) {
            return Err(LineError::IntegerOutOfRange(
                String::from_utf8_lossy(digits).into_owned(),
            ));
        }
        return Ok(i);
    }
    // InfluxDB parses a float only when it could be malformed or out of
    // range (an exponent, or 25 bytes and more); the bytes are ASCII here.
    if scientific || value.len() >= 25 {
        let parsed = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<f64>().ok());
        if !parsed.is_some_and(f64::is_finite) {
            return Err(LineError::InvalidFloat);
        }
    }
    Ok(i)
}

/// Checks that `ts` is a decimal i64, without computing it: the digits,
/// then the magnitude against i64's limits as text.
fn check_timestamp(ts: &[u8]) -> Result<(), LineError> {
    let (negative, digits) = split_sign(ts);
    if !digits.iter().fold(true, |ok, b| ok & b.is_ascii_digit()) {
        return Err(LineError::BadTimestamp);
    }
    if digits.is_empty() {
        // A lone `-` passes InfluxDB's scan and fails its ParseInt.
        return Err(LineError::TimestampSyntax);
    }
    let limit: &[u8] = if negative {
        b"9223372036854775808"
    } else {
        b"9223372036854775807"
    };
    if magnitude_above(digits, limit) {
        return Err(LineError::TimestampOutOfRange(
            String::from_utf8_lossy(ts).into_owned(),
        ));
    }
    Ok(())
}

/// Whether checked timestamp digits lie within InfluxDB's nanosecond range
/// (`MIN_NANOS..=MAX_NANOS`, i.e. +-9223372036854775806).
fn ns_in_range(ts: &[u8]) -> bool {
    !magnitude_above(split_sign(ts).1, b"9223372036854775806")
}

fn split_sign(text: &[u8]) -> (bool, &[u8]) {
    match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    }
}

/// Whether the decimal `digits` (leading zeros allowed) exceed `limit`
/// (no leading zeros).
fn magnitude_above(digits: &[u8], limit: &[u8]) -> bool {
    let zeros = digits.iter().take_while(|&&b| b == b'0').count();
    let significant = &digits[zeros..];
    match significant.len().cmp(&limit.len()) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => significant > limit,
    }
}

/// Parses an optionally negative decimal integer. `Err(true)` on overflow,
/// `Err(false)` when it is not a number.
fn parse_i64(text: &[u8]) -> Result<i64, bool> {
    let (negative, digits) = split_sign(text);
    if digits.is_empty() {
        return Err(false);
    }
    // Leading zeros are allowed (as Go's ParseInt does) and cannot overflow.
    let significant = &digits[digits.iter().take_while(|&&b| b == b'0').count()..];
    if significant.len() > 19 {
        // Too long: an overflow if it is a number at all.
        return Err(digits.iter().all(u8::is_ascii_digit));
    }
    let magnitude = digits_value(significant).ok_or(false)?;
    // 19 digits fit in a u64; the sign decides the limit.
    let limit = if negative {
        i64::MIN.unsigned_abs()
    } else {
        i64::MAX as u64
    };
    if magnitude > limit {
        return Err(true);
    }
    Ok(if negative {
        (magnitude as i64).wrapping_neg()
    } else {
        magnitude as i64
    })
}

/// The value of up to 19 ASCII digits, `None` if a byte is not a digit.
/// Three independent 8-digit chains instead of one 19-step chain: the
/// common nanosecond timestamp has 19 digits and sits on the hot path.
fn digits_value(d: &[u8]) -> Option<u64> {
    let chunk = |part: &[u8]| -> (u64, bool) {
        part.iter().fold((0u64, true), |(v, ok), &b| {
            let digit = b.wrapping_sub(b'0');
            (v * 10 + u64::from(digit), ok & (digit < 10))
        })
    };
    let (high, low) = d.split_at(d.len().saturating_sub(8));
    let (top, mid) = high.split_at(high.len().saturating_sub(8));
    let ((t, t_ok), (m, m_ok), (l, l_ok)) = (chunk(top), chunk(mid), chunk(low));
    (t_ok & m_ok & l_ok).then(|| t * 10_000_000_000_000_000 + m * 100_000_000 + l)
}

/// The measurement with the Go proxy's unescaping: every backslash is dropped
/// and the byte after it kept. Borrowed when there is nothing to unescape.
pub fn unescape_measurement(m: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !m.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(m);
    }
    let mut out = Vec::with_capacity(m.len());
    let mut i = 0;
    while i < m.len() {
        if m[i] == b'\\' {
            i += 1;
            if i >= m.len() {
                break;
            }
        }
        out.push(m[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str) -> Vec<String> {
        let b = body.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let (line, next) = next_line(b, i);
            out.push(String::from_utf8_lossy(line).into_owned());
            i = next;
        }
        out
    }

    fn err(line: &str) -> String {
        match scan(line.as_bytes()) {
            Scanned::Invalid { error, .. } => error.to_string(),
            other => panic!("{line:?} was accepted: {other:?}"),
        }
    }

    fn ok(line: &str) -> Line<'_> {
        match scan(line.as_bytes()) {
            Scanned::Point(l) => l,
            other => panic!("{line:?} was refused: {other:?}"),
        }
    }

    #[test]
    fn newline_inside_quoted_string_field_stays_in_its_line() {
        assert_eq!(
            lines("a v=\"x\ny\" 1\nb v=2\n"),
            vec!["a v=\"x\ny\" 1", "b v=2"]
        );
        // A quote in the measurement or a tag does not open a string.
        assert_eq!(lines("a\"b v=1\nc v=2"), vec!["a\"b v=1", "c v=2"]);
        assert_eq!(lines("a v=1\n\nb v=2"), vec!["a v=1", "", "b v=2"]);
    }

    #[test]
    fn refusals_use_influxdb_wording() {
        // Each pair was checked against influxd 1.6.7.
        let cases = [
            ("cpu", "missing fields"),
            (",a=b v=1", "missing measurement"),
            ("cpu,a v=1", "missing tag value"),
            ("cpu,a= v=1", "missing tag value"),
            ("cpu,=a v=1", "missing tag key"),
            ("cpu, v=1", "missing tag key"),
            ("cpu,a=b=c v=1", "invalid tag format"),
            ("cpu,a=1,a=2 v=1", "duplicate tags"),
            ("cpu v", "invalid field format"),
            ("cpu =1", "missing field key"),
            ("cpu v=1,=2", "missing field key"),
            ("cpu v=", "missing field value"),
            ("cpu v=,w=1", "missing field value"),
            ("cpu v=1,", "invalid field format"),
            ("cpu v=1,,w=2", "invalid field format"),
            ("cpu v=1 abc", "bad timestamp"),
            ("cpu v=1 1.5", "bad timestamp"),
            ("cpu v=1 0x5", "bad timestamp"),
            ("cpu v=1 1 2", "point is invalid"),
            ("cpu v=1x", "invalid number"),
            ("cpu v=1.2.3", "invalid number"),
            ("cpu v=-", "invalid number"),
            ("cpu v=--1", "invalid number"),
            ("cpu v=1.5i", "invalid number"),
            ("cpu v=1u", "invalid number"),
            ("cpu v=1\t5", "invalid number"),
            ("cpu v=1e", "invalid float"),
            ("cpu v=\"abc", "unbalanced quotes"),
            ("cpu v=tru", "invalid boolean"),
            ("cpu v=abc", "invalid boolean"),
            ("cpu v=+5", "invalid boolean"),
            ("cpu v=NaN", "invalid number"),
            ("cpu v=nope", "invalid number"),
            ("cpu v=-abc", "invalid number"),
            ("cpu v=.", "invalid number"),
            // Each value is read as it is reached, its key running to the `=`.
            ("m a,b=v", "invalid boolean"),
            ("m 1,t=1=v", "invalid number"),
            ("m ,=1", "missing field key"),
            ("m a=1ee5", "invalid float"),
            ("m a=.e5", "invalid float"),
            ("m a=1e400", "invalid float"),
            ("m v=\"a\"\",w=1", "unbalanced quotes"),
            ("m a=1 -", "strconv.ParseInt: parsing \"-\": invalid syntax"),
            ("m a=1 x 2", "bad timestamp"),
            // In the key only the byte before decides what is escaped.
            ("m,a=b\\\\ v=1", "invalid tag format"),
            ("m\\\\ v=1", "missing fields"),
            ("m,a", "missing tag value"),
            ("m,a=b,c=", "missing tag value"),
        ];
        for (line, want) in cases {
            assert_eq!(err(line), want, "line {line:?}");
        }
        assert!(err("cpu v=99999999999999999999i").contains("value out of range"));
        assert!(err("cpu v=9223372036854775808i").contains("value out of range"));
        ok("cpu v=9223372036854775807i");
        ok("cpu v=-9223372036854775808i");
        assert!(err("cpu v=-9223372036854775809i").contains("value out of range"));
        let long = format!("{} v=1", "m".repeat(70_000));
        assert_eq!(err(&long), "max key length exceeded: 70000 > 65535");
        assert!(err("cpu v=1 99999999999999999999").contains("value out of range"));
        assert!(err("cpu v=1 9223372036854775808").contains("value out of range"));
        assert_eq!(
            ok("m v=1 -9223372036854775808").timestamp_value(),
            Some(i64::MIN)
        );
        assert_eq!(
            ok("m v=1 9223372036854775807").timestamp_value(),
            Some(i64::MAX)
        );
        assert_eq!(
            ok("m v=1 0009223372036854775807").timestamp_value(),
            Some(i64::MAX)
        );
    }

    #[test]
    fn accepted_lines_match_influxdb() {
        for line in [
            "cpu v=1",
            "cpu  v=1",
            "cpu v=1  123",
            " cpu v=1",
            "cpu v=1 -5",
            "cpu v=1e5",
            "cpu v=.5",
            "cpu v=T,w=FALSE,x=True",
            "cpu\\ x v=1",
            "c\\,pu v=1",
            "\"cpu v=1",
            "cpu v=\"a\\\"b\"",
            "cpu,b=1,a=2 v=1",
            "cpu v=1\r",
            "m a=\"abc\"x",
            "m a=1e-400",
            "m,a==b v=1",
            "m \t=1",
            "m,\\\\=a=b v=1",
            "cpu,host=a\\ b,x=y\\,z v=\"a b, c=d\",n=5i 1",
        ] {
            ok(line);
        }
        assert_eq!(scan(b"# comment"), Scanned::Skip);
        assert_eq!(scan(b"  \t"), Scanned::Skip);
    }

    #[test]
    fn measurement_and_timestamp_are_found() {
        let l = ok("cpu\\ load,host=a v=1 1500");
        assert_eq!(l.measurement, b"cpu\\ load");
        assert_eq!(l.timestamp_value(), Some(1500));
        assert_eq!(&l.text[..l.body_len], b"cpu\\ load,host=a v=1");
        assert_eq!(ok("m v=1").timestamp, None);
        assert_eq!(unescape_measurement(b"cpu\\ load").as_ref(), b"cpu load");
        assert_eq!(unescape_measurement(b"a\\,b\\\\c\\d").as_ref(), b"a,b\\cd");
        assert_eq!(unescape_measurement(b"\"m\\ x\"").as_ref(), b"\"m x\"");
    }

    #[test]
    fn timestamps_become_nanoseconds() {
        let norm = |line: &str, p: Precision| {
            let mut out = Vec::new();
            ok(line).write_normalized(p, 42, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(norm("m v=1 7", Precision::Nanosecond), "m v=1 7\n");
        assert_eq!(norm("m v=1 7", Precision::Microsecond), "m v=1 7000\n");
        assert_eq!(norm("m v=1 7", Precision::Millisecond), "m v=1 7000000\n");
        assert_eq!(norm("m v=1 7", Precision::Second), "m v=1 7000000000\n");
        assert_eq!(norm("m v=1 2", Precision::Minute), "m v=1 120000000000\n");
        assert_eq!(
            norm("m v=4  439888", Precision::Hour),
            "m v=4 1583596800000000000\n"
        );
        assert_eq!(norm("m v=1 -3", Precision::Second), "m v=1 -3000000000\n");
        assert_eq!(norm("m v=1", Precision::Second), "m v=1 42\n");
        let outside = |line: &str, p: Precision| {
            let mut out = Vec::new();
            ok(line)
                .write_normalized(p, 0, &mut out)
                .unwrap_err()
                .to_string()
        };
        let want = "time outside range -9223372036854775806 - 9223372036854775806";
        assert_eq!(
            outside("m v=1 9223372036854775807", Precision::Second),
            want
        );
        assert_eq!(
            outside("m v=1 9223372036854775807", Precision::Nanosecond),
            want
        );
        assert_eq!(
            outside("m v=1 -9223372036854775807", Precision::Nanosecond),
            want
        );
        assert_eq!(
            norm("m v=1 9223372036854775806", Precision::Nanosecond),
            "m v=1 9223372036854775806\n"
        );
    }

    #[test]
    fn integers_parse_like_go_parse_int() {
        for v in [
            0i64,
            7,
            -7,
            1_700_000_000_000_000_000,
            i64::MAX,
            i64::MIN,
            999_999_999_999_999_999,
        ] {
            assert_eq!(parse_i64(v.to_string().as_bytes()), Ok(v), "{v}");
        }
        assert_eq!(parse_i64(b"0000000000000000000000042"), Ok(42));
        assert_eq!(parse_i64(b"-0"), Ok(0));
        assert_eq!(parse_i64(b"9223372036854775808"), Err(true));
        assert_eq!(parse_i64(b"-9223372036854775809"), Err(true));
        assert_eq!(parse_i64(b"99999999999999999999"), Err(true));
        assert_eq!(parse_i64(b"12a4"), Err(false));
        assert_eq!(parse_i64(b"1234567890123456789x"), Err(false));
        assert_eq!(parse_i64(b"-"), Err(false));
        assert_eq!(parse_i64(b""), Err(false));
        assert_eq!(parse_i64(b"+5"), Err(false));
    }

    #[test]
    fn push_i64_formats_extremes() {
        for v in [0, 7, -1, i64::MAX, i64::MIN, 1_600_000_000_000_000_000] {
            let mut out = Vec::new();
            push_i64(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }
}
