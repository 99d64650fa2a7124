//! How a request authenticates: none, Basic, Bearer (with what its JWT says), Digest, an API
//! key in a header or query parameter, a session cookie — or another scheme.
//!
//! Owns the per-request credential detection ([`detect`]), the reading of JWT headers and
//! claims ([`decode_jwt`], RFC 7519; the signature is *not* verified, the sensor has no keys),
//! and the raw splitting of `Cookie` headers ([`cookies`], RFC 6265 §4.2.1) and query strings
//! ([`query_pairs`], [`percent_decode`], RFC 3986 §2.1 and §3.4) that the engine and the
//! redactor reuse. Only credential *names* leave this module, never values.
//!
//! # Rules
//! One credential is reported per request, the first found in this order:
//! 1. `Authorization` (RFC 9110 §11.6.2): the scheme decides — `Basic` (RFC 7617) → basic,
//!    `Bearer` (RFC 6750), `DPoP` (RFC 9449) and `JWT` → bearer with its JWT decoded when it is
//!    one, `Digest` (RFC 7616) → digest. Schemes that carry a static key (`Token`, `ApiKey`,
//!    `Api-Key`, `Key`, `SSWS`, `apikey` …) → api key. Schemes that *sign* the request or
//!    negotiate (`AWS4-HMAC-SHA256`, `HMAC…`, `OAuth` 1.0, `Hawk`, `Signature`, `Negotiate`,
//!    `NTLM`, `SharedKey` …) are other: no reusable secret is sent, which is worth telling
//!    apart from a key. A credential without a scheme is bearer when it is a JWT, else an api
//!    key. `Proxy-Authorization` authenticates to a proxy, not to the API, and is ignored.
//! 2. An API-key header: `X-API-Key`, `API-Key`, `apikey`, `X-Auth-Token`, `X-Access-Token`,
//!    `X-Token`, `X-Goog-Api-Key`, `Ocp-Apim-Subscription-Key`, `Private-Token`, … or any
//!    header whose normalised name contains `apikey`/`apitoken` or ends in `authtoken`,
//!    `accesstoken`, `apisecret` (never `csrf`/`xsrf` ones) → api key named by the header
//!    (lower case), its JWT decoded when it carries one. It stays an api key even then:
//!    OpenAPI's `http bearer` means the `Authorization` header.
//! 3. A query parameter: `api_key`, `apikey`, `key`, `api_token`, `access_key`,
//!    `subscription-key`, `client_secret` … → api key; `access_token`, `token`, `auth_token`,
//!    `id_token`, `jwt` → bearer with its JWT when the value is a JWT, else api key (an opaque
//!    token cannot be told from a static key passively); presigned-URL signatures
//!    (`X-Amz-Signature`, `X-Goog-Signature`) → other. Names are compared normalised
//!    (`api_key` = `apiKey` = `API-KEY`).
//! 4. A session-like cookie in `Cookie`: names containing `session` or starting with `sess`
//!    (`PHPSESSID`, `JSESSIONID`, `ASP.NET_SessionId`, `laravel_session` …), ending in `sid`
//!    (`sid`, `connect.sid`, `SAPISID`), and `auth`, `*_auth`, `.ASPXAUTH`, `token`,
//!    `auth_token`, `access_token`, `jwt`, `id_token`, `remember_token` — never `csrf`/`xsrf`
//!    cookies → session cookie named by the cookie, its JWT decoded when it carries one.
//!
//! Empty credentials do not count (an empty `api_key=` is no key).
use crate::infer::sensitive;
use std::borrow::Cow;

/// Tokens longer than this are not decoded as JWTs (real ones are a few KiB at most).
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// JWT string claims (`iss`, `aud`, `kid` …) are cut to this many bytes.
pub const MAX_CLAIM_BYTES: usize = 256;

/// At most this many audiences are kept from a JWT.
pub const MAX_AUDIENCES: usize = 16;

/// How a request authenticates.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// No credential seen.
    None,
    /// `Authorization: Basic` (RFC 7617).
    Basic,
    /// A bearer token (RFC 6750), in `Authorization` or as a JWT in the query.
    Bearer,
    /// `Authorization: Digest` (RFC 7616).
    Digest,
    /// A static key in a header, query parameter or a key-carrying `Authorization` scheme.
    ApiKey,
    /// A session cookie.
    SessionCookie,
    /// Another `Authorization` scheme (request signing, negotiation) or a presigned URL.
    Other,
}

impl AuthKind {
    /// The serialised name (`session_cookie` …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Basic => "basic",
            AuthKind::Bearer => "bearer",
            AuthKind::Digest => "digest",
            AuthKind::ApiKey => "api_key",
            AuthKind::SessionCookie => "session_cookie",
            AuthKind::Other => "other",
        }
    }
}

/// How one request authenticated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthInfo {
    /// The kind of credential.
    pub kind: AuthKind,
    /// Header, query parameter or cookie name carrying the credential (never the value).
    /// Header names are lower case; parameter and cookie names as sent.
    pub name: Option<String>,
    /// `"header"`, `"query"` or `"cookie"`.
    pub location: Option<&'static str>,
    /// What the credential's JWT says, when it is one.
    pub jwt: Option<JwtInfo>,
}

impl AuthInfo {
    /// No credential.
    pub fn none() -> AuthInfo {
        AuthInfo {
            kind: AuthKind::None,
            name: None,
            location: None,
            jwt: None,
        }
    }

    fn new(kind: AuthKind, name: &str, location: &'static str, jwt: Option<JwtInfo>) -> Self {
        AuthInfo {
            kind,
            name: Some(name.to_string()),
            location: Some(location),
            jwt,
        }
    }
}

impl Default for AuthInfo {
    fn default() -> Self {
        AuthInfo::none()
    }
}

/// The header and claims of a JWT (RFC 7519 §4.1, RFC 7515 §4.1). Not verified.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JwtInfo {
    /// Header `alg`.
    pub alg: String,
    /// Header `typ`.
    pub typ: Option<String>,
    /// Issuer.
    pub iss: Option<String>,
    /// Audiences (a single string audience becomes one entry).
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<i64>,
    /// Issued at, seconds since the epoch.
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch.
    pub nbf: Option<i64>,
    /// Header `kid`.
    pub kid: Option<String>,
}

/// Detects how a request authenticates (see the module docs for the rules and precedence).
/// `headers` are (name, value) pairs as parsed (names in any case; HTTP/2 pseudo-headers are
/// skipped); `query` the raw query string without `?`.
pub fn detect(headers: &[(String, String)], query: Option<&str>) -> AuthInfo {
    let real = || headers.iter().filter(|(n, _)| !n.starts_with(':'));
    if let Some((_, v)) =
        real().find(|(n, v)| n.eq_ignore_ascii_case("authorization") && !v.trim().is_empty())
    {
        return authorization(v.trim());
    }
    for (n, v) in real() {
        let v = v.trim();
        if !v.is_empty() && is_api_key_header(n) {
            return AuthInfo::new(
                AuthKind::ApiKey,
                &n.to_ascii_lowercase(),
                "header",
                jwt_of(v),
            );
        }
    }
    if let Some(q) = query {
        if let Some(a) = from_query(q) {
            return a;
        }
    }
    for (n, v) in real() {
        if !n.eq_ignore_ascii_case("cookie") {
            continue;
        }
        for (cn, cv) in cookies(v) {
            if !cv.is_empty() && is_session_cookie(cn) {
                return AuthInfo::new(AuthKind::SessionCookie, cn, "cookie", jwt_of(cv));
            }
        }
    }
    AuthInfo::none()
}

/// Decodes a JWT only when it looks like one: keeps the common opaque-key case cheap. A JOSE
/// header is a JSON object, so its base64url starts with `e` (`{` → `ey…`, `{\n` → `ew…`).
fn jwt_of(v: &str) -> Option<JwtInfo> {
    if v.starts_with('e') {
        decode_jwt(v)
    } else {
        None
    }
}

/// `Authorization` schemes that carry a static key.
const KEY_SCHEMES: &[&str] = &[
    "token",
    "apikey",
    "api-key",
    "key",
    "ssws",
    "apitoken",
    "api-token",
    "client-id",
    "splunk",
    "geniekey",
];

fn authorization(v: &str) -> AuthInfo {
    let known = |s: &str| {
        ["basic", "bearer", "digest", "dpop", "jwt"]
            .iter()
            .chain(KEY_SCHEMES)
            .any(|k| s.eq_ignore_ascii_case(k))
    };
    let (scheme, cred) = match v.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((s, c)) => (s, c.trim()),
        // A scheme without credentials (`Authorization: Bearer`) is still that scheme.
        None if known(v) => (v, ""),
        None => ("", v),
    };
    let at = |kind, jwt| AuthInfo::new(kind, "authorization", "header", jwt);
    if scheme.is_empty() {
        // A bare credential (`Authorization: <token>`).
        return match jwt_of(cred) {
            Some(j) => at(AuthKind::Bearer, Some(j)),
            None => at(AuthKind::ApiKey, None),
        };
    }
    let is = |s: &str| scheme.eq_ignore_ascii_case(s);
    if is("basic") {
        at(AuthKind::Basic, None)
    } else if is("bearer") || is("dpop") || is("jwt") {
        at(AuthKind::Bearer, jwt_of(cred))
    } else if is("digest") {
        at(AuthKind::Digest, None)
    } else if KEY_SCHEMES.iter().any(|k| is(k)) {
        at(AuthKind::ApiKey, jwt_of(cred))
    } else {
        at(AuthKind::Other, None)
    }
}

const NAME_BUF: usize = 64;

fn norm(name: &str, buf: &mut [u8; NAME_BUF]) -> usize {
    sensitive::normalise_name(name, buf)
}

/// Normalised names of API-key headers.
#[rustfmt::skip]
const KEY_HEADERS: &[&str] = &[
    "xapikey", "apikey", "xapitoken", "apitoken", "xauthtoken", "authtoken", "xaccesstoken",
    "accesstoken", "xtoken", "token", "xauthkey", "authkey", "xappkey", "xapplicationkey",
    "xgoogapikey", "ocpapimsubscriptionkey", "xfunctionskey", "privatetoken", "xshopifyaccesstoken",
    "xapisecret", "xclientsecret", "xsecretkey", "xauth", "xkey",
];

fn is_api_key_header(name: &str) -> bool {
    let mut buf = [0u8; NAME_BUF];
    let n = norm(name, &mut buf);
    let j = &buf[..n];
    if n == 0 || has(j, b"csrf") || has(j, b"xsrf") {
        return false;
    }
    KEY_HEADERS.iter().any(|k| j == k.as_bytes())
        || has(j, b"apikey")
        || has(j, b"apitoken")
        || j.ends_with(b"authtoken")
        || j.ends_with(b"accesstoken")
        || j.ends_with(b"apisecret")
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Normalised query parameter names carrying a static key.
#[rustfmt::skip]
const KEY_PARAMS: &[&str] = &[
    "apikey", "key", "apitoken", "accesskey", "authkey", "appkey", "appid", "subscriptionkey",
    "xapikey", "apisecret", "clientsecret", "secret", "privatetoken",
];

/// Normalised query parameter names carrying a token, possibly a JWT.
#[rustfmt::skip]
const TOKEN_PARAMS: &[&str] = &[
    "accesstoken", "token", "authtoken", "idtoken", "jwt", "bearer", "oauthtoken", "auth",
    "sessiontoken",
];

/// Presigned-URL signatures (AWS SigV4 and GCS V4 query authentication).
const SIGNATURE_PARAMS: &[&str] = &["xamzsignature", "xgoogsignature"];

fn from_query(q: &str) -> Option<AuthInfo> {
    let mut buf = [0u8; NAME_BUF];
    for (k, v) in query_pairs(q) {
        if v.is_empty() {
            continue;
        }
        let k = percent_decode(k);
        let n = norm(&k, &mut buf);
        let j = &buf[..n];
        let is_in = |list: &[&str]| list.iter().any(|x| x.as_bytes() == j);
        if is_in(KEY_PARAMS) {
            return Some(AuthInfo::new(AuthKind::ApiKey, &k, "query", None));
        }
        if is_in(TOKEN_PARAMS) {
            let v = percent_decode(v);
            return Some(match jwt_of(v.trim()) {
                Some(jwt) => AuthInfo::new(AuthKind::Bearer, &k, "query", Some(jwt)),
                None => AuthInfo::new(AuthKind::ApiKey, &k, "query", None),
            });
        }
        if is_in(SIGNATURE_PARAMS) {
            return Some(AuthInfo::new(AuthKind::Other, &k, "query", None));
        }
    }
    None
}

/// Normalised cookie names that hold a session or an auth token.
#[rustfmt::skip]
const SESSION_COOKIES: &[&str] = &[
    "auth", "authtoken", "accesstoken", "token", "jwt", "idtoken", "remembertoken", "refreshtoken",
];

fn is_session_cookie(name: &str) -> bool {
    let mut buf = [0u8; NAME_BUF];
    let n = norm(name, &mut buf);
    let j = &buf[..n];
    if n == 0 || has(j, b"csrf") || has(j, b"xsrf") {
        return false;
    }
    has(j, b"session")
        || j.starts_with(b"sess")
        || j.ends_with(b"sessid")
        || j.ends_with(b"sid")
        || j.ends_with(b"auth")
        || SESSION_COOKIES.iter().any(|c| j == c.as_bytes())
}

/// Decodes a JWT's header and claims (RFC 7519; signature *not* verified). `None` unless it
/// has two or three base64url parts, at most [`MAX_JWT_BYTES`], and a header that is a JSON
/// object with a string `alg`. A payload that is not a JSON object (nested or encrypted
/// content) gives no claims. String claims are cut to [`MAX_CLAIM_BYTES`], audiences to
/// [`MAX_AUDIENCES`]; numeric dates may be fractional (RFC 7519 §2 `NumericDate`).
pub fn decode_jwt(token: &str) -> Option<JwtInfo> {
    use base64::Engine as _;
    let t = token.trim();
    if t.len() > MAX_JWT_BYTES {
        return None;
    }
    let mut parts = t.split('.');
    let (h, p) = (parts.next()?, parts.next()?);
    let sig = parts.next();
    let b64ok = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'=')
    };
    if parts.next().is_some()
        || h.is_empty()
        || p.is_empty()
        || !b64ok(h)
        || !b64ok(p)
        || !sig.is_none_or(b64ok)
    {
        return None;
    }
    let header: serde_json::Value =
        serde_json::from_slice(&sensitive::B64URL.decode(h).ok()?).ok()?;
    let header = header.as_object()?;
    let alg = header.get("alg")?.as_str()?;
    let claims: Option<serde_json::Value> = sensitive::B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let claims = claims.as_ref().and_then(|c| c.as_object());
    let claim = |k: &str| claims.and_then(|c| c.get(k));
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(capped);
    let aud = match claim("aud") {
        Some(serde_json::Value::String(s)) => vec![capped(s)],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str())
            .take(MAX_AUDIENCES)
            .map(capped)
            .collect(),
        _ => Vec::new(),
    };
    Some(JwtInfo {
        alg: capped(alg),
        typ: text(header.get("typ")),
        iss: text(claim("iss")),
        aud,
        exp: claim("exp").and_then(numeric_date),
        iat: claim("iat").and_then(numeric_date),
        nbf: claim("nbf").and_then(numeric_date),
        kid: text(header.get("kid")),
    })
}

/// A string cut to [`MAX_CLAIM_BYTES`] on a character boundary.
fn capped(s: &str) -> String {
    if s.len() <= MAX_CLAIM_BYTES {
        return s.to_string();
    }
    let mut end = MAX_CLAIM_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// RFC 7519 §2 `NumericDate`: integer or fractional seconds; some issuers send a digit string.
fn numeric_date(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            // `as` saturates at the i64 range; NaN cannot come out of JSON.
            f.is_finite().then_some(f as i64)
        }),
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 19 => s.parse().ok(),
        _ => None,
    }
}

/// Splits a `Cookie` header value into (name, value) pairs (RFC 6265 §4.2.1: `; `-separated
/// `name=value`, a value optionally in double quotes, which are removed). Lenient like
/// servers: any whitespace is trimmed, pairs without `=` or with an empty name are skipped.
/// Lazy, no allocation, linear in the value (which the HTTP parser caps).
pub fn cookies(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(';').filter_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        let n = n.trim();
        if n.is_empty() {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v);
        Some((n, v))
    })
}

/// Splits a raw query string (without `?`) into (name, value) pairs, not decoded: `&`
/// separates pairs, the first `=` a name from its value, a pair without `=` has an empty
/// value, empty pairs are skipped. Lazy, no allocation, linear in the query.
pub fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Percent-decodes (RFC 3986 §2.1) a query or path component. Borrows when there is no `%`.
/// Invalid escapes are kept as they are; bytes that do not decode to UTF-8 become U+FFFD.
/// `+` is left as is: it is a space only in form encoding, and a literal `+` matters more
/// here (`+14155550134`, `first+tag@example.com`).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2lnbmF0dXJl", b64(header), b64(payload))
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decode_real_looking_jwt() {
        let t = jwt(
            r#"{"alg":"RS256","typ":"JWT","kid":"2024-07-key"}"#,
            r#"{"iss":"https://login.example.com/","sub":"u-42","aud":["api://orders","web"],"exp":1735689600,"iat":1735686000,"nbf":1735686000.5,"scope":"read"}"#,
        );
        let j = decode_jwt(&t).unwrap();
        assert_eq!(
            j,
            JwtInfo {
                alg: "RS256".into(),
                typ: Some("JWT".into()),
                iss: Some("https://login.example.com/".into()),
                aud: vec!["api://orders".into(), "web".into()],
                exp: Some(1735689600),
                iat: Some(1735686000),
                nbf: Some(1735686000),
                kid: Some("2024-07-key".into()),
            }
        );
        // A single audience string; an unsigned token; padding tolerated.
        let t = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"aud":"svc","exp":"1700000000"}"#)
        );
        let j = decode_jwt(&t).unwrap();
        assert_eq!(j.alg, "none");
        assert_eq!(j.aud, vec!["svc".to_string()]);
        assert_eq!(j.exp, Some(1700000000));
        assert_eq!(j.typ, None);
        let pad = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
        let padded = format!("{}.{}", pad(r#"{"alg":"none"}"#), pad(r#"{"iss":"x"}"#));
        assert!(padded.contains("=."), "{padded}");
        assert_eq!(decode_jwt(&padded).unwrap().iss.as_deref(), Some("x"));
        // A payload that is not JSON (nested JWT) still yields the header.
        let t = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256","cty":"JWT"}"#),
            b64("binary")
        );
        let j = decode_jwt(&t).unwrap();
        assert_eq!((j.alg.as_str(), j.iss, j.exp), ("HS256", None, None));
        // Long claims are capped; many audiences too.
        let long = "é".repeat(500);
        let auds: Vec<String> = (0..40).map(|i| format!("\"a{i}\"")).collect();
        let t = jwt(
            r#"{"alg":"ES256"}"#,
            &format!(
                r#"{{"iss":"{long}","aud":[{}],"exp":1e300}}"#,
                auds.join(",")
            ),
        );
        let j = decode_jwt(&t).unwrap();
        assert!(j.iss.as_ref().unwrap().len() <= MAX_CLAIM_BYTES);
        assert_eq!(j.aud.len(), MAX_AUDIENCES);
        assert_eq!(j.exp, Some(i64::MAX));
    }

    #[test]
    fn jwt_garbage() {
        let p = b64(r#"{"sub":"1"}"#);
        for t in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "...".into(),
            "eyJ.eyJ.eyJ".into(),
            format!("{}.{p}.s.x", b64(r#"{"alg":"HS256"}"#)), // four parts
            format!("{}.{p}.s", b64(r#"{"typ":"JWT"}"#)),     // no alg
            format!("{}.{p}.s", b64(r#"{"alg":1}"#)),
            format!("{}.{p}.s", b64("[1,2]")),
            format!("{}.{p}.s", b64("\u{0}\u{1}")),
            format!("{}..s", b64(r#"{"alg":"HS256"}"#)),
            format!("{}.{p}.s!g", b64(r#"{"alg":"HS256"}"#)),
            format!("{}.{p}", "[".repeat(1000)),
            format!("{}.{p}", b64(&"[".repeat(10_000))), // deep nesting: serde_json's limit
            format!("{}.{p}", "A".repeat(MAX_JWT_BYTES)),
        ] {
            assert_eq!(decode_jwt(&t), None, "{t:.80}");
        }
    }

    #[test]
    fn authorization_schemes() {
        let tok = jwt(r#"{"alg":"RS256","typ":"JWT"}"#, r#"{"iss":"idp","exp":1}"#);
        let a = detect(&h(&[("Authorization", &format!("Bearer {tok}"))]), None);
        assert_eq!(a.kind, AuthKind::Bearer);
        assert_eq!(a.name.as_deref(), Some("authorization"));
        assert_eq!(a.location, Some("header"));
        assert_eq!(a.jwt.as_ref().unwrap().iss.as_deref(), Some("idp"));
        let a = detect(&h(&[("authorization", "Bearer opaque-token-123")]), None);
        assert_eq!((a.kind, a.jwt), (AuthKind::Bearer, None));
        for (v, k) in [
            ("Basic dXNlcjpwYXNz", AuthKind::Basic),
            ("basic dXNlcjpwYXNz", AuthKind::Basic),
            ("Digest username=\"u\", realm=\"r\", nonce=\"n\"", AuthKind::Digest),
            ("Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", AuthKind::ApiKey),
            ("token ghp_16C7e42F292c6912E7710c838347Ae178B4a", AuthKind::ApiKey),
            ("ApiKey abc123", AuthKind::ApiKey),
            ("SSWS 00QCjAl4MlV-WPXM", AuthKind::ApiKey),
            (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=fe5f",
                AuthKind::Other,
            ),
            ("HMAC-SHA256 keyId=1,signature=x", AuthKind::Other),
            ("OAuth oauth_consumer_key=\"x\"", AuthKind::Other),
            ("Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1", AuthKind::Other),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", AuthKind::ApiKey),
        ] {
            let a = detect(&h(&[("Authorization", v)]), None);
            assert_eq!(a.kind, k, "{v}");
            assert_eq!(a.name.as_deref(), Some("authorization"), "{v}");
            assert!(a.jwt.is_none());
        }
        // A bare JWT is a bearer token; DPoP carries one too.
        let a = detect(&h(&[("Authorization", &tok)]), None);
        assert_eq!(a.kind, AuthKind::Bearer);
        assert!(a.jwt.is_some());
        let a = detect(&h(&[("Authorization", &format!("DPoP {tok}"))]), None);
        assert_eq!(a.kind, AuthKind::Bearer);
        // A scheme without credentials is still that scheme.
        assert_eq!(
            detect(&h(&[("Authorization", "Bearer")]), None).kind,
            AuthKind::Bearer
        );
        assert_eq!(
            detect(&h(&[("Authorization", "Basic ")]), None).kind,
            AuthKind::Basic
        );
        // Empty Authorization and Proxy-Authorization do not count.
        let a = detect(
            &h(&[
                ("Authorization", "  "),
                ("Proxy-Authorization", "Basic eA=="),
            ]),
            None,
        );
        assert_eq!(a, AuthInfo::none());
    }

    #[test]
    fn api_key_headers() {
        for n in [
            "X-API-Key",
            "x-api-key",
            "Api-Key",
            "apikey",
            "X-Auth-Token",
            "X-Access-Token",
            "X-Goog-Api-Key",
            "Ocp-Apim-Subscription-Key",
            "Private-Token",
            "X-Partner-ApiKey",
            "X-Shopify-Access-Token",
        ] {
            let a = detect(&h(&[("Accept", "*/*"), (n, "k-123")]), None);
            assert_eq!(a.kind, AuthKind::ApiKey, "{n}");
            assert_eq!(a.name, Some(n.to_ascii_lowercase()), "{n}");
            assert_eq!(a.location, Some("header"));
        }
        for n in [
            "X-CSRF-Token",
            "X-XSRF-TOKEN",
            "X-Request-Id",
            "Keep-Alive",
            "Sec-WebSocket-Key",
        ] {
            assert_eq!(detect(&h(&[(n, "abc")]), None).kind, AuthKind::None, "{n}");
        }
        // An empty key is no key.
        assert_eq!(detect(&h(&[("X-API-Key", " ")]), None).kind, AuthKind::None);
        // A JWT in a key header is decoded, the kind stays api key.
        let tok = jwt(r#"{"alg":"HS256"}"#, r#"{"iss":"me"}"#);
        let a = detect(&h(&[("X-Access-Token", &tok)]), None);
        assert_eq!(a.kind, AuthKind::ApiKey);
        assert_eq!(a.jwt.unwrap().iss.as_deref(), Some("me"));
    }

    #[test]
    fn query_credentials() {
        for (q, name) in [
            ("api_key=ak_123", "api_key"),
            ("page=2&apikey=x", "apikey"),
            ("apiKey=x", "apiKey"),
            ("key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "key"),
            ("access_token=opaque", "access_token"),
            ("token=tok_live_1", "token"),
            ("subscription-key=x", "subscription-key"),
        ] {
            let a = detect(&[], Some(q));
            assert_eq!(a.kind, AuthKind::ApiKey, "{q}");
            assert_eq!(a.name.as_deref(), Some(name), "{q}");
            assert_eq!(a.location, Some("query"), "{q}");
        }
        let tok = jwt(r#"{"alg":"RS256"}"#, r#"{"aud":"api"}"#);
        let a = detect(&[], Some(&format!("x=1&access_token={tok}")));
        assert_eq!(a.kind, AuthKind::Bearer);
        assert_eq!(a.name.as_deref(), Some("access_token"));
        assert_eq!(a.jwt.unwrap().aud, vec!["api".to_string()]);
        let a = detect(
            &[],
            Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=fe5f"),
        );
        assert_eq!(a.kind, AuthKind::Other);
        assert_eq!(a.name.as_deref(), Some("X-Amz-Signature"));
        for q in [
            "page=2&sort=asc",
            "api_key=",
            "monkey=1&keyboard=2",
            "",
            "&&&",
            "=x",
        ] {
            assert_eq!(detect(&[], Some(q)).kind, AuthKind::None, "{q}");
        }
    }

    #[test]
    fn session_cookies() {
        for (cookie, name) in [
            ("PHPSESSID=298zf09hf012fh2; theme=dark", "PHPSESSID"),
            (
                "theme=dark; JSESSIONID=1A530637289A03B07199A44E8D531427",
                "JSESSIONID",
            ),
            ("connect.sid=s%3Aabc.def", "connect.sid"),
            ("_myapp_session=abc", "_myapp_session"),
            ("sessionid=abc", "sessionid"),
            ("sid=abc", "sid"),
            ("ASP.NET_SessionId=abc", "ASP.NET_SessionId"),
            (".ASPXAUTH=abc", ".ASPXAUTH"),
            ("auth=abc", "auth"),
            ("jwt=abc", "jwt"),
        ] {
            let a = detect(&h(&[("Cookie", cookie)]), None);
            assert_eq!(a.kind, AuthKind::SessionCookie, "{cookie}");
            assert_eq!(a.name.as_deref(), Some(name), "{cookie}");
            assert_eq!(a.location, Some("cookie"));
        }
        for cookie in [
            "theme=dark; _ga=GA1.2.3",
            "csrftoken=abc",
            "XSRF-TOKEN=abc",
            "session=",
            "lang=en",
            "",
        ] {
            assert_eq!(
                detect(&h(&[("Cookie", cookie)]), None).kind,
                AuthKind::None,
                "{cookie}"
            );
        }
        let tok = jwt(r#"{"alg":"HS256"}"#, r#"{"iss":"app"}"#);
        let a = detect(&h(&[("cookie", &format!("token={tok}"))]), None);
        assert_eq!(a.kind, AuthKind::SessionCookie);
        assert_eq!(a.jwt.unwrap().iss.as_deref(), Some("app"));
    }

    #[test]
    fn precedence() {
        let cookie = ("Cookie", "sessionid=abc");
        let key = ("X-API-Key", "k");
        let authz = ("Authorization", "Basic dXNlcjpwYXNz");
        let q = Some("api_key=x");
        let all = h(&[cookie, key, authz]);
        assert_eq!(detect(&all, q).kind, AuthKind::Basic);
        let no_authz = h(&[cookie, key]);
        let a = detect(&no_authz, q);
        assert_eq!((a.kind, a.location), (AuthKind::ApiKey, Some("header")));
        let only_cookie = h(&[cookie]);
        let a = detect(&only_cookie, q);
        assert_eq!((a.kind, a.location), (AuthKind::ApiKey, Some("query")));
        let a = detect(&only_cookie, None);
        assert_eq!(a.kind, AuthKind::SessionCookie);
        assert_eq!(detect(&h(&[("Accept", "*/*")]), None), AuthInfo::none());
        // HTTP/2 pseudo-headers are not credentials.
        assert_eq!(
            detect(&h(&[(":authority", "x")]), None).kind,
            AuthKind::None
        );
    }

    #[test]
    fn serialises() {
        assert_eq!(
            serde_json::to_string(&AuthKind::SessionCookie).unwrap(),
            "\"session_cookie\""
        );
        assert_eq!(AuthKind::ApiKey.as_str(), "api_key");
        let v = serde_json::to_value(detect(&[], Some("api_key=secret-value"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "api_key", "name": "api_key", "location": "query", "jwt": null})
        );
        assert!(!v.to_string().contains("secret-value"));
    }

    #[test]
    fn cookie_splitting() {
        let v: Vec<_> = cookies(" a=1;b = \"two\" ; =x; flag; c=; d=a=b").collect();
        assert_eq!(v, vec![("a", "1"), ("b", "two"), ("c", ""), ("d", "a=b")]);
        assert_eq!(cookies("").count(), 0);
        assert_eq!(cookies(&";".repeat(10_000)).count(), 0);
        let v: Vec<_> = cookies("q=\"").collect();
        assert_eq!(v, vec![("q", "\"")]);
    }

    #[test]
    fn query_splitting_and_decoding() {
        let v: Vec<_> = query_pairs("a=1&&b=&c&d=x=y&=z").collect();
        assert_eq!(
            v,
            vec![("a", "1"), ("b", ""), ("c", ""), ("d", "x=y"), ("", "z")]
        );
        assert!(matches!(
            percent_decode("plain+text"),
            Cow::Borrowed("plain+text")
        ));
        assert_eq!(
            percent_decode("jane.roe%40example.org"),
            "jane.roe@example.org"
        );
        assert_eq!(percent_decode("%2B1%20415"), "+1 415");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }
}
