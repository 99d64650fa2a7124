//! Output formats for SIEMs (`--format native|ocsf|ecs`): the same events, shaped as the
//! Open Cybersecurity Schema Framework or the Elastic Common Schema expects them.
//!
//! Owns the mapping of apitap's native events (as serialised by [`crate::observation`],
//! [`crate::inventory::events`] and [`crate::findings`]) to:
//! - **OCSF 1.5.0** (<https://schema.ocsf.io/1.5.0/>): `http_exchange` → HTTP Activity
//!   (class 4002), inventory events → API Activity (6003), findings → Detection Finding
//!   (2004). Validated in `tests/findings.rs` against the JSON Schemas of those classes as
//!   published by schema.ocsf.io (vendored under `tests/schemas/ocsf/`). What OCSF has no
//!   attribute for goes under `unmapped.apitap`.
//! - **ECS 9.4.0** (<https://www.elastic.co/guide/en/ecs/current/>): `@timestamp`, `event.*`,
//!   `http.*`, `url.*`, `source.*`, `destination.*`, `network.*`, `user_agent.*`, `rule.*`,
//!   `vulnerability.*`; apitap's own fields under the custom `apitap.*` namespace. Checked
//!   against ECS's field list (types, arrays, allowed values) in the tests.
//!
//! Conversions only move what the native event already holds: values were redacted before
//! (headers, query strings), so no format carries more than the native one.
use crate::findings::Severity;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::str::FromStr;

/// The OCSF version events claim (`metadata.version`).
pub const OCSF_VERSION: &str = "1.5.0";
/// The ECS version events claim (`ecs.version`).
pub const ECS_VERSION: &str = "9.4.0";

/// Event shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// apitap's own events (`docs/observations.md`, `docs/findings.md`).
    #[default]
    Native,
    /// OCSF 1.5.0.
    Ocsf,
    /// Elastic Common Schema 9.4.0.
    Ecs,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "native" => Ok(Format::Native),
            "ocsf" => Ok(Format::Ocsf),
            "ecs" => Ok(Format::Ecs),
            _ => Err(format!(
                "unknown format {s:?}: expected native, ocsf or ecs"
            )),
        }
    }
}

impl Format {
    /// The name (`native`, `ocsf`, `ecs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
        }
    }
}

/// Converts a native event (any `type`) to `fmt`; events of unknown types pass unchanged.
pub fn convert(fmt: Format, ev: &Value) -> Value {
    let ty = ev.get("type").and_then(Value::as_str).unwrap_or("");
    match (fmt, ty) {
        (Format::Native, _) => ev.clone(),
        (Format::Ocsf, "http_exchange") => ocsf_http_activity(ev),
        (Format::Ocsf, "finding") => ocsf_detection_finding(ev),
        (Format::Ocsf, t) if is_inventory(t) => ocsf_api_activity(ev),
        (Format::Ecs, "http_exchange") => ecs_exchange(ev),
        (Format::Ecs, "finding") => ecs_finding(ev),
        (Format::Ecs, t) if is_inventory(t) => ecs_inventory(ev),
        _ => ev.clone(),
    }
}

/// [`convert`] on serialised bytes (the sink path): `json` in, the converted object in `out`
/// (cleared first). Native copies the bytes as they are.
pub fn convert_bytes(fmt: Format, json: &[u8], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.clear();
    if fmt == Format::Native {
        out.extend_from_slice(json);
        return Ok(());
    }
    let v: Value = serde_json::from_slice(json)?;
    serde_json::to_writer(out, &convert(fmt, &v))
}

fn is_inventory(t: &str) -> bool {
    matches!(
        t,
        "endpoint_discovered" | "sensitive_data_discovered" | "auth_changed"
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers over the native event.

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur).filter(|v| !v.is_null())
}

/// RFC 3339 → milliseconds since the epoch (OCSF `timestamp_t`).
fn epoch_ms(ts: Option<&str>) -> i64 {
    ts.and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// The first value of a header in a native `headers` object (names are lower case there).
fn header<'a>(headers: Option<&'a Value>, name: &str) -> Option<&'a str> {
    headers?.get(name)?.as_array()?.first()?.as_str()
}

/// Native `{"name": ["v1", "v2"]}` headers → OCSF `[{"name","value"}]`.
fn ocsf_headers(headers: Option<&Value>) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(m) = headers.and_then(Value::as_object) {
        for (n, vs) in m {
            for v in vs.as_array().into_iter().flatten() {
                if let Some(v) = v.as_str() {
                    out.push(json!({"name": n, "value": v}));
                }
            }
        }
    }
    out
}

/// `host[:port]` → host (IPv6 literals keep their brackets off).
fn host_only(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => host,
        _ => h,
    }
}

fn port_of(h: &str) -> Option<u16> {
    let (_, port) = h.rsplit_once(':')?;
    if h.starts_with('[') && !h.contains("]:") {
        return None;
    }
    port.parse().ok()
}

fn media(ct: Option<&str>) -> Option<String> {
    ct.map(crate::inventory::media_type)
        .filter(|m| !m.is_empty())
}

fn network_endpoint(ep: Option<&Value>) -> Option<Value> {
    let ep = ep?;
    let ip = ep.get("ip")?.as_str()?;
    ip.parse::<std::net::IpAddr>().ok()?;
    let mut o = json!({"ip": ip});
    if let Some(p) = ep.get("port").and_then(Value::as_u64) {
        o["port"] = json!(p);
    }
    Some(o)
}

fn metadata(log_name: &str) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "apitap",
            "vendor_name": "apitap",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "log_name": log_name,
    })
}

/// Drops null members (OCSF attributes are absent rather than null).
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, prune(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        v => v,
    }
}

/// apitap's own fields of an exchange (no OCSF/ECS attribute for them).
fn exchange_extras(ev: &Value) -> Value {
    let mut m = Map::new();
    for k in [
        "flow_id",
        "protocol",
        "endpoint",
        "auth",
        "sensitive",
        "gap",
        "headers_incomplete",
        "reset",
        "pushed",
        "grpc",
        "stream_id",
    ] {
        if let Some(v) = ev.get(k).filter(|v| !v.is_null()) {
            m.insert(k.to_string(), v.clone());
        }
    }
    if let Some(i) = get(ev, &["response", "interim"]) {
        m.insert("interim".into(), i.clone());
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// OCSF.

/// HTTP Activity `activity_id` (OCSF 1.5.0: 1 Connect … 8 Trace; others 99 Other).
fn http_activity(method: &str) -> (u32, &'static str) {
    match method {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        "" => (0, "Unknown"),
        _ => (99, "Other"),
    }
}

/// `http_exchange` → OCSF HTTP Activity (4002).
pub fn ocsf_http_activity(ev: &Value) -> Value {
    let method = s(ev, &["request", "method"]).unwrap_or("");
    let (activity_id, activity) = http_activity(method);
    let time = epoch_ms(s(ev, &["ts"]));
    let host = s(ev, &["request", "host"]);
    let path = s(ev, &["request", "path"]).unwrap_or("/");
    let query = s(ev, &["request", "query"]);
    let req_headers = get(ev, &["request", "headers"]);
    let resp = get(ev, &["response"]);
    let latency = get(ev, &["latency_ms"]).and_then(Value::as_f64);
    let mut url = json!({"path": path, "scheme": "http"});
    if let Some(h) = host {
        url["hostname"] = json!(host_only(h));
        if let Some(p) = port_of(h) {
            url["port"] = json!(p);
        }
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        url["url_string"] = json!(format!("http://{h}{path}{q}"));
    }
    if let Some(q) = query {
        url["query_string"] = json!(q);
    }
    let xff: Vec<String> = header(req_headers, "x-forwarded-for")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut http_request = json!({
        "http_method": method,
        "url": url,
        "version": s(ev, &["request", "version"]),
        "user_agent": header(req_headers, "user-agent"),
        "referrer": header(req_headers, "referer"),
        "uid": header(req_headers, "x-request-id"),
        "body_length": get(ev, &["request", "body_bytes"]),
        "http_headers": ocsf_headers(req_headers),
    });
    if !xff.is_empty() {
        http_request["x_forwarded_for"] = json!(xff);
    }
    let http_response = resp.map(|r| {
        json!({
            "code": r.get("status"),
            "content_type": r.get("content_type"),
            "body_length": r.get("body_bytes"),
            "latency": latency.map(|l| l.round() as i64),
            "http_headers": ocsf_headers(r.get("headers")),
        })
    });
    let status = resp.and_then(|r| r.get("status")).and_then(Value::as_u64);
    let (status_id, status_name) = match status {
        None => (0, "Unknown"),
        Some(c) if c < 400 => (1, "Success"),
        Some(_) => (2, "Failure"),
    };
    let mut dst = network_endpoint(ev.get("server")).unwrap_or_else(|| json!({}));
    if let (Some(h), Some(o)) = (host, dst.as_object_mut()) {
        o.insert("hostname".into(), json!(host_only(h)));
    }
    if let (Some(vlan), Some(o)) = (ev.get("vlan").and_then(Value::as_u64), dst.as_object_mut()) {
        o.insert("vlan_uid".into(), json!(vlan.to_string()));
    }
    let dst = Some(dst).filter(|d| d.as_object().is_some_and(|o| !o.is_empty()));
    prune(json!({
        "class_uid": 4002,
        "class_name": "HTTP Activity",
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": 400200 + activity_id,
        "type_name": format!("HTTP Activity: {activity}"),
        "severity_id": 1,
        "severity": "Informational",
        "time": time,
        "start_time": time,
        "duration": latency.map(|l| l.round() as i64),
        "status_id": status_id,
        "status": status_name,
        "status_code": status.map(|c| c.to_string()),
        "metadata": metadata("http_exchange"),
        "src_endpoint": network_endpoint(ev.get("client")),
        "dst_endpoint": dst,
        "http_request": http_request,
        "http_response": http_response,
        "unmapped": {"apitap": exchange_extras(ev)},
    }))
}

/// CRUD `activity_id` of API Activity (6003) for an HTTP method.
fn api_activity(method: &str) -> (u32, &'static str) {
    match method {
        "POST" => (1, "Create"),
        "GET" | "HEAD" => (2, "Read"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        "" => (0, "Unknown"),
        _ => (99, "Other"),
    }
}

/// An inventory event (`endpoint_discovered`, `sensitive_data_discovered`, `auth_changed`) →
/// OCSF API Activity (6003): the API operation (`api.operation` = `METHOD template`,
/// `api.service.name` = host) that the sensor saw, with the endpoint as the affected resource.
/// `src_endpoint`/`dst_endpoint` come from the event's `client`/`server` when it has them;
/// the class requires an actor and a source, so without them the placeholders
/// `actor.app_name = "unknown"` and `src_endpoint.name = "unknown"` are written.
pub fn ocsf_api_activity(ev: &Value) -> Value {
    let ty = s(ev, &["type"]).unwrap_or("");
    let host = s(ev, &["endpoint", "host"]).unwrap_or("");
    let method = s(ev, &["endpoint", "method"]).unwrap_or("");
    let template = s(ev, &["endpoint", "template"]).unwrap_or("");
    let (activity_id, activity) = api_activity(method);
    let time = epoch_ms(s(ev, &["ts"]));
    let src = network_endpoint(ev.get("client")).unwrap_or_else(|| json!({"name": "unknown"}));
    let app = s(ev, &["user_agent"]).unwrap_or("unknown");
    let mut extras = ev.clone();
    if let Some(o) = extras.as_object_mut() {
        o.remove("ts");
    }
    prune(json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": 600300 + activity_id,
        "type_name": format!("API Activity: {activity}"),
        "severity_id": 1,
        "severity": "Informational",
        "time": time,
        "message": format!("{}: {method} {host}{template}", ty.replace('_', " ")),
        "metadata": metadata(ty),
        "actor": {"app_name": app},
        "api": {
            "operation": format!("{method} {template}"),
            "service": {"name": host},
        },
        "src_endpoint": src,
        "dst_endpoint": network_endpoint(ev.get("server")).map(|mut d| {
            d["hostname"] = json!(host_only(host));
            d
        }),
        "resources": [{
            "uid": format!("{host} {method} {template}"),
            "name": format!("{method} {host}{template}"),
            "type": "API Endpoint",
            "hostname": host_only(host),
        }],
        "unmapped": {"apitap": extras},
    }))
}

fn severity_of(ev: &Value) -> Severity {
    match s(ev, &["severity"]).unwrap_or("") {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    }
}

fn looks_like_email(c: &str) -> bool {
    let Some((local, domain)) = c.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !c.contains(char::is_whitespace)
}

/// The OWASP page of a category (`API3:2023` →
/// `https://owasp.org/API-Security/editions/2023/en/0xa3-…/`); the project's index otherwise.
fn owasp_url(cat: Option<&str>) -> String {
    let slug = match cat.unwrap_or("") {
        "API1:2023" => "0xa1-broken-object-level-authorization",
        "API2:2023" => "0xa2-broken-authentication",
        "API3:2023" => "0xa3-broken-object-property-level-authorization",
        "API4:2023" => "0xa4-unrestricted-resource-consumption",
        "API5:2023" => "0xa5-broken-function-level-authorization",
        "API6:2023" => "0xa6-unrestricted-access-to-sensitive-business-flows",
        "API7:2023" => "0xa7-server-side-request-forgery",
        "API8:2023" => "0xa8-security-misconfiguration",
        "API9:2023" => "0xa9-improper-inventory-management",
        "API10:2023" => "0xaa-unsafe-consumption-of-apis",
        _ => return "https://owasp.org/API-Security/editions/2023/en/0x11-t10/".into(),
    };
    format!("https://owasp.org/API-Security/editions/2023/en/{slug}/")
}

fn cwe_url(id: &str) -> Option<String> {
    let n = id.strip_prefix("CWE-")?;
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| format!("https://cwe.mitre.org/data/definitions/{n}.html"))
}

/// A finding → OCSF Detection Finding (2004).
pub fn ocsf_detection_finding(ev: &Value) -> Value {
    let sev = severity_of(ev);
    let host = s(ev, &["endpoint", "host"]).unwrap_or("");
    let method = s(ev, &["endpoint", "method"]).unwrap_or("");
    let template = s(ev, &["endpoint", "template"]).unwrap_or("");
    let rule = s(ev, &["rule"]).unwrap_or("");
    let title = s(ev, &["title"]).unwrap_or(rule);
    let owasp = s(ev, &["owasp"]);
    let first = epoch_ms(s(ev, &["first_seen"]));
    let last = epoch_ms(s(ev, &["last_seen"]).or(s(ev, &["ts"])));
    let owner = get(ev, &["owner"]);
    let owner_user = owner.and_then(|o| {
        let team = o.get("team")?.as_str()?;
        let mut u = json!({"name": team, "type_id": 0, "type": "Unknown"});
        if let Some(c) = o
            .get("contact")
            .and_then(Value::as_str)
            .filter(|c| looks_like_email(c))
        {
            u["email_addr"] = json!(c);
        }
        Some(u)
    });
    let mut types = Vec::new();
    if let Some(o) = owasp {
        types.push(json!(o));
        if let Some(n) = s(ev, &["owasp_name"]) {
            types.push(json!(format!("{o} {n}")));
        }
    }
    let vulnerabilities = get(ev, &["cwe", "id"]).and_then(Value::as_str).map(|id| {
        json!([{
            "cwe": {
                "uid": id,
                "caption": s(ev, &["cwe", "name"]),
                "src_url": cwe_url(id),
            },
            "title": title,
            "severity": sev.ocsf_caption(),
            "category": owasp,
            "references": [owasp_url(owasp)],
        }])
    });
    let desc = s(ev, &["description"]).or(s(ev, &["remediation"]));
    prune(json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": sev.ocsf_id(),
        "severity": sev.ocsf_caption(),
        "status_id": 1,
        "status": "New",
        "time": last,
        "start_time": first,
        "end_time": last,
        "count": get(ev, &["count"]),
        "message": format!("{title}: {method} {host}{template}"),
        "metadata": metadata("finding"),
        "finding_info": {
            "uid": s(ev, &["id"]).unwrap_or(""),
            "title": title,
            "desc": desc,
            "types": types,
            "first_seen_time": first,
            "last_seen_time": last,
            "src_url": owasp_url(owasp),
            "data_sources": ["passive network traffic (HTTP)"],
            "analytic": {
                "type_id": 1,
                "type": "Rule",
                "uid": rule,
                "name": rule,
                "category": "OWASP API Security Top 10 2023",
            },
        },
        "resources": [{
            "uid": format!("{host} {method} {template}"),
            "name": format!("{method} {host}{template}"),
            "type": "API Endpoint",
            "hostname": host_only(host),
            "owner": owner_user,
            "criticality": owner.and_then(|o| o.get("tier")),
        }],
        "evidences": [{
            "url": {"hostname": host_only(host), "path": template, "scheme": "http"},
            "api": {"operation": format!("{method} {template}"), "service": {"name": host}},
            "data": get(ev, &["evidence"]).cloned().unwrap_or_else(|| json!({})),
        }],
        "vulnerabilities": vulnerabilities,
        "remediation": s(ev, &["remediation"]).map(|r| json!({"desc": r})),
        "unmapped": {"apitap": {
            "rule": rule,
            "owasp": owasp,
            "custom": get(ev, &["custom"]),
            "owner": owner,
            "server": get(ev, &["server"]),
        }},
    }))
}

// ---------------------------------------------------------------------------------------------
// ECS.

fn ecs_base(ts: Option<&str>, kind: &str, category: &[&str], ty: &[&str], dataset: &str) -> Value {
    json!({
        "@timestamp": ts,
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": kind,
            "category": category,
            "type": ty,
            "module": "apitap",
            "dataset": dataset,
        },
        "observer": {"product": "apitap", "vendor": "apitap", "type": "sensor",
                     "version": env!("CARGO_PKG_VERSION")},
    })
}

fn merge_into(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_into(existing, v)
                    }
                    _ => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

fn ecs_endpoint(ep: Option<&Value>) -> Option<Value> {
    let ep = ep?;
    let ip = ep.get("ip")?.as_str()?;
    ip.parse::<std::net::IpAddr>().ok()?;
    Some(json!({"ip": ip, "port": ep.get("port")}))
}

/// `http_exchange` → ECS (`event.kind: event`, categories `web`, `network`).
pub fn ecs_exchange(ev: &Value) -> Value {
    let ts = s(ev, &["ts"]);
    let status = get(ev, &["response", "status"]).and_then(Value::as_u64);
    let outcome = match status {
        None => "unknown",
        Some(c) if c < 400 => "success",
        Some(_) => "failure",
    };
    let host = s(ev, &["request", "host"]);
    let path = s(ev, &["request", "path"]).unwrap_or("/");
    let query = s(ev, &["request", "query"]);
    let req_headers = get(ev, &["request", "headers"]);
    let version = match s(ev, &["request", "version"]) {
        Some(v) => v.strip_prefix("HTTP/").unwrap_or(v).to_string(),
        None => String::new(),
    };
    let latency_ns = get(ev, &["latency_ms"])
        .and_then(Value::as_f64)
        .map(|l| (l * 1e6).round() as i64);
    let original = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut out = ecs_base(ts, "event", &["web", "network"], &["access"], "apitap.http");
    let mut apitap = exchange_extras(ev);
    if let Some(o) = apitap.as_object_mut() {
        if let Some(h) = req_headers {
            o.insert("request".into(), json!({"headers": h}));
        }
        if let Some(h) = get(ev, &["response", "headers"]) {
            o.insert("response".into(), json!({"headers": h}));
        }
    }
    merge_into(
        &mut out,
        json!({
            "event": {"outcome": outcome, "duration": latency_ns, "start": ts},
            "network": {
                "transport": "tcp",
                "protocol": "http",
                "vlan": ev.get("vlan").and_then(Value::as_u64).map(|v| json!({"id": v.to_string()})),
            },
            "source": ecs_endpoint(ev.get("client")),
            "destination": ecs_endpoint(ev.get("server")).map(|mut d| {
                if let Some(h) = host {
                    d["domain"] = json!(host_only(h));
                }
                d
            }),
            "url": {
                "original": original,
                "path": path,
                "query": query,
                "domain": host.map(host_only),
                "port": host.and_then(port_of),
                "scheme": "http",
            },
            "http": {
                "version": version,
                "request": {
                    "method": s(ev, &["request", "method"]),
                    "mime_type": media(s(ev, &["request", "content_type"])),
                    "body": {"bytes": get(ev, &["request", "body_bytes"])},
                    "referrer": header(req_headers, "referer"),
                    "id": header(req_headers, "x-request-id"),
                },
                "response": {
                    "status_code": status,
                    "mime_type": media(s(ev, &["response", "content_type"])),
                    "body": {"bytes": get(ev, &["response", "body_bytes"])},
                },
            },
            "user_agent": {"original": header(req_headers, "user-agent")},
            "apitap": apitap,
        }),
    );
    prune_empty(out)
}

/// A finding → ECS (`event.kind: alert`, categories `api`, `vulnerability`; `rule.*`,
/// `vulnerability.*`).
pub fn ecs_finding(ev: &Value) -> Value {
    let sev = severity_of(ev);
    let host = s(ev, &["endpoint", "host"]).unwrap_or("");
    let method = s(ev, &["endpoint", "method"]);
    let template = s(ev, &["endpoint", "template"]);
    let title = s(ev, &["title"]).or(s(ev, &["rule"])).unwrap_or("");
    let owasp = s(ev, &["owasp"]);
    let cwe = s(ev, &["cwe", "id"]);
    let mut out = ecs_base(
        s(ev, &["last_seen"]).or(s(ev, &["ts"])),
        "alert",
        &["api", "vulnerability"],
        &["info"],
        "apitap.finding",
    );
    merge_into(
        &mut out,
        json!({
            "message": format!("{title}: {} {host}{}", method.unwrap_or(""), template.unwrap_or("")),
            "event": {
                "id": s(ev, &["id"]),
                "severity": sev.ocsf_id(),
                "risk_score": sev.risk_score() as f64,
                "start": s(ev, &["first_seen"]),
                "end": s(ev, &["last_seen"]),
                "reference": owasp_url(owasp),
            },
            "rule": {
                "id": s(ev, &["rule"]),
                "name": title,
                "category": owasp,
                "ruleset": "apitap",
                "description": s(ev, &["description"]).or(s(ev, &["remediation"])),
                "reference": owasp_url(owasp),
            },
            "vulnerability": {
                "id": cwe,
                "enumeration": cwe.map(|_| "CWE"),
                "reference": cwe.and_then(cwe_url),
                "category": owasp.map(|o| vec![o.to_string()]),
                "classification": owasp.map(|_| "OWASP API Security Top 10 2023"),
                "description": title,
                "severity": sev.ocsf_caption(),
                "scanner": {"vendor": "apitap"},
            },
            "url": {"domain": host_only(host), "path": template, "port": port_of(host)},
            "http": {"request": {"method": method}},
            "apitap": {"finding": {
                "owasp_name": get(ev, &["owasp_name"]),
                "count": get(ev, &["count"]),
                "custom": get(ev, &["custom"]),
                "evidence": get(ev, &["evidence"]),
                "owner": get(ev, &["owner"]),
                "endpoint": get(ev, &["endpoint"]),
                "server": get(ev, &["server"]),
            }},
        }),
    );
    prune_empty(out)
}

/// An inventory event → ECS (`event.kind: asset`, category `api`; `event.action` is the
/// native type).
pub fn ecs_inventory(ev: &Value) -> Value {
    let ty = s(ev, &["type"]).unwrap_or("");
    let event_type = if ty == "endpoint_discovered" {
        "creation"
    } else {
        "change"
    };
    let host = s(ev, &["endpoint", "host"]).unwrap_or("");
    let mut extras = ev.clone();
    if let Some(o) = extras.as_object_mut() {
        o.remove("ts");
        o.remove("type");
    }
    let mut out = ecs_base(
        s(ev, &["ts"]),
        "asset",
        &["api"],
        &[event_type],
        "apitap.inventory",
    );
    merge_into(
        &mut out,
        json!({
            "event": {"action": ty},
            "url": {"domain": host_only(host), "path": s(ev, &["endpoint", "template"]),
                    "port": port_of(host)},
            "http": {"request": {"method": s(ev, &["endpoint", "method"])}},
            "source": ecs_endpoint(ev.get("client")),
            "destination": ecs_endpoint(ev.get("server")),
            "apitap": {"inventory": extras},
        }),
    );
    prune_empty(out)
}

/// [`prune`], then drops objects left empty.
fn prune_empty(v: Value) -> Value {
    match prune(v) {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, prune_empty(v)))
                .filter(|(_, v)| !v.as_object().is_some_and(Map::is_empty))
                .collect(),
        ),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Value {
        json!({"type":"http_exchange","ts":"2026-11-29T03:00:39.029762Z","protocol":"HTTP/1.1",
            "flow_id":12,"client":{"ip":"127.0.0.1","port":35872},
            "server":{"ip":"127.0.0.1","port":18080},
            "request":{"method":"PATCH","host":"api.example.test:18080","path":"/v1/x",
              "query":"api_key=***","version":"HTTP/1.1",
              "headers":{"user-agent":["curl/8"],"x-forwarded-for":["203.0.113.7, junk"]},
              "content_type":"application/json; charset=utf-8","body_bytes":10},
            "response":{"status":503,"headers":{"server":["nginx"]},"content_type":null,
              "body_bytes":0},
            "latency_ms":1.925,"gap":false,
            "endpoint":{"host":"api.example.test:18080","method":"PATCH","template":"/v1/x"}})
    }

    #[test]
    fn formats_parse() {
        assert_eq!("OCSF".parse::<Format>(), Ok(Format::Ocsf));
        assert_eq!("ecs".parse::<Format>(), Ok(Format::Ecs));
        assert!("cef".parse::<Format>().is_err());
    }

    #[test]
    fn ocsf_exchange_fields() {
        let o = ocsf_http_activity(&exchange());
        assert_eq!(o["class_uid"], 4002);
        assert_eq!(
            o["activity_id"], 99,
            "PATCH has no activity of its own in 1.5.0"
        );
        assert_eq!(o["type_uid"], 400299);
        assert_eq!(o["time"], 1_795_921_239_029i64);
        assert_eq!(o["http_request"]["url"]["hostname"], "api.example.test");
        assert_eq!(o["http_request"]["url"]["port"], 18080);
        assert_eq!(o["http_request"]["url"]["query_string"], "api_key=***");
        assert_eq!(o["http_request"]["x_forwarded_for"], json!(["203.0.113.7"]));
        assert_eq!(o["http_response"]["code"], 503);
        assert_eq!(o["http_response"]["latency"], 2);
        assert!(
            o["http_response"].get("content_type").is_none(),
            "nulls are dropped"
        );
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["dst_endpoint"]["hostname"], "api.example.test");
        assert_eq!(o["unmapped"]["apitap"]["flow_id"], 12);
    }

    #[test]
    fn ecs_exchange_fields() {
        let e = ecs_exchange(&exchange());
        assert_eq!(e["http"]["version"], "1.1");
        assert_eq!(e["http"]["request"]["mime_type"], "application/json");
        assert_eq!(e["event"]["duration"], 1_925_000);
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["url"]["original"], "/v1/x?api_key=***");
        assert_eq!(e["url"]["domain"], "api.example.test");
        assert_eq!(e["source"]["port"], 35872);
        assert_eq!(e["user_agent"]["original"], "curl/8");
        assert!(e["http"]["response"].get("mime_type").is_none());
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(host_only("a.example:8080"), "a.example");
        assert_eq!(host_only("[::1]:8080"), "::1");
        assert_eq!(host_only("a.example"), "a.example");
        assert_eq!(port_of("a.example:8080"), Some(8080));
        assert_eq!(port_of("[::1]"), None);
        assert_eq!(port_of("a.example"), None);
    }

    #[test]
    fn native_passes_through() {
        let e = exchange();
        assert_eq!(convert(Format::Native, &e), e);
        let mut out = Vec::new();
        convert_bytes(Format::Native, b"{\"a\":1}", &mut out).unwrap();
        assert_eq!(out, b"{\"a\":1}");
        convert_bytes(Format::Ocsf, b"{\"type\":\"other\"}", &mut out).unwrap();
        assert_eq!(out, b"{\"type\":\"other\"}");
        assert!(convert_bytes(Format::Ecs, b"{", &mut out).is_err());
    }
}
