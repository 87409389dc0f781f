//! The media type of a `Content-Type` header, parsed as Go's
//! `mime.ParseMediaType` parses it, with its error texts: the Go proxy
//! refuses a Flux request whose `Content-Type` that function refuses.

/// The lower-case media type of `value` (`type/subtype`, or a lone token,
/// which Go accepts), or Go's error text.
pub fn parse(value: &str) -> Result<String, &'static str> {
    let (base, mut params) = value.split_once(';').map_or((value, ""), |(b, p)| (b, p));
    let media = base.trim().to_ascii_lowercase();
    let (kind, rest) = token(&media);
    if kind.is_empty() {
        return Err("mime: no media type");
    }
    if !rest.is_empty() {
        let Some(rest) = rest.strip_prefix('/') else {
            return Err("mime: expected slash after first token");
        };
        let (sub, rest) = token(rest);
        if sub.is_empty() {
            return Err("mime: expected token after slash");
        }
        if !rest.is_empty() {
            return Err("mime: unexpected content after media subtype");
        }
    }
    let mut names: Vec<String> = Vec::new();
    loop {
        params = params.trim_start();
        if params.is_empty() {
            break;
        }
        let (name, rest) = token(params);
        let name = name.to_ascii_lowercase();
        let Some(rest) = rest.trim_start().strip_prefix('=') else {
            return Err("mime: invalid media parameter");
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('"') {
            Some(quoted) => quoted_end(quoted).ok_or("mime: invalid media parameter")?,
            None => {
                let (value, rest) = token(rest);
                if value.is_empty() {
                    return Err("mime: invalid media parameter");
                }
                rest
            }
        };
        if name.is_empty() {
            return Err("mime: invalid media parameter");
        }
        if names.contains(&name) {
            return Err("mime: duplicate parameter name");
        }
        names.push(name);
        params = rest.trim_start();
        match params.strip_prefix(';') {
            Some(next) => params = next,
            None if params.is_empty() => break,
            None => return Err("mime: invalid media parameter"),
        }
    }
    Ok(media)
}

/// An RFC 1521 token at the start of `s`, and what follows it.
fn token(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !c.is_ascii() || c <= ' ' || c == '\x7f' || "()<>@,;:\\\"/[]?=".contains(c))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// What follows a quoted string whose body starts `s`, or `None` when it
/// never ends.
fn quoted_end(s: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return s.get(i + 1..),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_parse_as_go_parses_them() {
        assert_eq!(parse("application/json"), Ok("application/json".into()));
        assert_eq!(
            parse(" Application/VND.Flux ; charset=utf-8"),
            Ok("application/vnd.flux".into())
        );
        assert_eq!(
            parse("application/json; charset=\"utf-8\"; q=1"),
            Ok("application/json".into())
        );
        assert_eq!(parse("application/json;"), Ok("application/json".into()));
        assert_eq!(parse("text"), Ok("text".into()));
        assert_eq!(parse(""), Err("mime: no media type"));
        assert_eq!(parse("/json"), Err("mime: no media type"));
        assert_eq!(
            parse("application json"),
            Err("mime: expected slash after first token")
        );
        assert_eq!(
            parse("application/"),
            Err("mime: expected token after slash")
        );
        assert_eq!(
            parse("application/json/x"),
            Err("mime: unexpected content after media subtype")
        );
        assert_eq!(
            parse("application/json; charset"),
            Err("mime: invalid media parameter")
        );
        assert_eq!(
            parse("application/json; a=\"x"),
            Err("mime: invalid media parameter")
        );
        assert_eq!(
            parse("application/json; a=1; A=2"),
            Err("mime: duplicate parameter name")
        );
    }
}
