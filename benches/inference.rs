//! Per-stage benchmarks (criterion) of what happens to an exchange after parsing, so that a
//! regression points at its stage:
//! - `inference/*`: endpoint templating, auth, sensitive-data classification and body schemas
//!   ([`Inspector::inspect`]), without and with body inspection, and with the inventory update
//!   an exchange causes ([`Inventory::record_under`]);
//! - `json/*`: the observation as a JSON line, the direct writer against the derived serde
//!   form it must equal (the baseline, measured in the same run).
//!
//! Inputs are the exchanges of real captures (tests/data/rest-api.pcap: a REST API with JSON
//! bodies, bearer tokens and planted sensitive values; tests/data/h2c-nginx.pcap: small h2c
//! calls), parsed once by the real capture and parser crates. Throughput is in exchanges, so
//! criterion's "elem/s" reads as exchanges per second and its time as the cost of one pass.
//! The inspector persists across iterations: templates are learnt in the first pass, as in a
//! sensor that has been running for a while.
use apitap::engine::{chunk_meta, classify_first_payload, dir, session_for};
use apitap::inspect::{InspectConfig, Inspector};
use apitap::inventory::{EndpointKey, Inventory, InventoryConfig};
use apitap::observation::Observation;
use apitap::redact::{Redaction, Redactor};
use apitap_capture::decode::Decoder;
use apitap_capture::flow::{
    ChunkInfo, CloseReason, Direction, FlowConfig, FlowHandler, FlowInfo, FlowTable,
};
use apitap_capture::source::{Event, PacketSource};
use apitap_parsers::session::{HttpSession, Shared};
use apitap_parsers::{Exchange, ParserConfig};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Keeps every exchange with the connection it came from.
struct Collect {
    shared: Shared,
    scratch: Vec<Exchange>,
    out: Vec<(Exchange, FlowInfo)>,
}

impl Collect {
    fn keep(&mut self, flow: &FlowInfo) {
        self.out.extend(self.scratch.drain(..).map(|e| (e, *flow)));
    }
}

impl FlowHandler for Collect {
    type State = HttpSession;
    fn open(&mut self, flow: &FlowInfo) -> HttpSession {
        session_for(flow)
    }
    fn classify(&self, p: &[u8]) -> Option<bool> {
        classify_first_payload(p)
    }
    fn data(&mut self, st: &mut HttpSession, f: &FlowInfo, d: Direction, b: &[u8], i: ChunkInfo) {
        st.on_data(
            dir(d),
            b,
            chunk_meta(i),
            &mut self.scratch,
            &mut self.shared,
        );
        self.keep(f);
    }
    fn gap(&mut self, st: &mut HttpSession, f: &FlowInfo, d: Direction, len: u64) {
        st.on_gap(dir(d), len, &mut self.scratch, &mut self.shared);
        self.keep(f);
    }
    fn close(&mut self, mut st: HttpSession, f: &FlowInfo, _: CloseReason) {
        st.on_close(&mut self.scratch, &mut self.shared);
        self.keep(f);
    }
}

fn exchanges(name: &str) -> Vec<(Exchange, FlowInfo)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut src = PacketSource::files(&[path]).expect("open the bundled capture");
    let collect = Collect {
        shared: Shared::new(ParserConfig::default()),
        scratch: Vec::new(),
        out: Vec::new(),
    };
    let mut table = FlowTable::new(FlowConfig::default(), collect);
    let mut dec = Decoder::default();
    let stop = AtomicBool::new(false);
    src.run(&stop, |ev| {
        if let Event::Frame(f) = ev {
            if let Ok(seg) = dec.decode_in(f.linktype, f.data, f.ts_us, f.tunnel) {
                table.process(&seg, f.ts_us);
            }
        }
    })
    .expect("read the bundled capture");
    table.close_all();
    let out = std::mem::take(&mut table.handler.out);
    assert!(out.len() > 100, "{name}: only {} exchanges", out.len());
    out
}

fn inference(c: &mut Criterion) {
    for name in ["rest-api.pcap", "h2c-nginx.pcap"] {
        let exs = exchanges(name);
        let mut g = c.benchmark_group(format!("inference/{name}"));
        g.throughput(Throughput::Elements(exs.len() as u64));
        for bodies in [false, true] {
            let label = if bodies {
                "inspect"
            } else {
                "inspect_no_bodies"
            };
            let mut insp = Inspector::new(InspectConfig {
                bodies,
                ..InspectConfig::default()
            });
            g.bench_function(label, |b| {
                b.iter(|| {
                    for (ex, flow) in &exs {
                        black_box(insp.inspect(ex, flow.server));
                    }
                })
            });
        }
        let mut insp = Inspector::new(InspectConfig::default());
        let mut inv = Inventory::new(InventoryConfig::default());
        let mut server = String::new();
        g.bench_function("inspect_and_inventory", |b| {
            b.iter(|| {
                for (ex, flow) in &exs {
                    let ins = insp.inspect(ex, flow.server);
                    use std::fmt::Write;
                    server.clear();
                    let _ = write!(server, "{}", flow.server);
                    let key = EndpointKey::of(ex, &ins);
                    black_box(inv.record_under(&key, ex, &server, &ins));
                }
            })
        });
        g.finish();
    }
}

fn json(c: &mut Criterion) {
    for name in ["rest-api.pcap", "h2c-nginx.pcap"] {
        let exs = exchanges(name);
        let mut insp = Inspector::new(InspectConfig::default());
        let insights: Vec<_> = exs
            .iter()
            .map(|(ex, flow)| insp.inspect(ex, flow.server))
            .collect();
        let mut red = Redactor::new(Redaction::Mask, b"bench");
        let mut g = c.benchmark_group(format!("json/{name}"));
        g.throughput(Throughput::Elements(exs.len() as u64));
        let mut buf = Vec::with_capacity(4096);
        let mut total = [0usize; 2];
        g.bench_function("observation_serde_baseline", |b| {
            b.iter(|| {
                for ((ex, flow), ins) in exs.iter().zip(&insights) {
                    buf.clear();
                    let obs = Observation::new(ex, flow, &mut red, Some(ins));
                    serde_json::to_writer(&mut buf, &obs).expect("serialise");
                    total[0] += buf.len();
                }
            })
        });
        g.bench_function("observation_direct", |b| {
            b.iter(|| {
                for ((ex, flow), ins) in exs.iter().zip(&insights) {
                    buf.clear();
                    Observation::new(ex, flow, &mut red, Some(ins)).write_json(&mut buf);
                    total[1] += buf.len();
                }
            })
        });
        g.finish();
        black_box(total);
    }
}

criterion_group!(benches, inference, json);
criterion_main!(benches);
