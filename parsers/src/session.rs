//! One connection's application protocol: detection and dispatch.
//!
//! Owns the decision "what is this connection speaking" and the handovers between parsers:
//! - the HTTP/2 client preface on the client side (RFC 9113 §3.4, prior knowledge) → HTTP/2;
//! - a request line or a status line (RFC 9112 §3, §4) → HTTP/1.x;
//! - a `101` answering `Upgrade: h2c` (RFC 9113 §3.2) → HTTP/2 from the next byte;
//! - a TLS record header (RFC 8446 §5.1) → encrypted, counted, ignored;
//! - a connection picked up midstream whose bytes validate as HTTP/2 frames → HTTP/2;
//! - otherwise, midstream: HTTP/1 looking for a message start; from the start: unknown.
use crate::budget;
use crate::http1::{looks_like_request, looks_like_response, Http1Conn, SizeModels, Transition};
use crate::http2::{looks_like_frames, Http2Conn, PREFACE};
use crate::{ChunkMeta, Direction, Exchange, ParserConfig, ParserStats};

/// What a connection turned out to be, for "where did my traffic go" reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppProtocol {
    /// No payload byte seen yet.
    Undetected,
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 (prior knowledge, upgraded or midstream).
    Http2,
    /// TLS: encrypted, not parsed.
    Tls,
    /// A tunnel after CONNECT or a WebSocket after `101`.
    Tunnel,
    /// Something else.
    Unknown,
}

impl AppProtocol {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Undetected => "no_payload",
            AppProtocol::Http1 => "http1",
            AppProtocol::Http2 => "http2",
            AppProtocol::Tls => "tls",
            AppProtocol::Tunnel => "tunnel",
            AppProtocol::Unknown => "unknown",
        }
    }
}

/// Bytes kept while a connection's protocol is undecided (a first segment of one byte, `GE`…).
const DETECT_MAX: usize = 256;

/// Each direction's first bytes and their metadata, held until they say enough. Each buffer's
/// capacity is charged to the worker's budget while it is held here, and given back when it
/// is taken out.
type Held = [Option<(Vec<u8>, ChunkMeta)>; 2];

/// Every variant's state is out of line, so that a session costs a few words until its
/// connection carries something (a SYN flood or a table of half-open connections is mostly
/// sessions that never will).
#[derive(Debug)]
enum Proto {
    /// Undecided; `None` until a first byte is held.
    Detect(Option<Box<Held>>),
    Http1(Box<Http1Conn>),
    Http2(Box<Http2Conn>),
    Opaque(AppProtocol),
}

/// What the connections of one worker share: their limits, their counters, their memory
/// budget, and what they learn from each other. One per worker rather than a copy per
/// connection, which at a million connections would be hundreds of megabytes of identical
/// limits and mostly-zero counters. Passed by `&mut` to every call, on the worker's thread
/// alone: the budget is plain integers.
#[derive(Debug, Default)]
pub struct Shared {
    /// Parser limits, the memory budget ([`ParserConfig::memory_budget_bytes`]) among them.
    pub cfg: ParserConfig,
    /// Counters of every connection so far, closed or not, and the budget's account
    /// ([`ParserStats::budget_used_bytes`], see [`crate::budget`]).
    pub stats: ParserStats,
    /// Response sizes per (server, method, target), for pairing on lossy pipelined connections.
    pub sizes: SizeModels,
}

impl Shared {
    /// State for the connections of one worker, parsed under `cfg`.
    pub fn new(cfg: ParserConfig) -> Self {
        Shared {
            cfg,
            ..Shared::default()
        }
    }

    /// Bytes the worker's connections hold charged to the memory budget now.
    pub fn budget_used(&self) -> u64 {
        self.stats.budget_used_bytes
    }
}

/// The application layer of one TCP connection.
#[derive(Debug)]
pub struct HttpSession {
    from_start: bool,
    scope: u64,
    proto: Proto,
}

fn is_tls_record(d: &[u8]) -> bool {
    // ContentType handshake/alert/appdata, legacy version 3.x.
    d.len() >= 3 && matches!(d[0], 0x14..=0x17) && d[1] == 3 && d[2] <= 4
}

/// Whether a line contains ` HTTP/1.` or ends in `HTTP/1.x` (case-insensitive).
fn contains_http1_version(line: &[u8]) -> bool {
    line.windows(7).any(|w| w.eq_ignore_ascii_case(b"HTTP/1."))
}

fn is_preface_start(d: &[u8]) -> bool {
    let n = d.len().min(PREFACE.len());
    n >= 3 && d[..n] == PREFACE[..n]
}

impl HttpSession {
    /// A session. `from_start`: the connection's handshake was captured, so its first payload
    /// bytes are the first bytes of the application protocol. `scope` identifies the server
    /// (e.g. a hash of its address) for what connections learn from each other. Limits and
    /// counters are the worker's, in the [`Shared`] every call takes.
    pub fn new(from_start: bool, scope: u64) -> Self {
        HttpSession {
            from_start,
            scope,
            proto: Proto::Detect(None),
        }
    }

    /// The protocol detected so far.
    pub fn protocol(&self) -> AppProtocol {
        match &self.proto {
            Proto::Detect(_) => AppProtocol::Undetected,
            Proto::Http1(_) => AppProtocol::Http1,
            Proto::Http2(_) => AppProtocol::Http2,
            Proto::Opaque(p) => *p,
        }
    }

    /// Decides the protocol from the first bytes of `dir`; `None` while they could still be the
    /// start of something recognisable and `wait` allows holding them (not when the memory
    /// budget refused to).
    fn decide(
        &mut self,
        dir: Direction,
        data: &[u8],
        wait: bool,
        shared: &mut Shared,
    ) -> Option<Proto> {
        let cfg = shared.cfg;
        let first_line = data.split(|&b| b == b'\n').next().unwrap_or(data);
        let line_complete = first_line.len() < data.len();
        let h1 = || {
            Some(Proto::Http1(Box::new(Http1Conn::new(
                cfg,
                self.from_start,
                self.scope,
            ))))
        };
        match dir {
            Direction::ToServer if is_preface_start(data) => {
                if wait && data.len() < PREFACE.len().min(8) {
                    return None;
                }
                return Some(Proto::Http2(Box::new(Http2Conn::new(cfg))));
            }
            Direction::ToServer if looks_like_request(data) => return h1(),
            Direction::ToClient if looks_like_response(data) && data.len() >= 5 => return h1(),
            _ => {}
        }
        if is_tls_record(data) {
            return Some(Proto::Opaque(AppProtocol::Tls));
        }
        if looks_like_frames(data) {
            return Some(Proto::Http2(Box::new(Http2Conn::midstream(cfg))));
        }
        // A request line too odd for the quick check but ending in an HTTP/1 version
        // (`OPTIONSHTTP/1.1`, a target with spaces): the HTTP/1 parser copes.
        if line_complete && contains_http1_version(first_line) {
            return h1();
        }
        // Too few bytes to tell yet (one byte per segment is a known evasion).
        let plausible = data
            .iter()
            .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\r');
        if wait && !line_complete && plausible && data.len() < DETECT_MAX {
            return None;
        }
        if !self.from_start {
            return Some(Proto::Http1(Box::new(Http1Conn::new(
                cfg, false, self.scope,
            ))));
        }
        shared.stats.unknown_protocol += 1;
        Some(Proto::Opaque(AppProtocol::Unknown))
    }

    /// Feeds bytes while undecided: keeps them until the protocol is known, then replays what
    /// both directions held.
    fn detect(
        &mut self,
        dir: Direction,
        data: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        shared: &mut Shared,
    ) {
        let Proto::Detect(held) = &mut self.proto else {
            return;
        };
        let slot = held.as_mut().and_then(|h| h[dir as usize].take());
        let (bytes, first_meta) = match slot {
            Some((mut b, m)) => {
                budget::release(&mut shared.stats, b.capacity());
                b.extend_from_slice(data);
                (b, m)
            }
            None => (data.to_vec(), meta),
        };
        let p = match self.decide(dir, &bytes, true, shared) {
            Some(p) => p,
            None => {
                let limit = shared.cfg.memory_budget_bytes as u64;
                if budget::charge(&mut shared.stats, limit, bytes.capacity(), bytes.len()) {
                    if let Proto::Detect(held) = &mut self.proto {
                        held.get_or_insert_with(Box::default)[dir as usize] =
                            Some((bytes, first_meta));
                    }
                    return;
                }
                // The budget cannot hold them: decide with what there is.
                match self.decide(dir, &bytes, false, shared) {
                    Some(p) => p,
                    None => Proto::Opaque(AppProtocol::Unknown),
                }
            }
        };
        let other = match &mut self.proto {
            Proto::Detect(Some(held)) => held[dir.flip() as usize].take(),
            _ => None,
        };
        if let Some((b, _)) = &other {
            budget::release(&mut shared.stats, b.capacity());
        }
        self.proto = p;
        // The other direction's held bytes came first in capture order.
        if let Some((b, m)) = other {
            self.on_data(dir.flip(), &b, m, out, shared);
        }
        self.on_data(dir, &bytes, first_meta, out, shared);
    }

    /// Feeds in-order bytes of one direction; completed exchanges are appended to `out`.
    pub fn on_data(
        &mut self,
        dir: Direction,
        data: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        shared: &mut Shared,
    ) {
        if data.is_empty() {
            return;
        }
        if let Proto::Detect(_) = self.proto {
            return self.detect(dir, data, meta, out, shared);
        }
        match &mut self.proto {
            Proto::Detect(_) => {}
            Proto::Opaque(_) => shared.stats.opaque_bytes += data.len() as u64,
            Proto::Http2(h2) => h2.on_data(dir, data, meta, out, &mut shared.stats),
            Proto::Http1(h1) => {
                let tr = h1.on_data(dir, data, meta, out, &mut shared.stats, &mut shared.sizes);
                if tr != Transition::Stay {
                    // HTTP/1 ends on this connection: what it held goes back to the budget.
                    h1.release_all(&mut shared.stats);
                }
                match tr {
                    Transition::Stay => {}
                    Transition::Opaque => self.proto = Proto::Opaque(AppProtocol::Tunnel),
                    Transition::Tunnel {
                        client_bytes,
                        server_rest,
                    } => {
                        // Whatever runs inside the tunnel starts now: detect it afresh.
                        shared.stats.tunnels += 1;
                        self.from_start = true;
                        self.proto = Proto::Detect(None);
                        if !client_bytes.is_empty() {
                            let m = ChunkMeta {
                                peer_ack: None,
                                ..meta
                            };
                            self.on_data(Direction::ToServer, &client_bytes, m, out, shared);
                        }
                        if let Some(rest) = data.get(server_rest..).filter(|r| !r.is_empty()) {
                            let m = ChunkMeta {
                                offset: meta.offset + server_rest as u64,
                                ..meta
                            };
                            self.on_data(dir, rest, m, out, shared);
                        }
                    }
                    Transition::H2c {
                        request,
                        client_bytes,
                        server_rest,
                    } => {
                        let mut h2 = Box::new(Http2Conn::upgraded(shared.cfg, *request));
                        if !client_bytes.is_empty() {
                            let m = ChunkMeta {
                                peer_ack: None,
                                ..meta
                            };
                            let stats = &mut shared.stats;
                            h2.on_data(Direction::ToServer, &client_bytes, m, out, stats);
                        }
                        if let Some(rest) = data.get(server_rest..).filter(|r| !r.is_empty()) {
                            let m = ChunkMeta {
                                offset: meta.offset + server_rest as u64,
                                ..meta
                            };
                            h2.on_data(dir, rest, m, out, &mut shared.stats);
                        }
                        self.proto = Proto::Http2(h2);
                    }
                }
            }
        }
    }

    /// `len` bytes of `dir` were lost by the capture.
    pub fn on_gap(
        &mut self,
        dir: Direction,
        len: u64,
        out: &mut Vec<Exchange>,
        shared: &mut Shared,
    ) {
        match &mut self.proto {
            // Lost the first bytes: whatever follows is a midstream pickup.
            Proto::Detect(_) => {
                self.from_start = false;
                shared.stats.gap_bytes += len;
            }
            Proto::Opaque(_) => shared.stats.gap_bytes += len,
            Proto::Http1(h1) => h1.on_gap(dir, len, out, &mut shared.stats, &mut shared.sizes),
            Proto::Http2(h2) => {
                shared.stats.gap_bytes += len;
                h2.on_gap(dir, len, &mut shared.stats)
            }
        }
    }

    /// The connection ended. Gives back to the worker's memory budget everything the
    /// connection held charged: a session must end here before it is dropped, or its charges
    /// stay counted against the budget of the [`Shared`] that outlives it.
    pub fn on_close(&mut self, out: &mut Vec<Exchange>, shared: &mut Shared) {
        match &mut self.proto {
            Proto::Http1(h1) => h1.on_close(out, &mut shared.stats, &mut shared.sizes),
            Proto::Http2(h2) => h2.on_close(out, &mut shared.stats),
            Proto::Opaque(_) => {}
            Proto::Detect(held) => {
                // Decide with what there is (a connection that only ever sent a few bytes).
                let Some(held) = held.take().map(|h| *h) else {
                    return;
                };
                for (b, _) in held.iter().flatten() {
                    budget::release(&mut shared.stats, b.capacity());
                }
                self.from_start = false;
                for (i, h) in held.into_iter().enumerate() {
                    if let Some((b, m)) = h {
                        let dir = if i == 0 {
                            Direction::ToServer
                        } else {
                            Direction::ToClient
                        };
                        if let Some(p) = self.decide(dir, &b, true, shared) {
                            self.proto = p;
                            self.on_data(dir, &b, m, out, shared);
                        }
                    }
                }
                if let Proto::Http1(_) | Proto::Http2(_) = self.proto {
                    self.on_close(out, shared);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        script: &[(Direction, &[u8])],
        from_start: bool,
    ) -> (Vec<Exchange>, HttpSession, Shared) {
        let mut s = HttpSession::new(from_start, 0);
        let mut shared = Shared::new(ParserConfig::default());
        let mut out = Vec::new();
        let mut off = [0u64; 2];
        for (dir, data) in script {
            let i = *dir as usize;
            let meta = ChunkMeta {
                ts_us: 0,
                offset: off[i],
                peer_ack: Some(off[1 - i]),
            };
            s.on_data(*dir, data, meta, &mut out, &mut shared);
            off[i] += data.len() as u64;
        }
        s.on_close(&mut out, &mut shared);
        // Whatever path the connection took, it gave back all it had charged.
        assert_eq!(shared.budget_used(), 0);
        (out, s, shared)
    }

    use Direction::{ToClient as C, ToServer as S};

    #[test]
    fn one_byte_segments_are_detected() {
        let req = b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut script: Vec<(Direction, &[u8])> = req.chunks(1).map(|c| (S, c)).collect();
        script.push((C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        let (out, s, _) = run(&script, true);
        assert_eq!(s.protocol(), AppProtocol::Http1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request.target, "/slow");
    }

    #[test]
    fn http_inside_a_connect_tunnel_is_parsed_and_tls_is_not() {
        let (out, _, shared) = run(
            &[
                (
                    S,
                    b"CONNECT api.internal:80 HTTP/1.1\r\nHost: api.internal:80\r\n\r\n",
                ),
                (C, b"HTTP/1.1 200 Connection established\r\n\r\n"),
                (S, b"GE"),
                (S, b"T /inner HTTP/1.1\r\nHost: api.internal\r\n\r\n"),
                (C, b"HTTP/1.1 204 No Content\r\n\r\n"),
            ],
            true,
        );
        let got: Vec<_> = out
            .iter()
            .map(|e| {
                (
                    e.request.method.as_str(),
                    e.response.as_ref().map(|r| r.status),
                )
            })
            .collect();
        assert_eq!(got, [("CONNECT", Some(200)), ("GET", Some(204))]);
        assert_eq!(shared.stats.tunnels, 1);

        let (out, s, _) = run(
            &[
                (S, b"CONNECT bank:443 HTTP/1.1\r\n\r\n"),
                (C, b"HTTP/1.1 200 OK\r\n\r\n"),
                (S, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            ],
            true,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(s.protocol(), AppProtocol::Tls);
    }

    #[test]
    fn a_session_is_a_few_words_until_it_carries_something() {
        // A flow table holds one per connection (issue #9: a million half-open connections).
        assert!(std::mem::size_of::<HttpSession>() <= 32);
        let mut shared = Shared::new(ParserConfig::default());
        let mut s = HttpSession::new(true, 0);
        let meta = ChunkMeta::default();
        s.on_data(S, b"GE", meta, &mut Vec::new(), &mut shared);
        assert_eq!(s.protocol(), AppProtocol::Undetected);
        s.on_data(
            S,
            b"T / HTTP/1.1\r\n\r\n",
            meta,
            &mut Vec::new(),
            &mut shared,
        );
        assert_eq!(s.protocol(), AppProtocol::Http1);
        assert_eq!(shared.stats.http1_requests, 1);
    }

    fn at(offset: usize) -> ChunkMeta {
        ChunkMeta {
            ts_us: 0,
            offset: offset as u64,
            peer_ack: None,
        }
    }

    /// Issue #9: many connections each holding an unfinished large head cannot together take
    /// more than the worker's budget; what does not fit is refused and counted, and once they
    /// are gone every byte is given back and ordinary traffic parses as before.
    #[test]
    fn unfinished_heads_of_many_connections_share_one_budget() {
        const BUDGET: usize = 64 * 1024;
        let cfg = ParserConfig {
            memory_budget_bytes: BUDGET,
            ..ParserConfig::default()
        };
        let mut shared = Shared::new(cfg);
        let mut out = Vec::new();
        let head = format!(
            "GET /slow HTTP/1.1\r\nHost: a\r\nX-Pad: {}",
            "p".repeat(2000)
        );
        let mut conns: Vec<HttpSession> = (0..100).map(|i| HttpSession::new(true, i)).collect();
        for c in &mut conns {
            c.on_data(S, head.as_bytes(), at(0), &mut out, &mut shared);
            assert!(shared.budget_used() <= BUDGET as u64);
        }
        // The heads that fit are gathered; the others were refused.
        let refused = shared.stats.budget_refusals;
        assert!(refused >= 60, "{refused} refusals");
        assert!(shared.stats.budget_dropped_bytes >= 60 * 2000);
        assert!(shared.budget_used() > BUDGET as u64 / 2);
        // More header bytes trickle in: gathered heads grow until the budget is spent.
        for round in 0..20 {
            for c in &mut conns {
                let off = head.len() + round * 1000;
                c.on_data(S, &[b'q'; 1000], at(off), &mut out, &mut shared);
                assert!(shared.budget_used() <= BUDGET as u64);
            }
        }
        assert!(shared.stats.budget_refusals > refused);
        assert!(shared.stats.budget_peak_bytes <= BUDGET as u64);
        assert!(out.iter().all(|e| e.response.is_none()));
        for mut c in conns.drain(..) {
            c.on_close(&mut out, &mut shared);
        }
        assert_eq!(shared.budget_used(), 0);
        // An ordinary exchange on a fresh connection, its head split across segments.
        out.clear();
        let mut c = HttpSession::new(true, 7);
        let req = b"POST /after HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        c.on_data(S, &req[..10], at(0), &mut out, &mut shared);
        c.on_data(S, &req[10..], at(10), &mut out, &mut shared);
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        c.on_data(C, resp, at(0), &mut out, &mut shared);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request.target, "/after");
        assert_eq!(out[0].request.body.prefix, b"hello");
        assert_eq!(out[0].response.as_ref().map(|r| r.status), Some(200));
        c.on_close(&mut out, &mut shared);
        assert_eq!(shared.budget_used(), 0);
    }

    /// The same with HTTP/2: streams, header blocks and body prefixes of many connections.
    #[test]
    fn h2_streams_of_many_connections_share_one_budget() {
        const BUDGET: usize = 96 * 1024;
        let cfg = ParserConfig {
            memory_budget_bytes: BUDGET,
            ..ParserConfig::default()
        };
        let mut shared = Shared::new(cfg);
        let mut out = Vec::new();
        let frame = |kind: u8, flags: u8, sid: u32, payload: &[u8]| {
            let l = (payload.len() as u32).to_be_bytes();
            let mut f = vec![l[1], l[2], l[3], kind, flags];
            f.extend_from_slice(&sid.to_be_bytes());
            f.extend_from_slice(payload);
            f
        };
        // A request head (literal fields without indexing) with a large field, then a body
        // that never ends: each stream holds its head and a body prefix.
        let lit = |n: &str, v: &str| {
            let mut b = vec![0u8, n.len() as u8];
            b.extend_from_slice(n.as_bytes());
            b.push(0x7f);
            let mut l = v.len() - 127;
            while l >= 128 {
                b.push((l % 128) as u8 | 0x80);
                l /= 128;
            }
            b.push(l as u8);
            b.extend_from_slice(v.as_bytes());
            b
        };
        let mut block = vec![0x83, 0x86, 0x84]; // :method POST, :scheme http, :path /
        block.extend(lit("x-pad", &"v".repeat(1500)));
        let mut conns: Vec<HttpSession> = (0..40).map(|i| HttpSession::new(true, i)).collect();
        for c in &mut conns {
            let mut bytes = PREFACE.to_vec();
            bytes.extend(frame(4, 0, 0, &[]));
            for sid in [1u32, 3, 5] {
                bytes.extend(frame(1, 0x4, sid, &block));
                bytes.extend(frame(0, 0, sid, &[b'b'; 1000]));
            }
            c.on_data(S, &bytes, at(0), &mut out, &mut shared);
            assert!(shared.budget_used() <= BUDGET as u64);
        }
        assert!(shared.stats.budget_refusals > 0);
        assert!(shared.stats.budget_peak_bytes <= BUDGET as u64);
        for mut c in conns.drain(..) {
            c.on_close(&mut out, &mut shared);
        }
        assert_eq!(shared.budget_used(), 0);
        // Streams the budget could hold were emitted at close with their request.
        assert!(out.iter().any(|e| e.request.method == "POST"));
    }

    #[test]
    fn h2c_upgrade_and_websocket_hand_their_charges_over() {
        let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
        let mut client = PREFACE.to_vec();
        client.extend_from_slice(&settings);
        let mut server = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n".to_vec();
        server.extend_from_slice(&settings);
        // HEADERS :status 200 with END_STREAM on stream 1.
        server.extend_from_slice(&[0, 0, 1, 1, 0x5, 0, 0, 0, 1, 0x88]);
        let (out, s, _) = run(
            &[
                (
                    S,
                    b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
                ),
                (S, &client),
                (C, &server),
            ],
            true,
        );
        assert_eq!(s.protocol(), AppProtocol::Http2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request.target, "/up");
        assert_eq!(out[0].response.as_ref().map(|r| r.status), Some(200));
        let (_, s, _) = run(
            &[
                (
                    S,
                    b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                ),
                (S, b"\x81\x05hello"),
                (
                    C,
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                ),
            ],
            true,
        );
        assert_eq!(s.protocol(), AppProtocol::Tunnel);
    }

    #[test]
    fn odd_request_lines_with_a_version_are_http1() {
        let (_, s, _) = run(&[(S, b"OPTIONSHTTP/1.1\r\nHost: x\r\n\r\n")], true);
        assert_eq!(s.protocol(), AppProtocol::Http1);
        let (_, s, _) = run(&[(S, b"SSH-2.0-OpenSSH_9.2\r\n")], true);
        assert_eq!(s.protocol(), AppProtocol::Unknown);
    }
}
