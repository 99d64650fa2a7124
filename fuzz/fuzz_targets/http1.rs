//! The HTTP/1.x connection parser alone ([`Http1Conn`]), fed the same two byte streams twice:
//! once with each record as one chunk, once with every record cut again at adversarial
//! points (single bytes, inside CRLFs, inside chunk-size lines, at the head cap). Besides
//! "no panic, no hang", it checks that framing does not depend on where the chunks were cut:
//! when neither run had to resynchronise (no gap, no invalid head), both must emit the same
//! exchanges and the same connection transition at the same stream offset.
//!
//! The `http_session` target covers detection and the handovers around this parser; this one
//! aims at the framing state machine itself (heads split anywhere, chunked coding, bodies
//! ending mid-chunk, caps) with small caps so that they are hit.
//!
//! Input layout: a mode octet (bit 0: handshake seen; bits 1–2 pick the caps; bits 3–7 the
//! split pattern), then records `[ctl, len, bytes…]` as in `http_session`: `ctl` bit 0 is the
//! direction, bit 1 makes the record a gap of `len * 3` bytes, bits 2–7 perturb the ACK.
#![no_main]

use apitap_parsers::http1::{Http1Conn, SizeModels, Transition};
use apitap_parsers::{ChunkMeta, Direction, Exchange, ParserConfig, ParserStats};
use libfuzzer_sys::fuzz_target;

enum Rec<'a> {
    Data(Direction, &'a [u8], Option<u64>),
    Gap(Direction, u64),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    exchanges: Vec<Exchange>,
    /// The transition that ended HTTP/1 on this connection, as (kind, stream offset of the
    /// first byte of the new protocol in the server stream, client bytes held).
    transition: Option<(&'static str, u64, Vec<u8>)>,
}

/// Cut points of one record in the split run.
fn pieces(len: usize, pattern: u8, salt: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 0;
    let mut i = salt;
    while at < len {
        let step = match pattern & 7 {
            0 => 1,
            1 => 2,
            2 => 1 + i % 3,
            3 => 1 + (i * 7) % 17,
            4 => {
                if i.is_multiple_of(2) {
                    1
                } else {
                    63
                }
            }
            5 => 5 + i % 11,
            6 => 1 + (len - at) / 2,
            _ => 1 + (i * 13) % 5,
        };
        let end = (at + step).min(len);
        v.push((at, end));
        at = end;
        i += 1;
    }
    v
}

fn run(
    cfg: ParserConfig,
    from_start: bool,
    recs: &[Rec<'_>],
    split: Option<u8>,
) -> (Outcome, ParserStats) {
    let mut c = Http1Conn::new(cfg, from_start, 7);
    let mut stats = ParserStats::default();
    let mut sizes = SizeModels::default();
    let mut out = Vec::new();
    let mut off = [0u64; 2];
    let mut transition = None;
    'recs: for (ri, r) in recs.iter().enumerate() {
        match *r {
            Rec::Gap(dir, n) => {
                c.on_gap(dir, n, &mut out, &mut stats, &mut sizes);
                off[dir as usize] += n;
            }
            Rec::Data(dir, bytes, peer_ack) => {
                let cuts = match split {
                    None => vec![(0, bytes.len())],
                    Some(p) => pieces(bytes.len(), p, ri),
                };
                for (a, b) in cuts {
                    let meta = ChunkMeta {
                        ts_us: ri as i64,
                        offset: off[dir as usize] + a as u64,
                        peer_ack,
                    };
                    let tr = c.on_data(dir, &bytes[a..b], meta, &mut out, &mut stats, &mut sizes);
                    let at = meta.offset;
                    let t = match tr {
                        Transition::Stay => None,
                        Transition::H2c {
                            client_bytes,
                            server_rest,
                            request,
                        } => {
                            assert!(server_rest <= b - a);
                            out.push(Exchange::new(apitap_parsers::Protocol::Http2, *request));
                            Some(("h2c", at + server_rest as u64, client_bytes))
                        }
                        Transition::Tunnel {
                            client_bytes,
                            server_rest,
                        } => {
                            assert!(server_rest <= b - a);
                            Some(("tunnel", at + server_rest as u64, client_bytes))
                        }
                        Transition::Opaque => Some(("opaque", 0, Vec::new())),
                    };
                    if t.is_some() {
                        transition = t;
                        break 'recs;
                    }
                }
                off[dir as usize] += bytes.len() as u64;
            }
        }
        // Requests kept from oversized heads are bounded like any other.
        assert!(c.pending_requests() <= cfg.max_pending_requests + 1);
    }
    if transition.is_none() {
        c.on_close(&mut out, &mut stats, &mut sizes);
    }
    for e in &out {
        // Kept prefixes obey the cap; counted lengths cover them.
        assert!(e.request.body.prefix.len() <= cfg.body_prefix_max);
        assert!(e.request.body.bytes >= e.request.body.prefix.len() as u64);
        if let Some(r) = &e.response {
            assert!(r.body.prefix.len() <= cfg.body_prefix_max);
            assert!(r.body.bytes >= r.body.prefix.len() as u64);
        }
    }
    (
        Outcome {
            exchanges: out,
            transition,
        },
        stats,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = match mode >> 1 & 3 {
        0 => ParserConfig::default(),
        1 => ParserConfig {
            body_prefix_max: 16,
            max_header_bytes: 256,
            max_headers: 8,
            max_pending_requests: 4,
            ..ParserConfig::default()
        },
        2 => ParserConfig {
            body_prefix_max: 0,
            max_header_bytes: 64,
            max_headers: 4,
            max_pending_requests: 1,
            ..ParserConfig::default()
        },
        _ => ParserConfig {
            body_prefix_max: 512,
            max_header_bytes: 2048,
            max_pending_requests: 16,
            ..ParserConfig::default()
        },
    };
    let from_start = mode & 1 != 0;
    let mut recs = Vec::new();
    let mut off = [0u64; 2];
    while let [ctl, len, tail @ ..] = rest {
        let dir = if ctl & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let i = (ctl & 1) as usize;
        if ctl & 2 != 0 {
            let n = u64::from(*len) * 3;
            recs.push(Rec::Gap(dir, n));
            off[i] += n;
            rest = tail;
            continue;
        }
        let n = usize::from(*len).min(tail.len());
        let ack = off[1 - i].checked_sub(u64::from(ctl >> 2));
        recs.push(Rec::Data(dir, &tail[..n], ack));
        off[i] += n as u64;
        rest = &tail[n..];
    }
    let (whole, s1) = run(cfg, from_start, &recs, None);
    let (split, s2) = run(cfg, from_start, &recs, Some(mode >> 3));
    let clean = |s: &ParserStats| s.resyncs == 0 && s.gap_bytes == 0 && s.http1_parse_errors == 0;
    // Oversized heads included: a head's fate and the extent kept of it do not depend on the
    // cuts either (fuzz/regressions/http1/README.md).
    if clean(&s1) && clean(&s2) {
        assert_eq!(whole, split, "framing depends on where chunks were cut");
        assert_eq!(s1.http1_requests, s2.http1_requests);
        assert_eq!(s1.http1_responses, s2.http1_responses);
        assert_eq!(s1.http1_oversized_heads, s2.http1_oversized_heads);
    }
});
