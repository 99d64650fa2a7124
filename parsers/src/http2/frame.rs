//! Frame layer (RFC 9113 §4 and §6): a borrowed view of the 9-octet frame header with a checked
//! constructor, the plausibility test used to find frame boundaries without context, and pure
//! parsers for the fixed-layout payloads. Nothing here keeps state.
//!
//! ```text
//! +-----------------------------------------------+
//! |                 Length (24)                   |
//! +---------------+---------------+---------------+
//! |   Type (8)    |   Flags (8)   |
//! +-+-------------+---------------+-------------------------------+
//! |R|                 Stream Identifier (31)                      |
//! +=+=============================================================+
//! |                   Frame Payload (0...)                      ...
//! +---------------------------------------------------------------+
//! ```

use crate::Direction;

/// Octets in a frame header (RFC 9113 §4.1).
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE before any SETTINGS is acknowledged (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest value SETTINGS_MAX_FRAME_SIZE may take (RFC 9113 §6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// Frame types of RFC 9113 §6. Unknown types are kept as their octet and ignored (§5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// §6.1
    Data,
    /// §6.2
    Headers,
    /// §6.3
    Priority,
    /// §6.4
    RstStream,
    /// §6.5
    Settings,
    /// §6.6
    PushPromise,
    /// §6.7
    Ping,
    /// §6.8
    Goaway,
    /// §6.9
    WindowUpdate,
    /// §6.10
    Continuation,
    /// Any other type: skipped (extension frames, §5.5).
    Unknown(u8),
}

impl FrameType {
    /// The type for a wire octet.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => FrameType::Data,
            1 => FrameType::Headers,
            2 => FrameType::Priority,
            3 => FrameType::RstStream,
            4 => FrameType::Settings,
            5 => FrameType::PushPromise,
            6 => FrameType::Ping,
            7 => FrameType::Goaway,
            8 => FrameType::WindowUpdate,
            9 => FrameType::Continuation,
            other => FrameType::Unknown(other),
        }
    }

    /// Flags this type defines; anything else set is a hint that we are not at a boundary.
    fn defined_flags(self) -> u8 {
        match self {
            FrameType::Data => flags::END_STREAM | flags::PADDED,
            FrameType::Headers => {
                flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY
            }
            FrameType::PushPromise => flags::END_HEADERS | flags::PADDED,
            FrameType::Continuation => flags::END_HEADERS,
            FrameType::Settings | FrameType::Ping => flags::ACK,
            _ => 0,
        }
    }
}

/// Frame flag bits (RFC 9113 §6). Their meaning depends on the frame type.
pub mod flags {
    /// DATA, HEADERS: last frame of the stream in this direction.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: acknowledgement (same bit as END_STREAM).
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the header block ends here.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE: a pad length octet leads and padding trails.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: 5 octets of priority (exclusive bit, dependency, weight) follow the pad length.
    pub const PRIORITY: u8 = 0x20;
}

/// Why a frame or its payload could not be used. Internal; each becomes a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer than 9 octets were available for a header.
    #[error("frame header truncated: need {HEADER_LEN} octets, have {have}")]
    HeaderTruncated {
        /// Octets available.
        have: usize,
    },
    /// The pad length is not smaller than the payload (RFC 9113 §6.1).
    #[error("padding {pad} does not fit a {len}-octet {kind:?} payload")]
    BadPadding {
        /// Frame type.
        kind: FrameType,
        /// Pad length octet.
        pad: u8,
        /// Payload length.
        len: usize,
    },
    /// A fixed-size payload had the wrong size (RFC 9113 §6.3, §6.4, §6.5, §6.8).
    #[error("{kind:?} payload of {len} octets, expected {expected}")]
    BadLength {
        /// Frame type.
        kind: FrameType,
        /// Payload length.
        len: usize,
        /// What the type requires.
        expected: &'static str,
    },
}

/// A borrowed frame header. Constructed only through [`FrameHeader::new_checked`], after which no
/// accessor can panic.
#[derive(Clone, Copy, Debug)]
pub struct FrameHeader<'a> {
    bytes: &'a [u8; HEADER_LEN],
}

impl<'a> FrameHeader<'a> {
    /// A view over the first 9 octets of `data`.
    pub fn new_checked(data: &'a [u8]) -> Result<Self, FrameError> {
        data.get(..HEADER_LEN)
            .and_then(|s| <&[u8; HEADER_LEN]>::try_from(s).ok())
            .map(|bytes| FrameHeader { bytes })
            .ok_or(FrameError::HeaderTruncated { have: data.len() })
    }

    /// Payload length (24 bits).
    pub fn length(&self) -> u32 {
        u32::from_be_bytes([0, self.bytes[0], self.bytes[1], self.bytes[2]])
    }

    /// Frame type.
    pub fn frame_type(&self) -> FrameType {
        FrameType::from_u8(self.bytes[3])
    }

    /// Flag octet.
    pub fn flags(&self) -> u8 {
        self.bytes[4]
    }

    /// The reserved bit, which senders must leave unset.
    pub fn reserved(&self) -> bool {
        self.bytes[5] & 0x80 != 0
    }

    /// Stream identifier (31 bits).
    pub fn stream_id(&self) -> u32 {
        u32::from_be_bytes([self.bytes[5], self.bytes[6], self.bytes[7], self.bytes[8]])
            & 0x7fff_ffff
    }

    /// An owned copy of the fields, for state that outlives the input buffer.
    pub fn to_owned(&self) -> Head {
        Head {
            len: self.length(),
            kind: self.frame_type(),
            flags: self.flags(),
            stream: self.stream_id(),
        }
    }
}

/// Frame header fields, owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload length.
    pub len: u32,
    /// Frame type.
    pub kind: FrameType,
    /// Flags.
    pub flags: u8,
    /// Stream identifier.
    pub stream: u32,
}

impl Head {
    /// Whether flag bit `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Whether `h` could be a real frame header sent in direction `dir` (or either, when `None`):
/// known type, only defined flags, reserved bit clear, length within `max_len` and the type's
/// fixed size, stream id zero exactly where the type needs it, and stream-id parity (a client only
/// opens and sends on odd streams and never pushes). Used wherever the boundary is not known yet
/// (midstream pickup, after a gap), so it prefers rejecting a real header to accepting noise.
pub fn plausible(h: &FrameHeader<'_>, dir: Option<Direction>, max_len: u32) -> bool {
    let kind = h.frame_type();
    let len = h.length();
    let sid = h.stream_id();
    if matches!(kind, FrameType::Unknown(_))
        || h.reserved()
        || len > max_len
        || h.flags() & !kind.defined_flags() != 0
    {
        return false;
    }
    let len_ok = match kind {
        // Empty frames are legal but rare, and runs of zero octets look like them.
        FrameType::Data if len == 0 => h.flags() & flags::END_STREAM != 0,
        FrameType::Headers | FrameType::Continuation => len > 0,
        FrameType::Priority => len == 5,
        FrameType::RstStream | FrameType::WindowUpdate => len == 4,
        FrameType::Settings => len % 6 == 0 && (h.flags() & flags::ACK == 0 || len == 0),
        FrameType::Ping => len == 8,
        FrameType::Goaway => len >= 8,
        FrameType::PushPromise => len >= 4,
        _ => true,
    };
    let sid_ok = match kind {
        FrameType::Settings | FrameType::Ping | FrameType::Goaway => sid == 0,
        FrameType::WindowUpdate => true,
        _ => sid != 0,
    };
    let parity_ok = match dir {
        Some(Direction::ToServer) => match kind {
            FrameType::Data | FrameType::Headers | FrameType::Continuation => sid % 2 == 1,
            FrameType::PushPromise => false,
            _ => true,
        },
        Some(Direction::ToClient) => match kind {
            FrameType::PushPromise => sid % 2 == 1,
            _ => true,
        },
        None => true,
    };
    len_ok && sid_ok && parity_ok
}

/// Strips the pad length octet and trailing padding from a DATA, HEADERS or PUSH_PROMISE payload
/// (RFC 9113 §6.1, §6.2, §6.6).
pub fn strip_padding<'p>(head: &Head, payload: &'p [u8]) -> Result<&'p [u8], FrameError> {
    if !head.has(flags::PADDED) {
        return Ok(payload);
    }
    let bad = || FrameError::BadPadding {
        kind: head.kind,
        pad: payload.first().copied().unwrap_or(0),
        len: payload.len(),
    };
    let (&pad, rest) = payload.split_first().ok_or_else(bad)?;
    let keep = rest.len().checked_sub(pad as usize).ok_or_else(bad)?;
    rest.get(..keep).ok_or_else(bad)
}

/// The header block fragment of a HEADERS payload: padding and the 5 priority octets removed
/// (RFC 9113 §6.2).
pub fn headers_fragment<'p>(head: &Head, payload: &'p [u8]) -> Result<&'p [u8], FrameError> {
    let unpadded = strip_padding(head, payload)?;
    if head.has(flags::PRIORITY) {
        unpadded.get(5..).ok_or(FrameError::BadLength {
            kind: head.kind,
            len: payload.len(),
            expected: "at least 5 octets of priority",
        })
    } else {
        Ok(unpadded)
    }
}

/// The promised stream id and header block fragment of a PUSH_PROMISE payload (RFC 9113 §6.6).
pub fn push_promise<'p>(head: &Head, payload: &'p [u8]) -> Result<(u32, &'p [u8]), FrameError> {
    let unpadded = strip_padding(head, payload)?;
    match unpadded.split_first_chunk::<4>() {
        Some((id, rest)) => Ok((u32::from_be_bytes(*id) & 0x7fff_ffff, rest)),
        None => Err(FrameError::BadLength {
            kind: head.kind,
            len: payload.len(),
            expected: "at least 4 octets of promised stream id",
        }),
    }
}

/// A 32-bit big-endian value at the start of a payload (RST_STREAM error code, §6.4).
pub fn u32_at(kind: FrameType, payload: &[u8], at: usize) -> Result<u32, FrameError> {
    payload
        .get(at..)
        .and_then(|s| s.first_chunk::<4>())
        .map(|b| u32::from_be_bytes(*b))
        .ok_or(FrameError::BadLength {
            kind,
            len: payload.len(),
            expected: "4 more octets",
        })
}

/// GOAWAY (RFC 9113 §6.8): last stream id and error code.
pub fn goaway(payload: &[u8]) -> Result<(u32, u32), FrameError> {
    let last = u32_at(FrameType::Goaway, payload, 0)? & 0x7fff_ffff;
    let code = u32_at(FrameType::Goaway, payload, 4)?;
    Ok((last, code))
}

/// SETTINGS parameter identifiers we track (RFC 9113 §6.5.2).
pub mod settings {
    /// SETTINGS_HEADER_TABLE_SIZE
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_MAX_FRAME_SIZE
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// SETTINGS parameters (RFC 9113 §6.5.1): 6-octet (identifier, value) pairs.
pub fn settings_params(
    payload: &[u8],
) -> Result<impl Iterator<Item = (u16, u32)> + '_, FrameError> {
    if payload.len() % 6 != 0 {
        return Err(FrameError::BadLength {
            kind: FrameType::Settings,
            len: payload.len(),
            expected: "a multiple of 6",
        });
    }
    Ok(payload.chunks_exact(6).map(|c| {
        // `chunks_exact(6)` yields 6-octet slices only; the fallback is unreachable.
        match *c {
            [i0, i1, v0, v1, v2, v3] => (
                u16::from_be_bytes([i0, i1]),
                u32::from_be_bytes([v0, v1, v2, v3]),
            ),
            _ => (0, 0),
        }
    }))
}

/// The name of an error code (RFC 9113 §7), as used in `Exchange::reset`.
pub fn error_code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("0x{other:x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, kind: u8, fl: u8, sid: u32) -> [u8; 9] {
        let l = len.to_be_bytes();
        let s = sid.to_be_bytes();
        [l[1], l[2], l[3], kind, fl, s[0], s[1], s[2], s[3]]
    }

    #[test]
    fn checked_constructor_rejects_short_input() {
        for n in 0..9 {
            assert_eq!(
                FrameHeader::new_checked(&[0u8; 9][..n]).unwrap_err(),
                FrameError::HeaderTruncated { have: n }
            );
        }
        let b = hdr(0x12345, 1, 0x25, 0x8000_0003);
        let h = FrameHeader::new_checked(&b).unwrap();
        assert_eq!(h.length(), 0x12345);
        assert_eq!(h.frame_type(), FrameType::Headers);
        assert_eq!(h.flags(), 0x25);
        assert!(h.reserved());
        assert_eq!(h.stream_id(), 3);
    }

    #[test]
    fn plausibility() {
        let ok = |b: [u8; 9], d| plausible(&FrameHeader::new_checked(&b).unwrap(), d, 16384);
        assert!(ok(hdr(12, 4, 0, 0), None));
        assert!(!ok(hdr(12, 4, 0, 1), None), "SETTINGS on a stream");
        assert!(!ok(hdr(7, 4, 0, 0), None), "SETTINGS not a multiple of 6");
        assert!(!ok(hdr(6, 4, 1, 0), None), "SETTINGS ACK with payload");
        assert!(!ok(hdr(10, 0x20, 0, 1), None), "unknown type");
        assert!(!ok(hdr(10, 0, 0x2, 1), None), "undefined DATA flag");
        assert!(!ok(hdr(20000, 0, 0, 1), None), "over max frame size");
        assert!(ok(hdr(10, 1, 0x5, 2), Some(Direction::ToClient)));
        assert!(
            !ok(hdr(10, 1, 0x5, 2), Some(Direction::ToServer)),
            "client on even stream"
        );
        assert!(
            !ok(hdr(10, 5, 0x4, 1), Some(Direction::ToServer)),
            "client push"
        );
        assert!(!ok(hdr(9, 6, 0, 0), None), "PING of 9");
        assert!(ok(hdr(4, 8, 0, 0), None));
        // HTTP/1 and TLS starts have absurd lengths.
        assert!(!plausible(
            &FrameHeader::new_checked(b"GET / HTTP/1.1").unwrap(),
            None,
            16384
        ));
        assert!(!plausible(
            &FrameHeader::new_checked(&[0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1]).unwrap(),
            None,
            16384
        ));
    }

    #[test]
    fn padding_and_priority() {
        let h = Head {
            len: 0,
            kind: FrameType::Headers,
            flags: flags::PADDED | flags::PRIORITY,
            stream: 1,
        };
        let p = [2, 0, 0, 0, 0, 16, b'a', b'b', 0, 0];
        assert_eq!(headers_fragment(&h, &p).unwrap(), b"ab");
        assert!(headers_fragment(&h, &[9, 1, 2]).is_err());
        assert!(
            headers_fragment(&h, &[0, 1, 2]).is_err(),
            "priority missing"
        );
        assert!(strip_padding(&h, &[]).is_err());
        let d = Head {
            kind: FrameType::Data,
            flags: flags::PADDED,
            ..h
        };
        assert_eq!(strip_padding(&d, &[0]).unwrap(), b"");
        assert!(strip_padding(&d, &[1]).is_err());
        let pp = Head {
            kind: FrameType::PushPromise,
            flags: 0,
            ..h
        };
        assert_eq!(
            push_promise(&pp, &[0x80, 0, 0, 2, 0x82]).unwrap(),
            (2, &[0x82u8][..])
        );
        assert!(push_promise(&pp, &[0, 0, 2]).is_err());
    }

    #[test]
    fn fixed_payloads() {
        assert_eq!(goaway(&[0x80, 0, 0, 5, 0, 0, 0, 8, 1, 2]).unwrap(), (5, 8));
        assert!(goaway(&[0; 7]).is_err());
        let p: Vec<_> = settings_params(&[0, 1, 0, 0, 1, 0, 0, 5, 0, 0, 0x40, 0])
            .unwrap()
            .collect();
        assert_eq!(p, vec![(1, 256), (5, 0x4000)]);
        assert!(settings_params(&[0; 5]).is_err());
        assert_eq!(error_code_name(8), "CANCEL");
        assert_eq!(error_code_name(0x77), "0x77");
    }
}
