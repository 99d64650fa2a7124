//! `apitap`: passive API discovery from mirrored traffic.
//!
//! The binary edge: command line, the layered configuration (file < flags < `APITAP_*`
//! variables, see [`apitap::config`]), logging, privilege drop, and the replay and capture
//! loops around [`Pipeline`].
use anyhow::{bail, Context, Result};
use apitap::config::{Config, Layers, LogFormat};
use apitap::engine::EngineConfig;
use apitap::inspect::InspectConfig;
use apitap::inventory::{write_atomic, InventoryConfig};
use apitap::redact::Redaction;
use apitap::run::{Pipeline, PipelineConfig, Summary, REPORT_EVERY};
use apitap::sink::{self, OutputSpec};
use apitap_capture::flow::FlowConfig;
use apitap_capture::source::{list_devices, LiveOptions, PacketSource};
use apitap_parsers::ParserConfig;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Passive API discovery: reads mirrored packets, reassembles TCP, parses HTTP/1.1 and HTTP/2,
/// infers the API inventory and writes JSON events (stdout, files, Kafka).
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
    /// Example: apitap replay traffic.pcap --output jsonl:exchanges.jsonl --inventory inv.json
    Replay {
        /// Capture files (pcap or pcapng), read one after the other.
        #[arg(required = true, value_name = "PCAP")]
        files: Vec<PathBuf>,
        /// Replay speed: `max` (as fast as possible), `realtime` (the pace the capture was
        /// recorded at, for demos and idle timeouts), or a factor of it such as `10` or `0.5x`.
        #[arg(long, default_value = "max", value_name = "max|realtime|FACTOR")]
        speed: apitap_capture::source::Speed,
        #[command(flatten)]
        common: Common,
    },
    /// Capture live from an interface (needs CAP_NET_RAW), or receive a VXLAN/Geneve mirror,
    /// and write observations until SIGINT/SIGTERM.
    ///
    /// Example: sudo apitap capture --interface eth1 --bpf 'tcp port 80 or tcp port 8080'
    Capture {
        #[command(flatten)]
        capture: CaptureArgs,
        #[command(flatten)]
        common: Common,
    },
    /// List the interfaces libpcap can capture on.
    Interfaces,
    /// Configuration file helpers.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Policy file helpers.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Compare an inventory with declared OpenAPI specs; exit 1 on drift (a CI gate).
    ///
    /// Example: apitap diff --spec openapi.yaml --inventory inventory.json
    Diff {
        /// Declared spec (JSON or YAML), repeatable.
        #[arg(long = "spec", required = true, value_name = "FILE")]
        specs: Vec<PathBuf>,
        /// Inventory written by --inventory.
        #[arg(long, value_name = "FILE")]
        inventory: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate a policy file; errors name their key path; exit 1 on errors.
    Check {
        /// The file (TOML or YAML).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a fully commented example configuration (every key, with its default).
    Example,
    /// Validate a configuration file (with APITAP_* variables applied); exit 1 on errors.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct CaptureArgs {
    /// Interface to capture on (`any` for all; see `apitap interfaces`). [capture.interface]
    #[arg(short, long, value_name = "IFACE")]
    interface: Option<String>,
    /// BPF capture filter, applied in the kernel. [capture.bpf]
    #[arg(long, value_name = "EXPR")]
    bpf: Option<String>,
    /// Bytes captured per packet (default 65535). [capture.snaplen]
    #[arg(long, value_name = "N")]
    snaplen: Option<i32>,
    /// Put the interface in promiscuous mode (needed on a SPAN port that has an IP).
    /// [capture.promisc]
    #[arg(long)]
    promisc: bool,
    /// Kernel capture buffer, MiB (default 256): absorbs bursts. [capture.buffer_mb]
    #[arg(long, value_name = "MIB")]
    buffer_mb: Option<i32>,
    /// Receive a VXLAN mirror (AWS/Azure traffic mirroring) on this UDP address instead of
    /// capturing: no libpcap, no privileges. [capture.vxlan_listen]
    #[arg(long, value_name = "ADDR")]
    vxlan_listen: Option<SocketAddr>,
    /// Receive a Geneve mirror (AWS Gateway Load Balancer) on this UDP address.
    /// [capture.geneve_listen]
    #[arg(long, value_name = "ADDR")]
    geneve_listen: Option<SocketAddr>,
}

/// Options of both replay and capture. Each overrides its config key (in brackets) and is
/// itself overridden by the matching APITAP_* variable.
#[derive(Args)]
struct Common {
    /// Configuration file (TOML; `apitap config example` prints one).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where events go; repeatable: `stdout` (default), `jsonl:PATH`,
    /// `kafka://HOST:PORT[,HOST:PORT]/TOPIC`. [outputs.targets]
    #[arg(short, long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Also write the run's counters as JSON to this file (at exit). [outputs.stats_json]
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// Credentials and sensitive values (emails, cards, keys …) in paths, query strings and
    /// headers: `mask` (default), `hash` (salted SHA-256, correlatable) or `off` (lab use
    /// only). [redaction.mode]
    #[arg(long, value_enum, value_name = "MODE")]
    redaction: Option<Redaction>,
    /// Salt of `--redaction hash` (default: random per run). Prefer APITAP_REDACTION_SALT.
    /// [redaction.salt]
    #[arg(long, value_name = "SECRET")]
    redaction_salt: Option<String>,
    /// Turn off endpoint, auth and schema inference and the inventory (sensitive values are
    /// still redacted). [inference.enabled]
    #[arg(long)]
    no_inference: bool,
    /// Write the endpoint inventory (JSON) here: at the end of a replay, and every
    /// --inventory-interval during a capture (replaced atomically). [outputs.inventory]
    #[arg(long, value_name = "PATH")]
    inventory: Option<PathBuf>,
    /// How often a capture rewrites --inventory and --openapi (default 5m).
    /// [outputs.inventory_interval_secs]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    inventory_interval: Option<Duration>,
    /// Write OpenAPI 3.1 documents of the inventory here: a directory (one file per host),
    /// or a .json file. [outputs.openapi]
    #[arg(long, value_name = "PATH")]
    openapi: Option<PathBuf>,
    /// Close connections idle this long, seconds of capture time (default 120).
    /// [flows.idle_timeout_secs]
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Most connections tracked at once, all workers together (default 262144; each worker
    /// gets an equal share, rounded up); the oldest idle is evicted beyond, and counted.
    /// [flows.max_flows]
    #[arg(long, value_name = "N")]
    max_flows: Option<usize>,
    /// Bytes of each body kept for inspection (default 65536). [parser.body_prefix_bytes]
    #[arg(long, value_name = "BYTES")]
    body_prefix: Option<usize>,
    /// Worker threads (default 0 = one per core); with 1, everything runs on the capture
    /// thread. [pipeline.workers]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// With several workers, let a worker with a backlog hand parsed exchanges to idle ones
    /// (default: on for capture, off for replay). [pipeline.share_exchanges]
    #[arg(long, value_name = "BOOL")]
    share_exchanges: Option<bool>,
    /// Serve Prometheus /metrics, /healthz, /readyz and /status here (e.g. 127.0.0.1:9464).
    /// [metrics.listen]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// After opening the capture and the outputs, switch to this user and keep no
    /// capabilities. [user]
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Log format: text or json. [log.format]
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Log level or tracing filter (default info). [log.level]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Policy file for findings (see docs/findings.md). [findings.policy]
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Ownership map (host/path globs → team). [findings.owners]
    #[arg(long, value_name = "FILE")]
    owners: Option<PathBuf>,
    /// Declared OpenAPI spec (JSON/YAML), repeatable: shadow and zombie endpoints.
    /// [findings.specs]
    #[arg(long = "spec", value_name = "FILE")]
    specs: Vec<PathBuf>,
    /// Event format: native, ocsf (OCSF HTTP Activity / Detection Finding) or ecs.
    /// [findings.format]
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<apitap::formats::Format>,
    /// Do not print the summary (or progress) to stderr.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    kafka: apitap::kafka::KafkaArgs,
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Common {
    /// The configuration: file, then these flags, then APITAP_* variables.
    fn config(
        &self,
        capture: Option<&CaptureArgs>,
        matches: Option<&clap::ArgMatches>,
    ) -> Result<Config> {
        let mut l = Layers::from_file(self.config.as_deref())?;
        if let Some(c) = capture {
            if let Some(v) = &c.interface {
                l.set("capture.interface", v.as_str());
            }
            if let Some(v) = &c.bpf {
                l.set("capture.bpf", v.as_str());
            }
            if let Some(v) = c.snaplen {
                l.set("capture.snaplen", i64::from(v));
            }
            if c.promisc {
                l.set("capture.promisc", true);
            }
            if let Some(v) = c.buffer_mb {
                l.set("capture.buffer_mb", i64::from(v));
            }
            if let Some(v) = c.vxlan_listen {
                l.set("capture.vxlan_listen", v.to_string());
            }
            if let Some(v) = c.geneve_listen {
                l.set("capture.geneve_listen", v.to_string());
            }
        }
        if !self.outputs.is_empty() {
            let v: Vec<toml::Value> = self
                .outputs
                .iter()
                .map(|s| toml::Value::String(s.clone()))
                .collect();
            l.set("outputs.targets", v);
        }
        if let Some(v) = &self.stats_json {
            l.set("outputs.stats_json", path_str(v));
        }
        if let Some(v) = self.redaction {
            l.set(
                "redaction.mode",
                toml::Value::try_from(v).context("redaction mode")?,
            );
        }
        if let Some(v) = &self.redaction_salt {
            l.set("redaction.salt", v.as_str());
        }
        if self.no_inference {
            l.set("inference.enabled", false);
        }
        if let Some(v) = &self.inventory {
            l.set("outputs.inventory", path_str(v));
        }
        if let Some(v) = self.inventory_interval {
            l.set("outputs.inventory_interval_secs", v.as_secs().max(1) as i64);
        }
        if let Some(v) = &self.openapi {
            l.set("outputs.openapi", path_str(v));
        }
        if let Some(v) = self.idle_timeout {
            l.set("flows.idle_timeout_secs", v as i64);
        }
        if let Some(v) = self.max_flows {
            l.set("flows.max_flows", v as i64);
        }
        if let Some(v) = self.body_prefix {
            l.set("parser.body_prefix_bytes", v as i64);
        }
        if let Some(v) = self.workers {
            l.set("pipeline.workers", v as i64);
        }
        if let Some(v) = self.share_exchanges {
            l.set("pipeline.share_exchanges", v);
        }
        if let Some(v) = self.metrics_listen {
            l.set("metrics.listen", v.to_string());
        }
        if let Some(v) = &self.user {
            l.set("user", v.as_str());
        }
        if let Some(v) = self.log_format {
            l.set(
                "log.format",
                toml::Value::try_from(v).context("log format")?,
            );
        }
        if let Some(v) = &self.log_level {
            l.set("log.level", v.as_str());
        }
        if let Some(v) = &self.policy {
            l.set("findings.policy", path_str(v));
        }
        if let Some(v) = &self.owners {
            l.set("findings.owners", path_str(v));
        }
        if !self.specs.is_empty() {
            let v: Vec<toml::Value> = self
                .specs
                .iter()
                .map(|p| toml::Value::String(path_str(p)))
                .collect();
            l.set("findings.specs", v);
        }
        if let Some(v) = self.format {
            l.set("findings.format", v.as_str());
        }
        // Kafka flags have defaults of their own: only those given on the command line
        // override the file.
        if let Some(m) = matches {
            if let Ok(toml::Value::Table(t)) = toml::Value::try_from(&self.kafka) {
                for (k, v) in t {
                    if k != "options"
                        && m.value_source(&k) == Some(clap::parser::ValueSource::CommandLine)
                    {
                        l.set(&format!("kafka.{k}"), v);
                    }
                }
            }
        }
        for o in &self.kafka.option {
            l.merge_option(&o.key, &o.value);
        }
        l.apply_env(std::env::vars());
        Ok(l.build()?)
    }
}

/// A run, configured.
struct Run {
    cfg: Config,
    quiet: bool,
}

impl Run {
    fn pipeline(&self, live: bool) -> Result<Pipeline> {
        let c = &self.cfg;
        let specs: Vec<OutputSpec> = if c.outputs.targets.is_empty() {
            vec![OutputSpec::Stdout]
        } else {
            c.outputs
                .targets
                .iter()
                .map(|s| {
                    s.parse::<OutputSpec>()
                        .map_err(|e| anyhow::anyhow!("outputs.targets: {e}"))
                })
                .collect::<Result<_>>()?
        };
        let opts = sink::SinkOptions {
            kafka: c.kafka.clone(),
            live,
        };
        let sinks = specs
            .iter()
            .map(|s| sink::open(s, &opts))
            .collect::<Result<Vec<_>>>()?;
        let parser = ParserConfig {
            body_prefix_max: c.parser.body_prefix_bytes,
            memory_budget_bytes: c.parser.memory_budget_bytes,
            ..ParserConfig::default()
        };
        let salt = match &c.redaction.salt {
            Some(s) => s.as_bytes().to_vec(),
            None => random_salt(),
        };
        let mut inspect = InspectConfig::default();
        inspect.templates.param_threshold = c.inference.param_threshold.max(2);
        inspect.bodies = c.inference.bodies;
        let engine = EngineConfig {
            parser,
            redaction: c.redaction.mode,
            salt,
            inspect: c.inference.enabled.then_some(inspect),
            inventory: InventoryConfig {
                max_endpoints: c.inference.max_endpoints.max(1),
                ..InventoryConfig::default()
            },
            live,
            findings: Some(Arc::new(self.findings()?)),
            format: c.findings.format,
        };
        let flows = FlowConfig {
            max_flows: c.flows.max_flows.max(1),
            idle_timeout_us: (c.flows.idle_timeout_secs.max(1) as i64).saturating_mul(1_000_000),
            ..FlowConfig::default()
        };
        let workers = match c.pipeline.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let cfg = PipelineConfig {
            workers,
            flows,
            share_exchanges: c.pipeline.share_exchanges.unwrap_or(live),
            ..PipelineConfig::default()
        };
        Ok(Pipeline::new(cfg, engine, sinks))
    }

    /// The findings engine: policy, owners and specs from their files.
    fn findings(&self) -> Result<apitap::findings::Findings> {
        let f = &self.cfg.findings;
        let policy = match &f.policy {
            Some(p) => apitap::policy::Policy::load(p)
                .with_context(|| format!("policy {}", p.display()))?,
            None => apitap::policy::Policy::default(),
        };
        let owners = match &f.owners {
            Some(p) => apitap::owners::Owners::load(p)
                .with_context(|| format!("owners {}", p.display()))?,
            None => apitap::owners::Owners::default(),
        };
        let specs = f
            .specs
            .iter()
            .map(|p| apitap::spec::Spec::load(p).with_context(|| format!("spec {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        Ok(apitap::findings::Findings::new(policy, owners, specs))
    }

    /// Assesses the inventory — spec drift not reported yet goes to the outputs — and writes
    /// the inventory (with each endpoint's risk, owner and findings) and OpenAPI files, when
    /// asked for.
    fn assess(&self, p: &mut Pipeline) -> Result<()> {
        let o = &self.cfg.outputs;
        let files = o.inventory.is_some() || o.openapi.is_some();
        if !files && self.cfg.findings.specs.is_empty() {
            return Ok(());
        }
        let a = p.assess();
        if a.new_drift > 0 {
            info!(findings = a.new_drift, "spec drift");
        }
        if let Some(path) = &o.inventory {
            let doc = serde_json::to_vec_pretty(&a.to_json())?;
            write_atomic(path, &doc)
                .with_context(|| format!("cannot write the inventory to {}", path.display()))?;
        }
        if let Some(path) = &o.openapi {
            apitap::openapi::write(&a.inventory, path)
                .with_context(|| format!("cannot write OpenAPI to {}", path.display()))?;
        }
        Ok(())
    }

    /// SIGHUP: reopens the output files and reloads the policy and ownership files named in
    /// the configuration. A file that no longer loads leaves the rules in force as they were
    /// (logged); the outputs are reopened either way. Other settings need a restart.
    fn reload(&self, p: &mut Pipeline) {
        let rules = match self.findings().map(|f| f.rules()) {
            Ok(r) => Some(r),
            Err(e) => {
                error!("SIGHUP: keeping the policy and owners in force: {e:#}");
                None
            }
        };
        let reloaded = rules.is_some();
        match p.reload(rules) {
            Ok(()) => info!(rules = reloaded, "SIGHUP: outputs reopened"),
            Err(e) => error!("SIGHUP: {e}"),
        }
    }

    /// Starts the metrics endpoint when asked for; the returned state is published to either
    /// way.
    fn metrics(&self) -> Result<Arc<apitap::metrics::Shared>> {
        let shared = apitap::metrics::Shared::new();
        if let Some(addr) = self.cfg.metrics.listen {
            apitap::metrics::serve(addr, Arc::clone(&shared))?;
            info!(%addr, "serving /metrics, /healthz, /readyz, /status");
        }
        Ok(shared)
    }

    fn report(&self, s: &Summary) -> Result<()> {
        if !self.quiet {
            eprintln!("apitap summary:\n{}", s.render());
        }
        if let Some(p) = &self.cfg.outputs.stats_json {
            let json = serde_json::to_vec_pretty(s)?;
            std::fs::write(p, json)
                .with_context(|| format!("cannot write stats to {}", p.display()))?;
        }
        if s.worker_failures > 0 {
            bail!(
                "{} worker thread(s) stopped on an internal error (printed above): the exchanges \
                 of their connections are missing from the outputs. This is a bug in apitap; \
                 please report it with the capture",
                s.worker_failures
            );
        }
        Ok(())
    }

    fn drop_privileges(&self) -> Result<()> {
        if let Some(user) = self.cfg.user.as_deref().filter(|u| !u.is_empty()) {
            apitap::privdrop::drop_to(user)
                .with_context(|| format!("cannot switch to user {user:?} (--user / user)"))?;
            info!(user, "dropped privileges; no capabilities kept");
        }
        Ok(())
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match cfg.log.format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.without_time().try_init(),
    };
}

/// A per-run salt for `hash` redaction, from the kernel's random source.
fn random_salt() -> Vec<u8> {
    use std::io::Read;
    let mut salt = vec![0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut salt));
    if ok.is_err() {
        // No /dev/urandom (unusual sandbox): time and pid still differ per run.
        let t = apitap::inventory::now_us() as u64 ^ (u64::from(std::process::id()) << 32);
        salt = t.to_le_bytes().to_vec();
    }
    salt
}

/// Set by SIGHUP: reopen the outputs and reload the policy and ownership map.
fn hup_flag() -> Result<Arc<AtomicBool>> {
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("cannot install the SIGHUP handler")?;
    Ok(hup)
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    Ok(stop)
}

fn main() {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let sub = matches.subcommand().map(|(_, m)| m.clone());
    if let Err(e) = run(cli, sub.as_ref()) {
        // anyhow's chain, one cause per clause, as users read it.
        eprintln!("apitap: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli, sub: Option<&clap::ArgMatches>) -> Result<()> {
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
        Cmd::Config { cmd } => match cmd {
            ConfigCmd::Example => {
                print!("{}", apitap::config::example());
                Ok(())
            }
            ConfigCmd::Check { file } => {
                let mut l = Layers::from_file(Some(&file))?;
                l.apply_env(std::env::vars());
                let cfg = l.build()?;
                for t in &cfg.outputs.targets {
                    t.parse::<OutputSpec>()
                        .map_err(|e| anyhow::anyhow!("outputs.targets: {e}"))?;
                }
                println!("{}: ok", file.display());
                Ok(())
            }
        },
        Cmd::Policy {
            cmd: PolicyCmd::Check { file },
        } => match apitap::policy::check(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(())
            }
            Err(issues) => {
                for i in &issues {
                    eprintln!("{}: {i}", file.display());
                }
                bail!("{} problem(s) in {}", issues.len(), file.display());
            }
        },
        Cmd::Diff {
            specs,
            inventory,
            json,
        } => {
            let report = apitap::spec::diff(&specs, &inventory)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                println!(
                    "{} observed endpoints, {} declared operations, {} matched, {} drift items",
                    report.observed,
                    report.declared,
                    report.matched,
                    report.items.len()
                );
                for d in &report.items {
                    println!("  {}", serde_json::to_string(d).unwrap_or_default());
                }
            }
            if report.has_drift() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Replay {
            files,
            speed,
            common,
        } => {
            let r = Run {
                cfg: common.config(None, sub)?,
                quiet: common.quiet,
            };
            init_logging(&r.cfg);
            let mut src = PacketSource::files(&files)?;
            src.set_speed(speed);
            let total_bytes: u64 = files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            let mut p = r.pipeline(false)?;
            let shared = r.metrics()?;
            r.drop_privileges()?;
            shared.capture_open.store(true, Ordering::Relaxed);
            shared.set_probes(p.probes());
            shared.publish(p.summary());
            let stop = stop_flag()?;
            let hup = hup_flag()?;
            let progress = !r.quiet && std::io::stderr().is_terminal();
            let mut last = Instant::now();
            p.run_source(&mut src, &stop, |p| {
                if hup.swap(false, Ordering::Relaxed) {
                    r.reload(p);
                }
                if last.elapsed() < Duration::from_secs(1) {
                    return;
                }
                last = Instant::now();
                // A piped input may pause: what was parsed before goes out meanwhile.
                let _ = p.flush();
                let s = p.summary();
                if progress {
                    eprint!(
                        "\r\x1b[2K{:>5.1}% · {} packets ({:.0}/s) · {} exchanges",
                        (s.bytes as f64 / total_bytes.max(1) as f64 * 100.0).min(100.0),
                        s.packets,
                        s.packets as f64 / s.wall_seconds.max(1e-9),
                        s.engine.exchanges
                    );
                }
                shared.set_probes(p.probes());
                shared.publish(p.summary());
                shared.publish(s);
            })?;
            if progress {
                eprint!("\r\x1b[2K");
            }
            p.end_flows();
            let assessed = r.assess(&mut p);
            let flushed = p.finish();
            assessed?;
            r.report(&p.summary())?;
            flushed.context("writing observations failed")?;
            Ok(())
        }
        Cmd::Capture { capture, common } => {
            let r = Run {
                cfg: common.config(Some(&capture), sub)?,
                quiet: common.quiet,
            };
            init_logging(&r.cfg);
            let c = &r.cfg.capture;
            let (mut src, what) = if let Some(addr) = c.vxlan_listen.or(c.geneve_listen) {
                let kind = if c.vxlan_listen.is_some() {
                    apitap_capture::source::ListenKind::Vxlan
                } else {
                    apitap_capture::source::ListenKind::Geneve
                };
                let src =
                    PacketSource::udp_listen(addr, kind, c.buffer_mb.max(1) as usize * (1 << 20))?;
                (src, format!("{kind:?} mirror on udp {addr}"))
            } else {
                let Some(iface) = c.interface.clone() else {
                    bail!("no interface: pass --interface IFACE (list them with `apitap interfaces`), set capture.interface, or use --vxlan-listen ADDR");
                };
                let opts = LiveOptions {
                    iface,
                    bpf: c.bpf.clone(),
                    snaplen: c.snaplen,
                    promisc: c.promisc,
                    buffer_bytes: c.buffer_mb.saturating_mul(1 << 20),
                    timeout_ms: 500,
                };
                let src = PacketSource::live(&opts)?;
                let what = format!("{} (link type {})", opts.iface, src.linktype());
                (src, what)
            };
            let mut p = r.pipeline(true)?;
            let shared = r.metrics()?;
            r.drop_privileges()?;
            shared.capture_open.store(true, Ordering::Relaxed);
            shared.set_probes(p.probes());
            shared.publish(p.summary());
            if !r.quiet {
                eprintln!("apitap: capturing on {what}; SIGINT or SIGTERM stops");
            }
            let stop = stop_flag()?;
            let hup = hup_flag()?;
            let mut last_report = Instant::now();
            let mut reported_drops = 0u64;
            let mut last_inventory = Instant::now();
            let mut last_publish = Instant::now();
            let interval = Duration::from_secs(r.cfg.outputs.inventory_interval_secs.max(1));
            p.run_source(&mut src, &stop, |p| {
                if hup.swap(false, Ordering::Relaxed) {
                    r.reload(p);
                }
                let _ = p.flush();
                if last_publish.elapsed() >= Duration::from_secs(1) {
                    last_publish = Instant::now();
                    shared.set_probes(p.probes());
                    shared.publish(p.summary());
                    shared.publish(p.summary());
                }
                if last_inventory.elapsed() >= interval {
                    last_inventory = Instant::now();
                    if let Err(e) = r.assess(p) {
                        error!("{e:#}");
                    }
                }
                if last_report.elapsed() >= REPORT_EVERY {
                    last_report = Instant::now();
                    let s = p.summary();
                    let d = s.capture_drops.unwrap_or_default();
                    info!(
                        packets = s.packets,
                        flows_active = p.active_flows(),
                        exchanges = s.engine.exchanges,
                        kernel_dropped = d.kernel_dropped,
                        if_dropped = d.if_dropped,
                        "progress"
                    );
                    let lost = d.kernel_dropped + d.if_dropped;
                    if lost > reported_drops {
                        warn!(
                            dropped = lost - reported_drops,
                            "packets dropped before apitap saw them since the last report; raise --buffer-mb or --workers, or narrow --bpf"
                        );
                        reported_drops = lost;
                    }
                }
            })?;
            let drops = src.drops();
            if let Some(d) = &drops {
                if d.kernel_dropped > 0 {
                    warn!(
                        kernel_dropped = d.kernel_dropped,
                        "the kernel dropped packets; raise --buffer-mb or --workers"
                    );
                }
            }
            p.end_flows();
            let assessed = r.assess(&mut p);
            let flushed = p.finish();
            assessed?;
            let mut s = p.summary();
            s.capture_drops = drops;
            r.report(&s)?;
            flushed.context("writing observations failed")?;
            Ok(())
        }
    }
}
