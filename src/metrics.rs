//! The observability endpoint: Prometheus metrics, health, readiness and a status document.
//!
//! Owns `--metrics-listen`. A small HTTP/1.1 server (RFC 9112; one request per connection,
//! `Connection: close`) on its own thread with a single-threaded tokio runtime, so it never
//! competes with the capture and worker threads for more than a sliver of one core. It reads a
//! [`Summary`] that the capture thread publishes about once a second, and the outputs' delivery
//! probes (atomic counters) live; it never touches the pipeline itself.
//!
//! - `GET /metrics` — Prometheus text exposition format 0.0.4.
//! - `GET /healthz` — 200 while the process runs its loop (the capture thread published within
//!   the last 30 s), else 503.
//! - `GET /readyz` — 200 once the capture is open and every sink is ready (a Kafka sink that
//!   has not reached its broker, or lost every broker, is not), else 503 with the reason.
//! - `GET /status` — the summary as JSON, plus "why don't I see my API" hints.
use crate::run::Summary;
use crate::sink::SinkProbe;
use anyhow::Context;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the pipeline publishes for the endpoint.
#[derive(Default)]
pub struct Shared {
    summary: Mutex<Option<(Summary, Instant)>>,
    /// The capture source is open and being read.
    pub capture_open: AtomicBool,
    /// The delivery counters of the asynchronous outputs, read live: readiness and queue
    /// state must not wait for the capture loop to publish (a stalled input is when they
    /// matter).
    probes: Mutex<Vec<Arc<dyn SinkProbe>>>,
}

impl Shared {
    /// A new, not-ready state.
    pub fn new() -> Arc<Self> {
        Arc::new(Shared::default())
    }

    /// Publishes the latest counters.
    pub fn publish(&self, s: Summary) {
        if let Ok(mut g) = self.summary.lock() {
            *g = Some((s, Instant::now()));
        }
    }

    /// The outputs whose readiness and counters are read live.
    pub fn set_probes(&self, probes: Vec<Arc<dyn SinkProbe>>) {
        if let Ok(mut g) = self.probes.lock() {
            *g = probes;
        }
    }

    /// Whether every output can deliver now.
    pub fn sinks_ready(&self) -> bool {
        self.probes
            .lock()
            .map(|g| g.iter().all(|p| p.is_ready()))
            .unwrap_or(false)
    }

    /// The last published counters, with the outputs' counters as of now.
    fn snapshot(&self) -> Option<(Summary, Instant)> {
        let mut snap = self.summary.lock().ok().and_then(|g| g.clone());
        if let (Some((s, _)), Ok(p)) = (&mut snap, self.probes.lock()) {
            if !p.is_empty() {
                s.sinks = p.iter().map(|p| p.snapshot()).collect();
            }
        }
        snap
    }
}

/// Starts the server on `addr`; fails when the address cannot be bound.
pub fn serve(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<()> {
    let std_listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} for metrics; pick another --metrics-listen address")
    })?;
    std_listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("apitap-metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("apitap: metrics endpoint disabled: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(5),
                            handle(sock, &shared),
                        )
                        .await;
                    });
                }
            });
        })
        .context("cannot start the metrics thread")?;
    Ok(())
}

async fn handle(mut sock: tokio::net::TcpStream, shared: &Shared) -> std::io::Result<()> {
    // The request head is all we need; 4 KiB bounds what a client can make us hold.
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    loop {
        let r = sock.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
            break;
        }
    }
    let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let (status, ctype, body) = if method != "GET" && method != "HEAD" {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        route(path, shared)
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        sock.write_all(body.as_bytes()).await?;
    }
    sock.shutdown().await
}

fn route(path: &str, shared: &Shared) -> (u16, &'static str, String) {
    let snap = shared.snapshot();
    match path {
        "/metrics" => match &snap {
            Some((s, _)) => (
                200,
                "text/plain; version=0.0.4",
                prometheus(s, shared.sinks_ready()),
            ),
            None => (503, "text/plain", "no counters yet\n".into()),
        },
        "/healthz" => match &snap {
            Some((_, at)) if at.elapsed().as_secs() < 30 => (200, "text/plain", "ok\n".into()),
            Some(_) => (
                503,
                "text/plain",
                "the capture loop has not reported for 30 s\n".into(),
            ),
            None => (200, "text/plain", "starting\n".into()),
        },
        "/readyz" => {
            let cap = shared.capture_open.load(Ordering::Relaxed);
            let sinks = shared.sinks_ready();
            match (cap, sinks) {
                (true, true) => (200, "text/plain", "ready\n".into()),
                (false, _) => (503, "text/plain", "capture not open yet\n".into()),
                (true, false) => (
                    503,
                    "text/plain",
                    "an output is not ready (Kafka broker not reached?)\n".into(),
                ),
            }
        }
        "/status" => match &snap {
            Some((s, _)) => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("hints".into(), serde_json::json!(s.hints()));
                    o.insert(
                        "ready".into(),
                        serde_json::json!(
                            shared.capture_open.load(Ordering::Relaxed) && shared.sinks_ready()
                        ),
                    );
                }
                (
                    200,
                    "application/json",
                    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
                )
            }
            None => (
                503,
                "application/json",
                "{\"status\":\"starting\"}\n".into(),
            ),
        },
        _ => (
            404,
            "text/plain",
            "try /metrics, /healthz, /readyz or /status\n".into(),
        ),
    }
}

struct Prom(String);

impl Prom {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP apitap_{name} {help}");
        let _ = writeln!(self.0, "# TYPE apitap_{name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "apitap_{name} {v}");
            } else {
                let _ = writeln!(self.0, "apitap_{name}{{{labels}}} {v}");
            }
        }
    }
}

fn label_refs(v: &[(String, f64)]) -> Vec<(&str, f64)> {
    v.iter().map(|(l, n)| (l.as_str(), *n)).collect()
}

/// The summary in Prometheus text format.
pub fn prometheus(s: &Summary, sinks_ready: bool) -> String {
    let mut p = Prom(String::new());
    let f = &s.flows;
    let r = &f.reassembly;
    let e = &s.engine;
    let ps = &s.parsers;
    p.metric(
        "packets_total",
        "counter",
        "Frames read.",
        &[("", s.packets as f64)],
    );
    p.metric(
        "bytes_total",
        "counter",
        "Captured bytes read.",
        &[("", s.bytes as f64)],
    );
    let d = &s.decode;
    p.metric(
        "packets_skipped_total",
        "counter",
        "Frames that yielded no TCP segment, by reason.",
        &[
            ("reason=\"not_ip\"", d.not_ip as f64),
            ("reason=\"not_tcp\"", d.not_tcp as f64),
            ("reason=\"fragment\"", d.fragments as f64),
            ("reason=\"malformed\"", d.malformed as f64),
            ("reason=\"unsupported_link\"", d.unsupported_link as f64),
            ("reason=\"too_deep\"", d.too_deep as f64),
        ],
    );
    if let Some(c) = &s.capture_drops {
        p.metric(
            "capture_dropped_total",
            "counter",
            "Packets dropped before the sensor saw them (pcap_stats).",
            &[
                ("where=\"kernel\"", c.kernel_dropped as f64),
                ("where=\"interface\"", c.if_dropped as f64),
            ],
        );
    }
    p.metric(
        "flows_active",
        "gauge",
        "Connections tracked now.",
        &[("", s.active_flows as f64)],
    );
    p.metric(
        "flows_total",
        "counter",
        "Connections created.",
        &[("", f.flows_created as f64)],
    );
    p.metric(
        "flows_closed_total",
        "counter",
        "Connections closed, by reason.",
        &[
            ("reason=\"fin\"", f.closed_fin as f64),
            ("reason=\"rst\"", f.closed_rst as f64),
            ("reason=\"idle\"", f.closed_idle as f64),
            ("reason=\"evicted\"", f.evicted as f64),
            ("reason=\"reused\"", f.closed_reused as f64),
            ("reason=\"end\"", f.closed_shutdown as f64),
        ],
    );
    p.metric(
        "tcp_rst_ignored_total",
        "counter",
        "RSTs ignored because their sequence number was outside the receiver's window (RFC 5961).",
        &[("", f.rst_out_of_window as f64)],
    );
    let fates: Vec<(String, f64)> = e
        .flows_by_protocol
        .iter()
        .map(|(k, v)| (format!("protocol=\"{k}\""), *v as f64))
        .collect();
    let fates: Vec<(&str, f64)> = fates.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    p.metric(
        "flows_by_protocol_total",
        "counter",
        "Closed connections by what they carried.",
        &fates,
    );
    p.metric(
        "reassembly_gaps_total",
        "counter",
        "Holes in reassembled streams, by cause.",
        &[
            ("cause=\"acked\"", r.gaps_acked as f64),
            ("cause=\"cap\"", r.gaps_cap as f64),
            ("cause=\"close\"", r.gaps_close as f64),
            ("cause=\"snaplen\"", r.gaps_truncated as f64),
        ],
    );
    p.metric(
        "reassembly_gap_bytes_total",
        "counter",
        "Bytes lost to gaps.",
        &[("", r.gap_bytes as f64)],
    );
    p.metric(
        "parser_resyncs_total",
        "counter",
        "Times a parser skipped bytes to find the next message.",
        &[("", ps.resyncs as f64)],
    );
    p.metric(
        "parser_budget_bytes",
        "gauge",
        "Bytes the parsers keep between packets, charged to the workers' memory budgets.",
        &[("", ps.budget_used_bytes as f64)],
    );
    p.metric(
        "parser_budget_refusals_total",
        "counter",
        "Heads, messages, header blocks, body bytes or tables not kept because the worker's \
         parser memory budget was spent.",
        &[("", ps.budget_refusals as f64)],
    );
    p.metric(
        "parser_budget_dropped_bytes_total",
        "counter",
        "Bytes not kept because the worker's parser memory budget was spent.",
        &[("", ps.budget_dropped_bytes as f64)],
    );
    p.metric(
        "parse_errors_total",
        "counter",
        "Parse errors, by protocol.",
        &[
            ("protocol=\"http1\"", ps.http1_parse_errors as f64),
            ("protocol=\"http2\"", ps.h2.frame_errors as f64),
            ("protocol=\"hpack\"", ps.h2.hpack_errors as f64),
        ],
    );
    p.metric(
        "exchanges_total",
        "counter",
        "Request/response exchanges, by protocol.",
        &[
            ("protocol=\"http1\"", e.exchanges_http1 as f64),
            ("protocol=\"http2\"", e.exchanges_http2 as f64),
        ],
    );
    p.metric(
        "events_written_total",
        "counter",
        "Events every sink accepted.",
        &[("", e.events_written as f64)],
    );
    p.metric(
        "sink_errors_total",
        "counter",
        "Events a sink failed to take.",
        &[("", e.sink_errors as f64)],
    );
    p.metric(
        "sinks_ready",
        "gauge",
        "1 when every output can deliver.",
        &[("", if sinks_ready { 1.0 } else { 0.0 })],
    );
    if !s.sinks.is_empty() {
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let mut events = Vec::new();
        let mut retries = Vec::new();
        let mut queued = Vec::new();
        for k in &s.sinks {
            let o = esc(&k.sink);
            for (what, n) in [
                ("accepted", k.accepted),
                ("delivered", k.delivered),
                ("failed", k.failed),
                ("dropped", k.dropped),
            ] {
                events.push((format!("output=\"{o}\",result=\"{what}\""), n as f64));
            }
            retries.push((format!("output=\"{o}\""), k.retries as f64));
            let pending = k.accepted.saturating_sub(k.delivered + k.failed);
            queued.push((format!("output=\"{o}\""), pending as f64));
        }
        p.metric(
            "output_events_total",
            "counter",
            "Events of an asynchronous output (Kafka): accepted into its queue, delivered \
             (acknowledged), failed for good, dropped at the queue bound.",
            &label_refs(&events),
        );
        p.metric(
            "output_retries_total",
            "counter",
            "Produce requests retried (librdkafka statistics).",
            &label_refs(&retries),
        );
        p.metric(
            "output_queue_events",
            "gauge",
            "Events accepted and not yet delivered or failed.",
            &label_refs(&queued),
        );
    }
    p.metric(
        "inventory_endpoints",
        "gauge",
        "Endpoint records (before folding).",
        &[(
            "",
            s.inventory
                .endpoints_created
                .saturating_sub(s.inventory.endpoints_folded) as f64,
        )],
    );
    // Processing latency: capture time of the response to emission, live capture only.
    let _ = writeln!(
        p.0,
        "# HELP apitap_processing_latency_seconds Capture-to-emission delay of exchanges (live capture).\n# TYPE apitap_processing_latency_seconds histogram"
    );
    let mut cum = 0u64;
    for (i, le) in crate::engine::LATENCY_BUCKETS_MS.iter().enumerate() {
        cum += e.processing_latency[i];
        let _ = writeln!(
            p.0,
            "apitap_processing_latency_seconds_bucket{{le=\"{}\"}} {cum}",
            *le as f64 / 1000.0
        );
    }
    cum += e.processing_latency[crate::engine::LATENCY_BUCKETS_MS.len()];
    let _ = writeln!(
        p.0,
        "apitap_processing_latency_seconds_bucket{{le=\"+Inf\"}} {cum}\napitap_processing_latency_seconds_sum {}\napitap_processing_latency_seconds_count {cum}",
        e.processing_latency_sum_us as f64 / 1e6
    );
    p.0
}
