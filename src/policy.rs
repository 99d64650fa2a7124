//! Policy as code: which finding rules run, how severe they are, where they do not apply, and
//! the organisation's own rules — one TOML, YAML or JSON file (`--policy FILE`), checked by
//! `apitap policy check FILE`.
//!
//! Owns the policy file format (documented with an example in `docs/findings.md`), its
//! validation, and the globs that policies, ownership maps ([`crate::owners`]) and declared
//! specs ([`crate::spec`]) use to name hosts and path templates.
//!
//! # Validation
//! The file is parsed into a JSON value first (whatever its syntax) and deserialised once with
//! unknown keys rejected, so a mistyped key is an error, never a silently ignored setting.
//! Every error names its key path: `rules.server_banenr: unknown rule (known: …)`,
//! `custom[1].severity: unknown variant `hgh`, expected one of …`,
//! `exceptions[0].hosts[2]: empty glob`. Type errors stop at the first one (the
//! deserialiser's); the semantic checks after it report every problem at once.
//!
//! # Globs
//! A glob is matched segment by segment: path templates split on `/`, hosts on `.` (hosts are
//! compared in lower case; templates case-sensitively, RFC 9110 §4.2.3). In a segment `*`
//! matches any run of characters; a whole segment `**` matches any number of segments,
//! including none (`/admin/**` matches `/admin` and `/admin/users/{id}`; `**.example.com`
//! matches `example.com` and `a.b.example.com`). A glob that is just `*` or `**` matches
//! everything. Placeholders are plain text to a glob: `/users/*` matches `/users/{id}`.
//! Matching is dynamic programming over segments (no backtracking blow-up): at most
//! (glob segments × text segments) segment comparisons, each linear in the segment lengths.
use crate::findings::{Rule, Severity};
use crate::infer::auth::AuthKind;
use crate::infer::sensitive::{Location, SensitiveType};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest policy, owners or spec file read (bytes): these are hand-written documents.
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Custom rules per policy: their scopes are cached per endpoint as a 64-bit mask.
pub const MAX_CUSTOM_RULES: usize = 64;

/// Default `settings.security_headers`: the response headers of the OWASP REST Security Cheat
/// Sheet ("Security Headers"). `strict-transport-security` is only required of exchanges that
/// were encrypted upstream (RFC 6797 §8.1: a user agent ignores it over plain HTTP, where the
/// cleartext rules are the finding).
pub const DEFAULT_SECURITY_HEADERS: [&str; 5] = [
    "cache-control",
    "content-security-policy",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
];

/// Default `settings.admin_segments`.
pub const DEFAULT_ADMIN_SEGMENTS: [&str; 8] = [
    "admin",
    "administrator",
    "internal",
    "debug",
    "actuator",
    "manage",
    "management",
    "console",
];

/// Default `settings.unauth_sensitive_types`: personal and secret data. `jwt` is left out
/// (a login endpoint hands a token to a caller who has none yet, by design) and so is
/// `ip_address` (echo and health endpoints return addresses routinely).
pub const DEFAULT_UNAUTH_TYPES: [SensitiveType; 8] = [
    SensitiveType::Email,
    SensitiveType::Phone,
    SensitiveType::CreditCard,
    SensitiveType::Ssn,
    SensitiveType::Iban,
    SensitiveType::Password,
    SensitiveType::PrivateKey,
    SensitiveType::ApiKey,
];

// ---------------------------------------------------------------------------------------------
// Documents.

/// A policy, owners or spec file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("{path} is larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The file is not valid TOML, YAML or JSON.
    #[error("{path} is not valid {syntax}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// `TOML`, `YAML` or `JSON`.
        syntax: &'static str,
        /// The parser's message (with line and column).
        message: String,
    },
}

/// Document syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// TOML 1.0.
    Toml,
    /// YAML 1.2.
    Yaml,
    /// JSON (RFC 8259).
    Json,
}

impl Syntax {
    /// The syntax named by a file extension (`.toml`, `.yaml`/`.yml`, `.json`).
    pub fn from_path(p: &Path) -> Option<Syntax> {
        let ext = p.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Syntax::Toml),
            "yaml" | "yml" => Some(Syntax::Yaml),
            "json" => Some(Syntax::Json),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Syntax::Toml => "TOML",
            Syntax::Yaml => "YAML",
            Syntax::Json => "JSON",
        }
    }
}

/// Parses `text` as `syntax` into a JSON value.
pub fn parse_document(text: &str, syntax: Syntax) -> Result<Value, String> {
    match syntax {
        Syntax::Toml => toml::from_str::<Value>(text).map_err(|e| e.to_string()),
        Syntax::Yaml => serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string()),
        Syntax::Json => serde_json::from_str::<Value>(text).map_err(|e| e.to_string()),
    }
}

/// Reads a TOML, YAML or JSON file (by extension; without one: JSON if it starts with `{`,
/// else TOML, else YAML) into a JSON value.
pub fn read_document(path: &Path) -> Result<Value, DocError> {
    let meta = std::fs::metadata(path).map_err(|source| DocError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(DocError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_DOCUMENT_BYTES,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| DocError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let syntax_err = |syntax: Syntax, message: String| DocError::Syntax {
        path: path.to_path_buf(),
        syntax: syntax.name(),
        message,
    };
    if let Some(s) = Syntax::from_path(path) {
        return parse_document(&text, s).map_err(|m| syntax_err(s, m));
    }
    if text.trim_start().starts_with('{') {
        return parse_document(&text, Syntax::Json).map_err(|m| syntax_err(Syntax::Json, m));
    }
    match parse_document(&text, Syntax::Toml) {
        Ok(v) => Ok(v),
        Err(toml_err) => {
            parse_document(&text, Syntax::Yaml).map_err(|_| syntax_err(Syntax::Toml, toml_err))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Globs.

/// One segment of a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
enum GlobSeg {
    /// `**`: any number of segments.
    Any,
    /// Literal text with `*` wildcards (within the segment).
    Pat(String),
}

/// A host or path-template glob (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    text: String,
    sep: char,
    all: bool,
    segs: Vec<GlobSeg>,
}

/// Why a glob was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Nothing to match.
    #[error("empty glob")]
    Empty,
    /// `***` or `**` inside a segment.
    #[error("`**` must be a whole segment (`/a/**/b`, `**.example.com`)")]
    MisplacedDoubleStar,
    /// Longer than 1024 bytes.
    #[error("glob longer than 1024 bytes")]
    TooLong,
}

impl Glob {
    fn new(text: &str, sep: char, lower: bool) -> Result<Glob, GlobError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(GlobError::Empty);
        }
        if t.len() > 1024 {
            return Err(GlobError::TooLong);
        }
        let t = if lower {
            t.to_ascii_lowercase()
        } else {
            t.to_string()
        };
        let all = t == "*" || t == "**";
        let mut segs = Vec::new();
        for s in t.split(sep) {
            if s == "**" {
                // Consecutive `**` are one.
                if segs.last() != Some(&GlobSeg::Any) {
                    segs.push(GlobSeg::Any);
                }
            } else if s.contains("**") {
                return Err(GlobError::MisplacedDoubleStar);
            } else {
                segs.push(GlobSeg::Pat(s.to_string()));
            }
        }
        Ok(Glob {
            text: t,
            sep,
            all,
            segs,
        })
    }

    /// A host glob (labels split on `.`, compared in lower case; a port is part of the last
    /// label: `localhost:8080`).
    pub fn host(text: &str) -> Result<Glob, GlobError> {
        Glob::new(text, '.', true)
    }

    /// A path-template glob (segments split on `/`, case-sensitive).
    pub fn path(text: &str) -> Result<Glob, GlobError> {
        Glob::new(text, '/', false)
    }

    /// The glob as written (hosts lower-cased).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Literal characters in the glob: how specific it is.
    pub fn specificity(&self) -> usize {
        if self.all {
            return 0;
        }
        self.segs
            .iter()
            .map(|s| match s {
                GlobSeg::Any => 0,
                GlobSeg::Pat(p) => p.chars().filter(|c| *c != '*').count() + 1,
            })
            .sum()
    }

    /// Whether `text` matches (hosts are expected in lower case already).
    pub fn matches(&self, text: &str) -> bool {
        if self.all {
            return true;
        }
        let n = text.split(self.sep).count();
        // reach[j]: the glob segments seen so far can match the first j text segments.
        let mut reach = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        reach[0] = true;
        for seg in &self.segs {
            next.iter_mut().for_each(|x| *x = false);
            match seg {
                GlobSeg::Any => {
                    let mut any = false;
                    for j in 0..=n {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                GlobSeg::Pat(p) => {
                    for (j, t) in text.split(self.sep).enumerate() {
                        if reach[j] && segment_matches(p.as_bytes(), t.as_bytes()) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            std::mem::swap(&mut reach, &mut next);
            if !reach.iter().any(|x| *x) {
                return false;
            }
        }
        reach[n]
    }

    /// Whether `template` is under this path-prefix glob: it matches, or one of its
    /// segment-boundary prefixes does (`/api/v1` covers `/api/v1/users/{id}`).
    pub fn matches_prefix(&self, template: &str) -> bool {
        if self.matches(template) {
            return true;
        }
        let mut end = template.len();
        while let Some(i) = template[..end].rfind(self.sep) {
            if i == 0 {
                break;
            }
            if self.matches(&template[..i]) {
                return true;
            }
            end = i;
        }
        false
    }
}

/// `*` wildcard match of one segment, with the classic single-backtrack-point algorithm
/// (linear in practice, at most |p|·|t| steps).
pub(crate) fn segment_matches(p: &[u8], t: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == t[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == b'*')
}

/// Host and template scope shared by exceptions and custom rules.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Hosts (any when empty).
    pub hosts: Vec<Glob>,
    /// Templates (any when empty).
    pub templates: Vec<Glob>,
    /// Methods, upper case (any when empty).
    pub methods: Vec<String>,
    /// Hosts excluded.
    pub not_hosts: Vec<Glob>,
    /// Templates excluded.
    pub not_templates: Vec<Glob>,
}

impl Scope {
    /// Whether the endpoint is in scope.
    pub fn contains(&self, host: &str, method: &str, template: &str) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|g| g.matches(host)))
            && (self.templates.is_empty() || self.templates.iter().any(|g| g.matches(template)))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && !self.not_hosts.iter().any(|g| g.matches(host))
            && !self.not_templates.iter().any(|g| g.matches(template))
    }
}

// ---------------------------------------------------------------------------------------------
// The policy.

/// Tunables of the built-in rules (`[settings]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Treat `X-Forwarded-Proto: https` (also `Forwarded: proto=https`, `X-Forwarded-Ssl: on`,
    /// `Front-End-Https: on`, HTTP/2 `:scheme: https`) as proof that the client's leg was
    /// encrypted by a TLS-terminating proxy in front of what the sensor sees. Default true:
    /// the cleartext rules then stay quiet for it. Turn off where clients can reach the
    /// servers directly and could forge the header.
    pub trust_forwarded_proto: bool,
    /// `jwt_long_lifetime` fires above this `exp - iat`, seconds. Default 30 days.
    pub jwt_max_lifetime_secs: i64,
    /// `excessive_data_exposure` fires when one response body holds at least this many
    /// distinct sensitive types. Default 3.
    pub excessive_data_types: usize,
    /// Response headers `missing_security_headers` requires (lower case).
    pub security_headers: Vec<String>,
    /// Template segments that make an endpoint admin/internal-looking (lower case).
    pub admin_segments: Vec<String>,
    /// Origins trusted to receive credentialed CORS answers; a reflected origin outside the
    /// list is `permissive_cors`. Empty: reflection of two distinct origins on a host is.
    pub cors_allowed_origins: Vec<Glob>,
    /// Sensitive types that make an unauthenticated 2xx response `unauth_sensitive_data`.
    pub unauth_sensitive_types: Vec<SensitiveType>,
    /// Findings below this severity are not reported. Default `info` (all).
    pub min_severity: Severity,
    /// Endpoints of hosts that no declared spec covers are shadow endpoints (default false:
    /// a spec speaks for its own hosts only).
    pub shadow_hosts_without_spec: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trust_forwarded_proto: true,
            jwt_max_lifetime_secs: 30 * 86_400,
            excessive_data_types: 3,
            security_headers: DEFAULT_SECURITY_HEADERS.map(String::from).to_vec(),
            admin_segments: DEFAULT_ADMIN_SEGMENTS.map(String::from).to_vec(),
            cors_allowed_origins: Vec::new(),
            unauth_sensitive_types: DEFAULT_UNAUTH_TYPES.to_vec(),
            min_severity: Severity::Info,
            shadow_hosts_without_spec: false,
        }
    }
}

/// A built-in rule's overrides (`[rules.<id>]`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RuleOverride {
    /// `false` turns the rule off.
    pub enabled: Option<bool>,
    /// Severity instead of the rule's own.
    pub severity: Option<Severity>,
}

/// Where rules do not apply (`[[exceptions]]`).
#[derive(Clone, Debug)]
pub struct Exception {
    /// Rule ids (built-in or custom); empty means every rule.
    pub rules: Vec<String>,
    /// Endpoints excepted.
    pub scope: Scope,
    /// Why (kept for the audit trail; not interpreted).
    pub reason: Option<String>,
}

/// What a custom rule forbids or requires.
#[derive(Clone, Debug)]
pub enum Condition {
    /// Fires on an exchange carrying one of `types` at one of `locations` (any location when
    /// empty).
    ForbidSensitive {
        /// Sensitive types.
        types: Vec<SensitiveType>,
        /// Locations.
        locations: Vec<Location>,
    },
    /// Fires on a 2xx answer to a request whose credential is not one of `allowed` (with
    /// `require_auth = true`: any credential but none).
    RequireAuth {
        /// Acceptable credential kinds.
        allowed: Vec<AuthKind>,
    },
}

/// An organisation's own rule (`[[custom]]`).
#[derive(Clone, Debug)]
pub struct CustomRule {
    /// Id (`[a-z0-9_.-]`, not a built-in id).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Severity (default medium).
    pub severity: Severity,
    /// OWASP API Security Top 10 2023 category (`API3:2023`).
    pub owasp: Option<String>,
    /// Endpoints it applies to.
    pub scope: Scope,
    /// What it checks.
    pub condition: Condition,
}

/// A validated policy. [`Policy::default`] runs every built-in rule with its defaults.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Rule tunables.
    pub settings: Settings,
    /// Built-in rule overrides.
    pub rules: BTreeMap<Rule, RuleOverride>,
    /// Exceptions.
    pub exceptions: Vec<Exception>,
    /// Custom rules (at most [`MAX_CUSTOM_RULES`]).
    pub custom: Vec<CustomRule>,
}

impl Policy {
    /// Whether built-in `rule` runs.
    pub fn enabled(&self, rule: Rule) -> bool {
        self.rules
            .get(&rule)
            .and_then(|o| o.enabled)
            .unwrap_or(true)
    }

    /// The severity `rule` reports with.
    pub fn severity(&self, rule: Rule) -> Severity {
        self.rules
            .get(&rule)
            .and_then(|o| o.severity)
            .unwrap_or_else(|| rule.severity())
    }

    /// The exception that covers (`rule_id`, endpoint), if any.
    pub fn exception(
        &self,
        rule_id: &str,
        host: &str,
        method: &str,
        template: &str,
    ) -> Option<&Exception> {
        self.exceptions.iter().find(|e| {
            (e.rules.is_empty() || e.rules.iter().any(|r| r == rule_id))
                && e.scope.contains(host, method, template)
        })
    }

    /// Loads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let v = read_document(path)?;
        Policy::from_value(v)
    }

    /// Validates a parsed policy document.
    pub fn from_value(v: Value) -> Result<Policy, PolicyError> {
        let file: PolicyFile = serde_path_to_error::deserialize(v).map_err(|e| {
            PolicyError::Invalid(vec![Issue {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            }])
        })?;
        file.validate()
    }
}

/// One problem in a policy, owners or spec file, at a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Key path (`custom[1].severity`; `.` for the document itself).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unreadable or not TOML/YAML/JSON.
    #[error(transparent)]
    Document(#[from] DocError),
    /// Problems at key paths (all of them, one per line).
    #[error("{}", render_issues(.0))]
    Invalid(Vec<Issue>),
}

impl PolicyError {
    /// The problems, each with its key path (one for an unreadable document, key `.`).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            PolicyError::Document(e) => vec![Issue {
                key: ".".into(),
                message: e.to_string(),
            }],
            PolicyError::Invalid(v) => v.clone(),
        }
    }
}

/// The issues, one per line.
pub fn render_issues(v: &[Issue]) -> String {
    v.iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `apitap policy check FILE`: the policy, or every problem found in it (with key paths).
pub fn check(path: &Path) -> Result<Policy, Vec<Issue>> {
    Policy::load(path).map_err(|e| e.issues())
}

// ---------------------------------------------------------------------------------------------
// The file format.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    settings: SettingsFile,
    #[serde(default)]
    rules: BTreeMap<String, RuleFile>,
    #[serde(default)]
    exceptions: Vec<ExceptionFile>,
    #[serde(default)]
    custom: Vec<CustomFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    trust_forwarded_proto: Option<bool>,
    jwt_max_lifetime: Option<DurationValue>,
    excessive_data_types: Option<usize>,
    security_headers: Option<Vec<String>>,
    admin_segments: Option<Vec<String>>,
    cors_allowed_origins: Option<Vec<String>>,
    unauth_sensitive_types: Option<Vec<SensitiveType>>,
    min_severity: Option<Severity>,
    shadow_hosts_without_spec: Option<bool>,
}

/// `"30d"` (humantime) or a number of seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Secs(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    enabled: Option<bool>,
    severity: Option<Severity>,
}

struct ScopeFile {
    hosts: Vec<String>,
    templates: Vec<String>,
    methods: Vec<String>,
    not_hosts: Vec<String>,
    not_templates: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionFile {
    rules: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    templates: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    not_hosts: Vec<String>,
    #[serde(default)]
    not_templates: Vec<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForbidFile {
    types: Vec<SensitiveType>,
    #[serde(default)]
    locations: Vec<Location>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomFile {
    id: String,
    title: Option<String>,
    description: Option<String>,
    severity: Option<Severity>,
    owasp: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    templates: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    not_hosts: Vec<String>,
    #[serde(default)]
    not_templates: Vec<String>,
    forbid_sensitive: Option<ForbidFile>,
    require_auth: Option<bool>,
    allowed_auth: Option<Vec<AuthKind>>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

fn valid_header_name(s: &str) -> bool {
    // RFC 9110 §5.1 token characters.
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `APIn:2023` with n in 1..=10.
pub fn valid_owasp(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("API") else {
        return false;
    };
    let Some((n, year)) = rest.split_once(':') else {
        return false;
    };
    year == "2023" && n.parse::<u8>().is_ok_and(|n| (1..=10).contains(&n)) && !n.starts_with('0')
}

fn globs(
    list: &[String],
    key: &str,
    make: fn(&str) -> Result<Glob, GlobError>,
    issues: &mut Vec<Issue>,
) -> Vec<Glob> {
    let mut out = Vec::with_capacity(list.len());
    for (i, g) in list.iter().enumerate() {
        match make(g) {
            Ok(g) => out.push(g),
            Err(e) => issues.push(Issue {
                key: format!("{key}[{i}]"),
                message: e.to_string(),
            }),
        }
    }
    out
}

fn methods(list: &[String], key: &str, issues: &mut Vec<Issue>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
            issues.push(Issue {
                key: format!("{key}[{i}]"),
                message: format!("{m:?} is not an HTTP method"),
            });
        } else {
            out.push(m.to_ascii_uppercase());
        }
    }
    out
}

fn scope(s: ScopeFile, key: &str, issues: &mut Vec<Issue>) -> Scope {
    Scope {
        hosts: globs(&s.hosts, &format!("{key}hosts"), Glob::host, issues),
        templates: globs(&s.templates, &format!("{key}templates"), Glob::path, issues),
        methods: methods(&s.methods, &format!("{key}methods"), issues),
        not_hosts: globs(&s.not_hosts, &format!("{key}not_hosts"), Glob::host, issues),
        not_templates: globs(
            &s.not_templates,
            &format!("{key}not_templates"),
            Glob::path,
            issues,
        ),
    }
}

fn known_rules() -> String {
    Rule::ALL
        .iter()
        .map(|r| r.id())
        .collect::<Vec<_>>()
        .join(", ")
}

impl PolicyFile {
    fn validate(self) -> Result<Policy, PolicyError> {
        let mut issues = Vec::new();
        let mut p = Policy::default();
        if let Some(v) = self.version {
            if v != 1 {
                issues.push(Issue {
                    key: "version".into(),
                    message: format!("unsupported policy version {v} (this apitap reads 1)"),
                });
            }
        }
        let s = self.settings;
        let st = &mut p.settings;
        if let Some(v) = s.trust_forwarded_proto {
            st.trust_forwarded_proto = v;
        }
        if let Some(d) = s.jwt_max_lifetime {
            match d {
                DurationValue::Secs(n) if n > 0 => st.jwt_max_lifetime_secs = n,
                DurationValue::Text(t) => match humantime::parse_duration(&t) {
                    Ok(d) if d.as_secs() > 0 => {
                        st.jwt_max_lifetime_secs = d.as_secs().min(i64::MAX as u64) as i64
                    }
                    Ok(_) => issues.push(Issue {
                        key: "settings.jwt_max_lifetime".into(),
                        message: "must be at least one second".into(),
                    }),
                    Err(e) => issues.push(Issue {
                        key: "settings.jwt_max_lifetime".into(),
                        message: format!("{t:?} is not a duration ({e}); e.g. \"30d\", \"12h\""),
                    }),
                },
                DurationValue::Secs(_) => issues.push(Issue {
                    key: "settings.jwt_max_lifetime".into(),
                    message: "must be a positive number of seconds or a duration like \"30d\""
                        .into(),
                }),
            }
        }
        if let Some(n) = s.excessive_data_types {
            if (2..=SensitiveType::ALL.len()).contains(&n) {
                st.excessive_data_types = n;
            } else {
                issues.push(Issue {
                    key: "settings.excessive_data_types".into(),
                    message: format!(
                        "must be between 2 and {} (the number of sensitive types)",
                        SensitiveType::ALL.len()
                    ),
                });
            }
        }
        if let Some(list) = s.security_headers {
            st.security_headers.clear();
            for (i, h) in list.iter().enumerate() {
                if valid_header_name(h) {
                    st.security_headers.push(h.to_ascii_lowercase());
                } else {
                    issues.push(Issue {
                        key: format!("settings.security_headers[{i}]"),
                        message: format!("{h:?} is not a header name"),
                    });
                }
            }
        }
        if let Some(list) = s.admin_segments {
            st.admin_segments.clear();
            for (i, a) in list.iter().enumerate() {
                if a.is_empty() || a.contains('/') {
                    issues.push(Issue {
                        key: format!("settings.admin_segments[{i}]"),
                        message: "must be one non-empty path segment (no `/`)".into(),
                    });
                } else {
                    st.admin_segments.push(a.to_ascii_lowercase());
                }
            }
        }
        if let Some(list) = s.cors_allowed_origins {
            // Origins (`https://app.example.com`) are matched whole, lower case, `*` within.
            for (i, o) in list.iter().enumerate() {
                match Glob::new(o, '\u{0}', true) {
                    Ok(g) => st.cors_allowed_origins.push(g),
                    Err(e) => issues.push(Issue {
                        key: format!("settings.cors_allowed_origins[{i}]"),
                        message: e.to_string(),
                    }),
                }
            }
        }
        if let Some(t) = s.unauth_sensitive_types {
            st.unauth_sensitive_types = t;
        }
        if let Some(m) = s.min_severity {
            st.min_severity = m;
        }
        if let Some(b) = s.shadow_hosts_without_spec {
            st.shadow_hosts_without_spec = b;
        }

        for (id, r) in self.rules {
            match Rule::from_id(&id) {
                Some(rule) => {
                    p.rules.insert(
                        rule,
                        RuleOverride {
                            enabled: r.enabled,
                            severity: r.severity,
                        },
                    );
                }
                None => issues.push(Issue {
                    key: format!("rules.{id}"),
                    message: format!("unknown rule (known: {})", known_rules()),
                }),
            }
        }

        let custom_ids: BTreeSet<String> = self.custom.iter().map(|c| c.id.clone()).collect();
        for (i, e) in self.exceptions.into_iter().enumerate() {
            let key = format!("exceptions[{i}]");
            for (j, r) in e.rules.iter().enumerate() {
                if r != "*" && Rule::from_id(r).is_none() && !custom_ids.contains(r) {
                    issues.push(Issue {
                        key: format!("{key}.rules[{j}]"),
                        message: format!(
                            "unknown rule {r:?} (known: {}, custom rule ids, or \"*\")",
                            known_rules()
                        ),
                    });
                }
            }
            if e.rules.is_empty() {
                issues.push(Issue {
                    key: format!("{key}.rules"),
                    message: "name the rules excepted (`[\"*\"]` for all)".into(),
                });
            }
            let scope = scope(
                ScopeFile {
                    hosts: e.hosts,
                    templates: e.templates,
                    methods: e.methods,
                    not_hosts: e.not_hosts,
                    not_templates: e.not_templates,
                },
                &format!("{key}."),
                &mut issues,
            );
            let rules = if e.rules.iter().any(|r| r == "*") {
                Vec::new()
            } else {
                e.rules
            };
            p.exceptions.push(Exception {
                rules,
                scope,
                reason: e.reason,
            });
        }

        if self.custom.len() > MAX_CUSTOM_RULES {
            issues.push(Issue {
                key: "custom".into(),
                message: format!("at most {MAX_CUSTOM_RULES} custom rules"),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, c) in self.custom.into_iter().take(MAX_CUSTOM_RULES).enumerate() {
            let key = format!("custom[{i}]");
            if !valid_id(&c.id) {
                issues.push(Issue {
                    key: format!("{key}.id"),
                    message: format!(
                        "{:?}: ids are 1-64 characters of a-z, 0-9, `_`, `-`, `.`",
                        c.id
                    ),
                });
            } else if Rule::from_id(&c.id).is_some() {
                issues.push(Issue {
                    key: format!("{key}.id"),
                    message: format!("{:?} is a built-in rule id", c.id),
                });
            } else if !seen.insert(c.id.clone()) {
                issues.push(Issue {
                    key: format!("{key}.id"),
                    message: format!("duplicate id {:?}", c.id),
                });
            }
            if let Some(o) = &c.owasp {
                if !valid_owasp(o) {
                    issues.push(Issue {
                        key: format!("{key}.owasp"),
                        message: format!(
                            "{o:?}: expected an OWASP API Security Top 10 2023 category, \
                             API1:2023 … API10:2023"
                        ),
                    });
                }
            }
            let conditions = usize::from(c.forbid_sensitive.is_some())
                + usize::from(c.require_auth.is_some() || c.allowed_auth.is_some());
            let condition = match (c.forbid_sensitive, c.require_auth, c.allowed_auth) {
                _ if conditions != 1 => {
                    issues.push(Issue {
                        key: key.clone(),
                        message: "needs exactly one condition: `forbid_sensitive`, or \
                                  `require_auth`/`allowed_auth`"
                            .into(),
                    });
                    None
                }
                (Some(f), _, _) => {
                    if f.types.is_empty() {
                        issues.push(Issue {
                            key: format!("{key}.forbid_sensitive.types"),
                            message: "name at least one sensitive type".into(),
                        });
                    }
                    Some(Condition::ForbidSensitive {
                        types: f.types,
                        locations: f.locations,
                    })
                }
                (None, Some(false), None) => {
                    issues.push(Issue {
                        key: format!("{key}.require_auth"),
                        message: "`require_auth = false` checks nothing; remove the rule".into(),
                    });
                    None
                }
                (None, _, Some(allowed)) => {
                    if allowed.is_empty() || allowed.contains(&AuthKind::None) {
                        issues.push(Issue {
                            key: format!("{key}.allowed_auth"),
                            message: "list the acceptable credential kinds (not `none`)".into(),
                        });
                    }
                    Some(Condition::RequireAuth { allowed })
                }
                (None, _, None) => Some(Condition::RequireAuth {
                    allowed: vec![
                        AuthKind::Basic,
                        AuthKind::Bearer,
                        AuthKind::Digest,
                        AuthKind::ApiKey,
                        AuthKind::SessionCookie,
                        AuthKind::Other,
                    ],
                }),
            };
            let scope = scope(
                ScopeFile {
                    hosts: c.hosts,
                    templates: c.templates,
                    methods: c.methods,
                    not_hosts: c.not_hosts,
                    not_templates: c.not_templates,
                },
                &format!("{key}."),
                &mut issues,
            );
            if let Some(condition) = condition {
                p.custom.push(CustomRule {
                    title: c.title.unwrap_or_else(|| c.id.clone()),
                    id: c.id,
                    description: c.description,
                    severity: c.severity.unwrap_or(Severity::Medium),
                    owasp: c.owasp,
                    scope,
                    condition,
                });
            }
        }
        if issues.is_empty() {
            Ok(p)
        } else {
            Err(PolicyError::Invalid(issues))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml: &str) -> Result<Policy, Vec<Issue>> {
        let v = parse_document(toml, Syntax::Toml).map_err(|m| {
            vec![Issue {
                key: ".".into(),
                message: m,
            }]
        })?;
        Policy::from_value(v).map_err(|e| e.issues())
    }

    #[test]
    fn globs_match_by_segment() {
        let g = Glob::path("/admin/**").unwrap();
        assert!(g.matches("/admin"));
        assert!(g.matches("/admin/users/{id}"));
        assert!(!g.matches("/administrator"));
        assert!(!g.matches("/api/admin"));
        let g = Glob::path("/**/admin/**").unwrap();
        assert!(g.matches("/admin"));
        assert!(g.matches("/api/v1/admin/stats"));
        assert!(!g.matches("/api/v1/adminx/stats"));
        let g = Glob::path("/users/*").unwrap();
        assert!(g.matches("/users/{id}"));
        assert!(!g.matches("/users/{id}/orders"));
        let g = Glob::path("/files/*.pdf").unwrap();
        assert!(g.matches("/files/report.pdf"));
        assert!(!g.matches("/files/report.pdf.exe"));
        let h = Glob::host("*.Example.com").unwrap();
        assert!(h.matches("api.example.com"));
        assert!(!h.matches("a.b.example.com"));
        assert!(!h.matches("example.com"));
        let h = Glob::host("**.example.com").unwrap();
        assert!(h.matches("example.com"));
        assert!(h.matches("a.b.example.com"));
        assert!(!h.matches("example.org"));
        assert!(Glob::host("*").unwrap().matches("a.b.c:8080"));
        assert_eq!(Glob::path(""), Err(GlobError::Empty));
        assert_eq!(Glob::path("/a/b**"), Err(GlobError::MisplacedDoubleStar));
    }

    #[test]
    fn prefix_globs_cover_subpaths() {
        let g = Glob::path("/api/v1/orders").unwrap();
        assert!(g.matches_prefix("/api/v1/orders"));
        assert!(g.matches_prefix("/api/v1/orders/{id}/items"));
        assert!(!g.matches_prefix("/api/v1/ordersx"));
        assert!(!g.matches_prefix("/api/v2/orders"));
    }

    #[test]
    fn segment_wildcards_do_not_blow_up() {
        // A pathological pattern against a long segment stays fast (bounded steps).
        let p = "*a*a*a*a*a*a*a*a*a*b".as_bytes();
        let t = vec![b'a'; 4096];
        assert!(!segment_matches(p, &t));
        assert!(segment_matches(b"a*c", b"abbbc"));
        assert!(!segment_matches(b"a*c", b"abbb"));
    }

    #[test]
    fn a_good_policy_loads() {
        let p = policy(
            r#"
            version = 1
            [settings]
            trust_forwarded_proto = false
            jwt_max_lifetime = "7d"
            excessive_data_types = 4
            security_headers = ["X-Content-Type-Options"]
            min_severity = "low"
            [rules.server_banner]
            enabled = false
            [rules.missing_security_headers]
            severity = "info"
            [[exceptions]]
            rules = ["permissive_cors"]
            hosts = ["public.example.com"]
            templates = ["/api/public/**"]
            reason = "public by design"
            [[custom]]
            id = "no-email-in-query"
            severity = "high"
            owasp = "API3:2023"
            forbid_sensitive = { types = ["email"], locations = ["request.query"] }
            [[custom]]
            id = "admin-needs-auth"
            templates = ["/admin/**"]
            require_auth = true
            [[custom]]
            id = "cards-only-on-payments"
            forbid_sensitive = { types = ["credit_card"] }
            not_hosts = ["payments.example.com"]
            "#,
        )
        .unwrap();
        assert!(!p.settings.trust_forwarded_proto);
        assert_eq!(p.settings.jwt_max_lifetime_secs, 7 * 86_400);
        assert_eq!(p.settings.excessive_data_types, 4);
        assert_eq!(p.settings.security_headers, ["x-content-type-options"]);
        assert!(!p.enabled(Rule::ServerBanner));
        assert!(p.enabled(Rule::PermissiveCors));
        assert_eq!(p.severity(Rule::MissingSecurityHeaders), Severity::Info);
        assert_eq!(p.severity(Rule::JwtAlgNone), Severity::Critical);
        assert!(p
            .exception(
                "permissive_cors",
                "public.example.com",
                "GET",
                "/api/public/x"
            )
            .is_some());
        assert!(p
            .exception(
                "permissive_cors",
                "public.example.com",
                "GET",
                "/api/private"
            )
            .is_none());
        assert!(p
            .exception(
                "server_banner",
                "public.example.com",
                "GET",
                "/api/public/x"
            )
            .is_none());
        assert_eq!(p.custom.len(), 3);
        assert!(
            matches!(p.custom[1].condition, Condition::RequireAuth { ref allowed } if !allowed.contains(&AuthKind::None))
        );
        assert!(p.custom[2].scope.contains("shop.example.com", "GET", "/x"));
        assert!(!p.custom[2]
            .scope
            .contains("payments.example.com", "GET", "/x"));
    }

    #[test]
    fn yaml_and_toml_are_the_same_policy() {
        let y = parse_document(
            "rules:\n  server_banner:\n    enabled: false\ncustom:\n  - id: x\n    require_auth: true\n    templates: [\"/admin/**\"]\n",
            Syntax::Yaml,
        )
        .unwrap();
        let p = Policy::from_value(y).unwrap();
        assert!(!p.enabled(Rule::ServerBanner));
        assert_eq!(p.custom[0].id, "x");
    }

    #[test]
    fn bad_policies_name_their_key_paths() {
        let e = policy("[rules.server_banenr]\nenabled = false\n").unwrap_err();
        assert_eq!(e[0].key, "rules.server_banenr");
        assert!(e[0].message.contains("unknown rule"));

        let e = policy("[[custom]]\nid = \"x\"\nseverity = \"hgh\"\nrequire_auth = true\n")
            .unwrap_err();
        assert_eq!(e[0].key, "custom[0].severity");
        assert!(e[0].message.contains("hgh"), "{}", e[0].message);

        let e = policy("[settings]\nexcesive_data_types = 3\n").unwrap_err();
        assert_eq!(e[0].key, "settings.excesive_data_types");
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);

        let e = policy(
            "[[exceptions]]\nrules = [\"nope\"]\nhosts = [\"ok\", \"\"]\n\
             [[custom]]\nid = \"server_banner\"\nrequire_auth = true\n\
             [[custom]]\nid = \"Bad Id\"\nowasp = \"API11:2023\"\n\
             forbid_sensitive = { types = [\"email\"] }\nrequire_auth = true\n\
             [settings]\njwt_max_lifetime = \"soon\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"exceptions[0].rules[0]"), "{keys:?}");
        assert!(keys.contains(&"exceptions[0].hosts[1]"), "{keys:?}");
        assert!(keys.contains(&"custom[0].id"), "{keys:?}");
        assert!(keys.contains(&"custom[1].id"), "{keys:?}");
        assert!(keys.contains(&"custom[1].owasp"), "{keys:?}");
        assert!(keys.contains(&"custom[1]"), "{keys:?}");
        assert!(keys.contains(&"settings.jwt_max_lifetime"), "{keys:?}");

        let e = policy("[[custom]]\nid = \"t\"\nforbid_sensitive = { types = [\"emial\"] }\n")
            .unwrap_err();
        assert_eq!(e[0].key, "custom[0].forbid_sensitive.types[0]");
    }

    #[test]
    fn owasp_categories() {
        assert!(valid_owasp("API1:2023"));
        assert!(valid_owasp("API10:2023"));
        assert!(!valid_owasp("API11:2023"));
        assert!(!valid_owasp("API01:2023"));
        assert!(!valid_owasp("API3:2019"));
        assert!(!valid_owasp("A03:2021"));
    }
}
