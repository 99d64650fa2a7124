//! The configuration file: one TOML document holding every option, layered as
//! file < command-line flags < `APITAP_*` environment variables.
//!
//! Owns the option names users write down. Everything is merged as TOML values first and
//! deserialised once, so every error — from the file, a flag or a variable — names the key path
//! it came from (`kafka.message_timeout_ms: invalid type: string "x", expected u64`), and unknown
//! keys are errors rather than silently ignored typos.
//!
//! Environment variables map by section: `APITAP_<SECTION>_<KEY>` sets `<section>.<key>`
//! (`APITAP_CAPTURE_INTERFACE=eth1`, `APITAP_FLOWS_MAX_FLOWS=100000`, `APITAP_USER=apitap`);
//! `APITAP_KAFKA_OPTION_<NAME>` sets the librdkafka property `<name>` with `_` read as `.`
//! (`APITAP_KAFKA_OPTION_SASL_PASSWORD` → `sasl.password`), and `APITAP_KAFKA_SASL_PASSWORD`
//! is accepted as a shorthand for that one. Values are read as TOML (`true`, `5`, `["a","b"]`)
//! and fall back to a string. Variables whose section is not a config section are ignored.
use crate::kafka::KafkaArgs;
use crate::redact::Redaction;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Top-level sections (and `user`), the names environment variables may address.
pub const SECTIONS: &[&str] = &[
    "capture",
    "pipeline",
    "flows",
    "parser",
    "inference",
    "redaction",
    "outputs",
    "kafka",
    "metrics",
    "log",
    "findings",
];

/// Everything the sensor can be told.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Drop to this user after opening the capture (empty: stay).
    pub user: Option<String>,
    /// Packet source.
    pub capture: Capture,
    /// Threads.
    pub pipeline: PipelineSection,
    /// Flow table.
    pub flows: Flows,
    /// Parsers.
    pub parser: ParserSection,
    /// Inference and inventory.
    pub inference: Inference,
    /// Redaction.
    pub redaction: RedactionSection,
    /// Outputs and files.
    pub outputs: Outputs,
    /// Kafka producer.
    pub kafka: KafkaArgs,
    /// Metrics endpoint.
    pub metrics: Metrics,
    /// Logging.
    pub log: Log,
    /// Risk findings.
    pub findings: FindingsSection,
}

/// `[findings]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindingsSection {
    /// Policy file (rules on/off, severities, exceptions, custom rules).
    pub policy: Option<PathBuf>,
    /// Ownership map (host and path globs → team, contact, tier).
    pub owners: Option<PathBuf>,
    /// Declared OpenAPI specs (JSON or YAML) for shadow/zombie detection.
    pub specs: Vec<PathBuf>,
    /// Event format: `native`, `ocsf` or `ecs`.
    pub format: crate::formats::Format,
}

/// `[capture]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capture {
    /// Interface (`any` for all).
    pub interface: Option<String>,
    /// Kernel BPF filter.
    pub bpf: Option<String>,
    /// Bytes captured per packet.
    pub snaplen: i32,
    /// Promiscuous mode.
    pub promisc: bool,
    /// Kernel buffer, MiB.
    pub buffer_mb: i32,
    /// Receive a VXLAN mirror on this UDP address instead of capturing.
    pub vxlan_listen: Option<SocketAddr>,
    /// Receive a Geneve mirror on this UDP address instead of capturing.
    pub geneve_listen: Option<SocketAddr>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            interface: None,
            bpf: None,
            snaplen: 65535,
            promisc: false,
            buffer_mb: 256,
            vxlan_listen: None,
            geneve_listen: None,
        }
    }
}

/// `[pipeline]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// Whether a worker with a backlog hands parsed exchanges to idle workers for inference
    /// and output; unset = on for live capture, off for replay (see `PipelineConfig`).
    pub share_exchanges: Option<bool>,
}

/// `[flows]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flows {
    /// Connections tracked at once by the whole process; each worker's table gets
    /// `ceil(max_flows / workers)`.
    pub max_flows: usize,
    /// Idle connections are closed after this many seconds of capture time.
    pub idle_timeout_secs: u64,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            max_flows: 262_144,
            idle_timeout_secs: 120,
        }
    }
}

/// `[parser]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParserSection {
    /// Bytes of each body kept for inspection.
    pub body_prefix_bytes: usize,
    /// Bytes the parsers of one worker may keep between packets, all its connections together
    /// (see `apitap_parsers::ParserConfig::memory_budget_bytes`).
    pub memory_budget_bytes: usize,
}

impl Default for ParserSection {
    fn default() -> Self {
        ParserSection {
            body_prefix_bytes: 65_536,
            memory_budget_bytes: apitap_parsers::ParserConfig::default().memory_budget_bytes,
        }
    }
}

/// `[inference]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inference {
    /// Endpoint, auth, schema inference and the inventory.
    pub enabled: bool,
    /// Endpoint records kept per worker.
    pub max_endpoints: usize,
    /// Distinct values at one path position before it becomes a parameter.
    pub param_threshold: usize,
    /// Decode and walk bodies (schemas, sensitive data in bodies).
    pub bodies: bool,
}

impl Default for Inference {
    fn default() -> Self {
        let i = crate::inspect::InspectConfig::default();
        Inference {
            enabled: true,
            max_endpoints: crate::inventory::InventoryConfig::default().max_endpoints,
            param_threshold: i.templates.param_threshold,
            bodies: i.bodies,
        }
    }
}

/// `[redaction]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionSection {
    /// `mask`, `hash` or `off`.
    pub mode: Redaction,
    /// Key of `hash` mode.
    pub salt: Option<String>,
}

/// `[outputs]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    /// `stdout`, `jsonl:PATH`, `kafka://HOST:PORT/TOPIC`.
    pub targets: Vec<String>,
    /// Counters as JSON at exit.
    pub stats_json: Option<PathBuf>,
    /// Inventory file.
    pub inventory: Option<PathBuf>,
    /// Live capture rewrites the inventory this often.
    pub inventory_interval_secs: u64,
    /// OpenAPI output (file or directory).
    pub openapi: Option<PathBuf>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            targets: Vec::new(),
            stats_json: None,
            inventory: None,
            inventory_interval_secs: 300,
            openapi: None,
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of /metrics, /healthz, /readyz, /status.
    pub listen: Option<SocketAddr>,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `error`, `warn`, `info`, `debug`, `trace` (or a tracing filter directive).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Configuration errors, each naming where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key has a bad value or does not exist.
    #[error("{key}: {message}")]
    Key {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Layers being merged before the one deserialisation.
#[derive(Debug, Default)]
pub struct Layers {
    table: Table,
}

impl Layers {
    /// Starts from a file (or nothing).
    pub fn from_file(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Layers::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_str(&text, path)
    }

    /// Starts from TOML text (`origin` names it in errors).
    pub fn from_str(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let table: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Layers { table })
    }

    /// Sets a dotted key (`capture.interface`), replacing what lower layers said.
    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        let mut t = &mut self.table;
        let mut parts = key.split('.').peekable();
        while let Some(p) = parts.next() {
            if parts.peek().is_none() {
                t.insert(p.to_string(), v.into());
                return;
            }
            let e = t
                .entry(p.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !e.is_table() {
                *e = Value::Table(Table::new());
            }
            let Value::Table(next) = e else { return };
            t = next;
        }
    }

    fn table_mut(&mut self, dotted: &str) -> Option<&mut Table> {
        let mut t = &mut self.table;
        for p in dotted.split('.') {
            t = t.get_mut(p)?.as_table_mut()?;
        }
        Some(t)
    }

    /// Applies `APITAP_*` variables from `vars`.
    pub fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) {
        let mut vars: Vec<(String, String)> = vars.collect();
        vars.sort();
        for (k, raw) in vars {
            let Some(rest) = k.strip_prefix("APITAP_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let v = scalar(&raw);
            if lower == "user" {
                self.set("user", v);
                continue;
            }
            if lower == "kafka_sasl_password" {
                self.merge_option("sasl.password", &raw);
                continue;
            }
            if let Some(opt) = lower.strip_prefix("kafka_option_") {
                self.merge_option(&opt.replace('_', "."), &raw);
                continue;
            }
            let Some((section, key)) = lower.split_once('_') else {
                continue;
            };
            if SECTIONS.contains(&section) && !key.is_empty() {
                self.set(&format!("{section}.{key}"), v);
            }
        }
    }

    /// Sets one librdkafka property (`kafka.options`); properties are strings whatever they
    /// look like.
    pub fn merge_option(&mut self, name: &str, raw: &str) {
        let v = Value::String(raw.to_string());
        let has = self.table_mut("kafka.options").is_some();
        if !has {
            self.set("kafka.options", Value::Table(Table::new()));
        }
        if let Some(t) = self.table_mut("kafka.options") {
            t.insert(name.to_string(), v);
        }
    }

    /// Deserialises the merged layers.
    pub fn build(self) -> Result<Config, ConfigError> {
        let v = Value::Table(self.table);
        serde_path_to_error::deserialize(v).map_err(|e| ConfigError::Key {
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

/// A variable's value: TOML when it parses as a value, else the raw string.
fn scalar(raw: &str) -> Value {
    #[derive(Deserialize)]
    struct W {
        v: Value,
    }
    match toml::from_str::<W>(&format!("v = {raw}")) {
        Ok(w) => w.v,
        Err(_) => Value::String(raw.to_string()),
    }
}

/// `apitap config example`: every key with its default and what it does.
const EXAMPLE: &str = include_str!("../docs/apitap.example.toml");

/// The example configuration with the built-in defaults filled in.
pub fn example() -> String {
    EXAMPLE.replace(
        "PARAM_THRESHOLD",
        &Inference::default().param_threshold.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Value::Table(t) = v {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() && p != "kafka.options" {
                    keys(&p, v, out);
                } else {
                    out.push(p);
                }
            }
        }
    }

    #[test]
    fn example_parses_and_documents_every_key() {
        let cfg = Layers::from_str(&example(), Path::new("example"))
            .and_then(Layers::build)
            .expect("example parses");
        assert_eq!(cfg.capture.snaplen, 65535);
        // Every key of the full default config (all optional keys set) must be in the
        // example, commented or not.
        let mut all = Config {
            user: Some(String::new()),
            ..Config::default()
        };
        all.capture.interface = Some(String::new());
        all.capture.bpf = Some(String::new());
        all.capture.vxlan_listen = "0.0.0.0:4789".parse().ok();
        all.pipeline.share_exchanges = Some(true);
        all.capture.geneve_listen = "0.0.0.0:6081".parse().ok();
        all.redaction.salt = Some(String::new());
        all.outputs.stats_json = Some("x".into());
        all.outputs.inventory = Some("x".into());
        all.outputs.openapi = Some("x".into());
        all.metrics.listen = "0.0.0.0:9464".parse().ok();
        all.findings.policy = Some("x".into());
        all.findings.owners = Some("x".into());
        let v = Value::try_from(&all).expect("serialises");
        let mut ks = Vec::new();
        keys("", &v, &mut ks);
        // Commented-out settings (`# key = value`) count as documented; prose does not.
        let text: String = example()
            .lines()
            .filter_map(|l| {
                let t = l.trim_start_matches('#').trim_start();
                let is_setting = t.starts_with('[')
                    || t.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty()
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "_.\"".contains(c))
                    });
                is_setting.then_some(t)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let documented =
            Layers::from_str(&text, Path::new("uncommented")).expect("uncommented example parses");
        let mut doc_keys = Vec::new();
        keys("", &Value::Table(documented.table), &mut doc_keys);
        for k in ks {
            assert!(
                doc_keys.contains(&k),
                "{k} is not documented in the example"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Layers::from_str("[flows]\nmax_flows = \"many\"\n", Path::new("f"))
            .and_then(Layers::build)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("flows.max_flows:"), "{e}");
        let e = Layers::from_str("[capture]\ninterfac = \"eth0\"\n", Path::new("f"))
            .and_then(Layers::build)
            .unwrap_err()
            .to_string();
        assert!(e.contains("interfac"), "{e}");
        let e = Layers::from_str("[flows\n", Path::new("f.toml")).unwrap_err();
        assert!(e.to_string().contains("f.toml"), "{e}");
    }

    #[test]
    fn layers_override_in_order() {
        let mut l = Layers::from_str(
            "[capture]\ninterface = \"eth0\"\nsnaplen = 1500\n[flows]\nmax_flows = 10\n",
            Path::new("f"),
        )
        .expect("parses");
        l.set("capture.interface", "eth1"); // a flag
        l.apply_env(
            [
                ("APITAP_CAPTURE_INTERFACE".to_string(), "eth2".to_string()),
                ("APITAP_FLOWS_MAX_FLOWS".to_string(), "20".to_string()),
                ("APITAP_SKIP_KAFKA".to_string(), "1".to_string()),
                ("APITAP_KAFKA_SASL_PASSWORD".to_string(), "pw".to_string()),
                ("HOME".to_string(), "/root".to_string()),
            ]
            .into_iter(),
        );
        let c = l.build().expect("builds");
        assert_eq!(c.capture.interface.as_deref(), Some("eth2"));
        assert_eq!(c.capture.snaplen, 1500);
        assert_eq!(c.flows.max_flows, 20);
        assert_eq!(
            c.kafka.options.get("sasl.password").map(String::as_str),
            Some("pw")
        );
    }
}
