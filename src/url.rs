//! Percent-encoding of URL query strings, both ways (what Go's `url.Values`
//! does): decoding the parameters of client requests and encoding `db`/`rp`
//! for the requests we send to backends.

/// Decoded `key=value` pairs of a query string (or form body), in order.
/// Values that were not valid UTF-8 once decoded are kept (with U+FFFD) and
/// their keys remembered, for endpoints that must refuse them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>, Vec<String>);

impl Params {
    /// Parses `a=1&b=x+y&c=%2F`; `+` is a space, bad escapes are kept verbatim.
    pub fn parse(query: &str) -> Params {
        let mut invalid = Vec::new();
        let pairs = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let key = decode(k);
                let value = if v.bytes().any(|c| c == b'%' || c == b'+') {
                    String::from_utf8(decode_bytes(v)).unwrap_or_else(|e| {
                        invalid.push(key.clone());
                        String::from_utf8_lossy(e.as_bytes()).into_owned()
                    })
                } else {
                    v.to_string()
                };
                (key, value)
            })
            .collect();
        Params(pairs, invalid)
    }

    /// Whether the value of `key` was not valid UTF-8.
    pub fn is_invalid_utf8(&self, key: &str) -> bool {
        self.1.iter().any(|k| k == key)
    }

    /// The first value of `key`, as Go's `Values.Get` (empty when absent).
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// These parameters followed by `other`'s (a lookup finds ours first).
    pub fn then(mut self, other: &Params) -> Params {
        self.0.extend(other.0.iter().cloned());
        self.1.extend(other.1.iter().cloned());
        self
    }

    /// Whether `key` is present at all.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one component; invalid UTF-8 is replaced, never an error.
pub fn decode(s: &str) -> String {
    if !s.bytes().any(|c| c == b'%' || c == b'+') {
        return s.to_string();
    }
    String::from_utf8_lossy(&decode_bytes(s)).into_owned()
}

/// Decodes one component to raw bytes.
fn decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Encodes one component as Go's `url.QueryEscape` (space becomes `+`).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    encode_into(&mut out, s);
    out
}

/// [`encode`], appended to `out`.
pub fn encode_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_go() {
        let p = Params::parse("db=my+db&rp=a%2Fb&x&bad=%zz&db=second&u=%E2%82%AC");
        assert_eq!(p.get("db"), "my db");
        assert_eq!(p.get("rp"), "a/b");
        assert_eq!(p.get("bad"), "%zz");
        assert_eq!(p.get("u"), "€");
        assert!(p.has("x"));
        assert_eq!(p.get("missing"), "");
        assert_eq!(decode("%ff"), "\u{fffd}");
        assert_eq!(decode("100%"), "100%");
        assert!(!p.is_invalid_utf8("x"));
        assert!(Params::parse("q=%ff").is_invalid_utf8("q"));
        assert!(!Params::parse("q=%C3%A9").is_invalid_utf8("q"));
    }

    #[test]
    fn encodes_like_go_query_escape() {
        assert_eq!(encode("my db/rp&x=é"), "my+db%2Frp%26x%3D%C3%A9");
        assert_eq!(encode(""), "");
        assert_eq!(decode(&encode("a b+c%")), "a b+c%");
    }
}
