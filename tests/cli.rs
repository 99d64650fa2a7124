//! The binary as a user meets it: error messages, and live capture on the loopback interface
//! while a real client and server talk.
#[path = "common/http.rs"]
mod http;
#[path = "common/scratch.rs"]
mod scratch;
use http::http_get;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn apitap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
}

fn tmp(name: &str) -> PathBuf {
    let d = scratch::dir("cli", false);
    d.join(name)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn unknown_interface_lists_the_real_ones() {
    let out = apitap()
        .args(["capture", "--interface", "eth9nosuch"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("eth9nosuch") && err.contains("no such device"),
        "{err}"
    );
    assert!(
        err.contains("apitap interfaces") && err.contains("lo"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_capture_is_refused_with_a_hint() {
    let f = tmp("not-a-capture.txt");
    std::fs::write(&f, "hello, I am text\n").unwrap();
    let out = apitap().arg("replay").arg(&f).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-a-capture.txt") && err.contains("pcap or pcapng"),
        "{err}"
    );

    let out = apitap()
        .args(["replay", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}

#[test]
fn bad_output_spec_is_explained() {
    let out = apitap()
        .args(["replay", "tests/data/h1-nginx.pcap", "--output", "ftp://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("jsonl:PATH"));
}

#[test]
fn interfaces_include_loopback() {
    let out = apitap().arg("interfaces").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("lo")));
}

#[test]
fn capture_without_privileges_says_what_to_do() {
    if !is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED: needs root and setpriv to drop privileges");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_apitap"))
        .args(["capture", "--interface", "lo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_NET_RAW") && err.contains("setcap"),
        "{err}"
    );
}

/// A minimal HTTP/1.1 server: answers every request on a keep-alive connection.
fn serve(listener: TcpListener) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let body = format!("{{\"path\":\"{path}\"}}");
                    let status = if path.contains("missing") {
                        "404 Not Found"
                    } else {
                        "200 OK"
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A tiny HTTP server on a free loopback port (see [`serve`]) for the live-capture tests;
/// `None` when not root, as capturing on `lo` needs CAP_NET_RAW.
fn loopback_server() -> Option<u16> {
    if !is_root() {
        return None;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    serve(listener);
    Some(port)
}

#[test]
fn live_capture_on_loopback_sees_real_exchanges() {
    let Some(port) = loopback_server() else {
        eprintln!("SKIPPED: live capture needs root (CAP_NET_RAW)");
        return;
    };
    let out = tmp("live.jsonl");
    let stats = tmp("live.stats.json");
    let mut child = apitap()
        .args(["capture", "--interface", "lo", "--bpf"])
        .arg(format!("tcp port {port}"))
        .arg("--output")
        .arg(format!("jsonl:{}", out.display()))
        .arg("--stats-json")
        .arg(&stats)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the capture handle is open.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("capturing on lo"), "{first}");
    std::thread::sleep(Duration::from_millis(300));

    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let paths = ["/api/v1/users", "/api/v1/users/7?fields=name", "/missing"];
    for p in paths {
        write!(c, "GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut head = [0u8; 512];
        let n = c.read(&mut head).unwrap();
        assert!(n > 0);
    }
    drop(c);
    // Let the kernel hand the packets over (non-immediate mode batches them), then stop.
    std::thread::sleep(Duration::from_millis(1200));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "apitap did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let lines = std::fs::read_to_string(&out).unwrap();
    let got: Vec<(String, u64)> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        // Inventory events (endpoint_discovered …) share the output.
        .filter(|v| v["type"] == "http_exchange")
        .map(|v| {
            let mut t = v["request"]["path"].as_str().unwrap().to_string();
            if let Some(q) = v["request"]["query"].as_str() {
                t = format!("{t}?{q}");
            }
            (t, v["response"]["status"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/api/v1/users".to_string(), 200),
            ("/api/v1/users/7?fields=name".to_string(), 200),
            ("/missing".to_string(), 404)
        ],
        "stderr: {rest}"
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert!(s["capture_drops"]["received"].as_u64().unwrap() > 0, "{s}");
    assert!(
        rest.contains("capture drops"),
        "summary reports kernel drops: {rest}"
    );
}

#[test]
fn privilege_drop_leaves_no_capabilities() {
    // Needs root to have something to drop.
    if !is_root() || !Path::new("/proc/self/status").exists() {
        eprintln!("skipped: not root");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("replay")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/grpc.pcap"))
        .args(["--user", "nobody", "-q", "-o", "jsonl:/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The binary reads its own /proc/self/status after the switch and refuses to go on if a
    // capability set is not empty, so success means: uid nobody, CapEff/CapPrm/CapAmb all 0.
    assert!(out.status.success(), "{err}");
    assert!(err.contains("dropped privileges"), "{err}");
}

#[test]
fn config_example_round_trips_and_bad_keys_are_named() {
    let bin = env!("CARGO_BIN_EXE_apitap");
    let ex = Command::new(bin)
        .args(["config", "example"])
        .output()
        .unwrap();
    assert!(ex.status.success());
    let dir = scratch::dir("cfg", false);
    let good = dir.join("good.toml");
    std::fs::write(&good, &ex.stdout).unwrap();
    let ok = Command::new(bin)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[kafka]\nmessage_timeout_ms = \"soon\"\n").unwrap();
    let out = Command::new(bin)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kafka.message_timeout_ms"), "{err}");
}

/// Exchanges (path, status) in a JSON-lines output; none when the file does not exist yet.
fn exchanges_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "http_exchange")
        .map(|v| v["request"]["path"].as_str().unwrap().to_string())
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGHUP during a live capture: the output file is reopened (a log rotator's move leaves the
/// old file complete and a new one takes what follows), a policy file that no longer loads
/// leaves the rules in force, and the capture carries on; nothing is lost or duplicated.
#[test]
fn sighup_reopens_outputs_and_keeps_capturing() {
    let Some(port) = loopback_server() else {
        eprintln!("SKIPPED: live capture needs root (CAP_NET_RAW)");
        return;
    };
    let out = tmp("hup.jsonl");
    let rotated = tmp("hup.1.jsonl");
    let policy = tmp("hup-policy.toml");
    std::fs::write(&policy, "[settings]\n").unwrap();
    let mut child = apitap()
        .args(["capture", "--interface", "lo", "--workers", "2", "--bpf"])
        .arg(format!("tcp port {port}"))
        .arg("--output")
        .arg(format!("jsonl:{}", out.display()))
        .arg("--policy")
        .arg(&policy)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("capturing on lo"), "{first}");
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let call = |paths: &[&str]| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for p in paths {
            write!(c, "GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            let mut head = [0u8; 512];
            assert!(c.read(&mut head).unwrap() > 0);
        }
    };
    let before = ["/a/1", "/a/2", "/a/3"];
    call(&before);
    wait_until("the first exchanges", || exchanges_in(&out).len() == 3);
    std::fs::rename(&out, &rotated).unwrap();
    std::fs::write(&policy, "[rules.no_such_rule]\nenabled = false\n").unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("the output to be reopened", || out.exists());
    let after = ["/b/1", "/b/2"];
    call(&after);
    wait_until("the later exchanges", || exchanges_in(&out).len() == 2);
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "apitap did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log.lock().unwrap().clone();
    assert!(child.wait().unwrap().success(), "{log}");
    // With several workers a busy one may hand exchanges to another, so the order of lines
    // within a file is not part of the contract: which file holds which exchange is.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(exchanges_in(&rotated)), before, "{log}");
    assert_eq!(sorted(exchanges_in(&out)), after, "{log}");
    assert!(
        log.contains("keeping the policy and owners in force") && log.contains("no_such_rule"),
        "{log}"
    );
    assert!(log.contains("outputs reopened"), "{log}");
}

/// The value of an unlabelled Prometheus sample, or of one with exactly these labels.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// During a live capture the metrics endpoint answers with counters that move with the
/// traffic, kernel drop counters included (read from libpcap about once a second), and says
/// it is ready.
#[test]
fn metrics_are_live_during_a_capture() {
    let Some(port) = loopback_server() else {
        eprintln!("SKIPPED: live capture needs root (CAP_NET_RAW)");
        return;
    };
    let metrics = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut child = apitap()
        .args(["capture", "--interface", "lo", "--bpf"])
        .arg(format!("tcp port {port}"))
        .args(["--output", "jsonl:/dev/null", "--metrics-listen", &metrics])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(&metrics, "/readyz").0 != 200 {
        if Instant::now() > deadline {
            kill(&mut child);
            panic!("/readyz never said ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exchanges =
        |m: &str| sample(m, "apitap_exchanges_total{protocol=\"http1\"}").unwrap_or(0.0);
    let (code, m0) = http_get(&metrics, "/metrics");
    assert_eq!(code, 200, "{m0}");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for i in 0..5 {
        write!(c, "GET /api/items/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut head = [0u8; 512];
        assert!(c.read(&mut head).unwrap() > 0);
    }
    let mut m1 = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while exchanges(&m1) < 5.0 || !m1.contains("apitap_capture_dropped_total") {
        if Instant::now() > deadline {
            kill(&mut child);
            panic!("the counters did not move:\n{m1}");
        }
        std::thread::sleep(Duration::from_millis(200));
        m1 = http_get(&metrics, "/metrics").1;
    }
    kill(&mut child);
    assert!(
        sample(&m1, "apitap_packets_total").unwrap() > sample(&m0, "apitap_packets_total").unwrap(),
        "{m0}\n{m1}"
    );
    assert_eq!(exchanges(&m1) - exchanges(&m0), 5.0, "{m1}");
    assert!(
        sample(&m1, "apitap_capture_dropped_total{where=\"kernel\"}").is_some(),
        "{m1}"
    );
}

/// `--speed` paces a replay by the capture's timestamps: rest-api.pcap spans 3.1 s of capture,
/// so at 2x it cannot take less than ~1.55 s (`max` reads it in a fraction of that); both
/// yield the same exchanges. A bad value names the accepted forms.
#[test]
fn replay_speed_follows_capture_time() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rest-api.pcap");
    let run = |speed: &str, tag: &str| {
        let out = tmp(&format!("speed-{tag}.jsonl"));
        let t = Instant::now();
        let st = apitap()
            .arg("replay")
            .arg(&pcap)
            .args(["--speed", speed, "-q", "--output"])
            .arg(format!("jsonl:{}", out.display()))
            .status()
            .unwrap();
        assert!(st.success());
        (t.elapsed(), exchanges_in(&out))
    };
    let (_, a) = run("max", "max");
    let (paced, b) = run("2", "x2");
    assert!(!a.is_empty());
    assert_eq!(a, b, "pacing changed what was observed");
    assert!(
        paced >= Duration::from_millis(1540),
        "3.1 s of capture at 2x took {paced:?}"
    );
    let bad = apitap()
        .args(["replay", "--speed", "warp"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("expected `max`, `realtime`"), "{e}");
}

/// A pcapng file can stamp a packet with any 64-bit time. Times past year 9999 made the
/// timestamp formatter fail, and the observation's `to_string` panicked on it; now they are
/// clamped and the exchanges still come out, stamped 9999-12-31.
#[test]
fn far_future_pcapng_timestamps_are_clamped_not_fatal() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/h1-nginx.pcap");
    let mut cap = pcap::Capture::from_file(&src).unwrap();
    let mut f = Vec::new();
    let block = |f: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(body);
        f.extend(std::iter::repeat_n(0, pad));
        f.extend_from_slice(&len.to_le_bytes());
    };
    // Section header (byte-order magic, version 1.0, unknown length), then one Ethernet
    // interface at the default µs resolution.
    let mut shb = vec![];
    shb.extend_from_slice(&0x1A2B3C4Du32.to_le_bytes());
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut f, 0x0A0D0D0A, &shb);
    let mut idb = vec![1, 0, 0, 0];
    idb.extend_from_slice(&65535u32.to_le_bytes());
    block(&mut f, 1, &idb);
    let mut n = 0u64;
    while let Ok(p) = cap.next_packet() {
        // Year ~21,000: past what RFC 3339's four-digit year can hold.
        let ts: u64 = 600_000_000_000_000_000 + n;
        n += 1;
        let mut epb = vec![0, 0, 0, 0];
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&p.header.len.to_le_bytes());
        epb.extend_from_slice(p.data);
        block(&mut f, 6, &epb);
    }
    let file = tmp("far-future.pcapng");
    std::fs::write(&file, &f).unwrap();
    let out = tmp("far-future.jsonl");
    let run = apitap()
        .arg("replay")
        .arg(&file)
        .args(["-q", "--output"])
        .arg(format!("jsonl:{}", out.display()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let first = text.lines().next().expect("no events");
    assert!(
        first.contains("\"ts\":\"9999-12-31T23:59:59.999999Z\""),
        "{first}"
    );
    assert!(exchanges_in(&out).len() > 1000);
}
