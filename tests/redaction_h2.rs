//! The redaction audit over HTTP/2: tests/data/rest-h2.pcap is real h2c traffic (prior
//! knowledge) between a Python `h2` server and three client implementations (the `h2`
//! library, curl and nghttp; two HPACK encoders, multiplexed streams, padded DATA frames, a
//! header block continued in CONTINUATION frames, gzip response bodies), made by
//! tests/data/rest/h2/make.sh. Secrets are planted in the path, the query (percent-encoded),
//! headers (`authorization` Bearer and Basic, `x-api-key`, `cookie`, typed values in plain
//! headers and in a URL-valued `referer`), JWT claims, request and response JSON bodies and
//! response headers. The truth (tests/data/rest-h2.truth.json) lists every planted value that
//! actually travelled, with the forms in which it travelled (percent-encoded, base64 inside a
//! Basic credential, base64url inside a JWT).
//!
//! Under `--redaction mask` and `--redaction hash` none of those values, in any of those forms,
//! may appear in any file the sensor writes (events, inventory, OpenAPI, statistics) nor on its
//! stderr. The control: with `--redaction off` the values that travel where the sensor shows
//! them (path, query, headers) do appear, so the check can fail. And the capture must really
//! have been parsed as HTTP/2, every exchange of it, bodies decoded.
#[path = "common/outputs.rs"]
mod outputs;
#[path = "common/scratch.rs"]
mod scratch;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn truth() -> Value {
    serde_json::from_slice(&std::fs::read(data("rest-h2.truth.json")).unwrap()).unwrap()
}

struct Run {
    dir: PathBuf,
    stderr: String,
}

impl Drop for Run {
    /// The run's files go when the test passes; a failed test keeps them to be looked at.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Run {
    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join(name)).unwrap()).unwrap()
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn replay(tag: &str, extra: &[&str]) -> Run {
    let dir = scratch::dir(&format!("redh2-{tag}"), true);
    let out = outputs::replay_into(&dir, &data("rest-h2.pcap"), extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "apitap failed: {stderr}");
    Run { dir, stderr }
}

/// Every form in which a planted value may show: as it is, as it travelled (percent-encoded,
/// in either hex case), at least 6 characters long (shorter strings match by chance).
fn forms(p: &Value) -> Vec<String> {
    let mut out: Vec<String> = vec![p["value"].as_str().unwrap().to_string()];
    for f in p["wire_forms"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        out.push(f.to_string());
        // The same escapes in lower-case hex (`%2b`, `%40`), as some encoders write them.
        let mut lower = String::new();
        let mut rest = f;
        while let Some(i) = rest.find('%') {
            lower.push_str(&rest[..i]);
            let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
            lower.push_str(&esc.to_ascii_lowercase());
            rest = &rest[i + esc.len()..];
        }
        lower.push_str(rest);
        out.push(lower);
    }
    out.sort();
    out.dedup();
    out.retain(|f| f.len() >= 6);
    out
}

fn files_under(d: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Where in a JSON value strings containing `needle` sit (`request.headers.referer[0]`).
fn json_paths(v: &Value, needle: &str, at: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains(needle) => out.push(at.to_string()),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                json_paths(x, needle, &format!("{at}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if k.contains(needle) {
                    out.push(format!("{p} (key)"));
                }
                json_paths(x, needle, &p, out);
            }
        }
        _ => {}
    }
}

/// Where `needle` sits in a written file: JSON paths (events by their `type`), else the name.
fn locate(name: &str, text: &str, needle: &str) -> String {
    let mut paths = Vec::new();
    if name.ends_with(".jsonl") {
        for l in text.lines().filter(|l| l.contains(needle)) {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                let ty = v["type"].as_str().unwrap_or("?").to_string();
                json_paths(&v, needle, &ty, &mut paths);
            }
        }
    } else if let Ok(v) = serde_json::from_str::<Value>(text) {
        json_paths(&v, needle, "", &mut paths);
    }
    // Array indexes differ between occurrences: one entry per shape.
    let mut shapes: Vec<String> = paths
        .iter()
        .map(|p| {
            let mut s = String::new();
            let mut skip = false;
            for c in p.chars() {
                match c {
                    '[' => {
                        skip = true;
                        s.push_str("[*]");
                    }
                    ']' => skip = false,
                    _ if skip => {}
                    _ => s.push(c),
                }
            }
            s
        })
        .collect();
    shapes.sort();
    shapes.dedup();
    let file = Path::new(name)
        .file_name()
        .map_or(name.to_string(), |n| n.to_string_lossy().into_owned());
    if shapes.is_empty() {
        file
    } else {
        format!("{file} at {}", shapes.join(", "))
    }
}

/// (value, form found, where) for every planted value found in the run's files or stderr.
fn leaks(run: &Run) -> Vec<(String, String, String)> {
    let t = truth();
    let planted = t["planted"].as_array().unwrap();
    let mut files = Vec::new();
    files_under(&run.dir, &mut files);
    for want in ["events.jsonl", "inventory.json", "stats.json"] {
        assert!(
            files.iter().any(|f| f.ends_with(want)),
            "{want} not written: {files:?}"
        );
    }
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("openapi")
            && f.extension().is_some_and(|e| e == "json")),
        "no OpenAPI document written: {files:?}"
    );
    let mut texts: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned(),
            )
        })
        .collect();
    texts.push(("stderr".into(), run.stderr.clone()));
    let mut out = Vec::new();
    for p in planted {
        for f in forms(p) {
            for (name, text) in &texts {
                if text.contains(&f) {
                    out.push((
                        p["value"].as_str().unwrap().to_string(),
                        f.clone(),
                        locate(name, text, &f),
                    ));
                }
            }
        }
    }
    out
}

fn assert_no_leak(run: &Run) {
    let t = truth();
    let planted = t["planted"].as_array().unwrap();
    // The truth is not empty, and covers every channel the audit is about.
    assert!(planted.len() > 300, "{} planted values", planted.len());
    for loc in [
        "request.path",
        "request.query",
        "request.header:authorization",
        "request.header:x-api-key",
        "request.header:cookie",
        "request.header:referer",
        "request.header:authorization (inside base64)",
        "request.header:authorization (inside a JWT claim)",
        "request.body",
        "response.body",
        "response.header:set-cookie",
        "response.header:x-account-owner",
    ] {
        assert!(
            planted
                .iter()
                .any(|p| p["locations"].as_array().unwrap().iter().any(|l| l == loc)),
            "no planted value travelled in {loc}"
        );
    }
    let found = leaks(run);
    let mut by_value: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (v, f, place) in &found {
        by_value
            .entry(v.as_str())
            .or_default()
            .push(format!("{f:?} in {place}"));
    }
    let types: BTreeMap<&str, &str> = planted
        .iter()
        .map(|p| (p["value"].as_str().unwrap(), p["type"].as_str().unwrap()))
        .collect();
    let report: Vec<String> = by_value
        .iter()
        .take(20)
        .map(|(v, w)| format!("{} {v:?}: {}", types[v], w.join(", ")))
        .collect();
    assert!(
        by_value.is_empty(),
        "{} of {} planted values leaked (showing 20):\n  {}",
        by_value.len(),
        planted.len(),
        report.join("\n  ")
    );
}

#[test]
fn every_h2_exchange_is_parsed_with_its_bodies() {
    let run = replay("parsed", &[]);
    let t = truth();
    let want = t["exchanges"]["count"].as_u64().unwrap();
    assert!(want > 250, "truth: {want} exchanges");
    let st = run.json("stats.json");
    let e = &st["engine"];
    assert_eq!(e["exchanges"], want, "{e}");
    assert_eq!(e["exchanges_http2"], t["exchanges"]["http2"], "{e}");
    assert_eq!(e["exchanges_http1"], 0, "{e}");
    assert_eq!(e["with_gap"], 0, "{e}");
    assert_eq!(e["without_response"], 0, "{e}");
    let h2 = &st["parsers"]["h2"];
    for k in [
        "frame_errors",
        "continuation_errors",
        "hpack_errors",
        "hpack_unknown_refs",
        "header_blocks_oversized",
    ] {
        assert_eq!(h2[k], 0, "parsers.h2.{k}: {h2}");
    }
    // Every gzip-compressed response body was decoded for inspection.
    let bodies = &st["inspect"]["bodies"];
    assert_eq!(
        bodies["decoded"], t["exchanges"]["gzip_responses"],
        "{bodies}"
    );
    assert_eq!(bodies["decode_errors"], 0, "{bodies}");

    // The observations: one per exchange, (method, target shape, status) as in the truth's
    // log. Targets are compared without their redacted parts: the path's first three segments.
    let shape = |m: &str, target: &str, status: u64| {
        let path = target.split('?').next().unwrap_or("");
        let head: Vec<&str> = path.split('/').take(4).collect();
        format!("{m} {} {status}", head.join("/"))
    };
    let mut want_log: Vec<String> = t["exchange_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            shape(
                x["method"].as_str().unwrap(),
                x["target"].as_str().unwrap(),
                x["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut got: Vec<String> = run
        .events()
        .iter()
        .filter(|v| v["type"] == "http_exchange")
        .map(|v| {
            assert_eq!(v["protocol"], "HTTP/2", "{v}");
            assert!(v["stream_id"].as_u64().is_some(), "{v}");
            shape(
                v["request"]["method"].as_str().unwrap(),
                v["request"]["path"].as_str().unwrap(),
                v["response"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    want_log.sort();
    got.sort();
    assert_eq!(got, want_log);

    // The sensor saw the secrets it must not write: body values were found (so decoded and
    // walked), including inside gzip-only responses and the CONTINUATION-carried headers.
    let inv = run.json("inventory.json");
    let found = |tmpl: &str, method: &str, ty: &str, loc: &str| {
        inv["endpoints"].as_array().unwrap().iter().any(|e| {
            e["template"] == tmpl
                && e["method"] == method
                && e["sensitive"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["type"] == ty && s["location"] == loc)
        })
    };
    for (tmpl, method, ty, loc) in [
        ("/api/v1/keys", "GET", "private_key", "response.body"),
        ("/api/v1/keys", "GET", "api_key", "response.body"),
        ("/api/v1/keys", "GET", "api_key", "request.header"),
        ("/api/v1/integrations", "GET", "api_key", "request.query"),
        ("/api/v1/payments", "POST", "credit_card", "request.body"),
        ("/api/v1/payments", "POST", "iban", "request.body"),
        ("/api/v1/users/{id}/profile", "PUT", "ssn", "request.body"),
        ("/api/v1/users/{email}", "GET", "email", "request.path"),
        ("/api/v1/users/{email}", "GET", "ssn", "response.body"),
        ("/api/v1/search", "GET", "phone", "request.query"),
    ] {
        assert!(
            found(tmpl, method, ty, loc),
            "{method} {tmpl}: no {ty} at {loc} in the inventory"
        );
    }
}

#[test]
fn no_planted_value_in_any_output_masked() {
    assert_no_leak(&replay("mask", &["--redaction", "mask"]));
}

#[test]
fn no_planted_value_in_any_output_hashed() {
    assert_no_leak(&replay(
        "hash",
        &["--redaction", "hash", "--redaction-salt", "h2-audit"],
    ));
}

/// The control of the two tests above: with redaction off, the values that travel where the
/// sensor shows them (path, query, headers) appear in its events, so their absence above is
/// redaction's doing, not an artefact of the search.
#[test]
fn redaction_off_really_shows_the_planted_values() {
    let run = replay("off", &["--redaction", "off"]);
    let t = truth();
    let events = std::fs::read_to_string(run.dir.join("events.jsonl")).unwrap();
    let visible: Vec<&Value> = t["planted"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["visible_when_off"] == true)
        .collect();
    assert!(visible.len() > 200, "{} visible values", visible.len());
    let hidden: Vec<&str> = visible
        .iter()
        .filter(|p| !forms(p).iter().any(|f| events.contains(f.as_str())))
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    eprintln!(
        "redaction off: {} of {} values planted in paths, queries and headers are shown",
        visible.len() - hidden.len(),
        visible.len()
    );
    assert!(
        hidden.len() * 20 <= visible.len(),
        "{} of {} values not shown with redaction off: {:?}",
        hidden.len(),
        visible.len(),
        &hidden[..hidden.len().min(10)]
    );
    // And the leak search itself finds them.
    assert!(leaks(&run).len() >= visible.len() - hidden.len());
}
