//! The endpoint inventory: one record per (host, method, template), what it carries and how it
//! is protected, built from the per-exchange [`Insights`].
//!
//! Owns the long-lived state users buy the sensor for. Every collection in a record is capped
//! (names, content types, sensitive findings, schema fields) and the number of records is
//! capped with a counter, so a scanner walking random paths cannot grow it without bound.
//! Records are mergeable ([`EndpointStats::merge`]): workers keep their own shard and the
//! export folds the shards, and it also folds records whose template was learnt to be the same
//! only after they were created (`/users/alice` and `/users/bob` before `/users/{name}` was
//! known), so the exported inventory does not depend on arrival order.
use crate::infer::auth::AuthKind;
use crate::infer::body::Schema;
use crate::infer::sensitive::SensitiveType;
use crate::infer::template::Templater;
use crate::inspect::{Finding, Insights};
use crate::observation::rfc3339;
use apitap_parsers::{Exchange, Protocol};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Keys come from packet data: a keyed (per-process random seed) fast hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Inventory limits.
#[derive(Clone, Copy, Debug)]
pub struct InventoryConfig {
    /// Endpoint records kept (per worker shard).
    pub max_endpoints: usize,
    /// Distinct names kept per set (query parameters, header names, content types).
    pub max_names: usize,
    /// Distinct (type, location, field) sensitive findings kept per endpoint.
    pub max_findings: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            max_endpoints: 20_000,
            max_names: 64,
            max_findings: 128,
        }
    }
}

/// Inventory counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InventoryStats {
    /// Endpoint records created.
    pub endpoints_created: u64,
    /// Exchanges not recorded because the endpoint cap was reached.
    pub endpoints_dropped: u64,
    /// Names not recorded because a per-endpoint set was full.
    pub names_dropped: u64,
    /// Findings not recorded because an endpoint's finding set was full.
    pub findings_dropped: u64,
    /// Records folded into another after their template was learnt.
    pub endpoints_folded: u64,
}

impl InventoryStats {
    /// Adds `o` (another worker's counters).
    pub fn add(&mut self, o: &InventoryStats) {
        self.endpoints_created += o.endpoints_created;
        self.endpoints_dropped += o.endpoints_dropped;
        self.names_dropped += o.names_dropped;
        self.findings_dropped += o.findings_dropped;
        self.endpoints_folded += o.endpoints_folded;
    }
}

/// What identifies an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EndpointKey {
    /// Host as addressed (lower case, default port dropped).
    pub host: String,
    /// Request method.
    pub method: String,
    /// Path template.
    pub template: String,
}

impl EndpointKey {
    /// The endpoint `ex` hit, as inspection named it.
    pub fn of(ex: &Exchange, ins: &Insights) -> Self {
        EndpointKey {
            host: ins.host.clone(),
            method: ex.request.method.clone(),
            template: ins.template.clone(),
        }
    }
}

/// A credential seen on an endpoint: its kind and where it travelled (never its value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Credential {
    /// Auth kind.
    pub kind: AuthKind,
    /// `header`, `query` or `cookie`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<&'static str>,
    /// Header, parameter or cookie name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What JWTs on an endpoint looked like (claims only; signatures are not verified).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JwtSummary {
    /// Tokens seen.
    pub tokens: u64,
    /// `alg` values.
    pub algs: BTreeSet<String>,
    /// `iss` values.
    pub issuers: BTreeSet<String>,
    /// `aud` values.
    pub audiences: BTreeSet<String>,
    /// Tokens without `exp`.
    pub without_exp: u64,
    /// Longest `exp - iat` seen, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lifetime_secs: Option<i64>,
}

/// Everything known about one endpoint.
#[derive(Clone, Debug)]
pub struct EndpointStats {
    /// Exchanges.
    pub count: u64,
    /// First request, µs since the epoch.
    pub first_seen_us: i64,
    /// Last request, µs since the epoch.
    pub last_seen_us: i64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Exchanges without a response.
    pub without_response: u64,
    /// Exchanges touched by a capture gap.
    pub with_gap: u64,
    /// HTTP/1.x exchanges.
    pub http1: u64,
    /// HTTP/2 exchanges.
    pub http2: u64,
    /// gRPC calls.
    pub grpc: u64,
    /// Request content types.
    pub request_content_types: BTreeMap<String, u64>,
    /// Response content types.
    pub response_content_types: BTreeMap<String, u64>,
    /// Query parameter names.
    pub query_params: BTreeSet<String>,
    /// Request header names (lower case).
    pub request_headers: BTreeSet<String>,
    /// Response header names (lower case).
    pub response_headers: BTreeSet<String>,
    /// Server addresses that answered.
    pub servers: BTreeSet<String>,
    /// Latency, µs (hdrhistogram, 1 significant digit: ±6%, ~1.5 KiB).
    pub latency_us: Option<Histogram<u32>>,
    /// Exchanges by auth kind.
    pub auth: BTreeMap<AuthKind, u64>,
    /// Credentials seen (kind, location, name).
    pub credentials: BTreeSet<Credential>,
    /// JWT claims seen.
    pub jwt: JwtSummary,
    /// Sensitive findings with counts.
    pub sensitive: BTreeMap<Finding, u64>,
    /// Request body schema.
    pub request_schema: Schema,
    /// Response body schema (successful responses).
    pub response_schema: Schema,
    /// A concrete path seen, kept to re-resolve the template at export; never written out.
    example_path: String,
    /// Hashes of the last request's and response's header-name lists whose names were all
    /// recorded: most endpoints are called by one client library, so the same list comes
    /// back and its names need not be looked up again (0: none).
    known_names: [u64; 2],
}

const LATENCY_MAX_US: u64 = 600_000_000;

fn insert_capped(set: &mut BTreeSet<String>, v: &str, cap: usize, dropped: &mut u64) {
    if set.contains(v) {
        return;
    }
    if set.len() >= cap {
        *dropped += 1;
        return;
    }
    set.insert(v.to_string());
}

fn count_capped(map: &mut BTreeMap<String, u64>, v: &str, n: u64, cap: usize, dropped: &mut u64) {
    if let Some(c) = map.get_mut(v) {
        *c += n;
    } else if map.len() >= cap {
        *dropped += 1;
    } else {
        map.insert(v.to_string(), n);
    }
}

/// A content type without parameters, lower case.
pub fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl EndpointStats {
    fn new(ts_us: i64, example_path: &str) -> Self {
        EndpointStats {
            count: 0,
            first_seen_us: ts_us,
            last_seen_us: ts_us,
            statuses: BTreeMap::new(),
            without_response: 0,
            with_gap: 0,
            http1: 0,
            http2: 0,
            grpc: 0,
            request_content_types: BTreeMap::new(),
            response_content_types: BTreeMap::new(),
            query_params: BTreeSet::new(),
            request_headers: BTreeSet::new(),
            response_headers: BTreeSet::new(),
            servers: BTreeSet::new(),
            latency_us: None,
            auth: BTreeMap::new(),
            credentials: BTreeSet::new(),
            jwt: JwtSummary::default(),
            sensitive: BTreeMap::new(),
            request_schema: Schema::default(),
            response_schema: Schema::default(),
            example_path: example_path.chars().take(2048).collect(),
            known_names: [0; 2],
        }
    }

    /// Exchanges that carried no credential.
    pub fn unauthenticated(&self) -> u64 {
        self.auth.get(&AuthKind::None).copied().unwrap_or(0)
    }

    /// The auth kinds seen, most frequent first.
    pub fn auth_kinds(&self) -> Vec<AuthKind> {
        let mut v: Vec<(AuthKind, u64)> = self.auth.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(k, _)| k).collect()
    }

    /// Sensitive types seen on the endpoint.
    pub fn sensitive_types(&self) -> BTreeSet<SensitiveType> {
        self.sensitive.keys().map(|f| f.kind).collect()
    }

    /// Latency percentile in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency_us
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
    }

    /// Folds `o` into `self`.
    pub fn merge(&mut self, o: &EndpointStats, cfg: &InventoryConfig, stats: &mut InventoryStats) {
        self.count += o.count;
        self.first_seen_us = self.first_seen_us.min(o.first_seen_us);
        self.last_seen_us = self.last_seen_us.max(o.last_seen_us);
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        self.without_response += o.without_response;
        self.with_gap += o.with_gap;
        self.http1 += o.http1;
        self.http2 += o.http2;
        self.grpc += o.grpc;
        let d = &mut stats.names_dropped;
        for (k, v) in &o.request_content_types {
            count_capped(&mut self.request_content_types, k, *v, cfg.max_names, d);
        }
        for (k, v) in &o.response_content_types {
            count_capped(&mut self.response_content_types, k, *v, cfg.max_names, d);
        }
        for n in &o.query_params {
            insert_capped(&mut self.query_params, n, cfg.max_names, d);
        }
        for n in &o.request_headers {
            insert_capped(&mut self.request_headers, n, cfg.max_names, d);
        }
        for n in &o.response_headers {
            insert_capped(&mut self.response_headers, n, cfg.max_names, d);
        }
        for n in &o.servers {
            insert_capped(&mut self.servers, n, 16, d);
        }
        if let Some(h) = &o.latency_us {
            match &mut self.latency_us {
                Some(mine) => {
                    let _ = mine.add(h);
                }
                None => self.latency_us = Some(h.clone()),
            }
        }
        for (k, v) in &o.auth {
            *self.auth.entry(*k).or_default() += v;
        }
        for c in &o.credentials {
            if self.credentials.len() < cfg.max_names {
                self.credentials.insert(c.clone());
            }
        }
        self.jwt.tokens += o.jwt.tokens;
        self.jwt.without_exp += o.jwt.without_exp;
        self.jwt.algs.extend(o.jwt.algs.iter().cloned());
        self.jwt.issuers.extend(o.jwt.issuers.iter().cloned());
        self.jwt.audiences.extend(o.jwt.audiences.iter().cloned());
        self.jwt.max_lifetime_secs = self.jwt.max_lifetime_secs.max(o.jwt.max_lifetime_secs);
        for (f, c) in &o.sensitive {
            if let Some(n) = self.sensitive.get_mut(f) {
                *n += c;
            } else if self.sensitive.len() < cfg.max_findings {
                self.sensitive.insert(f.clone(), *c);
            } else {
                stats.findings_dropped += 1;
            }
        }
        self.request_schema.merge(&o.request_schema);
        self.response_schema.merge(&o.response_schema);
    }

    fn record(
        &mut self,
        ex: &Exchange,
        server: &str,
        ins: &Insights,
        cfg: &InventoryConfig,
        stats: &mut InventoryStats,
        names: [u64; 2],
    ) -> Changes {
        let mut ch = Changes::default();
        let req = &ex.request;
        self.count += 1;
        self.first_seen_us = self.first_seen_us.min(req.ts_us);
        self.last_seen_us = self.last_seen_us.max(req.ts_us);
        match ex.protocol {
            Protocol::Http1 => self.http1 += 1,
            Protocol::Http2 => self.http2 += 1,
        }
        if ex.grpc.is_some() {
            self.grpc += 1;
        }
        if ex.gap {
            self.with_gap += 1;
        }
        let d = &mut stats.names_dropped;
        insert_capped(&mut self.servers, server, 16, d);
        if let Some(ct) = req.header("content-type") {
            count_capped(
                &mut self.request_content_types,
                &media_type(ct),
                1,
                cfg.max_names,
                d,
            );
        }
        for n in &ins.query {
            insert_capped(&mut self.query_params, n, cfg.max_names, d);
        }
        record_names(
            &mut self.request_headers,
            &mut self.known_names[0],
            names[0],
            &req.headers,
            cfg.max_names,
            d,
        );
        match &ex.response {
            Some(r) => {
                *self.statuses.entry(r.status).or_default() += 1;
                if let Some(ct) = r.header("content-type") {
                    count_capped(
                        &mut self.response_content_types,
                        &media_type(ct),
                        1,
                        cfg.max_names,
                        d,
                    );
                }
                record_names(
                    &mut self.response_headers,
                    &mut self.known_names[1],
                    names[1],
                    &r.headers,
                    cfg.max_names,
                    d,
                );
                let lat = (r.ts_us - req.ts_us).clamp(1, LATENCY_MAX_US as i64) as u64;
                if self.latency_us.is_none() {
                    self.latency_us = Histogram::new_with_bounds(1, LATENCY_MAX_US, 1).ok();
                }
                if let Some(h) = &mut self.latency_us {
                    h.saturating_record(lat);
                }
            }
            None => self.without_response += 1,
        }
        // Auth.
        let before: BTreeSet<AuthKind> = self.auth.keys().copied().collect();
        *self.auth.entry(ins.auth.kind).or_default() += 1;
        if !before.contains(&ins.auth.kind) && !before.is_empty() {
            ch.auth_changed = Some(before.into_iter().collect());
        }
        if ins.auth.kind != AuthKind::None && self.credentials.len() < cfg.max_names {
            self.credentials.insert(Credential {
                kind: ins.auth.kind,
                location: ins.auth.location,
                name: ins.auth.name.clone(),
            });
        }
        if let Some(j) = &ins.auth.jwt {
            record_jwt(&mut self.jwt, j, cfg.max_names);
        }
        // Sensitive data.
        for f in &ins.sensitive {
            if let Some(n) = self.sensitive.get_mut(f) {
                *n += 1;
                continue;
            }
            if self.sensitive.len() >= cfg.max_findings {
                stats.findings_dropped += 1;
                continue;
            }
            if !self.sensitive.keys().any(|k| k.kind == f.kind) {
                ch.new_sensitive.push(f.clone());
            }
            self.sensitive.insert(f.clone(), 1);
        }
        if let Some(s) = &ins.request_schema {
            self.request_schema.merge(s);
        }
        if let Some(s) = &ins.response_schema {
            self.response_schema.merge(s);
        }
        ch
    }

    /// The record as written in the inventory file.
    pub fn to_json(&self, key: &EndpointKey, risk: Option<Value>) -> Value {
        let statuses: BTreeMap<String, u64> = self
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let sensitive: Vec<Value> = self
            .sensitive
            .iter()
            .map(|(f, c)| {
                json!({"type": f.kind, "location": f.location, "field": f.field, "count": c})
            })
            .collect();
        let unauth = self.unauthenticated();
        let mut v = json!({
            "host": key.host,
            "method": key.method,
            "template": key.template,
            "count": self.count,
            "first_seen": rfc3339(self.first_seen_us),
            "last_seen": rfc3339(self.last_seen_us),
            "statuses": statuses,
            "without_response": self.without_response,
            "with_gap": self.with_gap,
            "protocols": {"http1": self.http1, "http2": self.http2, "grpc": self.grpc},
            "latency_ms": {
                "p50": self.latency_ms(0.5),
                "p90": self.latency_ms(0.9),
                "p99": self.latency_ms(0.99),
            },
            "auth": {
                "kinds": self.auth_kinds(),
                "by_kind": self.auth,
                "unauthenticated": unauth,
                "unauthenticated_share": if self.count > 0 { unauth as f64 / self.count as f64 } else { 0.0 },
                "status_401": self.statuses.get(&401).copied().unwrap_or(0),
                "status_403": self.statuses.get(&403).copied().unwrap_or(0),
                "credentials": self.credentials,
                "jwt": if self.jwt.tokens > 0 { serde_json::to_value(&self.jwt).unwrap_or(Value::Null) } else { Value::Null },
            },
            "sensitive": sensitive,
            "query_params": self.query_params,
            "request_headers": self.request_headers,
            "response_headers": self.response_headers,
            "request_content_types": self.request_content_types,
            "response_content_types": self.response_content_types,
            "servers": self.servers,
            "request_schema": schema_json(&self.request_schema),
            "response_schema": schema_json(&self.response_schema),
        });
        if let (Some(r), Some(o)) = (risk, v.as_object_mut()) {
            o.insert("risk".into(), r);
        }
        v
    }
}

fn schema_json(s: &Schema) -> Value {
    if s.samples() == 0 {
        Value::Null
    } else {
        s.to_json_schema()
    }
}

/// A hash of a message's header names in order (never 0, which means "none known").
fn names_hash(b: &foldhash::fast::RandomState, headers: &[(String, String)]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = b.build_hasher();
    for (n, _) in headers {
        h.write(n.as_bytes());
        h.write_u8(0xff);
    }
    h.finish().max(1)
}

/// Records a message's header names (lower-cased, pseudo-headers left out) unless `hash`, the
/// hash of its name list, is `known`: the last list whose names were all recorded.
fn record_names(
    set: &mut BTreeSet<String>,
    known: &mut u64,
    hash: u64,
    headers: &[(String, String)],
    cap: usize,
    dropped: &mut u64,
) {
    if hash == *known {
        return;
    }
    let before = *dropped;
    for (n, _) in headers {
        if !n.starts_with(':') {
            insert_lower(set, n, cap, dropped);
        }
    }
    // A list with a name dropped at the cap is looked at again next time, so that every drop
    // is counted.
    *known = if *dropped == before { hash } else { 0 };
}

fn insert_lower(set: &mut BTreeSet<String>, n: &str, cap: usize, dropped: &mut u64) {
    if n.bytes().any(|b| b.is_ascii_uppercase()) {
        insert_capped(set, &n.to_ascii_lowercase(), cap, dropped)
    } else {
        insert_capped(set, n, cap, dropped)
    }
}

fn record_jwt(s: &mut JwtSummary, j: &crate::infer::auth::JwtInfo, cap: usize) {
    s.tokens += 1;
    let add = |set: &mut BTreeSet<String>, v: &str| {
        if set.len() < cap && !set.contains(v) {
            set.insert(v.chars().take(256).collect());
        }
    };
    add(&mut s.algs, &j.alg);
    if let Some(i) = &j.iss {
        add(&mut s.issuers, i);
    }
    for a in &j.aud {
        add(&mut s.audiences, a);
    }
    match j.exp {
        None => s.without_exp += 1,
        Some(exp) => {
            if let Some(iat) = j.iat {
                let life = exp.saturating_sub(iat);
                s.max_lifetime_secs = Some(s.max_lifetime_secs.map_or(life, |m| m.max(life)));
            }
        }
    }
}

/// What an exchange taught the inventory (drives the inventory events).
#[derive(Debug, Default)]
pub struct Changes {
    /// The endpoint was not known before.
    pub discovered: bool,
    /// Sensitive types new to the endpoint (first finding of each).
    pub new_sensitive: Vec<Finding>,
    /// The auth kinds known before a new one appeared.
    pub auth_changed: Option<Vec<AuthKind>>,
}

impl Changes {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.discovered || !self.new_sensitive.is_empty() || self.auth_changed.is_some()
    }
}

/// One shard of the inventory (one per worker).
#[derive(Clone)]
pub struct Inventory {
    cfg: InventoryConfig,
    endpoints: HashMap<EndpointKey, EndpointStats>,
    /// Keyed per shard, so header names cannot be chosen to collide with a known list and
    /// go unrecorded.
    names_hasher: foldhash::fast::RandomState,
    /// Counters.
    pub stats: InventoryStats,
}

impl Inventory {
    /// An empty inventory.
    pub fn new(cfg: InventoryConfig) -> Self {
        Inventory {
            cfg,
            endpoints: HashMap::default(),
            names_hasher: foldhash::fast::RandomState::default(),
            stats: InventoryStats::default(),
        }
    }

    /// Records in the shard.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the shard is empty.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The record of `key`.
    pub fn get(&self, key: &EndpointKey) -> Option<&EndpointStats> {
        self.endpoints.get(key)
    }

    /// Records one exchange under the endpoint its insights name.
    pub fn record(&mut self, ex: &Exchange, server: &str, ins: &Insights) -> Changes {
        self.record_under(&EndpointKey::of(ex, ins), ex, server, ins)
    }

    /// [`Inventory::record`] under a key the caller already built (and uses again).
    pub fn record_under(
        &mut self,
        key: &EndpointKey,
        ex: &Exchange,
        server: &str,
        ins: &Insights,
    ) -> Changes {
        let mut discovered = false;
        if !self.endpoints.contains_key(key) {
            if self.endpoints.len() >= self.cfg.max_endpoints {
                self.stats.endpoints_dropped += 1;
                return Changes::default();
            }
            self.stats.endpoints_created += 1;
            discovered = true;
            let (path, _) = crate::observation::split_target(&ex.request.target);
            self.endpoints
                .insert(key.clone(), EndpointStats::new(ex.request.ts_us, path));
        }
        let Some(e) = self.endpoints.get_mut(key) else {
            return Changes::default();
        };
        let names = [
            names_hash(&self.names_hasher, &ex.request.headers),
            ex.response
                .as_ref()
                .map_or(0, |r| names_hash(&self.names_hasher, &r.headers)),
        ];
        let mut ch = e.record(ex, server, ins, &self.cfg, &mut self.stats, names);
        ch.discovered = discovered;
        ch
    }

    /// Folds records whose templates `t` now resolves to the same endpoint; returns how many
    /// were folded. Run before an export and when the shard is full.
    pub fn compact(&mut self, t: &Templater) -> usize {
        let before = self.endpoints.len();
        let old = std::mem::take(&mut self.endpoints);
        for (mut k, v) in old {
            k.template = t.resolve(&k.host, &v.example_path);
            self.absorb(k, v);
        }
        let folded = before - self.endpoints.len();
        self.stats.endpoints_folded += folded as u64;
        folded
    }

    fn absorb(&mut self, k: EndpointKey, v: EndpointStats) {
        if let Some(mine) = self.endpoints.get_mut(&k) {
            mine.merge(&v, &self.cfg, &mut self.stats);
        } else {
            self.endpoints.insert(k, v);
        }
    }

    /// Folds another shard into this one (the records are re-templated by `t`).
    pub fn merge_from(&mut self, other: &Inventory, t: &Templater) {
        self.stats.add(&other.stats);
        for (k, v) in &other.endpoints {
            let mut k = k.clone();
            k.template = t.resolve(&k.host, &v.example_path);
            self.absorb(k, v.clone());
        }
    }

    /// The records, sorted by host, template, method.
    pub fn sorted(&self) -> Vec<(&EndpointKey, &EndpointStats)> {
        let mut v: Vec<_> = self.endpoints.iter().collect();
        v.sort_by(|a, b| {
            (&a.0.host, &a.0.template, &a.0.method).cmp(&(&b.0.host, &b.0.template, &b.0.method))
        });
        v
    }

    /// The inventory document.
    pub fn to_json(&self, risk: &dyn Fn(&EndpointKey, &EndpointStats) -> Option<Value>) -> Value {
        let endpoints: Vec<Value> = self
            .sorted()
            .into_iter()
            .map(|(k, v)| v.to_json(k, risk(k, v)))
            .collect();
        json!({
            "schema_version": crate::observation::SCHEMA_VERSION,
            "generated_at": rfc3339(now_us()),
            "endpoints": endpoints,
            "stats": self.stats,
        })
    }
}

/// Wall-clock now, µs since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename, so readers
/// never see a half-written inventory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// An inventory event (`endpoint_discovered`, `sensitive_data_discovered`, `auth_changed`).
pub fn events(key: &EndpointKey, e: &EndpointStats, ch: &Changes, ts_us: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let endpoint = json!({"host": key.host, "method": key.method, "template": key.template});
    if ch.discovered {
        out.push(json!({
            "type": "endpoint_discovered",
            "ts": rfc3339(ts_us),
            "endpoint": endpoint,
            "auth": e.auth_kinds(),
            "sensitive": e.sensitive.keys().collect::<Vec<_>>(),
        }));
    }
    for f in &ch.new_sensitive {
        out.push(json!({
            "type": "sensitive_data_discovered",
            "ts": rfc3339(ts_us),
            "endpoint": endpoint,
            "sensitive": f,
        }));
    }
    if let Some(before) = &ch.auth_changed {
        out.push(json!({
            "type": "auth_changed",
            "ts": rfc3339(ts_us),
            "endpoint": endpoint,
            "before": before,
            "after": e.auth_kinds(),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{InspectConfig, Inspector};
    use apitap_parsers::Request;

    fn exchange(names: &[&str]) -> Exchange {
        let req = Request {
            ts_us: 1_000,
            method: "GET".into(),
            target: "/api/things".into(),
            version: "HTTP/1.1".into(),
            headers: names
                .iter()
                .map(|n| (n.to_string(), "x".to_string()))
                .chain([("Host".to_string(), "api.example".to_string())])
                .collect(),
            ..Request::default()
        };
        Exchange::new(Protocol::Http1, req)
    }

    fn record(inv: &mut Inventory, ex: &Exchange) {
        let server = "192.0.2.1:80".parse().unwrap();
        let ins = Inspector::new(InspectConfig::default()).inspect(ex, server);
        inv.record(ex, "192.0.2.1:80", &ins);
    }

    fn names(inv: &Inventory) -> Vec<String> {
        let e = inv.endpoints.values().next().unwrap();
        e.request_headers.iter().cloned().collect()
    }

    #[test]
    fn a_repeated_header_list_is_recorded_once_and_new_names_still_land() {
        let mut inv = Inventory::new(InventoryConfig::default());
        let a = exchange(&["Accept", "User-Agent"]);
        record(&mut inv, &a);
        record(&mut inv, &a);
        assert_eq!(names(&inv), ["accept", "host", "user-agent"]);
        // The same names in another order, and one more: both are looked at.
        record(&mut inv, &exchange(&["User-Agent", "Accept"]));
        record(&mut inv, &exchange(&["Accept", "User-Agent", "X-Trace"]));
        assert_eq!(names(&inv), ["accept", "host", "user-agent", "x-trace"]);
        assert_eq!(inv.stats.names_dropped, 0);
    }

    #[test]
    fn names_dropped_at_the_cap_are_counted_every_time() {
        let cfg = InventoryConfig {
            max_names: 2,
            ..InventoryConfig::default()
        };
        let mut inv = Inventory::new(cfg);
        let a = exchange(&["Accept", "User-Agent"]);
        for _ in 0..3 {
            record(&mut inv, &a);
        }
        // Two of the three names fit; the third is dropped, and counted, on each exchange.
        assert_eq!(names(&inv).len(), 2);
        assert_eq!(inv.stats.names_dropped, 3);
    }
}
