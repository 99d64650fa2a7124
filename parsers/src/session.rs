//! One connection's application protocol: detection and dispatch.
//!
//! Owns the decision "what is this connection speaking" and the handovers between parsers:
//! - the HTTP/2 client preface on the client side (RFC 9113 §3.4, prior knowledge) → HTTP/2;
//! - a request line or a status line (RFC 9112 §3, §4) → HTTP/1.x;
//! - a `101` answering `Upgrade: h2c` (RFC 9113 §3.2) → HTTP/2 from the next byte;
//! - a TLS record header (RFC 8446 §5.1) → encrypted, counted, ignored;
//! - a connection picked up midstream whose bytes validate as HTTP/2 frames → HTTP/2;
//! - otherwise, midstream: HTTP/1 looking for a message start; from the start: unknown.
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

#[derive(Debug)]
enum Proto {
    Detect,
    Http1(Box<Http1Conn>),
    Http2(Box<Http2Conn>),
    Opaque(AppProtocol),
}

/// What the connections of one worker learn from each other.
#[derive(Debug, Default)]
pub struct Shared {
    /// Response sizes per (server, method, target), for pairing on lossy pipelined connections.
    pub sizes: SizeModels,
}

/// The application layer of one TCP connection.
#[derive(Debug)]
pub struct HttpSession {
    cfg: ParserConfig,
    from_start: bool,
    scope: u64,
    proto: Proto,
    /// This connection's counters.
    pub stats: ParserStats,
}

fn is_tls_record(d: &[u8]) -> bool {
    // ContentType handshake/alert/appdata, legacy version 3.x.
    d.len() >= 3 && matches!(d[0], 0x14..=0x17) && d[1] == 3 && d[2] <= 4
}

fn is_preface_start(d: &[u8]) -> bool {
    let n = d.len().min(PREFACE.len());
    n >= 3 && d[..n] == PREFACE[..n]
}

impl HttpSession {
    /// A session. `from_start`: the connection's handshake was captured, so its first payload
    /// bytes are the first bytes of the application protocol. `scope` identifies the server
    /// (e.g. a hash of its address) for what connections learn from each other.
    pub fn new(cfg: ParserConfig, from_start: bool, scope: u64) -> Self {
        HttpSession {
            cfg,
            from_start,
            scope,
            proto: Proto::Detect,
            stats: ParserStats::default(),
        }
    }

    /// The protocol detected so far.
    pub fn protocol(&self) -> AppProtocol {
        match &self.proto {
            Proto::Detect => AppProtocol::Undetected,
            Proto::Http1(_) => AppProtocol::Http1,
            Proto::Http2(_) => AppProtocol::Http2,
            Proto::Opaque(p) => *p,
        }
    }

    fn detect(&mut self, dir: Direction, data: &[u8]) {
        let p = match dir {
            Direction::ToServer if is_preface_start(data) => {
                Proto::Http2(Box::new(Http2Conn::new(self.cfg)))
            }
            Direction::ToServer if looks_like_request(data) => Proto::Http1(Box::new(
                Http1Conn::new(self.cfg, self.from_start, self.scope),
            )),
            Direction::ToClient if looks_like_response(data) && data.len() >= 5 => Proto::Http1(
                Box::new(Http1Conn::new(self.cfg, self.from_start, self.scope)),
            ),
            _ if is_tls_record(data) => Proto::Opaque(AppProtocol::Tls),
            _ if looks_like_frames(data) => Proto::Http2(Box::new(Http2Conn::midstream(self.cfg))),
            _ if !self.from_start => {
                Proto::Http1(Box::new(Http1Conn::new(self.cfg, false, self.scope)))
            }
            _ => {
                self.stats.unknown_protocol += 1;
                Proto::Opaque(AppProtocol::Unknown)
            }
        };
        self.proto = p;
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
        if let Proto::Detect = self.proto {
            self.detect(dir, data);
        }
        match &mut self.proto {
            Proto::Detect => {}
            Proto::Opaque(_) => self.stats.opaque_bytes += data.len() as u64,
            Proto::Http2(h2) => h2.on_data(dir, data, meta, out, &mut self.stats),
            Proto::Http1(h1) => {
                match h1.on_data(dir, data, meta, out, &mut self.stats, &mut shared.sizes) {
                    Transition::Stay => {}
                    Transition::Opaque => self.proto = Proto::Opaque(AppProtocol::Tunnel),
                    Transition::H2c {
                        request,
                        client_bytes,
                        server_rest,
                    } => {
                        let mut h2 = Box::new(Http2Conn::upgraded(self.cfg, *request));
                        if !client_bytes.is_empty() {
                            let m = ChunkMeta {
                                peer_ack: None,
                                ..meta
                            };
                            h2.on_data(Direction::ToServer, &client_bytes, m, out, &mut self.stats);
                        }
                        if let Some(rest) = data.get(server_rest..).filter(|r| !r.is_empty()) {
                            let m = ChunkMeta {
                                offset: meta.offset + server_rest as u64,
                                ..meta
                            };
                            h2.on_data(dir, rest, m, out, &mut self.stats);
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
            Proto::Detect => {
                self.from_start = false;
                self.stats.gap_bytes += len;
            }
            Proto::Opaque(_) => self.stats.gap_bytes += len,
            Proto::Http1(h1) => h1.on_gap(dir, len, out, &mut self.stats, &mut shared.sizes),
            Proto::Http2(h2) => {
                self.stats.gap_bytes += len;
                h2.on_gap(dir, len, &mut self.stats)
            }
        }
    }

    /// The connection ended.
    pub fn on_close(&mut self, out: &mut Vec<Exchange>, shared: &mut Shared) {
        match &mut self.proto {
            Proto::Http1(h1) => h1.on_close(out, &mut self.stats, &mut shared.sizes),
            Proto::Http2(h2) => h2.on_close(out, &mut self.stats),
            Proto::Detect | Proto::Opaque(_) => {}
        }
    }
}
