//! HTTP/2 throughput: frame reading + stream handling over a realistic connection, and HPACK
//! decoding of Huffman-coded blocks with dynamic-table references.
//!
//! Run with `cargo bench -p apitap-parsers --bench http2`.

use apitap_parsers::http2::hpack::Decoder;
use apitap_parsers::http2::{H2Stats, Http2Conn, PREFACE};
use apitap_parsers::{ChunkMeta, Direction, ParserConfig, ParserStats};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn frame(kind: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let mut out = vec![l[1], l[2], l[3], kind, flags];
    out.extend_from_slice(&sid.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn lit(first: u8, n: &str, v: &str) -> Vec<u8> {
    let mut out = vec![first, n.len() as u8];
    out.extend_from_slice(n.as_bytes());
    out.push(v.len() as u8);
    out.extend_from_slice(v.as_bytes());
    out
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Client and server sides of `n` API calls: headers with a few dynamic-table insertions that
/// later requests reference, JSON bodies of 1–2 KiB.
fn conversation(n: u32) -> (Vec<u8>, Vec<u8>) {
    let mut c = PREFACE.to_vec();
    c.extend(frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    let mut s = frame(4, 0, 0, &[]);
    s.extend(frame(4, 1, 0, &[]));
    c.extend(frame(4, 1, 0, &[]));
    for i in 0..n {
        let sid = 2 * i + 1;
        let mut b = vec![0x83, 0x87]; // POST, https
        b.extend(lit(
            0x00,
            ":path",
            &format!("/api/v2/orders/{i}/items?expand=true"),
        ));
        if i == 0 {
            b.extend(lit(0x40, ":authority", "shop.internal.example"));
            b.extend(lit(0x40, "user-agent", "okhttp/4.12.0"));
            b.extend(lit(
                0x40,
                "authorization",
                "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
            ));
        } else {
            b.extend([0xc0, 0xbf, 0xbe]);
        }
        b.extend(lit(0x00, "content-type", "application/json"));
        b.extend(lit(0x00, "x-request-id", &format!("{i:016x}")));
        c.extend(frame(1, 0x4, sid, &b));
        let body = format!(
            "{{\"order\":{i},\"items\":[{}]}}",
            "{\"sku\":\"A-1\",\"qty\":2},".repeat(40)
        );
        c.extend(frame(0, 0x1, sid, body.as_bytes()));
        let mut h = vec![0x88];
        h.extend(lit(0x00, "content-type", "application/json"));
        h.extend(lit(0x00, "date", "Sun, 29 Nov 2026 03:00:00 GMT"));
        s.extend(frame(1, 0x4, sid, &h));
        let resp = "{\"ok\":true,\"data\":[".to_string()
            + &"{\"id\":1234567,\"name\":\"widget\"},".repeat(60)
            + "]}";
        let bytes = resp.as_bytes();
        let (a, b2) = bytes.split_at(bytes.len() / 2);
        s.extend(frame(0, 0, sid, a));
        s.extend(frame(0, 0x1, sid, b2));
    }
    (c, s)
}

fn bench_frames(cr: &mut Criterion) {
    let (c, s) = conversation(200);
    let mut g = cr.benchmark_group("h2_frames");
    g.throughput(Throughput::Bytes((c.len() + s.len()) as u64));
    for chunk in [1460usize, 16 * 1024] {
        g.bench_function(format!("conversation_chunks_{chunk}"), |b| {
            b.iter(|| {
                let mut conn = Http2Conn::new(ParserConfig::default());
                let mut out = Vec::new();
                let mut stats = ParserStats::default();
                let (mut oc, mut os) = (0usize, 0usize);
                // Alternate directions chunk by chunk, like a capture would.
                while oc < c.len() || os < s.len() {
                    if oc < c.len() {
                        let n = chunk.min(c.len() - oc);
                        let meta = ChunkMeta {
                            ts_us: 1,
                            offset: oc as u64,
                            peer_ack: None,
                        };
                        conn.on_data(
                            Direction::ToServer,
                            &c[oc..oc + n],
                            meta,
                            &mut out,
                            &mut stats,
                        );
                        oc += n;
                    }
                    if os < s.len() {
                        let n = chunk.min(s.len() - os);
                        let meta = ChunkMeta {
                            ts_us: 2,
                            offset: os as u64,
                            peer_ack: None,
                        };
                        conn.on_data(
                            Direction::ToClient,
                            &s[os..os + n],
                            meta,
                            &mut out,
                            &mut stats,
                        );
                        os += n;
                    }
                }
                conn.on_close(&mut out, &mut stats);
                assert_eq!(out.len(), 200);
                black_box(out)
            })
        });
    }
    g.finish();
}

fn bench_hpack(cr: &mut Criterion) {
    // RFC 7541 C.4 and C.6 (Huffman, dynamic table) repeated as a stream of blocks.
    let req = [
        hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
        hex("828684be5886a8eb10649cbf"),
        hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"),
    ];
    let resp = [
        hex("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3"),
        hex("4883640effc1c0bf"),
        hex("88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"),
    ];
    let mut g = cr.benchmark_group("hpack");
    for (name, blocks) in [("requests_c4", &req), ("responses_c6", &resp)] {
        let total: usize = blocks.iter().map(Vec::len).sum();
        g.throughput(Throughput::Bytes((total * 100) as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut stats = H2Stats::default();
                let mut fields = 0;
                for _ in 0..100 {
                    // A fresh decoder per connection-sized run of three blocks, as in the RFC.
                    let mut d = Decoder::new(4096);
                    for blk in blocks.iter() {
                        let (out, _) = d.decode(blk, 65536, &mut stats);
                        fields += out.fields.len();
                    }
                }
                black_box(fields)
            })
        });
    }
    // Literal, non-Huffman fields: the cost of copying and the list accounting.
    let mut lits = Vec::new();
    for i in 0..20 {
        lits.extend(lit(
            0x00,
            &format!("x-header-{i:02}"),
            "some-value-of-moderate-length-0123456789",
        ));
    }
    g.throughput(Throughput::Bytes(lits.len() as u64));
    g.bench_function("literals_plain", |b| {
        b.iter(|| {
            let mut stats = H2Stats::default();
            let mut d = Decoder::new(4096);
            black_box(d.decode(&lits, 65536, &mut stats))
        })
    });
    // Huffman-coded values (the RFC 7541 C.4/C.6 strings) as literals without indexing:
    // mostly Huffman decoding cost.
    let coded = [
        hex("f1e3c2e5f23a6ba0ab90f4ff"),
        hex("d07abe941054d444a8200595040b8166e082a62d1bff"),
        hex("9d29ad171863c78f0b97c8e9ae82ae43d3"),
        hex("94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"),
    ];
    let mut lit_h = Vec::new();
    for _ in 0..25 {
        for c in &coded {
            lit_h.push(0x01); // name: static index 1
            lit_h.push(0x80 | c.len() as u8);
            lit_h.extend_from_slice(c);
        }
    }
    g.throughput(Throughput::Bytes(lit_h.len() as u64));
    g.bench_function("huffman_blocks_no_table", |b| {
        b.iter(|| {
            let mut stats = H2Stats::default();
            // A table too small to keep anything: pure decoding cost.
            let mut d = Decoder::new(0);
            black_box(d.decode(&lit_h, 1 << 20, &mut stats))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_frames, bench_hpack);
criterion_main!(benches);
