//! HTTP/1.x over one reassembled connection: message framing and request/response pairing.
//!
//! Implements, as a passive observer, RFC 9112 §2–§4 (message format, request line, status line;
//! heads parsed by `httparse` in its lenient modes, since a sensor must read what real servers
//! accept), §6.3 (message body length: Transfer-Encoding, Content-Length, close-delimited, and the
//! no-body cases HEAD, 1xx, 204, 304, 2xx to CONNECT), §7.1 (chunked coding with trailers) and
//! §9.3 (pipelining: responses answer requests in order). RFC 9110 §15.2 interim responses
//! (`100 Continue` then the final response) and §7.8 `Upgrade`: a `101` to `Upgrade: h2c` hands the
//! connection to HTTP/2 (RFC 9113 §3.2), any other `101` or a successful CONNECT makes it opaque.
//!
//! Zero-copy where it pays: a head that arrives whole is parsed straight from the stream chunk;
//! only a head split across segments is gathered in a small capped buffer. Body bytes are never
//! buffered beyond the kept prefix ([`crate::ParserConfig::body_prefix_max`]).
//!
//! Everything kept between calls (gathered heads and lines, queued requests, the response
//! being read, deferred responses, body prefixes, bytes held during an upgrade) is charged to
//! the worker's memory budget ([`crate::budget`]). A head the budget cannot hold is dropped
//! like an oversized one (its request line kept if the budget allows) and that direction
//! resynchronises; a parsed request it cannot hold is dropped but its body still framed, and
//! pairing treats it as lost; a response it cannot hold leaves its request without one; a body
//! prefix it cannot hold stops growing.
//!
//! Gaps (bytes the mirror lost) are cheap when they fall inside a body whose length is known:
//! the body is marked incomplete and parsing goes on at the right place. Anywhere else the parser
//! **resynchronises**: it skips to the next plausible message start (a request line on the client
//! side, a status line on the server side) that `httparse` accepts. Pairing after a resync does
//! not trust FIFO order blindly: a response can only answer a request whose first byte the server
//! had acknowledged when the response started, and (after losing responses) the request the
//! client sent last before the response began.
use crate::budget::{self, Account};
use crate::{
    ChunkMeta, Direction, Exchange, ParserConfig, ParserStats, Protocol, Request, Response,
};
use std::collections::{HashMap, VecDeque};

/// Methods a resynchronising parser accepts as the start of a request. Detection at the start
/// of a connection accepts any token; after a gap only well-known methods are trusted, since
/// the scan runs over arbitrary body bytes.
const RESYNC_METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"REPORT ",
    b"SEARCH ",
    b"PURGE ",
];

/// Upper bound on `max_headers` (the header array lives on the stack).
const MAX_HEADERS_HARD: usize = 256;
/// Longest line accepted inside chunked framing (chunk-size line with extensions, trailer field).
const MAX_CHUNK_LINE: usize = 4096;
/// Bytes held on the client side while an upgrade or CONNECT awaits its response.
const MAX_HELD_UPGRADE: usize = 64 * 1024;
/// Interim (1xx) responses remembered before a final one (more are not recorded).
const MAX_INTERIM: usize = 16;
/// Resync candidates split across chunks are at most this long (see [`Http1Conn::resync`]).
const RESYNC_PROBE: usize = 16;
/// What a queued request costs beyond its strings: its slot in the queue.
const PENDING_SLOT: usize = std::mem::size_of::<Pending>();
/// What a deferred response costs beyond its strings: its slot in the queue.
const DEFERRED_SLOT: usize = std::mem::size_of::<CurResp>();

/// Whether `data` starts like an HTTP/1 request line: a method token (letters, digits, `-`, `_`,
/// up to 24 characters), one space, then a request-target (RFC 9112 §3).
pub fn looks_like_request(data: &[u8]) -> bool {
    let Some(sp) = data.iter().take(25).position(|&b| b == b' ') else {
        return false;
    };
    // Some clients (and evasions) put several spaces after the method.
    let after = data[sp..].iter().position(|&b| b != b' ').map(|i| sp + i);
    sp > 0
        && data[..sp]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        && data[0].is_ascii_alphabetic()
        && after
            .and_then(|i| data.get(i))
            .is_none_or(|&b| b == b'/' || b == b'*' || b.is_ascii_alphanumeric())
}

/// Whether `data` starts like a status line (`HTTP/1.x `, RFC 9112 §4).
pub fn looks_like_response(data: &[u8]) -> bool {
    let p = b"HTTP/1.";
    let n = data.len().min(p.len());
    data[..n] == p[..n] && data.get(7).is_none_or(|b| b.is_ascii_digit())
}

/// What the connection becomes after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    /// Still HTTP/1.
    Stay,
    /// `101` to `Upgrade: h2c`: HTTP/2 from here. `request` (stream 1) awaits its response;
    /// `client_bytes` are client bytes already received after the upgrade request (normally the
    /// HTTP/2 preface); `server_rest` is where HTTP/2 starts in the current server chunk.
    H2c {
        /// The upgraded request.
        request: Box<Request>,
        /// Client bytes held since the upgrade request.
        client_bytes: Vec<u8>,
        /// Offset in the chunk being fed at which HTTP/2 frames begin.
        server_rest: usize,
    },
    /// A successful CONNECT: from here the connection carries whatever the client tunnels
    /// (TLS usually, sometimes cleartext HTTP), to be detected afresh. `client_bytes` were
    /// received from the client after the CONNECT request; `server_rest` is where the tunnel
    /// starts in the current server chunk.
    Tunnel {
        /// Client bytes held since the CONNECT request.
        client_bytes: Vec<u8>,
        /// Offset in the chunk being fed at which the tunnel begins.
        server_rest: usize,
    },
    /// The connection is another protocol from here (WebSocket after `101`).
    Opaque,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(BodyKind),
    /// Looking for the next message start; `at_start` allows one at offset 0 of the next chunk.
    Resync {
        at_start: bool,
    },
    /// Client side after an upgrade request or CONNECT: wait for the server's answer.
    Hold,
    /// Nothing more to parse in this direction.
    Opaque,
}

/// One direction's framing state.
#[derive(Debug)]
struct Half {
    state: State,
    /// A head split across chunks, a chunked-framing line, or a resync candidate. Its capacity
    /// is charged to the budget: it grows through [`Account::grow`] and is emptied through
    /// [`Account::free`] or [`Account::take`].
    buf: Vec<u8>,
    /// Where `buf`'s first byte came from.
    buf_meta: ChunkMeta,
    /// Bytes of a head gathered in `buf` already searched for the head's end, so that each
    /// byte of a trickled head is searched once. (`u32`, saturating: one of these per
    /// direction of every HTTP/1 connection, and a head is far smaller.)
    head_scanned: u32,
    /// Length of `buf` when the gathered head was last parsed.
    head_parsed: u32,
    /// A resync happened since the last message of this direction was framed.
    lost_messages: bool,
}

impl Half {
    fn new(from_start: bool) -> Self {
        Half {
            state: if from_start {
                State::Head
            } else {
                State::Resync { at_start: true }
            },
            buf: Vec::new(),
            buf_meta: ChunkMeta::default(),
            head_scanned: 0,
            head_parsed: 0,
            lost_messages: false,
        }
    }

    /// Starts gathering a head in `buf` (which holds its first bytes), of which the first
    /// `scanned` are known not to hold the head's end.
    fn gather_head(&mut self, meta: ChunkMeta, scanned: usize) {
        self.head_scanned = mark(scanned);
        self.head_parsed = mark(scanned);
        self.buf_meta = meta;
    }
}

/// A length of a gathered head as kept in [`Half`].
fn mark(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Debug)]
struct Pending {
    id: u64,
    /// Bytes charged to the budget for this entry: its slot, the request and, once attached,
    /// the response ([`budget::request_cost`], [`budget::response_cost`]).
    charged: usize,
    /// The budget refused to grow the request's body prefix: it stays as it is.
    body_stopped: bool,
    req: Request,
    req_done: bool,
    resp: Option<Response>,
    /// No response will come for this request (lost, or skipped by pairing).
    given_up: bool,
    gap: bool,
    upgrade_h2c: bool,
    wants_upgrade: bool,
}

/// A response being read, with the id of the request it answers (`None`: orphan).
#[derive(Debug)]
struct CurResp {
    /// Bytes charged to the budget for the response ([`budget::response_cost`]); its slot in
    /// the deferred queue is charged apart.
    charged: usize,
    /// The budget refused to grow the body prefix: it stays as it is.
    body_stopped: bool,
    resp: Response,
    req_id: Option<u64>,
    gap: bool,
    /// Head + Content-Length, when the response is length-framed.
    framed_size: Option<u64>,
    /// The pairing is certain enough to learn the request target's response size from.
    confident: bool,
    /// Waiting for a request that has not been parsed yet.
    deferred: bool,
}

/// An HTTP/1.x connection: both directions and the queue of requests awaiting responses.
#[derive(Debug)]
pub struct Http1Conn {
    cfg: ParserConfig,
    to_server: Half,
    to_client: Half,
    pending: VecDeque<Pending>,
    next_id: u64,
    /// Out of line: most connections spend most of their life between responses, and a flow
    /// table holds one of these per HTTP/1 connection (issue #9).
    cur_resp: Option<Box<CurResp>>,
    /// 1xx codes seen before the final response being awaited.
    interim: Vec<u16>,
    /// Client bytes received while an upgrade or CONNECT awaits its answer (charged).
    held_upgrade: Vec<u8>,
    /// The cap or the budget stopped `held_upgrade`: later bytes are not held (no hole).
    held_full: bool,
    /// What this connection holds charged to the worker's memory budget.
    acct: Account,
    /// Messages were lost on this connection (a resync happened): FIFO pairing alone can no
    /// longer be trusted.
    degraded: bool,
    /// Identifies the server, so that learned response sizes are per server.
    scope: u64,
    /// Sizes learned while framing, handed to [`SizeModels`] at the end of each call.
    learned: Vec<(u64, u64)>,
    /// End of the client stream seen so far (data or gaps).
    client_end: u64,
    /// Deferred responses dropped (queue full, or their request never came).
    deferred_dropped: u64,
    /// Complete responses that acknowledge client bytes not parsed yet (their requests are
    /// still held by reassembly behind a hole), in arrival order.
    deferred: VecDeque<CurResp>,
}

/// Responses kept waiting for their requests, per connection.
const MAX_DEFERRED: usize = 64;

/// Framed response sizes (head + Content-Length) per (server, method, request-target),
/// learned from confidently paired responses on every connection. Real API traffic repeats
/// itself, and a response whose size contradicts what its target always produced is the
/// strongest evidence there is that a pipelined connection lost messages. Shared by the
/// connections of one worker; bounded.
#[derive(Debug, Default)]
pub struct SizeModels {
    map: HashMap<u64, SizeModel>,
    /// Entries refused because the table was full.
    pub refused: u64,
}

impl SizeModels {
    fn stable(&self, k: u64) -> Option<u64> {
        self.map
            .get(&k)
            .filter(|m| m.stable && m.seen >= 2)
            .map(|m| m.size)
    }

    fn learn(&mut self, k: u64, size: u64) {
        if let Some(m) = self.map.get_mut(&k) {
            m.seen = m.seen.saturating_add(1);
            m.stable &= m.size == size;
        } else if self.map.len() < MAX_SIZE_MODELS {
            self.map.insert(
                k,
                SizeModel {
                    size,
                    seen: 1,
                    stable: true,
                },
            );
        } else {
            self.refused += 1;
        }
    }

    /// Targets tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing was learned yet.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What one request target's responses looked like so far.
#[derive(Debug, Clone, Copy)]
struct SizeModel {
    size: u64,
    seen: u32,
    /// All responses so far had the same size.
    stable: bool,
}

/// Size-model entries kept per worker (≈40 bytes each).
const MAX_SIZE_MODELS: usize = 65_536;
/// Queued requests examined when realigning a response.
const REALIGN_LOOKAHEAD: usize = 32;

fn target_key(scope: u64, req: &Request) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    scope.hash(&mut h);
    req.method.hash(&mut h);
    req.target.hash(&mut h);
    h.finish()
}

fn httparse_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true);
    c
}

// Boxed: heads are built once per message and moved around a few times.
enum Head {
    Req(Box<Request>),
    Resp(Box<Response>),
}

enum HeadParse {
    /// A head of this many bytes; `true` when only the lenient fallback could read it.
    Complete(usize, Head, bool),
    Partial,
    Invalid,
    /// A head with more fields than `max_headers`, or that reached `max_header_bytes`
    /// without an end: its extent, up to its end when that is in sight, else the cap.
    TooLarge(usize),
}

/// Offset just past the first empty line of `data` at or after a line feed at `from`: a line
/// feed, an optional CR, a line feed. Every head that httparse or [`lenient_head`] completes
/// ends so (RFC 9112 §2.1, with the bare-LF line ends §2.2 allows), so bytes without it cannot
/// hold a complete head.
fn find_head_end(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = data.get(i..)?.iter().position(|&b| b == b'\n') {
        let lf = i + p;
        match data.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if data.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// A head httparse refused for having too many fields. Its extent is only decided once its
/// end is in sight or the cap is reached, so that it does not depend on where the segments
/// were cut.
fn too_many_fields(cfg: &ParserConfig, data: &[u8]) -> HeadParse {
    match find_head_end(data, 0) {
        Some(end) => HeadParse::TooLarge(end),
        None if data.len() >= cfg.max_header_bytes => HeadParse::TooLarge(data.len()),
        None => HeadParse::Partial,
    }
}

fn headers_vec(hs: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    hs.iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| {
            (
                h.name.to_string(),
                match std::str::from_utf8(h.value) {
                    // The strict check is cheaper than the lossy one when nothing is invalid.
                    Ok(v) => v.trim().to_string(),
                    Err(_) => String::from_utf8_lossy(h.value).trim().to_string(),
                },
            )
        })
        .collect()
}

fn parse_head(cfg: &ParserConfig, dir: Direction, data: &[u8]) -> HeadParse {
    // On the stack and left uninitialised: zeroing 256 headers per parse attempt cost more
    // than the parse itself.
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_HARD];
    let hbuf = &mut storage[..cfg.max_headers.clamp(8, MAX_HEADERS_HARD)];
    let pc = httparse_config();
    match dir {
        Direction::ToServer => {
            let mut r = httparse::Request::new(&mut []);
            match pc.parse_request_with_uninit_headers(&mut r, data, hbuf) {
                Ok(httparse::Status::Complete(n)) => HeadParse::Complete(
                    n,
                    Head::Req(Box::new(Request {
                        method: r.method.unwrap_or_default().to_string(),
                        target: r.path.unwrap_or_default().to_string(),
                        version: format!("HTTP/1.{}", r.version.unwrap_or(1)),
                        headers: headers_vec(r.headers),
                        ..Request::default()
                    })),
                    false,
                ),
                Ok(httparse::Status::Partial) => HeadParse::Partial,
                Err(httparse::Error::TooManyHeaders) => too_many_fields(cfg, data),
                Err(_) => lenient_head(cfg, dir, data),
            }
        }
        Direction::ToClient => {
            let mut r = httparse::Response::new(&mut []);
            match pc.parse_response_with_uninit_headers(&mut r, data, hbuf) {
                Ok(httparse::Status::Complete(n)) => HeadParse::Complete(
                    n,
                    Head::Resp(Box::new(Response {
                        version: format!("HTTP/1.{}", r.version.unwrap_or(1)),
                        status: r.code.unwrap_or(0),
                        reason: r.reason.unwrap_or_default().to_string(),
                        headers: headers_vec(r.headers),
                        ..Response::default()
                    })),
                    false,
                ),
                Ok(httparse::Status::Partial) => HeadParse::Partial,
                Err(httparse::Error::TooManyHeaders) => too_many_fields(cfg, data),
                Err(_) => lenient_head(cfg, dir, data),
            }
        }
    }
}

/// Reads a head httparse rejected, the way lenient servers and browsers do: any `HTTP/x.y`
/// version in any case, a request-target with spaces or without a version, bare-CR or LF line
/// ends, header lines without a colon skipped. Only called after httparse said "invalid", so the
/// strict parser stays the fast path. Returns `Invalid` when the start line is not HTTP at all.
fn lenient_head(cfg: &ParserConfig, dir: Direction, data: &[u8]) -> HeadParse {
    // A start line that is not HTTP is decided on that line alone, before looking for the end
    // of the head: a resync tries every line start, and searching the rest of the bytes for
    // each of them would cost quadratic time on a run of such lines.
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let line = &data[..nl];
        if !start_line_ok(dir, line.strip_suffix(b"\r").unwrap_or(line)) {
            return HeadParse::Invalid;
        }
    }
    let Some(end) = find_head_end(data, 0) else {
        return if data.len() >= cfg.max_header_bytes {
            HeadParse::TooLarge(data.len())
        } else {
            HeadParse::Partial
        };
    };
    let text = String::from_utf8_lossy(&data[..end]);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    if !start_line_ok(dir, first.as_bytes()) {
        return HeadParse::Invalid;
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let n = n.trim();
        if n.is_empty() || n.contains(' ') || headers.len() >= cfg.max_headers {
            continue;
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let head = match dir {
        Direction::ToClient => {
            let rest = &first[5..];
            let (version, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let rest = rest.trim_start();
            let status: u16 = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            Head::Resp(Box::new(Response {
                version: format!("HTTP/{version}"),
                status,
                reason: rest.get(3..).unwrap_or("").trim().to_string(),
                headers,
                ..Response::default()
            }))
        }
        Direction::ToServer => {
            let (method, rest) = first.split_once(' ').unwrap_or((first, ""));
            let rest = rest.trim();
            // `HTTP/` then digits and dots: `HTTP/1.1`, and damaged ones like `HTTP/1.` that
            // servers still answer; a bare `HTTP` is not a version.
            let is_version = |v: &str| {
                let b = v.as_bytes();
                b.len() >= 6
                    && b.len() <= 12
                    && b[..5].eq_ignore_ascii_case(b"HTTP/")
                    && b[5..].iter().all(|c| c.is_ascii_digit() || *c == b'.')
            };
            let (target, version) = match rest.rsplit_once(' ') {
                // `GET /a b HTTP/1.1`: a target with spaces, then a real version.
                Some((t, v)) if is_version(v) => (t.trim(), v.to_string()),
                // `GET HTTP/1.1`: no target at all.
                None if is_version(rest) => ("", rest.to_string()),
                // `GET /path` and headers: no version; only a target without spaces is trusted.
                None if !rest.is_empty() => (rest, "HTTP/1.0".to_string()),
                _ => return HeadParse::Invalid,
            };
            Head::Req(Box::new(Request {
                method: method.to_string(),
                target: target.to_string(),
                version,
                headers,
                ..Request::default()
            }))
        }
    };
    HeadParse::Complete(end, head, true)
}

/// Whether a start line is HTTP/1 enough for [`lenient_head`].
fn start_line_ok(dir: Direction, line: &[u8]) -> bool {
    match dir {
        Direction::ToClient => {
            line.len() >= 12
                && line[..5].eq_ignore_ascii_case(b"HTTP/")
                && line
                    .iter()
                    .skip(5)
                    .position(|&b| b == b' ')
                    .and_then(|sp| {
                        let code = line.get(5 + sp..)?.iter().skip_while(|&&b| b == b' ');
                        let digits: Vec<u8> = code.take(3).copied().collect();
                        Some(digits.len() == 3 && digits.iter().all(u8::is_ascii_digit))
                    })
                    .unwrap_or(false)
        }
        Direction::ToServer => {
            looks_like_request(line)
                && line
                    .iter()
                    .skip_while(|&&b| b != b' ')
                    .any(|&b| b != b' ' && b != b'\r')
        }
    }
}

/// Message body length from the framing headers (RFC 9112 §6.3). `None`: invalid framing.
fn body_kind(headers: &[(String, String)], close_delimited_ok: bool) -> Option<BodyKind> {
    let te: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(last) = te.last() {
        // TE overrides Content-Length (§6.3 item 3), which defeats CL/TE desync tricks.
        return if last.eq_ignore_ascii_case("chunked") {
            Some(BodyKind::Chunked(Chunk::Size))
        } else if close_delimited_ok {
            Some(BodyKind::UntilClose)
        } else {
            None
        };
    }
    let mut cl: Option<u64> = None;
    for (n, v) in headers {
        if !n.eq_ignore_ascii_case("content-length") {
            continue;
        }
        for part in v.split(',') {
            let p = part.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let x: u64 = p.parse().ok()?;
            if cl.is_some_and(|c| c != x) {
                return None;
            }
            cl = Some(x);
        }
    }
    match cl {
        Some(n) => Some(BodyKind::Length(n)),
        None if close_delimited_ok => Some(BodyKind::UntilClose),
        None => Some(BodyKind::Length(0)),
    }
}

fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn meta_at(meta: ChunkMeta, pos: usize) -> ChunkMeta {
    ChunkMeta {
        offset: meta.offset + pos as u64,
        ..meta
    }
}

impl Http1Conn {
    /// A connection. `from_start`: the connection's first bytes are seen (a handshake was
    /// captured); otherwise both directions first look for a message start.
    /// `scope` identifies the server (its learned response sizes are shared through
    /// [`SizeModels`]).
    pub fn new(cfg: ParserConfig, from_start: bool, scope: u64) -> Self {
        Http1Conn {
            cfg,
            to_server: Half::new(from_start),
            to_client: Half::new(from_start),
            pending: VecDeque::new(),
            next_id: 0,
            cur_resp: None,
            interim: Vec::new(),
            held_upgrade: Vec::new(),
            held_full: false,
            acct: Account::new(&cfg),
            degraded: false,
            scope,
            learned: Vec::new(),
            client_end: 0,
            deferred_dropped: 0,
            deferred: VecDeque::new(),
        }
    }

    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }

    /// Feeds in-order bytes of one direction. Completed exchanges are appended to `out`.
    pub fn on_data(
        &mut self,
        dir: Direction,
        data: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
        sizes: &mut SizeModels,
    ) -> Transition {
        if dir == Direction::ToServer {
            self.client_end = self.client_end.max(meta.offset + data.len() as u64);
        }
        let mut pos = 0;
        // Every step consumes bytes or changes state to one that will; the bound is a guard
        // against a logic slip turning into a hang on hostile input.
        let mut guard = 0usize;
        while pos < data.len() {
            guard += 1;
            if guard > 4 * data.len() + 64 {
                debug_assert!(false, "http1 parser made no progress");
                break;
            }
            let rest = &data[pos..];
            let m = meta_at(meta, pos);
            let state = self.half(dir).state;
            let (used, tr) = match state {
                State::Opaque => {
                    stats.opaque_bytes += rest.len() as u64;
                    (rest.len(), Transition::Stay)
                }
                State::Hold => {
                    // Once the cap or the budget stopped holding, nothing more is held, so
                    // that the held bytes never have a hole.
                    let room = if self.held_full {
                        0
                    } else {
                        MAX_HELD_UPGRADE.saturating_sub(self.held_upgrade.len())
                    };
                    let mut take = room.min(rest.len());
                    if take > 0
                        && !self.acct.grow(
                            &mut self.held_upgrade,
                            &rest[..take],
                            MAX_HELD_UPGRADE,
                            rest.len(),
                            stats,
                        )
                    {
                        take = 0;
                    }
                    self.held_full |= take < rest.len();
                    stats.opaque_bytes += (rest.len() - take) as u64;
                    (rest.len(), Transition::Stay)
                }
                State::Resync { at_start } => {
                    (self.resync(dir, rest, m, at_start, stats), Transition::Stay)
                }
                State::Head => self.head(dir, rest, m, out, stats, sizes),
                State::Body(kind) => (self.body(dir, kind, rest, out, stats), Transition::Stay),
            };
            pos += used;
            match tr {
                Transition::Stay => {}
                Transition::H2c {
                    request,
                    client_bytes,
                    ..
                } => {
                    self.drain_learned(sizes);
                    return Transition::H2c {
                        request,
                        client_bytes,
                        server_rest: pos,
                    };
                }
                Transition::Tunnel { client_bytes, .. } => {
                    self.drain_learned(sizes);
                    return Transition::Tunnel {
                        client_bytes,
                        server_rest: pos,
                    };
                }
                Transition::Opaque => {
                    stats.opaque_bytes += (data.len() - pos) as u64;
                    self.drain_learned(sizes);
                    return Transition::Opaque;
                }
            }
        }
        self.drain_learned(sizes);
        Transition::Stay
    }

    fn drain_learned(&mut self, sizes: &mut SizeModels) {
        for (k, sz) in self.learned.drain(..) {
            sizes.learn(k, sz);
        }
        // A chunk of many pipelined responses grew the list: give that back between calls.
        if self.learned.capacity() > 8 {
            self.learned = Vec::new();
        }
    }

    /// `len` bytes of `dir` were lost.
    pub fn on_gap(
        &mut self,
        dir: Direction,
        len: u64,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
        sizes: &mut SizeModels,
    ) {
        self.on_gap_inner(dir, len, out, stats);
        self.drain_learned(sizes);
    }

    fn on_gap_inner(
        &mut self,
        dir: Direction,
        len: u64,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        stats.gap_bytes += len;
        let state = self.half(dir).state;
        match state {
            State::Opaque | State::Hold => {}
            State::Resync { .. } => {
                self.free_buf(dir, stats);
                self.half(dir).state = State::Resync { at_start: true };
            }
            State::Body(BodyKind::UntilClose) => {
                self.with_body(dir, |b| {
                    b.bytes += len;
                    b.incomplete = true;
                });
            }
            State::Body(BodyKind::Length(rem)) if len <= rem => {
                self.with_body(dir, |b| {
                    b.bytes += len;
                    b.incomplete = true;
                });
                self.half(dir).state = State::Body(BodyKind::Length(rem - len));
                if rem == len {
                    self.message_done(dir, out, stats);
                }
            }
            State::Body(BodyKind::Chunked(Chunk::Data(rem))) if len <= rem => {
                self.with_body(dir, |b| {
                    b.bytes += len;
                    b.incomplete = true;
                });
                let next = if rem == len {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rem - len)
                };
                self.half(dir).state = State::Body(BodyKind::Chunked(next));
            }
            State::Body(_) => {
                // The gap swallowed the end of this body and perhaps whole messages after it.
                self.with_body(dir, |b| {
                    b.bytes += len;
                    b.incomplete = true;
                });
                self.message_done(dir, out, stats);
                self.start_resync(dir, true);
            }
            State::Head => {
                // A head cut by the gap is lost; the gap may also hold whole messages.
                self.free_buf(dir, stats);
                self.start_resync(dir, true);
            }
        }
    }

    /// The connection ended: finish what can be finished and emit every pending request.
    pub fn on_close(
        &mut self,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
        sizes: &mut SizeModels,
    ) {
        self.on_close_inner(out, stats);
        self.drain_learned(sizes);
    }

    fn on_close_inner(&mut self, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            match self.half(dir).state {
                State::Body(BodyKind::UntilClose) => self.message_done(dir, out, stats),
                State::Body(_) => {
                    self.with_body(dir, |b| b.incomplete = true);
                    self.message_done(dir, out, stats);
                }
                _ => {}
            }
            self.half(dir).state = State::Opaque;
        }
        if let Some(cur) = self.cur_resp.take() {
            self.attach_response(*cur, stats);
        }
        self.deferred_dropped += self.deferred.len() as u64;
        while let Some(d) = self.deferred.pop_front() {
            self.acct.release(stats, d.charged + DEFERRED_SLOT);
        }
        stats.orphan_responses += std::mem::take(&mut self.deferred_dropped);
        while let Some(p) = self.pending.pop_front() {
            self.acct.release(stats, p.charged);
            out.push(to_exchange(p));
        }
        self.release_all(stats);
    }

    /// HTTP/1 ends on this connection (closed, or handed over to another protocol): gives back
    /// to the worker's budget everything the connection still holds charged, and frees its
    /// buffers. Whatever else it still holds goes with it.
    pub(crate) fn release_all(&mut self, stats: &mut ParserStats) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            self.free_buf(dir, stats);
        }
        self.acct.free(&mut self.held_upgrade, stats);
        self.acct.close(stats);
    }

    /// Frees `dir`'s gathering buffer.
    fn free_buf(&mut self, dir: Direction, stats: &mut ParserStats) {
        let h = match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        };
        self.acct.free(&mut h.buf, stats);
    }

    /// Takes `dir`'s gathering buffer out of the account, for use within this call.
    fn take_buf(&mut self, dir: Direction, stats: &mut ParserStats) -> Vec<u8> {
        let h = match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        };
        self.acct.take(&mut h.buf, stats)
    }

    /// Appends `data` to `dir`'s gathering buffer, charged (growth by doubling up to
    /// `max_len`). Refused: nothing appended; the refusal is counted with `dropped` bytes.
    fn grow_buf(
        &mut self,
        dir: Direction,
        data: &[u8],
        max_len: usize,
        dropped: usize,
        stats: &mut ParserStats,
    ) -> bool {
        let h = match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        };
        self.acct.grow(&mut h.buf, data, max_len, dropped, stats)
    }

    fn start_resync(&mut self, dir: Direction, at_start: bool) {
        self.degraded = true;
        let h = self.half(dir);
        h.state = State::Resync { at_start };
        h.lost_messages = true;
    }

    /// Runs `f` on the body of the message currently being read in `dir` (for changes that
    /// keep no bytes: lengths and flags).
    fn with_body(&mut self, dir: Direction, f: impl FnOnce(&mut crate::Body)) {
        let body = match dir {
            Direction::ToServer => self
                .pending
                .back_mut()
                .filter(|p| !p.req_done)
                .map(|p| &mut p.req.body),
            Direction::ToClient => self.cur_resp.as_mut().map(|c| &mut c.resp.body),
        };
        if let Some(b) = body {
            f(b);
        }
    }

    /// Counts `data` in the body of the message currently being read in `dir`, and keeps it
    /// in the body's prefix as far as the cap and the budget allow.
    fn push_body(&mut self, dir: Direction, data: &[u8], stats: &mut ParserStats) {
        let cap = self.cfg.body_prefix_max;
        match dir {
            Direction::ToServer => {
                if let Some(p) = self.pending.back_mut().filter(|p| !p.req_done) {
                    p.charged +=
                        self.acct
                            .push_body(&mut p.req.body, data, cap, &mut p.body_stopped, stats);
                }
            }
            Direction::ToClient => {
                if let Some(c) = self.cur_resp.as_mut() {
                    c.charged += self.acct.push_body(
                        &mut c.resp.body,
                        data,
                        cap,
                        &mut c.body_stopped,
                        stats,
                    );
                }
            }
        }
    }

    /// Scans for the next plausible message start. Returns bytes consumed.
    fn resync(
        &mut self,
        dir: Direction,
        data: &[u8],
        meta: ChunkMeta,
        at_start: bool,
        stats: &mut ParserStats,
    ) -> usize {
        let is_start = |s: &[u8]| match dir {
            Direction::ToServer => RESYNC_METHODS.iter().any(|m| {
                let n = s.len().min(m.len());
                s[..n] == m[..n]
            }),
            Direction::ToClient => looks_like_response(s),
        };
        // A candidate split across chunks was kept in `buf`: complete it first.
        if !self.half(dir).buf.is_empty() {
            let have = self.half(dir).buf.len();
            let need = RESYNC_PROBE.saturating_sub(have).min(data.len());
            // Refused by the budget: the candidate is dropped like one that did not match.
            let grown = self.grow_buf(dir, &data[..need], 2 * RESYNC_PROBE, have + need, stats);
            let h = self.half(dir);
            if grown && is_start(&h.buf) && (h.buf.len() >= 8 || need == data.len()) {
                // Looks right so far: parse it as a head (the head step gathers the rest).
                let m = h.buf_meta;
                h.gather_head(m, 0);
                h.state = State::Head;
                stats.resyncs += 1;
                return need;
            }
            stats.resync_skipped_bytes += have as u64;
            self.free_buf(dir, stats);
        }
        // Candidates at a line start (or at the chunk's start when it follows a line end) are
        // trusted to httparse; anywhere else the whole start line must be present and end in an
        // HTTP version, since a body can contain "GET " by chance. `next_nl` caches the next
        // line end so that validation stays linear on hostile input.
        let mut next_nl: Option<usize> = None;
        let mut p = 0;
        while p < data.len() {
            let b = data[p];
            let maybe = match dir {
                Direction::ToServer => b.is_ascii_uppercase(),
                Direction::ToClient => b == b'H',
            };
            if !maybe || !is_start(&data[p..]) {
                p += 1;
                continue;
            }
            let strong = if p == 0 {
                at_start
            } else {
                data[p - 1] == b'\n'
            };
            let cand = &data[p..];
            if cand.len() < RESYNC_PROBE {
                // Possibly a message start cut by the chunk end: keep it for the next one
                // (unless the budget refuses: then it is skipped like the bytes before it).
                if !self.grow_buf(dir, cand, 2 * RESYNC_PROBE, cand.len(), stats) {
                    break;
                }
                self.half(dir).buf_meta = meta_at(meta, p);
                stats.resync_skipped_bytes += p as u64;
                return data.len();
            }
            let valid = strong
                || match dir {
                    Direction::ToClient => {
                        cand.len() >= 13
                            && cand[8] == b' '
                            && cand[9..12].iter().all(u8::is_ascii_digit)
                    }
                    Direction::ToServer => {
                        let nl = match next_nl {
                            Some(n) if n >= p => n,
                            _ => {
                                let n = data[p..]
                                    .iter()
                                    .position(|&c| c == b'\n')
                                    .map_or(data.len(), |i| p + i);
                                next_nl = Some(n);
                                n
                            }
                        };
                        let line = &data[p..nl];
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        nl < data.len()
                            && (line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
                    }
                };
            if valid {
                self.half(dir).state = State::Head;
                stats.resyncs += 1;
                stats.resync_skipped_bytes += p as u64;
                return p;
            }
            p += 1;
        }
        // The next chunk starts a line if this one ended one.
        self.half(dir).state = State::Resync {
            at_start: data.last() == Some(&b'\n'),
        };
        stats.resync_skipped_bytes += data.len() as u64;
        data.len()
    }

    /// Parses a message head. Returns bytes consumed and any connection transition.
    fn head(
        &mut self,
        dir: Direction,
        data: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
        sizes: &mut SizeModels,
    ) -> (usize, Transition) {
        let max = self.cfg.max_header_bytes;
        let cfg = self.cfg;
        let h = self.half(dir);
        // Stray line ends between messages (a body one byte longer than its Content-Length, a
        // CRLF after a POST body) belong to no message: skip them so that the next head's
        // metadata (time, offset, ACK) is that of its own first byte.
        if h.buf.is_empty() {
            let ws = data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if ws > 0 {
                return (ws, Transition::Stay);
            }
        }
        if h.buf.is_empty() {
            // Zero-copy: parse straight from the chunk, but never more of it than the cap, so
            // that a head's fate (and the extent recorded for it) does not depend on how the
            // mirror cut it into segments.
            let view = &data[..data.len().min(max)];
            return match parse_head(&cfg, dir, view) {
                HeadParse::Complete(n, head, lenient) => {
                    let tr = self.complete_head(dir, head, meta, n, lenient, out, stats, sizes);
                    (n, tr)
                }
                HeadParse::Partial if view.len() < max => {
                    // No head end in these bytes: later segments are searched from here on.
                    if !self.grow_buf(dir, data, max, data.len(), stats) {
                        self.refused_head(dir, data, meta, out, stats);
                        return (data.len(), Transition::Stay);
                    }
                    self.half(dir).gather_head(meta, data.len());
                    (data.len(), Transition::Stay)
                }
                HeadParse::Partial => {
                    self.oversized(dir, view, meta, out, stats);
                    // At least one byte, so that a zero cap cannot stall the loop.
                    (view.len().max(1), Transition::Stay)
                }
                HeadParse::TooLarge(end) => {
                    let end = end.min(view.len());
                    self.oversized(dir, &view[..end], meta, out, stats);
                    (end.max(1), Transition::Stay)
                }
                HeadParse::Invalid => {
                    stats.http1_parse_errors += 1;
                    self.start_resync(dir, false);
                    // Skip at least one byte so the same bad start is not found again.
                    (1, Transition::Stay)
                }
            };
        }
        // A head split across segments, gathered up to the cap. Re-parsing it from its start on
        // every segment would make a head trickled in small segments cost quadratic time, so it
        // is parsed only when its end may have arrived (searched in the new bytes alone), when
        // the cap is reached, or when it has doubled since the last attempt (which bounds how
        // late an invalid head is noticed): linear work in all.
        let before = h.buf.len();
        let take = max.saturating_sub(before).min(data.len());
        if !self.grow_buf(dir, &data[..take], max, before + take, stats) {
            let buf = self.take_buf(dir, stats);
            let head_meta = self.half(dir).buf_meta;
            self.refused_head(dir, &buf, head_meta, out, stats);
            // The resync scans this chunk from its start.
            return (0, Transition::Stay);
        }
        let h = self.half(dir);
        // A head end straddling the old and new bytes starts at most two bytes back.
        let from = (h.head_scanned as usize).min(before).saturating_sub(2);
        let ended = find_head_end(&h.buf, from).is_some();
        h.head_scanned = mark(h.buf.len());
        let full = h.buf.len() >= max;
        if !(ended || full || h.buf.len() >= 2 * h.head_parsed as usize) {
            return (take, Transition::Stay);
        }
        h.head_parsed = mark(h.buf.len());
        let head_meta = h.buf_meta;
        match parse_head(&cfg, dir, &h.buf) {
            HeadParse::Complete(n, head, lenient) => {
                self.free_buf(dir, stats);
                let tr = self.complete_head(dir, head, head_meta, n, lenient, out, stats, sizes);
                // The head ends in this chunk: earlier bytes would have completed it earlier.
                (n.saturating_sub(before), tr)
            }
            HeadParse::Partial if !full => (take, Transition::Stay),
            HeadParse::Partial => {
                let buf = self.take_buf(dir, stats);
                self.oversized(dir, &buf, head_meta, out, stats);
                (take, Transition::Stay)
            }
            HeadParse::TooLarge(end) => {
                let buf = self.take_buf(dir, stats);
                let end = end.min(buf.len());
                self.oversized(dir, &buf[..end], head_meta, out, stats);
                (end.saturating_sub(before), Transition::Stay)
            }
            HeadParse::Invalid => {
                self.free_buf(dir, stats);
                stats.http1_parse_errors += 1;
                self.start_resync(dir, false);
                // The resync scans this chunk again from its start.
                (0, Transition::Stay)
            }
        }
    }

    /// A complete head of `n` bytes was parsed.
    #[allow(clippy::too_many_arguments)]
    fn complete_head(
        &mut self,
        dir: Direction,
        head: Head,
        meta: ChunkMeta,
        n: usize,
        lenient: bool,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
        sizes: &mut SizeModels,
    ) -> Transition {
        if lenient {
            stats.http1_lenient_heads += 1;
        }
        self.on_head(dir, head, meta, n, out, stats, sizes)
    }

    /// A head over `max_header_bytes` or with too many fields: `head` is what the parser
    /// examined of it, never more than the cap (its end when that was in sight). The request
    /// line is kept and the parser resynchronises after those bytes.
    fn oversized(
        &mut self,
        dir: Direction,
        head: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        stats.http1_oversized_heads += 1;
        self.keep_request_line(dir, head, meta, out, stats);
        self.start_resync(dir, head.last() == Some(&b'\n'));
    }

    /// The budget could not hold a head being gathered (`head`: what had arrived of it): it is
    /// dropped like an oversized one (the refusal is counted by the budget, not as an oversized
    /// head). The request line is kept if the budget allows, and this direction resynchronises
    /// (mid-head: the next message starts at a line start).
    fn refused_head(
        &mut self,
        dir: Direction,
        head: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        self.keep_request_line(dir, head, meta, out, stats);
        self.start_resync(dir, false);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_head(
        &mut self,
        dir: Direction,
        head: Head,
        meta: ChunkMeta,
        head_len: usize,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
        sizes: &mut SizeModels,
    ) -> Transition {
        match head {
            Head::Req(req) => {
                let mut req = *req;
                stats.http1_requests += 1;
                req.ts_us = meta.ts_us;
                req.stream_offset = meta.offset;
                req.head_end_offset = meta.offset + head_len as u64;
                req.peer_ack = meta.peer_ack;
                let is_connect = req.method.eq_ignore_ascii_case("CONNECT");
                let wants_upgrade = req.header("upgrade").is_some()
                    && header_has_token(&req.headers, "connection", "upgrade");
                let upgrade_h2c = wants_upgrade && header_has_token(&req.headers, "upgrade", "h2c");
                let kind = body_kind(&req.headers, false);
                let lost = std::mem::take(&mut self.to_server.lost_messages);
                let kept = self.push_pending(
                    Pending {
                        id: 0,
                        charged: 0,
                        body_stopped: false,
                        req,
                        req_done: false,
                        resp: None,
                        given_up: false,
                        gap: lost,
                        upgrade_h2c,
                        wants_upgrade: wants_upgrade || is_connect,
                    },
                    stats,
                );
                if !kept {
                    // The budget cannot hold this request: it is dropped, but its body is still
                    // framed (and skipped), and pairing treats it as lost.
                    self.degraded = true;
                    self.to_server.lost_messages = true;
                } else if !self.deferred.is_empty() {
                    self.pair_deferred(sizes, stats);
                }
                match kind {
                    Some(BodyKind::Length(0)) => self.message_done(dir, out, stats),
                    Some(k) => self.to_server.state = State::Body(k),
                    None => {
                        // Unusable framing: the body cannot be delimited, so the next request
                        // is found by resynchronisation.
                        stats.http1_parse_errors += 1;
                        self.message_done(dir, out, stats);
                        self.start_resync(dir, false);
                    }
                }
                Transition::Stay
            }
            Head::Resp(resp) => {
                let mut resp = *resp;
                resp.ts_us = meta.ts_us;
                resp.stream_offset = meta.offset;
                resp.peer_ack = meta.peer_ack;
                if (100..200).contains(&resp.status) && resp.status != 101 {
                    if self.interim.len() < MAX_INTERIM {
                        self.interim.push(resp.status);
                    }
                    self.to_client.state = State::Head;
                    return Transition::Stay;
                }
                stats.http1_responses += 1;
                resp.interim = std::mem::take(&mut self.interim);
                let cost = budget::response_cost(&resp);
                let kept = self.acct.charge(stats, cost, head_len);
                let lost = std::mem::take(&mut self.to_client.lost_messages);
                let kind = body_kind(&resp.headers, true);
                let bodyless =
                    (100..200).contains(&resp.status) || resp.status == 204 || resp.status == 304;
                let framed_size = match kind {
                    _ if bodyless => Some(head_len as u64),
                    Some(BodyKind::Length(n)) => Some(head_len as u64 + n),
                    _ => None,
                };
                // A response acknowledging client bytes not parsed yet answers a request that
                // reassembly still holds behind a hole: wait for it rather than mispair or drop.
                let ahead = resp.peer_ack.is_some_and(|a| a > self.client_end);
                let must_wait =
                    !self.deferred.is_empty() || (ahead && !self.has_open_request(&resp));
                let (req_id, confident, deferred) = if must_wait && ahead {
                    (None, false, true)
                } else {
                    let (r, c) = self.pick_request(&resp, framed_size, lost, stats, sizes);
                    (r, c, false)
                };
                let req = req_id.and_then(|id| self.pending.iter().find(|p| p.id == id));
                let method_head = req.is_some_and(|p| p.req.method.eq_ignore_ascii_case("HEAD"));
                let connect = req.is_some_and(|p| p.req.method.eq_ignore_ascii_case("CONNECT"));
                let upgrade_h2c = req.is_some_and(|p| p.upgrade_h2c);
                let status = resp.status;
                // A HEAD response's size says nothing about the target's GET responses.
                let framed_size = if method_head { None } else { framed_size };
                if kept {
                    self.cur_resp = Some(Box::new(CurResp {
                        charged: cost,
                        body_stopped: false,
                        resp,
                        req_id,
                        gap: lost,
                        framed_size,
                        confident,
                        deferred,
                    }));
                } else if let Some(p) =
                    req_id.and_then(|id| self.pending.iter_mut().find(|p| p.id == id))
                {
                    // The budget cannot hold this response: its request goes without one, as if
                    // the response had been lost; its body is still framed (and skipped).
                    p.given_up = true;
                }
                if status == 101 || (connect && (200..300).contains(&status)) {
                    let request = match self.cur_resp.take() {
                        Some(c) => {
                            let id = c.req_id;
                            self.attach_response(*c, stats);
                            id
                        }
                        None => req_id,
                    };
                    let held = self.take_held(stats);
                    if status == 101 && upgrade_h2c {
                        // Stream 1 of the HTTP/2 connection is the upgraded request; its
                        // response comes in HTTP/2 frames, so it leaves the HTTP/1 queue.
                        if let Some(pos) =
                            request.and_then(|id| self.pending.iter().position(|p| p.id == id))
                        {
                            if let Some(p) = self.pending.remove(pos) {
                                self.acct.release(stats, p.charged);
                                self.flush_done(out, stats);
                                stats.h2c_upgrades += 1;
                                return Transition::H2c {
                                    request: Box::new(p.req),
                                    client_bytes: held,
                                    server_rest: 0,
                                };
                            }
                        }
                    }
                    // The requests queued before the switch are complete: emit them all.
                    self.to_server.state = State::Opaque;
                    self.to_client.state = State::Opaque;
                    self.flush_done(out, stats);
                    if status != 101 {
                        return Transition::Tunnel {
                            client_bytes: held,
                            server_rest: 0,
                        };
                    }
                    stats.opaque_bytes += held.len() as u64;
                    return Transition::Opaque;
                }
                let no_body =
                    method_head || status == 204 || status == 304 || (100..200).contains(&status);
                if no_body {
                    self.message_done(dir, out, stats);
                } else {
                    match kind {
                        Some(BodyKind::Length(0)) => self.message_done(dir, out, stats),
                        Some(k) => self.to_client.state = State::Body(k),
                        None => {
                            stats.http1_parse_errors += 1;
                            self.to_client.state = State::Body(BodyKind::UntilClose);
                        }
                    }
                }
                // The server declined the upgrade: the held client bytes are HTTP/1 after all.
                if self.to_server.state == State::Hold
                    && !self
                        .pending
                        .iter()
                        .any(|p| p.wants_upgrade && p.resp.is_none() && !p.given_up)
                {
                    self.to_server.state = State::Head;
                    let held = self.take_held(stats);
                    let m = ChunkMeta {
                        ts_us: meta.ts_us,
                        offset: 0,
                        peer_ack: None,
                    };
                    if let Transition::H2c { .. } | Transition::Tunnel { .. } | Transition::Opaque =
                        self.on_data(Direction::ToServer, &held, m, out, stats, sizes)
                    {
                        // A second upgrade inside the held bytes: not followed (rare); stay.
                    }
                }
                Transition::Stay
            }
        }
    }

    /// The client bytes held during an upgrade, out of the account (for use within this call).
    fn take_held(&mut self, stats: &mut ParserStats) -> Vec<u8> {
        self.held_full = false;
        self.acct.take(&mut self.held_upgrade, stats)
    }

    /// Queues a request (giving it its id), charging it and its slot to the budget; returns
    /// false, keeping nothing, when the budget refuses. Past `max_pending_requests` the oldest
    /// request still waiting for a response is given up: it will be emitted without one.
    fn push_pending(&mut self, mut p: Pending, stats: &mut ParserStats) -> bool {
        let cost = PENDING_SLOT + budget::request_cost(&p.req);
        let head = p.req.head_end_offset.saturating_sub(p.req.stream_offset) as usize;
        if !self.acct.charge(stats, cost, head) {
            return false;
        }
        p.charged = cost;
        self.next_id += 1;
        p.id = self.next_id;
        budget::reserve_slot(&mut self.pending, self.cfg.max_pending_requests + 1);
        self.pending.push_back(p);
        if self.pending.len() > self.cfg.max_pending_requests {
            if let Some(front) = self
                .pending
                .iter_mut()
                .find(|p| !p.given_up && p.resp.is_none())
            {
                front.given_up = true;
                stats.pending_overflow += 1;
            }
        }
        true
    }

    /// A request head too large to parse still had a request line: keep the request (headers
    /// dropped, marked as a gap) so that the server's answer (typically 431) pairs with it and
    /// not with the next request. `head` is what was examined of the head (at most the cap):
    /// the request's `head_end_offset` says where that ended.
    fn keep_request_line(
        &mut self,
        dir: Direction,
        head: &[u8],
        meta: ChunkMeta,
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) {
        if dir != Direction::ToServer {
            return;
        }
        let Some(nl) = head.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line = String::from_utf8_lossy(&head[..nl]);
        let mut parts = line.trim_end().split(' ').filter(|p| !p.is_empty());
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if !version.starts_with("HTTP/1.") || !looks_like_request(head) {
            return;
        }
        // Refused by the budget: the request is lost like its head (the resync that follows
        // marks the loss for pairing).
        self.push_pending(
            Pending {
                id: 0,
                charged: 0,
                body_stopped: false,
                req: Request {
                    ts_us: meta.ts_us,
                    method: method.to_string(),
                    target: target.to_string(),
                    version: version.to_string(),
                    stream_offset: meta.offset,
                    head_end_offset: meta.offset + head.len() as u64,
                    peer_ack: meta.peer_ack,
                    ..Request::default()
                },
                req_done: true,
                resp: None,
                given_up: false,
                gap: true,
                upgrade_h2c: false,
                wants_upgrade: false,
            },
            stats,
        );
        self.flush_done(out, stats);
    }

    fn has_open_request(&self, resp: &Response) -> bool {
        self.pending.iter().any(|p| {
            p.resp.is_none()
                && !p.given_up
                && resp.peer_ack.is_none_or(|ack| p.req.stream_offset < ack)
        })
    }

    /// Pairs waiting responses with requests that have just been parsed.
    fn pair_deferred(&mut self, sizes: &SizeModels, stats: &mut ParserStats) {
        while let Some(d) = self.deferred.front() {
            let open = self.pending.iter().position(|p| {
                p.resp.is_none()
                    && !p.given_up
                    && d.resp.peer_ack.is_none_or(|ack| p.req.stream_offset < ack)
            });
            let Some(i) = open else {
                if d.resp.peer_ack.is_some_and(|a| a > self.client_end) {
                    return; // its request may still come
                }
                self.deferred_dropped += 1;
                self.drop_deferred(stats);
                continue;
            };
            let want = sizes.stable(target_key(self.scope, &self.pending[i].req));
            if let (Some(w), Some(t)) = (want, d.framed_size) {
                if w != t {
                    if d.resp.peer_ack.is_some_and(|a| a > self.client_end) {
                        return;
                    }
                    self.deferred_dropped += 1;
                    self.drop_deferred(stats);
                    continue;
                }
            }
            let Some(mut d) = self.deferred.pop_front() else {
                return;
            };
            self.acct.release(stats, DEFERRED_SLOT);
            budget::shrink_idle(&mut self.deferred);
            d.req_id = Some(self.take_request(i));
            d.deferred = false;
            self.attach_response(d, stats);
        }
    }

    /// Drops the oldest deferred response, giving back what it held.
    fn drop_deferred(&mut self, stats: &mut ParserStats) {
        if let Some(d) = self.deferred.pop_front() {
            self.acct.release(stats, d.charged + DEFERRED_SLOT);
        }
        budget::shrink_idle(&mut self.deferred);
    }

    /// Chooses the request a response answers (see the module doc). Requests passed over are
    /// given up (emitted without a response). Returns the request and whether the choice is
    /// certain (FIFO on an intact connection, or confirmed by the size model).
    fn pick_request(
        &mut self,
        resp: &Response,
        framed_size: Option<u64>,
        lost: bool,
        stats: &mut ParserStats,
        sizes: &SizeModels,
    ) -> (Option<u64>, bool) {
        let is_open = |p: &Pending| {
            p.resp.is_none()
                && !p.given_up
                && resp.peer_ack.is_none_or(|ack| p.req.stream_offset < ack)
        };
        if !self.degraded {
            // Intact connection: FIFO is exact; no need to look further than the front.
            return match self.pending.iter().position(is_open) {
                Some(i) => (Some(self.take_request(i)), true),
                None => {
                    stats.orphan_responses += 1;
                    (None, false)
                }
            };
        }
        // The server can only answer what it had received the start of.
        let feasible: Vec<usize> = (0..self.pending.len())
            .filter(|&i| {
                let p = &self.pending[i];
                p.resp.is_none()
                    && !p.given_up
                    && resp.peer_ack.is_none_or(|ack| p.req.stream_offset < ack)
            })
            .collect();
        let Some(&front) = feasible.first() else {
            stats.orphan_responses += 1;
            return (None, false);
        };
        // Messages were lost: check FIFO against the response sizes each target has produced.
        if let Some(t) = framed_size {
            let stable = |c: &Self, i: usize| sizes.stable(target_key(c.scope, &c.pending[i].req));
            if let Some(sz) = stable(self, front) {
                if sz == t {
                    return (Some(self.take_request(front)), true);
                }
                // The front request's responses never have this size. Which side lost
                // messages decides what happened: without a server-side loss no response can
                // be missing, so this response answers a request lost on the client side, right
                // before the front one; with one, responses were lost and the queue moves on to
                // the request whose responses do have this size.
                let client_loss = self.pending[front].gap;
                if client_loss && !lost {
                    stats.orphan_responses += 1;
                    return (None, false);
                }
                if lost {
                    let mut all_known = true;
                    for &j in feasible.iter().skip(1).take(REALIGN_LOOKAHEAD) {
                        match stable(self, j) {
                            Some(s2) if s2 == t => return (Some(self.take_request(j)), true),
                            Some(_) => {}
                            None => {
                                all_known = false;
                                break;
                            }
                        }
                    }
                    if all_known {
                        // No queued request produces responses of this size: its request was
                        // lost too.
                        stats.orphan_responses += 1;
                        return (None, false);
                    }
                }
            }
        }
        let chosen = if lost {
            // Responses may have been lost: prefer the request the client sent last before this
            // response began (what a non-pipelining client does); ties keep FIFO order.
            let mut best: Option<(u64, usize)> = None;
            for &i in &feasible {
                if let Some(pa) = self.pending[i].req.peer_ack {
                    if pa <= resp.stream_offset && best.is_none_or(|(b, _)| pa > b) {
                        best = Some((pa, i));
                    }
                }
            }
            best.map_or(front, |(_, i)| i)
        } else {
            front
        };
        (Some(self.take_request(chosen)), false)
    }

    /// Marks queue entry `ci` as answered-to-be; open requests before it are given up.
    fn take_request(&mut self, ci: usize) -> u64 {
        for p in self.pending.iter_mut().take(ci) {
            if p.resp.is_none() {
                p.given_up = true;
            }
        }
        self.pending[ci].id
    }

    fn learn_size(&mut self, req_id: u64, size: u64) {
        if let Some(p) = self.pending.iter().find(|p| p.id == req_id) {
            let k = target_key(self.scope, &p.req);
            self.learned.push((k, size));
        }
    }

    /// Reads body bytes. Returns bytes consumed.
    fn body(
        &mut self,
        dir: Direction,
        kind: BodyKind,
        data: &[u8],
        out: &mut Vec<Exchange>,
        stats: &mut ParserStats,
    ) -> usize {
        match kind {
            BodyKind::Length(rem) => {
                let take = (rem.min(data.len() as u64)) as usize;
                self.push_body(dir, &data[..take], stats);
                let left = rem - take as u64;
                if left == 0 {
                    self.message_done(dir, out, stats);
                } else {
                    self.half(dir).state = State::Body(BodyKind::Length(left));
                }
                take
            }
            BodyKind::UntilClose => {
                self.push_body(dir, data, stats);
                data.len()
            }
            BodyKind::Chunked(Chunk::Data(rem)) => {
                let take = (rem.min(data.len() as u64)) as usize;
                self.push_body(dir, &data[..take], stats);
                let left = rem - take as u64;
                let next = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                self.half(dir).state = State::Body(BodyKind::Chunked(next));
                take
            }
            BodyKind::Chunked(c) => {
                // Line-oriented framing: size line, the CRLF after data, trailer section.
                let want_section = c == Chunk::Trailers;
                let Some((used, done)) = self.gather_line(dir, data, want_section, stats) else {
                    // The budget cannot hold the line: the body's framing is lost with it.
                    self.abort_body(dir, out, stats);
                    return 0;
                };
                let Some(line_len) = done else {
                    if self.half(dir).buf.len() > MAX_CHUNK_LINE {
                        stats.http1_parse_errors += 1;
                        self.abort_body(dir, out, stats);
                    }
                    return used;
                };
                let line = self.take_buf(dir, stats);
                let line = &line[..line_len.min(line.len())];
                match c {
                    Chunk::Size => match httparse::parse_chunk_size(line) {
                        Ok(httparse::Status::Complete((_, 0))) => {
                            self.half(dir).state = State::Body(BodyKind::Chunked(Chunk::Trailers));
                        }
                        Ok(httparse::Status::Complete((_, n))) => {
                            self.half(dir).state = State::Body(BodyKind::Chunked(Chunk::Data(n)));
                        }
                        _ => {
                            stats.http1_parse_errors += 1;
                            self.abort_body(dir, out, stats);
                        }
                    },
                    Chunk::DataEnd => {
                        if line.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            self.half(dir).state = State::Body(BodyKind::Chunked(Chunk::Size));
                        } else {
                            stats.http1_parse_errors += 1;
                            self.abort_body(dir, out, stats);
                        }
                    }
                    Chunk::Trailers => {
                        let mut hs = [httparse::EMPTY_HEADER; 32];
                        if let Ok(httparse::Status::Complete((_, hs))) =
                            httparse::parse_headers(line, &mut hs)
                        {
                            let t = headers_vec(hs);
                            if dir == Direction::ToClient {
                                if let Some(c) = self.cur_resp.as_mut() {
                                    // Kept if the budget holds them (the response has none yet).
                                    let old = budget::fields_cost(&c.resp.trailers);
                                    let new = budget::fields_cost(&t);
                                    if self.acct.charge(stats, new, line.len()) {
                                        c.resp.trailers = t;
                                        c.charged += new;
                                        self.acct.release(stats, old);
                                        c.charged -= old.min(c.charged);
                                    }
                                }
                            }
                        }
                        self.message_done(dir, out, stats);
                    }
                    Chunk::Data(_) => {}
                }
                used
            }
        }
    }

    /// Gathers a line (or, for trailers, a section ending in an empty line) into `buf`.
    /// Returns bytes consumed and, when complete, the length of what was gathered; `None`
    /// when the budget refused to hold the line.
    fn gather_line(
        &mut self,
        dir: Direction,
        data: &[u8],
        section: bool,
        stats: &mut ParserStats,
    ) -> Option<(usize, Option<usize>)> {
        let max = MAX_CHUNK_LINE + 1;
        let mut i = 0;
        while i < data.len() {
            let have = self.half(dir).buf.len();
            let Some(nl) = data[i..].iter().position(|&b| b == b'\n') else {
                let take = (data.len() - i).min(max - have.min(MAX_CHUNK_LINE));
                if !self.grow_buf(dir, &data[i..i + take], max, have + take, stats) {
                    return None;
                }
                return Some((data.len(), None));
            };
            let end = i + nl + 1;
            if !self.grow_buf(dir, &data[i..end], max, have + end - i, stats) {
                return None;
            }
            i = end;
            let buf = &self.half(dir).buf;
            if !section {
                return Some((i, Some(buf.len())));
            }
            // Trailer section: done at an empty line.
            let line = &buf[have..];
            if line == b"\r\n" || line == b"\n" {
                return Some((i, Some(buf.len())));
            }
            if buf.len() > MAX_CHUNK_LINE {
                return Some((i, None));
            }
        }
        Some((i, None))
    }

    /// Chunked framing broke: finish the message as incomplete and look for the next one.
    fn abort_body(&mut self, dir: Direction, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        self.free_buf(dir, stats);
        self.with_body(dir, |b| b.incomplete = true);
        self.message_done(dir, out, stats);
        self.start_resync(dir, false);
    }

    /// The message being read in `dir` is complete.
    fn message_done(&mut self, dir: Direction, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        match dir {
            Direction::ToServer => {
                let mut hold = false;
                if let Some(p) = self.pending.back_mut() {
                    if !p.req_done {
                        p.req_done = true;
                        hold = p.wants_upgrade;
                    }
                }
                self.to_server.state = if hold { State::Hold } else { State::Head };
            }
            Direction::ToClient => {
                if let Some(cur) = self.cur_resp.take() {
                    self.attach_response(*cur, stats);
                }
                if self.to_client.state != State::Opaque {
                    self.to_client.state = State::Head;
                }
            }
        }
        self.flush_done(out, stats);
    }

    /// Hands a finished response to its request (the charge moves with it), to the deferred
    /// queue, or drops it (giving back what it held).
    fn attach_response(&mut self, cur: CurResp, stats: &mut ParserStats) {
        let Some(id) = cur.req_id else {
            if cur.deferred {
                if self.deferred.len() >= MAX_DEFERRED {
                    self.deferred_dropped += 1;
                    self.drop_deferred(stats);
                }
                if self.acct.charge(stats, DEFERRED_SLOT, 0) {
                    budget::reserve_slot(&mut self.deferred, MAX_DEFERRED);
                    self.deferred.push_back(cur);
                    return;
                }
                self.deferred_dropped += 1;
            }
            self.acct.release(stats, cur.charged);
            return;
        };
        if cur.confident && !cur.resp.body.incomplete {
            if let Some(sz) = cur.framed_size {
                self.learn_size(id, sz);
            }
        }
        match self.pending.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                p.gap |= cur.gap || cur.resp.body.incomplete;
                if let Some(old) = p.resp.take() {
                    let c = budget::response_cost(&old);
                    p.charged -= c.min(p.charged);
                    self.acct.release(stats, c);
                }
                p.charged += cur.charged;
                p.resp = Some(cur.resp);
            }
            None => self.acct.release(stats, cur.charged),
        }
    }

    /// Emits, in order, every request at the queue's front that is finished.
    fn flush_done(&mut self, out: &mut Vec<Exchange>, stats: &mut ParserStats) {
        while let Some(front) = self.pending.front() {
            let waiting_resp = front.resp.is_none() && !front.given_up;
            if !front.req_done || waiting_resp {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.acct.release(stats, p.charged);
                out.push(to_exchange(p));
            }
        }
        budget::shrink_idle(&mut self.pending);
    }

    /// Requests waiting for a response.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Checks that what the connection holds charged is exactly what its buffers and messages
    /// cost (every growth charged, every release given back).
    #[cfg(test)]
    pub(crate) fn check_budget(&self) -> Result<(), String> {
        let mut sum = self.to_server.buf.capacity()
            + self.to_client.buf.capacity()
            + self.held_upgrade.capacity();
        for p in &self.pending {
            let want = PENDING_SLOT
                + budget::request_cost(&p.req)
                + p.resp.as_ref().map_or(0, budget::response_cost);
            if p.charged != want {
                return Err(format!(
                    "request {} charged {} costs {want}",
                    p.id, p.charged
                ));
            }
            sum += p.charged;
        }
        for c in self.cur_resp.iter().map(|c| &**c).chain(&self.deferred) {
            let want = budget::response_cost(&c.resp);
            if c.charged != want {
                return Err(format!("response charged {} costs {want}", c.charged));
            }
            sum += c.charged;
        }
        sum += self.deferred.len() * DEFERRED_SLOT;
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
}

fn to_exchange(p: Pending) -> Exchange {
    let gap = p.gap || p.req.body.incomplete;
    let mut ex = Exchange::new(Protocol::Http1, p.req);
    ex.response = p.resp;
    ex.gap = gap;
    ex
}

#[cfg(test)]
mod tests;
