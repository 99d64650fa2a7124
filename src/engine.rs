//! The application side of the pipeline: per-connection HTTP sessions, observations, sinks.
//!
//! [`Engine`] is the [`FlowHandler`] plugged into the capture crate's flow table: it keeps one
//! [`HttpSession`] per connection, turns each finished exchange into an [`Observation`], and
//! hands the serialised event to every sink. It also keeps the counters that explain where
//! traffic went (flows by detected protocol, exchanges with and without responses).
use crate::observation::Observation;
use crate::redact::{Redaction, Redactor};
use crate::sink::{Event, EventKind, Sink};
use apitap_capture::flow::{ChunkInfo, CloseReason, Direction, FlowHandler, FlowInfo};
use apitap_parsers::http1::{looks_like_request, looks_like_response};
use apitap_parsers::http2::PREFACE;
use apitap_parsers::session::{HttpSession, Shared};
use apitap_parsers::{ChunkMeta, Exchange, ParserConfig, ParserStats, Protocol};
use serde::Serialize;
use std::collections::BTreeMap;

/// Engine settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineConfig {
    /// Parser limits.
    pub parser: ParserConfig,
    /// What to do with credentials.
    pub redaction: Redaction,
}

/// Engine counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineStats {
    /// Exchanges emitted.
    pub exchanges: u64,
    /// HTTP/1.x exchanges.
    pub exchanges_http1: u64,
    /// HTTP/2 exchanges.
    pub exchanges_http2: u64,
    /// Exchanges emitted without a response.
    pub without_response: u64,
    /// Exchanges that lost bytes to a capture gap.
    pub with_gap: u64,
    /// Events that every sink accepted.
    pub events_written: u64,
    /// Events a sink failed to take.
    pub sink_errors: u64,
    /// Connections by what they turned out to carry.
    pub flows_by_protocol: BTreeMap<&'static str, u64>,
}

/// Sessions in, events out.
pub struct Engine {
    cfg: EngineConfig,
    sinks: Vec<Box<dyn Sink>>,
    scratch: Vec<Exchange>,
    json: Vec<u8>,
    key: String,
    /// Counters.
    pub stats: EngineStats,
    /// Parser counters of closed connections.
    pub parser: ParserStats,
    sink_error_logged: bool,
    shared: Shared,
    redactor: Redactor,
}

fn dir(d: Direction) -> apitap_parsers::Direction {
    match d {
        Direction::ToServer => apitap_parsers::Direction::ToServer,
        Direction::ToClient => apitap_parsers::Direction::ToClient,
    }
}

impl Engine {
    /// An engine writing to `sinks`.
    pub fn new(cfg: EngineConfig, sinks: Vec<Box<dyn Sink>>) -> Self {
        Engine {
            cfg,
            sinks,
            scratch: Vec::new(),
            json: Vec::with_capacity(4096),
            key: String::new(),
            stats: EngineStats::default(),
            parser: ParserStats::default(),
            sink_error_logged: false,
            shared: Shared::default(),
            redactor: Redactor::new(cfg.redaction),
        }
    }

    fn emit(&mut self, flow: &FlowInfo) {
        let mut exchanges = std::mem::take(&mut self.scratch);
        for ex in exchanges.drain(..) {
            self.stats.exchanges += 1;
            match ex.protocol {
                Protocol::Http1 => self.stats.exchanges_http1 += 1,
                Protocol::Http2 => self.stats.exchanges_http2 += 1,
            }
            if ex.response.is_none() {
                self.stats.without_response += 1;
            }
            if ex.gap {
                self.stats.with_gap += 1;
            }
            self.json.clear();
            let obs = Observation::new(&ex, flow, &mut self.redactor);
            if serde_json::to_writer(&mut self.json, &obs).is_err() {
                continue;
            }
            self.key.clear();
            use std::fmt::Write;
            let _ = write!(self.key, "{}", flow.id);
            let ev = Event {
                kind: EventKind::Exchange,
                key: &self.key,
                json: &self.json,
            };
            let mut ok = true;
            for s in &mut self.sinks {
                if let Err(e) = s.write(&ev) {
                    ok = false;
                    self.stats.sink_errors += 1;
                    if !self.sink_error_logged {
                        eprintln!("apitap: {e} (further errors are counted, not logged)");
                        self.sink_error_logged = true;
                    }
                }
            }
            if ok {
                self.stats.events_written += 1;
            }
        }
        self.scratch = exchanges;
    }

    /// Flushes every sink; returns the first failure.
    pub fn flush(&mut self) -> Result<(), crate::sink::SinkError> {
        let mut first = None;
        for s in &mut self.sinks {
            if let Err(e) = s.flush() {
                self.stats.sink_errors += 1;
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl FlowHandler for Engine {
    type State = HttpSession;

    fn open(&mut self, flow: &FlowInfo) -> HttpSession {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        flow.server.hash(&mut h);
        flow.vlan.hash(&mut h);
        HttpSession::new(self.cfg.parser, flow.handshake_seen, h.finish())
    }

    fn classify(&self, p: &[u8]) -> Option<bool> {
        if p.starts_with(&PREFACE[..4]) || looks_like_request(p) {
            Some(true)
        } else if p.len() >= 8 && looks_like_response(p) {
            Some(false)
        } else {
            None
        }
    }

    fn data(
        &mut self,
        st: &mut HttpSession,
        flow: &FlowInfo,
        d: Direction,
        data: &[u8],
        info: ChunkInfo,
    ) {
        let meta = ChunkMeta {
            ts_us: info.ts_us,
            offset: info.offset,
            peer_ack: info.peer_ack,
        };
        st.on_data(dir(d), data, meta, &mut self.scratch, &mut self.shared);
        if !self.scratch.is_empty() {
            self.emit(flow);
        }
    }

    fn gap(&mut self, st: &mut HttpSession, flow: &FlowInfo, d: Direction, len: u64) {
        st.on_gap(dir(d), len, &mut self.scratch, &mut self.shared);
        if !self.scratch.is_empty() {
            self.emit(flow);
        }
    }

    fn close(&mut self, mut st: HttpSession, flow: &FlowInfo, _reason: CloseReason) {
        st.on_close(&mut self.scratch, &mut self.shared);
        if !self.scratch.is_empty() {
            self.emit(flow);
        }
        self.parser.add(&st.stats);
        *self
            .stats
            .flows_by_protocol
            .entry(st.protocol().as_str())
            .or_default() += 1;
    }
}
