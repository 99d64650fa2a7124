//! Packet sources: pcap/pcapng files (several, read in order) and live interfaces, both through
//! libpcap (the `pcap` crate), which reads both file formats and applies BPF filters in the
//! kernel for live capture; and a UDP listener for mirror streams.
//!
//! The UDP listener is the mirror-target mode: AWS VPC Traffic Mirroring (VXLAN, UDP 4789)
//! and Gateway Load Balancer (Geneve, UDP 6081) deliver the mirrored frames as UDP datagrams
//! to an address, so an ordinary socket receives them: no promiscuous mode, no libpcap, no
//! privileges (below port 1024 aside). It strips the VXLAN (RFC 7348) or Geneve (RFC 8926)
//! header and hands on the inner frame with the tunnel as metadata. Kernel drops are read
//! from the socket's `drops` column in `/proc/net/udp` (Linux).
use crate::decode::linktype;
pub use crate::pace::Speed;
use crate::pace::{Pacer, Waited};
use crate::tunnel::{self, Tunnel, TunnelKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How long a live capture sleeps when the kernel has nothing for it.
const IDLE_SLEEP_MS: u64 = 5;
/// How long a stopping UDP listener keeps reading what its socket still holds.
const UDP_DRAIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A record's time in µs since the epoch. A pcapng file can claim any 64-bit time, which as
/// seconds × 10⁶ overflows: saturate instead.
fn ts_us(sec: i64, usec: i64) -> i64 {
    sec.saturating_mul(1_000_000).saturating_add(usec)
}

/// One captured frame, borrowed from libpcap's buffer until the next call.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Capture time, µs since the Unix epoch.
    pub ts_us: i64,
    /// Link type of the frame (LINKTYPE_* value, see [`crate::decode::linktype`]).
    pub linktype: i32,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (larger than `data` when cut by the snap length).
    pub wire_len: u32,
    /// The tunnel the source already removed (UDP listener), to hand to
    /// [`crate::decode::Decoder::decode_in`].
    pub tunnel: Option<Tunnel>,
}

/// Errors opening or reading a packet source, worded for the person running the sensor.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The capture file could not be opened or is not a capture.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What libpcap said, with a hint.
        reason: String,
    },
    /// Live capture needs privileges.
    #[error("cannot capture on {iface}: permission denied. Capturing needs CAP_NET_RAW: run as root or `sudo setcap cap_net_raw,cap_net_admin=eip $(command -v apitap)`")]
    Permission {
        /// The interface.
        iface: String,
    },
    /// The interface does not exist.
    #[error("cannot capture on {iface}: no such device; available: {available} (list them with `apitap interfaces`)")]
    NoDevice {
        /// The interface asked for.
        iface: String,
        /// Interfaces libpcap can open.
        available: String,
    },
    /// The BPF filter did not compile.
    #[error("invalid capture filter {expr:?}: {reason}")]
    Filter {
        /// The expression.
        expr: String,
        /// libpcap's message.
        reason: String,
    },
    /// The UDP listener could not be set up or failed.
    #[error("cannot listen for mirrored traffic on UDP {addr}: {reason}")]
    Udp {
        /// The address.
        addr: SocketAddr,
        /// What the system said, with a hint.
        reason: String,
    },
    /// Any other libpcap failure.
    #[error("capture on {iface} failed: {reason}")]
    Live {
        /// The interface.
        iface: String,
        /// libpcap's message.
        reason: String,
    },
}

/// Live capture options.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Interface name.
    pub iface: String,
    /// BPF filter expression.
    pub bpf: Option<String>,
    /// Snap length.
    pub snaplen: i32,
    /// Promiscuous mode.
    pub promisc: bool,
    /// Kernel buffer size in bytes.
    pub buffer_bytes: i32,
    /// Read timeout in ms (non-immediate mode batches packets up to this long).
    pub timeout_ms: i32,
}

/// Kernel and interface drop counters of a live capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureDrops {
    /// Packets received by the filter.
    pub received: u64,
    /// Dropped because the kernel buffer was full (the sensor fell behind).
    pub kernel_dropped: u64,
    /// Dropped by the interface or driver.
    pub if_dropped: u64,
    /// UDP listener: datagrams whose VXLAN/Geneve header could not be stripped, or that
    /// carried something other than Ethernet or IP.
    pub undecodable: u64,
}

/// The encapsulation a UDP listener strips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenKind {
    /// VXLAN (AWS VPC Traffic Mirroring, Azure vTAP): UDP 4789.
    Vxlan,
    /// Geneve (AWS Gateway Load Balancer): UDP 6081.
    Geneve,
}

/// Largest UDP payload over IPv4 (IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65_535;

struct UdpListener {
    sock: UdpSocket,
    kind: ListenKind,
    local: SocketAddr,
    rcvbuf: usize,
    buf: Vec<u8>,
    datagrams: u64,
    undecodable: u64,
}

enum Inner {
    Files {
        paths: Vec<PathBuf>,
        next: usize,
        cap: Option<pcap::Capture<pcap::Offline>>,
        pacer: Pacer,
    },
    Live(pcap::Capture<pcap::Active>),
    Udp(UdpListener),
}

/// A source of frames.
pub struct PacketSource {
    inner: Inner,
    linktype: i32,
    iface: String,
}

fn frame<'a>(linktype: i32, p: &pcap::Packet<'a>) -> Frame<'a> {
    let h = p.header;
    Frame {
        ts_us: ts_us(h.ts.tv_sec, h.ts.tv_usec),
        linktype,
        data: p.data,
        wire_len: h.len,
        tunnel: None,
    }
}

fn open_file(path: &Path) -> Result<pcap::Capture<pcap::Offline>, SourceError> {
    if !path.exists() {
        return Err(SourceError::File {
            path: path.into(),
            reason: "no such file".into(),
        });
    }
    pcap::Capture::from_file(path).map_err(|e| SourceError::File {
        path: path.into(),
        reason: format!("{e} (is it a pcap or pcapng capture? `tcpdump -r FILE -c 1` tells)"),
    })
}

fn is_regular(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// How long a piped capture may be silent before the reader reports [`Event::Idle`].
const PIPE_IDLE_MS: u64 = 500;

/// Reads a piped capture on a thread and hands its frames to `f` (a copy each, into buffers
/// that are recycled), and [`Event::Idle`] after every [`PIPE_IDLE_MS`] of silence. Returns
/// false when `stop` ended it first; the reader thread then stays blocked in its read until
/// the process ends, which is harmless.
fn stream(
    mut c: pcap::Capture<pcap::Offline>,
    linktype: i32,
    stop: &std::sync::atomic::AtomicBool,
    pacer: &mut Pacer,
    f: &mut impl FnMut(Event<'_>),
) -> bool {
    use std::sync::mpsc::{sync_channel, RecvTimeoutError};
    struct Rec {
        ts_us: i64,
        wire_len: u32,
        data: Vec<u8>,
    }
    let (tx, rx) = sync_channel::<Option<Rec>>(1024);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(1024);
    let spawned = std::thread::Builder::new()
        .name("apitap-pipe".into())
        .spawn(move || loop {
            match c.next_packet() {
                Ok(p) => {
                    let mut data = free_rx.try_recv().unwrap_or_default();
                    data.clear();
                    data.extend_from_slice(p.data);
                    let h = p.header;
                    let r = Rec {
                        ts_us: ts_us(h.ts.tv_sec, h.ts.tv_usec),
                        wire_len: h.len,
                        data,
                    };
                    if tx.send(Some(r)).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
            }
        });
    if spawned.is_err() {
        return true;
    }
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        match rx.recv_timeout(std::time::Duration::from_millis(PIPE_IDLE_MS)) {
            Ok(Some(r)) => {
                if pacer.wait(r.ts_us, stop, || f(Event::Idle)) == Waited::Stopped {
                    return false;
                }
                f(Event::Frame(Frame {
                    ts_us: r.ts_us,
                    linktype,
                    data: &r.data,
                    wire_len: r.wire_len,
                    tunnel: None,
                }));
                let _ = free_tx.try_send(r.data);
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => f(Event::Idle),
        }
    }
}

/// The capture devices libpcap can open, as `name (description)`.
pub fn list_devices() -> Vec<String> {
    pcap::Device::list()
        .map(|ds| {
            ds.into_iter()
                .map(|d| match d.desc {
                    Some(desc) => format!("{} ({desc})", d.name),
                    None => d.name,
                })
                .collect()
        })
        .unwrap_or_default()
}

impl PacketSource {
    /// Opens capture files, read one after the other. All are checked up front so that a typo
    /// in the last one does not surface after minutes of replay.
    pub fn files(paths: &[PathBuf]) -> Result<Self, SourceError> {
        let mut first = None;
        for p in paths {
            let c = open_file(p)?;
            if first.is_none() {
                first = Some(c);
            }
        }
        let linktype = first.as_ref().map_or(1, |c| c.get_datalink().0);
        Ok(PacketSource {
            inner: Inner::Files {
                paths: paths.to_vec(),
                next: 1,
                cap: first,
                pacer: Pacer::new(Speed::Max),
            },
            linktype,
            iface: String::new(),
        })
    }

    /// Sets how fast files are replayed (see [`crate::pace`]); live sources ignore it.
    pub fn set_speed(&mut self, speed: Speed) {
        if let Inner::Files { pacer, .. } = &mut self.inner {
            *pacer = Pacer::new(speed);
        }
    }

    /// Opens a live interface.
    pub fn live(o: &LiveOptions) -> Result<Self, SourceError> {
        let devices = pcap::Device::list().unwrap_or_default();
        if o.iface != "any" && !devices.iter().any(|d| d.name == o.iface) {
            return Err(SourceError::NoDevice {
                iface: o.iface.clone(),
                available: devices
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let live = |e: pcap::Error| {
            let msg = e.to_string();
            if msg.contains("ermission") || msg.contains("not permitted") {
                SourceError::Permission {
                    iface: o.iface.clone(),
                }
            } else {
                SourceError::Live {
                    iface: o.iface.clone(),
                    reason: msg,
                }
            }
        };
        let cap = pcap::Capture::from_device(o.iface.as_str())
            .map_err(live)?
            .promisc(o.promisc)
            .snaplen(o.snaplen)
            .buffer_size(o.buffer_bytes)
            .timeout(o.timeout_ms)
            .immediate_mode(false)
            .open()
            .map_err(live)?;
        // Non-blocking: with TPACKET_V3 libpcap's read timeout only starts once a packet has
        // arrived, so a blocking read on a quiet interface would never return to notice a stop
        // request. An empty read becomes `Event::Idle` and a short sleep.
        let mut cap = cap.setnonblock().map_err(live)?;
        if let Some(expr) = &o.bpf {
            cap.filter(expr, true).map_err(|e| SourceError::Filter {
                expr: expr.clone(),
                reason: e.to_string(),
            })?;
        }
        let linktype = cap.get_datalink().0;
        Ok(PacketSource {
            inner: Inner::Live(cap),
            linktype,
            iface: o.iface.clone(),
        })
    }

    /// Listens on UDP `addr` for a mirror stream of `kind` (no privileges needed). The socket
    /// asks for a `rcvbuf_bytes` receive buffer (SO_RCVBUF; Linux caps it at
    /// `net.core.rmem_max`, see [`PacketSource::udp_rcvbuf`]); reads are non-blocking, so a
    /// quiet stream yields [`Event::Idle`] and a stop request is seen.
    pub fn udp_listen(
        addr: SocketAddr,
        kind: ListenKind,
        rcvbuf_bytes: usize,
    ) -> Result<Self, SourceError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let err = |what: &str, e: std::io::Error| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    " (ports below 1024 need CAP_NET_BIND_SERVICE)"
                }
                std::io::ErrorKind::AddrInUse => " (another process listens there)",
                std::io::ErrorKind::AddrNotAvailable => " (not an address of this host)",
                _ => "",
            };
            SourceError::Udp {
                addr,
                reason: format!("{what}: {e}{hint}"),
            }
        };
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| err("socket", e))?;
        if addr.is_ipv6() {
            // `[::]` also receives IPv4 mirrors.
            let _ = sock.set_only_v6(false);
        }
        // Best effort: the kernel clamps the size (the effective one is reported).
        let _ = sock.set_recv_buffer_size(rcvbuf_bytes);
        sock.bind(&addr.into()).map_err(|e| err("bind", e))?;
        sock.set_nonblocking(true)
            .map_err(|e| err("non-blocking mode", e))?;
        let rcvbuf = sock.recv_buffer_size().unwrap_or(0);
        let sock: UdpSocket = sock.into();
        let local = sock.local_addr().map_err(|e| err("local address", e))?;
        Ok(PacketSource {
            inner: Inner::Udp(UdpListener {
                sock,
                kind,
                local,
                rcvbuf,
                buf: vec![0; MAX_DATAGRAM],
                datagrams: 0,
                undecodable: 0,
            }),
            linktype: linktype::ETHERNET,
            iface: local.to_string(),
        })
    }

    /// The UDP listener's bound address (with the port the system chose for port 0).
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Udp(u) => Some(u.local),
            _ => None,
        }
    }

    /// The UDP listener's receive buffer as the kernel granted it (Linux reports twice the
    /// usable size); smaller than asked means `net.core.rmem_max` is lower.
    pub fn udp_rcvbuf(&self) -> Option<usize> {
        match &self.inner {
            Inner::Udp(u) => Some(u.rcvbuf),
            _ => None,
        }
    }

    /// Link type of the current source.
    pub fn linktype(&self) -> i32 {
        self.linktype
    }

    /// Reads frames until the input ends (files) or `stop` is set, handing each to `f`. For
    /// live capture and piped files, `f` also gets [`Event::Idle`] whenever a read times out
    /// with no packet, so the caller can expire flows and report while the input is quiet.
    pub fn run(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        mut f: impl FnMut(Event<'_>),
    ) -> Result<(), SourceError> {
        use std::sync::atomic::Ordering;
        match &mut self.inner {
            Inner::Files {
                paths,
                next,
                cap,
                pacer,
            } => {
                while let Some(mut c) = cap.take() {
                    // A pipe or FIFO (`tcpdump -w - | apitap replay /dev/stdin`) can go quiet
                    // for any length of time: it is read on a thread, so that a stop and the
                    // idle work still happen. Regular files are read here, without a copy.
                    let finished = if is_regular(&paths[*next - 1]) {
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                *cap = Some(c);
                                return Ok(());
                            }
                            match c.next_packet() {
                                Ok(p) => {
                                    let fr = frame(self.linktype, &p);
                                    if pacer.wait(fr.ts_us, stop, || f(Event::Idle))
                                        == Waited::Stopped
                                    {
                                        *cap = Some(c);
                                        return Ok(());
                                    }
                                    f(Event::Frame(fr))
                                }
                                // End of the file; a damaged last record (a capture cut
                                // short) ends it too.
                                Err(_) => break true,
                            }
                        }
                    } else {
                        stream(c, self.linktype, stop, pacer, &mut f)
                    };
                    if !finished {
                        return Ok(());
                    }
                    if *next < paths.len() {
                        let c2 = open_file(&paths[*next])?;
                        *next += 1;
                        self.linktype = c2.get_datalink().0;
                        *cap = Some(c2);
                    }
                }
                Ok(())
            }
            Inner::Live(c) => {
                let mut report = Every::default();
                while !stop.load(Ordering::Relaxed) {
                    let idle = match c.next_packet() {
                        Ok(p) => {
                            f(Event::Frame(frame(self.linktype, &p)));
                            false
                        }
                        Err(pcap::Error::TimeoutExpired) => {
                            f(Event::Idle);
                            std::thread::sleep(std::time::Duration::from_millis(IDLE_SLEEP_MS));
                            true
                        }
                        Err(e) => {
                            return Err(SourceError::Live {
                                iface: self.iface.clone(),
                                reason: e.to_string(),
                            })
                        }
                    };
                    if report.due(idle) {
                        if let Ok(st) = c.stats() {
                            f(Event::Drops(CaptureDrops {
                                received: u64::from(st.received),
                                kernel_dropped: u64::from(st.dropped),
                                if_dropped: u64::from(st.if_dropped),
                                undecodable: 0,
                            }));
                        }
                    }
                }
                Ok(())
            }
            Inner::Udp(u) => {
                let mut report = Every::default();
                let mut drain_until: Option<Instant> = None;
                loop {
                    // Datagrams already queued when the stop comes are read, not lost without
                    // a count; a mirror that keeps sending cannot hold the stop up for long.
                    match drain_until {
                        None if stop.load(Ordering::Relaxed) => {
                            drain_until = Some(Instant::now() + UDP_DRAIN);
                        }
                        Some(t) if Instant::now() >= t => break,
                        _ => {}
                    }
                    // A clock read per datagram is small next to the receive system call.
                    if report.due(true) {
                        f(Event::Drops(CaptureDrops {
                            received: u.datagrams,
                            kernel_dropped: socket_drops(&u.sock).unwrap_or(0),
                            if_dropped: 0,
                            undecodable: u.undecodable,
                        }));
                    }
                    match u.sock.recv_from(&mut u.buf) {
                        Ok((n, peer)) => {
                            u.datagrams += 1;
                            let Some(d) = u.buf.get(..n) else { continue };
                            match strip(u.kind, d) {
                                Some((lt, off, id)) => {
                                    let data = d.get(off..).unwrap_or_default();
                                    let kind = match u.kind {
                                        ListenKind::Vxlan => TunnelKind::Vxlan,
                                        ListenKind::Geneve => TunnelKind::Geneve,
                                    };
                                    f(Event::Frame(Frame {
                                        ts_us: now_us(),
                                        linktype: lt,
                                        data,
                                        wire_len: data.len() as u32,
                                        tunnel: Some(Tunnel::new(
                                            kind,
                                            id,
                                            unmapped(peer.ip()),
                                            unmapped(u.local.ip()),
                                        )),
                                    }))
                                }
                                None => u.undecodable += 1,
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if drain_until.is_some() {
                                break;
                            }
                            f(Event::Idle);
                            std::thread::sleep(std::time::Duration::from_millis(IDLE_SLEEP_MS));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(SourceError::Udp {
                                addr: u.local,
                                reason: e.to_string(),
                            })
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Kernel and interface drop counters (live capture and UDP listener).
    pub fn drops(&mut self) -> Option<CaptureDrops> {
        match &mut self.inner {
            Inner::Live(c) => c.stats().ok().map(|s| CaptureDrops {
                received: u64::from(s.received),
                kernel_dropped: u64::from(s.dropped),
                if_dropped: u64::from(s.if_dropped),
                undecodable: 0,
            }),
            Inner::Udp(u) => Some(CaptureDrops {
                received: u.datagrams,
                kernel_dropped: socket_drops(&u.sock).unwrap_or(0),
                if_dropped: 0,
                undecodable: u.undecodable,
            }),
            Inner::Files { .. } => None,
        }
    }
}

/// What a source hands to its consumer.
#[derive(Debug)]
pub enum Event<'a> {
    /// A captured frame.
    Frame(Frame<'a>),
    /// A live read timed out with no packet.
    Idle,
    /// The kernel's and interface's drop counters as of now (live capture and UDP listener,
    /// about once a second), so that drops are seen while they happen, not only at exit.
    Drops(CaptureDrops),
}

/// Paces the drop reports: reading pcap stats is a system call, not for every packet.
struct Every {
    last: std::time::Instant,
    n: u32,
}

impl Default for Every {
    fn default() -> Self {
        Every {
            last: std::time::Instant::now(),
            n: 0,
        }
    }
}

impl Every {
    /// Whether a second has passed; looked at every 1024th call, or on every idle one.
    fn due(&mut self, idle: bool) -> bool {
        self.n = self.n.wrapping_add(1);
        if !idle && self.n % 1024 != 0 {
            return false;
        }
        if self.last.elapsed() < std::time::Duration::from_secs(1) {
            return false;
        }
        self.last = std::time::Instant::now();
        true
    }
}

/// Strips the listener's tunnel header: the inner frame's link type, its offset in the
/// datagram and the VNI. `None` when the header is bad or the payload is neither Ethernet nor
/// IP.
fn strip(kind: ListenKind, d: &[u8]) -> Option<(i32, usize, Option<u32>)> {
    let x = match kind {
        ListenKind::Vxlan => tunnel::vxlan(d).ok()?,
        ListenKind::Geneve => tunnel::geneve(d).ok()?,
    };
    let lt = match x.inner {
        tunnel::Inner::Ethernet => linktype::ETHERNET,
        tunnel::Inner::Ip | tunnel::Inner::EtherType(0x0800) | tunnel::Inner::EtherType(0x86dd) => {
            linktype::RAW
        }
        tunnel::Inner::EtherType(_) => return None,
    };
    Some((lt, d.len() - x.payload.len(), x.id))
}

/// An IPv4 peer of a dual-stack socket is reported as `::ffff:a.b.c.d`; show it as IPv4.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Datagrams the kernel dropped for this socket because its receive buffer was full: the
/// last column of the socket's line in `/proc/net/udp` or `/proc/net/udp6`, found by inode.
#[cfg(target_os = "linux")]
fn socket_drops(sock: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(format!("/proc/self/fd/{}", sock.as_raw_fd()))
        .ok()?
        .ino();
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        proc_udp_drops(&text, ino)
    })
}

#[cfg(not(target_os = "linux"))]
fn socket_drops(_sock: &UdpSocket) -> Option<u64> {
    None
}

/// The `drops` column of the `/proc/net/udp` line whose inode (10th column) is `ino`.
fn proc_udp_drops(text: &str, ino: u64) -> Option<u64> {
    text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != ino {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_times_saturate_instead_of_overflowing() {
        assert_eq!(ts_us(1_700_000_000, 123_456), 1_700_000_000_123_456);
        assert_eq!(ts_us(i64::MAX / 1_000, 5), i64::MAX);
        assert_eq!(ts_us(i64::MIN / 1_000, 0), i64::MIN);
    }

    #[test]
    fn proc_net_udp_drops_by_inode() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  263: 00000000:12B5 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 412345 2 0000000000000000 17\n\
  300: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0\n";
        assert_eq!(proc_udp_drops(text, 412345), Some(17));
        assert_eq!(proc_udp_drops(text, 999), Some(0));
        assert_eq!(proc_udp_drops(text, 5), None);
        assert_eq!(proc_udp_drops("garbage\nx y", 5), None);
    }

    #[test]
    fn strip_vxlan_and_geneve() {
        let mut v = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        v.extend_from_slice(&[0xaa; 14]);
        assert_eq!(
            strip(ListenKind::Vxlan, &v),
            Some((linktype::ETHERNET, 8, Some(42)))
        );
        assert_eq!(strip(ListenKind::Vxlan, &v[..7]), None);
        // Geneve with one option word carrying IPv4
        let mut g = vec![0x01, 0, 0x08, 0x00, 0, 0, 1, 0, 9, 9, 9, 9, 0x45];
        assert_eq!(
            strip(ListenKind::Geneve, &g),
            Some((linktype::RAW, 12, Some(1)))
        );
        // ARP inside Geneve is not a frame the decoder can take
        g[2..4].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(strip(ListenKind::Geneve, &g), None);
    }

    #[test]
    fn mapped_peers_are_shown_as_ipv4() {
        let m: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(unmapped(m), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(unmapped(v6), v6);
    }
}
