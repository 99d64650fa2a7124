//! Sensitive-data classifiers, and the masking and salted hashing of what they find.
//!
//! Owns the decision "is this value an e-mail address, a card number, an SSN, a key …" for one
//! value seen under a name ([`classify`]) or for values embedded in free text ([`scan_text`]),
//! and the redaction of such values ([`mask`], [`hash`], [`redact`]). Callers record *where* a
//! value was found ([`Location`]); nothing here keeps a value.
//!
//! Every matcher is hand-written over bytes: no regex, no allocation on the negative path, and
//! the work is linear in the value (one pass to take the value's *shape* — which byte classes
//! it holds — then only the matchers that shape allows). Values longer than
//! [`MAX_VALUE_BYTES`] are only checked for a PEM header and a password name.
//!
//! # Types and the rules that decide them
//! Precision matters as much as recall: a sensor that cries "credit card" at every 16-digit
//! number is switched off. So each type needs its shape *and* its checksum or context:
//! - `private_key`: a PEM private-key header, `-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED
//!   |PGP )?PRIVATE KEY( BLOCK)?-----` (RFC 7468 §2 textual encoding; the body is not checked,
//!   so a truncated body prefix still counts).
//! - `password`: by field name only (`password`, `passwd`, `pwd`, `pass`, `passphrase`,
//!   `passcode`, `new_password` …), any non-empty value except `true`/`false`/`null` and
//!   already-masked `****`. Names that describe a password rather than hold one
//!   (`password_hint`, `password_changed_at`, `has_password` …) do not count. A password name
//!   wins over the content (a password that looks like an e-mail is a password).
//! - `jwt`: two or three base64url parts (RFC 7519 §3, RFC 7515 §7.1 compact serialisation;
//!   the unsigned `alg: none` form `header.payload.` counts), the header starting `eyJ` and
//!   decoding to a JSON object with a non-empty `alg`.
//! - `api_key` by format: AWS access key ids (`AKIA`/`ASIA` + 16 upper-case alphanumerics),
//!   Stripe (`sk_`/`pk_`/`rk_` + `live_`/`test_`, `whsec_`), GitHub (`ghp_`, `gho_`, `ghu_`,
//!   `ghs_`, `ghr_`, `github_pat_`), Slack (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`),
//!   Google (`AIza` + 35), SendGrid (`SG.x.y`), Twilio (`SK` + 32 hex), OpenAI/Anthropic
//!   (`sk-`), GitLab (`glpat-`), npm (`npm_`), Shopify (`shpat_` …), Hugging Face (`hf_`),
//!   DigitalOcean (`dop_v1_`), PyPI (`pypi-`). The random part must have its family's length
//!   and alphabet and mix at least two character classes, so `sk_test_abc` or a slug
//!   `sk-some-product-name` do not count.
//! - `api_key` by name: a *secret-looking* value — at least 16 bytes of a token alphabet, two
//!   of upper/lower/digit, at least 4 letters, Shannon entropy ≥ 3 bits per byte, no `://` —
//!   under a name that says credential (`api_key`, `x-api-key`, `access_token`, `token`,
//!   `secret`, `client_secret`, `auth`, `credential`, `*_token`, `*_secret` …). A plain `key`
//!   is weaker evidence (sort keys, cache keys, S3 object keys): there the value must be at
//!   least 20 bytes of `[A-Za-z0-9_-]` with entropy ≥ 3.5 and must not be a UUID or a bare hex
//!   digest. Names that describe a token rather than hold one (`next_page_token`,
//!   `csrf_token`, `idempotency_key`, `public_key`, `sec-websocket-key`, `token_type`,
//!   `key_id` …) never count. A UUID under `api_key` or `token` counts (UUIDs are common
//!   API keys); under `key` it does not.
//! - `credit_card`: 13–19 digits, bare or in consistent groups separated by one kind of
//!   separator (space or `-`: `4-4-4-4[-1..3]`, Amex `4-6-5`, Diners `4-6-4`), Luhn-valid
//!   (ISO/IEC 7812-1 annex B) *and* inside an issuer range with that issuer's length: Visa `4`
//!   (13, 16, 19), Mastercard `51`–`55` and `2221`–`2720` (16), Amex `34`/`37` (15),
//!   Discover `6011`/`644`–`649`/`65`/`622126`–`622925` (16–19), JCB `3528`–`3589` (16–19),
//!   Diners `300`–`305`/`3095`/`36`/`38`/`39` (14–19), UnionPay `62` (16–19). All-same-digit
//!   and strictly sequential numbers are rejected. **Name rule:** about 1 % of random 16-digit
//!   numbers pass Luhn and the issuer table, so a *bare* digit run under a name that says
//!   identifier, time or counter (`id`, `*_id`, `order`, `invoice`, `trace`, `timestamp`,
//!   `nonce`, `serial`, `imei`, `account` … — see `ID_WORDS`) is not a card unless the name
//!   also says card (`card`, `pan`, `cc`, `ccnum`). Grouped numbers (`4111 1111 1111 1111`)
//!   are written for humans and count under any name. Without a name (path segments, free
//!   text) a valid number counts.
//! - `ssn`: US `AAA-GG-SSSS` with dashes, or 9 bare digits (or space-separated groups) only
//!   under an SSN name (`ssn`, `social_security_number` …); area 000, 666 and 900–999, group
//!   00 and serial 0000 are never issued, and the numbers made public by advertising or
//!   mistakes (078-05-1120, 219-09-9999, 457-55-5462) and the placeholder 123-45-6789 are
//!   excluded.
//! - `iban`: country code, two check digits (02–98), BBAN of exactly the country's length
//!   (ISO 13616 registry: all SEPA countries, GB and the other registered ones), ISO 7064
//!   MOD 97-10 remainder 1; upper case, compact or in space-separated groups of four.
//! - `email`: `local@domain.tld` with a practical local part (`[A-Za-z0-9._%+'-]`, 1–64 bytes,
//!   no leading, trailing or double dot) and a DNS domain (labels of 1–63 alphanumerics and
//!   inner hyphens, at least two labels, ≤ 253 bytes, RFC 5321 §4.5.3.1), the TLD alphabetic
//!   and ≥ 2 letters (or IDNA `xn--…`). `a@b`, `user@localhost` and `logo@2x.png` (a file
//!   extension is not a TLD) do not count.
//! - `phone`: `+` and 8–15 digits (ITU-T E.164) with or without separators (`+44 20 7946
//!   0958`, `+1 (415) 555-0134`); without `+`, national formats *with separators* only: North
//!   American `(415) 555-0134`, `415-555-0134`, `415.555.0134`, `1-415-555-0134` (area code
//!   and exchange starting 2–9), or trunk-prefix `0` numbers of 10–11 digits in 2–5 groups
//!   (`020 7946 0958`, `06 12 34 56 78`). A bare digit run is a phone only under a phone name
//!   (`phone`, `mobile`, `tel`, `msisdn`, `cell`, `fax` …), so order ids, timestamps and
//!   10-digit customer numbers are not phones.
//! - `ip_address`: IPv4 dotted quad (each part ≤ 255, no leading zeros) or IPv6 as parsed by
//!   `std` (RFC 4291 §2.2) with at least two colons. An address is personal data (GDPR
//!   recital 30) when it can point at a host: unspecified, loopback, multicast and reserved
//!   (`0/8`, `127/8`, `224/3`, `::`, `::1`, `ff00::/8`) are not reported, nor IPv4 values whose
//!   four parts are single digits (`1.2.3.4` is far more often a version than a host), nor
//!   anything under a version-like name (`version`, `ver`, `build`, `release`, `os`, …) or a
//!   mask name (`netmask`).
//!
//! Names (query/form parameter, header, cookie or JSON key) are matched case-insensitively and
//! normalised: separators (`-`, `_`, `.`) and camelCase boundaries split words, so `newPassword`,
//! `new_password` and `New-Password` are the same name.
//!
//! # Cost
//! [`classify`] is linear in the value and the name, without allocation except when a JWT
//! header holds JSON escapes. The common negative case is a trim, a short name check, one
//! table-driven pass over the value and a few gated matchers: about 100–800 instructions for
//! typical header values and JSON leaves (`42` under `page`, `application/json` under
//! `content-type`), 1.5–3 k for values that look like cards, e-mails or UUIDs, up to ~7 k for
//! a secret-looking value under a key name (Shannon entropy). [`scan_text`] is linear in the
//! text: about 50–100 instructions per byte on prose, at most a few hundred on crafted runs of
//! digit groups (figures from callgrind on a release build).
//!
//! # Redaction
//! [`mask`] keeps only what identifies a value's shape, never more than its last 4 characters
//! and never the whole value: card `4111********1111`, e-mail `j***@example.com`, phone
//! `***-***-0134`, SSN `***-**-6789`, IBAN `DE89**************3000`, JWT `<header>.***` (the
//! header names the algorithm and key, not the holder), API key `sk_live_***`, password and
//! private key `***`, IP `10.*.*.*`. [`hash`] is a salted SHA-256 (FIPS 180-4) prefix so that
//! equal values correlate across events without being revealed.
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// Values longer than this many bytes are not classified by content (only a PEM header at the
/// start and a password name are recognised): keys, cards and addresses are short, and the
/// cap bounds the work per value.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Name bytes (letters and digits, after normalisation) that are looked at; longer names are
/// judged on their start.
const NAME_MAX: usize = 64;

/// Words of a name that are looked at.
const NAME_WORDS: usize = 12;

/// A JWT header longer than this (encoded) is not decoded: real ones are well under 200 bytes.
const JWT_HEADER_MAX: usize = 1024;

/// A kind of sensitive value. The serialised names are the ones of the issue and the outputs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SensitiveType {
    /// An e-mail address.
    Email,
    /// A telephone number.
    Phone,
    /// A payment card number (PAN).
    CreditCard,
    /// A US social security number.
    Ssn,
    /// An international bank account number.
    Iban,
    /// A JSON Web Token.
    Jwt,
    /// An API key, access token or client secret.
    ApiKey,
    /// A password (recognised by its field name).
    Password,
    /// A PEM private key.
    PrivateKey,
    /// An IPv4 or IPv6 address.
    IpAddress,
}

impl SensitiveType {
    /// Every type, in declaration order.
    pub const ALL: [SensitiveType; 10] = [
        SensitiveType::Email,
        SensitiveType::Phone,
        SensitiveType::CreditCard,
        SensitiveType::Ssn,
        SensitiveType::Iban,
        SensitiveType::Jwt,
        SensitiveType::ApiKey,
        SensitiveType::Password,
        SensitiveType::PrivateKey,
        SensitiveType::IpAddress,
    ];

    /// The name used in outputs (`credit_card`, `api_key` …), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            SensitiveType::Email => "email",
            SensitiveType::Phone => "phone",
            SensitiveType::CreditCard => "credit_card",
            SensitiveType::Ssn => "ssn",
            SensitiveType::Iban => "iban",
            SensitiveType::Jwt => "jwt",
            SensitiveType::ApiKey => "api_key",
            SensitiveType::Password => "password",
            SensitiveType::PrivateKey => "private_key",
            SensitiveType::IpAddress => "ip_address",
        }
    }
}

impl fmt::Display for SensitiveType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a value was found. Serialises as `"request.path"`, `"request.query"`,
/// `"request.header"`, `"request.cookie"`, `"request.body"`, `"response.header"`,
/// `"response.body"`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Location {
    /// A segment of the request path.
    #[serde(rename = "request.path")]
    RequestPath,
    /// A query parameter.
    #[serde(rename = "request.query")]
    RequestQuery,
    /// A request header.
    #[serde(rename = "request.header")]
    RequestHeader,
    /// A request cookie.
    #[serde(rename = "request.cookie")]
    RequestCookie,
    /// The request body.
    #[serde(rename = "request.body")]
    RequestBody,
    /// A response header (including `Set-Cookie`).
    #[serde(rename = "response.header")]
    ResponseHeader,
    /// The response body.
    #[serde(rename = "response.body")]
    ResponseBody,
}

impl Location {
    /// The serialised name (`request.query` …).
    pub fn as_str(self) -> &'static str {
        match self {
            Location::RequestPath => "request.path",
            Location::RequestQuery => "request.query",
            Location::RequestHeader => "request.header",
            Location::RequestCookie => "request.cookie",
            Location::RequestBody => "request.body",
            Location::ResponseHeader => "response.header",
            Location::ResponseBody => "response.body",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Redaction of a sensitive raw value: `mask` (default), `hash` (salted SHA-256, correlatable)
/// or `off` (lab use only: outputs then carry live secrets).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RedactMode {
    /// Keep only the shape ([`mask`]).
    #[default]
    Mask,
    /// Replace by a salted hash ([`hash`]).
    Hash,
    /// Keep the raw value.
    Off,
}

// ---------------------------------------------------------------------------------------------
// Names

/// A parameter, header, cookie or JSON key name, normalised without allocating: lower-case
/// letters and digits only, split into words at separators and camelCase boundaries.
struct Name {
    buf: [u8; NAME_MAX],
    len: usize,
    words: [(u8, u8); NAME_WORDS],
    nwords: usize,
}

/// Words that describe an identifier, a time or a counter: a bare digit run under them is not
/// a card number (see the module docs).
#[rustfmt::skip]
const ID_WORDS: &[&str] = &[
    "id", "ids", "uid", "uuid", "guid", "order", "orders", "invoice", "ref", "reference", "trace",
    "span", "request", "req", "correlation", "transaction", "txn", "tx", "ts", "timestamp", "time",
    "date", "epoch", "created", "updated", "modified", "expires", "at", "nonce", "seq", "sequence",
    "serial", "tracking", "shipment", "parcel", "ean", "gtin", "upc", "isbn", "imei", "iccid",
    "sku", "barcode", "account", "customer", "user", "version", "count", "offset", "cursor",
    "snowflake", "event", "message", "msg", "hash", "checksum", "crc", "nanos", "millis", "ms",
    "ns", "size", "bytes", "length", "total", "amount",
];

/// Words of names that describe a password rather than hold one.
#[rustfmt::skip]
const PASSWORD_QUALIFIERS: &[&str] = &[
    "hint", "policy", "policies", "rule", "rules", "changed", "expires", "expired", "expiry",
    "expiration", "required", "length", "strength", "strong", "min", "max", "last", "updated",
    "enabled", "type", "label", "placeholder", "at", "date", "time", "count", "attempts", "age",
    "history", "score", "valid", "validated", "is", "has", "needs", "must", "field", "visible",
    "show", "url", "link", "set", "protected", "less", "mode", "method",
];

/// Words of names that describe a token or key rather than hold a secret one.
#[rustfmt::skip]
const KEY_QUALIFIERS: &[&str] = &[
    "page", "next", "prev", "previous", "continuation", "cursor", "pagination", "csrf", "xsrf",
    "idempotency", "request", "trace", "correlation", "nonce", "etag", "sync", "resume", "upload",
    "public", "pub", "publishable", "websocket", "cache", "object", "partition", "sort", "primary",
    "foreign", "row", "lookup", "dedup", "dedupe", "i18n", "translation", "message", "label",
    "name", "type", "field", "column", "map", "group", "event", "routing", "id", "ids", "count",
    "expires", "expiry", "expiration", "ttl", "length", "url", "uri", "endpoint", "hint", "format",
    "version", "hash", "fingerprint", "algorithm", "alg", "kind", "scope", "scopes", "status",
    "used", "usage", "created", "updated", "at", "date", "time", "location", "path", "file",
    "prefix", "suffix", "last4", "masked",
];

/// Joined-name fragments that say "credential" wherever they occur.
#[rustfmt::skip]
const STRONG_KEY_PARTS: &[&str] = &[
    "apikey", "apitoken", "apisecret", "accesskey", "secretkey", "privatekey", "clientsecret",
    "authtoken", "accesstoken", "refreshtoken", "idtoken", "sessiontoken", "bearertoken", "authkey",
    "appkey", "appsecret", "subscriptionkey", "signingkey", "masterkey", "licensekey",
    "encryptionkey", "credential", "authorization", "webhooksecret", "securitytoken",
];

/// Words that say "credential" on their own.
const STRONG_KEY_WORDS: &[&str] = &[
    "secret", "secrets", "token", "tokens", "auth", "bearer", "jwt", "apikey", "pat", "passkey",
];

/// Joined-name fragments that rule a key name out even when not split into words
/// (`csrftoken`, `nextpagetoken`).
#[rustfmt::skip]
const KEY_QUALIFIER_PARTS: &[&str] = &[
    "csrf", "xsrf", "nextpage", "pagetoken", "nexttoken", "continuation", "cursor", "idempotency",
    "websocket", "publickey", "pubkey", "publishable",
];

const VERSION_WORDS: &[&str] = &[
    "version", "ver", "v", "build", "release", "rev", "revision", "firmware", "fw", "semver", "os",
    "sdk", "mask", "netmask", "subnet",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KeyName {
    No,
    /// `key` alone: weak evidence.
    Weak,
    /// A credential name.
    Strong,
}

impl Name {
    fn new(name: &str) -> Name {
        let mut n = Name {
            buf: [0; NAME_MAX],
            len: 0,
            words: [(0, 0); NAME_WORDS],
            nwords: 0,
        };
        let b = name.as_bytes();
        let mut start: Option<usize> = None;
        let mut prev = 0u8;
        for (i, &c) in b.iter().enumerate() {
            if !c.is_ascii_alphanumeric() {
                n.close(&mut start);
                prev = c;
                continue;
            }
            // camelCase (`apiKey`), acronyms (`APIKey`, `XMLHttp`) and digit→upper
            // (`sha256Hash`) start a new word.
            let boundary = c.is_ascii_uppercase()
                && (prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase()
                        && b.get(i + 1).is_some_and(|x| x.is_ascii_lowercase())));
            if boundary {
                n.close(&mut start);
            }
            if n.len == NAME_MAX {
                break;
            }
            if start.is_none() {
                start = Some(n.len);
            }
            n.buf[n.len] = c.to_ascii_lowercase();
            n.len += 1;
            prev = c;
        }
        n.close(&mut start);
        n
    }

    fn close(&mut self, start: &mut Option<usize>) {
        if let Some(s) = start.take() {
            if self.nwords < NAME_WORDS && s < self.len {
                // NAME_MAX fits in a u8.
                self.words[self.nwords] = (s as u8, self.len as u8);
                self.nwords += 1;
            }
        }
    }

    fn joined(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn words(&self) -> impl Iterator<Item = &[u8]> {
        self.words[..self.nwords]
            .iter()
            .map(|&(s, e)| &self.buf[s as usize..e as usize])
    }

    fn has_word(&self, list: &[&str]) -> bool {
        self.words().any(|w| list.iter().any(|x| x.as_bytes() == w))
    }

    fn contains(&self, part: &str) -> bool {
        contains(self.joined(), part.as_bytes())
    }

    fn contains_any(&self, parts: &[&str]) -> bool {
        parts.iter().any(|p| self.contains(p))
    }

    fn is_password(&self) -> bool {
        // Every password word has a `p`: most names are ruled out by one byte search.
        if !self.joined().contains(&b'p') {
            return false;
        }
        let hit = self.contains_any(&["password", "passwd", "passphrase", "passcode"])
            || self.has_word(&["pwd", "pass", "pw", "pword", "passwrd"]);
        hit && !self.has_word(PASSWORD_QUALIFIERS)
    }

    fn is_phone(&self) -> bool {
        self.contains_any(&["phone", "mobile", "msisdn", "telephone"])
            || self.has_word(&["tel", "cell", "fax", "sms", "telno", "mob", "whatsapp"])
    }

    fn is_card(&self) -> bool {
        self.contains_any(&["card", "ccnum", "ccnumber"])
            || self.has_word(&["pan", "cc", "ccn", "primaryaccountnumber"])
    }

    fn is_id_like(&self) -> bool {
        let j = self.joined();
        self.has_word(ID_WORDS) || (j.len() > 2 && j.ends_with(b"id")) || j.ends_with(b"ids")
    }

    fn is_ssn(&self) -> bool {
        let j = self.joined();
        self.has_word(&["ssn", "ssns", "social"])
            || j.starts_with(b"ssn")
            || j.ends_with(b"ssn")
            || self.contains("socialsecurity")
    }

    fn is_version(&self) -> bool {
        self.has_word(VERSION_WORDS) || self.contains("version")
    }

    fn key(&self) -> KeyName {
        if self.len == 0 || self.has_word(KEY_QUALIFIERS) || self.contains_any(KEY_QUALIFIER_PARTS)
        {
            return KeyName::No;
        }
        let j = self.joined();
        if self.contains_any(STRONG_KEY_PARTS)
            || self.has_word(STRONG_KEY_WORDS)
            || j.ends_with(b"token")
            || j.ends_with(b"secret")
        {
            KeyName::Strong
        } else if self.has_word(&["key", "keys"]) {
            KeyName::Weak
        } else {
            KeyName::No
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Classification

/// Byte classes for [`Shape`], one table lookup per byte.
const C_DIGIT: u8 = 1;
const C_UPPER: u8 = 2;
const C_LOWER: u8 = 4;
const C_NUMERIC: u8 = 8; // digits and ` +-.()/`
const C_HEXCOLON: u8 = 16; // hex digits, `:` and `.`
const C_IPV4: u8 = 32; // digits and `.`
const C_AT: u8 = 64;
const C_COLON: u8 = 128;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut f = 0;
        if b.is_ascii_digit() {
            f |= C_DIGIT | C_NUMERIC | C_HEXCOLON | C_IPV4;
        }
        if b.is_ascii_uppercase() {
            f |= C_UPPER;
        }
        if b.is_ascii_lowercase() {
            f |= C_LOWER;
        }
        if b.is_ascii_hexdigit() || b == b':' || b == b'.' {
            f |= C_HEXCOLON;
        }
        if matches!(b, b' ' | b'+' | b'-' | b'.' | b'(' | b')' | b'/') {
            f |= C_NUMERIC;
        }
        match b {
            b'.' => f |= C_IPV4,
            b'@' => f |= C_AT,
            b':' => f |= C_COLON,
            _ => {}
        }
        t[c] = f;
        c += 1;
    }
    t
};

/// Which byte classes a value holds; one pass, no allocation.
struct Shape {
    digits: usize,
    upper: usize,
    lower: usize,
    /// Classes every byte has.
    all: u8,
    /// Classes some byte has.
    any: u8,
}

impl Shape {
    fn of(b: &[u8]) -> Shape {
        let (mut digits, mut upper, mut lower) = (0, 0, 0);
        let (mut all, mut any) = (0xffu8, 0u8);
        for &c in b {
            let f = CLASSES[c as usize];
            all &= f;
            any |= f;
            digits += (f & C_DIGIT) as usize;
            upper += ((f & C_UPPER) >> 1) as usize;
            lower += ((f & C_LOWER) >> 2) as usize;
        }
        Shape {
            digits,
            upper,
            lower,
            all,
            any,
        }
    }

    fn all(&self, class: u8) -> bool {
        self.all & class != 0
    }

    fn any(&self, class: u8) -> bool {
        self.any & class != 0
    }
}

/// A name analysed on first use: most values are ruled out by their shape before their name
/// matters.
struct LazyName<'a> {
    raw: Option<&'a str>,
    name: Option<Name>,
}

impl LazyName<'_> {
    fn get(&mut self) -> Option<&Name> {
        let raw = self.raw?;
        Some(self.name.get_or_insert_with(|| Name::new(raw)))
    }

    fn is(&mut self, f: impl FnOnce(&Name) -> bool) -> bool {
        self.get().is_some_and(f)
    }

    /// Whether the raw name can be a password name at all: every password word contains
    /// `pass` or `pw` (case aside).
    fn maybe_password(&self) -> bool {
        self.raw.is_some_and(|r| {
            let r = r.as_bytes();
            r.windows(2).any(|w| w.eq_ignore_ascii_case(b"pw"))
                || r.windows(4).any(|w| w.eq_ignore_ascii_case(b"pass"))
        })
    }
}

/// Classifies one value seen under `name` (query/form parameter name, header name, cookie
/// name, JSON key — `None` for path segments and free text). Returns the single most specific
/// type, or `None`. See the module docs for the rules.
///
/// Order (most specific first): private key, password (by name), JWT, API key by format,
/// e-mail, card, SSN, phone, IP address, IBAN, API key by name.
pub fn classify(name: Option<&str>, value: &str) -> Option<SensitiveType> {
    let v = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if v.is_empty() {
        return None;
    }
    let b = v.as_bytes();
    if b[0] == b'-' && is_pem_private_key(b) {
        return Some(SensitiveType::PrivateKey);
    }
    let mut name = LazyName {
        raw: name,
        name: None,
    };
    if name.maybe_password() && name.is(Name::is_password) && password_value(b) {
        return Some(SensitiveType::Password);
    }
    if b.len() > MAX_VALUE_BYTES || b.len() < 6 {
        // Longer than anything worth classifying, or shorter than any address, number or key.
        return None;
    }
    if b.starts_with(b"eyJ") && is_jwt(b) {
        return Some(SensitiveType::Jwt);
    }
    if api_key_family(b).is_some() {
        return Some(SensitiveType::ApiKey);
    }
    let s = Shape::of(b);
    if s.any(C_AT) && is_email(b) {
        return Some(SensitiveType::Email);
    }
    if s.all(C_NUMERIC) && s.digits >= 7 {
        if is_card(b, &mut name) {
            return Some(SensitiveType::CreditCard);
        }
        if is_ssn(b, &mut name) {
            return Some(SensitiveType::Ssn);
        }
        if is_phone(b, &mut name) {
            return Some(SensitiveType::Phone);
        }
    } else if b.len() > 4 && b[..4].eq_ignore_ascii_case(b"tel:") && name.is(Name::is_phone) {
        // `tel:` URI (RFC 3966).
        if is_phone_number(&b[4..], true) {
            return Some(SensitiveType::Phone);
        }
    }
    if s.all(C_IPV4) && b.len() <= 15 && s.digits < b.len() {
        if let Some(ip) = parse_ipv4(b) {
            if ipv4_personal(ip) && !name.is(Name::is_version) {
                return Some(SensitiveType::IpAddress);
            }
        }
    }
    if s.any(C_COLON)
        && s.all(C_HEXCOLON)
        && b.len() <= 45
        && is_ipv6_personal(v)
        && !name.is(Name::is_version)
    {
        return Some(SensitiveType::IpAddress);
    }
    if s.upper >= 2 && is_iban(b) {
        return Some(SensitiveType::Iban);
    }
    let classes = (s.upper > 0) as u8 + (s.lower > 0) as u8 + (s.digits > 0) as u8;
    if name.raw.is_some() && b.len() >= 16 && classes >= 2 && s.upper + s.lower >= 4 {
        // The value's shape first: the name tables cost more than a pass over the value.
        if let Some(weak_ok) = secret_shape(b) {
            let k = name.get().map_or(KeyName::No, Name::key);
            let strong = k == KeyName::Strong;
            if (strong || (k == KeyName::Weak && weak_ok))
                && entropy(b) >= if strong { 3.0 } else { 3.5 }
            {
                return Some(SensitiveType::ApiKey);
            }
        }
    }
    None
}

fn password_value(b: &[u8]) -> bool {
    let trimmed = b.trim_ascii();
    if trimmed.is_empty() {
        return false;
    }
    for w in ["true", "false", "null", "undefined", "none"] {
        if trimmed.eq_ignore_ascii_case(w.as_bytes()) {
            return false;
        }
    }
    // Already masked by the client (`********`, `•••`).
    let masked = std::str::from_utf8(trimmed)
        .map(|s| s.chars().all(|c| matches!(c, '*' | '•' | '●')))
        .unwrap_or(false);
    !masked
}

/// A PEM private-key header at the start of `b` (RFC 7468 §2 and the OpenSSH / PGP forms).
fn is_pem_private_key(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"-----BEGIN ") else {
        return false;
    };
    let rest = ["RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", "PGP "]
        .iter()
        .find_map(|p| rest.strip_prefix(p.as_bytes()))
        .unwrap_or(rest);
    rest.starts_with(b"PRIVATE KEY-----") || rest.starts_with(b"PRIVATE KEY BLOCK-----")
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// A compact JWS/JWT: `header.payload[.signature]` with a header that decodes to a JSON object
/// with a non-empty `alg` (RFC 7515 §4.1.1).
fn is_jwt(b: &[u8]) -> bool {
    let mut parts = b.split(|&c| c == b'.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return false;
    };
    let sig = parts.next();
    if parts.next().is_some()
        || h.len() > JWT_HEADER_MAX
        || p.is_empty()
        || !h.iter().all(|&c| is_b64url(c))
        || !p.iter().all(|&c| is_b64url(c))
        || !sig.is_none_or(|s| s.iter().all(|&c| is_b64url(c)))
    {
        return false;
    }
    jwt_header_alg(h).is_some()
}

/// The base64url engine for JWT parts: padding and non-canonical trailing bits tolerated
/// (some encoders emit them; the token is still what the server accepts).
pub(crate) const B64URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Deserialize)]
struct AlgOnly<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

/// Whether the encoded JWT header decodes to an object with a non-empty string `alg`.
fn jwt_header_alg(h: &[u8]) -> Option<()> {
    use base64::Engine as _;
    let mut buf = [0u8; JWT_HEADER_MAX];
    let n = B64URL.decode_slice(h, &mut buf).ok()?;
    let hdr: AlgOnly<'_> = serde_json::from_slice(&buf[..n]).ok()?;
    (!hdr.alg.is_empty()).then_some(())
}

#[derive(Clone, Copy)]
enum Alphabet {
    /// `[A-Z0-9]`
    UpperDigit,
    /// `[A-Za-z0-9]`
    Alnum,
    /// `[A-Za-z0-9_]`
    AlnumUnderscore,
    /// `[A-Za-z0-9-]`
    AlnumDash,
    /// `[A-Za-z0-9_-]`
    Base64Url,
    /// `[0-9a-f]`
    LowerHex,
    /// `[0-9a-fA-F]`
    Hex,
}

impl Alphabet {
    fn allows(self, c: u8) -> bool {
        match self {
            Alphabet::UpperDigit => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Alphabet::Alnum => c.is_ascii_alphanumeric(),
            Alphabet::AlnumUnderscore => c.is_ascii_alphanumeric() || c == b'_',
            Alphabet::AlnumDash => c.is_ascii_alphanumeric() || c == b'-',
            Alphabet::Base64Url => is_b64url(c),
            Alphabet::LowerHex => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            Alphabet::Hex => c.is_ascii_hexdigit(),
        }
    }
}

/// A well-known key format: a prefix, then `min..=max` bytes of an alphabet.
struct Family {
    prefix: &'static str,
    min: usize,
    max: usize,
    alphabet: Alphabet,
}

const fn fam(prefix: &'static str, min: usize, max: usize, alphabet: Alphabet) -> Family {
    Family {
        prefix,
        min,
        max,
        alphabet,
    }
}

/// Well-known key formats, from the vendors' documentation of their token formats.
const FAMILIES: &[Family] = &[
    fam("AKIA", 16, 16, Alphabet::UpperDigit),
    fam("ASIA", 16, 16, Alphabet::UpperDigit),
    fam("AIza", 35, 35, Alphabet::Base64Url),
    fam("sk_live_", 10, 247, Alphabet::Alnum),
    fam("sk_test_", 10, 247, Alphabet::Alnum),
    fam("pk_live_", 10, 247, Alphabet::Alnum),
    fam("pk_test_", 10, 247, Alphabet::Alnum),
    fam("rk_live_", 10, 247, Alphabet::Alnum),
    fam("rk_test_", 10, 247, Alphabet::Alnum),
    fam("whsec_", 24, 250, Alphabet::Base64Url),
    fam("ghp_", 30, 251, Alphabet::Alnum),
    fam("gho_", 30, 251, Alphabet::Alnum),
    fam("ghu_", 30, 251, Alphabet::Alnum),
    fam("ghs_", 30, 251, Alphabet::Alnum),
    fam("ghr_", 30, 251, Alphabet::Alnum),
    fam("github_pat_", 40, 244, Alphabet::AlnumUnderscore),
    fam("xoxb-", 10, 250, Alphabet::AlnumDash),
    fam("xoxp-", 10, 250, Alphabet::AlnumDash),
    fam("xoxa-", 10, 250, Alphabet::AlnumDash),
    fam("xoxr-", 10, 250, Alphabet::AlnumDash),
    fam("xoxs-", 10, 250, Alphabet::AlnumDash),
    fam("SK", 32, 32, Alphabet::LowerHex),
    fam("sk-", 20, 250, Alphabet::Base64Url),
    fam("glpat-", 20, 64, Alphabet::Base64Url),
    fam("npm_", 36, 36, Alphabet::Alnum),
    fam("shpat_", 32, 32, Alphabet::Hex),
    fam("shpss_", 32, 32, Alphabet::Hex),
    fam("shpca_", 32, 32, Alphabet::Hex),
    fam("shppa_", 32, 32, Alphabet::Hex),
    fam("hf_", 30, 40, Alphabet::Alnum),
    fam("dop_v1_", 64, 64, Alphabet::LowerHex),
    fam("pypi-", 50, 250, Alphabet::Base64Url),
];

/// The prefix of the well-known key format `b` has, if any.
fn api_key_family(b: &[u8]) -> Option<&'static str> {
    if !matches!(
        b.first(),
        Some(b'A' | b'S' | b's' | b'p' | b'r' | b'w' | b'g' | b'x' | b'n' | b'h' | b'd')
    ) {
        return None;
    }
    if let Some(rest) = b.strip_prefix(b"SG.") {
        // SendGrid: `SG.` + 22-byte id + `.` + 43-byte secret, both base64url.
        let (id, secret) = split_once(rest, b'.')?;
        let ok = (16..=32).contains(&id.len())
            && (30..=64).contains(&secret.len())
            && id.iter().chain(secret).all(|&c| is_b64url(c))
            && mixed(secret);
        return ok.then_some("SG.");
    }
    // Length and first byte rule out most families before any prefix comparison: this runs
    // on every token-shaped value of every exchange.
    let first = b[0];
    FAMILIES.iter().find_map(|f| {
        let p = f.prefix.as_bytes();
        if p[0] != first || b.len() < p.len() + f.min || b.len() > p.len() + f.max {
            return None;
        }
        let rest = b.strip_prefix(p)?;
        let ok = (f.min..=f.max).contains(&rest.len())
            && rest.iter().all(|&c| f.alphabet.allows(c))
            && (matches!(f.alphabet, Alphabet::UpperDigit) || mixed(rest));
        ok.then_some(f.prefix)
    })
}

/// At least two of upper case, lower case and digits: random key material, not a word.
fn mixed(b: &[u8]) -> bool {
    let (mut u, mut l, mut d) = (false, false, false);
    for &c in b {
        u |= c.is_ascii_uppercase();
        l |= c.is_ascii_lowercase();
        d |= c.is_ascii_digit();
    }
    u as u8 + l as u8 + d as u8 >= 2
}

fn split_once(b: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == sep)?;
    Some((&b[..i], &b[i + 1..]))
}

/// Shannon entropy in bits per byte.
fn entropy(b: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in b {
        counts[c as usize] += 1;
    }
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Whether a value has the shape of key material under a credential name (see the module
/// docs): `None` if not, `Some(true)` if it also passes the stricter bar for a plain `key`
/// name. Entropy is checked by the caller.
fn secret_shape(b: &[u8]) -> Option<bool> {
    if b.len() < 16 || b.len() > 4096 {
        return None;
    }
    let (mut up, mut lo, mut dg) = (0usize, 0usize, 0usize);
    let mut plain = true; // only `[A-Za-z0-9_=-]`
    for &c in b {
        match c {
            b'A'..=b'Z' => up += 1,
            b'a'..=b'z' => lo += 1,
            b'0'..=b'9' => dg += 1,
            b'-' | b'_' | b'=' => {}
            b'.' | b'~' | b'+' | b'/' | b':' => plain = false,
            _ => return None,
        }
    }
    let classes = (up > 0) as u8 + (lo > 0) as u8 + (dg > 0) as u8;
    if classes < 2 || up + lo < 4 || contains(b, b"://") {
        return None;
    }
    let weak_ok = plain
        && (20..=512).contains(&b.len())
        && !is_uuid(b)
        && !b.iter().all(|c| c.is_ascii_hexdigit());
    Some(weak_ok)
}

/// Local-part bytes accepted (a practical subset of RFC 5322 `atext`).
fn is_local_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_domain_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
}

/// File extensions that appear after an `@` in asset names (`logo@2x.png`) and are not TLDs.
const NOT_TLDS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "json", "html", "htm", "pdf",
    "txt", "xml", "avif", "bmp", "tif", "tiff", "woff", "woff2", "ttf", "map",
];

fn is_email(b: &[u8]) -> bool {
    if b.len() < 6 || b.len() > 254 {
        return false;
    }
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    if local.is_empty()
        || local.len() > 64
        || !local.iter().all(|&c| is_local_byte(c))
        || local[0] == b'.'
        || local[local.len() - 1] == b'.'
        || contains(local, b"..")
    {
        return false;
    }
    is_domain(domain)
}

fn is_domain(d: &[u8]) -> bool {
    if d.len() < 4 || d.len() > 253 || !d.iter().all(|&c| is_domain_byte(c)) {
        return false;
    }
    let mut labels = 0;
    let mut tld: &[u8] = &[];
    for label in d.split(|&c| c == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            return false;
        }
        labels += 1;
        tld = label;
    }
    if labels < 2 {
        return false;
    }
    let alpha_tld = tld.len() >= 2 && tld.iter().all(|c| c.is_ascii_alphabetic());
    let idna_tld = tld.len() >= 5 && tld[..4].eq_ignore_ascii_case(b"xn--");
    (alpha_tld || idna_tld)
        && !NOT_TLDS
            .iter()
            .any(|x| tld.eq_ignore_ascii_case(x.as_bytes()))
}

/// Digits of a number written for humans (at most 19), and its groups.
struct Digits {
    d: [u8; 19],
    n: usize,
    groups: [u8; 8],
    ng: usize,
}

/// Parses `b` as digits in groups separated by one kind of separator out of `seps`;
/// `None` for anything else or more than 19 digits / 8 groups.
fn grouped_digits(b: &[u8], seps: &[u8]) -> Option<Digits> {
    let mut g = Digits {
        d: [0; 19],
        n: 0,
        groups: [0; 8],
        ng: 0,
    };
    let mut sep = None;
    let mut cur = 0u8;
    for &c in b {
        if c.is_ascii_digit() {
            if g.n == 19 {
                return None;
            }
            g.d[g.n] = c - b'0';
            g.n += 1;
            cur += 1;
        } else if seps.contains(&c) {
            if cur == 0 || sep.is_some_and(|s| s != c) || g.ng == 7 {
                return None;
            }
            sep = Some(c);
            g.groups[g.ng] = cur;
            g.ng += 1;
            cur = 0;
        } else {
            return None;
        }
    }
    if cur == 0 {
        return None;
    }
    g.groups[g.ng] = cur;
    g.ng += 1;
    Some(g)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = x as u32;
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

fn prefix_value(d: &[u8], k: usize) -> u32 {
    d.iter().take(k).fold(0, |a, &x| a * 10 + x as u32)
}

/// Issuer ranges and lengths (ISO/IEC 7812 IIN ranges as published by the networks).
fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p2 = prefix_value(d, 2);
    let p3 = prefix_value(d, 3);
    let p4 = prefix_value(d, 4);
    let p6 = prefix_value(d, 6);
    let long = (16..=19).contains(&n);
    match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&p2) && n == 16,
        2 => (2221..=2720).contains(&p4) && n == 16,
        3 => {
            ((p2 == 34 || p2 == 37) && n == 15)
                || ((3528..=3589).contains(&p4) && long)
                || (((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39))
                    && (14..=19).contains(&n))
        }
        6 => {
            (p4 == 6011
                || p2 == 65
                || (644..=649).contains(&p3)
                || (622126..=622925).contains(&p6)
                || p2 == 62)
                && long
        }
        _ => false,
    }
}

/// All one digit, or each digit one more (or one less) than the previous, modulo 10.
fn degenerate(d: &[u8]) -> bool {
    let same = d.windows(2).all(|w| w[0] == w[1]);
    let up = d.windows(2).all(|w| w[1] == (w[0] + 1) % 10);
    let down = d.windows(2).all(|w| w[0] == (w[1] + 1) % 10);
    same || up || down
}

fn is_card(b: &[u8], name: &mut LazyName<'_>) -> bool {
    let Some(g) = grouped_digits(b, b" -") else {
        return false;
    };
    if !(13..=19).contains(&g.n) {
        return false;
    }
    let groups = &g.groups[..g.ng];
    if g.ng > 1 {
        let fours = groups[..g.ng - 1].iter().all(|&x| x == 4) && groups[g.ng - 1] <= 4;
        let amex_diners = matches!(groups, [4, 6, 5] | [4, 6, 4]);
        if !(fours || amex_diners) {
            return false;
        }
    }
    let d = &g.d[..g.n];
    // The name matters only for a valid bare number (see the module docs); most numbers
    // fail the checks first.
    issuer_ok(d)
        && luhn(d)
        && !degenerate(d)
        && (g.ng > 1 || !name.is(|n| n.is_id_like() && !n.is_card()))
}

/// Numbers the SSA never issued or that were made public.
const SSN_EXCLUDED: &[(u32, u32, u32)] = &[
    (78, 5, 1120),
    (219, 9, 9999),
    (457, 55, 5462),
    (123, 45, 6789),
];

fn is_ssn(b: &[u8], name: &mut LazyName<'_>) -> bool {
    let dashed = b.len() == 11 && b[3] == b'-' && b[6] == b'-';
    let spaced = b.len() == 11 && b[3] == b' ' && b[6] == b' ';
    if !(dashed || spaced || b.len() == 9) {
        return false;
    }
    let mut d = [0u8; 9];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if (dashed || spaced) && (i == 3 || i == 6) {
            continue;
        }
        if !c.is_ascii_digit() {
            return false;
        }
        d[n] = c - b'0';
        n += 1;
    }
    let area = prefix_value(&d, 3);
    let group = prefix_value(&d[3..], 2);
    let serial = prefix_value(&d[5..], 4);
    let valid = area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !SSN_EXCLUDED.contains(&(area, group, serial));
    // Only the dashed form is an SSN by itself; nine digits need an SSN name.
    valid && (dashed || name.is(Name::is_ssn))
}

/// A phone number's digits and how they were grouped.
struct PhoneShape {
    d: [u8; 15],
    n: usize,
    groups: [u8; 8],
    ng: usize,
    paren: bool,
    /// Separator kinds seen, one bit each (space, `-`, `.`, `/`).
    seps: u8,
}

fn sep_bit(c: u8) -> u8 {
    match c {
        b' ' => 1,
        b'-' => 2,
        b'.' => 4,
        _ => 8,
    }
}

/// Digits in groups separated by single ` `, `-`, `.` or `/`, one group optionally in
/// parentheses (`(415) 555-0134`); `None` on anything else.
fn phone_shape(b: &[u8]) -> Option<PhoneShape> {
    let mut s = PhoneShape {
        d: [0; 15],
        n: 0,
        groups: [0; 8],
        ng: 0,
        paren: false,
        seps: 0,
    };
    let mut cur = 0u8;
    let mut in_paren = false;
    let mut after_close = false;
    let mut trailing_sep = false;
    let push = |s: &mut PhoneShape, cur: u8| {
        if s.ng == 8 {
            return false;
        }
        s.groups[s.ng] = cur;
        s.ng += 1;
        true
    };
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if s.n == 15 {
                    return None;
                }
                s.d[s.n] = c - b'0';
                s.n += 1;
                cur += 1;
                after_close = false;
                trailing_sep = false;
            }
            b'(' => {
                if in_paren || s.paren || cur != 0 {
                    return None;
                }
                in_paren = true;
            }
            b')' => {
                if !in_paren || cur == 0 || !push(&mut s, cur) {
                    return None;
                }
                in_paren = false;
                s.paren = true;
                cur = 0;
                after_close = true;
                trailing_sep = false;
            }
            b' ' | b'-' | b'.' | b'/' => {
                if in_paren {
                    return None;
                }
                if cur > 0 {
                    if !push(&mut s, cur) {
                        return None;
                    }
                    cur = 0;
                } else if !after_close {
                    return None; // leading or doubled separator
                }
                after_close = false;
                s.seps |= sep_bit(c);
                trailing_sep = true;
            }
            _ => return None,
        }
    }
    if in_paren || trailing_sep {
        return None;
    }
    if cur > 0 && !push(&mut s, cur) {
        return None;
    }
    Some(s)
}

fn is_phone(b: &[u8], name: &mut LazyName<'_>) -> bool {
    match phone_verdict(b) {
        Phone::Yes => true,
        Phone::IfNamed => name.is(Name::is_phone),
        Phone::No => false,
    }
}

fn is_phone_number(b: &[u8], named: bool) -> bool {
    match phone_verdict(b) {
        Phone::Yes => true,
        Phone::IfNamed => named,
        Phone::No => false,
    }
}

enum Phone {
    Yes,
    /// Only under a phone name (a bare digit run, `/` separators, other layouts).
    IfNamed,
    No,
}

/// Parses once and says whether `b` is a phone number by its format alone or only under a
/// phone name.
fn phone_verdict(b: &[u8]) -> Phone {
    let (plus, body) = match b.strip_prefix(b"+") {
        Some(rest) => (true, rest),
        None => (false, b),
    };
    let Some(s) = phone_shape(body) else {
        return Phone::No;
    };
    let d = &s.d[..s.n];
    if s.n < 7 || degenerate(d) {
        return Phone::No;
    }
    let slash = s.seps & sep_bit(b'/') != 0;
    if plus {
        // E.164: country codes never start with 0.
        return match ((8..=15).contains(&s.n) && d[0] != 0, slash) {
            (true, false) => Phone::Yes,
            (true, true) => Phone::IfNamed,
            (false, _) => Phone::No,
        };
    }
    let g = &s.groups[..s.ng];
    let one_kind = s.seps.count_ones() == 1;
    let nanp = match g {
        [3, 3, 4] => d[0] >= 2 && d[3] >= 2,
        [1, 3, 3, 4] => d[0] == 1 && d[1] >= 2 && d[4] >= 2,
        _ => false,
    };
    // `(415) 555-0134` mixes a space and a dash; without parentheses one kind only.
    let nanp = nanp && (s.paren || one_kind);
    let trunk = d[0] == 0
        && d[1] != 0
        && (10..=11).contains(&s.n)
        && (2..=5).contains(&s.ng)
        && g.iter().all(|&x| x >= 2)
        && (one_kind || s.paren);
    if (nanp || trunk) && !slash {
        Phone::Yes
    } else {
        Phone::IfNamed
    }
}

fn parse_ipv4(b: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return None;
        }
        let mut v = 0u32;
        for &c in p {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as u32;
        }
        *o = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn ipv4_personal(o: [u8; 4]) -> bool {
    o[0] != 0 && o[0] != 127 && o[0] < 224 && !o.iter().all(|&x| x < 10)
}

fn is_ipv6_personal(v: &str) -> bool {
    match v.parse::<std::net::Ipv6Addr>() {
        Ok(a) => !a.is_unspecified() && !a.is_loopback() && !a.is_multicast(),
        Err(_) => false,
    }
}

/// IBAN lengths by country (ISO 13616 registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
    (b"BG", 22), (b"BH", 22), (b"BR", 29), (b"BY", 28), (b"CH", 21), (b"CR", 22), (b"CY", 28),
    (b"CZ", 24), (b"DE", 22), (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24),
    (b"FI", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23), (b"GL", 18),
    (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IQ", 23),
    (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32),
    (b"LI", 21), (b"LT", 20), (b"LU", 20), (b"LV", 21), (b"LY", 25), (b"MC", 27), (b"MD", 24),
    (b"ME", 22), (b"MK", 19), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NL", 18), (b"NO", 15),
    (b"PK", 24), (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22),
    (b"SA", 24), (b"SC", 31), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"ST", 25),
    (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29), (b"VA", 22), (b"VG", 24),
    (b"XK", 20),
];

fn is_iban(b: &[u8]) -> bool {
    if b.len() < 15
        || b.len() > 42
        || !b[0].is_ascii_uppercase()
        || !b[1].is_ascii_uppercase()
        || !b[2].is_ascii_digit()
        || !b[3].is_ascii_digit()
    {
        return false;
    }
    let spaced = b.contains(&b' ');
    let mut compact = [0u8; 34];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if spaced && i % 5 == 4 {
            if c != b' ' {
                return false;
            }
            continue;
        }
        if !(c.is_ascii_uppercase() || c.is_ascii_digit()) || n == compact.len() {
            return false;
        }
        compact[n] = c;
        n += 1;
    }
    let c = &compact[..n];
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(cc, _)| &c[..2] == *cc) else {
        return false;
    };
    let check = prefix_value(&[c[2] - b'0', c[3] - b'0'], 2);
    if n != len as usize || !(2..=98).contains(&check) {
        return false;
    }
    // ISO 7064 MOD 97-10 over BBAN + country + check digits, letters as 10..35.
    let mut r = 0u32;
    for &ch in c[4..].iter().chain(&c[..4]) {
        r = if ch.is_ascii_digit() {
            (r * 10 + (ch - b'0') as u32) % 97
        } else {
            (r * 100 + (ch - b'A' + 10) as u32) % 97
        };
    }
    r == 1
}

// ---------------------------------------------------------------------------------------------
// Free text

/// Spaced numbers (cards, IBANs, phones) span at most this many groups …
const SPACED_MAX_GROUPS: usize = 10;
/// … and bytes.
const SPACED_MAX_BYTES: usize = 48;
/// A `name=value` or `<name>value<` value longer than this is not looked at as a whole.
const PAIR_VALUE_MAX: usize = 1024;
/// How far past a PEM header its `-----END` line is looked for.
const PEM_BLOCK_MAX: usize = 64 * 1024;

/// Bytes that end a token of free text. Non-ASCII bytes are delimiters too, so every token
/// boundary is a character boundary.
fn is_delim(c: u8) -> bool {
    c <= b' '
        || c >= 0x7f
        || matches!(
            c,
            b'"' | b'\''
                | b'`'
                | b'<'
                | b'>'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b','
                | b';'
                | b'|'
                | b'\\'
                | b'^'
                | b'='
                | b'&'
                | b'?'
                | b'!'
                | b'*'
                | b'#'
        )
}

/// Finds sensitive values embedded in free text (non-JSON bodies, log lines, XML): calls
/// `found(type, start, end)` with the byte range of each value, in order, ranges not
/// overlapping and on character boundaries.
///
/// The text is cut into tokens at whitespace, quotes, brackets and punctuation; each token
/// (and each part of it between `/` and `:`, so URLs are looked into) goes through the same
/// matchers as [`classify`] without a name. Besides, numbers written with spaces
/// (`4111 1111 1111 1111`, `DE89 3704 …`, `+44 20 7946 0958`, `(415) 555-0134`) are tried
/// as a whole, e-mail addresses are found around each `@`, PEM blocks are reported from
/// `-----BEGIN` to their `-----END` line, and `name=value` pairs and `<name>value</name>`
/// elements are classified with their name (so `password=…` and `<password>…` count).
///
/// Bounded work: each byte is looked at a constant number of times (spaced numbers are tried
/// over at most [`SPACED_MAX_GROUPS`] groups of at most [`SPACED_MAX_BYTES`] bytes; a pair's
/// value at most [`PAIR_VALUE_MAX`] bytes), so the cost is linear in the text length.
pub fn scan_text(text: &str, found: &mut impl FnMut(SensitiveType, usize, usize)) {
    let b = text.as_bytes();
    let n = b.len();
    let mut st = ScanState::default();
    let mut i = 0;
    while i < n {
        if is_delim(b[i]) {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < n && !is_delim(b[e]) {
            e += 1;
        }
        if b[i] == b'-' {
            if let Some(end) = pem_block(b, i, &mut st) {
                found(SensitiveType::PrivateKey, i, end);
                i = end;
                continue;
            }
        }
        if let Some(end) = spaced_number(text, i, found) {
            i = end;
            continue;
        }
        if i >= st.pairs_from {
            if let Some(end) = pair_value(text, i, e, &mut st, found) {
                i = end;
                continue;
            }
        }
        scan_token(text, i, e, found);
        i = e;
    }
}

/// What [`scan_text`] remembers so that no byte is searched again and again.
#[derive(Default)]
struct ScanState {
    /// Pair values are not looked for before this offset: the bytes up to it were already
    /// scanned as a pair value (which keeps `a(b=a(b=…` from nesting scans).
    pairs_from: usize,
    /// `-----END ` is known to be absent before this offset.
    pem_searched: usize,
}

/// A PEM private key starting at `i`: its end (after the `-----END …-----` line when it is
/// within [`PEM_BLOCK_MAX`], else after the header).
fn pem_block(b: &[u8], i: usize, st: &mut ScanState) -> Option<usize> {
    let head = &b[i..];
    if !is_pem_private_key(&head[..head.len().min(64)]) {
        return None;
    }
    // The header line ends at the `-----` after `BEGIN `.
    let after_begin = i + 11;
    let head_end = find(&b[after_begin..], b"-----").map(|p| after_begin + p + 5)?;
    let from = head_end.max(st.pem_searched);
    let limit = (head_end + PEM_BLOCK_MAX).min(b.len());
    let Some(p) = b.get(from..limit).and_then(|w| find(w, b"-----END ")) else {
        // Searched up to `limit`; a match straddling it starts at most 8 bytes before.
        st.pem_searched = st.pem_searched.max(limit.saturating_sub(8));
        return Some(head_end);
    };
    let end_start = from + p + 9;
    let limit = (end_start + 64).min(b.len());
    Some(
        find(&b[end_start..limit], b"-----")
            .map(|q| end_start + q + 5)
            .unwrap_or(end_start),
    )
}

/// First position of `needle` in `hay`; linear for the short needles used here.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_group_byte(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, b'(' | b')' | b'+' | b'-' | b'.')
}

/// One space-separated group of a candidate number.
#[derive(Clone, Copy)]
struct Group {
    /// End of the group without trailing `.`/`-`.
    end: usize,
    len: usize,
    digits: usize,
    /// Only digits.
    numeric: bool,
    /// Only upper-case letters and digits.
    alnum: bool,
}

/// Reads a group of at most 10 bytes at `*p` (not past `limit`); `None` when empty or longer.
fn read_group(b: &[u8], p: &mut usize, limit: usize) -> Option<Group> {
    let gs = *p;
    let mut g = Group {
        end: gs,
        len: 0,
        digits: 0,
        numeric: true,
        alnum: true,
    };
    while *p < limit && is_group_byte(b[*p]) && *p - gs < 10 {
        *p += 1;
    }
    if *p == gs || (*p < b.len() && is_group_byte(b[*p])) {
        return None; // empty, or longer than a group of a number written for humans
    }
    // Trailing `.`/`-` ends a sentence or a range, not the number.
    let mut end = *p;
    while end > gs && matches!(b[end - 1], b'.' | b'-') {
        end -= 1;
    }
    for &c in &b[gs..end] {
        g.digits += c.is_ascii_digit() as usize;
        g.numeric &= c.is_ascii_digit();
        g.alnum &= c.is_ascii_digit() || c.is_ascii_uppercase();
    }
    g.len = end - gs;
    g.end = end;
    (g.len > 0).then_some(g)
}

/// Numbers written with spaces between groups, from token start `i` (or the `(` before it).
///
/// Each layout a card, an IBAN or a phone number can have (`4-4-4-4`, `4-6-5`, IBAN groups of
/// four, `+CC …`, `(AAA) …`, `AAA NNN NNNN`, `1 AAA NNN NNNN`, trunk `0…`) is followed group
/// by group; reading stops when none can still match, and only the group counts where one
/// does are classified. A start thus reads at most [`SPACED_MAX_BYTES`] and usually stops at
/// its first group.
fn spaced_number(
    text: &str,
    i: usize,
    found: &mut impl FnMut(SensitiveType, usize, usize),
) -> Option<usize> {
    let b = text.as_bytes();
    let c = b[i];
    let iban_start = b.len() >= i + 4
        && b[i].is_ascii_uppercase()
        && b[i + 1].is_ascii_uppercase()
        && b[i + 2].is_ascii_digit()
        && b[i + 3].is_ascii_digit();
    let s = if i > 0 && b[i - 1] == b'(' && c.is_ascii_digit() {
        i - 1
    } else if c.is_ascii_digit() || c == b'+' || iban_start {
        i
    } else {
        return None;
    };
    let limit = (s + SPACED_MAX_BYTES).min(b.len());
    let mut p = s;
    let g0 = read_group(b, &mut p, limit)?;
    if g0.end < p {
        return None; // a single group is a token: scan_token sees it
    }
    let d0 = b[s];
    let mut card = g0.numeric && g0.len == 4 && (b'2'..=b'6').contains(&d0);
    let mut card46 = card;
    let iban_len = if iban_start && g0.len == 4 {
        IBAN_LENGTHS
            .iter()
            .find(|(cc, _)| &b[i..i + 2] == *cc)
            .map(|&(_, len)| len as usize)
    } else {
        None
    };
    let mut iban = iban_len.is_some();
    let mut plus = d0 == b'+';
    let mut paren = d0 == b'(';
    let mut nanp3 = g0.numeric && g0.len == 3 && d0 >= b'2';
    let mut nanp1 = g0.numeric && g0.len == 1 && d0 == b'1';
    let mut trunk = g0.numeric && (2..=5).contains(&g0.len) && d0 == b'0';
    let (mut digits, mut chars, mut prev_len) = (g0.digits, g0.len, g0.len);
    let mut ends = [0usize; SPACED_MAX_GROUPS];
    let mut nends = 0;
    let mut k = 1;
    while card || card46 || iban || plus || paren || nanp3 || nanp1 || trunk {
        if k == SPACED_MAX_GROUPS || p + 1 >= limit || b[p] != b' ' || !is_group_byte(b[p + 1]) {
            break;
        }
        let mut q = p + 1;
        let Some(g) = read_group(b, &mut q, limit) else {
            break;
        };
        p = q;
        k += 1;
        digits += g.digits;
        chars += g.len;
        card &= g.numeric && prev_len == 4 && digits <= 19;
        card46 &= g.numeric && k <= 3 && (k != 2 || g.len == 6);
        iban &= g.alnum && prev_len == 4 && iban_len.is_some_and(|l| chars <= l);
        plus &= digits <= 15 && k <= 6;
        paren &= k <= 3 && digits <= 11;
        nanp3 &= g.numeric && k <= 3 && g.len == [3, 3, 4][k - 1];
        nanp1 &= g.numeric && k <= 4 && g.len == [1, 3, 3, 4][k - 1];
        trunk &= g.numeric && g.len >= 2 && k <= 5 && digits <= 11;
        let plausible = (card && g.len <= 4 && digits >= 13)
            || (card46 && k == 3 && matches!(g.len, 4 | 5))
            || (iban && iban_len == Some(chars) && g.len <= 4)
            || (plus && digits >= 8)
            || ((paren || trunk) && digits >= 10)
            || (nanp3 && k == 3)
            || (nanp1 && k == 4);
        if plausible {
            ends[nends] = g.end;
            nends += 1;
        }
        prev_len = g.len;
        if g.end < p {
            break; // the group ended a sentence
        }
    }
    for &end in ends[..nends].iter().rev() {
        // Every byte in s..end is ASCII, so the slice is on character boundaries.
        let t = classify(None, &text[s..end]);
        if let Some(t @ (SensitiveType::CreditCard | SensitiveType::Iban | SensitiveType::Phone)) =
            t
        {
            found(t, s, end);
            return Some(end);
        }
    }
    None
}

/// `name=value` (the token is followed by `=`) and `<name>value<` (the token is an element
/// name): classifies the value with its name; its end on a hit.
fn pair_value(
    text: &str,
    i: usize,
    e: usize,
    st: &mut ScanState,
    found: &mut impl FnMut(SensitiveType, usize, usize),
) -> Option<usize> {
    let b = text.as_bytes();
    let next = *b.get(e)?;
    let xml = next == b'>' && i > 0 && b[i - 1] == b'<';
    if !(next == b'=' || xml) || e - i > NAME_MAX {
        return None;
    }
    let mut name = &text[i..e];
    if xml {
        // Drop a namespace prefix (`<ns:password>`).
        name = name.rsplit(':').next().unwrap_or(name);
    }
    let vs = e + 1;
    let limit = (vs + PAIR_VALUE_MAX).min(b.len());
    let mut ve = vs;
    while ve < limit && !pair_value_end(b[ve], xml) {
        ve += 1;
    }
    st.pairs_from = ve;
    if ve == limit && limit < b.len() {
        return None; // longer than a pair value is looked at
    }
    let (mut s, mut t) = (vs, ve);
    while s < t && b[s].is_ascii_whitespace() {
        s += 1;
    }
    while t > s && b[t - 1].is_ascii_whitespace() {
        t -= 1;
    }
    // `s` and `t` sit next to ASCII bytes (or at the text's ends): character boundaries.
    let v = text.get(s..t)?;
    let ty = classify(Some(name), v)?;
    found(ty, s, t);
    Some(ve)
}

fn pair_value_end(c: u8, xml: bool) -> bool {
    if xml {
        c == b'<'
    } else {
        c.is_ascii_whitespace() || matches!(c, b'&' | b';' | b'"' | b'\'' | b'<' | b'>' | b',')
    }
}

fn is_trim_byte(c: u8) -> bool {
    matches!(
        c,
        b'.' | b':' | b'/' | b'-' | b'+' | b'%' | b'@' | b'_' | b'~' | b'$'
    )
}

fn trim_range(b: &[u8], mut s: usize, mut e: usize, lead: bool) -> (usize, usize) {
    while e > s
        && matches!(
            b[e - 1],
            b'.' | b':' | b'/' | b'-' | b'_' | b'~' | b'$' | b'%'
        )
    {
        e -= 1;
    }
    if lead {
        while s < e && is_trim_byte(b[s]) && b[s] != b'+' {
            s += 1;
        }
    }
    (s, e)
}

/// One token of free text (`i..e`, no delimiter inside).
fn scan_token(text: &str, i: usize, e: usize, found: &mut impl FnMut(SensitiveType, usize, usize)) {
    let b = text.as_bytes();
    let tok = &b[i..e];
    if tok.contains(&b'@') {
        emails(text, i, e, found);
        return;
    }
    let (s, t) = trim_range(b, i, e, true);
    if t - s >= 6 {
        if let Some(ty) = classify(None, &text[s..t]) {
            found(ty, s, t);
            return;
        }
    }
    if !tok.iter().any(|&c| c == b'/' || c == b':') {
        return;
    }
    // Look into URLs and `scheme:value` forms part by part.
    let mut ps = i;
    for p in i..=e {
        if p == e || b[p] == b'/' || b[p] == b':' {
            let (s, t) = trim_range(b, ps, p, true);
            if t - s >= 6 {
                if let Some(ty) = classify(None, &text[s..t]) {
                    found(ty, s, t);
                }
            }
            ps = p + 1;
        }
    }
}

/// E-mail addresses around each `@` of token `i..e`.
fn emails(text: &str, i: usize, e: usize, found: &mut impl FnMut(SensitiveType, usize, usize)) {
    let b = text.as_bytes();
    let mut from = i;
    let mut p = i;
    while p < e {
        if b[p] != b'@' {
            p += 1;
            continue;
        }
        let mut s = p;
        while s > from && p - s < 64 && is_local_byte(b[s - 1]) && b[s - 1] != b'\'' {
            s -= 1;
        }
        while s < p && b[s] == b'.' {
            s += 1;
        }
        let mut t = p + 1;
        while t < e && t - p <= 253 && is_domain_byte(b[t]) {
            t += 1;
        }
        while t > p + 1 && matches!(b[t - 1], b'.' | b'-') {
            t -= 1;
        }
        if s < p && is_email(&b[s..t]) {
            found(SensitiveType::Email, s, t);
            from = t;
            p = t;
        } else {
            p += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redaction

/// The mask of an unparseable or fully secret value.
const STARS: &str = "***";

/// Masks a value of type `t`, keeping only what identifies its shape (see the module docs):
/// never more than 4 trailing characters of the secret, never the whole value.
pub fn mask(t: SensitiveType, value: &str) -> String {
    let v = value.trim();
    match t {
        SensitiveType::CreditCard => {
            let d: Vec<u8> = v.bytes().filter(u8::is_ascii_digit).take(19).collect();
            if d.len() < 12 {
                return STARS.into();
            }
            let mut s = String::with_capacity(d.len());
            for (i, &c) in d.iter().enumerate() {
                s.push(if i < 4 || i >= d.len() - 4 {
                    c as char
                } else {
                    '*'
                });
            }
            s
        }
        SensitiveType::Email => match v.rsplit_once('@') {
            Some((local, domain)) if !domain.is_empty() => {
                let mut s = String::with_capacity(domain.len() + 5);
                let mut chars = local.chars();
                // A one-character local part would be revealed whole.
                if let (Some(c), true) = (chars.next(), local.chars().count() > 1) {
                    s.push(c);
                }
                s.push_str("***@");
                s.push_str(domain);
                s
            }
            _ => STARS.into(),
        },
        SensitiveType::Phone => {
            let digits = v.bytes().filter(u8::is_ascii_digit).count();
            if digits < 7 {
                return STARS.into();
            }
            let mut seen = 0;
            v.chars()
                .filter(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
                .map(|c| {
                    if c.is_ascii_digit() {
                        seen += 1;
                        if seen > digits - 4 {
                            return c;
                        }
                        return '*';
                    }
                    c
                })
                .collect()
        }
        SensitiveType::Ssn => {
            let d: Vec<u8> = v.bytes().filter(u8::is_ascii_digit).collect();
            if d.len() != 9 {
                return STARS.into();
            }
            let last: String = d[5..].iter().map(|&c| c as char).collect();
            format!("***-**-{last}")
        }
        SensitiveType::Iban => {
            let c: Vec<u8> = v
                .bytes()
                .filter(u8::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .take(34)
                .collect();
            if c.len() < 12 {
                return STARS.into();
            }
            c.iter()
                .enumerate()
                .map(|(i, &x)| {
                    if i < 4 || i >= c.len() - 4 {
                        x as char
                    } else {
                        '*'
                    }
                })
                .collect()
        }
        SensitiveType::Jwt => match v.split_once('.') {
            Some((h, _))
                if h.starts_with("eyJ")
                    && h.len() <= JWT_HEADER_MAX
                    && h.bytes().all(is_b64url) =>
            {
                format!("{h}.{STARS}")
            }
            _ => STARS.into(),
        },
        SensitiveType::ApiKey => {
            let prefix = api_key_family(v.as_bytes()).unwrap_or_else(|| generic_prefix(v));
            format!("{prefix}{STARS}")
        }
        SensitiveType::Password | SensitiveType::PrivateKey => STARS.into(),
        SensitiveType::IpAddress => {
            if let Some(o) = parse_ipv4(v.as_bytes()) {
                format!("{}.*.*.*", o[0])
            } else if v.parse::<std::net::Ipv6Addr>().is_ok() {
                match v.split(':').next() {
                    Some(g) if !g.is_empty() => format!("{g}:{STARS}"),
                    _ => format!(":{STARS}"),
                }
            } else {
                STARS.into()
            }
        }
    }
}

/// A vendor-style type prefix (`ak_live_`, `tok_`, `whk_`): lower-case letters and `_`/`-`,
/// ending in `_` or `-`, at most 12 bytes, with at least 16 bytes after it. It names the kind
/// of key, not the key.
fn generic_prefix(v: &str) -> &str {
    let b = v.as_bytes();
    let mut end = 0;
    for (i, &c) in b.iter().enumerate().take(12) {
        match c {
            b'a'..=b'z' => {}
            b'_' | b'-' if i > 0 => end = i + 1,
            _ => break,
        }
    }
    if end > 0 && b.len() >= end + 16 {
        &v[..end]
    } else {
        ""
    }
}

/// Salted hash: `sha256:` + the first 16 hex digits of SHA-256(salt ‖ value). The same value
/// and salt give the same output, so values can be correlated without being revealed.
pub fn hash(salt: &[u8], value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(value.as_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(7 + 16);
    s.push_str("sha256:");
    for byte in &d[..8] {
        use std::fmt::Write as _;
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// The value as it may leave the sensor under `mode`.
pub fn redact<'a>(mode: RedactMode, salt: &[u8], t: SensitiveType, value: &'a str) -> Cow<'a, str> {
    match mode {
        RedactMode::Mask => Cow::Owned(mask(t, value)),
        RedactMode::Hash => Cow::Owned(hash(salt, value)),
        RedactMode::Off => Cow::Borrowed(value),
    }
}

/// The normalised form of a name (lower-case letters and digits, at most 64 bytes), for the
/// name tables of [`crate::infer::auth`].
pub(crate) fn normalise_name(name: &str, buf: &mut [u8; NAME_MAX]) -> usize {
    let mut n = 0;
    for c in name.bytes().filter(u8::is_ascii_alphanumeric) {
        if n == NAME_MAX {
            break;
        }
        buf[n] = c.to_ascii_lowercase();
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: Option<&str>, v: &str) -> Option<SensitiveType> {
        classify(name, v)
    }
    use SensitiveType::*;

    /// Independent Luhn for generating test data (doubling from the right, as in the
    /// ISO/IEC 7812 annex): the check digit that makes `body` + digit valid.
    fn luhn_digit(body: &str) -> char {
        let mut sum = 0;
        for (i, ch) in body.chars().rev().enumerate() {
            let mut d = ch.to_digit(10).unwrap();
            if i % 2 == 0 {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
        }
        char::from_digit((10 - sum % 10) % 10, 10).unwrap()
    }

    fn with_luhn(body: &str) -> String {
        format!("{body}{}", luhn_digit(body))
    }

    /// A small deterministic generator (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn digits(&mut self, n: usize) -> String {
            (0..n)
                .map(|_| char::from(b'0' + (self.next() % 10) as u8))
                .collect()
        }
    }

    #[test]
    fn type_and_location_names() {
        assert_eq!(CreditCard.as_str(), "credit_card");
        assert_eq!(serde_json::to_string(&IpAddress).unwrap(), "\"ip_address\"");
        for t in SensitiveType::ALL {
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&Location::ResponseHeader).unwrap(),
            "\"response.header\""
        );
        assert_eq!(Location::RequestCookie.as_str(), "request.cookie");
        let l: Location = serde_json::from_str("\"request.body\"").unwrap();
        assert_eq!(l, Location::RequestBody);
        assert_eq!(
            serde_json::to_string(&RedactMode::Hash).unwrap(),
            "\"hash\""
        );
        assert_eq!(RedactMode::default(), RedactMode::Mask);
    }

    #[test]
    fn names_normalise() {
        let n = Name::new("newPassword");
        assert!(n.is_password());
        assert!(Name::new("NEW-PASSWORD").is_password());
        assert!(Name::new("new_password").is_password());
        assert!(Name::new("pwd").is_password());
        assert!(Name::new("user.pass").is_password());
        assert!(!Name::new("passport").is_password());
        assert!(!Name::new("bypass").is_password());
        assert!(!Name::new("password_hint").is_password());
        assert!(!Name::new("passwordChangedAt").is_password());
        assert!(!Name::new("has_password").is_password());
        let k = Name::new("X-API-Key");
        assert_eq!(k.key(), KeyName::Strong);
        assert_eq!(Name::new("APIKey").key(), KeyName::Strong);
        assert_eq!(Name::new("apikey").key(), KeyName::Strong);
        assert_eq!(Name::new("client_secret").key(), KeyName::Strong);
        assert_eq!(Name::new("access_token").key(), KeyName::Strong);
        assert_eq!(Name::new("key").key(), KeyName::Weak);
        assert_eq!(Name::new("monkey").key(), KeyName::No);
        assert_eq!(Name::new("nextPageToken").key(), KeyName::No);
        assert_eq!(Name::new("csrftoken").key(), KeyName::No);
        assert_eq!(Name::new("Idempotency-Key").key(), KeyName::No);
        assert_eq!(Name::new("Sec-WebSocket-Key").key(), KeyName::No);
        assert_eq!(Name::new("public_key").key(), KeyName::No);
        assert_eq!(Name::new("token_type").key(), KeyName::No);
        assert_eq!(Name::new("secretary").key(), KeyName::No);
        assert!(Name::new("orderId").is_id_like());
        assert!(Name::new("order_id").is_id_like());
        assert!(Name::new("trace").is_id_like());
        assert!(!Name::new("value").is_id_like());
        assert!(Name::new("mobileNumber").is_phone());
        assert!(Name::new("msisdn").is_phone());
        assert!(!Name::new("customer_number").is_phone());
        // A very long name is judged on its start and does not overflow.
        let long = "a".repeat(500) + "Password";
        assert!(!Name::new(&long).is_password());
        let many = "a_".repeat(100);
        assert_eq!(Name::new(&many).nwords, NAME_WORDS);
    }

    #[test]
    fn cards_true() {
        for v in [
            "4111111111111111",
            "4242424242424242",
            "5555555555554444",
            "5105105105105100",
            "378282246310005",
            "371449635398431",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "36227206271667",
            "6200000000000005",
            "2223003122003222",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
            "3056 930902 5904",
            "4222222222222",
        ] {
            assert_eq!(c(None, v), Some(CreditCard), "{v}");
            assert_eq!(c(Some("card_number"), v), Some(CreditCard), "{v}");
        }
        // The name rule: a card name overrides an id-ish word.
        assert_eq!(c(Some("card_id"), "4111111111111111"), Some(CreditCard));
        assert_eq!(c(Some("pan"), "4111111111111111"), Some(CreditCard));
        assert_eq!(c(Some("number"), "4111111111111111"), Some(CreditCard));
        // Grouped digits are written for humans: a card under any name.
        assert_eq!(c(Some("order_id"), "4111 1111 1111 1111"), Some(CreditCard));
    }

    #[test]
    fn cards_false() {
        for v in [
            "4111111111111112",     // Luhn fails
            "1234567812345670",     // Luhn-valid, no issuer 1
            "7111111111111114",     // Luhn-valid, no issuer 7
            "9999999999999995",     // Luhn-valid, no issuer 9
            "0000000000000000",     // all same
            "4567890123456789012",  // Luhn-valid 19-digit Visa, but sequential
            "41111111111111113",    // Luhn-valid Visa with 17 digits
            "37828224631003",       // Luhn-valid Amex prefix with 14 digits
            "4111 1111 1111 111 1", // inconsistent groups
            "4111-1111 1111-1111",  // mixed separators
            "4111--1111-1111-1111",
            "411111111111",         // 12 digits
            "41111111111111111111", // 20 digits
        ] {
            assert_ne!(c(None, v), Some(CreditCard), "{v}");
        }
        // Under an identifier or time name a bare Luhn-valid number is not a card.
        for name in [
            "id",
            "order_id",
            "orderId",
            "timestamp",
            "trace",
            "invoice",
            "imei",
        ] {
            assert_eq!(c(Some(name), "4111111111111111"), None, "{name}");
        }
        // UUIDs, hex digests, timestamps.
        for v in [
            "550e8400-e29b-41d4-a716-446655440000",
            "d41d8cd98f00b204e9800998ecf8427e",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "1700000000000",
            "1700000000000000",
            "1700000000000000000",
            "2024-01-15T10:30:00Z",
        ] {
            assert_eq!(c(None, v), None, "{v}");
            assert_eq!(c(Some("id"), v), None, "{v}");
        }
    }

    #[test]
    fn cards_random() {
        let mut rng = Rng(7);
        let mut luhn_ok = 0;
        for _ in 0..2000 {
            let body = format!("{}{}", 1 + rng.next() % 9, rng.digits(14));
            let valid = with_luhn(&body);
            // Make it fail Luhn by changing the check digit.
            let last = valid.as_bytes()[15] - b'0';
            let bad = format!("{body}{}", (last + 1 + (rng.next() % 9) as u8) % 10);
            assert_ne!(bad, valid);
            assert_eq!(c(None, &bad), None, "{bad}");
            assert_eq!(c(Some("value"), &bad), None, "{bad}");
            let issuer = matches!(body.as_bytes()[0], b'4')
                || (body.as_bytes()[0] == b'5' && (b'1'..=b'5').contains(&body.as_bytes()[1]))
                || matches!(&body[..2], "34" | "37" | "36" | "38" | "39" | "62" | "65")
                || (body.starts_with('2')
                    && (2221..=2720).contains(&body[..4].parse::<u32>().unwrap()))
                || (body.starts_with("35")
                    && (3528..=3589).contains(&body[..4].parse::<u32>().unwrap()))
                || (body.starts_with('3')
                    && (300..=305).contains(&body[..3].parse::<u32>().unwrap()))
                || body.starts_with("3095")
                || body.starts_with("6011")
                || (body.starts_with("64") && body.as_bytes()[2] >= b'4');
            // Amex is 15 digits, so 34/37 at 16 digits is not a card.
            let issuer = issuer && !matches!(&body[..2], "34" | "37");
            let got = c(None, &valid);
            if issuer {
                luhn_ok += 1;
                assert_eq!(got, Some(CreditCard), "{valid}");
                assert_eq!(c(Some("order_id"), &valid), None, "{valid}");
            } else {
                assert_ne!(got, Some(CreditCard), "{valid}");
            }
        }
        assert!(luhn_ok > 300, "{luhn_ok}");
    }

    #[test]
    fn ssn_cases() {
        for v in [
            "219-09-9998",
            "078-05-1121",
            "001-01-0001",
            "899-99-9999",
            "665-12-3456",
        ] {
            assert_eq!(c(None, v), Some(Ssn), "{v}");
        }
        assert_eq!(c(Some("ssn"), "219099998"), Some(Ssn));
        assert_eq!(c(Some("customerSSN"), "219 09 9998"), Some(Ssn));
        assert_eq!(c(Some("social_security_number"), "219099998"), Some(Ssn));
        for v in [
            "000-12-3456", // area 000
            "666-12-3456", // area 666
            "900-12-3456", // ITIN range
            "999-12-3456",
            "123-00-4567", // group 00
            "123-45-0000", // serial 0000
            "078-05-1120", // Woolworth wallet card
            "123-45-6789", // placeholder
            "219-09-9999", // SSA advertisement
            "12-345-6789",
            "123-456-789",
        ] {
            assert_ne!(c(None, v), Some(Ssn), "{v}");
            assert_ne!(c(Some("ssn"), v), Some(Ssn), "{v}");
        }
        // Nine bare digits without an SSN name are not an SSN (nor anything else).
        assert_eq!(c(None, "219099998"), None);
        assert_eq!(c(Some("zip"), "219099998"), None);
    }

    #[test]
    fn phone_cases() {
        for v in [
            "+14155550134",
            "+447700900123",
            "+44 20 7946 0958",
            "+1 (415) 555-0134",
            "+1-415-555-0134",
            "+33 1 23 45 67 89",
            "(415) 555-0134",
            "(415)555-0134",
            "415-555-0134",
            "415.555.0134",
            "415 555 0134",
            "1-415-555-0134",
            "020 7946 0958",
            "06 12 34 56 78",
            "(020) 7946 0958",
        ] {
            assert_eq!(c(None, v), Some(Phone), "{v}");
        }
        for (n, v) in [
            ("phone", "4155550134"),
            ("mobile", "07700900123"),
            ("phoneNumber", "4155550134"),
            ("msisdn", "447700900123"),
            ("tel", "030/1234567"),
            ("contact_phone", "tel:+14155550134"),
            ("fax", "0201234567"),
        ] {
            assert_eq!(c(Some(n), v), Some(Phone), "{n}={v}");
        }
        for (n, v) in [
            (None, "4155550134"), // bare digits, no name
            (Some("customer_number"), "4155550134"),
            (Some("order_id"), "4155550134"),
            (Some("id"), "2000000123"),
            (Some("created"), "1700000000"),
            (None, "1700000000123"),
            (None, "2024-01-15"),
            (None, "15.01.2024"),
            (None, "1 234 567"),
            (None, "12 345 678 901"),
            (None, "115-555-0134"),  // area code cannot start with 1
            (None, "415-155-0134"),  // nor the exchange
            (None, "415-555-0134-"), // trailing separator
            (None, "415--555-0134"),
            (None, "415-555 0134"), // mixed separators without parentheses
            (None, "+0123456789"),  // country codes do not start with 0
            (None, "+1234567"),     // 7 digits
            (None, "+1234567890123456"),
            (None, "978-3-16-148410-0"), // ISBN
            (None, "94105-1234"),        // ZIP+4
            (Some("phone"), "123"),
            (Some("phone"), "0000000000"),
            (Some("phone"), "1234567890"),
        ] {
            assert_ne!(c(n, v), Some(Phone), "{n:?}={v}");
        }
    }

    #[test]
    fn email_cases() {
        for v in [
            "john.doe@example.com",
            "j@example.co.uk",
            "first+tag@sub.example.org",
            "o'brien@example.ie",
            "USER_1@EXAMPLE.COM",
            "a@xn--p1ai.xn--p1ai",
        ] {
            assert_eq!(c(None, v), Some(Email), "{v}");
        }
        for v in [
            "a@b",
            "user@localhost",
            "user@example",
            "user@example.c",
            "user@example.123",
            "logo@2x.png",
            "icon@3x.webp",
            "pkg@1.2.3",
            ".john@example.com",
            "john.@example.com",
            "jo..hn@example.com",
            "john@-example.com",
            "john@example-.com",
            "john@@example.com",
            "john@exa mple.com",
            "@example.com",
            "john@.example.com",
            "john@example..com",
        ] {
            assert_ne!(c(None, v), Some(Email), "{v}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(c(None, &long_local), None);
        let long_label = format!("a@{}.com", "b".repeat(64));
        assert_eq!(c(None, &long_label), None);
    }

    /// IBANs from the ISO 13616 registry examples; each check verified independently with
    /// Python's `int(rearranged) % 97`.
    const IBANS: &[&str] = &[
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "IT60X0542811101000000123456",
        "NO9386011117947",
        "ES9121000418450200051332",
        "AT611904300234573201",
    ];

    #[test]
    fn iban_cases() {
        for v in IBANS {
            assert_eq!(c(None, v), Some(Iban), "{v}");
        }
        assert_eq!(c(None, "DE89 3704 0044 0532 0130 00"), Some(Iban));
        assert_eq!(c(None, "GB82 WEST 1234 5698 7654 32"), Some(Iban));
        for v in [
            "DE88370400440532013000",       // wrong check digits
            "DE89370400440532013001",       // altered BBAN
            "DE8937040044053201300",        // DE is 22 long
            "DE893704004405320130000",      // too long
            "XX89370400440532013000",       // no such country
            "de89370400440532013000",       // lower case
            "DE89 3704 0044 0532 013000",   // bad grouping
            "DE89  3704 0044 0532 0130 00", // double space
            "GB82WEST1234569876543!",
            "DE00370400440532013000", // check digits 00 are never issued
        ] {
            assert_ne!(c(None, v), Some(Iban), "{v}");
        }
        // Random BBANs with the right lengths: about 1 in 97 pass mod-97; none with a
        // check digit that does not match.
        let mut rng = Rng(3);
        for _ in 0..500 {
            let bban = rng.digits(18);
            let iban = format!("DE{:02}{bban}", 2 + rng.next() % 97);
            let want = {
                // Independent mod-97 via u128 over the rearranged digits ("DE" = 13 14).
                let s = format!("{bban}1314{}", &iban[2..4]);
                let m = s.as_bytes().chunks(18).fold(0u128, |acc, ch| {
                    let part: u128 = std::str::from_utf8(ch).unwrap().parse().unwrap();
                    (acc * 10u128.pow(ch.len() as u32) + part) % 97
                });
                m == 1
            };
            assert_eq!(c(None, &iban) == Some(Iban), want, "{iban}");
        }
    }

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn jwt_cases() {
        let h = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
        let p = b64(r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#);
        let tok = format!("{h}.{p}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
        assert_eq!(c(None, &tok), Some(Jwt));
        assert_eq!(c(Some("authorization"), &tok), Some(Jwt));
        let none = format!("{}.{p}.", b64(r#"{"alg":"none"}"#));
        assert_eq!(c(None, &none), Some(Jwt));
        let two = format!("{}.{p}", b64(r#"{"alg":"none"}"#));
        assert_eq!(c(None, &two), Some(Jwt));
        for v in [
            "eyJhbGciOiJIUzI1NiJ9".to_string(),               // one part
            format!("{h}.{p}.sig.extra"),                     // four parts
            format!("{}.{p}.sig", b64(r#"{"typ":"JWT"}"#)),   // no alg
            format!("{}.{p}.sig", b64(r#"{"alg":""}"#)),      // empty alg
            format!("{}.{p}.sig", b64(r#"{"alg":256}"#)),     // alg not a string
            format!("{}.{p}.sig", b64(r#"["alg"]"#)),         // not an object
            format!("{}.{p}.sig", b64("{\"alg\":\"HS256\"")), // truncated JSON
            format!("{h}..sig"),                              // empty payload
            format!("{h}.{p}.si+g"),                          // not base64url
            "eyJ!!!.eyJ.x".to_string(),
            format!("eyJ{}.{p}.x", "A".repeat(3000)),
        ] {
            assert_ne!(c(None, &v), Some(Jwt), "{v}");
        }
    }

    #[test]
    fn pem_cases() {
        for h in [
            "-----BEGIN PRIVATE KEY-----\nMIIEv…",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
            "-----BEGIN EC PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        ] {
            assert_eq!(c(None, h), Some(PrivateKey), "{h}");
            assert_eq!(c(Some("cert"), h), Some(PrivateKey), "{h}");
        }
        // Long PEM values are still keys.
        let long = format!("-----BEGIN PRIVATE KEY-----\n{}", "A".repeat(20_000));
        assert_eq!(c(None, &long), Some(PrivateKey));
        for h in [
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN RSA PUBLIC KEY-----",
            "-----BEGIN FOO PRIVATE KEY-----",
        ] {
            assert_eq!(c(None, h), None, "{h}");
        }
    }

    #[test]
    fn api_key_formats() {
        for v in [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "pk_test_TYooMQauvdEDq54NiTphI7jx",
            "rk_live_51H8aBcDeFgHiJkLmNoPqRs",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxp-1234567890-1234567890-1234567890-abcdef0123456789",
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
            "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",
            "SK2a0747eba6abf96b7e3c3ff0b4530f6e",
            "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
            "glpat-xxxxXXXX1111yyyyZZZZ",
            "npm_abcdefghijklmnopqrstuvwxyz0123456789",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        ] {
            assert!(api_key_family(v.as_bytes()).is_some(), "{v}");
            assert_eq!(c(None, v), Some(ApiKey), "{v}");
            assert_eq!(c(Some("anything"), v), Some(ApiKey), "{v}");
        }
        for v in [
            "sk_test_abc",                           // too short
            "AKIAIOSFODNN7EXAMPL",                   // 15 after the prefix
            "AKIAiosfodnn7example",                  // lower case
            "ghp_short",                             // too short
            "sk-some-long-product-name-slug",        // a slug: one character class
            "xoxb-",                                 // nothing after the prefix
            "SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",    // not random
            "SG.abc.def",                            // too short
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGew", // 33 after the prefix
            "skeleton_key_holder_1",
        ] {
            assert_ne!(c(None, v), Some(ApiKey), "{v}");
        }
    }

    #[test]
    fn api_key_by_name() {
        let hexkey = "ak_live_9f86d081884c7d659a2feaa0c55ad015";
        for n in [
            "api_key",
            "apiKey",
            "x-api-key",
            "X-Api-Key",
            "access_token",
            "token",
            "client_secret",
            "secret",
            "auth",
            "x-auth-token",
            "Ocp-Apim-Subscription-Key",
            "authorization",
        ] {
            assert_eq!(c(Some(n), hexkey), Some(ApiKey), "{n}");
            assert_eq!(
                c(Some(n), "550e8400-e29b-41d4-a716-446655440000"),
                Some(ApiKey),
                "{n}: a UUID under a credential name"
            );
            assert_eq!(c(Some(n), "AbCdEf0123456789GhIjKl"), Some(ApiKey), "{n}");
        }
        // `key` alone: random alphanumerics yes; UUIDs, hex digests and words no.
        assert_eq!(c(Some("key"), "Zx9Qm2Lp7Rt4Vw8Ks3Hn6Jd"), Some(ApiKey));
        for v in [
            "550e8400-e29b-41d4-a716-446655440000",
            "9f86d081884c7d659a2feaa0c55ad015",
            "PRJ-1234",
            "internationalization",
            "user:1234:profile:settings",
            "uploads/2024/01/abc123def456.png",
        ] {
            assert_eq!(c(Some("key"), v), None, "{v}");
        }
        // Values that are not secret-looking under credential names.
        for v in [
            "Bearer",
            "short1A",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "internationalization",
            "2024-01-15T10:30:00Z",
            "https://auth2.example.com/oauth/token",
            "12345678901234567890",
            "application/json; charset=utf-8",
        ] {
            assert_eq!(c(Some("token"), v), None, "{v}");
        }
        // Names that describe a token rather than hold one.
        for n in [
            "next_page_token",
            "nextPageToken",
            "csrf_token",
            "X-CSRF-Token",
            "idempotency_key",
            "public_key",
            "Sec-WebSocket-Key",
            "token_type",
            "key_id",
            "monkey",
            "x-request-id",
        ] {
            assert_eq!(c(Some(n), hexkey), None, "{n}");
            assert_eq!(c(Some(n), "dGhlIHNhbXBsZSBub25jZQ=="), None, "{n}");
        }
    }

    #[test]
    fn password_cases() {
        for n in [
            "password",
            "Password",
            "passwd",
            "pwd",
            "pass",
            "passphrase",
            "new_password",
            "newPassword",
            "confirm-password",
            "user[password]",
            "db_passwd",
        ] {
            assert_eq!(c(Some(n), "hunter2"), Some(Password), "{n}");
            // The name wins over the content.
            assert_eq!(c(Some(n), "john@example.com"), Some(Password), "{n}");
        }
        assert_eq!(c(None, "hunter2"), None);
        for (n, v) in [
            ("password", ""),
            ("password", "   "),
            ("password", "********"),
            ("password", "null"),
            ("password", "false"),
            ("password_hint", "first pet"),
            ("password_changed_at", "2024-01-01"),
            ("passport", "X1234567"),
            ("username", "hunter2"),
        ] {
            assert_eq!(c(Some(n), v), None, "{n}={v}");
        }
    }

    #[test]
    fn ip_cases() {
        for v in [
            "203.0.113.7",
            "10.0.0.1",
            "192.168.1.10",
            "81.2.69.160",
            "8.8.8.10",
        ] {
            assert_eq!(c(None, v), Some(IpAddress), "{v}");
            assert_eq!(c(Some("x-forwarded-for"), v), Some(IpAddress), "{v}");
        }
        for v in [
            "2001:db8::1",
            "fe80::1ff:fe23:4567:890a",
            "2a00:1450:4001:81b::200e",
        ] {
            assert_eq!(c(None, v), Some(IpAddress), "{v}");
        }
        for (n, v) in [
            (None, "1.2.3.4"), // a version far more often than a host
            (Some("version"), "10.0.0.1"),
            (Some("appVersion"), "192.168.1.10"),
            (Some("os_ver"), "203.0.113.7"),
            (Some("netmask"), "203.0.113.7"),
            (None, "256.1.1.1"),
            (None, "10.0.0.01"), // leading zero
            (None, "10.0.0"),
            (None, "10.0.0.1.5"),
            (None, "0.0.0.0"),
            (None, "127.0.0.1"),
            (None, "255.255.255.0"),
            (None, "224.0.0.251"),
            (None, "::"),
            (None, "::1"),
            (None, "ff02::1"),
            (None, "12:30:45"),
            (None, "aa:bb:cc:dd:ee:ff"), // MAC address
            (None, "10.0.0.1:8080"),
            (Some("version"), "2001:db8::1"),
        ] {
            assert_eq!(c(n, v), None, "{n:?}={v}");
        }
    }

    #[test]
    fn negatives_are_none() {
        for v in [
            "",
            " ",
            "application/json",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
            "42",
            "true",
            "48213",
            "2024-01-15",
            "Tue, 15 Nov 1994 08:12:31 GMT",
            "en-US,en;q=0.9",
            "gzip, deflate, br",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ABC-12345",
            "SKU-99812-XL",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "v2",
        ] {
            assert_eq!(c(None, v), None, "{v}");
            assert_eq!(c(Some("value"), v), None, "{v}");
        }
        // Over the length cap only PEM and password names count.
        let big = "4".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(c(None, &big), None);
        assert_eq!(c(Some("password"), &big), Some(Password));
        // Garbage and non-ASCII does not panic.
        for v in [
            "\u{0}\u{1}@@..",
            "é@é.éé",
            "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦",
            "+",
            "(",
            ")",
            "-",
            "@",
            "eyJ",
        ] {
            let _ = c(None, v);
            let _ = c(Some(v), v);
        }
    }

    fn scan(text: &str) -> Vec<(SensitiveType, &str)> {
        let mut out = Vec::new();
        scan_text(text, &mut |t, s, e| out.push((t, &text[s..e])));
        out
    }

    #[test]
    fn scan_finds_embedded_values() {
        let h = b64(r#"{"alg":"RS256","kid":"k1"}"#);
        let p = b64(r#"{"sub":"42"}"#);
        let jwt = format!("{h}.{p}.c2ln");
        let text = format!(
            "Dear John (john.doe@example.com), your card 4111 1111 1111 1111 was charged.\n\
             Call +44 20 7946 0958 or (415) 555-0134. IBAN DE89 3704 0044 0532 0130 00.\n\
             SSN 219-09-9998; token {jwt}; key AKIAIOSFODNN7EXAMPLE from 203.0.113.7.\n\
             mailto:jane@example.org, https://x.example.com/users/4242424242424242/orders\n\
             password=hunter2&user=jo <ns:password>s3cret</ns:password>"
        );
        let got = scan(&text);
        let want = vec![
            (Email, "john.doe@example.com"),
            (CreditCard, "4111 1111 1111 1111"),
            (Phone, "+44 20 7946 0958"),
            (Phone, "(415) 555-0134"),
            (Iban, "DE89 3704 0044 0532 0130 00"),
            (Ssn, "219-09-9998"),
            (Jwt, jwt.as_str()),
            (ApiKey, "AKIAIOSFODNN7EXAMPLE"),
            (IpAddress, "203.0.113.7"),
            (Email, "jane@example.org"),
            (CreditCard, "4242424242424242"),
            (Password, "hunter2"),
            (Password, "s3cret"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn scan_pem_block() {
        let text = "config:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\nafter 203.0.113.9";
        let got = scan(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, PrivateKey);
        assert!(got[0].1.starts_with("-----BEGIN RSA") && got[0].1.ends_with("KEY-----"));
        assert_eq!(got[1], (IpAddress, "203.0.113.9"));
        // Without an END line the header alone is reported.
        let got = scan("x -----BEGIN PRIVATE KEY-----\nMIIE");
        assert_eq!(got, vec![(PrivateKey, "-----BEGIN PRIVATE KEY-----")]);
    }

    #[test]
    fn scan_negatives() {
        for text in [
            "Order 4111111111111112 shipped on 2024-01-15 at 10:30.",
            "Version 1.2.3.4 released; build 20240115; id 550e8400-e29b-41d4-a716-446655440000",
            "Customer 4155550134 has 12 345 678 points and logo@2x.png",
            "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 size 1 234 567 890",
            "page=2&sort=asc&next_page_token=AbCdEf0123456789GhIjKl",
            "",
            "((((((((((",
            "@@@@@@@@",
            "----- ----- -----BEGIN",
        ] {
            assert_eq!(scan(text), vec![], "{text}");
        }
    }

    #[test]
    fn scan_hostile_input_is_linear_and_safe() {
        // Pathological repetitions: must terminate quickly and stay on char boundaries.
        let inputs = [
            "eyJ".repeat(20_000),
            "a@".repeat(20_000),
            "1 ".repeat(20_000),
            "(1 ".repeat(20_000),
            "4111 ".repeat(20_000),
            "DE89 ".repeat(20_000),
            "-----BEGIN PRIVATE KEY-----".repeat(2_000),
            "x=".repeat(20_000),
            "<a>".repeat(20_000),
            "é1@ü.de ".repeat(5_000),
            "/".repeat(60_000),
        ];
        for t in &inputs {
            let mut n = 0usize;
            scan_text(t, &mut |_, s, e| {
                assert!(t.is_char_boundary(s) && t.is_char_boundary(e) && s < e);
                n += 1;
            });
            assert!(n <= t.len());
        }
    }

    #[test]
    fn random_input_never_panics() {
        const ALPHABET: &[&str] = &[
            "0",
            "1",
            "4",
            "9",
            "a",
            "Z",
            "x",
            "@",
            ".",
            ":",
            "-",
            "_",
            "+",
            "(",
            ")",
            " ",
            "/",
            "=",
            "<",
            ">",
            "é",
            "€",
            "eyJ",
            "AKIA",
            "sk_live_",
            "DE89",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "\n",
            "\"",
            "%",
            "&",
            ";",
        ];
        let mut rng = Rng(11);
        let names = [
            None,
            Some("password"),
            Some("phone"),
            Some("key"),
            Some("token"),
            Some("id"),
        ];
        for _ in 0..3000 {
            let len = (rng.next() % 40) as usize;
            let v: String = (0..len)
                .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
                .collect();
            let name = names[(rng.next() % names.len() as u64) as usize];
            if let Some(t) = classify(name, &v) {
                let m = mask(t, &v);
                assert!(
                    v.len() < 6 || !m.contains(v.trim()) || t == Email,
                    "{t}: {v:?} → {m}"
                );
            }
            scan_text(&v, &mut |_, s, e| {
                assert!(s < e && e <= v.len() && v.is_char_boundary(s) && v.is_char_boundary(e));
            });
        }
    }

    #[test]
    fn masks_never_reveal() {
        let h = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
        let p = b64(r#"{"sub":"1"}"#);
        let jwt = format!("{h}.{p}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
        let cases: Vec<(SensitiveType, String, &str)> = vec![
            (CreditCard, "4111111111111111".into(), "4111********1111"),
            (CreditCard, "4111 1111 1111 1111".into(), "4111********1111"),
            (CreditCard, "378282246310005".into(), "3782*******0005"),
            (Email, "john.doe@example.com".into(), "j***@example.com"),
            (Email, "j@example.com".into(), "***@example.com"),
            (Phone, "(415) 555-0134".into(), "(***) ***-0134"),
            (Phone, "+14155550134".into(), "+*******0134"),
            (Ssn, "219-09-9998".into(), "***-**-9998"),
            (
                Iban,
                "DE89370400440532013000".into(),
                "DE89**************3000",
            ),
            (
                Iban,
                "DE89 3704 0044 0532 0130 00".into(),
                "DE89**************3000",
            ),
            (Jwt, jwt.clone(), ""),
            (
                ApiKey,
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(),
                "sk_live_***",
            ),
            (ApiKey, "AKIAIOSFODNN7EXAMPLE".into(), "AKIA***"),
            (
                ApiKey,
                "ghp_16C7e42F292c6912E7710c838347Ae178B4a".into(),
                "ghp_***",
            ),
            (
                ApiKey,
                "ak_live_9f86d081884c7d659a2feaa0c55ad015".into(),
                "ak_live_***",
            ),
            (ApiKey, "Zx9Qm2Lp7Rt4Vw8Ks3Hn6Jd".into(), "***"),
            (Password, "hunter2".into(), "***"),
            (
                PrivateKey,
                "-----BEGIN PRIVATE KEY-----\nMIIE".into(),
                "***",
            ),
            (IpAddress, "10.1.2.3".into(), "10.*.*.*"),
            (IpAddress, "2001:db8::1".into(), "2001:***"),
        ];
        for (t, v, want) in &cases {
            let m = mask(*t, v);
            if !want.is_empty() {
                assert_eq!(&m, want, "{t} {v}");
            }
            assert!(!m.contains(v.as_str()), "{t}: {m} contains {v}");
            // Never more than the last 4 characters of the secret at the end (separators
            // aside; an e-mail's domain is kept by design).
            if *t != Email {
                let compact: String = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                let mc: String = m
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '*')
                    .collect();
                assert!(!mc.ends_with(&compact[compact.len() - 5..]), "{t}: {m}");
            }
        }
        let m = mask(Jwt, &jwt);
        assert_eq!(m, format!("{h}.***"));
        assert!(!m.contains(&p));
        // Masking a value of the wrong shape gives stars, never the value.
        for t in SensitiveType::ALL {
            let m = mask(t, "x");
            assert!(!m.contains('x') || t == Email, "{t}: {m}");
            let m = mask(t, "hunter2");
            assert!(!m.contains("hunter2"), "{t}: {m}");
        }
    }

    #[test]
    fn hash_and_redact() {
        let a = hash(b"salt", "4111111111111111");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 16, "{a}");
        assert!(a[7..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, hash(b"salt", "4111111111111111"));
        assert_ne!(a, hash(b"pepper", "4111111111111111"));
        assert_ne!(a, hash(b"salt", "4242424242424242"));
        // SHA-256("abc") = ba7816bf8f01cfea… (FIPS 180-4 example).
        assert_eq!(hash(b"", "abc"), "sha256:ba7816bf8f01cfea");
        assert_eq!(hash(b"a", "bc"), "sha256:ba7816bf8f01cfea");
        let v = "john@example.com";
        assert_eq!(redact(RedactMode::Off, b"", Email, v), v);
        assert!(matches!(
            redact(RedactMode::Off, b"", Email, v),
            Cow::Borrowed(_)
        ));
        assert_eq!(redact(RedactMode::Mask, b"", Email, v), "j***@example.com");
        assert_eq!(redact(RedactMode::Hash, b"s", Email, v), hash(b"s", v));
    }

    #[test]
    fn normalise_for_auth() {
        let mut buf = [0u8; NAME_MAX];
        let n = normalise_name("X-API-Key", &mut buf);
        assert_eq!(&buf[..n], b"xapikey");
        let n = normalise_name(&"a".repeat(100), &mut buf);
        assert_eq!(n, NAME_MAX);
    }
}
