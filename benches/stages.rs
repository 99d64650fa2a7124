//! Per-stage benchmarks (criterion): link decoding, TCP reassembly and HTTP/1.1 parsing, each
//! with `Throughput::Bytes` so a regression points at its stage. Inputs are built from the
//! messages of tests/data/h1-nginx.pcap's kind of traffic (small JSON API calls, pipelined).
use apitap_capture::decode::{decode, linktype, DecodeStats};
use apitap_capture::reassembly::{HalfStream, HeldBudget, ReassemblyConfig, ReassemblyStats};
use apitap_parsers::http1::{Http1Conn, SizeModels};
use apitap_parsers::{ChunkMeta, Direction, ParserConfig, ParserStats};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const REQ: &[u8] = b"GET /v1/users/42?fields=name,email HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 29 Nov 2026 03:00:38 GMT\r\nContent-Type: application/json\r\nContent-Length: 43\r\nConnection: keep-alive\r\nETag: \"6553f100-2b\"\r\n\r\n{\"id\":42,\"name\":\"bob\",\"email\":\"b@example\"}\n";

fn http1(c: &mut Criterion) {
    let n = 1000;
    let reqs: Vec<u8> = REQ.repeat(n);
    let resps: Vec<u8> = RESP.repeat(n);
    let mut g = c.benchmark_group("http1");
    g.throughput(Throughput::Bytes((reqs.len() + resps.len()) as u64));
    // 1000 pipelined exchanges per connection, fed in 1448-byte segments as a mirror delivers them.
    g.bench_function("pipelined_1000_exchanges_mss_chunks", |b| {
        let mut sizes = SizeModels::default();
        b.iter(|| {
            let mut conn = Http1Conn::new(ParserConfig::default(), true, 0);
            let mut out = Vec::with_capacity(n);
            let mut stats = ParserStats::default();
            for (dir, data) in [(Direction::ToServer, &reqs), (Direction::ToClient, &resps)] {
                for (i, chunk) in data.chunks(1448).enumerate() {
                    let meta = ChunkMeta {
                        ts_us: 0,
                        offset: (i * 1448) as u64,
                        peer_ack: None,
                    };
                    conn.on_data(dir, chunk, meta, &mut out, &mut stats, &mut sizes);
                }
            }
            conn.on_close(&mut out, &mut stats, &mut sizes);
            assert_eq!(out.len(), n);
            black_box(out);
        })
    });
    g.finish();
}

fn reassembly(c: &mut Criterion) {
    let payload = vec![b'x'; 1448];
    let segs = 1000u32;
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Bytes(u64::from(segs) * 1448));
    for (name, swap) in [("in_order", false), ("every_4th_pair_swapped", true)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let cfg = ReassemblyConfig::default();
                let mut s = HalfStream::default();
                let mut budget = HeldBudget::default();
                let mut stats = ReassemblyStats::default();
                let mut delivered = 0usize;
                let mut order: Vec<u32> = (0..segs).collect();
                if swap {
                    for i in (0..order.len() - 1).step_by(4) {
                        order.swap(i, i + 1);
                    }
                }
                s.segment(
                    0,
                    true,
                    false,
                    &[],
                    0,
                    0,
                    &cfg,
                    &mut budget,
                    &mut stats,
                    &mut |_| {},
                );
                for i in order {
                    s.segment(
                        1 + i * 1448,
                        false,
                        false,
                        &payload,
                        1448,
                        0,
                        &cfg,
                        &mut budget,
                        &mut stats,
                        &mut |e| {
                            if let apitap_capture::reassembly::StreamEvent::Data { data, .. } = e {
                                delivered += data.len();
                            }
                        },
                    );
                }
                assert_eq!(delivered, segs as usize * 1448);
            })
        });
    }
    g.finish();
}

fn decoding(c: &mut Criterion) {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
        .single_vlan(etherparse::VlanId::try_new(100).expect("valid id"))
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1000, 65535)
        .write(&mut frame, REQ)
        .expect("build frame");
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("ethernet_vlan_ipv4_tcp", |b| {
        let mut st = DecodeStats::default();
        b.iter(|| black_box(decode(linktype::ETHERNET, black_box(&frame), &mut st).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, decoding, reassembly, http1);
criterion_main!(benches);
