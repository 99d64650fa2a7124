//! Link and network decoding: one captured frame in, one borrowed TCP segment view out.
//!
//! Owns the step from a libpcap record (link type + bytes) to the fields reassembly needs
//! (addresses, ports, RFC 9293 §3.1 header fields, payload), through every encapsulation a
//! mirror puts around the packet. The walk is recursive, one function per layer, with a depth
//! limit ([`MAX_DEPTH`]) and a counter per encapsulation kind in [`DecodeStats`]:
//!
//! * links: Ethernet (DLT_EN10MB), Linux cooked v1 and v2 (DLT_LINUX_SLL/SLL2, what
//!   `tcpdump -i any` writes), raw IP (DLT_RAW, LINKTYPE_IPV4/IPV6), BSD loopback (DLT_NULL,
//!   DLT_LOOP), Cisco HDLC (DLT_C_HDLC);
//! * inside a link: 802.1Q/802.1ad/QinQ tags, MPLS label stacks (RFC 3032; with an Ethernet
//!   pseudowire behind a control word, RFC 4448), PPPoE sessions (RFC 2516);
//! * network: IPv4 (RFC 791) and IPv6 (RFC 8200) with extension headers and AH (RFC 4302);
//!   fragments are returned to [`Decoder`], which reassembles them ([`crate::frag`]) and goes
//!   on decoding the datagram;
//! * tunnels ([`crate::tunnel`]): VXLAN, Geneve, GTP-U (by UDP destination port, see
//!   [`DecodeConfig`]), GRE with Ethernet/IP/MPLS inside, ERSPAN I/II/III, IP in IP (IPv4 or
//!   IPv6 in either). The flow key is the *inner* 5-tuple; the outermost tunnel is kept as
//!   [`TcpSegment::tunnel`]. The VLAN reported is the innermost frame's: an underlay VLAN says
//!   nothing about the tenant network and may differ per direction.
//!
//! Headers are read through bounds-checked accessors; a frame truncated by the snap length
//! still yields its headers and whatever payload was captured, with the wire length reported
//! so reassembly can count the missing tail as a gap. Nothing here allocates or copies
//! payload, except fragment reassembly, which copies fragments into its bounded table.
use crate::frag::{FragConfig, FragKey, FragOutcome, FragPiece, FragStats, FragTable};
use crate::tunnel::{self, Decap, Inner, Tunnel, TunnelKind, UdpPorts};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// Cisco HDLC: address, control, then a 2-byte EtherType.
    pub const C_HDLC: i32 = 104;
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

/// Layers nested deeper than this are skipped: a crafted frame could otherwise stack VLAN
/// tags, labels or tunnels without end. A VXLAN mirror of QinQ-tagged, GRE-tunnelled traffic
/// is about 10 deep.
pub const MAX_DEPTH: u8 = 16;

/// Most IPv6 extension headers walked in one packet.
const MAX_EXT_HEADERS: usize = 8;

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

/// A decoded TCP segment, borrowing its payload from the captured frame (or from the
/// [`Decoder`]'s reassembly buffer when it came in IP fragments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source address (of the innermost IP header).
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
    /// Outermost VLAN id of the innermost Ethernet frame, if tagged.
    pub vlan: Option<u16>,
    /// The outermost tunnel the segment came through, if any.
    pub tunnel: Option<Tunnel>,
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
    /// An IP fragment: held until its datagram is complete, or dropped (see
    /// [`FragStats`]; the free function [`decode`] skips every fragment).
    #[error("IP fragment")]
    Fragment,
    /// A header was cut short or inconsistent.
    #[error("malformed or truncated header")]
    Malformed,
    /// More nested layers than [`MAX_DEPTH`].
    #[error("encapsulation too deep")]
    TooDeep,
}

/// Decoding counters. The per-encapsulation counters count frames that had at least one layer
/// of that kind.
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
    /// IP fragments held for reassembly or dropped (no segment yet).
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
    /// Frames inside VXLAN.
    pub vxlan: u64,
    /// Frames inside Geneve.
    pub geneve: u64,
    /// Frames inside plain GRE.
    pub gre: u64,
    /// Frames inside ERSPAN (any type).
    pub erspan: u64,
    /// Frames with IP in IP.
    pub ip_in_ip: u64,
    /// Frames inside GTP-U.
    pub gtp_u: u64,
    /// TCP segments whose payload was cut by the snap length.
    pub truncated_payload: u64,
    /// IP fragment reassembly ([`Decoder`] only).
    pub ip_reassembly: FragStats,
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

/// Decoding options.
///
/// ```toml
/// [decode]
/// vxlan_ports = [4789]     # UDP destination ports decoded as VXLAN (Linux's default is 8472)
/// geneve_ports = [6081]
/// gtp_u_ports = [2152]
/// [decode.fragments]       # see FragConfig
/// timeout_secs = 30
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeConfig {
    /// UDP destination ports carrying VXLAN (IANA: 4789).
    pub vxlan_ports: UdpPorts,
    /// UDP destination ports carrying Geneve (IANA: 6081).
    pub geneve_ports: UdpPorts,
    /// UDP destination ports carrying GTP-U (IANA: 2152).
    pub gtp_u_ports: UdpPorts,
    /// IP fragment reassembly limits.
    pub fragments: FragConfig,
}

impl DecodeConfig {
    /// The IANA ports and default reassembly limits.
    pub const DEFAULT: DecodeConfig = DecodeConfig {
        vxlan_ports: UdpPorts::one(4789),
        geneve_ports: UdpPorts::one(6081),
        gtp_u_ports: UdpPorts::one(2152),
        fragments: FragConfig::DEFAULT,
    };
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig::DEFAULT
    }
}

/// A decoder with IP fragment reassembly: holds the fragment table and the buffers reassembled
/// datagrams are decoded from, so a segment it returns may borrow either the frame or itself.
/// A fragmented tunnel packet and a fragmented packet inside a tunnel both reassemble (and
/// both at once).
pub struct Decoder {
    cfg: DecodeConfig,
    frags: FragTable,
    /// Reassembled datagrams: one for a fragmented outer packet, one for a fragmented packet
    /// inside it.
    bufs: [Vec<u8>; 2],
    stats: DecodeStats,
}

impl Decoder {
    /// A decoder with these options.
    pub fn new(cfg: DecodeConfig) -> Self {
        Decoder {
            cfg,
            frags: FragTable::new(cfg.fragments),
            bufs: [Vec::new(), Vec::new()],
            stats: DecodeStats::default(),
        }
    }

    /// Decodes one frame of link type `linktype` captured at `ts_us` (µs, capture clock: it
    /// drives fragment expiry).
    pub fn decode<'a>(
        &'a mut self,
        linktype: i32,
        frame: &'a [u8],
        ts_us: i64,
    ) -> Result<TcpSegment<'a>, Skip> {
        self.decode_in(linktype, frame, ts_us, None)
    }

    /// Decodes one frame that arrived through `outer`, a tunnel already removed by the source
    /// (the UDP listener of [`crate::source`]): the segment's tunnel metadata and flow scope
    /// start from it.
    pub fn decode_in<'a>(
        &'a mut self,
        linktype: i32,
        frame: &'a [u8],
        ts_us: i64,
        outer: Option<Tunnel>,
    ) -> Result<TcpSegment<'a>, Skip> {
        let Decoder {
            cfg,
            frags,
            bufs,
            stats,
        } = self;
        let mut ctx = Ctx::new(cfg, outer);
        let mut r = link(linktype, frame, &mut ctx);
        if let Some(f) = ctx.frag.take() {
            r = defragment(f, frags, bufs, ts_us, &mut ctx);
        }
        ctx.count(stats);
        stats.count(&r);
        r
    }

    /// Expires incomplete datagrams as of capture time `now_us` (call on idle ticks; decoding
    /// a fragment does it too).
    pub fn expire(&mut self, now_us: i64) {
        self.frags.expire(now_us);
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        let mut s = self.stats.clone();
        s.ip_reassembly = self.frags.stats().clone();
        s
    }

    /// Datagrams waiting for fragments (tombstones of discarded ones included) and the
    /// payload bytes they hold.
    pub fn pending_fragments(&self) -> (usize, usize) {
        (self.frags.len(), self.frags.held_bytes())
    }

    /// The options in use.
    pub fn config(&self) -> &DecodeConfig {
        &self.cfg
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecodeConfig::DEFAULT)
    }
}

/// Decodes one captured frame of link type `linktype` with the default options and without
/// fragment reassembly (fragments are counted and skipped). [`Decoder`] reassembles.
pub fn decode<'a>(
    linktype: i32,
    frame: &'a [u8],
    stats: &mut DecodeStats,
) -> Result<TcpSegment<'a>, Skip> {
    let mut ctx = Ctx::new(&DecodeConfig::DEFAULT, None);
    let r = link(linktype, frame, &mut ctx);
    ctx.count(stats);
    stats.count(&r);
    r
}

/// Every decoding step's result. A fragment is `Err(Skip::Fragment)` with the fragment left in
/// `Ctx::frag` for [`Decoder`] to reassemble (returning the segment itself, rather than an
/// enum of segment or fragment, spares a copy of the segment per packet).
type Res<'a> = Result<TcpSegment<'a>, Skip>;

/// A fragment and where to resume once its datagram is whole.
struct Resume<'a> {
    piece: FragPiece<'a>,
    v6: bool,
    depth: u8,
}

/// The fragment path, kept out of the per-packet one: up to two reassemblies (a fragmented
/// tunnel packet, then a fragmented packet inside it).
#[cold]
#[inline(never)]
fn defragment<'a>(
    f: Resume<'a>,
    frags: &mut FragTable,
    bufs: &'a mut [Vec<u8>; 2],
    ts_us: i64,
    ctx: &mut Ctx<'_, 'a>,
) -> Res<'a> {
    let [outer_buf, inner_buf] = bufs;
    let r = reassemble(f, frags, outer_buf, ts_us, ctx);
    let Some(f) = ctx.frag.take() else {
        return r;
    };
    let r = reassemble(f, frags, inner_buf, ts_us, ctx);
    if ctx.frag.take().is_some() {
        // Fragments inside a datagram reassembled from fragments inside another one.
        return Err(Skip::TooDeep);
    }
    r
}

fn reassemble<'a>(
    f: Resume<'a>,
    frags: &mut FragTable,
    buf: &'a mut Vec<u8>,
    ts_us: i64,
    ctx: &mut Ctx<'_, 'a>,
) -> Res<'a> {
    match frags.insert(&f.piece, ts_us, buf) {
        FragOutcome::Complete(next) => {
            let buf: &'a Vec<u8> = buf;
            let ip = (f.piece.key.src, f.piece.key.dst);
            let len = buf.len();
            upper(next, ip, buf, len, false, f.v6, true, ctx, f.depth)
        }
        FragOutcome::Held | FragOutcome::Dropped => Err(Skip::Fragment),
    }
}

const SEEN_VLAN: u16 = 1 << 0;
const SEEN_MPLS: u16 = 1 << 1;
const SEEN_PPPOE: u16 = 1 << 2;
const SEEN_VXLAN: u16 = 1 << 3;
const SEEN_GENEVE: u16 = 1 << 4;
const SEEN_GRE: u16 = 1 << 5;
const SEEN_ERSPAN: u16 = 1 << 6;
const SEEN_IPIP: u16 = 1 << 7;
const SEEN_GTPU: u16 = 1 << 8;

/// Per-frame decoding context: options, encapsulation facts gathered on the way in, and the
/// fragment met, if any.
struct Ctx<'c, 'a> {
    cfg: &'c DecodeConfig,
    vlan: Option<u16>,
    seen: u16,
    tunnel: Option<Tunnel>,
    frag: Option<Resume<'a>>,
}

impl<'c, 'a> Ctx<'c, 'a> {
    fn new(cfg: &'c DecodeConfig, tunnel: Option<Tunnel>) -> Self {
        Ctx {
            cfg,
            vlan: None,
            // A tunnel its source already removed (a VXLAN/Geneve listener) is counted like
            // one found in the frame.
            seen: tunnel.map_or(0, |t| seen_bit(t.kind)),
            tunnel,
            frag: None,
        }
    }

    /// Leaves a fragment for [`Decoder`] and stops decoding this frame.
    fn fragment(&mut self, r: Resume<'a>) -> Res<'a> {
        self.frag = Some(r);
        Err(Skip::Fragment)
    }

    fn scope(&self) -> u64 {
        self.tunnel.map_or(0, |t| t.scope)
    }

    /// Entering a tunnel found in an IP packet from `ip.0` to `ip.1`.
    fn enter(&mut self, kind: TunnelKind, id: Option<u32>, ip: (IpAddr, IpAddr)) {
        self.seen |= seen_bit(kind);
        self.vlan = None;
        match &mut self.tunnel {
            Some(t) => t.push(kind, id),
            None => self.tunnel = Some(Tunnel::new(kind, id, ip.0, ip.1)),
        }
    }

    fn count(&self, s: &mut DecodeStats) {
        if self.seen == 0 {
            return;
        }
        for (bit, c) in [
            (SEEN_VLAN, &mut s.vlan_tagged),
            (SEEN_MPLS, &mut s.mpls),
            (SEEN_PPPOE, &mut s.pppoe),
            (SEEN_VXLAN, &mut s.vxlan),
            (SEEN_GENEVE, &mut s.geneve),
            (SEEN_GRE, &mut s.gre),
            (SEEN_ERSPAN, &mut s.erspan),
            (SEEN_IPIP, &mut s.ip_in_ip),
            (SEEN_GTPU, &mut s.gtp_u),
        ] {
            if self.seen & bit != 0 {
                *c += 1;
            }
        }
    }
}

fn seen_bit(kind: TunnelKind) -> u16 {
    match kind {
        TunnelKind::Vxlan => SEEN_VXLAN,
        TunnelKind::Geneve => SEEN_GENEVE,
        TunnelKind::Gre => SEEN_GRE,
        TunnelKind::ErspanI | TunnelKind::ErspanIi | TunnelKind::ErspanIii => SEEN_ERSPAN,
        TunnelKind::IpInIp => SEEN_IPIP,
        TunnelKind::GtpU => SEEN_GTPU,
    }
}

fn link<'a>(linktype: i32, f: &'a [u8], ctx: &mut Ctx<'_, 'a>) -> Res<'a> {
    match linktype {
        linktype::ETHERNET => ether(f, ctx, 0),
        linktype::LINUX_SLL => {
            // 16-byte header; protocol type (an EtherType for IP) at offset 14.
            let ty = be16(f, 14)?;
            ether_type(ty, f.get(16..).ok_or(Skip::Malformed)?, ctx, 0)
        }
        linktype::LINUX_SLL2 => {
            // 20-byte header; protocol type first.
            let ty = be16(f, 0)?;
            ether_type(ty, f.get(20..).ok_or(Skip::Malformed)?, ctx, 0)
        }
        linktype::RAW | linktype::RAW_OLD | linktype::RAW_ALT | linktype::IPV4 | linktype::IPV6 => {
            ip(f, ctx, 0)
        }
        linktype::NULL | linktype::LOOP => {
            // The family is in the writer's byte order (NULL) or network order (LOOP); the
            // values for IPv4 (2) and IPv6 (24, 28, 30) are unambiguous either way.
            let b = f.get(..4).ok_or(Skip::Malformed)?;
            let fam = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let fam = if fam > 0xffff { fam.swap_bytes() } else { fam };
            match fam {
                2 | 24 | 28 | 30 => ip(f.get(4..).ok_or(Skip::Malformed)?, ctx, 0),
                _ => Err(Skip::NotIp),
            }
        }
        linktype::C_HDLC => {
            let ty = be16(f, 2)?;
            ether_type(ty, f.get(4..).ok_or(Skip::Malformed)?, ctx, 0)
        }
        _ => Err(Skip::UnsupportedLink),
    }
}

/// An Ethernet II frame (destination, source, EtherType).
fn ether<'a>(f: &'a [u8], ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    let ty = be16(f, 12)?;
    ether_type(ty, f.get(14..).ok_or(Skip::Malformed)?, ctx, depth)
}

/// Decodes a payload identified by an EtherType (after Ethernet, SLL, a VLAN tag, GRE, …).
fn ether_type<'a>(ty: u16, p: &'a [u8], ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    if depth > MAX_DEPTH {
        return Err(Skip::TooDeep);
    }
    match ty {
        0x0800 | 0x86dd => ip(p, ctx, depth + 1),
        // 802.1Q, 802.1ad and the pre-standard QinQ types: 2 bytes TCI, 2 bytes inner type.
        0x8100 | 0x88a8 | 0x9100 | 0x9200 => {
            let tci = be16(p, 0)?;
            ctx.seen |= SEEN_VLAN;
            ctx.vlan.get_or_insert(tci & 0x0fff);
            ether_type(
                be16(p, 2)?,
                p.get(4..).ok_or(Skip::Malformed)?,
                ctx,
                depth + 1,
            )
        }
        // MPLS unicast/multicast: 4-byte labels until the bottom-of-stack bit; the payload
        // type is not signalled: an IP version nibble, or 0 for the control word of an
        // Ethernet pseudowire (RFC 4448 §3).
        0x8847 | 0x8848 => {
            ctx.seen |= SEEN_MPLS;
            let mut off = 0usize;
            for _ in 0..=MAX_DEPTH {
                let lse = p.get(off..off + 4).ok_or(Skip::Malformed)?;
                off += 4;
                if lse[2] & 0x01 != 0 {
                    let rest = p.get(off..).ok_or(Skip::Malformed)?;
                    return match rest.first().map(|b| b >> 4) {
                        Some(4) | Some(6) => ip(rest, ctx, depth + 1),
                        Some(0) => ether(rest.get(4..).ok_or(Skip::Malformed)?, ctx, depth + 1),
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
            ctx.seen |= SEEN_PPPOE;
            let first = *p.get(6).ok_or(Skip::Malformed)?;
            let (proto, at) = if first & 1 == 1 {
                (u16::from(first), 7)
            } else {
                (be16(p, 6)?, 8)
            };
            match proto {
                0x0021 | 0x0057 => ip(p.get(at..).ok_or(Skip::Malformed)?, ctx, depth + 1),
                _ => Err(Skip::NotIp),
            }
        }
        // An Ethernet frame where an EtherType is expected (a gretap interface under
        // `tcpdump -i any`).
        tunnel::ETHERTYPE_TEB => ether(p, ctx, depth + 1),
        _ => Err(Skip::NotIp),
    }
}

/// Decodes an IPv4 or IPv6 packet.
fn ip<'a>(p: &'a [u8], ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    if depth > MAX_DEPTH {
        return Err(Skip::TooDeep);
    }
    match p.first().map(|b| b >> 4) {
        Some(4) => ipv4(p, ctx, depth),
        Some(6) => ipv6(p, ctx, depth),
        _ => Err(Skip::Malformed),
    }
}

/// IPv4 (RFC 791 §3.1). A total length below the header length (0 in captures of
/// TSO-offloaded sends) falls back to the captured length; one above it means the capture
/// was cut.
fn ipv4<'a>(p: &'a [u8], ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    let h = p.get(..20).ok_or(Skip::Malformed)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return Err(Skip::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let (end, declared, incomplete) = if total < ihl {
        (p.len(), p.len() - ihl, false)
    } else if total > p.len() {
        (p.len(), total - ihl, true)
    } else {
        (total, total - ihl, false)
    };
    let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let proto = h[9];
    let payload = &p[ihl..end];
    let ff = u16::from_be_bytes([h[6], h[7]]);
    if ff & 0x3fff != 0 {
        // MF set or a non-zero offset: a fragment.
        return ctx.fragment(Resume {
            piece: FragPiece {
                key: FragKey {
                    src,
                    dst,
                    id: u32::from(u16::from_be_bytes([h[4], h[5]])),
                    proto,
                    scope: ctx.scope(),
                },
                offset: u32::from(ff & 0x1fff) * 8,
                more: ff & 0x2000 != 0,
                data: payload,
                truncated: incomplete,
                next: proto,
            },
            v6: false,
            depth,
        });
    }
    upper(
        proto,
        (src, dst),
        payload,
        declared,
        incomplete,
        false,
        false,
        ctx,
        depth,
    )
}

/// IPv6 (RFC 8200 §3). A payload length of 0 with bytes following (a jumbogram, or a
/// TSO-offloaded send) falls back to the captured length.
fn ipv6<'a>(p: &'a [u8], ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    let h = p.get(..40).ok_or(Skip::Malformed)?;
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let rest = &p[40..];
    let (payload, declared, incomplete) = if plen == 0 && !rest.is_empty() {
        (rest, rest.len(), false)
    } else if plen > rest.len() {
        (rest, plen, true)
    } else {
        (&rest[..plen], plen, false)
    };
    let mut a = [0u8; 16];
    a.copy_from_slice(&h[8..24]);
    let src = IpAddr::V6(Ipv6Addr::from(a));
    a.copy_from_slice(&h[24..40]);
    let dst = IpAddr::V6(Ipv6Addr::from(a));
    upper(
        h[6],
        (src, dst),
        payload,
        declared,
        incomplete,
        true,
        false,
        ctx,
        depth,
    )
}

/// What follows an IP header: extension headers (IPv6; AH for both), then TCP, UDP and its
/// tunnels, GRE, or IP in IP. `declared` is the payload length on the wire, `incomplete`
/// whether the capture holds less.
#[allow(clippy::too_many_arguments)]
fn upper<'a>(
    mut next: u8,
    addrs: (IpAddr, IpAddr),
    mut p: &'a [u8],
    mut declared: usize,
    incomplete: bool,
    v6: bool,
    reassembled: bool,
    ctx: &mut Ctx<'_, 'a>,
    depth: u8,
) -> Res<'a> {
    for _ in 0..MAX_EXT_HEADERS {
        let skip = match next {
            6 => return tcp(addrs, p, declared, incomplete, ctx),
            17 => return udp(addrs, p, ctx, depth),
            47 => {
                let d = tunnel::gre(p)?;
                return decap(d, addrs, ctx, depth);
            }
            4 | 41 => {
                let want = if next == 4 { 4 } else { 6 };
                if p.first().map(|b| b >> 4) != Some(want) {
                    return Err(Skip::Malformed);
                }
                ctx.enter(TunnelKind::IpInIp, None, addrs);
                return ip(p, ctx, depth + 1);
            }
            // Authentication header (RFC 4302 §2.2): length in 4-byte words minus 2.
            51 => (usize::from(*p.get(1).ok_or(Skip::Malformed)?) + 2) * 4,
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6, experimental
            // (RFC 8200 §4; RFC 7045): length in 8-byte units not counting the first.
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 if v6 => {
                (usize::from(*p.get(1).ok_or(Skip::Malformed)?) + 1) * 8
            }
            // Fragment header (RFC 8200 §4.5).
            44 if v6 => {
                let h = p.get(..8).ok_or(Skip::Malformed)?;
                let off_flags = u16::from_be_bytes([h[2], h[3]]);
                let offset = u32::from(off_flags >> 3) * 8;
                let more = off_flags & 1 != 0;
                if offset == 0 && !more {
                    // An atomic fragment (RFC 6946): a whole packet, processed as such.
                    8
                } else if reassembled {
                    return Err(Skip::Malformed);
                } else {
                    return ctx.fragment(Resume {
                        piece: FragPiece {
                            key: FragKey {
                                src: addrs.0,
                                dst: addrs.1,
                                id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                                proto: 0,
                                scope: ctx.scope(),
                            },
                            offset,
                            more,
                            data: &p[8..],
                            truncated: incomplete,
                            next: h[0],
                        },
                        v6: true,
                        depth,
                    });
                }
            }
            _ => return Err(Skip::NotTcp),
        };
        next = *p.first().ok_or(Skip::Malformed)?;
        p = p.get(skip..).ok_or(Skip::Malformed)?;
        declared = declared.saturating_sub(skip);
    }
    Err(Skip::TooDeep)
}

/// UDP (RFC 768): only tunnels, chosen by destination port, are of interest.
fn udp<'a>(addrs: (IpAddr, IpAddr), p: &'a [u8], ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    let h = p.get(..8).ok_or(Skip::Malformed)?;
    let dport = u16::from_be_bytes([h[2], h[3]]);
    let ulen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // A length that disagrees with the packet (0 under offload, or a cut capture) falls
    // back to what is there.
    let body = if (8..=p.len()).contains(&ulen) {
        &p[8..ulen]
    } else {
        &p[8..]
    };
    let cfg = ctx.cfg;
    let d = if cfg.vxlan_ports.contains(dport) {
        tunnel::vxlan(body)?
    } else if cfg.geneve_ports.contains(dport) {
        tunnel::geneve(body)?
    } else if cfg.gtp_u_ports.contains(dport) {
        tunnel::gtp_u(body)?
    } else {
        return Err(Skip::NotTcp);
    };
    decap(d, addrs, ctx, depth)
}

/// Goes through a tunnel header into what it carries.
fn decap<'a>(d: Decap<'a>, addrs: (IpAddr, IpAddr), ctx: &mut Ctx<'_, 'a>, depth: u8) -> Res<'a> {
    ctx.enter(d.kind, d.id, addrs);
    let depth = depth + 1;
    match d.inner {
        Inner::Ethernet => ether(d.payload, ctx, depth),
        Inner::EtherType(ty) => ether_type(ty, d.payload, ctx, depth),
        Inner::Ip => ip(d.payload, ctx, depth),
    }
}

/// TCP (RFC 9293 §3.1): data offset in 4-byte words, at least 5.
fn tcp<'a>(
    addrs: (IpAddr, IpAddr),
    p: &'a [u8],
    declared: usize,
    incomplete: bool,
    ctx: &Ctx<'_, '_>,
) -> Res<'a> {
    let h = p.get(..20).ok_or(Skip::Malformed)?;
    let hdr_len = usize::from(h[12] >> 4) * 4;
    if hdr_len < 20 {
        return Err(Skip::Malformed);
    }
    let data = p.get(hdr_len..).ok_or(Skip::Malformed)?;
    let wire_len = if incomplete {
        declared.saturating_sub(hdr_len).max(data.len())
    } else {
        data.len()
    };
    let flags = h[13];
    Ok(TcpSegment {
        src: addrs.0,
        dst: addrs.1,
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: TcpFlags {
            syn: flags & 0x02 != 0,
            ack: flags & 0x10 != 0,
            fin: flags & 0x01 != 0,
            rst: flags & 0x04 != 0,
        },
        payload: data,
        wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
        vlan: ctx.vlan,
        tunnel: ctx.tunnel,
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

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];
    const VTEP1: [u8; 4] = [192, 0, 2, 1];
    const VTEP2: [u8; 4] = [192, 0, 2, 2];

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
            .ipv4(A, B, 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn tcp_frame_v6(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 80, 1000, 65535);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ty.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An IPv4 header (no options) with `ff` = flags and fragment offset in 8-byte units.
    fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], id: u16, ff: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&ff.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0x20; 16]);
        p.extend_from_slice(&[0x21; 16]);
        p.extend_from_slice(payload);
        p
    }

    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = 49152u16.to_be_bytes().to_vec();
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn vxlan_hdr(vni: u32) -> Vec<u8> {
        let v = vni.to_be_bytes();
        vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0]
    }

    /// `inner` (an Ethernet frame) in VXLAN `vni` from VTEP1 to VTEP2.
    fn in_vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut x = vxlan_hdr(vni);
        x.extend_from_slice(inner);
        eth(0x0800, &v4(17, VTEP1, VTEP2, 1, 0x4000, &udp(4789, &x)))
    }

    fn in_gre(gre_hdr: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut g = gre_hdr.to_vec();
        g.extend_from_slice(inner);
        eth(0x0800, &v4(47, VTEP1, VTEP2, 1, 0, &g))
    }

    fn ip_of(frame: &[u8]) -> &[u8] {
        &frame[14..]
    }

    fn one(lt: i32, f: &[u8]) -> (Result<TcpSegment<'_>, Skip>, DecodeStats) {
        let mut st = DecodeStats::default();
        let r = decode(lt, f, &mut st);
        (r, st)
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
        assert_eq!(s.tunnel, None);
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
    fn tso_zero_lengths_fall_back_to_the_capture() {
        let mut f = tcp_frame(b"abcdef");
        f[16] = 0;
        f[17] = 0; // IPv4 total length 0
        let s = decode(linktype::ETHERNET, &f, &mut DecodeStats::default()).unwrap();
        assert_eq!(s.payload, b"abcdef");
        let mut f6 = tcp_frame_v6(b"xyz");
        f6[18] = 0;
        f6[19] = 0; // IPv6 payload length 0
        let s = decode(linktype::ETHERNET, &f6, &mut DecodeStats::default()).unwrap();
        assert_eq!(s.payload, b"xyz");
    }

    #[test]
    fn ipv6_extension_headers_and_atomic_fragment() {
        let f = tcp_frame_v6(b"six");
        let tcp = &f[14 + 40..];
        // hop-by-hop (8 bytes) → destination options (16 bytes) → atomic fragment → TCP
        let mut p = vec![60, 0, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&[44, 1]);
        p.extend_from_slice(&[0; 14]);
        p.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 9]);
        p.extend_from_slice(tcp);
        let frame = eth(0x86dd, &v6(0, &p));
        let (r, _) = one(linktype::ETHERNET, &frame);
        let s = r.unwrap();
        assert_eq!(s.payload, b"six");
        assert_eq!(s.src, IpAddr::V6(Ipv6Addr::from([0x20; 16])));
        // ESP: encrypted, not TCP
        let esp = eth(0x86dd, &v6(50, &[0; 16]));
        let (r, st) = one(linktype::ETHERNET, &esp);
        assert_eq!((r, st.not_tcp), (Err(Skip::NotTcp), 1));
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
    fn mpls_ethernet_pseudowire_with_control_word() {
        let inner = tcp_frame(b"pw");
        let mut p = vec![0x00, 0x01, 0x01, 0x40, 0, 0, 0, 0]; // label, BoS; control word
        p.extend_from_slice(&inner);
        let f = eth(0x8847, &p);
        assert_eq!(one(linktype::ETHERNET, &f).0.unwrap().payload, b"pw");
        // an unknown payload nibble is not guessed at
        p[4] = 0x10;
        assert_eq!(
            one(linktype::ETHERNET, &eth(0x8847, &p)).0,
            Err(Skip::NotIp)
        );
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
    fn sll2_null_raw_and_cisco_hdlc() {
        let inner = tcp_frame(b"abc");
        let ip = &inner[14..];
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        let mut lo = 2u32.to_be_bytes().to_vec();
        lo.extend_from_slice(ip);
        let mut hdlc = vec![0x0f, 0x00, 0x08, 0x00];
        hdlc.extend_from_slice(ip);
        let mut st = DecodeStats::default();
        for (lt, f) in [
            (linktype::LINUX_SLL2, &sll2[..]),
            (linktype::NULL, &null[..]),
            (linktype::LOOP, &lo[..]),
            (linktype::RAW, ip),
            (linktype::C_HDLC, &hdlc[..]),
        ] {
            assert_eq!(
                decode(lt, f, &mut st).unwrap().payload,
                b"abc",
                "linktype {lt}"
            );
        }
        // Cisco SLARP keepalive
        hdlc[2..4].copy_from_slice(&[0x80, 0x35]);
        assert_eq!(decode(linktype::C_HDLC, &hdlc, &mut st), Err(Skip::NotIp));
    }

    #[test]
    fn vxlan_yields_the_inner_tuple_and_the_tunnel() {
        let inner = tcp_frame(b"hello");
        let f = in_vxlan(42, &inner);
        let (r, st) = one(linktype::ETHERNET, &f);
        let s = r.unwrap();
        assert_eq!((s.src, s.dst), (IpAddr::from(A), IpAddr::from(B)));
        assert_eq!((s.sport, s.dport, s.payload), (40000, 80, &b"hello"[..]));
        let t = s.tunnel.unwrap();
        assert_eq!((t.kind, t.id, t.layers), (TunnelKind::Vxlan, Some(42), 1));
        assert_eq!(
            (t.outer_src, t.outer_dst),
            (IpAddr::from(VTEP1), IpAddr::from(VTEP2))
        );
        assert_ne!(t.scope, 0);
        assert_eq!((st.vxlan, st.tcp), (1, 1));
        // another VNI, another scope
        let f2 = in_vxlan(43, &inner);
        let t2 = one(linktype::ETHERNET, &f2).0.unwrap().tunnel.unwrap();
        assert_ne!(t.scope, t2.scope);
    }

    #[test]
    fn vxlan_only_on_configured_ports() {
        let inner = tcp_frame(b"hello");
        let mut x = vxlan_hdr(7);
        x.extend_from_slice(&inner);
        let f = eth(0x0800, &v4(17, VTEP1, VTEP2, 1, 0, &udp(8472, &x)));
        let (r, st) = one(linktype::ETHERNET, &f);
        assert_eq!((r, st.not_tcp, st.vxlan), (Err(Skip::NotTcp), 1, 0));
        let cfg = DecodeConfig {
            vxlan_ports: UdpPorts::new(&[4789, 8472]).unwrap(),
            ..DecodeConfig::default()
        };
        let mut d = Decoder::new(cfg);
        assert_eq!(
            d.decode(linktype::ETHERNET, &f, 0).unwrap().payload,
            b"hello"
        );
        assert_eq!(d.stats().vxlan, 1);
    }

    #[test]
    fn underlay_vlan_is_not_the_flow_vlan() {
        // underlay tagged 100, inner frame tagged 7 / untagged
        let plain = tcp_frame(b"v");
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&plain[12..]);
        for (inner, want) in [(&tagged, Some(7)), (&plain, None)] {
            let f = in_vxlan(1, inner);
            let mut under = f[..12].to_vec();
            under.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
            under.extend_from_slice(&f[12..]);
            let (r, st) = one(linktype::ETHERNET, &under);
            assert_eq!(r.unwrap().vlan, want);
            assert_eq!(st.vlan_tagged, 1);
        }
    }

    #[test]
    fn geneve_with_options_and_ip_payload() {
        let inner = tcp_frame(b"gwlb");
        // 3 option words (one 12-byte AWS-style option), protocol IPv4, VNI 0
        let mut g = vec![0x03, 0x00, 0x08, 0x00, 0, 0, 0, 0];
        g.extend_from_slice(&[0x01, 0x08, 0x01, 0x02, 1, 2, 3, 4, 5, 6, 7, 8]);
        g.extend_from_slice(ip_of(&inner));
        let f = eth(0x0800, &v4(17, VTEP1, VTEP2, 1, 0, &udp(6081, &g)));
        let (r, st) = one(linktype::ETHERNET, &f);
        let s = r.unwrap();
        assert_eq!(s.payload, b"gwlb");
        assert_eq!(s.tunnel.unwrap().kind, TunnelKind::Geneve);
        assert_eq!(st.geneve, 1);
        // protocol 0x6558: an Ethernet frame
        let mut g2 = vec![0x00, 0x00, 0x65, 0x58, 0, 0, 5, 0];
        g2.extend_from_slice(&inner);
        let f2 = eth(0x0800, &v4(17, VTEP1, VTEP2, 1, 0, &udp(6081, &g2)));
        assert_eq!(
            one(linktype::ETHERNET, &f2).0.unwrap().tunnel.unwrap().id,
            Some(5)
        );
    }

    #[test]
    fn gre_teb_ip_and_erspan_types() {
        let inner = tcp_frame(b"gre");
        type Case<'a> = (Vec<u8>, &'a [u8], TunnelKind, Option<u32>);
        let cases: Vec<Case<'_>> = vec![
            (vec![0x00, 0x00, 0x65, 0x58], &inner, TunnelKind::Gre, None),
            (
                vec![0x20, 0x00, 0x08, 0x00, 0, 0, 0, 9],
                ip_of(&inner),
                TunnelKind::Gre,
                Some(9),
            ),
            (
                vec![0x00, 0x00, 0x88, 0xbe],
                &inner,
                TunnelKind::ErspanI,
                None,
            ),
            (
                vec![
                    0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0x64, 0x00, 0x2a, 0, 0, 0, 0,
                ],
                &inner,
                TunnelKind::ErspanIi,
                Some(42),
            ),
            (
                {
                    let mut h = vec![0x00, 0x00, 0x22, 0xeb, 0x20, 0x64, 0x00, 0x2b];
                    h.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // O: sub-header follows
                    h.extend_from_slice(&[0xab; 8]);
                    h
                },
                &inner,
                TunnelKind::ErspanIii,
                Some(43),
            ),
        ];
        for (hdr, payload, kind, id) in cases {
            let f = in_gre(&hdr, payload);
            let (r, st) = one(linktype::ETHERNET, &f);
            let s = r.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(s.payload, b"gre", "{kind:?}");
            let t = s.tunnel.unwrap();
            assert_eq!((t.kind, t.id), (kind, id));
            let counted = if kind == TunnelKind::Gre {
                st.gre
            } else {
                st.erspan
            };
            assert_eq!(counted, 1, "{kind:?}");
        }
    }

    #[test]
    fn ip_in_ip_all_four_ways() {
        let t4 = tcp_frame(b"4");
        let t6 = tcp_frame_v6(b"6");
        let cases = [
            eth(0x0800, &v4(4, VTEP1, VTEP2, 1, 0, ip_of(&t4))),
            eth(0x0800, &v4(41, VTEP1, VTEP2, 1, 0, ip_of(&t6))),
            eth(0x86dd, &v6(4, ip_of(&t4))),
            eth(0x86dd, &v6(41, ip_of(&t6))),
        ];
        for (i, f) in cases.iter().enumerate() {
            let (r, st) = one(linktype::ETHERNET, f);
            let s = r.unwrap();
            assert_eq!(s.tunnel.unwrap().kind, TunnelKind::IpInIp, "case {i}");
            assert_eq!(s.tunnel.unwrap().scope, 0);
            assert_eq!(st.ip_in_ip, 1);
        }
        // protocol 4 announcing IPv4 but carrying IPv6
        let bad = eth(0x0800, &v4(4, VTEP1, VTEP2, 1, 0, ip_of(&t6)));
        assert_eq!(one(linktype::ETHERNET, &bad).0, Err(Skip::Malformed));
    }

    #[test]
    fn gtp_u_user_plane() {
        let t4 = tcp_frame(b"mobile");
        let mut g = vec![0x30, 0xff];
        g.extend_from_slice(&(ip_of(&t4).len() as u16).to_be_bytes());
        g.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        g.extend_from_slice(ip_of(&t4));
        let f = eth(0x0800, &v4(17, VTEP1, VTEP2, 1, 0, &udp(2152, &g)));
        let (r, st) = one(linktype::ETHERNET, &f);
        let s = r.unwrap();
        assert_eq!(s.payload, b"mobile");
        let t = s.tunnel.unwrap();
        assert_eq!(
            (t.kind, t.id, t.scope),
            (TunnelKind::GtpU, Some(0x1234_5678), 0)
        );
        assert_eq!(st.gtp_u, 1);
    }

    #[test]
    fn nested_tunnels_keep_the_outermost_and_scope_both() {
        // VXLAN 5 inside GRE inside VXLAN 9
        let inner = tcp_frame(b"deep");
        let mid = in_vxlan(5, &inner);
        let mut g = vec![0x00, 0x00, 0x65, 0x58];
        g.extend_from_slice(&mid);
        let gre_frame = eth(0x0800, &v4(47, [172, 16, 0, 1], [172, 16, 0, 2], 1, 0, &g));
        let f = in_vxlan(9, &gre_frame);
        let (r, st) = one(linktype::ETHERNET, &f);
        let s = r.unwrap();
        let t = s.tunnel.unwrap();
        assert_eq!((t.kind, t.id, t.layers), (TunnelKind::Vxlan, Some(9), 3));
        assert_eq!(t.outer_src, IpAddr::from(VTEP1));
        assert_eq!((st.vxlan, st.gre), (1, 1));
        let only9 = in_vxlan(9, &inner);
        let only9 = one(linktype::ETHERNET, &only9).0.unwrap();
        assert_ne!(t.scope, only9.tunnel.unwrap().scope);
    }

    #[test]
    fn outer_tunnel_from_the_source_seeds_the_metadata() {
        let f = tcp_frame(b"lst");
        let t = Tunnel::new(
            TunnelKind::Vxlan,
            Some(3),
            IpAddr::from(VTEP1),
            IpAddr::from(VTEP2),
        );
        let mut d = Decoder::default();
        let s = d.decode_in(linktype::ETHERNET, &f, 0, Some(t)).unwrap();
        assert_eq!(s.tunnel, Some(t));
    }

    /// Splits the IPv4 packet `ip` into fragments of at most `mtu` payload bytes.
    fn fragment_v4(ip: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let payload = &ip[ihl..];
        let id = u16::from_be_bytes([ip[4], ip[5]]);
        let mut src = [0; 4];
        src.copy_from_slice(&ip[12..16]);
        let mut dst = [0; 4];
        dst.copy_from_slice(&ip[16..20]);
        let step = mtu / 8 * 8;
        payload
            .chunks(step)
            .enumerate()
            .map(|(i, c)| {
                let more = (i + 1) * step < payload.len();
                let ff = ((i * step / 8) as u16) | if more { 0x2000 } else { 0 };
                v4(ip[9], src, dst, id, ff, c)
            })
            .collect()
    }

    #[test]
    fn fragmented_packet_reassembles_in_any_order() {
        let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let f = tcp_frame(&body);
        let frags = fragment_v4(ip_of(&f), 1000);
        assert_eq!(frags.len(), 4);
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            let mut d = Decoder::default();
            for (n, &i) in order.iter().enumerate() {
                let fr = eth(0x0800, &frags[i]);
                let r = d.decode(linktype::ETHERNET, &fr, n as i64);
                if n < 3 {
                    assert_eq!(r, Err(Skip::Fragment));
                } else {
                    let s = r.unwrap();
                    assert_eq!(s.payload, &body[..]);
                    assert_eq!((s.seq, s.wire_len), (1000, 3000));
                }
            }
            let st = d.stats();
            assert_eq!(
                (st.fragments, st.tcp, st.ip_reassembly.reassembled),
                (3, 1, 1)
            );
        }
        // without a Decoder every fragment is skipped
        let mut st = DecodeStats::default();
        for fr in &frags {
            assert_eq!(decode(linktype::RAW, fr, &mut st), Err(Skip::Fragment));
        }
        assert_eq!(st.fragments, 4);
    }

    #[test]
    fn fragmented_outer_tunnel_and_fragmented_inner_packet() {
        let body: Vec<u8> = (0..2500u32).map(|i| (i % 13) as u8).collect();
        let inner = tcp_frame(&body);
        // the inner packet fragmented, each fragment in VXLAN (same VNI)
        let inner_frags = fragment_v4(ip_of(&inner), 1200);
        let mut d = Decoder::default();
        let mut got = None;
        for (n, fr) in inner_frags.iter().rev().enumerate() {
            let f = in_vxlan(7, &eth(0x0800, fr));
            if let Ok(s) = d.decode(linktype::ETHERNET, &f, n as i64) {
                assert_eq!(s.tunnel.unwrap().id, Some(7));
                got = Some(s.payload.to_vec());
            }
        }
        assert_eq!(got.as_deref(), Some(&body[..]));
        // the whole VXLAN packet fragmented by the underlay
        let outer = in_vxlan(7, &inner);
        let outer_frags = fragment_v4(ip_of(&outer), 800);
        let mut d = Decoder::default();
        let mut got = None;
        for (n, fr) in outer_frags.iter().enumerate() {
            if let Ok(s) = d.decode(linktype::ETHERNET, &eth(0x0800, fr), n as i64) {
                assert_eq!(s.tunnel.unwrap().kind, TunnelKind::Vxlan);
                got = Some(s.payload.to_vec());
            }
        }
        assert_eq!(got.as_deref(), Some(&body[..]));
        assert_eq!(d.stats().vxlan, 1);
        // both: inner fragments inside VXLAN packets that are themselves fragmented
        let mut d = Decoder::default();
        let mut got = None;
        let mut n = 0;
        let mut outer_reassemblies = 0;
        for fr in inner_frags.iter() {
            let outer = in_vxlan(7, &eth(0x0800, fr));
            let ofrs = fragment_v4(ip_of(&outer), 512);
            if ofrs.len() > 1 {
                outer_reassemblies += 1;
            }
            for ofr in ofrs.iter().rev() {
                n += 1;
                if let Ok(s) = d.decode(linktype::ETHERNET, &eth(0x0800, ofr), n) {
                    got = Some(s.payload.to_vec());
                }
            }
        }
        assert_eq!(got.as_deref(), Some(&body[..]));
        assert_eq!(outer_reassemblies, 2); // the last inner fragment is small
        assert_eq!(d.stats().ip_reassembly.reassembled, outer_reassemblies + 1);
    }

    #[test]
    fn same_inner_fragments_in_two_vnis_stay_apart() {
        let body = vec![b'a'; 2000];
        let inner = tcp_frame(&body);
        let frags = fragment_v4(ip_of(&inner), 1200);
        assert_eq!(frags.len(), 2);
        let mut d = Decoder::default();
        // first half in VNI 1, second in VNI 2: no datagram is complete
        assert!(d
            .decode(linktype::ETHERNET, &in_vxlan(1, &eth(0x0800, &frags[0])), 0)
            .is_err());
        assert!(d
            .decode(linktype::ETHERNET, &in_vxlan(2, &eth(0x0800, &frags[1])), 0)
            .is_err());
        assert_eq!(d.stats().ip_reassembly.reassembled, 0);
        assert!(d
            .decode(linktype::ETHERNET, &in_vxlan(1, &eth(0x0800, &frags[1])), 0)
            .is_ok());
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        let body: Vec<u8> = (0..2000u32).map(|i| (i % 7) as u8).collect();
        let f = tcp_frame_v6(&body);
        let tcp = &f[14 + 40..];
        let cut = 1024;
        let mk = |off: usize, more: bool, data: &[u8]| {
            let mut p = vec![6, 0];
            p.extend_from_slice(&(((off / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
            p.extend_from_slice(&0xabcdu32.to_be_bytes());
            p.extend_from_slice(data);
            eth(0x86dd, &v6(44, &p))
        };
        let a = mk(0, true, &tcp[..cut]);
        let b = mk(cut, false, &tcp[cut..]);
        let mut d = Decoder::default();
        assert_eq!(d.decode(linktype::ETHERNET, &b, 0), Err(Skip::Fragment));
        let s = d.decode(linktype::ETHERNET, &a, 1).unwrap();
        assert_eq!(s.payload, &body[..]);
        // a second copy overlapping with other bytes poisons the datagram
        let mut d = Decoder::default();
        let mut evil = tcp[..cut].to_vec();
        evil[100] ^= 1;
        assert!(d.decode(linktype::ETHERNET, &a, 0).is_err());
        assert!(d
            .decode(linktype::ETHERNET, &mk(0, true, &evil), 0)
            .is_err());
        assert!(d.decode(linktype::ETHERNET, &b, 0).is_err());
        let st = d.stats();
        assert_eq!((st.ip_reassembly.overlaps, st.tcp), (1, 0));
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

    #[test]
    fn endless_tunnels_stop_at_the_depth_limit() {
        let mut p = ip_of(&tcp_frame(b"x")).to_vec();
        for _ in 0..=MAX_DEPTH {
            p = v4(4, VTEP1, VTEP2, 1, 0, &p);
        }
        assert_eq!(one(linktype::RAW, &p).0, Err(Skip::TooDeep));
        // a few layers are fine
        let mut q = ip_of(&tcp_frame(b"x")).to_vec();
        for _ in 0..4 {
            q = v4(4, VTEP1, VTEP2, 1, 0, &q);
        }
        assert_eq!(one(linktype::RAW, &q).0.unwrap().tunnel.unwrap().layers, 4);
    }

    #[test]
    fn every_cut_of_every_tunnel_is_handled() {
        let inner = tcp_frame(b"payload bytes");
        let frames = [
            in_vxlan(1, &inner),
            in_gre(
                &[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0],
                &inner,
            ),
            in_gre(
                &[0xb0, 0, 0x65, 0x58, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
                &inner,
            ),
            eth(
                0x86dd,
                &v6(41, &v6(6, &tcp_frame_v6(b"payload bytes")[54..])),
            ),
        ];
        let mut d = Decoder::default();
        for f in &frames {
            for n in 0..=f.len() {
                let _ = d.decode(linktype::ETHERNET, &f[..n], 0);
            }
            // and every single-byte corruption
            for i in 0..f.len() {
                let mut g = f.clone();
                g[i] ^= 0xff;
                let _ = d.decode(linktype::ETHERNET, &g, 0);
            }
            let r = d.decode(linktype::ETHERNET, f, 0);
            assert_eq!(r.map(|s| s.payload), Ok(&b"payload bytes"[..]));
        }
    }
}
