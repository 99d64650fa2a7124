//! Findings: the risk rules over exchanges and the inventory, each with an id, a severity, an
//! OWASP API Security Top 10 (2023) category and redacted evidence; deduplicated per
//! (endpoint, rule) with first/last seen and counts; and the per-endpoint risk score.
//!
//! Owns the rule catalogue ([`Rule`], documented in `docs/findings.md`), the evaluation of the
//! rules (per exchange in [`Findings::observe`], per endpoint in
//! [`Findings::evaluate_inventory`]), the finding records and their events, and [`risk`].
//!
//! # Evidence
//! Evidence is structure only: sensitive *types*, header, parameter and field *names*,
//! signature names (`php_stack_trace`), status codes, counts, lifetimes. Never a value seen
//! in traffic — with one deliberate exception: `server_banner` keeps the product tokens of
//! `Server`/`X-Powered-By` (`Apache/2.4.49`), which the server announces to anyone and which
//! are the point of the finding; only tokens of the strict shape `name/version` are kept.
//! Every evidence set is capped at [`MAX_EVIDENCE_VALUES`] values of at most
//! [`MAX_EVIDENCE_CHARS`] characters (counted in [`FindingsStats::evidence_dropped`]).
//!
//! # Sources
//! - Cleartext: the sensor only parses plain HTTP, so an exchange it saw travelled in clear on
//!   the wire it saw, unless a TLS-terminating proxy in front says otherwise
//!   (`X-Forwarded-Proto: https`, RFC 7239 `Forwarded: proto=https`, …; honoured by default,
//!   policy `settings.trust_forwarded_proto`).
//! - JWTs: RFC 7519 claims as decoded by [`crate::infer::auth`] (signatures are not checked).
//! - CORS: the Fetch standard's CORS protocol (`Access-Control-Allow-Origin`,
//!   `Access-Control-Allow-Credentials`).
//! - Security headers: the OWASP REST Security Cheat Sheet list; HSTS (RFC 6797) only where the
//!   client leg was encrypted (§8.1: ignored over plain HTTP).
//!
//! # Dedup and merging
//! One record per (endpoint, rule). [`Findings::observe`] returns an event the first time a
//! record is created (so once per endpoint and rule for this instance); with several workers,
//! each keeps its own [`Findings`] (see [`Findings::fork`]) and the events should pass the
//! run's shared first-announcement filter keyed by the event `id` (stable across runs:
//! a hash of host, method, template and rule). [`Findings::merge`] folds workers together and
//! [`Findings::compact`] re-templates records whose endpoint template was learnt later, as the
//! inventory does.
use crate::infer::auth::AuthKind;
use crate::infer::body::{self, BodyLimits, BodyStats};
use crate::infer::sensitive::{Location, SensitiveType};
use crate::infer::template::Templater;
use crate::inspect::Insights;
use crate::inventory::{EndpointKey, EndpointStats, Inventory};
use crate::observation::rfc3339;
use crate::owners::{Owner, Owners};
use crate::policy::{Condition, Policy};
use crate::spec::{self, DriftKind, Spec};
use apitap_parsers::{Exchange, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// Keys come from packet data: a keyed (per-process random seed) fast hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Values kept per evidence set.
pub const MAX_EVIDENCE_VALUES: usize = 16;
/// Characters kept per evidence value.
pub const MAX_EVIDENCE_CHARS: usize = 128;
/// Endpoints with finding records per [`Findings`] (the inventory caps endpoints at 20 000
/// per worker; records of further endpoints are counted in
/// [`FindingsStats::endpoints_dropped`]).
pub const MAX_ENDPOINTS: usize = 50_000;
/// Hosts whose echoed CORS origins are remembered.
const MAX_CORS_HOSTS: usize = 4096;
/// Distinct echoed origins remembered per host (two suffice to call it reflection).
const MAX_ORIGINS_PER_HOST: usize = 8;
/// Decoded response-body bytes searched for stack traces (errors are short; traces start
/// early).
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// How bad a finding is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    #[default]
    Info,
    /// Hardening.
    Low,
    /// Fix in the normal course.
    Medium,
    /// Fix soon.
    High,
    /// Fix now.
    Critical,
}

impl Severity {
    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// OCSF `severity_id` (1 Informational … 5 Critical).
    pub fn ocsf_id(self) -> u8 {
        match self {
            Severity::Info => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    /// OCSF `severity` caption.
    pub fn ocsf_caption(self) -> &'static str {
        match self {
            Severity::Info => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// Risk score of an alert of this severity, as Elastic detection rules set
    /// `event.risk_score` (21 low, 47 medium, 73 high, 99 critical).
    pub fn risk_score(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }

    fn weight(self) -> u32 {
        match self {
            Severity::Info => 0,
            Severity::Low => 2,
            Severity::Medium => 6,
            Severity::High => 12,
            Severity::Critical => 20,
        }
    }
}

/// The OWASP API Security Top 10 (2023) category names.
pub fn owasp_name(category: &str) -> Option<&'static str> {
    Some(match category {
        "API1:2023" => "Broken Object Level Authorization",
        "API2:2023" => "Broken Authentication",
        "API3:2023" => "Broken Object Property Level Authorization",
        "API4:2023" => "Unrestricted Resource Consumption",
        "API5:2023" => "Broken Function Level Authorization",
        "API6:2023" => "Unrestricted Access to Sensitive Business Flows",
        "API7:2023" => "Server Side Request Forgery",
        "API8:2023" => "Security Misconfiguration",
        "API9:2023" => "Improper Inventory Management",
        "API10:2023" => "Unsafe Consumption of APIs",
        _ => return None,
    })
}

/// The built-in rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A 2xx response with personal or secret data to a request without credentials.
    UnauthSensitiveData,
    /// One response body holding many sensitive types.
    ExcessiveDataExposure,
    /// A credential in the query string.
    CredentialsInQuery,
    /// `Authorization: Basic` over plain HTTP.
    CleartextBasicAuth,
    /// A bearer token in `Authorization` over plain HTTP.
    CleartextBearer,
    /// A JWT with `alg: none`.
    JwtAlgNone,
    /// A JWT without `exp`.
    JwtNoExp,
    /// A JWT living longer than the policy allows.
    JwtLongLifetime,
    /// A stack trace or database error in a 4xx/5xx body.
    VerboseError,
    /// CORS that lets any origin read credentialed responses.
    PermissiveCors,
    /// Response headers of the OWASP REST list missing.
    MissingSecurityHeaders,
    /// `Server`/`X-Powered-By` announcing product versions.
    ServerBanner,
    /// An admin/internal-looking endpoint answering 2xx without credentials.
    AdminEndpointExposed,
    /// Seen, not in any declared spec.
    ShadowEndpoint,
    /// Deprecated operation or old version still receiving traffic.
    ZombieEndpoint,
    /// Declared, never seen.
    UnusedEndpoint,
    /// Query parameters the declared operation does not list.
    UndeclaredParameter,
    /// No owner in the ownership map.
    UnownedEndpoint,
}

impl Rule {
    /// Every built-in rule.
    pub const ALL: [Rule; 18] = [
        Rule::UnauthSensitiveData,
        Rule::ExcessiveDataExposure,
        Rule::CredentialsInQuery,
        Rule::CleartextBasicAuth,
        Rule::CleartextBearer,
        Rule::JwtAlgNone,
        Rule::JwtNoExp,
        Rule::JwtLongLifetime,
        Rule::VerboseError,
        Rule::PermissiveCors,
        Rule::MissingSecurityHeaders,
        Rule::ServerBanner,
        Rule::AdminEndpointExposed,
        Rule::ShadowEndpoint,
        Rule::ZombieEndpoint,
        Rule::UnusedEndpoint,
        Rule::UndeclaredParameter,
        Rule::UnownedEndpoint,
    ];

    /// The rule id.
    pub fn id(self) -> &'static str {
        match self {
            Rule::UnauthSensitiveData => "unauth_sensitive_data",
            Rule::ExcessiveDataExposure => "excessive_data_exposure",
            Rule::CredentialsInQuery => "credentials_in_query",
            Rule::CleartextBasicAuth => "cleartext_basic_auth",
            Rule::CleartextBearer => "cleartext_bearer",
            Rule::JwtAlgNone => "jwt_alg_none",
            Rule::JwtNoExp => "jwt_no_exp",
            Rule::JwtLongLifetime => "jwt_long_lifetime",
            Rule::VerboseError => "verbose_error",
            Rule::PermissiveCors => "permissive_cors",
            Rule::MissingSecurityHeaders => "missing_security_headers",
            Rule::ServerBanner => "server_banner",
            Rule::AdminEndpointExposed => "admin_endpoint_exposed",
            Rule::ShadowEndpoint => "shadow_endpoint",
            Rule::ZombieEndpoint => "zombie_endpoint",
            Rule::UnusedEndpoint => "unused_endpoint",
            Rule::UndeclaredParameter => "undeclared_parameter",
            Rule::UnownedEndpoint => "unowned_endpoint",
        }
    }

    /// The rule of an id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Default severity.
    pub fn severity(self) -> Severity {
        use Severity::*;
        match self {
            Rule::UnauthSensitiveData => High,
            Rule::ExcessiveDataExposure => Medium,
            Rule::CredentialsInQuery => High,
            Rule::CleartextBasicAuth => High,
            Rule::CleartextBearer => Medium,
            Rule::JwtAlgNone => Critical,
            Rule::JwtNoExp => Medium,
            Rule::JwtLongLifetime => Medium,
            Rule::VerboseError => Medium,
            Rule::PermissiveCors => Medium,
            Rule::MissingSecurityHeaders => Low,
            Rule::ServerBanner => Low,
            Rule::AdminEndpointExposed => High,
            Rule::ShadowEndpoint => Medium,
            Rule::ZombieEndpoint => Medium,
            Rule::UnusedEndpoint => Info,
            Rule::UndeclaredParameter => Low,
            Rule::UnownedEndpoint => Low,
        }
    }

    /// OWASP API Security Top 10 (2023) category.
    pub fn owasp(self) -> &'static str {
        match self {
            Rule::UnauthSensitiveData | Rule::ExcessiveDataExposure => "API3:2023",
            Rule::CredentialsInQuery
            | Rule::CleartextBasicAuth
            | Rule::CleartextBearer
            | Rule::JwtAlgNone
            | Rule::JwtNoExp
            | Rule::JwtLongLifetime => "API2:2023",
            Rule::VerboseError
            | Rule::PermissiveCors
            | Rule::MissingSecurityHeaders
            | Rule::ServerBanner => "API8:2023",
            Rule::AdminEndpointExposed => "API5:2023",
            Rule::ShadowEndpoint
            | Rule::ZombieEndpoint
            | Rule::UnusedEndpoint
            | Rule::UndeclaredParameter
            | Rule::UnownedEndpoint => "API9:2023",
        }
    }

    /// The closest CWE, when there is one.
    pub fn cwe(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Rule::UnauthSensitiveData => {
                ("CWE-306", "Missing Authentication for Critical Function")
            }
            Rule::ExcessiveDataExposure => (
                "CWE-213",
                "Exposure of Sensitive Information Due to Incompatible Policies",
            ),
            Rule::CredentialsInQuery => (
                "CWE-598",
                "Use of GET Request Method With Sensitive Query Strings",
            ),
            Rule::CleartextBasicAuth | Rule::CleartextBearer => {
                ("CWE-319", "Cleartext Transmission of Sensitive Information")
            }
            Rule::JwtAlgNone => (
                "CWE-347",
                "Improper Verification of Cryptographic Signature",
            ),
            Rule::JwtNoExp | Rule::JwtLongLifetime => {
                ("CWE-613", "Insufficient Session Expiration")
            }
            Rule::VerboseError => (
                "CWE-209",
                "Generation of Error Message Containing Sensitive Information",
            ),
            Rule::PermissiveCors => (
                "CWE-942",
                "Permissive Cross-domain Policy with Untrusted Domains",
            ),
            Rule::MissingSecurityHeaders => ("CWE-693", "Protection Mechanism Failure"),
            Rule::ServerBanner => (
                "CWE-497",
                "Exposure of Sensitive System Information to an Unauthorized Control Sphere",
            ),
            Rule::AdminEndpointExposed => ("CWE-285", "Improper Authorization"),
            _ => return None,
        })
    }

    /// One-line title.
    pub fn title(self) -> &'static str {
        match self {
            Rule::UnauthSensitiveData => "Sensitive data served without authentication",
            Rule::ExcessiveDataExposure => "Excessive data exposure in one response",
            Rule::CredentialsInQuery => "Credential in the URL query string",
            Rule::CleartextBasicAuth => "Basic credentials over cleartext HTTP",
            Rule::CleartextBearer => "Bearer token over cleartext HTTP",
            Rule::JwtAlgNone => "Unsigned JWT (alg: none) accepted",
            Rule::JwtNoExp => "JWT without expiry",
            Rule::JwtLongLifetime => "JWT with a very long lifetime",
            Rule::VerboseError => "Stack trace or internal error in an error response",
            Rule::PermissiveCors => "CORS lets any origin read credentialed responses",
            Rule::MissingSecurityHeaders => "Security response headers missing",
            Rule::ServerBanner => "Server software versions announced",
            Rule::AdminEndpointExposed => "Admin/internal endpoint reachable without credentials",
            Rule::ShadowEndpoint => "Shadow endpoint: not in any declared spec",
            Rule::ZombieEndpoint => "Zombie endpoint: deprecated or old version still in use",
            Rule::UnusedEndpoint => "Declared operation never observed",
            Rule::UndeclaredParameter => "Query parameters not declared in the spec",
            Rule::UnownedEndpoint => "Endpoint without an owner",
        }
    }

    /// What to do about it.
    pub fn remediation(self) -> &'static str {
        match self {
            Rule::UnauthSensitiveData => {
                "Require authentication and object-level authorization for this endpoint, or \
                 stop returning personal and secret fields to anonymous callers."
            }
            Rule::ExcessiveDataExposure => {
                "Return only the properties the client needs (response schemas, field \
                 allow-lists); never rely on the client to filter."
            }
            Rule::CredentialsInQuery => {
                "Send credentials in the Authorization header or a header API key: query \
                 strings end up in logs, proxies, browser history and Referer headers."
            }
            Rule::CleartextBasicAuth | Rule::CleartextBearer => {
                "Serve the API over TLS only (and redirect or refuse plain HTTP); rotate \
                 credentials that travelled in clear."
            }
            Rule::JwtAlgNone => {
                "Reject unsigned tokens: pin the accepted algorithms in the token validator."
            }
            Rule::JwtNoExp | Rule::JwtLongLifetime => {
                "Issue short-lived access tokens (minutes to hours) with `exp`, and refresh \
                 tokens for longer sessions."
            }
            Rule::VerboseError => {
                "Return terse error bodies; log stack traces and database errors server-side \
                 only (turn off debug modes in production)."
            }
            Rule::PermissiveCors => {
                "Answer credentialed CORS requests only for an allow-list of origins; never \
                 echo the request's Origin or `null` with Allow-Credentials."
            }
            Rule::MissingSecurityHeaders => {
                "Add Cache-Control: no-store, Content-Security-Policy: frame-ancestors 'none', \
                 X-Content-Type-Options: nosniff, X-Frame-Options: DENY and (over HTTPS) \
                 Strict-Transport-Security to API responses."
            }
            Rule::ServerBanner => {
                "Remove version numbers from Server and X-Powered-By (or the headers \
                 altogether) and keep the software patched."
            }
            Rule::AdminEndpointExposed => {
                "Require authentication and an admin role for admin and internal endpoints, and \
                 keep them off public listeners."
            }
            Rule::ShadowEndpoint => {
                "Document the endpoint in the API's spec with an owner, or retire it."
            }
            Rule::ZombieEndpoint => {
                "Migrate the remaining callers to the current version, then retire the old \
                 operation."
            }
            Rule::UnusedEndpoint => {
                "Check whether the operation is still needed; remove it from the spec and the \
                 service if not."
            }
            Rule::UndeclaredParameter => {
                "Declare the parameters in the spec, or reject unknown parameters at the gateway."
            }
            Rule::UnownedEndpoint => "Add the endpoint's host or path to the ownership map.",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records.

/// A rule of the policy: built-in, or custom by its index in the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum RuleRef {
    Builtin(Rule),
    Custom(u16),
}

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Set(BTreeSet<String>),
    Max(i64),
}

/// Evidence of one record: named sets and maxima, merged over exchanges.
#[derive(Clone, Debug, Default, PartialEq)]
struct Evidence {
    items: Vec<(&'static str, Ev)>,
    dropped: u64,
}

impl Evidence {
    fn add(&mut self, key: &'static str, v: &str) {
        let i = match self.items.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.items.push((key, Ev::Set(BTreeSet::new())));
                self.items.len() - 1
            }
        };
        if let Ev::Set(s) = &mut self.items[i].1 {
            // A char is at least a byte: most values are shorter and skip the count.
            let v = if v.len() > MAX_EVIDENCE_CHARS && v.chars().count() > MAX_EVIDENCE_CHARS {
                Cow::Owned(v.chars().take(MAX_EVIDENCE_CHARS).collect())
            } else {
                Cow::Borrowed(v)
            };
            if s.contains(v.as_ref()) {
                return;
            }
            if s.len() >= MAX_EVIDENCE_VALUES {
                self.dropped += 1;
                return;
            }
            s.insert(v.into_owned());
        }
    }

    fn max(&mut self, key: &'static str, n: i64) {
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some((_, Ev::Max(m))) => *m = (*m).max(n),
            Some(_) => {}
            None => self.items.push((key, Ev::Max(n))),
        }
    }

    fn merge(&mut self, o: &Evidence) {
        for (k, v) in &o.items {
            match v {
                Ev::Set(s) => s.iter().for_each(|x| self.add(k, x)),
                Ev::Max(n) => self.max(k, *n),
            }
        }
        self.dropped += o.dropped;
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.items {
            let v = match v {
                Ev::Set(s) => json!(s),
                Ev::Max(n) => json!(n),
            };
            m.insert((*k).to_string(), v);
        }
        if self.dropped > 0 {
            m.insert("values_dropped".into(), json!(self.dropped));
        }
        Value::Object(m)
    }
}

#[derive(Clone, Debug)]
struct Record {
    rule: RuleRef,
    severity: Severity,
    first_us: i64,
    last_us: i64,
    count: u64,
    evidence: Evidence,
    /// Covered by an exception or below `min_severity`: counted, never reported.
    suppressed: bool,
    /// Derived from the inventory (spec drift): counts are replaced, not added.
    from_inventory: bool,
    /// Set by an inventory evaluation that still found it (stale ones are dropped).
    fresh: bool,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    owner: Option<usize>,
    /// Bit i: custom rule i applies to the endpoint.
    custom_scope: u64,
    /// A concrete path, for re-templating; empty for endpoints known only from specs.
    example_path: String,
    records: Vec<Record>,
}

/// Findings counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FindingsStats {
    /// Exchanges evaluated.
    pub exchanges: u64,
    /// Finding records created (reported or not).
    pub records: u64,
    /// Finding events returned (new reported records).
    pub events: u64,
    /// Records suppressed by policy exceptions or `min_severity`.
    pub suppressed: u64,
    /// Exchanges not evaluated because [`MAX_ENDPOINTS`] endpoints have records.
    pub endpoints_dropped: u64,
    /// Evidence values not kept (set full); filled in by [`Findings::stats`].
    pub evidence_dropped: u64,
    /// Hosts whose echoed CORS origins could not be remembered.
    pub cors_hosts_dropped: u64,
    /// Error bodies searched for stack traces.
    pub error_bodies_scanned: u64,
    /// Decoding of those bodies.
    pub bodies: BodyStats,
}

impl FindingsStats {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &FindingsStats) {
        self.exchanges += o.exchanges;
        self.records += o.records;
        self.events += o.events;
        self.suppressed += o.suppressed;
        self.endpoints_dropped += o.endpoints_dropped;
        self.evidence_dropped += o.evidence_dropped;
        self.cors_hosts_dropped += o.cors_hosts_dropped;
        self.error_bodies_scanned += o.error_bodies_scanned;
        self.bodies.add(&o.bodies);
    }
}

/// The findings of one worker (or of a merged run).
pub struct Findings {
    policy: Arc<Policy>,
    owners: Arc<Owners>,
    specs: Arc<Vec<Spec>>,
    endpoints: HashMap<EndpointKey, Entry>,
    cors: HashMap<String, Vec<u64>>,
    limits: BodyLimits,
    scratch: Vec<u8>,
    /// Counters.
    pub stats: FindingsStats,
}

impl Clone for Findings {
    fn clone(&self) -> Self {
        self.snapshot()
    }
}

impl std::fmt::Debug for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Findings")
            .field("endpoints", &self.endpoints.len())
            .field("custom_rules", &self.policy.custom.len())
            .field("specs", &self.specs.len())
            .field("owners", &!self.owners.is_empty())
            .finish()
    }
}

/// Which rules an exchange already hit (a rule counts once per exchange).
#[derive(Default)]
struct Touched {
    builtin: u64,
    custom: u64,
}

impl Touched {
    fn first(&mut self, r: RuleRef) -> bool {
        let (word, bit) = match r {
            RuleRef::Builtin(b) => (&mut self.builtin, b as u32),
            RuleRef::Custom(i) => (&mut self.custom, u32::from(i)),
        };
        let m = 1u64 << (bit % 64);
        let first = *word & m == 0;
        *word |= m;
        first
    }
}

/// Applies hits of one exchange to one endpoint's records.
struct Recorder<'a> {
    entry: &'a mut Entry,
    key: &'a EndpointKey,
    policy: &'a Policy,
    ts: i64,
    stats: &'a mut FindingsStats,
    touched: Touched,
    new: Vec<usize>,
}

impl Recorder<'_> {
    /// Counts a hit of `rule` and returns its evidence.
    fn hit(&mut self, rule: RuleRef) -> &mut Evidence {
        let first = self.touched.first(rule);
        let i = match self.entry.records.iter().position(|r| r.rule == rule) {
            Some(i) => {
                let r = &mut self.entry.records[i];
                if first {
                    r.count += 1;
                    r.first_us = r.first_us.min(self.ts);
                    r.last_us = r.last_us.max(self.ts);
                }
                i
            }
            None => {
                let (id, severity) = rule_meta(self.policy, rule);
                let suppressed = severity < self.policy.settings.min_severity
                    || self
                        .policy
                        .exception(id, &self.key.host, &self.key.method, &self.key.template)
                        .is_some();
                self.stats.records += 1;
                if suppressed {
                    self.stats.suppressed += 1;
                } else {
                    self.new.push(self.entry.records.len());
                }
                self.entry.records.push(Record {
                    rule,
                    severity,
                    first_us: self.ts,
                    last_us: self.ts,
                    count: 1,
                    evidence: Evidence::default(),
                    suppressed,
                    from_inventory: false,
                    fresh: true,
                });
                self.entry.records.len() - 1
            }
        };
        &mut self.entry.records[i].evidence
    }

    fn builtin(&mut self, rule: Rule) -> &mut Evidence {
        self.hit(RuleRef::Builtin(rule))
    }
}

fn rule_meta(policy: &Policy, rule: RuleRef) -> (&str, Severity) {
    match rule {
        RuleRef::Builtin(r) => (r.id(), policy.severity(r)),
        RuleRef::Custom(i) => policy
            .custom
            .get(i as usize)
            .map_or(("custom", Severity::Medium), |c| {
                (c.id.as_str(), c.severity)
            }),
    }
}

/// Whether the client's leg was encrypted upstream, by what a TLS-terminating proxy says.
pub fn upstream_tls(req: &Request) -> bool {
    if req
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return true;
    }
    for (n, v) in &req.headers {
        let first = || v.split(',').next().unwrap_or("").trim();
        if n.eq_ignore_ascii_case("x-forwarded-proto")
            || n.eq_ignore_ascii_case("x-forwarded-scheme")
        {
            if first().eq_ignore_ascii_case("https") {
                return true;
            }
        } else if n.eq_ignore_ascii_case("forwarded") {
            // RFC 7239 §4: the first element is the hop nearest the client.
            for pair in first().split(';') {
                if let Some((k, val)) = pair.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("proto")
                        && val.trim().trim_matches('"').eq_ignore_ascii_case("https")
                    {
                        return true;
                    }
                }
            }
        } else if (n.eq_ignore_ascii_case("x-forwarded-ssl")
            || n.eq_ignore_ascii_case("front-end-https"))
            && v.trim().eq_ignore_ascii_case("on")
        {
            return true;
        }
    }
    false
}

fn type_bit(t: SensitiveType) -> u16 {
    1 << (t as u16)
}

/// Stack-trace and internal-error signatures in an error body (JSON string escapes already
/// undone). Each name is reported once.
pub fn error_signatures(b: &[u8], found: &mut impl FnMut(&'static str)) {
    let has = |n: &[u8]| find(b, n, 0).is_some();
    // PHP: "Stack trace:\n#0 /var/www/…"
    if let Some(i) = find(b, b"Stack trace:", 0) {
        let rest = &b[i + 12..b.len().min(i + 16)];
        let rest: Vec<u8> = rest.iter().copied().filter(|c| *c != b'\r').collect();
        if rest.starts_with(b"\n#0") || rest.starts_with(b" #0") {
            found("php_stack_trace");
        }
    }
    if has(b"Traceback (most recent call last):") {
        found("python_traceback");
    }
    if frame_after_at(b, &[b".java:", b".kt:", b".scala:"], b')') {
        found("java_stack_trace");
    }
    if has(b".cs:line ") {
        found("dotnet_stack_trace");
    }
    if frame_after_at(b, &[b".js:", b".ts:", b".mjs:", b".cjs:"], b':') {
        found("node_stack_trace");
    }
    if let Some(i) = find(b, b"goroutine ", 0) {
        if find(&b[i..b.len().min(i + 40)], b"[running]:", 0).is_some() {
            found("go_panic");
        }
    }
    if find(b, b".rb:", 0).is_some() && has(b":in `") {
        found("ruby_backtrace");
    }
    if has(b"SQLSTATE[")
        || has(b"You have an error in your SQL syntax")
        || has(b"PG::")
        || has(b"psycopg2.errors.")
        || has(b"java.sql.SQLException")
        || has(b"ORA-0")
        || has(b"SQLite3::")
        || has(b"sqlite3.OperationalError")
    {
        found("sql_error");
    }
}

/// Bytes looked back from a `File.ext:12` for the `at ` of its stack frame.
const FRAME_LOOKBACK: usize = 512;

/// A stack frame `at x.y(File.ext:12)`: one of `exts` followed by digits then `next`, on a line
/// that has `at ` before it.
fn frame_after_at(b: &[u8], exts: &[&[u8]], next: u8) -> bool {
    for ext in exts {
        let mut from = 0;
        while let Some(i) = find(b, ext, from) {
            from = i + ext.len();
            let digits = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || b.get(from + digits) != Some(&next) {
                continue;
            }
            // A frame line is short: look back a bounded distance, so that a body full of
            // `.java:1)` without line breaks stays linear.
            let lo = i.saturating_sub(FRAME_LOOKBACK);
            let line_start = b[lo..i]
                .iter()
                .rposition(|c| *c == b'\n')
                .map_or(lo, |p| lo + p + 1);
            if find(&b[line_start..i], b"at ", 0).is_some() {
                return true;
            }
        }
    }
    false
}

fn find(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
    if n.is_empty() || from >= h.len() || h.len() - from < n.len() {
        return None;
    }
    memchr::memmem::find(&h[from..], n).map(|p| p + from)
}

/// Copies `b` into `out` with JSON string escapes undone (`\n`, `\t`, `\/`, `\"`, `\\`), so
/// that a trace embedded in a JSON string reads as it would in a text body.
fn unescape_json(b: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = match b[i + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'/' => b'/',
                b'"' => b'"',
                b'\\' => b'\\',
                _ => {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
            };
            out.push(c);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
}

/// `name/version` tokens of a `Server`-like header (`Apache/2.4.49 (Unix) PHP/7.2.1` →
/// `Apache/2.4.49`, `PHP/7.2.1`).
pub fn versioned_products(v: &str) -> impl Iterator<Item = &str> {
    v.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')' || c == ';')
        .filter(|t| {
            let Some((name, ver)) = t.split_once('/') else {
                return false;
            };
            let ok = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
            !name.is_empty()
                && name.len() <= 40
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(ok)
                && ver.starts_with(|c: char| c.is_ascii_digit())
                && ver.len() <= 30
                && ver.chars().all(ok)
        })
}

fn origin_hash(o: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    o.to_ascii_lowercase().hash(&mut h);
    h.finish()
}

/// The stable id of a finding: hex of SHA-256 over host, method, template and rule id.
pub fn finding_id(key: &EndpointKey, rule_id: &str) -> String {
    let mut h = Sha256::new();
    for part in [&key.host, &key.method, &key.template] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(rule_id.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Findings {
    /// Findings under `policy`, with ownership map `owners` and declared `specs`.
    pub fn new(policy: Policy, owners: Owners, specs: Vec<Spec>) -> Self {
        Findings {
            policy: Arc::new(policy),
            owners: Arc::new(owners),
            specs: Arc::new(specs),
            endpoints: HashMap::default(),
            cors: HashMap::default(),
            limits: BodyLimits {
                max_decoded: ERROR_BODY_BYTES,
                ..BodyLimits::default()
            },
            scratch: Vec::new(),
            stats: FindingsStats::default(),
        }
    }

    /// An empty instance sharing this one's policy, owners and specs (one per worker).
    pub fn fork(&self) -> Self {
        Findings {
            policy: Arc::clone(&self.policy),
            owners: Arc::clone(&self.owners),
            specs: Arc::clone(&self.specs),
            endpoints: HashMap::default(),
            cors: HashMap::default(),
            limits: self.limits.clone(),
            scratch: Vec::new(),
            stats: FindingsStats::default(),
        }
    }

    /// A copy of the records and counters (what a worker hands over for the inventory file).
    pub fn snapshot(&self) -> Self {
        let mut f = self.fork();
        f.merge(self);
        f
    }

    /// Puts a new policy and ownership map in force (SIGHUP). Records already made stay,
    /// re-judged under the new policy: severities and suppression are recomputed, owners
    /// looked up again (an endpoint that now has an owner loses `unowned_endpoint`), custom
    /// rules matched to the new ones by id (records of custom rules that are gone are
    /// dropped). Findings already announced are not announced again; new ones follow the new
    /// policy from the next exchange on.
    pub fn reload(&mut self, policy: Arc<Policy>, owners: Arc<Owners>) {
        let old = std::mem::replace(&mut self.policy, policy);
        self.owners = owners;
        let p = &self.policy;
        let new_index = |i: u16| -> Option<u16> {
            let id = &old.custom.get(i as usize)?.id;
            p.custom.iter().position(|c| &c.id == id).map(|n| n as u16)
        };
        for (k, e) in &mut self.endpoints {
            e.owner = self.owners.lookup_index(&k.host, &k.template);
            e.custom_scope = 0;
            for (i, c) in p.custom.iter().enumerate().take(64) {
                if c.scope.contains(&k.host, &k.method, &k.template) {
                    e.custom_scope |= 1 << i;
                }
            }
            let owned = e.owner.is_some();
            e.records.retain_mut(|r| {
                if let RuleRef::Custom(i) = r.rule {
                    match new_index(i) {
                        Some(n) => r.rule = RuleRef::Custom(n),
                        None => return false,
                    }
                }
                if r.rule == RuleRef::Builtin(Rule::UnownedEndpoint)
                    && (owned || self.owners.is_empty())
                {
                    return false;
                }
                if let RuleRef::Builtin(b) = r.rule {
                    if !p.enabled(b) {
                        return false;
                    }
                }
                let (id, severity) = rule_meta(p, r.rule);
                r.severity = severity;
                r.suppressed = severity < p.settings.min_severity
                    || p.exception(id, &k.host, &k.method, &k.template).is_some();
                true
            });
        }
    }

    /// The policy and ownership map in force (for [`Findings::reload`] elsewhere).
    pub fn rules(&self) -> (Arc<Policy>, Arc<Owners>) {
        (Arc::clone(&self.policy), Arc::clone(&self.owners))
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The counters, with the evidence values dropped so far.
    pub fn stats(&self) -> FindingsStats {
        let mut s = self.stats.clone();
        s.evidence_dropped = self
            .endpoints
            .values()
            .flat_map(|e| e.records.iter())
            .map(|r| r.evidence.dropped)
            .sum();
        s
    }

    fn entry_for<'a>(
        endpoints: &'a mut HashMap<EndpointKey, Entry>,
        owners: &Owners,
        policy: &Policy,
        key: &EndpointKey,
        path: &str,
        stats: &mut FindingsStats,
    ) -> Option<&'a mut Entry> {
        if !endpoints.contains_key(key) {
            if endpoints.len() >= MAX_ENDPOINTS {
                stats.endpoints_dropped += 1;
                return None;
            }
            let mut custom_scope = 0u64;
            for (i, c) in policy.custom.iter().enumerate().take(64) {
                if c.scope.contains(&key.host, &key.method, &key.template) {
                    custom_scope |= 1 << i;
                }
            }
            endpoints.insert(
                key.clone(),
                Entry {
                    owner: owners.lookup_index(&key.host, &key.template),
                    custom_scope,
                    example_path: path.chars().take(2048).collect(),
                    records: Vec::new(),
                },
            );
        }
        endpoints.get_mut(key)
    }

    /// Evaluates the per-exchange rules on `ex` (with what inspection learnt, `ins`, under the
    /// endpoint `key`, sent to `flow_server`). Returns the events of findings new to this
    /// instance (`type: "finding"`), to emit now.
    pub fn observe(
        &mut self,
        ex: &Exchange,
        ins: &Insights,
        key: &EndpointKey,
        flow_server: SocketAddr,
    ) -> Vec<Value> {
        self.stats.exchanges += 1;
        let policy = Arc::clone(&self.policy);
        let owners = Arc::clone(&self.owners);
        let p: &Policy = &policy;
        let set = &p.settings;
        let req = &ex.request;
        let (path, _) = crate::observation::split_target(&req.target);
        let Some(entry) =
            Self::entry_for(&mut self.endpoints, &owners, p, key, path, &mut self.stats)
        else {
            return Vec::new();
        };
        let mut rec = Recorder {
            entry,
            key,
            policy: p,
            ts: req.ts_us,
            stats: &mut self.stats,
            touched: Touched::default(),
            new: Vec::new(),
        };
        let resp = ex.response.as_ref();
        let status = resp.map_or(0, |r| r.status);
        let ok = (200..300).contains(&status);
        let tls = set.trust_forwarded_proto && upstream_tls(req);
        let auth = &ins.auth;

        if !owners.is_empty() && rec.entry.owner.is_none() && p.enabled(Rule::UnownedEndpoint) {
            rec.builtin(Rule::UnownedEndpoint);
        }

        // Credentials.
        if p.enabled(Rule::CredentialsInQuery) {
            if auth.location == Some("query")
                && !matches!(auth.kind, AuthKind::None | AuthKind::Other)
            {
                let ev = rec.builtin(Rule::CredentialsInQuery);
                ev.add("auth", auth.kind.as_str());
                if let Some(n) = &auth.name {
                    ev.add("params", n);
                }
            }
            // A presigned URL (`X-Amz-Signature` …) carries its one-off credential in the
            // query by design, key id included.
            let presigned = auth.kind == AuthKind::Other && auth.location == Some("query");
            for f in &ins.sensitive {
                if f.location == Location::RequestQuery
                    && !presigned
                    && matches!(
                        f.kind,
                        SensitiveType::ApiKey
                            | SensitiveType::Jwt
                            | SensitiveType::Password
                            | SensitiveType::PrivateKey
                    )
                {
                    let ev = rec.builtin(Rule::CredentialsInQuery);
                    ev.add("types", f.kind.as_str());
                    ev.add("params", &f.field);
                }
            }
        }
        if !tls {
            if auth.kind == AuthKind::Basic && p.enabled(Rule::CleartextBasicAuth) {
                let ev = rec.builtin(Rule::CleartextBasicAuth);
                ev.add("header", auth.name.as_deref().unwrap_or("authorization"));
            }
            if auth.kind == AuthKind::Bearer
                && auth.location == Some("header")
                && p.enabled(Rule::CleartextBearer)
            {
                let ev = rec.builtin(Rule::CleartextBearer);
                ev.add("header", auth.name.as_deref().unwrap_or("authorization"));
                ev.add("token", if auth.jwt.is_some() { "jwt" } else { "opaque" });
            }
        }
        if let Some(j) = &auth.jwt {
            if j.alg.trim().eq_ignore_ascii_case("none") && p.enabled(Rule::JwtAlgNone) {
                let ev = rec.builtin(Rule::JwtAlgNone);
                ev.add("alg", "none");
                ev.add("credential", auth.kind.as_str());
            }
            match j.exp {
                None => {
                    if p.enabled(Rule::JwtNoExp) {
                        let ev = rec.builtin(Rule::JwtNoExp);
                        ev.add("alg", &j.alg);
                        ev.add("credential", auth.kind.as_str());
                    }
                }
                Some(exp) => {
                    // Lifetime from `iat`; without it, what is left at the time of the request.
                    let from = j.iat.unwrap_or(req.ts_us / 1_000_000);
                    let life = exp.saturating_sub(from);
                    if life > set.jwt_max_lifetime_secs && p.enabled(Rule::JwtLongLifetime) {
                        let ev = rec.builtin(Rule::JwtLongLifetime);
                        ev.max("max_lifetime_days", life / 86_400);
                        ev.max("policy_max_days", set.jwt_max_lifetime_secs / 86_400);
                        ev.add(
                            "measured_from",
                            if j.iat.is_some() {
                                "iat"
                            } else {
                                "request_time"
                            },
                        );
                    }
                }
            }
        }

        // What the response gave away.
        let mut body_types = 0u16;
        let mut unauth_types = 0u16;
        for f in &ins.sensitive {
            if f.location == Location::ResponseBody {
                body_types |= type_bit(f.kind);
                if set.unauth_sensitive_types.contains(&f.kind) {
                    unauth_types |= type_bit(f.kind);
                }
            }
        }
        if ok
            && auth.kind == AuthKind::None
            && unauth_types != 0
            && p.enabled(Rule::UnauthSensitiveData)
        {
            let ev = rec.builtin(Rule::UnauthSensitiveData);
            for f in &ins.sensitive {
                if f.location == Location::ResponseBody && unauth_types & type_bit(f.kind) != 0 {
                    ev.add("types", f.kind.as_str());
                    ev.add("fields", &f.field);
                }
            }
            ev.add("statuses", status_str(status, &mut [0; 3]));
        }
        let n_types = body_types.count_ones() as usize;
        if n_types >= set.excessive_data_types && p.enabled(Rule::ExcessiveDataExposure) {
            let ev = rec.builtin(Rule::ExcessiveDataExposure);
            for t in SensitiveType::ALL {
                if body_types & type_bit(t) != 0 {
                    ev.add("types", t.as_str());
                }
            }
            ev.max("max_types_in_one_response", n_types as i64);
        }

        if let Some(r) = resp {
            if status >= 400 && p.enabled(Rule::VerboseError) {
                self_scan_error(r, &self.limits, &mut self.scratch, &mut rec, status);
            }
            if p.enabled(Rule::PermissiveCors) {
                cors(req, r, p, &mut self.cors, key, &mut rec);
            }
            if p.enabled(Rule::MissingSecurityHeaders) && status != 101 && status != 304 {
                let mut missing = 0u32;
                for (i, h) in set.security_headers.iter().enumerate().take(32) {
                    if h == "strict-transport-security" && !tls {
                        continue;
                    }
                    if r.header(h).is_none() {
                        missing |= 1 << i;
                    }
                }
                if missing != 0 {
                    let ev = rec.builtin(Rule::MissingSecurityHeaders);
                    for (i, h) in set.security_headers.iter().enumerate().take(32) {
                        if missing & (1 << i) != 0 {
                            ev.add("missing", h);
                        }
                    }
                }
            }
            if p.enabled(Rule::ServerBanner) {
                for (n, v) in &r.headers {
                    let name = if n.eq_ignore_ascii_case("server") {
                        "server"
                    } else if n.eq_ignore_ascii_case("x-powered-by") {
                        "x-powered-by"
                    } else if n.eq_ignore_ascii_case("x-aspnet-version")
                        || n.eq_ignore_ascii_case("x-aspnetmvc-version")
                    {
                        if v.trim().starts_with(|c: char| c.is_ascii_digit()) {
                            let ev = rec.builtin(Rule::ServerBanner);
                            ev.add("headers", &n.to_ascii_lowercase());
                        }
                        continue;
                    } else {
                        continue;
                    };
                    let mut products = versioned_products(v).peekable();
                    if products.peek().is_some() {
                        let ev = rec.builtin(Rule::ServerBanner);
                        ev.add("headers", name);
                        for pr in products {
                            ev.add("products", pr);
                        }
                    }
                }
            }
            if ok && auth.kind == AuthKind::None && p.enabled(Rule::AdminEndpointExposed) {
                let admin = key
                    .template
                    .split('/')
                    .filter(|s| !s.is_empty() && !s.starts_with('{'))
                    .find(|seg| {
                        seg.split(['-', '_', '.'])
                            .any(|w| set.admin_segments.iter().any(|a| w.eq_ignore_ascii_case(a)))
                    });
                if let Some(seg) = admin {
                    let ev = rec.builtin(Rule::AdminEndpointExposed);
                    ev.add("segments", seg);
                    ev.add("statuses", status_str(status, &mut [0; 3]));
                }
            }
        }

        // Custom rules in scope of the endpoint.
        let mut scope = rec.entry.custom_scope;
        while scope != 0 {
            let i = scope.trailing_zeros() as usize;
            scope &= scope - 1;
            let Some(c) = p.custom.get(i) else {
                continue;
            };
            match &c.condition {
                Condition::ForbidSensitive { types, locations } => {
                    for f in &ins.sensitive {
                        if types.contains(&f.kind)
                            && (locations.is_empty() || locations.contains(&f.location))
                        {
                            let ev = rec.hit(RuleRef::Custom(i as u16));
                            ev.add("types", f.kind.as_str());
                            ev.add("locations", f.location.as_str());
                            ev.add("fields", &f.field);
                        }
                    }
                }
                Condition::RequireAuth { allowed } => {
                    if ok && !allowed.contains(&auth.kind) {
                        let ev = rec.hit(RuleRef::Custom(i as u16));
                        ev.add("auth", auth.kind.as_str());
                        ev.add("statuses", status_str(status, &mut [0; 3]));
                    }
                }
            }
        }

        let new = std::mem::take(&mut rec.new);
        let Some(entry) = self.endpoints.get(key) else {
            return Vec::new();
        };
        let events: Vec<Value> = new
            .into_iter()
            .filter_map(|i| entry.records.get(i))
            .map(|r| {
                let mut ev = self.record_json(key, entry, r);
                if let Some(o) = ev.as_object_mut() {
                    o.insert("server".into(), json!(flow_server.to_string()));
                }
                ev
            })
            .collect();
        self.stats.events += events.len() as u64;
        events
    }

    fn record_json(&self, key: &EndpointKey, entry: &Entry, r: &Record) -> Value {
        let owner = entry.owner.and_then(|i| self.owners.get(i));
        let (id, title, owasp, cwe, description, remediation, custom) = match r.rule {
            RuleRef::Builtin(b) => (
                b.id().to_string(),
                b.title().to_string(),
                Some(b.owasp().to_string()),
                b.cwe(),
                None,
                Some(b.remediation().to_string()),
                false,
            ),
            RuleRef::Custom(i) => match self.policy.custom.get(i as usize) {
                Some(c) => (
                    c.id.clone(),
                    c.title.clone(),
                    c.owasp.clone(),
                    None,
                    c.description.clone(),
                    None,
                    true,
                ),
                None => (
                    "custom".into(),
                    "custom".into(),
                    None,
                    None,
                    None,
                    None,
                    true,
                ),
            },
        };
        let mut v = json!({
            "type": "finding",
            "ts": rfc3339(r.last_us),
            "id": finding_id(key, &id),
            "rule": id,
            "title": title,
            "severity": r.severity,
            "owasp": owasp,
            "owasp_name": owasp.as_deref().and_then(owasp_name),
            "custom": custom,
            "endpoint": {"host": key.host, "method": key.method, "template": key.template},
            "owner": owner,
            "first_seen": rfc3339(r.first_us),
            "last_seen": rfc3339(r.last_us),
            "count": r.count,
            "evidence": r.evidence.to_json(),
        });
        if let Some(o) = v.as_object_mut() {
            if let Some((cwe, name)) = cwe {
                o.insert("cwe".into(), json!({"id": cwe, "name": name}));
            }
            if let Some(d) = description {
                o.insert("description".into(), json!(d));
            }
            if let Some(rm) = remediation {
                o.insert("remediation".into(), json!(rm));
            }
        }
        v
    }

    /// Evaluates the endpoint-level rules (declared-spec drift) on the inventory; returns the
    /// events of findings new to this instance. Drift findings follow the inventory: their
    /// counts and times are the endpoint's, and findings the inventory no longer supports (an
    /// operation now seen is no longer unused) are dropped. `unused_endpoint` is a property of
    /// the whole observation window, so it is kept for [`Findings::all`] (the inventory file)
    /// but never returned as an event: a live capture would announce every operation not yet
    /// called at its first evaluation.
    pub fn evaluate_inventory(&mut self, inv: &Inventory) -> Vec<Value> {
        if self.specs.is_empty() {
            return Vec::new();
        }
        let observed: Vec<spec::Observed> = inv
            .sorted()
            .into_iter()
            .map(|(k, s)| spec::Observed {
                host: k.host.clone(),
                method: k.method.clone(),
                template: k.template.clone(),
                query_params: s.query_params.clone(),
                count: s.count,
                first_seen_us: s.first_seen_us,
                last_seen_us: s.last_seen_us,
            })
            .collect();
        let policy = Arc::clone(&self.policy);
        let owners = Arc::clone(&self.owners);
        let rep = spec::drift(
            &self.specs,
            &observed,
            policy.settings.shadow_hosts_without_spec,
        );
        for e in self.endpoints.values_mut() {
            for r in &mut e.records {
                if r.from_inventory {
                    r.fresh = false;
                }
            }
        }
        let mut new: Vec<(EndpointKey, Rule)> = Vec::new();
        for d in &rep.items {
            let rule = match d.kind {
                DriftKind::Shadow => Rule::ShadowEndpoint,
                DriftKind::Zombie => Rule::ZombieEndpoint,
                DriftKind::Unused => Rule::UnusedEndpoint,
                DriftKind::UndeclaredParameter => Rule::UndeclaredParameter,
            };
            if !policy.enabled(rule) {
                continue;
            }
            let key = EndpointKey {
                host: d.host.clone(),
                method: d.method.clone(),
                template: d.template.clone(),
            };
            let Some(entry) = Self::entry_for(
                &mut self.endpoints,
                &owners,
                &policy,
                &key,
                "",
                &mut self.stats,
            ) else {
                continue;
            };
            let mut ev = Evidence::default();
            if let Some(s) = &d.spec {
                ev.add("spec", s);
            }
            if let Some(p) = &d.declared_path {
                ev.add("declared_path", p);
            }
            if let Some(p) = &d.operation_id {
                ev.add("operation_id", p);
            }
            if let Some(r) = d.reason {
                ev.add("reason", r);
            }
            for p in &d.params {
                ev.add("params", p);
            }
            let rr = RuleRef::Builtin(rule);
            match entry.records.iter_mut().find(|r| r.rule == rr) {
                Some(r) => {
                    r.count = d.count;
                    r.first_us = d.first_seen_us;
                    r.last_us = d.last_seen_us;
                    r.evidence = ev;
                    r.fresh = true;
                }
                None => {
                    let severity = policy.severity(rule);
                    let suppressed = severity < policy.settings.min_severity
                        || policy
                            .exception(rule.id(), &key.host, &key.method, &key.template)
                            .is_some();
                    self.stats.records += 1;
                    if suppressed {
                        self.stats.suppressed += 1;
                    } else if rule != Rule::UnusedEndpoint {
                        new.push((key.clone(), rule));
                    }
                    entry.records.push(Record {
                        rule: rr,
                        severity,
                        first_us: d.first_seen_us,
                        last_us: d.last_seen_us,
                        count: d.count,
                        evidence: ev,
                        suppressed,
                        from_inventory: true,
                        fresh: true,
                    });
                }
            }
        }
        for e in self.endpoints.values_mut() {
            e.records.retain(|r| !r.from_inventory || r.fresh);
        }
        self.endpoints
            .retain(|_, e| !e.records.is_empty() || !e.example_path.is_empty());
        let mut out = Vec::new();
        for (key, rule) in new {
            let Some(entry) = self.endpoints.get(&key) else {
                continue;
            };
            if let Some(r) = entry
                .records
                .iter()
                .find(|r| r.rule == RuleRef::Builtin(rule))
            {
                out.push(self.record_json(&key, entry, r));
            }
        }
        self.stats.events += out.len() as u64;
        out
    }

    /// Every reported finding with its counts, sorted by host, template, method and rule.
    pub fn all(&self) -> Vec<Value> {
        let mut keys: Vec<&EndpointKey> = self.endpoints.keys().collect();
        keys.sort_by(|a, b| {
            (&a.host, &a.template, &a.method).cmp(&(&b.host, &b.template, &b.method))
        });
        let mut out = Vec::new();
        for k in keys {
            let Some(e) = self.endpoints.get(k) else {
                continue;
            };
            let mut recs: Vec<&Record> = e.records.iter().filter(|r| !r.suppressed).collect();
            recs.sort_by_key(|r| rule_meta(&self.policy, r.rule).0.to_string());
            for r in recs {
                out.push(self.record_json(k, e, r));
            }
        }
        out
    }

    /// Folds another instance's records and counters in (same policy assumed: workers are
    /// [`Findings::fork`]s of one instance).
    pub fn merge(&mut self, other: &Findings) {
        self.stats.add(&other.stats);
        for (k, e) in &other.endpoints {
            self.absorb(k.clone(), e.clone());
        }
        for (h, origins) in &other.cors {
            let mine = self.cors.entry(h.clone()).or_default();
            for o in origins {
                if !mine.contains(o) && mine.len() < MAX_ORIGINS_PER_HOST {
                    mine.push(*o);
                }
            }
        }
    }

    fn absorb(&mut self, k: EndpointKey, e: Entry) {
        match self.endpoints.get_mut(&k) {
            None => {
                self.endpoints.insert(k, e);
            }
            Some(mine) => {
                if mine.example_path.is_empty() {
                    mine.example_path = e.example_path;
                }
                for r in e.records {
                    match mine.records.iter_mut().find(|m| m.rule == r.rule) {
                        Some(m) if m.from_inventory => {}
                        Some(m) => {
                            m.count += r.count;
                            m.first_us = m.first_us.min(r.first_us);
                            m.last_us = m.last_us.max(r.last_us);
                            m.evidence.merge(&r.evidence);
                        }
                        None => mine.records.push(r),
                    }
                }
            }
        }
    }

    /// Re-templates the records with what `t` has learnt (endpoints first seen as
    /// `/users/42` fold into `/users/{id}`), as [`Inventory::compact`] does. Run before
    /// [`Findings::all`] and [`risk`] on a merged run.
    pub fn compact(&mut self, t: &Templater) {
        let old = std::mem::take(&mut self.endpoints);
        for (mut k, e) in old {
            if !e.example_path.is_empty() {
                k.template = t.resolve(&k.host, &e.example_path);
            }
            self.absorb(k, e);
        }
    }

    /// The owner of an endpoint.
    pub fn owner_of(&self, key: &EndpointKey) -> Option<&Owner> {
        match self.endpoints.get(key) {
            Some(e) => e.owner.and_then(|i| self.owners.get(i)),
            None => self.owners.lookup(&key.host, &key.template),
        }
    }

    /// The reported findings on one endpoint: (rule id, severity).
    pub fn on_endpoint(&self, key: &EndpointKey) -> Vec<(String, Severity)> {
        self.endpoints.get(key).map_or_else(Vec::new, |e| {
            e.records
                .iter()
                .filter(|r| !r.suppressed)
                .map(|r| {
                    let (id, sev) = rule_meta(&self.policy, r.rule);
                    (id.to_string(), sev)
                })
                .collect()
        })
    }

    /// Adds to an inventory document (from [`Inventory::to_json`]) each endpoint's `owner`
    /// (when an ownership map is loaded) and `findings` (rule ids), and the top-level
    /// `findings` array ([`Findings::all`]).
    pub fn annotate_inventory(&self, doc: &mut Value) {
        if let Some(eps) = doc.get_mut("endpoints").and_then(Value::as_array_mut) {
            for e in eps {
                let key = EndpointKey {
                    host: e.get("host").and_then(Value::as_str).unwrap_or("").into(),
                    method: e.get("method").and_then(Value::as_str).unwrap_or("").into(),
                    template: e
                        .get("template")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                };
                let ids: Vec<String> = self.on_endpoint(&key).into_iter().map(|(i, _)| i).collect();
                let owner = if self.owners.is_empty() {
                    None
                } else {
                    Some(json!(self.owner_of(&key)))
                };
                if let Some(o) = e.as_object_mut() {
                    if let Some(owner) = owner {
                        o.insert("owner".into(), owner);
                    }
                    o.insert("findings".into(), json!(ids));
                }
            }
        }
        if let Some(o) = doc.as_object_mut() {
            o.insert("findings".into(), Value::Array(self.all()));
        }
    }
}

/// The status code as text in `buf` (no allocation); codes outside 100–999 are `other`.
fn status_str(s: u16, buf: &mut [u8; 3]) -> &str {
    if !(100..=999).contains(&s) {
        return "other";
    }
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("other")
}

/// `verbose_error`: decodes the error body and looks for signatures.
fn self_scan_error(
    r: &Response,
    limits: &BodyLimits,
    scratch: &mut Vec<u8>,
    rec: &mut Recorder<'_>,
    status: u16,
) {
    if r.body.prefix.is_empty() {
        return;
    }
    rec.stats.error_bodies_scanned += 1;
    let raw = &r.body.prefix[..r.body.prefix.len().min(ERROR_BODY_BYTES)];
    let decoded = body::decode_content(
        r.header("content-encoding"),
        raw,
        limits,
        &mut rec.stats.bodies,
    );
    unescape_json(&decoded, scratch);
    let mut sigs: [Option<&'static str>; 8] = [None; 8];
    let mut n = 0;
    error_signatures(scratch, &mut |s| {
        if n < sigs.len() {
            sigs[n] = Some(s);
            n += 1;
        }
    });
    if n == 0 {
        return;
    }
    let ev = rec.builtin(Rule::VerboseError);
    for s in sigs.iter().flatten() {
        ev.add("signatures", s);
    }
    ev.add("statuses", status_str(status, &mut [0; 3]));
    if let Some(ct) = r.header("content-type") {
        ev.add("content_types", &crate::inventory::media_type(ct));
    }
}

/// `permissive_cors`.
fn cors(
    req: &Request,
    r: &Response,
    p: &Policy,
    seen: &mut HashMap<String, Vec<u64>>,
    key: &EndpointKey,
    rec: &mut Recorder<'_>,
) {
    let Some(acao) = r.header("access-control-allow-origin").map(str::trim) else {
        return;
    };
    let creds = r
        .header("access-control-allow-credentials")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !creds {
        // Without credentials the browser sends no cookies or HTTP auth: `*` is the normal
        // answer of a public API.
        return;
    }
    let mode = if acao == "*" {
        Some("wildcard_with_credentials")
    } else if acao.eq_ignore_ascii_case("null") {
        Some("null_origin_with_credentials")
    } else if req
        .header("origin")
        .is_some_and(|o| o.trim().eq_ignore_ascii_case(acao))
    {
        let allow = &p.settings.cors_allowed_origins;
        if !allow.is_empty() {
            let o = acao.to_ascii_lowercase();
            (!allow.iter().any(|g| g.matches(&o))).then_some("untrusted_origin_with_credentials")
        } else {
            let h = origin_hash(acao);
            let distinct = if let Some(v) = seen.get_mut(&key.host) {
                if !v.contains(&h) && v.len() < MAX_ORIGINS_PER_HOST {
                    v.push(h);
                }
                v.len()
            } else if seen.len() < MAX_CORS_HOSTS {
                seen.insert(key.host.clone(), vec![h]);
                1
            } else {
                rec.stats.cors_hosts_dropped += 1;
                1
            };
            (distinct >= 2).then_some("reflected_origin_with_credentials")
        }
    } else {
        None
    };
    if let Some(m) = mode {
        let ev = rec.builtin(Rule::PermissiveCors);
        ev.add("mode", m);
        ev.add("allow_credentials", "true");
    }
}

/// The risk score of an endpoint (0–100) with the factors that produced it:
/// - `sensitivity` (0–40): the most sensitive data type the endpoint carries (request or
///   response; credentials in request headers and cookies are not data), +5 per further type;
/// - `exposure` (0–30): 30 when sensitive data was served without authentication, else the
///   unauthenticated share of exchanges × 30 (× 5 when the endpoint carries no sensitive
///   data), +10 for an exposed admin endpoint;
/// - `weakness` (0–30): the other findings on the endpoint by severity (critical 20, high 12,
///   medium 6, low 2).
///
/// Levels: ≥ 75 critical, ≥ 50 high, ≥ 25 medium, > 0 low, 0 none.
pub fn risk(key: &EndpointKey, stats: &EndpointStats, findings: &Findings) -> Value {
    let weight = |t: SensitiveType| -> u32 {
        match t {
            SensitiveType::PrivateKey => 35,
            SensitiveType::CreditCard | SensitiveType::Ssn => 30,
            SensitiveType::Iban | SensitiveType::Password | SensitiveType::ApiKey => 25,
            SensitiveType::Jwt => 15,
            SensitiveType::Email | SensitiveType::Phone => 12,
            SensitiveType::IpAddress => 5,
        }
    };
    let types: BTreeSet<SensitiveType> = stats
        .sensitive
        .keys()
        .filter(|f| {
            !matches!(
                f.location,
                Location::RequestHeader | Location::RequestCookie
            )
        })
        .map(|f| f.kind)
        .collect();
    let sensitivity = types
        .iter()
        .map(|t| weight(*t))
        .max()
        .map_or(0, |m| (m + 5 * (types.len() as u32 - 1)).min(40));
    let on = findings.on_endpoint(key);
    let has = |r: Rule| on.iter().any(|(id, _)| id == r.id());
    let unauth_share = if stats.count > 0 {
        stats.unauthenticated() as f64 / stats.count as f64
    } else {
        0.0
    };
    let mut exposure = if has(Rule::UnauthSensitiveData) {
        30
    } else if sensitivity > 0 {
        (unauth_share * 30.0).round() as u32
    } else {
        (unauth_share * 5.0).round() as u32
    };
    if has(Rule::AdminEndpointExposed) {
        exposure += 10;
    }
    let exposure = exposure.min(30);
    let counted_elsewhere = [
        Rule::UnauthSensitiveData.id(),
        Rule::AdminEndpointExposed.id(),
    ];
    let weakness_findings: Vec<&(String, Severity)> = on
        .iter()
        .filter(|(id, _)| !counted_elsewhere.contains(&id.as_str()))
        .collect();
    let weakness = weakness_findings
        .iter()
        .map(|(_, s)| s.weight())
        .sum::<u32>()
        .min(30);
    let score = (sensitivity + exposure + weakness).min(100);
    let level = match score {
        75.. => "critical",
        50..=74 => "high",
        25..=49 => "medium",
        1..=24 => "low",
        0 => "none",
    };
    json!({
        "score": score,
        "level": level,
        "factors": [
            {"factor": "sensitivity", "points": sensitivity, "max": 40,
             "types": types.iter().map(|t| t.as_str()).collect::<Vec<_>>()},
            {"factor": "exposure", "points": exposure, "max": 30,
             "unauthenticated_share": (unauth_share * 1000.0).round() / 1000.0,
             "unauth_sensitive_data": has(Rule::UnauthSensitiveData),
             "admin_endpoint_exposed": has(Rule::AdminEndpointExposed)},
            {"factor": "weakness", "points": weakness, "max": 30,
             "findings": weakness_findings.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{InspectConfig, Inspector};
    use apitap_parsers::{Body, Protocol};

    fn server() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    fn exchange(
        method: &str,
        target: &str,
        req_headers: &[(&str, &str)],
        status: u16,
        resp_headers: &[(&str, &str)],
        body: &str,
    ) -> Exchange {
        let mut req = apitap_parsers::Request {
            ts_us: 1_700_000_000_000_000,
            method: method.into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            ..Default::default()
        };
        req.headers.push(("Host".into(), "api.example.test".into()));
        for (n, v) in req_headers {
            req.headers.push((n.to_string(), v.to_string()));
        }
        let mut ex = Exchange::new(Protocol::Http1, req);
        let mut r = Response {
            ts_us: 1_700_000_000_001_000,
            version: "HTTP/1.1".into(),
            status,
            ..Default::default()
        };
        for (n, v) in resp_headers {
            r.headers.push((n.to_string(), v.to_string()));
        }
        r.body = Body {
            prefix: body.as_bytes().to_vec(),
            bytes: body.len() as u64,
            incomplete: false,
        };
        ex.response = Some(r);
        ex
    }

    const SAFE: [(&str, &str); 5] = [
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", "frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Type", "application/json"),
    ];

    fn run(f: &mut Findings, ex: &Exchange) -> Vec<String> {
        let mut insp = Inspector::new(InspectConfig::default());
        let ins = insp.inspect(ex, server());
        let key = EndpointKey {
            host: ins.host.clone(),
            method: ex.request.method.clone(),
            template: ins.template.clone(),
        };
        f.observe(ex, &ins, &key, server())
            .iter()
            .map(|e| e["rule"].as_str().unwrap().to_string())
            .collect()
    }

    fn rules_of(ex: &Exchange) -> Vec<String> {
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        let mut v = run(&mut f, ex);
        v.sort();
        v
    }

    #[test]
    fn a_clean_exchange_raises_nothing() {
        let ex = exchange(
            "GET",
            "/v1/projects/42",
            &[
                ("Authorization", "Bearer opaque-token-value-123456"),
                ("X-Forwarded-Proto", "https"),
            ],
            200,
            &[
                &SAFE[..],
                &[("Strict-Transport-Security", "max-age=63072000")],
            ]
            .concat(),
            r#"{"id":42,"name":"apollo"}"#,
        );
        assert!(rules_of(&ex).is_empty(), "{:?}", rules_of(&ex));
    }

    #[test]
    fn cleartext_and_forwarded_proto() {
        let bearer = [("Authorization", "Bearer opaque-token-value-123456")];
        let ex = exchange("GET", "/v1/x", &bearer, 200, &SAFE, "{}");
        assert_eq!(rules_of(&ex), ["cleartext_bearer"]);
        let ex = exchange(
            "GET",
            "/v1/x",
            &[bearer[0], ("X-Forwarded-Proto", "https")],
            200,
            &SAFE,
            "{}",
        );
        // Encrypted upstream: no cleartext finding, but now HSTS is expected.
        assert_eq!(rules_of(&ex), ["missing_security_headers"]);
        let ex = exchange(
            "GET",
            "/v1/x",
            &[
                bearer[0],
                (
                    "Forwarded",
                    "for=192.0.2.1;proto=https, for=10.0.0.1;proto=http",
                ),
            ],
            200,
            &SAFE,
            "{}",
        );
        assert_eq!(rules_of(&ex), ["missing_security_headers"]);
        // Not trusted by policy: cleartext again.
        let mut p = Policy::default();
        p.settings.trust_forwarded_proto = false;
        let mut f = Findings::new(p, Owners::default(), Vec::new());
        let ex = exchange(
            "GET",
            "/v1/x",
            &[bearer[0], ("X-Forwarded-Proto", "https")],
            200,
            &SAFE,
            "{}",
        );
        assert_eq!(run(&mut f, &ex), ["cleartext_bearer"]);
        let basic = exchange(
            "GET",
            "/v1/x",
            &[("Authorization", "Basic YWxpY2U6czNjcmV0")],
            200,
            &SAFE,
            "{}",
        );
        assert_eq!(rules_of(&basic), ["cleartext_basic_auth"]);
    }

    fn jwt(header: &str, claims: &str) -> String {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.c2ln", e.encode(header), e.encode(claims))
    }

    #[test]
    fn jwt_rules() {
        let fwd = ("X-Forwarded-Proto", "https");
        let mut safe = SAFE.to_vec();
        safe.push(("Strict-Transport-Security", "max-age=63072000"));
        let t = jwt(
            r#"{"alg":"none"}"#,
            r#"{"sub":"1","iat":1700000000,"exp":1700000900}"#,
        );
        let a = format!("Bearer {t}");
        let ex = exchange(
            "GET",
            "/v1/x",
            &[("Authorization", &a), fwd],
            200,
            &safe,
            "{}",
        );
        assert_eq!(rules_of(&ex), ["jwt_alg_none"]);
        let t = jwt(r#"{"alg":"HS256"}"#, r#"{"sub":"1","iat":1700000000}"#);
        let a = format!("Bearer {t}");
        let ex = exchange(
            "GET",
            "/v1/x",
            &[("Authorization", &a), fwd],
            200,
            &safe,
            "{}",
        );
        assert_eq!(rules_of(&ex), ["jwt_no_exp"]);
        let t = jwt(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"1","iat":1700000000,"exp":2015360000}"#,
        );
        let a = format!("Bearer {t}");
        let ex = exchange(
            "GET",
            "/v1/x",
            &[("Authorization", &a), fwd],
            200,
            &safe,
            "{}",
        );
        assert_eq!(rules_of(&ex), ["jwt_long_lifetime"]);
        // 29 days is within the default 30.
        let t = jwt(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"1","iat":1700000000,"exp":1702505600}"#,
        );
        let a = format!("Bearer {t}");
        let ex = exchange(
            "GET",
            "/v1/x",
            &[("Authorization", &a), fwd],
            200,
            &safe,
            "{}",
        );
        assert!(rules_of(&ex).is_empty());
    }

    #[test]
    fn unauthenticated_sensitive_data_and_excessive_exposure() {
        let body = r#"{"email":"ann@example.com","phone":"+14155550123","ssn":"536-22-1187","card":"4111111111111111"}"#;
        let ex = exchange("GET", "/v1/customers/7", &[], 200, &SAFE, body);
        assert_eq!(
            rules_of(&ex),
            ["excessive_data_exposure", "unauth_sensitive_data"]
        );
        // Authenticated: the exposure stays, the unauthenticated access does not.
        let ex = exchange(
            "GET",
            "/v1/customers/7",
            &[
                ("X-API-Key", "k-1234567890abcdef"),
                ("X-Forwarded-Proto", "https"),
            ],
            200,
            &[&SAFE[..], &[("Strict-Transport-Security", "max-age=1")]].concat(),
            body,
        );
        assert_eq!(rules_of(&ex), ["excessive_data_exposure"]);
        // A 401 to an anonymous caller gives nothing away.
        let ex = exchange(
            "GET",
            "/v1/me",
            &[],
            401,
            &SAFE,
            r#"{"error":"unauthorized"}"#,
        );
        assert!(rules_of(&ex).is_empty());
        // One type is not excessive; a login handing out a JWT is not sensitive data here.
        let ex = exchange(
            "GET",
            "/v1/me",
            &[],
            200,
            &SAFE,
            r#"{"email":"ann@example.com"}"#,
        );
        assert_eq!(rules_of(&ex), ["unauth_sensitive_data"]);
        let tok = jwt(r#"{"alg":"HS256"}"#, r#"{"sub":"1","exp":1700000900}"#);
        let ex = exchange(
            "POST",
            "/v1/login",
            &[],
            200,
            &SAFE,
            &format!(r#"{{"access_token":"{tok}"}}"#),
        );
        assert!(rules_of(&ex).is_empty());
    }

    #[test]
    fn credentials_in_query() {
        let ex = exchange(
            "GET",
            "/v1/reports?api_key=k-1234567890abcdef&format=json",
            &[],
            200,
            &SAFE,
            "{}",
        );
        assert_eq!(rules_of(&ex), ["credentials_in_query"]);
        let ex = exchange(
            "GET",
            "/v1/reports?format=json&page=2",
            &[],
            200,
            &SAFE,
            "{}",
        );
        assert!(rules_of(&ex).is_empty());
        // A presigned URL signs one request; its signature is not a reusable credential.
        let ex = exchange(
            "GET",
            "/bucket/report.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            &[],
            200,
            &SAFE,
            "{}",
        );
        let got = rules_of(&ex);
        assert!(
            !got.contains(&"credentials_in_query".to_string()),
            "{got:?}"
        );
    }

    #[test]
    fn verbose_errors() {
        let php = "<b>Fatal error</b>: Uncaught PDOException in /var/www/db.php:12\nStack trace:\n#0 /var/www/index.php(7): run()\n#1 {main}";
        let ex = exchange(
            "POST",
            "/v1/orders",
            &[],
            500,
            &[&SAFE[..], &[("Content-Type", "text/html")]].concat(),
            php,
        );
        assert_eq!(rules_of(&ex), ["verbose_error"]);
        let json = r#"{"error":"SQLSTATE[42000]: Syntax error","trace":"Stack trace:\n#0 /app/search.php(3): query()"}"#;
        let ex = exchange("GET", "/v1/search", &[], 500, &SAFE, json);
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        let mut insp = Inspector::new(InspectConfig::default());
        let ins = insp.inspect(&ex, server());
        let key = EndpointKey {
            host: ins.host.clone(),
            method: "GET".into(),
            template: ins.template.clone(),
        };
        let evs = f.observe(&ex, &ins, &key, server());
        assert_eq!(evs.len(), 1);
        let sigs = &evs[0]["evidence"]["signatures"];
        assert_eq!(sigs, &json!(["php_stack_trace", "sql_error"]));
        assert!(
            !evs[0].to_string().contains("search.php"),
            "no raw body text in evidence"
        );
        let terse = exchange("GET", "/v1/x", &[], 404, &SAFE, r#"{"error":"not_found"}"#);
        assert!(rules_of(&terse).is_empty());
        // The same trace in a 200 is not an error response.
        let ok = exchange("GET", "/v1/x", &[], 200, &SAFE, php);
        assert!(rules_of(&ok).is_empty());
    }

    #[test]
    fn error_signature_shapes() {
        let sigs = |s: &str| {
            let mut v = Vec::new();
            error_signatures(s.as_bytes(), &mut |x| v.push(x));
            v
        };
        assert_eq!(
            sigs("Traceback (most recent call last):\n  File \"a.py\""),
            ["python_traceback"]
        );
        assert_eq!(
            sigs("java.lang.NullPointerException\n\tat com.acme.Foo.bar(Foo.java:42)\n"),
            ["java_stack_trace"]
        );
        assert_eq!(
            sigs("Error: boom\n    at handler (/srv/app/index.js:10:5)"),
            ["node_stack_trace"]
        );
        assert_eq!(
            sigs("   at Acme.Api.Get() in C:\\src\\Api.cs:line 12"),
            ["dotnet_stack_trace"]
        );
        assert_eq!(
            sigs("panic: x\n\ngoroutine 1 [running]:\nmain.main()"),
            ["go_panic"]
        );
        assert!(sigs("see docs at example.java:x").is_empty());
        // The `at ` of a frame is looked for within a bounded distance only, which keeps a
        // body made of `.java:1)` with no line break linear.
        assert!(sigs(&format!("at {}Foo.java:12)", "x".repeat(600))).is_empty());
        assert!(sigs(&".java:1)".repeat(8192)).is_empty());
        assert_eq!(status_str(404, &mut [0; 3]), "404");
        assert_eq!(status_str(1000, &mut [0; 3]), "other");
        assert_eq!(status_str(99, &mut [0; 3]), "other");
        assert!(sigs("Stack trace: none available").is_empty());
        assert!(sigs(r#"{"error":"not_found","message":"no such project"}"#).is_empty());
    }

    #[test]
    fn cors_rules() {
        let creds = ("Access-Control-Allow-Credentials", "true");
        let mk = |origin: &str, acao: &str, with_creds: bool| {
            let mut h = SAFE.to_vec();
            h.push(("Access-Control-Allow-Origin", acao));
            if with_creds {
                h.push(creds);
            }
            exchange("GET", "/v1/x", &[("Origin", origin)], 200, &h, "{}")
        };
        assert_eq!(
            rules_of(&mk("https://a.example", "*", true)),
            ["permissive_cors"]
        );
        assert!(rules_of(&mk("https://a.example", "*", false)).is_empty());
        assert_eq!(rules_of(&mk("null", "null", true)), ["permissive_cors"]);
        // One allowed origin echoed is how CORS allow-lists answer; two distinct ones are
        // reflection.
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        assert!(run(
            &mut f,
            &mk("https://app.example", "https://app.example", true)
        )
        .is_empty());
        assert!(run(
            &mut f,
            &mk("https://app.example", "https://app.example", true)
        )
        .is_empty());
        assert_eq!(
            run(
                &mut f,
                &mk("https://evil.example", "https://evil.example", true)
            ),
            ["permissive_cors"]
        );
        let mut p = Policy::default();
        p.settings.cors_allowed_origins =
            vec![crate::policy::Glob::host("https://app.example").unwrap()];
        let mut f = Findings::new(p, Owners::default(), Vec::new());
        assert!(run(
            &mut f,
            &mk("https://app.example", "https://app.example", true)
        )
        .is_empty());
        assert_eq!(
            run(
                &mut f,
                &mk("https://evil.example", "https://evil.example", true)
            ),
            ["permissive_cors"]
        );
    }

    #[test]
    fn headers_banners_and_admin() {
        let ex = exchange(
            "GET",
            "/internal/admin/users",
            &[],
            200,
            &[
                ("Server", "Apache/2.4.49 (Unix) PHP/7.2.1"),
                ("X-Powered-By", "PHP/7.2.1"),
            ],
            "{}",
        );
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        let mut insp = Inspector::new(InspectConfig::default());
        let ins = insp.inspect(&ex, server());
        let key = EndpointKey {
            host: ins.host.clone(),
            method: "GET".into(),
            template: ins.template.clone(),
        };
        let evs = f.observe(&ex, &ins, &key, server());
        let by = |r: &str| {
            evs.iter()
                .find(|e| e["rule"] == r)
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(
            by("server_banner")["evidence"]["products"],
            json!(["Apache/2.4.49", "PHP/7.2.1"])
        );
        assert_eq!(
            by("missing_security_headers")["evidence"]["missing"],
            json!([
                "cache-control",
                "content-security-policy",
                "x-content-type-options",
                "x-frame-options"
            ])
        );
        assert_eq!(by("admin_endpoint_exposed")["owasp"], "API5:2023");
        assert_eq!(evs.len(), 3);
        // A bare `Server: nginx` names no version.
        let ex = exchange(
            "GET",
            "/v1/x",
            &[],
            200,
            &[&SAFE[..], &[("Server", "nginx")]].concat(),
            "{}",
        );
        assert!(rules_of(&ex).is_empty());
        // Admin endpoints behind credentials, or answering 401, are not exposed.
        let ex = exchange("GET", "/admin", &[], 401, &SAFE, "{}");
        assert!(rules_of(&ex).is_empty());
        assert_eq!(
            versioned_products("Microsoft-IIS/10.0").collect::<Vec<_>>(),
            ["Microsoft-IIS/10.0"]
        );
        assert!(versioned_products("gws").next().is_none());
        assert!(versioned_products("a/b").next().is_none());
    }

    #[test]
    fn dedup_counts_and_merge() {
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        let ex = exchange(
            "GET",
            "/v1/x?api_key=k-1234567890abcdef",
            &[],
            200,
            &SAFE,
            "{}",
        );
        assert_eq!(run(&mut f, &ex).len(), 1);
        assert!(run(&mut f, &ex).is_empty(), "second time: no new event");
        let mut g = f.fork();
        assert_eq!(
            run(&mut g, &ex).len(),
            1,
            "another worker announces its own"
        );
        f.merge(&g);
        let all = f.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0]["count"], 3);
        assert_eq!(all[0]["rule"], "credentials_in_query");
        assert_eq!(all[0]["evidence"]["params"], json!(["api_key"]));
        assert_eq!(all[0]["id"].as_str().unwrap().len(), 32);
        assert!(!all[0].to_string().contains("k-1234567890abcdef"));
    }

    #[test]
    fn policy_exceptions_severities_and_custom_rules() {
        let v = crate::policy::parse_document(
            r#"
            [rules.credentials_in_query]
            severity = "critical"
            [rules.missing_security_headers]
            enabled = false
            [[exceptions]]
            rules = ["unauth_sensitive_data"]
            templates = ["/public/**"]
            [[custom]]
            id = "no-email-in-query"
            severity = "high"
            owasp = "API3:2023"
            forbid_sensitive = { types = ["email"], locations = ["request.query"] }
            [[custom]]
            id = "admin-needs-auth"
            templates = ["/admin/**"]
            require_auth = true
            "#,
            crate::policy::Syntax::Toml,
        )
        .unwrap();
        let p = Policy::from_value(v).unwrap();
        let mut f = Findings::new(p, Owners::default(), Vec::new());
        let ex = exchange(
            "GET",
            "/v1/x?api_key=k-1234567890abcdef&email=ann%40example.com",
            &[],
            200,
            &[],
            "{}",
        );
        let mut insp = Inspector::new(InspectConfig::default());
        let ins = insp.inspect(&ex, server());
        let key = EndpointKey {
            host: ins.host.clone(),
            method: "GET".into(),
            template: ins.template.clone(),
        };
        let evs = f.observe(&ex, &ins, &key, server());
        let rules: BTreeSet<&str> = evs.iter().map(|e| e["rule"].as_str().unwrap()).collect();
        assert_eq!(
            rules,
            BTreeSet::from(["credentials_in_query", "no-email-in-query"])
        );
        let cq = evs
            .iter()
            .find(|e| e["rule"] == "credentials_in_query")
            .unwrap();
        assert_eq!(cq["severity"], "critical");
        let ce = evs
            .iter()
            .find(|e| e["rule"] == "no-email-in-query")
            .unwrap();
        assert_eq!(ce["custom"], true);
        assert_eq!(ce["owasp"], "API3:2023");
        assert_eq!(ce["evidence"]["locations"], json!(["request.query"]));

        let ex = exchange(
            "GET",
            "/public/people",
            &[],
            200,
            &[],
            r#"{"email":"ann@example.com"}"#,
        );
        assert!(run(&mut f, &ex).is_empty(), "excepted");
        assert_eq!(f.stats.suppressed, 1);
        let ex = exchange("GET", "/admin/stats", &[], 200, &[], "{}");
        let got = run(&mut f, &ex);
        assert!(got.contains(&"admin-needs-auth".to_string()), "{got:?}");
        let ex = exchange(
            "GET",
            "/admin/stats",
            &[("X-API-Key", "k-1234567890abcdef")],
            200,
            &[],
            "{}",
        );
        let mut g = f.fork();
        assert!(!run(&mut g, &ex).contains(&"admin-needs-auth".to_string()));
    }

    #[test]
    fn owners_and_unowned() {
        let v = crate::policy::parse_document(
            "[[owners]]\nteam = \"legacy\"\ncontact = \"l@example.com\"\nhosts = [\"api.example.test\"]\npaths = [\"/v1\"]\n",
            crate::policy::Syntax::Toml,
        )
        .unwrap();
        let owners = Owners::from_value(v).unwrap();
        let mut f = Findings::new(Policy::default(), owners, Vec::new());
        let ex = exchange(
            "GET",
            "/v1/x?api_key=k-1234567890abcdef",
            &[],
            200,
            &SAFE,
            "{}",
        );
        let mut insp = Inspector::new(InspectConfig::default());
        let ins = insp.inspect(&ex, server());
        let key = EndpointKey {
            host: ins.host.clone(),
            method: "GET".into(),
            template: ins.template.clone(),
        };
        let evs = f.observe(&ex, &ins, &key, server());
        assert_eq!(evs[0]["owner"]["team"], "legacy");
        assert_eq!(
            f.owner_of(&key).unwrap().contact.as_deref(),
            Some("l@example.com")
        );
        let ex = exchange("GET", "/v2/y", &[], 200, &SAFE, "{}");
        assert_eq!(run(&mut f, &ex), ["unowned_endpoint"]);
    }

    #[test]
    fn reload_rejudges_records_under_the_new_policy_and_owners() {
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        let ex = exchange(
            "GET",
            "/v1/x?api_key=k-1234567890abcdef",
            &[],
            200,
            &SAFE,
            "{}",
        );
        assert_eq!(run(&mut f, &ex), ["credentials_in_query"]);
        let reported = |f: &Findings| -> Vec<String> {
            f.all()
                .iter()
                .map(|v| format!("{} {}", v["rule"], v["owner"]["team"]))
                .collect()
        };
        assert_eq!(reported(&f), ["\"credentials_in_query\" null"]);
        let doc = |t: &str| crate::policy::parse_document(t, crate::policy::Syntax::Toml).unwrap();
        let owners = Owners::from_value(doc(
            "[[owners]]\nteam = \"legacy\"\ncontact = \"l@example.com\"\nhosts = [\"**\"]\n",
        ))
        .unwrap();
        let policy = Policy::from_value(doc(
            "[[exceptions]]\nrules = [\"credentials_in_query\"]\nhosts = [\"**\"]\nreason = \"accepted\"\n",
        ))
        .unwrap();
        f.reload(Arc::new(policy), Arc::new(owners));
        assert!(reported(&f).is_empty(), "{:?}", reported(&f));
        f.reload(Arc::new(Policy::default()), f.owners.clone());
        assert_eq!(reported(&f), ["\"credentials_in_query\" \"legacy\""]);
        // Already announced: a reload does not announce it again.
        assert!(run(&mut f, &ex).is_empty());
    }

    #[test]
    fn risk_scores_explain_themselves() {
        let mut inv = Inventory::new(Default::default());
        let mut insp = Inspector::new(InspectConfig::default());
        let mut f = Findings::new(Policy::default(), Owners::default(), Vec::new());
        let body = r#"{"email":"ann@example.com","ssn":"536-22-1187","card":"4111111111111111"}"#;
        let risky = exchange("GET", "/v1/customers/7", &[], 200, &[], body);
        let clean = exchange(
            "GET",
            "/v1/projects/7",
            &[
                ("Authorization", "Bearer opaque-token-value-123456"),
                ("X-Forwarded-Proto", "https"),
            ],
            200,
            &[&SAFE[..], &[("Strict-Transport-Security", "max-age=1")]].concat(),
            r#"{"id":7}"#,
        );
        for ex in [&risky, &clean] {
            let ins = insp.inspect(ex, server());
            inv.record(ex, "127.0.0.1:8080", &ins);
            let key = EndpointKey {
                host: ins.host.clone(),
                method: "GET".into(),
                template: ins.template.clone(),
            };
            f.observe(ex, &ins, &key, server());
        }
        let scores: Vec<(String, Value)> = inv
            .sorted()
            .into_iter()
            .map(|(k, s)| (k.template.clone(), risk(k, s, &f)))
            .collect();
        let (_, r) = scores
            .iter()
            .find(|(t, _)| t.contains("customers"))
            .unwrap();
        assert!(r["score"].as_u64().unwrap() >= 75, "{r}");
        assert_eq!(r["level"], "critical");
        assert_eq!(r["factors"][0]["points"], 40);
        assert_eq!(r["factors"][1]["points"], 30);
        let (_, c) = scores.iter().find(|(t, _)| t.contains("projects")).unwrap();
        assert_eq!(c["score"], 0, "{c}");
        assert_eq!(c["level"], "none");
    }
}
