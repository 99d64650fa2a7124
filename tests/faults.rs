//! Plumbing faults (issue #9): whatever fails around it, the sensor must not crash, hang,
//! silently lose data or leak. Each test stages one fault for real and requires a documented,
//! counted end within a bounded time; child processes are killed and mounts undone when a test
//! ends, however it ends.
//!
//! - **A full disk under a `jsonl:` output.** A 256 KiB tmpfs (needs root, or CAP_SYS_ADMIN;
//!   without it the test says why and uses only the second fault) and `/dev/full` (ENOSPC on
//!   every write), alone and beside a healthy output, with one worker and with two: the run
//!   ends non-zero with a message naming the file and the cause, the healthy output still
//!   gets every event, and `engine.sink_errors` counts the failures.
//! - **SIGTERM under load.** A capture that never ends (tests/data/h1-nginx.pcap over and over,
//!   client ports and timestamps shifted each round) is written into a FIFO as fast as the
//!   replay reads it; SIGTERM must end the run within 10 s, successfully (a stop by signal is
//!   the normal end of a run that has no end), with no torn line and statistics that agree
//!   with the file.
//! - **SIGTERM with the Kafka broker gone.** The broker (tansu) is killed mid-run, then the
//!   replay gets SIGTERM: it must end within its flush timeout plus a margin, say how many
//!   events were not delivered, and fail.
//! - **SIGTERM with an idle input.** The FIFO stays open and silent: a stop must not wait for
//!   the next packet.
#[path = "common/broker.rs"]
mod broker;
#[path = "common/scratch.rs"]
mod scratch;
use broker::{topic_count, Broker};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exchanges in tests/data/h1-nginx.pcap.
const EXCHANGES: usize = 2049;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A fresh directory per test, removed when the test passes (kept for a failed one to be
/// looked at). Declared first in a test, so that mounts and processes inside it go first.
struct Workdir(PathBuf);

impl std::ops::Deref for Workdir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn workdir(name: &str) -> Workdir {
    let d = scratch::dir(&format!("faults-{name}"), true);
    Workdir(d)
}

/// An apitap process with its stderr in a file (a pipe nobody reads could fill and stall it);
/// killed if still running when dropped.
struct Proc {
    child: Option<Child>,
    err: PathBuf,
}

impl Proc {
    fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S], err: PathBuf) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            err,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0);
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig})");
    }

    /// Waits for the end; past `limit` kills it and fails the test with its stderr.
    fn wait(&mut self, limit: Duration, what: &str) -> (ExitStatus, String) {
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return (st, self.stderr());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "apitap did not end within {limit:?} ({what}); stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The JSON lines of a file; panics on a torn or invalid line, or a missing final newline.
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a torn line: {:?}",
        path.display(),
        &text[text.len().saturating_sub(200)..]
    );
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {l:.300}",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

fn exchanges(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|v| v["type"] == "http_exchange")
        .count()
}

fn stats(path: &Path) -> Value {
    let b = std::fs::read(path)
        .unwrap_or_else(|e| panic!("--stats-json {} not written: {e}", path.display()));
    serde_json::from_slice(&b).unwrap()
}

// ------------------------------------------------------------------------------- full disk

/// A tmpfs mounted for the test; unmounted when dropped (lazily if still busy).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The full outputs a test runs against: the tmpfs (when it can be mounted; otherwise why not
/// is printed) and `/dev/full`. Never empty: without /dev/full either, the test fails.
fn full_outputs(dir: &Path) -> (Option<Tmpfs>, Vec<PathBuf>) {
    let mut outs = Vec::new();
    let fs = match Tmpfs::mount(&dir.join("small-fs"), "256k") {
        Ok(m) => {
            outs.push(m.dir.join("out.jsonl"));
            Some(m)
        }
        Err(e) => {
            eprintln!("no tmpfs for the full-disk test ({e}); /dev/full only");
            None
        }
    };
    let dev_full = PathBuf::from("/dev/full");
    if dev_full.exists() {
        outs.push(dev_full);
    } else {
        eprintln!("/dev/full does not exist on this machine");
    }
    assert!(
        !outs.is_empty(),
        "neither a tmpfs nor /dev/full: the full-disk fault cannot be staged here"
    );
    (fs, outs)
}

/// Replays h1-nginx.pcap to `full` (and `healthy`), checks the run failed as documented and
/// returns its stderr and statistics.
fn replay_to_full(
    dir: &Path,
    tag: &str,
    full: &Path,
    healthy: Option<&Path>,
    workers: u32,
) -> (String, Value) {
    let st = dir.join(format!("{tag}.stats.json"));
    let mut args = vec![
        "replay".to_string(),
        data("h1-nginx.pcap").display().to_string(),
        "--workers".into(),
        workers.to_string(),
        "--output".into(),
        format!("jsonl:{}", full.display()),
        "--stats-json".into(),
        st.display().to_string(),
    ];
    if let Some(h) = healthy {
        args.extend(["--output".into(), format!("jsonl:{}", h.display())]);
    }
    let started = Instant::now();
    let mut p = Proc::spawn(&args, dir.join(format!("{tag}.stderr")));
    let (status, err) = p.wait(Duration::from_secs(120), "writing to a full disk");
    eprintln!(
        "{tag}: {} -> {status} after {:.1?}",
        full.display(),
        started.elapsed()
    );
    assert!(
        !status.success(),
        "a run that lost its output succeeded:\n{err}"
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("jsonl:{}", full.display()))
            && err.contains("No space left on device"),
        "the message must name the file and the cause:\n{err}"
    );
    (err, stats(&st))
}

fn full_disk(workers: u32, with_healthy: bool) {
    let dir = workdir(&format!("full-w{workers}-{with_healthy}"));
    let (fs, fulls) = full_outputs(&dir);
    // What a healthy output gets when nothing fails: the reference.
    let reference = dir.join("reference.jsonl");
    if with_healthy {
        let mut p = Proc::spawn(
            &[
                "replay",
                data("h1-nginx.pcap").to_str().unwrap(),
                "--workers",
                &workers.to_string(),
                "--output",
                &format!("jsonl:{}", reference.display()),
            ],
            dir.join("reference.stderr"),
        );
        let (st, err) = p.wait(Duration::from_secs(120), "the reference run");
        assert!(st.success(), "{err}");
    }
    for (i, full) in fulls.iter().enumerate() {
        let healthy = dir.join(format!("healthy-{i}.jsonl"));
        let (err, st) = replay_to_full(
            &dir,
            &format!("full-{i}"),
            full,
            with_healthy.then_some(healthy.as_path()),
            workers,
        );
        let e = &st["engine"];
        assert_eq!(
            e["exchanges"], EXCHANGES,
            "the input was read to its end: {e}"
        );
        if with_healthy {
            let got = json_lines(&healthy);
            let want = json_lines(&reference);
            assert_eq!(exchanges(&got), EXCHANGES, "{}", healthy.display());
            let canon = |v: &[Value]| {
                let mut s: Vec<String> = v.iter().map(Value::to_string).collect();
                s.sort();
                s
            };
            assert!(
                canon(&got) == canon(&want),
                "the healthy output differs from a run without the full one ({} vs {} lines)",
                got.len(),
                want.len()
            );
        }
        if full.starts_with(&*dir) {
            // The tmpfs was filled: what fitted is there.
            let len = std::fs::metadata(full).map_or(0, |m| m.len());
            assert!(len > 200_000, "{} holds only {len} bytes", full.display());
        }
        let errors = e["sink_errors"].as_u64().unwrap_or(0);
        eprintln!("  engine.sink_errors = {errors}; stderr:\n{err}");
        assert!(
            errors > 0,
            "--stats-json engine.sink_errors is {errors} although writing to {} failed \
             (workers {workers}): {e}",
            full.display()
        );
    }
    drop(fs);
}

/// One worker (the engine writes to the sinks itself), one output on a full disk.
#[test]
fn a_full_disk_fails_the_run_with_a_clear_message_one_worker() {
    full_disk(1, false);
}

/// Two workers (the sinks run on their own thread), one output on a full disk.
#[test]
fn a_full_disk_fails_the_run_with_a_clear_message_two_workers() {
    full_disk(2, false);
}

/// A full disk under one output does not starve the other: it gets every event.
#[test]
fn a_full_disk_spares_the_healthy_output_one_worker() {
    full_disk(1, true);
}

#[test]
fn a_full_disk_spares_the_healthy_output_two_workers() {
    full_disk(2, true);
}

// ------------------------------------------------------------------------- endless capture

/// tests/data/h1-nginx.pcap as an endless capture: round `k` is the whole file with every
/// client port (the side ≥ 32768; the server listens on 18080) shifted and timestamps moved
/// past the previous round, so each round is new connections, in order.
struct Endless {
    header: Vec<u8>,
    records: Vec<Vec<u8>>,
    span_secs: u32,
}

impl Endless {
    fn load() -> Endless {
        let b = std::fs::read(data("h1-nginx.pcap")).unwrap();
        assert_eq!(b[..4], [0xd4, 0xc3, 0xb2, 0xa1], "little-endian µs pcap");
        let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        assert_eq!(u32at(20), 1, "Ethernet");
        let mut records = Vec::new();
        let mut i = 24;
        while i + 16 <= b.len() {
            let len = u32at(i + 8) as usize;
            records.push(b[i..i + 16 + len].to_vec());
            i += 16 + len;
        }
        let first = u32at(24);
        let last = records
            .last()
            .map_or(first, |r| u32::from_le_bytes(r[..4].try_into().unwrap()));
        Endless {
            header: b[..24].to_vec(),
            records,
            span_secs: last - first + 2,
        }
    }

    fn round(&self, k: u32, out: &mut Vec<u8>) {
        out.clear();
        for r in &self.records {
            let start = out.len();
            out.extend_from_slice(r);
            let rec = &mut out[start..];
            let ts = u32::from_le_bytes(rec[..4].try_into().unwrap()) + k * self.span_secs;
            rec[..4].copy_from_slice(&ts.to_le_bytes());
            let f = &mut rec[16..];
            if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
                continue;
            }
            let t = 14 + usize::from(f[14] & 0x0f) * 4;
            for at in [t, t + 2] {
                if f.len() < at + 2 {
                    continue;
                }
                let p = u16::from_be_bytes([f[at], f[at + 1]]);
                if p >= 32768 {
                    let shifted = 32768 + ((u32::from(p) - 32768 + k * 1009) % 28000) as u16;
                    f[at..at + 2].copy_from_slice(&shifted.to_be_bytes());
                }
            }
        }
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Writes the endless capture into `fifo` until told to stop or the reader goes away;
/// `paced`: one record per millisecond instead of as fast as the reader takes them.
struct Feeder {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<String>>,
}

impl Feeder {
    fn start(fifo: &Path, paced: bool) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (s, r, b) = (stop.clone(), rounds.clone(), bytes.clone());
        let path = fifo.to_path_buf();
        let handle = std::thread::spawn(move || {
            let src = Endless::load();
            // Blocks until the replay opens the FIFO.
            let mut w = match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(w) => w,
                Err(e) => return format!("open: {e}"),
            };
            if let Err(e) = w.write_all(&src.header) {
                return format!("header: {e}");
            }
            let mut buf = Vec::new();
            for k in 0.. {
                src.round(k, &mut buf);
                if paced {
                    let mut at = 0;
                    for r in &src.records {
                        if s.load(Ordering::Relaxed) {
                            return "stopped".into();
                        }
                        if let Err(e) = w.write_all(&buf[at..at + r.len()]) {
                            return format!("write: {e}");
                        }
                        b.fetch_add(r.len() as u64, Ordering::Relaxed);
                        at += r.len();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                } else {
                    for chunk in buf.chunks(64 * 1024) {
                        if s.load(Ordering::Relaxed) {
                            return "stopped".into();
                        }
                        if let Err(e) = w.write_all(chunk) {
                            return format!("write: {e}");
                        }
                        b.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                }
                r.fetch_add(1, Ordering::Relaxed);
            }
            unreachable!()
        });
        Feeder {
            stop,
            rounds,
            bytes,
            handle: Some(handle),
        }
    }

    fn alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops writing; returns why the writer ended.
    fn finish(&mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or_else(String::new, |h| {
            h.join().unwrap_or_else(|_| "panicked".into())
        })
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts `apitap replay FIFO ARGS…` and a feeder; fails fast if apitap ends before it reads.
fn fifo_run(dir: &Path, args: &[String], paced: bool) -> (Proc, Feeder) {
    let fifo = dir.join("in.pcap");
    mkfifo(&fifo);
    let mut all = vec!["replay".to_string(), fifo.display().to_string()];
    all.extend_from_slice(args);
    let mut p = Proc::spawn(&all, dir.join("apitap.stderr"));
    let f = Feeder::start(&fifo, paced);
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.bytes.load(Ordering::Relaxed) == 0 {
        if !p.running() {
            // Unblock the feeder's open, then report.
            let _ = std::fs::File::open(&fifo);
            panic!("apitap ended before reading its input:\n{}", p.stderr());
        }
        assert!(Instant::now() < deadline, "apitap never read its input");
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, f)
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// SIGTERM while packets pour in: ends within 10 s, successfully; every line whole; the
/// statistics' exchanges are the file's.
#[test]
fn sigterm_under_load_ends_cleanly_with_whole_lines() {
    let dir = workdir("sigterm-load");
    let file = dir.join("out.jsonl");
    let st = dir.join("stats.json");
    let args: Vec<String> = [
        "--workers",
        "2",
        "--output",
        &format!("jsonl:{}", file.display()),
        "--stats-json",
        st.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut p, mut feeder) = fifo_run(&dir, &args, false);
    // Under way: at least one round processed and written, and more than 3 s of load.
    let t0 = Instant::now();
    while count_lines(&file) < EXCHANGES || t0.elapsed() < Duration::from_secs(3) {
        assert!(p.running(), "apitap ended under load:\n{}", p.stderr());
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no output after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(feeder.alive(), "the feeder stopped: {}", feeder.finish());
    let before = (
        feeder.rounds.load(Ordering::Relaxed),
        feeder.bytes.load(Ordering::Relaxed),
    );
    let signalled = Instant::now();
    p.signal(libc::SIGTERM);
    let (status, err) = p.wait(Duration::from_secs(10), "after SIGTERM under load");
    let took = signalled.elapsed();
    let why = feeder.finish();
    eprintln!(
        "SIGTERM after {:.1?} of load ({} rounds, {} MB fed): ended in {took:.2?} with {status}; \
         feeder: {why}",
        t0.elapsed(),
        before.0,
        before.1 >> 20
    );
    // main.rs: SIGINT/SIGTERM set the stop flag; the replay then ends its connections,
    // writes the inventory and statistics and exits 0 like a replay that reached its end.
    assert!(
        status.success(),
        "a stop by signal must end cleanly:\n{err}"
    );
    assert!(err.contains("apitap summary"), "{err}");
    let lines = json_lines(&file);
    let n = exchanges(&lines);
    let s = stats(&st);
    eprintln!(
        "{n} exchanges in the file; stats: exchanges {}, packets {}",
        s["engine"]["exchanges"], s["packets"]
    );
    assert!(n > EXCHANGES, "the load was real: {n} exchanges");
    assert_eq!(
        s["engine"]["exchanges"], n,
        "the statistics' exchanges are the file's"
    );
    assert_eq!(s["engine"]["sink_errors"], 0);
}

/// SIGTERM while the input is open but silent (a pipe from a capture that has nothing to
/// say): the stop must not wait for the next packet.
#[test]
fn sigterm_with_an_idle_fifo_input_ends_promptly() {
    let dir = workdir("sigterm-idle");
    let fifo = dir.join("in.pcap");
    mkfifo(&fifo);
    let file = dir.join("out.jsonl");
    let st = dir.join("stats.json");
    let mut p = Proc::spawn(
        &[
            "replay",
            fifo.to_str().unwrap(),
            "--output",
            &format!("jsonl:{}", file.display()),
            "--stats-json",
            st.to_str().unwrap(),
        ],
        dir.join("apitap.stderr"),
    );
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let src = Endless::load();
    let mut buf = src.header.clone();
    let mut round = Vec::new();
    src.round(0, &mut round);
    buf.extend_from_slice(&round);
    w.write_all(&buf).unwrap();
    w.flush().unwrap();
    // Let it read everything there is (events may wait in buffers: nothing ticks while the
    // read blocks; they must be out by the end of the run).
    std::thread::sleep(Duration::from_secs(3));
    assert!(p.running(), "{}", p.stderr());
    eprintln!(
        "{} lines written 3 s after the input went idle",
        count_lines(&file)
    );
    let signalled = Instant::now();
    p.signal(libc::SIGTERM);
    // `w` stays open: no EOF comes to end the run instead.
    let (status, err) = p.wait(
        Duration::from_secs(10),
        "after SIGTERM, input idle (the FIFO's writer still open)",
    );
    eprintln!("ended {:.2?} after SIGTERM: {status}", signalled.elapsed());
    drop(w);
    assert!(status.success(), "{err}");
    assert_eq!(exchanges(&json_lines(&file)), EXCHANGES);
    assert_eq!(stats(&st)["engine"]["exchanges"], EXCHANGES);
}

// ------------------------------------------------------------------ Kafka broker gone

/// The Kafka sink's shutdown counters (`accepted=… delivered=… …`).
fn kafka_counters(stderr: &str) -> BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" accepted=") && l.contains(" undelivered="))
        .unwrap_or_else(|| panic!("no Kafka counters in stderr:\n{stderr}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The broker dies during the replay, then the replay is stopped: within the flush timeout
/// (3 s) plus a margin it ends, non-zero, saying how many events were not delivered.
#[test]
fn sigterm_with_the_kafka_broker_down_reports_what_was_not_delivered() {
    if broker::skip() {
        return;
    }
    const FLUSH_SECS: u64 = 3;
    let dir = workdir("sigterm-kafka");
    let mut broker = Broker::start(&dir);
    let file = dir.join("out.jsonl");
    let args: Vec<String> = [
        "--workers",
        "2",
        "--output",
        &format!("jsonl:{}", file.display()),
        "--output",
        &format!("kafka://{}/f1.exchanges", broker.bootstrap()),
        "--kafka-topic-inventory",
        "f1.inventory",
        "--kafka-topic-findings",
        "f1.findings",
        "--kafka-partitions",
        "1",
        "--kafka-replication",
        "1",
        "--kafka-flush-timeout-secs",
        &FLUSH_SECS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Paced (a record per ms): the run lasts, and its input never goes idle (see the idle
    // test above for what an idle input does to a stop).
    let (mut p, mut feeder) = fifo_run(&dir, &args, true);
    let t0 = Instant::now();
    while topic_count(&broker.bootstrap(), "f1.exchanges").unwrap_or(0) == 0 {
        assert!(p.running(), "{}", p.stderr());
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing reached Kafka"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let delivered_before = topic_count(&broker.bootstrap(), "f1.exchanges").unwrap_or(0);
    broker.kill();
    // More exchanges while the broker is gone: they queue in the producer.
    let lines_at_kill = count_lines(&file);
    let t1 = Instant::now();
    while count_lines(&file) < lines_at_kill + 200 {
        assert!(
            p.running(),
            "apitap ended with the broker gone:\n{}",
            p.stderr()
        );
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "no new events after the broker died"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let signalled = Instant::now();
    p.signal(libc::SIGTERM);
    let limit = Duration::from_secs(FLUSH_SECS + 12);
    let (status, err) = p.wait(limit, "SIGTERM with the broker down");
    let took = signalled.elapsed();
    let why = feeder.finish();
    eprintln!(
        "{delivered_before} exchanges in Kafka before the broker died; ended {took:.2?} after \
         SIGTERM with {status} (feeder: {why})"
    );
    let c = kafka_counters(&err);
    eprintln!("{c:?}");
    assert!(
        !status.success(),
        "undelivered events must fail the run:\n{err}"
    );
    assert!(
        c["undelivered"] + c["failed"] > 0,
        "nothing counted as lost although the broker was gone: {c:?}\n{err}"
    );
    assert!(
        err.contains(&format!("{} events still queued at exit", c["undelivered"]))
            && err.contains("not delivered"),
        "the error must say how many events were not delivered:\n{err}"
    );
    assert_eq!(
        c["accepted"],
        c["delivered"] + c["failed"] + c["undelivered"],
        "every accepted event is accounted for: {c:?}"
    );
    let lines = json_lines(&file);
    assert_eq!(
        c["accepted"] + c["dropped"],
        lines.len() as u64,
        "the file holds what Kafka was given: {c:?}"
    );
}
