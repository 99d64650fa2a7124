//! Declared API specs and drift: what the organisation says its APIs are (OpenAPI 3.0/3.1 or
//! Swagger 2.0, JSON or YAML) against what the sensor saw.
//!
//! Owns spec loading (`--spec FILE`, repeatable), the matching of observed endpoints
//! (host, method, template) to declared operations, and the drift report behind the
//! `shadow_endpoint`, `zombie_endpoint`, `unused_endpoint` and `undeclared_parameter` findings
//! and `apitap diff --spec FILE --inventory FILE`.
//!
//! # Which spec speaks for which host
//! A spec covers the hosts of its absolute `servers[].url`s (OpenAPI 3.x §4.8.5; Swagger 2.0
//! `host`), compared like observed hosts (lower case, `:80`/`:443` dropped; server variables
//! `{name}` match any label text). A spec whose servers are all relative (or absent) covers
//! every host. Observed endpoints on hosts no spec covers are not drift (unless the policy sets
//! `shadow_hosts_without_spec`): they are listed in [`DiffReport::hosts_without_spec`]. The
//! path of a server URL (Swagger `basePath`) prefixes every declared path.
//!
//! # Matching
//! Templates are compared segment by segment (empty segments ignored, as the templater does).
//! A declared `{param}` segment matches any observed segment, literal or placeholder, so
//! `/users/{userId}` is the same shape as the observed `/users/{id}` or a still-literal
//! `/users/42`. A declared literal matches only the same literal. A declared segment mixing
//! text and parameters (`{id}.json`) matches an observed placeholder, or a literal by glob.
//! When several operations match, the one with literals earliest wins (OpenAPI §4.8.8:
//! concrete paths before templated ones). `HEAD` is covered by a declared `GET`, and `OPTIONS`
//! (CORS preflight) by any operation on the path.
//!
//! # Drift
//! - **shadow**: observed, matching no declared operation of a covering spec.
//! - **zombie**: observed on an operation declared `deprecated: true`, or on an older version
//!   of a declared path (`/api/v1/users/{id}` seen, only `/api/v2/users/{id}` declared).
//! - **unused**: declared, never observed (informational: a capture rarely exercises all).
//! - **undeclared parameter**: query parameters observed that the operation does not declare
//!   (path-item and operation `parameters` with `in: query`, local `$ref`s resolved; an object
//!   parameter in `form` style accepts any name, a `deepObject` one any `name[…]`).
//!
//! [`DiffReport::has_drift`] is true for shadow, zombie and undeclared parameters; unused
//! operations are reported but do not fail a CI gate.
use crate::policy::{read_document, segment_matches, DocError, Glob, Issue};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Operations kept per spec.
pub const MAX_OPERATIONS: usize = 20_000;
/// Segments compared per path; deeper paths never match.
const MAX_SEGMENTS: usize = 64;
/// `$ref` hops followed for one parameter.
const MAX_REF_DEPTH: usize = 8;
/// Query parameter names kept per operation.
const MAX_PARAMS: usize = 256;

/// The eight HTTP methods an OpenAPI path item holds.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why a spec or inventory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Unreadable or not JSON/YAML.
    #[error(transparent)]
    Document(#[from] DocError),
    /// Not an OpenAPI 3.0/3.1 or Swagger 2.0 document.
    #[error("{source_name}: {}", crate::policy::render_issues(.issues))]
    Invalid {
        /// The file.
        source_name: String,
        /// Problems at key paths.
        issues: Vec<Issue>,
    },
    /// The inventory file could not be read.
    #[error("inventory {path}: {message}")]
    Inventory {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// One segment of a declared path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DeclSeg {
    Lit(String),
    Param,
    /// Text and parameters, as a `*` pattern (`{id}.json` → `*.json`).
    Pattern(String),
}

/// A declared operation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Method, upper case.
    pub method: String,
    /// Path as declared, with the server's base path.
    pub path: String,
    segs: Vec<DeclSeg>,
    /// `deprecated: true`.
    pub deprecated: bool,
    /// `operationId`.
    pub operation_id: Option<String>,
    /// Declared query parameter names.
    pub query: BTreeSet<String>,
    /// Prefixes accepted by `deepObject` parameters (`filter[`).
    query_prefixes: Vec<String>,
    /// A free-form (object, `form` style) query parameter: any name is declared.
    query_any: bool,
}

/// A loaded spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where it came from (file name).
    pub source: String,
    /// `info.title`.
    pub title: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    /// `openapi` (or `swagger`) version string.
    pub openapi: String,
    hosts: Vec<Glob>,
    /// The declared operations.
    pub operations: Vec<Operation>,
    by_len: HashMap<usize, Vec<usize>>,
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn decl_seg(s: &str) -> DeclSeg {
    if !s.contains('{') {
        return DeclSeg::Lit(s.to_string());
    }
    if s.starts_with('{') && s.ends_with('}') && s[1..].find('{').is_none() {
        return DeclSeg::Param;
    }
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push('*');
                }
                depth += 1;
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    DeclSeg::Pattern(out)
}

fn is_placeholder(s: &str) -> bool {
    s.len() >= 2 && s.starts_with('{') && s.ends_with('}')
}

/// The host and path of a server URL (`https://api.example.com:443/v1` → host
/// `api.example.com`, path `/v1`); `None` host for a relative URL.
fn split_server(url: &str) -> (Option<String>, String) {
    let url = url.trim();
    let Some((_, rest)) = url.split_once("://") else {
        return (None, url.split(['?', '#']).next().unwrap_or("").to_string());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = authority
        .strip_suffix(":80")
        .or_else(|| authority.strip_suffix(":443"))
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let host = host.replace(['{', '}'], "*");
    // `{sub}` became `*sub*`; collapse to one wildcard per label.
    let host = host
        .split('.')
        .map(|l| if l.contains('*') { "*" } else { l })
        .collect::<Vec<_>>()
        .join(".");
    (
        Some(host),
        path.split(['?', '#']).next().unwrap_or("").to_string(),
    )
}

/// Follows local `$ref`s (`#/components/parameters/x`) within `doc`.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> Option<&'a Value> {
    for _ in 0..MAX_REF_DEPTH {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let ptr = r.strip_prefix('#')?;
                v = doc.pointer(ptr)?;
            }
            None => return Some(v),
        }
    }
    None
}

impl Spec {
    /// Loads a spec file (JSON or YAML).
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let v = read_document(path)?;
        Spec::from_value(&v, &path.display().to_string())
    }

    /// Reads a parsed spec document; `source` names it in reports.
    pub fn from_value(doc: &Value, source: &str) -> Result<Spec, SpecError> {
        let invalid = |key: &str, message: String| SpecError::Invalid {
            source_name: source.to_string(),
            issues: vec![Issue {
                key: key.to_string(),
                message,
            }],
        };
        if !doc.is_object() {
            return Err(invalid(
                ".",
                "not an OpenAPI document (not an object)".into(),
            ));
        }
        let (openapi, swagger) = match (
            doc.get("openapi").and_then(Value::as_str),
            doc.get("swagger").and_then(Value::as_str),
        ) {
            (Some(v), _) if v.starts_with("3.0") || v.starts_with("3.1") => (v.to_string(), false),
            (Some(v), _) => {
                return Err(invalid(
                    "openapi",
                    format!("unsupported version {v:?} (3.0.x and 3.1.x are read)"),
                ))
            }
            (None, Some("2.0")) => ("2.0".to_string(), true),
            (None, Some(v)) => {
                return Err(invalid(
                    "swagger",
                    format!("unsupported version {v:?} (2.0 is read)"),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "openapi",
                    "missing: not an OpenAPI 3.x or Swagger 2.0 document".into(),
                ))
            }
        };
        // Servers → host globs and base paths.
        let mut hosts = Vec::new();
        let mut bases: Vec<String> = Vec::new();
        let mut issues = Vec::new();
        if swagger {
            if let Some(h) = doc.get("host").and_then(Value::as_str) {
                let (h, _) = split_server(&format!("http://{h}"));
                if let Some(h) = h {
                    match Glob::host(&h) {
                        Ok(g) => hosts.push(g),
                        Err(e) => issues.push(Issue {
                            key: "host".into(),
                            message: e.to_string(),
                        }),
                    }
                }
            }
            bases.push(
                doc.get("basePath")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
        } else if let Some(servers) = doc.get("servers").and_then(Value::as_array) {
            let mut any_relative = false;
            for (i, s) in servers.iter().enumerate() {
                let Some(url) = s.get("url").and_then(Value::as_str) else {
                    issues.push(Issue {
                        key: format!("servers[{i}].url"),
                        message: "missing".into(),
                    });
                    continue;
                };
                let (h, base) = split_server(url);
                match h {
                    Some(h) => match Glob::host(&h) {
                        Ok(g) => {
                            if !hosts.contains(&g) {
                                hosts.push(g)
                            }
                        }
                        Err(e) => issues.push(Issue {
                            key: format!("servers[{i}].url"),
                            message: e.to_string(),
                        }),
                    },
                    None => any_relative = true,
                }
                if !bases.contains(&base) {
                    bases.push(base);
                }
            }
            if any_relative {
                // A relative server is served from wherever the document is: any host.
                hosts.clear();
            }
        }
        if bases.is_empty() {
            bases.push(String::new());
        }
        let paths = match doc.get("paths") {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                issues.push(Issue {
                    key: "paths".into(),
                    message: "must be an object".into(),
                });
                None
            }
        };
        let mut operations = Vec::new();
        let mut capped = false;
        for (p, item) in paths.into_iter().flatten() {
            if !p.starts_with('/') {
                issues.push(Issue {
                    key: format!("paths.{p}"),
                    message: "path keys start with `/`".into(),
                });
                continue;
            }
            let Some(item) = deref(doc, item).and_then(Value::as_object) else {
                issues.push(Issue {
                    key: format!("paths.{p}"),
                    message: "must be a Path Item object".into(),
                });
                continue;
            };
            let shared = item.get("parameters").and_then(Value::as_array);
            for m in METHODS {
                let Some(op) = item.get(m).and_then(Value::as_object) else {
                    continue;
                };
                for base in &bases {
                    if operations.len() >= MAX_OPERATIONS {
                        capped = true;
                        break;
                    }
                    let full = format!("{}{}", base.trim_end_matches('/'), p);
                    let segs: Vec<DeclSeg> = segments(&full).map(decl_seg).collect();
                    let mut o = Operation {
                        method: m.to_ascii_uppercase(),
                        path: full,
                        segs,
                        deprecated: op.get("deprecated").and_then(Value::as_bool) == Some(true),
                        operation_id: op
                            .get("operationId")
                            .and_then(Value::as_str)
                            .map(|s| s.chars().take(200).collect()),
                        query: BTreeSet::new(),
                        query_prefixes: Vec::new(),
                        query_any: false,
                    };
                    let own = op.get("parameters").and_then(Value::as_array);
                    for param in shared
                        .into_iter()
                        .flatten()
                        .chain(own.into_iter().flatten())
                    {
                        o.add_param(doc, param);
                    }
                    operations.push(o);
                }
            }
        }
        if capped {
            issues.push(Issue {
                key: "paths".into(),
                message: format!("more than {MAX_OPERATIONS} operations"),
            });
        }
        if !issues.is_empty() {
            return Err(SpecError::Invalid {
                source_name: source.to_string(),
                issues,
            });
        }
        let mut by_len: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, o) in operations.iter().enumerate() {
            by_len.entry(o.segs.len()).or_default().push(i);
        }
        let info = doc.get("info");
        let text = |k: &str| {
            info.and_then(|i| i.get(k))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect::<String>())
        };
        Ok(Spec {
            source: source.to_string(),
            title: text("title"),
            version: text("version"),
            openapi,
            hosts,
            operations,
            by_len,
        })
    }

    /// Whether the spec speaks for `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|g| g.matches(host))
    }

    /// The host a declared operation is reported under: the first server host, or `*`.
    pub fn host_label(&self) -> &str {
        self.hosts.first().map_or("*", Glob::as_str)
    }

    /// The best operation for (`method`, `template`): its index and literal-match score.
    fn find(&self, method: &str, template: &str) -> Option<usize> {
        let obs: Vec<&str> = segments(template).collect();
        if obs.len() > MAX_SEGMENTS {
            return None;
        }
        let cands = self.by_len.get(&obs.len())?;
        let best_for = |want: &dyn Fn(&Operation) -> bool| {
            cands
                .iter()
                .filter(|&&i| want(&self.operations[i]))
                .filter_map(|&i| score(&self.operations[i].segs, &obs).map(|s| (s, i)))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, i)| i)
        };
        if let Some(i) = best_for(&|o: &Operation| o.method == method) {
            return Some(i);
        }
        match method {
            "HEAD" => best_for(&|o: &Operation| o.method == "GET"),
            "OPTIONS" => best_for(&|_| true),
            _ => None,
        }
    }
}

impl Operation {
    fn add_param(&mut self, doc: &Value, p: &Value) {
        let Some(p) = deref(doc, p) else {
            return;
        };
        if p.get("in").and_then(Value::as_str) != Some("query") {
            return;
        }
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            return;
        };
        let schema = p.get("schema").and_then(|s| deref(doc, s));
        let is_object = schema.and_then(|s| s.get("type")).is_some_and(|t| {
            t == "object" || t.as_array().is_some_and(|a| a.contains(&json!("object")))
        });
        match p.get("style").and_then(Value::as_str) {
            Some("deepObject") if self.query_prefixes.len() < MAX_PARAMS => {
                self.query_prefixes.push(format!("{name}["));
            }
            None | Some("form") if is_object && p.get("explode") != Some(&Value::Bool(false)) => {
                self.query_any = true
            }
            _ => {}
        }
        if self.query.len() < MAX_PARAMS {
            self.query.insert(name.to_string());
        }
    }

    fn declares(&self, name: &str) -> bool {
        self.query_any
            || self.query.contains(name)
            || self
                .query_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// Literal matches of a declared path against observed segments, earliest first as the most
/// significant bits; `None` when the shapes differ.
fn score(decl: &[DeclSeg], obs: &[&str]) -> Option<u64> {
    if decl.len() != obs.len() {
        return None;
    }
    let mut s = 0u64;
    for (i, (d, o)) in decl.iter().zip(obs).enumerate() {
        let lit = match d {
            DeclSeg::Lit(l) => {
                if l != o {
                    return None;
                }
                true
            }
            DeclSeg::Param => false,
            DeclSeg::Pattern(p) => {
                if !is_placeholder(o) && !segment_matches(p.as_bytes(), o.as_bytes()) {
                    return None;
                }
                false
            }
        };
        if lit && i < 64 {
            s |= 1 << (63 - i);
        }
    }
    Some(s)
}

/// The version number of a `v<N>` segment.
fn version_of(seg: &str) -> Option<u32> {
    let d = seg.strip_prefix('v').or_else(|| seg.strip_prefix('V'))?;
    if d.is_empty() || d.len() > 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

/// An observed endpoint, as the inventory knows it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Host.
    pub host: String,
    /// Method.
    pub method: String,
    /// Template.
    pub template: String,
    /// Query parameter names seen.
    pub query_params: BTreeSet<String>,
    /// Exchanges.
    pub count: u64,
    /// First exchange, µs since the epoch.
    pub first_seen_us: i64,
    /// Last exchange, µs since the epoch.
    pub last_seen_us: i64,
}

/// Kinds of drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Seen, not declared.
    Shadow,
    /// Seen on a deprecated operation or an old version.
    Zombie,
    /// Query parameters seen that the operation does not declare.
    UndeclaredParameter,
    /// Declared, never seen.
    Unused,
}

/// One drift item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// What kind.
    pub kind: DriftKind,
    /// Observed host (for unused: the spec's host, or `*`).
    pub host: String,
    /// Method.
    pub method: String,
    /// Observed template (for unused: the declared path).
    pub template: String,
    /// The spec involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// The declared path involved (zombie, undeclared parameter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_path: Option<String>,
    /// The operation's `operationId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Why: `deprecated`, `newer_version_declared`, `host_not_declared`, `not_declared`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Undeclared parameter names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Exchanges on the endpoint.
    pub count: u64,
    /// First exchange, µs (0 for unused).
    #[serde(skip)]
    pub first_seen_us: i64,
    /// Last exchange, µs (0 for unused).
    #[serde(skip)]
    pub last_seen_us: i64,
}

/// What [`drift`] and [`diff`] found.
#[derive(Clone, Debug, Default)]
pub struct DiffReport {
    /// Observed endpoints considered.
    pub observed: usize,
    /// Declared operations.
    pub declared: usize,
    /// Observed endpoints that matched a declared operation.
    pub matched: usize,
    /// Drift, sorted by kind, host, template, method.
    pub items: Vec<Drift>,
    /// Hosts observed that no spec covers (not drift unless configured so).
    pub hosts_without_spec: BTreeSet<String>,
}

impl DiffReport {
    /// Items of one kind.
    pub fn of(&self, kind: DriftKind) -> impl Iterator<Item = &Drift> {
        self.items.iter().filter(move |d| d.kind == kind)
    }

    /// Whether anything should fail a CI gate: shadow, zombie or undeclared parameters.
    pub fn has_drift(&self) -> bool {
        self.items.iter().any(|d| d.kind != DriftKind::Unused)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let count = |k| self.of(k).count();
        json!({
            "drift": self.has_drift(),
            "observed": self.observed,
            "declared": self.declared,
            "matched": self.matched,
            "counts": {
                "shadow": count(DriftKind::Shadow),
                "zombie": count(DriftKind::Zombie),
                "undeclared_parameter": count(DriftKind::UndeclaredParameter),
                "unused": count(DriftKind::Unused),
            },
            "items": self.items,
            "hosts_without_spec": self.hosts_without_spec,
        })
    }

    /// The report as text, one line per item, for a terminal or CI log.
    pub fn render(&self) -> String {
        let mut out = String::new();
        use std::fmt::Write;
        for d in &self.items {
            let _ = write!(
                out,
                "{:<21} {} {} {}",
                kind_name(d.kind),
                d.host,
                d.method,
                d.template
            );
            if let Some(p) = &d.declared_path {
                if *p != d.template {
                    let _ = write!(out, " (declared {p})");
                }
            }
            if let Some(r) = d.reason {
                let _ = write!(out, " [{r}]");
            }
            if !d.params.is_empty() {
                let _ = write!(out, " params: {}", d.params.join(", "));
            }
            if d.kind != DriftKind::Unused {
                let _ = write!(out, " ({} exchanges)", d.count);
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} observed endpoints, {} declared operations, {} matched; shadow {}, zombie {}, \
             undeclared parameters {}, unused {}: {}",
            self.observed,
            self.declared,
            self.matched,
            self.of(DriftKind::Shadow).count(),
            self.of(DriftKind::Zombie).count(),
            self.of(DriftKind::UndeclaredParameter).count(),
            self.of(DriftKind::Unused).count(),
            if self.has_drift() {
                "DRIFT"
            } else {
                "no drift"
            }
        );
        if !self.hosts_without_spec.is_empty() {
            let _ = writeln!(
                out,
                "hosts no spec covers (not checked): {}",
                self.hosts_without_spec
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out
    }
}

fn kind_name(k: DriftKind) -> &'static str {
    match k {
        DriftKind::Shadow => "shadow",
        DriftKind::Zombie => "zombie",
        DriftKind::UndeclaredParameter => "undeclared_parameter",
        DriftKind::Unused => "unused",
    }
}

/// Compares observed endpoints with declared specs (see the module doc).
pub fn drift(specs: &[Spec], observed: &[Observed], shadow_hosts_without_spec: bool) -> DiffReport {
    let mut rep = DiffReport {
        declared: specs.iter().map(|s| s.operations.len()).sum(),
        ..DiffReport::default()
    };
    let mut used: Vec<Vec<bool>> = specs
        .iter()
        .map(|s| vec![false; s.operations.len()])
        .collect();
    for o in observed {
        rep.observed += 1;
        let covering: Vec<usize> = (0..specs.len())
            .filter(|&i| specs[i].covers(&o.host))
            .collect();
        let item = |kind, spec: Option<&Spec>, op: Option<&Operation>, reason, params| Drift {
            kind,
            host: o.host.clone(),
            method: o.method.clone(),
            template: o.template.clone(),
            spec: spec.map(|s| s.source.clone()),
            declared_path: op.map(|op| op.path.clone()),
            operation_id: op.and_then(|op| op.operation_id.clone()),
            reason,
            params,
            count: o.count,
            first_seen_us: o.first_seen_us,
            last_seen_us: o.last_seen_us,
        };
        if covering.is_empty() {
            if shadow_hosts_without_spec && !specs.is_empty() {
                rep.items.push(item(
                    DriftKind::Shadow,
                    None,
                    None,
                    Some("host_not_declared"),
                    Vec::new(),
                ));
            } else {
                rep.hosts_without_spec.insert(o.host.clone());
            }
            continue;
        }
        // The best match over all covering specs: most literal segments.
        let found = covering
            .iter()
            .filter_map(|&si| {
                let oi = specs[si].find(&o.method, &o.template)?;
                let obs: Vec<&str> = segments(&o.template).collect();
                let s = score(&specs[si].operations[oi].segs, &obs)?;
                Some((s, si, oi))
            })
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        if let Some((_, si, oi)) = found {
            rep.matched += 1;
            used[si][oi] = true;
            let (spec, op) = (&specs[si], &specs[si].operations[oi]);
            if op.deprecated {
                rep.items.push(item(
                    DriftKind::Zombie,
                    Some(spec),
                    Some(op),
                    Some("deprecated"),
                    Vec::new(),
                ));
            }
            // HEAD/OPTIONS borrow another method's operation: their parameters are not its.
            if op.method == o.method {
                let extra: Vec<String> = o
                    .query_params
                    .iter()
                    .filter(|p| !op.declares(p))
                    .take(MAX_PARAMS)
                    .cloned()
                    .collect();
                if !extra.is_empty() {
                    rep.items.push(item(
                        DriftKind::UndeclaredParameter,
                        Some(spec),
                        Some(op),
                        None,
                        extra,
                    ));
                }
            }
            continue;
        }
        if let Some((si, oi)) = newer_version(specs, &covering, o) {
            rep.items.push(item(
                DriftKind::Zombie,
                Some(&specs[si]),
                Some(&specs[si].operations[oi]),
                Some("newer_version_declared"),
                Vec::new(),
            ));
            continue;
        }
        rep.items.push(item(
            DriftKind::Shadow,
            covering.first().map(|&i| &specs[i]),
            None,
            Some("not_declared"),
            Vec::new(),
        ));
    }
    for (si, spec) in specs.iter().enumerate() {
        for (oi, op) in spec.operations.iter().enumerate() {
            if used[si][oi] {
                continue;
            }
            rep.items.push(Drift {
                kind: DriftKind::Unused,
                host: spec.host_label().to_string(),
                method: op.method.clone(),
                template: op.path.clone(),
                spec: Some(spec.source.clone()),
                declared_path: Some(op.path.clone()),
                operation_id: op.operation_id.clone(),
                reason: if op.deprecated {
                    Some("deprecated")
                } else {
                    None
                },
                params: Vec::new(),
                count: 0,
                first_seen_us: 0,
                last_seen_us: 0,
            });
        }
    }
    rep.items.sort_by(|a, b| {
        (a.kind, &a.host, &a.template, &a.method).cmp(&(b.kind, &b.host, &b.template, &b.method))
    });
    rep
}

/// A declared operation that is `o` at a higher `v<N>` version, if any.
fn newer_version(specs: &[Spec], covering: &[usize], o: &Observed) -> Option<(usize, usize)> {
    let obs: Vec<&str> = segments(&o.template).collect();
    let (vi, seen) = obs
        .iter()
        .enumerate()
        .find_map(|(i, s)| version_of(s).map(|v| (i, v)))?;
    let mut best: Option<(u32, usize, usize)> = None;
    for &si in covering {
        let Some(cands) = specs[si].by_len.get(&obs.len()) else {
            continue;
        };
        for &oi in cands {
            let op = &specs[si].operations[oi];
            if op.method != o.method {
                continue;
            }
            let Some(DeclSeg::Lit(l)) = op.segs.get(vi) else {
                continue;
            };
            let Some(v) = version_of(l) else {
                continue;
            };
            if v <= seen {
                continue;
            }
            let mut probe = obs.clone();
            probe[vi] = l;
            if score(&op.segs, &probe).is_some() && best.is_none_or(|(bv, _, _)| v > bv) {
                best = Some((v, si, oi));
            }
        }
    }
    best.map(|(_, si, oi)| (si, oi))
}

/// Reads the endpoints of an inventory file (`--inventory`) as [`Observed`].
pub fn read_inventory(path: &Path) -> Result<Vec<Observed>, SpecError> {
    let err = |message: String| SpecError::Inventory {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let eps = doc
        .get("endpoints")
        .and_then(Value::as_array)
        .ok_or_else(|| err("no `endpoints` array: not an apitap inventory".into()))?;
    let mut out = Vec::with_capacity(eps.len());
    for (i, e) in eps.iter().enumerate() {
        let s = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| err(format!("endpoints[{i}].{k}: missing or not a string")))
        };
        let ts = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64)
        };
        out.push(Observed {
            host: s("host")?,
            method: s("method")?,
            template: s("template")?,
            query_params: e
                .get("query_params")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            count: e.get("count").and_then(Value::as_u64).unwrap_or(0),
            first_seen_us: ts("first_seen"),
            last_seen_us: ts("last_seen"),
        });
    }
    Ok(out)
}

/// `apitap diff --spec FILE… --inventory FILE`: the drift between declared specs and an
/// inventory file. The caller exits non-zero when [`DiffReport::has_drift`].
pub fn diff(spec_paths: &[PathBuf], inventory_json_path: &Path) -> Result<DiffReport, SpecError> {
    let specs = spec_paths
        .iter()
        .map(|p| Spec::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let observed = read_inventory(inventory_json_path)?;
    Ok(drift(&specs, &observed, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(doc: Value) -> Spec {
        Spec::from_value(&doc, "test.yaml").unwrap()
    }

    fn obs(host: &str, method: &str, template: &str, params: &[&str]) -> Observed {
        Observed {
            host: host.into(),
            method: method.into(),
            template: template.into(),
            query_params: params.iter().map(|s| s.to_string()).collect(),
            count: 5,
            ..Observed::default()
        }
    }

    fn shop() -> Spec {
        spec(json!({
            "openapi": "3.1.0",
            "info": {"title": "shop", "version": "2"},
            "servers": [{"url": "https://shop.example.test/api"}],
            "components": {"parameters": {"page": {"name": "page", "in": "query"}}},
            "paths": {
                "/v1/users/{userId}": {"get": {"deprecated": true}},
                "/v2/users/{userId}": {
                    "parameters": [{"$ref": "#/components/parameters/page"}],
                    "get": {"operationId": "getUser",
                            "parameters": [{"name": "fields", "in": "query"},
                                           {"name": "id", "in": "path", "required": true}]},
                    "delete": {}
                },
                "/v2/users/me": {"get": {}},
                "/v2/orders": {"get": {"parameters": [
                    {"name": "filter", "in": "query", "style": "deepObject",
                     "schema": {"type": "object"}}]}},
                "/v2/search": {"get": {"parameters": [
                    {"name": "q", "in": "query", "schema": {"type": "object"}}]}},
                "/v2/files/{name}.json": {"get": {}},
            }
        }))
    }

    #[test]
    fn servers_give_hosts_and_base_paths() {
        let s = shop();
        assert!(s.covers("shop.example.test"));
        assert!(!s.covers("other.example.test"));
        assert_eq!(s.host_label(), "shop.example.test");
        assert!(s
            .operations
            .iter()
            .any(|o| o.path == "/api/v2/users/{userId}"));
        let rel = spec(json!({"openapi": "3.0.3", "servers": [{"url": "/v1"}], "paths": {}}));
        assert!(rel.covers("anything.example"));
        let vars = spec(json!({"openapi": "3.0.3",
            "servers": [{"url": "https://{region}.api.example.com:443/"}], "paths": {}}));
        assert!(vars.covers("eu.api.example.com"));
        assert!(!vars.covers("api.example.com"));
        let sw = spec(json!({"swagger": "2.0", "host": "legacy.example.test:80",
            "basePath": "/api", "paths": {"/x": {"get": {}}}}));
        assert!(sw.covers("legacy.example.test"));
        assert_eq!(sw.operations[0].path, "/api/x");
    }

    #[test]
    fn templates_match_by_shape_and_literals_first() {
        let s = shop();
        let f = |m: &str, t: &str| s.find(m, t).map(|i| s.operations[i].path.as_str());
        assert_eq!(
            f("GET", "/api/v2/users/{id}"),
            Some("/api/v2/users/{userId}")
        );
        assert_eq!(f("GET", "/api/v2/users/42"), Some("/api/v2/users/{userId}"));
        assert_eq!(f("GET", "/api/v2/users/me"), Some("/api/v2/users/me"));
        assert_eq!(
            f("DELETE", "/api/v2/users/me"),
            Some("/api/v2/users/{userId}")
        );
        assert_eq!(
            f("HEAD", "/api/v2/users/{id}"),
            Some("/api/v2/users/{userId}")
        );
        assert_eq!(f("OPTIONS", "/api/v2/orders"), Some("/api/v2/orders"));
        assert_eq!(f("PUT", "/api/v2/users/{id}"), None);
        assert_eq!(f("GET", "/api/v2/users/{id}/orders"), None);
        assert_eq!(
            f("GET", "/api/v2/files/a1.json"),
            Some("/api/v2/files/{name}.json")
        );
        assert_eq!(
            f("GET", "/api/v2/files/{file}"),
            Some("/api/v2/files/{name}.json")
        );
        assert_eq!(f("GET", "/api/v2/files/a1.xml"), None);
        assert_eq!(f("GET", "/api/v2/{param}/me"), None);
    }

    #[test]
    fn drift_kinds() {
        let s = shop();
        let observed = vec![
            obs("shop.example.test", "GET", "/api/v1/users/{id}", &[]),
            obs("shop.example.test", "GET", "/api/v1/orders", &[]),
            obs(
                "shop.example.test",
                "GET",
                "/api/v2/users/{id}",
                &["page", "fields", "debug"],
            ),
            obs(
                "shop.example.test",
                "GET",
                "/api/v2/orders",
                &["filter[status]", "sort"],
            ),
            obs(
                "shop.example.test",
                "GET",
                "/api/v2/search",
                &["q", "anything"],
            ),
            obs("shop.example.test", "POST", "/api/v2/export", &[]),
            obs("other.example.test", "GET", "/x", &[]),
        ];
        let r = drift(&[s], &observed, false);
        let of = |k| {
            r.of(k)
                .map(|d| format!("{} {}", d.method, d.template))
                .collect::<Vec<_>>()
        };
        // v1/users is declared deprecated; v1/orders is not declared but v2/orders is: an old
        // version still answering.
        assert_eq!(
            of(DriftKind::Zombie),
            ["GET /api/v1/orders", "GET /api/v1/users/{id}"]
        );
        let reasons: Vec<_> = r.of(DriftKind::Zombie).map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            [Some("newer_version_declared"), Some("deprecated")]
        );
        assert_eq!(
            of(DriftKind::Shadow),
            ["POST /api/v2/export"],
            "{:#?}",
            r.items
        );
        let undeclared: Vec<_> = r.of(DriftKind::UndeclaredParameter).collect();
        assert_eq!(undeclared.len(), 2);
        assert_eq!(undeclared[0].params, ["sort"]);
        assert_eq!(undeclared[1].params, ["debug"]);
        assert_eq!(undeclared[1].operation_id.as_deref(), Some("getUser"));
        let unused = of(DriftKind::Unused);
        assert!(unused.contains(&"GET /api/v2/users/me".to_string()));
        assert!(unused.contains(&"DELETE /api/v2/users/{userId}".to_string()));
        assert!(unused.contains(&"GET /api/v2/files/{name}.json".to_string()));
        assert!(!unused.contains(&"GET /api/v1/users/{userId}".to_string()));
        assert_eq!(r.hosts_without_spec.len(), 1);
        assert!(r.has_drift());
        assert_eq!(r.matched, 4);
        let v1orders = r
            .items
            .iter()
            .find(|d| d.template == "/api/v1/orders")
            .unwrap();
        assert_eq!(v1orders.kind, DriftKind::Zombie);
        assert_eq!(v1orders.reason, Some("newer_version_declared"));
        assert_eq!(v1orders.declared_path.as_deref(), Some("/api/v2/orders"));
    }

    #[test]
    fn no_drift_when_everything_is_declared() {
        let s = spec(json!({"openapi": "3.0.0", "paths": {"/a/{x}": {"get": {}}}}));
        let r = drift(&[s], &[obs("h", "GET", "/a/{id}", &[])], false);
        assert!(!r.has_drift());
        assert_eq!(r.items.len(), 0);
        let r = drift(&[], &[obs("h", "GET", "/a", &[])], true);
        assert!(!r.has_drift(), "no spec at all is no drift");
    }

    #[test]
    fn bad_specs_are_refused_with_key_paths() {
        let e = Spec::from_value(&json!({"openapi": "2.5"}), "x").unwrap_err();
        assert!(e.to_string().contains("openapi"), "{e}");
        let e = Spec::from_value(&json!({"info": {}}), "x").unwrap_err();
        assert!(e.to_string().contains("openapi: missing"), "{e}");
        let e =
            Spec::from_value(&json!({"openapi": "3.1.0", "paths": {"x": {}}}), "x").unwrap_err();
        assert!(e.to_string().contains("paths.x"), "{e}");
        let e = Spec::from_value(&json!([1]), "x").unwrap_err();
        assert!(e.to_string().contains("not an object"), "{e}");
    }

    #[test]
    fn refs_are_bounded() {
        let doc = json!({"a": {"$ref": "#/b"}, "b": {"$ref": "#/a"}});
        assert!(deref(&doc, &doc["a"]).is_none());
        assert_eq!(deref(&doc, &json!({"x": 1})), Some(&json!({"x": 1})));
    }
}
