//! InfluxQL tokenizer: turns a query into tokens exactly where InfluxDB 1.x's
//! scanner and parser would put their boundaries.
//!
//! The proxy splits a request into statements and checks each one before any
//! backend sees it, so a boundary drawn differently from InfluxDB's would let
//! a statement hide inside another (`SELECT ... /*; GRANT ...; */`). The rules
//! below were read from InfluxDB's `influxql` scanner and parser and checked
//! against a real influxd 1.6.7:
//!
//! - Whitespace is space, tab, `\n` and `\r` (InfluxDB reads `\r` and `\r\n`
//!   as `\n`, so a lone `\r` also ends a `--` comment). Any other character
//!   outside a literal that InfluxDB does not know is an error, and so is NUL
//!   anywhere (InfluxDB reads NUL as end of input and would silently drop the
//!   rest of the query).
//! - Strings (`'...'`) and quoted identifiers (`"..."`) accept the escapes
//!   `\n`, `\\`, `\"`, `\'` and nothing else; a newline ends them in error.
//!   A bare identifier immediately followed by `"` is, as in InfluxDB, the
//!   quoted identifier alone (`abc"def"` names `def`).
//! - A `/` starts a regex literal only where InfluxDB's parser asks for one
//!   (`parseRegex`), after nothing but plain whitespace: after `SELECT`,
//!   `FROM`, `GROUP BY`, `=~`, `!~`, `WITH MEASUREMENT =`, a `,` (except in a
//!   `WITH KEY IN (...)` list), the `(` of a function call, and directly after
//!   the `.` of a qualified source (`db.rp./re/`). There even `/*` opens a
//!   regex, as in InfluxDB; such a regex (starting with `*`) can never compile,
//!   so it is refused here, which closes any regex/comment ambiguity.
//!   Elsewhere `/*` opens a comment and `/` is division.
//! - Inside a regex only `\/` is an escape; any other backslash is kept and
//!   the character after it read again (so `\\/` does not end the regex).
//! - Numbers: digits with an optional `.digits` part; digits followed by
//!   letters (or `µ`) form a duration literal (`10s`, `1h30m`), validated by
//!   the backend, not here.
//!
//! Nothing here allocates per token except the token vector; decoded values
//! are computed on demand by [`Token::value`] and borrow when no escape is
//! present.

use std::borrow::Cow;
use std::fmt;

/// What a token is. Keywords and punctuation carry which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A bare identifier that is not a keyword: `cpu`, `_x1`.
    Ident,
    /// A double-quoted identifier: `"cpu load"`.
    QuotedIdent,
    /// A reserved word, matched case-insensitively.
    Keyword(Keyword),
    /// A single-quoted string literal.
    String,
    /// A regex literal `/.../`.
    Regex,
    /// Digits only: `42`.
    Integer,
    /// Digits with a fractional part: `4.2`, `.5`.
    Number,
    /// Digits followed by a unit: `10s`, `1h`, `100ms`, `10µ`.
    Duration,
    /// A bound parameter `$name` (or `$"name"`).
    BoundParam,
    /// An operator or separator.
    Punct(Punct),
}

/// Operators and separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Punct {
    Comma,
    Dot,
    Semicolon,
    LParen,
    RParen,
    Colon,
    DoubleColon,
    /// `=`
    Eq,
    /// `!=` or `<>`
    Neq,
    /// `=~`
    EqRegex,
    /// `!~`
    NeqRegex,
    Lt,
    Lte,
    Gt,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    /// `π`, which InfluxDB's scanner knows as a token of its own.
    Pi,
}

macro_rules! keywords {
    ($($variant:ident => $word:literal, $upper:literal,)*) => {
        /// InfluxQL's reserved words (InfluxDB 1.x `token.go`), including the
        /// operators `AND`, `OR`, `IN` and the literals `TRUE`, `FALSE`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Keyword {
            $($variant,)*
        }

        impl Keyword {
            /// The keyword spelled `word`, whatever its case.
            pub fn lookup(word: &str) -> Option<Keyword> {
                // The longest keyword is 13 bytes; lower-case on the stack.
                let bytes = word.as_bytes();
                if bytes.len() > 16 {
                    return None;
                }
                let mut buf = [0u8; 16];
                for (dst, src) in buf.iter_mut().zip(bytes) {
                    *dst = src.to_ascii_lowercase();
                }
                match buf.get(..bytes.len()) {
                    $(Some($word) => Some(Keyword::$variant),)*
                    _ => None,
                }
            }

            /// The keyword in upper case, as InfluxDB prints it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Keyword::$variant => $upper,)*
                }
            }
        }
    };
}

keywords! {
    All => b"all", "ALL",
    Alter => b"alter", "ALTER",
    Analyze => b"analyze", "ANALYZE",
    And => b"and", "AND",
    Any => b"any", "ANY",
    As => b"as", "AS",
    Asc => b"asc", "ASC",
    Begin => b"begin", "BEGIN",
    By => b"by", "BY",
    Cardinality => b"cardinality", "CARDINALITY",
    Continuous => b"continuous", "CONTINUOUS",
    Create => b"create", "CREATE",
    Database => b"database", "DATABASE",
    Databases => b"databases", "DATABASES",
    Default => b"default", "DEFAULT",
    Delete => b"delete", "DELETE",
    Desc => b"desc", "DESC",
    Destinations => b"destinations", "DESTINATIONS",
    Diagnostics => b"diagnostics", "DIAGNOSTICS",
    Distinct => b"distinct", "DISTINCT",
    Drop => b"drop", "DROP",
    Duration => b"duration", "DURATION",
    End => b"end", "END",
    Every => b"every", "EVERY",
    Exact => b"exact", "EXACT",
    Explain => b"explain", "EXPLAIN",
    False => b"false", "FALSE",
    Field => b"field", "FIELD",
    For => b"for", "FOR",
    From => b"from", "FROM",
    Grant => b"grant", "GRANT",
    Grants => b"grants", "GRANTS",
    Group => b"group", "GROUP",
    Groups => b"groups", "GROUPS",
    In => b"in", "IN",
    Inf => b"inf", "INF",
    Insert => b"insert", "INSERT",
    Into => b"into", "INTO",
    Key => b"key", "KEY",
    Keys => b"keys", "KEYS",
    Kill => b"kill", "KILL",
    Limit => b"limit", "LIMIT",
    Measurement => b"measurement", "MEASUREMENT",
    Measurements => b"measurements", "MEASUREMENTS",
    Name => b"name", "NAME",
    Offset => b"offset", "OFFSET",
    On => b"on", "ON",
    Or => b"or", "OR",
    Order => b"order", "ORDER",
    Password => b"password", "PASSWORD",
    Policies => b"policies", "POLICIES",
    Policy => b"policy", "POLICY",
    Privileges => b"privileges", "PRIVILEGES",
    Queries => b"queries", "QUERIES",
    Query => b"query", "QUERY",
    Read => b"read", "READ",
    Replication => b"replication", "REPLICATION",
    Resample => b"resample", "RESAMPLE",
    Retention => b"retention", "RETENTION",
    Revoke => b"revoke", "REVOKE",
    Select => b"select", "SELECT",
    Series => b"series", "SERIES",
    Set => b"set", "SET",
    Shard => b"shard", "SHARD",
    Shards => b"shards", "SHARDS",
    Show => b"show", "SHOW",
    Slimit => b"slimit", "SLIMIT",
    Soffset => b"soffset", "SOFFSET",
    Stats => b"stats", "STATS",
    Subscription => b"subscription", "SUBSCRIPTION",
    Subscriptions => b"subscriptions", "SUBSCRIPTIONS",
    Tag => b"tag", "TAG",
    To => b"to", "TO",
    True => b"true", "TRUE",
    User => b"user", "USER",
    Users => b"users", "USERS",
    Values => b"values", "VALUES",
    Where => b"where", "WHERE",
    With => b"with", "WITH",
    Write => b"write", "WRITE",
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One token: its kind and where it sits in the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    /// The raw source text of the token, quotes and escapes included.
    pub text: &'a str,
    /// Byte offset of the token's first byte in the query.
    pub start: usize,
    /// Byte offset just past the token's last byte (`text == &q[start..end]`).
    pub end: usize,
}

impl<'a> Token<'a> {
    /// The token's value: identifiers and strings unquoted and unescaped,
    /// a regex's pattern without its slashes (`\/` read as `/`), a bound
    /// parameter's name without `$`; otherwise the text itself.
    pub fn value(&self) -> Cow<'a, str> {
        let text = self.text;
        match self.kind {
            TokenKind::QuotedIdent => quoted_value(text),
            TokenKind::String => {
                unescape_string(text.get(1..text.len().saturating_sub(1)).unwrap_or(""))
            }
            TokenKind::Regex => {
                regex_value(text.get(1..text.len().saturating_sub(1)).unwrap_or(""))
            }
            TokenKind::BoundParam => {
                let name = text.get(1..).unwrap_or("");
                if name.ends_with('"') {
                    quoted_value(name)
                } else {
                    Cow::Borrowed(name)
                }
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// The keyword this token is, if it is one.
    pub fn keyword(&self) -> Option<Keyword> {
        match self.kind {
            TokenKind::Keyword(k) => Some(k),
            _ => None,
        }
    }

    pub fn is_keyword(&self, k: Keyword) -> bool {
        self.kind == TokenKind::Keyword(k)
    }

    pub fn is_punct(&self, p: Punct) -> bool {
        self.kind == TokenKind::Punct(p)
    }

    /// A bare or quoted identifier: something that can name a database,
    /// retention policy or measurement.
    pub fn is_ident(&self) -> bool {
        matches!(self.kind, TokenKind::Ident | TokenKind::QuotedIdent)
    }
}

/// Value of `"..."`, or of `abc"..."` (InfluxDB keeps only the quoted part).
fn quoted_value(text: &str) -> Cow<'_, str> {
    let open = text.find('"').map_or(0, |i| i + 1);
    unescape_string(text.get(open..text.len().saturating_sub(1)).unwrap_or(""))
}

/// Undo InfluxQL's string escapes (`\n`, `\\`, `\"`, `\'`). The lexer has
/// already refused any other escape; one slipping through is kept verbatim.
fn unescape_string(inner: &str) -> Cow<'_, str> {
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(e @ ('\\' | '"' | '\'')) => out.push(e),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// A regex pattern as InfluxDB hands it to Go's `regexp`: `\/` becomes `/`,
/// every other backslash stays and the character after it is read again.
fn regex_value(inner: &str) -> Cow<'_, str> {
    if !inner.contains("\\/") {
        return Cow::Borrowed(inner);
    }
    let bytes = inner.as_bytes();
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'/') {
            out.push_str(inner.get(copied..i).unwrap_or(""));
            out.push('/');
            i += 2;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(inner.get(copied..).unwrap_or(""));
    Cow::Owned(out)
}

/// Why a query could not be tokenized, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub kind: LexErrorKind,
    /// Byte offset of the offending token or character.
    pub offset: usize,
    /// 1-based line, counting `\n`, `\r\n` and a lone `\r` as line ends.
    pub line: usize,
    /// 1-based character (not byte) within the line.
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexErrorKind {
    /// A `'` string with no closing quote before a newline or the end.
    UnterminatedString,
    /// A `"` identifier with no closing quote before a newline or the end.
    UnterminatedIdent,
    /// A regex with no closing `/` before a newline or the end.
    UnterminatedRegex,
    /// A `/*` comment with no `*/`.
    UnterminatedComment,
    /// A backslash escape InfluxQL does not know, e.g. `\q` (shown as given).
    BadEscape(String),
    /// A character InfluxQL has no use for outside literals.
    IllegalChar(char),
    /// A NUL byte anywhere.
    Nul,
    /// A regex literal starting with `*`: Go's regexp refuses it, so InfluxDB
    /// would too (and `/*` must never be read two ways).
    RegexRepetition,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            LexErrorKind::UnterminatedString => f.write_str("found unterminated string")?,
            LexErrorKind::UnterminatedIdent => {
                f.write_str("found unterminated quoted identifier")?
            }
            LexErrorKind::UnterminatedRegex => f.write_str("found unterminated regex")?,
            LexErrorKind::UnterminatedComment => f.write_str("found unterminated comment")?,
            LexErrorKind::BadEscape(e) => write!(f, "found {e}, bad escape")?,
            LexErrorKind::IllegalChar(c) => write!(f, "found {c}, illegal character")?,
            LexErrorKind::Nul => f.write_str("found NUL character")?,
            LexErrorKind::RegexRepetition => {
                f.write_str("error parsing regexp: missing argument to repetition operator: `*`")?
            }
        }
        write!(f, " at line {}, char {}", self.line, self.column)
    }
}

impl std::error::Error for LexError {}

/// 1-based line and character of byte `offset` in `src`, InfluxDB-style
/// (`\r\n` and a lone `\r` each end one line).
pub fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    let mut prev_cr = false;
    for (i, c) in src.char_indices() {
        if i >= offset {
            break;
        }
        match c {
            '\n' if prev_cr => {}
            '\n' | '\r' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
        prev_cr = c == '\r';
    }
    (line, column)
}

/// Tokenizes a whole query (all its statements). Whitespace and comments are
/// skipped; see the module documentation for the exact rules.
pub fn tokenize(q: &str) -> Result<Vec<Token<'_>>, LexError> {
    let mut lexer = Lexer {
        src: q,
        bytes: q.as_bytes(),
        pos: 0,
        // About one token per four bytes in usual queries.
        tokens: Vec::with_capacity(q.len() / 4 + 4),
        frames: vec![Frame {
            kind: FrameKind::Top,
            src: SrcState::None,
        }],
        line_comment_since_prev: false,
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

/// What an open parenthesis belongs to; decides whether a `,` inside it may
/// be followed by a regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Top,
    /// `name(`: function call arguments (regex allowed after `(` and `,`).
    Call,
    /// `IN (`: a list of tag keys (no regex).
    InList,
    /// Anything else: a grouped expression or a subquery.
    Group,
}

/// Where we are in a source list (`FROM a, db.rp.b, /c/`), tracked only to
/// know whether `./` continues a qualified name with a regex, as InfluxDB's
/// `parseSegmentedIdents` allows. Counts are name segments read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SrcState {
    None,
    /// A source may start here (after `FROM`, `,`, `WITH MEASUREMENT =`).
    Expect,
    /// Just read a name segment.
    Ident(u8),
    /// Just read a `.` right after a segment.
    Dot(u8),
    /// A whole source (regex or subquery) was read; only `,` continues.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: FrameKind,
    src: SrcState,
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<Token<'a>>,
    frames: Vec<Frame>,
    /// A `--` comment was skipped since the last token: InfluxDB's
    /// `parseRegex` only looks past plain whitespace, so no regex may follow.
    line_comment_since_prev: bool,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `µ` (U+00B5), allowed in duration units, is these two bytes in UTF-8.
const MICRO: [u8; 2] = [0xC2, 0xB5];

impl<'a> Lexer<'a> {
    fn at(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    fn error(&self, kind: LexErrorKind, offset: usize) -> LexError {
        let (line, column) = line_column(self.src, offset);
        LexError {
            kind,
            offset,
            line,
            column,
        }
    }

    fn run(&mut self) -> Result<(), LexError> {
        while let Some(b) = self.at(self.pos) {
            let start = self.pos;
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'-' if self.at(start + 1) == Some(b'-') => {
                    self.skip_line_comment(start)?;
                    self.line_comment_since_prev = true;
                }
                b'/' if self.regex_allowed(start) => {
                    let end = self.scan_regex(start)?;
                    self.push(TokenKind::Regex, start, end);
                }
                b'/' if self.at(start + 1) == Some(b'*') => self.skip_block_comment(start)?,
                _ => {
                    let (kind, end) = self.scan_token(b, start)?;
                    self.push(kind, start, end);
                }
            }
        }
        Ok(())
    }

    fn skip_line_comment(&mut self, start: usize) -> Result<(), LexError> {
        let mut i = start + 2;
        while let Some(b) = self.at(i) {
            match b {
                b'\n' | b'\r' => break,
                0 => return Err(self.error(LexErrorKind::Nul, i)),
                _ => i += 1,
            }
        }
        self.pos = i;
        Ok(())
    }

    fn skip_block_comment(&mut self, start: usize) -> Result<(), LexError> {
        let mut i = start + 2;
        loop {
            match self.at(i) {
                None => return Err(self.error(LexErrorKind::UnterminatedComment, start)),
                Some(0) => return Err(self.error(LexErrorKind::Nul, i)),
                Some(b'*') if self.at(i + 1) == Some(b'/') => {
                    self.pos = i + 2;
                    return Ok(());
                }
                Some(_) => i += 1,
            }
        }
    }

    /// Whether InfluxDB's parser would call `parseRegex` at `start`.
    fn regex_allowed(&self, start: usize) -> bool {
        if self.line_comment_since_prev {
            return false;
        }
        let n = self.tokens.len();
        let prev = |back: usize| {
            n.checked_sub(back)
                .and_then(|i| self.tokens.get(i))
                .map(|t| t.kind)
        };
        let Some(last) = self.tokens.last() else {
            return false;
        };
        let frame = self.frames.last().copied().unwrap_or(Frame {
            kind: FrameKind::Top,
            src: SrcState::None,
        });
        match last.kind {
            TokenKind::Keyword(Keyword::Select | Keyword::From) => true,
            TokenKind::Keyword(Keyword::By) => prev(2) == Some(TokenKind::Keyword(Keyword::Group)),
            TokenKind::Punct(Punct::Comma) => frame.kind != FrameKind::InList,
            TokenKind::Punct(Punct::EqRegex | Punct::NeqRegex) => true,
            TokenKind::Punct(Punct::Eq) => {
                prev(2) == Some(TokenKind::Keyword(Keyword::Measurement))
                    && prev(3) == Some(TokenKind::Keyword(Keyword::With))
            }
            TokenKind::Punct(Punct::LParen) => frame.kind == FrameKind::Call,
            TokenKind::Punct(Punct::Dot) => {
                last.end == start && matches!(frame.src, SrcState::Dot(k) if k < 3)
            }
            _ => false,
        }
    }

    /// Scans `/.../` starting at `start` (the opening slash); returns the end.
    fn scan_regex(&self, start: usize) -> Result<usize, LexError> {
        if self.at(start + 1) == Some(b'*') {
            return Err(self.error(LexErrorKind::RegexRepetition, start));
        }
        let mut i = start + 1;
        loop {
            match self.at(i) {
                None | Some(b'\n' | b'\r') => {
                    return Err(self.error(LexErrorKind::UnterminatedRegex, start))
                }
                Some(0) => return Err(self.error(LexErrorKind::Nul, i)),
                Some(b'/') => return Ok(i + 1),
                // `\/` is the only escape; any other backslash is kept and
                // the next character read again (InfluxDB's ScanDelimited).
                Some(b'\\') if self.at(i + 1) == Some(b'/') => i += 2,
                Some(_) => i += 1,
            }
        }
    }

    /// Scans a quoted string or identifier whose opening quote is at `open`;
    /// returns the offset just past the closing quote.
    fn scan_quoted(&self, open: usize, quote: u8) -> Result<usize, LexError> {
        let unterminated = if quote == b'"' {
            LexErrorKind::UnterminatedIdent
        } else {
            LexErrorKind::UnterminatedString
        };
        let mut i = open + 1;
        loop {
            match self.at(i) {
                None | Some(b'\n' | b'\r') => return Err(self.error(unterminated, open)),
                Some(0) => return Err(self.error(LexErrorKind::Nul, i)),
                Some(b) if b == quote => return Ok(i + 1),
                Some(b'\\') => match self.at(i + 1) {
                    Some(b'n' | b'\\' | b'"' | b'\'') => i += 2,
                    None => return Err(self.error(unterminated, open)),
                    Some(0) => return Err(self.error(LexErrorKind::Nul, i + 1)),
                    Some(_) => {
                        let shown: String =
                            self.src.get(i..).unwrap_or("").chars().take(2).collect();
                        return Err(self.error(LexErrorKind::BadEscape(shown), i));
                    }
                },
                Some(_) => i += 1,
            }
        }
    }

    /// Scans a bare identifier at `start`; a `"` right after it makes the
    /// whole thing a quoted identifier naming only the quoted part (InfluxDB's
    /// `scanIdent`). Returns the kind and end.
    fn scan_word(&self, start: usize) -> Result<(TokenKind, usize), LexError> {
        let mut i = start;
        while self.at(i).is_some_and(is_ident_char) {
            i += 1;
        }
        if self.at(i) == Some(b'"') {
            return Ok((TokenKind::QuotedIdent, self.scan_quoted(i, b'"')?));
        }
        let word = self.src.get(start..i).unwrap_or("");
        let kind = Keyword::lookup(word).map_or(TokenKind::Ident, TokenKind::Keyword);
        Ok((kind, i))
    }

    fn scan_number(&self, start: usize) -> (TokenKind, usize) {
        let mut i = start;
        while self.at(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        if self.at(i) == Some(b'.') {
            // InfluxDB consumes the dot even when no digit follows (`1.`
            // reads as the number 1).
            i += 1;
            while self.at(i).is_some_and(|b| b.is_ascii_digit()) {
                i += 1;
            }
            return (TokenKind::Number, i);
        }
        let unit_at = |j: usize| -> usize {
            match self.at(j) {
                Some(b) if b.is_ascii_alphabetic() => 1,
                Some(b) if b == MICRO[0] && self.at(j + 1) == Some(MICRO[1]) => 2,
                _ => 0,
            }
        };
        if unit_at(i) == 0 {
            return (TokenKind::Integer, i);
        }
        // A unit, then letters, `µ` and digits (`1h30m`), as InfluxDB scans it.
        loop {
            let step = match unit_at(i) {
                0 if self.at(i).is_some_and(|b| b.is_ascii_digit()) => 1,
                n => n,
            };
            if step == 0 {
                return (TokenKind::Duration, i);
            }
            i += step;
        }
    }

    /// Scans the token starting with byte `b` at `start` (not whitespace,
    /// a comment or a regex: `run` handled those).
    fn scan_token(&self, b: u8, start: usize) -> Result<(TokenKind, usize), LexError> {
        let next = self.at(start + 1);
        let punct = |p: Punct, len: usize| Ok((TokenKind::Punct(p), start + len));
        match b {
            _ if is_ident_start(b) => self.scan_word(start),
            b'0'..=b'9' => Ok(self.scan_number(start)),
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) => Ok(self.scan_number(start)),
            b'"' => Ok((TokenKind::QuotedIdent, self.scan_quoted(start, b'"')?)),
            b'\'' => Ok((TokenKind::String, self.scan_quoted(start, b'\'')?)),
            b'$' => {
                let (_, end) = match self.at(start + 1) {
                    Some(c) if is_ident_char(c) => self.scan_word(start + 1)?,
                    Some(b'"') => (TokenKind::QuotedIdent, self.scan_quoted(start + 1, b'"')?),
                    _ => (TokenKind::Ident, start + 1),
                };
                Ok((TokenKind::BoundParam, end))
            }
            b'.' => punct(Punct::Dot, 1),
            b',' => punct(Punct::Comma, 1),
            b';' => punct(Punct::Semicolon, 1),
            b'(' => punct(Punct::LParen, 1),
            b')' => punct(Punct::RParen, 1),
            b'+' => punct(Punct::Add, 1),
            b'-' => punct(Punct::Sub, 1),
            b'*' => punct(Punct::Mul, 1),
            b'/' => punct(Punct::Div, 1),
            b'%' => punct(Punct::Mod, 1),
            b'&' => punct(Punct::BitAnd, 1),
            b'|' => punct(Punct::BitOr, 1),
            b'^' => punct(Punct::BitXor, 1),
            b'=' if next == Some(b'~') => punct(Punct::EqRegex, 2),
            b'=' => punct(Punct::Eq, 1),
            b'!' if next == Some(b'=') => punct(Punct::Neq, 2),
            b'!' if next == Some(b'~') => punct(Punct::NeqRegex, 2),
            b'<' if next == Some(b'=') => punct(Punct::Lte, 2),
            b'<' if next == Some(b'>') => punct(Punct::Neq, 2),
            b'<' => punct(Punct::Lt, 1),
            b'>' if next == Some(b'=') => punct(Punct::Gte, 2),
            b'>' => punct(Punct::Gt, 1),
            b':' if next == Some(b':') => punct(Punct::DoubleColon, 2),
            b':' => punct(Punct::Colon, 1),
            0 => Err(self.error(LexErrorKind::Nul, start)),
            _ => {
                let c = self
                    .src
                    .get(start..)
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                if c == 'π' {
                    return punct(Punct::Pi, c.len_utf8());
                }
                Err(self.error(LexErrorKind::IllegalChar(c), start))
            }
        }
    }

    /// Records a token and updates the paren frames and source-list state.
    fn push(&mut self, kind: TokenKind, start: usize, end: usize) {
        let adjacent_to_prev = self.tokens.last().is_some_and(|t| t.end == start);
        let prev = self.tokens.last().map(|t| t.kind);
        let n = self.tokens.len();
        let back = |k: usize| {
            n.checked_sub(k)
                .and_then(|i| self.tokens.get(i))
                .map(|t| t.kind)
        };
        let after_with_measurement = back(1) == Some(TokenKind::Keyword(Keyword::Measurement))
            && back(2) == Some(TokenKind::Keyword(Keyword::With));

        if let Some(frame) = self.frames.last_mut() {
            frame.src = next_src_state(frame.src, kind, adjacent_to_prev, after_with_measurement);
        }
        match kind {
            TokenKind::Punct(Punct::LParen) => {
                let call = adjacent_to_prev
                    && matches!(
                        prev,
                        Some(
                            TokenKind::Ident
                                | TokenKind::QuotedIdent
                                | TokenKind::Keyword(Keyword::Distinct)
                        )
                    );
                let kind = if call {
                    FrameKind::Call
                } else if prev == Some(TokenKind::Keyword(Keyword::In)) {
                    FrameKind::InList
                } else {
                    FrameKind::Group
                };
                self.frames.push(Frame {
                    kind,
                    src: SrcState::None,
                });
            }
            // An unmatched `)` leaves the top level in place.
            TokenKind::Punct(Punct::RParen) if self.frames.len() > 1 => {
                self.frames.pop();
            }
            TokenKind::Punct(Punct::Semicolon) => {
                self.frames.truncate(1);
                if let Some(top) = self.frames.first_mut() {
                    top.src = SrcState::None;
                }
            }
            _ => {}
        }
        self.tokens.push(Token {
            kind,
            text: self.src.get(start..end).unwrap_or(""),
            start,
            end,
        });
        self.pos = end;
        self.line_comment_since_prev = false;
    }
}

/// One step of the source-list automaton (see [`SrcState`]).
fn next_src_state(
    state: SrcState,
    kind: TokenKind,
    adjacent: bool,
    after_with_measurement: bool,
) -> SrcState {
    match kind {
        TokenKind::Keyword(Keyword::From) => return SrcState::Expect,
        TokenKind::Punct(Punct::Eq | Punct::EqRegex) if after_with_measurement => {
            return SrcState::Expect
        }
        _ => {}
    }
    let ident = matches!(kind, TokenKind::Ident | TokenKind::QuotedIdent);
    match state {
        SrcState::Expect if ident => SrcState::Ident(1),
        SrcState::Expect if kind == TokenKind::Regex => SrcState::Done,
        SrcState::Expect if kind == TokenKind::Punct(Punct::LParen) => SrcState::Done,
        SrcState::Ident(n) if kind == TokenKind::Punct(Punct::Dot) && adjacent => SrcState::Dot(n),
        SrcState::Ident(_) | SrcState::Done if kind == TokenKind::Punct(Punct::Comma) => {
            SrcState::Expect
        }
        // `db..m`: an adjacent second dot adds an empty segment.
        SrcState::Dot(n) if kind == TokenKind::Punct(Punct::Dot) && adjacent => {
            SrcState::Dot(n.saturating_add(1))
        }
        SrcState::Dot(n) if ident => SrcState::Ident(n.saturating_add(1)),
        SrcState::Dot(_) if kind == TokenKind::Regex => SrcState::Done,
        _ => SrcState::None,
    }
}

/// `name` as a double-quoted InfluxQL identifier, safe to splice into a
/// statement (`CREATE DATABASE "my \"db\""`).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<TokenKind> {
        tokenize(q).unwrap().iter().map(|t| t.kind).collect()
    }

    fn values(q: &str) -> Vec<String> {
        tokenize(q)
            .unwrap()
            .iter()
            .map(|t| t.value().into_owned())
            .collect()
    }

    fn err(q: &str) -> String {
        tokenize(q).unwrap_err().to_string()
    }

    use Keyword as K;
    use Punct as P;
    use TokenKind as T;

    #[test]
    fn keywords_are_case_insensitive_and_identifiers_are_not_keywords() {
        assert_eq!(
            kinds("SeLeCt value FROM cpu"),
            vec![
                T::Keyword(K::Select),
                T::Ident,
                T::Keyword(K::From),
                T::Ident
            ]
        );
        assert_eq!(Keyword::lookup("SUBSCRIPTIONS"), Some(K::Subscriptions));
        assert_eq!(Keyword::lookup("subscriptionsx"), None);
        assert_eq!(Keyword::lookup(""), None);
        assert_eq!(K::Cardinality.as_str(), "CARDINALITY");
        assert_eq!(kinds("\"select\""), vec![T::QuotedIdent]);
    }

    #[test]
    fn every_kind_of_whitespace_influxdb_knows_and_comments_are_skipped() {
        // Checked against influxd 1.6.7: one statement, answered.
        let q =
            "SELECT\tv\r\n-- a comment; GRANT\nFROM cpu\r--x\rWHERE /* block ; */ v > 0 LIMIT 1";
        assert_eq!(
            values(q),
            vec!["SELECT", "v", "FROM", "cpu", "WHERE", "v", ">", "0", "LIMIT", "1"]
        );
    }

    #[test]
    fn lone_carriage_return_ends_a_line_comment() {
        // InfluxDB reads `\r` as a newline: GRANT is a real token here.
        let toks = values("SELECT v FROM cpu -- c\r; GRANT ALL TO x");
        assert!(toks.contains(&"GRANT".to_string()), "{toks:?}");
    }

    #[test]
    fn quoted_identifiers_and_strings_are_unescaped() {
        assert_eq!(
            values(r#""cpu load" "a\"b" "c\\d" 'it\'s' 'x\ny' "" ''"#),
            vec!["cpu load", "a\"b", "c\\d", "it's", "x\ny", "", ""]
        );
        // InfluxDB's scanIdent: a bare word glued to a quoted one names the quoted part.
        let t = tokenize(r#"abc"def""#).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].kind, T::QuotedIdent);
        assert_eq!(t[0].value(), "def");
    }

    #[test]
    fn literals_are_classified() {
        assert_eq!(
            kinds("42 4.2 .5 10s 1h30m 100ms 10u 10µ 1ns 2w 1d 1e5 $x $\"y z\" $"),
            vec![
                T::Integer,
                T::Number,
                T::Number,
                T::Duration,
                T::Duration,
                T::Duration,
                T::Duration,
                T::Duration,
                T::Duration,
                T::Duration,
                T::Duration,
                T::Duration,
                T::BoundParam,
                T::BoundParam,
                T::BoundParam
            ]
        );
        assert_eq!(values("10µs $x $\"y z\""), vec!["10µs", "x", "y z"]);
        // `1.` is the number 1 with its dot consumed, as InfluxDB scans it.
        let t = tokenize("1.x").unwrap();
        assert_eq!((t[0].kind, t[0].text), (T::Number, "1."));
        assert_eq!((t[1].kind, t[1].text), (T::Ident, "x"));
        assert_eq!(kinds("1.5h"), vec![T::Number, T::Ident]);
    }

    #[test]
    fn punctuation() {
        assert_eq!(
            kinds(", . ; ( ) = != <> < <= > >= =~ !~ + - * % :: : & | ^"),
            vec![
                T::Punct(P::Comma),
                T::Punct(P::Dot),
                T::Punct(P::Semicolon),
                T::Punct(P::LParen),
                T::Punct(P::RParen),
                T::Punct(P::Eq),
                T::Punct(P::Neq),
                T::Punct(P::Neq),
                T::Punct(P::Lt),
                T::Punct(P::Lte),
                T::Punct(P::Gt),
                T::Punct(P::Gte),
                T::Punct(P::EqRegex),
                T::Punct(P::NeqRegex),
                T::Punct(P::Add),
                T::Punct(P::Sub),
                T::Punct(P::Mul),
                T::Punct(P::Mod),
                T::Punct(P::DoubleColon),
                T::Punct(P::Colon),
                T::Punct(P::BitAnd),
                T::Punct(P::BitOr),
                T::Punct(P::BitXor),
            ]
        );
    }

    #[test]
    fn regex_only_where_influxdb_parses_one() {
        let regexes = |q: &str| -> Vec<String> {
            tokenize(q)
                .unwrap()
                .iter()
                .filter(|t| t.kind == T::Regex)
                .map(|t| t.value().into_owned())
                .collect()
        };
        assert_eq!(regexes("SELECT v FROM /cpu.*/"), vec!["cpu.*"]);
        assert_eq!(regexes("SELECT v FROM a, /b/, c"), vec!["b"]);
        assert_eq!(regexes("SELECT v FROM db.rp./b/"), vec!["b"]);
        assert_eq!(regexes("SELECT v FROM db../b/"), vec!["b"]);
        assert_eq!(regexes("SELECT v FROM rp./b/"), vec!["b"]);
        assert_eq!(regexes("SELECT /v/ FROM m"), vec!["v"]);
        assert_eq!(regexes("SELECT a, /v/ FROM m"), vec!["v"]);
        assert_eq!(regexes("SELECT count(/v/) FROM m"), vec!["v"]);
        assert_eq!(regexes("SELECT top(v, /x/) FROM m"), vec!["x"]);
        assert_eq!(regexes("SELECT v FROM m WHERE h =~ /a;b/"), vec!["a;b"]);
        assert_eq!(regexes("SELECT v FROM m WHERE h !~ /a/"), vec!["a"]);
        assert_eq!(regexes("SELECT v FROM m GROUP BY /h/, /k/"), vec!["h", "k"]);
        assert_eq!(
            regexes("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu/"),
            vec!["cpu"]
        );
        assert_eq!(
            regexes("SHOW MEASUREMENTS WITH MEASUREMENT = /cpu/"),
            vec!["cpu"]
        );
        assert_eq!(regexes("SHOW TAG VALUES WITH KEY =~ /h/"), vec!["h"]);
        assert_eq!(
            regexes("SELECT v FROM (SELECT /x/ FROM /y/)"),
            vec!["x", "y"]
        );
        // Escapes: only `\/`; `\\/` does not end the regex (InfluxDB quirk).
        assert_eq!(regexes(r"SELECT v FROM /a\/b/"), vec!["a/b"]);
        assert_eq!(regexes(r"SELECT v FROM /a\\/;b/"), vec![r"a\/;b"]);
        assert_eq!(regexes(r"SELECT v FROM /a\d/"), vec![r"a\d"]);

        // Division, not regex.
        assert!(regexes("SELECT a / 2, b /c FROM m").is_empty());
        assert!(regexes("SELECT a FROM m WHERE (b / 2) > 1").is_empty());
        assert!(regexes("SELECT count(v) /2 FROM m").is_empty());
        // InfluxDB reads `v./v/2` as `v / v / 2` outside a source list.
        assert!(regexes("SELECT v./v/2 FROM cpu").is_empty());
        // Not adjacent to the dot: InfluxDB does not see a regex there.
        assert!(regexes("SELECT v FROM db.rp. /b/").is_empty());
        // After a `--` comment InfluxDB's parseRegex no longer looks.
        assert!(regexes("SELECT -- c\n /* d */ v FROM m").is_empty());
        // ORDER BY and IN lists take identifiers only.
        assert!(regexes("SHOW TAG VALUES WITH KEY IN (a, /* c */ b)").is_empty());
        assert!(regexes("SELECT v FROM m ORDER BY /* c */ time").is_empty());
        // A comment after `=` is a comment.
        assert!(regexes("SELECT v FROM m WHERE h = /* c */ 'a'").is_empty());
        // `count (` with a space is not a call.
        assert!(regexes("SELECT count (/* c */ v) FROM m").is_empty());
    }

    #[test]
    fn block_comment_where_influxdb_expects_a_regex_is_refused() {
        // InfluxDB reads `/*` here as a regex starting with `*` and fails.
        assert_eq!(
            err("SELECT /* c */ v FROM m"),
            "error parsing regexp: missing argument to repetition operator: `*` at line 1, char 8"
        );
        assert!(tokenize("SELECT v FROM /*/; GRANT ALL TO x; /*/").is_err());
        assert!(tokenize("SELECT v FROM m WHERE a =~ /* x */ /b/").is_err());
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err("SELECT 'abc"),
            "found unterminated string at line 1, char 8"
        );
        assert_eq!(
            err("SELECT v\nFROM \"cpu"),
            "found unterminated quoted identifier at line 2, char 6"
        );
        assert_eq!(
            err("SELECT 'a\nb'"),
            "found unterminated string at line 1, char 8"
        );
        assert_eq!(
            err("SELECT 'a\\qb'"),
            "found \\q, bad escape at line 1, char 10"
        );
        assert_eq!(
            err("SELECT v FROM /cpu"),
            "found unterminated regex at line 1, char 15"
        );
        assert_eq!(
            err("SELECT v FROM /cp\nu/"),
            "found unterminated regex at line 1, char 15"
        );
        assert_eq!(
            err("SELECT v /* x"),
            "found unterminated comment at line 1, char 10"
        );
        assert_eq!(
            err("SELECT é"),
            "found é, illegal character at line 1, char 8"
        );
        assert_eq!(
            err("SELECT v\u{b}"),
            "found \u{b}, illegal character at line 1, char 9"
        );
        assert_eq!(
            err("SELECT ! v"),
            "found !, illegal character at line 1, char 8"
        );
        assert_eq!(err("SELECT v\0"), "found NUL character at line 1, char 9");
        assert_eq!(err("SELECT '\0'"), "found NUL character at line 1, char 9");
        assert_eq!(err("-- \0"), "found NUL character at line 1, char 4");
        assert_eq!(
            err("SELECT \"a\\"),
            "found unterminated quoted identifier at line 1, char 8"
        );
        assert_eq!(
            err("a\r\nb\r'"),
            "found unterminated string at line 3, char 1"
        );
    }

    #[test]
    fn positions_cover_the_source_text() {
        let q = "SELECT  \"a b\" FROM\t/x/";
        for t in tokenize(q).unwrap() {
            assert_eq!(&q[t.start..t.end], t.text);
        }
    }

    #[test]
    fn quote_ident_round_trips_through_the_lexer() {
        for name in ["cpu", "cpu load", "a\"b", "c\\d", "x\ny", "", "é;'"] {
            let quoted = quote_ident(name);
            let t = tokenize(&quoted).unwrap();
            assert_eq!(t.len(), 1, "{quoted}");
            assert_eq!(t[0].kind, T::QuotedIdent);
            assert_eq!(t[0].value(), name);
        }
        assert_eq!(quote_ident("a\"b"), r#""a\"b""#);
    }
}
