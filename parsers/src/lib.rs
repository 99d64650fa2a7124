//! # apitap-parsers
//!
//! Passive, incremental protocol parsers over reassembled TCP byte streams. This crate owns the
//! step "ordered bytes (with explicit gaps) in, request/response exchanges out"; it never sees a
//! packet. Each connection gets one [`session::HttpSession`], fed the two directions of the stream
//! as they are reassembled: it detects the protocol, parses HTTP/1.1 ([`http1`], RFC 9112) or
//! HTTP/2 ([`http2`], RFC 9113 with passive HPACK, RFC 7541) and pairs requests with responses.
//!
//! Invariants every parser here keeps, because packet data is hostile:
//! - no panic is reachable from input; malformed input becomes a counter in [`ParserStats`];
//! - every buffer has a cap from [`ParserConfig`], and what a cap drops is counted;
//! - what the connections of a worker keep between calls is charged to one memory budget per
//!   worker ([`budget`]); what would exceed it is not kept, and counted;
//! - "need more bytes" is never confused with "these bytes are invalid";
//! - a gap (bytes the mirror lost) is an explicit event; parsers skip it or resynchronise, and the
//!   rest of the connection is still parsed.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod budget;
pub mod exchange;
pub mod http1;
pub mod http2;
pub mod session;

pub use exchange::*;
