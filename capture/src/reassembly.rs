//! Passive TCP reassembly of one direction of a connection (RFC 9293 §3.4, §3.10.7.4 seen from
//! the outside).
//!
//! [`HalfStream`] turns segments, in whatever order the mirror delivered them, into an in-order
//! sequence of [`StreamEvent`]s: data, and explicit gaps where bytes were lost. It owns the
//! out-of-order store of one direction.
//!
//! Policy, the same as most IDS engines:
//! - **First copy wins.** Bytes already delivered or already held are never replaced by a
//!   retransmission or an overlapping segment; only bytes not yet covered are taken.
//! - **Gaps are explicit.** A hole is declared lost, and announced as `Gap { len }` so the parser
//!   can skip or resynchronise instead of concatenating unrelated bytes, when
//!   (a) the peer has acknowledged past it and [`ReassemblyConfig::reorder_tolerance`] more
//!   packets of the connection passed without it arriving (the receiver got bytes the mirror
//!   lost; the tolerance absorbs a mirror that reorders data behind its ACK),
//!   (b) held out-of-order data would exceed the per-flow or the global cap, or
//!   (c) the connection ends with data still held.
//! - Sequence numbers are unwrapped into 64-bit stream offsets ([`crate::seq::SeqMapper`]), so
//!   streams longer than 4 GiB are fine.
//! - Midstream pickup: with no SYN seen, offset 0 is the first segment seen.
//! - A segment cut by the snap length delivers what was captured and a gap for the rest.
use crate::seq::{SeqMapper, SeqNum};
use std::collections::BTreeMap;

/// Limits of the out-of-order store.
///
/// ```toml
/// [reassembly]
/// max_held_bytes_per_flow = 1048576   # out-of-order bytes held per direction
/// max_held_segments_per_flow = 512    # out-of-order segments held per direction
/// max_held_bytes_total = 268435456    # across all flows
/// reorder_tolerance = 8               # packets to wait for an acknowledged hole
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes held per direction before the oldest hole is declared a gap.
    pub max_held_bytes_per_flow: usize,
    /// Out-of-order segments held per direction.
    pub max_held_segments_per_flow: usize,
    /// Out-of-order bytes held across all flows.
    pub max_held_bytes_total: usize,
    /// Packets of the connection to wait, after the peer acknowledged past a hole, before the
    /// hole is declared lost.
    pub reorder_tolerance: u32,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_held_bytes_per_flow: 1 << 20,
            max_held_segments_per_flow: 512,
            max_held_bytes_total: 256 << 20,
            reorder_tolerance: 8,
        }
    }
}

/// Why a gap was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The peer acknowledged bytes the capture never saw.
    Acked,
    /// The out-of-order store hit a cap.
    Cap,
    /// The connection ended with a hole.
    Close,
    /// The capture cut the segment (snap length).
    Truncated,
}

/// What reassembly hands to the application layer, strictly in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// Stream bytes starting at `offset`.
    Data {
        /// The bytes.
        data: &'a [u8],
        /// Stream offset of the first byte.
        offset: u64,
        /// Capture time of the segment that carried them (µs since the epoch).
        ts_us: i64,
    },
    /// `len` bytes starting at `offset` were lost.
    Gap {
        /// Stream offset of the first lost byte.
        offset: u64,
        /// Number of lost bytes.
        len: u64,
        /// Why the bytes are considered lost.
        reason: GapReason,
    },
}

/// Reassembly counters (summed over flows and directions).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReassemblyStats {
    /// Payload-carrying segments processed.
    pub segments: u64,
    /// Bytes delivered in order.
    pub bytes_delivered: u64,
    /// Segments entirely made of bytes already seen (retransmissions, duplicates).
    pub duplicate_segments: u64,
    /// Segments partly overlapping bytes already seen (the old bytes won).
    pub overlapping_segments: u64,
    /// Segments that arrived ahead of a hole and were held.
    pub out_of_order_segments: u64,
    /// Segments that lay before the stream's start (old retransmissions after a midstream pickup).
    pub before_start_segments: u64,
    /// Gaps declared because the peer acknowledged missing bytes.
    pub gaps_acked: u64,
    /// Gaps declared because a held-data cap was reached.
    pub gaps_cap: u64,
    /// Gaps declared when the connection ended.
    pub gaps_close: u64,
    /// Gaps from snap-length truncation.
    pub gaps_truncated: u64,
    /// Bytes lost in all gaps.
    pub gap_bytes: u64,
    /// Times the per-flow held-data cap forced a gap.
    pub cap_flow_hits: u64,
    /// Times the global held-data cap forced a gap.
    pub cap_global_hits: u64,
    /// Bytes after a FIN (ignored).
    pub after_fin_bytes: u64,
}

impl ReassemblyStats {
    /// Adds another flow table's counters (one table per worker).
    pub fn add(&mut self, o: &ReassemblyStats) {
        self.segments += o.segments;
        self.bytes_delivered += o.bytes_delivered;
        self.duplicate_segments += o.duplicate_segments;
        self.overlapping_segments += o.overlapping_segments;
        self.out_of_order_segments += o.out_of_order_segments;
        self.before_start_segments += o.before_start_segments;
        self.gaps_acked += o.gaps_acked;
        self.gaps_cap += o.gaps_cap;
        self.gaps_close += o.gaps_close;
        self.gaps_truncated += o.gaps_truncated;
        self.gap_bytes += o.gap_bytes;
        self.cap_flow_hits += o.cap_flow_hits;
        self.cap_global_hits += o.cap_global_hits;
        self.after_fin_bytes += o.after_fin_bytes;
    }
}

/// Global accounting of held out-of-order bytes, shared by every stream of a flow table.
#[derive(Debug, Default)]
pub struct HeldBudget {
    /// Bytes currently held.
    pub used: usize,
    /// High-water mark.
    pub peak: usize,
}

#[derive(Debug)]
struct Held {
    data: Vec<u8>,
    ts_us: i64,
    /// Bytes the segment had beyond what was captured (snap length).
    missing_tail: u64,
}

/// Out-of-order segments of one direction, keyed by stream offset.
#[derive(Debug, Default)]
struct HeldStore {
    segs: BTreeMap<u64, Held>,
    bytes: usize,
}

/// Smallest receive window assumed when judging a RST: the largest window a peer can offer
/// without window scaling (RFC 9293 §3.1), so that a short connection's RST is not refused
/// because little was in flight yet.
const RST_WINDOW_MIN: u64 = 1 << 16;
/// Largest receive window TCP allows (RFC 7323 §2.3).
const RST_WINDOW_MAX: u64 = 1 << 30;

/// One direction of a TCP connection being reassembled.
///
/// Kept small, as a flow table holds two per connection: the out-of-order store lives out of
/// line and exists only while something is held (most streams never hold anything).
#[derive(Debug, Default)]
pub struct HalfStream {
    map: Option<SeqMapper>,
    next: u64,
    held: Option<Box<HeldStore>>,
    /// Stream offset of the FIN plus one; 0 while none was seen (kept as a plain integer to
    /// keep the struct small: see `fin()`).
    fin_p1: u64,
    peer_acked: u64,
    stall: u32,
    /// Most bytes of this direction seen ahead of the peer's acknowledgement: a lower bound
    /// of the receiver's window, which the sensor cannot read (scaling is negotiated in
    /// options it does not track).
    flight: u32,
    /// The peer's last acknowledgement number as sent, mapped or not: a TCP answering a
    /// segment it cannot accept (an ACK that acknowledges nothing it sent, say a stale one
    /// before its SYN is answered) resets with exactly that number (RFC 9293 §3.10.7.3).
    peer_ack_raw: Option<u32>,
}

impl HalfStream {
    /// Stream offset of the FIN, if one was seen.
    fn fin(&self) -> Option<u64> {
        self.fin_p1.checked_sub(1)
    }

    /// Whether any segment of this direction has been seen.
    pub fn started(&self) -> bool {
        self.map.is_some()
    }

    /// Next expected stream offset: everything before it was delivered or declared lost.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Bytes currently held out of order.
    pub fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.bytes)
    }

    /// Offset of the first segment held out of order.
    fn first_held(&self) -> Option<u64> {
        self.held
            .as_ref()
            .and_then(|h| h.segs.first_key_value())
            .map(|(&k, _)| k)
    }

    /// Whether a RST of this direction carrying `seq` may reset the connection (RFC 5961
    /// §3.2). A receiver takes a RST only at exactly its next expected sequence number; the
    /// sensor knows that number only roughly (its own next byte, the receiver's ACKs), so it
    /// accepts a RST within one receive window of it either way, the window estimated from
    /// the bytes seen in flight, and refuses the rest: a blind attacker must then guess the
    /// window, not just the 4-tuple. A direction with no segment seen yet has no window to
    /// check against (a RST answering a SYN) and accepts. A RST carrying exactly the peer's
    /// last acknowledgement number is the answer to an unacceptable segment and is taken
    /// whatever its distance: an attacker who sees the ACKs could forge any RST anyway.
    pub fn rst_acceptable(&self, seq: u32) -> bool {
        if self.peer_ack_raw == Some(seq) {
            return true;
        }
        let Some(map) = self.map else {
            return true;
        };
        let Some(off) = map.offset(SeqNum(seq), self.next) else {
            return false;
        };
        let expected = self.next.max(self.peer_acked);
        let window = u64::from(self.flight).clamp(RST_WINDOW_MIN, RST_WINDOW_MAX);
        off.abs_diff(expected) <= window
    }

    /// Whether the FIN was seen and everything before it delivered.
    pub fn finished(&self) -> bool {
        self.fin().is_some_and(|f| self.next >= f)
    }

    /// Maps a sequence number of this direction to a stream offset (for the peer's ACKs).
    pub fn offset_of(&self, seq: u32) -> Option<u64> {
        self.map.and_then(|m| m.offset(SeqNum(seq), self.next))
    }

    /// The peer acknowledged this direction up to `seq`. Only remembered here; the hole check
    /// runs in [`HalfStream::tick`]. Returns the acknowledged stream offset, if it maps.
    pub fn peer_ack(&mut self, seq: u32) -> Option<u64> {
        self.peer_ack_raw = Some(seq);
        let off = self.offset_of(seq)?;
        // An ACK far beyond anything plausible is noise (or an attack); ignore it.
        if off > self.peer_acked && off <= self.next + (1 << 30) {
            self.peer_acked = off;
        }
        Some(off)
    }

    /// Processes one segment of this direction.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        wire_len: u32,
        ts_us: i64,
        cfg: &ReassemblyConfig,
        budget: &mut HeldBudget,
        stats: &mut ReassemblyStats,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        let seq = SeqNum(seq);
        // SYN occupies one sequence number; data (TCP Fast Open) starts after it.
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        let map = *self.map.get_or_insert_with(|| SeqMapper::new(data_seq));
        let wire_len = u64::from(wire_len).max(payload.len() as u64);
        let Some(start) = map.offset(data_seq, self.next) else {
            if !payload.is_empty() {
                stats.before_start_segments += 1;
            }
            return;
        };
        let end = start + wire_len;
        if fin && self.fin().is_none() {
            self.fin_p1 = end + 1;
        }
        if wire_len == 0 {
            return;
        }
        stats.segments += 1;
        let ahead = end.saturating_sub(self.peer_acked).min(RST_WINDOW_MAX);
        self.flight = self.flight.max(ahead as u32);
        if let Some(f) = self.fin() {
            if start >= f {
                stats.after_fin_bytes += wire_len;
                return;
            }
        }
        if end <= self.next {
            stats.duplicate_segments += 1;
            return;
        }
        let captured_end = start + payload.len() as u64;
        let missing_tail = end - captured_end;
        // First copy wins: drop what was already delivered.
        let (start, payload) = if start < self.next {
            stats.overlapping_segments += 1;
            let skip = (self.next - start).min(payload.len() as u64) as usize;
            (self.next, &payload[skip..])
        } else {
            (start, payload)
        };
        if start == self.next {
            self.deliver(payload, missing_tail, ts_us, stats, out);
            self.drain(stats, budget, out);
            return;
        }
        stats.out_of_order_segments += 1;
        self.hold(start, payload, missing_tail, ts_us, cfg, budget, stats, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        start: u64,
        payload: &[u8],
        missing_tail: u64,
        ts_us: i64,
        cfg: &ReassemblyConfig,
        budget: &mut HeldBudget,
        stats: &mut ReassemblyStats,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        let end = start + payload.len() as u64;
        let none = BTreeMap::new();
        let held = self.held.as_ref().map_or(&none, |h| &h.segs);
        // Work out which sub-ranges of [start, end) no held segment covers yet.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut cursor = start;
        if let Some((&k, h)) = held.range(..start).next_back() {
            cursor = cursor.max(k + h.data.len() as u64);
        }
        let mut overlapped = cursor > start;
        for (&k, h) in held.range(start..end) {
            if k > cursor {
                pieces.push((cursor, k));
            } else {
                overlapped = true;
            }
            cursor = cursor.max(k + h.data.len() as u64);
            if k < cursor && k > start {
                overlapped = true;
            }
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        if overlapped {
            stats.overlapping_segments += 1;
        }
        if pieces.is_empty() && missing_tail == 0 {
            stats.duplicate_segments += 1;
            return;
        }
        let new_bytes: usize = pieces.iter().map(|(a, b)| (b - a) as usize).sum();
        let flow_full = self.held_bytes() + new_bytes > cfg.max_held_bytes_per_flow
            || held.len() + pieces.len() > cfg.max_held_segments_per_flow;
        let global_full = budget.used + new_bytes > cfg.max_held_bytes_total;
        if flow_full || global_full {
            if flow_full {
                stats.cap_flow_hits += 1;
            } else {
                stats.cap_global_hits += 1;
            }
            // Stop waiting for the oldest hole(s): deliver everything held, with gaps, then
            // place this segment relative to the new position.
            self.flush(GapReason::Cap, stats, budget, out);
            if start > self.next {
                self.gap(start - self.next, GapReason::Cap, stats, out);
            }
            let skip = (self.next.saturating_sub(start)).min(payload.len() as u64) as usize;
            if start + (payload.len() as u64) > self.next || missing_tail > 0 {
                self.deliver(&payload[skip..], missing_tail, ts_us, stats, out);
            }
            return;
        }
        let n = pieces.len();
        let store = self.held.get_or_insert_with(Box::default);
        for (i, (a, b)) in pieces.into_iter().enumerate() {
            let lo = (a - start) as usize;
            let hi = (b - start) as usize;
            let data = payload[lo..hi].to_vec();
            store.bytes += data.len();
            budget.used += data.len();
            let tail = if i + 1 == n && b == end {
                missing_tail
            } else {
                0
            };
            store.segs.insert(
                a,
                Held {
                    data,
                    ts_us,
                    missing_tail: tail,
                },
            );
        }
        budget.peak = budget.peak.max(budget.used);
    }

    fn deliver(
        &mut self,
        data: &[u8],
        missing_tail: u64,
        ts_us: i64,
        stats: &mut ReassemblyStats,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        if !data.is_empty() {
            out(StreamEvent::Data {
                data,
                offset: self.next,
                ts_us,
            });
            stats.bytes_delivered += data.len() as u64;
            self.next += data.len() as u64;
        }
        if missing_tail > 0 {
            self.gap(missing_tail, GapReason::Truncated, stats, out);
        }
    }

    fn gap(
        &mut self,
        len: u64,
        reason: GapReason,
        stats: &mut ReassemblyStats,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        if len == 0 {
            return;
        }
        match reason {
            GapReason::Acked => stats.gaps_acked += 1,
            GapReason::Cap => stats.gaps_cap += 1,
            GapReason::Close => stats.gaps_close += 1,
            GapReason::Truncated => stats.gaps_truncated += 1,
        }
        stats.gap_bytes += len;
        out(StreamEvent::Gap {
            offset: self.next,
            len,
            reason,
        });
        self.next += len;
        self.stall = 0;
    }

    /// Delivers held segments that have become contiguous.
    fn drain(
        &mut self,
        stats: &mut ReassemblyStats,
        budget: &mut HeldBudget,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        while let Some(store) = self.held.as_mut() {
            let Some(entry) = store.segs.first_entry() else {
                // Drained: give the store back rather than keep an empty one per stream.
                self.held = None;
                break;
            };
            if *entry.key() > self.next {
                break;
            }
            let k = *entry.key();
            let h = entry.remove();
            store.bytes -= h.data.len();
            budget.used = budget.used.saturating_sub(h.data.len());
            let end = k + h.data.len() as u64;
            if end + h.missing_tail <= self.next {
                continue;
            }
            let skip = (self.next.saturating_sub(k)).min(h.data.len() as u64) as usize;
            let tail = if end < self.next {
                h.missing_tail - (self.next - end)
            } else {
                h.missing_tail
            };
            self.deliver(&h.data[skip..], tail, h.ts_us, stats, out);
        }
        if self.next >= self.peer_acked {
            self.stall = 0;
        }
    }

    /// Delivers everything held, declaring the holes between as gaps of `reason`.
    pub fn flush(
        &mut self,
        reason: GapReason,
        stats: &mut ReassemblyStats,
        budget: &mut HeldBudget,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        while let Some(k) = self.first_held() {
            if k > self.next {
                self.gap(k - self.next, reason, stats, out);
            }
            self.drain(stats, budget, out);
        }
    }

    /// Called once per packet of the connection: declares an acknowledged hole lost once the
    /// reorder tolerance has passed.
    pub fn tick(
        &mut self,
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        budget: &mut HeldBudget,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        if self.peer_acked <= self.next {
            self.stall = 0;
            return;
        }
        self.stall += 1;
        if self.stall <= cfg.reorder_tolerance {
            return;
        }
        let first_held = self.first_held().unwrap_or(u64::MAX);
        let upto = self.peer_acked.min(first_held);
        if upto > self.next {
            self.gap(upto - self.next, GapReason::Acked, stats, out);
        }
        self.drain(stats, budget, out);
    }

    /// Releases held data at the end of the connection: every hole becomes a gap.
    pub fn close(
        &mut self,
        stats: &mut ReassemblyStats,
        budget: &mut HeldBudget,
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.flush(GapReason::Close, stats, budget, out);
        // Bytes acknowledged by the peer but never seen at the end of the stream.
        if self.peer_acked > self.next && self.fin().is_none_or(|f| self.next < f) {
            let upto = self
                .fin()
                .map_or(self.peer_acked, |f| f.min(self.peer_acked));
            if upto > self.next {
                self.gap(upto - self.next, GapReason::Close, stats, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Ev {
        D(u64, Vec<u8>),
        G(u64, u64, GapReason),
    }

    struct H {
        s: HalfStream,
        cfg: ReassemblyConfig,
        budget: HeldBudget,
        stats: ReassemblyStats,
        ev: Vec<Ev>,
    }

    impl H {
        fn new() -> Self {
            H {
                s: HalfStream::default(),
                cfg: ReassemblyConfig::default(),
                budget: HeldBudget::default(),
                stats: ReassemblyStats::default(),
                ev: vec![],
            }
        }
        fn seg(&mut self, seq: u32, data: &[u8]) {
            self.seg_full(seq, false, false, data, data.len() as u32);
        }
        fn seg_full(&mut self, seq: u32, syn: bool, fin: bool, data: &[u8], wire: u32) {
            let ev = &mut self.ev;
            self.s.segment(
                seq,
                syn,
                fin,
                data,
                wire,
                0,
                &self.cfg,
                &mut self.budget,
                &mut self.stats,
                &mut |e| ev.push(conv(e)),
            );
        }
        fn tick(&mut self) {
            let ev = &mut self.ev;
            self.s
                .tick(&self.cfg, &mut self.stats, &mut self.budget, &mut |e| {
                    ev.push(conv(e))
                });
        }
        fn close(&mut self) {
            let ev = &mut self.ev;
            self.s
                .close(&mut self.stats, &mut self.budget, &mut |e| ev.push(conv(e)));
        }
        /// The stream as text, gaps as `[n]`.
        fn text(&self) -> String {
            let mut s = String::new();
            for e in &self.ev {
                match e {
                    Ev::D(_, d) => s.push_str(&String::from_utf8_lossy(d)),
                    Ev::G(_, n, _) => s.push_str(&format!("[{n}]")),
                }
            }
            s
        }
    }

    fn conv(e: StreamEvent<'_>) -> Ev {
        match e {
            StreamEvent::Data { data, offset, .. } => Ev::D(offset, data.to_vec()),
            StreamEvent::Gap {
                offset,
                len,
                reason,
            } => Ev::G(offset, len, reason),
        }
    }

    #[test]
    fn in_order_with_syn_and_data_on_syn() {
        let mut h = H::new();
        h.seg_full(99, true, false, b"ab", 2); // TFO: data on SYN starts at ISN+1
        h.seg(102, b"cd");
        assert_eq!(h.text(), "abcd");
        assert_eq!(h.ev[1], Ev::D(2, b"cd".to_vec()));
    }

    #[test]
    fn out_of_order_is_held_then_released() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg(6, b"fgh");
        h.seg(4, b"de");
        assert_eq!(h.text(), "");
        h.seg(1, b"abc");
        assert_eq!(h.text(), "abcdefgh");
        assert_eq!(h.s.held_bytes(), 0);
        assert_eq!(h.budget.used, 0);
        assert_eq!(h.stats.out_of_order_segments, 2);
    }

    #[test]
    fn retransmissions_and_overlaps_first_copy_wins() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg(1, b"abcd");
        h.seg(1, b"abcd"); // duplicate
        h.seg(3, b"XXef"); // overlaps delivered bytes: only "ef" is new
        h.seg(9, b"ij");
        h.seg(8, b"YYYY"); // overlaps held "ij": only 'h'... at 8 and 'k' at 11
        h.seg(7, b"g");
        assert_eq!(h.text(), "abcdefgYijY");
        assert_eq!(h.stats.duplicate_segments, 1);
        assert!(h.stats.overlapping_segments >= 2);
    }

    #[test]
    fn wrap_around_two_pow_32() {
        let mut h = H::new();
        let isn = u32::MAX - 3;
        h.seg_full(isn, true, false, b"", 0);
        h.seg(isn.wrapping_add(1), b"abc"); // offsets 0..3, seq MAX-2..MAX
        h.seg(isn.wrapping_add(7), b"ghi"); // wraps: held
        h.seg(isn.wrapping_add(4), b"def"); // seq 0..2
        assert_eq!(h.text(), "abcdefghi");
        assert_eq!(h.s.next_offset(), 9);
    }

    #[test]
    fn gap_declared_when_peer_acked_past_hole_after_tolerance() {
        let mut h = H::new();
        h.cfg.reorder_tolerance = 2;
        h.seg_full(0, true, false, b"", 0);
        h.seg(1, b"abc");
        h.seg(8, b"hij"); // bytes 3..7 lost by the mirror
        h.s.peer_ack(11); // the receiver got everything
        h.tick();
        h.tick();
        assert_eq!(h.text(), "abc", "within tolerance we keep waiting");
        h.tick();
        assert_eq!(h.text(), "abc[4]hij");
        assert_eq!(h.ev[1], Ev::G(3, 4, GapReason::Acked));
        // the late copy of the lost bytes is now a duplicate, not re-delivered
        h.seg(4, b"defg");
        assert_eq!(h.text(), "abc[4]hij");
    }

    #[test]
    fn reordered_data_behind_its_ack_is_not_a_gap() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.s.peer_ack(5); // mirror swapped the ACK ahead of the data
        h.tick();
        h.seg(1, b"abcd");
        h.tick();
        assert_eq!(h.text(), "abcd");
        assert_eq!(h.stats.gaps_acked, 0);
    }

    #[test]
    fn per_flow_cap_forces_a_gap() {
        let mut h = H::new();
        h.cfg.max_held_bytes_per_flow = 8;
        h.seg_full(0, true, false, b"", 0);
        h.seg(1, b"a");
        h.seg(5, b"efgh"); // hole at 2..4
        h.seg(9, b"ijkl"); // exactly at the cap
        h.seg(13, b"mn"); // over the cap: give up on the hole
        assert_eq!(h.text(), "a[3]efghijklmn");
        assert_eq!(h.stats.cap_flow_hits, 1);
        assert_eq!(h.budget.used, 0);
    }

    #[test]
    fn global_cap_is_shared() {
        let mut h = H::new();
        h.cfg.max_held_bytes_total = 4;
        h.budget.used = 3; // other flows hold 3 bytes
        h.seg_full(0, true, false, b"", 0);
        h.seg(3, b"cd");
        assert_eq!(h.stats.cap_global_hits, 1);
        assert_eq!(h.text(), "[2]cd");
    }

    #[test]
    fn close_flushes_holes_as_gaps() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg(1, b"ab");
        h.seg(6, b"fg");
        h.close();
        assert_eq!(h.text(), "ab[3]fg");
        assert_eq!(h.stats.gaps_close, 1);
    }

    #[test]
    fn snaplen_truncation_becomes_a_gap() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg_full(1, false, false, b"abc", 10);
        h.seg(11, b"klm");
        assert_eq!(h.text(), "abc[7]klm");
    }

    #[test]
    fn midstream_and_old_retransmission() {
        let mut h = H::new();
        h.seg(5000, b"xyz");
        h.seg(4000, b"old"); // before the stream's start
        h.seg(5003, b"!");
        assert_eq!(h.text(), "xyz!");
        assert_eq!(h.stats.before_start_segments, 1);
    }

    #[test]
    fn fin_and_data_after_fin() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg_full(1, false, true, b"bye", 3);
        assert!(h.s.finished());
        h.seg(4, b"late");
        assert_eq!(h.text(), "bye");
        assert_eq!(h.stats.after_fin_bytes, 4);
    }

    #[test]
    fn rst_window_follows_the_stream_across_the_wrap() {
        let mut h = H::new();
        let isn = u32::MAX - 3;
        h.seg_full(isn, true, false, b"", 0);
        h.seg(isn.wrapping_add(1), b"abcdef");
        let next = isn.wrapping_add(7);
        assert!(h.s.rst_acceptable(next));
        assert!(h.s.rst_acceptable(next.wrapping_add(60_000)));
        assert!(h.s.rst_acceptable(next.wrapping_sub(6)));
        assert!(!h.s.rst_acceptable(next.wrapping_add(70_000)));
        assert!(!h.s.rst_acceptable(next.wrapping_add(1 << 31)));
        // before the stream's first byte
        assert!(!h.s.rst_acceptable(isn.wrapping_sub(10)));
        // nothing seen of a direction: nothing to hold its RST to
        assert!(HalfStream::default().rst_acceptable(12345));
    }

    #[test]
    fn rst_window_grows_with_what_was_in_flight() {
        let mut h = H::new();
        h.seg_full(0, true, false, b"", 0);
        h.s.peer_ack(1);
        h.seg(1, &[b'x'; 200_000]);
        // 200 kB unacknowledged: the receiver's window is at least that
        assert!(h.s.rst_acceptable(1 + 200_000 + 150_000));
        assert!(!h.s.rst_acceptable(1 + 200_000 + 250_000));
    }

    #[test]
    fn every_permutation_of_small_segments_reassembles() {
        let data = b"0123456789abcdef";
        let cuts = [0usize, 3, 4, 9, 12, 16];
        let segs: Vec<(u32, &[u8])> = cuts
            .windows(2)
            .map(|w| (1 + w[0] as u32, &data[w[0]..w[1]]))
            .collect();
        // all 120 orders of the 5 segments, each with a duplicate of the first
        let mut idx: Vec<usize> = (0..segs.len()).collect();
        let mut count = 0;
        permute(&mut idx, 0, &mut |order| {
            let mut h = H::new();
            h.seg_full(0, true, false, b"", 0);
            for &i in order {
                h.seg(segs[i].0, segs[i].1);
            }
            h.seg(segs[order[0]].0, segs[order[0]].1);
            assert_eq!(h.text().as_bytes(), data, "order {order:?}");
            count += 1;
        });
        assert_eq!(count, 120);
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }
}
