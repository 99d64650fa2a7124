//! Issue #8's mirror-target mode, end to end through the real binary: every frame of a real
//! capture (tests/data), sent as a VXLAN datagram over loopback UDP to
//! `apitap capture --vxlan-listen`, yields exactly the exchanges `apitap replay` finds in the
//! capture file, compared as multisets of (protocol, method, target, status); likewise once
//! with Geneve and `--geneve-listen`. Each exchange of the listener carries the tunnel it
//! arrived through (kind, the VNI sent, the outer addresses), the stats count every datagram
//! received, and the kernel dropped none — which is what makes an exact comparison fair: the
//! sender paces itself on the listener's socket queue (`/proc/net/udp`), which a real mirror
//! does not do; this test is about decoding, not about socket buffers. That a drop would show
//! is checked too: a burst at a stopped listener ends up in the stats' kernel drop counter.
//!
//! Headers come from tests/common/wrap.rs (written from RFC 7348 and RFC 8926, independently
//! of the decoder): the UDP payload of its wrapped frame is the datagram sent.
#[path = "common/exchange_keys.rs"]
mod exchange_keys;
#[path = "common/scratch.rs"]
mod scratch;
#[path = "common/wrap.rs"]
mod wrap;

use exchange_keys::keys;
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wrap::{wrap, Encap};

/// The VNI every datagram carries; arbitrary, above 16 bits so all three bytes matter.
const VNI: u32 = 0x0a_bc_de;

/// Bytes the listener's socket may hold before the sender waits. Far below any receive
/// buffer the kernel grants (at least 2 × the 208 KiB default `rmem_max`), so a full buffer
/// never drops a datagram, yet deep enough that the listener never starves.
const MAX_QUEUED: u64 = 128 << 10;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    scratch::dir("vxlan-listen", false).join(name)
}

/// The http_exchange observations of a JSONL output.
fn exchanges(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|o| o["type"] == "http_exchange")
        .collect()
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `apitap replay` of a capture: its exchanges and stats. `tag` names the files: tests run in
/// parallel, and two replays appending to one output would double its exchanges.
fn replay(name: &str, tag: &str) -> (Vec<Value>, Value) {
    let out = tmp(&format!("{tag}.replay.jsonl"));
    let stats = tmp(&format!("{tag}.replay.stats.json"));
    let _ = std::fs::remove_file(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("replay")
        .arg(data(name))
        .args(["--redaction", "off", "-q", "--output"])
        .arg(format!("jsonl:{}", out.display()))
        .arg("--stats-json")
        .arg(&stats)
        .output()
        .expect("run apitap replay");
    assert!(
        st.status.success(),
        "apitap replay {name} failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    (exchanges(&out), read_json(&stats))
}

/// The Ethernet frames of a capture.
fn frames(name: &str) -> Vec<Vec<u8>> {
    let mut cap = pcap::Capture::from_file(data(name)).expect("open capture");
    assert_eq!(cap.get_datalink(), pcap::Linktype::ETHERNET, "{name}");
    let mut v = Vec::new();
    while let Ok(p) = cap.next_packet() {
        v.push(p.data.to_vec());
    }
    v
}

/// The UDP payload (VXLAN or Geneve header + frame) of `frame` wrapped in `e`: wrap.rs builds
/// Ethernet / IPv4 (no options) / UDP around it; the 42 bytes of those are checked and cut.
fn datagram(e: Encap, frame: &[u8], n: u32) -> Vec<u8> {
    let mut w = wrap(e, frame, n);
    let dport = match e {
        Encap::Vxlan { .. } => 4789u16,
        Encap::Geneve { .. } => 6081,
        other => panic!("{other:?} is not sent over UDP here"),
    };
    assert_eq!(w[12..14], [0x08, 0x00], "outer EtherType");
    assert_eq!(
        (w[14], w[23]),
        (0x45, 17),
        "outer IPv4 without options, UDP"
    );
    assert_eq!(w[36..38], dport.to_be_bytes(), "outer UDP port");
    w.drain(..42);
    w
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The status code of `GET path` on the metrics endpoint, None when it does not answer.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    c.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:`port`
/// (`/proc/net/udp`: local address as hex `0100007F:PORT`, then `tx_queue:rx_queue` in hex).
/// None where there is no such file or socket.
fn rx_queue(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if *cols.get(1)? != local {
            return None;
        }
        let (_, rx) = cols.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// A running `apitap capture` listening on 127.0.0.1:`port`; killed if the test fails before
/// stopping it.
struct Capture {
    child: Child,
    port: u16,
    out: PathBuf,
    stats: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts `apitap capture --{flag} 127.0.0.1:PORT` (plus `extra` arguments) on a free
    /// port, with files named after `tag`, and waits until it is ready.
    fn start(flag: &str, tag: &str, extra: &[&str]) -> Capture {
        let out = tmp(&format!("{tag}.jsonl"));
        let stats = tmp(&format!("{tag}.stats.json"));
        let log = tmp(&format!("{tag}.log"));
        for p in [&out, &stats] {
            let _ = std::fs::remove_file(p);
        }
        let port = free_udp_port();
        let metrics = free_tcp_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .arg("capture")
            .arg(format!("--{flag}"))
            .arg(format!("127.0.0.1:{port}"))
            .args(["--redaction", "off", "-q", "--output"])
            .arg(format!("jsonl:{}", out.display()))
            .arg("--stats-json")
            .arg(&stats)
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("run apitap capture");
        let mut cap = Capture {
            child,
            port,
            out,
            stats,
            log,
        };
        // The UDP socket is bound before the metrics endpoint starts, and /readyz says 200
        // once the capture is open and the output ready.
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_status(metrics, "/readyz") != Some(200) {
            if let Some(s) = cap.child.try_wait().unwrap() {
                panic!("apitap capture exited early ({s}): {}", cap.log());
            }
            assert!(Instant::now() < deadline, "not ready: {}", cap.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        cap
    }

    fn target(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(sent.success(), "kill {sig} {pid}");
    }

    /// Waits until the listener has read every datagram sent to it: one still queued when
    /// SIGINT arrives would be lost uncounted (the loop checks the stop flag before each
    /// read, but finishes the frame it has read). Without `/proc/net/udp`, waits 2 s.
    fn wait_drained(&self) {
        if rx_queue(self.port).is_none() {
            std::thread::sleep(Duration::from_secs(2));
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while rx_queue(self.port) != Some(0) {
            assert!(
                Instant::now() < deadline,
                "queue not drained: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops it with SIGINT, waits (bounded) for a successful exit, and returns the
    /// exchanges written and the stats.
    fn stop(mut self) -> (Vec<Value>, Value) {
        self.signal("-INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "apitap did not stop on SIGINT: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "apitap capture: {status}: {}", self.log());
        (exchanges(&self.out), read_json(&self.stats))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the listener produced.
struct Listened {
    exchanges: Vec<Value>,
    stats: Value,
    datagrams: u64,
    send_time: Duration,
}

/// Sends every frame of `name` wrapped in `e` to a `--{flag}` listener, pacing on its socket
/// queue, and returns its output once it has read them all.
fn listen(name: &str, e: Encap, flag: &str) -> Listened {
    let frames = frames(name);
    let cap = Capture::start(flag, &format!("{name}.{flag}"), &[]);
    let paced = rx_queue(cap.port).is_some();
    if !paced {
        eprintln!("{name}: no /proc/net/udp entry for the listener: pacing by time");
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    for (n, f) in frames.iter().enumerate() {
        let d = datagram(e, f, n as u32);
        if paced {
            let deadline = Instant::now() + Duration::from_secs(20);
            while rx_queue(cap.port).unwrap_or(0) > MAX_QUEUED {
                assert!(Instant::now() < deadline, "listener stalled: {}", cap.log());
                std::thread::sleep(Duration::from_micros(100));
            }
        } else if n % 16 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(tx.send_to(&d, cap.target()).unwrap(), d.len());
    }
    cap.wait_drained();
    let send_time = started.elapsed();
    let (exchanges, stats) = cap.stop();
    Listened {
        exchanges,
        stats,
        datagrams: frames.len() as u64,
        send_time,
    }
}

/// Replays `name`, sends it through the listener in `e`, and compares.
fn check(name: &str, e: Encap, flag: &str, kind: &str) {
    let t0 = Instant::now();
    let (plain, plain_stats) = replay(name, &format!("{name}.{flag}"));
    let want = keys(&plain);
    assert!(!want.is_empty(), "{name}: no exchanges in the replay");
    assert!(
        plain.iter().all(|o| o.get("tunnel").is_none()),
        "{name}: the plain capture has no tunnel"
    );

    let got = listen(name, e, flag);
    let s = &got.stats;
    let drops = &s["capture_drops"];
    eprintln!(
        "{name} via {kind}: {} datagrams sent in {:.2?}, {} received, kernel dropped {}, \
         undecodable {}; {} exchanges (replay {}); test took {:.2?}",
        got.datagrams,
        got.send_time,
        drops["received"],
        drops["kernel_dropped"],
        drops["undecodable"],
        got.exchanges.len(),
        plain.len(),
        t0.elapsed()
    );
    assert_eq!(drops["kernel_dropped"].as_u64(), Some(0), "{drops}");
    assert_eq!(drops["undecodable"].as_u64(), Some(0), "{drops}");
    assert_eq!(drops["received"].as_u64(), Some(got.datagrams), "{drops}");
    assert_eq!(s["packets"], plain_stats["packets"], "frames processed");
    assert_eq!(
        s["decode"]["tcp"], plain_stats["decode"]["tcp"],
        "TCP segments decoded"
    );
    // The tunnel the listener removed is counted under its kind, as a wrapped capture's is.
    assert_eq!(
        s["decode"][kind].as_u64(),
        Some(got.datagrams),
        "{}",
        s["decode"]
    );

    for o in &got.exchanges {
        let t = &o["tunnel"];
        assert_eq!(t["kind"], kind, "{o}");
        assert_eq!(t["id"].as_u64(), Some(u64::from(VNI)), "{o}");
        assert_eq!(t["outer_src"], "127.0.0.1", "{o}");
        assert_eq!(t["outer_dst"], "127.0.0.1", "{o}");
        assert_eq!(t["layers"], 1, "{o}");
    }

    let have = keys(&got.exchanges);
    if have != want {
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n)| have.get(*k).unwrap_or(&0) < n)
            .take(5)
            .collect();
        let extra: Vec<_> = have
            .iter()
            .filter(|(k, n)| want.get(*k).unwrap_or(&0) < n)
            .take(5)
            .collect();
        panic!(
            "{name} via {kind}: {} exchanges, replay {}; missing e.g. {missing:?}; extra e.g. \
             {extra:?}",
            got.exchanges.len(),
            plain.len()
        );
    }
}

#[test]
fn vxlan_listener_matches_replay_h1() {
    check(
        "h1-nginx.pcap",
        Encap::Vxlan { vni: VNI },
        "vxlan-listen",
        "vxlan",
    );
}

#[test]
fn vxlan_listener_matches_replay_h2c() {
    check(
        "h2c-nginx.pcap",
        Encap::Vxlan { vni: VNI },
        "vxlan-listen",
        "vxlan",
    );
}

#[test]
fn vxlan_listener_matches_replay_grpc() {
    check(
        "grpc.pcap",
        Encap::Vxlan { vni: VNI },
        "vxlan-listen",
        "vxlan",
    );
}

#[test]
fn geneve_listener_matches_replay_h2c() {
    check(
        "h2c-nginx.pcap",
        Encap::Geneve { vni: VNI },
        "geneve-listen",
        "geneve",
    );
}

#[test]
fn rx_queue_reads_proc_net_udp() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    if rx_queue(port).is_none() {
        eprintln!("SKIPPED: no /proc/net/udp");
        return;
    }
    assert_eq!(rx_queue(port), Some(0));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&[0u8; 1000], ("127.0.0.1", port)).unwrap();
    let queued = rx_queue(port).unwrap();
    assert!(queued >= 1000, "{queued}");
    let mut buf = [0u8; 2000];
    assert_eq!(s.recv(&mut buf).unwrap(), 1000);
    assert_eq!(rx_queue(port), Some(0));
}

/// The state letter of a process (`/proc/PID/stat`, third field), None without procfs.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The zero-drop assertions above mean something only because a drop would show: with the
/// listener stopped (SIGSTOP) and a 1 MiB buffer, a burst of 8 MB overflows its socket, and
/// the stats count the datagrams the kernel dropped next to those received, which add up to
/// those sent.
#[test]
fn kernel_drops_reach_the_stats() {
    if std::fs::metadata("/proc/net/udp").is_err() {
        eprintln!("SKIPPED: no /proc/net/udp, drops are not counted here");
        return;
    }
    let cap = Capture::start("vxlan-listen", "drops", &["--buffer-mb", "1"]);
    cap.signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_state(cap.child.id()) != Some('T') {
        assert!(Instant::now() < deadline, "apitap did not stop on SIGSTOP");
        std::thread::sleep(Duration::from_millis(5));
    }
    // An Ethernet frame of a local experimental EtherType: decoded as "not IP", no flows.
    let mut frame = vec![0u8; 20_000];
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let d = datagram(Encap::Vxlan { vni: VNI }, &frame, 0);
    let sent = 400u64;
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..sent {
        assert_eq!(tx.send_to(&d, cap.target()).unwrap(), d.len());
    }
    cap.signal("-CONT");
    cap.wait_drained();
    let (_, stats) = cap.stop();
    let drops = &stats["capture_drops"];
    eprintln!("burst of {sent} while stopped: {drops}");
    let received = drops["received"].as_u64().unwrap();
    let dropped = drops["kernel_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{drops}");
    assert!(received > 0, "{drops}");
    assert_eq!(received + dropped, sent, "{drops}");
    assert_eq!(drops["undecodable"].as_u64(), Some(0), "{drops}");
    assert_eq!(stats["packets"].as_u64(), Some(received));
    assert_eq!(stats["decode"]["not_ip"].as_u64(), Some(received));
}
