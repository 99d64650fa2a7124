//! The application side of the pipeline: per-connection HTTP sessions, observations, sinks.
//!
//! [`Engine`] is the [`FlowHandler`] plugged into the capture crate's flow table: it keeps one
//! [`HttpSession`] per connection, turns each finished exchange into an [`Observation`], and
//! hands the serialised event to every sink. It also keeps the counters that explain where
//! traffic went (flows by detected protocol, exchanges with and without responses).
use crate::inspect::{InspectConfig, InspectStats, Inspector};
use crate::inventory::{Inventory, InventoryConfig, InventoryStats};
use crate::observation::Observation;
use crate::redact::{Redaction, Redactor};
use crate::sink::{Event, EventKind, Sink};
use apitap_capture::flow::{ChunkInfo, CloseReason, Direction, FlowHandler, FlowInfo};
use apitap_parsers::http1::{looks_like_request, looks_like_response};
use apitap_parsers::http2::PREFACE;
use apitap_parsers::session::{HttpSession, Shared};
use apitap_parsers::{ChunkMeta, Exchange, ParserConfig, ParserStats, Protocol};
use crossbeam_channel::Sender;
use serde::Serialize;
use std::collections::BTreeMap;

/// Engine settings.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Parser limits.
    pub parser: ParserConfig,
    /// What to do with credentials and sensitive values.
    pub redaction: Redaction,
    /// Key of `hash` redaction.
    pub salt: Vec<u8>,
    /// Endpoint, auth, schema inference and the inventory; `None` turns them off (sensitive
    /// values are still redacted).
    pub inspect: Option<InspectConfig>,
    /// Inventory limits.
    pub inventory: InventoryConfig,
    /// Live capture: measure capture-to-emission latency against the wall clock.
    pub live: bool,
    /// Risk findings (policy, owners, specs); each engine works on its own fork.
    pub findings: Option<std::sync::Arc<crate::findings::Findings>>,
    /// Event format: native, OCSF or ECS.
    pub format: crate::formats::Format,
}

/// Upper bounds of the processing-latency buckets, ms (Prometheus `le`).
pub const LATENCY_BUCKETS_MS: [u64; 10] = [1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 60_000];

/// Engine counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineStats {
    /// Exchanges emitted (parsed by this worker).
    pub exchanges: u64,
    /// Exchanges whose inference and output this worker did (with several workers, some
    /// parsed by another).
    pub finished: u64,
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
    /// Inventory events emitted.
    pub inventory_events: u64,
    /// Finding events emitted.
    pub finding_events: u64,
    /// Live capture: exchanges by capture-to-emission delay ([`LATENCY_BUCKETS_MS`], then +Inf).
    pub processing_latency: [u64; 11],
    /// Sum of those delays, µs.
    pub processing_latency_sum_us: u64,
    /// Connections by what they turned out to carry.
    pub flows_by_protocol: BTreeMap<&'static str, u64>,
}

impl EngineStats {
    /// Adds another engine's counters.
    pub fn add(&mut self, o: &EngineStats) {
        self.exchanges += o.exchanges;
        self.finished += o.finished;
        self.exchanges_http1 += o.exchanges_http1;
        self.exchanges_http2 += o.exchanges_http2;
        self.without_response += o.without_response;
        self.with_gap += o.with_gap;
        self.events_written += o.events_written;
        self.sink_errors += o.sink_errors;
        self.inventory_events += o.inventory_events;
        self.finding_events += o.finding_events;
        for (a, b) in self.processing_latency.iter_mut().zip(o.processing_latency) {
            *a += b;
        }
        self.processing_latency_sum_us += o.processing_latency_sum_us;
        for (k, v) in &o.flows_by_protocol {
            *self.flows_by_protocol.entry(k).or_default() += v;
        }
    }
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
    sink_error_logged: bool,
    shared: Shared,
    redactor: Redactor,
    /// Inference (absent when turned off).
    pub inspector: Option<Inspector>,
    /// This engine's shard of the inventory.
    pub inventory: Inventory,
    server: String,
    announced: crate::run::Announced,
    /// This engine's findings (absent when inference is off).
    pub findings: Option<crate::findings::Findings>,
    converted: Vec<u8>,
    offload: Option<Sender<SharedExchange>>,
    behind: bool,
}

/// An exchange handed from the worker that parsed it to whichever worker finishes it.
pub struct SharedExchange(Exchange, FlowInfo);

/// The parsers' name for a direction of the flow table's (the capture crate and the parsers
/// do not depend on each other).
pub fn dir(d: Direction) -> apitap_parsers::Direction {
    match d {
        Direction::ToServer => apitap_parsers::Direction::ToServer,
        Direction::ToClient => apitap_parsers::Direction::ToClient,
    }
}

/// What the parsers need to know of a chunk of stream bytes the flow table delivers.
pub fn chunk_meta(info: ChunkInfo) -> ChunkMeta {
    ChunkMeta {
        ts_us: info.ts_us,
        offset: info.offset,
        peer_ack: info.peer_ack,
    }
}

impl Engine {
    /// An engine writing to `sinks`.
    pub fn new(cfg: EngineConfig, sinks: Vec<Box<dyn Sink>>) -> Self {
        Engine {
            redactor: Redactor::new(cfg.redaction, &cfg.salt),
            inspector: cfg.inspect.clone().map(Inspector::new),
            inventory: Inventory::new(cfg.inventory),
            server: String::new(),
            announced: crate::run::Announced::new(),
            findings: cfg
                .findings
                .as_ref()
                .filter(|_| cfg.inspect.is_some())
                .map(|f| f.fork()),
            converted: Vec::new(),
            offload: None,
            behind: false,
            shared: Shared::new(cfg.parser),
            cfg,
            sinks,
            scratch: Vec::new(),
            json: Vec::with_capacity(4096),
            key: String::new(),
            stats: EngineStats::default(),
            sink_error_logged: false,
        }
    }

    /// Lets this engine hand exchanges to other workers for inference and output (several
    /// workers only): parsing must stay with the worker that owns the connection, but what
    /// follows does not depend on the connection, so a worker with spare time can take it
    /// over. Exchanges are handed over only while [`Engine::set_behind`] says this worker has
    /// a backlog, and finished here when the queue is full.
    pub fn share_with(&mut self, queue: Option<Sender<SharedExchange>>) {
        self.offload = queue;
        self.behind = false;
    }

    /// Whether this engine's worker has packets waiting. Only then are exchanges shared: a
    /// worker that keeps up writes its connections' exchanges itself, in capture order;
    /// shared ones are written in the order they are finished.
    pub fn set_behind(&mut self, behind: bool) {
        self.behind = behind;
    }

    fn emit(&mut self, flow: &FlowInfo) {
        let mut exchanges = std::mem::take(&mut self.scratch);
        for ex in exchanges.drain(..) {
            self.count(&ex);
            let ex = match &self.offload {
                Some(q) if self.behind => match q.try_send(SharedExchange(ex, *flow)) {
                    Ok(()) => continue,
                    Err(e) => e.into_inner().0,
                },
                _ => ex,
            };
            self.finish(&ex, flow);
        }
        self.scratch = exchanges;
    }

    /// Inference and output of an exchange another worker parsed.
    pub fn finish_shared(&mut self, x: SharedExchange) {
        self.finish(&x.0, &x.1);
    }

    /// Counts a parsed exchange.
    fn count(&mut self, ex: &Exchange) {
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
    }

    /// Inference, the observation and the inventory's record of one exchange.
    fn finish(&mut self, ex: &Exchange, flow: &FlowInfo) {
        self.stats.finished += 1;
        // Measured here, not when parsed: a shared exchange may wait in the queue.
        if self.cfg.live {
            let done = ex.response.as_ref().map_or(ex.request.ts_us, |r| r.ts_us);
            let delay_us = (crate::inventory::now_us() - done).max(0) as u64;
            let ms = delay_us / 1000;
            let i = LATENCY_BUCKETS_MS
                .iter()
                .position(|&b| ms < b)
                .unwrap_or(LATENCY_BUCKETS_MS.len());
            self.stats.processing_latency[i] += 1;
            self.stats.processing_latency_sum_us += delay_us;
        }
        let mut ins = self.inspector.as_mut().map(|i| i.inspect(ex, flow.server));
        if let Some(j) = ins.as_mut().and_then(|i| i.auth.jwt.as_mut()) {
            self.redactor.jwt(j);
        }
        self.json.clear();
        let obs = Observation::new(ex, flow, &mut self.redactor, ins.as_ref());
        obs.write_json(&mut self.json);
        // The derived serde form is the specification of the direct writer.
        #[cfg(test)]
        assert_eq!(
            String::from_utf8_lossy(&self.json),
            serde_json::to_string(&obs).unwrap_or_default()
        );
        drop(obs);
        self.key.clear();
        use std::fmt::Write;
        match &ins {
            Some(i) => {
                let _ = write!(self.key, "{} {} {}", i.host, ex.request.method, i.template);
            }
            None => {
                let _ = write!(self.key, "{}", flow.id);
            }
        }
        self.write(EventKind::Exchange);
        if let Some(ins) = ins {
            self.server.clear();
            let _ = write!(self.server, "{}", flow.server);
            if self.inventory.len() >= self.cfg.inventory.max_endpoints {
                if let Some(i) = &self.inspector {
                    self.inventory.compact(&i.templater);
                }
            }
            let key = crate::inventory::EndpointKey::of(ex, &ins);
            let mut ch = self.inventory.record_under(&key, ex, &self.server, &ins);
            if ch.any() {
                self.first_announcements(&key, &mut ch);
                if let Some(e) = self.inventory.get(&key) {
                    let evs = crate::inventory::events(&key, e, &ch, ex.request.ts_us);
                    for ev in evs {
                        self.json.clear();
                        if serde_json::to_writer(&mut self.json, &ev).is_ok() {
                            self.stats.inventory_events += 1;
                            self.write(EventKind::Inventory);
                        }
                    }
                }
            }
            if let Some(f) = &mut self.findings {
                for ev in f.observe(ex, &ins, &key, flow.server) {
                    // One announcement per (endpoint, rule) across workers.
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    "finding".hash(&mut h);
                    ev.get("id").map(|v| v.to_string()).hash(&mut h);
                    if !self.announced.first(h.finish()) {
                        continue;
                    }
                    self.json.clear();
                    if serde_json::to_writer(&mut self.json, &ev).is_ok() {
                        self.stats.finding_events += 1;
                        self.write(EventKind::Finding);
                    }
                }
            }
        }
    }

    /// Shares the record of announced inventory facts with other engines.
    pub fn with_announced(mut self, a: crate::run::Announced) -> Self {
        self.announced = a;
        self
    }

    /// Keeps only the changes no engine has announced yet.
    fn first_announcements(
        &self,
        key: &crate::inventory::EndpointKey,
        ch: &mut crate::inventory::Changes,
    ) {
        use std::hash::{Hash, Hasher};
        let fact = |tag: &str, extra: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            tag.hash(&mut h);
            extra(&mut h);
            h.finish()
        };
        if ch.discovered && !self.announced.first(fact("d", &|_| {})) {
            ch.discovered = false;
        }
        ch.new_sensitive
            .retain(|f| self.announced.first(fact("s", &|h| f.kind.hash(h))));
        if let Some(before) = &ch.auth_changed {
            if !self.announced.first(fact("a", &|h| before.hash(h))) {
                ch.auth_changed = None;
            }
        }
    }

    /// Writes the event in `self.json` under `self.key` to every sink.
    fn write(&mut self, kind: EventKind) {
        let json: &[u8] = if self.cfg.format == crate::formats::Format::Native {
            &self.json
        } else {
            self.converted.clear();
            if crate::formats::convert_bytes(self.cfg.format, &self.json, &mut self.converted)
                .is_err()
            {
                return;
            }
            &self.converted
        };
        let ev = Event {
            kind,
            key: &self.key,
            json,
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

    /// Inspection counters (empty when inference is off).
    pub fn inspect_stats(&self) -> InspectStats {
        self.inspector
            .as_ref()
            .map(Inspector::stats)
            .unwrap_or_default()
    }

    /// Parser counters of every connection so far, open or closed.
    pub fn parser_stats(&self) -> &ParserStats {
        &self.shared.stats
    }

    /// Inventory limits.
    pub fn inventory_config(&self) -> InventoryConfig {
        self.cfg.inventory
    }

    /// Inventory counters.
    pub fn inventory_stats(&self) -> InventoryStats {
        self.inventory.stats.clone()
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

    /// Writes an event made outside the exchange path (spec drift found on the inventory) to
    /// every sink, in the configured format.
    pub fn emit_event(&mut self, kind: EventKind, key: &str, v: &serde_json::Value) {
        self.key.clear();
        self.key.push_str(key);
        self.json.clear();
        if serde_json::to_writer(&mut self.json, v).is_ok() {
            if kind == EventKind::Finding {
                self.stats.finding_events += 1;
            }
            self.write(kind);
        }
    }

    /// Reopens every sink (SIGHUP); returns the first failure.
    pub fn reopen_sinks(&mut self) -> Result<(), crate::sink::SinkError> {
        let mut first = None;
        for s in &mut self.sinks {
            if let Err(e) = s.reopen() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Ends the run for every sink: waits (boundedly) for remote destinations and reports
    /// what could not be delivered; returns the first failure.
    pub fn close(&mut self) -> Result<(), crate::sink::SinkError> {
        let mut first = None;
        for s in &mut self.sinks {
            if let Err(e) = s.close() {
                self.stats.sink_errors += 1;
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The HTTP session of a new connection. Its parser scope is the server as the sensor sees it
/// (address, VLAN, tunnel scope): what servers behind one scope learn (response sizes) is
/// shared, never across two VPCs that reuse addresses.
pub fn session_for(flow: &FlowInfo) -> HttpSession {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    flow.server.hash(&mut h);
    flow.vlan.hash(&mut h);
    flow.tunnel.map(|t| t.scope).hash(&mut h);
    HttpSession::new(flow.handshake_seen, h.finish())
}

/// Which side sent the first payload of a connection picked up midstream: `Some(true)` for a
/// client (a request line or the HTTP/2 preface), `Some(false)` for a server (a status line).
pub fn classify_first_payload(p: &[u8]) -> Option<bool> {
    if p.starts_with(&PREFACE[..4]) || looks_like_request(p) {
        Some(true)
    } else if p.len() >= 8 && looks_like_response(p) {
        Some(false)
    } else {
        None
    }
}

impl FlowHandler for Engine {
    type State = HttpSession;

    fn open(&mut self, flow: &FlowInfo) -> HttpSession {
        session_for(flow)
    }

    fn classify(&self, p: &[u8]) -> Option<bool> {
        classify_first_payload(p)
    }

    fn data(
        &mut self,
        st: &mut HttpSession,
        flow: &FlowInfo,
        d: Direction,
        data: &[u8],
        info: ChunkInfo,
    ) {
        st.on_data(
            dir(d),
            data,
            chunk_meta(info),
            &mut self.scratch,
            &mut self.shared,
        );
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
        *self
            .stats
            .flows_by_protocol
            .entry(st.protocol().as_str())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Pipeline, PipelineConfig};
    use apitap_capture::source::PacketSource;
    use std::path::{Path, PathBuf};

    fn captures(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                captures(&p, out);
            } else if p
                .extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
            {
                out.push(p);
            }
        }
    }

    /// Every exchange of the bundled captures and of the shared corpus goes through
    /// [`Engine::emit`], which (in test builds) asserts that the direct observation writer
    /// produced exactly the bytes of the derived serde form — under every redaction mode.
    #[test]
    fn direct_observation_writer_matches_serde_on_real_captures() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        captures(&root.join("tests/data"), &mut files);
        captures(&root.join("../shared/corpus"), &mut files);
        files.sort();
        assert!(files.len() >= 8, "no captures found");
        let mut exchanges = 0;
        for (i, f) in files.iter().enumerate() {
            let Ok(mut src) = PacketSource::files(std::slice::from_ref(f)) else {
                continue;
            };
            let redaction = [Redaction::Mask, Redaction::Hash, Redaction::Off][i % 3];
            let engine = EngineConfig {
                inspect: Some(crate::inspect::InspectConfig::default()),
                redaction,
                ..EngineConfig::default()
            };
            let mut p = Pipeline::new(
                PipelineConfig {
                    workers: 1,
                    ..PipelineConfig::default()
                },
                engine,
                Vec::new(),
            );
            let stop = std::sync::atomic::AtomicBool::new(false);
            let _ = p.run_source(&mut src, &stop, |_| {});
            p.end_flows();
            exchanges += p.summary().engine.exchanges;
        }
        assert!(exchanges > 5000, "only {exchanges} exchanges checked");
    }
}
