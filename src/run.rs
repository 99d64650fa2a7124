//! Drivers: read a source, push frames through decoding, the flow table and the engine, and
//! summarise the run.
use crate::engine::{Engine, EngineConfig, EngineStats, SharedExchange};
use crate::fanout::SinkThread;
use crate::findings::Findings;
use crate::infer::template::Templater;
use crate::inventory::Inventory;
use crate::sink::{EventKind, Sink, SinkError, SinkProbe, SinkStats};
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
    /// Risk findings (per exchange; spec drift is counted when the inventory is assessed).
    pub findings: crate::findings::FindingsStats,
    /// Connections tracked at the time of the summary.
    pub active_flows: u64,
    /// Kernel/interface drops (live capture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_drops: Option<CaptureDrops>,
    /// Delivery counters of the outputs that deliver asynchronously (Kafka), one per output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkStats>,
    /// Exchanges per worker (several workers only). Connections are pinned to a worker by a
    /// hash of their addresses, so a few heavy connections can load one worker more than the
    /// others: this shows it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worker_exchanges: Vec<u64>,
    /// Exchanges each worker inspected and wrote: with `share_exchanges`, a worker with spare
    /// time takes over exchanges a busier worker parsed, so these are more even than
    /// `worker_exchanges`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worker_finished: Vec<u64>,
    /// Worker threads that stopped on an internal error (a panic): their connections'
    /// exchanges are missing, and the run fails.
    #[serde(skip_serializing_if = "is_zero")]
    pub worker_failures: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Pipeline shape.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Worker threads; 1 runs everything on the capture thread (no hand-off at all).
    pub workers: usize,
    /// Flow table and reassembly limits for the whole process: each worker's table gets its
    /// share ([`FlowConfig::split`]), so more workers do not mean more memory.
    pub flows: FlowConfig,
    /// Segments per batch handed to a worker.
    pub batch: usize,
    /// Batches queued per worker before the capture thread waits.
    pub queue_batches: usize,
    /// Tunnels, fragments.
    pub decode: apitap_capture::decode::DecodeConfig,
    /// Several workers: a worker with a backlog hands parsed exchanges to idle workers for
    /// inference and output ([`Engine::share_with`]). Balances a few heavy connections, at
    /// the cost of capture order within a connection under load and of reproducible
    /// announcements (which exchange first announces an endpoint depends on timing).
    pub share_exchanges: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            flows: FlowConfig::default(),
            batch: 256,
            queue_batches: 32,
            decode: apitap_capture::decode::DecodeConfig::default(),
            share_exchanges: false,
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
    /// Spec drift reported so far (checked on the merged inventory, not per worker).
    drift: Option<Findings>,
    /// Event format of the outputs.
    format: crate::formats::Format,
    /// The source's latest kernel/interface drop counters (live capture).
    capture_drops: Option<CaptureDrops>,
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
        let drift = engine
            .findings
            .as_ref()
            .filter(|_| engine.inspect.is_some())
            .map(|f| f.fork());
        let format = engine.format;
        let mode = if cfg.workers <= 1 {
            let e = Engine::new(engine, sinks).with_announced(announced);
            Mode::Inline(Box::new(FlowTable::new(cfg.flows, e)))
        } else {
            Mode::Threads(Box::new(Workers::start(cfg, engine, sinks, announced)))
        };
        Pipeline {
            mode,
            probes,
            drift,
            format,
            capture_drops: None,
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
            Event::Drops(d) => self.capture_drops = Some(d),
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

    /// Ends every connection (emitting what is pending) and stops the workers; the outputs
    /// stay open for a last [`Pipeline::assess`]. [`Pipeline::finish`] closes them.
    pub fn end_flows(&mut self) {
        match &mut self.mode {
            Mode::Inline(t) => t.close_all(),
            Mode::Threads(w) => w.stop_workers(),
        }
    }

    /// Ends every connection (emitting what is pending), stops the workers and closes the
    /// outputs (a remote one waits, boundedly, for delivery).
    pub fn finish(&mut self) -> Result<(), SinkError> {
        self.end_flows();
        match &mut self.mode {
            Mode::Inline(t) => t.handler.close(),
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

    /// The counters so far (with workers, as of their last report, at most a tick old).
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
        s.capture_drops = self.capture_drops;
        s.sinks = self.probes.iter().map(|p| p.snapshot()).collect();
        if let Some(d) = &self.drift {
            s.findings.add(&d.stats());
        }
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
            Mode::Threads(w) => merge_shards(w.shards(), None).0,
        }
    }

    /// The inventory with every finding merged across workers, after checking the inventory
    /// against the declared specs: drift not reported before (shadow, zombie, undeclared
    /// parameters) is written to the outputs as finding events now, once per (endpoint,
    /// rule) over the run.
    pub fn assess(&mut self) -> Assessment {
        let (inventory, findings) = match &mut self.mode {
            Mode::Inline(t) => {
                let h = &t.handler;
                let mut f = h.findings.as_ref().map(Findings::snapshot);
                if let (Some(f), Some(i)) = (&mut f, &h.inspector) {
                    f.compact(&i.templater);
                }
                (inventory_of(t), f)
            }
            Mode::Threads(w) => merge_shards(w.shards(), self.drift.as_ref()),
        };
        let mut findings = findings;
        let mut events = Vec::new();
        if let (Some(drift), Some(all)) = (&mut self.drift, &mut findings) {
            events = drift.evaluate_inventory(&inventory);
            all.merge(drift);
        }
        for ev in &events {
            self.emit(EventKind::Finding, ev);
        }
        let new_drift = events.len();
        Assessment {
            inventory,
            findings,
            new_drift,
        }
    }

    /// SIGHUP: reopens the output files (after what was written before, so a log rotator's
    /// moved file ends complete) and, when given, puts a new policy and ownership map in
    /// force on every worker. Capture, flows and inventory carry on untouched.
    pub fn reload(
        &mut self,
        rules: Option<(Arc<crate::policy::Policy>, Arc<crate::owners::Owners>)>,
    ) -> Result<(), SinkError> {
        if let (Some(d), Some((p, o))) = (&mut self.drift, &rules) {
            d.reload(Arc::clone(p), Arc::clone(o));
        }
        match &mut self.mode {
            Mode::Inline(t) => {
                if let (Some(f), Some((p, o))) = (&mut t.handler.findings, rules) {
                    f.reload(p, o);
                }
                t.handler.reopen_sinks()
            }
            Mode::Threads(w) => {
                // Pending segments first: their events belong before the reopen.
                w.tick();
                if let Some((p, o)) = rules {
                    for tx in &w.txs {
                        let _ = tx.send(Msg::Reload(Arc::clone(&p), Arc::clone(&o)));
                    }
                }
                // Workers hand their events to the sink thread on a tick: once each has passed
                // the barrier, those events are queued ahead of the reopen.
                for tx in &w.txs {
                    let (rtx, rrx) = bounded(1);
                    if tx.send(Msg::Barrier(rtx)).is_ok() {
                        let _ = rrx.recv();
                    }
                }
                if let Some(s) = &w.sink {
                    s.reopen();
                }
                Ok(())
            }
        }
    }

    /// Writes one event made outside the exchange path to the outputs, in the run's format.
    fn emit(&mut self, kind: EventKind, ev: &serde_json::Value) {
        let key = ev
            .pointer("/endpoint")
            .map(|e| {
                let f = |k: &str| e.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
                format!("{} {} {}", f("host"), f("method"), f("template"))
            })
            .unwrap_or_default();
        match &mut self.mode {
            Mode::Inline(t) => t.handler.emit_event(kind, &key, ev),
            Mode::Threads(w) => {
                let Some(sink) = &w.sink else { return };
                let (Ok(native), mut json) = (serde_json::to_vec(ev), Vec::new()) else {
                    return;
                };
                if crate::formats::convert_bytes(self.format, &native, &mut json).is_err() {
                    return;
                }
                let mut tx = sink.sender();
                let e = crate::sink::Event {
                    kind,
                    key: &key,
                    json: &json,
                };
                let _ = tx.write(&e).and_then(|_| tx.flush());
            }
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
        parsers: t.handler.parser_stats().clone(),
        engine: t.handler.stats.clone(),
        inspect: t.handler.inspect_stats(),
        inventory: t.handler.inventory_stats(),
        findings: t
            .handler
            .findings
            .as_ref()
            .map(Findings::stats)
            .unwrap_or_default(),
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
        self.findings.add(&o.findings);
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
    Snapshot(Sender<Shard>),
    /// Answer once everything before has been handled.
    Barrier(Sender<()>),
    /// Put a new policy and ownership map in force (SIGHUP).
    Reload(Arc<crate::policy::Policy>, Arc<crate::owners::Owners>),
}

/// Parsed exchanges queued for whichever worker is free (see [`Engine::share_with`]).
const SHARED_EXCHANGES: usize = 256;

/// Counters a worker publishes on every tick and at exit.
type Published = Arc<Mutex<Summary>>;

/// A worker's inventory shard, what it learnt about templates, and its findings.
type Shard = (Inventory, Option<Templater>, Option<Findings>);

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
    let f = table.handler.findings.as_ref().map(Findings::snapshot);
    (inventory_of(table), t, f)
}

/// The inventory of every shard re-templated under what all of them learnt, and their
/// findings merged into `base` (a fork of the run's findings) and re-templated the same way.
fn merge_shards(shards: Vec<Shard>, base: Option<&Findings>) -> (Inventory, Option<Findings>) {
    let mut templater: Option<Templater> = None;
    let mut invs = Vec::new();
    let mut merged = base.map(Findings::fork);
    for (inv, t, f) in shards {
        if let Some(t) = t {
            match &mut templater {
                Some(m) => m.merge(&t),
                None => templater = Some(t),
            }
        }
        if let (Some(m), Some(f)) = (&mut merged, &f) {
            m.merge(f);
        }
        invs.push(inv);
    }
    let mut out = Inventory::new(crate::inventory::InventoryConfig::default());
    if let Some(t) = &templater {
        for s in &invs {
            out.merge_from(s, t);
        }
        if let Some(m) = &mut merged {
            m.compact(t);
        }
    }
    (out, merged)
}

/// The inventory with its assessment: what [`Pipeline::assess`] returns.
pub struct Assessment {
    /// Every endpoint, re-templated under what all workers learnt.
    pub inventory: Inventory,
    /// Every finding (exchange rules and spec drift), merged across workers; absent when
    /// inference is off.
    pub findings: Option<Findings>,
    /// Spec-drift findings reported for the first time by this assessment (also written to
    /// the outputs).
    pub new_drift: usize,
}

impl Assessment {
    /// The inventory document: endpoints with their risk, owner and findings, and the
    /// findings list.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.findings {
            Some(f) => {
                let mut doc = self
                    .inventory
                    .to_json(&|k, s| Some(crate::findings::risk(k, s, f)));
                f.annotate_inventory(&mut doc);
                doc
            }
            None => self.inventory.to_json(&|_, _| None),
        }
    }
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
    /// The sink thread's write failures, still readable once it has finished.
    sink_errors: Arc<std::sync::atomic::AtomicU64>,
    /// The workers have ended their connections and stopped.
    stopped: bool,
    /// Workers that ended in a panic.
    failures: u64,
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
        let flows = cfg.flows.split(cfg.workers);
        // Parsed exchanges any worker may finish; bounded because each can hold two body
        // prefixes: SHARED_EXCHANGES × (2 × 64 KiB + heads) at most.
        let (xtx, xrx) = (cfg.workers > 1 && cfg.share_exchanges)
            .then(|| bounded::<SharedExchange>(SHARED_EXCHANGES))
            .unzip();
        for i in 0..cfg.workers {
            let fin: Arc<Mutex<Option<Shard>>> = Arc::default();
            let fin2 = Arc::clone(&fin);
            let (tx, rx) = bounded::<Msg>(cfg.queue_batches);
            let out = Published::default();
            let mut e = Engine::new(engine.clone(), vec![Box::new(sink.sender())])
                .with_announced(announced.clone());
            e.share_with(xtx.clone());
            let mut table = FlowTable::new(flows, e);
            let free_tx = free_tx.clone();
            let pubd = Arc::clone(&out);
            let xrx = xrx.clone();
            let h = std::thread::Builder::new()
                .name(format!("apitap-worker-{i}"))
                .spawn(move || {
                    worker_loop(&mut table, &rx, xrx.as_ref(), &free_tx, &pubd);
                    // The last connections are finished here; then this worker helps with
                    // what others shared until every worker has stopped sharing.
                    table.handler.share_with(None);
                    table.close_all();
                    if let Some(xrx) = &xrx {
                        while let Ok(x) = xrx.recv() {
                            table.handler.finish_shared(x);
                        }
                    }
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
        drop(xtx);
        let n = txs.len();
        Workers {
            txs,
            pending: (0..n).map(|_| Batch::default()).collect(),
            free_rx,
            batch: cfg.batch.max(1),
            handles,
            published,
            finals,
            sink_errors: sink.error_counter(),
            sink: Some(sink),
            stopped: false,
            failures: 0,
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

    /// Hands over what is pending and lets every worker end its connections and stop; the
    /// sink thread stays up for what the caller still writes.
    fn stop_workers(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for w in 0..self.txs.len() {
            if !self.pending[w].segs.is_empty() {
                self.send(w);
            }
        }
        self.txs.clear(); // workers see the channel close, finish and flush
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                self.failures += 1;
            }
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.stop_workers();
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
                s.worker_exchanges.push(p.engine.exchanges);
                s.worker_finished.push(p.engine.finished);
            }
        }
        s.engine.sink_errors += self.sink_errors.load(std::sync::atomic::Ordering::Relaxed);
        s.worker_failures = self.failures;
        s
    }

    /// Every worker's shard: live workers answer a snapshot request, finished ones left
    /// theirs behind.
    fn shards(&mut self) -> Vec<Shard> {
        let mut parts = Vec::new();
        for tx in &self.txs {
            let (rtx, rrx) = bounded(1);
            if tx.send(Msg::Snapshot(rtx)).is_ok() {
                parts.push(rrx);
            }
        }
        let mut got: Vec<Shard> = parts.into_iter().filter_map(|rx| rx.recv().ok()).collect();
        if self.stopped {
            for f in &self.finals {
                if let Some(s) = f.lock().ok().and_then(|g| g.clone()) {
                    got.push(s);
                }
            }
        }
        got
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The worker's next message. With sharing on, own packets come first and shared exchanges
/// are finished only while there are none, so that a worker with light connections spends
/// its spare time on a busy worker's exchanges.
fn next_msg(
    table: &mut FlowTable<Engine>,
    rx: &Receiver<Msg>,
    shared: Option<&Receiver<SharedExchange>>,
) -> Option<Msg> {
    let Some(shared) = shared else {
        return rx.recv().ok();
    };
    loop {
        match rx.try_recv() {
            Ok(m) => return Some(m),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        crossbeam_channel::select! {
            recv(rx) -> m => return m.ok(),
            recv(shared) -> x => match x {
                Ok(x) => table.handler.finish_shared(x),
                // Cannot happen while this worker's own engine shares; wait for packets.
                Err(_) => return rx.recv().ok(),
            }
        }
    }
}

fn worker_loop(
    table: &mut FlowTable<Engine>,
    rx: &Receiver<Msg>,
    shared: Option<&Receiver<SharedExchange>>,
    free_tx: &Sender<Batch>,
    published: &Published,
) {
    while let Some(msg) = next_msg(table, rx, shared) {
        match msg {
            Msg::Segments(mut b) => {
                table.handler.set_behind(!rx.is_empty());
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
            Msg::Barrier(reply) => {
                // What was parsed before the barrier is written before it.
                while let Some(x) = shared.and_then(|s| s.try_recv().ok()) {
                    table.handler.finish_shared(x);
                }
                let _ = reply.send(());
            }
            Msg::Reload(policy, owners) => {
                if let Some(f) = &mut table.handler.findings {
                    f.reload(policy, owners);
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
                "fin {} · rst {} · idle {} · evicted {} · reused {} · end {} ({} out-of-window RSTs ignored)",
                f.closed_fin,
                f.closed_rst,
                f.closed_idle,
                f.evicted,
                f.closed_reused,
                f.closed_shutdown,
                f.rst_out_of_window
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
                "flows evicted {} · held-data caps {} flow / {} global · pending-request cap {} · parser budget {} · sink errors {}",
                f.evicted, r.cap_flow_hits, r.cap_global_hits, p.pending_overflow, p.budget_refusals, e.sink_errors
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
            let fs = &self.findings;
            line(
                "risk findings",
                format!(
                    "{} reported ({} suppressed by policy) · dropped: {} endpoints, {} evidence values",
                    fs.records - fs.suppressed,
                    fs.suppressed,
                    fs.endpoints_dropped,
                    fs.evidence_dropped
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
