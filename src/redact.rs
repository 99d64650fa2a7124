//! Redaction of credentials before anything leaves the sensor.
//!
//! Owns the rule "no raw secret in any output unless the user turns redaction off". Until the
//! sensitive-data classifier exists this covers what is certain to be a credential: the values
//! of authentication headers (`Authorization`, `Cookie`, `Set-Cookie`, API-key and token headers)
//! and of query parameters with credential-like names. The auth scheme (`Bearer`, `Basic`) and
//! cookie and parameter *names* are kept: they say how an API authenticates without giving the
//! secret away.
use std::borrow::Cow;
use std::collections::HashMap;

/// What to do with credential values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Redaction {
    /// Replace the value with `***` (keeping auth scheme and names).
    #[default]
    Mask,
    /// Emit values as seen. Only for lab use: outputs then carry live credentials.
    Off,
}

/// The placeholder for a removed value.
pub const MASK: &str = "***";

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
    "x-csrf-token",
    "x-xsrf-token",
];

/// Name fragments that mark a header or parameter as holding a secret.
const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "signature",
    "sig",
    "session",
    "auth",
    "credential",
    "private",
];

/// Whether a header or parameter name marks a secret. Runs for every header of every
/// exchange, so it scans the name once, case-insensitively, without allocating.
fn secret_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.eq_ignore_ascii_case(b"key") {
        return true;
    }
    (0..b.len()).any(|i| {
        let rest = &b[i..];
        SECRET_NAME_PARTS
            .iter()
            .any(|p| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
    })
}

/// Whether a header's value is a credential.
pub fn is_secret_header(name: &str) -> bool {
    if name.eq_ignore_ascii_case("www-authenticate")
        || name.eq_ignore_ascii_case("proxy-authenticate")
    {
        return false; // a challenge, not a credential
    }
    SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) || secret_name(name)
}

/// Distinct header names whose verdict is remembered.
const NAME_CACHE_MAX: usize = 4096;

/// Applies a [`Redaction`] mode, remembering which header names are secret: names repeat on
/// every exchange, and classifying one costs a scan against every secret-name pattern.
#[derive(Debug, Default)]
pub struct Redactor {
    mode: Redaction,
    names: HashMap<Box<str>, bool>,
}

impl Redactor {
    /// A redactor in `mode`.
    pub fn new(mode: Redaction) -> Self {
        Redactor {
            mode,
            names: HashMap::new(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Redaction {
        self.mode
    }

    fn secret_header(&mut self, name: &str) -> bool {
        if let Some(&v) = self.names.get(name) {
            return v;
        }
        let v = is_secret_header(name);
        if self.names.len() < NAME_CACHE_MAX {
            self.names.insert(name.into(), v);
        }
        v
    }

    /// The header value as it may leave the sensor.
    pub fn header<'a>(&mut self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self.mode == Redaction::Off || !self.secret_header(name) {
            return Cow::Borrowed(value);
        }
        self.mode.mask_header(name, value)
    }

    /// The query string as it may leave the sensor.
    pub fn query<'a>(&self, q: &'a str) -> Cow<'a, str> {
        self.mode.query(q)
    }
}

impl Redaction {
    fn mask_header<'a>(self, name: &str, value: &'a str) -> Cow<'a, str> {
        if name.eq_ignore_ascii_case("cookie") {
            return Cow::Owned(mask_pairs(value, ';', "; "));
        }
        if name.eq_ignore_ascii_case("set-cookie") {
            // name=value; attributes — the attributes are not secret.
            let (first, attrs) = value.split_once(';').unwrap_or((value, ""));
            let mut s = mask_pairs(first, ';', "");
            if !attrs.is_empty() {
                s.push(';');
                s.push_str(attrs);
            }
            return Cow::Owned(s);
        }
        if name.len() >= 13 && name[name.len() - 13..].eq_ignore_ascii_case("authorization") {
            if let Some((scheme, _)) = value.split_once(' ') {
                return Cow::Owned(format!("{scheme} {MASK}"));
            }
        }
        Cow::Borrowed(MASK)
    }

    /// The query string as it may leave the sensor: values of credential-like parameters masked.
    pub fn query<'a>(self, q: &'a str) -> Cow<'a, str> {
        if self == Redaction::Off {
            return Cow::Borrowed(q);
        }
        let needs = q
            .split('&')
            .any(|kv| kv.split_once('=').is_some_and(|(k, _)| secret_name(k)));
        if !needs {
            return Cow::Borrowed(q);
        }
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if secret_name(k) => format!("{k}={MASK}"),
                _ => kv.to_string(),
            })
            .collect();
        Cow::Owned(parts.join("&"))
    }
}

fn mask_pairs(s: &str, sep: char, join: &str) -> String {
    s.split(sep)
        .map(|kv| match kv.trim().split_once('=') {
            Some((k, _)) => format!("{k}={MASK}"),
            None => MASK.to_string(),
        })
        .collect::<Vec<_>>()
        .join(if join.is_empty() { ";" } else { join })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_headers_keep_scheme_lose_secret() {
        let mut r = Redactor::new(Redaction::Mask);
        assert_eq!(
            r.header("Authorization", "Bearer eyJhbGciOi.x.y"),
            "Bearer ***"
        );
        assert_eq!(r.header("authorization", "Basic dXNlcjpwYXNz"), "Basic ***");
        assert_eq!(r.header("X-API-Key", "sk_live_abc"), "***");
        assert_eq!(
            r.header("Cookie", "sid=abc123; theme=dark"),
            "sid=***; theme=***"
        );
        assert_eq!(
            r.header("Set-Cookie", "sid=abc; Path=/; HttpOnly"),
            "sid=***; Path=/; HttpOnly"
        );
        assert_eq!(
            r.header("Content-Type", "application/json"),
            "application/json"
        );
        assert_eq!(
            r.header("WWW-Authenticate", "Bearer realm=\"x\""),
            "Bearer realm=\"x\""
        );
        assert_eq!(
            Redactor::new(Redaction::Off).header("Cookie", "sid=abc"),
            "sid=abc"
        );
        let mut cached = Redactor::new(Redaction::Mask);
        for _ in 0..2 {
            assert_eq!(cached.header("Authorization", "Bearer x"), "Bearer ***");
            assert_eq!(cached.header("Accept", "*/*"), "*/*");
        }
    }

    #[test]
    fn query_credentials_masked_others_kept() {
        let r = Redaction::Mask;
        assert_eq!(r.query("page=2&sort=asc"), "page=2&sort=asc");
        assert_eq!(
            r.query("id=7&api_key=AKIA123&access_token=x&q=hi"),
            "id=7&api_key=***&access_token=***&q=hi"
        );
        assert_eq!(r.query("key=s3cr3t"), "key=***");
        assert_eq!(r.query("monkey=banana"), "monkey=banana");
    }
}
