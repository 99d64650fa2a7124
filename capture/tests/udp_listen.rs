//! The mirror-target mode end to end at the crate level: the frames of a real capture, each
//! sent as a VXLAN datagram over a UDP socket to [`PacketSource::udp_listen`], decode to the
//! same TCP segments as the capture file itself; the kernel's drop counter is reported.
use apitap_capture::decode::{linktype, Decoder};
use apitap_capture::source::{Event, ListenKind, PacketSource};
use apitap_capture::tunnel::TunnelKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the flow table would see of a segment.
type Seg = (IpAddr, IpAddr, u16, u16, u32, Vec<u8>);

fn capture_frames(name: &str) -> Vec<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name);
    let mut cap = pcap::Capture::from_file(&p).expect("open capture");
    assert_eq!(cap.get_datalink().0, linktype::ETHERNET);
    let mut v = Vec::new();
    while let Ok(pkt) = cap.next_packet() {
        v.push(pkt.data.to_vec());
    }
    v
}

fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let b = vni.to_be_bytes();
    let mut d = vec![0x08, 0, 0, 0, b[1], b[2], b[3], 0];
    d.extend_from_slice(frame);
    d
}

fn loopback_listener(rcvbuf: usize) -> (PacketSource, SocketAddr) {
    let src = PacketSource::udp_listen(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        ListenKind::Vxlan,
        rcvbuf,
    )
    .expect("listen on loopback");
    let addr = src.udp_local_addr().expect("bound address");
    (src, addr)
}

#[test]
fn vxlan_listener_yields_the_segments_of_the_capture() {
    let frames = capture_frames("h1-nginx.pcap");
    let mut plain = Decoder::default();
    let want: Vec<Seg> = frames
        .iter()
        .filter_map(|f| {
            let s = plain.decode(linktype::ETHERNET, f, 0).ok()?;
            Some((s.src, s.dst, s.sport, s.dport, s.seq, s.payload.to_vec()))
        })
        .collect();
    assert!(want.len() > 3000, "{} segments", want.len());

    let (mut src, addr) = loopback_listener(8 << 20);
    assert!(src.udp_rcvbuf().unwrap() > 0);
    let received = Arc::new(AtomicU64::new(0));
    let sent_all = Arc::new(AtomicBool::new(false));
    let sender = {
        let received = Arc::clone(&received);
        let sent_all = Arc::clone(&sent_all);
        let frames = frames.clone();
        std::thread::spawn(move || {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            // a datagram that is not VXLAN
            tx.send_to(&[1, 2, 3], addr).unwrap();
            // Pace on the receiver (at most 256 KiB in flight) so no datagram is lost to a
            // full socket buffer: the test is about decoding, not about kernel limits.
            let mut sent_bytes = 3u64;
            for f in &frames {
                let d = vxlan(4242, f);
                let deadline = Instant::now() + Duration::from_secs(20);
                while sent_bytes.saturating_sub(received.load(Ordering::Acquire)) > 256 << 10 {
                    assert!(Instant::now() < deadline, "receiver stalled");
                    std::thread::sleep(Duration::from_micros(200));
                }
                tx.send_to(&d, addr).unwrap();
                sent_bytes += d.len() as u64;
            }
            sent_all.store(true, Ordering::Release);
        })
    };

    let stop = AtomicBool::new(false);
    let mut dec = Decoder::default();
    let mut got: Vec<Seg> = Vec::new();
    let mut frames_seen = 0usize;
    let mut idle_after_send = 0;
    let started = Instant::now();
    src.run(&stop, |ev| match ev {
        Event::Frame(f) => {
            frames_seen += 1;
            // datagram bytes = frame + the 8-byte VXLAN header
            received.fetch_add(f.data.len() as u64 + 8, Ordering::AcqRel);
            assert_eq!(f.linktype, linktype::ETHERNET);
            let t = f.tunnel.expect("tunnel metadata");
            assert_eq!((t.kind, t.id), (TunnelKind::Vxlan, Some(4242)));
            assert_eq!(t.outer_src, IpAddr::V4(Ipv4Addr::LOCALHOST));
            if let Ok(s) = dec.decode_in(f.linktype, f.data, f.ts_us, f.tunnel) {
                assert_eq!(s.tunnel, Some(t));
                got.push((s.src, s.dst, s.sport, s.dport, s.seq, s.payload.to_vec()));
            }
            if frames_seen == frames.len() {
                stop.store(true, Ordering::Relaxed);
            }
        }
        // Drop counters arrive about once a second; this test reads them at the end.
        Event::Drops(_) => {}
        Event::Idle => {
            if sent_all.load(Ordering::Acquire) {
                idle_after_send += 1;
            }
            if idle_after_send > 200 || started.elapsed() > Duration::from_secs(60) {
                stop.store(true, Ordering::Relaxed);
            }
        }
    })
    .expect("listener runs");
    sender.join().unwrap();
    assert_eq!(frames_seen, frames.len());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "segments differ from the capture's");
    let drops = src.drops().expect("listener counters");
    assert_eq!(drops.received, frames.len() as u64 + 1);
    assert_eq!(drops.undecodable, 1);
    assert_eq!(drops.kernel_dropped, 0);
    assert_eq!(dec.stats().tcp, want.len() as u64);
    // The tunnel the listener removed is counted like one found in the frame.
    assert_eq!(dec.stats().vxlan, frames.len() as u64);
}

#[test]
fn kernel_drops_of_a_full_socket_buffer_are_reported() {
    // The smallest buffer the kernel grants, and nobody reading while 300 datagrams arrive.
    let (mut src, addr) = loopback_listener(1);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = vxlan(1, &[0u8; 1200]);
    let n = 300u64;
    for _ in 0..n {
        tx.send_to(&frame, addr).unwrap();
    }
    let stop = AtomicBool::new(false);
    let mut frames = 0u64;
    src.run(&stop, |ev| match ev {
        Event::Frame(_) => frames += 1,
        Event::Drops(_) => {}
        Event::Idle => stop.store(true, Ordering::Relaxed),
    })
    .unwrap();
    let d = src.drops().unwrap();
    assert_eq!(d.received, frames);
    if cfg!(target_os = "linux") {
        assert!(d.kernel_dropped > 0, "{d:?}");
        assert_eq!(d.received + d.kernel_dropped, n, "{d:?}");
    }
}

#[test]
fn listener_errors_name_the_address() {
    let (_held, addr) = loopback_listener(1 << 16);
    let Err(e) = PacketSource::udp_listen(addr, ListenKind::Geneve, 1 << 16) else {
        panic!("a second bind to the same port must fail");
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&addr.to_string()) && msg.contains("in use"),
        "{msg}"
    );
}

#[test]
fn a_stopping_listener_reads_what_its_socket_still_holds() {
    let (mut src, addr) = loopback_listener(4 << 20);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frames = capture_frames("h1-nginx.pcap");
    let n = 200usize;
    for f in frames.iter().take(n) {
        tx.send_to(&vxlan(7, f), addr).unwrap();
    }
    // The stop is already requested when the listener starts: everything queued is still
    // read and counted, then it returns.
    let stop = AtomicBool::new(true);
    let mut seen = 0usize;
    let started = Instant::now();
    src.run(&stop, |ev| {
        if let Event::Frame(_) = ev {
            seen += 1;
        }
    })
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let d = src.drops().unwrap();
    assert_eq!(d.kernel_dropped, 0, "{d:?}");
    assert_eq!((seen, d.received), (n, n as u64));
}
