//! Which (bucket, measurement) a Flux query reads: from its text, with a
//! small Flux scanner, or from the JSON `spec` of old Flux clients.
//!
//! The Go proxy finds the bucket as the text after the first `from` and the
//! measurement as the string after the one `._measurement ==`; a comment or
//! a string holding those words, a space before a colon or a second
//! reference mis-routes or refuses the query. Here the text is scanned into
//! Flux tokens first (strings with their escapes and `${}` interpolations,
//! `//` comments, regex literals, any whitespace), so only real code counts:
//! - the bucket is the `bucket:` argument of the first call `from(...)`, a
//!   string literal or a variable assigned one (`b = "db"` ... `bucket: b`);
//! - the measurement is the value every `r._measurement` / `r["_measurement"]`
//!   reference is compared to with `==` (either side, a string or a variable
//!   assigned one). A reference used any other way (`!=`, `=~`,
//!   `contains(value: r._measurement, ...)`) or two different values make
//!   the query span measurements, which no single owner can answer.
//!
//! Everything the Go proxy accepts is accepted (its single-quoted strings
//! too) and routed the same way. Pure: no I/O, never panics on any input.

use std::collections::HashMap;

use serde_json::Value;

/// Where a Flux query reads: the bucket as written (`db` or `db/rp`) and
/// one measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub bucket: String,
    pub measurement: String,
}

/// Why no single (bucket, measurement) was found; the texts are the Go
/// proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    /// No `from(bucket: ...)` with a known bucket.
    NoBucket,
    /// `from(` is never closed, or a string never ends.
    Illegal,
    /// The measurement is compared with something other than `==`.
    NotEqual,
    /// Several measurements are read.
    Multi,
    /// No `_measurement == "..."` filter.
    NoMeasurement,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceError::NoBucket => "can't get bucket",
            SourceError::Illegal => "illegal flux query",
            SourceError::NotEqual => "measurement must use ==",
            SourceError::Multi => "illegal multi measurements",
            SourceError::NoMeasurement => "can't get measurement",
        })
    }
}

impl std::error::Error for SourceError {}

/// A Flux token, as far as routing needs to tell them apart.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A string literal's value; `None` when it interpolates (`${...}`).
    Str(Option<String>),
    /// An operator or punctuation, e.g. `==`, `.`, `(`.
    Punct(&'static str),
    /// A number, duration, date or regex literal.
    Other,
}

impl Tok {
    /// Whether an operand ends here, so that `/` divides and `[` indexes.
    fn ends_operand(&self) -> bool {
        matches!(
            self,
            Tok::Ident(_) | Tok::Str(_) | Tok::Other | Tok::Punct(")" | "]" | "}")
        )
    }
}

/// Operators of two bytes, tried before the single ones.
const PUNCT2: [&str; 9] = ["==", "!=", "=~", "!~", "<=", ">=", "=>", "<-", "|>"];
const PUNCT1: [&str; 20] = [
    "=", "<", ">", "(", ")", "[", "]", "{", "}", ",", ":", ".", "+", "-", "*", "/", "%", "^", "?",
    "|",
];

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// Splits Flux text into tokens; `Err(Illegal)` for a string or regex
/// that never ends.
fn tokenize(text: &str) -> Result<Vec<Tok>, SourceError> {
    let s = text.as_bytes();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' if s.get(i + 1) == Some(&b'/') => {
                while s.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'/' if !toks.last().is_some_and(Tok::ends_operand) => {
                i = skip_regex(s, i + 1)?;
                toks.push(Tok::Other);
            }
            b'"' => {
                let (value, end) = string_literal(s, i + 1, 0)?;
                toks.push(Tok::Str(value));
                i = end;
            }
            b'\'' => {
                // Not Flux, but the Go proxy takes 'db' for a bucket.
                let len = s[i + 1..].iter().position(|&c| c == b'\'');
                let end = len.map(|n| i + 1 + n).ok_or(SourceError::Illegal)?;
                let value = String::from_utf8_lossy(&s[i + 1..end]).into_owned();
                toks.push(Tok::Str(Some(value)));
                i = end + 1;
            }
            b if b.is_ascii_digit() => {
                // Numbers, durations (1h30m) and dates (2021-01-01T00:00:00Z).
                while s.get(i).is_some_and(|&c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'-' | b'+')
                }) {
                    i += 1;
                }
                toks.push(Tok::Other);
            }
            b if is_ident_start(b) => {
                let start = i;
                while s.get(i).copied().is_some_and(is_ident_char) {
                    i += 1;
                }
                toks.push(Tok::Ident(
                    String::from_utf8_lossy(&s[start..i]).into_owned(),
                ));
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or_default();
                match PUNCT2.iter().find(|p| p.as_bytes() == two) {
                    Some(&p) => {
                        toks.push(Tok::Punct(p));
                        i += 2;
                    }
                    None => {
                        let one = s.get(i..i + 1).unwrap_or_default();
                        toks.push(match PUNCT1.iter().find(|p| p.as_bytes() == one) {
                            Some(&p) => Tok::Punct(p),
                            None => Tok::Other,
                        });
                        i += 1;
                    }
                }
            }
        }
    }
    Ok(toks)
}

/// Skips a regex literal whose body starts at `i`; returns the index after
/// its closing `/`.
fn skip_regex(s: &[u8], mut i: usize) -> Result<usize, SourceError> {
    loop {
        match s.get(i) {
            None | Some(b'\n') => return Err(SourceError::Illegal),
            Some(b'\\') => i += 2,
            Some(b'/') => return Ok(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// Deepest nesting of strings inside `${}` inside strings that is scanned
/// (the scanner recurses; a hostile body must not exhaust the stack).
const MAX_NESTING: usize = 32;

/// Reads a string literal whose body starts at `i`, `depth` interpolations
/// deep: its value (`None` when it interpolates) and the index after the
/// closing quote.
fn string_literal(
    s: &[u8],
    mut i: usize,
    depth: usize,
) -> Result<(Option<String>, usize), SourceError> {
    if depth > MAX_NESTING {
        return Err(SourceError::Illegal);
    }
    let mut value = Vec::new();
    let mut interpolated = false;
    loop {
        match s.get(i) {
            None => return Err(SourceError::Illegal),
            Some(b'"') => break,
            Some(b'\\') => {
                let escaped = s.get(i + 1).ok_or(SourceError::Illegal)?;
                i += 2;
                match escaped {
                    b'n' => value.push(b'\n'),
                    b'r' => value.push(b'\r'),
                    b't' => value.push(b'\t'),
                    b'x' => {
                        let hex = s.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                            Some(byte) => {
                                value.push(byte);
                                i += 2;
                            }
                            None => value.push(b'x'),
                        }
                    }
                    &c => value.push(c),
                }
            }
            Some(b'$') if s.get(i + 1) == Some(&b'{') => {
                interpolated = true;
                i = skip_interpolation(s, i + 2, depth)?;
            }
            Some(&c) => {
                value.push(c);
                i += 1;
            }
        }
    }
    let value = (!interpolated).then(|| String::from_utf8_lossy(&value).into_owned());
    Ok((value, i + 1))
}

/// Skips the expression of `${...}` from `i` (after the `{`) of a string
/// `nesting` interpolations deep, strings and nested braces included;
/// returns the index after its `}`.
fn skip_interpolation(s: &[u8], mut i: usize, nesting: usize) -> Result<usize, SourceError> {
    let mut braces = 1usize;
    loop {
        match s.get(i) {
            None => return Err(SourceError::Illegal),
            Some(b'"') => i = string_literal(s, i + 1, nesting + 1)?.1,
            Some(b'{') => {
                braces += 1;
                i += 1;
            }
            Some(b'}') => {
                braces -= 1;
                i += 1;
                if braces == 0 {
                    return Ok(i);
                }
            }
            Some(_) => i += 1,
        }
    }
}

/// Variables assigned a plain string (`name = "value"`), so `bucket: b`
/// and `r._measurement == m` can be resolved.
type Vars<'a> = HashMap<&'a str, &'a str>;

fn string_variables(toks: &[Tok]) -> Vars<'_> {
    let mut vars = HashMap::new();
    for (k, w) in toks.windows(3).enumerate() {
        if let [Tok::Ident(name), Tok::Punct("="), Tok::Str(Some(value))] = w {
            let member = k > 0 && toks.get(k - 1) == Some(&Tok::Punct("."));
            // `b = "x" + y` is not a plain string.
            let continued = matches!(toks.get(k + 3), Some(Tok::Punct(p)) if *p != "," && *p != ")" && *p != "}");
            if !member && !continued {
                vars.insert(name.as_str(), value.as_str());
            }
        }
    }
    vars
}

/// The string a value token stands for: a literal, or a variable assigned one.
fn string_value(tok: Option<&Tok>, vars: &Vars<'_>) -> Option<String> {
    match tok? {
        Tok::Str(value) => value.clone(),
        Tok::Ident(name) => vars.get(name.as_str()).map(|v| v.to_string()),
        _ => None,
    }
}

/// The bucket of the first `from(...)` call.
fn bucket(toks: &[Tok], vars: &Vars<'_>) -> Result<String, SourceError> {
    let call = (0..toks.len()).find(|&k| {
        matches!(toks.get(k), Some(Tok::Ident(name)) if name == "from")
            && toks.get(k + 1) == Some(&Tok::Punct("("))
            && (k == 0 || toks.get(k - 1) != Some(&Tok::Punct(".")))
    });
    let start = call.ok_or(SourceError::NoBucket)? + 2;
    let mut depth = 0usize;
    let mut found = None;
    for k in start..toks.len() {
        match toks.get(k) {
            Some(Tok::Punct("(" | "[" | "{")) => depth += 1,
            Some(Tok::Punct(")")) if depth == 0 => {
                return found.ok_or(SourceError::NoBucket);
            }
            Some(Tok::Punct(")" | "]" | "}")) => depth = depth.saturating_sub(1),
            Some(Tok::Ident(key)) if depth == 0 && key == "bucket" && found.is_none() => {
                let after_key = toks.get(k + 1) == Some(&Tok::Punct(":"));
                let starts_arg = k == start || toks.get(k - 1) == Some(&Tok::Punct(","));
                let ends_arg = matches!(toks.get(k + 3), Some(Tok::Punct("," | ")")));
                if after_key && starts_arg && ends_arg {
                    found = string_value(toks.get(k + 2), vars).filter(|b| !b.is_empty());
                }
            }
            _ => {}
        }
    }
    Err(SourceError::Illegal)
}

/// How one `_measurement` reference is used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Use {
    /// `== "value"` (`None`: compared to something unknown).
    Equals(Option<String>),
    Other,
}

/// The measurement every `_measurement` reference agrees on.
fn measurement(toks: &[Tok], vars: &Vars<'_>) -> Result<String, SourceError> {
    let mut uses: Vec<Use> = Vec::new();
    for k in 1..toks.len() {
        let object = match toks.get(k - 1) {
            Some(t) if t.ends_operand() => t,
            _ => continue,
        };
        let end = match (toks.get(k), toks.get(k + 1), toks.get(k + 2)) {
            (Some(Tok::Punct(".")), Some(Tok::Ident(name)), _) if name == "_measurement" => k + 1,
            (Some(Tok::Punct("[")), Some(Tok::Str(Some(name))), Some(Tok::Punct("]")))
                if name == "_measurement" =>
            {
                k + 2
            }
            _ => continue,
        };
        let used = if toks.get(end + 1) == Some(&Tok::Punct("==")) {
            Use::Equals(string_value(toks.get(end + 2), vars))
        } else if matches!(object, Tok::Ident(_))
            && k >= 2
            && toks.get(k - 2) == Some(&Tok::Punct("=="))
        {
            Use::Equals(
                k.checked_sub(3)
                    .and_then(|j| string_value(toks.get(j), vars)),
            )
        } else {
            Use::Other
        };
        if !uses.contains(&used) {
            uses.push(used);
        }
        // Two different uses already make it several measurements.
        if uses.len() > 1 {
            return Err(SourceError::Multi);
        }
    }
    match uses.as_slice() {
        [] => Err(SourceError::NoMeasurement),
        [Use::Equals(Some(m))] if !m.is_empty() => Ok(m.clone()),
        [Use::Equals(_)] => Err(SourceError::NoMeasurement),
        [Use::Other] => Err(SourceError::NotEqual),
        _ => Err(SourceError::Multi),
    }
}

/// The (bucket, measurement) of a Flux query text. Bucket errors come
/// first, as in the Go proxy.
pub fn from_flux(text: &str) -> Result<Source, SourceError> {
    let toks = tokenize(text)?;
    let vars = string_variables(&toks);
    let bucket = bucket(&toks, &vars)?;
    let measurement = measurement(&toks, &vars)?;
    Ok(Source {
        bucket,
        measurement,
    })
}

/// The (bucket, measurement) of a Flux `spec` (`{"operations":[...]}`): the
/// `bucket` of the first `influxDBFrom` operation, and the value the
/// `_measurement` property is compared to in the `filter` operations
/// (anywhere in their function bodies, either side of the operator).
pub fn from_spec(spec: &Value) -> Result<Source, SourceError> {
    let ops = spec
        .get("operations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let bucket = ops
        .iter()
        .filter(|op| op.get("kind").and_then(Value::as_str) == Some("influxDBFrom"))
        .find_map(|op| op.pointer("/spec/bucket").and_then(Value::as_str))
        .filter(|b| !b.is_empty())
        .ok_or(SourceError::NoBucket)?;
    let mut uses = Vec::new();
    for op in ops {
        if op.get("kind").and_then(Value::as_str) == Some("filter") {
            if let Some(spec) = op.get("spec") {
                spec_uses(spec, &mut uses, 0);
            }
        }
    }
    let measurement = match uses.as_slice() {
        [] => Err(SourceError::NoMeasurement),
        [Use::Equals(Some(m))] if !m.is_empty() => Ok(m.clone()),
        [Use::Equals(_)] => Err(SourceError::NoMeasurement),
        [Use::Other] => Err(SourceError::NotEqual),
        _ => Err(SourceError::Multi),
    }?;
    Ok(Source {
        bucket: bucket.to_string(),
        measurement,
    })
}

/// Deepest JSON nesting walked in a spec (serde_json itself stops at 128).
const MAX_SPEC_DEPTH: usize = 128;

/// Collects how `_measurement` is compared in a filter spec's expressions.
fn spec_uses(v: &Value, uses: &mut Vec<Use>, depth: usize) {
    // Past two different uses the answer is known (several measurements).
    if depth > MAX_SPEC_DEPTH || uses.len() > 1 {
        return;
    }
    match v {
        Value::Object(map) => {
            let names = |side: &str| map.get(side).is_some_and(is_measurement_property);
            let value_of = |side: &str| {
                map.get(side)
                    .and_then(|s| s.get("value"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let compared = match (
                map.get("operator").and_then(Value::as_str),
                names("left"),
                names("right"),
            ) {
                (Some("=="), true, _) => Some(Use::Equals(value_of("right"))),
                (Some("=="), _, true) => Some(Use::Equals(value_of("left"))),
                (Some(_), true, _) | (Some(_), _, true) => Some(Use::Other),
                _ => None,
            };
            match compared {
                Some(used) => {
                    if !uses.contains(&used) {
                        uses.push(used);
                    }
                }
                None => {
                    for child in map.values() {
                        spec_uses(child, uses, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                spec_uses(child, uses, depth + 1);
            }
        }
        _ => {}
    }
}

/// A member expression on `_measurement`: `{"property":"_measurement"}` or
/// `{"property":{"value":"_measurement"}}` (`r["_measurement"]`).
fn is_measurement_property(side: &Value) -> bool {
    match side.get("property") {
        Some(Value::String(p)) => p == "_measurement",
        Some(p) => p.get("value").and_then(Value::as_str) == Some("_measurement"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> (String, String) {
        match from_flux(text) {
            Ok(s) => (s.bucket, s.measurement),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn err(text: &str) -> SourceError {
        match from_flux(text) {
            Ok(s) => panic!("{text:?} gave {s:?}"),
            Err(e) => e,
        }
    }

    fn pair(b: &str, m: &str) -> (String, String) {
        (b.into(), m.into())
    }

    #[test]
    fn what_the_go_proxy_accepts_routes_the_same() {
        let cases = [
            (
                r#"from(bucket:"db") |> range(start:-1h) |> filter(fn:(r) => r._measurement == "cpu")"#,
                "db",
                "cpu",
            ),
            (
                r#"from(bucket: "telegraf/autogen") |> filter(fn: (r) => r["_measurement"] == "mem")"#,
                "telegraf/autogen",
                "mem",
            ),
            (
                r#"from(bucket: "db", host: "http://x:8086") |> filter(fn: (r) => r._measurement=="a b")"#,
                "db",
                "a b",
            ),
            (
                "from(bucket:'db') |> filter(fn:(r) => r._measurement == \"cpu\")",
                "db",
                "cpu",
            ),
            (
                r#"from(bucket:"db")|>filter(fn:(r)=>r._measurement=="c\"q\\u")"#,
                "db",
                "c\"q\\u",
            ),
        ];
        for (text, b, m) in cases {
            assert_eq!(ok(text), pair(b, m), "{text}");
        }
    }

    #[test]
    fn whitespace_comments_and_strings_do_not_confuse_the_scanner() {
        let text = "// data from the \"from(bucket: x)\" of r._measurement == \"no\"\n\
                    from(\n\tbucket\n :\n \"db/rp\" ,\n)\n  |> range(start: 2021-01-01T00:00:00Z, stop: -1h30m)\n\
                    |> filter(fn: (r) =>\n r . _measurement\n==\n\"cpu\" and r.host =~ /from\\/x/ and r.tag == \"._measurement\")\n\
                    |> group(columns: [\"_measurement\"])\n|> keep(columns: [\"_time\", \"_measurement\"])";
        assert_eq!(ok(text), pair("db/rp", "cpu"));
    }

    #[test]
    fn reversed_comparisons_variables_and_repeats_are_resolved() {
        assert_eq!(
            ok(r#"from(bucket:"db") |> filter(fn:(r) => "cpu" == r._measurement)"#),
            pair("db", "cpu")
        );
        let text = "b = \"db\"\nm = \"cpu\"\nfrom(bucket: b) |> filter(fn: (r) => r[\"_measurement\"] == m)";
        assert_eq!(ok(text), pair("db", "cpu"));
        let text = r#"from(bucket:"db") |> filter(fn:(r) => r._measurement == "cpu") |> filter(fn:(r) => r._measurement == "cpu" and r._field == "v")"#;
        assert_eq!(ok(text), pair("db", "cpu"));
        let text = r#"from(bucket:"db") |> filter(fn:(r) => r._measurement == "x\tz\x41")"#;
        assert_eq!(ok(text), pair("db", "x\tzA"));
    }

    #[test]
    fn every_refusal_has_the_go_text() {
        let cases = [
            ("", SourceError::NoBucket),
            ("buckets() |> yield()", SourceError::NoBucket),
            (
                r#"from(bucketID: "0123") |> filter(fn:(r) => r._measurement == "cpu")"#,
                SourceError::NoBucket,
            ),
            (
                r#"from(bucket: v.bucket) |> filter(fn:(r) => r._measurement == "cpu")"#,
                SourceError::NoBucket,
            ),
            (
                r#"from(bucket: "a${x}") |> filter(fn:(r) => r._measurement == "cpu")"#,
                SourceError::NoBucket,
            ),
            (r#"from(bucket: "")"#, SourceError::NoBucket),
            (r#"from(bucket: "db""#, SourceError::Illegal),
            (
                r#"from(bucket: "db" |> range(start: -1h"#,
                SourceError::Illegal,
            ),
            (r#"from(bucket: "db) |> x"#, SourceError::Illegal),
            (r#"from(bucket: "db")"#, SourceError::NoMeasurement),
            (
                r#"from(bucket: "db") |> filter(fn:(r) => r._measurement == x)"#,
                SourceError::NoMeasurement,
            ),
            (
                r#"from(bucket: "db") |> filter(fn:(r) => r._measurement != "cpu")"#,
                SourceError::NotEqual,
            ),
            (
                r#"from(bucket: "db") |> filter(fn:(r) => r._measurement =~ /cpu/)"#,
                SourceError::NotEqual,
            ),
            (
                r#"from(bucket: "db") |> filter(fn:(r) => contains(value: r._measurement, set: ["a"]))"#,
                SourceError::NotEqual,
            ),
            (
                r#"from(bucket: "db") |> filter(fn:(r) => r._measurement == "a" or r._measurement == "b")"#,
                SourceError::Multi,
            ),
            (
                r#"from(bucket: "db") |> filter(fn:(r) => r._measurement == "a" or r._measurement =~ /b/)"#,
                SourceError::Multi,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "{text}");
        }
        assert_eq!(SourceError::NoBucket.to_string(), "can't get bucket");
        assert_eq!(SourceError::Illegal.to_string(), "illegal flux query");
        assert_eq!(SourceError::NotEqual.to_string(), "measurement must use ==");
        assert_eq!(SourceError::Multi.to_string(), "illegal multi measurements");
        assert_eq!(
            SourceError::NoMeasurement.to_string(),
            "can't get measurement"
        );
    }

    #[test]
    fn no_input_panics_the_scanner() {
        let pieces = [
            "from",
            "(",
            ")",
            "\"",
            "\\",
            "$",
            "{",
            "}",
            "/",
            "[",
            "]",
            "._measurement",
            "==",
            "'",
            "\n",
            "é",
            "1",
        ];
        let mut seed = 7u64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let _ = from_flux(&text);
        }
    }

    #[test]
    fn hostile_bodies_are_scanned_in_bounded_time_and_stack() {
        // Strings nested in interpolations, far deeper than any query.
        let deep = format!("{}{}", "\"${".repeat(100_000), "}\"".repeat(100_000));
        assert_eq!(
            from_flux(&format!("from(bucket: {deep})")),
            Err(SourceError::Illegal)
        );
        // 200,000 references to one variable, 200,000 variables, 200,000 values.
        let mut text = String::from("from(bucket: \"db\") |> filter(fn: (r) => ");
        for i in 0..200_000 {
            text.push_str(&format!("v{i} = \"x\" "));
        }
        text.push_str("m = \"cpu\" ");
        text.push_str(&"r._measurement == m and ".repeat(200_000));
        text.push_str("true)");
        let started = std::time::Instant::now();
        assert_eq!(
            from_flux(&text).map(|s| s.measurement),
            Ok("cpu".to_string())
        );
        let distinct: String = (0..200_000)
            .map(|i| format!("r._measurement == \"m{i}\" or "))
            .collect();
        assert_eq!(
            from_flux(&format!(
                "from(bucket: \"db\") |> filter(fn: (r) => {distinct} true)"
            )),
            Err(SourceError::Multi)
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    fn filter_op(body: Value) -> Value {
        json!({"kind": "filter", "id": "filter1", "spec": {"fn": {"type": "FunctionExpression", "block": {"body": body}}}})
    }

    fn eq(left: Value, right: Value) -> Value {
        json!({"type": "BinaryExpression", "operator": "==", "left": left, "right": right})
    }

    #[test]
    fn specs_give_their_bucket_and_measurement() {
        let member = json!({"type": "MemberExpression", "object": {"name": "r"}, "property": "_measurement"});
        let cpu = json!({"type": "StringLiteral", "value": "cpu"});
        let from = json!({"kind": "influxDBFrom", "id": "from0", "spec": {"bucket": "db/rp"}});
        let spec = json!({"operations": [from, {"kind": "range", "spec": {"start": "-1h"}}, filter_op(eq(member.clone(), cpu.clone()))]});
        let want = Source {
            bucket: "db/rp".into(),
            measurement: "cpu".into(),
        };
        assert_eq!(from_spec(&spec), Ok(want.clone()));
        // Nested under `and`, reversed, or `r["_measurement"]`.
        let field = eq(json!({"property": "_field"}), json!({"value": "v"}));
        let nested = json!({"type": "LogicalExpression", "operator": "and", "left": eq(cpu.clone(), member.clone()), "right": field});
        let spec = json!({"operations": [from, filter_op(nested)]});
        assert_eq!(from_spec(&spec), Ok(want.clone()));
        let indexed = json!({"property": {"type": "StringLiteral", "value": "_measurement"}});
        let spec = json!({"operations": [from, filter_op(eq(indexed, cpu.clone()))]});
        assert_eq!(from_spec(&spec), Ok(want));

        let no_from = json!({"operations": [filter_op(eq(member.clone(), cpu.clone()))]});
        assert_eq!(from_spec(&no_from), Err(SourceError::NoBucket));
        assert_eq!(from_spec(&json!({})), Err(SourceError::NoBucket));
        assert_eq!(
            from_spec(&json!({"operations": [from]})),
            Err(SourceError::NoMeasurement)
        );
        let ne = json!({"operator": "!=", "left": member, "right": cpu});
        assert_eq!(
            from_spec(&json!({"operations": [from, filter_op(ne)]})),
            Err(SourceError::NotEqual)
        );
        let two = json!({"operator": "or", "left": eq(member.clone(), cpu), "right": eq(member, json!({"value": "mem"}))});
        assert_eq!(
            from_spec(&json!({"operations": [from, filter_op(two)]})),
            Err(SourceError::Multi)
        );
    }
}
