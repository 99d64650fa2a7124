//! Mirrors deliver traffic encapsulated: the same real captures (tests/data, and the shared
//! corpus merged into one held-out capture when present) wrapped frame by frame in each
//! encapsulation (tests/common/wrap.rs) must yield the same exchanges as the plain capture,
//! compared as multisets of (protocol, method, target, status); likewise when the underlay
//! fragments the tunnel packets or the packets inside the tunnel are fragments. Two VNIs
//! carrying the same inner addresses stay two sets of connections.
#[path = "common/exchange_keys.rs"]
mod exchange_keys;
#[path = "common/scratch.rs"]
mod scratch;
#[path = "common/wrap.rs"]
mod wrap;

use apitap_capture::decode::{linktype, Decoder};
use exchange_keys::{keys, Key};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use wrap::{clear_df, fragment, rewrite, shuffle, wrap, Encap};

const CAPTURES: [&str; 3] = ["h1-nginx.pcap", "h2c-nginx.pcap", "grpc.pcap"];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = scratch::dir("tunnels", false);
    d.join(name)
}

/// Runs `apitap replay` and returns the observations and the stats JSON.
fn replay(pcap: &Path) -> (Vec<Value>, Value) {
    let tag = pcap.file_name().unwrap().to_string_lossy().to_string();
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
        "apitap failed on {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&st.stderr)
    );
    let obs = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|o| o["type"] == "http_exchange")
        .collect();
    let stats = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    (obs, stats)
}

/// Per protocol: (matched, in the plain run only, in the wrapped run only).
fn agreement(
    plain: &BTreeMap<Key, usize>,
    got: &BTreeMap<Key, usize>,
) -> BTreeMap<String, (usize, usize, usize)> {
    let mut by: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (k, &n) in plain {
        let m = got.get(k).copied().unwrap_or(0);
        let e = by.entry(k.0.clone()).or_default();
        e.0 += n.min(m);
        e.1 += n.saturating_sub(m);
    }
    for (k, &m) in got {
        let n = plain.get(k).copied().unwrap_or(0);
        by.entry(k.0.clone()).or_default().2 += m.saturating_sub(n);
    }
    by
}

/// The plain replay of a capture, once per test binary.
fn plain(name: &str) -> BTreeMap<Key, usize> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, BTreeMap<Key, usize>>>> = OnceLock::new();
    let c = CACHE.get_or_init(Default::default);
    if let Some(k) = c.lock().unwrap().get(name) {
        return k.clone();
    }
    let k = keys(&replay(&data(name)).0);
    assert!(!k.is_empty(), "{name}: no exchanges in the plain capture");
    c.lock().unwrap().insert(name.to_string(), k.clone());
    k
}

/// Asserts that `got` has exactly the exchanges of `want`, reporting the rate per protocol.
fn assert_same(label: &str, want: &BTreeMap<Key, usize>, got: &BTreeMap<Key, usize>) {
    for (proto, (hit, missing, extra)) in agreement(want, got) {
        let rate = 100.0 * hit as f64 / (hit + missing).max(1) as f64;
        eprintln!("{label}: {proto}: {hit} matched ({rate:.2}%), {missing} missing, {extra} extra");
        assert!(rate >= 99.5, "{label}: {proto} only {rate:.2}%");
    }
    if want != got {
        let diff: Vec<_> = want
            .iter()
            .filter(|(k, n)| got.get(*k) != Some(n))
            .take(5)
            .collect();
        panic!("{label}: exchanges differ, e.g. {diff:?}");
    }
}

/// Wraps every frame of every capture in `e`, replays, compares; returns the stats JSONs.
fn check_encap(e: Encap, counter: &str) {
    for name in CAPTURES {
        let out = tmp(&format!("{name}.{e:?}.pcap").replace([' ', '{', '}', ':', ','], ""));
        let (read, written) = rewrite(&data(name), &out, |n, f| vec![wrap(e, f, n)]).unwrap();
        assert_eq!(read, written);
        let (obs, stats) = replay(&out);
        assert_same(&format!("{name} in {e:?}"), &plain(name), &keys(&obs));
        if !counter.is_empty() {
            assert_eq!(
                stats["decode"][counter].as_u64(),
                Some(read),
                "{name} in {e:?}: every frame counted as {counter}"
            );
        }
    }
}

#[test]
fn vxlan() {
    check_encap(Encap::Vxlan { vni: 4242 }, "vxlan");
}

#[test]
fn geneve_ethernet_and_ip() {
    check_encap(Encap::Geneve { vni: 7 }, "geneve");
    check_encap(Encap::GeneveIp { vni: 7 }, "geneve");
}

#[test]
fn gre_ethernet_and_ip() {
    check_encap(Encap::GreTeb { key: 99 }, "gre");
    check_encap(Encap::GreIp, "gre");
}

#[test]
fn erspan_types_i_ii_iii() {
    check_encap(Encap::ErspanI, "erspan");
    check_encap(Encap::ErspanII { session: 100 }, "erspan");
    check_encap(
        Encap::ErspanIII {
            session: 1023,
            subheader: false,
        },
        "erspan",
    );
    check_encap(
        Encap::ErspanIII {
            session: 5,
            subheader: true,
        },
        "erspan",
    );
}

#[test]
fn vlan_qinq_and_mpls() {
    check_encap(Encap::Vlan { id: 100 }, "vlan_tagged");
    check_encap(
        Encap::QinQ {
            outer: 3394,
            inner: 113,
        },
        "vlan_tagged",
    );
    check_encap(Encap::Mpls { labels: 3 }, "mpls");
}

#[test]
fn ip_in_ip_and_gtp_u() {
    check_encap(Encap::IpInIp, "ip_in_ip");
    check_encap(Encap::GtpU { teid: 0x1234 }, "gtp_u");
}

#[test]
fn two_vnis_with_the_same_inner_addresses_stay_apart() {
    // Every frame twice: once from VPC 1, once from VPC 2 (same private addresses). Merged,
    // the copies would look like retransmissions and each exchange would come out once.
    let name = "h1-nginx.pcap";
    let out = tmp("two-vnis.pcap");
    rewrite(&data(name), &out, |n, f| {
        vec![
            wrap(Encap::Vxlan { vni: 1 }, f, n),
            wrap(Encap::Vxlan { vni: 2 }, f, n),
        ]
    })
    .unwrap();
    let (obs, stats) = replay(&out);
    let doubled: BTreeMap<Key, usize> = plain(name).into_iter().map(|(k, n)| (k, 2 * n)).collect();
    assert_same("two VNIs", &doubled, &keys(&obs));
    let (_, plain_stats) = replay(&data(name));
    assert_eq!(
        stats["flows"]["flows_created"].as_u64().unwrap(),
        2 * plain_stats["flows"]["flows_created"].as_u64().unwrap()
    );
}

/// Frames of `name` with the inner IPv4 packets fragmented at `inner_mtu` (if any), wrapped in
/// VXLAN, with the outer packets fragmented at `outer_mtu` (if any); the fragments of each
/// packet a little out of order.
fn fragmented(name: &str, inner_mtu: Option<usize>, outer_mtu: Option<usize>) -> PathBuf {
    let out = tmp(&format!("{name}.frag-{inner_mtu:?}-{outer_mtu:?}.pcap"));
    rewrite(&data(name), &out, |n, f| {
        let mut inner = f.to_vec();
        let mut pieces = match inner_mtu {
            Some(mtu) => {
                clear_df(&mut inner);
                fragment(&inner, mtu)
            }
            None => vec![inner],
        };
        shuffle(&mut pieces, n);
        let mut frames = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let outer = wrap(Encap::Vxlan { vni: 77 }, p, n.wrapping_mul(64) + i as u32);
            let mut o = match outer_mtu {
                Some(mtu) => fragment(&outer, mtu),
                None => vec![outer],
            };
            shuffle(&mut o, n / 3);
            frames.extend(o);
        }
        frames
    })
    .unwrap();
    out
}

/// The TCP segments (tuple, sequence number, payload) the decoder yields for a capture.
fn segments(pcap: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut cap = pcap::Capture::from_file(pcap).unwrap();
    let mut d = Decoder::default();
    let mut v = Vec::new();
    while let Ok(p) = cap.next_packet() {
        let ts = p.header.ts.tv_sec * 1_000_000 + p.header.ts.tv_usec;
        if let Ok(s) = d.decode(linktype::ETHERNET, p.data, ts) {
            let t = format!("{}:{}>{}:{}", s.src, s.sport, s.dst, s.dport);
            v.push((t, s.seq, s.payload.to_vec()));
        }
    }
    v
}

#[test]
fn fragmented_tunnels_decode_to_the_same_segments() {
    for name in CAPTURES {
        let want = segments(&data(name));
        for (inner, outer) in [
            (None, Some(1500)),
            (Some(1400), None),
            (Some(1400), Some(576)),
        ] {
            let got = segments(&fragmented(name, inner, outer));
            assert_eq!(got.len(), want.len(), "{name} {inner:?}/{outer:?}");
            assert!(got == want, "{name} {inner:?}/{outer:?}: segments differ");
        }
    }
}

/// Through the binary: needs `apitap replay` to decode with `apitap_capture::decode::Decoder`
/// (fragment reassembly), not the stateless `decode` function.
#[test]
fn fragmented_tunnels_yield_the_same_exchanges() {
    for name in CAPTURES {
        for (inner, outer) in [
            (None, Some(1500)),
            (Some(1400), None),
            (Some(1400), Some(576)),
        ] {
            let (obs, stats) = replay(&fragmented(name, inner, outer));
            let label = format!("{name} fragmented inner {inner:?} outer {outer:?}");
            assert_same(&label, &plain(name), &keys(&obs));
            let r = &stats["decode"]["ip_reassembly"];
            assert!(r["reassembled"].as_u64().unwrap() > 0, "{label}: {r}");
            for c in ["overlaps", "expired", "cap_drops", "malformed", "truncated"] {
                assert_eq!(r[c].as_u64(), Some(0), "{label}: {c} in {r}");
            }
        }
    }
}

/// The shared corpus (../shared/corpus), every Ethernet capture merged into one held-out
/// capture of real traffic nobody here made, wrapped as a mirror would deliver it.
#[test]
fn corpus_wrapped_as_vxlan_geneve_erspan_and_vlan() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !dir.is_dir() {
        eprintln!("corpus not found at {}: skipped", dir.display());
        return;
    }
    let mut caps = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".pcap"))
            {
                caps.push(p);
            }
        }
    }
    caps.sort();
    let merged = tmp("corpus-merged.pcap");
    let used = wrap::concat(&caps, &merged).unwrap();
    eprintln!("corpus: {used} Ethernet captures merged");
    let want = keys(&replay(&merged).0);
    assert!(want.values().sum::<usize>() > 500);
    for e in [
        Encap::Vxlan { vni: 1 },
        Encap::Geneve { vni: 2 },
        Encap::GreTeb { key: 3 },
        Encap::ErspanII { session: 4 },
        Encap::Vlan { id: 5 },
    ] {
        let out = tmp(&format!("corpus-{e:?}.pcap").replace([' ', '{', '}', ':', ','], ""));
        rewrite(&merged, &out, |n, f| {
            // Frames too large for an outer IPv4 packet stay as they are.
            if f.len() > 65_000 {
                vec![f.to_vec()]
            } else {
                vec![wrap(e, f, n)]
            }
        })
        .unwrap();
        let got = keys(&replay(&out).0);
        assert_same(&format!("corpus in {e:?}"), &want, &got);
    }
}
