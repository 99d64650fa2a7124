//! Tunnel and mirror encapsulations: the header parsers, and the [`Tunnel`] metadata a decoded
//! segment keeps about the outermost tunnel it came through.
//!
//! Owns the byte layouts of VXLAN (RFC 7348 §5), Geneve (RFC 8926 §3), GRE (RFC 2784 §2 with
//! the key and sequence extensions of RFC 2890 §2), ERSPAN types I, II and III
//! (draft-foschiano-erspan-03 §4; type I is GRE protocol 0x88BE without the sequence bit and
//! without an ERSPAN header) and GTP-U (3GPP TS 29.281 §5). Each parser is a pure function over
//! the bytes after the outer UDP or IP header and says what follows ([`Inner`]) and where; the
//! walk through the layers, the depth limit and the counters live in [`crate::decode`].
//!
//! Receivers are lenient where a sensor gains from it: reserved bits (VXLAN's, Geneve's
//! critical-option bit) are ignored, since the packet is already on the wire and the mirror
//! target only reads it.
use crate::decode::Skip;
use std::net::IpAddr;

/// The kinds of tunnel the decoder walks through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelKind {
    /// VXLAN (RFC 7348): AWS VPC Traffic Mirroring, Azure vTAP, most overlays.
    Vxlan,
    /// Geneve (RFC 8926): AWS Gateway Load Balancer, OVN.
    Geneve,
    /// Plain GRE (RFC 2784/2890) carrying Ethernet, IP or MPLS.
    Gre,
    /// ERSPAN type I: GRE protocol 0x88BE without an ERSPAN header.
    ErspanI,
    /// ERSPAN type II (GRE protocol 0x88BE with a sequence number).
    ErspanIi,
    /// ERSPAN type III (GRE protocol 0x22EB).
    ErspanIii,
    /// IP in IP: IPv4 or IPv6 inside IPv4 or IPv6 (IP protocols 4 and 41).
    IpInIp,
    /// GTP-U (3GPP TS 29.281), the user plane of mobile cores.
    GtpU,
}

impl TunnelKind {
    /// Short lowercase name, as written in observations and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::ErspanI => "erspan_i",
            TunnelKind::ErspanIi => "erspan_ii",
            TunnelKind::ErspanIii => "erspan_iii",
            TunnelKind::IpInIp => "ip_in_ip",
            TunnelKind::GtpU => "gtp_u",
        }
    }

    /// Whether this kind's id names a network segment that both directions of a connection
    /// share (a VNI, an ERSPAN session), so it may safely separate flows. A GRE key may differ
    /// per direction and a GTP-U TEID always does: keying flows by them would split every
    /// connection in two.
    pub fn id_names_segment(self) -> bool {
        matches!(
            self,
            TunnelKind::Vxlan | TunnelKind::Geneve | TunnelKind::ErspanIi | TunnelKind::ErspanIii
        )
    }

    fn bit(self) -> u8 {
        self as u8
    }
}

/// The outermost tunnel a segment came through. `Copy` and allocation-free: it rides along
/// with every decoded segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Tunnel {
    /// Kind of the outermost tunnel.
    pub kind: TunnelKind,
    /// Its identifier: VXLAN/Geneve VNI, GRE key, ERSPAN session id, GTP-U TEID.
    pub id: Option<u32>,
    /// Source address of the packet carrying the tunnel (the mirror source, VTEP, GRE peer).
    pub outer_src: IpAddr,
    /// Destination address of the packet carrying the tunnel (the mirror target).
    pub outer_dst: IpAddr,
    /// Tunnels crossed, outermost included (≥ 1).
    pub layers: u8,
    /// The network segment the inner packet belongs to: a combination of the ids of every
    /// crossed layer whose id names a segment ([`TunnelKind::id_names_segment`]); 0 when none
    /// does. Equal for both directions of a connection; the flow table keys on it.
    #[serde(skip)]
    pub scope: u64,
}

impl Tunnel {
    /// The metadata of a first (outermost) tunnel layer.
    pub fn new(kind: TunnelKind, id: Option<u32>, outer_src: IpAddr, outer_dst: IpAddr) -> Self {
        Tunnel {
            kind,
            id,
            outer_src,
            outer_dst,
            layers: 1,
            scope: scope_with(0, kind, id),
        }
    }

    /// Records one more (inner) layer: the outermost metadata stays, the scope takes the
    /// inner id in.
    pub fn push(&mut self, kind: TunnelKind, id: Option<u32>) {
        self.layers = self.layers.saturating_add(1);
        self.scope = scope_with(self.scope, kind, id);
    }
}

/// Folds a layer's id into a scope. Distinct (kind, id) sequences give distinct scopes except
/// with negligible (2^-64) probability; a layer without a segment id leaves it unchanged.
fn scope_with(scope: u64, kind: TunnelKind, id: Option<u32>) -> u64 {
    let Some(id) = id.filter(|_| kind.id_names_segment()) else {
        return scope;
    };
    let x = (u64::from(kind.bit()) << 32 | u64::from(id)) + 1;
    let mut h = (scope ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(x);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) | 1
}

/// A small fixed set of UDP destination ports (at most [`UdpPorts::MAX`]), `Copy` so the
/// decoder's options cost nothing to carry and a lookup is a scan of a few words.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UdpPorts {
    ports: [u16; UdpPorts::MAX],
    len: u8,
}

/// A port list [`UdpPorts`] cannot hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    /// More ports than [`UdpPorts::MAX`].
    #[error("at most {max} UDP ports per tunnel kind, got {got}")]
    TooMany {
        /// The limit.
        max: usize,
        /// Ports given.
        got: usize,
    },
    /// Port 0 is not a destination port.
    #[error("UDP port 0 cannot carry a tunnel")]
    Zero,
}

impl UdpPorts {
    /// Most ports in a set.
    pub const MAX: usize = 8;
    /// No port: the tunnel kind is not decoded.
    pub const NONE: UdpPorts = UdpPorts {
        ports: [0; UdpPorts::MAX],
        len: 0,
    };

    /// A set of one port.
    pub const fn one(port: u16) -> Self {
        let mut ports = [0; UdpPorts::MAX];
        ports[0] = port;
        UdpPorts { ports, len: 1 }
    }

    /// A set of up to [`UdpPorts::MAX`] non-zero ports.
    pub fn new(list: &[u16]) -> Result<Self, PortsError> {
        if list.len() > UdpPorts::MAX {
            return Err(PortsError::TooMany {
                max: UdpPorts::MAX,
                got: list.len(),
            });
        }
        if list.contains(&0) {
            return Err(PortsError::Zero);
        }
        let mut ports = [0; UdpPorts::MAX];
        ports[..list.len()].copy_from_slice(list);
        Ok(UdpPorts {
            ports,
            len: list.len() as u8,
        })
    }

    /// Whether `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.as_slice().contains(&port)
    }

    /// The ports.
    pub fn as_slice(&self) -> &[u16] {
        &self.ports[..usize::from(self.len).min(UdpPorts::MAX)]
    }
}

impl std::fmt::Debug for UdpPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// What follows a tunnel header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// An Ethernet II frame.
    Ethernet,
    /// A payload identified by an EtherType (IPv4, IPv6, MPLS, a VLAN tag, …).
    EtherType(u16),
    /// An IP packet (version from its first nibble).
    Ip,
}

/// A parsed tunnel header: what it is, what follows and the bytes that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap<'a> {
    /// Kind of tunnel.
    pub kind: TunnelKind,
    /// VNI, GRE key, ERSPAN session id or TEID.
    pub id: Option<u32>,
    /// What `payload` holds.
    pub inner: Inner,
    /// The encapsulated bytes.
    pub payload: &'a [u8],
}

/// Transparent Ethernet bridging: an Ethernet frame inside GRE or Geneve.
pub const ETHERTYPE_TEB: u16 = 0x6558;
/// ERSPAN types I and II.
pub const ETHERTYPE_ERSPAN_II: u16 = 0x88be;
/// ERSPAN type III.
pub const ETHERTYPE_ERSPAN_III: u16 = 0x22eb;

/// VXLAN (RFC 7348 §5): 8 bytes — flags (I = 0x08), 24 reserved bits, 24-bit VNI, 8 reserved
/// bits — then an Ethernet frame. The VNI is only meaningful with the I flag.
pub fn vxlan(p: &[u8]) -> Result<Decap<'_>, Skip> {
    let h = p.get(..8).ok_or(Skip::Malformed)?;
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    Ok(Decap {
        kind: TunnelKind::Vxlan,
        id: (h[0] & 0x08 != 0).then_some(vni),
        inner: Inner::Ethernet,
        payload: &p[8..],
    })
}

/// Geneve (RFC 8926 §3.4): version (2 bits, must be 0), option length in 4-byte words (6
/// bits), O and C flags, protocol type, 24-bit VNI; then the options (skipped) and the payload.
pub fn geneve(p: &[u8]) -> Result<Decap<'_>, Skip> {
    let h = p.get(..8).ok_or(Skip::Malformed)?;
    if h[0] >> 6 != 0 {
        return Err(Skip::Malformed);
    }
    let opt_len = usize::from(h[0] & 0x3f) * 4;
    let proto = u16::from_be_bytes([h[2], h[3]]);
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    let payload = p.get(8 + opt_len..).ok_or(Skip::Malformed)?;
    Ok(Decap {
        kind: TunnelKind::Geneve,
        id: Some(vni),
        inner: if proto == ETHERTYPE_TEB {
            Inner::Ethernet
        } else {
            Inner::EtherType(proto)
        },
        payload,
    })
}

/// GRE (RFC 2784 §2.1, RFC 2890 §2): flags C (checksum, 0x8000), K (key, 0x2000), S
/// (sequence, 0x1000), version in the low 3 bits, then the protocol type and the optional
/// fields in that order. ERSPAN (protocols 0x88BE and 0x22EB) is resolved here as well.
///
/// Version 1 (PPTP's enhanced GRE, RFC 2637) and RFC 1701 source routing are not decoded.
pub fn gre(p: &[u8]) -> Result<Decap<'_>, Skip> {
    let h = p.get(..4).ok_or(Skip::Malformed)?;
    let flags = u16::from_be_bytes([h[0], h[1]]);
    let proto = u16::from_be_bytes([h[2], h[3]]);
    if flags & 0x0007 != 0 {
        return Err(Skip::NotIp);
    }
    if flags & 0x4000 != 0 {
        return Err(Skip::Malformed);
    }
    let mut off = 4usize;
    if flags & 0x8000 != 0 {
        off += 4; // checksum + reserved1
    }
    let key = if flags & 0x2000 != 0 {
        let k = p.get(off..off + 4).ok_or(Skip::Malformed)?;
        off += 4;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    let seq = flags & 0x1000 != 0;
    if seq {
        off += 4;
    }
    let rest = p.get(off..).ok_or(Skip::Malformed)?;
    match proto {
        ETHERTYPE_ERSPAN_II if seq => erspan_ii(rest),
        ETHERTYPE_ERSPAN_II => Ok(Decap {
            kind: TunnelKind::ErspanI,
            id: None,
            inner: Inner::Ethernet,
            payload: rest,
        }),
        ETHERTYPE_ERSPAN_III => erspan_iii(rest),
        ETHERTYPE_TEB => Ok(Decap {
            kind: TunnelKind::Gre,
            id: key,
            inner: Inner::Ethernet,
            payload: rest,
        }),
        ty => Ok(Decap {
            kind: TunnelKind::Gre,
            id: key,
            inner: Inner::EtherType(ty),
            payload: rest,
        }),
    }
}

/// ERSPAN type II header (8 bytes): version 1 (4 bits), VLAN (12), COS (3), encapsulation
/// type (2), truncated (1), session id (10), reserved (12), index (20); then the mirrored
/// Ethernet frame.
fn erspan_ii(p: &[u8]) -> Result<Decap<'_>, Skip> {
    let h = p.get(..8).ok_or(Skip::Malformed)?;
    if h[0] >> 4 != 1 {
        return Err(Skip::Malformed);
    }
    Ok(Decap {
        kind: TunnelKind::ErspanIi,
        id: Some(u32::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff)),
        inner: Inner::Ethernet,
        payload: &p[8..],
    })
}

/// ERSPAN type III header (12 bytes): version 2, VLAN, COS, BSO, T, session id (as type II),
/// a 32-bit timestamp, then SGT (16), P (1), frame type (5: 0 Ethernet, 2 IP), hardware id (6),
/// D (1), granularity (2) and O (1), which announces an 8-byte platform-specific sub-header.
fn erspan_iii(p: &[u8]) -> Result<Decap<'_>, Skip> {
    let h = p.get(..12).ok_or(Skip::Malformed)?;
    if h[0] >> 4 != 2 {
        return Err(Skip::Malformed);
    }
    let w = u16::from_be_bytes([h[10], h[11]]);
    let at = if w & 1 != 0 { 20 } else { 12 };
    let inner = match (w >> 10) & 0x1f {
        0 => Inner::Ethernet,
        2 => Inner::Ip,
        _ => return Err(Skip::NotIp),
    };
    Ok(Decap {
        kind: TunnelKind::ErspanIii,
        id: Some(u32::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff)),
        inner,
        payload: p.get(at..).ok_or(Skip::Malformed)?,
    })
}

/// Most GTP-U extension headers followed (a chain is normally one or two long).
const MAX_GTP_EXTENSIONS: usize = 8;

/// GTP-U (3GPP TS 29.281 §5.1): flags (version 1 in the top 3 bits, PT = 1, E/S/PN), message
/// type (0xFF = G-PDU, user data), length of what follows the 8 mandatory bytes, TEID; with
/// any of E/S/PN, 4 more bytes whose last one starts the extension-header chain (§5.2: each
/// extension is a length in 4-byte units, content, and the next extension type). Only G-PDUs
/// carry user IP packets; signalling messages are `NotIp`.
pub fn gtp_u(p: &[u8]) -> Result<Decap<'_>, Skip> {
    let h = p.get(..8).ok_or(Skip::Malformed)?;
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 {
        return Err(Skip::Malformed);
    }
    if h[1] != 0xff {
        return Err(Skip::NotIp);
    }
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let teid = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let end = (8 + len).min(p.len());
    let mut off = 8usize;
    if h[0] & 0x07 != 0 {
        let opt = p.get(8..12).ok_or(Skip::Malformed)?;
        off = 12;
        let mut next = opt[3];
        let mut n = 0;
        while next != 0 {
            n += 1;
            if n > MAX_GTP_EXTENSIONS {
                return Err(Skip::Malformed);
            }
            let words = usize::from(*p.get(off).ok_or(Skip::Malformed)?);
            if words == 0 {
                return Err(Skip::Malformed);
            }
            let last = off + words * 4 - 1;
            next = *p.get(last).ok_or(Skip::Malformed)?;
            off = last + 1;
        }
    }
    Ok(Decap {
        kind: TunnelKind::GtpU,
        id: Some(teid),
        inner: Inner::Ip,
        payload: p.get(off..end.max(off)).ok_or(Skip::Malformed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn vxlan_vni_needs_the_i_flag_and_ignores_reserved_bits() {
        // the corpus capture's header: every flag and reserved bit set, VNI 0x00000b
        let d = vxlan(&[0xff, 0x01, 0xd1, 0xf2, 0x00, 0x00, 0x0b, 0x00, 0xaa]).unwrap();
        assert_eq!(
            (d.id, d.inner, d.payload),
            (Some(11), Inner::Ethernet, &[0xaa][..])
        );
        let d = vxlan(&[0x00, 0, 0, 0, 0x12, 0x34, 0x56, 0x00]).unwrap();
        assert_eq!(d.id, None);
        assert_eq!(vxlan(&[0x08, 0, 0, 0, 0, 0, 1]), Err(Skip::Malformed));
    }

    #[test]
    fn geneve_skips_options_and_maps_protocol() {
        // 2 words of options, protocol IPv4, VNI 0x010203
        let mut p = vec![0x02, 0x00, 0x08, 0x00, 0x01, 0x02, 0x03, 0x00];
        p.extend_from_slice(&[0xee; 8]);
        p.push(0x45);
        let d = geneve(&p).unwrap();
        assert_eq!(d.id, Some(0x010203));
        assert_eq!(d.inner, Inner::EtherType(0x0800));
        assert_eq!(d.payload, &[0x45]);
        p[2..4].copy_from_slice(&ETHERTYPE_TEB.to_be_bytes());
        assert_eq!(geneve(&p).unwrap().inner, Inner::Ethernet);
        // version 1 is not Geneve as specified
        p[0] |= 0x40;
        assert_eq!(geneve(&p), Err(Skip::Malformed));
        // options longer than the packet
        assert_eq!(
            geneve(&[0x3f, 0, 0x65, 0x58, 0, 0, 0, 0]),
            Err(Skip::Malformed)
        );
    }

    #[test]
    fn gre_optional_fields_in_order() {
        // C + K + S: checksum word, key 0x0a0b0c0d, sequence, then the payload
        let mut p = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d];
        p.extend_from_slice(&[0, 0, 0, 7, 0x45]);
        let d = gre(&p).unwrap();
        assert_eq!(d.kind, TunnelKind::Gre);
        assert_eq!(d.id, Some(0x0a0b0c0d));
        assert_eq!(d.inner, Inner::EtherType(0x0800));
        assert_eq!(d.payload, &[0x45]);
        // no options, transparent Ethernet bridging
        let d = gre(&[0x00, 0x00, 0x65, 0x58, 1, 2]).unwrap();
        assert_eq!(
            (d.id, d.inner, d.payload),
            (None, Inner::Ethernet, &[1, 2][..])
        );
        // version 1 (PPTP) and source routing are refused; key cut short is malformed
        assert_eq!(gre(&[0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0]), Err(Skip::NotIp));
        assert_eq!(
            gre(&[0x40, 0x00, 0x08, 0x00, 0, 0, 0, 0]),
            Err(Skip::Malformed)
        );
        assert_eq!(gre(&[0x20, 0x00, 0x08, 0x00, 0, 0]), Err(Skip::Malformed));
    }

    #[test]
    fn erspan_types() {
        // type I: 0x88BE without the sequence bit, Ethernet right after GRE
        let d = gre(&[0x00, 0x00, 0x88, 0xbe, 0xaa]).unwrap();
        assert_eq!(
            (d.kind, d.id, d.payload),
            (TunnelKind::ErspanI, None, &[0xaa][..])
        );
        // type II (bytes of the corpus capture bug-5437): session 6
        let p = [
            0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 0, 0x10, 0x06, 0x00, 0x06, 0, 0, 0, 0x14, 0xaa,
        ];
        let d = gre(&p).unwrap();
        assert_eq!(
            (d.kind, d.id, d.payload),
            (TunnelKind::ErspanIi, Some(6), &[0xaa][..])
        );
        // type II header with a wrong version
        let mut bad = p;
        bad[8] = 0x20;
        assert_eq!(gre(&bad), Err(Skip::Malformed));
        // type III, session 0x3ff, Ethernet, with and without the platform sub-header
        let mut p3 = vec![0x00, 0x00, 0x22, 0xeb, 0x20, 0x00, 0x03, 0xff];
        p3.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x00, 0x00]);
        p3.push(0xaa);
        let d = gre(&p3).unwrap();
        assert_eq!(
            (d.kind, d.id, d.inner),
            (TunnelKind::ErspanIii, Some(0x3ff), Inner::Ethernet)
        );
        assert_eq!(d.payload, &[0xaa]);
        let mut with_o = p3[..16].to_vec();
        with_o[15] = 0x01;
        with_o.extend_from_slice(&[9; 8]);
        with_o.push(0xbb);
        assert_eq!(gre(&with_o).unwrap().payload, &[0xbb]);
        // frame type 2 is IP
        let mut ip = p3.clone();
        ip[14] = 0x08; // FT = 2 → bits 14..10 of the word = 0b00010
        assert_eq!(gre(&ip).unwrap().inner, Inner::Ip);
        // O set but the sub-header is missing
        let mut cut = p3[..16].to_vec();
        cut[15] = 0x01;
        assert_eq!(gre(&cut), Err(Skip::Malformed));
    }

    #[test]
    fn gtp_u_plain_and_with_extension_headers() {
        // the corpus capture's header: flags 0x30, G-PDU, length 0x3c, TEID 0x07e029a2
        let mut p = vec![
            0x30, 0xff, 0x00, 0x02, 0x07, 0xe0, 0x29, 0xa2, 0x45, 0x00, 0xff,
        ];
        let d = gtp_u(&p).unwrap();
        assert_eq!((d.id, d.payload), (Some(0x07e029a2), &[0x45, 0x00][..]));
        // E flag: seq/N-PDU/next-type word, one extension (PDU session container) of 1 word
        p = vec![
            0x34, 0xff, 0x00, 0x0a, 0, 0, 0, 1, 0, 0, 0, 0x85, 0x01, 0x10, 0x09, 0x00,
        ];
        p.extend_from_slice(&[0x60, 0x00]);
        assert_eq!(gtp_u(&p).unwrap().payload, &[0x60, 0x00]);
        // a zero-length extension would loop forever: refused
        p[12] = 0;
        assert_eq!(gtp_u(&p), Err(Skip::Malformed));
        // echo request, and GTP' (PT = 0)
        assert_eq!(
            gtp_u(&[0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Skip::NotIp)
        );
        assert_eq!(gtp_u(&[0x20, 0xff, 0, 0, 0, 0, 0, 0]), Err(Skip::Malformed));
    }

    #[test]
    fn port_sets() {
        let p = UdpPorts::new(&[4789, 8472]).unwrap();
        assert!(p.contains(8472) && p.contains(4789) && !p.contains(4790));
        assert!(!UdpPorts::NONE.contains(0));
        assert!(!UdpPorts::one(6081).contains(0));
        assert_eq!(
            UdpPorts::new(&[1; 9]),
            Err(PortsError::TooMany { max: 8, got: 9 })
        );
        assert_eq!(UdpPorts::new(&[4789, 0]), Err(PortsError::Zero));
        assert_eq!(format!("{p:?}"), "[4789, 8472]");
    }

    #[test]
    fn scope_separates_segments_and_ignores_per_direction_ids() {
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let v1 = Tunnel::new(TunnelKind::Vxlan, Some(1), a, b);
        let v1_back = Tunnel::new(TunnelKind::Vxlan, Some(1), b, a);
        let v2 = Tunnel::new(TunnelKind::Vxlan, Some(2), a, b);
        assert_eq!(v1.scope, v1_back.scope);
        assert_ne!(v1.scope, v2.scope);
        assert_ne!(v1.scope, 0);
        // same number, other kind: another segment
        assert_ne!(
            v1.scope,
            Tunnel::new(TunnelKind::Geneve, Some(1), a, b).scope
        );
        // TEIDs and GRE keys differ per direction: no scope
        assert_eq!(Tunnel::new(TunnelKind::GtpU, Some(7), a, b).scope, 0);
        assert_eq!(Tunnel::new(TunnelKind::Gre, Some(7), a, b).scope, 0);
        // nested: outermost metadata kept, scope takes the inner VNI in
        let mut n = v1;
        n.push(TunnelKind::Vxlan, Some(2));
        assert_eq!((n.kind, n.id, n.layers), (TunnelKind::Vxlan, Some(1), 2));
        assert_ne!(n.scope, v1.scope);
        assert_ne!(n.scope, v2.scope);
        let mut g = v1;
        g.push(TunnelKind::Gre, None);
        assert_eq!(g.scope, v1.scope);
    }
}
