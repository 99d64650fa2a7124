//! Kafka output benchmark: events per second delivered to a real broker on loopback (tansu,
//! started here), against JSON lines written to a file, in the same run over the same capture.
//!
//! Each variant replays the capture through the whole pipeline (one worker, inference on) and
//! stops the clock only when the output has closed: for Kafka that is when the broker has
//! acknowledged every event (`acks=all`, idempotence, zstd — the defaults), so the figure is
//! delivery, not enqueueing. The broker stores in memory, so its disk is not what is measured.
//!
//! `cargo bench --bench kafka` uses tests/data/h1-nginx.pcap; `cargo bench --bench kafka --
//! FILE` another capture (bench-data/api-mix.pcap from benches/make-bench-capture.sh). Needs
//! tansu (`scripts/kafka-broker.sh`); without it the bench says so and measures the file alone.
#[path = "../tests/common/broker.rs"]
mod broker;
use apitap::engine::EngineConfig;
use apitap::inspect::InspectConfig;
use apitap::kafka::{KafkaArgs, KafkaUrl};
use apitap::run::{Pipeline, PipelineConfig};
use apitap::sink::{self, OutputSpec, SinkOptions};
use apitap_capture::source::PacketSource;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(bin: &Path) -> (Broker, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Broker(child), addr)
}

/// One replay into `spec`; returns (time until the output closed, events written).
fn run(file: &Path, spec: &OutputSpec, kafka: &KafkaArgs) -> (Duration, u64) {
    let stop = AtomicBool::new(false);
    let opts = SinkOptions {
        kafka: kafka.clone(),
        live: false,
    };
    let t = Instant::now();
    let mut src = PacketSource::files(&[file.to_path_buf()]).expect("open capture");
    let sinks = vec![sink::open(spec, &opts).expect("open output")];
    let engine = EngineConfig {
        inspect: Some(InspectConfig::default()),
        ..EngineConfig::default()
    };
    let mut p = Pipeline::new(PipelineConfig::default(), engine, sinks);
    p.run_source(&mut src, &stop, |_| {}).expect("replay");
    p.finish().expect("every event delivered");
    let d = t.elapsed();
    (d, p.summary().engine.events_written)
}

fn main() {
    let file = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/h1-nginx.pcap")
        });
    let runs = 3;
    let out = std::env::temp_dir().join(format!("apitap-bench-kafka-{}.jsonl", std::process::id()));
    let mut best_file: Option<(Duration, u64)> = None;
    for _ in 0..runs {
        let _ = std::fs::remove_file(&out);
        let r = run(
            &file,
            &OutputSpec::Jsonl(out.clone()),
            &KafkaArgs::default(),
        );
        if best_file.is_none_or(|b| r.0 < b.0) {
            best_file = Some(r);
        }
    }
    let _ = std::fs::remove_file(&out);
    let (tf, events) = best_file.expect("a run");
    println!(
        "capture: {}, {events} events, best of {runs}",
        file.display()
    );
    println!(
        "jsonl file (baseline):       {:>8.1} ms  {:>10.0} events/s",
        tf.as_secs_f64() * 1e3,
        events as f64 / tf.as_secs_f64()
    );
    let Some(bin) = broker::find_tansu() else {
        println!("kafka: tansu is not installed (scripts/kafka-broker.sh) — no comparison");
        return;
    };
    let (_broker, addr) = start_broker(&bin);
    let mut best: Option<(Duration, u64)> = None;
    for i in 0..runs {
        // Fresh topics per run: every run creates and fills its own, as a first start would.
        let spec = OutputSpec::Kafka(
            format!("kafka://{addr}/b{i}.exchanges")
                .parse::<KafkaUrl>()
                .expect("url"),
        );
        let kafka = KafkaArgs {
            topic_inventory: format!("b{i}.inventory"),
            topic_findings: format!("b{i}.findings"),
            partitions: 1,
            replication: 1,
            startup_timeout_secs: 30,
            ..KafkaArgs::default()
        };
        let r = run(&file, &spec, &kafka);
        assert_eq!(r.1, events, "the same events into Kafka as into the file");
        if best.is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    let (tk, _) = best.expect("a run");
    println!(
        "kafka (tansu on loopback):   {:>8.1} ms  {:>10.0} events/s  ({:.2}x the file's time)",
        tk.as_secs_f64() * 1e3,
        events as f64 / tk.as_secs_f64(),
        tk.as_secs_f64() / tf.as_secs_f64()
    );
}
