//! Bodies: `Content-Encoding` decoding with bomb caps, walking JSON, form-urlencoded and
//! multipart bodies leaf by leaf, and the schemas inferred from them.
//!
//! Owns everything between the captured body prefix and the inventory's request/response
//! schemas:
//! - [`decode_content`] undoes the content codings of RFC 9110 §8.4.1 — `gzip`/`x-gzip`
//!   (RFC 1952, multi-member), `deflate` (RFC 1950 zlib, and the raw RFC 1951 stream some
//!   servers send instead), `br` (RFC 7932), `identity` — last applied first. The output is
//!   capped at `max_decoded` bytes and at `max_ratio` times the input (decompression bombs);
//!   a truncated input (the parsers keep a prefix of each body) yields what it decodes to.
//! - [`body_kind`] picks the walker from the media type, sniffing JSON when the type is
//!   missing or generic.
//! - [`walk`] visits every scalar leaf with its path and builds a [`Schema`]. The JSON walker
//!   (RFC 8259) is an iterative tokenizer over bytes: no recursion (a 100 000-deep document
//!   cannot overflow the stack), no tree, tolerant of a truncated prefix (the complete leaves
//!   before the cut are visited and counted as such) and bounded in depth, fields and leaves.
//!   Forms follow the WHATWG `application/x-www-form-urlencoded` parser; multipart follows
//!   RFC 7578 / RFC 2046 §5.1.
//!
//! # Paths
//! Leaf paths are RFC 9535 JSONPath normalized-style: `$` the root, `.name` for a member whose
//! name is a shorthand identifier (`[A-Za-z_][A-Za-z0-9_]*`, non-ASCII allowed), `['a.b']` for
//! any other name (with `\'`, `\\` and control characters escaped), `[*]` for array items, and
//! `.*` for members whose *name* is a value by shape (ids, UUIDs, e-mails, dates … see
//! [`crate::infer::template::segment_shape`]) — maps keyed by ids would otherwise put values into
//! paths and blow up the schema. Paths therefore never hold an id-like value.
//!
//! # Schemas
//! A [`Schema`] is a flat map from path to what was seen there: JSON types, how often, how many
//! of the occurrences were objects (for `required`), and which string formats all string
//! samples had. It merges by adding counts, so it is independent of the order of the samples;
//! [`Schema::to_json_schema`] renders JSON Schema 2020-12 (the OpenAPI 3.1 dialect). No value
//! ever enters a schema — only types, counts and format names.
use crate::infer::template::segment_shape;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// Content codings applied on top of each other that are undone; more is unsupported.
const MAX_CODINGS: usize = 4;
/// Fields a merged schema keeps (a walk is bounded by [`BodyLimits::max_fields`]).
pub const MAX_MERGED_FIELDS: usize = 1024;
/// Depth the JSON walker descends to at most, whatever the limits say (schema rendering
/// recurses once per level).
const HARD_MAX_DEPTH: usize = 128;
/// Bytes of a multipart part's headers read at most.
const MAX_PART_HEADER: usize = 8192;
/// Bytes of a text part's value visited at most.
const MAX_PART_VALUE: usize = 8192;
/// Strings longer than this are not tested for a format.
const MAX_FORMAT_LEN: usize = 64;

/// Limits of body decoding and walking.
///
/// ```toml
/// [body]
/// max_decoded = 1048576
/// max_ratio = 100
/// max_depth = 32
/// max_fields = 512
/// max_leaves = 4096
/// max_parts = 64
/// ```
#[derive(Clone, Debug)]
pub struct BodyLimits {
    /// Decoded bytes kept per body (the rest is not inspected). Default 1 MiB.
    pub max_decoded: usize,
    /// Decoded bytes per coded byte at most. Default 100.
    pub max_ratio: u32,
    /// JSON nesting walked; deeper containers are typed but not entered. Default 32, at most
    /// 128.
    pub max_depth: usize,
    /// Distinct paths recorded per body. Default 512.
    pub max_fields: usize,
    /// Leaves visited per body; the walk stops after them. Default 4096.
    pub max_leaves: usize,
    /// Multipart parts read per body. Default 64.
    pub max_parts: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_decoded: 1 << 20,
            max_ratio: 100,
            max_depth: 32,
            max_fields: 512,
            max_leaves: 4096,
            max_parts: 64,
        }
    }
}

/// Body counters (each counts bodies, not occurrences within a body).
#[derive(Default, Clone, Debug, Serialize)]
pub struct BodyStats {
    /// Bodies whose content coding was undone (at least partly).
    pub decoded: u64,
    /// Coded bodies with invalid coded data (what decoded before the error is inspected).
    pub decode_errors: u64,
    /// Coded bodies that ended before their coding did (a captured prefix).
    pub decode_truncated: u64,
    /// Bodies cut at the size or ratio cap.
    pub bomb_capped: u64,
    /// Bodies with a coding that is not supported (`compress`, `zstd`, …) or too many codings.
    pub unsupported_encoding: u64,
    /// Bodies labelled as coded whose bytes were plain JSON (inspected as such).
    pub mislabeled: u64,
    /// Bodies walked (JSON, form or multipart).
    pub walked: u64,
    /// JSON bodies that ended inside a value (the complete leaves were walked).
    pub truncated_json: u64,
    /// JSON bodies with a syntax error (walked up to it).
    pub invalid_json: u64,
    /// Bodies with containers deeper than `max_depth`.
    pub depth_capped: u64,
    /// Bodies with more distinct paths than `max_fields`.
    pub fields_capped: u64,
    /// Bodies with more leaves than `max_leaves`.
    pub leaves_capped: u64,
    /// Multipart bodies with more parts than `max_parts`.
    pub parts_capped: u64,
    /// Multipart bodies that ended inside a part, or without a usable boundary.
    pub truncated_multipart: u64,
}

impl BodyStats {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &BodyStats) {
        self.decoded += o.decoded;
        self.decode_errors += o.decode_errors;
        self.decode_truncated += o.decode_truncated;
        self.bomb_capped += o.bomb_capped;
        self.unsupported_encoding += o.unsupported_encoding;
        self.mislabeled += o.mislabeled;
        self.walked += o.walked;
        self.truncated_json += o.truncated_json;
        self.invalid_json += o.invalid_json;
        self.depth_capped += o.depth_capped;
        self.fields_capped += o.fields_capped;
        self.leaves_capped += o.leaves_capped;
        self.parts_capped += o.parts_capped;
        self.truncated_multipart += o.truncated_multipart;
    }
}

// ---------------------------------------------------------------------------------------------
// Content-Encoding

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coding {
    Gzip,
    Deflate,
    Br,
}

/// How reading a decoder ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Complete,
    Capped,
    Truncated,
    Invalid,
}

/// Reads `r` into `out` up to `cap` bytes, in bounded steps.
fn read_capped<R: Read>(mut r: R, cap: usize, out: &mut Vec<u8>) -> End {
    const STEP: usize = 16 * 1024;
    loop {
        if out.len() >= cap {
            let mut probe = [0u8; 1];
            return match r.read(&mut probe) {
                Ok(0) => End::Complete,
                Ok(_) => End::Capped,
                Err(_) => End::Capped,
            };
        }
        let len = out.len();
        let n = STEP.min(cap - len);
        out.resize(len + n, 0);
        match r.read(&mut out[len..]) {
            Ok(0) => {
                out.truncate(len);
                return End::Complete;
            }
            Ok(k) => out.truncate(len + k),
            Err(e) => {
                out.truncate(len);
                return match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::UnexpectedEof => End::Truncated,
                    _ => End::Invalid,
                };
            }
        }
    }
}

/// RFC 1950 §2.2: CM 8, CINFO ≤ 7, header check multiple of 31.
fn is_zlib(b: &[u8]) -> bool {
    b.len() >= 2
        && b[0] & 0x0f == 8
        && b[0] >> 4 <= 7
        && ((u16::from(b[0]) << 8) | u16::from(b[1])) % 31 == 0
}

fn decode_one(c: Coding, input: &[u8], cap: usize, out: &mut Vec<u8>) -> End {
    match c {
        Coding::Gzip => read_capped(flate2::bufread::MultiGzDecoder::new(input), cap, out),
        Coding::Deflate => {
            if is_zlib(input) {
                let end = read_capped(flate2::bufread::ZlibDecoder::new(input), cap, out);
                if !(out.is_empty() && end == End::Invalid) {
                    return end;
                }
            }
            read_capped(flate2::bufread::DeflateDecoder::new(input), cap, out)
        }
        Coding::Br => read_capped(
            brotli_decompressor::Decompressor::new(input, 4096),
            cap,
            out,
        ),
    }
}

/// Whether `b` starts like a JSON document (after whitespace and a UTF-8 BOM).
fn sniff_json(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let mut it = b.iter().copied().filter(|c| !c.is_ascii_whitespace());
    match it.next() {
        Some(b'{') => matches!(it.next(), None | Some(b'"' | b'}')),
        Some(b'[') => matches!(
            it.next(),
            None | Some(b'{' | b'[' | b'"' | b']' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
        ),
        _ => false,
    }
}

/// Undoes `encoding` (a `Content-Encoding` value) on `body`, within the caps of `lim`; see the
/// module doc. Unsupported codings give an empty body (coded bytes are not inspectable).
pub fn decode_content<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    lim: &BodyLimits,
    stats: &mut BodyStats,
) -> Cow<'a, [u8]> {
    let mut codings = [Coding::Gzip; MAX_CODINGS];
    let mut n = 0;
    for token in encoding.unwrap_or("").split(',').map(str::trim) {
        let c = if token.is_empty() || token.eq_ignore_ascii_case("identity") {
            continue;
        } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Coding::Gzip
        } else if token.eq_ignore_ascii_case("deflate") {
            Coding::Deflate
        } else if token.eq_ignore_ascii_case("br") {
            Coding::Br
        } else {
            stats.unsupported_encoding += 1;
            return Cow::Borrowed(&[]);
        };
        if n == MAX_CODINGS {
            stats.unsupported_encoding += 1;
            return Cow::Borrowed(&[]);
        }
        codings[n] = c;
        n += 1;
    }
    if n == 0 {
        if body.len() > lim.max_decoded {
            stats.bomb_capped += 1;
            return Cow::Borrowed(&body[..lim.max_decoded]);
        }
        return Cow::Borrowed(body);
    }
    let cap = lim
        .max_decoded
        .min(body.len().saturating_mul(lim.max_ratio.max(1) as usize));
    let mut cur: Cow<'a, [u8]> = Cow::Borrowed(body);
    let (mut capped, mut truncated, mut invalid) = (false, false, false);
    for (layer, &c) in codings[..n].iter().rev().enumerate() {
        let mut out = Vec::new();
        let end = decode_one(c, &cur, cap, &mut out);
        if out.is_empty() && end != End::Complete {
            if layer == 0 && sniff_json(body) {
                stats.mislabeled += 1;
                return Cow::Borrowed(&body[..body.len().min(lim.max_decoded)]);
            }
            if end == End::Truncated && capped {
                // The cap cut an outer layer short, not the capture: a bomb, counted as one.
                stats.bomb_capped += 1;
            } else if end == End::Truncated {
                stats.decode_truncated += 1;
            } else {
                stats.decode_errors += 1;
            }
            return Cow::Borrowed(&[]);
        }
        match end {
            End::Complete => {}
            End::Capped => capped = true,
            End::Truncated => truncated = true,
            End::Invalid => invalid = true,
        }
        cur = Cow::Owned(out);
    }
    stats.decoded += 1;
    stats.bomb_capped += u64::from(capped);
    stats.decode_truncated += u64::from(truncated);
    stats.decode_errors += u64::from(invalid);
    cur
}

// ---------------------------------------------------------------------------------------------
// Kinds

/// Which walker a body gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON (RFC 8259), also JSON Lines.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data` (RFC 7578).
    Multipart,
    /// Anything else: not walked.
    Other,
}

/// The body's kind from its media type (RFC 9110 §8.3.1); JSON is sniffed when the type is
/// missing, `text/plain` or `application/octet-stream`, and a form only when it is missing.
pub fn body_kind(content_type: Option<&str>, body: &[u8]) -> BodyKind {
    let mt = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    let (ty, sub) = mt.split_once('/').unwrap_or((mt, ""));
    let sub = sub.trim();
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let ends = |s: &str, suf: &str| {
        s.len() >= suf.len()
            && s.as_bytes()[s.len() - suf.len()..].eq_ignore_ascii_case(suf.as_bytes())
    };
    if !mt.is_empty() && ends(sub, "json") {
        // application/json, */*+json (vnd.api+json, problem+json), x-ndjson, text/json.
        return BodyKind::Json;
    }
    if is(ty, "application") && is(sub, "x-www-form-urlencoded") {
        return BodyKind::Form;
    }
    if is(ty, "multipart") && is(sub, "form-data") {
        return BodyKind::Multipart;
    }
    let generic = mt.is_empty()
        || (is(ty, "text") && is(sub, "plain"))
        || (is(ty, "application") && is(sub, "octet-stream"))
        || sub.is_empty();
    if generic && sniff_json(body) {
        return BodyKind::Json;
    }
    if mt.is_empty() && sniff_form(body) {
        return BodyKind::Form;
    }
    BodyKind::Other
}

/// `name=value(&name=value)*` with URL-safe characters only, judged on the first 4 KiB.
fn sniff_form(b: &[u8]) -> bool {
    let b = &b[..b.len().min(4096)];
    if b.is_empty() || !b.contains(&b'=') {
        return false;
    }
    b.split(|&c| c == b'&').all(|pair| {
        let Some(eq) = pair.iter().position(|&c| c == b'=') else {
            return false;
        };
        eq > 0
            && pair
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"%+-._~=*!'()[],:/@$".contains(&c))
    })
}

// ---------------------------------------------------------------------------------------------
// Schema

/// A set of JSON types seen at one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Types(u8);

impl Types {
    /// JSON `null`.
    pub const NULL: Types = Types(1);
    /// `true`/`false`.
    pub const BOOLEAN: Types = Types(2);
    /// A number without fraction or exponent.
    pub const INTEGER: Types = Types(4);
    /// Any other number.
    pub const NUMBER: Types = Types(8);
    /// A string (form fields and multipart text parts too).
    pub const STRING: Types = Types(16);
    /// An object.
    pub const OBJECT: Types = Types(32);
    /// An array.
    pub const ARRAY: Types = Types(64);
    /// A multipart file part.
    pub const FILE: Types = Types(128);

    /// Whether every type of `t` is in this set.
    pub fn contains(self, t: Types) -> bool {
        self.0 & t.0 == t.0 && t.0 != 0
    }

    /// The names of the types: `null`, `boolean`, `integer`, `number`, `string`, `object`,
    /// `array`, `file`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [&str; 8] = [
            "null", "boolean", "integer", "number", "string", "object", "array", "file",
        ];
        (0..8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(|i| NAMES[i])
    }
}

/// String formats (JSON Schema 2020-12 §7.3), as bits: a leaf has a format when all its string
/// samples had it.
const FORMATS: [&str; 5] = ["date-time", "date", "uuid", "email", "ipv4"];

fn string_formats(s: &str) -> u8 {
    if s.len() > MAX_FORMAT_LEN || s.is_empty() {
        return 0;
    }
    let b = s.as_bytes();
    let mut m = 0;
    if is_date_time(b) {
        m |= 1;
    }
    if b.len() == 10 && is_date(b) {
        m |= 2;
    }
    if b.len() == 36 && segment_shape(s) == Some("uuid") {
        m |= 4;
    }
    if s.contains('@') && segment_shape(s) == Some("email") {
        m |= 8;
    }
    if is_ipv4(s) {
        m |= 16;
    }
    m
}

/// `YYYY-MM-DD` with a plausible month and day (RFC 3339 `full-date`).
fn is_date(b: &[u8]) -> bool {
    if b.len() < 10 {
        return false;
    }
    let d = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(d(0..4) && b[4] == b'-' && d(5..7) && b[7] == b'-' && d(8..10)) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// RFC 3339 `date-time`: `full-date "T" HH:MM:SS[.frac](Z|±HH:MM)`.
fn is_date_time(b: &[u8]) -> bool {
    if b.len() < 20 || !is_date(b) || !matches!(b[10], b'T' | b't') {
        return false;
    }
    let t = &b[11..];
    let two = |i: usize, max: u8| {
        t.len() > i + 1
            && t[i].is_ascii_digit()
            && t[i + 1].is_ascii_digit()
            && (t[i] - b'0') * 10 + (t[i + 1] - b'0') <= max
    };
    if !(two(0, 23) && t[2] == b':' && two(3, 59) && t[5] == b':' && two(6, 60)) {
        return false;
    }
    let mut i = 8;
    if t.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while t.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match t.get(i) {
        Some(b'Z' | b'z') => i + 1 == t.len(),
        Some(b'+' | b'-') => {
            i + 6 == t.len() && two(i + 1, 23) && t[i + 3] == b':' && two(i + 4, 59)
        }
        _ => false,
    }
}

/// Dotted quad, each part 0–255 without leading zeros.
fn is_ipv4(s: &str) -> bool {
    let mut n = 0;
    for p in s.split('.') {
        n += 1;
        let ok = !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|c| c.is_ascii_digit())
            && !(p.len() > 1 && p.starts_with('0'))
            && p.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok || n > 4 {
            return false;
        }
    }
    n == 4
}

/// How a path extends its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Root,
    /// A named member.
    Prop,
    /// A member whose name is a value (`.*`).
    Any,
    /// Array items (`[*]`).
    Items,
}

#[derive(Clone, Debug, PartialEq)]
struct Field {
    step: Step,
    /// Bytes of the path that this step appended.
    suffix: u32,
    /// The member name, for `Step::Prop`.
    name: Option<Box<str>>,
    types: Types,
    /// Occurrences.
    count: u64,
    /// Occurrences that were complete objects (for `required` of the members).
    objects: u64,
    /// Occurrences that were strings, and the formats all of them had.
    strings: u64,
    formats: u8,
}

impl Field {
    fn new(step: Step, suffix: usize, name: Option<&str>) -> Self {
        Field {
            step,
            suffix: u32::try_from(suffix).unwrap_or(u32::MAX),
            name: name.map(Into::into),
            types: Types::default(),
            count: 0,
            objects: 0,
            strings: 0,
            formats: 0,
        }
    }

    fn add_string(&mut self, formats: u8) {
        self.formats = if self.strings == 0 {
            formats
        } else {
            self.formats & formats
        };
        self.strings += 1;
    }

    fn merge(&mut self, o: &Field) {
        self.types.0 |= o.types.0;
        self.count += o.count;
        self.objects += o.objects;
        if o.strings > 0 {
            self.formats = if self.strings == 0 {
                o.formats
            } else {
                self.formats & o.formats
            };
            self.strings += o.strings;
        }
    }

    fn format(&self) -> Option<&'static str> {
        if self.strings == 0 || self.formats == 0 {
            return None;
        }
        FORMATS
            .iter()
            .enumerate()
            .find(|(i, _)| self.formats & (1 << i) != 0)
            .map(|(_, f)| *f)
    }
}

/// What the flat view tells about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// Types seen.
    pub types: Types,
    /// Occurrences (array items count once each).
    pub count: u64,
    /// A named member present in every complete object of its parent (false for the root,
    /// array items and `.*` members).
    pub required: bool,
    /// The string format all string samples had, if any.
    pub format: Option<&'static str>,
}

impl FieldInfo {
    /// Whether `null` was seen.
    pub fn nullable(&self) -> bool {
        self.types.contains(Types::NULL)
    }
}

/// A body schema inferred from samples; see the module doc.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schema {
    fields: BTreeMap<String, Field>,
    samples: u64,
    dropped: u64,
}

impl Schema {
    /// Adds another schema's samples (fields beyond [`MAX_MERGED_FIELDS`] are counted in
    /// [`Schema::dropped`]).
    pub fn merge(&mut self, other: &Schema) {
        self.samples += other.samples;
        self.dropped += other.dropped;
        // Parents sort before their children, so a dropped parent drops its subtree.
        for (p, f) in &other.fields {
            if let Some(mine) = self.fields.get_mut(p.as_str()) {
                mine.merge(f);
            } else if self.fields.len() < MAX_MERGED_FIELDS {
                self.fields.insert(p.clone(), f.clone());
            } else {
                self.dropped += 1;
            }
        }
    }

    /// Bodies merged into this schema.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Paths not kept because a cap was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn parent<'s>(&'s self, path: &'s str, f: &Field) -> Option<&'s Field> {
        let cut = path.len().checked_sub(f.suffix as usize)?;
        self.fields.get(path.get(..cut)?)
    }

    fn required(&self, path: &str, f: &Field) -> bool {
        f.step == Step::Prop
            && self
                .parent(path, f)
                .is_some_and(|p| p.objects > 0 && f.count >= p.objects)
    }

    /// The paths in order, with what was seen there.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldInfo)> {
        self.fields.iter().map(move |(p, f)| {
            (
                p.as_str(),
                FieldInfo {
                    types: f.types,
                    count: f.count,
                    required: self.required(p, f),
                    format: f.format(),
                },
            )
        })
    }

    /// JSON Schema 2020-12: `type` (an array when several, `null` included when seen;
    /// `integer` folded into `number` when both), `properties`/`required`/
    /// `additionalProperties` for objects, `items` for arrays, `format` for strings.
    pub fn to_json_schema(&self) -> Value {
        let mut children: HashMap<&str, Vec<(&str, &Field)>> = HashMap::new();
        for (p, f) in &self.fields {
            if f.step == Step::Root {
                continue;
            }
            let cut = p.len().saturating_sub(f.suffix as usize);
            if let Some(parent) = p.get(..cut) {
                children.entry(parent).or_default().push((p.as_str(), f));
            }
        }
        match self.fields.get("$") {
            Some(root) => self.node("$", root, &children),
            None => json!({}),
        }
    }

    fn node(&self, path: &str, f: &Field, kids: &HashMap<&str, Vec<(&str, &Field)>>) -> Value {
        let mut m = Map::new();
        let t = f.types;
        let mut types: Vec<&str> = Vec::new();
        if t.contains(Types::OBJECT) {
            types.push("object");
        }
        if t.contains(Types::ARRAY) {
            types.push("array");
        }
        if t.contains(Types::STRING) || t.contains(Types::FILE) {
            types.push("string");
        }
        if t.contains(Types::NUMBER) {
            types.push("number");
        } else if t.contains(Types::INTEGER) {
            types.push("integer");
        }
        if t.contains(Types::BOOLEAN) {
            types.push("boolean");
        }
        if t.contains(Types::NULL) {
            types.push("null");
        }
        match types.as_slice() {
            [] => {}
            [one] => {
                m.insert("type".into(), json!(one));
            }
            many => {
                m.insert("type".into(), json!(many));
            }
        }
        if let Some(fmt) = f.format() {
            m.insert("format".into(), json!(fmt));
        }
        if t.contains(Types::FILE) {
            m.insert("contentMediaType".into(), json!("application/octet-stream"));
        }
        let empty = Vec::new();
        let ks = kids.get(path).unwrap_or(&empty);
        if t.contains(Types::OBJECT) {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (p, c) in ks.iter().filter(|(_, c)| c.step == Step::Prop) {
                let Some(name) = c.name.as_deref() else {
                    continue;
                };
                props.insert(name.to_string(), self.node(p, c, kids));
                if f.objects > 0 && c.count >= f.objects {
                    required.push(name);
                }
            }
            if !props.is_empty() {
                m.insert("properties".into(), Value::Object(props));
            }
            if !required.is_empty() {
                required.sort_unstable();
                required.dedup();
                m.insert("required".into(), json!(required));
            }
            if let Some((p, c)) = ks.iter().find(|(_, c)| c.step == Step::Any) {
                m.insert("additionalProperties".into(), self.node(p, c, kids));
            }
        }
        if t.contains(Types::ARRAY) {
            if let Some((p, c)) = ks.iter().find(|(_, c)| c.step == Step::Items) {
                m.insert("items".into(), self.node(p, c, kids));
            }
        }
        Value::Object(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Walking

/// Per-body state shared by the walkers: the fields being recorded (hashed by path while
/// walking, sorted once at the end) and the caps.
struct Builder<'l> {
    /// Paths come from packet data: a keyed (per-process random seed) fast hasher.
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    fields: Vec<(String, Field)>,
    dropped: u64,
    lim: &'l BodyLimits,
    leaves: usize,
    fields_capped: bool,
    leaves_capped: bool,
}

impl<'l> Builder<'l> {
    fn new(lim: &'l BodyLimits) -> Self {
        Builder {
            index: HashMap::default(),
            fields: Vec::new(),
            dropped: 0,
            lim,
            leaves: 0,
            fields_capped: false,
            leaves_capped: false,
        }
    }

    /// Records one occurrence of type `t` at `path`; returns the field's index if it is
    /// recorded.
    fn note(
        &mut self,
        path: &str,
        step: Step,
        suffix: usize,
        name: Option<&str>,
        t: Types,
    ) -> Option<usize> {
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                if self.fields.len() >= self.lim.max_fields {
                    self.fields_capped = true;
                    self.dropped += 1;
                    return None;
                }
                let i = self.fields.len();
                self.fields
                    .push((path.to_string(), Field::new(step, suffix, name)));
                self.index.insert(path.to_string(), i);
                i
            }
        };
        let f = &mut self.fields[i].1;
        f.types.0 |= t.0;
        f.count += 1;
        Some(i)
    }

    /// [`Builder::note`] of a string, with its formats.
    fn note_string(&mut self, path: &str, step: Step, suffix: usize, name: Option<&str>, v: &str) {
        if let Some(i) = self.note(path, step, suffix, name, Types::STRING) {
            self.fields[i].1.add_string(string_formats(v));
        }
    }

    /// Whether one more leaf may be visited (counts it).
    fn leaf(&mut self) -> bool {
        if self.leaves >= self.lim.max_leaves {
            self.leaves_capped = true;
            return false;
        }
        self.leaves += 1;
        true
    }

    fn object_done(&mut self, field: Option<usize>) {
        if let Some(i) = field {
            self.fields[i].1.objects += 1;
        }
    }

    fn finish(self, stats: &mut BodyStats) -> Option<Schema> {
        stats.fields_capped += u64::from(self.fields_capped);
        stats.leaves_capped += u64::from(self.leaves_capped);
        if self.fields.is_empty() {
            return None;
        }
        Some(Schema {
            fields: self.fields.into_iter().collect(),
            samples: 1,
            dropped: self.dropped,
        })
    }
}

/// Appends the path step for member `key` (see the module doc); returns the step kind.
fn push_key(path: &mut String, key: &str) -> Step {
    if segment_shape(key).is_some() {
        path.push_str(".*");
        return Step::Any;
    }
    let mut chars = key.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii());
    if ident {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str("['");
        for c in key.chars() {
            match c {
                '\'' => path.push_str("\\'"),
                '\\' => path.push_str("\\\\"),
                '\u{8}' => path.push_str("\\b"),
                '\u{c}' => path.push_str("\\f"),
                '\n' => path.push_str("\\n"),
                '\r' => path.push_str("\\r"),
                '\t' => path.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    use std::fmt::Write;
                    let _ = write!(path, "\\u{:04x}", c as u32);
                }
                c => path.push(c),
            }
        }
        path.push_str("']");
    }
    Step::Prop
}

/// Walks `body` of `kind`, calling `visit(path, key, value)` for every scalar leaf, and returns
/// its schema (`None` when nothing was recognised). `key` is the member (or form field) name
/// the value is under — for array items, the name of the array.
pub fn walk(
    kind: BodyKind,
    content_type: Option<&str>,
    body: &[u8],
    lim: &BodyLimits,
    stats: &mut BodyStats,
    visit: &mut impl FnMut(&str, Option<&str>, &str),
) -> Option<Schema> {
    match kind {
        BodyKind::Other => None,
        BodyKind::Json => {
            stats.walked += 1;
            walk_json(body, lim, stats, visit)
        }
        BodyKind::Form => {
            stats.walked += 1;
            walk_form(body, lim, stats, visit)
        }
        BodyKind::Multipart => {
            stats.walked += 1;
            walk_multipart(content_type, body, lim, stats, visit)
        }
    }
}

// --- JSON ------------------------------------------------------------------------------------

/// A string token: byte range of its contents and whether it holds escapes.
#[derive(Clone, Copy, Debug)]
struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// After `{` or `[`: a member/value or the close.
    First,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After `:` or after `,` in an array.
    Value,
    /// After a value: `,` or the close.
    Next,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    obj: bool,
    /// Length of the container's own path.
    path_len: usize,
    /// The member name the container is under (inherited through arrays).
    key: Option<Str>,
    /// The current member's name (objects).
    cur: Option<Str>,
    expect: Expect,
    /// The container's field, if recorded.
    field: Option<usize>,
}

/// The text of string token `s`: borrowed unless it has escapes or invalid UTF-8. `valid` is
/// the body's longest valid UTF-8 prefix (validated once, not per token).
fn text<'s>(b: &'s [u8], valid: &'s str, s: Str, buf: &'s mut String) -> &'s str {
    if !s.escaped {
        if let Some(t) = valid.get(s.start..s.end) {
            return t;
        }
    }
    let raw = &b[s.start..s.end];
    if !s.escaped {
        if let Ok(t) = std::str::from_utf8(raw) {
            return t;
        }
    }
    buf.clear();
    if s.escaped {
        unescape(raw, buf);
    } else {
        buf.push_str(&String::from_utf8_lossy(raw));
    }
    buf
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// JSON string escapes (RFC 8259 §7); invalid ones and lone surrogates become U+FFFD.
fn unescape(raw: &[u8], out: &mut String) {
    let mut i = 0;
    while i < raw.len() {
        let run = raw[i..]
            .iter()
            .position(|&c| c == b'\\')
            .unwrap_or(raw.len() - i);
        out.push_str(&String::from_utf8_lossy(&raw[i..i + run]));
        i += run;
        if i >= raw.len() {
            break;
        }
        let Some(&e) = raw.get(i + 1) else {
            out.push('\u{fffd}');
            break;
        };
        i += 2;
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => match hex4(&raw[i..]) {
                Some(hi) => {
                    i += 4;
                    if (0xd800..0xdc00).contains(&hi)
                        && raw.get(i..i + 2) == Some(b"\\u")
                        && hex4(&raw[i + 2..]).is_some_and(|lo| (0xdc00..0xe000).contains(&lo))
                    {
                        let lo = hex4(&raw[i + 2..]).unwrap_or(0xdc00);
                        i += 6;
                        char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            .unwrap_or('\u{fffd}')
                    } else {
                        char::from_u32(hi).unwrap_or('\u{fffd}')
                    }
                }
                None => '\u{fffd}',
            },
            _ => '\u{fffd}',
        };
        out.push(c);
    }
}

/// Why the JSON walk stopped early.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Truncated,
    Invalid,
    Leaves,
}

/// The end of the string token starting at the quote `b[i]`.
fn scan_string(b: &[u8], i: usize) -> Result<(Str, usize), Stop> {
    let mut j = i + 1;
    let mut escaped = false;
    while j < b.len() {
        match b[j] {
            b'"' => {
                return Ok((
                    Str {
                        start: i + 1,
                        end: j,
                        escaped,
                    },
                    j + 1,
                ))
            }
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
    Err(Stop::Truncated)
}

/// Skips the container opening at `b[i]` (too deep to walk); returns the index after it.
fn skip_container(b: &[u8], mut i: usize) -> Result<usize, Stop> {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            b'"' => {
                i = scan_string(b, i)?.1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Err(Stop::Truncated)
}

fn walk_json(
    b: &[u8],
    lim: &BodyLimits,
    stats: &mut BodyStats,
    visit: &mut impl FnMut(&str, Option<&str>, &str),
) -> Option<Schema> {
    let mut bld = Builder::new(lim);
    let max_depth = lim.max_depth.clamp(1, HARD_MAX_DEPTH);
    let mut stack: Vec<Frame> = Vec::new();
    let mut path = String::with_capacity(64);
    let (mut kbuf, mut vbuf) = (String::new(), String::new());
    let mut depth_capped = false;
    let mut i = if b.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
    let valid = match std::str::from_utf8(b) {
        Ok(v) => v,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
    };
    let stop = 'walk: loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        if i >= b.len() {
            break (!stack.is_empty()).then_some(Stop::Truncated);
        }
        let c = b[i];
        // Structural tokens of the enclosing container.
        if let Some(top) = stack.last_mut() {
            match (top.expect, top.obj, c) {
                (Expect::First | Expect::Next, true, b'}')
                | (Expect::First | Expect::Next, false, b']') => {
                    if top.obj {
                        bld.object_done(top.field);
                    }
                    stack.pop();
                    i += 1;
                    continue;
                }
                (Expect::Next, obj, b',') => {
                    top.expect = if obj { Expect::Key } else { Expect::Value };
                    i += 1;
                    continue;
                }
                (Expect::First | Expect::Key, true, b'"') => match scan_string(b, i) {
                    Ok((s, next)) => {
                        top.cur = Some(s);
                        top.expect = Expect::Colon;
                        i = next;
                        continue;
                    }
                    Err(e) => break Some(e),
                },
                (Expect::Colon, _, b':') => {
                    top.expect = Expect::Value;
                    i += 1;
                    continue;
                }
                (Expect::First | Expect::Value, false, _) | (Expect::Value, true, _) => {}
                _ => break Some(Stop::Invalid),
            }
        }
        // A value: its path, the name it is under, then the value itself.
        let (step, suffix, key) = match stack.last_mut() {
            None => {
                path.clear();
                path.push('$');
                (Step::Root, 1, None)
            }
            Some(top) => {
                top.expect = Expect::Next;
                path.truncate(top.path_len);
                if top.obj {
                    let k = top.cur;
                    let name = k.map_or("", |k| text(b, valid, k, &mut kbuf));
                    let step = push_key(&mut path, name);
                    (step, path.len() - top.path_len, k)
                } else {
                    path.push_str("[*]");
                    (Step::Items, 3, top.key)
                }
            }
        };
        match c {
            b'{' | b'[' => {
                let obj = c == b'{';
                let t = if obj { Types::OBJECT } else { Types::ARRAY };
                let name = match (step, key) {
                    (Step::Prop, Some(k)) => Some(text(b, valid, k, &mut kbuf)),
                    _ => None,
                };
                let field = bld.note(&path, step, suffix, name, t);
                if stack.len() >= max_depth {
                    depth_capped = true;
                    match skip_container(b, i) {
                        Ok(next) => i = next,
                        Err(e) => break Some(e),
                    }
                    continue;
                }
                stack.push(Frame {
                    obj,
                    path_len: path.len(),
                    key,
                    cur: None,
                    expect: Expect::First,
                    field,
                });
                i += 1;
            }
            b'"' => {
                let (s, next) = match scan_string(b, i) {
                    Ok(x) => x,
                    Err(e) => break Some(e),
                };
                i = next;
                if !bld.leaf() {
                    break Some(Stop::Leaves);
                }
                let value = text(b, valid, s, &mut vbuf);
                let kname = key.map(|k| text(b, valid, k, &mut kbuf));
                let name = if step == Step::Prop { kname } else { None };
                bld.note_string(&path, step, suffix, name, value);
                visit(&path, kname, value);
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                let (end, t) = if c == b't' || c == b'f' || c == b'n' {
                    let word: &[u8] = match c {
                        b't' => b"true",
                        b'f' => b"false",
                        _ => b"null",
                    };
                    let have = &b[i..b.len().min(i + word.len())];
                    if have != word {
                        break Some(if word.starts_with(have) {
                            Stop::Truncated
                        } else {
                            Stop::Invalid
                        });
                    }
                    let t = if c == b'n' {
                        Types::NULL
                    } else {
                        Types::BOOLEAN
                    };
                    (i + word.len(), t)
                } else {
                    let mut j = i + 1;
                    while j < b.len()
                        && matches!(b[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                    {
                        j += 1;
                    }
                    if j == b.len() && !stack.is_empty() {
                        // The number may continue past the cut.
                        break Some(Stop::Truncated);
                    }
                    let int = !b[i..j].iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
                    (j, if int { Types::INTEGER } else { Types::NUMBER })
                };
                let value = std::str::from_utf8(&b[i..end]).unwrap_or("");
                i = end;
                if !bld.leaf() {
                    break Some(Stop::Leaves);
                }
                let kname = key.map(|k| text(b, valid, k, &mut kbuf));
                let name = if step == Step::Prop { kname } else { None };
                bld.note(&path, step, suffix, name, t);
                visit(&path, kname, value);
            }
            _ => break 'walk Some(Stop::Invalid),
        }
    };
    match stop {
        Some(Stop::Truncated) => stats.truncated_json += 1,
        Some(Stop::Invalid) => stats.invalid_json += 1,
        Some(Stop::Leaves) | None => {}
    }
    stats.depth_capped += u64::from(depth_capped);
    bld.finish(stats)
}

// --- Forms -----------------------------------------------------------------------------------

/// Percent- and plus-decoding of one form name or value (WHATWG URL §5.1); borrowed when there
/// is nothing to decode. Invalid escapes stay as they are.
pub fn form_decode(s: &[u8]) -> Cow<'_, str> {
    if !s.iter().any(|&c| c == b'%' || c == b'+') {
        return String::from_utf8_lossy(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn walk_form(
    b: &[u8],
    lim: &BodyLimits,
    stats: &mut BodyStats,
    visit: &mut impl FnMut(&str, Option<&str>, &str),
) -> Option<Schema> {
    let mut bld = Builder::new(lim);
    let mut path = String::with_capacity(64);
    let root = bld.note("$", Step::Root, 1, None, Types::OBJECT);
    for pair in b.split(|&c| c == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (n, v) = match pair.iter().position(|&c| c == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = form_decode(n);
        if name.is_empty() {
            continue;
        }
        if !bld.leaf() {
            break;
        }
        let value = form_decode(v);
        path.clear();
        path.push('$');
        let step = push_key(&mut path, &name);
        let pname = (step == Step::Prop).then_some(&*name);
        bld.note_string(&path, step, path.len() - 1, pname, &value);
        visit(&path, Some(&name), &value);
    }
    bld.object_done(root);
    bld.finish(stats)
}

// --- Multipart -------------------------------------------------------------------------------

/// The value of parameter `name` in a header value's `; name=value` list (quoted or token).
fn header_param<'h>(value: &'h str, name: &str) -> Option<Cow<'h, str>> {
    let mut rest = value;
    while let Some(semi) = rest.find(';') {
        rest = rest[semi + 1..].trim_start();
        let eq = rest.find('=')?;
        let pname = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (val, tail): (Cow<str>, &str) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut end = q.len();
            let mut esc = false;
            for (k, ch) in q.char_indices() {
                if esc {
                    out.push(ch);
                    esc = false;
                } else if ch == '\\' {
                    esc = true;
                } else if ch == '"' {
                    end = k + 1;
                    break;
                } else {
                    out.push(ch);
                }
            }
            (Cow::Owned(out), &q[end.min(q.len())..])
        } else {
            let e = after.find(';').unwrap_or(after.len());
            (Cow::Borrowed(after[..e].trim()), &after[e..])
        };
        if pname.eq_ignore_ascii_case(name) {
            return Some(val);
        }
        rest = tail;
    }
    None
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= hay.len() {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        match hay[i..].iter().position(|&c| c == first) {
            Some(k) => i += k,
            None => return None,
        }
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The index after the line end at or after `i` (`\r\n` or `\n`).
fn next_line(b: &[u8], i: usize) -> Option<usize> {
    b[i.min(b.len())..]
        .iter()
        .position(|&c| c == b'\n')
        .map(|k| i + k + 1)
}

fn walk_multipart(
    content_type: Option<&str>,
    b: &[u8],
    lim: &BodyLimits,
    stats: &mut BodyStats,
    visit: &mut impl FnMut(&str, Option<&str>, &str),
) -> Option<Schema> {
    let boundary = content_type.and_then(|ct| header_param(ct, "boundary"));
    let Some(boundary) = boundary.filter(|x| (1..=70).contains(&x.len())) else {
        stats.truncated_multipart += 1;
        return None;
    };
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary.as_bytes());
    let mut bld = Builder::new(lim);
    let mut path = String::with_capacity(64);
    let root = bld.note("$", Step::Root, 1, None, Types::OBJECT);
    // The first delimiter may start the body (no CRLF before it).
    let mut pos = if b.starts_with(&delim[2..]) {
        Some(delim.len() - 2)
    } else {
        find(b, &delim, 0).map(|k| k + delim.len())
    };
    let mut parts = 0;
    let mut truncated = false;
    while let Some(after) = pos {
        if b.get(after..after + 2) == Some(b"--") {
            break;
        }
        if parts == lim.max_parts {
            stats.parts_capped += 1;
            break;
        }
        parts += 1;
        let Some(mut line) = next_line(b, after) else {
            truncated = true;
            break;
        };
        // Headers up to the empty line.
        let (mut name, mut file) = (None, false);
        let header_end = loop {
            let Some(end) = next_line(b, line) else {
                break None;
            };
            let h = &b[line..end];
            let h = h.strip_suffix(b"\n").unwrap_or(h);
            let h = h.strip_suffix(b"\r").unwrap_or(h);
            if h.is_empty() {
                break Some(end);
            }
            if end - after > MAX_PART_HEADER {
                break None;
            }
            let h = String::from_utf8_lossy(h);
            if let Some((hn, hv)) = h.split_once(':') {
                if hn.trim().eq_ignore_ascii_case("content-disposition") {
                    name = header_param(hv, "name").map(Cow::into_owned);
                    file = header_param(hv, "filename").is_some()
                        || header_param(hv, "filename*").is_some();
                }
            }
            line = end;
        };
        let Some(start) = header_end else {
            truncated = true;
            break;
        };
        let (content, next) = match find(b, &delim, start) {
            Some(k) => (&b[start..k], Some(k + delim.len())),
            None => {
                truncated = true;
                (&b[start..], None)
            }
        };
        pos = next;
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            continue;
        };
        if !bld.leaf() {
            break;
        }
        path.clear();
        path.push('$');
        let step = push_key(&mut path, &name);
        let pname = (step == Step::Prop).then_some(name.as_str());
        if file {
            bld.note(&path, step, path.len() - 1, pname, Types::FILE);
            continue;
        }
        let mut cut = content.len().min(MAX_PART_VALUE);
        while cut > 0 && cut < content.len() && (content[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
        let value = String::from_utf8_lossy(&content[..cut]);
        bld.note_string(&path, step, path.len() - 1, pname, &value);
        visit(&path, Some(&name), &value);
    }
    if pos.is_none() && parts == 0 {
        truncated = true;
    }
    stats.truncated_multipart += u64::from(truncated);
    bld.object_done(root);
    bld.finish(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    /// `brotli -q 11` of [`SMALL_JSON`] (brotli 1.0.9 command line tool).
    const SMALL_BR: [u8; 69] = [
        0xa1, 0xa8, 0x02, 0xc0, 0xe1, 0x3c, 0xb0, 0x1d, 0x2d, 0xdf, 0x08, 0x82, 0xfb, 0x33, 0xb3,
        0x4e, 0xa1, 0x16, 0xd9, 0x4b, 0x0b, 0xdb, 0x2c, 0x3a, 0x5d, 0x7d, 0x5a, 0x24, 0x46, 0x66,
        0x6b, 0x01, 0x91, 0xb9, 0xc1, 0x81, 0x43, 0x60, 0x95, 0xc5, 0x49, 0x82, 0x33, 0xef, 0x01,
        0xb7, 0x42, 0xa6, 0xb7, 0xc2, 0x9a, 0xe3, 0xa4, 0xaa, 0xa9, 0x63, 0x5b, 0xd0, 0x5e, 0x3e,
        0xcf, 0x86, 0xdb, 0xc1, 0x08, 0x9d, 0xbc, 0x41, 0x03,
    ];
    const SMALL_JSON: &[u8] = br#"{"email":"a@example.com","items":[{"id":1},{"id":2}],"note":"hello hello hello hello"}"#;
    /// `brotli -q 11` of 10 000 000 zero bytes.
    const ZEROS_BR: [u8; 14] = [
        0x9f, 0x7f, 0x96, 0x98, 0xf8, 0x27, 0x00, 0xe2, 0xb1, 0x40, 0x20, 0xc7, 0x11, 0x13,
    ];

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn raw_deflate(b: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn decode(enc: Option<&str>, b: &[u8]) -> (Vec<u8>, BodyStats) {
        let mut st = BodyStats::default();
        let out = decode_content(enc, b, &BodyLimits::default(), &mut st).into_owned();
        (out, st)
    }

    /// A JSON text of about `n` bytes that compresses well but not absurdly.
    fn sample_json(n: usize) -> Vec<u8> {
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < n {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                r#"{{"id":{i},"name":"user{}","ok":true}}"#,
                i * 7919 % 1000
            ));
            i += 1;
        }
        s.push(']');
        s.into_bytes()
    }

    #[test]
    fn round_trips() {
        let plain = sample_json(5000);
        for (enc, coded) in [
            ("gzip", gzip(&plain)),
            ("x-gzip", gzip(&plain)),
            ("GZIP", gzip(&plain)),
            ("deflate", zlib(&plain)),
            ("deflate", raw_deflate(&plain)),
        ] {
            let (out, st) = decode(Some(enc), &coded);
            assert_eq!(out, plain, "{enc}");
            assert_eq!(st.decoded, 1);
            assert_eq!(st.decode_errors + st.bomb_capped + st.decode_truncated, 0);
        }
        let (out, st) = decode(Some("br"), &SMALL_BR);
        assert_eq!(out, SMALL_JSON);
        assert_eq!(st.decoded, 1);
        // Codings are undone last first: "br, gzip" is gzip(br(x)).
        let (out, _) = decode(Some("br, gzip"), &gzip(&SMALL_BR));
        assert_eq!(out, SMALL_JSON);
        let (out, _) = decode(Some("deflate,identity, gzip"), &gzip(&zlib(&plain)));
        assert_eq!(out, plain);
        // In the wrong order it is an error, not garbage.
        let (out, st) = decode(Some("gzip, br"), &gzip(&SMALL_BR));
        assert!(out.is_empty());
        assert_eq!(st.decode_errors, 1);
    }

    #[test]
    fn inner_layer_cut_by_the_cap_counts_as_capped() {
        // Found by the `inspect` fuzz target: the outer layer stopped at the cap, the inner
        // one then had too few bytes to yield anything, and the body was counted as truncated
        // by the capture (as if no cap had been hit) instead of capped.
        let lim = BodyLimits {
            max_decoded: 1,
            ..BodyLimits::default()
        };
        let mut st = BodyStats::default();
        let coded = zlib(&gzip(SMALL_JSON));
        let out = decode_content(Some("gzip, deflate"), &coded, &lim, &mut st);
        assert!(out.is_empty());
        assert_eq!((st.bomb_capped, st.decode_truncated), (1, 0));
        // A body that is itself cut short is still counted as truncated.
        let mut st = BodyStats::default();
        let coded = gzip(SMALL_JSON);
        decode_content(Some("gzip"), &coded[..5], &BodyLimits::default(), &mut st);
        assert_eq!((st.bomb_capped, st.decode_truncated), (0, 1));
    }

    #[test]
    fn identity_and_unsupported() {
        let (out, st) = decode(None, b"{}");
        assert_eq!(out, b"{}");
        assert_eq!(st.decoded, 0);
        let (out, _) = decode(Some("identity"), b"abc");
        assert_eq!(out, b"abc");
        let (out, st) = decode(Some("zstd"), b"\x28\xb5\x2f\xfd");
        assert!(out.is_empty());
        assert_eq!(st.unsupported_encoding, 1);
        let (_, st) = decode(Some("gzip, gzip, gzip, gzip, gzip"), b"x");
        assert_eq!(st.unsupported_encoding, 1);
        // Labelled gzip but plain JSON: inspected as it is.
        let (out, st) = decode(Some("gzip"), br#"{"a":1}"#);
        assert_eq!(out, br#"{"a":1}"#);
        assert_eq!(st.mislabeled, 1);
        // Labelled gzip, neither gzip nor JSON.
        let (out, st) = decode(Some("gzip"), b"hello world");
        assert!(out.is_empty());
        assert_eq!((st.mislabeled, st.decode_errors), (0, 1));
    }

    #[test]
    fn bombs_are_capped() {
        let zeros = vec![0u8; 10_000_000];
        let coded = gzip(&zeros);
        assert!(coded.len() < 20_000);
        let lim = BodyLimits::default();
        let mut st = BodyStats::default();
        let out = decode_content(Some("gzip"), &coded, &lim, &mut st);
        // Whichever cap is lower: 1 MiB or 100 × the coded size.
        let cap = lim.max_decoded.min(coded.len() * 100);
        assert_eq!(out.len(), cap);
        assert!(out.len() < zeros.len());
        assert_eq!(st.bomb_capped, 1);
        // Ratio cap on its own.
        let mut st = BodyStats::default();
        let out = decode_content(Some("br"), &ZEROS_BR, &lim, &mut st);
        assert_eq!(out.len(), ZEROS_BR.len() * 100);
        assert!(out.iter().all(|&c| c == 0));
        assert_eq!(st.bomb_capped, 1);
        // Size cap on its own.
        let lim = BodyLimits {
            max_decoded: 1000,
            max_ratio: 1_000_000,
            ..BodyLimits::default()
        };
        let mut st = BodyStats::default();
        let out = decode_content(Some("br"), &ZEROS_BR, &lim, &mut st);
        assert_eq!(out.len(), 1000);
        assert_eq!(st.bomb_capped, 1);
        // A body that fits exactly is not counted as capped.
        let plain = sample_json(2000);
        let lim = BodyLimits {
            max_decoded: plain.len(),
            ..BodyLimits::default()
        };
        let mut st = BodyStats::default();
        let coded = gzip(&plain);
        let out = decode_content(Some("gzip"), &coded, &lim, &mut st);
        assert_eq!(out.len(), plain.len());
        assert_eq!(st.bomb_capped, 0);
    }

    #[test]
    fn truncated_input_decodes_a_prefix() {
        let plain = sample_json(200_000);
        for (enc, coded) in [("gzip", gzip(&plain)), ("deflate", zlib(&plain))] {
            let cut = &coded[..coded.len() / 2];
            let (out, st) = decode(Some(enc), cut);
            assert!(out.len() > plain.len() / 4, "{enc}: {}", out.len());
            assert!(out.len() < plain.len());
            assert_eq!(&plain[..out.len()], &out[..], "{enc}");
            assert_eq!(st.decoded, 1);
            assert_eq!(st.decode_truncated + st.decode_errors, 1, "{enc} {st:?}");
        }
        // A cut brotli stream neither panics nor yields bytes that are not a prefix.
        for k in 0..SMALL_BR.len() {
            let (out, _) = decode(Some("br"), &SMALL_BR[..k]);
            assert_eq!(&SMALL_JSON[..out.len()], &out[..]);
        }
        // A gzip header alone.
        let (out, st) = decode(Some("gzip"), &gzip(b"abc")[..5]);
        assert!(out.is_empty());
        assert_eq!(st.decode_truncated + st.decode_errors, 1);
    }

    #[test]
    fn kinds() {
        use BodyKind::*;
        let j = br#"{"a":1}"#;
        assert_eq!(body_kind(Some("application/json"), j), Json);
        assert_eq!(
            body_kind(Some("application/json; charset=utf-8"), b""),
            Json
        );
        assert_eq!(body_kind(Some("application/vnd.api+json"), j), Json);
        assert_eq!(body_kind(Some("application/problem+json"), j), Json);
        assert_eq!(body_kind(Some("text/plain"), j), Json);
        assert_eq!(body_kind(None, b"  [1,2]"), Json);
        assert_eq!(
            body_kind(Some("application/octet-stream"), b"\xef\xbb\xbf{\"a\":1}"),
            Json
        );
        assert_eq!(
            body_kind(Some("application/x-www-form-urlencoded"), b"a=1"),
            Form
        );
        assert_eq!(body_kind(None, b"user=bob&pass=x%20y"), Form);
        assert_eq!(
            body_kind(Some("multipart/form-data; boundary=x"), b""),
            Multipart
        );
        // False cases.
        assert_eq!(body_kind(Some("text/html"), j), Other);
        assert_eq!(body_kind(Some("text/plain"), b"hello {world}"), Other);
        assert_eq!(body_kind(Some("text/plain"), b"{hello}"), Other);
        assert_eq!(body_kind(Some("text/plain"), b"a=1&b=2"), Other);
        assert_eq!(body_kind(None, b"hello world"), Other);
        assert_eq!(body_kind(None, b"a = 1"), Other);
        assert_eq!(body_kind(Some("application/jsonp"), j), Other);
        assert_eq!(body_kind(Some("image/png"), b"\x89PNG"), Other);
    }

    type Leaf = (String, Option<String>, String);

    fn run(kind: BodyKind, ct: Option<&str>, b: &[u8]) -> (Vec<Leaf>, Option<Schema>, BodyStats) {
        run_lim(kind, ct, b, &BodyLimits::default())
    }

    fn run_lim(
        kind: BodyKind,
        ct: Option<&str>,
        b: &[u8],
        lim: &BodyLimits,
    ) -> (Vec<Leaf>, Option<Schema>, BodyStats) {
        let mut st = BodyStats::default();
        let mut v = Vec::new();
        let s = walk(kind, ct, b, lim, &mut st, &mut |p, k, x| {
            v.push((p.to_string(), k.map(str::to_string), x.to_string()))
        });
        (v, s, st)
    }

    fn leaf(p: &str, k: Option<&str>, v: &str) -> Leaf {
        (p.into(), k.map(Into::into), v.into())
    }

    #[test]
    fn json_leaves_and_paths() {
        let body = br#"{"user":{"email":"a@b.io","age":41,"score":1.5e2},
            "orders":[{"card":"4111111111111111","ok":true},{"card":null}],
            "a.b":"x","esc\"k":"line\nbreak \u00e9 \ud83d\ude00","48213":{"n":1},
            "tags":["p",["q"]]}"#;
        let (v, s, st) = run(BodyKind::Json, None, body);
        assert_eq!(
            v,
            vec![
                leaf("$.user.email", Some("email"), "a@b.io"),
                leaf("$.user.age", Some("age"), "41"),
                leaf("$.user.score", Some("score"), "1.5e2"),
                leaf("$.orders[*].card", Some("card"), "4111111111111111"),
                leaf("$.orders[*].ok", Some("ok"), "true"),
                leaf("$.orders[*].card", Some("card"), "null"),
                leaf("$['a.b']", Some("a.b"), "x"),
                leaf("$['esc\"k']", Some("esc\"k"), "line\nbreak é 😀"),
                leaf("$.*.n", Some("n"), "1"),
                leaf("$.tags[*]", Some("tags"), "p"),
                leaf("$.tags[*][*]", Some("tags"), "q"),
            ]
        );
        assert_eq!(st.walked, 1);
        assert_eq!(st.truncated_json + st.invalid_json, 0);
        let s = s.unwrap();
        assert_eq!(s.samples(), 1);
        let f: HashMap<&str, FieldInfo> = s.fields().collect();
        assert_eq!(f["$.user.age"].types, Types::INTEGER);
        assert_eq!(f["$.user.score"].types, Types::NUMBER);
        assert_eq!(f["$.user.email"].format, Some("email"));
        assert!(f["$.orders[*].card"].nullable());
        assert!(f["$.orders[*].card"].required);
        assert!(!f["$.orders[*].ok"].required);
        assert_eq!(f["$.orders[*]"].count, 2);
        // No value ever appears in a path.
        assert!(f
            .keys()
            .all(|p| !p.contains("48213") && !p.contains("4111")));
    }

    #[test]
    fn ndjson_and_scalars() {
        let (v, s, st) = run(BodyKind::Json, None, b"{\"a\":1}\n{\"a\":2,\"b\":3}\n");
        assert_eq!(v.len(), 3);
        assert_eq!(st.truncated_json + st.invalid_json, 0);
        let s = s.unwrap();
        let f: HashMap<&str, FieldInfo> = s.fields().collect();
        assert!(f["$.a"].required);
        assert!(!f["$.b"].required);
        let (v, _, st) = run(BodyKind::Json, None, b"\"top\"");
        assert_eq!(v, vec![leaf("$", None, "top")]);
        assert_eq!(st.truncated_json, 0);
        let (v, _, _) = run(BodyKind::Json, None, b"42");
        assert_eq!(v, vec![leaf("$", None, "42")]);
    }

    #[test]
    fn truncated_json_yields_complete_leaves() {
        let body = br#"{"a":"x","b":[1,2,{"c":"y","d":"unfinish"#;
        let (v, s, st) = run(BodyKind::Json, None, body);
        assert_eq!(
            v,
            vec![
                leaf("$.a", Some("a"), "x"),
                leaf("$.b[*]", Some("b"), "1"),
                leaf("$.b[*]", Some("b"), "2"),
                leaf("$.b[*].c", Some("c"), "y"),
            ]
        );
        assert_eq!(st.truncated_json, 1);
        assert!(s.is_some());
        // Every cut of a document gives a prefix of the full leaf list, never a panic.
        let full = br#"{"k":[{"x":-12.5,"y":"a\"b","z":[true,false,null]},{"x":3}],"w":"end"}"#;
        let (all, _, _) = run(BodyKind::Json, None, full);
        for cut in 0..full.len() {
            let (v, _, st) = run(BodyKind::Json, None, &full[..cut]);
            assert_eq!(&all[..v.len()], &v[..], "cut {cut}");
            assert!(cut == 0 || st.truncated_json == 1, "cut {cut}");
        }
        // A number at the cut may be incomplete: not visited.
        let (v, _, _) = run(BodyKind::Json, None, b"[12");
        assert!(v.is_empty());
    }

    #[test]
    fn invalid_json_stops() {
        let (v, _, st) = run(BodyKind::Json, None, br#"{"a":1,"b":nope,"c":2}"#);
        assert_eq!(v, vec![leaf("$.a", Some("a"), "1")]);
        assert_eq!(st.invalid_json, 1);
        let (v, s, st) = run(BodyKind::Json, None, b"<html>");
        assert!(v.is_empty() && s.is_none());
        assert_eq!(st.invalid_json, 1);
        let (_, _, st) = run(BodyKind::Json, None, br#"{"a" 1}"#);
        assert_eq!(st.invalid_json, 1);
    }

    #[test]
    fn deep_json_does_not_overflow() {
        let n = 100_000;
        let mut body = Vec::new();
        for _ in 0..n {
            body.extend_from_slice(br#"{"a":["#);
        }
        body.extend_from_slice(b"\"leaf\"");
        for _ in 0..n {
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"");
        let (v, s, st) = run(BodyKind::Json, None, &body);
        assert!(v.is_empty());
        assert_eq!(st.depth_capped, 1);
        assert_eq!(st.truncated_json + st.invalid_json, 0);
        let s = s.unwrap();
        assert!(s.fields().count() <= 2 * BodyLimits::default().max_depth);
        // Deep and truncated, and deep arrays only.
        let (_, _, st) = run(BodyKind::Json, None, &body[..body.len() / 2]);
        assert_eq!((st.depth_capped, st.truncated_json), (1, 1));
        let (_, _, st) = run(BodyKind::Json, None, &vec![b'['; 1_000_000]);
        assert_eq!((st.depth_capped, st.truncated_json), (1, 1));
        // Schema rendering of the deepest kept path.
        let js = s.to_json_schema();
        assert_eq!(js["type"], "object");
    }

    #[test]
    fn caps_are_counted() {
        let lim = BodyLimits {
            max_fields: 3,
            max_leaves: 4,
            ..BodyLimits::default()
        };
        let (v, s, st) = run_lim(BodyKind::Json, None, br#"{"a":1,"b":2,"c":3,"d":4}"#, &lim);
        assert_eq!(v.len(), 4);
        assert_eq!(st.fields_capped, 1);
        assert_eq!(st.leaves_capped, 0);
        let s = s.unwrap();
        assert_eq!(s.fields().count(), 3);
        assert_eq!(s.dropped(), 2); // $.c and $.d
        let (v, _, st) = run_lim(BodyKind::Json, None, b"[1,2,3,4,5,6]", &lim);
        assert_eq!(v.len(), 4);
        assert_eq!(st.leaves_capped, 1);
        let (v, _, st) = run_lim(BodyKind::Form, None, b"a=1&b=2&c=3&d=4&e=5", &lim);
        assert_eq!(v.len(), 4);
        assert_eq!(st.leaves_capped, 1);
    }

    #[test]
    fn schema_merge_optional_nullable() {
        let one = |b: &[u8]| run(BodyKind::Json, None, b).1.unwrap();
        let mut s = one(br#"{"id":1,"name":"a","tags":["x"],"when":"2024-03-01T10:00:00Z"}"#);
        s.merge(&one(
            br#"{"id":2,"name":null,"when":"2024-03-02T11:30:00.5+02:00"}"#,
        ));
        s.merge(&one(br#"{"id":3.5,"name":"c","extra":{"k":true}}"#));
        assert_eq!(s.samples(), 3);
        let f: HashMap<&str, FieldInfo> = s.fields().collect();
        assert!(f["$.id"].required);
        assert!(f["$.name"].required && f["$.name"].nullable());
        assert!(!f["$.tags"].required);
        assert!(!f["$.extra"].required);
        assert!(f["$.extra.k"].required); // in every `extra` object
        assert_eq!(f["$.when"].format, Some("date-time"));
        let js = s.to_json_schema();
        assert_eq!(js["type"], "object");
        assert_eq!(js["required"], json!(["id", "name"]));
        assert_eq!(js["properties"]["id"]["type"], "number");
        assert_eq!(js["properties"]["name"]["type"], json!(["string", "null"]));
        assert_eq!(js["properties"]["tags"]["items"]["type"], "string");
        assert_eq!(js["properties"]["when"]["format"], "date-time");
        assert_eq!(
            js["properties"]["extra"]["properties"]["k"]["type"],
            "boolean"
        );
        // Merging is order-independent.
        let mut t = one(br#"{"id":3.5,"name":"c","extra":{"k":true}}"#);
        t.merge(&one(
            br#"{"id":2,"name":null,"when":"2024-03-02T11:30:00.5+02:00"}"#,
        ));
        t.merge(&one(
            br#"{"id":1,"name":"a","tags":["x"],"when":"2024-03-01T10:00:00Z"}"#,
        ));
        assert_eq!(t.to_json_schema(), js);
        // A format stops holding as soon as one sample lacks it.
        let mut u = one(br#"{"e":"a@example.com","d":"2024-01-01","u":"123e4567-e89b-12d3-a456-426614174000","ip":"10.0.0.1"}"#);
        let js = u.to_json_schema();
        assert_eq!(js["properties"]["d"]["format"], "date");
        assert_eq!(js["properties"]["u"]["format"], "uuid");
        assert_eq!(js["properties"]["ip"]["format"], "ipv4");
        assert_eq!(js["properties"]["e"]["format"], "email");
        u.merge(&one(br#"{"e":"not an email","ip":"10.0.0.256"}"#));
        let js = u.to_json_schema();
        assert!(js["properties"]["e"].get("format").is_none());
        assert!(js["properties"]["ip"].get("format").is_none());
        assert_eq!(js["properties"]["d"]["format"], "date");
    }

    #[test]
    fn json_schema_shape() {
        let (_, s, _) = run(
            BodyKind::Json,
            None,
            br#"[{"users":{"42":{"email":"x@y.io"},"43":{"email":"z@y.io"}},"n":[]}]"#,
        );
        let js = s.unwrap().to_json_schema();
        assert_eq!(js["type"], "array");
        let item = &js["items"];
        assert_eq!(item["type"], "object");
        let users = &item["properties"]["users"];
        assert_eq!(users["type"], "object");
        assert!(users.get("properties").is_none());
        assert_eq!(
            users["additionalProperties"]["properties"]["email"]["format"],
            "email"
        );
        assert_eq!(item["properties"]["n"], json!({"type": "array"}));
        // The rendering holds no value from the body.
        let text = js.to_string();
        assert!(!text.contains("x@y.io") && !text.contains("42"));
        assert_eq!(Schema::default().to_json_schema(), json!({}));
    }

    #[test]
    fn forms() {
        let (v, s, _) = run(
            BodyKind::Form,
            Some("application/x-www-form-urlencoded"),
            b"user=j.doe%40example.com&pass=s3cr%21t+x&empty=&flag&a%5Bb%5D=1&=skip",
        );
        assert_eq!(
            v,
            vec![
                leaf("$.user", Some("user"), "j.doe@example.com"),
                leaf("$.pass", Some("pass"), "s3cr!t x"),
                leaf("$.empty", Some("empty"), ""),
                leaf("$.flag", Some("flag"), ""),
                leaf("$['a[b]']", Some("a[b]"), "1"),
            ]
        );
        let js = s.unwrap().to_json_schema();
        assert_eq!(js["type"], "object");
        assert_eq!(js["properties"]["user"]["format"], "email");
        assert_eq!(
            js["required"],
            json!(["a[b]", "empty", "flag", "pass", "user"])
        );
        assert_eq!(form_decode(b"%zz%4"), "%zz%4");
    }

    #[test]
    fn multipart() {
        let ct = "multipart/form-data; boundary=\"----XyZ\"";
        let body = b"------XyZ\r\n\
Content-Disposition: form-data; name=\"title\"\r\n\
\r\n\
Hello there\r\n\
------XyZ\r\n\
content-disposition: form-data; name=\"doc\"; filename=\"a.pdf\"\r\n\
Content-Type: application/pdf\r\n\
\r\n\
%PDF-1.4 secret bytes\r\n\
------XyZ\r\n\
Content-Disposition: form-data; name=\"email\"\r\n\
\r\n\
a@example.com\r\n\
------XyZ--\r\n";
        let (v, s, st) = run(BodyKind::Multipart, Some(ct), body);
        assert_eq!(
            v,
            vec![
                leaf("$.title", Some("title"), "Hello there"),
                leaf("$.email", Some("email"), "a@example.com"),
            ]
        );
        assert_eq!(st.truncated_multipart, 0);
        let js = s.unwrap().to_json_schema();
        assert_eq!(
            js["properties"]["doc"]["contentMediaType"],
            "application/octet-stream"
        );
        assert_eq!(js["properties"]["doc"]["type"], "string");
        assert_eq!(js["properties"]["email"]["format"], "email");
        assert!(!js.to_string().contains("secret"));
        // Truncated in the last part: the complete parts are walked, the cut is counted.
        let cut = &body[..body.len() - 30];
        let (v, _, st) = run(BodyKind::Multipart, Some(ct), cut);
        assert_eq!(v[0], leaf("$.title", Some("title"), "Hello there"));
        assert_eq!(st.truncated_multipart, 1);
        // No boundary, or a wrong one.
        let (v, s, st) = run(BodyKind::Multipart, Some("multipart/form-data"), body);
        assert!(v.is_empty() && s.is_none());
        assert_eq!(st.truncated_multipart, 1);
        let (v, _, _) = run(
            BodyKind::Multipart,
            Some("multipart/form-data; boundary=nope"),
            body,
        );
        assert!(v.is_empty());
        // Part cap.
        let lim = BodyLimits {
            max_parts: 1,
            ..BodyLimits::default()
        };
        let (v, _, st) = run_lim(BodyKind::Multipart, Some(ct), body, &lim);
        assert_eq!(v.len(), 1);
        assert_eq!(st.parts_capped, 1);
    }

    #[test]
    fn formats() {
        assert_eq!(string_formats("2024-03-01T10:00:00Z"), 1);
        assert_eq!(string_formats("2024-03-01t10:00:00.123-05:30"), 1);
        assert_eq!(string_formats("2024-03-01"), 2);
        assert_eq!(string_formats("10.1.2.3"), 16);
        for no in [
            "2024-03-01T25:00:00Z",
            "2024-03-01T10:00:00",
            "2024-13-01",
            "1.2.3",
            "1.2.3.04",
            "256.1.1.1",
            "hello",
            "a@b",
        ] {
            assert_eq!(string_formats(no), 0, "{no}");
        }
    }

    #[test]
    fn stats_add() {
        let mut a = BodyStats {
            decoded: 1,
            ..Default::default()
        };
        a.add(&BodyStats {
            decoded: 2,
            truncated_json: 1,
            ..Default::default()
        });
        assert_eq!((a.decoded, a.truncated_json), (3, 1));
    }
}
