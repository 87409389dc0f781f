//! The config file's formats: JSON, YAML and TOML, chosen by the file's
//! extension as the Go proxy's viper chooses them, each read into one
//! `serde_json::Value`, so that every key's type check, alias rule, default
//! and error message in [`super`] is shared by the three formats.
//!
//! Invariants of the value handed on, whatever the format:
//! - a key appears once: a key given twice in one mapping is refused with
//!   its name and line (serde_json alone would keep the last one silently);
//! - numbers are JSON numbers: integers stay integers (`1`), floats floats
//!   (`1.0`); NaN and infinities are refused with their key;
//! - YAML: `~`/`null` is JSON `null`, anchors and aliases are resolved, a
//!   merge key (`<<: *base`) adds the keys of `base` the mapping lacks, a
//!   key that is not a string (`1: x`) is used as its text;
//! - TOML has no null; a TOML datetime is refused with its key (no config
//!   key takes one).
//!
//! Syntax errors keep the parser's line and column.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A format the config file may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Toml,
}

impl Format {
    /// The format of the file at `path`, by extension (case-insensitive):
    /// `.json`, `.yaml`/`.yml`, `.toml`. A file without an extension is
    /// JSON (the Go proxy's viper refuses it; `proxy.json` has always been
    /// JSON here). Any other extension is refused with its name, as viper
    /// refuses it (`Unsupported Config Type`), rather than read as JSON and
    /// answered with a JSON syntax error about a file that is not JSON.
    pub fn of(path: &Path) -> Result<Format, String> {
        let Some(ext) = path.extension() else {
            return Ok(Format::Json);
        };
        let ext = ext.to_string_lossy();
        match ext.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "yaml" | "yml" => Ok(Format::Yaml),
            "toml" => Ok(Format::Toml),
            _ => Err(format!(
                "unsupported config type \"{ext}\": name the file .json, .yaml, .yml or .toml"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
        }
    }
}

/// Why a document could not become a value.
#[derive(Debug, PartialEq)]
pub enum FormatError {
    /// Not a well-formed document (the parser's message, with the line and
    /// column), or a key given twice.
    Syntax(String),
    /// A well-formed value no key can take (a TOML datetime, a NaN);
    /// `key` is its path (`circles[0].name`).
    Value { key: String, message: String },
}

/// Reads `text` written in `format` into a JSON value.
pub fn parse(text: &str, format: Format) -> Result<Value, FormatError> {
    match format {
        Format::Json => parse_json(text),
        Format::Yaml => parse_yaml(text),
        Format::Toml => parse_toml(text),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn float(f: f64, path: &str) -> Result<Value, FormatError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| FormatError::Value {
            key: path.to_string(),
            message: format!("{f} is not a number any key takes"),
        })
}

// ---------------------------------------------------------------------------
// JSON

fn parse_json(text: &str) -> Result<Value, FormatError> {
    serde_json::from_str::<Strict>(text)
        .map(|s| s.0)
        .map_err(|e| FormatError::Syntax(e.to_string()))
}

/// A JSON value read with every key of an object at most once.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a number")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`: a key may be given once"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------
// YAML

fn parse_yaml(text: &str) -> Result<Value, FormatError> {
    use yaml_rust2::YamlLoader;
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        FormatError::Syntax(format!(
            "YAML: {} at line {} column {}",
            e.info(),
            e.marker().line(),
            e.marker().col() + 1
        ))
    })?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [doc] => yaml_value(doc, ""),
        _ => Err(FormatError::Syntax(format!(
            "YAML: {} documents in one file, a config is one",
            docs.len()
        ))),
    }
}

fn yaml_value(y: &yaml_rust2::Yaml, path: &str) -> Result<Value, FormatError> {
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(_) => match y.as_f64() {
            Some(f) => float(f, path)?,
            None => {
                return Err(FormatError::Value {
                    key: path.to_string(),
                    message: "not a number".into(),
                })
            }
        },
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| yaml_value(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(hash) => {
            let mut out = Map::new();
            let mut merged = Vec::new();
            for (k, v) in hash {
                let key = yaml_key(k, path)?;
                if key == "<<" {
                    merged.push(v);
                    continue;
                }
                let value = yaml_value(v, &child(path, &key))?;
                out.insert(key, value);
            }
            // Keys written in the mapping win over merged ones; of several
            // merged mappings (`<<: [*a, *b]`) the first wins.
            for v in merged {
                let sources: Vec<&Yaml> = match v {
                    Yaml::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for source in sources {
                    let Value::Object(extra) = yaml_value(source, path)? else {
                        return Err(FormatError::Value {
                            key: child(path, "<<"),
                            message: "a merge key takes a mapping or a list of mappings".into(),
                        });
                    };
                    for (k, v) in extra {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Value::Object(out)
        }
        // The loader resolves aliases; an unknown one (or a tag it cannot
        // read, `!!int x`) is left as these.
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(FormatError::Value {
                key: path.to_string(),
                message: "a value YAML cannot read (an unknown alias or a bad tag)".into(),
            })
        }
    })
}

fn yaml_key(k: &yaml_rust2::Yaml, path: &str) -> Result<String, FormatError> {
    use yaml_rust2::Yaml;
    match k {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        Yaml::Null => Ok("null".into()),
        _ => Err(FormatError::Value {
            key: path.to_string(),
            message: "a mapping key must be a plain value".into(),
        }),
    }
}

// ---------------------------------------------------------------------------
// TOML

fn parse_toml(text: &str) -> Result<Value, FormatError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FormatError::Syntax(toml_error(text, &e)))?;
    toml_table(&table, "")
}

/// toml's error on one line, with the line and column of its span, and the
/// key a `duplicate key` names (toml's own message draws a caret under it
/// over several lines instead).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else {
        return format!("TOML: {message}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let token = text.get(span).unwrap_or("").trim();
    if message.starts_with("duplicate key") && !token.is_empty() && token.len() <= 100 {
        format!("TOML: duplicate key `{token}` at line {line} column {column}")
    } else {
        format!("TOML: {message} at line {line} column {column}")
    }
}

fn toml_table(table: &toml::Table, path: &str) -> Result<Value, FormatError> {
    let mut out = Map::new();
    for (k, v) in table {
        out.insert(k.clone(), toml_value(v, &child(path, k))?);
    }
    Ok(Value::Object(out))
}

fn toml_value(v: &toml::Value, path: &str) -> Result<Value, FormatError> {
    use toml::Value as T;
    Ok(match v {
        T::String(s) => Value::String(s.clone()),
        T::Integer(i) => Value::from(*i),
        T::Float(f) => float(*f, path)?,
        T::Boolean(b) => Value::Bool(*b),
        T::Datetime(d) => {
            return Err(FormatError::Value {
                key: path.to_string(),
                message: format!("a TOML datetime ({d}) is not a value any key takes"),
            })
        }
        T::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| toml_value(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        T::Table(t) => toml_table(t, path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn syntax(r: Result<Value, FormatError>) -> String {
        match r {
            Err(FormatError::Syntax(m)) => m,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("p.json")), Ok(Format::Json));
        assert_eq!(Format::of(Path::new("p")), Ok(Format::Json));
        assert_eq!(Format::of(Path::new("p.YML")), Ok(Format::Yaml));
        assert_eq!(Format::of(Path::new("p.yaml")), Ok(Format::Yaml));
        assert_eq!(Format::of(Path::new("a.b/p.toml")), Ok(Format::Toml));
        let e = Format::of(Path::new("p.ini")).unwrap_err();
        assert!(e.contains("\"ini\""), "{e}");
    }

    #[test]
    fn integers_and_floats_keep_their_kind() {
        let y = parse("a: 1\nb: 1.0\nc: ~\nd: null\ne:\n", Format::Yaml).unwrap();
        assert_eq!(
            y,
            json!({"a": 1, "b": 1.0, "c": null, "d": null, "e": null})
        );
        assert!(y["a"].is_i64() && y["b"].is_f64());
        let t = parse("a = 1\nb = 1.0\n", Format::Toml).unwrap();
        assert!(t["a"].is_i64() && t["b"].is_f64());
        let j = parse(r#"{"a":1,"b":1.0}"#, Format::Json).unwrap();
        assert!(j["a"].is_u64() && j["b"].is_f64());
    }

    #[test]
    fn a_key_given_twice_is_refused_in_every_format() {
        let j = syntax(parse("{\"a\":1,\n\"a\":2}", Format::Json));
        assert!(
            j.contains("duplicate key `a`") && j.contains("line 2"),
            "{j}"
        );
        let y = syntax(parse("a: 1\nb: 2\na: 3\n", Format::Yaml));
        assert!(
            y.contains("\"a\"") && y.contains("duplicated key") && y.contains("line 3"),
            "{y}"
        );
        let t = syntax(parse("a = 1\na = 2\n", Format::Toml));
        assert_eq!(t, "TOML: duplicate key `a` at line 2 column 1");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let y = syntax(parse("a: 1\nb: [1, 2\n", Format::Yaml));
        assert!(y.contains("line") && y.contains("column"), "{y}");
        let t = syntax(parse("a = 1\nb = \n", Format::Toml));
        assert!(t.contains("line 2") && t.contains("column"), "{t}");
        let j = syntax(parse("{\"a\":\n}", Format::Json));
        assert!(j.contains("line 2") && j.contains("column"), "{j}");
    }

    #[test]
    fn yaml_anchors_aliases_and_merge_keys_resolve() {
        let text = "base: &b {username: u, write_only: true}\n\
                    list:\n  - &x 5\n  - *x\n\
                    one:\n  <<: *b\n  write_only: false\n  name: n\n";
        let v = parse(text, Format::Yaml).unwrap();
        assert_eq!(v["list"], json!([5, 5]));
        assert_eq!(
            v["one"],
            json!({"username": "u", "write_only": false, "name": "n"})
        );
    }

    #[test]
    fn values_no_key_takes_are_refused_with_their_key() {
        let e = parse("[[circles]]\nname = 1979-05-27T07:32:00Z\n", Format::Toml).unwrap_err();
        let FormatError::Value { key, message } = e else {
            panic!("{e:?}")
        };
        assert_eq!(key, "circles[0].name");
        assert!(message.contains("datetime"), "{message}");
        let e = parse("flush_time: .nan\n", Format::Yaml).unwrap_err();
        assert!(matches!(e, FormatError::Value { ref key, .. } if key == "flush_time"));
        let e = parse("flush_time = inf\n", Format::Toml).unwrap_err();
        assert!(matches!(e, FormatError::Value { ref key, .. } if key == "flush_time"));
    }
}
