//! Link and network decoding: one captured frame in, one borrowed TCP segment view out.
//!
//! Owns the step from a libpcap record (link type + bytes) to the fields reassembly needs
//! (addresses, ports, RFC 9293 §3.1 header fields, payload). Header parsing is etherparse's lax
//! slicing, so a frame truncated by the snap length still yields its headers and whatever payload
//! was captured; the layers around it (link headers etherparse does not know, VLAN stacks, MPLS,
//! PPPoE) are walked here with a depth limit. Nothing here allocates or copies payload.
//!
//! Supported link types: Ethernet (DLT_EN10MB), Linux cooked v1 and v2 (DLT_LINUX_SLL/SLL2, what
//! `tcpdump -i any` writes), raw IP (DLT_RAW, LINKTYPE_IPV4/IPV6), BSD loopback (DLT_NULL,
//! DLT_LOOP). Inside: 802.1Q/802.1ad/QinQ tags, MPLS label stacks, PPPoE sessions, IPv4 and IPv6
//! with extension headers. IP fragments and non-TCP traffic are counted and skipped; tunnels
//! (VXLAN, Geneve, GRE/ERSPAN) plug in at [`decode_ether_type`] / [`decode_ip`].
use etherparse::{IpNumber, LaxIpSlice, TcpSlice};
use std::net::IpAddr;

/// libpcap link-layer header types this decoder understands (LINKTYPE_* values).
pub mod linktype {
    /// BSD loopback: 4-byte address family in host byte order.
    pub const NULL: i32 = 0;
    /// Ethernet II.
    pub const ETHERNET: i32 = 1;
    /// Raw IP (OpenBSD value).
    pub const RAW_OLD: i32 = 12;
    /// Raw IP (some platforms).
    pub const RAW_ALT: i32 = 14;
    /// Raw IP (LINKTYPE_RAW).
    pub const RAW: i32 = 101;
    /// OpenBSD loopback: address family in network byte order.
    pub const LOOP: i32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: i32 = 113;
    /// Raw IPv4.
    pub const IPV4: i32 = 228;
    /// Raw IPv6.
    pub const IPV6: i32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: i32 = 276;
}

/// Encapsulations nested deeper than this are skipped (a crafted frame could otherwise stack
/// VLAN tags or MPLS labels without end).
pub const MAX_DEPTH: u8 = 8;

/// TCP header flags reassembly cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// A decoded TCP segment, borrowing its payload from the captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when `flags.ack`).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Payload bytes present in the capture.
    pub payload: &'a [u8],
    /// Payload length the segment had on the wire; larger than `payload.len()` when the capture
    /// was cut by the snap length (reassembly then reports the missing tail as a gap).
    pub wire_len: u32,
    /// Outermost VLAN id, if tagged.
    pub vlan: Option<u16>,
}

/// Why a frame yields no TCP segment. Each reason has a counter in [`DecodeStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// Link type this decoder does not know.
    #[error("unsupported link type")]
    UnsupportedLink,
    /// Not IP (ARP, LLDP, …).
    #[error("not IP")]
    NotIp,
    /// IP, but not TCP (UDP, ICMP, …).
    #[error("not TCP")]
    NotTcp,
    /// An IP fragment (reassembly of fragments is not done yet).
    #[error("IP fragment")]
    Fragment,
    /// A header was cut short or inconsistent.
    #[error("malformed or truncated header")]
    Malformed,
    /// More nested encapsulations than [`MAX_DEPTH`].
    #[error("encapsulation too deep")]
    TooDeep,
}

/// Decoding counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    /// TCP segments decoded.
    pub tcp: u64,
    /// Frames of an unsupported link type.
    pub unsupported_link: u64,
    /// Non-IP frames.
    pub not_ip: u64,
    /// IP packets that are not TCP.
    pub not_tcp: u64,
    /// IP fragments skipped.
    pub fragments: u64,
    /// Malformed or truncated headers.
    pub malformed: u64,
    /// Frames nested too deep.
    pub too_deep: u64,
    /// Frames with at least one VLAN tag.
    pub vlan_tagged: u64,
    /// Frames with an MPLS label stack.
    pub mpls: u64,
    /// Frames inside a PPPoE session.
    pub pppoe: u64,
    /// TCP segments whose payload was cut by the snap length.
    pub truncated_payload: u64,
}

impl DecodeStats {
    /// Counts a decode result.
    pub fn count(&mut self, r: &Result<TcpSegment<'_>, Skip>) {
        match r {
            Ok(s) => {
                self.tcp += 1;
                if (s.payload.len() as u32) < s.wire_len {
                    self.truncated_payload += 1;
                }
            }
            Err(Skip::UnsupportedLink) => self.unsupported_link += 1,
            Err(Skip::NotIp) => self.not_ip += 1,
            Err(Skip::NotTcp) => self.not_tcp += 1,
            Err(Skip::Fragment) => self.fragments += 1,
            Err(Skip::Malformed) => self.malformed += 1,
            Err(Skip::TooDeep) => self.too_deep += 1,
        }
    }
}

/// Per-frame decoding context: encapsulation facts gathered on the way in.
#[derive(Default)]
struct Ctx {
    vlan: Option<u16>,
    vlan_tagged: bool,
    mpls: bool,
    pppoe: bool,
}

/// Decodes one captured frame of link type `linktype`.
pub fn decode<'a>(
    linktype: i32,
    frame: &'a [u8],
    stats: &mut DecodeStats,
) -> Result<TcpSegment<'a>, Skip> {
    let mut ctx = Ctx::default();
    let r = decode_link(linktype, frame, &mut ctx);
    if ctx.vlan_tagged {
        stats.vlan_tagged += 1;
    }
    if ctx.mpls {
        stats.mpls += 1;
    }
    if ctx.pppoe {
        stats.pppoe += 1;
    }
    stats.count(&r);
    r.map(|mut s| {
        s.vlan = ctx.vlan;
        s
    })
}

fn decode_link<'a>(linktype: i32, f: &'a [u8], ctx: &mut Ctx) -> Result<TcpSegment<'a>, Skip> {
    match linktype {
        linktype::ETHERNET => {
            let ty = be16(f, 12)?;
            decode_ether_type(ty, f.get(14..).ok_or(Skip::Malformed)?, ctx, 0)
        }
        linktype::LINUX_SLL => {
            // 16-byte header; protocol type (an EtherType for IP) at offset 14.
            let ty = be16(f, 14)?;
            decode_ether_type(ty, f.get(16..).ok_or(Skip::Malformed)?, ctx, 0)
        }
        linktype::LINUX_SLL2 => {
            // 20-byte header; protocol type first.
            let ty = be16(f, 0)?;
            decode_ether_type(ty, f.get(20..).ok_or(Skip::Malformed)?, ctx, 0)
        }
        linktype::RAW | linktype::RAW_OLD | linktype::RAW_ALT | linktype::IPV4 | linktype::IPV6 => {
            decode_ip(f, ctx, 0)
        }
        linktype::NULL | linktype::LOOP => {
            // The family is in the writer's byte order (NULL) or network order (LOOP); the
            // values for IPv4 (2) and IPv6 (24, 28, 30) are unambiguous either way.
            let b = f.get(..4).ok_or(Skip::Malformed)?;
            let fam = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let fam = if fam > 0xffff { fam.swap_bytes() } else { fam };
            match fam {
                2 | 24 | 28 | 30 => decode_ip(f.get(4..).ok_or(Skip::Malformed)?, ctx, 0),
                _ => Err(Skip::NotIp),
            }
        }
        _ => Err(Skip::UnsupportedLink),
    }
}

/// Decodes a payload identified by an EtherType (after Ethernet, SLL, a VLAN tag, …).
fn decode_ether_type<'a>(
    ty: u16,
    p: &'a [u8],
    ctx: &mut Ctx,
    depth: u8,
) -> Result<TcpSegment<'a>, Skip> {
    if depth > MAX_DEPTH {
        return Err(Skip::TooDeep);
    }
    match ty {
        0x0800 | 0x86dd => decode_ip(p, ctx, depth + 1),
        // 802.1Q, 802.1ad and the pre-standard QinQ types: 2 bytes TCI, 2 bytes inner type.
        0x8100 | 0x88a8 | 0x9100 | 0x9200 => {
            let tci = be16(p, 0)?;
            ctx.vlan_tagged = true;
            ctx.vlan.get_or_insert(tci & 0x0fff);
            decode_ether_type(
                be16(p, 2)?,
                p.get(4..).ok_or(Skip::Malformed)?,
                ctx,
                depth + 1,
            )
        }
        // MPLS unicast/multicast: 4-byte labels until the bottom-of-stack bit; the payload
        // type is not signalled, so look at the IP version nibble.
        0x8847 | 0x8848 => {
            ctx.mpls = true;
            let mut off = 0usize;
            for _ in 0..=MAX_DEPTH {
                let lse = p.get(off..off + 4).ok_or(Skip::Malformed)?;
                off += 4;
                if lse[2] & 0x01 != 0 {
                    let rest = p.get(off..).ok_or(Skip::Malformed)?;
                    return match rest.first().map(|b| b >> 4) {
                        Some(4) | Some(6) => decode_ip(rest, ctx, depth + 1),
                        _ => Err(Skip::NotIp),
                    };
                }
            }
            Err(Skip::TooDeep)
        }
        // PPPoE session (RFC 2516): 6-byte header, then a 2-byte PPP protocol.
        // The PPP protocol field may be compressed to one byte (RFC 1661 §6.5): an odd first
        // byte is the whole field.
        0x8864 => {
            ctx.pppoe = true;
            let first = *p.get(6).ok_or(Skip::Malformed)?;
            let (proto, at) = if first & 1 == 1 {
                (u16::from(first), 7)
            } else {
                (be16(p, 6)?, 8)
            };
            match proto {
                0x0021 | 0x0057 => decode_ip(p.get(at..).ok_or(Skip::Malformed)?, ctx, depth + 1),
                _ => Err(Skip::NotIp),
            }
        }
        _ => Err(Skip::NotIp),
    }
}

/// Decodes an IPv4 or IPv6 packet and the TCP segment inside it.
fn decode_ip<'a>(p: &'a [u8], _ctx: &mut Ctx, depth: u8) -> Result<TcpSegment<'a>, Skip> {
    if depth > MAX_DEPTH {
        return Err(Skip::TooDeep);
    }
    let (ip, _ext_err) = LaxIpSlice::from_slice(p).map_err(|_| Skip::Malformed)?;
    let payload = ip.payload();
    if payload.fragmented {
        return Err(Skip::Fragment);
    }
    if payload.ip_number != IpNumber::TCP {
        return Err(Skip::NotTcp);
    }
    // Declared IP payload length, to tell a snap-length cut from a short segment.
    let declared = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            usize::from(h.total_len()).saturating_sub(usize::from(h.ihl()) * 4)
        }
        LaxIpSlice::Ipv6(v6) => {
            usize::from(v6.header().payload_length()).saturating_sub(v6.extensions().slice().len())
        }
    };
    let tcp = TcpSlice::from_slice(payload.payload).map_err(|_| Skip::Malformed)?;
    let hdr_len = tcp.header_slice().len();
    let data = tcp.payload();
    let wire_len = if payload.incomplete {
        declared.saturating_sub(hdr_len).max(data.len())
    } else {
        data.len()
    };
    Ok(TcpSegment {
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        sport: tcp.source_port(),
        dport: tcp.destination_port(),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload: data,
        wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
        vlan: None,
    })
}

fn be16(p: &[u8], at: usize) -> Result<u16, Skip> {
    match p.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(Skip::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = tcp_frame(b"GET / HTTP/1.1\r\n\r\n");
        let mut st = DecodeStats::default();
        let s = decode(linktype::ETHERNET, &f, &mut st).unwrap();
        assert_eq!(s.sport, 40000);
        assert_eq!(s.dport, 80);
        assert_eq!(s.seq, 1000);
        assert_eq!(s.ack, 77);
        assert!(s.flags.ack && !s.flags.syn);
        assert_eq!(s.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.wire_len, 18);
        assert_eq!(st.tcp, 1);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut f = tcp_frame(b"");
        f.extend_from_slice(&[0u8; 6]); // minimum frame size padding
        let s = decode(linktype::ETHERNET, &f, &mut DecodeStats::default()).unwrap();
        assert!(s.payload.is_empty());
    }

    #[test]
    fn vlan_qinq_and_mpls_are_walked() {
        let inner = tcp_frame(b"x");
        let ip = &inner[14..];
        let mut f = inner[..12].to_vec();
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x88, 0x47]);
        f.extend_from_slice(&[0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]); // two labels, BoS
        f.extend_from_slice(ip);
        let mut st = DecodeStats::default();
        let s = decode(linktype::ETHERNET, &f, &mut st).unwrap();
        assert_eq!(s.vlan, Some(100));
        assert_eq!(s.payload, b"x");
        assert_eq!((st.vlan_tagged, st.mpls), (1, 1));
    }

    #[test]
    fn pppoe_with_and_without_protocol_compression() {
        let inner = tcp_frame(b"ppp");
        let ip = &inner[14..];
        for compressed in [false, true] {
            let mut f = inner[..12].to_vec();
            f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x00, 0x01, 0x00, 0x00]);
            if compressed {
                f.push(0x21);
            } else {
                f.extend_from_slice(&[0x00, 0x21]);
            }
            f.extend_from_slice(ip);
            let s = decode(linktype::ETHERNET, &f, &mut DecodeStats::default()).unwrap();
            assert_eq!(s.payload, b"ppp", "compressed: {compressed}");
        }
    }

    #[test]
    fn sll2_and_null_and_raw() {
        let inner = tcp_frame(b"abc");
        let ip = &inner[14..];
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        let mut lo = 2u32.to_be_bytes().to_vec();
        lo.extend_from_slice(ip);
        let mut st = DecodeStats::default();
        for (lt, f) in [
            (linktype::LINUX_SLL2, &sll2[..]),
            (linktype::NULL, &null[..]),
            (linktype::LOOP, &lo[..]),
            (linktype::RAW, ip),
        ] {
            assert_eq!(
                decode(lt, f, &mut st).unwrap().payload,
                b"abc",
                "linktype {lt}"
            );
        }
    }

    #[test]
    fn hostile_frames_are_skipped_not_panicking() {
        let f = tcp_frame(b"hello world");
        let mut st = DecodeStats::default();
        for n in 0..f.len() {
            let _ = decode(linktype::ETHERNET, &f[..n], &mut st);
            let _ = decode(linktype::LINUX_SLL, &f[..n], &mut st);
            let _ = decode(linktype::NULL, &f[..n], &mut st);
        }
        // a frame cut inside the payload keeps its headers and reports the wire length
        let cut = decode(linktype::ETHERNET, &f[..f.len() - 5], &mut st).unwrap();
        assert_eq!(cut.payload, b"hello ");
        assert_eq!(cut.wire_len, 11);
        // endless VLAN tags stop at the depth limit
        let mut deep = f[..12].to_vec();
        for _ in 0..20 {
            deep.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        deep.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(
            decode(linktype::ETHERNET, &deep, &mut st),
            Err(Skip::TooDeep)
        );
        assert_eq!(decode(9999, &f, &mut st), Err(Skip::UnsupportedLink));
    }
}
