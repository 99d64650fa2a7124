//! Where events go: the `--output` specs and the sinks behind them.
//!
//! Owns delivery. Every sink receives the same serialised event with its kind and key, so that
//! a sink that needs them (Kafka: topic per kind, message key, headers) slots in beside the
//! line-oriented ones without touching the pipeline.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;

/// What kind of event a message is (selects the Kafka topic later on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `http_exchange`.
    Exchange,
    /// Inventory changes: `endpoint_discovered`, `sensitive_data_discovered`, `auth_changed`.
    Inventory,
    /// Risk findings.
    Finding,
}

impl EventKind {
    /// The event's `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Exchange => "http_exchange",
            EventKind::Inventory => "inventory",
            EventKind::Finding => "finding",
        }
    }
}

/// One serialised event.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// Its kind.
    pub kind: EventKind,
    /// Partitioning key (flow id now; the endpoint key once endpoints are inferred).
    pub key: &'a str,
    /// The JSON object, without a trailing newline.
    pub json: &'a [u8],
}

/// A parsed `--output` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to a file.
    Jsonl(PathBuf),
}

impl FromStr for OutputSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "stdout" || s == "-" {
            return Ok(OutputSpec::Stdout);
        }
        if let Some(p) = s.strip_prefix("jsonl:") {
            if p.is_empty() {
                return Err(
                    "jsonl: needs a path, e.g. jsonl:/var/log/apitap/exchanges.jsonl".into(),
                );
            }
            return Ok(OutputSpec::Jsonl(PathBuf::from(p)));
        }
        if s.starts_with("kafka://") {
            return Err(
                "kafka:// outputs are not available in this build yet; use stdout or jsonl:PATH"
                    .into(),
            );
        }
        Err(format!(
            "unknown output {s:?}: expected `stdout` or `jsonl:PATH`"
        ))
    }
}

/// Sink failures.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed.
    #[error("cannot write to {sink}: {source}")]
    Io {
        /// The sink.
        sink: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A destination for events.
pub trait Sink: Send {
    /// Its name for messages (`stdout`, `jsonl:/path`).
    fn name(&self) -> &str;
    /// Delivers one event.
    fn write(&mut self, ev: &Event<'_>) -> Result<(), SinkError>;
    /// Pushes buffered events out.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// JSON lines to any writer.
pub struct LineSink<W: Write + Send> {
    name: String,
    w: BufWriter<W>,
}

impl<W: Write + Send> LineSink<W> {
    fn io(&self, e: std::io::Error) -> SinkError {
        SinkError::Io {
            sink: self.name.clone(),
            source: e,
        }
    }
}

impl<W: Write + Send> Sink for LineSink<W> {
    fn name(&self) -> &str {
        &self.name
    }
    fn write(&mut self, ev: &Event<'_>) -> Result<(), SinkError> {
        let r = self
            .w
            .write_all(ev.json)
            .and_then(|_| self.w.write_all(b"\n"));
        r.map_err(|e| self.io(e))
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        let r = self.w.flush();
        r.map_err(|e| self.io(e))
    }
}

/// What every sink may need besides its spec.
#[derive(Clone, Debug, Default)]
pub struct SinkOptions {
    /// Kafka producer settings.
    pub kafka: crate::kafka::KafkaArgs,
    /// A live capture (never stall: drop with a counter) rather than a replay (block).
    pub live: bool,
}

/// Opens the sink for a spec.
pub fn open(spec: &OutputSpec, _opts: &SinkOptions) -> anyhow::Result<Box<dyn Sink>> {
    use anyhow::Context;
    Ok(match spec {
        OutputSpec::Stdout => Box::new(LineSink {
            name: "stdout".into(),
            w: BufWriter::with_capacity(256 * 1024, std::io::stdout()),
        }),
        OutputSpec::Jsonl(p) => {
            let f = File::options()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open output file {}", p.display()))?;
            Box::new(LineSink {
                name: format!("jsonl:{}", p.display()),
                w: BufWriter::with_capacity(256 * 1024, f),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        assert_eq!("stdout".parse::<OutputSpec>(), Ok(OutputSpec::Stdout));
        assert_eq!(
            "jsonl:/tmp/x.jsonl".parse::<OutputSpec>(),
            Ok(OutputSpec::Jsonl("/tmp/x.jsonl".into()))
        );
        assert!("jsonl:".parse::<OutputSpec>().is_err());
        assert!("kafka://b:9092/t"
            .parse::<OutputSpec>()
            .unwrap_err()
            .contains("not available"));
        assert!("ftp://x".parse::<OutputSpec>().is_err());
    }
}
