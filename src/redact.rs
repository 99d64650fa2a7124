//! Redaction: no raw secret or sensitive value leaves the sensor unless the user turns it off.
//!
//! Owns the last step before anything is written. Two rules apply to every path segment, query
//! parameter and header value of an observation:
//! - credentials are certain by *position*: the values of authentication headers
//!   (`Authorization`, `Cookie`, `Set-Cookie`, API-key and token headers) and of parameters
//!   with credential-like names are always replaced. The auth scheme (`Bearer`, `Basic`) and
//!   cookie and parameter *names* are kept: they say how an API authenticates without giving
//!   the secret away;
//! - sensitive data is found by *content*: every other value goes through the classifiers of
//!   [`crate::infer::sensitive`] and, when it is an email, card number, SSN, key …, is masked
//!   (`4111********1111`, `j***@example.com`) or replaced by a salted hash, so that equal values
//!   still correlate across events without being revealed.
//!
//! Bodies never leave the sensor (observations carry only their sizes and schemas).
use crate::infer::sensitive::{self, classify, SensitiveType};
use std::borrow::Cow;
use std::collections::HashMap;

/// What to do with credentials and sensitive values: `mask` (default), `hash` (salted
/// SHA-256, correlatable) or `off` (lab use only: outputs then carry live secrets).
pub use crate::infer::sensitive::RedactMode as Redaction;

/// The placeholder for a removed credential.
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
    salt: Vec<u8>,
    /// Names come from packet data: a keyed (per-process random seed) fast hasher.
    names: HashMap<Box<str>, bool, foldhash::fast::RandomState>,
}

impl Redactor {
    /// A redactor in `mode`; `salt` keys the hashes of `hash` mode.
    pub fn new(mode: Redaction, salt: &[u8]) -> Self {
        Redactor {
            mode,
            salt: salt.to_vec(),
            names: HashMap::default(),
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

    /// A credential's replacement.
    fn secret(&self, value: &str) -> String {
        match self.mode {
            Redaction::Hash => sensitive::hash(&self.salt, value),
            _ => MASK.to_string(),
        }
    }

    /// A sensitive value's replacement.
    fn value<'a>(&self, t: SensitiveType, value: &'a str) -> Cow<'a, str> {
        sensitive::redact(self.mode, &self.salt, t, value)
    }

    /// The header value as it may leave the sensor.
    pub fn header<'a>(&mut self, name: &str, value: &'a str) -> Cow<'a, str> {
        self.header_checked(name, value, false)
    }

    /// [`Redactor::header`] when the caller already ran `classify(Some(name), value)` and it
    /// found nothing (`known_clean`): the name and URL rules still apply, the value is not
    /// classified a second time.
    pub fn header_checked<'a>(
        &mut self,
        name: &str,
        value: &'a str,
        known_clean: bool,
    ) -> Cow<'a, str> {
        if self.mode == Redaction::Off {
            return Cow::Borrowed(value);
        }
        if self.secret_header(name) {
            return self.mask_header(name, value);
        }
        // A URL-valued header (Referer, Location, …) carries a path and a query like the
        // request's own: the same rules apply to them.
        if let Some((p, q)) = value.split_once('?') {
            if p.starts_with("http://") || p.starts_with("https://") || p.starts_with('/') {
                let (q, frag) = q.split_once('#').map_or((q, None), |(q, f)| (q, Some(f)));
                let (rp, rq) = (self.path(p), self.query(q));
                if matches!((&rp, &rq), (Cow::Borrowed(_), Cow::Borrowed(_))) {
                    return Cow::Borrowed(value);
                }
                let mut out = format!("{rp}?{rq}");
                if let Some(f) = frag {
                    out.push('#');
                    out.push_str(f);
                }
                return Cow::Owned(out);
            }
        }
        if known_clean {
            return Cow::Borrowed(value);
        }
        match classify(Some(name), value) {
            Some(t) => self.value(t, value),
            None => Cow::Borrowed(value),
        }
    }

    /// JWT claims as they may leave the sensor: issuer, audiences and key id are free text
    /// that can hold a sensitive value (a service account's email is its tokens' `iss`).
    pub fn jwt(&self, j: &mut crate::infer::auth::JwtInfo) {
        if self.mode == Redaction::Off {
            return;
        }
        let red = |v: &mut String| {
            if let Some(t) = classify(None, v) {
                *v = self.value(t, v).into_owned();
            }
        };
        if let Some(i) = j.iss.as_mut() {
            red(i);
        }
        for a in &mut j.aud {
            red(a);
        }
        if let Some(k) = j.kid.as_mut() {
            red(k);
        }
    }

    /// The query string as it may leave the sensor: credential-like parameters and sensitive
    /// values replaced, everything else as sent.
    pub fn query<'a>(&self, q: &'a str) -> Cow<'a, str> {
        if self.mode == Redaction::Off {
            return Cow::Borrowed(q);
        }
        self.rewrite(q, '&', |kv| {
            let (k, v) = kv.split_once('=')?;
            if v.is_empty() {
                return None;
            }
            if secret_name(k) {
                return Some(format!("{k}={}", self.secret(v)));
            }
            let dk = crate::infer::auth::percent_decode(k);
            let dv = crate::infer::auth::percent_decode(v);
            classify(Some(&dk), &dv).map(|t| format!("{k}={}", self.value(t, &dv)))
        })
    }

    /// The path as it may leave the sensor: segments that hold sensitive values replaced.
    pub fn path<'a>(&self, path: &'a str) -> Cow<'a, str> {
        if self.mode == Redaction::Off {
            return Cow::Borrowed(path);
        }
        self.rewrite(path, '/', |seg| {
            if seg.is_empty() {
                return None;
            }
            let seg = crate::infer::auth::percent_decode(seg);
            classify(None, &seg).map(|t| self.value(t, &seg).into_owned())
        })
    }

    /// `s` with the `sep`-separated parts that `repl` rewrites replaced; borrowed (no
    /// allocation) when no part needs it, which is the common case. Each part is looked at once.
    fn rewrite<'a>(
        &self,
        s: &'a str,
        sep: char,
        mut repl: impl FnMut(&str) -> Option<String>,
    ) -> Cow<'a, str> {
        let mut out: Option<String> = None;
        let mut start = 0;
        for part in s.split(sep) {
            let r = repl(part);
            match (&mut out, r) {
                (None, Some(r)) => {
                    let mut o = s[..start].to_string();
                    o.push_str(&r);
                    out = Some(o);
                }
                (Some(o), r) => {
                    o.push(sep);
                    o.push_str(r.as_deref().unwrap_or(part));
                }
                (None, None) => {}
            }
            start += part.len() + sep.len_utf8();
        }
        out.map_or(Cow::Borrowed(s), Cow::Owned)
    }

    fn mask_header<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if name.eq_ignore_ascii_case("cookie") {
            return Cow::Owned(self.pairs(value, ';', "; "));
        }
        if name.eq_ignore_ascii_case("set-cookie") {
            // name=value; attributes — the attributes are not secret.
            let (first, attrs) = value.split_once(';').unwrap_or((value, ""));
            let mut s = self.pairs(first, ';', "");
            if !attrs.is_empty() {
                s.push(';');
                s.push_str(attrs);
            }
            return Cow::Owned(s);
        }
        if name.len() >= 13 && name[name.len() - 13..].eq_ignore_ascii_case("authorization") {
            if let Some((scheme, cred)) = value.split_once(' ') {
                return Cow::Owned(format!("{scheme} {}", self.secret(cred.trim())));
            }
        }
        Cow::Owned(self.secret(value))
    }

    fn pairs(&self, s: &str, sep: char, join: &str) -> String {
        s.split(sep)
            .map(|kv| match kv.trim().split_once('=') {
                Some((k, v)) => format!("{k}={}", self.secret(v)),
                None => self.secret(kv.trim()),
            })
            .collect::<Vec<_>>()
            .join(if join.is_empty() { ";" } else { join })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "clean" hint only skips the value classification: credential header names and
    /// URL-valued headers are still rewritten, and without the hint the value is classified.
    #[test]
    fn clean_hint_skips_only_the_value_classifier() {
        let mut r = Redactor::new(Redaction::Mask, b"");
        assert_eq!(r.header_checked("X-API-Key", "sk_live_abc", true), "***");
        assert_eq!(
            r.header_checked("Referer", "https://a.example/p?email=jo@example.com", true),
            "https://a.example/p?email=j***@example.com"
        );
        assert_eq!(
            r.header_checked("X-Contact", "jo@example.com", false),
            "j***@example.com"
        );
        assert_eq!(
            r.header_checked("X-Contact", "jo@example.com", true),
            "jo@example.com"
        );
    }

    #[test]
    fn auth_headers_keep_scheme_lose_secret() {
        let mut r = Redactor::new(Redaction::Mask, b"");
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
            Redactor::new(Redaction::Off, b"").header("Cookie", "sid=abc"),
            "sid=abc"
        );
        let mut cached = Redactor::new(Redaction::Mask, b"");
        for _ in 0..2 {
            assert_eq!(cached.header("Authorization", "Bearer x"), "Bearer ***");
            assert_eq!(cached.header("Accept", "*/*"), "*/*");
        }
    }

    #[test]
    fn query_credentials_masked_others_kept() {
        let r = Redactor::new(Redaction::Mask, b"");
        assert_eq!(r.query("page=2&sort=asc"), "page=2&sort=asc");
        assert_eq!(
            r.query("id=7&api_key=AKIA123&access_token=x&q=hi"),
            "id=7&api_key=***&access_token=***&q=hi"
        );
        assert_eq!(r.query("key=s3cr3t"), "key=***");
        assert_eq!(r.query("monkey=banana"), "monkey=banana");
    }

    #[test]
    fn sensitive_values_replaced_wherever_they_travel() {
        let mut r = Redactor::new(Redaction::Mask, b"");
        let p = r.path("/users/john.doe@example.com/cards/4111111111111111/orders");
        assert!(!p.contains("john.doe@example.com"), "{p}");
        assert!(!p.contains("4111111111111111"), "{p}");
        assert!(p.starts_with("/users/") && p.ends_with("/orders"), "{p}");
        assert_eq!(r.path("/api/v1/users/48213"), "/api/v1/users/48213");
        let q = r.query("email=jane.roe%40example.org&page=2");
        assert!(!q.contains("jane.roe"), "{q}");
        assert!(q.starts_with("email=") && q.ends_with("&page=2"), "{q}");
        let h = r.header("X-Customer-Email", "jane.roe@example.org");
        assert!(!h.contains("jane.roe"), "{h}");
        assert_eq!(r.header("X-Request-Id", "48213"), "48213");
    }

    #[test]
    fn hash_mode_correlates_without_revealing() {
        let mut a = Redactor::new(Redaction::Hash, b"salt-a");
        let mut b = Redactor::new(Redaction::Hash, b"salt-b");
        let ha = a.header("Authorization", "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        assert!(ha.starts_with("Bearer sha256:"), "{ha}");
        assert!(!ha.contains("4eC39HqLyjWDarjtT1zdp7dc"));
        assert_eq!(
            ha,
            a.header("Authorization", "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc")
        );
        assert_ne!(
            ha,
            b.header("Authorization", "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc")
        );
        let q = a.query("api_key=abc123secret&page=1");
        assert!(
            q.starts_with("api_key=sha256:") && q.ends_with("&page=1"),
            "{q}"
        );
    }
}
