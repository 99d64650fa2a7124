//! The per-worker memory budget of the parsers (issue #9, "packet data is hostile").
//!
//! Every cap of [`ParserConfig`] bounds one buffer of one connection, and each holds; but a
//! worker tracks up to a quarter of a million connections, and a 64 KiB head buffer, 256
//! queued requests with 64 KiB body prefixes, or 256 HTTP/2 streams, times that many
//! connections, is many GiB. So everything the parsers keep *between calls* is also charged
//! to one budget per worker, [`ParserConfig::memory_budget_bytes`]:
//!
//! | kept between calls | charged | when refused |
//! |---|---|---|
//! | bytes held while the protocol is undecided (session) | capacity | decided with what there is |
//! | HTTP/1 head gathered across segments, chunk-size lines, resync candidates | capacity | the head is dropped like an oversized one: that direction resynchronises |
//! | HTTP/1 request awaiting its response, response being read or deferred | `request_cost`, `response_cost` + queue slot | the message is not kept (its body is still framed and skipped): a request counts as lost for pairing, a response leaves its request without one |
//! | body prefixes (both protocols) | capacity | the prefix stops growing; the body length is still counted |
//! | client bytes held while an upgrade awaits its answer | capacity | counted as opaque, as past the cap |
//! | HTTP/2 frame payload split across segments, header block with CONTINUATION | capacity | the block is lost, as an oversized one (HPACK state unknown) |
//! | HTTP/2 stream (request, response, trailers) | costs + a map slot | not tracked (request), or emitted at once without its response |
//! | HTTP/2 resync window | capacity | the window is dropped and the search starts over |
//! | HPACK dynamic table | its RFC 7541 §4.1 size and spare slots, settled after each header block | the table is forgotten (state unknown, as after a gap) |
//!
//! Not charged: fixed per-connection state (the connection structs, a few counters and the
//! bounded lists of SETTINGS and interim statuses), whose total the flow table's cap bounds,
//! and bytes held only within one call (a frame header's tail replayed after a resync,
//! exchanges handed to the caller, the learned-size list).
//!
//! Accounting:
//! - The worker's usage is [`ParserStats::budget_used_bytes`]. The counters are already the
//!   one per-worker struct every parser entry point takes by `&mut` (through
//!   [`crate::session::Shared`]), so the budget needs no new parameter and the connection
//!   types keep their signatures. Single-threaded: a charge is an add and a compare.
//! - Each connection owns an `Account` of what it charged. Byte buffers are charged by
//!   capacity and grown only through `Account::grow` (doubling, clamped to the buffer's
//!   cap), so that no spare capacity goes uncounted; parsed messages carry what they were
//!   charged (`charged` fields), so the charge moves with them between queues and is given
//!   back when they are emitted or dropped.
//! - When a connection ends (closed, or handed over to another protocol) it gives back
//!   everything its account still holds, whatever the path: usage returns to zero once every
//!   connection is gone (tests check that the per-message charges add up to the account at
//!   every step, and that usage is zero after the closes).
//! - A refusal is counted ([`ParserStats::budget_refusals`], with the bytes not kept in
//!   [`ParserStats::budget_dropped_bytes`]); usage never exceeds the budget.
use crate::{Body, ParserConfig, ParserStats, Request, Response};
use std::collections::VecDeque;

/// Queue slots kept by an empty queue (what a connection without pipelining uses); beyond,
/// an emptied queue gives its slots back.
const IDLE_SLOTS: usize = 4;

/// Charges `n` bytes to the worker's usage, for a holder that keeps its own record of what it
/// charged (the session's undecided bytes, recorded by the buffers themselves); see
/// [`Account::charge`].
#[inline]
pub(crate) fn charge(stats: &mut ParserStats, limit: u64, n: usize, dropped: usize) -> bool {
    let used = stats.budget_used_bytes.saturating_add(n as u64);
    if used > limit {
        stats.budget_refusals += 1;
        stats.budget_dropped_bytes += dropped as u64;
        return false;
    }
    stats.budget_used_bytes = used;
    stats.budget_peak_bytes = stats.budget_peak_bytes.max(used);
    true
}

/// Gives back `n` bytes charged with [`charge`].
#[inline]
pub(crate) fn release(stats: &mut ParserStats, n: usize) {
    stats.budget_used_bytes = stats.budget_used_bytes.saturating_sub(n as u64);
}

/// What one connection has charged to its worker's budget.
#[derive(Debug)]
pub(crate) struct Account {
    limit: u64,
    held: usize,
}

impl Account {
    /// An empty account under `cfg`'s budget.
    pub(crate) fn new(cfg: &ParserConfig) -> Self {
        Account {
            limit: cfg.memory_budget_bytes as u64,
            held: 0,
        }
    }

    /// Bytes this connection holds charged.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Charges `n` bytes. When that would exceed the budget nothing is charged, and the
    /// refusal is counted with `dropped`, the bytes the caller will not keep because of it.
    #[inline]
    pub(crate) fn charge(&mut self, stats: &mut ParserStats, n: usize, dropped: usize) -> bool {
        if !charge(stats, self.limit, n, dropped) {
            return false;
        }
        self.held += n;
        true
    }

    /// Charges `n` bytes already allocated (an allocator granting more than asked).
    fn force(&mut self, stats: &mut ParserStats, n: usize) {
        stats.budget_used_bytes = stats.budget_used_bytes.saturating_add(n as u64);
        stats.budget_peak_bytes = stats.budget_peak_bytes.max(stats.budget_used_bytes);
        self.held += n;
    }

    /// Gives back `n` bytes (never more than the account holds).
    #[inline]
    pub(crate) fn release(&mut self, stats: &mut ParserStats, n: usize) {
        let n = n.min(self.held);
        self.held -= n;
        release(stats, n);
    }

    /// The connection ended: gives back everything still held.
    pub(crate) fn close(&mut self, stats: &mut ParserStats) {
        self.release(stats, self.held);
    }

    /// Appends `data` to `buf`, growing its capacity by doubling (never past `max_len` unless
    /// `data` needs more) and charging the growth. Refused: `buf` is unchanged, and the refusal
    /// is counted with `dropped` bytes.
    pub(crate) fn grow(
        &mut self,
        buf: &mut Vec<u8>,
        data: &[u8],
        max_len: usize,
        dropped: usize,
        stats: &mut ParserStats,
    ) -> bool {
        let need = buf.len() + data.len();
        let cap = buf.capacity();
        if need > cap {
            let want = need.max(cap.saturating_mul(2).min(max_len));
            if !self.charge(stats, want - cap, dropped) {
                return false;
            }
            buf.reserve_exact(want - buf.len());
            self.force(stats, buf.capacity().saturating_sub(want));
        }
        buf.extend_from_slice(data);
        true
    }

    /// A copy of `data` in a buffer of its own, charged. `None`: refused (counted).
    pub(crate) fn copy(&mut self, data: &[u8], stats: &mut ParserStats) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        self.grow(&mut v, data, data.len(), data.len(), stats)
            .then_some(v)
    }

    /// Frees `buf`, giving back its capacity.
    pub(crate) fn free(&mut self, buf: &mut Vec<u8>, stats: &mut ParserStats) {
        self.release(stats, buf.capacity());
        *buf = Vec::new();
    }

    /// Takes the bytes of `buf` out of the account, for use within the current call.
    pub(crate) fn take(&mut self, buf: &mut Vec<u8>, stats: &mut ParserStats) -> Vec<u8> {
        self.release(stats, buf.capacity());
        std::mem::take(buf)
    }

    /// Appends `data` to `body` (its prefix up to `cap`), charging the prefix's growth.
    /// `stopped` records that a refusal ended this prefix, so that it never has a hole; the
    /// body's length counts every byte either way. Returns the bytes charged, for the owner
    /// of the body to give back.
    pub(crate) fn push_body(
        &mut self,
        body: &mut Body,
        data: &[u8],
        cap: usize,
        stopped: &mut bool,
        stats: &mut ParserStats,
    ) -> usize {
        body.bytes += data.len() as u64;
        let room = cap.saturating_sub(body.prefix.len());
        if room == 0 || *stopped || data.is_empty() {
            return 0;
        }
        let take = room.min(data.len());
        let before = body.prefix.capacity();
        if !self.grow(&mut body.prefix, &data[..take], cap, take, stats) {
            *stopped = true;
            return 0;
        }
        body.prefix.capacity() - before
    }
}

/// Makes room for one more element in `q`, growing it by doubling up to `max_len` (the
/// queue's cap), so that a full queue has no spare slots. Slots are charged per element by
/// their owners, not here.
pub(crate) fn reserve_slot<T>(q: &mut VecDeque<T>, max_len: usize) {
    if q.len() < q.capacity() {
        return;
    }
    let want = q
        .capacity()
        .saturating_mul(2)
        .clamp(IDLE_SLOTS, max_len.max(IDLE_SLOTS))
        .max(q.len() + 1);
    q.reserve_exact(want - q.len());
}

/// An emptied queue that grew past what an idle connection needs gives its slots back.
pub(crate) fn shrink_idle<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > IDLE_SLOTS {
        *q = VecDeque::new();
    }
}

const FIELD: usize = std::mem::size_of::<(String, String)>();

/// Heap bytes of a list of header fields.
pub(crate) fn fields_cost(f: &Vec<(String, String)>) -> usize {
    f.capacity() * FIELD
        + f.iter()
            .map(|(n, v)| n.capacity() + v.capacity())
            .sum::<usize>()
}

fn opt_cost(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::capacity)
}

/// Heap bytes a request holds: its strings, header fields and body prefix.
pub(crate) fn request_cost(r: &Request) -> usize {
    r.method.capacity()
        + r.target.capacity()
        + r.version.capacity()
        + fields_cost(&r.headers)
        + r.body.prefix.capacity()
        + opt_cost(&r.authority)
        + opt_cost(&r.scheme)
}

/// Heap bytes a response holds: its strings, header and trailer fields, interim statuses
/// and body prefix.
pub(crate) fn response_cost(r: &Response) -> usize {
    r.version.capacity()
        + r.reason.capacity()
        + fields_cost(&r.headers)
        + fields_cost(&r.trailers)
        + r.interim.capacity() * std::mem::size_of::<u16>()
        + r.body.prefix.capacity()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(limit: usize) -> (Account, ParserStats) {
        let cfg = ParserConfig {
            memory_budget_bytes: limit,
            ..ParserConfig::default()
        };
        (Account::new(&cfg), ParserStats::default())
    }

    #[test]
    fn charges_up_to_the_limit_and_counts_refusals() {
        let (mut a, mut st) = acct(100);
        assert!(a.charge(&mut st, 60, 60));
        assert!(!a.charge(&mut st, 41, 7));
        assert!(a.charge(&mut st, 40, 40));
        assert_eq!((st.budget_used_bytes, st.budget_peak_bytes), (100, 100));
        assert_eq!((st.budget_refusals, st.budget_dropped_bytes), (1, 7));
        a.release(&mut st, 30);
        assert_eq!((a.held(), st.budget_used_bytes), (70, 70));
        // Never gives back more than it holds.
        a.release(&mut st, 1000);
        assert_eq!(
            (a.held(), st.budget_used_bytes, st.budget_peak_bytes),
            (0, 0, 100)
        );
    }

    #[test]
    fn buffers_are_charged_by_capacity_and_grow_within_their_cap() {
        let (mut a, mut st) = acct(1 << 20);
        let mut b = Vec::new();
        for _ in 0..100 {
            assert!(a.grow(&mut b, b"x", 70, 1, &mut st));
            assert_eq!(a.held(), b.capacity());
        }
        // Doubling stops at the cap, then grows only by what is needed.
        assert!(b.capacity() <= 101 && b.len() == 100);
        let v = a.take(&mut b, &mut st);
        assert_eq!((v.len(), a.held(), st.budget_used_bytes), (100, 0, 0));
        let mut c = a.copy(b"abc", &mut st).unwrap();
        assert_eq!(a.held(), 3);
        a.free(&mut c, &mut st);
        assert_eq!((a.held(), c.capacity()), (0, 0));
    }

    #[test]
    fn a_refused_body_prefix_stops_for_good() {
        let (mut a, mut st) = acct(10);
        let mut body = Body::default();
        let mut stopped = false;
        let mut charged = a.push_body(&mut body, b"12345678", 64, &mut stopped, &mut st);
        charged += a.push_body(&mut body, b"abcdefgh", 64, &mut stopped, &mut st);
        assert!(stopped);
        a.release(&mut st, 100);
        // Room again, but the prefix must not continue after a hole.
        charged += a.push_body(&mut body, b"z", 64, &mut stopped, &mut st);
        assert_eq!(body.prefix, b"12345678");
        assert_eq!(body.bytes, 17);
        assert_eq!(charged, 8);
        assert_eq!(st.budget_refusals, 1);
    }

    #[test]
    fn queues_grow_to_their_cap_without_spare_slots() {
        let mut q: VecDeque<u64> = VecDeque::new();
        for i in 0..257 {
            reserve_slot(&mut q, 257);
            q.push_back(i);
        }
        assert_eq!(q.capacity(), 257);
        q.clear();
        shrink_idle(&mut q);
        assert_eq!(q.capacity(), 0);
    }
}
