//! Client authentication, as the Go proxy checks it.
//!
//! Enabled when the config sets `username` or `password`. Credentials are
//! taken from, in order: the URL parameters `u` and `p`, HTTP Basic, or
//! `Authorization: Token <user>:<pass>`. Comparison runs in constant time.

use base64::Engine;

use super::error::ApiError;
use super::http::Request;

/// The proxy's own credentials.
#[derive(Debug, Clone)]
pub struct Auth {
    username: String,
    password: String,
    /// The configured values are the Go proxy's cipher text: compare the
    /// presented ones encrypted.
    encrypted: bool,
}

impl Auth {
    /// `None` when authentication is disabled.
    pub fn new(username: &str, password: &str, encrypted: bool) -> Option<Auth> {
        if username.is_empty() && password.is_empty() {
            return None;
        }
        Some(Auth {
            username: username.to_string(),
            password: password.to_string(),
            encrypted,
        })
    }

    /// Ok when the request presents the right credentials.
    pub fn check(&self, req: &Request) -> Result<(), ApiError> {
        let presented = credentials(req);
        let presented = presented.map(|(u, p)| {
            if self.encrypted {
                (crate::cipher::encrypt(&u), crate::cipher::encrypt(&p))
            } else {
                (u, p)
            }
        });
        let ok = presented.is_some_and(|(u, p)| {
            // Evaluate both comparisons: no early exit on the user name.
            let user_ok = constant_time_eq(u.as_bytes(), self.username.as_bytes());
            let pass_ok = constant_time_eq(p.as_bytes(), self.password.as_bytes());
            user_ok & pass_ok
        });
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(401, "authentication failed"))
        }
    }
}

/// The credentials a request carries, from the first source that has any.
fn credentials(req: &Request) -> Option<(String, String)> {
    let (u, p) = (req.params.get("u"), req.params.get("p"));
    if !u.is_empty() || !p.is_empty() {
        return Some((u.to_string(), p.to_string()));
    }
    let header = req.header("authorization")?;
    // The scheme is case-insensitive, as in Go's BasicAuth.
    let basic = header
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("basic "))
        .and_then(|_| header.get(6..));
    if let Some(encoded) = basic {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    if let Some(token) = header.strip_prefix("Token ") {
        let (u, p) = token.split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    None
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::Params;

    fn req(query: &str, auth: Option<&str>) -> bool {
        let mut empty: &[u8] = &[];
        let r = Request {
            method: "GET".into(),
            path: "/health".into(),
            params: Params::parse(query),
            headers: auth.map(|a| ("authorization", a)).into_iter().collect(),
            content_length: None,
            body: &mut empty,
        };
        Auth::new("admin", "s3cret", false)
            .unwrap()
            .check(&r)
            .is_ok()
    }

    #[test]
    fn every_credential_source_is_accepted_and_checked() {
        assert!(req("u=admin&p=s3cret", None));
        assert!(!req("u=admin&p=wrong", None));
        // "admin:s3cret"
        assert!(req("", Some("Basic YWRtaW46czNjcmV0")));
        assert!(req("", Some("basic YWRtaW46czNjcmV0")));
        assert!(req("", Some("BASIC YWRtaW46czNjcmV0")));
        assert!(!req("", Some("Basic YWRtaW46d3Jvbmc=")));
        assert!(req("", Some("Token admin:s3cret")));
        assert!(!req("", Some("Token admin")));
        assert!(!req("", None));
        // URL credentials win over a header.
        assert!(!req("u=admin&p=x", Some("Token admin:s3cret")));
    }

    #[test]
    fn encrypted_credentials_compare_the_cipher_text() {
        let mut empty: &[u8] = &[];
        let r = Request {
            method: "GET".into(),
            path: "/health".into(),
            params: Params::parse("u=admin&p=admin"),
            headers: Default::default(),
            content_length: None,
            body: &mut empty,
        };
        let auth = Auth::new("YgvEyuPZlDYAH8sGDkC!Ag", "YgvEyuPZlDYAH8sGDkC!Ag", true).unwrap();
        assert!(auth.check(&r).is_ok());
    }

    #[test]
    fn disabled_without_credentials() {
        assert!(Auth::new("", "", false).is_none());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
