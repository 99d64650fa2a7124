//! Passive HPACK decoding (RFC 7541), one [`Decoder`] per direction.
//!
//! Why our own decoder: the `h2` crate keeps its HPACK decoder private, and `loona-hpack` aborts a
//! whole block on an unknown index and panics when a table-size update exceeds its maximum. A
//! sensor needs the opposite: it may join a connection midstream or lose bytes to a gap, after
//! which the dynamic table is partly unknowable, and it must still return every field it can.
//!
//! Passive model of the dynamic table (RFC 7541 §2.3.2, §4): entries are kept newest first, each
//! either known or a placeholder for an insertion we saw but could not decode. Older than
//! everything we hold there may be an *unknown tail* (entries inserted before we started
//! tracking). Because HPACK indices count from the newest insertion, a lookup that lands on a
//! known entry is always right, whatever we do not know about older entries; one that lands on a
//! placeholder or in the tail is reported unknown and never guessed. Eviction uses the sum of the
//! known sizes (plus 32 per placeholder) as a lower bound of the real size, so we never drop an
//! entry the encoder still has. The tail is proven gone — the state regained — once the table
//! maximum is known and the entries we hold leave no room for one more entry (§4.4), which also
//! covers a size update to 0 (§6.3). A size update above the configured maximum is clamped
//! (counted); entries we then evict may still be live in the encoder, so looking them up is
//! reported unknown, never invalid and never guessed.
//!
//! Every count and length is bounded: integers to 2^32-1 (§5.1), strings to the block that
//! carries them (§5.2), the table to the configured maximum, and the decoded list to the
//! configured header-list cap (RFC 9113 §6.5.2 size accounting), beyond which fields are counted
//! and dropped but the block is still walked so the table stays in step (HPACK bomb defence).

use std::collections::VecDeque;

use super::huffman;
use super::H2Stats;

/// RFC 7541 §4.1: each entry costs its name and value length plus 32.
pub const ENTRY_OVERHEAD: usize = 32;
/// RFC 7541 §4.2 / RFC 9113 §6.5.2: SETTINGS_HEADER_TABLE_SIZE before any SETTINGS.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// RFC 7541 Appendix A.
#[rustfmt::skip]
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""),
    ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""), ("set-cookie", ""),
    ("strict-transport-security", ""), ("transfer-encoding", ""), ("user-agent", ""),
    ("vary", ""), ("via", ""), ("www-authenticate", ""),
];

/// Why decoding of a header block stopped early. The fields before the error are still returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// An integer ran past the end of the block (§5.1).
    #[error("integer truncated at offset {offset}")]
    IntegerTruncated {
        /// Offset in the block.
        offset: usize,
    },
    /// An integer exceeded 2^32-1 (§5.1).
    #[error("integer overflow at offset {offset}")]
    IntegerOverflow {
        /// Offset in the block.
        offset: usize,
    },
    /// A string literal is longer than what is left of the block (§5.2).
    #[error("string of {len} octets at offset {offset}, only {left} left")]
    StringTooLong {
        /// Offset in the block.
        offset: usize,
        /// Declared length.
        len: usize,
        /// Octets left.
        left: usize,
    },
}

/// Outcome of one lookup in the combined static + dynamic index space (§2.3.3).
enum Lookup<'a> {
    Found(&'a [u8], &'a [u8]),
    /// The entry exists but we do not know it (placeholder or unknown tail).
    Unknown,
    /// No such entry, and the table state is known: the block is malformed.
    Invalid,
}

type Entry = Option<(Box<[u8]>, Box<[u8]>)>;

/// Dynamic table as far as a passive observer can know it.
#[derive(Debug)]
struct DynTable {
    /// Newest first; `None` is an insertion we could not decode.
    entries: VecDeque<Entry>,
    /// Lower bound of the table size: exact sizes of known entries, 32 per placeholder.
    size: usize,
    /// Maximum size in force (assumed `cap` while unknown).
    max_size: usize,
    /// Whether `max_size` is the one the encoder uses.
    max_known: bool,
    /// Whether entries older than `entries` may exist.
    unknown_tail: bool,
    /// `max_size` is below what the encoder uses (clamped to our cap): entries we evict may
    /// still be in the encoder's table, so evicting makes the tail unknown instead of empty.
    clamped: bool,
}

fn entry_size(e: &Entry) -> usize {
    match e {
        Some((n, v)) => n.len() + v.len() + ENTRY_OVERHEAD,
        None => ENTRY_OVERHEAD,
    }
}

impl DynTable {
    fn get(&self, dyn_idx: usize) -> Lookup<'_> {
        match self.entries.get(dyn_idx) {
            Some(Some((n, v))) => Lookup::Found(n, v),
            Some(None) => Lookup::Unknown,
            None if self.unknown_tail => Lookup::Unknown,
            None => Lookup::Invalid,
        }
    }

    /// Evicts oldest entries until the lower bound fits. Returns whether anything was evicted.
    fn evict(&mut self) -> bool {
        let mut evicted = false;
        while self.size > self.max_size {
            match self.entries.pop_back() {
                Some(e) => {
                    self.size = self.size.saturating_sub(entry_size(&e));
                    evicted = true;
                }
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
        if evicted && self.clamped {
            self.unknown_tail = true;
        } else if evicted && self.max_known {
            // The real table evicted at least as much, oldest first: the tail went before ours.
            self.unknown_tail = false;
        }
        evicted
    }

    /// Clears the unknown tail when no older entry can still fit. Returns whether it did.
    fn settle(&mut self) -> bool {
        if self.unknown_tail
            && self.max_known
            && !self.clamped
            && self.size + ENTRY_OVERHEAD > self.max_size
        {
            self.unknown_tail = false;
            return true;
        }
        false
    }

    fn insert(&mut self, e: Entry) -> bool {
        let was_unknown = self.unknown_tail;
        let s = entry_size(&e);
        if s > self.max_size {
            // §4.4: an entry larger than the table empties it and is not added.
            self.entries.clear();
            self.size = 0;
            self.unknown_tail = !self.max_known || self.clamped;
            return was_unknown && !self.unknown_tail;
        }
        self.entries.push_front(e);
        self.size += s;
        self.evict();
        self.settle();
        was_unknown && !self.unknown_tail
    }

    fn resize(&mut self, n: usize, clamped: bool) -> bool {
        let was_unknown = self.unknown_tail;
        self.max_size = n;
        self.max_known = true;
        self.clamped = clamped;
        self.evict();
        self.settle();
        was_unknown && !self.unknown_tail
    }
}

/// A decoded header block.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Fields in block order. Names and values are converted lossily to UTF-8.
    pub fields: Vec<(String, String)>,
    /// Some fields are missing (unknown table entries, undecodable strings, the list cap, or an
    /// error that stopped the block).
    pub incomplete: bool,
}

/// The decoder of one direction.
#[derive(Debug)]
pub struct Decoder {
    table: DynTable,
    /// Upper bound for size updates: the configured maximum.
    cap: usize,
}

/// A string literal: decoded octets, or `None` when its Huffman coding was invalid.
type Str = Option<Vec<u8>>;

impl Decoder {
    /// A decoder for a connection seen from its start: empty table of the default size.
    pub fn new(cap: usize) -> Self {
        Decoder {
            table: DynTable {
                entries: VecDeque::new(),
                size: 0,
                max_size: DEFAULT_TABLE_SIZE.min(cap),
                max_known: true,
                unknown_tail: false,
                clamped: cap < DEFAULT_TABLE_SIZE,
            },
            cap,
        }
    }

    /// A decoder whose table state is unknown (midstream pickup).
    pub fn unknown(cap: usize) -> Self {
        let mut d = Decoder::new(cap);
        d.mark_unknown();
        d
    }

    /// Forget the table: header blocks (and with them insertions or size updates) were lost.
    /// Its memory is given back too.
    pub fn mark_unknown(&mut self) {
        self.table.entries = VecDeque::new();
        self.table.size = 0;
        self.table.unknown_tail = true;
        self.table.max_known = false;
        self.table.max_size = self.cap;
    }

    /// Whether any lookup could currently come back unknown.
    pub fn is_unknown(&self) -> bool {
        self.table.unknown_tail || self.table.entries.iter().any(Option::is_none)
    }

    /// The decoder's peer acknowledged SETTINGS_HEADER_TABLE_SIZE = `limit` (RFC 9113 §6.5.2):
    /// the encoder may not use more from now on.
    pub fn apply_settings_limit(&mut self, limit: usize) {
        let limit = limit.min(self.cap);
        if self.table.max_size > limit {
            self.table.max_size = limit;
            self.table.evict();
            self.table.settle();
        }
    }

    /// Current assumed maximum table size (for tests and diagnostics).
    pub fn max_size(&self) -> usize {
        self.table.max_size
    }

    /// Bytes the dynamic table holds: the decoded names and values of its known entries and
    /// one slot per entry its queue has room for (RFC 7541 §4.1 counts 32 octets an entry,
    /// which is what a slot takes here). What the connection charges to the worker's memory
    /// budget for the table.
    pub fn table_bytes(&self) -> usize {
        let t = &self.table;
        let slots = t.entries.capacity().max(t.entries.len());
        // `size` is the exact size of the known entries plus 32 per placeholder.
        t.size + (slots - t.entries.len()) * std::mem::size_of::<Entry>()
    }

    /// Number of dynamic entries held (known or placeholders).
    pub fn len(&self) -> usize {
        self.table.entries.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.table.entries.is_empty()
    }

    fn lookup(&self, idx: usize) -> Lookup<'_> {
        if idx == 0 {
            return Lookup::Invalid;
        }
        match STATIC_TABLE.get(idx - 1) {
            Some((n, v)) => Lookup::Found(n.as_bytes(), v.as_bytes()),
            None => self.table.get(idx - 1 - STATIC_TABLE.len()),
        }
    }

    /// Decodes one complete header block, updating the table. `max_list` caps the decoded list
    /// (sum of name + value + 32 per field). Decoding goes as far as the block allows: the
    /// returned error, if any, says why it stopped; the table is then marked unknown.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        stats: &mut H2Stats,
    ) -> (Decoded, Option<HpackError>) {
        let mut out = Decoded::default();
        let mut list_size = 0usize;
        let mut pos = 0usize;
        while let Some(&b) = block.get(pos) {
            let step = if b & 0x80 != 0 {
                self.indexed(block, &mut pos, max_list, &mut list_size, &mut out, stats)
            } else if b & 0xe0 == 0x20 {
                self.size_update(block, &mut pos, stats)
            } else {
                let (prefix, index) = if b & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                self.literal(
                    block,
                    &mut pos,
                    prefix,
                    index,
                    max_list,
                    &mut list_size,
                    &mut out,
                    stats,
                )
            };
            if let Err(e) = step {
                stats.hpack_errors += 1;
                out.incomplete = true;
                // The rest of the block, and any insertion in it, is lost.
                self.mark_unknown();
                return (out, Some(e));
            }
        }
        (out, None)
    }

    fn size_update(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        stats: &mut H2Stats,
    ) -> Result<(), HpackError> {
        let n = read_int(block, pos, 5)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let clamped = n > self.cap;
        if clamped {
            stats.hpack_table_size_clamped += 1;
        }
        if self.table.resize(n.min(self.cap), clamped) {
            stats.hpack_resynced += 1;
        }
        Ok(())
    }

    fn indexed(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        max_list: usize,
        list_size: &mut usize,
        out: &mut Decoded,
        stats: &mut H2Stats,
    ) -> Result<(), HpackError> {
        let idx = read_int(block, pos, 7)?;
        match self.lookup(usize::try_from(idx).unwrap_or(usize::MAX)) {
            Lookup::Found(n, v) => push_field(out, list_size, max_list, n, v, stats),
            Lookup::Unknown => {
                stats.hpack_unknown_refs += 1;
                out.incomplete = true;
            }
            Lookup::Invalid => {
                stats.hpack_invalid_index += 1;
                out.incomplete = true;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn literal(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        prefix: u8,
        index: bool,
        max_list: usize,
        list_size: &mut usize,
        out: &mut Decoded,
        stats: &mut H2Stats,
    ) -> Result<(), HpackError> {
        let name_idx = read_int(block, pos, prefix)?;
        let name: Str = if name_idx == 0 {
            read_str(block, pos, stats)?
        } else {
            match self.lookup(usize::try_from(name_idx).unwrap_or(usize::MAX)) {
                Lookup::Found(n, _) => Some(n.to_vec()),
                Lookup::Unknown => {
                    stats.hpack_unknown_refs += 1;
                    None
                }
                Lookup::Invalid => {
                    stats.hpack_invalid_index += 1;
                    None
                }
            }
        };
        let value = read_str(block, pos, stats)?;
        if !index {
            // Not kept by the table: the decoded octets become the field without a copy.
            match (name, value) {
                (Some(n), Some(v)) => push_owned(out, list_size, max_list, n, v, stats),
                _ => out.incomplete = true,
            }
            return Ok(());
        }
        match (&name, &value) {
            (Some(n), Some(v)) => push_field(out, list_size, max_list, n, v, stats),
            _ => out.incomplete = true,
        }
        {
            let entry = match (name, value) {
                (Some(n), Some(v)) => Some((n.into_boxed_slice(), v.into_boxed_slice())),
                _ => None,
            };
            if self.table.insert(entry) {
                stats.hpack_resynced += 1;
            }
        }
        Ok(())
    }
}

fn push_field(
    out: &mut Decoded,
    list_size: &mut usize,
    max_list: usize,
    n: &[u8],
    v: &[u8],
    stats: &mut H2Stats,
) {
    let s = n.len() + v.len() + ENTRY_OVERHEAD;
    if list_size.saturating_add(s) > max_list {
        stats.hpack_fields_dropped += 1;
        out.incomplete = true;
        return;
    }
    *list_size += s;
    out.fields.push((lossy(n), lossy(v)));
}

fn push_owned(
    out: &mut Decoded,
    list_size: &mut usize,
    max_list: usize,
    n: Vec<u8>,
    v: Vec<u8>,
    stats: &mut H2Stats,
) {
    let s = n.len() + v.len() + ENTRY_OVERHEAD;
    if list_size.saturating_add(s) > max_list {
        stats.hpack_fields_dropped += 1;
        out.incomplete = true;
        return;
    }
    *list_size += s;
    out.fields.push((owned(n), owned(v)));
}

fn owned(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| lossy(e.as_bytes()))
}

fn lossy(b: &[u8]) -> String {
    // Header bytes are nearly always valid UTF-8 (mostly ASCII): the strict check is a word at
    // a time, the lossy one a chunk iterator that costs twice as much when nothing is invalid.
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Prefixed integer (RFC 7541 §5.1), limited to 32 bits.
fn read_int(block: &[u8], pos: &mut usize, prefix: u8) -> Result<u64, HpackError> {
    let start = *pos;
    let first = *block
        .get(start)
        .ok_or(HpackError::IntegerTruncated { offset: start })?;
    let max_prefix = (1u64 << prefix) - 1;
    let mut value = u64::from(first) & max_prefix;
    *pos = start + 1;
    if value < max_prefix {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *block
            .get(*pos)
            .ok_or(HpackError::IntegerTruncated { offset: start })?;
        *pos += 1;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow { offset: start });
        }
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow { offset: start });
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// String literal (RFC 7541 §5.2). A bad Huffman coding costs only this string (`None`), since
/// its length is known and the block stays in step.
fn read_str(block: &[u8], pos: &mut usize, stats: &mut H2Stats) -> Result<Str, HpackError> {
    let start = *pos;
    let huff = block.get(start).is_some_and(|b| b & 0x80 != 0);
    let len = read_int(block, pos, 7)?;
    let left = block.len().saturating_sub(*pos);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let raw = block
        .get(*pos..pos.saturating_add(len))
        .ok_or(HpackError::StringTooLong {
            offset: start,
            len,
            left,
        })?;
    *pos += len;
    if !huff {
        return Ok(Some(raw.to_vec()));
    }
    let mut out = Vec::new();
    match huffman::decode(raw, &mut out) {
        Ok(()) => Ok(Some(out)),
        Err(_) => {
            stats.hpack_huffman_errors += 1;
            Ok(None)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn dec(d: &mut Decoder, block: &str) -> Decoded {
        let mut st = H2Stats::default();
        let (out, err) = d.decode(&hex(block), 64 * 1024, &mut st);
        assert_eq!(err, None);
        out
    }

    fn table(d: &Decoder) -> Vec<(String, String)> {
        d.table
            .entries
            .iter()
            .map(|e| {
                let (n, v) = e.as_ref().unwrap();
                (lossy(n), lossy(v))
            })
            .collect()
    }

    #[test]
    fn c2_literal_representations() {
        // C.2.1 literal with indexing
        let mut d = Decoder::new(65536);
        let o = dec(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        assert_eq!(o.fields, fields(&[("custom-key", "custom-header")]));
        assert_eq!(d.table.size, 55);
        // C.2.2 literal without indexing
        let mut d = Decoder::new(65536);
        let o = dec(&mut d, "040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(o.fields, fields(&[(":path", "/sample/path")]));
        assert!(d.is_empty());
        // C.2.3 never indexed
        let o = dec(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(o.fields, fields(&[("password", "secret")]));
        assert!(d.is_empty());
        // C.2.4 indexed
        let o = dec(&mut d, "82");
        assert_eq!(o.fields, fields(&[(":method", "GET")]));
    }

    fn requests(blocks: [&str; 3]) {
        let mut d = Decoder::new(65536);
        let o = dec(&mut d, blocks[0]);
        assert_eq!(
            o.fields,
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(table(&d), fields(&[(":authority", "www.example.com")]));
        assert_eq!(d.table.size, 57);
        let o = dec(&mut d, blocks[1]);
        assert_eq!(
            o.fields,
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(d.table.size, 110);
        let o = dec(&mut d, blocks[2]);
        assert_eq!(
            o.fields,
            fields(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(
            table(&d),
            fields(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.table.size, 164);
        assert!(!o.incomplete && !d.is_unknown());
    }

    #[test]
    fn c3_requests_without_huffman() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    #[test]
    fn c4_requests_with_huffman() {
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    fn responses(blocks: [&str; 3]) {
        let mut d = Decoder::new(65536);
        d.resize_for_test(256);
        let o = dec(&mut d, blocks[0]);
        assert_eq!(
            o.fields,
            fields(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com")
            ])
        );
        assert_eq!(d.table.size, 222);
        let o = dec(&mut d, blocks[1]);
        assert_eq!(
            o.fields,
            fields(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com")
            ])
        );
        assert_eq!(
            table(&d),
            fields(&[
                (":status", "307"),
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private")
            ])
        );
        let o = dec(&mut d, blocks[2]);
        assert_eq!(
            o.fields,
            fields(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                )
            ])
        );
        assert_eq!(
            table(&d),
            fields(&[
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                ),
                ("content-encoding", "gzip"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT")
            ])
        );
        assert_eq!(d.table.size, 215);
    }

    impl Decoder {
        fn resize_for_test(&mut self, n: usize) {
            self.table.resize(n, false);
        }
    }

    #[test]
    fn c5_responses_without_huffman() {
        responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
        ]);
    }

    #[test]
    fn c6_responses_with_huffman() {
        responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn table_size_update_and_eviction() {
        let mut d = Decoder::new(65536);
        dec(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        assert_eq!(d.len(), 1);
        // Size update to 0 empties the table; a reference then is invalid.
        let mut st = H2Stats::default();
        let (o, _) = d.decode(&hex("20 be"), 65536, &mut st);
        assert!(d.is_empty() && o.incomplete && o.fields.is_empty());
        assert_eq!(st.hpack_invalid_index, 1);
        // Size 100 holds one 55-octet entry; the second evicts the first.
        dec(&mut d, "3f45"); // 31 + 69 = 100
        assert_eq!(d.max_size(), 100);
        dec(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        dec(&mut d, "4003 6162 6301 78"); // abc: x (36)
        assert_eq!(d.len(), 2);
        dec(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        assert_eq!(
            table(&d),
            fields(&[("custom-key", "custom-header"), ("abc", "x")])
        );
        // Shrinking evicts oldest first, down to nothing here.
        dec(&mut d, "3f05"); // 36
        assert!(d.is_empty());
    }

    #[test]
    fn size_update_is_clamped_to_cap() {
        let mut d = Decoder::new(1000);
        let mut st = H2Stats::default();
        d.decode(&hex("3fe1 1f"), 65536, &mut st); // 4096
        let (_, e) = d.decode(&hex("3fff ffff ff07"), 65536, &mut st);
        assert_eq!(e, None);
        assert_eq!(d.max_size(), 1000);
        assert_eq!(st.hpack_table_size_clamped, 2);
        d.apply_settings_limit(100);
        assert_eq!(d.max_size(), 100);
    }

    #[test]
    fn clamped_table_reports_evicted_entries_as_unknown() {
        // Our cap (100) is below the encoder's default 4096: what we evict, it may still have.
        let mut d = Decoder::new(100);
        let mut st = H2Stats::default();
        for v in ["1", "2", "3"] {
            d.decode(
                &hex(&format!("4003 6162 6301 {:02x}", v.as_bytes()[0])),
                65536,
                &mut st,
            );
        }
        let (o, _) = d.decode(&hex("be bf c0"), 65536, &mut st);
        assert_eq!(o.fields, fields(&[("abc", "3"), ("abc", "2")]));
        assert!(o.incomplete);
        assert_eq!((st.hpack_unknown_refs, st.hpack_invalid_index), (1, 0));
    }

    #[test]
    fn unknown_state_decodes_what_it_can_and_regains() {
        let mut d = Decoder::unknown(4096);
        let mut st = H2Stats::default();
        // Static index, unknown dynamic index 62, literal with new name.
        let (o, e) = d.decode(&hex("82 be 0003 6162 6301 78"), 65536, &mut st);
        assert_eq!(e, None);
        assert!(o.incomplete);
        assert_eq!(o.fields, fields(&[(":method", "GET"), ("abc", "x")]));
        assert_eq!(st.hpack_unknown_refs, 1);
        // An insertion is known and indexable although older entries are not.
        let (o, _) = d.decode(&hex("4003 6162 6301 79 be bf"), 65536, &mut st);
        assert_eq!(o.fields, fields(&[("abc", "y"), ("abc", "y")]));
        assert!(o.incomplete, "62+1 is older than what we know");
        assert!(d.is_unknown());
        // Literal indexed with unknown name: placeholder, then lookups of it are unknown.
        let (o, _) = d.decode(&hex("7f00 0178 be bf"), 65536, &mut st);
        assert_eq!(o.fields, fields(&[("abc", "y")]));
        assert!(o.incomplete);
        // Size update to 0 proves the table empty: state regained.
        let (o, _) = d.decode(&hex("20 3fe1 1f 4003 6162 6301 7a be"), 65536, &mut st);
        assert_eq!(o.fields, fields(&[("abc", "z"), ("abc", "z")]));
        assert!(!o.incomplete && !d.is_unknown());
        assert_eq!(st.hpack_resynced, 1);
        // And a reference past the end is now invalid rather than unknown.
        let (o, _) = d.decode(&hex("bf"), 65536, &mut st);
        assert!(o.incomplete);
        assert_eq!(st.hpack_invalid_index, 1);
    }

    #[test]
    fn regains_when_known_entries_fill_the_table() {
        let mut d = Decoder::new(4096);
        d.resize_for_test(100);
        d.mark_unknown();
        let mut st = H2Stats::default();
        // Unknown max: insertions alone cannot prove the tail gone.
        let mut blk = hex("4003 6162 631e");
        blk.extend_from_slice(&[b'x'; 0x1e]);
        d.decode(&blk, 65536, &mut st);
        assert!(d.is_unknown());
        // Knowing the max (size update) and a table full of known entries does.
        let mut blk = hex("3f45 4003 6162 631e");
        blk.extend_from_slice(&[b'x'; 0x1e]);
        d.decode(&blk, 65536, &mut st);
        assert!(!d.is_unknown());
    }

    #[test]
    fn bomb_is_capped() {
        // One 4000-octet value indexed, then referenced 10 000 times.
        let mut blk = hex("4001 61 7fa1 1e");
        blk.extend(std::iter::repeat_n(b'v', 4000));
        let mut d = Decoder::new(65536);
        let mut st = H2Stats::default();
        d.decode(&blk, 65536, &mut st);
        let refs = vec![0xbeu8; 10_000];
        let (o, e) = d.decode(&refs, 65536, &mut st);
        assert_eq!(e, None);
        assert!(o.incomplete);
        assert_eq!(o.fields.len(), 65536 / 4033);
        assert_eq!(st.hpack_fields_dropped, 10_000 - 16);
    }

    #[test]
    fn malformed_blocks_stop_without_panic() {
        let mut st = H2Stats::default();
        for b in [
            "ff",                   // truncated integer
            "ff ff ff ff ff ff 0f", // overflow
            "0005 61",              // string longer than block
            "0081 ff 01 61",        // bad Huffman name: string skipped, block continues
            "80",                   // index 0
        ] {
            let mut d = Decoder::new(4096);
            let (o, _) = d.decode(&hex(b), 65536, &mut st);
            assert!(o.incomplete, "{b}");
        }
        assert_eq!(st.hpack_errors, 3);
        assert_eq!(st.hpack_huffman_errors, 1);
        assert_eq!(st.hpack_invalid_index, 1);
    }
}
