//! Capture generator for the flood and slow-attack tests (issue #9).
//!
//! Writes classic libpcap files (the format of `pcap-savefile(5)`: a 24-byte global header,
//! then a 16-byte record header before each frame; microsecond timestamps, LINKTYPE_ETHERNET)
//! with Ethernet II / IPv4 / TCP frames built by hand into one reused buffer, so that a capture
//! of a million connections is written in seconds. Checksums are filled in (IPv4 header,
//! TCP with its pseudo-header, RFC 9293 §3.1) so that the files also open cleanly in other
//! tools.
//!
//! [`Conn`] keeps the sequence numbers of one connection so a test speaks in terms of "the
//! client sends these bytes", and [`clean_exchange`] writes the one ordinary GET and response
//! that every flood test expects to see observed after the attack.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// TCP flag bits (RFC 9293 §3.1).
pub const FIN: u8 = 0x01;
/// SYN.
pub const SYN: u8 = 0x02;
/// RST.
pub const RST: u8 = 0x04;
/// PSH.
pub const PSH: u8 = 0x08;
/// ACK.
pub const ACK: u8 = 0x10;

/// Payload bytes per segment when a side sends more than fits one (Ethernet MSS with
/// timestamps, as real stacks send).
pub const MSS: usize = 1448;

/// An IPv4 address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ep {
    /// Address octets.
    pub ip: [u8; 4],
    /// Port.
    pub port: u16,
}

impl Ep {
    /// `a.b.c.d:port`.
    pub const fn new(ip: [u8; 4], port: u16) -> Ep {
        Ep { ip, port }
    }
}

/// A pcap file being written. Every record advances the capture clock by `step_us`.
pub struct Pcap {
    w: BufWriter<File>,
    buf: Vec<u8>,
    /// Capture time of the next record, µs since the epoch.
    pub clock_us: i64,
    /// Clock advance per record.
    pub step_us: i64,
    /// Records written.
    pub packets: u64,
    /// Bytes written (headers included).
    pub bytes: u64,
}

impl Pcap {
    /// Creates `path` and writes the global header.
    pub fn create(path: &Path) -> io::Result<Pcap> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?; // magic: µs timestamps, little-endian
        w.write_all(&2u16.to_le_bytes())?; // version 2.4
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?; // thiszone
        w.write_all(&0u32.to_le_bytes())?; // sigfigs
        w.write_all(&262_144u32.to_le_bytes())?; // snaplen
        w.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(Pcap {
            w,
            buf: Vec::with_capacity(2048),
            clock_us: 1_700_000_000_000_000,
            step_us: 1,
            packets: 0,
            bytes: 24,
        })
    }

    /// Writes one record holding `frame`.
    pub fn record(&mut self, frame: &[u8]) -> io::Result<()> {
        let ts = self.clock_us;
        self.clock_us += self.step_us;
        let len = frame.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(frame)?;
        self.packets += 1;
        self.bytes += 16 + u64::from(len);
        Ok(())
    }

    /// Writes one TCP segment from `src` to `dst`.
    pub fn tcp(
        &mut self,
        src: Ep,
        dst: Ep,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        tcp_frame(&mut buf, src, dst, seq, ack, flags, payload);
        let r = self.record(&buf);
        self.buf = buf;
        r
    }

    /// Advances the capture clock.
    pub fn advance_us(&mut self, us: i64) {
        self.clock_us += us;
    }

    /// Flushes and closes the file.
    pub fn finish(mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Internet checksum (RFC 1071) over `data`, starting from `sum`.
fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds an Ethernet II + IPv4 (no options) + TCP (no options) frame into `buf`.
pub fn tcp_frame(
    buf: &mut Vec<u8>,
    src: Ep,
    dst: Ep,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) {
    buf.clear();
    // Ethernet: locally administered MACs derived from the addresses.
    buf.extend_from_slice(&[0x02, 0, dst.ip[0], dst.ip[1], dst.ip[2], dst.ip[3]]);
    buf.extend_from_slice(&[0x02, 0, src.ip[0], src.ip[1], src.ip[2], src.ip[3]]);
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = buf.len();
    let total = (20 + 20 + payload.len()) as u16;
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]); // id, DF, TTL 64, TCP, checksum
    buf.extend_from_slice(&src.ip);
    buf.extend_from_slice(&dst.ip);
    let ip_sum = csum_fold(csum_add(0, &buf[ip_start..ip_start + 20]));
    buf[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp_start = buf.len();
    buf.extend_from_slice(&src.port.to_be_bytes());
    buf.extend_from_slice(&dst.port.to_be_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
    buf.extend_from_slice(&[5 << 4, flags]);
    buf.extend_from_slice(&65535u16.to_be_bytes()); // window
    buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    buf.extend_from_slice(payload);
    let tcp_len = (20 + payload.len()) as u32;
    let mut sum = csum_add(0, &src.ip);
    sum = csum_add(sum, &dst.ip);
    sum += 6 + tcp_len;
    sum = csum_add(sum, &buf[tcp_start..]);
    let tcp_sum = csum_fold(sum);
    buf[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
}

/// One TCP connection's sequence state, so tests write "the client sends …".
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// The client.
    pub client: Ep,
    /// The server.
    pub server: Ep,
    /// Next sequence number the client sends.
    pub cseq: u32,
    /// Next sequence number the server sends.
    pub sseq: u32,
}

impl Conn {
    /// A connection whose client and server chose these initial sequence numbers.
    pub fn new(client: Ep, server: Ep, client_isn: u32, server_isn: u32) -> Conn {
        Conn {
            client,
            server,
            cseq: client_isn,
            sseq: server_isn,
        }
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self, p: &mut Pcap) -> io::Result<()> {
        p.tcp(self.client, self.server, self.cseq, 0, SYN, b"")?;
        self.cseq = self.cseq.wrapping_add(1);
        p.tcp(
            self.server,
            self.client,
            self.sseq,
            self.cseq,
            SYN | ACK,
            b"",
        )?;
        self.sseq = self.sseq.wrapping_add(1);
        p.tcp(self.client, self.server, self.cseq, self.sseq, ACK, b"")
    }

    /// The client sends `data`, cut into [`MSS`]-sized segments.
    pub fn client(&mut self, p: &mut Pcap, data: &[u8]) -> io::Result<()> {
        self.client_segments(p, data, MSS)
    }

    /// The client sends `data` in segments of up to `mss` bytes (large ones are what a capture
    /// taken on a host with segmentation offload shows).
    pub fn client_segments(&mut self, p: &mut Pcap, data: &[u8], mss: usize) -> io::Result<()> {
        for c in data.chunks(mss) {
            p.tcp(self.client, self.server, self.cseq, self.sseq, ACK | PSH, c)?;
            self.cseq = self.cseq.wrapping_add(c.len() as u32);
        }
        Ok(())
    }

    /// The server sends `data`, cut into [`MSS`]-sized segments.
    pub fn server(&mut self, p: &mut Pcap, data: &[u8]) -> io::Result<()> {
        for c in data.chunks(MSS) {
            p.tcp(self.server, self.client, self.sseq, self.cseq, ACK | PSH, c)?;
            self.sseq = self.sseq.wrapping_add(c.len() as u32);
        }
        Ok(())
    }

    /// The client acknowledges everything the server sent (a bare ACK).
    pub fn client_ack(&mut self, p: &mut Pcap) -> io::Result<()> {
        p.tcp(self.client, self.server, self.cseq, self.sseq, ACK, b"")
    }

    /// The server acknowledges everything the client sent (a bare ACK).
    pub fn server_ack(&mut self, p: &mut Pcap) -> io::Result<()> {
        p.tcp(self.server, self.client, self.sseq, self.cseq, ACK, b"")
    }

    /// FIN from the client, FIN from the server, last ACK.
    pub fn close(&mut self, p: &mut Pcap) -> io::Result<()> {
        p.tcp(
            self.client,
            self.server,
            self.cseq,
            self.sseq,
            FIN | ACK,
            b"",
        )?;
        self.cseq = self.cseq.wrapping_add(1);
        p.tcp(
            self.server,
            self.client,
            self.sseq,
            self.cseq,
            FIN | ACK,
            b"",
        )?;
        self.sseq = self.sseq.wrapping_add(1);
        p.tcp(self.client, self.server, self.cseq, self.sseq, ACK, b"")
    }
}

/// The server every clean exchange talks to.
pub const CLEAN_SERVER: Ep = Ep::new([198, 51, 100, 1], 80);

/// One ordinary connection: handshake, `GET path`, a small JSON `200`, orderly close.
/// Its client port is `port`, so several clean exchanges in one capture stay apart.
pub fn clean_exchange(p: &mut Pcap, path: &str, port: u16) -> io::Result<()> {
    let mut c = Conn::new(Ep::new([192, 0, 2, 200], port), CLEAN_SERVER, 1000, 5000);
    c.handshake(p)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: clean.example\r\nAccept: */*\r\n\r\n");
    c.client(p, req.as_bytes())?;
    c.server(
        p,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
    )?;
    c.client_ack(p)?;
    c.close(p)
}

/// A small deterministic generator (xorshift64*), for "random" sources without a dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Next value, 32 bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// The `i`-th distinct client endpoint out of 10.0.0.0/8 × ports 1024..65535 (a million
/// connections need more than one address).
pub fn nth_client(i: u64) -> Ep {
    let ports = 64_000u64;
    let host = (i / ports) as u32 + 1;
    let port = 1024 + (i % ports) as u16;
    let h = host.to_be_bytes();
    Ep::new([10, h[1], h[2], h[3]], port)
}

/// HPACK integer representation (RFC 7541 §5.1): `value` with an `n`-bit prefix whose
/// high bits are `flags`.
pub fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, value: u64) {
    let max = (1u64 << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut v = value - max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2).
pub fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len() as u64);
    out.extend_from_slice(s);
}

/// An HTTP/2 frame (RFC 9113 §4.1).
pub fn h2_frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// HTTP/2 frame types and flags used by the tests.
pub mod h2 {
    /// The client connection preface (RFC 9113 §3.4).
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// END_STREAM.
    pub const END_STREAM: u8 = 0x1;
    /// END_HEADERS.
    pub const END_HEADERS: u8 = 0x4;
    /// ACK (SETTINGS).
    pub const ACK: u8 = 0x1;
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
}
