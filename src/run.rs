//! Drivers: read a source, push frames through decoding, the flow table and the engine, and
//! summarise the run.
use crate::engine::{Engine, EngineStats};
use apitap_capture::decode::{decode, DecodeStats};
use apitap_capture::flow::{FlowConfig, FlowStats, FlowTable};
use apitap_capture::source::{CaptureDrops, Event, PacketSource};
use apitap_parsers::ParserStats;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
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
    /// Kernel/interface drops (live capture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_drops: Option<CaptureDrops>,
}

/// The pipeline on one thread: decode → flows → reassembly → sessions → sinks.
pub struct Pipeline {
    table: FlowTable<Engine>,
    decode: DecodeStats,
    packets: u64,
    bytes: u64,
    first_ts: Option<i64>,
    last_ts: i64,
    started: Instant,
}

impl Pipeline {
    /// A pipeline around `engine`.
    pub fn new(flows: FlowConfig, engine: Engine) -> Self {
        Pipeline {
            table: FlowTable::new(flows, engine),
            decode: DecodeStats::default(),
            packets: 0,
            bytes: 0,
            first_ts: None,
            last_ts: 0,
            started: Instant::now(),
        }
    }

    /// Processes one captured frame.
    pub fn frame(&mut self, linktype: i32, ts_us: i64, data: &[u8]) {
        self.packets += 1;
        self.bytes += data.len() as u64;
        self.first_ts.get_or_insert(ts_us);
        self.last_ts = self.last_ts.max(ts_us);
        if let Ok(seg) = decode(linktype, data, &mut self.decode) {
            self.table.process(&seg, ts_us);
        }
    }

    /// Reads `src` until it ends or `stop` is set; `on_idle` runs on live read timeouts.
    pub fn run_source(
        &mut self,
        src: &mut PacketSource,
        stop: &AtomicBool,
        mut on_idle: impl FnMut(&mut Self),
    ) -> Result<(), apitap_capture::source::SourceError> {
        src.run(stop, |ev| match ev {
            Event::Frame(f) => self.frame(f.linktype, f.ts_us, f.data),
            Event::Idle => on_idle(self),
        })
    }

    /// Ends every connection (emitting what is pending) and flushes the sinks.
    pub fn finish(&mut self) -> Result<(), crate::sink::SinkError> {
        self.table.close_all();
        self.table.handler.flush()
    }

    /// Flushes the sinks.
    pub fn flush(&mut self) -> Result<(), crate::sink::SinkError> {
        self.table.handler.flush()
    }

    /// The counters so far (parser counters cover closed connections).
    pub fn summary(&self) -> Summary {
        Summary {
            packets: self.packets,
            bytes: self.bytes,
            capture_seconds: self
                .first_ts
                .map_or(0.0, |f| (self.last_ts - f) as f64 / 1e6),
            wall_seconds: self.started.elapsed().as_secs_f64(),
            decode: self.decode.clone(),
            flows: self.table.stats(),
            parsers: self.table.handler.parser.clone(),
            engine: self.table.handler.stats.clone(),
            capture_drops: None,
        }
    }

    /// Connections currently tracked.
    pub fn active_flows(&self) -> usize {
        self.table.len()
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

/// How often a live capture reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
