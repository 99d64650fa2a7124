//! The OpenAPI export as a user meets it: real captures replayed with `--openapi`, every document
//! validated by a real OpenAPI 3.1 validator (`openapi-spec-validator` from PyPI, installed by
//! `scripts/openapi-validator.sh`), and checked against the inventory of the same run: every
//! endpoint is an operation, every placeholder a declared path parameter, every response
//! described, every credential a security requirement, and no value seen in traffic is written.
//!
//! Without network the validator cannot be installed and the tests fail, saying so; set
//! `APITAP_SKIP_OPENAPI_VALIDATOR=1` to run the structural checks only.
#[path = "common/scratch.rs"]
mod scratch;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The captures replayed: the committed ones, and the REST API capture when it is present.
fn captures() -> Vec<&'static str> {
    let mut v = vec!["h1-nginx", "h2c-nginx", "grpc"];
    if root().join("tests/data/rest-api.pcap").exists() {
        v.push("rest-api");
    } else {
        eprintln!("NOTE: tests/data/rest-api.pcap missing: not replayed");
    }
    v
}

fn tmp(name: &str) -> PathBuf {
    let d = scratch::dir(&format!("openapi-{name}"), true);
    d
}

/// What one replay wrote.
struct Run {
    inventory: Value,
    /// Documents by file, sorted.
    docs: BTreeMap<PathBuf, Value>,
    /// Raw observations (`--redaction off`), when asked for.
    observations: Vec<Value>,
}

fn replay(capture: &str, out: &Path, openapi: &Path, raw: bool) -> Run {
    let inv = out.join("inventory.json");
    let obs = out.join("observations.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apitap"));
    cmd.current_dir(root())
        .arg("replay")
        .arg(format!("tests/data/{capture}.pcap"))
        .arg("--openapi")
        .arg(openapi)
        .arg("--inventory")
        .arg(&inv)
        .arg("-q");
    if raw {
        cmd.args(["--redaction", "off", "-o"])
            .arg(format!("jsonl:{}", obs.display()));
    } else {
        cmd.args(["-o", "jsonl:/dev/null"]);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{capture}: apitap failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let inventory: Value = serde_json::from_slice(&std::fs::read(&inv).unwrap()).unwrap();
    let dir = if openapi.is_dir() {
        openapi.to_path_buf()
    } else {
        openapi.parent().unwrap().to_path_buf()
    };
    let mut docs = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "inventory.json" && !name.ends_with(".tmp") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            docs.insert(p, v);
        }
    }
    let observations = if raw {
        std::fs::read_to_string(&obs)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    } else {
        Vec::new()
    };
    Run {
        inventory,
        docs,
        observations,
    }
}

/// Runs `scripts/openapi-validator.sh` on `files`; fails the test on invalid documents, and
/// when the validator cannot be installed unless APITAP_SKIP_OPENAPI_VALIDATOR=1.
fn validate(files: &[&Path]) {
    let o = Command::new("bash")
        .arg(root().join("scripts/openapi-validator.sh"))
        .args(files)
        .output()
        .expect("bash");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    match o.status.code() {
        Some(0) => {
            for f in files {
                assert!(
                    out.contains(&format!("{}: OK", f.display())),
                    "validator did not report {}: {out}",
                    f.display()
                );
            }
        }
        Some(3) if std::env::var("APITAP_SKIP_OPENAPI_VALIDATOR").as_deref() == Ok("1") => {
            eprintln!("SKIPPED OpenAPI validation (APITAP_SKIP_OPENAPI_VALIDATOR=1): {err}");
        }
        Some(3) => panic!(
            "the OpenAPI validator (openapi-spec-validator from PyPI) could not be installed, so \
             the OpenAPI documents were NOT validated. Give this machine access to PyPI (or \
             run scripts/openapi-validator.sh --install where it has), or set \
             APITAP_SKIP_OPENAPI_VALIDATOR=1 to skip validation knowingly.\n{err}"
        ),
        _ => panic!("invalid OpenAPI document(s):\n{out}\n{err}"),
    }
}

fn endpoints(inv: &Value) -> &Vec<Value> {
    inv["endpoints"].as_array().expect("inventory endpoints")
}

fn hosts(inv: &Value) -> BTreeSet<String> {
    endpoints(inv)
        .iter()
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect()
}

/// The document of `host` (by its title).
fn doc_of<'a>(docs: &'a BTreeMap<PathBuf, Value>, host: &str) -> &'a Value {
    let title = format!("{host} (observed by apitap)");
    let found: Vec<&Value> = docs
        .values()
        .filter(|d| d["info"]["title"] == title.as_str())
        .collect();
    assert_eq!(found.len(), 1, "one document for {host}");
    found[0]
}

/// The operation (or other-method record) of an inventory endpoint, with its path key.
fn find_op<'a>(doc: &'a Value, method: &str, template: &str) -> Option<(&'a str, &'a Value)> {
    let lower = method.to_ascii_lowercase();
    let std_op = OPERATIONS.contains(&lower.as_str()) && method == method.to_ascii_uppercase();
    for (key, item) in doc["paths"].as_object()? {
        let op = if std_op {
            &item[lower.as_str()]
        } else {
            &item["x-apitap-other-methods"][method]
        };
        let x = if std_op { &op["x-apitap"] } else { op };
        if x["templates"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == template))
        {
            return Some((key, op));
        }
    }
    None
}

fn placeholders(key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = key;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        out.insert(rest[i + 1..i + j].to_string());
        rest = &rest[i + j + 1..];
    }
    out
}

/// Keys named `example`/`examples` anywhere except as property names of a schema.
fn example_keys(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            let names_map = path.ends_with("/properties") || path.ends_with("/patternProperties");
            for (k, sub) in o {
                if !names_map && (k == "example" || k == "examples") {
                    out.push(format!("{path}/{k}"));
                }
                example_keys(sub, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, sub) in a.iter().enumerate() {
                example_keys(sub, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Whether a raw value from traffic is distinctive enough that finding it in a document means
/// it leaked (not a word such as `name` that is also a schema property, nor a small number).
fn distinctive(v: &str) -> bool {
    v.chars().count() >= 4
        && !v.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
        && !v.bytes().all(|b| b.is_ascii_digit())
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Values seen in traffic: query values, and the concrete path segments that the template
/// replaced by a placeholder.
fn raw_values(observations: &[Value]) -> BTreeSet<String> {
    let mut vals = BTreeSet::new();
    for o in observations {
        let req = &o["request"];
        if let Some(q) = req["query"].as_str() {
            for kv in q.split('&') {
                if let Some((_, v)) = kv.split_once('=') {
                    vals.insert(v.to_string());
                    vals.insert(percent_decode(v));
                }
            }
        }
        if let (Some(p), Some(t)) = (req["path"].as_str(), o["endpoint"]["template"].as_str()) {
            let ps = p.split('/').filter(|s| !s.is_empty());
            let ts = t.split('/').filter(|s| !s.is_empty());
            for (ps, ts) in ps.zip(ts) {
                if ts.starts_with('{') {
                    vals.insert(ps.to_string());
                    vals.insert(percent_decode(ps));
                }
            }
        }
    }
    vals.retain(|v| distinctive(v));
    vals
}

/// The scheme object a credential of the inventory must map to; `None` when it names nothing
/// OpenAPI could point at (an API key without a name).
fn expected_scheme(c: &Value) -> Option<Value> {
    let kind = c["kind"].as_str().unwrap_or("");
    let loc = c["location"].as_str().unwrap_or("header");
    let http = |s: &str| Some(serde_json::json!({"type": "http", "scheme": s}));
    match (kind, loc) {
        ("none", _) => None,
        ("basic", _) => http("basic"),
        ("digest", _) => http("digest"),
        ("bearer", "header") => http("bearer"),
        _ => {
            let name = c["name"].as_str().filter(|n| !n.is_empty())?;
            let (loc, name) = match (kind, loc) {
                ("session_cookie", _) => ("cookie", name.to_string()),
                (_, "header") => ("header", name.to_ascii_lowercase()),
                (_, l) => (l, name.to_string()),
            };
            Some(serde_json::json!({"type": "apiKey", "in": loc, "name": name}))
        }
    }
}

/// Every structural promise of the export, checked against the inventory of the same run.
fn check_structure(capture: &str, run: &Run) {
    let inv = &run.inventory;
    let hs = hosts(inv);
    assert!(!hs.is_empty(), "{capture}: no endpoint in the inventory");
    assert_eq!(run.docs.len(), hs.len(), "{capture}: one document per host");
    for (file, doc) in &run.docs {
        let f = file.display();
        assert_eq!(doc["openapi"], "3.1.0", "{f}");
        let mut ids = BTreeSet::new();
        for (key, item) in doc["paths"].as_object().unwrap() {
            assert!(key.starts_with('/'), "{f}: {key}");
            // Path parameters: exactly the placeholders, required, declared on the path item.
            let declared: BTreeSet<String> = item["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .inspect(|p| assert_eq!(p["required"], true, "{f}: {key}: {p}"))
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, placeholders(key), "{f}: {key}");
            for m in OPERATIONS {
                let Some(op) = item.get(m) else { continue };
                let id = op["operationId"].as_str().unwrap();
                assert!(
                    ids.insert(id.to_string()),
                    "{f}: duplicate operationId {id}"
                );
                let resp = op["responses"].as_object().unwrap();
                assert!(!resp.is_empty(), "{f}: {m} {key}: no response");
                for (code, r) in resp {
                    let d = r["description"].as_str().unwrap_or("");
                    assert!(!d.is_empty(), "{f}: {m} {key} {code}: no description");
                }
                if let Some(sec) = op["security"].as_array() {
                    for req in sec {
                        for name in req.as_object().unwrap().keys() {
                            assert!(
                                doc["components"]["securitySchemes"][name].is_object(),
                                "{f}: {m} {key}: undefined scheme {name}"
                            );
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        example_keys(doc, "", &mut found);
        assert!(found.is_empty(), "{f}: examples written: {found:?}");
    }
    // Every endpoint of the inventory is an operation of its host's document, with its
    // statuses, query parameters and credentials.
    for e in endpoints(inv) {
        let (host, method, template) = (
            e["host"].as_str().unwrap(),
            e["method"].as_str().unwrap(),
            e["template"].as_str().unwrap(),
        );
        let doc = doc_of(&run.docs, host);
        if !template.starts_with('/') {
            let ne = doc["x-apitap"]["not_expressible"].as_array().unwrap();
            assert!(ne
                .iter()
                .any(|n| n["template"] == template && n["method"] == method));
            continue;
        }
        let Some((key, op)) = find_op(doc, method, template) else {
            panic!("{capture}: {host} {method} {template} is not in the OpenAPI document");
        };
        // One parameter per placeholder (the template's may repeat: `{id}` … `{id}`).
        assert_eq!(
            placeholders(key).len(),
            template.matches('{').count(),
            "{key} for {template}"
        );
        if !OPERATIONS.contains(&method.to_ascii_lowercase().as_str())
            || method != method.to_ascii_uppercase()
        {
            continue;
        }
        for code in e["statuses"].as_object().unwrap().keys() {
            let c: u16 = code.parse().unwrap();
            if (100..=599).contains(&c) {
                assert!(
                    op["responses"][code.as_str()]["description"].is_string(),
                    "{method} {template}: status {code} missing"
                );
            }
        }
        let creds = e["auth"]["credentials"].as_array().unwrap();
        let key_params: BTreeSet<&str> = creds
            .iter()
            .filter(|c| c["location"] == "query")
            .filter_map(|c| c["name"].as_str())
            .collect();
        let qp: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        for n in e["query_params"].as_array().unwrap() {
            let n = n.as_str().unwrap();
            assert_eq!(
                qp.contains(n),
                !key_params.contains(n),
                "{method} {template}: query parameter {n}"
            );
        }
        let schemes = &doc["components"]["securitySchemes"];
        let sec = op["security"].as_array();
        for c in creds {
            let Some(mut want) = expected_scheme(c) else {
                continue;
            };
            let found = sec.into_iter().flatten().any(|req| {
                req.as_object().unwrap().keys().any(|n| {
                    let mut s = schemes[n].clone();
                    if let (Some(s), Some(w)) = (s.as_object_mut(), want.as_object_mut()) {
                        s.remove("bearerFormat");
                        w.remove("bearerFormat");
                    }
                    s == want
                })
            });
            assert!(
                found,
                "{method} {template}: credential {c} not required: {sec:?}"
            );
        }
        let unauth = e["auth"]["unauthenticated"].as_u64().unwrap();
        if let Some(sec) = sec {
            assert_eq!(
                sec.iter().any(|r| r.as_object().unwrap().is_empty()),
                unauth > 0,
                "{method} {template}: optional auth"
            );
        }
    }
}

/// The body of the test: every capture, validated and checked; returns the files validated.
#[test]
fn captures_export_valid_openapi_matching_the_inventory() {
    let mut all = Vec::new();
    for c in captures() {
        let out = tmp(c);
        // A directory that does not exist yet, named with a trailing slash.
        let dir = PathBuf::from(format!("{}/openapi/", out.display()));
        let run = replay(c, &out, &dir, true);
        check_structure(c, &run);
        // No value seen in traffic appears in any document, even with redaction off.
        let mut vals = raw_values(&run.observations);
        if c == "rest-api" {
            let truth: Value = serde_json::from_slice(
                &std::fs::read(root().join("tests/data/rest-api.truth.json")).unwrap(),
            )
            .unwrap();
            for v in truth["planted_values"].as_array().unwrap() {
                vals.insert(v.as_str().unwrap().to_string());
            }
            // Decoys (request ids, file ids …) are values too, only not sensitive ones.
            for d in truth["decoys"].as_array().unwrap() {
                for v in d["examples"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain([&d["value"]])
                {
                    if let Some(v) = v.as_str().filter(|v| distinctive(v)) {
                        vals.insert(v.to_string());
                    }
                }
            }
        }
        for (f, doc) in &run.docs {
            let text = serde_json::to_string(doc).unwrap();
            for v in &vals {
                assert!(
                    !text.contains(v.as_str()),
                    "{}: value {v:?} from traffic written",
                    f.display()
                );
            }
        }
        eprintln!(
            "{c}: {} documents, {} endpoints, {} raw values checked",
            run.docs.len(),
            endpoints(&run.inventory).len(),
            vals.len()
        );
        all.extend(run.docs.into_keys());
    }
    let files: Vec<&Path> = all.iter().map(PathBuf::as_path).collect();
    validate(&files);
}

#[test]
fn export_is_deterministic_and_independent_of_redaction() {
    let c = if captures().contains(&"rest-api") {
        "rest-api"
    } else {
        "h1-nginx"
    };
    let a = tmp("det-a");
    let b = tmp("det-b");
    let ra = replay(c, &a, &a.join("o"), true);
    let rb = replay(c, &b, &b.join("o"), false);
    let bytes = |r: &Run| -> Vec<(String, Vec<u8>)> {
        r.docs
            .keys()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(p).unwrap(),
                )
            })
            .collect()
    };
    assert!(!ra.docs.is_empty());
    assert_eq!(bytes(&ra), bytes(&rb));
}

#[test]
fn a_file_path_gets_one_document_per_host_beside_it() {
    // grpc.pcap has one host; rest-api.pcap two (shop. and files.example.test, per its truth).
    let mut cases = vec![("grpc", None)];
    if captures().contains(&"rest-api") {
        cases.push((
            "rest-api",
            Some(["api.files.example.test.json", "api.shop.example.test.json"]),
        ));
    }
    for (c, want) in cases {
        let out = tmp(&format!("file-{c}"));
        let run = replay(c, &out, &out.join("api.json"), false);
        let hs = hosts(&run.inventory);
        let names: BTreeSet<String> = run
            .docs
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        match want {
            None => {
                assert_eq!(hs.len(), 1, "{c}: {hs:?}");
                assert_eq!(names, BTreeSet::from(["api.json".to_string()]), "{c}");
            }
            Some(want) => {
                let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
                assert_eq!(names, want, "{c}");
                for h in &hs {
                    doc_of(&run.docs, h);
                }
            }
        }
        check_structure(c, &run);
    }
}

#[test]
fn rest_api_security_schemes_are_described() {
    if !captures().contains(&"rest-api") {
        eprintln!("SKIPPED: tests/data/rest-api.pcap missing");
        return;
    }
    let out = tmp("rest-sec");
    let run = replay("rest-api", &out, &out.join("o"), false);
    let truth: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/data/rest-api.truth.json")).unwrap(),
    )
    .unwrap();
    // Auth kinds the capture carries, by host.
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in truth["auth"].as_array().unwrap() {
        for k in a["exchanges"].as_object().unwrap().keys() {
            kinds
                .entry(a["host"].as_str().unwrap().to_string())
                .or_default()
                .insert(k.clone());
        }
    }
    for (host, ks) in &kinds {
        let doc = doc_of(&run.docs, host);
        let schemes: Vec<&Value> = doc["components"]["securitySchemes"]
            .as_object()
            .map(|o| o.values().collect())
            .unwrap_or_default();
        if ks.contains("bearer") {
            assert!(
                schemes
                    .iter()
                    .any(|s| s["type"] == "http" && s["scheme"] == "bearer"),
                "{host}: {schemes:?}"
            );
        }
        if ks.contains("basic") {
            assert!(schemes
                .iter()
                .any(|s| s["type"] == "http" && s["scheme"] == "basic"));
        }
        if ks.iter().any(|k| k.contains("api_key")) {
            assert!(
                schemes.iter().any(|s| s["type"] == "apiKey"),
                "{host}: {schemes:?}"
            );
        }
        if ks.len() == 1 && ks.contains("none") {
            assert!(schemes.is_empty(), "{host}: {schemes:?}");
        }
    }
}
