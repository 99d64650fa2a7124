//! End-to-end accuracy on captures of real programs talking on loopback (tests/data/README.md
//! says how each was made), against the servers' own access logs as ground truth; and the same
//! captures impaired the way mirror ports impair traffic (drops, duplicates, reordering).
mod common;

use common::impair::impair;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = common::scratch::dir("loopback", false);
    d.join(name)
}

/// Runs `apitap replay` and returns the observations and the stats JSON.
fn replay(pcap: &Path, tag: &str) -> (Vec<Value>, Value) {
    let out = tmp(&format!("{tag}.jsonl"));
    let stats = tmp(&format!("{tag}.stats.json"));
    let _ = std::fs::remove_file(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("replay")
        .arg(pcap)
        .args(["--redaction", "off", "-q", "--output"])
        .arg(format!("jsonl:{}", out.display()))
        .arg("--stats-json")
        .arg(&stats)
        .output()
        .expect("run apitap");
    assert!(
        st.status.success(),
        "apitap failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let obs = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("valid JSON line"))
        // Inventory events share the output; these tests are about exchanges.
        .filter(|o| o["type"] == "http_exchange")
        .collect();
    let stats = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    (obs, stats)
}

type Key = (String, String, u64);

fn truth(name: &str) -> Vec<Key> {
    std::fs::read_to_string(data(name))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["method"].as_str().unwrap().to_string(),
                v["target"].as_str().unwrap().to_string(),
                v["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn key(o: &Value) -> Option<Key> {
    let r = &o["request"];
    let mut target = r["path"].as_str()?.to_string();
    if let Some(q) = r["query"].as_str() {
        target.push('?');
        target.push_str(q);
    }
    let status = o["response"]["status"].as_u64()?;
    Some((r["method"].as_str()?.to_string(), target, status))
}

/// (exchanges matching the truth, exchanges not in the truth) — multiset comparison.
fn score(obs: &[Value], truth: &[Key]) -> (usize, usize, Vec<String>) {
    let mut want: HashMap<&Key, usize> = HashMap::new();
    for k in truth {
        *want.entry(k).or_default() += 1;
    }
    let (mut hit, mut extra) = (0, 0);
    let mut examples = Vec::new();
    for o in obs {
        // A request without its response is not wrong, just incomplete.
        if let Some(k) = key(o) {
            match want.get_mut(&k) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    hit += 1;
                }
                _ => {
                    extra += 1;
                    if examples.len() < 5 {
                        examples.push(format!("{k:?}"));
                    }
                }
            }
        }
    }
    (hit, extra, examples)
}

fn check_clean(pcap: &str, truth_file: &str, protocol: &str) -> Vec<Value> {
    let truth = truth(truth_file);
    let (obs, _) = replay(&data(pcap), pcap);
    let (hit, extra, ex) = score(&obs, &truth);
    let rate = hit as f64 / truth.len() as f64;
    eprintln!(
        "{pcap}: {hit}/{} exchanges right ({:.2}%), {extra} not in the truth",
        truth.len(),
        rate * 100.0
    );
    assert!(rate >= 0.995, "{pcap}: only {:.2}% right", rate * 100.0);
    assert_eq!(extra, 0, "{pcap}: invented or mispaired exchanges: {ex:?}");
    if !protocol.is_empty() {
        assert!(
            obs.iter().all(|o| o["protocol"] == protocol),
            "{pcap}: wrong protocol label"
        );
    }
    obs
}

fn check_impaired(pcap: &str, truth_file: &str, min_rate: f64, drop_pct: f64) {
    let truth = truth(truth_file);
    for seed in [1u64, 2, 3] {
        let bad = tmp(&format!("{pcap}.impaired.{seed}.{drop_pct}.pcap"));
        let st = impair(&data(pcap), &bad, seed, drop_pct, 1.0, 1.0).unwrap();
        let (obs, stats) = replay(&bad, &format!("{pcap}.impaired.{seed}.{drop_pct}"));
        let (hit, extra, ex) = score(&obs, &truth);
        let rate = hit as f64 / truth.len() as f64;
        eprintln!(
            "{pcap} seed {seed} ({} dropped, {} duplicated, {} swapped of {} packets): {hit}/{} right ({:.2}%), {extra} wrong {ex:?}; gaps {}",
            st.dropped, st.duplicated, st.swapped, st.input, truth.len(), rate * 100.0,
            stats["flows"]["reassembly"]["gap_bytes"]
        );
        assert!(
            rate >= min_rate,
            "{pcap} seed {seed}: only {:.2}% right",
            rate * 100.0
        );
        // Mispairing after losses must stay rare: nothing is worse than a confident wrong answer.
        assert!(
            (extra as f64) <= 0.01 * truth.len() as f64,
            "{pcap} seed {seed}: {extra} wrong exchanges, e.g. {ex:?}"
        );
    }
}

#[test]
fn http1_nginx_matches_access_log() {
    let _ = check_clean("h1-nginx.pcap", "h1-nginx.truth.jsonl", "HTTP/1.1");
}

#[test]
fn http1_nginx_survives_mirror_loss_duplication_reordering() {
    check_impaired("h1-nginx.pcap", "h1-nginx.truth.jsonl", 0.97, 1.0);
}

#[test]
fn http1_nginx_duplication_and_reordering_lose_nothing() {
    check_impaired("h1-nginx.pcap", "h1-nginx.truth.jsonl", 0.995, 0.0);
}

#[test]
fn observations_have_documented_shape() {
    let (obs, stats) = replay(&data("h1-nginx.pcap"), "shape");
    assert!(!obs.is_empty());
    for o in obs.iter().take(50) {
        assert_eq!(o["type"], "http_exchange");
        assert!(o["ts"].as_str().unwrap().ends_with('Z'));
        assert!(o["flow_id"].as_u64().is_some());
        assert!(o["client"]["ip"].is_string() && o["server"]["port"].as_u64() == Some(18080));
        assert!(o["request"]["headers"].is_object());
        assert!(o["request"]["body_bytes"].is_u64());
        assert!(o["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(
        stats["engine"]["exchanges"].as_u64().unwrap() as usize,
        obs.len()
    );
    assert!(stats["packets"].as_u64().unwrap() > 0);
}

#[test]
fn http2_prior_knowledge_nginx_matches_access_log() {
    let _ = check_clean("h2c-nginx.pcap", "h2c-nginx.truth.jsonl", "HTTP/2");
}

#[test]
fn http2_upgrade_from_http1_matches_proxy_log() {
    // The upgrade request itself is an HTTP/2 exchange on stream 1. One client in this capture
    // (`curl --http1.1`, tests/data/README.md) does not upgrade: its two exchanges stay HTTP/1.1.
    let obs = check_clean("h2c-upgrade.pcap", "h2c-upgrade.truth.jsonl", "");
    for o in &obs {
        let path = o["request"]["path"].as_str().unwrap();
        let want = if ["/v1/users/3", "/v2/status"].contains(&path) {
            "HTTP/1.1"
        } else {
            "HTTP/2"
        };
        assert_eq!(o["protocol"], want, "{o}");
    }
    let upgraded = obs.iter().filter(|o| o["stream_id"] == 1).count();
    assert_eq!(
        upgraded, 9,
        "one upgrade request (stream 1) per upgrading connection"
    );
}

#[test]
fn http2_nginx_survives_mirror_loss_duplication_reordering() {
    check_impaired("h2c-nginx.pcap", "h2c-nginx.truth.jsonl", 0.95, 1.0);
}

#[test]
fn grpc_calls_match_what_the_client_did() {
    let _ = check_clean("grpc.pcap", "grpc.truth.jsonl", "HTTP/2");
    let (obs, _) = replay(&data("grpc.pcap"), "grpc-details");
    let truth: Vec<Value> = std::fs::read_to_string(data("grpc.truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Compare (method path, grpc status, message counts) as multisets.
    let key = |path: &str, st: &Value, rq: &Value, rs: &Value| format!("{path} {st} {rq} {rs}");
    let mut want: Vec<String> = truth
        .iter()
        .map(|t| {
            key(
                t["target"].as_str().unwrap(),
                &t["grpc_status"],
                &t["request_messages"],
                &t["response_messages"],
            )
        })
        .collect();
    let mut got: Vec<String> = obs
        .iter()
        .map(|o| {
            let g = &o["grpc"];
            assert!(g.is_object(), "not marked as gRPC: {o}");
            key(
                o["request"]["path"].as_str().unwrap(),
                &g["status"],
                &g["request_messages"],
                &g["response_messages"],
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let not_found = obs
        .iter()
        .find(|o| o["grpc"]["status"] == 5)
        .expect("a NOT_FOUND call");
    assert!(not_found["grpc"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}
