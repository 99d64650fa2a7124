//! Connection tracking and TCP reassembly on arbitrary segment sequences: a handful of
//! connections, segments in any order with any sequence and acknowledgement numbers (near and
//! across the 2^32 wrap), SYN/FIN/RST in any combination, snap-length truncation, capture-clock
//! jumps that trigger idle sweeps, and caps small enough (flows, held bytes and segments, the
//! global budget) that every one of them is hit.
//!
//! Invariants checked by the handler, besides "no panic":
//! - per connection and direction, every data chunk starts exactly where the previous data or
//!   gap ended (offsets are contiguous and monotonic), and no chunk is empty;
//! - when every segment carries the same byte for the same sequence number (input bit 0 of
//!   byte 0), each delivered byte is the one its offset maps to (no byte is misplaced by
//!   overlap trimming, wrap handling or draining);
//! - every connection opened is closed exactly once, and the table's counters agree with what
//!   the handler saw (bytes delivered, gap bytes, connections);
//! - the held-data high-water mark never exceeds the global cap.
//!
//! Input layout: 6 configuration octets, then records of 7 octets
//! `[ctl, flags, seq_lo, seq_hi, ack, len, extra]` with `len` payload octets taken from the
//! input (or generated, in consistent mode). `ctl` bits 0–1 pick one of four tuples, bit 2 the
//! direction, bit 3 an absolute sequence number (`seq` spread over 32 bits) instead of one
//! relative to the direction's cursor, bits 4–7 the capture-clock step. `extra` adds bytes the
//! segment had on the wire beyond the capture (snap length) when its top bit is set.
#![no_main]

use apitap_capture::decode::{TcpFlags, TcpSegment};
use apitap_capture::flow::{
    ChunkInfo, CloseReason, Direction, FlowConfig, FlowHandler, FlowInfo, FlowTable,
};
use apitap_capture::reassembly::ReassemblyConfig;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

struct Conn {
    id: u64,
    /// Next expected offset per direction (0 = to server).
    next: [u64; 2],
    /// In consistent mode: the byte at offset 0 of each direction, once known.
    base: [Option<u8>; 2],
}

#[derive(Default)]
struct Checker {
    consistent: bool,
    opened: u64,
    closed: u64,
    delivered: u64,
    gap_bytes: u64,
    live: std::collections::HashSet<u64>,
}

fn di(d: Direction) -> usize {
    match d {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

impl FlowHandler for Checker {
    type State = Conn;

    fn open(&mut self, flow: &FlowInfo) -> Conn {
        self.opened += 1;
        assert!(
            self.live.insert(flow.id),
            "flow id {} opened twice",
            flow.id
        );
        Conn {
            id: flow.id,
            next: [0; 2],
            base: [None; 2],
        }
    }

    fn classify(&self, payload: &[u8]) -> Option<bool> {
        match payload.first() {
            Some(b'G') => Some(true),
            Some(b'H') => Some(false),
            _ => None,
        }
    }

    fn data(
        &mut self,
        st: &mut Conn,
        flow: &FlowInfo,
        dir: Direction,
        data: &[u8],
        info: ChunkInfo,
    ) {
        assert_eq!(st.id, flow.id);
        assert!(!data.is_empty(), "empty data chunk");
        let d = di(dir);
        assert_eq!(
            info.offset, st.next[d],
            "flow {} {:?}: data at {} but the stream is at {}",
            flow.id, dir, info.offset, st.next[d]
        );
        if self.consistent {
            let base = *st.base[d].get_or_insert(data[0].wrapping_sub(info.offset as u8));
            for (k, &b) in data.iter().enumerate() {
                let want = base.wrapping_add((info.offset + k as u64) as u8);
                assert_eq!(
                    b,
                    want,
                    "flow {} {:?}: byte at offset {} misplaced",
                    flow.id,
                    dir,
                    info.offset + k as u64
                );
            }
        }
        st.next[d] += data.len() as u64;
        self.delivered += data.len() as u64;
    }

    fn gap(&mut self, st: &mut Conn, flow: &FlowInfo, dir: Direction, len: u64) {
        assert_eq!(st.id, flow.id);
        assert!(len > 0, "empty gap");
        st.next[di(dir)] += len;
        self.gap_bytes += len;
    }

    fn close(&mut self, st: Conn, flow: &FlowInfo, _reason: CloseReason) {
        assert_eq!(st.id, flow.id);
        assert!(self.live.remove(&flow.id), "flow {} closed twice", flow.id);
        self.closed += 1;
    }
}

const CLIENTS: [(u8, u16); 4] = [(1, 40000), (1, 40001), (2, 40000), (3, 80)];

fuzz_target!(|data: &[u8]| {
    let Some((cfgb, mut rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let consistent = cfgb[0] & 1 != 0;
    let cfg = FlowConfig {
        max_flows: 1 + usize::from(cfgb[0] >> 1 & 3),
        idle_timeout_us: 1_000_000 * (1 + i64::from(cfgb[0] >> 3 & 7)),
        reassembly: ReassemblyConfig {
            max_held_bytes_per_flow: 1 + usize::from(cfgb[1]) * 8,
            max_held_segments_per_flow: 1 + usize::from(cfgb[2] & 15),
            max_held_bytes_total: 1 + usize::from(cfgb[3]) * 16,
            reorder_tolerance: u32::from(cfgb[4] & 15),
        },
        ..FlowConfig::default()
    };
    // Initial sequence numbers near the wrap when asked to.
    let isn_base = if cfgb[5] & 1 != 0 {
        0xffff_ff00u32
    } else {
        u32::from(cfgb[5]) << 20
    };
    let mut table = FlowTable::new(
        cfg,
        Checker {
            consistent,
            ..Checker::default()
        },
    );
    // Per tuple and direction: where the next in-order byte would go.
    let mut cursor = [[0u32; 2]; 4];
    for (t, c) in cursor.iter_mut().enumerate() {
        c[0] = isn_base.wrapping_add(t as u32 * 0x1000);
        c[1] = isn_base.wrapping_add(0x8000_0000 + t as u32 * 0x1000);
    }
    let mut ts: i64 = 1_000_000;
    let mut payload = [0u8; 256];
    while let Some((rec, tail)) = rest.split_first_chunk::<7>() {
        let [ctl, fl, s0, s1, ack, len, extra] = *rec;
        rest = tail;
        let t = usize::from(ctl & 3);
        let d = usize::from(ctl >> 2 & 1);
        let (cip, cport) = CLIENTS[t];
        let client = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, cip)), cport);
        let server = (IpAddr::V4(Ipv4Addr::new(10, 0, 9, 9)), 8080u16);
        let (src, dst) = if d == 0 {
            (client, server)
        } else {
            (server, client)
        };
        let rel = i16::from_le_bytes([s0, s1]);
        let seq = if ctl & 8 != 0 {
            u32::from_le_bytes([s0, s1, s0 ^ s1, s1.rotate_left(3)])
        } else {
            cursor[t][d].wrapping_add(rel as i32 as u32)
        };
        let flags = TcpFlags {
            syn: fl & 1 != 0,
            ack: fl & 2 != 0,
            fin: fl & 4 != 0,
            rst: fl & 8 != 0 && fl & 0x30 == 0x30,
        };
        let ack_no = cursor[t][1 - d]
            .wrapping_add(u32::from(ack))
            .wrapping_sub(128);
        let data_seq = if flags.syn { seq.wrapping_add(1) } else { seq };
        let n = usize::from(len);
        let bytes: &[u8] = if consistent {
            for (k, b) in payload[..n].iter_mut().enumerate() {
                *b = data_seq.wrapping_add(k as u32) as u8;
            }
            &payload[..n]
        } else {
            let n = n.min(rest.len());
            let (p, r) = rest.split_at(n);
            rest = r;
            p
        };
        let missing = if extra & 0x80 != 0 {
            u32::from(extra & 0x7f)
        } else {
            0
        };
        let seg = TcpSegment {
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            seq,
            ack: ack_no,
            flags,
            payload: bytes,
            wire_len: bytes.len() as u32 + missing,
            vlan: None,
            tunnel: None,
        };
        // Clock steps from 0 to ~34 s: some exceed the idle timeout.
        ts += i64::from(ctl >> 4).pow(3) * 10_000;
        table.process(&seg, ts);
        let end = data_seq.wrapping_add(bytes.len() as u32 + missing);
        if ctl & 8 == 0 && rel >= 0 || flags.syn {
            cursor[t][d] = end;
        }
        if fl & 0x40 != 0 {
            // Now and then the capture clock goes backwards (files concatenated out of order).
            ts -= 5_000_000;
        }
    }
    table.close_all();
    let st = table.stats();
    let h = &table.handler;
    assert!(h.live.is_empty(), "flows never closed");
    assert_eq!(h.opened, h.closed);
    assert_eq!(st.flows_created, h.opened);
    assert_eq!(st.reassembly.bytes_delivered, h.delivered);
    assert_eq!(st.reassembly.gap_bytes, h.gap_bytes);
    assert!(st.peak_held_bytes as usize <= cfg.reassembly.max_held_bytes_total);
    assert!(table.is_empty());
});
