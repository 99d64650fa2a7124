//! Findings end to end through the binary on the held-out captures: the risky API
//! (tests/data/risky-api.pcap: keys in query strings, PII to anonymous callers over cleartext,
//! an answering /internal/admin …) raises exactly the findings its truth lists, once per
//! endpoint and rule, with its OWASP category and owner; the clean API raises none; OCSF output
//! carries the documented classes; bad policy files fail `apitap policy check`.
#[path = "common/scratch.rs"]
mod scratch;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn replay(pcap: &str, tag: &str, extra: &[&str]) -> Vec<Value> {
    let out = scratch::dir("fcli", false).join(format!("{tag}.jsonl"));
    let _ = std::fs::remove_file(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("replay")
        .arg(data(pcap))
        .arg("-q")
        .arg("-o")
        .arg(format!("jsonl:{}", out.display()))
        .args(extra)
        .output()
        .expect("run apitap");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn shape(t: &str) -> String {
    t.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

type Key = (String, String, String, String);

#[test]
fn risky_api_raises_each_expected_finding_once() {
    let owners = scratch::dir("fcli", false).join("owners.toml");
    std::fs::write(
        &owners,
        "[[owners]]\nteam = \"payments\"\ncontact = \"payments@example.com\"\ntier = \"tier-1\"\nhosts = [\"**\"]\n",
    )
    .unwrap();
    for workers in ["1", "2"] {
        let evs = replay(
            "risky-api.pcap",
            &format!("risky{workers}"),
            &["--workers", workers, "--owners", owners.to_str().unwrap()],
        );
        let findings: Vec<&Value> = evs.iter().filter(|v| v["type"] == "finding").collect();
        let mut got: Vec<Key> = findings
            .iter()
            .map(|v| {
                let e = &v["endpoint"];
                (
                    e["host"]
                        .as_str()
                        .unwrap()
                        .split(':')
                        .next()
                        .unwrap()
                        .to_string(),
                    e["method"].as_str().unwrap().to_string(),
                    shape(e["template"].as_str().unwrap()),
                    v["rule"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let n = got.len();
        got.sort();
        got.dedup();
        assert_eq!(n, got.len(), "a finding was announced twice");
        let truth: Value =
            serde_json::from_slice(&std::fs::read(data("risky-api.truth.json")).unwrap()).unwrap();
        let want: BTreeSet<Key> = truth["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["host"].as_str().unwrap().to_string(),
                    f["method"].as_str().unwrap().to_string(),
                    shape(f["template"].as_str().unwrap()),
                    f["rule"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let got: BTreeSet<Key> = got.into_iter().collect();
        assert_eq!(
            got,
            want,
            "workers {workers}: missing {:?}, extra {:?}",
            want.difference(&got).collect::<Vec<_>>(),
            got.difference(&want).collect::<Vec<_>>()
        );
        for f in findings {
            assert!(f["owasp"].as_str().unwrap().starts_with("API"), "{f}");
            assert_eq!(f["owner"]["team"], "payments", "{f}");
        }
    }
}

#[test]
fn clean_api_raises_none() {
    let evs = replay("clean-api.pcap", "clean", &[]);
    let f: Vec<_> = evs.iter().filter(|v| v["type"] == "finding").collect();
    assert!(f.is_empty(), "{f:?}");
    assert!(evs.iter().filter(|v| v["type"] == "http_exchange").count() > 300);
}

#[test]
fn ocsf_format_uses_the_ocsf_classes() {
    let evs = replay("risky-api.pcap", "ocsf", &["--format", "ocsf"]);
    let classes: BTreeSet<u64> = evs.iter().filter_map(|v| v["class_uid"].as_u64()).collect();
    assert!(classes.contains(&4002), "{classes:?}");
    assert!(classes.contains(&2004), "{classes:?}");
}

#[test]
fn policy_check_names_the_bad_key() {
    let bad = scratch::dir("fcli", false).join("bad-policy.toml");
    std::fs::write(&bad, "[rules.server_banner]\nseverity = \"apocalyptic\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server_banner") && err.contains("severity"),
        "{err}"
    );
}

/// A replay with `--spec` reports the drift of the observed API from the declared one as
/// finding events (once each, whatever the number of workers), and the inventory file carries
/// each endpoint's risk score, owner and findings with the full findings list.
#[test]
fn spec_drift_and_risk_reach_the_outputs_and_the_inventory() {
    let dir = scratch::dir("fcli-drift", true);
    let owners = dir.join("owners.toml");
    std::fs::write(
        &owners,
        "[[owners]]\nteam = \"shop\"\ncontact = \"shop@example.com\"\nhosts = [\"shop.example.test*\"]\n",
    )
    .unwrap();
    let spec = data("rest-api.spec.yaml");
    for workers in ["1", "2"] {
        let inv = dir.join(format!("inventory-{workers}.json"));
        let evs = replay(
            "rest-api.pcap",
            &format!("drift{workers}"),
            &[
                "--workers",
                workers,
                "--spec",
                spec.to_str().unwrap(),
                "--owners",
                owners.to_str().unwrap(),
                "--inventory",
                inv.to_str().unwrap(),
            ],
        );
        let mut drift: Vec<String> = evs
            .iter()
            .filter(|v| v["type"] == "finding")
            .filter(|v| {
                let r = v["rule"].as_str().unwrap();
                r == "shadow_endpoint" || r == "zombie_endpoint"
            })
            .map(|v| {
                let e = &v["endpoint"];
                format!(
                    "{} {} {}",
                    v["rule"].as_str().unwrap(),
                    e["method"].as_str().unwrap(),
                    shape(e["template"].as_str().unwrap())
                )
            })
            .collect();
        drift.sort();
        assert_eq!(
            drift,
            [
                "shadow_endpoint GET /api/v1/integrations",
                "zombie_endpoint DELETE /api/v1/users/{}",
                "zombie_endpoint GET /api/v1/users/{}",
            ],
            "workers {workers}"
        );

        let doc: Value = serde_json::from_slice(&std::fs::read(&inv).unwrap()).unwrap();
        let eps = doc["endpoints"].as_array().unwrap();
        assert!(eps.len() >= 30, "{}", eps.len());
        let mut scored = 0;
        for e in eps {
            let score = e["risk"]["score"].as_u64().unwrap_or_else(|| panic!("{e}"));
            assert!(score <= 100, "{e}");
            scored += usize::from(score > 0);
            let ids = e["findings"].as_array().unwrap();
            if e["host"].as_str().unwrap().starts_with("shop.example.test") {
                assert_eq!(e["owner"]["team"], "shop", "{e}");
            } else {
                assert!(e["owner"].is_null(), "{e}");
                assert!(ids.contains(&Value::from("unowned_endpoint")), "{e}");
            }
        }
        assert!(scored > 0, "no endpoint has a risk score above 0");
        let integ = eps
            .iter()
            .find(|e| e["template"] == "/api/v1/integrations" && e["method"] == "GET")
            .expect("the shadow endpoint in the inventory");
        assert!(
            integ["findings"]
                .as_array()
                .unwrap()
                .contains(&Value::from("shadow_endpoint")),
            "{integ}"
        );
        let listed: BTreeSet<&str> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        assert!(
            listed.contains("shadow_endpoint")
                && listed.contains("zombie_endpoint")
                && listed.contains("unused_endpoint"),
            "{listed:?}"
        );
    }
}
