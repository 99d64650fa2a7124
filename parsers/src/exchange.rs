//! Types shared by every protocol parser: stream direction, per-chunk metadata, the parsed
//! request/response/exchange, parser configuration and counters.

/// Which way bytes flow on a connection. One vocabulary everywhere: `ToServer` is what the client
/// sent, `ToClient` what the server sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server (requests).
    ToServer,
    /// Server → client (responses).
    ToClient,
}

impl Direction {
    /// The other direction.
    pub fn flip(self) -> Self {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// Where a chunk of stream bytes came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Capture time of the packet that carried the chunk, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// Offset of the chunk's first byte in its direction's stream (0 = first byte seen).
    pub offset: u64,
    /// The packet's acknowledgement as an offset into the *peer's* stream: how many bytes of the
    /// other direction the sender had received. `None` when unknown (no ACK flag, or the peer
    /// direction's origin is not known yet). Used to pair responses with requests after a gap.
    pub peer_ack: Option<u64>,
}

/// Application protocol of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1 (RFC 9112); the exact version is in the message.
    Http1,
    /// HTTP/2 (RFC 9113).
    Http2,
}

impl Protocol {
    /// The name used in observations.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// A message body as observed: a bounded prefix kept for inspection and the full length counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// The first bytes of the body after transfer decoding (de-chunked; not content-decoded),
    /// at most [`ParserConfig::body_prefix_max`].
    pub prefix: Vec<u8>,
    /// Body length after transfer decoding, including bytes lost to gaps.
    pub bytes: u64,
    /// True when bytes of the body were lost (a gap) or the body ended before its declared end.
    pub incomplete: bool,
}

impl Body {
    /// Appends `data` to the kept prefix up to `cap` bytes and counts all of it.
    pub fn push(&mut self, data: &[u8], cap: usize) {
        self.bytes += data.len() as u64;
        let room = cap.saturating_sub(self.prefix.len());
        if room > 0 {
            let take = room.min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
        }
    }
}

/// A request as seen on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Capture time of the request's first byte, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// Method token exactly as sent (`GET`, `get`, `PROPFIND`, …).
    pub method: String,
    /// Request-target exactly as sent (origin form `/p?q`, absolute form, authority form, `*`).
    /// For HTTP/2 this is `:path` (or `:authority` for CONNECT).
    pub target: String,
    /// `HTTP/1.1`, `HTTP/1.0`, `HTTP/0.9` or `HTTP/2`.
    pub version: String,
    /// Header fields in wire order; names as sent (HTTP/2: lower case, pseudo-headers excluded).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// For HTTP/2: `:authority`.
    pub authority: Option<String>,
    /// For HTTP/2: `:scheme`.
    pub scheme: Option<String>,
    /// Offset of the request's first byte in the client's stream.
    pub stream_offset: u64,
    /// Offset just past the request's head (start line and headers) in the client's stream.
    pub head_end_offset: u64,
    /// The client's acknowledgement of the server stream when the request started (see
    /// [`ChunkMeta::peer_ack`]).
    pub peer_ack: Option<u64>,
}

/// A response as seen on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Capture time of the response's first byte (of the final, non-1xx response).
    pub ts_us: i64,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase (HTTP/1 only).
    pub reason: String,
    /// Header fields in wire order.
    pub headers: Vec<(String, String)>,
    /// Trailer fields (chunked trailers in HTTP/1.1, trailing HEADERS in HTTP/2).
    pub trailers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// Interim (1xx) status codes that preceded this response, in order.
    pub interim: Vec<u16>,
    /// Offset of the response's first byte in the server's stream.
    pub stream_offset: u64,
    /// The server's acknowledgement of the client stream when the response started.
    pub peer_ack: Option<u64>,
}

impl Request {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// First value of header `name` (ASCII case-insensitive) in a header list.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What a gRPC call looked like (HTTP/2 with `content-type: application/grpc*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrpcInfo {
    /// Service from `:path` (`/pkg.Service/Method` → `pkg.Service`).
    pub service: String,
    /// Method from `:path`.
    pub method: String,
    /// `grpc-status` from the trailers (or headers, for trailers-only responses).
    pub status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub message: Option<String>,
    /// Length-prefixed messages in the request body.
    pub request_messages: u32,
    /// Length-prefixed messages in the response body.
    pub response_messages: u32,
}

/// One request with its response (or none, when the connection ended without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// HTTP/1.x or HTTP/2.
    pub protocol: Protocol,
    /// The request.
    pub request: Request,
    /// The final response, if one was seen.
    pub response: Option<Response>,
    /// HTTP/2 stream id.
    pub stream_id: Option<u32>,
    /// Some bytes of this exchange were lost to a capture gap (body incomplete, or a message
    /// recovered by resynchronisation).
    pub gap: bool,
    /// HTTP/2: header blocks could not be fully decoded (HPACK state unknown after a gap or a
    /// midstream pickup); the headers present are right, some are missing.
    pub headers_incomplete: bool,
    /// HTTP/2: the stream was reset with this error code name (`CANCEL`, `REFUSED_STREAM`, …).
    pub reset: Option<String>,
    /// HTTP/2: the request was promised by the server (PUSH_PROMISE).
    pub pushed: bool,
    /// gRPC details when the exchange is a gRPC call.
    pub grpc: Option<GrpcInfo>,
}

impl Exchange {
    /// A new exchange with no response and no flags.
    pub fn new(protocol: Protocol, request: Request) -> Self {
        Exchange {
            protocol,
            request,
            response: None,
            stream_id: None,
            gap: false,
            headers_incomplete: false,
            reset: None,
            pushed: false,
            grpc: None,
        }
    }
}

/// Limits every parser obeys. Defaults fit a sensor that tracks ~100k connections in 2 GiB.
///
/// ```toml
/// [parsers]
/// body_prefix_max = 65536      # bytes of each body kept for inspection
/// max_header_bytes = 65536     # HTTP/1 head (start line + fields) larger than this is an error
/// max_headers = 128            # header fields per message
/// max_pending_requests = 256   # requests waiting for a response, per connection
/// h2_max_streams = 256         # concurrent HTTP/2 streams tracked per connection
/// h2_max_header_list = 65536   # decoded header list per HTTP/2 header block (HPACK bomb cap)
/// h2_max_table_size = 65536    # largest HPACK dynamic table accepted from SETTINGS
/// memory_budget_bytes = 268435456  # bytes all connections of one worker may keep between calls
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParserConfig {
    /// Bytes of each body kept for inspection (the rest is counted, not kept).
    pub body_prefix_max: usize,
    /// Largest HTTP/1 message head accepted.
    pub max_header_bytes: usize,
    /// Most header fields per message.
    pub max_headers: usize,
    /// Most requests awaiting a response per connection; older ones are emitted without one.
    pub max_pending_requests: usize,
    /// Most concurrent HTTP/2 streams tracked per connection.
    pub h2_max_streams: usize,
    /// Cap on a decoded HTTP/2 header list (sum of name+value+32 per field, RFC 9113 §6.5.2).
    pub h2_max_header_list: usize,
    /// Cap on the HPACK dynamic table size a peer may set.
    pub h2_max_table_size: usize,
    /// Bytes that all the connections of one worker together may keep between calls: heads
    /// gathered across segments, body prefixes, queued requests and responses, HTTP/2 streams,
    /// header blocks and HPACK tables, resync windows (see [`crate::budget`]). Each cap above
    /// bounds one connection; this bounds their sum, which at a quarter of a million
    /// connections per worker would otherwise be many GiB. What would exceed it is not kept,
    /// and counted ([`ParserStats::budget_refusals`]).
    ///
    /// Default 256 MiB per worker. The reference deployment is a 2 GiB container limited to
    /// two CPUs, hence two workers: 512 MiB of parser budget, next to at most 256 MiB of
    /// out-of-order segments (the reassembly's budget, all workers together), about 200 MiB
    /// of flow table and fixed per-connection state at 262,144 connections (a flow entry,
    /// its session and, for HTTP/1, a 440-byte connection), and at most 256 MiB of Kafka
    /// queue: about 1.2 GiB of bounded state, leaving the rest for inference, the inventory
    /// shards and allocator slack. With more workers in the same memory, lower it (the
    /// budget is per worker).
    pub memory_budget_bytes: usize,
}

impl Default for ParserConfig {
    fn default() -> Self {
        ParserConfig {
            body_prefix_max: 64 * 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 128,
            max_pending_requests: 256,
            h2_max_streams: 256,
            h2_max_header_list: 64 * 1024,
            h2_max_table_size: 64 * 1024,
            memory_budget_bytes: 256 << 20,
        }
    }
}

/// Counters for everything the parsers saw go wrong or dropped. Plain integers: one set per
/// worker (shared by its connections), summed by the pipeline. `budget_used_bytes` is the
/// worker's memory budget account itself (see [`crate::budget`]), kept here because every
/// parser entry point already takes these counters by `&mut`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParserStats {
    /// HTTP/1 requests parsed.
    pub http1_requests: u64,
    /// HTTP/1 final responses parsed.
    pub http1_responses: u64,
    /// HTTP/1 heads that were not valid HTTP (the parser then resynchronised).
    pub http1_parse_errors: u64,
    /// HTTP/1 heads larger than `max_header_bytes` or with more than `max_headers` fields.
    pub http1_oversized_heads: u64,
    /// Times a parser skipped to the next plausible message start after a gap or an error.
    pub resyncs: u64,
    /// Bytes skipped while resynchronising.
    pub resync_skipped_bytes: u64,
    /// Bytes lost to capture gaps, as announced by reassembly.
    pub gap_bytes: u64,
    /// Responses for which no request could be found (the request was lost).
    pub orphan_responses: u64,
    /// Requests emitted without a response because `max_pending_requests` was reached.
    pub pending_overflow: u64,
    /// Connections handed over to HTTP/2 by `Upgrade: h2c` / `101`.
    pub h2c_upgrades: u64,
    /// CONNECT tunnels whose content was detected afresh.
    pub tunnels: u64,
    /// HTTP/1 heads httparse rejected but the lenient fallback read (odd versions, bare CR…).
    pub http1_lenient_heads: u64,
    /// Connections whose protocol could not be recognised; their bytes are ignored.
    pub unknown_protocol: u64,
    /// Bytes ignored after the connection switched to a protocol we do not parse (WebSocket,
    /// CONNECT tunnels, TLS, unknown).
    pub opaque_bytes: u64,
    /// Charges to the worker's memory budget that were refused
    /// ([`ParserConfig::memory_budget_bytes`]): each is a head, request, response, header
    /// block, body prefix growth, resync window or HPACK table that was not kept.
    pub budget_refusals: u64,
    /// Bytes not kept because of those refusals (the body bytes are still counted in the
    /// body's length).
    pub budget_dropped_bytes: u64,
    /// Bytes charged to the budget now (a gauge; summed over workers).
    pub budget_used_bytes: u64,
    /// Most bytes charged at once (per worker; summed over workers, as the workers hold
    /// theirs at the same time).
    pub budget_peak_bytes: u64,
    /// HTTP/2 counters.
    pub h2: crate::http2::H2Stats,
}

impl ParserStats {
    /// Adds another connection's counters to these (HTTP/2 counters are summed by
    /// [`crate::http2::H2Stats::add`]).
    pub fn add(&mut self, o: &ParserStats) {
        self.http1_requests += o.http1_requests;
        self.http1_responses += o.http1_responses;
        self.http1_parse_errors += o.http1_parse_errors;
        self.http1_oversized_heads += o.http1_oversized_heads;
        self.resyncs += o.resyncs;
        self.resync_skipped_bytes += o.resync_skipped_bytes;
        self.gap_bytes += o.gap_bytes;
        self.orphan_responses += o.orphan_responses;
        self.pending_overflow += o.pending_overflow;
        self.h2c_upgrades += o.h2c_upgrades;
        self.tunnels += o.tunnels;
        self.http1_lenient_heads += o.http1_lenient_heads;
        self.unknown_protocol += o.unknown_protocol;
        self.opaque_bytes += o.opaque_bytes;
        self.budget_refusals += o.budget_refusals;
        self.budget_dropped_bytes += o.budget_dropped_bytes;
        self.budget_used_bytes += o.budget_used_bytes;
        self.budget_peak_bytes += o.budget_peak_bytes;
        self.h2.add(&o.h2);
    }
}
