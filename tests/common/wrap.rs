//! Wraps the frames of a real capture in the encapsulations mirrors deliver them in, for the
//! tunnel tests: VXLAN, Geneve, GRE, ERSPAN I/II/III, 802.1Q/QinQ, MPLS, IP in IP, GTP-U; and
//! splits IPv4 packets into fragments the way an underlay with a small MTU does.
//!
//! Headers are built by hand from the specifications (RFC 7348, RFC 8926, RFC 2784/2890,
//! draft-foschiano-erspan-03, IEEE 802.1Q, RFC 3032, RFC 2003, 3GPP TS 29.281, RFC 791 §3.2),
//! independently of the decoder under test. Outer IPv4 headers carry a correct checksum; outer
//! UDP checksums are 0, which IPv4 allows. The outer lengths are those of the bytes captured,
//! as a mirror sends what it saw.
#![allow(dead_code)]

use anyhow::{Context, Result};
use pcap::{Capture, Linktype, Packet, PacketHeader};
use std::path::Path;

/// Address of the mirror source (VTEP, GRE peer).
pub const OUTER_SRC: [u8; 4] = [192, 0, 2, 10];
/// Address of the mirror target.
pub const OUTER_DST: [u8; 4] = [192, 0, 2, 20];

/// An encapsulation to put around an Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub enum Encap {
    /// VXLAN, UDP 4789.
    Vxlan { vni: u32 },
    /// Geneve, UDP 6081, protocol 0x6558 (Ethernet), with two AWS-style options.
    Geneve { vni: u32 },
    /// Geneve carrying the IP packet (protocol 0x0800/0x86DD), as AWS GWLB does.
    GeneveIp { vni: u32 },
    /// GRE, transparent Ethernet bridging, with checksum, key and sequence fields.
    GreTeb { key: u32 },
    /// GRE carrying the IP packet, no options.
    GreIp,
    /// ERSPAN type I: GRE 0x88BE without sequence number or ERSPAN header.
    ErspanI,
    /// ERSPAN type II.
    ErspanII { session: u16 },
    /// ERSPAN type III, with or without the platform-specific sub-header.
    ErspanIII { session: u16, subheader: bool },
    /// One 802.1Q tag.
    Vlan { id: u16 },
    /// 802.1ad outer tag and 802.1Q inner tag.
    QinQ { outer: u16, inner: u16 },
    /// An MPLS label stack of `labels` labels in place of the EtherType.
    Mpls { labels: u8 },
    /// The IP packet inside an outer IPv4 header (protocol 4 or 41).
    IpInIp,
    /// GTP-U G-PDU, UDP 2152.
    GtpU { teid: u32 },
}

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

fn ether(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x20, 0x02, 0, 0, 0, 0, 0x10];
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// RFC 1071 checksum of a header.
fn checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet; `frag` is the flags/fragment-offset word.
pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    assert!(total <= 65_535, "packet of {total} bytes cannot be IPv4");
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// The frame inside Ethernet / IPv4 / UDP `dport` / `hdr`.
fn over_udp(dport: u16, hdr: &[u8], inner: &[u8], id: u16) -> Vec<u8> {
    let mut p = hdr.to_vec();
    p.extend_from_slice(inner);
    // Source port from the inner frame's bytes, as VTEPs spread flows (RFC 7348 §5).
    let sport = 49152 + (inner.iter().take(64).map(|&b| u32::from(b)).sum::<u32>() % 16000) as u16;
    ether(
        0x0800,
        &ipv4(17, OUTER_SRC, OUTER_DST, id, 0, &udp(sport, dport, &p)),
    )
}

fn over_gre(hdr: &[u8], inner: &[u8], id: u16) -> Vec<u8> {
    let mut p = hdr.to_vec();
    p.extend_from_slice(inner);
    ether(0x0800, &ipv4(47, OUTER_SRC, OUTER_DST, id, 0, &p))
}

/// `frame` (an Ethernet frame) in encapsulation `e`; `n` numbers the packet (outer IP id, GRE
/// and ERSPAN sequence numbers). Frames that are not IP are returned unchanged by the
/// encapsulations that carry only IP.
pub fn wrap(e: Encap, frame: &[u8], n: u32) -> Vec<u8> {
    let id = n as u16;
    let seq = n.to_be_bytes();
    let ty = ethertype(frame);
    let ip = &frame[14..];
    let is_ip = ty == 0x0800 || ty == 0x86dd;
    match e {
        Encap::Vxlan { vni } => {
            let v = vni.to_be_bytes();
            over_udp(4789, &[0x08, 0, 0, 0, v[1], v[2], v[3], 0], frame, id)
        }
        Encap::Geneve { vni } | Encap::GeneveIp { vni } => {
            let ip_mode = matches!(e, Encap::GeneveIp { .. });
            if ip_mode && !is_ip {
                return frame.to_vec();
            }
            let v = vni.to_be_bytes();
            let proto: u16 = if ip_mode { ty } else { 0x6558 };
            // 5 option words: class 0x0108 type 1 (8 data bytes), class 0x0108 type 3 (4 bytes)
            let mut h = vec![0x05, 0x00];
            h.extend_from_slice(&proto.to_be_bytes());
            h.extend_from_slice(&[v[1], v[2], v[3], 0]);
            h.extend_from_slice(&[0x01, 0x08, 0x01, 0x02, 1, 2, 3, 4, 5, 6, 7, 8]);
            h.extend_from_slice(&[0x01, 0x08, 0x03, 0x01, 9, 9, 9, 9]);
            over_udp(6081, &h, if ip_mode { ip } else { frame }, id)
        }
        Encap::GreTeb { key } => {
            let mut h = vec![0xb0, 0x00, 0x65, 0x58, 0, 0, 0, 0];
            h.extend_from_slice(&key.to_be_bytes());
            h.extend_from_slice(&seq);
            over_gre(&h, frame, id)
        }
        Encap::GreIp => {
            if !is_ip {
                return frame.to_vec();
            }
            let mut h = vec![0x00, 0x00];
            h.extend_from_slice(&ty.to_be_bytes());
            over_gre(&h, ip, id)
        }
        Encap::ErspanI => over_gre(&[0x00, 0x00, 0x88, 0xbe], frame, id),
        Encap::ErspanII { session } => {
            let mut h = vec![0x10, 0x00, 0x88, 0xbe];
            h.extend_from_slice(&seq);
            // version 1, VLAN 0 | COS 0, En 0, T 0, session | reserved, index
            h.extend_from_slice(&[0x10, 0x00]);
            h.extend_from_slice(&(session & 0x3ff).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 1]);
            over_gre(&h, frame, id)
        }
        Encap::ErspanIII { session, subheader } => {
            let mut h = vec![0x10, 0x00, 0x22, 0xeb];
            h.extend_from_slice(&seq);
            // version 2 | session | timestamp | SGT, P, FT = 0 (Ethernet), HW id, D, Gra, O
            h.extend_from_slice(&[0x20, 0x00]);
            h.extend_from_slice(&(session & 0x3ff).to_be_bytes());
            h.extend_from_slice(&n.wrapping_mul(1000).to_be_bytes());
            h.extend_from_slice(&[0x00, 0x00, 0x00, 0x14 | u8::from(subheader)]);
            if subheader {
                // platform id 3: upper timestamp bits, port id
                h.extend_from_slice(&[0x0c, 0x00, 0x00, 0x07, 0, 0, 0, 0]);
            }
            over_gre(&h, frame, id)
        }
        Encap::Vlan { id: vid } => {
            let mut f = frame[..12].to_vec();
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
            f.extend_from_slice(&frame[12..]);
            f
        }
        Encap::QinQ { outer, inner } => {
            let mut f = frame[..12].to_vec();
            f.extend_from_slice(&[0x88, 0xa8]);
            f.extend_from_slice(&(outer & 0x0fff).to_be_bytes());
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(inner & 0x0fff).to_be_bytes());
            f.extend_from_slice(&frame[12..]);
            f
        }
        Encap::Mpls { labels } => {
            if !is_ip {
                return frame.to_vec();
            }
            let mut f = frame[..12].to_vec();
            f.extend_from_slice(&[0x88, 0x47]);
            for i in 0..labels {
                let label = 1000u32 + u32::from(i);
                let bos = u32::from(i + 1 == labels);
                let lse = label << 12 | bos << 8 | 64;
                f.extend_from_slice(&lse.to_be_bytes());
            }
            f.extend_from_slice(ip);
            f
        }
        Encap::IpInIp => {
            if !is_ip {
                return frame.to_vec();
            }
            let proto = if ty == 0x0800 { 4 } else { 41 };
            ether(0x0800, &ipv4(proto, OUTER_SRC, OUTER_DST, id, 0, ip))
        }
        Encap::GtpU { teid } => {
            if !is_ip {
                return frame.to_vec();
            }
            let mut h = vec![0x30, 0xff];
            h.extend_from_slice(&(ip.len() as u16).to_be_bytes());
            h.extend_from_slice(&teid.to_be_bytes());
            over_udp(2152, &h, ip, id)
        }
    }
}

/// Splits an Ethernet frame holding an IPv4 packet into frames holding its fragments, each
/// at most `mtu` bytes of IP packet (RFC 791 §3.2: offsets in 8-byte units, MF on all but the
/// last; options are not copied, the test packets have none). Other frames, and packets that
/// fit or carry DF, come back whole.
pub fn fragment(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    if ethertype(frame) != 0x0800 {
        return vec![frame.to_vec()];
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let ff = u16::from_be_bytes([ip[6], ip[7]]);
    if total <= mtu || ff & 0x4000 != 0 || ff & 0x3fff != 0 || ihl != 20 {
        return vec![frame.to_vec()];
    }
    let payload = &ip[ihl..total];
    let step = (mtu - ihl) / 8 * 8;
    let id = u16::from_be_bytes([ip[4], ip[5]]);
    let (mut src, mut dst) = ([0; 4], [0; 4]);
    src.copy_from_slice(&ip[12..16]);
    dst.copy_from_slice(&ip[16..20]);
    payload
        .chunks(step)
        .enumerate()
        .map(|(i, c)| {
            let more = (i + 1) * step < payload.len();
            let word = ((i * step / 8) as u16) | if more { 0x2000 } else { 0 };
            let mut f = frame[..14].to_vec();
            f.extend_from_slice(&ipv4(ip[9], src, dst, id, word, c));
            f
        })
        .collect()
}

/// Clears DF on an Ethernet/IPv4 frame (and fixes the checksum), so the packet may be
/// fragmented; loopback TCP sets DF on everything.
pub fn clear_df(frame: &mut [u8]) {
    if ethertype(frame) != 0x0800 || frame.len() < 34 {
        return;
    }
    frame[20] &= !0x40;
    frame[24] = 0;
    frame[25] = 0;
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    if let Some(h) = frame.get(14..14 + ihl) {
        let c = checksum(h);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

/// Reorders `v` a little, deterministically from `n`: reversed, first two swapped, or kept.
pub fn shuffle<T>(v: &mut [T], n: u32) {
    match n % 3 {
        0 => v.reverse(),
        1 if v.len() > 1 => v.swap(0, 1),
        _ => {}
    }
}

/// Writes a copy of the Ethernet capture `input` to `output` in which frame number `n` is
/// replaced by the frames `f(n, frame)` returns, with the original timestamp. Returns
/// (frames read, frames written).
pub fn rewrite(
    input: &Path,
    output: &Path,
    mut f: impl FnMut(u32, &[u8]) -> Vec<Vec<u8>>,
) -> Result<(u64, u64)> {
    let mut cap = Capture::from_file(input)
        .with_context(|| format!("opening capture {}", input.display()))?;
    anyhow::ensure!(
        cap.get_datalink() == Linktype::ETHERNET,
        "{}: not an Ethernet capture",
        input.display()
    );
    let dead = Capture::dead(Linktype::ETHERNET).context("pcap dead handle")?;
    let mut out = dead
        .savefile(output)
        .with_context(|| format!("creating capture {}", output.display()))?;
    let (mut read, mut written) = (0u64, 0u64);
    loop {
        let (hdr, data) = match cap.next_packet() {
            Ok(p) => (*p.header, p.data.to_vec()),
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", input.display())),
        };
        let n = read as u32;
        read += 1;
        // Frames too short to carry an EtherType are passed on as they are.
        let frames = if data.len() < 14 {
            vec![data.clone()]
        } else {
            f(n, &data)
        };
        for fr in frames {
            let added = fr.len() as i64 - data.len() as i64;
            let h = PacketHeader {
                ts: hdr.ts,
                caplen: fr.len() as u32,
                len: (i64::from(hdr.len) + added).max(fr.len() as i64) as u32,
            };
            out.write(&Packet::new(&h, &fr));
            written += 1;
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", output.display()))?;
    Ok((read, written))
}

/// Appends the Ethernet frames of several captures into one file, in the order given; other
/// link types are skipped. Each capture's clock is shifted to start an hour after the previous
/// one ended, so the flows of one capture are idle-closed before the next one's begin (many
/// reuse the same addresses and ports). Returns the captures used.
pub fn concat(inputs: &[std::path::PathBuf], output: &Path) -> Result<usize> {
    let dead = Capture::dead(Linktype::ETHERNET).context("pcap dead handle")?;
    let mut out = dead
        .savefile(output)
        .with_context(|| format!("creating capture {}", output.display()))?;
    let mut used = 0;
    // Seconds in the platform's `time_t`.
    let mut next_start = 1_000_000_000;
    for p in inputs {
        let Ok(mut cap) = Capture::from_file(p) else {
            continue;
        };
        if cap.get_datalink() != Linktype::ETHERNET {
            continue;
        }
        used += 1;
        let mut shift = None;
        let mut end = next_start;
        while let Ok(pkt) = cap.next_packet() {
            let mut h = *pkt.header;
            let sec = h.ts.tv_sec;
            let d = *shift.get_or_insert(next_start - sec);
            h.ts.tv_sec = sec + d;
            end = end.max(sec + d);
            out.write(&Packet::new(&h, pkt.data));
        }
        next_start = end + 3600;
    }
    out.flush()?;
    Ok(used)
}
