//! The pure core of a copy: reading one chunk of a chunked `/query` answer
//! and turning its rows back into line protocol. No I/O.
//!
//! A chunk is one JSON document (influxd writes one per line) parsed into
//! typed, borrowed structs ([`Chunk`]): names and string values borrow
//! from the chunk's bytes unless JSON escapes forced a copy, numbers stay
//! the integer or float token influxd wrote.
//!
//! A `SELECT *` answer gives tags and fields as columns of one table with
//! no types, so the [`Schema`] (from `SHOW TAG KEYS` and `SHOW FIELD KEYS`)
//! turns its columns into a [`Layout`]: which column is the time, a tag, a
//! field of which type. Rules InfluxDB 1.x imposes and this module follows:
//!
//! - A field listed with several types (it had different types in
//!   different shards) is answered by `SELECT *` in the first of float >
//!   integer > string > boolean (> unsigned) that it has; integer values
//!   of a float field come cast to float, values of the other types are
//!   left out of the answer ([`Schema::hidden_types`] lists them, for a
//!   pass of their own with `"field"::type`).
//! - A tag key that is also a field key: `SELECT *` keeps the name for the
//!   field and names the tag's column `key_1`. (Should `key_1` itself be
//!   another tag or field key, influxd's renaming is ambiguous and the
//!   copy may mix them up.)
//!
//! A row becomes `measurement,tags fields time\n` ([`LineWriter::push_row`]):
//! tags and fields in column order (alphabetical, as influxd sorts them),
//! nulls skipped, a row without any field skipped, integers with `i`,
//! unsigned with `u`, floats in the shortest text that parses back to the
//! same `f64` (an integral float stays a float: `v=1` is a float in line
//! protocol), strings quoted with `"` and `\` escaped, time in ns.
//! Escaping: `,` and space in the measurement; `,`, `=` and space in tag
//! keys, tag values and field keys. A name whose escaped form InfluxDB
//! would read differently (a `\` right before an escaped character or at
//! the end) cannot come from a line-protocol write in the first place.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// One JSON document of a chunked `/query` answer.
#[derive(Debug, Deserialize)]
pub struct Chunk<'a> {
    #[serde(borrow, default)]
    pub results: Vec<StatementResult<'a>>,
    /// A request-level error (`{"error":"..."}`).
    #[serde(default)]
    pub error: Option<String>,
}

/// The result of one statement in a chunk.
#[derive(Debug, Deserialize)]
pub struct StatementResult<'a> {
    #[serde(borrow, default)]
    pub series: Vec<Series<'a>>,
    #[serde(default)]
    pub error: Option<String>,
}

/// One series of a chunk (`tags` of `GROUP BY` answers is not asked for).
#[derive(Debug, Deserialize)]
pub struct Series<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub columns: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub values: Vec<Vec<Cell<'a>>>,
}

impl Chunk<'_> {
    /// The first error the chunk carries, request- or statement-level.
    pub fn error(&self) -> Option<&str> {
        self.error
            .as_deref()
            .or_else(|| self.results.iter().find_map(|r| r.error.as_deref()))
    }

    /// Every series of every statement.
    pub fn series(&self) -> impl Iterator<Item = &Series<'_>> {
        self.results.iter().flat_map(|r| r.series.iter())
    }
}

/// One value of a row, as the JSON token influxd wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer token above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
}

impl Cell<'_> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Cell::Int(i) => u64::try_from(i).ok(),
            Cell::UInt(u) => Some(u),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON scalar")
            }
            fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
                Ok(Cell::Null)
            }
            fn visit_none<E>(self) -> Result<Cell<'de>, E> {
                Ok(Cell::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
                Ok(Cell::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
                Ok(Cell::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
                Ok(match i64::try_from(v) {
                    Ok(i) => Cell::Int(i),
                    Err(_) => Cell::UInt(v),
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
                Ok(Cell::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
                Ok(Cell::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
                Ok(Cell::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
                Ok(Cell::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Cell<'de>, A::Error> {
                Err(de::Error::custom("a list where a value was expected"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Cell<'de>, A::Error> {
                Err(de::Error::custom("an object where a value was expected"))
            }
        }
        d.deserialize_any(CellVisitor)
    }
}

/// A field's type as `SHOW FIELD KEYS` names it, in InfluxDB's query
/// precedence (the first one a field has is the one `SELECT *` answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldType {
    Float,
    Integer,
    String,
    Boolean,
    Unsigned,
}

impl FieldType {
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            "unsigned" => FieldType::Unsigned,
            _ => return None,
        })
    }

    /// The InfluxQL cast naming it (`"v"::string`).
    pub fn cast(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
            FieldType::Unsigned => "unsigned",
        }
    }
}

/// The tag keys and field types of one measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub tags: BTreeSet<String>,
    /// Every type a field has in some shard, in precedence order.
    pub fields: BTreeMap<String, BTreeSet<FieldType>>,
}

/// What one column of an answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Time,
    /// A tag, with its key escaped for line protocol.
    Tag(Vec<u8>),
    /// A field, with its key escaped and the type it is written as.
    Field(Vec<u8>, FieldType),
}

/// The columns of an answer, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub columns: Vec<Column>,
}

impl Schema {
    /// The type `SELECT *` answers a field in.
    pub fn answered_type(&self, field: &str) -> Option<FieldType> {
        self.fields.get(field)?.iter().next().copied()
    }

    /// The (field, type) pairs `SELECT *` leaves out: every type after the
    /// answered one, except integer under float (cast into the answer).
    pub fn hidden_types(&self) -> Vec<(String, FieldType)> {
        let mut out = Vec::new();
        for (name, types) in &self.fields {
            let mut it = types.iter();
            let Some(&first) = it.next() else { continue };
            for &t in it {
                if !(first == FieldType::Float && t == FieldType::Integer) {
                    out.push((name.clone(), t));
                }
            }
        }
        out
    }

    /// The layout of a `SELECT *` answer's `columns`; `Err` names a column
    /// the schema does not know (written after the schema was read).
    pub fn select_all_layout(&self, columns: &[Cow<'_, str>]) -> Result<Layout, String> {
        let mut out = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            let name: &str = name;
            let column = if i == 0 && name == "time" {
                Column::Time
            } else if let Some(t) = self.answered_type(name) {
                Column::Field(escape_key(name), t)
            } else if self.tags.contains(name) {
                Column::Tag(escape_key(name))
            } else if let Some(tag) = self.renamed_tag(name) {
                Column::Tag(escape_key(tag))
            } else {
                return Err(name.to_string());
            };
            out.push(column);
        }
        Ok(Layout { columns: out })
    }

    /// The layout of a `SELECT "field"::type,*::tag` answer: the time, the
    /// field written as `t`, then tags (renamed as in `SELECT *`).
    pub fn one_field_layout(
        &self,
        columns: &[Cow<'_, str>],
        field: &str,
        t: FieldType,
    ) -> Result<Layout, String> {
        let mut out = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            let name: &str = name;
            let column = match i {
                0 if name == "time" => Column::Time,
                1 if name == field => Column::Field(escape_key(field), t),
                _ if i > 1 && self.tags.contains(name) => Column::Tag(escape_key(name)),
                _ if i > 1 => match self.renamed_tag(name) {
                    Some(tag) => Column::Tag(escape_key(tag)),
                    None => return Err(name.to_string()),
                },
                _ => return Err(name.to_string()),
            };
            out.push(column);
        }
        Ok(Layout { columns: out })
    }

    /// `key_N` of a tag whose key is also a field key.
    fn renamed_tag<'n>(&self, column: &'n str) -> Option<&'n str> {
        let (key, n) = column.rsplit_once('_')?;
        let numbered = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        (numbered && self.tags.contains(key) && self.fields.contains_key(key)).then_some(key)
    }
}

/// Why a row could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError(pub String);

/// Builds line protocol from rows, reusing its buffers.
#[derive(Debug, Default)]
pub struct LineWriter {
    /// The escaped measurement.
    measurement: Vec<u8>,
    fields: Vec<u8>,
}

impl LineWriter {
    pub fn new(measurement: &str) -> LineWriter {
        let mut escaped = Vec::with_capacity(measurement.len() + 4);
        escape_into(&mut escaped, measurement, b", ");
        LineWriter {
            measurement: escaped,
            fields: Vec::with_capacity(256),
        }
    }

    /// Appends the line of `row` to `out`; `Ok(None)` when the row has no
    /// field value (nothing appended), else its time.
    pub fn push_row(
        &mut self,
        layout: &Layout,
        row: &[Cell<'_>],
        out: &mut Vec<u8>,
    ) -> Result<Option<i64>, RowError> {
        if row.len() != layout.columns.len() {
            return Err(RowError(format!(
                "a row of {} values under {} columns",
                row.len(),
                layout.columns.len()
            )));
        }
        let start = out.len();
        out.extend_from_slice(&self.measurement);
        self.fields.clear();
        let mut time = None;
        for (column, cell) in layout.columns.iter().zip(row) {
            match column {
                Column::Time => match cell {
                    Cell::Int(t) => time = Some(*t),
                    other => return Err(unexpected("time", other)),
                },
                Column::Tag(key) => match cell {
                    Cell::Null => {}
                    Cell::Str(v) if v.is_empty() => {}
                    Cell::Str(v) => {
                        out.push(b',');
                        out.extend_from_slice(key);
                        out.push(b'=');
                        escape_into(out, v, b",= ");
                    }
                    other => return Err(unexpected("a tag", other)),
                },
                Column::Field(key, t) => {
                    if matches!(cell, Cell::Null) {
                        continue;
                    }
                    if !self.fields.is_empty() {
                        self.fields.push(b',');
                    }
                    self.fields.extend_from_slice(key);
                    self.fields.push(b'=');
                    push_value(&mut self.fields, *t, cell)?;
                }
            }
        }
        let Some(time) = time else {
            out.truncate(start);
            return Err(RowError("a row without its time".into()));
        };
        if self.fields.is_empty() {
            out.truncate(start);
            return Ok(None);
        }
        out.push(b' ');
        out.extend_from_slice(&self.fields);
        out.push(b' ');
        crate::write::line::push_i64(out, time);
        out.push(b'\n');
        Ok(Some(time))
    }
}

fn unexpected(what: &str, cell: &Cell<'_>) -> RowError {
    RowError(format!("unexpected value {cell:?} for {what}"))
}

/// One field value of type `t` in line protocol.
fn push_value(out: &mut Vec<u8>, t: FieldType, cell: &Cell<'_>) -> Result<(), RowError> {
    match (t, cell) {
        (FieldType::Float, Cell::Float(f)) => push_f64(out, *f),
        // influxd writes an integral float as an integer token; without
        // a suffix it is a float again, digit for digit.
        (FieldType::Float, Cell::Int(i)) => crate::write::line::push_i64(out, *i),
        (FieldType::Float, Cell::UInt(u)) => {
            let _ = write!(out, "{u}");
        }
        (FieldType::Integer, Cell::Int(i)) => {
            crate::write::line::push_i64(out, *i);
            out.push(b'i');
        }
        (FieldType::Unsigned, Cell::Int(i)) if *i >= 0 => {
            crate::write::line::push_i64(out, *i);
            out.push(b'u');
        }
        (FieldType::Unsigned, Cell::UInt(u)) => {
            let _ = write!(out, "{u}u");
        }
        (FieldType::String, Cell::Str(s)) => {
            out.push(b'"');
            escape_into(out, s, b"\"\\");
            out.push(b'"');
        }
        (FieldType::Boolean, Cell::Bool(b)) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" });
        }
        (t, other) => return Err(unexpected(&format!("a {} field", t.cast()), other)),
    }
    Ok(())
}

/// The shortest text that parses back to `f` (Rust's float formatting
/// round-trips), in exponent form when the plain one would be long.
fn push_f64(out: &mut Vec<u8>, f: f64) {
    let a = f.abs();
    let _ = if a != 0.0 && !(1e-5..1e16).contains(&a) {
        write!(out, "{f:e}")
    } else {
        write!(out, "{f}")
    };
}

/// A tag key or field key escaped for line protocol.
pub fn escape_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    escape_into(&mut out, key, b",= ");
    out
}

/// `s` with a `\` before each byte of `special`.
fn escape_into(out: &mut Vec<u8>, s: &str, special: &[u8]) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|b| special.contains(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(tags: &[&str], fields: &[(&str, &[FieldType])]) -> Schema {
        Schema {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            fields: fields
                .iter()
                .map(|(k, ts)| (k.to_string(), ts.iter().copied().collect()))
                .collect(),
        }
    }

    fn lines(schema: &Schema, mm: &str, chunk: &str) -> Result<String, RowError> {
        let chunk: Chunk = serde_json::from_str(chunk).unwrap();
        let series = chunk.series().next().unwrap();
        let layout = schema.select_all_layout(&series.columns).unwrap();
        let mut w = LineWriter::new(mm);
        let mut out = Vec::new();
        for row in &series.values {
            w.push_row(&layout, row, &mut out)?;
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn every_field_type_is_written_with_its_own_syntax() {
        use FieldType::*;
        let s = schema(
            &["host"],
            &[
                ("b", &[Boolean]),
                ("f", &[Float]),
                ("i", &[Integer]),
                ("s", &[String]),
                ("u", &[Unsigned]),
            ],
        );
        let chunk = r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","b","f","host","i","s","u"],"values":[
            [1,true,1,"h1",-9223372036854775808,"x",18446744073709551615],
            [2,false,1.5,null,9223372036854775807,"",0],
            [3,null,1e+300,"h2",null,null,null],
            [4,null,1e-300,"h2",null,null,null],
            [5,null,-0,"h2",null,null,null],
            [6,null,0.1,"h2",null,null,null],
            [7,null,123456789012345680000,"h2",null,null,null]]}]}]}"#;
        assert_eq!(
            lines(&s, "m", chunk).unwrap(),
            "m,host=h1 b=true,f=1,i=-9223372036854775808i,s=\"x\",u=18446744073709551615u 1\n\
             m b=false,f=1.5,i=9223372036854775807i,s=\"\",u=0u 2\n\
             m,host=h2 f=1e300 3\n\
             m,host=h2 f=1e-300 4\n\
             m,host=h2 f=-0 5\n\
             m,host=h2 f=0.1 6\n\
             m,host=h2 f=1.2345678901234568e20 7\n"
        );
    }

    #[test]
    fn floats_read_back_as_the_same_value() {
        let mut out = Vec::new();
        for f in [
            0.1,
            -2.5e-7,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            9007199254740993.0,
            1e16,
            123.0,
        ] {
            out.clear();
            push_f64(&mut out, f);
            let text = std::str::from_utf8(&out).unwrap();
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                f.to_bits(),
                "{text}"
            );
            assert!(text.len() <= 24, "{text}");
        }
    }

    #[test]
    fn names_and_strings_are_escaped_as_line_protocol_wants() {
        use FieldType::*;
        let s = schema(&["t k", "a=b"], &[("f,g", &[String]), ("v", &[Integer])]);
        let chunk = r#"{"results":[{"series":[{"name":"a b","columns":["time","a=b","f,g","t k","v"],"values":[
            [1,"x,y=z w","q\"x\\y",null,1],
            [2,null,"line\nbreak","ü∂",2]]}]}]}"#;
        assert_eq!(
            lines(&s, "a b,c=d\"e\\f", chunk).unwrap(),
            "a\\ b\\,c=d\"e\\f,a\\=b=x\\,y\\=z\\ w f\\,g=\"q\\\"x\\\\y\",v=1i 1\n\
             a\\ b\\,c=d\"e\\f,t\\ k=ü∂ f\\,g=\"line\nbreak\",v=2i 2\n"
        );
    }

    #[test]
    fn rows_without_any_field_are_skipped() {
        let s = schema(&["t"], &[("v", &[FieldType::Float])]);
        let chunk = r#"{"results":[{"series":[{"name":"m","columns":["time","t","v"],"values":[[1,"a",null],[2,"a",2]]}]}]}"#;
        assert_eq!(lines(&s, "m", chunk).unwrap(), "m,t=a v=2 2\n");
    }

    #[test]
    fn a_tag_sharing_a_fields_key_is_read_from_its_renamed_column() {
        let s = schema(&["x", "t"], &[("x", &[FieldType::Float])]);
        let chunk = r#"{"results":[{"series":[{"name":"m","columns":["time","t","x","x_1"],"values":[[1,"b",1,"a"]]}]}]}"#;
        assert_eq!(lines(&s, "m", chunk).unwrap(), "m,t=b,x=a x=1 1\n");
        let unknown = s.select_all_layout(&["time".into(), "y".into()]);
        assert_eq!(unknown, Err("y".to_string()));
    }

    #[test]
    fn a_field_of_several_types_is_answered_in_the_first_and_the_rest_copied_apart() {
        use FieldType::*;
        let s = schema(
            &[],
            &[
                ("a", &[Float, Integer]),
                ("b", &[Integer, String, Boolean]),
                ("c", &[Float, Integer, String]),
                ("d", &[Boolean]),
            ],
        );
        assert_eq!(s.answered_type("a"), Some(Float));
        assert_eq!(s.answered_type("b"), Some(Integer));
        assert_eq!(
            s.hidden_types(),
            vec![
                ("b".to_string(), String),
                ("b".to_string(), Boolean),
                ("c".to_string(), String)
            ]
        );
        let layout = s
            .one_field_layout(&["time".into(), "b".into()], "b", String)
            .unwrap();
        assert_eq!(
            layout.columns,
            vec![Column::Time, Column::Field(b"b".to_vec(), String)]
        );
    }

    #[test]
    fn a_value_of_another_type_than_its_column_is_an_error() {
        let s = schema(&[], &[("v", &[FieldType::Integer])]);
        let chunk =
            r#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[[1,"x"]]}]}]}"#;
        assert!(lines(&s, "m", chunk).is_err());
        let chunk =
            r#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[[1,1,2]]}]}]}"#;
        assert!(lines(&s, "m", chunk).is_err());
    }

    #[test]
    fn chunk_errors_are_found() {
        let c: Chunk = serde_json::from_str(r#"{"error":"bad"}"#).unwrap();
        assert_eq!(c.error(), Some("bad"));
        let c: Chunk =
            serde_json::from_str(r#"{"results":[{"statement_id":0,"error":"no"}]}"#).unwrap();
        assert_eq!(c.error(), Some("no"));
    }
}
