//! The `http_exchange` observation: one JSON object per request/response exchange, documented
//! field by field in `docs/observations.md`.
//!
//! Owns the mapping from a parsed [`Exchange`] to what users consume. Everything that leaves
//! the sensor passes through [`Redaction`] here.
use crate::infer::auth::AuthInfo;
use crate::inspect::{Finding, Insights};
use crate::redact::Redactor;
use apitap_capture::flow::FlowInfo;
use apitap_parsers::{Exchange, GrpcInfo, Protocol, Request, Response};
use serde::Serialize;
use std::borrow::Cow;
use std::net::SocketAddr;

/// Schema version written with every event (Kafka headers, docs).
pub const SCHEMA_VERSION: &str = "1";

#[derive(Serialize)]
struct Endpoint {
    /// Serialised as its text form (serde's human-readable `IpAddr`), without an allocation.
    ip: std::net::IpAddr,
    port: u16,
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

/// Header fields by lower-case name, written as a JSON object of name → values in name order
/// (values in the order sent). Kept as one vector sorted by name, not a map of vectors, so
/// that building it costs one allocation.
struct Headers<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Headers<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields grouped by name (the vector is sorted by name): one group per JSON member.
    fn groups(&self) -> impl Iterator<Item = &[(Cow<'a, str>, Cow<'a, str>)]> {
        self.0.chunk_by(|a, b| a.0 == b.0)
    }
}

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Values<'b, 'a>(&'b [(Cow<'a, str>, Cow<'a, str>)]);
        impl Serialize for Values<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(_, v)| v))
            }
        }
        let mut m = s.serialize_map(None)?;
        for g in self.groups() {
            m.serialize_entry(&g[0].0, &Values(g))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct RequestObs<'a> {
    method: &'a str,
    host: Option<&'a str>,
    path: Cow<'a, str>,
    query: Option<Cow<'a, str>>,
    version: &'a str,
    headers: Headers<'a>,
    content_type: Option<&'a str>,
    body_bytes: u64,
}

#[derive(Serialize)]
struct ResponseObs<'a> {
    status: u16,
    headers: Headers<'a>,
    content_type: Option<&'a str>,
    body_bytes: u64,
    #[serde(skip_serializing_if = "<[u16]>::is_empty")]
    interim: &'a [u16],
    #[serde(skip_serializing_if = "Headers::is_empty")]
    trailers: Headers<'a>,
}

#[derive(Serialize)]
struct GrpcObs<'a> {
    service: &'a str,
    method: &'a str,
    status: Option<u32>,
    message: Option<&'a str>,
    request_messages: u32,
    response_messages: u32,
}

impl<'a> From<&'a GrpcInfo> for GrpcObs<'a> {
    fn from(g: &'a GrpcInfo) -> Self {
        GrpcObs {
            service: &g.service,
            method: &g.method,
            status: g.status,
            message: g.message.as_deref(),
            request_messages: g.request_messages,
            response_messages: g.response_messages,
        }
    }
}

#[derive(Serialize)]
struct EndpointObs<'a> {
    host: &'a str,
    method: &'a str,
    template: &'a str,
}

/// An exchange as it is written out.
#[derive(Serialize)]
pub struct Observation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ts", serialize_with = "ts_rfc3339")]
    ts_us: i64,
    protocol: &'static str,
    flow_id: u64,
    client: Endpoint,
    server: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<apitap_capture::tunnel::Tunnel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_id: Option<u32>,
    request: RequestObs<'a>,
    response: Option<ResponseObs<'a>>,
    latency_ms: Option<f64>,
    gap: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    headers_incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pushed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc: Option<GrpcObs<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<EndpointObs<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'a AuthInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensitive: Option<&'a [Finding]>,
}

/// The last instant RFC 3339 can write with a four-digit year (9999-12-31T23:59:59.999999Z).
pub const MAX_TS_US: i64 = 253_402_300_799_999_999;

/// RFC 3339 UTC timestamp with microseconds. Capture times come from the packet source
/// (a pcapng file can claim any 64-bit time): they are clamped to 1970–9999, which humantime
/// can write (it fails on later years).
pub fn rfc3339(ts_us: i64) -> String {
    rfc3339_display(ts_us).to_string()
}

fn rfc3339_display(ts_us: i64) -> humantime::Rfc3339Timestamp {
    let us = ts_us.clamp(0, MAX_TS_US) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_micros(t)
}

fn ts_rfc3339<S: serde::Serializer>(ts_us: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&rfc3339_display(*ts_us))
}

/// `clean`: bit `i` set when inspection found field `i` holds nothing sensitive.
fn headers<'a>(hs: &'a [(String, String)], r: &mut Redactor, clean: u64) -> Headers<'a> {
    let mut m = Vec::with_capacity(hs.len());
    for (i, (n, v)) in hs.iter().enumerate() {
        // Most names are lower case already (always in HTTP/2): borrow them.
        let key = if n.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(n.to_ascii_lowercase())
        } else {
            Cow::Borrowed(n.as_str())
        };
        let known_clean = i < 64 && clean & (1 << i) != 0;
        m.push((key, r.header_checked(n, v, known_clean)));
    }
    // Stable: the values of a repeated name stay in the order sent.
    m.sort_by(|a, b| a.0.cmp(&b.0));
    Headers(m)
}

/// The host a request was addressed to: `:authority`, else `Host`, else the authority of an
/// absolute-form target.
pub fn request_host(req: &Request) -> Option<&str> {
    if let Some(a) = req.authority.as_deref().filter(|a| !a.is_empty()) {
        return Some(a);
    }
    if let Some(h) = req.header("host") {
        return Some(h);
    }
    let rest = req
        .target
        .strip_prefix("http://")
        .or_else(|| req.target.strip_prefix("https://"))?;
    Some(rest.split(['/', '?']).next().unwrap_or(rest))
}

/// Splits a request-target at the first `?`.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

fn response_obs<'a>(r: &'a Response, red: &mut Redactor, clean: u64) -> ResponseObs<'a> {
    ResponseObs {
        status: r.status,
        headers: headers(&r.headers, red, clean),
        content_type: r.header("content-type"),
        body_bytes: r.body.bytes,
        interim: &r.interim,
        trailers: headers(&r.trailers, red, 0),
    }
}

impl<'a> Observation<'a> {
    /// Builds the observation of `ex` seen on `flow`, with what inspection learnt about it.
    pub fn new(
        ex: &'a Exchange,
        flow: &FlowInfo,
        red: &mut Redactor,
        ins: Option<&'a Insights>,
    ) -> Self {
        let req = &ex.request;
        let (path, query) = split_target(&req.target);
        let latency_ms = ex
            .response
            .as_ref()
            .map(|r| (r.ts_us - req.ts_us).max(0) as f64 / 1000.0);
        Observation {
            kind: "http_exchange",
            ts_us: req.ts_us,
            protocol: match ex.protocol {
                Protocol::Http1 => "HTTP/1.1",
                Protocol::Http2 => "HTTP/2",
            },
            flow_id: flow.id,
            client: flow.client.into(),
            server: flow.server.into(),
            vlan: flow.vlan,
            tunnel: flow.tunnel,
            stream_id: ex.stream_id,
            request: RequestObs {
                method: &req.method,
                host: request_host(req),
                path: red.path(path),
                query: query.map(|q| red.query(q)),
                version: &req.version,
                headers: headers(&req.headers, red, ins.map_or(0, |i| i.request_clean)),
                content_type: req.header("content-type"),
                body_bytes: req.body.bytes,
            },
            response: ex
                .response
                .as_ref()
                .map(|r| response_obs(r, red, ins.map_or(0, |i| i.response_clean))),
            latency_ms,
            gap: ex.gap,
            headers_incomplete: ex.headers_incomplete,
            reset: ex.reset.as_deref(),
            pushed: ex.pushed,
            grpc: ex.grpc.as_ref().map(GrpcObs::from),
            endpoint: ins.map(|i| EndpointObs {
                host: &i.host,
                method: &req.method,
                template: &i.template,
            }),
            auth: ins.map(|i| &i.auth),
            sensitive: ins.map(|i| i.sensitive.as_slice()),
        }
    }
}

// --- Direct writing (the hot path; byte-identical to the serde form above) --------------------

use crate::jsonw;

impl Endpoint {
    fn write(&self, o: &mut Vec<u8>) {
        o.extend_from_slice(b"{\"ip\":");
        jsonw::ip(o, self.ip);
        o.extend_from_slice(b",\"port\":");
        jsonw::uint(o, u64::from(self.port));
        o.push(b'}');
    }
}

impl Headers<'_> {
    fn write(&self, o: &mut Vec<u8>) {
        o.push(b'{');
        for (i, g) in self.groups().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            jsonw::str(o, &g[0].0);
            o.push(b':');
            jsonw::seq(o, g, |o, (_, v)| jsonw::str(o, v));
        }
        o.push(b'}');
    }
}

impl RequestObs<'_> {
    fn write(&self, o: &mut Vec<u8>) {
        o.extend_from_slice(b"{\"method\":");
        jsonw::str(o, self.method);
        o.extend_from_slice(b",\"host\":");
        jsonw::opt_str(o, self.host);
        o.extend_from_slice(b",\"path\":");
        jsonw::str(o, &self.path);
        o.extend_from_slice(b",\"query\":");
        jsonw::opt_str(o, self.query.as_deref());
        o.extend_from_slice(b",\"version\":");
        jsonw::str(o, self.version);
        o.extend_from_slice(b",\"headers\":");
        self.headers.write(o);
        o.extend_from_slice(b",\"content_type\":");
        jsonw::opt_str(o, self.content_type);
        o.extend_from_slice(b",\"body_bytes\":");
        jsonw::uint(o, self.body_bytes);
        o.push(b'}');
    }
}

impl ResponseObs<'_> {
    fn write(&self, o: &mut Vec<u8>) {
        o.extend_from_slice(b"{\"status\":");
        jsonw::uint(o, u64::from(self.status));
        o.extend_from_slice(b",\"headers\":");
        self.headers.write(o);
        o.extend_from_slice(b",\"content_type\":");
        jsonw::opt_str(o, self.content_type);
        o.extend_from_slice(b",\"body_bytes\":");
        jsonw::uint(o, self.body_bytes);
        if !self.interim.is_empty() {
            o.extend_from_slice(b",\"interim\":");
            jsonw::seq(o, self.interim, |o, s| jsonw::uint(o, u64::from(*s)));
        }
        if !self.trailers.is_empty() {
            o.extend_from_slice(b",\"trailers\":");
            self.trailers.write(o);
        }
        o.push(b'}');
    }
}

fn write_auth(o: &mut Vec<u8>, a: &AuthInfo) {
    if a.jwt.is_some() {
        return jsonw::serde(o, a);
    }
    o.extend_from_slice(b"{\"kind\":");
    jsonw::str(o, a.kind.as_str());
    o.extend_from_slice(b",\"name\":");
    jsonw::opt_str(o, a.name.as_deref());
    o.extend_from_slice(b",\"location\":");
    jsonw::opt_str(o, a.location);
    o.extend_from_slice(b",\"jwt\":null}");
}

impl Observation<'_> {
    /// Appends the observation as one JSON object (no newline): the same bytes as
    /// `serde_json::to_writer(out, self)`, written directly (see [`crate::jsonw`]).
    pub fn write_json(&self, o: &mut Vec<u8>) {
        o.extend_from_slice(b"{\"type\":");
        jsonw::str(o, self.kind);
        o.extend_from_slice(b",\"ts\":");
        jsonw::rfc3339_micros(o, self.ts_us);
        o.extend_from_slice(b",\"protocol\":");
        jsonw::str(o, self.protocol);
        o.extend_from_slice(b",\"flow_id\":");
        jsonw::uint(o, self.flow_id);
        o.extend_from_slice(b",\"client\":");
        self.client.write(o);
        o.extend_from_slice(b",\"server\":");
        self.server.write(o);
        if let Some(v) = self.vlan {
            o.extend_from_slice(b",\"vlan\":");
            jsonw::uint(o, u64::from(v));
        }
        if let Some(t) = &self.tunnel {
            o.extend_from_slice(b",\"tunnel\":");
            jsonw::serde(o, t);
        }
        if let Some(s) = self.stream_id {
            o.extend_from_slice(b",\"stream_id\":");
            jsonw::uint(o, u64::from(s));
        }
        o.extend_from_slice(b",\"request\":");
        self.request.write(o);
        o.extend_from_slice(b",\"response\":");
        match &self.response {
            Some(r) => r.write(o),
            None => o.extend_from_slice(b"null"),
        }
        o.extend_from_slice(b",\"latency_ms\":");
        jsonw::serde(o, &self.latency_ms);
        o.extend_from_slice(b",\"gap\":");
        jsonw::bool(o, self.gap);
        if self.headers_incomplete {
            o.extend_from_slice(b",\"headers_incomplete\":true");
        }
        if let Some(r) = self.reset {
            o.extend_from_slice(b",\"reset\":");
            jsonw::str(o, r);
        }
        if self.pushed {
            o.extend_from_slice(b",\"pushed\":true");
        }
        if let Some(g) = &self.grpc {
            o.extend_from_slice(b",\"grpc\":");
            jsonw::serde(o, g);
        }
        if let Some(e) = &self.endpoint {
            o.extend_from_slice(b",\"endpoint\":{\"host\":");
            jsonw::str(o, e.host);
            o.extend_from_slice(b",\"method\":");
            jsonw::str(o, e.method);
            o.extend_from_slice(b",\"template\":");
            jsonw::str(o, e.template);
            o.push(b'}');
        }
        if let Some(a) = self.auth {
            o.extend_from_slice(b",\"auth\":");
            write_auth(o, a);
        }
        if let Some(fs) = self.sensitive {
            o.extend_from_slice(b",\"sensitive\":");
            jsonw::seq(o, fs, |o, f| {
                o.extend_from_slice(b"{\"type\":");
                jsonw::str(o, f.kind.as_str());
                o.extend_from_slice(b",\"location\":");
                jsonw::str(o, f.location.as_str());
                o.extend_from_slice(b",\"field\":");
                jsonw::str(o, &f.field);
                o.push(b'}');
            });
        }
        o.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_split_and_host_fallbacks() {
        assert_eq!(split_target("/a/b?x=1&y"), ("/a/b", Some("x=1&y")));
        assert_eq!(split_target("/a?"), ("/a", Some("")));
        assert_eq!(split_target("*"), ("*", None));
        let mut r = Request {
            target: "http://proxy.example:8080/x?y".into(),
            ..Request::default()
        };
        assert_eq!(request_host(&r), Some("proxy.example:8080"));
        r.headers.push(("Host".into(), "h.example".into()));
        assert_eq!(request_host(&r), Some("h.example"));
        r.authority = Some("a.example".into());
        assert_eq!(request_host(&r), Some("a.example"));
    }

    #[test]
    fn rfc3339_micros() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000000Z");
    }
}
