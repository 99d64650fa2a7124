//! Packet decoding on arbitrary frames: every link type, VLAN/MPLS/PPPoE stacks, the tunnels
//! (VXLAN, Geneve, GTP-U, GRE, ERSPAN I/II/III, IP in IP) and IP fragment reassembly across a
//! sequence of frames, with reassembly caps small enough to be hit.
//!
//! Invariants checked, besides "no panic":
//! - a segment's wire length is at least its captured payload;
//! - where the stateless `decode` did not meet a fragment, the reassembling `Decoder` gives the
//!   very same result (same segment, same skip reason): reassembly changes nothing else;
//! - the fragment table never holds more than its byte cap, and holds nothing once the capture
//!   clock has moved past the timeout.
//!
//! Input layout: one octet picking the link type, then records `[len_lo, len_hi, dt, frame…]`
//! (frame of `len` octets, or what is left); `dt` advances the capture clock by `dt` × 10 ms.
#![no_main]

use apitap_capture::decode::{decode, linktype, DecodeConfig, DecodeStats, Decoder, Skip};
use apitap_capture::frag::FragConfig;
use libfuzzer_sys::fuzz_target;

const LINKTYPES: [i32; 8] = [
    linktype::ETHERNET,
    linktype::LINUX_SLL,
    linktype::LINUX_SLL2,
    linktype::RAW,
    linktype::NULL,
    linktype::LOOP,
    linktype::C_HDLC,
    linktype::IPV6,
];

const MAX_BYTES: usize = 64 << 10;
const TIMEOUT_US: i64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let lt = LINKTYPES[usize::from(sel) % LINKTYPES.len()];
    let cfg = DecodeConfig {
        fragments: FragConfig {
            timeout_us: TIMEOUT_US,
            max_bytes: MAX_BYTES,
            max_datagrams: 8,
            max_fragments: 16,
        },
        ..DecodeConfig::default()
    };
    let mut d = Decoder::new(cfg);
    let mut ts = 0i64;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        ts += i64::from(rest[2]) * 10_000;
        let (frame, tail) = rest[3..].split_at(len.min(rest.len() - 3));
        rest = tail;
        let plain = decode(lt, frame, &mut DecodeStats::default());
        let r = d.decode(lt, frame, ts);
        if let Ok(s) = &r {
            assert!(s.wire_len as usize >= s.payload.len());
        }
        if plain != Err(Skip::Fragment) {
            assert_eq!(plain, r);
        }
    }
    let st = d.stats();
    assert!(st.ip_reassembly.peak_bytes <= MAX_BYTES as u64);
    assert!(d.pending_fragments().1 <= MAX_BYTES);
    d.expire(ts + TIMEOUT_US + 1);
    assert_eq!(d.pending_fragments(), (0, 0));
});
