//! The statements of one `/query` request: split on `;`, classified, and what
//! each names (databases, retention policy, measurements, limits).
//!
//! Built on [`lexer`], so statement boundaries are InfluxDB's own: a `;`
//! inside a string, quoted identifier, regex or comment never splits. The
//! classification is deliberately not a full parser; the backend still parses
//! every statement and answers its own errors. What this module guarantees:
//!
//! - Nothing forbidden gets through, whatever the case, comments, newlines,
//!   position among the statements or nesting: a request holding one
//!   forbidden statement is refused whole (`illegal InfluxQL`). Besides the
//!   classification by leading keywords, any keyword that only forbidden
//!   statements use (`GRANT`, `INTO`, `USER`, `KILL`, ...) and any statement
//!   keyword in the middle of a statement refuses it, so a statement the
//!   split might have merged can not carry one along.
//! - A `;` inside parentheses is a parse error (InfluxDB fails on it too), so
//!   no statement text handed to a backend contains a `;` token.
//! - Every database a statement names (`ON db`, `db.rp.m` at any depth,
//!   `CREATE/DROP DATABASE db`) is listed in [`Statement::databases`] for the
//!   caller's `db_list` check.
//!
//! Pure: no I/O, no threads; linear in the query's length, no recursion.

use std::fmt;

use crate::query::lexer::{self, Keyword as K, Punct as P, Token, TokenKind as T};

/// Quoting for names spliced into statements (`CREATE DATABASE "x"`).
pub use crate::query::lexer::quote_ident;

/// What the client gets for a forbidden or unknown statement.
pub const ILLEGAL: &str = "illegal InfluxQL";
/// What the client gets for a query without any statement.
pub const EMPTY: &str = "empty query";

/// One statement of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// This statement's source text from its first to its last token, without
    /// the separating `;` (comments inside are kept).
    pub text: String,
    pub kind: StatementKind,
    /// The database the statement runs on: `ON db`, else the database of the
    /// first qualified source (`db.rp.m`, `db..m`, also inside subqueries),
    /// else for `CREATE/DROP DATABASE x` x, else None (the caller then uses
    /// the request's `db` parameter).
    pub database: Option<String>,
    /// Every database the statement names anywhere (ON, qualified sources at
    /// any depth, CREATE/DROP DATABASE name), in order, without repeats.
    pub databases: Vec<String>,
    /// The retention policy of `ON db.rp`, else of the first qualified source.
    pub retention_policy: Option<String>,
    /// Measurements of the FROM clauses (flattened through subqueries) and of
    /// `WITH MEASUREMENT = m | =~ /re/`, in source order, without repeats.
    pub sources: Vec<Source>,
    /// The same sources with the database and retention policy each one
    /// names (a source without a database runs on [`Statement::database`]
    /// or the request's `db`), in source order, without repeats.
    pub source_refs: Vec<SourceRef>,
    /// LIMIT / OFFSET / SLIMIT / SOFFSET of the outermost statement.
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub slimit: Option<u64>,
    pub soffset: Option<u64>,
    /// `text` with the outermost LIMIT and OFFSET clauses removed (for SHOW
    /// fan-out, applied again after merging); equal to `text` without them.
    pub text_without_limit: String,
    /// A SELECT whose field list has a `*` (`*`, `*::field`, `count(*)`) or a
    /// regex field: its columns depend on the data, so the caller re-projects
    /// columns after combining answers.
    pub wildcard: bool,
    /// For a wildcard SELECT: its outermost field list, item by item, with
    /// each call over `*` or a regex (`mean(*)`, `count(/x/) AS c`) and
    /// `None` for any other item. Empty when not a wildcard SELECT.
    pub select_calls: Vec<Option<WildcardCall>>,
    /// A SELECT without subquery whose outermost `GROUP BY` has `*`: every
    /// series then carries every tag key of the statement's measurements.
    pub group_by_all: bool,
    /// A SELECT whose outermost `ORDER BY` is `time DESC`: influxd then
    /// lists the series in reverse order too. An `ORDER BY` inside a
    /// subquery, or `DESC` in a string or identifier, does not count.
    pub order_desc: bool,
    /// A SELECT whose rows are stored points: no function call (`mean(v)`,
    /// `top(v, 3)`) or `DISTINCT` in its field list nor in a subquery's.
    /// Rows of one series answered by several backends can then be merged
    /// by time; an aggregate's cannot.
    pub raw_points: bool,
    /// The statement uses a bound parameter (`$name`), which InfluxDB fills
    /// from the request's `params`: a parameter can name a database or a
    /// measurement the fields above do not show.
    pub bound_params: bool,
    /// Spans (relative to `text`) of the outermost LIMIT, OFFSET, SLIMIT and
    /// SOFFSET clauses, each from the end of the token before it.
    clauses: [Option<(usize, usize)>; 4],
}

/// A measurement a statement reads or changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A name, unquoted and unescaped (`"cpu load"` -> `cpu load`).
    Measurement(String),
    /// A regex, its pattern without the slashes (`\/` read as `/`).
    Regex(String),
}

/// A source with the database and retention policy it names, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceRef {
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub source: Source,
}

/// A call over `*` or a regex in a field list: influxd names its columns
/// `<prefix>_<field>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WildcardCall {
    /// The function, in lower case (`mean`).
    pub function: String,
    /// The alias if there is one, else the function.
    pub prefix: String,
}

/// The SHOW statements the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShowKind {
    Measurements,
    MeasurementCardinality,
    Series,
    SeriesCardinality,
    TagKeys,
    TagKeyCardinality,
    TagValues,
    TagValuesCardinality,
    FieldKeys,
    FieldKeyCardinality,
    Databases,
    RetentionPolicies,
    Stats,
}

impl ShowKind {
    /// A `SHOW ... [EXACT] CARDINALITY`: answers are counts to be summed.
    pub fn is_cardinality(self) -> bool {
        matches!(
            self,
            ShowKind::MeasurementCardinality
                | ShowKind::SeriesCardinality
                | ShowKind::TagKeyCardinality
                | ShowKind::TagValuesCardinality
                | ShowKind::FieldKeyCardinality
        )
    }
}

/// What a statement does; everything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// SELECT without INTO (at any depth).
    Select,
    Show(ShowKind),
    CreateDatabase(String),
    DropDatabase(String),
    /// The database is the statement's `ON db` ([`Statement::database`]).
    CreateRetentionPolicy,
    AlterRetentionPolicy,
    DropRetentionPolicy,
    DropMeasurement(String),
    /// DROP SERIES, with or without FROM (sources filled when present).
    DropSeries,
    /// DELETE [FROM ...] [WHERE ...].
    Delete,
}

/// Why a request was refused before reaching any backend. `Display` gives
/// the message the client should see (with a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub message: String,
}

impl QueryError {
    fn new(message: impl Into<String>) -> QueryError {
        QueryError {
            message: message.into(),
        }
    }

    fn illegal() -> QueryError {
        QueryError::new(ILLEGAL)
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}

impl Statement {
    /// `text` without the chosen outermost clauses, e.g. to send a SHOW to
    /// every backend without its SLIMIT and apply it after merging.
    pub fn text_without(&self, limit: bool, offset: bool, slimit: bool, soffset: bool) -> String {
        let chosen = [limit, offset, slimit, soffset];
        let mut spans: Vec<(usize, usize)> = self
            .clauses
            .iter()
            .zip(chosen)
            .filter_map(|(span, keep_out)| span.filter(|_| keep_out))
            .collect();
        if spans.is_empty() {
            return self.text.clone();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(self.text.len());
        let mut copied = 0;
        for &(start, end) in &spans {
            if start < copied {
                continue;
            }
            out.push_str(self.text.get(copied..start).unwrap_or(""));
            // A space where the clause was, so the tokens around it cannot
            // run together (`b/ LIMIT 1*2` must not become `b/*2`).
            let spaced_before = out.ends_with(|c: char| c.is_whitespace());
            let spaced_after = self
                .text
                .get(end..)
                .is_some_and(|t| t.starts_with(|c: char| c.is_whitespace()));
            if !spaced_before && !spaced_after {
                out.push(' ');
            }
            copied = end;
        }
        out.push_str(self.text.get(copied..).unwrap_or(""));
        let out = out.trim().to_string();
        // The cut must remove exactly the clauses' tokens: anything else (a
        // comment or regex formed across the cut) keeps the original text.
        let kept = |t: &lexer::Token<'_>| !spans.iter().any(|&(a, b)| t.start >= a && t.end <= b);
        let same = match (lexer::tokenize(&self.text), lexer::tokenize(&out)) {
            (Ok(before), Ok(after)) => {
                let before: Vec<&str> = before.iter().filter(|t| kept(t)).map(|t| t.text).collect();
                let after: Vec<&str> = after.iter().map(|t| t.text).collect();
                before == after
            }
            _ => false,
        };
        if same {
            out
        } else {
            self.text.clone()
        }
    }
}

/// Splits `q` into statements on top-level `;` (not inside strings, quoted
/// identifiers, regexes or comments; a `;` inside parentheses is an error),
/// ignores empty statements (so a trailing `;` is fine) and classifies each.
///
/// Errors: no statement at all -> `empty query`; any forbidden or unknown
/// statement -> `illegal InfluxQL`; a lexing error or a missing name ->
/// `error parsing query: ...` in InfluxDB's manner.
/// Deepest parenthesis nesting accepted (far beyond any real query).
pub const MAX_NESTING: usize = 100;

pub fn parse(q: &str) -> Result<Vec<Statement>, QueryError> {
    let tokens =
        lexer::tokenize(q).map_err(|e| QueryError::new(format!("error parsing query: {e}")))?;
    let mut statements = Vec::new();
    let mut begin = 0;
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            T::Punct(P::LParen) => {
                depth += 1;
                // InfluxDB's recursive parser dies of a stack overflow on
                // deep nesting (1.6.7 crashed on ~1 MB of `(`): a query that
                // could take a backend down never leaves the proxy.
                if depth > MAX_NESTING {
                    return Err(QueryError::new(ILLEGAL));
                }
            }
            T::Punct(P::RParen) => {
                if depth == 0 {
                    return Err(QueryError::new(ILLEGAL));
                }
                depth -= 1;
            }
            T::Punct(P::Semicolon) => {
                if depth > 0 {
                    return Err(parse_error(q, Some(t), ")"));
                }
                if let Some(group) = tokens.get(begin..i).filter(|g| !g.is_empty()) {
                    statements.push(analyze(q, group)?);
                }
                begin = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(QueryError::new(ILLEGAL));
    }
    if let Some(group) = tokens.get(begin..).filter(|g| !g.is_empty()) {
        statements.push(analyze(q, group)?);
    }
    if statements.is_empty() {
        return Err(QueryError::new(EMPTY));
    }
    Ok(statements)
}

/// `error parsing query: found X, expected E at line L, char C`, InfluxDB's
/// wording for an unexpected token (`None`: the end of the query).
fn parse_error(q: &str, found: Option<&Token<'_>>, expected: &str) -> QueryError {
    let (what, offset) = match found {
        Some(t) => {
            let what = match t.kind {
                T::Keyword(k) => k.as_str().to_string(),
                _ => t.value().into_owned(),
            };
            (what, t.start)
        }
        None => ("EOF".to_string(), q.len()),
    };
    let (line, column) = lexer::line_column(q, offset);
    QueryError::new(format!(
        "error parsing query: found {what}, expected {expected} at line {line}, char {column}"
    ))
}

/// Keywords no allowed statement uses: their presence anywhere means a
/// forbidden statement (or garbage InfluxDB would refuse anyway).
const FORBIDDEN_ANYWHERE: &[K] = &[
    K::All,
    K::Analyze,
    K::Any,
    K::Begin,
    K::Continuous,
    K::Destinations,
    K::Diagnostics,
    K::End,
    K::Every,
    K::Explain,
    K::Grant,
    K::Grants,
    K::Groups,
    K::Insert,
    K::Into,
    K::Kill,
    K::Password,
    K::Privileges,
    K::Queries,
    K::Query,
    K::Read,
    K::Resample,
    K::Revoke,
    K::Set,
    K::Shards,
    K::Subscription,
    K::Subscriptions,
    K::To,
    K::User,
    K::Users,
    K::Write,
];

/// Keywords that begin a statement; anywhere but first (or SELECT opening a
/// subquery) they mean two statements run together.
const STATEMENT_START: &[K] = &[
    K::Alter,
    K::Create,
    K::Delete,
    K::Drop,
    K::Explain,
    K::Grant,
    K::Insert,
    K::Kill,
    K::Revoke,
    K::Select,
    K::Set,
    K::Show,
];

fn check_keywords(toks: &[Token<'_>]) -> Result<(), QueryError> {
    let mut prev: Option<&Token<'_>> = None;
    for (i, t) in toks.iter().enumerate() {
        if let Some(k) = t.keyword() {
            if FORBIDDEN_ANYWHERE.contains(&k) {
                return Err(QueryError::illegal());
            }
            let subquery = k == K::Select && prev.is_some_and(|p| p.is_punct(P::LParen));
            if i > 0 && STATEMENT_START.contains(&k) && !subquery {
                return Err(QueryError::illegal());
            }
        }
        prev = Some(t);
    }
    Ok(())
}

/// Classifies one statement (non-empty, without `;`) and extracts what it
/// names. The text without its LIMIT/OFFSET, which is what backends get on a
/// fan-out, must be a legal statement too: removing a clause can bring
/// tokens together (`ON LIMIT 1 *` becomes `ON *`, every database).
fn analyze(q: &str, toks: &[Token<'_>]) -> Result<Statement, QueryError> {
    let statement = analyze_one(q, toks)?;
    // Checked as a statement of its own, cut again in turn: each cut is
    // shorter, so this ends.
    if statement.text_without_limit.len() < statement.text.len() {
        let cut = &statement.text_without_limit;
        let cut_tokens = lexer::tokenize(cut).map_err(|_| QueryError::illegal())?;
        analyze(cut, &cut_tokens).map_err(|_| QueryError::illegal())?;
    }
    Ok(statement)
}

fn analyze_one(q: &str, toks: &[Token<'_>]) -> Result<Statement, QueryError> {
    let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
        return Err(QueryError::new(EMPTY));
    };
    check_keywords(toks)?;
    let kind = classify(q, toks)?;
    let base = first.start;
    let text = q.get(base..last.end).unwrap_or("").to_string();
    let matching = matching_parens(toks);

    let mut refs: Vec<(usize, SourceRef)> = Vec::new();
    let mut on: Option<(String, Option<String>)> = None;
    let mut numbers: [Option<u64>; 4] = [None; 4];
    let mut clauses: [Option<(usize, usize)>; 4] = [None; 4];
    let mut bound_params = false;
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate() {
        let next = toks.get(i + 1);
        match t.kind {
            T::Punct(P::LParen) => depth += 1,
            T::Punct(P::RParen) => depth = depth.saturating_sub(1),
            T::BoundParam => bound_params = true,
            T::Keyword(K::From) => source_list(toks, i + 1, &matching, &mut refs),
            T::Punct(P::Eq | P::EqRegex) if after_with_measurement(toks, i) => {
                source_list(toks, i + 1, &matching, &mut refs)
            }
            T::Keyword(K::On) if depth == 0 && on.is_none() => match next {
                Some(db) if db.is_ident() => {
                    let rp = match (toks.get(i + 2), toks.get(i + 3)) {
                        (Some(dot), Some(rp))
                            if dot.is_punct(P::Dot) && dot.start == db.end && rp.is_ident() =>
                        {
                            Some(rp.value().into_owned())
                        }
                        _ => None,
                    };
                    on = Some((db.value().into_owned(), rp));
                }
                // `ON *` (InfluxDB 1.8: every database) escapes db_list.
                Some(star) if star.is_punct(P::Mul) => return Err(QueryError::illegal()),
                _ => {}
            },
            T::Keyword(k @ (K::Limit | K::Offset | K::Slimit | K::Soffset)) if depth == 0 => {
                let slot = match k {
                    K::Limit => 0,
                    K::Offset => 1,
                    K::Slimit => 2,
                    _ => 3,
                };
                if let Some(n) = next.filter(|n| n.kind == T::Integer) {
                    let from = i
                        .checked_sub(1)
                        .and_then(|p| toks.get(p))
                        .map_or(t.start, |p| p.end);
                    if let (Some(num), Some(span)) = (numbers.get_mut(slot), clauses.get_mut(slot))
                    {
                        *num = n.text.parse().ok();
                        *span = Some((from.saturating_sub(base), n.end.saturating_sub(base)));
                    }
                }
            }
            _ => {}
        }
    }

    refs.sort_by_key(|(pos, _)| *pos);
    let mut source_refs: Vec<SourceRef> = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    for (_, r) in refs {
        if !sources.contains(&r.source) {
            sources.push(r.source.clone());
        }
        if !source_refs.contains(&r) {
            source_refs.push(r);
        }
    }
    let first_qualified = source_refs
        .iter()
        .find(|r| r.database.is_some() || r.retention_policy.is_some());

    let mut databases: Vec<String> = Vec::new();
    let named_db = match &kind {
        StatementKind::CreateDatabase(name) | StatementKind::DropDatabase(name) => {
            Some(name.clone())
        }
        _ => None,
    };
    let on_db = on.as_ref().map(|(db, _)| db.clone());
    for db in on_db
        .iter()
        .chain(named_db.iter())
        .chain(source_refs.iter().filter_map(|r| r.database.as_ref()))
    {
        if !databases.contains(db) {
            databases.push(db.clone());
        }
    }
    let database = on_db
        .or_else(|| first_qualified.and_then(|r| r.database.clone()))
        .or(named_db);
    let retention_policy = match &on {
        Some((_, rp)) => rp.clone(),
        None => first_qualified.and_then(|r| r.retention_policy.clone()),
    };
    let wildcard = kind == StatementKind::Select && select_wildcard(toks);
    let group_by_all = kind == StatementKind::Select && group_by_all(toks);
    let order_desc = kind == StatementKind::Select && order_desc(toks);
    let raw_points = kind == StatementKind::Select && raw_points(toks);
    let select_calls = if wildcard {
        select_calls(toks)
    } else {
        Vec::new()
    };

    let mut statement = Statement {
        text,
        kind,
        database,
        databases,
        retention_policy,
        sources,
        source_refs,
        limit: numbers[0],
        offset: numbers[1],
        slimit: numbers[2],
        soffset: numbers[3],
        text_without_limit: String::new(),
        wildcard,
        select_calls,
        group_by_all,
        order_desc,
        raw_points,
        bound_params,
        clauses,
    };
    statement.text_without_limit = statement.text_without(true, true, false, false);
    Ok(statement)
}

/// The statement kind from its leading keywords; anything not allowed is
/// `illegal InfluxQL`.
fn classify(q: &str, toks: &[Token<'_>]) -> Result<StatementKind, QueryError> {
    let kw = |i: usize| toks.get(i).and_then(Token::keyword);
    let name = |i: usize| match toks.get(i) {
        Some(t) if t.is_ident() => Ok(t.value().into_owned()),
        found => Err(parse_error(q, found, "identifier")),
    };
    // `[EXACT] CARDINALITY` at `i`.
    let cardinality = |i: usize| match kw(i) {
        Some(K::Cardinality) => true,
        Some(K::Exact) => kw(i + 1) == Some(K::Cardinality),
        _ => false,
    };
    let kind = match kw(0) {
        Some(K::Select) => {
            let mut depth = 0usize;
            let has_from = toks.iter().any(|t| {
                match t.kind {
                    T::Punct(P::LParen) => depth += 1,
                    T::Punct(P::RParen) => depth = depth.saturating_sub(1),
                    _ => {}
                }
                depth == 0 && t.is_keyword(K::From)
            });
            if !has_from {
                return Err(QueryError::illegal());
            }
            StatementKind::Select
        }
        Some(K::Show) => StatementKind::Show(match kw(1) {
            Some(K::Measurements) => ShowKind::Measurements,
            Some(K::Measurement) if cardinality(2) => ShowKind::MeasurementCardinality,
            // InfluxDB reads `SHOW SERIES EXACT` without CARDINALITY as SHOW SERIES.
            Some(K::Series) if cardinality(2) => ShowKind::SeriesCardinality,
            Some(K::Series) => ShowKind::Series,
            Some(K::Tag) => match kw(2) {
                Some(K::Keys) => ShowKind::TagKeys,
                Some(K::Key) if cardinality(3) => ShowKind::TagKeyCardinality,
                Some(K::Values) if cardinality(3) => ShowKind::TagValuesCardinality,
                Some(K::Values) if kw(3) == Some(K::Exact) => return Err(QueryError::illegal()),
                Some(K::Values) => ShowKind::TagValues,
                _ => return Err(QueryError::illegal()),
            },
            Some(K::Field) => match kw(2) {
                Some(K::Keys) => ShowKind::FieldKeys,
                Some(K::Key) if cardinality(3) => ShowKind::FieldKeyCardinality,
                _ => return Err(QueryError::illegal()),
            },
            Some(K::Databases) => ShowKind::Databases,
            Some(K::Retention) if kw(2) == Some(K::Policies) => ShowKind::RetentionPolicies,
            Some(K::Stats) => ShowKind::Stats,
            _ => return Err(QueryError::illegal()),
        }),
        Some(K::Create) => match kw(1) {
            Some(K::Database) => StatementKind::CreateDatabase(name(2)?),
            Some(K::Retention) if kw(2) == Some(K::Policy) => StatementKind::CreateRetentionPolicy,
            _ => return Err(QueryError::illegal()),
        },
        Some(K::Drop) => match kw(1) {
            Some(K::Database) => StatementKind::DropDatabase(name(2)?),
            Some(K::Retention) if kw(2) == Some(K::Policy) => StatementKind::DropRetentionPolicy,
            Some(K::Measurement) => StatementKind::DropMeasurement(name(2)?),
            Some(K::Series) => StatementKind::DropSeries,
            _ => return Err(QueryError::illegal()),
        },
        Some(K::Delete) => StatementKind::Delete,
        Some(K::Alter) if kw(1) == Some(K::Retention) && kw(2) == Some(K::Policy) => {
            StatementKind::AlterRetentionPolicy
        }
        _ => return Err(QueryError::illegal()),
    };
    Ok(kind)
}

/// For each `(`, the index of its `)` (or `toks.len()` when unclosed).
fn matching_parens(toks: &[Token<'_>]) -> Vec<usize> {
    let mut matching = vec![toks.len(); toks.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.is_punct(P::LParen) {
            open.push(i);
        } else if t.is_punct(P::RParen) {
            if let Some(slot) = open.pop().and_then(|o| matching.get_mut(o)) {
                *slot = i;
            }
        }
    }
    matching
}

/// Whether the token at `i` follows `WITH MEASUREMENT`.
fn after_with_measurement(toks: &[Token<'_>], i: usize) -> bool {
    let at = |back: usize| i.checked_sub(back).and_then(|j| toks.get(j));
    at(1).is_some_and(|t| t.is_keyword(K::Measurement))
        && at(2).is_some_and(|t| t.is_keyword(K::With))
}

/// Reads a source list starting at `j` as InfluxDB's `parseSources` does:
/// sources separated by `,`; a subquery is skipped here (its own FROM is
/// read when the caller's scan reaches it).
fn source_list(
    toks: &[Token<'_>],
    mut j: usize,
    matching: &[usize],
    refs: &mut Vec<(usize, SourceRef)>,
) {
    while let Some(t) = toks.get(j) {
        match t.kind {
            T::Regex => {
                refs.push((
                    t.start,
                    SourceRef {
                        database: None,
                        retention_policy: None,
                        source: Source::Regex(t.value().into_owned()),
                    },
                ));
                j += 1;
            }
            T::Punct(P::LParen) => j = matching.get(j).map_or(toks.len(), |close| close + 1),
            T::Ident | T::QuotedIdent => j = qualified_source(toks, j, refs),
            _ => return,
        }
        match toks.get(j) {
            Some(comma) if comma.is_punct(P::Comma) => j += 1,
            _ => return,
        }
    }
}

/// Reads `[db.][rp.]name` or `[db.][rp.]/regex/` starting at the identifier
/// at `j` (InfluxDB's `parseSegmentedIdents`: a `.` must touch what precedes
/// it; `..` is an empty segment; a regex must touch its `.`). Returns the
/// index after the source.
fn qualified_source(toks: &[Token<'_>], j: usize, refs: &mut Vec<(usize, SourceRef)>) -> usize {
    let Some(first) = toks.get(j) else {
        return j;
    };
    let mut segments: Vec<String> = vec![first.value().into_owned()];
    let mut regex: Option<String> = None;
    let mut k = j + 1;
    while let (Some(prev), Some(dot)) = (toks.get(k - 1), toks.get(k)) {
        if !dot.is_punct(P::Dot) || dot.start != prev.end {
            break;
        }
        match toks.get(k + 1) {
            Some(n) if n.kind == T::Regex && n.start == dot.end && segments.len() < 3 => {
                regex = Some(n.value().into_owned());
                k += 2;
                break;
            }
            Some(n) if n.is_punct(P::Dot) && n.start == dot.end => {
                segments.push(String::new());
                k += 1;
            }
            Some(n) if n.is_ident() => {
                segments.push(n.value().into_owned());
                k += 2;
            }
            _ => {
                k += 1;
                break;
            }
        }
    }
    let named = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
    let (database, retention_policy, source) = match regex {
        Some(re) if segments.len() == 1 => (None, named(segments.first()), Source::Regex(re)),
        Some(re) => (
            named(segments.first()),
            named(segments.get(1)),
            Source::Regex(re),
        ),
        None if segments.len() == 1 => (
            None,
            None,
            Source::Measurement(segments.pop().unwrap_or_default()),
        ),
        None if segments.len() == 2 => (
            None,
            named(segments.first()),
            Source::Measurement(segments.pop().unwrap_or_default()),
        ),
        // Three segments (more is an InfluxDB error; the first still names
        // a database, which the caller must check).
        None => (
            named(segments.first()),
            named(segments.get(1)),
            Source::Measurement(segments.get(2).cloned().unwrap_or_default()),
        ),
    };
    refs.push((
        first.start,
        SourceRef {
            database,
            retention_policy,
            source,
        },
    ));
    k
}

/// Whether the outermost SELECT's field list (up to its FROM) has a `*` in
/// operand position (`*`, `*::field`, `count(*)`) or a regex field.
fn select_wildcard(toks: &[Token<'_>]) -> bool {
    let mut depth = 0usize;
    let mut prev: Option<&Token<'_>> = None;
    for t in toks.iter().skip(1) {
        match t.kind {
            T::Punct(P::LParen) => depth += 1,
            T::Punct(P::RParen) => depth = depth.saturating_sub(1),
            T::Keyword(K::From) if depth == 0 => return false,
            T::Regex => return true,
            T::Punct(P::Mul) => {
                let operand_expected = match prev {
                    None => true,
                    Some(p) => matches!(
                        p.kind,
                        T::Keyword(K::Select | K::Distinct) | T::Punct(P::Comma | P::LParen)
                    ),
                };
                if operand_expected {
                    return true;
                }
            }
            _ => {}
        }
        prev = Some(t);
    }
    false
}

/// See [`Statement::order_desc`]: `ORDER BY [time] DESC` at depth 0 (the
/// only ordering InfluxQL has is by time; `ORDER BY time ASC, ...` is not
/// valid there either).
fn order_desc(toks: &[Token<'_>]) -> bool {
    let mut depth = 0usize;
    let mut ordering = false;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            T::Punct(P::LParen) => depth += 1,
            T::Punct(P::RParen) => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            T::Keyword(K::Order) => {
                ordering = toks.get(i + 1).is_some_and(|n| n.is_keyword(K::By));
            }
            T::Keyword(K::Desc) if ordering => return true,
            T::Keyword(K::Limit | K::Offset | K::Slimit | K::Soffset) => ordering = false,
            _ => {}
        }
    }
    false
}

/// See [`Statement::raw_points`]: no field list, the outermost or a
/// subquery's, has a call or `DISTINCT`.
fn raw_points(toks: &[Token<'_>]) -> bool {
    let selects = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_keyword(K::Select));
    for (start, _) in selects {
        let mut depth = 0usize;
        for (i, t) in toks.iter().enumerate().skip(start + 1) {
            match t.kind {
                T::Punct(P::LParen) => {
                    // A call: a name (or a keyword used as one) before `(`.
                    let callee = toks.get(i - 1).is_some_and(|p| {
                        p.is_ident() || matches!(p.kind, T::Keyword(_)) && !p.is_keyword(K::Select)
                    });
                    if callee {
                        return false;
                    }
                    depth += 1;
                }
                T::Punct(P::RParen) if depth == 0 => break,
                T::Punct(P::RParen) => depth -= 1,
                T::Keyword(K::Distinct) => return false,
                T::Keyword(K::From) if depth == 0 => break,
                _ => {}
            }
        }
    }
    true
}

/// See [`Statement::group_by_all`].
fn group_by_all(toks: &[Token<'_>]) -> bool {
    let mut depth = 0usize;
    let mut in_group_by = false;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            T::Punct(P::LParen) => {
                if i > 0 && toks[i - 1].kind == T::Keyword(K::From) {
                    return false;
                }
                depth += 1;
            }
            T::Punct(P::RParen) => depth = depth.saturating_sub(1),
            T::Keyword(K::By)
                if depth == 0 && i > 0 && toks[i - 1].kind == T::Keyword(K::Group) =>
            {
                in_group_by = true;
            }
            T::Punct(P::Mul) if depth == 0 && in_group_by => return true,
            T::Keyword(_) if depth == 0 && in_group_by => in_group_by = false,
            _ => {}
        }
    }
    false
}

/// The outermost field list's items (see [`Statement::select_calls`]).
fn select_calls(toks: &[Token<'_>]) -> Vec<Option<WildcardCall>> {
    let mut items: Vec<&[Token<'_>]> = Vec::new();
    let (mut depth, mut start) = (0usize, 1usize);
    for (i, t) in toks.iter().enumerate().skip(1) {
        match t.kind {
            T::Punct(P::LParen) => depth += 1,
            T::Punct(P::RParen) => depth = depth.saturating_sub(1),
            T::Punct(P::Comma) if depth == 0 => {
                items.push(&toks[start..i]);
                start = i + 1;
            }
            T::Keyword(K::From) if depth == 0 => {
                items.push(&toks[start..i]);
                break;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(|item| match item {
            [f, open, arg, rest @ ..]
                if matches!(f.kind, T::Ident | T::QuotedIdent)
                    && open.kind == T::Punct(P::LParen)
                    && matches!(arg.kind, T::Punct(P::Mul) | T::Regex) =>
            {
                let function = f.value().to_ascii_lowercase();
                let alias = match rest {
                    [.., as_, alias] if as_.kind == T::Keyword(K::As) => Some(alias.value()),
                    _ => None,
                };
                Some(WildcardCall {
                    prefix: alias.map_or_else(|| function.clone(), |a| a.into_owned()),
                    function,
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(q: &str) -> Statement {
        let mut all = parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        assert_eq!(all.len(), 1, "{q:?} gave {all:?}");
        all.remove(0)
    }

    fn refused(q: &str) -> String {
        match parse(q) {
            Ok(s) => panic!("{q:?} was accepted as {s:?}"),
            Err(e) => e.message,
        }
    }

    fn m(name: &str) -> Source {
        Source::Measurement(name.to_string())
    }

    fn re(pattern: &str) -> Source {
        Source::Regex(pattern.to_string())
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    /// (database, retention policy, sources) of a one-statement query.
    fn place(q: &str) -> (Option<String>, Option<String>, Vec<Source>) {
        let s = one(q);
        (s.database, s.retention_policy, s.sources)
    }

    #[test]
    fn qualified_sources_as_the_go_proxy_reads_them() {
        // Reference 4.3: db.rp.m, db..m, rp.m, quoted parts.
        assert_eq!(place("SELECT v FROM cpu"), (None, None, vec![m("cpu")]));
        assert_eq!(
            place("SELECT v FROM db.rp.cpu"),
            (some("db"), some("rp"), vec![m("cpu")])
        );
        assert_eq!(
            place("SELECT v FROM db..cpu"),
            (some("db"), None, vec![m("cpu")])
        );
        assert_eq!(
            place("SELECT v FROM rp.cpu"),
            (None, some("rp"), vec![m("cpu")])
        );
        assert_eq!(
            place(r#"SELECT v FROM "db"."rp"."cpu""#),
            (some("db"), some("rp"), vec![m("cpu")])
        );
        assert_eq!(
            place(r#"SELECT v FROM "my db".autogen."cpu load""#),
            (some("my db"), some("autogen"), vec![m("cpu load")])
        );
        assert_eq!(
            place(r#"SELECT v FROM "d\"b"..  "a\"b""#),
            (some("d\"b"), None, vec![m("a\"b")])
        );
        // A space before a dot ends the name (InfluxDB then refuses the rest).
        assert_eq!(place("SELECT v FROM db .rp.cpu").2, vec![m("db")]);
        assert_eq!(place(r#"SELECT v FROM "a\"b""#).2, vec![m("a\"b")]);
        assert_eq!(place(r#"SELECT v FROM "a\\b""#).2, vec![m("a\\b")]);
        assert_eq!(
            place("SELECT v FROM \"\".\"\".cpu"),
            (None, None, vec![m("cpu")])
        );
        // Whitespace after a dot is allowed (InfluxDB's ParseIdent skips it).
        assert_eq!(
            place("SELECT v FROM db. rp. cpu"),
            (some("db"), some("rp"), vec![m("cpu")])
        );
    }

    #[test]
    fn regex_and_several_sources() {
        assert_eq!(place("SELECT v FROM /cpu.*/").2, vec![re("cpu.*")]);
        assert_eq!(
            place("SELECT v FROM db.rp./cpu.*/"),
            (some("db"), some("rp"), vec![re("cpu.*")])
        );
        assert_eq!(
            place("SELECT v FROM rp./c/"),
            (None, some("rp"), vec![re("c")])
        );
        assert_eq!(
            place("SELECT v FROM db../c/"),
            (some("db"), None, vec![re("c")])
        );
        assert_eq!(
            place(r"SELECT v FROM a, b, /c\/d/, a, db2.rp.e"),
            (
                some("db2"),
                some("rp"),
                vec![m("a"), m("b"), re("c/d"), m("e")]
            )
        );
        let s = one("SELECT v FROM a, db2.rp.e, db3..f");
        assert_eq!(s.databases, vec!["db2", "db3"]);
        assert_eq!(
            s.source_refs,
            vec![
                SourceRef {
                    database: None,
                    retention_policy: None,
                    source: m("a")
                },
                SourceRef {
                    database: some("db2"),
                    retention_policy: some("rp"),
                    source: m("e")
                },
                SourceRef {
                    database: some("db3"),
                    retention_policy: None,
                    source: m("f")
                },
            ]
        );
    }

    #[test]
    fn subqueries_are_flattened_at_any_depth() {
        let s = one("SELECT max(v) FROM (SELECT mean(v) AS v FROM a, /b.*/ GROUP BY time(1m)), c");
        assert_eq!(s.sources, vec![m("a"), re("b.*"), m("c")]);
        assert_eq!(s.database, None);
        let s = one("SELECT * FROM (SELECT * FROM (SELECT * FROM db.rp.deep) WHERE x > 1)");
        assert_eq!(
            (s.database, s.retention_policy, s.sources),
            (some("db"), some("rp"), vec![m("deep")])
        );
        assert_eq!(s.databases, vec!["db"]);
        let s = one("SELECT v FROM a, (SELECT v FROM other.autogen.b)");
        assert_eq!(s.databases, vec!["other"]);
        assert_eq!(s.sources, vec![m("a"), m("b")]);
    }

    #[test]
    fn on_clause_names_the_database() {
        let s = one("SHOW TAG KEYS ON db FROM cpu");
        assert_eq!(s.kind, StatementKind::Show(ShowKind::TagKeys));
        assert_eq!((s.database, s.sources), (some("db"), vec![m("cpu")]));
        let s = one(r#"SHOW MEASUREMENTS ON "my db""#);
        assert_eq!(s.database, some("my db"));
        assert_eq!(s.databases, vec!["my db"]);
        let s = one("SHOW MEASUREMENTS ON db.rp");
        assert_eq!((s.database, s.retention_policy), (some("db"), some("rp")));
        // ON wins over a qualified source, and both are checked.
        let s = one("SHOW SERIES ON a FROM b.rp.cpu");
        assert_eq!(s.database, some("a"));
        assert_eq!(s.databases, vec!["a", "b"]);
        let s = one("CREATE RETENTION POLICY \"one day\" ON db DURATION 1d REPLICATION 1 DEFAULT");
        assert_eq!(s.kind, StatementKind::CreateRetentionPolicy);
        assert_eq!(s.database, some("db"));
        let s = one("alter retention policy rp on db duration 2d");
        assert_eq!(s.kind, StatementKind::AlterRetentionPolicy);
        assert_eq!(s.database, some("db"));
        let s = one("DROP RETENTION POLICY rp ON db");
        assert_eq!(s.kind, StatementKind::DropRetentionPolicy);
        assert_eq!(s.database, some("db"));
        // InfluxDB 1.8's `ON *` would bypass db_list.
        assert_eq!(refused("SHOW MEASUREMENTS ON *"), ILLEGAL);
    }

    #[test]
    fn grafana_queries() {
        let s = one(
            "SELECT mean(\"value\") FROM \"cpu\" WHERE (\"host\" =~ /^server1$/) AND time >= now() - 1h \
             GROUP BY time(10s) fill(null)",
        );
        assert_eq!(s.kind, StatementKind::Select);
        assert_eq!(s.sources, vec![m("cpu")]);
        assert!(!s.wildcard);
        let s = one(
            "SELECT non_negative_derivative(mean(\"bytes_recv\"), 1s) *8 FROM \"autogen\".\"net\" \
             WHERE \"host\" =~ /^(a|b)$/ AND time >= 1700000000000ms and time <= 1700003600000ms \
             GROUP BY time(1m), \"host\" fill(none)",
        );
        assert_eq!(
            (s.retention_policy, s.sources),
            (some("autogen"), vec![m("net")])
        );
        let s = one("SELECT \"v\"::field / 2 FROM cpu WHERE time > now() - 5m");
        assert_eq!(s.sources, vec![m("cpu")]);
        // Grafana's template-variable and editor queries.
        let s = one("SHOW TAG VALUES WITH KEY = \"host\"");
        assert_eq!(s.kind, StatementKind::Show(ShowKind::TagValues));
        assert!(s.sources.is_empty());
        let s = one(
            "SHOW TAG VALUES FROM \"cpu\" WITH KEY IN (\"host\", \"region\") WHERE \"dc\" = 'x'",
        );
        assert_eq!(s.sources, vec![m("cpu")]);
        let s = one("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu/ LIMIT 100");
        assert_eq!((s.sources, s.limit), (vec![re("cpu")], Some(100)));
        let s = one("SHOW MEASUREMENTS WITH MEASUREMENT = mem");
        assert_eq!(s.sources, vec![m("mem")]);
        assert_eq!(
            one("SHOW FIELD KEYS FROM \"cpu\"").kind,
            StatementKind::Show(ShowKind::FieldKeys)
        );
        assert_eq!(
            one("SHOW RETENTION POLICIES on \"db\"").database,
            some("db")
        );
        // Grafana joins several panels' queries with `;`.
        let all = parse(
            "SELECT mean(v) FROM a WHERE time > now() - 1h GROUP BY time(1m);SELECT max(v) FROM b",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].sources, vec![m("b")]);
        assert_eq!(
            all[0].text,
            "SELECT mean(v) FROM a WHERE time > now() - 1h GROUP BY time(1m)"
        );
    }

    #[test]
    fn whitespace_newlines_and_comments_anywhere() {
        for q in [
            "SELECT v\nFROM cpu",
            "SELECT v\r\nFROM\tcpu\n",
            "\n\t SELECT\n\tv\n\tFROM\n\t\"cpu\"\n",
            "-- leading comment\nSELECT v FROM cpu -- trailing",
            "/* leading */ SELECT v -- c\n FROM cpu",
            "SELECT v FROM cpu/* glued */",
            "select V from CPU where time > now() - 1h",
        ] {
            let s = one(q);
            assert_eq!(s.kind, StatementKind::Select, "{q:?}");
            assert_eq!(s.sources.len(), 1, "{q:?}");
        }
        assert_eq!(
            one("-- c\nSELECT v FROM cpu -- t").text,
            "SELECT v FROM cpu"
        );
        assert_eq!(one("SELECT v FROM CPU").sources, vec![m("CPU")]);
    }

    #[test]
    fn statements_split_only_on_real_semicolons() {
        let all = parse(
            "SELECT v FROM a WHERE t = 'x;y' AND h =~ /p;q/; SELECT \"c;d\" FROM b -- ;x\n; /* ; */ ;;",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].text,
            "SELECT v FROM a WHERE t = 'x;y' AND h =~ /p;q/"
        );
        assert_eq!(all[1].text, "SELECT \"c;d\" FROM b");
        assert_eq!(parse("SHOW DATABASES;").unwrap().len(), 1);
        assert_eq!(parse(";;SHOW DATABASES;;").unwrap().len(), 1);
        // A `;` inside parentheses is InfluxDB's parse error too.
        assert!(refused("SELECT v FROM (SELECT v FROM a; SHOW DATABASES)")
            .starts_with("error parsing query: found ;, expected )"));
    }

    #[test]
    fn empty_queries() {
        for q in [
            "",
            "   ",
            "\n\t",
            ";",
            " ; ;",
            "-- only a comment",
            "/* c */",
            "/* a */ ; -- b",
        ] {
            assert_eq!(refused(q), EMPTY, "{q:?}");
        }
    }

    #[test]
    fn show_kinds() {
        let cases = [
            ("SHOW MEASUREMENTS", ShowKind::Measurements),
            (
                "SHOW MEASUREMENT CARDINALITY",
                ShowKind::MeasurementCardinality,
            ),
            (
                "SHOW MEASUREMENT EXACT CARDINALITY ON db",
                ShowKind::MeasurementCardinality,
            ),
            (
                "SHOW SERIES ON db FROM cpu WHERE a = 'b' LIMIT 2",
                ShowKind::Series,
            ),
            ("SHOW SERIES CARDINALITY", ShowKind::SeriesCardinality),
            (
                "SHOW SERIES EXACT CARDINALITY FROM cpu",
                ShowKind::SeriesCardinality,
            ),
            ("SHOW TAG KEYS", ShowKind::TagKeys),
            ("SHOW TAG KEY CARDINALITY", ShowKind::TagKeyCardinality),
            (
                "SHOW TAG KEY EXACT CARDINALITY",
                ShowKind::TagKeyCardinality,
            ),
            ("SHOW TAG VALUES WITH KEY = host", ShowKind::TagValues),
            (
                "SHOW TAG VALUES CARDINALITY WITH KEY = host",
                ShowKind::TagValuesCardinality,
            ),
            (
                "SHOW TAG VALUES EXACT CARDINALITY WITH KEY =~ /h/",
                ShowKind::TagValuesCardinality,
            ),
            ("SHOW FIELD KEYS ON db", ShowKind::FieldKeys),
            ("SHOW FIELD KEY CARDINALITY", ShowKind::FieldKeyCardinality),
            (
                "SHOW FIELD KEY EXACT CARDINALITY",
                ShowKind::FieldKeyCardinality,
            ),
            ("SHOW DATABASES", ShowKind::Databases),
            ("SHOW RETENTION POLICIES", ShowKind::RetentionPolicies),
            ("SHOW STATS", ShowKind::Stats),
            ("show stats for 'httpd'", ShowKind::Stats),
        ];
        for (q, kind) in cases {
            assert_eq!(one(q).kind, StatementKind::Show(kind), "{q}");
        }
        assert!(ShowKind::TagValuesCardinality.is_cardinality());
        assert!(!ShowKind::TagValues.is_cardinality());
        assert_eq!(one("SHOW SERIES ON db FROM cpu").sources, vec![m("cpu")]);
    }

    #[test]
    fn ddl_and_deletes() {
        let s = one("CREATE DATABASE \"my \\\"db\\\"\"");
        assert_eq!(s.kind, StatementKind::CreateDatabase("my \"db\"".into()));
        assert_eq!(s.database, some("my \"db\""));
        assert_eq!(s.databases, vec!["my \"db\""]);
        let s = one("create database x with duration 1d replication 1 shard duration 1h name rp1");
        assert_eq!(s.kind, StatementKind::CreateDatabase("x".into()));
        assert_eq!(
            one("DROP DATABASE x").kind,
            StatementKind::DropDatabase("x".into())
        );
        assert_eq!(
            one("DROP MEASUREMENT \"cpu load\"").kind,
            StatementKind::DropMeasurement("cpu load".into())
        );
        let s = one("DROP SERIES FROM cpu WHERE host = 'a'");
        assert_eq!(
            (s.kind, s.sources),
            (StatementKind::DropSeries, vec![m("cpu")])
        );
        let s = one("DROP SERIES WHERE host = 'a'");
        assert_eq!((s.kind, s.sources), (StatementKind::DropSeries, vec![]));
        let s = one("DELETE FROM cpu WHERE time < now() - 1d");
        assert_eq!((s.kind, s.sources), (StatementKind::Delete, vec![m("cpu")]));
        let s = one("DELETE FROM /c.*/");
        assert_eq!(s.sources, vec![re("c.*")]);
        assert_eq!(one("DELETE WHERE time < 0").kind, StatementKind::Delete);
        // A missing name is InfluxDB's parse error.
        assert_eq!(
            refused("CREATE DATABASE"),
            "error parsing query: found EOF, expected identifier at line 1, char 16"
        );
        assert_eq!(
            refused("DROP MEASUREMENT 'x'"),
            "error parsing query: found x, expected identifier at line 1, char 18"
        );
        assert_eq!(
            refused("DROP DATABASE FROM"),
            "error parsing query: found FROM, expected identifier at line 1, char 15"
        );
    }

    #[test]
    fn every_forbidden_statement_is_illegal() {
        for q in [
            "GRANT ALL TO bob",
            "GRANT READ ON db TO bob",
            "REVOKE ALL PRIVILEGES FROM bob",
            "REVOKE WRITE ON db FROM bob",
            "KILL QUERY 12",
            "KILL QUERY 12 ON \"host\"",
            "EXPLAIN SELECT * FROM cpu",
            "EXPLAIN ANALYZE SELECT * FROM cpu",
            "SELECT * INTO other FROM cpu",
            "select * into db.rp.:MEASUREMENT from /.*/ group by *",
            "SELECT mean(v) INTO \"x\" FROM cpu GROUP BY time(1m)",
            "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO x FROM cpu GROUP BY time(1m) END",
            "DROP CONTINUOUS QUERY cq ON db",
            "SHOW CONTINUOUS QUERIES",
            "SHOW USERS",
            "SHOW GRANTS FOR bob",
            "SHOW QUERIES",
            "SHOW SHARDS",
            "SHOW SHARD GROUPS",
            "SHOW DIAGNOSTICS",
            "SHOW DIAGNOSTICS FOR 'build'",
            "SHOW SUBSCRIPTIONS",
            "CREATE USER bob WITH PASSWORD 'x'",
            "CREATE USER bob WITH PASSWORD 'x' WITH ALL PRIVILEGES",
            "DROP USER bob",
            "SET PASSWORD FOR bob = 'x'",
            "CREATE SUBSCRIPTION s ON db.rp DESTINATIONS ALL 'udp://h:1'",
            "DROP SUBSCRIPTION s ON db.rp",
            "DROP SHARD 1",
            "ALTER DATABASE x",
            "ALTER USER bob",
            "INSERT cpu v=1",
            "SHOW",
            "SHOW TAG",
            "SHOW MEASUREMENT",
            "SHOW TAG VALUES EXACT",
            "SHOW FIELD",
            "SHOW RETENTION",
            "CREATE",
            "DROP",
            "DROP RETENTION",
            "SELECT 1",
            "SELECT v",
            "cpu",
            "\"SELECT\" v FROM cpu",
            "(SELECT v FROM cpu)",
            ")",
            "42",
            "'SELECT * FROM cpu'",
        ] {
            assert_eq!(refused(q), ILLEGAL, "{q:?}");
        }
    }

    #[test]
    fn a_cut_clause_cannot_bring_on_and_star_together() {
        // Without its LIMIT/OFFSET (what a fan-out sends) this would be
        // `ON *`: every database, past db_list.
        for q in [
            "SHOW MEASUREMENTS ON LIMIT 1 *",
            "SHOW MEASUREMENTS WITH MEASUREMENT = x ON OFFSET 2 * pu",
        ] {
            assert_eq!(
                parse(q).map_err(|e| e.message),
                Err(ILLEGAL.to_string()),
                "{q}"
            );
        }
    }

    #[test]
    fn forbidden_statements_cannot_be_smuggled() {
        for q in [
            "SELECT * FROM a; GRANT ALL TO x",
            "SELECT * FROM a;GRANT ALL TO x;",
            "SHOW DATABASES; SHOW USERS",
            "select * into x from y",
            "SeLeCt * InTo x FrOm y",
            "SELECT *\nINTO\tx\nFROM y",
            "SELECT * FROM (SELECT * INTO x FROM y)",
            "SELECT * FROM a, (SELECT * FROM (SELECT v INTO x FROM y))",
            "/* */GRANT ALL TO x",
            "-- hello\nGRANT ALL TO x",
            "/* SELECT */ GRANT ALL TO x",
            "gRaNt all to x",
            "SELECT * FROM a -- c\r; GRANT ALL TO x",
            "SELECT * FROM a /* ; */; DROP USER x",
            "SELECT * FROM a GRANT ALL TO x",
            "SELECT * FROM a DROP DATABASE x",
            "SHOW MEASUREMENTS SHOW USERS",
            "SELECT * FROM (GRANT ALL TO x)",
            "SELECT * FROM (SHOW USERS)",
            "SELECT * FROM (DROP DATABASE x)",
            "DELETE FROM a WHERE (KILL)",
            "SELECT v FROM a WHERE h =~ /x/; EXPLAIN SELECT * FROM b",
            "SELECT v FROM a WHERE h = 'x'; CREATE USER u WITH PASSWORD 'p'",
            "CREATE DATABASE x; CREATE CONTINUOUS QUERY c ON x BEGIN SELECT count(v) INTO y FROM z GROUP BY time(1h) END",
        ] {
            assert_eq!(refused(q), ILLEGAL, "{q:?}");
        }
        // Block comments and regexes where InfluxDB would read them the other
        // way round are refused, never split differently.
        for q in [
            "SELECT * FROM /*/; GRANT ALL TO x; /*/",
            "SELECT /*/; GRANT ALL TO x; /*/ FROM a",
            "SELECT v FROM a WHERE h =~ /*/; GRANT ALL TO x; /*/",
            "SELECT v FROM a GROUP BY /*/; GRANT ALL TO x; /*/",
        ] {
            assert!(parse(q).is_err(), "{q:?}");
        }
        // A comment where InfluxDB reads one hides nothing it would run.
        let all = parse("SELECT v FROM a WHERE h = /* ; GRANT ALL TO x; */ 'b'").unwrap();
        assert_eq!(all.len(), 1);
        // `v./v/` outside FROM is division for InfluxDB, so `;` splits here.
        assert_eq!(
            refused("SELECT v./b FROM c; GRANT ALL PRIVILEGES TO x; SELECT d /2 FROM e"),
            ILLEGAL
        );
    }

    #[test]
    fn limits_are_read_and_can_be_removed() {
        let s = one("SHOW MEASUREMENTS LIMIT 10 OFFSET 5");
        assert_eq!((s.limit, s.offset), (Some(10), Some(5)));
        assert_eq!(s.text_without_limit, "SHOW MEASUREMENTS");
        let s = one("SHOW TAG KEYS FROM cpu limit 2 offset 1 SLIMIT 3 soffset 4");
        assert_eq!(
            (s.limit, s.offset, s.slimit, s.soffset),
            (Some(2), Some(1), Some(3), Some(4))
        );
        assert_eq!(
            s.text_without_limit,
            "SHOW TAG KEYS FROM cpu SLIMIT 3 soffset 4"
        );
        assert_eq!(
            s.text_without(true, true, true, true),
            "SHOW TAG KEYS FROM cpu"
        );
        assert_eq!(
            s.text_without(false, false, true, false),
            "SHOW TAG KEYS FROM cpu limit 2 offset 1 soffset 4"
        );
        let s = one("SHOW SERIES\nLIMIT\t3 -- c\nOFFSET 1");
        assert_eq!(s.text_without_limit, "SHOW SERIES");
        let s = one("SHOW MEASUREMENTS");
        assert_eq!((s.limit, s.offset), (None, None));
        assert_eq!(s.text_without_limit, s.text);
        // Only the outermost statement's clauses count.
        let s = one("SELECT v FROM (SELECT v FROM a LIMIT 1) LIMIT 7");
        assert_eq!(s.limit, Some(7));
        assert_eq!(
            s.text_without_limit,
            "SELECT v FROM (SELECT v FROM a LIMIT 1)"
        );
        // A LIMIT without an integer is left for the backend to refuse.
        let s = one("SHOW MEASUREMENTS LIMIT x");
        assert_eq!(s.limit, None);
        assert_eq!(s.text_without_limit, "SHOW MEASUREMENTS LIMIT x");
        let s = one("SHOW MEASUREMENTS LIMIT 99999999999999999999999");
        assert_eq!(s.limit, None);
    }

    /// `flag` holds for every query of `yes` and for none of `no`.
    fn flag_holds(flag: fn(&Statement) -> bool, yes: &[&str], no: &[&str]) {
        for q in yes {
            assert!(flag(&one(q)), "{q}");
        }
        for q in no {
            assert!(!flag(&one(q)), "{q}");
        }
    }

    #[test]
    fn group_by_star_is_seen_in_the_outermost_statement_only() {
        flag_holds(
            |s| s.group_by_all,
            &[
                "SELECT * FROM a, b GROUP BY *",
                "SELECT mean(v) FROM a GROUP BY time(1m), * fill(none)",
                "select v from a group by host, * limit 1",
            ],
            &[
                "SELECT * FROM a GROUP BY host",
                "SELECT v * 2 FROM a GROUP BY host LIMIT 1",
                "SELECT * FROM (SELECT * FROM a GROUP BY *) GROUP BY *",
                "SHOW SERIES FROM a",
            ],
        );
    }

    #[test]
    fn descending_order_is_the_outermost_order_by_only() {
        flag_holds(
            |s| s.order_desc,
            &[
                "SELECT * FROM a, b ORDER BY time DESC",
                "select v from a where t = 'DESC' group by * order by desc limit 2",
                "SELECT v FROM (SELECT v FROM a ORDER BY time ASC) ORDER BY time DESC",
            ],
            &[
                "SELECT * FROM a, b WHERE t = 'DESC'",
                r#"SELECT "desc" FROM a, "DESC" ORDER BY time"#,
                "SELECT v FROM (SELECT v FROM a ORDER BY time DESC) ORDER BY time ASC",
                "SELECT v FROM (SELECT v FROM a ORDER BY time DESC)",
                "SELECT v FROM a /* ORDER BY time DESC */",
                "SHOW TAG KEYS FROM a",
            ],
        );
    }

    #[test]
    fn raw_points_are_selects_without_calls_or_subqueries() {
        flag_holds(
            |s| s.raw_points,
            &[
                "SELECT * FROM a, b",
                "SELECT v, (v + 1) * 2 AS w FROM a GROUP BY host ORDER BY time DESC",
                "SELECT \"count\" FROM a WHERE time > now() - 1h",
                "SELECT v FROM (SELECT v, w FROM a WHERE time > now() - 1h) ORDER BY time DESC",
            ],
            &[
                "SELECT count(v) FROM a, b",
                "SELECT v, MEAN(w) FROM a",
                "SELECT DISTINCT v FROM a",
                "SELECT v FROM (SELECT max(v) AS v FROM a GROUP BY time(1m))",
                "SELECT top(v, 3) FROM a",
                "SHOW MEASUREMENTS",
            ],
        );
    }

    #[test]
    fn calls_over_wildcards_are_listed_item_by_item() {
        let prefixes = |q: &str| -> Vec<Option<String>> {
            one(q)
                .select_calls
                .into_iter()
                .map(|c| c.map(|c| format!("{}:{}", c.function, c.prefix)))
                .collect()
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            prefixes("SELECT MEAN(*), count(/x/) AS \"my c\", max(v) AS m FROM a, b"),
            [some("mean:mean"), some("count:my c"), None]
        );
        assert_eq!(prefixes("SELECT *, x FROM a, b"), [None, None]);
        assert!(prefixes("SELECT mean(v) FROM a, b").is_empty());
    }

    #[test]
    fn wildcards_in_the_field_list() {
        flag_holds(
            |s| s.wildcard,
            &[
                "SELECT * FROM a",
                "SELECT *::field FROM a",
                "SELECT v, * FROM a",
                "SELECT count(*) FROM a",
                "SELECT /v/ FROM a",
                "SELECT mean(/v/) FROM a",
                "SELECT * FROM (SELECT v FROM a)",
            ],
            &[
                "SELECT v FROM a",
                "SELECT v * 2 FROM a",
                "SELECT count(v)*2 FROM a",
                "SELECT v FROM (SELECT * FROM a)",
                "SELECT v FROM a WHERE h =~ /x/ GROUP BY *",
                "SHOW TAG KEYS",
            ],
        );
    }

    #[test]
    fn bound_parameters_are_flagged() {
        assert!(one("SELECT v FROM $m").bound_params);
        assert!(one("SELECT v FROM cpu WHERE host = $host").bound_params);
        assert!(!one("SELECT v FROM cpu WHERE host = '$host'").bound_params);
    }

    #[test]
    fn lexing_errors_come_back_in_influxdb_words() {
        assert_eq!(
            refused("SELECT * FROM cpu WHERE host = 'a"),
            "error parsing query: found unterminated string at line 1, char 32"
        );
        assert_eq!(
            refused("SELECT * FROM \"cpu"),
            "error parsing query: found unterminated quoted identifier at line 1, char 15"
        );
        assert!(refused("SELECT * FROM /cpu").contains("unterminated regex"));
        assert!(refused("\"").contains("unterminated quoted identifier"));
        assert!(refused("'").contains("unterminated string"));
        assert!(refused("SELECT v FROM cpu\0").contains("NUL"));
        // A lexing error anywhere refuses the whole request, as InfluxDB does.
        assert!(refused("SHOW DATABASES; SELECT 'x").contains("unterminated string"));
    }

    /// Deterministic xorshift64* generator for the garbled-input tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            let i = (self.next() % items.len() as u64) as usize;
            items.get(i).copied().unwrap_or("")
        }
    }

    const PIECES: &[&str] = &[
        "SELECT",
        "select",
        "FROM",
        "from",
        "WHERE",
        "GROUP BY",
        "INTO",
        "ON",
        "SHOW",
        "MEASUREMENTS",
        "TAG",
        "VALUES",
        "KEYS",
        "WITH",
        "MEASUREMENT",
        "KEY",
        "IN",
        "CARDINALITY",
        "EXACT",
        "SERIES",
        "DROP",
        "CREATE",
        "DATABASE",
        "DELETE",
        "GRANT",
        "LIMIT",
        "OFFSET",
        "SLIMIT",
        "RETENTION",
        "POLICY",
        "ALTER",
        "count",
        "time",
        "cpu",
        "db",
        "rp",
        "1",
        "10s",
        "1.5",
        ".5",
        "µ",
        "'",
        "\"",
        "/",
        "\\",
        "\\/",
        "\\\\",
        "(",
        ")",
        ",",
        ".",
        "..",
        ";",
        "*",
        "=",
        "=~",
        "!~",
        "!",
        "<>",
        "::",
        ":",
        "$",
        "$x",
        "--",
        "/*",
        "*/",
        "\n",
        "\r",
        "\t",
        " ",
        " ",
        " ",
        "\0",
        "é",
        "π",
        "'a;b'",
        "\"q;\"",
        "/r;e/",
        "-",
        "+",
        "%",
        "&",
        "|",
        "^",
        "#",
        "[",
        "{",
        "`",
        "\u{b}",
        "\u{a0}",
        "\u{feff}",
    ];

    /// Valid queries that garbling starts from, so mutations reach deep paths.
    const CORPUS: &[&str] = &[
        "SELECT mean(\"value\") FROM \"cpu\" WHERE (\"host\" =~ /^a$/) AND time >= now() - 1h GROUP BY time(10s) fill(null)",
        "SELECT * FROM db.rp.cpu, db..mem, rp./d.*/ LIMIT 10 OFFSET 2",
        "SELECT max(v) FROM (SELECT mean(v) AS v FROM a, /b/ GROUP BY time(1m)) WHERE v > 1",
        "SHOW TAG VALUES ON db FROM cpu WITH KEY IN (host, \"dc\") WHERE a = 'x;y' LIMIT 3",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /c\\/u/ LIMIT 5 OFFSET 1",
        "SHOW SERIES EXACT CARDINALITY ON db FROM cpu",
        "CREATE DATABASE \"a\\\"b\" WITH DURATION 1d",
        "DROP MEASUREMENT \"cpu load\"",
        "DELETE FROM cpu WHERE time < now() - 1d",
        "CREATE RETENTION POLICY rp ON db DURATION 1h REPLICATION 1 DEFAULT",
        "SELECT v -- comment\nFROM cpu /* block */",
        "SHOW DATABASES; SHOW RETENTION POLICIES ON db;",
    ];

    /// A corpus query with a few pieces inserted, bytes removed or another
    /// query appended.
    fn mutate(rng: &mut XorShift) -> String {
        let mut q = rng.pick(CORPUS).to_string();
        for _ in 0..(rng.next() % 4) {
            let at = (rng.next() % (q.len() as u64 + 1)) as usize;
            let at = (0..=at).rev().find(|i| q.is_char_boundary(*i)).unwrap_or(0);
            match rng.next() % 4 {
                0 | 1 => q.insert_str(at, rng.pick(PIECES)),
                2 => {
                    let end = (at + (rng.next() % 4) as usize).min(q.len());
                    if q.is_char_boundary(end) {
                        q.replace_range(at..end, "");
                    }
                }
                _ => {
                    q.push(';');
                    q.push_str(rng.pick(CORPUS));
                }
            }
        }
        q
    }

    fn garble(rng: &mut XorShift) -> String {
        let n = (rng.next() % 24) as usize;
        let mut q = String::new();
        for _ in 0..n {
            q.push_str(rng.pick(PIECES));
            if rng.next() % 3 == 0 {
                q.push(' ');
            }
        }
        q
    }

    #[test]
    fn garbled_input_never_panics_and_accepted_statements_stand_alone() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for round in 0..40_000 {
            let q = if round % 2 == 0 {
                garble(&mut rng)
            } else {
                mutate(&mut rng)
            };
            let Ok(statements) = parse(&q) else {
                continue;
            };
            accepted += 1;
            for s in statements {
                assert!(!s.text.is_empty(), "{q:?}");
                // Each statement's text, sent alone to a backend, is read as
                // exactly the same single statement.
                let again = parse(&s.text).unwrap_or_else(|e| panic!("{q:?} -> {:?}: {e}", s.text));
                assert_eq!(again, vec![s.clone()], "{q:?}");
                let trimmed = parse(&s.text_without_limit);
                assert!(trimmed.is_ok(), "{q:?} -> {:?}", s.text_without_limit);
            }
        }
        assert!(
            accepted > 5_000,
            "only {accepted} garbled queries were accepted"
        );
    }

    #[test]
    fn huge_and_deeply_nested_queries_are_handled_in_linear_time() {
        let n = 1 << 20;
        let deep = format!(
            "SELECT v FROM {}cpu{}",
            "(".repeat(n / 2),
            ")".repeat(n / 2)
        );
        assert!(parse(&deep).is_ok() || parse(&deep).is_err());
        let unbalanced = "(".repeat(n);
        assert_eq!(refused(&unbalanced), ILLEGAL);
        let subqueries = format!(
            "SELECT * FROM {}a{}",
            "(SELECT * FROM ".repeat(n / 16),
            ")".repeat(n / 16)
        );
        // Nesting deeper than InfluxDB's parser survives never leaves us.
        assert_eq!(refused(&subqueries), ILLEGAL);
        let nested = format!(
            "SELECT * FROM {}a{}",
            "(SELECT * FROM ".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert_eq!(one(&nested).sources, vec![m("a")]);
        let many = format!("SELECT v FROM {}", vec!["a"; n / 2].join(","));
        assert_eq!(one(&many).sources, vec![m("a")]);
        let long_string = format!("SELECT v FROM a WHERE t = '{}'", "x".repeat(n));
        assert_eq!(one(&long_string).sources, vec![m("a")]);
        let lone_quote = format!("SELECT v FROM a WHERE t = '{}", "x".repeat(n));
        assert!(refused(&lone_quote).contains("unterminated string"));
        let semis = ";".repeat(n);
        assert_eq!(refused(&semis), EMPTY);
        let statements = "SHOW DATABASES;".repeat(n / 16);
        assert_eq!(parse(&statements).map(|s| s.len()), Ok(n / 16));
    }
}
