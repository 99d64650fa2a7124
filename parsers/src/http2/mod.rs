//! HTTP/2 (RFC 9113) with passive HPACK (RFC 7541). PLACEHOLDER: being written in this session;
//! the public contract below is what `session.rs` calls.
use crate::{ChunkMeta, Direction, Exchange, ParserConfig, ParserStats, Request};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct H2Stats {
    /// Frames parsed.
    pub frames: u64,
}

/// One HTTP/2 connection, both directions.
#[derive(Debug)]
pub struct Http2Conn {
    _cfg: ParserConfig,
}

impl Http2Conn {
    /// A connection seen from its start (client preface expected on the to-server side).
    pub fn new(cfg: ParserConfig) -> Self {
        Http2Conn { _cfg: cfg }
    }
    /// A connection picked up midstream (no preface; frame boundaries must be found).
    pub fn midstream(cfg: ParserConfig) -> Self {
        Http2Conn { _cfg: cfg }
    }
    /// A connection upgraded from HTTP/1.1 by `Upgrade: h2c`; `request` becomes stream 1.
    pub fn upgraded(cfg: ParserConfig, _request: Request) -> Self {
        Http2Conn { _cfg: cfg }
    }
    /// Feeds reassembled bytes of one direction.
    pub fn on_data(
        &mut self,
        _dir: Direction,
        _data: &[u8],
        _meta: ChunkMeta,
        _out: &mut Vec<Exchange>,
        _stats: &mut ParserStats,
    ) {
    }
    /// `len` bytes of one direction were lost.
    pub fn on_gap(&mut self, _dir: Direction, _len: u64, _stats: &mut ParserStats) {}
    /// The connection ended: emit what is pending.
    pub fn on_close(&mut self, _out: &mut Vec<Exchange>, _stats: &mut ParserStats) {}
}

/// Whether `data` plausibly starts at an HTTP/2 frame boundary (midstream detection).
pub fn looks_like_frames(_data: &[u8]) -> bool {
    false
}
