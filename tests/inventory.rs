//! End to end on a held-out capture of a real REST API (tests/data/rest-api.pcap, made by
//! tests/data/rest/make.sh from a real Python server and client; the truth file comes from the
//! same data structures the client used): the inventory must hold every real template (at most
//! one miss) and no extra one, every planted sensitive type must be reported on the endpoint
//! that carries it, and none of the planted raw values may appear in any file the sensor
//! writes — observations, inventory events, inventory, OpenAPI.
#[path = "common/outputs.rs"]
mod outputs;
#[path = "common/scratch.rs"]
mod scratch;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = scratch::dir(&format!("inv-{tag}"), true);
    d
}

/// Placeholder names differ between the truth (`{user_id}`) and the sensor (`{id}`): compare
/// shapes only.
fn shape(t: &str) -> String {
    t.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn host(h: &str) -> String {
    h.rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map_or(h, |(h, _)| h)
        .to_ascii_lowercase()
}

struct Run {
    dir: PathBuf,
    inventory: Value,
}

fn replay(tag: &str, extra: &[&str]) -> Run {
    let dir = tmpdir(tag);
    let out = outputs::replay_into(&dir, &data("rest-api.pcap"), extra);
    assert!(
        out.status.success(),
        "apitap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("stderr.txt"), &out.stderr).unwrap();
    let inventory: Value =
        serde_json::from_slice(&std::fs::read(dir.join("inventory.json")).unwrap()).unwrap();
    Run { dir, inventory }
}

fn truth() -> Value {
    serde_json::from_slice(&std::fs::read(data("rest-api.truth.json")).unwrap()).unwrap()
}

type Key = (String, String, String);

fn key(v: &Value) -> Key {
    (
        host(v["host"].as_str().unwrap()),
        v["method"].as_str().unwrap().to_string(),
        shape(v["template"].as_str().unwrap()),
    )
}

#[test]
fn inventory_holds_every_real_template_and_no_extra() {
    let run = replay("templates", &["--workers", "1"]);
    let t = truth();
    let want: BTreeSet<Key> = t["templates"].as_array().unwrap().iter().map(key).collect();
    let got: BTreeSet<Key> = run.inventory["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    eprintln!(
        "templates: {} expected, {} found, missing {missing:?}, extra {extra:?}",
        want.len(),
        got.len()
    );
    assert!(missing.len() <= 1, "missing templates: {missing:?}");
    assert!(extra.is_empty(), "extra templates: {extra:?}");
}

fn endpoint_counts(r: &Run) -> BTreeMap<Key, u64> {
    r.inventory["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (key(e), e["count"].as_u64().unwrap()))
        .collect()
}

#[test]
fn same_inventory_with_two_workers() {
    let one = replay("w1", &["--workers", "1"]);
    let two = replay("w2", &["--workers", "2"]);
    assert_eq!(endpoint_counts(&one), endpoint_counts(&two));
}

/// What each exchange line says about its request and response, without what inference added
/// (an exchange seen before its template was learnt names the path it had).
fn exchange_facts(r: &Run) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in std::fs::read_to_string(r.dir.join("events.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["type"] == "http_exchange" {
            let k = format!(
                "{} {} {} {} {}",
                v["ts"],
                v["request"]["method"],
                v["request"]["path"],
                v["request"]["query"],
                v["response"]["status"]
            );
            *m.entry(k).or_default() += 1;
        }
    }
    m
}

/// With exchanges shared between workers (live capture's default), the inventory is the one
/// worker's, and every exchange is written exactly once. rest-api.pcap's connections all hash
/// to one worker, so the other one only has work if exchanges are really handed over.
#[test]
fn same_inventory_and_exchanges_when_workers_share() {
    let one = replay("share1", &["--workers", "1"]);
    let two = replay("share2", &["--workers", "2", "--share-exchanges", "true"]);
    assert_eq!(endpoint_counts(&one), endpoint_counts(&two));
    let facts = exchange_facts(&one);
    assert!(facts.values().sum::<usize>() > 1000);
    assert_eq!(facts, exchange_facts(&two));
    let stats: Value =
        serde_json::from_slice(&std::fs::read(two.dir.join("stats.json")).unwrap()).unwrap();
    let parsed: Vec<u64> = serde_json::from_value(stats["worker_exchanges"].clone()).unwrap();
    let finished: Vec<u64> = serde_json::from_value(stats["worker_finished"].clone()).unwrap();
    assert_eq!(parsed.iter().sum::<u64>(), finished.iter().sum::<u64>());
    assert!(
        parsed.iter().zip(&finished).any(|(p, f)| f > p),
        "no worker finished exchanges another parsed: parsed {parsed:?}, finished {finished:?}"
    );
}

#[test]
fn every_planted_sensitive_type_is_reported_where_it_travels() {
    let run = replay("sensitive", &[]);
    let t = truth();
    let mut want: BTreeSet<(Key, String)> = BTreeSet::new();
    let mut want_exact: BTreeSet<(Key, String, String, String)> = BTreeSet::new();
    for s in t["sensitive"].as_array().unwrap() {
        let k = key(s);
        let ty = s["type"].as_str().unwrap().to_string();
        want.insert((k.clone(), ty.clone()));
        want_exact.insert((
            k,
            ty,
            s["location"].as_str().unwrap().to_string(),
            s["field"].as_str().unwrap().to_string(),
        ));
    }
    let mut got: BTreeSet<(Key, String)> = BTreeSet::new();
    let mut got_exact = BTreeSet::new();
    for e in run.inventory["endpoints"].as_array().unwrap() {
        for s in e["sensitive"].as_array().unwrap() {
            let ty = s["type"].as_str().unwrap().to_string();
            got.insert((key(e), ty.clone()));
            let field = s["field"].as_str().unwrap();
            let field = if field.starts_with('{') { "{}" } else { field };
            got_exact.insert((
                key(e),
                ty,
                s["location"].as_str().unwrap().to_string(),
                field.to_string(),
            ));
        }
    }
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    let norm = |f: &str| {
        if f.starts_with('{') {
            "{}".to_string()
        } else {
            f.to_string()
        }
    };
    let want_exact: BTreeSet<_> = want_exact
        .into_iter()
        .map(|(k, t, l, f)| (k, t, l, norm(&f)))
        .collect();
    let exact_missing: Vec<_> = want_exact.difference(&got_exact).collect();
    eprintln!(
        "sensitive: {} (endpoint,type) expected, {} found; missing {missing:?}; extra {extra:?}; \
         (endpoint,type,location,field) missing {}: {exact_missing:?}",
        want.len(),
        got.len(),
        exact_missing.len()
    );
    assert!(
        missing.is_empty(),
        "planted types not reported: {missing:?}"
    );
    assert!(
        extra.len() <= want.len() / 20,
        "too many false positives: {extra:?}"
    );
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

fn assert_no_planted_value(run: &Run) {
    let t = truth();
    let planted: Vec<String> = t["planted_values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|v| v.len() >= 6)
        .collect();
    assert!(planted.len() > 100, "truth has its planted values");
    let mut files = Vec::new();
    files_under(&run.dir, &mut files);
    assert!(files.iter().any(|f| f.ends_with("events.jsonl")));
    assert!(files.iter().any(|f| f.ends_with("inventory.json")));
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "json")
                && f.to_string_lossy().contains("openapi")),
        "OpenAPI written: {files:?}"
    );
    let mut leaks = Vec::new();
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        // JSON escapes '/' nowhere but may escape nothing else we plant; also check the
        // percent-encoded form that travels in URLs.
        for v in &planted {
            let enc = v
                .replace('@', "%40")
                .replace('+', "%2B")
                .replace(' ', "%20");
            if text.contains(v.as_str()) || text.contains(&enc) {
                leaks.push(format!("{} in {}", v, f.display()));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} planted values leaked: {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(20)]
    );
}

#[test]
fn no_planted_value_in_any_output_masked() {
    assert_no_planted_value(&replay("leak-mask", &[]));
}

#[test]
fn no_planted_value_in_any_output_hashed() {
    assert_no_planted_value(&replay(
        "leak-hash",
        &["--redaction", "hash", "--redaction-salt", "s3"],
    ));
}

#[test]
fn redaction_off_really_shows_values() {
    // The control for the two tests above: with redaction off, planted values do appear, so
    // the absence above is redaction's doing, not an artefact of the check.
    let run = replay("leak-off", &["--redaction", "off"]);
    let t = truth();
    let events = std::fs::read_to_string(run.dir.join("events.jsonl")).unwrap();
    let shown = t["planted_values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|v| events.contains(v))
        .count();
    assert!(
        shown > 10,
        "only {shown} planted values visible with redaction off"
    );
}

#[test]
fn observations_carry_endpoint_auth_and_sensitive() {
    let run = replay("obs", &[]);
    let events = std::fs::read_to_string(run.dir.join("events.jsonl")).unwrap();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut with_endpoint = 0;
    let mut bearer = 0;
    for l in events.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        *kinds
            .entry(v["type"].as_str().unwrap().to_string())
            .or_default() += 1;
        if v["type"] == "http_exchange" {
            if v["endpoint"]["template"].is_string() {
                with_endpoint += 1;
            }
            if v["auth"]["kind"] == "bearer" {
                bearer += 1;
            }
        }
    }
    let t = truth();
    let exchanges = t["exchanges"]["count"].as_u64().unwrap();
    assert_eq!(
        kinds.get("http_exchange").copied(),
        Some(exchanges),
        "{kinds:?}"
    );
    assert_eq!(with_endpoint, exchanges);
    assert!(bearer > exchanges / 2, "bearer {bearer} of {exchanges}");
    let discovered = kinds.get("endpoint_discovered").copied().unwrap_or(0);
    assert!(discovered >= t["templates"].as_array().unwrap().len() as u64);
    assert!(kinds.get("sensitive_data_discovered").copied().unwrap_or(0) > 0);
}
