//! Body and JSON inspection and the classifiers of the root crate (`apitap::infer`), as the
//! engine runs them on captured bytes: `Content-Encoding` decoding with random codings and
//! caps, the JSON/form/multipart walkers on what it decoded, the sensitive-value classifiers
//! and their redaction, credential detection and JWT decoding, and the endpoint templater.
//!
//! The `src/infer` modules are compiled into the target from their sources (they depend on
//! nothing else of the crate) instead of through the `apitap` crate: that crate links
//! librdkafka, whose bundled C build fails under cargo-fuzz's build environment
//! (mklove's `configure`: "Argument list too long") and would cost minutes per build anyway.
//!
//! Invariants checked, besides "no panic, no hang, no OOM":
//! - decoding never yields more than `max_decoded`, nor more than `max_ratio` times the coded
//!   input; bytes the target compresses itself (gzip, zlib or raw deflate, in layers) decode
//!   back to a prefix of themselves, all of them when no cap was hit and nothing was cut;
//! - a walk visits at most `max_leaves` leaves and records at most `max_fields` paths, each a
//!   JSONPath from `$`; on a valid JSON document that hit no cap it visits exactly the
//!   document's scalars;
//! - a masked value never contains the value it masks (longer than 4 bytes), a hashed one is
//!   `sha256:` and 16 hex digits, `off` is the value; `scan_text` ranges are in order, do not
//!   overlap and lie on character boundaries;
//! - `detect` names a credential only by a header, parameter or cookie name that was sent;
//!   decoded JWT claims obey their caps; a JWT the target builds decodes exactly when its
//!   header is a JSON object with a string `alg` (and its payload is not empty);
//! - a template has the depth of its path, `observe` answers what `resolve` says right after,
//!   and the same set of paths learnt in another order, or in two learners then merged,
//!   templates alike (unless a node budget dropped some).
//!
//! Input layout: a selector octet; its low 3 bits pick the part, the others are parameters.
//! - 0 (decode and walk), 1 (compress, then decode and walk), 7 (walk as a forced kind):
//!   `[sel, enc, caps, ct, cut, body…]`: `enc` the codings (bits 0–1 how many, then two bits
//!   each: gzip, deflate, br, x-gzip), `caps` and `ct` the limits and the media type, `cut`
//!   where to cut the compressed bytes (0: not cut);
//! - 2 (classify, scan, redact): `[sel, name 0x00 value]` (bit 3: there is a name);
//! - 3 (credentials): `[sel, lines…]`, `name: value` header lines, the first line a query
//!   string when bit 3 is set;
//! - 4 (templates): `[sel, lines…]`, each `host path` or a path alone;
//! - 5 (JWT): `[sel, header 0x00 payload 0x00 signature]`, each part base64url-encoded here;
//! - 6 (mask a value as every type, for panics only): `[sel, value…]`.
#![no_main]

// Linted in the root crate, against its MSRV; here only what the target calls is used.
#[allow(dead_code, clippy::manual_is_multiple_of)]
#[path = "../../src/infer/auth.rs"]
pub mod auth;
#[allow(dead_code, clippy::manual_is_multiple_of)]
#[path = "../../src/infer/body.rs"]
pub mod body;
#[allow(dead_code, clippy::manual_is_multiple_of)]
#[path = "../../src/infer/sensitive.rs"]
pub mod sensitive;
#[allow(dead_code, clippy::manual_is_multiple_of)]
#[path = "../../src/infer/template.rs"]
pub mod template;

/// `apitap::infer` as the modules refer to each other (`crate::infer::sensitive` …).
mod infer {
    pub use super::{sensitive, template};
}

use auth::{AuthKind, JwtInfo, MAX_AUDIENCES, MAX_CLAIM_BYTES, MAX_JWT_BYTES};
use body::{BodyKind, BodyLimits, BodyStats};
use libfuzzer_sys::fuzz_target;
use sensitive::{RedactMode, SensitiveType};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::io::Write;
use template::{TemplateConfig, Templater};

const SALT: &[u8] = b"fuzz-salt";

const CODINGS: [&str; 4] = ["gzip", "deflate", "br", "x-gzip"];

const CONTENT_TYPES: [Option<&str>; 16] = [
    None,
    Some("application/json"),
    Some("application/problem+json; charset=utf-8"),
    Some("text/plain"),
    Some("application/octet-stream"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=XyZ"),
    Some("multipart/form-data; boundary=\"q r\""),
    Some("multipart/form-data"),
    Some("text/html"),
    Some("application/x-ndjson"),
    Some("APPLICATION/JSON"),
    Some("multipart/form-data; boundary="),
    Some("*/*"),
    Some("application/vnd.api+json"),
    Some("Multipart/Form-Data; charset=utf-8; boundary=XyZ"),
];

fn limits(caps: u8, ct: u8) -> BodyLimits {
    BodyLimits {
        max_decoded: [0, 1, 100, 4096, 65_536, 1 << 20, 17, 1000][usize::from(caps & 7)],
        max_ratio: [0, 1, 3, 100, 1000, 100, 2, 100][usize::from(caps >> 3 & 7)],
        max_depth: [0, 1, 3, 32, 128, 1000, 2, 32][usize::from(ct >> 4 & 7)],
        max_fields: [0, 1, 3, 512][usize::from(caps >> 6)],
        max_leaves: if ct & 0x80 != 0 { 5 } else { 4096 },
        max_parts: if caps & 0x40 != 0 { 2 } else { 64 },
    }
}

// --- bodies --------------------------------------------------------------------------------

fn compress(coding: &str, raw_deflate: bool, data: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::fast();
    let out = match coding {
        "deflate" if raw_deflate => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
            e.write_all(data).and_then(|()| e.finish())
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).and_then(|()| e.finish())
        }
        _ => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).and_then(|()| e.finish())
        }
    };
    out.expect("compressing into a Vec cannot fail")
}

fn inspect_body(sel: u8, data: &[u8]) {
    let [enc, caps, ct, cut, body @ ..] = data else {
        return;
    };
    let lim = limits(*caps, *ct);
    let content_type = CONTENT_TYPES[usize::from(ct & 15)];
    let roundtrip = sel & 7 == 1;
    let mut codings: Vec<&str> = (0..usize::from(enc & 3))
        .map(|i| CODINGS[usize::from(enc >> (2 + 2 * i) & 3)])
        // The target can only compress with gzip and deflate.
        .map(|c| if roundtrip && c == "br" { "deflate" } else { c })
        .collect();
    if sel & 0x08 != 0 {
        codings.insert(0, "identity");
    }
    let mut header = codings.join(", ");
    if sel & 0x10 != 0 {
        header.make_ascii_uppercase();
    }
    let mut coded = body.to_vec();
    if roundtrip {
        for c in &codings {
            if *c != "identity" {
                coded = compress(c, sel & 0x20 != 0, &coded);
            }
        }
        if *cut != 0 {
            coded.truncate(coded.len() * usize::from(*cut) / 256);
        }
    }
    let mut stats = BodyStats::default();
    let enc_header = (!header.is_empty() || sel & 0x40 != 0).then_some(header.as_str());
    let decoded = body::decode_content(enc_header, &coded, &lim, &mut stats);
    assert!(decoded.len() <= lim.max_decoded);
    let ratio = lim.max_ratio.max(1) as usize;
    assert!(decoded.len() <= coded.len().saturating_mul(ratio));
    if roundtrip && stats.mislabeled == 0 && stats.unsupported_encoding == 0 {
        // What the codings decode to is a prefix of what was compressed (the mislabelled
        // heuristic, which hands back the coded bytes, aside).
        assert!(
            body.starts_with(&decoded),
            "decoded bytes are not a prefix of the original ({header}, {} of {} bytes)",
            decoded.len(),
            body.len()
        );
        if *cut == 0 && stats.bomb_capped == 0 && stats.decode_errors == 0 {
            assert_eq!(
                decoded.len(),
                body.len(),
                "a whole stream decoded short ({header})"
            );
        }
    }
    let kind = match sel & 7 {
        7 => [
            BodyKind::Json,
            BodyKind::Form,
            BodyKind::Multipart,
            BodyKind::Other,
        ][usize::from(sel >> 3 & 3)],
        _ => body::body_kind(content_type, &decoded),
    };
    walk_body(kind, content_type, &decoded, &lim);
}

fn walk_body(kind: BodyKind, content_type: Option<&str>, bytes: &[u8], lim: &BodyLimits) {
    if kind == BodyKind::Other {
        // The engine scans texty bodies it cannot walk.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        check_scan(text);
        return;
    }
    let mut stats = BodyStats::default();
    let mut leaves = 0usize;
    let schema = body::walk(
        kind,
        content_type,
        bytes,
        lim,
        &mut stats,
        &mut |path, key, value| {
            leaves += 1;
            assert!(path.starts_with('$'), "{path:?}");
            if let Some(t) = sensitive::classify(key, value) {
                check_redact(t, value);
            }
        },
    );
    assert!(leaves <= lim.max_leaves, "{leaves} leaves");
    if let Some(s) = &schema {
        assert!(s.fields().count() <= lim.max_fields);
        assert!(s.fields().all(|(p, _)| p.starts_with('$')));
        let _ = s.to_json_schema();
        let mut twice = s.clone();
        twice.merge(s);
        assert_eq!(twice.samples(), 2 * s.samples());
        assert_eq!(twice.fields().count(), s.fields().count());
    }
    let uncapped = stats.depth_capped == 0
        && stats.leaves_capped == 0
        && stats.fields_capped == 0
        && stats.invalid_json == 0
        && stats.truncated_json == 0;
    if kind == BodyKind::Json && uncapped {
        // A document serde_json reads whole (no JSON Lines, no BOM): the walker agrees on its
        // scalars.
        let mut de = serde_json::Deserializer::from_slice(bytes);
        if let Ok(Scalars(n)) = Scalars::deserialize(&mut de) {
            if de.end().is_ok() {
                assert_eq!(
                    leaves as u64, n,
                    "the walker and serde_json disagree on the leaves"
                );
            }
        }
    }
}

/// Counts the scalar leaves of a JSON document, duplicate members included.
struct Scalars(u64);

impl<'de> Deserialize<'de> for Scalars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Scalars;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalars, E> {
        Ok(Scalars(1))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scalars, E> {
        Ok(Scalars(1))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Scalars, E> {
        Ok(Scalars(1))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalars, E> {
        Ok(Scalars(1))
    }
    fn visit_str<E>(self, _: &str) -> Result<Scalars, E> {
        Ok(Scalars(1))
    }
    fn visit_unit<E>(self) -> Result<Scalars, E> {
        Ok(Scalars(1))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalars, A::Error> {
        let mut n = 0;
        while let Some(Scalars(k)) = a.next_element()? {
            n += k;
        }
        Ok(Scalars(n))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalars, A::Error> {
        let mut n = 0;
        while a.next_key::<IgnoredAny>()?.is_some() {
            n += a.next_value::<Scalars>()?.0;
        }
        Ok(Scalars(n))
    }
}

// --- sensitive values --------------------------------------------------------------------

/// What may leave the sensor for a value classified `t`.
fn check_redact(t: SensitiveType, value: &str) {
    let masked = sensitive::redact(RedactMode::Mask, SALT, t, value);
    for v in [
        value.trim_matches(|c: char| c.is_ascii_whitespace()),
        value.trim(),
    ] {
        if v.len() > 4 {
            assert!(!masked.contains(v), "{t:?}: mask {masked:?} reveals {v:?}");
        }
    }
    let hashed = sensitive::redact(RedactMode::Hash, SALT, t, value);
    assert!(
        hashed.len() == 23
            && hashed.starts_with("sha256:")
            && hashed[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{hashed:?}"
    );
    assert_eq!(sensitive::redact(RedactMode::Off, SALT, t, value), value);
}

fn check_scan(text: &str) {
    let mut last = 0;
    sensitive::scan_text(text, &mut |t, s, e| {
        assert!(
            last <= s && s < e && e <= text.len(),
            "{s}..{e} after {last}"
        );
        assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
        last = e;
        check_redact(t, &text[s..e]);
    });
}

fn sensitive_values(sel: u8, data: &[u8]) {
    let (name, value) = match data.iter().position(|&b| b == 0) {
        Some(i) if sel & 0x08 != 0 => (Some(&data[..i]), &data[i + 1..]),
        _ => (None, data),
    };
    let name = name.map(String::from_utf8_lossy);
    let value = String::from_utf8_lossy(value);
    if let Some(t) = sensitive::classify(name.as_deref(), &value) {
        check_redact(t, &value);
    }
    check_scan(&value);
}

/// `mask` is only ever given values `classify` gave that type, so only "no panic" holds for
/// the others (`mask(Email, "@x")` shows `@x`: no address, nothing to hide).
fn mask_as_every_type(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    for t in SensitiveType::ALL {
        let _ = sensitive::mask(t, &value);
    }
}

// --- credentials ---------------------------------------------------------------------------

fn check_jwt(j: &JwtInfo) {
    for s in [Some(&j.alg), j.typ.as_ref(), j.iss.as_ref(), j.kid.as_ref()]
        .into_iter()
        .flatten()
        .chain(&j.aud)
    {
        assert!(s.len() <= MAX_CLAIM_BYTES, "{} bytes", s.len());
    }
    assert!(j.aud.len() <= MAX_AUDIENCES);
}

fn credentials(sel: u8, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let query = if sel & 0x08 != 0 { lines.next() } else { None };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let info = auth::detect(&headers, query);
    if let Some(j) = &info.jwt {
        check_jwt(j);
    }
    let cookie_names = || {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| auth::cookies(v))
            .map(|(n, _)| n)
    };
    match (info.kind, info.location, info.name.as_deref()) {
        (AuthKind::None, None, None) => assert!(info.jwt.is_none()),
        (_, Some("header"), Some(n)) => {
            assert!(
                headers.iter().any(|(h, _)| h.to_ascii_lowercase() == n),
                "{n:?}"
            );
        }
        (_, Some("query"), Some(n)) => {
            let q = query.unwrap_or_default();
            assert!(
                auth::query_pairs(q).any(|(k, _)| auth::percent_decode(k) == n),
                "{n:?}"
            );
        }
        (_, Some("cookie"), Some(n)) => assert!(cookie_names().any(|c| c == n), "{n:?}"),
        other => panic!("unexpected credential {other:?}"),
    }
    for (_, v) in &headers {
        for (n, cv) in auth::cookies(v) {
            assert!(!n.is_empty() && v.contains(n) && v.contains(cv));
        }
        for tok in std::iter::once(v.as_str()).chain(v.split_ascii_whitespace().last()) {
            if let Some(j) = auth::decode_jwt(tok) {
                check_jwt(&j);
            }
        }
    }
    if let Some(q) = query {
        for (k, v) in auth::query_pairs(q) {
            assert!(!k.contains('&') && !v.contains('&'));
            for s in [k, v] {
                let d = auth::percent_decode(s);
                assert!(d.len() <= s.len(), "{s:?} decodes to {d:?}");
            }
        }
    }
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=c.len() {
            s.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    s
}

fn jwt(sel: u8, data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let header = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    let sig = parts.next();
    let mut token = format!("{}.{}", b64url(header), b64url(payload));
    match (sig, sel & 0x08 != 0) {
        (Some(s), _) => {
            token.push('.');
            token.push_str(&b64url(s));
        }
        // The unsigned form `header.payload.`.
        (None, true) => token.push('.'),
        (None, false) => {}
    }
    let info = auth::decode_jwt(&token);
    if let Some(j) = &info {
        check_jwt(j);
    }
    let alg_is_string = serde_json::from_slice::<serde_json::Value>(header)
        .ok()
        .is_some_and(|h| h.get("alg").is_some_and(serde_json::Value::is_string));
    let expected = alg_is_string && !payload.is_empty() && token.len() <= MAX_JWT_BYTES;
    assert_eq!(info.is_some(), expected, "{token}");
    // `classify` reads only the header's `alg` and so is laxer than `decode_jwt` (a header
    // that is not UTF-8 elsewhere, a number out of range): no implication either way.
    if sensitive::classify(None, &token) == Some(SensitiveType::Jwt) {
        check_redact(SensitiveType::Jwt, &token);
    }
    let bearer = auth::detect(
        &[("Authorization".to_string(), format!("Bearer {token}"))],
        None,
    );
    assert_eq!(bearer.kind, AuthKind::Bearer);
    if token.starts_with('e') {
        assert_eq!(bearer.jwt, info);
    }
}

// --- templates -----------------------------------------------------------------------------

fn depth(template: &str) -> usize {
    template.split('/').filter(|s| !s.is_empty()).count()
}

fn templates(sel: u8, data: &[u8]) {
    let cfg = TemplateConfig {
        max_hosts: [1, 2, 4096, 4096][usize::from(sel >> 3 & 3)],
        max_nodes_per_host: if sel & 0x20 != 0 { 16 } else { 8192 },
        max_nodes_total: 262_144,
        param_threshold: if sel & 0x40 != 0 { 2 } else { 12 },
        max_literals: if sel & 0x40 != 0 { 3 } else { 128 },
        max_segments: if sel & 0x80 != 0 { 4 } else { 32 },
    };
    let text = String::from_utf8_lossy(data);
    let obs: Vec<(&str, &str)> = text
        .split('\n')
        .take(256)
        .map(|l| l.split_once(' ').unwrap_or(("a", l)))
        .collect();
    let shapes = Templater::new(TemplateConfig::default());
    let mut a = Templater::new(cfg.clone());
    for &(h, p) in &obs {
        let t = a.observe(h, p);
        assert!(t.starts_with('/'), "{t:?}");
        assert_eq!(t, a.resolve(h, p), "observe and resolve disagree on {p:?}");
        assert_eq!(depth(&t), depth(&shapes.resolve(h, p)), "{p:?} → {t:?}");
    }
    // The same set in reverse order, and split between two learners then merged.
    let mut b = Templater::new(cfg.clone());
    for &(h, p) in obs.iter().rev() {
        b.observe(h, p);
    }
    let (mut c, mut d) = (Templater::new(cfg.clone()), Templater::new(cfg));
    for (i, &(h, p)) in obs.iter().enumerate() {
        let half = if i % 2 == 0 { &mut c } else { &mut d };
        half.observe(h, p);
    }
    c.merge(&d);
    let lossless = [&a, &b, &c, &d]
        .iter()
        .all(|t| t.stats().nodes_dropped == 0 && t.stats().hosts_dropped == 0);
    if lossless {
        for &(h, p) in &obs {
            let t = a.resolve(h, p);
            assert_eq!(t, b.resolve(h, p), "order changed the template of {p:?}");
            assert_eq!(t, c.resolve(h, p), "merging changed the template of {p:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel & 7 {
        0 | 1 | 7 => inspect_body(sel, rest),
        2 => sensitive_values(sel, rest),
        3 => credentials(sel, rest),
        4 => templates(sel, rest),
        5 => jwt(sel, rest),
        _ => mask_as_every_type(rest),
    }
});
