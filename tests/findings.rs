//! Findings (#10) end to end through the library: the held-out captures replayed through the
//! capture and parser crates, inspection, the inventory and the findings engine, exactly as
//! the engine chains them; then checked against the truth the real client/server wrote
//! (`tests/data/rest/README.md`).
//!
//! - risky-api: every truth finding appears once per (endpoint, rule), with the truth's OWASP
//!   category, severity and exchange count, and the owner from a test ownership map; nothing
//!   else is reported; live events announce each once.
//! - clean-api: nothing; without trusting `X-Forwarded-Proto`, exactly the truth's tolerated
//!   `cleartext_bearer` set.
//! - policy files (TOML, YAML, JSON) good and bad, and a policy applied to risky-api.
//! - spec drift against a spec for rest-api (shadow, zombie, unused, undeclared parameters)
//!   and `spec::diff` over an inventory file, with and without drift.
//! - OCSF 1.5.0 output validated against the vendored JSON Schemas, ECS output against the
//!   vendored ECS field list.
#[path = "common/scratch.rs"]
mod scratch;
use apitap::findings::{risk, Findings};
use apitap::formats::{self, Format};
use apitap::inspect::{InspectConfig, Inspector};
use apitap::inventory::{EndpointKey, Inventory, InventoryConfig};
use apitap::observation::Observation;
use apitap::owners::Owners;
use apitap::policy::{self, Policy};
use apitap::redact::{Redaction, Redactor};
use apitap::spec::{self, DriftKind, Spec};
use apitap_capture::decode::{decode, DecodeStats};
use apitap_capture::flow::{
    ChunkInfo, CloseReason, Direction, FlowConfig, FlowHandler, FlowInfo, FlowTable,
};
use apitap_capture::source::{Event, PacketSource};
use apitap_parsers::session::{HttpSession, Shared};
use apitap_parsers::{ChunkMeta, Exchange};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn schemas(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(name)
}

fn truth(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = scratch::dir("findings", false);
    d.join(name)
}

/// Placeholders compare shape-insensitively: any `{…}` is `{}`.
fn shape(t: &str) -> String {
    t.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The engine's per-exchange chain, as a flow handler.
struct Chain {
    insp: Inspector,
    inv: Inventory,
    findings: Findings,
    redactor: Redactor,
    scratch: Vec<Exchange>,
    shared: Shared,
    /// Events `observe` returned, in order.
    events: Vec<Value>,
    /// Native `http_exchange` objects (for the format tests).
    exchanges: Vec<Value>,
}

impl Chain {
    fn emit(&mut self, flow: &FlowInfo) {
        let mut exchanges = std::mem::take(&mut self.scratch);
        for ex in exchanges.drain(..) {
            let ins = self.insp.inspect(&ex, flow.server);
            let obs = Observation::new(&ex, flow, &mut self.redactor, Some(&ins));
            self.exchanges.push(serde_json::to_value(&obs).unwrap());
            drop(obs);
            let server = flow.server.to_string();
            self.inv.record(&ex, &server, &ins);
            let key = EndpointKey {
                host: ins.host.clone(),
                method: ex.request.method.clone(),
                template: ins.template.clone(),
            };
            let evs = self.findings.observe(&ex, &ins, &key, flow.server);
            self.events.extend(evs);
        }
        self.scratch = exchanges;
    }
}

impl FlowHandler for Chain {
    type State = HttpSession;
    fn open(&mut self, flow: &FlowInfo) -> HttpSession {
        HttpSession::new(flow.handshake_seen, 0)
    }
    fn classify(&self, p: &[u8]) -> Option<bool> {
        if apitap_parsers::http1::looks_like_request(p) {
            Some(true)
        } else if p.len() >= 8 && apitap_parsers::http1::looks_like_response(p) {
            Some(false)
        } else {
            None
        }
    }
    fn data(
        &mut self,
        st: &mut HttpSession,
        flow: &FlowInfo,
        d: Direction,
        b: &[u8],
        i: ChunkInfo,
    ) {
        let dir = match d {
            Direction::ToServer => apitap_parsers::Direction::ToServer,
            Direction::ToClient => apitap_parsers::Direction::ToClient,
        };
        let meta = ChunkMeta {
            ts_us: i.ts_us,
            offset: i.offset,
            peer_ack: i.peer_ack,
        };
        st.on_data(dir, b, meta, &mut self.scratch, &mut self.shared);
        if !self.scratch.is_empty() {
            self.emit(flow);
        }
    }
    fn gap(&mut self, st: &mut HttpSession, flow: &FlowInfo, d: Direction, len: u64) {
        let dir = match d {
            Direction::ToServer => apitap_parsers::Direction::ToServer,
            Direction::ToClient => apitap_parsers::Direction::ToClient,
        };
        st.on_gap(dir, len, &mut self.scratch, &mut self.shared);
        if !self.scratch.is_empty() {
            self.emit(flow);
        }
    }
    fn close(&mut self, mut st: HttpSession, flow: &FlowInfo, _r: CloseReason) {
        st.on_close(&mut self.scratch, &mut self.shared);
        if !self.scratch.is_empty() {
            self.emit(flow);
        }
    }
}

struct Replay {
    findings: Findings,
    inventory: Inventory,
    events: Vec<Value>,
    inventory_events: Vec<Value>,
    exchanges: Vec<Value>,
}

/// Replays a capture through the chain; at the end re-templates and evaluates the inventory,
/// as the engine does before writing the inventory file.
fn replay(capture: &str, findings: Findings) -> Replay {
    let chain = Chain {
        insp: Inspector::new(InspectConfig::default()),
        inv: Inventory::new(InventoryConfig::default()),
        findings,
        redactor: Redactor::new(Redaction::default(), b"salt"),
        scratch: Vec::new(),
        shared: Shared::default(),
        events: Vec::new(),
        exchanges: Vec::new(),
    };
    let mut table = FlowTable::new(FlowConfig::default(), chain);
    let mut src = PacketSource::files(&[data(capture)]).unwrap();
    let mut stats = DecodeStats::default();
    let stop = AtomicBool::new(false);
    src.run(&stop, |ev| {
        if let Event::Frame(f) = ev {
            if let Ok(seg) = decode(f.linktype, f.data, &mut stats) {
                table.process(&seg, f.ts_us);
            }
        }
    })
    .unwrap();
    table.close_all();
    let mut c = table.handler;
    let mut inventory = Inventory::new(InventoryConfig::default());
    inventory.merge_from(&c.inv, &c.insp.templater);
    c.findings.compact(&c.insp.templater);
    let inventory_events = c.findings.evaluate_inventory(&inventory);
    Replay {
        findings: c.findings,
        inventory,
        events: c.events,
        inventory_events,
        exchanges: c.exchanges,
    }
}

fn owners() -> Owners {
    let v = policy::parse_document(
        r##"
        [[owners]]
        team = "legacy-platform"
        contact = "legacy-oncall@example.test"
        tier = "tier-2"
        hosts = ["legacy.example.test"]

        [[owners]]
        team = "partner-integrations"
        contact = "#partner-api"
        tier = "tier-1"
        hosts = ["partner.example.test"]
        "##,
        policy::Syntax::Toml,
    )
    .unwrap();
    Owners::from_value(v).unwrap()
}

type FindingKey = (String, String, String, String);

fn key_of(f: &Value) -> FindingKey {
    (
        f["endpoint"]["host"].as_str().unwrap().to_string(),
        f["endpoint"]["method"].as_str().unwrap().to_string(),
        shape(f["endpoint"]["template"].as_str().unwrap()),
        f["rule"].as_str().unwrap().to_string(),
    )
}

#[test]
fn risky_capture_raises_each_truth_finding_once() {
    let t = truth("risky-api.truth.json");
    let r = replay(
        "risky-api.pcap",
        Findings::new(Policy::default(), owners(), Vec::new()),
    );
    assert_eq!(r.exchanges.len(), 320, "every exchange replayed");
    let expected: BTreeMap<FindingKey, &Value> = t["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                (
                    f["host"].as_str().unwrap().to_string(),
                    f["method"].as_str().unwrap().to_string(),
                    shape(f["template"].as_str().unwrap()),
                    f["rule"].as_str().unwrap().to_string(),
                ),
                f,
            )
        })
        .collect();
    assert_eq!(expected.len(), 63);

    let all = r.findings.all();
    let mut got: BTreeMap<FindingKey, &Value> = BTreeMap::new();
    for f in &all {
        assert!(got.insert(key_of(f), f).is_none(), "duplicate finding {f}");
    }
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );

    for (k, f) in &got {
        let want = expected[k];
        assert_eq!(f["owasp"], want["owasp"], "{k:?}");
        assert_eq!(f["severity"], want["severity_hint"], "{k:?}");
        assert_eq!(
            f["count"], want["exchanges"],
            "{k:?}: exchanges exhibiting it"
        );
        let team = if k.0 == "legacy.example.test" {
            "legacy-platform"
        } else {
            "partner-integrations"
        };
        assert_eq!(f["owner"]["team"], team, "{k:?}");
        assert!(f["owasp_name"].is_string(), "{k:?}");
        assert_eq!(f["id"].as_str().unwrap().len(), 32);
    }

    // Live events: each (endpoint, rule) announced exactly once.
    let mut announced = BTreeSet::new();
    for e in &r.events {
        assert_eq!(e["type"], "finding");
        assert!(announced.insert(key_of(e)), "announced twice: {e}");
    }
    assert_eq!(announced, expected.keys().cloned().collect::<BTreeSet<_>>());
    assert!(r.inventory_events.is_empty(), "no spec: no drift findings");

    // Evidence is structure, never the planted values.
    let text = serde_json::to_string(&all).unwrap();
    for v in t["planted_values"].as_array().unwrap() {
        let v = v.as_str().unwrap();
        assert!(!text.contains(v), "planted value in findings: {v}");
    }
    let by = |host: &str, tmpl: &str, rule: &str| {
        got.iter()
            .find(|(k, _)| k.0 == host && k.2 == shape(tmpl) && k.3 == rule)
            .map(|(_, v)| (*v).clone())
            .unwrap()
    };
    let u = by(
        "legacy.example.test",
        "/api/v1/customers/{}",
        "unauth_sensitive_data",
    );
    assert_eq!(
        u["evidence"]["types"],
        json!(["credit_card", "email", "phone", "ssn"])
    );
    let c = by("partner.example.test", "/v2/lookup", "credentials_in_query");
    assert_eq!(c["evidence"]["params"], json!(["token"]));
    let b = by("legacy.example.test", "/health", "server_banner");
    assert_eq!(
        b["evidence"]["products"],
        json!(["Apache/2.4.49", "PHP/7.2.1"])
    );
    let v = by("legacy.example.test", "/api/v1/search", "verbose_error");
    assert!(v["evidence"]["signatures"]
        .as_array()
        .unwrap()
        .contains(&json!("php_stack_trace")));
    let l = by(
        "legacy.example.test",
        "/api/v1/subscriptions",
        "jwt_long_lifetime",
    );
    assert!(l["evidence"]["max_lifetime_days"].as_i64().unwrap() >= 3650);

    // Risk: the anonymous PII endpoints score highest, the health checks lowest.
    let scores: BTreeMap<String, u64> = r
        .inventory
        .sorted()
        .into_iter()
        .map(|(k, s)| {
            let v = risk(k, s, &r.findings);
            (
                format!("{} {} {}", k.host, k.method, shape(&k.template)),
                v["score"].as_u64().unwrap(),
            )
        })
        .collect();
    let s = |k: &str| scores[k];
    assert!(
        s("legacy.example.test GET /internal/admin/users") >= 75,
        "{scores:#?}"
    );
    assert!(
        s("legacy.example.test GET /api/v1/customers/{}") >= 75,
        "{scores:#?}"
    );
    assert!(s("partner.example.test GET /health") < 25, "{scores:#?}");
    assert!(
        s("legacy.example.test GET /api/v1/customers/{}")
            > s("legacy.example.test GET /api/v1/search"),
        "{scores:#?}"
    );

    // The inventory document carries owners, finding ids and the findings.
    let mut doc = r.inventory.to_json(&|k, st| Some(risk(k, st, &r.findings)));
    r.findings.annotate_inventory(&mut doc);
    assert_eq!(doc["findings"].as_array().unwrap().len(), 63);
    for e in doc["endpoints"].as_array().unwrap() {
        assert!(e["owner"]["team"].is_string(), "{e}");
        assert!(e["risk"]["score"].is_u64(), "{e}");
        assert!(!e["findings"].as_array().unwrap().is_empty());
    }
}

#[test]
fn unowned_endpoints_are_a_finding() {
    let v = policy::parse_document(
        "[[owners]]\nteam = \"legacy\"\nhosts = [\"legacy.example.test\"]\n",
        policy::Syntax::Toml,
    )
    .unwrap();
    let r = replay(
        "risky-api.pcap",
        Findings::new(
            Policy::default(),
            Owners::from_value(v).unwrap(),
            Vec::new(),
        ),
    );
    let unowned: BTreeSet<String> = r
        .findings
        .all()
        .iter()
        .filter(|f| f["rule"] == "unowned_endpoint")
        .map(|f| {
            assert_eq!(f["owasp"], "API9:2023");
            assert!(f["owner"].is_null());
            format!(
                "{} {}",
                f["endpoint"]["method"].as_str().unwrap(),
                f["endpoint"]["template"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        unowned,
        BTreeSet::from([
            "GET /health".to_string(),
            "GET /v2/lookup".to_string(),
            "POST /v2/webhooks".to_string()
        ])
    );
}

fn clean_tolerated() -> BTreeSet<FindingKey> {
    let t = truth("clean-api.truth.json");
    assert_eq!(t["findings"], json!([]));
    let tol = &t["tolerated"][0];
    assert_eq!(tol["rule"], "cleartext_bearer");
    tol["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["method"].as_str().unwrap().to_string(),
                shape(e["template"].as_str().unwrap()),
                "cleartext_bearer".to_string(),
            )
        })
        .collect()
}

#[test]
fn clean_capture_raises_none() {
    let r = replay(
        "clean-api.pcap",
        Findings::new(Policy::default(), Owners::default(), Vec::new()),
    );
    assert_eq!(r.exchanges.len(), 316);
    assert_eq!(r.findings.all(), Vec::<Value>::new());
    assert!(r.events.is_empty());
    for (k, s) in r.inventory.sorted() {
        let v = risk(k, s, &r.findings);
        assert!(
            v["score"].as_u64().unwrap() < 25,
            "{} {}: {v}",
            k.method,
            k.template
        );
    }
}

#[test]
fn clean_capture_without_trusting_forwarded_proto_raises_only_the_tolerated() {
    let p = Policy::from_value(
        policy::parse_document(
            "[settings]\ntrust_forwarded_proto = false\n",
            policy::Syntax::Toml,
        )
        .unwrap(),
    )
    .unwrap();
    let r = replay(
        "clean-api.pcap",
        Findings::new(p, Owners::default(), Vec::new()),
    );
    let got: BTreeSet<FindingKey> = r.findings.all().iter().map(key_of).collect();
    assert_eq!(got, clean_tolerated());
}

// ---------------------------------------------------------------------------------------------
// Policy files.

const GOOD_TOML: &str = r#"
version = 1

[settings]
jwt_max_lifetime = "90d"
min_severity = "low"

[rules.server_banner]
enabled = false

[rules.missing_security_headers]
severity = "info"

[[exceptions]]
rules = ["permissive_cors"]
hosts = ["legacy.example.test"]
templates = ["/api/v1/customers/**"]
reason = "SEC-123: customer widgets are embedded cross-origin"

[[custom]]
id = "no-phone-in-query"
title = "Phone numbers in query strings"
severity = "high"
owasp = "API3:2023"
forbid_sensitive = { types = ["phone"], locations = ["request.query"] }

[[custom]]
id = "internal-needs-auth"
templates = ["/internal/**"]
require_auth = true

[[custom]]
id = "cards-only-on-payments"
severity = "critical"
forbid_sensitive = { types = ["credit_card"], locations = ["response.body"] }
not_hosts = ["payments.example.test"]
"#;

const GOOD_YAML: &str = r#"
version: 1
settings:
  jwt_max_lifetime: 90d
  min_severity: low
rules:
  server_banner: {enabled: false}
  missing_security_headers: {severity: info}
exceptions:
  - rules: [permissive_cors]
    hosts: [legacy.example.test]
    templates: ["/api/v1/customers/**"]
    reason: "SEC-123: customer widgets are embedded cross-origin"
custom:
  - id: no-phone-in-query
    title: Phone numbers in query strings
    severity: high
    owasp: "API3:2023"
    forbid_sensitive: {types: [phone], locations: [request.query]}
  - id: internal-needs-auth
    templates: ["/internal/**"]
    require_auth: true
  - id: cards-only-on-payments
    severity: critical
    forbid_sensitive: {types: [credit_card], locations: [response.body]}
    not_hosts: [payments.example.test]
"#;

#[test]
fn good_policy_files_load_in_every_syntax() {
    let toml = tmp("good.toml");
    std::fs::write(&toml, GOOD_TOML).unwrap();
    let yaml = tmp("good.yaml");
    std::fs::write(&yaml, GOOD_YAML).unwrap();
    let as_json = policy::parse_document(GOOD_TOML, policy::Syntax::Toml).unwrap();
    let json_path = tmp("good.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&as_json).unwrap()).unwrap();
    let no_ext = tmp("good-policy");
    std::fs::write(&no_ext, GOOD_YAML).unwrap();
    for p in [&toml, &yaml, &json_path, &no_ext] {
        let pol = policy::check(p).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
        assert_eq!(pol.custom.len(), 3, "{}", p.display());
        assert_eq!(pol.settings.jwt_max_lifetime_secs, 90 * 86_400);
        assert_eq!(pol.exceptions.len(), 1);
    }
}

#[test]
fn bad_policy_files_report_key_paths() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("typo.toml", "[rules.server_baner]\nenabled = false\n", &["rules.server_baner"]),
        (
            "types.yaml",
            "custom:\n  - id: x\n    severity: urgent\n    require_auth: true\n",
            &["custom[0].severity"],
        ),
        (
            "unknown-key.toml",
            "[settings]\ntrust_forwarded = true\n",
            &["settings.trust_forwarded"],
        ),
        (
            "semantic.toml",
            "[[exceptions]]\nrules = [\"nope\"]\ntemplates = [\"/a/b**\"]\n\
             [[custom]]\nid = \"dup\"\nrequire_auth = true\n\
             [[custom]]\nid = \"dup\"\nforbid_sensitive = { types = [\"email\"] }\nowasp = \"API12:2023\"\n\
             [[custom]]\nid = \"none\"\n",
            &[
                "exceptions[0].rules[0]",
                "exceptions[0].templates[0]",
                "custom[1].id",
                "custom[1].owasp",
                "custom[2]",
            ],
        ),
    ];
    for (name, text, keys) in cases {
        let p = tmp(name);
        std::fs::write(&p, text).unwrap();
        let issues = policy::check(&p).expect_err(name);
        let got: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        for k in *keys {
            assert!(got.contains(k), "{name}: {k} not in {got:?}");
        }
        for i in &issues {
            assert!(!i.message.is_empty());
            assert!(i.to_string().starts_with(&i.key));
        }
    }
    let broken = tmp("broken.toml");
    std::fs::write(&broken, "[rules\n").unwrap();
    let issues = policy::check(&broken).unwrap_err();
    assert_eq!(issues[0].key, ".");
    assert!(issues[0].message.contains("TOML"), "{}", issues[0].message);
    let issues = policy::check(&tmp("does-not-exist.toml")).unwrap_err();
    assert!(issues[0].message.contains("cannot read"));
}

#[test]
fn a_policy_changes_what_risky_raises() {
    let p = tmp("risky-policy.toml");
    std::fs::write(&p, GOOD_TOML).unwrap();
    let pol = Policy::load(&p).unwrap();
    let r = replay("risky-api.pcap", Findings::new(pol, owners(), Vec::new()));
    let all = r.findings.all();
    let has = |host: &str, tmpl: &str, rule: &str| {
        all.iter().any(|f| {
            f["endpoint"]["host"] == host
                && shape(f["endpoint"]["template"].as_str().unwrap()) == shape(tmpl)
                && f["rule"] == rule
        })
    };
    // Disabled, below min_severity (info < low), excepted.
    assert!(!all.iter().any(|f| f["rule"] == "server_banner"));
    assert!(!all.iter().any(|f| f["rule"] == "missing_security_headers"));
    assert!(!has(
        "legacy.example.test",
        "/api/v1/customers/{}",
        "permissive_cors"
    ));
    assert!(!has(
        "legacy.example.test",
        "/api/v1/customers",
        "permissive_cors"
    ));
    assert!(has(
        "legacy.example.test",
        "/api/v1/account",
        "permissive_cors"
    ));
    // 10 years is still beyond 90 days.
    assert!(has(
        "legacy.example.test",
        "/api/v1/subscriptions",
        "jwt_long_lifetime"
    ));
    // Custom rules.
    assert!(has(
        "partner.example.test",
        "/v2/lookup",
        "no-phone-in-query"
    ));
    assert!(has(
        "legacy.example.test",
        "/internal/admin",
        "internal-needs-auth"
    ));
    assert!(has(
        "legacy.example.test",
        "/internal/admin/users",
        "internal-needs-auth"
    ));
    assert!(has(
        "legacy.example.test",
        "/api/v1/customers",
        "cards-only-on-payments"
    ));
    let custom = all
        .iter()
        .find(|f| f["rule"] == "no-phone-in-query")
        .unwrap();
    assert_eq!(custom["custom"], true);
    assert_eq!(custom["severity"], "high");
    assert_eq!(custom["owasp"], "API3:2023");
    assert_eq!(custom["owner"]["team"], "partner-integrations");
    assert_eq!(custom["evidence"]["fields"], json!(["phone"]));
    assert!(r.findings.stats().suppressed > 0);
}

// ---------------------------------------------------------------------------------------------
// Spec drift.

/// A declared spec for the shop host of rest-api: v2 users replaces v1's GET, v1 DELETE is
/// deprecated, `/api/v1/integrations` is not declared, `sort` is missing from products, and
/// `/api/v1/wishlist` is declared but never called.
const SHOP_SPEC: &str = include_str!("data/rest-api.spec.yaml");

#[test]
fn spec_drift_on_rest_api() {
    let spec_path = tmp("shop.yaml");
    std::fs::write(&spec_path, SHOP_SPEC).unwrap();
    let spec = Spec::load(&spec_path).unwrap();
    let r = replay(
        "rest-api.pcap",
        Findings::new(Policy::default(), Owners::default(), vec![spec.clone()]),
    );
    let inv_path = tmp("rest-inventory.json");
    std::fs::write(
        &inv_path,
        serde_json::to_vec(&r.inventory.to_json(&|_, _| None)).unwrap(),
    )
    .unwrap();
    let rep = spec::diff(std::slice::from_ref(&spec_path), &inv_path).unwrap();
    let items = |k: DriftKind| -> BTreeSet<String> {
        rep.of(k)
            .map(|d| format!("{} {}", d.method, shape(&d.template)))
            .collect()
    };
    assert!(rep.has_drift(), "{}", rep.render());
    assert_eq!(
        items(DriftKind::Shadow),
        BTreeSet::from(["GET /api/v1/integrations".to_string()]),
        "{}",
        rep.render()
    );
    assert_eq!(
        items(DriftKind::Zombie),
        BTreeSet::from([
            "GET /api/v1/users/{}".to_string(),
            "DELETE /api/v1/users/{}".to_string()
        ]),
        "{}",
        rep.render()
    );
    let reasons: BTreeSet<_> = rep.of(DriftKind::Zombie).filter_map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["deprecated", "newer_version_declared"])
    );
    assert_eq!(
        items(DriftKind::Unused),
        BTreeSet::from(["GET /api/v1/wishlist".to_string()]),
        "{}",
        rep.render()
    );
    let undeclared: Vec<_> = rep.of(DriftKind::UndeclaredParameter).collect();
    assert_eq!(undeclared.len(), 1, "{}", rep.render());
    assert_eq!(shape(&undeclared[0].template), "/api/v1/products");
    assert_eq!(undeclared[0].params, ["sort"]);
    // The files host has no spec: not checked, not drift.
    assert_eq!(
        rep.hosts_without_spec,
        BTreeSet::from(["files.example.test".to_string()])
    );
    let text = rep.render();
    assert!(text.contains("DRIFT"), "{text}");
    assert_eq!(rep.to_json()["counts"]["shadow"], 1);

    // The same drift as findings, from the inventory.
    let got: BTreeSet<(String, String)> = r
        .inventory_events
        .iter()
        .map(|f| {
            assert_eq!(f["owasp"], "API9:2023");
            (
                f["rule"].as_str().unwrap().to_string(),
                format!(
                    "{} {}",
                    f["endpoint"]["method"].as_str().unwrap(),
                    shape(f["endpoint"]["template"].as_str().unwrap())
                ),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("shadow_endpoint", "GET /api/v1/integrations"),
        ("zombie_endpoint", "GET /api/v1/users/{}"),
        ("zombie_endpoint", "DELETE /api/v1/users/{}"),
        ("undeclared_parameter", "GET /api/v1/products"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    let shadow = r
        .inventory_events
        .iter()
        .find(|f| f["rule"] == "shadow_endpoint")
        .unwrap();
    assert!(shadow["count"].as_u64().unwrap() > 0);
    // `unused_endpoint` is not announced (it depends on the whole window) but is reported.
    let unused: Vec<Value> = r
        .findings
        .all()
        .into_iter()
        .filter(|f| f["rule"] == "unused_endpoint")
        .collect();
    assert_eq!(unused.len(), 1);
    assert_eq!(unused[0]["endpoint"]["template"], "/api/v1/wishlist");
    assert_eq!(unused[0]["severity"], "info");
    assert_eq!(unused[0]["count"], 0);
    // A second evaluation announces nothing new.
    let mut f = r.findings;
    assert!(f.evaluate_inventory(&r.inventory).is_empty());
}

#[test]
fn no_drift_when_the_spec_declares_what_runs() {
    // A spec built from the server's own route table (the truth's templates, with its
    // placeholder names) and the query parameters the client sent.
    let t = truth("rest-api.truth.json");
    let mut params: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for e in t["exchange_log"].as_array().unwrap() {
        let k = (
            e["host"].as_str().unwrap().to_string(),
            e["method"].as_str().unwrap().to_lowercase(),
            e["template"].as_str().unwrap().to_string(),
        );
        let target = e["target"].as_str().unwrap();
        let set = params.entry(k).or_default();
        if let Some((_, q)) = target.split_once('?') {
            for pair in q.split('&') {
                set.insert(pair.split('=').next().unwrap().to_string());
            }
        }
    }
    let mut specs = Vec::new();
    for host in ["shop.example.test", "files.example.test"] {
        let mut paths = serde_json::Map::new();
        for ((h, m, tmpl), ps) in &params {
            if h != host {
                continue;
            }
            let item = paths.entry(tmpl.clone()).or_insert_with(|| json!({}));
            let ps: Vec<Value> = ps
                .iter()
                .map(|p| json!({"name": p, "in": "query"}))
                .collect();
            item[m.as_str()] = json!({"parameters": ps});
        }
        let doc = json!({"openapi": "3.1.0", "info": {"title": host, "version": "1"},
                         "servers": [{"url": format!("https://{host}")}], "paths": paths});
        let p = tmp(&format!("{host}.json"));
        std::fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
        specs.push(p);
    }
    let r = replay(
        "rest-api.pcap",
        Findings::new(Policy::default(), Owners::default(), Vec::new()),
    );
    let inv_path = tmp("rest-inventory-2.json");
    std::fs::write(
        &inv_path,
        serde_json::to_vec(&r.inventory.to_json(&|_, _| None)).unwrap(),
    )
    .unwrap();
    let rep = spec::diff(&specs, &inv_path).unwrap();
    assert!(!rep.has_drift(), "{}", rep.render());
    assert_eq!(rep.of(DriftKind::Unused).count(), 0, "{}", rep.render());
    assert_eq!(rep.matched, 33);
    assert!(rep.hosts_without_spec.is_empty());
    // An unreadable spec or inventory is an error (exit 2 in the CLI), not "no drift".
    assert!(spec::diff(&[tmp("missing.yaml")], &inv_path).is_err());
    assert!(spec::diff(&specs, &tmp("missing.json")).is_err());
}

// ---------------------------------------------------------------------------------------------
// SIEM formats.

fn validator(name: &str) -> jsonschema::Validator {
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(schemas(&format!("ocsf/1.5.0/{name}.json"))).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&s).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, ev: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(ev)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{ev:#}");
}

#[test]
fn ocsf_output_validates_against_the_published_schemas() {
    let r = replay(
        "risky-api.pcap",
        Findings::new(Policy::default(), owners(), Vec::new()),
    );
    let http = validator("http_activity");
    let finding = validator("detection_finding");
    let api = validator("api_activity");
    for ex in &r.exchanges {
        let o = formats::convert(Format::Ocsf, ex);
        assert_eq!(o["class_uid"], 4002);
        assert_valid(&http, &o, "http_activity");
    }
    // An exchange without a response, and one on HTTP/2 with a VLAN.
    let mut partial = r.exchanges[0].clone();
    partial["response"] = Value::Null;
    partial["latency_ms"] = Value::Null;
    partial["vlan"] = json!(12);
    let o = formats::convert(Format::Ocsf, &partial);
    assert!(o.get("http_response").is_none());
    assert_eq!(o["status_id"], 0);
    assert_valid(&http, &o, "http_activity without response");

    let all = r.findings.all();
    assert_eq!(all.len(), 63);
    for f in all.iter().chain(&r.events) {
        let o = formats::convert(Format::Ocsf, f);
        assert_eq!(o["class_uid"], 2004);
        assert_valid(&finding, &o, "detection_finding");
    }
    let cq = all
        .iter()
        .find(|f| f["rule"] == "cleartext_basic_auth")
        .unwrap();
    let o = formats::convert(Format::Ocsf, cq);
    assert_eq!(o["severity_id"], 4);
    assert_eq!(o["vulnerabilities"][0]["cwe"]["uid"], "CWE-319");
    assert_eq!(o["resources"][0]["owner"]["name"], "legacy-platform");
    assert_eq!(
        o["resources"][0]["owner"]["email_addr"],
        "legacy-oncall@example.test"
    );
    assert_eq!(o["finding_info"]["types"][0], "API2:2023");

    // Inventory events as API Activity, with and without the triggering flow's addresses.
    for (k, s) in r.inventory.sorted() {
        let ch = apitap::inventory::Changes {
            discovered: true,
            new_sensitive: s.sensitive.keys().take(1).cloned().collect(),
            auth_changed: Some(vec![apitap::infer::auth::AuthKind::None]),
        };
        for mut ev in apitap::inventory::events(k, s, &ch, s.first_seen_us) {
            let o = formats::convert(Format::Ocsf, &ev);
            assert_eq!(o["class_uid"], 6003);
            assert_valid(&api, &o, "api_activity");
            ev["client"] = json!({"ip": "127.0.0.1", "port": 40000});
            ev["server"] = json!({"ip": "127.0.0.1", "port": 18101});
            let o = formats::convert(Format::Ocsf, &ev);
            assert_eq!(o["src_endpoint"]["port"], 40000);
            assert_valid(&api, &o, "api_activity with addresses");
        }
    }

    // The validator does catch a broken event.
    let mut broken = formats::convert(Format::Ocsf, &r.exchanges[0]);
    broken.as_object_mut().unwrap().remove("class_uid");
    assert!(!http.is_valid(&broken));
    let mut broken = formats::convert(Format::Ocsf, &all[0]);
    broken["finding_info"]
        .as_object_mut()
        .unwrap()
        .remove("uid");
    assert!(!finding.is_valid(&broken));
    let mut broken = formats::convert(Format::Ocsf, &r.exchanges[0]);
    broken["apitap_extra"] = json!(1);
    assert!(
        !http.is_valid(&broken),
        "unknown top-level attributes are refused"
    );
}

/// The ECS field list (vendored): name → definition.
fn ecs_fields() -> serde_json::Map<String, Value> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(schemas("ecs/ecs-fields.json")).unwrap())
            .unwrap();
    assert_eq!(v["ecs_version"], formats::ECS_VERSION);
    v["fields"].as_object().unwrap().clone()
}

/// Every leaf of an ECS document outside `apitap.*` must be an ECS field of the right type;
/// arrays only where ECS expects them; allowed values respected, including which
/// `event.type` goes with which `event.category`. Returns the fields seen.
fn check_ecs(
    doc: &Value,
    fields: &serde_json::Map<String, Value>,
) -> Result<BTreeSet<String>, String> {
    fn walk(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, p, out);
                }
            }
            _ => out.push((path, v.clone())),
        }
    }
    let mut leaves = Vec::new();
    walk(doc, String::new(), &mut leaves);
    let mut seen = BTreeSet::new();
    for (name, v) in &leaves {
        if name.starts_with("apitap.") {
            continue;
        }
        let Some(def) = fields.get(name) else {
            return Err(format!("{name}: not an ECS field"));
        };
        seen.insert(name.clone());
        let ty = def["type"].as_str().unwrap();
        let values: Vec<&Value> = match v {
            Value::Array(a) => {
                if def.get("array") != Some(&json!(true)) {
                    return Err(format!("{name}: ECS does not expect an array"));
                }
                a.iter().collect()
            }
            v => vec![v],
        };
        for x in values {
            let ok = match ty {
                "keyword" | "wildcard" | "match_only_text" | "text" | "constant_keyword" => {
                    x.is_string()
                }
                "long" | "integer" | "short" | "byte" | "unsigned_long" => x.is_i64() || x.is_u64(),
                "float" | "double" | "scaled_float" | "half_float" => x.is_number(),
                "boolean" => x.is_boolean(),
                "ip" => x
                    .as_str()
                    .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
                "date" => x
                    .as_str()
                    .is_some_and(|s| humantime::parse_rfc3339_weak(s).is_ok()),
                "object" | "flattened" => x.is_object(),
                other => return Err(format!("{name}: unhandled ECS type {other}")),
            };
            if !ok {
                return Err(format!("{name}: {x} is not an ECS {ty}"));
            }
            if let Some(allowed) = def.get("allowed").and_then(Value::as_object) {
                if !allowed.contains_key(x.as_str().unwrap_or("")) {
                    return Err(format!("{name}: {x} is not an allowed value"));
                }
            }
        }
    }
    let cats = fields["event.category"]["allowed"].as_object().unwrap();
    for c in doc["event"]["category"].as_array().into_iter().flatten() {
        let expected = cats[c.as_str().unwrap()].as_array().unwrap();
        for t in doc["event"]["type"].as_array().into_iter().flatten() {
            if !expected.contains(t) {
                return Err(format!(
                    "event.type {t} is not expected with event.category {c}"
                ));
            }
        }
    }
    Ok(seen)
}

#[test]
fn ecs_output_uses_ecs_fields() {
    let fields = ecs_fields();
    let r = replay(
        "risky-api.pcap",
        Findings::new(Policy::default(), owners(), Vec::new()),
    );
    let mut seen = BTreeSet::new();
    for ex in &r.exchanges {
        let e = formats::convert(Format::Ecs, ex);
        seen.extend(check_ecs(&e, &fields).unwrap_or_else(|m| panic!("{m}\n{e:#}")));
    }
    for want in [
        "@timestamp",
        "ecs.version",
        "event.kind",
        "event.category",
        "event.outcome",
        "event.duration",
        "http.request.method",
        "http.response.status_code",
        "http.version",
        "url.path",
        "url.domain",
        "url.query",
        "source.ip",
        "source.port",
        "destination.ip",
        "destination.port",
        "user_agent.original",
    ] {
        assert!(seen.contains(want), "exchange lacks {want}: {seen:?}");
    }
    let mut seen = BTreeSet::new();
    for f in r.findings.all() {
        let e = formats::convert(Format::Ecs, &f);
        assert_eq!(e["event"]["kind"], "alert");
        seen.extend(check_ecs(&e, &fields).unwrap_or_else(|m| panic!("{m}\n{e:#}")));
    }
    for want in [
        "rule.id",
        "rule.name",
        "rule.category",
        "event.severity",
        "event.risk_score",
        "vulnerability.id",
        "vulnerability.category",
        "url.path",
        "http.request.method",
    ] {
        assert!(seen.contains(want), "finding lacks {want}: {seen:?}");
    }
    let (k, s) = r.inventory.sorted()[0];
    let ch = apitap::inventory::Changes {
        discovered: true,
        ..Default::default()
    };
    for ev in apitap::inventory::events(k, s, &ch, s.first_seen_us) {
        let e = formats::convert(Format::Ecs, &ev);
        assert_eq!(e["event"]["kind"], "asset");
        check_ecs(&e, &fields).unwrap_or_else(|m| panic!("{m}\n{e:#}"));
    }
    // The checker does catch misuse.
    let bad = json!({"event": {"kind": "finding"}});
    assert!(check_ecs(&bad, &fields).is_err());
    let bad = json!({"http": {"response": {"status_code": "200"}}});
    assert!(check_ecs(&bad, &fields).is_err());
    let bad = json!({"url": {"pathname": "/"}});
    assert!(check_ecs(&bad, &fields).is_err());
    let bad = json!({"event": {"category": ["web"], "type": ["creation"]}});
    assert!(check_ecs(&bad, &fields).is_err());
}
