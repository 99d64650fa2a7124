//! `apitap`: passive API discovery from mirrored traffic.
use anyhow::{bail, Context, Result};
use apitap::engine::{Engine, EngineConfig};
use apitap::redact::Redaction;
use apitap::run::{Pipeline, Summary, REPORT_EVERY};
use apitap::sink::{self, OutputSpec};
use apitap_capture::flow::FlowConfig;
use apitap_capture::source::{list_devices, LiveOptions, PacketSource};
use apitap_parsers::ParserConfig;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Passive API discovery: reads mirrored packets, reassembles TCP, parses HTTP/1.1 and HTTP/2
/// and writes one JSON line per request/response exchange.
#[derive(Parser)]
#[command(name = "apitap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read pcap/pcapng files (in the order given) and write observations.
    ///
    /// Example: apitap replay traffic.pcap --output jsonl:exchanges.jsonl --stats-json stats.json
    Replay {
        /// Capture files (pcap or pcapng), read one after the other.
        #[arg(required = true, value_name = "PCAP")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Capture live from an interface (needs CAP_NET_RAW) and write observations until
    /// SIGINT/SIGTERM.
    ///
    /// Example: sudo apitap capture --interface eth1 --bpf 'tcp port 80 or tcp port 8080'
    Capture {
        /// Interface to capture on (`any` for all; see `apitap interfaces`).
        #[arg(short, long, value_name = "IFACE")]
        interface: String,
        /// BPF capture filter, applied in the kernel.
        #[arg(long, value_name = "EXPR")]
        bpf: Option<String>,
        /// Bytes captured per packet.
        #[arg(long, default_value_t = 65535, value_name = "N")]
        snaplen: i32,
        /// Put the interface in promiscuous mode (needed on a SPAN port that has an IP).
        #[arg(long)]
        promisc: bool,
        /// Kernel capture buffer, MiB: larger absorbs bursts at the cost of memory.
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        buffer_mb: i32,
        #[command(flatten)]
        common: Common,
    },
    /// List the interfaces libpcap can capture on.
    Interfaces,
}

#[derive(Args)]
struct Common {
    /// Where observations go; repeatable: `stdout` (default), `jsonl:PATH`.
    #[arg(short, long = "output", value_name = "SPEC")]
    outputs: Vec<OutputSpec>,
    /// Also write the run's counters as JSON to this file (at exit).
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// Credentials in headers and query strings: `mask` (default) or `off` (lab use only).
    #[arg(long, value_enum, default_value_t = Redaction::Mask)]
    redaction: Redaction,
    /// Close connections idle this long (seconds of capture time).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    idle_timeout: u64,
    /// Most connections tracked at once; the oldest idle is evicted beyond.
    #[arg(long, default_value_t = 262_144, value_name = "N")]
    max_flows: usize,
    /// Bytes of each body kept for inspection (the rest is counted).
    #[arg(long, default_value_t = 65_536, value_name = "BYTES")]
    body_prefix: usize,
    /// Do not print the summary to stderr.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    kafka: apitap::kafka::KafkaArgs,
}

impl Common {
    fn pipeline(&self, live: bool) -> Result<Pipeline> {
        let specs = if self.outputs.is_empty() {
            vec![OutputSpec::Stdout]
        } else {
            self.outputs.clone()
        };
        let opts = sink::SinkOptions {
            kafka: self.kafka.clone(),
            live,
        };
        let sinks = specs
            .iter()
            .map(|s| sink::open(s, &opts))
            .collect::<Result<Vec<_>>>()?;
        let parser = ParserConfig {
            body_prefix_max: self.body_prefix,
            ..ParserConfig::default()
        };
        let engine = Engine::new(
            EngineConfig {
                parser,
                redaction: self.redaction,
            },
            sinks,
        );
        let flows = FlowConfig {
            max_flows: self.max_flows.max(1),
            idle_timeout_us: (self.idle_timeout.max(1) as i64).saturating_mul(1_000_000),
            ..FlowConfig::default()
        };
        Ok(Pipeline::new(flows, engine))
    }

    fn report(&self, s: &Summary) -> Result<()> {
        if !self.quiet {
            eprintln!("apitap summary:\n{}", s.render());
        }
        if let Some(p) = &self.stats_json {
            let json = serde_json::to_vec_pretty(s)?;
            std::fs::write(p, json)
                .with_context(|| format!("cannot write stats to {}", p.display()))?;
        }
        Ok(())
    }
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    Ok(stop)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Interfaces => {
            let devs = list_devices();
            if devs.is_empty() {
                bail!("no capture devices found (libpcap sees none; are you in a container without NET_RAW?)");
            }
            for d in devs {
                println!("{d}");
            }
            Ok(())
        }
        Cmd::Replay { files, common } => {
            let mut src = PacketSource::files(&files)?;
            let mut p = common.pipeline(false)?;
            let stop = stop_flag()?;
            p.run_source(&mut src, &stop, |_| {})?;
            let flushed = p.finish();
            common.report(&p.summary())?;
            flushed.context("writing observations failed")?;
            Ok(())
        }
        Cmd::Capture {
            interface,
            bpf,
            snaplen,
            promisc,
            buffer_mb,
            common,
        } => {
            let opts = LiveOptions {
                iface: interface,
                bpf,
                snaplen,
                promisc,
                buffer_bytes: buffer_mb.saturating_mul(1 << 20),
                timeout_ms: 500,
            };
            let mut src = PacketSource::live(&opts)?;
            let mut p = common.pipeline(true)?;
            if !common.quiet {
                eprintln!(
                    "apitap: capturing on {} (link type {}); SIGINT or SIGTERM stops",
                    opts.iface,
                    src.linktype()
                );
            }
            let stop = stop_flag()?;
            let mut last_report = Instant::now();
            let quiet = common.quiet;
            p.run_source(&mut src, &stop, |p| {
                let _ = p.flush();
                if !quiet && last_report.elapsed() >= REPORT_EVERY {
                    last_report = Instant::now();
                    let s = p.summary();
                    eprintln!(
                        "apitap: {} packets, {} flows active, {} exchanges",
                        s.packets,
                        p.active_flows(),
                        s.engine.exchanges
                    );
                }
            })?;
            let drops = src.drops();
            let flushed = p.finish();
            let mut s = p.summary();
            s.capture_drops = drops;
            common.report(&s)?;
            flushed.context("writing observations failed")?;
            Ok(())
        }
    }
}
