//! Kafka output: `--output kafka://HOST:PORT[,HOST:PORT…]/TOPIC`.
//!
//! Owns the producer side of the Kafka protocol (through librdkafka, bundled by `rdkafka`):
//! topic per event kind, message key, headers, the bounded producer queue and what happens
//! when it is full, delivery accounting, topic creation and the startup check.
//!
//! Delivery guarantees, and the librdkafka facts they rest on:
//! - `acks=all` and `enable.idempotence=true` by default: the broker dedups retries and keeps
//!   one key's messages (one partition) in order across reconnects.
//! - The producer queue is librdkafka's own, bounded by `queue.buffering.max.messages` and
//!   `queue.buffering.max.kbytes` (set from `--kafka-queue-messages`/`--kafka-queue-mib`;
//!   librdkafka's 1 GiB default is not a sensor's memory budget). During an outage it keeps
//!   what fits and reconnects by itself. When it is full, `block` waits (replay: never drop) and
//!   `drop` counts (live capture: never stall the pipeline).
//! - A queued message fails only after `message.timeout.ms`; failures are counted by error.
//! - Dropping a producer purges its queue after a 500 ms flush, so [`KafkaSink::close`] flushes
//!   with `--kafka-flush-timeout-secs` first and reports what is still undelivered.
//!
//! Every loss is counted ([`SinkStats`]) and logged at most once per [`LOG_EVERY`].
use crate::sink::{Event, EventKind, Sink, SinkError, SinkProbe, SinkStats};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default topic of `http_exchange` events.
pub const TOPIC_EXCHANGES: &str = "apitap.exchanges";
/// Default topic of inventory events.
pub const TOPIC_INVENTORY: &str = "apitap.inventory";
/// Default topic of risk findings.
pub const TOPIC_FINDINGS: &str = "apitap.findings";

/// Losses and broker errors are logged at most once per this interval (with a count of what
/// happened since), never once per message.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How often a live capture retries the broker when it was unreachable at startup.
const SETUP_RETRY: Duration = Duration::from_secs(5);

/// Pause between attempts to enqueue into a full queue under `block`.
const BLOCK_PAUSE: Duration = Duration::from_millis(2);

/// Kafka producer settings from the command line and the `[kafka]` config section (same names).
///
/// ```toml
/// [kafka]
/// # brokers = "kafka1:9092,kafka2:9092"   # overrides the brokers of the kafka:// output
/// # topic_exchanges = "apitap.exchanges"  # when the kafka:// URL names no topic
/// topic_inventory = "apitap.inventory"
/// topic_findings = "apitap.findings"
/// compression = "zstd"                    # none, gzip, snappy, lz4, zstd
/// acks = "all"
/// idempotence = true
/// queue_messages = 1000000
/// queue_mib = 256
/// message_timeout_ms = 300000
/// # backpressure = "block"                # default: block for replay, drop for capture
/// flush_timeout_secs = 30
/// startup_timeout_secs = 10
/// create_topics = true
/// partitions = 3
/// replication = -1                        # -1: the broker's default.replication.factor
/// # sensor_id = "sensor-eu-1"             # default: the host name
/// [kafka.options]                         # any librdkafka property, applied last
/// # "security.protocol" = "SASL_SSL"
/// # "sasl.mechanisms" = "SCRAM-SHA-512"
/// # "linger.ms" = "20"
/// ```
#[derive(clap::Args, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[command(next_help_heading = "Kafka output (with --output kafka://HOST:PORT/TOPIC)")]
#[serde(default, deny_unknown_fields)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`; overrides those of the kafka:// output.
    #[arg(long = "kafka-brokers", value_name = "HOST:PORT,…")]
    #[serde(deserialize_with = "de_brokers")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Topic of `http_exchange` events when the kafka:// output names none
    /// [default: apitap.exchanges].
    #[arg(long = "kafka-topic-exchanges", value_name = "TOPIC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_exchanges: Option<String>,
    /// Topic of inventory events (endpoint discovered, sensitive data, auth changes).
    #[arg(long = "kafka-topic-inventory", value_name = "TOPIC", default_value = TOPIC_INVENTORY)]
    pub topic_inventory: String,
    /// Topic of risk findings.
    #[arg(long = "kafka-topic-findings", value_name = "TOPIC", default_value = TOPIC_FINDINGS)]
    pub topic_findings: String,
    /// Batch compression.
    #[arg(long = "kafka-compression", value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// Acknowledgements the leader waits for: `all` (every in-sync replica), `1` or `0`.
    #[arg(long = "kafka-acks", value_name = "ACKS", default_value = "all")]
    pub acks: String,
    /// Idempotent producer: retries are neither duplicated nor reordered (needs acks=all).
    #[arg(long = "kafka-idempotence", value_name = "BOOL", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub idempotence: bool,
    /// Any librdkafka property, repeatable, applied last: `security.protocol=SASL_SSL`,
    /// `sasl.username=…`, `ssl.ca.location=…`, `linger.ms=20` …
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub option: Vec<KafkaOption>,
    /// librdkafka properties from the config file (`[kafka.options]`); `--kafka-option` wins.
    #[arg(skip)]
    #[serde(deserialize_with = "de_options")]
    pub options: BTreeMap<String, String>,
    /// Most messages waiting in the producer queue (undelivered, including an outage's
    /// backlog).
    #[arg(
        long = "kafka-queue-messages",
        value_name = "N",
        default_value_t = 1_000_000
    )]
    pub queue_messages: u32,
    /// Most memory the producer queue may hold, MiB.
    #[arg(long = "kafka-queue-mib", value_name = "MIB", default_value_t = 256)]
    pub queue_mib: u32,
    /// How long a queued message may wait for the broker before it fails (and is counted):
    /// the longest outage survived without loss.
    #[arg(
        long = "kafka-message-timeout-ms",
        value_name = "MS",
        default_value_t = 300_000
    )]
    pub message_timeout_ms: u64,
    /// When the queue is full: `block` the pipeline or `drop` the event (counted)
    /// [default: block for replay, drop for capture].
    #[arg(long = "kafka-backpressure", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backpressure: Option<Backpressure>,
    /// At the end of a run, wait this long for queued messages to be delivered.
    #[arg(
        long = "kafka-flush-timeout-secs",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub flush_timeout_secs: u64,
    /// At startup, wait this long for the brokers (a replay then fails; a capture starts
    /// anyway, buffers and retries).
    #[arg(
        long = "kafka-startup-timeout-secs",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub startup_timeout_secs: u64,
    /// Create missing topics at startup (brokers often do not create them on produce).
    #[arg(long = "kafka-create-topics", value_name = "BOOL", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// Partitions of created topics.
    #[arg(long = "kafka-partitions", value_name = "N", default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of created topics (-1: the broker's default).
    #[arg(long = "kafka-replication", value_name = "N", default_value_t = -1,
          allow_negative_numbers = true)]
    pub replication: i32,
    /// `sensor_id` header of every message [default: the host name].
    #[arg(long = "kafka-sensor-id", value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
}

impl Default for KafkaArgs {
    fn default() -> Self {
        KafkaArgs {
            brokers: None,
            topic_exchanges: None,
            topic_inventory: TOPIC_INVENTORY.into(),
            topic_findings: TOPIC_FINDINGS.into(),
            compression: Compression::Zstd,
            acks: "all".into(),
            idempotence: true,
            option: Vec::new(),
            options: BTreeMap::new(),
            queue_messages: 1_000_000,
            queue_mib: 256,
            message_timeout_ms: 300_000,
            backpressure: None,
            flush_timeout_secs: 30,
            startup_timeout_secs: 10,
            create_topics: true,
            partitions: 3,
            replication: -1,
            sensor_id: None,
        }
    }
}

/// Batch compression codec (`compression.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard (best ratio on JSON at a low CPU cost).
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// What a full producer queue does to the next event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backpressure {
    /// Wait for room (the pipeline, and with it the replay, slows down).
    Block,
    /// Drop the event and count it.
    Drop,
}

/// One `--kafka-option KEY=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaOption {
    /// librdkafka property name.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl FromStr for KafkaOption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(KafkaOption {
                key: k.trim().to_string(),
                value: v.to_string(),
            }),
            _ => Err(format!(
                "expected KEY=VALUE (a librdkafka property such as linger.ms=20), got {s:?}"
            )),
        }
    }
}

/// `brokers` as a string (`"a:9092,b:9092"`) or a list of strings.
fn de_brokers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<B>::deserialize(d)?.map(|b| match b {
        B::One(s) => s,
        B::Many(v) => v.join(","),
    }))
}

/// `options` values as strings, numbers or booleans (librdkafka takes them all as text).
fn de_options<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let m = BTreeMap::<String, V>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                V::S(s) => s,
                V::I(i) => i.to_string(),
                V::F(f) => f.to_string(),
                V::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// A parsed `kafka://HOST:PORT[,HOST:PORT…][/TOPIC]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaUrl {
    /// `HOST:PORT` entries, possibly none (then `--kafka-brokers` must name them).
    pub brokers: Vec<String>,
    /// The exchanges topic, when given.
    pub topic: Option<String>,
}

impl fmt::Display for KafkaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kafka://{}", self.brokers.join(","))?;
        if let Some(t) = &self.topic {
            write!(f, "/{t}")?;
        }
        Ok(())
    }
}

impl FromStr for KafkaUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("kafka://")
            .ok_or_else(|| format!("{s:?} is not a kafka:// URL"))?;
        let (hosts, topic) = match rest.split_once('/') {
            Some((h, t)) => (h, t),
            None => (rest, ""),
        };
        let brokers = parse_brokers(hosts)?;
        let topic = if topic.is_empty() {
            None
        } else {
            check_topic(topic)?;
            Some(topic.to_string())
        };
        Ok(KafkaUrl { brokers, topic })
    }
}

/// `HOST:PORT[,HOST:PORT…]`, each with a port; `[v6]:PORT` for IPv6 literals.
pub fn parse_brokers(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for b in s.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let Some((host, port)) = b.rsplit_once(':') else {
            return Err(format!(
                "broker {b:?} needs a port: HOST:PORT, e.g. {b}:9092"
            ));
        };
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.is_empty() || (host.contains(':') && !bracketed) {
            return Err(format!(
                "broker {b:?}: expected HOST:PORT (IPv6 as [ADDR]:PORT)"
            ));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("broker {b:?}: port {port:?} is not a port number")),
        }
        out.push(b.to_string());
    }
    Ok(out)
}

/// Kafka's topic name rule: 1–249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_topic(t: &str) -> Result<(), String> {
    let ok_chars = t
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if t.is_empty() || t.len() > 249 || !ok_chars || t == "." || t == ".." {
        return Err(format!(
            "invalid Kafka topic {t:?}: 1 to 249 characters of A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// The host name for the `sensor_id` header, without a libc call.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "apitap".into())
}

/// Rate limit for a log line: the first occurrence and then one per [`LOG_EVERY`].
#[derive(Debug, Default)]
struct RateLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLog {
    /// Whether to log now; when yes, how many occurrences were suppressed since the last line.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Counters shared by the sink, librdkafka's callbacks and the summary.
#[derive(Debug, Default)]
struct Shared {
    name: String,
    accepted: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    failed_by_error: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
    dropped: AtomicU64,
    undelivered: AtomicU64,
    /// A broker answered recently (metadata, a delivery, or `UP` in the statistics).
    ready: AtomicBool,
    /// Set once [`KafkaSink::close`] has counted what is left: later purge reports are not
    /// failures of their own.
    closed: AtomicBool,
    /// Topics exist (or were created); a live capture retries until they do.
    set_up: AtomicBool,
    last_error: Mutex<Option<String>>,
    fail_log: Mutex<RateLog>,
    conn_log: Mutex<RateLog>,
}

impl Shared {
    fn snapshot(&self) -> SinkStats {
        SinkStats {
            sink: self.name.clone(),
            accepted: self.accepted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            failed_by_error: self
                .failed_by_error
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            retries: self.retries.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            undelivered: self.undelivered.load(Ordering::Relaxed),
            ready: self.is_ready(),
        }
    }

    fn is_ready(&self) -> bool {
        self.set_up.load(Ordering::Relaxed) && self.ready.load(Ordering::Relaxed)
    }

    fn count_failure(&self, what: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.failed_by_error.lock() {
            // The key set is librdkafka's error codes: small and bounded.
            *m.entry(what.to_string()).or_insert(0) += 1;
        }
        let hit = self.fail_log.lock().ok().and_then(|mut l| l.hit());
        if let Some(more) = hit {
            eprintln!(
                "apitap: {}: a message could not be delivered ({what}); {} failed so far \
                 ({more} since the last report)",
                self.name,
                self.failed.load(Ordering::Relaxed)
            );
        }
    }

    /// Remembers librdkafka's latest complaint and logs it (rate-limited) once the sink is
    /// set up: before that, the startup error says it all.
    fn note_broker_error(&self, reason: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(reason.to_string());
        }
        if self.set_up.load(Ordering::Relaxed) {
            self.log_broker_error(reason);
        }
    }

    fn log_broker_error(&self, reason: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let hit = self.conn_log.lock().ok().and_then(|mut l| l.hit());
        if let Some(more) = hit {
            let more = match more {
                0 => String::new(),
                n => format!(" (and {n} more broker errors since the last report)"),
            };
            eprintln!(
                "apitap: {}: {reason}{more}; events stay queued (up to the queue bound) and are \
                 sent once the broker is back",
                self.name
            );
        }
    }
}

impl SinkProbe for Shared {
    fn snapshot(&self) -> SinkStats {
        Shared::snapshot(self)
    }
    fn is_ready(&self) -> bool {
        Shared::is_ready(self)
    }
}

/// librdkafka callbacks: delivery reports, statistics (retries, broker state), errors.
struct Ctx {
    shared: Arc<Shared>,
}

/// The part of librdkafka's statistics JSON that is read.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: BTreeMap<String, BrokerStats>,
}

#[derive(Deserialize)]
struct BrokerStats {
    #[serde(default)]
    state: String,
    #[serde(default)]
    nodeid: i32,
    #[serde(default)]
    txretries: u64,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.shared
                .note_broker_error(&format!("librdkafka {fac}: {msg}"));
        }
    }

    fn stats_raw(&self, json: &[u8]) {
        let Ok(s) = serde_json::from_slice::<Stats>(json) else {
            return;
        };
        let retries = s.brokers.values().map(|b| b.txretries).sum();
        self.shared.retries.store(retries, Ordering::Relaxed);
        // Bootstrap entries (nodeid -1) go down once the real brokers are learnt.
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        self.shared.ready.store(up, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.shared.ready.store(false, Ordering::Relaxed);
        }
        self.shared.note_broker_error(reason);
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                self.shared.ready.store(true, Ordering::Relaxed);
            }
            // Counted as undelivered by `close` already.
            Err(_) if self.shared.closed.load(Ordering::Relaxed) => {}
            Err((e, _)) => {
                let what = match e.rdkafka_error_code() {
                    Some(c) => format!("{c:?}"),
                    None => e.to_string(),
                };
                self.shared.count_failure(&what);
            }
        }
    }
}

/// The settings a sink is opened with, resolved from the URL and [`KafkaArgs`].
#[derive(Clone, Debug)]
struct Resolved {
    name: String,
    brokers: String,
    /// Indexed by [`kind_index`].
    topics: [String; 3],
    block: bool,
    flush_timeout: Duration,
    startup_timeout: Duration,
    create_topics: bool,
    partitions: i32,
    replication: i32,
    sensor_id: String,
    /// Every librdkafka property the producer is created with, in order.
    producer: Vec<(String, String)>,
    /// Properties the admin client shares with the producer (connection and security).
    passthrough: Vec<(String, String)>,
}

fn kind_index(k: EventKind) -> usize {
    match k {
        EventKind::Exchange => 0,
        EventKind::Inventory => 1,
        EventKind::Finding => 2,
    }
}

const KINDS: [EventKind; 3] = [
    EventKind::Exchange,
    EventKind::Inventory,
    EventKind::Finding,
];

/// Errors opening a Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// The settings are inconsistent or malformed.
    #[error("{0}")]
    Config(String),
    /// librdkafka refused the configuration.
    #[error("{url}: librdkafka refused the configuration: {source} (check --kafka-option values)")]
    Client {
        /// The output.
        url: String,
        /// The cause.
        source: KafkaError,
    },
    /// No broker answered in time.
    #[error(
        "cannot reach Kafka broker(s) {brokers} within {secs}s: {reason}; check --output {url} \
         (or --kafka-brokers) and that the broker is up"
    )]
    Unreachable {
        /// The bootstrap list.
        brokers: String,
        /// The timeout.
        secs: u64,
        /// librdkafka's last word.
        reason: String,
        /// The output.
        url: String,
    },
    /// A topic is missing or could not be created.
    #[error("{0}")]
    Topics(String),
}

impl Resolved {
    fn new(url: &KafkaUrl, a: &KafkaArgs, live: bool) -> Result<Self, KafkaSetupError> {
        let cfg = KafkaSetupError::Config;
        let brokers = match &a.brokers {
            Some(b) => parse_brokers(b).map_err(cfg)?,
            None => url.brokers.clone(),
        };
        if brokers.is_empty() {
            return Err(cfg(format!(
                "{url}: no brokers; write them in the URL (kafka://HOST:9092/TOPIC) or give \
                 --kafka-brokers HOST:PORT"
            )));
        }
        let exchanges = url
            .topic
            .clone()
            .or_else(|| a.topic_exchanges.clone())
            .unwrap_or_else(|| TOPIC_EXCHANGES.into());
        let topics = [
            exchanges,
            a.topic_inventory.clone(),
            a.topic_findings.clone(),
        ];
        for t in &topics {
            check_topic(t).map_err(cfg)?;
        }
        if a.queue_messages == 0 || a.queue_mib == 0 {
            return Err(cfg(
                "--kafka-queue-messages and --kafka-queue-mib must be > 0".into(),
            ));
        }
        // librdkafka's limits: 2^31-1 messages and 2^31-1 KiB.
        let kbytes = u64::from(a.queue_mib)
            .saturating_mul(1024)
            .min(i32::MAX as u64);
        let messages = u64::from(a.queue_messages).min(i32::MAX as u64);
        if a.message_timeout_ms > i32::MAX as u64 {
            return Err(cfg(
                "--kafka-message-timeout-ms is at most 2147483647".into()
            ));
        }
        if a.partitions < 1 || a.replication == 0 || a.replication < -1 {
            return Err(cfg(
                "--kafka-partitions must be >= 1 and --kafka-replication >= 1 (or -1)".into(),
            ));
        }
        let brokers = brokers.join(",");
        let mut passthrough: Vec<(String, String)> = a
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        passthrough.extend(a.option.iter().map(|o| (o.key.clone(), o.value.clone())));
        let mut producer: Vec<(String, String)> = [
            ("bootstrap.servers", brokers.clone()),
            ("client.id", "apitap".to_string()),
            ("compression.type", a.compression.as_str().to_string()),
            ("acks", a.acks.clone()),
            ("enable.idempotence", a.idempotence.to_string()),
            ("queue.buffering.max.messages", messages.to_string()),
            ("queue.buffering.max.kbytes", kbytes.to_string()),
            ("message.timeout.ms", a.message_timeout_ms.to_string()),
            // Retries and broker state are read from the statistics.
            ("statistics.interval.ms", "1000".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        producer.extend(passthrough.iter().cloned());
        let name = KafkaUrl {
            brokers: brokers.split(',').map(str::to_string).collect(),
            topic: Some(topics[0].clone()),
        }
        .to_string();
        Ok(Resolved {
            name,
            brokers,
            topics,
            block: a.backpressure.unwrap_or(if live {
                Backpressure::Drop
            } else {
                Backpressure::Block
            }) == Backpressure::Block,
            flush_timeout: Duration::from_secs(a.flush_timeout_secs),
            startup_timeout: Duration::from_secs(a.startup_timeout_secs.max(1)),
            create_topics: a.create_topics,
            partitions: a.partitions,
            replication: a.replication,
            sensor_id: a.sensor_id.clone().unwrap_or_else(hostname),
            producer,
            passthrough,
        })
    }

    fn admin_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", "apitap-admin");
        for (k, v) in &self.passthrough {
            c.set(k, v);
        }
        // Never let the setup's own client log through librdkafka's default (stderr) logger.
        c.set_log_level(RDKafkaLogLevel::Critical);
        c
    }

    /// Checks that a broker answers and that the topics exist, creating them when allowed.
    fn prepare(&self, shared: &Shared) -> Result<(), KafkaSetupError> {
        let admin: AdminClient<DefaultClientContext> =
            self.admin_config()
                .create()
                .map_err(|source| KafkaSetupError::Client {
                    url: self.name.clone(),
                    source,
                })?;
        let md = admin
            .inner()
            .fetch_metadata(None, self.startup_timeout)
            .map_err(|e| {
                let last = shared.last_error.lock().ok().and_then(|e| e.clone());
                KafkaSetupError::Unreachable {
                    brokers: self.brokers.clone(),
                    secs: self.startup_timeout.as_secs(),
                    reason: match last {
                        Some(l) => format!("{e} ({l})"),
                        None => e.to_string(),
                    },
                    url: self.name.clone(),
                }
            })?;
        let mut missing: Vec<&str> = Vec::new();
        for t in &self.topics {
            let exists = md
                .topics()
                .iter()
                .any(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty());
            if !exists && !missing.contains(&t.as_str()) {
                missing.push(t);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if !self.create_topics {
            return Err(KafkaSetupError::Topics(format!(
                "{}: topic(s) {} do not exist; create them or leave --kafka-create-topics on",
                self.name,
                missing.join(", ")
            )));
        }
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.partitions,
                    TopicReplication::Fixed(self.replication),
                )
            })
            .collect();
        let opts = AdminOptions::new()
            .request_timeout(Some(self.startup_timeout))
            .operation_timeout(Some(self.startup_timeout));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| KafkaSetupError::Topics(format!("cannot start a runtime: {e}")))?;
        let res = rt
            .block_on(async {
                tokio::time::timeout(
                    self.startup_timeout + Duration::from_secs(1),
                    admin.create_topics(&new, &opts),
                )
                .await
            })
            .map_err(|_| {
                KafkaSetupError::Topics(format!(
                    "{}: creating topic(s) {} timed out",
                    self.name,
                    missing.join(", ")
                ))
            })?
            .map_err(|e| {
                KafkaSetupError::Topics(format!(
                    "{}: cannot create topic(s) {}: {e}",
                    self.name,
                    missing.join(", ")
                ))
            })?;
        for r in res {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(KafkaSetupError::Topics(format!(
                        "{}: cannot create topic {t}: {code} (partitions {}, replication {}; \
                         see --kafka-partitions/--kafka-replication, or create it beforehand)",
                        self.name, self.partitions, self.replication
                    )))
                }
            }
        }
        Ok(())
    }
}

/// A sink producing every event to Kafka.
pub struct KafkaSink {
    r: Resolved,
    producer: ThreadedProducer<Ctx>,
    /// Indexed by [`kind_index`]: the headers of each kind, copied per message.
    headers: [OwnedHeaders; 3],
    shared: Arc<Shared>,
    drop_log: RateLog,
    /// `dropped` as of the last drop report, and why the last event was dropped.
    drops_logged: u64,
    drop_why: &'static str,
    block_log: RateLog,
    /// Set by SIGINT/SIGTERM: a blocked write gives up instead of holding the shutdown.
    stopping: Arc<AtomicBool>,
    signals: Vec<signal_hook::SigId>,
    closed: bool,
}

impl KafkaSink {
    /// Creates the producer and, unless `live`, waits for the brokers and topics (failing
    /// after the startup timeout). A live sink starts at once and sets itself up in the
    /// background, buffering meanwhile.
    pub fn open(url: &KafkaUrl, args: &KafkaArgs, live: bool) -> Result<Self, KafkaSetupError> {
        let r = Resolved::new(url, args, live)?;
        let shared = Arc::new(Shared {
            name: r.name.clone(),
            ..Shared::default()
        });
        let mut cfg = ClientConfig::new();
        for (k, v) in &r.producer {
            cfg.set(k, v);
        }
        let producer: ThreadedProducer<Ctx> = cfg
            .create_with_context(Ctx {
                shared: Arc::clone(&shared),
            })
            .map_err(|source| KafkaSetupError::Client {
                url: r.name.clone(),
                source,
            })?;
        match r.prepare(&shared) {
            Ok(()) => {
                shared.set_up.store(true, Ordering::Relaxed);
                shared.ready.store(true, Ordering::Relaxed);
            }
            Err(e) if live => {
                eprintln!(
                    "apitap: {e}; capturing anyway: events are queued (up to the queue bound) \
                     and the broker is retried every {}s",
                    SETUP_RETRY.as_secs()
                );
                spawn_setup_retry(r.clone(), Arc::clone(&shared));
            }
            Err(e) => return Err(e),
        }
        let headers = KINDS.map(|k| {
            OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: "event_type",
                    value: Some(k.as_str()),
                })
                .insert(Header {
                    key: "schema_version",
                    value: Some(crate::observation::SCHEMA_VERSION),
                })
                .insert(Header {
                    key: "sensor_id",
                    value: Some(r.sensor_id.as_str()),
                })
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
            .into_iter()
            .filter_map(|s| signal_hook::flag::register(s, Arc::clone(&stopping)).ok())
            .collect();
        Ok(KafkaSink {
            r,
            producer,
            headers,
            shared,
            drop_log: RateLog::default(),
            drops_logged: 0,
            drop_why: "producer queue full",
            block_log: RateLog::default(),
            stopping,
            signals,
            closed: false,
        })
    }

    /// A broker answered recently and the topics exist (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    fn note_drop(&mut self, why: &'static str) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        self.drop_why = why;
        self.log_drops();
    }

    /// One line per [`LOG_EVERY`] at most, also from the periodic flush so that the end of a
    /// burst of drops is reported while it is news, not only at shutdown.
    fn log_drops(&mut self) {
        let n = self.shared.dropped.load(Ordering::Relaxed);
        if n > self.drops_logged && self.drop_log.hit().is_some() {
            eprintln!(
                "apitap: {}: {}: {} events dropped since the last report, {n} in all (queue \
                 bound --kafka-queue-messages/--kafka-queue-mib; {} queued)",
                self.r.name,
                self.drop_why,
                n - self.drops_logged,
                self.producer.in_flight_count()
            );
            self.drops_logged = n;
        }
    }
}

/// Keeps trying to reach the brokers and create the topics, for a live capture that started
/// without them.
fn spawn_setup_retry(r: Resolved, shared: Arc<Shared>) {
    let name = shared.name.clone();
    let res = std::thread::Builder::new()
        .name("apitap-kafka-setup".into())
        .spawn(move || loop {
            std::thread::sleep(SETUP_RETRY);
            if shared.closed.load(Ordering::Relaxed) {
                return;
            }
            match r.prepare(&shared) {
                Ok(()) => {
                    shared.set_up.store(true, Ordering::Relaxed);
                    shared.ready.store(true, Ordering::Relaxed);
                    eprintln!("apitap: {}: connected, topics ready", r.name);
                    return;
                }
                Err(e) => shared.log_broker_error(&e.to_string()),
            }
        });
    if let Err(e) = res {
        eprintln!("apitap: {name}: cannot start the setup thread: {e}");
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.r.name
    }

    fn write(&mut self, ev: &Event<'_>) -> Result<(), SinkError> {
        let i = kind_index(ev.kind);
        let mut rec = BaseRecord::to(&self.r.topics[i])
            .key(ev.key.as_bytes())
            .payload(ev.json)
            .headers(self.headers[i].clone());
        loop {
            match self.producer.send(rec) {
                Ok(()) => {
                    self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if !self.r.block {
                        self.note_drop("producer queue full");
                        return Ok(());
                    }
                    if self.stopping.load(Ordering::Relaxed) {
                        self.note_drop("stopping with the producer queue full");
                        return Ok(());
                    }
                    if let Some(more) = self.block_log.hit() {
                        eprintln!(
                            "apitap: {}: producer queue full ({} queued): waiting for the \
                             broker (blocked {more} more times since the last report)",
                            self.r.name,
                            self.producer.in_flight_count()
                        );
                    }
                    rec = back;
                    std::thread::sleep(BLOCK_PAUSE);
                }
                Err((e, _)) => {
                    let what = match e.rdkafka_error_code() {
                        Some(c) => format!("{c:?}"),
                        None => e.to_string(),
                    };
                    self.shared.count_failure(&what);
                    return Err(SinkError::Kafka {
                        sink: self.r.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// Nothing to push: librdkafka sends on its own (`linger.ms`), and this runs on every
    /// pipeline tick, which must not wait for the broker (see [`Sink::close`]). Reports drops
    /// that were not reported yet.
    fn flush(&mut self) -> Result<(), SinkError> {
        self.log_drops();
        Ok(())
    }

    /// Waits up to the flush timeout for the queue to drain, then counts and reports what is
    /// left. Fails when anything accepted was not delivered.
    fn close(&mut self) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let _ = self.producer.flush(self.r.flush_timeout);
        let left = self.producer.in_flight_count().max(0) as u64;
        self.shared.undelivered.store(left, Ordering::Relaxed);
        self.shared.closed.store(true, Ordering::Relaxed);
        let s = self.shared.snapshot();
        eprintln!("apitap: {}: {}", self.r.name, s.kv());
        if s.undelivered > 0 || s.failed > 0 {
            return Err(SinkError::Undelivered {
                sink: self.r.name.clone(),
                failed: s.failed,
                undelivered: s.undelivered,
            });
        }
        Ok(())
    }

    fn probe(&self) -> Option<Arc<dyn SinkProbe>> {
        Some(Arc::clone(&self.shared) as Arc<dyn SinkProbe>)
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // The producer's own drop purges after 500 ms: drain first.
        let _ = self.close();
        for id in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        k: KafkaArgs,
    }

    fn cli(args: &[&str]) -> Result<KafkaArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.k)
    }

    #[test]
    fn urls() {
        let u: KafkaUrl = "kafka://a:9092,b:9093/t.x-1".parse().unwrap();
        assert_eq!(u.brokers, ["a:9092", "b:9093"]);
        assert_eq!(u.topic.as_deref(), Some("t.x-1"));
        assert_eq!(u.to_string(), "kafka://a:9092,b:9093/t.x-1");
        let u: KafkaUrl = "kafka://[::1]:9092".parse().unwrap();
        assert_eq!(u.brokers, ["[::1]:9092"]);
        assert_eq!(u.topic, None);
        let u: KafkaUrl = "kafka://h:1/".parse().unwrap();
        assert_eq!(u.topic, None);
        let u: KafkaUrl = "kafka:///only-topic".parse().unwrap();
        assert!(u.brokers.is_empty());

        for bad in [
            "kafka://host/t",
            "kafka://host:0/t",
            "kafka://host:99999/t",
            "kafka://host:x/t",
            "kafka://:9092/t",
            "kafka://::1:9092/t",
            "kafka://h:1/bad topic",
            "kafka://h:1/a/b",
            "kafka://h:1/..",
            "kafkа://h:1/t",
        ] {
            assert!(bad.parse::<KafkaUrl>().is_err(), "{bad} accepted");
        }
        let long = format!("kafka://h:1/{}", "x".repeat(250));
        assert!(long.parse::<KafkaUrl>().is_err());
        let ok = format!("kafka://h:1/{}", "x".repeat(249));
        assert!(ok.parse::<KafkaUrl>().is_ok());
    }

    #[test]
    fn options_parse() {
        let o: KafkaOption = "sasl.password=a=b".parse().unwrap();
        assert_eq!((o.key.as_str(), o.value.as_str()), ("sasl.password", "a=b"));
        let o: KafkaOption = "linger.ms=".parse().unwrap();
        assert_eq!(o.value, "");
        assert!("linger.ms".parse::<KafkaOption>().is_err());
        assert!("=5".parse::<KafkaOption>().is_err());
    }

    #[test]
    fn clap_defaults_match_default() {
        assert_eq!(cli(&[]).unwrap(), KafkaArgs::default());
        let k = cli(&[
            "--kafka-brokers",
            "x:1,y:2",
            "--kafka-option",
            "linger.ms=20",
            "--kafka-option",
            "security.protocol=SSL",
            "--kafka-idempotence",
            "false",
            "--kafka-backpressure",
            "drop",
            "--kafka-replication",
            "-1",
            "--kafka-compression",
            "lz4",
        ])
        .unwrap();
        assert_eq!(k.brokers.as_deref(), Some("x:1,y:2"));
        assert_eq!(k.option.len(), 2);
        assert!(!k.idempotence);
        assert_eq!(k.backpressure, Some(Backpressure::Drop));
        assert_eq!(k.compression, Compression::Lz4);
        assert!(cli(&["--kafka-option", "novalue"]).is_err());
        assert!(cli(&["--kafka-compression", "brotli"]).is_err());
    }

    #[test]
    fn config_section_deserialises_with_the_same_names() {
        let k: KafkaArgs = toml::from_str(
            "brokers = [\"a:1\", \"b:2\"]\nqueue_mib = 64\nbackpressure = \"drop\"\n\
             [options]\n\"linger.ms\" = 20\n\"enable.ssl.certificate.verification\" = false\n\
             \"sasl.username\" = \"u\"\n",
        )
        .unwrap();
        assert_eq!(k.brokers.as_deref(), Some("a:1,b:2"));
        assert_eq!(k.queue_mib, 64);
        assert_eq!(k.backpressure, Some(Backpressure::Drop));
        assert_eq!(k.options["linger.ms"], "20");
        assert_eq!(k.options["enable.ssl.certificate.verification"], "false");
        assert_eq!(k.topic_inventory, TOPIC_INVENTORY);
        assert!(toml::from_str::<KafkaArgs>("queue_mb = 1").is_err());
        let back = toml::to_string(&KafkaArgs::default()).unwrap();
        assert_eq!(
            toml::from_str::<KafkaArgs>(&back).unwrap(),
            KafkaArgs::default()
        );
    }

    #[test]
    fn resolution_of_brokers_topics_and_modes() {
        let url: KafkaUrl = "kafka://u:1/ex".parse().unwrap();
        let mut a = KafkaArgs::default();
        let r = Resolved::new(&url, &a, false).unwrap();
        assert_eq!(r.brokers, "u:1");
        assert_eq!(r.topics, ["ex", TOPIC_INVENTORY, TOPIC_FINDINGS]);
        assert!(r.block, "replay blocks by default");
        assert!(
            !Resolved::new(&url, &a, true).unwrap().block,
            "live drops by default"
        );
        a.backpressure = Some(Backpressure::Block);
        assert!(Resolved::new(&url, &a, true).unwrap().block);

        a.brokers = Some("o:2,p:3".into());
        a.topic_exchanges = Some("ignored-when-url-has-one".into());
        a.option = vec!["acks=1".parse().unwrap()];
        a.options.insert("linger.ms".into(), "7".into());
        let r = Resolved::new(&url, &a, false).unwrap();
        assert_eq!(r.brokers, "o:2,p:3");
        assert_eq!(r.topics[0], "ex");
        assert_eq!(r.name, "kafka://o:2,p:3/ex");
        // Passthrough comes last, flags after the file, so they win in ClientConfig.
        let last: Vec<_> = r.producer.iter().rev().take(2).collect();
        assert_eq!(last[0], &("acks".to_string(), "1".to_string()));
        assert_eq!(last[1], &("linger.ms".to_string(), "7".to_string()));
        let kb = r
            .producer
            .iter()
            .find(|(k, _)| k == "queue.buffering.max.kbytes");
        assert_eq!(kb.map(|(_, v)| v.as_str()), Some("262144"));

        let no_topic: KafkaUrl = "kafka://u:1".parse().unwrap();
        let r = Resolved::new(&no_topic, &a, false).unwrap();
        assert_eq!(r.topics[0], "ignored-when-url-has-one");
        a.topic_exchanges = None;
        assert_eq!(
            Resolved::new(&no_topic, &a, false).unwrap().topics[0],
            TOPIC_EXCHANGES
        );

        let none: KafkaUrl = "kafka:///t".parse().unwrap();
        let e = Resolved::new(&none, &KafkaArgs::default(), false).unwrap_err();
        assert!(e.to_string().contains("--kafka-brokers"), "{e}");
        let bad = |f: fn(&mut KafkaArgs)| {
            let mut a = KafkaArgs::default();
            f(&mut a);
            Resolved::new(&url, &a, false).is_err()
        };
        assert!(bad(|a| a.topic_findings = "no spaces".into()));
        assert!(bad(|a| a.queue_messages = 0));
        assert!(bad(|a| a.queue_mib = 0));
        assert!(bad(|a| a.replication = 0));
        assert!(bad(|a| a.partitions = 0));
        assert!(!bad(|a| a.replication = 3));
        let big = KafkaArgs {
            queue_mib: u32::MAX,
            ..KafkaArgs::default()
        };
        let r = Resolved::new(&url, &big, false).unwrap();
        let kb = r
            .producer
            .iter()
            .find(|(k, _)| k == "queue.buffering.max.kbytes");
        assert_eq!(kb.map(|(_, v)| v.as_str()), Some("2147483647"));
    }

    #[test]
    fn rate_log_lets_one_line_through_per_interval() {
        let mut l = RateLog::default();
        assert_eq!(l.hit(), Some(0));
        assert_eq!(l.hit(), None);
        assert_eq!(l.hit(), None);
        l.last = Instant::now().checked_sub(LOG_EVERY);
        assert_eq!(l.hit(), Some(2));
    }

    #[test]
    fn a_bad_librdkafka_option_is_refused_at_open() {
        let url: KafkaUrl = "kafka://127.0.0.1:1/t".parse().unwrap();
        let a = KafkaArgs {
            option: vec!["no.such.property=1".parse().unwrap()],
            ..KafkaArgs::default()
        };
        let e = KafkaSink::open(&url, &a, false).err().expect("refused");
        assert!(e.to_string().contains("no.such.property"), "{e}");
    }

    /// librdkafka's in-process mock cluster: delivery accounting, and `drop` under an outage.
    mod mock {
        use super::*;
        use rdkafka::mocking::MockCluster;

        fn sink(
            cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
            f: impl FnOnce(&mut KafkaArgs),
        ) -> KafkaSink {
            // The mock cluster has no CreateTopics: create them its way (and so test the
            // path where every topic exists).
            for t in ["mock.ex", TOPIC_INVENTORY, TOPIC_FINDINGS] {
                cluster.create_topic(t, 1, 1).unwrap();
            }
            let url: KafkaUrl = format!("kafka://{}/mock.ex", cluster.bootstrap_servers())
                .parse()
                .unwrap();
            let mut a = KafkaArgs {
                replication: 1,
                partitions: 1,
                flush_timeout_secs: 5,
                startup_timeout_secs: 5,
                ..KafkaArgs::default()
            };
            f(&mut a);
            KafkaSink::open(&url, &a, false).expect("opens against the mock cluster")
        }

        fn ev(i: usize, buf: &mut String) -> Event<'_> {
            *buf = format!("{{\"n\":{i}}}");
            Event {
                kind: EventKind::Exchange,
                key: "k",
                json: buf.as_bytes(),
            }
        }

        #[test]
        fn everything_is_delivered_and_counted() {
            let c = MockCluster::new(1).unwrap();
            let mut s = sink(&c, |_| {});
            let mut b = String::new();
            for i in 0..500 {
                s.write(&ev(i, &mut b)).unwrap();
            }
            s.close().unwrap();
            let st = s.probe().unwrap().snapshot();
            assert_eq!((st.accepted, st.delivered, st.failed), (500, 500, 0));
            assert_eq!((st.dropped, st.undelivered), (0, 0));
        }

        #[test]
        fn drop_counts_exactly_what_did_not_fit_while_the_broker_is_down() {
            let c = MockCluster::new(1).unwrap();
            let mut s = sink(&c, |a| {
                a.backpressure = Some(Backpressure::Drop);
                a.queue_messages = 50;
            });
            c.broker_down(1).unwrap();
            let mut b = String::new();
            for i in 0..200 {
                s.write(&ev(i, &mut b)).unwrap();
            }
            let st = s.probe().unwrap().snapshot();
            assert_eq!(st.accepted, 50);
            assert_eq!(st.dropped, 150);
            c.broker_up(1).unwrap();
            s.close().unwrap();
            let st = s.probe().unwrap().snapshot();
            assert_eq!((st.delivered, st.undelivered, st.failed), (50, 0, 0));
        }

        #[test]
        fn what_cannot_be_delivered_by_the_flush_timeout_is_reported() {
            let c = MockCluster::new(1).unwrap();
            let mut s = sink(&c, |a| a.flush_timeout_secs = 1);
            c.broker_down(1).unwrap();
            let mut b = String::new();
            for i in 0..10 {
                s.write(&ev(i, &mut b)).unwrap();
            }
            let e = s.close().unwrap_err();
            assert!(e.to_string().contains("10 events still queued"), "{e}");
            let st = s.probe().unwrap().snapshot();
            assert_eq!((st.delivered, st.undelivered), (0, 10));
        }
    }
}
