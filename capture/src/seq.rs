//! Wrap-aware TCP sequence numbers (RFC 9293 §3.4: sequence space is modulo 2³²).
//!
//! A raw `<` on `u32` sequence numbers is wrong across the wrap; every comparison here goes
//! through `wrapping_sub` and a signed interpretation, valid while the two numbers are less than
//! 2³¹ apart — true for any window a real connection can have in flight.

/// A TCP sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// Signed distance `self - other` in sequence space.
    pub fn diff(self, other: SeqNum) -> i64 {
        i64::from(self.0.wrapping_sub(other.0) as i32)
    }

    /// `self + n` modulo 2³².
    pub fn wrapping_add(self, n: u64) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }

    /// Whether `self` comes strictly before `other`.
    pub fn before(self, other: SeqNum) -> bool {
        self.diff(other) < 0
    }
}

/// Maps 32-bit sequence numbers of one direction onto 64-bit stream offsets (0 = the first
/// payload byte of the stream), so that the rest of reassembly never thinks about the wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqMapper {
    /// Sequence number of stream offset 0.
    base: SeqNum,
}

impl SeqMapper {
    /// A mapper whose offset 0 is sequence number `base`.
    pub fn new(base: SeqNum) -> Self {
        SeqMapper { base }
    }

    /// The offset of `seq`, unwrapped around the reference offset `near` (typically the next
    /// expected offset). `None` when `seq` lies before the start of the stream.
    pub fn offset(&self, seq: SeqNum, near: u64) -> Option<u64> {
        let near_seq = self.base.wrapping_add(near);
        let d = seq.diff(near_seq);
        let off = near as i64 + d;
        (off >= 0).then_some(off as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_across_the_wrap() {
        let a = SeqNum(u32::MAX - 10);
        let b = a.wrapping_add(20);
        assert_eq!(b.0, 9);
        assert!(a.before(b));
        assert!(!b.before(a));
        assert_eq!(b.diff(a), 20);
        assert_eq!(a.diff(b), -20);
    }

    #[test]
    fn offsets_unwrap_past_four_gibibytes() {
        let m = SeqMapper::new(SeqNum(u32::MAX - 100));
        assert_eq!(m.offset(SeqNum(u32::MAX - 100), 0), Some(0));
        assert_eq!(m.offset(SeqNum(50), 0), Some(151));
        // after 5 GiB of stream the same 32-bit numbers map far ahead
        let near = 5u64 << 30;
        let seq = SeqNum(u32::MAX - 100).wrapping_add(near + 7);
        assert_eq!(m.offset(seq, near), Some(near + 7));
        // a segment from before the stream start (an old retransmission) has no offset
        assert_eq!(m.offset(SeqNum(u32::MAX - 200), 0), None);
    }
}
