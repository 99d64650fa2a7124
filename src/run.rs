//! Drivers: read a source, push frames through decoding, the flow table and the engine, and
//! summarise the run.
use crate::engine::{Engine, EngineConfig, EngineStats};
use crate::fanout::SinkThread;
use crate::infer::template::Templater;
use crate::inventory::Inventory;
use crate::sink::{Sink, SinkError, SinkProbe, SinkStats};
use apitap_capture::decode::{DecodeStats, Decoder, TcpSegment};
use apitap_capture::flow::{FlowConfig, FlowKey, FlowStats, FlowTable};
use apitap_capture::source::{CaptureDrops, Event, PacketSource};
use apitap_capture::tunnel::Tunnel;
use apitap_parsers::ParserStats;
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Everything a run counted: written to stderr as a table and with `--stats-json` as JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Frames read.
    pub packets: u64,
    /// Captured bytes read.
    pub bytes: u64,
    /// Capture-clock span between the first and last frame, seconds.
    pub capture_seconds: f64,
    /// Wall-clock time of the run, seconds.
    pub wall_seconds: f64,
    /// Link/network decoding.
    pub decode: DecodeStats,
    /// Flow table and reassembly.
    pub flows: FlowStats,
    /// Application parsers.
    pub parsers: ParserStats,
    /// Exchanges, sinks, flow fates.
    pub engine: EngineStats,
    /// Sensitive-data findings, body decoding, templating.
    pub inspect: crate::inspect::InspectStats,
    /// Endpoint inventory.
    pub inventory: crate::inventory::InventoryStats,
    /// Connections tracked at the time of the summary.
    pub active_flows: u64,
    /// Kernel/interface drops (live capture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_drops: Option<CaptureDrops>,
    /// Delivery counters of the outputs that deliver asynchronously (Kafka), one per output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkStats>,
}

/// Pipeline shape.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Worker threads; 1 runs everything on the capture thread (no hand-off at all).
    pub workers: usize,
    /// Flow table and reassembly limits (per worker).
    pub flows: FlowConfig,
    /// Segments per batch handed to a worker.
    pub batch: usize,
    /// Batches queued per worker before the capture thread waits.
    pub queue_batches: usize,
    /// Tunnels, fragments.
    pub decode: apitap_capture::decode::DecodeConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            flows: FlowConfig::default(),
            batch: 256,
            queue_batches: 32,
            decode: apitap_capture::decode::DecodeConfig::default(),
        }
    }
}

/// The pipeline: decode → flows → reassembly → sessions → inference → sinks.
///
/// With one worker everything runs on the calling thread. With N workers the calling thread
/// decodes each frame (decoding is what finds the flow), and hands the segment — header fields
/// plus a copy of the payload in a batch arena — to the worker that owns the flow, chosen by a
/// symmetric hash so both directions meet. Each worker owns its flow table, parsers, inference
/// and inventory shard; nothing on the hot path is shared or locked. Sinks run on their own
/// thread behind a bounded queue of event batches.
pub struct Pipeline {
    mode: Mode,
    /// Delivery counters of the sinks, which live on the sink thread (or in the engine).
    probes: Vec<Arc<dyn SinkProbe>>,
    decoder: Decoder,
    packets: u64,
    bytes: u64,
    first_ts: Option<i64>,
    last_ts: i64,
    started: Instant,
    last_tick: Instant,
}

enum Mode {
    Inline(Box<FlowTable<Engine>>),
    Threads(Box<Workers>),
}

/// Wall time between hand-offs of partly filled batches, so quiet flows are not delayed.
pub const TICK: Duration = Duration::from_millis(100);

impl Pipeline {
    /// A pipeline of `cfg.workers` engines configured by `engine`, writing to `sinks`.
    pub fn new(cfg: PipelineConfig, engine: EngineConfig, sinks: Vec<Box<dyn Sink>>) -> Self {
        let announced = Announced::new();
        let probes = sinks.iter().filter_map(|s| s.probe()).collect();
        let mode = if cfg.workers <= 1 {
            let e = Engine::new(engine, sinks).with_announced(announced);
            Mode::Inline(Box::new(FlowTable::new(cfg.flows, e)))
        } else {
            Mode::Threads(Box::new(Workers::start(cfg, engine, sinks, announced)))
        };
        Pipeline {
            mode,
            probes,
            decoder: Decoder::new(cfg.decode),
            packets: 0,
            bytes: 0,
            first_ts: None,
            last_ts: 0,
            started: Instant::now(),
            last_tick: Instant::now(),
        }
    }

    /// Processes one captured frame.
    pub fn frame(&mut self, linktype: i32, ts_us: i64, data: &[u8]) {
        self.frame_in(linktype, ts_us, data, None)
    }

    /// Processes one frame that arrived through `outer`, a tunnel its source already removed.
    pub fn frame_in(&mut self, linktype: i32, ts_us: i64, data: &[u8], outer: Option<Tunnel>) {
        self.packets += 1;
        self.bytes += data.len() as u64;
        self.first_ts.get_or_insert(ts_us);
        self.last_ts = self.last_ts.max(ts_us);
        let Ok(seg) = self.decoder.decode_in(linktype, data, ts_us, outer) else {
            return;
        };
        match &mut self.mode {
            Mode::Inline(t) => t.process(&seg, ts_us),
            Mode::Threads(w) => {
                w.push(&seg, ts_us);
                if self.packets % 1024 == 0 && self.last_tick.elapsed() >= TICK {
                    self.last_tick = Instant::now();
                    w.tick();
                }
            }
        }
    }

    /// Reads `src` until it ends or `stop` is set; `on_tick` runs on live read timeouts and at
    /// least every [`TICK`] of wall time while frames flow.
    pub fn run_source(
        &mut self,
        src: &mut PacketSource,
        stop: &AtomicBool,
        mut on_idle: impl FnMut(&mut Self),
    ) -> Result<(), apitap_capture::source::SourceError> {
        let mut last = Instant::now();
        let mut n = 0u32;
        src.run(stop, |ev| match ev {
            Event::Frame(f) => {
                self.frame_in(f.linktype, f.ts_us, f.data, f.tunnel);
                n = n.wrapping_add(1);
                if n % 4096 == 0 && last.elapsed() >= TICK {
                    last = Instant::now();
                    on_idle(self);
                }
            }
            Event::Idle => {
                self.decoder.expire(self.last_ts);
                if let Mode::Threads(w) = &mut self.mode {
                    if self.last_tick.elapsed() >= TICK {
                        self.last_tick = Instant::now();
                        w.tick();
                    }
                }
                on_idle(self)
            }
        })
    }

    /// Ends every connection (emitting what is pending), stops the workers and flushes the
    /// sinks.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        match &mut self.mode {
            Mode::Inline(t) => {
                t.close_all();
                t.handler.close()
            }
            Mode::Threads(w) => w.finish(),
        }
    }

    /// Flushes the sinks.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        match &mut self.mode {
            Mode::Inline(t) => t.handler.flush(),
            Mode::Threads(w) => {
                w.tick();
                Ok(())
            }
        }
    }

    /// The counters so far (parser counters cover closed connections; with workers, as of
    /// their last report, at most a tick old).
    pub fn summary(&self) -> Summary {
        let mut s = match &self.mode {
            Mode::Inline(t) => worker_summary(t),
            Mode::Threads(w) => w.summary(),
        };
        s.packets = self.packets;
        s.bytes = self.bytes;
        s.capture_seconds = self
            .first_ts
            .map_or(0.0, |f| (self.last_ts - f) as f64 / 1e6);
        s.wall_seconds = self.started.elapsed().as_secs_f64();
        s.decode = self.decoder.stats();
        s.sinks = self.probes.iter().map(|p| p.snapshot()).collect();
        s
    }

    /// The delivery counters' probes of the outputs that deliver asynchronously (Kafka);
    /// outputs that write locally have none and are always ready.
    pub fn probes(&self) -> Vec<Arc<dyn SinkProbe>> {
        self.probes.clone()
    }

    /// The inventory so far, every record re-templated under what all workers have learnt.
    pub fn inventory(&mut self) -> Inventory {
        match &mut self.mode {
            Mode::Inline(t) => inventory_of(t),
            Mode::Threads(w) => w.inventory(),
        }
    }

    /// Connections currently tracked.
    pub fn active_flows(&self) -> usize {
        match &self.mode {
            Mode::Inline(t) => t.len(),
            Mode::Threads(w) => w.summary().active_flows as usize,
        }
    }
}

/// One worker's counters.
fn worker_summary(t: &FlowTable<Engine>) -> Summary {
    Summary {
        flows: t.stats(),
        parsers: t.handler.parser.clone(),
        engine: t.handler.stats.clone(),
        inspect: t.handler.inspect_stats(),
        inventory: t.handler.inventory_stats(),
        active_flows: t.len() as u64,
        ..Summary::default()
    }
}

impl Summary {
    /// Adds another worker's counters (flows, parsers, engine, inference).
    pub fn add_worker(&mut self, o: &Summary) {
        self.flows.add(&o.flows);
        self.parsers.add(&o.parsers);
        self.engine.add(&o.engine);
        self.inspect.add(&o.inspect);
        self.inventory.add(&o.inventory);
        self.active_flows += o.active_flows;
    }
}

/// Endpoint facts already announced as inventory events, shared by the workers so that an
/// endpoint discovered on two workers is announced once. Touched only when a worker learns
/// something new about an endpoint, which is rare next to the exchange rate.
#[derive(Clone, Default)]
pub struct Announced(Arc<Mutex<HashSet<u64>>>);

/// Facts remembered; beyond this, repeated announcements are possible but memory is bounded.
const ANNOUNCED_MAX: usize = 1 << 20;

impl Announced {
    /// An empty set.
    pub fn new() -> Self {
        Announced::default()
    }

    /// Whether `fact` is new (and remembers it).
    pub fn first(&self, fact: u64) -> bool {
        let Ok(mut s) = self.0.lock() else {
            return true;
        };
        if s.len() >= ANNOUNCED_MAX {
            return !s.contains(&fact);
        }
        s.insert(fact)
    }
}

/// A segment handed to a worker: the decoded header fields; the payload lives in the batch
/// arena.
struct SegRec {
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: apitap_capture::decode::TcpFlags,
    wire_len: u32,
    vlan: Option<u16>,
    tunnel: Option<Tunnel>,
    ts_us: i64,
    start: usize,
    len: usize,
}

/// Segments for one worker; recycled, so steady state allocates nothing.
#[derive(Default)]
struct Batch {
    segs: Vec<SegRec>,
    arena: Vec<u8>,
}

enum Msg {
    Segments(Batch),
    /// Emit what is pending and publish counters.
    Tick,
    /// Send a copy of the inventory shard and templater.
    Snapshot(Sender<(Inventory, Option<Templater>)>),
}

/// Counters a worker publishes on every tick and at exit.
type Published = Arc<Mutex<Summary>>;

/// A worker's inventory shard and what it learnt about templates.
type Shard = (Inventory, Option<Templater>);

/// A table's inventory, re-templated under what its engine learnt.
fn inventory_of(table: &FlowTable<Engine>) -> Inventory {
    let h = &table.handler;
    let mut inv = Inventory::new(h.inventory_config());
    if let Some(i) = &h.inspector {
        inv.merge_from(&h.inventory, &i.templater);
    }
    inv
}

/// A worker's shard; the caller re-templates it again under every worker's learning.
fn shard_of(table: &FlowTable<Engine>) -> Shard {
    let t = table
        .handler
        .inspector
        .as_ref()
        .map(|i| i.templater.clone());
    (inventory_of(table), t)
}

struct Workers {
    txs: Vec<Sender<Msg>>,
    pending: Vec<Batch>,
    free_rx: Receiver<Batch>,
    batch: usize,
    handles: Vec<JoinHandle<()>>,
    published: Vec<Published>,
    /// Shards left by workers that have finished.
    finals: Vec<Arc<Mutex<Option<Shard>>>>,
    sink: Option<SinkThread>,
    finished: bool,
}

impl Workers {
    fn start(
        cfg: PipelineConfig,
        engine: EngineConfig,
        sinks: Vec<Box<dyn Sink>>,
        announced: Announced,
    ) -> Self {
        let sink = SinkThread::start(sinks, cfg.workers * 4);
        let (free_tx, free_rx) = bounded::<Batch>(cfg.workers * (cfg.queue_batches + 2));
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        let mut published = Vec::new();
        let mut finals = Vec::new();
        for i in 0..cfg.workers {
            let fin: Arc<Mutex<Option<Shard>>> = Arc::default();
            let fin2 = Arc::clone(&fin);
            let (tx, rx) = bounded::<Msg>(cfg.queue_batches);
            let out = Published::default();
            let e = Engine::new(engine.clone(), vec![Box::new(sink.sender())])
                .with_announced(announced.clone());
            let mut table = FlowTable::new(cfg.flows, e);
            let free_tx = free_tx.clone();
            let pubd = Arc::clone(&out);
            let h = std::thread::Builder::new()
                .name(format!("apitap-worker-{i}"))
                .spawn(move || {
                    worker_loop(&mut table, &rx, &free_tx, &pubd);
                    table.close_all();
                    let _ = table.handler.flush();
                    if let Ok(mut p) = pubd.lock() {
                        *p = worker_summary(&table);
                    }
                    if let Ok(mut f) = fin2.lock() {
                        *f = Some(shard_of(&table));
                    }
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    eprintln!("apitap: cannot start worker {i}: {e}");
                    continue;
                }
            }
            txs.push(tx);
            published.push(out);
            finals.push(fin);
        }
        let n = txs.len();
        Workers {
            txs,
            pending: (0..n).map(|_| Batch::default()).collect(),
            free_rx,
            batch: cfg.batch.max(1),
            handles,
            published,
            finals,
            sink: Some(sink),
            finished: false,
        }
    }

    fn push(&mut self, seg: &TcpSegment<'_>, ts_us: i64) {
        if self.txs.is_empty() {
            return;
        }
        let w = (FlowKey::of(seg).0.symmetric_hash() % self.txs.len() as u64) as usize;
        let b = &mut self.pending[w];
        let start = b.arena.len();
        b.arena.extend_from_slice(seg.payload);
        b.segs.push(SegRec {
            src: seg.src,
            dst: seg.dst,
            sport: seg.sport,
            dport: seg.dport,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            wire_len: seg.wire_len,
            vlan: seg.vlan,
            tunnel: seg.tunnel,
            ts_us,
            start,
            len: seg.payload.len(),
        });
        if b.segs.len() >= self.batch || b.arena.len() >= 1 << 20 {
            self.send(w);
        }
    }

    fn send(&mut self, w: usize) {
        let fresh = self.free_rx.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.pending[w], fresh);
        // Blocks when the worker is behind: back-pressure reaches the capture, whose kernel
        // buffer absorbs bursts and counts what it cannot.
        let _ = self.txs[w].send(Msg::Segments(full));
    }

    fn tick(&mut self) {
        for w in 0..self.txs.len() {
            if !self.pending[w].segs.is_empty() {
                self.send(w);
            }
            let _ = self.txs[w].send(Msg::Tick);
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        for w in 0..self.txs.len() {
            if !self.pending[w].segs.is_empty() {
                self.send(w);
            }
        }
        self.txs.clear(); // workers see the channel close, finish and flush
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        match self.sink.take() {
            Some(s) => s.finish(),
            None => Ok(()),
        }
    }

    fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for p in &self.published {
            if let Ok(p) = p.lock() {
                s.add_worker(&p);
            }
        }
        if let Some(sk) = &self.sink {
            s.engine.sink_errors += sk.errors();
        }
        s
    }

    fn inventory(&mut self) -> Inventory {
        let mut parts = Vec::new();
        for tx in &self.txs {
            let (rtx, rrx) = bounded(1);
            if tx.send(Msg::Snapshot(rtx)).is_ok() {
                parts.push(rrx);
            }
        }
        let mut got: Vec<Shard> = parts.into_iter().filter_map(|rx| rx.recv().ok()).collect();
        if self.finished {
            for f in &self.finals {
                if let Some(s) = f.lock().ok().and_then(|g| g.clone()) {
                    got.push(s);
                }
            }
        }
        let mut shards = Vec::new();
        let mut templater: Option<Templater> = None;
        for (inv, t) in got {
            {
                if let Some(t) = t {
                    match &mut templater {
                        Some(m) => m.merge(&t),
                        None => templater = Some(t),
                    }
                }
                shards.push(inv);
            }
        }
        let mut out = Inventory::new(crate::inventory::InventoryConfig::default());
        if let Some(t) = &templater {
            for s in &shards {
                out.merge_from(s, t);
            }
        }
        out
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn worker_loop(
    table: &mut FlowTable<Engine>,
    rx: &Receiver<Msg>,
    free_tx: &Sender<Batch>,
    published: &Published,
) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Segments(mut b) => {
                for r in &b.segs {
                    let seg = TcpSegment {
                        src: r.src,
                        dst: r.dst,
                        sport: r.sport,
                        dport: r.dport,
                        seq: r.seq,
                        ack: r.ack,
                        flags: r.flags,
                        payload: &b.arena[r.start..r.start + r.len],
                        wire_len: r.wire_len,
                        vlan: r.vlan,
                        tunnel: r.tunnel,
                    };
                    table.process(&seg, r.ts_us);
                }
                b.segs.clear();
                b.arena.clear();
                let _ = free_tx.try_send(b);
            }
            Msg::Tick => {
                let _ = table.handler.flush();
                if let Ok(mut p) = published.lock() {
                    *p = worker_summary(table);
                }
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(shard_of(table));
            }
        }
    }
}

impl Summary {
    /// A human-readable report.
    pub fn render(&self) -> String {
        let e = &self.engine;
        let f = &self.flows;
        let r = &f.reassembly;
        let d = &self.decode;
        let p = &self.parsers;
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<24} {v}\n"));
        line(
            "packets",
            format!(
                "{} ({} bytes, {:.1}s of capture in {:.2}s)",
                self.packets, self.bytes, self.capture_seconds, self.wall_seconds
            ),
        );
        line(
            "skipped packets",
            format!(
                "not-ip {} · not-tcp {} · ip-fragments {} · malformed {} · unsupported-link {} · too-deep {}",
                d.not_ip, d.not_tcp, d.fragments, d.malformed, d.unsupported_link, d.too_deep
            ),
        );
        line(
            "flows",
            format!(
                "{} ({} with handshake, {} midstream; peak {} concurrent)",
                f.flows_created, f.with_handshake, f.midstream, f.peak_flows
            ),
        );
        let fates: Vec<String> = e
            .flows_by_protocol
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line("flows by protocol", fates.join(" · "));
        line(
            "flows closed",
            format!(
                "fin {} · rst {} · idle {} · evicted {} · reused {} · end {}",
                f.closed_fin,
                f.closed_rst,
                f.closed_idle,
                f.evicted,
                f.closed_reused,
                f.closed_shutdown
            ),
        );
        line(
            "exchanges",
            format!(
                "{} (HTTP/1.x {}, HTTP/2 {}; {} without response, {} touched by a gap)",
                e.exchanges, e.exchanges_http1, e.exchanges_http2, e.without_response, e.with_gap
            ),
        );
        line(
            "reassembly",
            format!(
                "{} gaps ({} bytes: acked {} · cap {} · close {} · snaplen {}), {} out-of-order, {} duplicate",
                r.gaps_acked + r.gaps_cap + r.gaps_close + r.gaps_truncated,
                r.gap_bytes,
                r.gaps_acked,
                r.gaps_cap,
                r.gaps_close,
                r.gaps_truncated,
                r.out_of_order_segments,
                r.duplicate_segments
            ),
        );
        line(
            "parsing",
            format!(
                "{} resyncs ({} bytes skipped), {} parse errors, {} oversized heads, {} orphan responses",
                p.resyncs,
                p.resync_skipped_bytes,
                p.http1_parse_errors,
                p.http1_oversized_heads,
                p.orphan_responses
            ),
        );
        line(
            "drops",
            format!(
                "flows evicted {} · held-data caps {} flow / {} global · pending-request cap {} · sink errors {}",
                f.evicted, r.cap_flow_hits, r.cap_global_hits, p.pending_overflow, e.sink_errors
            ),
        );
        for k in &self.sinks {
            line(
                "output",
                format!(
                    "{}: {}{}",
                    k.sink,
                    k.kv(),
                    if k.ready { "" } else { " (not ready)" }
                ),
            );
        }
        let i = &self.inspect;
        if i.exchanges > 0 {
            let types: Vec<String> = i.findings.iter().map(|(k, v)| format!("{k} {v}")).collect();
            line(
                "inventory",
                format!(
                    "{} endpoints ({} records folded, {} dropped at the cap); {} inventory events",
                    self.inventory.endpoints_created - self.inventory.endpoints_folded,
                    self.inventory.endpoints_folded,
                    self.inventory.endpoints_dropped,
                    e.inventory_events
                ),
            );
            line(
                "sensitive data",
                format!(
                    "{} exchanges with findings{}{}",
                    i.with_sensitive,
                    if types.is_empty() { "" } else { ": " },
                    types.join(" · ")
                ),
            );
            line(
                "bodies",
                format!(
                    "{} decoded · {} decode errors · {} bomb-capped · {} truncated JSON",
                    i.bodies.decoded,
                    i.bodies.decode_errors,
                    i.bodies.bomb_capped,
                    i.bodies.truncated_json
                ),
            );
        }
        if let Some(c) = &self.capture_drops {
            line(
                "capture drops",
                format!(
                    "kernel {} · interface {} (of {} received)",
                    c.kernel_dropped, c.if_dropped, c.received
                ),
            );
        }
        s
    }
}

impl Summary {
    /// Plain-language reasons why traffic produced fewer exchanges than a user may expect
    /// ("why don't I see my API?").
    pub fn hints(&self) -> Vec<String> {
        let mut h = Vec::new();
        let fates = &self.engine.flows_by_protocol;
        let total: u64 = fates.values().sum();
        let get = |k: &str| fates.get(k).copied().unwrap_or(0);
        if self.packets == 0 {
            h.push("no packets at all: wrong interface, BPF filter too narrow, or the mirror is not delivering".into());
        } else if self.decode.tcp == 0 {
            h.push("packets but no TCP: a tunnel or link type the decoder skipped (see skipped packets), or only UDP traffic".into());
        }
        if total > 0 {
            let tls = get("tls");
            if tls * 2 > total {
                h.push(format!(
                    "{tls} of {total} connections are TLS-encrypted: mirror traffic after TLS termination (load balancer, ingress, sidecar) to see their APIs"
                ));
            }
            let unknown = get("unknown");
            if unknown * 4 > total {
                h.push(format!(
                    "{unknown} of {total} connections carry an unrecognised protocol (not HTTP/1.x or HTTP/2)"
                ));
            }
        }
        if self.flows.midstream > 0 && self.flows.with_handshake == 0 {
            h.push("no TCP handshake seen: the capture started mid-connection or sees only one direction".into());
        }
        if self.engine.exchanges > 0 && self.engine.without_response * 2 > self.engine.exchanges {
            h.push(format!(
                "{} of {} requests had no response: the mirror probably carries only one direction",
                self.engine.without_response, self.engine.exchanges
            ));
        }
        let r = &self.flows.reassembly;
        let gaps = r.gaps_acked + r.gaps_cap + r.gaps_close + r.gaps_truncated;
        if gaps > 0 && self.engine.with_gap * 10 > self.engine.exchanges.max(1) {
            h.push(format!(
                "{gaps} reassembly gaps touched {} exchanges: packet loss on the mirror or the kernel buffer (check capture drops, --buffer-mb, NIC offloads)",
                self.engine.with_gap
            ));
        }
        if let Some(c) = &self.capture_drops {
            if c.kernel_dropped > 0 {
                h.push(format!(
                    "the kernel dropped {} packets: raise --buffer-mb or --workers, narrow --bpf",
                    c.kernel_dropped
                ));
            }
        }
        h
    }
}

/// How often a live capture reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
