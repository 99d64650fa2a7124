//! A whole connection's application layer on arbitrary input: protocol detection, HTTP/1.x
//! framing, resynchronisation after gaps, pairing, and handovers to HTTP/2 or tunnels.
//!
//! Input layout: one mode octet (bit 0: handshake seen), then records `[ctl, len, bytes…]`:
//! `ctl` bit 0 picks the direction, bit 1 makes the record a gap of `len * 7` bytes instead
//! of data; bits 2..7 perturb the ACK handed with the chunk.
#![no_main]

use apitap_parsers::session::{HttpSession, Shared};
use apitap_parsers::{ChunkMeta, Direction, ParserConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = ParserConfig {
        body_prefix_max: 512,
        max_header_bytes: 2048,
        max_pending_requests: 16,
        ..ParserConfig::default()
    };
    let mut s = HttpSession::new(mode & 1 != 0, 0);
    let mut shared = Shared::new(cfg);
    let mut out = Vec::new();
    let mut off = [0u64; 2];
    while let [ctl, len, tail @ ..] = rest {
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        let i = (ctl & 1) as usize;
        if ctl & 2 != 0 {
            let n = u64::from(*len) * 7;
            s.on_gap(dir, n, &mut out, &mut shared);
            off[i] += n;
            rest = tail;
            continue;
        }
        let n = usize::from(*len).min(tail.len());
        let ack = off[1 - i].saturating_sub(u64::from(ctl >> 2));
        let meta = ChunkMeta {
            ts_us: 0,
            offset: off[i],
            peer_ack: Some(ack),
        };
        s.on_data(dir, &tail[..n], meta, &mut out, &mut shared);
        off[i] += n as u64;
        rest = &tail[n..];
        out.clear();
    }
    s.on_close(&mut out, &mut shared);
});
