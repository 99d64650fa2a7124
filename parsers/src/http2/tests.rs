//! Connection-level tests, built with a small test-only frame and HPACK encoder.

use super::*;
use crate::{ChunkMeta, Direction, Exchange, ParserConfig, ParserStats, Request};

use Direction::{ToClient as C, ToServer as S};

// ---- encoder helpers -------------------------------------------------------------------------

fn int(prefix: u8, first: u8, mut v: usize) -> Vec<u8> {
    let max = (1usize << prefix) - 1;
    if v < max {
        return vec![first | v as u8];
    }
    let mut out = vec![first | max as u8];
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut out = int(7, 0, s.len());
    out.extend_from_slice(s.as_bytes());
    out
}

/// Literal without indexing, new name (RFC 7541 §6.2.2).
fn lit(n: &str, v: &str) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(string(n));
    out.extend(string(v));
    out
}

/// Literal with incremental indexing, new name (§6.2.1).
fn lit_idx(n: &str, v: &str) -> Vec<u8> {
    let mut out = vec![0x40];
    out.extend(string(n));
    out.extend(string(v));
    out
}

/// Indexed field (§6.1).
fn idx(i: usize) -> Vec<u8> {
    int(7, 0x80, i)
}

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields.iter().flat_map(|(n, v)| lit(n, v)).collect()
}

fn frame(kind: u8, fl: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let mut out = vec![l[1], l[2], l[3], kind, fl];
    out.extend_from_slice(&sid.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const ES: u8 = 0x1;
const EH: u8 = 0x4;
const PAD: u8 = 0x8;
const PRIO: u8 = 0x20;

fn headers(sid: u32, fl: u8, fields: &[(&str, &str)]) -> Vec<u8> {
    frame(1, fl | EH, sid, &block(fields))
}
fn data(sid: u32, fl: u8, body: &[u8]) -> Vec<u8> {
    frame(0, fl, sid, body)
}
fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let p: Vec<u8> = params
        .iter()
        .flat_map(|(i, v)| i.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    frame(4, 0, 0, &p)
}
fn settings_ack() -> Vec<u8> {
    frame(4, 1, 0, &[])
}
fn rst(sid: u32, code: u32) -> Vec<u8> {
    frame(3, 0, sid, &code.to_be_bytes())
}
fn goaway(last: u32, code: u32) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    frame(7, 0, 0, &p)
}

fn get(sid: u32, path: &str) -> Vec<u8> {
    headers(
        sid,
        ES,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", path),
            (":authority", "api.example"),
            ("accept", "*/*"),
        ],
    )
}
fn ok(sid: u32, fl: u8) -> Vec<u8> {
    headers(
        sid,
        fl,
        &[(":status", "200"), ("content-type", "application/json")],
    )
}

fn client_start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings(&[(3, 100), (4, 65535)]));
    v
}
fn server_start() -> Vec<u8> {
    let mut v = settings(&[(3, 100)]);
    v.extend(settings_ack());
    v
}

// ---- driver ----------------------------------------------------------------------------------

type Event = (Direction, Vec<u8>);

struct Run {
    conn: Http2Conn,
    out: Vec<Exchange>,
    stats: ParserStats,
    off: [u64; 2],
    ts: i64,
}

impl Run {
    fn new(conn: Http2Conn) -> Self {
        Run {
            conn,
            out: Vec::new(),
            stats: ParserStats::default(),
            off: [0, 0],
            ts: 1_000,
        }
    }
    fn feed(&mut self, dir: Direction, bytes: &[u8]) {
        let i = if dir == S { 0 } else { 1 };
        let meta = ChunkMeta {
            ts_us: self.ts,
            offset: self.off[i],
            peer_ack: None,
        };
        self.conn
            .on_data(dir, bytes, meta, &mut self.out, &mut self.stats);
        self.off[i] += bytes.len() as u64;
        self.check_budget();
    }
    fn gap(&mut self, dir: Direction, len: u64) {
        let i = if dir == S { 0 } else { 1 };
        self.conn.on_gap(dir, len, &mut self.stats);
        self.off[i] += len;
        self.check_budget();
    }
    /// What the connection holds charged is what it keeps, and the worker's usage (one
    /// connection here).
    fn check_budget(&self) {
        budget_consistent(&self.conn, &self.stats);
    }
    /// Each event is one chunk, its timestamp the event's index × 1000.
    fn events(&mut self, evs: &[Event]) {
        for (k, (dir, b)) in evs.iter().enumerate() {
            self.ts = (k as i64 + 1) * 1000;
            self.feed(*dir, b);
        }
    }
    fn close(mut self) -> (Vec<Exchange>, ParserStats) {
        self.conn.on_close(&mut self.out, &mut self.stats);
        assert_eq!(
            (self.stats.budget_used_bytes, self.conn.budget_held()),
            (0, 0)
        );
        (self.out, self.stats)
    }
}

fn budget_consistent(conn: &Http2Conn, stats: &ParserStats) {
    conn.check_budget().unwrap();
    assert_eq!(stats.budget_used_bytes, conn.budget_held() as u64);
}

fn run(evs: &[Event]) -> (Vec<Exchange>, ParserStats) {
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    r.events(evs);
    r.close()
}

/// Feeds each event split at `k` (two chunks, same timestamp).
fn run_split(evs: &[Event], k: usize) -> (Vec<Exchange>, ParserStats) {
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    for (n, (dir, b)) in evs.iter().enumerate() {
        r.ts = (n as i64 + 1) * 1000;
        let k = k.min(b.len());
        r.feed(*dir, &b[..k]);
        r.feed(*dir, &b[k..]);
    }
    r.close()
}

fn simple_conversation() -> Vec<Event> {
    let mut req = client_start();
    req.extend(get(1, "/v1/users?id=7"));
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    resp.extend(data(1, 0, b"{\"id\":"));
    resp.extend(data(1, ES, b"7}"));
    vec![(S, req), (C, resp), (S, settings_ack())]
}

// ---- tests -----------------------------------------------------------------------------------

#[test]
fn simple_exchange() {
    let (out, stats) = run(&simple_conversation());
    assert_eq!(out.len(), 1);
    let ex = &out[0];
    assert_eq!(ex.protocol, crate::Protocol::Http2);
    assert_eq!(ex.stream_id, Some(1));
    assert_eq!(ex.request.method, "GET");
    assert_eq!(ex.request.target, "/v1/users?id=7");
    assert_eq!(ex.request.authority.as_deref(), Some("api.example"));
    assert_eq!(ex.request.scheme.as_deref(), Some("https"));
    assert_eq!(ex.request.version, "HTTP/2");
    assert_eq!(
        ex.request.headers,
        vec![("accept".to_string(), "*/*".to_string())]
    );
    assert_eq!(ex.request.ts_us, 1000);
    assert_eq!(ex.request.stream_offset, (PREFACE.len() + 9 + 12) as u64);
    let r = ex.response.as_ref().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.ts_us, 2000);
    assert_eq!(r.version, "HTTP/2");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body.prefix, b"{\"id\":7}");
    assert_eq!(r.body.bytes, 8);
    assert!(!ex.gap && !ex.headers_incomplete && ex.reset.is_none() && !ex.pushed);
    assert_eq!(stats.h2.prefaces, 1);
    assert_eq!(
        stats.h2.frame_errors + stats.h2.desyncs + stats.h2.hpack_errors,
        0
    );
}

#[test]
fn every_split_point_gives_the_same_result() {
    let evs = simple_conversation();
    let (want, _) = run(&evs);
    let longest = evs.iter().map(|e| e.1.len()).max().unwrap();
    for k in 0..=longest {
        let (got, stats) = run_split(&evs, k);
        assert_eq!(got, want, "split at {k}");
        assert_eq!(stats.h2.desyncs, 0);
    }
    // Byte by byte.
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    for (n, (dir, b)) in evs.iter().enumerate() {
        r.ts = (n as i64 + 1) * 1000;
        for x in b {
            r.feed(*dir, std::slice::from_ref(x));
        }
    }
    assert_eq!(r.close().0, want);
}

#[test]
fn interleaved_streams() {
    let mut req = client_start();
    req.extend(get(1, "/a"));
    req.extend(headers(
        3,
        0,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/b"),
            (":authority", "h"),
        ],
    ));
    req.extend(data(3, 0, b"part1-"));
    let mut resp = server_start();
    resp.extend(ok(3, 0));
    resp.extend(ok(1, 0));
    resp.extend(data(1, 0, b"one"));
    resp.extend(data(3, 0, b"three"));
    resp.extend(data(1, ES, b"!"));
    let (out, _) = run(&[
        (S, req),
        (C, resp),
        (S, data(3, ES, b"part2")),
        (C, data(3, ES, b"?")),
    ]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].stream_id, Some(1));
    assert_eq!(out[0].response.as_ref().unwrap().body.prefix, b"one!");
    assert_eq!(out[1].stream_id, Some(3));
    assert_eq!(out[1].request.method, "POST");
    assert_eq!(out[1].request.body.prefix, b"part1-part2");
    assert_eq!(out[1].response.as_ref().unwrap().body.prefix, b"three?");
}

#[test]
fn continuation_frames() {
    let b = block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/cont"),
        (":authority", "x"),
        ("x-long", &"v".repeat(300)),
    ]);
    let mut req = client_start();
    req.extend(frame(1, ES, 1, &b[..10]));
    req.extend(frame(9, 0, 1, &b[10..200]));
    req.extend(frame(9, EH, 1, &b[200..]));
    let mut resp = server_start();
    resp.extend(ok(1, ES));
    let evs = [(S, req), (C, resp)];
    let (out, stats) = run(&evs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].request.target, "/cont");
    assert_eq!(out[0].request.header("x-long").map(str::len), Some(300));
    assert!(!out[0].headers_incomplete);
    assert_eq!(stats.h2.continuation_errors, 0);
    for k in [1, 50, 95, 120, 300] {
        assert_eq!(run_split(&evs, k).0, out, "split {k}");
    }
}

#[test]
fn continuation_interrupted_is_counted() {
    let b = block(&[(":method", "GET"), (":path", "/x")]);
    let mut req = client_start();
    req.extend(frame(1, ES, 1, &b));
    req.extend(frame(8, 0, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE in the middle
    req.extend(get(3, "/after"));
    let (out, stats) = run(&[(S, req), (C, ok(3, ES))]);
    assert_eq!(stats.h2.continuation_errors, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].request.target, "/after");
}

#[test]
fn padding_and_priority() {
    let b = block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/pad"),
        (":authority", "x"),
    ]);
    let mut p = vec![3u8, 0x80, 0, 0, 0, 15];
    p.extend(&b);
    p.extend([0, 0, 0]);
    let mut req = client_start();
    req.extend(frame(1, ES | EH | PAD | PRIO, 1, &p));
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    let mut d = vec![4u8];
    d.extend(b"body");
    d.extend([0; 4]);
    resp.extend(frame(0, ES | PAD, 1, &d));
    let evs = [(S, req), (C, resp)];
    let (out, stats) = run(&evs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].request.target, "/pad");
    assert_eq!(out[0].response.as_ref().unwrap().body.prefix, b"body");
    assert_eq!(out[0].response.as_ref().unwrap().body.bytes, 4);
    assert_eq!(stats.h2.frame_errors, 0);
    let longest = evs.iter().map(|e| e.1.len()).max().unwrap();
    for k in 0..=longest {
        assert_eq!(run_split(&evs, k).0, out, "split {k}");
    }
    // Padding longer than the frame: counted, connection goes on.
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    resp.extend(frame(0, PAD, 1, &[9, 1, 2]));
    resp.extend(data(1, ES, b"z"));
    let mut req = client_start();
    req.extend(get(1, "/"));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    assert_eq!(stats.h2.frame_errors, 1);
    assert_eq!(out[0].response.as_ref().unwrap().body.prefix, b"z");
}

#[test]
fn rst_stream_emits_with_reset() {
    let mut req = client_start();
    req.extend(get(1, "/slow"));
    req.extend(get(3, "/fast"));
    let mut resp = server_start();
    resp.extend(rst(1, 8));
    resp.extend(ok(3, 0));
    resp.extend(rst(3, 2));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].stream_id, Some(1));
    assert_eq!(out[0].reset.as_deref(), Some("CANCEL"));
    assert!(out[0].response.is_none());
    assert_eq!(out[1].reset.as_deref(), Some("INTERNAL_ERROR"));
    assert_eq!(out[1].response.as_ref().unwrap().status, 200);
    assert!(out[1].response.as_ref().unwrap().body.incomplete);
    assert_eq!(stats.h2.rst_streams, 2);
}

#[test]
fn goaway_emits_unprocessed_and_lets_older_finish() {
    let mut req = client_start();
    req.extend(get(1, "/one"));
    req.extend(get(3, "/three"));
    let mut resp = server_start();
    resp.extend(goaway(1, 0));
    let (out, stats) = run(&[(S, req), (C, resp), (C, ok(1, ES))]);
    assert_eq!(stats.h2.goaways, 1);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].stream_id, Some(3));
    assert!(out[0].response.is_none());
    assert_eq!(out[1].stream_id, Some(1));
    assert_eq!(out[1].response.as_ref().unwrap().status, 200);
    // GOAWAY with an error ends everything at once.
    let mut req = client_start();
    req.extend(get(1, "/one"));
    let mut resp = server_start();
    resp.extend(goaway(1, 2));
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    r.events(&[(S, req), (C, resp)]);
    assert_eq!(r.out.len(), 1);
}

#[test]
fn push_promise() {
    let mut req = client_start();
    req.extend(get(1, "/index.html"));
    let mut resp = server_start();
    let mut pp = 2u32.to_be_bytes().to_vec();
    pp.extend(block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/style.css"),
        (":authority", "api.example"),
    ]));
    resp.extend(frame(5, EH, 1, &pp));
    resp.extend(ok(1, 0));
    resp.extend(headers(
        2,
        0,
        &[(":status", "200"), ("content-type", "text/css")],
    ));
    resp.extend(data(2, ES, b"body{}"));
    resp.extend(data(1, ES, b"<html>"));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    assert_eq!(stats.h2.push_promises, 1);
    assert_eq!(out.len(), 2);
    let pushed = &out[0];
    assert!(pushed.pushed);
    assert_eq!(pushed.stream_id, Some(2));
    assert_eq!(pushed.request.target, "/style.css");
    assert_eq!(pushed.request.ts_us, 2000);
    assert_eq!(pushed.response.as_ref().unwrap().body.prefix, b"body{}");
    assert!(!out[1].pushed);
    assert_eq!(out[1].request.target, "/index.html");
}

#[test]
fn h2c_upgrade() {
    let up = Request {
        ts_us: 500,
        method: "GET".into(),
        target: "/upgrade".into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            ("host".into(), "h".into()),
            ("upgrade".into(), "h2c".into()),
        ],
        ..Request::default()
    };
    let mut r = Run::new(Http2Conn::upgraded(ParserConfig::default(), up));
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    resp.extend(data(1, ES, b"done"));
    let mut req = client_start();
    req.extend(get(3, "/next"));
    r.events(&[(C, resp), (S, req), (C, ok(3, ES))]);
    let (out, stats) = r.close();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].stream_id, Some(1));
    assert_eq!(out[0].request.target, "/upgrade");
    assert_eq!(out[0].request.ts_us, 500);
    assert_eq!(out[0].response.as_ref().unwrap().body.prefix, b"done");
    assert_eq!(out[1].request.target, "/next");
    assert_eq!(stats.h2.prefaces, 1);
}

/// A longer conversation: `n` sequential requests, each answered.
fn many(n: u32, indexing: bool) -> (Vec<u8>, Vec<u8>) {
    let mut req = client_start();
    let mut resp = server_start();
    for i in 0..n {
        let sid = 2 * i + 1;
        let path = format!("/items/{i}");
        let mut b = vec![0x82u8, 0x87]; // :method GET, :scheme https (static)
        b.extend(lit(":path", &path));
        if indexing {
            // A fresh insertion, then a reference to it (index 62 = newest).
            b.extend(lit_idx("x-req", &format!("r{i}")));
            b.extend(idx(62));
        } else {
            b.extend(lit("x-req", &format!("r{i}")));
        }
        req.extend(frame(1, ES | EH, sid, &b));
        resp.extend(ok(sid, 0));
        resp.extend(data(sid, ES, format!("body-{i}").as_bytes()));
    }
    (req, resp)
}

#[test]
fn midstream_pickup_parses_later_streams() {
    let (req, resp) = many(12, false);
    let (full, _) = run(&[(S, req.clone()), (C, resp.clone())]);
    assert_eq!(full.len(), 12);
    for drop in [1usize, 7, 30, 61, 100, 150, 211] {
        let mut r = Run::new(Http2Conn::midstream(ParserConfig::default()));
        r.off = [drop as u64, drop as u64];
        r.events(&[(S, req[drop..].to_vec()), (C, resp[drop..].to_vec())]);
        let (out, stats) = r.close();
        assert!(stats.resyncs >= 1, "drop {drop}");
        let complete: Vec<_> = out
            .iter()
            .filter(|e| e.response.is_some() && !e.request.method.is_empty())
            .collect();
        // Each request is 37 octets: all but those touched by the cut (and the frames needed to
        // confirm the boundary) come through.
        let want = 12 - drop / 37 - 3;
        assert!(
            complete.len() >= want,
            "drop {drop}: {} {stats:?}",
            complete.len()
        );
        for e in &complete {
            let i = (e.stream_id.unwrap() - 1) / 2;
            assert_eq!(e.request.target, format!("/items/{i}"));
            assert_eq!(e.request.header("x-req"), Some(format!("r{i}").as_str()));
            assert_eq!(
                e.response.as_ref().unwrap().body.prefix,
                format!("body-{i}").as_bytes()
            );
        }
    }
}

#[test]
fn midstream_with_indexing_never_guesses() {
    let (req, resp) = many(6, true);
    let (full, _) = run(&[(S, req.clone()), (C, resp.clone())]);
    assert!(full.iter().all(|e| !e.headers_incomplete));
    assert_eq!(full[5].request.headers.len(), 2);
    let drop = 80;
    let mut r = Run::new(Http2Conn::midstream(ParserConfig::default()));
    r.events(&[(S, req[drop..].to_vec()), (C, resp[drop..].to_vec())]);
    let (out, _) = r.close();
    let later: Vec<_> = out
        .iter()
        .filter(|e| !e.request.method.is_empty())
        .collect();
    assert!(!later.is_empty());
    for e in later {
        // The reference to the entry inserted in the same block is known.
        let i = (e.stream_id.unwrap() - 1) / 2;
        assert_eq!(
            e.request.headers,
            vec![
                ("x-req".to_string(), format!("r{i}")),
                ("x-req".to_string(), format!("r{i}"))
            ]
        );
    }
    // Server side references :status 200 etc. only from the static table / literals.
}

#[test]
fn dynamic_table_across_requests_and_unknown_after_header_gap() {
    let mut req = client_start();
    let b1 = [
        vec![0x82, 0x87, 0x84],
        lit_idx(":authority", "api.example"),
        lit_idx("x-tenant", "blue"),
    ]
    .concat();
    req.extend(frame(1, ES | EH, 1, &b1));
    let b3 = [vec![0x82, 0x87, 0x84], idx(63), idx(62)].concat();
    let h3 = frame(1, ES | EH, 3, &b3);
    let mut resp = server_start();
    resp.extend(ok(1, ES));
    let (out, _) = run(&[
        (S, [req.clone(), h3.clone()].concat()),
        (C, [resp.clone(), ok(3, ES)].concat()),
    ]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].request.authority.as_deref(), Some("api.example"));
    assert_eq!(out[1].request.header("x-tenant"), Some("blue"));
    assert!(!out[1].headers_incomplete);

    // Now lose 5 octets inside the first HEADERS payload: that block is gone, the table is
    // unknown, and stream 3's references are reported missing, not guessed.
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    let cut = client_start().len() + 9 + 4;
    r.feed(S, &req[..cut]);
    r.gap(S, 5);
    r.feed(S, &req[cut + 5..]);
    r.feed(S, &h3);
    r.feed(C, &resp);
    r.feed(C, &ok(3, ES));
    let (out, stats) = r.close();
    assert_eq!(stats.h2.header_block_gaps, 1);
    let e3 = out.iter().find(|e| e.stream_id == Some(3)).unwrap();
    assert_eq!(e3.request.target, "/");
    assert!(e3.headers_incomplete);
    assert_eq!(e3.request.authority, None);
    assert!(e3.request.headers.is_empty());
    assert_eq!(stats.h2.hpack_unknown_refs, 2);
    assert_eq!(stats.h2.desyncs, 0);
}

#[test]
fn gap_inside_data_costs_only_that_body() {
    let mut req = client_start();
    req.extend(get(1, "/big"));
    req.extend(get(3, "/small"));
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    let body = vec![b'x'; 1000];
    let d1 = data(1, ES, &body);
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    r.feed(S, &req);
    r.feed(C, &resp);
    r.feed(C, &d1[..400]);
    r.gap(C, 300);
    r.feed(C, &d1[700..]);
    r.feed(C, &ok(3, ES));
    let (out, stats) = r.close();
    assert_eq!(out.len(), 2);
    let e1 = &out[0];
    assert!(e1.gap);
    let b = &e1.response.as_ref().unwrap().body;
    assert!(b.incomplete);
    assert_eq!(b.bytes, 1000);
    assert_eq!(b.prefix.len(), 700);
    assert!(!out[1].gap);
    assert_eq!(stats.h2.data_gaps, 1);
    assert_eq!(stats.h2.desyncs, 0);
}

#[test]
fn gap_over_frame_headers_resyncs() {
    let (req, resp) = many(10, false);
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    r.feed(S, &req);
    // Lose a stretch of the server side that spans several frames.
    r.feed(C, &resp[..60]);
    r.gap(C, 150);
    r.feed(C, &resp[210..]);
    let (out, stats) = r.close();
    assert_eq!(stats.h2.desyncs, 1);
    assert_eq!(stats.resyncs, 1);
    assert_eq!(out.len(), 10);
    let answered = out
        .iter()
        .filter(|e| e.response.as_ref().is_some_and(|r| r.status == 200))
        .count();
    assert!(answered >= 6, "{answered}");
    let last = out.iter().find(|e| e.stream_id == Some(19)).unwrap();
    assert_eq!(last.response.as_ref().unwrap().body.prefix, b"body-9");
}

#[test]
fn grpc_call() {
    let mut req = client_start();
    req.extend(headers(
        1,
        0,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/pkg.Greeter/SayHello"),
            (":authority", "g"),
            ("content-type", "application/grpc+proto"),
            ("te", "trailers"),
        ],
    ));
    let mut msgs = Vec::new();
    for m in [&b"abc"[..], b"", b"hello world"] {
        msgs.push(0u8);
        msgs.extend((m.len() as u32).to_be_bytes());
        msgs.extend_from_slice(m);
    }
    // Messages cut across DATA frames at awkward places.
    req.extend(data(1, 0, &msgs[..2]));
    req.extend(data(1, 0, &msgs[2..11]));
    req.extend(data(1, ES, &msgs[11..]));
    let mut resp = server_start();
    resp.extend(headers(
        1,
        0,
        &[(":status", "200"), ("content-type", "application/grpc")],
    ));
    resp.extend(data(1, 0, &[1, 0, 0, 0, 2, 9, 9, 0, 0, 0, 0, 0]));
    resp.extend(headers(
        1,
        ES,
        &[("grpc-status", "3"), ("grpc-message", "bad%20arg%3A%20x")],
    ));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    let g = out[0].grpc.as_ref().unwrap();
    assert_eq!(g.service, "pkg.Greeter");
    assert_eq!(g.method, "SayHello");
    assert_eq!(g.request_messages, 3);
    assert_eq!(g.response_messages, 2);
    assert_eq!(g.status, Some(3));
    assert_eq!(g.message.as_deref(), Some("bad arg: x"));
    assert_eq!(out[0].response.as_ref().unwrap().trailers.len(), 2);
    assert_eq!(stats.h2.grpc_framing_errors, 0);
}

#[test]
fn grpc_trailers_only() {
    let mut req = client_start();
    req.extend(headers(
        1,
        ES,
        &[
            (":method", "POST"),
            (":path", "/a.B/C"),
            ("content-type", "application/grpc"),
        ],
    ));
    let mut resp = server_start();
    resp.extend(headers(
        1,
        ES,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "12"),
        ],
    ));
    let (out, _) = run(&[(S, req), (C, resp)]);
    let g = out[0].grpc.as_ref().unwrap();
    assert_eq!(g.status, Some(12));
    assert_eq!(g.message, None);
    assert_eq!((g.request_messages, g.response_messages), (0, 0));
}

#[test]
fn interim_responses_and_trailers() {
    let mut req = client_start();
    req.extend(headers(
        1,
        0,
        &[
            (":method", "PUT"),
            (":path", "/u"),
            ("expect", "100-continue"),
        ],
    ));
    let mut resp = server_start();
    resp.extend(headers(1, 0, &[(":status", "100")]));
    resp.extend(headers(1, 0, &[(":status", "103"), ("link", "</s.css>")]));
    let (out, _) = run(&[
        (S, req),
        (C, resp),
        (S, data(1, ES, b"payload")),
        (
            C,
            [
                ok(1, 0),
                data(1, 0, b"r"),
                headers(1, ES, &[("x-checksum", "1")]),
            ]
            .concat(),
        ),
    ]);
    let r = out[0].response.as_ref().unwrap();
    assert_eq!(r.interim, vec![100, 103]);
    assert_eq!(r.status, 200);
    assert_eq!(r.ts_us, 4000);
    assert_eq!(
        r.trailers,
        vec![("x-checksum".to_string(), "1".to_string())]
    );
    assert_eq!(out[0].request.body.prefix, b"payload");
}

#[test]
fn connect_and_missing_authority() {
    let mut req = client_start();
    req.extend(headers(
        1,
        0,
        &[(":method", "CONNECT"), (":authority", "db.internal:5432")],
    ));
    req.extend(headers(
        3,
        ES,
        &[
            (":method", "GET"),
            (":path", "/h"),
            ("host", "legacy.example"),
        ],
    ));
    let (out, _) = run(&[(S, req), (C, [ok(3, ES), ok(1, ES)].concat())]);
    assert_eq!(out[0].request.header("host"), Some("legacy.example"));
    assert_eq!(out[0].request.authority, None);
    assert_eq!(out[1].request.target, "db.internal:5432");
}

#[test]
fn caps_body_prefix_and_streams() {
    let cfg = ParserConfig {
        body_prefix_max: 4,
        h2_max_streams: 2,
        ..ParserConfig::default()
    };
    let mut req = client_start();
    for sid in [1, 3, 5] {
        req.extend(get(sid, "/"));
    }
    let mut resp = server_start();
    resp.extend(ok(5, 0));
    resp.extend(data(5, ES, b"0123456789"));
    let mut r = Run::new(Http2Conn::new(cfg));
    r.events(&[(S, req), (C, resp)]);
    let (out, stats) = r.close();
    assert_eq!(stats.h2.stream_overflow, 1);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].stream_id, Some(1), "oldest evicted first");
    let b = &out[1].response.as_ref().unwrap().body;
    assert_eq!((b.prefix.as_slice(), b.bytes), (&b"0123"[..], 10));
}

#[test]
fn settings_are_applied_when_acked() {
    // Client allows 32 KiB frames; after the server ACKs, the server may send one.
    let mut req = PREFACE.to_vec();
    req.extend(settings(&[(5, 32768)]));
    req.extend(get(1, "/"));
    let mut resp = settings(&[]);
    resp.extend(settings_ack());
    resp.extend(ok(1, 0));
    resp.extend(data(1, ES, &vec![7u8; 20000]));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    assert_eq!(stats.h2.oversized_frames, 0);
    assert_eq!(out[0].response.as_ref().unwrap().body.bytes, 20000);
    // Without the setting the same frame is a loss of sync.
    let mut req = client_start();
    req.extend(get(1, "/"));
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    resp.extend(data(1, ES, &vec![7u8; 20000]));
    let (_, stats) = run(&[(S, req), (C, resp)]);
    assert_eq!(stats.h2.oversized_frames, 1);
}

#[test]
fn unknown_and_control_frames_are_skipped() {
    let mut req = client_start();
    req.extend(frame(0xfa, 0xff, 1, b"extension"));
    req.extend(frame(2, 0, 1, &[0, 0, 0, 0, 9])); // PRIORITY
    req.extend(frame(6, 0, 0, &[1; 8])); // PING
    req.extend(get(1, "/"));
    let mut resp = server_start();
    resp.extend(frame(6, 1, 0, &[1; 8]));
    resp.extend(frame(8, 0, 1, &[0, 0, 1, 0]));
    resp.extend(ok(1, ES));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    assert_eq!(out.len(), 1);
    assert_eq!(stats.h2.unknown_frames, 1);
}

#[test]
fn close_emits_pending() {
    let mut req = client_start();
    req.extend(get(1, "/pending"));
    let mut resp = server_start();
    resp.extend(ok(1, 0));
    resp.extend(data(1, 0, b"partial"));
    let (out, _) = run(&[(S, req), (C, resp)]);
    assert_eq!(out.len(), 1);
    assert!(out[0].response.as_ref().unwrap().body.incomplete);
}

#[test]
fn bad_preface_resyncs() {
    let mut req = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".to_vec();
    req.extend(settings(&[]));
    req.extend(get(1, "/"));
    let (out, stats) = run(&[(S, req), (C, [server_start(), ok(1, ES)].concat())]);
    assert_eq!(stats.h2.preface_mismatch, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].request.target, "/");
}

#[test]
fn looks_like_frames_is_strict() {
    assert!(looks_like_frames(&settings(&[(3, 100)])));
    assert!(looks_like_frames(&[settings(&[]), get(1, "/")].concat()));
    assert!(looks_like_frames(PREFACE));
    assert!(!looks_like_frames(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!looks_like_frames(b"HTTP/1.1 200 OK\r\n"));
    assert!(!looks_like_frames(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03
    ]));
    assert!(!looks_like_frames(&[0, 0, 4]));
    // Valid first header followed by junk.
    assert!(!looks_like_frames(
        &[settings(&[]), b"GET / HTTP/1.1".to_vec()].concat()
    ));
}

#[test]
fn hostile_input_does_not_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut refusals = 0;
    for round in 0..600 {
        // Every other round under a budget small enough to refuse blocks, streams, tables.
        let cfg = ParserConfig {
            h2_max_streams: 4,
            h2_max_header_list: 512,
            memory_budget_bytes: if round % 2 == 0 {
                usize::MAX
            } else {
                (next() % 6000) as usize
            },
            ..ParserConfig::default()
        };
        let mut conn = match round % 3 {
            0 => Http2Conn::new(cfg),
            1 => Http2Conn::midstream(cfg),
            _ => Http2Conn::upgraded(cfg, Request::default()),
        };
        let (mut out, mut stats) = (Vec::new(), ParserStats::default());
        for _ in 0..40 {
            let n = (next() % 64) as usize;
            let mut chunk: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            // Mix in valid-looking frames so deeper states are reached.
            if next() % 2 == 0 {
                chunk = [frame(
                    (next() % 11) as u8,
                    next() as u8,
                    (next() % 8) as u32,
                    &chunk,
                )]
                .concat();
            }
            let dir = if next() % 2 == 0 { S } else { C };
            if next() % 9 == 0 {
                conn.on_gap(dir, next() % 100, &mut stats);
                budget_consistent(&conn, &stats);
            }
            conn.on_data(dir, &chunk, ChunkMeta::default(), &mut out, &mut stats);
            budget_consistent(&conn, &stats);
        }
        conn.on_close(&mut out, &mut stats);
        assert_eq!((stats.budget_used_bytes, conn.budget_held()), (0, 0));
        refusals += stats.budget_refusals;
    }
    assert!(refusals > 100, "{refusals}");
}

#[test]
fn gap_in_last_continuation_closes_the_lost_block() {
    let b = block(&[
        (":method", "GET"),
        (":path", "/lost"),
        ("x-pad", &"p".repeat(100)),
    ]);
    let mut req = client_start();
    req.extend(frame(1, ES, 1, &b[..20]));
    let cont = frame(9, EH, 1, &b[20..]);
    let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
    r.feed(S, &req);
    r.feed(S, &cont[..30]);
    r.gap(S, 10);
    r.feed(S, &cont[40..]);
    r.feed(S, &get(3, "/next"));
    r.feed(C, &[server_start(), ok(3, ES)].concat());
    let (out, stats) = r.close();
    assert_eq!(
        stats.h2.continuation_errors, 0,
        "the lost block ended with its frame"
    );
    assert_eq!(stats.h2.header_block_gaps, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].request.target, "/next");
}

#[test]
fn request_trailers_for_unknown_stream_are_not_requests() {
    let mut req = client_start();
    req.extend(headers(5, ES, &[("grpc-trailer", "x")]));
    let (out, stats) = run(&[(S, req)]);
    assert!(out.is_empty());
    assert_eq!(stats.h2.orphan_frames, 1);
}

#[test]
fn header_table_size_setting_applies_on_ack() {
    // The client announces a 0-octet table for what it receives; once the server ACKs, the
    // server's encoder (to-client blocks) must not use the dynamic table.
    let mut req = PREFACE.to_vec();
    req.extend(settings(&[(1, 0)]));
    req.extend(get(1, "/"));
    req.extend(get(3, "/"));
    let mut resp = settings(&[]);
    resp.extend(frame(1, EH, 1, &[vec![0x88], lit_idx("x-a", "1")].concat()));
    resp.extend(settings_ack());
    // After the ACK the entry is gone: a reference to it is invalid, not a stale hit.
    resp.extend(frame(1, EH | ES, 3, &[0x88, 0xbe]));
    resp.extend(data(1, ES, b""));
    let (out, stats) = run(&[(S, req), (C, resp)]);
    let e3 = out.iter().find(|e| e.stream_id == Some(3)).unwrap();
    assert!(e3.headers_incomplete);
    assert!(e3.response.as_ref().unwrap().headers.is_empty());
    assert_eq!(stats.h2.hpack_invalid_index, 1);
}

/// An HPACK table the worker's budget cannot hold is forgotten: later references to it are
/// reported unknown, never guessed, as after a gap.
#[test]
fn hpack_table_the_budget_cannot_hold_is_forgotten() {
    let big = [
        lit_idx(":status", "200"),
        lit_idx("x-big", &"b".repeat(2000)),
    ]
    .concat();
    let evs = vec![
        (S, client_start()),
        (C, server_start()),
        // Responses on streams nobody opened: decoded for the table's sake, then dropped.
        (C, frame(1, EH | ES, 1, &big)),
        (C, frame(1, EH | ES, 3, &idx(62))),
    ];
    let (_, plenty) = run(&evs);
    assert_eq!(
        (plenty.budget_refusals, plenty.h2.hpack_unknown_refs),
        (0, 0)
    );
    let cfg = ParserConfig {
        memory_budget_bytes: 1000,
        ..ParserConfig::default()
    };
    let mut r = Run::new(Http2Conn::new(cfg));
    r.events(&evs);
    let (_, tight) = r.close();
    assert_eq!(tight.budget_refusals, 1);
    assert!(tight.budget_dropped_bytes >= 2000);
    assert_eq!(tight.h2.hpack_unknown_refs, 1);
    assert!(tight.budget_peak_bytes <= 1000);
}

#[test]
fn stats_add_sums_every_counter() {
    let a = H2Stats {
        frames: 2,
        exchanges: 1,
        hpack_resynced: 3,
        ..H2Stats::default()
    };
    let mut b = a.clone();
    b.add(&a);
    assert_eq!((b.frames, b.exchanges, b.hpack_resynced), (4, 2, 6));
}

/// Everything at once, fed whole, then one octet at a time, then in 3-octet pieces: the
/// exchanges must be identical.
#[test]
fn rich_conversation_any_chunking() {
    let big = block(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/pkg.S/M"),
        (":authority", "g"),
        ("content-type", "application/grpc"),
        ("x-fill", &"f".repeat(150)),
    ]);
    let mut req = client_start();
    req.extend(frame(
        1,
        PAD,
        1,
        &[[2u8].as_slice(), &big[..40], &[0, 0]].concat(),
    ));
    req.extend(frame(9, EH, 1, &big[40..]));
    req.extend(get(3, "/three"));
    req.extend(data(1, ES, &[0, 0, 0, 0, 2, 7, 7]));
    let mut resp = server_start();
    let mut pp = 2u32.to_be_bytes().to_vec();
    pp.extend(block(&[(":method", "GET"), (":path", "/pushed")]));
    resp.extend(frame(5, EH, 3, &pp));
    resp.extend(headers(
        1,
        0,
        &[(":status", "200"), ("content-type", "application/grpc")],
    ));
    resp.extend(headers(2, 0, &[(":status", "200")]));
    resp.extend(frame(0, PAD, 1, &[1, 0, 0, 0, 0, 1, 9, 0]));
    resp.extend(data(2, ES, b"pushed body"));
    resp.extend(rst(3, 8));
    resp.extend(headers(1, ES, &[("grpc-status", "0")]));
    let evs = vec![(S, req), (C, resp)];
    let (want, _) = run(&evs);
    assert_eq!(want.len(), 3);
    let g = want
        .iter()
        .find(|e| e.stream_id == Some(1))
        .unwrap()
        .grpc
        .clone()
        .unwrap();
    assert_eq!(
        (g.request_messages, g.response_messages, g.status),
        (1, 1, Some(0))
    );
    for piece in [1usize, 3] {
        let mut r = Run::new(Http2Conn::new(ParserConfig::default()));
        for (n, (dir, b)) in evs.iter().enumerate() {
            r.ts = (n as i64 + 1) * 1000;
            for c in b.chunks(piece) {
                r.feed(*dir, c);
            }
        }
        assert_eq!(r.close().0, want, "pieces of {piece}");
    }
}

/// Repeated desyncs inside one large chunk (three plausible frames, then an impossible length)
/// must cost linear time: each resync scans in place instead of copying the rest of the chunk.
#[test]
fn repeated_desync_in_one_chunk_is_linear() {
    let mut unit = Vec::new();
    for _ in 0..3 {
        unit.extend(settings(&[]));
    }
    unit.extend([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
    let evil: Vec<u8> = unit
        .iter()
        .copied()
        .cycle()
        .take(unit.len() * 20_000)
        .collect();
    let mut req = client_start();
    req.extend(evil);
    let start = std::time::Instant::now();
    let (_, stats) = run(&[(S, req)]);
    assert_eq!(stats.h2.oversized_frames, 20_000);
    // Every desync but the last (nothing follows it) finds the next boundary.
    assert_eq!(stats.resyncs, 19_999);
    // Generous bound; the quadratic version takes minutes in a debug build.
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}
