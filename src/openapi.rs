//! OpenAPI 3.1 export of the inventory: one document per host, describing what was observed.
//!
//! Owns the mapping from inventory records to OpenAPI 3.1.0 documents
//! (<https://spec.openapis.org/oas/v3.1.0>):
//! - path templates become path keys (§4.8.8) whose parameters have unique, valid names
//!   (`/users/{id}/orders/{id}` → `/users/{userId}/orders/{orderId}`), declared once per Path
//!   Item (§4.8.9) as required path parameters (§4.8.12). Templated paths of the same shape
//!   "MUST NOT exist" twice with different names (§4.8.8), so records whose templates differ only
//!   in their placeholder kinds are folded into one path;
//! - the eight OpenAPI methods become operations (§4.8.10), keyed by the exact method token
//!   (methods are case-sensitive, RFC 9110 §9.1); other methods are listed under
//!   `x-apitap-other-methods`;
//! - status codes become responses, each with the `description` §4.8.17 requires;
//! - inferred body schemas (JSON Schema 2020-12, the native dialect of 3.1, §4.8.24) become
//!   request and response content;
//! - credentials become security schemes (§4.8.27) and per-operation requirements; an operation
//!   also seen without credentials gets the empty requirement `{}` (optional auth, §4.8.30).
//!
//! Only structure leaves the sensor here: names, types, counts and timestamps, never a value
//! seen in traffic. No `example`, `examples`, `default`, `const` or `enum` is written, and those
//! keywords are stripped from the inferred schemas as a second line of defence.
//!
//! Output is deterministic for a given inventory: keys are sorted, and `info.version` is the
//! last capture timestamp of the host, not the wall clock, so documents diff cleanly between runs.
use crate::infer::auth::AuthKind;
use crate::inventory::{
    media_type, write_atomic, Credential, EndpointKey, EndpointStats, Inventory, InventoryConfig,
    InventoryStats,
};
use crate::observation::rfc3339;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The OpenAPI version written.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// The operations an OpenAPI 3.1 Path Item can hold, by method token.
const OPERATIONS: [(&str, &str); 8] = [
    ("GET", "get"),
    ("PUT", "put"),
    ("POST", "post"),
    ("DELETE", "delete"),
    ("OPTIONS", "options"),
    ("HEAD", "head"),
    ("PATCH", "patch"),
    ("TRACE", "trace"),
];

/// Longest parameter name derived from a path segment.
const MAX_PARAM_NAME: usize = 64;
/// Longest operationId (paths are capped upstream; this keeps ids readable).
const MAX_OPERATION_ID: usize = 200;

/// Writes the OpenAPI document(s) of `inv` to `path`.
///
/// One document per host. When `path` is an existing directory, ends with `/` or has no
/// extension, each goes to `path/<host>.openapi.json` (the directory is created); otherwise a single host goes to `path`
/// itself and several to `<stem>.<host>.<ext>` beside it (see [`targets`]). Every file is
/// replaced atomically. With no host at all, a file `path` receives an empty document.
pub fn write(inv: &Inventory, path: &Path) -> std::io::Result<()> {
    let mut docs = documents(inv);
    let dir = is_dir_target(path);
    if docs.is_empty() && !dir {
        docs.push((String::new(), empty_document()));
    }
    if dir {
        std::fs::create_dir_all(path)?;
    }
    let hosts: Vec<&str> = docs.iter().map(|(h, _)| h.as_str()).collect();
    for ((_, doc), target) in docs.iter().zip(targets(path, dir, &hosts)) {
        let mut bytes = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(&target, &bytes)?;
    }
    Ok(())
}

/// Whether `path` names a directory of documents: an existing directory, a path ending in `/`,
/// or a path without extension (`--openapi out/api` — a JSON document is named `.json`).
fn is_dir_target(path: &Path) -> bool {
    path.is_dir()
        || path.as_os_str().to_string_lossy().ends_with('/')
        || (!path.exists() && path.extension().is_none())
}

/// Where the document of each host goes (in the order of `hosts`): `path/<host>.openapi.json`
/// when `dir`, `path` for a single host, else `<stem>.<host>.<ext>` beside `path`. Host names
/// are reduced to `[a-z0-9.-_]` (`127.0.0.1:8080` → `127.0.0.1_8080`) and made unique.
pub fn targets(path: &Path, dir: bool, hosts: &[&str]) -> Vec<PathBuf> {
    let mut used = Uniquer::new("-");
    let names: Vec<String> = hosts.iter().map(|h| used.name(&sanitise_host(h))).collect();
    if dir {
        return names
            .iter()
            .map(|n| path.join(format!("{n}.openapi.json")))
            .collect();
    }
    if hosts.len() <= 1 {
        return vec![path.to_path_buf(); hosts.len()];
    }
    let stem = path
        .file_stem()
        .map_or(Cow::Borrowed("openapi"), |s| s.to_string_lossy());
    let ext = path
        .extension()
        .map_or(Cow::Borrowed("json"), |s| s.to_string_lossy());
    names
        .iter()
        .map(|n| path.with_file_name(format!("{stem}.{n}.{ext}")))
        .collect()
}

fn sanitise_host(h: &str) -> String {
    let s: String = h
        .chars()
        .take(200)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    // A leading dot would hide the file (and `..` must never become a path component).
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "unknown-host".to_string()
    } else {
        s.to_string()
    }
}

/// Hands out unique names: `base`, else `base` with the first free counter (2, 3, …). The
/// next counter is remembered per base, so n colliding names cost O(n), not O(n²).
struct Uniquer {
    used: HashSet<String>,
    next: HashMap<String, usize>,
    sep: &'static str,
}

impl Uniquer {
    fn new(sep: &'static str) -> Self {
        Uniquer {
            used: HashSet::new(),
            next: HashMap::new(),
            sep,
        }
    }

    fn name(&mut self, base: &str) -> String {
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        let n = self.next.entry(base.to_string()).or_insert(2);
        loop {
            let c = format!("{base}{}{n}", self.sep);
            *n += 1;
            if self.used.insert(c.clone()) {
                return c;
            }
        }
    }
}

/// The documents of `inv`, one per host, sorted by host.
pub fn documents(inv: &Inventory) -> Vec<(String, Value)> {
    let records = inv.sorted();
    let mut by_host: BTreeMap<&str, Vec<(&EndpointKey, &EndpointStats)>> = BTreeMap::new();
    for (k, v) in records {
        by_host.entry(k.host.as_str()).or_default().push((k, v));
    }
    by_host
        .into_iter()
        .map(|(h, recs)| (h.to_string(), document(h, &recs)))
        .collect()
}

fn empty_document() -> Value {
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "apitap: no HTTP traffic observed",
            "version": "observed",
        },
        "paths": {},
    })
}

// ---------------------------------------------------------------------------------------------
// Templates → path keys.

/// A piece of a template segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// Literal text.
    Lit(&'a str),
    /// A placeholder (`{id}` → `id`).
    Param(&'a str),
}

/// A template as segments (split on `/`, empty segments kept) of pieces.
type Segments<'a> = Vec<Vec<Piece<'a>>>;

fn parse_template(t: &str) -> Segments<'_> {
    t.split('/').map(parse_segment).collect()
}

fn is_placeholder_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_PARAM_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_segment(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] == b'{' {
            if let Some(len) = s[i + 1..].find('}') {
                let name = &s[i + 1..i + 1 + len];
                if is_placeholder_name(name) {
                    if lit_start < i {
                        out.push(Piece::Lit(&s[lit_start..i]));
                    }
                    out.push(Piece::Param(name));
                    i += len + 2;
                    lit_start = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    if lit_start < s.len() || out.is_empty() {
        out.push(Piece::Lit(&s[lit_start..]));
    }
    out
}

/// Literal path text with the braces that would read as a template escaped (RFC 3986 §2.1).
fn push_literal(out: &mut String, lit: &str) {
    for c in lit.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            _ => out.push(c),
        }
    }
}

/// The shape of a template: its literal text with every placeholder as `{}`. Templates of the
/// same shape are one OpenAPI path.
fn shape(segs: &Segments<'_>) -> String {
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        for p in seg {
            match p {
                Piece::Lit(l) => push_literal(&mut out, l),
                Piece::Param(_) => out.push_str("{}"),
            }
        }
    }
    out
}

/// Placeholder kinds that name an identifier (the parameter becomes `<thing>Id`).
fn is_id_kind(kind: &str) -> bool {
    matches!(kind, "id" | "uuid" | "param")
}

/// The JSON Schema of a path parameter by placeholder kind (the shapes of
/// [`crate::infer::template::segment_shape`]).
fn param_schema(kind: &str) -> Value {
    match kind {
        // Digits of any length (beyond 64 bits, leading zeros) or a ULID/KSUID.
        "id" => json!({"anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": "^[0-9A-Za-z]{26,27}$"},
        ]}),
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "hash" => json!({"type": "string", "pattern": "^[0-9A-Fa-f]{16,}$"}),
        // `YYYY-MM-DD`, optionally with an RFC 3339 time.
        "date" => json!({"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]}),
        "email" => json!({"type": "string", "format": "email"}),
        _ => json!({"type": "string"}),
    }
}

/// `categories` → `category`, `users` → `user`, `addresses` → `address`, `status` stays.
fn singular(w: &str) -> Cow<'_, str> {
    let lw = w.to_ascii_lowercase();
    if w.len() > 4 && lw.ends_with("ies") {
        return Cow::Owned(format!("{}y", &w[..w.len() - 3]));
    }
    if w.len() > 4 && (lw.ends_with("sses") || lw.ends_with("xes") || lw.ends_with("ches")) {
        return Cow::Borrowed(&w[..w.len() - 2]);
    }
    if w.len() > 3 && lw.ends_with('s') && !lw.ends_with("ss") && !lw.ends_with("us") {
        return Cow::Borrowed(&w[..w.len() - 1]);
    }
    Cow::Borrowed(w)
}

/// `order-items` → `orderItems`; non-alphanumeric characters split words and are dropped.
fn lower_camel(s: &str) -> String {
    let mut out = String::new();
    for (i, w) in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        let mut cs = w.chars();
        if let Some(f) = cs.next() {
            if i == 0 {
                out.push(f.to_ascii_lowercase());
            } else {
                out.push(f.to_ascii_uppercase());
            }
            out.extend(cs);
        }
    }
    out
}

fn upper_first(s: &str) -> String {
    let mut cs = s.chars();
    match cs.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + cs.as_str(),
        None => String::new(),
    }
}

/// Whether a literal segment says nothing about what the next one identifies (`v1`, `2024`).
fn is_uninformative(lit: &str) -> bool {
    let l = lit.trim_start_matches(['v', 'V']);
    l.is_empty() || l.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The parameter name for a placeholder of `kind` after the literal segment `prev`:
/// `users` + `id` → `userId`, `files` + `hash` → `fileHash`, nothing + `uuid` → `uuid`.
fn param_name(prev: Option<&str>, kind: &str) -> String {
    let base = prev
        .filter(|p| !is_uninformative(p))
        .map(|p| lower_camel(&singular(p)))
        .unwrap_or_default();
    let kind_word = lower_camel(kind);
    let name = if base.is_empty() {
        kind_word
    } else if is_id_kind(kind) || kind_word.is_empty() {
        base + "Id"
    } else {
        base + &upper_first(&kind_word)
    };
    let name: String = name.chars().take(MAX_PARAM_NAME).collect();
    match name.chars().next() {
        None => "param".to_string(),
        Some(c) if c.is_ascii_digit() => format!("p{name}"),
        Some(_) => name,
    }
}

/// A path key and its parameters (name, schema, placeholder kinds) for one shape.
#[derive(Debug)]
struct PathKey {
    key: String,
    params: Vec<(String, Value, BTreeSet<String>)>,
}

/// Names the placeholders of templates of one shape. `templates` are the parsed templates of
/// the shape (same literal text, placeholders possibly of different kinds); a placeholder's
/// schema is its kind's when all templates agree, else a string.
fn path_key(templates: &[Segments<'_>]) -> PathKey {
    let Some(first) = templates.first() else {
        return PathKey {
            key: "/".into(),
            params: Vec::new(),
        };
    };
    let mut used = Uniquer::new("");
    let mut key = String::new();
    let mut params = Vec::new();
    for (si, seg) in first.iter().enumerate() {
        if si > 0 {
            key.push('/');
        }
        let prev = si
            .checked_sub(1)
            .and_then(|p| first.get(p))
            .and_then(|s| match s.as_slice() {
                [Piece::Lit(l)] if !l.is_empty() => Some(*l),
                _ => None,
            });
        for (pi, piece) in seg.iter().enumerate() {
            match piece {
                Piece::Lit(l) => push_literal(&mut key, l),
                Piece::Param(_) => {
                    let kinds: BTreeSet<String> = templates
                        .iter()
                        .filter_map(|t| match t.get(si).and_then(|s| s.get(pi)) {
                            Some(Piece::Param(k)) => Some(k.to_string()),
                            _ => None,
                        })
                        .collect();
                    let (kind, schema) = match kinds.iter().next() {
                        Some(k) if kinds.len() == 1 => (k.as_str(), param_schema(k)),
                        _ => ("id", json!({"type": "string"})),
                    };
                    let name = used.name(&param_name(prev, kind));
                    key.push('{');
                    key.push_str(&name);
                    key.push('}');
                    params.push((name, schema, kinds));
                }
            }
        }
    }
    PathKey { key, params }
}

/// `get` + `/api/v1/users/{userId}/orders` → `getApiV1UsersByUserIdOrders`.
fn operation_id(method: &str, key: &str) -> String {
    let mut id = method.to_string();
    for seg in key.split('/').filter(|s| !s.is_empty()) {
        for piece in parse_segment(seg) {
            match piece {
                Piece::Lit(l) => id.push_str(&upper_first(&lower_camel(l))),
                Piece::Param(p) => {
                    id.push_str("By");
                    id.push_str(&upper_first(p));
                }
            }
        }
    }
    if id == method {
        id.push_str("Root");
    }
    id.chars().take(MAX_OPERATION_ID).collect()
}

// ---------------------------------------------------------------------------------------------
// Security schemes.

/// What a security scheme is, independent of its component name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scheme {
    /// `http` with this RFC 9110 §11 scheme (`basic`, `bearer`, `digest`).
    Http(&'static str),
    /// `apiKey` in `header`/`query`/`cookie` under this name (header names lower case).
    ApiKey(&'static str, String),
}

/// The scheme a credential maps to; `None` when it cannot be described (no name to point at).
fn scheme_of(c: &Credential) -> Option<Scheme> {
    let loc = c.location.unwrap_or("header");
    let named = |loc: &'static str| {
        let n = c.name.as_deref().filter(|n| !n.is_empty())?;
        let n = if loc == "header" {
            n.to_ascii_lowercase()
        } else {
            n.to_string()
        };
        Some(Scheme::ApiKey(loc, n))
    };
    let loc: &'static str = match loc {
        "query" => "query",
        "cookie" => "cookie",
        _ => "header",
    };
    match c.kind {
        AuthKind::None => None,
        AuthKind::Basic => Some(Scheme::Http("basic")),
        AuthKind::Bearer if loc == "header" => Some(Scheme::Http("bearer")),
        AuthKind::Digest => Some(Scheme::Http("digest")),
        AuthKind::SessionCookie => named("cookie"),
        // A bearer token in a query parameter or cookie, an API key, or an unrecognised
        // credential: what OpenAPI can say is where it travels and under which name.
        _ => named(loc),
    }
}

/// The component name of a scheme (`^[a-zA-Z0-9.\-_]+$`, §4.8.7).
fn scheme_name(s: &Scheme) -> String {
    match s {
        Scheme::Http(h) => format!("{h}Auth"),
        Scheme::ApiKey(loc, n) => {
            let n: String = n
                .chars()
                .take(64)
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let prefix = match *loc {
                "query" => "apiKeyQuery",
                "cookie" => "cookie",
                _ => "apiKeyHeader",
            };
            format!("{prefix}_{n}")
        }
    }
}

/// The Security Scheme Object of `s`.
fn scheme_object(s: &Scheme, jwt: bool) -> Value {
    match s {
        Scheme::Http("bearer") if jwt => {
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        }
        Scheme::Http(h) => json!({"type": "http", "scheme": h}),
        Scheme::ApiKey(loc, n) => json!({"type": "apiKey", "in": loc, "name": n}),
    }
}

/// Security schemes kept per document: API key names come from traffic, and a scanner trying
/// thousands of header names must not turn the document into a list of them.
const MAX_SCHEMES: usize = 256;

/// The security schemes of a host: scheme → (component name, object).
struct Schemes {
    by_scheme: BTreeMap<Scheme, String>,
    objects: Map<String, Value>,
    /// Credentials (per endpoint) whose scheme was beyond [`MAX_SCHEMES`].
    dropped: u64,
}

impl Schemes {
    /// The schemes of the credentials of a host's endpoints, each given with whether JWTs
    /// were seen on that endpoint.
    fn new<'a>(endpoints: impl IntoIterator<Item = (&'a BTreeSet<Credential>, bool)>) -> Self {
        let mut jwt_bearer = false;
        let mut all = BTreeSet::new();
        let mut dropped = 0;
        for (creds, jwt) in endpoints {
            for c in creds {
                if let Some(s) = scheme_of(c) {
                    if s == Scheme::Http("bearer") && jwt {
                        jwt_bearer = true;
                    }
                    if all.len() < MAX_SCHEMES || all.contains(&s) {
                        all.insert(s);
                    } else {
                        dropped += 1;
                    }
                }
            }
        }
        let mut used = Uniquer::new("");
        let mut by_scheme = BTreeMap::new();
        let mut objects = Map::new();
        for s in all {
            let name = used.name(&scheme_name(&s));
            objects.insert(name.clone(), scheme_object(&s, jwt_bearer));
            by_scheme.insert(s, name);
        }
        Schemes {
            by_scheme,
            objects,
            dropped,
        }
    }

    /// The security requirements (alternatives) of an endpoint with `creds` and
    /// `unauthenticated` calls without credentials; `None` when no credential was seen on it.
    fn requirements(&self, creds: &BTreeSet<Credential>, unauthenticated: u64) -> Option<Value> {
        let names: BTreeSet<&String> = creds
            .iter()
            .filter_map(|c| scheme_of(c).and_then(|s| self.by_scheme.get(&s)))
            .collect();
        if names.is_empty() {
            return None;
        }
        let mut reqs = Vec::with_capacity(names.len() + 1);
        if unauthenticated > 0 {
            reqs.push(json!({}));
        }
        reqs.extend(names.into_iter().map(|n| json!({ n: [] })));
        Some(Value::Array(reqs))
    }
}

// ---------------------------------------------------------------------------------------------
// Documents.

/// The reason phrase of a status code (RFC 9110 §15), or a generic description.
fn reason(status: u16) -> Cow<'static, str> {
    let r = match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return Cow::Owned(format!("Status {status}")),
    };
    Cow::Borrowed(r)
}

/// Whether an inferred body schema describes bodies of media type `mt` (the walker reads JSON,
/// forms and multipart; a schema never belongs to an image or to gRPC frames).
fn schema_applies(mt: &str) -> bool {
    mt == "application/json"
        || mt.ends_with("+json")
        || mt == "text/json"
        || mt == "application/x-www-form-urlencoded"
        || mt == "multipart/form-data"
}

/// Keywords that carry values rather than structure.
const VALUE_KEYWORDS: [&str; 5] = ["example", "examples", "default", "const", "enum"];
/// Keywords whose value maps names to subschemas.
const SCHEMA_MAPS: [&str; 4] = [
    "properties",
    "patternProperties",
    "$defs",
    "dependentSchemas",
];

/// Removes value-carrying keywords from a JSON Schema, recursing into subschemas (but not
/// treating property *names* as keywords).
fn strip_values(v: &mut Value, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(o) => {
            for k in VALUE_KEYWORDS {
                o.remove(k);
            }
            for (k, sub) in o.iter_mut() {
                if SCHEMA_MAPS.contains(&k.as_str()) {
                    if let Value::Object(m) = sub {
                        for s in m.values_mut() {
                            strip_values(s, depth + 1);
                        }
                    }
                } else {
                    strip_values(sub, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            for s in a {
                strip_values(s, depth + 1);
            }
        }
        _ => {}
    }
}

fn body_schema(e: &EndpointStats, request: bool) -> Option<Value> {
    let s = if request {
        &e.request_schema
    } else {
        &e.response_schema
    };
    if s.samples() == 0 {
        return None;
    }
    let mut v = s.to_json_schema();
    strip_values(&mut v, 0);
    Some(v)
}

/// A Content map (§4.8.14 media types) for `types`, with `schema` on the types it describes.
fn content(types: &BTreeMap<String, u64>, schema: Option<&Value>) -> Map<String, Value> {
    let mut c = Map::new();
    for mt in types.keys() {
        let mt = media_type(mt);
        if mt.is_empty() {
            continue;
        }
        let obj = match schema {
            Some(s) if schema_applies(&mt) => json!({ "schema": s }),
            _ => json!({}),
        };
        c.insert(mt, obj);
    }
    if c.is_empty() {
        if let Some(s) = schema {
            // Bodies were parsed (sniffed) but no Content-Type was sent.
            c.insert("*/*".into(), json!({ "schema": s }));
        }
    }
    c
}

fn percentiles(e: &EndpointStats) -> Value {
    let mut m = Map::new();
    for (k, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        if let Some(v) = e.latency_ms(q) {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// The `x-apitap` extension of an operation: what was observed, never a value.
fn observed(e: &EndpointStats, templates: &[&str], other_statuses: &[u16]) -> Value {
    // Where sensitive data travels (type, location, field name or JSON path), never what.
    let sensitive: Vec<Value> = e
        .sensitive
        .keys()
        .map(|f| json!({"type": f.kind, "location": f.location, "field": f.field}))
        .collect();
    let statuses: BTreeMap<String, u64> = e
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let mut x = json!({
        "templates": templates,
        "count": e.count,
        "first_seen": rfc3339(e.first_seen_us),
        "last_seen": rfc3339(e.last_seen_us),
        "statuses": statuses,
        "without_response": e.without_response,
        "latency_ms": percentiles(e),
        "protocols": {"http1": e.http1, "http2": e.http2, "grpc": e.grpc},
        "auth": {"kinds": e.auth_kinds(), "unauthenticated": e.unauthenticated()},
        "sensitive": sensitive,
    });
    if let Some(o) = x.as_object_mut() {
        if e.jwt.tokens > 0 {
            o.insert(
                "jwt".into(),
                json!({"tokens": e.jwt.tokens, "algs": e.jwt.algs, "without_exp": e.jwt.without_exp}),
            );
        }
        if !other_statuses.is_empty() {
            o.insert("other_statuses".into(), json!(other_statuses));
        }
    }
    x
}

/// The Operation Object of one endpoint.
fn operation(
    e: &EndpointStats,
    op_id: String,
    templates: &[&str],
    schemes: &Schemes,
) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("operationId".into(), Value::String(op_id));
    // API keys sent as query parameters are described by their security scheme, not twice.
    let key_params: HashSet<&str> = e
        .credentials
        .iter()
        .filter(|c| c.location == Some("query"))
        .filter_map(|c| c.name.as_deref())
        .collect();
    let params: Vec<Value> = e
        .query_params
        .iter()
        .filter(|n| !key_params.contains(n.as_str()))
        .map(|n| json!({"name": n, "in": "query", "required": false, "schema": {"type": "string"}}))
        .collect();
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    let req_schema = body_schema(e, true);
    let req_content = content(&e.request_content_types, req_schema.as_ref());
    if !req_content.is_empty() {
        op.insert("requestBody".into(), json!({ "content": req_content }));
    }
    let resp_schema = body_schema(e, false);
    let mut responses = Map::new();
    let mut other = Vec::new();
    for &status in e.statuses.keys() {
        if !(100..=599).contains(&status) {
            other.push(status);
            continue;
        }
        let mut r = Map::new();
        r.insert("description".into(), Value::String(reason(status).into()));
        if (200..300).contains(&status) && status != 204 && status != 205 {
            let c = content(&e.response_content_types, resp_schema.as_ref());
            if !c.is_empty() {
                r.insert("content".into(), Value::Object(c));
            }
        }
        responses.insert(status.to_string(), Value::Object(r));
    }
    if responses.is_empty() {
        // §4.8.16: at least one response. Nothing usable was seen.
        let d = if other.is_empty() {
            "No response observed"
        } else {
            "Only non-standard status codes observed (see x-apitap.other_statuses)"
        };
        responses.insert("default".into(), json!({ "description": d }));
    }
    op.insert("responses".into(), Value::Object(responses));
    if let Some(sec) = schemes.requirements(&e.credentials, e.unauthenticated()) {
        op.insert("security".into(), sec);
    }
    op.insert("x-apitap".into(), observed(e, templates, &other));
    op
}

/// The records of one OpenAPI path (one shape), by method token.
type ShapeGroup<'a> = BTreeMap<&'a str, Vec<(&'a EndpointKey, &'a EndpointStats)>>;

/// The OpenAPI document of one host.
pub fn document(host: &str, records: &[(&EndpointKey, &EndpointStats)]) -> Value {
    let schemes = Schemes::new(
        records
            .iter()
            .map(|(_, e)| (&e.credentials, e.jwt.tokens > 0)),
    );
    // Group by shape (sorted), then by method.
    let mut shapes: BTreeMap<String, ShapeGroup<'_>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for &(k, e) in records {
        if !k.template.starts_with('/') {
            // `OPTIONS *`, authority-form CONNECT: not expressible as an OpenAPI path.
            skipped.push(json!({"method": k.method, "template": k.template, "count": e.count}));
            continue;
        }
        let segs = parse_template(&k.template);
        shapes
            .entry(shape(&segs))
            .or_default()
            .entry(k.method.as_str())
            .or_default()
            .push((k, e));
    }
    let mut paths = Map::new();
    let mut op_ids = Uniquer::new("_");
    let cfg = InventoryConfig::default();
    let mut last_seen = i64::MIN;
    let mut first_seen = i64::MAX;
    for group in shapes.values() {
        let mut tpls: Vec<&str> = group
            .values()
            .flatten()
            .map(|(k, _)| k.template.as_str())
            .collect();
        tpls.sort_unstable();
        tpls.dedup();
        let parsed: Vec<Segments<'_>> = tpls.iter().map(|t| parse_template(t)).collect();
        let pk = path_key(&parsed);
        let mut item = Map::new();
        if !pk.params.is_empty() {
            let params: Vec<Value> = pk
                .params
                .iter()
                .map(|(name, schema, kinds)| {
                    let kinds: Vec<String> = kinds.iter().map(|k| format!("{{{k}}}")).collect();
                    json!({
                        "name": name,
                        "in": "path",
                        "required": true,
                        "schema": schema,
                        "description": format!("Template placeholder {}", kinds.join(" or ")),
                    })
                })
                .collect();
            item.insert("parameters".into(), Value::Array(params));
        }
        let mut others = Map::new();
        for (method, recs) in group {
            // Several templates of one shape and method: one operation over their merged stats.
            let merged: Cow<'_, EndpointStats> = match recs.as_slice() {
                [(_, e)] => Cow::Borrowed(*e),
                _ => {
                    let mut m = recs[0].1.clone();
                    let mut st = InventoryStats::default();
                    for (_, e) in &recs[1..] {
                        m.merge(e, &cfg, &mut st);
                    }
                    Cow::Owned(m)
                }
            };
            let e = merged.as_ref();
            first_seen = first_seen.min(e.first_seen_us);
            last_seen = last_seen.max(e.last_seen_us);
            let templates: Vec<&str> = recs.iter().map(|(k, _)| k.template.as_str()).collect();
            match OPERATIONS.iter().find(|(m, _)| m == method) {
                Some((_, op)) => {
                    let id = op_ids.name(&operation_id(op, &pk.key));
                    item.insert(
                        (*op).to_string(),
                        Value::Object(operation(e, id, &templates, &schemes)),
                    );
                }
                None => {
                    others.insert((*method).to_string(), observed(e, &templates, &[]));
                }
            }
        }
        if !others.is_empty() {
            item.insert("x-apitap-other-methods".into(), Value::Object(others));
        }
        paths.insert(pk.key, Value::Object(item));
    }
    let version = if last_seen == i64::MIN {
        "observed".to_string()
    } else {
        rfc3339(last_seen)
    };
    let mut doc = json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": format!("{host} (observed by apitap)"),
            "version": version,
            "description": "Inferred by apitap from passively observed traffic: only what was \
                seen is described (paths, methods, parameter names, status codes, body schemas, \
                credentials by kind and name). No value seen in traffic is included. \
                info.version is the time of the last observed request.",
        },
        "servers": [{
            "url": format!("http://{}", url_host(host)),
            "description": server_note(records.iter().any(|(_, e)| e.http2 > 0)),
        }],
        "paths": paths,
    });
    if let Some(o) = doc.as_object_mut() {
        if !schemes.objects.is_empty() {
            o.insert(
                "components".into(),
                json!({ "securitySchemes": schemes.objects }),
            );
        }
        let mut x = json!({
            "generator": format!("apitap {}", env!("CARGO_PKG_VERSION")),
            "endpoints": records.len(),
        });
        if let Some(xo) = x.as_object_mut() {
            if first_seen != i64::MAX {
                xo.insert("first_seen".into(), json!(rfc3339(first_seen)));
                xo.insert("last_seen".into(), json!(rfc3339(last_seen)));
            }
            if !skipped.is_empty() {
                xo.insert("not_expressible".into(), Value::Array(skipped));
            }
            if schemes.dropped > 0 {
                // Credentials of these were left out of the operations' `security`.
                xo.insert("security_schemes_dropped".into(), json!(schemes.dropped));
            }
        }
        o.insert("x-apitap".into(), x);
    }
    doc
}

/// Why the server URL says `http`: the sensor only sees cleartext.
fn server_note(http2: bool) -> &'static str {
    if http2 {
        "As observed on the wire: cleartext HTTP/1.x and HTTP/2 without TLS (h2c). Clients \
         may reach the API over https when TLS is terminated before the observed link."
    } else {
        "As observed on the wire: cleartext HTTP. Clients may reach the API over https when \
         TLS is terminated before the observed link."
    }
}

/// A host as a URL authority: characters that are not allowed there (RFC 3986 §3.2.2) or would
/// read as a server variable (`{`) are percent-encoded.
fn url_host(h: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(h.len());
    for b in h.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~:[]!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(templates: &[&str]) -> PathKey {
        let parsed: Vec<Segments<'_>> = templates.iter().map(|t| parse_template(t)).collect();
        path_key(&parsed)
    }

    fn names(pk: &PathKey) -> Vec<&str> {
        pk.params.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    #[test]
    fn segments_split_into_literals_and_placeholders() {
        assert_eq!(parse_segment("{id}"), vec![Piece::Param("id")]);
        assert_eq!(
            parse_segment("v{id}.json"),
            vec![Piece::Lit("v"), Piece::Param("id"), Piece::Lit(".json")]
        );
        assert_eq!(parse_segment("users"), vec![Piece::Lit("users")]);
        assert_eq!(parse_segment(""), vec![Piece::Lit("")]);
        // Not placeholders: empty, unterminated, or names that are not identifiers.
        assert_eq!(parse_segment("{}"), vec![Piece::Lit("{}")]);
        assert_eq!(parse_segment("{id"), vec![Piece::Lit("{id")]);
        assert_eq!(parse_segment("{a b}"), vec![Piece::Lit("{a b}")]);
        assert_eq!(
            parse_segment("{a b}{id}"),
            vec![Piece::Lit("{a b}"), Piece::Param("id")]
        );
    }

    #[test]
    fn placeholders_are_named_after_the_segment_before_them() {
        let pk = key(&["/api/v1/users/{id}/orders/{id}"]);
        assert_eq!(pk.key, "/api/v1/users/{userId}/orders/{orderId}");
        assert_eq!(names(&pk), ["userId", "orderId"]);
        assert_eq!(
            pk.params[0].1["anyOf"][0],
            json!({"type": "integer", "minimum": 0})
        );
        assert_eq!(pk.params[1].1, pk.params[0].1);

        let pk = key(&["/categories/{uuid}/files/{hash}/{date}"]);
        assert_eq!(pk.key, "/categories/{categoryId}/files/{fileHash}/{date}");
        assert_eq!(pk.params[0].1, json!({"type": "string", "format": "uuid"}));
        assert_eq!(
            pk.params[1].1,
            json!({"type": "string", "pattern": "^[0-9A-Fa-f]{16,}$"})
        );
        assert_eq!(pk.params[2].1["anyOf"][0], json!({"format": "date"}));

        let pk = key(&["/people/{email}/addresses/{id}"]);
        assert_eq!(pk.key, "/people/{peopleEmail}/addresses/{addressId}");
        assert_eq!(pk.params[0].1, json!({"type": "string", "format": "email"}));
    }

    #[test]
    fn repeated_names_get_a_counter() {
        // No literal before: the kind is the name, made unique.
        let pk = key(&["/{id}/{id}/{id}"]);
        assert_eq!(pk.key, "/{id}/{id2}/{id3}");
        // Version segments and numbers say nothing about what follows them.
        let pk = key(&["/v2/{id}/x/v3/{id}"]);
        assert_eq!(pk.key, "/v2/{id}/x/v3/{id2}");
        // Two different literals that singularise alike.
        let pk = key(&["/users/{id}/user/{id}"]);
        assert_eq!(names(&pk), ["userId", "userId2"]);
    }

    #[test]
    fn literal_templates_have_no_parameters_and_braces_are_escaped() {
        let pk = key(&["/users/me/orders"]);
        assert_eq!(pk.key, "/users/me/orders");
        assert!(pk.params.is_empty());
        let pk = key(&["/a{b/c}"]);
        assert_eq!(pk.key, "/a%7Bb/c%7D");
        assert!(pk.params.is_empty());
        let pk = key(&["/users/"]);
        assert_eq!(pk.key, "/users/");
    }

    #[test]
    fn templates_of_one_shape_share_a_path_with_a_general_schema() {
        let a = parse_template("/users/{id}");
        let b = parse_template("/users/{uuid}");
        let c = parse_template("/users/me");
        let d = parse_template("/users/{id}/");
        assert_eq!(shape(&a), shape(&b));
        assert_ne!(shape(&a), shape(&c));
        assert_ne!(shape(&a), shape(&d));
        // A literal `{}` is not a placeholder's shape.
        assert_ne!(shape(&parse_template("/users/{}")), shape(&a));

        let pk = key(&["/users/{id}", "/users/{uuid}"]);
        assert_eq!(pk.key, "/users/{userId}");
        assert_eq!(pk.params[0].1, json!({"type": "string"}));
        let kinds: Vec<&str> = pk.params[0].2.iter().map(String::as_str).collect();
        assert_eq!(kinds, ["id", "uuid"]);
    }

    #[test]
    fn parameter_names_are_identifiers() {
        assert_eq!(param_name(Some("order-items"), "id"), "orderItemId");
        assert_eq!(param_name(Some("%40weird"), "id"), "p40weirdId");
        assert_eq!(param_name(Some("~~"), "token"), "token");
        assert_eq!(param_name(None, "code"), "code");
        assert_eq!(param_name(Some("status"), "code"), "statusCode");
        assert_eq!(param_name(Some("boxes"), "id"), "boxId");
        let long = "a".repeat(500);
        assert!(param_name(Some(&long), "id").len() <= MAX_PARAM_NAME);
    }

    #[test]
    fn operation_ids_read_like_the_path() {
        assert_eq!(
            operation_id("get", "/api/v1/users/{userId}/orders"),
            "getApiV1UsersByUserIdOrders"
        );
        assert_eq!(operation_id("post", "/"), "postRoot");
        assert_eq!(operation_id("get", "/order-items"), "getOrderItems");
    }

    fn cred(kind: AuthKind, location: Option<&'static str>, name: Option<&str>) -> Credential {
        Credential {
            kind,
            location,
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn credentials_map_to_security_schemes() {
        let basic = cred(AuthKind::Basic, Some("header"), Some("authorization"));
        let bearer = cred(AuthKind::Bearer, Some("header"), Some("authorization"));
        let key_q = cred(AuthKind::ApiKey, Some("query"), Some("api_key"));
        let key_h = cred(AuthKind::ApiKey, Some("header"), Some("X-API-Key"));
        let sess = cred(AuthKind::SessionCookie, Some("cookie"), Some("JSESSIONID"));
        assert_eq!(scheme_of(&basic), Some(Scheme::Http("basic")));
        assert_eq!(scheme_of(&bearer), Some(Scheme::Http("bearer")));
        assert_eq!(
            scheme_of(&key_q),
            Some(Scheme::ApiKey("query", "api_key".into()))
        );
        // Header names are case-insensitive; cookie names are not.
        assert_eq!(
            scheme_of(&key_h),
            Some(Scheme::ApiKey("header", "x-api-key".into()))
        );
        assert_eq!(
            scheme_of(&sess),
            Some(Scheme::ApiKey("cookie", "JSESSIONID".into()))
        );
        // Nothing to point at: no scheme rather than an invalid one.
        assert_eq!(
            scheme_of(&cred(AuthKind::ApiKey, Some("header"), None)),
            None
        );
        assert_eq!(scheme_of(&cred(AuthKind::None, None, None)), None);

        let creds: BTreeSet<Credential> = [basic.clone(), bearer.clone(), key_q, sess]
            .into_iter()
            .collect();
        let s = Schemes::new([(&creds, true)]);
        let o = Value::Object(s.objects.clone());
        assert_eq!(o["basicAuth"], json!({"type": "http", "scheme": "basic"}));
        assert_eq!(
            o["bearerAuth"],
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
        assert_eq!(
            o["apiKeyQuery_api_key"],
            json!({"type": "apiKey", "in": "query", "name": "api_key"})
        );
        assert_eq!(
            o["cookie_JSESSIONID"],
            json!({"type": "apiKey", "in": "cookie", "name": "JSESSIONID"})
        );
        assert_eq!(s.objects.len(), 4);
        // Bearer without JWTs seen: no bearerFormat.
        let only_bearer: BTreeSet<Credential> = [bearer].into_iter().collect();
        let s = Schemes::new([(&only_bearer, false)]);
        assert_eq!(
            Value::Object(s.objects),
            json!({"bearerAuth": {"type": "http", "scheme": "bearer"}})
        );
    }

    #[test]
    fn scheme_names_are_valid_component_keys_and_unique() {
        let a = cred(AuthKind::ApiKey, Some("header"), Some("x api"));
        let b = cred(AuthKind::ApiKey, Some("header"), Some("x_api"));
        let creds: BTreeSet<Credential> = [a, b].into_iter().collect();
        let s = Schemes::new([(&creds, false)]);
        let keys: Vec<&String> = s.objects.keys().collect();
        assert_eq!(keys, ["apiKeyHeader_x_api", "apiKeyHeader_x_api2"]);
        for k in keys {
            assert!(k
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c)));
        }
    }

    #[test]
    fn schemes_are_capped_with_a_counter() {
        let creds: BTreeSet<Credential> = (0..MAX_SCHEMES + 10)
            .map(|i| cred(AuthKind::ApiKey, Some("header"), Some(&format!("x-k{i}"))))
            .collect();
        let s = Schemes::new([(&creds, false), (&creds, false)]);
        assert_eq!(s.objects.len(), MAX_SCHEMES);
        assert_eq!(s.dropped, 20);
        // The kept ones are still required; the endpoint is not shown as unauthenticated.
        assert!(s.requirements(&creds, 0).is_some());
    }

    #[test]
    fn unique_names_skip_taken_ones_without_rescanning() {
        let mut u = Uniquer::new("");
        assert_eq!(u.name("id"), "id");
        assert_eq!(u.name("id2"), "id2");
        assert_eq!(u.name("id"), "id3");
        assert_eq!(u.name("id"), "id4");
        assert_eq!(u.name("x"), "x");
        let mut u = Uniquer::new("-");
        for i in 0..10_000 {
            let n = u.name("h");
            assert_eq!(
                n,
                if i == 0 {
                    "h".to_string()
                } else {
                    format!("h-{}", i + 1)
                }
            );
        }
    }

    #[test]
    fn optional_auth_gets_the_empty_requirement() {
        let basic = cred(AuthKind::Basic, Some("header"), Some("authorization"));
        let key_q = cred(AuthKind::ApiKey, Some("query"), Some("key"));
        let creds: BTreeSet<Credential> = [basic, key_q].into_iter().collect();
        let s = Schemes::new([(&creds, false)]);
        assert_eq!(
            s.requirements(&creds, 0),
            Some(json!([{"apiKeyQuery_key": []}, {"basicAuth": []}]))
        );
        assert_eq!(
            s.requirements(&creds, 3),
            Some(json!([{}, {"apiKeyQuery_key": []}, {"basicAuth": []}]))
        );
        assert_eq!(s.requirements(&BTreeSet::new(), 3), None);
    }

    #[test]
    fn schemas_lose_value_keywords_but_keep_property_names() {
        let mut v = json!({
            "type": "object",
            "enum": [1],
            "properties": {
                "examples": {"type": "string", "example": "j@x.org", "default": "a"},
                "list": {"type": "array", "items": {"const": 3, "type": "integer"}},
            },
            "anyOf": [{"type": "null", "examples": [null]}],
        });
        strip_values(&mut v, 0);
        assert_eq!(
            v,
            json!({
                "type": "object",
                "properties": {
                    "examples": {"type": "string"},
                    "list": {"type": "array", "items": {"type": "integer"}},
                },
                "anyOf": [{"type": "null"}],
            })
        );
    }

    #[test]
    fn output_files_per_host() {
        let p = Path::new("/out/api.json");
        assert_eq!(
            targets(p, false, &["a.example"]),
            [PathBuf::from("/out/api.json")]
        );
        assert_eq!(
            targets(p, false, &["a.example", "127.0.0.1:8080"]),
            [
                PathBuf::from("/out/api.a.example.json"),
                PathBuf::from("/out/api.127.0.0.1_8080.json")
            ]
        );
        assert_eq!(
            targets(
                Path::new("/out/d"),
                true,
                &["A.Example", "../etc", "a:1", "a_1"]
            ),
            [
                PathBuf::from("/out/d/a.example.openapi.json"),
                PathBuf::from("/out/d/_etc.openapi.json"),
                PathBuf::from("/out/d/a_1.openapi.json"),
                PathBuf::from("/out/d/a_1-2.openapi.json"),
            ]
        );
        assert_eq!(
            targets(Path::new("/out/spec"), false, &["x", "y"]),
            [
                PathBuf::from("/out/spec.x.json"),
                PathBuf::from("/out/spec.y.json")
            ]
        );
        assert!(is_dir_target(Path::new("/no/such/dir/")));
        assert!(is_dir_target(Path::new("/no/such/dir")));
        assert!(!is_dir_target(Path::new("/no/such/file.json")));
        // An existing file without extension is a file.
        let f = std::env::temp_dir().join(format!("apitap-oa-{}", std::process::id()));
        std::fs::write(&f, b"").unwrap();
        assert!(!is_dir_target(&f));
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn responses_have_descriptions_and_servers_valid_urls() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(404), "Not Found");
        assert_eq!(reason(299), "Status 299");
        assert_eq!(url_host("api.example:8080"), "api.example:8080");
        assert_eq!(url_host("[::1]:80"), "[::1]:80");
        assert_eq!(url_host("a{b} c"), "a%7Bb%7D%20c");
    }

    #[test]
    fn content_attaches_schemas_only_to_media_types_they_describe() {
        let types: BTreeMap<String, u64> = [
            ("application/json".to_string(), 2),
            ("image/png".to_string(), 1),
        ]
        .into_iter()
        .collect();
        let s = json!({"type": "object"});
        let c = Value::Object(content(&types, Some(&s)));
        assert_eq!(
            c,
            json!({"application/json": {"schema": {"type": "object"}}, "image/png": {}})
        );
        assert_eq!(
            Value::Object(content(&BTreeMap::new(), Some(&s))),
            json!({"*/*": {"schema": {"type": "object"}}})
        );
        assert!(content(&BTreeMap::new(), None).is_empty());
    }

    /// A test request: method, target, extra request headers, response status.
    type Req<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);

    /// An inventory learnt from `reqs` by the real inspector, as the engine builds it.
    fn inventory(reqs: &[Req<'_>]) -> Inventory {
        use crate::inspect::{InspectConfig, Inspector};
        use apitap_parsers::{Exchange, Protocol, Request, Response};
        let mut insp = Inspector::new(InspectConfig::default());
        let mut inv = Inventory::new(InventoryConfig::default());
        let server: std::net::SocketAddr = "192.0.2.1:80".parse().unwrap();
        for (i, (m, t, hs, status)) in reqs.iter().enumerate() {
            let mut headers = vec![("Host".to_string(), "api.example".to_string())];
            headers.extend(hs.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            let req = Request {
                ts_us: 1_700_000_000_000_000 + i as i64 * 1000,
                method: m.to_string(),
                target: t.to_string(),
                version: "HTTP/1.1".into(),
                headers,
                ..Request::default()
            };
            let mut ex = Exchange::new(Protocol::Http1, req);
            ex.response = Some(Response {
                ts_us: 1_700_000_000_000_500 + i as i64 * 1000,
                version: "HTTP/1.1".into(),
                status: *status,
                ..Response::default()
            });
            let ins = insp.inspect(&ex, server);
            inv.record(&ex, "192.0.2.1:80", &ins);
        }
        inv.compact(&insp.templater);
        inv
    }

    #[test]
    fn a_document_from_real_inspection() {
        let basic: &[(&str, &str)] = &[("Authorization", "Basic dXNlcjpwYXNz")];
        let inv = inventory(&[
            ("GET", "/files/12345", &[], 200),
            ("GET", "/files/0123456789abcdef0123", &[], 404),
            ("GET", "/users/5", basic, 200),
            ("GET", "/users/6", &[], 401),
            ("PROPFIND", "/dav/7", &[], 207),
            ("get", "/odd", &[], 200),
            ("GET", "/weird", &[], 999),
            ("GET", "/search?q=Zq9SecretValue&page=2", &[], 200),
        ]);
        let docs = documents(&inv);
        assert_eq!(docs.len(), 1);
        let (host, doc) = &docs[0];
        assert_eq!(host, "api.example");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://api.example");
        let paths = doc["paths"].as_object().unwrap();

        // `/files/{id}` and `/files/{hash}`: one path, one operation over both records.
        let files = &paths["/files/{fileId}"];
        assert_eq!(files["parameters"][0]["schema"], json!({"type": "string"}));
        assert_eq!(
            files["get"]["x-apitap"]["templates"],
            json!(["/files/{hash}", "/files/{id}"])
        );
        assert_eq!(files["get"]["x-apitap"]["count"], 2);
        assert_eq!(files["get"]["responses"]["404"]["description"], "Not Found");
        assert!(!paths.contains_key("/files/{fileHash}"));

        // Seen with and without credentials: optional Basic auth.
        let users = &paths["/users/{userId}"]["get"];
        assert_eq!(users["security"], json!([{}, {"basicAuth": []}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["basicAuth"],
            json!({"type": "http", "scheme": "basic"})
        );
        // Never authenticated: no requirement at all.
        assert!(paths["/files/{fileId}"]["get"].get("security").is_none());

        // Methods OpenAPI has no operation for, and `get` (not GET).
        assert!(paths["/dav/{davId}"]["x-apitap-other-methods"]["PROPFIND"].is_object());
        assert!(paths["/dav/{davId}"].get("propfind").is_none());
        assert!(paths["/odd"]["x-apitap-other-methods"]["get"].is_object());
        assert!(paths["/odd"].get("get").is_none());

        // A status code outside 1xx–5xx: a described default response, the code kept aside.
        let weird = &paths["/weird"]["get"];
        assert!(weird["responses"]["default"]["description"].is_string());
        assert_eq!(weird["x-apitap"]["other_statuses"], json!([999]));

        // Query parameters by name; values never.
        let search = &paths["/search"]["get"];
        let names: Vec<&str> = search["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["page", "q"]);
        let text = serde_json::to_string(doc).unwrap();
        assert!(!text.contains("Zq9SecretValue"));
        assert!(!text.contains("dXNlcjpwYXNz"));

        // operationIds unique, and the same bytes on a second export.
        let mut ids = HashSet::new();
        for item in paths.values() {
            for (_, m) in OPERATIONS {
                if let Some(id) = item[m]["operationId"].as_str() {
                    assert!(ids.insert(id.to_string()), "{id}");
                }
            }
        }
        assert_eq!(documents(&inv), docs);
    }

    #[test]
    fn write_puts_one_file_per_host_and_an_empty_document_when_nothing_was_seen() {
        let dir = std::env::temp_dir().join(format!("apitap-oa-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let empty = Inventory::new(InventoryConfig::default());
        let f = dir.join("none.json");
        write(&empty, &f).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["paths"], json!({}));
        // A directory with no host gets no file.
        let d = dir.join("d/");
        write(&empty, &d).unwrap();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        let inv = inventory(&[("GET", "/a", &[], 200)]);
        write(&inv, &d).unwrap();
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["api.example.openapi.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
