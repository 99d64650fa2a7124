//! A tansu broker (an Apache-Kafka-compatible broker from crates.io) for the tests: found on
//! the machine, started on a free port of 127.0.0.1 with its own SQLite storage, killed when
//! dropped; and an independent librdkafka consumer to read it.
#![allow(dead_code)]
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `APITAP_SKIP_KAFKA=1`: the caller skips its test (and says so).
pub fn skip() -> bool {
    if std::env::var("APITAP_SKIP_KAFKA").is_ok_and(|v| v == "1") {
        eprintln!("APITAP_SKIP_KAFKA=1: skipping a test that needs the tansu broker");
        return true;
    }
    false
}

/// The tansu binary, if installed: `$APITAP_TANSU`, on `PATH`, or in cargo's bin directory.
pub fn find_tansu() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("APITAP_TANSU") {
        candidates.push(p.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
    }
    if let Ok(h) = std::env::var("CARGO_HOME") {
        candidates.push(Path::new(&h).join("bin/tansu"));
    }
    if let Ok(h) = std::env::var("HOME") {
        candidates.push(Path::new(&h).join(".cargo/bin/tansu"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The tansu binary; panics with the way out when it is missing.
pub fn tansu() -> PathBuf {
    match find_tansu() {
        Some(p) => p,
        None => panic!(
            "the Kafka tests need the tansu broker, which is not installed: run \
             scripts/kafka-broker.sh (builds it once, ~10 min), or set APITAP_SKIP_KAFKA=1 to \
             skip these tests"
        ),
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A tansu broker on 127.0.0.1:port, storing in `dir/tansu.db`; killed when dropped.
pub struct Broker {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The broker process while it runs.
    pub child: Option<Child>,
}

impl Broker {
    /// Starts a broker storing in `dir`.
    pub fn start(dir: &Path) -> Broker {
        let mut b = Broker {
            bin: tansu(),
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        b.spawn();
        b
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port and storage; returns once it answers.
    pub fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let c = consumer(&self.bootstrap());
        loop {
            if c.fetch_metadata(None, Duration::from_secs(1)).is_ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "tansu exited ({st}); see {}",
                    self.dir.join("broker.log").display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not answer on {} within 30 s; see {}",
                self.bootstrap(),
                self.dir.join("broker.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: no goodbye to the clients, nothing flushed by the broker itself.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    /// Kills the broker; its directory (storage, logs, the run's outputs) stays for a failed
    /// test to be looked at.
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A consumer in a group of its own, reading from the earliest offset.
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    static N: AtomicU32 = AtomicU32::new(0);
    let group = format!(
        "apitap-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("log_level", "0")
        .create()
        .unwrap()
}

/// Messages in a topic, by its watermarks.
pub fn topic_count(bootstrap: &str, topic: &str) -> Option<i64> {
    let c = consumer(bootstrap);
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(2)).ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    let mut n = 0;
    for p in t.partitions() {
        let (lo, hi) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(2))
            .ok()?;
        n += hi - lo;
    }
    Some(n)
}
