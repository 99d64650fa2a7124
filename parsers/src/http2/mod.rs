//! HTTP/2 (RFC 9113) over a reassembled TCP stream, with passive HPACK (RFC 7541).
//!
//! What each module owns:
//! - [`frame`]: the 9-octet frame header as a borrowed view with a checked constructor, the
//!   boundary plausibility test, and pure parsers for fixed-layout payloads (RFC 9113 §4.1, §6).
//! - [`huffman`]: the static Huffman code of RFC 7541 §5.2 / Appendix B.
//! - [`hpack`]: one header-block decoder per direction whose dynamic table may be partly unknown
//!   (RFC 7541 §2–§6); it decodes what is decodable and never guesses.
//! - [`grpc`]: gRPC path splitting, `grpc-message` decoding and message counting.
//! - `conn`: per-direction frame reader, header-block assembly, streams and exchanges
//!   (RFC 9113 §3.4 preface, §5.1 stream states, §6.5 SETTINGS, §6.8 GOAWAY, §6.10
//!   CONTINUATION, §8.3 pseudo-headers).
//!
//! Entry points: [`Http2Conn::new`] (prior knowledge), [`Http2Conn::midstream`] (the start was
//! not captured), [`Http2Conn::upgraded`] (h2c, RFC 7540 §3.2). Every anomaly becomes a counter
//! in [`H2Stats`]; nothing reachable from input panics or grows without a cap.

mod conn;
pub mod frame;
pub mod grpc;
pub mod hpack;
pub mod huffman;

#[cfg(test)]
mod tests;

pub use conn::Http2Conn;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 counters, one set per connection (summed by the pipeline).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct H2Stats {
    /// Frame headers read.
    pub frames: u64,
    /// Client prefaces matched.
    pub prefaces: u64,
    /// Connections whose to-server side did not start with the preface (then resynchronised).
    pub preface_mismatch: u64,
    /// Frames of unknown type (ignored, RFC 9113 §5.5).
    pub unknown_frames: u64,
    /// Malformed frames: bad padding, bad fixed length, push from a client, stream id reuse.
    pub frame_errors: u64,
    /// Frame headers longer than the maximum frame size: taken as loss of sync.
    pub oversized_frames: u64,
    /// Times frame boundaries were lost (gap over a header, oversized frame, bad preface).
    pub desyncs: u64,
    /// SETTINGS frames (including ACKs).
    pub settings: u64,
    /// RST_STREAM frames.
    pub rst_streams: u64,
    /// GOAWAY frames.
    pub goaways: u64,
    /// PUSH_PROMISE frames.
    pub push_promises: u64,
    /// Complete header blocks decoded.
    pub header_blocks: u64,
    /// Header blocks dropped for exceeding the block buffer cap (HPACK state then unknown).
    pub header_blocks_oversized: u64,
    /// Header blocks damaged by a capture gap.
    pub header_block_gaps: u64,
    /// CONTINUATION out of sequence, or a header block interrupted by another frame.
    pub continuation_errors: u64,
    /// HPACK blocks that stopped on an error (truncated or overflowing integer, overlong string).
    pub hpack_errors: u64,
    /// Huffman strings that could not be decoded (that field only is lost).
    pub hpack_huffman_errors: u64,
    /// References to dynamic entries we cannot know (midstream, after a gap). Not guessed.
    pub hpack_unknown_refs: u64,
    /// References to entries that cannot exist while the table state is known.
    pub hpack_invalid_index: u64,
    /// Fields dropped because the decoded list exceeded `h2_max_header_list`.
    pub hpack_fields_dropped: u64,
    /// Table size updates above `h2_max_table_size`, clamped.
    pub hpack_table_size_clamped: u64,
    /// Times an unknown HPACK table state became fully known again.
    pub hpack_resynced: u64,
    /// Streams opened (requests and pushes).
    pub streams: u64,
    /// Streams evicted because `h2_max_streams` were in flight (emitted as they were).
    pub stream_overflow: u64,
    /// Frames for streams we do not track (closed, never seen, or evicted).
    pub orphan_frames: u64,
    /// Capture gaps inside DATA payloads (cost only that stream's body).
    pub data_gaps: u64,
    /// gRPC bodies whose length-prefixed framing broke (counting stopped).
    pub grpc_framing_errors: u64,
    /// Exchanges emitted.
    pub exchanges: u64,
}

impl H2Stats {
    /// Adds another connection's counters to these.
    pub fn add(&mut self, o: &H2Stats) {
        self.frames += o.frames;
        self.prefaces += o.prefaces;
        self.preface_mismatch += o.preface_mismatch;
        self.unknown_frames += o.unknown_frames;
        self.frame_errors += o.frame_errors;
        self.oversized_frames += o.oversized_frames;
        self.desyncs += o.desyncs;
        self.settings += o.settings;
        self.rst_streams += o.rst_streams;
        self.goaways += o.goaways;
        self.push_promises += o.push_promises;
        self.header_blocks += o.header_blocks;
        self.header_blocks_oversized += o.header_blocks_oversized;
        self.header_block_gaps += o.header_block_gaps;
        self.continuation_errors += o.continuation_errors;
        self.hpack_errors += o.hpack_errors;
        self.hpack_huffman_errors += o.hpack_huffman_errors;
        self.hpack_unknown_refs += o.hpack_unknown_refs;
        self.hpack_invalid_index += o.hpack_invalid_index;
        self.hpack_fields_dropped += o.hpack_fields_dropped;
        self.hpack_table_size_clamped += o.hpack_table_size_clamped;
        self.hpack_resynced += o.hpack_resynced;
        self.streams += o.streams;
        self.stream_overflow += o.stream_overflow;
        self.orphan_frames += o.orphan_frames;
        self.data_gaps += o.data_gaps;
        self.grpc_framing_errors += o.grpc_framing_errors;
        self.exchanges += o.exchanges;
    }
}

/// Whether `data` plausibly starts at an HTTP/2 frame boundary (midstream detection), or with
/// the client preface. Needs a whole frame header passing [`frame::plausible`] with the default
/// maximum frame size; when the next header is within `data`, it must pass too. HTTP/1 text and
/// TLS records fail on the length field alone (their first octets make it far above 16 384).
pub fn looks_like_frames(data: &[u8]) -> bool {
    if data.starts_with(PREFACE) {
        return true;
    }
    let limit = frame::DEFAULT_MAX_FRAME_SIZE;
    let Ok(h) = frame::FrameHeader::new_checked(data) else {
        return false;
    };
    if !frame::plausible(&h, None, limit) {
        return false;
    }
    let next = frame::HEADER_LEN + h.length() as usize;
    match data.get(next..).map(frame::FrameHeader::new_checked) {
        Some(Ok(h2)) => frame::plausible(&h2, None, limit),
        _ => true,
    }
}
