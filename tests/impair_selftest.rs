//! Self-test of the capture impairment helper in tests/common/impair.rs.
mod common;

use std::path::PathBuf;

use common::impair::{count_packets, impair};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn impair_counts_add_up_and_are_deterministic() {
    let input = data("h1-nginx.pcap");
    let dir = common::scratch::dir("impair-selftest", false);
    let out_a = dir.join("a.pcap");
    let out_b = dir.join("b.pcap");

    let in_count = count_packets(&input).unwrap();
    let a = impair(&input, &out_a, 42, 1.0, 1.0, 1.0).unwrap();
    assert_eq!(a.input, in_count);
    assert_eq!(a.output, a.input - a.dropped + a.duplicated);
    assert_eq!(count_packets(&out_a).unwrap(), a.output);
    assert!(a.dropped > 0 && a.duplicated > 0 && a.swapped > 0, "{a:?}");

    // same seed, same bytes; other seed, other choices
    let b = impair(&input, &out_b, 42, 1.0, 1.0, 1.0).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        std::fs::read(&out_a).unwrap(),
        std::fs::read(&out_b).unwrap()
    );
    let c = impair(&input, &out_b, 43, 1.0, 1.0, 1.0).unwrap();
    assert_eq!(c.output, c.input - c.dropped + c.duplicated);
    assert_ne!(
        std::fs::read(&out_a).unwrap(),
        std::fs::read(&out_b).unwrap()
    );

    // no impairment: identical packet stream, same link type
    let d = impair(&input, &out_b, 7, 0.0, 0.0, 0.0).unwrap();
    assert_eq!(
        (d.output, d.dropped, d.duplicated, d.swapped),
        (in_count, 0, 0, 0)
    );
    let l_in = pcap::Capture::from_file(&input).unwrap().get_datalink();
    let l_out = pcap::Capture::from_file(&out_b).unwrap().get_datalink();
    assert_eq!(l_in, l_out);

    std::fs::remove_dir_all(&dir).ok();
}
