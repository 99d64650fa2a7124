//! The passive HPACK decoder on arbitrary header blocks: several blocks in a row share one
//! decoder, so table state carries over, with occasional "table unknown" resets.
//!
//! Input layout: one mode octet (cap, list cap, start unknown), then records of `[len, block]`;
//! a zero length marks the table unknown instead.
#![no_main]

use apitap_parsers::http2::hpack::Decoder;
use apitap_parsers::http2::H2Stats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cap = if mode & 1 != 0 { 256 } else { 65536 };
    let max_list = if mode & 2 != 0 { 300 } else { 65536 };
    let mut dec = if mode & 4 != 0 {
        Decoder::unknown(cap)
    } else {
        Decoder::new(cap)
    };
    let mut stats = H2Stats::default();
    while let [len, tail @ ..] = rest {
        if *len == 0 {
            dec.mark_unknown();
            rest = tail;
            continue;
        }
        let n = usize::from(*len).min(tail.len());
        let (block, after) = tail.split_at(n);
        let (decoded, _) = dec.decode(block, max_list, &mut stats);
        let listed: usize = decoded
            .fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 32)
            .sum();
        // Lossy UTF-8 may widen invalid octets to 3 bytes each; the cap is on raw octets.
        assert!(listed <= max_list * 3, "header list cap exceeded");
        rest = after;
    }
    // The whole input as one block too (long literals, big integers).
    let _ = Decoder::new(cap).decode(data, max_list, &mut stats);
});
