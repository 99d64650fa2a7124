//! Connection and stream state (RFC 9113 §3.4, §5, §6, §8): reads frames incrementally from each
//! direction, assembles header blocks (HEADERS/PUSH_PROMISE + CONTINUATION, §6.10), streams DATA
//! into bounded body prefixes, pairs requests and responses by stream id and emits one
//! [`Exchange`] per stream. Frame-level parsing is in [`super::frame`], HPACK in [`super::hpack`].
//!
//! Buffering: only a partial 9-octet frame header, the payload of a non-DATA frame split across
//! chunks (header blocks capped at `2 × max(h2_max_header_list, 16 KiB)`, control frames at a
//! few hundred octets) and, while looking for a frame boundary, a resync window of at most three
//! maximum-size frames (capped at 128 KiB). DATA payload is never buffered beyond the body
//! prefix.
//!
//! Finding a boundary (midstream pickup, after a gap): a position is trusted only when three
//! consecutive frame headers from it pass [`frame::plausible`] for that direction (at close, a
//! shorter chain that ends exactly where the stream ended is enough). While in step, a header is distrusted only
//! when its length exceeds the largest MAX_FRAME_SIZE announced; a connection joined midstream
//! has not shown its SETTINGS, so there any 24-bit length is accepted.
//!
//! Emission: a stream is emitted when the response ends (END_STREAM), on RST_STREAM (with the
//! error code name), when a GOAWAY shows it was never processed or carries an error, when
//! `h2_max_streams` forces the oldest out, and at close. Request-side trailers are not kept.
//!
//! Memory budget ([`crate::budget`]): the split-frame buffer, header blocks being assembled,
//! resync windows, HPACK tables, streams and body prefixes are charged to the worker's budget.
//! A header block it cannot hold is lost like an oversized one (HPACK state unknown); a
//! control frame it cannot hold is ignored; a resync window it cannot hold is dropped and the
//! search starts over; an HPACK table it cannot hold is forgotten (state unknown, as after a
//! gap); a new stream it cannot hold is not tracked; a response it cannot hold ends its stream
//! at once (emitted without it); a body prefix it cannot hold stops growing.

use std::collections::{BTreeMap, VecDeque};

use super::frame::{self, flags, FrameHeader, FrameType, Head, HEADER_LEN};
use super::grpc::{self, MessageCounter};
use super::hpack::{Decoded, Decoder};
use super::PREFACE;
use crate::budget::{self, Account};
use crate::{
    ChunkMeta, Direction, Exchange, GrpcInfo, ParserConfig, ParserStats, Protocol, Request,
    Response,
};

/// Largest resync window per direction.
const RESYNC_MAX_BUF: usize = 128 * 1024;
/// Octets kept of a control frame's payload (SETTINGS carries 6 per parameter).
const CONTROL_KEEP: usize = 6 * 64;
/// SETTINGS frames awaiting acknowledgement that we remember per direction.
const MAX_PENDING_SETTINGS: usize = 8;
/// Interim (1xx) responses remembered per stream.
const MAX_INTERIM: usize = 16;
/// What a tracked stream costs beyond its strings: its entry in the stream map.
const STREAM_SLOT: usize = std::mem::size_of::<Stream>() + std::mem::size_of::<u32>();
/// Split-frame buffers up to this capacity are kept for the next split frame.
const FRAME_BUF_REUSE: usize = 16 * 1024;

/// Where a direction's reader is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Matching the client preface (RFC 9113 §3.4).
    Preface { matched: usize },
    /// Between frames: collecting a 9-octet header.
    Header,
    /// Inside a DATA payload, streamed to the stream's body. `rest` counts what is left of the
    /// whole payload, `data_left` of the data part; `pad_pending` until the pad length octet.
    Data {
        head: Head,
        pad_pending: bool,
        data_left: u32,
        rest: u32,
    },
    /// Inside a non-DATA payload kept in `frame_buf` (up to `keep` octets). `refused`: the
    /// memory budget refused to keep it (nothing more is kept of it).
    Buffer {
        head: Head,
        rest: u32,
        keep: usize,
        truncated: bool,
        refused: bool,
    },
    /// Inside a payload we ignore or lost.
    Skip { rest: u32 },
    /// Looking for a frame boundary.
    Resync,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct Block {
    kind: BlockKind,
    stream: u32,
    end_stream: bool,
    buf: Vec<u8>,
    /// Part of the block was lost (gap, oversize, malformed): skip to END_HEADERS, decode nothing.
    lost: bool,
    at: At,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Headers,
    PushPromise { promised: u32 },
}

/// When and where a frame started.
#[derive(Debug, Clone, Copy, Default)]
struct At {
    ts: i64,
    offset: u64,
    ack: Option<u64>,
}

/// SETTINGS values that matter to us, sent by one side and waiting for the peer's ACK.
#[derive(Debug, Clone, Copy, Default)]
struct PendingSettings {
    table_size: Option<u32>,
    max_frame: Option<u32>,
}

/// One direction. The capacities of `frame_buf`, `resync_buf` and the open block's buffer,
/// and `hpack_charged` for the HPACK table, are charged to the connection's [`Account`].
#[derive(Debug)]
struct DirState {
    dir: Direction,
    phase: Phase,
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    frame_buf: Vec<u8>,
    resync_buf: Vec<u8>,
    resync_scan: usize,
    /// Stream offset of `resync_buf[0]`.
    resync_start: u64,
    block: Option<Block>,
    hpack: Decoder,
    /// What the HPACK table is charged ([`Decoder::table_bytes`] when last settled).
    hpack_charged: usize,
    /// MAX_FRAME_SIZE acknowledged for frames this direction sends.
    max_frame: u32,
    /// Largest MAX_FRAME_SIZE announced for this direction, acknowledged or not (tolerance).
    max_frame_seen: u32,
    /// Whether the settings of the connection were seen from the start.
    settings_known: bool,
    /// SETTINGS this direction sent, oldest first, waiting for the other direction's ACK.
    pending_settings: VecDeque<PendingSettings>,
    /// Stream offset of the next octet.
    pos: u64,
    /// Where the frame being read started.
    frame_at: At,
    /// Bytes to run through the reader again after a resync found a boundary inside them.
    replay: Option<Vec<u8>>,
    /// The last chunk's metadata (for frames confirmed only when the stream ends).
    last_meta: ChunkMeta,
}

impl DirState {
    fn new(dir: Direction, phase: Phase, cfg: &ParserConfig, known: bool) -> Self {
        DirState {
            dir,
            phase,
            hdr: [0; HEADER_LEN],
            hdr_len: 0,
            frame_buf: Vec::new(),
            resync_buf: Vec::new(),
            resync_scan: 0,
            resync_start: 0,
            block: None,
            hpack: if known {
                Decoder::new(cfg.h2_max_table_size)
            } else {
                Decoder::unknown(cfg.h2_max_table_size)
            },
            hpack_charged: 0,
            max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            max_frame_seen: frame::DEFAULT_MAX_FRAME_SIZE,
            settings_known: known,
            pending_settings: VecDeque::new(),
            pos: 0,
            frame_at: At::default(),
            replay: None,
            last_meta: ChunkMeta::default(),
        }
    }

    /// Longest frame accepted while in sync: what was announced, or anything when we joined late.
    fn in_sync_limit(&self) -> u32 {
        if self.settings_known {
            self.max_frame.max(self.max_frame_seen)
        } else {
            frame::MAX_MAX_FRAME_SIZE
        }
    }

    /// Longest frame accepted when looking for a boundary.
    fn resync_limit(&self) -> u32 {
        let cap = ((RESYNC_MAX_BUF - (RESYNC_CHAIN + 1) * HEADER_LEN) / RESYNC_CHAIN) as u32;
        self.max_frame.max(self.max_frame_seen).min(cap)
    }

    fn resync_cap(&self) -> usize {
        (RESYNC_CHAIN * (HEADER_LEN + self.resync_limit() as usize) + HEADER_LEN)
            .min(RESYNC_MAX_BUF)
    }
}

/// One stream: the exchange being built and what each side has finished.
#[derive(Debug)]
struct Stream {
    ex: Exchange,
    req_done: bool,
    interim: Vec<u16>,
    grpc: Option<(MessageCounter, MessageCounter)>,
    /// Bytes charged to the budget for this stream ([`stream_cost`]).
    charged: usize,
    /// Per direction: the budget refused to grow the body prefix, which stays as it is.
    body_stopped: [bool; 2],
}

/// One HTTP/2 connection, both directions.
#[derive(Debug)]
pub struct Http2Conn {
    cfg: ParserConfig,
    dirs: [DirState; 2],
    streams: BTreeMap<u32, Stream>,
    /// What this connection holds charged to the worker's memory budget.
    acct: Account,
    /// Stream 1 came from an h2c upgrade and is not charged yet (the constructor has no
    /// counters): it is on the next call that has them.
    adopt: bool,
}

/// Index into `Http2Conn::dirs`. Every index used is this, `1 - di(..)` or a `0..2` loop, so
/// indexing `dirs` cannot fail.
fn di(dir: Direction) -> usize {
    match dir {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

impl Http2Conn {
    /// A connection seen from its start (client preface expected on the to-server side).
    pub fn new(cfg: ParserConfig) -> Self {
        Http2Conn {
            dirs: [
                DirState::new(
                    Direction::ToServer,
                    Phase::Preface { matched: 0 },
                    &cfg,
                    true,
                ),
                DirState::new(Direction::ToClient, Phase::Header, &cfg, true),
            ],
            acct: Account::new(&cfg),
            adopt: false,
            cfg,
            streams: BTreeMap::new(),
        }
    }

    /// A connection picked up midstream: both directions look for a frame boundary, and both
    /// HPACK tables start unknown.
    pub fn midstream(cfg: ParserConfig) -> Self {
        Http2Conn {
            dirs: [
                DirState::new(Direction::ToServer, Phase::Resync, &cfg, false),
                DirState::new(Direction::ToClient, Phase::Resync, &cfg, false),
            ],
            acct: Account::new(&cfg),
            adopt: false,
            cfg,
            streams: BTreeMap::new(),
        }
    }

    /// A connection upgraded from HTTP/1.1 by `Upgrade: h2c` (RFC 7540 §3.2): the request becomes
    /// stream 1, half-closed from the client; the client then sends the preface.
    pub fn upgraded(cfg: ParserConfig, request: Request) -> Self {
        let mut c = Http2Conn::new(cfg);
        let grpc = request.header("content-type").is_some_and(grpc::is_grpc);
        let target = request.target.clone();
        let mut ex = Exchange::new(Protocol::Http2, request);
        ex.stream_id = Some(1);
        let mut s = Stream {
            ex,
            req_done: true,
            interim: Vec::new(),
            grpc: None,
            charged: 0,
            body_stopped: [false; 2],
        };
        if grpc {
            start_grpc(&mut s, &target);
        }
        c.streams.insert(1, s);
        c.adopt = true;
        c
    }

    /// Charges the upgraded request's stream (see `adopt`); refused, it is emitted at once.
    fn adopt_upgraded(&mut self, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        if !std::mem::take(&mut self.adopt) {
            return;
        }
        let Some(s) = self.streams.get_mut(&1) else {
            return;
        };
        let cost = stream_cost(s);
        if self.acct.charge(stats, cost, 0) {
            s.charged = cost;
        } else if let Some(s) = self.streams.remove(&1) {
            emit(s, true, out, stats, &mut self.acct);
        }
    }

    /// Feeds reassembled bytes of one direction.
    pub fn on_data(
        &mut self,
        dir: Direction,
        data: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        let d = di(dir);
        self.adopt_upgraded(out, stats);
        self.dirs[d].pos = meta.offset;
        self.dirs[d].last_meta = meta;
        self.finish_empty_data(d, out, stats);
        let mut off = 0;
        loop {
            self.drain_replay(d, meta, out, stats);
            let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) else {
                break;
            };
            off += self.feed(d, rest, meta, out, stats);
        }
        self.settle_hpack_all(stats);
    }

    /// Checks that what the connection holds charged is exactly what its buffers, HPACK
    /// tables and streams cost (between calls).
    #[cfg(test)]
    pub(crate) fn check_budget(&self) -> Result<(), String> {
        let mut sum = 0;
        for st in &self.dirs {
            if st.replay.is_some() {
                return Err("a replay outlived its call".into());
            }
            if st.hpack_charged != st.hpack.table_bytes() {
                return Err(format!(
                    "HPACK table charged {} holds {}",
                    st.hpack_charged,
                    st.hpack.table_bytes()
                ));
            }
            sum += st.frame_buf.capacity()
                + st.resync_buf.capacity()
                + st.block.as_ref().map_or(0, |b| b.buf.capacity())
                + st.hpack_charged;
        }
        for (&id, s) in &self.streams {
            let want = if self.adopt && id == 1 {
                0
            } else {
                stream_cost(s)
            };
            if s.charged != want {
                return Err(format!("stream {id} charged {} costs {want}", s.charged));
            }
            sum += s.charged;
        }
        if sum != self.acct.held() {
            return Err(format!("account holds {} for {sum}", self.acct.held()));
        }
        Ok(())
    }

    /// What the connection holds charged to the budget.
    #[cfg(test)]
    pub(crate) fn budget_held(&self) -> usize {
        self.acct.held()
    }

    /// Brings what the HPACK table of direction `d` is charged in line with what it holds. A
    /// table that grew beyond what the budget allows is forgotten (state unknown, as after a
    /// gap: later references to it are reported unknown, never guessed).
    fn settle_hpack(&mut self, d: usize, stats: &mut ParserStats) {
        let st = &mut self.dirs[d];
        let now = st.hpack.table_bytes();
        if now > st.hpack_charged {
            if self.acct.charge(stats, now - st.hpack_charged, now) {
                st.hpack_charged = now;
                return;
            }
            st.hpack.mark_unknown();
        }
        let now = st.hpack.table_bytes();
        self.acct
            .release(stats, st.hpack_charged.saturating_sub(now));
        st.hpack_charged = now.min(st.hpack_charged);
    }

    /// [`Self::settle_hpack`] for both directions (tables forgotten during a call give their
    /// charge back at its end).
    fn settle_hpack_all(&mut self, stats: &mut ParserStats) {
        for d in 0..2 {
            self.settle_hpack(d, stats);
        }
    }

    /// Runs octets a resync handed back through the reader. A resync inside them hands back a
    /// suffix of what was fed, so the loop always makes progress.
    fn drain_replay(
        &mut self,
        d: usize,
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        let Some(mut rb) = self.dirs[d].replay.take() else {
            return;
        };
        let mut roff = 0;
        while roff < rb.len() {
            roff += self.feed(d, rb.get(roff..).unwrap_or_default(), meta, out, stats);
            if let Some(mut nb) = self.dirs[d].replay.take() {
                nb.extend_from_slice(rb.get(roff..).unwrap_or_default());
                rb = nb;
                roff = 0;
            }
        }
    }

    /// `len` bytes of one direction were lost.
    pub fn on_gap(&mut self, dir: Direction, len: u64, stats: &mut ParserStats) {
        self.on_gap_inner(dir, len, stats);
        self.settle_hpack_all(stats);
    }

    fn on_gap_inner(&mut self, dir: Direction, len: u64, stats: &mut ParserStats) {
        if len == 0 {
            return;
        }
        // `gap_bytes` is counted by the session, which sees every gap whatever the protocol.
        let d = di(dir);
        let st = &mut self.dirs[d];
        st.pos = st.pos.saturating_add(len);
        match st.phase {
            Phase::Preface { .. } | Phase::Header => self.desync(d, stats),
            Phase::Data {
                head,
                pad_pending,
                data_left,
                rest,
            } => {
                if len > u64::from(rest) {
                    self.mark_stream_gap(head.stream, None);
                    self.desync(d, stats);
                    return;
                }
                stats.h2.data_gaps += 1;
                let len = len as u32;
                let rest = rest - len;
                if pad_pending {
                    // The pad length octet is gone: data and padding can no longer be told apart.
                    self.mark_stream_gap(head.stream, Some((d, u64::from(len))));
                    self.dirs[d].phase = Phase::Data {
                        head,
                        pad_pending: false,
                        data_left: 0,
                        rest,
                    };
                    return;
                }
                let lost = len.min(data_left);
                self.mark_stream_gap(head.stream, Some((d, u64::from(lost))));
                self.dirs[d].phase = Phase::Data {
                    head,
                    pad_pending,
                    data_left: data_left - lost,
                    rest,
                };
            }
            Phase::Buffer { head, rest, .. } => {
                if matches!(
                    head.kind,
                    FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
                ) {
                    stats.h2.header_block_gaps += 1;
                    self.lose_block(d, head, stats);
                }
                if len > u64::from(rest) {
                    self.desync(d, stats);
                } else {
                    self.dirs[d].frame_buf.clear();
                    self.dirs[d].phase = Phase::Skip {
                        rest: rest - len as u32,
                    };
                }
            }
            Phase::Skip { rest } => {
                if len > u64::from(rest) {
                    self.desync(d, stats);
                } else {
                    self.dirs[d].phase = Phase::Skip {
                        rest: rest - len as u32,
                    };
                }
            }
            Phase::Resync => {
                let st = &mut self.dirs[d];
                stats.resync_skipped_bytes += st.resync_buf.len() as u64;
                st.resync_buf.clear();
                st.resync_scan = 0;
                st.resync_start = st.pos;
            }
        }
    }

    /// The connection ended: emit what is pending, and give back to the worker's budget
    /// everything the connection held charged.
    pub fn on_close(&mut self, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        self.adopt_upgraded(out, stats);
        for d in 0..2 {
            // Frames still waiting in the resync window can be confirmed by the end of stream.
            if matches!(self.dirs[d].phase, Phase::Resync) && !self.dirs[d].resync_buf.is_empty() {
                self.resync_scan(d, &[], true, stats);
                let meta = self.dirs[d].last_meta;
                self.drain_replay(d, meta, out, stats);
            }
            self.finish_empty_data(d, out, stats);
        }
        let streams = std::mem::take(&mut self.streams);
        for (_, s) in streams {
            emit(s, true, out, stats, &mut self.acct);
        }
        for st in &mut self.dirs {
            self.acct.free(&mut st.frame_buf, stats);
            self.acct.free(&mut st.resync_buf, stats);
            if let Some(mut b) = st.block.take() {
                self.acct.free(&mut b.buf, stats);
            }
            st.hpack.mark_unknown();
            st.hpack_charged = 0;
        }
        self.acct.close(stats);
    }

    /// Drops the header block open in direction `d`, if any, giving back its buffer.
    fn drop_block(&mut self, d: usize, stats: &mut ParserStats) {
        if let Some(mut b) = self.dirs[d].block.take() {
            self.acct.free(&mut b.buf, stats);
        }
    }

    /// A header block of direction `d` was damaged: it and the HPACK state it carried are lost.
    fn lose_block(&mut self, d: usize, head: Head, stats: &mut ParserStats) {
        let stream = head.stream;
        let ends = head.has(flags::END_HEADERS);
        if ends {
            // This frame would have closed the block: nothing more to skip.
            self.drop_block(d, stats);
        }
        let st = &mut self.dirs[d];
        st.hpack.mark_unknown();
        match &mut st.block {
            Some(b) => {
                b.lost = true;
                self.acct.free(&mut b.buf, stats);
            }
            None if !ends && head.kind != FrameType::Continuation => {
                st.block = Some(Block {
                    kind: BlockKind::Headers,
                    stream,
                    end_stream: head.has(flags::END_STREAM),
                    buf: Vec::new(),
                    lost: true,
                    at: st.frame_at,
                });
            }
            None => {}
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            s.ex.gap = true;
            s.ex.headers_incomplete = true;
        }
    }

    /// Marks a stream as having lost `lost` body octets in direction `d` (or just a gap).
    fn mark_stream_gap(&mut self, stream: u32, body: Option<(usize, u64)>) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.ex.gap = true;
        if let Some((d, lost)) = body {
            let b = if d == 0 {
                Some(&mut s.ex.request.body)
            } else {
                s.ex.response.as_mut().map(|r| &mut r.body)
            };
            if let Some(b) = b {
                b.bytes += lost;
                b.incomplete = true;
            }
            if let Some((rq, rs)) = &mut s.grpc {
                if d == 0 {
                    rq.skip(lost)
                } else {
                    rs.skip(lost)
                }
            }
        }
    }

    /// Lost track of frame boundaries in direction `d`: look for the next one.
    fn desync(&mut self, d: usize, stats: &mut ParserStats) {
        stats.h2.desyncs += 1;
        self.drop_block(d, stats);
        let st = &mut self.dirs[d];
        st.phase = Phase::Resync;
        st.hdr_len = 0;
        st.frame_buf.clear();
        st.resync_buf.clear();
        st.resync_scan = 0;
        st.resync_start = st.pos;
        // Header blocks may have been lost with the frames.
        st.hpack.mark_unknown();
        // Any frame of a stream still sending in this direction may have been lost.
        for s in self.streams.values_mut() {
            if d == 1 || !s.req_done {
                s.ex.gap = true;
            }
        }
    }

    /// A DATA frame whose payload was all lost to a gap still ends where it ends.
    fn finish_empty_data(&mut self, d: usize, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        if let Phase::Data { head, rest: 0, .. } = self.dirs[d].phase {
            self.dirs[d].phase = Phase::Header;
            self.end_data(d, head, out, stats);
        }
    }

    /// Processes a prefix of `input`, returning how many octets were used (all, unless a resync
    /// found a boundary, in which case `replay` is set).
    fn feed(
        &mut self,
        d: usize,
        input: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) -> usize {
        let mut used = 0;
        while let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
            if self.dirs[d].replay.is_some() {
                break;
            }
            let n = self.step(d, rest, meta, out, stats);
            used += n;
            let st = &mut self.dirs[d];
            st.pos = st.pos.wrapping_add(n as u64);
        }
        used
    }

    /// One state-machine step over `input` (non-empty). Returns octets consumed.
    fn step(
        &mut self,
        d: usize,
        input: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) -> usize {
        let phase = self.dirs[d].phase;
        match phase {
            Phase::Preface { matched } => {
                let want = PREFACE.get(matched..).unwrap_or_default();
                let n = want.len().min(input.len());
                if input.get(..n) == want.get(..n) {
                    let matched = matched + n;
                    self.dirs[d].phase = if matched == PREFACE.len() {
                        stats.h2.prefaces += 1;
                        Phase::Header
                    } else {
                        Phase::Preface { matched }
                    };
                    n
                } else {
                    stats.h2.preface_mismatch += 1;
                    self.desync(d, stats);
                    0
                }
            }
            Phase::Header => self.step_header(d, input, meta, out, stats),
            Phase::Data {
                head,
                pad_pending,
                data_left,
                rest,
            } => {
                let n = (rest as usize).min(input.len());
                let chunk = input.get(..n).unwrap_or_default();
                let mut data = chunk;
                let mut data_left = data_left;
                let mut pad_pending = pad_pending;
                let rest_after = rest - n as u32;
                if pad_pending {
                    if let Some((&pad, tail)) = data.split_first() {
                        pad_pending = false;
                        if u32::from(pad) >= rest {
                            stats.h2.frame_errors += 1;
                            // Malformed padding: drop the frame's data, keep its boundary.
                            data = &[];
                            data_left = 0;
                        } else {
                            data_left = rest - 1 - u32::from(pad);
                            data = tail;
                        }
                    }
                }
                let take = (data_left as usize).min(data.len());
                if take > 0 {
                    self.body(d, head.stream, data.get(..take).unwrap_or_default(), stats);
                    data_left -= take as u32;
                }
                if rest_after == 0 {
                    self.dirs[d].phase = Phase::Header;
                    self.end_data(d, head, out, stats);
                } else {
                    self.dirs[d].phase = Phase::Data {
                        head,
                        pad_pending,
                        data_left,
                        rest: rest_after,
                    };
                }
                n
            }
            Phase::Buffer {
                head,
                rest,
                keep,
                truncated,
                mut refused,
            } => {
                let n = (rest as usize).min(input.len());
                let st = &mut self.dirs[d];
                let room = if refused {
                    0
                } else {
                    keep.saturating_sub(st.frame_buf.len())
                };
                let k = room.min(n);
                let part = input.get(..k).unwrap_or_default();
                if k > 0
                    && !self
                        .acct
                        .grow(&mut st.frame_buf, part, keep, head.len as usize, stats)
                {
                    // The budget cannot hold this frame: nothing more is kept of it.
                    refused = true;
                    self.acct.free(&mut st.frame_buf, stats);
                }
                let truncated = truncated || k < n;
                let rest = rest - n as u32;
                if rest == 0 {
                    st.phase = Phase::Header;
                    // Still charged while the frame is handled.
                    let payload = std::mem::take(&mut st.frame_buf);
                    self.frame(d, head, &payload, truncated, refused, out, stats);
                    // Keep a small allocation for the next split frame; give big ones back, as
                    // idle connections are many.
                    let st = &mut self.dirs[d];
                    if st.frame_buf.capacity() == 0 && payload.capacity() <= FRAME_BUF_REUSE {
                        st.frame_buf = payload;
                        st.frame_buf.clear();
                    } else {
                        self.acct.release(stats, payload.capacity());
                    }
                } else {
                    st.phase = Phase::Buffer {
                        head,
                        rest,
                        keep,
                        truncated,
                        refused,
                    };
                }
                n
            }
            Phase::Skip { rest } => {
                let n = (rest as usize).min(input.len());
                let rest = rest - n as u32;
                if rest == 0 {
                    self.dirs[d].phase = Phase::Header;
                } else {
                    self.dirs[d].phase = Phase::Skip { rest };
                }
                n
            }
            Phase::Resync => self.step_resync(d, input, stats),
        }
    }

    fn step_header(
        &mut self,
        d: usize,
        input: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) -> usize {
        let st = &mut self.dirs[d];
        if st.hdr_len == 0 {
            st.frame_at = At {
                ts: meta.ts_us,
                offset: st.pos,
                ack: meta.peer_ack,
            };
        }
        let (head, used) = if st.hdr_len == 0 && input.len() >= HEADER_LEN {
            match FrameHeader::new_checked(input) {
                Ok(h) => (h.to_owned(), HEADER_LEN),
                Err(_) => return input.len(),
            }
        } else {
            let n = (HEADER_LEN - st.hdr_len).min(input.len());
            if let (Some(dst), Some(src)) =
                (st.hdr.get_mut(st.hdr_len..st.hdr_len + n), input.get(..n))
            {
                dst.copy_from_slice(src);
            }
            st.hdr_len += n;
            if st.hdr_len < HEADER_LEN {
                return n;
            }
            st.hdr_len = 0;
            match FrameHeader::new_checked(&st.hdr) {
                Ok(h) => (h.to_owned(), n),
                Err(_) => return n,
            }
        };
        stats.h2.frames += 1;
        if head.len > st.in_sync_limit() {
            stats.h2.oversized_frames += 1;
            // Not a frame we believe: we were out of step. Look again from the header's second
            // octet.
            let assembled = used < HEADER_LEN;
            let tail = st.hdr.get(1..).unwrap_or_default().to_vec();
            let start = st.frame_at.offset;
            self.desync(d, stats);
            if !assembled {
                return 1;
            }
            // The header came in pieces: replay its octets after the first, this chunk's part
            // included (consumed now). `feed` adds `used` to `pos` after this step.
            let st = &mut self.dirs[d];
            st.pos = start.wrapping_add(1).wrapping_sub(used as u64);
            st.replay = Some(tail);
            return used;
        }
        // Fast path: a non-DATA frame wholly inside this chunk is handled from the borrowed input.
        let len = head.len as usize;
        if head.kind != FrameType::Data {
            if let Some(payload) = input.get(used..used + len) {
                self.frame(d, head, payload, false, false, out, stats);
                return used + len;
            }
        }
        self.begin_payload(d, head, out, stats);
        used
    }

    fn begin_payload(
        &mut self,
        d: usize,
        head: Head,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        if head.len == 0 {
            self.dirs[d].phase = Phase::Header;
            match head.kind {
                FrameType::Data => {
                    self.check_block_order(d, head, stats);
                    self.end_data(d, head, out, stats);
                }
                _ => self.frame(d, head, &[], false, false, out, stats),
            }
            return;
        }
        let phase = match head.kind {
            FrameType::Data => {
                self.check_block_order(d, head, stats);
                Phase::Data {
                    head,
                    pad_pending: head.has(flags::PADDED),
                    data_left: if head.has(flags::PADDED) { 0 } else { head.len },
                    rest: head.len,
                }
            }
            FrameType::Headers | FrameType::PushPromise | FrameType::Continuation => {
                Phase::Buffer {
                    head,
                    rest: head.len,
                    keep: block_cap(&self.cfg),
                    truncated: false,
                    refused: false,
                }
            }
            FrameType::Settings | FrameType::RstStream | FrameType::Goaway => Phase::Buffer {
                head,
                rest: head.len,
                keep: CONTROL_KEEP,
                truncated: false,
                refused: false,
            },
            _ => {
                // PRIORITY, PING, WINDOW_UPDATE, unknown: nothing to keep.
                self.frame(d, head, &[], true, false, out, stats);
                Phase::Skip { rest: head.len }
            }
        };
        self.dirs[d].phase = phase;
    }

    fn step_resync(&mut self, d: usize, input: &[u8], stats: &mut ParserStats) -> usize {
        self.resync_scan(d, input, false, stats)
    }

    /// Appends `input` to the resync window and looks for a boundary. `at_end`: the stream ended.
    fn resync_scan(
        &mut self,
        d: usize,
        input: &[u8],
        at_end: bool,
        stats: &mut ParserStats,
    ) -> usize {
        let st = &mut self.dirs[d];
        let cap = st.resync_cap();
        let limit = st.resync_limit();
        let dir = Some(st.dir);
        if st.resync_buf.is_empty() && !at_end {
            // Nothing buffered: scan the input where it lies, and keep only the tail that may
            // still start a frame. Copying the whole input here would make repeated desyncs
            // within one large chunk quadratic.
            let (found, p) = scan(input, 0, dir, limit, cap, false);
            stats.resync_skipped_bytes += p as u64;
            if found {
                stats.resyncs += 1;
                st.phase = Phase::Header;
                st.hdr_len = 0;
                return p;
            }
            st.resync_start = st.pos.wrapping_add(p as u64);
            let tail = input.get(p..).unwrap_or_default();
            if !self
                .acct
                .grow(&mut st.resync_buf, tail, cap, tail.len(), stats)
            {
                // The budget cannot hold the window: these octets are skipped.
                stats.resync_skipped_bytes += tail.len() as u64;
                st.resync_start = st.pos.wrapping_add(input.len() as u64);
            }
            st.resync_scan = 0;
            return input.len();
        }
        let room = cap.saturating_sub(st.resync_buf.len());
        let n = room.min(input.len());
        let old_len = st.resync_buf.len();
        let part = input.get(..n).unwrap_or_default();
        if !self
            .acct
            .grow(&mut st.resync_buf, part, cap, old_len + n, stats)
        {
            // The budget cannot hold the window: drop it and start over from this input.
            stats.resync_skipped_bytes += old_len as u64;
            self.acct.free(&mut st.resync_buf, stats);
            st.resync_scan = 0;
            st.resync_start = st.pos;
            if at_end {
                return 0;
            }
            return self.resync_scan(d, input, false, stats);
        }
        let (found, p) = scan(&st.resync_buf, st.resync_scan, dir, limit, cap, at_end);
        if found {
            stats.resyncs += 1;
            stats.resync_skipped_bytes += p as u64;
            st.resync_scan = 0;
            st.phase = Phase::Header;
            st.hdr_len = 0;
            // The window is no longer needed: its memory goes back (a replay is used up
            // within this call).
            let mut buf = self.acct.take(&mut st.resync_buf, stats);
            if p >= old_len {
                // The boundary is in this input: consume up to it; the rest is read as frames.
                return p - old_len;
            }
            // The boundary is in octets buffered from earlier input: hand those back for replay
            // and leave this input unconsumed, to be read after them.
            buf.truncate(old_len);
            buf.drain(..p);
            st.pos = st.resync_start.wrapping_add(p as u64);
            st.replay = Some(buf);
            return 0;
        }
        // Nothing before `p` can start a frame we could confirm: drop it.
        let drop = p.min(st.resync_buf.len());
        st.resync_buf.drain(..drop);
        stats.resync_skipped_bytes += drop as u64;
        st.resync_start = st.resync_start.wrapping_add(drop as u64);
        st.resync_scan = 0;
        if at_end {
            stats.resync_skipped_bytes += st.resync_buf.len() as u64;
            st.resync_buf.clear();
        }
        n
    }

    /// A frame other than CONTINUATION while a header block is open is a protocol error
    /// (RFC 9113 §6.10): the block is lost.
    fn check_block_order(&mut self, d: usize, head: Head, stats: &mut ParserStats) {
        if let Some(b) = &self.dirs[d].block {
            if head.kind != FrameType::Continuation || head.stream != b.stream {
                stats.h2.continuation_errors += 1;
                let stream = b.stream;
                self.drop_block(d, stats);
                self.dirs[d].hpack.mark_unknown();
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.ex.headers_incomplete = true;
                }
            }
        }
    }

    /// A complete non-DATA frame (payload possibly truncated to what we keep). `refused`: the
    /// memory budget kept none of it (counted there): a header block is lost, any other frame
    /// ignored.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        d: usize,
        head: Head,
        payload: &[u8],
        truncated: bool,
        refused: bool,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        self.check_block_order(d, head, stats);
        let dir = self.dirs[d].dir;
        if refused {
            match head.kind {
                FrameType::Headers | FrameType::PushPromise => self.lose_block(d, head, stats),
                FrameType::Continuation => self.continuation(d, head, &[], true, true, out, stats),
                _ => {}
            }
            return;
        }
        match head.kind {
            FrameType::Data => {}
            FrameType::Headers => {
                if truncated {
                    stats.h2.header_blocks_oversized += 1;
                    self.lose_block(d, head, stats);
                    return;
                }
                match frame::headers_fragment(&head, payload) {
                    Ok(frag) => self.open_block(d, head, BlockKind::Headers, frag, out, stats),
                    Err(_) => {
                        stats.h2.frame_errors += 1;
                        self.lose_block(d, head, stats);
                    }
                }
            }
            FrameType::PushPromise => {
                stats.h2.push_promises += 1;
                if dir == Direction::ToServer {
                    stats.h2.frame_errors += 1;
                }
                if truncated {
                    stats.h2.header_blocks_oversized += 1;
                    self.lose_block(d, head, stats);
                    return;
                }
                match frame::push_promise(&head, payload) {
                    Ok((promised, frag)) => self.open_block(
                        d,
                        head,
                        BlockKind::PushPromise { promised },
                        frag,
                        out,
                        stats,
                    ),
                    Err(_) => {
                        stats.h2.frame_errors += 1;
                        self.lose_block(d, head, stats);
                    }
                }
            }
            FrameType::Continuation => {
                self.continuation(d, head, payload, truncated, false, out, stats)
            }
            FrameType::RstStream => {
                stats.h2.rst_streams += 1;
                match frame::u32_at(head.kind, payload, 0) {
                    Ok(code) => {
                        if let Some(mut s) = self.streams.remove(&head.stream) {
                            s.ex.reset = Some(frame::error_code_name(code));
                            emit(s, true, out, stats, &mut self.acct);
                        }
                    }
                    Err(_) => stats.h2.frame_errors += 1,
                }
            }
            FrameType::Settings => self.settings(d, head, payload, stats),
            FrameType::Goaway => {
                stats.h2.goaways += 1;
                match frame::goaway(payload) {
                    Ok((last, code)) => self.goaway(dir, last, code, out, stats),
                    Err(_) => stats.h2.frame_errors += 1,
                }
            }
            FrameType::Unknown(_) => stats.h2.unknown_frames += 1,
            FrameType::Priority | FrameType::Ping | FrameType::WindowUpdate => {}
        }
    }

    fn settings(&mut self, d: usize, head: Head, payload: &[u8], stats: &mut ParserStats) {
        stats.h2.settings += 1;
        if head.has(flags::ACK) {
            // The ACK travels in direction `d`; it acknowledges what the other side sent, which
            // governs what `d` sends from now on (RFC 9113 §6.5.3).
            let Some(p) = self.dirs[1 - d].pending_settings.pop_front() else {
                return;
            };
            let st = &mut self.dirs[d];
            if let Some(t) = p.table_size {
                st.hpack.apply_settings_limit(t as usize);
            }
            if let Some(m) = p.max_frame {
                st.max_frame = m;
            }
            return;
        }
        let Ok(params) = frame::settings_params(payload) else {
            stats.h2.frame_errors += 1;
            return;
        };
        let mut p = PendingSettings::default();
        for (id, v) in params {
            match id {
                frame::settings::HEADER_TABLE_SIZE => p.table_size = Some(v),
                frame::settings::MAX_FRAME_SIZE
                    if (frame::DEFAULT_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&v) =>
                {
                    p.max_frame = Some(v)
                }
                frame::settings::MAX_FRAME_SIZE => stats.h2.frame_errors += 1,
                _ => {}
            }
        }
        if let Some(m) = p.max_frame {
            let other = &mut self.dirs[1 - d];
            other.max_frame_seen = other.max_frame_seen.max(m);
        }
        let st = &mut self.dirs[d];
        if st.pending_settings.len() >= MAX_PENDING_SETTINGS {
            st.pending_settings.pop_front();
        }
        st.pending_settings.push_back(p);
    }

    fn goaway(
        &mut self,
        dir: Direction,
        last: u32,
        code: u32,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        // Streams the receiver of the GOAWAY opened above `last` were never processed (RFC 9113
        // §6.8). A GOAWAY with an error ends everything now.
        let receiver_parity = if dir == Direction::ToClient { 1 } else { 0 };
        let ids: Vec<u32> = self
            .streams
            .keys()
            .copied()
            .filter(|&id| code != 0 || (id > last && id % 2 == receiver_parity))
            .collect();
        for id in ids {
            if let Some(s) = self.streams.remove(&id) {
                emit(s, true, out, stats, &mut self.acct);
            }
        }
    }

    fn open_block(
        &mut self,
        d: usize,
        head: Head,
        kind: BlockKind,
        frag: &[u8],
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        let at = self.dirs[d].frame_at;
        let end_stream = head.kind == FrameType::Headers && head.has(flags::END_STREAM);
        if head.has(flags::END_HEADERS) {
            let head_end = at
                .offset
                .wrapping_add(HEADER_LEN as u64 + u64::from(head.len));
            self.complete_block(
                d,
                kind,
                head.stream,
                end_stream,
                frag,
                at,
                head_end,
                out,
                stats,
            );
        } else {
            // Refused by the budget: the block is lost as an oversized one is.
            let buf = self.acct.copy(frag, stats);
            let lost = buf.is_none();
            if lost {
                self.dirs[d].hpack.mark_unknown();
                if let Some(s) = self.streams.get_mut(&head.stream) {
                    s.ex.headers_incomplete = true;
                    s.ex.gap = true;
                }
            }
            self.dirs[d].block = Some(Block {
                kind,
                stream: head.stream,
                end_stream,
                buf: buf.unwrap_or_default(),
                lost,
                at,
            });
        }
    }

    /// A CONTINUATION frame. `refused`: the budget kept none of its payload (the block is
    /// lost, counted by the budget rather than as oversized).
    #[allow(clippy::too_many_arguments)]
    fn continuation(
        &mut self,
        d: usize,
        head: Head,
        payload: &[u8],
        truncated: bool,
        refused: bool,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        let cap = block_cap(&self.cfg);
        let st = &mut self.dirs[d];
        let Some(mut b) = st.block.take() else {
            // A CONTINUATION with no open block: its fragment may have changed the table.
            stats.h2.continuation_errors += 1;
            st.hpack.mark_unknown();
            return;
        };
        if !b.lost {
            let oversized = truncated || b.buf.len() + payload.len() > cap;
            if oversized && !refused {
                stats.h2.header_blocks_oversized += 1;
            }
            let dropped = b.buf.len() + payload.len();
            if refused || oversized || !self.acct.grow(&mut b.buf, payload, cap, dropped, stats) {
                b.lost = true;
                self.acct.free(&mut b.buf, stats);
                st.hpack.mark_unknown();
            }
        }
        if !head.has(flags::END_HEADERS) {
            st.block = Some(b);
            return;
        }
        if b.lost {
            if let Some(s) = self.streams.get_mut(&b.stream) {
                s.ex.headers_incomplete = true;
                s.ex.gap = true;
            }
            return;
        }
        let head_end = st
            .frame_at
            .offset
            .wrapping_add(HEADER_LEN as u64 + u64::from(head.len));
        let buf = self.acct.take(&mut b.buf, stats);
        self.complete_block(
            d,
            b.kind,
            b.stream,
            b.end_stream,
            &buf,
            b.at,
            head_end,
            out,
            stats,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_block(
        &mut self,
        d: usize,
        kind: BlockKind,
        stream: u32,
        end_stream: bool,
        block: &[u8],
        at: At,
        head_end: u64,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        stats.h2.header_blocks += 1;
        let (decoded, _err) =
            self.dirs[d]
                .hpack
                .decode(block, self.cfg.h2_max_header_list, &mut stats.h2);
        // Insertions grew the table: charge them (or forget the table).
        self.settle_hpack(d, stats);
        let dir = self.dirs[d].dir;
        match (dir, kind) {
            (Direction::ToServer, BlockKind::Headers) => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    // Trailers of the request (RFC 9113 §8.1): not kept, but they end the body.
                    s.headers_incomplete_if(decoded.incomplete);
                    if end_stream {
                        s.req_done = true;
                    }
                    return;
                }
                if !decoded
                    .fields
                    .iter()
                    .any(|(n, _)| n == ":method" || n == ":path")
                {
                    // Not a request head: trailers of a stream we no longer track.
                    stats.h2.orphan_frames += 1;
                    return;
                }
                self.new_stream(stream, decoded, at, head_end, end_stream, false, out, stats);
            }
            (Direction::ToClient, BlockKind::PushPromise { promised }) => {
                self.new_stream(promised, decoded, at, head_end, true, true, out, stats);
            }
            (Direction::ToServer, BlockKind::PushPromise { .. }) => {}
            (Direction::ToClient, BlockKind::Headers) => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    if decoded.fields.iter().any(|(n, _)| n == ":status") {
                        stats.orphan_responses += 1;
                    } else {
                        stats.h2.orphan_frames += 1;
                    }
                    return;
                };
                s.headers_incomplete_if(decoded.incomplete);
                match &mut s.ex.response {
                    Some(r) => {
                        let trailers: Vec<(String, String)> = decoded
                            .fields
                            .into_iter()
                            .filter(|(n, _)| !n.starts_with(':'))
                            .collect();
                        // Kept if the budget holds them.
                        let old = budget::fields_cost(&r.trailers);
                        let new = budget::fields_cost(&trailers);
                        if self.acct.charge(stats, new, new) {
                            r.trailers = trailers;
                            s.charged += new;
                            self.acct.release(stats, old);
                            s.charged -= old.min(s.charged);
                        } else {
                            s.ex.headers_incomplete = true;
                        }
                    }
                    None => {
                        let mut r = Response {
                            ts_us: at.ts,
                            version: "HTTP/2".to_string(),
                            stream_offset: at.offset,
                            peer_ack: at.ack,
                            ..Response::default()
                        };
                        for (n, v) in decoded.fields {
                            if n == ":status" {
                                r.status = v.trim().parse().unwrap_or(0);
                            } else if !n.starts_with(':') {
                                r.headers.push((n, v));
                            }
                        }
                        if (100..200).contains(&r.status) && !end_stream {
                            if s.interim.len() < MAX_INTERIM {
                                s.interim.push(r.status);
                            }
                            return;
                        }
                        r.interim = std::mem::take(&mut s.interim);
                        let cost = budget::response_cost(&r);
                        if !self.acct.charge(stats, cost, cost) {
                            // The budget cannot hold the response: the stream ends now,
                            // emitted without it; its later frames are orphans.
                            if let Some(mut s) = self.streams.remove(&stream) {
                                s.ex.gap = true;
                                emit(s, true, out, stats, &mut self.acct);
                            }
                            return;
                        }
                        s.charged += cost;
                        s.ex.response = Some(r);
                    }
                }
                if end_stream {
                    if let Some(s) = self.streams.remove(&stream) {
                        emit(s, false, out, stats, &mut self.acct);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_stream(
        &mut self,
        id: u32,
        decoded: Decoded,
        at: At,
        head_end: u64,
        req_done: bool,
        pushed: bool,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        if self.cfg.h2_max_streams == 0 {
            stats.h2.stream_overflow += 1;
            return;
        }
        if let Some(old) = self.streams.remove(&id) {
            // Stream id reuse is a protocol error; keep what the old one had.
            stats.h2.frame_errors += 1;
            emit(old, true, out, stats, &mut self.acct);
        }
        while self.streams.len() >= self.cfg.h2_max_streams {
            stats.h2.stream_overflow += 1;
            match self.streams.pop_first() {
                Some((_, s)) => emit(s, true, out, stats, &mut self.acct),
                None => break,
            }
        }
        stats.h2.streams += 1;
        let mut req = Request {
            ts_us: at.ts,
            version: "HTTP/2".to_string(),
            stream_offset: at.offset,
            head_end_offset: head_end,
            peer_ack: at.ack,
            ..Request::default()
        };
        let mut path = None;
        for (n, v) in decoded.fields {
            match n.as_str() {
                ":method" => req.method = v,
                ":path" => path = Some(v),
                ":authority" => req.authority = Some(v),
                ":scheme" => req.scheme = Some(v),
                _ if n.starts_with(':') => {}
                _ => req.headers.push((n, v)),
            }
        }
        req.target = match path {
            Some(p) => p,
            None if req.method.eq_ignore_ascii_case("CONNECT") => {
                req.authority.clone().unwrap_or_default()
            }
            None => String::new(),
        };
        let grpc = req.header("content-type").is_some_and(grpc::is_grpc);
        let target = req.target.clone();
        let mut ex = Exchange::new(Protocol::Http2, req);
        ex.stream_id = Some(id);
        ex.pushed = pushed;
        ex.headers_incomplete = decoded.incomplete;
        let mut s = Stream {
            ex,
            req_done,
            interim: Vec::new(),
            grpc: None,
            charged: 0,
            body_stopped: [false; 2],
        };
        if grpc {
            start_grpc(&mut s, &target);
        }
        let cost = stream_cost(&s);
        if !self.acct.charge(stats, cost, cost) {
            // The budget cannot hold the stream: not tracked (its frames become orphans).
            return;
        }
        s.charged = cost;
        self.streams.insert(id, s);
    }

    fn body(&mut self, d: usize, stream: u32, data: &[u8], stats: &mut ParserStats) {
        let cap = self.cfg.body_prefix_max;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let body = if d == 0 {
            Some(&mut s.ex.request.body)
        } else {
            s.ex.response.as_mut().map(|r| &mut r.body)
        };
        let stopped = &mut s.body_stopped[d.min(1)];
        match body {
            Some(b) => s.charged += self.acct.push_body(b, data, cap, stopped, stats),
            None => {
                stats.h2.orphan_frames += 1;
                return;
            }
        }
        if let Some((rq, rs)) = &mut s.grpc {
            let c = if d == 0 { rq } else { rs };
            if !c.feed(data) {
                stats.h2.grpc_framing_errors += 1;
            }
        }
    }

    fn end_data(&mut self, d: usize, head: Head, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        if !self.streams.contains_key(&head.stream) {
            stats.h2.orphan_frames += 1;
            return;
        }
        if !head.has(flags::END_STREAM) {
            return;
        }
        if d == 0 {
            if let Some(s) = self.streams.get_mut(&head.stream) {
                s.req_done = true;
            }
        } else if let Some(s) = self.streams.remove(&head.stream) {
            emit(s, false, out, stats, &mut self.acct);
        }
    }
}

impl Stream {
    fn headers_incomplete_if(&mut self, incomplete: bool) {
        if incomplete {
            self.ex.headers_incomplete = true;
        }
    }
}

fn start_grpc(s: &mut Stream, path: &str) {
    let (service, method) = grpc::split_path(path);
    s.ex.grpc = Some(GrpcInfo {
        service,
        method,
        ..GrpcInfo::default()
    });
    s.grpc = Some((MessageCounter::default(), MessageCounter::default()));
}

/// Frame headers that must follow each other, all plausible, before a boundary is trusted.
const RESYNC_CHAIN: usize = 3;

enum Chain {
    Confirmed,
    Broken,
    NeedMore,
}

/// Follows the frame at `p` (already plausible, payload `len`) through its successors.
/// With `at_end` (no more data will come) a chain that ends exactly at the end of `buf` counts.
fn chain(
    buf: &[u8],
    p: usize,
    len: u32,
    dir: Option<Direction>,
    limit: u32,
    at_end: bool,
) -> Chain {
    let mut next = p + HEADER_LEN + len as usize;
    for _ in 1..RESYNC_CHAIN {
        if at_end && next == buf.len() {
            return Chain::Confirmed;
        }
        match buf
            .get(next..)
            .and_then(|b| FrameHeader::new_checked(b).ok())
        {
            Some(h) if frame::plausible(&h, dir, limit) => next += HEADER_LEN + h.length() as usize,
            Some(_) => return Chain::Broken,
            None => return Chain::NeedMore,
        }
    }
    Chain::Confirmed
}

/// Looks for a trusted boundary in `buf` from `from`. Returns whether one was found and where,
/// or else the first position that may still start one once more octets arrive. A window that
/// would need to grow past `cap` from a candidate rules that candidate out.
fn scan(
    buf: &[u8],
    from: usize,
    dir: Option<Direction>,
    limit: u32,
    cap: usize,
    at_end: bool,
) -> (bool, usize) {
    let mut p = from;
    while let Some(h) = buf.get(p..).and_then(|b| FrameHeader::new_checked(b).ok()) {
        if !frame::plausible(&h, dir, limit) {
            p += 1;
            continue;
        }
        match chain(buf, p, h.length(), dir, limit, at_end) {
            Chain::Confirmed => return (true, p),
            Chain::Broken => p += 1,
            Chain::NeedMore if at_end || buf.len() - p >= cap => p += 1,
            Chain::NeedMore => return (false, p),
        }
    }
    (false, p.min(buf.len()))
}

/// Header blocks larger than this are dropped (and the HPACK state with them).
fn block_cap(cfg: &ParserConfig) -> usize {
    cfg.h2_max_header_list.max(16 * 1024).saturating_mul(2)
}

/// Heap bytes a stream holds, and its map entry (what it is charged).
fn stream_cost(s: &Stream) -> usize {
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::capacity);
    STREAM_SLOT
        + budget::request_cost(&s.ex.request)
        + s.ex.response.as_ref().map_or(0, budget::response_cost)
        + s.ex.grpc.as_ref().map_or(0, |g| {
            g.service.capacity() + g.method.capacity() + opt(&g.message)
        })
        + opt(&s.ex.reset)
}

/// Finalises and emits a stream, giving back what it held to the budget. `cut` means the
/// stream did not end normally: a response whose body had not ended is marked incomplete.
fn emit(
    mut s: Stream,
    cut: bool,
    out: &mut Vec<Exchange>,
    stats: &mut ParserStats,
    acct: &mut Account,
) {
    acct.release(stats, s.charged);
    stats.h2.exchanges += 1;
    if cut {
        if let Some(r) = &mut s.ex.response {
            r.body.incomplete = true;
        }
        if !s.req_done {
            s.ex.request.body.incomplete = true;
        }
    }
    if let (Some(g), Some((rq, rs))) = (&mut s.ex.grpc, &s.grpc) {
        g.request_messages = rq.count;
        g.response_messages = rs.count;
        if let Some(r) = &s.ex.response {
            let status =
                crate::find_header(&r.trailers, "grpc-status").or_else(|| r.header("grpc-status"));
            g.status = status.and_then(|v| v.trim().parse().ok());
            let msg = crate::find_header(&r.trailers, "grpc-message")
                .or_else(|| r.header("grpc-message"));
            g.message = msg.map(grpc::percent_decode);
        }
    }
    out.push(s.ex);
}
