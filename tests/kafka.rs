//! The Kafka output against a real broker: tansu (an Apache-Kafka-compatible broker from
//! crates.io), started per test on a free port with its own SQLite storage, and read back by an
//! independent librdkafka consumer.
//!
//! tansu must be installed (`scripts/kafka-broker.sh`); without it these tests fail and say
//! so, unless `APITAP_SKIP_KAFKA=1`. `APITAP_TEST_OUTAGE_SECS` sets the outage of the
//! kill-and-restart test (default 5 s; the bar is 20 s).
//!
//! Outages are staged honestly: the capture is fed to the replay through a FIFO, so the test
//! decides when packets arrive. Part of it is delivered, the broker is killed (SIGKILL) while
//! the replay is still running, more packets arrive during the outage, and the broker comes
//! back on the same port with the same storage before the rest arrives.
#[path = "common/broker.rs"]
mod broker;
#[path = "common/http.rs"]
mod http;
#[path = "common/scratch.rs"]
mod scratch;
use broker::{consumer, free_port, skip, topic_count, Broker};
use http::http_get;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SENSOR: &str = "kafka-test-sensor";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A fresh directory per test.
fn workdir(name: &str) -> PathBuf {
    let d = scratch::dir(&format!("kafka-{name}"), true);
    d
}

/// The apitap process, killed if the test fails before it ends.
struct Apitap(Option<Child>);

impl Apitap {
    fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut c = self.0.take().unwrap();
        let deadline = Instant::now() + limit;
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let out = c.wait_with_output().unwrap();
                panic!(
                    "apitap did not finish within {limit:?}:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = c.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Apitap {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn apitap<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Apitap {
    let c = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Apitap(Some(c))
}

/// One consumed message.
#[derive(Debug)]
struct Msg {
    key: String,
    json: Value,
    raw: String,
    headers: BTreeMap<String, String>,
}

fn partitions(c: &BaseConsumer, topic: &str) -> Vec<i32> {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = md.topics().iter().find(|t| t.name() == topic);
    let ps: Vec<i32> = t
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    assert!(!ps.is_empty(), "topic {topic} has no partitions");
    ps
}

/// Reads the whole topic from the beginning: until `expect` messages (or all the topic holds,
/// if fewer) arrived and then 2 s more (to catch duplicates), or until nothing arrived for 10 s.
fn consume(bootstrap: &str, topic: &str, expect: usize) -> Vec<Msg> {
    let c = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&c, topic) {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    // Stop early when the topic holds fewer (the drop test): what its watermarks say is there.
    let expect = match topic_count(bootstrap, topic) {
        Some(n) => expect.min(n.max(0) as usize),
        None => expect,
    };
    let mut reached: Option<Instant> = (expect == 0).then(Instant::now);
    let hard = Instant::now() + Duration::from_secs(60);
    while Instant::now() < hard {
        if reached.is_some_and(|t| t.elapsed() > Duration::from_secs(2))
            || last.elapsed() > Duration::from_secs(10)
        {
            break;
        }
        let Some(r) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = r.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        last = Instant::now();
        let raw = std::str::from_utf8(m.payload().unwrap_or_default())
            .expect("payload is UTF-8")
            .to_string();
        let json: Value = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("message is not JSON ({e}): {raw}"));
        let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for i in 0..h.count() {
                let h = h.get(i);
                let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(h.key.to_string(), v.unwrap_or_default());
            }
        }
        out.push(Msg {
            key,
            json,
            raw,
            headers,
        });
        if out.len() >= expect && reached.is_none() {
            reached = Some(Instant::now());
        }
    }
    out
}

/// The JSON lines of a file, as (type, parsed) pairs.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The topic (suffix) and `event_type` header of an event, by its JSON `type`.
fn kind_of(v: &Value) -> (&'static str, &'static str) {
    match v["type"].as_str() {
        Some("http_exchange") => ("exchanges", "http_exchange"),
        Some("finding") => ("findings", "finding"),
        _ => ("inventory", "inventory"),
    }
}

fn is_exchange(v: &Value) -> bool {
    kind_of(v).0 == "exchanges"
}

/// Everything in a test's three topics (`PREFIX.exchanges`, `.inventory`, `.findings`),
/// expecting `want`'s events; each message must sit in the topic of its kind.
fn consume_all(bootstrap: &str, prefix: &str, want: &[Value]) -> Vec<Msg> {
    let mut out = Vec::new();
    for k in ["exchanges", "inventory", "findings"] {
        let n = want.iter().filter(|v| kind_of(v).0 == k).count();
        for m in consume(bootstrap, &format!("{prefix}.{k}"), n) {
            assert_eq!(kind_of(&m.json).0, k, "in topic {prefix}.{k}: {}", m.raw);
            out.push(m);
        }
    }
    out
}

/// `got` and `want` hold the same events as many times each; on a difference, says which.
fn assert_same(got: &[Msg], want: &[Value], context: &str) {
    let g = multiset(got.iter().map(|m| &m.json));
    let w = multiset(want.iter());
    if g == w {
        return;
    }
    let extra: Vec<&String> = g.iter().filter(|x| w.binary_search(x).is_err()).collect();
    let missing: Vec<&String> = w.iter().filter(|x| g.binary_search(x).is_err()).collect();
    let cut = |v: &[&String]| {
        v.iter()
            .take(3)
            .map(|s| s.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    panic!(
        "{} events in Kafka, {} in the file ({} only in Kafka, {} only in the file; the rest \
         differ in multiplicity)\nonly in Kafka:\n  {}\nonly in the file:\n  {}\n{context}",
        g.len(),
        w.len(),
        extra.len(),
        missing.len(),
        cut(&extra),
        cut(&missing)
    );
}

/// Canonical text of JSON values, sorted: a multiset to compare.
fn multiset<'a>(vs: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut out: Vec<String> = vs.map(|v| v.to_string()).collect();
    out.sort();
    out
}

/// The counters of the Kafka sink's shutdown line (`accepted=… delivered=… …`).
fn counters(stderr: &str) -> BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" accepted=") && l.contains(" delivered="))
        .unwrap_or_else(|| panic!("no Kafka counters in stderr:\n{stderr}"));
    eprintln!("{line}");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The message key is the endpoint (`host method template`) once inferred, else the flow id;
/// inventory events carry their endpoint in the JSON.
fn check_key(m: &Msg) {
    let parts: Vec<&str> = m.key.splitn(3, ' ').collect();
    if let Some(e) = m.json.get("endpoint").filter(|e| e.is_object()) {
        let want = format!(
            "{} {} {}",
            e["host"].as_str().unwrap_or(""),
            e["method"].as_str().unwrap_or(""),
            e["template"].as_str().unwrap_or("")
        );
        assert_eq!(m.key, want, "key of {}", m.raw);
        return;
    }
    match parts.as_slice() {
        [flow] => assert_eq!(*flow, m.json["flow_id"].to_string(), "key of {}", m.raw),
        [_host, method, template] => {
            assert_eq!(
                Some(*method),
                m.json["request"]["method"].as_str(),
                "key of {}",
                m.raw
            );
            assert!(template.starts_with('/'), "key of {}", m.raw);
        }
        _ => panic!("unexpected key {:?} of {}", m.key, m.raw),
    }
}

fn check_headers(m: &Msg) {
    let want_type = kind_of(&m.json).1;
    assert_eq!(
        m.headers.get("event_type").map(String::as_str),
        Some(want_type)
    );
    assert_eq!(
        m.headers.get("schema_version").map(String::as_str),
        Some("1")
    );
    assert_eq!(m.headers.get("sensor_id").map(String::as_str), Some(SENSOR));
}

/// A classic pcap file cut into its global header and records.
struct Pcap {
    bytes: Vec<u8>,
    records: Vec<std::ops::Range<usize>>,
}

impl Pcap {
    fn read(path: &Path) -> Pcap {
        let bytes = std::fs::read(path).unwrap();
        let le = match bytes[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => panic!("{} is not a classic pcap", path.display()),
        };
        let u32at = |i: usize| {
            let b: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        };
        let mut records = Vec::new();
        let mut i = 24;
        while i + 16 <= bytes.len() {
            let len = u32at(i + 8) as usize;
            let end = (i + 16 + len).min(bytes.len());
            records.push(i..end);
            i = end;
        }
        Pcap { bytes, records }
    }

    /// The global header plus records `from..to`.
    fn chunk(&self, from: usize, to: usize, header: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if header {
            out.extend_from_slice(&self.bytes[..24]);
        }
        for r in &self.records[from..to] {
            out.extend_from_slice(&self.bytes[r.clone()]);
        }
        out
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Kafka flags of a test whose topics are `PREFIX.exchanges`, `.inventory`, `.findings`.
fn kafka_args(bootstrap: &str, prefix: &str) -> Vec<String> {
    [
        "--output",
        &format!("kafka://{bootstrap}/{prefix}.exchanges"),
        "--kafka-topic-inventory",
        &format!("{prefix}.inventory"),
        "--kafka-topic-findings",
        &format!("{prefix}.findings"),
        "--kafka-sensor-id",
        SENSOR,
        "--kafka-partitions",
        "3",
        "--kafka-replication",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Replay to a JSON-lines file and to Kafka in the same run: the same events, byte for byte,
/// readable by an independent consumer, with keys and headers as documented.
#[test]
fn replay_delivers_exactly_the_jsonl_events() {
    if skip() {
        return;
    }
    let dir = workdir("replay");
    let broker = Broker::start(&dir);
    let file = dir.join("out.jsonl");
    let stats = dir.join("stats.json");
    let jsonl = format!("jsonl:{}", file.display());
    let pcap = data("h1-nginx.pcap");
    let mut args: Vec<String> = ["replay", pcap.to_str().unwrap(), "--output", &jsonl]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(kafka_args(&broker.bootstrap(), "t1"));
    args.extend(["--stats-json".into(), stats.to_str().unwrap().into()]);
    let (st, err) = apitap(&args).wait(Duration::from_secs(120));
    assert!(st.success(), "{err}");

    let want = lines(&file);
    let n_ex = want.iter().filter(|v| is_exchange(v)).count();
    assert_eq!(n_ex, 2049, "the capture's exchanges");
    let got = consume_all(&broker.bootstrap(), "t1", &want);
    assert_same(&got, &want, &err);
    for m in &got {
        check_key(m);
        check_headers(m);
    }
    assert_eq!(
        topic_count(&broker.bootstrap(), "t1.exchanges"),
        Some(n_ex as i64),
        "watermarks agree"
    );

    let c = counters(&err);
    assert_eq!(c["delivered"], want.len() as u64, "{err}");
    assert_eq!(c["accepted"], want.len() as u64);
    assert_eq!((c["failed"], c["dropped"], c["undelivered"]), (0, 0, 0));
    // The same counters in the run's statistics, where dashboards and scripts read them.
    let st: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let k = &st["sinks"][0];
    assert!(k["sink"].as_str().unwrap().starts_with("kafka://"), "{st}");
    assert_eq!(k["delivered"], want.len() as u64, "{k}");
    assert_eq!(k["accepted"], want.len() as u64, "{k}");
    assert_eq!(
        (&k["failed"], &k["dropped"], &k["undelivered"]),
        (&0.into(), &0.into(), &0.into())
    );
    assert_eq!(k["ready"], true);
}

/// Starts a replay fed through a FIFO; returns the process and the FIFO's writer.
fn fifo_replay(dir: &Path, extra: &[String]) -> (Apitap, std::fs::File) {
    let fifo = dir.join("in.pcap");
    mkfifo(&fifo);
    let mut args = vec!["replay".to_string(), fifo.to_str().unwrap().to_string()];
    args.extend_from_slice(extra);
    let mut p = apitap(&args);
    // Opening for writing blocks until apitap opens the FIFO for reading, which it never does
    // if it fails first: open on a thread, and unblock it ourselves if apitap is gone.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(&path));
    });
    loop {
        if let Ok(w) = rx.recv_timeout(Duration::from_millis(100)) {
            return (p, w.unwrap());
        }
        if !p.running() {
            let _ = std::fs::File::open(&fifo);
            let (st, err) = p.wait(Duration::from_secs(5));
            panic!("apitap ended ({st}) before reading its input:\n{err}");
        }
    }
}

/// A replay of h1-nginx.pcap fed through a FIFO, to a file and to Kafka topics under
/// `topic`, with /metrics on a free port: the first third of the capture is written and its
/// first events have reached the broker.
struct Fed {
    p: Apitap,
    w: std::fs::File,
    file: PathBuf,
    metrics: String,
    pcap: Pcap,
    n: usize,
}

fn fed_replay(dir: &Path, broker: &Broker, topic: &str) -> Fed {
    let file = dir.join("out.jsonl");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut extra = vec![
        "--output".to_string(),
        format!("jsonl:{}", file.display()),
        "--metrics-listen".into(),
        metrics.clone(),
    ];
    extra.extend(kafka_args(&broker.bootstrap(), topic));
    let pcap = Pcap::read(&data("h1-nginx.pcap"));
    let n = pcap.records.len();
    let (p, mut w) = fifo_replay(dir, &extra);
    w.write_all(&pcap.chunk(0, n / 3, true)).unwrap();
    w.flush().unwrap();
    let exchanges = format!("{topic}.exchanges");
    wait_for(
        "the first events in the topic",
        Duration::from_secs(30),
        || topic_count(&broker.bootstrap(), &exchanges).unwrap_or(0) > 0,
    );
    Fed {
        p,
        w,
        file,
        metrics,
        pcap,
        n,
    }
}

fn outage_secs() -> u64 {
    std::env::var("APITAP_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// The broker is killed (SIGKILL) in the middle of a replay and comes back on the same port
/// with the same storage: nothing is lost, nothing duplicated.
#[test]
fn a_broker_outage_during_a_replay_loses_nothing() {
    if skip() {
        return;
    }
    let dir = workdir("outage");
    let mut broker = Broker::start(&dir);
    let Fed {
        mut p,
        mut w,
        file,
        metrics,
        pcap,
        n,
    } = fed_replay(&dir, &broker, "t2");
    wait_for("/readyz to say ready", Duration::from_secs(20), || {
        http_get(&metrics, "/readyz").0 == 200
    });
    let before = topic_count(&broker.bootstrap(), "t2.exchanges").unwrap_or(0);
    broker.kill();
    let outage = Instant::now();
    assert!(p.running(), "the replay ended before the outage");
    // Readiness follows the broker even while no packet arrives (the replay's input stalls).
    wait_for(
        "/readyz to report the outage",
        Duration::from_secs(20),
        || {
            let (code, body) = http_get(&metrics, "/readyz");
            code == 503 && body.contains("output is not ready")
        },
    );

    w.write_all(&pcap.chunk(n / 3, 2 * n / 3, false)).unwrap();
    w.flush().unwrap();
    std::thread::sleep(Duration::from_secs(outage_secs()).saturating_sub(outage.elapsed()));
    assert!(p.running(), "the replay ended during the outage");
    let (_, m) = http_get(&metrics, "/metrics");
    assert!(m.contains("apitap_sinks_ready 0"), "{m}");
    assert!(
        m.contains(&format!(
            "apitap_output_events_total{{output=\"kafka://{}/t2.exchanges\",result=\"delivered\"}}",
            broker.bootstrap()
        )),
        "{m}"
    );
    broker.spawn();
    wait_for("/readyz to recover", Duration::from_secs(30), || {
        http_get(&metrics, "/readyz").0 == 200
    });
    eprintln!(
        "broker killed with {before} exchanges in the topic; down for {:?}",
        outage.elapsed()
    );
    w.write_all(&pcap.chunk(2 * n / 3, n, false)).unwrap();
    drop(w);

    let (st, err) = p.wait(Duration::from_secs(120));
    assert!(st.success(), "{err}");
    let want = lines(&file);
    let n_ex = want.iter().filter(|v| is_exchange(v)).count();
    assert_eq!(n_ex, 2049);
    assert!(
        before < n_ex as i64,
        "the outage began after everything was delivered ({before})"
    );
    let got = consume_all(&broker.bootstrap(), "t2", &want);
    assert_same(&got, &want, &err);
    let c = counters(&err);
    assert_eq!(c["delivered"], want.len() as u64, "{err}");
    assert_eq!((c["failed"], c["dropped"], c["undelivered"]), (0, 0, 0));
}

/// Under `drop`, with a small queue and the broker down, the dropped counter is exactly what
/// is missing from the topics once the broker is back.
#[test]
fn drops_under_an_outage_are_exactly_the_missing_events() {
    if skip() {
        return;
    }
    let dir = workdir("drop");
    let mut broker = Broker::start(&dir);
    let file = dir.join("out.jsonl");
    let jsonl = format!("jsonl:{}", file.display());
    let mut extra: Vec<String> = [
        "--output",
        jsonl.as_str(),
        "--kafka-backpressure",
        "drop",
        "--kafka-queue-messages",
        "300",
        "--kafka-flush-timeout-secs",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    extra.extend(kafka_args(&broker.bootstrap(), "t3"));
    let pcap = Pcap::read(&data("h1-nginx.pcap"));
    let n = pcap.records.len();
    let (mut p, mut w) = fifo_replay(&dir, &extra);

    w.write_all(&pcap.chunk(0, n / 4, true)).unwrap();
    w.flush().unwrap();
    wait_for(
        "the first events in the topic",
        Duration::from_secs(30),
        || topic_count(&broker.bootstrap(), "t3.exchanges").unwrap_or(0) > 0,
    );
    broker.kill();
    assert!(p.running());
    // Three quarters of the capture, far more than 300 events, while the broker is down.
    w.write_all(&pcap.chunk(n / 4, n, false)).unwrap();
    drop(w);
    std::thread::sleep(Duration::from_secs(2));
    broker.spawn();

    let (st, err) = p.wait(Duration::from_secs(120));
    assert!(st.success(), "{err}");
    let want = lines(&file);
    let c = counters(&err);
    assert!(
        c["dropped"] > 0,
        "the queue bound was never reached:\n{err}"
    );
    assert_eq!((c["failed"], c["undelivered"]), (0, 0), "{err}");
    assert_eq!(c["accepted"] + c["dropped"], want.len() as u64);

    let bs = broker.bootstrap();
    let got = consume_all(&bs, "t3", &want);
    assert_eq!(
        got.len() as u64,
        c["delivered"],
        "delivered counter vs topics"
    );
    assert_eq!(
        want.len() as u64 - got.len() as u64,
        c["dropped"],
        "dropped counter vs what is missing"
    );
    // What arrived is a sub-multiset of what was written to the file.
    let mut pool = multiset(want.iter());
    for m in multiset(got.iter().map(|m| &m.json)) {
        let i = pool
            .binary_search(&m)
            .unwrap_or_else(|_| panic!("in Kafka but not in the file: {m}"));
        pool.remove(i);
    }
}

/// An unreachable broker stops a replay quickly, with a message that says what to check.
#[test]
fn an_unreachable_broker_fails_a_replay_with_a_clear_message() {
    let started = Instant::now();
    let mut p = apitap(&[
        "replay",
        data("h1-nginx.pcap").to_str().unwrap(),
        "--output",
        "kafka://127.0.0.1:1/t4",
        "--kafka-startup-timeout-secs",
        "2",
    ]);
    let (st, err) = p.wait(Duration::from_secs(30));
    assert!(!st.success(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("cannot reach Kafka broker(s) 127.0.0.1:1")
            && err.contains("check --output kafka://127.0.0.1:1/t4")
            && err.contains("broker is up"),
        "{err}"
    );
}

/// The delivered counter of the Kafka output in `/metrics`, if it answers.
fn metrics_delivered(addr: &str) -> Option<u64> {
    let (code, body) = http_get(addr, "/metrics");
    if code != 200 {
        return None;
    }
    body.lines()
        .find(|l| {
            l.starts_with("apitap_output_events_total{")
                && l.contains("kafka://")
                && l.contains("result=\"delivered\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The broker stalls (SIGSTOP) for ~8 s in the middle of a replay while more packets arrive,
/// then resumes (SIGCONT): nothing lost, nothing duplicated, nothing counted as failed,
/// dropped or undelivered. The stall is checked to be real: no delivery is acknowledged while
/// the broker is stopped, although events keep coming.
#[test]
fn a_stalled_broker_during_a_replay_loses_nothing() {
    if skip() {
        return;
    }
    const STALL: Duration = Duration::from_secs(8);
    let dir = workdir("stall");
    let broker = Broker::start(&dir);
    let Fed {
        mut p,
        mut w,
        file,
        metrics,
        pcap,
        n,
    } = fed_replay(&dir, &broker, "t5");
    // What has been delivered settles before the stall, so that the stall's check below
    // compares like with like.
    let mut last = None;
    wait_for("deliveries to settle", Duration::from_secs(30), || {
        let now = metrics_delivered(&metrics);
        let settled = now.is_some() && now == last;
        last = now;
        settled
    });
    let before = topic_count(&broker.bootstrap(), "t5.exchanges").unwrap_or(0);
    let pid = broker.child.as_ref().map(|c| c.id()).unwrap() as libc::pid_t;
    // SAFETY: kill(2) on the pid of the broker child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stalled = Instant::now();
    let delivered_at_stall = metrics_delivered(&metrics).unwrap();
    let lines_at_stall = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(p.running(), "the replay ended before the stall");

    w.write_all(&pcap.chunk(n / 3, 2 * n / 3, false)).unwrap();
    w.flush().unwrap();
    std::thread::sleep(STALL.saturating_sub(stalled.elapsed()));
    assert!(p.running(), "the replay ended during the stall");
    let delivered_in_stall = metrics_delivered(&metrics).unwrap();
    let lines_in_stall = std::fs::read_to_string(&file).unwrap().lines().count();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    eprintln!(
        "broker stopped for {:?} with {before} exchanges in the topic; meanwhile {} more events \
         were written to the file and {} deliveries acknowledged",
        stalled.elapsed(),
        lines_in_stall - lines_at_stall,
        delivered_in_stall - delivered_at_stall
    );
    assert!(
        lines_in_stall > lines_at_stall,
        "no events arrived during the stall"
    );
    assert_eq!(
        delivered_in_stall, delivered_at_stall,
        "deliveries were acknowledged while the broker was stopped: the stall was not real"
    );
    w.write_all(&pcap.chunk(2 * n / 3, n, false)).unwrap();
    drop(w);

    let (st, err) = p.wait(Duration::from_secs(120));
    assert!(st.success(), "{err}");
    let want = lines(&file);
    let n_ex = want.iter().filter(|v| is_exchange(v)).count();
    assert_eq!(n_ex, 2049);
    assert!(
        before < n_ex as i64,
        "the stall began after everything was delivered ({before})"
    );
    let got = consume_all(&broker.bootstrap(), "t5", &want);
    assert_same(&got, &want, &err);
    let c = counters(&err);
    assert_eq!(c["delivered"], want.len() as u64, "{err}");
    assert_eq!(c["accepted"], want.len() as u64, "{err}");
    assert_eq!((c["failed"], c["dropped"], c["undelivered"]), (0, 0, 0));
}
