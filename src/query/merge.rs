//! Combines several backends' answers to one InfluxQL statement into the
//! answer one InfluxDB 1.x would give. Pure: no I/O, no threads. The body
//! sent to the client is written by [`super::render`].
//!
//! **Representation.** A statement's result is a `serde_json::Value`, the
//! object `results[i]` of an influxd body, read by [`parse_json`]
//! (serde_json with its `float_roundtrip` feature: a float is read as the
//! nearest float64, so it is written back with influxd's digits; the default
//! parser misses by one ulp about one in six floats of 16-17 digits, which
//! means and other aggregates are). Integers stay i64/u64. serde_json's maps
//! are sorted (its `preserve_order` feature is off): influxd's key order is
//! restored when the body is written.
//!
//! **What influxd 1.6.7 answers, measured, and how each [`MergeKind`]
//! reproduces it:**
//! - `SELECT` over several measurements: one series per measurement (and per
//!   tag set with `GROUP BY`), sorted by measurement name, then by tag set
//!   (influxd compares `keys\0...\0values\0...`; all series of a statement
//!   have the same tag keys), all of it reversed with `ORDER BY time DESC`.
//!   With `GROUP BY *` (or a regex) every series carries every tag key of
//!   every measurement, `""` where it has none. With a wildcard field list
//!   every series has the union of all measurements' columns: `time`, then
//!   the rest sorted. `SLIMIT`/`SOFFSET` apply *per measurement* inside
//!   influxd (and `SOFFSET` without `SLIMIT` answers no series at all), with
//!   a choice of series not reproducible from the answers; since each
//!   measurement lives whole on one backend of a circle, the statement must
//!   reach the backends with its `SLIMIT`/`SOFFSET` untouched.
//! - `SHOW MEASUREMENTS`, `SHOW SERIES`: one series whose rows are sorted:
//!   measurements by name (bytes); series keys by measurement name, then tag
//!   by tag (key, then value) on the unescaped bytes, as tsdb's
//!   `CompareSeriesKeys` does (so `cpu\ x` comes before `cpu!x`).
//!   `SHOW TAG KEYS`, `SHOW TAG VALUES`, `SHOW FIELD KEYS`: one series per
//!   measurement, rows sorted (`[key, value]`, `[fieldKey, fieldType]`; a
//!   field with two types across shards is listed twice). `LIMIT`/`OFFSET`
//!   apply to each series' rows; a series left empty is dropped. `SLIMIT` is
//!   accepted by `SHOW TAG KEYS` and ignored; the others refuse it.
//! - `SHOW DATABASES` and `SHOW RETENTION POLICIES` list in creation order.
//! - Cardinality: `SHOW MEASUREMENT [EXACT] CARDINALITY` and the estimated
//!   `SHOW SERIES CARDINALITY` (no `FROM`) answer one unnamed series
//!   (columns `count` or `cardinality estimation`); every other form answers
//!   one series per measurement with a `count` column, as does
//!   `SHOW SERIES CARDINALITY FROM m`.
//!
//! **Not reproducible from the answers alone:** influxd's wildcard columns
//! and `GROUP BY *` tag keys include those of every measurement in the
//! queried shards, even one without a matching row; a backend whose
//! measurement matched nothing answers nothing. Its columns come from its
//! `EXPLAIN` of the statement ([`Part::columns`], [`explained_columns`]),
//! its tag keys for `GROUP BY *` from `SHOW TAG KEYS` ([`Part::tag_keys`],
//! [`shown_tag_keys`]); for `GROUP BY /regex/` they stay missing. Unnamed
//! cardinality totals are sums, so they count twice what replicas both
//! report (only when no circle is whole); the estimated forms are sums of
//! estimates.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Number, Value};

/// One backend's answer to one statement: the parsed `results[i]` object of
/// its JSON body.
pub struct Part {
    pub result: Value,
    /// Columns a wildcard field list takes from this backend's measurements
    /// even when none of their rows matched (see [`explained_columns`]);
    /// empty when unknown or not needed.
    pub columns: Vec<String>,
    /// Tag keys of this backend's measurements in the statement, for a
    /// `GROUP BY *` it answered without series (from `SHOW TAG KEYS`).
    pub tag_keys: Vec<String>,
}

impl Part {
    pub fn new(result: Value) -> Part {
        Part {
            result,
            columns: Vec::new(),
            tag_keys: Vec::new(),
        }
    }

    /// Whether the answer holds no series (and no error).
    pub fn is_silent(&self) -> bool {
        self.result.get("error").is_none()
            && self
                .result
                .get("series")
                .and_then(Value::as_array)
                .is_none_or(|a| a.is_empty())
    }
}

/// The columns a wildcard `SELECT` takes from one backend, read from its
/// answer to `EXPLAIN <statement>`. influxd prints, once per shard group,
/// `EXPRESSION: <nil>` and `AUXILIARY FIELDS: h::tag, "odd name"::float` for
/// a raw query (columns `h`, `odd name`), or one `EXPRESSION: count(y::float)`
/// per function and field for an aggregate (column `count_y`). Empty when
/// the plan cannot be read that way.
pub fn explained_columns(answer: &Value) -> Vec<String> {
    let mut names = BTreeSet::new();
    for line in first_cells(answer) {
        if let Some(expr) = line.strip_prefix("EXPRESSION: ") {
            if expr == "<nil>" {
                continue;
            }
            // `count(y::float)`, `percentile(y::float, 90.000)`.
            let call = expr.split_once('(').filter(|(f, _)| {
                !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            let arg = call.and_then(|(f, rest)| {
                let first = split_refs(rest.strip_suffix(')')?).into_iter().next()?;
                let (name, _) = first.rsplit_once("::")?;
                (!name.contains('(')).then(|| format!("{f}_{}", unquote_ident(name)))
            });
            match arg {
                Some(column) => {
                    names.insert(column);
                }
                None => return Vec::new(),
            }
        } else if let Some(list) = line.strip_prefix("AUXILIARY FIELDS: ") {
            for field in split_refs(list) {
                let name = field.rsplit_once("::").map_or(field, |(n, _)| n);
                names.insert(unquote_ident(name));
            }
        }
    }
    names.into_iter().collect()
}

/// The tag keys in an answer to `SHOW TAG KEYS` (every series' rows).
pub fn shown_tag_keys(answer: &Value) -> Vec<String> {
    let keys: BTreeSet<&str> = first_cells(answer).collect();
    keys.into_iter().map(str::to_string).collect()
}

/// The first cell of every row of every series of an answer's first result
/// (the lines of a query plan, the keys of `SHOW TAG KEYS`), when a string.
fn first_cells(answer: &Value) -> impl Iterator<Item = &str> {
    answer
        .get("results")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("series"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("values").and_then(Value::as_array))
        .flatten()
        .filter_map(|row| row.get(0).and_then(Value::as_str))
}

/// `a::tag, "b, c"::float` split on the commas outside double quotes.
fn split_refs(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out.retain(|f| !f.is_empty() && *f != "<nil>");
    out
}

/// An identifier as influxd prints it, without its quotes and escapes.
fn unquote_ident(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => name.to_string(),
    }
}

/// How to combine the parts of one statement.
pub enum MergeKind {
    /// `SELECT` answered by several backends (several measurements, a regex).
    /// Series are concatenated, tag sets completed with `""` to the union of
    /// tag keys (`GROUP BY *`) and sorted as influxd sorts them. Series of the
    /// same name and tags from several parts are one series for influxd
    /// (the same measurement name read from several databases or retention
    /// policies, which may live on different backends): their rows are
    /// merged in time order, the first part's first among equal times.
    /// `wildcard`: columns become the union of all series' columns (`time`
    /// first, then sorted) with nulls where a series has no such column.
    /// `slimit`/`soffset` are the statement's: the backends have already
    /// applied them per measurement, as influxd does, so `soffset` is not
    /// applied again and `slimit` only caps each measurement's series.
    Series {
        wildcard: bool,
        /// The column prefix of each item of the statement's field list that
        /// is a call over `*` (see
        /// [`crate::query::statement::Statement::select_calls`]), `None` for
        /// the other items.
        calls: Vec<Option<String>>,
        slimit: Option<u64>,
        soffset: Option<u64>,
        /// The statement's rows are stored points
        /// ([`crate::query::statement::Statement::raw_points`]): rows of one
        /// series from several parts are merged. Otherwise they are an
        /// aggregate's, which cannot be combined, and the result is an error.
        raw_points: bool,
        /// `ORDER BY time DESC`: influxd then lists the series in reverse
        /// order too, and each series' rows fall in time.
        descending: bool,
        /// The parts are overlapping copies of the same points (the old and
        /// the new owner of a measurement being moved): a row both answer
        /// counts once (rows of one time are united as multisets, so points
        /// that merely look alike in one copy stay).
        overlapping: bool,
        /// The statement's `LIMIT` (without `OFFSET`): each backend applied
        /// it to its part, and influxd applies it to the merged series, so
        /// a series merged from several parts is cut to it again.
        limit: Option<u64>,
    },
    /// Every `SHOW` listing (with or without `FROM`): `MEASUREMENTS`,
    /// `SERIES`, `TAG KEYS`, `TAG VALUES`, `FIELD KEYS`. Rows of same-named
    /// series are united, de-duplicated and sorted as influxd sorts them;
    /// then `offset` and `limit` (which the backends must not have applied)
    /// cut each series' rows; empty series are dropped (influxd answers no
    /// series rather than an empty one for these); series sorted by name.
    Show {
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW DATABASES` and `SHOW RETENTION POLICIES`: creation order. The
    /// first part's rows, then each row of a later part whose name (first
    /// column) is new, placed after the row that precedes it in its own
    /// part, so a name missing from the first part keeps its place. A series
    /// without rows is kept: influxd answers `SHOW DATABASES` with no
    /// database as `{"name":"databases","columns":["name"]}`.
    CreationOrder,
    /// `SHOW ... CARDINALITY`: counts combined per series (same name and
    /// tags), cell by cell. An unnamed series is a count over the whole
    /// database: summed over the backends, which hold disjoint measurements.
    /// A series named after a measurement is that measurement's count: a
    /// measurement lives whole on one backend of a circle, so the same name
    /// from several parts comes from replicas and the largest count is kept
    /// (a sum would double it when no circle is whole).
    Cardinality,
    /// `SHOW STATS`: every part's series, concatenated in part order.
    Concat,
}

/// Merges the parts into one `results[i]` object whose `statement_id` is
/// `statement_id`. If a part has an `error`, the result is the first such
/// part's. A result without series has no `series` key, as influxd's.
/// `messages` are the first part's that has any; `partial` is set if any
/// part's is.
pub fn merge(kind: &MergeKind, statement_id: usize, parts: Vec<Part>) -> Value {
    let explained: BTreeSet<String> = parts.iter().flat_map(|p| p.columns.clone()).collect();
    let silent_tag_keys: BTreeSet<String> = parts.iter().flat_map(|p| p.tag_keys.clone()).collect();
    let mut results: Vec<Map<String, Value>> = parts
        .into_iter()
        .filter_map(|p| match p.result {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    if let Some(i) = results.iter().position(|r| error_of(r).is_some()) {
        let mut r = results.swap_remove(i);
        r.insert("statement_id".into(), statement_id.into());
        return Value::Object(r);
    }
    let messages = results.iter().find_map(|r| match r.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => Some(Value::Array(m.clone())),
        _ => None,
    });
    let partial = results
        .iter()
        .any(|r| r.get("partial") == Some(&Value::Bool(true)));
    let all: Vec<Series> = results
        .into_iter()
        .flat_map(|mut r| match r.remove("series") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })
        .filter_map(Series::from_value)
        .collect();
    let merged = match kind {
        MergeKind::Series {
            wildcard,
            calls,
            slimit,
            raw_points,
            descending,
            overlapping,
            limit,
            ..
        } => {
            let order = Order {
                descending: *descending,
                raw_points: *raw_points,
                overlapping: *overlapping,
                limit: *limit,
            };
            let merged = merge_select(
                all,
                *wildcard,
                calls,
                &explained,
                &silent_tag_keys,
                *slimit,
                order,
            );
            match merged {
                Ok(series) => series,
                Err(e) => return error_result(statement_id, &e),
            }
        }
        MergeKind::Show { limit, offset } => merge_show(all, *limit, *offset),
        MergeKind::CreationOrder => group(all)
            .into_iter()
            .map(|(mut s, lists)| {
                s.values = ordered_union(lists);
                s
            })
            .collect(),
        MergeKind::Cardinality => merge_cardinality(all),
        MergeKind::Concat => all,
    };
    let mut out = Map::new();
    out.insert("statement_id".into(), statement_id.into());
    if !merged.is_empty() {
        out.insert(
            "series".into(),
            Value::Array(merged.into_iter().map(Series::into_value).collect()),
        );
    }
    if let Some(m) = messages {
        out.insert("messages".into(), m);
    }
    if partial {
        out.insert("partial".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// A result object carrying only an error, as influxd answers a statement
/// that failed.
pub fn error_result(statement_id: usize, message: &str) -> Value {
    let mut out = Map::new();
    out.insert("statement_id".into(), statement_id.into());
    out.insert("error".into(), Value::String(message.into()));
    Value::Object(out)
}

fn error_of(result: &Map<String, Value>) -> Option<&str> {
    match result.get("error") {
        Some(Value::String(e)) if !e.is_empty() => Some(e),
        _ => None,
    }
}

/// One series (`models.Row`) taken apart.
struct Series {
    name: String,
    /// Sorted by key (they come from a sorted map).
    tags: Vec<(String, String)>,
    columns: Vec<String>,
    values: Vec<Vec<Value>>,
    partial: bool,
}

impl Series {
    fn from_value(v: Value) -> Option<Series> {
        let Value::Object(mut m) = v else {
            return None;
        };
        let name = match m.remove("name") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let tags = match m.remove("tags") {
            Some(Value::Object(t)) => t.into_iter().map(|(k, v)| (k, text_of(v))).collect(),
            _ => Vec::new(),
        };
        let columns = match m.remove("columns") {
            Some(Value::Array(c)) => c.into_iter().map(text_of).collect(),
            _ => Vec::new(),
        };
        let values = match m.remove("values") {
            Some(Value::Array(rows)) => rows
                .into_iter()
                .map(|r| match r {
                    Value::Array(cells) => cells,
                    other => vec![other],
                })
                .collect(),
            _ => Vec::new(),
        };
        let partial = m.remove("partial") == Some(Value::Bool(true));
        Some(Series {
            name,
            tags,
            columns,
            values,
            partial,
        })
    }

    fn into_value(self) -> Value {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), Value::String(self.name));
        }
        if !self.tags.is_empty() {
            let tags = self
                .tags
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            m.insert("tags".into(), Value::Object(tags));
        }
        if !self.columns.is_empty() {
            let columns = self.columns.into_iter().map(Value::String).collect();
            m.insert("columns".into(), Value::Array(columns));
        }
        if !self.values.is_empty() {
            let values = self.values.into_iter().map(Value::Array).collect();
            m.insert("values".into(), Value::Array(values));
        }
        if self.partial {
            m.insert("partial".into(), Value::Bool(true));
        }
        Value::Object(m)
    }

    /// Merges `rows` of the same series from a later part into this one's,
    /// by the `time` column (both lists are in time order already: falling
    /// with `descending`); on equal times this series' rows come first.
    /// Without a `time` column the rows are appended. `overlapping`: `rows`
    /// copy some of this series' points, and a row of theirs equal to one
    /// of this series' rows of the same time (not matched yet) is dropped.
    fn merge_rows(&mut self, rows: Vec<Vec<Value>>, descending: bool, overlapping: bool) {
        let Some(t) = self.columns.iter().position(|c| c == "time") else {
            self.values.extend(rows);
            return;
        };
        let mine = std::mem::take(&mut self.values);
        let mut merged = Vec::with_capacity(mine.len() + rows.len());
        let mut theirs = rows.into_iter().peekable();
        let mut mine = mine.into_iter().peekable();
        while let Some(row) = mine.next() {
            while let Some(next) = theirs.next_if(|r| {
                let order = cmp_time(r.get(t), row.get(t));
                if descending {
                    order.is_gt()
                } else {
                    order.is_lt()
                }
            }) {
                merged.push(next);
            }
            if !overlapping {
                merged.push(row);
                continue;
            }
            // This series' rows of this time, then theirs not among them.
            let mut same_time = vec![row];
            while let Some(next) = mine.next_if(|r| cmp_time(r.get(t), same_time[0].get(t)).is_eq())
            {
                same_time.push(next);
            }
            let mut unmatched: Vec<bool> = vec![true; same_time.len()];
            let mut extra = Vec::new();
            while let Some(next) =
                theirs.next_if(|r| cmp_time(r.get(t), same_time[0].get(t)).is_eq())
            {
                match (0..same_time.len()).find(|&i| unmatched[i] && same_time[i] == next) {
                    Some(i) => unmatched[i] = false,
                    None => extra.push(next),
                }
            }
            merged.extend(same_time);
            merged.extend(extra);
        }
        merged.extend(theirs);
        self.values = merged;
    }

    /// influxd's sort key for a series: its name, then its tag set encoded as
    /// the query engine encodes it (`encodeTags`): the sorted keys each
    /// followed by NUL, then the values joined by NUL.
    fn sort_key(&self) -> (String, Vec<u8>) {
        let mut id = Vec::new();
        for (k, _) in &self.tags {
            id.extend_from_slice(k.as_bytes());
            id.push(0);
        }
        for (i, (_, v)) in self.tags.iter().enumerate() {
            if i > 0 {
                id.push(0);
            }
            id.extend_from_slice(v.as_bytes());
        }
        (self.name.clone(), id)
    }
}

fn text_of(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn merge_select(
    mut all: Vec<Series>,
    wildcard: bool,
    calls: &[Option<String>],
    explained: &BTreeSet<String>,
    silent_tag_keys: &BTreeSet<String>,
    slimit: Option<u64>,
    order: Order,
) -> Result<Vec<Series>, String> {
    let descending = order.descending;
    complete_tags(&mut all, silent_tag_keys);
    if wildcard {
        unite_columns(&mut all, calls, explained);
    }
    let mut keyed: Vec<((String, Vec<u8>), Series)> =
        all.into_iter().map(|s| (s.sort_key(), s)).collect();
    // Stable: among equal series the first part's stays first.
    if descending {
        keyed.sort_by(|a, b| b.0.cmp(&a.0));
    } else {
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut aggregated: Option<String> = None;
    keyed.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same && !order.raw_points {
            aggregated.get_or_insert_with(|| later.1.name.clone());
        } else if same {
            let rows = std::mem::take(&mut later.1.values);
            earlier.1.merge_rows(rows, descending, order.overlapping);
            if let Some(limit) = order.limit {
                earlier
                    .1
                    .values
                    .truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            }
        }
        same
    });
    if let Some(name) = aggregated {
        return Err(format!(
            "cannot combine series {name:?} answered by several backends: an aggregate or a subquery over one measurement name in several databases"
        ));
    }
    let mut out = Vec::with_capacity(keyed.len());
    let mut measurement: Option<String> = None;
    let mut count = 0u64;
    for (_, s) in keyed {
        if measurement.as_deref() != Some(s.name.as_str()) {
            measurement = Some(s.name.clone());
            count = 0;
        }
        count += 1;
        if slimit.is_none_or(|l| count <= l) {
            out.push(s);
        }
    }
    Ok(out)
}

/// How a `SELECT`'s series are ordered and combined.
#[derive(Clone, Copy)]
struct Order {
    descending: bool,
    /// See [`MergeKind::Series`].
    raw_points: bool,
    /// See [`MergeKind::Series`].
    overlapping: bool,
    limit: Option<u64>,
}

/// `GROUP BY *` (or a tag regex): influxd gives every series every tag key of
/// the statement's measurements, `""` where a series has none. A backend
/// knows only its own measurements' keys; `silent`: those of backends that
/// answered no series (see [`Part::tag_keys`]).
fn complete_tags(all: &mut [Series], silent: &BTreeSet<String>) {
    let keys: BTreeSet<&str> = all
        .iter()
        .flat_map(|s| s.tags.iter().map(|(k, _)| k.as_str()))
        .chain(
            silent
                .iter()
                .filter(|_| !all.is_empty())
                .map(String::as_str),
        )
        .collect();
    if all.iter().all(|s| s.tags.len() == keys.len()) {
        return;
    }
    let keys: Vec<String> = keys.into_iter().map(str::to_string).collect();
    for s in all.iter_mut() {
        if s.tags.len() == keys.len() {
            continue;
        }
        let mut have = std::mem::take(&mut s.tags).into_iter().peekable();
        for k in &keys {
            match have.next_if(|(hk, _)| hk == k) {
                Some(t) => s.tags.push(t),
                None => s.tags.push((k.clone(), String::new())),
            }
        }
    }
}

/// A wildcard over several measurements: influxd gives every series the
/// union of their columns, `time` first, then item by item of the field
/// list: a raw wildcard's columns sorted, a call over `*` its `f_<field>`
/// columns sorted, any other item its one column (see [`column_order`]).
/// `explained`: columns of measurements that matched no row (see
/// [`explained_columns`]; only answers with a `time` column take them).
fn unite_columns(all: &mut [Series], calls: &[Option<String>], explained: &BTreeSet<String>) {
    let has_time = all.iter().any(|s| s.columns.iter().any(|c| c == "time"));
    let explained = explained.iter().filter(|_| has_time);
    let extra = explained
        .clone()
        .any(|c| all.iter().any(|s| !s.columns.contains(c)));
    if !extra && all.windows(2).all(|w| w[0].columns == w[1].columns) {
        return;
    }
    let mut seen: Vec<&str> = Vec::new();
    for c in all
        .iter()
        .flat_map(|s| s.columns.iter().map(String::as_str))
        .chain(explained.map(String::as_str))
    {
        if c != "time" && !seen.contains(&c) {
            seen.push(c);
        }
    }
    let rest = column_order(seen, calls);
    let mut union: Vec<String> = Vec::with_capacity(rest.len() + 1);
    if has_time {
        union.push("time".into());
    }
    union.extend(rest.into_iter().map(str::to_string));
    let index: HashMap<&str, usize> = union
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    for s in all.iter_mut() {
        if s.columns == union {
            continue;
        }
        let to: Vec<usize> = s.columns.iter().map(|c| index[c.as_str()]).collect();
        for row in &mut s.values {
            let mut wide = vec![Value::Null; union.len()];
            for (cell, &j) in std::mem::take(row).into_iter().zip(&to) {
                wide[j] = cell;
            }
            *row = wide;
        }
        s.columns = union.clone();
    }
}

/// Orders the non-`time` columns of a wildcard answer, given in first-seen
/// order. Without wildcard calls (`calls` has no `Some`), sorted by name:
/// influxd sorts a raw wildcard's columns. With them, item by item: a column
/// `f_...` belongs to the first call `f(*)`, sorted within it; the other
/// columns, in first-seen order, fill the other items in turn.
fn column_order<'a>(seen: Vec<&'a str>, calls: &[Option<String>]) -> Vec<&'a str> {
    let mut sorted = seen;
    if !calls.iter().any(Option::is_some) {
        sorted.sort_unstable();
        return sorted;
    }
    let call_of = |c: &str| {
        calls.iter().position(|f| {
            f.as_deref().is_some_and(|f| {
                c.len() > f.len() && c.starts_with(f) && c.as_bytes()[f.len()] == b'_'
            })
        })
    };
    let mut others = calls
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_none())
        .map(|(i, _)| i);
    let mut ranked: Vec<(usize, &str)> = Vec::with_capacity(sorted.len());
    for &c in &sorted {
        let item = call_of(c).or_else(|| others.next()).unwrap_or(usize::MAX);
        ranked.push((item, c));
    }
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, c)| c).collect()
}

/// Series grouped by name and tags, in first-seen order: the first series
/// of each group (rows taken out) and the rows of every member, in order.
fn group(all: Vec<Series>) -> Vec<(Series, Vec<Vec<Vec<Value>>>)> {
    let mut groups: Vec<(Series, Vec<Vec<Vec<Value>>>)> = Vec::new();
    let mut index: HashMap<(String, Vec<(String, String)>), usize> = HashMap::new();
    for mut s in all {
        let rows = std::mem::take(&mut s.values);
        let key = (s.name.clone(), s.tags.clone());
        match index.get(&key) {
            Some(&i) => {
                groups[i].0.partial |= s.partial;
                groups[i].1.push(rows);
            }
            None => {
                index.insert(key, groups.len());
                groups.push((s, vec![rows]));
            }
        }
    }
    groups
}

fn merge_show(all: Vec<Series>, limit: Option<u64>, offset: Option<u64>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for (mut s, lists) in group(all) {
        let rows = if s.name.is_empty() && s.columns == ["key"] {
            sort_series_keys(lists.into_iter().flatten().collect())
        } else {
            let mut rows: Vec<Vec<Value>> = lists.into_iter().flatten().collect();
            rows.sort_by(|a, b| cmp_rows(a, b));
            rows.dedup();
            rows
        };
        let skip = offset.map_or(0, |o| usize::try_from(o).unwrap_or(usize::MAX));
        let take = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        s.values = rows.into_iter().skip(skip).take(take).collect();
        if !s.values.is_empty() {
            out.push(s);
        }
    }
    out.sort_by_cached_key(Series::sort_key);
    out
}

/// `SHOW SERIES` rows (`[key]`), sorted as tsdb sorts series keys and
/// de-duplicated.
fn sort_series_keys(rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    let mut keyed: Vec<(SeriesKey, Vec<Value>)> = rows
        .into_iter()
        .map(|r| {
            let key = match r.first() {
                Some(Value::String(k)) => parse_series_key(k),
                _ => (Vec::new(), Vec::new()),
            };
            (key, r)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| cmp_rows(&a.1, &b.1)));
    keyed.dedup_by(|later, earlier| later.1 == earlier.1);
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// A series key's unescaped measurement name and tags, in key order.
type SeriesKey = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Splits a series key as influxd prints it (`cpu\ x,host=a\,b`): a
/// backslash before `,`, ` ` or `=` escapes it, any other backslash is
/// itself. Comparing the parts compares as tsdb's `CompareSeriesKeys`:
/// names, then tag by tag (key, then value), fewer tags first.
fn parse_series_key(key: &str) -> SeriesKey {
    let b = key.as_bytes();
    let mut i = 0;
    // Reads up to (not past) an unescaped byte in `stops`.
    let mut read = |stops: &[u8]| {
        let mut out = Vec::new();
        while i < b.len() {
            match b[i] {
                b'\\' if i + 1 < b.len() && matches!(b[i + 1], b',' | b' ' | b'=') => {
                    out.push(b[i + 1]);
                    i += 2;
                }
                c if stops.contains(&c) => break,
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        let stop = b.get(i).copied();
        i += 1;
        (out, stop)
    };
    let (name, mut stop) = read(b",");
    let mut tags = Vec::new();
    while stop.is_some() {
        let (k, _) = read(b"=");
        let (v, s) = read(b",");
        tags.push((k, v));
        stop = s;
    }
    (name, tags)
}

/// Creation-ordered lists (databases, retention policies) from several
/// backends: the first list, then each new name (first column) of a later
/// list inserted after the row that precedes it in that list, or before the
/// first known row that follows it.
fn ordered_union(lists: Vec<Vec<Vec<Value>>>) -> Vec<Vec<Value>> {
    let mut merged: Vec<Vec<Value>> = Vec::new();
    let position =
        |merged: &[Vec<Value>], key: Option<&Value>| merged.iter().position(|m| m.first() == key);
    for list in lists {
        let keys: Vec<Option<Value>> = list.iter().map(|r| r.first().cloned()).collect();
        let mut cursor: Option<usize> = None;
        for (i, row) in list.into_iter().enumerate() {
            if let Some(p) = position(&merged, keys[i].as_ref()) {
                cursor = Some(p);
                continue;
            }
            let at = match cursor {
                Some(c) => c + 1,
                None => keys[i + 1..]
                    .iter()
                    .find_map(|k| position(&merged, k.as_ref()))
                    .unwrap_or(merged.len()),
            };
            merged.insert(at, row);
            cursor = Some(at);
        }
    }
    merged
}

fn merge_cardinality(all: Vec<Series>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for (mut s, lists) in group(all) {
        // Named: one measurement's count, from replicas. Unnamed: a total
        // over disjoint backends.
        let replicas = !s.name.is_empty();
        let mut lists = lists.into_iter();
        let mut rows = lists.next().unwrap_or_default();
        for list in lists {
            for (i, row) in list.into_iter().enumerate() {
                let Some(acc) = rows.get_mut(i) else {
                    rows.push(row);
                    continue;
                };
                for (j, cell) in row.into_iter().enumerate() {
                    match acc.get_mut(j) {
                        Some(a) => *a = combine_counts(a, &cell, replicas),
                        None => acc.push(cell),
                    }
                }
            }
        }
        s.values = rows;
        out.push(s);
    }
    out.sort_by_cached_key(Series::sort_key);
    out
}

/// Two counts: their sum, or with `max` the larger. Anything that is not
/// two numbers keeps the first.
fn combine_counts(a: &Value, b: &Value, max: bool) -> Value {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return a.clone();
    };
    if let (Some(x), Some(y)) = (int_of(x), int_of(y)) {
        let r = if max { x.max(y) } else { x + y };
        if let Ok(u) = u64::try_from(r) {
            return Value::Number(u.into());
        }
        if let Ok(i) = i64::try_from(r) {
            return Value::Number(i.into());
        }
        return Number::from_f64(r as f64).map_or(Value::Null, Value::Number);
    }
    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
    let r = if max { x.max(y) } else { x + y };
    Number::from_f64(r).map_or(Value::Null, Value::Number)
}

fn int_of(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Orders two `time` cells: epoch numbers by value, RFC 3339 texts
/// (`2006-01-02T15:04:05.999999999Z`, fraction of varying length) by the
/// time they name.
fn cmp_time(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => split_rfc3339(x).cmp(&split_rfc3339(y)),
        (Some(x), Some(y)) => cmp_value(x, y),
        _ => Ordering::Equal,
    }
}

/// An RFC 3339 time's whole seconds (as text) and its fraction in
/// nanoseconds.
fn split_rfc3339(s: &str) -> (&str, u32) {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut nanos = 0u32;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| b.wrapping_sub(b'0'));
        nanos = nanos * 10 + u32::from(d.min(9));
    }
    (whole, nanos)
}

/// Orders rows cell by cell: strings by bytes, numbers by value, and across
/// types null < bool < number < string < array < object.
fn cmp_rows(a: &[Value], b: &[Value]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| cmp_value(x, y))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

fn cmp_value(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (int_of(x), int_of(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
        },
        (Value::Array(x), Value::Array(y)) => cmp_rows(x, y),
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

/// Parses a backend's JSON body. Every float is read exactly (serde_json's
/// `float_roundtrip`); integers that fit are kept as i64/u64, others become
/// floats; `-0` is the float -0 (Go writes -0.0 so). Nesting deeper than
/// 128 is refused (influxd's bodies nest 6 deep).
pub fn parse_json(text: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::render::write_body;

    // Answers captured from influxd 1.6.7. `_REF` is one influxd holding all
    // the data; `_P1` and `_P2` are two influxd holding parts of it. In `db`
    // they share `cpu` with different series (as when no circle is whole and
    // backends of different circles answer); in `db2` and `t` each
    // measurement lives on one of them (as in one circle). The bodies are
    // exact, without the trailing newline.
    //
    // db:  P1 = cpu{host=a,region=eu; host=c}, mem, w<x;
    //      P2 = cpu{host=b,region=us; host=a,region=eu}, disk, zzz.
    // db2: P1 = cpu, w<x; P2 = mem, disk, zzz.
    // t:   P1 = cpu (series with tags a, host, z; escaped values), `cpu x`;
    //      P2 = `cpu!x`, `Cpu`.
    // Retention policies on db: REF and P1 have autogen, zz, aa (created in
    // that order), P2 lacks aa. Databases: P1 has n1, P2 does not (yet).
    const MEASUREMENTS_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["mem"],["w\u003cx"]]}]}]}"#;
    const MEASUREMENTS_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["disk"],["zzz"]]}]}]}"#;
    const MEASUREMENTS_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["disk"],["mem"],["w\u003cx"],["zzz"]]}]}]}"#;
    const SERIES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a,region=eu"],["cpu,host=c"],["mem,host=a"],["mem,host=b"],["w\u003cx,tag=a\u0026b"]]}]}]}"#;
    const SERIES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a,region=eu"],["cpu,host=b,region=us"],["disk,host=a,path=/"],["disk,host=b,path=/var"],["zzz"]]}]}]}"#;
    const SERIES_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a,region=eu"],["cpu,host=b,region=us"],["cpu,host=c"],["disk,host=a,path=/"],["disk,host=b,path=/var"],["mem,host=a"],["mem,host=b"],["w\u003cx,tag=a\u0026b"],["zzz"]]}]}]}"#;
    const TAG_KEYS_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["tagKey"],"values":[["host"],["region"]]},{"name":"mem","columns":["tagKey"],"values":[["host"]]},{"name":"w\u003cx","columns":["tagKey"],"values":[["tag"]]}]}]}"#;
    const TAG_KEYS_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["tagKey"],"values":[["host"],["region"]]},{"name":"disk","columns":["tagKey"],"values":[["host"],["path"]]}]}]}"#;
    const TAG_KEYS_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["tagKey"],"values":[["host"],["region"]]},{"name":"disk","columns":["tagKey"],"values":[["host"],["path"]]},{"name":"mem","columns":["tagKey"],"values":[["host"]]},{"name":"w\u003cx","columns":["tagKey"],"values":[["tag"]]}]}]}"#;
    const TAG_VALUES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","c"]]},{"name":"mem","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#;
    const TAG_VALUES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"]]},{"name":"disk","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#;
    const TAG_VALUES_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"],["host","c"]]},{"name":"disk","columns":["key","value"],"values":[["host","a"],["host","b"]]},{"name":"mem","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#;
    const TAG_VALUES_IN_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","c"],["region","eu"]]},{"name":"mem","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#;
    const TAG_VALUES_IN_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"],["region","eu"],["region","us"]]},{"name":"disk","columns":["key","value"],"values":[["host","a"],["host","b"],["path","/"],["path","/var"]]}]}]}"#;
    const TAG_VALUES_IN_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"],["host","c"],["region","eu"],["region","us"]]},{"name":"disk","columns":["key","value"],"values":[["host","a"],["host","b"],["path","/"],["path","/var"]]},{"name":"mem","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#;
    const FIELD_KEYS_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["n","integer"],["v","float"]]},{"name":"mem","columns":["fieldKey","fieldType"],"values":[["free","integer"],["fz","float"]]},{"name":"w\u003cx","columns":["fieldKey","fieldType"],"values":[["val","float"]]}]}]}"#;
    const FIELD_KEYS_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["s","string"],["v","float"]]},{"name":"disk","columns":["fieldKey","fieldType"],"values":[["used","float"]]},{"name":"zzz","columns":["fieldKey","fieldType"],"values":[["f","float"]]}]}]}"#;
    const FIELD_KEYS_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["n","integer"],["s","string"],["v","float"]]},{"name":"disk","columns":["fieldKey","fieldType"],"values":[["used","float"]]},{"name":"mem","columns":["fieldKey","fieldType"],"values":[["free","integer"],["fz","float"]]},{"name":"w\u003cx","columns":["fieldKey","fieldType"],"values":[["val","float"]]},{"name":"zzz","columns":["fieldKey","fieldType"],"values":[["f","float"]]}]}]}"#;
    const MEASUREMENTS_LIM_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["disk"],["mem"]]}]}]}"#;
    const SERIES_LIM_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=b,region=us"],["cpu,host=c"]]}]}]}"#;
    const TAG_KEYS_LIM_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["tagKey"],"values":[["region"]]},{"name":"disk","columns":["tagKey"],"values":[["path"]]}]}]}"#;
    const TAG_VALUES_LIM_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","b"]]},{"name":"disk","columns":["key","value"],"values":[["host","b"]]},{"name":"mem","columns":["key","value"],"values":[["host","b"]]}]}]}"#;
    const FIELD_KEYS_LIM_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["s","string"]]},{"name":"mem","columns":["fieldKey","fieldType"],"values":[["fz","float"]]}]}]}"#;
    const RPS_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true],["zz","2h0m0s","1h0m0s",1,false],["aa","24h0m0s","1h0m0s",1,false]]}]}]}"#;
    const RPS_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true],["zz","2h0m0s","1h0m0s",1,false]]}]}]}"#;
    const RPS_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true],["zz","2h0m0s","1h0m0s",1,false],["aa","24h0m0s","1h0m0s",1,false]]}]}]}"#;
    const DATABASES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["db"],["db2"],["t"],["n1"]]}]}]}"#;
    const DATABASES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["db"],["db2"],["t"]]}]}]}"#;
    const SEL_STAR_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","host","n","region","s","v"],"values":[["1970-01-01T00:00:01Z","a",5,"eu",null,0.1],["1970-01-01T00:00:01.5Z","b",null,"us","hi\u003c\u003e\u0026",-0],["1970-01-01T00:00:02Z","a",-3,"eu",null,1.5e-7],["1970-01-01T00:00:02.5Z","b",null,"us","x",123456789.123],["1970-01-01T00:00:03Z","c",9223372036854775807,null,null,1e+21],["1970-01-01T00:00:04Z","a",null,"eu","dup",2.5]]}]}]}"#;
    const SEL_STAR_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"mem","columns":["time","free","fz","host"],"values":[["1970-01-01T00:00:01Z",10,null,"a"],["1970-01-01T00:00:02Z",0,-0,"b"]]}]}]}"#;
    const SEL_STAR_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","free","fz","host","n","region","s","v"],"values":[["1970-01-01T00:00:01Z",null,null,"a",5,"eu",null,0.1],["1970-01-01T00:00:01.5Z",null,null,"b",null,"us","hi\u003c\u003e\u0026",-0],["1970-01-01T00:00:02Z",null,null,"a",-3,"eu",null,1.5e-7],["1970-01-01T00:00:02.5Z",null,null,"b",null,"us","x",123456789.123],["1970-01-01T00:00:03Z",null,null,"c",9223372036854775807,null,null,1e+21],["1970-01-01T00:00:04Z",null,null,"a",null,"eu","dup",2.5]]},{"name":"mem","columns":["time","free","fz","host","n","region","s","v"],"values":[["1970-01-01T00:00:01Z",10,null,"a",null,null,null,null],["1970-01-01T00:00:02Z",0,-0,"b",null,null,null,null]]}]}]}"#;
    const SEL_MEAN_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[["1970-01-01T00:00:00Z",0.8666667166666667]]},{"name":"cpu","tags":{"host":"b"},"columns":["time","mean"],"values":[["1970-01-01T00:00:00Z",61728394.5615]]},{"name":"cpu","tags":{"host":"c"},"columns":["time","mean"],"values":[["1970-01-01T00:00:00Z",1e+21]]}]}]}"#;
    const SEL_MEAN_P2: &str = r#"{"results":[{"statement_id":0}]}"#;
    const SEL_MEAN_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[["1970-01-01T00:00:00Z",0.8666667166666667]]},{"name":"cpu","tags":{"host":"b"},"columns":["time","mean"],"values":[["1970-01-01T00:00:00Z",61728394.5615]]},{"name":"cpu","tags":{"host":"c"},"columns":["time","mean"],"values":[["1970-01-01T00:00:00Z",1e+21]]}]}]}"#;
    const SEL_MEAN_STAR_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean_n","mean_v"],"values":[["1970-01-01T00:00:00Z",1,0.8666667166666667]]},{"name":"cpu","tags":{"host":"b"},"columns":["time","mean_n","mean_v"],"values":[["1970-01-01T00:00:00Z",null,61728394.5615]]},{"name":"cpu","tags":{"host":"c"},"columns":["time","mean_n","mean_v"],"values":[["1970-01-01T00:00:00Z",9223372036854776000,1e+21]]}]}]}"#;
    const SEL_MEAN_STAR_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","tags":{"host":"a"},"columns":["time","mean_free","mean_fz","mean_used"],"values":[["1970-01-01T00:00:00Z",null,null,0.000001]]},{"name":"disk","tags":{"host":"b"},"columns":["time","mean_free","mean_fz","mean_used"],"values":[["1970-01-01T00:00:00Z",null,null,1e-300]]},{"name":"mem","tags":{"host":"a"},"columns":["time","mean_free","mean_fz","mean_used"],"values":[["1970-01-01T00:00:00Z",10,null,null]]},{"name":"mem","tags":{"host":"b"},"columns":["time","mean_free","mean_fz","mean_used"],"values":[["1970-01-01T00:00:00Z",0,0,null]]}]}]}"#;
    const SEL_MEAN_STAR_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",null,null,1,null,0.8666667166666667]]},{"name":"cpu","tags":{"host":"b"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",null,null,null,null,61728394.5615]]},{"name":"cpu","tags":{"host":"c"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",null,null,9223372036854776000,null,1e+21]]},{"name":"disk","tags":{"host":"a"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",null,null,null,0.000001,null]]},{"name":"disk","tags":{"host":"b"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",null,null,null,1e-300,null]]},{"name":"mem","tags":{"host":"a"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",10,null,null,null,null]]},{"name":"mem","tags":{"host":"b"},"columns":["time","mean_free","mean_fz","mean_n","mean_used","mean_v"],"values":[["1970-01-01T00:00:00Z",0,0,null,null,null]]}]}]}"#;
    const SEL_GROUP_ALL_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a","region":"eu"},"columns":["time","n","s","v"],"values":[["1970-01-01T00:00:01Z",5,null,0.1],["1970-01-01T00:00:02Z",-3,null,1.5e-7],["1970-01-01T00:00:04Z",null,"dup",2.5]]},{"name":"cpu","tags":{"host":"b","region":"us"},"columns":["time","n","s","v"],"values":[["1970-01-01T00:00:01.5Z",null,"hi\u003c\u003e\u0026",-0],["1970-01-01T00:00:02.5Z",null,"x",123456789.123]]},{"name":"cpu","tags":{"host":"c","region":""},"columns":["time","n","s","v"],"values":[["1970-01-01T00:00:03Z",9223372036854775807,null,1e+21]]}]}]}"#;
    const SEL_GROUP_ALL_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"mem","tags":{"host":"a"},"columns":["time","free","fz"],"values":[["1970-01-01T00:00:01Z",10,null]]},{"name":"mem","tags":{"host":"b"},"columns":["time","free","fz"],"values":[["1970-01-01T00:00:02Z",0,-0]]}]}]}"#;
    const SEL_GROUP_ALL_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a","region":"eu"},"columns":["time","free","fz","n","s","v"],"values":[["1970-01-01T00:00:01Z",null,null,5,null,0.1],["1970-01-01T00:00:02Z",null,null,-3,null,1.5e-7],["1970-01-01T00:00:04Z",null,null,null,"dup",2.5]]},{"name":"cpu","tags":{"host":"b","region":"us"},"columns":["time","free","fz","n","s","v"],"values":[["1970-01-01T00:00:01.5Z",null,null,null,"hi\u003c\u003e\u0026",-0],["1970-01-01T00:00:02.5Z",null,null,null,"x",123456789.123]]},{"name":"cpu","tags":{"host":"c","region":""},"columns":["time","free","fz","n","s","v"],"values":[["1970-01-01T00:00:03Z",null,null,9223372036854775807,null,1e+21]]},{"name":"mem","tags":{"host":"a","region":""},"columns":["time","free","fz","n","s","v"],"values":[["1970-01-01T00:00:01Z",10,null,null,null,null]]},{"name":"mem","tags":{"host":"b","region":""},"columns":["time","free","fz","n","s","v"],"values":[["1970-01-01T00:00:02Z",0,-0,null,null,null]]}]}]}"#;
    const SEL_DESC_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"c"},"columns":["time","n","region","s","v"],"values":[["1970-01-01T00:00:03Z",9223372036854775807,null,null,1e+21]]},{"name":"cpu","tags":{"host":"b"},"columns":["time","n","region","s","v"],"values":[["1970-01-01T00:00:02.5Z",null,"us","x",123456789.123],["1970-01-01T00:00:01.5Z",null,"us","hi\u003c\u003e\u0026",-0]]},{"name":"cpu","tags":{"host":"a"},"columns":["time","n","region","s","v"],"values":[["1970-01-01T00:00:04Z",null,"eu","dup",2.5],["1970-01-01T00:00:02Z",-3,"eu",null,1.5e-7],["1970-01-01T00:00:01Z",5,"eu",null,0.1]]}]}]}"#;
    const SEL_DESC_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","tags":{"host":"b"},"columns":["time","path","used"],"values":[["1970-01-01T00:00:02Z","/var",1e-300]]},{"name":"disk","tags":{"host":"a"},"columns":["time","path","used"],"values":[["1970-01-01T00:00:01Z","/",0.000001]]}]}]}"#;
    const SEL_DESC_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","tags":{"host":"b"},"columns":["time","n","path","region","s","used","v"],"values":[["1970-01-01T00:00:02Z",null,"/var",null,null,1e-300,null]]},{"name":"disk","tags":{"host":"a"},"columns":["time","n","path","region","s","used","v"],"values":[["1970-01-01T00:00:01Z",null,"/",null,null,0.000001,null]]},{"name":"cpu","tags":{"host":"c"},"columns":["time","n","path","region","s","used","v"],"values":[["1970-01-01T00:00:03Z",9223372036854775807,null,null,null,null,1e+21]]},{"name":"cpu","tags":{"host":"b"},"columns":["time","n","path","region","s","used","v"],"values":[["1970-01-01T00:00:02.5Z",null,null,"us","x",null,123456789.123],["1970-01-01T00:00:01.5Z",null,null,"us","hi\u003c\u003e\u0026",null,-0]]},{"name":"cpu","tags":{"host":"a"},"columns":["time","n","path","region","s","used","v"],"values":[["1970-01-01T00:00:04Z",null,null,"eu","dup",null,2.5],["1970-01-01T00:00:02Z",-3,null,"eu",null,null,1.5e-7],["1970-01-01T00:00:01Z",5,null,"eu",null,null,0.1]]}]}]}"#;
    const SEL_SLIMIT_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"b"},"columns":["time","count_n","count_s","count_v"],"values":[["1970-01-01T00:00:00Z",null,2,2]]}]}]}"#;
    const SEL_SLIMIT_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","tags":{"host":"b"},"columns":["time","count_free","count_fz","count_used"],"values":[["1970-01-01T00:00:00Z",null,null,1]]},{"name":"mem","tags":{"host":"b"},"columns":["time","count_free","count_fz","count_used"],"values":[["1970-01-01T00:00:00Z",1,1,null]]}]}]}"#;
    const SEL_SLIMIT_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"b"},"columns":["time","count_free","count_fz","count_n","count_s","count_used","count_v"],"values":[["1970-01-01T00:00:00Z",null,null,null,2,null,2]]},{"name":"disk","tags":{"host":"b"},"columns":["time","count_free","count_fz","count_n","count_s","count_used","count_v"],"values":[["1970-01-01T00:00:00Z",null,null,null,null,1,null]]},{"name":"mem","tags":{"host":"b"},"columns":["time","count_free","count_fz","count_n","count_s","count_used","count_v"],"values":[["1970-01-01T00:00:00Z",1,1,null,null,null,null]]}]}]}"#;
    const T_SERIES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu"],["cpu,a=b"],["cpu,host=Z"],["cpu,host=a"],["cpu,host=a,z=1"],["cpu,host=a\\ b"],["cpu,host=a!"],["cpu,host=é"],["cpu\\ x,host=a"]]}]}]}"#;
    const T_SERIES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["Cpu,host=a"],["cpu!x,host=a"]]}]}]}"#;
    const T_SERIES_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["Cpu,host=a"],["cpu"],["cpu,a=b"],["cpu,host=Z"],["cpu,host=a"],["cpu,host=a,z=1"],["cpu,host=a\\ b"],["cpu,host=a!"],["cpu,host=é"],["cpu\\ x,host=a"],["cpu!x,host=a"]]}]}]}"#;
    const T_MEASUREMENTS_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["cpu x"]]}]}]}"#;
    const T_MEASUREMENTS_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["Cpu"],["cpu!x"]]}]}]}"#;
    const T_MEASUREMENTS_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["Cpu"],["cpu"],["cpu x"],["cpu!x"]]}]}]}"#;
    const T_GROUP_ALL_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"a":"","host":"","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",2]]},{"name":"cpu","tags":{"a":"","host":"Z","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a","z":"1"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a b","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a!","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"é","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"b","host":"","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu x","tags":{"a":"","host":"a","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]}]}]}"#;
    const T_GROUP_ALL_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"Cpu","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu!x","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]}]}]}"#;
    const T_GROUP_ALL_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"Cpu","tags":{"a":"","host":"a","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",2]]},{"name":"cpu","tags":{"a":"","host":"Z","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a","z":"1"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a b","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"a!","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"","host":"é","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"a":"b","host":"","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu x","tags":{"a":"","host":"a","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu!x","tags":{"a":"","host":"a","z":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]}]}]}"#;
    const T_GROUP_HOST_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",2],["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"Z"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1],["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"a b"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"a!"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"é"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu x","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]}]}]}"#;
    const T_GROUP_HOST_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"Cpu","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu!x","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]}]}]}"#;
    const T_GROUP_HOST_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"Cpu","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":""},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",2],["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"Z"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1],["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"a b"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"a!"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu","tags":{"host":"é"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu x","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]},{"name":"cpu!x","tags":{"host":"a"},"columns":["time","v"],"values":[["1970-01-01T00:00:00.000000001Z",1]]}]}]}"#;
    const T_TAG_VALUES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["a","b"],["host","Z"],["host","a"],["host","a b"],["host","a!"],["host","é"],["z","1"]]},{"name":"cpu x","columns":["key","value"],"values":[["host","a"]]}]}]}"#;
    const T_TAG_VALUES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"Cpu","columns":["key","value"],"values":[["host","a"]]},{"name":"cpu!x","columns":["key","value"],"values":[["host","a"]]}]}]}"#;
    const T_TAG_VALUES_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"Cpu","columns":["key","value"],"values":[["host","a"]]},{"name":"cpu","columns":["key","value"],"values":[["a","b"],["host","Z"],["host","a"],["host","a b"],["host","a!"],["host","é"],["z","1"]]},{"name":"cpu x","columns":["key","value"],"values":[["host","a"]]},{"name":"cpu!x","columns":["key","value"],"values":[["host","a"]]}]}]}"#;
    const ESC_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"esc","columns":["time","s"],"values":[["1970-01-01T00:00:00.000000001Z","a\"b\\c\u003cd\u003e\u0026\u0001\u0008\u000c\t e\u2028f\u2029 é 😀"]]}]}]}"#;
    const PRETTY_REF: &str = r#"{
    "results": [
        {
            "statement_id": 0
        },
        {
            "statement_id": 1,
            "series": [
                {
                    "name": "cpu",
                    "tags": {
                        "host": "c"
                    },
                    "columns": [
                        "time",
                        "mean"
                    ],
                    "values": [
                        [
                            "1970-01-01T00:00:00Z",
                            1e+21
                        ]
                    ]
                }
            ]
        },
        {
            "statement_id": 2,
            "series": [
                {
                    "name": "databases",
                    "columns": [
                        "name"
                    ],
                    "values": [
                        [
                            "db"
                        ],
                        [
                            "t"
                        ],
                        [
                            "db2"
                        ],
                        [
                            "n1"
                        ],
                        [
                            "e"
                        ]
                    ]
                }
            ]
        }
    ]
}"#;
    const MESSAGES_REF: &str = r#"{"results":[{"statement_id":0,"messages":[{"level":"warning","text":"deprecated use of 'DROP RETENTION POLICY nope ON nodb' in a read only context, please use a POST request instead"}]},{"statement_id":1,"error":"retention policy duration must be at least 1h0m0s"}]}"#;
    const CARD_SERIES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["cardinality estimation"],"values":[[4]]}]}]}"#;
    const CARD_SERIES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["cardinality estimation"],"values":[[5]]}]}]}"#;
    const CARD_SERIES_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["cardinality estimation"],"values":[[9]]}]}]}"#;
    const CARD_SERIES_EXACT_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[3]]},{"name":"w\u003cx","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_SERIES_EXACT_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","columns":["count"],"values":[[2]]},{"name":"mem","columns":["count"],"values":[[2]]},{"name":"zzz","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_SERIES_EXACT_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[3]]},{"name":"disk","columns":["count"],"values":[[2]]},{"name":"mem","columns":["count"],"values":[[2]]},{"name":"w\u003cx","columns":["count"],"values":[[1]]},{"name":"zzz","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_MEAS_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["cardinality estimation"],"values":[[2]]}]}]}"#;
    const CARD_MEAS_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["cardinality estimation"],"values":[[3]]}]}]}"#;
    const CARD_MEAS_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"columns":["cardinality estimation"],"values":[[5]]}]}]}"#;
    const CARD_MEAS_EXACT_P1: &str =
        r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[2]]}]}]}"#;
    const CARD_MEAS_EXACT_P2: &str =
        r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[3]]}]}]}"#;
    const CARD_MEAS_EXACT_REF: &str =
        r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[5]]}]}]}"#;
    const CARD_TAG_KEY_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[2]]},{"name":"w\u003cx","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_TAG_KEY_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","columns":["count"],"values":[[2]]},{"name":"mem","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_TAG_KEY_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[2]]},{"name":"disk","columns":["count"],"values":[[2]]},{"name":"mem","columns":["count"],"values":[[1]]},{"name":"w\u003cx","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_TAG_VALUES_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[3]]}]}]}"#;
    const CARD_TAG_VALUES_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","columns":["count"],"values":[[2]]},{"name":"mem","columns":["count"],"values":[[2]]}]}]}"#;
    const CARD_TAG_VALUES_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[3]]},{"name":"disk","columns":["count"],"values":[[2]]},{"name":"mem","columns":["count"],"values":[[2]]}]}]}"#;
    const CARD_FIELD_KEY_P1: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[3]]},{"name":"w\u003cx","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_FIELD_KEY_P2: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"disk","columns":["count"],"values":[[1]]},{"name":"mem","columns":["count"],"values":[[2]]},{"name":"zzz","columns":["count"],"values":[[1]]}]}]}"#;
    const CARD_FIELD_KEY_REF: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[3]]},{"name":"disk","columns":["count"],"values":[[1]]},{"name":"mem","columns":["count"],"values":[[2]]},{"name":"w\u003cx","columns":["count"],"values":[[1]]},{"name":"zzz","columns":["count"],"values":[[1]]}]}]}"#;

    /// `results[0]` of a body.
    fn result_of(body: &str) -> Value {
        let mut v = parse_json(body.as_bytes()).expect("the fixture parses");
        v["results"][0].take()
    }

    fn merged_body(kind: &MergeKind, bodies: &[&str]) -> String {
        let parts = bodies.iter().map(|b| Part::new(result_of(b))).collect();
        String::from_utf8(write_body(&[merge(kind, 0, parts)], false)).expect("UTF-8")
    }

    #[track_caller]
    fn assert_merges_to(kind: &MergeKind, bodies: &[&str], expected: &str) {
        assert_eq!(merged_body(kind, bodies), format!("{expected}\n"));
    }

    fn show(limit: Option<u64>, offset: Option<u64>) -> MergeKind {
        MergeKind::Show { limit, offset }
    }

    fn select(wildcard: bool) -> MergeKind {
        select_ordered(wildcard, false)
    }

    fn select_desc(wildcard: bool) -> MergeKind {
        select_ordered(wildcard, true)
    }

    fn select_ordered(wildcard: bool, descending: bool) -> MergeKind {
        MergeKind::Series {
            wildcard,
            calls: Vec::new(),
            slimit: None,
            soffset: None,
            raw_points: true,
            descending,
            overlapping: false,
            limit: None,
        }
    }

    #[test]
    fn every_captured_body_is_written_back_byte_for_byte() {
        let compact = [
            MEASUREMENTS_REF,
            SERIES_REF,
            TAG_VALUES_IN_REF,
            FIELD_KEYS_REF,
            RPS_REF,
            DATABASES_P1,
            SEL_STAR_REF,
            SEL_MEAN_REF,
            SEL_MEAN_STAR_REF,
            SEL_GROUP_ALL_REF,
            SEL_DESC_REF,
            T_SERIES_REF,
            T_GROUP_ALL_REF,
            CARD_SERIES_REF,
            ESC_REF,
            MESSAGES_REF,
        ];
        for body in compact {
            let mut v = parse_json(body.as_bytes()).expect("parses");
            let Value::Array(results) = v["results"].take() else {
                panic!("no results in {body}");
            };
            let out = write_body(&results, false);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{body}\n"));
        }
        let mut v = parse_json(PRETTY_REF.as_bytes()).expect("parses");
        let Value::Array(results) = v["results"].take() else {
            panic!("no results");
        };
        let out = write_body(&results, true);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{PRETTY_REF}\n"));
    }

    #[test]
    fn show_listings_from_backends_sharing_a_measurement_equal_one_influxd() {
        let cases = [
            (MEASUREMENTS_P1, MEASUREMENTS_P2, MEASUREMENTS_REF),
            (SERIES_P1, SERIES_P2, SERIES_REF),
            (TAG_KEYS_P1, TAG_KEYS_P2, TAG_KEYS_REF),
            (TAG_VALUES_P1, TAG_VALUES_P2, TAG_VALUES_REF),
            (TAG_VALUES_IN_P1, TAG_VALUES_IN_P2, TAG_VALUES_IN_REF),
            (FIELD_KEYS_P1, FIELD_KEYS_P2, FIELD_KEYS_REF),
        ];
        for (p1, p2, reference) in cases {
            assert_merges_to(&show(None, None), &[p1, p2], reference);
            assert_merges_to(&show(None, None), &[p2, p1], reference);
        }
    }

    #[test]
    fn show_limit_and_offset_cut_each_series_after_merging() {
        let kind = show(Some(2), Some(1));
        assert_merges_to(
            &kind,
            &[MEASUREMENTS_P1, MEASUREMENTS_P2],
            MEASUREMENTS_LIM_REF,
        );
        assert_merges_to(&kind, &[SERIES_P1, SERIES_P2], SERIES_LIM_REF);
        // LIMIT 1 OFFSET 1: series left empty (w<x, zzz) are dropped.
        let kind = show(Some(1), Some(1));
        assert_merges_to(&kind, &[TAG_KEYS_P1, TAG_KEYS_P2], TAG_KEYS_LIM_REF);
        assert_merges_to(&kind, &[TAG_VALUES_P1, TAG_VALUES_P2], TAG_VALUES_LIM_REF);
        assert_merges_to(&kind, &[FIELD_KEYS_P1, FIELD_KEYS_P2], FIELD_KEYS_LIM_REF);
    }

    #[test]
    fn show_series_sorts_by_unescaped_name_then_tag_by_tag() {
        // `cpu\ x` before `cpu!x`, `host=a\ b` before `host=a!`, and
        // `host=a` before `host=a,z=1` before `host=a\ b`: not byte order.
        assert_merges_to(&show(None, None), &[T_SERIES_P1, T_SERIES_P2], T_SERIES_REF);
        assert_merges_to(&show(None, None), &[T_SERIES_P2, T_SERIES_P1], T_SERIES_REF);
        let cases = [
            (T_MEASUREMENTS_P1, T_MEASUREMENTS_P2, T_MEASUREMENTS_REF),
            (T_TAG_VALUES_P1, T_TAG_VALUES_P2, T_TAG_VALUES_REF),
        ];
        for (p1, p2, reference) in cases {
            assert_merges_to(&show(None, None), &[p2, p1], reference);
        }
    }

    #[test]
    fn retention_policies_keep_creation_order_and_add_names_a_backend_lacks() {
        let kind = MergeKind::CreationOrder;
        assert_merges_to(&kind, &[RPS_P2, RPS_P1], RPS_REF);
        assert_merges_to(&kind, &[RPS_P1, RPS_P2], RPS_REF);
    }

    #[test]
    fn databases_keep_creation_order_not_name_order() {
        // P2 has not yet run `CREATE DATABASE n1`.
        assert_merges_to(
            &MergeKind::CreationOrder,
            &[DATABASES_P2, DATABASES_P1],
            DATABASES_P1,
        );
    }

    #[test]
    fn ordered_union_puts_a_new_name_next_to_its_neighbour() {
        let rows = |names: &[&str]| -> Vec<Vec<Value>> {
            names
                .iter()
                .map(|n| vec![Value::String(n.to_string())])
                .collect()
        };
        let cases: [(&[&str], &[&str], &[&str]); 4] = [
            (&["a", "c"], &["a", "b", "c"], &["a", "b", "c"]),
            (&["b", "c"], &["a", "b"], &["a", "b", "c"]),
            (&["a"], &["x", "y"], &["a", "x", "y"]),
            (&[], &["z", "a"], &["z", "a"]),
        ];
        for (first, second, expected) in cases {
            assert_eq!(
                ordered_union(vec![rows(first), rows(second)]),
                rows(expected),
                "{first:?} + {second:?}"
            );
        }
    }

    #[test]
    fn select_over_measurements_on_two_backends_equals_one_influxd() {
        // Wildcards: the union of both backends' columns, nulls filled in.
        assert_merges_to(&select(true), &[SEL_STAR_P2, SEL_STAR_P1], SEL_STAR_REF);
        assert_merges_to(
            &select(true),
            &[SEL_MEAN_STAR_P1, SEL_MEAN_STAR_P2],
            SEL_MEAN_STAR_REF,
        );
        assert_merges_to(&select(false), &[SEL_MEAN_P1, SEL_MEAN_P2], SEL_MEAN_REF);
        // GROUP BY *: cpu's series get `path` = "", disk's `region` = "".
        assert_merges_to(
            &select(true),
            &[SEL_GROUP_ALL_P2, SEL_GROUP_ALL_P1],
            SEL_GROUP_ALL_REF,
        );
        assert_merges_to(
            &select(false),
            &[T_GROUP_ALL_P2, T_GROUP_ALL_P1],
            T_GROUP_ALL_REF,
        );
        assert_merges_to(
            &select(false),
            &[T_GROUP_HOST_P2, T_GROUP_HOST_P1],
            T_GROUP_HOST_REF,
        );
    }

    #[test]
    fn order_by_time_desc_lists_series_in_reverse() {
        assert_merges_to(
            &select_desc(true),
            &[SEL_DESC_P1, SEL_DESC_P2],
            SEL_DESC_REF,
        );
    }

    #[test]
    fn slimit_and_soffset_applied_by_the_backends_are_not_applied_again() {
        // SLIMIT 1 SOFFSET 1, sent to both backends unchanged: influxd keeps
        // the second series of every measurement.
        let kind = MergeKind::Series {
            wildcard: true,
            calls: Vec::new(),
            slimit: Some(1),
            soffset: Some(1),
            raw_points: true,
            descending: false,
            overlapping: false,
            limit: None,
        };
        assert_merges_to(&kind, &[SEL_SLIMIT_P1, SEL_SLIMIT_P2], SEL_SLIMIT_REF);
    }

    #[test]
    fn cardinalities_of_disjoint_backends_add_up_to_one_influxd() {
        let cases = [
            (CARD_SERIES_P1, CARD_SERIES_P2, CARD_SERIES_REF),
            (
                CARD_SERIES_EXACT_P1,
                CARD_SERIES_EXACT_P2,
                CARD_SERIES_EXACT_REF,
            ),
            (CARD_MEAS_P1, CARD_MEAS_P2, CARD_MEAS_REF),
            (CARD_MEAS_EXACT_P1, CARD_MEAS_EXACT_P2, CARD_MEAS_EXACT_REF),
            (CARD_TAG_KEY_P1, CARD_TAG_KEY_P2, CARD_TAG_KEY_REF),
            (CARD_TAG_VALUES_P1, CARD_TAG_VALUES_P2, CARD_TAG_VALUES_REF),
            (CARD_FIELD_KEY_P1, CARD_FIELD_KEY_P2, CARD_FIELD_KEY_REF),
        ];
        for (p1, p2, reference) in cases {
            assert_merges_to(&MergeKind::Cardinality, &[p2, p1], reference);
        }
    }

    /// The old and the new owner of a moving measurement both answer: a
    /// point both hold counts once, `LIMIT` holds again, and points that
    /// only look alike (one time, one value, another series left out of
    /// the columns) stay as often as one copy has them.
    #[test]
    fn overlapping_copies_count_each_point_once_and_keep_look_alikes() {
        let kind = MergeKind::Series {
            wildcard: false,
            calls: Vec::new(),
            slimit: None,
            soffset: None,
            raw_points: true,
            descending: false,
            overlapping: true,
            limit: Some(3),
        };
        let body = |values: &str| {
            format!(
                r#"{{"results":[{{"statement_id":0,"series":[{{"name":"cpu","columns":["time","v"],"values":{values}}}]}}]}}"#
            )
        };
        let (old, new) = (body("[[1,1],[2,2],[3,3]]"), body("[[1,1],[2,3],[3,3]]"));
        assert_merges_to(&kind, &[&old, &new], &body("[[1,1],[2,2],[2,3]]"));
        let twice = body("[[1,1],[1,1],[2,2]]");
        let once_more = body("[[1,1],[1,1],[2,2],[5,5]]");
        assert_merges_to(&kind, &[&twice, &once_more], &body("[[1,1],[1,1],[2,2]]"));
    }

    #[test]
    fn series_of_one_name_and_tags_from_several_backends_merge_by_time() {
        // `SELECT v FROM d0..cpu, d1..cpu`, each database on its own backend:
        // influxd answers one `cpu` series.
        let p1 = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[["1970-01-01T00:01:40Z",1],["1970-01-01T00:03:20.5Z",4]]}]}]}"#;
        let p2 = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[["1970-01-01T00:01:40Z",3],["1970-01-01T00:03:20.25Z",2],["1970-01-01T00:03:21Z",5]]}]}]}"#;
        let reference = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[["1970-01-01T00:01:40Z",1],["1970-01-01T00:01:40Z",3],["1970-01-01T00:03:20.25Z",2],["1970-01-01T00:03:20.5Z",4],["1970-01-01T00:03:21Z",5]]}]}]}"#;
        assert_merges_to(&select(false), &[p1, p2], reference);
        let p1 = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[300,4],[100,1]]}]}]}"#;
        let p2 = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[200,2],[100,3]]}]}]}"#;
        let reference = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[300,4],[200,2],[100,1],[100,3]]}]}]}"#;
        assert_merges_to(&select_desc(false), &[p1, p2], reference);
        // `SELECT count(v) FROM d0..cpu, d1..cpu`: two counts of one series
        // cannot be combined in general (a mean could not): an error, not a
        // wrong answer.
        let p1 = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count"],"values":[[0,2]]}]}]}"#;
        let p2 = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count"],"values":[[0,3]]}]}]}"#;
        let kind = MergeKind::Series {
            wildcard: false,
            calls: Vec::new(),
            slimit: None,
            soffset: None,
            raw_points: false,
            descending: false,
            overlapping: false,
            limit: None,
        };
        let body = merged_body(&kind, &[p1, p2]);
        assert!(
            body.starts_with(
                r#"{"results":[{"statement_id":0,"error":"cannot combine series \"cpu\""#
            ),
            "{body}"
        );
    }

    #[test]
    fn replicas_answering_together_are_deduplicated() {
        // No circle whole: P1 (one backend of circle A) and REF (circle B,
        // a full replica) both answer a SHOW; the result is REF's.
        assert_merges_to(&show(None, None), &[SERIES_P1, SERIES_REF], SERIES_REF);
        assert_merges_to(
            &show(None, None),
            &[FIELD_KEYS_REF, FIELD_KEYS_P2],
            FIELD_KEYS_REF,
        );
        // Per-measurement counts: the largest, not the sum.
        let kind = MergeKind::Cardinality;
        assert_merges_to(
            &kind,
            &[CARD_SERIES_EXACT_P1, CARD_SERIES_EXACT_REF],
            CARD_SERIES_EXACT_REF,
        );
        assert_merges_to(
            &kind,
            &[CARD_TAG_VALUES_REF, CARD_TAG_VALUES_P2],
            CARD_TAG_VALUES_REF,
        );
    }

    #[test]
    fn an_error_from_any_backend_is_the_result() {
        let ok = r#"{"statement_id":0,"series":[{"name":"cpu","columns":["tagKey"],"values":[["host"]]}]}"#;
        let failed = r#"{"statement_id":0,"error":"shard 7: no space left"}"#;
        let parts = vec![
            Part::new(parse_json(ok.as_bytes()).unwrap()),
            Part::new(parse_json(failed.as_bytes()).unwrap()),
        ];
        let merged = merge(&show(None, None), 2, parts);
        assert_eq!(
            String::from_utf8(write_body(&[merged], false)).unwrap(),
            "{\"results\":[{\"statement_id\":2,\"error\":\"shard 7: no space left\"}]}\n"
        );
        let body = write_body(&[error_result(1, "x <y>")], false);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"results\":[{\"statement_id\":1,\"error\":\"x \\u003cy\\u003e\"}]}\n"
        );
    }

    #[test]
    fn a_result_without_series_has_no_series_key() {
        let empty = || Part::new(parse_json(br#"{"statement_id":0}"#).unwrap());
        for kind in [
            select(true),
            show(Some(1), None),
            MergeKind::CreationOrder,
            MergeKind::Cardinality,
            MergeKind::Concat,
        ] {
            let merged = merge(&kind, 3, vec![empty(), empty()]);
            let body = String::from_utf8(write_body(&[merged], false)).unwrap();
            assert_eq!(body, "{\"results\":[{\"statement_id\":3}]}\n");
        }
        // Rows all cut away by OFFSET: no series either.
        let merged = merge(
            &show(None, Some(10)),
            0,
            vec![Part::new(result_of(MEASUREMENTS_P1))],
        );
        assert_eq!(merged.get("series"), None);
    }

    #[test]
    fn concat_keeps_every_series_in_part_order() {
        let a = r#"{"statement_id":0,"series":[{"name":"runtime","columns":["Alloc"],"values":[[2]]},{"name":"httpd","tags":{"bind":":8086"},"columns":["req"],"values":[[5]]}]}"#;
        let b = r#"{"statement_id":0,"series":[{"name":"runtime","columns":["Alloc"],"values":[[1]]}]}"#;
        let parts = [a, b]
            .iter()
            .map(|t| Part::new(parse_json(t.as_bytes()).unwrap()))
            .collect();
        let merged = merge(&MergeKind::Concat, 0, parts);
        assert_eq!(
            String::from_utf8(write_body(&[merged], false)).unwrap(),
            concat!(
                r#"{"results":[{"statement_id":0,"series":["#,
                r#"{"name":"runtime","columns":["Alloc"],"values":[[2]]},"#,
                r#"{"name":"httpd","tags":{"bind":":8086"},"columns":["req"],"values":[[5]]},"#,
                r#"{"name":"runtime","columns":["Alloc"],"values":[[1]]}]}]}"#,
                "\n"
            )
        );
    }

    #[test]
    fn parse_json_refuses_malformed_input_without_panicking() {
        let bad: [&[u8]; 16] = [
            b"",
            b"{",
            b"[1,]",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"\"abc",
            b"01",
            b"1e",
            b"-",
            b"1.",
            b"nul",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"1e400",
            b"\"\xff\"",
            b"[] x",
        ];
        for text in bad {
            assert!(
                parse_json(text).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let deep = "[".repeat(10_000);
        assert!(parse_json(deep.as_bytes()).is_err());
        assert!(parse_json(b" {\"a\" : [ 1 , true , null ] } ").is_ok());
    }

    fn plan(lines: &[&str]) -> Value {
        let rows: Vec<Value> = lines.iter().map(|l| serde_json::json!([l])).collect();
        serde_json::json!({"results":[{"statement_id":0,"series":[{"columns":["QUERY PLAN"],"values":rows}]}]})
    }

    #[test]
    fn explain_plans_give_the_wildcard_columns() {
        // Captured from influxd 1.6.7 (one block per shard group).
        let raw = plan(&[
            "EXPRESSION: <nil>",
            r#"AUXILIARY FIELDS: k::tag, "odd, \"name"::float"#,
            "NUMBER OF SHARDS: 1",
            "",
            "EXPRESSION: <nil>",
            "AUXILIARY FIELDS: k::tag, y::integer",
        ]);
        assert_eq!(explained_columns(&raw), ["k", "odd, \"name", "y"]);
        let aggregate = plan(&[
            "EXPRESSION: count(y::float)",
            "EXPRESSION: mean(y::float)",
            "NUMBER OF SHARDS: 1",
        ]);
        assert_eq!(explained_columns(&aggregate), ["count_y", "mean_y"]);
        // percentile(*, 90) is printed without its function: unknown.
        assert!(explained_columns(&plan(&["EXPRESSION: y::float"])).is_empty());
        assert!(explained_columns(&plan(&[""])).is_empty());
        assert!(explained_columns(&serde_json::json!({"error": "x"})).is_empty());
    }

    #[test]
    fn explained_columns_join_the_union_of_a_wildcard() {
        let answered = Part::new(result_of(
            r#"{"results":[{"statement_id":0,"series":[{"name":"a","columns":["time","h","x"],"values":[["t1","y",2]]}]}]}"#,
        ));
        let mut silent = Part::new(result_of(r#"{"results":[{"statement_id":0}]}"#));
        assert!(silent.is_silent() && !answered.is_silent());
        silent.columns = vec!["k".into(), "y".into()];
        let kind = MergeKind::Series {
            wildcard: true,
            calls: Vec::new(),
            slimit: None,
            soffset: None,
            raw_points: true,
            descending: false,
            overlapping: false,
            limit: None,
        };
        let merged = merge(&kind, 0, vec![answered, silent]);
        let body = String::from_utf8(write_body(&[merged], false)).unwrap();
        assert_eq!(
            body,
            "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"a\",\"columns\":[\"time\",\"h\",\"k\",\"x\",\"y\"],\"values\":[[\"t1\",\"y\",null,2,null]]}]}]}\n"
        );
    }

    #[test]
    fn tag_keys_of_silent_backends_complete_group_by_star() {
        let shown = result_of(
            r#"{"results":[{"statement_id":0,"series":[{"name":"b","columns":["tagKey"],"values":[["k"],["z"]]},{"name":"c","columns":["tagKey"],"values":[["k"]]}]}]}"#,
        );
        assert_eq!(
            shown_tag_keys(&serde_json::json!({"results":[shown]})),
            ["k", "z"]
        );
        let answered = Part::new(result_of(
            r#"{"results":[{"statement_id":0,"series":[{"name":"a","tags":{"h":"y"},"columns":["time","x"],"values":[["t1",2]]}]}]}"#,
        ));
        let mut silent = Part::new(result_of(r#"{"results":[{"statement_id":0}]}"#));
        silent.tag_keys = vec!["k".into()];
        let merged = merge(&select(false), 0, vec![answered, silent]);
        let body = String::from_utf8(write_body(&[merged], false)).unwrap();
        assert_eq!(
            body,
            "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"a\",\"tags\":{\"h\":\"y\",\"k\":\"\"},\"columns\":[\"time\",\"x\"],\"values\":[[\"t1\",2]]}]}]}\n"
        );
    }

    #[test]
    fn wildcard_calls_keep_their_columns_call_by_call() {
        let calls = |c: &[Option<&str>]| -> Vec<Option<String>> {
            c.iter().map(|f| f.map(str::to_string)).collect()
        };
        // influxd: SELECT mean(*), count(*) -> mean_x, mean_y, count_x, count_y.
        let seen = vec!["count_x", "mean_x", "count_y", "mean_y"];
        assert_eq!(
            column_order(seen.clone(), &calls(&[Some("mean"), Some("count")])),
            ["mean_x", "mean_y", "count_x", "count_y"]
        );
        // SELECT max(*), min(x) -> max_x, max_y, min; min(x), max(*) the other way.
        let seen = vec!["max_y", "min", "max_x"];
        assert_eq!(
            column_order(seen.clone(), &calls(&[Some("max"), None])),
            ["max_x", "max_y", "min"]
        );
        assert_eq!(
            column_order(seen.clone(), &calls(&[None, Some("max")])),
            ["min", "max_x", "max_y"]
        );
        // A raw wildcard (no call): sorted by name.
        assert_eq!(column_order(seen, &[]), ["max_x", "max_y", "min"]);
    }

    #[test]
    fn malformed_parts_are_ignored() {
        let parts = vec![
            Part::new(Value::Null),
            Part::new(parse_json(br#"{"series":[1,{"name":"m","values":[["x"],5]}]}"#).unwrap()),
        ];
        let merged = merge(&show(None, None), 0, parts);
        let body = String::from_utf8(write_body(&[merged], false)).unwrap();
        assert_eq!(
            body,
            "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"m\",\"values\":[[5],[\"x\"]]}]}]}\n"
        );
    }
}
