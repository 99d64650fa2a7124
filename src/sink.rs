//! Where events go: the `--output` specs and the sinks behind them.
//!
//! Owns delivery. Every sink receives the same serialised event with its kind and key, so that
//! a sink that needs them (Kafka: topic per kind, message key, headers) slots in beside the
//! line-oriented ones without touching the pipeline.
//!
//! Sinks that deliver asynchronously (Kafka) count what they deliver and lose in [`SinkStats`],
//! readable through a [`SinkProbe`] after the sink has moved to the sink thread, and drain in
//! [`Sink::close`] at the end of a run.
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

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
    /// A Kafka topic per event kind (the URL names the exchanges topic).
    Kafka(crate::kafka::KafkaUrl),
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
            return s.parse().map(OutputSpec::Kafka);
        }
        Err(format!(
            "unknown output {s:?}: expected `stdout`, `jsonl:PATH` or `kafka://HOST:PORT/TOPIC`"
        ))
    }
}

/// Sink failures.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed.
    #[error("cannot write to {sink}: {error}")]
    Io {
        /// The sink.
        sink: String,
        /// The cause.
        error: std::io::Error,
    },
    /// The Kafka producer refused a message (other than for a full queue).
    #[error("cannot produce to {sink}: {message}")]
    Kafka {
        /// The sink.
        sink: String,
        /// librdkafka's error.
        message: String,
    },
    /// Accepted events were not delivered by the end of the run.
    #[error(
        "{sink}: {undelivered} events still queued at exit and {failed} failed: not delivered"
    )]
    Undelivered {
        /// The sink.
        sink: String,
        /// Deliveries that failed (`message.timeout.ms`, broker errors).
        failed: u64,
        /// Events still queued when the flush timeout ran out.
        undelivered: u64,
    },
}

/// Delivery counters of a sink that delivers asynchronously (Kafka).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink (`kafka://host:9092/topic`).
    pub sink: String,
    /// Events taken into the sink's queue.
    pub accepted: u64,
    /// Events the destination acknowledged.
    pub delivered: u64,
    /// Events that failed for good (after librdkafka's retries and `message.timeout.ms`).
    pub failed: u64,
    /// `failed` by error (librdkafka error code names such as `MessageTimedOut`).
    pub failed_by_error: BTreeMap<String, u64>,
    /// Requests retried (librdkafka statistics, as of their last interval).
    pub retries: u64,
    /// Events dropped because the queue was full (`drop`, or on SIGINT while blocked).
    pub dropped: u64,
    /// Events still queued when the run ended and the flush timeout ran out.
    pub undelivered: u64,
    /// Whether the destination is reachable and set up.
    pub ready: bool,
}

impl SinkStats {
    /// `key=value` pairs on one line (the sink's shutdown report).
    pub fn kv(&self) -> String {
        format!(
            "accepted={} delivered={} failed={} retries={} dropped={} undelivered={}",
            self.accepted,
            self.delivered,
            self.failed,
            self.retries,
            self.dropped,
            self.undelivered
        )
    }
}

/// A live view of a sink's counters, kept by whoever reports them (summary, `/readyz`) while
/// the sink itself lives on the sink thread.
pub trait SinkProbe: Send + Sync {
    /// The counters now.
    fn snapshot(&self) -> SinkStats;
    /// Whether the destination is reachable and set up.
    fn is_ready(&self) -> bool;
}

/// A destination for events.
pub trait Sink: Send {
    /// Its name for messages (`stdout`, `jsonl:/path`).
    fn name(&self) -> &str;
    /// Delivers one event.
    fn write(&mut self, ev: &Event<'_>) -> Result<(), SinkError>;
    /// Pushes buffered events out; called on every pipeline tick, so it must not wait for a
    /// remote destination.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Ends the run: pushes everything out, waiting (boundedly) for a remote destination, and
    /// reports what could not be delivered.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
    /// Reopens the destination (SIGHUP): a file is opened again by its path, so that a log
    /// rotator that moved it away gets a fresh file. Others have nothing to reopen.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// The delivery counters' probe, for sinks that deliver asynchronously.
    fn probe(&self) -> Option<Arc<dyn SinkProbe>> {
        None
    }
    /// The delivery counters now.
    fn stats(&self) -> Option<SinkStats> {
        self.probe().map(|p| p.snapshot())
    }
}

/// JSON lines to standard output or a file.
pub struct LineSink {
    name: String,
    w: BufWriter<Box<dyn Write + Send>>,
    /// The file's path, for [`Sink::reopen`].
    path: Option<PathBuf>,
}

impl LineSink {
    fn io(&self, e: std::io::Error) -> SinkError {
        SinkError::Io {
            sink: self.name.clone(),
            error: e,
        }
    }
}

impl Sink for LineSink {
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
    fn reopen(&mut self) -> Result<(), SinkError> {
        let Some(p) = self.path.clone() else {
            return Ok(());
        };
        // What is buffered belongs to the old file (the rotator's copy).
        self.flush()?;
        let f = open_append(&p).map_err(|e| self.io(e))?;
        self.w = BufWriter::with_capacity(256 * 1024, Box::new(f));
        Ok(())
    }
}

fn open_append(p: &std::path::Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(p)
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
pub fn open(spec: &OutputSpec, opts: &SinkOptions) -> anyhow::Result<Box<dyn Sink>> {
    use anyhow::Context;
    Ok(match spec {
        OutputSpec::Stdout => Box::new(LineSink {
            name: "stdout".into(),
            w: BufWriter::with_capacity(256 * 1024, Box::new(std::io::stdout())),
            path: None,
        }),
        OutputSpec::Jsonl(p) => {
            let f = open_append(p)
                .with_context(|| format!("cannot open output file {}", p.display()))?;
            Box::new(LineSink {
                name: format!("jsonl:{}", p.display()),
                w: BufWriter::with_capacity(256 * 1024, Box::new(f)),
                path: Some(p.clone()),
            })
        }
        OutputSpec::Kafka(url) => {
            Box::new(crate::kafka::KafkaSink::open(url, &opts.kafka, opts.live)?)
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
        assert!(matches!(
            "kafka://b:9092/t".parse::<OutputSpec>(),
            Ok(OutputSpec::Kafka(u)) if u.brokers == ["b:9092"] && u.topic.as_deref() == Some("t")
        ));
        assert!("kafka://b/t".parse::<OutputSpec>().is_err());
        assert!("ftp://x".parse::<OutputSpec>().is_err());
    }
}
