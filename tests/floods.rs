//! Floods and slow attacks (issue #9): each case writes a capture with [`flood`], replays it
//! with the real binary and default settings, and checks that
//! - peak memory stays bounded (the child's peak RSS, at most [`RSS_LIMIT_KIB`]),
//! - the run's counters (`--stats-json`) say what was dropped or capped,
//! - one ordinary exchange written after the attack is still observed.
//!
//! Sizes: the defaults keep the whole file under about a minute and a half on two cores.
//! `APITAP_FLOOD_HEAVY=1` switches every case to the full size (a million half-open
//! flows, a million SYNs, 200 MB of chunks …); `APITAP_FLOOD_FLOWS=N` sets the number of
//! flows of the slowloris and SYN-flood cases alone. Each case prints one line with its
//! numbers (`cargo test --test floods -- --nocapture`). `APITAP_FLOOD_BIN=PATH` replays with
//! another build (a release binary for the full-size runs).
//!
//! Cases: (a) slowloris, (a') slowloris against a small table, (b) SYN flood, (c) pipelined
//! requests without responses, (d) huge header blocks, (e) endless chunked body, (f) absurd
//! Content-Length, (g) sequence wrap and RST injection, (h) conflicting overlaps, (i) HPACK
//! table-size bomb over h2c, (j) gzip bombs, (k) trickled head, (l) oversized heads, (m) slow
//! heads against a small parser memory budget.
//!
//! Peak RSS is read from GNU time (`/usr/bin/time -f %M`, the kernel's `ru_maxrss` of the
//! child) when it is installed, else from the child's `VmHWM` polled every few milliseconds
//! (a lower bound that can miss a last-moment peak; the line printed says which).
#[path = "common/flood.rs"]
mod flood;
#[path = "common/scratch.rs"]
mod scratch;

use flood::{clean_exchange, h2, h2_frame, hpack_int, hpack_str, nth_client, Conn, Ep, Pcap};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bar for a million half-open flows with default settings.
const RSS_LIMIT_KIB: u64 = 512 * 1024;
/// Flows of the slowloris and SYN-flood cases in the default run.
const DEFAULT_FLOWS: u64 = 100_000;
/// The server the attacks aim at.
const VICTIM: Ep = Ep::new([203, 0, 113, 10], 80);
/// Connections a default run tracks, all workers together (`--max-flows`).
const MAX_FLOWS: u64 = 262_144;

fn heavy() -> bool {
    std::env::var("APITAP_FLOOD_HEAVY").is_ok_and(|v| v == "1")
}

fn flows() -> u64 {
    match std::env::var("APITAP_FLOOD_FLOWS") {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .expect("APITAP_FLOOD_FLOWS must be a number"),
        Err(_) if heavy() => 1_000_000,
        Err(_) => DEFAULT_FLOWS,
    }
}

/// The workers a default run starts (one per core), each with its own flow table.
fn workers() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Connections a run with `--max-flows max` can track at once: each worker's table gets an
/// equal share, rounded up.
fn capacity(max: u64) -> u64 {
    workers() * max.div_ceil(workers())
}

/// A case's scratch directory, removed when the case passes.
struct Case {
    name: &'static str,
    dir: PathBuf,
}

impl Case {
    fn new(name: &'static str) -> Case {
        let dir = scratch::dir(&format!("flood-{name}"), true);
        Case { name, dir }
    }

    fn pcap_path(&self) -> PathBuf {
        self.dir.join("capture.pcap")
    }

    /// Writes the capture with `f`, then the clean exchange (`/after-flood/NAME`).
    fn write(&self, f: impl FnOnce(&mut Pcap) -> std::io::Result<()>) -> Written {
        let t = Instant::now();
        let mut p = Pcap::create(&self.pcap_path()).unwrap();
        f(&mut p).unwrap();
        p.advance_us(1_000);
        clean_exchange(&mut p, &self.clean_path(), 40_000).unwrap();
        let w = Written {
            packets: p.packets,
            bytes: p.bytes,
            secs: t.elapsed().as_secs_f64(),
        };
        p.finish().unwrap();
        w
    }

    fn clean_path(&self) -> String {
        format!("/after-flood/{}", self.name)
    }

    /// Replays the capture with default settings.
    fn replay(&self) -> Run {
        self.replay_with(&[])
    }

    /// Replays the capture with default settings but for `extra` options.
    fn replay_with(&self, extra: &[&str]) -> Run {
        let out = self.dir.join("out.jsonl");
        let stats = self.dir.join("stats.json");
        let rss_file = self.dir.join("rss");
        // Another build (a release binary for the full-size runs) can be named explicitly.
        let bin_env = std::env::var("APITAP_FLOOD_BIN").ok();
        let bin = bin_env.as_deref().unwrap_or(env!("CARGO_BIN_EXE_apitap"));
        let args: [std::ffi::OsString; 7] = [
            "replay".into(),
            self.pcap_path().into(),
            "-o".into(),
            format!("jsonl:{}", out.display()).into(),
            "--stats-json".into(),
            stats.clone().into(),
            "-q".into(),
        ];
        let gnu_time = Path::new("/usr/bin/time");
        let use_time = gnu_time.exists();
        let mut cmd = if use_time {
            let mut c = Command::new(gnu_time);
            c.arg("-f")
                .arg("%M %U %S")
                .arg("-o")
                .arg(&rss_file)
                .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(&args)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let mut child = cmd.spawn().expect("cannot start apitap");
        // Polled even under GNU time: the figure is then only a cross-check.
        let mut hwm = 0u64;
        let mut cpu = 0f64;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if let Some(pid) = apitap_pid(child.id(), use_time) {
                hwm = hwm.max(vm_hwm_kib(pid).unwrap_or(0));
                cpu = cpu.max(cpu_secs(pid).unwrap_or(0.0));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let secs = t.elapsed().as_secs_f64();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(
            status.success(),
            "{}: apitap failed ({status}):\n{err}",
            self.name
        );
        let (rss_kib, cpu_secs, rss_how) = if use_time {
            // GNU time writes "Command exited with non-zero status" first when it did.
            let s = std::fs::read_to_string(&rss_file).unwrap();
            let last = s.lines().last().unwrap_or("");
            let f: Vec<&str> = last.split_whitespace().collect();
            let (Some(kib), Some(user), Some(sys)) = (
                f.first().and_then(|v| v.parse::<u64>().ok()),
                f.get(1).and_then(|v| v.parse::<f64>().ok()),
                f.get(2).and_then(|v| v.parse::<f64>().ok()),
            ) else {
                panic!("no peak RSS in GNU time's output: {s:?}");
            };
            (kib, user + sys, "ru_maxrss")
        } else {
            (hwm, cpu, "VmHWM polled")
        };
        let stats: Value =
            serde_json::from_slice(&std::fs::read(&stats).expect("no stats JSON")).unwrap();
        let out = std::fs::read_to_string(&out).unwrap_or_default();
        let exchanges = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("observation is not JSON"))
            .filter(|v| v["type"] == "http_exchange")
            .collect();
        Run {
            name: self.name,
            stats,
            exchanges,
            rss_kib,
            rss_how,
            secs,
            cpu_secs,
        }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        // Keep the files of a failed case for a look.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The apitap process: `pid` itself, or the one child of GNU time.
fn apitap_pid(pid: u32, wrapper: bool) -> Option<u32> {
    if !wrapper {
        return Some(pid);
    }
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    kids.split_whitespace().next()?.parse().ok()
}

/// Peak resident set of a running process (`VmHWM`), KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of a running process so far, assuming 100 clock ticks a second.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

struct Written {
    packets: u64,
    bytes: u64,
    secs: f64,
}

struct Run {
    name: &'static str,
    stats: Value,
    exchanges: Vec<Value>,
    rss_kib: u64,
    rss_how: &'static str,
    secs: f64,
    cpu_secs: f64,
}

impl Run {
    /// A counter of the stats JSON, by JSON pointer (`/flows/evicted`).
    fn n(&self, ptr: &str) -> u64 {
        self.stats
            .pointer(ptr)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{}: no counter {ptr} in the stats", self.name))
    }

    /// Exchanges whose request path is `path`.
    fn with_path(&self, path: &str) -> Vec<&Value> {
        self.exchanges
            .iter()
            .filter(|e| e["request"]["path"] == path)
            .collect()
    }

    /// The bounds every case shares: memory, the clean exchange, the flow accounting.
    fn check_common(&self, case: &Case, w: &Written, counters: &[&str]) {
        let clean = self.with_path(&case.clean_path());
        assert_eq!(
            clean.len(),
            1,
            "{}: the clean exchange after the attack was not observed once",
            self.name
        );
        assert_eq!(clean[0]["response"]["status"], 200, "{}", self.name);
        assert_eq!(
            self.n("/decode/tcp"),
            w.packets,
            "{}: frames lost",
            self.name
        );
        // Every connection created was closed by one reason or another.
        let closed: u64 = [
            "closed_fin",
            "closed_rst",
            "closed_idle",
            "evicted",
            "closed_reused",
            "closed_shutdown",
        ]
        .iter()
        .map(|k| self.n(&format!("/flows/{k}")))
        .sum();
        assert_eq!(
            closed,
            self.n("/flows/flows_created"),
            "{}: flows unaccounted",
            self.name
        );
        let shown: Vec<String> = counters
            .iter()
            .map(|p| format!("{}={}", p.trim_start_matches('/'), self.n(p)))
            .collect();
        eprintln!(
            "flood {:<12} {:>9} packets {:>7.1} MB capture (written in {:.1} s) | replay {:>6.2} s \
             ({:.2} s CPU), peak RSS {:>6.1} MiB ({}) | exchanges={} {}",
            self.name,
            w.packets,
            w.bytes as f64 / 1e6,
            w.secs,
            self.secs,
            self.cpu_secs,
            self.rss_kib as f64 / 1024.0,
            self.rss_how,
            self.n("/engine/exchanges"),
            shown.join(" ")
        );
        assert!(
            self.rss_kib <= RSS_LIMIT_KIB,
            "{}: peak RSS {} KiB > {} KiB",
            self.name,
            self.rss_kib,
            RSS_LIMIT_KIB
        );
    }
}

/// Slowloris connections: each opened with a handshake and left with an unfinished request
/// head, then one more trickle of header bytes on each once all are open.
fn slowloris(p: &mut Pcap, n: u64) -> std::io::Result<()> {
    let head = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow:";
    let mut conns = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut c = Conn::new(nth_client(i), VICTIM, (i as u32).wrapping_mul(7919), 1);
        c.handshake(p)?;
        c.client(p, head)?;
        conns.push(c);
    }
    // The trickle that keeps a slowloris connection alive on a real server.
    for c in &mut conns {
        c.client(p, b" a")?;
    }
    Ok(())
}

/// (a) Slowloris on a mirror: N half-open connections with unfinished requests, default
/// settings. `APITAP_FLOOD_FLOWS=1000000` is the bar (≤ 512 MiB).
#[test]
fn slowloris_half_open_flows() {
    let n = flows();
    let case = Case::new("slowloris");
    let w = case.write(|p| slowloris(p, n));
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/flows/flows_created",
            "/flows/evicted",
            "/flows/midstream",
            "/flows/peak_flows",
            "/flows/closed_shutdown",
        ],
    );
    // Unfinished heads are never exchanges: the clean one is the only one.
    assert_eq!(r.n("/engine/exchanges"), 1);
    assert!(r.n("/flows/flows_created") > n);
    let capacity = capacity(MAX_FLOWS);
    assert!(r.n("/flows/peak_flows") <= capacity);
    if n + 1 > capacity {
        // The table was full: the oldest connections made room and were counted.
        assert!(
            r.n("/flows/evicted") >= n + 1 - capacity,
            "evictions not counted"
        );
    } else {
        assert_eq!(r.n("/flows/evicted"), 0);
        assert_eq!(r.n("/flows/with_handshake"), n + 1);
    }
}

/// (a') The same attack against a small table (`--max-flows`), so that the default run also
/// goes through eviction: connections made room for newer ones, their late trickles came
/// back as midstream connections, and all of it is counted.
#[test]
fn slowloris_against_a_full_table() {
    const N: u64 = 30_000;
    const MAX: u64 = 5_000;
    let case = Case::new("slowloris-full");
    let w = case.write(|p| slowloris(p, N));
    let r = case.replay_with(&["--max-flows", "5000"]);
    r.check_common(
        &case,
        &w,
        &[
            "/flows/flows_created",
            "/flows/evicted",
            "/flows/midstream",
            "/flows/peak_flows",
        ],
    );
    assert_eq!(r.n("/engine/exchanges"), 1);
    // The cap is the process's, however many workers share it.
    assert!(r.n("/flows/peak_flows") <= capacity(MAX));
    assert!(r.n("/flows/evicted") >= N + 1 - capacity(MAX));
    // Every trickle to an evicted connection opened a midstream one.
    assert!(r.n("/flows/midstream") >= N - capacity(MAX));
}

/// (b) A SYN flood from random sources: every SYN opens a tracked connection that never
/// carries anything.
#[test]
fn syn_flood_from_random_sources() {
    let n = flows();
    let case = Case::new("synflood");
    let w = case.write(|p| {
        let mut rng = flood::Rng::new(0x5eed);
        for _ in 0..n {
            let r = rng.next_u64();
            let src = Ep::new(
                [10, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8],
                (r >> 32) as u16 | 1024,
            );
            p.tcp(src, VICTIM, rng.next_u32(), 0, flood::SYN, b"")?;
        }
        Ok(())
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/flows/flows_created",
            "/flows/with_handshake",
            "/flows/evicted",
            "/flows/closed_reused",
            "/flows/peak_flows",
        ],
    );
    assert_eq!(r.n("/engine/exchanges"), 1);
    // A repeated random source is a SYN with a new ISN on a known tuple: counted as reuse.
    assert_eq!(r.n("/flows/with_handshake"), n + 1);
    let capacity = capacity(MAX_FLOWS);
    assert!(r.n("/flows/peak_flows") <= capacity);
    if n + 1 > capacity {
        assert!(r.n("/flows/evicted") >= n + 1 - capacity - r.n("/flows/closed_reused"));
    }
}

/// (c) One connection with 10,000 pipelined requests and not one response.
#[test]
fn pipelined_requests_without_responses() {
    const N: u64 = 10_000;
    let case = Case::new("pipeline");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 7], 50_000), VICTIM, 10, 20);
        c.handshake(p)?;
        let mut all = Vec::new();
        for i in 0..N {
            write!(
                all,
                "GET /pipe/item-{i} HTTP/1.1\r\nHost: a\r\nX-N: {i}\r\n\r\n"
            )?;
        }
        // Segments cut across request boundaries, the server acknowledging now and then.
        for chunk in all.chunks(64 * flood::MSS) {
            c.client(p, chunk)?;
            c.server_ack(p)?;
        }
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/parsers/http1_requests",
            "/parsers/pending_overflow",
            "/engine/without_response",
        ],
    );
    assert_eq!(r.n("/parsers/http1_requests"), N + 1);
    // The pending queue is capped (256 by default): the rest went out without a response,
    // counted, as soon as they overflowed.
    assert_eq!(r.n("/parsers/pending_overflow"), N - 256);
    assert_eq!(r.n("/engine/without_response"), N);
    assert_eq!(r.n("/engine/exchanges"), N + 1);
}

/// (d) Huge header blocks: a request with a 1 MiB header line, a response with 20,000 header
/// fields, then an ordinary request on the same connection.
#[test]
fn huge_header_blocks() {
    let case = Case::new("headers");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 8], 50_001), VICTIM, 10, 20);
        c.handshake(p)?;
        let mut req = b"GET /huge-line HTTP/1.1\r\nHost: a\r\nX-Huge: ".to_vec();
        req.extend(std::iter::repeat_n(b'h', 1 << 20));
        req.extend_from_slice(b"\r\n\r\n");
        c.client(p, &req)?;
        c.server(
            p,
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
        )?;
        c.client(p, b"GET /many-fields HTTP/1.1\r\nHost: a\r\n\r\n")?;
        let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..20_000 {
            write!(resp, "X-F{i}: v\r\n")?;
        }
        resp.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        c.server(p, &resp)?;
        c.client(p, b"GET /after-huge HTTP/1.1\r\nHost: a\r\n\r\n")?;
        c.server(p, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/parsers/http1_oversized_heads",
            "/parsers/resyncs",
            "/parsers/resync_skipped_bytes",
            "/parsers/orphan_responses",
        ],
    );
    // Both oversized heads were refused and counted, not buffered.
    assert_eq!(r.n("/parsers/http1_oversized_heads"), 2);
    // The connection recovered for the next exchange.
    let after = r.with_path("/after-huge");
    assert_eq!(after.len(), 1, "the request after the huge heads was lost");
    assert_eq!(after[0]["response"]["status"], 200);
}

/// Size of the endless chunked body.
fn chunked_bytes() -> u64 {
    if heavy() {
        200_000_000
    } else {
        24_000_000
    }
}

/// (e) A response whose chunked body never ends (no last chunk, no FIN).
#[test]
fn endless_chunked_body() {
    let total = chunked_bytes();
    let case = Case::new("chunked");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 9], 50_002), VICTIM, 10, 20);
        c.handshake(p)?;
        c.client(p, b"GET /endless HTTP/1.1\r\nHost: a\r\n\r\n")?;
        c.server(
            p,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        )?;
        let mut chunk = b"4000\r\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'z', 0x4000));
        chunk.extend_from_slice(b"\r\n");
        let mut sent = 0;
        let mut n = 0u64;
        while sent < total {
            c.server(p, &chunk)?;
            sent += 0x4000;
            n += 1;
            if n % 16 == 0 {
                c.client_ack(p)?;
            }
        }
        Ok(())
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/flows/reassembly/bytes_delivered",
            "/flows/closed_shutdown",
        ],
    );
    let e = r.with_path("/endless");
    assert_eq!(
        e.len(),
        1,
        "the endless response's exchange is emitted at the end"
    );
    // All of it counted, none of it kept beyond the prefix cap.
    let sent = total.div_ceil(0x4000) * 0x4000;
    assert_eq!(e[0]["response"]["body_bytes"], sent);
    assert_eq!(r.n("/flows/closed_shutdown"), 1);
}

/// (f) Absurd Content-Length values: 2^63 on both sides, 2^64 (overflows u64), and a chunk
/// size that overflows.
#[test]
fn absurd_content_length() {
    let case = Case::new("contentlength");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 10], 50_003), VICTIM, 10, 20);
        c.handshake(p)?;
        let mut req = b"POST /cl-two-pow-63 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 9223372036854775808\r\n\r\n{\"a\":\"".to_vec();
        req.extend(std::iter::repeat_n(b'x', 1 << 20));
        c.client(p, &req)?;
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat_n(b'y', 256 << 10));
        c.server(p, &resp)?;
        c.close(p)?;

        let mut c = Conn::new(Ep::new([192, 0, 2, 10], 50_004), VICTIM, 10, 20);
        c.handshake(p)?;
        c.client(
            p,
            b"POST /cl-two-pow-64 HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\nabc",
        )?;
        c.server(p, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
        c.close(p)?;

        let mut c = Conn::new(Ep::new([192, 0, 2, 10], 50_005), VICTIM, 10, 20);
        c.handshake(p)?;
        c.client(p, b"GET /chunk-overflow HTTP/1.1\r\nHost: a\r\n\r\n")?;
        c.server(
            p,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        )?;
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/parsers/http1_parse_errors",
            "/parsers/resyncs",
            "/engine/with_gap",
        ],
    );
    // The 2^63 request: every byte counted, the body marked incomplete at the close.
    let e = r.with_path("/cl-two-pow-63");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["request"]["body_bytes"], (1u64 << 20) + 6);
    assert_eq!(e[0]["response"]["body_bytes"], 256u64 << 10);
    assert_eq!(e[0]["gap"], true, "a body cut short is flagged");
}

/// (g) Sequence numbers wrapping mid-stream in both directions, and RSTs injected with
/// sequence numbers far outside the window.
#[test]
fn sequence_wrap_and_rst_injection() {
    let case = Case::new("seqwrap");
    let w = case.write(|p| {
        let mut c = Conn::new(
            Ep::new([192, 0, 2, 11], 50_006),
            VICTIM,
            0xffff_fc00,
            0xffff_f000,
        );
        c.handshake(p)?;
        let mut req =
            b"POST /wrap-one HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'q', 3000));
        c.client(p, &req)?;
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 6000\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat_n(b'r', 6000));
        c.server(p, &resp)?;
        assert!(
            c.cseq < 0x1000 && c.sseq < 0x2000,
            "both directions wrapped"
        );
        c.client_ack(p)?;
        // Blind injection: RSTs whose sequence numbers are nowhere near the window.
        p.tcp(
            c.client,
            c.server,
            c.cseq.wrapping_add(0x4000_0000),
            0,
            flood::RST,
            b"",
        )?;
        p.tcp(
            c.server,
            c.client,
            c.sseq.wrapping_sub(0x10_0000),
            0,
            flood::RST,
            b"",
        )?;
        c.client(p, b"GET /wrap-two HTTP/1.1\r\nHost: a\r\n\r\n")?;
        c.server(p, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/flows/closed_rst",
            "/flows/rst_out_of_window",
            "/flows/closed_fin",
            "/flows/midstream",
            "/flows/reassembly/gaps_acked",
            "/flows/reassembly/before_start_segments",
        ],
    );
    let one = r.with_path("/wrap-one");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["request"]["body_bytes"], 3000);
    assert_eq!(one[0]["response"]["body_bytes"], 6000);
    assert_eq!(one[0]["gap"], false, "bytes across the wrap were lost");
    let two = r.with_path("/wrap-two");
    assert_eq!(
        two.len(),
        1,
        "the exchange after the injected RSTs was lost"
    );
    assert_eq!(two[0]["response"]["status"], 200);
    // RFC 5961 §3.2: a RST outside the window is ignored (and counted); the connection goes on.
    assert_eq!(
        r.n("/flows/closed_rst"),
        0,
        "an out-of-window RST closed the flow"
    );
    assert_eq!(r.n("/flows/rst_out_of_window"), 2);
    assert_eq!(one[0]["flow_id"], two[0]["flow_id"]);
}

/// (h) Overlapping segments with conflicting bytes: the first copy wins, held or delivered.
#[test]
fn overlapping_segments_first_copy_wins() {
    let case = Case::new("overlap");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 12], 50_007), VICTIM, 1000, 9000);
        c.handshake(p)?;
        let (cl, sv) = (c.client, c.server);
        let good = b"GET /first-copy HTTP/1.1\r\nHost: a\r\n\r\n";
        let evil = b"GET /evil-copy! HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(good.len(), evil.len());
        let s = c.cseq;
        // Out of order: the tail arrives first and is held; a conflicting copy of the tail
        // must not replace it; then the head fills the hole.
        p.tcp(cl, sv, s + 4, c.sseq, flood::ACK, &good[4..])?;
        p.tcp(cl, sv, s + 4, c.sseq, flood::ACK, &evil[4..])?;
        p.tcp(cl, sv, s, c.sseq, flood::ACK, &good[..4])?;
        // In order: a retransmission of the whole request with other bytes is a duplicate.
        p.tcp(cl, sv, s, c.sseq, flood::ACK, evil)?;
        c.cseq += good.len() as u32;
        c.server(p, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        // A segment overlapping delivered bytes and reaching further: only the new part counts.
        let good2 = b"GET /second-first HTTP/1.1\r\nHost: a\r\n\r\n";
        let evil2 = b"GET /evilxx-first HTTP/1.1\r\nHost: a\r\n\r\n";
        let s = c.cseq;
        p.tcp(cl, sv, s, c.sseq, flood::ACK, &good2[..14])?;
        p.tcp(cl, sv, s + 5, c.sseq, flood::ACK, &evil2[5..])?;
        c.cseq += good2.len() as u32;
        c.server(p, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/flows/reassembly/overlapping_segments",
            "/flows/reassembly/duplicate_segments",
            "/flows/reassembly/out_of_order_segments",
        ],
    );
    assert_eq!(r.with_path("/first-copy").len(), 1);
    assert_eq!(r.with_path("/second-first").len(), 1);
    for e in &r.exchanges {
        let path = e["request"]["path"].as_str().unwrap_or("");
        assert!(!path.contains("evil"), "a later copy won: {path}");
    }
    assert!(r.n("/flows/reassembly/overlapping_segments") >= 2);
    assert!(r.n("/flows/reassembly/duplicate_segments") >= 1);
    assert!(r.n("/flows/reassembly/out_of_order_segments") >= 1);
}

/// Header blocks of the HPACK bomb.
fn hpack_blocks() -> u32 {
    if heavy() {
        10_000
    } else {
        2_000
    }
}

/// (i) An HPACK table-size bomb over h2c (prior knowledge): both peers allow a 4 GiB table,
/// the client's encoder announces it and inserts 12 KB per request into the dynamic table.
/// Then a request that any decoder can read (static and literal-not-indexed fields only).
#[test]
fn hpack_table_size_bomb() {
    let blocks = hpack_blocks();
    let case = Case::new("hpackbomb");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 13], 50_008), VICTIM, 10, 20);
        c.handshake(p)?;
        let mut settings = Vec::new();
        settings.extend_from_slice(&h2::HEADER_TABLE_SIZE.to_be_bytes());
        settings.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut cl = h2::PREFACE.to_vec();
        h2_frame(&mut cl, h2::SETTINGS, 0, 0, &settings);
        c.client(p, &cl)?;
        let mut sv = Vec::new();
        h2_frame(&mut sv, h2::SETTINGS, 0, 0, &settings);
        h2_frame(&mut sv, h2::SETTINGS, h2::ACK, 0, b"");
        c.server(p, &sv)?;
        let mut ack = Vec::new();
        h2_frame(&mut ack, h2::SETTINGS, h2::ACK, 0, b"");
        c.client(p, &ack)?;
        let value = vec![b'v'; 4000];
        for i in 0..blocks {
            let stream = 2 * i + 1;
            let mut hb = Vec::new();
            if i == 0 {
                hpack_int(&mut hb, 0x20, 5, u64::from(u32::MAX)); // table size update
            }
            hb.extend_from_slice(&[0x82, 0x86]); // :method GET, :scheme http
            if i > 0 {
                // The first block's first x-bomb field, still in a 4 GiB table: index 62 +
                // the 2 later inserts of block 0 + 5 inserts per block since.
                hpack_int(&mut hb, 0x80, 7, 64 + 5 * u64::from(i - 1));
            }
            hpack_int(&mut hb, 0x40, 6, 4); // :path, incremental indexing
            hpack_str(&mut hb, format!("/bomb/{i}").as_bytes());
            hpack_int(&mut hb, 0x40, 6, 1); // :authority
            hpack_str(&mut hb, b"a");
            for k in 0..3 {
                hb.push(0x40); // new name, incremental indexing
                hpack_str(&mut hb, format!("x-bomb-{i}-{k}").as_bytes());
                hpack_str(&mut hb, &value);
            }
            let mut f = Vec::new();
            h2_frame(
                &mut f,
                h2::HEADERS,
                h2::END_HEADERS | h2::END_STREAM,
                stream,
                &hb,
            );
            c.client(p, &f)?;
            let mut f = Vec::new();
            let mut status = Vec::new();
            if i == 0 {
                hpack_int(&mut status, 0x20, 5, u64::from(u32::MAX));
            }
            status.push(0x88); // :status 200
            h2_frame(
                &mut f,
                h2::HEADERS,
                h2::END_HEADERS | h2::END_STREAM,
                stream,
                &status,
            );
            c.server(p, &f)?;
        }
        // :method GET, :scheme http, :path and :authority literal without indexing.
        let stream = 2 * blocks + 1;
        let mut hb = vec![0x82, 0x86];
        hpack_int(&mut hb, 0x00, 4, 4);
        hpack_str(&mut hb, b"/after-bomb");
        hpack_int(&mut hb, 0x00, 4, 1);
        hpack_str(&mut hb, b"a");
        let mut f = Vec::new();
        h2_frame(
            &mut f,
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &hb,
        );
        c.client(p, &f)?;
        let mut f = Vec::new();
        h2_frame(
            &mut f,
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &[0x88],
        );
        c.server(p, &f)?;
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/parsers/h2/header_blocks",
            "/parsers/h2/hpack_table_size_clamped",
            "/parsers/h2/hpack_unknown_refs",
            "/parsers/h2/hpack_invalid_index",
            "/parsers/h2/hpack_errors",
            "/engine/exchanges_http2",
        ],
    );
    // Both directions' 4 GiB size updates were clamped to the configured maximum.
    assert!(r.n("/parsers/h2/hpack_table_size_clamped") >= 2);
    // References to entries the clamped table had to drop are counted, never resolved to
    // whatever entry sits at that index in the smaller table.
    let lost = r.n("/parsers/h2/hpack_unknown_refs") + r.n("/parsers/h2/hpack_invalid_index");
    assert!(
        lost >= u64::from(blocks) / 2,
        "references to dropped entries: {lost}"
    );
    for e in &r.exchanges {
        let path = e["request"]["path"].as_str().unwrap_or("");
        let Some(i) = path.strip_prefix("/bomb/") else {
            continue;
        };
        for name in e["request"]["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if let Some(rest) = name.strip_prefix("x-bomb-") {
                let block = rest.split('-').next().unwrap_or("");
                assert!(
                    block == i || block == "0",
                    "{path} decoded {name}: wrong entry"
                );
            }
        }
    }
    assert_eq!(r.n("/engine/exchanges_http2"), u64::from(blocks) + 1);
    let after = r.with_path("/after-bomb");
    assert_eq!(after.len(), 1, "the HTTP/2 request after the bomb was lost");
    assert_eq!(after[0]["response"]["status"], 200);
}

/// 100 MB of zeros, gzip-compressed (about 100 KB).
fn gzip_bomb() -> Vec<u8> {
    use flate2::{write::GzEncoder, Compression};
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..100 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap()
}

/// (j) A gzip bomb both ways: a request and a response body of 100 MB of zeros compressed,
/// labelled as JSON so that the inspector tries to read them.
#[test]
fn gzip_bomb_bodies() {
    let bomb = gzip_bomb();
    let case = Case::new("gzipbomb");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 14], 50_009), VICTIM, 10, 20);
        c.handshake(p)?;
        let mut req = format!(
            "POST /gzip-bomb HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            bomb.len()
        )
        .into_bytes();
        req.extend_from_slice(&bomb);
        c.client(p, &req)?;
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
             Content-Length: {}\r\n\r\n",
            bomb.len()
        )
        .into_bytes();
        resp.extend_from_slice(&bomb);
        c.server(p, &resp)?;
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/inspect/bodies/decoded",
            "/inspect/bodies/bomb_capped",
            "/inspect/bodies/decode_truncated",
            "/inspect/bodies/invalid_json",
        ],
    );
    let e = r.with_path("/gzip-bomb");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["request"]["body_bytes"], bomb.len());
    assert_eq!(e[0]["response"]["body_bytes"], bomb.len());
    // Both bodies were cut at the decoding cap, and counted.
    assert_eq!(r.n("/inspect/bodies/bomb_capped"), 2);
}

/// Bytes of the trickled head and of the trickled body it is compared with.
fn trickle_bytes() -> usize {
    if heavy() {
        63 << 10
    } else {
        12 << 10
    }
}

/// One connection that trickles `payload` one byte per segment after `prefix` (one segment),
/// then gets a small response.
fn trickle(p: &mut Pcap, port: u16, prefix: &[u8], payload: &[u8]) -> std::io::Result<()> {
    let mut c = Conn::new(Ep::new([192, 0, 2, 15], port), VICTIM, 10, 20);
    c.handshake(p)?;
    c.client(p, prefix)?;
    for (i, b) in payload.iter().enumerate() {
        c.client(p, std::slice::from_ref(b))?;
        if i % 64 == 63 {
            c.server_ack(p)?;
        }
    }
    c.server(p, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
    c.close(p)
}

/// (k) A request head trickled one byte per segment (slowloris that finishes), against the
/// same number of one-byte segments carrying a body. A head gathered across segments must
/// cost linear time: the control and the attack should take about the same CPU.
#[test]
fn trickled_head_costs_linear_time() {
    let n = trickle_bytes();
    let head_case = Case::new("trickle-head");
    let w_head = head_case.write(|p| {
        let mut head = b"GET /trickled-head HTTP/1.1\r\nHost: a\r\n".to_vec();
        let field = format!("X-Slow: {}\r\n", "s".repeat(500));
        while head.len() + field.len() + 2 < n {
            head.extend_from_slice(field.as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        trickle(p, 50_010, b"", &head)
    });
    let body_case = Case::new("trickle-body");
    let w_body = body_case.write(|p| {
        let prefix =
            format!("POST /trickled-body HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n");
        trickle(p, 50_011, prefix.as_bytes(), &vec![b'b'; n])
    });
    let head = head_case.replay();
    head.check_common(&head_case, &w_head, &["/parsers/http1_oversized_heads"]);
    let body = body_case.replay();
    body.check_common(&body_case, &w_body, &["/parsers/http1_requests"]);
    let h = head.with_path("/trickled-head");
    assert_eq!(h.len(), 1, "the trickled head was not parsed");
    assert_eq!(h[0]["response"]["status"], 200);
    assert_eq!(
        body.with_path("/trickled-body")[0]["request"]["body_bytes"],
        n
    );
    let ratio = head.cpu_secs / body.cpu_secs.max(0.01);
    eprintln!(
        "flood trickle: {} one-byte segments: head {:.2} s CPU, body {:.2} s CPU, ratio {ratio:.1}",
        n, head.cpu_secs, body.cpu_secs
    );
    // Re-parsing the whole gathered head on every segment would be quadratic.
    assert!(
        ratio < 3.0,
        "a trickled head costs {ratio:.1}× a trickled body"
    );
}

/// Oversized heads in the oversized-heads case.
fn oversized_heads() -> usize {
    if heavy() {
        8_000
    } else {
        400
    }
}

/// (l) Request heads over the 64 KiB cap, each with a 60 KiB request-target, pipelined on one
/// connection that never gets a response (more of them than `max_pending_requests`, 256).
/// The refused heads' request lines are kept as requests; they must be bounded like any
/// pending request.
#[test]
fn oversized_heads_without_responses() {
    let n = oversized_heads();
    let case = Case::new("oversized");
    let w = case.write(|p| {
        let mut c = Conn::new(Ep::new([192, 0, 2, 16], 50_012), VICTIM, 10, 20);
        c.handshake(p)?;
        let mut head = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\nX-Pad: ",
            "t".repeat(60 << 10)
        );
        head.push_str(&"p".repeat(8 << 10));
        head.push_str("\r\n\r\n");
        for i in 0..n {
            // Offloaded 32 KiB segments: what this case is about is memory, not the cost of
            // gathering a head from small segments (case k).
            c.client_segments(p, head.as_bytes(), 32 << 10)?;
            if i % 8 == 7 {
                c.server_ack(p)?;
            }
        }
        c.close(p)
    });
    let r = case.replay();
    r.check_common(
        &case,
        &w,
        &[
            "/parsers/http1_oversized_heads",
            "/parsers/pending_overflow",
            "/engine/without_response",
        ],
    );
    assert_eq!(r.n("/parsers/http1_oversized_heads"), n as u64);
    // Requests kept from oversized heads are bounded by max_pending_requests like any other,
    // so the connection does not hold every 60 KiB target until it closes.
    assert!(r.n("/parsers/pending_overflow") >= (n as u64).saturating_sub(256));
}

/// (m) Unfinished 8 KiB request heads on many connections, replayed with a small parser
/// memory budget (`parser.memory_budget_bytes`, 1 MiB per worker, through a config file) and
/// two workers (the reference deployment's, and the same numbers on any machine): the heads
/// that fit are gathered, the others are refused and counted, no budget is exceeded, and once
/// the idle attackers are closed the budget is whole again for the clean exchange.
#[test]
fn slow_heads_against_a_small_parser_budget() {
    const N: u64 = 2_000;
    const BUDGET: u64 = 1 << 20;
    let case = Case::new("budget");
    let w = case.write(|p| {
        let mut head = b"GET /slow-head HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        head.extend(std::iter::repeat_n(b'p', 8 << 10));
        for i in 0..N {
            let mut c = Conn::new(nth_client(i), VICTIM, (i as u32).wrapping_mul(7919), 1);
            c.handshake(p)?;
            c.client(p, &head)?;
        }
        // The attackers go quiet past the idle timeout, and are closed.
        p.advance_us(130_000_000);
        Ok(())
    });
    let cfg = case.dir.join("apitap.toml");
    std::fs::write(&cfg, format!("[parser]\nmemory_budget_bytes = {BUDGET}\n")).unwrap();
    let r = case.replay_with(&["--config", cfg.to_str().unwrap(), "--workers", "2"]);
    r.check_common(
        &case,
        &w,
        &[
            "/parsers/budget_refusals",
            "/parsers/budget_dropped_bytes",
            "/parsers/budget_peak_bytes",
            "/flows/closed_idle",
        ],
    );
    // Far more than the budget was offered (N × 8 KiB): most heads were refused, counted
    // with at least their first segment (the rest of a refused head is skipped by the
    // resynchronisation that follows).
    assert!(r.n("/parsers/budget_refusals") >= N / 2);
    assert!(r.n("/parsers/budget_dropped_bytes") >= (N / 2) * flood::MSS as u64);
    assert_eq!(r.n("/parsers/http1_oversized_heads"), 0);
    // No worker went over its budget (the summary adds up the workers' peaks).
    assert!(r.n("/parsers/budget_peak_bytes") <= BUDGET * 2);
    assert!(r.n("/parsers/budget_peak_bytes") > BUDGET / 2);
    // Every connection ended (idle on the clean exchange's worker, the rest at the end of
    // the replay), and gave back what it held.
    assert_eq!(r.n("/parsers/budget_used_bytes"), 0);
    assert!(r.n("/flows/closed_idle") > 0);
    // A refused head's request line is kept when the budget allows; an unfinished head never
    // makes an exchange of its own.
    assert!(r
        .exchanges
        .iter()
        .filter(|e| e["request"]["path"] == "/slow-head")
        .all(|e| e["response"].is_null()));
}
