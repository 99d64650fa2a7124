//! Arbitrary bytes, cut at arbitrary points, fed to both directions of an HTTP/2 connection,
//! with gaps. Any panic, overflow or runaway allocation is a bug.
//!
//! Input layout: one mode octet (constructor, caps, whether to send the preface first), then
//! records of `[control, len, len × data]`: control bit 0 = direction, bit 1 = announce a gap of
//! `len` octets instead of data, bit 2 = close the connection early.
#![no_main]

use apitap_parsers::http2::{Http2Conn, PREFACE};
use apitap_parsers::{ChunkMeta, Direction, ParserConfig, ParserStats, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = ParserConfig {
        body_prefix_max: if mode & 0x10 != 0 { 16 } else { 4096 },
        h2_max_streams: if mode & 0x20 != 0 { 3 } else { 64 },
        h2_max_header_list: if mode & 0x40 != 0 { 200 } else { 16 * 1024 },
        h2_max_table_size: if mode & 0x80 != 0 { 100 } else { 4096 },
        ..ParserConfig::default()
    };
    let mut conn = match mode & 3 {
        0 | 3 => Http2Conn::new(cfg),
        1 => Http2Conn::midstream(cfg),
        _ => {
            let req = Request {
                method: "GET".into(),
                target: "/".into(),
                ..Request::default()
            };
            Http2Conn::upgraded(cfg, req)
        }
    };
    let mut out = Vec::new();
    let mut stats = ParserStats::default();
    let mut off = [0u64; 2];
    let mut ts = 0i64;
    if mode & 4 != 0 {
        conn.on_data(
            Direction::ToServer,
            PREFACE,
            ChunkMeta::default(),
            &mut out,
            &mut stats,
        );
        off[0] = PREFACE.len() as u64;
    }
    while let [ctl, len, tail @ ..] = rest {
        let dir = if ctl & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let i = usize::from(ctl & 1);
        let n = usize::from(*len).min(tail.len());
        ts += 1;
        if ctl & 2 != 0 {
            conn.on_gap(dir, u64::from(*len), &mut stats);
            off[i] += u64::from(*len);
            rest = tail;
        } else {
            let (chunk, after) = tail.split_at(n);
            let meta = ChunkMeta {
                ts_us: ts,
                offset: off[i],
                peer_ack: None,
            };
            conn.on_data(dir, chunk, meta, &mut out, &mut stats);
            off[i] += n as u64;
            rest = after;
        }
        if ctl & 4 != 0 && ctl & 8 != 0 && ctl & 0x10 != 0 {
            break;
        }
        if out.len() > 10_000 {
            out.clear();
        }
    }
    conn.on_close(&mut out, &mut stats);
});
