//! IP fragment reassembly: IPv4 (RFC 791 §3.2) and IPv6 (RFC 8200 §4.5), with the overlap
//! rule of RFC 5722.
//!
//! Owns the pending datagrams. A datagram is identified by (source, destination, id, and for
//! IPv4 the protocol; RFC 791 §3.2, RFC 8200 §4.5) plus the tunnel scope it was found in, so
//! the same inner addresses in two VNIs never mix. Its bytes are kept in one buffer indexed by
//! fragment offset, with the list of byte ranges received.
//!
//! Rules, the same for both versions:
//! * a fragment that overlaps bytes already held with *different* bytes discards the whole
//!   datagram, including fragments still to come (RFC 5722 §4; a sensor that picked one
//!   version would see something else than the receiver whenever they disagree); an exact
//!   duplicate (a retransmission, a mirror seeing a packet twice) is dropped and counted;
//! * a fragment other than the last must carry a multiple of 8 bytes, and no datagram may end
//!   beyond 65,535 bytes of payload;
//! * a fragment cut by the snap length cannot be completed and is dropped;
//! * datagrams still incomplete [`FragConfig::timeout_us`] of capture time after their first
//!   fragment expire.
//!
//! Resources: at most [`FragConfig::max_datagrams`] pending datagrams and
//! [`FragConfig::max_bytes`] buffered payload bytes; beyond, the oldest datagram is dropped
//! (counted). At most [`FragConfig::max_fragments`] fragments per datagram. Every step is
//! O(fragments of the datagram); expiry and eviction are O(1) amortised (an arrival-ordered
//! queue, stale entries skipped lazily).
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Largest reassembled payload: IPv4 total length and IPv6 payload length are 16-bit
/// (jumbograms, RFC 2675, are never fragmented).
const MAX_DATAGRAM: u32 = 65_535;

/// Fragment reassembly limits.
///
/// ```toml
/// [fragments]
/// timeout_secs = 30        # capture time a datagram may wait for its missing fragments
/// max_bytes = 16777216     # payload bytes held over all pending datagrams
/// max_datagrams = 4096     # datagrams pending at once
/// max_fragments = 256      # fragments per datagram (64 KiB in 256-byte pieces)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragConfig {
    /// Capture time (µs) after its first fragment at which an incomplete datagram is dropped;
    /// 30 s, Linux's `ipfrag_time`.
    pub timeout_us: i64,
    /// Payload bytes held over all pending datagrams.
    pub max_bytes: usize,
    /// Datagrams pending at once.
    pub max_datagrams: usize,
    /// Fragments accepted per datagram (a 64 KiB datagram over a 1280-byte IPv6 path is 52).
    pub max_fragments: u16,
}

impl FragConfig {
    /// The defaults documented on each field.
    pub const DEFAULT: FragConfig = FragConfig {
        timeout_us: 30_000_000,
        max_bytes: 16 << 20,
        max_datagrams: 4096,
        max_fragments: 256,
    };
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig::DEFAULT
    }
}

/// Reassembly counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FragStats {
    /// Fragments taken in (held, or completing a datagram).
    pub fragments: u64,
    /// Datagrams reassembled and decoded further.
    pub reassembled: u64,
    /// Datagrams discarded because fragments overlapped with different bytes (or disagreed on
    /// where the datagram ends).
    pub overlaps: u64,
    /// Fragments whose bytes were all held already.
    pub duplicates: u64,
    /// Datagrams still incomplete at the timeout.
    pub expired: u64,
    /// Datagrams dropped because the table was at `max_datagrams` or `max_bytes`.
    pub cap_drops: u64,
    /// Datagrams dropped for having more than `max_fragments` fragments.
    pub too_many_fragments: u64,
    /// Fragments with an impossible offset or length.
    pub malformed: u64,
    /// Fragments cut by the snap length (their datagram cannot be completed).
    pub truncated: u64,
    /// Fragments of a datagram already discarded (overlap, too many fragments).
    pub discarded: u64,
    /// Most payload bytes held at once.
    pub peak_bytes: u64,
}

/// Identity of a datagram under reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// IPv4 protocol (part of the IPv4 key); 0 for IPv6, whose key does not include it.
    pub proto: u8,
    /// Tunnel scope the fragment was found in ([`crate::tunnel::Tunnel::scope`]).
    pub scope: u64,
}

/// One fragment, borrowed from the packet that carried it.
#[derive(Clone, Copy, Debug)]
pub struct FragPiece<'a> {
    /// Datagram it belongs to.
    pub key: FragKey,
    /// Byte offset of `data` in the datagram's payload.
    pub offset: u32,
    /// More fragments follow (MF / M flag).
    pub more: bool,
    /// The fragment's payload bytes as captured.
    pub data: &'a [u8],
    /// The capture holds fewer bytes than the fragment had on the wire.
    pub truncated: bool,
    /// Protocol of the payload: the IPv4 protocol, or the IPv6 Fragment header's Next Header
    /// (only the offset-zero fragment's counts, RFC 8200 §4.5).
    pub next: u8,
}

struct Pending {
    seq: u64,
    data: Vec<u8>,
    /// Received byte ranges `[start, end)`, sorted, disjoint and not adjacent.
    have: Vec<(u32, u32)>,
    /// Payload length, known once the last fragment arrived.
    end: Option<u32>,
    /// Payload protocol, known once the first fragment arrived.
    next: Option<u8>,
    pieces: u16,
    /// Discarded: the datagram stays only as a tombstone so its later fragments are dropped.
    dead: bool,
}

/// The pending datagrams.
pub struct FragTable {
    cfg: FragConfig,
    map: HashMap<FragKey, Pending>,
    /// Datagrams in order of their first fragment: (key, sequence, first capture time).
    order: VecDeque<(FragKey, u64, i64)>,
    bytes: usize,
    seq: u64,
    now_us: i64,
    stats: FragStats,
}

/// What [`FragTable::insert`] made of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragOutcome {
    /// The datagram is complete; its payload (of this protocol) is in the output buffer.
    Complete(u8),
    /// Held, waiting for the rest.
    Held,
    /// Dropped (duplicate, malformed, truncated, over a cap, or of a discarded datagram).
    Dropped,
}

impl FragTable {
    /// An empty table.
    pub fn new(cfg: FragConfig) -> Self {
        FragTable {
            cfg,
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            seq: 0,
            now_us: i64::MIN,
            stats: FragStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &FragStats {
        &self.stats
    }

    /// Datagrams pending (tombstones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no datagram is pending.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Payload bytes held.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Takes in a fragment captured at `ts_us`. When it completes its datagram, the payload is
    /// moved into `out` (replacing its contents) and the payload's protocol returned.
    pub fn insert(&mut self, p: &FragPiece<'_>, ts_us: i64, out: &mut Vec<u8>) -> FragOutcome {
        self.expire(ts_us);
        self.stats.fragments += 1;
        let len = p.data.len() as u64;
        let end64 = u64::from(p.offset) + len;
        if end64 > u64::from(MAX_DATAGRAM) || (p.more && (len == 0 || len % 8 != 0)) {
            self.stats.malformed += 1;
            return FragOutcome::Dropped;
        }
        let (start, end) = (p.offset, end64 as u32);
        if p.truncated {
            self.stats.truncated += 1;
            // Its datagram can never complete: free what it holds now rather than at expiry.
            self.kill(&p.key);
            return FragOutcome::Dropped;
        }
        if !self.map.contains_key(&p.key) {
            if self.map.len() >= self.cfg.max_datagrams && !self.evict_oldest(None) {
                self.stats.cap_drops += 1;
                return FragOutcome::Dropped;
            }
            self.seq += 1;
            self.map.insert(
                p.key,
                Pending {
                    seq: self.seq,
                    data: Vec::new(),
                    have: Vec::new(),
                    end: None,
                    next: None,
                    pieces: 0,
                    dead: false,
                },
            );
            self.order.push_back((p.key, self.seq, self.now_us));
            self.compact_order();
        }
        // Checks that need only the entry.
        let verdict = {
            let Some(e) = self.map.get_mut(&p.key) else {
                return FragOutcome::Dropped;
            };
            check(e, p, start, end, self.cfg.max_fragments)
        };
        match verdict {
            Check::Ok => {}
            Check::Dead => {
                self.stats.discarded += 1;
                return FragOutcome::Dropped;
            }
            Check::Duplicate => {
                self.stats.duplicates += 1;
                return FragOutcome::Held;
            }
            Check::Overlap => {
                self.stats.overlaps += 1;
                self.kill(&p.key);
                return FragOutcome::Dropped;
            }
            Check::TooMany => {
                self.stats.too_many_fragments += 1;
                self.kill(&p.key);
                return FragOutcome::Dropped;
            }
        }
        // Room for the bytes.
        let have_len = self.map.get(&p.key).map_or(0, |e| e.data.len());
        let grow = (end as usize).saturating_sub(have_len);
        while self.bytes + grow > self.cfg.max_bytes {
            if !self.evict_oldest(Some(&p.key)) {
                self.stats.cap_drops += 1;
                self.remove(&p.key);
                return FragOutcome::Dropped;
            }
        }
        let Some(e) = self.map.get_mut(&p.key) else {
            return FragOutcome::Dropped;
        };
        if grow > 0 {
            e.data.reserve_exact(grow);
            e.data.resize(end as usize, 0);
            self.bytes += grow;
            self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes as u64);
        }
        e.data[start as usize..end as usize].copy_from_slice(p.data);
        add_range(&mut e.have, start, end);
        e.pieces = e.pieces.saturating_add(1);
        if !p.more {
            e.end = Some(end);
        }
        if start == 0 {
            e.next = Some(p.next);
        }
        let complete =
            matches!((e.end, e.next, e.have.as_slice()), (Some(t), Some(_), [(0, h)]) if *h == t);
        if !complete {
            return FragOutcome::Held;
        }
        let next = e.next.unwrap_or(0);
        if let Some(mut e) = self.map.remove(&p.key) {
            self.bytes -= e.data.len();
            std::mem::swap(out, &mut e.data);
        }
        self.stats.reassembled += 1;
        FragOutcome::Complete(next)
    }

    /// Drops datagrams whose first fragment is older than the timeout at capture time
    /// `now_us`.
    pub fn expire(&mut self, now_us: i64) {
        self.now_us = self.now_us.max(now_us);
        let deadline = self.now_us.saturating_sub(self.cfg.timeout_us);
        while let Some(&(k, seq, t0)) = self.order.front() {
            if t0 >= deadline {
                break;
            }
            self.order.pop_front();
            if self.map.get(&k).is_some_and(|e| e.seq == seq) {
                if self.map.get(&k).is_some_and(|e| !e.dead) {
                    self.stats.expired += 1;
                }
                self.remove(&k);
            }
        }
    }

    /// Drops the oldest datagram other than `keep`. False when there is none.
    fn evict_oldest(&mut self, keep: Option<&FragKey>) -> bool {
        let mut kept = None;
        let mut evicted = false;
        while let Some((k, seq, t0)) = self.order.pop_front() {
            if self.map.get(&k).is_none_or(|e| e.seq != seq) {
                continue;
            }
            if keep == Some(&k) {
                kept = Some((k, seq, t0));
                continue;
            }
            self.remove(&k);
            self.stats.cap_drops += 1;
            evicted = true;
            break;
        }
        if let Some(x) = kept {
            self.order.push_front(x);
        }
        evicted
    }

    /// Frees a datagram's bytes and keeps a tombstone, so its later fragments are dropped.
    fn kill(&mut self, k: &FragKey) {
        if let Some(e) = self.map.get_mut(k) {
            self.bytes -= e.data.len();
            e.data = Vec::new();
            e.have = Vec::new();
            e.dead = true;
        }
    }

    fn remove(&mut self, k: &FragKey) {
        if let Some(e) = self.map.remove(k) {
            self.bytes -= e.data.len();
        }
    }

    /// Completed datagrams leave stale queue entries; keep them from piling up.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, seq, _)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

enum Check {
    Ok,
    Dead,
    Duplicate,
    Overlap,
    TooMany,
}

fn check(e: &Pending, p: &FragPiece<'_>, start: u32, end: u32, max_fragments: u16) -> Check {
    if e.dead {
        return Check::Dead;
    }
    // Where the datagram ends must be agreed on: one last fragment, nothing beyond it.
    if let Some(t) = e.end {
        if end > t || (!p.more && end != t) {
            return Check::Overlap;
        }
    }
    if !p.more && e.have.last().is_some_and(|&(_, h)| h > end) {
        return Check::Overlap;
    }
    let mut covered = 0u32;
    for &(s, t) in &e.have {
        let (a, b) = (s.max(start), t.min(end));
        if a < b {
            let old = &e.data[a as usize..b as usize];
            let new = &p.data[(a - start) as usize..(b - start) as usize];
            if old != new {
                return Check::Overlap;
            }
            covered += b - a;
        }
    }
    if covered == end - start && end > start {
        return Check::Duplicate;
    }
    if e.pieces >= max_fragments {
        return Check::TooMany;
    }
    Check::Ok
}

/// Adds `[start, end)` to sorted, disjoint, non-adjacent ranges, merging what it touches.
fn add_range(have: &mut Vec<(u32, u32)>, start: u32, end: u32) {
    if start >= end {
        return;
    }
    let mut s = start;
    let mut t = end;
    // First range that ends at or after `start` (could merge), last that starts at or before
    // `end`.
    let lo = have.partition_point(|&(_, h)| h < s);
    let hi = have.partition_point(|&(l, _)| l <= t);
    if lo < hi {
        s = s.min(have[lo].0);
        t = t.max(have[hi - 1].1);
    }
    have.splice(lo..hi, [(s, t)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            id,
            proto: 17,
            scope: 0,
        }
    }

    fn piece(id: u32, offset: u32, more: bool, data: &[u8]) -> FragPiece<'_> {
        FragPiece {
            key: key(id),
            offset,
            more,
            data,
            truncated: false,
            next: 17,
        }
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    #[test]
    fn ranges_merge() {
        let mut h = Vec::new();
        add_range(&mut h, 16, 24);
        add_range(&mut h, 0, 8);
        assert_eq!(h, [(0, 8), (16, 24)]);
        add_range(&mut h, 8, 16);
        assert_eq!(h, [(0, 24)]);
        add_range(&mut h, 40, 48);
        add_range(&mut h, 30, 35);
        add_range(&mut h, 20, 45);
        assert_eq!(h, [(0, 48)]);
    }

    #[test]
    fn any_order_reassembles_the_same_bytes() {
        let data = payload(3000);
        let chunks: Vec<(u32, bool, &[u8])> = vec![
            (0, true, &data[..1480]),
            (1480, true, &data[1480..2960]),
            (2960, false, &data[2960..]),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut t = FragTable::new(FragConfig::default());
            let mut out = vec![0xee; 5];
            let mut last = FragOutcome::Dropped;
            for (n, &i) in order.iter().enumerate() {
                let (off, more, d) = chunks[i];
                last = t.insert(&piece(1, off, more, d), n as i64, &mut out);
                if n < 2 {
                    assert_eq!(last, FragOutcome::Held, "order {order:?}");
                }
            }
            assert_eq!(last, FragOutcome::Complete(17), "order {order:?}");
            assert_eq!(out, data);
            assert!(t.is_empty());
            assert_eq!(t.held_bytes(), 0);
        }
    }

    #[test]
    fn duplicates_are_dropped_overlaps_discard_the_datagram() {
        let data = payload(32);
        let mut t = FragTable::new(FragConfig::default());
        let mut out = Vec::new();
        assert_eq!(
            t.insert(&piece(1, 0, true, &data[..16]), 0, &mut out),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(&piece(1, 0, true, &data[..16]), 0, &mut out),
            FragOutcome::Held
        );
        assert_eq!(t.stats().duplicates, 1);
        // an identical overlap that adds bytes is fine
        assert_eq!(
            t.insert(&piece(1, 8, true, &data[8..24]), 0, &mut out),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(&piece(1, 24, false, &data[24..]), 0, &mut out),
            FragOutcome::Complete(17)
        );
        assert_eq!(out, data);

        // a different byte in an overlap: the datagram goes, including later fragments
        let mut evil = data[8..16].to_vec();
        evil[3] ^= 0xff;
        assert_eq!(
            t.insert(&piece(2, 0, true, &data[..16]), 0, &mut out),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(&piece(2, 8, true, &evil), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(
            t.insert(&piece(2, 16, false, &data[16..]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(t.stats().overlaps, 1);
        assert_eq!(t.stats().discarded, 1);
        assert_eq!(t.held_bytes(), 0);

        // two last fragments that disagree on the end
        assert_eq!(
            t.insert(&piece(3, 16, false, &data[16..]), 0, &mut out),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(&piece(3, 16, false, &data[16..24]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(t.stats().overlaps, 2);
    }

    #[test]
    fn malformed_and_truncated_fragments() {
        let data = payload(64);
        let mut t = FragTable::new(FragConfig::default());
        let mut out = Vec::new();
        // non-last fragment not a multiple of 8; empty non-last fragment; beyond 64 KiB
        assert_eq!(
            t.insert(&piece(1, 0, true, &data[..13]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(
            t.insert(&piece(1, 0, true, &[]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(
            t.insert(&piece(1, 65_528, false, &data[..8]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(t.stats().malformed, 3);
        // the largest legal end is fine
        assert_eq!(
            t.insert(&piece(2, 65_528, false, &data[..7]), 0, &mut out),
            FragOutcome::Held
        );
        let mut cut = piece(3, 0, true, &data[..16]);
        cut.truncated = true;
        assert_eq!(t.insert(&cut, 0, &mut out), FragOutcome::Dropped);
        assert_eq!(t.stats().truncated, 1);
    }

    #[test]
    fn timeout_expires_incomplete_datagrams() {
        let cfg = FragConfig {
            timeout_us: 1_000,
            ..FragConfig::default()
        };
        let data = payload(16);
        let mut t = FragTable::new(cfg);
        let mut out = Vec::new();
        t.insert(&piece(1, 0, true, &data[..8]), 0, &mut out);
        t.insert(&piece(2, 0, true, &data[..8]), 900, &mut out);
        t.expire(1_500);
        assert_eq!(t.stats().expired, 1);
        assert_eq!(t.len(), 1);
        // the late tail of datagram 1 starts a new datagram that cannot complete on its own
        assert_eq!(
            t.insert(&piece(1, 8, false, &data[8..]), 1_600, &mut out),
            FragOutcome::Held
        );
        // datagram 2 still completes inside its window
        assert_eq!(
            t.insert(&piece(2, 8, false, &data[8..]), 1_700, &mut out),
            FragOutcome::Complete(17)
        );
        assert_eq!(out, data);
    }

    #[test]
    fn caps_evict_the_oldest_and_count() {
        let cfg = FragConfig {
            max_datagrams: 2,
            max_bytes: 4096,
            max_fragments: 3,
            ..FragConfig::default()
        };
        let data = payload(4096);
        let mut t = FragTable::new(cfg);
        let mut out = Vec::new();
        t.insert(&piece(1, 0, true, &data[..8]), 0, &mut out);
        t.insert(&piece(2, 0, true, &data[..8]), 1, &mut out);
        t.insert(&piece(3, 0, true, &data[..8]), 2, &mut out); // evicts 1
        assert_eq!(t.stats().cap_drops, 1);
        assert_eq!(t.len(), 2);
        // 1's tail no longer completes anything
        assert_eq!(
            t.insert(&piece(1, 8, false, &data[8..16]), 3, &mut out),
            FragOutcome::Held
        );
        // bytes: a fragment reaching offset 4000 needs room; the others are evicted for it
        assert_eq!(
            t.insert(&piece(4, 3992, true, &data[..8]), 4, &mut out),
            FragOutcome::Held
        );
        assert!(t.held_bytes() <= 4096);
        assert!(t.stats().cap_drops >= 2);
        // a datagram alone larger than the cap is dropped
        let mut t = FragTable::new(cfg);
        assert_eq!(
            t.insert(&piece(9, 4096, true, &data[..8]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(t.held_bytes(), 0);
        assert!(t.is_empty());
        // too many fragments
        let mut t = FragTable::new(cfg);
        for i in 0..3 {
            assert_eq!(
                t.insert(&piece(5, i * 8, true, &data[..8]), 0, &mut out),
                FragOutcome::Held
            );
        }
        assert_eq!(
            t.insert(&piece(5, 24, false, &data[..8]), 0, &mut out),
            FragOutcome::Dropped
        );
        assert_eq!(t.stats().too_many_fragments, 1);
    }

    #[test]
    fn keys_keep_datagrams_apart() {
        let data = payload(16);
        let mut t = FragTable::new(FragConfig::default());
        let mut out = Vec::new();
        let mut a = piece(1, 0, true, &data[..8]);
        a.key.scope = 5;
        t.insert(&a, 0, &mut out);
        // same addresses and id, other tunnel scope: not the same datagram
        let b = piece(1, 8, false, &data[8..]);
        assert_eq!(t.insert(&b, 0, &mut out), FragOutcome::Held);
        let mut c = b;
        c.key.scope = 5;
        assert_eq!(t.insert(&c, 0, &mut out), FragOutcome::Complete(17));
    }

    #[test]
    fn stale_queue_entries_do_not_pile_up() {
        let data = payload(16);
        let mut t = FragTable::new(FragConfig::default());
        let mut out = Vec::new();
        for id in 0..10_000 {
            t.insert(&piece(id, 0, true, &data[..8]), 0, &mut out);
            t.insert(&piece(id, 8, false, &data[8..]), 0, &mut out);
        }
        assert!(t.is_empty());
        assert!(t.order.len() <= 64 + 1, "{}", t.order.len());
        assert_eq!(t.stats().reassembled, 10_000);
    }
}
