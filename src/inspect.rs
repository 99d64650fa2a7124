//! Per-exchange inspection: which endpoint a request hit, how it authenticated, what sensitive
//! data travelled in either direction and what its bodies look like.
//!
//! Owns the walk over every place a value can hide in an HTTP exchange — path segments, query
//! parameters, request and response headers, cookies, and bodies after undoing
//! `Content-Encoding` (RFC 9110 §8.4) — and hands each value to the classifiers of
//! [`crate::infer::sensitive`]. It records *where* a value was found (type, location, field),
//! never the value itself. The results ([`Insights`]) feed the observation line and the
//! [`crate::inventory`].
use crate::infer::auth::{self, AuthInfo};
use crate::infer::body::{self, BodyKind, BodyLimits, BodyStats, Schema};
use crate::infer::sensitive::{classify, scan_text, Location, SensitiveType};
use crate::infer::template::{TemplateConfig, TemplateStats, Templater};
use apitap_parsers::{Exchange, Request, Response};
use base64::Engine as _;
use serde::Serialize;
use std::borrow::Cow;
use std::net::SocketAddr;

/// Where a sensitive value was found. Never holds the value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// What kind of data.
    #[serde(rename = "type")]
    pub kind: SensitiveType,
    /// Where in the exchange.
    pub location: Location,
    /// Parameter, header or cookie name, JSON path (`$.orders[*].card`) or path parameter.
    pub field: String,
}

/// Findings kept per exchange.
const MAX_FINDINGS: usize = 64;

/// What inspection learnt about one exchange.
#[derive(Debug)]
pub struct Insights {
    /// Host as addressed, normalised (lower case, default port dropped).
    pub host: String,
    /// Path template.
    pub template: String,
    /// How the request authenticated.
    pub auth: AuthInfo,
    /// Sensitive data found, deduplicated by (type, location, field).
    pub sensitive: Vec<Finding>,
    /// Query parameter names (percent-decoded).
    pub query: Vec<String>,
    /// Request body schema, when the body was inspectable.
    pub request_schema: Option<Schema>,
    /// Response body schema (successful responses only: errors have their own shape).
    pub response_schema: Option<Schema>,
    /// Findings beyond [`MAX_FINDINGS`].
    pub findings_dropped: u64,
    /// Bit `i` set: request header `i` (of the first 64) was classified — under its name as
    /// sent, exactly as [`crate::redact::Redactor::header`] would — and holds nothing
    /// sensitive, so the redactor need not classify it again.
    pub request_clean: u64,
    /// The same for the response's header fields (trailers not included).
    pub response_clean: u64,
}

impl Insights {
    fn push(&mut self, kind: SensitiveType, location: Location, field: &str) {
        if self
            .sensitive
            .iter()
            .any(|f| f.kind == kind && f.location == location && f.field == field)
        {
            return;
        }
        if self.sensitive.len() >= MAX_FINDINGS {
            self.findings_dropped += 1;
            return;
        }
        self.sensitive.push(Finding {
            kind,
            location,
            field: field.to_string(),
        });
    }
}

/// Inspection settings.
#[derive(Clone, Debug)]
pub struct InspectConfig {
    /// Templating limits.
    pub templates: TemplateConfig,
    /// Body decoding and walking limits.
    pub body: BodyLimits,
    /// Whether bodies are decoded and walked at all.
    pub bodies: bool,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            templates: TemplateConfig::default(),
            body: BodyLimits::default(),
            bodies: true,
        }
    }
}

/// Inspection counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InspectStats {
    /// Exchanges inspected.
    pub exchanges: u64,
    /// Exchanges with at least one sensitive finding.
    pub with_sensitive: u64,
    /// Findings by type.
    pub findings: std::collections::BTreeMap<&'static str, u64>,
    /// Findings beyond the per-exchange cap.
    pub findings_dropped: u64,
    /// Body decoding and walking.
    pub bodies: BodyStats,
    /// Templating.
    pub templates: TemplateStats,
}

impl InspectStats {
    /// Adds another worker's counters (templating counters are per worker and summed too).
    pub fn add(&mut self, o: &InspectStats) {
        self.exchanges += o.exchanges;
        self.with_sensitive += o.with_sensitive;
        for (k, v) in &o.findings {
            *self.findings.entry(k).or_default() += v;
        }
        self.findings_dropped += o.findings_dropped;
        self.bodies.add(&o.bodies);
        self.templates.add(&o.templates);
    }
}

/// One worker's inspector: templates learnt so far plus scratch space.
pub struct Inspector {
    cfg: InspectConfig,
    /// The templates learnt.
    pub templater: Templater,
    /// Counters (templating counters are read from the templater on demand).
    pub stats: InspectStats,
}

/// The host as an inventory key: lower case, without the default ports; the server address
/// when the request named none.
pub fn normalise_host(host: Option<&str>, server: SocketAddr) -> String {
    match host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => {
            let h = h
                .strip_suffix(":80")
                .or_else(|| h.strip_suffix(":443"))
                .unwrap_or(h);
            let h: String = h.chars().take(255).collect();
            h.to_ascii_lowercase()
        }
        None => server.to_string(),
    }
}

impl Inspector {
    /// An inspector with nothing learnt.
    pub fn new(cfg: InspectConfig) -> Self {
        Inspector {
            templater: Templater::new(cfg.templates.clone()),
            cfg,
            stats: InspectStats::default(),
        }
    }

    /// Inspects `ex` (sent to `server`).
    pub fn inspect(&mut self, ex: &Exchange, server: SocketAddr) -> Insights {
        let req = &ex.request;
        let (path, query) = crate::observation::split_target(&req.target);
        let path = strip_origin(path);
        let host = normalise_host(crate::observation::request_host(req), server);
        let template = self.templater.observe(&host, path);
        let mut ins = Insights {
            host,
            template,
            auth: auth::detect(&req.headers, query),
            sensitive: Vec::new(),
            query: Vec::new(),
            request_schema: None,
            response_schema: None,
            findings_dropped: 0,
            request_clean: 0,
            response_clean: 0,
        };
        self.path(path, &mut ins);
        if let Some(q) = query {
            for (k, v) in auth::query_pairs(q) {
                let k = auth::percent_decode(k);
                let v = auth::percent_decode(v);
                if let Some(t) = classify(Some(&k), &v) {
                    ins.push(t, Location::RequestQuery, &k);
                }
                if ins.query.len() < 64 && !ins.query.iter().any(|n| *n == *k) {
                    ins.query.push(k.into_owned());
                }
            }
        }
        request_headers(req, &mut ins);
        if let Some(r) = &ex.response {
            response_headers(r, &mut ins);
        }
        if self.cfg.bodies && ex.grpc.is_none() {
            ins.request_schema = self.body(
                &req.body.prefix,
                req.header("content-type"),
                req.header("content-encoding"),
                Location::RequestBody,
                &mut ins,
            );
            if let Some(r) = &ex.response {
                let s = self.body(
                    &r.body.prefix,
                    r.header("content-type"),
                    r.header("content-encoding"),
                    Location::ResponseBody,
                    &mut ins,
                );
                if r.status < 400 {
                    ins.response_schema = s;
                }
            }
        }
        self.stats.exchanges += 1;
        if !ins.sensitive.is_empty() {
            self.stats.with_sensitive += 1;
        }
        for f in &ins.sensitive {
            *self.stats.findings.entry(f.kind.as_str()).or_default() += 1;
        }
        self.stats.findings_dropped += ins.findings_dropped;
        ins
    }

    fn path(&self, path: &str, ins: &mut Insights) {
        let template = std::mem::take(&mut ins.template);
        let mut tsegs = template.split('/').filter(|s| !s.is_empty());
        for (i, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
            let tseg = tsegs.next();
            let seg = auth::percent_decode(seg);
            if let Some(t) = classify(None, &seg) {
                // Rare (a finding), so the field name may allocate.
                let field = match tseg {
                    Some(ts) if ts.starts_with('{') => Cow::Borrowed(ts),
                    _ => Cow::Owned(format!("segment {}", i + 1)),
                };
                ins.push(t, Location::RequestPath, &field);
            }
        }
        ins.template = template;
    }

    fn body(
        &mut self,
        raw: &[u8],
        ct: Option<&str>,
        ce: Option<&str>,
        loc: Location,
        ins: &mut Insights,
    ) -> Option<Schema> {
        if raw.is_empty() {
            return None;
        }
        let decoded = body::decode_content(ce, raw, &self.cfg.body, &mut self.stats.bodies);
        let kind = body::body_kind(ct, &decoded);
        match kind {
            BodyKind::Other => {
                if is_texty(ct) {
                    if let Ok(text) = std::str::from_utf8(&decoded) {
                        scan_text(text, &mut |t, _, _| ins.push(t, loc, "$"));
                    } else if let Ok(text) =
                        std::str::from_utf8(&decoded[..utf8_prefix_len(&decoded)])
                    {
                        scan_text(text, &mut |t, _, _| ins.push(t, loc, "$"));
                    }
                }
                None
            }
            _ => body::walk(
                kind,
                ct,
                &decoded,
                &self.cfg.body,
                &mut self.stats.bodies,
                &mut |path, key, value| {
                    if let Some(t) = classify(key, value) {
                        ins.push(t, loc, path);
                    }
                },
            ),
        }
    }

    /// Counters, with the templater's.
    pub fn stats(&self) -> InspectStats {
        let mut s = self.stats.clone();
        s.templates = self.templater.stats();
        s
    }
}

/// An absolute-form target's path (`http://h/x` → `/x`).
fn strip_origin(path: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    path
}

fn is_texty(ct: Option<&str>) -> bool {
    match ct {
        None => true,
        Some(ct) => {
            let ct = ct.trim_start();
            ct.len() >= 5 && ct[..5].eq_ignore_ascii_case("text/")
                || ct.contains("xml")
                || ct.contains("javascript")
                || ct.contains("yaml")
        }
    }
}

/// Longest prefix that is valid UTF-8 (a body prefix may end inside a character).
fn utf8_prefix_len(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) => e.valid_up_to(),
    }
}

fn lower(n: &str) -> Cow<'_, str> {
    if n.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(n.to_ascii_lowercase())
    } else {
        Cow::Borrowed(n)
    }
}

fn authorization(name: &str, v: &str, loc: Location, ins: &mut Insights) {
    let (scheme, cred) = v.trim().split_once(' ').unwrap_or(("", v.trim()));
    let cred = cred.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        // Basic credentials are a password by construction (RFC 7617).
        let decoded = base64::engine::general_purpose::STANDARD.decode(cred.as_bytes());
        if decoded.is_ok_and(|d| d.contains(&b':')) {
            ins.push(SensitiveType::Password, loc, name);
        }
        return;
    }
    match classify(Some(name), cred) {
        Some(t) => ins.push(t, loc, name),
        None if !cred.is_empty() => ins.push(SensitiveType::ApiKey, loc, name),
        None => {}
    }
}

fn request_headers(req: &Request, ins: &mut Insights) {
    for (i, (raw, v)) in req.headers.iter().enumerate() {
        if raw.starts_with(':') {
            continue;
        }
        let n = lower(raw);
        match &*n {
            "cookie" => {
                for (cn, cv) in auth::cookies(v) {
                    if let Some(t) = classify(Some(cn), cv) {
                        ins.push(t, Location::RequestCookie, cn);
                    }
                }
            }
            "authorization" | "proxy-authorization" => {
                authorization(&n, v, Location::RequestHeader, ins)
            }
            _ => match classify(Some(raw), v) {
                Some(t) => ins.push(t, Location::RequestHeader, &n),
                None if i < 64 => ins.request_clean |= 1 << i,
                None => {}
            },
        }
    }
}

fn response_headers(r: &Response, ins: &mut Insights) {
    let fields = r.headers.len();
    for (i, (raw, v)) in r.headers.iter().chain(r.trailers.iter()).enumerate() {
        if raw.starts_with(':') {
            continue;
        }
        let n = lower(raw);
        if &*n == "set-cookie" {
            let first = v.split(';').next().unwrap_or("");
            if let Some((cn, cv)) = first.split_once('=') {
                if let Some(t) = classify(Some(cn.trim()), cv.trim()) {
                    ins.push(t, Location::ResponseHeader, "set-cookie");
                }
            }
            continue;
        }
        match classify(Some(raw), v) {
            Some(t) => ins.push(t, Location::ResponseHeader, &n),
            None if i < fields.min(64) => ins.response_clean |= 1 << i,
            None => {}
        }
    }
}
